//! `vzctl status CTID` and `vzlist -a -H -o ctid,status`.
#![no_main]

use converge_core::observe::vz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(status) = vz::parse_status(&text) {
        let _ = status.state();
    }
    let _ = vz::parse_vzlist(&text);
});
