//! `converge demo`: the seed service up and down on a sandboxed node (simulated DRBD behind the
//! real drbdadm, a real loop-backed ext3, a simulated OpenVZ container), printing converge's
//! log, then cleaning up. Needs root; touches nothing outside its temporary directory and its
//! private mount namespace, apart from loop devices, which it detaches.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::config::Config;
use crate::controller::once::reconcile_once;
use crate::manifest;
use crate::observe::runner::observe;
use crate::sim::sandbox::{Sandbox, detach_loops_under, missing_programs};
use crate::status::service_status;

/// Set for the re-executed demo inside its namespace: the work directory.
const INSIDE: &str = "CONVERGE_DEMO_WORK";

pub fn run() -> Result<u8, String> {
    if let Some(work) = std::env::var_os(INSIDE) {
        return inside(Path::new(&work));
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("demo needs root: it creates loop devices and mounts them in a private mount namespace (try: sudo converge demo)".into());
    }
    let missing = missing_programs();
    if !missing.is_empty() {
        return Err(format!("demo needs these programs: {}", missing.join(", ")));
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the converge binary: {e}"))?;
    let work = make_work_dir()?;
    println!(
        "converge demo: sandbox in {} (simulated DRBD and OpenVZ, real drbdadm, loop device, ext3)",
        work.display()
    );
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(&exe)
        .arg("demo")
        .env(INSIDE, &work)
        .stdin(Stdio::null())
        .status();
    let leaked = detach_loops_under(&work);
    let removed = std::fs::remove_dir_all(&work);
    let code = status
        .map_err(|e| format!("cannot run unshare: {e}"))?
        .code()
        .unwrap_or(1);
    if !leaked.is_empty() {
        return Err(format!(
            "demo left loop devices behind (now detached): {}",
            leaked.join(", ")
        ));
    }
    if let Err(e) = removed {
        eprintln!("converge demo: could not remove {}: {e}", work.display());
    }
    u8::try_from(code).map_err(|_| format!("demo ended with status {code}"))
}

fn make_work_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    for attempt in 0..100 {
        let dir = base.join(format!("converge-demo.{}.{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err(format!(
        "cannot create a work directory in {}",
        base.display()
    ))
}

/// In the private namespace: build the node, bring the service up, show its status, bring it
/// down, show it again.
fn inside(work: &Path) -> Result<u8, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the converge binary: {e}"))?;
    let sandbox = Sandbox::create(work, &exe).map_err(|e| e.to_string())?;
    let result = demo_steps(&sandbox);
    let problems = sandbox.teardown();
    if !problems.is_empty() {
        return Err(format!("cleaning up: {}", problems.join("; ")));
    }
    result
}

fn demo_steps(sandbox: &Sandbox) -> Result<u8, String> {
    // The simulators are found through PATH (drbdmeta calls drbdsetup) and keep their state in
    // CONVERGE_SIM_DIR; children of this process inherit both.
    for (key, value) in sandbox.env() {
        // SAFETY: no other thread runs yet (the async runtime starts below).
        unsafe { std::env::set_var(key, value) };
    }
    let config = Arc::new(Config::load(Some(&sandbox.config)).map_err(|e| e.to_string())?);
    crate::act::log::init(false, false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut worst = 0;
    for state in ["up", "down"] {
        sandbox.set_state(state).map_err(|e| e.to_string())?;
        let services = manifest::load_dir(&config.manifests)
            .map_err(|e| e.to_string())?
            .services;
        println!(
            "\n== converge reconcile --once   ({} state: {state})\n",
            sandbox.service
        );
        let report = runtime.block_on(reconcile_once(Arc::clone(&config), services.clone()));
        worst = worst.max(report.exit_code());
        let node = runtime.block_on(observe(&config, &services));
        let statuses: Vec<_> = services.iter().map(|s| service_status(s, &node)).collect();
        let mut out = std::io::stdout().lock();
        crate::cli::write_report(&mut out, &report)
            .and_then(|()| writeln!(out, "\n== converge status\n"))
            .and_then(|()| crate::cli::write_status(&mut out, &node, &statuses))
            .map_err(|e| e.to_string())?;
    }
    Ok(worst)
}
