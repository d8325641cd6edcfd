//! Two and three nodes, each running its own `converge run` on the same manifest directory, on
//! the multi-node DRBD simulator (`converge_sim::world`): a node that stands by keeps DRBD up
//! and Secondary; a switchover is one edit of `node:`, carried out by the two daemons through
//! DRBD alone; a node that cannot stop keeps the service and the other waits.
//!
//! While the daemons work, a checker samples every node's role and mounts (from the
//! simulator's world file, every few milliseconds) and fails the test on two Primaries or a
//! mount on a node that is not Primary. Each test re-runs itself as root in a private mount
//! namespace; without root it says why it skips.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use converge_core::observe::drbd::{ConnectionState, Role};
use converge_sim::sandbox::{SandboxContainer, seed_manifest_for};
use converge_sim::testing::in_world_namespace;
use converge_sim::world::{NodeProcess, World};

const CONVERGE: &str = env!("CARGO_BIN_EXE_converge");
const RES: &str = "data";

/// A hang guard, not a measure.
const HANG: Duration = Duration::from_secs(120);

/// A world, torn down at the end; teardown problems fail a test that passed.
struct Guard(World);

impl Drop for Guard {
    fn drop(&mut self) {
        let problems = self.0.teardown();
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("world teardown: {problems:?}");
        }
    }
}

/// One node's `converge run`, its output in a file.
struct Daemon {
    node: String,
    log: std::path::PathBuf,
    /// Killed when the test ends.
    _process: NodeProcess,
}

