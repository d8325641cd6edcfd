//! Acting: carrying out planned [`Action`]s, one driver per resource kind.
//!
//! What an action runs comes from [`crate::command::for_step`] (shared with `converge plan`, so
//! the plan shows exactly what runs); a driver adds only how to run it: timeouts, retries, what
//! an exit code means. Every driver logs each program before running it (see [`log`]), runs it
//! through [`crate::exec`], and reports a failure or a refusal as an [`ActError`] naming the
//! resource. A driver that must look at the node again asks the [`Observer`]'s probes.

pub mod app;
pub mod container;
pub mod drbd;
pub mod fs;
pub mod log;
pub mod lxc;

use std::time::Duration;

use thiserror::Error;

use crate::command::{self, DrbdVerb, Program};
use crate::config::Config;
use crate::exec::{self, ExecError, Output};
use crate::manifest::{ResourceId, Service, Spec};
use crate::observe::runner::Observer;
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

/// What a driver needs: where things are, how to look at the node, and whose resource it acts
/// on.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub observer: &'a Observer,
    pub service: &'a Service,
    pub rid: ResourceId,
    pub log: ResourceLog,
}

impl<'a> Ctx<'a> {
    pub fn new(observer: &'a Observer, service: &'a Service, rid: ResourceId) -> Self {
        Ctx {
            config: observer.config(),
            observer,
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
        exec::run(argv, timeout)
            .await
            .map_err(|e: ExecError| self.failed(e.to_string()))
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
pub async fn run_step(observer: &Observer, service: &Service, step: &Step) -> Result<(), ActError> {
    let ctx = Ctx::new(observer, service, step.rid);
    // A start or stop runs what the scripts directory holds now, not what it held when planned.
    let scripts = match step.action {
        Action::AppStart | Action::AppStop => observer.app_scripts(service, step.rid).await,
        _ => None,
    };
    let program = command::for_step(step, service, &ctx.config.commands, scripts.as_deref());
    match &program {
        Program::Drbdadm {
            verb: DrbdVerb::Primary,
            res,
            argv,
        } => drbd::primary(&ctx, res, argv).await,
        Program::Drbdadm {
            verb: verb @ (DrbdVerb::Secondary | DrbdVerb::Down),
            res,
            argv,
        } => drbd::state_change(&ctx, *verb, res, argv).await,
        Program::Drbdadm {
            verb: DrbdVerb::Up | DrbdVerb::Connect,
            argv,
            ..
        } => drbd::run_once(&ctx, argv).await,
        Program::Mkdir { path } => fs::mkdir(&ctx, path),
        Program::Mount { fsck, mount } => fs::mount(&ctx, fsck.as_deref(), mount).await,
        Program::Umount { umount, kill } => fs::umount(&ctx, umount, kill.as_deref()).await,
        Program::ContainerStart {
            container,
            start,
            operational,
            abandon,
            timeout,
        } => {
            let commands = container::StartCommands {
                start,
                operational,
                abandon: abandon.as_deref(),
            };
            container::start(&ctx, container, commands, *timeout).await
        }
        Program::ContainerWaitUp {
            container,
            operational,
            timeout,
        } => container::wait_up(&ctx, container, operational, *timeout).await,
        Program::ContainerWaitDown { container, timeout } => {
            container::wait_down(&ctx, container, *timeout, None).await
        }
        Program::ContainerStop {
            container,
            stop,
            timeout,
        } => container::stop(&ctx, container, stop, *timeout).await,
        Program::App { verb, runs } => app::run(&ctx, *verb, runs).await,
    }
}
