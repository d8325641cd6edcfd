//! Planner cost at scale: 1,000 services of the seed's shape (drbd → fs → container → app).
//! Target (2-core machine): < 5 ms for the whole plan. Results in docs/performance.md.
//!
//! Beside it, what the daemon's metrics add when they are on, for the same 1,000 services: the
//! typed observation of each (taken at every look) and the rendering of the whole text (at
//! every scrape and textfile write), compared with the plan of the same look.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use converge_core::manifest::{
    AppCommands, AppSpec, AppStatus, ContainerKind, ContainerSpec, DesiredState, DrbdSpec,
    DrbdStop, FsSpec, Fsck, Kind, Placement, Resource, ResourceId, Service, Spec, UpBy,
};
use converge_core::observe::drbd::{
    ConnectionState, DiskState, DrbdConnection, DrbdDevice, DrbdPeerDevice, Quorum,
    ReplicationState,
};
use converge_core::observe::mountinfo::MountFields;
use converge_core::observe::{
    AppObservation, ContainerState, DevNum, DrbdResource, Mount, NodeState, Observed, Role,
};
use criterion::{Criterion, criterion_group, criterion_main};

const SERVICES: u32 = 1_000;

fn service(i: u32, state: DesiredState) -> Service {
    let res = |kind, index, spec| Resource {
        id: ResourceId::new(kind, index),
        disabled: false,
        optional: false,
        spec,
    };
    Service {
        name: format!("svc{i}"),
        state,
        placement: Placement::Everywhere,
        rollback: true,
        resources: vec![
            res(
                Kind::Drbd,
                0,
                Spec::Drbd(DrbdSpec {
                    res: format!("r{i}"),
                    stop: DrbdStop::Secondary,
                    allow_two_primaries: false,
                    secondary_force: false,
                    up_by: UpBy::Converge,
                    config: None,
                }),
            ),
            res(
                Kind::Fs,
                1,
                Spec::Fs(FsSpec {
                    dev: format!("/dev/drbd{i}").into(),
                    mnt: format!("/srv/svc{i}").into(),
                    fstype: "ext4".into(),
                    options: "defaults".into(),
                    fsck: Fsck::Auto,
                    umount_kill: false,
                    timeout: FsSpec::DEFAULT_TIMEOUT,
                }),
            ),
            res(
                Kind::Container,
                0,
                Spec::Container(ContainerSpec {
                    kind: ContainerKind::Vz(format!("{}", 100 + i)),
                    start_timeout: ContainerSpec::DEFAULT_START_TIMEOUT,
                    stop_timeout: ContainerSpec::DEFAULT_STOP_TIMEOUT,
                }),
            ),
            res(
                Kind::App,
                0,
                Spec::App(AppSpec {
                    commands: AppCommands::Scripts("/svc/etc/init.d".into()),
                    timeout: Duration::from_secs(120),
                    retcodes: AppSpec::default_retcodes(),
                }),
            ),
        ],
        source: PathBuf::from(format!("/etc/converge/manifests/svc{i}.yaml")),
    }
}

