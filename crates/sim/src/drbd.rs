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

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::drbd_dev as dev;
use super::drbd_format::{self as format, Dialect, StatusOpts};
use super::drbd_state::{
    Backing, CONNECTION_STATES, Connection, DISK_STATES, Device, NetPath, Resource, Role, SimError,
    State, Store,
};
use super::drbd_view::{
    self as view, Action, Event, EventOpts, conflicting_primary, conn_view, has_up_to_date_access,
    peer_of,
};
use converge_core::fsutil::LockMode;
use converge_core::observe::mountinfo::DevNum;

/// Where the simulator keeps things; from the environment unless a test says otherwise.
#[derive(Debug, Clone)]
pub struct Env {
    pub sim_dir: PathBuf,
    pub dev_dir: PathBuf,
    pub dialect: Dialect,
}

/// Entry point: `args` without the program name.
pub fn run(args: &[String]) -> u8 {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut args = args;
    let mut sim_dir = std::env::var_os("CONVERGE_SIM_DIR").map(PathBuf::from);
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
    let Some(sim_dir) = sim_dir.filter(|d| !d.as_os_str().is_empty()) else {
        let _ = writeln!(
            err,
            "drbdsetup (converge simulator): no state directory: set CONVERGE_SIM_DIR or pass --sim-dir DIR first"
        );
        return 20;
    };
    let env = Env {
        sim_dir,
        dev_dir: std::env::var_os("CONVERGE_SIM_DEV_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("/dev"), PathBuf::from),
        dialect,
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

const SS_TWO_PRIMARIES: i32 = -1;
const SS_NO_UP_TO_DATE_DISK: i32 = -2;
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
    text.push_str("\nSimulator: CONVERGE_SIM_DIR (state), CONVERGE_SIM_DEV_DIR (device nodes, default /dev),\nCONVERGE_SIM_DRBD_VERSION (8.4 or 9); hooks: sim-peer RES [--role R] [--disk D] [--connection C],\nsim-local-disk RES --disk D [--volume N].\n");
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
    let store = Store::open(&env.sim_dir)?;
    if !store.proc_path().exists() {
        // A node with DRBD loaded always has /proc/drbd, whatever was configured. Not waiting
        // for the lock: its holder writes the file anyway, and may be waiting for drbdmeta,
        // which calls this simulator.
        if let Some(_lock) = store.try_lock()? {
            let state = store.load()?;
            let text = format::proc_text(&state, env.dialect);
            store.write_atomically(&store.proc_path(), text.as_bytes())?;
        }
    }
    match args.command.as_str() {
        "role" | "peer-role" | "cstate" | "dstate" | "status" | "show" | "check-resize"
        | "get-gi" | "show-gi" => read_only(&store, &args, out),
        "events2" => events2(&store, &args, out),
        "wait-sync-volume"
        | "wait-sync-connection"
        | "wait-sync-resource"
        | "wait-connect-volume"
        | "wait-connect-connection"
        | "wait-connect-resource" => {
            // Nothing ever syncs, and a connection is as connected as it will get.
            Ok(0)
        }
        "invalidate" | "invalidate-remote" | "verify" | "rename-resource" => {
            Err(Fail::Usage(format!(
                "drbdsetup (converge simulator): {} is not simulated",
                args.command
            )))
        }
        command if COMMANDS.contains(&command) => {
            let lock = store.lock(LockMode::Exclusive)?;
            let mut tx = Tx {
                state: store.load()?,
                events: Vec::new(),
                open: HashMap::new(),
            };
            let result = change(env, &mut tx, &args);
            // What happened before a failure (a loop device set up, a peer dropped) is real.
            let saved = commit(env, &store, &tx);
            drop(lock);
            saved?;
            result.map(|()| 0)
        }
        other => Err(usage(&format!("invalid command '{other}'"))),
    }
}

/// The state being changed by one command, and the events the change produces.
struct Tx {
    state: State,
    events: Vec<Event>,
    /// Whether an attached device is open, by device numbers: computed once per command.
    open: HashMap<(u32, u32), bool>,
}

impl Tx {
    /// Applies `f`, recording the events that turn resource `name` from before into after.
    fn step<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut State) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        let cache = &mut self.open;
        let mut open = |b: &Backing| {
            *cache
                .entry((b.major, b.minor))
                .or_insert_with(|| dev::is_open(b))
        };
        let before = view::snapshot(&self.state, name, &mut open);
        let result = f(&mut self.state);
        let after = view::snapshot(&self.state, name, &mut open);
        self.events
            .extend(view::diff(&before, &after, view::now_micros()));
        result
    }
}

