//! The daemon's metrics in Prometheus' text exposition format (version 0.0.4): a typed model of
//! what converge exports ([`Snapshot`], and [`ServiceObservation`] for what one observation
//! said of a service) and its rendering ([`render`]). Pure: the node crate collects a snapshot
//! from the daemon's state, and serves or writes the text.
//!
//! Every label value is either one of a small fixed set (statuses, DRBD states, result kinds,
//! block reasons, action kinds) or the name of something the manifests or DRBD's configuration
//! name (a service, a resource, a peer). No free text (an error, a block's reason) ever becomes
//! a label: the number of series is that of the things converge manages, whatever goes wrong.

use std::collections::BTreeMap;

use crate::manifest::{ContainerKind, DesiredState, Service, Spec};
use crate::observe::drbd::{ConnectionState, DiskState, DrbdResource, Quorum, Role};
use crate::observe::{NodeState, Observed};
use crate::plan::{BlockKind, Blocked};
use crate::status::{ServiceStatus, Status};

/// The Content-Type of the text this module renders.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The label value of a DRBD state this version of converge does not know: DRBD's own
/// spelling would make the set of values open-ended.
pub const OTHER: &str = "Other";

/// A label value taken from outside (a revision, a peer's name) is cut to this many bytes: one
/// series must not cost more than a line of text.
pub const LABEL_VALUE_MAX: usize = 256;

/// The upper bounds of the reconcile duration histogram, in seconds: a converged service's look
/// takes milliseconds, a start with its scripts seconds, a stuck script up to its timeout.
pub const RECONCILE_BUCKETS: [f64; 13] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Why a service is held, as a label. From the block's typed kind and whether the source its
/// resource is observed from could be read: never from the reason's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockReason {
    /// A safety rule refused (a peer is Primary, a device is held open…).
    Refused,
    /// Waiting for what passes by itself: a peer to step down or come into sight.
    Waiting,
    /// What the blocked resource is observed from (DRBD, the mount table, the container
    /// listing) could not be read.
    Unobservable,
}

impl BlockReason {
    pub const ALL: [BlockReason; 3] = [
        BlockReason::Refused,
        BlockReason::Waiting,
        BlockReason::Unobservable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::Refused => "refused",
            BlockReason::Waiting => "waiting",
            BlockReason::Unobservable => "unobservable",
        }
    }

    /// The reason `blocked`, a block of `service`'s plan against `node`, is exported with.
    pub fn of(blocked: &Blocked, service: &Service, node: &NodeState) -> BlockReason {
        if blocked.kind == BlockKind::Waiting {
            return BlockReason::Waiting;
        }
        let source_unreadable = match service.resource(blocked.rid).map(|r| &r.spec) {
            Some(Spec::Drbd(_)) => matches!(node.drbd, Observed::Unavailable(_)),
            Some(Spec::Fs(_)) => matches!(node.mounts, Observed::Unavailable(_)),
            Some(Spec::Container(c)) => match &c.kind {
                ContainerKind::Vz(_) => matches!(node.vz, Observed::Unavailable(_)),
                ContainerKind::Lxc(_) => matches!(node.lxc, Observed::Unavailable(_)),
            },
            Some(Spec::App(_)) | None => false,
        };
        if source_unreadable {
            BlockReason::Unobservable
        } else {
            BlockReason::Refused
        }
    }
}

/// Where a service stands with the daemon: the kinds of its results (`daemon.json`'s
/// `result.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResultKind {
    Pending,
    Running,
    Converged,
    Blocked,
    Waiting,
    Failed,
    Interrupted,
    Stuck,
    Orphaned,
}

impl ResultKind {
    pub const ALL: [ResultKind; 9] = [
        ResultKind::Pending,
        ResultKind::Running,
        ResultKind::Converged,
        ResultKind::Blocked,
        ResultKind::Waiting,
        ResultKind::Failed,
        ResultKind::Interrupted,
        ResultKind::Stuck,
        ResultKind::Orphaned,
    ];

