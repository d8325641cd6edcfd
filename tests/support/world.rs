//! Several simulated nodes (`converge_sim::world`), each running its own `converge run` on the
//! shared manifest directory, and what the tests on them share: the world's guard, the
//! daemons, what a node's DRBD, mounts and app look like, and a checker that samples every
//! node while a scenario runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use converge_core::observe::drbd::{ConnectionState, DiskState, Quorum, Role};
use converge_sim::world::{NodeDrbd, NodeProcess, World};

use super::CONVERGE;

/// The seed service's DRBD resource.
pub const RES: &str = "data";

/// A hang guard, not a measure.
pub const HANG: Duration = Duration::from_secs(120);

/// A world, torn down at the end; teardown problems fail a test that passed. It sits behind a
/// lock because powering a node off or on changes it while a checker reads it: a sample never
/// sees a node half powered off.
pub struct Guard(RwLock<World>);

impl Guard {
    pub fn new(world: World) -> Guard {
        Guard(RwLock::new(world))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, World> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, World> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let world = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        let problems = world.teardown();
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("world teardown: {problems:?}");
        }
    }
}

/// One node's `converge run`, its output appended to `NODE/daemon.out` (a restarted daemon
/// writes after the one before it).
pub struct Daemon {
    pub node: String,
    log: PathBuf,
    process: NodeProcess,
}

