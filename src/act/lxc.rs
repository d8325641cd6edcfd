//! LXC: `lxc-start -n NAME -d`, `lxc-info -n NAME -s`, `lxc-attach -n NAME -- …`,
//! `lxc-stop -n NAME -t SECONDS`. The waits are shared with OpenVZ in [`super::container`].
//!
//! When a start fails, `lxc-start` itself only says "The container failed to start"; the reason
//! (a missing init, a bad mount entry…) is in the container's LXC log. So the log's size is noted
//! before each start, and a failure shows the ERROR lines that start appended.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::container::PROBE_TIMEOUT;
use super::{ActError, Ctx};
use crate::observe::{ContainerState, lxc};

/// How many lines of the LXC log a failure shows.
const TAIL_LINES: usize = 10;
/// A log can be huge after months of DEBUG: only its end is read.
const TAIL_BYTES: u64 = 64 * 1024;

/// `lxc-info -n NAME -s`, parsed. A container LXC does not know is absent.
pub async fn probe_state(ctx: &Ctx<'_>, name: &str) -> Result<ContainerState, ActError> {
    let argv = vec![
        ctx.config.commands.lxc_info.clone(),
        "-n".into(),
        name.to_string(),
        "-s".into(),
    ];
    let out = ctx.run_quiet(&argv, PROBE_TIMEOUT).await?;
    if !out.success() {
        if out.stderr.contains("doesn't exist") || out.stderr.contains("does not exist") {
            return Ok(ContainerState::Absent);
        }
        return Err(ctx.failed(format!(
            "lxc-info -n {name} -s {}: {}",
            out.describe_end(),
            out.last_line()
        )));
    }
    lxc::parse_info_state(&out.stdout).map_err(|e| ctx.failed(format!("lxc-info -n {name}: {e}")))
}

/// `lxc-stop -n NAME -k`: for a start that failed halfway, whose container must not keep the
/// filesystem busy while the start is rolled back.
pub fn kill_argv(ctx: &Ctx<'_>, name: &str) -> Vec<String> {
    vec![
        ctx.config.commands.lxc_stop.clone(),
        "-n".into(),
        name.to_string(),
        "-k".into(),
    ]
}

/// Where the container's LXC log was before a start, so a failure shows only that start's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMark {
    /// `None`: the container keeps no log converge can find.
    pub path: Option<PathBuf>,
    pub offset: u64,
}

/// The container's log file: `lxc.log.file` from its configuration (`lxc-info -c`), else the
/// packaged default `/var/log/lxc/NAME.log` when it exists (LXC 5 writes no log unless told).
async fn log_path(ctx: &Ctx<'_>, name: &str) -> Option<PathBuf> {
    let argv = vec![
        ctx.config.commands.lxc_info.clone(),
        "-n".into(),
        name.to_string(),
        "-c".into(),
        "lxc.log.file".into(),
    ];
    let configured = match ctx.run_quiet(&argv, PROBE_TIMEOUT).await {
        Ok(out) if out.success() => parse_config_value(&out.stdout, "lxc.log.file"),
        _ => None,
    };
    configured.map(PathBuf::from).or_else(|| {
        let default = Path::new("/var/log/lxc").join(format!("{name}.log"));
        default.is_file().then_some(default)
    })
}

/// `lxc.log.file = /var/log/lxc/web.log` → the value; `None` when empty or absent.
pub fn parse_config_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub async fn log_mark(ctx: &Ctx<'_>, name: &str) -> LogMark {
    let path = log_path(ctx, name).await;
    let offset = path
        .as_deref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    LogMark { path, offset }
}

/// What the log gained since `mark` (its last [`TAIL_BYTES`] at most); from the start when the
/// log shrank (rotated).
fn read_since(path: &Path, mark: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let from = if len < mark { 0 } else { mark };
    let from = from.max(len.saturating_sub(TAIL_BYTES));
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The level and message of an LXC log line:
/// `lxc-start web 20240101120000.123 ERROR    start - ../src/lxc/start.c:start:2197 - No such
/// file or directory - Failed to exec "/sbin/init"` → (`ERROR`, `No such file … "/sbin/init"`).
pub fn parse_log_line(line: &str) -> Option<(&str, &str)> {
    let mut words = line.split_whitespace();
    let (_program, _name, _time, level) =
        (words.next()?, words.next()?, words.next()?, words.next()?);
    // After the level: "MODULE - FILE:FUNC:LINE - MESSAGE".
    let (_, rest) = line.split_once(&format!(" {level} "))?;
    let (_module, rest) = rest.split_once(" - ")?;
    let (_location, message) = rest.split_once(" - ")?;
    Some((level, message.trim()))
}

/// The ERROR lines among `text` (the whole lines, at most the last [`TAIL_LINES`]), or its last
/// lines when none says ERROR; and the first error's message, usually the cause (what follows is
/// LXC unwinding).
pub fn summarize(text: &str) -> (Vec<String>, Option<String>) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| parse_log_line(l).is_some_and(|(level, _)| level == "ERROR"))
        .collect();
    let cause = errors
        .first()
        .and_then(|l| parse_log_line(l))
        .map(|(_, message)| message.to_string());
    let shown = if errors.is_empty() { &lines } else { &errors };
    let tail = shown[shown.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| l.to_string())
        .collect();
    (tail, cause)
}

