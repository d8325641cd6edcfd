//! `converge doctor`, the gathering half: reads the files and runs the listing and version
//! programs the checks need, and hands the facts to core's rules ([`converge_core::doctor`]).
//! It changes nothing: no directory is created, no program that acts is run.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use converge_core::config::{Config, DEFAULT_CONFIG_PATH};
use converge_core::doctor::{
    self as rules, Area, DirFact, Finding, LvmConfFact, ProcDrbdFact, Report, ResFileFact,
    ResourceUse, UnitFact, UtilsFact,
};
use converge_core::manifest::load::{self, ParseCache, load_dir_lenient_cached};
use converge_core::manifest::{ContainerKind, DesiredState, Service};
use converge_core::observe::{drbd_conf, proc_drbd};

use crate::exec::{self, ExecError, Output};
use crate::observer::{LISTING_MAX, PROC_DRBD_MAX};
use crate::secure::{self, SecureError};
use crate::trust;

/// Version and listing programs answer at once; this only bounds a hung one.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// lvm.conf is some 100 KB with its comments; an LXC config or a systemd unit a few KB.
const CONFIG_FILE_MAX: u64 = 4 * 1024 * 1024;

/// /proc/filesystems: a line per type, a few KB.
const PROC_FILESYSTEMS_MAX: u64 = 1024 * 1024;

/// modules.alias: some 1.5 MB on a distribution kernel.
const MODULES_ALIAS_MAX: u64 = 32 * 1024 * 1024;

/// `.res` files looked at in the DRBD configuration directory: more is not a DRBD
/// configuration directory.
const MAX_RES_FILES: usize = 1000;

const LVM_CONF: &str = "/etc/lvm/lvm.conf";
const LVM_CACHE: &str = "/etc/lvm/cache/.cache";

/// Where systemd finds an installed unit, the administrator's first.
const UNIT_PATHS: [&str; 3] = [
    "/etc/systemd/system/converge.service",
    "/lib/systemd/system/converge.service",
    "/usr/lib/systemd/system/converge.service",
];

/// Examines this node against the configuration (read from `config_path`, `None`: the
/// default) and the manifests in `dir`.
pub async fn examine(config: &Config, config_path: Option<&Path>, dir: &Path) -> Report {
    let host = uname();
    let mut findings = Vec::new();

    // converge itself: what decides what root runs, where it writes, how it is started.
    let file = config_path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    if config_path.is_some() || file.exists() {
        findings.push(trusted(&file.display().to_string(), file, "config file"));
    } else {
        findings.push(Finding::skipped(
            Area::Converge,
            file.display().to_string(),
            "no configuration file: every default applies",
        ));
    }
    for program in config.commands.programs() {
        if let Some(found) = exec::resolve(&program).filter(|p| p.exists())
            && let Err(e) = trust::check(&found, "program named by the config")
        {
            findings.push(untrusted_finding(&program, &e));
        }
    }
    // A directory that is not there is said once, by the load below.
    if dir.exists() {
        findings.push(trusted(
            &dir.display().to_string(),
            dir,
            "manifest directory",
        ));
    }
    let loaded = load_dir_lenient_cached(dir, &mut ParseCache::default());
    findings.extend(rules::manifest_errors(dir, &loaded.errors));
    let services = load::owned(loaded.services);
    let mut checks = trust::Checks::default();
    for service in &services {
        let problems = trust::check_manifest(service, &mut checks);
        if problems.is_empty() {
            findings.push(Finding::ok(
                Area::Converge,
                service.source.display().to_string(),
                format!(
                    "manifest of service {}, and what it runs: trusted",
                    service.name
                ),
            ));
        }
        for problem in &problems {
            findings.push(untrusted_finding(
                &service.source.display().to_string(),
                problem,
            ));
        }
    }
    findings.push(rules::private_dir(
        "state_dir",
        &config.state_dir,
        &dir_fact(&config.state_dir, "state_dir"),
    ));
    findings.push(rules::private_dir(
        "log_dir",
        &config.log_dir,
        &dir_fact(&config.log_dir, "log_dir"),
    ));
    findings.push(rules::unit(&unit_fact()));
    findings.push(rules::node_name(
        &config.node,
        host.as_ref().map(|h| h.nodename.as_str()),
    ));

    let drbdadm_host = host
        .as_ref()
        .map_or(config.node.clone(), |h| h.nodename.clone());
    findings.extend(drbd(config, &services, &drbdadm_host).await);
    findings.extend(filesystems(config, &services, host.as_ref()));
    findings.extend(containers(config, &services).await);
    Report::new(findings)
}

