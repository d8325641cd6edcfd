//! `drbdadm role RES`: the input is split into stdout and stderr at its first NUL byte, and its
//! first byte picks the exit code.
#![no_main]

use converge_core::observe::drbdadm_role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let code = match data.first() {
        Some(b) => i32::from(*b % 4) * 5 - 5,
        None => 0,
    };
    let text = String::from_utf8_lossy(data.get(1..).unwrap_or_default());
    let (stdout, stderr) = text.split_once('\0').unwrap_or((&text, ""));
    let _ = drbdadm_role::parse("r0", stdout, stderr, code);
});
