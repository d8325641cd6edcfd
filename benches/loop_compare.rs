//! converge beside what people run instead of it: `benches/shell_loop.sh`, the loop an operator
//! writes (or OpenSVC's status does), which asks `drbdadm role`, `drbdadm dstate`, the mount
//! table and `vzctl status` for each service, one after the other, and puts back what is
//! missing. Both run on the same simulated node, in the same run, at 10, 100 and 1,000
//! services, and the bench measures for each:
//!
//! - **process spawns per pass**: every new process (not thread) whose parent is a process of
//!   this bench's tree, from the kernel's process events (the netlink proc connector: a fork
//!   event for each new process, an exec event for each program run). Subshells, `grep`s,
//!   drbdadm's own children and converge's probes are all counted; nothing has to be wrapped.
//! - **CPU time per pass**: user + system of the whole process tree. For a pass that is a
//!   process of its own (a cron'd run of the script, `converge reconcile --once`), from
//!   wait4(2), which adds every descendant that was waited for; and from the cgroup v2
//!   `cpu.stat` of a cgroup made for it, as a cross-check. For the daemon (`converge run`),
//!   whose pass is a resync inside a long-running process, from its cgroup's `cpu.stat` from
//!   the SIGHUP that starts the resync until its CPU time stops growing.
//! - **time from a change to its correction**: one service is broken — its container stopped,
//!   or its whole stack taken down (container stopped, filesystem unmounted, DRBD demoted) —
//!   and the bench polls, without spawning anything, until the container runs again. The
//!   shell loop sleeps `CONVERGE_BENCH_INTERVAL` seconds between passes; the daemon runs with
//!   its defaults (resync every 30 s). Each break comes at a random moment of the corrector's
//!   cycle, to a random service. While the break is made, the corrector's cgroup is frozen,
//!   and only at a moment when none of its children is a program that may hold a simulator's
//!   lock; the time runs from the thaw.
//!
//! The node: per service a DRBD resource (the real drbdadm and drbdmeta, the DRBD simulator;
//! each on a loop device over an 8 MiB sparse file, internal metadata), an ext3 filesystem on
//! it, and a simulated OpenVZ container whose private area is on that filesystem. The same
//! shape as the seed service without its app. Two loop devices per service (the backing disk,
//! and the simulator's device over its data area): 2,000 at 1,000 services.
//!
//! Needs root (loop devices, mounts, a private mount namespace, cgroup v2); says why it skips
//! otherwise. `cargo bench --bench loop_compare`. `CONVERGE_BENCH_SIZES` (default
//! `10,100,1000`), `CONVERGE_BENCH_PASSES` (passes measured per side and size, default 3),
//! `CONVERGE_BENCH_SAMPLES` (breaks per kind, side and size, default 5; 0 skips the latency),
//! `CONVERGE_BENCH_INTERVAL` (the shell loop's sleep, seconds, default 10),
//! `CONVERGE_BENCH_LOGS=DIR` (keep the daemons' logs and the shell loop's output),
//! `CONVERGE_BENCH_REMOVE_LOOPS=1` (afterwards, remove the unbound loop devices made during the
//! run: only when nothing else on the machine is making loop devices — a test that has just
//! asked the kernel for a free one and not yet bound it would lose it).
//!
//! Whatever fails, the run cleans up after itself: processes (their cgroups are killed), mounts
//! (a private mount namespace) and the loop devices it bound. A run killed with SIGKILL cannot:
//! its processes die with it, but the daemon's `drbdsetup events2` child, the cgroup
//! `converge-world-loop-compare…` and the loop devices over `/tmp/loop-compare…/` stay behind,
//! to be removed by hand.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONVERGE: &str = env!("CARGO_BIN_EXE_converge");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/shell_loop.sh");
/// Set for the re-run inside the private mount namespace: the work directory.
const INSIDE: &str = "CONVERGE_BENCH_LOOP_WORK";
/// Each service's backing file: ext3 in its first `FS_KIB`, DRBD's internal metadata after.
const DISK_BYTES: u64 = 8 << 20;
const FS_KIB: u64 = 7 * 1024;
const FIRST_CTID: usize = 1001;
const FIRST_PORT: usize = 7789;
/// A hang guard, not a measure.
const HANG: Duration = Duration::from_secs(1800);
/// The programs an accounted pass runs through [`account_and_exec`]: the simulators, and the
/// modinfo drbdadm falls back to on a node without the DRBD module.
const ACCOUNTED: &[&str] = &["drbdsetup", "vzctl", "vzlist", "modinfo"];
/// For an accounted pass: where the real programs are, and the cgroups their CPU time goes to.
const ACCOUNT_REAL: &str = "CONVERGE_BENCH_LOOP_REAL";
const ACCOUNT_SIM: &str = "CONVERGE_BENCH_LOOP_SIM_CGROUP";
const ACCOUNT_FALLBACK: &str = "CONVERGE_BENCH_LOOP_FALLBACK_CGROUP";
/// Programs in a corrector's cgroup that hold no simulator lock: freezing it while only these
/// run cannot leave the break waiting on a lock the frozen corrector holds.
const LOCK_FREE: &[&str] = &["converge", "sh", "sleep", "grep"];

fn main() {
    let argv0 = PathBuf::from(std::env::args_os().next().unwrap_or_default());
    if let Some(name) = argv0.file_name().and_then(|n| n.to_str())
        && ACCOUNTED.contains(&name)
        && std::env::var_os(ACCOUNT_REAL).is_some()
    {
        account_and_exec(name);
    }
    if let Some(work) = std::env::var_os(INSIDE) {
        inside(Path::new(&work));
        return;
    }
    if !converge_sim::testing::is_root() {
        println!(
            "loop_compare: skipped (needs root: loop devices, mounts, a mount namespace, cgroups)"
        );
        return;
    }
    let mut missing = converge_sim::sandbox::missing_programs();
    for (program, package) in [("grep", "grep"), ("sh", "dash")] {
        if !converge_sim::sandbox::in_path(program) {
            missing.push(format!("{program} (package {package})"));
        }
    }
    if !missing.is_empty() {
        println!(
            "loop_compare: skipped (not installed: {})",
            missing.join(", ")
        );
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("loop-compare")
        .tempdir()
        .expect("tempdir");
    let Some(cgroup) = converge_sim::world::world_cgroup(work.path()) else {
        println!("loop_compare: skipped (no cgroup v2 hierarchy is mounted)");
        return;
    };
    if let Err(e) = fs::create_dir(&cgroup) {
        println!(
            "loop_compare: skipped (cannot make a cgroup at {}: {e})",
            cgroup.display()
        );
        return;
    }
    for file in ["cgroup.freeze", "cgroup.kill", "cpu.stat"] {
        if !cgroup.join(file).exists() {
            let _ = fs::remove_dir(&cgroup);
            println!("loop_compare: skipped (the cgroup has no {file}: Linux 5.14 or later)");
            return;
        }
    }
    let loops_before = highest_loop_index();
    let exe = std::env::current_exe().expect("bench binary");
    let mut inner = Command::new("unshare");
    inner
        .args(["-m", "--propagation", "private"])
        .arg(exe)
        .env(INSIDE, work.path())
        .stdin(Stdio::null());
    // SAFETY: the hook makes one system call (prctl) and allocates nothing.
    unsafe { inner.pre_exec(die_with_parent) };
    let status = inner.status().expect("unshare");
    // What a failed run may leave: processes in the cgroups, and bound loop devices.
    let cgroups = converge_sim::world::remove_world_cgroup(work.path());
    let stacked = converge_sim::sandbox::detach_loops_under(work.path());
    // The kernel keeps a loop device once made, bound or not: 2,000 more after a run at 1,000
    // services, which every later sandbox's private /dev lists. Removing them by index is only
    // safe on a machine where nothing else makes loop devices meanwhile (it once took one a
    // test had just been given), so it is asked for.
    if env_or("CONVERGE_BENCH_REMOVE_LOOPS", 0u8) == 1 {
        let removed = remove_loop_devices_above(loops_before);
        if removed > 0 {
            println!("removed the {removed} loop devices made for this run");
        }
    } else {
        let made = highest_loop_index() - loops_before;
        if made > 0 {
            println!(
                "the run left up to {made} unbound loop devices (CONVERGE_BENCH_REMOVE_LOOPS=1 removes them, on a machine where nothing else makes loop devices)"
            );
        }
    }
    assert!(status.success(), "loop_compare failed");
    assert!(cgroups.is_empty(), "the bench's cgroup: {cgroups:?}");
    if !stacked.is_empty() {
        println!(
            "detached {} simulator loop device(s) left up",
            stacked.len()
        );
    }
}

/// Run as one of [`ACCOUNTED`] in an accounted pass: moves itself into the cgroup that counts
/// that program's CPU time (the simulators', or drbdadm's modinfo fallback's), then becomes the
/// real program (exec: no process is added, so the pass's spawns are unchanged; the program's
/// parent still waits for it, so wait4's total is unchanged too). What this wrapper costs
/// before the move stays with the pass: measured beside it.
fn account_and_exec(name: &str) -> ! {
    let (cgroup, real) = if name == "modinfo" {
        (
            std::env::var_os(ACCOUNT_FALLBACK),
            PathBuf::from("/usr/sbin/modinfo"),
        )
    } else {
        (
            std::env::var_os(ACCOUNT_SIM),
            PathBuf::from(std::env::var_os(ACCOUNT_REAL).unwrap_or_default())
                .join(format!("{name}.sim")),
        )
    };
    if let Some(cgroup) = cgroup {
        let _ = fs::write(Path::new(&cgroup).join("cgroup.procs"), "0");
    }
    // The simulators pick their tool from argv[0]'s name; `NAME.sim` gives their processes a
    // name of their own in the exec events.
    let err = Command::new(&real)
        .arg0(name)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!("{name}: cannot run {}: {err}", real.display());
    std::process::exit(127)
}

/// The highest loop device index the kernel has now, or -1.
fn highest_loop_index() -> i64 {
    fs::read_dir("/sys/block")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("loop")?
                        .parse::<i64>()
                        .ok()
                })
                .max()
                .unwrap_or(-1)
        })
        .unwrap_or(-1)
}

