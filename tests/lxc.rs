//! The seed service with a real LXC container, as root: the DRBD simulator behind the real
//! `drbdadm`, a real ext3 on a loop device, and a busybox LXC container whose rootfs lies on
//! that filesystem — each test in its own private mount namespace (`converge_sim::testing::in_namespace`).
//!
//! LXC keeps container configurations in the host's lxcpath, outside every namespace: each test
//! names its container uniquely (`cvt-TAG-PID`, PID the test binary's), the sandbox destroys it
//! on drop, and the parent process destroys any the child left (killed, or panicking in a way
//! that skipped the drop).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use converge_sim::sandbox::lxc_rootfs;
use converge_sim::testing::in_namespace;
use support::node::{Run, assert_sequence};
use support::text;

const PREFIX: &str = "cvt-";

fn container_name(tag: &str) -> String {
    support::lxc::container_name(PREFIX, tag)
}

/// Runs `scenario` in a private mount namespace, with the LXC programs checked first and the
/// container swept afterwards.
fn lxc_test(test: &str, tag: &str, scenario: fn(&Path)) {
    support::lxc::lxc_test(
        test,
        PREFIX,
        Some(container_name(tag)),
        in_namespace,
        scenario,
    );
}

/// A sandboxed node whose container is a real LXC one (destroyed with the node).
struct Node {
    node: support::node::Node,
    name: String,
}

impl std::ops::Deref for Node {
    type Target = support::node::Node;

    fn deref(&self) -> &support::node::Node {
        &self.node
    }
}

impl Node {
    fn new(work: &Path, tag: &str) -> Node {
        let name = container_name(tag);
        Node {
            node: support::node::Node::with_lxc(work, &name),
            name,
        }
    }

    fn rootfs(&self) -> PathBuf {
        lxc_rootfs(&self.sb.mnt, &self.name)
    }

