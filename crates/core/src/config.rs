//! Node configuration: where things are on this node and which programs to run.
//!
//! Every key is optional. Validation is the manifests' (schema reader + locator), so a typo in
//! the config file is reported with file:line:column like one in a manifest. As for manifests,
//! the file form is a typed model ([`ConfigDoc`], [`CommandsDoc`]) from which the JSON Schema
//! `docs/converge-config.schema.json`, the reference in docs/manifest.md and the reader's allowed
//! keys are generated (see [`crate::manifest::doc`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::escape::{Escaped, excerpt};
use crate::manifest::ContainerKind;
use crate::manifest::doc::{ABSOLUTE_PATH_PATTERN, DURATION_PATTERN, NAME_PATTERN, duration_text};
use crate::manifest::load::{LoadError, LoadErrors, parse_yaml, problems_to_errors, read_opened};
use crate::manifest::schema::{Keys, Node, Reader, describe_shape};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/converge/config.yaml";

const DEFAULT_MANIFESTS: &str = "/etc/converge/manifests";
const DEFAULT_STATE_DIR: &str = "/var/lib/converge";
// Not under /var/tmp: in a world-writable directory, any local user can create it first and own
// it (converge then refuses it, see converge_node::secure).
const DEFAULT_LOG_DIR: &str = "/var/log/converge";
const DEFAULT_PROC_DRBD: &str = "/proc/drbd";
const DEFAULT_MOUNTINFO: &str = "/proc/self/mountinfo";
const DEFAULT_DRBD_CONF_DIR: &str = "/etc/drbd.d";

/// A program converge runs: a bare name, found through PATH, or an absolute path; see
/// `read_program`.
pub const PROGRAM_PATTERN: &str = r"^(/|[^/\s-][^/\s]*$)";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// This node's name, compared with a manifest's `node`.
    pub node: String,
    pub manifests: PathBuf,
    pub state_dir: PathBuf,
    /// App script logs: `svc_<service>_<script>.log`.
    pub log_dir: PathBuf,
    pub proc_drbd: PathBuf,
    pub mountinfo: PathBuf,
    /// Where a `drbd#N` resource file named by a manifest (`config:`) is installed, as
    /// `RES.res`: a directory drbdadm's configuration includes (`include "drbd.d/*.res"`).
    pub drbd_conf_dir: PathBuf,
    pub commands: Commands,
    /// How long a node listed Nth among a failover service's nodes waits, N-1 times, before
    /// it promotes (see operations.md, "Automatic failover on DRBD quorum").
    pub failover_delay: std::time::Duration,
    /// The daemon (`converge run`); unused by the one-shot commands.
    pub daemon: DaemonConfig,
    /// The daemon's Prometheus metrics: off unless configured.
    pub metrics: MetricsConfig,
}

/// Where `converge run` exports its metrics (Prometheus text format); neither by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetricsConfig {
    /// `GET /metrics` is served over HTTP on this address.
    pub listen: Option<std::net::SocketAddr>,
    /// A node_exporter textfile (`*.prom`), replaced after each reconcile or look.
    pub textfile: Option<PathBuf>,
}

impl MetricsConfig {
    /// Whether anything is exported.
    pub fn is_on(&self) -> bool {
        self.listen.is_some() || self.textfile.is_some()
    }
}

/// How `converge run` behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonConfig {
    /// Quiet period after a manifest change before the directory is re-read (a swap of the
    /// whole directory, as git-sync makes, is read at once).
    #[serde(with = "humantime_serde")]
    pub debounce: std::time::Duration,
    /// Full re-observe and re-plan of everything, even without an event (drift correction).
    #[serde(with = "humantime_serde")]
    pub resync: std::time::Duration,
    /// Services reconciled at the same time.
    pub concurrency: usize,
    /// A deleted manifest's service is brought down (otherwise it is left as it is, orphaned).
    pub prune: bool,
    /// A directory with no valid manifest may prune everything (otherwise pruning is suspended).
    pub allow_empty: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            debounce: std::time::Duration::from_millis(200),
            resync: std::time::Duration::from_secs(30),
            concurrency: 8,
            prune: false,
            allow_empty: false,
        }
    }
}

/// Programs run by converge: each a bare name (looked up in PATH) or an absolute path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Commands {
    pub drbdadm: String,
    /// When not the default, drbdadm is told to use it (`--drbdsetup=`).
    pub drbdsetup: String,
    pub e2fsck: String,
    pub mount: String,
    pub umount: String,
    pub fuser: String,
    pub vzctl: String,
    pub vzlist: String,
    pub lxc_start: String,
    pub lxc_stop: String,
    pub lxc_info: String,
    pub lxc_attach: String,
    pub lxc_ls: String,
    pub lxc_freeze: String,
    pub lxc_unfreeze: String,
}

