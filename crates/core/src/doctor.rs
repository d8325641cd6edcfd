//! `converge doctor`, the pure half: what a finding is, how findings make an exit code, the
//! small parsers of what the node's tools and files say (`drbdadm --version`, lvm.conf, a
//! systemd unit's `ExecStart`, an LXC config's rootfs), and the rules that turn gathered facts
//! into findings. The node crate gathers the facts; nothing here reads or runs anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::manifest::{Failover, Service};
use crate::observe::drbd_conf::{DumpDetails, ResourceConfig};
use crate::observe::proc_drbd::DrbdVersion;
use crate::plan::placement;

/// How bad a finding is. Ordered: the worst is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Checked and fine.
    Ok,
    /// Not checked: what the check needs is absent (and nothing needs it), said with why.
    Skipped,
    /// Works now, but works against converge or the data (a fix is given).
    Warn,
    /// converge cannot do its job as the manifests ask (a fix is given).
    Error,
}

/// What part of the node a finding is about; the human output groups by it, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Converge,
    Drbd,
    Lvm,
    Fs,
    Container,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Converge => "converge",
            Area::Drbd => "drbd",
            Area::Lvm => "lvm",
            Area::Fs => "fs",
            Area::Container => "container",
        }
    }
}

/// One thing the doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub area: Area,
    /// What it is about: a resource, file, program or service.
    pub subject: String,
    /// What is so (and, for a warning or an error, what is wrong).
    pub message: String,
    /// What to do about it; always given for a warning or an error.
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(area: Area, subject: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Ok, area, subject, message, None)
    }

    pub fn skipped(area: Area, subject: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Skipped, area, subject, message, None)
    }

    pub fn warn(
        area: Area,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding::new(Severity::Warn, area, subject, message, Some(fix.into()))
    }

    pub fn error(
        area: Area,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding::new(Severity::Error, area, subject, message, Some(fix.into()))
    }

    fn new(
        severity: Severity,
        area: Area,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Finding {
        Finding {
            severity,
            area,
            subject: subject.into(),
            message: message.into(),
            fix,
        }
    }
}

/// How many findings of each severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub ok: usize,
    pub skipped: usize,
}

/// Everything the doctor found, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Grouped by area (in [`Area`]'s order), in the order found within an area.
    pub findings: Vec<Finding>,
    pub summary: Summary,
    pub exit_code: u8,
}

/// All good.
pub const EXIT_OK: u8 = 0;
/// An error: converge cannot do what a manifest asks.
pub const EXIT_ERROR: u8 = 1;
/// Warnings only.
pub const EXIT_WARNINGS: u8 = 2;

/// 1 when any finding is an error, else 2 when any is a warning, else 0.
pub fn exit_code(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.severity).max() {
        Some(Severity::Error) => EXIT_ERROR,
        Some(Severity::Warn) => EXIT_WARNINGS,
        _ => EXIT_OK,
    }
}

impl Report {
    pub fn new(mut findings: Vec<Finding>) -> Report {
        findings.sort_by_key(|f| f.area);
        let mut summary = Summary::default();
        for f in &findings {
            match f.severity {
                Severity::Error => summary.errors += 1,
                Severity::Warn => summary.warnings += 1,
                Severity::Ok => summary.ok += 1,
                Severity::Skipped => summary.skipped += 1,
            }
        }
        let exit_code = exit_code(&findings);
        Report {
            findings,
            summary,
            exit_code,
        }
    }
}

/// A message of placement's check, `problem; fix`, split at its last `; ` outside backticks
/// (a fix quotes configuration, which has `;` of its own).
pub fn split_fix(message: &str) -> (String, String) {
    let mut quoted = false;
    let mut split = None;
    for (i, c) in message.char_indices() {
        match c {
            '`' => quoted = !quoted,
            ';' if !quoted && message[i..].starts_with("; ") => split = Some(i),
            _ => {}
        }
    }
    match split {
        Some(i) => (message[..i].to_string(), message[i + 2..].to_string()),
        None => (
            message.to_string(),
            "change the DRBD configuration as said, then `drbdadm adjust RES`".to_string(),
        ),
    }
}

/// What a program printed on stderr, for a message: its lines without drbd-utils' modinfo
/// noise (machines without the module print `modinfo: not found` without kmod, `modinfo:
/// ERROR: Module drbd not found.` with it), joined by spaces.
pub fn tool_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("modinfo"))
        .collect();
    // A parse error comes first; a long tail repeats it.
    let shown: Vec<&str> = lines.into_iter().take(4).collect();
    shown.join(" ")
}

// ---------------------------------------------------------------------------------------------
// converge itself

/// The manifests' load errors: each an error, pointing at `converge validate`.
pub fn manifest_errors(dir: &Path, errors: &[crate::manifest::LoadError]) -> Vec<Finding> {
    if errors.is_empty() {
        return Vec::new();
    }
    let fix = format!(
        "run `converge validate {}` and fix what it says; an invalid manifest's service is not checked here",
        dir.display()
    );
    errors
        .iter()
        .map(|e| {
            Finding::error(
                Area::Converge,
                e.file.display().to_string(),
                format!("invalid manifest: {e}"),
                fix.clone(),
            )
        })
        .collect()
}