impl Daemon {
    pub fn start(world: &World, node: &str) -> Daemon {
        let n = world.node(node).expect("node");
        let log = daemon_log(world, node);
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let config = n.config.to_string_lossy().into_owned();
        let process = world
            .spawn(
                node,
                CONVERGE,
                &["--config", &config, "run", "--verbose"],
                Stdio::from(file.try_clone().expect("dup")),
                Stdio::from(file),
            )
            .expect("daemon starts");
        Daemon {
            node: node.to_string(),
            log,
            process,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `kill -9` (what it was running goes on in its cgroup).
    pub fn kill9(&mut self) {
        self.process.kill9().expect("kill -9 the daemon");
    }
}

/// Where node `node`'s daemons write, one after the other.
pub fn daemon_log(world: &World, node: &str) -> PathBuf {
    world.node(node).expect("node").dir.join("daemon.out")
}

/// Every node's daemon log, each under its name.
pub fn logs(world: &World) -> String {
    world
        .nodes
        .iter()
        .map(|n| {
            let log = fs::read_to_string(daemon_log(world, &n.name)).unwrap_or_default();
            format!("--- {} ---\n{log}", n.name)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls until `done`, or panics with the daemons' logs.
pub fn until(what: &str, world: &World, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < HANG,
            "gave up waiting for {what}:\n{}",
            logs(world)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn role(world: &World, node: &str) -> Option<Role> {
    let all = world.drbd().ok()?;
    all.get(node)?.resource(RES).map(|r| r.role.clone())
}

/// Every powered-on node has the resource up, each of its connections Connected and its
/// peer's disk UpToDate, and its own disk UpToDate: replication runs everywhere. A diskless
/// node (a tiebreaker) is a diskless client instead, and its peers see it Diskless.
pub fn connected_everywhere(world: &World) -> bool {
    let diskless =
        |name: Option<&str>| name.is_some_and(|name| world.node(name).is_ok_and(|n| n.diskless));
    world.drbd().is_ok_and(|all| {
        all.values().all(|n| {
            n.powered_on
                && n.resource(RES).is_some_and(|r| {
                    r.devices.iter().all(|d| {
                        d.disk == DiskState::UpToDate || (d.disk == DiskState::Diskless && d.client)
                    }) && r.connections.iter().all(|c| {
                        let peer_disk = if diskless(c.name.as_deref()) {
                            DiskState::Diskless
                        } else {
                            DiskState::UpToDate
                        };
                        c.state == ConnectionState::Connected
                            && c.peer_devices.iter().all(|p| p.peer_disk == peer_disk)
                    })
                })
        })
    })
}

/// The mounts on the service's mount point in `node`, by mount id (none while it is off).
pub fn mounts_at_mnt(world: &World, node: &str) -> Vec<u32> {
    world
        .mounts(node)
        .map(|m| {
            m.iter()
                .filter(|m| m.mount_point() == world.mnt)
                .map(|m| m.mount_id)
                .collect()
        })
        .unwrap_or_default()
}

pub fn mounted(world: &World, node: &str) -> bool {
    !mounts_at_mnt(world, node).is_empty()
}

/// `path` as `node` sees it (its mounts are its own): through its holder's root.
pub fn on_node(world: &World, node: &str, path: &Path) -> Option<PathBuf> {
    let pid = world.node(node).ok()?.holder_pid()?;
    let relative = path.strip_prefix("/").ok()?;
    Some(Path::new(&format!("/proc/{pid}/root")).join(relative))
}

/// The container's private area, on the service's filesystem.
pub fn private_area(world: &World) -> PathBuf {
    world.mnt.join("vz/private/101")
}

/// The app's start script leaves `/var/run/foo` behind in the container (on the filesystem;
/// the simulated container empties its /var/run at each start, as a tmpfs would be).
pub fn app_running(world: &World, node: &str) -> bool {
    on_node(world, node, &private_area(world).join("var/run/foo")).is_some_and(|p| p.exists())
}

/// One look at every node, at one instant: every node's DRBD (one read of the world file),
/// the nodes whose mount of the filesystem was there throughout that read, and the pairs whose
/// data went separate ways.
pub struct Look {
    pub drbd: BTreeMap<String, NodeDrbd>,
    /// Nodes with the filesystem mounted while the world file was read: the node's mount table
    /// is read before and after the world file, and a mount counts only when the same mount
    /// (its id) is in both reads; a mount alone in one read is one being made or taken off
    /// around the sample.
    pub mounted: BTreeSet<String>,
    pub diverged: Vec<(String, String)>,
}

pub fn look(world: &World) -> Result<Look, String> {
    let before: BTreeMap<&str, Vec<u32>> = world
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), mounts_at_mnt(world, &n.name)))
        .collect();
    let drbd = world.drbd().map_err(|e| e.to_string())?;
    let diverged = world.diverged(RES).map_err(|e| e.to_string())?;
    let mounted = world
        .nodes
        .iter()
        .filter(|node| {
            let after = mounts_at_mnt(world, &node.name);
            before
                .get(node.name.as_str())
                .is_some_and(|b| b.iter().any(|id| after.contains(id)))
        })
        .map(|node| node.name.clone())
        .collect();
    Ok(Look {
        drbd,
        mounted,
        diverged,
    })
}

impl Look {
    /// The nodes whose resource is Primary.
    pub fn primaries(&self) -> Vec<&String> {
        self.drbd
            .iter()
            .filter(|(_, n)| n.resource(RES).is_some_and(|r| r.role == Role::Primary))
            .map(|(name, _)| name)
            .collect()
    }

    /// Whether DRBD reports quorum on every device of `node`'s resource (a resource that is
    /// not up, or a quorum not reported, is none).
    pub fn quorum(&self, node: &str) -> bool {
        self.drbd
            .get(node)
            .and_then(|n| n.resource(RES))
            .is_some_and(|r| {
                !r.devices.is_empty() && r.devices.iter().all(|d| d.quorum == Quorum::Yes)
            })
    }

    /// The rules but the one on Primaries: a mount on a node that is not Primary, a split
    /// brain.
    pub fn mount_and_split_violations(&self) -> Vec<String> {
        let mut found = Vec::new();
        for node in &self.mounted {
            let role = self
                .drbd
                .get(node)
                .and_then(|n| n.resource(RES))
                .map(|r| r.role.clone());
            if role != Some(Role::Primary) {
                let role = role.map_or("not up".to_string(), |r| r.to_string());
                found.push(format!(
                    "{node} has the filesystem mounted while its resource is {role}"
                ));
            }
        }
        for (a, b) in &self.diverged {
            found.push(format!(
                "split brain: the data of {a} and {b} went separate ways"
            ));
        }
        found
    }
}

/// One look at every node: what breaks the safety rules at this instant.
///
/// - Two Primaries: from one read of the world file, which holds every node at one instant.
/// - A node with the filesystem mounted while its resource is not Primary there (Secondary,
///   or not up: a demotion or a `down` under a mount, or a mount of a Secondary), counting a
///   mount there throughout the read of the world file ([`Look::mounted`]).
/// - A split brain: two nodes whose data went separate ways (both Primary while apart).
pub fn violations(world: &World) -> Result<Vec<String>, String> {
    let look = look(world)?;
    let mut found = Vec::new();
    let primaries = look.primaries();
    if primaries.len() > 1 {
        found.push(format!("two Primaries at once: {primaries:?}"));
    }
    found.extend(look.mount_and_split_violations());
    Ok(found)
}

/// What a checker saw while a scenario ran.
#[derive(Debug, Default)]
pub struct Seen {
    /// Each violation once, with when it was first seen (since the checker started).
    pub violations: Vec<(Duration, String)>,
    pub samples: u64,
    /// Samples that could not be taken (a file read failed), with the last reason.
    pub failed: u64,
    pub last_failure: Option<String>,
}

/// Runs `scenario` while a checker thread calls `sample` every `every`; returns what it saw.
/// `stop_early`, once set by the checker (a violation), may be read by the scenario to end
/// sooner. A panic of the scenario goes on after the checker has stopped.
pub fn checked_by<T>(
    sample: impl Fn() -> Result<Vec<String>, String> + Sync,
    every: Duration,
    violated: &AtomicBool,
    scenario: impl FnOnce() -> T,
) -> (T, Seen) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let checker = scope.spawn(|| {
            let start = Instant::now();
            let mut seen = Seen::default();
            while !stop.load(Ordering::SeqCst) {
                match sample() {
                    Ok(found) => {
                        for v in found {
                            if !seen.violations.iter().any(|(_, s)| *s == v) {
                                seen.violations.push((start.elapsed(), v));
                                violated.store(true, Ordering::SeqCst);
                            }
                        }
                        seen.samples += 1;
                    }
                    Err(e) => {
                        seen.failed += 1;
                        seen.last_failure = Some(e);
                    }
                }
                std::thread::sleep(every);
            }
            seen
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(scenario));
        stop.store(true, Ordering::SeqCst);
        let seen = checker.join().expect("checker");
        match result {
            Ok(value) => (value, seen),
            Err(panic) => {
                if !seen.violations.is_empty() {
                    eprintln!("the checker saw: {:?}", seen.violations);
                }
                std::panic::resume_unwind(panic)
            }
        }
    })
}

/// Runs `scenario` while a checker samples the world every 2 ms; panics with what it saw.
pub fn checked(world: &World, scenario: impl FnOnce()) {
    checked_with(world, violations, scenario);
}

/// [`checked`], with the rules `rules` says are broken at one instant.
pub fn checked_with(
    world: &World,
    rules: fn(&World) -> Result<Vec<String>, String>,
    scenario: impl FnOnce(),
) {
    let violated = AtomicBool::new(false);
    let ((), seen) = checked_by(
        || rules(world),
        Duration::from_millis(2),
        &violated,
        scenario,
    );
    assert!(seen.samples > 0, "the checker sampled nothing");
    assert!(
        seen.violations.is_empty(),
        "safety violated: {:?}\n{}",
        seen.violations,
        logs(world)
    );
}

/// The world's seed manifest, failing over between deb1 and deb2 instead of pinned to deb1,
/// with `extra` keys; and `config` added to every node's configuration.
pub fn fail_over(world: &World, extra: &str, config: &str) {
    let text = fs::read_to_string(&world.manifest).expect("the seed manifest");
    assert!(text.contains("node: deb1\n"), "{text}");
    let text = text.replace(
        "node: deb1\n",
        &format!("nodes: [deb1, deb2]\nfailover: auto\n{extra}"),
    );
    fs::write(&world.manifest, text).expect("write the manifest");
    for node in &world.nodes {
        let mut text = fs::read_to_string(&node.config).expect("node config");
        text.push_str(config);
        fs::write(&node.config, text).expect("node config");
    }
}

/// `converge status` on `node`.
pub fn status_of(world: &World, node: &str) -> String {
    let config = world
        .node(node)
        .expect("node")
        .config
        .to_string_lossy()
        .into_owned();
    let out = world
        .run(node, CONVERGE, &["--config", &config, "status"])
        .expect("status runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Cuts deb1 off from both peers, the tiebreaker's link first: cut the other way round, deb1
/// would keep quorum through the tiebreaker while apart from deb2, and write.
pub fn cut_off_deb1(world: &World) {
    world.cut("deb1", "tb").expect("cut deb1 from tb");
    world.cut("deb1", "deb2").expect("cut deb1 from deb2");
}

/// The service comes up on `node`, every other node stands by: Secondary, connected.
pub fn settled_on(world: &World, node: &str) {
    until(&format!("the service to run on {node}"), world, || {
        role(world, node) == Some(Role::Primary) && mounted(world, node) && app_running(world, node)
    });
    until("every other node to stand by, connected", world, || {
        world
            .nodes
            .iter()
            .filter(|n| n.name != node)
            .all(|n| role(world, &n.name) == Some(Role::Secondary) && !mounted(world, &n.name))
            && connected_everywhere(world)
    });
}