impl Default for Commands {
    fn default() -> Self {
        Commands {
            drbdadm: "drbdadm".into(),
            drbdsetup: "drbdsetup".into(),
            e2fsck: "e2fsck".into(),
            mount: "mount".into(),
            umount: "umount".into(),
            fuser: "fuser".into(),
            vzctl: "vzctl".into(),
            vzlist: "vzlist".into(),
            lxc_start: "lxc-start".into(),
            lxc_stop: "lxc-stop".into(),
            lxc_info: "lxc-info".into(),
            lxc_attach: "lxc-attach".into(),
            lxc_ls: "lxc-ls".into(),
            lxc_freeze: "lxc-freeze".into(),
            lxc_unfreeze: "lxc-unfreeze".into(),
        }
    }
}

impl Commands {
    /// Every program converge runs, as configured (the same list the reader fills).
    pub fn programs(&self) -> Vec<String> {
        self.clone()
            .slots()
            .into_iter()
            .map(|(_, program)| program.clone())
            .collect()
    }

    /// The argv of a drbdadm call. drbdadm runs drbdsetup itself, so a replacement drbdsetup is
    /// passed as a global option, which drbdadm only accepts before the subcommand.
    pub fn drbdadm_argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = Vec::with_capacity(args.len() + 2);
        argv.push(self.drbdadm.clone());
        if self.drbdsetup != "drbdsetup" {
            argv.push(format!("--drbdsetup={}", self.drbdsetup));
        }
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv
    }

    /// `argv` run inside `container`, or as it is on the host when there is none.
    ///
    /// OpenVZ: `vzctl exec2 CTID …` — `exec2` returns the command's own exit code, where `exec`
    /// turns every failure into 8 (and a check's "down" must stay distinguishable from "warn");
    /// vzctl joins its arguments into one shell line, so each is shell-quoted here.
    /// LXC: `lxc-attach -n NAME -- …`, argv passed as it is.
    pub fn in_container(
        &self,
        container: Option<&ContainerKind>,
        argv: Vec<String>,
    ) -> Vec<String> {
        match container {
            None => argv,
            Some(ContainerKind::Vz(ctid)) => {
                let mut wrapped = vec![self.vzctl.clone(), "exec2".into(), ctid.clone()];
                wrapped.extend(argv.iter().map(|a| crate::shell::quote(a)));
                wrapped
            }
            Some(ContainerKind::Lxc(name)) => {
                let mut wrapped = vec![
                    self.lxc_attach.clone(),
                    "-n".into(),
                    name.clone(),
                    "--".into(),
                ];
                wrapped.extend(argv);
                wrapped
            }
        }
    }

    /// The config key and the field it sets. Which keys exist is [`CommandsDoc`]'s to say: the
    /// reader asserts (debug builds) that each key here is one of its keys, and a test that
    /// each of its keys is here.
    fn slots(&mut self) -> [(&'static str, &mut String); 15] {
        [
            ("drbdadm", &mut self.drbdadm),
            ("drbdsetup", &mut self.drbdsetup),
            ("e2fsck", &mut self.e2fsck),
            ("mount", &mut self.mount),
            ("umount", &mut self.umount),
            ("fuser", &mut self.fuser),
            ("vzctl", &mut self.vzctl),
            ("vzlist", &mut self.vzlist),
            ("lxc-start", &mut self.lxc_start),
            ("lxc-stop", &mut self.lxc_stop),
            ("lxc-info", &mut self.lxc_info),
            ("lxc-attach", &mut self.lxc_attach),
            ("lxc-ls", &mut self.lxc_ls),
            ("lxc-freeze", &mut self.lxc_freeze),
            ("lxc-unfreeze", &mut self.lxc_unfreeze),
        ]
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: hostname(),
            manifests: PathBuf::from(DEFAULT_MANIFESTS),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            log_dir: PathBuf::from(DEFAULT_LOG_DIR),
            proc_drbd: PathBuf::from(DEFAULT_PROC_DRBD),
            mountinfo: PathBuf::from(DEFAULT_MOUNTINFO),
            drbd_conf_dir: PathBuf::from(DEFAULT_DRBD_CONF_DIR),
            commands: Commands::default(),
            failover_delay: Config::DEFAULT_FAILOVER_DELAY,
            daemon: DaemonConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", Escaped(&path.to_string_lossy()))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(LoadErrors),
    /// Guessing would be worse than stopping: a wrong name takes down every service pinned
    /// to this node.
    #[error(
        "cannot tell this node's name ({HOSTNAME_PATH} is unreadable or empty); set `node:` in {}",
        Escaped(&path.to_string_lossy())
    )]
    NoNodeName { path: PathBuf },
}

