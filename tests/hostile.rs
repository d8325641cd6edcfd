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
//! `# expect: FRAGMENT` for each fragment the output (stdout and stderr) must hold. A manifest
//! case may also name, with `# beside: NAME`, a manifest of `tests/hostile/beside/` put in the
//! directory with it: for the rules between services (two spellings of one mount point). Every
//! case must also end without a panic, within [`DEADLINE`] (a regression that reads `/dev/zero`
//! whole fails instead of hanging), and with no control character in what it prints: converge
//! escapes what it quotes back. Inputs a file cannot hold (modes, owners, symlinks, sizes,
//! FIFOs, a byte order mark, a NUL byte) are built by the tests that guard them, below.

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
    /// Files of `tests/hostile/beside/` copied next to the case.
    beside: Vec<String>,
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
            let mut beside = Vec::new();
            for line in text.lines().take_while(|l| l.starts_with('#')) {
                if let Some(code) = line.strip_prefix("# expect-exit:") {
                    exit = code.trim().parse().ok();
                } else if let Some(fragment) = line.strip_prefix("# expect:") {
                    fragments.push(fragment.trim().to_string());
                } else if let Some(words) = line.strip_prefix("# command:") {
                    command = words.split_whitespace().map(str::to_string).collect();
                } else if let Some(name) = line.strip_prefix("# beside:") {
                    beside.push(name.trim().to_string());
                }
            }
            let exit = exit.unwrap_or_else(|| panic!("{}: no `# expect-exit: N`", path.display()));
            Case {
                path,
                command,
                exit,
                fragments,
                beside,
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
        for other in &case.beside {
            let from = Path::new(CORPUS).join("beside").join(other);
            fs::copy(&from, dir.join(other)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        }
        let config = work.path().join("config.yaml");
        fs::write(&config, "node: deb1\n").expect("config");
        let mut args: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), config.as_os_str()];
        args.extend(case.command.iter().map(std::ffi::OsStr::new));
        args.push(dir.as_os_str());
        let (code, shown) = run(&args);
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

// Inputs a corpus file cannot hold.

/// Runs `converge validate` on a directory holding `files` (name, bytes), with a plain node
/// configuration; checks what every case must hold (no panic, no control character printed).
fn validate_files(files: &[(&str, &[u8])]) -> (i32, String, std::time::Duration) {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("manifests");
    fs::create_dir(&dir).expect("mkdir");
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).expect("write");
    }
    validate_dir(work.path(), &dir)
}

fn validate_dir(work: &Path, dir: &Path) -> (i32, String, std::time::Duration) {
    let config = work.join("config.yaml");
    fs::write(&config, "node: deb1\n").expect("config");
    let start = std::time::Instant::now();
    let (code, shown) = run(&[
        "--config".as_ref(),
        config.as_os_str(),
        "validate".as_ref(),
        dir.as_os_str(),
    ]);
    let took = start.elapsed();
    if let Some(c) = shown.chars().find(|c| c.is_control() && *c != '\n') {
        panic!("prints the control character {c:?}:\n{shown}");
    }
    (code, shown, took)
}

/// A regression: nesting made the YAML parser's work quadratic (`x: [[[[…` took 50 s at
/// 200 000 levels; a 150 KB file stalled the daemon 25 s). A file of the largest size converge
/// reads, all nesting, is now refused at once.
#[test]
fn regression_a_megabyte_of_nesting_is_refused_at_once() {
    for opening in ["[", "{a: ", "- "] {
        let levels = 1_000_000 / opening.len();
        let text = format!("service: s\nstate: up\nx:\n {}\n", opening.repeat(levels));
        let (code, shown, took) = validate_files(&[("deep.yaml", text.as_bytes())]);
        assert_eq!(code, 1, "{shown}");
        assert!(
            shown.contains("sequences and mappings nested more than 32 levels deep"),
            "{opening:?}: {shown}"
        );
        assert!(took.as_secs() < 5, "{opening:?}: {took:?}");
    }
}

/// A regression: each problem's location re-parsed the file, so a 1 MiB file with hundreds of
/// problems took 8.5 s and 74 MB (release build). Now its problems are located in one pass,
/// and at most 50 shown.
#[test]
fn regression_a_megabyte_of_problems_is_reported_at_once() {
    let mut text = String::from("service: s\nstate: up\nresources:\n");
    for i in 0.. {
        if text.len() > 1000 * 1024 {
            break;
        }
        text.push_str(&format!(
            "  fs#{i}: {{dev: /dev/a{i}, mnt: rel{i}, type: ext4}}\n"
        ));
    }
    let (code, shown, took) = validate_files(&[("big.yaml", text.as_bytes())]);
    assert_eq!(code, 1);
    assert_eq!(shown.lines().count(), 51, "{shown}");
    let last = shown.lines().last().unwrap_or_default();
    assert!(
        last.contains("big.yaml: and ") && last.ends_with(" more problems not shown"),
        "{shown}"
    );
    // A debug build; the release build takes a fraction of a second (docs/performance.md).
    assert!(took.as_secs() < 15, "{took:?}");
}

