//! What converge writes and reads on a node, against other local users and hostile inputs,
//! end to end through the binary: `log_dir` and `state_dir` it cannot trust are refused, no file
//! is written through a symlink or a hard link, a script's output is bounded in memory and in
//! its log, and input files are read with a cap.
//!
//! Tests that need to give a file to another user (`nobody`) need root and say why they skip.

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use support::{Sandbox, assert_no_panic, text};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A host app `web` whose S10foo runs `start` and whose C10foo checks a marker.
fn web_service(sb: &Sandbox, start: &str) -> PathBuf {
    let marker = sb.path("marker");
    sb.script(
        "init.d/S10foo",
        &format!("{start}\necho started; touch {}", marker.display()),
    );
    sb.script("init.d/C10foo", &format!("test -e {}", marker.display()));
    sb.write(
        "manifests/web.yaml",
        &format!(
            "service: web\nstate: up\nresources:\n  app#0:\n    scripts: {}\n    timeout: 2m\n",
            sb.path("init.d").display()
        ),
    );
    sb.path("manifests")
}

fn reconcile(sb: &Sandbox, dir: &Path) -> (i32, String) {
    let out = sb.converge(&["reconcile", "--once", dir.to_str().expect("utf-8")]);
    assert_no_panic(&out);
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (out.status.code().unwrap_or(-1), shown)
}

/// A root-owned file an attacker would like converge to overwrite.
fn victim(sb: &Sandbox) -> PathBuf {
    sb.write("victim", "precious\n")
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn regression_a_log_dir_owned_by_another_user_is_refused_and_its_links_never_followed() {
    // The attack of the issue: the default log_dir was in /var/tmp, so any local user could
    // create it first, own it, and plant `svc_web_S10foo.log → /root/victim`.
    if !is_root() {
        eprintln!("skipping: needs root to give the log directory to nobody");
        return;
    }
    let sb = Sandbox::new();
    sb.config("");
    let dir = web_service(&sb, "");
    let victim = victim(&sb);
    let log_dir = sb.path("log");
    fs::create_dir(&log_dir).expect("mkdir");
    chmod(&log_dir, 0o755);
    symlink(&victim, log_dir.join("svc_web_S10foo.log")).expect("symlink");
    std::os::unix::fs::lchown(&log_dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    let (code, shown) = reconcile(&sb, &dir);
    assert_eq!(code, 1, "{shown}");
    let expected = format!(
        "log_dir {0} is owned by uid 65534, neither root nor the user converge runs as (uid 0) \
         (owner uid 65534, mode 0755)",
        log_dir.display()
    );
    assert!(shown.contains(&expected), "{shown}");
    assert!(
        shown.contains(&format!("fix: chown root {}", log_dir.display())),
        "{shown}"
    );
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
    assert!(!sb.path("marker").exists(), "nothing ran: {shown}");
}

#[test]
fn regression_a_symlink_planted_in_log_dir_is_not_written_through() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = web_service(&sb, "");
    let victim = victim(&sb);
    let log_dir = sb.path("log");
    fs::create_dir(&log_dir).expect("mkdir");
    chmod(&log_dir, 0o700);
    let log = log_dir.join("svc_web_S10foo.log");
    symlink(&victim, &log).expect("symlink");
    let (code, shown) = reconcile(&sb, &dir);
    // The script runs (a log converge cannot write is not a reason to leave a service down),
    // and says why there is no log.
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains(&format!(
            "cannot log to {}: {} is a symlink: converge never writes through one",
            log.display(),
            log.display()
        )),
        "{shown}"
    );
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
    assert!(fs::symlink_metadata(&log).expect("lstat").is_symlink());
}

#[test]
fn regression_a_hard_link_planted_in_log_dir_is_not_truncated() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = web_service(&sb, "");
    let victim = victim(&sb);
    let log_dir = sb.path("log");
    fs::create_dir(&log_dir).expect("mkdir");
    chmod(&log_dir, 0o700);
    let log = log_dir.join("svc_web_S10foo.log");
    fs::hard_link(&victim, &log).expect("link");
    let (code, shown) = reconcile(&sb, &dir);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("has 2 hard links"), "{shown}");
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
}

