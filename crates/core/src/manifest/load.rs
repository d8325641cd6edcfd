//! Manifest files → [`Service`] values, with every problem reported as
//! `FILE:LINE:COL: FIELD: MESSAGE`.
//!
//! A file is parsed a fixed number of times, whatever it holds: one pass over its YAML events
//! refuses what serde_yaml must not be handed (nesting deeper than [`MAX_DEPTH`], tags); then
//! serde_yaml parses it into a `Value`, which the schema reader reads, collecting problems by
//! field path; and a file with problems gets one more pass over its events, which records where
//! every node is and locates them all (see [`super::locate`]). A directory is loaded completely
//! before anything is reported, so an operator sees every mistake of every file at once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use crate::fsutil::Stamp;

use regex::Regex;
use serde_yaml::Value;

use crate::escape::{Escaped, excerpt};

use super::doc::{AppDoc, ContainerDoc, ContainerType, DrbdDoc, FsDoc, ManifestDoc};
use super::locate::{self, Positions, Record, within};
pub use super::locate::{Location, MAX_DEPTH};
use super::schema::{
    At, FieldPath, Fields, KeyText, Keys, Node, Problem, Reader, Seg, describe, describe_shape,
    name_problem,
};
use super::{
    AppCommands, AppSpec, AppStatus, ContainerKind, ContainerSpec, DesiredState, DrbdSpec,
    DrbdStop, EXT_TYPES, Failback, Failover, FailoverMode, FsSpec, Fsck, Kind,
    MAX_DRBD_RESOURCE_NAME, MAX_RES_FILE_NAME, MAX_SERVICE_NAME, OnQuorumLoss, Placement, Resource,
    ResourceId, Service, Spec, UpBy, is_ext,
};

/// Larger files are refused unread: no hand-written manifest comes anywhere near this, and it
/// bounds what a file costs to read and parse.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

pub use super::schema::MAX_PROBLEMS_PER_FILE;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub location: Option<Location>,
    /// The field path, e.g. `resources.fs#1.mnt`.
    pub field: Option<String>,
    pub message: String,
}

impl LoadError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        LoadError {
            file: file.to_path_buf(),
            location: None,
            field: None,
            message: message.into(),
        }
    }

    pub(crate) fn io(file: &Path, what: &str, err: &io::Error) -> Self {
        LoadError::new(file, format!("cannot read {what}: {err}"))
    }

    /// The last line of a file's errors, past [`MAX_PROBLEMS_PER_FILE`].
    fn more(file: &Path, count: usize) -> Self {
        LoadError::new(file, format!("and {count} more problems not shown"))
    }

    /// Whether this is the line [`LoadError::more`] makes: it sorts after its file's others.
    fn is_more(&self) -> bool {
        self.location.is_none()
            && self.field.is_none()
            && self.message.starts_with("and ")
            && self.message.ends_with(" more problems not shown")
    }
}

/// One line whatever the file holds: the file name, the field and the message are escaped (a
/// `\n` in a key or a file name would otherwise print a forged `FILE:LINE:COL:` line, an ESC
/// would drive the terminal), and what the message quotes from the file is already cut short.
impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", Escaped(&self.file.to_string_lossy()))?;
        if let Some(loc) = self.location {
            write!(f, "{loc}:")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {}:", Escaped(field))?;
        }
        write!(f, " {}", Escaped(&self.message))
    }
}

impl std::error::Error for LoadError {}

/// Every problem found, sorted by file then position; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl LoadErrors {
    pub fn new(mut errors: Vec<LoadError>) -> Self {
        sort_errors(&mut errors);
        LoadErrors(errors)
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

fn sort_errors(errors: &mut [LoadError]) {
    // Stable: problems at one position keep the order the schema reader found them in. A file's
    // "and N more" line comes last, after the problems it continues.
    errors.sort_by(|a, b| {
        a.file
            .cmp(&b.file)
            .then(a.is_more().cmp(&b.is_more()))
            .then(a.location.cmp(&b.location))
    });
}

/// The valid services of a manifest directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestSet {
    /// Sorted by name.
    pub services: Vec<Service>,
    /// Directory entries that are not manifests (hidden, editor files, other extensions,
    /// subdirectories), for debug logs.
    pub skipped: Vec<PathBuf>,
    /// What was skipped that an operator should hear about: entries named like manifests that
    /// are not files (see [`Loaded::warnings`]).
    pub warnings: Vec<LoadError>,
}

/// Loads every manifest of `dir`; any problem in any file fails the whole load, listing all.
pub fn load_dir(dir: &Path) -> Result<ManifestSet, LoadErrors> {
    let scan = scan_dir(dir, &mut ParseCache::default(), &|| false);
    if scan.errors.is_empty() {
        Ok(ManifestSet {
            services: owned(scan.services),
            skipped: scan.skipped,
            warnings: scan.warnings,
        })
    } else {
        Err(LoadErrors::new(scan.errors))
    }
}

/// Loads what can be loaded: the valid services, plus the errors of the files that are not.
/// A service whose name is claimed by several files is left out (all its files get an error),
/// as there is no telling which one the operator meant.
pub fn load_dir_lenient(dir: &Path) -> (Vec<Service>, Vec<LoadError>) {
    let loaded = load_dir_lenient_cached(dir, &mut ParseCache::default());
    (owned(loaded.services), loaded.errors)
}

/// The services of a load, as values: moved out where nothing else holds them (a cache
/// dropped since), copied where something does.
pub fn owned(services: Vec<Arc<Service>>) -> Vec<Service> {
    services.into_iter().map(Arc::unwrap_or_clone).collect()
}

/// What [`load_dir_lenient_cached`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Shared with the [`ParseCache`] that kept them: a reload of unchanged files copies none.
    pub services: Vec<Arc<Service>>,
    pub errors: Vec<LoadError>,
    /// Entries named like manifests (`*.yaml`, `*.yml`) that are not files, so not read: a
    /// directory, a FIFO, a socket, a device, or a symlink to one. Skipped, but said, as their
    /// name says someone meant them as manifests. Not errors: the rest of the directory is in
    /// force, and `validate` exits 0.
    pub warnings: Vec<LoadError>,
    /// The [`ContentHash`] of what was read.
    pub content: u64,
}

/// As [`load_dir_lenient`], for a caller that loads the same directory again and again (the
/// daemon, on every change): a file whose stamp is unchanged is not read again, and one whose
/// text is the same as last time is not parsed again (see [`ParseCache`]). Also hashes what it read (see [`ContentHash`]).
pub fn load_dir_lenient_cached(dir: &Path, cache: &mut ParseCache) -> Loaded {
    loaded(scan_dir(dir, cache, &|| false))
}

/// As [`load_dir_lenient_cached`], for a caller that may have to give up (the daemon, told to
/// stop while a reload reads many large broken files): `stop` is asked before each file, and
/// once it says so the load ends there, between two files, and gives `None`. Nothing of a
/// stopped load is returned, so nothing half-read can be taken for the directory; what it
/// parsed is kept in `cache` (a parse depends on the path and text alone), and a later load
/// does not pay for it again. One file's cost is bounded (see [`MAX_FILE_BYTES`],
/// [`MAX_DEPTH`], [`MAX_PROBLEMS_PER_FILE`]): so is the wait for a stop.
pub fn load_dir_lenient_cached_until(
    dir: &Path,
    cache: &mut ParseCache,
    stop: &dyn Fn() -> bool,
) -> Option<Loaded> {
    let scan = scan_dir(dir, cache, stop);
    (!scan.stopped).then(|| loaded(scan))
}

fn loaded(mut scan: Scan) -> Loaded {
    sort_errors(&mut scan.errors);
    Loaded {
        services: scan.services,
        errors: scan.errors,
        warnings: scan.warnings,
        content: scan.content.value(),
    }
}

/// What parsing each file gave last time, by path and by the fingerprint of the text it was
/// parsed from: parsing is a function of the two, so an equal text gives the same service, or
/// the same errors. Failures are kept too: a broken file is not parsed again on every reload
/// until it changes (a big broken file once cost seconds per reload). Only the files found by
/// the last complete load are kept (with, after a stopped one, what it parsed).
///
/// A file whose [`Stamp`] is the same as when it was last read is not even read again (as git
/// does with its index): 10,000 unchanged manifests cost 10,000 `stat`s, not 10,000 reads.
#[derive(Debug)]
pub struct ParseCache {
    /// By path (its bytes: the loader builds every path the same way).
    parsed: PathMap<Cached>,
    /// Random keys, per cache: no one can write a text that collides with another on purpose.
    keys: std::hash::RandomState,
    parses: u64,
    reads: u64,
    /// Loads begun with this cache.
    loads: u64,
    /// How long before a read a file must have last changed for its stamp to be trusted.
    settle: std::time::Duration,
}

impl Default for ParseCache {
    fn default() -> ParseCache {
        ParseCache {
            parsed: PathMap::default(),
            keys: std::hash::RandomState::new(),
            parses: 0,
            reads: 0,
            loads: 0,
            settle: SETTLE,
        }
    }
}

/// foldhash over a path's bytes: `Path`'s hash (SipHash over components parsed each time) was
/// a tenth of a reload of 10,000 unchanged manifests.
type PathMap<V> = HashMap<std::ffi::OsString, V, foldhash::fast::RandomState>;

pub use crate::fsutil::SETTLE;

/// What a load keeps of one file.
#[derive(Debug, Clone)]
struct Cached {
    /// Its stamp when read, if it had been still long enough then to be trusted.
    stamp: Option<Stamp>,
    fingerprint: Fingerprint,
    /// What it adds to the [`ContentHash`].
    digest: u64,
    parsed: Result<Arc<Service>, Vec<LoadError>>,
    /// The number of the last load that found the file.
    load: u64,
}

/// A text's length and keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint(usize, u64);

impl ParseCache {
    fn fingerprint(&self, text: &str) -> Fingerprint {
        use std::hash::BuildHasher;
        Fingerprint(text.len(), self.keys.hash_one(text))
    }

    /// How many files this cache saw parsed (files served from it are not counted).
    pub fn parses(&self) -> u64 {
        self.parses
    }

    /// How many files this cache saw read (files whose stamp said unchanged are not counted).
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// A cache that trusts a file's stamp once it has been still for `settle` ([`SETTLE`] by
    /// default): for tests, which cannot wait.
    pub fn with_settle(settle: std::time::Duration) -> ParseCache {
        ParseCache {
            settle,
            ..ParseCache::default()
        }
    }
}

/// Whether a directory entry name is a manifest: `*.yaml` / `*.yml`, not hidden. Editor files
/// (`.x.yaml.swp`, `x.yaml~`, `.#x.yaml`, `#x.yaml#`) fail one test or the other.
pub fn is_manifest_name(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    if name.starts_with('.') {
        return false;
    }
    let path = Path::new(name);
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    ) && path.file_stem().is_some_and(|s| !s.is_empty())
}

struct Scan {
    services: Vec<Arc<Service>>,
    skipped: Vec<PathBuf>,
    errors: Vec<LoadError>,
    warnings: Vec<LoadError>,
    content: ContentHash,
    /// `stop` said to stop before every file was read: the rest of the scan is partial.
    stopped: bool,
}

/// A hash over a directory's manifests as the loader reads them: names in order, each with its
/// text or why it could not be read. Equal hashes mean the same manifests, so the daemon skips
/// a reload that would find nothing new. FNV-1a, 64 bits: stable across Rust releases (unlike
/// `DefaultHasher`), so a revision shown by one build compares with the next.
#[derive(Debug, Clone)]
pub struct ContentHash(u64);

impl Default for ContentHash {
    fn default() -> ContentHash {
        ContentHash(0xcbf2_9ce4_8422_2325)
    }
}

impl ContentHash {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
    fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    /// One file: its name, and the [`ContentHash::digest`] of what reading it gave.
    fn add(&mut self, path: &Path, digest: u64) {
        let name = path.file_name().unwrap_or_default();
        self.field(name.as_encoded_bytes());
        self.write(&digest.to_le_bytes());
    }