/// Removes the unbound loop devices above index `before` (made during this run). One that is
/// bound or open (someone else's by now) is refused by the kernel and stays.
fn remove_loop_devices_above(before: i64) -> usize {
    const LOOP_CTL_REMOVE: libc::c_ulong = 0x4C81;
    let Ok(control) = fs::File::open("/dev/loop-control") else {
        return 0;
    };
    let mut removed = 0;
    for index in (before + 1)..=highest_loop_index() {
        let bound = Path::new(&format!("/sys/block/loop{index}/loop/backing_file")).exists();
        if bound {
            continue;
        }
        // SAFETY: LOOP_CTL_REMOVE takes the device index as its integer argument.
        let rc = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_REMOVE, index) };
        if rc >= 0 {
            removed += 1;
        }
    }
    removed
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// What the run is asked to do.
struct Options {
    sizes: Vec<usize>,
    passes: usize,
    samples: usize,
    interval: u64,
    logs: Option<PathBuf>,
}

impl Options {
    fn from_env() -> Options {
        let sizes = std::env::var("CONVERGE_BENCH_SIZES")
            .unwrap_or_else(|_| "10,100,1000".into())
            .split(',')
            .map(|s| s.trim().parse().expect("CONVERGE_BENCH_SIZES: numbers"))
            .collect();
        Options {
            sizes,
            passes: env_or("CONVERGE_BENCH_PASSES", 3usize).max(1),
            samples: env_or("CONVERGE_BENCH_SAMPLES", 5),
            interval: env_or("CONVERGE_BENCH_INTERVAL", 10),
            logs: std::env::var_os("CONVERGE_BENCH_LOGS").map(PathBuf::from),
        }
    }
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// A progress line: these runs take long.
fn say(text: &str) {
    println!("[{} load {}] {text}", clock(), load_average());
}

/// The kernel's process events (the netlink proc connector), for the processes of this
/// bench's tree: forks of new processes and the programs they run.
mod procwatch {
    use super::*;

    const NETLINK_CONNECTOR: libc::c_int = 11;
    const CN_IDX_PROC: u32 = 1;
    const CN_VAL_PROC: u32 = 1;
    const PROC_CN_MCAST_LISTEN: u32 = 1;
    const PROC_EVENT_FORK: u32 = 0x1;
    const PROC_EVENT_EXEC: u32 = 0x2;
    const PROC_EVENT_EXIT: u32 = 0x8000_0000;
    const NLMSG_HDRLEN: usize = 16;
    const CN_MSG_LEN: usize = 20;
    const NLMSG_DONE: u16 = 3;

    #[derive(Default)]
    struct Log {
        /// (monotonic ns, pid) of each new process forked by one of the tree.
        forks: Vec<(u64, i32)>,
        /// (monotonic ns, comm) of each exec in the tree.
        execs: Vec<(u64, String)>,
        /// Receive buffer overruns: events lost.
        overruns: u64,
    }

    pub struct Watch {
        log: Arc<Mutex<Log>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    /// Spawns and execs in a window.
    #[derive(Debug, Clone, Default)]
    pub struct Counted {
        pub spawns: usize,
        pub execs: BTreeMap<String, usize>,
    }

    fn setsockopt<T>(
        fd: &OwnedFd,
        level: libc::c_int,
        name: libc::c_int,
        value: &T,
    ) -> io::Result<()> {
        // SAFETY: `value` points at a T of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    }

    fn i32_at(buf: &[u8], at: usize) -> Option<i32> {
        Some(i32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    }

    fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_ne_bytes(buf.get(at..at + 8)?.try_into().ok()?))
    }

    impl Watch {
        /// Listens from now on; the tree is this process and what it starts from now on.
        pub fn start() -> io::Result<Watch> {
            // SAFETY: socket(2) with constant arguments.
            let raw = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    NETLINK_CONNECTOR,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a descriptor just opened and owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // Every process event of the machine comes through here (others' builds too):
            // room for bursts while this thread waits for a core.
            let size: libc::c_int = 64 << 20;
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size)?;
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
            // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter are set below.
            let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            addr.nl_groups = CN_IDX_PROC;
            // SAFETY: `addr` is a sockaddr_nl of the size given.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut msg = Vec::with_capacity(NLMSG_HDRLEN + CN_MSG_LEN + 4);
            msg.extend_from_slice(&((NLMSG_HDRLEN + CN_MSG_LEN + 4) as u32).to_ne_bytes());
            msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
            msg.extend_from_slice(&0u16.to_ne_bytes());
            msg.extend_from_slice(&0u32.to_ne_bytes());
            msg.extend_from_slice(&std::process::id().to_ne_bytes());
            msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
            msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
            msg.extend_from_slice(&0u32.to_ne_bytes());
            msg.extend_from_slice(&0u32.to_ne_bytes());
            msg.extend_from_slice(&4u16.to_ne_bytes());
            msg.extend_from_slice(&0u16.to_ne_bytes());
            msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
            // SAFETY: `msg` is a buffer of the length given.
            let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            let log = Arc::new(Mutex::new(Log::default()));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let log = Arc::clone(&log);
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name("procwatch".into())
                    .spawn(move || listen(&fd, &log, &stop))?
            };
            Ok(Watch {
                log,
                stop,
                thread: Some(thread),
            })
        }

