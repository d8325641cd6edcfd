//! Filesystems: create the mount point, `e2fsck -p` then `mount -t TYPE -o OPTS DEV MNT`;
//! `umount MNT`, retried with backoff while the mount point is busy, with `fuser -kmv MNT`
//! between tries only when the resource sets `umount_kill`.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::ctx::{ActError, Ctx};
use converge_core::manifest::{FsSpec, Spec};
use converge_core::shell::shell_line;

/// A full check of a large filesystem takes long; it is bounded only against a hang.
pub const FSCK_TIMEOUT: Duration = Duration::from_secs(3600);
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(300);
/// umount(8)'s exit code for "target is busy" (util-linux: MNT_EX_FAIL with EBUSY).
pub const UMOUNT_EXIT_BUSY: i32 = 32;

fn spec<'s>(ctx: &'s Ctx<'_>) -> Option<&'s FsSpec> {
    ctx.spec().and_then(Spec::as_fs)
}

pub fn mkdir(ctx: &Ctx<'_>, path: &Path) -> Result<(), ActError> {
    ctx.log.info(format_args!(
        "create missing mount point {}",
        path.display()
    ));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|e| ctx.failed(format!("cannot create mount point {}: {e}", path.display())))
}

/// Runs `fsck` (when given) and judges it: 0 clean, 1 errors corrected; anything else must not
/// be mounted. Then `mount`.
pub async fn mount(
    ctx: &Ctx<'_>,
    fsck: Option<&[String]>,
    mount: &[String],
) -> Result<(), ActError> {
    if let Some(fsck) = fsck {
        let out = ctx.run(fsck, FSCK_TIMEOUT).await?;
        ctx.log.output(&format!("{}{}", out.stdout, out.stderr));
        if !matches!(out.code, Some(0 | 1)) {
            let dev = fsck.last().map(String::as_str).unwrap_or_default();
            return Err(ctx.failed(format!(
                "{} {}; not mounting {dev} (see the e2fsck output above)",
                shell_line(fsck),
                out.describe_end(),
            )));
        }
    }
    let out = ctx.run(mount, MOUNT_TIMEOUT).await?;
    if out.success() {
        return Ok(());
    }
    ctx.log.output(&format!("{}{}", out.stdout, out.stderr));
    Err(ctx.ended_badly(mount, &out))
}

fn is_busy(code: Option<i32>, stderr: &str) -> bool {
    code == Some(UMOUNT_EXIT_BUSY)
        || stderr.contains("target is busy")
        || stderr.contains("device is busy")
}

/// Runs `umount`, retried with backoff while the mount point is busy, with `kill` (fuser)
/// between tries when the resource sets `umount_kill`, within the resource's timeout.
pub async fn umount(
    ctx: &Ctx<'_>,
    umount: &[String],
    kill: Option<&[String]>,
) -> Result<(), ActError> {
    let timeout = spec(ctx).map_or(FsSpec::DEFAULT_TIMEOUT, |s| s.timeout);
    let deadline = Instant::now() + timeout;
    let mnt = umount.last().map(String::as_str).unwrap_or_default();
    let mut pause = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        let out = if tries == 1 {
            ctx.run(umount, MOUNT_TIMEOUT).await?
        } else {
            ctx.run_quiet(umount, MOUNT_TIMEOUT).await?
        };
        if out.success() {
            return Ok(());
        }
        if !is_busy(out.code, &out.stderr) {
            ctx.log.output(&out.stderr);
            return Err(ctx.ended_badly(umount, &out));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ctx.failed(format!(
                "umount {mnt}: target is busy after {tries} tries in {}{}",
                humantime::format_duration(timeout),
                if kill.is_some() {
                    ""
                } else {
                    " (set umount_kill: true to kill its users)"
                }
            )));
        }
        ctx.log.info(format_args!(
            "{mnt} is busy; retry in {}",
            humantime::format_duration(pause)
        ));
        if let Some(kill) = kill {
            let out = ctx.run(kill, Duration::from_secs(30)).await?;
            ctx.log.output(&format!("{}{}", out.stdout, out.stderr));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_recognised_by_code_or_message() {
        assert!(is_busy(Some(32), ""));
        assert!(is_busy(Some(1), "umount: /drbdsvc: target is busy."));
        assert!(!is_busy(Some(1), "umount: /drbdsvc: not mounted."));
    }
}
