//! World mode of the DRBD simulator: two or three simulated nodes share one simulated DRBD
//! "wire". Each node keeps its own simulated kernel (the same [`State`] as single-node mode);
//! what a node sees of a peer is that peer's actual state, and DRBD's rules between nodes
//! (connection handshakes, resync, split brain, data generations) are applied here, without
//! I/O, after every change ([`settle`]); [`WorldStore`] keeps the world in its directory.
//!
//! The world directory (`CONVERGE_SIM_WORLD`):
//! - `world.json`: every node's kernel state and the world's facts (cut links, powered-off
//!   nodes, each resource's data generations), in one file replaced by rename, so a reader
//!   without the lock (`status`, the sandbox's samplers) always sees one consistent world;
//! - `lock`: flock, exclusive while a command or hook changes the world, shared while `events2`
//!   takes its snapshot;
//! - `nodes/NAME/events.log` and `nodes/NAME/proc_drbd`: each node's event log (the source of
//!   its `events2` stream) and its /proc/drbd stand-in.
//!
//! Data generations stand for DRBD's UUIDs: each node with a disk holds a generation of each
//! resource's data; a Primary that is not connected to a peer holding its generation (or a
//! later one) writes what that peer will not have, so it moves to a new generation (its
//! connected peers with it) — unless it has no quorum: then `on-no-quorum` fails (`io-error`)
//! or freezes (`suspend-io`) its writes, and it stays on the generation it had. On a
//! handshake the node whose generation is an ancestor of the other's is behind and resyncs;
//! two generations on different branches are a split brain.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::drbd_state::{Connection, Resource, Role, SimError, State, Store};
use super::drbd_view::{self as view, ConnView, PeerVolume, Peers, Reached};
use converge_core::fsutil::{FileLock, LockMode, write_atomic};

/// The world directory and its files (see the module documentation).
pub struct WorldStore {
    dir: PathBuf,
}

impl WorldStore {
    pub fn open(dir: &Path) -> Result<WorldStore, SimError> {
        let nodes = dir.join("nodes");
        fs::create_dir_all(&nodes).map_err(|source| SimError::Dir {
            path: nodes.clone(),
            source,
        })?;
        Ok(WorldStore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn world_path(&self) -> PathBuf {
        self.dir.join("world.json")
    }

    /// `nodes/NAME`: the node's event log and /proc/drbd stand-in.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    pub fn node_store(&self, node: &str) -> Result<Store, SimError> {
        Store::open(&self.node_dir(node))
    }

    /// One lock for the whole world: every change takes it exclusively.
    pub fn lock(&self, mode: LockMode) -> Result<FileLock, SimError> {
        let path = self.dir.join("lock");
        FileLock::acquire(&path, mode).map_err(|source| SimError::File { path, source })
    }

    pub fn try_lock(&self) -> Result<Option<FileLock>, SimError> {
        let path = self.dir.join("lock");
        FileLock::try_acquire(&path, LockMode::Exclusive)
            .map_err(|source| SimError::File { path, source })
    }

    /// The world as last saved (empty before the first change). No lock needed: the file is
    /// replaced by rename, so this is always one consistent world.
    pub fn load(&self) -> Result<WorldState, SimError> {
        load_world(&self.world_path())
    }

    pub fn save(&self, world: &WorldState) -> Result<(), SimError> {
        let path = self.world_path();
        let text = serde_json::to_vec_pretty(world).map_err(|source| SimError::Corrupt {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &text).map_err(|source| SimError::File { path, source })
    }
}

/// Reads a world file; a missing one is an empty world. At most 64 MiB is read: a world of
/// three nodes is a few kilobytes, anything near that is not a world file.
pub fn load_world(path: &Path) -> Result<WorldState, SimError> {
    const CAP: u64 = 64 << 20;
    match converge_core::fsutil::read_capped(path, CAP) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SimError::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.is_not_found() => Ok(WorldState::default()),
        Err(e) => Err(SimError::File {
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        }),
    }
}

/// The generation every disk starts from (its first attach).
pub const ROOT_GENERATION: u64 = 1;

/// Bounds the settling loops; each round changes something, so a handful is plenty.
const SETTLE_ROUNDS: usize = 64;

/// Everything the world holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorldState {
    /// Each powered-on node's simulated kernel, by node name (its hostname).
    #[serde(default)]
    pub nodes: BTreeMap<String, State>,
    /// Powered-off nodes: no kernel state, no connections.
    #[serde(default)]
    pub off: BTreeSet<String>,
    /// Cut links, each pair in name order.
    #[serde(default)]
    pub cut: BTreeSet<(String, String)>,
    /// Per resource: its data generations.
    #[serde(default)]
    pub data: BTreeMap<String, ResData>,
    /// Resyncs wait for `sim-world resync release` instead of completing at once.
    #[serde(default)]
    pub hold_resync: bool,
    /// The handlers DRBD ran during the last change, by node, in order (`call helper`): for
    /// the change's events, never kept.
    #[serde(skip)]
    pub helper_calls: Vec<(String, view::Obj)>,
}

/// One resource's data across the world.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResData {
    /// The last generation handed out.
    pub last: u64,
    /// Each generation's parent (the root has none).
    #[serde(default)]
    pub parents: BTreeMap<u64, u64>,
    /// Per node that ever attached a disk: what its metadata says. It outlives `down` and a
    /// power cut, as on-disk metadata does.
    #[serde(default)]
    pub disks: BTreeMap<String, DiskMeta>,
}

/// A node's on-disk metadata for one resource (all its volumes together).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskMeta {
    pub generation: u64,
    /// Marked Outdated (`outdate`, `sim-local-disk`): attach comes back Outdated.
    #[serde(default)]
    pub outdated: bool,
    /// A resync to this node has not finished: attach comes back Inconsistent.
    #[serde(default)]
    pub inconsistent: bool,
    /// While a resync to this node runs: the node it syncs from.
    #[serde(default)]
    pub sync_from: Option<String>,
}

impl DiskMeta {
    /// The disk state an attach finds.
    pub fn disk_state(&self) -> &'static str {
        if self.inconsistent {
            "Inconsistent"
        } else if self.outdated {
            "Outdated"
        } else {
            "UpToDate"
        }
    }
}

/// A link between two nodes, in name order.
pub fn link(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// A node name usable as a directory name and as a hostname.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn attached(res: &Resource) -> bool {
    res.devices.values().any(|d| d.backing.is_some())
}

impl WorldState {
    /// Whether `node` is part of the world (powered on or off).
    pub fn knows(&self, node: &str) -> bool {
        self.nodes.contains_key(node) || self.off.contains(node)
    }

