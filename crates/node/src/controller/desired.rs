//! The services in force for the daemon, kept across reloads of the manifest directory.
//!
//! Bad input loses nothing:
//! - a manifest that fails to parse or validate keeps its last good version in force, with its
//!   errors reported;
//! - a deleted manifest's service is left as it is and reported as orphaned, or with `prune`
//!   brought down, then forgotten;
//! - a directory that suddenly holds no valid manifest (emptied, unmounted, a bad sync) brings
//!   nothing down unless `allow_empty`.
//!
//! A reload is two parts: [`read`] the directory (every file read, the changed ones parsed,
//! trust checked: the part that takes time), then [`DesiredSet::take`] what was read (quick).
//! The daemon reads off its event loop and takes the result on it; a read it gives up on (at
//! shutdown) is never taken, so the set in force never holds part of a reload.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use converge_core::escape::excerpt;
use converge_core::manifest::load::{ParseCache, claims_of, load_dir_lenient_cached_until};
use converge_core::manifest::{DesiredState, LoadError, Service};

use crate::trust;

/// A service whose manifest is gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    pub service: Service,
    /// Being brought down (`prune: true`); otherwise left as it is.
    pub pruning: bool,
}

/// What a reload changed, for the scheduler and the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reload {
    /// Services new or different from the version in force before.
    pub changed: Vec<String>,
    /// Services whose manifest disappeared (now orphans).
    pub removed: Vec<String>,
    /// The directory held no valid manifest and `allow_empty` is off: deletions were ignored.
    pub emptiness_refused: bool,
    /// The hash of the manifests read (see [`converge_core::manifest::load::ContentHash`]); 0 when
    /// given rather than read.
    pub content: u64,
}

/// What [`read`] found in the manifest directory, to be taken in by [`DesiredSet::take`].
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// A directory root may not trust (see [`trust`]): what is in force stays, with this as the
    /// directory's error.
    Refused(LoadError),
    Loaded {
        /// The manifests that parsed, validated and may be trusted (shared with the parse
        /// cache: an unchanged file's service is not copied).
        services: Vec<Arc<Service>>,
        /// The problems of the others, file:line:column each, with the trust refusals.
        errors: Vec<LoadError>,
        /// See [`converge_core::manifest::load::Loaded::warnings`].
        warnings: Vec<LoadError>,
        /// See [`Reload::content`].
        content: u64,
        /// By service: a digest of the DRBD resource files it names (`config:`), which are
        /// desired state too: a commit that changes only one of them changes the service.
        files: BTreeMap<String, u64>,
    },
}

impl Read {
    /// The hash of the manifests read (see [`Reload::content`]); 0 for a refused directory.
    pub fn content(&self) -> u64 {
        match self {
            Read::Refused(_) => 0,
            Read::Loaded { content, .. } => *content,
        }
    }
}

/// Reads the manifest directory `dir`: every file, parsing those whose text `cache` has not
/// seen, and the trust checks. `stop` is asked before each file: once it says so, the read ends
/// there and gives `None` (the wait is one file's parse at most, which the loader bounds).
pub fn read(dir: &Path, cache: &mut ParseCache, stop: &dyn Fn() -> bool) -> Option<Read> {
    if let Err(untrusted) = trust::check(dir, "manifest directory") {
        return Some(Read::Refused(LoadError::new(dir, untrusted.to_string())));
    }
    let loaded = load_dir_lenient_cached_until(dir, cache, stop)?;
    let mut errors = loaded.errors;
    let mut trusted = Vec::with_capacity(loaded.services.len());
    let mut checks = trust::Checks::default();
    for service in loaded.services {
        let problems = trust::check_manifest(&service, &mut checks);
        if problems.is_empty() {
            trusted.push(service);
        } else {
            errors.extend(
                problems
                    .iter()
                    .map(|p| LoadError::new(&service.source, p.to_string())),
            );
        }
    }
    let files: BTreeMap<String, u64> = trusted
        .iter()
        .filter_map(|s| Some((s.name.clone(), files_digest(s)?)))
        .collect();
    // The revision covers the resource files as well as the manifests.
    let content = files
        .values()
        .fold(loaded.content, |acc, d| acc.rotate_left(5) ^ d);
    Some(Read::Loaded {
        services: trusted,
        errors,
        warnings: loaded.warnings,
        content,
        files,
    })
}

