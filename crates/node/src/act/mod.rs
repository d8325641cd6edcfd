//! Acting: carrying out planned [`Action`]s, one driver per resource kind.
//!
//! What an action runs comes from [`converge_core::command::for_step`] (shared with `converge plan`, so
//! the plan shows exactly what runs); a driver adds only how to run it: timeouts, retries, what
//! an exit code means. Every driver logs each program before running it (see [`log`]), runs it
//! through [`crate::exec`] (a command that changes the node with a record of it in progress,
//! [`crate::in_progress`]; see [`Ctx::run`] and [`Ctx::probe`]), and reports a failure or a
//! refusal as an [`ActError`] naming the resource. A driver that must look at the node again
//! asks the [`Observer`]'s probes.

pub mod app;
pub mod container;
pub mod ctx;
pub mod drbd;
pub mod fs;
pub mod log;
pub mod lxc;

use crate::observer::Observer;
use converge_core::command::{self, DrbdVerb, Program};
use converge_core::manifest::Service;
use converge_core::metrics::ActionResult;
use converge_core::plan::{Action, Step};
pub use ctx::{ActError, Ctx};

/// Carries out one planned step, and counts it for the metrics by its kind and how it ended.
pub async fn run_step(observer: &Observer, service: &Service, step: &Step) -> Result<(), ActError> {
    let done = carry_out(observer, service, step).await;
    let result = match &done {
        Ok(()) => ActionResult::Ok,
        Err(ActError::Failed { .. }) => ActionResult::Failed,
        Err(ActError::Blocked { .. }) => ActionResult::Blocked,
        Err(ActError::Waiting { .. }) => ActionResult::Waiting,
    };
    crate::metrics::count_action(step.action.name(), result);
    done
}

async fn carry_out(observer: &Observer, service: &Service, step: &Step) -> Result<(), ActError> {
    let ctx = Ctx::new(observer, service, step.rid, step.action.name());
    // A start or stop runs what the scripts directory holds now, not what it held when planned.
    let scripts = match step.action {
        Action::AppStart | Action::AppStop => observer.app_scripts(service, step.rid).await,
        _ => None,
    };
    let program = command::for_step(step, service, &ctx.config.commands, scripts.as_deref());
    if let Action::DrbdSecondary { res, force: true } = &step.action {
        drbd::confirm_forced_demotion(&ctx, res).await?;
    }
    // What the event stream said of a connection before converge reconnects it is stale
    // until the stream catches up (see `StandAloneView`); unless the reconnection fails and
    // leaves the connection as it was.
    let reconnecting = match &step.action {
        Action::DrbdConnect { res, peer } => observer
            .stream_view()
            .and_then(|view| Some((view, view.reconnecting(res, peer.as_deref())?))),
        _ => None,
    };
    let done = run_program(&ctx, &program).await;
    if let (Some((view, mark)), Action::DrbdConnect { res, peer }, Err(_)) =
        (reconnecting, &step.action, &done)
    {
        view.reconnect_failed(res, peer.as_deref(), mark);
    }
    // Applied or replaced: the drift seen before says nothing of the resource now.
    if let Program::Drbdadm {
        verb: DrbdVerb::Up | DrbdVerb::Adjust | DrbdVerb::Down,
        res,
        ..
    }
    | Program::DrbdInstall { res, .. } = &program
        && done.is_ok()
    {
        observer.forget_drift(res);
    }
    done
}

async fn run_program(ctx: &Ctx<'_>, program: &Program) -> Result<(), ActError> {
    match program {
        Program::Drbdadm {
            verb: DrbdVerb::Primary,
            res,
            argv,
        } => drbd::primary(ctx, res, argv).await,
        Program::Drbdadm {
            verb: verb @ (DrbdVerb::Secondary | DrbdVerb::Down),
            res,
            argv,
        } => drbd::state_change(ctx, *verb, res, argv).await,
        Program::Drbdadm {
            verb: DrbdVerb::Connect,
            argv,
            ..
        } => drbd::run_once(ctx, argv).await,
        Program::Drbdadm {
            verb: DrbdVerb::Up,
            res,
            argv,
        } => drbd::up(ctx, res, argv).await,
        Program::Drbdadm {
            verb: DrbdVerb::Adjust,
            res,
            argv,
        } => drbd::adjust(ctx, res, argv).await,
        Program::DrbdInstall {
            res,
            from,
            staged,
            to,
            check,
        } => drbd::install(ctx, res, from, staged, to, check).await,
        Program::Mkdir { path } => fs::mkdir(ctx, path),
        Program::Mount { fsck, mount } => fs::mount(ctx, fsck.as_deref(), mount).await,
        Program::Umount { umount, kill } => fs::umount(ctx, umount, kill.as_deref()).await,
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
            container::start(ctx, container, commands, *timeout).await
        }
        Program::ContainerWaitUp {
            container,
            operational,
            timeout,
        } => container::wait_up(ctx, container, operational, *timeout).await,
        Program::ContainerWaitDown { container, timeout } => {
            container::wait_down(ctx, container, *timeout, None).await
        }
        Program::ContainerStop {
            container,
            stop,
            timeout,
        } => container::stop(ctx, container, stop, *timeout).await,
        Program::ContainerFreeze {
            container,
            freeze,
            timeout,
        } => container::freeze(ctx, container, freeze, *timeout).await,
        Program::ContainerThaw {
            container,
            thaw,
            stop,
        } => container::thaw(ctx, container, thaw, *stop).await,
        Program::App { verb, runs } => app::run(ctx, *verb, runs).await,
    }
}
