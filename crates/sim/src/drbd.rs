//! A `drbdsetup` that simulates DRBD's kernel half, for tests and the demo on machines without
//! the DRBD module. The real `drbdadm` drives it (`drbdadm --drbdsetup=PATH`, PATH a symlink
//! named `drbdsetup` to the converge binary), and converge observes it like a real one.
//!
//! State lives in `$CONVERGE_SIM_DIR` (or `--sim-dir DIR` first), so it survives between
//! invocations; see [`super::drbd_state`]. Each attached minor is a real block device: a loop
//! device over the backing disk's data area, with a node at `$CONVERGE_SIM_DEV_DIR/drbdN`
//! (default `/dev`), read-only while Secondary. `CONVERGE_SIM_DRBD_VERSION=8.4|9` picks the
//! dialect of the /proc/drbd stand-in (`$CONVERGE_SIM_DIR/proc_drbd`).
//!
//! Test hooks: `sim-peer RES [--role R] [--disk D] [--connection C]` sets what the simulated
//! peer does; `sim-local-disk RES --disk D [--volume N]` sets the local disk state.
//!
//! World mode (`CONVERGE_SIM_WORLD=DIR`, see [`super::drbd_world`]): several simulated nodes
//! share one simulated wire. A command runs as the node named by its hostname (`uname -n`, as
//! `drbdadm` picks its `on` section; `CONVERGE_SIM_NODE` overrides it), and a connection of
//! resource R to peer node id P reaches the node whose resource R has node id P. Every change
//! appends, under the world's lock, the events it causes to each affected node's log, so a
//! node's `events2` shows its peers' changes. `sim-peer` has no place there; the hooks are
//! `sim-world add-node|cut|heal|power-off|power-on|resolve|resync|show` (see [`sim_world`]).
//! `CONVERGE_SIM_WORLD` takes precedence over `CONVERGE_SIM_DIR` (which the OpenVZ simulator
//! keeps using in a world), `--sim-dir` over both.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::drbd_dev as dev;
use super::drbd_format::{self as format, Dialect, StatusOpts};
use super::drbd_state::{
    Backing, CONNECTION_STATES, Connection, DISK_STATES, Device, NetPath, Resource, Role, SimError,
    State, Store,
};
use super::drbd_view::{
    self as view, Action, Event, EventOpts, Obj, Peers, SS_NO_QUORUM, SS_NO_UP_TO_DATE_DISK,
    SS_TWO_PRIMARIES, SS_WEAKLY_CONNECTED, Scripted, conflicting_primary, conn_view, peer_of,
    promotion_check,
};
use super::drbd_world::{
    self as world, WorldPeers, WorldState, WorldStore, attached_volumes, valid_node_name,
};
use converge_core::fsutil::LockMode;
use converge_core::observe::mountinfo::DevNum;

/// Where the simulator keeps things; from the environment unless a test says otherwise.
#[derive(Debug, Clone)]
pub struct Env {
    /// Single-node mode: the state directory. In a world: the node's directory there
    /// (`DIR/nodes/NAME`: its events.log and proc_drbd).
    pub sim_dir: PathBuf,
    pub dev_dir: PathBuf,
    pub dialect: Dialect,
    /// World mode: the world and the node this command runs as.
    pub world: Option<WorldEnv>,
}

#[derive(Debug, Clone)]
pub struct WorldEnv {
    pub dir: PathBuf,
    pub node: String,
}

impl Env {
    /// World mode in `dir`, as node `node` (the node's directory becomes `sim_dir`).
    pub fn in_world(dir: &Path, node: &str, dev_dir: &Path, dialect: Dialect) -> Env {
        Env {
            sim_dir: dir.join("nodes").join(node),
            dev_dir: dev_dir.to_path_buf(),
            dialect,
            world: Some(WorldEnv {
                dir: dir.to_path_buf(),
                node: node.to_string(),
            }),
        }
    }
}

/// The node a command runs as: `CONVERGE_SIM_NODE`, else the hostname (what `drbdadm` matches
/// against the `on` sections).
fn node_name() -> Result<String, String> {
    let name = match std::env::var("CONVERGE_SIM_NODE") {
        Ok(name) if !name.is_empty() => name,
        _ => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    if valid_node_name(&name) {
        Ok(name)
    } else {
        Err(format!(
            "node name {name:?} (CONVERGE_SIM_NODE or the hostname) cannot name a simulated node: use letters, digits, '-', '_', '.'"
        ))
    }
}

/// Entry point: `args` without the program name.
pub fn run(args: &[String]) -> u8 {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut args = args;
    let mut sim_dir = std::env::var_os("CONVERGE_SIM_DIR").map(PathBuf::from);
    let mut world_dir = std::env::var_os("CONVERGE_SIM_WORLD")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let explicit =
        matches!(args.first(), Some(a) if a == "--sim-dir" || a.starts_with("--sim-dir="));
    if explicit {
        // An explicit state directory is single-node mode, whatever the environment says.
        world_dir = None;
    }
    match args.first().map(String::as_str) {
        Some("--sim-dir") => {
            let Some(dir) = args.get(1) else {
                let _ = writeln!(
                    err,
                    "drbdsetup (converge simulator): --sim-dir needs a directory"
                );
                return 20;
            };
            sim_dir = Some(PathBuf::from(dir));
            args = args.get(2..).unwrap_or_default();
        }
        Some(first) if first.starts_with("--sim-dir=") => {
            sim_dir = first.strip_prefix("--sim-dir=").map(PathBuf::from);
            args = args.get(1..).unwrap_or_default();
        }
        _ => {}
    }
    let dialect = match std::env::var("CONVERGE_SIM_DRBD_VERSION") {
        Err(_) => Dialect::V9,
        Ok(text) => match Dialect::parse(&text) {
            Some(d) => d,
            None => {
                let _ = writeln!(
                    err,
                    "drbdsetup (converge simulator): CONVERGE_SIM_DRBD_VERSION={text:?}: expected 8.4 or 9"
                );
                return 20;
            }
        },
    };
    let dev_dir = std::env::var_os("CONVERGE_SIM_DEV_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/dev"), PathBuf::from);
    if let Some(dir) = world_dir {
        let node = match node_name() {
            Ok(node) => node,
            Err(text) => {
                let _ = writeln!(err, "drbdsetup (converge simulator): {text}");
                return 20;
            }
        };
        let env = Env::in_world(&dir, &node, &dev_dir, dialect);
        return run_with(&env, args, &mut out, &mut err);
    }
    let Some(sim_dir) = sim_dir.filter(|d| !d.as_os_str().is_empty()) else {
        let _ = writeln!(
            err,
            "drbdsetup (converge simulator): no state directory: set CONVERGE_SIM_DIR (one node) or CONVERGE_SIM_WORLD (a world of nodes), or pass --sim-dir DIR first"
        );
        return 20;
    };
    let env = Env {
        sim_dir,
        dev_dir,
        dialect,
        world: None,
    };
    run_with(&env, args, &mut out, &mut err)
}

/// Runs one command with explicit surroundings and outputs; returns drbdsetup's exit code.
pub fn run_with(env: &Env, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let code = match dispatch(env, args, out) {
        Ok(code) => code,
        Err(fail) => {
            let _ = write!(err, "{}", fail.message());
            fail.exit_code()
        }
    };
    let _ = out.flush();
    code
}

/// Why a command failed, in drbdsetup's terms.
#[derive(Debug)]
enum Fail {
    /// Bad command line: the message, exit 20.
    Usage(String),
    /// A kernel error code (`OBJ: Failure: (CODE) TEXT`), exit 10.
    Failure { obj: String, code: u32 },
    /// A refused state change (`OBJ: State change failed: (RV) TEXT`).
    State { obj: String, rv: i32 },
    /// Any other message with its exit code.
    Message { text: String, code: u8 },
    /// The simulator itself could not do its job.
    Sim(SimError),
}

impl From<SimError> for Fail {
    fn from(e: SimError) -> Self {
        Fail::Sim(e)
    }
}

// DRBD's error codes (drbd.h) and state-change results, with drbdsetup's texts.
const ERR_OPEN_DISK: u32 = 104;
const ERR_DISK_NOT_BDEV: u32 = 107;
const ERR_DISK_TOO_SMALL: u32 = 111;
const ERR_MD_INVALID: u32 = 119;
const ERR_DISK_CONFIGURED: u32 = 124;
const ERR_NET_CONFIGURED: u32 = 125;
const ERR_MINOR_INVALID: u32 = 127;
const ERR_NO_DISK: u32 = 138;
const ERR_RES_NOT_KNOWN: u32 = 158;
const ERR_RES_IN_USE: u32 = 159;
const ERR_MINOR_CONFIGURED: u32 = 160;
const ERR_MINOR_OR_VOLUME_EXISTS: u32 = 161;
const ERR_INVALID_REQUEST: u32 = 162;
const ERR_NEED_ALLOW_TWO_PRI: u32 = 164;

const SS_CONNECTED_OUTDATES: i32 = -6;
const SS_IS_DISKLESS: i32 = -11;
const SS_DEVICE_IN_USE: i32 = -12;

fn error_text(code: u32) -> &'static str {
    match code {
        ERR_OPEN_DISK => "Can not open backing device.",
        ERR_DISK_NOT_BDEV => "Lower device is not a block device.",
        ERR_DISK_TOO_SMALL => "Low.dev. smaller than requested DRBD-dev. size.",
        ERR_MD_INVALID => {
            "No valid meta-data signature found.\n\n\t==> Use 'drbdadm create-md res' to initialize meta-data area. <==\n"
        }
        ERR_DISK_CONFIGURED => "Device is attached to a disk (use detach first)",
        ERR_NET_CONFIGURED => "Device has a net-config (use disconnect first)",
        ERR_MINOR_INVALID => "Device minor not allocated",
        ERR_NO_DISK => "Device does not have a disk-config",
        ERR_RES_NOT_KNOWN => "Unknown resource",
        ERR_RES_IN_USE => "Resource still in use (delete all minors first)",
        ERR_MINOR_CONFIGURED => "Minor still configured (down it first)",
        ERR_MINOR_OR_VOLUME_EXISTS => "Minor or volume exists already (delete it first)",
        ERR_INVALID_REQUEST => "Invalid configuration request",
        ERR_NEED_ALLOW_TWO_PRI => {
            "Can not clear allow_two_primaries as long as\nthere a primaries on both sides"
        }
        _ => "Unknown... maybe API_VERSION mismatch?",
    }
}

fn state_text(rv: i32) -> &'static str {
    match rv {
        SS_TWO_PRIMARIES => "Multiple primaries not allowed by config",
        SS_NO_UP_TO_DATE_DISK => "Need access to UpToDate data",
        SS_CONNECTED_OUTDATES => "Refusing to be Outdated while Connected",
        SS_IS_DISKLESS => "Device is diskless, the requested operation requires a disk",
        SS_DEVICE_IN_USE => "Device is held open by someone",
        SS_WEAKLY_CONNECTED => "Primary nodes must be strongly connected among each other",
        SS_NO_QUORUM => "No quorum",
        _ => "unknown error",
    }
}

impl Fail {
    fn message(&self) -> String {
        match self {
            Fail::Usage(text) => format!("{text}\n"),
            Fail::Failure { obj, code } => {
                format!("{obj}: Failure: ({code}) {}\n", error_text(*code))
            }
            Fail::State { obj, rv } => {
                format!("{obj}: State change failed: ({rv}) {}\n", state_text(*rv))
            }
            Fail::Message { text, .. } => format!("{text}\n"),
            Fail::Sim(e) => format!("drbdsetup (converge simulator): {e}\n"),
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            Fail::Usage(_) | Fail::Sim(_) => 20,
            Fail::Failure { .. } => 10,
            Fail::State { rv, .. } if *rv == SS_NO_UP_TO_DATE_DISK => 17,
            Fail::State { .. } => 11,
            Fail::Message { code, .. } => *code,
        }
    }
}

fn failure(obj: &str, code: u32) -> Fail {
    Fail::Failure {
        obj: obj.to_string(),
        code,
    }
}

fn refused(obj: &str, rv: i32) -> Fail {
    Fail::State {
        obj: obj.to_string(),
        rv,
    }
}

