//! Running external programs: by argv (never through a shell), stdin from /dev/null, output
//! captured within bounds, and a timeout after which the whole process group gets SIGTERM, then
//! SIGKILL.
//!
//! Observation and action both go through here, so every program converge runs is bounded in
//! time, in the memory its output takes, and leaves no stray children behind.
//!
//! What a program prints is read as it comes and only its end is kept ([`TAIL_BYTES`] of each
//! stream): a start script printing 400 MB once took converge to 789 MB. A program whose
//! output is parsed keeps all of it up to a cap given by the caller ([`run_parsed`]), beyond
//! which it is an error, never a cut table taken for the whole one. An app script's output is
//! also written, as it comes, to its log file, up to a cap ([`run_logged`]).

use std::fs::File;
use std::io::{self, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How long a process group gets between SIGTERM and SIGKILL.
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
    /// The timeout hit and converge killed the process group.
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
    run_with(argv, timeout, Keep::Tail(TAIL_BYTES), None)
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
    run_with(argv, timeout, Keep::Whole(max_stdout), None)
        .await
        .map(|logged| logged.output)
}

/// [`run`], also writing everything the program prints to `log`, as it comes.
pub async fn run_logged(
    argv: &[String],
    timeout: Duration,
    log: LogFile,
) -> Result<Logged, ExecError> {
    run_with(argv, timeout, Keep::Tail(TAIL_BYTES), Some(log)).await
}

async fn run_with(
    argv: &[String],
    timeout: Duration,
    keep_stdout: Keep,
    log: Option<LogFile>,
) -> Result<Logged, ExecError> {
    let (program, args) = argv.split_first().ok_or(ExecError::Empty)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills the scripts' children too.
        .process_group(0)
        .kill_on_drop(true);
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
            let pgid = child.id().and_then(|id| i32::try_from(id).ok());
            signal_group(pgid, Signal::TERM);
            let exited = tokio::time::timeout(KILL_GRACE, child.wait()).await;
            // Whether or not the leader obeyed, members of its group that ignore SIGTERM must
            // not outlive the timeout: SIGKILL the group (ESRCH when it is empty already).
            signal_group(pgid, Signal::KILL);
            let status = match exited {
                Ok(status) => status.map_err(wait_err)?,
                Err(_) => child.wait().await.map_err(wait_err)?,
            };
            (status, true)
        }
    };
    let elapsed = started.elapsed();
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

fn signal_group(pgid: Option<i32>, signal: Signal) {
    if let Some(pgid) = pgid.and_then(Pid::from_raw) {
        // ESRCH (already gone) is the expected race and needs no handling.
        let _ = rustix::process::kill_process_group(pgid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn regression_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("grandchild-survived");
        // The grandchild would write the marker after 3 s unless its group is killed.
        let script = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let out = run(&argv(&["sh", "-c", &script]), Duration::from_millis(300))
            .await
            .expect("sh runs");
        assert!(out.timed_out);
        assert_eq!(out.signal, Some(Signal::TERM.as_raw()));
        assert!(out.describe_end().starts_with("timed out after"));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !marker.exists(),
            "a child of the timed-out command outlived the timeout"
        );
    }

    #[tokio::test]
    async fn regression_a_member_ignoring_sigterm_is_killed_even_when_the_leader_obeys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("stubborn.pid");
        let script = format!(
            "(trap '' TERM; echo $$ >/dev/null; exec sleep 77) & echo $! > {}; sleep 100",
            pid_file.display()
        );
        let out = run(&argv(&["sh", "-c", &script]), Duration::from_millis(300))
            .await
            .expect("sh runs");
        assert!(out.timed_out);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid")
            .trim()
            .parse()
            .expect("number");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Dead means gone or a zombie waiting for init to reap it.
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .is_some_and(|zombie| !zombie);
        assert!(!alive, "the SIGTERM-ignoring member survived the timeout");
    }

    #[tokio::test]
    async fn sigterm_ignored_means_sigkill_after_the_grace() {
        let out = run(
            &argv(&["sh", "-c", "trap '' TERM; sleep 60"]),
            Duration::from_millis(200),
        )
        .await
        .expect("sh runs");
        assert!(out.timed_out);
        assert_eq!(out.signal, Some(Signal::KILL.as_raw()));
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
