//! Simulators for what these machines lack: DRBD's kernel half (a `drbdsetup` that the real
//! `drbdadm` drives) and OpenVZ (`vzctl`, `vzlist`). For tests and `converge demo`; no product
//! logic depends on this module.
//!
//! Each simulator is reached two ways: `converge sim TOOL ARGS…`, or the converge binary run
//! under the tool's name (a symlink called `drbdsetup`), which is how `drbdadm --drbdsetup=PATH`
//! and `commands.vzctl` call it.

pub mod drbd;
mod drbd_dev;
mod drbd_format;
mod drbd_state;
mod drbd_view;
pub mod sandbox;
pub mod vz;

/// The program names the binary answers to as a simulator.
pub const TOOLS: &[&str] = &["drbdsetup", "vzctl", "vzlist"];

/// Runs simulator `tool` with `args` (without the program name).
pub fn run(tool: &str, args: &[String]) -> u8 {
    match tool {
        "drbdsetup" => drbd::run(args),
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