        /// Until every event up to now has been taken in: a marker process is started, and
        /// its fork event comes after every event before it.
        pub fn sync(&self) {
            let before = mono_ns();
            let mut child = Command::new("true")
                .stdin(Stdio::null())
                .spawn()
                .expect("true");
            let marker = i32::try_from(child.id()).unwrap_or(0);
            let _ = child.wait();
            let start = Instant::now();
            loop {
                let seen = self.log.lock().is_ok_and(|log| {
                    log.forks
                        .iter()
                        .rev()
                        .take_while(|(ts, _)| *ts >= before)
                        .any(|(_, pid)| *pid == marker)
                });
                if seen {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "the process events fell behind by more than 30 s"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }

        /// What the tree spawned and ran between two instants (monotonic ns).
        pub fn count(&self, from: u64, to: u64) -> Counted {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let mut counted = Counted {
                spawns: log
                    .forks
                    .iter()
                    .filter(|(ts, _)| (from..=to).contains(ts))
                    .count(),
                ..Counted::default()
            };
            for (_, comm) in log.execs.iter().filter(|(ts, _)| (from..=to).contains(ts)) {
                *counted.execs.entry(comm.clone()).or_default() += 1;
            }
            counted
        }

        pub fn overruns(&self) -> u64 {
            self.log.lock().map(|l| l.overruns).unwrap_or(0)
        }

        /// Drops what was recorded before `before` (monotonic ns): the log of a long run.
        pub fn forget_before(&self, before: u64) {
            if let Ok(mut log) = self.log.lock() {
                log.forks.retain(|(ts, _)| *ts >= before);
                log.execs.retain(|(ts, _)| *ts >= before);
            }
        }
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn listen(fd: &OwnedFd, log: &Mutex<Log>, stop: &AtomicBool) {
        let mut tree: HashSet<i32> = HashSet::new();
        let root = i32::try_from(std::process::id()).unwrap_or(0);
        tree.insert(root);
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::SeqCst) {
            // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => {
                        if let Ok(mut log) = log.lock() {
                            log.overruns += 1;
                        }
                        continue;
                    }
                    _ => return,
                }
            }
            let datagram = &buf[..n as usize];
            let mut at = 0;
            while let Some(len) = u32_at(datagram, at) {
                let len = len as usize;
                if len < NLMSG_HDRLEN || at + len > datagram.len() {
                    break;
                }
                take(&datagram[at + NLMSG_HDRLEN..at + len], &mut tree, log);
                // Netlink messages are 4-byte aligned.
                at += (len + 3) & !3;
            }
        }
    }

    /// One connector message: a `cn_msg` followed by a `proc_event`.
    fn take(msg: &[u8], tree: &mut HashSet<i32>, log: &Mutex<Log>) {
        if u32_at(msg, 0) != Some(CN_IDX_PROC) || u32_at(msg, 4) != Some(CN_VAL_PROC) {
            return;
        }
        let event = &msg[CN_MSG_LEN.min(msg.len())..];
        let (Some(what), Some(ts)) = (u32_at(event, 0), u64_at(event, 8)) else {
            return;
        };
        let data = 16;
        match what {
            PROC_EVENT_FORK => {
                let (Some(parent_tgid), Some(child_pid), Some(child_tgid)) = (
                    i32_at(event, data + 4),
                    i32_at(event, data + 8),
                    i32_at(event, data + 12),
                ) else {
                    return;
                };
                // A thread shares its process's tgid: no new process.
                if child_pid == child_tgid && tree.contains(&parent_tgid) {
                    tree.insert(child_tgid);
                    if let Ok(mut log) = log.lock() {
                        log.forks.push((ts, child_tgid));
                    }
                }
            }
            PROC_EVENT_EXEC => {
                let Some(tgid) = i32_at(event, data + 4) else {
                    return;
                };
                if tree.contains(&tgid) {
                    // Read at once, while the program runs: a name, for the breakdown only
                    // (a process gone already reads as "?").
                    let comm = fs::read_to_string(format!("/proc/{tgid}/comm"))
                        .map(|c| c.trim().to_string())
                        .unwrap_or_else(|_| "?".into());
                    if let Ok(mut log) = log.lock() {
                        log.execs.push((ts, comm));
                    }
                }
            }
            PROC_EVENT_EXIT => {
                let (Some(pid), Some(tgid)) = (i32_at(event, data), i32_at(event, data + 4)) else {
                    return;
                };
                // Its pid may be reused by anyone once it is reaped, which comes after this.
                if pid == tgid {
                    tree.remove(&tgid);
                }
            }
            _ => {}
        }
    }
}

use procwatch::{Counted, Watch};

/// In a child between fork and exec: SIGKILL when this process dies. A bench killed from
/// outside (nothing else can clean up then) must not leave a daemon or a loop running.
fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// cgroup v2 helpers: every measured process runs in a cgroup of its own under the bench's.
mod cg {
    use super::*;

    /// `cpu.stat`'s usage_usec: the CPU time of everything that ran in the cgroup and below.
    pub fn usage(dir: &Path) -> Duration {
        let usec = fs::read_to_string(dir.join("cpu.stat"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        Duration::from_micros(usec)
    }

    /// The processes of the cgroup and of those below it.
    pub fn procs(dir: &Path) -> Vec<i32> {
        let mut all: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    all.extend(procs(&entry.path()));
                }
            }
        }
        all
    }

    fn events_say(dir: &Path, line: &str) -> bool {
        fs::read_to_string(dir.join("cgroup.events"))
            .map(|t| t.lines().any(|l| l == line))
            .unwrap_or(false)
    }

    pub fn freeze(dir: &Path, frozen: bool) {
        fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
            .expect("write cgroup.freeze");
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        let start = Instant::now();
        while !events_say(dir, want) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the cgroup {} did not become {want}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Kills what runs in it and removes it with the cgroups below it.
    pub fn remove(dir: &Path) {
        let _ = fs::write(dir.join("cgroup.kill"), "1");
        let start = Instant::now();
        while events_say(dir, "populated 1") && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        remove_dirs(dir);
    }

    fn remove_dirs(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_dirs(&entry.path());
                }
            }
        }
        let _ = fs::remove_dir(dir);
    }

    /// Makes `cmd` start in cgroup `dir`: the child moves itself there before it execs, so
    /// nothing it starts can be outside.
    pub fn run_in(cmd: &mut Command, dir: &Path) {
        let procs = Arc::new(
            fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .expect("open cgroup.procs"),
        );
        // SAFETY: the hook runs between fork and exec; it makes two system calls (write(2) on a
        // descriptor opened before the fork, prctl(2)) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let n = libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1);
                if n != 1 {
                    return Err(io::Error::last_os_error());
                }
                die_with_parent()
            });
        }
    }
}

/// One service of the simulated node.
#[derive(Debug, Clone)]
struct Svc {
    res: String,
    minor: usize,
    dev: String,
    mnt: PathBuf,
    ctid: usize,
    /// The loop device over the backing file (DRBD's lower disk).
    backing: String,
}

/// The simulated node of N services.
struct Node {
    dir: PathBuf,
    n: usize,
    bin: PathBuf,
    sim_dir: PathBuf,
    config: PathBuf,
    /// The same with `resync: 1h`, for resyncs on SIGHUP only.
    config_quiet: PathBuf,
    list: PathBuf,
    state_dir: PathBuf,
    services: Vec<Svc>,
    cgroup: PathBuf,
    /// The accounting wrappers, named as the programs (links to this bench binary).
    wrap: PathBuf,
    /// The simulators under names of their own (`drbdsetup.sim`), which the wrappers run.
    real: PathBuf,
    /// Where an accounted pass's simulators and modinfo fallback run.
    sim_cell: PathBuf,
    fallback_cell: PathBuf,
}

fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("modinfo"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Node {
    /// The simulators' environment: PATH with their links first, their state directory.
    fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("PATH", converge_sim::sandbox::path_with(&self.bin)),
            ("CONVERGE_SIM_DIR", self.sim_dir.clone().into_os_string()),
            ("CONVERGE_SIM_DRBD_VERSION", "9".into()),
        ]
    }

    /// The same, for an accounted pass: the programs of [`ACCOUNTED`] found first in PATH are
    /// the wrappers, which move themselves into `sim_cell` or `fallback_cell`.
    fn env_accounted(&self) -> Vec<(&'static str, OsString)> {
        let mut env = self.env();
        env[0].1 = converge_sim::sandbox::path_with(&self.wrap);
        env.push((ACCOUNT_REAL, self.real.clone().into_os_string()));
        env.push((ACCOUNT_SIM, self.sim_cell.clone().into_os_string()));
        env.push((
            ACCOUNT_FALLBACK,
            self.fallback_cell.clone().into_os_string(),
        ));
        env
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env()).stdin(Stdio::null());
        cmd
    }

    fn create(dir: &Path, n: usize, host: &str, drbd_conf: &Path, cgroup: &Path) -> Node {
        let bin = dir.join("bin");
        let sim_dir = dir.join("sim");
        let wrap = dir.join("wrap");
        let real = dir.join("real");
        for d in [
            &bin,
            &sim_dir,
            &wrap,
            &real,
            &dir.join("img"),
            &dir.join("mnt"),
        ] {
            fs::create_dir_all(d).expect("node directories");
        }
        let exe = std::env::current_exe().expect("bench binary");
        for tool in converge_sim::TOOLS {
            symlink(CONVERGE, bin.join(tool)).expect("simulator link");
            symlink(CONVERGE, real.join(format!("{tool}.sim"))).expect("simulator link");
        }
        for program in ACCOUNTED {
            symlink(&exe, wrap.join(program)).expect("wrapper link");
        }
        let services: Vec<Svc> = (0..n)
            .map(|k| Svc {
                res: format!("r{k}"),
                minor: k,
                dev: format!("/dev/drbd{k}"),
                mnt: dir.join("mnt").join(k.to_string()),
                ctid: FIRST_CTID + k,
                backing: String::new(),
            })
            .collect();
        let mut node = Node {
            dir: dir.to_path_buf(),
            n,
            bin,
            sim_dir,
            config: dir.join("config.yaml"),
            config_quiet: dir.join("config-quiet.yaml"),
            list: dir.join("services.list"),
            state_dir: dir.join("state"),
            services,
            cgroup: cgroup.to_path_buf(),
            wrap,
            real,
            sim_cell: cgroup.join(format!("n{n}-sim")),
            fallback_cell: cgroup.join(format!("n{n}-modinfo")),
        };
        for cell in [&node.sim_cell, &node.fallback_cell] {
            fs::create_dir(cell).expect("accounting cgroup");
        }
        node.make_disks();
        node.write_drbd_conf(host, drbd_conf);
        for svc in &node.services {
            fs::create_dir_all(&svc.mnt).expect("mount point");
            let private = svc.mnt.join("vz/private").join(svc.ctid.to_string());
            run_ok(
                "define the container",
                node.command(node.bin.join("vzctl"))
                    .arg("sim-create")
                    .arg(svc.ctid.to_string())
                    .arg("--private")
                    .arg(&private),
            );
        }
        node.write_converge_files(host);
        node
    }

    /// Per service: ext3 (with the container's private area) in the first 7 MiB of a sparse
    /// 8 MiB file, a loop device over it, DRBD metadata at its end. Four at a time: most of it
    /// waits on the disk.
    fn make_disks(&mut self) {
        let img = self.dir.join("img");
        let env = self.env();
        let made: Mutex<BTreeMap<usize, String>> = Mutex::new(BTreeMap::new());
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, Ordering::SeqCst);
                        let Some(svc) = self.services.get(k) else {
                            return;
                        };
                        let file = img.join(format!("b{k}.img"));
                        fs::File::create(&file)
                            .and_then(|f| f.set_len(DISK_BYTES))
                            .expect("backing file");
                        let root = img.join(format!("root{k}"));
                        let private = root.join("vz/private").join(svc.ctid.to_string());
                        fs::create_dir_all(private.join("etc")).expect("private area");
                        fs::write(private.join("etc/hostname"), format!("ct{}\n", svc.ctid))
                            .expect("private area");
                        run_ok(
                            "mkfs.ext3",
                            Command::new("mkfs.ext3")
                                .args(["-q", "-F", "-d"])
                                .arg(&root)
                                .arg(&file)
                                .arg(FS_KIB.to_string()),
                        );
                        let _ = fs::remove_dir_all(&root);
                        let backing = run_ok(
                            "losetup",
                            Command::new("losetup")
                                .args(["--find", "--show"])
                                .arg(&file),
                        )
                        .trim()
                        .to_string();
                        // The filesystem ends before the metadata: --force only skips
                        // drbdmeta's question about it.
                        run_ok(
                            "drbdmeta create-md",
                            Command::new("drbdmeta")
                                .envs(env.clone())
                                .arg("--force")
                                .arg(svc.minor.to_string())
                                .args(["v09", &backing, "internal", "create-md", "1"]),
                        );
                        made.lock().expect("lock").insert(k, backing);
                    }
                });
            }
        });
        for (k, backing) in made.into_inner().expect("lock") {
            self.services[k].backing = backing;
        }
    }

    fn write_drbd_conf(&self, host: &str, drbd_conf: &Path) {
        let mut text = String::new();
        for svc in &self.services {
            let port = FIRST_PORT + svc.minor;
            text.push_str(&format!(
                "resource {} {{\n  device {};\n  disk {};\n  meta-disk internal;\n  on {host} {{ node-id 0; address 127.0.0.1:{port}; }}\n  on peer1 {{ node-id 1; address 127.0.0.2:{port}; }}\n}}\n",
                svc.res, svc.dev, svc.backing
            ));
        }
        // In place: the file is bind-mounted on /etc/drbd.conf.
        fs::write(drbd_conf, text).expect("drbd.conf");
    }

    fn write_converge_files(&self, host: &str) {
        let manifests = self.dir.join("manifests");
        fs::create_dir_all(&manifests).expect("manifests");
        let paths = converge_sim::sandbox::NodePaths {
            manifests: &manifests,
            state_dir: &self.state_dir,
            log_dir: &self.dir.join("log"),
            proc_drbd: &self.sim_dir.join("proc_drbd"),
        };
        let config = converge_sim::sandbox::node_config(host, &paths);
        fs::write(&self.config, &config).expect("config");
        fs::write(&self.config_quiet, format!("{config}resync: 1h\n")).expect("config");
        let mut list = String::from("# resource device mount-point ctid\n");
        for (k, svc) in self.services.iter().enumerate() {
            fs::write(
                manifests.join(format!("svc{k}.yaml")),
                format!(
                    "service: svc{k}\nstate: up\nnode: {host}\nresources:\n  drbd#0:\n    res: {}\n  fs#1:\n    dev: {}\n    mnt: {}\n    type: ext3\n  container#0:\n    type: vz\n    ctid: {}\n",
                    svc.res,
                    svc.dev,
                    svc.mnt.display(),
                    svc.ctid
                ),
            )
            .expect("manifest");
            list.push_str(&format!(
                "{} {} {} {}\n",
                svc.res,
                svc.dev,
                svc.mnt.display(),
                svc.ctid
            ));
        }
        fs::write(&self.list, list).expect("list");
    }

    /// Whether service `k` runs: its container is running (which needs its private area, on
    /// the filesystem, which needs DRBD Primary) and its filesystem is in the mount table.
    /// Read from the simulator's record and mountinfo: polling spawns nothing.
    fn runs(&self, k: usize, mountinfo: &str) -> bool {
        let svc = &self.services[k];
        let record = self.sim_dir.join("vz").join(format!("{}.json", svc.ctid));
        let running = fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| match v["run"]["state"].as_str() {
                Some("running") => true,
                Some("starting") => v["run"]["until"]
                    .as_u64()
                    .is_some_and(|until| until <= now_ms()),
                _ => false,
            });
        let mnt = format!(" {} ", svc.mnt.display());
        running && mountinfo.lines().any(|l| l.contains(&mnt))
    }

    fn all_run(&self) -> usize {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        (0..self.n).filter(|k| self.runs(*k, &mountinfo)).count()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// The end of a log, for a failure's message.
    fn tail(&self, name: &str) -> String {
        let text = fs::read_to_string(self.log(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn converge(&self, config: &Path) -> Command {
        let mut cmd = self.command(CONVERGE);
        cmd.arg("--config").arg(config);
        cmd
    }

    fn new_cell(&self, name: &str) -> PathBuf {
        let cell = self.cgroup.join(format!("n{}-{name}", self.n));
        let _ = fs::create_dir(&cell);
        cell
    }

    /// Brings everything down: the mounts, DRBD (the simulator's loop devices), the backing
    /// loop devices, the files.
    fn teardown(self) {
        for svc in &self.services {
            let _ = Command::new("umount")
                .arg(&svc.mnt)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self
            .command(self.bin.join("drbdsetup"))
            .args(["down", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for svc in &self.services {
            let _ = Command::new("losetup")
                .args(["-d", &svc.backing])
                .stdin(Stdio::null())
                .status();
        }
        cg::remove(&self.sim_cell);
        cg::remove(&self.fallback_cell);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One pass, as measured.
#[derive(Debug, Clone)]
struct Pass {
    /// `None` for the daemon's resync: nothing marks its end but its CPU time, which the
    /// daemon's other threads may move too.
    wall: Option<Duration>,
    /// wait4(2): the process and every descendant it waited for. `None` for the daemon.
    cpu_rusage: Option<Duration>,
    /// The cgroup's cpu.stat.
    cpu_cgroup: Duration,
    counted: Counted,
    /// In an accounted pass: the simulators' CPU time, and drbdadm's modinfo fallback's.
    sim: Duration,
    fallback: Duration,
    /// The daemon's own threads (schedstat), without the programs it ran.
    own: Option<Duration>,
}

fn rusage_cpu(r: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// Runs `cmd` to its end in a cgroup of its own; its CPU time from wait4 and the cgroup, its
/// spawns from the process events. Returns its exit code too.
fn measured(node: &Node, watch: &Watch, mut cmd: Command, name: &str) -> (Pass, i32) {
    let cell = node.new_cell(name);
    cg::run_in(&mut cmd, &cell);
    let log = fs::File::create(node.log(name)).expect("log");
    cmd.stdout(log.try_clone().expect("dup")).stderr(log);
    let sim_before = cg::usage(&node.sim_cell);
    let fallback_before = cg::usage(&node.fallback_cell);
    let t0 = mono_ns();
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn a measured pass");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, writing into the two locals.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        assert!(
            io::Error::last_os_error().raw_os_error() == Some(libc::EINTR),
            "wait4: {}",
            io::Error::last_os_error()
        );
    }
    let wall = started.elapsed();
    let t1 = mono_ns();
    drop(child);
    watch.sync();
    let counted = watch.count(t0, t1);
    // Removed cgroups below (converge's, one per command) hand their time up when they go:
    // give that a moment.
    std::thread::sleep(Duration::from_millis(200));
    let cpu_cgroup = cg::usage(&cell);
    cg::remove(&cell);
    let sim = cg::usage(&node.sim_cell).saturating_sub(sim_before);
    let fallback = cg::usage(&node.fallback_cell).saturating_sub(fallback_before);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (
        Pass {
            wall: Some(wall),
            cpu_rusage: Some(rusage_cpu(&usage)),
            cpu_cgroup,
            counted,
            sim,
            fallback,
            own: None,
        },
        code,
    )
}

/// A corrector running in its cgroup: the daemon or the shell loop.
struct Corrector {
    child: Child,
    cell: PathBuf,
    log: PathBuf,
}

impl Corrector {
    fn start(node: &Node, mut cmd: Command, name: &str) -> Corrector {
        let cell = node.new_cell(name);
        let log = node.log(name);
        let file = fs::File::create(&log).expect("log");
        cg::run_in(&mut cmd, &cell);
        cmd.stdout(file.try_clone().expect("dup")).stderr(file);
        let child = cmd.spawn().expect("start a corrector");
        Corrector { child, cell, log }
    }

    /// Freezes it at a moment when none of its processes can hold a simulator's lock, so the
    /// break cannot wait on it.
    fn freeze_between_commands(&self) {
        let start = Instant::now();
        loop {
            cg::freeze(&self.cell, true);
            let busy = cg::procs(&self.cell).into_iter().find(|pid| {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let events2 = String::from_utf8_lossy(&cmdline).contains("events2");
                !(LOCK_FREE.contains(&comm.trim()) || events2)
            });
            if busy.is_none() {
                return;
            }
            cg::freeze(&self.cell, false);
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "the corrector was never between two commands"
            );
            std::thread::sleep(Duration::from_millis(fastrand::u64(1..20)));
        }
    }

    /// What its log says about service `k` from byte `mark` on: the daemon's JSON lines with
    /// their time since `t0`, the shell loop's lines as they are.
    fn said_about(
        &self,
        node: &Node,
        k: usize,
        mark: u64,
        t0: std::time::SystemTime,
    ) -> Vec<String> {
        let svc = &node.services[k];
        let text = fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(mark as usize..).unwrap_or_default());
        let needles = [
            format!("\"svc{k}\""),
            format!("svc{k}:"),
            format!(" {}:", svc.res),
            format!(" {} ", svc.res),
            format!("container {}:", svc.ctid),
            format!("{}:", svc.mnt.display()),
        ];
        text.lines()
            .filter(|l| needles.iter().any(|n| l.contains(n.as_str())))
            .map(|line| {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    return line.to_string();
                };
                let at = v["timestamp"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                    .map_or("?".to_string(), |t| match t.duration_since(t0) {
                        Ok(after) => format!("+{:.3} s", after.as_secs_f64()),
                        // Written while the thaw was under way, before `t0` was read.
                        Err(e) => format!("-{:.3} s", e.duration().as_secs_f64()),
                    });
                format!(
                    "{at} {} {}",
                    v["resource"].as_str().unwrap_or(""),
                    v["message"].as_str().unwrap_or(line).replace('\n', " / ")
                )
            })
            .take(40)
            .collect()
    }

    fn stop(mut self, keep: Option<&Path>) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cg::remove(&self.cell);
        let _ = self.child.wait();
        if let (Some(dir), Some(name)) = (keep, self.log.file_name()) {
            let _ = fs::create_dir_all(dir);
            let _ = fs::copy(&self.log, dir.join(name));
        }
    }
}

/// How a service is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `vzctl stop`: the container died.
    Container,
    /// `vzctl stop`, `umount`, `drbdadm secondary`: the whole stack is gone.
    Stack,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::Container => "container stopped",
            Fault::Stack => "stack down (container stopped, unmounted, DRBD Secondary)",
        }
    }
}

fn inject(node: &Node, k: usize, fault: Fault) {
    let svc = &node.services[k];
    run_ok(
        "vzctl stop",
        node.command(node.bin.join("vzctl"))
            .arg("stop")
            .arg(svc.ctid.to_string()),
    );
    if fault == Fault::Stack {
        run_ok("umount", Command::new("umount").arg(&svc.mnt));
        run_ok(
            "drbdadm secondary",
            node.command("drbdadm").args(["secondary", &svc.res]),
        );
    }
}

/// `samples` breaks of kind `fault`, each after a random pause within `period` (the
/// corrector's cycle), to a random service; the time from each break until it is corrected.
fn latencies(
    node: &Node,
    corrector: &Corrector,
    fault: Fault,
    samples: usize,
    period: Duration,
) -> Vec<Duration> {
    let mut measured = Vec::new();
    for i in 0..samples {
        let pause = Duration::from_millis(500)
            + Duration::from_millis(fastrand::u64(0..period.as_millis().max(1) as u64));
        std::thread::sleep(pause);
        let k = fastrand::usize(0..node.n);
        corrector.freeze_between_commands();
        inject(node, k, fault);
        let mark = fs::metadata(&corrector.log).map_or(0, |m| m.len());
        cg::freeze(&corrector.cell, false);
        let t0 = Instant::now();
        let t0_wall = std::time::SystemTime::now();
        loop {
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            if node.runs(k, &mountinfo) {
                break;
            }
            assert!(
                t0.elapsed() < HANG,
                "service {k} not corrected after {:?} ({})",
                t0.elapsed(),
                fault.describe()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = t0.elapsed();
        println!(
            "    break {}/{samples}: service {k}, after a pause of {:.1} s: corrected in {}",
            i + 1,
            pause.as_secs_f64(),
            secs(took)
        );
        for line in corrector.said_about(node, k, mark, t0_wall) {
            println!("      {line}");
        }
        measured.push(took);
    }
    measured
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.1} s")
    }
}

fn cpu_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn median_usize(mut v: Vec<usize>) -> usize {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// What one side did at one size.
#[derive(Debug, Default)]
struct Side {
    passes: Vec<Pass>,
    /// One more pass, with the simulators and modinfo run through the accounting wrappers.
    accounted: Option<Pass>,
    container: Vec<Duration>,
    stack: Vec<Duration>,
}

impl Side {
    fn spawns(&self) -> usize {
        median_usize(self.passes.iter().map(|p| p.counted.spawns).collect())
    }

    fn cpu(&self) -> Duration {
        median(
            self.passes
                .iter()
                .map(|p| p.cpu_rusage.unwrap_or(p.cpu_cgroup))
                .collect(),
        )
    }

    fn cpu_cgroup(&self) -> Duration {
        median(self.passes.iter().map(|p| p.cpu_cgroup).collect())
    }

    /// The daemon's own threads in a resync, median.
    fn own(&self) -> Option<Duration> {
        let own: Vec<Duration> = self.passes.iter().filter_map(|p| p.own).collect();
        (!own.is_empty()).then(|| median(own))
    }

    fn wall(&self) -> Option<Duration> {
        let walls: Vec<Duration> = self.passes.iter().filter_map(|p| p.wall).collect();
        (!walls.is_empty()).then(|| median(walls))
    }

    /// The programs run in a pass (its median in count), by name.
    fn programs(&self) -> String {
        let Some(pass) = self
            .passes
            .iter()
            .find(|p| p.counted.spawns == self.spawns())
        else {
            return String::new();
        };
        pass.counted
            .execs
            .iter()
            .map(|(comm, n)| format!("{comm} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn latency(v: &[Duration]) -> String {
        if v.is_empty() {
            return "—".into();
        }
        let mut sorted = v.to_vec();
        sorted.sort();
        format!(
            "{} ({}–{})",
            secs(median(sorted.clone())),
            secs(sorted[0]),
            secs(sorted[sorted.len() - 1])
        )
    }
}

/// What one simulated tool costs per call at this size: wait4's CPU, mean of `times` calls.
fn per_call(node: &Node, program: &Path, args: &[&str], times: usize) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..times {
        let mut cmd = node.command(program);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().expect("calibration call");
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: as in `measured`.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child.
        unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        drop(child);
        total += rusage_cpu(&usage);
    }
    total / u32::try_from(times).unwrap_or(1)
}

/// Per-call costs, at this size, of what each side runs in a pass.
#[derive(Debug, Default)]
struct Calibration {
    drbdadm_role: Duration,
    /// `sh -c "modinfo -F version drbd"`, which drbdadm runs twice per call on this machine:
    /// without the DRBD module there is no /proc/drbd to read its version from.
    modinfo_fallback: Duration,
    drbdsetup_role: Duration,
    drbdsetup_dstate: Duration,
    vzctl_status: Duration,
    drbdsetup_status_json: Duration,
    vzlist: Duration,
}

fn calibrate(node: &Node) -> Calibration {
    let k = node.n / 2;
    let svc = &node.services[k];
    let drbdsetup = node.bin.join("drbdsetup");
    let vzctl = node.bin.join("vzctl");
    let minor = svc.minor.to_string();
    let ctid = svc.ctid.to_string();
    let status_times = if node.n >= 1000 { 3 } else { 10 };
    Calibration {
        drbdadm_role: per_call(node, Path::new("drbdadm"), &["role", &svc.res], 10),
        modinfo_fallback: per_call(
            node,
            Path::new("sh"),
            &["-c", "modinfo -F version drbd"],
            10,
        ),
        drbdsetup_role: per_call(node, &drbdsetup, &["role", &svc.res], 10),
        drbdsetup_dstate: per_call(node, &drbdsetup, &["dstate", &minor], 10),
        vzctl_status: per_call(node, &vzctl, &["status", &ctid], 10),
        drbdsetup_status_json: per_call(node, &drbdsetup, &["status", "--json"], status_times),
        vzlist: per_call(
            node,
            &node.bin.join("vzlist"),
            &["-a", "-H", "-o", "ctid,status"],
            status_times,
        ),
    }
}

/// Everything measured at one size.
struct Sized {
    n: usize,
    once: Side,
    daemon: Side,
    shell: Side,
    calibration: Calibration,
    load: Vec<String>,
}

impl Sized {
    /// The processes of drbdadm's version fallback in one shell pass: a sh and a modinfo, twice
    /// per drbdadm, two drbdadm per service.
    fn shell_modinfo_spawns(&self) -> usize {
        8 * self.n
    }

    /// Of a pass of `side`: the CPU time that is neither the simulators' nor the modinfo
    /// fallback's. Those two come from its accounted pass, where the wrappers move each such
    /// program into a cgroup of its own before it execs: everything the program costs, its
    /// exec included, is counted there as it would be without the wrapper, and the wrapper's
    /// own cost stays out of both. The rest is then the median pass less the two.
    fn rest(side: &Side) -> Option<Duration> {
        let acc = side.accounted.as_ref()?;
        Some(
            side.cpu()
                .saturating_sub(acc.sim)
                .saturating_sub(acc.fallback),
        )
    }
}

/// CPU time of every live thread of process `pid` (schedstat, ns). A thread that ends in a
/// window takes its share with it: the figure is then low.
fn threads_cpu(pid: u32) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| {
            fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    Duration::from_nanos(ns)
}

fn resync_pass(corrector: &Corrector, watch: &Watch) -> Pass {
    let pid = corrector.child.id();
    let own_before = threads_cpu(pid);
    let before = cg::usage(&corrector.cell);
    let t0 = mono_ns();
    let started = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(corrector.child.id() as libc::pid_t, libc::SIGHUP) };
    let mut last = before;
    let mut last_change = Instant::now();
    let mut changed = false;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = cg::usage(&corrector.cell);
        if now != last {
            last = now;
            last_change = Instant::now();
            changed = true;
        }
        if changed && last_change.elapsed() > Duration::from_secs(1) {
            break;
        }
        assert!(
            started.elapsed() < HANG,
            "the resync never ended (CPU kept growing, or never grew)"
        );
    }
    let t1 = mono_ns();
    let own = threads_cpu(pid).saturating_sub(own_before);
    watch.sync();
    Pass {
        wall: None,
        cpu_rusage: None,
        cpu_cgroup: last.saturating_sub(before),
        counted: watch.count(t0, t1),
        sim: Duration::ZERO,
        fallback: Duration::ZERO,
        own: Some(own),
    }
}

/// Until nothing in cgroup `cell` has used CPU for `quiet`: the daemon's start-up work is over.
fn wait_quiet(cell: &Path, quiet: Duration) {
    let start = Instant::now();
    let mut last = cg::usage(cell);
    let mut since = Instant::now();
    while since.elapsed() < quiet {
        assert!(start.elapsed() < HANG, "the daemon never went quiet");
        std::thread::sleep(Duration::from_millis(100));
        let now = cg::usage(cell);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many services the daemon's view says are converged.
fn converged_in_view(state_dir: &Path) -> usize {
    converge_node::controller::daemon::read_view(state_dir).map_or(0, |view| {
        view.services
            .iter()
            .filter(|s| s.result == converge_node::controller::daemon::ServiceResult::Converged)
            .count()
    })
}

fn run_size(
    work: &Path,
    n: usize,
    host: &str,
    drbd_conf: &Path,
    cgroup: &Path,
    opts: &Options,
    watch: &Watch,
) -> Sized {
    let mut load = vec![load_average()];
    say(&format!("{n} services: making the disks and the manifests"));
    let node = Node::create(&work.join(format!("n{n}")), n, host, drbd_conf, cgroup);
    let keep = opts.logs.as_ref().map(|d| d.join(format!("n{n}")));

    // Set up by hand, one thing after the other: converge's eight reconciles at a time queue
    // on the simulator's lock (and drbdadm gives each drbdsetup call 5 s), and while a device
    // is not mounted the simulated `drbdsetup status` looks for its users through every
    // process's open files, once per device and observation.
    say(&format!(
        "{n} services: drbdadm up all, primary all; mount; vzctl start"
    ));
    for verb in ["up", "primary"] {
        run_ok(
            &format!("drbdadm {verb} all"),
            node.command("drbdadm").args([verb, "all"]),
        );
    }
    for svc in &node.services {
        run_ok(
            "mount",
            Command::new("mount")
                .args(["-t", "ext3", &svc.dev])
                .arg(&svc.mnt),
        );
        run_ok(
            "vzctl start",
            node.command(node.bin.join("vzctl"))
                .arg("start")
                .arg(svc.ctid.to_string()),
        );
    }
    assert_eq!(node.all_run(), n, "not every service runs after the set-up");
    let calibration = calibrate(&node);

    let mut once = Side::default();
    for i in 0..opts.passes {
        let mut cmd = node.converge(&node.config);
        cmd.args(["reconcile", "--once"]);
        let (pass, code) = measured(&node, watch, cmd, &format!("once-{i}"));
        assert_eq!(
            code,
            0,
            "reconcile --once on a converged node:\n{}",
            node.tail(&format!("once-{i}"))
        );
        say(&format!(
            "  converge reconcile --once: {} spawns, CPU {} (cgroup {}), {}",
            pass.counted.spawns,
            cpu_ms(pass.cpu_rusage.unwrap_or_default()),
            cpu_ms(pass.cpu_cgroup),
            secs(pass.wall.unwrap_or_default())
        ));
        once.passes.push(pass);
    }
    {
        let mut cmd = node.converge(&node.config);
        cmd.envs(node.env_accounted()).args(["reconcile", "--once"]);
        let (pass, code) = measured(&node, watch, cmd, "once-accounted");
        assert_eq!(code, 0, "reconcile --once, accounted");
        say(&format!(
            "  converge reconcile --once, accounted (wrappers' cost included): CPU {}, of it the simulators {}",
            cpu_ms(pass.cpu_rusage.unwrap_or_default()),
            cpu_ms(pass.sim)
        ));
        once.accounted = Some(pass);
    }

    let mut daemon = Side::default();
    {
        let mut cmd = node.converge(&node.config_quiet);
        cmd.arg("run");
        let corrector = Corrector::start(&node, cmd, "daemon-resync");
        wait_until("the daemon to converge", HANG, || {
            converged_in_view(&node.state_dir) == n
        });
        wait_quiet(&corrector.cell, Duration::from_secs(3));
        for _ in 0..opts.passes {
            let pass = resync_pass(&corrector, watch);
            say(&format!(
                "  converge run, resync (SIGHUP): {} spawns, CPU {}, of it its own threads {}",
                pass.counted.spawns,
                cpu_ms(pass.cpu_cgroup),
                cpu_ms(pass.own.unwrap_or_default()),
            ));
            daemon.passes.push(pass);
        }
        corrector.stop(keep.as_deref());
    }
    if opts.samples > 0 {
        let mut cmd = node.converge(&node.config);
        // JSON: each line with its time and service, to show where a correction's time went.
        cmd.args(["run", "--log-format", "json", "--verbose"]);
        let corrector = Corrector::start(&node, cmd, "daemon");
        wait_until("the daemon to converge", HANG, || {
            converged_in_view(&node.state_dir) == n
        });
        wait_quiet(&corrector.cell, Duration::from_secs(3));
        let resync = Duration::from_secs(30);
        for fault in [Fault::Container, Fault::Stack] {
            say(&format!(
                "  converge run (resync 30 s): {}",
                fault.describe()
            ));
            let got = latencies(&node, &corrector, fault, opts.samples, resync);
            match fault {
                Fault::Container => daemon.container = got,
                Fault::Stack => daemon.stack = got,
            }
        }
        corrector.stop(keep.as_deref());
    }
    load.push(load_average());

    let mut shell = Side::default();
    for i in 0..opts.passes {
        let mut cmd = node.command("sh");
        cmd.arg(SCRIPT).arg(&node.list).arg("once");
        let (pass, code) = measured(&node, watch, cmd, &format!("shell-{i}"));
        assert_eq!(
            code,
            0,
            "the shell loop's pass:\n{}",
            node.tail(&format!("shell-{i}"))
        );
        say(&format!(
            "  shell loop, one pass: {} spawns, CPU {} (cgroup {}), {}",
            pass.counted.spawns,
            cpu_ms(pass.cpu_rusage.unwrap_or_default()),
            cpu_ms(pass.cpu_cgroup),
            secs(pass.wall.unwrap_or_default())
        ));
        shell.passes.push(pass);
    }
    {
        let mut cmd = node.command("sh");
        cmd.envs(node.env_accounted())
            .arg(SCRIPT)
            .arg(&node.list)
            .arg("once");
        let (pass, code) = measured(&node, watch, cmd, "shell-accounted");
        assert_eq!(code, 0, "the shell loop's pass, accounted");
        say(&format!(
            "  shell loop, accounted pass (wrappers' cost included): CPU {}, of it the simulators {}, modinfo {}",
            cpu_ms(pass.cpu_rusage.unwrap_or_default()),
            cpu_ms(pass.sim),
            cpu_ms(pass.fallback)
        ));
        shell.accounted = Some(pass);
    }
    assert_eq!(
        node.all_run(),
        n,
        "a pass of the shell loop broke something"
    );
    if opts.samples > 0 {
        let mut cmd = node.command("sh");
        cmd.arg(SCRIPT)
            .arg(&node.list)
            .arg(opts.interval.to_string());
        let corrector = Corrector::start(&node, cmd, "shell-loop");
        let pass = shell.wall().unwrap_or_default();
        let period = Duration::from_secs(opts.interval) + pass;
        for fault in [Fault::Container, Fault::Stack] {
            say(&format!(
                "  shell loop (sleep {} s, a pass {}): {}",
                opts.interval,
                secs(pass),
                fault.describe()
            ));
            let got = latencies(&node, &corrector, fault, opts.samples, period);
            match fault {
                Fault::Container => shell.container = got,
                Fault::Stack => shell.stack = got,
            }
        }
        corrector.stop(keep.as_deref());
    }
    load.push(load_average());
    assert_eq!(node.all_run(), n, "not every service runs at the end");
    say(&format!("{n} services: tearing down"));
    node.teardown();
    watch.forget_before(mono_ns());
    Sized {
        n,
        once,
        daemon,
        shell,
        calibration,
        load,
    }
}

/// A private /dev with room for every loop device the run makes: the sandbox's, plus nodes
/// for two loop devices per service above the highest the kernel has now.
fn make_dev(work: &Path, largest: usize) {
    converge_sim::sandbox::private_dev(work).unwrap_or_else(|e| panic!("{e}"));
    let max_part: u32 = fs::read_to_string("/sys/module/loop/parameters/max_part")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(
        max_part, 0,
        "loop devices with partitions (max_part) are not supported by this bench"
    );
    let top = highest_loop_index().max(0) as u32 + 2 * largest as u32 + 256;
    for index in 0..=top {
        let node = PathBuf::from(format!("/dev/loop{index}"));
        if node.exists() {
            continue;
        }
        let path = std::ffi::CString::new(node.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mknod(2) with a NUL-terminated path.
        let rc = unsafe {
            libc::mknod(
                path.as_ptr(),
                libc::S_IFBLK | 0o660,
                libc::makedev(7, index),
            )
        };
        assert!(
            rc == 0,
            "mknod {}: {}",
            node.display(),
            io::Error::last_os_error()
        );
    }
}

fn inside(work: &Path) {
    let opts = Options::from_env();
    let cgroup = converge_sim::world::world_cgroup(work).expect("the bench's cgroup");
    let largest = opts.sizes.iter().copied().max().unwrap_or(0);
    make_dev(work, largest);
    assert!(
        Path::new("/etc/drbd.conf").exists(),
        "/etc/drbd.conf does not exist: install drbd-utils"
    );
    let drbd_conf = work.join("drbd.conf");
    fs::write(&drbd_conf, "").expect("drbd.conf");
    run_ok(
        "bind drbd.conf",
        Command::new("mount")
            .arg("--bind")
            .arg(&drbd_conf)
            .arg("/etc/drbd.conf"),
    );
    let host = run_ok("node name", Command::new("uname").arg("-n"))
        .trim()
        .to_string();
    let watch = Watch::start().expect("the proc connector (CONFIG_PROC_EVENTS)");
    say(&format!(
        "sizes {:?}, {} passes and {} breaks of each kind per side and size; the shell loop sleeps {} s",
        opts.sizes, opts.passes, opts.samples, opts.interval
    ));
    let mut results = Vec::new();
    for &n in &opts.sizes {
        results.push(run_size(work, n, &host, &drbd_conf, &cgroup, &opts, &watch));
    }
    let overruns = watch.overruns();
    report(&results, &opts);
    assert_eq!(
        overruns, 0,
        "process events were lost ({overruns} receive buffer overruns): the spawn counts are not exact"
    );
}

fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        "—".into()
    } else {
        let r = a / b;
        if r >= 10.0 {
            format!("{r:.0}×")
        } else {
            format!("{r:.1}×")
        }
    }
}

fn report(results: &[Sized], opts: &Options) {
    println!(
        "\nPer pass (median of {} passes; CPU = user + system of the whole process tree):",
        opts.passes
    );
    println!(
        "| services | side | spawns | CPU (wait4) | CPU (cgroup) | wall | container stopped → runs, median (min–max) | stack down → runs, median (min–max) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in results {
        let rows: [(&str, &Side); 3] = [
            ("shell loop, one pass", &r.shell),
            ("converge run, one resync", &r.daemon),
            ("converge reconcile --once", &r.once),
        ];
        for (name, side) in rows {
            let rusage = side
                .passes
                .first()
                .and_then(|p| p.cpu_rusage)
                .map_or("—".to_string(), |_| cpu_ms(side.cpu()));
            println!(
                "| {} | {name} | {} | {rusage} | {} | {} | {} | {} |",
                r.n,
                side.spawns(),
                cpu_ms(side.cpu_cgroup()),
                side.wall().map_or("—".to_string(), secs),
                if std::ptr::eq(side, &r.once) {
                    "—".to_string()
                } else {
                    Side::latency(&side.container)
                },
                if std::ptr::eq(side, &r.once) {
                    "—".to_string()
                } else {
                    Side::latency(&side.stack)
                },
            );
        }
    }
    println!("\nRatios, shell loop ÷ converge, as measured:");
    println!(
        "| services | spawns ÷ resync | CPU ÷ resync | spawns ÷ reconcile --once | CPU ÷ reconcile --once |"
    );
    println!("|---|---|---|---|---|");
    for r in results {
        let shell_cpu = r.shell.cpu().as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {} |",
            r.n,
            ratio(r.shell.spawns() as f64, r.daemon.spawns() as f64),
            ratio(shell_cpu, r.daemon.cpu_cgroup().as_secs_f64()),
            ratio(r.shell.spawns() as f64, r.once.spawns() as f64),
            ratio(shell_cpu, r.once.cpu().as_secs_f64()),
        );
    }
    println!(
        "\nWhere a pass's CPU time goes: the simulators' and drbdadm's modinfo fallback's share \
         from one more pass of each, run with those programs moved into cgroups of their own (exec \
         wrappers); the rest is the median pass less those; the daemon's own threads from \
         schedstat:"
    );
    println!(
        "| services | shell: pass | simulators | modinfo | the rest | reconcile --once: pass | simulators | the rest | resync: pass | converge's threads | the programs it ran |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let (Some(shell), Some(once)) = (&r.shell.accounted, &r.once.accounted) else {
            continue;
        };
        let own = r.daemon.own().unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.n,
            cpu_ms(r.shell.cpu()),
            cpu_ms(shell.sim),
            cpu_ms(shell.fallback),
            cpu_ms(Sized::rest(&r.shell).unwrap_or_default()),
            cpu_ms(r.once.cpu()),
            cpu_ms(once.sim),
            cpu_ms(Sized::rest(&r.once).unwrap_or_default()),
            cpu_ms(r.daemon.cpu_cgroup()),
            cpu_ms(own),
            cpu_ms(r.daemon.cpu_cgroup().saturating_sub(own)),
        );
    }
    println!(
        "\nRatios without what this machine adds (the simulators' CPU; drbdadm's modinfo \
         fallback: its modinfo's CPU, and its 8 processes per service, which a node with the DRBD \
         module does not run):"
    );
    println!(
        "| services | shell spawns | spawns ÷ resync | CPU: shell's rest ÷ converge's threads (resync) | CPU: shell's rest ÷ reconcile --once's rest |"
    );
    println!("|---|---|---|---|---|");
    for r in results {
        let (Some(shell_rest), Some(once_rest)) = (Sized::rest(&r.shell), Sized::rest(&r.once))
        else {
            continue;
        };
        let spawns = r.shell.spawns().saturating_sub(r.shell_modinfo_spawns());
        println!(
            "| {} | {spawns} | {} | {} | {} |",
            r.n,
            ratio(spawns as f64, r.daemon.spawns() as f64),
            ratio(
                shell_rest.as_secs_f64(),
                r.daemon.own().unwrap_or_default().as_secs_f64()
            ),
            ratio(shell_rest.as_secs_f64(), once_rest.as_secs_f64()),
        );
    }
    println!(
        "\nPrograms run in a pass (exec events, by name; `?`: gone before its name was read):"
    );
    for r in results {
        println!("  {} services:", r.n);
        println!("    shell loop: {}", r.shell.programs());
        println!("    converge run, resync: {}", r.daemon.programs());
        println!("    converge reconcile --once: {}", r.once.programs());
    }
    println!(
        "\nWhat one call costs at each size, run alone (CPU, wait4, mean; the simulators are the \
         converge binary). Alone, a short call costs more than inside a busy pass: these show how \
         the costs grow with the number of services, not a pass's share:"
    );
    println!(
        "| services | drbdadm role | sh -c modinfo (twice per drbdadm here) | sim drbdsetup role | sim drbdsetup dstate | sim vzctl status | sim drbdsetup status --json | sim vzlist |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in results {
        let c = &r.calibration;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.n,
            cpu_ms(c.drbdadm_role),
            cpu_ms(c.modinfo_fallback),
            cpu_ms(c.drbdsetup_role),
            cpu_ms(c.drbdsetup_dstate),
            cpu_ms(c.vzctl_status),
            cpu_ms(c.drbdsetup_status_json),
            cpu_ms(c.vzlist),
        );
    }
    println!(
        "\nThe shell loop sleeps {} s between passes; the daemon resyncs every 30 s (its default).",
        opts.interval
    );
    for r in results {
        println!(
            "Load average (1, 5, 15 min) at {} services: start {}, after converge {}, after the shell loop {}",
            r.n,
            r.load.first().map_or("?", String::as_str),
            r.load.get(1).map_or("?", String::as_str),
            r.load.get(2).map_or("?", String::as_str)
        );
    }
}
