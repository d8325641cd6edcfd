//! `converge trigger SERVICE`: a reconcile of one service now, with its result. With a daemon
//! running, through its control socket (the daemon's resync here is an hour away, and nothing
//! watches the app: only the request makes it look); without one, a reconcile of that service
//! alone.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{Sandbox, text};

const WAIT: Duration = Duration::from_secs(20);

/// A host app whose start creates `NAME.up`, whose check looks for it.
fn app_manifest(sb: &Sandbox, dir: &Path, name: &str) {
    support::host_app_manifest(sb, dir, name, "up", "");
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_running_daemon_reconciles_the_service_asked_for_at_once_and_answers() {
    let sb = Sandbox::new();
    sb.config("debounce: 50ms\nresync: 1h\n");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web");
    app_manifest(&sb, &dir, "db");
    let _daemon = Daemon(
        sb.converge_cmd(&["run", dir.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("converge run"),
    );
    until("both apps to start", || {
        sb.path("web.up").exists() && sb.path("db.up").exists()
    });
    until("the control socket", || {
        sb.path("state/control.sock").exists()
    });
    // Settled: the first reconciles ended, their checks after the start included (status
    // exits 0 once the daemon found every service converged).
    until("the daemon to settle", || {
        sb.converge(&["status"]).status.code() == Some(0)
    });
    // Drift nobody watches: only a request makes the daemon look now.
    fs::remove_file(sb.path("web.up")).expect("rm");
    fs::remove_file(sb.path("db.up")).expect("rm");
    let out = sb.converge(&["trigger", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "web: converged\n");
    assert!(sb.path("web.up").exists(), "web was started again");
    assert!(!sb.path("db.up").exists(), "db was not asked for");

    let out = sb.converge(&["trigger", "db", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["service"], "db");
    assert_eq!(doc["result"]["kind"], "converged");
    assert!(sb.path("db.up").exists());

    let out = sb.converge(&["trigger", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no service nope is in force in the running daemon"),
        "{}",
        text(&out.stderr)
    );

    // The status keeps each service's last reconciles, newest first, with why they ran.
    let out = sb.converge(&["status", "--output", "json"]);
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("view json");
    assert_eq!(view["version"], 1, "{view}");
    let web = view["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["service"] == "web")
        .expect("web");
    let history = web["history"].as_array().expect("history");
    assert!(history.len() >= 2, "{web}");
    assert_eq!(history[0]["trigger"], "asked by converge trigger", "{web}");
    assert_eq!(history[0]["result"]["kind"], "converged");
    assert!(history[0]["took_ms"].is_u64() && history[0]["at"].is_string());
    let out = sb.converge(&["status"]);
    let status = text(&out.stdout);
    assert!(
        status.contains("reconciled ")
            && status.contains("converged in ")
            && status.contains(" ms (asked by converge trigger)"),
        "{status}"
    );
}

#[test]
fn without_a_daemon_the_service_asked_for_is_reconciled_alone() {
    let sb = Sandbox::new();
    sb.config("debounce: 50ms\nresync: 1h\n");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web");
    app_manifest(&sb, &dir, "db");
    let dir = dir.to_str().expect("utf-8");
    let out = sb.converge(&["trigger", "web", dir]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(sb.path("web.up").exists());
    assert!(!sb.path("db.up").exists(), "only web was reconciled");
    let out = sb.converge(&["trigger", "nope", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no service nope in"),
        "{}",
        text(&out.stderr)
    );
}