/// A path converge trusts (config file, manifest directory, a manifest, a program): fine, or
/// the untrusted entry's message and fix (`chmod`/`chown`).
pub fn trust(subject: &str, what: &str, problem: Option<(String, String)>) -> Finding {
    match problem {
        None => Finding::ok(
            Area::Converge,
            subject,
            format!("{what}: owned by root and writable by no one else"),
        ),
        Some((message, fix)) => Finding::error(Area::Converge, subject, message, fix),
    }
}

/// What is there at `state_dir` or `log_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirFact {
    /// A directory, every entry up to it trusted; `mode` its permission bits.
    Private {
        mode: u32,
    },
    /// Missing; the part that exists is trusted, and converge creates the rest (0700).
    Missing {
        existing: PathBuf,
    },
    NotADirectory {
        path: PathBuf,
    },
    /// Not trusted: the message and the fix.
    Untrusted {
        message: String,
        fix: String,
    },
    /// Could not be checked.
    Unreadable {
        why: String,
    },
}

pub fn private_dir(key: &str, dir: &Path, fact: &DirFact) -> Finding {
    let subject = format!("{key} {}", dir.display());
    match fact {
        DirFact::Private { mode } if mode & 0o077 == 0 => Finding::ok(
            Area::Converge,
            subject,
            format!("directory, mode {mode:04o}"),
        ),
        DirFact::Private { mode } => Finding::warn(
            Area::Converge,
            subject,
            format!(
                "mode {mode:04o}: others can read converge's records and app logs (converge creates it 0700)"
            ),
            format!("chmod 700 {}", dir.display()),
        ),
        DirFact::Missing { existing } => Finding::ok(
            Area::Converge,
            subject,
            format!(
                "does not exist yet: converge creates it (0700) below {}, which it trusts",
                existing.display()
            ),
        ),
        DirFact::NotADirectory { path } => Finding::error(
            Area::Converge,
            subject,
            format!("{} is not a directory", path.display()),
            format!("remove or move {}, or set {key} elsewhere", path.display()),
        ),
        DirFact::Untrusted { message, fix } => {
            Finding::error(Area::Converge, subject, message.clone(), fix.clone())
        }
        DirFact::Unreadable { why } => Finding::error(
            Area::Converge,
            subject,
            format!("cannot be checked: {why}"),
            format!(
                "make {} readable by root, or set {key} elsewhere",
                dir.display()
            ),
        ),
    }
}

/// The program of a systemd unit's `ExecStart=` (its last one; systemd's prefixes `-@:+!`
/// dropped), or `None` when it has none.
pub fn unit_exec_start(text: &str) -> Option<String> {
    let mut program = None;
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line;
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "ExecStart" {
            continue;
        }
        let value = value.trim().trim_start_matches(['-', '@', ':', '+', '!']);
        program = value.split_whitespace().next().map(str::to_string);
    }
    program
}

/// The systemd unit, when one is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitFact {
    NotInstalled,
    Unreadable {
        path: PathBuf,
        why: String,
    },
    Found {
        path: PathBuf,
        /// From [`unit_exec_start`].
        program: Option<String>,
        /// The program exists (as a path; systemd wants one).
        exists: bool,
        /// Not trusted: the message and the fix.
        untrusted: Option<(String, String)>,
    },
}

pub fn unit(fact: &UnitFact) -> Finding {
    const SUBJECT: &str = "converge.service";
    match fact {
        UnitFact::NotInstalled => Finding::skipped(
            Area::Converge,
            SUBJECT,
            "no systemd unit installed (docs/systemd/converge.service is the one shipped)",
        ),
        UnitFact::Unreadable { path, why } => Finding::error(
            Area::Converge,
            path.display().to_string(),
            format!("cannot read the unit: {why}"),
            "reinstall it from docs/systemd/converge.service",
        ),
        UnitFact::Found {
            path,
            program,
            exists,
            untrusted,
        } => {
            let subject = path.display().to_string();
            match (program, exists, untrusted) {
                (None, _, _) => Finding::error(
                    Area::Converge,
                    subject,
                    "has no ExecStart= in its [Service] section",
                    "reinstall it from docs/systemd/converge.service (`ExecStart=/usr/local/bin/converge run`)",
                ),
                (Some(p), false, _) => Finding::error(
                    Area::Converge,
                    subject,
                    format!("ExecStart runs {p}, which does not exist"),
                    format!(
                        "install converge as {p}, or point ExecStart at it, then `systemctl daemon-reload`"
                    ),
                ),
                (Some(_), true, Some((message, fix))) => {
                    Finding::error(Area::Converge, subject, message.clone(), fix.clone())
                }
                (Some(p), true, None) => Finding::ok(
                    Area::Converge,
                    subject,
                    format!("ExecStart runs {p}, which exists and is trusted"),
                ),
            }
        }
    }
}

