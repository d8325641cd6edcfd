//! Property tests of the planner's safety rules (the list in `src/plan/mod.rs`); how to run them
//! longer is in docs/testing.md.
//!
//! Random observations of a small world — a few DRBD resources with fixed minors, a handful of
//! devices and mount points, two containers of each kind, app checks, sources that could not be
//! observed — and random services of the seed's shape are planned. Every plan is checked step by
//! step, each step judged on the node as the earlier steps of its service's plan leave it (the
//! planner lists every step assuming the earlier ones succeed). Then the plan is *run*: a small
//! model of what each action does to the node (`World::run`) applies the first step, the node is
//! planned again, and the loop must come to rest (every service converged or blocked) within
//! [`MAX_ROUNDS`] steps, every step it runs being one the real node would accept.
//!
//! The vocabulary is small on purpose: collisions — a foreign mount on a service's mount point,
//! the service's device mounted elsewhere, a peer Primary, a sub-mount — come up in most cases.
//! Each part is a small strategy of its own and the simplest value comes first in every choice,
//! so that a failure shrinks to a case a reader can follow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use converge_core::command;
use converge_core::config::Commands;
use converge_core::manifest::{
    AppCommands, AppSpec, AppStatus, ContainerKind, ContainerSpec, DesiredState, DrbdSpec,
    DrbdStop, FsSpec, Fsck, Kind, Placement, Resource, ResourceId, Service, Spec, UpBy, is_ext,
};
use converge_core::observe::drbd::{
    ConnectionState, DiskState, DrbdConnection, DrbdDevice, DrbdPeerDevice, Quorum,
    ReplicationState,
};
use converge_core::observe::mountinfo::MountFields;
use converge_core::observe::{
    AppObservation, ContainerState, DevNum, DrbdResource, DrbdResources, Mount, NodeState,
    Observed, Role,
};
use converge_core::plan::{Action, ServicePlan, Step, plan, plan_service};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases per property when `PROPTEST_CASES` is not set. A case of the safety property plans
/// once; one of the run-to-rest property plans up to 2 × [`MAX_ROUNDS`] times. Both together
/// take about a second in a debug build, and these counts make a rare combination (say, an
/// optional filesystem, an unreadable mount table and a resource to demote) come up in most
/// runs.
const SAFETY_CASES: u32 = 1024;
const REST_CASES: u32 = 512;

/// Steps the run-the-first-step loop may take before it must be at rest. The longest run in a
/// sample of 5,000 cases took 24 steps for both ways together (two services, each with two DRBD
/// resources, three filesystems, a container and two apps, sub-mounts to clear first); 64 per
/// way leaves room without hiding a cycle.
const MAX_ROUNDS: usize = 64;

fn config(default_cases: u32) -> Config {
    let mut config = Config::default();
    // proptest reads PROPTEST_CASES itself (the long mode); only the default is ours.
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    // A failure prints its shrunk case, which becomes a named regression test; a test run
    // writes no files into the source tree.
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------------------------------------
// The world: names, minors and devices every generated case draws from.

const THIS_NODE: &str = "deb1";
const OTHER_NODE: &str = "deb2";
const DRBD_MAJOR: u32 = 147;

/// Every DRBD resource of the world, volume i on minors[i] (as its configuration says). `scratch`
/// belongs to no service: a resource of someone else's on the same node.
const DRBD_WORLD: [(&str, &[u32]); 4] = [
    ("data", &[0, 2]),
    ("logs", &[4]),
    ("web", &[1, 3]),
    ("scratch", &[9]),
];

const fn dev(major: u32, minor: u32) -> DevNum {
    DevNum { major, minor }
}

/// Every block device path of the world and the device it is: `/dev/drbd/by-res/data/0` is
/// `/dev/drbd0` by another name.
const DEVICE_PATHS: [(&str, DevNum); 9] = [
    ("/dev/drbd0", dev(DRBD_MAJOR, 0)),
    ("/dev/drbd1", dev(DRBD_MAJOR, 1)),
    ("/dev/drbd2", dev(DRBD_MAJOR, 2)),
    ("/dev/drbd3", dev(DRBD_MAJOR, 3)),
    ("/dev/drbd4", dev(DRBD_MAJOR, 4)),
    ("/dev/drbd9", dev(DRBD_MAJOR, 9)),
    ("/dev/drbd/by-res/data/0", dev(DRBD_MAJOR, 0)),
    ("/dev/sdb1", dev(8, 17)),
    ("/dev/sdc1", dev(8, 33)),
];

/// What can be found mounted: a source as mountinfo prints it, and its device.
const MOUNT_SOURCES: [(&str, DevNum); 8] = [
    ("/dev/drbd0", dev(DRBD_MAJOR, 0)),
    ("/dev/sdb1", dev(8, 17)),
    ("tmpfs", dev(0, 50)),
    ("/dev/drbd/by-res/data/0", dev(DRBD_MAJOR, 0)),
    ("/dev/drbd1", dev(DRBD_MAJOR, 1)),
    ("/dev/drbd2", dev(DRBD_MAJOR, 2)),
    ("/dev/drbd4", dev(DRBD_MAJOR, 4)),
    ("/dev/sdc1", dev(8, 33)),
];

/// Where things can be found mounted: the services' mount points, one below another, one
/// deeper still (sub-mounts must come off deepest first), a rescue mount point, and a parent
/// of them all.
const MOUNT_POINTS: [&str; 7] = [
    "/srv/a",
    "/srv/a/sub",
    "/srv/b",
    "/srv/c",
    "/mnt/rescue",
    "/srv",
    "/srv/a/sub/deep",
];

/// What one service may use. Two services never claim the same DRBD resource, mount point or
/// container (the loader refuses it), but their devices may cross: `alpha` may mount a device of
/// `beta`'s resource, which its planner must then refuse.
struct Vocabulary {
    name: &'static str,
    drbd: &'static [&'static str],
    mnts: &'static [&'static str],
    devs: &'static [&'static str],
    vz: &'static str,
    lxc: &'static str,
}

const ALPHA: Vocabulary = Vocabulary {
    name: "alpha",
    drbd: &["data", "logs"],
    mnts: &["/srv/a", "/srv/a/sub", "/srv/c"],
    devs: &[
        "/dev/drbd0",
        "/dev/drbd2",
        "/dev/drbd4",
        "/dev/sdb1",
        "/dev/drbd/by-res/data/0",
        "/dev/drbd1",
        "/dev/drbd9",
    ],
    vz: "101",
    lxc: "ct-a",
};

const BETA: Vocabulary = Vocabulary {
    name: "beta",
    drbd: &["web"],
    mnts: &["/srv/b"],
    devs: &["/dev/drbd1", "/dev/drbd3", "/dev/sdc1", "/dev/drbd0"],
    vz: "102",
    lxc: "ct-b",
};

fn minors_of(res: &str) -> &'static [u32] {
    DRBD_WORLD
        .iter()
        .find(|(name, _)| *name == res)
        .map_or(&[], |(_, minors)| minors)
}

/// The resource a DRBD minor belongs to, by the world's configuration.
fn owner_of_minor(minor: u32) -> Option<&'static str> {
    DRBD_WORLD
        .iter()
        .find(|(_, minors)| minors.contains(&minor))
        .map(|(name, _)| *name)
}

