//! `converge demo --nodes 2` (or 3): the seed service on simulated nodes that each run their
//! own `converge run` on one manifest directory (`converge_sim::world`: the DRBD simulator's
//! world mode, real drbdadm, loop devices, ext3, one set of namespaces per node). It shows the
//! other nodes standing by (DRBD up, Secondary), moves the service from the first node to the
//! last by editing `node:` in the manifest, then back, printing the daemons' logs as they come,
//! each line prefixed by its node, and `converge status` of every node whenever things have
//! settled.
//!
//! `converge demo --failover` runs deb1 and deb2 with data and tb, a diskless tiebreaker (DRBD
//! quorum needs a third voter... of sorts: see operations.md), the service failing over between
//! deb1 and deb2 (`failover: auto`): it starts on deb1, deb1 loses power, deb2 takes the service
//! over by itself, deb1 comes back and stands by.
//!
//! Everything lives in a temporary directory, the nodes' namespaces, a private mount namespace
//! (the demo re-runs itself under `unshare`), loop devices and one cgroup; all of it goes at
//! the end, also after an error or Ctrl-C (SIGINT, SIGTERM, SIGHUP are caught to clean up),
//! and the outer process checks that nothing is left.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use converge_node::controller::daemon::{ServiceResult, read_view};
use converge_sim::sandbox::detach_loops_under;
use converge_sim::world::{
    NodeProcess, NodeSpec, World, missing_world_programs, remove_world_cgroup, terminate,
    world_cgroup,
};

/// Set for the re-executed demo inside its namespace: the work directory.
const INSIDE: &str = "CONVERGE_DEMO_WORLD_WORK";
const NAMES: [&str; 3] = ["deb1", "deb2", "deb3"];
/// How long one switchover (or the first start) may take before the demo gives up: seconds in
/// practice, on a busy machine too.
const SETTLE_WITHIN: Duration = Duration::from_secs(120);
/// How long a daemon has to finish its running action after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// SIGINT, SIGTERM and SIGHUP, caught (so they do not kill the demo before it cleans up) and
/// remembered; the process in `forward_to`, once set (not 0), is sent SIGTERM on each.
struct Signals {
    caught: Arc<AtomicBool>,
    /// Keeps the signal streams' task alive.
    _runtime: tokio::runtime::Runtime,
}

impl Signals {
    fn catch(forward_to: Arc<AtomicU32>) -> Result<Signals, String> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let caught = Arc::new(AtomicBool::new(false));
        let _context = runtime.enter();
        for kind in [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ] {
            let mut stream = signal(kind).map_err(|e| format!("cannot catch signals: {e}"))?;
            let caught = Arc::clone(&caught);
            let forward_to = Arc::clone(&forward_to);
            runtime.spawn(async move {
                while stream.recv().await.is_some() {
                    caught.store(true, Ordering::SeqCst);
                    // A Ctrl-C reaches the whole process group; a signal sent to this process
                    // alone must still reach the demo inside, which is the one that cleans up.
                    let pid = forward_to.load(Ordering::SeqCst);
                    if pid != 0 {
                        let _ = terminate(pid);
                    }
                }
            });
        }
        Ok(Signals {
            caught,
            _runtime: runtime,
        })
    }

    fn caught(&self) -> bool {
        self.caught.load(Ordering::SeqCst)
    }
}

/// What the demo shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `--nodes N` (2 or 3): a switchover by editing `node:`, and back.
    Switchover(usize),
    /// `--failover`: a power cut on the node running a service with `failover: auto`.
    Failover,
}

impl Scenario {
    fn specs(self) -> Vec<NodeSpec> {
        match self {
            Scenario::Switchover(nodes) => NAMES[..nodes]
                .iter()
                .map(|n| NodeSpec::diskful(n))
                .collect(),
            Scenario::Failover => vec![
                NodeSpec::diskful("deb1"),
                NodeSpec::diskful("deb2"),
                NodeSpec::diskless("tb"),
            ],
        }
    }

    /// The demo's own arguments, for its re-run inside the namespace.
    fn args(self) -> Vec<String> {
        match self {
            Scenario::Switchover(nodes) => vec!["--nodes".into(), nodes.to_string()],
            Scenario::Failover => vec!["--failover".into()],
        }
    }
}