    /// The kinds a reconcile can end with.
    pub const OUTCOMES: [ResultKind; 6] = [
        ResultKind::Converged,
        ResultKind::Blocked,
        ResultKind::Waiting,
        ResultKind::Failed,
        ResultKind::Interrupted,
        ResultKind::Stuck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Pending => "pending",
            ResultKind::Running => "running",
            ResultKind::Converged => "converged",
            ResultKind::Blocked => "blocked",
            ResultKind::Waiting => "waiting",
            ResultKind::Failed => "failed",
            ResultKind::Interrupted => "interrupted",
            ResultKind::Stuck => "stuck",
            ResultKind::Orphaned => "orphaned",
        }
    }
}

/// How one action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionResult {
    /// It ran and succeeded.
    Ok,
    /// It ran and failed, or could not run.
    Failed,
    /// A safety rule refused it right before it would run: nothing ran.
    Blocked,
    /// A peer must step down first, as seen right before it would run: nothing ran.
    Waiting,
}

impl ActionResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionResult::Ok => "ok",
            ActionResult::Failed => "failed",
            ActionResult::Blocked => "blocked",
            ActionResult::Waiting => "waiting",
        }
    }
}

/// One local volume of a DRBD resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdVolume {
    pub volume: u32,
    pub disk: String,
    /// What DRBD says of quorum on it; `None` where it says nothing.
    pub quorum: Option<bool>,
}

/// One peer of a DRBD resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdPeer {
    /// Its connection name, else `node-id N`, else `peer` (DRBD 8.4 names none).
    pub peer: String,
    pub role: String,
    pub connection: String,
    /// Its disk per volume.
    pub disks: Vec<(u32, String)>,
}

/// A DRBD resource that is up on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdState {
    pub role: String,
    pub volumes: Vec<DrbdVolume>,
    pub peers: Vec<DrbdPeer>,
}

/// One DRBD resource of a service, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdMetrics {
    /// DRBD's name for it (`res`).
    pub resource: String,
    /// `None`: not up on this node.
    pub state: Option<DrbdState>,
}

fn role_label(role: &Role) -> String {
    match role {
        Role::Other(_) => OTHER.to_string(),
        known => known.as_str().to_string(),
    }
}

fn disk_label(disk: &DiskState) -> String {
    match disk {
        DiskState::Other(_) => OTHER.to_string(),
        known => known.as_str().to_string(),
    }
}

fn connection_label(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Other(_) => OTHER.to_string(),
        known => known.as_str().to_string(),
    }
}

impl DrbdMetrics {
    /// `resource` as observed: `None` when it is not up here.
    pub fn of(resource: &str, observed: Option<&DrbdResource>) -> DrbdMetrics {
        let state = observed.map(|drbd| DrbdState {
            role: role_label(&drbd.role),
            volumes: drbd
                .devices
                .iter()
                .map(|d| DrbdVolume {
                    volume: d.volume,
                    disk: disk_label(&d.disk),
                    quorum: match d.quorum {
                        Quorum::Yes => Some(true),
                        Quorum::No => Some(false),
                        Quorum::Unknown => None,
                    },
                })
                .collect(),
            peers: drbd
                .connections
                .iter()
                .map(|c| DrbdPeer {
                    peer: c.peer_name().unwrap_or_else(|| "peer".to_string()),
                    role: role_label(&c.peer_role),
                    connection: connection_label(&c.state),
                    disks: c
                        .peer_devices
                        .iter()
                        .map(|p| (p.volume, disk_label(&p.peer_disk)))
                        .collect(),
                })
                .collect(),
        });
        DrbdMetrics {
            resource: resource.to_string(),
            state,
        }
    }
}

/// What one observation said of a service, typed for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceObservation {
    /// This node should hold the service up (the plan's desired state here: not on a node
    /// that stands by, not for a failover service another node holds).
    pub desired_up: bool,
    pub converged: bool,
    pub blocked: Option<BlockReason>,
    /// Each resource's status: `drbd#0`, up.
    pub resources: Vec<(String, Status)>,
    /// Its enabled DRBD resources; empty when DRBD could not be observed.
    pub drbd: Vec<DrbdMetrics>,
}

