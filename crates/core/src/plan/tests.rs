//! Table-driven planner tests: every transition from every partial state of the seed service,
//! both directions, the safety rules, and convergence of a model node that applies the steps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::placement::{self, Decision};
use super::*;
use crate::manifest::{
    AppCommands, AppSpec, AppStatus, ContainerKind, ContainerSpec, DrbdSpec, DrbdStop, FsSpec,
    Fsck, Kind, Resource, ResourceId, Service, Spec, UpBy,
};
use crate::manifest::{Failback, Failover, OnQuorumLoss, Placement};
use crate::observe::drbd::{
    ConnectionState, DiskState, DrbdConnection, DrbdDevice, DrbdPeerDevice, Quorum,
    ReplicationState,
};
use crate::observe::drbd_conf::{QuorumPolicy, ResourceOptions};
use crate::observe::mountinfo::MountFields;
use crate::observe::{
    AppObservation, ContainerState, DevNum, DrbdResource, Mount, NodeState, Observed, Role,
};
use crate::observe::{DrbdFile, DrbdFileState, QuorumFreeze, SplitBrain, StandAloneReported};

const DRBD0: DevNum = DevNum {
    major: 147,
    minor: 0,
};

fn rid(kind: Kind, index: u32) -> ResourceId {
    ResourceId::new(kind, index)
}

fn resource(kind: Kind, index: u32, spec: Spec) -> Resource {
    Resource {
        id: rid(kind, index),
        disabled: false,
        optional: false,
        spec,
    }
}

fn drbd_spec() -> DrbdSpec {
    DrbdSpec {
        res: "data".into(),
        stop: DrbdStop::Secondary,
        allow_two_primaries: false,
        secondary_force: false,
        up_by: UpBy::Converge,
        config: None,
    }
}

fn fs_spec(dev: &str, mnt: &str) -> FsSpec {
    FsSpec {
        dev: dev.into(),
        mnt: mnt.into(),
        fstype: "ext3".into(),
        options: "defaults".into(),
        fsck: Fsck::Auto,
        umount_kill: false,
        timeout: FsSpec::DEFAULT_TIMEOUT,
    }
}

/// The OpenSVC documentation's service: drbd#0 → fs#1 → container#0 (vz 101) → app#0.
fn seed() -> Service {
    Service {
        name: "drbdsvc.opensvc.com".into(),
        state: DesiredState::Up,
        placement: Placement::Everywhere,
        rollback: true,
        resources: vec![
            resource(Kind::Drbd, 0, Spec::Drbd(drbd_spec())),
            resource(Kind::Fs, 1, Spec::Fs(fs_spec("/dev/drbd0", "/drbdsvc"))),
            resource(
                Kind::Container,
                0,
                Spec::Container(ContainerSpec {
                    kind: ContainerKind::Vz("101".into()),
                    start_timeout: ContainerSpec::DEFAULT_START_TIMEOUT,
                    stop_timeout: ContainerSpec::DEFAULT_STOP_TIMEOUT,
                }),
            ),
            resource(
                Kind::App,
                0,
                Spec::App(AppSpec {
                    commands: AppCommands::Scripts("/svc/etc/init.d".into()),
                    timeout: Duration::from_secs(120),
                    retcodes: AppSpec::default_retcodes(),
                }),
            ),
        ],
        source: PathBuf::from("/etc/converge/manifests/drbdsvc.yaml"),
    }
}

fn with_state(mut svc: Service, state: DesiredState) -> Service {
    svc.state = state;
    svc
}

fn drbd_res(role: Role, disk: DiskState, cstate: ConnectionState, peer_role: Role) -> DrbdResource {
    let connected = cstate == ConnectionState::Connected;
    DrbdResource {
        name: "data".into(),
        role,
        suspended: false,
        devices: vec![DrbdDevice {
            volume: 0,
            minor: 0,
            disk,
            client: false,
            open: false,
            quorum: Quorum::Yes,
        }],
        connections: vec![DrbdConnection {
            peer_node_id: Some(1),
            name: Some("deb2".into()),
            state: cstate,
            peer_role,
            peer_devices: vec![DrbdPeerDevice {
                volume: 0,
                replication: if connected {
                    ReplicationState::Established
                } else {
                    ReplicationState::Off
                },
                peer_disk: if connected {
                    DiskState::UpToDate
                } else {
                    DiskState::DUnknown
                },
                percent_in_sync: None,
            }],
        }],
    }
}

fn mount(source: &str, dev: DevNum, mnt: &str) -> Mount {
    Mount::new(MountFields {
        mount_id: 100,
        parent_id: 1,
        dev,
        root: Path::new("/"),
        mount_point: Path::new(mnt),
        options: "rw",
        optional_fields: &[],
        fstype: "ext3",
        source,
        super_options: "rw",
        deleted: false,
    })
}

/// How far up the seed service is on the node, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    NotConfigured,
    Secondary,
    Primary,
    Mounted,
    ContainerRunning,
    AppUp,
}

const LEVELS: [Level; 6] = [
    Level::NotConfigured,
    Level::Secondary,
    Level::Primary,
    Level::Mounted,
    Level::ContainerRunning,
    Level::AppUp,
];

fn node_at(level: Level) -> NodeState {
    let mut drbd = BTreeMap::new();
    if level >= Level::Secondary {
        let role = if level >= Level::Primary {
            Role::Primary
        } else {
            Role::Secondary
        };
        drbd.insert(
            "data".to_string(),
            drbd_res(
                role,
                DiskState::UpToDate,
                ConnectionState::Connected,
                Role::Secondary,
            ),
        );
    }
    let mut mounts = vec![mount("/dev/sda1", DevNum { major: 8, minor: 1 }, "/")];
    if level >= Level::Mounted {
        mounts.push(mount("/dev/drbd0", DRBD0, "/drbdsvc"));
        if let Some(d) = drbd.get_mut("data") {
            d.devices[0].open = true;
        }
    }
    let ct = if level >= Level::ContainerRunning {
        ContainerState::Running
    } else {
        ContainerState::Stopped
    };
    let mut apps = BTreeMap::new();
    if level >= Level::ContainerRunning {
        let (status, detail) = if level >= Level::AppUp {
            (AppStatus::Up, "C10foo up")
        } else {
            (AppStatus::Down, "C10foo down")
        };
        apps.insert(
            "drbdsvc.opensvc.com".to_string(),
            BTreeMap::from([(
                rid(Kind::App, 0),
                AppObservation {
                    status,
                    detail: detail.into(),
                },
            )]),
        );
    }
    NodeState {
        node: "deb1".into(),
        drbd: Observed::Ok(drbd),
        mounts: Observed::Ok(mounts),
        devices: BTreeMap::from([(PathBuf::from("/dev/drbd0"), DRBD0)]),
        dirs: BTreeSet::from([PathBuf::from("/drbdsvc")]),
        vz: Observed::Ok(BTreeMap::from([("101".to_string(), ct)])),
        lxc: Observed::Ok(BTreeMap::new()),
        apps,
        scripts: BTreeMap::new(),
        quorum_frozen: BTreeMap::new(),
        split_brains: Default::default(),
        standalone_reported: None,
        drbd_files: Default::default(),
        drbd_adjust: Default::default(),
        drbd_drift: Default::default(),
        drbd_configured: None,
        drbd_options: Default::default(),
    }
}

/// A compact spelling of a plan's actions, for tables.
fn short(action: &Action) -> String {
    match action {
        Action::DrbdUp { res } => format!("up {res}"),
        Action::DrbdConnect { res, peer: None } => format!("connect {res}"),
        Action::DrbdConnect {
            res,
            peer: Some(peer),
        } => format!("connect {res}:{peer}"),
        Action::DrbdPrimary { res } => format!("primary {res}"),
        Action::DrbdSecondary { res, force: false } => format!("secondary {res}"),
        Action::DrbdSecondary { res, force: true } => format!("secondary --force {res}"),
        Action::DrbdDown { res } => format!("down {res}"),
        Action::DrbdInstall { res, .. } => format!("install {res}"),
        Action::DrbdAdjust { res } => format!("adjust {res}"),
        Action::Mkdir { path } => format!("mkdir {}", path.display()),
        Action::Mount {
            mnt, fsck: true, ..
        } => format!("fsck+mount {}", mnt.display()),
        Action::Mount {
            mnt, fsck: false, ..
        } => format!("mount {}", mnt.display()),
        Action::Umount { mnt, .. } => format!("umount {}", mnt.display()),
        Action::ContainerStart { container } => format!("start {}", container.id()),
        Action::ContainerWaitUp { container } => format!("wait-up {}", container.id()),
        Action::ContainerWaitDown { container } => format!("wait-down {}", container.id()),
        Action::ContainerStop { container } => format!("stop {}", container.id()),
        Action::ContainerFreeze { container } => format!("freeze {}", container.id()),
        Action::ContainerThaw {
            container,
            stop: false,
        } => format!("thaw {}", container.id()),
        Action::ContainerThaw {
            container,
            stop: true,
        } => format!("thaw-to-stop {}", container.id()),
        Action::AppStart => "app start".into(),
        Action::AppStop => "app stop".into(),
    }
}

fn actions(plan: &ServicePlan) -> Vec<String> {
    plan.steps.iter().map(|s| short(&s.action)).collect()
}

#[test]
fn up_from_every_partial_state() {
    let table: [(Level, &[&str]); 6] = [
        (
            Level::NotConfigured,
            &[
                "up data",
                "primary data",
                "fsck+mount /drbdsvc",
                "start 101",
                "app start",
            ],
        ),
        (
            Level::Secondary,
            &[
                "primary data",
                "fsck+mount /drbdsvc",
                "start 101",
                "app start",
            ],
        ),
        (
            Level::Primary,
            &["fsck+mount /drbdsvc", "start 101", "app start"],
        ),
        (Level::Mounted, &["start 101", "app start"]),
        (Level::ContainerRunning, &["app start"]),
        (Level::AppUp, &[]),
    ];
    for (level, expected) in table {
        let plan = plan_service(&seed(), &node_at(level));
        assert_eq!(actions(&plan), expected, "from {level:?}");
        assert_eq!(plan.blocked, None, "from {level:?}");
        assert_eq!(plan.is_converged(), expected.is_empty());
    }
}

