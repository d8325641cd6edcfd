//! The `converge` binary: everything is in the library; see `converge --help`.
//!
//! Run under the name of a simulated tool (a symlink called `drbdsetup`, `vzctl`…), it is that
//! simulator: `drbdadm --drbdsetup=PATH` can only name one program, without arguments.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if converge::sim::TOOLS.contains(&name.as_str()) {
        // Arguments that are not UTF-8 cannot name anything the simulators know: refuse them
        // as a usage error rather than panic.
        let rest: Option<Vec<String>> = args.map(|a| a.into_string().ok()).collect();
        let Some(rest) = rest else {
            eprintln!("{name}: arguments must be valid UTF-8");
            return ExitCode::from(20);
        };
        return ExitCode::from(converge::sim::run(&name, &rest));
    }
    converge::cli::main()
}
