//! The `converge` binary: everything is in the library; see `converge --help`.
//!
//! Run under the name of a simulated tool (a symlink called `drbdsetup`, `vzctl`…), it is that
//! simulator: `drbdadm --drbdsetup=PATH` can only name one program, without arguments.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if converge::sim::TOOLS.contains(&name.as_str()) {
        let rest: Vec<String> = args.collect();
        return std::process::ExitCode::from(converge::sim::run(&name, &rest));
    }
    converge::cli::main()
}
