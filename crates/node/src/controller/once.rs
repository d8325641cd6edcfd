//! `converge reconcile --once`: observe all services in one batched pass, then reconcile each
//! service that is not converged, in parallel: run its next step, observe it again, plan again,
//! until it is converged, blocked or failed.
//!
//! A start that fails midway is rolled back — what this run did for that service is undone in
//! reverse — unless the service sets `rollback: false`. A refusal by a safety rule is not rolled
//! back: nothing failed, and what was done is safe to keep.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Waits;
use super::scheduler::Next;
use super::take_wait::{self, Wait, Why};
use crate::act::{self, ActError, log::ResourceLog};
use crate::observer::Observer;
use converge_core::command;
use converge_core::manifest::{DesiredState, Placement, ResourceId, Service};
use converge_core::observe::NodeState;
use converge_core::plan::placement::{Decision, GiveUp};
use converge_core::plan::{self, Action, BlockKind, ServicePlan, Step};

/// How a blocked service's reason reads in its outcome: `drbd#0: peer node-b is Primary`.
pub fn blocked_reason(blocked: &plan::Blocked) -> String {
    format!("{}: {}", blocked.rid, blocked.reason)
}

/// The outcome of a service whose plan has nothing left to do but `blocked`, after `steps`
/// actions.
pub fn blocked_outcome(blocked: &plan::Blocked, steps: usize) -> Outcome {
    let reason = blocked_reason(blocked);
    match blocked.kind {
        BlockKind::Refused => Outcome::Blocked { steps, reason },
        BlockKind::Waiting => Outcome::Waiting { steps, reason },
    }
}

/// `1st`, `2nd`, `3rd`, `4th`…
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `once`, `twice`, `3 times`…
fn times(n: u32) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// `d` to the millisecond, for the log.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Tells `waits` what `plan` decided for `service` (see [`take_wait::TakeWait::planned`]).
pub fn planned(observer: &Observer, waits: &Waits, service: &Service, plan: &ServicePlan) {
    waits.take.planned(
        &service.name,
        plan.placement.as_ref(),
        Instant::now(),
        observer.config().failover_delay,
        take_wait::seed(&service.name),
    );
}

/// A connection as drbdadm names it: `RES`, or `RES:PEER`.
fn connection_key(res: &str, peer: Option<&str>) -> String {
    match peer {
        Some(peer) => format!("{res}:{peer}"),
        None => res.to_string(),
    }
}

/// A service that needs more steps than this in one run is not converging (each step changes
/// one resource; the deepest stack has a few dozen).
pub const MAX_STEPS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    /// Matches its manifest; `steps` is how many actions this run took.
    Converged { steps: usize },
    /// A safety rule refused; nothing unsafe was run.
    Blocked { steps: usize, reason: String },
    /// Waiting for something outside converge that passes by itself: a peer to step down (the
    /// middle of a switchover) or to come into sight, the system to bring a DRBD resource up
    /// (`up_by: system`). Not a failure: DRBD's events bring the service back.
    Waiting { steps: usize, reason: String },
    /// An action failed (after a rollback when `rolled_back`).
    Failed {
        steps: usize,
        error: String,
        rolled_back: bool,
    },
    /// Converge is shutting down: stopped between two steps, with nothing half done.
    Interrupted { steps: usize },
    /// A failover service this node must give up (its partition lost quorum) that it cannot
    /// stop: a stop script fails, the filesystem stays busy, the device stays held open. The
    /// node stays Primary without quorum (DRBD fails its I/O) and the other side may take the
    /// service over. Retried as a failure is; said loudly.
    Stuck { steps: usize, reason: String },
    /// To be looked at again `after` this long, with the manifests then in force: a failover
    /// node waiting its rank before it promotes (see [`super::take_wait`]). `reason` says why.
    Requeue {
        steps: usize,
        #[serde(with = "humantime_serde")]
        after: Duration,
        reason: String,
    },
}

impl Outcome {
    /// This outcome, with `earlier` steps taken before it (by runs it follows).
    fn after(mut self, earlier: usize) -> Outcome {
        match &mut self {
            Outcome::Converged { steps }
            | Outcome::Blocked { steps, .. }
            | Outcome::Waiting { steps, .. }
            | Outcome::Failed { steps, .. }
            | Outcome::Interrupted { steps }
            | Outcome::Stuck { steps, .. }
            | Outcome::Requeue { steps, .. } => *steps += earlier,
        }
        self
    }

