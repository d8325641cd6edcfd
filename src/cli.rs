//! The command line: clap commands → library calls → exit codes. Nothing else lives here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::manual::{self, Shell};
use crate::render;
use converge_core::config::Config;
use converge_core::escape::Escaped;
use converge_core::manifest::load::ParseCache;
use converge_core::manifest::{self, Service};
use converge_core::plan::{self};
use converge_core::status::ServiceStatus;
use converge_node::controller::lock;
use converge_node::controller::once::{self};
use converge_node::observer::Observer;
use converge_node::secure;
use converge_node::trust::{self, Untrusted};

/// Exit codes, shared by every command that plans.
pub mod exit {
    /// Valid, converged, nothing to do.
    pub const OK: u8 = 0;
    /// An error: invalid input, an unreadable file, a failed action.
    pub const ERROR: u8 = 1;
    /// `plan`: changes are needed.
    pub const CHANGES: u8 = 2;
}

/// What `converge --version` says: the version and the git revision it was built from
/// (`unknown` for a build without git: see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("CONVERGE_GIT_REVISION"),
    ")"
);

/// A command's exit codes, as the section of its long help that the manual pages turn into
/// their EXIT STATUS ([`crate::manual`]): one `N  meaning` line per code; a line indented
/// further continues the one above.
macro_rules! exit_status {
    ($($line:literal),+ $(,)?) => {
        concat!("Exit status:\n", $("  ", $line, "\n"),+)
    };
}

/// Keeps DRBD-backed services on this node as their manifests say
///
/// A service is an ordered stack of resources: a DRBD disk, a filesystem on it, a container
/// (OpenVZ or LXC) and the app scripts inside, written in a YAML manifest as `up` or `down`.
/// converge observes this node, plans the difference and acts until the node matches, never
/// promoting beside a Primary peer nor demoting under a mount. It is node-local: which node
/// runs a service is set by the manifest, or decided from DRBD's quorum with `failover: auto`.
#[derive(Debug, Parser)]
#[command(name = "converge", version = VERSION, after_long_help = exit_status!(
    "0  success: valid, converged, nothing to do",
    "1  an error, a command-line error included",
    "2  plan, status: changes needed; doctor: warnings",
    "3  reconcile: a safety rule blocks a service",
    "4  reconcile: a service waits (for a peer, or for DRBD)",
    "Each command's own codes are in its help: converge help COMMAND.",
))]
pub struct Cli {
    /// Node configuration file [default: /etc/converge/config.yaml, all defaults when missing]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// How a command prints its result, or writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

// `--output` of the commands that print a result and write no log. (Plain comments on the
// flattened structs: clap would take a doc comment for the command's own description.)
#[derive(Debug, Args)]
pub struct Output {
    /// How the result is printed: text for people, json for programs
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t)]
    output: Format,
    /// The former name of `--output json`, kept for existing scripts
    #[arg(long, hide = true, conflicts_with = "output")]
    json: bool,
}

impl Output {
    fn format(&self) -> Format {
        if self.json { Format::Json } else { self.output }
    }
}

