//! Observation: one pass over the node builds one [`NodeState`] value.
//!
//! The parsers (one file per source) are pure: text in, typed state out, never panicking.
//! [`runner`] is the thin part that reads files and runs programs — in batches: one pass
//! reads /proc/drbd and mountinfo once and runs a constant number of programs, whatever the
//! number of services.

pub mod drbd;
pub mod drbd_conf;
pub mod drbdadm_role;
pub mod drbdsetup_status;
pub mod events2;
pub mod lxc;
pub mod mountinfo;
pub mod proc_drbd;
pub mod vz;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::manifest::{AppStatus, ResourceId};
pub use drbd::{DrbdResource, DrbdResources, Role};
pub use mountinfo::{DevNum, Mount};

/// A source that could not be observed, with a one-line reason meant for the operator
/// (e.g. "drbdsetup not found: install drbd-utils or set commands.drbdsetup").
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "value", rename_all = "lowercase")]
pub enum Observed<T> {
    Ok(T),
    Unavailable(String),
}

impl<T> Observed<T> {
    pub fn ok(&self) -> Option<&T> {
        match self {
            Observed::Ok(v) => Some(v),
            Observed::Unavailable(_) => None,
        }
    }
}

/// A container's state, common to OpenVZ and LXC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Does not exist on this node (vz `deleted`, or not listed).
    Absent,
    Stopped,
    /// OpenVZ: private area mounted, not running.
    Mounted,
    Starting,
    Running,
    Stopping,
    Frozen,
    /// LXC: a start that is failing.
    Aborting,
}

/// converge's record of a container it froze because the node running the service lost quorum
/// (`on_quorum_loss: freeze`): what tells its freeze from one made by someone else, which
/// converge never undoes. Kept for this boot, until the container is thawed to run on, or
/// stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuorumFreeze {
    /// Thawed to be stopped (the service goes down here): the container's stop comes next.
    /// (Whether its apps' stop scripts run is DRBD's role's to say: not once DRBD demoted the
    /// node, when their I/O fails.)
    pub stopping: bool,
}

/// DRBD found a split brain on a connection (its `split-brain` handler was called): each side
/// wrote what the other has not, and only a person may say whose writes to throw away.
/// converge's record of it (`state_dir`), kept until the connection is seen Connected again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitBrain {
    /// The peer's connection name (its host name).
    pub peer: String,
    /// When it was seen, RFC 3339.
    pub since: String,
}

/// By DRBD resource, the peers (connection names; the empty name for DRBD 8.4's one unnamed
/// connection) whose connection DRBD's event stream has reported StandAlone.
pub type StandAloneReported = BTreeMap<String, BTreeSet<String>>;

/// A DRBD resource file a manifest names (`config:` of a `drbd#N`), against the one installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrbdFile {
    /// The file in the manifest directory.
    pub source: PathBuf,
    /// Where converge installs it: `RES.res` in the DRBD configuration directory.
    pub installed: PathBuf,
    pub state: DrbdFileState,
}

/// How the manifest directory's resource file stands against the installed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DrbdFileState {
    /// The installed file is the manifest directory's, byte for byte.
    Installed,
    /// The installed file differs or is missing, and drbdadm accepts the new one with the rest
    /// of the configuration: it is to be installed.
    Differs { missing: bool },
    /// drbdadm refuses the new file (its own message), or it cannot be read: the installed one,
    /// if any, stays as it is.
    Refused { why: String, missing: bool },
    /// The file defines the resource without a section for this node (`on HOST`): nothing
    /// to install here.
    NotHere,
}

/// What the checks of one app resource said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppObservation {
    /// Aggregated over the checks (any warn → warn; all up → up; all down → down; mixed → warn).
    pub status: AppStatus,
    /// One line for `converge status`, e.g. "C10foo up".
    pub detail: String,
}

