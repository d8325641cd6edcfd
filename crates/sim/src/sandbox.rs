//! A simulated node for the demo and the tests on real parts: real `drbdadm` and `drbdmeta`,
//! the DRBD simulator, a real loop-backed ext3 filesystem, a container on that filesystem —
//! a simulated OpenVZ one ([`Sandbox::create`]) or a real LXC busybox one
//! ([`Sandbox::create_lxc`]) — and the seed service's manifest pointing at all of it.
//!
//! An LXC container's configuration lives where `lxc-start -n NAME` finds it, in the host's
//! lxcpath (/var/lib/lxc), outside every namespace: [`Sandbox::teardown`] destroys it, and so
//! must whoever created the sandbox if the process died first ([`destroy_lxc`]).
//!
//! [`Sandbox::create`] must run in a private mount namespace (`unshare -m --propagation
//! private`): it mounts a private /dev (so `/dev/drbd0` exists without touching the host's)
//! and binds its own /etc/drbd.conf. Everything it mounts dies with the namespace; loop devices
//! do not, so [`detach_loops_under`] cleans up from outside, whatever happened inside.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("sandbox: {step}: {detail}")]
    Step { step: String, detail: String },
    #[error("sandbox: {step}: {source}")]
    Io {
        step: String,
        source: std::io::Error,
    },
}

fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let step = step.into();
    move |source| SandboxError::Io { step, source }
}

/// The programs the sandbox needs, for a clear "install X" before anything is touched.
pub const REQUIRED_PROGRAMS: &[(&str, &str)] = &[
    ("drbdadm", "drbd-utils"),
    ("drbdmeta", "drbd-utils"),
    ("losetup", "util-linux"),
    ("blockdev", "util-linux"),
    ("unshare", "util-linux"),
    ("mount", "mount"),
    ("mkfs.ext3", "e2fsprogs"),
    ("e2fsck", "e2fsprogs"),
    ("mknod", "coreutils"),
];

pub fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// What the LXC variant needs on top of [`REQUIRED_PROGRAMS`].
pub const LXC_PROGRAMS: &[(&str, &str)] = &[
    ("lxc-create", "lxc"),
    ("lxc-start", "lxc"),
    ("lxc-stop", "lxc"),
    ("lxc-info", "lxc"),
    ("lxc-attach", "lxc"),
    ("lxc-ls", "lxc"),
    ("lxc-destroy", "lxc"),
    ("lxc-config", "lxc"),
    ("lxc-freeze", "lxc"),
    ("lxc-unfreeze", "lxc"),
    ("busybox", "busybox-static"),
];

/// The LXC template the sandbox's container is made from (works offline).
pub const LXC_TEMPLATE: &str = "/usr/share/lxc/templates/lxc-busybox";

/// Missing programs, as "program (package)".
pub fn missing_programs() -> Vec<String> {
    missing(REQUIRED_PROGRAMS)
}

/// What the LXC variant lacks (programs and the busybox template), as "program (package)".
pub fn missing_lxc_programs() -> Vec<String> {
    let mut missing = missing(LXC_PROGRAMS);
    if !Path::new(LXC_TEMPLATE).is_file() {
        missing.push(format!("{LXC_TEMPLATE} (package lxc-templates or lxc)"));
    }
    missing
}

fn missing(programs: &[(&str, &str)]) -> Vec<String> {
    programs
        .iter()
        .filter(|(program, _)| !in_path(program))
        .map(|(program, package)| format!("{program} (package {package})"))
        .collect()
}

