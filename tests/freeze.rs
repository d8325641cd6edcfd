//! `on_quorum_loss: freeze` on the multi-node DRBD simulator with a real LXC container: two
//! diskful nodes and a diskless tiebreaker (`quorum majority; on-no-quorum suspend-io;
//! on-suspended-primary-outdated force-secondary`), a daemon on each, the service failing over
//! between deb1 and deb2. When deb1, which holds it, is cut off from both peers, its container
//! is frozen (lxc-freeze) and the rest kept: DRBD stays Primary and the filesystem mounted
//! while DRBD holds the I/O. A short cut ends with quorum back before deb2 takes over: deb1
//! thaws and runs on, nothing restarted. A long one ends with deb2 running the service; once
//! the nodes meet again DRBD forces deb1 to Secondary, and converge thaws and stops what is
//! left there. A checker samples every node throughout: never two Primaries that can write
//! (a frozen holder's I/O is suspended), never a split brain.
//!
//! LXC keeps container configurations in the host's lxcpath: each test names its container
//! after itself and the test binary's pid (`cvf-TAG-PID`); the world destroys it, and the
//! parent process destroys any left behind (a killed child).

mod support;

use std::fs;
use std::path::Path;
use std::time::Instant;

use converge_core::observe::drbd::Role;
use converge_sim::sandbox::SandboxContainer;
use converge_sim::testing::in_world_namespace;
use converge_sim::world::{FREEZE_QUORUM_OPTIONS, NodeSpec, World, WorldSetup};

use support::CONVERGE;
use support::world::{
    Daemon, Guard, RES, checked_with, connected_everywhere, cut_off_deb1, fail_over, logs, look,
    mounted, on_node, role, status_of, until,
};

const PREFIX: &str = "cvf-";

/// Runs `scenario` in a world namespace, with the LXC programs checked first and the
/// containers swept afterwards.
fn freeze_test(test: &str, scenario: fn(&Path)) {
    support::lxc::lxc_test(test, PREFIX, None, in_world_namespace, scenario);
}

/// The world, the LXC container's name, and a daemon on each node; the service runs on deb1.
/// `config` is added to each node's configuration.
fn started(work: &Path, tag: &str, config: &str) -> (Guard, String, Vec<Daemon>) {
    let name = support::lxc::container_name(PREFIX, tag);
    let nodes = [
        NodeSpec::diskful("deb1"),
        NodeSpec::diskful("deb2"),
        NodeSpec::diskless("tb"),
    ];
    let setup = WorldSetup {
        container: SandboxContainer::Lxc { name: name.clone() },
        drbd_options: FREEZE_QUORUM_OPTIONS.to_string(),
        res_files: false,
    };
    let world = World::create_setup(work, Path::new(CONVERGE), &nodes, setup).expect("world");
    let guard = Guard::new(world);
    let daemons = {
        let world = guard.read();
        fail_over(&world, "on_quorum_loss: freeze\n", config);
        let daemons = ["deb1", "deb2", "tb"]
            .map(|n| Daemon::start(&world, n))
            .into();
        until("the service to run on deb1", &world, || {
            runs_on(&world, "deb1")
        });
        until("deb2 and tb to stand by", &world, || {
            ["deb2", "tb"]
                .iter()
                .all(|n| role(&world, n) == Some(Role::Secondary) && !mounted(&world, n))
                && connected_everywhere(&world)
        });
        daemons
    };
    (guard, name, daemons)
}

/// `node` runs the service: Primary, mounted, the app started in a running container.
fn runs_on(world: &World, node: &str) -> bool {
    role(world, node) == Some(Role::Primary)
        && mounted(world, node)
        && world.app_running_on(node)
        && container_state(world, node).as_deref() == Some("RUNNING")
}

fn container_state(world: &World, node: &str) -> Option<String> {
    let SandboxContainer::Lxc { name } = &world.container else {
        return None;
    };
    world.lxc_state(node, name)
}

/// How often the app's start script ran on the filesystem as `node` sees it.
fn starts(world: &World, node: &str) -> usize {
    let SandboxContainer::Lxc { name } = &world.container else {
        return 0;
    };
    let log = converge_sim::sandbox::lxc_rootfs(&world.mnt, name).join("var/log/foo.starts");
    on_node(world, node, &log)
        .and_then(|p| fs::read_to_string(p).ok())
        .map_or(0, |t| t.lines().count())
}

/// What breaks the rules at one instant when a holder freezes: two Primaries that can both
/// write (a frozen holder's I/O is suspended by DRBD: it is Primary and cannot write), or a
/// split brain. A mount on a node DRBD itself demoted is what converge then cleans up; the
/// scenarios check it ends.
fn violations(world: &World) -> Result<Vec<String>, String> {
    let look = look(world)?;
    let writable: Vec<&String> = look
        .drbd
        .iter()
        .filter(|(_, n)| {
            n.resource(RES)
                .is_some_and(|r| r.role == Role::Primary && !r.suspended)
        })
        .map(|(name, _)| name)
        .collect();
    let mut found = Vec::new();
    if writable.len() > 1 {
        found.push(format!("two Primaries that can write: {writable:?}"));
    }
    for (a, b) in &look.diverged {
        found.push(format!("split brain: {a} and {b} went separate ways"));
    }
    Ok(found)
}

