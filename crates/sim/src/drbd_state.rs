//! The DRBD simulator's persistent state: what the kernel would hold, kept in a directory so that
//! it outlives each `drbdsetup` process.
//!
//! Layout of the state directory: `state.json` (the model, replaced atomically by rename, so a
//! reader without the lock never sees half a file), `lock` (flock'ed: exclusively by every
//! command that changes state, shared by `events2` while it takes its snapshot), `events.log`
//! (append-only JSON lines, the source of `events2`' live stream) and `proc_drbd` (the
//! /proc/drbd stand-in).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use converge_core::fsutil::{FileLock, LockMode, write_atomic};

/// Disk states DRBD 9 reports, as it spells them.
pub const DISK_STATES: &[&str] = &[
    "Diskless",
    "Attaching",
    "Detaching",
    "Failed",
    "Negotiating",
    "Inconsistent",
    "Outdated",
    "DUnknown",
    "Consistent",
    "UpToDate",
];

/// Connection states DRBD 9 reports.
pub const CONNECTION_STATES: &[&str] = &[
    "StandAlone",
    "Disconnecting",
    "Unconnected",
    "Timeout",
    "BrokenPipe",
    "NetworkFailure",
    "ProtocolError",
    "TearDown",
    "Connecting",
    "Connected",
];

#[derive(Debug, Error)]
pub enum SimError {
    #[error("simulator state directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("simulator file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("simulator state file {path} is not valid: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{command} failed: {detail}")]
    Command { command: String, detail: String },
    #[error("device {path}: {source}")]
    Device { path: PathBuf, source: io::Error },
    #[error("device {path}: {detail}")]
    DeviceState { path: PathBuf, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Primary,
    Secondary,
    Unknown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "Primary",
            Role::Secondary => "Secondary",
            Role::Unknown => "Unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "Primary" => Some(Role::Primary),
            "Secondary" => Some(Role::Secondary),
            "Unknown" => Some(Role::Unknown),
            _ => None,
        }
    }
}

/// Everything the simulated kernel holds, plus the test hooks' view of the peers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub resources: BTreeMap<String, Resource>,
    /// Set by `sim-peer`, by resource name; kept across down/up like a real peer would be.
    #[serde(default)]
    pub peers: BTreeMap<String, PeerSim>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    pub node_id: u32,
    pub role: Role,
    /// Resource options as given (`--on-no-quorum=…`), shown back by `show`.
    #[serde(default)]
    pub options: Vec<(String, String)>,
    /// By volume number.
    #[serde(default)]
    pub devices: BTreeMap<u32, Device>,
    /// By peer node id.
    #[serde(default)]
    pub connections: BTreeMap<u32, Connection>,
    /// Peers (node ids) this node knows cannot have quorum: diskful peers lost while this
    /// node's partition kept quorum (DRBD 9.1.13 and 9.2.2 on). They leave the quorum count
    /// when no other peer is unknown. Kernel memory: gone with `down`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub quorumless: BTreeSet<u32>,
    /// DRBD made this Primary Secondary because a peer outdated it while its I/O was
    /// suspended (`on-suspended-primary-outdated force-secondary`): the I/O it held, and any
    /// new I/O, fails (`force-io-failures:yes`) until it is promoted again or goes down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_io_failures: bool,
}

impl Resource {
    /// Promoted: Primary, with working I/O (a forced demotion's failures end).
    pub fn become_primary(&mut self) {
        self.role = Role::Primary;
        self.force_io_failures = false;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub volume: u32,
    pub minor: u32,
    /// `Diskless` while no backing device is attached.
    pub disk: String,
    #[serde(default)]
    pub backing: Option<Backing>,
    /// Diskless by intent (`new-minor --diskless`, which drbdadm issues for a `disk none`
    /// volume): DRBD reports `client:yes` and counts the node as a diskless tiebreaker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client: bool,
    /// DRBD's `have_quorum`, recomputed after every change. It is state, not a function of
    /// the present: the diskless tiebreaker only lets a node keep quorum it had.
    #[serde(default = "has_quorum_by_default")]
    pub quorum: bool,
}

/// Quorum as a resource without the `quorum` option has it (and a state file from before
/// quorum was state).
fn has_quorum_by_default() -> bool {
    true
}

/// An attached backing device and the loop device that exposes its data area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backing {
    pub lower: String,
    pub meta: String,
    pub meta_index: String,
    /// The loop device over `lower`'s data area (e.g. `/dev/loop3`).
    pub loop_dev: PathBuf,
    /// The block node created for the minor (e.g. `/dev/drbd0`), same numbers as `loop_dev`.
    pub node: PathBuf,
    pub major: u32,
    pub minor: u32,
    /// Bytes exposed: everything before the internal metadata.
    pub size_bytes: u64,
    #[serde(default)]
    pub options: Vec<(String, String)>,
    /// World mode: whether the device was open when its own node last ran a command. Other
    /// nodes' commands report this rather than probe the device: their exclusive-open probe
    /// could make this node's concurrent mount fail with EBUSY.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seen_open: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub peer_node_id: u32,
    /// `--_name`; empty when none was given.
    pub name: String,
    /// Net options as given, `_name` excluded.
    #[serde(default)]
    pub net: Vec<(String, String)>,
    #[serde(default)]
    pub paths: Vec<NetPath>,
    /// `connect` was issued and no `disconnect` since (in a world: nor a split brain).
    #[serde(default)]
    pub connect: bool,
    /// World mode: `connect --discard-my-data` was given; this side gives up its data if the
    /// next handshake finds a split brain.
    #[serde(default)]
    pub discard_my_data: bool,
    /// Peer-device options by volume (`peer-device-options RES PEER VOL --bitmap=no`, which
    /// drbdadm issues towards a `disk none` peer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_devices: BTreeMap<u32, Vec<(String, String)>>,
}

