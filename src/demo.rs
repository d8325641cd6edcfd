//! `converge demo`: the seed service up and down on a sandboxed node (simulated DRBD behind the
//! real drbdadm, a real loop-backed ext3, and a real LXC busybox container with its rootfs on
//! that filesystem when LXC is installed, else a simulated OpenVZ container), printing
//! converge's log, then cleaning up. Needs root; touches nothing outside its temporary directory
//! and its private mount namespace, apart from loop devices, which it detaches, and the LXC
//! container's configuration in the host's lxcpath, which it destroys.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use converge_core::config::Config;
use converge_core::manifest;
use converge_node::controller::once::reconcile_once;
use converge_node::observer::Observer;
mod nodes;

use converge_sim::sandbox::{
    Sandbox, destroy_lxc, detach_loops_under, lxc_exists, missing_lxc_programs, missing_programs,
};

/// Set for the re-executed demo inside its namespace: the work directory.
const INSIDE: &str = "CONVERGE_DEMO_WORK";
/// Set for the re-executed demo: the LXC container's name; absent for the OpenVZ simulator.
const INSIDE_LXC: &str = "CONVERGE_DEMO_LXC";
/// `vz` or `lxc`, to choose the container instead of "LXC when installed".
const CHOICE: &str = "CONVERGE_DEMO_CONTAINER";

/// The LXC container's name, when the demo uses LXC; else why not.
fn choose_lxc() -> Result<Option<String>, String> {
    let choice = std::env::var(CHOICE).unwrap_or_default();
    let missing = missing_lxc_programs();
    match choice.as_str() {
        "vz" => return Ok(None),
        "lxc" if !missing.is_empty() => {
            return Err(format!(
                "{CHOICE}=lxc, but LXC is not installed: {}",
                missing.join(", ")
            ));
        }
        "" | "lxc" => {}
        other => return Err(format!("{CHOICE}: expected vz or lxc, got {other:?}")),
    }
    if !missing.is_empty() {
        return Ok(None);
    }
    // Unique on the host: the configuration lives in the shared lxcpath.
    let name = format!("converge-demo-{}", std::process::id());
    if lxc_exists(&name) {
        return Err(format!("an LXC container {name} already exists"));
    }
    Ok(Some(name))
}

/// `converge demo --nodes N`: 1, the default, is the single sandboxed node below; 2 or 3 are
/// simulated nodes, each running `converge run`, between which the service moves
/// ([`nodes`]). `failover`: deb1, deb2 and a diskless tiebreaker, and a power cut.
pub fn run(nodes: u8, failover: bool) -> Result<u8, String> {
    if failover {
        return nodes::run(nodes::Scenario::Failover);
    }
    match nodes {
        1 => one_node(),
        2 | 3 => nodes::run(nodes::Scenario::Switchover(usize::from(nodes))),
        n => Err(format!("demo --nodes {n}: 1, 2 or 3 nodes")),
    }
}

fn one_node() -> Result<u8, String> {
    if let Some(work) = std::env::var_os(INSIDE) {
        return inside(Path::new(&work));
    }
    if !converge_sim::testing::is_root() {
        return Err("demo needs root: it creates loop devices and mounts them in a private mount namespace (try: sudo converge demo)".into());
    }
    let missing = missing_programs();
    if !missing.is_empty() {
        return Err(format!("demo needs these programs: {}", missing.join(", ")));
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the converge binary: {e}"))?;
    let lxc = choose_lxc()?;
    let work = make_work_dir()?;
    let container = match &lxc {
        Some(name) => {
            format!("real LXC container {name} (busybox, rootfs on the DRBD-backed filesystem)")
        }
        None => format!(
            "simulated OpenVZ container 101 ({})",
            if missing_lxc_programs().is_empty() {
                format!("{CHOICE}=vz")
            } else {
                "LXC is not installed".to_string()
            }
        ),
    };
    println!(
        "converge demo: sandbox in {} (simulated DRBD, real drbdadm, loop device, ext3; {container})",
        work.display()
    );
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private"])
        .arg(&exe)
        .arg("demo")
        .env(INSIDE, &work)
        .stdin(Stdio::null());
    if let Some(name) = &lxc {
        command.env(INSIDE_LXC, name);
    }
    let status = command.status();
    // Whatever happened inside: a container left running would keep the loop devices busy.
    let left_lxc = lxc.as_ref().filter(|name| lxc_exists(name));
    let destroyed = left_lxc.map(|name| destroy_lxc(name));
    let leaked = detach_loops_under(&work);
    let removed = std::fs::remove_dir_all(&work);
    let code = status
        .map_err(|e| format!("cannot run unshare: {e}"))?
        .code()
        .unwrap_or(1);
    if let (Some(name), Some(destroyed)) = (left_lxc, destroyed) {
        return Err(match destroyed {
            Ok(()) => format!("demo left LXC container {name} behind (now destroyed)"),
            Err(e) => format!("demo left LXC container {name} behind: {e}"),
        });
    }
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
    let sandbox = match std::env::var(INSIDE_LXC) {
        Ok(name) => Sandbox::create_lxc(work, &exe, &name),
        Err(_) => Sandbox::create(work, &exe),
    }
    .map_err(|e| e.to_string())?;
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
    let config = Config::load(Some(&sandbox.config)).map_err(|e| e.to_string())?;
    let manifests = config.manifests.clone();
    let observer = Arc::new(Observer::new(Arc::new(config)));
    converge_node::act::log::init(false, false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut worst = 0;
    for state in ["up", "down"] {
        sandbox.set_state(state).map_err(|e| e.to_string())?;
        let services = manifest::load_dir(&manifests)
            .map_err(|e| e.to_string())?
            .services;
        println!(
            "\n== converge reconcile --once   ({} state: {state})\n",
            sandbox.service
        );
        let report = runtime.block_on(reconcile_once(Arc::clone(&observer), services.clone()));
        worst = worst.max(report.exit_code());
        let node = runtime.block_on(observer.observe(&services));
        let statuses = converge_core::status::statuses(&services, &node);
        let mut out = std::io::stdout().lock();
        crate::render::write_report(&mut out, &report)
            .and_then(|()| writeln!(out, "\n== converge status\n"))
            .and_then(|()| crate::render::write_status(&mut out, &node, &statuses))
            .map_err(|e| e.to_string())?;
    }
    Ok(worst)
}
