//! The daemon's view of the services, as `state_dir/daemon.json` holds it: what `converge
//! status` shows while a daemon runs, what the control socket answers with, what systemd's
//! STATUS= summarises. Types only, shared by the daemon and those readers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::once::Outcome;
use converge_core::metrics::ResultKind;
use converge_core::status::Status;

/// The shape of `daemon.json`: raised when a field changes meaning or goes (a new field
/// keeps it).
pub const VIEW_VERSION: u32 = 1;

/// How many reconciles of each service the view keeps.
pub const HISTORY: usize = 5;

/// The daemon's view, as written to `state_dir/daemon.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonView {
    /// [`VIEW_VERSION`]; 0 in a view written before it was kept.
    #[serde(default)]
    pub version: u32,
    pub pid: u32,
    pub node: String,
    pub manifests: PathBuf,
    /// The revision of the manifest directory in force.
    pub revision: Option<String>,
    /// Problems of the manifest directory, `file:line:column: field: message` each.
    pub errors: Vec<String>,
    /// Why deletions are being ignored, when they are.
    pub notices: Vec<String>,
    pub services: Vec<ServiceView>,
    pub updated: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub service: String,
    pub desired: String,
    /// Aggregate status at the last observation.
    pub status: Option<Status>,
    pub converged: Option<bool>,
    /// Where the service ran at the last observation: the nodes DRBD showed Primary (this
    /// node's own name included), or this node for a service without DRBD that is up here.
    #[serde(default)]
    pub runs_on: Vec<String>,
    /// This node stands by for the service (pinned to another node).
    #[serde(default)]
    pub standby: bool,
    /// Its DRBD resources at the last observation: `drbd#0: Secondary, UpToDate; peer deb2
    /// Primary, UpToDate`.
    #[serde(default)]
    pub drbd: Vec<String>,
    /// For a service that fails over, what DRBD decided here at the last observation:
    /// `standby here: deb1 holds it (Primary)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    pub result: ServiceResult,
    pub last_reconcile: Option<String>,
    /// The last [`HISTORY`] reconciles, the newest first.
    #[serde(default)]
    pub history: Vec<Reconciled>,
    pub next_retry: Option<String>,
    pub source: PathBuf,
}

/// One reconcile of a service, for its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    /// When it ended, RFC 3339.
    pub at: String,
    /// Why it started: the event, the request (`asked by converge trigger`), a retry.
    pub trigger: String,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
    pub result: ServiceResult,
}

/// Where a service stands with the daemon. Serialized with a stable tag (`"kind"`), so that
/// `converge status` (and any other reader of `daemon.json`) matches on the kind, never on text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceResult {
    /// In force, not looked at yet.
    #[default]
    Pending,
    /// A reconcile is running.
    Running,
    Converged,
    /// A safety rule refused, or something it depends on cannot be observed.
    Blocked {
        reason: String,
    },
    /// Waiting for a peer to step down (or to come into sight) before promoting.
    Waiting {
        reason: String,
    },
    /// An action failed; retried after a backoff.
    Failed {
        error: String,
        rolled_back: bool,
    },
    /// The daemon stopped between two steps.
    Interrupted,
    /// This node lost quorum and cannot give the service up (see [`Outcome::Stuck`]).
    Stuck {
        reason: String,
    },
    /// Its manifest was deleted and `prune` is off: left as it is, no longer reconciled.
    Orphaned,
}

impl ServiceResult {
    /// What a reconcile's outcome leaves the service as.
    pub fn of(outcome: &Outcome) -> ServiceResult {
        match outcome {
            Outcome::Converged { .. } => ServiceResult::Converged,
            Outcome::Blocked { reason, .. } => ServiceResult::Blocked {
                reason: reason.clone(),
            },
            Outcome::Waiting { reason, .. } => ServiceResult::Waiting {
                reason: reason.clone(),
            },
            Outcome::Failed {
                error, rolled_back, ..
            } => ServiceResult::Failed {
                error: error.clone(),
                rolled_back: *rolled_back,
            },
            Outcome::Interrupted { .. } => ServiceResult::Interrupted,
            Outcome::Stuck { reason, .. } => ServiceResult::Stuck {
                reason: reason.clone(),
            },
            Outcome::Requeue { reason, .. } => ServiceResult::Waiting {
                reason: reason.clone(),
            },
        }
    }

    /// The exit code of `converge trigger` answered with this result: as `reconcile --once`'s
    /// for the same outcome (0 converged, 1 failed or stuck, 3 blocked, 4 waiting).
    pub fn exit_code(&self) -> u8 {
        match self {
            ServiceResult::Converged => 0,
            ServiceResult::Blocked { .. } => 3,
            ServiceResult::Waiting { .. } => 4,
            ServiceResult::Failed { .. }
            | ServiceResult::Stuck { .. }
            | ServiceResult::Interrupted
            | ServiceResult::Orphaned
            | ServiceResult::Pending
            | ServiceResult::Running => 1,
        }
    }

    /// The kind, for the metrics (`converge_service_result`).
    pub fn kind(&self) -> ResultKind {
        match self {
            ServiceResult::Pending => ResultKind::Pending,
            ServiceResult::Running => ResultKind::Running,
            ServiceResult::Converged => ResultKind::Converged,
            ServiceResult::Blocked { .. } => ResultKind::Blocked,
            ServiceResult::Waiting { .. } => ResultKind::Waiting,
            ServiceResult::Failed { .. } => ResultKind::Failed,
            ServiceResult::Interrupted => ResultKind::Interrupted,
            ServiceResult::Stuck { .. } => ResultKind::Stuck,
            ServiceResult::Orphaned => ResultKind::Orphaned,
        }
    }

    /// Whether the service is where its manifest wants it, as far as the daemon knows; an
    /// orphan is not: nothing keeps it anywhere.
    pub fn is_settled(&self) -> bool {
        !matches!(self, ServiceResult::Orphaned)
    }
}

impl std::fmt::Display for ServiceResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceResult::Pending => f.write_str("pending"),
            ServiceResult::Running => f.write_str("running"),
            ServiceResult::Converged => f.write_str("converged"),
            ServiceResult::Blocked { reason } => write!(f, "blocked: {reason}"),
            ServiceResult::Waiting { reason } => write!(f, "waiting: {reason}"),
            ServiceResult::Failed { error, rolled_back } => write!(
                f,
                "failed: {error}{}",
                if *rolled_back { " (rolled back)" } else { "" }
            ),
            ServiceResult::Interrupted => f.write_str("interrupted"),
            ServiceResult::Stuck { reason } => write!(
                f,
                "STUCK: lost quorum and cannot give the service up: {reason}"
            ),
            ServiceResult::Orphaned => {
                f.write_str("orphaned: manifest deleted, left as it is (prune: false)")
            }
        }
    }
}
