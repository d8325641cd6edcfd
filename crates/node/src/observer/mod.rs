//! The I/O half of observation: reads the /proc files and runs the listing programs, in
//! batches, then hands the text to the pure parsers.
//!
//! Observation writes nothing: what it caches (DRBD 8.x minors, script listings inside
//! containers) lives in the [`Observer`], in memory, for as long as its owner (the daemon, or
//! one command) runs. The act layer looks at the node only through the [`Observer`]'s probes
//! ([`probe`]).
//!
//! Cost of one pass over N services: one read of /proc/drbd and of mountinfo, one
//! `drbdsetup status --json` (DRBD 9), one `vzlist` and one `lxc-ls` — each only when some
//! service needs it — a `stat` per device, plus the users' own app checks (run in parallel, each
//! with its timeout). DRBD 8.4 has no name in /proc/drbd, so there `drbdadm sh-minor` runs once
//! per DRBD resource.

pub mod drbd_file;
pub mod probe;
pub mod stream_view;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::exec::{self, ExecError, Output};
use crate::{secure, state};
use converge_core::command::{program_name, scripts_for};
use converge_core::config::Config;
use converge_core::manifest::{
    AppCommands, AppSpec, AppStatus, ContainerKind, OnQuorumLoss, ResourceId, Service, Spec,
};
use converge_core::observe::SplitBrain;
use converge_core::observe::{
    AppObservation, ContainerState, DevNum, DrbdResources, Mount, NodeState, Observed,
    QuorumFreeze, aggregate_apps, drbd_conf, drbdsetup_status, lxc, mountinfo, proc_drbd, vz,
};

/// Listing programs answer in well under a second; this only bounds a hung one.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a listing program may print, all of which is parsed: `drbdsetup status --json` prints
/// about 2.5 KB per resource with two volumes and two peers (3 MB for 1,000 resources);
/// `vzlist`, `lxc-ls` and a scripts directory's `ls` some 40 bytes a line. More is refused
/// (the source is unavailable), never cut.
pub(crate) const LISTING_MAX: usize = 16 * 1024 * 1024;

/// The mount table: a line is 100 to 200 bytes, up to a few KB for an overlay with many
/// layers; 16 MiB holds 10,000 mounts of 1.6 KB each.
pub const MOUNTINFO_MAX: u64 = 16 * 1024 * 1024;

/// /proc/drbd: DRBD 8.4 writes about 350 bytes per minor (0.35 MB for 1,000 minors), DRBD 9
/// only its version lines.
pub const PROC_DRBD_MAX: u64 = 4 * 1024 * 1024;

/// Names in a scripts directory read on the host: a directory holding more is not an app's
/// scripts directory, and is not listed (nothing is run from it, as from an unreadable one).
const MAX_SCRIPT_ENTRIES: usize = 10_000;

/// Looks at the node: one batched pass for the planner ([`Observer::observe`]), and the
/// probes the drivers use right before acting. Holds what it learnt that is dear to learn
/// again, in memory only.
pub struct Observer {
    config: Arc<Config>,
    cache: Mutex<Cache>,
    /// What drbdadm said of resource files, by contents.
    res_checks: Mutex<drbd_file::CheckCache>,
    /// Ask `drbdadm -d adjust` for the drift of each resource whose file converge manages, at
    /// every pass.
    drift: bool,
    /// The drift last asked for, by resource, given to the passes that do not ask (see
    /// [`Observer::observe_with_drift`]); a resource converge applies its file to is dropped.
    drift_seen: Mutex<BTreeMap<String, Observed<Vec<String>>>>,
    /// What DRBD's event stream said of StandAlone connections, when the daemon runs one.
    stream: Option<Arc<stream_view::StandAloneView>>,
}