/// converge compares manifests' `node`/`nodes` with the configuration's `node`; drbdadm picks a
/// resource's `on` section by `uname -n`. They must be the same name.
pub fn node_name(config_node: &str, uname: Option<&str>) -> Finding {
    match uname {
        Some(u) if u != config_node => Finding::warn(
            Area::Converge,
            format!("node {config_node}"),
            format!(
                "the configuration's node is {config_node}, but this host is {u} (uname -n), the name drbdadm looks for in `on` sections"
            ),
            format!("set `node: {u}` in the configuration, or the hostname to {config_node}"),
        ),
        _ => Finding::ok(
            Area::Converge,
            format!("node {config_node}"),
            "the configuration's node is this host's name (uname -n)",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// DRBD

/// `drbdadm --version`'s lines that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdadmVersion {
    /// `DRBDADM_VERSION`, e.g. `9.22.0`.
    pub utils: String,
    /// `DRBD_KERNEL_VERSION`: the module installed on disk (drbdadm asks modinfo); `None` or
    /// `0` when there is none.
    pub kernel: Option<String>,
}

/// `KEY=VALUE` lines of `drbdadm --version`; `None` without a `DRBDADM_VERSION`.
pub fn parse_drbdadm_version(text: &str) -> Option<DrbdadmVersion> {
    let mut utils = None;
    let mut kernel = None;
    for line in text.lines() {
        match line.trim().split_once('=') {
            Some(("DRBDADM_VERSION", v)) => utils = Some(v.trim().to_string()),
            Some(("DRBD_KERNEL_VERSION", v)) => {
                let v = v.trim();
                if !v.is_empty() && v != "0" {
                    kernel = Some(v.to_string());
                }
            }
            _ => {}
        }
    }
    Some(DrbdadmVersion {
        utils: utils.filter(|u| !u.is_empty())?,
        kernel,
    })
}

/// major, minor, patch of `9.2.8-1`, `9.22.0`; missing parts are 0.
fn version_triple(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split(['.', '-']).map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    });
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// What `config.proc_drbd` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcDrbdFact {
    Missing,
    Unreadable(String),
    Loaded(DrbdVersion),
}

/// What `drbdadm --version` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UtilsFact {
    NotInstalled(String),
    Failed(String),
    Version(DrbdadmVersion),
}

/// The kernel module and the userland, and whether they go together. `in_use`: some manifest
/// names a DRBD resource (otherwise what is missing is only skipped).
pub fn drbd_versions(
    proc_path: &Path,
    proc: &ProcDrbdFact,
    utils: &UtilsFact,
    in_use: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let module = "kernel module";
    match proc {
        ProcDrbdFact::Missing if !in_use => out.push(Finding::skipped(
            Area::Drbd,
            module,
            format!("{} does not exist and no manifest names a DRBD resource", proc_path.display()),
        )),
        ProcDrbdFact::Missing => out.push(Finding::error(
            Area::Drbd,
            module,
            format!(
                "not loaded: {} does not exist, and manifests name DRBD resources",
                proc_path.display()
            ),
            "install the DRBD kernel module matching drbd-utils (e.g. drbd-dkms) and load it: `modprobe drbd`",
        )),
        ProcDrbdFact::Unreadable(why) => out.push(Finding::error(
            Area::Drbd,
            module,
            format!("cannot read {}: {why}", proc_path.display()),
            format!(
                "check that {} is DRBD's (the configuration's proc_drbd)",
                proc_path.display()
            ),
        )),
        ProcDrbdFact::Loaded(v) => out.push(Finding::ok(
            Area::Drbd,
            module,
            format!("version {} loaded", v.raw),
        )),
    }
    let userland = "drbd-utils";
    match utils {
        UtilsFact::NotInstalled(why) if !in_use => out.push(Finding::skipped(
            Area::Drbd,
            userland,
            format!("{why}; no manifest names a DRBD resource"),
        )),
        UtilsFact::NotInstalled(why) => out.push(Finding::error(
            Area::Drbd,
            userland,
            why.clone(),
            "install drbd-utils, or set commands.drbdadm in the configuration",
        )),
        UtilsFact::Failed(why) => out.push(Finding::error(
            Area::Drbd,
            userland,
            format!("drbdadm --version failed: {why}"),
            "reinstall drbd-utils, or fix commands.drbdadm in the configuration",
        )),
        UtilsFact::Version(v) => {
            let loaded = match proc {
                ProcDrbdFact::Loaded(l) => Some(l),
                _ => None,
            };
            let utils_triple = version_triple(&v.utils);
            if let (Some(l), Some((umajor, _, _))) = (loaded, utils_triple)
                && l.major >= 9
                && umajor < 9
            {
                out.push(Finding::error(
                    Area::Drbd,
                    userland,
                    format!(
                        "drbd-utils {} cannot drive the DRBD {} kernel module",
                        v.utils, l.raw
                    ),
                    "install drbd-utils 9 (it drives DRBD 9 and 8.4 modules)",
                ));
            } else {
                out.push(Finding::ok(
                    Area::Drbd,
                    userland,
                    format!("drbdadm {}", v.utils),
                ));
            }
            if let (Some(l), Some(installed)) = (loaded, &v.kernel)
                && version_triple(installed) != Some((l.major, l.minor, l.patch))
            {
                out.push(Finding::warn(
                    Area::Drbd,
                    module,
                    format!(
                        "the module installed on disk is {installed} (drbdadm --version), the one loaded is {}: it was upgraded and not reloaded",
                        l.raw
                    ),
                    "reload it in a maintenance window (`drbdadm down all; rmmod drbd; modprobe drbd`) or reboot the node",
                ));
            }
        }
    }
    out
}