#[test]
fn down_from_every_partial_state() {
    let table: [(Level, &[&str]); 6] = [
        (
            Level::AppUp,
            &["app stop", "stop 101", "umount /drbdsvc", "secondary data"],
        ),
        (
            Level::ContainerRunning,
            &["stop 101", "umount /drbdsvc", "secondary data"],
        ),
        (Level::Mounted, &["umount /drbdsvc", "secondary data"]),
        (Level::Primary, &["secondary data"]),
        (Level::Secondary, &[]),
        (Level::NotConfigured, &[]),
    ];
    let svc = with_state(seed(), DesiredState::Down);
    for (level, expected) in table {
        let plan = plan_service(&svc, &node_at(level));
        assert_eq!(actions(&plan), expected, "from {level:?}");
        assert_eq!(plan.blocked, None, "from {level:?}");
    }
}

#[test]
fn stop_down_takes_the_resource_down_even_when_secondary() {
    let mut svc = with_state(seed(), DesiredState::Down);
    if let Spec::Drbd(d) = &mut svc.resources[0].spec {
        d.stop = DrbdStop::Down;
    }
    assert_eq!(
        actions(&plan_service(&svc, &node_at(Level::Secondary))),
        ["down data"]
    );
    assert_eq!(
        actions(&plan_service(&svc, &node_at(Level::Mounted))),
        ["umount /drbdsvc", "down data"]
    );
    assert!(plan_service(&svc, &node_at(Level::NotConfigured)).is_converged());
}

#[test]
fn every_reason_names_what_was_observed() {
    let plan = plan_service(&seed(), &node_at(Level::Secondary));
    assert_eq!(plan.steps[0].reason, "resource data is Secondary");
    assert_eq!(plan.steps[1].reason, "/drbdsvc is not mounted");
}

#[test]
fn regression_peer_primary_blocks_promotion_and_everything_after_it() {
    let mut node = node_at(Level::Secondary);
    let res = node.drbd_mut("data");
    res.connections[0].peer_role = Role::Primary;
    let plan = plan_service(&seed(), &node);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let blocked = plan.blocked.expect("blocked");
    assert_eq!(blocked.rid, rid(Kind::Drbd, 0));
    assert_eq!(blocked.kind, BlockKind::Waiting);
    assert!(
        blocked.reason.contains("peer deb2 is Primary"),
        "{}",
        blocked.reason
    );
}

#[test]
fn allow_two_primaries_permits_promotion_beside_a_primary_peer() {
    let mut svc = seed();
    if let Spec::Drbd(d) = &mut svc.resources[0].spec {
        d.allow_two_primaries = true;
    }
    let mut node = node_at(Level::Secondary);
    node.drbd_mut("data").connections[0].peer_role = Role::Primary;
    let plan = plan_service(&svc, &node);
    assert_eq!(plan.blocked, None);
    assert_eq!(actions(&plan)[0], "primary data");
}

#[test]
fn promotion_needs_up_to_date_data() {
    for disk in [
        DiskState::Outdated,
        DiskState::Inconsistent,
        DiskState::Diskless,
        DiskState::DUnknown,
    ] {
        let mut node = node_at(Level::Secondary);
        node.drbd_mut("data").devices[0].disk = disk.clone();
        let plan = plan_service(&seed(), &node);
        assert!(plan.steps.is_empty(), "{disk}");
        let reason = plan.blocked.expect("blocked").reason;
        assert!(reason.contains(&format!("has {disk} data")), "{reason}");
    }
}

#[test]
fn standalone_is_connected_then_promotion_waits_to_see_the_peer() {
    let mut node = node_at(Level::Secondary);
    let res = node.drbd_mut("data");
    res.connections[0].state = ConnectionState::StandAlone;
    res.connections[0].peer_role = Role::Unknown;
    let plan = plan_service(&seed(), &node);
    assert_eq!(actions(&plan), ["connect data"]);
    let blocked = plan.blocked.expect("waits");
    assert_eq!(blocked.kind, BlockKind::Waiting);
    assert!(
        blocked
            .reason
            .contains("peer deb2 is not connected (StandAlone)"),
        "{}",
        blocked.reason
    );
}

#[test]
fn regression_a_peer_that_is_not_connected_holds_promotion() {
    // DRBD without quorum or fencing lets both sides of a cut link promote: a peer whose role
    // cannot be seen may be Primary. The planner promoted over it (two Primaries after a
    // switchover made while the link was down).
    for state in [
        ConnectionState::Connecting,
        ConnectionState::Unconnected,
        ConnectionState::NetworkFailure,
        ConnectionState::WFConnection,
    ] {
        let mut node = node_at(Level::Secondary);
        let res = node.drbd_mut("data");
        res.connections[0].state = state.clone();
        res.connections[0].peer_role = Role::Unknown;
        let plan = plan_service(&seed(), &node);
        assert!(plan.steps.is_empty(), "{state}: {:?}", plan.steps);
        let blocked = plan.blocked.expect("waits");
        assert_eq!(blocked.kind, BlockKind::Waiting, "{state}");
        assert!(
            blocked
                .reason
                .contains(&format!("peer deb2 is not connected ({state})")),
            "{}",
            blocked.reason
        );
    }
}

#[test]
fn allow_two_primaries_promotes_beside_a_peer_it_cannot_see() {
    let mut svc = seed();
    if let Spec::Drbd(d) = &mut svc.resources[0].spec {
        d.allow_two_primaries = true;
    }
    let mut node = node_at(Level::Secondary);
    let res = node.drbd_mut("data");
    res.connections[0].state = ConnectionState::Connecting;
    res.connections[0].peer_role = Role::Unknown;
    let plan = plan_service(&svc, &node);
    assert_eq!(actions(&plan)[0], "primary data");
    assert!(plan.blocked.is_none());
}

#[test]
fn a_resource_without_peers_promotes() {
    let mut node = node_at(Level::Secondary);
    node.drbd_mut("data").connections.clear();
    let plan = plan_service(&seed(), &node);
    assert_eq!(actions(&plan)[0], "primary data");
}

#[test]
fn demotion_refused_under_a_mount_converge_does_not_manage() {
    let mut node = node_at(Level::Primary);
    if let Observed::Ok(mounts) = &mut node.mounts {
        // Mounted by hand elsewhere, through another name: matched by device number.
        mounts.push(mount("/dev/drbd/by-res/data/0", DRBD0, "/mnt/rescue"));
    }
    let plan = plan_service(&with_state(seed(), DesiredState::Down), &node);
    assert!(plan.steps.is_empty());
    let reason = plan.blocked.expect("blocked").reason;
    assert!(
        reason.contains("/dev/drbd0 is mounted on /mnt/rescue"),
        "{reason}"
    );
}

#[test]
fn demotion_refused_while_the_device_is_held_open() {
    let mut node = node_at(Level::Primary);
    node.drbd_mut("data").devices[0].open = true;
    let plan = plan_service(&with_state(seed(), DesiredState::Down), &node);
    let reason = plan.blocked.expect("blocked").reason;
    assert!(
        reason.contains("/dev/drbd0 is held open by a process"),
        "{reason}"
    );
    assert!(
        reason.contains("secondary_force: true would demote it"),
        "{reason}"
    );
}

fn forcing(mut svc: Service, stop: DrbdStop) -> Service {
    if let Spec::Drbd(d) = &mut svc.resources[0].spec {
        d.secondary_force = true;
        d.stop = stop;
    }
    svc
}

#[test]
fn secondary_force_demotes_a_device_held_open_with_nothing_mounted() {
    let mut node = node_at(Level::Primary);
    node.drbd_mut("data").devices[0].open = true;
    let svc = forcing(with_state(seed(), DesiredState::Down), DrbdStop::Secondary);
    let plan = plan_service(&svc, &node);
    assert_eq!(actions(&plan), ["secondary --force data"]);
    assert!(
        plan.steps[0]
            .reason
            .contains("secondary_force demotes it anyway"),
        "{}",
        plan.steps[0].reason
    );
    // Nothing held open: a plain demotion, even when forcing is allowed.
    let node = node_at(Level::Primary);
    assert_eq!(actions(&plan_service(&svc, &node)), ["secondary data"]);
}

#[test]
fn secondary_force_never_demotes_under_a_mount_nor_takes_a_device_in_use_down() {
    let mut node = node_at(Level::Primary);
    node.drbd_mut("data").devices[0].open = true;
    if let Observed::Ok(mounts) = &mut node.mounts {
        mounts.push(mount("/dev/drbd/by-res/data/0", DRBD0, "/mnt/rescue"));
    }
    let svc = forcing(with_state(seed(), DesiredState::Down), DrbdStop::Secondary);
    let plan = plan_service(&svc, &node);
    assert!(plan.steps.is_empty(), "{:?}", actions(&plan));
    let reason = plan.blocked.expect("blocked").reason;
    assert!(reason.contains("mounted on /mnt/rescue"), "{reason}");
    // Mounts that cannot be read are taken as a mount.
    let mut node = node_at(Level::Primary);
    node.drbd_mut("data").devices[0].open = true;
    node.mounts = Observed::Unavailable("no mountinfo".into());
    let plan = plan_service(&svc, &node);
    assert!(
        !actions(&plan).iter().any(|a| a.contains("--force")),
        "{:?}",
        actions(&plan)
    );
    // `stop: down` of a device in use fails whatever is forced: refused.
    let mut node = node_at(Level::Primary);
    node.drbd_mut("data").devices[0].open = true;
    let svc = forcing(with_state(seed(), DesiredState::Down), DrbdStop::Down);
    let plan = plan_service(&svc, &node);
    assert!(plan.steps.is_empty(), "{:?}", actions(&plan));
    let reason = plan.blocked.expect("blocked").reason;
    assert!(
        reason.contains("refusing to take resource data down"),
        "{reason}"
    );
}