impl ServiceObservation {
    /// From the status of `service` against `node` (the observation it was computed from).
    pub fn of(status: &ServiceStatus, service: &Service, node: &NodeState) -> ServiceObservation {
        let drbd = match &node.drbd {
            Observed::Ok(observed) => service
                .resources
                .iter()
                .filter(|r| !r.disabled)
                .filter_map(|r| r.spec.as_drbd())
                .map(|d| DrbdMetrics::of(&d.res, observed.get(&d.res)))
                .collect(),
            Observed::Unavailable(_) => Vec::new(),
        };
        ServiceObservation {
            desired_up: status.desired == DesiredState::Up,
            converged: status.converged,
            blocked: status
                .blocked
                .as_ref()
                .map(|b| BlockReason::of(b, service, node)),
            resources: status
                .resources
                .iter()
                .map(|r| (r.rid.to_string(), r.status))
                .collect(),
            drbd,
        }
    }
}

/// A histogram with fixed buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; one more than `bounds`: the last is above every bound.
    counts: Vec<u64>,
    sum: f64,
}

impl Default for Histogram {
    /// The reconcile duration histogram's buckets.
    fn default() -> Self {
        Histogram::new(&RECONCILE_BUCKETS)
    }
}

impl Histogram {
    /// `bounds` ascending.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get_mut(bucket) {
            *count += 1;
        }
        self.sum += value;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }
}

/// One service, as the daemon knows it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceMetrics<'a> {
    pub service: &'a str,
    pub result: ResultKind,
    /// The last observation; `None` before the first.
    pub observation: Option<&'a ServiceObservation>,
    /// When a reconcile or a look last found it converged, in seconds since the epoch.
    pub last_success: Option<f64>,
}

/// Everything the exposition says.
#[derive(Debug, Clone, Default)]
pub struct Snapshot<'a> {
    /// converge's version.
    pub version: &'a str,
    /// The manifest revision in force, when known.
    pub revision: Option<&'a str>,
    /// The manifest errors now.
    pub manifest_errors: usize,
    /// Reloads of the manifest directory taken in without errors, and with some.
    pub reloads_ok: u64,
    pub reloads_error: u64,
    /// Services in force (and orphans), by name.
    pub services: Vec<ServiceMetrics<'a>>,
    /// Reconciles ended, by outcome.
    pub reconciles: BTreeMap<ResultKind, u64>,
    pub reconcile_seconds: Option<&'a Histogram>,
    /// Actions run, by kind (`drbd_primary`, `mount`…) and result.
    pub actions: BTreeMap<(&'static str, ActionResult), u64>,
}

