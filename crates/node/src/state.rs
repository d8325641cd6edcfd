//! converge's own state on disk, under `state_dir`: what it cannot observe on the node.
//!
//! That is the start of apps that have no check: an app with no way to ask "are you
//! running?" is taken as up from a successful start until it is stopped, its container starts
//! or stops, or the node reboots (the record names the boot it belongs to). And a container
//! converge froze on a quorum loss ([`FreezeRecord`]): a freeze looks the same whoever made it,
//! and converge thaws only its own.
//!
//! Records are written atomically and durably ([`write_atomic`]), so a crash or a power cut
//! leaves the old record or the new one, never half of one. App records live in
//! `state_dir/app-records`, one file each, named after the service and the resource:
//! `web@app-0.start.json` is the start of `app#0` of `web`.
//!
//! Only the holder of the instance lock writes here; observation only reads.

use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};

use converge_core::manifest::ResourceId;

/// Where the kernel publishes the current boot's id.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStartRecord {
    /// The node's boot id when the app started.
    pub boot_id: String,
    /// When, in seconds since the epoch.
    pub started_at: u64,
}

/// A boot id is a UUID (37 bytes with its newline).
const BOOT_ID_MAX: u64 = 4096;

/// A start record is some 80 bytes of JSON; a larger file in the records directory is not one.
const RECORD_MAX: u64 = 64 * 1024;

/// This boot's id. Read once per process: it cannot change while the process runs, and the
/// daemon asks for it for every app on every resync.
pub fn boot_id() -> &'static str {
    static BOOT_ID: OnceLock<String> = OnceLock::new();
    BOOT_ID.get_or_init(|| {
        crate::secure::read_input_text(Path::new(BOOT_ID_PATH), BOOT_ID_MAX)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// Where app records live: flat in one directory, so that one listing tells which exist.
const RECORDS_DIR: &str = "app-records";

/// What a record holds, as the last part of its file name.
const START_SUFFIX: &str = ".start.json";
/// Script listings that earlier versions cached on disk (now kept in memory).
const OBSOLETE_SCRIPTS_SUFFIX: &str = ".scripts.json";

/// Above this many records wanted at once, one listing of the records directory is cheaper than
/// reading each file (a read is an open, a stat, two reads and a close).
const LIST_ABOVE: usize = 16;

fn records_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(RECORDS_DIR)
}

/// The first part of the file names of a service's records: `web@`. Manifests refuse names
/// starting with `.` and allow no `/` or `@`; this also refuses them, so that no name can ever
/// make a record path point outside the records directory, be taken for a temporary file, or
/// make one service's records look like another's (a `..` once meant `forget_service_apps`
/// removing the whole state directory).
fn service_prefix(service: &str) -> String {
    let mut prefix = String::with_capacity(service.len() + 10);
    push_service_prefix(&mut prefix, service);
    prefix
}

fn push_service_prefix(out: &mut String, service: &str) {
    let safe =
        !service.is_empty() && !service.starts_with('.') && !service.contains(['/', '@', '\0']);
    if safe {
        out.push_str(service);
    } else {
        out.push_str("_invalid_");
        out.extend(service.chars().map(|c| match c {
            '/' | '.' | '@' | '\0' => '_',
            c => c,
        }));
    }
    out.push('@');
}

/// `web@app-0.start.json`: the app's service, its resource id (`#` is awkward in file names),
/// and what the record is. (Records of actions in progress, [`crate::in_progress`], are named
/// the same way.) Built in one allocation: a resync looks up one per app.
pub(crate) fn record_name(service: &str, rid: ResourceId, suffix: &str) -> String {
    use std::fmt::Write;
    let mut name = String::with_capacity(service.len() + suffix.len() + 24);
    push_service_prefix(&mut name, service);
    // Writing to a String cannot fail.
    let _ = write!(name, "{}-{}{suffix}", rid.kind.as_str(), rid.index);
    name
}

use converge_core::fsutil::{SETTLE, Stamp, read_capped_open, write_atomic};

pub fn record_app_start(state_dir: &Path, service: &str, rid: ResourceId) -> io::Result<()> {
    let record = AppStartRecord {
        boot_id: boot_id().to_string(),
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
    let dir = records_dir(state_dir);
    let name = record_name(service, rid, START_SUFFIX);
    let path = dir.join(&name);
    write_atomic(&path, &json)?;
    // The new file may have the inode number of one just deleted (ext4 reuses them at once),
    // which the cache may still hold: what is cached for this name must be this record.
    match std::fs::symlink_metadata(&path) {
        Ok(meta) => remember(&dir, name, meta.ino(), &record),
        Err(_) => forget_cached(&dir, |n| n == name),
    }
    Ok(())
}

/// A start record's content, when it is one of this boot.
fn parse_start(text: &[u8]) -> Option<AppStartRecord> {
    let record: AppStartRecord = serde_json::from_slice(text).ok()?;
    (record.boot_id == boot_id()).then_some(record)
}

/// The start records in `dir`: (file name, inode) each. Any error, even on one entry, is
/// returned.
fn list_start_records(dir: &Path) -> io::Result<Vec<(String, u64)>> {
    let mut listing = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Temporary files of write_atomic start with a dot.
        if name.starts_with('.') || !name.ends_with(START_SUFFIX) {
            continue;
        }
        listing.push((name, entry.ino()));
    }
    Ok(listing)
}

/// The app starts recorded for one observation.
#[derive(Debug, Default)]
pub struct AppStarts {
    /// When each app started (seconds since the epoch), by record file name; only records of
    /// this boot. Shared with the listing kept for the next resync ([`Listed`]).
    records: Arc<HashMap<String, u64>>,
}

/// The last listing of a records directory, while it can be trusted again: the directory's
/// [`Stamp`] before it was listed (one that had been still for [`SETTLE`]), and the start
/// records it gave. Any name created, renamed or removed there changes the directory's times,
/// and a settled stamp cannot share its tick with a later change. converge's own writes and
/// removals drop it as well: that costs nothing, and keeps its own changes from resting on the
/// filesystem's clock.
type Listed = HashMap<PathBuf, (Stamp, Arc<HashMap<String, u64>>)>;

fn listed() -> MutexGuard<'static, Listed> {
    static LISTED: OnceLock<Mutex<Listed>> = OnceLock::new();
    process_wide(&LISTED)
}