    /// What reading one file gave, hashed on its own, so that an unchanged file's can be kept.
    fn digest(read: Result<&str, &LoadError>) -> u64 {
        let mut hash = ContentHash::default();
        match read {
            Ok(text) => hash.field(text.as_bytes()),
            Err(e) => hash.field(format!("unreadable: {}", e.message).as_bytes()),
        }
        hash.value()
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

/// The directory's manifests, read until `stop` says to stop (asked before each file).
fn scan_dir(dir: &Path, cache: &mut ParseCache, stop: &dyn Fn() -> bool) -> Scan {
    let mut scan = Scan {
        services: Vec::new(),
        skipped: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        content: ContentHash::default(),
        stopped: false,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            scan.errors
                .push(LoadError::io(dir, "manifest directory", &e));
            return scan;
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => paths.push(entry.path()),
            Err(e) => scan
                .errors
                .push(LoadError::io(dir, "manifest directory", &e)),
        }
    }
    // By bytes: the paths differ only in their last component, so this is the order of
    // `Path`'s component-wise comparison, at a fraction of its cost with 10,000 files.
    paths.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));

    // (service, text): the text is kept to locate `service` if a cross-file rule refuses it;
    // a file not read again is read then.
    let mut loaded: Vec<(Arc<Service>, Option<String>)> = Vec::new();
    // Entries are updated in place, marked with this load's number; the ones no file of this
    // load is marked with are dropped at its end.
    let mut known = std::mem::take(&mut cache.parsed);
    cache.loads = cache.loads.wrapping_add(1);
    let this_load = cache.loads;
    for path in paths {
        if stop() {
            // The parses done so far are as good as any: kept, with the ones not reached.
            cache.parsed = known;
            scan.stopped = true;
            return scan;
        }
        let is_manifest = path.file_name().is_some_and(is_manifest_name);
        // Following symlinks: a linked manifest counts, a FIFO or directory would not read.
        match (is_manifest, fs::metadata(&path)) {
            (false, _) => scan.skipped.push(path),
            (true, Ok(meta)) if !meta.is_file() => {
                let warning = not_a_file(&path);
                // In the hash too, so that the daemon notices one appearing, and says so.
                scan.content.add(&path, ContentHash::digest(Err(&warning)));
                scan.warnings.push(warning);
                scan.skipped.push(path);
            }
            (true, Err(e)) => {
                let error = LoadError::io(&path, "manifest", &e);
                scan.content.add(&path, ContentHash::digest(Err(&error)));
                scan.errors.push(error);
            }
            (true, Ok(meta)) => {
                if let Some(unchanged) = known
                    .get_mut(path.as_os_str())
                    .filter(|c| c.stamp == Some(Stamp::of(&meta)))
                {
                    unchanged.load = this_load;
                    scan.content.add(&path, unchanged.digest);
                    match &unchanged.parsed {
                        Ok(service) => loaded.push((Arc::clone(service), None)),
                        Err(errors) => scan.errors.extend(errors.iter().cloned()),
                    }
                    continue;
                }
                let before = known.remove(path.as_os_str());
                let read_at = std::time::SystemTime::now();
                cache.reads += 1;
                match read_text_sized(&path, meta.len()) {
                    Err(e) => {
                        scan.content.add(&path, ContentHash::digest(Err(&e)));
                        scan.errors.push(e);
                    }
                    Ok(text) => {
                        let digest = ContentHash::digest(Ok(&text));
                        scan.content.add(&path, digest);
                        let fingerprint = cache.fingerprint(&text);
                        let parsed = match before {
                            Some(before) if before.fingerprint == fingerprint => before.parsed,
                            _ => {
                                cache.parses += 1;
                                parse_manifest(&path, &text).map(Arc::new)
                            }
                        };
                        let cached = Cached {
                            stamp: Stamp::settled(&meta, read_at, cache.settle),
                            fingerprint,
                            digest,
                            parsed,
                            load: this_load,
                        };
                        match &cached.parsed {
                            Ok(service) => loaded.push((Arc::clone(service), Some(text))),
                            Err(errors) => scan.errors.extend(errors.iter().cloned()),
                        }
                        known.insert(path.into_os_string(), cached);
                    }
                }
            }
        }
    }

    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (service, _)) in loaded.iter().enumerate() {
        by_name.entry(service.name.clone()).or_default().push(i);
    }
    let mut keep = vec![true; loaded.len()];
    // Located only when a cross-file rule refuses a file: one pass over its text, once.
    let mut positions: HashMap<usize, Positions> = HashMap::new();
    let mut position_of = |i: usize, path: &[Seg]| {
        positions
            .entry(i)
            .or_insert_with(|| {
                let (service, text) = &loaded[i];
                let reread;
                let text = match text {
                    Some(text) => text,
                    None => {
                        // Gone or changed since: no position, the next load will see it.
                        reread = read_text(&service.source).unwrap_or_default();
                        &reread
                    }
                };
                locate::scan(without_bom(text), Record::Tree)
            })
            .locate_nearest(path, At::Value)
    };
    for (name, indexes) in &by_name {
        if indexes.len() < 2 {
            continue;
        }
        for &i in indexes {
            keep[i] = false;
            let service = &loaded[i].0;
            let others: Vec<String> = indexes
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| loaded[j].0.source.display().to_string())
                .collect();
            let path = [Seg::key("service")];
            scan.errors.push(LoadError {
                file: service.source.clone(),
                location: position_of(i, &path),
                field: Some("service".into()),
                message: format!(
                    "duplicate service {}: also defined in {}",
                    excerpt(name),
                    others.join(", ")
                ),
            });
        }
    }
    // Two services must not manage one thing: one would unmount or demote what the other
    // just brought up. Every file involved gets the error, and none of them is in force.
    // (what, which) → the (service index, resource id, field) of each claimant.
    type Claimants = Vec<(usize, String, &'static str)>;
    let mut claims: BTreeMap<(&str, String), Claimants> = BTreeMap::new();
    for (i, (service, _)) in loaded.iter().enumerate().filter(|(i, _)| keep[*i]) {
        for claim in claims_of(service) {
            claims.entry((claim.what, claim.value)).or_default().push((
                i,
                claim.rid.to_string(),
                claim.field,
            ));
        }
    }
    for ((what, value), claimants) in &claims {
        let services: std::collections::BTreeSet<usize> =
            claimants.iter().map(|(i, _, _)| *i).collect();
        if services.len() < 2 {
            continue;
        }
        for (i, rid, field) in claimants {
            keep[*i] = false;
            let service = &loaded[*i].0;
            let others: Vec<String> = services
                .iter()
                .filter(|&&j| j != *i)
                .map(|&j| format!("{} ({})", loaded[j].0.name, loaded[j].0.source.display()))
                .collect();
            let path = [Seg::key("resources"), Seg::key(rid), Seg::key(field)];
            scan.errors.push(LoadError {
                file: service.source.clone(),
                location: position_of(*i, &path),
                field: Some(format!("resources.{rid}.{field}")),
                message: format!(
                    "{what} {} is also managed by service {}: one thing, one service",
                    excerpt(value),
                    others.join(", ")
                ),
            });
        }
    }
    // Files that parsed are cached even when refused for a conflict: the conflict is checked
    // on every load, the parse is what is saved.
    known.retain(|_, cached| cached.load == this_load);
    cache.parsed = known;
    scan.services = loaded
        .into_iter()
        .zip(keep)
        .filter_map(|((service, _), keep)| keep.then_some(service))
        .collect();
    scan.services.sort_by(|a, b| a.name.cmp(&b.name));
    scan
}

/// The warning for an entry named like a manifest that is not a file.
fn not_a_file(path: &Path) -> LoadError {
    use std::os::unix::fs::FileTypeExt;
    let what = match fs::metadata(path).map(|m| m.file_type()) {
        Ok(t) if t.is_dir() => "a directory",
        Ok(t) if t.is_fifo() => "a FIFO",
        Ok(t) if t.is_socket() => "a socket",
        Ok(t) if t.is_char_device() || t.is_block_device() => "a device",
        _ => "not a regular file",
    };
    let through = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => " (through a symlink)",
        _ => "",
    };
    LoadError::new(
        path,
        format!(
            "warning: skipped, not read as a manifest: it is {what}{through}; a manifest is a regular file, or a symlink to one"
        ),
    )
}

/// One thing on the node a service manages, which no other service may manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// "DRBD resource", "mount point", "OpenVZ container", "LXC container".
    pub what: &'static str,
    pub value: String,
    pub rid: super::ResourceId,
    /// The key naming it in the resource.
    pub field: &'static str,
}

/// What `service` manages: its DRBD resources, mount points and container.
pub fn claims_of(service: &Service) -> Vec<Claim> {
    service
        .resources
        .iter()
        .filter_map(|r| {
            let (what, value, field) = match &r.spec {
                super::Spec::Drbd(d) => ("DRBD resource", d.res.clone(), "res"),
                super::Spec::Fs(f) => ("mount point", f.mnt.display().to_string(), "mnt"),
                super::Spec::Container(c) => match &c.kind {
                    super::ContainerKind::Vz(id) => ("OpenVZ container", id.clone(), "ctid"),
                    super::ContainerKind::Lxc(name) => ("LXC container", name.clone(), "name"),
                },
                super::Spec::App(_) => return None,
            };
            Some(Claim {
                what,
                value,
                rid: r.id,
                field,
            })
        })
        .collect()
}

/// Reads a file as UTF-8 text, refusing oversized files and locating the first invalid byte.
pub(crate) fn read_text(path: &Path) -> Result<String, LoadError> {
    read_text_sized(path, 0)
}

/// [`read_text`] of a file whose size is about `size`: read in one go (one `read` for the
/// text, one to see the end) instead of growing the buffer from a small probe.
fn read_text_sized(path: &Path, size: u64) -> Result<String, LoadError> {
    let file = fs::File::open(path).map_err(|e| LoadError::io(path, "file", &e))?;
    read_opened_sized(path, file, size)
}

/// [`read_text`] for a file already open, so callers can tell "missing" from other failures.
pub(crate) fn read_opened(path: &Path, file: fs::File) -> Result<String, LoadError> {
    read_opened_sized(path, file, 0)
}

fn read_opened_sized(path: &Path, file: fs::File, size: u64) -> Result<String, LoadError> {
    // One byte more than the size, so that the read that finds the end needs no room; never
    // more than the cap, whatever the size says.
    let capacity = usize::try_from(size.min(MAX_FILE_BYTES) + 1).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| LoadError::io(path, "file", &e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::new(
            path,
            format!("file is larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // The prefix is valid UTF-8 by definition; lossy only to avoid an unwrap.
        let valid = String::from_utf8_lossy(valid);
        let line = valid.matches('\n').count() + 1;
        let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        LoadError {
            location: Some(Location { line, column }),
            ..LoadError::new(path, "not valid UTF-8 text")
        }
    })
}

/// YAML text read: its value, and the text (without a byte order mark) that its problems are
/// located in.
pub(crate) struct Parsed<'t> {
    pub value: Value,
    pub text: &'t str,
}

/// The text without a leading byte order mark: YAML allows one, and some editors write it.
pub(crate) fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses YAML text into one `Value`, turning syntax errors, duplicate keys and multiple
/// documents into located errors. An empty document is `Value::Null`.
pub(crate) fn parse_yaml<'t>(path: &Path, text: &'t str) -> Result<Parsed<'t>, Vec<LoadError>> {
    let text = without_bom(text);
    // Where nodes are is recorded only when a problem is to be located: a tree of a big file
    // costs as much memory as its value.
    let positions = locate::scan(text, Record::Refusals);
    if let Some(location) = positions.too_deep {
        // serde_yaml is never handed such a text: its parser's work grows with the square of
        // the depth.
        return Err(vec![LoadError {
            location: Some(within(text, location)),
            ..LoadError::new(
                path,
                format!(
                    "sequences and mappings nested more than {MAX_DEPTH} levels deep; a manifest needs 4 (the top mapping, `resources`, a resource, a command's list): the file is not read further"
                ),
            )
        }]);
    }
    if !positions.tags.is_empty() {
        return Err(tag_errors(path, text, &positions.tags));
    }
    let err = match serde_yaml::from_str::<Value>(text) {
        Ok(value) => return Ok(Parsed { value, text }),
        Err(err) => err,
    };
    let message = err.to_string();
    if message.contains("more than one document") {
        return Err(vec![LoadError {
            location: positions.second_document.map(|at| within(text, at)),
            ..LoadError::new(
                path,
                "more than one YAML document (`---`) in the file; a file holds exactly one",
            )
        }]);
    }
    let duplicate = if message.contains("duplicate entry") {
        locate::scan(text, Record::Tree).duplicate
    } else {
        None
    };
    if let Some((key_path, location)) = duplicate {
        let key = match key_path.last() {
            Some(Seg::Key(k)) => KeyText(k).to_string(),
            _ => String::new(),
        };
        return Err(vec![LoadError {
            file: path.to_path_buf(),
            location: Some(within(text, location)),
            field: Some(FieldPath(&key_path).to_string()),
            message: format!("duplicate key `{key}`: each key may appear only once in a mapping"),
        }]);
    }
    if message.contains("EOF while parsing") {
        return Ok(Parsed {
            value: Value::Null,
            text,
        });
    }
    static AT_MARK: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r" at (line \d+ column \d+|position \d+)").ok());
    let location = err.location().map(|l| {
        within(
            text,
            Location {
                line: l.line(),
                column: l.column(),
            },
        )
    });
    // The position goes in front, FILE:LINE:COL style; the message keeps only any context mark.
    let message = match (&*AT_MARK, location) {
        (Some(re), Some(_)) => re.replace(&message, "").into_owned(),
        _ => message,
    };
    Err(vec![LoadError {
        location,
        ..LoadError::new(path, format!("invalid YAML: {message}"))
    }])
}

/// One error per tagged node. A tag changes how YAML reads a value (`!!str 1` is a string,
/// `!!binary` decodes base64) and serde_yaml passes some through and drops others, so a tagged
/// manifest could mean something other than it reads: tags are refused, all of them.
fn tag_errors(path: &Path, text: &str, tags: &[(Vec<Seg>, Location, String)]) -> Vec<LoadError> {
    let end = locate::end_of(text);
    let mut errors: Vec<LoadError> = tags
        .iter()
        .take(MAX_PROBLEMS_PER_FILE)
        .map(|(field, location, tag)| {
            // As written: libyaml expands the `!!` shorthand.
            let written = match tag.strip_prefix("tag:yaml.org,2002:") {
                Some(name) => format!("!!{name}"),
                None => tag.clone(),
            };
            LoadError {
                file: path.to_path_buf(),
                location: Some(location.clamped(end)),
                field: (!field.is_empty()).then(|| FieldPath(field).to_string()),
                message: format!(
                    "YAML tags are not supported, found {}: remove it, each key is read as the type it takes",
                    excerpt(&written)
                ),
            }
        })
        .collect();
    if tags.len() > MAX_PROBLEMS_PER_FILE {
        errors.push(LoadError::more(path, tags.len() - MAX_PROBLEMS_PER_FILE));
    }
    errors
}

/// Locates the schema reader's problems (the first [`MAX_PROBLEMS_PER_FILE`]) in `text`, in one
/// pass over it, and says how many `more` there are.
pub(crate) fn problems_to_errors(
    path: &Path,
    text: &str,
    problems: Vec<Problem>,
    more: usize,
) -> Vec<LoadError> {
    let positions = locate::scan(text, Record::Tree);
    // Every location lies inside the text (see `within`).
    let end = locate::end_of(text);
    let mut errors: Vec<LoadError> = problems
        .into_iter()
        .map(|p| LoadError {
            file: path.to_path_buf(),
            location: positions
                .locate_nearest(&p.path, p.at)
                .map(|at| at.clamped(end)),
            field: (!p.path.is_empty()).then(|| FieldPath(&p.path).to_string()),
            message: p.message,
        })
        .collect();
    if more > 0 {
        errors.push(LoadError::more(path, more));
    }
    errors
}

/// A problem with `service` found after loading it (against a node's DRBD configuration, say),
/// located at its manifest's top-level `key` as the loader locates its own problems. A file
/// that cannot be read again is named without a location.
pub fn error_at_key(service: &Service, key: &str, message: String) -> LoadError {
    error_at_path(service, &[key], message)
}

/// As [`error_at_key`], at a nested key: `["resources", "drbd#0", "config"]`.
pub fn error_at_path(service: &Service, keys: &[&str], message: String) -> LoadError {
    let Ok(text) = read_text(&service.source) else {
        return LoadError::new(&service.source, message);
    };
    let problem = Problem {
        path: keys
            .iter()
            .map(|k| Seg::Key(Value::String((*k).to_string())))
            .collect(),
        at: At::Key,
        message: message.clone(),
    };
    problems_to_errors(&service.source, without_bom(&text), vec![problem], 0)
        .pop()
        .unwrap_or_else(|| LoadError::new(&service.source, message))
}

