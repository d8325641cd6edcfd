//! The hostile-input corpus: manifests and node configurations written as an attacker or a
//! clumsy operator would, each with the exit code and message fragments it must produce.
//!
//! - `tests/hostile/manifests/NAME.yaml`: put alone in an empty manifest directory, checked with
//!   `converge validate DIR`.
//! - `tests/hostile/configs/NAME.yaml`: the node configuration of `converge validate` on the
//!   shipped manifests, or of another command given by a `# command: WORDS` line (`plan`,
//!   `reconcile --once`): paths of the node a configuration can name (`/dev/zero` as
//!   `proc_drbd`, `/tmp` as `log_dir`). A case that runs `reconcile --once` must be refused
//!   before acting: it names programs that do nothing (`/bin/false`) all the same.
//!
//! Each file starts with its expectations, as comment lines: `# expect-exit: N` (once), then
//! `# expect: FRAGMENT` for each fragment the output (stdout and stderr) must hold. Every case
//! must also end without a panic, within [`DEADLINE`] (a regression that reads `/dev/zero` whole
//! fails instead of hanging), and with no control character in what it prints: converge
//! escapes what it quotes back. Inputs a file cannot hold (modes, owners, symlinks, sizes) are
//! built by the tests that guard them.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{CONVERGE, SEED_DIR, text};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile");

/// How long one case may run.
const DEADLINE: Duration = Duration::from_secs(60);

struct Case {
    path: PathBuf,
    /// The command and its options, before the manifest directory; `validate` unless said.
    command: Vec<String>,
    exit: i32,
    fragments: Vec<String>,
}

fn cases(kind: &str) -> Vec<Case> {
    let dir = Path::new(CORPUS).join(kind);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).expect("read case");
            let text = String::from_utf8_lossy(&bytes);
            let mut exit = None;
            let mut fragments = Vec::new();
            let mut command = vec!["validate".to_string()];
            for line in text.lines().take_while(|l| l.starts_with('#')) {
                if let Some(code) = line.strip_prefix("# expect-exit:") {
                    exit = code.trim().parse().ok();
                } else if let Some(fragment) = line.strip_prefix("# expect:") {
                    fragments.push(fragment.trim().to_string());
                } else if let Some(words) = line.strip_prefix("# command:") {
                    command = words.split_whitespace().map(str::to_string).collect();
                }
            }
            let exit = exit.unwrap_or_else(|| panic!("{}: no `# expect-exit: N`", path.display()));
            Case {
                path,
                command,
                exit,
                fragments,
            }
        })
        .collect()
}

/// Runs converge and checks what every case must hold; returns (exit code, output).
fn run(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let child = std::process::Command::new(CONVERGE)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run converge");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait for converge"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("converge {args:?} did not end within {DEADLINE:?}");
        }
    };
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !shown.contains("panicked") && !shown.contains("RUST_BACKTRACE"),
        "{shown}"
    );
    (out.status.code().unwrap_or(-1), shown)
}

fn check(case: &Case, code: i32, shown: &str, failures: &mut Vec<String>) {
    let name = case
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    if code != case.exit {
        failures.push(format!(
            "{name}: exit {code}, expected {}:\n{shown}",
            case.exit
        ));
    }
    for fragment in &case.fragments {
        if !shown.contains(fragment.as_str()) {
            failures.push(format!("{name}: no {fragment:?} in:\n{shown}"));
        }
    }
    if let Some(c) = shown.chars().find(|c| c.is_control() && *c != '\n') {
        failures.push(format!(
            "{name}: prints the control character {c:?}:\n{shown}"
        ));
    }
}

#[test]
fn hostile_manifests() {
    let cases = cases("manifests");
    let mut failures = Vec::new();
    for case in &cases {
        let work = tempfile::tempdir().expect("tempdir");
        let dir = work.path().join("manifests");
        fs::create_dir(&dir).expect("mkdir");
        let name = case.path.file_name().expect("file name");
        fs::copy(&case.path, dir.join(name)).expect("copy case");
        let config = work.path().join("config.yaml");
        fs::write(&config, "node: deb1\n").expect("config");
        let (code, shown) = run(&[
            "--config".as_ref(),
            config.as_os_str(),
            "validate".as_ref(),
            dir.as_os_str(),
        ]);
        check(case, code, &shown, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn hostile_configs() {
    let cases = cases("configs");
    let mut failures = Vec::new();
    for case in &cases {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), case.path.as_os_str()];
        args.extend(case.command.iter().map(std::ffi::OsStr::new));
        args.push(SEED_DIR.as_ref());
        let (code, shown) = run(&args);
        check(case, code, &shown, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
