//! Where converge writes and what it reads, made safe against the other users of the node.
//!
//! converge runs as root. A directory it writes into that another user can write to, or can
//! replace through a directory on its path, lets that user aim converge's writes anywhere: a
//! symlink `svc_web_S10foo.log → /root/victim` in a log directory owned by `nobody` once made
//! one reconcile overwrite the victim. So, in this one place:
//!
//! - [`check_path`] walks a path from `/`, following symlinks as the kernel does, and refuses
//!   ([`PermissionError`]) any entry owned by neither root nor the user converge runs as, and any
//!   entry that group or others can write. A directory on the way may be writable by others
//!   when it is sticky (`/tmp`): there only an entry's owner can rename or remove it, and the
//!   entry below is then held to the owner rule like every other. The path itself must not be
//!   writable by group or others at all. [`check_owned_and_private`] is the rule for one entry.
//! - [`ensure_private_dir`] does that for `state_dir` and `log_dir`, and creates what is
//!   missing: the directory itself mode 0700, missing parents 0755.
//! - [`open_for_writing`] opens a file to be written in place (a script's log, the lock file)
//!   without following a symlink (`O_NOFOLLOW`) or blocking on a FIFO, and refuses anything but
//!   a regular file with a single link: through a hard link, a write lands in another file.
//!   Files replaced by rename ([`converge_core::fsutil::write_atomic`]) need none of this: the
//!   temporary file is created exclusively (`O_CREAT|O_EXCL` never follows a symlink) and the
//!   rename replaces whatever is at the path instead of writing through it.
//! - [`read_input`] opens an input file without blocking (a FIFO swapped in after a check would
//!   hang an `open` forever) and reads it with a cap ([`converge_core::fsutil::read_capped_open`]).

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::OFlags;
use thiserror::Error;

use converge_core::fsutil::{self, ReadError};
use converge_core::shell;

/// The mode of a directory converge creates for itself: what it writes there (app records,
/// the scripts' output, which may hold secrets) is for root only. An operator may open it to
/// a group of readers (`chmod 0750`): only write access for group or others is refused.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// The mode of a missing parent converge creates on the way (`/var/log` on a bare system):
/// those are shared places, not converge's own.
const PARENT_DIR_MODE: u32 = 0o755;

/// The mode of a file converge creates to write in place: readable by the directory's group
/// when an operator opened the directory to one.
const WRITTEN_FILE_MODE: u32 = 0o640;

/// As the kernel's own limit on symlinks followed in one path (`MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// The entries of a path that may be checked, by their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The path asked about.
    Itself,
    /// A directory on its path.
    Ancestor,
    /// A symlink on its path (or the path itself, when a symlink): only its owner matters.
    Symlink,
}

/// Who, besides the owner, can write an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    Group,
    Others,
    GroupAndOthers,
}

impl Writers {
    /// From a mode's write bits; `None` when only the owner can write.
    pub fn of(mode: u32) -> Option<Writers> {
        match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => Some(Writers::GroupAndOthers),
            (true, false) => Some(Writers::Group),
            (false, true) => Some(Writers::Others),
            (false, false) => None,
        }
    }
}

impl fmt::Display for Writers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Writers::Group => "its group",
            Writers::Others => "everyone",
            Writers::GroupAndOthers => "its group and everyone",
        })
    }
}

/// What is wrong with an entry: one of the two, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Why {
    /// Owned by neither root nor the user converge runs as (`euid`).
    pub foreign_owner: bool,
    /// Writable by others than its owner (and, for a directory on the way, not sticky).
    pub writable_by: Option<Writers>,
    /// The user converge runs as.
    pub euid: u32,
}

/// What another user could do through an entry converge would trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stake {
    /// A place converge writes (`log_dir`, `state_dir`): make root write where they choose.
    Writes,
    /// What decides what converge runs (the config, manifests, scripts): make root run what
    /// they choose.
    Runs,
}

