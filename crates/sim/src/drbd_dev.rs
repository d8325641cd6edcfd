//! The simulated minors' block devices: a loop device over the backing disk's data area (so that
//! a filesystem on it can never reach DRBD's internal metadata at the end of the disk), a block
//! node with the loop device's numbers at the configured path, read-only while Secondary.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::drbd_state::{Backing, SimError};
use converge_core::observe::mountinfo::{self, DevNum};

// <linux/fs.h>: _IO(0x12, 93), _IOR(0x12, 114, size_t).
const BLKROSET: u64 = 0x125d;
const BLKGETSIZE64: u64 = 0x8008_1272;

fn device_error(path: &Path) -> impl FnOnce(io::Error) -> SimError + '_ {
    move |source| SimError::Device {
        path: path.to_path_buf(),
        source,
    }
}

fn open_device(path: &Path) -> Result<File, SimError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(device_error(path))
}

/// Runs a helper program and returns its stdout; a failure names the command and its message.
fn run(program: &str, args: &[&str]) -> Result<String, SimError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SimError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let detail = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map_or_else(|| output.status.to_string(), str::to_string);
    Err(SimError::Command {
        command: format!("{program} {}", args.join(" ")),
        detail,
    })
}

/// `blockdev --setro` / `--setrw`. The flag stays on the loop device after `losetup -d`, so every
/// detach must clear it first or the next user of that loop number gets a read-only device.
pub fn set_read_only(path: &Path, read_only: bool) -> Result<(), SimError> {
    let file = open_device(path)?;
    let value: libc::c_int = libc::c_int::from(read_only);
    // SAFETY: BLKROSET reads one int through the pointer, which points at `value`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKROSET as _, &value) };
    if rc != 0 {
        return Err(SimError::Device {
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Size in bytes of a block device (or length of a regular file).
pub fn size_of(path: &Path) -> Result<u64, SimError> {
    let file = open_device(path)?;
    let meta = file.metadata().map_err(device_error(path))?;
    if !meta.file_type().is_block_device() {
        return Ok(meta.len());
    }
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at `size`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size) };
    if rc != 0 {
        return Err(SimError::Device {
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(size)
}

/// Why the data area of a backing disk could not be found.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// drbdmeta found no DRBD metadata (DRBD's "No valid meta-data signature found").
    #[error("no valid DRBD metadata on {lower}: {detail}")]
    NoMetadata { lower: String, detail: String },
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// Where DRBD's internal metadata begins, from `drbdmeta … dump-md`'s layout comments: the
/// lowest of the bitmap, activity-log and superblock offsets.
pub fn parse_md_layout(dump: &str) -> Option<u64> {
    dump.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix('#')?.trim();
            let (key, value) = rest.split_once(char::is_whitespace)?;
            matches!(key, "bm_offset" | "al_offset" | "md_offset")
                .then(|| value.trim().parse::<u64>().ok())
                .flatten()
        })
        .min()
}

/// The bytes of `lower` that the DRBD device exposes. With internal metadata, everything before
/// it (read from the real metadata with drbdmeta); with external metadata, the whole disk.
pub fn data_area(minor: u32, lower: &str, meta_index: &str) -> Result<u64, MetaError> {
    if meta_index != "internal" {
        return Ok(size_of(Path::new(lower))?);
    }
    let minor = minor.to_string();
    let args = [minor.as_str(), "v09", lower, "internal", "dump-md"];
    match run("drbdmeta", &args) {
        Ok(dump) => parse_md_layout(&dump).ok_or_else(|| MetaError::NoMetadata {
            lower: lower.to_string(),
            detail: "drbdmeta dump-md printed no metadata layout".to_string(),
        }),
        Err(SimError::Command { detail, .. }) => Err(MetaError::NoMetadata {
            lower: lower.to_string(),
            detail,
        }),
        Err(other) => Err(other.into()),
    }
}

/// `losetup --find --show --sizelimit SIZE LOWER`: a new loop device over the data area.
pub fn create_loop(lower: &str, size: u64) -> Result<PathBuf, SimError> {
    let size = size.to_string();
    let out = run(
        "losetup",
        &["--find", "--show", "--sizelimit", &size, lower],
    )?;
    let path = out.trim();
    if path.is_empty() {
        return Err(SimError::Command {
            command: format!("losetup --find --show --sizelimit {size} {lower}"),
            detail: "printed no device".to_string(),
        });
    }
    Ok(PathBuf::from(path))
}

/// Clears the read-only flag, then `losetup -d`. A loop device that no longer serves `lower`
/// (detached behind the simulator's back, or gone with a reboot) is only forgotten: it may be
/// someone else's by now.
pub fn remove_loop(loop_dev: &Path, lower: &str) -> Result<(), SimError> {
    if !serves(loop_dev, lower) {
        return Ok(());
    }
    let cleared = set_read_only(loop_dev, false);
    let path = loop_dev.to_string_lossy();
    run("losetup", &["-d", &path])?;
    cleared
}

/// Whether loop device `loop_dev` is set up over `lower`, per sysfs. Names are compared, not
/// paths: sysfs shows the path as the reader's mount namespace sees it (a node on a private
/// /dev reads as `/loop1` from outside), and symlinks resolved.
fn serves(loop_dev: &Path, lower: &str) -> bool {
    let Some(name) = loop_dev.file_name() else {
        return false;
    };
    let backing = Path::new("/sys/block").join(name).join("loop/backing_file");
    let Ok(backing) = fs::read_to_string(backing) else {
        return false;
    };
    let lower = fs::canonicalize(lower).unwrap_or_else(|_| PathBuf::from(lower));
    Path::new(backing.trim()).file_name() == lower.file_name()
}

pub fn dev_numbers(path: &Path) -> Result<DevNum, SimError> {
    let meta = fs::metadata(path).map_err(device_error(path))?;
    if !meta.file_type().is_block_device() {
        return Err(SimError::DeviceState {
            path: path.to_path_buf(),
            detail: "not a block device".to_string(),
        });
    }
    let rdev = meta.rdev();
    Ok(DevNum {
        major: libc::major(rdev),
        minor: libc::minor(rdev),
    })
}

/// mknod's a block node at `path`, replacing a stale block node but nothing else.
pub fn make_node(path: &Path, dev: DevNum) -> Result<(), SimError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_block_device() => {
            fs::remove_file(path).map_err(device_error(path))?;
        }
        Ok(_) => {
            return Err(SimError::DeviceState {
                path: path.to_path_buf(),
                detail: "exists and is not a block device".to_string(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(SimError::Device {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(device_error(parent))?;
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o660),
        rustix::fs::makedev(dev.major, dev.minor),
    )
    .map_err(|e| SimError::Device {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Removes the block node at `path`, if it is one.
pub fn remove_node(path: &Path) -> Result<(), SimError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_block_device() => {
            fs::remove_file(path).map_err(device_error(path))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SimError::Device {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether anyone holds the device: mounted in this namespace (mountinfo's major:minor), claimed
/// exclusively anywhere (a mount in another namespace, a holder), or open by some process.
pub fn is_open(backing: &Backing) -> bool {
    let dev = DevNum {
        major: backing.major,
        minor: backing.minor,
    };
    mounted(dev) || claimed(&backing.loop_dev) || open_by_a_process(dev)
}

fn mounted(dev: DevNum) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|text| mountinfo::parse(&text).ok())
        .is_some_and(|mounts| mountinfo::mounts_of_device(&mounts, dev).next().is_some())
}

/// An exclusive open fails with EBUSY while a filesystem (or anything else) claims the device.
fn claimed(path: &Path) -> bool {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(_) => false,
        Err(e) => e.raw_os_error() == Some(libc::EBUSY),
    }
}

fn open_by_a_process(dev: DevNum) -> bool {
    let own = std::process::id().to_string();
    let Ok(procs) = fs::read_dir("/proc") else {
        return false;
    };
    let wanted = libc::makedev(dev.major, dev.minor);
    for entry in procs.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == own || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            // metadata() follows the magic link to the opened node itself.
            let held = fs::metadata(fd.path())
                .is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == wanted);
            if held {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md_layout_from_dump() {
        let dump = "# DRBD meta data dump\n#\n\nversion \"v09\";\n\nmax-peers 1;\n# md_size_sect 80\n# md_offset 67104768\n# al_offset 67072000\n# bm_offset 67067904\n\nnode-id -1;\n";
        assert_eq!(parse_md_layout(dump), Some(67_067_904));
        assert_eq!(parse_md_layout("version \"v09\";\n"), None);
        assert_eq!(parse_md_layout("# bm_offset lots\n"), None);
    }

    #[test]
    fn nodes_are_replaced_only_when_they_are_block_nodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("drbd0");
        fs::write(&file, "x").expect("write");
        let err = make_node(&file, DevNum { major: 7, minor: 0 }).expect_err("refuses");
        assert!(err.to_string().contains("not a block device"), "{err}");
        // A regular file is left alone by remove_node too.
        remove_node(&file).expect("ok");
        assert!(file.exists());
        remove_node(&dir.path().join("absent")).expect("absent is fine");
    }

    #[test]
    fn helper_failures_name_the_command() {
        let err = run("sh", &["-c", "echo boom >&2; exit 3"]).expect_err("fails");
        assert_eq!(err.to_string(), "sh -c echo boom >&2; exit 3 failed: boom");
        let err = run("/nonexistent/losetup", &[]).expect_err("fails");
        assert!(
            err.to_string()
                .starts_with("cannot run /nonexistent/losetup")
        );
    }
}