impl Daemon {
    fn start(world: &World, node: &str) -> Daemon {
        let n = world.node(node).expect("node");
        let log = n.dir.join("daemon.out");
        let file = fs::File::create(&log).expect("log file");
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
            _process: process,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn logs(daemons: &[&Daemon]) -> String {
    daemons
        .iter()
        .map(|d| format!("--- {} ---\n{}", d.node, d.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls until `done`, or panics with the daemons' logs.
fn until(what: &str, daemons: &[&Daemon], mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < HANG,
            "gave up waiting for {what}:\n{}",
            logs(daemons)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn role(world: &World, node: &str) -> Option<Role> {
    let all = world.drbd().ok()?;
    all.get(node)?.resource(RES).map(|r| r.role.clone())
}

fn connected_everywhere(world: &World) -> bool {
    world.drbd().is_ok_and(|all| {
        all.values().all(|n| {
            n.resource(RES).is_some_and(|r| {
                r.connections
                    .iter()
                    .all(|c| c.state == ConnectionState::Connected)
            })
        })
    })
}

fn mounted(world: &World, node: &str) -> bool {
    world
        .mounts(node)
        .is_ok_and(|m| m.iter().any(|m| m.mount_point() == world.mnt))
}

/// `path` as `node` sees it (its mounts are its own): through its holder's root.
fn on_node(world: &World, node: &str, path: &Path) -> Option<std::path::PathBuf> {
    let pid = world.node(node).ok()?.holder_pid()?;
    let relative = path.strip_prefix("/").ok()?;
    Some(Path::new(&format!("/proc/{pid}/root")).join(relative))
}

/// The app's start script leaves `/var/run/foo` behind in the container (on the filesystem).
fn app_running(world: &World, node: &str) -> bool {
    on_node(world, node, &world.mnt.join("vz/private/101/var/run/foo")).is_some_and(|p| p.exists())
}

/// What the checker saw go wrong, if anything.
fn violations(world: &World) -> Vec<String> {
    let Ok(all) = world.drbd() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let primaries: Vec<&String> = all
        .iter()
        .filter(|(_, n)| n.resource(RES).is_some_and(|r| r.role == Role::Primary))
        .map(|(name, _)| name)
        .collect();
    if primaries.len() > 1 {
        found.push(format!("two Primaries: {primaries:?}"));
    }
    for node in &world.nodes {
        let primary = all
            .get(&node.name)
            .and_then(|n| n.resource(RES))
            .is_some_and(|r| r.role == Role::Primary);
        if mounted(world, &node.name) && !primary {
            found.push(format!(
                "{} mounts the filesystem while not Primary",
                node.name
            ));
        }
    }
    found
}

/// Runs `scenario` while a checker samples the world; panics with what the checker saw.
fn checked(world: &World, scenario: impl FnOnce()) {
    let stop = AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let checker = scope.spawn(|| {
            let mut seen = Vec::new();
            let mut samples = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for v in violations(world) {
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (seen, samples)
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(scenario));
        stop.store(true, Ordering::SeqCst);
        let seen = checker.join().expect("checker");
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        seen
    });
    assert!(seen.1 > 0, "the checker sampled nothing");
    assert!(seen.0.is_empty(), "safety violated: {:?}", seen.0);
}

fn marker(world: &World) -> std::path::PathBuf {
    world.mnt.join("marker")
}

/// The service comes up on `node`, every other node stands by: Secondary, connected.
fn settled_on(world: &World, node: &str, daemons: &[&Daemon]) {
    until(&format!("the service to run on {node}"), daemons, || {
        role(world, node) == Some(Role::Primary) && mounted(world, node) && app_running(world, node)
    });
    until("every other node to stand by, connected", daemons, || {
        world
            .nodes
            .iter()
            .filter(|n| n.name != node)
            .all(|n| role(world, &n.name) == Some(Role::Secondary) && !mounted(world, &n.name))
            && connected_everywhere(world)
    });
}

fn switchover_both_ways(work: &Path, names: &[&str]) {
    let world = Guard(World::create(work, Path::new(CONVERGE), names).expect("world"));
    let world = &world.0;
    let (first, target) = (names[0], names[names.len() - 1]);
    let daemons: Vec<Daemon> = names.iter().map(|n| Daemon::start(world, n)).collect();
    let all: Vec<&Daemon> = daemons.iter().collect();
    checked(world, || {
        // Standby first: the nodes that do not run the service bring DRBD up on their own.
        settled_on(world, first, &all);
        let status = world
            .run(
                target,
                CONVERGE,
                &[
                    "--config",
                    &world.node(target).expect("node").config.to_string_lossy(),
                    "status",
                ],
            )
            .expect("status runs");
        let status = String::from_utf8_lossy(&status.stdout).into_owned();
        assert!(
            status.contains("standby here")
                && status.contains(&format!("runs on: {first}"))
                && status.contains(&format!("peer {first} Primary, UpToDate")),
            "{status}"
        );
        // Data written where it runs is read where it moves.
        let write = world
            .run(
                first,
                "sh",
                &[
                    "-c",
                    &format!("echo before > {} && sync", marker(world).display()),
                ],
            )
            .expect("write");
        assert!(write.status.success(), "{write:?}");

        // The switchover: one edit of `node:`.
        world.set_state("up", target).expect("manifest");
        settled_on(world, target, &all);
        let read = world
            .run(target, "cat", &[&marker(world).to_string_lossy()])
            .expect("read");
        assert_eq!(String::from_utf8_lossy(&read.stdout), "before\n");
        // And back.
        world.set_state("up", first).expect("manifest");
        settled_on(world, first, &all);
    });
    let log = logs(&all);
    // The node that gained the service waited for the other to step down, and never failed.
    assert!(!log.contains("failed:"), "{log}");
    assert!(!log.contains(" ERROR "), "{log}");
}

#[test]
fn two_nodes_switch_over_both_ways_by_editing_node() {
    in_world_namespace("two_nodes_switch_over_both_ways_by_editing_node", |work| {
        switchover_both_ways(work, &["deb1", "deb2"]);
    });
}

#[test]
fn three_nodes_switch_over_both_ways_and_the_third_stands_by() {
    in_world_namespace(
        "three_nodes_switch_over_both_ways_and_the_third_stands_by",
        |work| {
            switchover_both_ways(work, &["deb1", "deb2", "deb3"]);
        },
    );
}

fn status_of(world: &World, node: &str) -> String {
    let config = world.node(node).expect("node").config.clone();
    let out = world
        .run(
            node,
            CONVERGE,
            &["--config", &config.to_string_lossy(), "status"],
        )
        .expect("status runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_node_that_cannot_stop_keeps_the_service_and_the_other_waits() {
    in_world_namespace(
        "a_node_that_cannot_stop_keeps_the_service_and_the_other_waits",
        |work| {
            let world =
                Guard(World::create(work, Path::new(CONVERGE), &["deb1", "deb2"]).expect("world"));
            let world = &world.0;
            let daemons: Vec<Daemon> = ["deb1", "deb2"]
                .iter()
                .map(|n| Daemon::start(world, n))
                .collect();
            let all: Vec<&Daemon> = daemons.iter().collect();
            checked(world, || {
                settled_on(world, "deb1", &all);
                // Something converge does not manage holds the filesystem on deb1
                // (`umount_kill` is off): deb1 cannot unmount, so it must not demote.
                let mnt = world.mnt.to_string_lossy().into_owned();
                let mut busy = world
                    .spawn(
                        "deb1",
                        "sh",
                        &["-c", &format!("cd {mnt} && exec sleep 600")],
                        Stdio::null(),
                        Stdio::null(),
                    )
                    .expect("a process holds the mount");
                // Moved to deb2, with a short umount timeout so that deb1 gives up soon.
                let manifest = seed_manifest_for("up", "deb2", &world.mnt, &SandboxContainer::Vz)
                    .replace(
                        "    options: defaults\n",
                        "    options: defaults\n    timeout: 3s\n",
                    );
                assert!(manifest.contains("timeout: 3s"), "{manifest}");
                fs::write(&world.manifest, manifest).expect("manifest");
                until("deb1 to report that it cannot unmount", &all, || {
                    status_of(world, "deb1").contains("target is busy after")
                });
                until("deb2 to say it waits for deb1", &all, || {
                    status_of(world, "deb2").contains("waiting: drbd#0: peer deb1 is Primary")
                });
                // Still: deb1 Primary and mounted, deb2 Secondary and not mounted.
                assert_eq!(role(world, "deb1"), Some(Role::Primary));
                assert!(mounted(world, "deb1"));
                assert_eq!(role(world, "deb2"), Some(Role::Secondary));
                assert!(!mounted(world, "deb2"));
                let deb1 = status_of(world, "deb1");
                assert!(
                    deb1.contains("failed:") && deb1.contains("next retry"),
                    "{deb1}"
                );
                // The holder goes: deb1's next try stops the stack and deb2 takes over.
                busy.kill9().expect("kill the holder");
                settled_on(world, "deb2", &all);
            });
            let log = all[1].log();
            assert!(
                !log.contains("failed:"),
                "deb2 waited, it never failed:\n{log}"
            );
        },
    );
}