/// A digest of the DRBD resource files `service` names, as they read now (an unreadable one
/// by its error); `None` when it names none.
fn files_digest(service: &Service) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    let mut any = false;
    for (_, _, file) in service.drbd_files() {
        any = true;
        file.hash(&mut hasher);
        match crate::secure::read_input(&file, crate::observer::drbd_file::MAX_RES_FILE_BYTES) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(e) => e.to_string().hash(&mut hasher),
        }
    }
    any.then(|| hasher.finish())
}

#[derive(Debug, Default)]
pub struct DesiredSet {
    /// Per manifest file, the version in force (the last good one), shared with the parse
    /// cache.
    by_file: BTreeMap<PathBuf, Arc<Service>>,
    orphans: BTreeMap<String, Orphan>,
    /// The current problems of the directory, file:line:column each.
    pub errors: Vec<LoadError>,
    /// What the last reload skipped and should say (entries named like manifests that are not
    /// files).
    pub warnings: Vec<LoadError>,
    /// What [`DesiredSet::reconciled`] returns, rebuilt whenever the above change: a daemon's
    /// resync hands it to the observation without copying every service each time.
    reconciled: Arc<[Service]>,
    /// Positions in `reconciled` by service name.
    by_name: HashMap<String, usize>,
    /// Spares reading the files whose stamp is unchanged, and parsing the ones whose text is.
    /// [`DesiredSet::reload`]'s: a caller of [`read`] keeps its own.
    parsed: ParseCache,
    /// By service, the digest of its DRBD resource files last read (see [`Read::Loaded`]).
    files: BTreeMap<String, u64>,
}

impl DesiredSet {
    /// Re-reads the whole directory and takes it in, in one go: [`read`], then
    /// [`DesiredSet::take`].
    pub fn reload(&mut self, dir: &Path, prune: bool, allow_empty: bool) -> Reload {
        match read(dir, &mut self.parsed, &|| false) {
            Some(read) => self.take(read, prune, allow_empty),
            // Never asked to stop, a read ends with the directory.
            None => Reload::default(),
        }
    }

    /// Takes in what [`read`] found. A directory root may not trust changes nothing: what is in
    /// force stays, with the reason as the directory's error. A manifest root may not trust, or
    /// that makes root run a script or program it may not trust, is refused as a broken file
    /// is: its last good version stays in force.
    pub fn take(&mut self, read: Read, prune: bool, allow_empty: bool) -> Reload {
        match read {
            Read::Refused(error) => {
                self.errors = vec![error];
                Reload::default()
            }
            Read::Loaded {
                services,
                errors,
                warnings,
                content,
                files,
            } => {
                self.warnings = warnings;
                let mut reload = self.apply(services, errors, prune, allow_empty);
                for service in self.reconciled.iter() {
                    let name = &service.name;
                    if files.get(name) != self.files.get(name) && !reload.changed.contains(name) {
                        reload.changed.push(name.clone());
                    }
                }
                self.files = files;
                Reload { content, ..reload }
            }
        }
    }

