//! LXC's one addition to the shared container driver: when a start fails, `lxc-start` itself
//! only says "The container failed to start"; the reason (a missing init, a bad mount entry…) is
//! in the container's LXC log. The log's end is marked before each start (a probe), and a
//! failure shows the ERROR lines that start appended.

use super::ctx::Ctx;
use crate::observer::probe::LogMark;

/// Logs what the container's LXC log gained since `mark`, and returns a short explanation for
/// the error message: the first error and where the log is, or how to get one.
pub fn log_tail(ctx: &Ctx<'_>, name: &str, mark: &LogMark) -> String {
    let (Some(path), Some(read)) = (&mark.path, mark.tail()) else {
        return format!(
            "container {name} keeps no LXC log; set lxc.log.file in its configuration to see why"
        );
    };
    let (tail, cause) = match read {
        Ok(tail) => (tail.lines, tail.cause),
        Err(e) => return format!("cannot read the LXC log {}: {e}", path.display()),
    };
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