#[derive(Debug, Default)]
struct Cache {
    /// DRBD 8.x: resource names → minors, for one DRBD configuration.
    minors: Option<MinorMap>,
    /// The resources the DRBD configuration has this node in (`drbdadm sh-resources`), and the
    /// configuration's stamp ([`drbd_config_stamp`]) they were read from.
    configured: Option<(String, BTreeSet<String>)>,
    /// Names in the scripts directory of an app inside a container, by (service, app): listing
    /// it costs a spawn through the container tool. Dropped whenever converge starts or stops
    /// that container.
    scripts: HashMap<(String, ResourceId), Vec<String>>,
}

/// DRBD 8.x resource names → minors (per volume), and the configuration they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MinorMap {
    stamp: String,
    minors: BTreeMap<String, Vec<u32>>,
}

impl Observer {
    pub fn new(config: Arc<Config>) -> Observer {
        Observer {
            config,
            cache: Mutex::default(),
            res_checks: Mutex::default(),
            drift: false,
            drift_seen: Mutex::default(),
            stream: None,
        }
    }

    /// As [`Observer::new`], for a daemon whose events2 reader keeps `view`: a StandAlone
    /// connection counts as one only once the stream said so (see [`stream_view`]).
    pub fn with_stream(config: Arc<Config>, view: Arc<stream_view::StandAloneView>) -> Observer {
        Observer {
            stream: Some(view),
            ..Observer::new(config)
        }
    }

    /// What the daemon's event stream said of StandAlone connections, when it runs one.
    pub fn stream_view(&self) -> Option<&stream_view::StandAloneView> {
        self.stream.as_deref()
    }