/// The node configuration of converge: where things are on this node, which programs to run, and
/// how the daemon (`converge run`) behaves. Every key is optional; an empty file means all
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(title = "converge node configuration", extend("type" = ["object", "null"]))]
pub struct ConfigDoc {
    /// This node's name, compared with a manifest's `node`. Letters, digits, `_`, `.` and `-`,
    /// not starting with `-` or `.`. Absent: the hostname.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", pattern(NAME_PATTERN))]
    pub node: Option<String>,
    /// The manifest directory: one service per `*.yaml` or `*.yml` file directly in it.
    #[schemars(pattern(ABSOLUTE_PATH_PATTERN))]
    pub manifests: String,
    /// Where converge keeps its records (which apps it started, the daemon's view). Created
    /// mode 0700; refused when owned by another user than root (or the user converge runs as)
    /// or writable by group or others, or when a directory on its path is.
    #[schemars(pattern(ABSOLUTE_PATH_PATTERN))]
    pub state_dir: String,
    /// Where app scripts log, one file per service and script: `svc_<service>_<script>.log`.
    /// Created mode 0700, and refused as `state_dir` is.
    #[schemars(pattern(ABSOLUTE_PATH_PATTERN))]
    pub log_dir: String,
    /// DRBD's /proc file: tells whether DRBD is loaded.
    #[schemars(pattern(ABSOLUTE_PATH_PATTERN))]
    pub proc_drbd: String,
    /// The mount table, in /proc/PID/mountinfo format.
    #[schemars(pattern(ABSOLUTE_PATH_PATTERN))]
    pub mountinfo: String,
    /// Where converge installs the DRBD resource file a manifest names (`config:` of a
    /// `drbd#N`), as `RES.res`: a directory the DRBD configuration (/etc/drbd.conf) includes.
    /// Files in it that no manifest names are left alone.
    #[schemars(pattern(ABSOLUTE_PATH_PATTERN))]
    pub drbd_conf_dir: String,
    /// The programs converge runs, each a program name (looked up in PATH) or an absolute path.
    /// Every external program goes through here, which serves non-standard installs and lets
    /// tests point converge at a simulator.
    pub commands: CommandsDoc,
    /// A service that fails over (`failover: auto`): how long the node listed Nth waits, N-1
    /// times, before it promotes, so that a node listed before it that may also take the
    /// service wins the race. More than zero, at most 1 minute.
    #[schemars(pattern(DURATION_PATTERN))]
    pub failover_delay: String,
    /// The daemon: quiet period after a manifest change before the directory is re-read (a
    /// swap of the whole directory, as git-sync makes, is read at once).
    #[schemars(pattern(DURATION_PATTERN))]
    pub debounce: String,
    /// The daemon: full re-observe and re-plan of every service even without any event, to
    /// correct drift.
    #[schemars(pattern(DURATION_PATTERN))]
    pub resync: String,
    /// The daemon: services reconciled at the same time.
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: u64,
    /// The daemon: a deleted manifest's service is brought down (otherwise it is left as it is,
    /// orphaned).
    pub prune: bool,
    /// The daemon: a directory with no valid manifest may prune everything (otherwise pruning is
    /// suspended while it is empty).
    pub allow_empty: bool,
    /// The daemon's Prometheus metrics (text format): served over HTTP, written for
    /// node_exporter's textfile collector, or both. Off by default.
    pub metrics: MetricsDoc,
}

impl Default for ConfigDoc {
    fn default() -> Self {
        let daemon = DaemonConfig::default();
        ConfigDoc {
            node: None,
            manifests: DEFAULT_MANIFESTS.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            log_dir: DEFAULT_LOG_DIR.into(),
            proc_drbd: DEFAULT_PROC_DRBD.into(),
            mountinfo: DEFAULT_MOUNTINFO.into(),
            drbd_conf_dir: DEFAULT_DRBD_CONF_DIR.into(),
            commands: CommandsDoc::default(),
            failover_delay: duration_text(Config::DEFAULT_FAILOVER_DELAY),
            debounce: duration_text(daemon.debounce),
            resync: duration_text(daemon.resync),
            concurrency: daemon.concurrency as u64,
            prune: daemon.prune,
            allow_empty: daemon.allow_empty,
            metrics: MetricsDoc::default(),
        }
    }
}

/// A listening address: an IP address (IPv6 in brackets) and a port. No host names: the
/// address is bound as it is written, never looked up.
pub const LISTEN_PATTERN: &str = r"^(\[[0-9A-Fa-f:.]+\]|[0-9.]+):[0-9]+$";

/// `metrics`: where the daemon exports its metrics, in Prometheus' text format. Each key
/// turns one way on; with neither, nothing is exported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(extend("type" = ["object", "null"]))]
pub struct MetricsDoc {
    /// Serve `GET /metrics` over HTTP on this address, e.g. `127.0.0.1:9942` (the loopback
    /// only, for a Prometheus on the node or a proxy). Another address exposes the node's
    /// services and DRBD states to whoever reaches it: firewall it. Port 0 takes a free port,
    /// logged at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", pattern(LISTEN_PATTERN))]
    pub listen: Option<String>,
    /// Write the metrics to this file for node_exporter's textfile collector, replaced (by
    /// rename, never written through a symlink) after each reconcile or look, at most once a
    /// second. Must end in `.prom`; its directory must be one converge trusts, as `state_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", pattern(ABSOLUTE_PATH_PATTERN))]
    pub textfile: Option<String>,
}