impl Connection {
    pub fn net_option(&self, key: &str) -> Option<&str> {
        self.net
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn allows_two_primaries(&self) -> bool {
        // A boolean option given without a value means yes, as drbdsetup reads it.
        matches!(self.net_option("allow-two-primaries"), Some("yes" | ""))
    }

    /// Whether the peer's `volume` is a diskless client as this node is configured: no
    /// bitmap kept for it (DRBD's `!want_bitmap`, which is what `peer-client:` reports).
    pub fn peer_client(&self, volume: u32) -> bool {
        self.peer_devices.get(&volume).is_some_and(|options| {
            options
                .iter()
                .rev()
                .find(|(k, _)| k == "bitmap")
                .is_some_and(|(_, v)| v == "no")
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPath {
    pub local: String,
    pub remote: String,
}

/// What the simulated peer does, as set by `sim-peer`. `connection` is what a local `connect`
/// leads to: `Connected` when the peer is there, `Connecting` when it is not, `StandAlone` when
/// DRBD gave up on it (as after a split brain, until the next `connect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSim {
    pub role: Role,
    pub disk: String,
    pub connection: String,
}

impl Default for PeerSim {
    /// A healthy two-node cluster whose other node is Secondary.
    fn default() -> Self {
        PeerSim {
            role: Role::Secondary,
            disk: "UpToDate".to_string(),
            connection: "Connected".to_string(),
        }
    }
}

/// The state directory and its files.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, SimError> {
        fs::create_dir_all(dir).map_err(|source| SimError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.join("events.log")
    }

    pub fn proc_path(&self) -> PathBuf {
        self.dir.join("proc_drbd")
    }

    fn file_error(path: &Path) -> impl FnOnce(io::Error) -> SimError + '_ {
        move |source| SimError::File {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Held while the state is being read (shared) or changed (exclusive); dropping it
    /// releases the flock.
    pub fn lock(&self, mode: LockMode) -> Result<FileLock, SimError> {
        let path = self.dir.join("lock");
        FileLock::acquire(&path, mode).map_err(Self::file_error(&path))
    }

    /// The exclusive lock if nobody holds it now, else `None`.
    pub fn try_lock(&self) -> Result<Option<FileLock>, SimError> {
        let path = self.dir.join("lock");
        FileLock::try_acquire(&path, LockMode::Exclusive).map_err(Self::file_error(&path))
    }

    /// The current state; an empty one before the first change.
    pub fn load(&self) -> Result<State, SimError> {
        let path = self.state_path();
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| SimError::Corrupt { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(SimError::File { path, source }),
        }
    }

    pub fn save(&self, state: &State) -> Result<(), SimError> {
        let text = serde_json::to_vec_pretty(state).map_err(|source| SimError::Corrupt {
            path: self.state_path(),
            source,
        })?;
        self.write_atomically(&self.state_path(), &text)
    }

    /// Readers see the old or the new file, never a mix.
    pub fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), SimError> {
        write_atomic(path, bytes).map_err(Self::file_error(path))
    }

    /// Appends lines in one write, so that a concurrent reader never sees half of a batch
    /// interleaved with another writer's.
    pub fn append_events(&self, lines: &[String]) -> Result<(), SimError> {
        if lines.is_empty() {
            return Ok(());
        }
        let path = self.events_path();
        let mut text = String::new();
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Self::file_error(&path))?;
        file.write_all(text.as_bytes())
            .map_err(Self::file_error(&path))
    }

    /// The event log's length: where a stream that starts now begins reading.
    pub fn events_len(&self) -> Result<u64, SimError> {
        let path = self.events_path();
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(SimError::File { path, source }),
        }
    }

    /// Makes sure the event log exists, so that it can be watched before anything is logged.
    pub fn touch_events(&self) -> Result<(), SimError> {
        let path = self.events_path();
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map(drop)
            .map_err(Self::file_error(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("sub")).expect("store");
        assert_eq!(store.load().expect("load"), State::default());
        let mut state = State::default();
        state.peers.insert("r".into(), PeerSim::default());
        state.resources.insert(
            "r".into(),
            Resource {
                name: "r".into(),
                node_id: 0,
                role: Role::Secondary,
                options: vec![("on-no-quorum".into(), "io-error".into())],
                devices: BTreeMap::new(),
                connections: BTreeMap::new(),
                quorumless: BTreeSet::new(),
                force_io_failures: false,
            },
        );
        let _lock = store.lock(LockMode::Exclusive).expect("lock");
        store.save(&state).expect("save");
        assert_eq!(store.load().expect("load"), state);
        // No temp file is left behind.
        let names: Vec<String> = fs::read_dir(dir.path().join("sub"))
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp.")), "{names:?}");
    }

    #[test]
    fn try_lock_does_not_wait_for_a_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let held = store.lock(LockMode::Shared).expect("shared lock");
        assert!(store.try_lock().expect("try").is_none());
        drop(held);
        assert!(store.try_lock().expect("try").is_some());
    }

    #[test]
    fn corrupt_state_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        fs::write(store.state_path(), "{not json").expect("write");
        let err = store.load().expect_err("corrupt").to_string();
        assert!(err.contains("state.json is not valid"), "{err}");
    }

    #[test]
    fn events_append_and_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        assert_eq!(store.events_len().expect("len"), 0);
        store
            .append_events(&["a".into(), "b".into()])
            .expect("append");
        assert_eq!(store.events_len().expect("len"), 4);
        assert_eq!(
            fs::read_to_string(store.events_path()).expect("read"),
            "a\nb\n"
        );
    }
}