/// A cache kept for the process's life, locked. Plain maps, each change made under one lock: a
/// panic elsewhere cannot leave one half-written.
fn process_wide<T: Default>(cell: &'static OnceLock<Mutex<T>>) -> MutexGuard<'static, T> {
    cell.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Start records already read, by records directory and file name: (inode, content). Records
/// are only ever replaced by rename, so a file with the inode seen last time holds what it held
/// then; converge's own writes and deletions update this at once, since a deleted record's
/// inode number is soon reused. Only valid records of this boot are kept: a file that could not
/// be read or parsed, or is of another boot, is read again each time (they are rare).
/// Only the start time is kept: the boot id is checked once, when the file is read.
type KnownStarts = HashMap<PathBuf, HashMap<String, (u64, u64)>>;

fn known_starts() -> MutexGuard<'static, KnownStarts> {
    static KNOWN: OnceLock<Mutex<KnownStarts>> = OnceLock::new();
    process_wide(&KNOWN)
}

fn remember(dir: &Path, name: String, ino: u64, record: &AppStartRecord) {
    listed().remove(dir);
    known_starts()
        .entry(dir.to_path_buf())
        .or_default()
        .insert(name, (ino, record.started_at));
}

fn forget_cached(dir: &Path, matches: impl Fn(&str) -> bool) {
    listed().remove(dir);
    if let Some(known) = known_starts().get_mut(dir) {
        known.retain(|name, _| !matches(name));
    }
}

impl AppStarts {
    /// The start records of the apps `owners` (service, resource).
    ///
    /// A few are read file by file. Many (a daemon's resync looks at every service) take one
    /// listing of the records directory instead, and only the files not seen before, or
    /// replaced since, are read: a resync of 1,000 converged apps costs one directory read, not
    /// 1,000 file reads. The listing still sees every record created, replaced or deleted by
    /// hand. A listing that fails falls back to reading each file. And a directory whose stamp
    /// is the same as at the last listing, and was still then, is not listed again ([`Listed`]):
    /// a resync of converged apps costs one `stat`.
    pub fn read(state_dir: &Path, owners: &[(&str, ResourceId)]) -> AppStarts {
        Self::read_with(state_dir, owners, list_start_records, SETTLE)
    }

    fn read_with(
        state_dir: &Path,
        owners: &[(&str, ResourceId)],
        list: impl FnOnce(&Path) -> io::Result<Vec<(String, u64)>>,
        settle: std::time::Duration,
    ) -> AppStarts {
        let dir = records_dir(state_dir);
        let each = || {
            owners
                .iter()
                .filter_map(|&(service, rid)| {
                    let name = record_name(service, rid, START_SUFFIX);
                    let record = Self::read_one(&dir, &name)?;
                    Some((name, record.started_at))
                })
                .collect()
        };
        if owners.len() <= LIST_ABOVE {
            return AppStarts {
                records: Arc::new(each()),
            };
        }
        // Stamped before the listing: a change during it shows at the next look.
        let stamp = std::fs::symlink_metadata(&dir)
            .ok()
            .filter(std::fs::Metadata::is_dir)
            .and_then(|meta| Stamp::settled(&meta, std::time::SystemTime::now(), settle));
        if let Some(stamp) = stamp
            && let Some((seen, records)) = listed().get(&dir)
            && *seen == stamp
        {
            return AppStarts {
                records: Arc::clone(records),
            };
        }
        let records = Arc::new(match list(&dir) {
            Ok(listing) => Self::read_listed(&dir, listing),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            // Says nothing about the records, and must not be taken for "none".
            Err(_) => {
                return AppStarts {
                    records: Arc::new(each()),
                };
            }
        });
        if let Some(stamp) = stamp {
            listed().insert(dir, (stamp, Arc::clone(&records)));
        }
        AppStarts { records }
    }

    /// Reads one record, and remembers it for the next listing (as the listing would: by
    /// inode), so that the first resync after many single reconciles reads no file again.
    fn read_one(dir: &Path, name: &str) -> Option<AppStartRecord> {
        let read = || -> Option<(u64, Vec<u8>)> {
            let path = dir.join(name);
            let file = crate::secure::open_input(&path).ok()?;
            let ino = file.metadata().ok()?.ino();
            let text = read_capped_open(&path, file, RECORD_MAX).ok()?;
            Some((ino, text))
        };
        let Some((ino, record)) = read().and_then(|(ino, text)| Some((ino, parse_start(&text)?)))
        else {
            forget_cached(dir, |n| n == name);
            return None;
        };
        remember(dir, name.to_string(), ino, &record);
        Some(record)
    }

    /// Every valid start record of this boot among `listing` (file name, inode) of `dir`, by
    /// file name.
    fn read_listed(dir: &Path, listing: Vec<(String, u64)>) -> HashMap<String, u64> {
        // Held while reading: two resyncs at once then share the work instead of repeating it.
        let mut known_dirs = known_starts();
        let known = known_dirs.remove(dir).unwrap_or_default();
        let mut now: HashMap<String, (u64, u64)> = HashMap::with_capacity(listing.len());
        for (name, ino) in listing {
            let started_at = match known.get(&name) {
                Some((seen, started_at)) if *seen == ino => Some(*started_at),
                _ => crate::secure::read_input(&dir.join(&name), RECORD_MAX)
                    .ok()
                    .and_then(|text| parse_start(&text))
                    .map(|record| record.started_at),
            };
            if let Some(started_at) = started_at {
                now.insert(name, (ino, started_at));
            }
        }
        let records = now
            .iter()
            .map(|(name, (_, started_at))| (name.clone(), *started_at))
            .collect();
        known_dirs.insert(dir.to_path_buf(), now);
        records
    }

    /// When an app started in this boot (seconds since the epoch), when recorded.
    pub fn started_at(&self, service: &str, rid: ResourceId) -> Option<u64> {
        self.records
            .get(&record_name(service, rid, START_SUFFIX))
            .copied()
    }
}

pub fn forget_app_start(state_dir: &Path, service: &str, rid: ResourceId) -> io::Result<()> {
    let name = record_name(service, rid, START_SUFFIX);
    let dir = records_dir(state_dir);
    let removed = std::fs::remove_file(dir.join(&name));
    // Forgotten from the cache whatever happened: the next read looks at the file.
    forget_cached(&dir, |n| n == name);
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Forgets every app start of a service, and converge's freeze of its container: its
/// container started or stopped, so whatever ran inside is gone.
pub fn forget_service_apps(state_dir: &Path, service: &str) -> io::Result<()> {
    let dir = records_dir(state_dir);
    let prefix = service_prefix(service);
    let removed = remove_prefixed(&dir, &prefix);
    // After the removals, and whatever happened: the next read looks at the files.
    forget_cached(&dir, |name| name.starts_with(&prefix));
    removed
}

fn remove_prefixed(dir: &Path, prefix: &str) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().as_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// What a freeze record holds, as the last part of its file name: `web@container-0.freeze.json`.
const FREEZE_SUFFIX: &str = ".freeze.json";

/// converge froze a service's container because the node lost quorum (`on_quorum_loss:
/// freeze`). Written before the freeze, so that a converge killed during it still knows the
/// freeze is its own; gone once the container is thawed to run on, or stopped or started
/// ([`forget_service_apps`]). Only for this boot: a reboot thaws everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeRecord {
    pub boot_id: String,
    /// When, in seconds since the epoch.
    pub frozen_at: u64,
    /// Thawed to be stopped: see [`converge_core::observe::QuorumFreeze`].
    pub stopping: bool,
}

/// Records that converge froze (or is about to freeze) the container `rid` of `service`;
/// `stopping` once it is thawed to be stopped. A record rewritten keeps when it was frozen.
pub fn record_freeze(
    state_dir: &Path,
    service: &str,
    rid: ResourceId,
    stopping: bool,
) -> io::Result<()> {
    let frozen_at = read_freeze(state_dir, service, rid).map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        },
        |r| r.frozen_at,
    );
    let record = FreezeRecord {
        boot_id: boot_id().to_string(),
        frozen_at,
        stopping,
    };
    let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
    let path = records_dir(state_dir).join(record_name(service, rid, FREEZE_SUFFIX));
    write_atomic(&path, &json)
}

