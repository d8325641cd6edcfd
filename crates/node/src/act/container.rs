//! What OpenVZ and LXC containers share: start, then wait for up status and for the container
//! to be operational (a command runs inside); stop, then wait for down status — each within the
//! resource's timeouts. The commands come from [`converge_core::command`]; the states from the
//! observer's probe; [`super::lxc`] explains a failed LXC start from its log.

use std::time::Duration;

use tokio::time::Instant;

use super::ctx::{ActError, Backoff, Ctx};
use super::lxc;
use crate::observer::probe::{LogMark, PROBE_TIMEOUT};
use converge_core::manifest::ContainerKind;
use converge_core::observe::ContainerState;
use converge_core::shell::shell_line;

/// The commands of a container start.
pub struct StartCommands<'a> {
    pub start: &'a [String],
    /// Succeeds once the container can run programs.
    pub operational: &'a [String],
    /// Kills what is left of a failed start (LXC).
    pub abandon: Option<&'a [String]>,
}

/// The container's state now, as its tool reports it for this one container.
async fn probe_state(ctx: &Ctx<'_>, container: &ContainerKind) -> Result<ContainerState, ActError> {
    ctx.observer
        .container_state(container)
        .await
        .map_err(|e| ctx.failed(e.to_string()))
}

/// Whatever ran in the container is gone once it starts or stops: forget recorded app starts
/// and what is known of its scripts directory.
fn forget_apps(ctx: &Ctx<'_>) {
    ctx.observer.forget_scripts(&ctx.service.name);
    if let Err(e) = crate::state::forget_service_apps(&ctx.config.state_dir, &ctx.service.name) {
        ctx.log
            .warn(format_args!("cannot forget the apps' start records: {e}"));
    }
}

pub async fn start(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    commands: StartCommands<'_>,
    timeout: Duration,
) -> Result<(), ActError> {
    forget_apps(ctx);
    let deadline = Instant::now() + timeout;
    let mark = log_mark(ctx, container).await;
    let out = ctx.run(commands.start, timeout).await?;
    if !out.success() {
        ctx.log.output(&format!("{}{}", out.stdout, out.stderr));
        let ContainerKind::Lxc(name) = container else {
            return Err(ctx.ended_badly(commands.start, &out));
        };
        // lxc-start's own words are only "The container failed to start": the cause is in the
        // LXC log.
        let why = mark.as_ref().map(|m| lxc::log_tail(ctx, name, m));
        let error = ctx.failed(format!(
            "container {name} did not start: {} {}{}",
            shell_line(commands.start),
            out.describe_end(),
            why.map(|w| format!("; {w}")).unwrap_or_default()
        ));
        abandon_start(ctx, container, commands.abandon).await;
        return Err(error);
    }
    let waited = wait_until_up(
        ctx,
        container,
        commands.operational,
        timeout,
        deadline,
        mark.as_ref(),
    )
    .await;
    if waited.is_err() {
        abandon_start(ctx, container, commands.abandon).await;
    }
    waited
}

/// A container already starting: waits for up status, then until it is operational, within
/// `timeout` from now.
pub async fn wait_up(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    operational: &[String],
    timeout: Duration,
) -> Result<(), ActError> {
    let deadline = Instant::now() + timeout;
    let mark = log_mark(ctx, container).await;
    wait_until_up(
        ctx,
        container,
        operational,
        timeout,
        deadline,
        mark.as_ref(),
    )
    .await
}

/// Where the LXC log ends before a start (OpenVZ: no such log).
async fn log_mark(ctx: &Ctx<'_>, container: &ContainerKind) -> Option<LogMark> {
    match container {
        ContainerKind::Lxc(name) => Some(ctx.observer.lxc_log_mark(name).await),
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
    operational: &[String],
    timeout: Duration,
    deadline: Instant,
    mark: Option<&LogMark>,
) -> Result<(), ActError> {
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
    let mut backoff = Backoff::until(deadline);
    loop {
        if ctx.probe(operational, PROBE_TIMEOUT).await?.success() {
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
                shell_line(operational),
                humantime::format_duration(timeout)
            )));
        }
    }
}

/// "; LXC log PATH: CAUSE" for an LXC container (and the log's tail logged), else nothing.
fn log_reason(ctx: &Ctx<'_>, container: &ContainerKind, mark: Option<&LogMark>) -> String {
    match (container, mark) {
        (ContainerKind::Lxc(name), Some(mark)) => format!("; {}", lxc::log_tail(ctx, name, mark)),
        _ => String::new(),
    }
}

fn died_starting(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    state: ContainerState,
    mark: Option<&LogMark>,
) -> ActError {
    ctx.failed(format!(
        "container {} is {state:?} instead of running: its start failed{}",
        container.id(),
        log_reason(ctx, container, mark)
    ))
}

