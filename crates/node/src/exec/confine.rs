//! Where a command converge starts runs, so that everything it starts can be found and killed.
//!
//! A process group is not enough: a script's child that calls `setsid` (a daemon's usual first
//! step) leaves the group, and survives the timeout's kill of the group; and the group outlives
//! converge, so a converge killed with SIGKILL leaves its command running where the next run
//! cannot see it (it then started the same app a second time, beside the first).
//!
//! - **cgroup v2**, when the node has it and converge may write there (root): every command
//!   runs in a cgroup of its own, `converge-run-PID-SEQ`, made under converge's own cgroup (the
//!   `0::` line of `/proc/self/cgroup`, in the `cgroup2` hierarchy found in
//!   `/proc/self/mountinfo`). Nothing a process does takes it out of its cgroup, so
//!   `cgroup.kill` on a timeout kills all it started, setsid or not, and the cgroup's name
//!   finds the command again after converge was killed. The child moves itself into the cgroup
//!   before it runs the program (see [`Cell::prepare`]): moved from the parent after the
//!   spawn, it could fork first.
//! - **Otherwise**, the process group (as before) plus `PR_SET_PDEATHSIG`: the command is
//!   killed when converge dies. Its children and what leaves the group escape both.
//!
//! When a command ends by itself, what it leaves in its cgroup (a daemon an app's start script
//! started, an LXC monitor) is moved to converge's own cgroup, where it lived before cgroups
//! were used, and the cgroup is removed: only a timeout or a stop kills.
//!
//! In both, SIGPIPE is ignored in the command (as systemd does for services): the read ends of
//! its output pipes die with converge, and a command meant to go on after a kill -9 of converge
//! must not die of its next line of output.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

use converge_core::observe::mountinfo;

/// The prefix of the cgroups converge makes, one per command: `converge-run-PID-SEQ`.
pub const CELL_PREFIX: &str = "converge-run-";

/// How long the processes of a killed cgroup get to be gone before it is removed. SIGKILL is
/// immediate unless a process is stuck in the kernel (I/O on a dead device): past this the
/// cgroup is left for the next converge to remove.
const EMPTY_WAIT: Duration = Duration::from_secs(10);

/// Moving the leftovers of a command out of its cgroup races with their forks: each pass moves
/// what it sees; a process that forks forever is left there (and the cgroup with it).
const MOVE_PASSES: usize = 100;

/// Where a command runs: what a record of it names, to find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// Its own cgroup, by its path in the cgroup v2 hierarchy (`/converge-run-812-3`).
    Cgroup { cgroup: String },
    /// Its own process group, led by the command (its pid is the group's id).
    ProcessGroup,
}

/// The cgroup v2 hierarchy, as mounted here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted (`/sys/fs/cgroup`, `/sys/fs/cgroup/unified` on a hybrid node).
    pub mount: PathBuf,
    /// The cgroup at that mount point (`/` unless a part of the tree was bind-mounted).
    root: String,
}

impl Hierarchy {
    /// The directory of `cgroup` (a path as `/proc/PID/cgroup` prints it), when it lies below
    /// this mount.
    pub fn dir_of(&self, cgroup: &str) -> Option<PathBuf> {
        let below = if self.root == "/" {
            cgroup.strip_prefix('/')?
        } else {
            let rest = cgroup.strip_prefix(self.root.as_str())?;
            if rest.is_empty() {
                rest
            } else {
                rest.strip_prefix('/')?
            }
        };
        // A cgroup path from a record is data: never let it climb out of the hierarchy.
        if below.split('/').any(|part| part == ".." || part == ".") {
            return None;
        }
        Some(if below.is_empty() {
            self.mount.clone()
        } else {
            self.mount.join(below)
        })
    }
}

/// The first `cgroup2` mount of `mountinfo` that holds `cgroup`.
fn find_hierarchy(mountinfo: &str, cgroup: &str) -> Result<Hierarchy, String> {
    let mounts = mountinfo::parse(mountinfo).map_err(|e| format!("mountinfo: {e}"))?;
    let mut seen = false;
    for mount in mounts.iter().filter(|m| m.fstype() == "cgroup2") {
        seen = true;
        let hierarchy = Hierarchy {
            mount: mount.mount_point().to_path_buf(),
            root: mount.root().to_string_lossy().into_owned(),
        };
        if hierarchy.dir_of(cgroup).is_some() {
            return Ok(hierarchy);
        }
    }
    Err(if seen {
        format!("no cgroup2 mount holds converge's cgroup {cgroup}")
    } else {
        "no cgroup2 filesystem is mounted".to_string()
    })
}

