//! `converge run` end to end: a real daemon process reacting to manifest edits, GitOps-style
//! symlink swaps, broken and deleted manifests, DRBD events and signals. Waits are generous
//! and nothing asserts timing (speed is measured in benches, not here).

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::{Sandbox, text};

const WAIT: Duration = Duration::from_secs(20);

/// Polls `check` until it holds or WAIT passes.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for: {what}");
}

impl Daemon {
    fn start(sb: &Sandbox, dir: &Path) -> Daemon {
        Daemon::start_with(sb, dir, &[])
    }

    fn start_with(sb: &Sandbox, dir: &Path, options: &[&str]) -> Daemon {
        let mut args = vec!["run"];
        args.extend_from_slice(options);
        args.push(dir.to_str().expect("utf-8"));
        let daemon = Daemon::spawn(sb.converge_cmd(&args), sb.path("daemon.log"));
        eventually("the daemon writes its view", || {
            sb.path("state/daemon.json").exists()
        });
        daemon
    }
}

fn daemon_config(sb: &Sandbox, extra: &str) {
    sb.config(&format!("debounce: 50ms\nresync: 1h\n{extra}"));
}

/// A host app whose S script creates `marker`, K removes it, C checks it.
fn app_manifest(sb: &Sandbox, dir: &Path, name: &str, state: &str) {
    support::host_app_manifest(sb, dir, name, state, "");
}

fn is_up(sb: &Sandbox, name: &str) -> bool {
    sb.path(&format!("{name}.up")).exists()
}

fn view(sb: &Sandbox) -> String {
    fs::read_to_string(sb.path("state/daemon.json")).unwrap_or_default()
}

#[test]
fn edits_bring_a_service_up_then_down_and_sigterm_exits_cleanly() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web", "down");
    let daemon = Daemon::start(&sb, &dir);
    app_manifest(&sb, &dir, "web", "up");
    eventually("web goes up after the edit", || is_up(&sb, "web"));
    // A vim-style save: write a new file, rename it over the manifest.
    let manifest = dir.join("web.yaml");
    let edited = fs::read_to_string(&manifest)
        .expect("read")
        .replace("state: up", "state: down");
    fs::write(dir.join(".web.yaml.swp"), &edited).expect("swap file");
    fs::rename(dir.join(".web.yaml.swp"), &manifest).expect("rename");
    eventually("web goes down after a save by rename", || {
        !is_up(&sb, "web")
    });
    assert_eq!(daemon.stop(WAIT), 0);
    let holder = support::converge_with(
        &sb.path("config.yaml"),
        &["status", dir.to_str().expect("utf-8")],
    );
    assert!(!text(&holder.stderr).contains("panicked"));
    assert_eq!(
        converge_node::controller::lock::holder(&sb.path("state")),
        None,
        "lock released"
    );
}