/// How a DRBD resource is used by the manifests, and what `drbdadm dump RES` said of it.
#[derive(Debug, Clone)]
pub struct ResourceUse<'a> {
    pub res: &'a str,
    /// Services converge may promote it for on this node.
    pub promoted_by: Vec<&'a str>,
    /// The `failover: auto` services using it, with their settings.
    pub failovers: Vec<(&'a str, &'a Failover)>,
}

/// The rules for one DRBD resource's configuration, as `drbdadm dump RES` printed it.
pub fn drbd_resource(
    usage: &ResourceUse<'_>,
    dump: &Result<(ResourceConfig, DumpDetails), String>,
) -> Vec<Finding> {
    let res = usage.res;
    let subject = format!("resource {res}");
    let (config, details) = match dump {
        Ok(found) => found,
        Err(why) => {
            return vec![Finding::error(
                Area::Drbd,
                subject,
                format!("cannot read its configuration: {why}"),
                format!(
                    "define resource {res} for this host (a .res file in the DRBD configuration directory with an `on` section named as `uname -n`), then check with `drbdadm dump {res}`"
                ),
            )];
        }
    };
    let mut out = Vec::new();
    let options = &config.options;
    // A failover service's options are judged by placement's own check below, which covers
    // auto-promote with the failover's reasons.
    if !usage.promoted_by.is_empty() && usage.failovers.is_empty() {
        match options.auto_promote.as_deref() {
            Some("no") => out.push(Finding::ok(Area::Drbd, &subject, "auto-promote no")),
            other => out.push(Finding::warn(
                Area::Drbd,
                &subject,
                format!(
                    "auto-promote {}: opening the device (a mount, an fsck) promotes it behind converge's back, which is what converge checks the peers for before promoting (used by {})",
                    other.unwrap_or("yes (DRBD 9's default)"),
                    usage.promoted_by.join(", ")
                ),
                format!("set `auto-promote no;` in the options of resource {res}, then `drbdadm adjust {res}`"),
            )),
        }
    }
    for (service, failover) in &usage.failovers {
        let check = placement::check_config(failover, res, config);
        if check.errors.is_empty() && check.warnings.is_empty() {
            out.push(Finding::ok(
                Area::Drbd,
                &subject,
                format!("quorum and options fit failover: auto of service {service}"),
            ));
        }
        for e in &check.errors {
            let (message, fix) = split_fix(e);
            out.push(Finding::error(
                Area::Drbd,
                &subject,
                format!("service {service}: {message}"),
                fix,
            ));
        }
        for w in &check.warnings {
            let (message, fix) = split_fix(w);
            out.push(Finding::warn(
                Area::Drbd,
                &subject,
                format!("service {service}: {message}"),
                fix,
            ));
        }
    }
    if options.quorum.is_enforced() {
        let on_no_quorum = options.on_no_quorum.as_deref().unwrap_or("suspend-io");
        let on_no_data = details
            .on_no_data_accessible
            .as_deref()
            .unwrap_or("io-error");
        if on_no_quorum == on_no_data {
            out.push(Finding::ok(
                Area::Drbd,
                &subject,
                format!("on-no-quorum and on-no-data-accessible agree ({on_no_quorum})"),
            ));
        } else {
            let shown = |v: Option<&str>, default: &str| match v {
                Some(v) => v.to_string(),
                None => format!("{default} (DRBD's default)"),
            };
            out.push(Finding::warn(
                Area::Drbd,
                &subject,
                format!(
                    "on-no-quorum {} but on-no-data-accessible {}: a node that loses quorum and one that loses its data act differently, and the failover policy holds for one of them only",
                    shown(options.on_no_quorum.as_deref(), "suspend-io"),
                    shown(details.on_no_data_accessible.as_deref(), "io-error"),
                ),
                format!(
                    "set both to the same policy: `on-no-quorum {on_no_quorum}; on-no-data-accessible {on_no_quorum};` in the options of resource {res}, then `drbdadm adjust {res}`"
                ),
            ));
        }
    }
    out
}

/// A DRBD resource file: whether drbdadm parses it, and the resources it has for this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResFileFact {
    pub path: PathBuf,
    /// `drbdadm -c FILE sh-nop`: `Err` with drbdadm's message.
    pub parses: Result<(), String>,
    /// `drbdadm -c FILE sh-resources`: the resources with an `on` section for this host.
    pub this_host: Result<Vec<String>, String>,
    /// The manifest services naming it (`config:`), if any.
    pub named_by: Vec<String>,
}

