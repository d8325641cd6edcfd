//! `converge demo --nodes 2`, run as a user would (root): the service moves from deb1 to deb2
//! and back, both daemons' logs are shown with their node's prefix, and nothing is left behind
//! (no loop device over the demo's files, no mount, no cgroup, no directory), also when the
//! demo is interrupted with Ctrl-C (SIGINT to its process group) in the middle of a switchover.
//! `converge demo --failover`: deb1 loses power, deb2 takes the service over by itself, deb1
//! comes back and stands by. Without root they say why they skip.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CONVERGE: &str = env!("CARGO_BIN_EXE_converge");
/// A hang guard, not a measure: the demo takes 10–30 s.
const HANG: Duration = Duration::from_secs(300);
/// Two demos at once would only compete for the two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn can_run(name: &str) -> bool {
    if !converge_sim::testing::is_root() {
        eprintln!("skipping {name}: needs root (the demo makes loop devices, mounts, namespaces)");
        return false;
    }
    let missing = converge_sim::world::missing_world_programs();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name}: not installed in CI: {}",
            missing.join(", ")
        );
        eprintln!("skipping {name}: not installed: {}", missing.join(", "));
        return false;
    }
    true
}

/// The demo, in a process group of its own (so a test can Ctrl-C it as a terminal would); its
/// output lines arrive on the receiver.
fn start() -> (Child, mpsc::Receiver<String>) {
    start_with(&["--nodes", "2"])
}

fn start_with(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(CONVERGE)
        .arg("demo")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("converge demo starts");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    (child, rx)
}

/// Collects lines until the demo exits (both streams closed); kills its group on a hang.
fn finish(mut child: Child, rx: &mpsc::Receiver<String>, lines: &mut Vec<String>) -> i32 {
    let deadline = Instant::now() + HANG;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                signal_group(&child, libc::SIGKILL);
                let _ = child.wait();
                panic!("the demo hung:\n{}", lines.join("\n"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    child.wait().expect("wait").code().unwrap_or(-1)
}

fn signal_group(child: &Child, signal: i32) {
    let group = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on the process group this test made.
    unsafe {
        libc::kill(-group, signal);
    }
}

/// The demo's directory, from its first line: `… in /tmp/converge-demo.PID.N (…`.
fn work_dir(lines: &[String]) -> PathBuf {
    let first = lines
        .iter()
        .find(|l| l.starts_with("converge demo --"))
        .unwrap_or_else(|| panic!("no headline:\n{}", lines.join("\n")));
    let path = first
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no directory in {first:?}"));
    PathBuf::from(path)
}

/// Nothing of the demo in `work` is left on this machine.
fn nothing_left(work: &Path, output: &str) {
    let name = work.to_string_lossy().into_owned();
    assert!(!work.exists(), "{name} is still there\n{output}");
    let losetup = Command::new("losetup")
        .arg("-a")
        .output()
        .expect("losetup -a");
    let loops = String::from_utf8_lossy(&losetup.stdout).into_owned();
    assert!(
        !loops.contains(&name),
        "loop devices left over {name}:\n{loops}\n{output}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(
        !mounts.contains(&name),
        "mounts left under {name}\n{output}"
    );
    if let Some(cgroup) = converge_sim::world::world_cgroup(work) {
        assert!(
            !cgroup.exists(),
            "cgroup {} left behind\n{output}",
            cgroup.display()
        );
    }
}

/// The index of the first line containing `text` at or after `from`.
fn find(lines: &[String], from: usize, text: &str) -> usize {
    lines[from..]
        .iter()
        .position(|l| l.contains(text))
        .map(|i| i + from)
        .unwrap_or_else(|| {
            panic!(
                "no line with {text:?} after line {from}:\n{}",
                lines.join("\n")
            )
        })
}

#[test]
fn demo_with_two_nodes_moves_the_service_both_ways_and_leaves_nothing_behind() {
    let name = "demo_with_two_nodes_moves_the_service_both_ways_and_leaves_nothing_behind";
    if !can_run(name) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (child, rx) = start();
    let mut lines = Vec::new();
    let code = finish(child, &rx, &mut lines);
    let output = lines.join("\n");
    assert_eq!(code, 0, "{output}");
    let work = work_dir(&lines);

    // deb2 stands by while deb1 runs the service, and its status says so.
    let standby = find(
        &lines,
        0,
        "== settled: drbdsvc.opensvc.com runs on deb1; deb2 stands by",
    );
    let deb2_status = find(&lines, standby, "-- converge status on deb2");
    find(&lines, deb2_status, "standby here");
    // There: deb1 steps down, deb2 promotes and starts the app; and back.
    let mut at = standby;
    for (from, to) in [("deb1", "deb2"), ("deb2", "deb1")] {
        let edit = find(
            &lines,
            at,
            &format!("== switchover: `node: {from}` → `node: {to}`"),
        );
        let demoted = find(
            &lines,
            edit,
            &format!("{from} | DRBD#0  INFO    drbdadm secondary data"),
        );
        let promoted = find(
            &lines,
            edit,
            &format!("{to} | DRBD#0  INFO    drbdadm primary data"),
        );
        assert!(
            demoted < promoted,
            "promoted before the demotion:\n{output}"
        );
        find(
            &lines,
            promoted,
            &format!("{to} | APP     INFO    start done"),
        );
        at = find(&lines, promoted, &format!("moved from {from} to {to} in "));
        find(&lines, at, &format!("-- converge status on {from}"));
    }
    find(&lines, at, "== nothing left behind");
    assert!(!output.contains(" ERROR "), "{output}");
    nothing_left(&work, &output);
}

#[test]
fn demo_with_two_nodes_cleans_up_after_ctrl_c() {
    let name = "demo_with_two_nodes_cleans_up_after_ctrl_c";
    if !can_run(name) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (child, rx) = start();
    let mut lines = Vec::new();
    // Ctrl-C in the middle of the first switchover: daemons acting, the filesystem mounted.
    let deadline = Instant::now() + HANG;
    while !lines
        .iter()
        .any(|l: &String| l.starts_with("== switchover"))
    {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the demo ended early:\n{}", lines.join("\n"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    Instant::now() < deadline,
                    "no switchover:\n{}",
                    lines.join("\n")
                );
            }
        }
    }
    signal_group(&child, libc::SIGINT);
    let code = finish(child, &rx, &mut lines);
    let output = lines.join("\n");
    assert_ne!(code, 0, "{output}");
    assert!(output.contains("interrupted"), "{output}");
    nothing_left(&work_dir(&lines), &output);
}

