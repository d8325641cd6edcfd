//! converge's own state on disk, under `state_dir`: what it cannot observe on the node.
//!
//! Today that is the start of apps that have no check: an app with no way to ask "are you
//! running?" is taken as up from a successful start until it is stopped, its container starts
//! or stops, or the node reboots (the record names the boot it belongs to).
//!
//! Records are written atomically (temp file + rename), so a crash leaves the old record or the
//! new one, never half of one.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::ResourceId;

/// Where the kernel publishes the current boot's id.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStartRecord {
    /// The node's boot id when the app started.
    pub boot_id: String,
    /// When, in seconds since the epoch.
    pub started_at: u64,
}

/// This boot's id. Read once per process: it cannot change while the process runs, and the
/// daemon asks for it for every app on every resync.
pub fn boot_id() -> String {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            std::fs::read_to_string(BOOT_ID_PATH)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        })
        .clone()
}

/// The directory of a service's records. Manifests refuse names starting with `.`; this also
/// refuses them, so that no name can ever make it point outside `state_dir/apps` (a `..` here
/// once meant `forget_service_apps` removing the whole state directory).
fn app_dir(state_dir: &Path, service: &str) -> PathBuf {
    let safe = !service.is_empty() && !service.starts_with('.') && !service.contains('/');
    let name = if safe {
        service.to_string()
    } else {
        format!("_invalid_{}", service.replace(['/', '.'], "_"))
    };
    state_dir.join("apps").join(name)
}

fn app_record_path(state_dir: &Path, service: &str, rid: ResourceId) -> PathBuf {
    app_dir(state_dir, service).join(format!("{}.json", rid.to_string().replace('#', "-")))
}

/// Writes `contents` to `path` atomically, creating the directory.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no directory", path.display())))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