/// This host's name (drbdadm's `uname -n`) and kernel release.
struct Uname {
    nodename: String,
    release: String,
}

fn uname() -> Option<Uname> {
    let u = rustix::system::uname();
    Some(Uname {
        nodename: u.nodename().to_str().ok()?.to_string(),
        release: u.release().to_str().ok()?.to_string(),
    })
}

fn untrusted_parts(e: &SecureError) -> (String, String) {
    let fix = match e {
        SecureError::Permission(p) => p.fix(),
        SecureError::Io { path, .. } | SecureError::NotADirectory { path, .. } => {
            format!("check {}: root must be able to read it", path.display())
        }
    };
    (e.to_string(), fix)
}

fn untrusted_finding(subject: &str, e: &SecureError) -> Finding {
    let (message, fix) = untrusted_parts(e);
    Finding::error(Area::Converge, subject, message, fix)
}

fn trusted(subject: &str, path: &Path, what: &str) -> Finding {
    rules::trust(
        subject,
        what,
        trust::check(path, what).err().as_ref().map(untrusted_parts),
    )
}

/// `state_dir` or `log_dir` as it is, created by nothing here.
fn dir_fact(dir: &Path, what: &str) -> DirFact {
    match secure::check_path(dir, what) {
        Ok(resolved) if !resolved.missing.is_empty() => DirFact::Missing {
            existing: resolved.existing,
        },
        Ok(resolved) => match std::fs::metadata(&resolved.existing) {
            Ok(meta) if meta.is_dir() => DirFact::Private {
                mode: meta.mode() & 0o7777,
            },
            Ok(_) => DirFact::NotADirectory {
                path: resolved.existing,
            },
            Err(e) => DirFact::Unreadable { why: e.to_string() },
        },
        Err(SecureError::NotADirectory { path, .. }) => DirFact::NotADirectory { path },
        Err(e @ SecureError::Permission(_)) => {
            let (message, fix) = untrusted_parts(&e);
            DirFact::Untrusted { message, fix }
        }
        Err(e) => DirFact::Unreadable { why: e.to_string() },
    }
}

fn unit_fact() -> UnitFact {
    let Some(path) = UNIT_PATHS.iter().map(Path::new).find(|p| p.exists()) else {
        return UnitFact::NotInstalled;
    };
    let text = match secure::read_input_text(path, CONFIG_FILE_MAX) {
        Ok(text) => text,
        Err(e) => {
            return UnitFact::Unreadable {
                path: path.to_path_buf(),
                why: e.to_string(),
            };
        }
    };
    let program = rules::unit_exec_start(&text);
    let exists = program
        .as_deref()
        .is_some_and(|p| p.starts_with('/') && Path::new(p).is_file());
    let untrusted = match (&program, exists) {
        (Some(p), true) => trust::check(Path::new(p), "program of converge.service")
            .err()
            .as_ref()
            .map(untrusted_parts),
        _ => None,
    };
    UnitFact::Found {
        path: path.to_path_buf(),
        program,
        exists,
        untrusted,
    }
}

/// Runs a version or listing program, its stdout whole up to [`LISTING_MAX`].
async fn run_tool(argv: &[String]) -> Result<Output, ExecError> {
    exec::run_parsed(argv, TOOL_TIMEOUT, LISTING_MAX).await
}

