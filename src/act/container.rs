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
    let argv = container_start_argv(&ctx.config.commands, container);
    let out = ctx.run(&argv, start_timeout(ctx)).await?;
    if !out.success() {
        ctx.log.output(&format!("{}{}", out.stdout, out.stderr));
        if let ContainerKind::Lxc(name) = container {
            lxc::log_tail(ctx, name);
        }
        return Err(ctx.ended_badly(&argv, &out));
    }
    wait_up(ctx, container, Some(deadline)).await
}

/// Waits for up status, then until a command runs inside, within `deadline` (default: the
/// start timeout from now).
pub async fn wait_up(
    ctx: &Ctx<'_>,
    container: &ContainerKind,
    deadline: Option<Instant>,
) -> Result<(), ActError> {
    let timeout = start_timeout(ctx);
    let deadline = deadline.unwrap_or_else(|| Instant::now() + timeout);
    ctx.log.info("wait for container up status");
    let mut backoff = Backoff::until(deadline);
    let last = loop {
        let state = probe_state(ctx, container).await?;
        if state == ContainerState::Running || !backoff.wait().await {
            break state;
        }
    };
    if last != ContainerState::Running {
        if let ContainerKind::Lxc(name) = container {
            lxc::log_tail(ctx, name);
        }
        return Err(ctx.failed(format!(
            "container {} did not reach up status within {} (last seen {last:?})",
            container.id(),
            humantime::format_duration(timeout)
        )));
    }
    ctx.log.info("wait for container operational");
    let argv = ctx
        .config
        .commands
        .in_container(Some(container), vec!["/bin/true".into()]);
    let mut backoff = Backoff::until(deadline);
    let operational = loop {
        if ctx.run_quiet(&argv, PROBE_TIMEOUT).await?.success() {
            break true;
        }
        if !backoff.wait().await {
            break false;
        }
    };
    if !operational {
        return Err(ctx.failed(format!(
            "container {} runs but `{}` did not succeed within {}",
            container.id(),
            super::command::shell_line(&argv),
            humantime::format_duration(timeout)
        )));
    }
    Ok(())
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
