//! `converge-sim TOOL ARGS…`, or this binary under a tool's name (`drbdsetup`, `vzctl`,
//! `vzlist`): the simulators, for tests and the demo.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    if let Some(code) = converge_sim::tool_main(&argv0, &mut args) {
        return ExitCode::from(code);
    }
    match args.next().map(|tool| tool.into_string()) {
        Some(Ok(tool)) => ExitCode::from(converge_sim::run_utf8(&tool, args)),
        _ => {
            eprintln!(
                "usage: converge-sim TOOL [ARGS…], TOOL one of {}; or run it under a tool's name",
                converge_sim::TOOLS.join(", ")
            );
            ExitCode::from(20)
        }
    }
}
