//! DRBD connections on two simulated nodes, a daemon on each: a connection dropped by hand is
//! reconnected by itself; a split brain is reported and left alone.
//!
//! The split brain: two simulated nodes without quorum, the
//! seed service pinned to deb1, a daemon on each. While their link is cut, deb1 writes (it
//! runs the service) and deb2 is promoted by hand (its daemon demotes it again, too late: it
//! wrote). When the link is back, DRBD finds the split brain, runs its handlers and drops the
//! connection on both sides. Neither daemon reconnects it (a `connect` would only find the
//! same split brain, and converge never chooses whose writes to discard); both say so in
//! their log and status. Resolved by hand as docs/operations.md says, the nodes connect, and
//! the daemons forget it. Each test re-runs itself as root in a private mount namespace.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use converge_core::observe::drbd::{ConnectionState, Role};
use converge_sim::sandbox::SandboxContainer;
use converge_sim::testing::in_world_namespace;
use converge_sim::world::{NodeSpec, World, WorldSetup};

use support::CONVERGE;
use support::world::{
    Daemon, Guard, RES, connected_everywhere, logs, role, settled_on, status_of, until,
};

/// The state of `node`'s connection to `peer`.
fn connection(world: &World, node: &str, peer: &str) -> Option<ConnectionState> {
    let all = world.drbd().ok()?;
    let res = all.get(node)?.resource(RES)?.clone();
    res.connections
        .iter()
        .find(|c| c.name.as_deref() == Some(peer))
        .map(|c| c.state.clone())
}

fn standalone_both_ways(world: &World) -> bool {
    connection(world, "deb1", "deb2") == Some(ConnectionState::StandAlone)
        && connection(world, "deb2", "deb1") == Some(ConnectionState::StandAlone)
}

/// Two nodes set up as `setup` says, a daemon on each, the seed service running on deb1.
fn running_on_deb1(work: &Path, setup: WorldSetup) -> (Guard, Vec<Daemon>) {
    let nodes = [NodeSpec::diskful("deb1"), NodeSpec::diskful("deb2")];
    let guard =
        Guard::new(World::create_setup(work, Path::new(CONVERGE), &nodes, setup).expect("world"));
    let daemons = {
        let world = guard.read();
        let daemons = ["deb1", "deb2"]
            .iter()
            .map(|n| Daemon::start(&world, n))
            .collect();
        settled_on(&world, "deb1");
        daemons
    };
    (guard, daemons)
}

/// Runs `drbdadm ARGS` on `node`, which must succeed.
fn drbdadm(world: &World, node: &str, args: &[&str]) {
    world
        .checked(
            node,
            &format!("drbdadm {}", args.join(" ")),
            "drbdadm",
            args,
        )
        .expect("drbdadm");
}

#[test]
fn a_split_brain_is_reported_never_reconnected_and_forgotten_once_resolved_by_hand() {
    in_world_namespace(
        "a_split_brain_is_reported_never_reconnected_and_forgotten_once_resolved_by_hand",
        |work| {
            // No quorum: a node cut off goes on writing, as DRBD lets it.
            let setup = WorldSetup {
                container: SandboxContainer::Vz,
                drbd_options: "auto-promote no;".to_string(),
                res_files: false,
            };
            let (guard, _daemons) = running_on_deb1(work, setup);
            let world = guard.read();

            world.cut("deb1", "deb2").expect("cut");
            drbdadm(&world, "deb2", &["primary", RES]);
            until("deb2's daemon to demote it again", &world, || {
                role(&world, "deb2") == Some(Role::Secondary)
            });
            world.heal("deb1", "deb2").expect("heal");
            until("DRBD to drop the connection on both sides", &world, || {
                standalone_both_ways(&world)
            });
            until("both daemons to say it", &world, || {
                let log = logs(&world);
                log.matches("split brain with").count() >= 2
                    && ["deb1", "deb2"]
                        .iter()
                        .all(|n| status_of(&world, n).contains("SPLIT BRAIN since"))
            });
            // Left alone: no reconnection, on either side, for a while.
            let since = Instant::now();
            while since.elapsed() < Duration::from_secs(3) {
                assert!(standalone_both_ways(&world), "{}", logs(&world));
                std::thread::sleep(Duration::from_millis(50));
            }
            let log = logs(&world);
            assert!(!log.contains("drbdadm connect"), "{log}");
            assert!(
                log.contains(
                    "resource data: split brain with deb2: both sides wrote what the other has not"
                ) && log.contains(
                    "resource data: split brain with deb1: both sides wrote what the other has not"
                ),
                "{log}"
            );
            assert!(
                log.contains("never chooses whose writes to discard"),
                "{log}"
            );
            assert!(world.runs_on("deb1"), "deb1 still runs the service\n{log}");

            // Resolved by hand: deb2 gives its writes up.
            drbdadm(&world, "deb2", &["connect", "--discard-my-data", RES]);
            drbdadm(&world, "deb1", &["connect", RES]);
            until("the nodes to connect and resync", &world, || {
                connected_everywhere(&world)
            });
            until("both daemons to forget it", &world, || {
                let log = logs(&world);
                log.matches("the split brain is resolved").count() == 2
                    && ["deb1", "deb2"]
                        .iter()
                        .all(|n| !status_of(&world, n).contains("SPLIT BRAIN"))
            });
            settled_on(&world, "deb1");
        },
    );
}

/// A connection dropped without a split brain (`drbdadm disconnect` by hand, here) is no
/// business of a person: the daemon reconnects it by itself.
#[test]
fn a_connection_dropped_by_hand_is_reconnected_by_itself() {
    in_world_namespace(
        "a_connection_dropped_by_hand_is_reconnected_by_itself",
        |work| {
            let (guard, _daemons) = running_on_deb1(work, WorldSetup::default());
            let world = guard.read();
            drbdadm(&world, "deb2", &["disconnect", RES]);
            until("deb2's daemon to reconnect", &world, || {
                logs(&world).contains("drbdadm connect data") && connected_everywhere(&world)
            });
            let log = logs(&world);
            assert!(!log.contains("split brain"), "{log}");
            settled_on(&world, "deb1");
        },
    );
}
