//! Automatic failover on DRBD quorum (`nodes:` with `failover: auto`), on the multi-node DRBD
//! simulator: two diskful nodes and a diskless tiebreaker (`quorum majority; on-no-quorum
//! io-error`), a daemon on each. The service runs on the first listed node; when that node
//! loses power, or is cut off from both peers, the other takes the service over, with no edit
//! and no message between the nodes; when it comes back it stands by (`failback: never`). A
//! checker samples every node throughout and fails the test on two Primaries, a mount on a
//! node that is not Primary, or a split brain. Each test re-runs itself as root in a private
//! mount namespace; without root it says why it skips.

mod support;

use std::fs;
use std::path::Path;
use std::time::Instant;

use converge_core::observe::drbd::{ReplicationState, Role};
use converge_sim::testing::in_world_namespace;
use converge_sim::world::{NodeSpec, World};

use support::CONVERGE;
use support::world::{
    Daemon, Guard, RES, app_running, checked, connected_everywhere, cut_off_deb1, fail_over, logs,
    mounted, role, settled_on, status_of, until,
};

/// Three nodes (deb1 and deb2 with data, tb a diskless tiebreaker), the service failing over
/// between deb1 and deb2 (`extra` manifest keys), running on deb1, a daemon on each node, each
/// node's configuration with `config` added.
fn started(work: &Path, extra: &str, config: &str) -> (Guard, Vec<Daemon>) {
    let nodes = [
        NodeSpec::diskful("deb1"),
        NodeSpec::diskful("deb2"),
        NodeSpec::diskless("tb"),
    ];
    let guard = Guard::new(World::create_with(work, Path::new(CONVERGE), &nodes).expect("world"));
    let daemons = {
        let world = guard.read();
        fail_over(&world, extra, config);
        let daemons = ["deb1", "deb2", "tb"]
            .map(|n| Daemon::start(&world, n))
            .into();
        checked(&world, || settled_on(&world, "deb1"));
        until("deb2's status to say it stands by for deb1", &world, || {
            let status = status_of(&world, "deb2");
            status.contains("(desired up, fails over: deb1, deb2; standby here)")
                && status.contains("runs on: deb1")
                && status.contains("failover: standby here: deb1 holds it (Primary)")
        });
        daemons
    };
    (guard, daemons)
}

/// deb1 loses power; deb2 must take the service over.
/// deb1 loses power; deb2 must take the service over, after waiting `waits` (its rank's delay).
fn power_cut_on_deb1(guard: &Guard, waits: &str) {
    guard.write().power_off("deb1").expect("power off deb1");
    let world = guard.read();
    checked(&world, || {
        until("deb2 to take the service over", &world, || {
            runs_on(&world, "deb2")
        });
        until("tb to stand by", &world, || {
            role(&world, "tb") == Some(Role::Secondary)
        });
    });
    let log = logs(&world);
    assert!(
        log.contains(&format!(
            "failover: this node may take the service; waiting {waits} (listed 2nd)"
        )),
        "{log}"
    );
}

/// Waits for `converge status` on deb1 to say deb2 holds the service: the daemon's view is
/// written when its reconcile ends, a moment after the node settled.
fn deb1_says_it_stands_by_for_deb2(world: &World) {
    until("deb1's status to say it stands by for deb2", world, || {
        status_of(world, "deb1").contains("failover: standby here: deb2 holds it (Primary)")
    });
}

/// `node` runs the service: Primary, mounted, the app started.
fn runs_on(world: &World, node: &str) -> bool {
    role(world, node) == Some(Role::Primary) && mounted(world, node) && app_running(world, node)
}

