//! The seed service on real parts, as root: the real `drbdadm` and `drbdmeta` driving the DRBD
//! simulator, a real ext3 on a loop device, real e2fsck, mount and umount, the simulated
//! OpenVZ container on that filesystem — each test in its own private mount namespace
//! (see `converge_sim::testing::in_namespace`), everything it made removed even when it fails.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use converge_sim::testing::in_namespace;
use support::CONVERGE;
use support::daemon::Daemon;
use support::node::{Node, assert_sequence};

#[test]
fn seed_service_goes_up_and_down_with_the_seed_sequences() {
    in_namespace(
        "seed_service_goes_up_and_down_with_the_seed_sequences",
        |work| {
            let node = Node::new(work);
            let mnt = node.mnt();
            let plan = node.converge(&["plan"]);
            assert_eq!(plan.code, 2, "{}", plan.out);

            let up = node.reconcile();
            assert_eq!(up.code, 0, "{}", up.out);
            assert_sequence(
                &up.out,
                &[
                    ("DRBD#0", " up data".into()),
                    ("DRBD#0", " primary data".into()),
                    ("FS#1", "e2fsck -p /dev/drbd0".into()),
                    ("FS#1", "output:".into()),
                    (
                        "FS#1",
                        format!("mount -t ext3 -o defaults /dev/drbd0 {mnt}"),
                    ),
                    ("VZ", "vzctl start 101".into()),
                    ("VZ", "wait for container up status".into()),
                    ("VZ", "wait for container operational".into()),
                    ("APP", "exec2 101 /svc/etc/init.d/S10foo start".into()),
                ],
            );
            assert!(
                up.out.contains("/dev/drbd0: clean,"),
                "e2fsck's output is shown: {}",
                up.out
            );
            assert!(up.out.contains(" - ret 0 - logs in "), "{}", up.out);
            assert!(node.is_mounted());
            assert_eq!(node.role(), "Primary");
            // The app ran inside the container, on the DRBD-backed filesystem.
            assert!(Path::new(&mnt).join("vz/private/101/var/run/foo").exists());

            let again = node.reconcile();
            assert_eq!(again.code, 0, "{}", again.out);
            assert!(
                again.out.contains("converged (0 action(s))"),
                "no action: {}",
                again.out
            );

            let status = node.converge(&["status"]);
            assert_eq!(status.code, 0, "{}", status.out);
            for expected in [
                "converged: yes",
                "Primary, UpToDate; peer peer1 Secondary, UpToDate",
                &format!("mounted on {mnt}"),
                "running",
                "C10foo up",
            ] {
                assert!(
                    status.out.contains(expected),
                    "{expected:?} in {}",
                    status.out
                );
            }

            node.set_state("down");
            let down = node.reconcile();
            assert_eq!(down.code, 0, "{}", down.out);
            assert_sequence(
                &down.out,
                &[
                    ("APP", "exec2 101 /svc/etc/init.d/K90foo stop".into()),
                    ("VZ", "vzctl stop 101".into()),
                    ("VZ", "wait for container down status".into()),
                    ("FS#1", format!("umount {mnt}")),
                    ("DRBD#0", " secondary data".into()),
                ],
            );
            assert!(!node.is_mounted());
            assert_eq!(node.role(), "Secondary");
            let status = node.converge(&["status"]);
            assert!(
                status.out.contains("stdby up") && status.out.contains("converged: yes"),
                "{}",
                status.out
            );
        },
    );
}

#[test]
fn converges_both_ways_from_each_partial_state() {
    in_namespace("converges_both_ways_from_each_partial_state", |work| {
        let node = Node::new(work);
        let mnt = node.mnt();
        let partial = [
            "primary, not mounted",
            "mounted, container down",
            "container up, apps not started",
        ];
        for name in partial {
            for target in ["up", "down"] {
                // Build the partial state by hand, as an operator might have left it.
                node.set_state("down");
                assert_eq!(node.reconcile().code, 0);
                node.drbdadm("down data");
                node.drbdadm("up data");
                node.drbdadm("primary data");
                if name != "primary, not mounted" {
                    node.sh(&format!("mount /dev/drbd0 {mnt}"));
                }
                if name == "container up, apps not started" {
                    node.sim("vzctl", "start 101");
                }
                node.set_state(target);
                let run = node.reconcile();
                assert_eq!(run.code, 0, "{name} → {target}: {}", run.out);
                assert_eq!(node.is_mounted(), target == "up", "{name} → {target}");
                assert_eq!(
                    node.role(),
                    if target == "up" {
                        "Primary"
                    } else {
                        "Secondary"
                    },
                    "{name} → {target}"
                );
                let again = node.reconcile();
                assert!(
                    again.out.contains("converged (0 action(s))"),
                    "{name} → {target}: {}",
                    again.out
                );
            }
        }
    });
}

