//! What the simulated kernel reports: the state as DRBD's objects (resource, connection, device,
//! peer device, path), the rules DRBD applies to them, and the events2 records that a change
//! between two snapshots produces.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::drbd_state::{Backing, Connection, Device, PeerSim, Resource, Role, State};

// DRBD's state-change results (drbd.h) that the rules below produce.
pub const SS_TWO_PRIMARIES: i32 = -1;
pub const SS_NO_UP_TO_DATE_DISK: i32 = -2;
pub const SS_WEAKLY_CONNECTED: i32 = -24;
pub const SS_NO_QUORUM: i32 = -25;

/// A resource option as given (`--quorum=majority`), the last one winning.
fn resource_option<'a>(res: &'a Resource, key: &str) -> Option<&'a str> {
    res.options
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Whether the resource's `quorum` option asks for quorum at all.
pub fn quorum_enabled(res: &Resource) -> bool {
    resource_option(res, "quorum").is_some_and(|q| q != "off")
}

/// DRBD's `calc_quorum_at`: how many of `voters` a setting (`majority`, `all`, a number)
/// asks for. A number drbdsetup would not have taken asks for nothing.
fn quorum_at(setting: &str, voters: usize) -> usize {
    match setting {
        "majority" => voters / 2 + 1,
        "all" => voters,
        number => number.parse().unwrap_or(0),
    }
}

/// What one device counts for its quorum, as DRBD 9's `calc_quorum` (drbd_state.c) sorts
/// this node and each configured peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QuorumCount {
    pub up_to_date: usize,
    /// Connected (or local) disks that are not UpToDate, and connected peers that are
    /// diskless without being clients.
    pub present: usize,
    /// Not counted in the simulator: DRBD's allowance for peers known to be Outdated
    /// (a Secondary that left cleanly) is not modelled.
    pub outdated: usize,
    /// Lost peers this node knows cannot have quorum ([`Resource::quorumless`]).
    pub quorumless: usize,
    /// Connected diskless clients, this node included if it is one: the tiebreakers.
    pub diskless: usize,
    /// Diskless clients that are not connected.
    pub missing_diskless: usize,
    /// Diskful peers that are not connected, and this node when it is diskless without
    /// being a client (DRBD gives such a node no vote).
    pub unknown: usize,
}

impl QuorumCount {
    /// The nodes that vote. Diskless clients never do; Outdated and quorumless peers only
    /// while some other peer is unknown (they cannot have formed a partition of their own
    /// then).
    pub fn voters(&self) -> usize {
        if self.unknown > 0 {
            self.outdated + self.quorumless + self.unknown + self.up_to_date + self.present
        } else {
            self.up_to_date + self.present
        }
    }
}

/// How `device` of `res` counts its quorum now.
pub fn quorum_count(res: &Resource, device: &Device, peers: &dyn Peers) -> QuorumCount {
    let mut count = QuorumCount::default();
    if device.backing.is_some() && device.disk != "Diskless" {
        if device.disk == "UpToDate" {
            count.up_to_date += 1;
        } else {
            count.present += 1;
        }
    } else if device.client {
        count.diskless += 1;
    } else {
        count.unknown += 1;
    }
    for conn in res.connections.values() {
        // A peer that may not read from this node is left out of its quorum, as in DRBD.
        if conn.net_option("allow-remote-read") == Some("no") {
            continue;
        }
        let client = conn.peer_client(device.volume);
        let view = peers.view(res, conn);
        if !view.connected {
            if client {
                count.missing_diskless += 1;
            } else if res.quorumless.contains(&conn.peer_node_id) {
                count.quorumless += 1;
            } else {
                count.unknown += 1;
            }
            continue;
        }
        match view.peer_disk(device.volume) {
            "Diskless" if client => count.diskless += 1,
            "UpToDate" => count.up_to_date += 1,
            _ => count.present += 1,
        }
    }
    count
}

/// Whether `device` has quorum after a change, as DRBD 9 computes it (`calc_quorum`): the
/// nodes it reaches with a disk against the diskful voters, `quorum-minimum-redundancy`
/// UpToDate ones among them, and the diskless tiebreaker: with an even number of voters and
/// one vote short, a majority of the diskless clients connected lets the device *keep* the
/// quorum it had ([`Device::quorum`], the value before the change), never gain it.
pub fn calc_quorum(res: &Resource, device: &Device, peers: &dyn Peers) -> bool {
    let Some(setting) = resource_option(res, "quorum").filter(|q| *q != "off") else {
        return true;
    };
    let count = quorum_count(res, device, peers);
    let voters = count.voters();
    let needed = quorum_at(setting, voters);
    let min_redundancy = resource_option(res, "quorum-minimum-redundancy")
        .filter(|q| *q != "off")
        .map_or(0, |q| quorum_at(q, voters));
    let reached = count.up_to_date + count.present;
    if reached >= needed && count.up_to_date >= min_redundancy {
        return true;
    }
    let diskless_majority = (count.diskless + count.missing_diskless) / 2 + 1;
    voters != 0
        && voters.is_multiple_of(2)
        && reached + 1 == needed
        && count.diskless >= diskless_majority
        && device.quorum
}