// For the commands that read no node configuration: the global `--config` is hidden from their
// help (clap does not put a global option on a command that has one of its name) and refused
// when given, so that no one believes it was used.
#[derive(Debug, Args)]
pub struct NoConfig {
    #[arg(long, hide = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifests: every error, with file:line:column
    ///
    /// Loads every manifest of the directory and reports every problem as
    /// `file:line:column: field: message`, warnings included. A `failover: auto` service is also
    /// checked against this node's DRBD configuration (`drbdadm dump`: quorum that survives a
    /// node loss, its nodes hosts with a disk), or said unchecked where that cannot be read. A
    /// DRBD resource file a manifest names (`config:`) is checked by drbdadm: an error at the
    /// `config:` key, with drbdadm's own message. Changes nothing: fit for CI, before a merge.
    #[command(after_long_help = exit_status!(
        "0  every manifest is valid",
        "1  some manifest is invalid, or an error",
    ))]
    Validate {
        /// Manifest directory [default: `manifests` from the node configuration]
        dir: Option<PathBuf>,
    },
    /// Show what it would take for this node to match the manifests
    ///
    /// Observes this node and prints, per service, the actions still needed, each with its
    /// reason and the commands it runs (down to each script of an app), and what blocks. Changes
    /// nothing and writes nothing. `--output json` prints the observation and the plan.
    #[command(after_long_help = exit_status!(
        "0  nothing to do",
        "2  changes needed, or refused by a safety rule",
        "1  an error (an invalid manifest, an unreadable file)",
    ))]
    Plan {
        /// Manifest directory [default: `manifests` from the node configuration]
        dir: Option<PathBuf>,
        #[command(flatten)]
        output: Output,
    },
    /// Act until this node matches the manifests, then exit
    ///
    /// Observe, plan, run the first action, observe again…, per service, until every service is
    /// converged, blocked, waiting or failed. A start that fails midway is rolled back. Takes
    /// the node's lock: refused while `converge run` or another reconcile holds it. It always
    /// runs once and exits (the daemon is `converge run`): `--once` may be left out, and is
    /// accepted for existing scripts. `--dry-run` prints the plan and runs nothing.
    ///
    /// The log lines of the actions go to stdout as they run, then the report, one line per
    /// service (with `--output json`: the report as one JSON line, the last).
    #[command(after_long_help = exit_status!(
        "0  every service converged",
        "1  an action failed, a service is stuck, a manifest or the configuration is",
        "   refused, another converge holds the lock, or an error",
        "3  a safety rule blocks a service (none failed)",
        "4  a service waits for a peer to step down or come into sight, or for the",
        "   system to bring DRBD up (none failed or blocked)",
        "With --dry-run, those of converge plan.",
    ))]
    Reconcile {
        /// What reconcile always does: run once, then exit (accepted for existing scripts)
        #[arg(long)]
        once: bool,
        /// Manifest directory [default: `manifests` from the node configuration]
        dir: Option<PathBuf>,
        /// Print the plan and run nothing (exit codes as `converge plan`)
        #[arg(long)]
        dry_run: bool,
        /// How the report (with --dry-run: the plan) is printed: text, or json for programs
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t)]
        output: Format,
        /// How the log lines are written: the OpenSVC agent's text, or json lines
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t)]
        log_format: Format,
        /// The former flag: json log lines and a json report (`--log-format json --output json`)
        #[arg(long, hide = true, conflicts_with_all = ["output", "log_format"])]
        json: bool,
    },
    /// Reconcile one service now, and wait for the result
    ///
    /// With `converge run` running, asks it (through its control socket in `state_dir`, which
    /// only root can reach) to reconcile the service now, cancelling any backoff, and waits for
    /// a reconcile that starts after the request to end. Without a daemon, reconciles that one
    /// service as `converge reconcile` would, taking the node's lock.
    #[command(after_long_help = exit_status!(
        "0  the service converged",
        "1  it failed or is stuck, no such service is in force, no answer in time, or an error",
        "3  a safety rule blocks it",
        "4  it waits for a peer to step down or come into sight",
    ))]
    Trigger {
        /// The service, as its manifest names it (`service:`)
        service: String,
        /// Manifest directory, without a daemon [default: `manifests` from the node
        /// configuration]
        dir: Option<PathBuf>,
        /// How long to wait for the daemon's answer
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// How the result is printed: text, or json for programs
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t)]
        output: Format,
    },
    /// Run as the daemon: keep this node as the manifests say
    ///
    /// Reacts to manifest edits (GitOps symlink swaps included), DRBD events and mount changes,
    /// with a periodic resync, and logs why each reconcile started. SIGHUP resyncs now;
    /// SIGTERM and SIGINT let the running action finish, then exit: services are never stopped
    /// because converge stops. Takes the node's lock, as `reconcile` does. It prints no result
    /// of its own: its log, and `converge status` for its view.
    #[command(after_long_help = exit_status!(
        "0  stopped by SIGTERM or SIGINT",
        "1  it cannot start (an untrusted configuration or manifest directory, another",
        "   converge holds the lock) or stops on an error",
    ))]
    Run {
        /// Manifest directory (may be a symlink that is swapped) [default: `manifests` from the
        /// node configuration]
        dir: Option<PathBuf>,
        /// How the log lines are written: the OpenSVC agent's text, or json lines
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t)]
        log_format: Format,
        /// The former name of `--log-format json`, kept for existing scripts
        #[arg(long, hide = true, conflicts_with = "log_format")]
        json: bool,
        /// Also log debug events: what the watchers saw, reloads that found nothing new,
        /// batched looks
        #[arg(long, short)]
        verbose: bool,
    },
    /// Show each service and resource as observed now
    ///
    /// Each resource up, down, warn, n/a or stdby up, with a detail line; per service where it
    /// runs (the nodes DRBD shows Primary), what it waits for or what blocks it, and every DRBD
    /// peer with its role, disk and connection; a DRBD resource file refused or not applied
    /// yet, and drift of the running resource from its file. While `converge run` runs, its view
    /// instead: manifest errors, last results, next retries. Changes nothing.
    #[command(after_long_help = exit_status!(
        "0  every service converged",
        "2  some service is not (or, from the daemon's view, not settled yet, or a",
        "   manifest has an error)",
        "1  an error",
    ))]
    Status {
        /// Manifest directory [default: `manifests` from the node configuration]
        dir: Option<PathBuf>,
        #[command(flatten)]
        output: Output,
    },
    /// Check this node before converge is trusted with it
    ///
    /// A read-only preflight: the DRBD module and drbd-utils, each DRBD resource's configuration
    /// and `.res` file, LVM's settings for DRBD, filesystem and container support, and
    /// converge's own files, permissions and systemd unit; each finding with what to do. It
    /// changes nothing and runs only listing and version programs.
    #[command(after_long_help = exit_status!(
        "0  all good",
        "2  warnings only",
        "1  an error found, or the check could not run",
    ))]
    Doctor {
        #[command(flatten)]
        output: Output,
    },
    /// Print the completion script for a shell
    ///
    /// Generated from this binary's command line. Installed for bash in
    /// /usr/share/bash-completion/completions/converge, for zsh as `_converge` in a directory
    /// of `$fpath` (/usr/share/zsh/vendor-completions), for fish in
    /// /usr/share/fish/vendor_completions.d/converge.fish.
    #[command(after_long_help = exit_status!(
        "0  printed",
        "1  an error (a node configuration given, stdout not writable)",
    ))]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: Shell,
        #[command(flatten)]
        no_config: NoConfig,
    },
    /// Write the manual pages: converge.1, and one per command
    ///
    /// `converge.1`, and `converge-COMMAND.1` for each command `converge help` lists, generated
    /// from this binary's command line, for a package build: the pages name the commands of the
    /// binary that runs this (a packaged build has no `demo`). Hidden from `converge help`.
    #[command(hide = true, after_long_help = exit_status!(
        "0  written",
        "1  an error (a node configuration given, a page not writable)",
    ))]
    Man {
        /// Where the pages are written (created if missing)
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        no_config: NoConfig,
    },
    /// Bring a service up and down on a sandboxed node, showing the log
    ///
    /// The OpenSVC documentation's service on a sandboxed node: simulated DRBD behind the real
    /// drbdadm, a loop device with ext3, a real LXC container when LXC is installed, a
    /// simulated OpenVZ one otherwise. With `--nodes 2`, simulated nodes each run `converge
    /// run` and the service moves between them; with `--failover`, a node loses power and
    /// another takes the service over. Needs root; everything is removed at the end. It writes
    /// each simulated node's configuration itself, and refuses to be given one. Development
    /// builds only: a packaged converge has no simulators.
    #[cfg(feature = "sim")]
    #[command(after_long_help = exit_status!(
        "0  done",
        "1  a failure or Ctrl-C (after cleaning up)",
    ))]
    Demo {
        /// Simulated nodes: 1 brings the service up and down on one; 2 or 3 run a daemon on
        /// each and move the service from the first to the last by editing `node:`, and back
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
        nodes: u8,
        /// Automatic failover instead: deb1 and deb2 with data, tb a diskless tiebreaker
        /// (DRBD quorum), the service on deb1 with `failover: auto`; deb1 loses power, deb2
        /// takes the service over, deb1 comes back and stands by
        #[arg(long, conflicts_with = "nodes")]
        failover: bool,
        #[command(flatten)]
        no_config: NoConfig,
    },
}