    /// Every node's name, powered on or off.
    pub fn node_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.nodes.keys().cloned().collect();
        names.extend(self.off.iter().cloned());
        names.into_iter().collect()
    }

    /// Whether packets pass between `a` and `b`: both powered on, the link not cut.
    pub fn link_up(&self, a: &str, b: &str) -> bool {
        !self.off.contains(a) && !self.off.contains(b) && !self.cut.contains(&link(a, b))
    }

    /// The node other than `me` whose resource `name` has node id `id`; when several claim it
    /// (a misconfiguration), the one named `hint` (the connection's `--_name`), else the first.
    pub fn peer_node(
        &self,
        me: &str,
        name: &str,
        id: u32,
        hint: &str,
    ) -> Option<(&str, &Resource)> {
        let mut found = self.nodes.iter().filter_map(|(node, state)| {
            let res = state.resources.get(name)?;
            (node != me && res.node_id == id).then_some((node.as_str(), res))
        });
        let first = found.next()?;
        if first.0 == hint {
            return Some(first);
        }
        Some(found.find(|(node, _)| *node == hint).unwrap_or(first))
    }

    /// The peer behind connection `conn` of `me`'s resource `res` when the two are connected:
    /// both issued `connect` for each other, both are up, the link is not cut.
    pub fn connected_peer(
        &self,
        me: &str,
        res: &Resource,
        conn: &Connection,
    ) -> Option<(&str, &Resource)> {
        if !conn.connect {
            return None;
        }
        let (peer, peer_res) = self.peer_node(me, &res.name, conn.peer_node_id, &conn.name)?;
        let back = peer_res.connections.get(&res.node_id)?;
        (back.connect && self.link_up(me, peer)).then_some((peer, peer_res))
    }

    /// Whether nodes `a` and `b` are connected for resource `name`.
    pub fn connected(&self, name: &str, a: &str, b: &str) -> bool {
        let Some(res) = self.nodes.get(a).and_then(|s| s.resources.get(name)) else {
            return false;
        };
        res.connections
            .values()
            .any(|c| self.connected_peer(a, res, c).is_some_and(|(p, _)| p == b))
    }

    /// Every connected pair for resource `name`, each once, in name order.
    fn connected_pairs(&self, name: &str) -> Vec<(String, String)> {
        let mut pairs = BTreeSet::new();
        for (node, state) in &self.nodes {
            let Some(res) = state.resources.get(name) else {
                continue;
            };
            for conn in res.connections.values() {
                if let Some((peer, _)) = self.connected_peer(node, res, conn) {
                    pairs.insert(link(node, peer));
                }
            }
        }
        pairs.into_iter().collect()
    }

    /// Every resource name configured on some node or holding data.
    pub fn resource_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .nodes
            .values()
            .flat_map(|s| s.resources.keys().cloned())
            .collect();
        names.extend(self.data.keys().cloned());
        names
    }

    pub fn meta(&self, name: &str, node: &str) -> Option<&DiskMeta> {
        self.data.get(name)?.disks.get(node)
    }

    fn resource(&self, node: &str, name: &str) -> Option<&Resource> {
        self.nodes.get(node)?.resources.get(name)
    }

    fn resource_mut(&mut self, node: &str, name: &str) -> Option<&mut Resource> {
        self.nodes.get_mut(node)?.resources.get_mut(name)
    }

    /// Whether generation `old` is an ancestor of (or equal to) generation `new`.
    fn descends(&self, name: &str, old: u64, new: u64) -> bool {
        let Some(data) = self.data.get(name) else {
            return old == new;
        };
        let mut at = new;
        for _ in 0..=data.parents.len() {
            if at == old {
                return true;
            }
            match data.parents.get(&at) {
                Some(parent) => at = *parent,
                None => return false,
            }
        }
        false
    }

    /// The pairs of nodes whose data of resource `name` went separate ways (a split brain):
    /// neither one's generation descends from the other's. Each pair once, in name order; it
    /// stays until one side discards its data (powered off or cut, its metadata still holds
    /// it).
    pub fn diverged(&self, name: &str) -> Vec<(String, String)> {
        let Some(data) = self.data.get(name) else {
            return Vec::new();
        };
        let disks: Vec<(&String, u64)> = data
            .disks
            .iter()
            .map(|(node, meta)| (node, meta.generation))
            .collect();
        let mut pairs = Vec::new();
        for (i, (a, ga)) in disks.iter().enumerate() {
            for (b, gb) in &disks[i + 1..] {
                if !self.descends(name, *ga, *gb) && !self.descends(name, *gb, *ga) {
                    pairs.push(((*a).clone(), (*b).clone()));
                }
            }
        }
        pairs
    }

    /// After `node` changed its own kernel state: a device attached just now (`was_attached`
    /// lists those attached before) takes its disk state from the metadata, or creates the
    /// metadata at the root generation; any other attached device's disk state is written
    /// back to the metadata (`outdate`, `primary --force`, `sim-local-disk` persist).
    pub fn sync_metadata(&mut self, node: &str, was_attached: &BTreeSet<(String, u32)>) {
        let Some(state) = self.nodes.get_mut(node) else {
            return;
        };
        for res in state.resources.values_mut() {
            if !attached(res) {
                continue;
            }
            let data = self.data.entry(res.name.clone()).or_default();
            if data.last == 0 {
                data.last = ROOT_GENERATION;
            }
            let fresh = !data.disks.contains_key(node);
            let meta = data
                .disks
                .entry(node.to_string())
                .or_insert_with(|| DiskMeta {
                    generation: ROOT_GENERATION,
                    outdated: false,
                    inconsistent: false,
                    sync_from: None,
                });
            let newly: Vec<u32> = res
                .devices
                .values()
                .filter(|d| {
                    d.backing.is_some() && !was_attached.contains(&(res.name.clone(), d.volume))
                })
                .map(|d| d.volume)
                .collect();
            if !fresh && !newly.is_empty() {
                for volume in newly {
                    if let Some(device) = res.devices.get_mut(&volume) {
                        device.disk = meta.disk_state().to_string();
                    }
                }
                continue;
            }
            let disks: Vec<&str> = res
                .devices
                .values()
                .filter(|d| d.backing.is_some())
                .map(|d| d.disk.as_str())
                .collect();
            meta.inconsistent = disks.contains(&"Inconsistent");
            meta.outdated = disks.contains(&"Outdated");
            if !meta.inconsistent {
                meta.sync_from = None;
            }
        }
    }
}

