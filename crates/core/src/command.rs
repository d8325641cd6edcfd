//! Action → the programs it runs. The one interpreter of an [`Action`]: `converge plan` renders
//! what [`for_step`] returns, and the executor runs the argv it holds, so the plan shows exactly
//! what will run. Pure: the same action, manifest, configuration and script listing always give
//! the same command lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Commands;
use crate::manifest::{AppCommands, ContainerKind, ContainerSpec, ResourceId, Service, Spec};
use crate::plan::{Action, Step};
use crate::shell::{quote, shell_line};

/// What one action runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `drbdadm VERB RES`.
    Drbdadm {
        verb: DrbdVerb,
        res: String,
        argv: Vec<String>,
    },
    /// Install a DRBD resource file: copy `from` to `staged` (beside `to`, a name drbd.conf's
    /// `*.res` does not include), have drbdadm check that very copy with the rest of the
    /// configuration (`check`), then rename it over `to`. A copy drbdadm refuses is removed and
    /// `to` stays as it was.
    DrbdInstall {
        res: String,
        from: PathBuf,
        staged: PathBuf,
        to: PathBuf,
        check: Vec<String>,
    },
    /// Create a missing mount point (mode 0755); no program.
    Mkdir { path: PathBuf },
    /// `e2fsck -p` (when the filesystem is checked), then `mount`.
    Mount {
        fsck: Option<Vec<String>>,
        mount: Vec<String>,
    },
    /// `umount`, retried while busy; `fuser -kmv -M` between tries when `umount_kill` is set.
    Umount {
        umount: Vec<String>,
        kill: Option<Vec<String>>,
    },
    /// Start, wait for up status, then until `operational` succeeds inside, within `timeout`.
    /// `abandon` (LXC) kills what is left of a start that failed and is rolled back.
    ContainerStart {
        container: ContainerKind,
        start: Vec<String>,
        operational: Vec<String>,
        abandon: Option<Vec<String>>,
        timeout: Duration,
    },
    /// A container already starting: wait for up status and `operational`, within `timeout`.
    ContainerWaitUp {
        container: ContainerKind,
        operational: Vec<String>,
        timeout: Duration,
    },
    /// A container already stopping: wait for down status within `timeout`.
    ContainerWaitDown {
        container: ContainerKind,
        timeout: Duration,
    },
    /// Stop, then wait for down status within `timeout`.
    ContainerStop {
        container: ContainerKind,
        stop: Vec<String>,
        timeout: Duration,
    },
    /// Record that converge froze the container, freeze it, and wait for its freezer to say
    /// frozen (or freezing: a task blocked on suspended I/O keeps it there) within `timeout`.
    ContainerFreeze {
        container: ContainerKind,
        freeze: Vec<String>,
        timeout: Duration,
    },
    /// Thaw the container; then forget converge's freeze record (`stop` false) or mark it as
    /// thawed to be stopped (`stop` true).
    ContainerThaw {
        container: ContainerKind,
        thaw: Vec<String>,
        stop: bool,
    },
    /// An app's start or stop commands.
    App { verb: AppVerb, runs: AppRuns },
}

/// How long `lxc-freeze` may take. It waits until every task of the container is frozen, and a
/// task blocked in the kernel on I/O DRBD suspends is not: past this the freezer stays at
/// FREEZING, which holds the rest as frozen does.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrbdVerb {
    Up,
    Connect,
    Primary,
    Secondary,
    Down,
    Adjust,
}

impl DrbdVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            DrbdVerb::Up => "up",
            DrbdVerb::Connect => "connect",
            DrbdVerb::Primary => "primary",
            DrbdVerb::Secondary => "secondary",
            DrbdVerb::Down => "down",
            DrbdVerb::Adjust => "adjust",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppVerb {
    Start,
    Stop,
}

impl AppVerb {
    /// The argument scripts get, and the word logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            AppVerb::Start => "start",
            AppVerb::Stop => "stop",
        }
    }

    /// The first letter of the scripts that run for this verb (S*, K*).
    fn prefix(self) -> char {
        match self {
            AppVerb::Start => 'S',
            AppVerb::Stop => 'K',
        }
    }
}

