//! Running external programs: by argv (never through a shell), stdin from /dev/null, output
//! captured within bounds, and a timeout after which everything the program started gets
//! SIGTERM, then SIGKILL.
//!
//! Observation and action both go through here, so every program converge runs is bounded in
//! time, in the memory its output takes, and leaves no stray children behind.
//!
//! Each program runs in a place of its own ([`confine`]): its own cgroup when the node has
//! cgroup v2, which nothing it starts can leave (a timeout kills all of it, `setsid` or not);
//! otherwise its own process group, killed with converge. A caller that must find a command
//! again after converge itself was killed (an action, see [`crate::in_progress`]) is told where
//! it runs before it is spawned, and its pid right after ([`Track`]).
//!
//! What a program prints is read as it comes and only its end is kept ([`TAIL_BYTES`] of each
//! stream): a start script printing 400 MB once took converge to 789 MB. A program whose
//! output is parsed keeps all of it up to a cap given by the caller ([`run_parsed`]), beyond
//! which it is an error, never a cut table taken for the whole one. An app script's output is
//! also written, as it comes, to its log file, up to a cap ([`run_logged`]).

pub mod confine;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use confine::{Cell, Mode, Placement};

/// How long a command gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// What is kept in memory of each stream of a program: its end, where the cause of a failure
/// is. 64 KiB is a thousand lines of a chatty script, far more than the three lines an error
/// message quotes ([`Output::last_line`]) or a reader of the action log wants; the whole of it
/// is in the script's log file.
pub const TAIL_BYTES: usize = 64 * 1024;

/// Bytes read from a pipe at a time: a full pipe (64 KiB on Linux) in one read.
const READ_CHUNK: usize = 64 * 1024;

/// How long the output of a program that ended is still read: a daemonised grandchild may hold
/// the pipes open for ever.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum ExecError {
    #[error("{program} not found (not installed, or not in PATH)")]
    NotFound { program: String },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("waiting for {program} failed: {source}")]
    Wait { program: String, source: io::Error },
    /// Output that is parsed, longer than its cap: refused rather than cut.
    #[error("{program} printed more than {max} bytes: not read")]
    TooMuchOutput { program: String, max: usize },
    #[error("empty command line")]
    Empty,
    /// Its cgroup could not be made: nothing was run.
    #[error("cannot run {program}: cannot make its cgroup: {source}")]
    Confine { program: String, source: io::Error },
    /// The caller could not note where it runs ([`Track::placed`]): nothing was run.
    #[error("not running {program}: {source}")]
    Track { program: String, source: io::Error },
    /// The program (as found in PATH), or a directory on the way to it, could be changed by
    /// someone other than root: nothing was run.
    #[error("{0}")]
    Untrusted(Box<crate::trust::Untrusted>),
}

/// Where `program` is: itself when it names a path (has a `/`), else the first executable file
/// of that name in the directories of `PATH` (`/bin:/usr/bin` when it is unset), as `execvp`
/// looks. `None` when there is none.
pub fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    if program.is_empty() {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&path)
        // An empty entry means the current directory, as execvp reads it.
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                PathBuf::from(".").join(program)
            } else {
                dir.join(program)
            }
        })
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Told where a command runs, by a caller that must be able to find it again after converge
/// was killed (see [`crate::in_progress`]).
pub trait Track: Sync {
    /// Right before the spawn: where the command will run. An error stops the spawn.
    fn placed(&self, placement: &Placement) -> io::Result<()>;
    /// Right after the spawn: its pid (which leads its process group) and its start time in
    /// clock ticks after boot, when it could be read (with the pid, it names the process for
    /// the life of the boot).
    fn spawned(&self, pid: u32, start: Option<u64>);
}