/// An entry converge will not trust, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct PermissionError {
    pub stake: Stake,
    /// What the caller checked: `log_dir`, `state_dir`, `manifest`…
    pub what: String,
    /// The path the caller asked about.
    pub target: PathBuf,
    /// The entry at fault: `target` itself, a directory or a symlink on its path.
    pub path: PathBuf,
    pub entry: Entry,
    pub uid: u32,
    /// Permission bits, with the sticky, setuid and setgid bits.
    pub mode: u32,
    pub why: Why,
}

impl PermissionError {
    /// The commands that make the entry acceptable, e.g. `chown root /x; chmod go-w /x`.
    pub fn fix(&self) -> String {
        let path = shell::quote(&self.path.to_string_lossy());
        let mut steps = Vec::new();
        if self.why.foreign_owner {
            let owner = if self.why.euid == 0 {
                "root".to_string()
            } else {
                self.why.euid.to_string()
            };
            // `-h`: a symlink's own owner, not its target's.
            let h = if self.entry == Entry::Symlink {
                "-h "
            } else {
                ""
            };
            steps.push(format!("chown {h}{owner} {path}"));
        }
        if self.why.writable_by.is_some() {
            steps.push(format!("chmod go-w {path}"));
        }
        steps.join("; ")
    }
}

impl fmt::Display for PermissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What decides what root runs is refused outright; a place to write is named first.
        if self.stake == Stake::Runs {
            f.write_str("refusing ")?;
        }
        write!(f, "{} {}", self.what, Shown(&self.target))?;
        match self.entry {
            Entry::Itself if self.path == self.target => f.write_str(" is ")?,
            Entry::Itself => write!(f, ": its target {} is ", Shown(&self.path))?,
            Entry::Ancestor => write!(f, ": the directory {} on its path is ", Shown(&self.path))?,
            Entry::Symlink => write!(f, ": the symlink {} on its path is ", Shown(&self.path))?,
        }
        if self.why.foreign_owner {
            write!(
                f,
                "owned by uid {}, neither root nor the user converge runs as (uid {})",
                self.uid, self.why.euid
            )?;
            if self.why.writable_by.is_some() {
                f.write_str(", and ")?;
            }
        }
        if let Some(writers) = self.why.writable_by {
            write!(f, "writable by {writers}")?;
        }
        let could = match self.stake {
            Stake::Writes => "write where they choose",
            Stake::Runs => "run what they choose",
        };
        write!(
            f,
            " (owner uid {}, mode {:04o}): another user could make converge, which runs as \
             root, {could}; fix: {}",
            self.uid,
            self.mode,
            self.fix()
        )
    }
}

/// Why a path could not be checked or made.
#[derive(Debug, Error)]
pub enum SecureError {
    #[error(transparent)]
    Permission(#[from] PermissionError),
    #[error("{what} {}: cannot check {}: {source}", Shown(target), Shown(path))]
    Io {
        what: String,
        target: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {}: {} is not a directory", Shown(target), Shown(path))]
    NotADirectory {
        what: String,
        target: PathBuf,
        path: PathBuf,
    },
}

/// A path in a message: as it is, or escaped when it holds a control character (a path is
/// quoted back from the configuration and must not break the log's lines).
struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string_lossy();
        if text.chars().any(char::is_control) {
            write!(f, "{text:?}")
        } else {
            f.write_str(&text)
        }
    }
}

fn read_only_fs(path: &Path) -> bool {
    rustix::fs::statvfs(path)
        .is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// The user converge runs as.
pub fn euid() -> u32 {
    // Asked once: converge never changes its user, and a reload checks 10,000 paths.
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| rustix::process::geteuid().as_raw())
}

