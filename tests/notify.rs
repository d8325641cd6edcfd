//! `converge run` under systemd's `Type=notify`, without systemd: the test binds the unix
//! datagram socket systemd would (`NOTIFY_SOCKET`), asks for a watchdog (`WATCHDOG_USEC`), and
//! reads what the daemon says, in order: a STATUS= summary, READY=1 once the first reconcile
//! of every service is done, WATCHDOG=1 pings, STOPPING=1 on SIGTERM.

mod support;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::Sandbox;

const WAIT: Duration = Duration::from_secs(20);

/// A host app; its first start takes a moment, so that READY=1 has something to wait for.
fn app_manifest(sb: &Sandbox, dir: &Path, name: &str) {
    support::host_app_manifest(sb, dir, name, "up", "sleep 0.3");
}

/// Every datagram the daemon sent until `done` says so (or WAIT passes), one string each.
fn read_until(socket: &UnixDatagram, seen: &mut Vec<String>, done: impl Fn(&[String]) -> bool) {
    let start = Instant::now();
    let mut buf = vec![0u8; 4096];
    while !done(seen) {
        assert!(
            start.elapsed() < WAIT,
            "gave up; the daemon said: {seen:#?}"
        );
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

fn position(seen: &[String], line: &str) -> Option<usize> {
    seen.iter().position(|m| m.lines().any(|l| l == line))
}

#[test]
fn the_daemon_says_status_ready_watchdog_and_stopping_in_order() {
    let sb = Sandbox::new();
    sb.config("debounce: 50ms\nresync: 1h\n");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web");
    app_manifest(&sb, &dir, "db");
    let socket_path = sb.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let log = fs::File::create(sb.path("daemon.log")).expect("log");
    let mut child = sb
        .converge_cmd(&["run", dir.to_str().expect("utf-8")])
        .env("NOTIFY_SOCKET", &socket_path)
        // 200 ms: a ping every 100 ms.
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::from(log.try_clone().expect("dup")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("converge run");

    let mut seen = Vec::new();
    read_until(&socket, &mut seen, |seen| {
        position(seen, "READY=1").is_some()
            && seen.iter().filter(|m| m.as_str() == "WATCHDOG=1\n").count() >= 3
    });
    let ready = position(&seen, "READY=1").expect("ready");
    // Ready only once both apps were started: the marker files exist by then, and the last
    // status before it says so.
    assert!(sb.path("web.up").exists() && sb.path("db.up").exists());
    let last_status = seen[..=ready]
        .iter()
        .rev()
        .find_map(|m| m.lines().find_map(|l| l.strip_prefix("STATUS=")))
        .expect("a status before READY=1");
    assert_eq!(last_status, "2 services: 2 converged", "{seen:#?}");
    // Earlier statuses said what was under way.
    assert!(
        seen[..ready]
            .iter()
            .any(|m| m.contains("STATUS=2 services: ") && !m.contains("2 converged")),
        "{seen:#?}"
    );
    assert_eq!(
        seen.iter().filter(|m| m.contains("READY=1")).count(),
        1,
        "{seen:#?}"
    );

    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    read_until(&socket, &mut seen, |seen| {
        position(seen, "STOPPING=1").is_some()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(start.elapsed() < WAIT, "the daemon did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(position(&seen, "STOPPING=1") > Some(ready), "{seen:#?}");
}

#[test]
fn without_notify_socket_nothing_is_sent_and_the_daemon_runs_as_before() {
    // Type=simple, or not started by systemd: the same daemon, no socket to talk to.
    let sb = Sandbox::new();
    sb.config("debounce: 50ms\nresync: 1h\n");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web");
    let mut child = sb
        .converge_cmd(&["run", dir.to_str().expect("utf-8")])
        .env_remove("NOTIFY_SOCKET")
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("converge run");
    let start = Instant::now();
    while !sb.path("web.up").exists() {
        assert!(start.elapsed() < WAIT, "web was not started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// The shipped unit is one systemd takes as it is: no unknown directive, no bad value.
#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let Ok(version) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing in CI"
        );
        eprintln!("skipping: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    let sb = Sandbox::new();
    let unit = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/systemd/converge.service"
    ))
    .expect("the shipped unit");
    assert!(unit.contains("\nType=notify\n") && unit.contains("\nWatchdogSec="));
    // Where the package puts the binary is not there here: the one just built stands in.
    let unit = unit.replace("/usr/local/bin/converge", support::CONVERGE);
    let path = sb.write("converge.service", &unit);
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains("converge.service"),
        "systemd-analyze has something to say of the unit:\n{said}"
    );
}
