//! The permission model, end to end: what decides what root runs (the config file, the manifest
//! directory and files, scripts directories, scripts and programs, and every directory above
//! them) is refused by the commands that act when someone else can change it, and reported as a
//! warning by those that only look. Each case ran its script as root before.
//!
//! Owners other than root need root to set up; those cases say why they skip without it.

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};

use support::{Sandbox, assert_no_panic, text};

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn give_to_nobody(path: &Path) -> bool {
    if !converge_sim::testing::is_root() {
        eprintln!("skipping: giving a file to nobody needs root");
        return false;
    }
    lchown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
    true
}

/// A host app whose start script leaves a marker: if the marker exists, root ran it.
struct App {
    sb: Sandbox,
    scripts: PathBuf,
    marker: PathBuf,
}

impl App {
    fn new() -> App {
        let sb = Sandbox::new();
        sb.config("");
        let marker = sb.path("ran-as-root");
        let scripts = sb.path("init.d");
        sb.script("init.d/S10foo", &format!("id -u > {}", marker.display()));
        sb.script("init.d/K10foo", &format!("rm -f {}", marker.display()));
        sb.write(
            "manifests/web.yaml",
            &format!(
                "service: web\nstate: up\nresources:\n  app#0: {{scripts: {}}}\n",
                scripts.display()
            ),
        );
        for dir in [sb.path("manifests"), scripts.clone()] {
            chmod(&dir, 0o755);
        }
        App {
            sb,
            scripts,
            marker,
        }
    }

    fn converge(&self, args: &[&str]) -> (i32, String) {
        let mut all: Vec<&str> = args.to_vec();
        let dir = self.sb.path("manifests");
        all.push(dir.to_str().expect("utf-8"));
        let out = self.sb.converge(&all);
        assert_no_panic(&out);
        (
            out.status.code().unwrap_or(-1),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }

    /// `reconcile --once` refuses, says why and how to fix it, and runs nothing.
    fn assert_refused(&self, path: &Path, fragment: &str) {
        let (code, out) = self.converge(&["reconcile", "--once"]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&format!("{}", path.display())), "{out}");
        assert!(out.contains(fragment), "{out}");
        assert!(!self.marker.exists(), "root ran it: {out}");
        // The commands that only look say the same as a warning, with their own exit codes.
        for (command, exit) in [("validate", 0), ("plan", 2), ("status", 2)] {
            let (code, out) = self.converge(&[command]);
            assert_eq!(code, exit, "{command}: {out}");
            assert!(out.contains("warning: refusing"), "{command}: {out}");
        }
    }
}

#[test]
fn a_trusted_app_runs() {
    // The cases below refuse; this one shows the set-up itself is accepted.
    let app = App::new();
    let (code, out) = app.converge(&["reconcile", "--once"]);
    assert_eq!(code, 0, "{out}");
    assert!(app.marker.exists(), "{out}");
}

#[test]
fn regression_a_world_writable_script_is_not_run() {
    let app = App::new();
    let script = app.scripts.join("S10foo");
    chmod(&script, 0o777);
    // The owner is whoever runs the tests: root in CI, a user in the copy CI runs as one.
    app.assert_refused(&script, "is writable by its group and everyone (owner uid ");
    app.assert_refused(&script, ", mode 0777): another user could make converge");
    app.assert_refused(&script, &format!("chmod go-w {}", script.display()));
}

#[test]
fn regression_a_script_owned_by_nobody_is_not_run() {
    let app = App::new();
    let script = app.scripts.join("S10foo");
    if give_to_nobody(&script) {
        app.assert_refused(&script, "owner uid 65534");
    }
}

#[test]
fn regression_a_world_writable_scripts_directory_is_refused() {
    let app = App::new();
    chmod(&app.scripts, 0o777);
    app.assert_refused(&app.scripts, "refusing scripts directory of app#0");
}

#[test]
fn regression_a_scripts_directory_owned_by_nobody_is_refused() {
    let app = App::new();
    if give_to_nobody(&app.scripts) {
        app.assert_refused(&app.scripts, "owner uid 65534");
    }
}

#[test]
fn regression_a_world_writable_program_is_not_run() {
    let app = App::new();
    let program = app
        .sb
        .script("bin/start", &format!("id -u > {}", app.marker.display()));
    chmod(&program, 0o777);
    app.sb.write(
        "manifests/web.yaml",
        &format!(
            "service: web\nstate: up\nresources:\n  app#0: {{start: [{}]}}\n",
            program.display()
        ),
    );
    app.assert_refused(&program, "refusing program of app#0");
}

#[test]
fn regression_a_world_writable_directory_above_the_manifests_is_refused() {
    let app = App::new();
    let above = app.sb.path("etc");
    fs::create_dir(&above).expect("mkdir");
    chmod(&above, 0o777);
    let dir = above.join("manifests");
    fs::rename(app.sb.path("manifests"), &dir).expect("move the manifests");
    let dir_arg = dir.to_str().expect("utf-8");
    let out = app.sb.converge(&["reconcile", "--once", dir_arg]);
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!(
            "refusing manifest directory {}: the directory {} on its path is writable",
            dir.display(),
            above.display()
        )),
        "{shown}"
    );
    assert!(!app.marker.exists());
    // The daemon does not start on it either.
    let out = app.sb.converge(&["run", dir_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("on its path is writable"));
}