/// The device a path is, if the path names one in this world.
fn device_of_path(path: &Path) -> Option<DevNum> {
    DEVICE_PATHS
        .iter()
        .find(|(p, _)| Path::new(p) == path)
        .map(|(_, d)| *d)
}

fn drbd_path(minor: u32) -> PathBuf {
    PathBuf::from(format!("/dev/drbd{minor}"))
}

// ---------------------------------------------------------------------------------------------
// Strategies: observations.

fn disk() -> impl Strategy<Value = DiskState> {
    prop_oneof![
        12 => Just(DiskState::UpToDate),
        1 => Just(DiskState::Outdated),
        1 => Just(DiskState::Inconsistent),
        1 => Just(DiskState::Diskless),
        1 => Just(DiskState::DUnknown),
        1 => Just(DiskState::Consistent),
        1 => Just(DiskState::Other("Unconfigured".into())),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        4 => Just(Role::Secondary),
        2 => Just(Role::Primary),
        1 => Just(Role::Unknown),
    ]
}

fn connection_state() -> impl Strategy<Value = ConnectionState> {
    prop_oneof![
        4 => Just(ConnectionState::Connected),
        2 => Just(ConnectionState::StandAlone),
        1 => Just(ConnectionState::Connecting),
        1 => Just(ConnectionState::NetworkFailure),
    ]
}

fn connection(volumes: usize) -> impl Strategy<Value = DrbdConnection> {
    (
        connection_state(),
        role(),
        prop::collection::vec(disk(), volumes),
    )
        .prop_map(|(state, peer_role, disks)| {
            let connected = state == ConnectionState::Connected;
            DrbdConnection {
                peer_node_id: None,
                name: None,
                state,
                peer_role,
                peer_devices: (0..)
                    .zip(disks)
                    .map(|(volume, peer_disk)| DrbdPeerDevice {
                        volume,
                        replication: if connected {
                            ReplicationState::Established
                        } else {
                            ReplicationState::Off
                        },
                        peer_disk,
                        percent_in_sync: None,
                    })
                    .collect(),
            }
        })
}