/// A failed run in one line: how it ended and what it said (without drbd-utils' noise).
fn failure(argv: &[String], out: &Output) -> String {
    let said = rules::tool_message(&out.stderr);
    if said.is_empty() {
        format!("{} {}", argv.join(" "), out.describe_end())
    } else {
        said
    }
}

async fn drbd(config: &Config, services: &[Service], host: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Each DRBD resource the manifests name, with who uses it and how.
    let mut resources: BTreeMap<&str, ResourceUse<'_>> = BTreeMap::new();
    for service in services {
        for spec in service
            .resources
            .iter()
            .filter(|r| !r.disabled)
            .filter_map(|r| r.spec.as_drbd())
        {
            let usage = resources
                .entry(spec.res.as_str())
                .or_insert_with(|| ResourceUse {
                    res: spec.res.as_str(),
                    promoted_by: Vec::new(),
                    failovers: Vec::new(),
                });
            if service.desired_here(&config.node) != DesiredState::Down {
                usage.promoted_by.push(service.name.as_str());
            }
            if let Some(failover) = service.failover() {
                usage.failovers.push((service.name.as_str(), failover));
            }
        }
    }
    let in_use = !resources.is_empty();
    let proc = match secure::read_input_text(&config.proc_drbd, PROC_DRBD_MAX) {
        Err(e) if e.is_not_found() => ProcDrbdFact::Missing,
        Err(e) => ProcDrbdFact::Unreadable(e.to_string()),
        Ok(text) => match proc_drbd::parse(&text) {
            Ok(proc) => ProcDrbdFact::Loaded(proc.version),
            Err(e) => ProcDrbdFact::Unreadable(e.to_string()),
        },
    };
    let argv = config.commands.drbdadm_argv(&["--version"]);
    let utils = match run_tool(&argv).await {
        Ok(out) if out.success() => match rules::parse_drbdadm_version(&out.stdout) {
            Some(v) => UtilsFact::Version(v),
            None => UtilsFact::Failed(format!(
                "no DRBDADM_VERSION in what {} printed",
                argv.join(" ")
            )),
        },
        Ok(out) => UtilsFact::Failed(failure(&argv, &out)),
        Err(ExecError::NotFound { program }) => {
            UtilsFact::NotInstalled(format!("{program} not found"))
        }
        Err(e) => UtilsFact::Failed(e.to_string()),
    };
    findings.extend(rules::drbd_versions(
        &config.proc_drbd,
        &proc,
        &utils,
        in_use,
    ));
    let UtilsFact::Version(_) = utils else {
        if in_use || config.drbd_conf_dir.exists() {
            findings.push(Finding::skipped(
                Area::Drbd,
                "configuration",
                "drbdadm cannot run here: resources and .res files are not checked",
            ));
        }
        findings.extend(rules::lvm(
            Path::new(LVM_CONF),
            Path::new(LVM_CACHE),
            &lvm_conf(),
            lvm_cache_exists(),
            &[],
        ));
        return findings;
    };

    let mut lvm_disks = Vec::new();
    for usage in resources.values() {
        let argv = config.commands.drbdadm_argv(&["dump", usage.res]);
        let dump = match run_tool(&argv).await {
            Ok(out) if out.success() => {
                match (
                    drbd_conf::parse_dump(&out.stdout),
                    drbd_conf::parse_dump_details(&out.stdout),
                ) {
                    (Ok(mut all), Ok(mut details)) => {
                        match (all.remove(usage.res), details.remove(usage.res)) {
                            (Some(c), Some(d)) => Ok((c, d)),
                            _ => Err(format!("{} does not show it", argv.join(" "))),
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
                }
            }
            Ok(out) => Err(failure(&argv, &out)),
            Err(e) => Err(e.to_string()),
        };
        if let Ok((_, details)) = &dump {
            lvm_disks.extend(
                details
                    .disks_of(host)
                    .iter()
                    .filter(|d| rules::is_lvm_volume(d))
                    .map(|d| (usage.res.to_string(), d.clone())),
            );
        }
        findings.extend(rules::drbd_resource(usage, &dump));
    }

    // The resource files: those in the configuration directory, and those manifests name.
    let mut files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    match std::fs::read_dir(&config.drbd_conf_dir) {
        Ok(entries) => {
            for entry in entries.filter_map(Result::ok).take(MAX_RES_FILES) {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "res") {
                    files.entry(path).or_default();
                }
            }
        }
        Err(e) => findings.push(Finding::skipped(
            Area::Drbd,
            config.drbd_conf_dir.display().to_string(),
            format!("DRBD configuration directory not read: {e}"),
        )),
    }
    for service in services {
        for (_, spec, file) in service.drbd_files() {
            files.entry(file).or_default().push(service.name.clone());
            files
                .entry(spec.installed_file(&config.drbd_conf_dir))
                .and_modify(|named| named.push(service.name.clone()));
        }
    }
    for (path, mut named_by) in files {
        named_by.dedup();
        let file = path.to_string_lossy().into_owned();
        let parse_argv = config.commands.drbdadm_argv(&["-c", &file, "sh-nop"]);
        let parses = match run_tool(&parse_argv).await {
            Ok(out) if out.success() => Ok(()),
            Ok(out) => Err(failure(&parse_argv, &out)),
            Err(e) => Err(e.to_string()),
        };
        let list_argv = config.commands.drbdadm_argv(&["-c", &file, "sh-resources"]);
        let this_host = if parses.is_err() {
            Ok(Vec::new())
        } else {
            match run_tool(&list_argv).await {
                Ok(out) if out.success() => {
                    Ok(out.stdout.split_whitespace().map(str::to_string).collect())
                }
                Ok(out) => Err(failure(&list_argv, &out)),
                Err(e) => Err(e.to_string()),
            }
        };
        findings.push(rules::res_file(
            host,
            &ResFileFact {
                path,
                parses,
                this_host,
                named_by,
            },
        ));
    }

    findings.extend(rules::lvm(
        Path::new(LVM_CONF),
        Path::new(LVM_CACHE),
        &lvm_conf(),
        lvm_cache_exists(),
        &lvm_disks,
    ));
    findings
}

fn lvm_conf() -> LvmConfFact {
    match secure::read_input_text(Path::new(LVM_CONF), CONFIG_FILE_MAX) {
        Err(e) if e.is_not_found() => LvmConfFact::Missing,
        Err(e) => LvmConfFact::Unreadable(e.to_string()),
        Ok(text) => LvmConfFact::Read(rules::parse_lvm_conf(&text)),
    }
}

fn lvm_cache_exists() -> bool {
    std::fs::symlink_metadata(LVM_CACHE).is_ok()
}

fn filesystems(config: &Config, services: &[Service], host: Option<&Uname>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut types: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut checked: Vec<String> = Vec::new();
    for service in services {
        for fs in service
            .resources
            .iter()
            .filter(|r| !r.disabled)
            .filter_map(|r| r.spec.as_fs())
        {
            types
                .entry(fs.fstype.as_str())
                .or_default()
                .push(service.name.clone());
            if fs.wants_fsck() {
                checked.push(service.name.clone());
            }
        }
    }
    if types.is_empty() {
        return findings;
    }
    let in_kernel: BTreeSet<String> =
        match secure::read_input_text(Path::new("/proc/filesystems"), PROC_FILESYSTEMS_MAX) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.split_whitespace().last())
                .map(str::to_string)
                .collect(),
            Err(_) => BTreeSet::new(),
        };
    // The kernel asks for module `fs-TYPE` when a mount needs a type it lacks.
    let aliases: BTreeMap<String, String> = host
        .map(|h| {
            Path::new("/lib/modules")
                .join(&h.release)
                .join("modules.alias")
        })
        .and_then(|p| secure::read_input_text(&p, MODULES_ALIAS_MAX).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    match (words.next(), words.next(), words.next()) {
                        (Some("alias"), Some(alias), Some(module)) => alias
                            .strip_prefix("fs-")
                            .map(|t| (t.to_string(), module.to_string())),
                        _ => None,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    for (fstype, mut used_by) in types {
        used_by.dedup();
        let helper = ["/sbin", "/usr/sbin", "/bin", "/usr/bin"]
            .iter()
            .map(|d| Path::new(d).join(format!("mount.{fstype}")))
            .find(|p| executable(p));
        findings.push(rules::fs_type(&rules::FsTypeFact {
            fstype: fstype.to_string(),
            in_kernel: in_kernel.contains(fstype),
            helper,
            module: aliases.get(fstype).map(PathBuf::from),
            used_by,
        }));
    }
    if !checked.is_empty() {
        checked.dedup();
        let program = &config.commands.e2fsck;
        let found = exec::resolve(program).filter(|p| executable(p));
        findings.push(rules::fsck(program, found.as_deref(), &checked));
    }
    findings.extend(rules::mount_nesting(services));
    findings
}

fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

async fn containers(config: &Config, services: &[Service]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let containers: Vec<(&Service, &ContainerKind)> = services
        .iter()
        .flat_map(|s| {
            s.resources
                .iter()
                .filter(|r| !r.disabled)
                .filter_map(|r| r.spec.as_container())
                .map(move |c| (s, &c.kind))
        })
        .collect();
    let tool = |program: &String, key: &'static str| {
        (
            program.clone(),
            key,
            exec::resolve(program).filter(|p| executable(p)),
        )
    };
    let c = &config.commands;
    if containers
        .iter()
        .any(|(_, k)| matches!(k, ContainerKind::Vz(_)))
    {
        findings.extend(rules::container_tools(
            "OpenVZ",
            "install OpenVZ (vzctl)",
            &[tool(&c.vzctl, "vzctl"), tool(&c.vzlist, "vzlist")],
        ));
    }
    let lxc: Vec<(&Service, &str)> = containers
        .iter()
        .filter_map(|(s, k)| match k {
            ContainerKind::Lxc(name) => Some((*s, name.as_str())),
            ContainerKind::Vz(_) => None,
        })
        .collect();
    if lxc.is_empty() {
        return findings;
    }
    findings.extend(rules::container_tools(
        "LXC",
        "install lxc",
        &[
            tool(&c.lxc_start, "lxc-start"),
            tool(&c.lxc_stop, "lxc-stop"),
            tool(&c.lxc_info, "lxc-info"),
            tool(&c.lxc_attach, "lxc-attach"),
            tool(&c.lxc_ls, "lxc-ls"),
            tool(&c.lxc_freeze, "lxc-freeze"),
            tool(&c.lxc_unfreeze, "lxc-unfreeze"),
        ],
    ));
    let lxcpath = lxc_path(config).await;
    for (service, name) in lxc {
        let config_path = lxcpath.join(name).join("config");
        let (text, missing) = match secure::read_input_text(&config_path, CONFIG_FILE_MAX) {
            Ok(text) => (Ok(text), false),
            Err(e) => (Err(e.to_string()), e.is_not_found()),
        };
        let mounts = service
            .resources
            .iter()
            .filter(|r| !r.disabled)
            .filter_map(|r| r.spec.as_fs())
            .map(|fs| fs.mnt.clone())
            .collect();
        findings.push(rules::lxc_container(&rules::LxcFact {
            service: service.name.clone(),
            name: name.to_string(),
            config_path,
            config: text,
            missing,
            mounts,
        }));
    }
    findings
}

/// LXC's `lxc.lxcpath`, from `lxc-config` beside the configured `lxc-start`; LXC's default
/// when it cannot say.
async fn lxc_path(config: &Config) -> PathBuf {
    const DEFAULT: &str = "/var/lib/lxc";
    let start = &config.commands.lxc_start;
    let program = match start.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/lxc-config"),
        None => "lxc-config".to_string(),
    };
    match run_tool(&[program, "lxc.lxcpath".into()]).await {
        Ok(out) if out.success() => out
            .stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with('/'))
            .map_or_else(|| PathBuf::from(DEFAULT), PathBuf::from),
        _ => PathBuf::from(DEFAULT),
    }
}
