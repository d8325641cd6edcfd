//! The single-instance lock: one converge process acts on a node at a time (`reconcile --once`
//! and the daemon alike). An flock on `state_dir/converge.lock`, released by the kernel when the
//! process ends however it ends; the file says who holds it, for the one that is refused.
//!
//! Taking the lock is the first thing an acting converge does in `state_dir`, so it is also
//! where `state_dir` is checked (and created, mode 0700): see [`crate::secure`]. The lock file is
//! rewritten in place by its holder, so it is opened without following a symlink.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::secure::{self, OpenError, SecureError};
use converge_core::fsutil::{FileLock, LockMode};

#[derive(Debug, Error)]
pub enum LockError {
    #[error("another converge is acting on this node ({holder}); lock file {path}")]
    Held { path: PathBuf, holder: String },
    /// `state_dir` is not converge's alone.
    #[error(transparent)]
    StateDir(#[from] SecureError),
    #[error("lock file: {0}")]
    Open(#[from] OpenError),
    #[error("cannot use lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held until dropped.
#[derive(Debug)]
pub struct InstanceLock {
    _lock: FileLock,
    pub path: PathBuf,
}

pub const LOCK_FILE: &str = "converge.lock";

/// The lock file holds one line (`pid 1234, run, since …`); more is not converge's.
const HOLDER_MAX: u64 = 4096;

/// Takes the lock without waiting; `what` ("reconcile --once", "run") is written for others to
/// read. Refuses a `state_dir` others could write to (see [`secure::ensure_private_dir`]).
pub fn acquire(state_dir: &Path, what: &str) -> Result<InstanceLock, LockError> {
    secure::ensure_private_dir(state_dir, "state_dir")?;
    let path = state_dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let file = secure::open_for_writing(&path)?;
    let Some(mut lock) = FileLock::try_lock_file(file, LockMode::Exclusive).map_err(io)? else {
        let holder = read_holder(&path);
        return Err(LockError::Held { path, holder });
    };
    let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let who = format!("pid {}, {what}, since {since}\n", std::process::id());
    let file = lock.file();
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(who.as_bytes()).map_err(io)?;
    Ok(InstanceLock { _lock: lock, path })
}

fn read_holder(path: &Path) -> String {
    let holder = secure::read_input_text(path, HOLDER_MAX).unwrap_or_default();
    let holder = holder.trim();
    if holder.is_empty() {
        "holder unknown".to_string()
    } else {
        holder.to_string()
    }
}

/// Who holds the lock now ("pid 1234, run, since …"), or `None` when nobody does.
pub fn holder(state_dir: &Path) -> Option<String> {
    let path = state_dir.join(LOCK_FILE);
    // Opened read-only, without creating it: asking must not change the state directory.
    let file = secure::open_input(&path).ok()?;
    match file.try_lock_shared() {
        // Nobody holds it (the shared lock is released when `file` closes).
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => Some(read_holder(&path)),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_is_refused_with_the_holder_named_and_gets_it_after_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = acquire(dir.path(), "reconcile --once").expect("first");
        let err = acquire(dir.path(), "run").expect_err("second must be refused");
        let message = err.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("reconcile --once"), "{message}");
        assert!(holder(dir.path()).is_some_and(|h| h.contains("reconcile --once")));
        drop(first);
        assert_eq!(holder(dir.path()), None);
        acquire(dir.path(), "run").expect("free again");
    }
}