#[test]
fn the_survivor_takes_the_service_when_its_node_loses_power_and_keeps_it_when_it_returns() {
    in_world_namespace(
        "the_survivor_takes_the_service_when_its_node_loses_power_and_keeps_it_when_it_returns",
        |work| {
            // A shorter delay than the default, as a node configuration sets it.
            let (guard, mut daemons) = started(work, "", "failover_delay: 300ms\n");
            power_cut_on_deb1(&guard, "300ms");
            guard.write().power_on("deb1").expect("power on deb1");
            let world = guard.read();
            daemons.push(Daemon::start(&world, "deb1"));
            checked(&world, || {
                until("deb1 to come back and connect", &world, || {
                    connected_everywhere(&world)
                });
                // failback: never — deb1 stands by, the service stays on deb2.
                settled_on(&world, "deb2");
            });
            deb1_says_it_stands_by_for_deb2(&world);
            let log = logs(&world);
            assert!(!log.contains(" ERROR "), "{log}");
            // The world's resource has the options failover needs: no warning about them.
            assert!(
                !log.contains("runs with auto-promote") && !log.contains("runs with on-no-quorum"),
                "{log}"
            );
        },
    );
}

#[test]
fn with_failback_preferred_the_service_moves_back_once_its_node_returns() {
    in_world_namespace(
        "with_failback_preferred_the_service_moves_back_once_its_node_returns",
        |work| {
            let (guard, mut daemons) = started(work, "failback: preferred\n", "");
            power_cut_on_deb1(&guard, "1s");
            guard.write().power_on("deb1").expect("power on deb1");
            let world = guard.read();
            daemons.push(Daemon::start(&world, "deb1"));
            // deb2 gives it back once deb1 is connected and UpToDate: a switchover.
            checked(&world, || settled_on(&world, "deb1"));
            let log = logs(&world);
            assert!(!log.contains(" ERROR "), "{log}");
        },
    );
}

/// Rewrites the failover manifest in force with `state`, as a commit does (a new file renamed
/// over it).
fn commit_state(world: &World, state: &str) {
    let text = fs::read_to_string(&world.manifest).expect("the manifest");
    let (before, after) = if state == "down" {
        ("state: up\n", "state: down\n")
    } else {
        ("state: down\n", "state: up\n")
    };
    assert!(text.contains(before), "{text}");
    let staged = world.manifest.with_file_name(".commit.new");
    fs::write(&staged, text.replace(before, after)).expect("write the commit");
    fs::rename(&staged, &world.manifest).expect("rename the commit into place");
}

