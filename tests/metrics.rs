//! The daemon's Prometheus metrics end to end: a real `converge run` serving `GET /metrics` and
//! writing a node_exporter textfile, scraped over TCP, each text checked by the real `promtool
//! check metrics` (Debian's `prometheus` package; `.ci/run` installs it, and a missing promtool
//! is a failure in CI, a skip elsewhere). Without root, DRBD is a fake `drbdsetup` printing a
//! fixed `status --json`; as root, the seed service runs on the DRBD and OpenVZ simulators
//! behind the real drbdadm.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use converge_sim::testing::in_namespace;
use support::daemon::Daemon;
use support::node::Node;
use support::{CONVERGE, Sandbox, text};

const WAIT: Duration = Duration::from_secs(30);

fn eventually(what: &str, log: &Path, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "timed out waiting for: {what}; daemon log:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

impl Daemon {
    /// Where it serves `/metrics`, from the line it logs at start (port 0 in the config).
    fn metrics_addr(&self) -> SocketAddr {
        let mut addr = None;
        eventually("the metrics address in the log", &self.log, || {
            addr = self.log().lines().find_map(|line| {
                let (_, rest) = line.split_once("serving http://")?;
                rest.split_once("/metrics")?.0.parse().ok()
            });
            addr.is_some()
        });
        addr.expect("address")
    }
}

/// One HTTP request to `addr`: the status line and the body.
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    body
}

/// `promtool check metrics` on `metrics`: its complaints fail the test. `false` when promtool is
/// not installed, outside CI.
fn promtool_accepts(metrics: &str, what: &str) -> bool {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // In CI, .ci/run installs it: a missing one there is a failure, not a skip.
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is not installed in CI (apt-get install prometheus)"
            );
            eprintln!("skipping promtool on {what}: not installed (apt-get install prometheus)");
            return false;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics refused {what} ({}):\n{}{}\n--- the text:\n{metrics}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    true
}

fn assert_lines(metrics: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            metrics.lines().any(|l| l == *line),
            "missing {line:?} in:\n{metrics}"
        );
    }
}

/// The value of the series `key` (name and labels, as printed).
fn value(metrics: &str, key: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

/// `drbdsetup status --json` of two resources: `web` Primary here (peer deb2 Secondary),
/// `db` Secondary here with deb2 Primary (so a service pinned here waits for deb2 to step
/// down). The fake answers `events2` by staying silent.
const STATUS_JSON: &str = r#"[
 {"name": "web", "role": "Primary", "suspended": false,
  "devices": [{"volume": 0, "minor": 0, "disk-state": "UpToDate", "client": false, "open": false, "quorum": true}],
  "connections": [{"peer-node-id": 1, "name": "deb2", "connection-state": "Connected", "peer-role": "Secondary",
                   "peer_devices": [{"volume": 0, "replication-state": "Established", "peer-disk-state": "UpToDate"}]}]},
 {"name": "db", "role": "Secondary", "suspended": false,
  "devices": [{"volume": 0, "minor": 1, "disk-state": "UpToDate", "client": false, "open": false, "quorum": true}],
  "connections": [{"peer-node-id": 1, "name": "deb2", "connection-state": "Connected", "peer-role": "Primary",
                   "peer_devices": [{"volume": 0, "replication-state": "Established", "peer-disk-state": "UpToDate"}]}]}
]"#;