/// The cgroup v2 path of this process: the `0::PATH` line of `/proc/self/cgroup`.
fn own_cgroup(proc_self_cgroup: &str) -> Result<String, String> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_string)
        .filter(|path| path.starts_with('/'))
        .ok_or_else(|| "/proc/self/cgroup has no cgroup v2 line (0::PATH)".to_string())
}

/// This process's cgroup v2 hierarchy, when the node has one.
pub fn hierarchy() -> Option<&'static Hierarchy> {
    static HIERARCHY: OnceLock<Option<Hierarchy>> = OnceLock::new();
    HIERARCHY
        .get_or_init(|| locate().ok().map(|(hierarchy, _)| hierarchy))
        .as_ref()
}

/// Reads where cgroup v2 is mounted and which cgroup this process is in.
fn locate() -> Result<(Hierarchy, String), String> {
    let cgroup = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let own = own_cgroup(&cgroup)?;
    // A mount table of thousands of mounts is some hundreds of KB; the observer's cap.
    let mounts = crate::secure::read_input_text(Path::new("/proc/self/mountinfo"), 16 << 20)
        .map_err(|e| e.to_string())?;
    Ok((find_hierarchy(&mounts, &own)?, own))
}

/// How this process confines the commands it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A cgroup per command, under `dir` (converge's own cgroup, `cgroup` in the hierarchy).
    Cgroup {
        hierarchy: Hierarchy,
        cgroup: String,
        dir: PathBuf,
    },
    /// A process group per command, killed when converge dies; `why` cgroup v2 is not used.
    ProcessGroup { why: String },
}

impl Mode {
    /// One line for the log, at the start of `run` and `reconcile --once`.
    pub fn describe(&self) -> String {
        match self {
            Mode::Cgroup { dir, .. } => format!(
                "commands run each in its own cgroup (cgroup v2, under {}): a timeout kills \
                 everything a command started, and a command left running by a killed converge \
                 is found again",
                dir.display()
            ),
            Mode::ProcessGroup { why } => format!(
                "cgroup v2 is not usable ({why}): commands run each in its own process group, \
                 killed with converge (PR_SET_PDEATHSIG); what a command starts outside its \
                 group (setsid) escapes a timeout"
            ),
        }
    }

    pub fn is_cgroup(&self) -> bool {
        matches!(self, Mode::Cgroup { .. })
    }
}

/// How commands are confined in this process: decided once, on first use.
pub fn mode() -> &'static Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    MODE.get_or_init(detect)
}

fn detect() -> Mode {
    match try_cgroup() {
        Ok(mode) => mode,
        Err(why) => Mode::ProcessGroup { why },
    }
}

/// cgroup v2 is usable when converge can make a cgroup under its own, and the kernel can kill
/// one whole (`cgroup.kill`, Linux 5.14).
fn try_cgroup() -> Result<Mode, String> {
    let (hierarchy, cgroup) = locate()?;
    let dir = hierarchy
        .dir_of(&cgroup)
        .ok_or_else(|| format!("converge's cgroup {cgroup} is not below its mount"))?;
    let probe = dir.join(format!("{CELL_PREFIX}{}-0", std::process::id()));
    match fs::create_dir(&probe) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create a cgroup in {}: {e}", dir.display())),
    }
    let kill = probe.join("cgroup.kill").exists();
    let procs = probe.join("cgroup.procs").exists();
    let _ = fs::remove_dir(&probe);
    if !procs {
        return Err(format!("{} has no cgroup.procs", probe.display()));
    }
    if !kill {
        return Err("the kernel has no cgroup.kill (Linux 5.14 or later)".to_string());
    }
    Ok(Mode::Cgroup {
        hierarchy,
        cgroup,
        dir,
    })
}

/// Sequence numbers of the cgroups of this process (0 is the probe's).
static NEXT_CELL: AtomicU64 = AtomicU64::new(1);