/// Regression (found by the randomized failover run, seed 42): a node waiting its rank before
/// it promotes slept inside its reconcile, then promoted from the manifest it had read before
/// the wait, although `state: down` had been committed meanwhile. The wait now spans
/// reconciles: the one that promotes reads the manifests in force.
#[test]
fn regression_a_commit_during_the_rank_wait_is_obeyed_when_the_wait_ends() {
    in_world_namespace(
        "regression_a_commit_during_the_rank_wait_is_obeyed_when_the_wait_ends",
        |work| {
            // Long enough to commit in the middle of it.
            let (guard, _daemons) = started(work, "", "failover_delay: 3s\n");
            guard.write().power_off("deb1").expect("power off deb1");
            let world = guard.read();
            until("deb2 to start its rank wait", &world, || {
                logs(&world)
                    .contains("failover: this node may take the service; waiting 3s (listed 2nd)")
            });
            commit_state(&world, "down");
            let committed = Instant::now();
            checked(&world, || {
                // Past the end of the wait, with margin: deb2 must not promote.
                while committed.elapsed() < std::time::Duration::from_secs(6) {
                    assert_ne!(
                        role(&world, "deb2"),
                        Some(Role::Primary),
                        "deb2 promoted after state: down was committed"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            });
            assert!(!mounted(&world, "deb2"));
            // Committed up again, deb2 waits its rank afresh and takes the service.
            commit_state(&world, "up");
            checked(&world, || {
                until("deb2 to take the service over", &world, || {
                    runs_on(&world, "deb2")
                });
            });
            let log = logs(&world);
            assert!(!log.contains(" ERROR "), "{log}");
            assert_eq!(
                log.matches("failover: this node may take the service; waiting 3s (listed 2nd)")
                    .count(),
                2,
                "one wait before the commit, one after: {log}"
            );
        },
    );
}

/// A holder whose partition loses quorum for a moment gives the service up (DRBD's
/// `io-error` leaves it no choice), but does not take it back the moment quorum returns: it
/// holds off twice `failover_delay` after its first loss (more after losses in a row), and the
/// log says why, so that a flapping link does not start and stop the whole stack each time.
#[test]
fn a_holder_that_lost_quorum_for_a_moment_holds_off_before_it_takes_the_service_back() {
    in_world_namespace(
        "a_holder_that_lost_quorum_for_a_moment_holds_off_before_it_takes_the_service_back",
        |work| {
            // deb2's rank wait (3 s) outlasts the blink, so deb2 stands by for deb1 once the
            // links are back; deb1's hold is 6 s ± 20 %.
            let (guard, _daemons) = started(work, "", "failover_delay: 3s\n");
            let world = guard.read();
            checked(&world, || {
                let cut = Instant::now();
                cut_off_deb1(&world);
                until("deb1 to give the service up", &world, || {
                    role(&world, "deb1") == Some(Role::Secondary) && !mounted(&world, "deb1")
                });
                world.heal("deb1", "deb2").expect("heal deb1–deb2");
                world.heal("deb1", "tb").expect("heal deb1–tb");
                let mut back = None;
                until("deb1 to take the service back", &world, || {
                    if back.is_none() && role(&world, "deb1") == Some(Role::Primary) {
                        back = Some(cut.elapsed());
                    }
                    runs_on(&world, "deb1")
                });
                let back = back.unwrap_or_else(|| cut.elapsed());
                assert!(
                    back >= std::time::Duration::from_millis(4800),
                    "deb1 promoted {back:?} after the cut, before its hold (at least 4.8 s) ended"
                );
                assert_ne!(role(&world, "deb2"), Some(Role::Primary));
            });
            let log = logs(&world);
            assert!(!log.contains(" ERROR "), "{log}");
            assert!(
                log.contains("failover: this node may take the service, but it lost it")
                    && log.contains("(once in a row); holding off")
                    && log.contains("before it takes it again (anti-flap)"),
                "{log}"
            );
        },
    );
}

/// A holder cut off from both peers must give the service up, but a process it does not
/// manage holds the DRBD device open: the planner refuses to demote it, and the node reports
/// itself STUCK (log, status): Primary without quorum, DRBD failing its I/O, while the
/// majority side takes the service over. Committing `secondary_force: true` frees it: the
/// device, with nothing of it mounted, is demoted with `--force`.
#[test]
fn a_holder_that_cannot_give_the_service_up_says_it_is_stuck_and_secondary_force_frees_it() {
    in_world_namespace(
        "a_holder_that_cannot_give_the_service_up_says_it_is_stuck_and_secondary_force_frees_it",
        |work| {
            let (guard, _daemons) = started(work, "", "");
            let world = guard.read();
            let mut holder = world
                .command("deb1", "sh")
                .expect("deb1 is on")
                .args(["-c", "exec sleep 600 < /dev/drbd0"])
                .spawn()
                .expect("a process holding /dev/drbd0 on deb1");
            cut_off_deb1(&world);
            until("deb1 to say it is stuck", &world, || {
                status_of(&world, "deb1")
                    .contains("STUCK: lost quorum and cannot give the service up")
            });
            // Everything above DRBD is stopped; DRBD stays Primary, held open.
            assert_eq!(role(&world, "deb1"), Some(Role::Primary));
            assert!(!mounted(&world, "deb1"));
            until("deb2 to take the service over", &world, || {
                runs_on(&world, "deb2")
            });
            let log = logs(&world);
            assert!(
                log.contains("STUCK: this node lost quorum and must give the service up, but cannot: drbd#0: /dev/drbd0 is held open by a process")
                    && log.contains("secondary_force: true would demote it"),
                "{log}"
            );
            // The fix, committed: deb1 demotes with --force at once (a commit is looked at
            // without waiting for the retry).
            let text = fs::read_to_string(&world.manifest).expect("manifest");
            let staged = world.manifest.with_file_name(".commit.new");
            fs::write(
                &staged,
                text.replace(
                    "    res: data\n",
                    "    res: data\n    secondary_force: true\n",
                ),
            )
            .expect("write the commit");
            fs::rename(&staged, &world.manifest).expect("commit");
            until("deb1 to be forced to Secondary", &world, || {
                role(&world, "deb1") == Some(Role::Secondary)
            });
            let _ = holder.kill();
            let _ = holder.wait();
            checked(&world, || {
                world.heal("deb1", "deb2").expect("heal deb1–deb2");
                world.heal("deb1", "tb").expect("heal deb1–tb");
                until("every node to connect", &world, || {
                    connected_everywhere(&world)
                });
                settled_on(&world, "deb2");
            });
            let log = logs(&world);
            assert!(log.contains("drbdadm secondary --force data"), "{log}");
        },
    );
}

/// Whether `node` resyncs from `source` right now (its replication towards it is SyncTarget).
fn sync_target_of(world: &World, node: &str, source: &str) -> bool {
    world.drbd().is_ok_and(|all| {
        all.get(node)
            .and_then(|n| n.resource(RES))
            .is_some_and(|r| {
                r.connections.iter().any(|c| {
                    c.name.as_deref() == Some(source)
                        && c.peer_devices
                            .iter()
                            .all(|p| p.replication == ReplicationState::SyncTarget)
                })
            })
    })
}

/// deb1, running the service, is cut off from both peers: its partition (itself) has no
/// quorum, so it stops the stack down to Secondary, while deb2 and the tiebreaker, a majority,
/// take the service over on deb2. DRBD's `on-no-quorum io-error` keeps deb1 from writing
/// while it is Primary without quorum, so the partition is no split brain: healed, deb1 is
/// behind deb2 and resyncs from it (SyncTarget), then stands by.
///
/// The tiebreaker's link goes first. Cut the other way round, deb1 would keep quorum through
/// the tiebreaker while apart from deb2 and go on writing (the simulator assumes it does),
/// and deb2 taking over afterwards would be a real split brain: see the simulator's test
/// `a_primary_that_keeps_quorum_through_the_tiebreaker_writes_apart_from_its_peer`.
#[test]
fn a_node_cut_off_from_both_peers_gives_the_service_up_and_resyncs_from_the_survivor() {
    in_world_namespace(
        "a_node_cut_off_from_both_peers_gives_the_service_up_and_resyncs_from_the_survivor",
        |work| {
            let (guard, _daemons) = started(work, "", "");
            let world = guard.read();
            checked(&world, || {
                let cut = Instant::now();
                cut_off_deb1(&world);
                // deb1 gives the service up: unmounted, then Secondary.
                until("deb1 to give the service up", &world, || {
                    role(&world, "deb1") == Some(Role::Secondary) && !mounted(&world, "deb1")
                });
                let secondary = cut.elapsed();
                let mut promoted = None;
                until("deb2 to take the service over", &world, || {
                    if promoted.is_none() && role(&world, "deb2") == Some(Role::Primary) {
                        promoted = Some(cut.elapsed());
                    }
                    runs_on(&world, "deb2")
                });
                // The margin the checker relies on: deb2 promotes after its rank's second,
                // deb1 must be Secondary by then.
                eprintln!(
                    "after the cut: deb1 Secondary at {secondary:?}, deb2 Primary at {promoted:?}, running the service at {:?}",
                    cut.elapsed()
                );
            });
            let log = logs(&world);
            assert!(
                log.contains("failover: this node may take the service; waiting 1s (listed 2nd)"),
                "{log}"
            );
            // Healed, deb1 finds deb2 ahead of it: it resyncs from deb2 (held, so that it
            // shows), then stands by; the service stays on deb2 (`failback: never`).
            world.hold_resync(true).expect("hold resyncs");
            checked(&world, || {
                world.heal("deb1", "deb2").expect("heal deb1–deb2");
                until("deb1 to resync from deb2", &world, || {
                    sync_target_of(&world, "deb1", "deb2")
                });
                world.hold_resync(false).expect("release resyncs");
                world.heal("deb1", "tb").expect("heal deb1–tb");
                until("every node to connect", &world, || {
                    connected_everywhere(&world)
                });
                settled_on(&world, "deb2");
            });
            deb1_says_it_stands_by_for_deb2(&world);
            let log = logs(&world);
            assert!(!log.contains(" ERROR "), "{log}");
            // deb1's log says why it stopped.
            assert!(
                log.contains(
                    "reconcile: desired down, 4 step(s) planned (failover: gives the service up: DRBD says this node's partition lost quorum)"
                ),
                "{log}"
            );
        },
    );
}

/// `converge validate` on a node reads the real DRBD configuration there (`drbdadm dump`): the
/// world's resource, three nodes with a diskless tiebreaker, passes with no warning; the same
/// service on a world of two nodes without a third is refused, with the reason.
#[test]
fn validate_checks_failover_against_the_drbd_configuration_of_the_node() {
    in_world_namespace(
        "validate_checks_failover_against_the_drbd_configuration_of_the_node",
        |work| {
            let validate = |world: &World| {
                fail_over(world, "", "");
                let config = world.node("deb1").expect("deb1").config.clone();
                let config = config.to_string_lossy();
                let dir = world.manifests.to_string_lossy();
                let out = world
                    .run("deb1", CONVERGE, &["--config", &config, "validate", &dir])
                    .expect("validate runs");
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            };
            {
                let nodes = [
                    NodeSpec::diskful("deb1"),
                    NodeSpec::diskful("deb2"),
                    NodeSpec::diskless("tb"),
                ];
                let guard = Guard::new(
                    World::create_with(&work.join("three"), Path::new(CONVERGE), &nodes)
                        .expect("world"),
                );
                let (code, stderr) = validate(&guard.read());
                assert_eq!(code, Some(0), "{stderr}");
                assert!(!stderr.contains("failover:"), "{stderr}");
            }
            let nodes = [NodeSpec::diskful("deb1"), NodeSpec::diskful("deb2")];
            let guard = Guard::new(
                World::create_with(&work.join("two"), Path::new(CONVERGE), &nodes).expect("world"),
            );
            let (code, stderr) = validate(&guard.read());
            assert_eq!(code, Some(1), "{stderr}");
            assert!(
                stderr.contains(&format!(
                    "failover: resource {RES} has two nodes and no third"
                )),
                "{stderr}"
            );
        },
    );
}

/// The DRBD resources docs/operations.md shows for failover (three nodes, a diskless
/// tiebreaker, quorum; one for holders that stop, one for holders that freeze) are ones real
/// `drbdadm` accepts, and do what the docs say with: their quorum options on every node, a
/// diskless minor on the tiebreaker.
#[test]
fn the_documented_tiebreaker_resources_are_what_drbdadm_runs() {
    if !converge_sim::testing::is_root() {
        eprintln!("skipping: needs root (a UTS namespace per host name)");
        return;
    }
    if std::process::Command::new("drbdadm")
        .arg("--version")
        .output()
        .is_err()
    {
        // CI installs drbd-utils: there a missing drbdadm fails the run.
        assert!(std::env::var_os("CI").is_none(), "drbdadm is not installed");
        eprintln!("skipping: drbdadm not installed (drbd-utils)");
        return;
    }
    let examples: [(&str, &[&str]); 2] = [
        ("failover-tiebreaker.res", &["--on-no-quorum=io-error"]),
        (
            "freeze-tiebreaker.res",
            &[
                "--on-no-quorum=suspend-io",
                "--on-suspended-primary-outdated=force-secondary",
            ],
        ),
    ];
    for (file, options) in examples {
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/examples")
            .join(file);
        let up = |host: &str| {
            let script = format!(
                "hostname {host} && drbdadm -c {} --dry-run --drbdsetup=/bin/true up data",
                example.display()
            );
            let out = std::process::Command::new("unshare")
                .args(["--uts", "sh", "-c", &script])
                .output();
            match out {
                Ok(out) if out.status.success() => {
                    String::from_utf8_lossy(&out.stdout).into_owned()
                }
                Ok(out) => panic!(
                    "drbdadm refused {file} as {host}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => panic!("unshare: {e}"),
            }
        };
        for host in ["deb1", "deb2", "tb"] {
            let commands = up(host);
            assert!(
                commands.contains("new-resource data")
                    && commands.contains("--auto-promote=no")
                    && commands.contains("--quorum=majority")
                    && options.iter().all(|o| commands.contains(o)),
                "{file}, {host}: {commands}"
            );
            let diskless = commands.contains("new-minor data 0 0 --diskless");
            assert_eq!(diskless, host == "tb", "{file}, {host}: {commands}");
        }
    }
}