#[test]
fn peer_primary_waits_with_exit_4_and_nothing_is_mounted() {
    in_namespace(
        "peer_primary_waits_with_exit_4_and_nothing_is_mounted",
        |work| {
            let node = Node::new(work);
            node.sim("drbdsetup", "sim-peer data --role Primary");
            let run = node.reconcile();
            assert_eq!(run.code, 4, "{}", run.out);
            assert!(
                run.out.contains("waiting: drbd#0: peer peer1 is Primary"),
                "{}",
                run.out
            );
            assert!(
                !run.out.contains("primary data"),
                "no promotion was attempted: {}",
                run.out
            );
            assert!(!node.is_mounted());
            assert_eq!(node.role(), "Secondary");
            let plan = node.converge(&["plan"]);
            assert!(
                plan.out.contains("waiting: peer peer1 is Primary") && !plan.out.contains("+ fs#1"),
                "{}",
                plan.out
            );
        },
    );
}

/// The seed manifest at `state`, its DRBD resource brought up by the system.
fn up_by_system(node: &Node, state: &str) {
    node.set_state(state);
    let text = fs::read_to_string(&node.sb.manifest).expect("manifest");
    let text = text.replace("    res: data\n", "    res: data\n    up_by: system\n");
    assert!(text.contains("up_by: system"), "{text}");
    fs::write(&node.sb.manifest, text).expect("write manifest");
}

#[test]
fn up_by_system_waits_for_the_system_then_only_promotes_and_demotes() {
    in_namespace(
        "up_by_system_waits_for_the_system_then_only_promotes_and_demotes",
        |work| {
            let node = Node::new(work);
            up_by_system(&node, "up");
            let run = node.reconcile();
            assert_eq!(run.code, 4, "{}", run.out);
            assert!(
                run.out.contains("the system brings it up (up_by: system"),
                "{}",
                run.out
            );
            assert!(!run.out.contains("drbdadm up"), "{}", run.out);
            assert!(!node.is_mounted());
            // The system (drbd@data.service) brings it up: converge takes it from there.
            node.drbdadm("up data");
            let run = node.reconcile();
            assert_eq!(run.code, 0, "{}", run.out);
            assert!(node.is_mounted());
            assert_eq!(node.role(), "Primary");
            // Stopped: demoted, left up for the system.
            up_by_system(&node, "down");
            let run = node.reconcile();
            assert_eq!(run.code, 0, "{}", run.out);
            assert!(!run.out.contains("drbdadm down"), "{}", run.out);
            assert!(!node.is_mounted());
            assert_eq!(node.role(), "Secondary");
        },
    );
}

#[test]
fn e2fsck_failure_is_shown_and_nothing_is_mounted() {
    in_namespace("e2fsck_failure_is_shown_and_nothing_is_mounted", |work| {
        let node = Node::new(work);
        node.drbdadm("up data");
        node.drbdadm("primary data");
        // Clear the root inode: `e2fsck -p` refuses to repair that on its own (exit 4).
        node.sh("debugfs -w -R 'clri <2>' /dev/drbd0 && debugfs -w -R 'ssv state 0' /dev/drbd0");
        node.drbdadm("secondary data");
        let run = node.reconcile();
        assert_eq!(run.code, 1, "{}", run.out);
        assert!(
            run.out
                .contains("e2fsck -p /dev/drbd0 exited 4; not mounting /dev/drbd0"),
            "{}",
            run.out
        );
        assert!(
            run.out.contains("UNEXPECTED INCONSISTENCY"),
            "e2fsck's output is shown: {}",
            run.out
        );
        assert!(run.out.contains("rollback"), "{}", run.out);
        assert!(!node.is_mounted());
        assert_eq!(node.role(), "Secondary", "rolled back");
    });
}

#[test]
fn busy_mount_point_is_retried_then_reported_and_umount_kill_frees_it() {
    in_namespace(
        "busy_mount_point_is_retried_then_reported_and_umount_kill_frees_it",
        |work| {
            let node = Node::new(work);
            assert_eq!(node.reconcile().code, 0);
            let mnt = node.mnt();
            // A process working in the filesystem keeps it busy.
            let mut holder = Command::new("sleep")
                .arg("600")
                .current_dir(&mnt)
                .stdin(Stdio::null())
                .spawn()
                .expect("holder");
            node.set_state("down");
            node.set_fs_key("timeout: 2s");
            let started = std::time::Instant::now();
            let run = node.reconcile();
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "retries stop at the timeout"
            );
            assert_eq!(run.code, 1, "{}", run.out);
            assert!(
                run.out.contains("is busy; retry in"),
                "retried: {}",
                run.out
            );
            assert!(
                run.out.contains("target is busy after") && run.out.contains("umount_kill"),
                "{}",
                run.out
            );
            assert!(node.is_mounted());
            assert_eq!(
                node.role(),
                "Primary",
                "never demoted under a mounted filesystem"
            );

            node.set_state("down");
            node.set_fs_key("umount_kill: true\n    timeout: 10s");
            let run = node.reconcile();
            assert_eq!(run.code, 0, "{}", run.out);
            assert!(run.out.contains("fuser -kmv"), "{}", run.out);
            assert!(!node.is_mounted());
            let _ = holder.kill();
            let _ = holder.wait();
        },
    );
}