#[test]
fn unmount_planned_earlier_lets_demotion_through() {
    let plan = plan_service(
        &with_state(seed(), DesiredState::Down),
        &node_at(Level::Mounted),
    );
    assert_eq!(plan.blocked, None);
    assert_eq!(actions(&plan), ["umount /drbdsvc", "secondary data"]);
}

#[test]
fn never_mounts_a_drbd_device_that_is_not_primary() {
    // The DRBD resource is disabled here, so nothing promotes it: the mount must be refused.
    let mut svc = seed();
    svc.resources[0].disabled = true;
    let plan = plan_service(&svc, &node_at(Level::Secondary));
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let reason = plan.blocked.expect("blocked").reason;
    assert!(
        reason.contains("belongs to DRBD resource data, which is Secondary"),
        "{reason}"
    );
}

#[test]
fn a_drbd_looking_device_nobody_provides_is_refused() {
    let mut svc = seed();
    svc.resources.remove(0);
    let plan = plan_service(&svc, &node_at(Level::NotConfigured));
    assert!(
        plan.blocked
            .expect("blocked")
            .reason
            .contains("no DRBD resource provides it")
    );
}

#[test]
fn frozen_service_gets_no_action_from_any_state() {
    let svc = with_state(seed(), DesiredState::Frozen);
    for level in LEVELS {
        let plan = plan_service(&svc, &node_at(level));
        assert!(plan.is_converged(), "from {level:?}");
        assert_eq!(plan.desired, DesiredState::Frozen);
    }
}

#[test]
fn service_pinned_to_another_node_is_kept_down_here() {
    let mut svc = seed();
    svc.placement = Placement::Pinned {
        node: "deb2".into(),
    };
    let plan = plan_service(&svc, &node_at(Level::AppUp));
    assert_eq!(plan.desired, DesiredState::Down);
    assert_eq!(
        actions(&plan),
        ["app stop", "stop 101", "umount /drbdsvc", "secondary data"]
    );
}

fn pinned_to_deb2(stop: DrbdStop) -> Service {
    let mut svc = seed();
    svc.placement = Placement::Pinned {
        node: "deb2".into(),
    };
    if let Spec::Drbd(d) = &mut svc.resources[0].spec {
        d.stop = stop;
    }
    svc
}

#[test]
fn a_standby_brings_its_drbd_resource_up_and_nothing_else() {
    // The node that loses a service keeps replicating: tried with `node: elsewhere` on a node
    // whose resource was not up, converge did nothing, and the node that later gained the
    // service would have promoted data never replicated to it.
    let mut node = node_at(Level::NotConfigured);
    node.drbd_configured = Some(Observed::Ok(BTreeSet::from(["data".to_string()])));
    for stop in [DrbdStop::Secondary, DrbdStop::Down] {
        let plan = plan_service(&pinned_to_deb2(stop), &node);
        assert_eq!(plan.desired, DesiredState::Down);
        assert_eq!(actions(&plan), ["up data"], "{stop:?}");
        assert!(
            plan.steps[0].reason.contains("stands by"),
            "{:?}",
            plan.steps
        );
    }
}

#[test]
fn a_standby_keeps_its_resource_up_secondary_and_connected() {
    for stop in [DrbdStop::Secondary, DrbdStop::Down] {
        // Secondary and connected: nothing to do, never `down` (whatever `stop` says).
        let plan = plan_service(&pinned_to_deb2(stop), &node_at(Level::Secondary));
        assert!(plan.is_converged(), "{stop:?}: {:?}", plan.steps);
        // Running here: stopped down to Secondary.
        let plan = plan_service(&pinned_to_deb2(stop), &node_at(Level::AppUp));
        assert_eq!(
            actions(&plan),
            ["app stop", "stop 101", "umount /drbdsvc", "secondary data"],
            "{stop:?}"
        );
    }
    let mut node = node_at(Level::Secondary);
    node.drbd_mut("data").connections[0].state = ConnectionState::StandAlone;
    let plan = plan_service(&pinned_to_deb2(DrbdStop::Secondary), &node);
    assert_eq!(actions(&plan), ["connect data"]);
}

#[test]
fn a_node_the_drbd_configuration_does_not_name_is_no_standby() {
    let mut node = node_at(Level::NotConfigured);
    node.drbd_configured = Some(Observed::Ok(BTreeSet::from(["other".to_string()])));
    let plan = plan_service(&pinned_to_deb2(DrbdStop::Secondary), &node);
    assert!(plan.is_converged(), "{:?}", plan.steps);
    assert!(
        plan.satisfied
            .iter()
            .any(|(_, note)| note.contains("no section for this node")),
        "{:?}",
        plan.satisfied
    );
}

