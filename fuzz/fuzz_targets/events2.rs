//! `drbdsetup events2`: each line as the daemon reads it, folded into the DRBD model, and the
//! whole text at once, which must give the same events.
#![no_main]

use converge_core::observe::events2::{self, Events2State};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut state = Events2State::new();
    let mut events = Vec::new();
    for line in text.lines() {
        if let Ok(Some(event)) = events2::parse_line(line) {
            state.apply(&event);
            events.push(event);
        }
    }
    for (name, resource) in state.resources() {
        assert_eq!(name, &resource.name);
        assert!(
            resource
                .devices
                .windows(2)
                .all(|w| w[0].volume < w[1].volume)
        );
    }
    if let Ok(whole) = events2::parse_lines(&text) {
        assert_eq!(whole, events);
    }
});
