//! A manifest file: YAML, the schema reader and the locator of its errors.
#![no_main]

use std::path::Path;

use converge_core::manifest::parse_manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(errors) = parse_manifest(Path::new("/m/s.yaml"), &text) {
        assert!(!errors.is_empty());
    }
});