/// The rule for one entry, from its metadata (`lstat`): owned by root or the user converge
/// runs as, and writable by nobody else, except that a directory on the way (`Entry::Ancestor`)
/// may be when it is sticky, and a symlink's mode means nothing.
pub fn check_metadata(
    what: &str,
    target: &Path,
    path: &Path,
    entry: Entry,
    meta: &fs::Metadata,
) -> Result<(), PermissionError> {
    let euid = euid();
    let uid = meta.uid();
    let mode = meta.mode() & 0o7777;
    let foreign_owner = uid != 0 && uid != euid;
    let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
    let writable_by = match entry {
        Entry::Symlink => None,
        Entry::Ancestor if sticky_dir => None,
        Entry::Itself | Entry::Ancestor => Writers::of(mode),
    };
    // On a read-only filesystem the mode bits grant nothing: nobody can change the entry.
    if !foreign_owner && writable_by.is_none() || read_only_fs(path) {
        return Ok(());
    }
    Err(PermissionError {
        stake: Stake::Writes,
        what: what.to_string(),
        target: target.to_path_buf(),
        path: path.to_path_buf(),
        entry,
        uid,
        mode,
        why: Why {
            foreign_owner,
            writable_by,
            euid,
        },
    })
}

/// [`check_metadata`] of `path` itself, not following a final symlink (a symlink is held to
/// the owner rule only: see [`check_path`] to check where it leads).
pub fn check_owned_and_private(path: &Path, what: &str) -> Result<(), SecureError> {
    let meta = fs::symlink_metadata(path).map_err(io_error(what, path, path))?;
    let entry = if meta.file_type().is_symlink() {
        Entry::Symlink
    } else {
        Entry::Itself
    };
    Ok(check_metadata(what, path, path, entry, &meta)?)
}

/// What [`check_path`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The longest part of the path that exists, every symlink resolved.
    pub existing: PathBuf,
    /// The names below `existing` that do not exist yet, in order; empty when all of it does.
    pub missing: Vec<OsString>,
}

/// Checks every entry of the absolute path `target`, from `/`: each directory on the way, each
/// symlink (and then where it leads, as the kernel would resolve it), and the path itself.
/// A missing part is not an error: what exists is checked, and the rest is returned for the
/// caller to create.
pub fn check_path(target: &Path, what: &str) -> Result<Resolved, SecureError> {
    check_path_in(target, what, &mut Passed::default())
}

/// The directories that passed as ancestors ([`Entry::Ancestor`]) in one pass of checks, by
/// their resolved path: a reload checks every manifest and every program its services name,
/// and they share their directories (10,000 manifests in one directory, one `/bin/true` for
/// all). Kept for one pass only, so that a change of owner or mode is seen at the next.
#[derive(Debug, Default)]
pub struct Passed {
    dirs: PathSet,
}

/// Paths by their bytes, hashed with foldhash: a reload looks paths up here some 20,000 times,
/// and `Path`'s own hash (SipHash, over components parsed each time) was most of that cost.
/// The paths put in and asked for are built the same way, so equal paths are equal bytes;
/// where they are not, the price is a check made twice, never one skipped.
pub(crate) type PathSet = HashSet<OsString, foldhash::fast::RandomState>;