/// What a finished (or killed) program left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The end of what it printed: at most [`TAIL_BYTES`] (or the cap of [`run_parsed`]),
    /// from the start of a line when the beginning was dropped.
    pub stdout: String,
    pub stderr: String,
    /// How many bytes of stdout and stderr were dropped from the front (0: all is there).
    pub stdout_cut: u64,
    pub stderr_cut: u64,
    pub elapsed: Duration,
    /// The timeout hit and converge killed what the program started.
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "exit 4", "killed by signal 9", "timed out after 2s": for error messages.
    pub fn describe_end(&self) -> String {
        if self.timed_out {
            format!(
                "timed out after {}",
                humantime::format_duration(round_ms(self.elapsed))
            )
        } else if let Some(code) = self.code {
            format!("exited {code}")
        } else if let Some(sig) = self.signal {
            format!("killed by signal {sig}")
        } else {
            "ended without status".to_string()
        }
    }

    /// The program's own explanation, for a one-line error: the non-empty lines of stderr
    /// (else stdout) joined with " / ", without known noise (drbd-utils' `modinfo: not found`
    /// on machines without the module, util-linux's "dmesg(1) may have more information").
    pub fn last_line(&self) -> String {
        let useful = |text: &str| -> Vec<String> {
            text.lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.contains("modinfo")
                        && !l.starts_with("dmesg(1) may have more")
                })
                .map(str::to_string)
                .collect()
        };
        let mut lines = useful(&self.stderr);
        if lines.is_empty() {
            lines = useful(&self.stdout);
        }
        // Long outputs are in the logs; the error line keeps the end, where the cause usually is.
        let start = lines.len().saturating_sub(3);
        lines[start..].join(" / ")
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// A program's output written to a file as it comes, stdout and stderr as they arrive, up to
/// a cap; then a line says how much was left out. Writes go straight to the file (each at most
/// one pipe's worth, into the page cache), so nothing of it is held in memory.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    max: u64,
    written: u64,
    dropped: u64,
    error: Option<io::Error>,
}

impl LogFile {
    /// Appends to `file` (positioned where the output is to start) at most `max` bytes of
    /// output.
    pub fn new(file: File, max: u64) -> LogFile {
        LogFile {
            file,
            max,
            written: 0,
            dropped: 0,
            error: None,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let room = usize::try_from(self.max.saturating_sub(self.written)).unwrap_or(usize::MAX);
        let (kept, rest) = bytes.split_at(bytes.len().min(room));
        if self.error.is_none() && !kept.is_empty() {
            // The first error stops the writing: it is reported once, at the end.
            match self.file.write_all(kept) {
                Ok(()) => self.written += kept.len() as u64,
                Err(e) => self.error = Some(e),
            }
        }
        self.dropped += rest.len() as u64;
    }

    /// Says what was left out, if anything; the first write error, if any.
    fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.dropped > 0 {
            let note = format!(
                "\n[converge: the log stops at {} bytes of output; {} more bytes were not \
                 logged]\n",
                self.max, self.dropped
            );
            self.file.write_all(note.as_bytes())?;
        }
        Ok(())
    }
}

/// What [`run_logged`] returns: the program's output, and whether its log could be written.
#[derive(Debug)]
pub struct Logged {
    pub output: Output,
    /// The first error writing the log; what came before it is in the file.
    pub log: io::Result<()>,
}

/// How much of one stream is kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The last bytes: the end is what tells why a program failed.
    Tail(usize),
    /// All of it up to a cap, for a parser: more is counted, not kept.
    Whole(usize),
}

/// One stream as it is read: what is kept of it, and how much there was.
#[derive(Debug)]
struct Captured {
    keep: Keep,
    bytes: Vec<u8>,
    total: u64,
    /// Taken by [`run`]: whatever comes later (a daemonised grandchild still printing) is read
    /// and thrown away, so that it never blocks on a full pipe and never grows converge.
    closed: bool,
}