#[test]
fn a_standby_that_cannot_read_the_drbd_configuration_warns_and_acts_on_nothing() {
    let mut node = node_at(Level::NotConfigured);
    node.drbd_configured = Some(Observed::Unavailable("drbdadm: parse error".into()));
    let plan = plan_service(&pinned_to_deb2(DrbdStop::Secondary), &node);
    assert!(plan.steps.is_empty());
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("drbdadm: parse error")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn a_standby_never_demotes_under_a_mount_it_does_not_manage() {
    let mut node = node_at(Level::Primary);
    if let Observed::Ok(mounts) = &mut node.mounts {
        mounts.push(mount("/dev/drbd0", DRBD0, "/mnt/rescue"));
    }
    let plan = plan_service(&pinned_to_deb2(DrbdStop::Secondary), &node);
    assert!(!actions(&plan).contains(&"secondary data".to_string()));
    let blocked = plan.blocked.expect("refused");
    assert_eq!(blocked.kind, BlockKind::Refused);
}

fn up_by_system(mut svc: Service) -> Service {
    if let Spec::Drbd(d) = &mut svc.resources[0].spec {
        d.up_by = UpBy::System;
    }
    svc
}

#[test]
fn up_by_system_leaves_up_and_connect_to_the_system() {
    // Where the service runs: a resource not up is waited for, never brought up.
    let plan = plan_service(&up_by_system(seed()), &node_at(Level::NotConfigured));
    let blocked = waiting(plan);
    assert!(
        blocked.reason.contains("up_by: system"),
        "{}",
        blocked.reason
    );
    // StandAlone: no connect; the promotion waits for the peer to be seen.
    let mut node = node_at(Level::Secondary);
    node.drbd_mut("data").connections[0].state = ConnectionState::StandAlone;
    node.drbd_mut("data").connections[0].peer_role = Role::Unknown;
    let plan = plan_service(&up_by_system(seed()), &node);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(plan.blocked.map(|b| b.kind), Some(BlockKind::Waiting));
    // Up and connected: promoted and the stack goes up as usual.
    let plan = plan_service(&up_by_system(seed()), &node_at(Level::Secondary));
    assert_eq!(actions(&plan)[0], "primary data");
    // Stopped: demoted, never taken down.
    let plan = plan_service(
        &with_state(up_by_system(seed()), DesiredState::Down),
        &node_at(Level::Primary),
    );
    assert_eq!(actions(&plan), ["secondary data"]);
}

#[test]
fn up_by_system_on_a_standby_does_nothing_to_a_resource_not_up() {
    let mut node = node_at(Level::NotConfigured);
    node.drbd_configured = Some(Observed::Ok(BTreeSet::from(["data".to_string()])));
    let plan = plan_service(&up_by_system(pinned_to_deb2(DrbdStop::Secondary)), &node);
    assert!(plan.is_converged(), "{:?}", plan.steps);
    assert!(
        plan.satisfied
            .iter()
            .any(|(_, note)| note.contains("the system brings it up")),
        "{:?}",
        plan.satisfied
    );
}

#[test]
fn a_service_down_everywhere_is_no_standby() {
    // `state: down` with a pin: the service runs nowhere, DRBD follows `stop`.
    let svc = with_state(pinned_to_deb2(DrbdStop::Down), DesiredState::Down);
    let plan = plan_service(&svc, &node_at(Level::Secondary));
    assert_eq!(actions(&plan), ["down data"]);
    let plan = plan_service(&svc, &node_at(Level::NotConfigured));
    assert!(plan.is_converged());
}

#[test]
fn missing_mount_point_is_created_first() {
    let mut node = node_at(Level::Primary);
    node.dirs.clear();
    assert_eq!(
        actions(&plan_service(&seed(), &node))[..2],
        ["mkdir /drbdsvc", "fsck+mount /drbdsvc"]
    );
}

#[test]
fn fsck_follows_the_fsck_key() {
    let mut svc = seed();
    let Spec::Fs(fs) = &mut svc.resources[1].spec else {
        unreachable!("seed fs#1")
    };
    fs.fsck = Fsck::No;
    assert_eq!(
        actions(&plan_service(&svc, &node_at(Level::Primary)))[0],
        "mount /drbdsvc"
    );
    let Spec::Fs(fs) = &mut svc.resources[1].spec else {
        unreachable!("seed fs#1")
    };
    fs.fstype = "xfs".into();
    fs.fsck = Fsck::Auto;
    assert_eq!(
        actions(&plan_service(&svc, &node_at(Level::Primary)))[0],
        "mount /drbdsvc"
    );
    let Spec::Fs(fs) = &mut svc.resources[1].spec else {
        unreachable!("seed fs#1")
    };
    fs.fstype = "ext4".into();
    assert_eq!(
        actions(&plan_service(&svc, &node_at(Level::Primary)))[0],
        "fsck+mount /drbdsvc"
    );
}

#[test]
fn another_filesystem_on_the_mount_point_blocks_up_and_is_left_alone_down() {
    let mut node = node_at(Level::Primary);
    if let Observed::Ok(mounts) = &mut node.mounts {
        mounts.push(mount(
            "/dev/sdb1",
            DevNum {
                major: 8,
                minor: 17,
            },
            "/drbdsvc",
        ));
    }
    let up = plan_service(&seed(), &node);
    assert!(
        up.blocked
            .expect("blocked")
            .reason
            .contains("/dev/sdb1 is mounted on /drbdsvc, not /dev/drbd0")
    );
    let down = plan_service(&with_state(seed(), DesiredState::Down), &node);
    assert_eq!(actions(&down), ["secondary data"]);
}

#[test]
fn device_mounted_elsewhere_blocks_up() {
    let mut node = node_at(Level::Primary);
    if let Observed::Ok(mounts) = &mut node.mounts {
        mounts.push(mount("/dev/drbd0", DRBD0, "/elsewhere"));
    }
    assert!(
        plan_service(&seed(), &node)
            .blocked
            .expect("blocked")
            .reason
            .contains("already mounted on /elsewhere")
    );
}

#[test]
fn stop_order_unmounts_deeper_mount_points_and_submounts_first() {
    let mut svc = with_state(seed(), DesiredState::Down);
    // fs#1 on /drbdsvc and fs#2 on /drbdsvc/data/deep: fs#2 comes off first though its N is higher…
    svc.resources.insert(
        2,
        resource(
            Kind::Fs,
            2,
            Spec::Fs(fs_spec("/dev/drbd1", "/drbdsvc/data/deep")),
        ),
    );
    // …and fs#0 on /zz (shallower) after both, whatever its N.
    svc.resources.insert(
        1,
        resource(Kind::Fs, 0, Spec::Fs(fs_spec("/dev/sdc1", "/zz"))),
    );
    let mut node = node_at(Level::Mounted);
    let drbd1 = DevNum {
        major: 147,
        minor: 1,
    };
    node.devices.insert("/dev/drbd1".into(), drbd1);
    if let Observed::Ok(mounts) = &mut node.mounts {
        mounts.push(mount(
            "/dev/sdc1",
            DevNum {
                major: 8,
                minor: 33,
            },
            "/zz",
        ));
        mounts.push(mount("/dev/drbd1", drbd1, "/drbdsvc/data/deep"));
        // Not managed, but below a managed mount point: must come off before /drbdsvc.
        mounts.push(mount(
            "tmpfs",
            DevNum {
                major: 0,
                minor: 50,
            },
            "/drbdsvc/run",
        ));
    }
    let plan = plan_service(&svc, &node);
    assert_eq!(
        actions(&plan),
        [
            "umount /drbdsvc/data/deep",
            "umount /drbdsvc/run",
            "umount /drbdsvc",
            "umount /zz",
            "secondary data"
        ]
    );
}

#[test]
fn regression_demote_planned_under_the_lower_of_two_stacked_mounts() {
    // Found by the safety property (tests/plan_properties.rs): the filesystem mounted twice on
    // its mount point, one mount stacked on the other. One unmount was planned, after which
    // the mount point counted as unmounted, and the demotion followed while the lower mount was
    // still there. Each mount needs its own unmount; their reasons differ, so that the
    // controller sees the second as progress, not as the first one changing nothing.
    let mut node = node_at(Level::Mounted);
    if let Observed::Ok(mounts) = &mut node.mounts {
        mounts.push(mount("/dev/drbd/by-res/data/0", DRBD0, "/drbdsvc"));
        // Stacked sub-mounts below it come off first, each of them.
        for _ in 0..2 {
            mounts.push(mount(
                "tmpfs",
                DevNum {
                    major: 0,
                    minor: 50,
                },
                "/drbdsvc/run",
            ));
        }
    }
    let plan = plan_service(&with_state(seed(), DesiredState::Down), &node);
    assert_eq!(plan.blocked, None);
    assert_eq!(
        actions(&plan),
        [
            "umount /drbdsvc/run",
            "umount /drbdsvc/run",
            "umount /drbdsvc",
            "umount /drbdsvc",
            "secondary data"
        ]
    );
    let reasons: Vec<&str> = plan.steps.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(
        reasons[..4],
        [
            "mounted below /drbdsvc (2 mounts stacked there)",
            "mounted below /drbdsvc",
            "/dev/drbd0 is mounted on /drbdsvc (2 mounts stacked there)",
            "/dev/drbd0 is mounted on /drbdsvc",
        ]
    );
    // Our filesystem under someone else's on our mount point: the foreign one is not ours to
    // unmount, so neither is ours below it, and the demotion is refused.
    let mut node = node_at(Level::Mounted);
    if let Observed::Ok(mounts) = &mut node.mounts {
        mounts.push(mount(
            "/dev/sdb1",
            DevNum {
                major: 8,
                minor: 17,
            },
            "/drbdsvc",
        ));
    }
    let plan = plan_service(&with_state(seed(), DesiredState::Down), &node);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert!(
        plan.blocked
            .expect("blocked")
            .reason
            .contains("/dev/drbd0 is mounted on /drbdsvc")
    );
}

#[test]
fn optional_resource_problems_warn_and_the_stack_goes_on() {
    // An optional filesystem whose mount point holds someone else's: a warning, and the
    // container and the apps are started all the same.
    let mut svc = seed();
    svc.resources.insert(
        2,
        Resource {
            optional: true,
            ..resource(Kind::Fs, 2, Spec::Fs(fs_spec("/dev/sdc1", "/zz")))
        },
    );
    let mut node = node_at(Level::Mounted);
    if let Observed::Ok(mounts) = &mut node.mounts {
        mounts.push(mount(
            "/dev/sdb1",
            DevNum {
                major: 8,
                minor: 17,
            },
            "/zz",
        ));
    }
    let plan = plan_service(&svc, &node);
    assert_eq!(plan.blocked, None);
    assert_eq!(actions(&plan), ["start 101", "app start"]);
    assert_eq!(plan.warnings.len(), 1);
    assert!(
        plan.warnings[0].contains("fs#2 (optional): /dev/sdb1 is mounted on /zz"),
        "{:?}",
        plan.warnings
    );
    // An optional container that does not exist warns too; its apps, which would run inside it,
    // are then refused (see the regression test below).
    let mut svc = seed();
    svc.resources[2].optional = true;
    let mut node = node_at(Level::Mounted);
    node.vz = Observed::Ok(BTreeMap::new());
    let plan = plan_service(&svc, &node);
    assert_eq!(plan.warnings.len(), 1);
    assert!(
        plan.warnings[0].contains("container 101 does not exist"),
        "{:?}",
        plan.warnings
    );
    assert_eq!(plan.blocked.map(|b| b.rid), Some(rid(Kind::App, 0)));
}

#[test]
fn unobservable_sources_block_with_their_reason() {
    let mut node = node_at(Level::NotConfigured);
    node.drbd = Observed::Unavailable("drbdsetup not found".into());
    let plan = plan_service(&seed(), &node);
    assert_eq!(
        plan.blocked.expect("blocked").reason,
        "cannot observe DRBD: drbdsetup not found"
    );

    let mut node = node_at(Level::Mounted);
    node.vz = Observed::Unavailable("vzctl not found".into());
    let plan = plan_service(&seed(), &node);
    assert!(
        plan.blocked
            .expect("blocked")
            .reason
            .contains("cannot observe OpenVZ containers")
    );
}

#[test]
fn container_hidden_on_an_unmounted_filesystem_is_started_after_the_mount() {
    let mut node = node_at(Level::Primary);
    node.vz = Observed::Ok(BTreeMap::new());
    let plan = plan_service(&seed(), &node);
    assert_eq!(plan.blocked, None);
    assert_eq!(
        actions(&plan),
        ["fsck+mount /drbdsvc", "start 101", "app start"]
    );
    // Mounted already and still absent: it really does not exist.
    let mut node = node_at(Level::Mounted);
    node.vz = Observed::Ok(BTreeMap::new());
    let plan = plan_service(&seed(), &node);
    assert!(
        plan.blocked
            .expect("blocked")
            .reason
            .contains("does not exist")
    );
}

#[test]
fn satisfied_resources_are_noted_for_the_log() {
    let plan = plan_service(&seed(), &node_at(Level::Mounted));
    let notes: Vec<&str> = plan.satisfied.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        notes,
        [
            "drbd resource data is already up",
            "drbd resource data is already Primary",
            "/dev/drbd0 is already mounted on /drbdsvc"
        ]
    );
    let plan = plan_service(
        &with_state(seed(), DesiredState::Down),
        &node_at(Level::NotConfigured),
    );
    let notes: Vec<&str> = plan.satisfied.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        notes,
        [
            "container 101 is already down",
            "/drbdsvc is already unmounted",
            "drbd resource data is already down"
        ]
    );
}

#[test]
fn container_in_transition_is_waited_for() {
    for (state, up, down) in [
        (
            ContainerState::Starting,
            vec!["wait-up 101", "app start"],
            vec!["stop 101", "umount /drbdsvc", "secondary data"],
        ),
        (
            ContainerState::Stopping,
            vec!["wait-down 101", "start 101", "app start"],
            vec!["wait-down 101", "umount /drbdsvc", "secondary data"],
        ),
    ] {
        let mut node = node_at(Level::Mounted);
        node.vz = Observed::Ok(BTreeMap::from([("101".to_string(), state)]));
        assert_eq!(actions(&plan_service(&seed(), &node)), up, "{state:?}");
        assert_eq!(
            actions(&plan_service(
                &with_state(seed(), DesiredState::Down),
                &node
            )),
            down,
            "{state:?}"
        );
    }
}

#[test]
fn app_check_warn_blocks_start_but_allows_stop() {
    let mut node = node_at(Level::AppUp);
    node.apps
        .get_mut("drbdsvc.opensvc.com")
        .and_then(|a| a.get_mut(&rid(Kind::App, 0)))
        .expect("app")
        .status = AppStatus::Warn;
    assert!(
        plan_service(&seed(), &node)
            .blocked
            .expect("blocked")
            .reason
            .contains("warn")
    );
    assert_eq!(
        actions(&plan_service(
            &with_state(seed(), DesiredState::Down),
            &node
        ))[0],
        "app stop"
    );
}

#[test]
fn regression_apps_of_a_disabled_container_stay_inside_it() {
    // converge does not start the disabled container: while it is down, the apps wait (their
    // start would run inside it), they never move to the host.
    let mut svc = seed();
    svc.resources[2].disabled = true;
    let plan = plan_service(&svc, &node_at(Level::Mounted));
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert!(
        plan.blocked
            .expect("blocked")
            .reason
            .contains("is disabled and not running")
    );
    // Running (started by hand): the apps run inside it as usual.
    let plan = plan_service(&svc, &node_at(Level::ContainerRunning));
    assert_eq!(actions(&plan), ["app start"]);
    assert!(svc.container().is_some());
}