/// [`check_path`], skipping the directories `passed` holds and adding those that pass.
pub fn check_path_in(
    target: &Path,
    what: &str,
    passed: &mut Passed,
) -> Result<Resolved, SecureError> {
    if !target.is_absolute() {
        return Err(io_error(what, target, target)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path",
        )));
    }
    let root = Path::new("/");
    let mut pending = names(target);
    if pending.is_empty() || !passed.dirs.contains(root.as_os_str()) {
        let meta = fs::symlink_metadata(root).map_err(io_error(what, target, root))?;
        let role = if pending.is_empty() {
            Entry::Itself
        } else {
            Entry::Ancestor
        };
        check_metadata(what, target, root, role, &meta)?;
        if role == Entry::Ancestor {
            passed.dirs.insert(root.as_os_str().to_owned());
        }
    }
    let mut current = root.to_path_buf();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            // `current` has every symlink resolved: its parent is the one the kernel uses.
            current.pop();
            continue;
        }
        let next = current.join(&name);
        if !pending.is_empty() && passed.dirs.contains(next.as_os_str()) {
            current = next;
            continue;
        }
        let meta = match fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut missing = vec![name];
                missing.extend(pending);
                if missing.iter().any(|n| n == "..") {
                    return Err(io_error(what, target, &next)(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "`..` below a directory that does not exist",
                    )));
                }
                return Ok(Resolved {
                    existing: current,
                    missing,
                });
            }
            Err(e) => return Err(io_error(what, target, &next)(e)),
        };
        if meta.file_type().is_symlink() {
            check_metadata(what, target, &next, Entry::Symlink, &meta)?;
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io_error(what, target, &next)(io::Error::from(
                    rustix::io::Errno::LOOP,
                )));
            }
            let link = fs::read_link(&next).map_err(io_error(what, target, &next))?;
            if link.is_absolute() {
                current = root.to_path_buf();
            }
            for name in names(&link).into_iter().rev() {
                pending.push_front(name);
            }
            continue;
        }
        let last = pending.is_empty();
        let role = if last { Entry::Itself } else { Entry::Ancestor };
        check_metadata(what, target, &next, role, &meta)?;
        if !last && !meta.is_dir() {
            return Err(SecureError::NotADirectory {
                what: what.to_string(),
                target: target.to_path_buf(),
                path: next,
            });
        }
        if !last {
            passed.dirs.insert(next.as_os_str().to_owned());
        }
        current = next;
    }
    Ok(Resolved {
        existing: current,
        missing: Vec::new(),
    })
}

/// The names of a path after its root, `.` left out (`..` is kept: it depends on symlinks).
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn io_error(
    what: &str,
    target: &Path,
    path: &Path,
) -> impl FnOnce(io::Error) -> SecureError + use<> {
    let (what, target, path) = (what.to_string(), target.to_path_buf(), path.to_path_buf());
    move |source| SecureError::Io {
        what,
        target,
        path,
        source,
    }
}

/// Makes sure `dir` is a directory converge can trust to write in ([`check_path`]), creating
/// what is missing: `dir` mode [`PRIVATE_DIR_MODE`], its missing parents 0755 (the umask can
/// only take bits away). What is created is checked again, so one made by someone else in the
/// meantime is refused too.
pub fn ensure_private_dir(dir: &Path, what: &str) -> Result<(), SecureError> {
    let resolved = check_path(dir, what)?;
    if !resolved.missing.is_empty() {
        let mut path = resolved.existing;
        let count = resolved.missing.len();
        for (i, name) in resolved.missing.into_iter().enumerate() {
            path.push(name);
            let mode = if i + 1 == count {
                PRIVATE_DIR_MODE
            } else {
                PARENT_DIR_MODE
            };
            match DirBuilder::new().mode(mode).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(what, dir, &path)(e)),
            }
        }
    }
    let resolved = check_path(dir, what)?;
    let meta = fs::metadata(&resolved.existing).map_err(io_error(what, dir, dir))?;
    if !resolved.missing.is_empty() || !meta.is_dir() {
        return Err(SecureError::NotADirectory {
            what: what.to_string(),
            target: dir.to_path_buf(),
            path: resolved.existing,
        });
    }
    Ok(())
}

/// Why a file could not be opened for writing.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("{} is a symlink: converge never writes through one", Shown(path))]
    Symlink { path: PathBuf },
    #[error("{} is not a regular file (it is {kind}): not written", Shown(path))]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{} has {links} hard links: converge never writes through one (remove it)",
        Shown(path)
    )]
    HardLinked { path: PathBuf, links: u64 },
    #[error("cannot open {} for writing: {source}", Shown(path))]
    Io { path: PathBuf, source: io::Error },
}