#[test]
fn drbd_84_is_observed_through_proc_drbd_and_sh_minor() {
    in_namespace(
        "drbd_84_is_observed_through_proc_drbd_and_sh_minor",
        |work| {
            let node = Node::with_drbd(work, "8.4");
            let up = node.reconcile();
            assert_eq!(up.code, 0, "{}", up.out);
            let proc = fs::read_to_string(node.sb.sim_dir.join("proc_drbd")).expect("proc_drbd");
            assert!(proc.starts_with("version: 8.4"), "{proc}");
            let status = node.converge(&["status"]);
            assert!(
                status
                    .out
                    .contains("Primary, UpToDate; the peer Secondary, UpToDate"),
                "{}",
                status.out
            );
            // The name → minor map is cached in memory: observing writes nothing.
            assert!(!work.join("state/drbd-minors.json").exists());
            node.set_state("down");
            let down = node.reconcile();
            assert_eq!(down.code, 0, "{}", down.out);
            assert_eq!(node.role(), "Secondary");
        },
    );
}

/// `converge run` on the sandboxed node, reading its log on demand.
impl Daemon {
    fn start_on(node: &Node) -> Daemon {
        let mut config = fs::read_to_string(&node.sb.config).expect("config");
        // Only events may wake it: a resync would hide a missing trigger.
        config.push_str("debounce: 50ms\nresync: 1h\n");
        fs::write(&node.sb.config, config).expect("write config");
        let mut command = node.command(CONVERGE);
        command
            .arg("--config")
            .arg(&node.sb.config)
            .arg("run")
            .arg("--verbose");
        Daemon::spawn(command, node.sb.work.join("daemon.log"))
    }

    fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(30) {
            if check() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; daemon log:\n{}", self.log());
    }
}

#[test]
fn daemon_promotes_when_the_peer_demotes_and_remounts_after_drift() {
    in_namespace(
        "daemon_promotes_when_the_peer_demotes_and_remounts_after_drift",
        |work| {
            let node = Node::new(work);
            node.sim("drbdsetup", "sim-peer data --role Primary");
            let daemon = Daemon::start_on(&node);
            daemon.eventually("the promotion to wait", || {
                daemon.log().contains("waiting: peer peer1 is Primary")
            });
            assert!(!node.is_mounted());
            // Looked at again (SIGHUP: a resync now), it still waits: said once only.
            daemon.signal(libc::SIGHUP);
            daemon.eventually("the resync to find it still waiting", || {
                daemon.log().contains("still waiting: drbd#0: peer")
            });
            assert_eq!(
                daemon
                    .log()
                    .matches("waiting: peer peer1 is Primary")
                    .count(),
                1,
                "{}",
                daemon.log()
            );
            // The peer steps down: DRBD's event alone must bring the service up here.
            node.sim("drbdsetup", "sim-peer data --role Secondary");
            daemon.eventually("the service to come up after the peer demoted", || {
                node.is_mounted()
            });
            assert_eq!(node.role(), "Primary");
            daemon.eventually("the app to run", || {
                Path::new(&node.mnt())
                    .join("vz/private/101/var/run/foo")
                    .exists()
            });
            // Someone unmounts it behind converge's back: the mount table event brings it back.
            // The daemon is paused meanwhile: stopping the container changes the mount table,
            // and the daemon would otherwise start it again under the umount.
            daemon.signal(libc::SIGSTOP);
            node.sim("vzctl", "stop 101");
            // A check the daemon started before the pause may still run inside the mount for
            // a moment (its children are not paused): retry while busy.
            node.sh(&format!(
                "for i in $(seq 100); do umount {0} && exit 0; sleep 0.1; done; umount {0}",
                node.mnt()
            ));
            daemon.signal(libc::SIGCONT);
            daemon.eventually("the filesystem to be mounted again", || node.is_mounted());
            assert_eq!(
                daemon.stop(std::time::Duration::from_secs(30)),
                0,
                "SIGTERM exits 0"
            );
            assert!(node.is_mounted(), "stopping converge stops no service");
        },
    );
}
