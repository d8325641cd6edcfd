use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;
use crate::manifest::{Kind, ResourceId, parse_manifest};
use crate::observe::drbdsetup_status::parse_json;
use crate::status::service_status;

/// deb1, with `drbd` as `drbdsetup status --json` prints it (or unobservable), no mounts and no
/// containers.
fn node(drbd: Option<&str>) -> NodeState {
    NodeState {
        node: "deb1".into(),
        drbd: match drbd {
            Some(json) => Observed::Ok(parse_json(json).expect("status json")),
            None => Observed::Unavailable("/proc/drbd does not exist".into()),
        },
        drbd_configured: None,
        drbd_options: BTreeMap::new(),
        mounts: Observed::Ok(Vec::new()),
        devices: BTreeMap::new(),
        dirs: BTreeSet::new(),
        vz: Observed::Ok(BTreeMap::new()),
        lxc: Observed::Ok(BTreeMap::new()),
        apps: BTreeMap::new(),
        scripts: BTreeMap::new(),
        quorum_frozen: BTreeMap::new(),
        split_brains: BTreeMap::new(),
        standalone_reported: None,
        drbd_files: BTreeMap::new(),
        drbd_adjust: BTreeSet::new(),
        drbd_drift: BTreeMap::new(),
    }
}

/// `data` Secondary here with quorum, peer deb2 Primary and connected, both UpToDate.
const STANDBY: &str = r#"[{"name": "data", "role": "Secondary", "suspended": false,
  "devices": [{"volume": 0, "minor": 0, "disk-state": "UpToDate", "client": false,
               "open": false, "quorum": true}],
  "connections": [{"peer-node-id": 1, "name": "deb2", "connection-state": "Connected",
                   "peer-role": "Primary",
                   "peer_devices": [{"volume": 0, "replication-state": "Established",
                                     "peer-disk-state": "UpToDate"}]}]}]"#;

fn service(text: &str) -> Service {
    parse_manifest(Path::new("/m/web.yaml"), text).expect("valid manifest")
}

fn pinned(node: &str) -> Service {
    service(&format!(
        "service: web\nstate: up\nnode: {node}\nresources:\n  drbd#0:\n    res: data\n  fs#1:\n    dev: /dev/drbd0\n    mnt: /srv/web\n    type: ext4\n"
    ))
}