pub fn run(scenario: Scenario) -> Result<u8, String> {
    if let Some(work) = std::env::var_os(INSIDE) {
        return inside(Path::new(&work), scenario);
    }
    let names: Vec<String> = scenario.specs().into_iter().map(|s| s.name).collect();
    let nodes = names.len();
    let args = scenario.args().join(" ");
    if !converge_sim::testing::is_root() {
        return Err(format!(
            "demo needs root: it creates loop devices, mounts and namespaces for {nodes} simulated nodes (try: sudo converge demo {args})"
        ));
    }
    let missing = missing_world_programs();
    if !missing.is_empty() {
        return Err(format!("demo needs these programs: {}", missing.join(", ")));
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the converge binary: {e}"))?;
    let work = super::make_work_dir()?;
    println!(
        "converge demo {args}: {} in {} (simulated DRBD in world mode, real drbdadm, loop devices, ext3, simulated OpenVZ; each node its own namespaces and `converge run`)",
        names.join(", "),
        work.display()
    );
    // Caught before the demo inside starts, so that a Ctrl-C never leaves this process dead
    // and the inside running.
    let inner = Arc::new(AtomicU32::new(0));
    let signals = Signals::catch(Arc::clone(&inner))?;
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(&exe)
        .arg("demo")
        .args(scenario.args())
        .env(INSIDE, &work)
        .stdin(Stdio::null())
        .spawn();
    let result = match child {
        Ok(mut child) => {
            // unshare execs the demo: this is its pid.
            inner.store(child.id(), Ordering::SeqCst);
            child
                .wait()
                .map(|status| status.code())
                .map_err(|e| format!("waiting for the demo: {e}"))
        }
        Err(e) => Err(format!("cannot run unshare: {e}")),
    };
    let interrupted = signals.caught();
    // Whatever happened inside: what a demo killed before its own cleanup would leave.
    let left = clean_up(&work);
    let code = result?;
    if !left.is_empty() {
        return Err(format!(
            "demo left things behind (now removed): {}",
            left.join("; ")
        ));
    }
    if interrupted {
        return Err("interrupted; cleaned up, nothing left behind".into());
    }
    match code {
        Some(0) => {
            println!(
                "\n== nothing left behind: no loop device, mount, cgroup or file of the demo remains"
            );
            Ok(0)
        }
        Some(code) => u8::try_from(code).map_err(|_| format!("demo ended with status {code}")),
        None => Err("the demo was killed by a signal; cleaned up".into()),
    }
}

/// Removes what the demo in `work` may have left (its world's cgroup and processes, loop
/// devices, mounts in this namespace, the directory) and says what there was.
fn clean_up(work: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let cgroup = world_cgroup(work).filter(|c| c.exists());
    left.extend(remove_world_cgroup(work));
    if let Some(c) = cgroup {
        left.push(format!("cgroup {}", c.display()));
    }
    let loops = detach_loops_under(work);
    if !loops.is_empty() {
        left.push(format!("loop devices {}", loops.join(", ")));
    }
    let mounts = mounts_under(work);
    if !mounts.is_empty() {
        left.push(format!("mounts {}", mounts.join(", ")));
    }
    if let Err(e) = std::fs::remove_dir_all(work)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        left.push(format!("cannot remove {}: {e}", work.display()));
    }
    left
}