/// Runs a program to completion; its failure names the step and shows its stderr.
pub fn run(
    step: &str,
    program: &str,
    args: &[&str],
    env: &[(&str, &Path)],
    path: Option<&Path>,
) -> Result<String, SandboxError> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(bin) = path {
        command.env("PATH", path_with(bin));
    }
    let out = command.output().map_err(io(format!("{step}: {program}")))?;
    if !out.status.success() {
        let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("modinfo"))
            .map(str::to_string)
            .collect();
        return Err(SandboxError::Step {
            step: step.to_string(),
            detail: format!(
                "{program} {} exited {}: {}",
                args.join(" "),
                out.status,
                stderr.join(" / ")
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `bin` first, then the current PATH: drbdmeta finds `drbdsetup` through PATH.
pub fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut paths = vec![bin.to_path_buf()];
    if let Some(current) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&current));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// Mounts a tmpfs over /dev holding what the tools need (null, zero, random, tty, the loop
/// devices and 64 spare loop nodes, pts/ptmx for LXC consoles). Only in a private namespace.
pub fn private_dev(work: &Path) -> Result<(), SandboxError> {
    let dev = work.join("devfs");
    populate_devfs(&dev)?;
    run(
        "private /dev",
        "mount",
        &["--move", &dev.to_string_lossy(), "/dev"],
        &[],
        None,
    )?;
    Ok(())
}

/// Mounts a tmpfs on `dev` (created when missing) and fills it as [`private_dev`] describes,
/// ready to be moved over a namespace's /dev.
pub fn populate_devfs(dev: &Path) -> Result<(), SandboxError> {
    fs::create_dir_all(dev).map_err(io("create the private /dev"))?;
    let dev_s = dev.to_string_lossy().into_owned();
    run(
        "private /dev",
        "mount",
        &["-t", "tmpfs", "-o", "mode=755", "tmpfs", &dev_s],
        &[],
        None,
    )?;
    let mut nodes: Vec<String> = [
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "tty",
        "loop-control",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut highest = 0u32;
    for entry in fs::read_dir("/dev").map_err(io("read /dev"))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("loop")
            .and_then(|n| n.parse::<u32>().ok())
        {
            highest = highest.max(n);
            nodes.push(name);
        }
    }
    for name in nodes {
        let Ok(meta) = fs::metadata(Path::new("/dev").join(&name)) else {
            continue;
        };
        let kind = if meta.file_type().is_block_device() {
            "b"
        } else {
            "c"
        };
        let (major, minor) = (
            libc::major(meta.rdev()).to_string(),
            libc::minor(meta.rdev()).to_string(),
        );
        run(
            "private /dev",
            "mknod",
            &[&dev.join(&name).to_string_lossy(), kind, &major, &minor],
            &[],
            None,
        )?;
    }
    // Loop devices the kernel creates later get no node here unless made now.
    for n in highest + 1..highest + 64 {
        let node = dev.join(format!("loop{n}"));
        run(
            "private /dev",
            "mknod",
            &[&node.to_string_lossy(), "b", "7", &n.to_string()],
            &[],
            None,
        )?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(link)).map_err(io("private /dev links"))?;
    }
    let pts = dev.join("pts");
    fs::create_dir_all(&pts).map_err(io("private /dev/pts"))?;
    run(
        "private /dev/pts",
        "mount",
        &[
            "-t",
            "devpts",
            "-o",
            "newinstance,ptmxmode=0666",
            "devpts",
            &pts.to_string_lossy(),
        ],
        &[],
        None,
    )?;
    symlink("pts/ptmx", dev.join("ptmx")).map_err(io("private /dev/ptmx"))?;
    Ok(())
}

/// One `on HOST` section of the seed's resource file: its node id is its place in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResHost {
    pub name: String,
    /// `127.0.0.N`: on the node's loopback (its own network namespace in a world).
    pub address: String,
    /// `disk none;` in its section: a diskless client (a quorum tiebreaker), which drbdadm
    /// brings up with `new-minor … --diskless` and which its peers keep no bitmap for.
    pub diskless: bool,
}

/// The seed resource ([`RESOURCE`], minor 0 on `disk` with internal metadata), one `on`
/// section per host (a diskless host's overrides the disk with `disk none`, as drbd.conf(5)
/// has it); three or more hosts are joined by a connection mesh, as DRBD 9 needs.
pub fn drbd_res(disk: &str, hosts: &[ResHost], options: Option<&str>) -> String {
    let mut text = format!("resource {RESOURCE} {{\n");
    if let Some(options) = options {
        text.push_str(&format!("  options {{ {options} }}\n"));
    }
    text.push_str(&format!(
        "  device /dev/drbd0;\n  disk {disk};\n  meta-disk internal;\n"
    ));
    for (id, host) in hosts.iter().enumerate() {
        let disk = if host.diskless { " disk none;" } else { "" };
        text.push_str(&format!(
            "  on {} {{ node-id {id}; address {}:7789;{disk} }}\n",
            host.name, host.address
        ));
    }
    if hosts.len() > 2 {
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        text.push_str(&format!(
            "  connection-mesh {{ hosts {}; }}\n",
            names.join(" ")
        ));
    }
    text.push_str("}\n");
    text
}