/// Recomputes the quorum of every device of `res` after a change, and what the node
/// remembers of lost peers: a diskful peer it cannot reach (directly or through others)
/// while it has quorum cannot have quorum itself, and is counted as such from then on
/// (DRBD 9.1.13 and 9.2.2 on: the survivor of a diskful node's loss keeps quorum when the
/// tiebreaker goes later). Reaching the peer again forgets it.
pub fn update_quorum(res: &mut Resource, peers: &dyn Peers) {
    let reachable: BTreeSet<u32> = peers.reachable(res).iter().map(|r| r.node_id).collect();
    res.quorumless.retain(|id| !reachable.contains(id));
    let quorate: Vec<(u32, bool)> = res
        .devices
        .values()
        .map(|d| (d.volume, calc_quorum(res, d, peers)))
        .collect();
    for (volume, quorum) in quorate {
        if let Some(device) = res.devices.get_mut(&volume) {
            device.quorum = quorum;
        }
    }
    if !quorum_enabled(res) {
        res.quorumless.clear();
        return;
    }
    if res.devices.is_empty() || !has_quorum(res) {
        return;
    }
    let lost: Vec<u32> = res
        .connections
        .values()
        .filter(|c| {
            !reachable.contains(&c.peer_node_id)
                && !res.devices.keys().all(|volume| c.peer_client(*volume))
        })
        .map(|c| c.peer_node_id)
        .collect();
    res.quorumless.extend(lost);
}

/// Whether every device of the resource has quorum, as last computed
/// ([`update_quorum`]). Without the `quorum` option, always.
pub fn has_quorum(res: &Resource) -> bool {
    res.devices.values().all(|d| d.quorum)
}

/// What DRBD does with I/O on a device without quorum (`on-no-quorum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNoQuorum {
    /// Every request completes with EIO (drbd_req.c: `cached_err_io` fails each bio).
    IoError,
    /// Requests are frozen until quorum returns: `suspended:quorum`.
    SuspendIo,
}

/// The resource's `on-no-quorum` policy; DRBD's default is `suspend-io` (drbd.conf(5): "By
/// default DRBD freezes IO on a device, that lost quorum").
pub fn on_no_quorum(res: &Resource) -> OnNoQuorum {
    match resource_option(res, "on-no-quorum") {
        Some("io-error") => OnNoQuorum::IoError,
        _ => OnNoQuorum::SuspendIo,
    }
}

/// Whether the resource writes nothing now: some device lacks quorum, so under either
/// `on-no-quorum` policy a write fails (`io-error`) or waits (`suspend-io`). DRBD then starts
/// no new data generation either: `drbd_check_peers_new_current_uuid` (drbd_sender.c) makes
/// a new current UUID only while the device has quorum. Never without the `quorum` option
/// (every device has quorum then).
pub fn writes_blocked(res: &Resource) -> bool {
    !has_quorum(res)
}

/// Whether DRBD makes a Primary whose I/O it suspends Secondary once a peer outdates it
/// (`on-suspended-primary-outdated force-secondary`, DRBD 9.1.7 on; the default,
/// `disconnect`, only drops the connection).
pub fn forces_secondary_when_outdated(res: &Resource) -> bool {
    resource_option(res, "on-suspended-primary-outdated") == Some("force-secondary")
}

/// DRBD's `is_suspended_quorum` (drbd_state.c): I/O is frozen for lack of quorum, which
/// drbdsetup reports as `suspended:quorum`: the policy is `suspend-io` and some device has
/// no quorum (whatever the role).
pub fn suspended_quorum(res: &Resource) -> bool {
    on_no_quorum(res) == OnNoQuorum::SuspendIo && !has_quorum(res)
}

/// A node reached from this one: a connected peer, or a node connected to one (DRBD's
/// cluster-wide state changes are forwarded that far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub node_id: u32,
    pub role: Role,
    /// Connected to this node itself, not only through others.
    pub direct: bool,
}

/// How one connection looks from this node: what it sees of the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnView {
    pub cstate: String,
    pub connected: bool,
    pub peer_role: Role,
    /// The peer's disk for every volume `volumes` does not list (a scripted peer has one).
    pub peer_disk: String,
    /// Per volume, what differs from `peer_disk` and plain replication (a world's peers).
    pub volumes: BTreeMap<u32, PeerVolume>,
}

