//! Action → argv. Pure: the same action and config always give the same command lines, so
//! `converge plan` shows exactly what would run.

use crate::config::Commands;
use crate::manifest::{AppCommands, ContainerKind, ContainerSpec, Service, Spec};
use crate::plan::{Action, Step};

/// What one step will do, one line per program (or per internal operation), for display.
pub fn describe(step: &Step, service: &Service, commands: &Commands) -> Vec<String> {
    let container_spec = service
        .resource(step.rid)
        .and_then(|r| r.spec.as_container());
    match &step.action {
        Action::DrbdUp { res } => vec![shell_line(&commands.drbdadm_argv(&["up", res]))],
        Action::DrbdConnect { res } => vec![shell_line(&commands.drbdadm_argv(&["connect", res]))],
        Action::DrbdPrimary { res } => vec![shell_line(&commands.drbdadm_argv(&["primary", res]))],
        Action::DrbdSecondary { res } => {
            vec![shell_line(&commands.drbdadm_argv(&["secondary", res]))]
        }
        Action::DrbdDown { res } => vec![shell_line(&commands.drbdadm_argv(&["down", res]))],
        Action::Mkdir { path } => vec![format!(
            "mkdir -m 0755 {}",
            quote(&path.display().to_string())
        )],
        Action::Mount {
            dev,
            mnt,
            fstype,
            options,
            fsck,
        } => {
            let dev = dev.display().to_string();
            let mut lines = Vec::new();
            if *fsck {
                lines.push(shell_line(&fsck_argv(commands, &dev)));
            }
            lines.push(shell_line(&mount_argv(
                commands,
                &dev,
                &mnt.display().to_string(),
                fstype,
                options,
            )));
            lines
        }
        Action::Umount { mnt, kill } => {
            let mut line = shell_line(&[commands.umount.clone(), mnt.display().to_string()]);
            if *kill {
                line.push_str(&format!(
                    " (when busy: {} -kmv -M {})",
                    commands.fuser,
                    quote(&mnt.display().to_string())
                ));
            }
            vec![line]
        }
        Action::ContainerStart { container } => {
            let mut lines = vec![shell_line(&container_start_argv(commands, container))];
            lines.push("wait for container up status".into());
            lines.push("wait for container operational".into());
            with_timeout(lines, container_spec.map(|c| c.start_timeout))
        }
        Action::ContainerWaitUp { .. } => with_timeout(
            vec![
                "wait for container up status".into(),
                "wait for container operational".into(),
            ],
            container_spec.map(|c| c.start_timeout),
        ),
        Action::ContainerWaitDown { .. } => with_timeout(
            vec!["wait for container down status".into()],
            container_spec.map(|c| c.stop_timeout),
        ),
        Action::ContainerStop { container } => {
            let stop = container_stop_argv(commands, container, container_spec);
            with_timeout(
                vec![shell_line(&stop), "wait for container down status".into()],
                container_spec.map(|c| c.stop_timeout),
            )
        }
        Action::AppStart | Action::AppStop => {
            let start = matches!(step.action, Action::AppStart);
            let container = service.container().map(|c| &c.kind);
            match service.resource(step.rid).map(|r| &r.spec) {
                Some(Spec::App(app)) => match &app.commands {
                    AppCommands::Scripts(dir) => {
                        let (glob, arg) = if start {
                            ("S*", "start")
                        } else {
                            ("K*", "stop")
                        };
                        let argv = commands.in_container(
                            container,
                            vec![format!("{}/{glob}", dir.display()), arg.into()],
                        );
                        vec![format!("{} (each script in name order)", shell_line(&argv))]
                    }
                    AppCommands::Argv {
                        start: s, stop: k, ..
                    } => match if start { s } else { k } {
                        Some(argv) => {
                            vec![shell_line(&commands.in_container(container, argv.clone()))]
                        }
                        None => vec![format!(
                            "no {} command: nothing to run",
                            if start { "start" } else { "stop" }
                        )],
                    },
                },
                _ => vec![format!("{} is not an app", step.rid)],
            }
        }
    }
}

