//! Simulators for what these machines lack: DRBD's kernel half (a `drbdsetup` that the real
//! `drbdadm` drives) and OpenVZ (`vzctl`, `vzlist`). For tests and `converge demo`; no product
//! logic depends on this module.
//!
//! Each simulator is reached two ways: `converge sim TOOL ARGS…`, or the converge binary run
//! under the tool's name (a symlink called `drbdsetup`), which is how `drbdadm --drbdsetup=PATH`
//! and `commands.vzctl` call it.

pub mod vz;

/// The program names the binary answers to as a simulator.
pub const TOOLS: &[&str] = &["vzctl", "vzlist"];

/// Runs simulator `tool` with `args` (without the program name).
pub fn run(tool: &str, args: &[String]) -> u8 {
    match tool {
        "vzctl" => vz::vzctl(args),
        "vzlist" => vz::vzlist(args),
        other => {
            eprintln!(
                "converge sim: unknown simulator {other:?}; known: {}",
                TOOLS.join(", ")
            );
            20
        }
    }
}