/// One up DRBD resource as an observation reports it: every volume of its configuration (the
/// parsers report unconfigured volumes too), or none at all (a resource without volumes).
fn drbd_resource(name: &'static str) -> impl Strategy<Value = DrbdResource> {
    let minors = minors_of(name);
    (
        role(),
        prop::bool::weighted(0.95),
        prop::collection::vec((disk(), prop::bool::weighted(0.2)), minors.len()),
        prop::collection::vec(connection(minors.len()), 0..=2),
    )
        .prop_map(move |(role, has_volumes, volumes, connections)| {
            let devices = if has_volumes {
                (0..)
                    .zip(minors.iter().zip(volumes))
                    .map(|(volume, (&minor, (disk, open)))| DrbdDevice {
                        volume,
                        minor,
                        disk,
                        client: false,
                        open,
                        quorum: Quorum::Yes,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let connections = (1..)
                .zip(connections)
                .map(|(id, mut c): (u32, DrbdConnection)| {
                    c.peer_node_id = Some(id);
                    c.name = Some(format!("peer{id}"));
                    c
                })
                .collect();
            DrbdResource {
                name: name.to_string(),
                role,
                suspended: false,
                devices,
                connections,
            }
        })
}

fn drbd_observed() -> impl Strategy<Value = Observed<DrbdResources>> {
    let up = |name| prop::option::weighted(0.6, drbd_resource(name));
    prop_oneof![
        11 => (up("data"), up("logs"), up("web"), up("scratch")).prop_map(|(a, b, c, d)| {
            Observed::Ok(
                [a, b, c, d]
                    .into_iter()
                    .flatten()
                    .map(|r| (r.name.clone(), r))
                    .collect(),
            )
        }),
        1 => Just(Observed::Unavailable("drbdsetup not found".into())),
    ]
}

fn mount(id: u32, parent: u32, source: &str, dev: DevNum, point: &Path) -> Mount {
    Mount::new(MountFields {
        mount_id: id,
        parent_id: parent,
        dev,
        root: Path::new("/"),
        mount_point: point,
        options: "rw",
        optional_fields: &[],
        fstype: if source == "tmpfs" { "tmpfs" } else { "ext4" },
        source,
        super_options: "rw",
        deleted: false,
    })
}

/// The mount table: the root filesystem, then mounts in mount order (a later one at the same
/// point is stacked on top of the earlier). Each pick may be mounted twice in a row, the same
/// device stacked on itself, which a plain random table would rarely give.
fn mounts_observed() -> impl Strategy<Value = Observed<Vec<Mount>>> {
    let pick = (
        0..MOUNT_SOURCES.len(),
        0..MOUNT_POINTS.len(),
        prop::bool::weighted(0.15),
    );
    prop_oneof![
        11 => prop::collection::vec(pick, 0..=4).prop_map(|picks| {
            let mut mounts = vec![mount(1, 1, "/dev/sda1", dev(8, 1), Path::new("/"))];
            let mut id = 100;
            for (source, point, twice) in picks {
                let (source, dev) = MOUNT_SOURCES[source];
                for _ in 0..if twice { 2 } else { 1 } {
                    mounts.push(new_mount(&mounts, id, source, dev, Path::new(MOUNT_POINTS[point])));
                    id += 1;
                }
            }
            Observed::Ok(mounts)
        }),
        1 => Just(Observed::Unavailable("cannot read /proc/self/mountinfo: permission denied".into())),
    ]
}

/// A mount added on top of `mounts`, its parent the mount it lands on.
fn new_mount(mounts: &[Mount], id: u32, source: &str, dev: DevNum, point: &Path) -> Mount {
    let parent = mounts
        .iter()
        .rev()
        .find(|m| point.starts_with(m.mount_point()))
        .map_or(1, |m| m.mount_id);
    mount(id, parent, source, dev, point)
}

fn container_state() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        3 => Just(ContainerState::Stopped),
        3 => Just(ContainerState::Running),
        1 => Just(ContainerState::Mounted),
        1 => Just(ContainerState::Starting),
        1 => Just(ContainerState::Stopping),
        1 => Just(ContainerState::Absent),
        1 => Just(ContainerState::Frozen),
        1 => Just(ContainerState::Aborting),
    ]
}

fn containers_observed(
    ids: [&'static str; 2],
    tool: &'static str,
) -> impl Strategy<Value = Observed<BTreeMap<String, ContainerState>>> {
    let listed = || prop::option::weighted(0.85, container_state());
    prop_oneof![
        11 => (listed(), listed()).prop_map(move |(a, b)| {
            Observed::Ok(
                ids.iter()
                    .zip([a, b])
                    .filter_map(|(id, state)| Some((id.to_string(), state?)))
                    .collect(),
            )
        }),
        1 => Just(Observed::Unavailable(format!("{tool} not found"))),
    ]
}

fn app_status() -> impl Strategy<Value = AppStatus> {
    prop_oneof![
        3 => Just(AppStatus::Down),
        3 => Just(AppStatus::Up),
        1 => Just(AppStatus::Warn),
        1 => Just(AppStatus::NotApplicable),
    ]
}

/// App checks and script listings, for `app#0` and `app#1` of both services.
type AppsAndScripts = (
    BTreeMap<String, BTreeMap<ResourceId, AppObservation>>,
    BTreeMap<String, BTreeMap<ResourceId, Vec<String>>>,
);

fn apps_observed() -> impl Strategy<Value = AppsAndScripts> {
    (
        prop::collection::vec(prop::option::weighted(0.6, app_status()), 4),
        prop::collection::vec(prop::bool::weighted(0.5), 4),
    )
        .prop_map(|(statuses, listed)| {
            let mut apps: BTreeMap<String, BTreeMap<ResourceId, AppObservation>> = BTreeMap::new();
            let mut scripts: BTreeMap<String, BTreeMap<ResourceId, Vec<String>>> = BTreeMap::new();
            let slots = [ALPHA.name, BETA.name]
                .into_iter()
                .flat_map(|s| [(s, 0), (s, 1)]);
            for (((service, index), status), listed) in slots.zip(statuses).zip(listed) {
                let rid = ResourceId::new(Kind::App, index);
                if let Some(status) = status {
                    apps.entry(service.into()).or_default().insert(
                        rid,
                        AppObservation {
                            status,
                            detail: format!("check says {}", status.word()),
                        },
                    );
                }
                if listed {
                    scripts.entry(service.into()).or_default().insert(
                        rid,
                        ["S10foo", "K10foo", "C10foo", "S20bar~"]
                            .map(String::from)
                            .to_vec(),
                    );
                }
            }
            (apps, scripts)
        })
}

/// The devices an observation pass could stat: a DRBD device exists while its resource is up
/// (DRBD 9), or always (DRBD 8.4's static device nodes); `by-res` names only while up; plain
/// disks always. (A plain disk gone missing would make a mount fail at run time, which no
/// observation lets the planner foresee, so the world has none.)
fn devices_of(drbd: &Observed<DrbdResources>, static_nodes: bool) -> BTreeMap<PathBuf, DevNum> {
    let up_minors: BTreeSet<u32> = drbd
        .ok()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|r| r.devices.iter().map(|d| d.minor))
        .collect();
    DEVICE_PATHS
        .iter()
        .filter(|(path, dev)| {
            if dev.major != DRBD_MAJOR {
                return true;
            }
            up_minors.contains(&dev.minor) || (static_nodes && !path.contains("by-res"))
        })
        .map(|(path, dev)| (PathBuf::from(path), *dev))
        .collect()
}

/// A random node (most cases), or a quiet one: nothing of any service up or mounted, its
/// containers stopped, where an `up` runs the whole stack and its way back.
fn node_state() -> impl Strategy<Value = NodeState> {
    prop_oneof![3 => any_node(), 1 => quiet_node()]
}

fn quiet_node() -> impl Strategy<Value = NodeState> {
    (
        any::<bool>(),
        prop::collection::vec(prop::bool::weighted(0.8), MOUNT_POINTS.len()),
    )
        .prop_map(|(static_nodes, dirs)| {
            let drbd = Observed::Ok(BTreeMap::new());
            let stopped = |ids: [&str; 2]| {
                Observed::Ok(
                    ids.iter()
                        .map(|id| (id.to_string(), ContainerState::Stopped))
                        .collect(),
                )
            };
            NodeState {
                node: THIS_NODE.into(),
                devices: devices_of(&drbd, static_nodes),
                drbd,
                mounts: Observed::Ok(vec![mount(1, 1, "/dev/sda1", dev(8, 1), Path::new("/"))]),
                dirs: existing_dirs(dirs),
                vz: stopped([ALPHA.vz, BETA.vz]),
                lxc: stopped([ALPHA.lxc, BETA.lxc]),
                apps: BTreeMap::new(),
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
        })
}

fn existing_dirs(exists: Vec<bool>) -> BTreeSet<PathBuf> {
    MOUNT_POINTS
        .iter()
        .zip(exists)
        .filter(|(_, exists)| *exists)
        .map(|(p, _)| PathBuf::from(p))
        .collect()
}

/// Which DRBD resources the configuration has this node in: not asked, any subset of the
/// vocabularies' names, or unreadable.
fn drbd_configured_observed() -> impl Strategy<Value = Option<Observed<BTreeSet<String>>>> {
    let names: Vec<&'static str> = ALPHA.drbd.iter().chain(BETA.drbd).copied().collect();
    prop_oneof![
        1 => Just(None),
        4 => prop::sample::subsequence(names.clone(), 0..=names.len())
            .prop_map(|n| Some(Observed::Ok(n.into_iter().map(str::to_string).collect()))),
        1 => Just(Some(Observed::Unavailable("drbdadm sh-resources: exit 10".into()))),
    ]
}

fn any_node() -> impl Strategy<Value = NodeState> {
    (
        drbd_observed(),
        mounts_observed(),
        any::<bool>(),
        prop::collection::vec(prop::bool::weighted(0.8), MOUNT_POINTS.len()),
        containers_observed([ALPHA.vz, BETA.vz], "vzlist"),
        containers_observed([ALPHA.lxc, BETA.lxc], "lxc-ls"),
        apps_observed(),
        drbd_configured_observed(),
    )
        .prop_map(
            |(drbd, mounts, static_nodes, dirs, vz, lxc, (apps, scripts), drbd_configured)| {
                NodeState {
                    node: THIS_NODE.into(),
                    devices: devices_of(&drbd, static_nodes),
                    drbd,
                    mounts,
                    dirs: existing_dirs(dirs),
                    vz,
                    lxc,
                    apps,
                    scripts,
                    drbd_configured,
                    drbd_options: Default::default(),
                    quorum_frozen: Default::default(),
                    split_brains: Default::default(),
                    standalone_reported: None,
                    drbd_files: Default::default(),
                    drbd_adjust: Default::default(),
                    drbd_drift: Default::default(),
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Strategies: services.

/// `disabled` and `optional`, rare.
fn flags() -> impl Strategy<Value = (bool, bool)> {
    (prop::bool::weighted(0.08), prop::bool::weighted(0.25))
}

fn drbd_spec(res: &'static str) -> impl Strategy<Value = ((bool, bool), DrbdSpec)> {
    (
        flags(),
        prop_oneof![Just(DrbdStop::Secondary), Just(DrbdStop::Down)],
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            move |(flags, stop, allow_two_primaries, system, secondary_force)| {
                (
                    flags,
                    DrbdSpec {
                        res: res.into(),
                        stop,
                        allow_two_primaries,
                        secondary_force,
                        // The reader refuses `up_by: system` with `stop: down`.
                        up_by: if system && stop == DrbdStop::Secondary {
                            UpBy::System
                        } else {
                            UpBy::Converge
                        },
                        config: None,
                    },
                )
            },
        )
}

fn fs_spec(
    devs: &'static [&'static str],
    mnt: &'static str,
) -> impl Strategy<Value = ((bool, bool), FsSpec)> {
    (
        flags(),
        prop::sample::select(devs),
        prop::sample::select(&["ext3", "xfs", "ext4"][..]),
        prop_oneof![Just(Fsck::Auto), Just(Fsck::No), Just(Fsck::Yes)],
        prop::sample::select(&["defaults", "noatime,nodev"][..]),
        any::<bool>(),
    )
        .prop_map(move |(flags, dev, fstype, fsck, options, umount_kill)| {
            // The loader refuses `fsck: true` on a type e2fsck cannot check.
            let fsck = if fsck == Fsck::Yes && !is_ext(fstype) {
                Fsck::Auto
            } else {
                fsck
            };
            (
                flags,
                FsSpec {
                    dev: dev.into(),
                    mnt: mnt.into(),
                    fstype: fstype.into(),
                    options: options.into(),
                    fsck,
                    umount_kill,
                    timeout: FsSpec::DEFAULT_TIMEOUT,
                },
            )
        })
}

fn container_spec(v: &'static Vocabulary) -> impl Strategy<Value = ((bool, bool), ContainerSpec)> {
    (
        flags(),
        prop_oneof![
            Just(ContainerKind::Vz(v.vz.into())),
            Just(ContainerKind::Lxc(v.lxc.into()))
        ],
    )
        .prop_map(|(flags, kind)| {
            (
                flags,
                ContainerSpec {
                    kind,
                    start_timeout: ContainerSpec::DEFAULT_START_TIMEOUT,
                    stop_timeout: ContainerSpec::DEFAULT_STOP_TIMEOUT,
                },
            )
        })
}

fn app_spec() -> impl Strategy<Value = ((bool, bool), AppSpec)> {
    let argv = |verb: &str| Some(vec!["/usr/bin/svc".to_string(), verb.to_string()]);
    (
        flags(),
        prop_oneof![
            Just(AppCommands::Scripts("/svc/etc/init.d".into())),
            Just(AppCommands::Argv {
                start: argv("start"),
                stop: argv("stop"),
                check: argv("status"),
            }),
            Just(AppCommands::Argv {
                start: argv("start"),
                stop: None,
                check: None,
            }),
        ],
    )
        .prop_map(|(flags, commands)| {
            (
                flags,
                AppSpec {
                    commands,
                    timeout: Duration::from_secs(120),
                    retcodes: AppSpec::default_retcodes(),
                },
            )
        })
}

fn resource(kind: Kind, index: u32, (disabled, optional): (bool, bool), spec: Spec) -> Resource {
    Resource {
        id: ResourceId::new(kind, index),
        disabled,
        optional,
        spec,
    }
}

/// A service of the seed's shape (DRBD → fs → container → apps) with every part optional and
/// varied; the seed itself (one of each, up, unpinned) is the likeliest shape.
fn service(v: &'static Vocabulary) -> impl Strategy<Value = Service> {
    let drbd = v
        .drbd
        .iter()
        .enumerate()
        .map(|(i, res)| prop::option::weighted(if i == 0 { 0.9 } else { 0.3 }, drbd_spec(res)))
        .collect::<Vec<_>>();
    let fs = v
        .mnts
        .iter()
        .enumerate()
        .map(|(i, mnt)| {
            prop::option::weighted(if i == 0 { 0.9 } else { 0.25 }, fs_spec(v.devs, mnt))
        })
        .collect::<Vec<_>>();
    (
        prop_oneof![4 => Just(DesiredState::Up), 3 => Just(DesiredState::Down), 1 => Just(DesiredState::Frozen)],
        prop_oneof![2 => Just(None), 1 => Just(Some(THIS_NODE)), 1 => Just(Some(OTHER_NODE))],
        drbd,
        fs,
        prop::option::weighted(0.7, container_spec(v)),
        prop::collection::vec(app_spec(), 0..=2),
    )
        .prop_map(move |(state, node, drbd, fs, container, apps)| {
            let mut resources = Vec::new();
            for (i, d) in (0..).zip(drbd) {
                if let Some((flags, spec)) = d {
                    resources.push(resource(Kind::Drbd, i, flags, Spec::Drbd(spec)));
                }
            }
            for (i, f) in (1..).zip(fs) {
                if let Some((flags, spec)) = f {
                    resources.push(resource(Kind::Fs, i, flags, Spec::Fs(spec)));
                }
            }
            if let Some((flags, spec)) = container {
                resources.push(resource(Kind::Container, 0, flags, Spec::Container(spec)));
            }
            for (i, (flags, spec)) in (0..).zip(apps) {
                resources.push(resource(Kind::App, i, flags, Spec::App(spec)));
            }
            Service {
                name: v.name.into(),
                state,
                placement: node.map_or(Placement::Everywhere, |n| Placement::Pinned { node: n.to_string() }),
                rollback: true,
                resources,
                source: PathBuf::from(format!("/etc/converge/manifests/{}.yaml", v.name)),
            }
        })
}

fn services() -> impl Strategy<Value = Vec<Service>> {
    (service(&ALPHA), prop::option::weighted(0.3, service(&BETA)))
        .prop_map(|(a, b)| [Some(a), b].into_iter().flatten().collect())
}

/// What the node does that converge does not decide: the disk state a resource comes up with,
/// the role its peer turns out to have once connected, and which service runs next.
#[derive(Debug, Clone)]
struct Fate {
    up_disk: Vec<DiskState>,
    peer_role: Vec<Role>,
    /// Which of the services not at rest runs its first step next (index modulo their count).
    schedule: Vec<usize>,
}

fn fate() -> impl Strategy<Value = Fate> {
    (
        prop::collection::vec(
            prop_oneof![4 => Just(DiskState::UpToDate), 1 => Just(DiskState::Outdated), 1 => Just(DiskState::Inconsistent)],
            DRBD_WORLD.len(),
        ),
        prop::collection::vec(role(), DRBD_WORLD.len()),
        prop::collection::vec(0..2usize, 0..8),
    )
        .prop_map(|(up_disk, peer_role, schedule)| Fate {
            up_disk,
            peer_role,
            schedule,
        })
}

// ---------------------------------------------------------------------------------------------
// The rules, checked on one plan.

/// The node as the steps of one service's plan leave it, step after step: what the planner
/// assumes when it lists every step ("assuming every earlier action succeeds").
struct Foreseen<'n> {
    node: &'n NodeState,
    /// Roles of DRBD resources, as observed and then changed by earlier steps; a resource an
    /// earlier step brought up is Secondary with peers and disks not yet seen.
    roles: BTreeMap<String, Role>,
    brought_up: BTreeSet<String>,
    /// Resources an earlier step brought up *and* promoted: a device no observed resource
    /// provides may be one of theirs (see the `Mount` rule).
    brought_up_and_promoted: BTreeSet<String>,
    /// The mount table (source, device, mount point), as earlier steps leave it; `None` when it
    /// could not be read.
    mounts: Option<Vec<(String, DevNum, PathBuf)>>,
    /// DRBD minors an earlier step unmounted a filesystem of.
    unmounted_minors: BTreeSet<u32>,
}

impl<'n> Foreseen<'n> {
    fn new(node: &'n NodeState) -> Self {
        Foreseen {
            node,
            roles: node
                .drbd
                .ok()
                .into_iter()
                .flatten()
                .map(|(name, r)| (name.clone(), r.role.clone()))
                .collect(),
            brought_up: BTreeSet::new(),
            brought_up_and_promoted: BTreeSet::new(),
            mounts: node.mounts.ok().map(|mounts| {
                mounts
                    .iter()
                    .map(|m| (m.source().to_string(), m.dev, m.mount_point().to_path_buf()))
                    .collect()
            }),
            unmounted_minors: BTreeSet::new(),
        }
    }

    fn observed(&self, res: &str) -> Option<&'n DrbdResource> {
        self.node.drbd.ok().and_then(|m| m.get(res))
    }

    /// The observed resource and volume whose device `path` is: by its `/dev/drbdN` name, or by
    /// device number.
    fn observed_drbd_device(&self, path: &Path) -> Option<(&'n DrbdResource, u32)> {
        let number = self.node.devices.get(path);
        self.node.drbd.ok()?.values().find_map(|r| {
            r.devices
                .iter()
                .find(|d| drbd_path(d.minor) == path || number == Some(&dev(DRBD_MAJOR, d.minor)))
                .map(|d| (r, d.minor))
        })
    }
}

fn looks_like_drbd(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.starts_with("/dev/drbd"))
}

/// The DRBD spec of the resource a step acts on.
fn spec_of<'s>(service: &'s Service, step: &Step) -> Option<&'s DrbdSpec> {
    service.resource(step.rid).and_then(|r| r.spec.as_drbd())
}