#[test]
fn regression_app_start_planned_inside_an_optional_container_nothing_starts() {
    // Found by the run-the-first-step property (tests/plan_properties.rs): an optional container
    // that cannot be started (absent here) only warned, and the apps were still planned to
    // start "once their container runs". Nothing would start it: the app start failed every
    // time, and the controller rolled back the DRBD promotion and the mount with it, again at
    // every retry. The apps must be refused instead, and nothing before them undone.
    let mut svc = seed();
    svc.resources[2].optional = true;
    let frozen = BTreeMap::from([("101".to_string(), ContainerState::Frozen)]);
    let cases: [(Level, Observed<_>, &[&str], &str); 3] = [
        // Absent with its filesystem mounted: it really does not exist.
        (
            Level::Mounted,
            Observed::Ok(BTreeMap::new()),
            &[],
            "does not exist",
        ),
        (
            Level::Secondary,
            Observed::Ok(frozen),
            &["primary data", "fsck+mount /drbdsvc"],
            "is frozen",
        ),
        (
            Level::Secondary,
            Observed::Unavailable("vzctl not found".into()),
            &["primary data", "fsck+mount /drbdsvc"],
            "cannot observe",
        ),
    ];
    for (level, vz, expected, why) in cases {
        let mut node = node_at(level);
        node.vz = vz;
        let plan = plan_service(&svc, &node);
        assert_eq!(actions(&plan), expected, "{why}");
        assert!(plan.warnings[0].contains(why), "{:?}", plan.warnings);
        let blocked = plan.blocked.expect("the app is refused");
        assert_eq!(blocked.rid, rid(Kind::App, 0));
        assert!(
            blocked
                .reason
                .contains("container 101 is not running and nothing starts it"),
            "{}",
            blocked.reason
        );
    }
    // A container the plan starts first still lets its apps follow.
    let plan = plan_service(&svc, &node_at(Level::Secondary));
    assert_eq!(
        actions(&plan),
        [
            "primary data",
            "fsck+mount /drbdsvc",
            "start 101",
            "app start"
        ]
    );
}

#[test]
fn disabled_resources_are_ignored() {
    let mut svc = seed();
    svc.resources[3].disabled = true;
    assert!(plan_service(&svc, &node_at(Level::ContainerRunning)).is_converged());
}

/// What a well-behaved node does when a step runs: the model the convergence test applies.
fn apply(node: &mut NodeState, action: &Action) {
    match action {
        Action::DrbdInstall { res, .. } => {
            if let Some(file) = node.drbd_files.get_mut(res) {
                file.state = DrbdFileState::Installed;
            }
            node.drbd_adjust.insert(res.clone());
        }
        Action::DrbdAdjust { res } => {
            node.drbd_adjust.remove(res);
        }
        Action::DrbdUp { res } => {
            node.drbd_adjust.remove(res);
            if let Observed::Ok(d) = &mut node.drbd {
                d.insert(
                    "data".into(),
                    drbd_res(
                        Role::Secondary,
                        DiskState::UpToDate,
                        ConnectionState::Connected,
                        Role::Secondary,
                    ),
                );
            }
        }
        Action::DrbdConnect { .. } => {
            node.drbd_mut("data").connections[0].state = ConnectionState::Connected
        }
        Action::DrbdPrimary { .. } => node.drbd_mut("data").role = Role::Primary,
        Action::DrbdSecondary { .. } => node.drbd_mut("data").role = Role::Secondary,
        Action::DrbdDown { .. } => {
            if let Observed::Ok(d) = &mut node.drbd {
                d.remove("data");
            }
        }
        Action::Mkdir { path } => {
            node.dirs.insert(path.clone());
        }
        Action::Mount { dev, mnt, .. } => {
            if let Observed::Ok(m) = &mut node.mounts {
                m.push(mount(&dev.to_string_lossy(), DRBD0, &mnt.to_string_lossy()));
            }
            node.drbd_mut("data").devices[0].open = true;
        }
        Action::Umount { mnt, .. } => {
            if let Observed::Ok(m) = &mut node.mounts {
                m.retain(|x| x.mount_point() != mnt);
            }
            node.drbd_mut("data").devices[0].open = false;
        }
        Action::ContainerStart { .. } | Action::ContainerWaitUp { .. } => {
            node.vz = Observed::Ok(BTreeMap::from([(
                "101".to_string(),
                ContainerState::Running,
            )]));
        }
        Action::ContainerStop { .. } | Action::ContainerWaitDown { .. } => {
            node.vz = Observed::Ok(BTreeMap::from([(
                "101".to_string(),
                ContainerState::Stopped,
            )]));
            node.apps.clear();
            node.quorum_frozen.clear();
        }
        Action::ContainerFreeze { .. } => {
            node.vz = Observed::Ok(BTreeMap::from([(
                "101".to_string(),
                ContainerState::Frozen,
            )]));
            node.quorum_frozen.insert(
                "drbdsvc.opensvc.com".into(),
                QuorumFreeze { stopping: false },
            );
        }
        Action::ContainerThaw { stop, .. } => {
            node.vz = Observed::Ok(BTreeMap::from([(
                "101".to_string(),
                ContainerState::Running,
            )]));
            if *stop {
                node.quorum_frozen.insert(
                    "drbdsvc.opensvc.com".into(),
                    QuorumFreeze { stopping: true },
                );
            } else {
                node.quorum_frozen.clear();
            }
        }
        Action::AppStart | Action::AppStop => {
            let status = if matches!(action, Action::AppStart) {
                AppStatus::Up
            } else {
                AppStatus::Down
            };
            node.apps.insert(
                "drbdsvc.opensvc.com".into(),
                BTreeMap::from([(
                    rid(Kind::App, 0),
                    AppObservation {
                        status,
                        detail: "C10foo".into(),
                    },
                )]),
            );
        }
    }
}

#[test]
fn running_the_first_step_and_replanning_converges_from_every_state_both_ways() {
    for desired in [DesiredState::Up, DesiredState::Down] {
        let svc = with_state(seed(), desired);
        for level in LEVELS {
            let mut node = node_at(level);
            let mut rounds = 0;
            loop {
                let plan = plan_service(&svc, &node);
                assert_eq!(plan.blocked, None, "{desired} from {level:?}");
                let Some(first) = plan.steps.first() else {
                    break;
                };
                apply(&mut node, &first.action);
                rounds += 1;
                assert!(rounds <= 10, "{desired} from {level:?} does not converge");
            }
            let target = if desired == DesiredState::Up {
                Level::AppUp
            } else {
                Level::Secondary
            };
            // Idempotence: at the target, the plan is empty.
            assert!(plan_service(&svc, &node_at(target)).is_converged());
        }
    }
}

#[test]
fn plan_over_many_services_is_per_service() {
    let a = seed();
    let mut b = with_state(seed(), DesiredState::Frozen);
    b.name = "other".into();
    let plan = plan(&[a, b], &node_at(Level::AppUp));
    assert_eq!(plan.services.len(), 2);
    assert!(plan.is_converged());
    let plan = super::plan(
        &[with_state(seed(), DesiredState::Down)],
        &node_at(Level::AppUp),
    );
    assert_eq!(plan.step_count(), 4);
    assert_eq!(plan.blocked_count(), 0);
}

impl NodeState {
    fn drbd_mut(&mut self, name: &str) -> &mut DrbdResource {
        match &mut self.drbd {
            Observed::Ok(d) => d.get_mut(name).expect("resource in the test node"),
            Observed::Unavailable(_) => panic!("test node has no DRBD"),
        }
    }
}

#[test]
fn an_actions_name_is_its_json_tag() {
    let container = ContainerKind::Vz("101".into());
    let all = [
        Action::DrbdUp { res: "r".into() },
        Action::DrbdConnect {
            res: "r".into(),
            peer: None,
        },
        Action::DrbdPrimary { res: "r".into() },
        Action::DrbdSecondary {
            res: "r".into(),
            force: false,
        },
        Action::DrbdDown { res: "r".into() },
        Action::Mkdir { path: "/m".into() },
        Action::Mount {
            dev: "/d".into(),
            mnt: "/m".into(),
            fstype: "ext3".into(),
            options: "defaults".into(),
            fsck: true,
        },
        Action::Umount {
            mnt: "/m".into(),
            kill: false,
        },
        Action::ContainerStart {
            container: container.clone(),
        },
        Action::ContainerWaitUp {
            container: container.clone(),
        },
        Action::ContainerWaitDown {
            container: container.clone(),
        },
        Action::ContainerStop {
            container: container.clone(),
        },
        Action::ContainerFreeze {
            container: container.clone(),
        },
        Action::ContainerThaw {
            container,
            stop: false,
        },
        Action::AppStart,
        Action::AppStop,
    ];
    for action in all {
        let json = serde_json::to_value(&action).expect("serializes");
        assert_eq!(json["action"], action.name(), "{action:?}");
    }
}

/// The seed service failing over between deb1 (this node, `node_at`'s) and deb2.
fn failing_over(failback: Failback) -> Service {
    let mut svc = seed();
    svc.placement = Placement::Failover(Failover {
        nodes: vec!["deb2".into(), "deb1".into()],
        failback,
        on_quorum_loss: OnQuorumLoss::Stop,
    });
    svc
}

/// `node_at(level)` with the peer deb2 cut off and quorum as given, quorum enforced or not.
fn cut_off(level: Level, quorum: Quorum, enforced: bool) -> NodeState {
    let mut node = node_at(level);
    if let Observed::Ok(all) = &mut node.drbd
        && let Some(r) = all.get_mut("data")
    {
        r.devices[0].quorum = quorum;
        let peer = &mut r.connections[0];
        peer.state = ConnectionState::Connecting;
        peer.peer_role = Role::Unknown;
        peer.peer_devices[0].replication = ReplicationState::Off;
        peer.peer_devices[0].peer_disk = DiskState::DUnknown;
    }
    node.drbd_configured = Some(Observed::Ok(BTreeSet::from(["data".to_string()])));
    node.drbd_options.insert(
        "data".into(),
        Observed::Ok(ResourceOptions {
            quorum: if enforced {
                QuorumPolicy::Majority
            } else {
                QuorumPolicy::Off
            },
            on_no_quorum: Some("io-error".into()),
            auto_promote: Some("no".into()),
            on_suspended_primary_outdated: None,
        }),
    );
    node
}

