//! What OpenVZ and LXC containers share: start, then wait for up status and for the container
//! to be operational (a command runs inside); stop, then wait for down status — each within the
//! resource's timeouts. [`super::vz`] and [`super::lxc`] supply the commands and the probes.

use std::time::Duration;

use tokio::time::Instant;

use super::command::{container_start_argv, container_stop_argv};
use super::{ActError, Backoff, Ctx, lxc, vz};
use crate::manifest::{ContainerKind, ContainerSpec, Spec};
use crate::observe::ContainerState;

/// Probes run often while waiting; each must answer quickly.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

fn spec<'s>(ctx: &'s Ctx<'_>) -> Option<&'s ContainerSpec> {
    ctx.spec().and_then(Spec::as_container)
}

fn start_timeout(ctx: &Ctx<'_>) -> Duration {
    spec(ctx).map_or(ContainerSpec::DEFAULT_START_TIMEOUT, |s| s.start_timeout)
}

fn stop_timeout(ctx: &Ctx<'_>) -> Duration {
    spec(ctx).map_or(ContainerSpec::DEFAULT_STOP_TIMEOUT, |s| s.stop_timeout)
}

/// The container's state now, as its tool reports it for this one container.
pub async fn probe_state(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
) -> Result<ContainerState, ActError> {
    match container {
        ContainerKind::Vz(ctid) => vz::probe_state(ctx, ctid).await,
        ContainerKind::Lxc(name) => lxc::probe_state(ctx, name).await,
    }
}

/// Whatever ran in the container is gone once it starts or stops: forget recorded app starts.
fn forget_apps(ctx: &Ctx<'_>) {
    if let Err(e) = crate::state::forget_service_apps(&ctx.config.state_dir, &ctx.service.name) {
        ctx.log
            .warn(format_args!("cannot forget the apps' start records: {e}"));
    }
}

pub async fn start(ctx: &Ctx<'_>, container: &ContainerKind) -> Result<(), ActError> {
    forget_apps(ctx);
    let deadline = Instant::now() + start_timeout(ctx);
    let mark = log_mark(ctx, container).await;
    let argv = container_start_argv(&ctx.config.commands, container);
    let out = ctx.run(&argv, start_timeout(ctx)).await?;
    if !out.success() {
        ctx.log.output(&format!("{}{}", out.stdout, out.stderr));
        let ContainerKind::Lxc(name) = container else {
            return Err(ctx.ended_badly(&argv, &out));
        };
        // lxc-start's own words are only "The container failed to start": the cause is in the
        // LXC log.
        let why = mark.as_ref().map(|m| lxc::log_tail(ctx, name, m));
        let error = ctx.failed(format!(
            "container {name} did not start: {} {}{}",
            super::command::shell_line(&argv),
            out.describe_end(),
            why.map(|w| format!("; {w}")).unwrap_or_default()
        ));
        abandon_start(ctx, container).await;
        return Err(error);
    }
    wait_until_up(ctx, container, deadline, mark.as_ref()).await
}

/// Waits for up status, then until a command runs inside, within `deadline` (default: the
/// start timeout from now).
pub async fn wait_up(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    deadline: Option<Instant>,
) -> Result<(), ActError> {
    let deadline = deadline.unwrap_or_else(|| Instant::now() + start_timeout(ctx));
    let mark = log_mark(ctx, container).await;
    wait_until_up(ctx, container, deadline, mark.as_ref()).await
}

/// Where the LXC log ends before a start (OpenVZ: no such log).
async fn log_mark(ctx: &Ctx<'_>, container: &ContainerKind) -> Option<lxc::LogMark> {
    match container {
        ContainerKind::Lxc(name) => Some(lxc::log_mark(ctx, name).await),
        ContainerKind::Vz(_) => None,
    }
}

/// LXC states after which a start will not come up by waiting: `lxc-start -d` returns only once
/// the container runs, so a container found stopped, aborting or gone afterwards died starting.
/// (OpenVZ is only ever waited out: vzctl's intermediate states are not final.)
fn start_failed(container: &ContainerKind, state: ContainerState) -> bool {
    matches!(container, ContainerKind::Lxc(_))
        && matches!(
            state,
            ContainerState::Stopped | ContainerState::Aborting | ContainerState::Absent
        )
}

async fn wait_until_up(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    deadline: Instant,
    mark: Option<&lxc::LogMark>,
) -> Result<(), ActError> {
    let result = wait_until_up_inner(ctx, container, deadline, mark).await;
    if result.is_err() {
        abandon_start(ctx, container).await;
    }
    result
}