/// Runs the command line; errors are printed here, in one clear line each.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(command_line_error(&e)),
    };
    let code = match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("converge: {message}");
            exit::ERROR
        }
    };
    ExitCode::from(code)
}

/// What clap says, and the exit code: 0 for `--help` and `--version`, 1 for a command-line
/// error. (clap's own 2 would read as `plan`'s and `status`'s "changes needed".)
fn command_line_error(e: &clap::Error) -> u8 {
    // A closed stdout (`converge --help | head`) or stderr leaves nothing to tell anyone.
    let _ = e.print();
    if e.use_stderr() {
        exit::ERROR
    } else {
        exit::OK
    }
}

fn run(cli: Cli) -> Result<u8, String> {
    let config_path = cli.config;
    // What decides what root runs is checked by every command: refused by those that act,
    // reported as warnings by those that only look.
    let load = |trust: Trust| {
        let config = Config::load(config_path.as_deref()).map_err(|e| e.to_string())?;
        check_config(config_path.as_deref(), &config, trust)?;
        Ok::<Config, String>(config)
    };
    match cli.command {
        Command::Validate { dir } => {
            let config = load(Trust::Warn)?;
            validate(&config, &manifest_dir(&config, dir))
        }
        Command::Plan { dir, output } => {
            let config = load(Trust::Warn)?;
            plan_command(&config, &manifest_dir(&config, dir), output.format())
        }
        Command::Reconcile {
            once: _,
            dir,
            dry_run,
            output,
            log_format,
            json,
        } => {
            // The former `--json` meant both: JSON log lines, then the report as JSON.
            let (output, log_format) = if json {
                (Format::Json, Format::Json)
            } else {
                (output, log_format)
            };
            if dry_run {
                let config = load(Trust::Warn)?;
                return plan_command(&config, &manifest_dir(&config, dir), output);
            }
            let config = load(Trust::Refuse)?;
            let dir = manifest_dir(&config, dir);
            reconcile_command(config, &dir, output, log_format)
        }
        Command::Trigger {
            service,
            dir,
            timeout,
            output,
        } => {
            let config = load(Trust::Refuse)?;
            trigger_command(config, dir, &service, timeout, output)
        }
        Command::Run {
            dir,
            log_format,
            json,
            verbose,
        } => {
            let log_format = if json { Format::Json } else { log_format };
            let config = load(Trust::Refuse)?;
            let dir = manifest_dir(&config, dir);
            run_daemon(config, dir, log_format, verbose)
        }
        Command::Status { dir, output } => {
            let config = load(Trust::Warn)?;
            status_command(&config, &manifest_dir(&config, dir), output.format())
        }
        Command::Doctor { output } => {
            crate::doctor::run(config_path.as_deref(), output.format() == Format::Json)
        }
        Command::Completions { shell, no_config } => {
            refuse_config(
                "completions",
                config_path.as_ref().or(no_config.config.as_ref()),
            )?;
            let script = manual::completions(shell, Cli::command());
            write_stdout(&script, "the completion script")?;
            Ok(exit::OK)
        }
        Command::Man { dir, no_config } => {
            refuse_config("man", config_path.as_ref().or(no_config.config.as_ref()))?;
            let written = manual::write_pages(Cli::command(), &dir)?;
            let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            write_stdout(
                format!("{}\n", names.join("\n")).as_bytes(),
                "the pages' names",
            )?;
            Ok(exit::OK)
        }
        #[cfg(feature = "sim")]
        Command::Demo {
            nodes,
            failover,
            no_config,
        } => {
            refuse_config("demo", config_path.as_ref().or(no_config.config.as_ref()))?;
            crate::demo::run(nodes, failover)
        }
    }
}