/// converge's freeze record for the container `rid` of `service`, when there is one of this
/// boot.
pub fn read_freeze(state_dir: &Path, service: &str, rid: ResourceId) -> Option<FreezeRecord> {
    let path = records_dir(state_dir).join(record_name(service, rid, FREEZE_SUFFIX));
    let text = crate::secure::read_input(&path, RECORD_MAX).ok()?;
    let record: FreezeRecord = serde_json::from_slice(&text).ok()?;
    (record.boot_id == boot_id()).then_some(record)
}

pub fn forget_freeze(state_dir: &Path, service: &str, rid: ResourceId) -> io::Result<()> {
    let path = records_dir(state_dir).join(record_name(service, rid, FREEZE_SUFFIX));
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where split brains DRBD reported are kept: `split-brain/RES@PEER.json`.
const SPLIT_BRAIN_DIR: &str = "split-brain";
/// More records than this are not read: no node has that many connections.
const MAX_SPLIT_BRAINS: usize = 1024;

/// A split brain DRBD reported on resource `res`'s connection to `peer`: kept until the
/// connection is seen established again (a person resolved it). Not tied to a boot: diverged
/// data stays diverged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBrainRecord {
    pub res: String,
    pub peer: String,
    /// When converge saw DRBD report it, RFC 3339.
    pub since: String,
}

