//! End-to-end daemon figures for docs/performance.md (not criterion: each sample is a real
//! `converge run` process reacting to real files, signals and the DRBD simulator).
//!
//! - manifest edit → first action, p50/p99, and the same beyond the debounce (the latency less
//!   the quiet period the daemon waits by design);
//! - peer demote → local promote (target ≤ 1 s; root only: a sandboxed node with the DRBD
//!   simulator in a private mount namespace);
//! - idle CPU, wake-ups and RSS of a daemon holding 100, 1,000 and 10,000 converged services
//!   over 60 s, per thread.
//!
//! `cargo bench --bench daemon` runs all; `-- edit`, `-- promote`, `-- idle` pick one.
//! Environment:
//! - CONVERGE_BENCH_IDLE_SECS: the idle window (60), shorter while trying things out;
//! - CONVERGE_BENCH_SERVICES: the idle service counts, comma-separated (100,1000,10000);
//! - CONVERGE_BENCH_RESYNC: the daemon's `resync` in the idle runs (its default, 30s); `1h`
//!   shows what an idle daemon costs between two resyncs;
//! - CONVERGE_BENCH_SAMPLES: edits per edit run (100);
//! - CONVERGE_BENCH_BIN: the `converge` binary to run instead of this build's, to compare two
//!   builds in one session (an old release binary kept aside).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONVERGE: &str = env!("CARGO_BIN_EXE_converge");
const INSIDE: &str = "CONVERGE_BENCH_NAMESPACE_WORK";
/// The daemon's default quiet period, which the edit runs keep.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The `converge` binary the runs start: this build's, or CONVERGE_BENCH_BIN's.
fn converge() -> PathBuf {
    std::env::var_os("CONVERGE_BENCH_BIN").map_or_else(|| PathBuf::from(CONVERGE), PathBuf::from)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Some(work) = std::env::var_os(INSIDE) {
        promote_inside(Path::new(&work));
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    if wants("edit") {
        for others in [0, 999] {
            edit_to_action(others);
        }
    }
    if wants("promote") {
        promote();
    }
    if wants("idle") {
        let secs = env_or("CONVERGE_BENCH_IDLE_SECS", 60);
        let counts: Vec<usize> = std::env::var("CONVERGE_BENCH_SERVICES")
            .unwrap_or_else(|_| "100,1000,10000".into())
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect();
        let resync = std::env::var("CONVERGE_BENCH_RESYNC").ok();
        for n in counts {
            idle(n, Duration::from_secs(secs), resync.as_deref());
        }
    }
}

fn write_exec(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    fs::write(
        &path,
        format!(
            "state_dir: {0}/state\nlog_dir: {0}/log\n{extra}",
            dir.display()
        ),
    )
    .expect("config");
    path
}

fn start_daemon(config: &Path, manifests: &Path, log: &Path) -> Child {
    Command::new(converge())
        .arg("--config")
        .arg(config)
        .arg("run")
        .arg(manifests)
        .stdin(Stdio::null())
        .stdout(fs::File::create(log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("converge run")
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn wait_for(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    wait_every(what, timeout, Duration::from_millis(2), check);
}

/// Checks every `every`: a check that parses a large view must not take a core from the daemon
/// it measures.
fn wait_every(what: &str, timeout: Duration, every: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn ms_fine(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Edit a manifest (state up ↔ down), measure until the app's start/stop script runs, with
/// `others` more services in force (down, converged): each edit re-reads the whole directory.
fn edit_to_action(others: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let manifests = dir.join("manifests");
    fs::create_dir_all(&manifests).expect("mkdir");
    fs::create_dir_all(dir.join("scripts")).expect("mkdir");
    let stamp = dir.join("stamp");
    // Each script records when it ran, in nanoseconds since the epoch.
    for (name, verb) in [("S10app", "start"), ("K10app", "stop")] {
        write_exec(
            &dir.join("scripts").join(name),
            &format!("date +%s%N > {}.{verb}", stamp.display()),
        );
    }
    let manifest = |state: &str| {
        format!(
            "service: bench\nstate: {state}\nresources:\n  app#0:\n    scripts: {}\n",
            dir.join("scripts").display()
        )
    };
    fs::write(manifests.join("bench.yaml"), manifest("down")).expect("manifest");
    for i in 0..others {
        fs::write(
            manifests.join(format!("other{i}.yaml")),
            format!("service: other{i}\nstate: down\nresources:\n  app#0:\n    start: [/bin/true]\n    stop: [/bin/true]\n"),
        )
        .expect("manifest");
    }
    let cfg = config(
        dir,
        &format!("resync: 1h\ndebounce: {}ms\n", DEBOUNCE.as_millis()),
    );
    let daemon = start_daemon(&cfg, &manifests, &dir.join("daemon.log"));
    wait_for("the daemon", Duration::from_secs(20), || {
        dir.join("state/daemon.json").exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    let now_ns = || -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    };
    let mut samples = Vec::new();
    for i in 0..env_or("CONVERGE_BENCH_SAMPLES", 100) {
        let (state, verb) = if i % 2 == 0 {
            ("up", "start")
        } else {
            ("down", "stop")
        };
        let mark = stamp.with_extension(verb);
        let _ = fs::remove_file(&mark);
        let before = now_ns();
        fs::write(manifests.join("bench.yaml"), manifest(state)).expect("edit");
        wait_for("the script", Duration::from_secs(20), || {
            fs::read_to_string(&mark).is_ok_and(|t| t.ends_with('\n'))
        });
        let ran: u128 = fs::read_to_string(&mark)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(before);
        samples.push(Duration::from_nanos(
            u64::try_from(ran.saturating_sub(before)).unwrap_or(u64::MAX),
        ));
        std::thread::sleep(Duration::from_millis(300));
    }
    stop(daemon);
    samples.sort();
    // What the daemon adds to the quiet period it keeps by design.
    let beyond: Vec<Duration> = samples.iter().map(|s| s.saturating_sub(DEBOUNCE)).collect();
    println!(
        "edit → first action ({} service(s) in force, debounce {}, {} samples): p50 {}, p99 {}, max {}; \
         beyond the debounce: p50 {}, p99 {}, max {}",
        others + 1,
        ms(DEBOUNCE),
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().expect("samples")),
        ms_fine(percentile(&beyond, 0.5)),
        ms_fine(percentile(&beyond, 0.99)),
        ms_fine(*beyond.last().expect("samples")),
    );
}

/// Peer demote → local promote, on a sandboxed node (root).
fn promote() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("peer demote → local promote: skipped (needs root)");
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
    converge_sim::sandbox::detach_loops_under(work.path());
    assert!(status.success(), "promote benchmark failed");
}

fn promote_inside(work: &Path) {
    use converge_sim::sandbox::Sandbox;
    let sb = Sandbox::create(work, &converge()).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = fs::read_to_string(&sb.config).expect("config");
    cfg.push_str("debounce: 50ms\nresync: 1h\n");
    fs::write(&sb.config, cfg).expect("config");
    let env = sb.env();
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .envs(env.clone())
            .stdin(Stdio::null())
            .output()
            .expect("run");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let drbdsetup = sb.bin.join("drbdsetup").display().to_string();
    let role = || run(&drbdsetup, &["role", "data"]).trim().to_string();
    let mut samples = Vec::new();
    let mut daemon = Command::new(converge())
        .arg("--config")
        .arg(&sb.config)
        .arg("run")
        .envs(env.clone())
        .stdin(Stdio::null())
        .stdout(fs::File::create(work.join("daemon.log")).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("converge run");
    sb.set_state("up").expect("up");
    wait_for("the first start", Duration::from_secs(60), || {
        role() == "Primary"
    });
    for _ in 0..10 {
        // The peer holds the resource; converge is refused; then the peer steps down.
        sb.set_state("down").expect("down");
        wait_for("local Secondary", Duration::from_secs(30), || {
            role() == "Secondary"
        });
        run(&drbdsetup, &["sim-peer", "data", "--role", "Primary"]);
        sb.set_state("up").expect("up");
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(role(), "Secondary", "promotion beside a Primary peer");
        let start = Instant::now();
        run(&drbdsetup, &["sim-peer", "data", "--role", "Secondary"]);
        wait_for("local Primary", Duration::from_secs(30), || {
            role() == "Primary"
        });
        samples.push(start.elapsed());
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    sb.set_state("down").expect("down");
    let _ = Command::new(converge())
        .arg("--config")
        .arg(&sb.config)
        .args(["reconcile", "--once"])
        .envs(env)
        .output();
    let problems = sb.teardown();
    assert!(problems.is_empty(), "{problems:?}");
    samples.sort();
    println!(
        "peer demote → local promote ({} samples; role polled every 2 ms): p50 {}, max {}",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(*samples.last().expect("samples"))
    );
}

/// CPU time (user + system) of a process and its dead threads, in clock ticks: 10 ms steps,
/// a cross-check of the per-thread figures only.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let get = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// What one thread had used at some point: CPU time in nanoseconds and how many times it ran
/// (schedstat's first and third fields: a thread that wakes up runs once more).
#[derive(Debug, Clone, Copy, Default)]
struct ThreadUse {
    ns: u64,
    runs: u64,
}

/// Each live thread's use so far, by thread id, with the thread's name.
fn thread_cpu(pid: u32) -> BTreeMap<u32, (String, ThreadUse)> {
    let mut threads = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.filter_map(Result::ok) {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let fields: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let used = ThreadUse {
            ns: fields.first().copied().unwrap_or(0),
            runs: fields.get(2).copied().unwrap_or(0),
        };
        threads.insert(tid, (name.trim().to_string(), used));
    }
    threads
}

/// How many services the daemon's view says are converged (by the result's kind).
fn converged_in_view(view: &Path) -> usize {
    let Some(doc) = fs::read_to_string(view)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    else {
        return 0;
    };
    doc["services"].as_array().map_or(0, |services| {
        services
            .iter()
            .filter(|s| s["result"]["kind"] == "converged")
            .count()
    })
}

/// A field of /proc/PID/status, in KiB (0 when absent).
fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

/// N converged services (apps without a check: their start is recorded, so watching them
/// costs a look at the records per resync), idle for `window`; `resync` is the daemon's
/// setting (its default when `None`).
fn idle(n: usize, window: Duration, resync: Option<&str>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let manifests = dir.join("manifests");
    fs::create_dir_all(&manifests).expect("mkdir");
    for i in 0..n {
        fs::write(
            manifests.join(format!("svc{i}.yaml")),
            format!("service: svc{i}\nstate: up\nresources:\n  app#0:\n    start: [/bin/true]\n    stop: [/bin/true]\n"),
        )
        .expect("manifest");
    }
    let cfg = config(
        dir,
        &resync.map_or(String::new(), |r| format!("resync: {r}\n")),
    );
    let daemon = start_daemon(&cfg, &manifests, &dir.join("daemon.log"));
    let pid = daemon.id();
    let view = dir.join("state/daemon.json");
    let began = Instant::now();
    // Starting each app takes a few ms, 8 at once: 10,000 take a minute or two.
    let settle = Duration::from_secs(60 + n as u64 / 10);
    wait_every(
        "all services converged",
        settle,
        Duration::from_millis(500),
        || converged_in_view(&view) == n,
    );
    let converged_in = began.elapsed();
    // Past the blocking pool's keep-alive (10 s): the threads of the start's reads have ended
    // and take nothing from the window.
    std::thread::sleep(Duration::from_secs(12));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks_before = cpu_ticks(pid);
    let threads_before = thread_cpu(pid);
    let started = Instant::now();
    std::thread::sleep(window);
    let threads_after = thread_cpu(pid);
    let ticks = (cpu_ticks(pid) - ticks_before) as f64 / hz;
    let elapsed = started.elapsed().as_secs_f64();
    let rss = status_kib(pid, "VmRSS");
    let anon = status_kib(pid, "RssAnon");
    let file = status_kib(pid, "RssFile");
    let peak = status_kib(pid, "VmHWM");
    stop(daemon);
    // Per thread: a thread that ended during the window took its time with it (stat's total
    // keeps it, in 10 ms steps); say so rather than report too little.
    let gone = threads_before
        .keys()
        .filter(|t| !threads_after.contains_key(t))
        .count();
    let mut per_thread: BTreeMap<String, (f64, u64, usize)> = BTreeMap::new();
    for (tid, (name, after)) in &threads_after {
        let before = threads_before
            .get(tid)
            .map_or(ThreadUse::default(), |(_, u)| *u);
        let slot = per_thread.entry(name.clone()).or_default();
        slot.0 += after.ns.saturating_sub(before.ns) as f64 / 1e9;
        slot.1 += after.runs.saturating_sub(before.runs);
        slot.2 += 1;
    }
    let used: f64 = per_thread.values().map(|(secs, _, _)| secs).sum();
    let wakes: u64 = per_thread.values().map(|(_, runs, _)| runs).sum();
    println!(
        "idle, {n} converged services (converged after {:.0} s), {elapsed:.0} s, resync {}: \
         CPU {:.3} % of a core (stat, 10 ms steps: {:.3} %), {wakes} thread runs; \
         RSS {} (anon {}, file {}; peak {})",
        converged_in.as_secs_f64(),
        resync.unwrap_or("30s (default)"),
        100.0 * used / elapsed,
        100.0 * ticks / elapsed,
        mb(rss),
        mb(anon),
        mb(file),
        mb(peak),
    );
    for (name, (secs, runs, count)) in &per_thread {
        println!(
            "  {name} ×{count}: {:.1} ms ({:.3} %), ran {runs} time(s)",
            secs * 1000.0,
            100.0 * secs / elapsed
        );
    }
    if gone > 0 {
        println!("  ({gone} thread(s) ended during the window: their share is missing above)");
    }
}