#[test]
fn a_failover_survivor_with_enforced_quorum_starts_the_stack_over_a_peer_it_cannot_see() {
    let plan = plan_service(
        &failing_over(Failback::Never),
        &cut_off(Level::Secondary, Quorum::Yes, true),
    );
    assert_eq!(plan.placement, Some(Decision::Take { rank: 1 }));
    assert_eq!(plan.desired, DesiredState::Up);
    assert_eq!(
        actions(&plan),
        [
            "primary data",
            "fsck+mount /drbdsvc",
            "start 101",
            "app start"
        ]
    );
    // The same node for a service pinned the usual way waits to see its peer.
    let mut pinned = seed();
    pinned.placement = Placement::Pinned {
        node: "deb1".into(),
    };
    let plan = plan_service(&pinned, &cut_off(Level::Secondary, Quorum::Yes, true));
    assert_eq!(
        plan.blocked.as_ref().map(|b| b.kind),
        Some(BlockKind::Waiting)
    );
}

#[test]
fn a_failover_node_without_quorum_seen_and_enforced_stands_by() {
    for (quorum, enforced) in [
        (Quorum::No, true),
        (Quorum::Unknown, true),
        (Quorum::Yes, false),
    ] {
        let plan = plan_service(
            &failing_over(Failback::Never),
            &cut_off(Level::Secondary, quorum, enforced),
        );
        assert_eq!(plan.desired, DesiredState::Down, "{quorum:?} {enforced}");
        assert!(
            matches!(plan.placement, Some(Decision::StandBy(_))),
            "{quorum:?} {enforced}: {:?}",
            plan.placement
        );
        assert!(plan.is_converged(), "{quorum:?}: {:?}", plan.steps);
    }
}

#[test]
fn a_failover_holder_that_loses_quorum_stops_down_to_secondary() {
    let plan = plan_service(
        &failing_over(Failback::Never),
        &cut_off(Level::AppUp, Quorum::No, true),
    );
    assert_eq!(
        plan.placement,
        Some(Decision::GiveUp(placement::GiveUp::QuorumLost))
    );
    assert_eq!(
        actions(&plan),
        ["app stop", "stop 101", "umount /drbdsvc", "secondary data"]
    );
    // With quorum it keeps running, peer or no peer.
    let plan = plan_service(
        &failing_over(Failback::Never),
        &cut_off(Level::AppUp, Quorum::Yes, true),
    );
    assert_eq!(plan.placement, Some(Decision::Keep));
    assert!(plan.is_converged(), "{:?}", plan.steps);
}

#[test]
fn a_node_a_failover_service_does_not_list_stands_by() {
    let mut svc = failing_over(Failback::Never);
    if let Placement::Failover(f) = &mut svc.placement {
        f.nodes = vec!["deb2".into(), "deb3".into()];
    }
    let plan = plan_service(&svc, &cut_off(Level::AppUp, Quorum::Yes, true));
    assert_eq!(plan.placement, None);
    assert_eq!(plan.desired, DesiredState::Down);
    assert_eq!(
        actions(&plan),
        ["app stop", "stop 101", "umount /drbdsvc", "secondary data"]
    );
}

#[test]
fn a_failover_service_warns_of_running_drbd_options_that_work_against_it() {
    let svc = failing_over(Failback::Never);
    // auto-promote no, on-no-quorum io-error: nothing to say.
    let plan = plan_service(&svc, &cut_off(Level::Secondary, Quorum::Yes, true));
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    // DRBD's defaults (not printed by drbdsetup show): both said, with the fix.
    let mut node = cut_off(Level::Secondary, Quorum::Yes, true);
    node.drbd_options.insert(
        "data".into(),
        Observed::Ok(ResourceOptions {
            quorum: QuorumPolicy::Majority,
            on_no_quorum: None,
            auto_promote: None,
            on_suspended_primary_outdated: None,
        }),
    );
    let plan = plan_service(&svc, &node);
    assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
    assert!(
        plan.warnings[0].contains("auto-promote yes (DRBD's default)")
            && plan.warnings[0].contains("set `auto-promote no`"),
        "{:?}",
        plan.warnings
    );
    assert!(
        plan.warnings[1].contains("on-no-quorum suspend-io (DRBD's default)")
            && plan.warnings[1].contains("set `on-no-quorum io-error`"),
        "{:?}",
        plan.warnings
    );
    // A pinned service is not the failover's business.
    let mut pinned = seed();
    pinned.placement = Placement::Pinned {
        node: "deb1".into(),
    };
    assert!(plan_service(&pinned, &node).warnings.is_empty());
}

/// The block of a plan that waits with nothing to do first.
fn waiting(plan: ServicePlan) -> Blocked {
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let blocked = plan.blocked.expect("waits");
    assert_eq!(blocked.kind, BlockKind::Waiting);
    blocked
}

/// The seed service failing over with `on_quorum_loss: freeze`.
fn freezing() -> Service {
    let mut svc = failing_over(Failback::Never);
    if let Placement::Failover(f) = &mut svc.placement {
        f.on_quorum_loss = OnQuorumLoss::Freeze;
    }
    svc
}

/// `node` with the seed's container frozen, by converge (`record`) or not.
fn with_frozen_container(mut node: NodeState, record: Option<QuorumFreeze>) -> NodeState {
    node.vz = Observed::Ok(BTreeMap::from([(
        "101".to_string(),
        ContainerState::Frozen,
    )]));
    if let Some(record) = record {
        node.quorum_frozen
            .insert("drbdsvc.opensvc.com".into(), record);
    }
    node
}

/// Runs the first step of each plan on the model ([`apply`]) until the plan is empty; the
/// actions run, in order.
fn run_to_rest(svc: &Service, mut node: NodeState) -> (Vec<String>, ServicePlan) {
    let mut ran = Vec::new();
    for _ in 0..20 {
        let plan = plan_service(svc, &node);
        let Some(step) = plan.steps.first() else {
            return (ran, plan);
        };
        ran.push(short(&step.action));
        apply(&mut node, &step.action);
    }
    panic!("no rest after 20 steps: {ran:?}");
}

#[test]
fn a_freezing_holder_that_loses_quorum_freezes_the_container_and_keeps_the_rest() {
    let svc = freezing();
    let mut node = cut_off(Level::AppUp, Quorum::No, true);
    node.drbd_mut("data").suspended = true;
    let plan = plan_service(&svc, &node);
    assert_eq!(plan.placement, Some(Decision::Freeze));
    assert_eq!(plan.desired, DesiredState::Up);
    // No unmount, no demotion: either would hang on the I/O DRBD holds.
    assert_eq!(actions(&plan), ["freeze 101"]);
    let (ran, rest) = run_to_rest(&svc, node.clone());
    assert_eq!(ran, ["freeze 101"]);
    assert!(rest.is_converged(), "{rest:?}");
    // Frozen already (by anyone): nothing to do; stopped: nothing to freeze, and the rest is
    // kept all the same.
    let frozen = with_frozen_container(node.clone(), None);
    assert!(plan_service(&svc, &frozen).is_converged());
    let mut stopped = node;
    stopped.vz = Observed::Ok(BTreeMap::from([(
        "101".to_string(),
        ContainerState::Stopped,
    )]));
    let plan = plan_service(&svc, &stopped);
    assert!(plan.is_converged(), "{:?}", plan.steps);
    assert!(
        plan.satisfied
            .iter()
            .any(|(_, note)| note.contains("nothing to freeze")),
        "{:?}",
        plan.satisfied
    );
}

#[test]
fn quorum_back_thaws_only_what_converge_froze_and_only_once_drbd_resumes_the_io() {
    let svc = freezing();
    let record = Some(QuorumFreeze { stopping: false });
    let back = with_frozen_container(cut_off(Level::AppUp, Quorum::Yes, true), record);
    let plan = plan_service(&svc, &back);
    assert_eq!(plan.placement, Some(Decision::Keep));
    // The apps are looked at once the container runs again, not planned blind.
    assert_eq!(actions(&plan), ["thaw 101"]);
    let (ran, rest) = run_to_rest(&svc, back.clone());
    assert_eq!(ran, ["thaw 101"]);
    assert!(rest.is_converged(), "{rest:?}");
    // Still suspended (quorum reported back, I/O not resumed yet): it waits, as DRBD's next
    // event will say.
    let mut suspended = back;
    suspended.drbd_mut("data").suspended = true;
    let plan = plan_service(&svc, &suspended);
    let blocked = waiting(plan);
    assert!(
        blocked
            .reason
            .contains("stays frozen while DRBD suspends the I/O of resource data")
    );
    // Frozen by someone else: converge does not thaw it.
    let theirs = with_frozen_container(cut_off(Level::AppUp, Quorum::Yes, true), None);
    let plan = plan_service(&svc, &theirs);
    assert_eq!(
        plan.blocked.map(|b| (b.kind, b.reason)),
        Some((
            BlockKind::Refused,
            "container 101 is frozen; converge does not thaw containers".to_string()
        ))
    );
}