/// Mount points under `dir` in this process's mount table.
fn mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    converge_core::observe::mountinfo::parse(&text)
        .map(|mounts| {
            mounts
                .iter()
                .filter(|m| m.mount_point().starts_with(dir))
                .map(|m| m.mount_point().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// In the private namespace: the world, the daemons, the two switchovers, then teardown.
fn inside(work: &Path, scenario: Scenario) -> Result<u8, String> {
    let signals = Signals::catch(Arc::new(AtomicU32::new(0)))?;
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the converge binary: {e}"))?;
    println!("\n== building the nodes: namespaces, the shared disk, the seed service's data");
    let mut world = World::create_with(work, &exe, &scenario.specs()).map_err(|e| e.to_string())?;
    let shown = Shown::default();
    let result = match scenario {
        Scenario::Switchover(_) => with_daemons(&mut world, &exe, &shown, |world, _| {
            let (first, last) = match world.nodes.as_slice() {
                [first, .., last] => (first.name.clone(), last.name.clone()),
                _ => return Err("a switchover needs two nodes".into()),
            };
            switchovers(world, &exe, &signals, &first, &last)
        }),
        Scenario::Failover => fail_over(&world).and_then(|()| {
            with_daemons(&mut world, &exe, &shown, |world, daemons| {
                power_cut(world, &exe, &signals, &shown, daemons)
            })
        }),
    };
    let problems = world.teardown();
    shown.join();
    if !problems.is_empty() {
        return Err(format!("cleaning up: {}", problems.join("; ")));
    }
    result
}

/// The threads printing the daemons' output, joined once their pipes close.
#[derive(Default)]
struct Shown(std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>);

impl Shown {
    fn join(&self) {
        let handles = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

/// Starts `converge run` on `node`, its output (stdout and stderr, one pipe) printed line by
/// line as `node | line`.
fn start_daemon(
    world: &World,
    exe: &Path,
    node: &str,
    shown: &Shown,
) -> Result<NodeProcess, String> {
    let config = world
        .node(node)
        .map_err(|e| e.to_string())?
        .config
        .to_string_lossy()
        .into_owned();
    let (reader, writer) =
        std::io::pipe().map_err(|e| format!("cannot make a pipe for {node}'s daemon: {e}"))?;
    let err = writer
        .try_clone()
        .map_err(|e| format!("cannot make a pipe for {node}'s daemon: {e}"))?;
    let process = world
        .spawn(
            node,
            &exe.to_string_lossy(),
            &["--config", &config, "run"],
            Stdio::from(writer),
            Stdio::from(err),
        )
        .map_err(|e| e.to_string())?;
    let prefix = node.to_string();
    let handle = std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{prefix} | {line}");
        }
    });
    shown
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(handle);
    Ok(process)
}

/// Starts `converge run` on every node, runs `scenario`, then stops the daemons still running
/// (a scenario that powers a node off drops that node's daemon, which died with it).
fn with_daemons(
    world: &mut World,
    exe: &Path,
    shown: &Shown,
    scenario: impl FnOnce(&mut World, &mut Vec<NodeProcess>) -> Result<u8, String>,
) -> Result<u8, String> {
    let names: Vec<String> = world.nodes.iter().map(|n| n.name.clone()).collect();
    println!(
        "\n== converge run on {}: their logs follow as they come, prefixed by node",
        names.join(", ")
    );
    let mut daemons = Vec::new();
    let mut result = Ok(0);
    for node in &names {
        match start_daemon(world, exe, node, shown) {
            Ok(daemon) => daemons.push(daemon),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        result = scenario(world, &mut daemons);
    }
    println!(
        "\n== cleaning up: the daemons stop (SIGTERM), every node is powered off, the disk detached"
    );
    for daemon in &mut daemons {
        if let Err(e) = daemon.terminate(STOP_WITHIN) {
            eprintln!("converge demo: stopping {}'s daemon: {e}", daemon.node);
        }
    }
    result
}

/// The failover scenario's manifest: failing over between deb1 and deb2.
fn fail_over(world: &World) -> Result<(), String> {
    let manifest = &world.manifest;
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    let text = text.replace("node: deb1\n", "nodes: [deb1, deb2]\nfailover: auto\n");
    std::fs::write(manifest, &text).map_err(|e| format!("writing {}: {e}", manifest.display()))?;
    println!(
        "\n== the manifest ({}): the service fails over between deb1 and deb2\n{text}",
        manifest.display()
    );
    Ok(())
}

fn power_cut(
    world: &mut World,
    exe: &Path,
    signals: &Signals,
    shown: &Shown,
    daemons: &mut Vec<NodeProcess>,
) -> Result<u8, String> {
    let service = world.service.clone();
    settle(world, signals, "deb1", &[])?;
    show_statuses(
        world,
        exe,
        &format!("{service} runs on deb1; deb2 and tb stand by (DRBD up, Secondary; tb diskless)"),
    )?;
    println!("\n== deb1 loses power: its daemon, mounts and DRBD are gone, nobody edits anything");
    let started = Instant::now();
    world.power_off("deb1").map_err(|e| e.to_string())?;
    // Its daemon died with it.
    daemons.retain(|d| d.node != "deb1");
    settle(world, signals, "deb2", &["deb1"])?;
    show_statuses(
        world,
        exe,
        &format!(
            "{service} failed over to deb2 in {:.1} s (it kept quorum with tb); deb1 is off",
            started.elapsed().as_secs_f64()
        ),
    )?;
    println!("\n== deb1 is powered on again: its daemon starts, its DRBD connects and resyncs");
    world.power_on("deb1").map_err(|e| e.to_string())?;
    daemons.push(start_daemon(world, exe, "deb1", shown)?);
    settle(world, signals, "deb2", &[])?;
    show_statuses(
        world,
        exe,
        &format!("deb1 stands by (failback: never); {service} stays on deb2"),
    )?;
    Ok(0)
}

/// Settled on `first`, then moved to `last`, then back.
fn switchovers(
    world: &World,
    exe: &Path,
    signals: &Signals,
    first: &str,
    last: &str,
) -> Result<u8, String> {
    let service = &world.service;
    let manifest = world.manifest.display();
    settle(world, signals, first, &[])?;
    show_statuses(
        world,
        exe,
        &format!(
            "{service} runs on {first}; {} (DRBD up, Secondary)",
            stand_by(world, first)
        ),
    )?;
    for (from, to) in [(first, last), (last, first)] {
        println!("\n== switchover: `node: {from}` → `node: {to}` in {manifest}");
        let started = Instant::now();
        world.set_state("up", to).map_err(|e| e.to_string())?;
        settle(world, signals, to, &[])?;
        show_statuses(
            world,
            exe,
            &format!(
                "{service} moved from {from} to {to} in {:.1} s; {}",
                started.elapsed().as_secs_f64(),
                stand_by(world, to)
            ),
        )?;
    }
    Ok(0)
}

/// `deb2 stands by`, `deb1, deb2 stand by`: every node but `on`.
fn stand_by(world: &World, on: &str) -> String {
    let others: Vec<&str> = world
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| *n != on)
        .collect();
    let verb = if others.len() == 1 { "stands" } else { "stand" };
    format!("{} {verb} by", others.join(", "))
}

/// Waits until the service runs on `on`, every other node but those `off` stands by, and every
/// daemon says so (converged); gives up on a signal or after [`SETTLE_WITHIN`].
fn settle(world: &World, signals: &Signals, on: &str, off: &[&str]) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if signals.caught() {
            return Err("interrupted".into());
        }
        let others_stand_by = world
            .nodes
            .iter()
            .filter(|n| n.name != on && !off.contains(&n.name.as_str()))
            .all(|n| world.stands_by(&n.name));
        if world.runs_on(on) && others_stand_by && daemons_converged(world, off) {
            return Ok(());
        }
        if start.elapsed() > SETTLE_WITHIN {
            return Err(format!(
                "{} did not settle on {on} within {}s (see the daemons' logs above)",
                world.service,
                SETTLE_WITHIN.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every running node's daemon has looked at the service since and found it as it should be
/// there.
fn daemons_converged(world: &World, off: &[&str]) -> bool {
    world
        .nodes
        .iter()
        .filter(|n| !off.contains(&n.name.as_str()))
        .all(|n| {
            read_view(&n.state_dir).is_some_and(|view| {
                !view.services.is_empty()
                    && view
                        .services
                        .iter()
                        .all(|s| s.result == ServiceResult::Converged)
            })
        })
}

/// `converge status` on every powered node, printed as one block (the daemons' lines wait).
fn show_statuses(world: &World, exe: &Path, headline: &str) -> Result<(), String> {
    let mut text = format!("\n== settled: {headline}\n");
    for node in world.nodes.iter().filter(|n| world.powered(&n.name)) {
        let config = node.config.to_string_lossy();
        let out = world
            .run(
                &node.name,
                &exe.to_string_lossy(),
                &["--config", &config, "status"],
            )
            .map_err(|e| e.to_string())?;
        text.push_str(&format!("\n-- converge status on {}\n", node.name));
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .map_err(|e| format!("writing the output: {e}"))
}
