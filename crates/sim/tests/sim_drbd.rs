//! The DRBD simulator driven by the real `drbdadm`, with real loop devices, filesystems and
//! mounts.
//!
//! Tests that need root re-run themselves (this test binary, one test) under
//! `unshare -m --propagation private`, so every mount, the private /dev included, dies with that
//! process; the parent then detaches any loop device left over the test's files. Without root
//! they say why they skip.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use converge_core::observe::drbd::{ConnectionState, DiskState, Role};
use converge_core::observe::events2::{Events2State, parse_line};
use converge_core::observe::{drbdsetup_status, proc_drbd};

use converge_sim::sandbox::private_dev;
use converge_sim::testing::in_namespace;

/// The simulators' binary: `converge-sim TOOL …`, or run under a tool's name.
const SIM: &str = env!("CARGO_BIN_EXE_converge-sim");

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct LoopGuard(String);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        let _ = Command::new("blockdev").args(["--setrw", &self.0]).status();
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

struct MountGuard(PathBuf);

impl MountGuard {
    fn unmount(self) {
        ok("umount", &[&self.0.to_string_lossy()]);
        std::mem::forget(self);
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One simulated node: a backing disk, its resource file, the simulator and its state.
struct Node {
    work: PathBuf,
    res_file: PathBuf,
    bin: PathBuf,
    sim_dir: PathBuf,
    disk: String,
    _disk_guard: LoopGuard,
}

impl Node {
    fn new(work: &Path) -> Node {
        private_dev(work).unwrap_or_else(|e| panic!("{e}"));
        let image = work.join("backing.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .expect("backing file");
        let disk = ok("losetup", &["--find", "--show", &image.to_string_lossy()])
            .trim()
            .to_string();
        let guard = LoopGuard(disk.clone());
        let bin = work.join("bin");
        fs::create_dir_all(&bin).expect("mkdir bin");
        std::os::unix::fs::symlink(SIM, bin.join("drbdsetup")).expect("symlink");
        let host = ok("uname", &["-n"]).trim().to_string();
        let res_file = work.join("data.res");
        fs::write(
            &res_file,
            format!(
                "resource data {{\n  device /dev/drbd0;\n  disk {disk};\n  meta-disk internal;\n  on {host} {{ node-id 0; address 127.0.0.1:7789; }}\n  on peer1 {{ node-id 1; address 127.0.0.2:7789; }}\n}}\n"
            ),
        )
        .expect("resource file");
        Node {
            work: work.to_path_buf(),
            res_file,
            bin,
            sim_dir: work.join("sim"),
            disk,
            _disk_guard: guard,
        }
    }

    fn command(&self, program: &Path) -> Command {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.bin.clone()];
        paths.extend(std::env::split_paths(&path));
        let mut command = Command::new(program);
        command
            // drbdmeta asks `drbdsetup MINOR dstate` through PATH: let it reach the simulator.
            .env("PATH", std::env::join_paths(paths).expect("PATH"))
            .env("CONVERGE_SIM_DIR", &self.sim_dir)
            .env_remove("CONVERGE_SIM_DEV_DIR")
            .stdin(Stdio::null());
        command
    }

    fn drbdadm(&self, args: &[&str]) -> Output {
        let drbdsetup = format!("--drbdsetup={}", self.bin.join("drbdsetup").display());
        self.command(Path::new("drbdadm"))
            .arg("-c")
            .arg(&self.res_file)
            .arg(drbdsetup)
            .args(args)
            .output()
            .expect("drbdadm runs")
    }

    fn drbdadm_ok(&self, args: &[&str]) -> String {
        let out = self.drbdadm(args);
        assert!(
            out.status.success(),
            "drbdadm {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// drbdadm's exit code and its stderr without the `modinfo: not found` noise.
    fn drbdadm_fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.drbdadm(args);
        let stderr = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("modinfo"))
            .collect::<Vec<_>>()
            .join("\n");
        (out.status.code().unwrap_or(-1), stderr)
    }

    fn sim(&self, args: &[&str]) -> Output {
        self.command(&self.bin.join("drbdsetup"))
            .args(args)
            .output()
            .expect("simulator runs")
    }

    fn sim_ok(&self, args: &[&str]) -> String {
        let out = self.sim(args);
        assert!(
            out.status.success(),
            "drbdsetup {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Where DRBD's metadata begins on the backing disk, read back with the real drbdmeta.
    fn metadata_start(&self) -> u64 {
        let dump = ok("drbdmeta", &["0", "v09", &self.disk, "internal", "dump-md"]);
        dump.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("# ")?;
                let (key, value) = rest.split_once(' ')?;
                matches!(key, "bm_offset" | "al_offset" | "md_offset")
                    .then(|| value.trim().parse::<u64>().ok())
                    .flatten()
            })
            .min()
            .expect("drbdmeta finds the metadata")
    }

    /// The loop devices stacked on the backing disk: the simulator's.
    fn sim_loops(&self) -> Vec<String> {
        ok(
            "losetup",
            &["--noheadings", "--output", "NAME", "-j", &self.disk],
        )
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
    }
}

/// Takes every simulated resource down when the scenario ends, however it ends.
struct SimGuard<'a>(&'a Node);

impl Drop for SimGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.sim(&["down", "all"]);
    }
}

