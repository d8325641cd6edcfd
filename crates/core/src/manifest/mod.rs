//! Desired state: the typed form of one manifest file (one service).
//!
//! `load` turns a directory of YAML files into [`Service`] values, reporting every problem with
//! file, line:column and field path. Everything after this module works on these types only;
//! nothing downstream ever sees YAML.

pub mod doc;
mod events;
pub mod load;
mod locate;
pub(crate) mod schema;

pub use load::{
    LoadError, LoadErrors, Location, ManifestSet, is_manifest_name, load_dir, load_dir_lenient,
    parse_manifest,
};

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator wants for a service on this node.
///
/// Also the file form of `state` (see [`doc`]): the words are serde's, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline, description = "")]
pub enum DesiredState {
    /// Started and kept running.
    Up,
    /// Stopped and kept stopped.
    Down,
    /// Observe and report, never act.
    Frozen,
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DesiredState::Up => "up",
            DesiredState::Down => "down",
            DesiredState::Frozen => "frozen",
        })
    }
}

/// The resource kinds, in start order: the derived `Ord` is the start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Drbd,
    Fs,
    Container,
    App,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Drbd, Kind::Fs, Kind::Container, Kind::App];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Drbd => "drbd",
            Kind::Fs => "fs",
            Kind::Container => "container",
            Kind::App => "app",
        }
    }
}

/// `KIND#N`, e.g. `fs#1`. Ordered by start order: kind first, then N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub kind: Kind,
    pub index: u32,
}

impl ResourceId {
    pub fn new(kind: Kind, index: u32) -> Self {
        ResourceId { kind, index }
    }

    /// Parses `KIND#N`; `None` when the text is not a valid id.
    pub fn parse(text: &str) -> Option<ResourceId> {
        let (kind, index) = text.split_once('#')?;
        let kind = Kind::ALL.into_iter().find(|k| k.as_str() == kind)?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Reject `fs#01`: two spellings of one id would defeat the duplicate check.
        if index.len() > 1 && index.starts_with('0') {
            return None;
        }
        let index = index.parse().ok()?;
        Some(ResourceId { kind, index })
    }

    /// The log prefix, upper-cased as the OpenSVC agent prints it: `DRBD#0`, `FS#1`.
    pub fn log_label(&self) -> String {
        format!("{}#{}", self.kind.as_str().to_ascii_uppercase(), self.index)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.kind.as_str(), self.index)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The longest service name, in bytes. converge names files after a service, and a file name
/// holds at most 255 bytes: its app records are `<service>@app-<N>.start.json`, written through
/// a temporary `.<service>@app-<N>.start.json.tmp.<16 hex digits>` (the name and 48 bytes at
/// most, N having at most 10 digits), and its scripts log to `svc_<service>_<script>.log` (the
/// name, 9 bytes, and the script's own name). 128 leaves 118 bytes for a script's name. A longer
/// name would let a start run and then fail to record it ("File name too long").
pub const MAX_SERVICE_NAME: usize = 128;

/// `failover:` — how a service listed on several nodes (`nodes:`) moves between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline, description = "")]
pub enum FailoverMode {
    /// It runs on the first listed node and moves only when the list is edited.
    Manual,
    /// Each listed node decides from DRBD's quorum and roles; it moves by itself when the node
    /// holding it dies or is cut off.
    Auto,
}

/// `failback:` of a service that fails over: what happens once a node listed before the one
/// holding the service is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline, description = "")]
pub enum Failback {
    /// The service stays where it is: a move is a stop and a start, not worth making by itself.
    Never,
    /// The holder gives the service up once the preferred node is connected and UpToDate, and
    /// it moves back as a switchover.
    Preferred,
}

/// `on_quorum_loss:` of a service that fails over: what the node holding it does when DRBD
/// says its partition lost quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline, description = "")]
pub enum OnQuorumLoss {
    /// Stop the stack in order (apps, container, unmount, `drbdadm secondary`): the other side
    /// takes the service over on its own data.
    Stop,
    /// Freeze the LXC container (`lxc-freeze`) and keep the rest (Primary, mounted) while DRBD
    /// holds the I/O (`on-no-quorum suspend-io`): quorum back soon, it thaws and runs on; the
    /// other side took over meanwhile, DRBD demotes this node when they meet
    /// (`on-suspended-primary-outdated force-secondary`), and it thaws and stops.
    Freeze,
}

/// Where a service runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// Neither `node` nor `nodes`: every node that reads the manifest runs it.
    Everywhere,
    /// `node: X`, or `nodes: [X, …]` with `failover: manual`: X runs it, the others stand by.
    Pinned { node: String },
    /// `nodes` with `failover: auto`: decided on each listed node from what DRBD shows
    /// ([`crate::plan::placement`]).
    Failover(Failover),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failover {
    /// In order of preference; at least two, each once.
    pub nodes: Vec<String>,
    pub failback: Failback,
    pub on_quorum_loss: OnQuorumLoss,
}

impl Failover {
    pub const DEFAULT_FAILBACK: Failback = Failback::Never;
    pub const DEFAULT_ON_QUORUM_LOSS: OnQuorumLoss = OnQuorumLoss::Stop;

