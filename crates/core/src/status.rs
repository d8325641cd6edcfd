//! `converge status`: what each service and resource looks like now, aggregated the way the
//! OpenSVC agent does. Pure: a function of the manifests and one observation.
//!
//! Aggregation: `n/a` is neutral; `warn` absorbs everything; up and down together are `warn`.
//! A DRBD resource that is Secondary is `stdby up` (ready to take over): it is not a problem for
//! a service that is down, and it counts as down next to resources that are up.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::manifest::{AppStatus, ContainerKind, DesiredState, ResourceId, Service, Spec};
use crate::observe::drbd::{
    ConnectionState, DiskState, DrbdConnection, DrbdResource, Quorum, ReplicationState, Role,
};
use crate::observe::{ContainerState, DrbdFileState, NodeState, Observed, SplitBrain};
use crate::plan::placement::Decision;
use crate::plan::{Blocked, plan_service};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "up")]
    Up,
    #[serde(rename = "down")]
    Down,
    #[serde(rename = "warn")]
    Warn,
    #[serde(rename = "n/a")]
    NotApplicable,
    #[serde(rename = "stdby up")]
    StandbyUp,
}

impl Status {
    /// The word OpenSVC shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Down => "down",
            Status::Warn => "warn",
            Status::NotApplicable => "n/a",
            Status::StandbyUp => "stdby up",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceStatus {
    pub rid: ResourceId,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    /// What this node should hold (`down` on a node that stands by).
    pub desired: DesiredState,
    /// The node the manifest pins the service to, if it does.
    pub node: Option<String>,
    /// This node stands by for the service: its DRBD resources are kept up and Secondary.
    pub standby: bool,
    /// For a service that fails over: its nodes, in order, and what DRBD decided here (on a
    /// listed node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverStatus>,
    pub status: Status,
    pub converged: bool,
    /// Where the service runs, as far as this node can see: the nodes on which its DRBD
    /// resources are Primary (this node's own name included), or, for a service without DRBD,
    /// this node when it is up here. Empty when it runs nowhere this node can see.
    pub runs_on: Vec<String>,
    /// What holds it: a rule that refused, or a peer it waits for.
    pub blocked: Option<Blocked>,
    pub resources: Vec<ResourceStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverStatus {
    pub nodes: Vec<String>,
    pub decision: Option<Decision>,
}

/// The aggregate of resource statuses.
pub fn aggregate(statuses: impl IntoIterator<Item = Status>) -> Status {
    let (mut up, mut down, mut warn) = (false, false, false);
    for status in statuses {
        match status {
            Status::Up => up = true,
            Status::Down | Status::StandbyUp => down = true,
            Status::Warn => warn = true,
            Status::NotApplicable => {}
        }
    }
    match (warn, up, down) {
        (true, _, _) | (false, true, true) => Status::Warn,
        (false, true, false) => Status::Up,
        (false, false, true) => Status::Down,
        (false, false, false) => Status::NotApplicable,
    }
}

pub fn service_status(service: &Service, node: &NodeState) -> ServiceStatus {
    status_with_plan(service, node, &plan_service(service, node))
}

/// The status of many services against one observation, planned together (the observation is
/// indexed once, not once per service).
pub fn statuses(services: &[Service], node: &NodeState) -> Vec<ServiceStatus> {
    let plan = crate::plan::plan(services, node);
    services
        .iter()
        .zip(&plan.services)
        .map(|(s, p)| status_with_plan(s, node, p))
        .collect()
}

fn status_with_plan(
    service: &Service,
    node: &NodeState,
    plan: &crate::plan::ServicePlan,
) -> ServiceStatus {
    let resources: Vec<ResourceStatus> = service
        .resources
        .iter()
        .map(|r| {
            let (status, detail) = if r.disabled {
                (Status::NotApplicable, "disabled".to_string())
            } else {
                match &r.spec {
                    Spec::Drbd(d) => drbd_status(node, &d.res),
                    Spec::Fs(f) => fs_status(node, &f.dev, &f.mnt),
                    Spec::Container(c) => container_status(node, &service.name, &c.kind),
                    Spec::App(_) => app_status(service, node, r.id),
                }
            };
            ResourceStatus {
                rid: r.id,
                status,
                detail,
            }
        })
        .collect();
    let status = aggregate(resources.iter().map(|r| r.status));
    ServiceStatus {
        service: service.name.clone(),
        desired: plan.desired,
        node: service.pinned_node().map(str::to_string),
        standby: service.stands_by_here(&node.node)
            || plan.placement.as_ref().is_some_and(|d| !d.runs_here()),
        failover: service.failover().map(|f| FailoverStatus {
            nodes: f.nodes.clone(),
            decision: plan.placement.clone(),
        }),
        status,
        converged: plan.is_converged(),
        runs_on: runs_on(service, node, status),
        blocked: plan.blocked.clone(),
        resources,
    }
}

/// The nodes on which the service's DRBD resources are Primary, as this node sees them; for a
/// service without DRBD, this node when the service is up here.
fn runs_on(service: &Service, node: &NodeState, status: Status) -> Vec<String> {
    let mut drbd = service
        .resources
        .iter()
        .filter(|r| !r.disabled)
        .filter_map(|r| r.spec.as_drbd())
        .peekable();
    if drbd.peek().is_none() {
        return if status == Status::Up {
            vec![node.node.clone()]
        } else {
            Vec::new()
        };
    }
    let Observed::Ok(observed) = &node.drbd else {
        return Vec::new();
    };
    let mut nodes = BTreeSet::new();
    for spec in drbd {
        let Some(resource) = observed.get(&spec.res) else {
            continue;
        };
        if resource.role == Role::Primary {
            nodes.insert(node.node.clone());
        }
        nodes.extend(
            resource
                .connections
                .iter()
                .filter(|c| c.peer_role == Role::Primary)
                .map(|c| c.peer_name().unwrap_or_else(|| "the peer".to_string())),
        );
    }
    nodes.into_iter().collect()
}

fn drbd_status(node: &NodeState, res: &str) -> (Status, String) {
    let resources = match &node.drbd {
        Observed::Ok(r) => r,
        Observed::Unavailable(why) => return (Status::Warn, format!("cannot observe: {why}")),
    };
    let (file_warns, file) = file_detail(node, res);
    let Some(drbd) = resources.get(res) else {
        let status = if file_warns {
            Status::Warn
        } else {
            Status::Down
        };
        return (status, format!("resource {res} is not up{file}"));
    };
    let split = node
        .split_brains
        .get(res)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let detail = drbd_detail(drbd, split) + &file;
    // A split brain is the operator's to resolve, whatever the role; a Primary that lost its
    // disk runs on its peers' (DRBD reads and writes over the network), one failure from none.
    let disk_lost = drbd.role == Role::Primary
        && drbd
            .devices
            .iter()
            .any(|d| !d.client && matches!(d.disk, DiskState::Failed | DiskState::Diskless));
    let split_brain = drbd
        .connections
        .iter()
        .any(|c| split_brain_of(c, split).is_some());
    if disk_lost || split_brain || file_warns {
        return (Status::Warn, detail);
    }
    match drbd.role {
        Role::Primary => (Status::Up, detail),
        Role::Secondary => (Status::StandbyUp, detail),
        _ => (Status::Warn, detail),
    }
}

/// The resource file converge manages for `res` (`config:`), when something is to say of
/// it: to be installed, refused, not applied yet, or drift of the running resource from it
/// (what `drbdadm -d adjust` would run). True when it is a warning: refused, or drift.
fn file_detail(node: &NodeState, res: &str) -> (bool, String) {
    let Some(file) = node.drbd_files.get(res) else {
        return (false, String::new());
    };
    let (source, installed) = (file.source.display(), file.installed.display());
    let (mut warns, mut detail) = match &file.state {
        DrbdFileState::Installed => (false, String::new()),
        DrbdFileState::Differs { missing: true } => (
            false,
            format!("; {source} is to be installed as {installed}"),
        ),
        DrbdFileState::Differs { missing: false } => (
            false,
            format!("; {source} differs from the installed {installed}: to be installed"),
        ),
        DrbdFileState::Refused { why, .. } => (true, format!("; FILE REFUSED: {why}")),
        DrbdFileState::NotHere => (false, format!("; {source} has no section for this node")),
    };
    if node.drbd_adjust.contains(res) {
        detail.push_str(&format!(
            "; {installed} is installed but not applied yet (drbdadm adjust {res})"
        ));
    }
    match node.drbd_drift.get(res) {
        Some(Observed::Ok(lines)) if !lines.is_empty() => {
            warns = true;
            detail.push_str(&format!(
                "; DRIFT: the running resource differs from {installed}; `drbdadm adjust {res}` would run: {}",
                lines.join("; ")
            ));
        }
        Some(Observed::Unavailable(why)) => {
            detail.push_str(&format!("; drift not known: {why}"));
        }
        _ => {}
    }
    (warns, detail)
}

/// `Primary, UpToDate; peer deb2 Secondary, UpToDate` — every peer (`the peer` where DRBD
/// 8.4 does not name it), and its connection when it is not connected: `peer deb2 Unknown,
/// DUnknown, Connecting`. A device DRBD says has lost quorum adds `no quorum` (where it says
/// nothing, nothing is added: most resources have no quorum configured).
fn drbd_detail(drbd: &DrbdResource, split: &[SplitBrain]) -> String {
    let local_disk: Vec<String> = drbd.devices.iter().map(|d| d.disk.to_string()).collect();
    let local_disk = if local_disk.is_empty() {
        "Diskless".to_string()
    } else {
        local_disk.join(",")
    };
    let mut detail = format!("{}, {local_disk}", drbd.role);
    if drbd.devices.iter().any(|d| d.quorum == Quorum::No) {
        detail.push_str(", no quorum");
    }
    if drbd.connections.is_empty() {
        detail.push_str("; no peer");
    }
    for conn in &drbd.connections {
        let peer_disk: Vec<String> = conn
            .peer_devices
            .iter()
            .map(|p| p.peer_disk.to_string())
            .collect();
        let peer_disk = if peer_disk.is_empty() {
            "DUnknown".to_string()
        } else {
            peer_disk.join(",")
        };
        detail.push_str(&format!(
            "; {} {}, {peer_disk}",
            conn.peer_label(),
            conn.peer_role
        ));
        // A resync in progress, with how far it got (`SyncTarget 42.1%`).
        for p in &conn.peer_devices {
            if matches!(
                p.replication,
                ReplicationState::SyncSource
                    | ReplicationState::SyncTarget
                    | ReplicationState::PausedSyncS
                    | ReplicationState::PausedSyncT
            ) {
                detail.push_str(&format!(", {}", p.replication));
                if let Some(percent) = p.percent_in_sync {
                    detail.push_str(&format!(" {percent:.1}%"));
                }
            }
        }
        if conn.state != ConnectionState::Connected {
            detail.push_str(&format!(", {}", conn.state));
        }
        if let Some(split) = split_brain_of(conn, split) {
            detail.push_str(&format!(
                ", SPLIT BRAIN since {} (resolve by hand: docs/operations.md, \"Split brain\")",
                split.since
            ));
        }
    }
    detail
}

/// The split brain recorded for a connection that is not established (once it is, the split
/// brain was resolved).
fn split_brain_of<'a>(conn: &DrbdConnection, split: &'a [SplitBrain]) -> Option<&'a SplitBrain> {
    let name = conn.name.as_deref()?;
    (conn.state != ConnectionState::Connected)
        .then(|| split.iter().find(|s| s.peer == name))
        .flatten()
}