/// The place of one command: made before the spawn, released after the command ended.
/// Dropped unreleased (the run was abandoned), it kills what runs there.
#[derive(Debug)]
pub struct Cell {
    inner: Option<Inner>,
    /// The command's pid (its process group), once spawned.
    leader: Option<Pid>,
}

#[derive(Debug)]
enum Inner {
    Cgroup {
        cgroup: String,
        dir: PathBuf,
        /// `cgroup.procs`, opened before the fork: the child writes to it (see `prepare`).
        procs: Arc<OwnedFd>,
    },
    ProcessGroup {
        parent: Pid,
    },
}

impl Cell {
    /// Makes the place of one command, as `mode` says.
    pub fn new(mode: &Mode) -> io::Result<Cell> {
        let inner = match mode {
            Mode::Cgroup { cgroup, dir, .. } => {
                let (name, path) = loop {
                    let name = format!(
                        "{CELL_PREFIX}{}-{}",
                        std::process::id(),
                        NEXT_CELL.fetch_add(1, Ordering::Relaxed)
                    );
                    let path = dir.join(&name);
                    match fs::create_dir(&path) {
                        Ok(()) => break (name, path),
                        // Left by a former process that had this pid: take the next number.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(e),
                    }
                };
                let procs = fs::OpenOptions::new()
                    .write(true)
                    .open(path.join("cgroup.procs"))
                    .inspect_err(|_| {
                        let _ = fs::remove_dir(&path);
                    })?;
                Inner::Cgroup {
                    cgroup: join_cgroup(cgroup, &name),
                    dir: path,
                    procs: Arc::new(OwnedFd::from(procs)),
                }
            }
            Mode::ProcessGroup { .. } => Inner::ProcessGroup {
                parent: rustix::process::getpid(),
            },
        };
        Ok(Cell {
            inner: Some(inner),
            leader: None,
        })
    }

    pub fn placement(&self) -> Placement {
        match &self.inner {
            Some(Inner::Cgroup { cgroup, .. }) => Placement::Cgroup {
                cgroup: cgroup.clone(),
            },
            _ => Placement::ProcessGroup,
        }
    }

    /// Sets `command` up to run here: its own process group, and, in the child between fork
    /// and exec, either the move into the cgroup or the death signal.
    pub fn prepare(&self, command: &mut tokio::process::Command) {
        command.process_group(0);
        let (join, parent) = match &self.inner {
            Some(Inner::Cgroup { procs, .. }) => (Some(Arc::clone(procs)), None),
            Some(Inner::ProcessGroup { parent }) => (None, Some(*parent)),
            None => (None, None),
        };
        let hook = move || -> io::Result<()> {
            // The command's output goes to pipes converge reads. A command that outlives a
            // converge killed with SIGKILL (as it must, to be waited for by the next one) would
            // die of its next write (SIGPIPE) halfway through its work: it sees the write fail
            // instead, as systemd's services do (IgnoreSIGPIPE=yes). An ignored signal stays
            // ignored across exec and in the children.
            // SAFETY: see below; signal(2) is async-signal-safe.
            if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            if let Some(procs) = &join {
                // "0" is the writing process itself: the child, before it runs anything.
                rustix::io::write(procs, b"0")?;
            }
            if let Some(parent) = parent {
                // Sent when the *thread* that spawned the child ends: converge spawns from its
                // runtime's worker threads, which live as long as the process.
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                // The parent may have died before the signal was asked for.
                if rustix::process::getppid() != Some(parent) {
                    return Err(io::Error::from(rustix::io::Errno::SRCH));
                }
            }
            Ok(())
        };
        // SAFETY: the hook runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed. It makes four raw system calls (signal, write on
        // an fd opened before the fork, prctl, getppid), allocates nothing (an `io::Error` from
        // an errno is not boxed) and takes no lock.
        unsafe {
            command.pre_exec(hook);
        }
    }

    /// The command was spawned as `pid` (the leader of its process group).
    pub fn spawned(&mut self, pid: u32) {
        self.leader = i32::try_from(pid).ok().and_then(Pid::from_raw);
    }

