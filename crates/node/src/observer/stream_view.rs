//! What DRBD's event stream has said of StandAlone connections, shared between the task that
//! reads the stream (which writes it) and the observer (which reads it at each pass).
//!
//! Why the status is not enough: DRBD calls its `split-brain` handler, and the stream says so,
//! before it drops the connection. `drbdsetup status` shows the connection StandAlone at once,
//! while the stream's lines may still be in the pipe. A reconcile that saw only the status
//! would take a split brain for a connection dropped by hand and reconnect it. A StandAlone the
//! stream has reported comes after its split-brain news, which the reader records first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use converge_core::observe::drbd::ConnectionState;
use converge_core::observe::{DrbdResource, StandAloneReported};

/// By resource, the peers whose connection the stream reported StandAlone; `None` while no
/// stream has completed its initial dump (none started, or it is being restarted).
#[derive(Debug, Default)]
pub struct StandAloneView {
    reported: Mutex<Option<StandAloneReported>>,
}

impl StandAloneView {
    /// A copy for one observation pass.
    pub fn snapshot(&self) -> Option<StandAloneReported> {
        self.lock().clone()
    }

    /// The stream's dump is complete: from now on it says what it knows.
    pub fn start<'a>(&self, resources: impl IntoIterator<Item = (&'a str, &'a DrbdResource)>) {
        let mut view = BTreeMap::new();
        for (name, resource) in resources {
            if let Some(peers) = standalone_peers(resource) {
                view.insert(name.to_string(), peers);
            }
        }
        *self.lock() = Some(view);
    }

    /// Resource `name` changed in the stream (`None`: it is gone).
    pub fn update(&self, name: &str, resource: Option<&DrbdResource>) {
        let mut view = self.lock();
        let Some(view) = view.as_mut() else {
            return;
        };
        match resource.and_then(standalone_peers) {
            Some(peers) => view.insert(name.to_string(), peers),
            None => view.remove(name),
        };
    }

    /// The stream ended: until a new one has dumped, the status alone decides.
    pub fn stop(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> MutexGuard<'_, Option<StandAloneReported>> {
        // Plain data, replaced whole or by one entry: a panic cannot leave it half-written.
        self.reported.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The names of `resource`'s StandAlone connections, `None` when it has none. An unnamed
/// connection (DRBD 8.4) is the empty name.
fn standalone_peers(resource: &DrbdResource) -> Option<BTreeSet<String>> {
    let peers: BTreeSet<String> = resource
        .connections
        .iter()
        .filter(|c| c.state == ConnectionState::StandAlone)
        .map(|c| c.name.clone().unwrap_or_default())
        .collect();
    (!peers.is_empty()).then_some(peers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use converge_core::observe::events2::{Events2State, parse_line};

    fn state(lines: &[&str]) -> Events2State {
        let mut state = Events2State::new();
        for line in lines {
            let event = parse_line(line).expect("parses").expect("an event");
            state.apply(&event);
        }
        state
    }

    fn start(view: &StandAloneView, state: &Events2State) {
        view.start(state.resources().iter().map(|(n, r)| (n.as_str(), r)));
    }

    #[test]
    fn the_view_follows_the_stream_and_is_none_without_one() {
        let view = StandAloneView::default();
        assert_eq!(view.snapshot(), None);
        let mut stream = state(&[
            "exists resource name:web role:Secondary suspended:no",
            "exists connection name:web peer-node-id:1 conn-name:deb2 connection:StandAlone role:Unknown",
            "exists connection name:web peer-node-id:2 conn-name:tb connection:Connected role:Secondary",
            "exists resource name:db role:Secondary suspended:no",
            "exists connection name:db peer-node-id:1 conn-name:deb2 connection:Connected role:Primary",
            "exists -",
        ]);
        start(&view, &stream);
        let web: BTreeSet<String> = ["deb2".to_string()].into();
        assert_eq!(
            view.snapshot(),
            Some(BTreeMap::from([("web".to_string(), web)]))
        );
        // As the reader does, one line.
        let follow = |stream: &mut Events2State, line: &str| {
            let event = parse_line(line).expect("parses").expect("an event");
            let changed = stream.apply(&event).expect("changed");
            view.update(changed, stream.resources().get(changed));
        };
        // Reconnected: the resource has no StandAlone connection any more.
        follow(
            &mut stream,
            "change connection name:web peer-node-id:1 conn-name:deb2 connection:Connected",
        );
        assert_eq!(view.snapshot(), Some(BTreeMap::new()));
        // Dropped: db's one connection StandAlone.
        follow(
            &mut stream,
            "change connection name:db peer-node-id:1 conn-name:deb2 connection:StandAlone",
        );
        let db: BTreeSet<String> = ["deb2".to_string()].into();
        assert_eq!(
            view.snapshot(),
            Some(BTreeMap::from([("db".to_string(), db)]))
        );
        view.update("db", None);
        assert_eq!(view.snapshot(), Some(BTreeMap::new()));
        view.stop();
        assert_eq!(view.snapshot(), None);
        // Without a stream, news is not kept: a new stream's dump says it again.
        view.update("db", stream.resources().get("db"));
        assert_eq!(view.snapshot(), None);
    }
}
