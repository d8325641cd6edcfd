//! What every driver works with: the context of the resource it acts on, the error it reports,
//! and the pause between polls.

use std::time::Duration;

use thiserror::Error;

use super::log::ResourceLog;
use crate::exec::{self, ExecError, LogFile, Logged, Output};
use crate::in_progress::Recorder;
use crate::observer::Observer;
use converge_core::config::Config;
use converge_core::manifest::{ResourceId, Service, Spec};
use converge_core::shell::shell_line;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActError {
    /// The action ran and failed, or could not run.
    #[error("{rid}: {message}")]
    Failed { rid: ResourceId, message: String },
    /// A safety rule refused, re-checked right before acting: nothing was run.
    #[error("{rid}: blocked: {reason}")]
    Blocked { rid: ResourceId, reason: String },
    /// A peer must step down (or come into sight) first, as seen right before acting: nothing
    /// was run, and it passes by itself ([`converge_core::plan::BlockKind::Waiting`]).
    #[error("{rid}: waiting: {reason}")]
    Waiting { rid: ResourceId, reason: String },
}

impl ActError {
    /// Nothing was run: a rule refused, or the action waits for a peer.
    pub fn is_blocked(&self) -> bool {
        matches!(self, ActError::Blocked { .. } | ActError::Waiting { .. })
    }
}

/// What a driver needs: where things are, how to look at the node, and whose resource it acts
/// on, for which action.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub observer: &'a Observer,
    pub service: &'a Service,
    pub rid: ResourceId,
    /// The planned action ([`converge_core::plan::Action::name`]), for the records of its
    /// commands in progress.
    pub action: &'static str,
    pub log: ResourceLog,
}

impl<'a> Ctx<'a> {
    pub fn new(
        observer: &'a Observer,
        service: &'a Service,
        rid: ResourceId,
        action: &'static str,
    ) -> Self {
        Ctx {
            config: observer.config(),
            observer,
            service,
            rid,
            action,
            log: ResourceLog::new(service, rid),
        }
    }

    /// The manifest's spec of the resource acted on.
    pub fn spec(&self) -> Option<&'a Spec> {
        self.service.resource(self.rid).map(|r| &r.spec)
    }

    pub fn failed(&self, message: impl Into<String>) -> ActError {
        ActError::Failed {
            rid: self.rid,
            message: message.into(),
        }
    }

    pub fn blocked(&self, reason: impl Into<String>) -> ActError {
        ActError::Blocked {
            rid: self.rid,
            reason: reason.into(),
        }
    }

    pub fn waiting(&self, reason: impl Into<String>) -> ActError {
        ActError::Waiting {
            rid: self.rid,
            reason: reason.into(),
        }
    }

    /// Logs the command line, then runs it as [`Ctx::run_quiet`] does. A missing program is a
    /// failure naming it; exit codes are the caller's to judge.
    pub async fn run(&self, argv: &[String], timeout: Duration) -> Result<Output, ActError> {
        self.log.info(shell_line(argv));
        self.run_quiet(argv, timeout).await
    }

    /// Runs a command that changes the node, without logging it (a retry): recorded as in
    /// progress while it runs ([`crate::in_progress`]), so that a converge killed meanwhile
    /// does not let the next one run it again beside it.
    pub async fn run_quiet(&self, argv: &[String], timeout: Duration) -> Result<Output, ActError> {
        let record = self.recorder(argv, timeout);
        exec::run_tracked(argv, timeout, &record)
            .await
            .map_err(|e: ExecError| self.failed(e.to_string()))
    }

    /// [`Ctx::run_quiet`], writing the command's output to `log` as it comes (app scripts).
    pub async fn run_logged(
        &self,
        argv: &[String],
        timeout: Duration,
        log: LogFile,
    ) -> Result<Logged, ActError> {
        let record = self.recorder(argv, timeout);
        exec::run_logged(argv, timeout, log, Some(&record))
            .await
            .map_err(|e: ExecError| self.failed(e.to_string()))
    }

    /// Runs a command that only looks (a poll while waiting): neither logged nor recorded.
    pub async fn probe(&self, argv: &[String], timeout: Duration) -> Result<Output, ActError> {
        exec::run(argv, timeout)
            .await
            .map_err(|e: ExecError| self.failed(e.to_string()))
    }

    fn recorder(&self, argv: &[String], timeout: Duration) -> Recorder {
        Recorder::new(
            &self.config.state_dir,
            &self.service.name,
            self.rid,
            &self.log.label,
            self.action,
            argv,
            timeout,
        )
    }

    /// A failure message for a program that ended badly: how it ended and its last line.
    pub fn ended_badly(&self, argv: &[String], out: &Output) -> ActError {
        let last = out.last_line();
        let program = shell_line(argv);
        if last.is_empty() {
            self.failed(format!("{program} {}", out.describe_end()))
        } else {
            self.failed(format!("{program} {}: {last}", out.describe_end()))
        }
    }
}

/// Pauses between polls: 100 ms, doubling up to 1 s, never past the deadline.
pub struct Backoff {
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl Backoff {
    pub fn until(deadline: tokio::time::Instant) -> Self {
        Backoff {
            deadline,
            pause: Duration::from_millis(100),
        }
    }

    /// Sleeps before the next poll; `false` when the deadline has passed (do not poll again).
    pub async fn wait(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.pause.min(self.deadline - now)).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        true
    }
}
