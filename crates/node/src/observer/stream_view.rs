//! What DRBD's event stream has said of StandAlone connections and split brains, shared
//! between the task that reads the stream (which writes it) and the observer (which reads it
//! at each pass).
//!
//! Why the status is not enough: DRBD calls its `split-brain` handler, and the stream says so,
//! before it drops the connection. `drbdsetup status` shows the connection StandAlone at once,
//! while the stream's lines may still be in the pipe. A reconcile that saw only the status
//! would take a split brain for a connection dropped by hand and reconnect it. A StandAlone the
//! stream has reported comes after its split-brain news, which the reader gives the view (and
//! the state directory) first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use converge_core::observe::drbd::ConnectionState;
use converge_core::observe::events2::SplitBrainNews;
use converge_core::observe::{DrbdResource, SplitBrain, StandAloneReported};

/// By resource, the peers whose connection the stream reported StandAlone; `None` while no
/// stream has completed its initial dump (none started, or it is being restarted).
///
/// A reconnection by converge makes what the stream said of that connection stale until the
/// stream has caught up with it: were the stream a whole handshake behind, the status could
/// show the connection StandAlone again (a split brain found at the handshake) while the view
/// still held the StandAlone from before, and its split-brain news still in the pipe. So a
/// connection converge reconnects ([`StandAloneView::reconnecting`]) counts as reported only
/// once the stream has taken it to StandAlone after that reconnection began.
#[derive(Debug, Default)]
pub struct StandAloneView {
    inner: Mutex<Inner>,
}

/// One observation's copy of the view, taken under one lock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The StandAlone connections the stream reported, less those converge reconnected since.
    pub standalone: StandAloneReported,
    /// The split brains the stream reported and has not seen resolved, by resource: the news
    /// the reader also records in the state directory. Kept here too, so that a record that
    /// could not be written (a full disk) still holds the connection while this stream runs,
    /// and so that a StandAlone shown comes with its split brain in the same copy, whatever
    /// order the observer reads the records in.
    pub split_brains: BTreeMap<String, Vec<SplitBrain>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By resource and peer, the StandAlone connections the stream reported, each with the
    /// stream's line ([`Inner::seq`]) that took it there; `None` without a stream.
    standalone: Option<BTreeMap<String, BTreeMap<String, u64>>>,
    /// The stream's lines taken in, counted across its restarts.
    seq: u64,
    /// By resource, the reconnections converge began (by peer, `None`: all of the resource's
    /// connections), each with the line the stream had reached then. One is kept while it
    /// hides a StandAlone reported before it.
    reconnected: BTreeMap<String, BTreeMap<Option<String>, u64>>,
    /// By resource and peer, the split brains the stream reported and not yet seen resolved,
    /// each with when (RFC 3339).
    split: BTreeMap<String, BTreeMap<String, String>>,
}

impl Inner {
    /// Whether the reconnections of `res` make the StandAlone of `peer`, taken there at line
    /// `since`, stale.
    fn stale(&self, res: &str, peer: &str, since: u64) -> bool {
        self.reconnected.get(res).is_some_and(|marks| {
            marks
                .iter()
                .any(|(to, at)| to.as_deref().is_none_or(|to| to == peer) && since <= *at)
        })
    }

    /// Drops the reconnections of `res` that hide nothing any more.
    fn forget_reconnections(&mut self, res: &str) {
        let peers = self.standalone.as_ref().and_then(|s| s.get(res));
        let Some(marks) = self.reconnected.get_mut(res) else {
            return;
        };
        marks.retain(|to, at| {
            peers.is_some_and(|peers| {
                peers
                    .iter()
                    .any(|(peer, since)| to.as_deref().is_none_or(|to| to == peer) && *since <= *at)
            })
        });
        if marks.is_empty() {
            self.reconnected.remove(res);
        }
    }
}