/// Logs what the container's LXC log gained since `mark`, and returns a short explanation for
/// the error message: the first error and where the log is, or how to get one.
pub fn log_tail(ctx: &Ctx<'_>, name: &str, mark: &LogMark) -> String {
    let Some(path) = &mark.path else {
        return format!(
            "container {name} keeps no LXC log; set lxc.log.file in its configuration to see why"
        );
    };
    let text = match read_since(path, mark.offset) {
        Ok(text) => text,
        Err(e) => return format!("cannot read the LXC log {}: {e}", path.display()),
    };
    let (tail, cause) = summarize(&text);
    if tail.is_empty() {
        return format!("the LXC log {} says nothing about it", path.display());
    }
    ctx.log.warn(format_args!(
        "LXC log {} (this start):\n{}",
        path.display(),
        tail.join("\n")
    ));
    match cause {
        Some(cause) => format!("LXC log {}: {cause}", path.display()),
        None => format!("see the LXC log {}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILED_START: &str = r#"lxc-start web 20261125225843.313 ERROR    start - ../src/lxc/start.c:start:2197 - No such file or directory - Failed to exec "/nonexistent/init"
lxc-start web 20261125225843.313 ERROR    sync - ../src/lxc/sync.c:sync_wait:34 - An error occurred in another process (expected sequence number 7)
lxc-start web 20261125225843.313 WARN     cgfsng - ../src/lxc/cgroups/cgfsng.c:cgfsng_monitor_destroy:926 - Device or resource busy - Failed to destroy 12(lxc.monitor.web)
lxc-start web 20261125225843.313 ERROR    lxccontainer - ../src/lxc/lxccontainer.c:wait_on_daemonized_start:878 - Received container state "ABORTING" instead of "RUNNING"
"#;

    #[test]
    fn log_lines_split_into_level_and_message() {
        let first = FAILED_START.lines().next().expect("a line");
        assert_eq!(
            parse_log_line(first),
            Some((
                "ERROR",
                r#"No such file or directory - Failed to exec "/nonexistent/init""#
            ))
        );
        assert_eq!(parse_log_line("not a log line"), None);
        assert_eq!(parse_log_line(""), None);
    }

    #[test]
    fn the_first_error_is_the_cause_and_warnings_are_left_out() {
        let (tail, cause) = summarize(FAILED_START);
        assert_eq!(tail.len(), 3, "{tail:?}");
        assert!(tail.iter().all(|l| l.contains(" ERROR ")));
        assert_eq!(
            cause.as_deref(),
            Some(r#"No such file or directory - Failed to exec "/nonexistent/init""#)
        );
    }

    #[test]
    fn without_errors_the_last_lines_are_shown() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let (tail, cause) = summarize(&text);
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().map(String::as_str), Some("line 29"));
        assert_eq!(cause, None);
        assert_eq!(summarize(""), (Vec::new(), None));
    }

    #[test]
    fn config_values() {
        assert_eq!(
            parse_config_value("lxc.log.file = /var/log/lxc/web.log\n", "lxc.log.file"),
            Some("/var/log/lxc/web.log".into())
        );
        assert_eq!(parse_config_value("lxc.log.file =\n", "lxc.log.file"), None);
        assert_eq!(parse_config_value("", "lxc.log.file"), None);
    }

    #[test]
    fn only_what_the_start_appended_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web.log");
        std::fs::write(&path, "old failure\n").expect("write");
        let mark = std::fs::metadata(&path).expect("stat").len();
        std::fs::write(&path, "old failure\nnew failure\n").expect("write");
        assert_eq!(read_since(&path, mark).expect("read"), "new failure\n");
        // Rotated (shorter than the mark): all of it.
        std::fs::write(&path, "x\n").expect("write");
        assert_eq!(read_since(&path, mark).expect("read"), "x\n");
    }
}
