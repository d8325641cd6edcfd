//! Apps: S* scripts run with `start` in name order, K* with `stop` (or the explicit `start` /
//! `stop` argv) — inside the service's container when it has one. Each run's output goes to its
//! own log file, `<log_dir>/svc_<service>_<script>.log`, overwritten per run.

use std::path::PathBuf;
use std::time::Duration;

use super::command::shell_line;
use super::{ActError, Ctx};
use crate::manifest::{AppCommands, AppSpec, Spec};
use crate::observe::runner::{Listing, list_scripts};
use crate::state;

fn spec<'s>(ctx: &'s Ctx<'_>) -> Option<&'s AppSpec> {
    ctx.spec().and_then(Spec::as_app)
}

/// (label, argv) of what `start` or `stop` runs, in order.
async fn commands(ctx: &Ctx<'_>, app: &AppSpec, start: bool) -> Vec<(String, Vec<String>)> {
    let container = ctx.service.container().map(|c| &c.kind);
    let commands = &ctx.config.commands;
    match &app.commands {
        AppCommands::Scripts(dir) => {
            let (prefix, arg) = if start { ('S', "start") } else { ('K', "stop") };
            list_scripts(
                ctx.config,
                (&ctx.service.name, ctx.rid),
                dir,
                container,
                prefix,
                Listing::Fresh,
            )
            .await
            .into_iter()
            .map(|(name, path)| {
                (
                    name,
                    commands.in_container(container, vec![path, arg.to_string()]),
                )
            })
            .collect()
        }
        AppCommands::Argv {
            start: s, stop: k, ..
        } => match if start { s } else { k } {
            Some(argv) => {
                // The resource id keeps two apps running the same program from sharing a log.
                let program = argv.first().map(|p| {
                    std::path::Path::new(p)
                        .file_name()
                        .map_or_else(|| p.clone(), |n| n.to_string_lossy().into_owned())
                });
                let label = format!("{}-{}", ctx.rid, program.unwrap_or_default());
                vec![(label, commands.in_container(container, argv.clone()))]
            }
            None => Vec::new(),
        },
    }
}

/// `0:00:00.068714`, as the agent prints durations.
fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    format!(
        "{}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        d.subsec_micros()
    )
}

fn log_path(ctx: &Ctx<'_>, script: &str) -> PathBuf {
    ctx.config
        .log_dir
        .join(format!("svc_{}_{script}.log", ctx.service.name))
}

async fn run_all(ctx: &Ctx<'_>, start: bool) -> Result<(), ActError> {
    let Some(app) = spec(ctx) else {
        return Err(ctx.failed("not an app resource"));
    };
    let verb = if start { "start" } else { "stop" };
    let list = commands(ctx, app, start).await;
    if list.is_empty() {
        ctx.log
            .info(format_args!("no {verb} command or script: nothing to run"));
    }
    if let Err(e) = std::fs::create_dir_all(&ctx.config.log_dir) {
        return Err(ctx.failed(format!(
            "cannot create log directory {}: {e}",
            ctx.config.log_dir.display()
        )));
    }
    for (label, argv) in list {
        ctx.log.info(format_args!("spawn: {}", shell_line(&argv)));
        let out = ctx.run_quiet(&argv, app.timeout).await?;
        let path = log_path(ctx, &label);
        let text = format!("$ {}\n{}{}", shell_line(&argv), out.stdout, out.stderr);
        if let Err(e) = std::fs::write(&path, text) {
            ctx.log
                .warn(format_args!("cannot write {}: {e}", path.display()));
        }
        let ret = out
            .code
            .map_or_else(|| out.describe_end(), |c| c.to_string());
        ctx.log.info(format_args!(
            "{verb} done in {} - ret {ret} - logs in {}",
            clock(out.elapsed),
            path.display()
        ));
        if !out.success() {
            let how = if out.timed_out {
                format!(
                    "timed out after {} and was killed",
                    humantime::format_duration(app.timeout)
                )
            } else {
                out.describe_end()
            };
            return Err(ctx.failed(format!("{label} {verb} {how} (logs in {})", path.display())));
        }
    }
    Ok(())
}

fn has_check(ctx: &Ctx<'_>) -> bool {
    spec(ctx).is_some_and(|a| !matches!(a.commands, AppCommands::Argv { check: None, .. }))
}

pub async fn start(ctx: &Ctx<'_>) -> Result<(), ActError> {
    run_all(ctx, true).await?;
    // Without a check nothing can observe it later: remember that it started. (A scripts
    // directory without C* scripts is the same case; the record is then simply unused while
    // a check exists.)
    if let Err(e) = state::record_app_start(&ctx.config.state_dir, &ctx.service.name, ctx.rid) {
        let message = format!(
            "cannot record the start in {}: {e}",
            ctx.config.state_dir.display()
        );
        if has_check(ctx) {
            ctx.log.warn(message);
        } else {
            return Err(ctx.failed(message));
        }
    }
    Ok(())
}

pub async fn stop(ctx: &Ctx<'_>) -> Result<(), ActError> {
    run_all(ctx, false).await?;
    if let Err(e) = state::forget_app_start(&ctx.config.state_dir, &ctx.service.name, ctx.rid) {
        ctx.log
            .warn(format_args!("cannot forget the start record: {e}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_prints_as_the_agent_does() {
        assert_eq!(clock(Duration::from_micros(68_714)), "0:00:00.068714");
        assert_eq!(
            clock(Duration::from_secs(3723) + Duration::from_micros(5)),
            "1:02:03.000005"
        );
    }
}