/// The commands drbdsetup 9 knows (for the old `drbdsetup MINOR COMMAND` order and usage).
const COMMANDS: &[&str] = &[
    "primary",
    "secondary",
    "attach",
    "disk-options",
    "detach",
    "connect",
    "new-peer",
    "del-peer",
    "new-path",
    "del-path",
    "net-options",
    "disconnect",
    "resize",
    "resource-options",
    "peer-device-options",
    "new-current-uuid",
    "invalidate",
    "invalidate-remote",
    "pause-sync",
    "resume-sync",
    "suspend-io",
    "resume-io",
    "outdate",
    "verify",
    "down",
    "role",
    "peer-role",
    "cstate",
    "dstate",
    "show-gi",
    "get-gi",
    "show",
    "status",
    "check-resize",
    "events2",
    "wait-sync-volume",
    "wait-sync-connection",
    "wait-sync-resource",
    "wait-connect-volume",
    "wait-connect-connection",
    "wait-connect-resource",
    "new-resource",
    "new-minor",
    "del-minor",
    "del-resource",
    "forget-peer",
    "rename-resource",
    "sim-peer",
    "sim-local-disk",
    "sim-world",
];

fn usage(extra: &str) -> Fail {
    let mut text = String::from(
        "drbdsetup - Configure the DRBD kernel module (converge simulator).\n\nUSAGE: drbdsetup command {arguments} [options]\n\nCommands:\n",
    );
    for command in COMMANDS {
        text.push_str("    ");
        text.push_str(command);
        text.push('\n');
    }
    text.push_str("\nSimulator: CONVERGE_SIM_DIR (state), CONVERGE_SIM_DEV_DIR (device nodes, default /dev),\nCONVERGE_SIM_DRBD_VERSION (8.4 or 9); hooks: sim-peer RES [--role R] [--disk D] [--connection C],\nsim-local-disk RES --disk D [--volume N].\nWorld mode: CONVERGE_SIM_WORLD (the world's directory), CONVERGE_SIM_NODE (default: the hostname);\nhooks: ");
    text.push_str(SIM_WORLD_USAGE);
    text.push('\n');
    if !extra.is_empty() {
        text.push('\n');
        text.push_str(extra);
    }
    Fail::Usage(text)
}

/// The hooks' options, which also take their value as the next word (`--role Primary`). Other
/// options need `--key=value`, the form drbdadm uses, since an unknown option's value could not
/// be told from a positional argument.
const HOOK_OPTIONS: &[&str] = &["role", "disk", "connection", "volume"];

/// A command line split drbdsetup's way: positional words, and `--key[=value]` options anywhere.
#[derive(Debug)]
struct Args {
    command: String,
    words: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, Fail> {
        let mut words = Vec::new();
        let mut options = Vec::new();
        let mut args = args.iter().peekable();
        while let Some(arg) = args.next() {
            if let Some(option) = arg.strip_prefix("--").filter(|o| !o.is_empty()) {
                match option.split_once('=') {
                    Some((key, value)) => options.push((key.to_string(), Some(value.to_string()))),
                    None if HOOK_OPTIONS.contains(&option) => {
                        let value = args.next_if(|next| !next.starts_with("--")).cloned();
                        options.push((option.to_string(), value));
                    }
                    None => options.push((option.to_string(), None)),
                }
            } else if arg.len() > 1
                && arg.starts_with('-')
                && !arg[1..].starts_with(|c: char| c.is_ascii_digit())
            {
                options.push((arg[1..].to_string(), None));
            } else {
                words.push(arg.clone());
            }
        }
        // drbdsetup still takes the old order `drbdsetup MINOR COMMAND`.
        if words.len() >= 2
            && !COMMANDS.contains(&words[0].as_str())
            && COMMANDS.contains(&words[1].as_str())
        {
            words.swap(0, 1);
        }
        if words.is_empty() {
            if options.iter().any(|(k, _)| k == "version" || k == "V") {
                return Ok(Args {
                    command: "version".to_string(),
                    words,
                    options,
                });
            }
            return Err(usage(""));
        }
        let command = words.remove(0);
        Ok(Args {
            command,
            words,
            options,
        })
    }

    fn flag(&self, key: &str) -> bool {
        self.options.iter().any(|(k, _)| k == key)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Positional argument `index` (0-based), or drbdsetup's complaint.
    fn word(&self, index: usize) -> Result<&str, Fail> {
        self.words.get(index).map(String::as_str).ok_or_else(|| {
            usage(&format!(
                "Missing argument {} to command {}",
                index + 1,
                self.command
            ))
        })
    }

    fn number(&self, index: usize, what: &str) -> Result<u32, Fail> {
        let word = self.word(index)?;
        word.parse().map_err(|_| {
            Fail::Usage(format!(
                "{}: invalid {what} '{word}' (expected a number)",
                self.command
            ))
        })
    }

    /// A minor given as `N`, `minor-N` or a device path ending in `drbdN`.
    fn minor(&self, index: usize) -> Result<(u32, String), Fail> {
        let word = self.word(index)?;
        let name = Path::new(word)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let digits = word
            .strip_prefix("minor-")
            .or_else(|| name.strip_prefix("drbd"))
            .unwrap_or(word);
        digits.parse().map(|m| (m, word.to_string())).map_err(|_| {
            Fail::Usage(format!(
                "Cannot determine minor device number of device '{word}'"
            ))
        })
    }

    /// Options to keep for `show` (drbdadm passes the configuration this way).
    fn config_options(&self, skip: &[&str]) -> Vec<(String, String)> {
        self.options
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect()
    }
}

/// Merges `--key=value` options into `into`, a later value replacing an earlier one.
fn merge_options(into: &mut Vec<(String, String)>, new: Vec<(String, String)>) {
    for (key, value) in new {
        into.retain(|(k, _)| *k != key);
        into.push((key, value));
    }
}

fn dispatch(env: &Env, args: &[String], out: &mut dyn Write) -> Result<u8, Fail> {
    let args = Args::parse(args)?;
    if matches!(args.command.as_str(), "help" | "-h" | "h" | "xml-help") {
        return Err(usage(""));
    }
    if args.command == "version" {
        let _ = write!(out, "{}", format::version_text(env.dialect));
        return Ok(0);
    }
    let kernel = Kernel::open(env)?;
    if args.command == "sim-world" {
        return sim_world(env, &kernel, &args, out);
    }
    kernel.refuse_if_off()?;
    let store = kernel.store();
    if !store.proc_path().exists() {
        // A node with DRBD loaded always has /proc/drbd, whatever was configured. Not waiting
        // for the lock: its holder writes the file anyway, and may be waiting for drbdmeta,
        // which calls this simulator.
        if let Some(_lock) = kernel.try_lock()? {
            let loaded = kernel.view()?;
            let text = format::proc_text(&loaded.state, &*loaded.peers(), env.dialect);
            store.write_atomically(&store.proc_path(), text.as_bytes())?;
        }
    }
    match args.command.as_str() {
        "role" | "peer-role" | "cstate" | "dstate" | "status" | "show" | "check-resize"
        | "get-gi" | "show-gi" => read_only(&kernel, &args, out),
        "events2" => events2(&kernel, &args, out),
        "wait-sync-volume"
        | "wait-sync-connection"
        | "wait-sync-resource"
        | "wait-connect-volume"
        | "wait-connect-connection"
        | "wait-connect-resource" => {
            // A connection is as connected as it will get; a resync finishes at once (or waits
            // for a hook, which this would wait for forever).
            Ok(0)
        }
        "invalidate" | "invalidate-remote" | "verify" | "rename-resource" => {
            Err(Fail::Usage(format!(
                "drbdsetup (converge simulator): {} is not simulated",
                args.command
            )))
        }
        command if COMMANDS.contains(&command) => {
            let lock = kernel.lock(LockMode::Exclusive)?;
            let mut tx = kernel.begin()?;
            let result = change(env, &mut tx, &args);
            // What happened before a failure (a loop device set up, a peer dropped) is real.
            let saved = kernel.commit(env, &tx);
            drop(lock);
            saved?;
            result.map(|()| 0)
        }
        other => Err(usage(&format!("invalid command '{other}'"))),
    }
}

/// Where the simulated kernel lives: one node's state directory, or a world of nodes.
enum Kernel {
    Single(Store),
    World {
        world: WorldStore,
        node: String,
        /// The node's directory: its events.log and proc_drbd.
        store: Store,
    },
}

/// What a command that only reads sees: this node's state and where its peers come from.
struct View {
    state: State,
    world: Option<(WorldState, String)>,
}

impl View {
    fn peers(&self) -> Box<dyn Peers + '_> {
        match &self.world {
            None => Box::new(Scripted(&self.state.peers)),
            Some((world, node)) => Box::new(WorldPeers { world, node }),
        }
    }
}

impl Kernel {
    fn open(env: &Env) -> Result<Kernel, Fail> {
        match &env.world {
            None => Ok(Kernel::Single(Store::open(&env.sim_dir)?)),
            Some(w) => {
                if !valid_node_name(&w.node) {
                    return Err(Fail::Usage(format!(
                        "drbdsetup (converge simulator): {:?} cannot name a simulated node",
                        w.node
                    )));
                }
                Ok(Kernel::World {
                    world: WorldStore::open(&w.dir)?,
                    node: w.node.clone(),
                    store: Store::open(&env.sim_dir)?,
                })
            }
        }
    }

    fn store(&self) -> &Store {
        match self {
            Kernel::Single(store) | Kernel::World { store, .. } => store,
        }
    }

    fn lock(&self, mode: LockMode) -> Result<converge_core::fsutil::FileLock, SimError> {
        match self {
            Kernel::Single(store) => store.lock(mode),
            Kernel::World { world, .. } => world.lock(mode),
        }
    }

    fn try_lock(&self) -> Result<Option<converge_core::fsutil::FileLock>, SimError> {
        match self {
            Kernel::Single(store) => store.try_lock(),
            Kernel::World { world, .. } => world.try_lock(),
        }
    }

    /// A powered-off node runs nothing: only the hooks may speak of it.
    fn refuse_if_off(&self) -> Result<(), Fail> {
        if let Kernel::World { world, node, .. } = self
            && world.load()?.off.contains(node)
        {
            return Err(Fail::Message {
                text: format!(
                    "drbdsetup (converge simulator): node {node} is powered off in world {}; power it on first (sim-world power-on {node})",
                    world.dir().display()
                ),
                code: 20,
            });
        }
        Ok(())
    }

    /// The node's state as last saved; no lock (the files are replaced by rename, and
    /// drbdmeta calls `dstate` while an `attach` holds the lock).
    fn view(&self) -> Result<View, Fail> {
        match self {
            Kernel::Single(store) => Ok(View {
                state: store.load()?,
                world: None,
            }),
            Kernel::World { world, node, .. } => {
                let world = world.load()?;
                Ok(View {
                    state: world.nodes.get(node).cloned().unwrap_or_default(),
                    world: Some((world, node.clone())),
                })
            }
        }
    }

    /// Starts a change; the caller holds the exclusive lock.
    fn begin(&self) -> Result<Tx, Fail> {
        let (state, world) = match self {
            Kernel::Single(store) => (store.load()?, None),
            Kernel::World {
                world: store, node, ..
            } => {
                let mut world = store.load()?;
                if world.off.contains(node) {
                    // Powered off between the first look and the lock.
                    return Err(Fail::Message {
                        text: format!(
                            "drbdsetup (converge simulator): node {node} is powered off in world {}",
                            store.dir().display()
                        ),
                        code: 20,
                    });
                }
                // A node that runs a command exists.
                let state = world.nodes.remove(node).unwrap_or_default();
                (
                    state,
                    Some(WorldTx {
                        node: node.clone(),
                        world,
                        events: BTreeMap::new(),
                    }),
                )
            }
        };
        Ok(Tx {
            state,
            events: Vec::new(),
            open: HashMap::new(),
            world,
        })
    }

    fn commit(&self, env: &Env, tx: &Tx) -> Result<(), Fail> {
        match (self, &tx.world) {
            (Kernel::World { world: store, .. }, Some(wt)) => {
                let mut world = wt.world.clone();
                world.nodes.insert(wt.node.clone(), tx.state.clone());
                commit_world(env, store, &world, &wt.events, Some(&wt.node))
            }
            (Kernel::Single(store), _) | (Kernel::World { store, .. }, None) => {
                store.save(&tx.state)?;
                append_events(store, &tx.events)?;
                let proc_text =
                    format::proc_text(&tx.state, &Scripted(&tx.state.peers), env.dialect);
                store.write_atomically(&store.proc_path(), proc_text.as_bytes())?;
                Ok(())
            }
        }
    }
}