/// Parses one manifest; `path` is recorded as the service's source and names the file in errors.
pub fn parse_manifest(path: &Path, text: &str) -> Result<Service, Vec<LoadError>> {
    let Parsed { value, text } = parse_yaml(path, text)?;
    if value.is_null() {
        // No location: "line 1" of a file holding only comments would point at nothing.
        return Err(vec![LoadError::new(
            path,
            "empty manifest: expected a mapping with keys `service`, `state` and `resources`",
        )]);
    }
    let mut reader = Reader::default();
    let service = read_service(&mut reader, &value, path);
    // The value is not needed to locate problems: freed before a tree of the text is made.
    drop(value);
    let more = reader.more();
    let problems = reader.into_problems();
    match service {
        Some(service) if problems.is_empty() => Ok(service),
        _ if problems.is_empty() => Err(vec![LoadError::new(
            path,
            "internal error: manifest rejected without a reason",
        )]),
        _ => Err(problems_to_errors(path, text, problems, more)),
    }
}

// The keys each mapping may hold, in the order errors list them: the model's (see `doc`).
static TOP_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<ManifestDoc>);
static DRBD_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<DrbdDoc>);
static FS_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<FsDoc>);
static CONTAINER_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<ContainerDoc>);
static APP_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<AppDoc>);

/// Reads an optional key: `Some(default)` when absent, `None` when present but invalid.
fn opt<'a, T>(
    r: &mut Reader,
    f: &Fields<'a>,
    key: &str,
    default: T,
    read: impl FnOnce(&mut Reader, &Node<'a>) -> Option<T>,
) -> Option<T> {
    match f.get(key) {
        Some(node) => read(r, &node),
        None => Some(default),
    }
}

fn read_service(r: &mut Reader, value: &Value, source: &Path) -> Option<Service> {
    let root = Node::root(value);
    match value {
        Value::Mapping(_) => {}
        other => {
            // Not quoted: a file that is not a manifest at all (a symlink to /etc/shadow, say)
            // reads as one long string, which must not be copied into the logs.
            r.error(
                &root,
                format!(
                    "the top level must be a mapping with keys `service`, `state` and `resources`, found {}",
                    describe_shape(other)
                ),
            );
            return None;
        }
    }
    if r.foreign(&root, &TOP_KEYS, "manifest") {
        return None;
    }
    let f = r.fields(&root, Some(&TOP_KEYS), false)?;
    let name = r.required(&f, "service").and_then(|n| {
        let name = r.name(&n, "service name")?;
        if name.len() > MAX_SERVICE_NAME {
            r.error(
                &n,
                format!(
                    "invalid service name: {} bytes long, longer than {MAX_SERVICE_NAME}: converge names files after the service (`svc_<service>_<script>.log`, `<service>@app-N.start.json`), and a file name holds at most 255 bytes",
                    name.len()
                ),
            );
            return None;
        }
        Some(name)
    });
    let state = r.required(&f, "state").and_then(|n| {
        r.choice(
            &n,
            &[
                ("up", DesiredState::Up),
                ("down", DesiredState::Down),
                ("frozen", DesiredState::Frozen),
            ],
        )
    });
    let node = opt(r, &f, "node", None, |r, n| r.name(n, "node name").map(Some));
    let nodes = opt(r, &f, "nodes", None, |r, n| read_nodes(r, n).map(Some));
    let failover = opt(r, &f, "failover", None, |r, n| {
        r.choice(
            n,
            &[
                ("manual", FailoverMode::Manual),
                ("auto", FailoverMode::Auto),
            ],
        )
        .map(Some)
    });
    let failback = opt(r, &f, "failback", None, |r, n| {
        r.choice(
            n,
            &[
                ("never", Failback::Never),
                ("preferred", Failback::Preferred),
            ],
        )
        .map(Some)
    });
    let on_quorum_loss = opt(r, &f, "on_quorum_loss", None, |r, n| {
        r.choice(
            n,
            &[
                ("stop", OnQuorumLoss::Stop),
                ("freeze", OnQuorumLoss::Freeze),
            ],
        )
        .map(Some)
    });
    let rollback = opt(r, &f, "rollback", Service::DEFAULT_ROLLBACK, Reader::bool);
    let resources = opt(r, &f, "resources", Vec::new(), read_resources);
    let placement = read_placement(
        r,
        &f,
        PlacementKeys {
            node: node?,
            nodes: nodes?,
            failover: failover?,
            failback: failback?,
            on_quorum_loss: on_quorum_loss?,
        },
        resources.as_deref().unwrap_or_default(),
    );
    Some(Service {
        name: name?,
        state: state?,
        placement: placement?,
        rollback: rollback?,
        resources: resources?,
        source: source.to_path_buf(),
    })
}

/// `on_quorum_loss: freeze` freezes the service's container: it needs one, enabled, and one
/// LXC can freeze. OpenVZ cannot: `vzctl suspend` checkpoints the container to a dump file
/// and stops it, which needs the very I/O DRBD holds while quorum is lost.
fn check_freezable(r: &mut Reader, at: &Node, resources: &[Resource]) -> bool {
    let containers: Vec<&Resource> = resources
        .iter()
        .filter(|res| res.spec.as_container().is_some())
        .collect();
    let why = match containers.as_slice() {
        [] => "`on_quorum_loss: freeze` freezes the service's container, and this service has none: add an `lxc` container, or use `on_quorum_loss: stop`".to_string(),
        [res] if res.disabled => format!(
            "`on_quorum_loss: freeze` freezes the service's container, and {} is disabled: enable it, or use `on_quorum_loss: stop`",
            res.id
        ),
        [res] => match res.spec.as_container().map(|c| &c.kind) {
            Some(ContainerKind::Lxc(_)) => return true,
            _ => format!(
                "`on_quorum_loss: freeze` needs an `lxc` container, and {} is `vz`: OpenVZ's `vzctl suspend` checkpoints the container to a dump file and stops it, which needs the I/O DRBD holds without quorum; use `on_quorum_loss: stop`",
                res.id
            ),
        },
        _ => return true,
    };
    r.error(at, why);
    false
}

/// `nodes:` — node names, each once.
fn read_nodes(r: &mut Reader, node: &Node) -> Option<Vec<String>> {
    let names = r.string_list(node)?;
    let mut ok = true;
    for (i, name) in names.iter().enumerate() {
        let Some(element) = Reader::element(node, i) else {
            continue;
        };
        if !r.check_name(&element, "node name", name) {
            ok = false;
        } else if let Some(first) = names[..i].iter().position(|n| n == name) {
            r.error(
                &element,
                format!(
                    "node `{name}` is listed twice (first at index {first}): list each node once"
                ),
            );
            ok = false;
        }
    }
    ok.then_some(names)
}

/// The keys that say where a service runs, as read.
struct PlacementKeys {
    node: Option<String>,
    nodes: Option<Vec<String>>,
    failover: Option<FailoverMode>,
    failback: Option<Failback>,
    on_quorum_loss: Option<OnQuorumLoss>,
}