fn with_timeout(mut lines: Vec<String>, timeout: Option<std::time::Duration>) -> Vec<String> {
    if let (Some(t), Some(last)) = (timeout, lines.last_mut()) {
        last.push_str(&format!(" (within {})", humantime::format_duration(t)));
    }
    lines
}

pub fn fsck_argv(commands: &Commands, dev: &str) -> Vec<String> {
    vec![commands.e2fsck.clone(), "-p".into(), dev.into()]
}

pub fn mount_argv(
    commands: &Commands,
    dev: &str,
    mnt: &str,
    fstype: &str,
    options: &str,
) -> Vec<String> {
    vec![
        commands.mount.clone(),
        "-t".into(),
        fstype.into(),
        "-o".into(),
        options.into(),
        dev.into(),
        mnt.into(),
    ]
}

pub fn container_start_argv(commands: &Commands, container: &ContainerKind) -> Vec<String> {
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

pub fn container_stop_argv(
    commands: &Commands,
    container: &ContainerKind,
    spec: Option<&ContainerSpec>,
) -> Vec<String> {
    match container {
        ContainerKind::Vz(ctid) => vec![commands.vzctl.clone(), "stop".into(), ctid.clone()],
        ContainerKind::Lxc(name) => {
            let secs = spec
                .map_or(ContainerSpec::DEFAULT_STOP_TIMEOUT, |s| s.stop_timeout)
                .as_secs();
            vec![
                commands.lxc_stop.clone(),
                "-n".into(),
                name.clone(),
                "-t".into(),
                secs.to_string(),
            ]
        }
    }
}

/// An argv as one line a person could paste into a shell.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// Shell-quotes one word when it needs it.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+*#".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_leaves_plain_words_alone() {
        assert_eq!(
            shell_line(&[
                "mount".into(),
                "-o".into(),
                "defaults".into(),
                "/my dir".into()
            ]),
            "mount -o defaults '/my dir'"
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn container_argv_per_kind() {
        let c = Commands::default();
        assert_eq!(
            container_start_argv(&c, &ContainerKind::Vz("101".into())),
            ["vzctl", "start", "101"]
        );
        assert_eq!(
            container_start_argv(&c, &ContainerKind::Lxc("web".into())),
            ["lxc-start", "-n", "web", "-d"]
        );
        assert_eq!(
            container_stop_argv(&c, &ContainerKind::Lxc("web".into()), None),
            ["lxc-stop", "-n", "web", "-t", "120"]
        );
        assert_eq!(
            mount_argv(&c, "/dev/drbd0", "/drbdsvc", "ext3", "defaults"),
            [
                "mount",
                "-t",
                "ext3",
                "-o",
                "defaults",
                "/dev/drbd0",
                "/drbdsvc"
            ]
        );
        assert_eq!(fsck_argv(&c, "/dev/drbd0"), ["e2fsck", "-p", "/dev/drbd0"]);
    }

    #[test]
    fn no_action_ever_renders_force() {
        use crate::manifest::{Kind, ResourceId};
        let vz = ContainerKind::Vz("101".into());
        let actions = [
            Action::DrbdUp { res: "data".into() },
            Action::DrbdConnect { res: "data".into() },
            Action::DrbdPrimary { res: "data".into() },
            Action::DrbdSecondary { res: "data".into() },
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
            Action::ContainerStop { container: vz },
            Action::AppStart,
            Action::AppStop,
        ];
        let service = crate::manifest::parse_manifest(
            std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/manifests/drbdsvc.yaml"
            )),
            include_str!("../../manifests/drbdsvc.yaml"),
        )
        .expect("the shipped manifest parses");
        let commands = Commands {
            drbdsetup: "/usr/lib/converge/drbdsetup".into(),
            ..Commands::default()
        };
        for action in actions {
            let rid = match &action {
                Action::AppStart | Action::AppStop => ResourceId::new(Kind::App, 0),
                _ => ResourceId::new(Kind::Drbd, 0),
            };
            let step = Step {
                rid,
                action,
                reason: String::new(),
            };
            for line in describe(&step, &service, &commands) {
                assert!(!line.contains("--force"), "{line}");
                assert!(!line.is_empty());
            }
        }
    }
}