/// One program an app runs: its label (the script's name, or `app#0-PROGRAM`), which names
/// its log file, and its argv (wrapped to run inside the service's container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRun {
    pub label: String,
    pub argv: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppRuns {
    /// Known: these, in order (none means nothing to run).
    Listed(Vec<AppRun>),
    /// The scripts directory lives in a container that is not running yet: its scripts are
    /// listed when the action runs. `wrapper` is what each runs behind (`vzctl exec2 101`).
    Unlisted { dir: PathBuf, wrapper: Vec<String> },
}

/// How drbdadm checks a resource file before converge installs it: `drbdadm -t FILE -E
/// INSTALLED dump RES` reads the whole configuration (`/etc/drbd.conf`, so `global_common.conf`
/// and every other resource) with FILE in place of INSTALLED, and fails with its own message on
/// a syntax error, a resource defined twice, or RES missing or not for this host.
pub fn res_file_check_argv(
    commands: &Commands,
    file: &Path,
    installed: &Path,
    res: &str,
) -> Vec<String> {
    let file = file.display().to_string();
    let installed = installed.display().to_string();
    commands.drbdadm_argv(&["-t", &file, "-E", &installed, "dump", res])
}

/// `drbdadm -d adjust RES`: what `adjust` would run, one command a line, without running it.
pub fn adjust_dry_run_argv(commands: &Commands, res: &str) -> Vec<String> {
    commands.drbdadm_argv(&["-d", "adjust", res])
}

/// The `drbdsetup` verbs an automatic `adjust` may run: options, and what a new volume, peer
/// or path needs. Anything else takes apart or changes the role of what runs (`detach`,
/// `disconnect`, `del-peer`, `del-minor`, `down`, `secondary`…): that is for a person to run.
const ADJUST_MAY: [&str; 11] = [
    "resource-options",
    "disk-options",
    "net-options",
    "peer-device-options",
    "new-peer",
    "new-path",
    "new-minor",
    "resize",
    "attach",
    "connect",
    "new-resource",
];

/// Why converge does not run the `adjust` whose dry run printed `lines`, if it does not:
/// the first line it leaves to a person, and why. `connect` and `attach` pass only for a peer
/// and a volume the same run adds (`new-peer`, `new-minor`): on an existing one they would
/// reconnect a dropped connection or re-attach a detached disk, which converge does only
/// under its own rules. `drbdmeta` lines (a new volume's activity log) pass.
pub fn adjust_refusal(lines: &[String]) -> Option<String> {
    let words =
        |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_string).collect() };
    let all: Vec<Vec<String>> = lines.iter().map(|l| words(l)).collect();
    // `new-peer RES N`, `new-minor RES MINOR VOL`: what this run adds.
    let added = |verb: &str, index: usize, value: &str| {
        all.iter().any(|w| {
            w.len() > index + 1
                && w[0].ends_with("drbdsetup")
                && w[1] == verb
                && w[index + 1] == value
        })
    };
    for (line, w) in lines.iter().zip(&all) {
        let Some(program) = w.first() else {
            continue;
        };
        if program.ends_with("drbdmeta") {
            continue;
        }
        let verb = w.get(1).map(String::as_str).unwrap_or_default();
        if !program.ends_with("drbdsetup") || !ADJUST_MAY.contains(&verb) {
            return Some(format!("`{line}` takes apart or changes what runs"));
        }
        let target = w.get(3).map(String::as_str).unwrap_or_default();
        match verb {
            // `connect RES PEER_ID`
            "connect" if !added("new-peer", 2, target) => {
                return Some(format!(
                    "`{line}` would reconnect a connection that is down"
                ));
            }
            // `attach MINOR LOWER META META_INDEX`
            "attach" => {
                let minor = w.get(2).map(String::as_str).unwrap_or_default();
                if !added("new-minor", 2, minor) {
                    return Some(format!("`{line}` would re-attach a detached disk"));
                }
            }
            _ => {}
        }
    }
    None
}

/// The copy of a resource file drbdadm checks before it replaces `installed`: hidden, and not
/// ending in `.res`, so that drbd.conf's `include "drbd.d/*.res"` never reads it.
pub fn staged_res_file(installed: &Path) -> PathBuf {
    let name = installed
        .file_name()
        .map_or_else(|| "resource".into(), |n| n.to_string_lossy().into_owned());
    installed.with_file_name(format!(".{name}.converge-new"))
}

