//! Two and three nodes, each running its own `converge run` on the same manifest directory, on
//! the multi-node DRBD simulator (`converge_sim::world`): a node that stands by keeps DRBD up
//! and Secondary; a switchover is one edit of `node:`, carried out by the two daemons through
//! DRBD alone; a node that cannot stop keeps the service and the other waits.
//!
//! While the daemons work, a checker samples every node's role and mounts (from the
//! simulator's world file, every few milliseconds) and fails the test on two Primaries or a
//! mount on a node that is not Primary (see `support::world::violations`). Each test re-runs
//! itself as root in a private mount namespace; without root it says why it skips.

mod support;

use std::path::Path;

use std::fs;
use std::process::Stdio;

use converge_core::observe::drbd::{DiskState, Quorum, Role};
use converge_sim::sandbox::{SandboxContainer, seed_manifest_for};
use converge_sim::testing::in_world_namespace;
use converge_sim::world::{NodeSpec, World};

use support::CONVERGE;
use support::world::{
    Daemon, Guard, RES, checked, logs, mounted, role, settled_on, status_of, until,
};

fn marker(world: &World) -> std::path::PathBuf {
    world.mnt.join("marker")
}

fn switchover_both_ways(work: &Path, names: &[&str]) {
    let guard = Guard::new(World::create(work, Path::new(CONVERGE), names).expect("world"));
    let world = guard.read();
    let world = &*world;
    let (first, target) = (names[0], names[names.len() - 1]);
    let _daemons: Vec<Daemon> = names.iter().map(|n| Daemon::start(world, n)).collect();
    checked(world, || {
        // Standby first: the nodes that do not run the service bring DRBD up on their own.
        settled_on(world, first);
        // The daemon's view is written at most once a second: what status shows may lag the
        // node by that much.
        let stands_by = |status: &str| {
            status.contains("standby here")
                && status.contains(&format!("runs on: {first}"))
                && status.contains(&format!("peer {first} Primary, UpToDate"))
        };
        until(
            &format!("status on {target} to show the standby"),
            world,
            || stands_by(&status_of(world, target)),
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

        // The switchover: one commit changing `node:`, arriving as git-sync publishes it (a new
        // worktree, the link swapped, the old worktree deleted).
        world.publish("up", target).expect("manifest");
        settled_on(world, target);
        let read = world
            .run(target, "cat", &[&marker(world).to_string_lossy()])
            .expect("read");
        assert_eq!(String::from_utf8_lossy(&read.stdout), "before\n");
        // And back, by an edit of the manifest in place.
        world.set_state("up", first).expect("manifest");
        settled_on(world, first);
    });
    let log = logs(world);
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

/// Two diskful nodes and a diskless tiebreaker (`disk none`), a daemon on each: the service
/// moves deb1 → deb2 → deb1 while tb brings its DRBD up (a diskless client: no disk to
/// attach, nothing to mount) and stands by, Secondary, without a failure.
#[test]
fn a_switchover_both_ways_while_a_diskless_tiebreaker_stands_by() {
    in_world_namespace(
        "a_switchover_both_ways_while_a_diskless_tiebreaker_stands_by",
        |work| {
            let nodes = [
                NodeSpec::diskful("deb1"),
                NodeSpec::diskful("deb2"),
                NodeSpec::diskless("tb"),
            ];
            let guard =
                Guard::new(World::create_with(work, Path::new(CONVERGE), &nodes).expect("world"));
            let world = guard.read();
            let world = &*world;
            let daemons: Vec<Daemon> = ["deb1", "deb2", "tb"]
                .iter()
                .map(|n| Daemon::start(world, n))
                .collect();
            let tb_stands_by = || {
                let all = world.drbd().expect("world state");
                let res = all["tb"].resource(RES).expect("tb has data up");
                assert_eq!(res.role, Role::Secondary);
                assert_eq!(res.devices[0].disk, DiskState::Diskless);
                assert!(
                    res.devices[0].client && res.devices[0].quorum == Quorum::Yes,
                    "{res:?}"
                );
                assert!(world.stands_by("tb"));
                assert!(!mounted(world, "tb"));
            };
            checked(world, || {
                settled_on(world, "deb1");
                tb_stands_by();
                // The view may lag the node by up to a second (written at most once a second).
                until("status on tb to show the standby", world, || {
                    let status = status_of(world, "tb");
                    status.contains("standby here") && status.contains("runs on: deb1")
                });
                world.publish("up", "deb2").expect("manifest");
                settled_on(world, "deb2");
                tb_stands_by();
                world.set_state("up", "deb1").expect("manifest");
                settled_on(world, "deb1");
                tb_stands_by();
            });
            let log = logs(world);
            assert!(!log.contains("failed:"), "{log}");
            assert!(!log.contains(" ERROR "), "{log}");
            // tb brought its DRBD up itself (no attach: drbdadm knows it has no disk), and did
            // nothing else: what it logged of the service's resources is that one action and
            // the observation that the rest was down already.
            let tb = daemons[2].log();
            assert!(tb.contains("DRBD#0  INFO    drbdadm up data"), "{tb}");
            for line in tb.lines().filter(|l| {
                ["DRBD#", "FS#", "VZ", "APP#"]
                    .iter()
                    .any(|tag| l.starts_with(tag))
            }) {
                assert!(
                    line.ends_with("drbdadm up data")
                        || line.ends_with("is already unmounted")
                        || line.ends_with("is already down"),
                    "tb did more than stand by: {line}\n{tb}"
                );
            }
        },
    );
}

#[test]
fn a_node_that_cannot_stop_keeps_the_service_and_the_other_waits() {
    in_world_namespace(
        "a_node_that_cannot_stop_keeps_the_service_and_the_other_waits",
        |work| {
            let guard = Guard::new(
                World::create(work, Path::new(CONVERGE), &["deb1", "deb2"]).expect("world"),
            );
            let world = guard.read();
            let world = &*world;
            let daemons: Vec<Daemon> = ["deb1", "deb2"]
                .iter()
                .map(|n| Daemon::start(world, n))
                .collect();
            checked(world, || {
                settled_on(world, "deb1");
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
                until("deb1 to report that it cannot unmount", world, || {
                    status_of(world, "deb1").contains("target is busy after")
                });
                until("deb2 to say it waits for deb1", world, || {
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
                settled_on(world, "deb2");
            });
            let log = daemons[1].log();
            assert!(
                !log.contains("failed:"),
                "deb2 waited, it never failed:\n{log}"
            );
        },
    );
}
