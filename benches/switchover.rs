//! The switchover, end to end, for docs/performance.md: two simulated nodes (the DRBD
//! simulator's world mode on real namespaces, loop devices and ext3: `converge_sim::world`),
//! each running its own `converge run` on the shared manifest directory; the seed service is
//! moved from one node to the other, alternately deb1 → deb2 and back, by a change of its
//! `node:` made in two ways, each measured on its own:
//! - **published**, as git-sync delivers a commit (`World::publish`: a new worktree, the
//!   directory's symlink swapped): complete by contract, read at once;
//! - **edited**: a new manifest renamed over the old one in place (`World::set_state`), as an
//!   editor saves it: read after the daemons' quiet period (`debounce`).
//!
//! For each run it measures, from the swap or the rename:
//! - until the app's start script has run on the new node (the end of `vzctl exec2 101
//!   …/S10foo start`), and until it began;
//! - the commands' own time in that window: every command converge runs that changes the
//!   node (drbdadm secondary/primary, e2fsck, mount, umount, vzctl stop/start, the app's stop
//!   and start scripts through `vzctl exec2`), from their begin and end as recorded by wrappers;
//! - the difference: converge's overhead, and where it goes (the gaps between one command's
//!   end and the next one's begin, labelled by the two commands).
//!
//! Why wrappers, not the action log: the log says when a command is started, but not when it
//! ended (only apps' `start done in …`), and its timestamps are written by the daemon, after
//! the fact and through its logging. Each program converge changes things with is configured
//! (`commands:`) as a symlink to this bench binary, which, run under that name, records the
//! wall-clock time right before it spawns the real program and right after it exits, then
//! exits as it did. What the wrapper itself costs (one more exec per call) is converge's
//! overhead in the figures; it is measured in the same run and printed beside them.
//!
//! Needs root (loop devices, mounts, namespaces): it re-runs itself in a private mount
//! namespace, as the daemon bench's promote part does. Not run by `cargo test`.
//!
//! A third kind is no change of the manifests: **failover**, on a world of its own (deb1, deb2
//! and a diskless tiebreaker, the service with `failover: auto`), the node running the service
//! is powered off and the window ends when the app has started on the other; the powered-off
//! node is powered on again and stands by before the next run, alternately deb1 and deb2.
//!
//! `cargo bench --bench switchover`; `CONVERGE_BENCH_RUNS` (default 20) sets the number of
//! runs of each kind, `CONVERGE_BENCH_CHANGE=published|edited|failover` runs one kind only,
//! `CONVERGE_BENCH_DEBOUNCE` (e.g. `50ms`) the daemons' debounce instead of the
//! default 200 ms, `CONVERGE_BENCH_WRAP_PROBES=1` wraps `drbdsetup` and `vzlist` too (where
//! observation time goes), `CONVERGE_BENCH_LOGS=DIR` keeps the daemons' logs (JSON, verbose) and the
//! wrappers' record there.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use converge_sim::world::{NodeProcess, NodeSpec, World};

const CONVERGE: &str = env!("CARGO_BIN_EXE_converge");
/// Set for the re-run inside the private mount namespace: the work directory.
const INSIDE: &str = "CONVERGE_BENCH_SWITCHOVER_WORK";
/// The programs converge changes the node with, wrapped.
const WRAPPED: &[&str] = &["drbdadm", "e2fsck", "mount", "umount", "vzctl"];
/// With `CONVERGE_BENCH_WRAP_PROBES` set, the programs converge only observes with are wrapped
/// too, to see where observation time goes (drbdadm then runs its drbdsetup through the
/// wrapper as well: the commands' own time grows by a wrapper per drbdsetup call).
const PROBES: &[&str] = &["drbdsetup", "vzlist"];
/// The wrappers' record, in the wrappers' directory: one line per call.
const CALLS: &str = "calls";
const NODES: [&str; 2] = ["deb1", "deb2"];
/// The failover world's diskless third node.
const TIEBREAKER: &str = "tb";
/// A hang guard, not a measure.
const HANG: Duration = Duration::from_secs(120);