fn append_events(store: &Store, events: &[Event]) -> Result<(), Fail> {
    let lines: Vec<String> = events
        .iter()
        .filter_map(|e| serde_json::to_string(e).ok())
        .collect();
    Ok(store.append_events(&lines)?)
}

/// Saves the world, then appends each node's events to its log and rewrites the /proc/drbd
/// stand-in of every node that had events (and of `local`, the node that ran the command).
fn commit_world(
    env: &Env,
    store: &WorldStore,
    world: &WorldState,
    events: &BTreeMap<String, Vec<Event>>,
    local: Option<&str>,
) -> Result<(), Fail> {
    store.save(world)?;
    for (node, state) in &world.nodes {
        let node_events = events.get(node).map(Vec::as_slice).unwrap_or_default();
        if node_events.is_empty() && local != Some(node.as_str()) {
            continue;
        }
        let node_store = store.node_store(node)?;
        append_events(&node_store, node_events)?;
        let peers = WorldPeers { world, node };
        let proc_text = format::proc_text(state, &peers, env.dialect);
        node_store.write_atomically(&node_store.proc_path(), proc_text.as_bytes())?;
    }
    Ok(())
}

/// The state being changed by one command, and the events the change produces.
struct Tx {
    /// The node's own state (in a world: taken out of it while the command runs).
    state: State,
    /// Single-node mode's events.
    events: Vec<Event>,
    /// Whether an attached device is open, by device numbers: computed once per command.
    open: HashMap<(u32, u32), bool>,
    world: Option<WorldTx>,
}

/// A change in a world: the other nodes, and every node's events.
struct WorldTx {
    node: String,
    /// The world without `node`'s state, which is in [`Tx::state`].
    world: WorldState,
    events: BTreeMap<String, Vec<Event>>,
}

impl Tx {
    fn in_world(&self) -> bool {
        self.world.is_some()
    }

    /// Applies `f` to this node's state, recording the events that turn resource `name` from
    /// before into after: this node's own, and in a world every other node's, after DRBD's
    /// rules between the nodes have been applied.
    fn step<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut State, &dyn Peers) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        let cache = &mut self.open;
        let mut open = |b: &Backing| {
            *cache
                .entry((b.major, b.minor))
                .or_insert_with(|| dev::is_open(b))
        };
        let Some(wt) = self.world.as_mut() else {
            let peers = self.state.peers.clone();
            let before = view::snapshot(&self.state, &Scripted(&peers), name, &mut open);
            let result = f(&mut self.state, &Scripted(&peers));
            let peers = self.state.peers.clone();
            for res in self.state.resources.values_mut() {
                view::update_quorum(res, &Scripted(&peers));
            }
            let after = view::snapshot(&self.state, &Scripted(&self.state.peers), name, &mut open);
            self.events
                .extend(view::diff(&before, &after, view::now_micros()));
            return result;
        };
        let node = wt.node.clone();
        wt.world
            .nodes
            .insert(node.clone(), std::mem::take(&mut self.state));
        let result = world_change(
            &mut wt.world,
            Some(name),
            Some(&node),
            &mut open,
            &mut wt.events,
            |world| {
                let was = attached_volumes(world.nodes.get(&node));
                let mut state = world.nodes.remove(&node).unwrap_or_default();
                let result = f(&mut state, &WorldPeers { world, node: &node });
                world.nodes.insert(node.clone(), state);
                world.sync_metadata(&node, &was);
                result
            },
        );
        self.state = wt.world.nodes.remove(&node).unwrap_or_default();
        result
    }
}

/// Every node's objects (of resource `scope`, or all), as that node sees them. Only the
/// `local` node's devices are probed with `open`; the others' report what their own node saw.
fn world_snapshots(
    world: &WorldState,
    scope: Option<&str>,
    local: Option<&str>,
    open: &mut dyn FnMut(&Backing) -> bool,
) -> BTreeMap<String, Vec<Obj>> {
    let mut seen = |b: &Backing| b.seen_open;
    world
        .nodes
        .iter()
        .map(|(node, state)| {
            let peers = WorldPeers { world, node };
            let open: &mut dyn FnMut(&Backing) -> bool = if local == Some(node.as_str()) {
                &mut *open
            } else {
                &mut seen
            };
            let objs = match scope {
                Some(name) => view::snapshot(state, &peers, name, open),
                None => state
                    .resources
                    .keys()
                    .flat_map(|name| view::snapshot(state, &peers, name, &mut *open))
                    .collect(),
            };
            (node.clone(), objs)
        })
        .collect()
}

/// Appends to each node's events what turns its `before` objects into its `after` ones. A
/// node that is gone (powered off) gets none: nothing of it is left to read them.
fn emit(
    before: &BTreeMap<String, Vec<Obj>>,
    after: &BTreeMap<String, Vec<Obj>>,
    events: &mut BTreeMap<String, Vec<Event>>,
) {
    let t = view::now_micros();
    for (node, objs) in after {
        let was = before.get(node).map(Vec::as_slice).unwrap_or_default();
        let diff = view::diff(was, objs, t);
        if !diff.is_empty() {
            events.entry(node.clone()).or_default().extend(diff);
        }
    }
}

/// Runs `f` on the world, applies DRBD's rules between the nodes, and records every node's
/// events; a resync that starts shows as its own batch of events before it completes.
fn world_change<T>(
    world: &mut WorldState,
    scope: Option<&str>,
    local: Option<&str>,
    open: &mut dyn FnMut(&Backing) -> bool,
    events: &mut BTreeMap<String, Vec<Event>>,
    f: impl FnOnce(&mut WorldState) -> Result<T, Fail>,
) -> Result<T, Fail> {
    let before = world_snapshots(world, scope, local, open);
    let result = f(world);
    world::settle(world);
    // What this node saw of its own devices is what the others will report of them.
    if let Some(state) = local.and_then(|n| world.nodes.get_mut(n)) {
        for backing in state
            .resources
            .values_mut()
            .flat_map(|r| r.devices.values_mut())
            .filter_map(|d| d.backing.as_mut())
        {
            backing.seen_open = open(backing);
        }
    }
    let settled = world_snapshots(world, scope, local, open);
    // The handlers DRBD ran come before the state they led to (a split brain's, before the
    // connection goes StandAlone): each called, then answered (status 0, no handler
    // configured to say otherwise).
    let t = view::now_micros();
    for (node, call) in std::mem::take(&mut world.helper_calls) {
        let mut response = call.clone();
        if let view::Obj::Helper { status, .. } = &mut response {
            *status = Some(0);
        }
        let node_events = events.entry(node).or_default();
        for (action, obj) in [
            (view::Action::Call, call),
            (view::Action::Response, response),
        ] {
            node_events.push(Event {
                t,
                action,
                obj,
                changed: Vec::new(),
            });
        }
    }
    emit(&before, &settled, events);
    if world::finish_resyncs(world) {
        let after = world_snapshots(world, scope, local, open);
        emit(&settled, &after, events);
    }
    result
}

fn resource_mut<'a>(state: &'a mut State, name: &str) -> Result<&'a mut Resource, Fail> {
    state
        .resources
        .get_mut(name)
        .ok_or_else(|| failure(name, ERR_RES_NOT_KNOWN))
}

fn connection_mut<'a>(
    state: &'a mut State,
    name: &str,
    peer: u32,
) -> Result<&'a mut Connection, Fail> {
    resource_mut(state, name)?
        .connections
        .get_mut(&peer)
        .ok_or_else(|| failure(name, ERR_INVALID_REQUEST))
}

/// The resource and volume that hold `minor`.
fn find_minor(state: &State, minor: u32) -> Option<(String, u32)> {
    state.resources.values().find_map(|r| {
        r.devices
            .values()
            .find(|d| d.minor == minor)
            .map(|d| (r.name.clone(), d.volume))
    })
}

fn device_mut<'a>(state: &'a mut State, name: &str, volume: u32) -> Option<&'a mut Device> {
    state.resources.get_mut(name)?.devices.get_mut(&volume)
}

