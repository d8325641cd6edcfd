//! Acting: carrying out planned [`Action`]s, one driver per resource kind.
//!
//! Every driver logs each program it runs before running it (see [`log`]), runs it through
//! [`crate::exec`] with a timeout, and reports a failure or a refusal as an [`ActError`] that
//! names the resource. [`command`] maps actions to argv and is shared with `converge plan`, so
//! the plan shows exactly what runs.

pub mod app;
pub mod command;
pub mod container;
pub mod drbd;
pub mod fs;
pub mod log;
pub mod lxc;
pub mod vz;

use std::time::Duration;

use thiserror::Error;

use crate::config::Config;
use crate::exec::{self, ExecError, Output};
use crate::manifest::{ResourceId, Service, Spec};
use crate::plan::{Action, Step};
use log::ResourceLog;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActError {
    /// The action ran and failed, or could not run.
    #[error("{rid}: {message}")]
    Failed { rid: ResourceId, message: String },
    /// A safety rule refused, re-checked right before acting: nothing was run.
    #[error("{rid}: blocked: {reason}")]
    Blocked { rid: ResourceId, reason: String },
}

impl ActError {
    pub fn is_blocked(&self) -> bool {
        matches!(self, ActError::Blocked { .. })
    }
}

/// What a driver needs: where things are, and whose resource it acts on.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub service: &'a Service,
    pub rid: ResourceId,
    pub log: ResourceLog,
}

impl<'a> Ctx<'a> {
    pub fn new(config: &'a Config, service: &'a Service, rid: ResourceId) -> Self {
        Ctx {
            config,
            service,
            rid,
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

    /// Logs the command line, then runs it. A missing program is a failure naming it; exit
    /// codes are the caller's to judge.
    pub async fn run(&self, argv: &[String], timeout: Duration) -> Result<Output, ActError> {
        self.log.info(command::shell_line(argv));
        self.run_quiet(argv, timeout).await
    }

    /// Runs without logging the command (probes and polls, which would flood the log).
    pub async fn run_quiet(&self, argv: &[String], timeout: Duration) -> Result<Output, ActError> {
        exec::run(argv, timeout).await.map_err(|e| match e {
            ExecError::NotFound { .. } => self.failed(e.to_string()),
            other => self.failed(other.to_string()),
        })
    }

    /// A failure message for a program that ended badly: how it ended and its last line.
    pub fn ended_badly(&self, argv: &[String], out: &Output) -> ActError {
        let last = out.last_line();
        let program = command::shell_line(argv);
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

/// Carries out one planned step.
pub async fn run_step(config: &Config, service: &Service, step: &Step) -> Result<(), ActError> {
    let ctx = Ctx::new(config, service, step.rid);
    match &step.action {
        Action::DrbdUp { res } => drbd::up(&ctx, res).await,
        Action::DrbdConnect { res } => drbd::connect(&ctx, res).await,
        Action::DrbdPrimary { res } => drbd::primary(&ctx, res).await,
        Action::DrbdSecondary { res } => drbd::secondary(&ctx, res).await,
        Action::DrbdDown { res } => drbd::down(&ctx, res).await,
        Action::Mkdir { path } => fs::mkdir(&ctx, path),
        Action::Mount {
            dev,
            mnt,
            fstype,
            options,
            fsck,
        } => fs::mount(&ctx, dev, mnt, fstype, options, *fsck).await,
        Action::Umount { mnt, kill } => fs::umount(&ctx, mnt, *kill).await,
        Action::ContainerStart { container } => container::start(&ctx, container).await,
        Action::ContainerWaitUp { container } => container::wait_up(&ctx, container, None).await,
        Action::ContainerWaitDown { container } => {
            container::wait_down(&ctx, container, None).await
        }
        Action::ContainerStop { container } => container::stop(&ctx, container).await,
        Action::AppStart => app::start(&ctx).await,
        Action::AppStop => app::stop(&ctx).await,
    }
}

/// The action that undoes `action`, for rolling back a failed start. `None` when there is
/// nothing to undo (a created directory stays; a connect is left connected).
pub fn undo(action: &Action) -> Option<Action> {
    Some(match action {
        Action::DrbdUp { res } => Action::DrbdDown { res: res.clone() },
        Action::DrbdPrimary { res } => Action::DrbdSecondary { res: res.clone() },
        Action::Mount { mnt, .. } => Action::Umount {
            mnt: mnt.clone(),
            kill: false,
        },
        Action::ContainerStart { container } | Action::ContainerWaitUp { container } => {
            Action::ContainerStop {
                container: container.clone(),
            }
        }
        Action::AppStart => Action::AppStop,
        Action::DrbdConnect { .. }
        | Action::Mkdir { .. }
        | Action::DrbdSecondary { .. }
        | Action::DrbdDown { .. }
        | Action::Umount { .. }
        | Action::ContainerWaitDown { .. }
        | Action::ContainerStop { .. }
        | Action::AppStop => return None,
    })
}