#[test]
fn a_frozen_holder_drbd_demoted_is_thawed_and_stopped_without_its_apps_stop_scripts() {
    // The other side took the service over; when the partition healed, DRBD found this node
    // outdated and forced it Secondary (`on-suspended-primary-outdated force-secondary`): the
    // filesystem is still mounted, the container frozen.
    let svc = freezing();
    let mut node = with_frozen_container(
        node_at(Level::AppUp),
        Some(QuorumFreeze { stopping: false }),
    );
    node.drbd_options = cut_off(Level::AppUp, Quorum::Yes, true).drbd_options;
    let r = node.drbd_mut("data");
    r.role = Role::Secondary;
    r.connections[0].peer_role = Role::Primary;
    let plan = plan_service(&svc, &node);
    assert!(
        matches!(plan.placement, Some(Decision::StandBy(_))),
        "{:?}",
        plan.placement
    );
    assert_eq!(
        actions(&plan),
        ["thaw-to-stop 101", "stop 101", "umount /drbdsvc"]
    );
    let (ran, rest) = run_to_rest(&svc, node.clone());
    assert_eq!(ran, ["thaw-to-stop 101", "stop 101", "umount /drbdsvc"]);
    assert!(rest.is_converged(), "{rest:?}");
    // Thawed to be stopped: the apps are not stopped by their scripts (their I/O fails).
    let mut thawed = node;
    thawed.vz = Observed::Ok(BTreeMap::from([(
        "101".to_string(),
        ContainerState::Running,
    )]));
    thawed.quorum_frozen.insert(
        "drbdsvc.opensvc.com".into(),
        QuorumFreeze { stopping: true },
    );
    let plan = plan_service(&svc, &thawed);
    assert_eq!(actions(&plan), ["stop 101", "umount /drbdsvc"]);
    assert!(
        plan.satisfied
            .iter()
            .any(|(_, note)| note.contains("not stopped by its scripts")),
        "{:?}",
        plan.satisfied
    );
}

#[test]
fn a_frozen_holder_told_to_stop_while_drbd_suspends_its_io_waits() {
    // `state: down` committed while this node is frozen without quorum: stopping now would
    // hang on the suspended I/O.
    let svc = with_state(freezing(), DesiredState::Down);
    let mut node = with_frozen_container(
        cut_off(Level::AppUp, Quorum::No, true),
        Some(QuorumFreeze { stopping: false }),
    );
    node.drbd_mut("data").suspended = true;
    let plan = plan_service(&svc, &node);
    let blocked = waiting(plan);
    assert!(
        blocked.reason.contains("stopping it now would hang"),
        "{}",
        blocked.reason
    );
    // Once DRBD resumes the I/O, it stops in order, the apps by their scripts (this node is
    // still Primary: their I/O works).
    node.drbd_mut("data").suspended = false;
    let (ran, _) = run_to_rest(&svc, node);
    assert_eq!(
        ran,
        [
            "thaw-to-stop 101",
            "app stop",
            "stop 101",
            "umount /drbdsvc",
            "secondary data"
        ]
    );
}

/// `node_at(level)` with a second peer, tb, connected and Secondary beside deb2.
fn with_tb(level: Level) -> NodeState {
    let mut node = node_at(level);
    let r = node.drbd_mut("data");
    let mut tb = r.connections[0].clone();
    tb.peer_node_id = Some(2);
    tb.name = Some("tb".into());
    tb.peer_role = Role::Secondary;
    r.connections.push(tb);
    node
}

#[test]
fn a_standalone_connection_beside_connected_ones_is_reconnected_alone() {
    let mut node = with_tb(Level::AppUp);
    node.drbd_mut("data").connections[1].state = ConnectionState::StandAlone;
    let plan = plan_service(&seed(), &node);
    assert_eq!(actions(&plan), ["connect data:tb"]);
    assert_eq!(
        plan.steps[0].reason,
        "the connection of resource data to peer tb is StandAlone"
    );
    // Every connection StandAlone: the whole resource at once, as before.
    let mut node = with_tb(Level::AppUp);
    for c in &mut node.drbd_mut("data").connections {
        c.state = ConnectionState::StandAlone;
    }
    assert_eq!(actions(&plan_service(&seed(), &node)), ["connect data"]);
    // A standby reconnects the same way.
    let mut node = with_tb(Level::Secondary);
    node.drbd_mut("data").connections[0].state = ConnectionState::StandAlone;
    node.drbd_mut("data").connections[0].peer_role = Role::Unknown;
    let plan = plan_service(&pinned_to_deb2(DrbdStop::Secondary), &node);
    assert_eq!(actions(&plan), ["connect data:deb2"]);
    assert!(
        plan.steps[0]
            .reason
            .ends_with("is StandAlone; a standby replicates")
    );
}

/// CI caught it: the status showed the connection StandAlone before the event stream had
/// delivered DRBD's split-brain news, and the standby reconnected a split brain.
#[test]
fn regression_a_standalone_the_event_stream_has_not_reported_is_not_reconnected_yet() {
    let reported = |peers: &[&str]| {
        let mut by_res = BTreeMap::new();
        by_res.insert(
            "data".to_string(),
            peers.iter().map(|p| p.to_string()).collect::<BTreeSet<_>>(),
        );
        Some(by_res)
    };
    // (the stream's news, what the standby does)
    let cases: [(Option<StandAloneReported>, &[&str]); 5] = [
        (None, &["connect data:deb2"]),
        (Some(BTreeMap::new()), &[]),
        (reported(&[]), &[]),
        (reported(&["tb"]), &[]),
        (reported(&["deb2"]), &["connect data:deb2"]),
    ];
    for (news, want) in cases {
        let mut node = with_tb(Level::Secondary);
        node.drbd_mut("data").connections[0].state = ConnectionState::StandAlone;
        node.drbd_mut("data").connections[0].peer_role = Role::Unknown;
        node.standalone_reported = news.clone();
        let plan = plan_service(&pinned_to_deb2(DrbdStop::Secondary), &node);
        assert_eq!(actions(&plan), want, "{news:?}");
        if want.is_empty() {
            let blocked = plan.blocked.expect("waiting");
            assert_eq!(blocked.kind, BlockKind::Waiting, "{news:?}");
            assert_eq!(
                blocked.reason,
                "the connection of resource data to peer deb2 is StandAlone, and DRBD's event stream has not said so yet: converge reconnects it once the stream shows it was no split brain"
            );
        }
    }
    // Where the service runs, the same: nothing reconnected, nothing torn down.
    let mut node = with_tb(Level::AppUp);
    node.drbd_mut("data").connections[1].state = ConnectionState::StandAlone;
    node.standalone_reported = reported(&[]);
    let plan = plan_service(&seed(), &node);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(plan.blocked.map(|b| b.kind), Some(BlockKind::Waiting));
    node.standalone_reported = reported(&["tb"]);
    assert_eq!(actions(&plan_service(&seed(), &node)), ["connect data:tb"]);
}

#[test]
fn a_split_brain_is_never_reconnected_and_stops_the_service_where_it_is() {
    let split = |node: &mut NodeState| {
        node.split_brains.insert(
            "data".into(),
            vec![SplitBrain {
                peer: "deb2".into(),
                since: "2026-12-07T01:00:00Z".into(),
            }],
        );
    };
    for (svc, level) in [
        (seed(), Level::AppUp),
        (seed(), Level::Secondary),
        (pinned_to_deb2(DrbdStop::Secondary), Level::Secondary),
    ] {
        let mut node = with_tb(level);
        node.drbd_mut("data").connections[0].state = ConnectionState::StandAlone;
        node.drbd_mut("data").connections[0].peer_role = Role::Unknown;
        split(&mut node);
        let plan = plan_service(&svc, &node);
        assert!(plan.steps.is_empty(), "{level:?}: {:?}", plan.steps);
        let blocked = plan.blocked.expect("refused");
        assert_eq!(blocked.kind, BlockKind::Refused);
        assert_eq!(
            blocked.reason,
            "resource data is in split brain with deb2 (seen 2026-12-07T01:00:00Z): both sides wrote what the other has not, and converge never chooses whose writes to discard; resolve it by hand (docs/operations.md, \"Split brain\")"
        );
    }
    // Resolved by hand (connected again): the record alone changes nothing.
    let mut node = with_tb(Level::AppUp);
    split(&mut node);
    assert!(plan_service(&seed(), &node).is_converged());
    // A split brain with another peer than the StandAlone one is not this connection's.
    let mut node = with_tb(Level::AppUp);
    node.drbd_mut("data").connections[1].state = ConnectionState::StandAlone;
    split(&mut node);
    assert_eq!(actions(&plan_service(&seed(), &node)), ["connect data:tb"]);
}

#[test]
fn nothing_that_does_io_is_planned_while_drbd_suspends_it() {
    // A pinned service on a node whose DRBD suspends the I/O (DRBD's default on-no-quorum,
    // fencing…): told to stop, with the container already stopped, it would unmount and demote.
    let svc = with_state(seed(), DesiredState::Down);
    let mut node = node_at(Level::Mounted);
    node.drbd_mut("data").suspended = true;
    let plan = plan_service(&svc, &node);
    let blocked = waiting(plan);
    assert!(
        blocked
            .reason
            .starts_with("DRBD suspends the I/O of resource data"),
        "{}",
        blocked.reason
    );
    // Up, its app's check skipped (it would hang too): no start planned blind either.
    let mut node = node_at(Level::ContainerRunning);
    node.drbd_mut("data").suspended = true;
    let plan = plan_service(&seed(), &node);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(plan.blocked.map(|b| b.kind), Some(BlockKind::Waiting));
    // Resumed: it goes on.
    node.drbd_mut("data").suspended = false;
    assert_eq!(actions(&plan_service(&seed(), &node)), ["app start"]);
}

#[test]
fn regression_a_stale_freeze_record_is_forgotten_before_someone_elses_freeze_could_be_taken_for_it()
{
    // converge was killed between its thaw and the removal of its record: the container runs,
    // the record stays. A thaw that finds nothing to thaw forgets it.
    let svc = freezing();
    let mut node = cut_off(Level::AppUp, Quorum::Yes, true);
    node.quorum_frozen.insert(
        "drbdsvc.opensvc.com".into(),
        QuorumFreeze { stopping: false },
    );
    let plan = plan_service(&svc, &node);
    assert_eq!(actions(&plan), ["thaw 101"]);
    let (ran, rest) = run_to_rest(&svc, node);
    assert_eq!(ran, ["thaw 101"]);
    assert!(rest.is_converged(), "{rest:?}");
}