/// Opens `path` to read and write in place, creating it (mode 0640) when missing, and never
/// through a symlink, a FIFO, a device or a hard link. Nothing is truncated here: a file
/// refused after the open must be left as it was; callers truncate what they rewrite.
pub fn open_for_writing(path: &Path) -> Result<File, OpenError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(WRITTEN_FILE_MODE)
        // O_NONBLOCK: opening a FIFO for writing would wait for a reader; with it, the open
        // fails or returns at once, and the type check below refuses the FIFO.
        .custom_flags(flag_bits(OFlags::NOFOLLOW | OFlags::NONBLOCK))
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e)
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
                && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            return Err(OpenError::Symlink {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(OpenError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let meta = file.metadata().map_err(|source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(kind) = fsutil::not_regular(meta.file_type()) {
        return Err(OpenError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    if meta.nlink() > 1 {
        return Err(OpenError::HardLinked {
            path: path.to_path_buf(),
            links: meta.nlink(),
        });
    }
    Ok(file)
}

/// Reads at most `max` bytes of the regular file `path` (symlinks followed: /proc/self is
/// one), opened without blocking; see [`converge_core::fsutil::read_capped`].
pub fn read_input(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_input(path)?;
    fsutil::read_capped_open(path, file, max)
}

/// [`read_input`] as UTF-8 text.
pub fn read_input_text(path: &Path, max: u64) -> Result<String, ReadError> {
    fsutil::text(path, read_input(path, max)?)
}

/// Opens an input file for reading without blocking on a FIFO; [`read_input`] then refuses
/// anything but a regular file.
pub fn open_input(path: &Path) -> Result<File, ReadError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(flag_bits(OFlags::NONBLOCK))
        .open(path)
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Open flags as std's `custom_flags` takes them (the bits all fit in an `i32`).
fn flag_bits(flags: OFlags) -> i32 {
    i32::try_from(flags.bits()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    const NOBODY: u32 = 65534;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Gives `path` to `nobody`; false (and the test skips that part) when not root.
    fn give_away(path: &Path) -> bool {
        if euid() != 0 {
            eprintln!("skipping a check that needs root: chown to nobody");
            return false;
        }
        std::os::unix::fs::lchown(path, Some(NOBODY), None).expect("chown");
        true
    }

    fn permission(err: SecureError) -> PermissionError {
        match err {
            SecureError::Permission(p) => p,
            other => panic!("expected a permission error, got {other}"),
        }
    }

    #[test]
    fn a_private_dir_is_created_mode_0700_with_its_parents() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("var/log/converge");
        ensure_private_dir(&dir, "log_dir").expect("created");
        let mode = |p: &Path| fs::metadata(p).expect("stat").mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("var/log")) & 0o022, 0);
        // Again, now that it exists: accepted as it is.
        ensure_private_dir(&dir, "log_dir").expect("exists");
        // An operator may open it to readers.
        chmod(&dir, 0o750);
        ensure_private_dir(&dir, "log_dir").expect("0750");
    }

    #[test]
    fn a_pass_looks_at_shared_directories_once_and_still_judges_each_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let good = tmp.path().join("good");
        let shared = tmp.path().join("shared");
        for dir in [&good, &shared] {
            fs::create_dir(dir).expect("mkdir");
            fs::write(dir.join("a.yaml"), "x").expect("write");
        }
        chmod(&shared, 0o1777);
        let mut passed = Passed::default();
        check_path_in(&good.join("a.yaml"), "manifest", &mut passed).expect("trusted");
        assert!(
            passed.dirs.contains(good.as_os_str())
                && passed.dirs.contains(std::ffi::OsStr::new("/"))
        );
        // A sticky world-writable directory passes on the way (its entries are safe)…
        check_path_in(&shared.join("a.yaml"), "manifest", &mut passed).expect("sticky above");
        assert!(passed.dirs.contains(shared.as_os_str()));
        // …but not as the path asked about, though the pass holds it as an ancestor.
        let err = permission(
            check_path_in(&shared, "manifest directory", &mut passed).expect_err("1777 itself"),
        );
        assert_eq!(err.path, shared);
        // A file the pass has not seen is looked at, whatever its directory.
        chmod(&good.join("a.yaml"), 0o666);
        let err = permission(
            check_path_in(&good.join("a.yaml"), "manifest", &mut passed).expect_err("0666"),
        );
        assert_eq!(err.mode, 0o666);
        // A directory that fails is not held: the next path below it fails too.
        chmod(&shared, 0o777);
        let mut passed = Passed::default();
        for _ in 0..2 {
            let err = permission(
                check_path_in(&shared.join("a.yaml"), "manifest", &mut passed).expect_err("0777"),
            );
            assert_eq!(err.path, shared);
        }
    }

    #[test]
    fn temporary_directories_under_sticky_tmp_are_fine() {
        // The tests' own directories live there: /tmp is sticky and world-writable, the entry
        // below it is ours.
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(tmp.path().starts_with(std::env::temp_dir()));
        check_path(tmp.path(), "state_dir").expect("a tempdir");
        let err = permission(check_path(Path::new("/tmp"), "log_dir").expect_err("/tmp itself"));
        assert_eq!(err.entry, Entry::Itself);
        assert_eq!(err.why.writable_by, Some(Writers::GroupAndOthers));
        assert_eq!(err.fix(), "chmod go-w /tmp");
    }

    #[test]
    fn regression_a_dir_writable_by_group_or_others_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).expect("mkdir");
        for (mode, writers) in [
            (0o770, Writers::Group),
            (0o707, Writers::Others),
            (0o777, Writers::GroupAndOthers),
            (0o1777, Writers::GroupAndOthers),
        ] {
            chmod(&dir, mode);
            let err = permission(ensure_private_dir(&dir, "state_dir").expect_err("writable"));
            assert_eq!((err.mode, err.why.writable_by), (mode, Some(writers)));
            assert_eq!(err.path, dir);
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("state_dir {} is writable by ", dir.display())),
                "{text}"
            );
            assert!(
                text.ends_with(&format!("fix: chmod go-w {}", dir.display())),
                "{text}"
            );
        }
    }

    #[test]
    fn regression_a_dir_owned_by_another_user_is_refused_and_the_fix_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("converge");
        fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o755);
        if !give_away(&dir) {
            return;
        }
        let err = permission(ensure_private_dir(&dir, "log_dir").expect_err("nobody's"));
        assert_eq!(err.uid, NOBODY);
        assert!(err.why.foreign_owner && err.why.writable_by.is_none());
        assert_eq!(
            err.to_string(),
            format!(
                "log_dir {0} is owned by uid 65534, neither root nor the user converge runs as \
                 (uid 0) (owner uid 65534, mode 0755): another user could make converge, which \
                 runs as root, write where they choose; fix: chown root {0}",
                dir.display()
            )
        );
        chmod(&dir, 0o777);
        let err = permission(check_path(&dir, "log_dir").expect_err("both"));
        assert_eq!(
            err.fix(),
            format!("chown root {0}; chmod go-w {0}", dir.display())
        );
    }

    #[test]
    fn ancestors_are_checked_and_sticky_ones_allowed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).expect("mkdir");
        let dir = shared.join("converge");
        chmod(&shared, 0o777);
        let err = permission(ensure_private_dir(&dir, "log_dir").expect_err("0777 parent"));
        assert_eq!(
            (err.entry, err.path.as_path()),
            (Entry::Ancestor, shared.as_path())
        );
        assert!(
            err.to_string()
                .contains(&format!("the directory {} on its path", shared.display())),
            "{err}"
        );
        assert!(!dir.exists(), "nothing is created under a refused parent");
        // Sticky, as /tmp: the entry below must be ours, and then it is fine.
        chmod(&shared, 0o1777);
        ensure_private_dir(&dir, "log_dir").expect("sticky parent");
        if give_away(&dir) {
            let err = permission(check_path(&dir, "log_dir").expect_err("nobody's"));
            assert_eq!(err.path, dir);
        }
    }

    #[test]
    fn regression_symlinks_on_the_path_are_followed_and_checked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = tmp.path().join("real");
        fs::create_dir(&real).expect("mkdir");
        let link = tmp.path().join("link");
        symlink("real", &link).expect("symlink");
        let resolved = check_path(&link.join("log"), "log_dir").expect("a fine link");
        assert_eq!(resolved.existing, real);
        assert_eq!(resolved.missing, [OsString::from("log")]);
        ensure_private_dir(&link.join("log"), "log_dir").expect("created through the link");
        assert!(real.join("log").is_dir());
        // Where it leads is checked too.
        chmod(&real, 0o777);
        let err = permission(check_path(&link.join("log"), "log_dir").expect_err("0777"));
        assert_eq!(err.path, real);
        chmod(&real, 0o755);
        // `..` after a symlink is its target's parent, as for the kernel.
        let up = link.join("..").join("real");
        assert_eq!(check_path(&up, "x").expect("fine").existing, real);
        // A link someone else owns is refused: they could point it anywhere.
        if give_away(&link) {
            let err = permission(check_path(&link, "log_dir").expect_err("nobody's link"));
            assert_eq!(err.entry, Entry::Symlink);
            assert_eq!(err.fix(), format!("chown -h root {}", link.display()));
        }
        // A loop ends.
        let a = tmp.path().join("a");
        symlink("b", &a).expect("symlink");
        symlink("a", tmp.path().join("b")).expect("symlink");
        assert!(matches!(check_path(&a, "x"), Err(SecureError::Io { .. })));
    }

    #[test]
    fn a_file_where_a_directory_is_expected_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("file");
        fs::write(&file, "").expect("write");
        chmod(&file, 0o644);
        assert!(matches!(
            ensure_private_dir(&file, "state_dir"),
            Err(SecureError::NotADirectory { .. })
        ));
        assert!(matches!(
            ensure_private_dir(&file.join("below"), "state_dir"),
            Err(SecureError::NotADirectory { .. }) | Err(SecureError::Io { .. })
        ));
        assert!(check_path(Path::new("relative"), "x").is_err());
    }

    #[test]
    fn regression_open_for_writing_never_writes_through_a_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious").expect("write");
        let link = tmp.path().join("svc_web_S10foo.log");
        symlink(&victim, &link).expect("symlink");
        let err = open_for_writing(&link).expect_err("a symlink");
        assert!(matches!(err, OpenError::Symlink { .. }), "{err}");
        let hard = tmp.path().join("svc_web_S20bar.log");
        fs::hard_link(&victim, &hard).expect("link");
        let err = open_for_writing(&hard).expect_err("a hard link");
        assert!(
            matches!(err, OpenError::HardLinked { links: 2, .. }),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&victim).expect("read"), "precious");
        let fifo = tmp.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        assert!(open_for_writing(&fifo).is_err(), "a FIFO without a reader");
        let fresh = tmp.path().join("fresh.log");
        open_for_writing(&fresh).expect("created");
        assert_eq!(
            fs::metadata(&fresh).expect("stat").mode() & 0o777 & !0o640,
            0
        );
    }

    #[test]
    fn regression_read_input_refuses_a_fifo_without_waiting_for_a_writer() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fifo = tmp.path().join("proc_drbd");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        let err = read_input(&fifo, 1024).expect_err("a FIFO");
        assert!(
            matches!(err, ReadError::NotRegular { kind: "a FIFO", .. }),
            "{err}"
        );
        let err = read_input(Path::new("/dev/zero"), 1024).expect_err("a device");
        assert!(matches!(err, ReadError::NotRegular { .. }), "{err}");
        let text = read_input_text(Path::new("/proc/self/mountinfo"), 16 << 20).expect("proc");
        assert!(!text.is_empty());
    }
}