    /// The reload's logic, apart from reading: `services` parsed fine, `errors` name the files
    /// that did not.
    pub fn apply(
        &mut self,
        services: Vec<Arc<Service>>,
        errors: Vec<LoadError>,
        prune: bool,
        allow_empty: bool,
    ) -> Reload {
        let mut reload = Reload::default();
        let mut errors = errors;
        let mut next: BTreeMap<PathBuf, Arc<Service>> = services
            .into_iter()
            .map(|s| (s.source.clone(), s))
            .collect();
        // A broken file keeps its last good version.
        let broken: BTreeSet<PathBuf> = errors.iter().map(|e| e.file.clone()).collect();
        let mut kept: Vec<&Service> = Vec::new();
        for path in &broken {
            if let Some(old) = self.by_file.get(path)
                && !next.contains_key(path)
            {
                next.insert(path.clone(), Arc::clone(old));
                kept.push(old);
            }
        }
        // The directory's own checks (one name, one DRBD resource, mount point or container per
        // service) cannot see a broken file's kept version: a valid file claiming what it has
        // is refused here, and keeps its own last good version if it had one.
        for path in self.refused_next_to(&kept, &next, &mut errors) {
            next.remove(&path);
            if let Some(old) = self.by_file.get(&path) {
                next.insert(path, old.clone());
            }
        }
        let failing: BTreeSet<&PathBuf> = errors.iter().map(|e| &e.file).collect();
        let valid_now = next.len();
        // The same files as before (as a reload of an unchanged directory finds): one pass
        // instead of a lookup per file, whose `Path` comparisons were 40 % of this function.
        let same_files = next.len() == self.by_file.len() && next.keys().eq(self.by_file.keys());
        let mut deleted: Vec<PathBuf> = if same_files {
            Vec::new()
        } else {
            self.by_file
                .keys()
                .filter(|p| !next.contains_key(*p) && !failing.contains(p))
                .cloned()
                .collect()
        };
        if valid_now == 0 && !self.by_file.is_empty() && !allow_empty {
            // Nothing valid at all looks like a mistake (an emptied or unmounted directory, a
            // broken sync), not a decision to stop everything: keep what was in force.
            reload.emptiness_refused = true;
            for path in deleted.drain(..) {
                if let Some(old) = self.by_file.get(&path) {
                    next.insert(path, old.clone());
                }
            }
        }
        for path in &deleted {
            if let Some(old) = self.by_file.get(path) {
                reload.removed.push(old.name.clone());
                self.orphans.insert(
                    old.name.clone(),
                    Orphan {
                        service: Service::clone(old),
                        pruning: prune,
                    },
                );
            }
        }
        let before: HashMap<&str, &Arc<Service>> = self
            .by_file
            .values()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut orphans_back = false;
        for service in next.values() {
            // A service that comes back is no orphan.
            orphans_back |= self.orphans.remove(&service.name).is_some();
            // The same parse (an unchanged file) is equal without a look inside.
            let same = before
                .get(service.name.as_str())
                .is_some_and(|&b| Arc::ptr_eq(b, service) || **b == **service);
            if !same {
                reload.changed.push(service.name.clone());
            }
        }
        // Equal services from the same files (and no orphan gone or come): the set reconciled
        // is the one built last time, and stays shared. Rebuilding it copies every service,
        // a third of a reload of 10,000 unchanged manifests.
        let same =
            reload.changed.is_empty() && reload.removed.is_empty() && !orphans_back && same_files;
        self.by_file = next;
        self.errors = errors;
        if !same {
            self.rebuild();
        }
        reload
    }

    /// The files of `next` (other than the `kept` versions) that claim a name or a thing a kept
    /// version has, each with an error added to `errors`.
    fn refused_next_to(
        &self,
        kept: &[&Service],
        next: &BTreeMap<PathBuf, Arc<Service>>,
        errors: &mut Vec<LoadError>,
    ) -> Vec<PathBuf> {
        let mut refused = Vec::new();
        for (path, fresh) in next {
            if kept.iter().any(|k| &k.source == path) {
                continue;
            }
            let fresh_claims = claims_of(fresh);
            for old in kept {
                let why = if old.name == fresh.name {
                    Some((None, format!("duplicate service {}", excerpt(&fresh.name))))
                } else {
                    claims_of(old).into_iter().find_map(|claim| {
                        let mine = fresh_claims
                            .iter()
                            .find(|c| c.what == claim.what && c.value == claim.value)?;
                        Some((
                            Some(format!("resources.{}.{}", mine.rid, mine.field)),
                            format!(
                                "{} {} is also managed by service {}",
                                claim.what,
                                excerpt(&claim.value),
                                old.name
                            ),
                        ))
                    })
                };
                if let Some((field, what)) = why {
                    errors.push(LoadError {
                        file: path.clone(),
                        location: None,
                        field,
                        message: format!(
                            "{what}, from {}: its last good version stays in force while that \
                             file has errors; one thing, one service",
                            old.source.display()
                        ),
                    });
                    refused.push(path.clone());
                    break;
                }
            }
        }
        refused
    }

