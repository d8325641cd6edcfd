//! The `converge` binary: the command line ([`cli`]) over the library crates, the text
//! renderers of its results ([`render`]), and the manual pages and completions generated from
//! the command line ([`manual`]).
//!
//! Built with the `sim` feature (the default, for development), it also runs the demo and, run
//! under the name of a simulated tool (a symlink called `drbdsetup`, `vzctl`…), is that
//! simulator: `drbdadm --drbdsetup=PATH` can only name one program, without arguments. A
//! packaged build (`--no-default-features`) contains neither.

mod cli;
#[cfg(feature = "sim")]
mod demo;
mod doctor;
mod manual;
mod render;

use std::process::ExitCode;

fn main() -> ExitCode {
    #[cfg(feature = "sim")]
    {
        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_default();
        if let Some(code) = converge_sim::tool_main(&argv0, args) {
            return ExitCode::from(code);
        }
    }
    cli::main()
}