/// The scripts of a scripts directory that run for `prefix` (S, K or C), in name order: names
/// starting with it, except editor backups (`~`) and hidden files.
pub fn scripts_for(names: &[String], prefix: char) -> Vec<&str> {
    let mut scripts: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with(prefix) && !n.ends_with('~') && !n.starts_with('.'))
        .collect();
    scripts.sort_unstable();
    scripts
}

/// The programs `step` runs. `scripts` is the listing of the app's scripts directory (its
/// entries' names) when it is known; it is ignored for other actions.
pub fn for_step(
    step: &Step,
    service: &Service,
    commands: &Commands,
    scripts: Option<&[String]>,
) -> Program {
    let container_spec = service
        .resource(step.rid)
        .and_then(|r| r.spec.as_container());
    let start_timeout =
        container_spec.map_or(ContainerSpec::DEFAULT_START_TIMEOUT, |c| c.start_timeout);
    let stop_timeout =
        container_spec.map_or(ContainerSpec::DEFAULT_STOP_TIMEOUT, |c| c.stop_timeout);
    let drbdadm = |verb: DrbdVerb, res: &str| Program::Drbdadm {
        verb,
        res: res.to_string(),
        argv: commands.drbdadm_argv(&[verb.as_str(), res]),
    };
    match &step.action {
        Action::DrbdUp { res } => drbdadm(DrbdVerb::Up, res),
        Action::DrbdConnect { res, peer: None } => drbdadm(DrbdVerb::Connect, res),
        // drbdadm names one connection of a resource `RES:PEER` (the peer's host name).
        Action::DrbdConnect {
            res,
            peer: Some(peer),
        } => drbdadm(DrbdVerb::Connect, &format!("{res}:{peer}")),
        Action::DrbdPrimary { res } => drbdadm(DrbdVerb::Primary, res),
        Action::DrbdSecondary { res, force: false } => drbdadm(DrbdVerb::Secondary, res),
        Action::DrbdSecondary { res, force: true } => Program::Drbdadm {
            verb: DrbdVerb::Secondary,
            res: res.clone(),
            argv: commands.drbdadm_argv(&[DrbdVerb::Secondary.as_str(), "--force", res]),
        },
        Action::DrbdDown { res } => drbdadm(DrbdVerb::Down, res),
        Action::DrbdAdjust { res } => drbdadm(DrbdVerb::Adjust, res),
        Action::DrbdInstall { res, from, to } => {
            let staged = staged_res_file(to);
            Program::DrbdInstall {
                res: res.clone(),
                from: from.clone(),
                check: res_file_check_argv(commands, &staged, to, res),
                staged,
                to: to.clone(),
            }
        }
        Action::Mkdir { path } => Program::Mkdir { path: path.clone() },
        Action::Mount {
            dev,
            mnt,
            fstype,
            options,
            fsck,
        } => {
            let dev = dev.display().to_string();
            Program::Mount {
                fsck: fsck.then(|| vec![commands.e2fsck.clone(), "-p".into(), dev.clone()]),
                mount: vec![
                    commands.mount.clone(),
                    "-t".into(),
                    fstype.clone(),
                    "-o".into(),
                    options.clone(),
                    dev,
                    mnt.display().to_string(),
                ],
            }
        }
        Action::Umount { mnt, kill } => {
            let mnt = mnt.display().to_string();
            Program::Umount {
                umount: vec![commands.umount.clone(), mnt.clone()],
                // -M: act only while MNT is still a mount point. Without it, a mount point
                // unmounted meanwhile would make -m pick the filesystem holding the directory
                // (say /) and kill everything using it.
                kill: kill.then(|| {
                    vec![
                        commands.fuser.clone(),
                        "-kmv".into(),
                        "-M".into(),
                        mnt.clone(),
                    ]
                }),
            }
        }
        Action::ContainerStart { container } => Program::ContainerStart {
            container: container.clone(),
            start: container_start_argv(commands, container),
            operational: operational_argv(commands, container),
            abandon: match container {
                ContainerKind::Lxc(name) => Some(vec![
                    commands.lxc_stop.clone(),
                    "-n".into(),
                    name.clone(),
                    "-k".into(),
                ]),
                // OpenVZ's half-started containers are left to vzctl.
                ContainerKind::Vz(_) => None,
            },
            timeout: start_timeout,
        },
        Action::ContainerWaitUp { container } => Program::ContainerWaitUp {
            container: container.clone(),
            operational: operational_argv(commands, container),
            timeout: start_timeout,
        },
        Action::ContainerWaitDown { container } => Program::ContainerWaitDown {
            container: container.clone(),
            timeout: stop_timeout,
        },
        Action::ContainerStop { container } => Program::ContainerStop {
            container: container.clone(),
            stop: container_stop_argv(commands, container, stop_timeout),
            timeout: stop_timeout,
        },
        Action::ContainerFreeze { container } => Program::ContainerFreeze {
            container: container.clone(),
            freeze: freeze_argv(&commands.lxc_freeze, container),
            timeout: FREEZE_TIMEOUT,
        },
        Action::ContainerThaw { container, stop } => Program::ContainerThaw {
            container: container.clone(),
            thaw: freeze_argv(&commands.lxc_unfreeze, container),
            stop: *stop,
        },
        Action::AppStart => app(service, step.rid, commands, AppVerb::Start, scripts),
        Action::AppStop => app(service, step.rid, commands, AppVerb::Stop, scripts),
    }
}

