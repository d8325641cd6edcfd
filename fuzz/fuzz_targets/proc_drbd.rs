//! `/proc/drbd` (DRBD 8.3, 8.4, 9): the parser and the mapping of minors to a resource.
#![no_main]

use converge_core::observe::proc_drbd;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(proc) = proc_drbd::parse(&text) {
        let minors: Vec<u32> = proc.minors.iter().map(|m| m.minor).collect();
        let mut unique = minors.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), minors.len(), "a minor listed twice");
        if let Some(resource) = proc.resource("r", &minors) {
            assert_eq!(resource.devices.len(), minors.len(), "a volume dropped");
        }
    }
});
