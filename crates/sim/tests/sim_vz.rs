//! The OpenVZ simulator end to end: the converge binary run as `vzctl` and `vzlist` (symlinks
//! in a temp directory), one process per command, so every test also checks that the state
//! survives between runs. Every status line printed goes through converge's own parsers.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use converge_core::observe::ContainerState;
use converge_core::observe::vz::{parse_status, parse_vzlist};

/// The simulators' binary: `converge-sim TOOL …`, or run under a tool's name.
const SIM: &str = env!("CARGO_BIN_EXE_converge-sim");

struct Sim {
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Sim {
    fn new() -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("bin")).expect("mkdir bin");
        for tool in ["vzctl", "vzlist"] {
            symlink(SIM, dir.path().join("bin").join(tool)).expect("symlink");
        }
        Sim { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.path("bin").join(tool));
        cmd.args(args)
            .env("CONVERGE_SIM_DIR", self.state())
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> Out {
        output(self.command(tool, args))
    }

    /// Polls `vzctl status` until it prints `line` (a delay is timed by the simulator, never
    /// by the test), then checks it as `status` does.
    fn await_status(&self, ctid: &str, line: &str, state: ContainerState) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.vzctl(&["status", ctid]).stdout != format!("{line}\n") {
            assert!(Instant::now() < deadline, "never reached {line:?}");
            sleep(Duration::from_millis(50));
        }
        self.status(ctid, line, state);
    }

    fn vzctl(&self, args: &[&str]) -> Out {
        self.run("vzctl", args)
    }

    fn vzlist(&self, args: &[&str]) -> Out {
        self.run("vzlist", args)
    }

    /// A private area holding an app script `svc/etc/init.d/S10foo` that prints its argument
    /// and where it runs, and exits with the code in its second argument.
    fn private_area(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        let script = dir.join("svc/etc/init.d/S10foo");
        fs::create_dir_all(script.parent().unwrap()).unwrap();
        fs::write(
            &script,
            "#!/bin/sh\necho \"S10foo $1 in $(pwd)\"\necho \"S10foo err\" >&2\nexit ${2:-0}\n",
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    /// sim-create with a populated private area; returns the area.
    fn create(&self, ctid: &str, extra: &[&str]) -> PathBuf {
        let dir = self.private_area(&format!("ct{ctid}"));
        let mut args = vec!["sim-create", ctid, "--private", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        ok(&self.vzctl(&args));
        dir
    }

    /// `vzctl status`: the exact line, and what converge's parser makes of it.
    fn status(&self, ctid: &str, line: &str, state: ContainerState) {
        let out = self.vzctl(&["status", ctid]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout, format!("{line}\n"));
        assert_eq!(out.stderr, "");
        let parsed = parse_status(&out.stdout).expect("converge parses vzctl status");
        assert_eq!(parsed.state(), state, "{line}");
    }

    /// `vzlist -a -H -o ctid,status`, checked by converge's parser.
    fn list(&self, expected: &str) {
        let out = self.vzlist(&["-a", "-H", "-o", "ctid,status"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout, expected);
        parse_vzlist(&out.stdout).expect("converge parses vzlist");
    }
}

fn output(mut cmd: Command) -> Out {
    let o = cmd.output().expect("run the simulator");
    Out {
        code: o.status.code().expect("exit code"),
        stdout: String::from_utf8(o.stdout).expect("utf-8"),
        stderr: String::from_utf8(o.stderr).expect("utf-8"),
    }
}

fn ok(out: &Out) {
    assert_eq!(out.code, 0, "{out:?}");
}

fn fails(out: &Out, code: i32, stderr: &str) {
    assert_eq!(out.code, code, "{out:?}");
    assert_eq!(out.stderr, stderr, "{out:?}");
}

const STARTED: &str = "Starting container...\nContainer is mounted\n\
                       Setting CPU units: 1000\nContainer start in progress...\n";
const STOPPED: &str = "Stopping container ...\nContainer was stopped\nContainer is unmounted\n";

#[test]
fn nothing_defined() {
    let sim = Sim::new();
    sim.status(
        "101",
        "CTID 101 deleted unmounted down",
        ContainerState::Absent,
    );
    let out = sim.vzlist(&["-a", "-H", "-o", "ctid,status"]);
    fails(&out, 0, "Container(s) not found\n");
    assert_eq!(out.stdout, "");
    assert!(parse_vzlist(&out.stdout).unwrap().is_empty());
    // Asked for by id, it is an error.
    fails(&sim.vzlist(&["-H", "101"]), 1, "Container(s) not found\n");
    let no_config = "Container config file does not exist\n";
    for cmd in ["start", "stop", "mount", "umount", "destroy", "restart"] {
        fails(&sim.vzctl(&[cmd, "101"]), 14, no_config);
    }
    fails(&sim.vzctl(&["exec", "101", "true"]), 14, no_config);
    fails(&sim.vzctl(&["sim-kill", "101"]), 14, no_config);
}

#[test]
fn lifecycle() {
    let sim = Sim::new();
    sim.create("101", &[]);
    sim.status(
        "101",
        "CTID 101 exist unmounted down",
        ContainerState::Stopped,
    );
    sim.list("       101 stopped\n");

    let out = sim.vzctl(&["start", "101"]);
    ok(&out);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), (STARTED, ""));
    sim.status(
        "101",
        "CTID 101 exist mounted running",
        ContainerState::Running,
    );
    sim.list("       101 running\n");
    ok(&sim.vzctl(&["exec", "101", "/bin/true"]));

    let again = sim.vzctl(&["start", "101"]);
    fails(&again, 32, "Container is already running\n");
    assert_eq!(again.stdout, "");

    let out = sim.vzctl(&["stop", "101"]);
    ok(&out);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), (STOPPED, ""));
    sim.status(
        "101",
        "CTID 101 exist unmounted down",
        ContainerState::Stopped,
    );
    // vzctl 4.x: stopping a stopped container only complains.
    fails(
        &sim.vzctl(&["stop", "101"]),
        0,
        "Unable to stop: container is not running\n",
    );

    let out = sim.vzctl(&["destroy", "101"]);
    ok(&out);
    assert_eq!(
        out.stdout,
        format!(
            "Destroying container private area: {}\nContainer private area was destroyed\n",
            sim.path("ct101").display()
        )
    );
    assert!(sim.path("ct101/svc").exists(), "the data is left alone");
    sim.status(
        "101",
        "CTID 101 deleted unmounted down",
        ContainerState::Absent,
    );
}