    fn rebuild(&mut self) {
        let mut services: Vec<Service> = self.by_file.values().map(|s| Service::clone(s)).collect();
        for orphan in self.orphans.values().filter(|o| o.pruning) {
            let mut down = orphan.service.clone();
            down.state = DesiredState::Down;
            services.push(down);
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        self.by_name = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        self.reconciled = services.into();
    }

    /// The services to reconcile: those in force, and orphans being pruned (as `down`).
    /// Orphans left as they are get no reconcile.
    /// Shared, not copied: sorted by name.
    pub fn reconciled(&self) -> Arc<[Service]> {
        Arc::clone(&self.reconciled)
    }

    /// The services reconciled, borrowed: each with whether it is a pruned orphan (reconciled
    /// as `down`). For the status view, which must not copy every service on every write.
    pub fn in_force(&self) -> impl Iterator<Item = (&Service, bool)> {
        self.by_file.values().map(|s| (&**s, false)).chain(
            self.orphans
                .values()
                .filter(|o| o.pruning)
                .map(|o| (&o.service, true)),
        )
    }

    /// The service `name` as it is reconciled (a pruned orphan as `down`), without copying the
    /// others.
    pub fn get(&self, name: &str) -> Option<Service> {
        let &at = self.by_name.get(name)?;
        self.reconciled.get(at).cloned()
    }

    /// The service `name` left behind by its deleted manifest, if it is an orphan.
    pub fn orphan(&self, name: &str) -> Option<&Orphan> {
        self.orphans.get(name)
    }

    /// Every orphan, by name.
    pub fn orphans(&self) -> impl Iterator<Item = &Orphan> {
        self.orphans.values()
    }

    /// A pruned orphan that is down now is forgotten.
    pub fn forget_orphan(&mut self, name: &str) {
        if self.orphans.remove(name).is_some() {
            self.rebuild();
        }
    }

    /// The files whose last good version is in force despite errors.
    pub fn stale_files(&self) -> Vec<&Path> {
        let failing: BTreeSet<&PathBuf> = self.errors.iter().map(|e| &e.file).collect();
        self.by_file
            .keys()
            .filter(|p| failing.contains(p))
            .map(PathBuf::as_path)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use converge_core::manifest::parse_manifest;

    fn svc(file: &str, name: &str, state: &str) -> Arc<Service> {
        let text = format!(
            "service: {name}\nstate: {state}\nresources:\n  app#0:\n    start: [/bin/true]\n"
        );
        Arc::new(parse_manifest(Path::new(file), &text).expect("valid"))
    }

    fn error(file: &str) -> LoadError {
        LoadError {
            file: file.into(),
            location: None,
            field: None,
            message: "broken".into(),
        }
    }

    fn drbd_svc(file: &str, name: &str, res: &str) -> Arc<Service> {
        let text = format!("service: {name}\nstate: up\nresources:\n  drbd#0:\n    res: {res}\n");
        Arc::new(parse_manifest(Path::new(file), &text).expect("valid"))
    }

    #[test]
    fn regression_a_broken_files_kept_version_is_not_doubled_by_a_new_file() {
        // a.yaml breaks and its last good `web` stays in force; b.yaml then defines `web` too,
        // or manages a's DRBD resource. The directory's checks cannot see a's kept version:
        // both were once in force at the same time.
        let mut set = DesiredSet::default();
        set.apply(
            vec![
                svc("/m/a.yaml", "web", "up"),
                drbd_svc("/m/d.yaml", "db", "r0"),
            ],
            vec![],
            false,
            false,
        );
        let r = set.apply(
            vec![
                svc("/m/b.yaml", "web", "down"),
                drbd_svc("/m/e.yaml", "db2", "r0"),
                svc("/m/c.yaml", "other", "up"),
            ],
            vec![error("/m/a.yaml"), error("/m/d.yaml")],
            false,
            false,
        );
        let names: Vec<(String, PathBuf)> = set
            .reconciled()
            .iter()
            .map(|s| (s.name.clone(), s.source.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("db".to_string(), PathBuf::from("/m/d.yaml")),
                ("other".to_string(), PathBuf::from("/m/c.yaml")),
                ("web".to_string(), PathBuf::from("/m/a.yaml")),
            ]
        );
        assert_eq!(r.changed, ["other"]);
        let messages: Vec<String> = set.errors.iter().map(ToString::to_string).collect();
        assert!(
            messages.iter().any(|m| m.starts_with(
                "/m/b.yaml: duplicate service \"web\", from /m/a.yaml: its last good version"
            )),
            "{messages:#?}"
        );
        assert!(
            messages.iter().any(|m| m.starts_with(
                "/m/e.yaml: resources.drbd#0.res: DRBD resource \"r0\" is also managed by service db"
            )),
            "{messages:#?}"
        );
        // a.yaml fixed (and renamed its service): b.yaml's `web` now goes in.
        set.apply(
            vec![
                svc("/m/a.yaml", "web-old", "up"),
                svc("/m/b.yaml", "web", "down"),
            ],
            vec![],
            false,
            false,
        );
        assert!(
            set.get("web")
                .is_some_and(|s| s.source == Path::new("/m/b.yaml"))
        );
        assert!(set.errors.is_empty());
    }

    /// A DRBD resource file is desired state: a change to it alone (a commit that touches
    /// only `drbd/r0.res`) makes its service changed, and the revision another one.
    #[test]
    fn a_change_to_a_resource_file_alone_changes_its_service() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            tmp.path().join("a.yaml"),
            "service: a\nstate: up\nresources:\n  drbd#0: {res: r0, config: drbd/r0.res}\n",
        )
        .expect("write");
        std::fs::write(tmp.path().join("b.yaml"), "service: b\nstate: down\n").expect("write");
        std::fs::create_dir(tmp.path().join("drbd")).expect("mkdir");
        std::fs::write(tmp.path().join("drbd/r0.res"), "resource r0 {}\n").expect("write");
        let mut set = DesiredSet::default();
        let mut cache = ParseCache::default();
        let mut take = |set: &mut DesiredSet| {
            let read = read(tmp.path(), &mut cache, &|| false).expect("read");
            set.take(read, false, false)
        };
        let first = take(&mut set);
        assert_eq!(first.changed, ["a", "b"]);
        let same = take(&mut set);
        assert!(same.changed.is_empty(), "{same:?}");
        assert_eq!(same.content, first.content);
        std::fs::write(tmp.path().join("drbd/r0.res"), "resource r0 { }\n").expect("write");
        let edited = take(&mut set);
        assert_eq!(edited.changed, ["a"]);
        assert_ne!(edited.content, first.content);
    }