#[test]
fn demo_failover_moves_the_service_when_its_node_loses_power_and_leaves_nothing_behind() {
    let name =
        "demo_failover_moves_the_service_when_its_node_loses_power_and_leaves_nothing_behind";
    if !can_run(name) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (child, rx) = start_with(&["--failover"]);
    let mut lines = Vec::new();
    let code = finish(child, &rx, &mut lines);
    let output = lines.join("\n");
    assert_eq!(code, 0, "{output}");
    let work = work_dir(&lines);
    let running = find(&lines, 0, "== settled: drbdsvc.opensvc.com runs on deb1");
    let deb2 = find(&lines, running, "-- converge status on deb2");
    find(
        &lines,
        deb2,
        "failover: standby here: deb1 holds it (Primary)",
    );
    let cut = find(&lines, deb2, "== deb1 loses power");
    let waited = find(
        &lines,
        cut,
        "deb2 | DRBD#0  INFO    failover: this node may take the service; waiting 1s (listed 2nd)",
    );
    let promoted = find(
        &lines,
        waited,
        "deb2 | DRBD#0  INFO    drbdadm primary data",
    );
    find(&lines, promoted, "deb2 | APP     INFO    start done");
    let moved = find(&lines, promoted, "failed over to deb2 in ");
    let back = find(&lines, moved, "== deb1 is powered on again");
    let settled = find(&lines, back, "deb1 stands by (failback: never)");
    let deb1 = find(&lines, settled, "-- converge status on deb1");
    find(
        &lines,
        deb1,
        "failover: standby here: deb2 holds it (Primary)",
    );
    find(&lines, settled, "== nothing left behind");
    assert!(!output.contains(" ERROR "), "{output}");
    nothing_left(&work, &output);
}