/// A node where every service is fully up: the no-op pass, which is what runs most often.
fn converged_node() -> NodeState {
    let mut drbd = BTreeMap::new();
    let mut mounts = Vec::new();
    let mut devices = BTreeMap::new();
    let mut dirs = BTreeSet::new();
    let mut vz = BTreeMap::new();
    let mut apps = BTreeMap::new();
    for i in 0..SERVICES {
        let dev = DevNum {
            major: 147,
            minor: i,
        };
        drbd.insert(
            format!("r{i}"),
            DrbdResource {
                name: format!("r{i}"),
                role: Role::Primary,
                suspended: false,
                devices: vec![DrbdDevice {
                    volume: 0,
                    minor: i,
                    disk: DiskState::UpToDate,
                    client: false,
                    open: true,
                    quorum: Quorum::Yes,
                }],
                connections: vec![DrbdConnection {
                    peer_node_id: Some(1),
                    name: Some("peer".into()),
                    state: ConnectionState::Connected,
                    peer_role: Role::Secondary,
                    peer_devices: vec![DrbdPeerDevice {
                        volume: 0,
                        replication: ReplicationState::Established,
                        peer_disk: DiskState::UpToDate,
                        percent_in_sync: None,
                    }],
                }],
            },
        );
        devices.insert(PathBuf::from(format!("/dev/drbd{i}")), dev);
        dirs.insert(PathBuf::from(format!("/srv/svc{i}")));
        mounts.push(Mount::new(MountFields {
            mount_id: 100 + i,
            parent_id: 1,
            dev,
            root: Path::new("/"),
            mount_point: Path::new(&format!("/srv/svc{i}")),
            options: "rw",
            optional_fields: &[],
            fstype: "ext4",
            source: &format!("/dev/drbd{i}"),
            super_options: "rw",
            deleted: false,
        }));
        vz.insert(format!("{}", 100 + i), ContainerState::Running);
        apps.insert(
            format!("svc{i}"),
            BTreeMap::from([(
                ResourceId::new(Kind::App, 0),
                AppObservation {
                    status: AppStatus::Up,
                    detail: "C10foo up".into(),
                },
            )]),
        );
    }
    NodeState {
        node: "deb1".into(),
        drbd: Observed::Ok(drbd),
        mounts: Observed::Ok(mounts),
        devices,
        dirs,
        vz: Observed::Ok(vz),
        lxc: Observed::Ok(BTreeMap::new()),
        apps,
        scripts: BTreeMap::new(),
        quorum_frozen: BTreeMap::new(),
        split_brains: Default::default(),
        drbd_files: Default::default(),
        drbd_adjust: Default::default(),
        drbd_drift: Default::default(),
        drbd_configured: None,
        drbd_options: Default::default(),
    }
}

fn benches(c: &mut Criterion) {
    let node = converged_node();
    let up: Vec<Service> = (0..SERVICES)
        .map(|i| service(i, DesiredState::Up))
        .collect();
    assert!(converge_core::plan::plan(&up, &node).is_converged());
    c.bench_function("plan/1000 services converged", |b| {
        b.iter(|| converge_core::plan::plan(std::hint::black_box(&up), std::hint::black_box(&node)))
    });

    let down: Vec<Service> = (0..SERVICES)
        .map(|i| service(i, DesiredState::Down))
        .collect();
    assert_eq!(
        converge_core::plan::plan(&down, &node).step_count(),
        4 * SERVICES as usize
    );
    c.bench_function("plan/1000 services all to stop", |b| {
        b.iter(|| {
            converge_core::plan::plan(std::hint::black_box(&down), std::hint::black_box(&node))
        })
    });
}

/// The metrics of `services` observed converged on `node`: the daemon's state after a look.
fn metrics_benches(c: &mut Criterion) {
    use converge_core::metrics::{
        ActionResult, Histogram, ResultKind, ServiceMetrics, ServiceObservation, Snapshot, render,
    };
    let node = converged_node();
    let up: Vec<Service> = (0..SERVICES)
        .map(|i| service(i, DesiredState::Up))
        .collect();
    let statuses = converge_core::status::statuses(&up, &node);
    c.bench_function("metrics/observations of 1000 services", |b| {
        b.iter(|| {
            statuses
                .iter()
                .zip(&up)
                .map(|(status, service)| ServiceObservation::of(status, service, &node))
                .collect::<Vec<_>>()
        })
    });
    let observations: Vec<ServiceObservation> = statuses
        .iter()
        .zip(&up)
        .map(|(status, service)| ServiceObservation::of(status, service, &node))
        .collect();
    let mut histogram = Histogram::default();
    for i in 0..SERVICES {
        histogram.observe(f64::from(i) / 100.0);
    }
    let snapshot = Snapshot {
        version: "0.1.0",
        revision: Some("0123456789abcdef (content 0123456789abcdef)"),
        services: up
            .iter()
            .zip(&observations)
            .map(|(service, observation)| ServiceMetrics {
                service: &service.name,
                result: ResultKind::Converged,
                observation: Some(observation),
                last_success: Some(1_765_000_000.0),
            })
            .collect(),
        reconcile_seconds: Some(&histogram),
        actions: BTreeMap::from([
            (("drbd_primary", ActionResult::Ok), 1000),
            (("mount", ActionResult::Ok), 1000),
        ]),
        ..Snapshot::default()
    };
    let text = render(&snapshot);
    println!(
        "metrics of {SERVICES} services: {} lines, {} bytes",
        text.lines().count(),
        text.len()
    );
    c.bench_function("metrics/render 1000 services", |b| {
        b.iter(|| render(std::hint::black_box(&snapshot)))
    });
}

criterion_group!(plan, benches, metrics_benches);
criterion_main!(plan);
