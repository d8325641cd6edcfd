//! Running external programs: by argv (never through a shell), stdin from /dev/null, output
//! captured, and a timeout after which the whole process group gets SIGTERM, then SIGKILL.
//!
//! Observation and action both go through here, so every program converge runs is bounded in
//! time and leaves no stray children behind.

use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How long a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ExecError {
    #[error("{program} not found (not installed, or not in PATH)")]
    NotFound { program: String },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("waiting for {program} failed: {source}")]
    Wait { program: String, source: io::Error },
    #[error("empty command line")]
    Empty,
}

/// What a finished (or killed) program left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
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

/// Runs `argv` with a timeout. A non-zero exit is not an error here: callers judge exit codes.
pub async fn run(argv: &[String], timeout: Duration) -> Result<Output, ExecError> {
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
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
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
    // A daemonised grandchild may keep the pipes open: do not wait for it forever.
    let collect = |task: Option<tokio::task::JoinHandle<String>>| async move {
        match task {
            Some(task) => tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        }
    };
    let stdout = collect(stdout).await;
    let stderr = collect(stderr).await;
    use std::os::unix::process::ExitStatusExt;
    Ok(Output {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        elapsed,
        timed_out,
    })
}

fn read_all<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut pipe: R,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        // A read error leaves what was read so far, which is what the log should show.
        let _ = pipe.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    })
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
}