    pub fn lists(&self, node: &str) -> bool {
        self.nodes.iter().any(|n| n == node)
    }
}

/// One service: an ordered stack of resources.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub state: DesiredState,
    /// Where it runs: everywhere, pinned to one node, or failing over between listed nodes.
    pub placement: Placement,
    /// A failed start undoes what that run did.
    pub rollback: bool,
    /// In start order (see [`ResourceId`]'s ordering).
    pub resources: Vec<Resource>,
    /// The manifest file this service came from.
    pub source: PathBuf,
}

impl Service {
    /// `rollback` when the manifest does not set it.
    pub const DEFAULT_ROLLBACK: bool = true;

    /// The node a pinned service runs on.
    pub fn pinned_node(&self) -> Option<&str> {
        match &self.placement {
            Placement::Pinned { node } => Some(node),
            Placement::Everywhere | Placement::Failover(_) => None,
        }
    }

    /// The state this node should hold as far as the manifest alone says: a service pinned to
    /// another node, or failing over between nodes this one is not among, is down here. Where
    /// a failover service runs among its nodes is for DRBD to say
    /// ([`crate::plan::placement`]): on a listed node this is `up`, which the planner narrows.
    pub fn desired_here(&self, this_node: &str) -> DesiredState {
        match (&self.placement, self.state) {
            (_, DesiredState::Frozen) => DesiredState::Frozen,
            (Placement::Pinned { node }, DesiredState::Up) if node != this_node => {
                DesiredState::Down
            }
            (Placement::Failover(f), DesiredState::Up) if !f.lists(this_node) => DesiredState::Down,
            (_, state) => state,
        }
    }

    /// Whether this node stands by for the service whatever DRBD shows: it is pinned to another
    /// node, or fails over between nodes this one is not among (a diskless tiebreaker), and is
    /// wanted up. Its DRBD resources are then kept up, connected and Secondary here (where the
    /// DRBD configuration has this node), so that this node's data stays UpToDate and it can
    /// take the service over; everything above DRBD is down. A listed node of a failover
    /// service stands by or runs it as DRBD shows ([`crate::plan::placement`]).
    pub fn stands_by_here(&self, this_node: &str) -> bool {
        self.state == DesiredState::Up
            && match &self.placement {
                Placement::Everywhere => false,
                Placement::Pinned { node } => node != this_node,
                Placement::Failover(f) => !f.lists(this_node),
            }
    }

    /// The failover settings, for a service that fails over.
    pub fn failover(&self) -> Option<&Failover> {
        match &self.placement {
            Placement::Failover(f) => Some(f),
            Placement::Everywhere | Placement::Pinned { .. } => None,
        }
    }

