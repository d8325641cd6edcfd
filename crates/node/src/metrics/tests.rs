use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use converge_core::metrics::BlockReason;
use converge_core::status::Status;

#[test]
fn requests_are_answered_by_their_request_line_alone() {
    let long = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}",
        "a".repeat(REQUEST_MAX)
    );
    let cases: [(&[u8], Answer); 12] = [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Answer::Metrics),
        (b"GET /metrics HTTP/1.0\r\n\r\n", Answer::Metrics),
        (b"GET /metrics HTTP/1.1\n\n", Answer::Metrics),
        (b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", Answer::Metrics),
        (b"GET / HTTP/1.1\r\n\r\n", Answer::NotFound),
        (b"GET /metrics/ HTTP/1.1\r\n\r\n", Answer::NotFound),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            Answer::MethodNotAllowed,
        ),
        (b"HEAD /metrics HTTP/1.1\r\n\r\n", Answer::MethodNotAllowed),
        (b"GET /metrics\r\n\r\n", Answer::BadRequest),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
            Answer::BadRequest,
        ),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", Answer::BadRequest),
        (long.as_bytes(), Answer::TooLarge),
    ];
    for (head, expected) in cases {
        assert_eq!(
            answer(head),
            expected,
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
    let text = String::from_utf8(response(Answer::MethodNotAllowed, "")).expect("utf-8");
    assert!(
        text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nAllow: GET\r\n") && text.contains("Connection: close"),
        "{text}"
    );
    let text = String::from_utf8(response(Answer::Metrics, "x 1\n")).expect("utf-8");
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nx 1\n"), "{text}");
}

fn observation(converged: bool) -> ServiceObservation {
    ServiceObservation {
        desired_up: true,
        converged,
        blocked: (!converged).then_some(BlockReason::Refused),
        resources: vec![("app#0".into(), Status::Up)],
        drbd: Vec::new(),
    }
}

async fn request(addr: SocketAddr, text: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(text).await.expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test]
async fn the_listener_serves_the_hooks_state_and_refuses_everything_else() {
    let config = MetricsConfig {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        textfile: None,
    };
    let metrics = Metrics::start(&config)
        .await
        .expect("start")
        .expect("configured");
    let addr = metrics.addr().expect("listening");
    metrics.reloaded(false);
    metrics.reloaded(true);
    metrics.saw("web", &observation(true));
    metrics.saw("db", &observation(false));
    metrics.saw("gone", &observation(true));
    metrics.reconciled(ResultKind::Converged, Duration::from_millis(30));
    metrics.in_force(
        Some("rev1"),
        2,
        [("db", ResultKind::Blocked), ("web", ResultKind::Converged)].into_iter(),
    );
    // A client that connects and says nothing holds up nobody.
    let silent = TcpStream::connect(addr).await.expect("connect");
    let got = request(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    let body = got
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    for line in [
        r#"converge_manifest_revision_info{revision="rev1"} 1"#,
        "converge_manifest_errors 2",
        r#"converge_manifest_reloads_total{result="error"} 1"#,
        r#"converge_service_converged{service="web"} 1"#,
        r#"converge_service_converged{service="db"} 0"#,
        r#"converge_service_blocked{service="db",reason="refused"} 1"#,
        r#"converge_service_result{service="db",result="blocked"} 1"#,
        r#"converge_resource_status{service="web",resource="app#0",status="up"} 1"#,
        r#"converge_reconciles_total{result="converged"} 1"#,
        r#"converge_reconcile_duration_seconds_bucket{le="0.05"} 1"#,
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?}:\n{body}");
    }
    // Forgotten once the view no longer lists it; never converged: no success time.
    assert!(!body.contains("service=\"gone\""), "{body}");
    assert!(body.contains("converge_service_last_success_timestamp_seconds{service=\"web\"}"));
    assert!(!body.contains("converge_service_last_success_timestamp_seconds{service=\"db\"}"));
    let content_length: usize = got
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("Content-Length");
    assert_eq!(content_length, body.len());

    for (request_text, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "404 Not Found"),
        (
            b"DELETE /metrics HTTP/1.1\r\n\r\n",
            "405 Method Not Allowed",
        ),
        (b"hello\r\n\r\n", "400 Bad Request"),
    ] {
        let got = request(addr, request_text).await;
        assert!(got.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{got}");
        assert!(!got.contains("converge_"), "{got}");
    }
    // A head that never ends is cut at the cap and refused, without waiting for more.
    let mut flood = b"GET /metrics HTTP/1.1\r\n".to_vec();
    flood.extend(std::iter::repeat_n(b'a', REQUEST_MAX * 2));
    let got = request(addr, &flood).await;
    assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
    drop(silent);
    metrics.stop().await;
}

#[tokio::test]
async fn the_textfile_is_replaced_after_changes_never_written_through_a_symlink() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.path().join("converge.prom");
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious").expect("write");
    symlink(&victim, &path).expect("symlink");
    let config = MetricsConfig {
        listen: None,
        textfile: Some(path.clone()),
    };
    let metrics = Metrics::start(&config)
        .await
        .expect("start")
        .expect("configured");
    assert_eq!(metrics.addr(), None);
    metrics.saw("web", &observation(true));
    metrics.in_force(None, 0, [("web", ResultKind::Converged)].into_iter());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = fs::read_to_string(&path).unwrap_or_default();
        if text.contains("converge_service_converged{service=\"web\"} 1") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not written: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(text, metrics.render());
    assert_eq!(fs::read_to_string(&victim).expect("read"), "precious");
    let meta = fs::symlink_metadata(&path).expect("stat");
    assert!(meta.is_file(), "the symlink was replaced by a file");
    assert_eq!(meta.permissions().mode() & 0o777, TEXTFILE_MODE);
    // No temporary file left for node_exporter to trip on.
    let names: Vec<String> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // At exit, the last state is written.
    metrics.in_force(None, 0, [("web", ResultKind::Interrupted)].into_iter());
    metrics.stop().await;
    let text = fs::read_to_string(&path).expect("read");
    assert!(
        text.contains(r#"converge_service_result{service="web",result="interrupted"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_textfile_directory_others_can_write_or_missing_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = dir.path().join("open");
    fs::create_dir(&open).expect("mkdir");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
    for path in [
        open.join("converge.prom"),
        dir.path().join("missing/converge.prom"),
    ] {
        let config = MetricsConfig {
            listen: None,
            textfile: Some(path.clone()),
        };
        let err = Metrics::start(&config).await.expect_err("refused");
        assert!(matches!(err, MetricsError::Textfile(_)), "{err}");
        assert!(!path.exists());
    }
    // A port taken is an error at start too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = MetricsConfig {
        listen: Some(taken.local_addr().expect("addr")),
        textfile: None,
    };
    let err = Metrics::start(&config).await.expect_err("taken");
    assert!(
        err.to_string()
            .starts_with("cannot serve metrics on 127.0.0.1:"),
        "{err}"
    );
    assert!(
        Metrics::start(&MetricsConfig::default())
            .await
            .expect("off")
            .is_none()
    );
}