fn app(
    service: &Service,
    rid: ResourceId,
    commands: &Commands,
    verb: AppVerb,
    scripts: Option<&[String]>,
) -> Program {
    let container = service.container().map(|c| &c.kind);
    let runs = match service.resource(rid).map(|r| &r.spec) {
        Some(Spec::App(app)) => match &app.commands {
            AppCommands::Scripts(dir) => match scripts {
                Some(names) => AppRuns::Listed(
                    scripts_for(names, verb.prefix())
                        .into_iter()
                        .map(|name| AppRun {
                            label: name.to_string(),
                            argv: commands.in_container(
                                container,
                                vec![dir.join(name).display().to_string(), verb.as_str().into()],
                            ),
                        })
                        .collect(),
                ),
                None => AppRuns::Unlisted {
                    dir: dir.clone(),
                    wrapper: commands.in_container(container, Vec::new()),
                },
            },
            AppCommands::Argv { start, stop, .. } => {
                let argv = match verb {
                    AppVerb::Start => start,
                    AppVerb::Stop => stop,
                };
                AppRuns::Listed(
                    argv.iter()
                        .map(|argv| AppRun {
                            // The resource id keeps two apps running one program from sharing
                            // a log file.
                            label: format!("{rid}-{}", program_name(argv)),
                            argv: commands.in_container(container, argv.clone()),
                        })
                        .collect(),
                )
            }
        },
        // The planner plans app actions for app resources only.
        _ => AppRuns::Listed(Vec::new()),
    };
    Program::App { verb, runs }
}

/// The file name of an argv's program, for labels: `/usr/bin/svc` → `svc`.
pub fn program_name(argv: &[String]) -> String {
    let program = argv.first().map(String::as_str).unwrap_or_default();
    Path::new(program)
        .file_name()
        .map_or_else(|| program.to_string(), |n| n.to_string_lossy().into_owned())
}

fn container_start_argv(commands: &Commands, container: &ContainerKind) -> Vec<String> {
    match container {
        ContainerKind::Vz(ctid) => vec![commands.vzctl.clone(), "start".into(), ctid.clone()],
        ContainerKind::Lxc(name) => vec![
            commands.lxc_start.clone(),
            "-n".into(),
            name.clone(),
            "-d".into(),
        ],
    }
}

fn container_stop_argv(
    commands: &Commands,
    container: &ContainerKind,
    timeout: Duration,
) -> Vec<String> {
    match container {
        ContainerKind::Vz(ctid) => vec![commands.vzctl.clone(), "stop".into(), ctid.clone()],
        // lxc-stop waits that long for a clean shutdown, then kills.
        ContainerKind::Lxc(name) => vec![
            commands.lxc_stop.clone(),
            "-n".into(),
            name.clone(),
            "-t".into(),
            timeout.as_secs().to_string(),
        ],
    }
}

/// `lxc-freeze -n NAME` or `lxc-unfreeze -n NAME`. Only LXC containers are ever frozen: the
/// manifest reader refuses `on_quorum_loss: freeze` for any other, so only they are planned
/// a freeze, and only they have a freeze record to be thawed by.
fn freeze_argv(program: &str, container: &ContainerKind) -> Vec<String> {
    vec![program.to_string(), "-n".into(), container.id().to_string()]
}