/// One volume of a peer, as seen over a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerVolume {
    pub disk: String,
    /// `Established`, `Off`, `SyncSource`, `SyncTarget`.
    pub replication: String,
}

impl ConnView {
    /// The peer's disk state for `volume` (`DUnknown` while not connected).
    pub fn peer_disk(&self, volume: u32) -> &str {
        self.volumes
            .get(&volume)
            .map_or(self.peer_disk.as_str(), |v| v.disk.as_str())
    }

    /// The replication state of `volume` towards this peer.
    pub fn replication(&self, volume: u32) -> &str {
        match self.volumes.get(&volume) {
            Some(v) => v.replication.as_str(),
            None if self.connected => "Established",
            None => "Off",
        }
    }

    /// Not connected: the peer's role and disks are unknown.
    pub fn unreachable(cstate: &str) -> ConnView {
        ConnView {
            cstate: cstate.to_string(),
            connected: false,
            peer_role: Role::Unknown,
            peer_disk: "DUnknown".to_string(),
            volumes: BTreeMap::new(),
        }
    }
}

/// Where a node's view of its peers comes from: the scripted peer of single-node mode
/// ([`PeerSim`], [`Scripted`]) or the other nodes of a world (`drbd_world::WorldPeers`).
pub trait Peers {
    /// How connection `conn` of this node's resource `res` looks.
    fn view(&self, res: &Resource, conn: &Connection) -> ConnView;

    /// The nodes `res` reaches: its connected peers, and (in a world) the nodes connected to
    /// those, and so on.
    fn reachable(&self, res: &Resource) -> Vec<Reached> {
        res.connections
            .values()
            .filter_map(|c| {
                let view = self.view(res, c);
                view.connected.then_some(Reached {
                    node_id: c.peer_node_id,
                    role: view.peer_role,
                    direct: true,
                })
            })
            .collect()
    }
}

/// One scripted peer stands behind every connection of a resource.
impl Peers for PeerSim {
    fn view(&self, _res: &Resource, conn: &Connection) -> ConnView {
        conn_view(conn, self)
    }
}

/// Single-node mode: each resource's scripted peer, as `sim-peer` set it (the default one
/// otherwise).
pub struct Scripted<'a>(pub &'a BTreeMap<String, PeerSim>);

impl Peers for Scripted<'_> {
    fn view(&self, res: &Resource, conn: &Connection) -> ConnView {
        match self.0.get(&res.name) {
            Some(peer) => conn_view(conn, peer),
            None => conn_view(conn, &PeerSim::default()),
        }
    }
}

pub fn conn_view(conn: &Connection, peer: &PeerSim) -> ConnView {
    let cstate = if !conn.connect {
        "StandAlone".to_string()
    } else {
        peer.connection.clone()
    };
    if cstate != "Connected" {
        return ConnView::unreachable(&cstate);
    }
    ConnView {
        connected: true,
        peer_role: peer.role,
        peer_disk: peer.disk.clone(),
        volumes: BTreeMap::new(),
        cstate,
    }
}

pub fn peer_of(state: &State, name: &str) -> PeerSim {
    state.peers.get(name).cloned().unwrap_or_default()
}

/// A connected peer is Primary on a connection that does not allow two primaries.
pub fn conflicting_primary(res: &Resource, peers: &dyn Peers) -> bool {
    res.connections.values().any(|c| {
        let v = peers.view(res, c);
        v.peer_role == Role::Primary && !c.allows_two_primaries()
    })
}

/// A Primary reached only through other nodes: DRBD's two-phase commit of a promotion
/// collects every reachable node's role (`check_primaries_distances`): two Primaries are
/// refused unless some connection allows them, and then still unless they are directly
/// connected.
pub fn distant_primary(res: &Resource, peers: &dyn Peers) -> Option<i32> {
    let distant = peers
        .reachable(res)
        .iter()
        .any(|r| !r.direct && r.role == Role::Primary);
    if !distant {
        return None;
    }
    if res
        .connections
        .values()
        .any(Connection::allows_two_primaries)
    {
        Some(SS_WEAKLY_CONNECTED)
    } else {
        Some(SS_TWO_PRIMARIES)
    }
}

/// Every volume can read UpToDate data: its own disk, or a connected peer's.
pub fn has_up_to_date_access(res: &Resource, peers: &dyn Peers) -> bool {
    let views: Vec<ConnView> = res
        .connections
        .values()
        .map(|c| peers.view(res, c))
        .collect();
    res.devices
        .values()
        .all(|d| d.disk == "UpToDate" || views.iter().any(|v| v.peer_disk(d.volume) == "UpToDate"))
}

