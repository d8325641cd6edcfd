//! Whether root may trust a file's content: the permission model, like sshd's StrictModes.
//!
//! converge runs as root and runs what its configuration and manifests name. Whoever can change
//! one of them — the config file, the manifest directory and files, an app's scripts directory,
//! its scripts and programs — can make root run anything. So each of them, every directory above
//! it up to `/`, and every symlink on the way, must be owned by root (or the user converge runs
//! as) and writable by no one else ([`secure::check_path`] walks the path as the kernel resolves
//! it). Two exceptions: a sticky world-writable directory on the way (`/tmp`: others cannot
//! rename or remove what they do not own, so the trusted entry below it stays put), and a
//! read-only filesystem (its mode bits grant nothing).

use std::path::{Path, PathBuf};

use converge_core::manifest::{AppCommands, Service, Spec};

use crate::secure::{self, PathSet, SecureError, Stake};

/// A path root must not trust, and why (with the fix).
pub type Untrusted = SecureError;

/// Checks `path` (what it is to converge: `what`), every directory and symlink on the way to it,
/// and where those lead. A path that does not exist runs nothing: its existing part is checked.
pub fn check(path: &Path, what: &str) -> Result<(), Untrusted> {
    Checks::default().check(path, what)
}

/// One pass of checks (a reload, the doctor's look): the directories the paths share are looked
/// at once, and a path that passed is not looked at again. A reload of 10,000 manifests in one
/// directory, each naming `/bin/true`, looks at the directory's path and at `/bin/true` once
/// each instead of 10,000 times. Kept for one pass only: the next one sees any change.
#[derive(Debug, Default)]
pub struct Checks {
    dirs: secure::Passed,
    trusted: PathSet,
}

impl Checks {
    /// [`check`], within this pass.
    pub fn check(&mut self, path: &Path, what: &str) -> Result<(), Untrusted> {
        if self.trusted.contains(path.as_os_str()) {
            return Ok(());
        }
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(path))
                .unwrap_or_else(|_| path.to_path_buf())
        };
        match secure::check_path_in(&absolute, what, &mut self.dirs) {
            Ok(_) => {
                self.trusted.insert(path.as_os_str().to_owned());
                Ok(())
            }
            Err(SecureError::Permission(mut e)) => {
                e.stake = Stake::Runs;
                Err(SecureError::Permission(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `path` passed in this pass already (it exists, then).
    fn passed(&self, path: &Path) -> bool {
        self.trusted.contains(path.as_os_str())
    }
}

/// The problems of a loaded service: its manifest file, and what it makes root run (see
/// [`check_service`]).
pub fn check_manifest(service: &Service, checks: &mut Checks) -> Vec<Untrusted> {
    let mut problems: Vec<Untrusted> = checks
        .check(&service.source, "manifest")
        .err()
        .into_iter()
        .collect();
    problems.extend(check_service(service, checks));
    problems
}

/// The problems of what a service makes root run on the host: each DRBD resource file it
/// names (`config:`), each app's scripts directory and the scripts in it, and each app program
/// (argv[0]). An app inside a container runs there, as
/// the container's root: its files are the container's business, not the host's.
pub fn check_service(service: &Service, checks: &mut Checks) -> Vec<Untrusted> {
    let mut problems = Vec::new();
    // A DRBD resource file decides what root runs too: its handlers.
    for (resource, _, file) in service.drbd_files() {
        if let Err(e) = checks.check(&file, &format!("DRBD resource file of {}", resource.id)) {
            problems.push(e);
        }
    }
    if service.container().is_some() {
        return problems;
    }
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
                if let Err(e) = checks.check(dir, &what) {
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
                    if let Err(e) = checks.check(&script, &format!("script of {}", resource.id)) {
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
                        if checks.passed(program) || !program.exists() {
                            continue;
                        }
                        if let Err(e) =
                            checks.check(program, &format!("program of {}", resource.id))
                        {
                            problems.push(e);
                        }
                    }
                }
            }
        }
    }
    // One program may serve as start, stop and check: said once.
    problems.dedup_by(|a, b| a.to_string() == b.to_string());
    problems
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_private_tree_under_tmp_is_trusted_and_a_shared_leaf_is_not() {
        // tempdir: /tmp (1777, root) → .tmpXXXX (0700, converge's user).
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, "x").expect("write");
        chmod(&file, 0o644);
        check(&file, "manifest").expect("trusted");
        // The path itself may not be a sticky world-writable directory.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        chmod(&shared, 0o1777);
        let err = check(&shared, "manifest directory").expect_err("world-writable");
        assert!(err.to_string().contains("mode 1777"), "{err}");
        // Below it, an entry that is trusted is fine.
        let below = shared.join("m");
        std::fs::create_dir(&below).expect("mkdir");
        chmod(&below, 0o755);
        check(&below, "manifest directory").expect("sticky above, trusted below");
    }

    #[test]
    fn the_message_says_root_would_run_it_and_how_to_fix_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let above = dir.path().join("etc");
        let file = above.join("config.yaml");
        std::fs::create_dir(&above).expect("mkdir");
        std::fs::write(&file, "node: deb1\n").expect("write");
        chmod(&file, 0o666);
        let text = check(&file, "config file").expect_err("0666").to_string();
        assert!(
            text.contains("mode 0666")
                && text.contains("run what they choose")
                && text.contains(&format!("chmod go-w {}", file.display())),
            "{text}"
        );
        chmod(&file, 0o644);
        chmod(&above, 0o777);
        let text = check(&file, "config file")
            .expect_err("0777 above")
            .to_string();
        assert!(
            text.contains(&format!("the directory {} on its path", above.display())),
            "{text}"
        );
        // Through a symlink, where it leads counts.
        chmod(&above, 0o755);
        let link = dir.path().join("link.yaml");
        symlink(&file, &link).expect("symlink");
        check(&link, "config file").expect("a link to a trusted file");
        chmod(&file, 0o646);
        assert!(check(&link, "config file").is_err());
    }
}