/// The resource of `service` a step acts on, when its kind fits the action.
fn target<'s>(service: &'s Service, step: &Step) -> Option<&'s Resource> {
    let resource = service.resource(step.rid).filter(|r| !r.disabled)?;
    let fits = match (&step.action, &resource.spec) {
        (
            Action::DrbdUp { res }
            | Action::DrbdConnect { res, .. }
            | Action::DrbdPrimary { res }
            | Action::DrbdSecondary { res, .. }
            | Action::DrbdDown { res },
            Spec::Drbd(d),
        ) => *res == d.res,
        (Action::Mkdir { path }, Spec::Fs(f)) => *path == f.mnt,
        (Action::Mount { dev, mnt, .. }, Spec::Fs(f)) => *dev == f.dev && *mnt == f.mnt,
        (Action::Umount { mnt, .. }, Spec::Fs(f)) => mnt.starts_with(&f.mnt),
        (
            Action::ContainerStart { container }
            | Action::ContainerWaitUp { container }
            | Action::ContainerWaitDown { container }
            | Action::ContainerStop { container },
            Spec::Container(c),
        ) => *container == c.kind,
        (Action::AppStart | Action::AppStop, Spec::App(_)) => true,
        _ => false,
    };
    fits.then_some(resource)
}

/// Every rule of `plan/mod.rs` on one service's plan. `Err` names the rule and the step.
fn check_service_plan(service: &Service, sp: &ServicePlan, node: &NodeState) -> Result<(), String> {
    let desired = service.desired_here(THIS_NODE);
    if desired == DesiredState::Frozen && !(sp.steps.is_empty() && sp.blocked.is_none()) {
        return Err(format!(
            "frozen service {} was planned: {sp:?}",
            service.name
        ));
    }
    let mut seen = Foreseen::new(node);
    for (i, step) in sp.steps.iter().enumerate() {
        let at = || {
            format!(
                "step {i} of {}: {:?} ({})",
                service.name, step.action, step.reason
            )
        };
        let Some(resource) = target(service, step) else {
            return Err(format!(
                "{}: acts on no enabled resource of that kind",
                at()
            ));
        };
        let teardown = matches!(
            step.action,
            Action::DrbdSecondary { .. }
                | Action::DrbdDown { .. }
                | Action::Umount { .. }
                | Action::ContainerStop { .. }
                | Action::AppStop
        );
        let standby = service.stands_by_here(THIS_NODE);
        // Rule: a resource the system brings up is never brought up, connected or taken
        // down by converge.
        let by_system = resource
            .spec
            .as_drbd()
            .is_some_and(|d| d.up_by == UpBy::System);
        if by_system
            && matches!(
                step.action,
                Action::DrbdUp { .. } | Action::DrbdConnect { .. } | Action::DrbdDown { .. }
            )
        {
            return Err(format!("{}: acts for the system (up_by: system)", at()));
        }
        match desired {
            // Standing by for a service pinned to another node: its DRBD resources are
            // brought up (where the configuration names this node) and connected, nothing
            // else goes up, and they are never taken down.
            DesiredState::Down if standby => match &step.action {
                Action::DrbdUp { res } => {
                    let configured = matches!(
                        &node.drbd_configured,
                        Some(Observed::Ok(names)) if names.contains(res)
                    );
                    if !configured {
                        return Err(format!(
                            "{}: brings up a resource the DRBD configuration does not name here",
                            at()
                        ));
                    }
                }
                Action::DrbdConnect { .. } => {}
                Action::DrbdDown { .. } => {
                    return Err(format!("{}: takes a standby's resource down", at()));
                }
                action if action.is_start() => {
                    return Err(format!("{}: a start step on a standby", at()));
                }
                _ => {}
            },
            // Kept down here (state down): never a step up. This is what keeps two nodes from
            // going Primary when a service moves.
            DesiredState::Down if step.action.is_start() => {
                return Err(format!("{}: a start step for a service kept down", at()));
            }
            DesiredState::Up if teardown => {
                return Err(format!("{}: a stop step for a service kept up", at()));
            }
            _ => {}
        }
        if matches!(
            step.action,
            Action::DrbdUp { .. }
                | Action::DrbdConnect { .. }
                | Action::DrbdPrimary { .. }
                | Action::DrbdSecondary { .. }
                | Action::DrbdDown { .. }
        ) && node.drbd.ok().is_none()
        {
            return Err(format!(
                "{}: a DRBD action while DRBD cannot be observed",
                at()
            ));
        }
        match &step.action {
            Action::DrbdUp { res } => {
                seen.roles.insert(res.clone(), Role::Secondary);
                seen.brought_up.insert(res.clone());
            }
            // Never generated here (no `config:`); the planner's tables cover them.
            Action::DrbdConnect { .. } | Action::DrbdInstall { .. } | Action::DrbdAdjust { .. } => {
            }
            Action::DrbdPrimary { res } => {
                let allow_two = resource
                    .spec
                    .as_drbd()
                    .is_some_and(|d| d.allow_two_primaries);
                match seen.observed(res) {
                    Some(observed) => {
                        // Rule: never primary while any peer is seen Primary, or cannot be
                        // seen (not connected: it may be Primary on its side).
                        if !allow_two
                            && observed.connections.iter().any(|c| {
                                c.peer_role != Role::Secondary
                                    || c.state != ConnectionState::Connected
                            })
                        {
                            return Err(format!(
                                "{}: promotes while a peer is Primary or not seen: {:?}",
                                at(),
                                observed.connections
                            ));
                        }
                        // Rule: never primary without UpToDate local data, on every volume.
                        if !observed.has_up_to_date_data() {
                            return Err(format!(
                                "{}: promotes without UpToDate data: {:?}",
                                at(),
                                observed.devices
                            ));
                        }
                    }
                    // Not up when observed: nothing is known of its peers or data yet. The
                    // planner may then list `up` and `primary` together, because `primary` can
                    // never be the step that runs next: the plan made after `up` sees the
                    // resource and judges its peers and data by the two rules above, and the
                    // driver re-reads the peers right before promoting (the run-the-first-step
                    // property below checks that no unsafe promotion is ever run). So the
                    // rule here is: a promotion of a resource not up must follow its `up` in
                    // the same plan.
                    None if seen.brought_up.contains(res) => {
                        seen.brought_up_and_promoted.insert(res.clone());
                    }
                    None => {
                        return Err(format!("{}: promotes a resource that is not up", at()));
                    }
                }
                seen.roles.insert(res.clone(), Role::Primary);
            }
            Action::DrbdSecondary { res, .. } | Action::DrbdDown { res } => {
                let Some(observed) = seen.observed(res) else {
                    return Err(format!("{}: demotes a resource that is not up", at()));
                };
                let Some(mounts) = &seen.mounts else {
                    return Err(format!(
                        "{}: demotes while the mount table cannot be read",
                        at()
                    ));
                };
                // Rule: never secondary/down while a filesystem on one of its devices is
                // mounted (by any name: matched by device number) and not unmounted by an
                // earlier step, or the device is held open by something else.
                for device in &observed.devices {
                    let path = drbd_path(device.minor);
                    let number = dev(DRBD_MAJOR, device.minor);
                    if let Some((source, _, point)) = mounts
                        .iter()
                        .find(|(source, d, _)| *d == number || Path::new(source) == path)
                    {
                        return Err(format!(
                            "{}: demotes while {source} is mounted on {}",
                            at(),
                            point.display()
                        ));
                    }
                    // An open device is taken to be held by its mounts when an earlier step
                    // unmounts one of them (as the planner does); otherwise by a process.
                    // Only `secondary --force` may, when the manifest allows it.
                    let forced = matches!(step.action, Action::DrbdSecondary { force: true, .. })
                        && spec_of(service, step).is_some_and(|d| d.secondary_force);
                    if device.open && !seen.unmounted_minors.contains(&device.minor) && !forced {
                        return Err(format!("{}: demotes {} held open", at(), path.display()));
                    }
                }
                match step.action {
                    Action::DrbdDown { .. } => seen.roles.remove(res),
                    _ => seen.roles.insert(res.clone(), Role::Secondary),
                };
            }
            Action::Mount { dev: path, mnt, .. } => {
                if seen.mounts.is_none() {
                    return Err(format!(
                        "{}: mounts while the mount table cannot be read",
                        at()
                    ));
                }
                // Rule: never fsck or mount a DRBD device that is not Primary here, or promoted
                // by an earlier step.
                if let Some((owner, _)) = seen.observed_drbd_device(path) {
                    if seen.roles.get(&owner.name) != Some(&Role::Primary) {
                        return Err(format!(
                            "{}: mounts a device of {} which is {:?} here",
                            at(),
                            owner.name,
                            seen.roles.get(&owner.name)
                        ));
                    }
                } else if looks_like_drbd(path) && seen.brought_up_and_promoted.is_empty() {
                    // No observed resource provides it: it can only appear when a resource
                    // comes up, so it is mounted only after a resource this plan brings up and
                    // promotes; the plan made after those steps judges it again.
                    return Err(format!(
                        "{}: mounts a DRBD device no resource provides, and none comes up first",
                        at()
                    ));
                }
                let number = node
                    .devices
                    .get(path)
                    .copied()
                    .or_else(|| device_of_path(path))
                    .unwrap_or(dev(0, 0));
                if let Some(mounts) = &mut seen.mounts {
                    mounts.push((path.display().to_string(), number, mnt.clone()));
                }
            }
            Action::Umount { mnt, .. } => {
                let Some(mounts) = &mut seen.mounts else {
                    return Err(format!(
                        "{}: unmounts while the mount table cannot be read",
                        at()
                    ));
                };
                let Some(top) = mounts.iter().rposition(|(_, _, point)| point == mnt) else {
                    return Err(format!("{}: unmounts what is not mounted", at()));
                };
                let (source, number, _) = mounts.remove(top);
                // The service's own mount point holds its filesystem: another one stacked
                // there is someone else's (sub-mounts below it do come off first).
                if let Some(fs) = resource.spec.as_fs()
                    && fs.mnt == *mnt
                    && Path::new(&source) != fs.dev
                    && node.devices.get(&fs.dev) != Some(&number)
                {
                    return Err(format!(
                        "{}: unmounts {source}, not the service's {}",
                        at(),
                        fs.dev.display()
                    ));
                }
                if number.major == DRBD_MAJOR {
                    seen.unmounted_minors.insert(number.minor);
                }
            }
            Action::ContainerStart { container }
            | Action::ContainerWaitUp { container }
            | Action::ContainerWaitDown { container }
            | Action::ContainerStop { container } => {
                let observed = match container {
                    ContainerKind::Vz(_) => &node.vz,
                    ContainerKind::Lxc(_) => &node.lxc,
                };
                if observed.ok().is_none() {
                    return Err(format!(
                        "{}: a container action while containers cannot be observed",
                        at()
                    ));
                }
            }
            // Only a holder that lost quorum under `on_quorum_loss: freeze` freezes, and only a
            // container converge froze is thawed: neither exists among these services.
            Action::ContainerFreeze { .. } | Action::ContainerThaw { .. } => {
                return Err(format!(
                    "{}: a freeze or thaw with no freeze policy and no freeze record",
                    at()
                ));
            }
            Action::Mkdir { .. } | Action::AppStart | Action::AppStop => {}
        }
        // Rule: converge never uses --force, whatever it runs, with any configured drbdsetup,
        // but to demote a resource whose manifest sets `secondary_force` (the demotion rule
        // above keeps that from happening under a mount).
        let may_force = matches!(step.action, Action::DrbdSecondary { force: true, .. })
            && spec_of(service, step).is_some_and(|d| d.secondary_force);
        for commands in [
            Commands::default(),
            Commands {
                drbdsetup: "/usr/lib/converge/drbdsetup".into(),
                ..Commands::default()
            },
        ] {
            let scripts = node.scripts_of(&service.name, step.rid);
            for line in command::for_step(step, service, &commands, scripts).lines() {
                if line.contains("--force") && !(may_force && line.contains(" secondary --force "))
                {
                    return Err(format!("{}: renders {line:?}", at()));
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The node, modelled: what each action does, for the run-the-first-step property.

/// A small pure model of the node under the actions: each arm says when the real node refuses
/// the action (DRBD, the kernel, vzctl/lxc-*), and otherwise changes the observation as the next
/// observation pass would see it. It is deliberately simple:
/// - `drbdadm up` brings the resource up Secondary, every volume with the fate's disk state, one
///   peer connected with the fate's role; its device nodes appear.
/// - `connect` connects StandAlone peers, who then show the fate's role.
/// - `primary` is refused without UpToDate data on every volume (converge never forces) and
///   beside a Primary peer unless two primaries are allowed — DRBD's own refusals, which the
///   driver also checks — and otherwise makes the resource Primary.
/// - `secondary`/`down` are refused while a device is open, as DRBD refuses them.
/// - `mount` is refused when the mount point is missing, the device does not exist, or it is a
///   DRBD device whose resource is not Primary here; otherwise a mount is added on top, and the
///   DRBD device is open. A filesystem is taken to hold the directories its mount point held.
/// - `umount` is refused when nothing is mounted there or something is mounted below (busy);
///   otherwise the top mount there goes, and a DRBD device with no mount left is closed unless
///   a process held it open before any of this (open without a mount, when the loop started).
/// - containers: start from stopped/mounted, wait-up from starting, wait-down from stopping,
///   stop from running/starting/aborting; anything else is refused. Starting or stopping a
///   container forgets its apps' observations (their checks would see them anew).
/// - apps: start/stop need their host (the service's container, or the node) running; the app is
///   then up/down.
struct World {
    fate: Fate,
    /// How much of `fate.schedule` is used.
    picks: usize,
    static_nodes: bool,
    held_open: BTreeSet<u32>,
    next_mount_id: u32,
}

impl World {
    fn new(fate: Fate, node: &NodeState) -> Self {
        let mounted: BTreeSet<DevNum> = node
            .mounts
            .ok()
            .into_iter()
            .flatten()
            .map(|m| m.dev)
            .collect();
        let held_open = node
            .drbd
            .ok()
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|r| &r.devices)
            .filter(|d| d.open && !mounted.contains(&dev(DRBD_MAJOR, d.minor)))
            .map(|d| d.minor)
            .collect();
        let up_minors: BTreeSet<u32> = node
            .drbd
            .ok()
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|r| r.devices.iter().map(|d| d.minor))
            .collect();
        // The observation tells: a DRBD device node present for a minor that is not up means
        // static nodes. When every minor is up, either world fits what was seen.
        let static_nodes = node.devices.iter().any(|(path, number)| {
            number.major == DRBD_MAJOR
                && !path.to_string_lossy().contains("by-res")
                && !up_minors.contains(&number.minor)
        });
        World {
            fate,
            picks: 0,
            static_nodes,
            held_open,
            next_mount_id: 1000,
        }
    }

    /// Which of the services not at rest goes next (an index, taken modulo their number).
    fn next_pick(&mut self) -> usize {
        let pick = self.fate.schedule.get(self.picks).copied().unwrap_or(0);
        self.picks += 1;
        pick
    }

    fn fate_of(&self, res: &str) -> (DiskState, Role) {
        let i = DRBD_WORLD
            .iter()
            .position(|(name, _)| *name == res)
            .unwrap_or(0);
        (
            self.fate
                .up_disk
                .get(i)
                .cloned()
                .unwrap_or(DiskState::UpToDate),
            self.fate
                .peer_role
                .get(i)
                .cloned()
                .unwrap_or(Role::Secondary),
        )
    }

    /// Runs `step` of `service` on `node`; `Err` when the node refuses it.
    fn run(&mut self, node: &mut NodeState, service: &Service, step: &Step) -> Result<(), String> {
        match &step.action {
            Action::DrbdInstall { .. } | Action::DrbdAdjust { .. } => {
                return Err("no service here names a resource file".into());
            }
            Action::DrbdUp { res } => {
                let (disk, peer_role) = self.fate_of(res);
                let Observed::Ok(drbd) = &mut node.drbd else {
                    return Err("DRBD is not there".into());
                };
                if drbd.contains_key(res) {
                    return Err(format!("{res} is already up"));
                }
                let minors = minors_of(res);
                drbd.insert(
                    res.clone(),
                    DrbdResource {
                        name: res.clone(),
                        role: Role::Secondary,
                        suspended: false,
                        devices: (0..)
                            .zip(minors)
                            .map(|(volume, &minor)| DrbdDevice {
                                volume,
                                minor,
                                disk: disk.clone(),
                                client: false,
                                open: false,
                                quorum: Quorum::Yes,
                            })
                            .collect(),
                        connections: vec![DrbdConnection {
                            peer_node_id: Some(1),
                            name: Some("peer1".into()),
                            state: ConnectionState::Connected,
                            peer_role,
                            peer_devices: (0..)
                                .zip(minors)
                                .map(|(volume, _)| DrbdPeerDevice {
                                    volume,
                                    replication: ReplicationState::Established,
                                    peer_disk: DiskState::UpToDate,
                                    percent_in_sync: None,
                                })
                                .collect(),
                        }],
                    },
                );
                node.devices = devices_of(&node.drbd, self.static_nodes);
            }
            Action::DrbdConnect { res, peer } => {
                let (_, peer_role) = self.fate_of(res);
                let r = up_resource(node, res)?;
                for c in &mut r.connections {
                    let this_one = peer.is_none() || c.name == *peer;
                    if this_one && c.state == ConnectionState::StandAlone {
                        c.state = ConnectionState::Connected;
                        c.peer_role = peer_role.clone();
                    }
                }
            }
            Action::DrbdPrimary { res } => {
                let allow_two = service
                    .resource(step.rid)
                    .and_then(|r| r.spec.as_drbd())
                    .is_some_and(|d| d.allow_two_primaries);
                let r = up_resource(node, res)?;
                if !r.has_up_to_date_data() {
                    return Err(format!(
                        "{res}: no UpToDate data, DRBD refuses without --force"
                    ));
                }
                if r.peer_primary() && !allow_two {
                    return Err(format!("{res}: a peer is Primary"));
                }
                r.role = Role::Primary;
            }
            Action::DrbdSecondary { res, force } => {
                let r = up_resource(node, res)?;
                // DRBD demotes a device in use only when forced (its I/O then fails).
                if let Some(d) = r.devices.iter().find(|d| d.open && !force) {
                    return Err(format!("{res}: minor {} is held open", d.minor));
                }
                r.role = Role::Secondary;
            }
            Action::DrbdDown { res } => {
                let r = up_resource(node, res)?;
                if let Some(d) = r.devices.iter().find(|d| d.open) {
                    return Err(format!("{res}: minor {} is held open", d.minor));
                }
                if let Observed::Ok(drbd) = &mut node.drbd {
                    drbd.remove(res);
                }
                node.devices = devices_of(&node.drbd, self.static_nodes);
            }
            Action::Mkdir { path } => {
                node.dirs.insert(path.clone());
            }
            Action::Mount { dev: path, mnt, .. } => {
                if !node.dirs.contains(mnt) {
                    return Err(format!("mount point {} does not exist", mnt.display()));
                }
                let Some(&number) = node.devices.get(path) else {
                    return Err(format!("{} does not exist", path.display()));
                };
                if number.major == DRBD_MAJOR {
                    let owner = owner_of_minor(number.minor).unwrap_or("?");
                    let r = up_resource(node, owner)?;
                    if r.role != Role::Primary {
                        return Err(format!(
                            "{} is a device of {owner}, which is {} here",
                            path.display(),
                            r.role
                        ));
                    }
                    set_open(node, number.minor, true);
                }
                let Observed::Ok(mounts) = &mut node.mounts else {
                    return Err("the mount table cannot be read".into());
                };
                self.next_mount_id += 1;
                let source = path.display().to_string();
                let m = new_mount(mounts, self.next_mount_id, &source, number, mnt);
                mounts.push(m);
            }
            Action::Umount { mnt, .. } => {
                let Observed::Ok(mounts) = &mut node.mounts else {
                    return Err("the mount table cannot be read".into());
                };
                if let Some(below) = mounts
                    .iter()
                    .find(|m| m.mount_point() != mnt && m.mount_point().starts_with(mnt))
                {
                    return Err(format!(
                        "{} is busy: {} is mounted below",
                        mnt.display(),
                        below.mount_point().display()
                    ));
                }
                let Some(top) = mounts.iter().rposition(|m| m.mount_point() == mnt) else {
                    return Err(format!("{} is not mounted", mnt.display()));
                };
                let number = mounts.remove(top).dev;
                let still_mounted = mounts.iter().any(|m| m.dev == number);
                if number.major == DRBD_MAJOR
                    && !still_mounted
                    && !self.held_open.contains(&number.minor)
                {
                    set_open(node, number.minor, false);
                }
            }
            Action::ContainerStart { container }
            | Action::ContainerWaitUp { container }
            | Action::ContainerWaitDown { container }
            | Action::ContainerStop { container } => {
                let observed = match container {
                    ContainerKind::Vz(_) => &mut node.vz,
                    ContainerKind::Lxc(_) => &mut node.lxc,
                };
                let Observed::Ok(states) = observed else {
                    return Err("containers cannot be observed".into());
                };
                let state = states
                    .get(container.id())
                    .copied()
                    .unwrap_or(ContainerState::Absent);
                use ContainerState::*;
                let next = match (&step.action, state) {
                    (Action::ContainerStart { .. }, Stopped | Mounted) => Running,
                    (Action::ContainerWaitUp { .. }, Starting) => Running,
                    (Action::ContainerWaitDown { .. }, Stopping) => Stopped,
                    (Action::ContainerStop { .. }, Running | Starting | Aborting) => Stopped,
                    (action, state) => {
                        return Err(format!(
                            "container {} is {state:?}: {action:?} fails",
                            container.id()
                        ));
                    }
                };
                states.insert(container.id().to_string(), next);
                // The container is the service's own (one service, one container): its apps.
                node.apps.remove(&service.name);
            }
            Action::ContainerFreeze { .. } | Action::ContainerThaw { .. } => {
                return Err("no service here freezes on a quorum loss".into());
            }
            Action::AppStart | Action::AppStop => {
                if let Some(container) = service.container() {
                    let observed = match &container.kind {
                        ContainerKind::Vz(_) => &node.vz,
                        ContainerKind::Lxc(_) => &node.lxc,
                    };
                    let state = observed.ok().and_then(|m| m.get(container.kind.id()));
                    if state != Some(&ContainerState::Running) {
                        return Err(format!(
                            "the app's container {} is {state:?}, not running",
                            container.kind.id()
                        ));
                    }
                }
                let status = if matches!(step.action, Action::AppStart) {
                    AppStatus::Up
                } else {
                    AppStatus::Down
                };
                node.apps.entry(service.name.clone()).or_default().insert(
                    step.rid,
                    AppObservation {
                        status,
                        detail: format!("check says {}", status.word()),
                    },
                );
            }
        }
        Ok(())
    }
}

fn up_resource<'n>(node: &'n mut NodeState, res: &str) -> Result<&'n mut DrbdResource, String> {
    match &mut node.drbd {
        Observed::Ok(drbd) => drbd.get_mut(res).ok_or_else(|| format!("{res} is not up")),
        Observed::Unavailable(_) => Err("DRBD is not there".into()),
    }
}

fn set_open(node: &mut NodeState, minor: u32, open: bool) {
    if let Observed::Ok(drbd) = &mut node.drbd {
        for d in drbd.values_mut().flat_map(|r| &mut r.devices) {
            if d.minor == minor {
                d.open = open;
            }
        }
    }
}

/// Plans, checks every plan, runs the first step of a service not at rest, and again, until
/// every service is converged or blocked. `Err` says which rule or which step failed.
fn run_to_rest(
    world: &mut World,
    services: &[Service],
    node: &mut NodeState,
) -> Result<usize, String> {
    for round in 0..=MAX_ROUNDS {
        let plan = plan(services, node);
        for (service, sp) in services.iter().zip(&plan.services) {
            check_service_plan(service, sp, node)
                .map_err(|e| format!("round {round}: {e}\nnode: {node:#?}"))?;
        }
        let busy: Vec<(&Service, &Step)> = services
            .iter()
            .zip(&plan.services)
            .filter_map(|(service, sp)| Some((service, sp.steps.first()?)))
            .collect();
        if busy.is_empty() {
            return Ok(round);
        }
        if round == MAX_ROUNDS {
            break;
        }
        let (service, step) = busy[world.next_pick() % busy.len()];
        let before = node.clone();
        world.run(node, service, step).map_err(|e| {
            format!(
                "round {round}: {} runs {:?} ({}), which the node refuses: {e}\nnode: {before:#?}",
                service.name, step.action, step.reason
            )
        })?;
        // The controller fails a step that changes nothing observable; here it would loop.
        if *node == before {
            return Err(format!(
                "round {round}: {} runs {:?}, which changes nothing",
                service.name, step.action
            ));
        }
    }
    Err(format!("not at rest after {MAX_ROUNDS} steps"))
}

/// The same services wanted the other way: up ones down, down ones up (a service pinned to
/// another node stays down here), frozen ones frozen.
fn reversed(services: &[Service]) -> Vec<Service> {
    services
        .iter()
        .map(|s| Service {
            state: match s.state {
                DesiredState::Up => DesiredState::Down,
                DesiredState::Down => DesiredState::Up,
                DesiredState::Frozen => DesiredState::Frozen,
            },
            ..s.clone()
        })
        .collect()
}

proptest! {
    #![proptest_config(config(SAFETY_CASES))]

    /// Every rule of `plan/mod.rs`, on the plan of a random node, every step judged after the
    /// steps before it.
    #[test]
    fn every_plan_keeps_the_safety_rules(services in services(), node in node_state()) {
        let plan = plan(&services, &node);
        for (service, sp) in services.iter().zip(&plan.services) {
            if let Err(e) = check_service_plan(service, sp, &node) {
                return Err(TestCaseError::fail(e));
            }
        }
    }

    /// The batch plan is each service's own plan, less the notes of what is already as
    /// wanted: the controller acts on either, and logs the notes of the second.
    #[test]
    fn the_batch_plan_is_each_services_plan_without_its_notes(
        services in services(),
        node in node_state(),
    ) {
        let plan = plan(&services, &node);
        for (service, batch) in services.iter().zip(&plan.services) {
            let mut own = plan_service(service, &node);
            prop_assert!(batch.satisfied.is_empty(), "{:?}", batch.satisfied);
            own.satisfied.clear();
            prop_assert_eq!(batch, &own);
        }
    }
}

proptest! {
    #![proptest_config(config(REST_CASES))]

    /// Run the first step, observe, plan again: the node comes to rest (every service converged
    /// or blocked) within MAX_ROUNDS steps, every plan on the way keeps the rules, and the node
    /// accepts every step run. Then the same from there with the services wanted the other way,
    /// as when a service is stopped here to move it.
    #[test]
    fn running_the_first_step_comes_to_rest(
        services in services(),
        node in node_state(),
        fate in fate(),
    ) {
        let mut node = node;
        let mut world = World::new(fate, &node);
        if let Err(e) = run_to_rest(&mut world, &services, &mut node) {
            return Err(TestCaseError::fail(e));
        }
        if let Err(e) = run_to_rest(&mut world, &reversed(&services), &mut node) {
            return Err(TestCaseError::fail(format!("on the way back: {e}")));
        }
    }
}