/// The (resource, volume) pairs of `state` that have a disk attached.
pub fn attached_volumes(state: Option<&State>) -> BTreeSet<(String, u32)> {
    state
        .map(|s| {
            s.resources
                .values()
                .flat_map(|r| {
                    r.devices
                        .values()
                        .filter(|d| d.backing.is_some())
                        .map(|d| (r.name.clone(), d.volume))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What node `node` sees of the other nodes of `world`. Its own state is not read from
/// `world` (a command may be changing it), only passed in with each question.
pub struct WorldPeers<'a> {
    pub world: &'a WorldState,
    pub node: &'a str,
}

impl Peers for WorldPeers<'_> {
    fn view(&self, res: &Resource, conn: &Connection) -> ConnView {
        if !conn.connect {
            return ConnView::unreachable("StandAlone");
        }
        let Some((peer, peer_res)) = self.world.connected_peer(self.node, res, conn) else {
            return ConnView::unreachable("Connecting");
        };
        let mine = self.world.meta(&res.name, self.node);
        let theirs = self.world.meta(&res.name, peer);
        let replication = if mine.is_some_and(|m| m.sync_from.as_deref() == Some(peer)) {
            "SyncTarget"
        } else if theirs.is_some_and(|m| m.sync_from.as_deref() == Some(self.node)) {
            "SyncSource"
        } else {
            "Established"
        };
        let volumes = res
            .devices
            .keys()
            .map(|volume| {
                let disk = peer_res
                    .devices
                    .get(volume)
                    .map_or("DUnknown", |d| d.disk.as_str());
                (
                    *volume,
                    PeerVolume {
                        disk: disk.to_string(),
                        replication: replication.to_string(),
                    },
                )
            })
            .collect();
        ConnView {
            cstate: "Connected".to_string(),
            connected: true,
            peer_role: peer_res.role,
            peer_disk: "DUnknown".to_string(),
            volumes,
        }
    }

    /// Breadth-first over the connected pairs of the resource, from this node's own
    /// connections (its state is the one passed in, not the world's).
    fn reachable(&self, res: &Resource) -> Vec<Reached> {
        let mut seen = BTreeSet::from([self.node.to_string()]);
        let mut reached = Vec::new();
        let mut queue = VecDeque::new();
        for conn in res.connections.values() {
            if let Some((peer, peer_res)) = self.world.connected_peer(self.node, res, conn)
                && seen.insert(peer.to_string())
            {
                reached.push(Reached {
                    node_id: peer_res.node_id,
                    role: peer_res.role,
                    direct: true,
                });
                queue.push_back(peer.to_string());
            }
        }
        while let Some(node) = queue.pop_front() {
            let Some(node_res) = self.world.resource(&node, &res.name) else {
                continue;
            };
            for conn in node_res.connections.values() {
                if let Some((peer, peer_res)) = self.world.connected_peer(&node, node_res, conn)
                    && seen.insert(peer.to_string())
                {
                    reached.push(Reached {
                        node_id: peer_res.node_id,
                        role: peer_res.role,
                        direct: false,
                    });
                    queue.push_back(peer.to_string());
                }
            }
        }
        reached
    }
}

/// Recomputes every node's quorum after a change ([`view::update_quorum`]): each node from
/// what it reaches now and the quorum it had before, as DRBD does at each state change.
pub fn update_quorum(world: &mut WorldState) {
    let before = world.clone();
    for (node, state) in &mut world.nodes {
        let peers = WorldPeers {
            world: &before,
            node,
        };
        for res in state.resources.values_mut() {
            view::update_quorum(res, &peers);
        }
    }
}

/// What a handshake between two connected nodes decides.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// DRBD drops the connection: both sides StandAlone (split brain, or two primaries that
    /// may not meet, or a Primary that would have to become SyncTarget).
    Drop { a: String, b: String },
    /// `to` is behind `from` (or gives its data up): it resyncs from `from`.
    Sync { from: String, to: String },
    /// Same data, and `node` learns from its UpToDate peer that it is UpToDate again.
    Refresh { node: String },
    /// Both wrote what the other has not, and neither was told to discard its data: a split
    /// brain. DRBD runs its `initial-split-brain`, then (unresolved) `split-brain` handlers
    /// on both sides and drops the connection (both StandAlone).
    SplitBrain { a: String, b: String },
    /// `node`, a Primary whose I/O is suspended for lack of quorum, meets a peer with newer
    /// data, which outdates it: with `on-suspended-primary-outdated force-secondary` DRBD
    /// makes it Secondary and fails the I/O it held (it then resyncs as any node behind).
    ForceSecondary { node: String },
}

/// Applies DRBD's rules between the nodes after a change: stale resyncs stop, connected pairs
/// shake hands (resync, split brain), every node's quorum is recomputed, and Primaries cut off
/// from a peer diverge from it if they can still write. Resyncs that start here finish in
/// [`finish_resyncs`] unless they are held.
pub fn settle(world: &mut WorldState) {
    stop_stale_resyncs(world);
    for _ in 0..SETTLE_ROUNDS {
        let outcomes = handshakes(world);
        if outcomes.is_empty() {
            break;
        }
        for (name, outcome) in outcomes {
            apply(world, &name, outcome);
        }
    }
    // Quorum before divergence: DRBD decides both in the same state change, so a Primary
    // that loses its peer and its quorum at once never writes apart from that peer (it
    // flags PRIMARY_LOST_QUORUM before it would make a new current UUID). Divergence changes
    // no disk or connection, so the quorum computed here stands.
    update_quorum(world);
    diverge(world);
}

/// Completes every running resync, unless resyncs are held: the target becomes UpToDate.
/// Returns whether one completed.
pub fn finish_resyncs(world: &mut WorldState) -> bool {
    if world.hold_resync {
        return false;
    }
    let mut done = Vec::new();
    for (name, data) in &mut world.data {
        for (node, meta) in &mut data.disks {
            if meta.sync_from.take().is_some() {
                meta.inconsistent = false;
                meta.outdated = false;
                done.push((name.clone(), node.clone()));
            }
        }
    }
    for (name, node) in &done {
        set_disks(world, node, name, "UpToDate");
    }
    if !done.is_empty() {
        // An UpToDate disk counts differently from an Inconsistent one.
        update_quorum(world);
    }
    !done.is_empty()
}

fn set_disks(world: &mut WorldState, node: &str, name: &str, disk: &str) {
    if let Some(res) = world.resource_mut(node, name) {
        for device in res.devices.values_mut().filter(|d| d.backing.is_some()) {
            device.disk = disk.to_string();
        }
    }
}

/// A resync whose source is no longer connected stops; its target stays Inconsistent.
fn stop_stale_resyncs(world: &mut WorldState) {
    let mut stale = Vec::new();
    for (name, data) in &world.data {
        for (node, meta) in &data.disks {
            if let Some(source) = &meta.sync_from
                && !world.connected(name, node, source)
            {
                stale.push((name.clone(), node.clone()));
            }
        }
    }
    for (name, node) in stale {
        if let Some(meta) = world
            .data
            .get_mut(&name)
            .and_then(|d| d.disks.get_mut(&node))
        {
            meta.sync_from = None;
        }
    }
}

fn handshakes(world: &WorldState) -> Vec<(String, Outcome)> {
    let mut outcomes = Vec::new();
    for name in world.resource_names() {
        for (a, b) in world.connected_pairs(&name) {
            if let Some(outcome) = handshake(world, &name, &a, &b) {
                outcomes.push((name.clone(), outcome));
            }
        }
    }
    outcomes
}

fn handshake(world: &WorldState, name: &str, a: &str, b: &str) -> Option<Outcome> {
    let ra = world.resource(a, name)?;
    let rb = world.resource(b, name)?;
    let ab = ra.connections.get(&rb.node_id)?;
    let ba = rb.connections.get(&ra.node_id)?;
    let primary = |r: &Resource| r.role == Role::Primary;
    let drop = || {
        Some(Outcome::Drop {
            a: a.to_string(),
            b: b.to_string(),
        })
    };
    // Before the two-Primaries rule: the node that took over is Primary too, and this is how
    // DRBD lets the old one rejoin.
    if attached(ra) && attached(rb) {
        let (ma, mb) = (world.meta(name, a)?, world.meta(name, b)?);
        let outdated_by = |r: &Resource, mine: u64, theirs: u64| {
            primary(r)
                && view::suspended_quorum(r)
                && view::forces_secondary_when_outdated(r)
                && mine != theirs
                && world.descends(name, mine, theirs)
        };
        if outdated_by(ra, ma.generation, mb.generation) {
            return Some(Outcome::ForceSecondary {
                node: a.to_string(),
            });
        }
        if outdated_by(rb, mb.generation, ma.generation) {
            return Some(Outcome::ForceSecondary {
                node: b.to_string(),
            });
        }
    }
    if primary(ra) && primary(rb) && !(ab.allows_two_primaries() && ba.allows_two_primaries()) {
        return drop();
    }
    if !attached(ra) || !attached(rb) {
        // A diskless side has no data to compare.
        return None;
    }
    let (ma, mb) = (world.meta(name, a)?, world.meta(name, b)?);
    let sync = |from: &str, fm: &DiskMeta, to: &str, tr: &Resource| {
        if primary(tr) {
            // DRBD will not make a Primary a SyncTarget: it drops the connection.
            drop()
        } else if fm.inconsistent {
            // Nothing good to sync from.
            None
        } else {
            Some(Outcome::Sync {
                from: from.to_string(),
                to: to.to_string(),
            })
        }
    };
    if ma.generation == mb.generation {
        let up_to_date = |r: &Resource| {
            r.devices
                .values()
                .filter(|d| d.backing.is_some())
                .all(|d| d.disk == "UpToDate")
        };
        let stale = |r: &Resource| {
            r.devices
                .values()
                .any(|d| matches!(d.disk.as_str(), "Outdated" | "Consistent"))
        };
        return match (ma.inconsistent, mb.inconsistent) {
            (true, false) if ma.sync_from.is_none() && up_to_date(rb) => sync(b, mb, a, ra),
            (false, true) if mb.sync_from.is_none() && up_to_date(ra) => sync(a, ma, b, rb),
            (false, false) if up_to_date(ra) && stale(rb) => Some(Outcome::Refresh {
                node: b.to_string(),
            }),
            (false, false) if up_to_date(rb) && stale(ra) => Some(Outcome::Refresh {
                node: a.to_string(),
            }),
            _ => None,
        };
    }
    if world.descends(name, mb.generation, ma.generation) {
        return sync(a, ma, b, rb);
    }
    if world.descends(name, ma.generation, mb.generation) {
        return sync(b, mb, a, ra);
    }
    // Both wrote what the other has not: a split brain. DRBD's default after-sb policies
    // disconnect, unless one side was told to discard its data.
    match (
        ab.discard_my_data && !primary(ra),
        ba.discard_my_data && !primary(rb),
    ) {
        (true, false) => sync(b, mb, a, ra),
        (false, true) => sync(a, ma, b, rb),
        _ => Some(Outcome::SplitBrain {
            a: a.to_string(),
            b: b.to_string(),
        }),
    }
}

fn apply(world: &mut WorldState, name: &str, outcome: Outcome) {
    match outcome {
        Outcome::Drop { a, b } => drop_connection(world, name, &a, &b),
        Outcome::SplitBrain { a, b } => {
            for (me, other) in [(&a, &b), (&b, &a)] {
                let calls = split_brain_calls(world, name, me, other);
                world
                    .helper_calls
                    .extend(calls.into_iter().map(|c| (me.clone(), c)));
            }
            drop_connection(world, name, &a, &b);
        }
        Outcome::Sync { from, to } => {
            let generation = world.meta(name, &from).map(|m| m.generation);
            if let (Some(generation), Some(meta)) = (
                generation,
                world.data.get_mut(name).and_then(|d| d.disks.get_mut(&to)),
            ) {
                meta.generation = generation;
                meta.inconsistent = true;
                meta.outdated = false;
                meta.sync_from = Some(from.clone());
            }
            set_disks(world, &to, name, "Inconsistent");
            clear_discard(world, name, &from, &to);
        }
        Outcome::ForceSecondary { node } => {
            if let Some(res) = world.resource_mut(&node, name) {
                res.role = Role::Secondary;
                res.force_io_failures = true;
            }
        }
        Outcome::Refresh { node } => {
            if let Some(meta) = world
                .data
                .get_mut(name)
                .and_then(|d| d.disks.get_mut(&node))
            {
                meta.outdated = false;
            }
            set_disks(world, &node, name, "UpToDate");
        }
    }
}

/// The handlers `me` runs for its volumes with a disk when it finds a split brain with
/// `other`, in order.
fn split_brain_calls(world: &WorldState, name: &str, me: &str, other: &str) -> Vec<view::Obj> {
    let (Some(mine), Some(theirs)) = (world.resource(me, name), world.resource(other, name)) else {
        return Vec::new();
    };
    let mut calls = Vec::new();
    for helper in ["initial-split-brain", "split-brain"] {
        for device in mine.devices.values().filter(|d| d.backing.is_some()) {
            calls.push(view::Obj::Helper {
                name: name.to_string(),
                peer_node_id: theirs.node_id,
                conn_name: other.to_string(),
                volume: device.volume,
                minor: device.minor,
                helper: helper.to_string(),
                status: None,
            });
        }
    }
    calls
}

/// `--discard-my-data` applies to one handshake.
fn clear_discard(world: &mut WorldState, name: &str, a: &str, b: &str) {
    for (me, other) in [(a, b), (b, a)] {
        let Some(other_id) = world.resource(other, name).map(|r| r.node_id) else {
            continue;
        };
        if let Some(conn) = world
            .resource_mut(me, name)
            .and_then(|r| r.connections.get_mut(&other_id))
        {
            conn.discard_my_data = false;
        }
    }
}

/// Drops the connection between `a` and `b` for resource `name` on both sides: StandAlone
/// until someone issues `connect` again.
pub fn drop_connection(world: &mut WorldState, name: &str, a: &str, b: &str) {
    for (me, other) in [(a, b), (b, a)] {
        let Some(other_id) = world.resource(other, name).map(|r| r.node_id) else {
            continue;
        };
        if let Some(conn) = world
            .resource_mut(me, name)
            .and_then(|r| r.connections.get_mut(&other_id))
        {
            conn.connect = false;
            conn.discard_my_data = false;
        }
    }
}

/// A Primary with a disk that is not connected to a peer holding its generation (or a later
/// one) writes what that peer will not have: it (and the peers connected to it that share its
/// data) move to a new generation, a child of the old one. Real DRBD arms a new current UUID
/// on promotion or on losing a peer while Primary, and makes it at the next write; the
/// simulator assumes that write comes. A Primary without quorum writes nothing
/// ([`view::writes_blocked`]): DRBD fails or freezes its I/O and makes no new current UUID
/// without quorum, so it stays where it was and resyncs from the majority once it is back
/// (a Secondary by then).
fn diverge(world: &mut WorldState) {
    for _ in 0..SETTLE_ROUNDS {
        let Some((name, node, old)) = next_divergence(world) else {
            return;
        };
        let group: Vec<String> = world
            .data
            .get(&name)
            .map(|d| {
                d.disks
                    .iter()
                    .filter(|(other, meta)| {
                        meta.generation == old
                            && (**other == node || world.connected(&name, &node, other))
                    })
                    .map(|(other, _)| other.clone())
                    .collect()
            })
            .unwrap_or_default();
        let Some(data) = world.data.get_mut(&name) else {
            return;
        };
        data.last += 1;
        let new = data.last;
        data.parents.insert(new, old);
        for member in group {
            if let Some(meta) = data.disks.get_mut(&member) {
                meta.generation = new;
            }
        }
    }
}

fn next_divergence(world: &WorldState) -> Option<(String, String, u64)> {
    for (name, data) in &world.data {
        for (node, meta) in &data.disks {
            let Some(res) = world.resource(node, name) else {
                continue;
            };
            if res.role != Role::Primary
                || !attached(res)
                || meta.inconsistent
                || view::writes_blocked(res)
            {
                continue;
            }
            // A peer that has (at least) everything this node has would not have what it
            // writes now; one on another branch or behind it is already apart from it.
            let cut_off = data.disks.iter().any(|(other, m)| {
                other != node
                    && !world.connected(name, node, other)
                    && world.descends(name, meta.generation, m.generation)
            });
            if cut_off {
                return Some((name.clone(), node.clone(), meta.generation));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drbd_state::{Backing, Device, NetPath};
    use crate::drbd_view::{
        SS_NO_QUORUM, SS_NO_UP_TO_DATE_DISK, SS_TWO_PRIMARIES, promotion_check,
    };

    const NODES: [&str; 3] = ["n1", "n2", "n3"];

    /// Resource `data` on the first `count` nodes: node ids 0.., every node connected to every
    /// other (connect issued), one volume, attached or diskless.
    fn world(count: usize, disks: bool) -> WorldState {
        let mut world = WorldState::default();
        for (id, node) in NODES.iter().enumerate().take(count) {
            let mut res = Resource {
                name: "data".into(),
                node_id: id as u32,
                role: Role::Secondary,
                options: Vec::new(),
                devices: BTreeMap::new(),
                connections: BTreeMap::new(),
                quorumless: BTreeSet::new(),
                force_io_failures: false,
            };
            res.devices.insert(
                0,
                Device {
                    volume: 0,
                    minor: 0,
                    disk: if disks { "UpToDate" } else { "Diskless" }.into(),
                    backing: disks.then(|| Backing {
                        lower: "/dev/loop0".into(),
                        meta: "/dev/loop0".into(),
                        meta_index: "internal".into(),
                        loop_dev: format!("/dev/loop{}", 10 + id).into(),
                        node: "/dev/drbd0".into(),
                        major: 7,
                        minor: 10 + id as u32,
                        size_bytes: 1 << 20,
                        options: Vec::new(),
                        seen_open: false,
                    }),
                    client: false,
                    quorum: true,
                },
            );
            for (peer_id, peer) in NODES.iter().enumerate().take(count) {
                if peer_id == id {
                    continue;
                }
                res.connections.insert(
                    peer_id as u32,
                    Connection {
                        peer_node_id: peer_id as u32,
                        name: peer.to_string(),
                        net: Vec::new(),
                        paths: vec![NetPath {
                            local: format!("ipv4:127.0.0.{}:7789", id + 1),
                            remote: format!("ipv4:127.0.0.{}:7789", peer_id + 1),
                        }],
                        connect: true,
                        discard_my_data: false,
                        peer_devices: BTreeMap::new(),
                    },
                );
            }
            let mut state = State::default();
            state.resources.insert("data".into(), res);
            world.nodes.insert(node.to_string(), state);
            if disks {
                world.sync_metadata(node, &BTreeSet::new());
            }
        }
        settle(&mut world);
        world
    }

    fn res<'a>(world: &'a WorldState, node: &str) -> &'a Resource {
        &world.nodes[node].resources["data"]
    }

    /// `node`'s view of `peer`: (connection state, peer role, peer disk).
    fn sees(world: &WorldState, node: &str, peer: &str) -> (String, Role, String) {
        let r = res(world, node);
        let id = NODES.iter().position(|n| *n == peer).expect("a node") as u32;
        let v = WorldPeers { world, node }.view(r, &r.connections[&id]);
        (v.cstate.clone(), v.peer_role, v.peer_disk(0).to_string())
    }

    fn disk(world: &WorldState, node: &str) -> String {
        res(world, node).devices[&0].disk.clone()
    }

    fn set_role(world: &mut WorldState, node: &str, role: Role) {
        if let Some(r) = world.resource_mut(node, "data") {
            r.role = role;
        }
        settle(world);
        finish_resyncs(world);
    }

    /// `primary` as the simulator checks it: Ok, or the state change's result.
    fn promote(world: &mut WorldState, node: &str) -> Result<(), i32> {
        let mut state = world.nodes.remove(node).expect("node");
        let checked = {
            let peers = WorldPeers { world, node };
            promotion_check(&state.resources["data"], &peers, false)
        };
        if checked.is_ok()
            && let Some(r) = state.resources.get_mut("data")
        {
            r.become_primary();
        }
        world.nodes.insert(node.to_string(), state);
        settle(world);
        finish_resyncs(world);
        checked.map(drop)
    }

    fn cut(world: &mut WorldState, a: &str, b: &str) {
        world.cut.insert(link(a, b));
        settle(world);
    }

    fn heal(world: &mut WorldState, a: &str, b: &str) {
        world.cut.remove(&link(a, b));
        settle(world);
        finish_resyncs(world);
    }

    fn connected(role: Role, disk: &str) -> (String, Role, String) {
        ("Connected".into(), role, disk.into())
    }

    fn unknown(cstate: &str) -> (String, Role, String) {
        (cstate.into(), Role::Unknown, "DUnknown".into())
    }

    #[test]
    fn connection_needs_both_sides_power_and_the_link() {
        type Change = fn(&mut WorldState);
        type Seen = (String, Role, String);
        // (what happens, how n1 sees n2, how n2 sees n1)
        let cases: [(&str, Change, Seen, Seen); 6] = [
            (
                "both connect",
                |_| {},
                connected(Role::Secondary, "UpToDate"),
                connected(Role::Secondary, "UpToDate"),
            ),
            (
                "n2 disconnects",
                |w| {
                    if let Some(r) = w.resource_mut("n2", "data") {
                        r.connections.get_mut(&0).expect("conn").connect = false;
                    }
                },
                unknown("Connecting"),
                unknown("StandAlone"),
            ),
            (
                "link cut",
                |w| cut(w, "n2", "n1"),
                unknown("Connecting"),
                unknown("Connecting"),
            ),
            (
                "n2 powered off",
                |w| {
                    w.nodes.remove("n2");
                    w.off.insert("n2".into());
                },
                unknown("Connecting"),
                unknown("absent"),
            ),
            (
                "n2 down",
                |w| {
                    if let Some(s) = w.nodes.get_mut("n2") {
                        s.resources.clear();
                    }
                },
                unknown("Connecting"),
                unknown("absent"),
            ),
            (
                "cut and healed",
                |w| {
                    cut(w, "n1", "n2");
                    heal(w, "n1", "n2");
                },
                connected(Role::Secondary, "UpToDate"),
                connected(Role::Secondary, "UpToDate"),
            ),
        ];
        for (what, change, n1_sees, n2_sees) in cases {
            let mut w = world(2, true);
            change(&mut w);
            settle(&mut w);
            assert_eq!(sees(&w, "n1", "n2"), n1_sees, "{what}: n1's view");
            if w.nodes
                .get("n2")
                .is_some_and(|s| s.resources.contains_key("data"))
            {
                assert_eq!(sees(&w, "n2", "n1"), n2_sees, "{what}: n2's view");
            }
        }
    }

    #[test]
    fn promotion_rules_exit_11_and_17() {
        let mut w = world(2, true);
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        assert_eq!(sees(&w, "n2", "n1"), connected(Role::Primary, "UpToDate"));
        // A connected Primary peer: "Multiple primaries not allowed by config" (exit 11).
        assert_eq!(promote(&mut w, "n2"), Err(SS_TWO_PRIMARIES));
        // Allowed on both sides, two primaries may meet.
        for (node, peer) in [("n1", 1), ("n2", 0)] {
            if let Some(r) = w.resource_mut(node, "data") {
                let conn = r.connections.get_mut(&peer).expect("conn");
                conn.net.push(("allow-two-primaries".into(), "yes".into()));
            }
        }
        assert_eq!(promote(&mut w, "n2"), Ok(()));

        // No UpToDate data anywhere reachable: "Need access to UpToDate data" (exit 17).
        let mut w = world(2, true);
        if let Some(r) = w.resource_mut("n2", "data") {
            r.devices.get_mut(&0).expect("dev").disk = "Outdated".into();
        }
        w.sync_metadata("n2", &attached_volumes(w.nodes.get("n2")));
        // Connected to an UpToDate peer, an Outdated node learns it is UpToDate again.
        settle(&mut w);
        assert_eq!(disk(&w, "n2"), "UpToDate");
        cut(&mut w, "n1", "n2");
        if let Some(r) = w.resource_mut("n2", "data") {
            r.devices.get_mut(&0).expect("dev").disk = "Outdated".into();
        }
        assert_eq!(promote(&mut w, "n2"), Err(SS_NO_UP_TO_DATE_DISK));
        // Diskless nodes can only promote beside a connected UpToDate peer.
        let mut w = world(2, false);
        assert_eq!(promote(&mut w, "n1"), Err(SS_NO_UP_TO_DATE_DISK));
    }

    #[test]
    fn a_secondary_cut_off_from_the_primary_resyncs_on_heal() {
        let mut w = world(2, true);
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        cut(&mut w, "n1", "n2");
        // Without quorum or fencing, DRBD lets n2 keep its UpToDate disk while cut off.
        assert_eq!(disk(&w, "n2"), "UpToDate");
        assert_eq!(sees(&w, "n2", "n1"), unknown("Connecting"));
        let (g1, g2) = (
            w.meta("data", "n1").expect("meta").generation,
            w.meta("data", "n2").expect("meta").generation,
        );
        assert_ne!(g1, g2, "the Primary wrote what n2 does not have");

        // Held, the resync shows: n2 Inconsistent and SyncTarget, n1 SyncSource.
        w.hold_resync = true;
        heal(&mut w, "n1", "n2");
        assert_eq!(disk(&w, "n2"), "Inconsistent");
        let r2 = res(&w, "n2");
        let v = WorldPeers {
            world: &w,
            node: "n2",
        }
        .view(r2, &r2.connections[&0]);
        assert_eq!(v.replication(0), "SyncTarget");
        let r1 = res(&w, "n1");
        let v = WorldPeers {
            world: &w,
            node: "n1",
        }
        .view(r1, &r1.connections[&1]);
        assert_eq!(
            (v.replication(0), v.peer_disk(0)),
            ("SyncSource", "Inconsistent")
        );
        // Cut in the middle: n2 stays Inconsistent, and cannot promote on its own.
        cut(&mut w, "n1", "n2");
        assert_eq!(disk(&w, "n2"), "Inconsistent");
        assert_eq!(promote(&mut w, "n2"), Err(SS_NO_UP_TO_DATE_DISK));
        w.hold_resync = false;
        heal(&mut w, "n1", "n2");
        assert_eq!(disk(&w, "n2"), "UpToDate");
        assert_eq!(sees(&w, "n1", "n2"), connected(Role::Secondary, "UpToDate"));
        assert_eq!(
            w.meta("data", "n1").map(|m| m.generation),
            w.meta("data", "n2").map(|m| m.generation)
        );
    }

    #[test]
    fn two_primaries_while_cut_are_a_split_brain_until_one_discards() {
        let mut w = world(2, true);
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        cut(&mut w, "n1", "n2");
        // n1 alone on a new generation is ahead of n2, not apart from it.
        settle(&mut w);
        assert_eq!(w.diverged("data"), []);
        // DRBD without quorum lets the cut-off UpToDate Secondary promote.
        assert_eq!(promote(&mut w, "n2"), Ok(()));
        assert_eq!(w.diverged("data"), [("n1".to_string(), "n2".to_string())]);
        set_role(&mut w, "n2", Role::Secondary);
        w.helper_calls.clear();
        heal(&mut w, "n1", "n2");
        assert_eq!(sees(&w, "n1", "n2"), unknown("StandAlone"));
        assert_eq!(sees(&w, "n2", "n1"), unknown("StandAlone"));
        // Each side ran DRBD's handlers for it, about the other, as the kernel does.
        let calls: Vec<(String, String, String)> = w
            .helper_calls
            .drain(..)
            .filter_map(|(node, obj)| match obj {
                view::Obj::Helper {
                    conn_name, helper, ..
                } => Some((node, conn_name, helper)),
                _ => None,
            })
            .collect();
        let call = |n: &str, p: &str, h: &str| (n.to_string(), p.to_string(), h.to_string());
        assert_eq!(
            calls,
            [
                call("n1", "n2", "initial-split-brain"),
                call("n1", "n2", "split-brain"),
                call("n2", "n1", "initial-split-brain"),
                call("n2", "n1", "split-brain"),
            ]
        );
        // Connecting again finds the same split brain.
        for (node, peer) in [("n1", 1), ("n2", 0)] {
            if let Some(r) = w.resource_mut(node, "data") {
                r.connections.get_mut(&peer).expect("conn").connect = true;
            }
        }
        settle(&mut w);
        assert_eq!(sees(&w, "n1", "n2"), unknown("StandAlone"));
        // n2 discards its data: it resyncs from n1.
        for (node, peer, discard) in [("n1", 1, false), ("n2", 0, true)] {
            if let Some(r) = w.resource_mut(node, "data") {
                let conn = r.connections.get_mut(&peer).expect("conn");
                conn.connect = true;
                conn.discard_my_data = discard;
            }
        }
        settle(&mut w);
        finish_resyncs(&mut w);
        assert_eq!(sees(&w, "n1", "n2"), connected(Role::Secondary, "UpToDate"));
        assert_eq!(sees(&w, "n2", "n1"), connected(Role::Primary, "UpToDate"));
        assert!(!res(&w, "n2").connections[&0].discard_my_data);
        assert_eq!(w.diverged("data"), []);
    }

    #[test]
    fn a_powered_off_node_comes_back_behind() {
        let mut w = world(3, true);
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        let n3 = w.nodes.remove("n3").expect("n3");
        w.off.insert("n3".into());
        settle(&mut w);
        // n1 and n2 stay together on the new generation; n3 is left behind.
        assert_eq!(sees(&w, "n1", "n2"), connected(Role::Secondary, "UpToDate"));
        assert_eq!(sees(&w, "n1", "n3"), unknown("Connecting"));
        let g = |w: &WorldState, n: &str| w.meta("data", n).map(|m| m.generation);
        assert_eq!(g(&w, "n1"), g(&w, "n2"));
        assert_ne!(g(&w, "n1"), g(&w, "n3"));
        // Powered on and up again: attached from its metadata, then resynced.
        w.off.remove("n3");
        w.nodes.insert("n3".into(), n3);
        settle(&mut w);
        finish_resyncs(&mut w);
        assert_eq!(g(&w, "n3"), g(&w, "n1"));
        assert_eq!(sees(&w, "n3", "n1"), connected(Role::Primary, "UpToDate"));
    }

    #[test]
    fn a_primary_never_becomes_sync_target() {
        let mut w = world(2, true);
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        cut(&mut w, "n1", "n2");
        set_role(&mut w, "n1", Role::Secondary);
        // n2 is behind n1. Made Primary without a settle in between (so without diverging,
        // which a promotion while cut would do), it meets n1 as a Primary that is behind.
        let g1 = w.meta("data", "n1").expect("meta").generation;
        assert_ne!(w.meta("data", "n2").expect("meta").generation, g1);
        if let Some(r) = w.resource_mut("n2", "data") {
            r.role = Role::Primary;
        }
        // DRBD drops the connection rather than make a Primary SyncTarget.
        heal(&mut w, "n1", "n2");
        assert_eq!(sees(&w, "n1", "n2"), unknown("StandAlone"));
    }

    /// n1 and n2 with disks, n3 a diskless client (as drbdadm sets up `disk none`: `--diskless`
    /// on n3, `--bitmap=no` towards it on the others), `quorum majority`, all connected.
    fn tiebreaker_world() -> WorldState {
        let mut w = world(3, true);
        if let Some(r) = w.resource_mut("n3", "data") {
            let device = r.devices.get_mut(&0).expect("dev");
            device.backing = None;
            device.disk = "Diskless".into();
            device.client = true;
        }
        if let Some(data) = w.data.get_mut("data") {
            data.disks.remove("n3");
        }
        for node in NODES {
            if let Some(r) = w.resource_mut(node, "data") {
                r.options.push(("quorum".into(), "majority".into()));
                if let Some(conn) = r.connections.get_mut(&2) {
                    conn.peer_devices
                        .insert(0, vec![("bitmap".into(), "no".into())]);
                }
            }
        }
        settle(&mut w);
        w
    }

    fn quorum(world: &WorldState, node: &str) -> bool {
        res(world, node).devices[&0].quorum
    }

    fn power_off(world: &mut WorldState, node: &str) {
        world.nodes.remove(node);
        world.off.insert(node.to_string());
        settle(world);
    }

    #[test]
    fn a_diskless_tiebreaker_is_a_client_and_no_voter() {
        let w = tiebreaker_world();
        for node in NODES {
            assert!(quorum(&w, node), "{node}");
        }
        assert_eq!(sees(&w, "n1", "n3"), connected(Role::Secondary, "Diskless"));
        assert_eq!(sees(&w, "n3", "n1"), connected(Role::Secondary, "UpToDate"));
        let n1 = res(&w, "n1");
        let count = view::quorum_count(
            n1,
            &n1.devices[&0],
            &WorldPeers {
                world: &w,
                node: "n1",
            },
        );
        assert_eq!(
            (count.up_to_date, count.diskless, count.voters()),
            (2, 1, 2)
        );
        let n3 = res(&w, "n3");
        let count = view::quorum_count(
            n3,
            &n3.devices[&0],
            &WorldPeers {
                world: &w,
                node: "n3",
            },
        );
        assert_eq!(
            (count.up_to_date, count.diskless, count.voters()),
            (2, 1, 2)
        );
    }

    #[test]
    fn the_tiebreaker_keeps_quorum_for_the_survivor_of_a_power_cut() {
        let mut w = tiebreaker_world();
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        power_off(&mut w, "n1");
        // One of two diskful voters, and the diskless majority: n2 keeps the quorum it had.
        assert!(quorum(&w, "n2") && quorum(&w, "n3"));
        assert_eq!(promote(&mut w, "n2"), Ok(()));
        // n1 is known to have no quorum: when the tiebreaker goes later, n2 keeps it still
        // (DRBD 9.1.13, 9.2.2 on).
        assert!(res(&w, "n2").quorumless.contains(&0));
        power_off(&mut w, "n3");
        assert!(quorum(&w, "n2"));
        // n1 comes back and connects: it is reached again, and counted as a voter.
        w.off.remove("n1");
        let mut n1 = State::default();
        let mut r = tiebreaker_world().nodes["n1"].resources["data"].clone();
        r.role = Role::Secondary;
        r.devices.get_mut(&0).expect("dev").quorum = false;
        n1.resources.insert("data".into(), r);
        w.nodes.insert("n1".into(), n1);
        settle(&mut w);
        finish_resyncs(&mut w);
        assert!(res(&w, "n2").quorumless.is_empty());
        assert!(quorum(&w, "n1") && quorum(&w, "n2"));
    }

    #[test]
    fn a_node_cut_from_both_peers_loses_quorum_and_never_regains_it_through_the_tiebreaker() {
        let mut w = tiebreaker_world();
        cut(&mut w, "n1", "n2");
        // Both keep it: each still sees the tiebreaker.
        assert!(quorum(&w, "n1") && quorum(&w, "n2"));
        cut(&mut w, "n1", "n3");
        assert!(!quorum(&w, "n1"));
        assert!(quorum(&w, "n2") && quorum(&w, "n3"));
        assert_eq!(promote(&mut w, "n1"), Err(SS_NO_QUORUM));
        // The tiebreaker alone cannot hand it back: quorum is kept, never gained that way.
        heal(&mut w, "n1", "n3");
        assert!(!quorum(&w, "n1"));
        assert_eq!(promote(&mut w, "n1"), Err(SS_NO_QUORUM));
        // Its diskful peer can.
        heal(&mut w, "n1", "n2");
        assert!(quorum(&w, "n1"));
        // After a power cut of everything, a diskful node that comes up beside the tiebreaker
        // alone has no quorum to keep, and the other diskful node may hold newer data.
        let fresh = tiebreaker_world();
        let mut w = tiebreaker_world();
        for node in NODES {
            power_off(&mut w, node);
        }
        for node in ["n2", "n3"] {
            w.off.remove(node);
            let mut r = fresh.nodes[node].resources["data"].clone();
            r.devices.get_mut(&0).expect("dev").quorum = false;
            let mut state = State::default();
            state.resources.insert("data".into(), r);
            w.nodes.insert(node.into(), state);
            settle(&mut w);
        }
        assert_eq!(sees(&w, "n2", "n3"), connected(Role::Secondary, "Diskless"));
        assert!(!quorum(&w, "n2") && !quorum(&w, "n3"));
        assert_eq!(promote(&mut w, "n2"), Err(SS_NO_QUORUM));
    }

    #[test]
    fn a_primary_reached_through_the_tiebreaker_refuses_a_second_one() {
        let mut w = tiebreaker_world();
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        cut(&mut w, "n1", "n2");
        // n2 keeps quorum through n3, but n3 still reaches Primary n1: DRBD's cluster-wide
        // promotion finds it (and says so in may_promote).
        assert!(quorum(&w, "n2"));
        assert_eq!(promote(&mut w, "n2"), Err(SS_TWO_PRIMARIES));
        let peers = WorldPeers {
            world: &w,
            node: "n2",
        };
        assert!(!view::promotion(res(&w, "n2"), &peers).0);
        // Two primaries allowed: then they must be directly connected.
        if let Some(r) = w.resource_mut("n2", "data") {
            for conn in r.connections.values_mut() {
                conn.net.push(("allow-two-primaries".into(), "yes".into()));
            }
        }
        assert_eq!(promote(&mut w, "n2"), Err(view::SS_WEAKLY_CONNECTED));
        // The tiebreaker is no data source: alone with it, a disk that is behind stays so.
        assert_ne!(
            w.meta("data", "n1").map(|m| m.generation),
            w.meta("data", "n2").map(|m| m.generation)
        );
        assert_eq!(w.meta("data", "n3"), None);
    }

    /// Sets resource option `key` on every node (as `resource-options` would), then settles.
    fn set_option(world: &mut WorldState, key: &str, value: &str) {
        for node in NODES {
            if let Some(r) = world.resource_mut(node, "data") {
                r.options.push((key.into(), value.into()));
            }
        }
        settle(world);
    }

    fn generation(world: &WorldState, node: &str) -> Option<u64> {
        world.meta("data", node).map(|m| m.generation)
    }

    fn suspended(world: &WorldState, node: &str) -> bool {
        let snapshot = view::snapshot(
            &world.nodes[node],
            &WorldPeers { world, node },
            "data",
            &mut |_| false,
        );
        snapshot.iter().any(|o| {
            matches!(
                o,
                view::Obj::Resource {
                    suspended_quorum: true,
                    ..
                }
            )
        })
    }

    #[test]
    fn a_primary_without_quorum_under_io_error_writes_nothing_and_resyncs_from_the_majority() {
        let mut w = tiebreaker_world();
        set_option(&mut w, "on-no-quorum", "io-error");
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        let before = generation(&w, "n1");
        assert_eq!(generation(&w, "n2"), before);
        // n1 loses the tiebreaker, then its diskful peer: it loses its quorum in the very
        // change that parts it from n2's data, so it never writes apart from n2.
        cut(&mut w, "n1", "n3");
        assert!(quorum(&w, "n1"));
        assert_eq!(generation(&w, "n1"), before);
        cut(&mut w, "n1", "n2");
        assert!(!quorum(&w, "n1") && quorum(&w, "n2"));
        assert_eq!(res(&w, "n1").role, Role::Primary);
        assert_eq!(
            generation(&w, "n1"),
            before,
            "no new generation without quorum"
        );
        assert_eq!(w.diverged("data"), []);
        // io-error fails requests; nothing is suspended.
        assert!(!suspended(&w, "n1"));
        // The majority takes over: n2 writes what n1 has not, n1 is behind, not apart.
        assert_eq!(promote(&mut w, "n2"), Ok(()));
        assert_ne!(generation(&w, "n2"), before);
        assert_eq!(w.diverged("data"), []);
        // n1 gives up (as converge stops the stack) and is healed: it becomes n2's
        // SyncTarget, then UpToDate on n2's generation, with quorum again.
        set_role(&mut w, "n1", Role::Secondary);
        w.hold_resync = true;
        heal(&mut w, "n1", "n2");
        assert_eq!(disk(&w, "n1"), "Inconsistent");
        let r1 = res(&w, "n1");
        let v = WorldPeers {
            world: &w,
            node: "n1",
        }
        .view(r1, &r1.connections[&1]);
        assert_eq!(v.replication(0), "SyncTarget");
        w.hold_resync = false;
        heal(&mut w, "n1", "n3");
        assert_eq!(disk(&w, "n1"), "UpToDate");
        assert_eq!(generation(&w, "n1"), generation(&w, "n2"));
        assert!(quorum(&w, "n1"));
        assert_eq!(sees(&w, "n1", "n2"), connected(Role::Primary, "UpToDate"));
        assert_eq!(w.diverged("data"), []);
    }

    #[test]
    fn a_primary_without_quorum_under_suspend_io_is_suspended_and_writes_nothing() {
        // No on-no-quorum option: DRBD's default, suspend-io.
        let mut w = tiebreaker_world();
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        let before = generation(&w, "n1");
        assert!(!suspended(&w, "n1"));
        cut(&mut w, "n1", "n3");
        cut(&mut w, "n1", "n2");
        assert!(suspended(&w, "n1"), "frozen for lack of quorum");
        assert!(!suspended(&w, "n2"));
        assert_eq!(generation(&w, "n1"), before);
        assert_eq!(promote(&mut w, "n2"), Ok(()));
        assert_eq!(w.diverged("data"), []);
        // Quorum back, I/O thaws.
        set_role(&mut w, "n1", Role::Secondary);
        heal(&mut w, "n1", "n2");
        assert!(quorum(&w, "n1") && !suspended(&w, "n1"));
        assert_eq!(generation(&w, "n1"), generation(&w, "n2"));
    }

    /// The tiebreaker world with `on-suspended-primary-outdated force-secondary` where `force`,
    /// n1 Primary and then cut off from both peers: its I/O suspended for lack of quorum.
    fn suspended_holder(force: bool) -> WorldState {
        let mut w = tiebreaker_world();
        if force {
            set_option(&mut w, "on-suspended-primary-outdated", "force-secondary");
        }
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        cut(&mut w, "n1", "n3");
        cut(&mut w, "n1", "n2");
        assert!(suspended(&w, "n1"));
        w
    }

    /// `on-suspended-primary-outdated force-secondary` (DRBD 9.1.7): the frozen old Primary
    /// rejoins the side that took over as a Secondary, its held I/O failed, and resyncs.
    #[test]
    fn a_suspended_primary_outdated_by_the_majority_is_forced_secondary_when_they_meet() {
        let mut w = suspended_holder(true);
        assert_eq!(promote(&mut w, "n2"), Ok(()));
        // The tiebreaker alone neither hands quorum back nor outdates it (no data).
        heal(&mut w, "n1", "n3");
        assert_eq!(res(&w, "n1").role, Role::Primary);
        assert!(suspended(&w, "n1") && !res(&w, "n1").force_io_failures);
        // Meeting n2, whose data is newer: Secondary, its I/O failed, then n2's SyncTarget.
        w.hold_resync = true;
        heal(&mut w, "n1", "n2");
        let r1 = res(&w, "n1");
        assert_eq!(r1.role, Role::Secondary);
        assert!(r1.force_io_failures);
        assert_eq!(disk(&w, "n1"), "Inconsistent");
        assert!(quorum(&w, "n1") && !suspended(&w, "n1"));
        w.hold_resync = false;
        assert!(finish_resyncs(&mut w));
        assert_eq!(disk(&w, "n1"), "UpToDate");
        assert_eq!(generation(&w, "n1"), generation(&w, "n2"));
        assert_eq!(sees(&w, "n1", "n2"), connected(Role::Primary, "UpToDate"));
        assert_eq!(w.diverged("data"), []);
        // Promoted again some day, its I/O works again.
        set_role(&mut w, "n2", Role::Secondary);
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        assert!(!res(&w, "n1").force_io_failures);
    }

    #[test]
    fn a_suspended_primary_that_meets_the_majority_again_before_it_moved_on_resumes() {
        let mut w = suspended_holder(true);
        // Nobody took over: the same data; n1 stays Primary, its I/O resumes.
        heal(&mut w, "n1", "n2");
        let r1 = res(&w, "n1");
        assert_eq!(r1.role, Role::Primary);
        assert!(!r1.force_io_failures);
        assert!(quorum(&w, "n1") && !suspended(&w, "n1"));
        assert_eq!(sees(&w, "n2", "n1"), connected(Role::Primary, "UpToDate"));
    }

    #[test]
    fn without_force_secondary_a_suspended_primary_and_the_new_one_do_not_connect() {
        let mut w = suspended_holder(false);
        assert_eq!(promote(&mut w, "n2"), Ok(()));
        heal(&mut w, "n1", "n2");
        assert_eq!(res(&w, "n1").role, Role::Primary);
        assert!(suspended(&w, "n1"));
        assert_eq!(sees(&w, "n1", "n2").0, "StandAlone");
    }

    #[test]
    fn a_primary_that_keeps_quorum_through_the_tiebreaker_writes_apart_from_its_peer() {
        // Cut from n2 first, n1 still has quorum (the tiebreaker): it may go on writing, and
        // the simulator assumes it does. When it then loses the tiebreaker too, n2 keeps its
        // quorum and may promote on data that misses those writes: a split brain (in DRBD
        // too, if n1 wrote in between).
        let mut w = tiebreaker_world();
        set_option(&mut w, "on-no-quorum", "io-error");
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        let before = generation(&w, "n1");
        cut(&mut w, "n1", "n2");
        assert!(quorum(&w, "n1"));
        assert_ne!(generation(&w, "n1"), before);
        cut(&mut w, "n1", "n3");
        assert!(!quorum(&w, "n1") && quorum(&w, "n2"));
        assert_eq!(promote(&mut w, "n2"), Ok(()));
        assert_eq!(w.diverged("data"), [("n1".to_string(), "n2".to_string())]);
    }

    #[test]
    fn without_quorum_a_primary_cut_off_from_both_peers_writes_on_and_diverges() {
        // `quorum off`: on-no-quorum never applies, whatever it says.
        let mut w = tiebreaker_world();
        set_option(&mut w, "quorum", "off");
        set_option(&mut w, "on-no-quorum", "io-error");
        assert_eq!(promote(&mut w, "n1"), Ok(()));
        let before = generation(&w, "n1");
        cut(&mut w, "n1", "n3");
        cut(&mut w, "n1", "n2");
        assert!(
            quorum(&w, "n1"),
            "without the option, quorum is always there"
        );
        assert_ne!(generation(&w, "n1"), before, "n1 writes what n2 lacks");
        assert!(!suspended(&w, "n1"));
        assert_eq!(promote(&mut w, "n2"), Ok(()));
        assert_eq!(w.diverged("data"), [("n1".to_string(), "n2".to_string())]);
    }

    #[test]
    fn names_and_links() {
        assert_eq!(link("b", "a"), ("a".into(), "b".into()));
        for ok in ["deb1", "node-2", "n_3.x"] {
            assert!(valid_node_name(ok), "{ok}");
        }
        for bad in ["", "..", "a/b", "-x", ".hidden", "a b"] {
            assert!(!valid_node_name(bad), "{bad:?}");
        }
        let w = world(2, false);
        assert_eq!(w.node_names(), ["n1", "n2"]);
        assert!(w.knows("n2") && !w.knows("n3"));
    }
}
