//! `lxc-ls --fancy`, `lxc-info -s`, a container's config and its log.
#![no_main]

use converge_core::observe::lxc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = lxc::parse_ls_fancy(&text);
    let _ = lxc::parse_info_state(&text);
    let _ = lxc::parse_config_value(&text, "lxc.log.file");
    let (tail, _) = lxc::summarize(&text);
    assert!(tail.len() <= lxc::TAIL_LINES);
});