/// `RES@PEER.json`, when both names are safe in a file name (DRBD resource names are; a
/// connection name is a host name): no `/`, no leading `.`, no `@`.
fn split_brain_name(res: &str, peer: &str) -> Option<String> {
    let safe = |n: &str| !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '@', '\0']);
    (safe(res) && safe(peer)).then(|| format!("{res}@{peer}.json"))
}

/// Records a split brain of `res` with `peer`, unless one is recorded already (its first
/// sighting is kept). Returns whether it was new.
pub fn record_split_brain(state_dir: &Path, res: &str, peer: &str) -> io::Result<bool> {
    let name = split_brain_name(res, peer).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("resource {res:?} or peer {peer:?} cannot name a file"),
        )
    })?;
    let path = state_dir.join(SPLIT_BRAIN_DIR).join(name);
    // Only a record that reads back as one counts: a damaged file is replaced, or the split
    // brain it stands for would be neither listed nor refused.
    let recorded = crate::secure::read_input(&path, RECORD_MAX)
        .ok()
        .and_then(|text| serde_json::from_slice::<SplitBrainRecord>(&text).ok())
        .is_some_and(|r| r.res == res && r.peer == peer);
    if recorded {
        return Ok(false);
    }
    let record = SplitBrainRecord {
        res: res.to_string(),
        peer: peer.to_string(),
        since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
    write_atomic(&path, &json)?;
    Ok(true)
}

/// Forgets the split brain of `res` with `peer`; returns whether there was one.
pub fn forget_split_brain(state_dir: &Path, res: &str, peer: &str) -> io::Result<bool> {
    let Some(name) = split_brain_name(res, peer) else {
        return Ok(false);
    };
    match std::fs::remove_file(state_dir.join(SPLIT_BRAIN_DIR).join(name)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every split brain recorded, by resource. Unreadable or foreign files are skipped.
pub fn split_brains(state_dir: &Path) -> Vec<SplitBrainRecord> {
    let Ok(entries) = std::fs::read_dir(state_dir.join(SPLIT_BRAIN_DIR)) else {
        return Vec::new();
    };
    let mut records: Vec<SplitBrainRecord> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && name.ends_with(".json")
        })
        .take(MAX_SPLIT_BRAINS)
        .filter_map(|e| {
            let text = crate::secure::read_input(&e.path(), RECORD_MAX).ok()?;
            let record: SplitBrainRecord = serde_json::from_slice(&text).ok()?;
            // The file must be the record's own: a record copied under another name is not.
            (split_brain_name(&record.res, &record.peer).as_deref()
                == Some(&*e.file_name().to_string_lossy()))
            .then_some(record)
        })
        .collect();
    records.sort_by(|a, b| (&a.res, &a.peer).cmp(&(&b.res, &b.peer)));
    records
}

/// Where converge notes the DRBD resources whose file it installed and has not applied yet:
/// `drbd-adjust/RES`, an empty file.
const ADJUST_DIR: &str = "drbd-adjust";
/// More records than this are not read: no node has that many DRBD resources.
const MAX_ADJUSTS: usize = 100_000;

/// Whether `res` can name a record file: DRBD resource names the manifest reader takes can.
fn adjust_record(state_dir: &Path, res: &str) -> io::Result<PathBuf> {
    if res.is_empty() || res.starts_with('.') || res.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("resource {res:?} cannot name a file"),
        ));
    }
    Ok(state_dir.join(ADJUST_DIR).join(res))
}

/// Notes that the installed file of `res` is about to change and is not applied yet. Written
/// before the file is replaced, so that a converge killed between the two still applies it
/// (`drbdadm adjust`) next time. Not tied to a boot: after a reboot the adjust is a no-op.
pub fn record_adjust(state_dir: &Path, res: &str) -> io::Result<()> {
    let path = adjust_record(state_dir, res)?;
    // converge's own directory, checked before each write as in-progress/ is: a record
    // planted or removed by someone else would make it adjust, or not.
    crate::secure::ensure_private_dir(&state_dir.join(ADJUST_DIR), "drbd-adjust records")
        .map_err(|e| io::Error::other(e.to_string()))?;
    write_atomic(&path, b"")
}

/// Forgets that `res` waits for an adjust: it ran, or `drbdadm up` read the whole file.
pub fn forget_adjust(state_dir: &Path, res: &str) -> io::Result<()> {
    match std::fs::remove_file(adjust_record(state_dir, res)?) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The DRBD resources whose installed file is not applied yet.
pub fn adjusts_pending(state_dir: &Path) -> std::collections::BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(state_dir.join(ADJUST_DIR)) else {
        return Default::default();
    };
    entries
        .flatten()
        .take(MAX_ADJUSTS)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| !name.starts_with('.'))
        .collect()
}

/// Where app records lived before they moved to one flat directory: `apps/SERVICE/app-N.json`
/// and `apps/SERVICE/app-N.scripts.json`.
const LEGACY_APPS_DIR: &str = "apps";

