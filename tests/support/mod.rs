//! Shared by the integration tests: a temporary sandbox with a node configuration, fake or
//! simulated programs, and a way to run the converge binary against it.
#![allow(dead_code)] // Each test binary uses its own subset.

pub mod daemon;
pub mod lxc;
pub mod node;
pub mod world;

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

/// A host app service `name` in `dir`, desired `state`: S10app runs `start_first` (a shell
/// line, may be empty), then creates `name.up` in the sandbox; K10app removes it; C10app checks
/// it.
pub fn host_app_manifest(sb: &Sandbox, dir: &Path, name: &str, state: &str, start_first: &str) {
    let marker = sb.path(&format!("{name}.up"));
    sb.script(
        &format!("{name}.d/S10app"),
        &format!("{start_first}\ntouch {}", marker.display()),
    );
    sb.script(
        &format!("{name}.d/K10app"),
        &format!("rm -f {}", marker.display()),
    );
    sb.script(
        &format!("{name}.d/C10app"),
        &format!("test -e {}", marker.display()),
    );
    fs::create_dir_all(dir).expect("mkdir");
    fs::write(
        dir.join(format!("{name}.yaml")),
        format!(
            "service: {name}\nstate: {state}\nresources:\n  app#0:\n    scripts: {}\n",
            sb.path(&format!("{name}.d")).display()
        ),
    )
    .expect("write manifest");
}