/// Where converge keeps and finds things on one simulated node.
pub struct NodePaths<'a> {
    pub manifests: &'a Path,
    pub state_dir: &'a Path,
    pub log_dir: &'a Path,
    /// The DRBD simulator's /proc/drbd stand-in for this node.
    pub proc_drbd: &'a Path,
}

/// converge's node configuration for a simulated node named `host`.
pub fn node_config(host: &str, paths: &NodePaths<'_>) -> String {
    format!(
        "node: {host}\nmanifests: {m}\nstate_dir: {s}\nlog_dir: {l}\nproc_drbd: {p}\n",
        m = paths.manifests.display(),
        s = paths.state_dir.display(),
        l = paths.log_dir.display(),
        p = paths.proc_drbd.display(),
    )
}

/// Runs a step's program where the node is: `(step, program, args)` → stdout.
pub type Runner<'a> = dyn Fn(&str, &str, &[&str]) -> Result<String, SandboxError> + 'a;

/// Makes the seed service's data on the node that `run` reaches, whose `drbdadm` is given by
/// `drbdadm_args` (its leading arguments): DRBD metadata first (drbdmeta refuses, without a
/// TTY, a disk that holds a filesystem), up, promote, ext3 on /dev/drbd0, mounted on `mnt`
/// while `fill` puts the container's files there, then unmounted, demoted and down again.
/// What `fill` returns (a guard, say) is dropped if a later step fails.
pub fn seed_data<T>(
    run: &Runner<'_>,
    drbdadm_args: &[&str],
    mnt: &Path,
    fill: impl FnOnce() -> Result<T, SandboxError>,
) -> Result<T, SandboxError> {
    let drbdadm = |step: &str, args: &[&str]| {
        let mut all = drbdadm_args.to_vec();
        all.extend_from_slice(args);
        run(step, "drbdadm", &all)
    };
    drbdadm("create DRBD metadata", &["create-md", RESOURCE])?;
    drbdadm("bring DRBD up", &["up", RESOURCE])?;
    drbdadm("promote", &["primary", RESOURCE])?;
    run(
        "make the filesystem",
        "mkfs.ext3",
        &["-q", "-F", "/dev/drbd0"],
    )?;
    fs::create_dir_all(mnt).map_err(io("create the mount point"))?;
    let mnt_s = mnt.to_string_lossy();
    run("mount the filesystem", "mount", &["/dev/drbd0", &mnt_s])?;
    let filled = fill();
    let unmounted = run("unmount the filesystem", "umount", &[&mnt_s]);
    let filled = filled?;
    unmounted?;
    drbdadm("demote", &["secondary", RESOURCE])?;
    drbdadm("take DRBD down", &["down", RESOURCE])?;
    Ok(filled)
}

/// Detaches every loop device backed by a file under `dir`, and the loop devices stacked on
/// those (the DRBD simulator's). Read-only is cleared first: it outlives `losetup -d` and would
/// hit the next user of that loop number. Returns the stacked ones (the simulator's), which a
/// clean run leaves none of.
pub fn detach_loops_under(dir: &Path) -> Vec<String> {
    let loops = loop_devices();
    let dir = dir.to_string_lossy().into_owned();
    let ours: Vec<String> = loops
        .iter()
        .filter(|(_, b)| b.starts_with(&dir))
        .map(|(n, _)| n.clone())
        .collect();
    let stacked: Vec<String> = ours.iter().flat_map(|n| stacked_in(&loops, n)).collect();
    for name in stacked.iter().chain(&ours) {
        let _ = Command::new("blockdev")
            .args(["--setrw", name])
            .stdin(Stdio::null())
            .status();
        let _ = Command::new("losetup")
            .args(["-d", name])
            .stdin(Stdio::null())
            .status();
    }
    stacked
}

/// The loop devices set up over the block device `dev` (the DRBD simulator's, over a backing
/// disk), whichever mount namespace set them up.
pub fn loops_over(dev: &str) -> Vec<String> {
    stacked_in(&loop_devices(), dev)
}

