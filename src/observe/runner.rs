//! The I/O half of observation: reads the /proc files and runs the listing programs, in
//! batches, then hands the text to the pure parsers.
//!
//! Cost of one pass over N services: one read of /proc/drbd and of mountinfo, one
//! `drbdsetup status --json` (DRBD 9), one `vzlist` and one `lxc-ls` — each only when some
//! service needs it — a `stat` per device, plus the users' own app checks (run in parallel, each
//! with its timeout). DRBD 8.4 has no name in /proc/drbd, so there `drbdadm sh-minor` runs once
//! per DRBD resource.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinSet;

use super::{
    AppObservation, ContainerState, DevNum, DrbdResources, Mount, NodeState, Observed,
    drbdsetup_status, lxc, mountinfo, proc_drbd, vz,
};
use crate::config::Config;
use crate::exec::{self, ExecError, Output};
use crate::manifest::{AppCommands, AppSpec, AppStatus, ContainerKind, ResourceId, Service, Spec};
use crate::state;

/// Listing programs answer in well under a second; this only bounds a hung one.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// Observes everything `services` depend on, in one pass.
pub async fn observe(config: &Config, services: &[Service]) -> NodeState {
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
        observe_drbd(config, &drbd_names).await
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
            device_paths.insert(super::drbd::device_path(device.minor));
        }
    }
    let devices = device_paths
        .into_iter()
        .filter_map(|path| block_device_number(&path).map(|n| (path, n)))
        .collect();

    let mut node = NodeState {
        node: config.node.clone(),
        drbd,
        mounts,
        devices,
        dirs,
        vz,
        lxc,
        apps: BTreeMap::new(),
    };
    node.apps = observe_apps(config, services, &node).await;
    node
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
    match std::fs::read_to_string(path) {
        Ok(text) => match mountinfo::parse(&text) {
            Ok(mounts) => Observed::Ok(mounts),
            Err(e) => Observed::Unavailable(format!("{}: {e}", path.display())),
        },
        Err(e) => Observed::Unavailable(format!("cannot read {}: {e}", path.display())),
    }
}

