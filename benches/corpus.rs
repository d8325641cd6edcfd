//! What the hostile-input corpus costs converge: `converge validate` on each case of
//! `tests/hostile/` (each alone in a manifest directory, or as the node configuration), and on
//! the largest inputs the tests generate, with the time and the peak RSS of each run. Prints the
//! worst of each and every case above a threshold; the figures go to docs/performance.md.
//!
//! `cargo bench --bench corpus`. Not a criterion bench: each case is one process, measured
//! by the kernel (`wait4`'s rusage).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONVERGE: &str = env!("CARGO_BIN_EXE_converge");
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile");
const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");

struct Run {
    name: String,
    elapsed: Duration,
    max_rss_kib: i64,
    code: i32,
}

/// Runs converge with `args`; the time and peak RSS of that process alone.
// The child is reaped by `wait4`, which std's `wait` cannot replace: it gives the rusage.
#[allow(clippy::zombie_processes)]
fn measure(name: &str, args: &[&std::ffi::OsStr]) -> Run {
    let started = Instant::now();
    let child = Command::new(CONVERGE)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run converge");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-buffer; the pid is our own child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    Run {
        name: name.to_string(),
        elapsed: started.elapsed(),
        max_rss_kib: usage.ru_maxrss,
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
    }
}

fn manifest_case(work: &Path, name: &str, text: &[u8], beside: &[PathBuf]) -> Run {
    let dir = work.join(format!("case-{name}"));
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join(format!("{name}.yaml")), text).expect("write case");
    for other in beside {
        let file = other.file_name().expect("file name");
        fs::copy(other, dir.join(file)).expect("copy");
    }
    let config = work.join("config.yaml");
    let run = measure(
        name,
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "validate".as_ref(),
            dir.as_os_str(),
        ],
    );
    let _ = fs::remove_dir_all(&dir);
    run
}

fn main() {
    let work = tempfile::tempdir().expect("tempdir");
    fs::write(work.path().join("config.yaml"), "node: deb1\n").expect("config");
    let mut runs = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(Path::new(CORPUS).join("manifests"))
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for path in &names {
        let text = fs::read(path).expect("read");
        let beside: Vec<PathBuf> = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.strip_prefix("# beside:"))
            .map(|n| Path::new(CORPUS).join("beside").join(n.trim()))
            .collect();
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        runs.push(manifest_case(work.path(), &name, &text, &beside));
    }
    let mut configs: Vec<PathBuf> = fs::read_dir(Path::new(CORPUS).join("configs"))
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    configs.sort();
    for path in &configs {
        let name = format!(
            "config {}",
            path.file_stem().expect("stem").to_string_lossy()
        );
        runs.push(measure(
            &name,
            &[
                "--config".as_ref(),
                path.as_os_str(),
                "validate".as_ref(),
                SEED.as_ref(),
            ],
        ));
    }
    let corpus_cases = runs.len();
    // The largest inputs: what the loader refuses by size and shape, a megabyte of each.
    let mib = 1024 * 1024 - 64;
    let generated: Vec<(&str, Vec<u8>)> = vec![
        (
            "generated: 1 MiB of `[`",
            format!("service: s\nstate: up\nx: {}", "[".repeat(mib)).into_bytes(),
        ),
        (
            "generated: 1 MiB of `{a: `",
            format!("service: s\nstate: up\nx: {}", "{a: ".repeat(mib / 4)).into_bytes(),
        ),
        ("generated: 1 MiB of unknown keys", {
            let mut text = String::from("service: s\nstate: up\n");
            let mut i = 0;
            while text.len() < mib {
                text.push_str(&format!("k{i}: 1\n"));
                i += 1;
            }
            text.into_bytes()
        }),
        ("generated: 1 MiB of relative mount points", {
            let mut text = String::from("service: s\nstate: up\nresources:\n");
            let mut i = 0;
            while text.len() < mib {
                text.push_str(&format!(
                    "  fs#{i}: {{dev: /dev/a{i}, mnt: m{i}, type: ext4}}\n"
                ));
                i += 1;
            }
            text.into_bytes()
        }),
    ];
    for (name, text) in generated {
        runs.push(manifest_case(work.path(), "generated", &text, &[]));
        if let Some(last) = runs.last_mut() {
            last.name = name.to_string();
        }
    }
    // The corpus alone (its cases come first), apart from the generated extremes.
    let corpus = &runs[..corpus_cases.min(runs.len())];
    if let (Some(slow), Some(large)) = (
        corpus.iter().max_by_key(|r| r.elapsed),
        corpus.iter().max_by_key(|r| r.max_rss_kib),
    ) {
        println!(
            "worst of the {} corpus cases: slowest {} — {:.1} ms; largest {} — peak RSS {} KiB",
            corpus.len(),
            slow.name,
            slow.elapsed.as_secs_f64() * 1000.0,
            large.name,
            large.max_rss_kib
        );
    }
    let slowest = runs.iter().max_by_key(|r| r.elapsed).expect("runs");
    let largest = runs.iter().max_by_key(|r| r.max_rss_kib).expect("runs");
    let baseline = measure(
        "the shipped manifests",
        &[
            "--config".as_ref(),
            work.path().join("config.yaml").as_os_str(),
            "validate".as_ref(),
            SEED.as_ref(),
        ],
    );
    println!(
        "corpus: {corpus_cases} cases + {} generated; every exit code: {:?}",
        runs.len() - corpus_cases,
        {
            let mut codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
            codes.sort_unstable();
            codes.dedup();
            codes
        }
    );
    println!(
        "baseline (the shipped manifests): {:.1} ms, peak RSS {} KiB",
        baseline.elapsed.as_secs_f64() * 1000.0,
        baseline.max_rss_kib
    );
    println!(
        "slowest: {} — {:.1} ms (peak RSS {} KiB)",
        slowest.name,
        slowest.elapsed.as_secs_f64() * 1000.0,
        slowest.max_rss_kib
    );
    println!(
        "largest: {} — peak RSS {} KiB ({:.1} ms)",
        largest.name,
        largest.max_rss_kib,
        largest.elapsed.as_secs_f64() * 1000.0
    );
    // Every generated extreme, and any corpus case past 50 ms or 20 MiB.
    let mut heavy: Vec<&Run> = runs
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            *i >= corpus_cases || r.elapsed > Duration::from_millis(50) || r.max_rss_kib > 20 * 1024
        })
        .map(|(_, r)| r)
        .collect();
    heavy.sort_by_key(|r| std::cmp::Reverse(r.elapsed));
    for run in heavy {
        println!(
            "  {}: {:.1} ms, {} KiB",
            run.name,
            run.elapsed.as_secs_f64() * 1000.0,
            run.max_rss_kib
        );
    }
}