fn fs_status(node: &NodeState, dev: &std::path::Path, mnt: &std::path::Path) -> (Status, String) {
    let mounts = match &node.mounts {
        Observed::Ok(m) => m,
        Observed::Unavailable(why) => return (Status::Warn, format!("cannot observe: {why}")),
    };
    let devnum = node.devices.get(dev);
    match mounts.iter().rev().find(|m| m.mount_point() == mnt) {
        Some(m) if std::path::Path::new(m.source()) == dev || devnum == Some(&m.dev) => {
            (Status::Up, format!("mounted on {}", mnt.display()))
        }
        Some(m) => (
            Status::Warn,
            format!("{} is mounted on {}", m.source(), mnt.display()),
        ),
        None => (Status::Down, "not mounted".to_string()),
    }
}

fn container_status(node: &NodeState, service: &str, kind: &ContainerKind) -> (Status, String) {
    let observed = match kind {
        ContainerKind::Vz(_) => &node.vz,
        ContainerKind::Lxc(_) => &node.lxc,
    };
    let map = match observed {
        Observed::Ok(m) => m,
        Observed::Unavailable(why) => return (Status::Warn, format!("cannot observe: {why}")),
    };
    match map
        .get(kind.id())
        .copied()
        .unwrap_or(ContainerState::Absent)
    {
        ContainerState::Running => (Status::Up, "running".into()),
        ContainerState::Stopped => (Status::Down, "stopped".into()),
        ContainerState::Mounted => (Status::Down, "mounted, not running".into()),
        ContainerState::Absent => (Status::Down, "not found on this node".into()),
        ContainerState::Starting => (Status::Warn, "starting".into()),
        ContainerState::Stopping => (Status::Warn, "stopping".into()),
        ContainerState::Frozen => match node.quorum_frozen.get(service) {
            Some(_) => (
                Status::Warn,
                "frozen by converge: this node lost quorum (on_quorum_loss: freeze)".into(),
            ),
            None => (Status::Warn, "frozen".into()),
        },
        ContainerState::Aborting => (Status::Warn, "aborting".into()),
    }
}

