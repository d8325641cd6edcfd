//! What the binary says about itself: `--help` (a summary line and a description per command,
//! the exit codes in a section of their own, hidden commands absent), `--version`, the shell
//! completions and the manual pages, all from the one clap definition.

use std::fs;
use std::process::{Command, Output, Stdio};

mod support;

use support::{CONVERGE, assert_no_panic, text};

/// The commands `converge help` lists, `help` aside (this is a development build: `demo` is in).
const COMMANDS: &[&str] = &[
    "validate",
    "plan",
    "reconcile",
    "trigger",
    "run",
    "status",
    "doctor",
    "completions",
    "demo",
];

/// The options each command's page and help must name (the global `--config` included, except
/// where the command reads no configuration).
const OPTIONS: &[(&str, &[&str])] = &[
    ("validate", &["--config"]),
    ("plan", &["--output", "--config"]),
    (
        "reconcile",
        &[
            "--once",
            "--dry-run",
            "--output",
            "--log-format",
            "--config",
        ],
    ),
    ("trigger", &["--timeout", "--output", "--config"]),
    ("run", &["--log-format", "--verbose", "--config"]),
    ("status", &["--output", "--config"]),
    ("doctor", &["--output", "--config"]),
    ("completions", &[]),
    ("demo", &["--nodes", "--failover"]),
];

fn converge(args: &[&str]) -> Output {
    let out = Command::new(CONVERGE)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run converge");
    assert_no_panic(&out);
    out
}

/// The `Commands:` section of a help text: (name, summary) per line.
fn command_list(help: &str) -> Vec<(String, String)> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.trim_start();
            let (name, summary) = l.split_once(' ').unwrap_or((l, ""));
            (name.to_string(), summary.trim().to_string())
        })
        .collect()
}