pub fn res_file(host: &str, fact: &ResFileFact) -> Finding {
    let subject = fact.path.display().to_string();
    let file = fact.path.display();
    if let Err(why) = &fact.parses {
        return Finding::error(
            Area::Drbd,
            subject,
            format!("drbdadm cannot parse it: {why}"),
            format!("fix it where drbdadm says; check with `drbdadm -c {file} sh-nop`"),
        );
    }
    match &fact.this_host {
        Err(why) => Finding::error(
            Area::Drbd,
            subject,
            format!("drbdadm cannot list its resources: {why}"),
            format!("check it with `drbdadm -c {file} sh-resources`"),
        ),
        Ok(names) if names.is_empty() => {
            let message = format!(
                "parses, but none of its resources has an `on {host}` section: drbdadm ignores it on this host"
            );
            let fix = format!(
                "add an `on {host} {{ … }}` section (drbdadm matches `uname -n`), or do not install it on this node"
            );
            if fact.named_by.is_empty() {
                Finding::warn(Area::Drbd, subject, message, fix)
            } else {
                Finding::error(
                    Area::Drbd,
                    subject,
                    format!("{message} (named by {})", fact.named_by.join(", ")),
                    fix,
                )
            }
        }
        Ok(names) => Finding::ok(
            Area::Drbd,
            subject,
            format!("parses; defines {} for this host", names.join(", ")),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// LVM

/// A value of lvm.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LvmValue {
    /// A number, as written.
    Number(String),
    Str(String),
    /// An array of strings or numbers (numbers as written).
    Array(Vec<String>),
}

/// lvm.conf's settings, by `section/key` (`devices/filter`); the last assignment wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LvmConf {
    pub values: BTreeMap<String, LvmValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lvm.conf line {line}: {message}")]
pub struct LvmConfError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LvmToken {
    Word(String),
    Str(String),
    Punct(char),
}

fn lvm_tokens(text: &str) -> Result<Vec<(usize, LvmToken)>, LvmConfError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(LvmConfError {
                                line: start,
                                message: "a string is not closed".into(),
                            });
                        }
                        Some('"') => break,
                        Some('\\') => {
                            if let Some(next) = chars.next() {
                                s.push(next);
                            }
                        }
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            s.push(c);
                        }
                    }
                }
                out.push((start, LvmToken::Str(s)));
            }
            '=' | '{' | '}' | '[' | ']' | ',' => out.push((line, LvmToken::Punct(c))),
            c => {
                let mut word = String::from(c);
                while chars
                    .peek()
                    .is_some_and(|&c| !c.is_whitespace() && !"={}[],\"#".contains(c))
                {
                    word.extend(chars.next());
                }
                out.push((line, LvmToken::Word(word)));
            }
        }
    }
    Ok(out)
}

/// Reads lvm.conf: `section { key = value … }`, sections nested, values a number, a string or
/// an array `[ "a", "b" ]`, `#` comments.
pub fn parse_lvm_conf(text: &str) -> Result<LvmConf, LvmConfError> {
    let tokens = lvm_tokens(text)?;
    let mut conf = LvmConf::default();
    let mut sections: Vec<String> = Vec::new();
    let mut i = 0;
    let err = |line: usize, message: String| LvmConfError { line, message };
    while i < tokens.len() {
        let (line, token) = &tokens[i];
        match token {
            LvmToken::Punct('}') => {
                if sections.pop().is_none() {
                    return Err(err(*line, "`}` closes no section".into()));
                }
                i += 1;
            }
            LvmToken::Word(name) => match tokens.get(i + 1) {
                Some((_, LvmToken::Punct('{'))) => {
                    sections.push(name.clone());
                    i += 2;
                }
                Some((_, LvmToken::Punct('='))) => {
                    let key = sections
                        .iter()
                        .chain(std::iter::once(name))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("/");
                    let (value, next) = lvm_value(&tokens, i + 2, *line)?;
                    conf.values.insert(key, value);
                    i = next;
                }
                _ => return Err(err(*line, format!("expected `=` or `{{` after `{name}`"))),
            },
            other => return Err(err(*line, format!("unexpected {other:?}"))),
        }
    }
    if let Some(open) = sections.last() {
        return Err(err(
            text.lines().count(),
            format!("section `{open}` is not closed"),
        ));
    }
    Ok(conf)
}

fn lvm_value(
    tokens: &[(usize, LvmToken)],
    at: usize,
    line: usize,
) -> Result<(LvmValue, usize), LvmConfError> {
    let err = |message: &str| LvmConfError {
        line,
        message: message.into(),
    };
    match tokens.get(at) {
        Some((_, LvmToken::Str(s))) => Ok((LvmValue::Str(s.clone()), at + 1)),
        Some((_, LvmToken::Word(w))) => Ok((LvmValue::Number(w.clone()), at + 1)),
        Some((_, LvmToken::Punct('['))) => {
            let mut items = Vec::new();
            let mut i = at + 1;
            loop {
                match tokens.get(i) {
                    Some((_, LvmToken::Punct(']'))) => return Ok((LvmValue::Array(items), i + 1)),
                    Some((_, LvmToken::Punct(','))) => i += 1,
                    Some((_, LvmToken::Str(s) | LvmToken::Word(s))) => {
                        items.push(s.clone());
                        i += 1;
                    }
                    _ => return Err(err("an array is not closed with `]`")),
                }
            }
        }
        _ => Err(err("expected a value after `=`")),
    }
}