/// Everything one observation pass saw. The planner decides from this value alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeState {
    pub node: String,
    /// DRBD resources that are up on this node, by name; an absent name is not configured.
    pub drbd: Observed<DrbdResources>,
    /// DRBD resources whose configuration has a section for this node (`drbdadm
    /// sh-resources`): the ones it stands by for when a service runs elsewhere. Asked only when
    /// a service stands by here (`None` otherwise).
    pub drbd_configured: Option<Observed<BTreeSet<String>>>,
    /// The running options of the DRBD resources of services that fail over (`drbdsetup show`),
    /// by resource, for those up here: whether quorum is enforced decides whether DRBD's quorum
    /// report can be trusted. Absent: not asked (no such service, or the resource is down).
    pub drbd_options: BTreeMap<String, Observed<drbd_conf::ResourceOptions>>,
    pub mounts: Observed<Vec<Mount>>,
    /// Device numbers of the block devices the manifests and DRBD minors name
    /// (fs `dev`s and `/dev/drbdN`), for matching mounts by device rather than by name.
    pub devices: BTreeMap<PathBuf, DevNum>,
    /// Mount points that exist as directories.
    pub dirs: BTreeSet<PathBuf>,
    pub vz: Observed<BTreeMap<String, ContainerState>>,
    pub lxc: Observed<BTreeMap<String, ContainerState>>,
    /// Per service, per app resource; missing means it could not be observed (e.g. its container
    /// is not running, or it has no check and no recorded start).
    pub apps: BTreeMap<String, BTreeMap<ResourceId, AppObservation>>,
    /// Per service, per app with a scripts directory whose host runs: the names in that
    /// directory, for its checks and for showing which scripts a start or stop would run.
    pub scripts: BTreeMap<String, BTreeMap<ResourceId, Vec<String>>>,
    /// By service: the containers converge froze on a quorum loss ([`QuorumFreeze`]).
    pub quorum_frozen: BTreeMap<String, QuorumFreeze>,
    /// By DRBD resource: the split brains DRBD reported ([`SplitBrain`]).
    pub split_brains: BTreeMap<String, Vec<SplitBrain>>,
    /// By DRBD resource: the peers (connection names) whose connection DRBD's event stream has
    /// said is StandAlone, read before [`NodeState::split_brains`]. DRBD calls its split-brain
    /// handler before it drops the connection, so a StandAlone the stream has reported comes
    /// with its split brain already recorded; one only the status shows may be a split brain
    /// whose news is still in the pipe. `None` when no stream runs (`reconcile --once`, or
    /// while the daemon restarts it): the status alone decides then.
    pub standalone_reported: Option<StandAloneReported>,
    /// By DRBD resource: the resource file its manifest names (`config:`), when one does.
    pub drbd_files: BTreeMap<String, DrbdFile>,
    /// DRBD resources whose file converge installed and has not applied yet (`drbdadm
    /// adjust`): its record, kept until the adjust succeeds, so that a crash between the two
    /// does not leave the running resource on the old configuration unnoticed.
    pub drbd_adjust: BTreeSet<String>,
    /// By DRBD resource up here with a file converge manages: what `drbdadm -d adjust RES`
    /// would run, the drift of the running configuration from the installed file. Asked only
    /// by `converge status` and `converge plan` (one `drbdadm` each); empty otherwise.
    pub drbd_drift: BTreeMap<String, Observed<Vec<String>>>,
}

impl NodeState {
    /// The listing of an app's scripts directory, when it was observed.
    pub fn scripts_of(&self, service: &str, rid: ResourceId) -> Option<&[String]> {
        self.scripts
            .get(service)
            .and_then(|apps| apps.get(&rid))
            .map(Vec::as_slice)
    }
}

/// Any warn → warn; n/a is neutral; all up → up; all down → down; up and down mixed → warn.
pub fn aggregate_apps(statuses: &[AppStatus]) -> AppStatus {
    let relevant: Vec<AppStatus> = statuses
        .iter()
        .copied()
        .filter(|s| *s != AppStatus::NotApplicable)
        .collect();
    if relevant.contains(&AppStatus::Warn) {
        AppStatus::Warn
    } else if relevant.is_empty() {
        AppStatus::NotApplicable
    } else if relevant.iter().all(|s| *s == AppStatus::Up) {
        AppStatus::Up
    } else if relevant.iter().all(|s| *s == AppStatus::Down) {
        AppStatus::Down
    } else {
        AppStatus::Warn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_status_aggregates_as_opensvc_does() {
        use AppStatus::*;
        assert_eq!(aggregate_apps(&[Up, Up]), Up);
        assert_eq!(aggregate_apps(&[Down, Down]), Down);
        assert_eq!(aggregate_apps(&[Up, Down]), Warn);
        assert_eq!(aggregate_apps(&[Up, NotApplicable]), Up);
        assert_eq!(aggregate_apps(&[NotApplicable]), NotApplicable);
        assert_eq!(aggregate_apps(&[Down, Warn, Up]), Warn);
    }
}