/// Moves app records of the former layout (`state_dir/apps/SERVICE/…`) into the records
/// directory, so that an upgrade does not take every started app for stopped (and start it
/// again), and removes the caches earlier versions kept on disk (script listings, the DRBD
/// 8.x minor map), which are now kept in memory. Only the holder of the lock may call this: a
/// converge of a former version still running would lose its records. Returns how many records
/// moved.
pub fn migrate_legacy_records(state_dir: &Path) -> io::Result<usize> {
    remove_obsolete_caches(state_dir)?;
    let legacy = state_dir.join(LEGACY_APPS_DIR);
    let services = match std::fs::read_dir(&legacy) {
        Ok(services) => services,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let dir = records_dir(state_dir);
    std::fs::create_dir_all(&dir)?;
    let mut moved = 0;
    for service in services {
        let service = service?;
        if !service.file_type()?.is_dir() {
            continue;
        }
        let name = service.file_name().to_string_lossy().into_owned();
        for record in std::fs::read_dir(service.path())? {
            let record = record?;
            let file = record.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') {
                // A temporary file of an interrupted write: nothing to keep.
                std::fs::remove_file(record.path())?;
                continue;
            }
            if file.ends_with(OBSOLETE_SCRIPTS_SUFFIX) {
                // A cache, not a record: listed again when needed.
                std::fs::remove_file(record.path())?;
                continue;
            }
            let Some(rid) = file.strip_suffix(".json") else {
                // Not converge's: left where it is.
                continue;
            };
            let new_name = format!("{}{rid}{START_SUFFIX}", service_prefix(&name));
            std::fs::rename(record.path(), dir.join(new_name))?;
            moved += 1;
        }
        // Fails when something unexpected is left: then the directory stays, harmless.
        let _ = std::fs::remove_dir(service.path());
    }
    let _ = std::fs::remove_dir(&legacy);
    Ok(moved)
}