/// Whether LVM, with `patterns` (a `filter` or `global_filter` array), rejects a device known
/// by `names`, by lvm.conf's rule: each name takes the first pattern that matches it; the
/// device is accepted if any name is accepted that way, rejected if some name is rejected and
/// none accepted, and accepted when no pattern matches any name.
pub fn lvm_filter_rejects(patterns: &[String], names: &[&str]) -> Result<bool, String> {
    let mut compiled = Vec::new();
    for p in patterns {
        let mut chars = p.chars();
        let (Some(action), Some(delim)) = (chars.next(), chars.next()) else {
            return Err(format!("pattern {p:?} is too short"));
        };
        if action != 'a' && action != 'r' {
            return Err(format!("pattern {p:?} does not start with `a` or `r`"));
        }
        let body: String = chars.collect();
        let Some(re) = body.strip_suffix(delim) else {
            return Err(format!(
                "pattern {p:?} does not end with its delimiter {delim:?}"
            ));
        };
        let re = regex::Regex::new(re).map_err(|e| format!("pattern {p:?}: {e}"))?;
        compiled.push((action == 'a', re));
    }
    let mut rejected = false;
    for name in names {
        match compiled.iter().find(|(_, re)| re.is_match(name)) {
            Some((true, _)) => return Ok(false),
            Some((false, _)) => rejected = true,
            None => {}
        }
    }
    Ok(rejected)
}

/// Whether a block device path is an LVM logical volume by its name: `/dev/mapper/…` or
/// `/dev/VG/LV` (a directory of /dev that is not one of the kernel's or udev's).
pub fn is_lvm_volume(disk: &str) -> bool {
    const NOT_VGS: [&str; 10] = [
        "disk", "drbd", "md", "mapper", "block", "char", "bus", "zvol", "bcache", "loop",
    ];
    let Some(rest) = disk.strip_prefix("/dev/") else {
        return false;
    };
    if rest.starts_with("mapper/") {
        return rest.len() > "mapper/".len();
    }
    let parts: Vec<&str> = rest.split('/').collect();
    parts.len() == 2 && parts.iter().all(|p| !p.is_empty()) && !NOT_VGS.contains(&parts[0])
}

/// What /etc/lvm gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LvmConfFact {
    Missing,
    Unreadable(String),
    Read(Result<LvmConf, LvmConfError>),
}