/// /var/run is a tmpfs in a container: what an app left there (a pid or state file that its
/// check reads) is gone at the next start, even when no stop script removed it.
#[test]
fn each_start_finds_var_run_empty() {
    let sim = Sim::new();
    let area = sim.create("101", &[]);
    fs::create_dir_all(area.join("var/run/sub")).expect("mkdir");
    fs::write(area.join("var/run/foo"), "left over\n").expect("write");
    fs::write(area.join("var/run/sub/x"), "x\n").expect("write");
    fs::write(area.join("kept"), "data\n").expect("write");
    ok(&sim.vzctl(&["start", "101"]));
    assert_eq!(
        fs::read_dir(area.join("var/run")).expect("var/run").count(),
        0
    );
    assert!(area.join("kept").exists(), "only /var/run is a tmpfs");
    // Written while it runs, it stays until the next start (or restart).
    fs::write(area.join("var/run/foo"), "running\n").expect("write");
    ok(&sim.vzctl(&["stop", "101"]));
    assert!(area.join("var/run/foo").exists());
    ok(&sim.vzctl(&["restart", "101"]));
    assert!(!area.join("var/run/foo").exists());
    // A start that fails leaves it alone, and so does one refused because it runs.
    fs::write(area.join("var/run/foo"), "running\n").expect("write");
    fails(
        &sim.vzctl(&["start", "101"]),
        32,
        "Container is already running\n",
    );
    assert!(area.join("var/run/foo").exists());
    // A symlinked /var/run (to /run) is not followed.
    ok(&sim.vzctl(&["stop", "101"]));
    let elsewhere = sim.path("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    fs::write(elsewhere.join("keep"), "keep\n").expect("write");
    fs::remove_dir_all(area.join("var/run")).expect("rm");
    symlink(&elsewhere, area.join("var/run")).expect("symlink");
    ok(&sim.vzctl(&["start", "101"]));
    assert!(elsewhere.join("keep").exists());
}

/// A power cut of the node: no kernel keeps a container, so after it every container is down
/// and unmounted, whatever its record said.
#[test]
fn a_power_cut_leaves_every_container_down_and_unmounted() {
    let sim = Sim::new();
    sim.create("101", &[]);
    sim.create("102", &[]);
    sim.create("103", &[]);
    ok(&sim.vzctl(&["start", "101"]));
    ok(&sim.vzctl(&["mount", "102"]));
    let cut = converge_sim::vz::power_cut(&sim.state()).expect("power cut");
    assert_eq!(cut, [101, 102]);
    sim.list("       101 stopped\n       102 stopped\n       103 stopped\n");
    sim.status(
        "101",
        "CTID 101 exist unmounted down",
        ContainerState::Stopped,
    );
    assert_eq!(
        converge_sim::vz::power_cut(&sim.state()).expect("again"),
        Vec::<u32>::new()
    );
}

#[test]
fn the_private_area_decides_existence_and_start() {
    let sim = Sim::new();
    let dir = sim.path("mnt/ct101");
    ok(&sim.vzctl(&["sim-create", "101", "--private", dir.to_str().unwrap()]));
    // Filesystem not mounted: vzctl sees no container, vzlist hides it.
    sim.status(
        "101",
        "CTID 101 deleted unmounted down",
        ContainerState::Absent,
    );
    let out = sim.vzlist(&["-a", "-H", "-o", "ctid,status"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "")
    );
    let start = sim.vzctl(&["start", "101"]);
    fails(
        &start,
        43,
        &format!("Container private area {} does not exist\n", dir.display()),
    );
    assert_eq!(start.stdout, "");
    fails(
        &sim.vzctl(&["mount", "101"]),
        43,
        &format!("Container private area {} does not exist\n", dir.display()),
    );

    // Mounted but empty: there is no init to start.
    fs::create_dir_all(&dir).unwrap();
    sim.status(
        "101",
        "CTID 101 exist unmounted down",
        ContainerState::Stopped,
    );
    let out = sim.vzctl(&["start", "101"]);
    assert_eq!(out.code, 47);
    assert_eq!(
        out.stdout,
        "Starting container...\nContainer is mounted\nSetting CPU units: 1000\nContainer is unmounted\n"
    );
    assert_eq!(
        out.stderr,
        "Unable to start init, probably incorrect template\nContainer start failed\n"
    );
    sim.status(
        "101",
        "CTID 101 exist unmounted down",
        ContainerState::Stopped,
    );

    fs::write(dir.join("marker"), "x").unwrap();
    ok(&sim.vzctl(&["start", "101"]));
    sim.status(
        "101",
        "CTID 101 exist mounted running",
        ContainerState::Running,
    );
}

#[test]
fn fail_start_until_repaired() {
    let sim = Sim::new();
    sim.create("101", &["--fail-start"]);
    for _ in 0..2 {
        let out = sim.vzctl(&["start", "101"]);
        assert_eq!(out.code, 47, "{out:?}");
        assert!(out.stderr.ends_with("Container start failed\n"), "{out:?}");
        sim.status(
            "101",
            "CTID 101 exist unmounted down",
            ContainerState::Stopped,
        );
    }
    ok(&sim.vzctl(&["sim-set", "101", "--no-fail-start"]));
    ok(&sim.vzctl(&["start", "101"]));
    sim.status(
        "101",
        "CTID 101 exist mounted running",
        ContainerState::Running,
    );
}

#[test]
fn start_delay_then_up_and_operational() {
    // The delay is long next to what the checks below take, so a loaded machine cannot make
    // the container come up before they ran; then the status is polled, never timed.
    let sim = Sim::new();
    sim.create("101", &["--start-delay", "3s"]);
    let began = Instant::now();
    let out = sim.vzctl(&["start", "101"]);
    ok(&out);
    assert_eq!(out.stdout, STARTED);
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "start returns before the delay ends"
    );
    sim.status(
        "101",
        "CTID 101 exist mounted down",
        ContainerState::Mounted,
    );
    sim.list("       101 mounted\n");
    // Not operational yet: `exec` folds the error into 8, `exec2` keeps VZ_VE_NOT_RUNNING.
    fails(
        &sim.vzctl(&["exec", "101", "/bin/true"]),
        8,
        "Container is not running\n",
    );
    fails(
        &sim.vzctl(&["exec2", "101", "/bin/true"]),
        31,
        "Container is not running\n",
    );
    sim.await_status(
        "101",
        "CTID 101 exist mounted running",
        ContainerState::Running,
    );
    ok(&sim.vzctl(&["exec", "101", "/bin/true"]));
}