/// A command that succeeds once the container can run programs.
fn operational_argv(commands: &Commands, container: &ContainerKind) -> Vec<String> {
    commands.in_container(Some(container), vec!["/bin/true".into()])
}

impl Program {
    /// One line per program (or internal operation), for `converge plan`.
    pub fn lines(&self) -> Vec<String> {
        let within = |t: &Duration| format!(" (within {})", humantime::format_duration(*t));
        match self {
            Program::Drbdadm { argv, .. } => vec![shell_line(argv)],
            Program::DrbdInstall {
                res,
                from,
                staged,
                to,
                check,
            } => vec![
                format!(
                    "copy {} to {} (mode 0600)",
                    quote(&from.display().to_string()),
                    quote(&staged.display().to_string())
                ),
                shell_line(check),
                format!(
                    "record that resource {res} is to be adjusted; rename it to {}",
                    quote(&to.display().to_string())
                ),
            ],
            Program::Mkdir { path } => {
                vec![format!(
                    "mkdir -m 0755 {}",
                    quote(&path.display().to_string())
                )]
            }
            Program::Mount { fsck, mount } => fsck
                .iter()
                .chain([mount])
                .map(|argv| shell_line(argv))
                .collect(),
            Program::Umount { umount, kill } => {
                let mut line = shell_line(umount);
                if let Some(kill) = kill {
                    line.push_str(&format!(" (when busy: {})", shell_line(kill)));
                }
                vec![line]
            }
            Program::ContainerStart {
                start,
                operational,
                timeout,
                ..
            } => vec![
                shell_line(start),
                "wait for container up status".into(),
                format!(
                    "wait for container operational: {}{}",
                    shell_line(operational),
                    within(timeout)
                ),
            ],
            Program::ContainerWaitUp {
                operational,
                timeout,
                ..
            } => vec![
                "wait for container up status".into(),
                format!(
                    "wait for container operational: {}{}",
                    shell_line(operational),
                    within(timeout)
                ),
            ],
            Program::ContainerWaitDown { timeout, .. } => {
                vec![format!("wait for container down status{}", within(timeout))]
            }
            Program::ContainerStop { stop, timeout, .. } => vec![
                shell_line(stop),
                format!("wait for container down status{}", within(timeout)),
            ],
            Program::ContainerFreeze {
                freeze, timeout, ..
            } => vec![
                "record that converge froze the container".into(),
                shell_line(freeze),
                format!("wait for container frozen status{}", within(timeout)),
            ],
            // In the order they run: the record of a thaw to stop comes first, so that a
            // converge killed right after the thaw still finds the container its own.
            Program::ContainerThaw {
                thaw, stop: true, ..
            } => vec![
                "record that the container is thawed to be stopped".into(),
                shell_line(thaw),
            ],
            Program::ContainerThaw {
                thaw, stop: false, ..
            } => vec![shell_line(thaw), "forget converge's freeze record".into()],
            Program::App { verb, runs } => match runs {
                AppRuns::Listed(runs) if runs.is_empty() => {
                    vec![format!(
                        "no {} command or script: nothing to run",
                        verb.as_str()
                    )]
                }
                AppRuns::Listed(runs) => runs.iter().map(|run| shell_line(&run.argv)).collect(),
                AppRuns::Unlisted { dir, wrapper } => vec![format!(
                    "{}{}/{}* {} (each script in name order; {} is listed once the container runs)",
                    wrapper.iter().map(|w| quote(w) + " ").collect::<String>(),
                    dir.display(),
                    verb.prefix(),
                    verb.as_str(),
                    dir.display()
                )],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Kind, parse_manifest};

    fn seed() -> Service {
        parse_manifest(
            Path::new("/m/drbdsvc.yaml"),
            include_str!("../../../manifests/drbdsvc.yaml"),
        )
        .expect("the shipped manifest parses")
    }

    fn step(rid: ResourceId, action: Action) -> Step {
        Step {
            rid,
            action,
            reason: String::new(),
        }
    }

    #[test]
    fn argv_per_action() {
        let c = Commands::default();
        let svc = seed();
        let container = ResourceId::new(Kind::Container, 0);
        let start = for_step(
            &step(
                container,
                Action::ContainerStart {
                    container: ContainerKind::Lxc("web".into()),
                },
            ),
            &svc,
            &c,
            None,
        );
        let Program::ContainerStart {
            start, operational, ..
        } = start
        else {
            panic!("{start:?}")
        };
        assert_eq!(start, ["lxc-start", "-n", "web", "-d"]);
        assert_eq!(operational, ["lxc-attach", "-n", "web", "--", "/bin/true"]);
        let stop = for_step(
            &step(
                container,
                Action::ContainerStop {
                    container: ContainerKind::Lxc("web".into()),
                },
            ),
            &svc,
            &c,
            None,
        );
        assert_eq!(
            stop,
            Program::ContainerStop {
                container: ContainerKind::Lxc("web".into()),
                stop: vec![
                    "lxc-stop".into(),
                    "-n".into(),
                    "web".into(),
                    "-t".into(),
                    "120".into()
                ],
                timeout: ContainerSpec::DEFAULT_STOP_TIMEOUT,
            }
        );
        let mount = for_step(
            &step(
                ResourceId::new(Kind::Fs, 1),
                Action::Mount {
                    dev: "/dev/drbd0".into(),
                    mnt: "/drbdsvc".into(),
                    fstype: "ext3".into(),
                    options: "defaults".into(),
                    fsck: true,
                },
            ),
            &svc,
            &c,
            None,
        );
        assert_eq!(
            mount.lines(),
            [
                "e2fsck -p /dev/drbd0",
                "mount -t ext3 -o defaults /dev/drbd0 /drbdsvc"
            ]
        );
    }

    #[test]
    fn regression_plan_shows_the_scripts_the_executor_runs() {
        // The plan showed a glob `S*` while the executor ran the scripts it listed: the two
        // interpreted the action separately and drifted.
        let svc = seed();
        let app = step(ResourceId::new(Kind::App, 0), Action::AppStart);
        let names: Vec<String> = ["K10foo", "S20bar", "S10foo", "C10foo", "S30x~", ".S40y"]
            .map(String::from)
            .to_vec();
        let program = for_step(&app, &svc, &Commands::default(), Some(&names));
        let Program::App {
            runs: AppRuns::Listed(runs),
            ..
        } = &program
        else {
            panic!("{program:?}")
        };
        let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["S10foo", "S20bar"]);
        assert_eq!(
            program.lines(),
            [
                "vzctl exec2 101 /svc/etc/init.d/S10foo start",
                "vzctl exec2 101 /svc/etc/init.d/S20bar start"
            ]
        );
        // Inside a container that is not running, nothing can be listed yet, and it says so.
        let unlisted = for_step(&app, &svc, &Commands::default(), None);
        assert_eq!(
            unlisted.lines(),
            [
                "vzctl exec2 101 /svc/etc/init.d/S* start (each script in name order; /svc/etc/init.d is listed once the container runs)"
            ]
        );
    }

    #[test]
    fn a_forced_demotion_is_the_one_action_that_renders_force() {
        let step = step(
            ResourceId::new(Kind::Drbd, 0),
            Action::DrbdSecondary {
                res: "data".into(),
                force: true,
            },
        );
        let commands = Commands {
            drbdsetup: "/usr/lib/converge/drbdsetup".into(),
            ..Commands::default()
        };
        assert_eq!(
            for_step(&step, &seed(), &commands, None).lines(),
            ["drbdadm --drbdsetup=/usr/lib/converge/drbdsetup secondary --force data"]
        );
    }

    #[test]
    fn a_freeze_and_a_thaw_render_what_runs_and_what_is_recorded() {
        let lxc = ContainerKind::Lxc("web".into());
        let rid = ResourceId::new(Kind::Container, 0);
        let commands = Commands {
            lxc_freeze: "/opt/lxc/lxc-freeze".into(),
            ..Commands::default()
        };
        let lines = |action| for_step(&step(rid, action), &seed(), &commands, None).lines();
        assert_eq!(
            lines(Action::ContainerFreeze {
                container: lxc.clone()
            }),
            [
                "record that converge froze the container",
                "/opt/lxc/lxc-freeze -n web",
                "wait for container frozen status (within 10s)"
            ]
        );
        assert_eq!(
            lines(Action::ContainerThaw {
                container: lxc.clone(),
                stop: false
            }),
            ["lxc-unfreeze -n web", "forget converge's freeze record"]
        );
        assert_eq!(
            lines(Action::ContainerThaw {
                container: lxc,
                stop: true
            }),
            [
                "record that the container is thawed to be stopped",
                "lxc-unfreeze -n web"
            ]
        );
    }

    #[test]
    fn no_action_ever_renders_force() {
        let vz = ContainerKind::Vz("101".into());
        let actions = [
            Action::DrbdUp { res: "data".into() },
            Action::DrbdConnect {
                res: "data".into(),
                peer: None,
            },
            Action::DrbdConnect {
                res: "data".into(),
                peer: Some("deb2".into()),
            },
            Action::DrbdPrimary { res: "data".into() },
            Action::DrbdSecondary {
                res: "data".into(),
                force: false,
            },
            Action::DrbdDown { res: "data".into() },
            Action::Mkdir {
                path: "/drbdsvc".into(),
            },
            Action::Mount {
                dev: "/dev/drbd0".into(),
                mnt: "/drbdsvc".into(),
                fstype: "ext3".into(),
                options: "defaults".into(),
                fsck: true,
            },
            Action::Umount {
                mnt: "/drbdsvc".into(),
                kill: true,
            },
            Action::ContainerStart {
                container: vz.clone(),
            },
            Action::ContainerWaitUp {
                container: vz.clone(),
            },
            Action::ContainerWaitDown {
                container: vz.clone(),
            },
            Action::ContainerStop {
                container: vz.clone(),
            },
            Action::ContainerFreeze {
                container: vz.clone(),
            },
            Action::ContainerThaw {
                container: vz,
                stop: true,
            },
            Action::AppStart,
            Action::AppStop,
        ];
        let service = seed();
        let commands = Commands {
            drbdsetup: "/usr/lib/converge/drbdsetup".into(),
            ..Commands::default()
        };
        let names = vec!["S10foo".to_string(), "K10foo".to_string()];
        for action in actions {
            let rid = match &action {
                Action::AppStart | Action::AppStop => ResourceId::new(Kind::App, 0),
                _ => ResourceId::new(Kind::Drbd, 0),
            };
            let step = step(rid, action);
            for scripts in [None, Some(names.as_slice())] {
                let lines = for_step(&step, &service, &commands, scripts).lines();
                assert!(!lines.is_empty(), "{step:?}");
                for line in lines {
                    assert!(!line.contains("--force"), "{line}");
                    assert!(!line.is_empty());
                }
            }
        }
    }

    #[test]
    fn an_automatic_adjust_changes_options_and_adds_but_takes_nothing_apart() {
        let lines = |text: &str| -> Vec<String> { text.lines().map(str::to_string).collect() };
        for fine in [
            "drbdsetup resource-options data --set-defaults --auto-promote=no",
            "drbdsetup net-options data 1 --protocol=A",
            // A new peer, with its path and connection.
            "drbdsetup new-peer data 2 --_name=deb3\ndrbdsetup new-path data 2 ipv4:127.0.0.1:7789 ipv4:127.0.0.3:7789\ndrbdsetup connect data 2",
            // A new volume, attached.
            "drbdsetup new-minor data 1 1\ndrbdmeta 1 v09 /dev/loop1 internal apply-al\n/usr/sbin/drbdsetup attach 1 /dev/loop1 /dev/loop1 internal",
            "",
        ] {
            assert_eq!(adjust_refusal(&lines(fine)), None, "{fine}");
        }
        for (refused, why) in [
            (
                "drbdsetup connect data 1",
                "would reconnect a connection that is down",
            ),
            (
                "drbdsetup attach 0 /dev/loop0 /dev/loop0 internal",
                "would re-attach a detached disk",
            ),
            ("drbdsetup disconnect data 1", "takes apart"),
            ("drbdsetup del-peer data 1", "takes apart"),
            ("drbdsetup detach 0", "takes apart"),
            ("drbdsetup del-minor 0", "takes apart"),
            ("drbdsetup down data", "takes apart"),
            ("drbdsetup secondary data", "takes apart"),
            ("modprobe drbd", "takes apart"),
        ] {
            let said = adjust_refusal(&lines(&format!(
                "drbdsetup net-options data 1 --protocol=C\n{refused}"
            )))
            .unwrap_or_else(|| panic!("{refused} passed"));
            assert!(said.contains(refused) && said.contains(why), "{said}");
        }
    }
}
