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

use converge_sim::testing::in_world_namespace;
use converge_sim::world::World;

use support::CONVERGE;
use support::world::{Daemon, Guard, checked, logs, settled_on};

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
        settled_on(world, target);
        let read = world
            .run(target, "cat", &[&marker(world).to_string_lossy()])
            .expect("read");
        assert_eq!(String::from_utf8_lossy(&read.stdout), "before\n");
        // And back.
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
