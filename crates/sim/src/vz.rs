//! A simulated OpenVZ: `vzctl` and `vzlist` printing what vzctl 4.x prints, with its exit codes
//! (`include/vzerror.h`), for machines without an OpenVZ kernel.
//!
//! Each container is one JSON file `$CONVERGE_SIM_DIR/vz/CTID.json`, written atomically under
//! an flock, so the simulator keeps its state between runs and several processes can drive it.
//! A container is defined with the hook `vzctl sim-create CTID --private DIR`; DIR plays the
//! private area: while it is missing (its filesystem not mounted), vzctl reports the container
//! `deleted` and refuses to start it, as the real one does.
//!
//! Slow starts and stops are time-based (`--start-delay`, `--stop-delay`): `vzctl start`
//! records when init will be up and returns; `status` reads the clock. No process stays behind.
//!
//! Outputs, sources and fidelity limits: the "OpenVZ simulator" section of the testing docs.

// vzctl is a C program: run with SIGPIPE ignored (as converge runs it), a write to a pipe
// nobody reads any more fails and it goes on. `println!` would panic (exit 101) instead, e.g.
// when the converge that ran it was killed.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use converge_core::fsutil::{FileLock, LockMode, write_atomic};

/// The environment variable naming the simulators' state directory.
pub const SIM_DIR_ENV: &str = "CONVERGE_SIM_DIR";

/// Exit codes from vzctl 4.x `include/vzerror.h`.
pub mod code {
    pub const SYSTEM_ERROR: u8 = 3;
    pub const RESOURCE_ERROR: u8 = 6;
    pub const COMMAND_EXECUTION_ERROR: u8 = 8;
    /// Global configuration missing: the simulator's stand-in is an unset `CONVERGE_SIM_DIR`.
    pub const NOCONFIG: u8 = 10;
    pub const NOVECONFIG: u8 = 14;
    pub const INVALID_PARAMETER_SYNTAX: u8 = 20;
    pub const INVALID_PARAMETER_VALUE: u8 = 21;
    pub const VE_NOT_RUNNING: u8 = 31;
    pub const VE_RUNNING: u8 = 32;
    pub const FS_NOT_MOUNTED: u8 = 40;
    pub const FS_MOUNTED: u8 = 41;
    pub const FS_NOPRVT: u8 = 43;
    pub const FS_PRVT_AREA_EXIST: u8 = 44;
    pub const FS_BAD_TMPL: u8 = 47;
    pub const WAIT_FAILED: u8 = 133;
}

/// vzctl's `VEID_MAX`: a few ids below `INT_MAX` are the kernel's own.
const VEID_MAX: i64 = 2_147_483_644;
/// vzctl's `DEF_PATH`, the PATH of every command run inside a container.
const DEF_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `Setting CPU units:` prints the configured value, 1000 (`DEF_CPUUNITS`) when none is.
const DEF_CPUUNITS: u32 = 1000;
const VERSION_LINE: &str = "vzctl version 4.9 (converge simulator)";

#[derive(Debug, Error)]
pub enum SimVzError {
    #[error(
        "{SIM_DIR_ENV} is not set: it names the directory where the simulators keep their state"
    )]
    NoSimDir,
    #[error("simulator state {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("simulator state {} is not a container record: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Whether init is up. Starting and Stopping end by themselves at `until` (ms since the epoch,
/// wall clock so that separate processes agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Run {
    #[default]
    Down,
    Starting {
        until: u64,
    },
    Running,
    Stopping {
        until: u64,
        unmount: bool,
    },
}

/// One simulated container: its "config file" and its kernel state in one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub private: PathBuf,
    #[serde(default)]
    pub start_delay_ms: u64,
    #[serde(default)]
    pub stop_delay_ms: u64,
    #[serde(default)]
    pub fail_start: bool,
    #[serde(default)]
    pub mounted: bool,
    #[serde(default)]
    pub run: Run,
}

impl Container {
    pub fn new(private: PathBuf) -> Container {
        Container {
            private,
            start_delay_ms: 0,
            stop_delay_ms: 0,
            fail_start: false,
            mounted: false,
            run: Run::Down,
        }
    }

    /// Applies the transitions whose time has come.
    pub fn settle(&mut self, now: u64) {
        match self.run {
            Run::Starting { until } if now >= until => self.run = Run::Running,
            Run::Stopping { until, unmount } if now >= until => {
                self.run = Run::Down;
                if unmount {
                    self.mounted = false;
                }
            }
            _ => {}
        }
    }

    /// As the kernel sees it: a container shutting down still runs; one whose init is not up
    /// yet does not (that is what `--start-delay` models).
    pub fn is_running(&self) -> bool {
        matches!(self.run, Run::Running | Run::Stopping { .. })
    }
}

/// What the private area looks like on disk, probed once per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub exists: bool,
    /// Something in it (an empty directory has no init to start).
    pub populated: bool,
}

impl Area {
    pub fn probe(dir: &Path) -> Area {
        Area {
            exists: dir.exists(),
            populated: fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()),
        }
    }
}

/// A line vzctl prints: its logger sends level 0 to stdout, level -1 to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Out(String),
    Err(String),
}

fn out(text: impl Into<String>) -> Msg {
    Msg::Out(text.into())
}

fn err(text: impl Into<String>) -> Msg {
    Msg::Err(text.into())
}

fn print(msgs: &[Msg], quiet: bool) {
    if quiet {
        return;
    }
    for m in msgs {
        match m {
            Msg::Out(t) => println!("{t}"),
            Msg::Err(t) => eprintln!("{t}"),
        }
    }
}

/// `vzctl status`: existence needs both the config and the private area (vzctl 4.x
/// `show_status`), so a container whose filesystem is not mounted shows `deleted`.
pub fn status_line(ctid: u32, ct: Option<&Container>, area: Option<Area>) -> String {
    let exist = ct.is_some() && area.is_some_and(|a| a.exists);
    let mounted = ct.is_some_and(|c| c.mounted);
    let running = ct.is_some_and(Container::is_running);
    format!(
        "CTID {ctid} {} {} {}",
        if exist { "exist" } else { "deleted" },
        if mounted { "mounted" } else { "unmounted" },
        if running { "running" } else { "down" },
    )
}

/// vzlist's STATUS column, `None` for a container vzlist hides: stopped with its private area
/// missing (vzlist 4.x `get_mounted_status`).
pub fn list_status(ct: &Container, area: Area) -> Option<&'static str> {
    if ct.is_running() {
        Some("running")
    } else if !area.exists {
        None
    } else if ct.mounted {
        Some("mounted")
    } else {
        Some("stopped")
    }
}

/// Options of start, stop and restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartStop {
    pub wait: bool,
    pub fast: bool,
    pub skip_umount: bool,
}

/// What a transition leaves to do once the state is saved and the lock released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    Nothing,
    /// `start --wait`: wait for init, until this time.
    WaitUntil(u64),
}