/// Whether DRBD lets resource `res` (not Primary yet) be promoted: `Err(rv)` with the state
/// change's result when not, else whether `--force` has to make the local disks UpToDate.
/// In DRBD's order: the local state change's checks (a connected Primary, access to
/// UpToDate data, quorum), then the cluster-wide one's (a Primary further away).
pub fn promotion_check(res: &Resource, peers: &dyn Peers, force: bool) -> Result<bool, i32> {
    if conflicting_primary(res, peers) {
        return Err(SS_TWO_PRIMARIES);
    }
    let forced = if has_up_to_date_access(res, peers) {
        false
    } else if force && res.devices.values().all(|d| d.backing.is_some()) {
        // --force makes local data UpToDate, but only where there is local data.
        true
    } else {
        return Err(SS_NO_UP_TO_DATE_DISK);
    };
    // `--force` does not override quorum either.
    if !has_quorum(res) {
        return Err(SS_NO_QUORUM);
    }
    if let Some(rv) = distant_primary(res, peers) {
        return Err(rv);
    }
    Ok(forced)
}

/// `may_promote` and `promotion_score` as drbdsetup computes them for events2.
pub fn promotion(res: &Resource, peers: &dyn Peers) -> (bool, u32) {
    // Without quorum DRBD reports nothing to promote (drbd-utils' may-promote-quorum case).
    if res.devices.is_empty() || !has_quorum(res) {
        return (false, 0);
    }
    let views: Vec<ConnView> = res
        .connections
        .values()
        .map(|c| peers.view(res, c))
        .collect();
    let mut up_to_date_devices = 0u32;
    let mut all_have_disk = true;
    let mut min_replicas: Option<usize> = None;
    for device in res.devices.values() {
        let local = device.disk == "UpToDate";
        if local {
            up_to_date_devices += 1;
        } else if device.disk != "Consistent" && device.disk != "Inconsistent" {
            all_have_disk = false;
        }
        let peers_up_to_date = views
            .iter()
            .filter(|v| v.peer_disk(device.volume) == "UpToDate")
            .count();
        let replicas = usize::from(local) + peers_up_to_date;
        min_replicas = Some(min_replicas.map_or(replicas, |m| m.min(replicas)));
    }
    let min_replicas = min_replicas.unwrap_or(0);
    if min_replicas == 0 {
        return (false, 0);
    }
    // A Primary anywhere in the reachable cluster, not only a neighbour (drbd9-tests'
    // may-promote: a chain diskless - Secondary - Primary says may_promote:no everywhere).
    let have_primary =
        res.role == Role::Primary || peers.reachable(res).iter().any(|r| r.role == Role::Primary);
    let replicas = u32::try_from(min_replicas.min(99)).unwrap_or(99);
    let score = u32::from(all_have_disk) * 10000 + up_to_date_devices.min(99) * 100 + replicas;
    (!have_primary, score)
}

/// One DRBD object as events2 reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", rename_all = "kebab-case")]
pub enum Obj {
    Resource {
        name: String,
        role: Role,
        /// I/O frozen for lack of quorum (`suspended:quorum`); an event logged before this
        /// field existed had none.
        #[serde(default)]
        suspended_quorum: bool,
        /// DRBD fails the I/O of a Primary it forced to Secondary (`force-io-failures:yes`).
        #[serde(default)]
        force_io_failures: bool,
        may_promote: bool,
        promotion_score: u32,
    },
    Connection {
        name: String,
        peer_node_id: u32,
        conn_name: String,
        connection: String,
        role: Role,
    },
    Device {
        name: String,
        volume: u32,
        minor: u32,
        backing_dev: Option<String>,
        disk: String,
        /// Diskless by intent (an event logged before this field existed had none).
        #[serde(default)]
        client: bool,
        open: bool,
        quorum: bool,
        size_kib: u64,
    },
    PeerDevice {
        name: String,
        peer_node_id: u32,
        conn_name: String,
        volume: u32,
        replication: String,
        peer_disk: String,
        /// The peer is a diskless client as this node is configured (no bitmap for it).
        #[serde(default)]
        peer_client: bool,
    },
    Path {
        name: String,
        peer_node_id: u32,
        conn_name: String,
        local: String,
        peer: String,
        established: bool,
    },
    /// A handler DRBD runs for a connection's volume (`call helper`, then `response helper
    /// … status:N`): never in a snapshot, only in events.
    Helper {
        name: String,
        peer_node_id: u32,
        conn_name: String,
        volume: u32,
        minor: u32,
        helper: String,
        /// The handler's exit status, on the `response`.
        status: Option<i32>,
    },
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// drbdsetup's `susp_str` for what the simulator suspends: only quorum (`user`, `no-data`,
/// `fencing` would join it comma-separated).
pub fn suspended_word(quorum: bool) -> &'static str {
    if quorum { "quorum" } else { "no" }
}