/// Runs a listing program; a missing program or a failure becomes the one-line reason.
async fn list(argv: Vec<String>, install_hint: &str) -> Result<Output, String> {
    match exec::run(&argv, LIST_TIMEOUT).await {
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

async fn observe_drbd(config: &Config, names: &BTreeSet<&str>) -> Observed<DrbdResources> {
    let path = &config.proc_drbd;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Observed::Unavailable(format!(
                "{} does not exist: DRBD is not loaded on this node (no drbd kernel module)",
                path.display()
            ));
        }
        Err(e) => return Observed::Unavailable(format!("cannot read {}: {e}", path.display())),
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
    let stamp = state::drbd_config_stamp();
    let mut cache = state::load_minor_map(&config.state_dir)
        .filter(|c| c.stamp == stamp)
        .unwrap_or_else(|| state::MinorMap {
            stamp: stamp.clone(),
            minors: BTreeMap::new(),
        });
    let mut asked = false;
    for name in names {
        if cache.minors.contains_key(*name) {
            continue;
        }
        let argv = config.commands.drbdadm_argv(&["sh-minor", name]);
        let out = match exec::run(&argv, LIST_TIMEOUT).await {
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
        asked = true;
    }
    if asked {
        // A cache that cannot be written costs a few spawns next time, nothing else.
        let _ = state::save_minor_map(&config.state_dir, &cache);
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
    Observed::Ok(resources)
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

/// Runs the app checks of every app whose host (node or container) is running.
async fn observe_apps(
    config: &Config,
    services: &[Service],
    node: &NodeState,
) -> BTreeMap<String, BTreeMap<ResourceId, AppObservation>> {
    let mut jobs = JoinSet::new();
    let mut apps: BTreeMap<String, BTreeMap<ResourceId, AppObservation>> = BTreeMap::new();
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
        for resource in service.resources.iter().filter(|r| !r.disabled) {
            let Spec::App(spec) = &resource.spec else {
                continue;
            };
            let checks =
                check_commands(config, (&service.name, resource.id), spec, container).await;
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
        if let Some(record) = starts.get(service, rid) {
            let started = std::time::UNIX_EPOCH + Duration::from_secs(record.started_at);
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
    apps
}

/// The argv of each check of an app: `check`, or the C* scripts of `scripts` in name order,
/// run with `status` — inside the container when the service has one.
async fn check_commands(
    config: &Config,
    owner: (&str, ResourceId),
    spec: &AppSpec,
    container: Option<&ContainerKind>,
) -> Vec<(String, Vec<String>)> {
    match &spec.commands {
        AppCommands::Argv {
            check: Some(argv), ..
        } => {
            let program = argv.first().map(String::as_str).unwrap_or_default();
            let label = Path::new(program)
                .file_name()
                .map_or_else(|| program.to_string(), |n| n.to_string_lossy().into_owned());
            vec![(label, config.commands.in_container(container, argv.clone()))]
        }
        AppCommands::Argv { check: None, .. } => Vec::new(),
        AppCommands::Scripts(dir) => {
            list_scripts(config, owner, dir, container, 'C', Listing::Cached)
                .await
                .into_iter()
                .map(|(name, path)| {
                    let argv = vec![path, "status".to_string()];
                    (name, config.commands.in_container(container, argv))
                })
                .collect()
        }
    }
}

/// Which script listing a caller wants: a cached one is fine for observing, not for acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// The cached listing of a container's scripts directory, when there is one.
    Cached,
    /// Read the directory now (and refresh the cache).
    Fresh,
}

/// Scripts of `dir` whose name starts with `prefix`, in name order, as (name, full path).
///
/// The directory is read on the host, or inside the container (where it lives) when the
/// service has one. Reading inside a container costs a spawn (`ls` through `vzctl exec2` or
/// `lxc-attach`), so that listing is cached in `state_dir` per service and app: observation
/// uses the cache; starting and stopping apps read afresh, and the cache is dropped whenever
/// converge starts or stops the container.
pub async fn list_scripts(
    config: &Config,
    owner: (&str, ResourceId),
    dir: &Path,
    container: Option<&ContainerKind>,
    prefix: char,
    listing: Listing,
) -> Vec<(String, String)> {
    let names: Vec<String> = match container {
        None => match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        },
        Some(_) => {
            let cached = match listing {
                Listing::Cached => state::script_names(&config.state_dir, owner.0, owner.1),
                Listing::Fresh => None,
            };
            match cached {
                Some(names) => names,
                None => {
                    let argv = config.commands.in_container(
                        container,
                        vec!["/bin/ls".into(), "-1".into(), dir.display().to_string()],
                    );
                    match exec::run(&argv, LIST_TIMEOUT).await {
                        Ok(out) if out.success() => {
                            let names: Vec<String> =
                                out.stdout.lines().map(str::to_string).collect();
                            // A cache that cannot be written costs a spawn next time.
                            let _ = state::save_script_names(
                                &config.state_dir,
                                owner.0,
                                owner.1,
                                &names,
                            );
                            names
                        }
                        _ => Vec::new(),
                    }
                }
            }
        }
    };
    let mut scripts: Vec<(String, String)> = names
        .into_iter()
        .filter(|n| n.starts_with(prefix) && !n.ends_with('~') && !n.starts_with('.'))
        .map(|n| {
            let path = dir.join(&n).display().to_string();
            (n, path)
        })
        .collect();
    scripts.sort();
    scripts
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
        status: aggregate(&statuses),
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

/// Any warn → warn; n/a is neutral; all up → up; all down → down; up and down mixed → warn.
pub fn aggregate(statuses: &[AppStatus]) -> AppStatus {
    let relevant: Vec<AppStatus> = statuses
        .iter()
        .copied()
        .filter(|s| *s != AppStatus::NotApplicable)
        .collect();
    if relevant.contains(&AppStatus::Warn) {
        AppStatus::Warn
    } else if relevant.is_empty() {
        AppStatus::NotApplicable
    } else if relevant.iter().all(|s| *s == AppStatus::Up) {
        AppStatus::Up
    } else if relevant.iter().all(|s| *s == AppStatus::Down) {
        AppStatus::Down
    } else {
        AppStatus::Warn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_status_aggregates_as_opensvc_does() {
        use AppStatus::*;
        assert_eq!(aggregate(&[Up, Up]), Up);
        assert_eq!(aggregate(&[Down, Down]), Down);
        assert_eq!(aggregate(&[Up, Down]), Warn);
        assert_eq!(aggregate(&[Up, NotApplicable]), Up);
        assert_eq!(aggregate(&[NotApplicable]), NotApplicable);
        assert_eq!(aggregate(&[Down, Warn, Up]), Warn);
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