#[test]
fn regression_a_world_writable_config_file_is_refused() {
    // The configuration names every program converge runs.
    let app = App::new();
    let config = app.sb.path("config.yaml");
    chmod(&config, 0o666);
    let (code, out) = app.converge(&["reconcile", "--once"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "refusing config file {} is writable by its group and everyone",
            config.display()
        )),
        "{out}"
    );
    assert!(!app.marker.exists());
    let (code, out) = app.converge(&["validate"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning: refusing config file"), "{out}");
}

#[test]
fn regression_a_world_writable_program_named_by_the_config_is_refused() {
    let app = App::new();
    let umount = app.sb.script("bin/umount", "exit 0");
    chmod(&umount, 0o777);
    app.sb
        .config(&format!("commands:\n  umount: {}\n", umount.display()));
    let (code, out) = app.converge(&["reconcile", "--once"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "refusing program named by the config {}",
            umount.display()
        )),
        "{out}"
    );
}

#[test]
fn an_untrusted_service_is_refused_alone() {
    // One service's problem does not stop another's start.
    let app = App::new();
    let other = app.sb.path("other.up");
    app.sb
        .script("other.d/S10x", &format!("touch {}", other.display()));
    chmod(&app.sb.path("other.d"), 0o755);
    app.sb.write(
        "manifests/other.yaml",
        &format!(
            "service: other\nstate: up\nresources:\n  app#0: {{scripts: {}}}\n",
            app.sb.path("other.d").display()
        ),
    );
    chmod(&app.scripts.join("S10foo"), 0o666);
    let (code, out) = app.converge(&["reconcile", "--once"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("web: failed: refusing script of app#0"),
        "{out}"
    );
    assert!(out.contains("other: converged"), "{out}");
    assert!(other.exists() && !app.marker.exists(), "{out}");
}

/// Regression: an app's check ran as root from `plan` and `status` (and at every look of the
/// daemon) although it was world-writable: only starts and stops were checked before they
/// ran. Every program converge spawns is now checked right before it runs.
#[test]
fn regression_plan_and_status_do_not_run_an_untrusted_check() {
    let app = App::new();
    let checked = app.sb.path("check-ran");
    let check = app
        .sb
        .script("init.d/C10foo", &format!("id -u > {}", checked.display()));
    let (code, out) = app.converge(&["reconcile", "--once"]);
    assert_eq!(code, 0, "{out}");
    assert!(checked.exists(), "the trusted check runs: {out}");
    fs::remove_file(&checked).expect("remove the marker");
    chmod(&check, 0o777);
    for (command, exit) in [("plan", 2), ("status", 2)] {
        let (code, out) = app.converge(&[command]);
        assert_eq!(code, exit, "{command}: {out}");
        assert!(
            out.contains(&format!("refusing script of app#0 {}", check.display())),
            "{command}: {out}"
        );
        assert!(!checked.exists(), "{command} ran the check: {out}");
    }
}

/// Regression: a program the configuration names by a bare name (as every default does:
/// `drbdadm`, `mount`, …) was never checked, nor was the PATH directory it is found in: one
/// that others can write could hold a `umount` that root ran. It is now found as `execvp`
/// finds it, checked there, and run from there.
#[test]
fn regression_a_program_found_in_an_untrusted_path_directory_is_refused() {
    let app = App::new();
    let evil = app.sb.path("evil");
    let ran = app.sb.path("evil-ran");
    let umount = app.sb.script(
        "evil/my-umount",
        &format!("touch {}; exit 0", ran.display()),
    );
    chmod(&evil, 0o777);
    app.sb.config("commands:\n  umount: my-umount\n");
    let path = format!("{}:/usr/bin:/bin", evil.display());
    let run = |command: &str| {
        let mut all: Vec<&str> = command.split(' ').collect();
        let dir = app.sb.path("manifests");
        all.push(dir.to_str().expect("utf-8"));
        let out = app
            .sb
            .converge_cmd(&all)
            .env("PATH", &path)
            .output()
            .expect("run converge");
        assert_no_panic(&out);
        (
            out.status.code().unwrap_or(-1),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    };
    let (code, out) = run("validate");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "warning: refusing program named by the config {}",
            umount.display()
        )),
        "{out}"
    );
    let (code, out) = run("reconcile --once");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("on its path is writable"), "{out}");
    assert!(!ran.exists(), "root ran it: {out}");
}

/// A manifest that is a symlink leaving the manifest directory is trusted only if where it
/// leads passes the same rule: one into a directory others can write is refused (anyone could
/// put a service there that root runs).
#[test]
fn a_manifest_symlink_leading_to_a_directory_others_can_write_is_refused() {
    let app = App::new();
    let shared = app.sb.path("shared");
    fs::create_dir_all(&shared).expect("mkdir");
    let target = shared.join("web.yaml");
    fs::rename(app.sb.path("manifests/web.yaml"), &target).expect("move the manifest");
    std::os::unix::fs::symlink(&target, app.sb.path("manifests/web.yaml")).expect("symlink");
    chmod(&shared, 0o755);
    let (code, out) = app.converge(&["reconcile", "--once"]);
    assert_eq!(code, 0, "a trusted target is fine: {out}");
    fs::remove_file(&app.marker).expect("the start ran");
    chmod(&shared, 0o777);
    let (code, out) = app.converge(&["reconcile", "--once"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refusing manifest"), "{out}");
    assert!(out.contains(&format!("{}", shared.display())), "{out}");
    let (code, out) = app.converge(&["validate"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning: refusing manifest"), "{out}");
}