/// deb1 froze the service: its container frozen, its DRBD Primary with I/O suspended, the
/// filesystem still mounted.
fn frozen_on_deb1(world: &World) -> bool {
    container_state(world, "deb1").as_deref() == Some("FROZEN")
        && role(world, "deb1") == Some(Role::Primary)
        && mounted(world, "deb1")
}

#[test]
fn a_holder_frozen_for_a_moment_thaws_and_runs_on_without_a_restart() {
    freeze_test(
        "a_holder_frozen_for_a_moment_thaws_and_runs_on_without_a_restart",
        |work| {
            // deb2 waits its rank (1 × failover_delay) before it promotes: long enough for
            // the cut to end first.
            let (guard, _name, mut daemons) = started(work, "short", "failover_delay: 30s\n");
            let world = guard.read();
            assert_eq!(starts(&world, "deb1"), 1);
            let frozen_status = || {
                let status = status_of(&world, "deb1");
                status.contains("converged: yes")
                    && status.contains("failover: holds the service frozen: DRBD says this node's partition lost quorum (on_quorum_loss: freeze)")
            };
            checked_with(&world, violations, || {
                cut_off_deb1(&world);
                until("deb1 to freeze the service", &world, || {
                    frozen_on_deb1(&world)
                });
                until(
                    "deb1's status to say it holds the service frozen",
                    &world,
                    frozen_status,
                );
                // A converge restarted meanwhile knows the freeze is its own (its record):
                // it keeps it, and thaws it when quorum returns.
                daemons[0].kill9();
                daemons[0] = Daemon::start(&world, "deb1");
                let pid = format!("daemon: pid {},", daemons[0].pid());
                until(
                    "the new daemon on deb1 to find the service frozen",
                    &world,
                    || status_of(&world, "deb1").contains(&pid) && frozen_status(),
                );
                assert!(frozen_on_deb1(&world), "{}", logs(&world));
                world.heal("deb1", "tb").expect("heal deb1–tb");
                world.heal("deb1", "deb2").expect("heal deb1–deb2");
                until("deb1 to thaw and run on", &world, || {
                    runs_on(&world, "deb1")
                });
                until("every node to connect", &world, || {
                    connected_everywhere(&world)
                });
            });
            // Thawed, not restarted; deb2 never promoted.
            assert_eq!(starts(&world, "deb1"), 1);
            assert_eq!(role(&world, "deb2"), Some(Role::Secondary));
            // The record goes right after the thaw: the container may run before it is logged.
            until("deb1 to forget its freeze record", &world, || {
                logs(&world).contains("forget converge's freeze record")
            });
            let log = logs(&world);
            assert!(log.contains("failover: holds the service frozen"), "{log}");
            assert!(log.contains("lxc-freeze -n cvf-short-"), "{log}");
            assert!(log.contains("lxc-unfreeze -n cvf-short-"), "{log}");
            assert!(log.contains("forget converge's freeze record"), "{log}");
            assert!(!log.contains(" ERROR "), "{log}");
        },
    );
}

#[test]
fn a_frozen_holder_the_other_side_took_over_from_is_demoted_by_drbd_then_thawed_and_stopped() {
    freeze_test(
        "a_frozen_holder_the_other_side_took_over_from_is_demoted_by_drbd_then_thawed_and_stopped",
        |work| {
            let (guard, _name, _daemons) = started(work, "long", "");
            let world = guard.read();
            let cut = Instant::now();
            checked_with(&world, violations, || {
                cut_off_deb1(&world);
                until("deb2 to take the service over", &world, || {
                    runs_on(&world, "deb2")
                });
                // deb1 kept everything, frozen: DRBD held its I/O all along.
                assert!(frozen_on_deb1(&world), "{}", logs(&world));
                eprintln!("deb2 ran the service {:?} after the cut", cut.elapsed());
                // The nodes meet again: DRBD forces deb1 to Secondary (deb2's data is newer),
                // and converge thaws deb1's container and stops it, then unmounts.
                world.heal("deb1", "tb").expect("heal deb1–tb");
                world.heal("deb1", "deb2").expect("heal deb1–deb2");
                until("deb1 to stand by, its container stopped", &world, || {
                    role(&world, "deb1") == Some(Role::Secondary)
                        && !mounted(&world, "deb1")
                        && container_state(&world, "deb1").as_deref() == Some("STOPPED")
                });
                until("every node to connect", &world, || {
                    connected_everywhere(&world)
                });
                assert!(runs_on(&world, "deb2"), "{}", logs(&world));
            });
            until(
                "deb1's status to say deb2 holds the service",
                &world,
                || {
                    status_of(&world, "deb1")
                        .contains("failover: standby here: deb2 holds it (Primary)")
                },
            );
            let log = logs(&world);
            assert!(log.contains("failover: holds the service frozen"), "{log}");
            assert!(
                log.contains("record that the container is thawed to be stopped"),
                "{log}"
            );
            // Its apps' I/O fails after DRBD's demotion: their stop scripts are not run.
            assert!(log.contains("not stopped by its scripts"), "{log}");
            assert!(!log.contains(" ERROR "), "{log}");
        },
    );
}