impl StandAloneView {
    /// A copy for one observation pass.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let inner = self.lock();
        let standalone = inner.standalone.as_ref()?;
        let mut view = BTreeMap::new();
        for (res, peers) in standalone {
            let shown: BTreeSet<String> = peers
                .iter()
                .filter(|(peer, since)| !inner.stale(res, peer, **since))
                .map(|(peer, _)| peer.clone())
                .collect();
            if !shown.is_empty() {
                view.insert(res.clone(), shown);
            }
        }
        let split_brains = inner
            .split
            .iter()
            .map(|(res, peers)| {
                let peers = peers
                    .iter()
                    .map(|(peer, since)| SplitBrain {
                        peer: peer.clone(),
                        since: since.clone(),
                    })
                    .collect();
                (res.clone(), peers)
            })
            .collect();
        Some(Snapshot {
            standalone: view,
            split_brains,
        })
    }

    /// The stream's split-brain news (the reader's, before the line's other changes reach
    /// the view).
    pub fn split_brain(&self, news: &SplitBrainNews<'_>) {
        let mut inner = self.lock();
        match *news {
            SplitBrainNews::Found { res, peer } => {
                inner
                    .split
                    .entry(res.to_string())
                    .or_default()
                    .entry(peer.to_string())
                    .or_insert_with(|| {
                        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
                    });
            }
            SplitBrainNews::Connected { res, peer } => {
                if let Some(peers) = inner.split.get_mut(res) {
                    peers.remove(peer);
                    if peers.is_empty() {
                        inner.split.remove(res);
                    }
                }
            }
        }
    }

    /// The stream's dump is complete: from now on it says what it knows. A new dump is the
    /// node as it is: no reconnection before it makes any of it stale.
    pub fn start<'a>(&self, resources: impl IntoIterator<Item = (&'a str, &'a DrbdResource)>) {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        let mut view = BTreeMap::new();
        for (name, resource) in resources {
            let peers: BTreeMap<String, u64> =
                standalone_peers(resource).map(|p| (p, seq)).collect();
            if !peers.is_empty() {
                view.insert(name.to_string(), peers);
            }
        }
        inner.standalone = Some(view);
        inner.reconnected.clear();
    }

    /// Resource `name` changed in the stream (`None`: it is gone).
    pub fn update(&self, name: &str, resource: Option<&DrbdResource>) {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        let Some(view) = inner.standalone.as_mut() else {
            return;
        };
        let before = view.remove(name).unwrap_or_default();
        let peers: BTreeMap<String, u64> = resource
            .into_iter()
            .flat_map(standalone_peers)
            .map(|peer| {
                // Still StandAlone: since the line that took it there, not this one.
                let since = before.get(&peer).copied().unwrap_or(seq);
                (peer, since)
            })
            .collect();
        if !peers.is_empty() {
            view.insert(name.to_string(), peers);
        }
        inner.forget_reconnections(name);
    }

    /// converge is about to reconnect `res` (to `peer`; `None`: all its connections): what
    /// the stream said of them so far is stale. The mark to give
    /// [`StandAloneView::reconnect_failed`] if the reconnection fails; `None` without a
    /// stream (the status alone decides then).
    pub fn reconnecting(&self, res: &str, peer: Option<&str>) -> Option<u64> {
        let mut inner = self.lock();
        inner.standalone.as_ref()?;
        let seq = inner.seq;
        inner
            .reconnected
            .entry(res.to_string())
            .or_default()
            .insert(peer.map(str::to_string), seq);
        Some(seq)
    }

    /// The reconnection marked `mark` failed: the connection was left as it was, and what the
    /// stream said of it holds again (else the reconnection would wait for news that never
    /// comes).
    pub fn reconnect_failed(&self, res: &str, peer: Option<&str>, mark: u64) {
        let mut inner = self.lock();
        let Some(marks) = inner.reconnected.get_mut(res) else {
            return;
        };
        let key = peer.map(str::to_string);
        if marks.get(&key) == Some(&mark) {
            marks.remove(&key);
        }
        if marks.is_empty() {
            inner.reconnected.remove(res);
        }
    }

    /// The stream ended: until a new one has dumped, the status alone decides (and the
    /// split-brain records, which outlive the stream).
    pub fn stop(&self) {
        let mut inner = self.lock();
        inner.standalone = None;
        inner.reconnected.clear();
        inner.split.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain data, each change made under one lock: a panic cannot leave it half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The names of `resource`'s StandAlone connections. An unnamed connection (DRBD 8.4) is the
/// empty name.
fn standalone_peers(resource: &DrbdResource) -> impl Iterator<Item = String> + '_ {
    resource
        .connections
        .iter()
        .filter(|c| c.state == ConnectionState::StandAlone)
        .map(|c| c.name.clone().unwrap_or_default())
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
        let standalone = |view: &StandAloneView| view.snapshot().map(|s| s.standalone);
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
            standalone(&view),
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
        assert_eq!(standalone(&view), Some(BTreeMap::new()));
        // Dropped: db's one connection StandAlone.
        follow(
            &mut stream,
            "change connection name:db peer-node-id:1 conn-name:deb2 connection:StandAlone",
        );
        let db: BTreeSet<String> = ["deb2".to_string()].into();
        assert_eq!(
            standalone(&view),
            Some(BTreeMap::from([("db".to_string(), db)]))
        );
        view.update("db", None);
        assert_eq!(standalone(&view), Some(BTreeMap::new()));
        view.stop();
        assert_eq!(view.snapshot(), None);
        // Without a stream, news is not kept: a new stream's dump says it again.
        view.update("db", stream.resources().get("db"));
        assert_eq!(view.snapshot(), None);
    }

    /// As the reader does: one line of the stream into `stream` and the view.
    fn follow(view: &StandAloneView, stream: &mut Events2State, line: &str) {
        let event = parse_line(line).expect("parses").expect("an event");
        if let Some(changed) = stream.apply(&event) {
            view.update(changed, stream.resources().get(changed));
        }
    }

    fn reported(view: &StandAloneView, res: &str) -> Option<BTreeSet<String>> {
        view.snapshot()
            .expect("a stream")
            .standalone
            .get(res)
            .cloned()
    }

    /// The connection of `web` to deb2 changes to `state` in the stream.
    fn deb2_of_web(view: &StandAloneView, stream: &mut Events2State, state: &str) {
        let line =
            format!("change connection name:web peer-node-id:1 conn-name:deb2 connection:{state}");
        follow(view, stream, &line);
    }

    /// Both peers of `web`.
    fn both() -> BTreeSet<String> {
        ["deb2".to_string(), "tb".to_string()].into()
    }

    fn standalone_web() -> (StandAloneView, Events2State) {
        let view = StandAloneView::default();
        let stream = state(&[
            "exists resource name:web role:Secondary suspended:no",
            "exists connection name:web peer-node-id:1 conn-name:deb2 connection:StandAlone role:Unknown",
            "exists connection name:web peer-node-id:2 conn-name:tb connection:StandAlone role:Unknown",
            "exists -",
        ]);
        start(&view, &stream);
        (view, stream)
    }

    /// The stream a whole handshake behind: converge reconnected deb2, DRBD found a split
    /// brain and dropped it again, and the stream has not told yet. The StandAlone from before
    /// the reconnection must not count as the news of this one.
    #[test]
    fn regression_a_standalone_from_before_a_reconnection_is_not_taken_for_its_news() {
        let (view, mut stream) = standalone_web();
        assert_eq!(reported(&view, "web"), Some(both()));
        let mark = view.reconnecting("web", Some("deb2"));
        assert!(mark.is_some());
        let tb: BTreeSet<String> = ["tb".to_string()].into();
        assert_eq!(reported(&view, "web"), Some(tb.clone()), "deb2 is stale");
        // A line from before the reconnection, still in the pipe: deb2 stays stale.
        follow(
            &view,
            &mut stream,
            "change resource name:web role:Secondary suspended:no",
        );
        assert_eq!(reported(&view, "web"), Some(tb.clone()));
        // The stream catches up: the reconnection, then the split brain's drop. (A stream
        // quick enough to say both before drbdadm returned is the same case: lines after the
        // reconnection began.)
        deb2_of_web(&view, &mut stream, "Connecting");
        assert_eq!(reported(&view, "web"), Some(tb.clone()));
        deb2_of_web(&view, &mut stream, "StandAlone");
        assert_eq!(reported(&view, "web"), Some(both()));
    }

    /// A `drbdadm connect` that failed changed nothing: no news will come, and waiting for
    /// it would hold the resource for good.
    #[test]
    fn a_failed_reconnection_leaves_what_the_stream_said_in_force() {
        let (view, _stream) = standalone_web();
        let mark = view.reconnecting("web", Some("deb2")).expect("a stream");
        view.reconnect_failed("web", Some("deb2"), mark);
        assert_eq!(reported(&view, "web"), Some(both()));
    }

    #[test]
    fn a_reconnection_of_all_connections_makes_each_stale_and_a_new_dump_none() {
        let (view, stream) = standalone_web();
        view.reconnecting("web", None);
        assert_eq!(reported(&view, "web"), None);
        // A restarted stream's dump is the node as it is now.
        view.stop();
        assert_eq!(view.reconnecting("web", None), None, "no stream, no mark");
        start(&view, &stream);
        assert_eq!(reported(&view, "web"), Some(both()));
    }

    /// DRBD 8.4 names no connection: the view keeps its one as the empty name.
    #[test]
    fn drbd_84_unnamed_connection_is_made_stale_by_a_reconnection_of_the_resource() {
        let view = StandAloneView::default();
        let mut stream = state(&[
            "exists resource name:r0 role:Secondary suspended:no",
            "exists connection name:r0 peer-node-id:1 connection:StandAlone role:Unknown",
            "exists -",
        ]);
        start(&view, &stream);
        let unnamed: BTreeSet<String> = [String::new()].into();
        assert_eq!(reported(&view, "r0"), Some(unnamed.clone()));
        view.reconnecting("r0", None);
        assert_eq!(reported(&view, "r0"), None);
        follow(
            &view,
            &mut stream,
            "change connection name:r0 peer-node-id:1 connection:Unconnected",
        );
        follow(
            &view,
            &mut stream,
            "change connection name:r0 peer-node-id:1 connection:StandAlone",
        );
        assert_eq!(reported(&view, "r0"), Some(unnamed));
    }

    /// The split brain is in the same copy as the StandAlone it explains, and gone once the
    /// connection is back or the stream ends (the state directory's record outlives both).
    #[test]
    fn a_split_brain_reported_by_the_stream_is_in_each_copy_until_resolved() {
        let (view, stream) = standalone_web();
        view.split_brain(&SplitBrainNews::Found {
            res: "web",
            peer: "deb2",
        });
        let copy = view.snapshot().expect("a stream");
        let peers: Vec<&str> = copy.split_brains["web"]
            .iter()
            .map(|s| s.peer.as_str())
            .collect();
        assert_eq!(peers, ["deb2"]);
        assert!(copy.split_brains["web"][0].since.ends_with('Z'), "RFC 3339");
        // Said again (a second handler call): the first time stays.
        view.split_brain(&SplitBrainNews::Found {
            res: "web",
            peer: "deb2",
        });
        assert_eq!(
            view.snapshot().expect("a stream").split_brains,
            copy.split_brains
        );
        view.split_brain(&SplitBrainNews::Connected {
            res: "web",
            peer: "deb2",
        });
        assert!(view.snapshot().expect("a stream").split_brains.is_empty());
        view.split_brain(&SplitBrainNews::Found {
            res: "web",
            peer: "tb",
        });
        view.stop();
        assert_eq!(view.snapshot(), None);
        start(&view, &stream);
        let copy = view.snapshot().expect("a new stream");
        assert!(copy.split_brains.is_empty(), "{copy:?}");
    }
}