/// After a failed start that will be rolled back: kill what is left of the container (LXC:
/// `abandon`), or it keeps the filesystem under its rootfs busy and the rollback stops at the
/// unmount. Without rollback the container is left as it is, for the operator to look at.
async fn abandon_start(ctx: &Ctx<'_>, container: &ContainerKind, abandon: Option<&[String]>) {
    let Some(abandon) = abandon else {
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
    match ctx.run(abandon, PROBE_TIMEOUT).await {
        Ok(out) if !out.success() => ctx.log.warn(format_args!(
            "{} {}: {}",
            shell_line(abandon),
            out.describe_end(),
            out.last_line()
        )),
        Ok(_) => {}
        Err(e) => ctx.log.warn(e.to_string()),
    }
    if let Err(e) = wait_down(ctx, container, PROBE_TIMEOUT, None).await {
        ctx.log.warn(e.to_string());
    }
}

pub async fn stop(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    stop: &[String],
    timeout: Duration,
) -> Result<(), ActError> {
    forget_apps(ctx);
    let deadline = Instant::now() + timeout;
    // lxc-stop waits up to its -t itself before killing: give it a little more than that.
    let out = ctx.run(stop, timeout + Duration::from_secs(10)).await?;
    if !out.success() {
        ctx.log.output(&format!("{}{}", out.stdout, out.stderr));
        // Already stopped is what we wanted; anything else is a failure.
        if probe_state(ctx, container).await? != ContainerState::Running {
            return wait_down(ctx, container, timeout, Some(deadline)).await;
        }
        return Err(ctx.ended_badly(stop, &out));
    }
    wait_down(ctx, container, timeout, Some(deadline)).await
}

/// Freezes a container whose node lost quorum. The record comes first: a freeze converge did
/// not record would look like anyone's, and converge never thaws those. A freezer that stays
/// at FREEZING past `timeout` (a task blocked on the I/O DRBD suspends cannot be frozen until
/// it is resumed) holds the container as a frozen one does, and counts as frozen.
pub async fn freeze(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    freeze: &[String],
    timeout: Duration,
) -> Result<(), ActError> {
    let id = container.id();
    crate::state::record_freeze(&ctx.config.state_dir, &ctx.service.name, ctx.rid, false).map_err(
        |e| {
            ctx.failed(format!(
                "cannot record the freeze of container {id}, so it is not frozen: {e}"
            ))
        },
    )?;
    ctx.log.info("record that converge froze the container");
    let out = ctx.run(freeze, timeout).await;
    let state = probe_state(ctx, container).await?;
    match (&out, state) {
        (Ok(out), ContainerState::Frozen) if out.success() => Ok(()),
        (_, ContainerState::Frozen) => {
            let how = match &out {
                Ok(out) => out.describe_end(),
                Err(e) => e.to_string(),
            };
            ctx.log.warn(format_args!(
                "{} {how}, and container {id} is frozen (or freezing: a task blocked on suspended I/O is frozen once DRBD resumes it)",
                shell_line(freeze)
            ));
            Ok(())
        }
        (_, state) => {
            // Not frozen: the record must not make a later freeze by someone else look like
            // converge's.
            if let Err(e) =
                crate::state::forget_freeze(&ctx.config.state_dir, &ctx.service.name, ctx.rid)
            {
                ctx.log
                    .warn(format_args!("cannot forget the freeze record: {e}"));
            }
            Err(match out {
                Ok(out) if !out.success() => ctx.ended_badly(freeze, &out),
                Ok(_) => ctx.failed(format!(
                    "{} succeeded, and container {id} is {state:?}, not frozen",
                    shell_line(freeze)
                )),
                Err(e) => e,
            })
        }
    }
}

/// Thaws a container converge froze: to run on (`stop` false: its record goes once it runs),
/// or to be stopped next (`stop` true: recorded before the thaw, so that a converge killed
/// right after it still finds the container its own, thawed for a stop).
pub async fn thaw(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    thaw: &[String],
    stop: bool,
) -> Result<(), ActError> {
    let id = container.id();
    let (state_dir, service) = (&ctx.config.state_dir, &ctx.service.name);
    if stop {
        crate::state::record_freeze(state_dir, service, ctx.rid, true).map_err(|e| {
            ctx.failed(format!(
                "cannot record that container {id} is thawed to be stopped: {e}"
            ))
        })?;
        ctx.log
            .info("record that the container is thawed to be stopped");
    }
    let out = ctx.run(thaw, PROBE_TIMEOUT).await?;
    let state = probe_state(ctx, container).await?;
    if state == ContainerState::Frozen {
        if !out.success() {
            ctx.log.output(&format!("{}{}", out.stdout, out.stderr));
            return Err(ctx.ended_badly(thaw, &out));
        }
        return Err(ctx.failed(format!(
            "{} succeeded, and container {id} is still frozen",
            shell_line(thaw)
        )));
    }
    if !stop {
        crate::state::forget_freeze(state_dir, service, ctx.rid).map_err(|e| {
            ctx.failed(format!(
                "container {id} is thawed, but converge's record of its freeze stays: {e}"
            ))
        })?;
        ctx.log.info("forget converge's freeze record");
    }
    Ok(())
}

/// Waits for down status until `deadline` (default: `timeout` from now).
pub async fn wait_down(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    timeout: Duration,
    deadline: Option<Instant>,
) -> Result<(), ActError> {
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
    if is_down(last) {
        Ok(())
    } else {
        Err(ctx.failed(format!(
            "container {} did not reach down status within {} (last seen {last:?})",
            container.id(),
            humantime::format_duration(timeout)
        )))
    }
}
