//! Simulators for what these machines lack: DRBD's kernel half (a `drbdsetup` that the real
//! `drbdadm` drives) and OpenVZ (`vzctl`, `vzlist`), and [`sandbox`], a simulated node on real
//! loop devices, filesystems and (when installed) LXC. For tests and `converge demo`; no product
//! code depends on this crate, and a packaged converge does not contain it.
//!
//! A simulator is reached as `converge-sim TOOL ARGS…`, or by running a binary that embeds
//! [`tool_main`] under the tool's name (a symlink called `drbdsetup`), which is how
//! `drbdadm --drbdsetup=PATH` and `commands.vzctl` call it.

pub mod drbd;
mod drbd_dev;
mod drbd_format;
mod drbd_state;
mod drbd_view;
mod drbd_world;
pub mod sandbox;
pub mod testing;
pub mod vz;
pub mod world;

use std::ffi::OsString;
use std::path::Path;

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
                "converge-sim: unknown simulator {other:?}; known: {}",
                TOOLS.join(", ")
            );
            20
        }
    }
}

/// When `argv0` names a simulated tool (`…/drbdsetup`), runs that simulator with `args` and
/// returns its exit code; otherwise `None`.
pub fn tool_main(argv0: &OsString, args: impl Iterator<Item = OsString>) -> Option<u8> {
    let name = Path::new(argv0).file_name()?.to_str()?;
    TOOLS.contains(&name).then(|| run_utf8(name, args))
}

/// Runs simulator `tool`; arguments that are not UTF-8 cannot name anything the simulators
/// know, and are refused as a usage error rather than a panic.
pub fn run_utf8(tool: &str, args: impl Iterator<Item = OsString>) -> u8 {
    let args: Option<Vec<String>> = args.map(|a| a.into_string().ok()).collect();
    match args {
        Some(args) => run(tool, &args),
        None => {
            eprintln!("{tool}: arguments must be valid UTF-8");
            20
        }
    }
}