    /// An observer that also asks, at each pass, what `drbdadm -d adjust` would change in each
    /// resource up here whose file converge manages: for `converge status` and `converge plan`,
    /// which show the drift. One drbdadm per such resource and pass, so the daemon does not.
    pub fn with_drift(mut self) -> Observer {
        self.drift = true;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache holds plain data that no panic can leave half-written.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Observes everything `services` depend on, in one pass.
    pub async fn observe(&self, services: &[Service]) -> NodeState {
        observe(self, services, self.drift).await
    }

    /// As [`Observer::observe`], asking for the drift too: the daemon's look at everything
    /// (at start, each resync, SIGHUP). What it finds is given to the passes in between.
    pub async fn observe_with_drift(&self, services: &[Service]) -> NodeState {
        observe(self, services, true).await
    }

    /// Forgets the drift seen of `res`: converge just applied its file (`up`, `adjust`), or
    /// installed another.
    pub fn forget_drift(&self, res: &str) {
        self.drift_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(res);
    }
}

async fn observe(observer: &Observer, services: &[Service], drift: bool) -> NodeState {
    let config = observer.config();
    let enabled = || {
        services
            .iter()
            .flat_map(|s| s.resources.iter().filter(|r| !r.disabled))
    };
    let drbd_names: BTreeSet<&str> = enabled()
        .filter_map(|r| match &r.spec {
            Spec::Drbd(d) => Some(d.res.as_str()),
            _ => None,
        })
        .collect();
    // Containers are observed even when disabled: their apps run inside them.
    let wants = |vz_kind: bool| {
        services.iter().flat_map(|s| &s.resources).any(|r| {
            matches!(&r.spec, Spec::Container(c) if matches!(c.kind, ContainerKind::Vz(_)) == vz_kind)
        })
    };

    let drbd = if drbd_names.is_empty() {
        Observed::Ok(BTreeMap::new())
    } else {
        observe_drbd(observer, &drbd_names).await
    };
    // Only a node that stands by for a service asks which resources it is configured for; a
    // listed node of a service that fails over may stand by too, as DRBD shows.
    let stands_by = services.iter().any(|s| {
        (s.stands_by_here(&config.node) || s.failover().is_some())
            && s.resources
                .iter()
                .any(|r| !r.disabled && matches!(r.spec, Spec::Drbd(_)))
    });
    // Whether quorum is enforced, for services that fail over, where their resource is up.
    let failover_drbd: BTreeSet<&str> = services
        .iter()
        .filter(|s| s.failover().is_some())
        .flat_map(|s| s.resources.iter().filter(|r| !r.disabled))
        .filter_map(|r| r.spec.as_drbd().map(|d| d.res.as_str()))
        .filter(|res| matches!(&drbd, Observed::Ok(up) if up.contains_key(*res)))
        .collect();
    let drbd_options = observe_drbd_options(observer, &failover_drbd).await;
    let drbd_configured = if stands_by {
        Some(observe_drbd_configured(observer).await)
    } else {
        None
    };
    let mounts = read_mounts(&config.mountinfo);
    let vz = if wants(true) {
        observe_vz(config).await
    } else {
        Observed::Ok(BTreeMap::new())
    };
    let lxc = if wants(false) {
        observe_lxc(config).await
    } else {
        Observed::Ok(BTreeMap::new())
    };

    let mut device_paths: BTreeSet<PathBuf> = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    for resource in enabled() {
        if let Spec::Fs(fs) = &resource.spec {
            device_paths.insert(fs.dev.clone());
            if fs.mnt.is_dir() {
                dirs.insert(fs.mnt.clone());
            }
        }
    }
    if let Observed::Ok(resources) = &drbd {
        for device in resources.values().flat_map(|r| &r.devices) {
            device_paths.insert(converge_core::observe::drbd::device_path(device.minor));
        }
    }
    let devices = device_paths
        .into_iter()
        .filter_map(|path| block_device_number(&path).map(|n| (path, n)))
        .collect();

    let drbd_files = drbd_file::observe(config, services, &observer.res_checks).await;
    let drbd_drift = if drift {
        let fresh = observe_drift(observer, &drbd, &drbd_files).await;
        let mut seen = observer
            .drift_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for res in drbd_files.keys() {
            match fresh.get(res) {
                Some(lines) => seen.insert(res.clone(), lines.clone()),
                None => seen.remove(res),
            };
        }
        fresh
    } else {
        let seen = observer
            .drift_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drbd_files
            .keys()
            .filter(|res| matches!(&drbd, Observed::Ok(up) if up.contains_key(*res)))
            .filter_map(|res| Some((res.clone(), seen.get(res)?.clone())))
            .collect()
    };
    // The records, and what the stream said: a StandAlone the view shows comes with its
    // split brain in the same copy, recorded or not.
    let mut split_brains = split_brains(config);
    let standalone_reported = observer
        .stream
        .as_ref()
        .and_then(|view| view.snapshot())
        .map(|seen| {
            with_stream_news(&mut split_brains, seen.split_brains);
            seen.standalone
        });
    let mut node = NodeState {
        node: config.node.clone(),
        drbd_files,
        drbd_drift,
        drbd_adjust: state::adjusts_pending(&config.state_dir),
        drbd,
        mounts,
        devices,
        dirs,
        vz,
        lxc,
        apps: BTreeMap::new(),
        scripts: BTreeMap::new(),
        drbd_configured,
        drbd_options,
        quorum_frozen: quorum_frozen(config, services),
        split_brains,
        standalone_reported,
    };
    let (apps, scripts) = observe_apps(observer, services, &node).await;
    node.apps = apps;
    node.scripts = scripts;
    node
}

/// What `drbdadm -d adjust RES` would run for each resource up here whose file converge
/// manages: nothing when the running resource matches its installed file.
async fn observe_drift(
    observer: &Observer,
    drbd: &Observed<DrbdResources>,
    files: &BTreeMap<String, converge_core::observe::DrbdFile>,
) -> BTreeMap<String, Observed<Vec<String>>> {
    let Observed::Ok(up) = drbd else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for res in files.keys().filter(|res| up.contains_key(*res)) {
        let argv = converge_core::command::adjust_dry_run_argv(&observer.config().commands, res);
        let observed = match list(argv, "install drbd-utils or set commands.drbdadm").await {
            Ok(out) => Observed::Ok(
                out.stdout
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.contains("modinfo"))
                    .map(str::to_string)
                    .collect(),
            ),
            Err(why) => Observed::Unavailable(why),
        };
        out.insert(res.clone(), observed);
    }
    out
}