#[test]
fn start_wait_blocks_until_init_is_up() {
    let sim = Sim::new();
    sim.create("101", &["--start-delay", "250ms"]);
    let began = Instant::now();
    let out = sim.vzctl(&["start", "101", "--wait"]);
    ok(&out);
    assert!(began.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        out.stdout,
        "Starting container...\nContainer is mounted\nSetting CPU units: 1000\n\
         Container start in progress, waiting ...\nContainer started successfully\n"
    );
    sim.status(
        "101",
        "CTID 101 exist mounted running",
        ContainerState::Running,
    );
}

#[test]
fn stop_delay_then_down() {
    // As for the start delay: long enough that the checks run inside it, then polled.
    let sim = Sim::new();
    sim.create("101", &["--stop-delay", "3s"]);
    ok(&sim.vzctl(&["start", "101"]));
    let out = sim.vzctl(&["stop", "101"]);
    ok(&out);
    assert_eq!(out.stdout, "Stopping container ...\n");
    sim.status(
        "101",
        "CTID 101 exist mounted running",
        ContainerState::Running,
    );
    // Still running while it shuts down: exec works, start refuses.
    ok(&sim.vzctl(&["exec", "101", "/bin/true"]));
    fails(
        &sim.vzctl(&["start", "101"]),
        32,
        "Container is already running\n",
    );
    sim.await_status(
        "101",
        "CTID 101 exist unmounted down",
        ContainerState::Stopped,
    );
    sim.list("       101 stopped\n");
}