/// `commands`: each a program name, looked up in PATH, or an absolute path; a name has no `/`,
/// no whitespace (no arguments) and does not start with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(extend("type" = ["object", "null"]))]
pub struct CommandsDoc {
    /// Runs every DRBD action: `up`, `connect`, `primary`, `secondary`, `down`.
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub drbdadm: String,
    /// Observes DRBD (`drbdsetup status`). When it is not `drbdsetup`, drbdadm is told to use
    /// it too (`drbdadm --drbdsetup=PROGRAM`).
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub drbdsetup: String,
    /// Checks ext2/3/4 filesystems before mounting (`e2fsck -p DEV`).
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub e2fsck: String,
    /// Mounts filesystems (`mount -t TYPE -o OPTIONS DEV MNT`).
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub mount: String,
    /// Unmounts filesystems.
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub umount: String,
    /// Kills the users of a busy mount point, for `umount_kill` (`fuser -kmv MNT`).
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub fuser: String,
    /// Starts and stops OpenVZ containers and runs apps in them (`vzctl exec2`).
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub vzctl: String,
    /// Observes OpenVZ containers.
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub vzlist: String,
    /// Starts LXC containers (`lxc-start -n NAME -d`).
    #[serde(rename = "lxc-start")]
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub lxc_start: String,
    /// Stops LXC containers (`lxc-stop -n NAME -t SECONDS`).
    #[serde(rename = "lxc-stop")]
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub lxc_stop: String,
    /// Reads one LXC container's state while waiting for it (`lxc-info -n NAME -s`).
    #[serde(rename = "lxc-info")]
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub lxc_info: String,
    /// Runs commands and app scripts in LXC containers (`lxc-attach -n NAME --`).
    #[serde(rename = "lxc-attach")]
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub lxc_attach: String,
    /// Observes all LXC containers at once (`lxc-ls --fancy`).
    #[serde(rename = "lxc-ls")]
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub lxc_ls: String,
    /// Freezes an LXC container whose node lost quorum, for `on_quorum_loss: freeze`
    /// (`lxc-freeze -n NAME`).
    #[serde(rename = "lxc-freeze")]
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub lxc_freeze: String,
    /// Thaws a container converge froze (`lxc-unfreeze -n NAME`).
    #[serde(rename = "lxc-unfreeze")]
    #[schemars(pattern(PROGRAM_PATTERN))]
    pub lxc_unfreeze: String,
}

impl Default for CommandsDoc {
    fn default() -> Self {
        let c = Commands::default();
        CommandsDoc {
            drbdadm: c.drbdadm,
            drbdsetup: c.drbdsetup,
            e2fsck: c.e2fsck,
            mount: c.mount,
            umount: c.umount,
            fuser: c.fuser,
            vzctl: c.vzctl,
            vzlist: c.vzlist,
            lxc_start: c.lxc_start,
            lxc_stop: c.lxc_stop,
            lxc_info: c.lxc_info,
            lxc_attach: c.lxc_attach,
            lxc_ls: c.lxc_ls,
            lxc_freeze: c.lxc_freeze,
            lxc_unfreeze: c.lxc_unfreeze,
        }
    }
}

static TOP_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<ConfigDoc>);
static COMMANDS_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<CommandsDoc>);
static METRICS_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<MetricsDoc>);

impl Config {
    pub const DEFAULT_FAILOVER_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
    pub const MAX_FAILOVER_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

    /// Loads `explicit`, or [`DEFAULT_CONFIG_PATH`]. Only the default may be missing (meaning all
    /// defaults): a file named on the command line that does not exist is a mistake.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, missing_ok) = match explicit {
            Some(path) => (path, false),
            None => (Path::new(DEFAULT_CONFIG_PATH), true),
        };
        Self::load_file(path, missing_ok).and_then(|config| config.with_node_name(path))
    }

    /// The configuration, once it names this node.
    fn with_node_name(self, path: &Path) -> Result<Config, ConfigError> {
        if self.node.is_empty() {
            return Err(ConfigError::NoNodeName {
                path: path.to_path_buf(),
            });
        }
        Ok(self)
    }

    fn load_file(path: &Path, missing_ok: bool) -> Result<Config, ConfigError> {
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if missing_ok && e.kind() == io::ErrorKind::NotFound => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let text =
            read_opened(path, file).map_err(|e| ConfigError::Invalid(LoadErrors::new(vec![e])))?;
        Self::from_yaml(path, &text)
    }

    /// Parses config text; `path` names the file in errors. Empty text means all defaults.
    pub fn from_yaml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let invalid = |errors: Vec<LoadError>| ConfigError::Invalid(LoadErrors::new(errors));
        let parsed = parse_yaml(path, text).map_err(invalid)?;
        let mut reader = Reader::default();
        let config = read_config(&mut reader, &parsed.value);
        if reader.is_clean() {
            Ok(config)
        } else {
            let more = reader.more();
            Err(invalid(problems_to_errors(
                path,
                parsed.text,
                reader.into_problems(),
                more,
            )))
        }
    }
}

