//! The text renderers of the commands' results: the plan, the status table, the daemon's view,
//! the report of a reconcile. JSON output is serde's; these are the human forms.

use std::io::Write;

use converge_core::command;
use converge_core::config::Config;
use converge_core::manifest::Service;
use converge_core::observe::{NodeState, Observed};
use converge_core::plan::{BlockKind, Plan};
use converge_core::status::ServiceStatus;
use converge_node::controller::daemon::DaemonView;
use converge_node::controller::once::{Outcome, Report};

/// One line per service: converged, blocked (why) or failed (why, rolled back or not).
pub fn write_report(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    for s in &report.services {
        match &s.outcome {
            Outcome::Converged { steps } => {
                writeln!(out, "{}: converged ({steps} action(s))", s.service)?
            }
            Outcome::Blocked { reason, .. } => writeln!(out, "{}: blocked: {reason}", s.service)?,
            Outcome::Waiting { reason, .. } => writeln!(out, "{}: waiting: {reason}", s.service)?,
            Outcome::Requeue { reason, after, .. } => writeln!(
                out,
                "{}: waiting: {reason} (looked at again in {after:?})",
                s.service
            )?,
            Outcome::Stuck { reason, .. } => writeln!(
                out,
                "{}: STUCK: lost quorum and cannot give the service up: {reason}",
                s.service
            )?,
            Outcome::Interrupted { steps } => {
                writeln!(out, "{}: interrupted after {steps} action(s)", s.service)?
            }
            Outcome::Failed {
                error, rolled_back, ..
            } => writeln!(
                out,
                "{}: failed: {error}{}",
                s.service,
                if *rolled_back { " (rolled back)" } else { "" }
            )?,
        }
    }
    Ok(())
}