    /// How often S10foo ran, from its log on the rootfs (so on the DRBD-backed filesystem).
    fn starts(&self) -> usize {
        fs::read_to_string(self.rootfs().join("var/log/foo.starts"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn lxc_state(&self) -> String {
        let out = self
            .command("lxc-info")
            .args(["-n", &self.name, "-s"])
            .output()
            .expect("lxc-info");
        text(&out.stdout)
            .trim()
            .trim_start_matches("State:")
            .trim()
            .to_string()
    }
}

fn up_sequence(node: &Node) -> Vec<(&'static str, String)> {
    let name = &node.name;
    vec![
        ("DRBD#0", " primary data".into()),
        (
            "FS#1",
            format!("mount -t ext3 -o defaults /dev/drbd0 {}", node.mnt()),
        ),
        ("LXC", format!("lxc-start -n {name} -d")),
        ("LXC", "wait for container up status".into()),
        ("LXC", "wait for container operational".into()),
        (
            "APP",
            format!("spawn: lxc-attach -n {name} -- /svc/etc/init.d/S10foo start"),
        ),
    ]
}

fn assert_started(node: &Node, run: &Run) {
    assert_eq!(run.code, 0, "{}", run.out);
    assert_sequence(&run.out, &up_sequence(node));
    assert!(
        run.out.lines().any(|l| l.starts_with("APP")
            && l.contains("start done in ")
            && l.contains(" - ret 0 - logs in ")),
        "{}",
        run.out
    );
    assert!(node.is_mounted());
    assert_eq!(node.role(), "Primary");
    assert_eq!(node.lxc_state(), "RUNNING");
}

#[test]
fn lxc_service_goes_up_stays_converged_goes_down_and_up_again() {
    lxc_test(
        "lxc_service_goes_up_stays_converged_goes_down_and_up_again",
        "updown",
        |work| {
            let node = Node::new(work, "updown");
            let up = node.reconcile();
            assert_started(&node, &up);
            assert_eq!(node.starts(), 1, "S10foo ran once, on the rootfs on DRBD");

            let again = node.reconcile();
            assert_eq!(again.code, 0, "{}", again.out);
            assert!(
                again.out.contains("converged (0 action(s))"),
                "{}",
                again.out
            );
            let status = node.converge(&["status"]);
            assert_eq!(status.code, 0, "{}", status.out);
            for expected in ["converged: yes", "running", "C10foo up"] {
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
                    (
                        "APP",
                        format!(
                            "spawn: lxc-attach -n {} -- /svc/etc/init.d/K90foo stop",
                            node.name
                        ),
                    ),
                    ("LXC", format!("lxc-stop -n {} -t 30", node.name)),
                    ("LXC", "wait for container down status".into()),
                    ("FS#1", format!("umount {}", node.mnt())),
                    ("DRBD#0", " secondary data".into()),
                ],
            );
            assert!(!node.is_mounted());
            assert_eq!(node.role(), "Secondary");
            assert_eq!(node.lxc_state(), "STOPPED");

            node.set_state("up");
            let up = node.reconcile();
            assert_started(&node, &up);
            assert_eq!(node.starts(), 2);
        },
    );
}

#[test]
fn lxc_container_killed_behind_our_back_is_restarted_and_its_apps_rerun() {
    lxc_test(
        "lxc_container_killed_behind_our_back_is_restarted_and_its_apps_rerun",
        "killed",
        |work| {
            let node = Node::new(work, "killed");
            assert_started(&node, &node.reconcile());
            assert_eq!(node.starts(), 1);

            node.sh(&format!("lxc-stop -k -n {}", node.name));
            assert_eq!(node.lxc_state(), "STOPPED");
            let plan = node.converge(&["plan"]);
            assert_eq!(plan.code, 2, "changes pending: {}", plan.out);

            let run = node.reconcile();
            assert_eq!(run.code, 0, "{}", run.out);
            assert!(
                !run.out.contains("primary data") && !run.out.contains("mount -t"),
                "only the container and its apps: {}",
                run.out
            );
            assert_sequence(&run.out, &up_sequence(&node)[2..]);
            assert_eq!(node.starts(), 2, "the app ran again in the new container");
            assert_eq!(node.lxc_state(), "RUNNING");
            let again = node.reconcile();
            assert!(
                again.out.contains("converged (0 action(s))"),
                "{}",
                again.out
            );
        },
    );
}

/// Appends `line` to the container's LXC configuration, after undoing the previous append.
fn set_config_line(node: &Node, pristine: &str, line: &str) {
    let config = converge_sim::sandbox::lxc_path()
        .unwrap_or_else(|e| panic!("{e}"))
        .join(&node.name)
        .join("config");
    fs::write(&config, format!("{pristine}{line}\n")).expect("write the container config");
}

/// A failed start must be reported at once (not after start_timeout), rolled back (nothing
/// left mounted or Primary, the container down) and explained.
fn assert_failed_start(node: &Node, run: &Run, elapsed: std::time::Duration, why: &[String]) {
    assert!(
        elapsed < std::time::Duration::from_secs(30),
        "reported at once, not after start_timeout: {}",
        run.out
    );
    assert_eq!(run.code, 1, "{}", run.out);
    assert_sequence(
        &run.out,
        &[("LXC", format!("lxc-start -n {} -d", node.name))],
    );
    assert!(
        why.iter().any(|w| run.out.contains(w.as_str())),
        "one of {why:?} in {}",
        run.out
    );
    assert!(run.out.contains("rollback"), "{}", run.out);
    assert!(!run.out.contains("spawn:"), "no app ran: {}", run.out);
    assert!(!node.is_mounted(), "rolled back: {}", run.out);
    // This run brought DRBD up, so the rollback demotes it and takes it down again.
    assert!(run.out.contains(" secondary data"), "{}", run.out);
    assert_ne!(node.role(), "Primary", "rolled back: {}", run.out);
    assert_eq!(node.lxc_state(), "STOPPED");
}

#[test]
fn lxc_container_that_cannot_start_is_rolled_back_with_its_log() {
    lxc_test(
        "lxc_container_that_cannot_start_is_rolled_back_with_its_log",
        "broken",
        |work| {
            let node = Node::new(work, "broken");
            let config = converge_sim::sandbox::lxc_path()
                .unwrap_or_else(|e| panic!("{e}"))
                .join(&node.name)
                .join("config");
            let pristine = fs::read_to_string(&config).expect("container config");

            // lxc-start itself fails: the cause is only in the LXC log.
            set_config_line(&node, &pristine, "lxc.init.cmd = /sbin/no-such-init");
            let started = std::time::Instant::now();
            let run = node.reconcile();
            assert_failed_start(
                &node,
                &run,
                started.elapsed(),
                &[format!(
                    "container {} did not start: lxc-start -n {} -d exited 1; LXC log ",
                    node.name, node.name
                )],
            );
            assert!(
                run.out.contains(r#"Failed to exec "/sbin/no-such-init""#),
                "the cause, from the LXC log: {}",
                run.out
            );

            // lxc-start succeeds, then init exits at once: stopped, not worth waiting for.
            // (Rarely init is gone before lxc-start saw it run, and lxc-start fails itself.)
            set_config_line(&node, &pristine, "lxc.init.cmd = /bin/true");
            let started = std::time::Instant::now();
            let run = node.reconcile();
            assert_failed_start(
                &node,
                &run,
                started.elapsed(),
                &[
                    format!(
                        "container {} is Stopped instead of running: its start failed",
                        node.name
                    ),
                    format!("container {} did not start", node.name),
                ],
            );

            // Repaired, it starts.
            set_config_line(&node, &pristine, "");
            assert_started(&node, &node.reconcile());
        },
    );
}

#[test]
fn the_shipped_lxc_manifest_is_the_seed_service_with_an_lxc_container() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/lxc");
    let path = dir.join("drbdsvc.yaml");
    let text = fs::read_to_string(&path).expect("manifests/lxc/drbdsvc.yaml");
    let service =
        converge_core::manifest::parse_manifest(&path, &text).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(service.name, "drbdsvc.opensvc.com");
    let container = service.container().map(|c| c.kind.clone());
    assert_eq!(
        container,
        Some(converge_core::manifest::ContainerKind::Lxc(
            "drbdsvc".into()
        ))
    );
    let sb = support::Sandbox::new();
    let out = support::converge_with(&sb.config(""), &["validate", &dir.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out));
}

fn text_of(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}