/// `vzctl start`, in vzctl 4.x order: private area, already running, then mount and start.
/// The real one unmounts a mounted-but-stopped container first, and so does this.
pub fn start(ct: &mut Container, area: Area, now: u64, opts: StartStop) -> (u8, Vec<Msg>, Then) {
    let mut msgs = Vec::new();
    if !area.exists {
        msgs.push(err(format!(
            "Container private area {} does not exist",
            ct.private.display()
        )));
        return (code::FS_NOPRVT, msgs, Then::Nothing);
    }
    if ct.is_running() {
        msgs.push(err("Container is already running"));
        return (code::VE_RUNNING, msgs, Then::Nothing);
    }
    msgs.push(out("Starting container..."));
    if ct.mounted {
        msgs.push(out("Container is unmounted"));
    }
    ct.mounted = true;
    msgs.push(out("Container is mounted"));
    msgs.push(out(format!("Setting CPU units: {DEF_CPUUNITS}")));
    // An empty private area has no /sbin/init: the real start fails exactly like this.
    if ct.fail_start || !area.populated {
        msgs.push(err("Unable to start init, probably incorrect template"));
        msgs.push(err("Container start failed"));
        ct.mounted = false;
        ct.run = Run::Down;
        msgs.push(out("Container is unmounted"));
        return (code::FS_BAD_TMPL, msgs, Then::Nothing);
    }
    // A start repeated while init is on its way keeps the first deadline, so a caller
    // retrying cannot postpone it forever.
    let until = match ct.run {
        Run::Starting { until } => until,
        _ => now.saturating_add(ct.start_delay_ms),
    };
    ct.run = if until <= now {
        Run::Running
    } else {
        Run::Starting { until }
    };
    if opts.wait {
        msgs.push(out("Container start in progress, waiting ..."));
        (0, msgs, Then::WaitUntil(until))
    } else {
        msgs.push(out("Container start in progress..."));
        (0, msgs, Then::Nothing)
    }
}

/// `vzctl stop`. Not running is success for vzctl 4.x (it only complains). With a stop delay
/// the simulator returns at once and the container goes down at the deadline, while the real
/// one blocks until then: converge polls either way.
pub fn stop(ct: &mut Container, now: u64, opts: StartStop, immediate: bool) -> (u8, Vec<Msg>) {
    let mut msgs = Vec::new();
    if !ct.is_running() {
        msgs.push(err("Unable to stop: container is not running"));
        // Cancelling a pending start keeps the container from coming up after a stop.
        if matches!(ct.run, Run::Starting { .. }) {
            ct.run = Run::Down;
        }
        return (0, msgs);
    }
    let down = |ct: &mut Container, msgs: &mut Vec<Msg>| {
        ct.run = Run::Down;
        msgs.push(out("Container was stopped"));
        if !opts.skip_umount {
            ct.mounted = false;
            msgs.push(out("Container is unmounted"));
        }
    };
    if opts.fast {
        msgs.push(out("Killing container ..."));
        down(ct, &mut msgs);
        return (0, msgs);
    }
    msgs.push(out("Stopping container ..."));
    if matches!(ct.run, Run::Stopping { .. }) && !immediate {
        return (0, msgs);
    }
    if ct.stop_delay_ms == 0 || immediate {
        down(ct, &mut msgs);
    } else {
        ct.run = Run::Stopping {
            until: now.saturating_add(ct.stop_delay_ms),
            unmount: !opts.skip_umount,
        };
    }
    (0, msgs)
}

/// `vzctl mount`.
pub fn mount(ct: &mut Container, area: Area) -> (u8, Vec<Msg>) {
    if ct.mounted {
        return (0, vec![err("Container is already mounted")]);
    }
    if !area.exists {
        return (
            code::FS_NOPRVT,
            vec![err(format!(
                "Container private area {} does not exist",
                ct.private.display()
            ))],
        );
    }
    ct.mounted = true;
    (0, vec![out("Container is mounted")])
}

/// `vzctl umount`.
pub fn umount(ct: &mut Container) -> (u8, Vec<Msg>) {
    if !ct.mounted {
        return (code::FS_NOT_MOUNTED, vec![err("CT is not mounted")]);
    }
    if ct.is_running() {
        return (
            code::VE_RUNNING,
            vec![err("Container is running -- stop it first")],
        );
    }
    ct.mounted = false;
    ct.run = Run::Down;
    (0, vec![out("Container is unmounted")])
}

/// `vzctl destroy`: the checks and messages of vzctl 4.x (on stdout, as it prints them). The
/// caller removes the record; the private area itself is left alone.
pub fn destroy(ct: &Container) -> (u8, Vec<Msg>) {
    if ct.is_running() {
        return (
            code::VE_RUNNING,
            vec![out("Container is currently running. Stop it first.")],
        );
    }
    if ct.mounted {
        return (
            code::FS_MOUNTED,
            vec![out("Container is currently mounted (umount first)")],
        );
    }
    (
        0,
        vec![
            out(format!(
                "Destroying container private area: {}",
                ct.private.display()
            )),
            out("Container private area was destroyed"),
        ],
    )
}

/// The three exec flavours of vzctl 4.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// The command line through `bash -c`; any failure becomes exit 8.
    Exec,
    /// Same, but the command's own exit code.
    Exec2,
    /// argv executed directly, no shell.
    Exec3,
}

impl ExecMode {
    /// vzctl 4.x `run_action`: `exec` folds every failure into VZ_COMMAND_EXECUTION_ERROR.
    pub fn exit_code(self, code: u8) -> u8 {
        if self == ExecMode::Exec && code != 0 {
            code::COMMAND_EXECUTION_ERROR
        } else {
            code
        }
    }
}

/// vzctl's exec joins its arguments into one shell command line: each followed by a space,
/// an empty one written `''`; nothing is quoted.
pub fn join_command(args: &[String]) -> String {
    let mut line = String::new();
    for a in args {
        if a.is_empty() {
            line.push_str("'' ");
        } else {
            line.push_str(a);
            line.push(' ');
        }
    }
    line
}

// ---------------------------------------------------------------------------------------------
// State on disk

struct Store {
    dir: PathBuf,
}

impl Store {
    fn open() -> Result<Store, SimVzError> {
        let base = std::env::var_os(SIM_DIR_ENV)
            .filter(|v| !v.is_empty())
            .ok_or(SimVzError::NoSimDir)?;
        Store::at(Path::new(&base))
    }

    /// The store of the simulator state `base` (what `CONVERGE_SIM_DIR` would name).
    fn at(base: &Path) -> Result<Store, SimVzError> {
        let dir = base.join("vz");
        fs::create_dir_all(&dir).map_err(|source| SimVzError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Store { dir })
    }

    /// Held while the store is read (shared) or changed (exclusive); dropping it releases the
    /// flock.
    fn lock(&self, mode: LockMode) -> Result<FileLock, SimVzError> {
        let path = self.dir.join(".lock");
        FileLock::acquire(&path, mode).map_err(|source| SimVzError::Io { path, source })
    }

    fn path(&self, ctid: u32) -> PathBuf {
        self.dir.join(format!("{ctid}.json"))
    }