fn getro(dev: &str) -> String {
    ok("blockdev", &["--getro", dev]).trim().to_string()
}

#[test]
fn drbdadm_drives_a_service_lifecycle() {
    in_namespace("drbdadm_drives_a_service_lifecycle", |work| {
        let node = Node::new(work);
        node.drbdadm_ok(&["create-md", "data"]);
        let _sim = SimGuard(&node);
        node.drbdadm_ok(&["up", "data"]);

        // A real block device at the configured path, read-only while Secondary, ending
        // exactly where the metadata begins.
        let meta = fs::metadata("/dev/drbd0").expect("/dev/drbd0 exists");
        assert!(meta.file_type().is_block_device());
        assert_eq!(getro("/dev/drbd0"), "1");
        let size: u64 = ok("blockdev", &["--getsize64", "/dev/drbd0"])
            .trim()
            .parse()
            .expect("size");
        assert_eq!(size, node.metadata_start());
        assert_eq!(node.sim_loops().len(), 1);

        let status = drbdsetup_status::parse_json(&node.sim_ok(&["status", "--json"]))
            .expect("status --json parses");
        let data = &status["data"];
        assert_eq!(data.role, Role::Secondary);
        assert_eq!(data.devices[0].disk, DiskState::UpToDate);
        assert_eq!(data.connections[0].state, ConnectionState::Connected);
        let proc_text = fs::read_to_string(node.sim_dir.join("proc_drbd")).expect("proc");
        assert!(
            proc_drbd::parse(&proc_text)
                .expect("proc parses")
                .is_drbd9()
        );
        assert_eq!(node.drbdadm_ok(&["role", "data"]), "Secondary\n");
        // adjust finds nothing to do: `show` says what the resource file says.
        assert_eq!(node.drbdadm_ok(&["-d", "adjust", "data"]), "");

        node.drbdadm_ok(&["primary", "data"]);
        assert_eq!(getro("/dev/drbd0"), "0");
        // Writing the whole device stops at its end and leaves the metadata intact.
        let fill = run(
            "dd",
            &["if=/dev/zero", "of=/dev/drbd0", "bs=1M", "oflag=direct"],
        );
        assert!(String::from_utf8_lossy(&fill.stderr).contains("No space left"));
        assert_eq!(node.metadata_start(), size);

        ok("mkfs.ext3", &["-q", "-F", "/dev/drbd0"]);
        let mnt = work.join("mnt");
        fs::create_dir_all(&mnt).expect("mkdir mnt");
        ok("mount", &["/dev/drbd0", &mnt.to_string_lossy()]);
        let mount = MountGuard(mnt.clone());
        fs::write(mnt.join("hello"), "persisted").expect("write on the fs");
        let (code, stderr) = node.drbdadm_fails(&["secondary", "data"]);
        assert_eq!(code, 11, "{stderr}");
        assert!(
            stderr.contains("data: State change failed: (-12) Device is held open by someone"),
            "{stderr}"
        );
        let status =
            drbdsetup_status::parse_json(&node.sim_ok(&["status", "--json"])).expect("parses");
        assert!(status["data"].devices[0].open);
        mount.unmount();
        // Held open by a process, nothing mounted: refused, unless forced (DRBD 9's
        // `secondary --force`, which fails the holder's I/O: read-only here).
        let mut holder = std::process::Command::new("sleep")
            .arg("60")
            .stdin(fs::File::open("/dev/drbd0").expect("open /dev/drbd0"))
            .spawn()
            .expect("a process holding the device");
        let (code, stderr) = node.drbdadm_fails(&["secondary", "data"]);
        assert_eq!(code, 11, "{stderr}");
        assert!(
            stderr.contains("Device is held open by someone"),
            "{stderr}"
        );
        node.drbdadm_ok(&["secondary", "--force", "data"]);
        let _ = holder.kill();
        let _ = holder.wait();
        assert_eq!(node.drbdadm_ok(&["role", "data"]), "Secondary\n");
        node.drbdadm_ok(&["secondary", "data"]);
        assert_eq!(getro("/dev/drbd0"), "1");

        // A Primary peer blocks promotion; so does having no UpToDate data anywhere.
        node.sim_ok(&["sim-peer", "data", "--role", "Primary"]);
        let (code, stderr) = node.drbdadm_fails(&["primary", "data"]);
        assert_eq!(code, 11, "{stderr}");
        assert!(
            stderr.contains("(-1) Multiple primaries not allowed by config"),
            "{stderr}"
        );
        node.sim_ok(&[
            "sim-peer",
            "data",
            "--role",
            "Secondary",
            "--connection",
            "Connecting",
        ]);
        node.sim_ok(&["sim-local-disk", "data", "--disk", "Outdated"]);
        let (code, stderr) = node.drbdadm_fails(&["primary", "data"]);
        assert_eq!(code, 17, "{stderr}");
        assert!(
            stderr.contains("(-2) Need access to UpToDate data"),
            "{stderr}"
        );
        assert_eq!(node.drbdadm_ok(&["dstate", "data"]), "Outdated/DUnknown\n");
        node.sim_ok(&["sim-local-disk", "data", "--disk", "UpToDate"]);
        node.sim_ok(&["sim-peer", "data", "--connection", "Connected"]);

        node.drbdadm_ok(&["down", "data"]);
        assert!(!Path::new("/dev/drbd0").exists());
        assert!(node.sim_loops().is_empty());
        assert_eq!(node.metadata_start(), size);

        // Up again: the filesystem and its file are where they were.
        node.drbdadm_ok(&["up", "data"]);
        node.drbdadm_ok(&["primary", "data"]);
        ok("mount", &["/dev/drbd0", &mnt.to_string_lossy()]);
        let mount = MountGuard(mnt.clone());
        assert_eq!(
            fs::read_to_string(mnt.join("hello")).expect("file survives"),
            "persisted"
        );
        mount.unmount();
        node.drbdadm_ok(&["down", "data"]);
        assert!(node.sim_loops().is_empty());
        let _ = &node.work;
    });
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn events2_streams_what_drbdadm_does() {
    in_namespace("events2_streams_what_drbdadm_does", |work| {
        let node = Node::new(work);
        node.drbdadm_ok(&["create-md", "data"]);
        let _sim = SimGuard(&node);
        let mut child = node
            .command(&node.bin.join("drbdsetup"))
            .args(["events2", "--timestamps", "all"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("events2 starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let _child = ChildGuard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let wait_for = |lines: &mut Vec<String>, needle: &str| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !lines.iter().any(|l: &String| l.contains(needle)) {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => lines.push(line),
                    Err(_) => panic!("no {needle:?} from events2; got:\n{}", lines.join("\n")),
                }
            }
        };
        wait_for(&mut lines, "exists -");
        node.drbdadm_ok(&["up", "data"]);
        node.drbdadm_ok(&["primary", "data"]);
        wait_for(&mut lines, "change resource name:data role:Primary");
        node.drbdadm_ok(&["secondary", "data"]);
        node.sim_ok(&["sim-peer", "data", "--role", "Primary"]);
        wait_for(&mut lines, "conn-name:peer1 role:Primary");

        // A second stream started now sees the same state in its dump.
        let dump = node.sim_ok(&["events2", "--now", "data"]);
        let mut now = Events2State::new();
        for line in dump.lines() {
            if let Some(event) = parse_line(line).expect("dump parses") {
                now.apply(&event);
            }
        }
        let mut streamed = Events2State::new();
        for line in &lines {
            if let Some(event) = parse_line(line).expect("stream parses") {
                assert!(event.timestamp.is_some(), "{line}");
                streamed.apply(&event);
            }
        }
        assert_eq!(streamed.resources(), now.resources());
        assert!(streamed.resources()["data"].peer_primary());

        node.sim_ok(&["sim-peer", "data", "--role", "Secondary"]);
        node.drbdadm_ok(&["down", "data"]);
        wait_for(&mut lines, "destroy resource name:data");
    });
}

#[test]
fn a_failed_attach_leaves_no_loop_device() {
    in_namespace("a_failed_attach_leaves_no_loop_device", |work| {
        let node = Node::new(work);
        let _sim = SimGuard(&node);
        node.sim_ok(&["new-resource", "data", "0"]);
        node.sim_ok(&["new-minor", "data", "0", "0"]);
        // No metadata yet: DRBD's refusal, and nothing set up.
        let out = node.sim(&["attach", "0", &node.disk, &node.disk, "internal"]);
        assert_eq!(out.status.code(), Some(10));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .starts_with("0: Failure: (119) No valid meta-data signature found.")
        );
        assert!(node.sim_loops().is_empty());

        node.drbdadm_ok(&["create-md", "data"]);
        // The node cannot be made: the loop device set up before must go again.
        let blocker = work.join("not-a-dir");
        fs::write(&blocker, "").expect("file");
        let out = node
            .command(&node.bin.join("drbdsetup"))
            .env("CONVERGE_SIM_DEV_DIR", blocker.join("dev"))
            .args(["attach", "0", &node.disk, &node.disk, "internal"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(20));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not-a-dir"));
        assert!(node.sim_loops().is_empty());
        assert_eq!(node.sim_ok(&["dstate", "0"]), "Diskless\n");

        // Attached as Secondary (read-only), then detached: the loop device is free and
        // writable again for whoever gets it next.
        node.sim_ok(&["attach", "0", &node.disk, &node.disk, "internal"]);
        let loops = node.sim_loops();
        assert_eq!(loops.len(), 1);
        assert_eq!(getro(&loops[0]), "1");
        node.sim_ok(&["detach", "0"]);
        assert!(node.sim_loops().is_empty());
        assert_eq!(getro(&loops[0]), "0");
        node.sim_ok(&["down", "data"]);
    });
}

/// Both ways in, without root and without a disk: the symlink named `drbdsetup`, and
/// `converge sim drbdsetup --sim-dir DIR`.
#[test]
fn simulator_answers_under_both_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("drbdsetup");
    std::os::unix::fs::symlink(SIM, &link).expect("symlink");
    let state = dir.path().join("state");
    let via_link = |args: &[&str]| {
        Command::new(&link)
            .args(args)
            .env("CONVERGE_SIM_DIR", &state)
            .output()
            .expect("runs")
    };
    for args in [
        &["new-resource", "web", "0"][..],
        &["new-minor", "web", "3", "0"],
        &["new-peer", "web", "1", "--_name=beta"],
        &["connect", "web", "1"],
    ] {
        let out = via_link(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(SIM)
        .args(["drbdsetup", "--sim-dir"])
        .arg(&state)
        .args(["status", "--json", "web"])
        .env_remove("CONVERGE_SIM_DIR")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = drbdsetup_status::parse_json(&String::from_utf8_lossy(&out.stdout)).expect("json");
    assert_eq!(status["web"].devices[0].minor, 3);
    assert_eq!(status["web"].connections[0].name.as_deref(), Some("beta"));

    // No state directory at all is a usage error, not a crash.
    let out = Command::new(&link)
        .arg("status")
        .env_remove("CONVERGE_SIM_DIR")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(20));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONVERGE_SIM_DIR"));
    let out = via_link(&["primary", "nope"]);
    assert_eq!(out.status.code(), Some(10));
}