/// A command that reads no node configuration refuses `--config` rather than ignore it.
fn refuse_config(command: &str, config: Option<&PathBuf>) -> Result<(), String> {
    match config {
        None => Ok(()),
        Some(path) => Err(format!(
            "{command} reads no node configuration: --config {} would not be used",
            Escaped(&path.to_string_lossy())
        )),
    }
}

/// Writes `bytes` to stdout; a closed pipe (`converge completions bash | head`) is no error.
fn write_stdout(bytes: &[u8], what: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write {what}: {e}"))
        }
        _ => Ok(()),
    }
}

/// What a command does with a path root may not trust (see [`trust`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// It acts: refuse.
    Refuse,
    /// It only looks: say so.
    Warn,
}

fn warn_untrusted(problems: &[Untrusted]) {
    for problem in problems {
        eprintln!("warning: {problem}");
    }
}

/// The node configuration names every program converge runs: its file (the one named, or the
/// default when it exists) and each program it names by path must be root's alone.
fn check_config(path: Option<&Path>, config: &Config, trust: Trust) -> Result<(), String> {
    let file = path.unwrap_or(Path::new(converge_core::config::DEFAULT_CONFIG_PATH));
    let mut problems = Vec::new();
    if path.is_some() || file.exists() {
        problems.extend(trust::check(file, "config file").err());
    }
    // Where each program is found now (a bare name through PATH, as it will be run): what is
    // not found runs nothing yet, and is checked again right before each spawn all the same.
    for program in config.commands.programs() {
        if let Some(found) = converge_node::exec::resolve(&program).filter(|p| p.exists()) {
            problems.extend(trust::check(&found, "program named by the config").err());
        }
    }
    match trust {
        _ if problems.is_empty() => Ok(()),
        Trust::Warn => {
            warn_untrusted(&problems);
            Ok(())
        }
        Trust::Refuse => Err(problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\nconverge: ")),
    }
}

/// A service refused, with what root may not trust in it.
type Refused = (String, Vec<Untrusted>);

/// The manifest directory and what each service makes root run. A directory root may not
/// trust refuses everything (`Err`); a service that is refused is left out and returned with
/// its problems, for the report.
fn check_manifests(
    dir: &Path,
    services: Vec<Service>,
    trust: Trust,
) -> Result<(Vec<Service>, Vec<Refused>), String> {
    if let Err(problem) = trust::check(dir, "manifest directory") {
        match trust {
            Trust::Refuse => return Err(problem.to_string()),
            Trust::Warn => warn_untrusted(&[problem]),
        }
    }
    let mut kept = Vec::with_capacity(services.len());
    let mut refused = Vec::new();
    let mut checks = trust::Checks::default();
    for service in services {
        let problems = trust::check_manifest(&service, &mut checks);
        match trust {
            _ if problems.is_empty() => kept.push(service),
            Trust::Warn => {
                warn_untrusted(&problems);
                kept.push(service);
            }
            Trust::Refuse => refused.push((service.name, problems)),
        }
    }
    Ok((kept, refused))
}

fn manifest_dir(config: &Config, dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| config.manifests.clone())
}