/// Of `loops`, those over `dev`. Seen from outside the namespace that set it up, a loop
/// device over a node of a private /dev shows that node as `/loopN`: they are matched by
/// name (`losetup --associated` compares inodes, and the private node is another inode).
fn stacked_in(loops: &[(String, String)], dev: &str) -> Vec<String> {
    let base = |path: &str| Path::new(path).file_name().map(|n| n.to_os_string());
    let Some(name) = base(dev) else {
        return Vec::new();
    };
    loops
        .iter()
        .filter(|(_, b)| base(b).as_ref() == Some(&name))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Every loop device and its backing file, as `losetup --list` shows them.
fn loop_devices() -> Vec<(String, String)> {
    let out = Command::new("losetup")
        .args([
            "--list",
            "--noheadings",
            "--raw",
            "--output",
            "NAME,BACK-FILE",
        ])
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, b)| (n.to_string(), b.trim().to_string()))
        .collect()
}

/// The sandbox's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxContainer {
    /// The OpenVZ simulator's container [`CTID`], its private area on the filesystem.
    Vz,
    /// A real LXC busybox container of this name, its rootfs on the filesystem.
    Lxc { name: String },
}

/// What [`Sandbox::create`] built: paths for the caller to drive converge with.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub work: PathBuf,
    /// The simulators' symlinks (`drbdsetup`, `vzctl`, `vzlist`): put first in PATH.
    pub bin: PathBuf,
    /// `CONVERGE_SIM_DIR`.
    pub sim_dir: PathBuf,
    pub config: PathBuf,
    pub manifests: PathBuf,
    /// The seed service's manifest in `manifests`.
    pub manifest: PathBuf,
    /// The filesystem's mount point (the seed's `/drbdsvc`, inside the sandbox).
    pub mnt: PathBuf,
    /// The backing disk's loop device.
    pub disk: String,
    pub service: String,
    /// The DRBD dialect the simulator shows in /proc/drbd: "9" or "8.4".
    pub drbd_version: &'static str,
    pub container: SandboxContainer,
}

pub const RESOURCE: &str = "data";
pub const CTID: &str = "101";
pub const SERVICE: &str = "drbdsvc.opensvc.com";

impl Sandbox {
    /// Builds the node in `work` (a fresh directory), in a private mount namespace, with
    /// `converge` being the path of the converge binary.
    pub fn create(work: &Path, converge: &Path) -> Result<Sandbox, SandboxError> {
        Sandbox::create_with(work, converge, "9")
    }

    /// As [`Sandbox::create`], with the simulator showing DRBD `drbd_version` ("9" or "8.4")
    /// in its /proc/drbd: with "8.4", converge observes through /proc/drbd and `drbdadm
    /// sh-minor` instead of `drbdsetup status --json`.
    pub fn create_with(
        work: &Path,
        converge: &Path,
        drbd_version: &'static str,
    ) -> Result<Sandbox, SandboxError> {
        Sandbox::build(work, converge, drbd_version, SandboxContainer::Vz)
    }