#[test]
fn a_running_daemon_serves_and_writes_metrics_promtool_accepts() {
    let sb = Sandbox::new();
    let json = sb.write("status.json", STATUS_JSON);
    let drbdsetup = sb.script(
        "bin/drbdsetup",
        &format!(
            "case \"$1\" in\n  status) cat '{}' ;;\n  events2) exec sleep 600 ;;\nesac",
            json.display()
        ),
    );
    let proc_drbd = sb.write(
        "proc-drbd",
        "version: 9.2.8 (api:2/proto:86-122)\nGIT-hash: abc build by x, 2024-01-01\n",
    );
    let mountinfo = sb.write("mountinfo", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n");
    let textdir = sb.path("node-exporter");
    fs::create_dir(&textdir).expect("mkdir");
    let textfile = textdir.join("converge.prom");
    sb.config(&format!(
        "debounce: 50ms\nresync: 1h\nproc_drbd: {}\nmountinfo: {}\ncommands:\n  drbdsetup: {}\n\
         metrics:\n  listen: 127.0.0.1:0\n  textfile: {}\n",
        proc_drbd.display(),
        mountinfo.display(),
        drbdsetup.display(),
        textfile.display()
    ));
    let dir = sb.path("manifests");
    let marker = sb.path("app.up");
    sb.script("app.d/S10app", &format!("touch {}", marker.display()));
    sb.script("app.d/K10app", &format!("rm -f {}", marker.display()));
    sb.script("app.d/C10app", &format!("test -e {}", marker.display()));
    sb.write(
        "manifests/app.yaml",
        &format!(
            "service: app\nstate: up\nresources:\n  app#0:\n    scripts: {}\n",
            sb.path("app.d").display()
        ),
    );
    for (name, res) in [("web", "web"), ("db", "db")] {
        sb.write(
            &format!("manifests/{name}.yaml"),
            &format!(
                "service: {name}\nstate: up\nnode: deb1\nresources:\n  drbd#0:\n    res: {res}\n"
            ),
        );
    }
    // A broken manifest: its error counts, and nothing else changes.
    sb.write("manifests/broken.yaml", "service: [\n");

    let daemon = Daemon::spawn(
        sb.converge_cmd(&["run", dir.to_str().expect("utf-8")]),
        sb.path("daemon.log"),
    );
    let addr = daemon.metrics_addr();
    eventually("app started and db seen waiting", &daemon.log, || {
        let metrics = scrape(addr);
        value(&metrics, r#"converge_service_converged{service="app"}"#) == Some(1.0)
            && value(
                &metrics,
                r#"converge_service_blocked{service="db",reason="waiting"}"#,
            ) == Some(1.0)
    });
    let metrics = scrape(addr);
    assert_lines(
        &metrics,
        &[
            "converge_manifest_errors 1",
            r#"converge_service_desired_up{service="app"} 1"#,
            r#"converge_service_converged{service="web"} 1"#,
            r#"converge_service_converged{service="db"} 0"#,
            r#"converge_service_blocked{service="db",reason="refused"} 0"#,
            r#"converge_service_result{service="db",result="waiting"} 1"#,
            r#"converge_service_result{service="app",result="converged"} 1"#,
            r#"converge_resource_status{service="app",resource="app#0",status="up"} 1"#,
            r#"converge_resource_status{service="web",resource="drbd#0",status="up"} 1"#,
            r#"converge_resource_status{service="db",resource="drbd#0",status="stdby up"} 1"#,
            r#"converge_drbd_resource_up{service="web",drbd_resource="web"} 1"#,
            r#"converge_drbd_role{service="web",drbd_resource="web",role="Primary"} 1"#,
            r#"converge_drbd_role{service="db",drbd_resource="db",role="Secondary"} 1"#,
            r#"converge_drbd_disk_state{service="web",drbd_resource="web",volume="0",state="UpToDate"} 1"#,
            r#"converge_drbd_quorum{service="web",drbd_resource="web",volume="0"} 1"#,
            r#"converge_drbd_peer_role{service="db",drbd_resource="db",peer="deb2",role="Primary"} 1"#,
            r#"converge_drbd_peer_connection_state{service="web",drbd_resource="web",peer="deb2",state="Connected"} 1"#,
            r#"converge_drbd_peer_disk_state{service="web",drbd_resource="web",peer="deb2",volume="0",state="UpToDate"} 1"#,
            r#"converge_actions_total{action="app_start",result="ok"} 1"#,
        ],
    );
    assert!(
        metrics.contains("converge_manifest_revision_info{revision=\""),
        "{metrics}"
    );
    // Each reload finds the broken manifest again (how many there are is the watcher's).
    assert!(
        value(
            &metrics,
            r#"converge_manifest_reloads_total{result="error"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        value(&metrics, "converge_reconcile_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        value(
            &metrics,
            r#"converge_service_last_success_timestamp_seconds{service="app"}"#
        )
        .is_some_and(|t| t > 1.7e9),
        "{metrics}"
    );
    let checked = promtool_accepts(&metrics, "the scrape");

    // Anything but GET /metrics is refused, and the daemon goes on.
    for (request, status) in [
        ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (
            "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            "HTTP/1.1 405 Method Not Allowed",
        ),
    ] {
        assert_eq!(http(addr, request).0, status);
    }
    // A client that connects and never speaks holds up neither the scrape nor the daemon.
    let silent = TcpStream::connect(addr).expect("connect");
    fs::remove_file(&marker).expect("drift");
    daemon.signal(libc::SIGHUP);
    eventually("the drift corrected and counted", &daemon.log, || {
        value(
            &scrape(addr),
            r#"converge_actions_total{action="app_start",result="ok"}"#,
        ) == Some(2.0)
    });
    drop(silent);

    // The textfile: the same text, replaced by rename, readable by node_exporter.
    eventually("the textfile", &daemon.log, || {
        fs::read_to_string(&textfile).is_ok_and(|t| {
            value(
                &t,
                r#"converge_actions_total{action="app_start",result="ok"}"#,
            ) == Some(2.0)
        })
    });
    let written = fs::read_to_string(&textfile).expect("textfile");
    if checked {
        promtool_accepts(&written, "the textfile");
    }
    let leftovers: Vec<_> = fs::read_dir(&textdir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["converge.prom"], "no temporary file left");
    assert_eq!(daemon.stop(WAIT), 0);
    // What it holds after the exit is the state at the exit.
    let last = fs::read_to_string(&textfile).expect("textfile");
    assert_eq!(
        value(&last, r#"converge_service_converged{service="app"}"#),
        Some(1.0),
        "{last}"
    );
}

#[test]
fn a_metrics_address_in_use_stops_the_start_with_the_reason() {
    let sb = Sandbox::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    sb.config(&format!("metrics:\n  listen: 127.0.0.1:{port}\n"));
    let dir = sb.path("manifests");
    fs::create_dir(&dir).expect("mkdir");
    let out = sb.converge(&["run", dir.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("cannot serve metrics on 127.0.0.1:{port}")),
        "{}",
        text(&out.stderr)
    );
}

/// As root, on the simulators: the seed service brought up by the daemon, then its DRBD
/// resource as DRBD itself shows it, and every action of the start counted.
#[test]
fn the_seed_service_on_the_simulators_in_the_metrics() {
    in_namespace(
        "the_seed_service_on_the_simulators_in_the_metrics",
        |work| {
            let node = Node::new(work);
            let mut config = fs::read_to_string(&node.sb.config).expect("config");
            config.push_str("debounce: 50ms\nresync: 1h\nmetrics:\n  listen: 127.0.0.1:0\n");
            fs::write(&node.sb.config, config).expect("write config");
            let mut command = node.command(CONVERGE);
            command.arg("--config").arg(&node.sb.config).arg("run");
            let daemon = Daemon::spawn(command, node.sb.work.join("daemon.log"));
            let addr = daemon.metrics_addr();
            let service = converge_sim::sandbox::SERVICE;
            eventually("the seed service converged", &daemon.log, || {
                value(
                    &scrape(addr),
                    &format!("converge_service_converged{{service=\"{service}\"}}"),
                ) == Some(1.0)
            });
            let metrics = scrape(addr);
            let s = format!("service=\"{service}\"");
            assert_lines(
                &metrics,
                &[
                    &format!("converge_drbd_role{{{s},drbd_resource=\"data\",role=\"Primary\"}} 1"),
                    &format!(
                        "converge_drbd_disk_state{{{s},drbd_resource=\"data\",volume=\"0\",state=\"UpToDate\"}} 1"
                    ),
                    &format!("converge_resource_status{{{s},resource=\"fs#1\",status=\"up\"}} 1"),
                    &format!(
                        "converge_resource_status{{{s},resource=\"container#0\",status=\"up\"}} 1"
                    ),
                    r#"converge_actions_total{action="drbd_up",result="ok"} 1"#,
                    r#"converge_actions_total{action="drbd_primary",result="ok"} 1"#,
                    r#"converge_actions_total{action="mount",result="ok"} 1"#,
                    r#"converge_actions_total{action="container_start",result="ok"} 1"#,
                ],
            );
            assert!(
                metrics.contains("converge_drbd_peer_connection_state{"),
                "{metrics}"
            );
            promtool_accepts(&metrics, "the seed service's scrape");
            assert_eq!(daemon.stop(WAIT), 0);
            node.set_state("down");
            assert_eq!(node.reconcile().code, 0);
        },
    );
}