fn validate(config: &Config, dir: &Path) -> Result<u8, String> {
    // Lenient loading finds the same errors as a strict one, and keeps the warnings, which are
    // said whether or not there are errors.
    let loaded = manifest::load::load_dir_lenient_cached(dir, &mut ParseCache::default());
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    if !loaded.errors.is_empty() {
        eprintln!("{}", manifest::LoadErrors(loaded.errors));
        return Ok(exit::ERROR);
    }
    let services = manifest::load::owned(loaded.services);
    if let Err(e) = check_manifests(dir, services.clone(), Trust::Warn) {
        eprintln!("warning: {e}");
    }
    let (mut errors, mut warnings) = res_files_against_drbd(config, &services)?;
    let (more_errors, more_warnings) = failover_against_drbd(config, &services)?;
    errors.extend(more_errors);
    warnings.extend(more_warnings);
    for warning in &warnings {
        eprintln!("{warning}");
    }
    if !errors.is_empty() {
        eprintln!("{}", manifest::LoadErrors::new(errors));
        return Ok(exit::ERROR);
    }
    let n = services.len();
    println!(
        "{}: {n} service{} valid",
        Escaped(&dir.to_string_lossy()),
        if n == 1 { "" } else { "s" }
    );
    Ok(exit::OK)
}

/// Each DRBD resource file a manifest names (`config:`), as drbdadm reads it in place of the
/// installed one: an error, at the `config:` key, where drbdadm refuses it or it cannot be
/// read; a warning where it has no section for this node (checked as far as drbdadm goes)
/// or drbdadm is not installed (not checked).
fn res_files_against_drbd(
    config: &Config,
    services: &[Service],
) -> Result<(Vec<manifest::LoadError>, Vec<manifest::LoadError>), String> {
    use converge_node::observer::drbd_file::{self, Check};
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let mut runtime = None;
    for service in services {
        for (resource, spec, file) in service.drbd_files() {
            let rid = resource.id.to_string();
            let at = |message: String| {
                manifest::load::error_at_path(service, &["resources", &rid, "config"], message)
            };
            if let Err(e) = secure::read_input(&file, drbd_file::MAX_RES_FILE_BYTES) {
                errors.push(at(format!("cannot read {}: {e}", file.display())));
                continue;
            }
            let runtime = match &mut runtime {
                Some(runtime) => runtime,
                None => runtime.insert(self::runtime()?),
            };
            let installed = spec.installed_file(&config.drbd_conf_dir);
            match runtime.block_on(drbd_file::check(config, &file, &installed, &spec.res)) {
                Check::Accepted => {}
                Check::Refused(why) => {
                    errors.push(at(format!("drbdadm refuses {}: {why}", file.display())));
                }
                Check::NotHere => warnings.push(at(format!(
                    "warning: {} has no section for this node ({}): checked as far as drbdadm goes on a node it does not name",
                    file.display(),
                    config.node
                ))),
                Check::Unchecked(why) => warnings.push(at(format!(
                    "warning: {} not checked with drbdadm ({why})",
                    file.display()
                ))),
            }
        }
    }
    Ok((errors, warnings))
}

