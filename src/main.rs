//! The `converge` binary: everything is in the library; see `converge --help`.

fn main() -> std::process::ExitCode {
    converge::cli::main()
}
