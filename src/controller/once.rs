//! `converge reconcile --once`: observe all services in one batched pass, then reconcile each
//! service that is not converged, in parallel: run its next step, observe it again, plan again,
//! until it is converged, blocked or failed.
//!
//! A start that fails midway is rolled back — what this run did for that service is undone in
//! reverse — unless the service sets `rollback: false`. A refusal by a safety rule is not rolled
//! back: nothing failed, and what was done is safe to keep.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::act::{self, ActError, log::ResourceLog};
use crate::config::Config;
use crate::manifest::{DesiredState, Service};
use crate::observe::runner::observe;
use crate::plan::{self, ServicePlan, Step};

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
    /// An action failed (after a rollback when `rolled_back`).
    Failed {
        steps: usize,
        error: String,
        rolled_back: bool,
    },
    /// Converge is shutting down: stopped between two steps, with nothing half done.
    Interrupted { steps: usize },
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
    /// 0 converged, 1 failed (any), 3 blocked (any, none failed).
    pub fn exit_code(&self) -> u8 {
        let outcomes = || self.services.iter().map(|s| &s.outcome);
        if outcomes().any(|o| matches!(o, Outcome::Failed { .. } | Outcome::Interrupted { .. })) {
            1
        } else if outcomes().any(|o| matches!(o, Outcome::Blocked { .. })) {
            3
        } else {
            0
        }
    }
}

/// Reconciles every service once. Services already converged cost nothing past the first,
/// batched observation.
pub async fn reconcile_once(config: Arc<Config>, services: Vec<Service>) -> Report {
    let node = observe(&config, &services).await;
    let first = plan::plan(&services, &node);
    let mut tasks = JoinSet::new();
    let mut reports = Vec::new();
    for (service, service_plan) in services.into_iter().zip(first.services) {
        if service_plan.is_converged() {
            reports.push(ServiceReport {
                service: service.name,
                outcome: Outcome::Converged { steps: 0 },
            });
            continue;
        }
        let config = Arc::clone(&config);
        tasks.spawn(async move {
            let outcome =
                reconcile_service(&config, &service, service_plan, &AtomicBool::new(false)).await;
            ServiceReport {
                service: service.name,
                outcome,
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            // A panic in a service task is a bug in converge; it must not take the others down.
            Err(e) => tracing::error!("a service reconcile ended abnormally: {e}"),
        }
    }
    reports.sort_by(|a, b| a.service.cmp(&b.service));
    Report { services: reports }
}

/// Reconciles one service from `plan` (made from a fresh observation) until it is converged,
/// blocked or failed.
///
/// `stopping` is checked between steps: once set, the service stops after the step in progress
/// (which runs to its end or its timeout), so a shutdown never leaves an action half done.
pub async fn reconcile_service(
    config: &Config,
    service: &Service,
    mut plan: ServicePlan,
    stopping: &AtomicBool,
) -> Outcome {
    let service_log = |message: String| tracing::info!(service = %service.name, "{message}");
    service_log(format!(
        "reconcile: desired {}, {} step(s) planned",
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
    while done.len() < MAX_STEPS {
        if stopping.load(Ordering::SeqCst) && !plan.steps.is_empty() {
            tracing::info!(service = %service.name, "shutting down: {} step(s) left for next time", plan.steps.len());
            return Outcome::Interrupted { steps: done.len() };
        }
        let Some(step) = plan.steps.first().cloned() else {
            return match plan.blocked {
                Some(blocked) => {
                    let reason = format!("{}: {}", blocked.rid, blocked.reason);
                    ResourceLog::new(service, blocked.rid)
                        .warn(format_args!("blocked: {}", blocked.reason));
                    Outcome::Blocked {
                        steps: done.len(),
                        reason,
                    }
                }
                None => Outcome::Converged { steps: done.len() },
            };
        };
        if let Err(error) = act::run_step(config, service, &step).await {
            return handle_error(config, service, plan.desired, &done, error).await;
        }
        done.push(step.clone());
        let node = observe(config, std::slice::from_ref(service)).await;
        plan = plan::plan_service(service, &node);
        // A step that succeeded but left the node as it was would be planned forever.
        if plan.steps.first() == Some(&step) {
            let error = ActError::Failed {
                rid: step.rid,
                message: format!(
                    "`{}` succeeded but changed nothing observable ({})",
                    act::command::describe(&step, service, &config.commands).join("; "),
                    step.reason
                ),
            };
            return handle_error(config, service, plan.desired, &done, error).await;
        }
    }
    Outcome::Failed {
        steps: done.len(),
        error: format!("not converged after {MAX_STEPS} steps"),
        rolled_back: false,
    }
}

async fn handle_error(
    config: &Config,
    service: &Service,
    desired: DesiredState,
    done: &[Step],
    error: ActError,
) -> Outcome {
    let (rid, text) = match &error {
        ActError::Failed { rid, message } => (*rid, message.clone()),
        ActError::Blocked { rid, reason } => (*rid, reason.clone()),
    };
    let log = ResourceLog::new(service, rid);
    if error.is_blocked() {
        log.warn(format_args!("blocked: {text}"));
        return Outcome::Blocked {
            steps: done.len(),
            reason: error.to_string(),
        };
    }
    log.error(&text);
    let undo: Vec<Step> = done
        .iter()
        .rev()
        .filter_map(|s| {
            act::undo(&s.action).map(|action| Step {
                rid: s.rid,
                action,
                reason: "rollback".into(),
            })
        })
        .collect();
    let rolled_back = desired == DesiredState::Up && service.rollback && !undo.is_empty();
    if rolled_back {
        tracing::warn!(service = %service.name, "rollback: undoing {} action(s) of this run", undo.len());
        for step in &undo {
            if let Err(e) = act::run_step(config, service, step).await {
                // Going on after a failed undo could demote under a mount: stop here.
                ResourceLog::new(service, step.rid).error(format_args!("rollback stopped: {e}"));
                break;
            }
        }
    }
    Outcome::Failed {
        steps: done.len(),
        error: error.to_string(),
        rolled_back,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(report(vec![blocked, failed, converged]).exit_code(), 1);
        assert_eq!(report(vec![]).exit_code(), 0);
    }
}
