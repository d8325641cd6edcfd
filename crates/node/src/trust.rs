//! Whether root may trust a file's content: the permission model, like sshd's StrictModes.
//!
//! converge runs as root and runs what its configuration and manifests name. Whoever can change
//! one of them — the config file, the manifest directory and files, an app's scripts directory,
//! its scripts and programs — can make root run anything. So each of them, and every directory
//! above it up to `/`, must be owned by root (or the user converge runs as) and writable by no
//! one else. Two exceptions:
//! - a directory above that is world-writable but sticky (`/tmp`): the sticky bit keeps others
//!   from renaming or removing what they do not own, so it is safe when the entry below it is
//!   trusted (which the walk checks next);
//! - a read-only filesystem: its mode bits grant nothing.
//!
//! Symlinks are judged twice: the path as written (a link's owner must be trusted, as must the
//! directories it sits in) and the path it leads to.

use std::fmt;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use converge_core::manifest::{AppCommands, Service, Spec};

/// A path root must not trust, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    /// What the path is to converge: "manifest", "app script", "directory above the config file".
    pub what: String,
    pub path: PathBuf,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Someone else can write it.
    Writable { uid: u32, mode: u32 },
    /// It belongs to someone other than root and converge's user.
    Owner { uid: u32, mode: u32 },
    /// It cannot be looked at.
    Unreadable(String),
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let what = &self.what;
        match &self.problem {
            Problem::Writable { uid, mode } => {
                let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
                    (true, true) => "its group and everyone",
                    (true, false) => "its group",
                    _ => "everyone",
                };
                write!(
                    f,
                    "refusing {what} {path} (owner uid {uid}, mode {mode:04o}): {who} can write it, \
                     and converge runs what it holds as root; fix: chmod go-w {path}"
                )
            }
            Problem::Owner { uid, mode } => write!(
                f,
                "refusing {what} {path} (owner uid {uid}, mode {mode:04o}): owned by neither root \
                 nor the user converge runs as (uid {}), and converge runs what it holds as root; \
                 fix: chown root {path}",
                euid()
            ),
            Problem::Unreadable(why) => write!(f, "cannot check {what} {path}: {why}"),
        }
    }
}

impl std::error::Error for Untrusted {}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn read_only_fs(path: &Path) -> bool {
    rustix::fs::statvfs(path)
        .is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Judges one entry. `leaf`: the path itself, not a directory above it (only a directory above
/// may be a sticky world-writable one).
fn judge(path: &Path, meta: &Metadata, leaf: bool) -> Option<Problem> {
    let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
    if meta.file_type().is_symlink() {
        // A link's mode means nothing; who may replace it is its directory's business.
        return (uid != 0 && uid != euid()).then_some(Problem::Owner { uid, mode });
    }
    // A sticky directory above the path may be world-writable: others cannot rename or remove
    // the trusted entry below it.
    let sticky_above = !leaf && meta.is_dir() && mode & 0o1000 != 0;
    let problem = if mode & 0o022 != 0 && !sticky_above {
        Some(Problem::Writable { uid, mode })
    } else if uid != 0 && uid != euid() {
        Some(Problem::Owner { uid, mode })
    } else {
        None
    };
    problem.filter(|_| !read_only_fs(path))
}

/// Checks `path` (what it is to converge: `what`) and every directory above it, as written and
/// as resolved through symlinks.
pub fn check(path: &Path, what: &str) -> Result<(), Untrusted> {
    // Set once the path is resolved, to name a failing link target as such.
    let mut target: Option<PathBuf> = None;
    let untrusted = |at: &Path, target: Option<&Path>, problem: Problem| {
        let what = if at == path {
            what.to_string()
        } else if Some(at) == target {
            format!("{what} {}, which leads to", path.display())
        } else {
            format!("a directory above {what} {}", path.display())
        };
        Untrusted {
            what,
            path: at.to_path_buf(),
            problem,
        }
    };
    let unreadable =
        |at: &Path, e: io::Error| untrusted(at, None, Problem::Unreadable(e.to_string()));
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| unreadable(path, e))?
            .join(path)
    };
    let resolved = absolute
        .canonicalize()
        .map_err(|e| unreadable(&absolute, e))?;
    if resolved != absolute {
        target = Some(resolved.clone());
    }
    for walked in [&absolute, &resolved] {
        let mut at = PathBuf::new();
        let components: Vec<Component> = walked.components().collect();
        for (i, component) in components.iter().enumerate() {
            at.push(component);
            let meta = std::fs::symlink_metadata(&at).map_err(|e| unreadable(&at, e))?;
            let leaf = i + 1 == components.len();
            if let Some(problem) = judge(&at, &meta, leaf) {
                return Err(untrusted(&at, target.as_deref(), problem));
            }
        }
        if resolved == absolute {
            break;
        }
    }
    Ok(())
}