/// The text exposition of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    // About 60 lines of 90 bytes per service with DRBD: one allocation for most.
    let mut t = Text {
        out: String::with_capacity(4096 + snapshot.services.len() * 6000),
    };
    t.family(
        "converge_build_info",
        "gauge",
        "converge's version; always 1.",
    );
    t.sample("converge_build_info", &[("version", snapshot.version)], 1.0);
    t.family(
        "converge_manifest_revision_info",
        "gauge",
        "The manifest revision in force (the symlink target's name and a content hash); always 1.",
    );
    if let Some(revision) = snapshot.revision {
        t.sample(
            "converge_manifest_revision_info",
            &[("revision", revision)],
            1.0,
        );
    }
    t.family(
        "converge_manifest_errors",
        "gauge",
        "Manifest errors now (each keeps the manifest's last good version in force).",
    );
    t.sample(
        "converge_manifest_errors",
        &[],
        snapshot.manifest_errors as f64,
    );
    t.family(
        "converge_manifest_reloads_total",
        "counter",
        "Reloads of the manifest directory taken in, by whether they found errors.",
    );
    t.sample(
        "converge_manifest_reloads_total",
        &[("result", "ok")],
        snapshot.reloads_ok as f64,
    );
    t.sample(
        "converge_manifest_reloads_total",
        &[("result", "error")],
        snapshot.reloads_error as f64,
    );
    let services = &snapshot.services;
    let observed = || {
        services
            .iter()
            .filter_map(|s| s.observation.map(|o| (s.service, o)))
    };

    t.family(
        "converge_service_desired_up",
        "gauge",
        "1 when this node should hold the service up, at the last observation.",
    );
    for (service, o) in observed() {
        t.sample(
            "converge_service_desired_up",
            &[("service", service)],
            bool_value(o.desired_up),
        );
    }
    t.family(
        "converge_service_converged",
        "gauge",
        "1 when the last observation found the service converged (0 before the first).",
    );
    for s in services {
        let converged = s.observation.is_some_and(|o| o.converged);
        t.sample(
            "converge_service_converged",
            &[("service", s.service)],
            bool_value(converged),
        );
    }
    t.family(
        "converge_service_blocked",
        "gauge",
        "1 for the reason the service is held at the last observation (refused, waiting, unobservable), 0 for the others.",
    );
    for (service, o) in observed() {
        for reason in BlockReason::ALL {
            t.sample(
                "converge_service_blocked",
                &[("service", service), ("reason", reason.as_str())],
                bool_value(o.blocked == Some(reason)),
            );
        }
    }
    t.family(
        "converge_service_result",
        "gauge",
        "1 for where the service stands with the daemon (daemon.json's result kind), 0 for the others.",
    );
    for s in services {
        for result in ResultKind::ALL {
            t.sample(
                "converge_service_result",
                &[("service", s.service), ("result", result.as_str())],
                bool_value(s.result == result),
            );
        }
    }
    t.family(
        "converge_service_last_success_timestamp_seconds",
        "gauge",
        "When a reconcile or a look last found the service converged, in seconds since the epoch.",
    );
    for s in services {
        if let Some(at) = s.last_success {
            t.sample(
                "converge_service_last_success_timestamp_seconds",
                &[("service", s.service)],
                at,
            );
        }
    }
    t.family(
        "converge_resource_status",
        "gauge",
        "1 for each resource's status at the last observation (up, down, warn, n/a, stdby up), 0 for the others.",
    );
    for (service, o) in observed() {
        for (resource, status) in &o.resources {
            for each in STATUSES {
                t.sample(
                    "converge_resource_status",
                    &[
                        ("service", service),
                        ("resource", resource.as_str()),
                        ("status", each.as_str()),
                    ],
                    bool_value(*status == each),
                );
            }
        }
    }
    render_drbd(&mut t, snapshot);
    t.family(
        "converge_reconciles_total",
        "counter",
        "Reconciles ended, by outcome.",
    );
    for result in ResultKind::OUTCOMES {
        let count = snapshot.reconciles.get(&result).copied().unwrap_or(0);
        t.sample(
            "converge_reconciles_total",
            &[("result", result.as_str())],
            count as f64,
        );
    }
    let empty = Histogram::default();
    let histogram = snapshot.reconcile_seconds.unwrap_or(&empty);
    t.family(
        "converge_reconcile_duration_seconds",
        "histogram",
        "How long each reconcile of one service took, from its first observation to its last.",
    );
    let mut cumulative = 0;
    for (bound, count) in histogram.bounds.iter().zip(&histogram.counts) {
        cumulative += count;
        let le = format_value(*bound);
        t.sample(
            "converge_reconcile_duration_seconds_bucket",
            &[("le", le.as_str())],
            cumulative as f64,
        );
    }
    t.sample(
        "converge_reconcile_duration_seconds_bucket",
        &[("le", "+Inf")],
        histogram.count() as f64,
    );
    t.sample(
        "converge_reconcile_duration_seconds_sum",
        &[],
        histogram.sum,
    );
    t.sample(
        "converge_reconcile_duration_seconds_count",
        &[],
        histogram.count() as f64,
    );
    t.family(
        "converge_actions_total",
        "counter",
        "Actions run (or refused right before running), by kind and result; a series appears with its first action.",
    );
    for (&(action, result), count) in &snapshot.actions {
        t.sample(
            "converge_actions_total",
            &[("action", action), ("result", result.as_str())],
            *count as f64,
        );
    }
    t.out
}

/// Every status a resource can have, in the order rendered.
const STATUSES: [Status; 5] = [
    Status::Up,
    Status::Down,
    Status::Warn,
    Status::NotApplicable,
    Status::StandbyUp,
];