#[test]
fn stop_options() {
    let sim = Sim::new();
    sim.create("101", &["--stop-delay", "10s"]);
    ok(&sim.vzctl(&["start", "101"]));
    let out = sim.vzctl(&["stop", "101", "--fast", "--skip-umount"]);
    ok(&out);
    assert_eq!(out.stdout, "Killing container ...\nContainer was stopped\n");
    sim.status(
        "101",
        "CTID 101 exist mounted down",
        ContainerState::Mounted,
    );
    // A mounted container is unmounted on the way to starting again.
    let out = sim.vzctl(&["start", "101"]);
    ok(&out);
    assert_eq!(
        out.stdout,
        "Starting container...\nContainer is unmounted\nContainer is mounted\n\
         Setting CPU units: 1000\nContainer start in progress...\n"
    );
    fails(
        &sim.vzctl(&["stop", "101", "--wait"]),
        20,
        "Option --wait is not applicable to stop command\n",
    );
}

#[test]
fn restart() {
    let sim = Sim::new();
    sim.create("101", &["--stop-delay", "10s"]);
    ok(&sim.vzctl(&["start", "101"]));
    let out = sim.vzctl(&["restart", "101"]);
    ok(&out);
    assert_eq!(
        out.stdout,
        format!("Restarting container\n{STOPPED}{STARTED}")
    );
    sim.status(
        "101",
        "CTID 101 exist mounted running",
        ContainerState::Running,
    );
}