    fn load(&self, ctid: u32) -> Result<Option<Container>, SimVzError> {
        let path = self.path(ctid);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SimVzError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| SimVzError::Corrupt { path, source })
    }

    /// Every container, by id.
    fn load_all(&self) -> Result<Vec<(u32, Container)>, SimVzError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| SimVzError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| SimVzError::Io {
                path: self.dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Ok(id) = stem.parse::<u32>() {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut all = Vec::new();
        for id in ids {
            if let Some(ct) = self.load(id)? {
                all.push((id, ct));
            }
        }
        Ok(all)
    }

    /// A reader never sees half a record.
    fn save(&self, ctid: u32, ct: &Container) -> Result<(), SimVzError> {
        let path = self.path(ctid);
        let text = serde_json::to_string_pretty(ct).map_err(|source| SimVzError::Corrupt {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, (text + "\n").as_bytes())
            .map_err(|source| SimVzError::Io { path, source })
    }

    fn remove(&self, ctid: u32) -> Result<(), SimVzError> {
        let path = self.path(ctid);
        fs::remove_file(&path).map_err(|source| SimVzError::Io { path, source })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// vzctl

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Status,
    Start,
    Stop,
    Restart,
    Mount,
    Umount,
    Destroy,
    Exec(ExecMode),
    SimCreate,
    SimSet,
    SimKill,
}

impl Action {
    fn parse(word: &str) -> Option<Action> {
        Some(match word {
            "status" => Action::Status,
            "start" => Action::Start,
            "stop" => Action::Stop,
            "restart" => Action::Restart,
            "mount" => Action::Mount,
            "umount" => Action::Umount,
            "destroy" | "delete" => Action::Destroy,
            "exec" => Action::Exec(ExecMode::Exec),
            "exec2" => Action::Exec(ExecMode::Exec2),
            "exec3" => Action::Exec(ExecMode::Exec3),
            "sim-create" => Action::SimCreate,
            "sim-set" => Action::SimSet,
            "sim-kill" => Action::SimKill,
            _ => return None,
        })
    }
}

/// Commands of the real vzctl 4.x that the simulator does not model: named as such rather than
/// called bad.
const UNSIMULATED: &[&str] = &[
    "create",
    "set",
    "enter",
    "console",
    "runscript",
    "suspend",
    "chkpnt",
    "resume",
    "restore",
    "quotaon",
    "quotaoff",
    "quotainit",
    "convert",
    "compact",
    "snapshot",
    "snapshot-switch",
    "snapshot-delete",
    "snapshot-list",
];

fn vzctl_usage(to_stderr: bool) {
    let text = format!(
        "{VERSION_LINE}
Usage: vzctl [options] <command> <ctid> [parameters]

vzctl start <ctid> [--force] [--wait]
vzctl stop <ctid> [--fast] [--skip-umount]
vzctl restart | destroy | mount | umount | status <ctid>
vzctl exec | exec2 | exec3 <ctid> <command> [arg ...]

Simulator hooks (state in ${SIM_DIR_ENV}/vz):
vzctl sim-create <ctid> --private <dir> [--start-delay <time>] [--stop-delay <time>]
   [--fail-start]
vzctl sim-set <ctid> [--private <dir>] [--start-delay <time>] [--stop-delay <time>]
   [--fail-start | --no-fail-start]
vzctl sim-kill <ctid> [--unmount]"
    );
    if to_stderr {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

/// Options of the hooks and of start/stop, parsed from what follows the container id.
#[derive(Debug, Default)]
struct Opts {
    start_stop: StartStop,
    private: Option<PathBuf>,
    start_delay: Option<Duration>,
    stop_delay: Option<Duration>,
    fail_start: Option<bool>,
    unmount: bool,
    command: Vec<String>,
}

/// Options found, with their values.
type Found = Vec<(String, Option<String>)>;

/// getopt_long's way with `--name`, `--name=value` and `--name value`; non-options are
/// returned apart. Errors print getopt's message and give vzctl's syntax error code.
fn long_options(params: &[String], spec: &[(&str, bool)]) -> Result<(Found, Vec<String>), u8> {
    let mut found = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < params.len() {
        let arg = &params[i];
        i += 1;
        if arg == "--" {
            rest.extend(params[i..].iter().cloned());
            break;
        }
        let Some(body) = arg.strip_prefix("--") else {
            if let Some(c) = arg.strip_prefix('-').and_then(|s| s.chars().next()) {
                eprintln!("vzctl: invalid option -- '{c}'");
                return Err(code::INVALID_PARAMETER_SYNTAX);
            }
            rest.push(arg.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(&(_, takes)) = spec.iter().find(|(n, _)| *n == name) else {
            eprintln!("vzctl: unrecognized option '{arg}'");
            return Err(code::INVALID_PARAMETER_SYNTAX);
        };
        let value = match (takes, inline) {
            (true, Some(v)) => Some(v),
            (true, None) if i < params.len() => {
                i += 1;
                Some(params[i - 1].clone())
            }
            (true, None) => {
                eprintln!("vzctl: option '--{name}' requires an argument");
                return Err(code::INVALID_PARAMETER_SYNTAX);
            }
            (false, Some(_)) => {
                eprintln!("vzctl: option '--{name}' doesn't allow an argument");
                return Err(code::INVALID_PARAMETER_SYNTAX);
            }
            (false, None) => None,
        };
        found.push((name.to_string(), value));
    }
    Ok((found, rest))
}

fn parse_delay(hook: &str, name: &str, value: &str) -> Result<Duration, u8> {
    humantime::parse_duration(value).map_err(|e| {
        eprintln!("vzctl {hook}: bad --{name} {value:?}: {e} (examples: 300ms, 2s)");
        code::INVALID_PARAMETER_VALUE
    })
}

fn parse_opts(action: Action, params: &[String]) -> Result<Opts, u8> {
    let mut opts = Opts::default();
    match action {
        Action::Exec(_) => {
            if params.is_empty() {
                eprintln!("No command line given for exec");
                return Err(code::INVALID_PARAMETER_SYNTAX);
            }
            opts.command = params.to_vec();
        }
        Action::Start | Action::Stop | Action::Restart => {
            let spec = [
                ("force", false),
                ("wait", false),
                ("skip_ve_setup", false),
                ("fast", false),
                ("skip-umount", false),
            ];
            // Positional leftovers are ignored, as vzctl 4.x does.
            let (found, _) = long_options(params, &spec)?;
            let starts = action != Action::Stop;
            let stops = action != Action::Start;
            for (name, _) in found {
                let applicable = match name.as_str() {
                    "force" | "wait" | "skip_ve_setup" => starts,
                    _ => stops,
                };
                if !applicable {
                    eprintln!(
                        "Option --{name} is not applicable to {} command",
                        if starts { "start" } else { "stop" }
                    );
                    return Err(code::INVALID_PARAMETER_SYNTAX);
                }
                match name.as_str() {
                    "wait" => opts.start_stop.wait = true,
                    "fast" => opts.start_stop.fast = true,
                    "skip-umount" => opts.start_stop.skip_umount = true,
                    _ => {}
                }
            }
        }
        Action::SimCreate | Action::SimSet | Action::SimKill => {
            let hook = match action {
                Action::SimCreate => "sim-create",
                Action::SimSet => "sim-set",
                _ => "sim-kill",
            };
            let spec: &[(&str, bool)] = match action {
                Action::SimKill => &[("unmount", false)],
                Action::SimCreate => &[
                    ("private", true),
                    ("start-delay", true),
                    ("stop-delay", true),
                    ("fail-start", false),
                ],
                _ => &[
                    ("private", true),
                    ("start-delay", true),
                    ("stop-delay", true),
                    ("fail-start", false),
                    ("no-fail-start", false),
                ],
            };
            let (found, rest) = long_options(params, spec)?;
            if !rest.is_empty() {
                eprintln!("vzctl {hook}: unexpected argument(s): {}", rest.join(" "));
                return Err(code::INVALID_PARAMETER_SYNTAX);
            }
            for (name, value) in found {
                let value = value.unwrap_or_default();
                match name.as_str() {
                    "private" => {
                        if value.is_empty() {
                            eprintln!("vzctl {hook}: --private needs a directory");
                            return Err(code::INVALID_PARAMETER_VALUE);
                        }
                        // Absolute now: later commands may run from anywhere.
                        let dir = std::path::absolute(&value).map_err(|e| {
                            eprintln!("vzctl {hook}: bad --private {value:?}: {e}");
                            code::INVALID_PARAMETER_VALUE
                        })?;
                        opts.private = Some(dir);
                    }
                    "start-delay" => opts.start_delay = Some(parse_delay(hook, &name, &value)?),
                    "stop-delay" => opts.stop_delay = Some(parse_delay(hook, &name, &value)?),
                    "fail-start" => opts.fail_start = Some(true),
                    "no-fail-start" => opts.fail_start = Some(false),
                    "unmount" => opts.unmount = true,
                    _ => {}
                }
            }
            if action == Action::SimCreate && opts.private.is_none() {
                eprintln!("vzctl sim-create: --private DIR is required");
                return Err(code::INVALID_PARAMETER_SYNTAX);
            }
        }
        Action::Status | Action::Mount | Action::Umount | Action::Destroy => {
            if !params.is_empty() {
                // vzctl 4.x prints each word followed by a space.
                let words: String = params.iter().map(|p| format!("{p} ")).collect();
                eprintln!("Invalid options: {words}");
                return Err(code::INVALID_PARAMETER_SYNTAX);
            }
        }
    }
    Ok(opts)
}

/// vzctl's `parse_int` then range check; names (`--name`) are not simulated.
fn parse_ctid(word: &str) -> Option<u32> {
    let n: i64 = word.parse().ok()?;
    if (0..=VEID_MAX).contains(&n) {
        u32::try_from(n).ok()
    } else {
        None
    }
}

/// `vzctl ARGS…` (without the program name): the exit code.
pub fn vzctl(args: &[String]) -> u8 {
    let mut quiet = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "--quiet" => quiet = true,
            "--verbose" | "--skiplock" => {}
            "--version" => {
                println!("{VERSION_LINE}");
                return 0;
            }
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    let Some(word) = rest.first() else {
        vzctl_usage(true);
        return code::INVALID_PARAMETER_SYNTAX;
    };
    if word == "--help" {
        vzctl_usage(false);
        return 0;
    }
    let Some(action) = Action::parse(word) else {
        if UNSIMULATED.contains(&word.as_str()) {
            eprintln!("vzctl (converge sim): command {word:?} is not simulated");
        } else {
            eprintln!("Bad command: {word}");
        }
        return code::INVALID_PARAMETER_SYNTAX;
    };
    if action == Action::Status {
        // vzctl 4.x runs status quiet: only the status line.
        quiet = true;
    }
    let Some(id) = rest.get(1) else {
        eprintln!("CT ID missing");
        return code::INVALID_PARAMETER_VALUE;
    };
    let Some(ctid) = parse_ctid(id) else {
        eprintln!("Bad CT ID {id}");
        return code::INVALID_PARAMETER_VALUE;
    };
    let store = match Store::open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vzctl (converge sim): {e}");
            return code::NOCONFIG;
        }
    };
    let opts = match parse_opts(action, &rest[2..]) {
        Ok(o) => o,
        Err(code) => return code,
    };
    if ctid == 0 {
        eprintln!("Only set actions are allowed for CT0");
        return code::INVALID_PARAMETER_VALUE;
    }
    match run_action(&store, ctid, action, opts, quiet) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vzctl (converge sim): {e}");
            code::SYSTEM_ERROR
        }
    }
}

enum After {
    Done,
    Wait(u64),
    Exec {
        private: PathBuf,
        mode: ExecMode,
        command: Vec<String>,
    },
}

fn run_action(
    store: &Store,
    ctid: u32,
    action: Action,
    opts: Opts,
    quiet: bool,
) -> Result<u8, SimVzError> {
    let now = now_ms();
    let (code, after) = {
        let _lock = store.lock(if action == Action::Status {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        })?;
        let mut record = store.load(ctid)?;
        if let Some(ct) = record.as_mut() {
            ct.settle(now);
        }
        let area = record.as_ref().map(|ct| Area::probe(&ct.private));
        match action {
            Action::Status => {
                println!("{}", status_line(ctid, record.as_ref(), area));
                return Ok(0);
            }
            Action::SimCreate => {
                if record.is_some() {
                    eprintln!(
                        "vzctl sim-create: container {ctid} already exists (vzctl destroy it first, or use sim-set)"
                    );
                    return Ok(code::FS_PRVT_AREA_EXIST);
                }
                let Some(private) = opts.private else {
                    return Ok(code::INVALID_PARAMETER_SYNTAX);
                };
                let mut ct = Container::new(private);
                ct.start_delay_ms = opts.start_delay.map_or(0, duration_ms);
                ct.stop_delay_ms = opts.stop_delay.map_or(0, duration_ms);
                ct.fail_start = opts.fail_start.unwrap_or(false);
                store.save(ctid, &ct)?;
                return Ok(0);
            }
            _ => {}
        }
        let (Some(mut ct), Some(area)) = (record, area) else {
            print(&[err("Container config file does not exist")], quiet);
            return Ok(code::NOVECONFIG);
        };
        let before = ct.clone();
        let (code, msgs, after) = match action {
            Action::Start => {
                let (code, msgs, then) = start(&mut ct, area, now, opts.start_stop);
                let after = match then {
                    Then::WaitUntil(t) => After::Wait(t),
                    Then::Nothing => After::Done,
                };
                (code, msgs, after)
            }
            Action::Stop => {
                let (code, msgs) = stop(&mut ct, now, opts.start_stop, false);
                (code, msgs, After::Done)
            }
            Action::Restart => {
                let mut msgs = vec![out("Restarting container")];
                let mut code = 0;
                if ct.is_running() {
                    // Restart waits for the stop, whatever the stop delay.
                    let (c, m) = stop(&mut ct, now, opts.start_stop, true);
                    msgs.extend(m);
                    code = c;
                }
                let mut after = After::Done;
                if code == 0 {
                    let (c, m, then) = start(&mut ct, area, now, opts.start_stop);
                    msgs.extend(m);
                    code = c;
                    if let Then::WaitUntil(t) = then {
                        after = After::Wait(t);
                    }
                }
                (code, msgs, after)
            }
            Action::Mount => {
                let (code, msgs) = mount(&mut ct, area);
                (code, msgs, After::Done)
            }
            Action::Umount => {
                let (code, msgs) = umount(&mut ct);
                (code, msgs, After::Done)
            }
            Action::Destroy => {
                let (code, msgs) = destroy(&ct);
                if code == 0 {
                    store.remove(ctid)?;
                }
                print(&msgs, quiet);
                return Ok(code);
            }
            Action::Exec(mode) => {
                if ct.is_running() {
                    let after = After::Exec {
                        private: ct.private.clone(),
                        mode,
                        command: opts.command,
                    };
                    (0, Vec::new(), after)
                } else {
                    let msgs = vec![err("Container is not running")];
                    (mode.exit_code(code::VE_NOT_RUNNING), msgs, After::Done)
                }
            }
            Action::SimSet => {
                if let Some(private) = opts.private {
                    if ct.mounted || ct.is_running() {
                        eprintln!("Unable to change VE_PRIVATE on a running container");
                        return Ok(code::VE_RUNNING);
                    }
                    ct.private = private;
                }
                if let Some(d) = opts.start_delay {
                    ct.start_delay_ms = duration_ms(d);
                }
                if let Some(d) = opts.stop_delay {
                    ct.stop_delay_ms = duration_ms(d);
                }
                if let Some(f) = opts.fail_start {
                    ct.fail_start = f;
                }
                (0, Vec::new(), After::Done)
            }
            Action::SimKill => {
                let msgs = if ct.is_running() || matches!(ct.run, Run::Starting { .. }) {
                    ct.run = Run::Down;
                    if opts.unmount {
                        ct.mounted = false;
                    }
                    Vec::new()
                } else {
                    vec![err(format!(
                        "vzctl sim-kill: container {ctid} is not running; nothing to kill"
                    ))]
                };
                (0, msgs, After::Done)
            }
            Action::Status | Action::SimCreate => unreachable!("handled above"),
        };
        if ct != before {
            store.save(ctid, &ct)?;
        }
        if code == 0 && matches!(action, Action::Start | Action::Restart) {
            empty_tmpfs(&ct.private);
        }
        print(&msgs, quiet);
        (code, after)
    };
    Ok(match after {
        After::Done => code,
        After::Wait(until) => wait_for_init(store, ctid, until, quiet)?,
        After::Exec {
            private,
            mode,
            command,
        } => mode.exit_code(exec_in(ctid, &private, mode, &command)),
    })
}

/// A container's `/var/run` is a tmpfs: each start finds it empty, whatever the last run left
/// there (an app's pid or state file, after a power cut that ran no stop script). The
/// simulator has no tmpfs, so it empties the directory of the private area instead. A
/// `/var/run` that is a symlink (to `/run`) is left alone: it is not followed.
fn empty_tmpfs(private: &Path) {
    let run = private.join("var/run");
    if !fs::symlink_metadata(&run).is_ok_and(|m| m.is_dir()) {
        return;
    }
    let Ok(entries) = fs::read_dir(&run) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Best effort, as a tmpfs that vanished would be: what cannot go stays.
        let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

/// A power cut on the node whose simulator state is `sim_dir` (what `CONVERGE_SIM_DIR` names
/// there): no kernel keeps a container, so every one is down and unmounted when the node comes
/// back, as after a reboot. Returns the containers that were running or mounted.
pub fn power_cut(sim_dir: &Path) -> Result<Vec<u32>, SimVzError> {
    let store = Store::at(sim_dir)?;
    let _lock = store.lock(LockMode::Exclusive)?;
    let mut cut = Vec::new();
    for (ctid, mut ct) in store.load_all()? {
        if ct.run != Run::Down || ct.mounted {
            ct.run = Run::Down;
            ct.mounted = false;
            store.save(ctid, &ct)?;
            cut.push(ctid);
        }
    }
    Ok(cut)
}

/// `start --wait`, outside the lock so that others can watch the container come up.
fn wait_for_init(store: &Store, ctid: u32, until: u64, quiet: bool) -> Result<u8, SimVzError> {
    let now = now_ms();
    if until > now {
        std::thread::sleep(Duration::from_millis(until - now));
    }
    let up = {
        let _lock = store.lock(LockMode::Shared)?;
        store.load(ctid)?.is_some_and(|mut ct| {
            ct.settle(now_ms());
            ct.run == Run::Running
        })
    };
    if up {
        print(&[out("Container started successfully")], quiet);
        Ok(0)
    } else {
        print(&[out("Container wait failed")], quiet);
        Ok(code::WAIT_FAILED)
    }
}

// ---------------------------------------------------------------------------------------------
// Running commands "inside" a container

/// Runs the command and returns its exit code, vzctl-style: 3 (VZ_SYSTEM_ERROR) with
/// "Got signal N" when a signal ended it.
fn exec_in(ctid: u32, private: &Path, mode: ExecMode, command: &[String]) -> u8 {
    // Its filesystem unmounted under a running container: vzctl's chroot step fails so.
    if !private.is_dir() {
        eprintln!(
            "unable to change dir to {}: No such file or directory",
            private.display()
        );
        return code::RESOURCE_ERROR;
    }
    let root = rustix::process::geteuid().is_root();
    let planned = if root && has_shell(private) {
        chroot_command(private, mode, command)
    } else {
        Ok(host_command(private, mode, command))
    };
    let mut cmd = match planned {
        Ok(c) => c,
        Err(message) => {
            eprintln!("vzctl (converge sim): container {ctid}: {message}");
            return code::FS_BAD_TMPL;
        }
    };
    // vzctl, a C program, hands its SIGPIPE disposition down to the command: ignored, as
    // converge runs it (so that a command outliving a killed converge does not die of its next
    // line of output). Rust's runtime resets it to the default in every child: ignore it again.
    // (Run by hand from a shell, the real vzctl would pass the default on: a fidelity limit.)
    // SAFETY: only signal(2) between fork and exec, async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::signal(libc::SIGPIPE, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Our own lines must come out before the command's.
    let _ = io::stdout().flush();
    match cmd.status() {
        Ok(status) => {
            if let Some(c) = status.code() {
                u8::try_from(c).unwrap_or(u8::MAX)
            } else {
                eprintln!("Got signal {}", status.signal().unwrap_or(0));
                code::SYSTEM_ERROR
            }
        }
        Err(e) => {
            eprintln!(
                "vzctl (converge sim): container {ctid}: cannot run {:?}: {e}",
                cmd.get_program()
            );
            code::FS_BAD_TMPL
        }
    }
}

/// A container with its own shell can be entered for real (chroot); one without is only a
/// directory on the host.
fn has_shell(private: &Path) -> bool {
    ["bin/sh", "bin/bash"]
        .iter()
        .any(|s| is_executable(&private.join(s)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Inside the container: chroot into the private area, vzctl's environment, `bash -c LINE`
/// (`sh` when the container has no bash), as vzctl 4.x runs exec.
fn chroot_command(private: &Path, mode: ExecMode, command: &[String]) -> Result<Command, String> {
    let shell = if is_executable(&private.join("bin/bash")) {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let mut cmd = match mode {
        ExecMode::Exec3 => {
            let program = find_in_container(private, &command[0])
                .ok_or_else(|| format!("{}: not found in the container", command[0]))?;
            let mut c = Command::new(program);
            c.args(&command[1..]);
            c
        }
        _ if command[0] == "-" => Command::new(shell),
        _ => {
            let mut c = Command::new(shell);
            c.arg("-c").arg(join_command(command));
            c
        }
    };
    cmd.env_clear()
        .env("HOME", "/")
        .env("TERM", "linux")
        .env("PATH", DEF_PATH);
    let dir = CString::new(private.as_os_str().as_bytes())
        .map_err(|_| format!("private area {:?} contains a NUL byte", private))?;
    // SAFETY: only chroot(2) and chdir(2) between fork and exec, both async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(dir.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// vzctl's `execvep`: a name without a slash is looked up along DEF_PATH, here inside the
/// container; the result is the path as the container sees it.
fn find_in_container(private: &Path, program: &str) -> Option<String> {
    if program.contains('/') {
        return Some(program.to_string());
    }
    DEF_PATH.split(':').find_map(|dir| {
        let inside = format!("{dir}/{program}");
        is_executable(&private.join(inside.trim_start_matches('/'))).then_some(inside)
    })
}

/// Without chroot: the command runs on the host, in the private area, and its first word, when
/// it is an absolute path that exists in the private area, is taken from there. Anything else
/// the command names is the host's (a fidelity limit: see the docs).
fn host_command(private: &Path, mode: ExecMode, command: &[String]) -> Command {
    let shell = if is_executable(Path::new("/bin/bash")) {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let inside = |word: &str| -> Option<PathBuf> {
        let rel = word.strip_prefix('/')?;
        let p = private.join(rel);
        (!rel.is_empty() && p.exists()).then_some(p)
    };
    let mut cmd = match mode {
        ExecMode::Exec3 => {
            let mut c = match inside(&command[0]) {
                Some(p) => Command::new(p),
                None => Command::new(&command[0]),
            };
            c.args(&command[1..]);
            c
        }
        _ if command[0] == "-" => Command::new(shell),
        _ => {
            let mut words = command.to_vec();
            if let Some(p) = inside(&command[0]) {
                words[0] = converge_core::shell::quote(&p.to_string_lossy());
            }
            let mut c = Command::new(shell);
            c.arg("-c").arg(join_command(&words));
            c
        }
    };
    let container_path: Vec<String> = DEF_PATH
        .split(':')
        .map(|d| {
            private
                .join(d.trim_start_matches('/'))
                .display()
                .to_string()
        })
        .collect();
    cmd.env_clear()
        .env("HOME", private)
        .env("TERM", "linux")
        .env("PATH", format!("{}:{DEF_PATH}", container_path.join(":")))
        .env("CONVERGE_SIM_VZ_ROOT", private)
        .current_dir(private);
    cmd
}

// ---------------------------------------------------------------------------------------------
// vzlist

/// How a vzlist column is printed (vzlist 4.x `field_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `%10d`.
    Ctid,
    /// `%-9s`.
    Status,
    /// A beancounter, `%10s` of `-`: the simulator counts no processes.
    Ubc,
    /// The private area, cut to the width unless it is the last column.
    Private,
    /// A string the simulator does not keep (hostname, name…): `-`.
    Unset,
    /// A list (ip, nameserver): only its first word unless it is the last column.
    List,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    header: &'static str,
    /// printf width: negative left-aligns.
    width: i32,
    kind: Kind,
}

const fn field(name: &'static str, header: &'static str, width: i32, kind: Kind) -> Field {
    Field {
        name,
        header,
        width,
        kind,
    }
}

/// The columns the simulator prints, with vzlist 4.x's headers and widths.
const FIELDS: &[Field] = &[
    field("ctid", "CTID", 10, Kind::Ctid),
    field("veid", "CTID", 10, Kind::Ctid),
    field("vpsid", "CTID", 10, Kind::Ctid),
    field("private", "PRIVATE", -32, Kind::Private),
    field("hostname", "HOSTNAME", -32, Kind::Unset),
    field("name", "NAME", -32, Kind::Unset),
    field("smart_name", "SMARTNAME", 10, Kind::Ctid),
    field("description", "DESCRIPTION", -32, Kind::Unset),
    field("ostemplate", "OSTEMPLATE", -32, Kind::Unset),
    field("ip", "IP_ADDR", -15, Kind::List),
    field("nameserver", "NAMESERVER", -15, Kind::List),
    field("searchdomain", "SEARCHDOMAIN", -15, Kind::List),
    field("status", "STATUS", -9, Kind::Status),
    field("numproc", "NPROC", 10, Kind::Ubc),
];

const DEFAULT_FIELDS: &str = "ctid,numproc,status,ip,hostname";

fn pad(text: &str, width: i32) -> String {
    let w = width.unsigned_abs() as usize;
    if width < 0 {
        format!("{text:<w$}")
    } else {
        format!("{text:>w$}")
    }
}

fn cut(text: String, width: i32) -> String {
    text.chars().take(width.unsigned_abs() as usize).collect()
}

/// One vzlist cell. vzlist cuts strings to the column width except in the last column (and
/// with `-t`).
fn cell(field: &Field, ctid: u32, ct: &Container, status: &str, last: bool) -> String {
    match field.kind {
        Kind::Ctid => format!("{ctid:>10}"),
        Kind::Status => format!("{status:<9}"),
        Kind::Ubc => format!("{:>10}", "-"),
        Kind::Private | Kind::Unset | Kind::List => {
            let value = match field.kind {
                Kind::Private => ct.private.display().to_string(),
                _ => "-".to_string(),
            };
            let s = pad(&value, field.width);
            if last { s } else { cut(s, field.width) }
        }
    }
}

/// Columns joined by one space, trailing blanks trimmed, as vzlist prints a line.
pub fn vzlist_line(cells: &[String]) -> String {
    cells.join(" ").trim_end().to_string()
}

fn vzlist_usage() {
    println!(
        "Usage:\tvzlist [-a | -S] [-H] [-o field[,field...] | -1] [CTID [CTID ...]]
\tvzlist -L | --list

Options (the simulated subset of vzlist 4.x):
\t-a, --all\t\tlist all containers
\t-S, --stopped\t\tlist stopped containers
\t-H, --no-header\t\tsuppress columns header
\t-t, --no-trim\t\tdo not trim long values
\t-o, --output\t\toutput only specified fields
\t-1\t\t\tsynonym for -H -octid
\t-L, --list\t\tget possible field names"
    );
}

struct ListOpts {
    all: bool,
    stopped: bool,
    header: bool,
    trim: bool,
    fields: Option<String>,
    ctids: Vec<u32>,
}

enum Parsed {
    Opts(ListOpts),
    Exit(u8),
}

/// vzlist's getopt_long "HtSanjN:h:d:o:s:Le1", messages as glibc prints them.
fn parse_vzlist(args: &[String]) -> Parsed {
    const WITH_ARG: &str = "Nhdos";
    let long: &[(&str, char)] = &[
        ("no-header", 'H'),
        ("no-trim", 't'),
        ("stopped", 'S'),
        ("all", 'a'),
        ("name", 'n'),
        ("json", 'j'),
        ("name_filter", 'N'),
        ("hostname", 'h'),
        ("description", 'd'),
        ("output", 'o'),
        ("sort", 's'),
        ("list", 'L'),
        ("help", 'e'),
    ];
    let mut opts = ListOpts {
        all: false,
        stopped: false,
        header: true,
        trim: true,
        fields: None,
        ctids: Vec::new(),
    };
    let mut positional = Vec::new();
    let mut parsed: Vec<(char, Option<String>)> = Vec::new();
    let mut i = 0;
    let usage_error = |msg: String| {
        eprintln!("{msg}");
        vzlist_usage();
        Parsed::Exit(1)
    };
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(&(_, c)) = long.iter().find(|(n, _)| *n == name) else {
                return usage_error(format!("vzlist: unrecognized option '{arg}'"));
            };
            if WITH_ARG.contains(c) {
                let value = match inline {
                    Some(v) => v,
                    None if i < args.len() => {
                        i += 1;
                        args[i - 1].clone()
                    }
                    None => {
                        return usage_error(format!(
                            "vzlist: option '--{name}' requires an argument"
                        ));
                    }
                };
                parsed.push((c, Some(value)));
            } else if inline.is_some() {
                return usage_error(format!(
                    "vzlist: option '--{name}' doesn't allow an argument"
                ));
            } else {
                parsed.push((c, None));
            }
            continue;
        }
        let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) else {
            positional.push(arg.clone());
            continue;
        };
        for (at, c) in shorts.char_indices() {
            if !"HtSanjNhdosLe1".contains(c) || c == 'e' {
                return usage_error(format!("vzlist: invalid option -- '{c}'"));
            }
            if WITH_ARG.contains(c) {
                let attached = &shorts[at + c.len_utf8()..];
                let value = if !attached.is_empty() {
                    attached.to_string()
                } else if i < args.len() {
                    i += 1;
                    args[i - 1].clone()
                } else {
                    return usage_error(format!("vzlist: option requires an argument -- '{c}'"));
                };
                parsed.push((c, Some(value)));
                break;
            }
            parsed.push((c, None));
        }
    }
    for (c, value) in parsed {
        match c {
            'H' => opts.header = false,
            't' => opts.trim = false,
            'S' => opts.stopped = true,
            'a' => opts.all = true,
            'o' => opts.fields = value,
            '1' => {
                opts.fields = Some("veid".to_string());
                opts.header = false;
            }
            'L' => {
                for f in FIELDS {
                    println!("{:<15} {:<15}", f.name, f.header);
                }
                return Parsed::Exit(0);
            }
            // vzlist 4.x has no case for --help: it falls to the usage error.
            'e' => {
                vzlist_usage();
                return Parsed::Exit(1);
            }
            other => {
                eprintln!("vzlist (converge sim): option -{other} is not simulated");
                return Parsed::Exit(1);
            }
        }
    }
    for word in positional {
        match parse_ctid(&word).filter(|id| *id != 0) {
            Some(id) => opts.ctids.push(id),
            None => {
                eprintln!("CT ID {word} is invalid.");
                return Parsed::Exit(1);
            }
        }
    }
    opts.ctids.sort_unstable();
    Parsed::Opts(opts)
}

fn field_order(spec: &str) -> Result<Vec<Field>, String> {
    spec.split(',')
        .map(|name| {
            FIELDS
                .iter()
                .find(|f| f.name == name)
                .copied()
                .ok_or_else(|| format!("Unknown field: {name}"))
        })
        .collect()
}

/// `vzlist ARGS…` (without the program name): the exit code.
pub fn vzlist(args: &[String]) -> u8 {
    let opts = match parse_vzlist(args) {
        Parsed::Opts(o) => o,
        Parsed::Exit(code) => return code,
    };
    let fields = match field_order(opts.fields.as_deref().unwrap_or(DEFAULT_FIELDS)) {
        Ok(f) => f,
        Err(message) => {
            eprintln!("{message}");
            return 1;
        }
    };
    let store = match Store::open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vzlist (converge sim): {e}");
            return 1;
        }
    };
    let all = {
        let lock = store.lock(LockMode::Shared);
        match lock.and_then(|_lock| store.load_all()) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("vzlist (converge sim): {e}");
                return 1;
            }
        }
    };
    let now = now_ms();
    // Without -a (or ids, or -S) vzlist only asks the kernel, which knows running containers.
    let every = opts.all || opts.stopped || !opts.ctids.is_empty();
    let mut rows = Vec::new();
    for (ctid, mut ct) in all {
        if !opts.ctids.is_empty() && opts.ctids.binary_search(&ctid).is_err() {
            continue;
        }
        ct.settle(now);
        if !every && !ct.is_running() {
            continue;
        }
        let status = list_status(&ct, Area::probe(&ct.private));
        rows.push((ctid, ct, status));
    }
    if rows.is_empty() {
        eprintln!("Container(s) not found");
        // vzlist 4.x: not an error unless ids were asked for (its bug #2149).
        return if opts.ctids.is_empty() { 0 } else { 1 };
    }
    if opts.header {
        let cells: Vec<String> = fields.iter().map(|f| pad(f.header, f.width)).collect();
        println!("{}", vzlist_line(&cells));
    }
    for (ctid, ct, status) in rows {
        let Some(status) = status else { continue };
        if opts.stopped && status == "running" {
            continue;
        }
        let cells: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(n, f)| cell(f, ctid, &ct, status, !opts.trim || n + 1 == fields.len()))
            .collect();
        println!("{}", vzlist_line(&cells));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use converge_core::observe::ContainerState;
    use converge_core::observe::vz::{parse_status, parse_vzlist};

    const POPULATED: Area = Area {
        exists: true,
        populated: true,
    };
    const EMPTY: Area = Area {
        exists: true,
        populated: false,
    };
    const MISSING: Area = Area {
        exists: false,
        populated: false,
    };

    fn ct() -> Container {
        Container::new(PathBuf::from("/srv/ct101"))
    }

    fn texts(msgs: &[Msg]) -> Vec<String> {
        msgs.iter()
            .map(|m| match m {
                Msg::Out(t) => format!("out: {t}"),
                Msg::Err(t) => format!("err: {t}"),
            })
            .collect()
    }

    #[test]
    fn status_lines_and_the_parser_agree() {
        let mut c = ct();
        let cases = [
            (
                None,
                None,
                "CTID 101 deleted unmounted down",
                ContainerState::Absent,
            ),
            (
                Some((false, Run::Down)),
                Some(POPULATED),
                "CTID 101 exist unmounted down",
                ContainerState::Stopped,
            ),
            (
                Some((true, Run::Down)),
                Some(POPULATED),
                "CTID 101 exist mounted down",
                ContainerState::Mounted,
            ),
            (
                Some((true, Run::Starting { until: 5 })),
                Some(POPULATED),
                "CTID 101 exist mounted down",
                ContainerState::Mounted,
            ),
            (
                Some((true, Run::Running)),
                Some(POPULATED),
                "CTID 101 exist mounted running",
                ContainerState::Running,
            ),
            (
                Some((
                    true,
                    Run::Stopping {
                        until: 5,
                        unmount: true,
                    },
                )),
                Some(POPULATED),
                "CTID 101 exist mounted running",
                ContainerState::Running,
            ),
            (
                Some((false, Run::Down)),
                Some(MISSING),
                "CTID 101 deleted unmounted down",
                ContainerState::Absent,
            ),
        ];
        for (state, area, line, parsed) in cases {
            let record = state.map(|(mounted, run)| {
                c.mounted = mounted;
                c.run = run;
                c.clone()
            });
            let got = status_line(101, record.as_ref(), area);
            assert_eq!(got, line);
            let s = parse_status(&format!("{got}\n")).unwrap();
            assert_eq!(s.state(), parsed, "{line}");
        }
    }

    #[test]
    fn vzlist_lines_and_the_parser_agree() {
        let mut c = ct();
        let mut lines = String::new();
        for (ctid, mounted, run, area) in [
            (101, true, Run::Running, POPULATED),
            (102, false, Run::Down, POPULATED),
            (103, true, Run::Down, POPULATED),
            (104, false, Run::Down, MISSING),
        ] {
            c.mounted = mounted;
            c.run = run;
            if let Some(status) = list_status(&c, area) {
                let fields = field_order("ctid,status").unwrap();
                let cells: Vec<String> = fields
                    .iter()
                    .enumerate()
                    .map(|(n, f)| cell(f, ctid, &c, status, n == 1))
                    .collect();
                lines.push_str(&vzlist_line(&cells));
                lines.push('\n');
            }
        }
        assert_eq!(
            lines,
            "       101 running\n       102 stopped\n       103 mounted\n"
        );
        let m = parse_vzlist(&lines).unwrap();
        assert_eq!(m["101"], ContainerState::Running);
        assert_eq!(m["102"], ContainerState::Stopped);
        assert_eq!(m["103"], ContainerState::Mounted);
        assert!(!m.contains_key("104"));
    }

    #[test]
    fn vzlist_header_and_cutting() {
        let fields = field_order(DEFAULT_FIELDS).unwrap();
        let header: Vec<String> = fields.iter().map(|f| pad(f.header, f.width)).collect();
        assert_eq!(
            vzlist_line(&header),
            "      CTID      NPROC STATUS    IP_ADDR         HOSTNAME"
        );
        let mut c = ct();
        c.private = PathBuf::from("/a/very/long/private/area/path/of/more/than/32");
        let fields = field_order("private,ctid").unwrap();
        let cells: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(n, f)| cell(f, 7, &c, "stopped", n == 1))
            .collect();
        assert_eq!(
            vzlist_line(&cells),
            "/a/very/long/private/area/path/o          7"
        );
        assert_eq!(
            field_order("ctid,bogus").unwrap_err(),
            "Unknown field: bogus"
        );
    }

    #[test]
    fn start_then_running() {
        let mut c = ct();
        let (code, msgs, then) = start(&mut c, POPULATED, 1000, StartStop::default());
        assert_eq!(code, 0);
        assert_eq!(then, Then::Nothing);
        assert_eq!(
            texts(&msgs),
            [
                "out: Starting container...",
                "out: Container is mounted",
                "out: Setting CPU units: 1000",
                "out: Container start in progress...",
            ]
        );
        assert_eq!(c.run, Run::Running);
        assert!(c.mounted);
        let (code, msgs, _) = start(&mut c, POPULATED, 1001, StartStop::default());
        assert_eq!(code, code::VE_RUNNING);
        assert_eq!(texts(&msgs), ["err: Container is already running"]);
    }

    #[test]
    fn start_checks_the_private_area_first() {
        let mut c = ct();
        c.run = Run::Running;
        c.mounted = true;
        let (code, msgs, _) = start(&mut c, MISSING, 0, StartStop::default());
        assert_eq!(code, code::FS_NOPRVT);
        assert_eq!(
            texts(&msgs),
            ["err: Container private area /srv/ct101 does not exist"]
        );
    }

    #[test]
    fn start_fails_on_an_empty_private_area_or_on_request() {
        for (fail, area) in [(false, EMPTY), (true, POPULATED)] {
            let mut c = ct();
            c.fail_start = fail;
            let (code, msgs, _) = start(&mut c, area, 0, StartStop::default());
            assert_eq!(code, code::FS_BAD_TMPL);
            assert_eq!(
                texts(&msgs),
                [
                    "out: Starting container...",
                    "out: Container is mounted",
                    "out: Setting CPU units: 1000",
                    "err: Unable to start init, probably incorrect template",
                    "err: Container start failed",
                    "out: Container is unmounted",
                ]
            );
            assert_eq!((c.mounted, c.run), (false, Run::Down));
        }
    }

    #[test]
    fn start_delay_is_time_based_and_not_postponed_by_retries() {
        let mut c = ct();
        c.start_delay_ms = 300;
        start(&mut c, POPULATED, 1000, StartStop::default());
        assert_eq!(c.run, Run::Starting { until: 1300 });
        c.settle(1299);
        assert!(!c.is_running());
        let (code, msgs, _) = start(&mut c, POPULATED, 1200, StartStop::default());
        assert_eq!(code, 0);
        // Mounted but down: vzctl unmounts before starting again.
        assert_eq!(texts(&msgs)[1], "out: Container is unmounted");
        assert_eq!(c.run, Run::Starting { until: 1300 });
        c.settle(1300);
        assert_eq!(c.run, Run::Running);
    }

    #[test]
    fn start_wait_reports_the_deadline() {
        let mut c = ct();
        c.start_delay_ms = 50;
        let opts = StartStop {
            wait: true,
            ..StartStop::default()
        };
        let (_, msgs, then) = start(&mut c, POPULATED, 10, opts);
        assert_eq!(then, Then::WaitUntil(60));
        assert_eq!(
            texts(&msgs).last().unwrap(),
            "out: Container start in progress, waiting ..."
        );
    }

    #[test]
    fn stop_messages_and_delay() {
        let mut c = ct();
        c.mounted = true;
        c.run = Run::Running;
        let (code, msgs) = stop(&mut c, 0, StartStop::default(), false);
        assert_eq!(code, 0);
        assert_eq!(
            texts(&msgs),
            [
                "out: Stopping container ...",
                "out: Container was stopped",
                "out: Container is unmounted",
            ]
        );
        assert_eq!((c.mounted, c.run), (false, Run::Down));

        let (code, msgs) = stop(&mut c, 0, StartStop::default(), false);
        assert_eq!(code, 0);
        assert_eq!(
            texts(&msgs),
            ["err: Unable to stop: container is not running"]
        );

        c.mounted = true;
        c.run = Run::Running;
        c.stop_delay_ms = 200;
        let (_, msgs) = stop(&mut c, 100, StartStop::default(), false);
        assert_eq!(texts(&msgs), ["out: Stopping container ..."]);
        assert!(c.is_running());
        stop(&mut c, 250, StartStop::default(), false);
        assert_eq!(
            c.run,
            Run::Stopping {
                until: 300,
                unmount: true
            }
        );
        c.settle(300);
        assert_eq!((c.mounted, c.run), (false, Run::Down));
    }

    #[test]
    fn stop_fast_and_skip_umount() {
        let mut c = ct();
        c.mounted = true;
        c.run = Run::Running;
        c.stop_delay_ms = 10_000;
        let opts = StartStop {
            fast: true,
            skip_umount: true,
            ..StartStop::default()
        };
        let (_, msgs) = stop(&mut c, 0, opts, false);
        assert_eq!(
            texts(&msgs),
            ["out: Killing container ...", "out: Container was stopped"]
        );
        assert_eq!((c.mounted, c.run), (true, Run::Down));
    }

    #[test]
    fn stop_cancels_a_pending_start() {
        let mut c = ct();
        c.mounted = true;
        c.run = Run::Starting { until: 100 };
        let (code, _) = stop(&mut c, 50, StartStop::default(), false);
        assert_eq!(code, 0);
        c.settle(200);
        assert_eq!((c.mounted, c.run), (true, Run::Down));
    }

    #[test]
    fn mount_umount_destroy() {
        let mut c = ct();
        assert_eq!(umount(&mut c).0, code::FS_NOT_MOUNTED);
        assert_eq!(mount(&mut c, MISSING).0, code::FS_NOPRVT);
        assert_eq!(
            texts(&mount(&mut c, POPULATED).1),
            ["out: Container is mounted"]
        );
        assert_eq!(
            texts(&mount(&mut c, POPULATED).1),
            ["err: Container is already mounted"]
        );
        assert_eq!(destroy(&c).0, code::FS_MOUNTED);
        c.run = Run::Running;
        assert_eq!(umount(&mut c).0, code::VE_RUNNING);
        assert_eq!(destroy(&c).0, code::VE_RUNNING);
        c.run = Run::Down;
        assert_eq!(texts(&umount(&mut c).1), ["out: Container is unmounted"]);
        let (code, msgs) = destroy(&c);
        assert_eq!(code, 0);
        assert_eq!(
            texts(&msgs),
            [
                "out: Destroying container private area: /srv/ct101",
                "out: Container private area was destroyed",
            ]
        );
    }

    #[test]
    fn exec_codes_and_command_lines() {
        assert_eq!(ExecMode::Exec.exit_code(0), 0);
        assert_eq!(ExecMode::Exec.exit_code(3), code::COMMAND_EXECUTION_ERROR);
        assert_eq!(ExecMode::Exec2.exit_code(3), 3);
        assert_eq!(ExecMode::Exec3.exit_code(31), 31);
        let words: Vec<String> = ["/etc/init.d/S10foo", "start", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(join_command(&words), "/etc/init.d/S10foo start '' ");
    }

    #[test]
    fn ctids() {
        assert_eq!(parse_ctid("101"), Some(101));
        assert_eq!(parse_ctid("0"), Some(0));
        assert_eq!(parse_ctid("2147483644"), Some(2_147_483_644));
        for bad in ["2147483645", "-1", "abc", "101x", ""] {
            assert_eq!(parse_ctid(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_round_trip_and_old_records_default() {
        let mut c = ct();
        c.run = Run::Stopping {
            until: 7,
            unmount: false,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Container>(&text).unwrap(), c);
        let bare: Container = serde_json::from_str(r#"{"private": "/x"}"#).unwrap();
        assert_eq!(bare, Container::new(PathBuf::from("/x")));
    }
}