    pub fn resource(&self, id: ResourceId) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }

    /// The DRBD resource files the service names (`config:`): each enabled `drbd#N` that names
    /// one, with where the file is.
    pub fn drbd_files(&self) -> impl Iterator<Item = (&Resource, &DrbdSpec, PathBuf)> {
        self.resources
            .iter()
            .filter(|r| !r.disabled)
            .filter_map(|r| {
                let spec = r.spec.as_drbd()?;
                Some((r, spec, spec.config_file(&self.source)?))
            })
    }

    /// The service's container, when it has one: apps run inside it.
    ///
    /// A disabled container still hosts the apps: `disabled` means converge does not start or
    /// stop it, not that its apps move to the host.
    pub fn container(&self) -> Option<&ContainerSpec> {
        self.resources.iter().find_map(|r| r.spec.as_container())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    pub id: ResourceId,
    /// Ignored entirely: neither observed nor acted on.
    pub disabled: bool,
    /// Its failure does not fail the service: a warning, and the stack goes on.
    pub optional: bool,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Spec {
    Drbd(DrbdSpec),
    Fs(FsSpec),
    Container(ContainerSpec),
    App(AppSpec),
}

impl Spec {
    pub fn as_drbd(&self) -> Option<&DrbdSpec> {
        match self {
            Spec::Drbd(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_fs(&self) -> Option<&FsSpec> {
        match self {
            Spec::Fs(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_container(&self) -> Option<&ContainerSpec> {
        match self {
            Spec::Container(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_app(&self) -> Option<&AppSpec> {
        match self {
            Spec::App(s) => Some(s),
            _ => None,
        }
    }
}

/// Also the file form of a DRBD resource's `stop` (see [`doc`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline, description = "")]
pub enum DrbdStop {
    /// `drbdadm secondary`: stays connected and replicating.
    #[default]
    Secondary,
    /// `drbdadm down`: detached and disconnected.
    Down,
}

/// Also the file form of a DRBD resource's `up_by` (see [`doc`]): who brings it up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline, description = "")]
pub enum UpBy {
    /// converge: `drbdadm up` (and `connect`) where the service runs and where it stands by.
    #[default]
    Converge,
    /// The system (`drbd.service`, `drbd@RES.service`): converge never runs `drbdadm up`,
    /// `connect` or `down` for it.
    System,
}

/// The longest DRBD resource name, in characters: what both drbd.conf and the kernel take.
/// drbd.conf's scanner reads an unquoted name of at most 128 characters (`STRING
/// [a-zA-Z0-9/._-]{1,128}` in drbd-utils' user/v9/drbdadm_scanner.fl), and the kernel's netlink
/// context holds it in 128 bytes with its terminating NUL (`__str_field(2, ...,
/// ctx_resource_name, 128)` in drbd_genl.h, whose policy length is `maxlen - 1` for a
/// NUL-terminated string, in genl_magic_func.h).
pub const MAX_DRBD_RESOURCE_NAME: usize = 127;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrbdSpec {
    pub res: String,
    pub stop: DrbdStop,
    pub allow_two_primaries: bool,
    /// May demote with `--force` when the device is held open but not mounted.
    pub secondary_force: bool,
    pub up_by: UpBy,
    /// `config:`: the resource file in the manifest directory, relative to it, that converge
    /// installs as `RES.res` in the DRBD configuration directory (see [`DrbdSpec::config_file`]).
    pub config: Option<PathBuf>,
}

impl DrbdSpec {
    /// Where the resource file named by `config:` is, for the manifest at `manifest`.
    pub fn config_file(&self, manifest: &std::path::Path) -> Option<PathBuf> {
        let rel = self.config.as_ref()?;
        Some(
            manifest
                .parent()
                .unwrap_or(std::path::Path::new("/"))
                .join(rel),
        )
    }

    /// Where converge installs the resource file in `conf_dir`: `RES.res`, one per resource,
    /// so that what it manages is known by name and nothing else in the directory is touched.
    pub fn installed_file(&self, conf_dir: &std::path::Path) -> PathBuf {
        conf_dir.join(format!("{}.res", self.res))
    }
}

/// The longest `config:` path, in bytes.
pub const MAX_RES_FILE_NAME: usize = 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsck {
    /// `e2fsck -p` for ext2/3/4, nothing for other types.
    #[default]
    Auto,
    /// Always check. The loader refuses it for a type converge has no checker for (see
    /// [`is_ext`]), so a loaded service never asks e2fsck to check, say, XFS.
    Yes,
    No,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsSpec {
    pub dev: PathBuf,
    pub mnt: PathBuf,
    pub fstype: String,
    pub options: String,
    pub fsck: Fsck,
    pub umount_kill: bool,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl FsSpec {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_OPTIONS: &str = "defaults";

    /// Whether a check runs before mounting, per the `fsck` key.
    pub fn wants_fsck(&self) -> bool {
        match self.fsck {
            Fsck::Yes => true,
            Fsck::No => false,
            Fsck::Auto => is_ext(&self.fstype),
        }
    }
}

/// The filesystem types `e2fsck -p` checks: the only ones `fsck: true` accepts.
pub const EXT_TYPES: [&str; 3] = ["ext2", "ext3", "ext4"];

/// ext2/3/4: the types `e2fsck -p` checks.
pub fn is_ext(fstype: &str) -> bool {
    EXT_TYPES.contains(&fstype)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "lowercase")]
pub enum ContainerKind {
    /// OpenVZ, by ctid.
    Vz(String),
    /// LXC, by name.
    Lxc(String),
}

impl ContainerKind {
    pub fn id(&self) -> &str {
        match self {
            ContainerKind::Vz(id) | ContainerKind::Lxc(id) => id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    pub kind: ContainerKind,
    #[serde(with = "humantime_serde")]
    pub start_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
}

impl ContainerSpec {
    pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(4 * 60);
    pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(2 * 60);
}

/// How an app is driven: a directory of S*/K*/C* scripts, or explicit argv lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppCommands {
    Scripts(PathBuf),
    Argv {
        start: Option<Vec<String>>,
        stop: Option<Vec<String>>,
        check: Option<Vec<String>>,
    },
}

/// What a check's exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    Up,
    Down,
    Warn,
    NotApplicable,
}

impl AppStatus {
    pub const ALL: [AppStatus; 4] = [
        AppStatus::Up,
        AppStatus::Down,
        AppStatus::Warn,
        AppStatus::NotApplicable,
    ];

    /// The STATUS word of `retcodes`, as the manifest spells it.
    pub fn word(self) -> &'static str {
        match self {
            AppStatus::Up => "up",
            AppStatus::Down => "down",
            AppStatus::Warn => "warn",
            AppStatus::NotApplicable => "n/a",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppSpec {
    pub commands: AppCommands,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Exit code → status; codes not listed mean `warn`.
    pub retcodes: Vec<(i32, AppStatus)>,
}

impl AppSpec {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 60);

    pub fn default_retcodes() -> Vec<(i32, AppStatus)> {
        vec![(0, AppStatus::Up), (1, AppStatus::Down)]
    }

    /// Maps a check's exit code through `retcodes`; unlisted codes are `warn`.
    pub fn status_of(&self, code: i32) -> AppStatus {
        self.retcodes
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(AppStatus::Warn, |(_, s)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_parse_and_order_by_start_order() {
        let mut ids: Vec<ResourceId> =
            ["app#0", "fs#10", "fs#2", "container#0", "drbd#1", "drbd#0"]
                .iter()
                .map(|s| ResourceId::parse(s).expect(s))
                .collect();
        ids.sort();
        let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["drbd#0", "drbd#1", "fs#2", "fs#10", "container#0", "app#0"]
        );
    }

    #[test]
    fn bad_resource_ids_are_rejected() {
        for bad in [
            "fs", "fs#", "fs#x", "disk#0", "FS#1", "fs#-1", "fs#01", "fs#1 ", "#1",
        ] {
            assert_eq!(ResourceId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn regression_names_starting_with_a_dot_are_refused() {
        for (field, text) in [
            ("service", "service: ..\nstate: up\n"),
            (
                "res",
                "service: s\nstate: up\nresources:\n  drbd#0:\n    res: .data\n",
            ),
            (
                "ctid",
                "service: s\nstate: up\nresources:\n  container#0:\n    type: vz\n    ctid: ..\n",
            ),
        ] {
            let errors = parse_manifest(std::path::Path::new("/m/s.yaml"), text).expect_err(field);
            assert!(
                errors
                    .iter()
                    .any(|e| e.message.contains("must not start with `.`")),
                "{field}: {errors:?}"
            );
        }
    }

    #[test]
    fn log_label_is_upper_case() {
        assert_eq!(ResourceId::new(Kind::Drbd, 0).log_label(), "DRBD#0");
    }

    #[test]
    fn pinned_service_is_down_on_other_nodes() {
        let svc = Service {
            name: "s".into(),
            state: DesiredState::Up,
            placement: Placement::Pinned {
                node: "deb1".into(),
            },
            rollback: true,
            resources: vec![],
            source: PathBuf::from("/m/s.yaml"),
        };
        assert_eq!(svc.desired_here("deb1"), DesiredState::Up);
        assert_eq!(svc.desired_here("deb2"), DesiredState::Down);
    }

    #[test]
    fn retcodes_map_unlisted_codes_to_warn() {
        let app = AppSpec {
            commands: AppCommands::Scripts(PathBuf::from("/x")),
            timeout: AppSpec::DEFAULT_TIMEOUT,
            retcodes: AppSpec::default_retcodes(),
        };
        assert_eq!(app.status_of(0), AppStatus::Up);
        assert_eq!(app.status_of(1), AppStatus::Down);
        assert_eq!(app.status_of(3), AppStatus::Warn);
    }
}