#[test]
fn mount_umount_destroy_refusals() {
    let sim = Sim::new();
    sim.create("101", &[]);
    fails(&sim.vzctl(&["umount", "101"]), 40, "CT is not mounted\n");
    let out = sim.vzctl(&["mount", "101"]);
    ok(&out);
    assert_eq!(out.stdout, "Container is mounted\n");
    sim.status(
        "101",
        "CTID 101 exist mounted down",
        ContainerState::Mounted,
    );
    sim.list("       101 mounted\n");
    fails(
        &sim.vzctl(&["mount", "101"]),
        0,
        "Container is already mounted\n",
    );
    let out = sim.vzctl(&["destroy", "101"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (41, "Container is currently mounted (umount first)\n")
    );
    ok(&sim.vzctl(&["start", "101"]));
    fails(
        &sim.vzctl(&["umount", "101"]),
        32,
        "Container is running -- stop it first\n",
    );
    let out = sim.vzctl(&["destroy", "101"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (32, "Container is currently running. Stop it first.\n")
    );
    ok(&sim.vzctl(&["stop", "101", "--skip-umount"]));
    let out = sim.vzctl(&["umount", "101"]);
    ok(&out);
    assert_eq!(out.stdout, "Container is unmounted\n");
}

#[test]
fn exec_on_the_host_runs_the_private_areas_script() {
    let sim = Sim::new();
    let dir = sim.create("101", &[]);
    ok(&sim.vzctl(&["start", "101"]));
    let script = "/svc/etc/init.d/S10foo";
    let out = sim.vzctl(&["exec2", "101", script, "start"]);
    ok(&out);
    // Run in the private area, which plays the container's root.
    assert_eq!(out.stdout, format!("S10foo start in {}\n", dir.display()));
    assert_eq!(out.stderr, "S10foo err\n");
    let out = sim.vzctl(&["exec2", "101", script, "status", "3"]);
    assert_eq!(out.code, 3);
    // Plain exec reports any failure as 8, as vzctl 4.x does.
    assert_eq!(sim.vzctl(&["exec", "101", script, "status", "3"]).code, 8);
    assert_eq!(sim.vzctl(&["exec3", "101", script, "status", "4"]).code, 4);
    // The arguments become one shell command line.
    let out = sim.vzctl(&["exec2", "101", "echo", "a   b;", "echo", "$((6*7))"]);
    assert_eq!(out.stdout, "a b\n42\n");
    // stdin is the caller's.
    let mut cmd = sim.command("vzctl", &["exec2", "101", "cat"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through stdin\n");
    // A signal is vzctl's VZ_SYSTEM_ERROR.
    fails(
        &sim.vzctl(&["exec2", "101", "kill", "-9", "$$"]),
        3,
        "Got signal 9\n",
    );
}

/// A static busybox: a dynamic one would find no libraries inside a bare chroot.
fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .find(|p| {
            Command::new("ldd").arg(p).output().is_ok_and(|o| {
                let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
                text.contains("not a dynamic executable") || text.contains("statically linked")
            })
        })
}

#[test]
fn exec_chroots_into_a_private_area_with_a_shell() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let Some(busybox) = busybox() else {
        eprintln!("skipped: no static busybox (apt-get install busybox-static)");
        return;
    };
    let sim = Sim::new();
    let dir = sim.private_area("ct101");
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(&busybox, dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "pwd"] {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    ok(&sim.vzctl(&["sim-create", "101", "--private", dir.to_str().unwrap()]));
    ok(&sim.vzctl(&["start", "101"]));
    let out = sim.vzctl(&["exec2", "101", "/svc/etc/init.d/S10foo", "start", "5"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert_eq!(out.stdout, "S10foo start in /\n");
    let out = sim.vzctl(&["exec2", "101", "ls", "/;", "echo", "$PATH", "$HOME"]);
    ok(&out);
    assert_eq!(
        out.stdout,
        "bin\nsvc\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /\n"
    );
    ok(&sim.vzctl(&["exec3", "101", "pwd"]));
}

#[test]
fn sim_kill_behind_converges_back() {
    let sim = Sim::new();
    sim.create("101", &[]);
    sim.create("102", &[]);
    ok(&sim.vzctl(&["start", "101"]));
    ok(&sim.vzctl(&["start", "102"]));
    ok(&sim.vzctl(&["sim-kill", "101"]));
    sim.status(
        "101",
        "CTID 101 exist mounted down",
        ContainerState::Mounted,
    );
    ok(&sim.vzctl(&["sim-kill", "102", "--unmount"]));
    sim.status(
        "102",
        "CTID 102 exist unmounted down",
        ContainerState::Stopped,
    );
    sim.list("       101 mounted\n       102 stopped\n");
    fails(
        &sim.vzctl(&["exec", "101", "true"]),
        8,
        "Container is not running\n",
    );
    fails(
        &sim.vzctl(&["sim-kill", "102"]),
        0,
        "vzctl sim-kill: container 102 is not running; nothing to kill\n",
    );
}

#[test]
fn vzlist_formats() {
    let sim = Sim::new();
    sim.create("7", &[]);
    sim.create("101", &[]);
    sim.create("1000000", &[]);
    ok(&sim.vzctl(&["start", "101"]));
    sim.list("         7 stopped\n       101 running\n   1000000 stopped\n");
    let map = parse_vzlist(&sim.vzlist(&["-aH", "-octid,status"]).stdout).unwrap();
    assert_eq!(map["101"], ContainerState::Running);
    assert_eq!(map["7"], ContainerState::Stopped);

    let out = sim.vzlist(&[]);
    ok(&out);
    assert_eq!(
        out.stdout,
        "      CTID      NPROC STATUS    IP_ADDR         HOSTNAME\n       101          - running   -               -\n"
    );
    assert_eq!(sim.vzlist(&["-H", "-o", "ctid"]).stdout, "       101\n");
    assert_eq!(sim.vzlist(&["-1"]).stdout, "       101\n");
    assert_eq!(
        sim.vzlist(&["-S", "-H", "--output=ctid,status"]).stdout,
        "         7 stopped\n   1000000 stopped\n"
    );
    assert_eq!(
        sim.vzlist(&["-H", "-o", "ctid,status", "7"]).stdout,
        "         7 stopped\n"
    );
    assert_eq!(
        sim.vzlist(&["-a", "-o", "ctid,private", "101"]).stdout,
        format!(
            "      CTID PRIVATE\n       101 {}\n",
            sim.path("ct101").display()
        )
    );
    fails(
        &sim.vzlist(&["-o", "ctid,bogus"]),
        1,
        "Unknown field: bogus\n",
    );
    let out = sim.vzlist(&["-x"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "vzlist: invalid option -- 'x'\n");
    assert!(out.stdout.starts_with("Usage:"));
    assert_eq!(
        sim.vzlist(&["--bogus"]).stderr,
        "vzlist: unrecognized option '--bogus'\n"
    );
    fails(&sim.vzlist(&["-a", "abc"]), 1, "CT ID abc is invalid.\n");
    fails(
        &sim.vzlist(&["-j"]),
        1,
        "vzlist (converge sim): option -j is not simulated\n",
    );
}

#[test]
fn usage_errors() {
    let sim = Sim::new();
    sim.create("101", &[]);
    let out = sim.vzctl(&[]);
    assert_eq!(out.code, 20);
    assert!(
        out.stderr
            .contains("Usage: vzctl [options] <command> <ctid>")
    );
    let help = sim.vzctl(&["--help"]);
    assert_eq!(help.code, 0);
    assert!(
        help.stdout
            .contains("vzctl sim-create <ctid> --private <dir>")
    );
    assert!(
        sim.vzctl(&["--version"])
            .stdout
            .starts_with("vzctl version 4")
    );
    fails(
        &sim.vzctl(&["frobnicate", "101"]),
        20,
        "Bad command: frobnicate\n",
    );
    fails(
        &sim.vzctl(&["set", "101", "--onboot", "yes"]),
        20,
        "vzctl (converge sim): command \"set\" is not simulated\n",
    );
    fails(&sim.vzctl(&["start"]), 21, "CT ID missing\n");
    fails(&sim.vzctl(&["start", "abc"]), 21, "Bad CT ID abc\n");
    fails(&sim.vzctl(&["start", "-5"]), 21, "Bad CT ID -5\n");
    fails(
        &sim.vzctl(&["start", "0"]),
        21,
        "Only set actions are allowed for CT0\n",
    );
    fails(
        &sim.vzctl(&["start", "101", "--bogus"]),
        20,
        "vzctl: unrecognized option '--bogus'\n",
    );
    fails(
        &sim.vzctl(&["status", "101", "x", "y"]),
        20,
        "Invalid options: x y \n",
    );
    fails(
        &sim.vzctl(&["exec", "101"]),
        20,
        "No command line given for exec\n",
    );
    fails(
        &sim.vzctl(&["sim-create", "102"]),
        20,
        "vzctl sim-create: --private DIR is required\n",
    );
    let out = sim.vzctl(&[
        "sim-create",
        "102",
        "--private",
        "/x",
        "--start-delay",
        "soon",
    ]);
    assert_eq!(out.code, 21, "{out:?}");
    assert!(
        out.stderr
            .starts_with("vzctl sim-create: bad --start-delay \"soon\"")
    );
    let out = sim.vzctl(&["sim-create", "101", "--private", "/x"]);
    assert_eq!(out.code, 44, "{out:?}");
    // --quiet silences vzctl's own messages, not the status line.
    let out = sim.vzctl(&["--quiet", "start", "101"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "")
    );
}

#[test]
fn environment_and_state_problems() {
    let sim = Sim::new();
    let mut cmd = sim.command("vzctl", &["status", "101"]);
    cmd.env_remove("CONVERGE_SIM_DIR");
    let out = output(cmd);
    assert_eq!(out.code, 10);
    assert!(
        out.stderr.contains("CONVERGE_SIM_DIR is not set"),
        "{out:?}"
    );

    sim.create("101", &[]);
    let record = sim.state().join("vz/101.json");
    assert!(record.exists());
    fs::write(&record, "{ not json").unwrap();
    let out = sim.vzctl(&["status", "101"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains(&format!("{} is not a container record", record.display())),
        "{out:?}"
    );
}

#[test]
fn both_entry_points_share_the_state() {
    let sim = Sim::new();
    sim.create("101", &[]);
    let mut cmd = Command::new(SIM);
    cmd.args(["vzctl", "start", "101"])
        .env("CONVERGE_SIM_DIR", sim.state());
    let out = output(cmd);
    assert_eq!((out.code, out.stdout.as_str()), (0, STARTED));
    sim.status(
        "101",
        "CTID 101 exist mounted running",
        ContainerState::Running,
    );
    let mut cmd = Command::new(SIM);
    cmd.args(["vzlist", "-a", "-H", "-o", "ctid,status"])
        .env("CONVERGE_SIM_DIR", sim.state());
    assert_eq!(output(cmd).stdout, "       101 running\n");
}

#[test]
fn concurrent_commands_keep_every_record() {
    let sim = Sim::new();
    let ids: Vec<String> = (301..309).map(|n| n.to_string()).collect();
    for id in &ids {
        sim.private_area(&format!("ct{id}"));
    }
    let children: Vec<_> = ids
        .iter()
        .map(|id| {
            let dir = sim.path(&format!("ct{id}"));
            let script = format!(
                "{vzctl} sim-create {id} --private {dir} && {vzctl} start {id} >/dev/null",
                vzctl = sim.path("bin/vzctl").display(),
                dir = dir.display()
            );
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", &script])
                .env("CONVERGE_SIM_DIR", sim.state());
            cmd.spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let expected: String = ids.iter().map(|id| format!("{id:>10} running\n")).collect();
    sim.list(&expected);
}
