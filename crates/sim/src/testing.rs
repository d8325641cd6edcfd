//! For tests on real parts, in the test binaries of every crate: running a scenario as root in
//! a private mount namespace, and cleaning up what a failed one leaves.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::sandbox::{detach_loops_under, missing_programs};
use crate::world::{missing_world_programs, remove_world_cgroup};

/// Whether this process runs as root (loop devices, mknod and mounts need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Set in the re-run child: the parent's work directory.
const INSIDE: &str = "CONVERGE_TEST_NAMESPACE_WORK";
/// Loop devices and /proc mounts are shared: tests on real parts take turns.
static REAL_PARTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `scenario` as root in a private mount namespace: the test binary re-runs itself (this
/// one test) under `unshare -m --propagation private`, so every mount dies with that process;
/// afterwards the parent detaches any loop device left over the test's files, and fails the
/// test if the simulator left one. Without root, or without the programs, it says why it skips.
pub fn in_namespace(name: &str, scenario: fn(&Path)) {
    run_in_namespace(name, missing_programs, scenario);
}

/// As [`in_namespace`], for a scenario that builds a `world::World` (which also needs
/// nsenter, ip, hostname); the parent also kills and removes the world's cgroup if the
/// scenario's process died without doing so.
pub fn in_world_namespace(name: &str, scenario: fn(&Path)) {
    run_in_namespace(name, missing_world_programs, scenario);
}

fn run_in_namespace(name: &str, missing: fn() -> Vec<String>, scenario: fn(&Path)) {
    if let Some(work) = std::env::var_os(INSIDE) {
        scenario(Path::new(&work));
        return;
    }
    if !is_root() {
        eprintln!("skipping {name}: needs root (loop devices, mknod, mounts)");
        return;
    }
    let missing = missing();
    if !missing.is_empty() {
        // In CI these are installed by .ci/run: a missing one there is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "{name}: not installed in CI: {}",
            missing.join(", ")
        );
        eprintln!("skipping {name}: not installed: {}", missing.join(", "));
        return;
    }
    let _turn = REAL_PARTS.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, work.path())
        .stdin(Stdio::null())
        .output()
        .expect("unshare runs");
    let cgroup_problems = remove_world_cgroup(work.path());
    let leaked = detach_loops_under(work.path());
    if output.status.success() {
        // What the scenario printed (a summary, say) reaches whoever asked with --nocapture;
        // otherwise the test harness captures it, as it would the scenario's own output.
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
    }
    assert!(
        output.status.success(),
        "{name} failed in its namespace:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        leaked.is_empty(),
        "{name} left loop devices behind: {leaked:?}"
    );
    assert!(
        cgroup_problems.is_empty(),
        "{name}: its world's cgroup: {cgroup_problems:?}"
    );
}