#[test]
fn regression_a_state_dir_others_can_write_is_refused_by_every_command_that_reads_it() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = web_service(&sb, "");
    let state = sb.path("state");
    fs::create_dir(&state).expect("mkdir");
    chmod(&state, 0o777);
    let (code, shown) = reconcile(&sb, &dir);
    assert_eq!(code, 1, "{shown}");
    let expected = format!(
        "state_dir {0} is writable by its group and everyone (owner uid",
        state.display()
    );
    assert!(shown.contains(&expected), "{shown}");
    assert!(
        shown.contains(&format!("fix: chmod go-w {}", state.display())),
        "{shown}"
    );
    assert!(!sb.path("marker").exists(), "nothing ran: {shown}");
    for command in ["plan", "status"] {
        let out = sb.converge(&[command, dir.to_str().expect("utf-8")]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{command}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(&expected),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn regression_the_lock_file_is_not_written_through_a_symlink() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = web_service(&sb, "");
    let victim = victim(&sb);
    let state = sb.path("state");
    fs::create_dir(&state).expect("mkdir");
    chmod(&state, 0o700);
    let lock = state.join("converge.lock");
    symlink(&victim, &lock).expect("symlink");
    let (code, shown) = reconcile(&sb, &dir);
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains(&format!("{} is a symlink", lock.display())),
        "{shown}"
    );
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
}

#[test]
fn missing_log_and_state_dirs_are_created_private() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = web_service(&sb, "");
    let (code, shown) = reconcile(&sb, &dir);
    assert_eq!(code, 0, "{shown}");
    for name in ["log", "state"] {
        let mode = fs::metadata(sb.path(name))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700, "{name}");
    }
    let log = fs::read_to_string(sb.path("log/svc_web_S10foo.log")).expect("log");
    assert!(log.ends_with("started\n"), "{log}");
}

/// Runs `reconcile --once` and returns (exit code, peak resident memory of converge in KiB),
/// from wait4(2): the kernel's own count, not a sample.
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also gives its resource usage"
)]
fn reconcile_measured(sb: &Sandbox, dir: &Path) -> (i32, u64) {
    let out = fs::File::create(sb.path("converge.out")).expect("create");
    let child = sb
        .converge_cmd(&["reconcile", "--once", dir.to_str().expect("utf-8")])
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("run converge");
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: rusage is plain data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our unreaped child (std never waits for it: `child` is not waited for);
    // the pointers are valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    assert!(libc::WIFEXITED(status), "converge died: {status}");
    let peak = u64::try_from(usage.ru_maxrss).expect("KiB");
    (libc::WEXITSTATUS(status), peak)
}

#[test]
fn regression_a_start_script_printing_400_mb_does_not_grow_converge() {
    // Once, all of it was kept in memory, twice: 789 MB of RSS.
    let sb = Sandbox::new();
    sb.config("");
    let dir = web_service(
        &sb,
        "yes 'a line of a start script that has a lot to say' | head -c 400000000",
    );
    let (code, peak_kib) = reconcile_measured(&sb, &dir);
    let shown = fs::read_to_string(sb.path("converge.out")).expect("output");
    assert_eq!(code, 0, "{shown}");
    eprintln!("converge's peak RSS with a 400 MB start script: {peak_kib} KiB");
    assert!(
        peak_kib < 64 * 1024,
        "converge's peak RSS was {peak_kib} KiB"
    );
    // The log holds the beginning, up to its cap, and says what it left out.
    let log = fs::read(sb.path("log/svc_web_S10foo.log")).expect("log");
    assert!(log.len() < 8 * 1024 * 1024 + 4096, "{} bytes", log.len());
    let end = String::from_utf8_lossy(&log[log.len() - 200..]).into_owned();
    assert!(
        end.contains("[converge: the log stops at 8388608 bytes of output;"),
        "{end}"
    );
}

#[test]
fn regression_input_files_that_never_end_are_refused_not_read() {
    // `proc_drbd: /dev/zero` or `mountinfo: /dev/zero` once grew converge by a gigabyte a
    // second. Run under a 2 GB address-space limit, so that a regression fails (the allocation
    // aborts) rather than take the machine's memory.
    let sb = Sandbox::new();
    let config = sb.config("proc_drbd: /dev/zero\nmountinfo: /dev/zero\n");
    sb.write(
        "manifests/data.yaml",
        "service: data\nstate: up\nresources:\n  drbd#0: { res: data }\n  \
         fs#1: { dev: /dev/drbd0, mnt: /srv/data, type: ext4 }\n",
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2000000; exec \"$0\" --config \"$1\" plan \"$2\"")
        .arg(support::CONVERGE)
        .arg(&config)
        .arg(sb.path("manifests"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run converge");
    assert_no_panic(&out);
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("/dev/zero is not a regular file (it is a character device)"),
        "{shown}"
    );
}