impl Obj {
    pub fn resource_name(&self) -> &str {
        match self {
            Obj::Resource { name, .. }
            | Obj::Connection { name, .. }
            | Obj::Device { name, .. }
            | Obj::PeerDevice { name, .. }
            | Obj::Path { name, .. }
            | Obj::Helper { name, .. } => name,
        }
    }

    /// The object's identifying fields, as events2 prints them after the action.
    pub fn ident(&self, destroy: bool) -> String {
        match self {
            Obj::Resource { name, .. } => format!("resource name:{name}"),
            Obj::Connection {
                name,
                peer_node_id,
                conn_name,
                ..
            } => {
                format!("connection name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name}")
            }
            // drbdsetup leaves the minor out of `destroy device`.
            Obj::Device { name, volume, .. } if destroy => {
                format!("device name:{name} volume:{volume}")
            }
            Obj::Device {
                name,
                volume,
                minor,
                ..
            } => format!("device name:{name} volume:{volume} minor:{minor}"),
            Obj::PeerDevice {
                name,
                peer_node_id,
                conn_name,
                volume,
                ..
            } => format!(
                "peer-device name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name} volume:{volume}"
            ),
            Obj::Path {
                name,
                peer_node_id,
                conn_name,
                local,
                peer,
                ..
            } => format!(
                "path name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name} local:{local} peer:{peer}"
            ),
            Obj::Helper {
                name,
                peer_node_id,
                conn_name,
                volume,
                minor,
                helper,
                ..
            } => format!(
                "helper name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name} volume:{volume} minor:{minor} helper:{helper}"
            ),
        }
    }

    fn key(&self) -> String {
        self.ident(true)
    }

    /// The state fields in drbdsetup's groups: a `change` line prints the groups that changed.
    fn groups(&self) -> Vec<(&'static str, String)> {
        match self {
            Obj::Resource {
                role,
                suspended_quorum,
                force_io_failures,
                may_promote,
                promotion_score,
                ..
            } => vec![
                ("role", format!(" role:{}", role.as_str())),
                (
                    "suspended",
                    format!(" suspended:{}", suspended_word(*suspended_quorum)),
                ),
                (
                    "force-io-failures",
                    format!(" force-io-failures:{}", yes_no(*force_io_failures)),
                ),
                (
                    "promotion",
                    format!(
                        " may_promote:{} promotion_score:{promotion_score}",
                        yes_no(*may_promote)
                    ),
                ),
            ],
            Obj::Connection {
                connection, role, ..
            } => vec![
                ("connection", format!(" connection:{connection}")),
                ("role", format!(" role:{}", role.as_str())),
            ],
            Obj::Device {
                backing_dev,
                disk,
                client,
                open,
                quorum,
                ..
            } => vec![(
                "info",
                format!(
                    " backing_dev:{} disk:{disk} client:{} open:{} quorum:{}",
                    backing_dev.as_deref().unwrap_or("none"),
                    yes_no(*client),
                    yes_no(*open),
                    yes_no(*quorum)
                ),
            )],
            Obj::PeerDevice {
                replication,
                peer_disk,
                peer_client,
                ..
            } => vec![
                ("replication", format!(" replication:{replication}")),
                (
                    "peer-disk",
                    format!(
                        " peer-disk:{peer_disk} peer-client:{}",
                        yes_no(*peer_client)
                    ),
                ),
                ("resync-suspended", " resync-suspended:no".to_string()),
            ],
            Obj::Path { established, .. } => {
                vec![(
                    "established",
                    format!(" established:{}", yes_no(*established)),
                )]
            }
            Obj::Helper { status, .. } => status
                .map(|status| ("status", format!(" status:{status}")))
                .into_iter()
                .collect(),
        }
    }

    /// `--statistics` fields (all zero: the simulator moves no data it could count).
    fn statistics(&self) -> String {
        match self {
            Obj::Resource { .. } => " write-ordering:flush".to_string(),
            Obj::Connection { .. } => " congested:no ap-in-flight:0 rs-in-flight:0".to_string(),
            Obj::Device { size_kib, .. } => format!(
                " size:{size_kib} read:0 written:0 al-writes:0 bm-writes:0 upper-pending:0 lower-pending:0 al-suspended:no blocked:no"
            ),
            Obj::PeerDevice { .. } => {
                " received:0 sent:0 out-of-sync:0 pending:0 unacked:0".to_string()
            }
            Obj::Path { .. } | Obj::Helper { .. } => String::new(),
        }
    }

    /// Destroy order: the parts before what holds them.
    fn destroy_rank(&self) -> u8 {
        match self {
            Obj::Path { .. } | Obj::Helper { .. } => 0,
            Obj::PeerDevice { .. } => 1,
            Obj::Connection { .. } => 2,
            Obj::Device { .. } => 3,
            Obj::Resource { .. } => 4,
        }
    }
}

