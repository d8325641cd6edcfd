//! A sandboxed node for the tests on real parts (see `converge_sim::sandbox`), with the calls
//! those tests make on it. Torn down when dropped, even when the test fails.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use converge_sim::sandbox::Sandbox;

use super::{CONVERGE, text};

/// A sandboxed node, torn down when dropped.
pub struct Node {
    pub sb: Sandbox,
}

impl Drop for Node {
    fn drop(&mut self) {
        let problems = self.sb.teardown();
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("teardown: {problems:?}");
        }
    }
}

pub struct Run {
    pub code: i32,
    pub out: String,
}

impl Node {
    pub fn new(work: &Path) -> Node {
        Node::with_drbd(work, "9")
    }

    pub fn with_drbd(work: &Path, version: &'static str) -> Node {
        let sb = Sandbox::create_with(work, Path::new(CONVERGE), version)
            .unwrap_or_else(|e| panic!("{e}"));
        Node { sb }
    }

    /// With a real LXC container named `name` instead of the simulated OpenVZ one.
    pub fn with_lxc(work: &Path, name: &str) -> Node {
        let sb =
            Sandbox::create_lxc(work, Path::new(CONVERGE), name).unwrap_or_else(|e| panic!("{e}"));
        Node { sb }
    }

    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.sb.env()).stdin(Stdio::null());
        command
    }

    pub fn converge(&self, args: &[&str]) -> Run {
        let out = self
            .command(CONVERGE)
            .arg("--config")
            .arg(&self.sb.config)
            .args(args)
            .output()
            .expect("converge runs");
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        Run {
            code: out.status.code().unwrap_or(-1),
            out: format!("{}{stderr}", text(&out.stdout)),
        }
    }

    pub fn reconcile(&self) -> Run {
        self.converge(&["reconcile", "--once"])
    }

    pub fn sh(&self, script: &str) -> Output {
        let out = self
            .command("sh")
            .args(["-c", script])
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "{script}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    pub fn drbdadm(&self, args: &str) {
        self.sh(&format!(
            "drbdadm --drbdsetup={}/drbdsetup {args}",
            self.sb.bin.display()
        ));
    }

    pub fn sim(&self, tool: &str, args: &str) -> String {
        text(
            &self
                .sh(&format!("{}/{tool} {args}", self.sb.bin.display()))
                .stdout,
        )
    }

    pub fn mnt(&self) -> String {
        self.sb.mnt.display().to_string()
    }

    pub fn is_mounted(&self) -> bool {
        fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&self.mnt()))
    }

    pub fn role(&self) -> String {
        let out = self
            .command("drbdadm")
            .arg(format!("--drbdsetup={}/drbdsetup", self.sb.bin.display()))
            .args(["role", "data"])
            .output()
            .expect("drbdadm role");
        text(&out.stdout).trim().to_string()
    }

    pub fn set_state(&self, state: &str) {
        self.sb.set_state(state).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn set_fs_key(&self, key_line: &str) {
        let text = fs::read_to_string(&self.sb.manifest).expect("manifest");
        let text = text.replace(
            "    options: defaults\n",
            &format!("    options: defaults\n    {key_line}\n"),
        );
        fs::write(&self.sb.manifest, text).expect("write manifest");
    }
}

/// Asserts `lines` appear in `out` in this order (each line ending with the given text after
/// the label and level columns).
pub fn assert_sequence(out: &str, lines: &[(&str, String)]) {
    let all: Vec<&str> = out.lines().collect();
    let mut at = 0;
    for (label, ending) in lines {
        let found = all[at..].iter().position(|l| {
            l.starts_with(&format!("{label:<8}INFO    ")) && l.ends_with(ending.as_str())
        });
        match found {
            Some(i) => at += i + 1,
            None => panic!("missing `{label} … {ending}` (in order) in:\n{out}"),
        }
    }
}
