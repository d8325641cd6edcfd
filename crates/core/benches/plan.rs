//! Planner cost at scale: 100, 1,000 and 10,000 services of the seed's shape (drbd → fs →
//! container → app), converged and all to stop. Targets (2-core machine): 10,000 converged
//! ≤ 30 ms, all to stop ≤ 50 ms, and a cost linear in the services: the bench prints the
//! exponent k of time ∝ Nᵏ between the sizes. Results in docs/performance.md.
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

const SIZES: [u32; 3] = [100, 1_000, 10_000];
/// The metrics' figures are taken at this size only.
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
fn converged_node(services: u32) -> NodeState {
    let mut drbd = BTreeMap::new();
    let mut mounts = Vec::new();
    let mut devices = BTreeMap::new();
    let mut dirs = BTreeSet::new();
    let mut vz = BTreeMap::new();
    let mut apps = BTreeMap::new();
    for i in 0..services {
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
        standalone_reported: None,
        drbd_files: Default::default(),
        drbd_adjust: Default::default(),
        drbd_drift: Default::default(),
        drbd_configured: None,
        drbd_options: Default::default(),
    }
}

fn benches(c: &mut Criterion) {
    let mut converged = Vec::new();
    let mut to_stop = Vec::new();
    for n in SIZES {
        let node = converged_node(n);
        let up: Vec<Service> = (0..n).map(|i| service(i, DesiredState::Up)).collect();
        assert!(converge_core::plan::plan(&up, &node).is_converged());
        c.bench_function(&format!("plan/{n} services converged"), |b| {
            b.iter(|| {
                converge_core::plan::plan(std::hint::black_box(&up), std::hint::black_box(&node))
            })
        });
        converged.push((n, median_plan_time(&up, &node)));

        let down: Vec<Service> = (0..n).map(|i| service(i, DesiredState::Down)).collect();
        assert_eq!(
            converge_core::plan::plan(&down, &node).step_count(),
            4 * n as usize
        );
        c.bench_function(&format!("plan/{n} services all to stop"), |b| {
            b.iter(|| {
                converge_core::plan::plan(std::hint::black_box(&down), std::hint::black_box(&node))
            })
        });
        to_stop.push((n, median_plan_time(&down, &node)));
    }
    print_exponents("converged", &converged);
    print_exponents("all to stop", &to_stop);
}

/// The median of a few plans, timed apart from criterion so that the sizes can be compared in
/// one line. It is this thread's CPU time, not the wall clock:
/// on a shared machine other processes' load stretches the wall-clock time of a plan but not
/// the CPU time it takes. Criterion's (wall-clock) figures stay the reference for each size.
fn median_plan_time(services: &[Service], node: &NodeState) -> Duration {
    let runs = 15;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = thread_cpu_time();
            std::hint::black_box(converge_core::plan::plan(
                std::hint::black_box(services),
                std::hint::black_box(node),
            ));
            thread_cpu_time() - start
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// The CPU time this thread has run.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// k in time ∝ Nᵏ between consecutive sizes: 1 is linear, 2 quadratic.
fn print_exponents(what: &str, figures: &[(u32, Duration)]) {
    for pair in figures.windows(2) {
        let ((n0, t0), (n1, t1)) = (pair[0], pair[1]);
        let k = (t1.as_secs_f64() / t0.as_secs_f64()).ln() / (f64::from(n1) / f64::from(n0)).ln();
        println!(
            "plan, {what}: {n0} services {t0:.2?}, {n1} services {t1:.2?} (CPU time, medians of 15): exponent {k:.2}"
        );
    }
}

/// The metrics of `services` observed converged on `node`: the daemon's state after a look.
fn metrics_benches(c: &mut Criterion) {
    use converge_core::metrics::{
        ActionResult, Histogram, ResultKind, ServiceMetrics, ServiceObservation, Snapshot, render,
    };
    let node = converged_node(SERVICES);
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