fn commit(env: &Env, store: &Store, tx: &Tx) -> Result<(), Fail> {
    store.save(&tx.state)?;
    let lines: Vec<String> = tx
        .events
        .iter()
        .filter_map(|e| serde_json::to_string(e).ok())
        .collect();
    store.append_events(&lines)?;
    let proc_text = format::proc_text(&tx.state, env.dialect);
    store.write_atomically(&store.proc_path(), proc_text.as_bytes())?;
    Ok(())
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
            tx.step(&name, |state| {
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
                    });
                Ok(())
            })
        }
        "resource-options" => {
            let name = args.word(0)?.to_string();
            let options = args.config_options(&["set-defaults"]);
            let reset = args.flag("set-defaults");
            tx.step(&name, |state| {
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
            tx.step(&name, |state| {
                let taken = find_minor(state, minor).is_some();
                let res = resource_mut(state, &name)?;
                if taken || res.devices.contains_key(&volume) {
                    return Err(failure(&name, ERR_MINOR_OR_VOLUME_EXISTS));
                }
                res.devices.insert(
                    volume,
                    Device {
                        volume,
                        minor,
                        disk: "Diskless".to_string(),
                        backing: None,
                    },
                );
                Ok(())
            })
        }
        "del-minor" => {
            let (minor, obj) = args.minor(0)?;
            let (name, volume) =
                find_minor(&tx.state, minor).ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))?;
            tx.step(&name, |state| {
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
            tx.step(&name, |state| {
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
            tx.step(&name, |state| {
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
            tx.step(&name, |state| {
                let peer_sim = peer_of(state, &name);
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
                    && conn_view(conn, &peer_sim).peer_role == Role::Primary
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
            tx.step(&name, |state| {
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
            tx.step(&name, |state| connect(state, &name, peer))
        }
        "disconnect" => {
            let name = args.word(0)?.to_string();
            let peer = args.number(1, "peer_node_id")?;
            tx.step(&name, |state| {
                connection_mut(state, &name, peer)?.connect = false;
                Ok(())
            })
        }
        "del-peer" => {
            let name = args.word(0)?.to_string();
            let peer = args.number(1, "peer_node_id")?;
            tx.step(&name, |state| {
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
            tx.step(&name, |state| {
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
                    },
                )
            })
        }
        "disk-options" => {
            let (minor, obj) = args.minor(0)?;
            let options = args.config_options(&["set-defaults"]);
            let (name, volume) =
                find_minor(&tx.state, minor).ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))?;
            tx.step(&name, |state| {
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
            detach_step(tx, &name, volume, &obj)
        }
        "outdate" => {
            let (minor, obj) = args.minor(0)?;
            let (name, volume) =
                find_minor(&tx.state, minor).ok_or_else(|| failure(&obj, ERR_MINOR_INVALID))?;
            tx.step(&name, |state| {
                let peer = peer_of(state, &name);
                let res = resource_mut(state, &name)?;
                let connected = res
                    .connections
                    .values()
                    .any(|c| conn_view(c, &peer).connected);
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
        "peer-device-options" | "pause-sync" | "resume-sync" | "forget-peer" => {
            let name = args.word(0)?;
            resource_mut(&mut tx.state, name).map(drop)
        }
        "primary" => {
            let name = args.word(0)?.to_string();
            let force = args.flag("force") || args.flag("overwrite-data-of-peer");
            tx.step(&name, |state| primary(state, &name, force))
        }
        "secondary" => {
            let name = args.word(0)?.to_string();
            tx.step(&name, |state| secondary(state, &name))
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
            tx.step(&name, |state| {
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
            tx.step(&name, |state| {
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

fn primary(state: &mut State, name: &str, force: bool) -> Result<(), Fail> {
    let peer = peer_of(state, name);
    let res = resource_mut(state, name)?;
    if res.role == Role::Primary {
        return Ok(());
    }
    if conflicting_primary(res, &peer) {
        return Err(refused(name, SS_TWO_PRIMARIES));
    }
    let mut forced_disks = false;
    if !has_up_to_date_access(res, &peer) {
        // --force makes local data UpToDate, but only where there is local data.
        if !force || res.devices.values().any(|d| d.backing.is_none()) {
            return Err(refused(name, SS_NO_UP_TO_DATE_DISK));
        }
        forced_disks = true;
    }
    for backing in res.devices.values().filter_map(|d| d.backing.as_ref()) {
        dev::set_read_only(&backing.loop_dev, false)?;
    }
    if forced_disks {
        for device in res.devices.values_mut() {
            device.disk = "UpToDate".to_string();
        }
    }
    res.role = Role::Primary;
    Ok(())
}

fn secondary(state: &mut State, name: &str) -> Result<(), Fail> {
    let res = resource_mut(state, name)?;
    if res.role != Role::Primary {
        return Ok(());
    }
    let backings: Vec<&Backing> = res
        .devices
        .values()
        .filter_map(|d| d.backing.as_ref())
        .collect();
    if backings.iter().any(|b| dev::is_open(b)) {
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
    Ok(())
}

fn detach_step(tx: &mut Tx, name: &str, volume: u32, obj: &str) -> Result<(), Fail> {
    let numbers = tx
        .state
        .resources
        .get(name)
        .and_then(|r| r.devices.get(&volume))
        .and_then(|d| d.backing.as_ref())
        .map(|b| (b.major, b.minor));
    let result = tx.step(name, |state| {
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
        Ok(())
    });
    if let Some(numbers) = numbers {
        tx.open.remove(&numbers);
    }
    result
}

/// drbdsetup's `down`: secondary, disconnect, detach, then delete everything.
fn down(tx: &mut Tx, name: &str) -> Result<(), Fail> {
    tx.step(name, |state| secondary(state, name))?;
    let peers: Vec<u32> = tx
        .state
        .resources
        .get(name)
        .map(|r| r.connections.keys().copied().collect())
        .unwrap_or_default();
    for peer in peers {
        tx.step(name, |state| {
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
        detach_step(tx, name, volume, &minor.to_string())?;
    }
    tx.step(name, |state| {
        state.resources.remove(name);
        Ok(())
    })
}

fn read_only(store: &Store, args: &Args, out: &mut dyn Write) -> Result<u8, Fail> {
    // No lock: the state file is replaced atomically, and drbdmeta calls `dstate` while an
    // `attach` holds the lock.
    let state = store.load()?;
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
            let conn = state
                .resources
                .get(name)
                .and_then(|r| r.connections.get(&peer_id))
                .ok_or_else(|| Fail::Message {
                    text: format!("{name}: No such connection"),
                    code: 10,
                })?;
            let v = conn_view(conn, &peer_of(&state, name));
            if args.command == "cstate" {
                let _ = writeln!(out, "{}", v.cstate);
            } else {
                let _ = writeln!(out, "{}", v.peer_role.as_str());
            }
        }
        "dstate" | "check-resize" | "get-gi" | "show-gi" => {
            let (minor, obj) = args.minor(0)?;
            let (name, volume) = find_minor(&state, minor).ok_or_else(|| Fail::Message {
                text: format!("{obj}: No such device"),
                code: 10,
            })?;
            if args.command == "dstate" {
                if let Some(res) = state.resources.get(&name) {
                    let _ = write!(out, "{}", format::dstate_text(&state, res, volume));
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
                format::status_json(&state, filter, &mut open)
            } else {
                let opts = StatusOpts {
                    verbose: args.flag("verbose") || args.flag("v"),
                    // SAFETY: isatty(2) only inspects the descriptor.
                    tty: rustix::termios::isatty(std::io::stdout()),
                };
                format::status_text(&state, filter, opts, &mut open)
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
            let _ = write!(out, "{}", format::show_text(&state, filter));
        }
        _ => return Err(usage("")),
    }
    Ok(0)
}

/// `events2`: the current state as `exists` lines, `exists -`, then (without `--now`) every
/// change as it is logged, until killed or until stdout goes away.
fn events2(store: &Store, args: &Args, out: &mut dyn Write) -> Result<u8, Fail> {
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
    let (state, offset) = {
        let _lock = store.lock(LockMode::Shared)?;
        (store.load()?, store.events_len()?)
    };
    let now = view::now_micros();
    let mut open = |b: &Backing| dev::is_open(b);
    let mut text = String::new();
    for name in state.resources.keys() {
        if filter.is_some_and(|f| f != name) {
            continue;
        }
        for obj in view::snapshot(&state, name, &mut open) {
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
    use converge_core::observe::drbd::{ConnectionState, Role as ModelRole};
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