#[test]
fn label_values_are_escaped_and_bounded() {
    let long = "é".repeat(200); // 400 bytes: cut at 256, on a character boundary
    let cases: [(&str, &str); 6] = [
        ("plain", "plain"),
        (r#"say "hi""#, r#"say \"hi\""#),
        (r"C:\path", r"C:\\path"),
        ("two\nlines", r"two\nlines"),
        ("tab\tand ünïcode", "tab\tand ünïcode"),
        (&long, &long[..256]),
    ];
    for (value, expected) in cases {
        let mut out = String::new();
        escape_label_value(value, &mut out);
        assert_eq!(out, expected, "{value:?}");
    }
    let mut help = String::new();
    escape_help("a \\ b\nc \"q\"", &mut help);
    assert_eq!(help, r#"a \\ b\nc "q""#);
}

#[test]
fn values_are_spelled_as_the_format_wants() {
    let cases = [
        (1.0, "1"),
        (0.0, "0"),
        (0.25, "0.25"),
        (300.0, "300"),
        (1_765_000_000.5, "1765000000.5"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ];
    for (value, text) in cases {
        assert_eq!(format_value(value), text, "{value}");
    }
}

#[test]
fn block_reasons_come_from_typed_data_never_from_the_text() {
    let web = pinned("deb1");
    let drbd = ResourceId::new(Kind::Drbd, 0);
    let fs = ResourceId::new(Kind::Fs, 1);
    let block = |rid, kind| Blocked {
        rid,
        kind,
        // The text says nothing the classification may use.
        reason: "cannot observe DRBD: waiting for the peer".into(),
    };
    let mut no_mounts = node(Some(STANDBY));
    no_mounts.mounts = Observed::Unavailable("mountinfo unreadable".into());
    let cases = [
        (
            block(drbd, BlockKind::Waiting),
            node(None),
            BlockReason::Waiting,
        ),
        (
            block(drbd, BlockKind::Refused),
            node(None),
            BlockReason::Unobservable,
        ),
        (
            block(drbd, BlockKind::Refused),
            node(Some(STANDBY)),
            BlockReason::Refused,
        ),
        (
            block(fs, BlockKind::Refused),
            no_mounts.clone(),
            BlockReason::Unobservable,
        ),
        (
            block(fs, BlockKind::Refused),
            node(Some(STANDBY)),
            BlockReason::Refused,
        ),
        (
            block(drbd, BlockKind::Refused),
            no_mounts,
            BlockReason::Refused,
        ),
    ];
    for (blocked, node, expected) in cases {
        assert_eq!(
            BlockReason::of(&blocked, &web, &node),
            expected,
            "{blocked:?}"
        );
    }
}

#[test]
fn an_observation_keeps_typed_states_and_unknown_spellings_become_other() {
    // Pinned to deb2: this node stands by, DRBD Secondary is its converged state.
    let web = pinned("deb2");
    let here = node(Some(STANDBY));
    let observation = ServiceObservation::of(&service_status(&web, &here), &web, &here);
    assert_eq!(
        observation,
        ServiceObservation {
            desired_up: false,
            converged: true,
            blocked: None,
            resources: vec![
                ("drbd#0".into(), Status::StandbyUp),
                ("fs#1".into(), Status::Down)
            ],
            drbd: vec![DrbdMetrics {
                resource: "data".into(),
                state: Some(DrbdState {
                    role: "Secondary".into(),
                    volumes: vec![DrbdVolume {
                        volume: 0,
                        disk: "UpToDate".into(),
                        quorum: Some(true),
                    }],
                    peers: vec![DrbdPeer {
                        peer: "deb2".into(),
                        role: "Primary".into(),
                        connection: "Connected".into(),
                        disks: vec![(0, "UpToDate".into())],
                    }],
                }),
            }],
        }
    );
    // Pinned here with the peer Primary: held, a refusal; DRBD not observable: no DRBD series.
    let web = pinned("deb1");
    let observation = ServiceObservation::of(&service_status(&web, &here), &web, &here);
    assert!(observation.desired_up && !observation.converged);
    assert_eq!(observation.blocked, Some(BlockReason::Waiting));
    let blind = node(None);
    let observation = ServiceObservation::of(&service_status(&web, &blind), &web, &blind);
    assert_eq!(observation.blocked, Some(BlockReason::Unobservable));
    assert!(observation.drbd.is_empty());
    // A spelling from a newer DRBD never becomes a label value of its own.
    let odd = STANDBY
        .replace("\"Secondary\"", "\"Superior\"")
        .replace("\"Connected\"", "\"Entangled\"");
    let resources = parse_json(&odd).expect("json");
    let metrics = DrbdMetrics::of("data", resources.get("data"));
    let state = metrics.state.expect("up");
    assert_eq!(state.role, OTHER);
    assert_eq!(state.peers[0].connection, OTHER);
    assert_eq!(DrbdMetrics::of("gone", None).state, None);
}

#[test]
fn histogram_buckets_are_cumulative_in_the_text() {
    let mut histogram = Histogram::default();
    // Exact in binary, so that the sum prints exactly; a value on a bound counts in its bucket
    // (`le`: less than or equal).
    for seconds in [0.0078125, 0.25, 0.5, 7.0, 1000.0] {
        histogram.observe(seconds);
    }
    assert_eq!(histogram.count(), 5);
    let text = render(&Snapshot {
        reconcile_seconds: Some(&histogram),
        ..Snapshot::default()
    });
    let buckets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("converge_reconcile_duration_seconds"))
        .collect();
    assert_eq!(
        buckets,
        [
            r#"converge_reconcile_duration_seconds_bucket{le="0.01"} 1"#,
            r#"converge_reconcile_duration_seconds_bucket{le="0.05"} 1"#,
            r#"converge_reconcile_duration_seconds_bucket{le="0.1"} 1"#,
            r#"converge_reconcile_duration_seconds_bucket{le="0.25"} 2"#,
            r#"converge_reconcile_duration_seconds_bucket{le="0.5"} 3"#,
            r#"converge_reconcile_duration_seconds_bucket{le="1"} 3"#,
            r#"converge_reconcile_duration_seconds_bucket{le="2.5"} 3"#,
            r#"converge_reconcile_duration_seconds_bucket{le="5"} 3"#,
            r#"converge_reconcile_duration_seconds_bucket{le="10"} 4"#,
            r#"converge_reconcile_duration_seconds_bucket{le="30"} 4"#,
            r#"converge_reconcile_duration_seconds_bucket{le="60"} 4"#,
            r#"converge_reconcile_duration_seconds_bucket{le="120"} 4"#,
            r#"converge_reconcile_duration_seconds_bucket{le="300"} 4"#,
            r#"converge_reconcile_duration_seconds_bucket{le="+Inf"} 5"#,
            "converge_reconcile_duration_seconds_sum 1007.7578125",
            "converge_reconcile_duration_seconds_count 5",
        ]
    );
}

/// A snapshot of two services: `web` observed (standing by, DRBD up), `"odd\svc"` pending.
fn two_services(observation: &ServiceObservation) -> Snapshot<'_> {
    Snapshot {
        version: "0.1.0",
        revision: Some("abc123 \"quoted\""),
        manifest_errors: 1,
        reloads_ok: 3,
        reloads_error: 1,
        services: vec![
            ServiceMetrics {
                service: "web",
                result: ResultKind::Converged,
                observation: Some(observation),
                last_success: Some(1_765_000_000.0),
            },
            ServiceMetrics {
                service: "odd\\svc",
                result: ResultKind::Pending,
                observation: None,
                last_success: None,
            },
        ],
        reconciles: BTreeMap::from([(ResultKind::Converged, 4), (ResultKind::Failed, 1)]),
        reconcile_seconds: None,
        actions: BTreeMap::from([
            (("drbd_primary", ActionResult::Ok), 2),
            (("mount", ActionResult::Failed), 1),
        ]),
    }
}

#[test]
fn the_series_of_a_service_are_those_expected() {
    let web = pinned("deb2");
    let here = node(Some(STANDBY));
    let observation = ServiceObservation::of(&service_status(&web, &here), &web, &here);
    let text = render(&two_services(&observation));
    let expected = [
        r#"converge_build_info{version="0.1.0"} 1"#,
        r#"converge_manifest_revision_info{revision="abc123 \"quoted\""} 1"#,
        "converge_manifest_errors 1",
        r#"converge_manifest_reloads_total{result="ok"} 3"#,
        r#"converge_manifest_reloads_total{result="error"} 1"#,
        r#"converge_service_desired_up{service="web"} 0"#,
        r#"converge_service_converged{service="web"} 1"#,
        r#"converge_service_converged{service="odd\\svc"} 0"#,
        r#"converge_service_blocked{service="web",reason="refused"} 0"#,
        r#"converge_service_blocked{service="web",reason="waiting"} 0"#,
        r#"converge_service_blocked{service="web",reason="unobservable"} 0"#,
        r#"converge_service_result{service="web",result="converged"} 1"#,
        r#"converge_service_result{service="web",result="failed"} 0"#,
        r#"converge_service_result{service="odd\\svc",result="pending"} 1"#,
        r#"converge_service_last_success_timestamp_seconds{service="web"} 1765000000"#,
        r#"converge_resource_status{service="web",resource="drbd#0",status="stdby up"} 1"#,
        r#"converge_resource_status{service="web",resource="drbd#0",status="up"} 0"#,
        r#"converge_resource_status{service="web",resource="fs#1",status="down"} 1"#,
        r#"converge_drbd_resource_up{service="web",drbd_resource="data"} 1"#,
        r#"converge_drbd_role{service="web",drbd_resource="data",role="Secondary"} 1"#,
        r#"converge_drbd_disk_state{service="web",drbd_resource="data",volume="0",state="UpToDate"} 1"#,
        r#"converge_drbd_quorum{service="web",drbd_resource="data",volume="0"} 1"#,
        r#"converge_drbd_peer_role{service="web",drbd_resource="data",peer="deb2",role="Primary"} 1"#,
        r#"converge_drbd_peer_connection_state{service="web",drbd_resource="data",peer="deb2",state="Connected"} 1"#,
        r#"converge_drbd_peer_disk_state{service="web",drbd_resource="data",peer="deb2",volume="0",state="UpToDate"} 1"#,
        r#"converge_reconciles_total{result="converged"} 4"#,
        r#"converge_reconciles_total{result="failed"} 1"#,
        r#"converge_reconciles_total{result="stuck"} 0"#,
        "converge_reconcile_duration_seconds_count 0",
        r#"converge_actions_total{action="drbd_primary",result="ok"} 2"#,
        r#"converge_actions_total{action="mount",result="failed"} 1"#,
    ];
    let lines: BTreeSet<&str> = text.lines().collect();
    for line in expected {
        assert!(lines.contains(line), "missing {line:?} in:\n{text}");
    }
    // A service not observed yet has no observation-based series but its converged and result.
    for family in ["desired_up", "blocked", "last_success_timestamp_seconds"] {
        let prefix = format!("converge_service_{family}{{service=\"odd\\\\svc\"");
        assert!(!text.contains(&prefix), "{prefix} in:\n{text}");
    }
    assert_well_formed(&text);
}

/// What `promtool check metrics` checks of the structure, so that the core's tests catch it
/// without promtool: each family's HELP then TYPE once, its samples right after and only its
/// own (a histogram's `_bucket`, `_sum`, `_count`), counters named `_total`, no series twice.
fn assert_well_formed(text: &str) {
    let mut families = BTreeSet::new();
    let mut series = BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name").to_string();
            let kind_line = lines.next().expect("TYPE after HELP");
            let kind = kind_line
                .strip_prefix(&format!("# TYPE {name} "))
                .unwrap_or_else(|| panic!("{kind_line:?} after the HELP of {name}"));
            assert!(families.insert(name.clone()), "{name} twice");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
            current = Some((name, kind.to_string()));
            continue;
        }
        let (family, kind) = current.as_ref().expect("a sample before any family");
        let name = line.split(['{', ' ']).next().expect("sample name");
        let own = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name == format!("{family}{suffix}")),
            _ => name == family,
        };
        assert!(own, "{name} under the family {family}");
        let (key, value) = line.rsplit_once(' ').expect("value");
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        assert!(series.insert(key.to_string()), "{key} twice");
    }
}

#[test]
fn a_large_node_renders_well_formed_text() {
    let web = pinned("deb2");
    let here = node(Some(STANDBY));
    let observation = ServiceObservation::of(&service_status(&web, &here), &web, &here);
    let names: Vec<String> = (0..50).map(|i| format!("svc{i:02}")).collect();
    let snapshot = Snapshot {
        services: names
            .iter()
            .map(|name| ServiceMetrics {
                service: name,
                result: ResultKind::Blocked,
                observation: Some(&observation),
                last_success: None,
            })
            .collect(),
        ..two_services(&observation)
    };
    let text = render(&snapshot);
    assert_well_formed(&text);
    // Per service: 1 + 1 + 3 + 9 + 2 × 5 + 7 DRBD series.
    let per_service = text
        .lines()
        .filter(|l| l.contains("service=\"svc07\""))
        .count();
    assert_eq!(per_service, 31, "{text}");
}