/// Each `failover: auto` service against its DRBD resource as this node's DRBD configuration
/// defines it (`drbdadm dump RES`): errors where failing over cannot work (no quorum, quorum
/// that no survivor keeps, a listed node that is not a host or has no disk), warnings where an
/// option works against it. Where the configuration cannot be read (no drbd-utils, the resource
/// not defined for this host: a CI runner, a workstation) nothing is checked, and a warning
/// says so.
fn failover_against_drbd(
    config: &Config,
    services: &[Service],
) -> Result<(Vec<manifest::LoadError>, Vec<manifest::LoadError>), String> {
    let failing_over: Vec<(&Service, &manifest::Failover, &manifest::DrbdSpec)> = services
        .iter()
        .filter_map(|service| {
            let failover = service.failover()?;
            let spec = service.resources.iter().find_map(|r| r.spec.as_drbd())?;
            Some((service, failover, spec))
        })
        .collect();
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    if failing_over.is_empty() {
        return Ok((errors, warnings));
    }
    let runtime = runtime()?;
    for (service, failover, spec) in failing_over {
        let res = spec.res.as_str();
        let at = |message: String| manifest::load::error_at_key(service, "failover", message);
        // Against the resource file the manifest names, when it names one: what will run.
        let file = spec.config_file(&service.source);
        let installed = spec.installed_file(&config.drbd_conf_dir);
        let file = file.as_deref().map(|f| (f, installed.as_path()));
        match runtime.block_on(converge_node::observer::drbd_configured_resource(
            config, res, file,
        )) {
            Ok(resource) => {
                let check = plan::placement::check_config(failover, res, &resource);
                errors.extend(check.errors.into_iter().map(at));
                warnings.extend(
                    check
                        .warnings
                        .into_iter()
                        .map(|w| at(format!("warning: {w}"))),
                );
            }
            Err(why) => warnings.push(at(format!(
                "warning: not checked against DRBD's configuration on this node ({why}); run `converge validate` on a node of the service to check it"
            ))),
        }
    }
    Ok((errors, warnings))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn plan_command(config: &Config, dir: &Path, output: Format) -> Result<u8, String> {
    let services = match manifest::load_dir(dir) {
        Ok(set) => set.services,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(exit::ERROR);
        }
    };
    let (services, _) = check_manifests(dir, services, Trust::Warn)?;
    trusted_state_dir(config)?;
    let observer = Observer::new(std::sync::Arc::new(config.clone())).with_drift();
    let node = runtime()?.block_on(observer.observe(&services));
    let plan = plan::plan(&services, &node);
    let mut out = std::io::stdout().lock();
    let written = if output == Format::Json {
        let doc = serde_json::json!({ "node": node, "plan": plan });
        serde_json::to_writer_pretty(&mut out, &doc)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        render::write_plan(&mut out, config, &services, &node, &plan)
    };
    // A closed pipe (`converge plan | head`) is not an error worth a message.
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(format!("cannot write the plan: {e}"));
    }
    Ok(if plan.is_converged() {
        exit::OK
    } else {
        exit::CHANGES
    })
}