/// Reads what is valid over the defaults; the caller discards the result if anything was not.
fn read_config(r: &mut Reader, value: &Value) -> Config {
    let mut config = Config::default();
    let root = Node::root(value);
    if !matches!(value, Value::Mapping(_) | Value::Null) {
        r.error(
            &root,
            // Not quoted: a file that is not YAML at all reads as one long string.
            format!(
                "the top level must be a mapping, found {}",
                describe_shape(value)
            ),
        );
        return config;
    }
    if r.foreign(&root, &TOP_KEYS, "configuration") {
        return config;
    }
    let Some(f) = r.fields(&root, Some(&TOP_KEYS), true) else {
        return config;
    };
    if let Some(node) = f.get("node").and_then(|n| r.name(&n, "node name")) {
        config.node = node;
    }
    for (key, slot) in [
        ("manifests", &mut config.manifests),
        ("state_dir", &mut config.state_dir),
        ("log_dir", &mut config.log_dir),
        ("proc_drbd", &mut config.proc_drbd),
        ("mountinfo", &mut config.mountinfo),
        ("drbd_conf_dir", &mut config.drbd_conf_dir),
    ] {
        if let Some(path) = f.get(key).and_then(|n| r.absolute_path(&n)) {
            *slot = path;
        }
    }
    if let Some(n) = f.get("commands") {
        read_commands(r, &n, &mut config.commands);
    }
    for (key, slot) in [
        ("debounce", &mut config.daemon.debounce),
        ("resync", &mut config.daemon.resync),
    ] {
        if let Some(d) = f.get(key).and_then(|n| r.duration(&n)) {
            *slot = d;
        }
    }
    if let Some(n) = f.get("failover_delay")
        && let Some(d) = r.duration(&n)
    {
        if d > Config::MAX_FAILOVER_DELAY {
            r.error(
                &n,
                format!(
                    "must be at most {}: a longer delay only delays the failover, got {}",
                    duration_text(Config::MAX_FAILOVER_DELAY),
                    duration_text(d)
                ),
            );
        } else {
            config.failover_delay = d;
        }
    }
    if let Some(n) = f.get("concurrency") {
        match r.leaf::<u64>(&n) {
            Some(c) if (1..=1024).contains(&c) => config.daemon.concurrency = c as usize,
            Some(c) => r.error(&n, format!("must be between 1 and 1024, got {c}")),
            None => {}
        }
    }
    for (key, slot) in [
        ("prune", &mut config.daemon.prune),
        ("allow_empty", &mut config.daemon.allow_empty),
    ] {
        if let Some(b) = f.get(key).and_then(|n| r.bool(&n)) {
            *slot = b;
        }
    }
    if let Some(n) = f.get("metrics") {
        read_metrics(r, &n, &mut config.metrics);
    }
    config
}

fn read_metrics(r: &mut Reader, node: &Node, metrics: &mut MetricsConfig) {
    let Some(f) = r.fields(node, Some(&METRICS_KEYS), true) else {
        return;
    };
    if let Some(n) = f.get("listen")
        && let Some(text) = r.nonempty_string(&n)
    {
        // Parsed, never resolved: a host name would make the daemon's start depend on DNS.
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) => metrics.listen = Some(addr),
            Err(_) => r.error(
                &n,
                format!(
                    "must be an IP address and a port, such as 127.0.0.1:9942 or [::1]:9942, got {}",
                    excerpt(&text)
                ),
            ),
        }
    }
    if let Some(n) = f.get("textfile")
        && let Some(path) = r.absolute_path(&n)
    {
        // node_exporter reads only `*.prom` files: any other name would be written in vain.
        if path.extension().is_some_and(|e| e == "prom") && path.file_stem().is_some() {
            metrics.textfile = Some(path);
        } else {
            r.error(
                &n,
                format!(
                    "must end in `.prom` (node_exporter's textfile collector reads only those), got {}",
                    excerpt(&path.to_string_lossy())
                ),
            );
        }
    }
}

fn read_commands(r: &mut Reader, node: &Node, commands: &mut Commands) {
    let Some(f) = r.fields(node, Some(&COMMANDS_KEYS), true) else {
        return;
    };
    for (key, slot) in commands.slots() {
        if let Some(program) = f.get(key).and_then(|n| read_program(r, &n)) {
            *slot = program;
        }
    }
}

/// A program: a bare name, found through PATH, or an absolute path. A relative path with a
/// slash would depend on the daemon's working directory.
fn read_program(r: &mut Reader, node: &Node) -> Option<String> {
    let program = r.nonempty_string(node)?;
    let problem = if program.starts_with('/') {
        None
    } else if program.contains('/') {
        Some("must be a program name or an absolute path")
    } else if program.chars().any(char::is_whitespace) {
        Some("must be a single program name, without arguments")
    } else if program.starts_with('-') {
        Some("must not start with `-`")
    } else {
        None
    };
    match problem {
        Some(problem) => {
            r.error(node, format!("{problem}, got {}", excerpt(&program)));
            None
        }
        None => Some(program),
    }
}