/// The split brains DRBD reported, as converge recorded them (`state_dir/split-brain`), by
/// resource.
fn split_brains(config: &Config) -> BTreeMap<String, Vec<SplitBrain>> {
    let mut by_res: BTreeMap<String, Vec<SplitBrain>> = BTreeMap::new();
    for record in state::split_brains(&config.state_dir) {
        by_res.entry(record.res).or_default().push(SplitBrain {
            peer: record.peer,
            since: record.since,
        });
    }
    by_res
}

/// Adds to the recorded split brains those the event stream reported that have no record (it
/// could not be written); a record, the first word, keeps its time.
fn with_stream_news(
    recorded: &mut BTreeMap<String, Vec<SplitBrain>>,
    news: BTreeMap<String, Vec<SplitBrain>>,
) {
    for (res, splits) in news {
        let known = recorded.entry(res).or_default();
        for split in splits {
            if !known.iter().any(|k| k.peer == split.peer) {
                known.push(split);
            }
        }
    }
}

/// The services whose container converge froze on a quorum loss, from its records of this boot
/// (looked for only where the manifest says `on_quorum_loss: freeze`).
fn quorum_frozen(config: &Config, services: &[Service]) -> BTreeMap<String, QuorumFreeze> {
    services
        .iter()
        .filter(|s| {
            s.failover()
                .is_some_and(|f| f.on_quorum_loss == OnQuorumLoss::Freeze)
        })
        .filter_map(|s| {
            let container = s
                .resources
                .iter()
                .find(|r| !r.disabled && r.spec.as_container().is_some())?;
            let record = state::read_freeze(&config.state_dir, &s.name, container.id)?;
            Some((
                s.name.clone(),
                QuorumFreeze {
                    stopping: record.stopping,
                },
            ))
        })
        .collect()
}

/// The device number of a block device; `None` when the path is missing or not a block device
/// (a DRBD device that is not up yet, for instance).
pub fn block_device_number(path: &Path) -> Option<DevNum> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some(DevNum {
        major: rustix::fs::major(rdev),
        minor: rustix::fs::minor(rdev),
    })
}

fn read_mounts(path: &Path) -> Observed<Vec<Mount>> {
    match secure::read_input_text(path, MOUNTINFO_MAX) {
        Ok(text) => match mountinfo::parse(&text) {
            Ok(mounts) => Observed::Ok(mounts),
            Err(e) => Observed::Unavailable(format!("{}: {e}", path.display())),
        },
        Err(e) => Observed::Unavailable(e.to_string()),
    }
}