pub fn record_app_start(state_dir: &Path, service: &str, rid: ResourceId) -> io::Result<()> {
    let record = AppStartRecord {
        boot_id: boot_id(),
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
    write_atomic(&app_record_path(state_dir, service, rid), &json)
}

/// The start record of an app, when one exists and belongs to this boot.
pub fn app_start(state_dir: &Path, service: &str, rid: ResourceId) -> Option<AppStartRecord> {
    let text = std::fs::read(app_record_path(state_dir, service, rid)).ok()?;
    let record: AppStartRecord = serde_json::from_slice(&text).ok()?;
    (record.boot_id == boot_id()).then_some(record)
}

pub fn forget_app_start(state_dir: &Path, service: &str, rid: ResourceId) -> io::Result<()> {
    match std::fs::remove_file(app_record_path(state_dir, service, rid)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn script_names_path(state_dir: &Path, service: &str, rid: ResourceId) -> PathBuf {
    app_dir(state_dir, service).join(format!(
        "{}.scripts.json",
        rid.to_string().replace('#', "-")
    ))
}

/// The cached listing of an app's scripts directory inside its container.
pub fn script_names(state_dir: &Path, service: &str, rid: ResourceId) -> Option<Vec<String>> {
    let text = std::fs::read(script_names_path(state_dir, service, rid)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub fn save_script_names(
    state_dir: &Path,
    service: &str,
    rid: ResourceId,
    names: &[String],
) -> io::Result<()> {
    let json = serde_json::to_vec(names).map_err(io::Error::other)?;
    write_atomic(&script_names_path(state_dir, service, rid), &json)
}

/// Forgets every app start of a service, and the cached listings of its scripts: its container
/// started or stopped, so whatever ran inside is gone (and its files may have changed).
pub fn forget_service_apps(state_dir: &Path, service: &str) -> io::Result<()> {
    match std::fs::remove_dir_all(app_dir(state_dir, service)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where drbdadm reads the DRBD configuration: the names → minors map depends on these files.
pub const DRBD_CONFIG_FILES: [&str; 2] = ["/etc/drbd.conf", "/etc/drbd.d"];

/// DRBD 8.x resource names → minors (per volume), and the configuration they were read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinorMap {
    pub stamp: String,
    pub minors: std::collections::BTreeMap<String, Vec<u32>>,
}

/// A fingerprint of the DRBD configuration: path, size and mtime of /etc/drbd.conf and of
/// every file in /etc/drbd.d. Any edit changes it.
pub fn drbd_config_stamp() -> String {
    let mut parts = Vec::new();
    let mut add = |path: &Path| {
        if let Ok(meta) = std::fs::metadata(path) {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            parts.push(format!(
                "{}:{}:{}",
                path.display(),
                meta.len(),
                mtime.map_or(0, |d| d.as_nanos())
            ));
        }
    };
    for root in DRBD_CONFIG_FILES {
        let root = Path::new(root);
        add(root);
        if let Ok(entries) = std::fs::read_dir(root) {
            let mut files: Vec<PathBuf> =
                entries.filter_map(Result::ok).map(|e| e.path()).collect();
            files.sort();
            files.iter().for_each(|f| add(f));
        }
    }
    parts.join("|")
}

fn minor_map_path(state_dir: &Path) -> PathBuf {
    state_dir.join("drbd-minors.json")
}

pub fn load_minor_map(state_dir: &Path) -> Option<MinorMap> {
    let text = std::fs::read(minor_map_path(state_dir)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub fn save_minor_map(state_dir: &Path, map: &MinorMap) -> io::Result<()> {
    let json = serde_json::to_vec(map).map_err(io::Error::other)?;
    write_atomic(&minor_map_path(state_dir), &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Kind;

    #[test]
    fn records_round_trip_and_are_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 1);
        assert_eq!(app_start(dir.path(), "svc", rid), None);
        record_app_start(dir.path(), "svc", rid).expect("write");
        let record = app_start(dir.path(), "svc", rid).expect("recorded");
        assert_eq!(record.boot_id, boot_id());
        forget_service_apps(dir.path(), "svc").expect("forget");
        assert_eq!(app_start(dir.path(), "svc", rid), None);
        forget_app_start(dir.path(), "svc", rid).expect("forgetting twice is fine");
    }

    #[test]
    fn script_listings_are_cached_until_the_container_starts_or_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 0);
        assert_eq!(script_names(dir.path(), "svc", rid), None);
        save_script_names(dir.path(), "svc", rid, &["C10foo".into(), "S10foo".into()])
            .expect("save");
        assert_eq!(
            script_names(dir.path(), "svc", rid),
            Some(vec!["C10foo".into(), "S10foo".into()])
        );
        forget_service_apps(dir.path(), "svc").expect("forget");
        assert_eq!(script_names(dir.path(), "svc", rid), None);
    }

    #[test]
    fn minor_map_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_minor_map(dir.path()), None);
        let map = MinorMap {
            stamp: drbd_config_stamp(),
            minors: [("data".to_string(), vec![0, 1])].into_iter().collect(),
        };
        save_minor_map(dir.path(), &map).expect("save");
        assert_eq!(load_minor_map(dir.path()), Some(map));
        // The stamp is stable while nothing changes.
        assert_eq!(drbd_config_stamp(), drbd_config_stamp());
    }

    #[test]
    fn regression_a_service_named_dot_dot_cannot_reach_outside_the_apps_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let precious = dir.path().join("converge.lock");
        std::fs::write(&precious, "pid 1").expect("write");
        for name in ["..", ".", "../x", ""] {
            let path = app_dir(dir.path(), name);
            assert!(
                path.starts_with(dir.path().join("apps")) && path != dir.path().join("apps"),
                "{name:?} → {path:?}"
            );
            forget_service_apps(dir.path(), name).expect("forget");
        }
        assert!(precious.exists(), "state_dir survived");
    }

    #[test]
    fn a_record_from_another_boot_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rid = ResourceId::new(Kind::App, 0);
        let path = app_record_path(dir.path(), "svc", rid);
        write_atomic(&path, br#"{"boot_id":"not-this-boot","started_at":1}"#).expect("write");
        assert_eq!(app_start(dir.path(), "svc", rid), None);
    }
}
