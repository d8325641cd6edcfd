//! The DRBD resource files manifests name (`config:` of a `drbd#N`), against the installed
//! ones, and what drbdadm says of them.
//!
//! A file that differs from the installed one is checked with drbdadm before the planner may
//! install it ([`check`]: the whole configuration, with the new file in place of the old), and
//! the act layer checks the very copy it is about to install again. What drbdadm said of one
//! pair of contents is kept in memory, so a pass over unchanged files runs no program.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use crate::exec::{self, ExecError};
use crate::secure;
use converge_core::command::res_file_check_argv;
use converge_core::config::Config;
use converge_core::manifest::{DrbdSpec, Service, load::error_at_path};
use converge_core::observe::{DrbdFile, DrbdFileState, drbd_conf};

/// A resource file is a few KB; one of a hundred resources with long handlers stays far below.
/// A larger file is refused unread.
pub const MAX_RES_FILE_BYTES: u64 = 1024 * 1024;

/// drbdadm reads configuration files only: it answers at once, this bounds a hung one.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// What drbdadm says of a resource file in place of the installed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// It accepts it, and the file defines the resource for this node.
    Accepted,
    /// The file defines the resource with no section for this node.
    NotHere,
    /// It refuses it: its own message.
    Refused(String),
    /// drbdadm could not be asked (not installed, say): why.
    Unchecked(String),
}

/// Checks `file` as the resource file of `res` in place of `installed`: `drbdadm -t FILE -E
/// INSTALLED dump RES` (see [`res_file_check_argv`]). drbdadm says "not defined ... (for this
/// host)" both of a resource the file lacks and of one without a section for this node; a
/// second `dump all` tells the two apart.
pub async fn check(config: &Config, file: &Path, installed: &Path, res: &str) -> Check {
    let argv = res_file_check_argv(&config.commands, file, installed, res);
    let out = match exec::run(&argv, CHECK_TIMEOUT).await {
        Ok(out) => out,
        Err(ExecError::NotFound { program }) => {
            return Check::Unchecked(format!(
                "{program} not found (install drbd-utils or set commands.drbdadm)"
            ));
        }
        Err(e) => return Check::Unchecked(e.to_string()),
    };
    if out.success() {
        return Check::Accepted;
    }
    let complaint = drbdadm_complaint(&out.stderr, &out.stdout);
    if !complaint.contains("not defined in your config") {
        return Check::Refused(complaint);
    }
    let mut all = argv;
    if let Some(last) = all.last_mut() {
        *last = "all".into();
    }
    // The whole configuration's dump: read whole (up to the listings' cap), never its tail.
    let dumped = match exec::run_parsed(&all, CHECK_TIMEOUT, crate::observer::LISTING_MAX).await {
        Ok(out) if out.success() => {
            drbd_conf::parse_dump(&out.stdout).map_err(|e| format!("{}: {e}", all.join(" ")))
        }
        Ok(out) => Err(format!("{} {}", all.join(" "), out.describe_end())),
        Err(e) => Err(e.to_string()),
    };
    match dumped {
        Ok(resources) if resources.contains_key(res) => Check::NotHere,
        Ok(_) => Check::Refused(format!("it does not define resource {res}")),
        Err(why) => Check::Unchecked(why),
    }
}

/// drbdadm's message, one line: what it printed on stderr (stdout when stderr is empty), its
/// noise left out (without the kernel module, every call prints "modinfo: not found").
pub fn drbdadm_complaint(stderr: &str, stdout: &str) -> String {
    let useful = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.contains("modinfo"))
            .map(str::to_string)
            .collect()
    };
    let mut lines = useful(stderr);
    if lines.is_empty() {
        lines = useful(stdout);
    }
    if lines.is_empty() {
        "drbdadm refused it without a message".into()
    } else {
        lines.join("; ")
    }
}

/// What was checked, by what it was checked on: (resource, hash of the new file, hash of the
/// installed one or none, the stamp of the rest of the DRBD configuration) → the answer.
pub type CheckCache = BTreeMap<(String, u64, Option<u64>, String), DrbdFileState>;