    /// A directory named like a manifest is said on every reload that finds it (the daemon
    /// logs it when that changes), and the rest of the directory is in force.
    #[test]
    fn entries_named_like_manifests_that_are_not_files_are_warnings() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("a.yaml"), "service: a\nstate: down\n").expect("write");
        std::fs::create_dir(tmp.path().join("b.yaml")).expect("mkdir");
        let mut set = DesiredSet::default();
        let r = set.reload(tmp.path(), false, false);
        assert_eq!(r.changed, ["a"]);
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        let shown: Vec<String> = set.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].ends_with("/b.yaml: warning: skipped, not read as a manifest: it is a directory; a manifest is a regular file, or a symlink to one"), "{shown:?}");
        std::fs::remove_dir(tmp.path().join("b.yaml")).expect("rmdir");
        set.reload(tmp.path(), false, false);
        assert!(set.warnings.is_empty());
    }

    /// A regression: a 150 KB manifest of nested `[` stalled the daemon for 25 s on every
    /// reload, while the YAML parser worked through it. It is refused at once, and not read
    /// again while it is unchanged.
    #[test]
    fn regression_a_deeply_nested_manifest_does_not_stall_a_reload() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("a.yaml"), "service: a\nstate: down\n").expect("write");
        let deep = format!("service: b\nstate: up\nx: {}\n", "[".repeat(150_000));
        std::fs::write(tmp.path().join("b.yaml"), deep).expect("write");
        let mut set = DesiredSet::default();
        let start = std::time::Instant::now();
        let r = set.reload(tmp.path(), false, false);
        assert!(start.elapsed().as_secs() < 2, "{:?}", start.elapsed());
        assert_eq!(r.changed, ["a"]);
        let shown: Vec<String> = set.errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0]
                .contains("/b.yaml:3:35: sequences and mappings nested more than 32 levels deep"),
            "{shown:?}"
        );
        let start = std::time::Instant::now();
        set.reload(tmp.path(), false, false);
        assert!(start.elapsed().as_millis() < 500, "{:?}", start.elapsed());
        assert_eq!(
            set.parsed.parses(),
            2,
            "the unchanged broken file is not parsed again"
        );
    }

    #[test]
    fn a_broken_manifest_keeps_its_last_good_version() {
        let mut set = DesiredSet::default();
        let r = set.apply(vec![svc("/m/a.yaml", "a", "up")], vec![], false, false);
        assert_eq!(r.changed, ["a"]);
        let r = set.apply(vec![], vec![error("/m/a.yaml")], false, false);
        assert!(r.changed.is_empty() && r.removed.is_empty(), "{r:?}");
        assert_eq!(set.reconciled().len(), 1);
        assert_eq!(set.errors.len(), 1);
        assert_eq!(set.stale_files(), [Path::new("/m/a.yaml")]);
        let r = set.apply(vec![svc("/m/a.yaml", "a", "down")], vec![], false, false);
        assert_eq!(r.changed, ["a"]);
        assert!(set.errors.is_empty());
    }

    #[test]
    fn an_unchanged_reload_keeps_the_set_reconciled_and_any_change_rebuilds_it() {
        let both = || vec![svc("/m/a.yaml", "a", "up"), svc("/m/b.yaml", "b", "up")];
        let mut set = DesiredSet::default();
        set.apply(both(), vec![], true, false);
        let first = set.reconciled();
        set.apply(both(), vec![], true, false);
        assert!(Arc::ptr_eq(&first, &set.reconciled()), "nothing changed");
        // A broken file keeps its last good version: still the same set.
        set.apply(
            vec![svc("/m/a.yaml", "a", "up")],
            vec![error("/m/b.yaml")],
            true,
            false,
        );
        assert!(Arc::ptr_eq(&first, &set.reconciled()), "b kept as it was");
        let changed = vec![svc("/m/a.yaml", "a", "down"), svc("/m/b.yaml", "b", "up")];
        set.apply(changed, vec![], true, false);
        let reconciled = set.reconciled();
        assert!(!Arc::ptr_eq(&first, &reconciled));
        assert_eq!(reconciled[0].state, DesiredState::Down);
        // b deleted and pruned: it stays reconciled, as down.
        set.apply(vec![svc("/m/a.yaml", "a", "down")], vec![], true, false);
        let pruned = set.reconciled();
        assert_eq!(pruned.len(), 2);
        assert_eq!(pruned[1].state, DesiredState::Down);
        // b back: no orphan any more, and up again.
        set.apply(changed_back(), vec![], true, false);
        assert_eq!(set.reconciled()[1].state, DesiredState::Up);
        assert!(set.orphan("b").is_none());

        fn changed_back() -> Vec<Arc<Service>> {
            vec![svc("/m/a.yaml", "a", "down"), svc("/m/b.yaml", "b", "up")]
        }
    }

    #[test]
    fn a_deleted_manifest_orphans_its_service_and_prune_brings_it_down() {
        let both = || vec![svc("/m/a.yaml", "a", "up"), svc("/m/b.yaml", "b", "up")];
        let mut set = DesiredSet::default();
        set.apply(both(), vec![], false, false);
        let r = set.apply(vec![svc("/m/a.yaml", "a", "up")], vec![], false, false);
        assert_eq!(r.removed, ["b"]);
        assert!(!set.orphans["b"].pruning);
        assert_eq!(
            set.reconciled().len(),
            1,
            "an orphan left alone is not reconciled"
        );

        let mut set = DesiredSet::default();
        set.apply(both(), vec![], true, false);
        set.apply(vec![svc("/m/a.yaml", "a", "up")], vec![], true, false);
        let reconciled = set.reconciled();
        assert_eq!(reconciled.len(), 2);
        assert_eq!(
            reconciled[1].state,
            DesiredState::Down,
            "pruned orphan goes down"
        );
        set.forget_orphan("b");
        assert_eq!(set.reconciled().len(), 1);
    }

    #[test]
    fn an_empty_directory_prunes_nothing_unless_allowed() {
        let mut set = DesiredSet::default();
        set.apply(vec![svc("/m/a.yaml", "a", "up")], vec![], true, false);
        let r = set.apply(vec![], vec![], true, false);
        assert!(r.emptiness_refused && r.removed.is_empty());
        assert_eq!(set.reconciled()[0].state, DesiredState::Up);

        let r = set.apply(vec![], vec![], true, true);
        assert_eq!(r.removed, ["a"]);
        assert_eq!(set.reconciled()[0].state, DesiredState::Down);
    }

    #[test]
    fn a_service_that_comes_back_is_no_orphan() {
        let mut set = DesiredSet::default();
        set.apply(
            vec![svc("/m/a.yaml", "a", "up"), svc("/m/b.yaml", "b", "up")],
            vec![],
            false,
            false,
        );
        set.apply(vec![svc("/m/a.yaml", "a", "up")], vec![], false, false);
        let r = set.apply(
            vec![svc("/m/a.yaml", "a", "up"), svc("/m/c.yaml", "b", "up")],
            vec![],
            false,
            false,
        );
        assert!(set.orphans.is_empty());
        assert_eq!(
            r.changed,
            ["b"],
            "moved to another file with the same content is still a change of source"
        );
    }
}