async fn wait_until_up_inner(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    deadline: Instant,
    mark: Option<&lxc::LogMark>,
) -> Result<(), ActError> {
    let timeout = start_timeout(ctx);
    ctx.log.info("wait for container up status");
    let mut backoff = Backoff::until(deadline);
    let last = loop {
        let state = probe_state(ctx, container).await?;
        if state == ContainerState::Running
            || start_failed(container, state)
            || !backoff.wait().await
        {
            break state;
        }
    };
    if last != ContainerState::Running {
        if start_failed(container, last) {
            return Err(died_starting(ctx, container, last, mark));
        }
        return Err(ctx.failed(format!(
            "container {} did not reach up status within {} (last seen {last:?}){}",
            container.id(),
            humantime::format_duration(timeout),
            log_reason(ctx, container, mark)
        )));
    }
    ctx.log.info("wait for container operational");
    let argv = ctx
        .config
        .commands
        .in_container(Some(container), vec!["/bin/true".into()]);
    let mut backoff = Backoff::until(deadline);
    loop {
        if ctx.run_quiet(&argv, PROBE_TIMEOUT).await?.success() {
            return Ok(());
        }
        // An LXC container whose init exits at once is seen running first, then stopped:
        // nothing will ever attach to it.
        if matches!(container, ContainerKind::Lxc(_)) {
            let state = probe_state(ctx, container).await?;
            if start_failed(container, state) {
                return Err(died_starting(ctx, container, state, mark));
            }
        }
        if !backoff.wait().await {
            return Err(ctx.failed(format!(
                "container {} runs but `{}` did not succeed within {}",
                container.id(),
                super::command::shell_line(&argv),
                humantime::format_duration(timeout)
            )));
        }
    }
}

/// "; LXC log PATH: CAUSE" for an LXC container (and the log's tail logged), else nothing.
fn log_reason(ctx: &Ctx<'_>, container: &ContainerKind, mark: Option<&lxc::LogMark>) -> String {
    match (container, mark) {
        (ContainerKind::Lxc(name), Some(mark)) => format!("; {}", lxc::log_tail(ctx, name, mark)),
        _ => String::new(),
    }
}

fn died_starting(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    state: ContainerState,
    mark: Option<&lxc::LogMark>,
) -> ActError {
    ctx.failed(format!(
        "container {} is {state:?} instead of running: its start failed{}",
        container.id(),
        log_reason(ctx, container, mark)
    ))
}

/// After a failed LXC start that will be rolled back: kill what is left of the container, or
/// it keeps the filesystem under its rootfs busy and the rollback stops at the unmount. Without
/// rollback the container is left as it is, for the operator to look at. OpenVZ is left alone.
async fn abandon_start(ctx: &Ctx<'_>, container: &ContainerKind) {
    let ContainerKind::Lxc(name) = container else {
        return;
    };
    if !ctx.service.rollback {
        return;
    }
    let down = |s: ContainerState| matches!(s, ContainerState::Stopped | ContainerState::Absent);
    match probe_state(ctx, container).await {
        Ok(state) if down(state) => return,
        Ok(_) => {}
        Err(e) => {
            ctx.log.warn(format_args!("after the failed start: {e}"));
            return;
        }
    }
    let argv = lxc::kill_argv(ctx, name);
    match ctx.run(&argv, PROBE_TIMEOUT).await {
        Ok(out) if !out.success() => ctx.log.warn(format_args!(
            "{} {}: {}",
            super::command::shell_line(&argv),
            out.describe_end(),
            out.last_line()
        )),
        Ok(_) => {}
        Err(e) => ctx.log.warn(e.to_string()),
    }
    if let Err(e) = wait_down(ctx, container, Some(Instant::now() + PROBE_TIMEOUT)).await {
        ctx.log.warn(e.to_string());
    }
}

pub async fn stop(ctx: &Ctx<'_>, container: &ContainerKind) -> Result<(), ActError> {
    forget_apps(ctx);
    let deadline = Instant::now() + stop_timeout(ctx);
    let argv = container_stop_argv(&ctx.config.commands, container, spec(ctx));
    // lxc-stop waits up to its -t itself before killing: give it a little more than that.
    let out = ctx
        .run(&argv, stop_timeout(ctx) + Duration::from_secs(10))
        .await?;
    if !out.success() {
        ctx.log.output(&format!("{}{}", out.stdout, out.stderr));
        // Already stopped is what we wanted; anything else is a failure.
        if probe_state(ctx, container).await? != ContainerState::Running {
            return wait_down(ctx, container, Some(deadline)).await;
        }
        return Err(ctx.ended_badly(&argv, &out));
    }
    wait_down(ctx, container, Some(deadline)).await
}

pub async fn wait_down(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    deadline: Option<Instant>,
) -> Result<(), ActError> {
    let timeout = stop_timeout(ctx);
    let deadline = deadline.unwrap_or_else(|| Instant::now() + timeout);
    ctx.log.info("wait for container down status");
    let is_down = |s: ContainerState| {
        matches!(
            s,
            ContainerState::Stopped | ContainerState::Mounted | ContainerState::Absent
        )
    };
    let mut backoff = Backoff::until(deadline);
    let last = loop {
        let state = probe_state(ctx, container).await?;
        if is_down(state) || !backoff.wait().await {
            break state;
        }
    };
    let down = is_down(last);
    if down {
        Ok(())
    } else {
        Err(ctx.failed(format!(
            "container {} did not reach down status within {} (last seen {last:?})",
            container.id(),
            humantime::format_duration(timeout)
        )))
    }
}