#[test]
fn gitops_symlink_swap_applies_the_new_revision_and_survives_the_old_dir_vanishing() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let rev1 = sb.path("repo/rev-aaaa");
    app_manifest(&sb, &rev1, "api", "down");
    let link = sb.path("repo/current");
    symlink(&rev1, &link).expect("link");
    let daemon = Daemon::start(&sb, &link);
    // git-sync: a new worktree, a temporary link to it, renamed over the link; old one deleted.
    let rev2 = sb.path("repo/rev-bbbb");
    app_manifest(&sb, &rev2, "api", "up");
    symlink(&rev2, sb.path("repo/tmp-link")).expect("tmp link");
    fs::rename(sb.path("repo/tmp-link"), &link).expect("swap");
    fs::remove_dir_all(&rev1).expect("remove old worktree");
    eventually("api goes up from the new revision", || is_up(&sb, "api"));
    eventually("the revision in force is the new worktree", || {
        view(&sb).contains("rev-bbbb")
    });
    // Later edits inside the new target are watched too.
    app_manifest(&sb, &rev2, "api", "down");
    eventually("api goes down after an edit in the new worktree", || {
        !is_up(&sb, "api")
    });
    // A swap is routine: no warning (notify's own, about the vanished directory, is muted).
    let log = daemon.log();
    assert!(!log.contains("WARNING") && !log.contains("ERROR"), "{log}");
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn invalid_yaml_keeps_the_last_good_version_and_is_reported_until_fixed() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "db", "up");
    let daemon = Daemon::start(&sb, &dir);
    eventually("db up", || is_up(&sb, "db"));
    fs::write(
        dir.join("db.yaml"),
        "service: db\nstate: down\nresources: [\n",
    )
    .expect("break it");
    eventually(
        "the error is in the daemon's view with file:line:column",
        || view(&sb).contains("db.yaml:4:1"),
    );
    let status = sb.converge(&["status", dir.to_str().expect("utf-8")]);
    let shown = text(&status.stdout);
    assert!(
        shown.contains("db.yaml:4:1") && shown.contains("daemon"),
        "{shown}"
    );
    assert!(
        is_up(&sb, "db"),
        "nothing stopped because of a broken manifest"
    );
    app_manifest(&sb, &dir, "db", "down");
    eventually("fixed manifest applied", || !is_up(&sb, "db"));
    eventually("error cleared", || !view(&sb).contains("db.yaml:4:1"));
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn regression_status_exits_2_while_a_service_is_orphaned() {
    // A deleted manifest without prune leaves its service orphaned: up, as it is. And
    // `converge status` compared the daemon's result with "orphaned" while the daemon wrote
    // "orphaned: manifest deleted, …": it said all was well (exit 0) beside an orphan.
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "a", "up");
    app_manifest(&sb, &dir, "b", "up");
    let daemon = Daemon::start(&sb, &dir);
    let status = || sb.converge(&["status", dir.to_str().expect("utf-8")]);
    eventually("both up and converged", || {
        status().status.code() == Some(0)
    });
    fs::remove_file(dir.join("b.yaml")).expect("delete");
    eventually("b reported orphaned", || view(&sb).contains("orphaned"));
    assert!(is_up(&sb, "b"), "an orphan is left as it is");
    let out = status();
    let shown = text(&out.stdout);
    assert!(shown.contains("orphaned: manifest deleted"), "{shown}");
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn deleted_manifest_with_prune_is_brought_down_but_an_emptied_directory_is_not() {
    let sb = Sandbox::new();
    daemon_config(&sb, "prune: true\n");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "a", "up");
    app_manifest(&sb, &dir, "b", "up");
    let daemon = Daemon::start(&sb, &dir);
    eventually("both up", || is_up(&sb, "a") && is_up(&sb, "b"));
    fs::remove_file(dir.join("b.yaml")).expect("delete b");
    eventually("b pruned: brought down", || !is_up(&sb, "b"));
    // Now the last manifest goes too: without allow_empty, nothing is stopped.
    fs::remove_file(dir.join("a.yaml")).expect("delete a");
    eventually("the empty directory is reported", || {
        view(&sb).contains("holds no valid manifest")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(is_up(&sb, "a"), "an emptied directory brings nothing down");
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn regression_a_manifest_deleted_during_its_start_is_still_pruned() {
    // A run that started before the manifest was deleted, and brought the service up, was taken
    // for the pruning run: the orphan was forgotten and left up.
    let sb = Sandbox::new();
    daemon_config(&sb, "prune: true\n");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "a", "up");
    let marker = sb.path("slow.up");
    let starting = sb.path("slow.starting");
    sb.script(
        "slow.d/S10app",
        &format!(
            "touch {}; sleep 2; touch {}",
            starting.display(),
            marker.display()
        ),
    );
    sb.script("slow.d/K10app", &format!("rm -f {}", marker.display()));
    sb.script("slow.d/C10app", &format!("test -e {}", marker.display()));
    fs::write(
        dir.join("slow.yaml"),
        format!(
            "service: slow\nstate: up\nresources:\n  app#0:\n    scripts: {}\n",
            sb.path("slow.d").display()
        ),
    )
    .expect("write");
    let daemon = Daemon::start(&sb, &dir);
    eventually("slow's start under way", || starting.exists());
    fs::remove_file(dir.join("slow.yaml")).expect("delete");
    eventually("slow started, then pruned: brought down", || {
        !marker.exists() && daemon.log().contains("pruned service is down")
    });
    assert!(is_up(&sb, "a"));
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn sighup_resyncs_and_drift_is_corrected() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "w", "up");
    let daemon = Daemon::start(&sb, &dir);
    eventually("w up", || is_up(&sb, "w"));
    // Drift: the app stops behind converge's back; SIGHUP makes the daemon look again.
    fs::remove_file(sb.path("w.up")).expect("drift");
    daemon.signal(libc::SIGHUP);
    eventually("w restarted after SIGHUP", || is_up(&sb, "w"));
    assert!(daemon.log().contains("SIGHUP"), "{}", daemon.log());
    assert_eq!(daemon.stop(WAIT), 0);
}