fn render_drbd(t: &mut Text, snapshot: &Snapshot) {
    let all = || {
        snapshot.services.iter().flat_map(|s| {
            s.observation
                .into_iter()
                .flat_map(|o| o.drbd.iter())
                .map(move |d| (s.service, d))
        })
    };
    let up = || all().filter_map(|(s, d)| d.state.as_ref().map(|state| (s, d, state)));
    t.family(
        "converge_drbd_resource_up",
        "gauge",
        "1 when the service's DRBD resource is up on this node, at the last observation.",
    );
    for (service, d) in all() {
        t.sample(
            "converge_drbd_resource_up",
            &[("service", service), ("drbd_resource", d.resource.as_str())],
            bool_value(d.state.is_some()),
        );
    }
    t.family(
        "converge_drbd_role",
        "gauge",
        "The DRBD resource's role on this node, as a label; always 1.",
    );
    for (service, d, state) in up() {
        t.sample(
            "converge_drbd_role",
            &[
                ("service", service),
                ("drbd_resource", d.resource.as_str()),
                ("role", state.role.as_str()),
            ],
            1.0,
        );
    }
    t.family(
        "converge_drbd_disk_state",
        "gauge",
        "Each local volume's disk state, as a label; always 1.",
    );
    for (service, d, state) in up() {
        for v in &state.volumes {
            let volume = v.volume.to_string();
            t.sample(
                "converge_drbd_disk_state",
                &[
                    ("service", service),
                    ("drbd_resource", d.resource.as_str()),
                    ("volume", volume.as_str()),
                    ("state", v.disk.as_str()),
                ],
                1.0,
            );
        }
    }
    t.family(
        "converge_drbd_quorum",
        "gauge",
        "1 when DRBD says the volume has quorum, 0 when it says it has not; absent where DRBD says nothing.",
    );
    for (service, d, state) in up() {
        for v in &state.volumes {
            if let Some(quorum) = v.quorum {
                let volume = v.volume.to_string();
                t.sample(
                    "converge_drbd_quorum",
                    &[
                        ("service", service),
                        ("drbd_resource", d.resource.as_str()),
                        ("volume", volume.as_str()),
                    ],
                    bool_value(quorum),
                );
            }
        }
    }
    let peers = || up().flat_map(|(s, d, state)| state.peers.iter().map(move |p| (s, d, p)));
    t.family(
        "converge_drbd_peer_role",
        "gauge",
        "Each peer's role as this node sees it, as a label; always 1.",
    );
    for (service, d, p) in peers() {
        t.sample(
            "converge_drbd_peer_role",
            &[
                ("service", service),
                ("drbd_resource", d.resource.as_str()),
                ("peer", p.peer.as_str()),
                ("role", p.role.as_str()),
            ],
            1.0,
        );
    }
    t.family(
        "converge_drbd_peer_connection_state",
        "gauge",
        "Each peer's connection state, as a label; always 1.",
    );
    for (service, d, p) in peers() {
        t.sample(
            "converge_drbd_peer_connection_state",
            &[
                ("service", service),
                ("drbd_resource", d.resource.as_str()),
                ("peer", p.peer.as_str()),
                ("state", p.connection.as_str()),
            ],
            1.0,
        );
    }
    t.family(
        "converge_drbd_peer_disk_state",
        "gauge",
        "Each peer volume's disk state as this node sees it, as a label; always 1.",
    );
    for (service, d, p) in peers() {
        for (volume, disk) in &p.disks {
            let volume = volume.to_string();
            t.sample(
                "converge_drbd_peer_disk_state",
                &[
                    ("service", service),
                    ("drbd_resource", d.resource.as_str()),
                    ("peer", p.peer.as_str()),
                    ("volume", volume.as_str()),
                    ("state", disk.as_str()),
                ],
                1.0,
            );
        }
    }
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The exposition being written.
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(help, &mut self.out);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    /// One sample; label names are this module's constants, valid by construction.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(value, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(value, &mut self.out);
        self.out.push('\n');
    }
}

/// Appends `value` as the exposition format wants a label value: `\`, `"` and line feeds
/// escaped, and cut to [`LABEL_VALUE_MAX`] bytes (at a character boundary).
pub fn escape_label_value(value: &str, out: &mut String) {
    let mut end = value.len().min(LABEL_VALUE_MAX);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let value = &value[..end];
    // Most values (names, states) need no escape: copied whole.
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `help` as a HELP line wants it: `\` and line feeds escaped.
pub fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends [`format_value`]`(value)` to `out`, without a string of its own for the 0s and 1s
/// most samples are.
fn push_value(value: f64, out: &mut String) {
    if value == 0.0 {
        out.push('0');
    } else if value == 1.0 {
        out.push('1');
    } else if value.is_finite() {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = write!(out, "{value}");
    } else {
        out.push_str(&format_value(value));
    }
}

/// A sample value as the format spells it: `NaN`, `+Inf`, `-Inf`, else Go's float syntax, which
/// Rust's shortest round-trip form (`1`, `0.25`, `1765000000.5`) is.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests;