#[test]
fn a_standby_primary_in_split_brain_is_demoted_first() {
    let mut node = with_tb(Level::Primary);
    node.drbd_mut("data").connections[0].state = ConnectionState::StandAlone;
    node.drbd_mut("data").connections[0].peer_role = Role::Unknown;
    node.split_brains.insert(
        "data".into(),
        vec![SplitBrain {
            peer: "deb2".into(),
            since: "2026-12-07T01:00:00Z".into(),
        }],
    );
    let svc = pinned_to_deb2(DrbdStop::Secondary);
    let plan = plan_service(&svc, &node);
    assert_eq!(actions(&plan), ["secondary data"]);
    // Demoted, the split brain refuses the rest (no reconnection).
    node.drbd_mut("data").role = Role::Secondary;
    let plan = plan_service(&svc, &node);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(plan.blocked.map(|b| b.kind), Some(BlockKind::Refused));
}

/// The seed service naming its resource file (`config: drbd/data.res`), and a node whose file
/// for it stands as `state`.
fn with_file(state: DrbdFileState, node: &mut NodeState) -> Service {
    let mut svc = seed();
    if let Spec::Drbd(d) = &mut svc.resources[0].spec {
        d.config = Some(PathBuf::from("drbd/data.res"));
    }
    node.drbd_files.insert(
        "data".into(),
        DrbdFile {
            source: PathBuf::from("/m/drbd/data.res"),
            installed: PathBuf::from("/etc/drbd.d/data.res"),
            state,
        },
    );
    svc
}

#[test]
fn a_resource_file_that_differs_is_installed_then_applied_where_the_resource_is_up() {
    // Not up: installed, then `up` reads it.
    let mut node = node_at(Level::NotConfigured);
    let svc = with_file(DrbdFileState::Differs { missing: true }, &mut node);
    let plan = plan_service(&svc, &node);
    assert_eq!(
        actions(&plan)[..3],
        ["install data", "up data", "primary data"]
    );
    assert_eq!(
        plan.steps[0].reason,
        "drbd/data.res is not installed (/etc/drbd.d/data.res does not exist)"
    );
    let (ran, rest) = run_to_rest(&svc, node);
    assert_eq!(ran[..2], ["install data", "up data"]);
    assert!(!ran.contains(&"adjust data".to_string()), "{ran:?}");
    assert!(rest.is_converged(), "{rest:?}");
    // Up and running: installed, then adjusted; nothing else moves.
    let mut node = node_at(Level::AppUp);
    let svc = with_file(DrbdFileState::Differs { missing: false }, &mut node);
    let plan = plan_service(&svc, &node);
    assert_eq!(actions(&plan), ["install data", "adjust data"]);
    assert_eq!(
        plan.steps[0].reason,
        "drbd/data.res differs from the installed /etc/drbd.d/data.res"
    );
    let (ran, rest) = run_to_rest(&svc, node);
    assert_eq!(ran, ["install data", "adjust data"]);
    assert!(rest.is_converged(), "{rest:?}");
}

#[test]
fn an_installed_file_not_applied_yet_is_adjusted_with_what_adjust_will_run() {
    // converge was killed between the install and the adjust: its record says so.
    let mut node = node_at(Level::AppUp);
    let svc = with_file(DrbdFileState::Installed, &mut node);
    node.drbd_adjust.insert("data".into());
    node.drbd_drift.insert(
        "data".into(),
        Observed::Ok(vec!["drbdsetup net-options data 1 --protocol=A".into()]),
    );
    let plan = plan_service(&svc, &node);
    assert_eq!(actions(&plan), ["adjust data"]);
    assert_eq!(
        plan.steps[0].reason,
        "resource data runs on its former file; adjust runs: drbdsetup net-options data 1 --protocol=A"
    );
    // It comes last: one the act layer leaves to a person never holds up the rest.
    let mut down_app = node_at(Level::ContainerRunning);
    let svc_app = with_file(DrbdFileState::Installed, &mut down_app);
    down_app.drbd_adjust.insert("data".into());
    assert_eq!(
        actions(&plan_service(&svc_app, &down_app)),
        ["app start", "adjust data"]
    );
    // Drift alone (someone ran drbdsetup by hand) is shown by status, not corrected.
    node.drbd_adjust.clear();
    assert!(plan_service(&svc, &node).is_converged());
    // Standing by, and going down with `stop: secondary`, it is applied too.
    let mut node = with_tb(Level::Secondary);
    let svc = with_file(DrbdFileState::Installed, &mut node);
    node.drbd_adjust.insert("data".into());
    let standby = pinned_to_deb2(DrbdStop::Secondary);
    let mut standby_with_file = standby.clone();
    standby_with_file.resources[0] = svc.resources[0].clone();
    assert_eq!(
        actions(&plan_service(&standby_with_file, &node)),
        ["adjust data"]
    );
    let down = with_state(svc, DesiredState::Down);
    assert_eq!(actions(&plan_service(&down, &node)), ["adjust data"]);
}

#[test]
fn a_refused_file_keeps_the_installed_one_and_the_service_runs_on() {
    let why = "/m/s.yaml:5:13: resources.drbd#0.config: /m/drbd/data.res: drbdadm refuses it: parse error";
    let mut node = node_at(Level::AppUp);
    let svc = with_file(
        DrbdFileState::Refused {
            why: why.into(),
            missing: false,
        },
        &mut node,
    );
    let plan = plan_service(&svc, &node);
    assert!(plan.is_converged(), "{plan:?}");
    assert_eq!(
        plan.warnings,
        [format!(
            "drbd#0: drbd/data.res is refused: {why}; /etc/drbd.d/data.res stays as it is"
        )]
    );
    // Nothing installed and the resource not up: nothing to bring up, said at the resource.
    let mut node = node_at(Level::NotConfigured);
    let svc = with_file(
        DrbdFileState::Refused {
            why: why.into(),
            missing: true,
        },
        &mut node,
    );
    let plan = plan_service(&svc, &node);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let blocked = plan.blocked.expect("refused");
    assert_eq!(blocked.kind, BlockKind::Refused);
    assert!(blocked.reason.contains(why), "{}", blocked.reason);
    // Where the service does not run, a refused file is a warning only.
    let down = with_state(svc, DesiredState::Down);
    let plan = plan_service(&down, &node);
    assert!(
        plan.blocked.is_none() && plan.warnings.len() == 1,
        "{plan:?}"
    );
}

#[test]
fn a_file_without_this_node_refuses_the_service_here_and_is_no_standby() {
    let mut node = node_at(Level::NotConfigured);
    let svc = with_file(DrbdFileState::NotHere, &mut node);
    let plan = plan_service(&svc, &node);
    let blocked = plan.blocked.expect("refused");
    assert_eq!(
        blocked.reason,
        "drbd/data.res defines resource data without a section for this node (deb1): add an `on deb1` section, or run the service where the file has one"
    );
    let mut standby = pinned_to_deb2(DrbdStop::Secondary);
    standby.resources[0] = svc.resources[0].clone();
    node.drbd_configured = Some(Observed::Ok(BTreeSet::new()));
    let plan = plan_service(&standby, &node);
    assert!(plan.is_converged(), "{plan:?}");
}

#[test]
fn a_standby_installs_the_file_and_brings_the_resource_up() {
    // Not configured for this node yet: the file being installed is, as drbdadm said.
    let mut node = node_at(Level::NotConfigured);
    node.drbd_configured = Some(Observed::Ok(BTreeSet::new()));
    let file_svc = with_file(DrbdFileState::Differs { missing: true }, &mut node);
    let mut standby = pinned_to_deb2(DrbdStop::Secondary);
    standby.resources[0] = file_svc.resources[0].clone();
    assert_eq!(
        actions(&plan_service(&standby, &node)),
        ["install data", "up data"]
    );
}

#[test]
fn a_split_brain_holds_the_adjust_of_a_new_file_but_not_its_install() {
    let mut node = with_tb(Level::AppUp);
    let svc = with_file(DrbdFileState::Differs { missing: false }, &mut node);
    node.drbd_mut("data").connections[0].state = ConnectionState::StandAlone;
    node.drbd_mut("data").connections[0].peer_role = Role::Unknown;
    node.split_brains.insert(
        "data".into(),
        vec![SplitBrain {
            peer: "deb2".into(),
            since: "2026-12-07T01:00:00Z".into(),
        }],
    );
    // adjust would connect the split-brain connection: never.
    let plan = plan_service(&svc, &node);
    assert_eq!(actions(&plan), ["install data"]);
    assert_eq!(plan.blocked.map(|b| b.kind), Some(BlockKind::Refused));
}

#[test]
fn adjust_waits_while_a_connection_is_standalone_or_the_disk_detached() {
    // A pending adjust with the connection StandAlone: reconnected first (under its own
    // rules), adjusted after; under `up_by: system`, never connected by converge, so the
    // adjust waits, said.
    let mut node = with_tb(Level::AppUp);
    let svc = with_file(DrbdFileState::Installed, &mut node);
    node.drbd_adjust.insert("data".into());
    node.drbd_mut("data").connections[0].state = ConnectionState::StandAlone;
    let plan = plan_service(&svc, &node);
    assert_eq!(actions(&plan), ["connect data:deb2"]);
    assert_eq!(
        plan.warnings,
        [
            "drbd#0: the new file of resource data waits to be applied (drbdadm adjust): the connection to peer deb2 is StandAlone, and adjust would connect or attach it too, which converge does only under its own rules"
        ]
    );
    let mut system = svc.clone();
    if let Spec::Drbd(d) = &mut system.resources[0].spec {
        d.up_by = UpBy::System;
    }
    let plan = plan_service(&system, &node);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert_eq!(plan.warnings.len(), 1, "{plan:?}");
    // A local disk detached (after I/O errors, say) is not re-attached by an adjust.
    let mut node = with_tb(Level::AppUp);
    let svc = with_file(DrbdFileState::Installed, &mut node);
    node.drbd_adjust.insert("data".into());
    node.drbd_mut("data").devices[0].disk = DiskState::Diskless;
    let plan = plan_service(&svc, &node);
    assert!(
        !actions(&plan).contains(&"adjust data".to_string()),
        "{:?}",
        plan.steps
    );
    assert!(
        plan.warnings[0].contains("the local disk is detached"),
        "{plan:?}"
    );
}