/// Whether every thread of `pid` is stopped (SIGSTOP takes effect asynchronously).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(") ")?.1.chars().next()?;
                Some(state == 'T')
            })
            .unwrap_or(false)
    })
}

#[test]
fn an_inotify_queue_overflow_makes_the_daemon_re_read_everything() {
    // A real overflow, not a simulated one: with the daemon stopped nothing drains its inotify
    // queue, so more events than the queue holds (files created in the manifest directory's
    // parent, which is watched for symlink swaps) overflow it. The manifest edit made after
    // that is dropped by the kernel: only the overflow (notify's Rescan) can tell the daemon.
    let queue: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .expect("/proc/sys/fs/inotify/max_queued_events");
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web", "down");
    let daemon = Daemon::start(&sb, &dir);
    let pid = daemon.child.id();
    daemon.signal(libc::SIGSTOP);
    eventually("the daemon is stopped", || all_threads_stopped(pid));
    let noise = sb.path("");
    // Each new file is at least two events the watch asks for (created, closed after writing),
    // neither merged with the one before it: the kernel merges only identical consecutive
    // events.
    for i in 0..queue / 2 + 100 {
        fs::write(noise.join(format!("noise-{i}")), "").expect("noise file");
    }
    app_manifest(&sb, &dir, "web", "up");
    daemon.signal(libc::SIGCONT);
    eventually("web goes up, known from the overflow alone", || {
        is_up(&sb, "web")
    });
    let log = daemon.log();
    assert!(
        log.contains("reconcile: manifests changed (rescan (the watcher lost events)"),
        "{log}"
    );
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn the_reason_of_each_reconcile_is_logged_and_verbose_adds_what_the_watcher_saw() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web", "down");
    let daemon = Daemon::start_with(&sb, &dir, &["--verbose"]);
    app_manifest(&sb, &dir, "web", "up");
    eventually("web goes up", || is_up(&sb, "web"));
    let log = daemon.log();
    assert!(
        log.contains("web     INFO    reconcile: manifests changed (web.yaml "),
        "{log}"
    );
    assert!(
        log.contains("DEBUG   manifests changed: web.yaml "),
        "{log}"
    );
    assert_eq!(daemon.stop(WAIT), 0);

    // Without --verbose: the reasons, no debug lines. (The view is removed so that the start
    // waits for this daemon's.)
    fs::remove_file(sb.path("state/daemon.json")).expect("rm view");
    let daemon = Daemon::start(&sb, &dir);
    app_manifest(&sb, &dir, "web", "down");
    eventually("web goes down", || !is_up(&sb, "web"));
    let log = daemon.log();
    assert!(log.contains("reconcile: manifests changed"), "{log}");
    assert!(!log.contains("DEBUG"), "{log}");
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn regression_a_long_debounce_does_not_delay_the_exit() {
    // Stopping the watcher once waited for a debouncer thread that slept a tick first; the tick
    // grew with `debounce`, and this daemon took half an hour to exit.
    let sb = Sandbox::new();
    sb.config("debounce: 1h\nresync: 1h\n");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web", "down");
    let daemon = Daemon::start(&sb, &dir);
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn a_second_daemon_is_refused_while_the_first_runs() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "x", "down");
    let daemon = Daemon::start(&sb, &dir);
    let second = sb.converge(&["run", dir.to_str().expect("utf-8")]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        text(&second.stderr).contains("another converge is acting on this node"),
        "{}",
        text(&second.stderr)
    );
    let once = sb.converge(&["reconcile", "--once", dir.to_str().expect("utf-8")]);
    assert_eq!(
        once.status.code(),
        Some(1),
        "reconcile --once shares the lock"
    );
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn world_writable_manifests_are_refused() {
    // Refused alone: the daemon runs, says why in its view, and never starts it.
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "p", "up");
    app_manifest(&sb, &dir, "q", "up");
    chmod(&dir.join("p.yaml"), 0o666);
    let daemon = Daemon::start(&sb, &dir);
    eventually("q up", || is_up(&sb, "q"));
    let view = view(&sb);
    assert!(
        view.contains("refusing manifest") && view.contains("p.yaml is writable by"),
        "{view}"
    );
    assert!(!is_up(&sb, "p"));
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn sigterm_during_an_action_lets_it_finish_then_exits_0_and_releases_the_lock() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    let marker = sb.path("slow.up");
    sb.script(
        "slow.d/S10app",
        &format!("sleep 2; touch {}", marker.display()),
    );
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(
        dir.join("slow.yaml"),
        format!(
            "service: slow\nstate: up\nresources:\n  app#0:\n    start: [{}]\n",
            sb.path("slow.d/S10app").display()
        ),
    )
    .expect("manifest");
    let daemon = Daemon::start(&sb, &dir);
    eventually("the slow start to be running", || {
        daemon.log().contains("spawn:")
    });
    let code = daemon.stop(WAIT);
    assert_eq!(code, 0);
    assert!(marker.exists(), "the running action was allowed to finish");
    assert_eq!(
        converge_node::controller::lock::holder(&sb.path("state")),
        None,
        "lock released"
    );
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Gives `path` to nobody when running as root (the attacker's files); as anyone else the
/// world-writable mode alone makes the case.
fn give_to_nobody(path: &Path) {
    if converge_sim::testing::is_root() {
        std::os::unix::fs::lchown(path, Some(65534), Some(65534)).expect("chown");
    }
}

#[test]
fn regression_a_manifest_directory_made_world_writable_after_start_is_refused() {
    // `chmod 777` on the daemon's manifest directory, then a manifest written by someone else:
    // its start script ran as root. Every reload checks the directory now.
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web", "up");
    let daemon = Daemon::start(&sb, &dir);
    eventually("web up", || is_up(&sb, "web"));
    chmod(&dir, 0o777);
    app_manifest(&sb, &sb.path("drop"), "evil", "up");
    let evil = dir.join("evil.yaml");
    fs::rename(sb.path("drop/evil.yaml"), &evil).expect("plant");
    give_to_nobody(&evil);
    eventually("the directory refused in the daemon's view", || {
        view(&sb).contains("refusing manifest directory")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!is_up(&sb, "evil"), "root ran it: {}", daemon.log());
    assert!(is_up(&sb, "web"), "nothing torn down");
    // Fixed: the next reload takes the directory in again.
    chmod(&dir, 0o755);
    fs::remove_file(&evil).expect("remove");
    app_manifest(&sb, &dir, "web", "up");
    eventually("the refusal cleared", || {
        !view(&sb).contains("refusing manifest directory")
    });
    assert_eq!(daemon.stop(WAIT), 0);
}

/// A manifest that becomes writable by others after the daemon loaded it (here `chmod 666`,
/// then an edit that would stop the service) is refused at the reload, and its last good
/// version stays in force: nothing is torn down on the word of a file anyone could have
/// written. Regression: made private again, the edit was never taken (the text was the one
/// already read, so the reload was taken for "unchanged" and nothing was reconciled).
#[test]
fn regression_an_untrusted_edit_keeps_the_last_good_version_and_is_taken_once_private() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web", "up");
    let daemon = Daemon::start(&sb, &dir);
    eventually("web up", || is_up(&sb, "web"));
    let manifest = dir.join("web.yaml");
    chmod(&manifest, 0o666);
    let text = fs::read_to_string(&manifest).expect("read");
    fs::write(&manifest, text.replace("state: up", "state: down")).expect("edit");
    eventually("the manifest refused in the daemon's view", || {
        view(&sb).contains("refusing manifest")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(is_up(&sb, "web"), "torn down: {}", daemon.log());
    // Made private again, the edit is taken: the service stops.
    chmod(&manifest, 0o644);
    eventually("web down", || !is_up(&sb, "web"));
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn regression_a_symlink_swap_to_a_directory_others_can_write_is_refused() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let rev1 = sb.path("repo/rev-1");
    app_manifest(&sb, &rev1, "web", "up");
    let link = sb.path("repo/current");
    symlink(&rev1, &link).expect("link");
    let daemon = Daemon::start(&sb, &link);
    eventually("web up", || is_up(&sb, "web"));
    let rev2 = sb.path("repo/rev-2");
    app_manifest(&sb, &rev2, "evil", "up");
    chmod(&rev2, 0o777);
    give_to_nobody(&rev2);
    symlink(&rev2, sb.path("repo/next")).expect("link");
    fs::rename(sb.path("repo/next"), &link).expect("swap");
    let start = Instant::now();
    while !view(&sb).contains("refusing manifest directory") && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        view(&sb).contains("refusing manifest directory"),
        "{}\n{}",
        daemon.log(),
        view(&sb)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!is_up(&sb, "evil"), "root ran it: {}", daemon.log());
    assert!(is_up(&sb, "web"), "the last good version stays in force");
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn regression_a_script_changed_after_loading_is_checked_right_before_it_runs() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web", "up");
    let daemon = Daemon::start(&sb, &dir);
    eventually("web up", || is_up(&sb, "web"));
    // No manifest changes, so no reload: the spawn itself must check.
    chmod(&sb.path("web.d/S10app"), 0o777);
    fs::remove_file(sb.path("web.up")).expect("drift");
    daemon.signal(libc::SIGHUP);
    let start = Instant::now();
    while !view(&sb).contains("refusing program") {
        assert!(
            start.elapsed() < WAIT,
            "the start was not refused in the daemon's view:\n{}\n{}",
            view(&sb),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_up(&sb, "web"), "root ran it: {}", daemon.log());
    assert_eq!(daemon.stop(WAIT), 0);
}

/// A manifest of service `name` with an unknown key on every line, `bytes` long: as costly to
/// parse as a file of that size gets (every line a problem to locate).
fn unknown_keys(name: &str, bytes: usize) -> String {
    let mut text = format!("service: {name}\nstate: up\n");
    let mut i = 0;
    while text.len() < bytes {
        text.push_str(&format!("k{i}: 1\n"));
        i += 1;
    }
    text
}

/// Seconds `converge validate` takes on a directory holding one such file of `bytes`: what a
/// reload pays per file with this build, on this machine, now.
fn parse_cost(sb: &Sandbox, bytes: usize) -> f64 {
    let one = sb.path("calibrate");
    fs::create_dir_all(&one).expect("mkdir");
    fs::write(one.join("bad.yaml"), unknown_keys("bad", bytes)).expect("write");
    let start = Instant::now();
    let out = sb.converge(&["validate", one.to_str().expect("utf-8")]);
    let cost = start.elapsed().as_secs_f64();
    assert!(
        text(&out.stdout).contains("unknown key") || text(&out.stderr).contains("unknown key"),
        "{}",
        text(&out.stderr)
    );
    fs::remove_dir_all(&one).expect("rm");
    cost
}

/// `count` files of unknown keys, `bad-NNN.yaml`, written in `stage`, to be moved into the
/// manifest directory at once: they sort after `a.yaml`, before `web.yaml`.
fn stage_bad_files(stage: &Path, count: usize, bytes: usize) -> Vec<PathBuf> {
    fs::create_dir_all(stage).expect("mkdir");
    (0..count)
        .map(|i| {
            let path = stage.join(format!("bad-{i:03}.yaml"));
            fs::write(&path, unknown_keys(&format!("bad{i}"), bytes)).expect("write");
            path
        })
        .collect()
}

fn move_into(files: &[PathBuf], dir: &Path) {
    for file in files {
        fs::rename(file, dir.join(file.file_name().expect("name"))).expect("rename");
    }
}

/// Waits for the manifest watcher (`--verbose`) to have passed a change on: the reload that
/// reads it starts then.
fn wait_for_reload(daemon: &Daemon, changes_before: usize) {
    eventually("the reload to start", || {
        daemon.log().matches("DEBUG   manifests changed").count() > changes_before
    });
}

#[test]
fn regression_sigterm_is_honoured_while_a_reload_parses_many_bad_files() {
    // The daemon read the manifest directory on its event loop, and SIGTERM was not looked at
    // until the read ended: ten files of 1 MiB of unknown keys, each bounded in cost but not
    // all of them, held up the exit 4.6 s with the release build, 26.8 s with the debug one.
    // The read is off the loop now, and abandoned between two files at shutdown, with nothing
    // of it taken in.
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web", "up");
    // The bound is a few files' parse; the unfixed daemon took them all, five times as long.
    let bytes = 256 * 1024;
    let per_file = parse_cost(&sb, bytes);
    let bound = 3.0 + 2.0 * per_file;
    let count = ((5.0 * bound / per_file).ceil() as usize).clamp(10, 300);
    let mut files = stage_bad_files(&sb.path("stage"), count, bytes);
    // A valid new service, read first: a reload abandoned after it must not bring it in.
    app_manifest(&sb, &sb.path("stage"), "a", "up");
    files.insert(0, sb.path("stage/a.yaml"));
    let daemon = Daemon::start_with(&sb, &dir, &["--verbose"]);
    eventually("web up", || is_up(&sb, "web"));
    let changes = daemon.log().matches("DEBUG   manifests changed").count();
    move_into(&files, &dir);
    wait_for_reload(&daemon, changes);
    // Well into the read: a.yaml read, bad files being parsed.
    std::thread::sleep(Duration::from_secs_f64(2.0 * per_file));
    let log_before = daemon.log();
    assert!(
        !log_before.contains("unknown key"),
        "the reload ended before SIGTERM ({count} files of {per_file:.2} s): the test proves nothing\n{log_before}"
    );
    let mut daemon = daemon;
    daemon.signal(libc::SIGTERM);
    let sent = Instant::now();
    // Waited for past the bound, to say how long it took.
    let status = loop {
        if let Some(status) = daemon.child.try_wait().expect("wait") {
            break Some(status);
        }
        if sent.elapsed() > WAIT + Duration::from_secs_f64(5.0 * bound) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed().as_secs_f64();
    eprintln!(
        "SIGTERM to exit: {took:.2} s (bound {bound:.1} s; {count} files of {per_file:.2} s)"
    );
    let log = daemon.log();
    assert!(
        took < bound,
        "SIGTERM took {took:.1} s to exit{} (bound {bound:.1} s) while a reload parsed {count} files of {per_file:.2} s each:\n{log}",
        if status.is_none() { " and more" } else { "" }
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert!(
        log.contains("the manifest reload under way is abandoned"),
        "{log}"
    );
    // Nothing of the abandoned reload took effect, nothing was torn down.
    assert!(!log.contains("unknown key"), "{log}");
    let view = view(&sb);
    assert!(
        view.contains("\"service\": \"web\"") && !view.contains("\"service\": \"a\""),
        "{view}"
    );
    assert!(!view.contains("bad-"), "{view}");
    assert!(!is_up(&sb, "a"), "a half-read reload was taken in:\n{log}");
    assert!(is_up(&sb, "web"));
}

#[test]
fn a_slow_reload_holds_up_neither_other_events_nor_a_change_made_during_it() {
    // While a reload parses large broken files, SIGHUP still resyncs (the read is off the
    // loop), and a manifest edited after the read went past it is read again after it.
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "a", "up");
    app_manifest(&sb, &dir, "web", "up");
    let bytes = 256 * 1024;
    let per_file = parse_cost(&sb, bytes);
    // A read of a few seconds, whatever the build.
    let count = ((4.0 / per_file).ceil() as usize).clamp(4, 100);
    let files = stage_bad_files(&sb.path("stage"), count, bytes);
    let daemon = Daemon::start_with(&sb, &dir, &["--verbose"]);
    eventually("both up", || is_up(&sb, "a") && is_up(&sb, "web"));
    let changes = daemon.log().matches("DEBUG   manifests changed").count();
    move_into(&files, &dir);
    wait_for_reload(&daemon, changes);
    // Drift, corrected on SIGHUP before the read ends.
    fs::remove_file(sb.path("web.up")).expect("drift");
    daemon.signal(libc::SIGHUP);
    // a.yaml, read first, is edited while the bad files are parsed.
    app_manifest(&sb, &dir, "a", "down");
    eventually("web restarted after SIGHUP", || is_up(&sb, "web"));
    eventually("the edit made during the read is read after it", || {
        !is_up(&sb, "a")
    });
    let log = daemon.log();
    let restarted = log
        .find("web     INFO    reconcile: resync (SIGHUP)")
        .unwrap_or_else(|| panic!("{log}"));
    let read = log.find("unknown key").unwrap_or_else(|| panic!("{log}"));
    assert!(
        restarted < read,
        "the resync waited for the reload to end:\n{log}"
    );
    assert!(is_up(&sb, "web"), "nothing torn down by the broken files");
    assert_eq!(daemon.stop(WAIT), 0);
}

#[test]
fn log_format_json_and_the_former_json_write_json_lines() {
    let sb = Sandbox::new();
    daemon_config(&sb, "");
    let dir = sb.path("manifests");
    app_manifest(&sb, &dir, "web", "up");
    for option in [&["--log-format", "json"][..], &["--json"]] {
        // The view is removed so that the start waits for this daemon's.
        let _ = fs::remove_file(sb.path("state/daemon.json"));
        let daemon = Daemon::start_with(&sb, &dir, option);
        eventually("web goes up", || is_up(&sb, "web"));
        eventually("a reconcile is logged", || {
            daemon.log().contains("reconcile")
        });
        let log = daemon.log();
        assert_eq!(daemon.stop(WAIT), 0, "{log}");
        let lines: Vec<&str> = log.lines().collect();
        assert!(!lines.is_empty());
        for line in lines {
            let event: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{option:?}: not JSON ({e}): {line}"));
            assert!(event["level"].is_string(), "{line}");
        }
        fs::remove_file(sb.path("web.up")).expect("marker");
    }
}