    /// As [`Sandbox::create`], with a real LXC busybox container `name` instead of the OpenVZ
    /// simulator: its rootfs on the DRBD-backed filesystem, its configuration in the host's
    /// lxcpath (the name must be unique on the host; [`Sandbox::teardown`] destroys it).
    pub fn create_lxc(work: &Path, converge: &Path, name: &str) -> Result<Sandbox, SandboxError> {
        let valid = !name.is_empty()
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            return Err(SandboxError::Step {
                step: "LXC container".into(),
                detail: format!("bad container name {name:?}: use [A-Za-z0-9_.-]"),
            });
        }
        Sandbox::build(
            work,
            converge,
            "9",
            SandboxContainer::Lxc {
                name: name.to_string(),
            },
        )
    }

    fn build(
        work: &Path,
        converge: &Path,
        drbd_version: &'static str,
        container: SandboxContainer,
    ) -> Result<Sandbox, SandboxError> {
        private_dev(work)?;
        let bin = work.join("bin");
        fs::create_dir_all(&bin).map_err(io("create bin"))?;
        for tool in ["drbdsetup", "vzctl", "vzlist"] {
            symlink(converge, bin.join(tool)).map_err(io(format!("link {tool}")))?;
        }
        let sim_dir = work.join("sim");
        let env: [(&str, &Path); 2] = [
            ("CONVERGE_SIM_DIR", &sim_dir),
            ("CONVERGE_SIM_DRBD_VERSION", Path::new(drbd_version)),
        ];

        let image = work.join("backing.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .map_err(io("create the backing file"))?;
        let disk = run(
            "attach the backing file",
            "losetup",
            &["--find", "--show", &image.to_string_lossy()],
            &[],
            None,
        )?
        .trim()
        .to_string();

        let host = run("node name", "uname", &["-n"], &[], None)?
            .trim()
            .to_string();
        let drbd_conf = work.join("drbd.conf");
        let hosts = [
            ResHost {
                name: host.clone(),
                address: "127.0.0.1".into(),
                diskless: false,
            },
            // The peer the DRBD simulator plays (sim-peer).
            ResHost {
                name: "peer1".into(),
                address: "127.0.0.2".into(),
                diskless: false,
            },
        ];
        fs::write(&drbd_conf, drbd_res(&disk, &hosts, None)).map_err(io("write drbd.conf"))?;
        // converge runs drbdadm without -c, as on a real node: give this namespace its own
        // /etc/drbd.conf.
        if !Path::new("/etc/drbd.conf").exists() {
            return Err(SandboxError::Step {
                step: "drbd configuration".into(),
                detail: "/etc/drbd.conf does not exist: install drbd-utils".into(),
            });
        }
        run(
            "bind drbd.conf",
            "mount",
            &["--bind", &drbd_conf.to_string_lossy(), "/etc/drbd.conf"],
            &[],
            None,
        )?;

        let drbdsetup = format!("--drbdsetup={}", bin.join("drbdsetup").display());
        let here =
            |step: &str, program: &str, args: &[&str]| run(step, program, args, &env, Some(&bin));
        let mnt = work.join("drbdsvc");
        // From the filling on, a failure must not leave the LXC container's configuration
        // behind: the guard is dropped (and destroys it) if a later step fails.
        let mut guard = seed_data(&here, &[drbdsetup.as_str()], &mnt, || match &container {
            SandboxContainer::Vz => {
                populate_container(&mnt.join("vz/private").join(CTID)).map(|()| LxcGuard(None))
            }
            SandboxContainer::Lxc { name } => {
                create_lxc_container(work, &mnt, name).map(|()| LxcGuard(Some(name.clone())))
            }
        })?;

        if container == SandboxContainer::Vz {
            define_container(&bin, &mnt, &env)?;
        }

        // The programs keep their plain names (drbdadm finds drbdsetup through PATH too), so
        // the log reads as on a real node: `drbdadm primary data`, `vzctl start 101`.
        let config = work.join("config.yaml");
        let manifests = work.join("manifests");
        let paths = NodePaths {
            manifests: &manifests,
            state_dir: &work.join("state"),
            log_dir: &work.join("log"),
            proc_drbd: &sim_dir.join("proc_drbd"),
        };
        fs::write(&config, node_config(&host, &paths)).map_err(io("write config.yaml"))?;
        fs::create_dir_all(&manifests).map_err(io("create manifests"))?;
        let manifest = manifests.join("drbdsvc.yaml");
        fs::write(&manifest, seed_manifest_for("up", &host, &mnt, &container))
            .map_err(io("write the manifest"))?;
        guard.0 = None;
        Ok(Sandbox {
            work: work.to_path_buf(),
            bin,
            sim_dir,
            config,
            manifests,
            manifest,
            mnt,
            disk,
            service: SERVICE.to_string(),
            drbd_version,
            container,
        })
    }

    /// Rewrites the seed manifest with `state`.
    pub fn set_state(&self, state: &str) -> Result<(), SandboxError> {
        let host = run("node name", "uname", &["-n"], &[], None)?
            .trim()
            .to_string();
        fs::write(
            &self.manifest,
            seed_manifest_for(state, &host, &self.mnt, &self.container),
        )
        .map_err(io("write the manifest"))
    }

    /// The environment converge and the simulators need: PATH with `bin` first,
    /// CONVERGE_SIM_DIR and the DRBD dialect.
    pub fn env(&self) -> Vec<(String, std::ffi::OsString)> {
        vec![
            ("PATH".into(), path_with(&self.bin)),
            (
                "CONVERGE_SIM_DIR".into(),
                self.sim_dir.clone().into_os_string(),
            ),
            ("CONVERGE_SIM_DRBD_VERSION".into(), self.drbd_version.into()),
        ]
    }

    /// Brings everything down and detaches the backing disk; best effort, reports what failed.
    pub fn teardown(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let sim_env: [(&str, &Path); 1] = [("CONVERGE_SIM_DIR", &self.sim_dir)];
        match &self.container {
            SandboxContainer::Vz => {
                let _ = run(
                    "stop the container",
                    &self.bin.join("vzctl").to_string_lossy(),
                    &["stop", CTID],
                    &sim_env,
                    None,
                );
            }
            SandboxContainer::Lxc { name } => {
                if let Err(e) = destroy_lxc(name) {
                    problems.push(e.to_string());
                }
            }
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(&self.mnt)
            .stdin(Stdio::null())
            .output();
        if let Err(e) = run(
            "take DRBD down",
            &self.bin.join("drbdsetup").to_string_lossy(),
            &["down", "all"],
            &sim_env,
            Some(&self.bin),
        ) {
            problems.push(e.to_string());
        }
        let _ = Command::new("blockdev")
            .args(["--setrw", &self.disk])
            .stdin(Stdio::null())
            .status();
        if let Err(e) = run(
            "detach the backing disk",
            "losetup",
            &["-d", &self.disk],
            &[],
            None,
        ) {
            problems.push(e.to_string());
        }
        problems
    }
}

/// Defines the OpenVZ simulator's container [`CTID`], its private area on the filesystem
/// mounted at `mnt`, in the simulator state `env` names (`CONVERGE_SIM_DIR`).
pub fn define_container(bin: &Path, mnt: &Path, env: &[(&str, &Path)]) -> Result<(), SandboxError> {
    let vzctl = bin.join("vzctl");
    let private = mnt.join("vz/private").join(CTID);
    run(
        "define the container",
        &vzctl.to_string_lossy(),
        &["sim-create", CTID, "--private", &private.to_string_lossy()],
        env,
        None,
    )
    .map(drop)
}

/// The seed service (the OpenSVC drbd documentation's), with its mount point in the sandbox.
pub fn seed_manifest(state: &str, node: &str, mnt: &Path) -> String {
    seed_manifest_for(state, node, mnt, &SandboxContainer::Vz)
}

/// The seed service with the sandbox's container (`manifests/drbdsvc-lxc.yaml` for LXC).
pub fn seed_manifest_for(
    state: &str,
    node: &str,
    mnt: &Path,
    container: &SandboxContainer,
) -> String {
    let container = match container {
        SandboxContainer::Vz => format!("    type: vz\n    ctid: {CTID}\n"),
        // A busybox container stops in a second or two; a hung one should not hold a test for
        // the default two minutes.
        SandboxContainer::Lxc { name } => {
            format!(
                "    type: lxc\n    name: {name}\n    start_timeout: 1m\n    stop_timeout: 30s\n"
            )
        }
    };
    format!(
        "service: {SERVICE}\nstate: {state}\nnode: {node}\nresources:\n  drbd#0:\n    res: {RESOURCE}\n  fs#1:\n    dev: /dev/drbd0\n    mnt: {}\n    type: ext3\n    options: defaults\n  container#0:\n{container}  app#0:\n    scripts: /svc/etc/init.d\n    timeout: 2m\n",
        mnt.display()
    )
}

/// The container's private area: busybox (when installed, so `vzctl exec` runs inside it with
/// chroot) and the app's scripts (see [`write_app_scripts`]).
pub fn populate_container(private: &Path) -> Result<(), SandboxError> {
    for dir in ["bin", "var/run", "var/log", "tmp", "etc"] {
        fs::create_dir_all(private.join(dir)).map_err(io("create the container's directories"))?;
    }
    fs::write(private.join("etc/hostname"), "ct101\n")
        .map_err(io("write the container's hostname"))?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    let Some(busybox) = busybox else {
        return Err(SandboxError::Step {
            step: "container root".into(),
            detail: "busybox not found: install busybox-static (the container's /bin/sh)".into(),
        });
    };
    fs::copy(busybox, private.join("bin/busybox")).map_err(io("copy busybox"))?;
    for applet in [
        "sh", "ls", "true", "cat", "echo", "touch", "rm", "test", "sleep", "date",
    ] {
        symlink("busybox", private.join("bin").join(applet)).map_err(io("link busybox applets"))?;
    }
    write_app_scripts(private)
}

/// The app's S10foo/K90foo/C10foo in `root`/svc/etc/init.d. S10foo writes /var/run/foo (which
/// C10foo reads, and which dies with the container where /var/run is a tmpfs) and appends a
/// line to /var/log/foo.starts, so a test can count starts from outside. K90foo fails (exit 1,
/// the app keeps running) while /etc/foo.stop-fails exists: a flag on the service's own
/// filesystem, so a test's broken stop follows the data wherever the service moves.
fn write_app_scripts(root: &Path) -> Result<(), SandboxError> {
    let scripts = root.join("svc/etc/init.d");
    fs::create_dir_all(&scripts).map_err(io("create the container's scripts directory"))?;
    let script = |name: &str, body: &str| -> Result<(), SandboxError> {
        let path = scripts.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).map_err(io(format!("write {name}")))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod {name}")))
    };
    script(
        "S10foo",
        "echo \"foo starting ($1)\"\ndate > /var/run/foo\necho started >> /var/log/foo.starts\necho foo started",
    )?;
    script(
        "K90foo",
        "echo \"foo stopping ($1)\"\nif test -e /etc/foo.stop-fails; then echo \"foo cannot stop: /etc/foo.stop-fails\" >&2; exit 1; fi\nrm -f /var/run/foo",
    )?;
    script("C10foo", "cat /var/run/foo")?;
    Ok(())
}