/// A regression: a leading UTF-8 byte order mark (YAML allows it; some Windows editors write
/// it) was refused with a message about `---`.
#[test]
fn regression_a_byte_order_mark_is_read_past() {
    let text = b"\xef\xbb\xbfservice: s\nstate: up\n";
    let (code, shown, _) = validate_files(&[("bom.yaml", text)]);
    assert_eq!(
        (code, shown.trim_end().ends_with("1 service valid")),
        (0, true),
        "{shown}"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let config = work.path().join("config.yaml");
    fs::write(&config, b"\xef\xbb\xbfnode: deb1\n").expect("config");
    let (code, shown) = run(&[
        "--config".as_ref(),
        config.as_os_str(),
        "validate".as_ref(),
        SEED_DIR.as_ref(),
    ]);
    assert_eq!(code, 0, "{shown}");
}

/// Raw NUL bytes and other control characters in the text itself: the YAML parser refuses
/// them; nothing of them is printed.
#[test]
fn raw_control_bytes_in_a_manifest_are_refused_unprinted() {
    for bytes in [
        &b"service: s\0\nstate: up\n"[..],
        b"service: s\x1b[2J\nstate: up\n",
        b"service: s\nstate: up\x07\n",
        b"\0\0\0\0",
    ] {
        let (code, shown, _) = validate_files(&[("raw.yaml", bytes)]);
        assert_eq!(code, 1, "{shown}");
        assert!(shown.contains("raw.yaml:"), "{shown}");
    }
}

/// A regression: a manifest whose name holds a `\n` printed its errors as forged
/// `FILE:LINE:COL:` lines, and an ESC in the name reached the terminal.
#[test]
fn regression_a_file_name_cannot_forge_lines() {
    let name = "web.yaml:1:1: all good\n\x1b[2Jx.yaml";
    let (code, shown, _) = validate_files(&[(name, b"service: s\nstate: sideways\n")]);
    assert_eq!(code, 1);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(
        shown.contains("web.yaml:1:1: all good\\n\\u{1b}[2Jx.yaml:2:8: state: expected one of"),
        "{shown}"
    );
}

/// A regression: a FIFO, a directory or a symlink to a directory named `*.yaml` was skipped
/// without a word. Each is a warning; the rest of the directory is valid, and `validate`
/// exits 0 (and does not hang on the FIFO).
#[test]
fn regression_entries_named_like_manifests_that_are_not_files_are_warnings() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("manifests");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("web.yaml"), "service: web\nstate: down\n").expect("write");
    fs::create_dir(dir.join("db.yaml")).expect("mkdir");
    let fifo = std::ffi::CString::new(dir.join("queue.yml").into_os_string().into_encoded_bytes())
        .expect("path");
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the file.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink(work.path(), dir.join("linked.yaml")).expect("symlink");
    let (code, shown, _) = validate_dir(work.path(), &dir);
    assert_eq!(code, 0, "{shown}");
    for (name, what) in [
        ("db.yaml", "a directory"),
        ("linked.yaml", "a directory (through a symlink)"),
        ("queue.yml", "a FIFO"),
    ] {
        assert!(
            shown.contains(&format!(
                "/{name}: warning: skipped, not read as a manifest: it is {what};"
            )),
            "{name}: {shown}"
        );
    }
    assert!(shown.contains("1 service valid"), "{shown}");
}

/// A regression: a manifest symlinked to a file that is not YAML (/etc/shadow) echoed its
/// lines into the errors, hence into the journal and daemon.json.
#[test]
fn regression_a_manifest_linked_to_a_secret_file_is_not_echoed() {
    let work = tempfile::tempdir().expect("tempdir");
    let secret = work.path().join("shadow");
    let hash = "$6$Qx0LzN1P$8h2XkR0c2i1oUo8f7nC6gWv0m3Cj9cT0";
    let lines: String = [
        "root", "daemon", "bin", "sys", "www-data", "backup", "nobody",
    ]
    .iter()
    .map(|user| format!("{user}:{hash}:19000:0:99999:7:::\n"))
    .collect();
    fs::write(&secret, lines).expect("write");
    let dir = work.path().join("manifests");
    fs::create_dir(&dir).expect("mkdir");
    std::os::unix::fs::symlink(&secret, dir.join("web.yaml")).expect("symlink");
    let (code, shown, _) = validate_dir(work.path(), &dir);
    assert_eq!(code, 1, "{shown}");
    assert!(!shown.contains("Qx0LzN1P"), "{shown}");
    assert!(!shown.contains("daemon"), "{shown}");
    assert!(
        shown.contains("not a manifest: none of its 7 top-level keys"),
        "{shown}"
    );
}