fn app_status(service: &Service, node: &NodeState, rid: ResourceId) -> (Status, String) {
    if let Some(container) = service.container() {
        let running = match &container.kind {
            ContainerKind::Vz(_) => &node.vz,
            ContainerKind::Lxc(_) => &node.lxc,
        }
        .ok()
        .and_then(|m| m.get(container.kind.id()))
            == Some(&ContainerState::Running);
        if !running {
            return (Status::Down, "container not running".into());
        }
    }
    match node.apps.get(&service.name).and_then(|a| a.get(&rid)) {
        Some(obs) => (
            match obs.status {
                AppStatus::Up => Status::Up,
                AppStatus::Down => Status::Down,
                AppStatus::Warn => Status::Warn,
                AppStatus::NotApplicable => Status::NotApplicable,
            },
            obs.detail.clone(),
        ),
        None => (Status::Down, "not started (no check to ask)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_manifest;
    use crate::observe::drbd::{
        DiskState, DrbdConnection, DrbdDevice, DrbdPeerDevice, Quorum, ReplicationState,
    };
    use Status::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn peer(
        name: Option<&str>,
        state: ConnectionState,
        role: Role,
        disk: DiskState,
    ) -> DrbdConnection {
        DrbdConnection {
            peer_node_id: name.map(|_| 1),
            name: name.map(str::to_string),
            state,
            peer_role: role,
            peer_devices: vec![DrbdPeerDevice {
                volume: 0,
                replication: ReplicationState::Established,
                peer_disk: disk,
                percent_in_sync: None,
            }],
        }
    }

    fn node_with(role: Role, connections: Vec<DrbdConnection>) -> NodeState {
        let resource = DrbdResource {
            name: "data".into(),
            role,
            suspended: false,
            devices: vec![DrbdDevice {
                volume: 0,
                minor: 0,
                disk: DiskState::UpToDate,
                client: false,
                open: false,
                quorum: Quorum::Yes,
            }],
            connections,
        };
        NodeState {
            node: "deb1".into(),
            drbd: Observed::Ok(BTreeMap::from([("data".to_string(), resource)])),
            drbd_configured: None,
            drbd_options: Default::default(),
            mounts: Observed::Ok(Vec::new()),
            devices: BTreeMap::new(),
            dirs: Default::default(),
            vz: Observed::Ok(BTreeMap::new()),
            lxc: Observed::Ok(BTreeMap::new()),
            apps: BTreeMap::new(),
            scripts: BTreeMap::new(),
            quorum_frozen: BTreeMap::new(),
            split_brains: Default::default(),
            standalone_reported: None,
            drbd_files: Default::default(),
            drbd_adjust: Default::default(),
            drbd_drift: Default::default(),
        }
    }

    fn pinned(node: &str) -> Service {
        let text = format!(
            "service: web\nstate: up\nnode: {node}\nresources:\n  drbd#0:\n    res: data\n"
        );
        parse_manifest(Path::new("/m/web.yaml"), &text).expect("valid")
    }

    #[test]
    fn a_resync_shows_how_far_it_got_and_a_primary_without_its_disk_warns() {
        let mut syncing = peer(
            Some("deb2"),
            ConnectionState::Connected,
            Role::Primary,
            DiskState::UpToDate,
        );
        syncing.peer_devices[0].replication = ReplicationState::SyncTarget;
        syncing.peer_devices[0].percent_in_sync = Some(42.06);
        let mut node = node_with(Role::Secondary, vec![syncing]);
        if let Observed::Ok(all) = &mut node.drbd {
            all.get_mut("data").expect("data").devices[0].disk = DiskState::Inconsistent;
        }
        let status = service_status(&pinned("deb2"), &node);
        assert_eq!(
            status.resources[0].detail,
            "Secondary, Inconsistent; peer deb2 Primary, UpToDate, SyncTarget 42.1%"
        );
        // A Primary whose disk failed (DRBD detached it) goes on over the network: warn.
        let mut node = node_with(
            Role::Primary,
            vec![peer(
                Some("deb2"),
                ConnectionState::Connected,
                Role::Secondary,
                DiskState::UpToDate,
            )],
        );
        if let Observed::Ok(all) = &mut node.drbd {
            all.get_mut("data").expect("data").devices[0].disk = DiskState::Diskless;
        }
        let status = service_status(&pinned("deb1"), &node);
        assert_eq!(status.resources[0].status, Warn);
        assert_eq!(
            status.resources[0].detail,
            "Primary, Diskless; peer deb2 Secondary, UpToDate"
        );
    }

    #[test]
    fn a_split_brain_says_so_with_what_to_do_until_the_connection_is_back() {
        let mut node = node_with(
            Role::Primary,
            vec![peer(
                Some("deb2"),
                ConnectionState::StandAlone,
                Role::Unknown,
                DiskState::DUnknown,
            )],
        );
        node.split_brains.insert(
            "data".into(),
            vec![SplitBrain {
                peer: "deb2".into(),
                since: "2026-12-07T01:00:00Z".into(),
            }],
        );
        let status = service_status(&pinned("deb1"), &node);
        assert_eq!(status.resources[0].status, Warn);
        assert_eq!(
            status.resources[0].detail,
            "Primary, UpToDate; peer deb2 Unknown, DUnknown, StandAlone, SPLIT BRAIN since 2026-12-07T01:00:00Z (resolve by hand: docs/operations.md, \"Split brain\")"
        );
        assert!(!status.converged);
        // Connected again: resolved, whatever the record says.
        if let Observed::Ok(all) = &mut node.drbd {
            let c = &mut all.get_mut("data").expect("data").connections[0];
            c.state = ConnectionState::Connected;
            c.peer_role = Role::Secondary;
        }
        let status = service_status(&pinned("deb1"), &node);
        assert_eq!(status.resources[0].status, Up);
        assert!(!status.resources[0].detail.contains("SPLIT"));
    }

    #[test]
    fn a_container_converge_froze_on_a_quorum_loss_says_so() {
        let text = "service: web\nstate: up\nnodes: [deb1, deb2]\nfailover: auto\non_quorum_loss: freeze\nresources:\n  drbd#0: {res: data}\n  container#0: {type: lxc, name: web}\n";
        let service = parse_manifest(Path::new("/m/web.yaml"), text).expect("valid");
        let mut node = node_with(Role::Primary, Vec::new());
        node.lxc = Observed::Ok(BTreeMap::from([(
            "web".to_string(),
            ContainerState::Frozen,
        )]));
        let container = |node: &NodeState| {
            let status = service_status(&service, node);
            (
                status.resources[1].status,
                status.resources[1].detail.clone(),
            )
        };
        assert_eq!(container(&node), (Warn, "frozen".to_string()));
        node.quorum_frozen.insert(
            "web".into(),
            crate::observe::QuorumFreeze { stopping: false },
        );
        assert_eq!(
            container(&node),
            (
                Warn,
                "frozen by converge: this node lost quorum (on_quorum_loss: freeze)".to_string()
            )
        );
    }

    #[test]
    fn a_standby_shows_where_the_service_runs_and_every_peer() {
        let node = node_with(
            Role::Secondary,
            vec![
                peer(
                    Some("deb2"),
                    ConnectionState::Connected,
                    Role::Primary,
                    DiskState::UpToDate,
                ),
                peer(
                    Some("deb3"),
                    ConnectionState::Connecting,
                    Role::Unknown,
                    DiskState::DUnknown,
                ),
            ],
        );
        let status = service_status(&pinned("deb2"), &node);
        assert!(status.standby);
        assert_eq!(status.node.as_deref(), Some("deb2"));
        assert_eq!(status.runs_on, ["deb2"]);
        assert!(status.converged, "{status:?}");
        assert_eq!(status.resources[0].status, StandbyUp);
        assert_eq!(
            status.resources[0].detail,
            "Secondary, UpToDate; peer deb2 Primary, UpToDate; peer deb3 Unknown, DUnknown, Connecting"
        );
    }

    #[test]
    fn a_device_without_quorum_says_so_and_an_unknown_quorum_says_nothing() {
        let cut_off = || {
            vec![peer(
                Some("deb2"),
                ConnectionState::Connecting,
                Role::Unknown,
                DiskState::DUnknown,
            )]
        };
        let mut node = node_with(Role::Primary, cut_off());
        let detail = |node: &NodeState| {
            service_status(&pinned("deb1"), node).resources[0]
                .detail
                .clone()
        };
        let set = |node: &mut NodeState, quorum: Quorum| {
            if let Observed::Ok(all) = &mut node.drbd {
                for r in all.values_mut() {
                    for d in &mut r.devices {
                        d.quorum = quorum;
                    }
                }
            }
        };
        set(&mut node, Quorum::No);
        assert_eq!(
            detail(&node),
            "Primary, UpToDate, no quorum; peer deb2 Unknown, DUnknown, Connecting"
        );
        for quorum in [Quorum::Yes, Quorum::Unknown] {
            set(&mut node, quorum);
            assert_eq!(
                detail(&node),
                "Primary, UpToDate; peer deb2 Unknown, DUnknown, Connecting"
            );
        }
    }

    #[test]
    fn the_node_that_gains_a_service_says_what_it_waits_for() {
        let node = node_with(
            Role::Secondary,
            vec![peer(
                Some("deb2"),
                ConnectionState::Connected,
                Role::Primary,
                DiskState::UpToDate,
            )],
        );
        let status = service_status(&pinned("deb1"), &node);
        assert!(!status.standby);
        assert!(!status.converged);
        let blocked = status.blocked.expect("waits");
        assert_eq!(blocked.kind, crate::plan::BlockKind::Waiting);
        assert!(
            blocked.reason.contains("peer deb2 is Primary"),
            "{}",
            blocked.reason
        );
        assert_eq!(status.runs_on, ["deb2"]);
    }

    #[test]
    fn runs_on_names_this_node_when_primary_here_and_nobody_when_nobody_is() {
        let node = node_with(
            Role::Primary,
            vec![peer(
                None,
                ConnectionState::Connected,
                Role::Secondary,
                DiskState::UpToDate,
            )],
        );
        let status = service_status(&pinned("deb1"), &node);
        assert_eq!(status.runs_on, ["deb1"]);
        // DRBD 8.4 names no peer.
        assert_eq!(
            status.resources[0].detail,
            "Primary, UpToDate; the peer Secondary, UpToDate"
        );
        let node = node_with(Role::Secondary, Vec::new());
        let status = service_status(&pinned("deb2"), &node);
        assert!(status.runs_on.is_empty());
        assert_eq!(status.resources[0].detail, "Secondary, UpToDate; no peer");
    }

    #[test]
    fn aggregation_follows_the_agent() {
        assert_eq!(aggregate([Up, Up, NotApplicable]), Up);
        assert_eq!(aggregate([Down, Down]), Down);
        assert_eq!(aggregate([Up, Down]), Warn);
        assert_eq!(aggregate([Up, Warn]), Warn);
        assert_eq!(aggregate([Down, Warn]), Warn);
        assert_eq!(aggregate([NotApplicable]), NotApplicable);
        assert_eq!(aggregate([]), NotApplicable);
        // A standby-ready DRBD under a stopped service is not a warning…
        assert_eq!(aggregate([StandbyUp, Down, Down]), Down);
        // …but a Secondary under mounted filesystems is.
        assert_eq!(aggregate([StandbyUp, Up]), Warn);
    }
}