fn load_services(dir: &Path) -> Option<Vec<Service>> {
    match manifest::load_dir(dir) {
        Ok(set) => Some(set.services),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

/// `converge trigger SERVICE`: asks the daemon, or without one reconciles that service alone.
fn trigger_command(
    config: Config,
    dir: Option<PathBuf>,
    service: &str,
    timeout: std::time::Duration,
    output: Format,
) -> Result<u8, String> {
    use converge_node::controller::control::{self, Answer, AskError};
    trusted_state_dir(&config)?;
    let asked = runtime()?.block_on(control::ask(&config.state_dir, service, timeout));
    let (service, result) = match asked {
        Ok(Answer::Done { service, result }) => (service, result),
        Ok(Answer::Unknown { service }) => {
            return Err(format!(
                "no service {service} is in force in the running daemon (see converge status)"
            ));
        }
        Err(AskError::NoDaemon(_)) => {
            let dir = manifest_dir(&config, dir);
            return reconcile_services(config, &dir, Some(service), output, Format::Text);
        }
        Err(e @ AskError::Timeout(_)) => {
            return Err(format!(
                "{e}: the reconcile of {service} may still run (see converge status)"
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut out = std::io::stdout().lock();
    let written = if output == Format::Json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "service": service, "result": result }),
        )
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
    } else {
        writeln!(out, "{service}: {result}")
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(format!("cannot write the result: {e}"));
    }
    Ok(result.exit_code())
}

fn reconcile_command(
    config: Config,
    dir: &Path,
    output: Format,
    log_format: Format,
) -> Result<u8, String> {
    reconcile_services(config, dir, None, output, log_format)
}

/// `reconcile --once` of every service in `dir`, or of `only` that one.
fn reconcile_services(
    config: Config,
    dir: &Path,
    only: Option<&str>,
    output: Format,
    log_format: Format,
) -> Result<u8, String> {
    let Some(mut services) = load_services(dir) else {
        return Ok(exit::ERROR);
    };
    if let Some(name) = only {
        services.retain(|s| s.name == name);
        if services.is_empty() {
            return Err(format!(
                "no service {name} in {}",
                Escaped(&dir.to_string_lossy())
            ));
        }
    }
    let (services, refused) = check_manifests(dir, services, Trust::Refuse)?;
    secure::ensure_private_dir(&config.log_dir, "log_dir").map_err(|e| e.to_string())?;
    let _lock = lock::acquire(&config.state_dir, "reconcile --once").map_err(|e| e.to_string())?;
    converge_node::act::log::init(log_format == Format::Json, false);
    take_over(&config);
    let observer = std::sync::Arc::new(Observer::new(std::sync::Arc::new(config)));
    let mut report = runtime()?.block_on(once::reconcile_once(observer, services));
    for (service, problems) in refused {
        let error = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        tracing::error!(service = %service, "{error}");
        report.services.push(once::ServiceReport {
            service,
            outcome: once::Outcome::Failed {
                steps: 0,
                error,
                rolled_back: false,
            },
        });
    }
    report.services.sort_by(|a, b| a.service.cmp(&b.service));
    let mut out = std::io::stdout().lock();
    let written = if output == Format::Json {
        serde_json::to_writer(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        render::write_report(&mut out, &report)
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(format!("cannot write the report: {e}"));
    }
    Ok(report.exit_code())
}

/// What the holder of the lock does before it observes anything: says how commands are
/// confined, moves the records of a former layout, and finds the actions a killed converge left
/// in progress (waiting for what still runs, so that nothing is run twice at once).
fn take_over(config: &Config) {
    tracing::info!("{}", converge_node::exec::confine::mode().describe());
    migrate_state(config);
    converge_node::in_progress::recover(&config.state_dir);
}

/// Moves converge's own records of a former layout, once; under the lock, which says no other
/// converge uses them.
fn migrate_state(config: &Config) {
    match converge_node::state::migrate_legacy_records(&config.state_dir) {
        Ok(0) => {}
        Ok(moved) => tracing::info!(
            "moved {moved} app record(s) to {}",
            config.state_dir.join("app-records").display()
        ),
        // Not fatal: what is not moved is only a start record, and a check-less app without
        // one is started again, as after a reboot.
        Err(e) => tracing::warn!(
            "cannot move the app records of {} to the current layout: {e}",
            config.state_dir.join("apps").display()
        ),
    }
}

fn run_daemon(
    config: Config,
    dir: PathBuf,
    log_format: Format,
    verbose: bool,
) -> Result<u8, String> {
    // Manifests make converge run scripts as root: a directory others can change is refused
    // (each manifest and what it runs is checked at every reload, and refused alone).
    trust::check(&dir, "manifest directory").map_err(|e| e.to_string())?;
    secure::ensure_private_dir(&config.log_dir, "log_dir").map_err(|e| e.to_string())?;
    let _lock = lock::acquire(&config.state_dir, "run").map_err(|e| e.to_string())?;
    converge_node::act::log::init(log_format == Format::Json, verbose);
    take_over(&config);
    let config = std::sync::Arc::new(config);
    // Before the runtime's threads start: each would take an arena of its own.
    converge_node::memory::one_arena();
    runtime()?
        .block_on(converge_node::controller::serve(config, dir))
        .map_err(|e| e.to_string())?;
    Ok(exit::OK)
}

/// `plan` and `status` read converge's records (and the daemon's view) in `state_dir`: not from
/// a directory others could have written them to. They create nothing: a missing one is fine.
fn trusted_state_dir(config: &Config) -> Result<(), String> {
    secure::check_path(&config.state_dir, "state_dir")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn status_command(config: &Config, dir: &Path, output: Format) -> Result<u8, String> {
    trusted_state_dir(config)?;
    // While a daemon runs, its view is the truth (including manifest errors it keeps in force).
    if let Some(holder) = lock::holder(&config.state_dir).filter(|h| h.contains(", run, "))
        && let Some(view) = converge_node::controller::daemon::read_view(&config.state_dir)
    {
        return daemon_status(&holder, &view, output);
    }
    let Some(services) = load_services(dir) else {
        return Ok(exit::ERROR);
    };
    let (services, _) = check_manifests(dir, services, Trust::Warn)?;
    let observer = Observer::new(std::sync::Arc::new(config.clone())).with_drift();
    let node = runtime()?.block_on(observer.observe(&services));
    let statuses: Vec<ServiceStatus> = converge_core::status::statuses(&services, &node);
    let mut out = std::io::stdout().lock();
    let written = if output == Format::Json {
        serde_json::to_writer_pretty(&mut out, &statuses)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        render::write_status(&mut out, &node, &statuses)
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(format!("cannot write the status: {e}"));
    }
    Ok(if statuses.iter().all(|s| s.converged) {
        exit::OK
    } else {
        exit::CHANGES
    })
}

fn daemon_status(
    holder: &str,
    view: &converge_node::controller::daemon::DaemonView,
    output: Format,
) -> Result<u8, String> {
    let mut out = std::io::stdout().lock();
    let written = if output == Format::Json {
        serde_json::to_writer_pretty(&mut out, view)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        render::write_daemon_view(&mut out, holder, view)
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(format!("cannot write the status: {e}"));
    }
    Ok(daemon_exit_code(view))
}

/// `converge status`'s exit code from a daemon's view: 0 only when every service is converged
/// and settled, and the manifest directory has no error.
fn daemon_exit_code(view: &converge_node::controller::daemon::DaemonView) -> u8 {
    // Converged as last observed: a service the daemon has not looked at yet (just started, or
    // just added) is not.
    let converged = view
        .services
        .iter()
        .all(|s| s.converged == Some(true) && s.result.is_settled());
    if view.errors.is_empty() && converged {
        exit::OK
    } else {
        exit::CHANGES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use converge_node::controller::daemon::{DaemonView, ServiceResult, ServiceView};

    fn view(services: Vec<ServiceView>) -> DaemonView {
        DaemonView {
            version: 1,
            pid: 1,
            node: "deb1".into(),
            manifests: "/m".into(),
            revision: None,
            errors: Vec::new(),
            notices: Vec::new(),
            services,
            updated: String::new(),
        }
    }

    fn service(converged: Option<bool>, result: ServiceResult) -> ServiceView {
        ServiceView {
            service: "web".into(),
            converged,
            result,
            ..ServiceView::default()
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_a_summary_a_description_and_its_exit_codes() {
        let cli = Cli::command();
        for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
            let name = cmd.get_name();
            let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
            let long = cmd
                .get_long_about()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                !about.is_empty() && !about.contains('\n') && about.len() <= 70,
                "{name}: the summary is one short line: {about:?}"
            );
            assert!(
                long.starts_with(&format!("{about}\n\n")) && long.len() > about.len() + 2,
                "{name}: the summary, then a description: {long:?}"
            );
            let codes = cmd
                .get_after_long_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                codes.starts_with(&format!("{}\n  0  ", manual::EXIT_HEADING)),
                "{name}: exit codes: {codes:?}"
            );
        }
    }

    #[test]
    fn the_pages_name_every_command_and_option_of_the_command_line() {
        let pages = manual::pages(Cli::command()).expect("pages");
        let page = |name: &str| {
            pages
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, text)| String::from_utf8_lossy(text).replace("\\-", "-"))
        };
        let main = page("converge.1").expect("converge.1");
        let mut cli = Cli::command();
        cli.build();
        for cmd in cli.get_subcommands() {
            let name = cmd.get_name();
            let file = format!("converge-{name}.1");
            if cmd.is_hide_set() || name == "help" {
                assert!(page(&file).is_none(), "{file} is written");
                assert!(!main.contains(&format!("converge-{name}(")), "{main}");
                continue;
            }
            assert!(main.contains(&format!("converge-{name}(1)")), "{main}");
            let text = page(&file).unwrap_or_else(|| panic!("no {file}"));
            for arg in cmd.get_arguments() {
                let shown = match arg.get_long() {
                    Some(long) => format!("--{long}"),
                    None => arg.get_id().to_string().to_uppercase(),
                };
                assert_eq!(
                    text.contains(&shown),
                    !arg.is_hide_set(),
                    "{file} and {shown}:\n{text}"
                );
            }
            assert!(text.contains(".SH \"EXIT STATUS\""), "{text}");
        }
        assert_eq!(
            pages.len(),
            1 + cli
                .get_subcommands()
                .filter(|c| !c.is_hide_set() && c.get_name() != "help")
                .count()
        );
    }

    #[test]
    fn regression_status_said_0_before_the_daemon_had_looked_at_a_service() {
        // A daemon just started lists its services pending, not observed: `converge status`
        // said all was well, and a test waiting for "converged" went on before anything ran.
        let pending = view(vec![service(None, ServiceResult::Pending)]);
        assert_eq!(daemon_exit_code(&pending), exit::CHANGES);
        let converged = view(vec![service(Some(true), ServiceResult::Converged)]);
        assert_eq!(daemon_exit_code(&converged), exit::OK);
        let not_yet = view(vec![service(Some(false), ServiceResult::Running)]);
        assert_eq!(daemon_exit_code(&not_yet), exit::CHANGES);
        let orphan = view(vec![service(Some(true), ServiceResult::Orphaned)]);
        assert_eq!(daemon_exit_code(&orphan), exit::CHANGES);
    }
}