/// Where the service runs, from `node`, `nodes`, `failover` and `failback`, which only some
/// combinations make sense of. Each problem is reported at the key that makes
/// it one.
fn read_placement(
    r: &mut Reader,
    f: &Fields,
    keys: PlacementKeys,
    resources: &[Resource],
) -> Option<Placement> {
    let at = |key: &str| f.get(key).unwrap_or_else(|| f.node().clone());
    let mut ok = true;
    if keys.node.is_some() && keys.nodes.is_some() {
        r.key_error(
            &at("nodes"),
            "`node` and `nodes` exclude each other: `node: X` pins the service to X, `nodes: [X, Y]` lists the nodes it may run on, in order of preference; keep one",
        );
        ok = false;
    }
    let auto = keys.failover == Some(FailoverMode::Auto);
    if keys.failover.is_some() && keys.nodes.is_none() {
        r.key_error(
            &at("failover"),
            "`failover` needs `nodes`: the nodes the service may move between, in order of preference (`nodes: [deb1, deb2]`)",
        );
        ok = false;
    }
    if keys.failback.is_some() && !auto {
        r.key_error(
            &at("failback"),
            "`failback` applies to a service that fails over by itself: set `failover: auto` (with `nodes`), or remove `failback`",
        );
        ok = false;
    }
    if keys.on_quorum_loss.is_some() && !auto {
        r.key_error(
            &at("on_quorum_loss"),
            "`on_quorum_loss` applies to a service that fails over by itself: set `failover: auto` (with `nodes`), or remove `on_quorum_loss`",
        );
        ok = false;
    }
    if auto && keys.on_quorum_loss == Some(OnQuorumLoss::Freeze) {
        ok &= check_freezable(r, &at("on_quorum_loss"), resources);
    }
    if auto {
        if let Some(nodes) = &keys.nodes
            && nodes.len() < 2
        {
            r.error(
                &at("nodes"),
                format!(
                    "`failover: auto` needs at least two nodes to move between, found {}",
                    nodes.len()
                ),
            );
            ok = false;
        }
        let drbd: Vec<(&Resource, &DrbdSpec)> = resources
            .iter()
            .filter_map(|res| res.spec.as_drbd().map(|d| (res, d)))
            .collect();
        match drbd.as_slice() {
            [] => {
                r.error(
                    &at("failover"),
                    "`failover: auto` decides from DRBD's quorum and roles, and this service has no DRBD resource: add one (`drbd#0: {res: NAME}`)",
                );
                ok = false;
            }
            [(res, spec)] => {
                if spec.allow_two_primaries {
                    r.error(
                        &at("failover"),
                        format!("`failover: auto` relies on DRBD allowing one Primary, and {} sets `allow_two_primaries`", res.id),
                    );
                    ok = false;
                }
            }
            several => {
                let ids: Vec<String> = several.iter().map(|(res, _)| res.id.to_string()).collect();
                r.error(
                    &at("failover"),
                    format!(
                        "`failover: auto` decides from one DRBD resource's quorum and roles, and this service has {} ({}): put their volumes in one DRBD resource",
                        several.len(),
                        ids.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    Some(match (keys.node, keys.nodes, keys.failover) {
        (Some(node), _, _) => Placement::Pinned { node },
        (None, Some(nodes), Some(FailoverMode::Auto)) => Placement::Failover(Failover {
            nodes,
            failback: keys.failback.unwrap_or(Failover::DEFAULT_FAILBACK),
            on_quorum_loss: keys
                .on_quorum_loss
                .unwrap_or(Failover::DEFAULT_ON_QUORUM_LOSS),
        }),
        (None, Some(nodes), _) => match nodes.into_iter().next() {
            Some(node) => Placement::Pinned { node },
            None => Placement::Everywhere,
        },
        (None, None, _) => Placement::Everywhere,
    })
}

/// What earlier resources of the service claimed, for the per-service uniqueness rules.
#[derive(Default)]
struct Claims {
    mounts: Vec<(PathBuf, ResourceId)>,
    drbd: Vec<(String, ResourceId)>,
    container: Option<ResourceId>,
}

fn read_resources(r: &mut Reader, node: &Node) -> Option<Vec<Resource>> {
    // `resources:` with every entry commented out reads as null: an empty service.
    let f = r.fields(node, None, true)?;
    let mut claims = Claims::default();
    let mut out = Vec::new();
    let mut ok = true;
    for (key, child) in f.entries() {
        let Some(id) = key.as_str().and_then(ResourceId::parse) else {
            r.key_error(
                &child,
                format!(
                    "invalid resource id `{}`: expected KIND#N, KIND one of drbd, fs, container, app, N a number (fs#0, app#12)",
                    KeyText(key)
                ),
            );
            ok = false;
            continue;
        };
        match read_resource(r, id, &child, &mut claims) {
            Some(resource) => out.push(resource),
            None => ok = false,
        }
    }
    out.sort_by_key(|res| res.id);
    ok.then_some(out)
}

fn read_resource(
    r: &mut Reader,
    id: ResourceId,
    node: &Node,
    claims: &mut Claims,
) -> Option<Resource> {
    let mut ok = true;
    if id.kind == Kind::Container {
        match claims.container {
            Some(first) => {
                r.key_error(
                    node,
                    format!("a service has at most one container, and {first} is already one"),
                );
                ok = false;
            }
            None => claims.container = Some(id),
        }
    }
    let allowed: &Keys = match id.kind {
        Kind::Drbd => &DRBD_KEYS,
        Kind::Fs => &FS_KEYS,
        Kind::Container => &CONTAINER_KEYS,
        Kind::App => &APP_KEYS,
    };
    let f = r.fields(node, Some(allowed), false)?;
    let disabled = opt(r, &f, "disabled", false, Reader::bool);
    let optional = opt(r, &f, "optional", false, Reader::bool);
    let spec = match id.kind {
        Kind::Drbd => read_drbd(r, &f, id, claims).map(Spec::Drbd),
        Kind::Fs => read_fs(r, &f, id, claims).map(Spec::Fs),
        Kind::Container => read_container(r, &f).map(Spec::Container),
        Kind::App => read_app(r, &f).map(Spec::App),
    };
    let resource = Resource {
        id,
        disabled: disabled?,
        optional: optional?,
        spec: spec?,
    };
    ok.then_some(resource)
}

fn read_drbd(r: &mut Reader, f: &Fields, id: ResourceId, claims: &mut Claims) -> Option<DrbdSpec> {
    let res = r.required(f, "res").and_then(|n| {
        let res = r.name(&n, "DRBD resource name")?;
        if let Some(problem) = drbd_resource_problem(&res) {
            r.error(
                &n,
                format!("invalid DRBD resource name {}: {problem}", excerpt(&res)),
            );
            return None;
        }
        if let Some((_, other)) = claims.drbd.iter().find(|(name, _)| *name == res) {
            r.error(
                &n,
                format!("DRBD resource {} is already used by {other}", excerpt(&res)),
            );
            return None;
        }
        claims.drbd.push((res.clone(), id));
        Some(res)
    });
    let stop = opt(r, f, "stop", DrbdStop::default(), |r, n| {
        r.choice(
            n,
            &[("secondary", DrbdStop::Secondary), ("down", DrbdStop::Down)],
        )
    });
    let allow_two_primaries = opt(r, f, "allow_two_primaries", false, Reader::bool);
    let secondary_force = opt(r, f, "secondary_force", false, Reader::bool);
    let up_by = opt(r, f, "up_by", UpBy::default(), |r, n| {
        r.choice(n, &[("converge", UpBy::Converge), ("system", UpBy::System)])
    });
    let config = match f.get("config") {
        Some(n) => read_res_file(r, &n).map(Some),
        None => Some(None),
    };
    if let (Some(DrbdStop::Down), Some(UpBy::System), Some(n)) = (stop, up_by, f.get("stop")) {
        r.error(
            &n,
            "`stop: down` takes the resource down, which `up_by: system` leaves to the system: use `stop: secondary`, or `up_by: converge`",
        );
        return None;
    }
    Some(DrbdSpec {
        res: res?,
        stop: stop?,
        allow_two_primaries: allow_two_primaries?,
        secondary_force: secondary_force?,
        up_by: up_by?,
        config: config?,
    })
}

/// `config:` of a `drbd#N`: a file in the manifest directory, named relative to it, each part
/// a safe name. Nothing outside the directory: `..` and absolute paths are refused, so the
/// same git checkout carries the file to every node, and so that what root installs as DRBD's
/// configuration is held to the manifest directory's trust.
fn read_res_file(r: &mut Reader, n: &Node) -> Option<PathBuf> {
    let text = r.string(n)?;
    let problem = if text.starts_with('/') {
        Some(
            "must be relative to the manifest directory (e.g. `drbd/data.res`), not absolute"
                .to_string(),
        )
    } else if text.len() > MAX_RES_FILE_NAME {
        Some(format!("longer than {MAX_RES_FILE_NAME} bytes"))
    } else {
        text.split('/').find_map(|part| {
            name_problem(part).map(|p| {
                format!(
                    "each part of the path {p} (`{}`), so it stays in the manifest directory",
                    excerpt(part)
                )
            })
        })
    };
    if let Some(problem) = problem {
        r.error(n, format!("{problem}, got {}", excerpt(&text)));
        return None;
    }
    Some(PathBuf::from(text))
}

/// Why drbdadm would not take `res` (already a safe name) for that one resource, if it would not.
/// converge runs `drbdadm VERB RES`, and drbd-utils' user/v9/drbdadm_main.c reads that argument
/// so: `all` is every resource (`!strcmp(resource_names[0], "all")` in `main`); `RES/VOL` and
/// `RES:PEER` name a volume and a connection (`ctx_by_name`: refused already, as `/` and `:` are
/// not name characters); and a name no resource has is tried as a device minor, `minor-N`
/// (`ctx_by_minor`, through `minor_by_id` in user/shared/shared_main.c). Its own check,
/// `ensure_sanity_of_res_name` in user/shared/shared_tool.c, refuses only empty names and control
/// characters. A name of digits is not special to drbdadm and stays allowed.
fn drbd_resource_problem(res: &str) -> Option<String> {
    if res == "all" {
        Some("drbdadm takes `all` for every resource: `drbdadm up all` would start them all".into())
    } else if res.starts_with("minor-") {
        Some("drbdadm takes `minor-N` for the resource whose device has minor N, when no resource is named so".into())
    } else if res.len() > MAX_DRBD_RESOURCE_NAME {
        Some(format!(
            "longer than {MAX_DRBD_RESOURCE_NAME} characters, the longest name DRBD takes ({} here)",
            res.len()
        ))
    } else {
        None
    }
}

fn read_fs(r: &mut Reader, f: &Fields, id: ResourceId, claims: &mut Claims) -> Option<FsSpec> {
    let dev = r.required(f, "dev").and_then(|n| r.normal_path(&n));
    let mnt = r.required(f, "mnt").and_then(|n| {
        // Normalised, so "//" and "/./" are the root here, and "/a/" and "/a" one mount point
        // here and across services.
        let mnt = r.normal_path(&n)?;
        if mnt == Path::new("/") {
            r.error(&n, "the root directory cannot be a service mount point");
            return None;
        }
        if let Some((_, other)) = claims.mounts.iter().find(|(m, _)| *m == mnt) {
            r.error(
                &n,
                format!("mount point {} is already used by {other}", mnt.display()),
            );
            return None;
        }
        claims.mounts.push((mnt.clone(), id));
        Some(mnt)
    });
    let fstype = r
        .required(f, "type")
        .and_then(|n| r.name(&n, "filesystem type"));
    let default_options = FsSpec::DEFAULT_OPTIONS.to_owned();
    let options = opt(r, f, "options", default_options, |r, n| {
        let options = r.nonempty_string(n)?;
        if options.chars().any(char::is_whitespace) {
            r.error(
                n,
                format!(
                    "mount options must not contain whitespace (separate them with commas), got {}",
                    excerpt(&options)
                ),
            );
            return None;
        }
        Some(options)
    });
    let fsck = opt(r, f, "fsck", Fsck::default(), |r, n| match n.value {
        Value::Bool(true) => Some(Fsck::Yes),
        Value::Bool(false) => Some(Fsck::No),
        Value::String(s) if s == "auto" => Some(Fsck::Auto),
        other => {
            r.error(
                n,
                format!(
                    "expected true, false or \"auto\", found {}",
                    describe(other)
                ),
            );
            None
        }
    });
    // The manifest alone says this cannot work, so `validate` says so rather than a plan.
    let fsck = match (fsck, &fstype) {
        (Some(Fsck::Yes), Some(fstype)) if !is_ext(fstype) => {
            if let Some(n) = f.get("fsck") {
                r.error(
                    &n,
                    format!(
                        "fsck: true needs a filesystem converge can check ({}), not {fstype}; set fsck: false or auto",
                        EXT_TYPES.join(", ")
                    ),
                );
            }
            None
        }
        (fsck, _) => fsck,
    };
    let umount_kill = opt(r, f, "umount_kill", false, Reader::bool);
    let timeout = opt(r, f, "timeout", FsSpec::DEFAULT_TIMEOUT, Reader::duration);
    Some(FsSpec {
        dev: dev?,
        mnt: mnt?,
        fstype: fstype?,
        options: options?,
        fsck: fsck?,
        umount_kill: umount_kill?,
        timeout: timeout?,
    })
}

fn read_container(r: &mut Reader, f: &Fields) -> Option<ContainerSpec> {
    let ctype = r.required(f, "type").and_then(|n| {
        r.choice(
            &n,
            &[("vz", ContainerType::Vz), ("lxc", ContainerType::Lxc)],
        )
    });
    // An OpenVZ ctid is a number; YAML reads `ctid: 101` as an integer, which is fine.
    let ctid = f.get("ctid").and_then(|n| {
        let text = match n.value {
            Value::Number(num) if num.is_u64() || num.is_i64() => num.to_string(),
            Value::String(s) => s.clone(),
            other => {
                r.error(
                    &n,
                    format!("expected a string or an integer, found {}", describe(other)),
                );
                return None;
            }
        };
        if !r.check_name(&n, "container id", &text) {
            return None;
        }
        // OpenVZ reads a numeric ctid as a number: `0101` is container 101, so it is held and
        // compared as `101`.
        let ctid = normal_ctid(&text);
        // OpenVZ reserves CT 0 for the host itself: starting or stopping it is never meant.
        if ctid == "0" {
            let written = if text == "0" {
                String::new()
            } else {
                format!(" (written {})", excerpt(&text))
            };
            r.error(
                &n,
                format!("ctid 0{written} is the host itself, not a container"),
            );
            return None;
        }
        Some(ctid)
    });
    let name = f.get("name").and_then(|n| r.name(&n, "container name"));
    let kind = match ctype {
        Some(ContainerType::Vz) => {
            if let Some(n) = f.get("name") {
                r.key_error(
                    &n,
                    "`name` is for lxc containers; a vz container is identified by `ctid`",
                );
            }
            if !f.has("ctid") {
                r.error(
                    f.node(),
                    "missing required key `ctid` (the OpenVZ container id)",
                );
            }
            ctid.map(ContainerKind::Vz)
        }
        Some(ContainerType::Lxc) => {
            if let Some(n) = f.get("ctid") {
                r.key_error(
                    &n,
                    "`ctid` is for vz containers; an lxc container is identified by `name`",
                );
            }
            if !f.has("name") {
                r.error(
                    f.node(),
                    "missing required key `name` (the LXC container name)",
                );
            }
            name.map(ContainerKind::Lxc)
        }
        None => None,
    };
    let start_timeout = opt(
        r,
        f,
        "start_timeout",
        ContainerSpec::DEFAULT_START_TIMEOUT,
        Reader::duration,
    );
    let stop_timeout = opt(
        r,
        f,
        "stop_timeout",
        ContainerSpec::DEFAULT_STOP_TIMEOUT,
        Reader::duration,
    );
    Some(ContainerSpec {
        kind: kind?,
        start_timeout: start_timeout?,
        stop_timeout: stop_timeout?,
    })
}

/// An OpenVZ ctid as OpenVZ reads it: a number without its leading zeros (`007` is `7`, `00` is
/// `0`); any other text as it is.
fn normal_ctid(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let digits = text.trim_start_matches('0');
        if digits.is_empty() { "0" } else { digits }.to_owned()
    } else {
        text.to_owned()
    }
}

fn read_app(r: &mut Reader, f: &Fields) -> Option<AppSpec> {
    let argv_given: Vec<&str> = ["start", "stop", "check"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    let commands = match f.get("scripts") {
        Some(scripts) => {
            for key in &argv_given {
                if let Some(n) = f.get(key) {
                    r.key_error(
                        &n,
                        format!("`{key}` cannot be combined with `scripts`: use either a scripts directory or start/stop/check commands"),
                    );
                }
            }
            let dir = r.normal_path(&scripts);
            if argv_given.is_empty() {
                dir.map(AppCommands::Scripts)
            } else {
                None
            }
        }
        None if argv_given.is_empty() => {
            r.error(
                f.node(),
                "missing commands: set `scripts` (a directory of S*/K*/C* scripts) or at least one of `start`, `stop`, `check`",
            );
            None
        }
        None => {
            let start = opt(r, f, "start", None, read_argv);
            let stop = opt(r, f, "stop", None, read_argv);
            let check = opt(r, f, "check", None, read_argv);
            Some(AppCommands::Argv {
                start: start?,
                stop: stop?,
                check: check?,
            })
        }
    };
    let timeout = opt(r, f, "timeout", AppSpec::DEFAULT_TIMEOUT, Reader::duration);
    let retcodes = opt(r, f, "retcodes", AppSpec::default_retcodes(), read_retcodes);
    Some(AppSpec {
        commands: commands?,
        timeout: timeout?,
        retcodes: retcodes?,
    })
}

/// A command line; the program must be an absolute path, as there is no PATH to trust.
fn read_argv(r: &mut Reader, node: &Node) -> Option<Option<Vec<String>>> {
    let mut argv = r.string_list(node)?;
    let first = Reader::element(node, 0)?;
    if !argv[0].starts_with('/') {
        r.error(
            &first,
            format!(
                "the program must be an absolute path, got {}",
                excerpt(&argv[0])
            ),
        );
        return None;
    }
    argv[0] = r.normal_path(&first)?.display().to_string();
    Some(Some(argv))
}

/// `"0:up 1:down 3:warn"`: exit code → status.
fn read_retcodes(r: &mut Reader, node: &Node) -> Option<Vec<(i32, AppStatus)>> {
    let text = r.string(node)?;
    let mut out: Vec<(i32, AppStatus)> = Vec::new();
    let mut ok = true;
    let status_words: Vec<&str> = AppStatus::ALL.iter().map(|s| s.word()).collect();
    for pair in text.split_whitespace() {
        let parsed = pair.split_once(':').and_then(|(code, status)| {
            let code = code.parse::<i32>().ok()?;
            let status = AppStatus::ALL.into_iter().find(|s| s.word() == status)?;
            Some((code, status))
        });
        match parsed {
            Some((code, _)) if out.iter().any(|(c, _)| *c == code) => {
                r.error(node, format!("exit code {code} is listed twice"));
                ok = false;
            }
            Some(entry) => out.push(entry),
            None => {
                r.error(
                    node,
                    format!(
                        "invalid entry {}: expected CODE:STATUS, STATUS one of {} (e.g. \"0:up 1:down 3:warn\")",
                        excerpt(pair),
                        status_words.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    if ok && out.is_empty() {
        r.error(
            node,
            "must list at least one CODE:STATUS pair, e.g. \"0:up 1:down\"",
        );
        return None;
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const EXAMPLE: &str = include_str!("../../../../manifests/drbdsvc.yaml");

    fn parse(text: &str) -> Result<Service, Vec<LoadError>> {
        parse_manifest(Path::new("/m/t.yaml"), text)
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(s) => panic!("expected errors, got {s:?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// The one error of `text`, without the file name.
    fn error(text: &str) -> String {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        errs[0]
            .trim_start_matches("/m/t.yaml:")
            .trim_start()
            .to_string()
    }

    #[test]
    fn placement_keys_read_and_combine() {
        let svc = |extra: &str| {
            parse(&format!(
                "service: s\nstate: up\n{extra}resources:\n  drbd#0: {{res: r0}}\n"
            ))
            .expect("valid")
        };
        assert_eq!(svc("").placement, Placement::Everywhere);
        assert_eq!(
            svc("node: deb1\n").placement,
            Placement::Pinned {
                node: "deb1".into()
            }
        );
        // A list with manual failover (the default) runs on its first node.
        for extra in [
            "nodes: [deb2, deb1]\n",
            "nodes: [deb2, deb1]\nfailover: manual\n",
        ] {
            assert_eq!(
                svc(extra).placement,
                Placement::Pinned {
                    node: "deb2".into()
                }
            );
        }
        assert_eq!(
            svc("nodes: [deb1, deb2, deb3]\nfailover: auto\n").placement,
            Placement::Failover(Failover {
                nodes: vec!["deb1".into(), "deb2".into(), "deb3".into()],
                failback: Failback::Never,
                on_quorum_loss: OnQuorumLoss::Stop,
            })
        );
        assert_eq!(
            svc("nodes: [a, b]\nfailover: auto\nfailback: preferred\non_quorum_loss: stop\n")
                .placement,
            Placement::Failover(Failover {
                nodes: vec!["a".into(), "b".into()],
                failback: Failback::Preferred,
                on_quorum_loss: OnQuorumLoss::Stop,
            })
        );
    }

    #[test]
    fn on_quorum_loss_freeze_needs_an_enabled_lxc_container() {
        let auto = "service: s\nstate: up\nnodes: [a, b]\nfailover: auto\non_quorum_loss: freeze\nresources:\n  drbd#0: {res: r0}\n";
        let svc =
            parse(&format!("{auto}  container#0: {{type: lxc, name: web}}\n")).expect("valid");
        assert_eq!(
            svc.failover().map(|f| f.on_quorum_loss),
            Some(OnQuorumLoss::Freeze)
        );
        let cases: &[(&str, &str)] = &[
            (
                "",
                "5:17: on_quorum_loss: `on_quorum_loss: freeze` freezes the service's container, and this service has none",
            ),
            (
                "  container#0: {type: vz, ctid: 101}\n",
                "5:17: on_quorum_loss: `on_quorum_loss: freeze` needs an `lxc` container, and container#0 is `vz`: OpenVZ's `vzctl suspend` checkpoints",
            ),
            (
                "  container#0: {type: lxc, name: web, disabled: true}\n",
                "5:17: on_quorum_loss: `on_quorum_loss: freeze` freezes the service's container, and container#0 is disabled",
            ),
        ];
        for (extra, want) in cases {
            let got = error(&format!("{auto}{extra}"));
            assert!(
                got.starts_with(want),
                "{extra:?}:\n got  {got}\n want {want}…"
            );
        }
        let got = error(
            "service: s\nstate: up\nnodes: [a, b]\non_quorum_loss: freeze\nresources:\n  drbd#0: {res: r0}\n  container#0: {type: lxc, name: web}\n",
        );
        assert!(
            got.starts_with("4:1: on_quorum_loss: `on_quorum_loss` applies to a service that fails over by itself"),
            "{got}"
        );
        let got = error(&auto.replace("freeze", "pause"));
        assert!(
            got.starts_with("5:17: on_quorum_loss: expected one of stop, freeze"),
            "{got}"
        );
    }

    #[test]
    fn placement_keys_that_do_not_fit_together_are_located_errors() {
        let drbd = "resources:\n  drbd#0: {res: r0}\n";
        let cases: &[(&str, &str)] = &[
            (
                "node: a\nnodes: [a, b]\n",
                "4:1: nodes: `node` and `nodes` exclude each other",
            ),
            (
                "failover: auto\n",
                "3:1: failover: `failover` needs `nodes`",
            ),
            (
                "nodes: [a, b]\nfailback: preferred\n",
                "4:1: failback: `failback` applies to a service that fails over by itself",
            ),
            (
                "nodes: [a, b]\non_quorum_loss: stop\n",
                "4:1: on_quorum_loss: `on_quorum_loss` applies to a service that fails over by itself",
            ),
            (
                "nodes: [a]\nfailover: auto\n",
                "3:8: nodes: `failover: auto` needs at least two nodes to move between, found 1",
            ),
            (
                "nodes: [a, b, a]\n",
                "3:15: nodes[2]: node `a` is listed twice (first at index 0)",
            ),
            ("nodes: []\n", "3:8: nodes: must not be an empty list"),
            ("nodes: [a, \"b c\"]\n", "3:12: nodes[1]: invalid node name"),
            (
                "failover: sometimes\nnodes: [a, b]\n",
                "3:11: failover: expected one of manual, auto",
            ),
        ];
        for (extra, want) in cases {
            let text = format!("service: s\nstate: up\n{extra}{drbd}");
            let got = error(&text);
            assert!(
                got.starts_with(want),
                "{extra:?}:\n got  {got}\n want {want}…"
            );
        }
        // What `failover: auto` needs of the DRBD resources.
        let auto = "service: s\nstate: up\nnodes: [a, b]\nfailover: auto\n";
        let got = error(auto);
        assert!(got.starts_with("4:11: failover: `failover: auto` decides from DRBD's quorum and roles, and this service has no DRBD resource"), "{got}");
        let got = error(&format!(
            "{auto}resources:\n  drbd#0: {{res: r0}}\n  drbd#1: {{res: r1}}\n"
        ));
        assert!(
            got.contains(
                "this service has 2 (drbd#0, drbd#1): put their volumes in one DRBD resource"
            ),
            "{got}"
        );
        let got = error(&format!(
            "{auto}resources:\n  drbd#0: {{res: r0, allow_two_primaries: true}}\n"
        ));
        assert!(
            got.contains(
                "relies on DRBD allowing one Primary, and drbd#0 sets `allow_two_primaries`"
            ),
            "{got}"
        );
    }

    #[test]
    fn regression_a_yaml_error_at_the_end_of_a_file_points_inside_it() {
        // Found by the parsers' fuzz tests (tests/parser_fuzz.rs): at the end of a file without a
        // final newline, the YAML reader reports the line after the last one (`s.yaml:2:1` for
        // a one-line file), which an editor cannot open at. The error is placed at the end of
        // the text instead. Line breaks are YAML's: `\r\n`, `\r`, `\n`, NEL, LS and PS.
        for (text, line, column) in [
            ("{0", 1, 3),
            ("service: s\nstate: up\n0", 3, 2),
            ("a:\u{2028}b:null", 2, 7),
            ("a: [\r\n", 2, 1),
            // The second document's marker, placed by the locator.
            ("a:\n---", 2, 4),
        ] {
            let errors = parse(text).expect_err(text);
            let location = errors[0].location.expect("located");
            assert_eq!(
                (location.line, location.column),
                (line, column),
                "{text:?}: {}",
                errors[0]
            );
        }
    }

    #[test]
    fn the_example_parses_to_the_documented_values() {
        let svc = parse(EXAMPLE).expect("example");
        assert_eq!(svc.name, "drbdsvc.opensvc.com");
        assert_eq!(svc.state, DesiredState::Up);
        assert_eq!(svc.pinned_node(), Some("deb1"));
        assert!(svc.rollback);
        assert_eq!(svc.source, Path::new("/m/t.yaml"));
        let ids: Vec<String> = svc.resources.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["drbd#0", "fs#1", "container#0", "app#0"]);
        assert_eq!(
            svc.resources[0].spec,
            Spec::Drbd(DrbdSpec {
                res: "data".into(),
                stop: DrbdStop::Secondary,
                allow_two_primaries: false,
                secondary_force: false,
                up_by: UpBy::Converge,
                config: None
            })
        );
        assert_eq!(
            svc.resources[1].spec,
            Spec::Fs(FsSpec {
                dev: "/dev/drbd0".into(),
                mnt: "/drbdsvc".into(),
                fstype: "ext3".into(),
                options: "defaults".into(),
                fsck: Fsck::Auto,
                umount_kill: false,
                timeout: FsSpec::DEFAULT_TIMEOUT,
            })
        );
        assert_eq!(
            svc.resources[2].spec,
            Spec::Container(ContainerSpec {
                kind: ContainerKind::Vz("101".into()),
                start_timeout: ContainerSpec::DEFAULT_START_TIMEOUT,
                stop_timeout: ContainerSpec::DEFAULT_STOP_TIMEOUT,
            })
        );
        assert_eq!(
            svc.resources[3].spec,
            Spec::App(AppSpec {
                commands: AppCommands::Scripts("/svc/etc/init.d".into()),
                timeout: Duration::from_secs(120),
                retcodes: AppSpec::default_retcodes(),
            })
        );
        assert!(svc.resources.iter().all(|r| !r.disabled && !r.optional));
    }

    #[test]
    fn every_key_can_be_set() {
        let text = r#"
service: full
state: frozen
rollback: false
resources:
  drbd#3: {res: r1, stop: down, allow_two_primaries: true, disabled: true, optional: true}
  fs#0:
    dev: /dev/drbd1
    mnt: /srv/x/
    type: xfs
    options: noatime,nodev
    fsck: false
    umount_kill: true
    timeout: 1h 5m
  fs#2: {dev: /dev/a, mnt: /a, type: ext4, fsck: true}
  fs#4: {dev: /dev/b, mnt: /b, type: ext4, fsck: auto}
  container#7: {type: lxc, name: web-1, start_timeout: 30s, stop_timeout: 10s}
  app#1:
    start: [/bin/svc, start]
    check: ["/bin/svc", "status"]
    timeout: 5s
    retcodes: "0:up 1:down 3:warn 4:n/a"
  app#0:
    stop: [/bin/true]
"#;
        let svc = parse(text).expect("valid");
        assert_eq!(svc.state, DesiredState::Frozen);
        assert_eq!(svc.placement, Placement::Everywhere);
        assert!(!svc.rollback);
        let ids: Vec<String> = svc.resources.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "drbd#3",
                "fs#0",
                "fs#2",
                "fs#4",
                "container#7",
                "app#0",
                "app#1"
            ]
        );
        let drbd = &svc.resources[0];
        assert!(drbd.disabled && drbd.optional);
        assert_eq!(
            drbd.spec,
            Spec::Drbd(DrbdSpec {
                res: "r1".into(),
                stop: DrbdStop::Down,
                allow_two_primaries: true,
                secondary_force: false,
                up_by: UpBy::Converge,
                config: None
            })
        );
        let Spec::Fs(fs) = &svc.resources[1].spec else {
            panic!("fs")
        };
        assert_eq!(fs.options, "noatime,nodev");
        assert_eq!(fs.fsck, Fsck::No);
        assert!(fs.umount_kill);
        assert_eq!(fs.timeout, Duration::from_secs(3900));
        let fsck: Vec<Fsck> = svc.resources[2..4]
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::Fs(f) => Some(f.fsck),
                _ => None,
            })
            .collect();
        assert_eq!(fsck, [Fsck::Yes, Fsck::Auto]);
        assert_eq!(
            svc.resources[4].spec,
            Spec::Container(ContainerSpec {
                kind: ContainerKind::Lxc("web-1".into()),
                start_timeout: Duration::from_secs(30),
                stop_timeout: Duration::from_secs(10),
            })
        );
        assert_eq!(
            svc.resources[5].spec,
            Spec::App(AppSpec {
                commands: AppCommands::Argv {
                    start: None,
                    stop: Some(vec!["/bin/true".into()]),
                    check: None
                },
                timeout: AppSpec::DEFAULT_TIMEOUT,
                retcodes: AppSpec::default_retcodes(),
            })
        );
        let Spec::App(app) = &svc.resources[6].spec else {
            panic!("app")
        };
        assert_eq!(app.timeout, Duration::from_secs(5));
        assert_eq!(
            app.retcodes,
            [
                (0, AppStatus::Up),
                (1, AppStatus::Down),
                (3, AppStatus::Warn),
                (4, AppStatus::NotApplicable)
            ]
        );
        assert_eq!(
            app.commands,
            AppCommands::Argv {
                start: Some(vec!["/bin/svc".into(), "start".into()]),
                stop: None,
                check: Some(vec!["/bin/svc".into(), "status".into()]),
            }
        );
    }

    #[test]
    fn empty_resources_are_allowed() {
        for text in [
            "service: s\nstate: down\n",
            "service: s\nstate: down\nresources: {}\n",
            "service: s\nstate: down\nresources:\n  # fs#0: ...\n",
        ] {
            assert_eq!(parse(text).expect(text).resources, []);
        }
    }

    #[test]
    fn relative_mount_point_is_located() {
        let text = EXAMPLE.replace("mnt: /drbdsvc", "mnt: drbdsvc");
        assert_eq!(
            error(&text),
            "9:10: resources.fs#1.mnt: must be an absolute path, got \"drbdsvc\""
        );
    }

    #[test]
    fn drbd_config_is_a_file_inside_the_manifest_directory() {
        let text = "service: s\nstate: up\nresources:\n  drbd#0: {res: r, config: drbd/r.res}\n";
        let svc = parse_manifest(Path::new("/m/s.yaml"), text).expect("valid");
        let spec = svc.resources[0].spec.as_drbd().expect("drbd");
        assert_eq!(spec.config.as_deref(), Some(Path::new("drbd/r.res")));
        assert_eq!(
            spec.config_file(&svc.source).as_deref(),
            Some(Path::new("/m/drbd/r.res"))
        );
        assert_eq!(
            spec.installed_file(Path::new("/etc/drbd.d")),
            Path::new("/etc/drbd.d/r.res")
        );
        for (bad, why) in [
            (
                "/etc/drbd.d/r.res",
                "must be relative to the manifest directory",
            ),
            ("../r.res", "must not start with `.`"),
            ("drbd/../../r.res", "must not start with `.`"),
            ("drbd//r.res", "must not be empty"),
            ("drbd/.r.res", "must not start with `.`"),
            ("'drbd/r res'", "only letters, digits"),
        ] {
            let text =
                format!("service: s\nstate: up\nresources:\n  drbd#0: {{res: r, config: {bad}}}\n");
            let err = error(&text);
            assert!(
                err.contains("4:28: resources.drbd#0.config: ") && err.contains(why),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn up_by_system_refuses_stop_down_and_reads_both_values() {
        let text =
            "service: s\nstate: up\nresources:\n  drbd#0: {res: r, stop: down, up_by: system}\n";
        assert_eq!(
            error(text),
            "4:26: resources.drbd#0.stop: `stop: down` takes the resource down, which `up_by: system` leaves to the system: use `stop: secondary`, or `up_by: converge`"
        );
        let text = "service: s\nstate: up\nresources:\n  drbd#0: {res: r, up_by: sometimes}\n";
        let err = error(text);
        assert!(
            err.contains("resources.drbd#0.up_by")
                && err.contains("converge")
                && err.contains("system"),
            "{err}"
        );
        for (word, up_by) in [("system", UpBy::System), ("converge", UpBy::Converge)] {
            let text =
                format!("service: s\nstate: up\nresources:\n  drbd#0: {{res: r, up_by: {word}}}\n");
            let svc = parse(&text).expect("valid");
            assert_eq!(
                svc.resources[0].spec.as_drbd().map(|d| d.up_by),
                Some(up_by)
            );
        }
    }

    #[test]
    fn unknown_keys_name_the_allowed_ones() {
        let text = "service: s\nstate: up\nresources:\n  drbd#0: {res: r, size: 1}\n";
        assert_eq!(
            error(text),
            "4:20: resources.drbd#0.size: unknown key `size`; allowed keys: res, stop, allow_two_primaries, secondary_force, up_by, config, disabled, optional"
        );
        let text = "service: s\nstate: up\nstat: up\n";
        assert!(error(text).starts_with("3:1: stat: unknown key `stat`;"));
    }

    #[test]
    fn all_errors_of_a_file_are_reported_in_order() {
        let text = "\
service: -bad
state: sideways
resources:
  disk#0: {}
  fs#01: {}
  drbd#0: {res: -x}
  fs#0: {dev: dev, mnt: /m, type: ext4, timeout: 0s}
  app#0: {}
";
        let errs = errors(text);
        let errs: Vec<&str> = errs
            .iter()
            .map(|e| e.trim_start_matches("/m/t.yaml:"))
            .collect();
        assert_eq!(
            errs,
            [
                "1:10: service: invalid service name \"-bad\": must not start with `-` (it would be taken for an option)",
                "2:8: state: expected one of up, down, frozen, got \"sideways\"",
                "4:3: resources.disk#0: invalid resource id `disk#0`: expected KIND#N, KIND one of drbd, fs, container, app, N a number (fs#0, app#12)",
                "5:3: resources.fs#01: invalid resource id `fs#01`: expected KIND#N, KIND one of drbd, fs, container, app, N a number (fs#0, app#12)",
                "6:17: resources.drbd#0.res: invalid DRBD resource name \"-x\": must not start with `-` (it would be taken for an option)",
                "7:15: resources.fs#0.dev: must be an absolute path, got \"dev\"",
                "7:50: resources.fs#0.timeout: duration must not be zero, got \"0s\"",
                "8:10: resources.app#0: missing commands: set `scripts` (a directory of S*/K*/C* scripts) or at least one of `start`, `stop`, `check`",
            ]
        );
    }

    #[test]
    fn missing_required_keys_point_at_the_mapping() {
        let text = "state: up\nresources:\n  fs#0:\n    dev: /dev/x\n";
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "/m/t.yaml:1:1: missing required key `service`",
                "/m/t.yaml:4:5: resources.fs#0: missing required key `mnt`",
                "/m/t.yaml:4:5: resources.fs#0: missing required key `type`",
            ]
        );
    }

    #[test]
    fn wrong_types_say_expected_and_found() {
        let text = "service: s\nstate: up\nrollback: 1\nresources:\n  fs#0: [a]\n";
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "/m/t.yaml:3:11: rollback: invalid type: integer `1`, expected a boolean",
                "/m/t.yaml:5:9: resources.fs#0: expected a mapping, found a sequence",
            ]
        );
    }

    #[test]
    fn an_unchanged_file_is_not_read_again_and_any_change_to_it_is() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let write = |name: &str, text: &str| fs::write(dir.join(name), text).expect("write");
        let app = "resources:\n  app#0:\n    start: [/bin/true]\n";
        write("a.yaml", &format!("service: a\nstate: up\n{app}"));
        write("b.yaml", &format!("service: b\nstate: up\n{app}"));
        // Trusting a stamp as soon as the file is older than the read: the tick of the
        // file's clock is what this leaves to chance, which is why the real margin is SETTLE.
        let mut cache = ParseCache::with_settle(std::time::Duration::ZERO);
        let load = |cache: &mut ParseCache| {
            let before = cache.reads();
            let loaded = load_dir_lenient_cached(dir, cache);
            let fresh = load_dir_lenient_cached(dir, &mut ParseCache::default());
            assert_eq!(loaded, fresh);
            (loaded, cache.reads() - before)
        };
        let (first, reads) = load(&mut cache);
        assert_eq!((first.services.len(), reads), (2, 2));
        let (again, reads) = load(&mut cache);
        assert_eq!((again.content, reads), (first.content, 0));
        // Edited in place (another size): read again, and the revision moves.
        write("a.yaml", &format!("service: a\nstate: down\n{app}"));
        let (edited, reads) = load(&mut cache);
        assert_eq!(reads, 1);
        assert_ne!(edited.content, first.content);
        // Replaced by rename, same size: another inode.
        write(
            ".b.tmp",
            &format!("service: b\nstate: dn\n{app}").replace("dn", "up"),
        );
        fs::rename(dir.join(".b.tmp"), dir.join("b.yaml")).expect("rename");
        let (_, reads) = load(&mut cache);
        assert_eq!(reads, 1);
        // Made broken, then a cross-file rule refusing a file not read again: its position
        // still comes from its text.
        write("c.yaml", &format!("service: a\nstate: up\n{app}"));
        let (dup, reads) = load(&mut cache);
        assert_eq!(reads, 1);
        let located: Vec<_> = dup
            .errors
            .iter()
            .map(|e| {
                (
                    e.location.is_some(),
                    e.message.starts_with("duplicate service"),
                )
            })
            .collect();
        assert_eq!(located, [(true, true), (true, true)], "{:?}", dup.errors);
    }

    #[test]
    fn a_file_changed_just_before_its_read_is_read_again_at_the_next_load() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a.yaml");
        fs::write(
            &path,
            "service: a\nstate: up\nresources:\n  app#0:\n    start: [/bin/true]\n",
        )
        .expect("write");
        // An hour, so that no slow machine can make the file look still.
        let mut cache = ParseCache::with_settle(std::time::Duration::from_secs(3600));
        load_dir_lenient_cached(tmp.path(), &mut cache);
        load_dir_lenient_cached(tmp.path(), &mut cache);
        // Written within the settle time: a same-size edit in the same clock tick would not
        // show in its stamp, so the stamp is not trusted yet.
        assert_eq!(cache.reads(), 2);
        assert_eq!(cache.parses(), 1, "read again, not parsed again");
    }

    #[test]
    fn a_cached_load_sees_every_edit_as_a_fresh_load_does() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let write = |name: &str, text: &str| fs::write(dir.join(name), text).expect("write");
        let app = "resources:\n  app#0:\n    start: [/bin/true]\n";
        let mut cache = ParseCache::default();
        let mut both_agree = |what: &str| {
            let cached = load_dir_lenient_cached(dir, &mut cache);
            assert_eq!(
                (owned(cached.services.clone()), cached.errors.clone()),
                load_dir_lenient(dir),
                "{what}"
            );
            let fresh = load_dir_lenient_cached(dir, &mut ParseCache::default());
            assert_eq!(cached.content, fresh.content, "{what}");
            (cached.services, cached.errors)
        };
        write("a.yaml", &format!("service: a\nstate: up\nnode: n1\n{app}"));
        write("b.yaml", &format!("service: b\nstate: up\n{app}"));
        both_agree("first load");
        // The same size, within the same clock tick: only the text tells.
        write("a.yaml", &format!("service: a\nstate: up\nnode: n2\n{app}"));
        let (services, _) = both_agree("same-size edit");
        assert_eq!(services[0].pinned_node(), Some("n2"));
        write("b.yaml", "service: b\nstate: sideways\n");
        let (services, errors) = both_agree("broken");
        assert_eq!((services.len(), errors.len()), (1, 1));
        write("b.yaml", &format!("service: b\nstate: down\n{app}"));
        both_agree("fixed");
        write("c.yaml", &format!("service: a\nstate: up\n{app}"));
        let (services, errors) = both_agree("a duplicate, though a.yaml is unchanged");
        assert_eq!((services.len(), errors.len()), (1, 2));
        fs::remove_file(dir.join("c.yaml")).expect("rm");
        let (services, errors) = both_agree("the duplicate gone");
        assert_eq!((services.len(), errors.len()), (2, 0));
    }

    #[test]
    fn per_service_uniqueness() {
        let text = "\
service: s
state: up
resources:
  drbd#0: {res: data}
  drbd#1: {res: data}
  fs#0: {dev: /dev/a, mnt: /srv, type: ext4}
  fs#1: {dev: /dev/b, mnt: /srv/, type: ext4}
  container#0: {type: vz, ctid: 101}
  container#1: {type: lxc, name: c}
";
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "/m/t.yaml:5:17: resources.drbd#1.res: DRBD resource \"data\" is already used by drbd#0",
                "/m/t.yaml:7:28: resources.fs#1.mnt: mount point /srv is already used by fs#0",
                "/m/t.yaml:9:3: resources.container#1: a service has at most one container, and container#0 is already one",
            ]
        );
    }

    /// A regression: `/srv/x` and `/srv/x/`, `/srv//x`, `/srv/./x` or `/srv/y/../x` in two
    /// services were two mount points, as claims were compared as text, so both services were
    /// accepted and would unmount each other's filesystem. Paths are now held in one spelling,
    /// and `..` is refused.
    #[test]
    fn regression_one_mount_point_in_two_spellings_is_one_claim() {
        let manifest = |name: &str, mnt: &str| {
            format!(
                "service: {name}\nstate: up\nresources:\n  fs#0: {{dev: /dev/{name}, mnt: '{mnt}', type: ext4}}\n"
            )
        };
        for spelling in [
            "/srv/x/",
            "/srv//x",
            "/srv/./x",
            "//srv/x",
            "/srv/x//",
            "/./srv/x/.",
        ] {
            let tmp = tempfile::tempdir().expect("tempdir");
            fs::write(tmp.path().join("a.yaml"), manifest("a", "/srv/x")).expect("write");
            fs::write(tmp.path().join("b.yaml"), manifest("b", spelling)).expect("write");
            let (services, errors) = load_dir_lenient(tmp.path());
            assert!(services.is_empty(), "{spelling}: {services:?}");
            let shown = LoadErrors(errors).to_string();
            assert!(
                shown.contains("mount point \"/srv/x\" is also managed by service b"),
                "{spelling}: {shown}"
            );
            let alone = parse(&manifest("b", spelling)).expect(spelling);
            assert_eq!(
                alone.resources[0].spec.as_fs().map(|f| f.mnt.clone()),
                Some("/srv/x".into())
            );
        }
    }

    /// A regression: a `..` in a path was taken as written (`mnt: /srv/..` is the root, which
    /// the root check did not see). It is refused in every path a manifest names.
    #[test]
    fn regression_dot_dot_is_refused_in_every_path() {
        let base = "service: s\nstate: up\nresources:\n";
        for (resource, field) in [
            (
                "fs#0: {dev: /dev/a, mnt: /srv/.., type: ext4}",
                "resources.fs#0.mnt",
            ),
            (
                "fs#0: {dev: /dev/a, mnt: /srv/y/../x, type: ext4}",
                "resources.fs#0.mnt",
            ),
            (
                "fs#0: {dev: /dev/../dev/sda, mnt: /x, type: ext4}",
                "resources.fs#0.dev",
            ),
            (
                "app#0: {scripts: /svc/../etc/init.d}",
                "resources.app#0.scripts",
            ),
            (
                "app#0: {start: [/usr/../bin/sh, -c, x]}",
                "resources.app#0.start[0]",
            ),
            ("app#0: {check: [/bin/.., x]}", "resources.app#0.check[0]"),
        ] {
            let err = error(&format!("{base}  {resource}\n"));
            assert!(
                err.contains(&format!("{field}: must not contain a `..` component")),
                "{resource}: {err}"
            );
        }
        // An argument is not a path converge resolves: `..` is the program's business there.
        let svc = parse(&format!(
            "{base}  app#0: {{start: [/bin//sh, -c, cd ..]}}\n"
        ))
        .expect("argv");
        let Some(AppCommands::Argv { start, .. }) =
            svc.resources[0].spec.as_app().map(|a| &a.commands)
        else {
            panic!("argv app")
        };
        assert_eq!(
            start.as_deref(),
            Some(&["/bin/sh".to_owned(), "-c".into(), "cd ..".into()][..])
        );
        for root in ["//", "/./", "/.", "///"] {
            let err = error(&format!(
                "{base}  fs#0: {{dev: /dev/a, mnt: '{root}', type: ext4}}\n"
            ));
            assert!(
                err.contains("the root directory cannot be a service mount point"),
                "{root}: {err}"
            );
        }
    }

    /// A regression: `ctid: 101` and `ctid: '0101'` in two services were two containers, and
    /// `ctid: '00'` passed the "0 is the host" check. OpenVZ reads a ctid as a number, and so
    /// does converge now.
    #[test]
    fn regression_ctids_are_read_as_openvz_reads_them() {
        let manifest = |name: &str, ctid: &str| {
            format!(
                "service: {name}\nstate: up\nresources:\n  container#0: {{type: vz, ctid: {ctid}}}\n"
            )
        };
        for (written, held) in [
            ("101", "101"),
            ("'0101'", "101"),
            ("'000101'", "101"),
            ("web-1", "web-1"),
        ] {
            let svc = parse(&manifest("s", written)).expect(written);
            assert_eq!(
                svc.container().map(|c| c.kind.clone()),
                Some(ContainerKind::Vz(held.into())),
                "{written}"
            );
        }
        for host in ["'00'", "'000'", "00", "0"] {
            let err = error(&manifest("s", host));
            assert!(
                err.contains("is the host itself, not a container"),
                "{host}: {err}"
            );
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("a.yaml"), manifest("a", "101")).expect("write");
        fs::write(tmp.path().join("b.yaml"), manifest("b", "'0101'")).expect("write");
        let (services, errors) = load_dir_lenient(tmp.path());
        assert!(services.is_empty(), "{services:?}");
        assert!(
            LoadErrors(errors)
                .to_string()
                .contains("OpenVZ container \"101\" is also managed by service"),
        );
    }

    /// A regression: `drbd#0: {res: all}` was accepted, and `reconcile` ran `drbdadm up all`,
    /// starting every DRBD resource of the node. Names drbdadm reads as something other than
    /// one resource are refused.
    #[test]
    fn regression_drbd_resource_names_drbdadm_reads_specially_are_refused() {
        let base = "service: s\nstate: up\nresources:\n  drbd#0: {res: ";
        let long = "r".repeat(MAX_DRBD_RESOURCE_NAME + 1);
        for (res, why) in [
            ("all", "drbdadm takes `all` for every resource"),
            ("minor-0", "drbdadm takes `minor-N`"),
            ("minor-12", "drbdadm takes `minor-N`"),
            (long.as_str(), "longer than 127 characters"),
            ("r0/1", "only letters, digits"),
            ("r0:peer", "only letters, digits"),
        ] {
            let err = error(&format!("{base}'{res}'}}\n"));
            assert!(
                err.starts_with("4:17: resources.drbd#0.res: invalid DRBD resource name")
                    && err.contains(why),
                "{res}: {err}"
            );
        }
        for res in ["all0", "ALL", "minor", "r0", "0", "123", "my.minor-1"] {
            parse(&format!("{base}'{res}'}}\n")).expect(res);
        }
        parse(&format!("{base}{}}}\n", "r".repeat(MAX_DRBD_RESOURCE_NAME))).expect("127");
    }

    /// A regression: a NUL inside a command's argument was accepted, and the start failed when
    /// the program was spawned ("nul byte found in provided data"). No string may hold one.
    #[test]
    fn regression_a_nul_in_any_string_is_refused() {
        let base = "service: s\nstate: up\nresources:\n  ";
        for (resource, field) in [
            (
                r#"app#0: {start: [/bin/echo, "a\0b"]}"#,
                "resources.app#0.start[1]",
            ),
            (
                r#"app#0: {start: ["/bin/echo\0x"]}"#,
                "resources.app#0.start[0]",
            ),
            (
                r#"app#0: {scripts: "/etc/init.d\0"}"#,
                "resources.app#0.scripts",
            ),
            (
                r#"fs#0: {dev: /dev/a, mnt: "/srv\0/x", type: ext4}"#,
                "resources.fs#0.mnt",
            ),
            (
                r#"fs#0: {dev: /dev/a, mnt: /x, type: ext4, options: "rw\0"}"#,
                "resources.fs#0.options",
            ),
            (
                r#"app#0: {stop: [/bin/x], retcodes: "0:up\0"}"#,
                "resources.app#0.retcodes",
            ),
        ] {
            let err = error(&format!("{base}{resource}\n"));
            assert!(
                err.contains(&format!("{field}: must not contain a NUL character")),
                "{resource}: {err}"
            );
            assert!(!err.contains('\0'), "{err:?}");
        }
    }

    /// A regression: a 300-character service name was accepted; its start then ran, and
    /// recording it failed with "File name too long", every time. Names are capped so that
    /// every file name converge derives from them fits.
    #[test]
    fn regression_a_service_name_too_long_for_its_file_names_is_refused() {
        // The derived names of the longest name fit in 255 bytes (see MAX_SERVICE_NAME).
        let longest = "s".repeat(MAX_SERVICE_NAME);
        let temporary = format!(".{longest}@app-4294967295.start.json.tmp.{:016x}", u64::MAX);
        assert!(temporary.len() <= 255, "{}", temporary.len());
        assert!(format!("svc_{longest}_.log").len() + 118 <= 255);
        let manifest = |name: &str| format!("service: {name}\nstate: up\n");
        assert_eq!(parse(&manifest(&longest)).expect("longest").name, longest);
        for length in [MAX_SERVICE_NAME + 1, 300, 100_000] {
            let err = error(&manifest(&"s".repeat(length)));
            assert!(
                err.starts_with(&format!(
                    "1:10: service: invalid service name: {length} bytes long, longer than 128"
                )),
                "{err}"
            );
        }
    }

    /// A regression: a leading UTF-8 byte order mark, which YAML allows and some editors write,
    /// was refused with a message about `---`. It is skipped, and the rest read as usual, with
    /// columns counted after it.
    #[test]
    fn regression_a_leading_byte_order_mark_is_read_past() {
        let svc = parse("\u{feff}service: s\nstate: up\n").expect("BOM");
        assert_eq!(svc.name, "s");
        assert_eq!(
            error("\u{feff}service: -s\nstate: up\n"),
            "1:10: service: invalid service name \"-s\": must not start with `-` (it would be taken for an option)"
        );
        let config = crate::config::Config::from_yaml(Path::new("/c.yaml"), "\u{feff}node: n1\n");
        assert_eq!(config.expect("config with a BOM").node, "n1");
    }

    /// Every line of `errors`, checked to be one printable line each.
    fn printable(errors: &[LoadError]) -> Vec<String> {
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for line in &shown {
            assert!(
                !line.chars().any(crate::escape::needs_escape),
                "a control character is printed: {line:?}"
            );
        }
        shown
    }

    /// A regression: a key holding `\n` printed a second, forged `FILE:LINE:COL:` line, and an
    /// ANSI escape in a key reached the terminal raw. Everything quoted back is escaped.
    #[test]
    fn regression_a_key_cannot_forge_an_error_line_or_drive_the_terminal() {
        let text = "service: s\nstate: up\n\"x\\n/etc/converge/manifests/web.yaml:1:1: service: all good\": 1\n\"\\e[2J\\e[31mred\": 2\n";
        let Err(found) = parse(text) else {
            panic!("expected errors")
        };
        let shown = printable(&found);
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].starts_with("/m/t.yaml:3:1: x\\n/etc/converge/manifests/web.yaml:1:1: service: all good: unknown key `x\\n/etc/"),
            "{shown:#?}"
        );
        assert!(
            shown[1]
                .starts_with("/m/t.yaml:4:1: \\u{1b}[2J\\u{1b}[31mred: unknown key `\\u{1b}[2J"),
            "{shown:#?}"
        );
    }

    /// A regression: a manifest named with a `\n` printed its errors on forged lines.
    #[test]
    fn regression_a_file_name_cannot_forge_an_error_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let name = "web.yaml:1:1: all good\n\u{1b}[31mx.yaml";
        fs::write(tmp.path().join(name), "service: s\nstate: sideways\n").expect("write");
        let (_, errors) = load_dir_lenient(tmp.path());
        let shown = printable(&errors);
        assert_eq!(shown.len(), 1);
        assert!(
            shown[0].contains(
                "/web.yaml:1:1: all good\\n\\u{1b}[31mx.yaml:2:8: state: expected one of"
            ),
            "{shown:?}"
        );
    }

    /// A regression: a file that is not YAML at all (a manifest symlinked to /etc/shadow) read
    /// as one long string, quoted whole in the error, hence in the journal and daemon.json. No
    /// more than a short excerpt of a file is ever quoted, and the top level's not at all.
    #[test]
    fn regression_a_file_that_is_not_yaml_is_never_echoed() {
        let shadow: String = (0..40)
            .map(|i| format!("user{i}:$6$salt{i}$KlX0sQ3lQ8fbe7M6e2ChsE3pPqUu5x0o8TLs1rG9R6m:19000:0:99999:7:::\n"))
            .collect();
        let Err(found) = parse(&shadow) else {
            panic!("expected errors")
        };
        let shown = printable(&found).join("\n");
        assert_eq!(
            shown,
            "/m/t.yaml:1:1: not a manifest: none of its 40 top-level keys is one of service, state, node, nodes, failover, failback, on_quorum_loss, resources, rollback (they are not quoted back, as this may be any file)"
        );
        let Err(found) = parse(&shadow.replace(":::\n", ":::x\n")) else {
            panic!("expected errors")
        };
        assert_eq!(
            printable(&found).join("\n"),
            "/m/t.yaml:1:1: the top level must be a mapping with keys `service`, `state` and `resources`, found a string"
        );
        // A long value is quoted as an excerpt, with its length.
        let long = "x".repeat(1 << 20);
        let Err(found) = parse(&format!("service: s\nstate: up\nnode: '{long}:'\n")) else {
            panic!("expected errors")
        };
        let shown = printable(&found);
        assert!(shown[0].len() < 300, "{} bytes", shown[0].len());
        assert!(shown[0].contains("\"… (1048577 bytes)"), "{}", shown[0]);
        let Err(found) = parse(&format!("service: s\nstate: up\n{long}: 1\n")) else {
            panic!("expected errors")
        };
        assert!(
            printable(&found)[0].len() < 400,
            "an unknown key is shortened too"
        );
        let Err(found) = parse(&format!("service: s\nstate: up\nrollback: '{long}'\n")) else {
            panic!("expected errors")
        };
        assert!(printable(&found)[0].len() < 300, "serde's messages too");
    }

    /// A regression: YAML tags were ignored or passed through, and changed what a manifest
    /// means without showing it (`state: !custom up` was `up`, `!!binary` decodes base64).
    /// Every tag is refused, located, with its field.
    #[test]
    fn regression_yaml_tags_are_refused() {
        let text = "service: !!str s\nstate: !custom up\nrollback: !!bool \"true\"\nresources: !!map\n  app#0: {start: [/bin/x, !!binary aGVsbG8=]}\n";
        let Err(found) = parse(text) else {
            panic!("expected errors")
        };
        let shown: Vec<String> = LoadErrors::new(found)
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        let tail = ": remove it, each key is read as the type it takes";
        assert_eq!(
            shown,
            [
                format!(
                    "/m/t.yaml:1:10: service: YAML tags are not supported, found \"!!str\"{tail}"
                ),
                format!(
                    "/m/t.yaml:2:8: state: YAML tags are not supported, found \"!custom\"{tail}"
                ),
                format!(
                    "/m/t.yaml:3:11: rollback: YAML tags are not supported, found \"!!bool\"{tail}"
                ),
                format!(
                    "/m/t.yaml:4:12: resources: YAML tags are not supported, found \"!!map\"{tail}"
                ),
                format!(
                    "/m/t.yaml:5:27: resources.app#0.start[1]: YAML tags are not supported, found \"!!binary\"{tail}"
                ),
            ]
        );
        // On a key, and in the node configuration, too.
        assert!(
            error("!!str service: s\nstate: up\n")
                .starts_with("1:1: service: YAML tags are not supported")
        );
        let config = crate::config::Config::from_yaml(Path::new("/c.yaml"), "node: ! n1\n");
        let Err(crate::config::ConfigError::Invalid(errors)) = config else {
            panic!("{config:?}")
        };
        assert!(
            errors
                .to_string()
                .starts_with("/c.yaml:1:7: node: YAML tags are not supported, found \"!\""),
            "{errors}"
        );
    }

    #[test]
    fn container_identity_rules() {
        let base = "service: s\nstate: up\nresources:\n  container#0: ";
        let e = |spec: &str| errors(&format!("{base}{spec}\n"));
        assert_eq!(
            e("{type: vz}"),
            [
                "/m/t.yaml:4:16: resources.container#0: missing required key `ctid` (the OpenVZ container id)"
            ]
        );
        assert_eq!(
            e("{type: lxc, name: a, ctid: 1}"),
            [
                "/m/t.yaml:4:37: resources.container#0.ctid: `ctid` is for vz containers; an lxc container is identified by `name`"
            ]
        );
        assert_eq!(
            e("{type: vz, ctid: 1, name: a}"),
            [
                "/m/t.yaml:4:36: resources.container#0.name: `name` is for lxc containers; a vz container is identified by `ctid`"
            ]
        );
        assert_eq!(
            e("{type: vz, ctid: -101}"),
            [
                "/m/t.yaml:4:33: resources.container#0.ctid: invalid container id \"-101\": must not start with `-` (it would be taken for an option)"
            ]
        );
        assert_eq!(
            e("{type: lxc, name: 'a b'}"),
            [
                "/m/t.yaml:4:34: resources.container#0.name: invalid container name \"a b\": only letters, digits, `_`, `.` and `-` are allowed"
            ]
        );
        assert_eq!(
            e("{type: vz, ctid: 0}"),
            [
                "/m/t.yaml:4:33: resources.container#0.ctid: ctid 0 is the host itself, not a container"
            ]
        );
        assert_eq!(
            e("{type: kvm}"),
            ["/m/t.yaml:4:23: resources.container#0.type: expected one of vz, lxc, got \"kvm\""]
        );
    }

    #[test]
    fn app_command_styles() {
        let base = "service: s\nstate: up\nresources:\n  app#0: ";
        let e = |spec: &str| errors(&format!("{base}{spec}\n"));
        assert_eq!(
            e("{scripts: /s, start: [/bin/a]}"),
            [
                "/m/t.yaml:4:24: resources.app#0.start: `start` cannot be combined with `scripts`: use either a scripts directory or start/stop/check commands"
            ]
        );
        assert_eq!(
            e("{scripts: rel}"),
            ["/m/t.yaml:4:20: resources.app#0.scripts: must be an absolute path, got \"rel\""]
        );
        assert_eq!(
            e("{start: [bin/a, x], stop: []}"),
            [
                "/m/t.yaml:4:19: resources.app#0.start[0]: the program must be an absolute path, got \"bin/a\"",
                "/m/t.yaml:4:36: resources.app#0.stop: must not be an empty list",
            ]
        );
        assert_eq!(
            e("{check: [/bin/sleep, 10]}"),
            [
                "/m/t.yaml:4:31: resources.app#0.check[1]: invalid type: integer `10`, expected a string"
            ]
        );
        assert_eq!(
            e("{check: /bin/x}"),
            [
                "/m/t.yaml:4:18: resources.app#0.check: expected a list of strings, found string \"/bin/x\""
            ]
        );
    }

    #[test]
    fn retcodes_format() {
        let base = "service: s\nstate: up\nresources:\n  app#0: {stop: [/x], retcodes: ";
        let e = |spec: &str| errors(&format!("{base}{spec}}}\n"));
        assert_eq!(e("'0:up 0:down'").len(), 1);
        assert!(e("'0:up 1:sideways'")[0].contains("invalid entry \"1:sideways\""));
        assert!(e("'x:up'")[0].contains("invalid entry \"x:up\""));
        assert!(e("''")[0].contains("at least one"));
        assert!(e("0")[0].contains("expected a string"));
    }

    #[test]
    fn problems_past_the_cap_are_counted_not_listed() {
        assert_eq!(MAX_PROBLEMS_PER_FILE, 50);
        let mut text = String::from("service: s\nstate: up\n");
        for i in 0..MAX_PROBLEMS_PER_FILE + 5 {
            text.push_str(&format!("k{i}: 1\n"));
        }
        let Err(found) = parse(&text) else {
            panic!("expected errors")
        };
        // Sorted as a directory's errors are: the count comes after the problems it continues.
        let errs: Vec<String> = LoadErrors::new(found)
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs.len(), MAX_PROBLEMS_PER_FILE + 1);
        assert!(
            errs[0].starts_with("/m/t.yaml:3:1: k0: unknown key"),
            "{errs:?}"
        );
        assert_eq!(
            errs[MAX_PROBLEMS_PER_FILE],
            "/m/t.yaml: and 5 more problems not shown"
        );
    }

    /// A file with a problem on every line, `bytes` long.
    fn many_problems(bytes: usize) -> String {
        let mut text = String::from("service: s\nstate: up\nresources:\n");
        for i in 0.. {
            if text.len() >= bytes {
                break;
            }
            text.push_str(&format!(
                "  fs#{i}: {{dev: /dev/a{i}, mnt: rel{i}, type: ext4}}\n"
            ));
        }
        text
    }

    /// A regression: locating each problem parsed the whole file again, so a 1 MiB file with
    /// 200 problems took 8.5 s and 74 MB to report. A file's problems are now located in one
    /// pass over it: reporting them costs a few parses of the file, however many there are.
    #[test]
    fn regression_problems_are_located_in_one_pass_over_the_file() {
        let text = many_problems(256 * 1024);
        let start = std::time::Instant::now();
        serde_yaml::from_str::<Value>(&text).expect("valid YAML");
        let one_parse = start.elapsed();
        let start = std::time::Instant::now();
        let errs = errors(&text);
        let reported = start.elapsed();
        assert_eq!(errs.len(), MAX_PROBLEMS_PER_FILE + 1);
        assert!(
            errs[0].starts_with("/m/t.yaml:4:29: resources.fs#0.mnt: must be an absolute path"),
            "{errs:?}"
        );
        assert!(
            reported < one_parse * 10,
            "{reported:?} to report the problems, one parse takes {one_parse:?}"
        );
    }

    /// A regression: `x: [[[[…` took 0.77 s at 25 000 levels and 50 s at 200 000, as the YAML
    /// scanner's work grows with the square of the depth; a 150 KB file stalled the daemon for
    /// 25 s. Nesting past [`MAX_DEPTH`] is refused as soon as the first pass sees it, before
    /// serde_yaml parses anything, and located.
    #[test]
    fn regression_deep_nesting_is_refused_before_it_is_parsed() {
        let levels = 25_000;
        for (opening, column) in [("[", 4), ("{a: ", 4), ("- ", 1)] {
            let deep = format!(
                "service: s\nstate: up\nx:\n{}{}\n",
                if opening == "- " { "" } else { "   " },
                opening.repeat(levels)
            );
            let start = std::time::Instant::now();
            let err = error(&deep);
            let took = start.elapsed();
            // The top mapping and `x`'s value are levels 1 and 2: the 32nd opening is the 33rd.
            let width = opening.len();
            let expected = format!(
                "4:{}: sequences and mappings nested more than 32 levels deep",
                column + width * (MAX_DEPTH - 1)
            );
            assert!(err.starts_with(&expected), "{opening:?}: {err}");
            assert!(took.as_secs() < 2, "{opening:?}: {took:?}");
        }
        // The limit is not in the way of anything a hand-written file does.
        let fits = format!(
            "service: s\nstate: up\nx: {}{}\n",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(error(&fits).contains("unknown key `x`"), "{}", error(&fits));
    }

    /// A regression: the daemon's cache kept only the files that parsed, so a broken file was
    /// parsed again on every reload, unchanged (a large broken file cost seconds each time).
    #[test]
    fn regression_a_file_that_failed_to_parse_is_not_parsed_again() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        fs::write(dir.join("bad.yaml"), many_problems(64 * 1024)).expect("write");
        fs::write(dir.join("good.yaml"), "service: g\nstate: down\n").expect("write");
        let mut cache = ParseCache::default();
        let first = load_dir_lenient_cached(dir, &mut cache);
        assert_eq!(cache.parses(), 2);
        let again = load_dir_lenient_cached(dir, &mut cache);
        assert_eq!(cache.parses(), 2, "nothing changed, nothing is parsed");
        assert_eq!(again, first);
        assert_eq!(again.errors.len(), MAX_PROBLEMS_PER_FILE + 1);
        // An edit is parsed, of course, and so is a new file.
        fs::write(dir.join("bad.yaml"), "service: b\nstate: sideways\n").expect("write");
        let edited = load_dir_lenient_cached(dir, &mut cache);
        assert_eq!(cache.parses(), 3);
        assert_eq!(edited.errors.len(), 1);
    }

    /// The daemon's shutdown waited for a reload to parse every file (ten large broken files:
    /// seconds). A load asked to stop ends between two files, gives nothing of the directory,
    /// and keeps what it parsed for the next load.
    #[test]
    fn a_stopped_load_ends_between_two_files_and_gives_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        fs::write(dir.join("a.yaml"), "service: a\nstate: down\n").expect("write");
        fs::write(dir.join("b.yaml"), many_problems(16 * 1024)).expect("write");
        fs::write(dir.join("c.yaml"), many_problems(16 * 1024)).expect("write");
        fs::write(dir.join("d.yaml"), "service: d\nstate: down\n").expect("write");
        let mut cache = ParseCache::default();
        let asked = std::cell::Cell::new(0);
        // Told to stop once two files are done: asked before each file, so a third time.
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() > 2
        };
        assert_eq!(load_dir_lenient_cached_until(dir, &mut cache, &stop), None);
        assert_eq!(
            asked.get(),
            3,
            "the load stopped at the first question that said so"
        );
        assert_eq!(cache.parses(), 2, "a.yaml and b.yaml, nothing after");
        // Never told to stop: the whole directory, a.yaml and b.yaml from the cache.
        let full = load_dir_lenient_cached_until(dir, &mut cache, &|| false).expect("complete");
        assert_eq!(
            cache.parses(),
            4,
            "only c.yaml and d.yaml were left to parse"
        );
        let names: Vec<&str> = full.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "d"]);
        assert_eq!(
            full,
            load_dir_lenient_cached(dir, &mut ParseCache::default())
        );
        // Told to stop at once: nothing is read.
        fs::write(dir.join("a.yaml"), "service: a\nstate: up\n").expect("write");
        assert_eq!(
            load_dir_lenient_cached_until(dir, &mut cache, &|| true),
            None
        );
        assert_eq!(cache.parses(), 4);
    }

    #[test]
    fn fsck_accepts_booleans_and_auto_only() {
        let text = "service: s\nstate: up\nresources:\n  fs#0: {dev: /d, mnt: /m, type: ext4, fsck: yes}\n";
        assert_eq!(
            error(text),
            "4:46: resources.fs#0.fsck: expected true, false or \"auto\", found string \"yes\""
        );
    }

    #[test]
    fn fsck_true_needs_a_type_converge_can_check() {
        let text = "service: s\nstate: up\nresources:\n  fs#1:\n    dev: /d\n    mnt: /m\n    type: xfs\n    fsck: true\n";
        assert_eq!(
            error(text),
            "8:11: resources.fs#1.fsck: fsck: true needs a filesystem converge can check (ext2, ext3, ext4), not xfs; set fsck: false or auto"
        );
        for fsck in ["false", "auto"] {
            let text = text.replace("fsck: true", &format!("fsck: {fsck}"));
            parse(&text).expect(fsck);
        }
        for fstype in EXT_TYPES {
            let text = text.replace("type: xfs", &format!("type: {fstype}"));
            let svc = parse(&text).expect(fstype);
            assert_eq!(
                svc.resources[0].spec.as_fs().map(|f| f.fsck),
                Some(Fsck::Yes)
            );
        }
        // The other problems of the resource are still reported with it.
        let text = text.replace("mnt: /m", "mnt: m");
        assert_eq!(errors(&text).len(), 2, "{:?}", errors(&text));
    }

    /// Between them, these set every key of the manifest model (a service has one container,
    /// and an app uses scripts or commands, so one file cannot).
    const EVERY_KEY: [&str; 2] = [
        r#"
service: all-a
state: up
node: n1
rollback: false
resources:
  drbd#0: {res: r0, stop: down, allow_two_primaries: true, secondary_force: true, config: drbd/r0.res, disabled: false, optional: true}
  fs#0:
    dev: /dev/drbd0
    mnt: /a
    type: ext4
    options: noatime
    fsck: true
    umount_kill: true
    timeout: 30s
    disabled: false
    optional: false
  container#0:
    type: vz
    ctid: 101
    start_timeout: 1m
    stop_timeout: 1m
    disabled: false
    optional: false
  app#0:
    scripts: /etc/init.d
    timeout: 1m
    retcodes: "0:up 1:down"
    disabled: false
    optional: false
"#,
        r#"
service: all-b
state: down
nodes: [n1, n2]
failover: auto
failback: preferred
on_quorum_loss: freeze
resources:
  drbd#0: {res: r1, up_by: system}
  container#0: {type: lxc, name: web}
  app#0: {start: [/bin/a], stop: [/bin/b], check: [/bin/c]}
"#,
    ];

    /// The reader and the model cannot drift apart: a key declared in a document type that the
    /// reader never reads fails here (and one the reader reads that the model does not declare
    /// fails the reader's debug assertion).
    #[test]
    fn the_reader_reads_every_key_of_the_model() {
        use crate::manifest::schema::asked;
        use schemars::JsonSchema;
        use std::collections::BTreeSet;

        let schema = crate::schema_files::manifest_schema();
        let models = crate::schema_files::models(&ManifestDoc::schema_name(), &schema);
        let names: BTreeSet<&str> = models.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from([
                TOP_KEYS.model(),
                DRBD_KEYS.model(),
                FS_KEYS.model(),
                CONTAINER_KEYS.model(),
                APP_KEYS.model()
            ]),
            "every model of the schema is a mapping the reader opens"
        );

        // The texts must set every key, or a key read only in some branch could go unnoticed.
        let mut set: BTreeSet<(String, String)> = BTreeSet::new();
        let mut asked_for = BTreeSet::new();
        for text in EVERY_KEY {
            let (parsed, asked) = asked::record(|| parse(text));
            parsed.expect("every-key manifest");
            asked_for.extend(asked);
            let value: Value = serde_yaml::from_str(text).expect("yaml");
            let mut note = |keys: &Keys, map: &Value| {
                let found = map.as_mapping().into_iter().flatten();
                for key in found.filter_map(|(k, _)| k.as_str()) {
                    set.insert((keys.model().to_owned(), key.to_owned()));
                }
            };
            note(&TOP_KEYS, &value);
            for (id, resource) in value["resources"].as_mapping().into_iter().flatten() {
                let kind = id.as_str().and_then(ResourceId::parse).expect("id").kind;
                let keys: &Keys = match kind {
                    Kind::Drbd => &DRBD_KEYS,
                    Kind::Fs => &FS_KEYS,
                    Kind::Container => &CONTAINER_KEYS,
                    Kind::App => &APP_KEYS,
                };
                note(keys, resource);
            }
        }
        for (model, keys) in &models {
            for key in keys {
                let pair = (model.clone(), key.clone());
                assert!(set.contains(&pair), "EVERY_KEY does not set {model}.{key}");
                assert!(
                    asked_for.contains(&pair),
                    "{model}.{key} is declared in the model but the reader never reads it"
                );
            }
        }
    }

    #[test]
    fn yaml_level_errors_are_clear_and_located() {
        assert_eq!(
            error(""),
            "empty manifest: expected a mapping with keys `service`, `state` and `resources`"
        );
        assert_eq!(
            error("# nothing\n"),
            "empty manifest: expected a mapping with keys `service`, `state` and `resources`"
        );
        assert_eq!(
            error("- a\n- b\n"),
            "1:1: the top level must be a mapping with keys `service`, `state` and `resources`, found a sequence"
        );
        assert_eq!(
            error("service: a\nstate: up\n---\nservice: b\n"),
            "4:1: more than one YAML document (`---`) in the file; a file holds exactly one"
        );
        assert_eq!(
            error("service: a\nstate: up\nresources:\n  fs#0: {}\n  app#0: {}\n  fs#0: {}\n"),
            "6:3: resources.fs#0: duplicate key `fs#0`: each key may appear only once in a mapping"
        );
        let syntax = error("service: a\nstate: [up\n");
        assert!(syntax.starts_with("3:1: invalid YAML: "), "{syntax}");
        assert!(!syntax.contains("at line 3"), "{syntax}");
        let tab = error("service: a\n\tstate: up\n");
        assert!(tab.contains("invalid YAML"), "{tab}");
    }

    #[test]
    fn error_display_omits_missing_parts() {
        let e = LoadError::new(Path::new("/d"), "boom");
        assert_eq!(e.to_string(), "/d: boom");
        let e = LoadError {
            location: Some(Location { line: 7, column: 5 }),
            field: Some("resources.fs#1.mnt".into()),
            ..LoadError::new(
                Path::new("/etc/converge/manifests/web.yaml"),
                "must be an absolute path, got \"drbdsvc\"",
            )
        };
        assert_eq!(
            e.to_string(),
            "/etc/converge/manifests/web.yaml:7:5: resources.fs#1.mnt: must be an absolute path, got \"drbdsvc\""
        );
    }

    #[test]
    fn manifest_names() {
        let yes = ["a.yaml", "a.yml", "a.b.yaml"];
        let no = [
            ".a.yaml",
            ".a.yaml.swp",
            "a.yaml~",
            ".#a.yaml",
            "#a.yaml#",
            "a.json",
            "a",
            "a.yaml.bak",
            "a.YAML.swp",
            ".yaml",
        ];
        for name in yes {
            assert!(is_manifest_name(name.as_ref()), "{name}");
        }
        for name in no {
            assert!(!is_manifest_name(name.as_ref()), "{name}");
        }
    }

    /// A tiny deterministic generator: the fuzz test must be reproducible without a dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// The mutated texts of [`mutated_manifests_never_panic`].
    fn mutated(seed: u64, count: usize) -> Vec<Vec<u8>> {
        let bytes = EXAMPLE.as_bytes();
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        let mut rng = XorShift(seed);
        let specials = b":-[]{}#&*!|>'\"%@`,? \n\t0~";
        for _ in 0..count {
            let mut b = bytes.to_vec();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                match rng.below(4) {
                    0 => b[i] = rng.next() as u8,
                    1 => b[i] = specials[rng.below(specials.len())],
                    2 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, specials[rng.below(specials.len())]),
                }
            }
            inputs.push(b);
        }
        inputs
    }

    /// Every path to a node of the value serde_yaml reads (scalar keys only).
    fn paths_of(value: &Value, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        out.push(path.clone());
        match value {
            Value::Mapping(map) => {
                for (k, v) in map {
                    if matches!(k, Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_)) {
                        continue;
                    }
                    path.push(Seg::Key(k.clone()));
                    paths_of(v, path, out);
                    path.pop();
                }
            }
            Value::Sequence(items) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    paths_of(v, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// The tree one pass over the events records has every node serde_yaml's value has, keys
    /// typed the same way: a problem anywhere in a value is located exactly, never by falling
    /// back to a parent.
    #[test]
    fn every_node_of_the_value_is_located() {
        let mut texts: Vec<String> = EVERY_KEY.iter().map(|t| t.to_string()).collect();
        texts.push(EXAMPLE.to_owned());
        texts.push(
            "a: &x {b: [1, {c: d}]}\ne: *x\n1: one\n0x1f: hex\n'2': quoted\n~: null\ntrue: t\n.5: f\n? [complex]\n: v\nf: |\n  text\ng: [a, b: c, {d: e}]\n"
                .to_owned(),
        );
        texts.extend(
            mutated(0x2545_f491_4f6c_dd1d, 300)
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        );
        let mut checked = 0;
        for text in &texts {
            let Ok(value) = serde_yaml::from_str::<Value>(text) else {
                continue;
            };
            let positions = locate::scan(text, Record::Tree);
            let mut paths = Vec::new();
            paths_of(&value, &mut Vec::new(), &mut paths);
            for path in &paths {
                assert!(
                    positions.locate(path, At::Value).is_some(),
                    "{} not located in {text:?}",
                    FieldPath(path)
                );
                checked += 1;
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn mutated_manifests_never_panic() {
        let bytes = EXAMPLE.as_bytes();
        let mut inputs: Vec<Vec<u8>> = (0..bytes.len())
            .step_by(3)
            .map(|n| bytes[..n].to_vec())
            .collect();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // Bytes that matter to YAML's grammar, to hit more than the "invalid scalar" paths.
        let specials = b":-[]{}#&*!|>'\"%@`,? \n\t0~";
        for _ in 0..400 {
            let mut b = bytes.to_vec();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                match rng.below(4) {
                    0 => b[i] = rng.next() as u8,
                    1 => b[i] = specials[rng.below(specials.len())],
                    2 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, specials[rng.below(specials.len())]),
                }
            }
            inputs.push(b);
        }
        let mut ok = 0;
        for input in &inputs {
            let text = String::from_utf8_lossy(input);
            match parse(&text) {
                Ok(_) => ok += 1,
                Err(errors) => assert!(!errors.is_empty()),
            }
        }
        assert!(ok > 0 && ok < inputs.len(), "{ok} of {}", inputs.len());
    }
}