/// The objects of resource `name`, in the order drbdsetup prints them: resource, connections,
/// devices, then per connection its peer devices and paths. Empty when the resource is down.
/// `peers` says what this node sees of its peers; `open` whether an attached device is held
/// open right now.
pub fn snapshot(
    state: &State,
    peers: &dyn Peers,
    name: &str,
    open: &mut dyn FnMut(&Backing) -> bool,
) -> Vec<Obj> {
    let Some(res) = state.resources.get(name) else {
        return Vec::new();
    };
    let views: Vec<(&Connection, ConnView)> = res
        .connections
        .values()
        .map(|c| (c, peers.view(res, c)))
        .collect();
    let (may_promote, promotion_score) = promotion(res, peers);
    let mut objs = vec![Obj::Resource {
        name: res.name.clone(),
        role: res.role,
        suspended_quorum: suspended_quorum(res),
        force_io_failures: res.force_io_failures,
        may_promote,
        promotion_score,
    }];
    for (conn, v) in &views {
        objs.push(Obj::Connection {
            name: res.name.clone(),
            peer_node_id: conn.peer_node_id,
            conn_name: conn.name.clone(),
            connection: v.cstate.clone(),
            role: v.peer_role,
        });
    }
    for dev in res.devices.values() {
        objs.push(Obj::Device {
            name: res.name.clone(),
            volume: dev.volume,
            minor: dev.minor,
            backing_dev: dev.backing.as_ref().map(|b| b.lower.clone()),
            disk: dev.disk.clone(),
            client: dev.client,
            open: dev.backing.as_ref().is_some_and(&mut *open),
            quorum: dev.quorum,
            size_kib: dev.backing.as_ref().map_or(0, |b| b.size_bytes / 1024),
        });
    }
    for (conn, v) in &views {
        for dev in res.devices.values() {
            objs.push(Obj::PeerDevice {
                name: res.name.clone(),
                peer_node_id: conn.peer_node_id,
                conn_name: conn.name.clone(),
                volume: dev.volume,
                replication: v.replication(dev.volume).to_string(),
                peer_disk: v.peer_disk(dev.volume).to_string(),
                peer_client: conn.peer_client(dev.volume),
            });
        }
        for path in &conn.paths {
            objs.push(Obj::Path {
                name: res.name.clone(),
                peer_node_id: conn.peer_node_id,
                conn_name: conn.name.clone(),
                local: path.local.clone(),
                peer: path.remote.clone(),
                established: v.connected,
            });
        }
    }
    objs
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Exists,
    Create,
    Change,
    Destroy,
    /// A handler is run (`call helper`).
    Call,
    /// A handler returned (`response helper`).
    Response,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Exists => "exists",
            Action::Create => "create",
            Action::Change => "change",
            Action::Call => "call",
            Action::Response => "response",
            Action::Destroy => "destroy",
        }
    }
}

/// One event as the log keeps it: formatted only when printed, because `--statistics`,
/// `--full` and `--timestamps` change how it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Microseconds since the epoch.
    pub t: i64,
    pub action: Action,
    pub obj: Obj,
    /// For `change`: the groups that changed.
    #[serde(default)]
    pub changed: Vec<String>,
}

/// The events that turn snapshot `old` into snapshot `new`.
pub fn diff(old: &[Obj], new: &[Obj], t: i64) -> Vec<Event> {
    let mut events = Vec::new();
    for obj in new {
        let key = obj.key();
        match old.iter().find(|o| o.key() == key) {
            None => events.push(Event {
                t,
                action: Action::Create,
                obj: obj.clone(),
                changed: Vec::new(),
            }),
            Some(before) => {
                let was = before.groups();
                let changed: Vec<String> = obj
                    .groups()
                    .into_iter()
                    .filter(|(group, text)| !was.iter().any(|(g, t)| g == group && t == text))
                    .map(|(group, _)| group.to_string())
                    .collect();
                if !changed.is_empty() {
                    events.push(Event {
                        t,
                        action: Action::Change,
                        obj: obj.clone(),
                        changed,
                    });
                }
            }
        }
    }
    let mut gone: Vec<&Obj> = old
        .iter()
        .filter(|o| {
            let key = o.key();
            !new.iter().any(|n| n.key() == key)
        })
        .collect();
    gone.sort_by_key(|o| o.destroy_rank());
    events.extend(gone.into_iter().map(|obj| Event {
        t,
        action: Action::Destroy,
        obj: obj.clone(),
        changed: Vec::new(),
    }));
    events
}