fn change(env: &Env, tx: &mut Tx, args: &Args) -> Result<(), Fail> {
    match args.command.as_str() {
        "new-resource" => {
            let name = args.word(0)?.to_string();
            if args.words.len() < 2 {
                return Err(usage("Missing argument 'node_id'"));
            }
            let node_id = args.number(1, "node_id")?;
            let options = args.config_options(&[]);
            tx.step(&name, |state, _| {
                state
                    .resources
                    .entry(name.clone())
                    .or_insert_with(|| Resource {
                        name: name.clone(),
                        node_id,
                        role: Role::Secondary,
                        options,
                        devices: Default::default(),
                        connections: Default::default(),
                        quorumless: Default::default(),
                        force_io_failures: false,
                    });
                Ok(())
            })
        }
        "resource-options" => {
            let name = args.word(0)?.to_string();
            let options = args.config_options(&["set-defaults"]);
            let reset = args.flag("set-defaults");
            tx.step(&name, |state, _| {
                let res = resource_mut(state, &name)?;
                if reset {
                    res.options.clear();
                }
                merge_options(&mut res.options, options);
                Ok(())
            })
        }
        "new-minor" => {
            let name = args.word(0)?.to_string();
            let (minor, _) = args.minor(1)?;
            let volume = args.number(2, "volume")?;
            // drbdadm's way of creating a `disk none` volume: diskless by intent.
            let client = args.flag("diskless");
            tx.step(&name, |state, _| {
                let taken = find_minor(state, minor).is_some();
                let res = resource_mut(state, &name)?;
                if taken || res.devices.contains_key(&volume) {
                    return Err(failure(&name, ERR_MINOR_OR_VOLUME_EXISTS));
                }
                // A new device has no quorum to keep (the tiebreaker cannot hand it one).
                let quorum = !view::quorum_enabled(res);
                res.devices.insert(
                    volume,
                    Device {
                        volume,
                        minor,
                        disk: "Diskless".to_string(),
                        backing: None,
                        client,
                        quorum,
                    },
                );
                Ok(())
            })
        }
        "del-minor" => {
            let (minor, obj) = args.minor(0)?;
            let (name, volume) =
                find_minor(&tx.state, minor).ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))?;
            tx.step(&name, |state, _| {
                let res = resource_mut(state, &name)?;
                if res
                    .devices
                    .get(&volume)
                    .is_some_and(|d| d.backing.is_some())
                {
                    return Err(failure(&obj, ERR_MINOR_CONFIGURED));
                }
                res.devices.remove(&volume);
                Ok(())
            })
        }
        "del-resource" => {
            let name = args.word(0)?.to_string();
            tx.step(&name, |state, _| {
                let res = resource_mut(state, &name)?;
                if !res.devices.is_empty() || !res.connections.is_empty() {
                    return Err(failure(&name, ERR_RES_IN_USE));
                }
                state.resources.remove(&name);
                Ok(())
            })
        }
        "new-peer" => {
            let name = args.word(0)?.to_string();
            let peer = args.number(1, "peer_node_id")?;
            let conn_name = args.value("_name").unwrap_or_default().to_string();
            let net = args.config_options(&["_name"]);
            tx.step(&name, |state, _| {
                let res = resource_mut(state, &name)?;
                if res.connections.contains_key(&peer) {
                    return Err(failure(&name, ERR_INVALID_REQUEST));
                }
                res.connections.insert(
                    peer,
                    Connection {
                        peer_node_id: peer,
                        name: conn_name,
                        net,
                        paths: Vec::new(),
                        connect: false,
                        discard_my_data: false,
                        peer_devices: BTreeMap::new(),
                    },
                );
                Ok(())
            })
        }
        "net-options" => {
            let name = args.word(0)?.to_string();
            let peer = args.number(1, "peer_node_id")?;
            let net = args.config_options(&["_name", "set-defaults"]);
            let reset = args.flag("set-defaults");
            tx.step(&name, |state, peers| {
                let peer_role = state.resources.get(&name).and_then(|res| {
                    res.connections
                        .get(&peer)
                        .map(|c| peers.view(res, c).peer_role)
                });
                let res = resource_mut(state, &name)?;
                let role = res.role;
                let conn = res
                    .connections
                    .get_mut(&peer)
                    .ok_or_else(|| failure(&name, ERR_INVALID_REQUEST))?;
                let before = conn.net.clone();
                if reset {
                    conn.net.clear();
                }
                merge_options(&mut conn.net, net);
                let both = role == Role::Primary
                    && peer_role == Some(Role::Primary)
                    && !conn.allows_two_primaries();
                if both {
                    conn.net = before;
                    return Err(failure(&name, ERR_NEED_ALLOW_TWO_PRI));
                }
                Ok(())
            })
        }
        "new-path" | "del-path" => {
            let name = args.word(0)?.to_string();
            let peer = args.number(1, "peer_node_id")?;
            let path = NetPath {
                local: format::canonical_endpoint(args.word(2)?),
                remote: format::canonical_endpoint(args.word(3)?),
            };
            let add = args.command == "new-path";
            tx.step(&name, |state, _| {
                let conn = connection_mut(state, &name, peer)?;
                conn.paths.retain(|p| *p != path);
                if add {
                    conn.paths.push(path);
                }
                Ok(())
            })
        }
        "connect" => {
            let name = args.word(0)?.to_string();
            let peer = args.number(1, "peer_node_id")?;
            let discard = args.flag("discard-my-data");
            if tx.in_world() {
                tx.step(&name, |state, _| {
                    connect_in_world(state, &name, peer, discard)
                })
            } else {
                tx.step(&name, |state, _| connect(state, &name, peer))
            }
        }
        "disconnect" => {
            let name = args.word(0)?.to_string();
            let peer = args.number(1, "peer_node_id")?;
            tx.step(&name, |state, _| {
                connection_mut(state, &name, peer)?.connect = false;
                Ok(())
            })
        }
        "del-peer" => {
            let name = args.word(0)?.to_string();
            let peer = args.number(1, "peer_node_id")?;
            tx.step(&name, |state, _| {
                let res = resource_mut(state, &name)?;
                res.connections
                    .remove(&peer)
                    .map(drop)
                    .ok_or_else(|| failure(&name, ERR_INVALID_REQUEST))
            })
        }
        "attach" => {
            let (minor, obj) = args.minor(0)?;
            let lower = args.word(1)?.to_string();
            let meta = args.word(2)?.to_string();
            let meta_index = args.word(3)?.to_string();
            let options = args.config_options(&[]);
            let (name, volume) =
                find_minor(&tx.state, minor).ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))?;
            let node = env.dev_dir.join(format!("drbd{minor}"));
            tx.step(&name, |state, _| {
                attach(
                    state,
                    &name,
                    volume,
                    &obj,
                    Backing {
                        lower,
                        meta,
                        meta_index,
                        loop_dev: PathBuf::new(),
                        node,
                        major: 0,
                        minor: 0,
                        size_bytes: 0,
                        options,
                        seen_open: false,
                    },
                )
            })
        }
        "disk-options" => {
            let (minor, obj) = args.minor(0)?;
            let options = args.config_options(&["set-defaults"]);
            let (name, volume) =
                find_minor(&tx.state, minor).ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))?;
            tx.step(&name, |state, _| {
                let backing = device_mut(state, &name, volume)
                    .and_then(|d| d.backing.as_mut())
                    .ok_or_else(|| failure(&obj, ERR_NO_DISK))?;
                merge_options(&mut backing.options, options);
                Ok(())
            })
        }
        "detach" => {
            let (minor, obj) = args.minor(0)?;
            let (name, volume) =
                find_minor(&tx.state, minor).ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))?;
            // `--diskless`: diskless by intent from now on, as DRBD's detach records it.
            let client = args.flag("diskless");
            detach_step(tx, &name, volume, &obj, client)
        }
        "outdate" => {
            let (minor, obj) = args.minor(0)?;
            let (name, volume) =
                find_minor(&tx.state, minor).ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))?;
            tx.step(&name, |state, peers| {
                let res = resource_mut(state, &name)?;
                let connected = res
                    .connections
                    .values()
                    .any(|c| peers.view(res, c).connected);
                let device = res
                    .devices
                    .get_mut(&volume)
                    .ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))?;
                if device.backing.is_none() {
                    return Err(refused(&obj, SS_IS_DISKLESS));
                }
                if connected {
                    return Err(refused(&obj, SS_CONNECTED_OUTDATES));
                }
                if matches!(device.disk.as_str(), "UpToDate" | "Consistent") {
                    device.disk = "Outdated".to_string();
                }
                Ok(())
            })
        }
        "resize" | "new-current-uuid" | "suspend-io" | "resume-io" => {
            // The data area is fixed by the metadata; UUIDs and I/O suspension are not modelled.
            let (minor, obj) = args.minor(0)?;
            find_minor(&tx.state, minor)
                .map(drop)
                .ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))
        }
        "peer-device-options" => {
            let name = args.word(0)?.to_string();
            let peer = args.number(1, "peer_node_id")?;
            let volume = args.number(2, "volume")?;
            let options = args.config_options(&["set-defaults"]);
            let reset = args.flag("set-defaults");
            tx.step(&name, |state, _| {
                let res = resource_mut(state, &name)?;
                if !res.devices.contains_key(&volume) {
                    return Err(failure(&name, ERR_MINOR_INVALID));
                }
                let conn = res
                    .connections
                    .get_mut(&peer)
                    .ok_or_else(|| failure(&name, ERR_INVALID_REQUEST))?;
                let current = conn.peer_devices.entry(volume).or_default();
                if reset {
                    current.clear();
                }
                merge_options(current, options);
                Ok(())
            })
        }
        "pause-sync" | "resume-sync" | "forget-peer" => {
            let name = args.word(0)?;
            resource_mut(&mut tx.state, name).map(drop)
        }
        "primary" => {
            let name = args.word(0)?.to_string();
            let force = args.flag("force") || args.flag("overwrite-data-of-peer");
            tx.step(&name, |state, peers| primary(state, peers, &name, force))
        }
        "secondary" => {
            let name = args.word(0)?.to_string();
            let force = args.flag("force");
            tx.step(&name, |state, _| secondary(state, &name, force))
        }
        "down" => {
            let target = args.words.first().map_or("all", String::as_str);
            let names: Vec<String> = tx
                .state
                .resources
                .keys()
                .filter(|n| target == "all" || *n == target)
                .cloned()
                .collect();
            let mut first_error = None;
            for name in names {
                if let Err(e) = down(tx, &name) {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        }
        "sim-peer" => {
            if tx.in_world() {
                return Err(Fail::Usage(
                    "sim-peer drives the scripted peer of single-node mode; in a world (CONVERGE_SIM_WORLD) the peers are the other nodes: run commands as them, or use sim-world".into(),
                ));
            }
            let name = args.word(0)?.to_string();
            let role = match args.value("role") {
                None => None,
                Some(r) => Some(Role::parse(r).ok_or_else(|| {
                    Fail::Usage(format!(
                        "sim-peer: --role {r:?}: expected Primary, Secondary or Unknown"
                    ))
                })?),
            };
            let disk = checked_state(args.value("disk"), DISK_STATES, "sim-peer --disk")?;
            let connection = checked_state(
                args.value("connection"),
                CONNECTION_STATES,
                "sim-peer --connection",
            )?;
            tx.step(&name, |state, _| {
                let mut peer = peer_of(state, &name);
                if let Some(role) = role {
                    peer.role = role;
                }
                if let Some(disk) = disk {
                    peer.disk = disk;
                }
                if let Some(connection) = connection {
                    peer.connection = connection;
                }
                // DRBD would refuse the peer's promotion (or drop the connection) rather than let
                // two primaries meet.
                if let Some(res) = state.resources.get(&name)
                    && res.role == Role::Primary
                    && conflicting_primary(res, &peer)
                {
                    return Err(refused(&name, SS_TWO_PRIMARIES));
                }
                state.peers.insert(name.clone(), peer);
                Ok(())
            })
        }
        "sim-local-disk" => {
            let name = args.word(0)?.to_string();
            let disk = checked_state(args.value("disk"), DISK_STATES, "sim-local-disk --disk")?
                .ok_or_else(|| Fail::Usage("sim-local-disk: --disk STATE is required".into()))?;
            if disk == "Diskless" {
                return Err(Fail::Usage(
                    "sim-local-disk: use detach to make a device Diskless".into(),
                ));
            }
            let volume = match args.value("volume") {
                None => None,
                Some(v) => Some(v.parse::<u32>().map_err(|_| {
                    Fail::Usage(format!("sim-local-disk: --volume {v:?}: expected a number"))
                })?),
            };
            tx.step(&name, |state, _| {
                let res = resource_mut(state, &name)?;
                let mut touched = false;
                for device in res.devices.values_mut() {
                    if volume.is_some_and(|v| v != device.volume) {
                        continue;
                    }
                    if device.backing.is_none() {
                        return Err(failure(&device.minor.to_string(), ERR_NO_DISK));
                    }
                    device.disk = disk.clone();
                    touched = true;
                }
                if touched {
                    Ok(())
                } else {
                    Err(failure(&name, ERR_MINOR_INVALID))
                }
            })
        }
        other => Err(usage(&format!("invalid command '{other}'"))),
    }
}

fn checked_state(
    value: Option<&str>,
    allowed: &[&str],
    what: &str,
) -> Result<Option<String>, Fail> {
    match value {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
        Some(v) => Err(Fail::Usage(format!(
            "{what} {v:?}: expected one of {}",
            allowed.join(", ")
        ))),
    }
}

fn connect(state: &mut State, name: &str, peer_id: u32) -> Result<(), Fail> {
    let mut peer = peer_of(state, name);
    let conn = connection_mut(state, name, peer_id)?;
    if conn_view(conn, &peer).cstate != "StandAlone" {
        return Err(failure(name, ERR_NET_CONFIGURED));
    }
    conn.connect = true;
    if peer.connection == "StandAlone" {
        // A new connect is a new attempt: the peer is reachable again.
        peer.connection = "Connected".to_string();
    }
    let res = resource_mut(state, name)?;
    if res.role == Role::Primary && conflicting_primary(res, &peer) {
        // Two primaries meeting: DRBD drops the connection (split brain).
        peer.connection = "StandAlone".to_string();
    }
    state.peers.insert(name.to_string(), peer);
    Ok(())
}

/// `connect` in a world: the intent only; whether the peer is there, and what the handshake
/// finds, is the world's to settle.
fn connect_in_world(
    state: &mut State,
    name: &str,
    peer_id: u32,
    discard: bool,
) -> Result<(), Fail> {
    let conn = connection_mut(state, name, peer_id)?;
    if conn.connect {
        return Err(failure(name, ERR_NET_CONFIGURED));
    }
    conn.connect = true;
    conn.discard_my_data = discard;
    Ok(())
}

fn primary(state: &mut State, peers: &dyn Peers, name: &str, force: bool) -> Result<(), Fail> {
    let res = resource_mut(state, name)?;
    if res.role == Role::Primary {
        return Ok(());
    }
    let forced_disks = promotion_check(res, peers, force).map_err(|rv| refused(name, rv))?;
    for backing in res.devices.values().filter_map(|d| d.backing.as_ref()) {
        dev::set_read_only(&backing.loop_dev, false)?;
    }
    if forced_disks {
        for device in res.devices.values_mut() {
            device.disk = "UpToDate".to_string();
        }
    }
    res.become_primary();
    Ok(())
}

/// `secondary`, or with `force` (DRBD 9's `secondary --force`) even while the device is in
/// use: the kernel then fails the holders' I/O; here the backing turns read-only under them.
fn secondary(state: &mut State, name: &str, force: bool) -> Result<(), Fail> {
    let res = resource_mut(state, name)?;
    if res.role != Role::Primary {
        return Ok(());
    }
    let backings: Vec<&Backing> = res
        .devices
        .values()
        .filter_map(|d| d.backing.as_ref())
        .collect();
    if !force && backings.iter().any(|b| dev::is_open(b)) {
        return Err(refused(name, SS_DEVICE_IN_USE));
    }
    for backing in backings {
        dev::set_read_only(&backing.loop_dev, true)?;
    }
    res.role = Role::Secondary;
    Ok(())
}