#[test]
fn help_lists_each_command_on_one_line_and_no_hidden_one() {
    let out = converge(&["help"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    let listed = command_list(&help);
    let names: Vec<&str> = listed.iter().map(|(name, _)| name.as_str()).collect();
    let mut expected = COMMANDS.to_vec();
    expected.push("help");
    // One line each: a summary that wrapped would show up as a line with another "name".
    assert_eq!(names, expected, "{help}");
    for (name, summary) in &listed {
        assert!(!summary.is_empty(), "{name} has no summary:\n{help}");
        assert!(
            summary.len() <= 70,
            "{name}'s summary is not a one-liner: {summary:?}"
        );
    }
    // The simulators answer under their own names (argv[0]), never as commands.
    for tool in ["drbdsetup", "vzctl", "vzlist"] {
        assert!(!help.contains(tool), "{tool} is listed:\n{help}");
    }
    // `converge --help` is the same overview, with the global exit codes.
    let long = text(&converge(&["--help"]).stdout);
    assert_eq!(command_list(&long), listed);
    assert!(long.contains("\nExit status:\n  0  "), "{long}");
}

#[test]
fn each_command_has_a_summary_then_a_description_then_its_exit_codes() {
    let overview = command_list(&text(&converge(&["help"]).stdout));
    for command in COMMANDS {
        let out = converge(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let help = text(&out.stdout);
        let summary = &overview
            .iter()
            .find(|(name, _)| name == command)
            .expect("listed")
            .1;
        let mut lines = help.lines();
        assert_eq!(lines.next(), Some(summary.as_str()), "{help}");
        assert_eq!(
            lines.next(),
            Some(""),
            "no blank line after the summary:\n{help}"
        );
        let description = lines.next().unwrap_or_default();
        assert!(
            !description.is_empty() && !description.starts_with("Usage:"),
            "{command} has no description beyond its summary:\n{help}"
        );
        // The exit codes come last, in a section of their own, one code per line.
        let (_, codes) = help
            .split_once("\nExit status:\n")
            .unwrap_or_else(|| panic!("{command}: no exit status section:\n{help}"));
        assert!(codes.starts_with("  0  "), "{command}:\n{help}");
        assert!(!codes.contains("Options:"), "{command}:\n{help}");
        for option in OPTIONS.iter().find(|(c, _)| c == command).expect("known").1 {
            assert!(
                help.contains(option),
                "{command} --help misses {option}:\n{help}"
            );
        }
        // The hidden former flag is not shown.
        assert!(!help.contains("--json"), "{command} shows --json:\n{help}");

        // `-h` is the short form: the summary, without the description and the codes.
        let short = text(&converge(&[command, "-h"]).stdout);
        assert_eq!(short.lines().next(), Some(summary.as_str()), "{short}");
        assert!(!short.contains("Exit status:"), "{short}");
    }
}

#[test]
fn commands_that_read_no_configuration_hide_and_refuse_config() {
    for command in ["demo", "completions"] {
        let help = text(&converge(&[command, "--help"]).stdout);
        assert!(
            !help.contains("--config"),
            "{command} shows --config:\n{help}"
        );
    }
    for args in [
        &["--config", "/etc/converge/config.yaml", "demo"][..],
        &["demo", "--config", "/etc/converge/config.yaml"],
        &["completions", "bash", "--config", "/x"],
        &[
            "--config",
            "/x",
            "man",
            "--dir",
            "/nonexistent/never-written",
        ],
    ] {
        let out = converge(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("reads no node configuration: --config"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    assert!(!std::path::Path::new("/nonexistent/never-written").exists());
}

#[test]
fn a_command_line_error_exits_1_not_plan_s_2() {
    for args in [
        &["plan", "--no-such-option"][..],
        &["no-such-command"],
        &["plan", "--output", "yaml"],
        &[],
    ] {
        let out = converge(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn version_names_the_version_and_the_git_revision() {
    for flag in ["--version", "-V"] {
        let out = converge(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        let line = text(&out.stdout);
        let rest = line
            .strip_prefix(&format!(
                "converge {} (revision ",
                env!("CARGO_PKG_VERSION")
            ))
            .and_then(|r| r.strip_suffix(")\n"))
            .unwrap_or_else(|| panic!("{line:?}"));
        // A hex revision from git, or `unknown` where the build had no git (a copy of the
        // tree without .git, as CI's normal-user run builds).
        assert!(
            rest == "unknown" || (rest.len() >= 4 && rest.bytes().all(|b| b.is_ascii_hexdigit())),
            "{line:?}"
        );
    }
}

#[test]
fn bash_completions_offer_every_command_and_its_options() {
    let out = converge(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(script.contains("complete -F _converge"), "{script}");
    for command in COMMANDS {
        assert!(script.contains(command), "no {command} in:\n{script}");
    }
    for option in ["--output", "--log-format", "--dry-run", "--config"] {
        assert!(script.contains(option), "no {option} in:\n{script}");
    }
    // Nothing `--help` hides: the `man` command, the former `--json`, `--config` where it is
    // refused (demo's options are `-h --nodes --failover --help`).
    assert!(!script.contains("man"), "{script}");
    assert!(!script.contains("--json"), "{script}");
    assert!(
        script.contains("opts=\"-h --nodes --failover --help\""),
        "{script}"
    );
    for (shell, marker) in [
        ("zsh", "#compdef converge"),
        ("fish", "complete -c converge"),
    ] {
        let out = converge(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}:\n{script}");
        assert!(script.contains("reconcile"), "{shell}:\n{script}");
        assert!(!script.contains("--json"), "{shell}:\n{script}");
    }
    let out = converge(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(1));
}

/// A page's text with roff's escapes of `-` undone, so options read as typed.
fn page(dir: &std::path::Path, name: &str) -> String {
    fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .replace("\\-", "-")
}

#[test]
fn man_writes_a_page_per_command_naming_its_options_and_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("man");
    let out = converge(&["man", "--dir", out_dir.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut expected: Vec<String> = vec!["converge.1".into()];
    expected.extend(COMMANDS.iter().map(|c| format!("converge-{c}.1")));
    let mut written: Vec<String> = fs::read_dir(&out_dir)
        .expect("man dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(written, sorted, "no page for a hidden command or `help`");
    // It says what it wrote, one path a line.
    let listed = text(&out.stdout);
    assert_eq!(listed.lines().count(), expected.len(), "{listed}");

    let main = page(&out_dir, "converge.1");
    assert!(main.contains("\n.TH converge 1 "), "{main}");
    for command in COMMANDS {
        assert!(
            main.contains(&format!("converge-{command}(1)")),
            "converge.1 does not name {command}:\n{main}"
        );
    }
    assert!(!main.contains("converge-man"), "{main}");
    assert!(main.contains(".SH \"EXIT STATUS\""), "{main}");
    assert!(main.contains(".SH VERSION"), "{main}");
    for (command, options) in OPTIONS {
        let text = page(&out_dir, &format!("converge-{command}.1"));
        assert!(
            text.contains(&format!("\n.TH converge-{command} 1 ")),
            "{text}"
        );
        assert!(text.contains(&format!("converge {command}")), "{text}");
        for option in *options {
            assert!(
                text.contains(option),
                "converge-{command}.1 misses {option}:\n{text}"
            );
        }
        assert!(
            !text.contains("--json"),
            "converge-{command}.1 shows --json"
        );
        assert!(
            text.contains(".SH \"EXIT STATUS\"\n.TP\n\\fB0\\fR\n"),
            "converge-{command}.1 has no exit status:\n{text}"
        );
    }
    let reconcile = page(&out_dir, "converge-reconcile.1");
    for code in ["0", "1", "3", "4"] {
        assert!(
            reconcile.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "{reconcile}"
        );
    }

    // Again into the same directory: the pages are replaced, nothing else appears.
    let out = converge(&["man", "--dir", out_dir.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_dir(&out_dir).expect("man dir").count(),
        expected.len()
    );
}