impl Captured {
    fn new(keep: Keep) -> Captured {
        Captured {
            keep,
            bytes: Vec::new(),
            total: 0,
            closed: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        if self.closed {
            return;
        }
        self.total += chunk.len() as u64;
        match self.keep {
            Keep::Tail(max) => {
                self.bytes.extend_from_slice(chunk);
                // Trimmed in batches: each byte is moved at most once per `max` bytes read, and
                // the buffer never holds more than twice `max` plus one chunk.
                if self.bytes.len() > 2 * max {
                    let excess = self.bytes.len() - max;
                    self.bytes.drain(..excess);
                }
            }
            Keep::Whole(max) => {
                // One byte over the cap is enough to know it was exceeded.
                let room = max.saturating_add(1).saturating_sub(self.bytes.len());
                self.bytes
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
    }

    /// What is kept, as text, and how many bytes were dropped from the front; `None` when a
    /// `Whole` stream went over its cap.
    fn take(&mut self) -> Option<(String, u64)> {
        self.closed = true;
        let mut bytes = std::mem::take(&mut self.bytes);
        match self.keep {
            Keep::Whole(max) if bytes.len() > max => return None,
            Keep::Whole(_) => {}
            Keep::Tail(max) => {
                if bytes.len() > max {
                    bytes.drain(..bytes.len() - max);
                }
                if (bytes.len() as u64) < self.total {
                    // The first line is a piece of one: start at the next whole line.
                    if let Some(newline) = bytes.iter().position(|&b| b == b'\n')
                        && newline + 1 < bytes.len()
                    {
                        bytes.drain(..=newline);
                    }
                }
            }
        }
        let cut = self.total - bytes.len() as u64;
        Some((String::from_utf8_lossy(&bytes).into_owned(), cut))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data that no panic can leave half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `argv` with a timeout, keeping the last [`TAIL_BYTES`] of each stream. A non-zero exit
/// is not an error here: callers judge exit codes.
pub async fn run(argv: &[String], timeout: Duration) -> Result<Output, ExecError> {
    run_with(
        argv,
        timeout,
        Keep::Tail(TAIL_BYTES),
        None,
        None,
        confine::mode(),
    )
    .await
    .map(|logged| logged.output)
}

/// [`run`], telling `track` where the program runs before it is spawned, and its pid after.
pub async fn run_tracked(
    argv: &[String],
    timeout: Duration,
    track: &dyn Track,
) -> Result<Output, ExecError> {
    run_with(
        argv,
        timeout,
        Keep::Tail(TAIL_BYTES),
        None,
        Some(track),
        confine::mode(),
    )
    .await
    .map(|logged| logged.output)
}

/// [`run`] for a program whose stdout is parsed: all of it is kept, up to `max_stdout` bytes;
/// more is [`ExecError::TooMuchOutput`].
pub async fn run_parsed(
    argv: &[String],
    timeout: Duration,
    max_stdout: usize,
) -> Result<Output, ExecError> {
    run_with(
        argv,
        timeout,
        Keep::Whole(max_stdout),
        None,
        None,
        confine::mode(),
    )
    .await
    .map(|logged| logged.output)
}

/// [`run`], also writing everything the program prints to `log`, as it comes; tracked as
/// [`run_tracked`] when `track` is given.
pub async fn run_logged(
    argv: &[String],
    timeout: Duration,
    log: LogFile,
    track: Option<&dyn Track>,
) -> Result<Logged, ExecError> {
    run_with(
        argv,
        timeout,
        Keep::Tail(TAIL_BYTES),
        Some(log),
        track,
        confine::mode(),
    )
    .await
}

/// Runs `argv` confined as `mode` says (the process's mode, except in tests of the other).
async fn run_with(
    argv: &[String],
    timeout: Duration,
    keep_stdout: Keep,
    log: Option<LogFile>,
    track: Option<&dyn Track>,
    mode: &Mode,
) -> Result<Logged, ExecError> {
    let (program, args) = argv.split_first().ok_or(ExecError::Empty)?;
    // Right before each spawn, the file that will run is checked, wherever it is found: root
    // runs it, so whoever could change it, or a directory on the way, could run anything as
    // root. It is then run by the path that was checked (PATH is not searched twice); the
    // program still sees the name it was given as its argv[0].
    let resolved = resolve(program).ok_or_else(|| ExecError::NotFound {
        program: program.clone(),
    })?;
    crate::trust::check(&resolved, "program")
        .map_err(|untrusted| ExecError::Untrusted(Box::new(untrusted)))?;
    let mut command = Command::new(&resolved);
    command
        .arg0(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut cell = Cell::new(mode).map_err(|source| ExecError::Confine {
        program: program.clone(),
        source,
    })?;
    if let Some(track) = track {
        track
            .placed(&cell.placement())
            .map_err(|source| ExecError::Track {
                program: program.clone(),
                source,
            })?;
    }
    cell.prepare(&mut command);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ExecError::NotFound {
            program: program.clone(),
        },
        _ => ExecError::Spawn {
            program: program.clone(),
            source,
        },
    })?;
    // `id()` is `None` only once the child is reaped, which nothing has done yet.
    if let Some(pid) = child.id() {
        cell.spawned(pid);
        if let Some(track) = track {
            let start = i32::try_from(pid)
                .ok()
                .and_then(confine::ProcStat::read)
                .map(|stat| stat.start);
            track.spawned(pid, start);
        }
    }
    let log = Arc::new(Mutex::new(log));
    let stdout = Arc::new(Mutex::new(Captured::new(keep_stdout)));
    let stderr = Arc::new(Mutex::new(Captured::new(Keep::Tail(TAIL_BYTES))));
    let mut readers = Vec::new();
    if let Some(pipe) = child.stdout.take() {
        readers.push(tokio::spawn(pump(
            pipe,
            Arc::clone(&stdout),
            Arc::clone(&log),
        )));
    }
    if let Some(pipe) = child.stderr.take() {
        readers.push(tokio::spawn(pump(
            pipe,
            Arc::clone(&stderr),
            Arc::clone(&log),
        )));
    }
    let wait_err = |source| ExecError::Wait {
        program: program.clone(),
        source,
    };

    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.map_err(wait_err)?, false),
        Err(_) => {
            cell.terminate();
            let exited = tokio::time::timeout(KILL_GRACE, child.wait()).await;
            // Whether or not the command obeyed, what it started that ignores SIGTERM must not
            // outlive the timeout.
            cell.kill();
            let status = match exited {
                Ok(status) => status.map_err(wait_err)?,
                Err(_) => child.wait().await.map_err(wait_err)?,
            };
            (status, true)
        }
    };
    let elapsed = started.elapsed();
    cell.release(timed_out).await;
    // A daemonised grandchild may keep the pipes open: its output is not waited for past the
    // grace. The readers it keeps alive go on draining the pipes, keeping nothing.
    let _ = tokio::time::timeout(DRAIN_GRACE, async {
        for reader in &mut readers {
            let _ = reader.await;
        }
    })
    .await;
    let log = lock(&log).take().map_or(Ok(()), LogFile::finish);
    let (stdout, stdout_cut) = lock(&stdout)
        .take()
        .ok_or_else(|| ExecError::TooMuchOutput {
            program: program.clone(),
            max: match keep_stdout {
                Keep::Whole(max) | Keep::Tail(max) => max,
            },
        })?;
    let (stderr, stderr_cut) = lock(&stderr).take().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    let output = Output {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        stdout_cut,
        stderr_cut,
        elapsed,
        timed_out,
    };
    Ok(Logged { output, log })
}

/// Reads a pipe to its end (or a read error, which leaves what was read so far): what it
/// gives goes to `captured` and to the log, while they are open.
async fn pump<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut pipe: R,
    captured: Arc<Mutex<Captured>>,
    log: Arc<Mutex<Option<LogFile>>>,
) {
    let mut chunk = vec![0; READ_CHUNK];
    loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let bytes = &chunk[..n];
        lock(&captured).push(bytes);
        if let Some(log) = lock(&log).as_mut() {
            log.write(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::Signal;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn captures_output_and_exit_code() {
        let out = run(
            &argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .await
        .expect("sh runs");
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!((out.stdout_cut, out.stderr_cut), (0, 0));
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.last_line(), "err");
        let noisy = Output {
            stderr: "sh: 1: modinfo: not found\nmount: /x: wrong fs type.\n       dmesg(1) may have more information after failed mount system call.\n".into(),
            ..out.clone()
        };
        assert_eq!(noisy.last_line(), "mount: /x: wrong fs type.");
        assert_eq!(out.describe_end(), "exited 3");
        assert!(!out.timed_out);
    }

    #[tokio::test]
    async fn stdin_is_dev_null() {
        let out = run(&argv(&["cat"]), Duration::from_secs(10))
            .await
            .expect("cat runs");
        assert!(out.success());
        assert_eq!(out.stdout, "");
    }

    #[tokio::test]
    async fn missing_program_is_named() {
        let err = run(
            &argv(&["/nonexistent/drbdadm", "role", "data"]),
            Duration::from_secs(1),
        )
        .await
        .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "/nonexistent/drbdadm not found (not installed, or not in PATH)"
        );
    }

    /// The fallback, as a node without a usable cgroup v2 gets it.
    fn fallback() -> Mode {
        Mode::ProcessGroup {
            why: "forced by the test".into(),
        }
    }

    /// The confinements this process can test: the fallback always, cgroups when usable here
    /// (as root on a node with cgroup v2).
    fn modes() -> Vec<Mode> {
        let mut modes = vec![fallback()];
        if confine::mode().is_cgroup() {
            modes.push(confine::mode().clone());
        } else {
            eprintln!(
                "cgroup mode not tested here: {}",
                confine::mode().describe()
            );
        }
        modes
    }

    async fn run_in(mode: &Mode, args: &[&str], timeout: Duration) -> Output {
        run_with(
            &argv(args),
            timeout,
            Keep::Tail(TAIL_BYTES),
            None,
            None,
            mode,
        )
        .await
        .expect("runs")
        .output
    }

    /// Alive: not gone, and not a zombie waiting for someone to read its status.
    fn alive(pid: i32) -> bool {
        confine::pid_alive(pid)
    }

    fn read_pid(path: &std::path::Path) -> i32 {
        std::fs::read_to_string(path)
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// Waits (bounded: a hang guard, not a measure) until `pid` is gone; whether it is.
    async fn gone(pid: i32) -> bool {
        for _ in 0..200 {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn regression_timeout_kills_the_whole_process_group() {
        for mode in modes() {
            let dir = tempfile::tempdir().expect("tempdir");
            let pid_file = dir.path().join("grandchild.pid");
            let script = format!("sleep 60 & echo $! > {}; sleep 30", pid_file.display());
            let out = run_in(&mode, &["sh", "-c", &script], Duration::from_millis(300)).await;
            assert!(out.timed_out);
            assert_eq!(out.signal, Some(Signal::TERM.as_raw()));
            assert!(out.describe_end().starts_with("timed out after"));
            assert!(
                gone(read_pid(&pid_file)).await,
                "{mode:?}: a child of the timed-out command outlived the timeout"
            );
        }
    }

    /// Regression: only app starts and stops were checked before they ran; an app's check,
    /// a probe or a program the config names ran as root whoever could change it.
    #[tokio::test]
    async fn regression_an_untrusted_program_is_never_spawned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let program = dir.path().join("prog");
        std::fs::write(&program, format!("#!/bin/sh\ntouch {}\n", marker.display()))
            .expect("write");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let line = argv(&[&program.display().to_string()]);
        let err = run(&line, Duration::from_secs(5))
            .await
            .expect_err("world-writable");
        assert!(matches!(err, ExecError::Untrusted(_)), "{err}");
        assert!(err.to_string().contains("refusing program"), "{err}");
        assert!(!marker.exists(), "it ran");
        // The same file made private runs.
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let out = run(&line, Duration::from_secs(5)).await.expect("runs");
        assert!(out.success() && marker.exists());
    }

    #[test]
    fn programs_are_found_as_execvp_finds_them() {
        assert_eq!(
            resolve("./x"),
            Some(PathBuf::from("./x")),
            "a path is itself"
        );
        assert_eq!(resolve(""), None);
        assert_eq!(resolve("converge-no-such-program"), None);
        let sh = resolve("sh").expect("sh in PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
    }

    #[tokio::test]
    async fn a_program_found_in_path_keeps_its_name_as_argv0() {
        let out = run(&argv(&["sh", "-c", "echo $0"]), Duration::from_secs(5))
            .await
            .expect("runs");
        assert_eq!(out.stdout.trim(), "sh");
    }

    #[tokio::test]
    async fn regression_a_setsid_grandchild_is_killed_by_the_timeout() {
        // A daemon's first step, setsid, takes it out of the process group the timeout used to
        // kill: it lived on. In its own cgroup, it cannot leave.
        let mode = confine::mode();
        if !mode.is_cgroup() {
            eprintln!("skipping: needs cgroup v2 (root): {}", mode.describe());
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("daemon.pid");
        let script = format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 60' & sleep 30",
            pid_file.display()
        );
        let out = run_in(mode, &["sh", "-c", &script], Duration::from_millis(500)).await;
        assert!(out.timed_out);
        let pid = read_pid(&pid_file);
        let escaped = !gone(pid).await;
        if escaped {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("pid"),
                Signal::KILL,
            );
        }
        assert!(!escaped, "the setsid grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn regression_a_member_ignoring_sigterm_is_killed_even_when_the_leader_obeys() {
        for mode in modes() {
            let dir = tempfile::tempdir().expect("tempdir");
            let pid_file = dir.path().join("stubborn.pid");
            let script = format!(
                "(trap '' TERM; echo $$ >/dev/null; exec sleep 77) & echo $! > {}; sleep 100",
                pid_file.display()
            );
            let out = run_in(&mode, &["sh", "-c", &script], Duration::from_millis(300)).await;
            assert!(out.timed_out);
            assert!(
                gone(read_pid(&pid_file)).await,
                "{mode:?}: the SIGTERM-ignoring member survived the timeout"
            );
        }
    }

    #[tokio::test]
    async fn sigterm_ignored_means_sigkill_after_the_grace() {
        for mode in modes() {
            let out = run_in(
                &mode,
                &["sh", "-c", "trap '' TERM; sleep 60"],
                Duration::from_millis(200),
            )
            .await;
            assert!(out.timed_out);
            assert_eq!(out.signal, Some(Signal::KILL.as_raw()), "{mode:?}");
        }
    }

    #[tokio::test]
    async fn a_command_runs_in_a_cgroup_of_its_own_removed_after_it() {
        let mode = confine::mode();
        let Mode::Cgroup {
            hierarchy, cgroup, ..
        } = mode
        else {
            eprintln!("skipping: needs cgroup v2 (root): {}", mode.describe());
            return;
        };
        let out = run_in(mode, &["cat", "/proc/self/cgroup"], Duration::from_secs(10)).await;
        let own = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a v2 line")
            .to_string();
        let name = own.rsplit('/').next().expect("a name");
        assert!(
            name.starts_with(&format!("{}{}-", confine::CELL_PREFIX, std::process::id())),
            "{own}"
        );
        assert_eq!(own, format!("{}/{name}", cgroup.trim_end_matches('/')));
        let dir = hierarchy.dir_of(&own).expect("below the mount");
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }

    #[tokio::test]
    async fn a_daemon_a_command_leaves_is_moved_out_of_its_cgroup_not_killed() {
        // An app's start script may start the app's daemon and exit: only a timeout or a stop
        // kills; the daemon lives on where it lived before cgroups were used.
        let mode = confine::mode();
        let Mode::Cgroup { cgroup, .. } = mode else {
            eprintln!("skipping: needs cgroup v2 (root): {}", mode.describe());
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("daemon.pid");
        let script = format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 60' </dev/null >/dev/null 2>&1 & \
             while [ ! -s {0} ]; do sleep 0.01; done",
            pid_file.display()
        );
        let out = run_in(mode, &["sh", "-c", &script], Duration::from_secs(20)).await;
        assert!(out.success(), "{out:?}");
        let pid = read_pid(&pid_file);
        let alive_then = alive(pid);
        let its_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).expect("pid"),
            Signal::KILL,
        );
        assert!(
            alive_then,
            "the daemon was killed with its finished command"
        );
        assert!(
            its_cgroup.lines().any(|l| l == format!("0::{cgroup}")),
            "the daemon is in converge's own cgroup {cgroup}: {its_cgroup}"
        );
    }

    #[test]
    fn in_fallback_a_command_dies_with_converge() {
        // PR_SET_PDEATHSIG is tied to the thread that spawned: a thread that spawns and ends
        // plays converge killed while the command runs.
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("command.pid");
        let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());
        let pid_path = pid_file.clone();
        let spawner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut command = Command::new("sh");
                command.args(["-c", &script]);
                let cell = Cell::new(&fallback()).expect("cell");
                cell.prepare(&mut command);
                let child = command.spawn().expect("spawn");
                // Neither waited for nor killed by converge: only its death can end it.
                std::mem::forget(child);
                std::mem::forget(cell);
                // Running, before "converge" dies.
                for _ in 0..400 {
                    if let Ok(text) = std::fs::read_to_string(&pid_path)
                        && let Ok(pid) = text.trim().parse::<i32>()
                    {
                        return Some(pid);
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                None
            })
        });
        let pid = spawner
            .join()
            .expect("spawner")
            .expect("the command wrote its pid");
        let mut dead = false;
        for _ in 0..200 {
            if !alive(pid) {
                dead = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        if !dead {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("pid"),
                Signal::KILL,
            );
        }
        assert!(dead, "the command outlived the thread that spawned it");
    }

    #[tokio::test]
    async fn regression_a_command_whose_output_reader_is_gone_finishes_its_work() {
        // converge killed with SIGKILL takes the read ends of the command's pipes along: the
        // command, meant to go on for the next converge to wait for, died of SIGPIPE at its
        // next line of output (drbdadm up, half done, ended 141).
        for mode in modes() {
            let dir = tempfile::tempdir().expect("tempdir");
            let go = dir.path().join("go");
            let done = dir.path().join("done");
            let mut command = Command::new("sh");
            command
                .args([
                    "-c",
                    &format!(
                        "while [ ! -e {go} ]; do sleep 0.01; done; echo output; echo more >&2; \
                         touch {done}",
                        go = go.display(),
                        done = done.display()
                    ),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut cell = Cell::new(&mode).expect("cell");
            cell.prepare(&mut command);
            let mut child = command.spawn().expect("spawn");
            cell.spawned(child.id().expect("pid"));
            drop(child.stdout.take());
            drop(child.stderr.take());
            std::fs::write(&go, "").expect("go");
            let status = child.wait().await.expect("wait");
            cell.release(false).await;
            assert!(
                done.exists(),
                "{mode:?}: the command died writing to a pipe nobody reads ({status})"
            );
        }
    }

    /// Notes what it is told, as an in-progress record would.
    #[derive(Default)]
    struct Notes(Mutex<Vec<String>>);

    impl Track for Notes {
        fn placed(&self, placement: &Placement) -> io::Result<()> {
            let line = match placement {
                Placement::Cgroup { cgroup } => {
                    // Made before the spawn, so a record can name it.
                    let exists = confine::hierarchy()
                        .and_then(|h| h.dir_of(cgroup))
                        .is_some_and(|d| d.is_dir());
                    format!("placed cgroup exists={exists}")
                }
                Placement::ProcessGroup => "placed process group".to_string(),
            };
            lock(&self.0).push(line);
            Ok(())
        }

        fn spawned(&self, pid: u32, start: Option<u64>) {
            lock(&self.0).push(format!("spawned {} {}", pid > 0, start.is_some()));
        }
    }

    #[tokio::test]
    async fn a_tracker_hears_where_before_the_spawn_and_the_pid_after() {
        for mode in modes() {
            let notes = Notes::default();
            let logged = run_with(
                &argv(&["true"]),
                Duration::from_secs(10),
                Keep::Tail(TAIL_BYTES),
                None,
                Some(&notes),
                &mode,
            )
            .await
            .expect("runs");
            assert!(logged.output.success());
            let placed = if mode.is_cgroup() {
                "placed cgroup exists=true"
            } else {
                "placed process group"
            };
            assert_eq!(*lock(&notes.0), [placed, "spawned true true"]);
        }
    }

    /// Refuses to let anything run.
    struct Refuse;

    impl Track for Refuse {
        fn placed(&self, _: &Placement) -> io::Result<()> {
            Err(io::Error::other("the record cannot be written"))
        }

        fn spawned(&self, _: u32, _: Option<u64>) {
            panic!("spawned although refused");
        }
    }

    #[tokio::test]
    async fn a_tracker_that_cannot_note_the_command_stops_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let err = run_tracked(
            &argv(&["touch", &marker.to_string_lossy()]),
            Duration::from_secs(10),
            &Refuse,
        )
        .await
        .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "not running touch: the record cannot be written"
        );
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn regression_captured_output_is_a_bounded_tail() {
        // A start script printing 400 MB once took converge to 789 MB: all of it was kept.
        let script = "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo the cause >&2; \
                      head -c 30000000 /dev/zero | tr '\\0' y >&2; printf '\\nthe end\\n' >&2";
        let out = run(&argv(&["sh", "-c", script]), Duration::from_secs(60))
            .await
            .expect("sh runs");
        assert!(out.success());
        assert!(out.stdout.len() <= TAIL_BYTES, "{}", out.stdout.len());
        assert!(out.stderr.len() <= TAIL_BYTES, "{}", out.stderr.len());
        assert_eq!(out.stdout_cut + out.stdout.len() as u64, 50_000_001);
        assert_eq!(out.last_line(), "the end");
        // A cut stream starts at a whole line.
        assert!(out.stderr.starts_with('y') || out.stderr.starts_with("the end"));
    }

    #[tokio::test]
    async fn parsed_output_is_whole_or_refused() {
        let out = run_parsed(
            &argv(&["sh", "-c", "seq 1 1000"]),
            Duration::from_secs(10),
            1 << 20,
        )
        .await
        .expect("whole");
        assert_eq!(out.stdout.lines().count(), 1000);
        assert_eq!(out.stdout_cut, 0);
        let err = run_parsed(
            &argv(&["sh", "-c", "seq 1 100000"]),
            Duration::from_secs(10),
            1000,
        )
        .await
        .expect_err("over the cap");
        assert_eq!(err.to_string(), "sh printed more than 1000 bytes: not read");
    }

    #[tokio::test]
    async fn a_log_gets_the_output_as_it_comes_up_to_its_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let file = File::create(&path).expect("create");
        let logged = run_logged(
            &argv(&["sh", "-c", "echo one; echo two >&2; head -c 5000 /dev/zero"]),
            Duration::from_secs(10),
            LogFile::new(file, 1000),
            None,
        )
        .await
        .expect("sh runs");
        logged.log.expect("logged");
        let log = std::fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&log);
        // The two streams are read apart: in the log, in the order they arrived.
        assert!(
            text.starts_with("one\n") || text.starts_with("two\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\n[converge: the log stops at 1000 bytes of output; 4008 more bytes were not \
                 logged]\n"
            ),
            "{text}"
        );
        assert_eq!(logged.output.stdout.len(), 4 + 5000);
    }

    #[tokio::test]
    async fn a_grandchild_holding_the_pipes_does_not_hold_the_result() {
        let started = Instant::now();
        let out = run(
            &argv(&["sh", "-c", "echo started; (sleep 30; echo late) &"]),
            Duration::from_secs(10),
        )
        .await
        .expect("sh runs");
        assert_eq!(out.stdout, "started\n");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