fn attach(
    state: &mut State,
    name: &str,
    volume: u32,
    obj: &str,
    mut backing: Backing,
) -> Result<(), Fail> {
    let res = resource_mut(state, name)?;
    let role = res.role;
    let device = res
        .devices
        .get_mut(&volume)
        .ok_or_else(|| failure(obj, ERR_MINOR_INVALID))?;
    if device.backing.is_some() {
        return Err(failure(obj, ERR_DISK_CONFIGURED));
    }
    match std::fs::metadata(&backing.lower) {
        Err(_) => return Err(failure(obj, ERR_OPEN_DISK)),
        Ok(m) if !std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()) => {
            return Err(failure(obj, ERR_DISK_NOT_BDEV));
        }
        Ok(_) => {}
    }
    let size = match dev::data_area(device.minor, &backing.lower, &backing.meta_index) {
        Ok(size) => size,
        Err(dev::MetaError::NoMetadata { .. }) => return Err(failure(obj, ERR_MD_INVALID)),
        Err(dev::MetaError::Sim(e)) => return Err(e.into()),
    };
    // Whole 512-byte sectors, as a block device has.
    let size = size / 512 * 512;
    if size == 0 {
        return Err(failure(obj, ERR_DISK_TOO_SMALL));
    }
    let loop_dev = dev::create_loop(&backing.lower, size)?;
    let exposed = (|| -> Result<DevNum, SimError> {
        let numbers = dev::dev_numbers(&loop_dev)?;
        // Also undoes a read-only flag a previous user of this loop number left behind.
        dev::set_read_only(&loop_dev, role != Role::Primary)?;
        dev::make_node(&backing.node, numbers)?;
        Ok(numbers)
    })();
    let numbers = match exposed {
        Ok(numbers) => numbers,
        Err(e) => {
            // Never leave a loop device behind.
            let _ = dev::remove_node(&backing.node);
            let _ = dev::remove_loop(&loop_dev, &backing.lower);
            return Err(e.into());
        }
    };
    backing.loop_dev = loop_dev;
    backing.major = numbers.major;
    backing.minor = numbers.minor;
    backing.size_bytes = size;
    device.backing = Some(backing);
    // The metadata's flags are not read: attached data counts as UpToDate (see sim-local-disk).
    device.disk = "UpToDate".to_string();
    device.client = false;
    Ok(())
}

fn detach_step(tx: &mut Tx, name: &str, volume: u32, obj: &str, client: bool) -> Result<(), Fail> {
    let numbers = tx
        .state
        .resources
        .get(name)
        .and_then(|r| r.devices.get(&volume))
        .and_then(|d| d.backing.as_ref())
        .map(|b| (b.major, b.minor));
    let result = tx.step(name, |state, _| {
        let Some(device) = device_mut(state, name, volume) else {
            return Err(failure(obj, ERR_MINOR_INVALID));
        };
        let Some(backing) = device.backing.as_ref() else {
            return Ok(());
        };
        // The simulator cannot serve I/O from a peer, so an open device keeps its disk.
        if dev::is_open(backing) {
            return Err(refused(obj, SS_DEVICE_IN_USE));
        }
        dev::remove_node(&backing.node)?;
        dev::remove_loop(&backing.loop_dev, &backing.lower)?;
        device.backing = None;
        device.disk = "Diskless".to_string();
        device.client = client;
        Ok(())
    });
    if let Some(numbers) = numbers {
        tx.open.remove(&numbers);
    }
    result
}

/// drbdsetup's `down`: secondary, disconnect, detach, then delete everything.
fn down(tx: &mut Tx, name: &str) -> Result<(), Fail> {
    tx.step(name, |state, _| secondary(state, name, false))?;
    let peers: Vec<u32> = tx
        .state
        .resources
        .get(name)
        .map(|r| r.connections.keys().copied().collect())
        .unwrap_or_default();
    for peer in peers {
        tx.step(name, |state, _| {
            connection_mut(state, name, peer)?.connect = false;
            Ok(())
        })?;
    }
    let volumes: Vec<(u32, u32)> = tx
        .state
        .resources
        .get(name)
        .map(|r| r.devices.values().map(|d| (d.volume, d.minor)).collect())
        .unwrap_or_default();
    for (volume, minor) in volumes {
        detach_step(tx, name, volume, &minor.to_string(), false)?;
    }
    tx.step(name, |state, _| {
        state.resources.remove(name);
        Ok(())
    })
}

fn read_only(kernel: &Kernel, args: &Args, out: &mut dyn Write) -> Result<u8, Fail> {
    // No lock: the state file is replaced atomically, and drbdmeta calls `dstate` while an
    // `attach` holds the lock.
    let loaded = kernel.view()?;
    let state = &loaded.state;
    let peers = loaded.peers();
    let mut open = |b: &Backing| dev::is_open(b);
    let no_such_resource = |name: &str| Fail::Message {
        text: format!("{name}: No such resource"),
        code: 10,
    };
    match args.command.as_str() {
        "role" => {
            let name = args.word(0)?;
            let res = state.resources.get(name).ok_or_else(|| Fail::Message {
                text: format!("{name}: {}", error_text(ERR_RES_NOT_KNOWN)),
                code: 10,
            })?;
            let _ = writeln!(out, "{}", res.role.as_str());
        }
        "cstate" | "peer-role" => {
            let name = args.word(0)?;
            let peer_id = args.number(1, "peer_node_id")?;
            let (res, conn) = state
                .resources
                .get(name)
                .and_then(|r| r.connections.get(&peer_id).map(|c| (r, c)))
                .ok_or_else(|| Fail::Message {
                    text: format!("{name}: No such connection"),
                    code: 10,
                })?;
            let v = peers.view(res, conn);
            if args.command == "cstate" {
                let _ = writeln!(out, "{}", v.cstate);
            } else {
                let _ = writeln!(out, "{}", v.peer_role.as_str());
            }
        }
        "dstate" | "check-resize" | "get-gi" | "show-gi" => {
            let (minor, obj) = args.minor(0)?;
            let (name, volume) = find_minor(state, minor).ok_or_else(|| Fail::Message {
                text: format!("{obj}: No such device"),
                code: 10,
            })?;
            if args.command == "dstate" {
                if let Some(res) = state.resources.get(&name) {
                    let _ = write!(out, "{}", format::dstate_text(res, &*peers, volume));
                }
            } else if args.command != "check-resize" {
                return Err(Fail::Usage(format!(
                    "drbdsetup (converge simulator): {} is not simulated",
                    args.command
                )));
            }
        }
        "status" => {
            let filter = args
                .words
                .first()
                .map(String::as_str)
                .filter(|n| *n != "all");
            let text = if args.flag("json") {
                format::status_json(state, &*peers, filter, &mut open)
            } else {
                let opts = StatusOpts {
                    verbose: args.flag("verbose") || args.flag("v"),
                    // SAFETY: isatty(2) only inspects the descriptor.
                    tty: rustix::termios::isatty(std::io::stdout()),
                };
                format::status_text(state, &*peers, filter, opts, &mut open)
            };
            let _ = write!(out, "{text}");
            if let Some(name) = filter
                && !state.resources.contains_key(name)
            {
                return Err(no_such_resource(name));
            }
        }
        "show" => {
            if args.flag("json") {
                return Err(Fail::Usage(
                    "drbdsetup (converge simulator): show --json is not simulated".into(),
                ));
            }
            let filter = args
                .words
                .first()
                .map(String::as_str)
                .filter(|n| *n != "all");
            let _ = write!(out, "{}", format::show_text(state, &*peers, filter));
        }
        _ => return Err(usage("")),
    }
    Ok(0)
}

/// The world hooks' command lines.
const SIM_WORLD_USAGE: &str = "sim-world add-node NODE | cut NODE NODE | heal NODE NODE | power-off NODE | power-on NODE | resolve RES VICTIM | resync hold|release | show";

/// `sim-world ACTION …`: the world's test hooks. They act on the world as a whole, from
/// outside every node (the node this command would run as plays no part).
fn sim_world(env: &Env, kernel: &Kernel, args: &Args, out: &mut dyn Write) -> Result<u8, Fail> {
    let Kernel::World { world: store, .. } = kernel else {
        return Err(Fail::Usage(format!(
            "sim-world needs a world: set CONVERGE_SIM_WORLD=DIR (usage: {SIM_WORLD_USAGE})"
        )));
    };
    let action = args.words.first().map(String::as_str).ok_or_else(|| {
        Fail::Usage(format!(
            "sim-world: no action given; usage: {SIM_WORLD_USAGE}"
        ))
    })?;
    if action == "show" {
        let world = store.load()?;
        let _ = writeln!(out, "{}", world_facts(&world));
        return Ok(0);
    }
    let lock = store.lock(LockMode::Exclusive)?;
    let mut world = store.load()?;
    let mut events = BTreeMap::new();
    // Outside every node, no device is probed: each reports what its node last saw.
    let mut no_probe = |b: &Backing| b.seen_open;
    let result = world_change(
        &mut world,
        None,
        None,
        &mut no_probe,
        &mut events,
        |world| world_hook(action, &args.words[1..], world),
    );
    // A node that joins or is powered on has its DRBD module loaded, resources or not:
    // its /proc/drbd exists from then on (a missing one tells converge DRBD is not loaded).
    let booted = match action {
        "add-node" | "power-on" => args.words.get(1).map(String::as_str),
        _ => None,
    };
    // A power-off that failed to detach a loop device still powered the node off.
    let mut saved = commit_world(env, store, &world, &events, booted);
    if action == "power-off"
        && let Some(node) = args.words.get(1)
        && world.off.contains(node)
    {
        // No kernel, no /proc/drbd: what it said before the power cut is not true any more.
        let proc = store.node_store(node).map(|s| s.proc_path());
        saved = saved.and(match proc {
            Ok(path) => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(Fail::Sim(SimError::File { path, source: e }))
                }
                _ => Ok(()),
            },
            Err(e) => Err(e.into()),
        });
    }
    drop(lock);
    saved?;
    result.map(|()| 0)
}

/// The facts of a world, as `sim-world show` prints them (JSON).
fn world_facts(world: &WorldState) -> String {
    let nodes: serde_json::Map<String, serde_json::Value> = world
        .node_names()
        .into_iter()
        .map(|n| {
            let power = if world.off.contains(&n) { "off" } else { "on" };
            (n, serde_json::Value::from(power))
        })
        .collect();
    let data: serde_json::Map<String, serde_json::Value> = world
        .data
        .iter()
        .map(|(name, d)| {
            let disks: serde_json::Map<String, serde_json::Value> = d
                .disks
                .iter()
                .map(|(node, m)| {
                    (
                        node.clone(),
                        serde_json::json!({
                            "generation": m.generation,
                            "outdated": m.outdated,
                            "inconsistent": m.inconsistent,
                            "sync_from": m.sync_from,
                        }),
                    )
                })
                .collect();
            (name.clone(), serde_json::Value::Object(disks))
        })
        .collect();
    serde_json::json!({
        "nodes": nodes,
        "cut": world.cut.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
        "hold_resync": world.hold_resync,
        "data": data,
    })
    .to_string()
}