/// Where the kernel publishes this node's name (what `hostname` prints).
const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

/// A hostname is at most 64 bytes (HOST_NAME_MAX); the cap only bounds a read gone wrong.
const HOSTNAME_MAX: u64 = 4096;

/// This node's name, or empty when the kernel's cannot be read: [`Config::load`] then refuses to
/// go on rather than guess.
fn hostname() -> String {
    crate::fsutil::read_capped_text(Path::new(HOSTNAME_PATH), HOSTNAME_MAX)
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(Path::new("/etc/converge/config.yaml"), text)
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Err(ConfigError::Invalid(errors)) => errors.0.iter().map(ToString::to_string).collect(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    /// Regression: the default `log_dir` was `/var/tmp/converge`, in a world-writable
    /// directory, so any local user who made it first owned where root writes its logs. Every
    /// default place converge writes or reads what decides what it runs is under a directory
    /// only root can write on a standard system.
    #[test]
    fn regression_no_default_place_lies_in_a_world_writable_directory() {
        let c = Config::default();
        for path in [&c.log_dir, &c.state_dir, &c.manifests] {
            for shared in ["/tmp", "/var/tmp", "/dev/shm", "/run/user"] {
                assert!(!path.starts_with(shared), "{}", path.display());
            }
        }
        assert_eq!(c.log_dir, Path::new("/var/log/converge"));
    }

    #[test]
    fn daemon_keys_are_read_and_checked() {
        let config =
            parse("debounce: 50ms\nresync: 2m\nconcurrency: 3\nprune: true\nallow_empty: true\n")
                .expect("valid");
        assert_eq!(config.daemon.debounce, std::time::Duration::from_millis(50));
        assert_eq!(config.daemon.resync, std::time::Duration::from_secs(120));
        assert_eq!(config.daemon.concurrency, 3);
        assert!(config.daemon.prune && config.daemon.allow_empty);
        let errs = errors("concurrency: 0\nprune: maybe\nresync: 0s\n");
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs[0].contains("1:14: concurrency: must be between 1 and 1024, got 0"),
            "{errs:?}"
        );
    }

    #[test]
    fn metrics_are_off_by_default_and_each_way_is_checked() {
        assert!(!Config::default().metrics.is_on());
        let config = parse("metrics:\n  listen: 127.0.0.1:9942\n  textfile: /var/lib/node-exporter/converge.prom\n")
            .expect("valid");
        assert_eq!(
            config.metrics.listen,
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9942)))
        );
        assert_eq!(
            config.metrics.textfile.as_deref(),
            Some(Path::new("/var/lib/node-exporter/converge.prom"))
        );
        let v6 = parse("metrics: {listen: '[::1]:9942'}\n").expect("valid");
        assert_eq!(v6.metrics.listen.map(|a| a.port()), Some(9942));
        assert!(v6.metrics.is_on() && v6.metrics.textfile.is_none());
        // An empty section turns nothing on.
        assert!(!parse("metrics:\n").expect("valid").metrics.is_on());
        let errs = errors(
            "metrics:\n  listen: localhost:9942\n  textfile: /var/lib/converge.txt\n  port: 1\n",
        );
        assert_eq!(
            errs,
            [
                "/etc/converge/config.yaml:2:11: metrics.listen: must be an IP address and a port, such as 127.0.0.1:9942 or [::1]:9942, got \"localhost:9942\"",
                "/etc/converge/config.yaml:3:13: metrics.textfile: must end in `.prom` (node_exporter's textfile collector reads only those), got \"/var/lib/converge.txt\"",
                "/etc/converge/config.yaml:4:3: metrics.port: unknown key `port`; allowed keys: listen, textfile",
            ]
        );
        let errs = errors("metrics:\n  textfile: converge.prom\n  listen: 127.0.0.1\n");
        assert_eq!(errs.len(), 2, "{errs:?}");
        // In the file's order.
        assert!(
            errs[0].contains("2:13: metrics.textfile: must be an absolute path"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("3:11: metrics.listen: must be an IP address and a port"),
            "{errs:?}"
        );
    }

    #[test]
    fn empty_file_means_defaults() {
        for text in ["", "# nothing here\n", "{}"] {
            let config = parse(text).expect(text);
            assert_eq!(config, Config::default());
        }
        assert!(!Config::default().node.is_empty());
    }

    #[test]
    fn every_key_can_be_set() {
        let text = "\
node: deb1
manifests: /m
state_dir: /s
log_dir: /l
proc_drbd: /p/drbd
mountinfo: /p/mountinfo
commands:
  drbdadm: /opt/drbd/drbdadm
  drbdsetup: /opt/drbd/drbdsetup
  e2fsck: e2fsck.static
  mount: /bin/mount
  umount: /bin/umount
  fuser: /bin/fuser
  vzctl: /usr/sbin/vzctl
  vzlist: /usr/sbin/vzlist
  lxc-start: /l/lxc-start
  lxc-stop: /l/lxc-stop
  lxc-info: /l/lxc-info
  lxc-attach: /l/lxc-attach
  lxc-ls: /l/lxc-ls
  lxc-freeze: /l/lxc-freeze
  lxc-unfreeze: /l/lxc-unfreeze
";
        let c = parse(text).expect("valid");
        assert_eq!(c.node, "deb1");
        assert_eq!(c.manifests, Path::new("/m"));
        assert_eq!(c.state_dir, Path::new("/s"));
        assert_eq!(c.log_dir, Path::new("/l"));
        assert_eq!(c.proc_drbd, Path::new("/p/drbd"));
        assert_eq!(c.mountinfo, Path::new("/p/mountinfo"));
        assert_eq!(
            c.commands,
            Commands {
                drbdadm: "/opt/drbd/drbdadm".into(),
                drbdsetup: "/opt/drbd/drbdsetup".into(),
                e2fsck: "e2fsck.static".into(),
                mount: "/bin/mount".into(),
                umount: "/bin/umount".into(),
                fuser: "/bin/fuser".into(),
                vzctl: "/usr/sbin/vzctl".into(),
                vzlist: "/usr/sbin/vzlist".into(),
                lxc_start: "/l/lxc-start".into(),
                lxc_stop: "/l/lxc-stop".into(),
                lxc_info: "/l/lxc-info".into(),
                lxc_attach: "/l/lxc-attach".into(),
                lxc_ls: "/l/lxc-ls".into(),
                lxc_freeze: "/l/lxc-freeze".into(),
                lxc_unfreeze: "/l/lxc-unfreeze".into(),
            }
        );
    }

    /// The reader and the model cannot drift apart: a key declared in [`ConfigDoc`] or
    /// [`CommandsDoc`] that the reader never reads fails here.
    #[test]
    fn the_reader_reads_every_key_of_the_model() {
        let mut text = String::from(
            "node: n\nmanifests: /m\nstate_dir: /s\nlog_dir: /l\nproc_drbd: /p\nmountinfo: /i\n\
             drbd_conf_dir: /d\nfailover_delay: 2s\ndebounce: 1s\nresync: 1m\nconcurrency: 2\nprune: true\nallow_empty: true\n\
             metrics:\n  listen: 127.0.0.1:9942\n  textfile: /t/converge.prom\ncommands:\n",
        );
        for key in COMMANDS_KEYS.names() {
            text.push_str(&format!("  {key}: /usr/bin/{key}\n"));
        }
        let (parsed, asked) = crate::manifest::schema::asked::record(|| parse(&text));
        let config = parsed.expect("every-key config");
        assert_eq!(config.commands.lxc_ls, "/usr/bin/lxc-ls");
        let value: Value = serde_yaml::from_str(&text).expect("yaml");
        let schema = crate::schema_files::config_schema();
        let models = crate::schema_files::models(&ConfigDoc::schema_name(), &schema);
        assert_eq!(models.len(), 3, "{models:?}");
        for (model, keys) in &models {
            let mapping = if model == COMMANDS_KEYS.model() {
                &value["commands"]
            } else if model == METRICS_KEYS.model() {
                &value["metrics"]
            } else {
                &value
            };
            for key in keys {
                assert!(
                    mapping.get(key.as_str()).is_some(),
                    "the text does not set {model}.{key}"
                );
                assert!(
                    asked.contains(&(model.clone(), key.clone())),
                    "{model}.{key} is declared in the model but the reader never reads it"
                );
            }
        }
    }

    #[test]
    fn defaults_of_the_model_are_those_of_the_config() {
        let doc = ConfigDoc::default();
        let config = Config::default();
        assert_eq!(
            [
                &doc.manifests,
                &doc.state_dir,
                &doc.log_dir,
                &doc.proc_drbd,
                &doc.mountinfo,
                &doc.drbd_conf_dir
            ]
            .map(Path::new),
            [
                &config.manifests,
                &config.state_dir,
                &config.log_dir,
                &config.proc_drbd,
                &config.mountinfo,
                &config.drbd_conf_dir
            ]
            .map(PathBuf::as_path)
        );
        let read = parse(&format!(
            "debounce: {}\nresync: {}\nfailover_delay: {}\n",
            doc.debounce, doc.resync, doc.failover_delay
        ))
        .expect("defaults read back");
        assert_eq!(read.daemon, config.daemon);
        assert_eq!(read.failover_delay, config.failover_delay);
    }

    #[test]
    fn failover_delay_is_a_duration_of_at_most_a_minute() {
        assert_eq!(
            parse("failover_delay: 300ms\n")
                .expect("valid")
                .failover_delay,
            std::time::Duration::from_millis(300)
        );
        // The order of `nodes` must mean something: no zero delay.
        let err = parse("failover_delay: 0s\n").expect_err("zero");
        assert!(err.to_string().contains("must not be zero"), "{err}");
        let err = parse("failover_delay: 2m\n").expect_err("too long");
        assert!(
            err.to_string()
                .contains("must be at most 1m: a longer delay only delays the failover, got 2m"),
            "{err}"
        );
    }

    #[test]
    fn partial_config_keeps_other_defaults() {
        let c = parse("commands:\n  fuser: /sbin/fuser\n").expect("valid");
        let d = Config::default();
        assert_eq!(c.commands.fuser, "/sbin/fuser");
        assert_eq!(c.commands.mount, "mount");
        assert_eq!(c.manifests, d.manifests);
        assert_eq!(c.node, d.node);
    }

    #[test]
    fn all_problems_are_located() {
        let text = "\
node: -x
manifests: etc/manifests
log_dir: [a]
statedir: /s
commands:
  drbdadm: ''
  mount: sbin/mount
  umount: umount -l
  lxc_start: /x
";
        assert_eq!(
            errors(text),
            [
                "/etc/converge/config.yaml:1:7: node: invalid node name \"-x\": must not start with `-` (it would be taken for an option)",
                "/etc/converge/config.yaml:2:12: manifests: must be an absolute path, got \"etc/manifests\"",
                "/etc/converge/config.yaml:3:10: log_dir: invalid type: sequence, expected a string",
                "/etc/converge/config.yaml:4:1: statedir: unknown key `statedir`; allowed keys: node, manifests, state_dir, log_dir, proc_drbd, mountinfo, drbd_conf_dir, commands, failover_delay, debounce, resync, concurrency, prune, allow_empty, metrics",
                "/etc/converge/config.yaml:6:12: commands.drbdadm: must not be empty",
                "/etc/converge/config.yaml:7:10: commands.mount: must be a program name or an absolute path, got \"sbin/mount\"",
                "/etc/converge/config.yaml:8:11: commands.umount: must be a single program name, without arguments, got \"umount -l\"",
                "/etc/converge/config.yaml:9:3: commands.lxc_start: unknown key `lxc_start`; allowed keys: drbdadm, drbdsetup, e2fsck, mount, umount, fuser, vzctl, vzlist, lxc-start, lxc-stop, lxc-info, lxc-attach, lxc-ls, lxc-freeze, lxc-unfreeze",
            ]
        );
    }

    #[test]
    fn yaml_errors_and_wrong_shapes() {
        assert_eq!(
            errors("- a\n"),
            ["/etc/converge/config.yaml:1:1: the top level must be a mapping, found a sequence"]
        );
        assert_eq!(
            errors("commands: drbdadm\n"),
            [
                "/etc/converge/config.yaml:1:11: commands: expected a mapping, found string \"drbdadm\""
            ]
        );
        let syntax = errors("node: [\n");
        assert!(syntax[0].contains("invalid YAML"), "{syntax:?}");
    }

    #[test]
    fn drbdsetup_override_goes_before_the_subcommand() {
        let mut commands = Commands::default();
        assert_eq!(
            commands.drbdadm_argv(&["primary", "data"]),
            ["drbdadm", "primary", "data"]
        );
        commands.drbdsetup = "/opt/drbdsetup".into();
        assert_eq!(
            commands.drbdadm_argv(&["primary", "data"]),
            ["drbdadm", "--drbdsetup=/opt/drbdsetup", "primary", "data"]
        );
    }

    #[test]
    fn regression_an_unknown_node_name_is_an_error_not_a_guess() {
        let path = Path::new("/etc/converge/config.yaml");
        let nameless = Config {
            node: String::new(),
            ..Config::default()
        };
        let err = nameless.with_node_name(path).expect_err("no name");
        assert!(
            err.to_string()
                .contains("set `node:` in /etc/converge/config.yaml"),
            "{err}"
        );
        let named = parse("node: deb1\n").expect("valid");
        assert_eq!(named.with_node_name(path).expect("named").node, "deb1");
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("config.yaml");
        assert_eq!(
            Config::load_file(&missing, true).expect("defaults"),
            Config::default()
        );
        let err = Config::load(Some(&missing)).expect_err("explicit file must exist");
        assert!(matches!(&err, ConfigError::Io { path, .. } if *path == missing));
        assert!(err.to_string().contains(&missing.display().to_string()));
    }

    #[test]
    fn load_reads_and_validates_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        fs::write(&path, "node: n1\n").expect("write");
        assert_eq!(Config::load(Some(&path)).expect("valid").node, "n1");
        fs::write(&path, "node: n1\nbogus: 1\n").expect("write");
        let err = Config::load(Some(&path)).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2:1: bogus: unknown key `bogus`; allowed keys: node, manifests, state_dir, log_dir, proc_drbd, mountinfo, drbd_conf_dir, commands, failover_delay, debounce, resync, concurrency, prune, allow_empty, metrics",
                path.display()
            )
        );
    }
}