    /// A polite end: SIGTERM to the command's group and, in a cgroup, to every process there.
    pub fn terminate(&self) {
        if let Some(leader) = self.leader {
            // ESRCH (already gone) is the expected race and needs no handling.
            let _ = rustix::process::kill_process_group(leader, Signal::TERM);
        }
        if let Some(Inner::Cgroup { dir, .. }) = &self.inner {
            signal_cgroup(dir, Signal::TERM);
        }
    }

    /// The end: `cgroup.kill`, or SIGKILL to the process group.
    pub fn kill(&self) {
        if let Some(leader) = self.leader {
            let _ = rustix::process::kill_process_group(leader, Signal::KILL);
        }
        if let Some(Inner::Cgroup { dir, .. }) = &self.inner
            && let Err(e) = kill_cgroup(dir)
        {
            tracing::warn!("cannot kill cgroup {}: {e}", dir.display());
        }
    }

    /// After the command ended: a killed cgroup is waited for (bounded) and removed; one whose
    /// command ended by itself has what it left moved to converge's own cgroup first.
    pub async fn release(mut self, killed: bool) {
        let Some(Inner::Cgroup { dir, .. }) = self.inner.take() else {
            return;
        };
        if killed {
            let deadline = Instant::now() + EMPTY_WAIT;
            let mut pause = Duration::from_millis(5);
            while populated(&dir) && Instant::now() < deadline {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        } else if let Err(e) = move_out(&dir) {
            tracing::warn!(
                "cannot move what a command left running out of {}: {e}",
                dir.display()
            );
        }
        if let Err(e) = remove(&dir) {
            tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
        }
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        // Abandoned while running (or never spawned): whatever runs there goes.
        if let Some(leader) = self.leader {
            let _ = rustix::process::kill_process_group(leader, Signal::KILL);
        }
        let Inner::Cgroup { dir, .. } = inner else {
            return;
        };
        if fs::remove_dir(&dir).is_ok() {
            return;
        }
        let _ = kill_cgroup(&dir);
        // The killed processes take a moment to be gone; nobody waits for a drop.
        let _ = std::thread::Builder::new()
            .name("converge-cgroup-cleanup".into())
            .spawn(move || {
                wait_empty(&dir, Instant::now() + EMPTY_WAIT);
                let _ = fs::remove_dir(&dir);
            });
    }
}

fn join_cgroup(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The processes in cgroup `dir` (none when it is gone).
pub fn procs(dir: &Path) -> Vec<Pid> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .filter_map(Pid::from_raw)
        .collect()
}

/// Whether a process is in cgroup `dir` (exited ones are not: zombies leave their cgroup).
pub fn populated(dir: &Path) -> bool {
    !procs(dir).is_empty()
}

/// Sends `signal` to every process in cgroup `dir`.
pub fn signal_cgroup(dir: &Path, signal: Signal) {
    for pid in procs(dir) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Kills every process in cgroup `dir` and below, forks in flight included.
pub fn kill_cgroup(dir: &Path) -> io::Result<()> {
    match fs::write(dir.join("cgroup.kill"), b"1") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Waits until cgroup `dir` is empty or `deadline` passes; true when empty.
pub fn wait_empty(dir: &Path, deadline: Instant) -> bool {
    let mut pause = Duration::from_millis(5);
    loop {
        if !populated(dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Moves the processes of cgroup `dir` to its parent: what a command that ended left running.
/// Returns how many were moved.
pub fn move_out(dir: &Path) -> io::Result<usize> {
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::other("a cgroup without a parent"))?
        .join("cgroup.procs");
    let mut moved = 0;
    for _ in 0..MOVE_PASSES {
        let pids = procs(dir);
        if pids.is_empty() {
            return Ok(moved);
        }
        for pid in pids {
            match fs::write(&parent, pid.as_raw_pid().to_string()) {
                Ok(()) => moved += 1,
                // Gone meanwhile.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(moved)
}

/// Removes cgroup `dir` (gone already is fine).
pub fn remove(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// What `/proc/PID/stat` says of a process: its state, process group and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    /// Clock ticks after boot: with the pid, names one process for the life of the boot.
    pub start: u64,
}

impl ProcStat {
    pub fn read(pid: i32) -> Option<ProcStat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        ProcStat::parse(&text)
    }

    /// The fields after the command name, which may hold spaces and parentheses: past the last
    /// `)`.
    fn parse(text: &str) -> Option<ProcStat> {
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is the first after the name; 5 (pgrp) the third; 22 (starttime)
        // the twentieth.
        Some(ProcStat {
            state: fields.first()?.chars().next()?,
            pgrp: fields.get(2)?.parse().ok()?,
            start: fields.get(19)?.parse().ok()?,
        })
    }

    /// Running (a zombie has ended; it waits only for its parent to read its status).
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Whether process `pid` started at `start` still runs.
pub fn alive(pid: i32, start: u64) -> bool {
    ProcStat::read(pid).is_some_and(|stat| stat.start == start && stat.alive())
}

/// The live processes of the process group `pgid` whose leader started at `start`. Once the
/// leader is gone its id may be reused; a group is taken for another's when a process has the
/// leader's pid with another start time, and its members cannot predate the leader.
pub fn group_members(pgid: i32, start: u64) -> Vec<i32> {
    if let Some(leader) = ProcStat::read(pgid)
        && leader.start != start
    {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            ProcStat::read(pid)
                .is_some_and(|stat| stat.pgrp == pgid && stat.start >= start && stat.alive())
        })
        .collect()
}

/// Whether a process with this pid runs (whatever it is).
pub fn pid_alive(pid: i32) -> bool {
    ProcStat::read(pid).is_some_and(|stat| stat.alive())
}

/// The cgroups `converge-run-PID-SEQ` under this process's own whose PID is not a running
/// process: left by a converge that was killed. (A live PID may be a `converge plan` beside
/// this one; a reused one only delays the removal.)
pub fn orphaned_cells() -> Vec<PathBuf> {
    let Mode::Cgroup { dir, .. } = mode() else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let owner = name
                .to_str()
                .and_then(|n| n.strip_prefix(CELL_PREFIX))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<i32>().ok());
            owner.is_some_and(|pid| pid != std::process::id() as i32 && !pid_alive(pid))
        })
        .map(|entry| entry.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn the_hierarchy_is_found_by_its_type_not_its_path() {
        let found = find_hierarchy(HYBRID, "/").expect("found");
        assert_eq!(found.mount, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(
            found.dir_of("/system.slice/converge.service"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/system.slice/converge.service"
            ))
        );
        assert_eq!(
            found.dir_of("/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v1_only = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            find_hierarchy(v1_only, "/"),
            Err("no cgroup2 filesystem is mounted".to_string())
        );
    }

    #[test]
    fn a_bind_mounted_part_holds_only_what_is_below_it() {
        let text = "50 1 0:40 /lxc/ct1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let found = find_hierarchy(text, "/lxc/ct1/init.scope").expect("below");
        assert_eq!(
            found.dir_of("/lxc/ct1/init.scope"),
            Some(PathBuf::from("/sys/fs/cgroup/init.scope"))
        );
        assert_eq!(found.dir_of("/lxc/ct10"), None);
        assert!(find_hierarchy(text, "/other").is_err());
    }

    #[test]
    fn a_cgroup_path_from_a_record_cannot_leave_the_hierarchy() {
        let found = find_hierarchy(HYBRID, "/").expect("found");
        assert_eq!(found.dir_of("/../../etc"), None);
        assert_eq!(found.dir_of("/a/./b"), None);
        assert_eq!(found.dir_of("relative"), None);
    }

    #[test]
    fn own_cgroup_is_the_v2_line() {
        let text = "9:name=systemd:/\n4:memory:/x\n0::/user.slice/session-1.scope\n";
        assert_eq!(
            own_cgroup(text),
            Ok("/user.slice/session-1.scope".to_string())
        );
        assert!(own_cgroup("4:memory:/x\n").is_err());
    }

    #[test]
    fn proc_stat_is_read_past_a_name_with_parentheses() {
        let text = "4242 (a) b (c) S 1 4240 4240 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        assert_eq!(
            ProcStat::parse(text),
            Some(ProcStat {
                state: 'S',
                pgrp: 4240,
                start: 987_654
            })
        );
        let me = ProcStat::read(std::process::id() as i32).expect("own stat");
        assert!(me.alive());
        assert!(alive(std::process::id() as i32, me.start));
        assert!(!alive(std::process::id() as i32, me.start + 1));
    }
}
