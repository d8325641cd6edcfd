//! Apps: S* scripts run with `start` in name order, K* with `stop` (or the explicit `start` /
//! `stop` argv) — inside the service's container when it has one. Each run's output goes to its
//! own log file, `<log_dir>/svc_<service>_<script>.log`, overwritten per run, as it comes and up
//! to [`SCRIPT_LOG_MAX`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ctx::{ActError, Ctx};
use crate::exec::LogFile;
use crate::{secure, state};
use converge_core::command::{AppRuns, AppVerb};
use converge_core::manifest::{AppCommands, AppSpec, Spec};
use converge_core::shell::shell_line;

fn spec<'s>(ctx: &'s Ctx<'_>) -> Option<&'s AppSpec> {
    ctx.spec().and_then(Spec::as_app)
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

/// Runs an app's start or stop commands, in order; the first failure stops the rest. A start
/// is recorded when it succeeds, a stop forgets the record.
pub async fn run(ctx: &Ctx<'_>, verb: AppVerb, runs: &AppRuns) -> Result<(), ActError> {
    run_all(ctx, verb, runs).await?;
    match verb {
        AppVerb::Start => record_start(ctx),
        AppVerb::Stop => {
            if let Err(e) =
                state::forget_app_start(&ctx.config.state_dir, &ctx.service.name, ctx.rid)
            {
                ctx.log
                    .warn(format_args!("cannot forget the start record: {e}"));
            }
            Ok(())
        }
    }
}

async fn run_all(ctx: &Ctx<'_>, verb: AppVerb, runs: &AppRuns) -> Result<(), ActError> {
    let Some(app) = spec(ctx) else {
        return Err(ctx.failed("not an app resource"));
    };
    let verb = verb.as_str();
    let runs = match runs {
        AppRuns::Listed(runs) => runs,
        // The executor lists the directory right before acting; this means it could not.
        AppRuns::Unlisted { dir, .. } => {
            return Err(ctx.failed(format!(
                "cannot list the scripts in {} to {verb} them",
                dir.display()
            )));
        }
    };
    if runs.is_empty() {
        ctx.log
            .info(format_args!("no {verb} command or script: nothing to run"));
    }
    // Checked before every run, not only when converge starts: the directory may have been
    // removed, or replaced, since.
    if let Err(e) = secure::ensure_private_dir(&ctx.config.log_dir, "log_dir") {
        return Err(ctx.failed(e.to_string()));
    }
    for run in runs {
        let argv = &run.argv;
        // Its program is checked again right before it runs, as root, by `exec`, as every
        // program converge runs: it may have changed since the manifest was loaded.
        ctx.log.info(format_args!("spawn: {}", shell_line(argv)));
        let path = log_path(ctx, &run.label);
        let (out, logs) = match open_log(&path, argv) {
            Ok(log) => {
                let logged = ctx.run_logged(argv, app.timeout, log).await?;
                if let Err(e) = logged.log {
                    ctx.log
                        .warn(format_args!("cannot write all of {}: {e}", path.display()));
                }
                (logged.output, format!("logs in {}", path.display()))
            }
            Err(e) => {
                // A log converge cannot write is no reason not to run the script.
                ctx.log
                    .warn(format_args!("cannot log to {}: {e}", path.display()));
                (
                    ctx.run_quiet(argv, app.timeout).await?,
                    "not logged".to_string(),
                )
            }
        };
        let ret = out
            .code
            .map_or_else(|| out.describe_end(), |c| c.to_string());
        ctx.log.info(format_args!(
            "{verb} done in {} - ret {ret} - {logs}",
            clock(out.elapsed)
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
            return Err(ctx.failed(format!("{} {verb} {how} ({logs})", run.label)));
        }
    }
    Ok(())
}

/// A script's log keeps at most this much of its output (the end of it is in memory, for the
/// action log and the error message, see [`crate::exec::TAIL_BYTES`]): far more than any start
/// or stop prints when things go right, and a runaway script cannot fill the log's filesystem.
pub const SCRIPT_LOG_MAX: u64 = 8 * 1024 * 1024;

/// Opens a script's log for this run: emptied (it was opened without truncation, see
/// [`secure::open_for_writing`], so it is emptied once known to be converge's), then the command
/// line, then the output as it comes.
fn open_log(path: &Path, argv: &[String]) -> Result<LogFile, String> {
    let mut file = secure::open_for_writing(path).map_err(|e| e.to_string())?;
    let header = format!("$ {}\n", shell_line(argv));
    file.set_len(0)
        .and_then(|()| file.write_all(header.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(LogFile::new(file, SCRIPT_LOG_MAX))
}

fn has_check(ctx: &Ctx<'_>) -> bool {
    spec(ctx).is_some_and(|a| !matches!(a.commands, AppCommands::Argv { check: None, .. }))
}

/// Without a check nothing can observe the app later: remember that it started. (A scripts
/// directory without C* scripts is the same case; the record is then simply unused while a
/// check exists.)
fn record_start(ctx: &Ctx<'_>) -> Result<(), ActError> {
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
