//! The single-instance lock: one converge process acts on a node at a time (`reconcile --once`
//! and the daemon alike). An flock on `state_dir/converge.lock`, released by the kernel when the
//! process ends however it ends; the file says who holds it, for the one that is refused.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LockError {
    #[error("another converge is acting on this node ({holder}); lock file {path}")]
    Held { path: PathBuf, holder: String },
    #[error("cannot open lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held until dropped.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    pub path: PathBuf,
}

pub const LOCK_FILE: &str = "converge.lock";

/// Takes the lock without waiting; `what` ("reconcile --once", "run") is written for others to
/// read.
pub fn acquire(state_dir: &Path, what: &str) -> Result<InstanceLock, LockError> {
    let path = state_dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "holder unknown".to_string()
            } else {
                holder.to_string()
            };
            return Err(LockError::Held { path, holder });
        }
        return Err(io(err));
    }
    let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let who = format!("pid {}, {what}, since {since}\n", std::process::id());
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(who.as_bytes()).map_err(io)?;
    Ok(InstanceLock { _file: file, path })
}

/// Who holds the lock now ("pid 1234, run, since …"), or `None` when nobody does.
pub fn holder(state_dir: &Path) -> Option<String> {
    let path = state_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).open(&path).ok()?;
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        // Nobody holds it (the shared lock is released when `file` closes).
        return None;
    }
    let mut holder = String::new();
    file.read_to_string(&mut holder).ok()?;
    Some(holder.trim().to_string())
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