/// Runs a listing program; a missing program or a failure becomes the one-line reason.
async fn list(argv: Vec<String>, install_hint: &str) -> Result<Output, String> {
    match exec::run_parsed(&argv, LIST_TIMEOUT, LISTING_MAX).await {
        Ok(out) if out.success() => Ok(out),
        Ok(out) => Err(format!(
            "{} {}: {}",
            argv.join(" "),
            out.describe_end(),
            out.last_line()
        )),
        Err(ExecError::NotFound { program }) => {
            Err(format!("{program} not found ({install_hint})"))
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn observe_drbd(observer: &Observer, names: &BTreeSet<&str>) -> Observed<DrbdResources> {
    let config = observer.config();
    let path = &config.proc_drbd;
    let text = match secure::read_input_text(path, PROC_DRBD_MAX) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => {
            return Observed::Unavailable(format!(
                "{} does not exist: DRBD is not loaded on this node (no drbd kernel module)",
                path.display()
            ));
        }
        Err(e) => return Observed::Unavailable(e.to_string()),
    };
    let proc = match proc_drbd::parse(&text) {
        Ok(proc) => proc,
        Err(e) => return Observed::Unavailable(e.to_string()),
    };
    let hint = "install drbd-utils or set commands.drbdsetup";
    if proc.is_drbd9() {
        let argv = vec![
            config.commands.drbdsetup.clone(),
            "status".into(),
            "--json".into(),
        ];
        return match list(argv, hint).await {
            Ok(out) => match drbdsetup_status::parse_json(&out.stdout) {
                Ok(resources) => Observed::Ok(resources),
                Err(e) => Observed::Unavailable(format!("drbdsetup status --json: {e}")),
            },
            Err(why) => Observed::Unavailable(why),
        };
    }
    // DRBD 8.x: /proc/drbd is keyed by minor; drbdadm says which minors each resource uses.
    // That only changes with the DRBD configuration, so it is asked once per configuration.
    let stamp = drbd_config_stamp(&observer.config().drbd_conf_dir);
    let known = observer.cache().minors.take();
    let mut cache = known
        .filter(|c| c.stamp == stamp)
        .unwrap_or_else(|| MinorMap {
            stamp: stamp.clone(),
            minors: BTreeMap::new(),
        });
    for name in names {
        if cache.minors.contains_key(*name) {
            continue;
        }
        let argv = config.commands.drbdadm_argv(&["sh-minor", name]);
        let out = match exec::run_parsed(&argv, LIST_TIMEOUT, LISTING_MAX).await {
            Ok(out) => out,
            Err(ExecError::NotFound { program }) => {
                return Observed::Unavailable(format!(
                    "{program} not found (install drbd-utils or set commands.drbdadm)"
                ));
            }
            Err(e) => return Observed::Unavailable(e.to_string()),
        };
        // Not defined in the DRBD configuration: no minors; `drbdadm up` will say why.
        let minors = if out.success() {
            out.stdout
                .split_whitespace()
                .filter_map(|m| m.parse().ok())
                .collect()
        } else {
            Vec::new()
        };
        cache.minors.insert((*name).to_string(), minors);
    }
    let mut resources = BTreeMap::new();
    for name in names {
        let minors = cache
            .minors
            .get(*name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(resource) = proc.resource(name, minors) {
            resources.insert((*name).to_string(), resource);
        }
    }
    observer.cache().minors = Some(cache);
    Observed::Ok(resources)
}

/// The DRBD resources whose configuration has a section for this host: `drbdadm
/// sh-resources`, asked once per DRBD configuration (it only changes with it).
async fn observe_drbd_configured(observer: &Observer) -> Observed<BTreeSet<String>> {
    let stamp = drbd_config_stamp(&observer.config().drbd_conf_dir);
    if let Some((known, names)) = &observer.cache().configured
        && *known == stamp
    {
        return Observed::Ok(names.clone());
    }
    let argv = observer.config().commands.drbdadm_argv(&["sh-resources"]);
    match list(argv, "install drbd-utils or set commands.drbdadm").await {
        Ok(out) => {
            let names: BTreeSet<String> =
                out.stdout.split_whitespace().map(str::to_string).collect();
            observer.cache().configured = Some((stamp, names.clone()));
            Observed::Ok(names)
        }
        Err(why) => Observed::Unavailable(why),
    }
}

/// The running options of each resource in `names` (`drbdsetup show RES`). Asked at every
/// observation: `drbdadm adjust` changes them without an event.
async fn observe_drbd_options(
    observer: &Observer,
    names: &BTreeSet<&str>,
) -> BTreeMap<String, Observed<drbd_conf::ResourceOptions>> {
    let mut out = BTreeMap::new();
    for &res in names {
        let argv = vec![
            observer.config().commands.drbdsetup.clone(),
            "show".into(),
            res.to_string(),
        ];
        let observed =
            match list(argv.clone(), "install drbd-utils or set commands.drbdsetup").await {
                Ok(output) => match drbd_conf::parse(&output.stdout) {
                    Ok(mut all) => match all.remove(res) {
                        Some(options) => Observed::Ok(options),
                        None => Observed::Unavailable(format!(
                            "{} does not show resource {res}",
                            argv.join(" ")
                        )),
                    },
                    Err(e) => Observed::Unavailable(format!("{}: {e}", argv.join(" "))),
                },
                Err(why) => Observed::Unavailable(why),
            };
        out.insert(res.to_string(), observed);
    }
    out
}

/// Resource `res` as the DRBD configuration files define it for this node (`drbdadm dump
/// RES`): its hosts and options, what `converge validate` checks a failover service against.
/// With `file` (the resource file a manifest names, and the installed one it replaces), as it
/// will be once that file is installed.
pub async fn drbd_configured_resource(
    config: &converge_core::config::Config,
    res: &str,
    file: Option<(&Path, &Path)>,
) -> Result<drbd_conf::ResourceConfig, String> {
    let argv = match file {
        Some((file, installed)) => {
            converge_core::command::res_file_check_argv(&config.commands, file, installed, res)
        }
        None => config.commands.drbdadm_argv(&["dump", res]),
    };
    let output = list(argv.clone(), "install drbd-utils or set commands.drbdadm").await?;
    let mut all =
        drbd_conf::parse_dump(&output.stdout).map_err(|e| format!("{}: {e}", argv.join(" ")))?;
    all.remove(res)
        .ok_or_else(|| format!("{} does not show resource {res}", argv.join(" ")))
}

/// Where drbdadm reads the DRBD configuration: the names → minors map depends on these files,
/// and on those of the configured `drbd_conf_dir`.
const DRBD_CONFIG_FILES: [&str; 2] = ["/etc/drbd.conf", "/etc/drbd.d"];

/// A fingerprint of the DRBD configuration: path, size and mtime of /etc/drbd.conf and of
/// every file in /etc/drbd.d and in `conf_dir`. Any edit changes it.
pub(crate) fn drbd_config_stamp(conf_dir: &Path) -> String {
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
    for root in DRBD_CONFIG_FILES.iter().map(Path::new).chain([conf_dir]) {
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

async fn observe_vz(config: &Config) -> Observed<BTreeMap<String, ContainerState>> {
    let argv = vec![
        config.commands.vzlist.clone(),
        "-a".into(),
        "-H".into(),
        "-o".into(),
        "ctid,status".into(),
    ];
    match list(argv, "OpenVZ is not installed; or set commands.vzlist").await {
        Ok(out) => match vz::parse_vzlist(&out.stdout) {
            Ok(map) => Observed::Ok(map),
            Err(e) => Observed::Unavailable(format!("vzlist: {e}")),
        },
        Err(why) => Observed::Unavailable(why),
    }
}

async fn observe_lxc(config: &Config) -> Observed<BTreeMap<String, ContainerState>> {
    let argv = vec![
        config.commands.lxc_ls.clone(),
        "--fancy".into(),
        "--fancy-format".into(),
        "name,state".into(),
    ];
    match list(argv, "install lxc, or set commands.lxc-ls").await {
        Ok(out) => match lxc::parse_ls_fancy(&out.stdout) {
            Ok(map) => Observed::Ok(map),
            Err(e) => Observed::Unavailable(e.to_string()),
        },
        Err(why) => Observed::Unavailable(why),
    }
}

/// One app resource's checks, ready to run without borrowing the services.
struct CheckJob {
    service: String,
    rid: ResourceId,
    spec: AppSpec,
    /// (label for the detail line, argv)
    checks: Vec<(String, Vec<String>)>,
}

/// Per service, per app: what its checks said, and the names in its scripts directory.
type AppsSeen = (
    BTreeMap<String, BTreeMap<ResourceId, AppObservation>>,
    BTreeMap<String, BTreeMap<ResourceId, Vec<String>>>,
);

/// Whether DRBD suspends the I/O of one of the service's resources.
fn drbd_suspended(service: &Service, node: &NodeState) -> bool {
    let Observed::Ok(all) = &node.drbd else {
        return false;
    };
    service
        .resources
        .iter()
        .filter(|r| !r.disabled)
        .filter_map(|r| r.spec.as_drbd())
        .any(|d| all.get(&d.res).is_some_and(|r| r.suspended))
}

/// Lists the scripts directories and runs the checks of every app whose host (node or
/// container) is running.
async fn observe_apps(observer: &Observer, services: &[Service], node: &NodeState) -> AppsSeen {
    let config = observer.config();
    let mut jobs = JoinSet::new();
    let mut apps: BTreeMap<String, BTreeMap<ResourceId, AppObservation>> = BTreeMap::new();
    let mut listed: BTreeMap<String, BTreeMap<ResourceId, Vec<String>>> = BTreeMap::new();
    let mut unchecked: Vec<(&str, ResourceId)> = Vec::new();
    for service in services {
        let container = service.container().map(|c| &c.kind);
        if let Some(kind) = container {
            let observed = match kind {
                ContainerKind::Vz(_) => &node.vz,
                ContainerKind::Lxc(_) => &node.lxc,
            };
            if observed.ok().and_then(|m| m.get(kind.id())) != Some(&ContainerState::Running) {
                continue;
            }
        }
        // A check that reads the service's filesystem would hang on I/O DRBD suspends (no
        // quorum under `on-no-quorum suspend-io`), and a process blocked there cannot even be
        // killed at its timeout: its apps are not looked at until DRBD resumes the I/O.
        if drbd_suspended(service, node) {
            continue;
        }
        for resource in service.resources.iter().filter(|r| !r.disabled) {
            let Spec::App(spec) = &resource.spec else {
                continue;
            };
            let checks = match &spec.commands {
                AppCommands::Argv {
                    check: Some(argv), ..
                } => vec![(
                    program_name(argv),
                    config.commands.in_container(container, argv.clone()),
                )],
                AppCommands::Argv { check: None, .. } => Vec::new(),
                AppCommands::Scripts(dir) => {
                    let names = observer
                        .script_names(&service.name, resource.id, dir, container, Listing::Cached)
                        .await;
                    let checks = scripts_for(&names, 'C')
                        .into_iter()
                        .map(|name| {
                            let argv = vec![dir.join(name).display().to_string(), "status".into()];
                            (
                                name.to_string(),
                                config.commands.in_container(container, argv),
                            )
                        })
                        .collect();
                    listed
                        .entry(service.name.clone())
                        .or_default()
                        .insert(resource.id, names);
                    checks
                }
            };
            if checks.is_empty() {
                // Nothing to ask: a start converge recorded (this boot, container not
                // restarted since) is the only knowledge there is.
                unchecked.push((service.name.as_str(), resource.id));
                continue;
            }
            let job = CheckJob {
                service: service.name.clone(),
                rid: resource.id,
                spec: spec.clone(),
                checks,
            };
            jobs.spawn(run_checks(job));
        }
    }
    let starts = state::AppStarts::read(&config.state_dir, &unchecked);
    for (service, rid) in unchecked {
        if let Some(started_at) = starts.started_at(service, rid) {
            let started = std::time::UNIX_EPOCH + Duration::from_secs(started_at);
            let detail = format!(
                "started {} (no check; recorded by converge)",
                humantime::format_rfc3339_seconds(started)
            );
            let observation = AppObservation {
                status: AppStatus::Up,
                detail,
            };
            apps.entry(service.to_string())
                .or_default()
                .insert(rid, observation);
        }
    }
    while let Some(done) = jobs.join_next().await {
        // A check task cannot panic short of a bug in converge; then the app stays unobserved.
        if let Ok((service, rid, observation)) = done {
            apps.entry(service).or_default().insert(rid, observation);
        }
    }
    (apps, listed)
}

/// Which script listing a caller wants: a cached one is fine for observing, not for acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// The cached listing of a container's scripts directory, when there is one.
    Cached,
    /// Read the directory now (and refresh the cache).
    Fresh,
}

impl Observer {
    /// The names in an app's scripts directory `dir`, read on the host, or inside the
    /// container (where it lives) when the service has one. Reading inside a container costs a
    /// spawn (`ls` through `vzctl exec2` or `lxc-attach`), so that listing is kept in memory:
    /// observation uses it; starting and stopping apps read afresh. An unreadable directory
    /// lists nothing (and so runs nothing).
    pub(super) async fn script_names(
        &self,
        service: &str,
        rid: ResourceId,
        dir: &Path,
        container: Option<&ContainerKind>,
        listing: Listing,
    ) -> Vec<String> {
        if container.is_none() {
            return list_host_scripts(dir);
        }
        let key = (service.to_string(), rid);
        if listing == Listing::Cached
            && let Some(names) = self.cache().scripts.get(&key)
        {
            return names.clone();
        }
        let argv = self.config.commands.in_container(
            container,
            vec!["/bin/ls".into(), "-1".into(), dir.display().to_string()],
        );
        match exec::run_parsed(&argv, LIST_TIMEOUT, LISTING_MAX).await {
            Ok(out) if out.success() => {
                let names: Vec<String> = out.stdout.lines().map(str::to_string).collect();
                self.cache().scripts.insert(key, names.clone());
                names
            }
            _ => Vec::new(),
        }
    }

    /// Forgets the script listings of a service's apps: its container started or stopped,
    /// and what is inside may have changed.
    pub fn forget_scripts(&self, service: &str) {
        self.cache()
            .scripts
            .retain(|(owner, _), _| owner != service);
    }
}

/// The names of the files (and symlinks) in a scripts directory on the host; nothing when it
/// cannot be read, or holds more than [`MAX_SCRIPT_ENTRIES`] entries (a listing cut short would
/// run some scripts and not others).
fn list_host_scripts(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for (seen, entry) in entries.filter_map(Result::ok).enumerate() {
        if seen == MAX_SCRIPT_ENTRIES {
            tracing::warn!(
                "{} holds more than {MAX_SCRIPT_ENTRIES} entries: not read as a scripts directory",
                dir.display()
            );
            return Vec::new();
        }
        if entry
            .file_type()
            .is_ok_and(|t| t.is_file() || t.is_symlink())
        {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

async fn run_checks(job: CheckJob) -> (String, ResourceId, AppObservation) {
    let mut statuses = Vec::new();
    let mut details = Vec::new();
    for (label, argv) in &job.checks {
        let status = match exec::run(argv, job.spec.timeout).await {
            Ok(out) if out.timed_out => {
                details.push(format!("{label} timed out"));
                AppStatus::Warn
            }
            Ok(out) => match out.code {
                Some(code) => {
                    let status = job.spec.status_of(code);
                    details.push(format!("{label} {}", status_word(status, code)));
                    status
                }
                None => {
                    details.push(format!("{label} {}", out.describe_end()));
                    AppStatus::Warn
                }
            },
            Err(e) => {
                details.push(format!("{label}: {e}"));
                AppStatus::Warn
            }
        };
        statuses.push(status);
    }
    let observation = AppObservation {
        status: aggregate_apps(&statuses),
        detail: details.join(", "),
    };
    (job.service, job.rid, observation)
}

fn status_word(status: AppStatus, code: i32) -> String {
    match status {
        AppStatus::Up => "up".into(),
        AppStatus::Down => "down".into(),
        AppStatus::NotApplicable => "n/a".into(),
        AppStatus::Warn => format!("warn (exit {code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streams_split_brains_add_to_the_records_which_keep_their_time() {
        let split = |peer: &str, since: &str| SplitBrain {
            peer: peer.into(),
            since: since.into(),
        };
        let mut recorded = BTreeMap::from([("web".to_string(), vec![split("deb2", "T1")])]);
        let news = BTreeMap::from([
            (
                "web".to_string(),
                vec![split("deb2", "T2"), split("tb", "T2")],
            ),
            ("db".to_string(), vec![split("deb2", "T3")]),
        ]);
        with_stream_news(&mut recorded, news);
        assert_eq!(
            recorded,
            BTreeMap::from([
                ("db".to_string(), vec![split("deb2", "T3")]),
                (
                    "web".to_string(),
                    vec![split("deb2", "T1"), split("tb", "T2")]
                ),
            ])
        );
    }

    #[test]
    fn block_device_number_reads_rdev_and_ignores_other_files() {
        assert_eq!(
            block_device_number(Path::new("/dev/null")),
            None,
            "a char device"
        );
        assert_eq!(block_device_number(Path::new("/nonexistent/drbd0")), None);
        if let Some(n) = block_device_number(Path::new("/dev/loop0")) {
            assert_eq!(n.major, 7);
        }
    }
}