/// events2 output options.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventOpts {
    pub timestamps: bool,
    pub statistics: bool,
    pub full: bool,
}

/// One events2 line, without the newline.
pub fn format_event(event: &Event, opts: EventOpts) -> String {
    let mut line = String::new();
    if opts.timestamps {
        line.push_str(&format_timestamp(event.t));
        line.push(' ');
    }
    line.push_str(event.action.as_str());
    line.push(' ');
    line.push_str(&event.obj.ident(event.action == Action::Destroy));
    if event.action == Action::Destroy {
        return line;
    }
    let all = event.action != Action::Change || opts.full;
    for (group, text) in event.obj.groups() {
        if all || event.changed.iter().any(|c| c == group) {
            line.push_str(&text);
        }
    }
    // drbdsetup prints statistics on first sight of an object, and on every line with --full.
    if (opts.statistics || opts.full) && all {
        line.push_str(&event.obj.statistics());
    }
    line
}

/// drbdsetup's `--timestamps` prefix: local time, microseconds, UTC offset.
pub fn format_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let usec = micros.rem_euclid(1_000_000);
    let time: libc::time_t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack frame.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&time, &mut tm).is_null() };
    if !ok {
        return format!("@{secs}.{usec:06}");
    }
    let offset = tm.tm_gmtoff;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{usec:06}{:+03}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        offset / 3600,
        (offset.abs() / 60) % 60
    )
}

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A fixture shared by the simulator's unit tests: resource `data`, minor 7, attached,
/// connected to a Secondary UpToDate peer.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::super::drbd_state::{Backing, Connection, Device, NetPath, Resource, Role, State};
    use std::collections::{BTreeMap, BTreeSet};

    pub(crate) fn two_node_state() -> State {
        let mut devices = BTreeMap::new();
        devices.insert(
            0,
            Device {
                volume: 0,
                minor: 7,
                disk: "UpToDate".into(),
                backing: Some(Backing {
                    lower: "/dev/loop0".into(),
                    meta: "/dev/loop0".into(),
                    meta_index: "internal".into(),
                    loop_dev: "/dev/loop9".into(),
                    node: "/dev/drbd7".into(),
                    major: 7,
                    minor: 9,
                    size_bytes: 65_536 * 1024,
                    options: Vec::new(),
                    seen_open: false,
                }),
                client: false,
                quorum: true,
            },
        );
        let mut connections = BTreeMap::new();
        connections.insert(
            1,
            Connection {
                peer_node_id: 1,
                name: "peer1".into(),
                net: Vec::new(),
                paths: vec![NetPath {
                    local: "ipv4:127.0.0.1:7789".into(),
                    remote: "ipv4:127.0.0.2:7789".into(),
                }],
                connect: true,
                discard_my_data: false,
                peer_devices: BTreeMap::new(),
            },
        );
        let mut state = State::default();
        state.resources.insert(
            "data".into(),
            Resource {
                name: "data".into(),
                node_id: 0,
                role: Role::Secondary,
                options: Vec::new(),
                devices,
                connections,
                quorumless: BTreeSet::new(),
                force_io_failures: false,
            },
        );
        state
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::two_node_state;
    use super::*;
    use converge_core::observe::drbd::{
        ConnectionState, DiskState, ReplicationState, Role as ModelRole,
    };
    use converge_core::observe::events2::{Events2State, parse_line};

    fn snap(state: &State) -> Vec<Obj> {
        snapshot(state, &Scripted(&state.peers), "data", &mut |_| false)
    }

    fn lines(events: &[Event], opts: EventOpts) -> Vec<String> {
        events.iter().map(|e| format_event(e, opts)).collect()
    }

    #[test]
    fn exists_dump_reads_back_through_converge_parser() {
        let state = two_node_state();
        let dump: Vec<Event> = snap(&state)
            .into_iter()
            .map(|obj| Event {
                t: 0,
                action: Action::Exists,
                obj,
                changed: Vec::new(),
            })
            .collect();
        let text = lines(&dump, EventOpts::default());
        assert_eq!(
            text,
            [
                "exists resource name:data role:Secondary suspended:no force-io-failures:no may_promote:yes promotion_score:10102",
                "exists connection name:data peer-node-id:1 conn-name:peer1 connection:Connected role:Secondary",
                "exists device name:data volume:0 minor:7 backing_dev:/dev/loop0 disk:UpToDate client:no open:no quorum:yes",
                "exists peer-device name:data peer-node-id:1 conn-name:peer1 volume:0 replication:Established peer-disk:UpToDate peer-client:no resync-suspended:no",
                "exists path name:data peer-node-id:1 conn-name:peer1 local:ipv4:127.0.0.1:7789 peer:ipv4:127.0.0.2:7789 established:yes",
            ]
        );
        let mut model = Events2State::new();
        for line in text.iter().map(String::as_str).chain(["exists -"]) {
            let event = parse_line(line).expect("parses").expect("not blank");
            model.apply(&event);
        }
        assert!(model.initial_dump_done());
        let r = &model.resources()["data"];
        assert_eq!(r.role, ModelRole::Secondary);
        assert_eq!(r.devices[0].minor, 7);
        assert_eq!(r.devices[0].disk, DiskState::UpToDate);
        assert_eq!(r.connections[0].state, ConnectionState::Connected);
        assert_eq!(
            r.connections[0].peer_devices[0].replication,
            ReplicationState::Established
        );
    }

    #[test]
    fn statistics_and_timestamps_still_parse() {
        let state = two_node_state();
        let opts = EventOpts {
            timestamps: true,
            statistics: true,
            full: true,
        };
        for obj in snap(&state) {
            for action in [Action::Exists, Action::Change, Action::Destroy] {
                let line = format_event(
                    &Event {
                        t: 1_700_000_000_123_456,
                        action,
                        obj: obj.clone(),
                        changed: Vec::new(),
                    },
                    opts,
                );
                let event = parse_line(&line).expect("parses").expect("not blank");
                assert!(
                    event.timestamp.is_some_and(|t| t.contains(".123456")),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn promotion_and_peer_changes_produce_change_lines() {
        let before = two_node_state();
        let mut after = before.clone();
        if let Some(r) = after.resources.get_mut("data") {
            r.role = Role::Primary;
        }
        let events = diff(&snap(&before), &snap(&after), 0);
        assert_eq!(
            lines(&events, EventOpts::default()),
            ["change resource name:data role:Primary may_promote:no promotion_score:10102"]
        );

        let mut gone = after.clone();
        gone.peers.insert(
            "data".into(),
            PeerSim {
                connection: "Connecting".into(),
                ..PeerSim::default()
            },
        );
        let events = diff(&snap(&after), &snap(&gone), 0);
        assert_eq!(
            lines(&events, EventOpts::default()),
            [
                "change resource name:data may_promote:no promotion_score:10101",
                "change connection name:data peer-node-id:1 conn-name:peer1 connection:Connecting role:Unknown",
                "change peer-device name:data peer-node-id:1 conn-name:peer1 volume:0 replication:Off peer-disk:DUnknown peer-client:no",
                "change path name:data peer-node-id:1 conn-name:peer1 local:ipv4:127.0.0.1:7789 peer:ipv4:127.0.0.2:7789 established:no",
            ]
        );
    }

    #[test]
    fn down_destroys_parts_before_the_resource() {
        let before = two_node_state();
        let events = diff(&snap(&before), &[], 0);
        let text = lines(&events, EventOpts::default());
        assert_eq!(
            text,
            [
                "destroy path name:data peer-node-id:1 conn-name:peer1 local:ipv4:127.0.0.1:7789 peer:ipv4:127.0.0.2:7789",
                "destroy peer-device name:data peer-node-id:1 conn-name:peer1 volume:0",
                "destroy connection name:data peer-node-id:1 conn-name:peer1",
                "destroy device name:data volume:0",
                "destroy resource name:data",
            ]
        );
        let mut model = Events2State::new();
        for line in lines(&diff(&[], &snap(&before), 0), EventOpts::default())
            .iter()
            .chain(text.iter())
        {
            let event = parse_line(line).expect("parses").expect("not blank");
            model.apply(&event);
        }
        assert!(model.resources().is_empty());
    }

    #[test]
    fn rules_two_primaries_and_up_to_date_access() {
        let mut state = two_node_state();
        let peer = PeerSim {
            role: Role::Primary,
            ..PeerSim::default()
        };
        let res = state.resources.get_mut("data").expect("data");
        assert!(conflicting_primary(res, &peer));
        if let Some(c) = res.connections.get_mut(&1) {
            c.net.push(("allow-two-primaries".into(), "yes".into()));
        }
        assert!(!conflicting_primary(res, &peer));
        if let Some(d) = res.devices.get_mut(&0) {
            d.disk = "Outdated".into();
        }
        assert!(has_up_to_date_access(res, &PeerSim::default()));
        let alone = PeerSim {
            connection: "Connecting".into(),
            ..PeerSim::default()
        };
        assert!(!has_up_to_date_access(res, &alone));
        assert_eq!(promotion(res, &alone), (false, 0));
    }

    #[test]
    fn timestamp_shape() {
        let t = format_timestamp(1_700_000_000_000_042);
        // 2023-11-14T..:..:..000042+hh:mm
        assert_eq!(t.len(), "2023-11-14T22:13:20.000042+00:00".len(), "{t}");
        assert!(t.contains(".000042"), "{t}");
    }
}