fn digest(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The files of every enabled `drbd#N` with a `config:`, by resource.
pub(super) async fn observe(
    config: &Config,
    services: &[Service],
    cache: &std::sync::Mutex<CheckCache>,
) -> BTreeMap<String, DrbdFile> {
    let mut out = BTreeMap::new();
    for service in services {
        for (resource, spec, source) in service.drbd_files() {
            let installed = spec.installed_file(&config.drbd_conf_dir);
            let state = file_state(config, service, resource.id, spec, &source, cache).await;
            out.insert(
                spec.res.clone(),
                DrbdFile {
                    source,
                    installed,
                    state,
                },
            );
        }
    }
    out
}

async fn file_state(
    config: &Config,
    service: &Service,
    rid: converge_core::manifest::ResourceId,
    spec: &DrbdSpec,
    source: &Path,
    cache: &std::sync::Mutex<CheckCache>,
) -> DrbdFileState {
    let installed_path = spec.installed_file(&config.drbd_conf_dir);
    let installed = match secure::read_input(&installed_path, MAX_RES_FILE_BYTES) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.is_not_found() => None,
        // Unreadable (too large, not a regular file): replaced as if it differed, which fails
        // with the reason when it cannot be.
        Err(_) => Some(Vec::new()),
    };
    let missing = installed.is_none();
    let at = |why: String| {
        error_at_path(
            service,
            &["resources", &rid.to_string(), "config"],
            format!("{}: {why}", source.display()),
        )
        .to_string()
    };
    let new = match secure::read_input(source, MAX_RES_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) => {
            return DrbdFileState::Refused {
                why: at(format!("cannot read it: {e}")),
                missing,
            };
        }
    };
    if installed.as_deref() == Some(new.as_slice()) {
        return DrbdFileState::Installed;
    }
    // drbdadm's answer depends on the rest of the configuration too (global_common.conf,
    // the other resources): its stamp is part of what the answer is kept by.
    let key = (
        spec.res.clone(),
        digest(&new),
        installed.as_deref().map(digest),
        crate::observer::drbd_config_stamp(&config.drbd_conf_dir),
    );
    if let Some(known) = lock(cache).get(&key) {
        return known.clone();
    }
    let checked = check(config, source, &installed_path, &spec.res).await;
    // drbdadm read the path: kept only if it still holds what was hashed (a checkout may
    // have replaced it meanwhile), and never when drbdadm could not be asked (that passes).
    let keep = !matches!(checked, Check::Unchecked(_))
        && secure::read_input(source, MAX_RES_FILE_BYTES).is_ok_and(|now| now == new);
    let state = match checked {
        Check::Accepted => DrbdFileState::Differs { missing },
        Check::NotHere => DrbdFileState::NotHere,
        Check::Refused(why) => DrbdFileState::Refused {
            why: at(format!("drbdadm refuses it: {why}")),
            missing,
        },
        // Never installed unchecked.
        Check::Unchecked(why) => DrbdFileState::Refused {
            why: at(format!("cannot check it with drbdadm: {why}")),
            missing,
        },
    };
    // Said once per content: what is checked again comes from the cache (an answer not kept
    // is said at each pass it is asked again, at debug level).
    if let DrbdFileState::Refused { why, .. } = &state
        && !keep
    {
        tracing::debug!(service = %service.name, "{why}");
    } else if let DrbdFileState::Refused { why, .. } = &state {
        let kept = if missing {
            "nothing is installed".to_string()
        } else {
            format!("{} stays in force", installed_path.display())
        };
        tracing::error!(service = %service.name, "{why}; {kept}");
    }
    if keep {
        let mut cache = lock(cache);
        // Edits come one at a time; a cache this large has only stale entries.
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(key, state.clone());
    }
    state
}

fn lock(cache: &std::sync::Mutex<CheckCache>) -> std::sync::MutexGuard<'_, CheckCache> {
    // Plain data that no panic can leave half-written.
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_complaint_leaves_the_modinfo_noise_out() {
        assert_eq!(
            drbdadm_complaint(
                "sh: 1: modinfo: not found\n/m/r0.res:6: Parse error: 'TK_STRING | {' expected,\n\tbut got '' (TK 0)\n",
                ""
            ),
            "/m/r0.res:6: Parse error: 'TK_STRING | {' expected,; but got '' (TK 0)"
        );
        assert_eq!(
            drbdadm_complaint("sh: 1: modinfo: not found\n", "out\n"),
            "out"
        );
        assert_eq!(
            drbdadm_complaint("", ""),
            "drbdadm refused it without a message"
        );
    }
}
