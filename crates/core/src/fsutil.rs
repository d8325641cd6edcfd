//! The file operations every part of converge that keeps state or reads the node needs, written
//! once: replace a file atomically and durably, hold an advisory lock on a file, read an input
//! file with a cap on its size, and tell a file unchanged by its `stat` ([`Stamp`]).
//!
//! All use the standard library only (`File::lock` is flock(2) on Linux), so the simulators and
//! the node share them without pulling in anything else. Opening with flags std does not name
//! (`O_NOFOLLOW`, `O_NONBLOCK`) is the node crate's (`converge_node::secure`), which hands the
//! open file to [`FileLock::try_lock_file`] or [`read_capped_open`].

use std::fs::{self, File, OpenOptions, TryLockError};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents`, atomically and durably: a reader sees the old file or the new
/// one, never a mix, and once this returns the new content survives a power cut.
///
/// The content goes to a temporary file in the same directory (created, never opened if it
/// exists, so a planted symlink there is not followed), which is synced, renamed over `path`
/// (a rename replaces a symlink at `path` rather than writing through it), and then the
/// directory is synced so the rename itself is on disk. The directory is created if missing.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_as(path, contents, None, true)
}

/// [`write_atomic`] without the fsyncs: a reader sees the old file or the new one, but after a
/// power cut the file may be missing, empty or old. For files that matter only while this boot
/// lasts, or that are written again anyway: each fsync waits for a journal commit, which takes
/// milliseconds, and tens of them on a disk that others keep busy.
pub fn write_replace(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_as(path, contents, None, false)
}

/// [`write_atomic`], the new file given `mode` whatever the umask: for a file another program
/// reads as another user (node_exporter's textfile collector), which a umask of 077 would
/// otherwise hide from it.
pub fn write_atomic_with_mode(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_as(path, contents, Some(mode), true)
}

fn write_atomic_as(
    path: &Path,
    contents: &[u8],
    mode: Option<u32>,
    durable: bool,
) -> io::Result<()> {
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
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents)?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // The temporary file is removed whatever went wrong: no debris in the directory.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if !durable {
        return Ok(());
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
    /// Waits for the lock on `path`, creating the file if needed. The path is followed as it
    /// is (std cannot say `O_NOFOLLOW`): a lock file in a directory others could write to is
    /// opened by the node crate (`converge_node::secure::open_for_writing`) and locked with
    /// [`FileLock::try_lock_file`].
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
        Self::try_lock_file(open_lock_file(path)?, mode)
    }

    /// The lock on a file the caller opened (e.g. without following a symlink), if nobody
    /// holds a conflicting one now, else `None`.
    pub fn try_lock_file(file: File, mode: LockMode) -> io::Result<Option<FileLock>> {
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

/// Why an input file could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A device or a FIFO where a file is expected: reading `/dev/zero` never ends, opening a
    /// FIFO waits for a writer.
    #[error("{} is not a regular file (it is {kind})", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    /// More than the caller's cap: what is read is never allowed to grow without bound.
    #[error("{} is larger than {max} bytes: not read", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{} is not valid UTF-8 text", path.display())]
    NotText { path: PathBuf },
}

impl ReadError {
    /// The file (or a directory on its path) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> ReadError + use<> {
        let path = path.to_path_buf();
        move |source| ReadError::Io { path, source }
    }
}

/// What a file that is not a regular one is, for an error message; `None` for a regular file.
///
/// Files under /proc and /sys are regular files of size 0 whose content is made when read:
/// they pass, and only the cap bounds them.
pub fn not_regular(file_type: fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Reads at most `max` bytes of the regular file `path` (following symlinks), or fails: a
/// device, a FIFO or a directory is refused before it is opened, and a file longer than `max`
/// is an error rather than a truncated read (a cut table would be taken for the whole one).
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    // Checked before opening: opening a FIFO blocks until someone writes to it. (A FIFO
    // swapped in between would still block the open; the node crate opens with O_NONBLOCK.)
    let meta = fs::metadata(path).map_err(ReadError::io(path))?;
    if let Some(kind) = not_regular(meta.file_type()) {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    let file = File::open(path).map_err(ReadError::io(path))?;
    read_capped_open(path, file, max)
}

/// [`read_capped`] of a file already open (`path` names it in errors). What was opened is
/// checked again: the path may have been replaced since it was looked at.
pub fn read_capped_open(path: &Path, file: File, max: u64) -> Result<Vec<u8>, ReadError> {
    let meta = file.metadata().map_err(ReadError::io(path))?;
    if let Some(kind) = not_regular(meta.file_type()) {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    // The size is a hint only (0 for /proc files), never trusted beyond the cap.
    let hint = usize::try_from(meta.len().min(max)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(hint);
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::io(path))?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_capped_text(path: &Path, max: u64) -> Result<String, ReadError> {
    text(path, read_capped(path, max)?)
}

/// UTF-8 text from what [`read_capped_open`] read.
pub fn text(path: &Path, bytes: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|_| ReadError::NotText {
        path: path.to_path_buf(),
    })
}

/// A file changed less than this before it was read may change again with no change to its
/// [`Stamp`]: timestamps come from a coarse clock (a few ms; a second on ext3), and an edit
/// within the same tick and of the same size looks the same. Such a file is read again at the
/// next look, until it has been still this long. (Git's "racily clean" entries, the same way.)
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// What says that a file (or a directory's list of names) is the one read before, unchanged,
/// without reading it: an edit in place changes its size or its times (mtime, and ctime, which
/// no one can set back), a new file swapped in by rename or a symlink swap (git-sync) has
/// another inode. Timestamps come from a coarse clock (a tick, up to a second on ext3): a
/// stamp is only trusted once the file had been still for a while before it was read
/// ([`Stamp::settled`]), else a change in the same tick as the read would look like none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// `meta`'s stamp, when the file had been still for `settle` at `read_at`.
    pub fn settled(
        meta: &fs::Metadata,
        read_at: std::time::SystemTime,
        settle: std::time::Duration,
    ) -> Option<Stamp> {
        let stamp = Stamp::of(meta);
        let since_epoch = read_at.duration_since(std::time::UNIX_EPOCH).ok()?;
        let before = since_epoch.checked_sub(settle)?;
        let still = |(secs, nanos): (i64, i64)| {
            let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u32::try_from(nanos)) else {
                return false;
            };
            std::time::Duration::new(secs, nanos.min(999_999_999)) < before
        };
        (still(stamp.mtime) && still(stamp.ctime)).then_some(stamp)
    }

    pub fn of(meta: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
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
    fn write_atomic_with_mode_sets_the_mode_whatever_it_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("converge.prom");
        fs::write(&path, "old").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        write_atomic_with_mode(&path, b"new", 0o644).expect("write");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
        assert_eq!(fs::read(&path).expect("read"), b"new");
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

    #[test]
    fn read_capped_reads_up_to_the_cap_and_refuses_more() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("table");
        fs::write(&path, "12345").expect("write");
        assert_eq!(read_capped(&path, 5).expect("at the cap"), b"12345");
        let err = read_capped(&path, 4).expect_err("over the cap");
        assert!(matches!(err, ReadError::TooLarge { max: 4, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{} is larger than 4 bytes: not read", path.display())
        );
        let missing = read_capped(&dir.path().join("missing"), 5).expect_err("missing");
        assert!(missing.is_not_found(), "{missing}");
        fs::write(&path, b"\xff\xfe").expect("write");
        assert!(matches!(
            read_capped_text(&path, 5),
            Err(ReadError::NotText { .. })
        ));
    }

    #[test]
    fn regression_read_capped_refuses_devices_and_directories() {
        // `proc_drbd: /dev/zero` once grew converge by a gigabyte a second.
        for (path, kind) in [
            ("/dev/zero", "a character device"),
            ("/dev/null", "a character device"),
            ("/", "a directory"),
        ] {
            let err = read_capped(Path::new(path), 1 << 20).expect_err(path);
            assert!(
                matches!(&err, ReadError::NotRegular { kind: k, .. } if *k == kind),
                "{path}: {err}"
            );
        }
        let err = read_capped_open(
            Path::new("/dev/zero"),
            File::open("/dev/zero").expect("open"),
            1 << 20,
        )
        .expect_err("already open");
        assert!(matches!(err, ReadError::NotRegular { .. }), "{err}");
    }

    #[test]
    fn proc_files_are_regular_files_of_size_zero_and_read_whole() {
        let path = Path::new("/proc/self/mountinfo");
        let meta = fs::metadata(path).expect("stat");
        assert_eq!((meta.is_file(), meta.len()), (true, 0));
        let text = read_capped_text(path, 16 << 20).expect("read");
        assert!(text.lines().count() > 0, "{text}");
    }
}