    /// What the scheduler does next, as this outcome says: a converged or blocked service waits
    /// for a change, a failed one is retried after a backoff.
    pub fn next(&self) -> Next {
        match self {
            Outcome::Converged { .. } | Outcome::Blocked { .. } | Outcome::Waiting { .. } => {
                Next::AwaitChange
            }
            Outcome::Failed { .. } | Outcome::Stuck { .. } => Next::Retry,
            Outcome::Interrupted { .. } => Next::Stop,
            Outcome::Requeue { after, .. } => Next::RequeueAfter(*after),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceReport {
    pub service: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub services: Vec<ServiceReport>,
}

impl Report {
    /// 0 converged, 1 failed or stuck (any), 3 blocked (any, none failed), 4 waiting or to be
    /// looked at again (any, none failed or blocked).
    pub fn exit_code(&self) -> u8 {
        let outcomes = || self.services.iter().map(|s| &s.outcome);
        if outcomes().any(|o| {
            matches!(
                o,
                Outcome::Failed { .. } | Outcome::Interrupted { .. } | Outcome::Stuck { .. }
            )
        }) {
            1
        } else if outcomes().any(|o| matches!(o, Outcome::Blocked { .. })) {
            3
        } else if outcomes().any(|o| matches!(o, Outcome::Waiting { .. } | Outcome::Requeue { .. }))
        {
            4
        } else {
            0
        }
    }
}

/// Reconciles every service once. Services already converged cost nothing past the first,
/// batched observation.
pub async fn reconcile_once(observer: Arc<Observer>, services: Vec<Service>) -> Report {
    let node = observer.observe(&services).await;
    let first = plan::plan(&services, &node);
    // One run reconnects a connection at most once a reconcile: no backoff to wait out.
    let waits = Arc::new(Waits {
        reconnect: super::reconnect_wait::ReconnectWait::off(),
        ..Waits::default()
    });
    // Each service's DRBD resources with a file, for the report's look at those files.
    let services_by_name: std::collections::HashMap<String, Vec<String>> = services
        .iter()
        .map(|s| {
            let res = s.drbd_files().map(|(_, d, _)| d.res.clone()).collect();
            (s.name.clone(), res)
        })
        .collect();
    let mut tasks = JoinSet::new();
    let mut names = std::collections::HashMap::new();
    let mut reports = Vec::new();
    for (service, service_plan) in services.into_iter().zip(first.services) {
        if service_plan.is_converged() {
            reports.push(ServiceReport {
                service: service.name,
                outcome: Outcome::Converged { steps: 0 },
            });
            continue;
        }
        // The batch plan has no notes of what is already as wanted; the log of a service that
        // acts tells them. The same observation: the same steps.
        let service_plan = plan::plan_service(&service, &node);
        let observer = Arc::clone(&observer);
        let name = service.name.clone();
        let waits = Arc::clone(&waits);
        let handle = tasks.spawn(async move {
            let outcome = reconcile_to_rest(&observer, &service, service_plan, &waits).await;
            ServiceReport {
                service: service.name,
                outcome,
            }
        });
        names.insert(handle.id(), name);
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        match joined {
            Ok((_, report)) => reports.push(report),
            // A panic in a service task is a bug in converge; it must not take the others
            // down, nor vanish from the report (and the exit code).
            Err(e) => {
                let service = names
                    .get(&e.id())
                    .cloned()
                    .unwrap_or_else(|| "(unknown service)".into());
                tracing::error!(service = %service, "the reconcile ended abnormally: {e}");
                reports.push(ServiceReport {
                    service,
                    outcome: Outcome::Failed {
                        steps: 0,
                        error: format!("internal error: {e}"),
                        rolled_back: false,
                    },
                });
            }
        }
    }
    // A resource file drbdadm refused kept the installed one in force, as a broken manifest
    // keeps its last good version: the service may be as it was, but what the directory
    // asks for is not in force, which a run meant to apply it (CI) must not call a success.
    for report in &mut reports {
        if !matches!(report.outcome, Outcome::Converged { .. }) {
            continue;
        }
        if let Some(why) = refused_file(&node, &services_by_name, &report.service) {
            report.outcome = Outcome::Failed {
                steps: 0,
                error: why,
                rolled_back: false,
            };
        }
    }
    reports.sort_by(|a, b| a.service.cmp(&b.service));
    Report { services: reports }
}

/// Why a resource file the service names is refused, when one is.
fn refused_file(
    node: &converge_core::observe::NodeState,
    services: &std::collections::HashMap<String, Vec<String>>,
    service: &str,
) -> Option<String> {
    services
        .get(service)?
        .iter()
        .find_map(|res| match &node.drbd_files.get(res)?.state {
            converge_core::observe::DrbdFileState::Refused { why, .. } => Some(why.clone()),
            _ => None,
        })
}

/// How many times one service of `reconcile --once` is looked at again after a requeue before
/// it is reported waiting: a failover node's rank wait takes one; more mean its placement keeps
/// changing under it.
const MAX_REQUEUES: usize = 16;

/// `reconcile --once` of one service: [`reconcile_service`] until it is converged, blocked or
/// failed. A requeue is waited out here, then the service is observed and planned again: the
/// manifests do not change during one run.
async fn reconcile_to_rest(
    observer: &Observer,
    service: &Service,
    mut plan: ServicePlan,
    waits: &Waits,
) -> Outcome {
    let stopping = AtomicBool::new(false);
    let mut earlier = 0;
    for _ in 0..MAX_REQUEUES {
        match reconcile_service(observer, service, plan, &stopping, waits).await {
            Outcome::Requeue { steps, after, .. } => {
                earlier += steps;
                tokio::time::sleep(after).await;
                let node = observer.observe(std::slice::from_ref(service)).await;
                plan = plan::plan_service(service, &node);
            }
            outcome => return outcome.after(earlier),
        }
    }
    Outcome::Waiting {
        steps: earlier,
        reason: format!(
            "looked at again {MAX_REQUEUES} times without coming to rest (its failover placement keeps changing)"
        ),
    }
}

/// Reconciles one service from `plan` (made from a fresh observation) until it is converged,
/// blocked or failed, or says when to look at it again (a failover node waiting its rank:
/// `waits` remembers since when, across reconciles).
///
/// `stopping` is checked between steps: once set, the service stops after the step in progress
/// (which runs to its end or its timeout), so a shutdown never leaves an action half done.
pub async fn reconcile_service(
    observer: &Observer,
    service: &Service,
    plan: ServicePlan,
    stopping: &AtomicBool,
    waits: &Waits,
) -> Outcome {
    let giving_up = matches!(plan.placement, Some(Decision::GiveUp(GiveUp::QuorumLost)));
    let outcome = reconcile_steps(observer, service, plan, stopping, waits).await;
    match outcome {
        Outcome::Blocked { steps, reason }
        | Outcome::Failed {
            steps,
            error: reason,
            ..
        } if giving_up => {
            tracing::error!(
                service = %service.name,
                "STUCK: this node lost quorum and must give the service up, but cannot: {reason}. It stays Primary without quorum (DRBD fails its I/O); the other side may take the service over. Fix what holds it (see docs/operations.md, \"Stuck\"); retried meanwhile"
            );
            Outcome::Stuck { steps, reason }
        }
        outcome => outcome,
    }
}

/// [`reconcile_service`]'s steps.
async fn reconcile_steps(
    observer: &Observer,
    service: &Service,
    mut plan: ServicePlan,
    stopping: &AtomicBool,
    waits: &Waits,
) -> Outcome {
    let service_log = |message: String| tracing::info!(service = %service.name, "{message}");
    // A failover service's desired state comes from DRBD: the log says why it is what it is.
    let why = plan
        .placement
        .as_ref()
        .map(|decision| format!(" (failover: {decision})"))
        .unwrap_or_default();
    service_log(format!(
        "reconcile: desired {}, {} step(s) planned{why}",
        plan.desired,
        plan.steps.len()
    ));
    for (rid, note) in &plan.satisfied {
        ResourceLog::new(service, *rid).info(note);
    }
    for warning in &plan.warnings {
        tracing::warn!(service = %service.name, "{warning}");
    }
    let mut done: Vec<Step> = Vec::new();
    // Optional resources whose action failed this run: warned about, then left out.
    let mut skipped: BTreeSet<ResourceId> = BTreeSet::new();
    // Reconnections held back by their backoff, left out of this run (the rest goes on), and
    // when to look again for them.
    let mut held: Vec<String> = Vec::new();
    let mut again: Option<Duration> = None;
    let not_held = |held: &[String], s: &Step| match &s.action {
        Action::DrbdConnect { res, peer } => !held.contains(&connection_key(res, peer.as_deref())),
        _ => true,
    };
    while done.len() < MAX_STEPS {
        if stopping.load(Ordering::SeqCst) && !plan.steps.is_empty() {
            tracing::info!(service = %service.name, "shutting down: {} step(s) left for next time", plan.steps.len());
            return Outcome::Interrupted { steps: done.len() };
        }
        let Some(step) = plan.steps.first().cloned() else {
            return match plan.blocked {
                Some(blocked) => {
                    let log = ResourceLog::new(service, blocked.rid);
                    match blocked.kind {
                        BlockKind::Refused => log.warn(format_args!("blocked: {}", blocked.reason)),
                        BlockKind::Waiting => log.info(format_args!("waiting: {}", blocked.reason)),
                    }
                    blocked_outcome(&blocked, done.len())
                }
                None => match again {
                    Some(after) => Outcome::Requeue {
                        steps: done.len(),
                        after,
                        reason: format!("reconnecting {} after its backoff", held.join(", ")),
                    },
                    None => Outcome::Converged { steps: done.len() },
                },
            };
        };
        // A node listed before it that contends too (one it cannot see, bridged by a third
        // node) promotes first, and DRBD refuses the later one. The wait spans reconciles, each
        // with the manifests in force when it starts: see `take_wait`.
        if let (Action::DrbdPrimary { .. }, Some(Decision::Take { rank })) =
            (&step.action, &plan.placement)
        {
            let wait = observer
                .config()
                .failover_delay
                .saturating_mul(u32::try_from(*rank).unwrap_or(u32::MAX));
            match waits.take.check(&service.name, *rank, wait, Instant::now()) {
                Wait::Over => {}
                Wait::Left { left, why, first } => {
                    let reason = match why {
                        Why::Rank => format!(
                            "failover: this node may take the service; waiting {} (listed {}), so that a node listed before it that also may takes it first",
                            humantime::format_duration(wait),
                            ordinal(*rank + 1)
                        ),
                        Why::Lost { streak, hold } => format!(
                            "failover: this node may take the service, but it lost it {} ago ({} in a row); holding off {} in all before it takes it again (anti-flap)",
                            humantime::format_duration(round_ms(hold.saturating_sub(left))),
                            times(streak),
                            humantime::format_duration(round_ms(hold))
                        ),
                    };
                    if first {
                        ResourceLog::new(service, step.rid).info(&reason);
                    }
                    return Outcome::Requeue {
                        steps: done.len(),
                        after: left,
                        reason: format!("{}: {reason}", step.rid),
                    };
                }
            }
        } else {
            planned(observer, waits, service, &plan);
        }
        // A connection that keeps falling back to StandAlone is reconnected less and less
        // often: see `reconnect_wait`.
        if let Action::DrbdConnect { res, peer } = &step.action {
            let connection = connection_key(res, peer.as_deref());
            if let Some((left, count)) = waits.reconnect.left(&connection, Instant::now()) {
                ResourceLog::new(service, step.rid).info(format_args!(
                    "connection {connection} is StandAlone again after {count} reconnection{} in a row; reconnecting in {}",
                    if count == 1 { "" } else { "s" },
                    humantime::format_duration(round_ms(left))
                ));
                held.push(connection);
                again = Some(again.map_or(left, |a| a.min(left)));
                plan.steps.retain(|s| not_held(&held, s));
                continue;
            }
            waits.reconnect.attempted(&connection, Instant::now());
        }
        if let Err(error) = act::run_step(observer, service, &step).await {
            let optional = service.resource(step.rid).is_some_and(|r| r.optional);
            if optional && !error.is_blocked() {
                ResourceLog::new(service, step.rid).warn(format_args!(
                    "{error} (optional: the rest of the service goes on)"
                ));
                skipped.insert(step.rid);
                plan.steps.retain(|s| !skipped.contains(&s.rid));
                continue;
            }
            return handle_error(
                observer,
                service,
                rolls_back(&plan),
                &done,
                Some(&step),
                error,
            )
            .await;
        }
        done.push(step.clone());
        let (node, next) = observe_and_plan(observer, service, service).await;
        plan = next;
        plan.steps
            .retain(|s| !skipped.contains(&s.rid) && not_held(&held, s));
        // A step that succeeded but left the node as it was would be planned forever.
        if plan.steps.first() == Some(&step) {
            let scripts = node.scripts_of(&service.name, step.rid);
            let program = command::for_step(&step, service, &observer.config().commands, scripts);
            let error = ActError::Failed {
                rid: step.rid,
                message: format!(
                    "`{}` succeeded but changed nothing observable ({})",
                    program.lines().join("; "),
                    step.reason
                ),
            };
            return handle_error(
                observer,
                service,
                rolls_back(&plan),
                &done,
                Some(&step),
                error,
            )
            .await;
        }
    }
    Outcome::Failed {
        steps: done.len(),
        error: format!("not converged after {MAX_STEPS} steps"),
        rolled_back: false,
    }
}

/// What a failed step of `plan` leaves to [`handle_error`]: the desired state a rollback undoes
/// a start of, or none. A holder that freezes on a quorum loss never rolls back: stopping what
/// it failed to freeze would hang on the I/O DRBD suspends.
fn rolls_back(plan: &ServicePlan) -> DesiredState {
    if plan.placement == Some(Decision::Freeze) {
        DesiredState::Frozen
    } else {
        plan.desired
    }
}

/// How long a block found right after a step is looked at again before it stands: a step's
/// effect can take a moment to show everywhere. After an unmount, the processes of a container
/// that is exiting may hold the filesystem, and so the DRBD device, for a moment; DRBD would
/// refuse the demotion (exit 11) until they are gone, and so does the planner.
pub const SETTLE: Duration = Duration::from_secs(3);

/// Observes `service` and plans `target` (the service itself, or its stop for a rollback), right
/// after a step. A plan with nothing to do but a block is made again from fresh observations,
/// with short pauses, for up to [`SETTLE`]: a lasting block is reported that much later, a
/// passing one is not reported at all.
async fn observe_and_plan(
    observer: &Observer,
    service: &Service,
    target: &Service,
) -> (NodeState, ServicePlan) {
    let deadline = Instant::now() + SETTLE;
    let mut pause = Duration::from_millis(100);
    loop {
        let node = observer.observe(std::slice::from_ref(service)).await;
        let plan = plan::plan_service(target, &node);
        let now = Instant::now();
        if !plan.steps.is_empty() || plan.blocked.is_none() || now >= deadline {
            return (node, plan);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn handle_error(
    observer: &Observer,
    service: &Service,
    desired: DesiredState,
    done: &[Step],
    failed: Option<&Step>,
    error: ActError,
) -> Outcome {
    let (rid, text) = match &error {
        ActError::Failed { rid, message } => (*rid, message.clone()),
        ActError::Blocked { rid, reason } => {
            ResourceLog::new(service, *rid).warn(format_args!("blocked: {reason}"));
            return Outcome::Blocked {
                steps: done.len(),
                reason: format!("{rid}: {reason}"),
            };
        }
        ActError::Waiting { rid, reason } => {
            ResourceLog::new(service, *rid).info(format_args!("waiting: {reason}"));
            return Outcome::Waiting {
                steps: done.len(),
                reason: format!("{rid}: {reason}"),
            };
        }
    };
    let log = ResourceLog::new(service, rid);
    log.error(&text);
    // What this run touched: the resources of its done steps and the one that failed (which
    // may have done part of its work, e.g. a container started but never operational).
    let touched: BTreeSet<ResourceId> = done.iter().map(|s| s.rid).chain([rid]).collect();
    let rolled_back = if desired == DesiredState::Up && service.rollback {
        // An app whose start failed midway may have started some of its scripts: its stop
        // scripts run whatever a check says (they are meant to be safe to run twice).
        if let Some(
            step @ Step {
                action: Action::AppStart,
                ..
            },
        ) = failed
        {
            tracing::warn!(service = %service.name, "rollback: stopping {} after its failed start", step.rid);
            let stop = Step {
                rid: step.rid,
                action: Action::AppStop,
                reason: "rollback".into(),
            };
            if let Err(e) = act::run_step(observer, service, &stop).await {
                ResourceLog::new(service, step.rid).error(format_args!("rollback: {e}"));
            }
        }
        roll_back(observer, service, &touched).await
    } else {
        false
    };
    Outcome::Failed {
        steps: done.len(),
        error: error.to_string(),
        rolled_back,
    }
}

/// Undoes a failed start: plans the service down from fresh observations, as any stop is
/// planned (so every safety rule holds: never demote under a mount), and runs the steps that
/// concern `touched` resources, in order. Stops at the first step that is not this run's to
/// undo, or that fails. True when nothing of `touched` is left up.
async fn roll_back(observer: &Observer, service: &Service, touched: &BTreeSet<ResourceId>) -> bool {
    let mut down = service.clone();
    down.state = DesiredState::Down;
    down.placement = Placement::Everywhere;
    tracing::warn!(service = %service.name, "rollback: undoing what this run started");
    for _ in 0..MAX_STEPS {
        let (_, plan) = observe_and_plan(observer, service, &down).await;
        let Some(step) = plan.steps.first() else {
            if let Some(blocked) = plan.blocked.filter(|b| touched.contains(&b.rid)) {
                ResourceLog::new(service, blocked.rid)
                    .error(format_args!("rollback stopped: {}", blocked.reason));
                return false;
            }
            return true;
        };
        if !touched.contains(&step.rid) {
            // Stopping something this run did not start would go beyond undoing the run.
            return !plan.steps.iter().any(|s| touched.contains(&s.rid));
        }
        if let Err(e) = act::run_step(observer, service, step).await {
            ResourceLog::new(service, step.rid).error(format_args!("rollback stopped: {e}"));
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_freeze_is_never_rolled_back_a_failed_start_is() {
        let plan = |placement: Option<Decision>| ServicePlan {
            service: "web".into(),
            desired: DesiredState::Up,
            steps: Vec::new(),
            blocked: None,
            warnings: Vec::new(),
            satisfied: Vec::new(),
            placement,
        };
        // handle_error rolls back only what `desired: up` started.
        assert_eq!(
            rolls_back(&plan(Some(Decision::Freeze))),
            DesiredState::Frozen
        );
        assert_eq!(rolls_back(&plan(Some(Decision::Keep))), DesiredState::Up);
        assert_eq!(
            rolls_back(&plan(Some(Decision::Take { rank: 1 }))),
            DesiredState::Up
        );
        assert_eq!(rolls_back(&plan(None)), DesiredState::Up);
    }

    #[test]
    fn ordinals_read_as_english() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .map(ordinal)
            .into();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }

    fn report(outcomes: Vec<Outcome>) -> Report {
        Report {
            services: outcomes
                .into_iter()
                .enumerate()
                .map(|(i, outcome)| ServiceReport {
                    service: format!("s{i}"),
                    outcome,
                })
                .collect(),
        }
    }

    #[test]
    fn exit_code_failed_beats_blocked_beats_converged() {
        let converged = Outcome::Converged { steps: 1 };
        let blocked = Outcome::Blocked {
            steps: 0,
            reason: "r".into(),
        };
        let failed = Outcome::Failed {
            steps: 0,
            error: "e".into(),
            rolled_back: false,
        };
        assert_eq!(report(vec![converged.clone()]).exit_code(), 0);
        assert_eq!(
            report(vec![converged.clone(), blocked.clone()]).exit_code(),
            3
        );
        assert_eq!(
            report(vec![blocked.clone(), failed, converged.clone()]).exit_code(),
            1
        );
        assert_eq!(report(vec![]).exit_code(), 0);
        // A holder that cannot give the service up is as loud as a failure; one waiting its
        // rank is waiting.
        let stuck = Outcome::Stuck {
            steps: 3,
            reason: "held open".into(),
        };
        assert_eq!(report(vec![blocked, stuck.clone()]).exit_code(), 1);
        assert_eq!(stuck.next(), Next::Retry);
        let requeue = Outcome::Requeue {
            steps: 0,
            after: Duration::from_secs(1),
            reason: "rank".into(),
        };
        assert_eq!(report(vec![converged, requeue.clone()]).exit_code(), 4);
        assert_eq!(requeue.next(), Next::RequeueAfter(Duration::from_secs(1)));
    }
}
