//! The two file operations every part of converge that keeps state needs, written once: replace
//! a file atomically and durably, and hold an advisory lock on a file.
//!
//! Both use the standard library only (`File::lock` is flock(2) on Linux), so the simulators and
//! the node share them without pulling in anything else.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `contents`, atomically and durably: a reader sees the old file or the new
/// one, never a mix, and once this returns the new content survives a power cut.
///
/// The content goes to a temporary file in the same directory (created, never opened if it
/// exists, so a planted symlink there is not followed), which is synced, renamed over `path`
/// (a rename replaces a symlink at `path` rather than writing through it), and then the
/// directory is synced so the rename itself is on disk. The directory is created if missing.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| io::Error::other(format!("{} has no directory", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    fs::create_dir_all(dir)?;
    // Hidden (readers of converge's directories skip dot files) and unique: RandomState's keys
    // are random per process and differ per call, so two writers never share a temporary file.
    let unique = RandomState::new().build_hasher().finish();
    let tmp = dir.join(format!(".{}.tmp.{unique:016x}", name.to_string_lossy()));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // The temporary file is removed whatever went wrong: no debris in the directory.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable only once the directory entry is: fsync the directory.
    File::open(dir)?.sync_all()
}

/// Shared (readers) or exclusive (writers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// An advisory lock (flock) on a file, held until dropped. The kernel releases it when the
/// process ends, however it ends, so a crash never leaves a stale lock.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Waits for the lock on `path`, creating the file if needed.
    pub fn acquire(path: &Path, mode: LockMode) -> io::Result<FileLock> {
        let file = open_lock_file(path)?;
        loop {
            let taken = match mode {
                LockMode::Shared => file.lock_shared(),
                LockMode::Exclusive => file.lock(),
            };
            match taken {
                Ok(()) => return Ok(FileLock { file }),
                // A signal during the wait is not a reason to give up the wait.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The lock on `path` if nobody holds a conflicting one now, else `None`.
    pub fn try_acquire(path: &Path, mode: LockMode) -> io::Result<Option<FileLock>> {
        let file = open_lock_file(path)?;
        let taken = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match taken {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// The locked file, e.g. to say who holds the lock.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/state.json");
        write_atomic(&path, b"one").expect("first write creates the directory");
        write_atomic(&path, b"two").expect("second write replaces");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let names: Vec<String> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn regression_write_atomic_replaces_a_symlink_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").expect("write");
        let path = dir.path().join("record.json");
        std::os::unix::fs::symlink(&victim, &path).expect("symlink");
        write_atomic(&path, b"{}").expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "precious");
        assert_eq!(fs::read(&path).expect("read"), b"{}");
        assert!(!fs::symlink_metadata(&path).expect("stat").is_symlink());
    }

    #[test]
    fn write_atomic_refuses_a_path_without_a_file_name() {
        assert!(write_atomic(Path::new("/"), b"x").is_err());
        assert!(write_atomic(Path::new("relative"), b"x").is_err());
    }

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let first = FileLock::try_acquire(&path, LockMode::Exclusive)
            .expect("lock")
            .expect("free");
        assert!(
            FileLock::try_acquire(&path, LockMode::Exclusive)
                .expect("lock")
                .is_none()
        );
        assert!(
            FileLock::try_acquire(&path, LockMode::Shared)
                .expect("lock")
                .is_none()
        );
        drop(first);
        let a = FileLock::acquire(&path, LockMode::Shared).expect("shared");
        let b = FileLock::try_acquire(&path, LockMode::Shared).expect("lock");
        assert!(b.is_some(), "two readers at once");
        assert!(
            FileLock::try_acquire(&path, LockMode::Exclusive)
                .expect("lock")
                .is_none()
        );
        drop((a, b));
        FileLock::acquire(&path, LockMode::Exclusive).expect("free again");
    }
}