/// Where a sandbox's LXC container keeps its rootfs, below the filesystem's mount point.
pub fn lxc_rootfs(mnt: &Path, name: &str) -> PathBuf {
    mnt.join("lxc").join(name).join("rootfs")
}

/// The host's LXC container directory (`lxc.lxcpath`), where `lxc-start -n NAME` looks.
pub fn lxc_path() -> Result<PathBuf, SandboxError> {
    let out = run("LXC path", "lxc-config", &["lxc.lxcpath"], &[], None)?;
    let path = out.trim();
    if path.is_empty() {
        return Err(SandboxError::Step {
            step: "LXC path".into(),
            detail: "lxc-config lxc.lxcpath printed nothing".into(),
        });
    }
    Ok(PathBuf::from(path))
}

/// Creates the busybox container `name` with its rootfs on the mounted filesystem `mnt`, set
/// up for a node without a bridge, its log in `work`, /var/run a tmpfs as on a real system,
/// and the app's scripts inside. Destroys it again when a later step fails.
fn create_lxc_container(work: &Path, mnt: &Path, name: &str) -> Result<(), SandboxError> {
    let here = |step: &str, program: &str, args: &[&str]| run(step, program, args, &[], None);
    create_lxc_container_with(&here, work, mnt, &lxc_rootfs(mnt, name), name)
}

