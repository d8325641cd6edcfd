//! `/proc/self/mountinfo`, and the walk of the mount tree that unmounting relies on.
#![no_main]

use converge_core::observe::mountinfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(mounts) = mountinfo::parse(&text) {
        assert!(mounts.len() <= text.lines().count());
        for m in &mounts {
            assert!(!m.mount_point().as_os_str().is_empty());
            assert!(mountinfo::submounts_below(&mounts, m).len() < mounts.len());
        }
    }
});
