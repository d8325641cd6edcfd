//! `drbdsetup status --json`.
#![no_main]

use converge_core::observe::drbdsetup_status;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(resources) = drbdsetup_status::parse_json(&text) {
        for (name, resource) in &resources {
            assert_eq!(name, &resource.name);
        }
    }
});
