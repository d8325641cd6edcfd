//! The node configuration file.
#![no_main]

use std::path::Path;

use converge_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Config::from_yaml(Path::new("/etc/converge/config.yaml"), &text);
});