/// [`create_lxc_container`], with `lxc-create` run by `run` (inside a world's node, where
/// `mnt` is mounted), and the rootfs reached at `rootfs_here` from this process (the same
/// directory, through the node's root).
pub fn create_lxc_container_with(
    run: &Runner<'_>,
    work: &Path,
    mnt: &Path,
    rootfs_here: &Path,
    name: &str,
) -> Result<(), SandboxError> {
    let rootfs = lxc_rootfs(mnt, name);
    let rootfs_s = rootfs.to_string_lossy().into_owned();
    if rootfs_s.contains(char::is_whitespace) {
        // lxc-create -B dir --dir splits the path at spaces.
        return Err(SandboxError::Step {
            step: format!("create LXC container {name}"),
            detail: format!("the rootfs path {rootfs_s:?} contains a space; LXC cannot use it"),
        });
    }
    run(
        &format!("create LXC container {name}"),
        "lxc-create",
        &["-n", name, "-t", "busybox", "-B", "dir", "--dir", &rootfs_s],
    )?;
    let guard = LxcGuard(Some(name.to_string()));
    let config = lxc_path()?.join(name).join("config");
    let text = fs::read_to_string(&config).map_err(io(format!("read {}", config.display())))?;
    // There is no lxcbr0 bridge: with the template's veth device lxc-start aborts.
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("lxc.net."))
        .collect();
    let log = work.join(format!("lxc-{name}.log"));
    let log_line = format!("lxc.log.file = {}", log.display());
    lines.extend([
        "",
        "# converge sandbox: no network, a log to show why a start failed, /var/run in memory",
        "lxc.net.0.type = empty",
        &log_line,
        "lxc.mount.entry = tmpfs var/run tmpfs defaults,create=dir 0 0",
    ]);
    fs::write(&config, lines.join("\n") + "\n")
        .map_err(io(format!("write {}", config.display())))?;
    fs::create_dir_all(rootfs_here.join("var/log"))
        .map_err(io("create the container's /var/log"))?;
    write_app_scripts(rootfs_here)?;
    guard.disarm();
    Ok(())
}

