//! Shared by the integration tests: a temporary sandbox with a node configuration, fake or
//! simulated programs, and a way to run the converge binary against it.
#![allow(dead_code)] // Each test binary uses its own subset.

pub mod node;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const CONVERGE: &str = env!("CARGO_BIN_EXE_converge");
pub const SEED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&path, text).expect("write");
        path
    }

    /// An executable shell script.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.write(name, &format!("#!/bin/sh\n{body}\n"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// A fake program printing `stdout` and exiting `code`.
    pub fn program(&self, name: &str, stdout: &str, code: i32) -> PathBuf {
        let out = self.write(&format!("{name}.out"), stdout);
        self.script(name, &format!("cat '{}'\nexit {code}", out.display()))
    }

    /// The converge binary under a simulated tool's name (`bin/vzctl` …).
    pub fn sim_tool(&self, tool: &str) -> PathBuf {
        let path = self.path("bin").join(tool);
        fs::create_dir_all(self.path("bin")).expect("mkdir bin");
        if !path.exists() {
            symlink(CONVERGE, &path).expect("symlink");
        }
        path
    }

    pub fn sim_dir(&self) -> PathBuf {
        self.path("sim")
    }

    /// Writes the node configuration: node `deb1`, state and logs inside the sandbox, plus
    /// `extra` YAML lines.
    pub fn config(&self, extra: &str) -> PathBuf {
        self.write(
            "config.yaml",
            &format!(
                "node: deb1\nstate_dir: {0}/state\nlog_dir: {0}/log\n{extra}",
                self.root().display()
            ),
        )
    }

    /// A command running converge with this sandbox's configuration and simulators.
    pub fn converge_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CONVERGE);
        cmd.arg("--config")
            .arg(self.path("config.yaml"))
            .args(args)
            .env("CONVERGE_SIM_DIR", self.sim_dir())
            .stdin(Stdio::null());
        cmd
    }

    pub fn converge(&self, args: &[&str]) -> Output {
        self.converge_cmd(args).output().expect("run converge")
    }

    /// Runs a simulated tool directly (test set-up through the simulator's hooks).
    pub fn sim(&self, tool: &str, args: &[&str]) -> Output {
        let out = Command::new(self.sim_tool(tool))
            .args(args)
            .env("CONVERGE_SIM_DIR", self.sim_dir())
            .stdin(Stdio::null())
            .output()
            .expect("run simulator");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            text(&out.stderr)
        );
        out
    }
}

pub fn converge_with(config: &Path, args: &[&str]) -> Output {
    Command::new(CONVERGE)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run converge")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn assert_no_panic(out: &Output) {
    let err = text(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
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
    if let Some(work) = std::env::var_os(INSIDE) {
        scenario(Path::new(&work));
        return;
    }
    if !is_root() {
        eprintln!("skipping {name}: needs root (loop devices, mknod, mounts)");
        return;
    }
    let missing = converge::sim::sandbox::missing_programs();
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
    let leaked = converge::sim::sandbox::detach_loops_under(work.path());
    assert!(
        output.status.success(),
        "{name} failed in its namespace:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        leaked.is_empty(),
        "{name} left loop devices behind: {leaked:?}"
    );
}