/// A node the world knows, or a usage error that names the known ones.
fn known_node<'a>(
    world: &WorldState,
    words: &'a [String],
    index: usize,
    action: &str,
) -> Result<&'a str, Fail> {
    let node = words.get(index).map(String::as_str).ok_or_else(|| {
        Fail::Usage(format!(
            "sim-world {action}: missing node name; usage: {SIM_WORLD_USAGE}"
        ))
    })?;
    if !world.knows(node) {
        let known = world.node_names();
        return Err(Fail::Usage(format!(
            "sim-world {action}: no node {node:?} in this world (known: {}); a node joins when it first runs drbdsetup, or with sim-world add-node",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    Ok(node)
}

fn world_hook(action: &str, words: &[String], world: &mut WorldState) -> Result<(), Fail> {
    let extra = |count: usize| {
        if words.len() > count {
            Err(Fail::Usage(format!(
                "sim-world {action}: unexpected {:?}; usage: {SIM_WORLD_USAGE}",
                words[count..].join(" ")
            )))
        } else {
            Ok(())
        }
    };
    match action {
        "add-node" => {
            extra(1)?;
            let node = words.first().ok_or_else(|| {
                Fail::Usage(format!(
                    "sim-world add-node: missing node name; usage: {SIM_WORLD_USAGE}"
                ))
            })?;
            if !valid_node_name(node) {
                return Err(Fail::Usage(format!(
                    "sim-world add-node: {node:?} cannot name a node: use letters, digits, '-', '_', '.' (it is a hostname and a directory name)"
                )));
            }
            if !world.off.contains(node) {
                world.nodes.entry(node.clone()).or_default();
            }
            Ok(())
        }
        "cut" | "heal" => {
            extra(2)?;
            let a = known_node(world, words, 0, action)?;
            let b = known_node(world, words, 1, action)?;
            if a == b {
                return Err(Fail::Usage(format!(
                    "sim-world {action}: a link joins two different nodes, not {a} and itself"
                )));
            }
            if action == "cut" {
                world.cut.insert(world::link(a, b));
            } else {
                world.cut.remove(&world::link(a, b));
            }
            Ok(())
        }
        "power-off" => {
            extra(1)?;
            let node = known_node(world, words, 0, action)?.to_string();
            world.off.insert(node.clone());
            let Some(state) = world.nodes.remove(&node) else {
                return Ok(());
            };
            // The node's kernel is gone: so are its loop devices, once nothing holds them any
            // more (losetup -d on a busy loop device detaches it at its last close). Its
            // device nodes lived in its private /dev, gone with its mount namespace.
            let mut first_error = None;
            for backing in state
                .resources
                .values()
                .flat_map(|r| r.devices.values())
                .filter_map(|d| d.backing.as_ref())
            {
                if let Err(e) = dev::remove_loop(&backing.loop_dev, &backing.lower) {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), |e| Err(e.into()))
        }
        "power-on" => {
            extra(1)?;
            let node = known_node(world, words, 0, action)?.to_string();
            if !world.off.remove(&node) {
                return Err(Fail::Usage(format!(
                    "sim-world power-on: node {node} is not powered off"
                )));
            }
            // DRBD comes back down: nothing configured until `drbdadm up`.
            world.nodes.insert(node, State::default());
            Ok(())
        }
        "resolve" => {
            extra(2)?;
            let name = words.first().ok_or_else(|| {
                Fail::Usage(format!(
                    "sim-world resolve: missing resource; usage: {SIM_WORLD_USAGE}"
                ))
            })?;
            let victim = known_node(world, words, 1, action)?.to_string();
            resolve_split_brain(world, name, &victim)
        }
        "resync" => {
            extra(1)?;
            match words.first().map(String::as_str) {
                Some("hold") => world.hold_resync = true,
                Some("release") => world.hold_resync = false,
                other => {
                    return Err(Fail::Usage(format!(
                        "sim-world resync: expected hold or release, not {other:?}"
                    )));
                }
            }
            Ok(())
        }
        other => Err(Fail::Usage(format!(
            "sim-world: unknown action {other:?}; usage: {SIM_WORLD_USAGE}"
        ))),
    }
}

/// What an administrator does after a split brain: `drbdadm connect --discard-my-data RES` on
/// the victim and `drbdadm connect RES` on its peers. The victim then resyncs from them.
fn resolve_split_brain(world: &mut WorldState, name: &str, victim: &str) -> Result<(), Fail> {
    let Some(res) = world.nodes.get(victim).and_then(|s| s.resources.get(name)) else {
        return Err(Fail::Usage(format!(
            "sim-world resolve: resource {name} is not up on {victim} (drbdadm up {name} there first)"
        )));
    };
    if res.role == Role::Primary {
        return Err(Fail::Usage(format!(
            "sim-world resolve: {victim} is Primary for {name}; DRBD discards only a Secondary's data: demote it first"
        )));
    }
    let id = res.node_id;
    let peers: Vec<(String, u32)> = res
        .connections
        .values()
        .filter_map(|c| {
            world
                .peer_node(victim, name, c.peer_node_id, &c.name)
                .map(|(peer, _)| (peer.to_string(), c.peer_node_id))
        })
        .collect();
    if let Some(res) = world
        .nodes
        .get_mut(victim)
        .and_then(|s| s.resources.get_mut(name))
    {
        for conn in res.connections.values_mut() {
            conn.connect = true;
            conn.discard_my_data = true;
        }
    }
    for (peer, _) in peers {
        if let Some(conn) = world
            .nodes
            .get_mut(&peer)
            .and_then(|s| s.resources.get_mut(name))
            .and_then(|r| r.connections.get_mut(&id))
        {
            conn.connect = true;
        }
    }
    Ok(())
}

/// `events2`: the current state as `exists` lines, `exists -`, then (without `--now`) every
/// change as it is logged, until killed or until stdout goes away.
fn events2(kernel: &Kernel, args: &Args, out: &mut dyn Write) -> Result<u8, Fail> {
    let store = kernel.store();
    let opts = EventOpts {
        timestamps: args.flag("timestamps") || args.flag("T"),
        statistics: args.flag("statistics") || args.flag("s"),
        full: args.flag("full") || args.flag("f"),
    };
    let filter = args
        .words
        .first()
        .map(String::as_str)
        .filter(|n| *n != "all");
    store.touch_events()?;
    let (loaded, offset) = {
        let _lock = kernel.lock(LockMode::Shared)?;
        (kernel.view()?, store.events_len()?)
    };
    let (state, peers) = (&loaded.state, loaded.peers());
    let now = view::now_micros();
    let mut open = |b: &Backing| dev::is_open(b);
    let mut text = String::new();
    for name in state.resources.keys() {
        if filter.is_some_and(|f| f != name) {
            continue;
        }
        for obj in view::snapshot(state, &*peers, name, &mut open) {
            let event = Event {
                t: now,
                action: Action::Exists,
                obj,
                changed: Vec::new(),
            };
            text.push_str(&view::format_event(&event, opts));
            text.push('\n');
        }
    }
    if opts.timestamps {
        text.push_str(&view::format_timestamp(now));
        text.push(' ');
    }
    text.push_str("exists -\n");
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return Ok(0);
    }
    if args.flag("now") || args.flag("n") {
        return Ok(0);
    }
    follow(store, offset, filter, opts, out)
}

/// Streams events appended to the log after `offset`, woken by inotify rather than polling.
fn follow(
    store: &Store,
    mut offset: u64,
    filter: Option<&str>,
    opts: EventOpts,
    out: &mut dyn Write,
) -> Result<u8, Fail> {
    let path = store.events_path();
    let file_error = |source: io::Error| SimError::File {
        path: path.clone(),
        source,
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        let _ = tx.send(());
    })
    .map_err(|e| {
        Fail::Sim(SimError::DeviceState {
            path: path.clone(),
            detail: format!("cannot watch: {e}"),
        })
    })?;
    notify::Watcher::watch(&mut watcher, &path, notify::RecursiveMode::NonRecursive).map_err(
        |e| {
            Fail::Sim(SimError::DeviceState {
                path: path.clone(),
                detail: format!("cannot watch: {e}"),
            })
        },
    )?;
    let mut file = std::fs::File::open(&path).map_err(file_error)?;
    let mut pending = Vec::new();
    loop {
        // Read whatever is new, then wait: the watch was set before this first read, so an
        // append between the snapshot and the watch is not missed.
        file.seek(SeekFrom::Start(offset)).map_err(file_error)?;
        let mut chunk = Vec::new();
        let read = file.read_to_end(&mut chunk).map_err(file_error)?;
        offset += u64::try_from(read).unwrap_or(0);
        pending.extend_from_slice(&chunk);
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let lines: Vec<u8> = pending.drain(..complete).collect();
        let mut text = String::new();
        for line in lines.lines().map_while(Result::ok) {
            let Ok(event) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            if filter.is_some_and(|f| f != event.obj.resource_name()) {
                continue;
            }
            text.push_str(&view::format_event(&event, opts));
            text.push('\n');
        }
        if !text.is_empty()
            && out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
        {
            return Ok(0);
        }
        if rx.recv().is_err() {
            return Ok(0);
        }
        // Several notifications for one append are one wake-up.
        while rx.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use converge_core::observe::drbd::{ConnectionState, Quorum, Role as ModelRole};
    use converge_core::observe::events2::{Events2State, parse_lines};
    use converge_core::observe::{drbdsetup_status, proc_drbd};

    struct Sim {
        _dir: tempfile::TempDir,
        env: Env,
    }

    impl Sim {
        fn new() -> Sim {
            let dir = tempfile::tempdir().expect("tempdir");
            let env = Env {
                sim_dir: dir.path().join("state"),
                dev_dir: dir.path().join("dev"),
                dialect: Dialect::V9,
                world: None,
            };
            Sim { _dir: dir, env }
        }

        fn run(&self, args: &str) -> (u8, String, String) {
            let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
            let mut out = Vec::new();
            let mut err = Vec::new();
            let code = run_with(&self.env, &args, &mut out, &mut err);
            (
                code,
                String::from_utf8_lossy(&out).into_owned(),
                String::from_utf8_lossy(&err).into_owned(),
            )
        }

        fn ok(&self, args: &str) -> String {
            let (code, out, err) = self.run(args);
            assert_eq!(code, 0, "{args}: {err}");
            out
        }

        /// `drbdadm up` without the disk: what needs no root.
        fn up_diskless(&self) {
            self.ok("new-resource data 0 --on-no-quorum=io-error");
            self.ok("new-minor data 0 0");
            self.ok("new-peer data 1 --_name=peer1 --protocol=C");
            self.ok("new-path data 1 ipv4:127.0.0.1:7789 ipv4:127.0.0.2:7789");
            self.ok("connect data 1");
        }
    }

    #[test]
    fn without_quorum_primary_is_refused_and_status_says_so() {
        let sim = Sim::new();
        sim.ok("new-resource data 0 --quorum=majority --on-no-quorum=io-error");
        // A diskless client (what drbdadm makes of `disk none`): it has no vote, only its
        // diskful peer has.
        sim.ok("new-minor data 0 0 --diskless");
        sim.ok("new-peer data 1 --_name=peer1 --protocol=C");
        sim.ok("new-path data 1 ipv4:127.0.0.1:7789 ipv4:127.0.0.2:7789");
        sim.ok("sim-peer data --connection Connecting");
        sim.ok("connect data 1");
        // The peer is not there: no quorum, and no data either, which DRBD checks first.
        assert!(sim.ok("status data --json").contains("\"quorum\": false"));
        assert_eq!(
            sim.ok("status data"),
            "data role:Secondary\n  disk:Diskless client:yes quorum:no open:no\n  peer1 connection:Connecting\n\n",
            "drbdsetup shows a missing quorum unasked"
        );
        assert_eq!(sim.run("primary data").0, 17);
        // The peer connects: its vote is the only one, and a majority of one.
        sim.ok("sim-peer data --connection Connected");
        assert!(sim.ok("status data --json").contains("\"quorum\": true"));
        // Two votes asked for, one there: data through the peer, but no quorum.
        sim.ok("resource-options data --quorum=2");
        assert_eq!(
            sim.run("primary data"),
            (
                11,
                String::new(),
                "data: State change failed: (-25) No quorum\n".into()
            )
        );
        assert_eq!(
            sim.run("primary data --force").0,
            11,
            "--force does not help"
        );
        assert!(sim.ok("status data --json").contains("\"quorum\": false"));
        sim.ok("resource-options data --quorum=majority");
        sim.ok("primary data");
        // Without the option, quorum is never the reason (this diskless node then lacks
        // UpToDate data: 17).
        sim.ok("secondary data");
        sim.ok("resource-options data --quorum=off");
        sim.ok("sim-peer data --connection Connecting");
        let (code, _, err) = sim.run("primary data");
        assert_eq!(code, 17, "{err}");
        assert!(sim.ok("status data --json").contains("\"quorum\": true"));
    }

    /// `on-no-quorum suspend-io` (DRBD's default) freezes I/O on a device without quorum:
    /// drbdsetup says `suspended:quorum` in status (unasked), `--json` and events2, and
    /// converge reads it; `io-error` suspends nothing (requests fail instead).
    #[test]
    fn without_quorum_suspend_io_says_suspended_quorum_everywhere() {
        let sim = Sim::new();
        sim.ok("new-resource data 0 --quorum=majority");
        sim.ok("new-minor data 0 0 --diskless");
        sim.ok("new-peer data 1 --_name=peer1 --protocol=C");
        sim.ok("new-path data 1 ipv4:127.0.0.1:7789 ipv4:127.0.0.2:7789");
        sim.ok("sim-peer data --connection Connecting");
        sim.ok("connect data 1");
        assert_eq!(
            sim.ok("status data"),
            "data role:Secondary suspended:quorum\n  disk:Diskless client:yes quorum:no open:no\n  peer1 connection:Connecting\n\n",
        );
        assert!(
            sim.ok("status data --verbose").starts_with(
                "data node-id:0 role:Secondary suspended:quorum force-io-failures:no\n"
            )
        );
        let json = sim.ok("status data --json");
        assert!(
            json.contains("\"suspended\": true,") && json.contains("\"suspended-quorum\": true,"),
            "{json}"
        );
        let status = drbdsetup_status::parse_json(&json).expect("json");
        assert!(status["data"].suspended);
        let dump = sim.ok("events2 --now data");
        assert!(dump.contains(" suspended:quorum "), "{dump}");
        let mut model = Events2State::new();
        for event in parse_lines(&dump).expect("parses") {
            model.apply(&event);
        }
        assert!(model.resources()["data"].suspended);

        // io-error: requests fail instead; nothing is suspended, quorum is still missing.
        sim.ok("resource-options data --on-no-quorum=io-error");
        assert_eq!(
            sim.ok("status data"),
            "data role:Secondary\n  disk:Diskless client:yes quorum:no open:no\n  peer1 connection:Connecting\n\n",
        );
        let log = std::fs::read_to_string(sim.env.sim_dir.join("events.log")).expect("log");
        let last: Event = serde_json::from_str(log.lines().last().expect("a line")).expect("json");
        assert_eq!(
            view::format_event(&last, EventOpts::default()),
            "change resource name:data suspended:no"
        );
        // suspend-io again, and the peer comes: quorum, I/O thaws.
        sim.ok("resource-options data --on-no-quorum=suspend-io");
        assert!(
            sim.ok("status data")
                .starts_with("data role:Secondary suspended:quorum\n")
        );
        sim.ok("sim-peer data --connection Connected");
        assert!(
            sim.ok("status data --json")
                .contains("\"suspended-quorum\": false,")
        );
        assert!(sim.ok("status data").starts_with("data role:Secondary\n"));
    }

    /// DRBD gives a node that is diskless without meaning to be (no `--diskless`, nothing
    /// attached) no vote: it counts itself as unknown, and a single diskful peer is then no
    /// majority of the two.
    #[test]
    fn a_diskless_node_that_is_no_client_has_no_vote() {
        let sim = Sim::new();
        sim.ok("new-resource data 0 --quorum=majority");
        sim.ok("new-minor data 0 0");
        sim.ok("new-peer data 1 --_name=peer1");
        sim.ok("new-path data 1 ipv4:127.0.0.1:7789 ipv4:127.0.0.2:7789");
        sim.ok("connect data 1");
        let status = drbdsetup_status::parse_json(&sim.ok("status --json")).expect("json");
        let device = &status["data"].devices[0];
        assert!(!device.client && device.quorum == Quorum::No, "{device:?}");
        assert_eq!(sim.run("primary data").0, 11);
    }

    #[test]
    fn up_role_status_and_down_without_a_disk() {
        let sim = Sim::new();
        assert_eq!(
            sim.run("role data"),
            (10, String::new(), "data: Unknown resource\n".into())
        );
        sim.up_diskless();
        assert_eq!(sim.ok("role data"), "Secondary\n");
        assert_eq!(sim.ok("cstate data 1"), "Connected\n");
        assert_eq!(sim.ok("0 dstate"), "Diskless/UpToDate\n");
        assert_eq!(sim.run("dstate 9").2, "9: No such device\n");
        let status = drbdsetup_status::parse_json(&sim.ok("status --json")).expect("json");
        assert_eq!(
            status["data"].connections[0].state,
            ConnectionState::Connected
        );
        assert_eq!(
            sim.ok("status data"),
            "data role:Secondary\n  disk:Diskless client:no open:no\n  peer1 role:Secondary\n    peer-disk:UpToDate\n\n"
        );
        assert_eq!(sim.run("status nope").0, 10);
        sim.ok("down data");
        assert_eq!(sim.ok("status"), "# No currently configured DRBD found.\n");
        // down of something unknown is fine, as with drbdsetup.
        sim.ok("down data");
    }

    #[test]
    fn primary_rules_and_exit_codes() {
        let sim = Sim::new();
        assert_eq!(
            sim.run("primary data"),
            (
                10,
                String::new(),
                "data: Failure: (158) Unknown resource\n".into()
            )
        );
        sim.up_diskless();
        // Diskless, but the connected peer has UpToDate data: allowed.
        sim.ok("sim-peer data --role Primary");
        assert_eq!(
            sim.run("primary data"),
            (
                11,
                String::new(),
                "data: State change failed: (-1) Multiple primaries not allowed by config\n".into()
            )
        );
        // --force does not override two primaries either.
        assert_eq!(sim.run("primary data --force").0, 11);
        sim.ok("sim-peer data --role Secondary --connection Connecting");
        assert_eq!(
            sim.run("primary data"),
            (
                17,
                String::new(),
                "data: State change failed: (-2) Need access to UpToDate data\n".into()
            )
        );
        // Without a disk, --force has nothing to make UpToDate.
        assert_eq!(sim.run("primary data --force").0, 17);
        sim.ok("sim-peer data --connection Connected");
        sim.ok("primary data");
        assert_eq!(sim.ok("role data"), "Primary\n");
        // The peer cannot become Primary too, unless two primaries are allowed.
        assert_eq!(sim.run("sim-peer data --role Primary").0, 11);
        sim.ok("net-options data 1 --allow-two-primaries=yes");
        sim.ok("sim-peer data --role Primary");
        assert_eq!(sim.run("net-options data 1 --allow-two-primaries=no").0, 10);
        sim.ok("sim-peer data --role Secondary");
        sim.ok("secondary data");
        sim.ok("secondary data");
        assert_eq!(sim.ok("role data"), "Secondary\n");
    }

    #[test]
    fn usage_errors_exit_20_and_unknown_options_are_ignored() {
        let sim = Sim::new();
        assert_eq!(sim.run("").0, 20);
        assert_eq!(sim.run("frobnicate data").0, 20);
        assert_eq!(sim.run("new-resource").0, 20);
        let (code, _, err) = sim.run("new-resource data");
        assert_eq!(
            (code, err.contains("Missing argument 'node_id'")),
            (20, true)
        );
        assert_eq!(sim.run("new-minor data x 0").0, 20);
        assert_eq!(sim.run("sim-peer data --role Boss").0, 20);
        assert_eq!(sim.run("sim-peer data --disk Fine").0, 20);
        assert_eq!(sim.run("attach drbdX /dev/null /dev/null internal").0, 20);
        sim.ok("new-resource data 0 --whatever=1 --flag");
        assert_eq!(sim.run("new-minor data 0 0 --on-io-error=detach").0, 0);
        assert_eq!(sim.run("new-minor data 0 0").0, 10);
        assert_eq!(sim.run("new-minor data 1 0").0, 10);
        assert!(sim.ok("--version").contains("DRBD_KERNEL_VERSION=9.2.8"));
        // attach checks the lower device before touching anything.
        assert_eq!(
            sim.run("attach 0 /nonexistent /nonexistent internal").2,
            "0: Failure: (104) Can not open backing device.\n"
        );
        assert_eq!(sim.run("attach 0 /dev/null /dev/null internal").0, 10);
        assert_eq!(sim.run("attach 5 /dev/null /dev/null internal").0, 10);
    }

    #[test]
    fn events_and_proc_file_follow_every_change() {
        let sim = Sim::new();
        assert_eq!(sim.ok("events2 --now"), "exists -\n");
        sim.up_diskless();
        let dump = sim.ok("events2 --now all");
        let mut model = Events2State::new();
        for event in parse_lines(&dump).expect("parses") {
            model.apply(&event);
        }
        assert!(model.initial_dump_done());
        assert_eq!(
            model.resources()["data"].connections[0].peer_role,
            ModelRole::Secondary
        );
        assert_eq!(sim.ok("events2 --now other"), "exists -\n");

        sim.ok("sim-peer data --role Primary");
        let log = std::fs::read_to_string(sim.env.sim_dir.join("events.log")).expect("log");
        let last: Event = serde_json::from_str(log.lines().last().expect("a line")).expect("json");
        assert_eq!(
            view::format_event(&last, EventOpts::default()),
            "change connection name:data peer-node-id:1 conn-name:peer1 role:Primary"
        );
        // The whole log replays into the same state the dump shows.
        let mut replay = Events2State::new();
        for line in log.lines() {
            let event: Event = serde_json::from_str(line).expect("json");
            let text = view::format_event(&event, EventOpts::default());
            for e in parse_lines(&text).expect("parses") {
                replay.apply(&e);
            }
        }
        assert!(replay.resources()["data"].peer_primary());

        let proc_text = std::fs::read_to_string(sim.env.sim_dir.join("proc_drbd")).expect("proc");
        assert!(proc_drbd::parse(&proc_text).expect("parses").is_drbd9());
        // The dialect comes from the environment of the command that changes something.
        let mut sim = sim;
        sim.env.dialect = Dialect::V84;
        sim.ok("disconnect data 1");
        let proc_text = std::fs::read_to_string(sim.env.sim_dir.join("proc_drbd")).expect("proc");
        let parsed = proc_drbd::parse(&proc_text).expect("parses");
        assert_eq!(parsed.minor(0).expect("minor 0").cs, "StandAlone");
    }

    #[test]
    fn concurrent_commands_lose_nothing() {
        let sim = Sim::new();
        std::thread::scope(|scope| {
            for i in 0..8 {
                let sim = &sim;
                scope.spawn(move || {
                    sim.ok(&format!("new-resource r{i} 0"));
                    sim.ok(&format!("new-minor r{i} {i} 0"));
                    sim.ok(&format!("sim-peer r{i} --role Primary"));
                });
            }
        });
        let status = drbdsetup_status::parse_json(&sim.ok("status --json")).expect("json");
        assert_eq!(status.len(), 8);
        let log = std::fs::read_to_string(sim.env.sim_dir.join("events.log")).expect("log");
        // Every batch of events arrived whole: 8 resources, 8 devices.
        assert_eq!(log.lines().filter(|l| l.contains("\"create\"")).count(), 16);
    }

    /// Collects what a stream writes, and fails the write that completes `stop`, as a reader
    /// that went away would.
    struct Until {
        seen: std::sync::Arc<std::sync::Mutex<String>>,
        stop: &'static str,
    }

    impl Write for Until {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.push_str(&String::from_utf8_lossy(buf));
            if seen.contains(self.stop) {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events2_follows_other_processes_changes() {
        let sim = Sim::new();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let env = sim.env.clone();
        let mut until = Until {
            seen: seen.clone(),
            stop: "destroy resource name:data",
        };
        std::thread::spawn(move || {
            let args = ["events2".to_string(), "data".to_string()];
            let code = run_with(&env, &args, &mut until, &mut io::sink());
            let _ = done_tx.send(code);
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !seen.lock().map(|s| s.contains("exists -")).unwrap_or(false) {
            assert!(std::time::Instant::now() < deadline, "no initial dump");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        sim.up_diskless();
        sim.ok("new-resource other 1");
        sim.ok("sim-peer data --role Primary");
        sim.ok("down data");
        let code = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the stream ends when its reader goes away");
        assert_eq!(code, 0);
        let text = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert!(
            text.starts_with("exists -\ncreate resource name:data"),
            "{text}"
        );
        assert!(
            text.contains(
                "change connection name:data peer-node-id:1 conn-name:peer1 role:Primary\n"
            ),
            "{text}"
        );
        // Filtered to the resource asked for.
        assert!(!text.contains("name:other"), "{text}");
        parse_lines(&text).expect("every line parses");
    }

    #[test]
    fn proc_file_exists_from_the_first_command() {
        let sim = Sim::new();
        sim.ok("status");
        let text = std::fs::read_to_string(sim.env.sim_dir.join("proc_drbd")).expect("proc");
        assert!(proc_drbd::parse(&text).expect("parses").is_drbd9());
    }

    #[test]
    fn show_reflects_the_configuration() {
        let sim = Sim::new();
        sim.up_diskless();
        let show = sim.ok("show data");
        assert!(show.contains("resource \"data\" {"), "{show}");
        assert!(show.contains("on-no-quorum"), "{show}");
        assert!(show.contains("_remote_host ipv4 127.0.0.2:7789;"), "{show}");
        assert!(!show.contains("_is_standalone"), "{show}");
        sim.ok("disconnect data 1");
        assert!(sim.ok("show").contains("_is_standalone;"));
        assert_eq!(sim.ok("show nothing"), "");
    }

    /// A world in a temporary directory; each command runs as the node it names.
    struct WorldSim {
        dir: tempfile::TempDir,
    }

    impl WorldSim {
        fn new() -> WorldSim {
            WorldSim {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        fn run(&self, node: &str, args: &str) -> (u8, String, String) {
            let env = Env::in_world(
                &self.dir.path().join("world"),
                node,
                &self.dir.path().join("dev"),
                Dialect::V9,
            );
            let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
            let mut out = Vec::new();
            let mut err = Vec::new();
            let code = run_with(&env, &args, &mut out, &mut err);
            (
                code,
                String::from_utf8_lossy(&out).into_owned(),
                String::from_utf8_lossy(&err).into_owned(),
            )
        }

        fn ok(&self, node: &str, args: &str) -> String {
            let (code, out, err) = self.run(node, args);
            assert_eq!(code, 0, "{node}: {args}: {err}");
            out
        }

        /// `drbdadm up data` without a disk, as node `id` of a mesh of `names`.
        fn up(&self, names: &[&str], id: usize) {
            let me = names[id];
            self.ok(me, &format!("new-resource data {id}"));
            self.ok(me, "new-minor data 0 0");
            for (peer_id, peer) in names.iter().enumerate() {
                if peer_id == id {
                    continue;
                }
                self.ok(me, &format!("new-peer data {peer_id} --_name={peer}"));
                self.ok(
                    me,
                    &format!(
                        "new-path data {peer_id} ipv4:127.0.0.{}:7789 ipv4:127.0.0.{}:7789",
                        id + 1,
                        peer_id + 1
                    ),
                );
            }
            for peer_id in (0..names.len()).filter(|p| *p != id) {
                self.ok(me, &format!("connect data {peer_id}"));
            }
        }

        fn cstate(&self, node: &str, peer_id: u32) -> String {
            self.ok(node, &format!("cstate data {peer_id}"))
                .trim()
                .to_string()
        }

        /// Node `node`'s event log, as events2 prints it.
        fn log(&self, node: &str) -> Vec<String> {
            let path = self
                .dir
                .path()
                .join("world/nodes")
                .join(node)
                .join("events.log");
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(|l| {
                    let event: Event = serde_json::from_str(l).expect("json");
                    view::format_event(&event, EventOpts::default())
                })
                .collect()
        }
    }

    #[test]
    fn world_nodes_see_each_other_and_each_others_changes() {
        let w = WorldSim::new();
        let names = ["n1", "n2"];
        w.up(&names, 0);
        // Nobody there yet.
        assert_eq!(w.cstate("n1", 1), "Connecting");
        assert_eq!(w.ok("n1", "peer-role data 1"), "Unknown\n");
        w.up(&names, 1);
        assert_eq!(w.cstate("n1", 1), "Connected");
        assert_eq!(w.cstate("n2", 0), "Connected");
        // n2's `connect` made the change n1's events2 shows.
        assert!(
            w.log("n1").contains(
                &"change connection name:data peer-node-id:1 conn-name:n2 connection:Connected role:Secondary".to_string()
            ),
            "{:#?}",
            w.log("n1")
        );
        let status = drbdsetup_status::parse_json(&w.ok("n2", "status --json")).expect("json");
        let conn = &status["data"].connections[0];
        assert_eq!(conn.state, ConnectionState::Connected);
        assert_eq!(conn.peer_role, ModelRole::Secondary);
        assert_eq!(w.ok("n2", "0 dstate"), "Diskless/Diskless\n");
        // Diskless everywhere: no UpToDate data to promote on (exit 17).
        assert_eq!(w.run("n1", "primary data").0, 17);

        // Cut: both sides keep trying, and both logs say so.
        let before = (w.log("n1").len(), w.log("n2").len());
        w.ok("n1", "sim-world cut n1 n2");
        assert_eq!(
            (w.cstate("n1", 1), w.cstate("n2", 0)),
            ("Connecting".into(), "Connecting".into())
        );
        for (node, seen) in [("n1", before.0), ("n2", before.1)] {
            let log = w.log(node);
            assert!(
                log[seen..]
                    .iter()
                    .any(|l| l.contains("connection:Connecting role:Unknown")),
                "{node}: {log:#?}"
            );
        }
        assert_eq!(
            w.ok("n2", "status data"),
            "data role:Secondary\n  disk:Diskless client:no open:no\n  n1 connection:Connecting\n\n"
        );
        w.ok("n2", "sim-world heal n2 n1");
        assert_eq!(w.cstate("n1", 1), "Connected");

        // A disconnect on one side: it is StandAlone, the other keeps trying.
        w.ok("n2", "disconnect data 0");
        assert_eq!(
            (w.cstate("n1", 1), w.cstate("n2", 0)),
            ("Connecting".into(), "StandAlone".into())
        );
        assert_eq!(w.run("n2", "connect data 0").0, 0);
        assert_eq!(w.run("n2", "connect data 0").0, 10, "already connecting");

        // Power: n2's kernel is gone, and n2 runs nothing until powered on; then DRBD is down.
        w.ok("n1", "sim-world power-off n2");
        assert_eq!(w.cstate("n1", 1), "Connecting");
        let (code, _, err) = w.run("n2", "status");
        assert_eq!(code, 20);
        assert!(err.contains("node n2 is powered off"), "{err}");
        w.ok("n1", "sim-world power-on n2");
        assert_eq!(
            w.ok("n2", "status"),
            "# No currently configured DRBD found.\n"
        );
        w.up(&names, 1);
        assert_eq!(w.cstate("n1", 1), "Connected");
        let dump = w.ok("n1", "events2 --now data");
        assert!(
            dump.contains("conn-name:n2 connection:Connected role:Secondary"),
            "{dump}"
        );

        // down on n2: n1 sees it go.
        w.ok("n2", "down data");
        assert_eq!(w.cstate("n1", 1), "Connecting");
        assert!(
            w.log("n2")
                .last()
                .is_some_and(|l| l == "destroy resource name:data")
        );
        let facts: serde_json::Value =
            serde_json::from_str(&w.ok("n1", "sim-world show")).expect("json");
        assert_eq!(facts["nodes"]["n2"], "on");
        assert_eq!(facts["cut"], serde_json::json!([]));
    }

    /// A node's DRBD module is loaded from the moment it joins or is powered on, resources or
    /// not: converge reads a missing /proc/drbd as "DRBD not loaded" and blocks (a standby
    /// whose daemon started before any command ran there never stood by).
    #[test]
    fn a_node_has_a_proc_drbd_while_powered_on_resources_or_not() {
        let w = WorldSim::new();
        let proc = |node: &str| {
            w.dir
                .path()
                .join("world/nodes")
                .join(node)
                .join("proc_drbd")
        };
        let loaded = |node: &str| {
            let text = std::fs::read_to_string(proc(node))
                .unwrap_or_else(|e| panic!("{node}'s /proc/drbd: {e}"));
            assert!(
                proc_drbd::parse(&text).expect("parses").is_drbd9(),
                "{text}"
            );
        };
        w.up(&["n1", "n2"], 0);
        loaded("n1");
        assert!(!proc("n2").exists());
        w.ok("n1", "sim-world add-node n2");
        loaded("n2");
        // Powered off: no kernel, no /proc/drbd; powered on: loaded again, DRBD down.
        w.ok("n2", "sim-world power-off n1");
        assert!(!proc("n1").exists());
        w.ok("n2", "sim-world power-on n1");
        loaded("n1");
        assert_eq!(
            w.ok("n1", "status"),
            "# No currently configured DRBD found.\n"
        );
    }

    #[test]
    fn world_of_three_is_a_mesh() {
        let w = WorldSim::new();
        let names = ["n1", "n2", "n3"];
        for id in 0..3 {
            w.up(&names, id);
        }
        for (node, peers) in [("n1", [1, 2]), ("n2", [0, 2]), ("n3", [0, 1])] {
            for peer in peers {
                assert_eq!(w.cstate(node, peer), "Connected", "{node} → {peer}");
            }
        }
        w.ok("n1", "sim-world cut n1 n3");
        assert_eq!(w.cstate("n1", 2), "Connecting");
        assert_eq!(w.cstate("n1", 1), "Connected");
        assert_eq!(w.cstate("n2", 2), "Connected");
        let text = w.ok("n3", "status --json");
        let status = drbdsetup_status::parse_json(&text).expect("json");
        let states: Vec<ConnectionState> = status["data"]
            .connections
            .iter()
            .map(|c| c.state.clone())
            .collect();
        assert_eq!(
            states,
            [ConnectionState::Connecting, ConnectionState::Connected]
        );
    }

    #[test]
    fn regression_a_node_that_joins_or_powers_on_has_its_proc_drbd_at_once() {
        // A standby node's daemon that started before the node's first drbdsetup command
        // found no /proc/drbd ("DRBD is not loaded"), and waited for its 30 s resync.
        let w = WorldSim::new();
        let proc = |node: &str| {
            w.dir
                .path()
                .join("world/nodes")
                .join(node)
                .join("proc_drbd")
        };
        w.ok("n1", "sim-world add-node n2");
        let text = std::fs::read_to_string(proc("n2")).expect("n2's /proc/drbd after add-node");
        assert!(
            proc_drbd::parse(&text).expect("parses").is_drbd9(),
            "{text}"
        );
        // Powered off, the node has no kernel and no /proc/drbd.
        w.ok("n1", "sim-world power-off n2");
        assert!(!proc("n2").exists(), "n2's /proc/drbd while off");
        w.ok("n1", "sim-world power-on n2");
        assert!(proc("n2").exists(), "n2's /proc/drbd after power-on");
    }

    #[test]
    fn world_hooks_refuse_bad_input() {
        let w = WorldSim::new();
        w.up(&["n1", "n2"], 0);
        let refused = |args: &str, needle: &str| {
            let (code, _, err) = w.run("n1", args);
            assert_eq!(code, 20, "{args}: {err}");
            assert!(err.contains(needle), "{args}: {err}");
        };
        refused("sim-world", "no action given");
        refused("sim-world explode", "unknown action \"explode\"");
        refused(
            "sim-world cut n1 n9",
            "no node \"n9\" in this world (known: n1)",
        );
        refused("sim-world cut n1 n1", "two different nodes");
        refused("sim-world cut n1", "missing node name");
        refused("sim-world heal n1 n2 n3", "unexpected");
        refused("sim-world power-on n1", "is not powered off");
        refused("sim-world resolve data n2", "no node \"n2\"");
        refused("sim-world add-node ../x", "cannot name a node");
        refused("sim-world resync later", "expected hold or release");
        refused("sim-peer data --role Primary", "in a world");
        w.ok("n1", "sim-world add-node n2");
        refused("sim-world resolve data n2", "not up on n2");
        // Outside a world, the hooks say what they need.
        let sim = Sim::new();
        let (code, _, err) = sim.run("sim-world show");
        assert_eq!(code, 20);
        assert!(err.contains("CONVERGE_SIM_WORLD"), "{err}");
    }

    #[test]
    fn hooks_validate_and_local_disk_needs_a_disk() {
        let sim = Sim::new();
        // Peer settings may come before the resource is up; they apply once it is.
        sim.ok("sim-peer data --connection Connecting");
        sim.up_diskless();
        assert_eq!(sim.ok("cstate data 1"), "Connecting\n");
        assert_eq!(sim.run("connect data 1").0, 10);
        sim.ok("sim-peer data --connection StandAlone");
        assert_eq!(sim.ok("cstate data 1"), "StandAlone\n");
        sim.ok("connect data 1");
        assert_eq!(sim.ok("cstate data 1"), "Connected\n");
        assert_eq!(sim.run("sim-local-disk data --disk Outdated").0, 10);
        assert_eq!(sim.run("sim-local-disk data").0, 20);
        assert_eq!(sim.run("sim-local-disk data --disk Diskless").0, 20);
        assert_eq!(sim.run("sim-local-disk nope --disk Outdated").0, 10);
    }
}