/// The LVM advice for DRBD: no persistent device cache, and, where a DRBD disk is an LVM
/// volume, a filter that keeps LVM off the DRBD devices. `lvm_disks`: (resource, backing disk)
/// of this node that are LVM volumes.
pub fn lvm(
    conf_path: &Path,
    cache_path: &Path,
    conf: &LvmConfFact,
    cache_exists: bool,
    lvm_disks: &[(String, String)],
) -> Vec<Finding> {
    let subject = conf_path.display().to_string();
    let conf = match conf {
        LvmConfFact::Missing => {
            return vec![Finding::skipped(
                Area::Lvm,
                subject,
                "no lvm.conf: LVM is not installed",
            )];
        }
        LvmConfFact::Unreadable(why) => {
            return vec![Finding::error(
                Area::Lvm,
                subject,
                format!("cannot read it: {why}"),
                format!("make {} a readable file", conf_path.display()),
            )];
        }
        LvmConfFact::Read(Err(e)) => {
            return vec![Finding::error(
                Area::Lvm,
                subject,
                format!("cannot parse it: {e}"),
                "fix it there (`lvmconfig --validate` checks it)",
            )];
        }
        LvmConfFact::Read(Ok(conf)) => conf,
    };
    let mut out = Vec::new();
    match conf.values.get("devices/write_cache_state") {
        Some(LvmValue::Number(n)) if n == "0" => {
            out.push(Finding::ok(Area::Lvm, &subject, "write_cache_state = 0"))
        }
        None if !cache_exists => out.push(Finding::ok(
            Area::Lvm,
            &subject,
            "write_cache_state not set, and no device cache file (LVM 2.03 and later keep none)",
        )),
        other => out.push(Finding::warn(
            Area::Lvm,
            &subject,
            format!(
                "write_cache_state is {}: LVM keeps a device cache that can name a DRBD device or its backing disk after a role change",
                match other {
                    Some(LvmValue::Number(n) | LvmValue::Str(n)) => n.clone(),
                    Some(LvmValue::Array(_)) => "an array".to_string(),
                    None => "not set (1, the default of LVM before 2.03)".to_string(),
                }
            ),
            "set `write_cache_state = 0` in the devices section of lvm.conf",
        )),
    }
    if cache_exists {
        out.push(Finding::warn(
            Area::Lvm,
            cache_path.display().to_string(),
            "the device cache file exists: LVM may use stale device names from it",
            format!(
                "remove it (`rm {}`) once write_cache_state = 0",
                cache_path.display()
            ),
        ));
    }
    if lvm_disks.is_empty() {
        return out;
    }
    let on_lvm = lvm_disks
        .iter()
        .map(|(res, disk)| format!("{disk} (resource {res})"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut names: Vec<String> = vec!["/dev/drbd0".into(), "/dev/drbd1".into()];
    names.extend(
        lvm_disks
            .iter()
            .map(|(res, _)| format!("/dev/drbd/by-res/{res}/0")),
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut rejected_by = None;
    for key in ["devices/global_filter", "devices/filter"] {
        let patterns = match conf.values.get(key) {
            None => continue,
            Some(LvmValue::Array(p)) => p.clone(),
            Some(LvmValue::Str(p)) => vec![p.clone()],
            Some(LvmValue::Number(n)) => vec![n.clone()],
        };
        match lvm_filter_rejects(&patterns, &names) {
            Ok(true) => {
                rejected_by = Some(key);
                break;
            }
            Ok(false) => {}
            Err(why) => out.push(Finding::warn(
                Area::Lvm,
                &subject,
                format!("{key} cannot be read: {why}"),
                "write each pattern as \"a|REGEX|\" or \"r|REGEX|\"",
            )),
        }
    }
    match rejected_by {
        Some(key) => out.push(Finding::ok(
            Area::Lvm,
            &subject,
            format!(
                "{} rejects the DRBD devices (/dev/drbd*); DRBD disks on LVM: {on_lvm}",
                key.trim_start_matches("devices/")
            ),
        )),
        None => out.push(Finding::warn(
            Area::Lvm,
            &subject,
            format!(
                "DRBD disks are LVM volumes ({on_lvm}), and neither global_filter nor filter rejects the DRBD devices: LVM scans /dev/drbd* and can find the volumes' own LVM signatures through them"
            ),
            "add `global_filter = [ \"r|^/dev/drbd|\", \"a|.*|\" ]` to the devices section of lvm.conf (keep your other patterns before `a|.*|`)",
        )),
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Filesystems

/// How this node can mount a filesystem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsTypeFact {
    pub fstype: String,
    /// Listed in /proc/filesystems: the kernel has it now.
    pub in_kernel: bool,
    /// A `mount.TYPE` helper.
    pub helper: Option<PathBuf>,
    /// A kernel module for it, not loaded.
    pub module: Option<PathBuf>,
    /// The services mounting it.
    pub used_by: Vec<String>,
}

pub fn fs_type(fact: &FsTypeFact) -> Finding {
    let t = &fact.fstype;
    let subject = format!("type {t}");
    if fact.in_kernel {
        return Finding::ok(
            Area::Fs,
            subject,
            "supported by the kernel (/proc/filesystems)",
        );
    }
    if let Some(helper) = &fact.helper {
        return Finding::ok(
            Area::Fs,
            subject,
            format!("mounted through {}", helper.display()),
        );
    }
    if let Some(module) = &fact.module {
        return Finding::warn(
            Area::Fs,
            subject,
            format!(
                "not loaded; mount will try to load the module {}",
                module.display()
            ),
            format!(
                "load it now to be sure it works (`modprobe {t}`), and at boot (/etc/modules-load.d)"
            ),
        );
    }
    Finding::error(
        Area::Fs,
        subject,
        format!(
            "the kernel does not support it (not in /proc/filesystems, no module, no mount.{t} helper); used by {}",
            fact.used_by.join(", ")
        ),
        format!("install the kernel module or tools for {t}, or fix `type:` in the manifest"),
    )
}

/// The checker of ext2/3/4 filesystems that are checked before mounting: `found` is where
/// `program` resolves, `None` when it does not.
pub fn fsck(program: &str, found: Option<&Path>, used_by: &[String]) -> Finding {
    let subject = format!("checker {program}");
    match found {
        Some(path) => Finding::ok(
            Area::Fs,
            subject,
            format!("{} checks ext filesystems before mounting", path.display()),
        ),
        None => Finding::error(
            Area::Fs,
            subject,
            format!(
                "not found: mounting the ext filesystems of {} runs it first, and fails",
                used_by.join(", ")
            ),
            "install e2fsprogs, or set commands.e2fsck in the configuration",
        ),
    }
}

/// A mount point below another service's: unmounting the outer one is blocked while the inner
/// one is mounted, and each service goes its own way.
pub fn mount_nesting(services: &[Service]) -> Vec<Finding> {
    let mounts: Vec<(&str, &Path)> = services
        .iter()
        .flat_map(|s| {
            s.resources
                .iter()
                .filter(|r| !r.disabled)
                .filter_map(|r| r.spec.as_fs())
                .map(move |fs| (s.name.as_str(), fs.mnt.as_path()))
        })
        .collect();
    let mut out = Vec::new();
    for (inner_service, inner) in &mounts {
        for (outer_service, outer) in &mounts {
            if inner_service != outer_service && inner != outer && inner.starts_with(outer) {
                out.push(Finding::error(
                    Area::Fs,
                    inner.display().to_string(),
                    format!(
                        "mount point of service {inner_service} is below {} of service {outer_service}: while it is mounted {outer_service} cannot unmount, and it cannot be mounted until {outer_service}'s is",
                        outer.display()
                    ),
                    format!(
                        "move it out of {}, or make both one service (one stack, mounted in order)",
                        outer.display()
                    ),
                ));
            }
        }
    }
    if out.is_empty() && !mounts.is_empty() {
        out.push(Finding::ok(
            Area::Fs,
            "mount points",
            "none is below another service's",
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Containers

/// The tools a container type needs: (program as configured, config key, where it resolves).
pub fn container_tools(
    kind: &str,
    install: &str,
    tools: &[(String, &str, Option<PathBuf>)],
) -> Vec<Finding> {
    let missing: Vec<&(String, &str, Option<PathBuf>)> = tools
        .iter()
        .filter(|(_, _, found)| found.is_none())
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = tools.iter().map(|(p, _, _)| p.as_str()).collect();
        return vec![Finding::ok(
            Area::Container,
            format!("{kind} tools"),
            format!("found: {}", names.join(", ")),
        )];
    }
    missing
        .into_iter()
        .map(|(program, key, _)| {
            Finding::error(
                Area::Container,
                program.clone(),
                format!(
                    "not found (not in PATH, or not an executable file); {kind} containers need it"
                ),
                format!("{install}, or set commands.{key} in the configuration"),
            )
        })
        .collect()
}

/// An LXC container's root filesystem directory from its config (`lxc.rootfs.path`, or the
/// older `lxc.rootfs`), `dir:` stripped; `Err` with the value for another storage type
/// (`lvm:`, `zfs:`, `overlay:` …).
pub fn lxc_rootfs(config: &str) -> Option<Result<PathBuf, String>> {
    let value = crate::observe::lxc::parse_config_value(config, "lxc.rootfs.path")
        .or_else(|| crate::observe::lxc::parse_config_value(config, "lxc.rootfs"))?;
    let path = value.strip_prefix("dir:").unwrap_or(&value);
    if path.starts_with('/') {
        Some(Ok(PathBuf::from(path)))
    } else {
        Some(Err(value))
    }
}

/// What was found of an LXC container on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LxcFact {
    pub service: String,
    pub name: String,
    /// Where its config is (`LXCPATH/NAME/config`).
    pub config_path: PathBuf,
    /// Its text, or why there is none.
    pub config: Result<String, String>,
    /// The config is absent because it does not exist (not another error).
    pub missing: bool,
    /// The mount points of the service's filesystems.
    pub mounts: Vec<PathBuf>,
}

pub fn lxc_container(fact: &LxcFact) -> Finding {
    let subject = format!("lxc {} (service {})", fact.name, fact.service);
    let config_path = fact.config_path.display();
    let text = match &fact.config {
        Ok(text) => text,
        Err(why) => {
            // A config on the service's own filesystem shows only while it is mounted.
            if fact.missing && fact.mounts.iter().any(|m| fact.config_path.starts_with(m)) {
                return Finding::skipped(
                    Area::Container,
                    subject,
                    format!(
                        "{config_path} is on the service's filesystem, which is not mounted here now"
                    ),
                );
            }
            return Finding::error(
                Area::Container,
                subject,
                format!("no configuration on this node: {why}"),
                format!(
                    "create the container here (its config at {config_path}), or keep its lxcpath on the service's filesystem"
                ),
            );
        }
    };
    match lxc_rootfs(text) {
        None => Finding::warn(
            Area::Container,
            subject,
            format!("{config_path} sets no lxc.rootfs.path"),
            format!(
                "set `lxc.rootfs.path = dir:PATH` in {config_path}, PATH on one of the service's fs mount points"
            ),
        ),
        Some(Err(value)) => Finding::skipped(
            Area::Container,
            subject,
            format!("rootfs {value} is not a directory: where it lives is not checked"),
        ),
        Some(Ok(rootfs)) => {
            if let Some(mount) = fact.mounts.iter().find(|m| rootfs.starts_with(m)) {
                Finding::ok(
                    Area::Container,
                    subject,
                    format!(
                        "rootfs {} is on the service's filesystem {}",
                        rootfs.display(),
                        mount.display()
                    ),
                )
            } else {
                Finding::warn(
                    Area::Container,
                    subject,
                    format!(
                        "rootfs {} is not below any of the service's fs mount points ({}): the container's data would not move with the DRBD disk",
                        rootfs.display(),
                        if fact.mounts.is_empty() {
                            "it has none".to_string()
                        } else {
                            fact.mounts
                                .iter()
                                .map(|m| m.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                    format!(
                        "move the rootfs onto the service's filesystem and set lxc.rootfs.path in {config_path}"
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