/// The daemon's view: what it holds in force, and how each service fared.
pub fn write_daemon_view(
    out: &mut impl Write,
    holder: &str,
    view: &DaemonView,
) -> std::io::Result<()> {
    writeln!(
        out,
        "daemon: {holder}; manifests {} at revision {}; updated {}",
        view.manifests.display(),
        view.revision.as_deref().unwrap_or("unknown"),
        view.updated
    )?;
    for error in &view.errors {
        writeln!(out, "! {error} (last good version in force)")?;
    }
    for notice in &view.notices {
        writeln!(out, "! {notice}")?;
    }
    for s in &view.services {
        writeln!(
            out,
            "{:<32} {:<9} converged: {:<3} (desired {}) {}",
            s.service,
            s.status.map_or("-", |status| status.as_str()),
            match s.converged {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            s.desired,
            s.result
        )?;
        if s.status.is_some() {
            writeln!(out, "  runs on: {}", runs_on(&s.runs_on))?;
        }
        for line in &s.drbd {
            writeln!(out, "  {line}")?;
        }
        if let Some(decision) = &s.failover {
            writeln!(out, "  failover: {decision}")?;
        }
        if let Some(retry) = &s.next_retry {
            writeln!(out, "  next retry at {retry}")?;
        }
        // The newest first: when, what it came to, how long it took, why it ran.
        for r in &s.history {
            writeln!(
                out,
                "  reconciled {}: {} in {} ms ({})",
                r.at, r.result, r.took_ms, r.trigger
            )?;
        }
    }
    Ok(())
}

/// The status table: one line per service, then one per resource.
pub fn write_status(
    out: &mut impl Write,
    node: &NodeState,
    statuses: &[ServiceStatus],
) -> std::io::Result<()> {
    write_unavailable(out, node)?;
    for s in statuses {
        let desired = match (&s.node, &s.failover, s.standby) {
            (Some(pin), _, true) => format!("desired up on {pin}; standby here"),
            (Some(pin), _, false) => format!("desired {} on {pin}", s.desired),
            (None, Some(f), true) => format!(
                "desired up, fails over: {}; standby here",
                f.nodes.join(", ")
            ),
            (None, Some(f), false) => {
                format!("desired {}, fails over: {}", s.desired, f.nodes.join(", "))
            }
            (None, None, _) => format!("desired {}", s.desired),
        };
        writeln!(
            out,
            "{:<32} {:<9} converged: {:<3} ({desired})",
            s.service,
            s.status.to_string(),
            if s.converged { "yes" } else { "no" },
        )?;
        writeln!(out, "  runs on: {}", runs_on(&s.runs_on))?;
        if let Some(decision) = s.failover.as_ref().and_then(|f| f.decision.as_ref()) {
            writeln!(out, "  failover: {decision}")?;
        }
        if let Some(blocked) = &s.blocked {
            writeln!(
                out,
                "  {}: {}: {}",
                block_word(blocked.kind),
                blocked.rid,
                blocked.reason
            )?;
        }
        for r in &s.resources {
            writeln!(
                out,
                "  {:<14} {:<9} {}",
                r.rid.to_string(),
                r.status.to_string(),
                r.detail
            )?;
        }
    }
    Ok(())
}

fn write_unavailable(out: &mut impl Write, node: &NodeState) -> std::io::Result<()> {
    for (source, observed) in [
        ("DRBD", unavailable(&node.drbd)),
        ("mounts", unavailable(&node.mounts)),
        ("OpenVZ", unavailable(&node.vz)),
        ("LXC", unavailable(&node.lxc)),
    ] {
        if let Some(why) = observed {
            writeln!(out, "! {source}: {why}")?;
        }
    }
    Ok(())
}

/// The readable plan: what cannot be observed, then per service its steps, then a summary.
pub fn write_plan(
    out: &mut impl Write,
    config: &Config,
    services: &[Service],
    node: &NodeState,
    plan: &Plan,
) -> std::io::Result<()> {
    write_unavailable(out, node)?;
    for (service, sp) in services.iter().zip(&plan.services) {
        let state = if sp.is_converged() {
            "converged"
        } else {
            "not converged"
        };
        let pinned = match service.pinned_node() {
            Some(pin) if service.stands_by_here(&node.node) => {
                format!(", pinned to node {pin}: standby here")
            }
            Some(pin) if pin != node.node => format!(", pinned to node {pin}"),
            _ => match (service.failover(), &sp.placement) {
                (Some(f), Some(decision)) => {
                    format!(", fails over: {}; {decision}", f.nodes.join(", "))
                }
                (Some(f), None) => format!(", fails over: {}", f.nodes.join(", ")),
                (None, _) => String::new(),
            },
        };
        writeln!(
            out,
            "{} (desired {} on {}{pinned}): {state}",
            sp.service, sp.desired, node.node
        )?;
        for step in &sp.steps {
            let label = step.rid.to_string();
            let scripts = node.scripts_of(&service.name, step.rid);
            let program = command::for_step(step, service, &config.commands, scripts);
            for (i, line) in program.lines().iter().enumerate() {
                if i == 0 {
                    writeln!(out, "  + {label:<12} {line}    # {}", step.reason)?;
                } else {
                    writeln!(out, "    {:<12} {line}", "")?;
                }
            }
        }
        if let Some(blocked) = &sp.blocked {
            writeln!(
                out,
                "  ! {:<12} {}: {}",
                blocked.rid.to_string(),
                block_word(blocked.kind),
                blocked.reason
            )?;
        }
        for warning in &sp.warnings {
            writeln!(out, "  ~ warning: {warning}")?;
        }
    }
    let converged = plan.services.iter().filter(|s| s.is_converged()).count();
    let waiting_count = plan
        .services
        .iter()
        .filter(|s| {
            s.blocked
                .as_ref()
                .is_some_and(|b| b.kind == BlockKind::Waiting)
        })
        .count();
    // Said only when there is some: most plans never wait.
    let waiting = if waiting_count > 0 {
        format!(", {waiting_count} waiting")
    } else {
        String::new()
    };
    writeln!(
        out,
        "Plan: {} action{} in {} service{}, {} blocked{waiting}, {converged} converged.",
        plan.step_count(),
        if plan.step_count() == 1 { "" } else { "s" },
        plan.services.len(),
        if plan.services.len() == 1 { "" } else { "s" },
        plan.blocked_count() - waiting_count,
    )
}

fn block_word(kind: BlockKind) -> &'static str {
    match kind {
        BlockKind::Refused => "blocked",
        BlockKind::Waiting => "waiting",
    }
}

fn unavailable<T>(observed: &Observed<T>) -> Option<&str> {
    match observed {
        Observed::Ok(_) => None,
        Observed::Unavailable(why) => Some(why),
    }
}

fn runs_on(nodes: &[String]) -> String {
    if nodes.is_empty() {
        "nowhere this node can see".to_string()
    } else {
        nodes.join(", ")
    }
}