/// Removes what earlier versions cached in `state_dir` and no longer read.
fn remove_obsolete_caches(state_dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(state_dir.join("drbd-minors.json")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let entries = match std::fs::read_dir(records_dir(state_dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .as_bytes()
            .ends_with(OBSOLETE_SCRIPTS_SUFFIX.as_bytes())
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use converge_core::manifest::Kind;

    fn app_record_path(state_dir: &Path, service: &str, rid: ResourceId) -> PathBuf {
        records_dir(state_dir).join(record_name(service, rid, START_SUFFIX))
    }

    fn start_of(state_dir: &Path, service: &str, rid: ResourceId) -> Option<u64> {
        AppStarts::read(state_dir, &[(service, rid)]).started_at(service, rid)
    }

    /// Names already on disk must keep reading back: the table is the names as they were.
    #[test]
    fn record_names_are_the_ones_on_disk() {
        let app = |n| ResourceId::new(Kind::App, n);
        let cases = [
            ("web", app(0), START_SUFFIX, "web@app-0.start.json"),
            (
                "db.example.com",
                app(12),
                START_SUFFIX,
                "db.example.com@app-12.start.json",
            ),
            (
                "a/b@c",
                app(1),
                START_SUFFIX,
                "_invalid_a_b_c@app-1.start.json",
            ),
            (
                ".x",
                ResourceId::new(Kind::Container, 2),
                ".y",
                "_invalid__x@container-2.y",
            ),
            ("", app(3), START_SUFFIX, "_invalid_@app-3.start.json"),
        ];
        for (service, rid, suffix, name) in cases {
            assert_eq!(record_name(service, rid, suffix), name, "{service:?} {rid}");
        }
        assert_eq!(service_prefix("web"), "web@");
    }

    #[test]
    fn records_round_trip_and_are_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 1);
        assert_eq!(start_of(dir.path(), "svc", rid), None);
        record_app_start(dir.path(), "svc", rid).expect("write");
        start_of(dir.path(), "svc", rid).expect("recorded");
        let text = std::fs::read(app_record_path(dir.path(), "svc", rid)).expect("record");
        assert_eq!(
            parse_start(&text).map(|r| r.boot_id).as_deref(),
            Some(boot_id())
        );
        // Another service's records are not touched by forgetting this one's.
        record_app_start(dir.path(), "svc2", rid).expect("write");
        forget_service_apps(dir.path(), "svc").expect("forget");
        assert_eq!(start_of(dir.path(), "svc", rid), None);
        assert!(start_of(dir.path(), "svc2", rid).is_some());
        forget_app_start(dir.path(), "svc", rid).expect("forgetting twice is fine");
        forget_app_start(dir.path(), "svc2", rid).expect("forget");
        assert_eq!(start_of(dir.path(), "svc2", rid), None);
    }

    /// The longest service name the manifest allows has its records, with the largest resource
    /// number: the file names derived from it fit (a 300-byte name once failed with "File name
    /// too long" after its start had run).
    #[test]
    fn a_freeze_record_is_of_this_boot_keeps_its_time_and_goes_with_the_container() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ct = ResourceId::new(Kind::Container, 0);
        assert_eq!(read_freeze(dir.path(), "web", ct), None);
        record_freeze(dir.path(), "web", ct, false).expect("record");
        let frozen = read_freeze(dir.path(), "web", ct).expect("recorded");
        assert!(!frozen.stopping);
        // Thawed to be stopped: the same freeze, now marked.
        let path = records_dir(dir.path()).join("web@container-0.freeze.json");
        let mut older = frozen.clone();
        older.frozen_at -= 60;
        std::fs::write(&path, serde_json::to_vec(&older).expect("json")).expect("write");
        record_freeze(dir.path(), "web", ct, true).expect("record");
        let stopping = read_freeze(dir.path(), "web", ct).expect("recorded");
        assert!(stopping.stopping);
        assert_eq!(stopping.frozen_at, older.frozen_at);
        // Another service's is its own; an app start record is not a freeze.
        assert_eq!(read_freeze(dir.path(), "web2", ct), None);
        assert!(
            AppStarts::read(dir.path(), &[("web", ct)])
                .started_at("web", ct)
                .is_none()
        );
        // Of another boot: nothing (a reboot thawed everything).
        let mut other = stopping.clone();
        other.boot_id = "another-boot".into();
        std::fs::write(&path, serde_json::to_vec(&other).expect("json")).expect("write");
        assert_eq!(read_freeze(dir.path(), "web", ct), None);
        // The container stopped or started: forgotten with the apps' records.
        record_freeze(dir.path(), "web", ct, false).expect("record");
        forget_service_apps(dir.path(), "web").expect("forget");
        assert_eq!(read_freeze(dir.path(), "web", ct), None);
        record_freeze(dir.path(), "web", ct, false).expect("record");
        forget_freeze(dir.path(), "web", ct).expect("forget");
        assert_eq!(read_freeze(dir.path(), "web", ct), None);
        forget_freeze(dir.path(), "web", ct).expect("forgetting none is fine");
    }

    #[test]
    fn an_adjust_record_lives_until_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(adjusts_pending(dir.path()).is_empty());
        record_adjust(dir.path(), "data").expect("record");
        record_adjust(dir.path(), "web").expect("record");
        assert_eq!(
            adjusts_pending(dir.path()).into_iter().collect::<Vec<_>>(),
            ["data", "web"]
        );
        forget_adjust(dir.path(), "data").expect("forget");
        forget_adjust(dir.path(), "data").expect("forgetting twice is fine");
        assert_eq!(
            adjusts_pending(dir.path()).into_iter().collect::<Vec<_>>(),
            ["web"]
        );
        assert!(record_adjust(dir.path(), "../x").is_err());
    }

    #[test]
    fn a_split_brain_is_recorded_once_listed_and_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(split_brains(dir.path()).is_empty());
        assert!(record_split_brain(dir.path(), "web", "deb2").expect("record"));
        let first = split_brains(dir.path());
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].res.as_str(), first[0].peer.as_str()),
            ("web", "deb2")
        );
        // Seen again: the first sighting stays.
        assert!(!record_split_brain(dir.path(), "web", "deb2").expect("record"));
        assert_eq!(split_brains(dir.path()), first);
        assert!(record_split_brain(dir.path(), "data", "tb").expect("record"));
        let peers: Vec<(String, String)> = split_brains(dir.path())
            .into_iter()
            .map(|r| (r.res, r.peer))
            .collect();
        assert_eq!(
            peers,
            [
                ("data".to_string(), "tb".to_string()),
                ("web".to_string(), "deb2".to_string())
            ]
        );
        // A name that cannot be a file is refused, never written elsewhere.
        assert!(record_split_brain(dir.path(), "web", "../x").is_err());
        assert!(record_split_brain(dir.path(), "web", ".hidden").is_err());
        // A record under another record's name is not believed.
        std::fs::copy(
            dir.path().join("split-brain/web@deb2.json"),
            dir.path().join("split-brain/web@deb3.json"),
        )
        .expect("copy");
        assert_eq!(split_brains(dir.path()).len(), 2);
        // A damaged record is replaced, not taken for one.
        std::fs::write(dir.path().join("split-brain/data@tb.json"), b"{").expect("write");
        assert!(record_split_brain(dir.path(), "data", "tb").expect("record"));
        assert_eq!(split_brains(dir.path()).len(), 2);
        assert!(forget_split_brain(dir.path(), "web", "deb2").expect("forget"));
        assert!(!forget_split_brain(dir.path(), "web", "deb2").expect("forget"));
        assert_eq!(split_brains(dir.path()).len(), 1);
    }

    #[test]
    fn the_longest_service_name_has_its_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = "s".repeat(converge_core::manifest::MAX_SERVICE_NAME);
        let rid = ResourceId::new(Kind::App, u32::MAX);
        record_app_start(dir.path(), &name, rid).expect("write");
        assert!(start_of(dir.path(), &name, rid).is_some());
        forget_app_start(dir.path(), &name, rid).expect("forget");
        assert_eq!(start_of(dir.path(), &name, rid), None);
    }

    /// Enough services that `AppStarts::read` lists the directory instead of reading each file.
    fn many(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("svc{i}")).collect()
    }

    fn read_all(state_dir: &Path, names: &[String], rid: ResourceId) -> AppStarts {
        let owners: Vec<(&str, ResourceId)> = names.iter().map(|n| (n.as_str(), rid)).collect();
        AppStarts::read(state_dir, &owners)
    }

    #[test]
    fn a_listing_sees_the_same_records_as_reading_each_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 0);
        let names = many(LIST_ABOVE * 2);
        for name in names.iter().step_by(2) {
            record_app_start(dir.path(), name, rid).expect("write");
        }
        let listed = read_all(dir.path(), &names, rid);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                listed.started_at(name, rid),
                start_of(dir.path(), name, rid),
                "{name}"
            );
            assert_eq!(listed.started_at(name, rid).is_some(), i % 2 == 0, "{name}");
        }
    }

    #[test]
    fn regression_records_changed_by_hand_are_seen_by_the_next_listing() {
        // The listing reuses what it read before; it must still see every change since.
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 0);
        let names = many(LIST_ABOVE * 2);
        for name in &names {
            record_app_start(dir.path(), name, rid).expect("write");
        }
        assert!(
            read_all(dir.path(), &names, rid)
                .started_at("svc0", rid)
                .is_some()
        );
        // Deleted, replaced by one of another boot, created.
        std::fs::remove_file(app_record_path(dir.path(), "svc0", rid)).expect("rm");
        let other_boot = br#"{"boot_id":"not-this-boot","started_at":1}"#;
        write_atomic(&app_record_path(dir.path(), "svc1", rid), other_boot).expect("write");
        let extra = ResourceId::new(Kind::App, 7);
        record_app_start(dir.path(), "svc2", extra).expect("write");
        let listed = read_all(dir.path(), &names, rid);
        assert!(listed.started_at("svc0", rid).is_none(), "deleted");
        assert!(listed.started_at("svc1", rid).is_none(), "another boot");
        assert!(listed.started_at("svc2", extra).is_some(), "created");
        assert!(listed.started_at("svc3", rid).is_some(), "unchanged");
    }

    #[test]
    fn what_was_read_is_not_read_again_while_the_file_is_the_same() {
        // Reused by inode: a record rewritten in place (never done by converge, which replaces
        // records by rename) keeps its old content for the listing. This is what makes a
        // resync cheap, whether the record was read by a listing or on its own.
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 0);
        let names = many(LIST_ABOVE * 2);
        for name in &names {
            record_app_start(dir.path(), name, rid).expect("write");
        }
        assert!(
            start_of(dir.path(), "svc0", rid).is_some(),
            "read on its own"
        );
        assert!(
            read_all(dir.path(), &names, rid)
                .started_at("svc1", rid)
                .is_some(),
            "listed"
        );
        for name in ["svc0", "svc1"] {
            let other_boot = br#"{"boot_id":"not-this-boot","started_at":1}"#;
            std::fs::write(app_record_path(dir.path(), name, rid), other_boot).expect("write");
        }
        let listed = read_all(dir.path(), &names, rid);
        assert!(
            listed.started_at("svc0", rid).is_some() && listed.started_at("svc1", rid).is_some()
        );
        // Read on its own, a record is always read afresh.
        assert_eq!(start_of(dir.path(), "svc0", rid), None);
    }

    #[test]
    fn regression_a_new_record_on_a_reused_inode_is_not_hidden_by_the_cache() {
        // ext4 gives a deleted file's inode number to the next new file. A record of another
        // boot, listed, then forgotten and written anew (a container start after a reboot)
        // once came back as "no record" from the next listing, and the app was started again.
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 0);
        let names = many(LIST_ABOVE * 2);
        for name in &names {
            record_app_start(dir.path(), name, rid).expect("write");
        }
        let other_boot = br#"{"boot_id":"not-this-boot","started_at":1}"#;
        write_atomic(&app_record_path(dir.path(), "svc0", rid), other_boot).expect("write");
        assert!(
            read_all(dir.path(), &names, rid)
                .started_at("svc0", rid)
                .is_none()
        );
        for _ in 0..3 {
            forget_service_apps(dir.path(), "svc0").expect("forget");
            record_app_start(dir.path(), "svc0", rid).expect("write");
            assert!(
                read_all(dir.path(), &names, rid)
                    .started_at("svc0", rid)
                    .is_some()
            );
            forget_app_start(dir.path(), "svc0", rid).expect("forget");
            assert!(
                read_all(dir.path(), &names, rid)
                    .started_at("svc0", rid)
                    .is_none()
            );
            record_app_start(dir.path(), "svc0", rid).expect("write");
            assert!(start_of(dir.path(), "svc0", rid).is_some());
            write_atomic(&app_record_path(dir.path(), "svc0", rid), other_boot).expect("write");
            assert!(
                read_all(dir.path(), &names, rid)
                    .started_at("svc0", rid)
                    .is_none()
            );
        }
    }

    /// A state directory with start records of more apps than are read one by one.
    fn recorded_many() -> (tempfile::TempDir, ResourceId, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 0);
        let names = many(LIST_ABOVE * 2);
        for name in &names {
            record_app_start(dir.path(), name, rid).expect("write");
        }
        (dir, rid, names)
    }

    #[test]
    fn a_listing_that_fails_is_not_taken_for_no_record() {
        let (dir, rid, names) = recorded_many();
        let owners: Vec<(&str, ResourceId)> = names.iter().map(|n| (n.as_str(), rid)).collect();
        // An I/O error (EIO, EMFILE…) while listing: each file is read instead.
        let failing = |_: &Path| Err(io::Error::from(rustix::io::Errno::IO));
        let starts = AppStarts::read_with(dir.path(), &owners, failing, SETTLE);
        assert!(names.iter().all(|n| starts.started_at(n, rid).is_some()));
        // No directory at all: no record.
        let missing = |_: &Path| Err(io::Error::from(io::ErrorKind::NotFound));
        let starts = AppStarts::read_with(dir.path(), &owners, missing, SETTLE);
        assert!(names.iter().all(|n| starts.started_at(n, rid).is_none()));
    }

    /// A resync of converged apps lists the records directory once while nothing changes in it,
    /// and again after any change, by converge or by hand.
    #[test]
    fn an_unchanged_records_directory_is_not_listed_again() {
        let (dir, rid, names) = recorded_many();
        let owners: Vec<(&str, ResourceId)> = names.iter().map(|n| (n.as_str(), rid)).collect();
        // Still for an hour, as far as its mtime says (its ctime is now: no settling here).
        let records = records_dir(dir.path());
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(&records)
            .and_then(|d| d.set_modified(hour_ago))
            .expect("set mtime");
        let listings = std::cell::Cell::new(0);
        let read = || {
            let list = |dir: &Path| {
                listings.set(listings.get() + 1);
                list_start_records(dir)
            };
            AppStarts::read_with(dir.path(), &owners, list, std::time::Duration::ZERO)
        };
        let first = read();
        assert!(names.iter().all(|n| first.started_at(n, rid).is_some()));
        let again = read();
        assert_eq!(listings.get(), 1, "listed once");
        assert_eq!(again.records, first.records);
        // By hand: a record removed. The directory's times change, and it is listed again.
        std::fs::remove_file(app_record_path(dir.path(), &names[0], rid)).expect("rm");
        let after = read();
        assert_eq!(listings.get(), 2, "listed again");
        assert!(after.started_at(&names[0], rid).is_none());
        // By converge: its own write drops the listing even within one tick.
        std::fs::File::open(&records)
            .and_then(|d| d.set_modified(hour_ago))
            .expect("set mtime");
        read();
        assert_eq!(listings.get(), 3);
        assert!(listed().contains_key(&records), "kept for the next look");
        record_app_start(dir.path(), &names[0], rid).expect("write");
        assert!(
            !listed().contains_key(&records),
            "dropped, whatever the directory's times say"
        );
        let written = read();
        assert_eq!(listings.get(), 4);
        assert!(written.started_at(&names[0], rid).is_some());
        forget_app_start(dir.path(), &names[0], rid).expect("forget");
        assert!(!listed().contains_key(&records));
    }

    #[test]
    fn records_of_the_former_layout_are_moved_not_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let legacy = dir.path().join("apps/web");
        std::fs::create_dir_all(&legacy).expect("mkdir");
        let record = format!(r#"{{"boot_id":"{}","started_at":7}}"#, boot_id());
        std::fs::write(legacy.join("app-0.json"), &record).expect("write");
        std::fs::write(legacy.join("app-0.scripts.json"), r#"["C10x"]"#).expect("write");
        std::fs::write(legacy.join(".app-1.json.tmp.42"), "half").expect("write");
        assert_eq!(migrate_legacy_records(dir.path()).expect("migrate"), 1);
        assert!(
            !legacy.join(".app-1.json.tmp.42").exists(),
            "half a write is dropped"
        );
        let rid = ResourceId::new(Kind::App, 0);
        assert_eq!(start_of(dir.path(), "web", rid), Some(7));
        assert!(
            !records_dir(dir.path())
                .join("web@app-0.scripts.json")
                .exists(),
            "a cached listing is not a record: dropped"
        );
        assert!(
            !dir.path().join("apps").exists(),
            "the former directory is gone"
        );
        // Nothing left to do the next time.
        assert_eq!(migrate_legacy_records(dir.path()).expect("migrate"), 0);
        // A file that is not converge's is left where it is, with its directory.
        std::fs::create_dir_all(&legacy).expect("mkdir");
        std::fs::write(legacy.join("notes.txt"), "mine").expect("write");
        assert_eq!(migrate_legacy_records(dir.path()).expect("migrate"), 0);
        assert!(legacy.join("notes.txt").exists());
    }

    #[test]
    fn caches_of_earlier_versions_are_removed_and_records_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 0);
        record_app_start(dir.path(), "svc", rid).expect("write");
        let listing = records_dir(dir.path()).join("svc@app-0.scripts.json");
        std::fs::write(&listing, r#"["C10foo"]"#).expect("write");
        let minors = dir.path().join("drbd-minors.json");
        std::fs::write(&minors, "{}").expect("write");
        migrate_legacy_records(dir.path()).expect("migrate");
        assert!(!listing.exists() && !minors.exists());
        assert!(start_of(dir.path(), "svc", rid).is_some());
    }

    #[test]
    fn regression_a_service_named_dot_dot_cannot_reach_outside_the_records_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let precious = dir.path().join("converge.lock");
        std::fs::write(&precious, "pid 1").expect("write");
        let rid = ResourceId::new(Kind::App, 0);
        record_app_start(dir.path(), "svc", rid).expect("write");
        for name in ["..", ".", "../x", "", "svc@app-0", "a/b"] {
            let path = app_record_path(dir.path(), name, rid);
            assert_eq!(
                path.parent(),
                Some(records_dir(dir.path()).as_path()),
                "{name:?}"
            );
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
            assert!(
                !file.unwrap_or_default().starts_with('.'),
                "{name:?} → {path:?}"
            );
            forget_service_apps(dir.path(), name).expect("forget");
        }
        assert!(precious.exists(), "state_dir survived");
        assert!(
            start_of(dir.path(), "svc", rid).is_some(),
            "svc's record survived"
        );
    }

    #[test]
    fn a_record_from_another_boot_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 0);
        let path = app_record_path(dir.path(), "svc", rid);
        write_atomic(&path, br#"{"boot_id":"not-this-boot","started_at":1}"#).expect("write");
        assert_eq!(start_of(dir.path(), "svc", rid), None);
    }
}