fn main() {
    let mut args = std::env::args_os();
    let argv0 = PathBuf::from(args.next().unwrap_or_default());
    if let Some(name) = argv0.file_name().and_then(|n| n.to_str())
        && (WRAPPED.contains(&name) || PROBES.contains(&name))
    {
        wrapper(&argv0, name, args.collect());
    }
    if let Some(work) = std::env::var_os(INSIDE) {
        inside(Path::new(&work));
        return;
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("switchover: skipped (needs root: loop devices, mounts, namespaces)");
        return;
    }
    let missing = converge_sim::world::missing_world_programs();
    if !missing.is_empty() {
        println!(
            "switchover: skipped (not installed: {})",
            missing.join(", ")
        );
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("bench binary");
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(exe)
        .env(INSIDE, work.path())
        .stdin(Stdio::null())
        .status()
        .expect("unshare");
    // What a failed run may leave: the world's processes and cgroups, its loop devices.
    let cgroups = converge_sim::world::remove_world_cgroup(work.path());
    let leaked = converge_sim::sandbox::detach_loops_under(work.path());
    assert!(status.success(), "switchover benchmark failed");
    assert!(cgroups.is_empty(), "the world's cgroup: {cgroups:?}");
    assert!(leaked.is_empty(), "loop devices left behind: {leaked:?}");
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn ns_of(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Run as one of [`WRAPPED`]: the real program (found in PATH, where the wrappers are not),
/// timed; one line appended to `calls` beside the wrapper: node, begin, end (ns since the
/// epoch), exit code, command line. Exits as the program did.
fn wrapper(argv0: &Path, name: &str, args: Vec<OsString>) -> ! {
    let begin = now_ns();
    let status = Command::new(name).args(&args).status();
    let end = now_ns();
    let code = match &status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            eprintln!("{name}: {e}");
            127
        }
    };
    // The node's hostname: its own UTS namespace.
    let node = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let line = format!(
        "{}\t{begin}\t{end}\t{code}\t{name} {}\n",
        node.trim(),
        words.join(" ")
    );
    if let Some(dir) = argv0.parent() {
        // One write of a short line to a file opened for appending: lines of concurrent calls
        // do not mix.
        let _ = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(CALLS))
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
    std::process::exit(code)
}

/// One wrapped call, as recorded.
#[derive(Debug, Clone)]
struct Call {
    node: String,
    begin: u128,
    end: u128,
    line: String,
}

impl Call {
    fn parse(text: &str) -> Option<Call> {
        let mut fields = text.splitn(5, '\t');
        let node = fields.next()?.to_string();
        let begin = fields.next()?.parse().ok()?;
        let end = fields.next()?.parse().ok()?;
        let _code = fields.next()?;
        let line = fields.next()?.to_string();
        Some(Call {
            node,
            begin,
            end,
            line,
        })
    }

    /// What the call does, when it changes the node; `None` for a probe (a status, a check).
    fn action(&self) -> Option<&'static str> {
        let words: Vec<&str> = self.line.split_whitespace().collect();
        // drbdadm may be given --drbdsetup=… before its subcommand.
        let sub = |program: &str| {
            (words.first() == Some(&program))
                .then(|| words.iter().skip(1).find(|w| !w.starts_with("--")).copied())
                .flatten()
        };
        match words.first().copied() {
            Some("drbdadm") => match sub("drbdadm") {
                Some("primary") => Some("drbdadm primary"),
                Some("secondary") => Some("drbdadm secondary"),
                Some("up") => Some("drbdadm up"),
                Some("down") => Some("drbdadm down"),
                _ => None,
            },
            Some("e2fsck") => Some("e2fsck"),
            Some("mount") => Some("mount"),
            Some("umount") => Some("umount"),
            Some("vzctl") => match words.get(1).copied() {
                Some("start") => Some("vzctl start"),
                Some("stop") => Some("vzctl stop"),
                Some("exec2") if self.line.ends_with(" start") && self.line.contains("/S") => {
                    Some("app start")
                }
                Some("exec2") if self.line.ends_with(" stop") && self.line.contains("/K") => {
                    Some("app stop")
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn is_app_start(&self) -> bool {
        self.action() == Some("app start")
    }
}

/// A probe's kind: its program and what it asks, without the container's id or directories
/// (`vzctl exec2 C10foo status`, `drbdsetup status --json`).
fn probe_kind(line: &str) -> String {
    line.split_whitespace()
        .filter(|w| *w != converge_sim::sandbox::CTID && !w.starts_with("--drbdsetup="))
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_calls(path: &Path) -> Vec<Call> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(Call::parse)
        .collect()
}

/// One switchover, as measured.
struct Run {
    from: &'static str,
    to: &'static str,
    /// Rename → the app's start script began on the new node.
    to_app_begin: Duration,
    /// Rename → it ended: the service runs on the new node.
    to_app_end: Duration,
    /// The state-changing commands' own time within that window, summed.
    commands: Duration,
    /// How many of them.
    count: usize,
    /// Probes through the wrapped programs in the window (observation, checks, waits): their
    /// kind and own time. Calls made by a command itself (drbdadm's drbdsetup, with
    /// `CONVERGE_BENCH_WRAP_PROBES`) are not probes.
    probes: Vec<(String, Duration)>,
    /// Each command in order: its label (`vzctl stop (deb1)`), the gap before it (converge's
    /// time since the rename or the previous command's end) and its own time.
    steps: Vec<(String, Duration, Duration)>,
}

fn dur(ns: u128) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

fn measure(calls: &[Call], t0: u128, from: &'static str, to: &'static str) -> Result<Run, String> {
    let window: Vec<&Call> = calls.iter().filter(|c| c.begin >= t0).collect();
    let app = window
        .iter()
        .find(|c| c.node == to && c.is_app_start())
        .ok_or("no app start on the new node")?;
    let within: Vec<&Call> = window
        .iter()
        .copied()
        .filter(|c| c.end <= app.end)
        .collect();
    let mut actions: Vec<&Call> = within
        .iter()
        .copied()
        .filter(|c| c.action().is_some())
        .collect();
    actions.sort_by_key(|c| c.begin);
    let commands: u128 = actions.iter().map(|c| c.end - c.begin).sum();
    let mut steps = Vec::new();
    let mut last_end = t0;
    for call in &actions {
        let label = format!("{} ({})", call.action().unwrap_or("?"), call.node);
        steps.push((
            label,
            dur(call.begin.saturating_sub(last_end)),
            dur(call.end - call.begin),
        ));
        last_end = last_end.max(call.end);
    }
    Ok(Run {
        from,
        to,
        to_app_begin: dur(app.begin - t0),
        to_app_end: dur(app.end - t0),
        commands: dur(commands),
        count: actions.len(),
        probes: within
            .iter()
            .filter(|c| c.action().is_none())
            .filter(|c| {
                !actions
                    .iter()
                    .any(|a| a.node == c.node && a.begin <= c.begin && c.end <= a.end)
            })
            .map(|c| (probe_kind(&c.line), dur(c.end - c.begin)))
            .collect(),
        steps,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    // Commands and gaps of a few milliseconds need the decimal.
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn stats(mut values: Vec<Duration>) -> String {
    values.sort();
    format!(
        "p50 {}, p99 {}, min {}, max {}",
        ms(percentile(&values, 0.5)),
        ms(percentile(&values, 0.99)),
        ms(values[0]),
        ms(values[values.len() - 1])
    )
}

fn until(what: &str, mut done: impl FnMut() -> bool, pause: Duration) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HANG, "gave up waiting for {what}");
        std::thread::sleep(pause);
    }
}

/// Both daemons' views say the service is where it should be (converged or standing by).
fn views_settled(world: &World) -> bool {
    world.nodes.iter().all(|n| {
        converge_node::controller::daemon::read_view(&n.state_dir).is_some_and(|view| {
            !view.services.is_empty()
                && view.services.iter().all(|s| {
                    s.result == converge_node::controller::daemon::ServiceResult::Converged
                })
        })
    })
}

fn settled(world: &World, on: &str, by: &str) {
    until(
        &format!("the service on {on}, {by} standing by"),
        || world.runs_on(on) && world.stands_by(by) && views_settled(world),
        Duration::from_millis(50),
    );
}

/// What one wrapped call costs beyond the program itself: `umount --version` through a
/// wrapper and directly, `n` times each, medians.
fn wrapper_cost(work: &Path, n: usize) -> (Duration, Duration) {
    let dir = work.join("calibrate");
    fs::create_dir_all(&dir).expect("calibration dir");
    let exe = std::env::current_exe().expect("bench binary");
    let wrapped = dir.join("umount");
    std::os::unix::fs::symlink(&exe, &wrapped).expect("wrapper link");
    let time = |program: &Path| {
        let mut samples: Vec<Duration> = (0..n)
            .map(|_| {
                let start = Instant::now();
                let status = Command::new(program)
                    .arg("--version")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .status()
                    .expect("umount --version");
                assert!(status.success());
                start.elapsed()
            })
            .collect();
        samples.sort();
        percentile(&samples, 0.5)
    };
    let direct = time(Path::new("umount"));
    let through = time(&wrapped);
    (direct, through)
}

fn daemon(world: &World, node: &str, log: &Path) -> NodeProcess {
    let config = world
        .node(node)
        .expect("node")
        .config
        .to_string_lossy()
        .into_owned();
    let file = fs::File::create(log).expect("daemon log");
    world
        .spawn(
            node,
            CONVERGE,
            &["--config", &config, "run", "--json", "--verbose"],
            Stdio::from(file.try_clone().expect("dup")),
            Stdio::from(file),
        )
        .expect("converge run")
}

/// Every node of `world` runs the programs that change the node (and, with
/// `CONVERGE_BENCH_WRAP_PROBES`, those that look) through the wrapper; returns the wrappers'
/// record.
fn wrap_commands(world: &World, work: &Path, debounce: Option<&str>) -> PathBuf {
    let exe = std::env::current_exe().expect("bench binary");
    let wrap = work.join("wrap");
    fs::create_dir_all(&wrap).expect("wrap dir");
    let mut commands = String::from("commands:\n");
    let wrap_probes = std::env::var_os("CONVERGE_BENCH_WRAP_PROBES").is_some();
    let probes = if wrap_probes { PROBES } else { &[] };
    for program in WRAPPED.iter().chain(probes) {
        std::os::unix::fs::symlink(&exe, wrap.join(program)).expect("wrapper link");
        commands.push_str(&format!("  {program}: {}\n", wrap.join(program).display()));
    }
    if let Some(d) = debounce {
        commands.push_str(&format!("debounce: {d}\n"));
    }
    for node in &world.nodes {
        let mut config = fs::read_to_string(&node.config).expect("config");
        config.push_str(&commands);
        fs::write(&node.config, config).expect("config");
    }
    wrap.join(CALLS)
}

fn inside(work: &Path) {
    let runs: usize = std::env::var("CONVERGE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let debounce = std::env::var("CONVERGE_BENCH_DEBOUNCE").ok();
    let only = std::env::var("CONVERGE_BENCH_CHANGE").ok();
    let kinds: Vec<Change> = [Change::Published, Change::Edited, Change::Failover]
        .into_iter()
        .filter(|k| only.as_deref().is_none_or(|o| o == k.word()))
        .collect();
    assert!(
        !kinds.is_empty(),
        "CONVERGE_BENCH_CHANGE: `published`, `edited` or `failover`, not {only:?}"
    );
    let (direct, through) = wrapper_cost(work, 30);
    let mut measured: Vec<(Change, Vec<Run>)> = Vec::new();
    let edits: Vec<Change> = kinds
        .iter()
        .copied()
        .filter(|k| *k != Change::Failover)
        .collect();
    if !edits.is_empty() {
        measured.extend(by_edits(
            &work.join("switchover"),
            &edits,
            runs,
            debounce.as_deref(),
        ));
    }
    if kinds.contains(&Change::Failover) {
        let failovers = power_cuts(&work.join("failover"), runs, debounce.as_deref());
        measured.push((Change::Failover, failovers));
    }
    for (kind, runs) in &measured {
        report(*kind, runs, debounce.as_deref(), direct, through);
    }
}

/// Switchovers by changing the manifests, `runs` of each kind, on a world of two nodes.
fn by_edits(
    work: &Path,
    kinds: &[Change],
    runs: usize,
    debounce: Option<&str>,
) -> Vec<(Change, Vec<Run>)> {
    fs::create_dir_all(work).expect("work dir");
    let world = World::create(work, Path::new(CONVERGE), &NODES).unwrap_or_else(|e| panic!("{e}"));
    let calls_path = wrap_commands(&world, work, debounce);

    let logs: BTreeMap<&str, PathBuf> = NODES
        .iter()
        .map(|n| (*n, work.join(format!("daemon-{n}.log"))))
        .collect();
    let daemons: Vec<NodeProcess> = NODES.iter().map(|n| daemon(&world, n, &logs[n])).collect();
    settled(&world, NODES[0], NODES[1]);
    std::thread::sleep(Duration::from_secs(1));

    let mut measured: Vec<(Change, Vec<Run>)> = Vec::new();
    for &kind in kinds {
        println!("{}:", kind.describe());
        let runs = switchovers(&world, &calls_path, kind, runs);
        measured.push((kind, runs));
    }
    drop(daemons);
    if let Some(keep) = std::env::var_os("CONVERGE_BENCH_LOGS") {
        // For a closer look: the daemons' JSON logs (timestamps, what the watchers saw) and
        // the wrappers' record.
        let keep = Path::new(&keep);
        fs::create_dir_all(keep).expect("log dir");
        for (node, log) in &logs {
            fs::copy(log, keep.join(format!("daemon-{node}.log"))).expect("copy log");
        }
        fs::copy(&calls_path, keep.join(CALLS)).expect("copy calls");
    }
    let mut world = world;
    let problems = world.teardown();
    assert!(problems.is_empty(), "{problems:?}");
    measured
}

/// Failovers: the node running the service (`failover: auto` between deb1 and deb2, tb a
/// diskless tiebreaker) loses power, `runs` times, alternately deb1 and deb2; each time it is
/// powered on again and stands by before the next. Timed from the power cut.
fn power_cuts(work: &Path, runs: usize, debounce: Option<&str>) -> Vec<Run> {
    fs::create_dir_all(work).expect("work dir");
    let specs = [
        NodeSpec::diskful(NODES[0]),
        NodeSpec::diskful(NODES[1]),
        NodeSpec::diskless(TIEBREAKER),
    ];
    let mut world =
        World::create_with(work, Path::new(CONVERGE), &specs).unwrap_or_else(|e| panic!("{e}"));
    let calls_path = wrap_commands(&world, work, debounce);
    let text = fs::read_to_string(&world.manifest).expect("manifest");
    let text = text.replace(
        &format!("node: {}\n", NODES[0]),
        &format!("nodes: [{}, {}]\nfailover: auto\n", NODES[0], NODES[1]),
    );
    fs::write(&world.manifest, text).expect("manifest");
    let log = |n: &str| work.join(format!("daemon-{n}.log"));
    let mut daemons: BTreeMap<&str, NodeProcess> = [NODES[0], NODES[1], TIEBREAKER]
        .into_iter()
        .map(|n| (n, daemon(&world, n, &log(n))))
        .collect();
    settled(&world, NODES[0], NODES[1]);
    std::thread::sleep(Duration::from_secs(1));
    println!("{}:", Change::Failover.describe());
    let mut measured = Vec::new();
    for i in 0..runs {
        let (from, to) = if i % 2 == 0 {
            (NODES[0], NODES[1])
        } else {
            (NODES[1], NODES[0])
        };
        // Its daemon dies with it.
        daemons.remove(from);
        let t0 = now_ns();
        world.power_off(from).unwrap_or_else(|e| panic!("{e}"));
        wait_app_start(&calls_path, t0, to);
        measured.push(measured_run(&calls_path, t0, from, to, i));
        world.power_on(from).unwrap_or_else(|e| panic!("{e}"));
        daemons.insert(from, daemon(&world, from, &log(from)));
        settled(&world, to, from);
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(daemons);
    let problems = world.teardown();
    assert!(problems.is_empty(), "{problems:?}");
    measured
}

/// How the service comes to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Published,
    Edited,
    /// Not a change of the manifests: the node running it loses power (`failover: auto`).
    Failover,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::Published => "published",
            Change::Edited => "edited",
            Change::Failover => "failover",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Change::Published => {
                "published as git-sync does (new worktree, symlink swapped) → app start on the new node"
            }
            Change::Edited => {
                "edited in place (a manifest renamed over the old one) → app start on the new node"
            }
            Change::Failover => {
                "the node running it powered off (failover: auto, a diskless tiebreaker) → app start on the other"
            }
        }
    }

    fn make(self, world: &World, to: &str) -> SystemTime {
        match self {
            Change::Published => world.publish("up", to),
            Change::Edited => world.set_state("up", to),
            Change::Failover => panic!("a failover is a power cut, not a manifest change"),
        }
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// `runs` switchovers, alternately to each node, each started by a change of `kind`.
/// Until the app's start script ran on `to` after `t0`. The wrappers' file is all that is read
/// while the move runs: nothing else competes with the daemons for the two cores.
fn wait_app_start(calls_path: &Path, t0: u128, to: &str) {
    until(
        &format!("the app to start on {to}"),
        || {
            read_calls(calls_path)
                .iter()
                .any(|c| c.begin >= t0 && c.node == to && c.is_app_start())
        },
        Duration::from_millis(10),
    );
}

/// Run `i` (from 0), measured from the wrappers' record, and printed.
fn measured_run(
    calls_path: &Path,
    t0: u128,
    from: &'static str,
    to: &'static str,
    i: usize,
) -> Run {
    let run = measure(&read_calls(calls_path), t0, from, to).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "run {:>2} {from} → {to}: app start begins {:>7}, done {:>7}; {} commands {:>7}; overhead {:>7}",
        i + 1,
        ms(run.to_app_begin),
        ms(run.to_app_end),
        run.count,
        ms(run.commands),
        ms(run.to_app_end.saturating_sub(run.commands)),
    );
    run
}

fn switchovers(world: &World, calls_path: &Path, kind: Change, runs: usize) -> Vec<Run> {
    let mut measured = Vec::new();
    for i in 0..runs {
        // The service runs on the first node between the kinds' series (an even count each).
        let (from, to) = if i % 2 == 0 {
            (NODES[0], NODES[1])
        } else {
            (NODES[1], NODES[0])
        };
        let t0 = ns_of(kind.make(world, to));
        wait_app_start(calls_path, t0, to);
        settled(world, to, from);
        measured.push(measured_run(calls_path, t0, from, to, i));
        // Let both daemons finish what follows (the mount and DRBD events of the switch).
        std::thread::sleep(Duration::from_secs(1));
    }
    if runs % 2 == 1 {
        // Back to the first node, for the next series.
        kind.make(world, NODES[0]);
        settled(world, NODES[0], NODES[1]);
        std::thread::sleep(Duration::from_secs(1));
    }
    measured
}

fn report(kind: Change, runs: &[Run], debounce: Option<&str>, direct: Duration, through: Duration) {
    let of = |f: fn(&Run) -> Duration| runs.iter().map(f).collect::<Vec<_>>();
    let debounce = debounce.unwrap_or("200 ms (default)");
    let what = match kind {
        Change::Published | Change::Edited => "switchover, manifests",
        Change::Failover => "failover,",
    };
    println!(
        "\n{what} {} ({} runs, alternating; debounce {debounce}):",
        kind.describe(),
        runs.len()
    );
    println!(
        "  → app start begins:       {}",
        stats(of(|r| r.to_app_begin))
    );
    println!(
        "  → app start done:         {}",
        stats(of(|r| r.to_app_end))
    );
    println!("  commands' own time:       {}", stats(of(|r| r.commands)));
    println!(
        "  overhead (done − commands): {}",
        stats(of(|r| r.to_app_end.saturating_sub(r.commands)))
    );
    let counts: Vec<usize> = runs.iter().map(|r| r.count).collect();
    let probes: Vec<usize> = runs.iter().map(|r| r.probes.len()).collect();
    println!(
        "  commands per run: {}–{}; probes through the wrapped programs per run: {}–{}",
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0),
        probes.iter().min().unwrap_or(&0),
        probes.iter().max().unwrap_or(&0)
    );
    println!(
        "  one wrapped call costs {} more than the program alone (`umount --version`: {} direct, {} wrapped, medians of 30)",
        ms(through.saturating_sub(direct)),
        ms(direct),
        ms(through)
    );
    for (from, to) in [(NODES[0], NODES[1]), (NODES[1], NODES[0])] {
        let these: Vec<&Run> = runs.iter().filter(|r| r.from == from).collect();
        if these.is_empty() || these.iter().any(|r| r.to != to) {
            continue;
        }
        let of = |f: fn(&Run) -> Duration| these.iter().map(|r| f(r)).collect::<Vec<_>>();
        println!(
            "  {from} → {to} ({} runs): done {}; overhead {}",
            these.len(),
            stats(of(|r| r.to_app_end)),
            stats(of(|r| r.to_app_end.saturating_sub(r.commands)))
        );
    }
    // Where the time goes: each command in the order of the switch, with the gap before it
    // (converge's time: debounce, observation, planning, events) and its own time.
    let mut order: Vec<String> = Vec::new();
    let mut gaps: BTreeMap<String, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    for run in runs {
        for (label, gap, own) in &run.steps {
            // Labels name nodes; the two directions are folded into "old" and "new".
            let label = label
                .replace(&format!("({})", run.from), "(old)")
                .replace(&format!("({})", run.to), "(new)");
            if !order.contains(&label) {
                order.push(label.clone());
            }
            let slot = gaps.entry(label).or_default();
            slot.0.push(*gap);
            slot.1.push(*own);
        }
    }
    println!(
        "\n  per command, p50 (max) over the runs: the gap before it (converge), its own time:"
    );
    let p50max = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        format!("{:>7} ({:>7})", ms(percentile(&v, 0.5)), ms(v[v.len() - 1]))
    };
    for label in &order {
        let (gap, own) = &gaps[label];
        println!(
            "    {label:<24} gap {}   own {}   ({} runs)",
            p50max(gap),
            p50max(own),
            gap.len()
        );
    }
    // The probes (observation, checks, waits), when wrapped: how many per run, their time.
    let mut kinds: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for run in runs {
        for (kind, own) in &run.probes {
            kinds.entry(kind).or_default().push(*own);
        }
    }
    println!(
        "\n  probes through the wrapped programs in the window: calls per run, own time p50 (max), total per run:"
    );
    for (kind, times) in &kinds {
        let total: Duration = times.iter().sum();
        println!(
            "    {kind:<32} {:>4.1}   {}   {}",
            times.len() as f64 / runs.len() as f64,
            p50max(times),
            ms(total / u32::try_from(runs.len()).unwrap_or(1))
        );
    }
}