/// Destroys an LXC container on drop unless disarmed: a sandbox that fails halfway must not
/// leave one behind in the host's lxcpath.
struct LxcGuard(Option<String>);

impl LxcGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for LxcGuard {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            let _ = destroy_lxc(&name);
        }
    }
}

/// Whether LXC knows a container `name`.
pub fn lxc_exists(name: &str) -> bool {
    Command::new("lxc-info")
        .args(["-n", name, "-s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The host's LXC containers whose name starts with `prefix`.
pub fn lxc_containers(prefix: &str) -> Vec<String> {
    let out = Command::new("lxc-ls")
        .arg("-1")
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace()
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Kills and destroys the LXC container `name`, if it exists. Its rootfs goes with it when
/// still mounted; when the sandbox's filesystem is gone already, only the configuration is
/// left to remove.
pub fn destroy_lxc(name: &str) -> Result<(), SandboxError> {
    if !lxc_exists(name) {
        return Ok(());
    }
    // Not running is fine: the destroy below is what matters.
    let _ = run(
        "stop the LXC container",
        "lxc-stop",
        &["-n", name, "-k"],
        &[],
        None,
    );
    let destroyed = run(
        &format!("destroy LXC container {name}"),
        "lxc-destroy",
        &["-n", name],
        &[],
        None,
    );
    remove_lxc_cgroups(name);
    match destroyed {
        // Gone anyway (destroyed concurrently): nothing is left behind.
        Err(_) if !lxc_exists(name) => Ok(()),
        other => other.map(drop),
    }
}

/// Removes the empty cgroups LXC leaves behind for `name` after a failed start
/// (`lxc.monitor.NAME`, `lxc.payload.NAME`, and their `-N` retries: "Failed to destroy …
/// Device or resource busy" while its monitor was still in them), and those of a container
/// killed rather than stopped (a world's node powered off), with what LXC made inside them
/// (`.lxc`). Best effort: a cgroup still in use is not removable anyway.
pub fn remove_lxc_cgroups(name: &str) {
    let ours = |dir: &str| {
        ["lxc.monitor.", "lxc.payload."]
            .iter()
            .any(|kind| is_lxc_cgroup_of(dir, kind, name))
    };
    let root = Path::new("/sys/fs/cgroup");
    // cgroup v2 has them at the root; v1 (and the hybrid layout) in each hierarchy.
    let mut parents = vec![root.to_path_buf()];
    if let Ok(entries) = fs::read_dir(root) {
        parents.extend(entries.flatten().map(|e| e.path()));
    }
    for parent in parents {
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if ours(&entry.file_name().to_string_lossy()) {
                remove_dirs_below(&entry.path(), 0);
            }
        }
    }
}

/// Whether the cgroup directory `dir` is LXC's `KIND` one of container `name`
/// (`lxc.payload.NAME`, or a retry `lxc.payload.NAME-N`), never another container's.
pub fn is_lxc_cgroup_of(dir: &str, kind: &str, name: &str) -> bool {
    dir.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(name))
        .is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix('-')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Removes `dir` and the directories below it, deepest first (a cgroup with children cannot
/// be removed).
fn remove_dirs_below(dir: &Path, depth: usize) {
    if depth < 8
        && let Ok(entries) = fs::read_dir(dir)
    {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dirs_below(&entry.path(), depth + 1);
            }
        }
    }
    let _ = fs::remove_dir(dir);
}