/// The problems of a loaded service: its manifest file, and what it makes root run (see
/// [`check_service`]).
pub fn check_manifest(service: &Service) -> Vec<Untrusted> {
    let mut problems: Vec<Untrusted> = check(&service.source, "manifest")
        .err()
        .into_iter()
        .collect();
    problems.extend(check_service(service));
    problems
}

/// The problems of what a service makes root run on the host: each app's scripts directory and
/// the scripts in it, and each app program (argv[0]). An app inside a container runs there, as
/// the container's root: its files are the container's business, not the host's.
pub fn check_service(service: &Service) -> Vec<Untrusted> {
    if service.container().is_some() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for resource in service.resources.iter().filter(|r| !r.disabled) {
        let Spec::App(app) = &resource.spec else {
            continue;
        };
        match &app.commands {
            AppCommands::Scripts(dir) => {
                // A directory that does not exist runs nothing; the start says so.
                if !dir.exists() {
                    continue;
                }
                let what = format!("scripts directory of {}", resource.id);
                if let Err(e) = check(dir, &what) {
                    problems.push(e);
                    continue;
                }
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut scripts: Vec<PathBuf> =
                    entries.filter_map(Result::ok).map(|e| e.path()).collect();
                scripts.sort();
                for script in scripts {
                    if let Err(e) = check(&script, &format!("script of {}", resource.id)) {
                        problems.push(e);
                    }
                }
            }
            AppCommands::Argv {
                start,
                stop,
                check: c,
            } => {
                for argv in [start, stop, c].into_iter().flatten() {
                    if let Some(program) = argv.first() {
                        let program = Path::new(program);
                        if program.exists()
                            && let Err(e) = check(program, &format!("program of {}", resource.id))
                        {
                            problems.push(e);
                        }
                    }
                }
            }
        }
    }
    problems.dedup();
    problems
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn chown_nobody(path: &Path) {
        std::os::unix::fs::lchown(path, Some(65534), Some(65534)).expect("chown");
    }

    fn root() -> bool {
        euid() == 0
    }

    #[test]
    fn a_private_tree_under_tmp_is_trusted_and_its_sticky_parent_too() {
        // tempdir: /tmp (1777, root) → .tmpXXXX (0700, converge's user).
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, "x").expect("write");
        chmod(&file, 0o644);
        check(&file, "manifest").expect("trusted");
        // The leaf itself may not be a sticky world-writable directory.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        chmod(&shared, 0o1777);
        let err = check(&shared, "manifest directory").expect_err("world-writable leaf");
        assert!(
            matches!(err.problem, Problem::Writable { mode: 0o1777, .. }),
            "{err}"
        );
        // Below it, an entry that is trusted is fine.
        let below = shared.join("m");
        std::fs::create_dir(&below).expect("mkdir");
        chmod(&below, 0o755);
        check(&below, "manifest directory").expect("sticky above, trusted below");
    }

    #[test]
    fn writable_by_others_anywhere_on_the_way_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let above = dir.path().join("etc");
        let file = above.join("config.yaml");
        std::fs::create_dir(&above).expect("mkdir");
        std::fs::write(&file, "node: deb1\n").expect("write");
        chmod(&file, 0o666);
        let err = check(&file, "config file").expect_err("0666");
        assert_eq!(err.path, file);
        let text = err.to_string();
        assert!(
            text.contains("mode 0666") && text.contains("chmod go-w"),
            "{text}"
        );
        chmod(&file, 0o644);
        chmod(&above, 0o777);
        let err = check(&file, "config file").expect_err("0777 above");
        assert_eq!(err.path, above);
        assert!(
            err.to_string()
                .starts_with("refusing a directory above config file"),
            "{err}"
        );
    }

    #[test]
    fn owned_by_someone_else_is_refused_as_link_and_as_target() {
        if !root() {
            eprintln!("skipping: chown needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("S10foo");
        std::fs::write(&target, "#!/bin/sh\n").expect("write");
        chmod(&target, 0o755);
        chown_nobody(&target);
        let err = check(&target, "app script").expect_err("nobody's");
        assert!(
            matches!(err.problem, Problem::Owner { uid: 65534, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chown root"), "{err}");
        // Through a trusted link: the target still counts.
        let link = dir.path().join("link");
        symlink(&target, &link).expect("symlink");
        assert!(check(&link, "app script").is_err());
        // A link owned by someone else is refused even when its target is fine.
        std::os::unix::fs::lchown(&target, Some(0), Some(0)).expect("chown back");
        check(&link, "app script").expect("root's link to root's script");
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).expect("chown link");
        let err = check(&link, "app script").expect_err("nobody's link");
        assert_eq!(err.path, link);
    }
}
