//! A world of two or three simulated nodes on one machine, for the tests and the demo: the DRBD
//! simulator's world mode (see `drbd_world`) with real namespaces, loop devices and mounts.
//!
//! Each node is a holder process (`sleep infinity` under `unshare --mount --uts --net
//! --propagation private`) whose namespaces the node's commands enter with `nsenter`:
//! - UTS: its hostname is the node's name, so the real `drbdadm` picks the node's `on`
//!   section, and the simulator runs as that node;
//! - mount: a private /dev (the tools' nodes and the node's own `/dev/drbd0`), and the
//!   world's shared resource file bound on /etc/drbd.conf;
//! - network: loopback up with the node's address (`127.0.0.N`) from the resource file, which
//!   `drbdadm up` insists on finding on a local interface.
//!
//! When cgroup v2 is mounted (found in mountinfo), each node's processes live in a cgroup of
//! their own, `converge-world-TAG/NODE`, so powering a node off is `cgroup.kill`; the
//! processes in the node's mount namespace are killed too, which is all there is without
//! cgroups. Everything the world made (holders, loop devices, mounts, cgroups) goes when it
//! is dropped or [`World::teardown`] runs, even after a failed test; holders also die with
//! the thread that created the world (PR_SET_PDEATHSIG).
//!
//! A node is diskful or diskless ([`NodeSpec`], [`World::create_with`]): a diskless one has
//! `disk none` in its `on` section of the resource file, so that drbdadm brings it up as
//! DRBD's diskless client (`new-minor … --diskless`, no attach) and its peers keep no bitmap
//! for it: the quorum tiebreaker of two diskful nodes. It never holds the data; the seed is
//! made on the first node, which must have a disk.
//!
//! [`World::create`] must run as root in a private mount namespace (as `Sandbox::create`):
//! it briefly mounts each node's /dev in the caller's namespace before handing it over.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use converge_core::observe::drbd::{
    ConnectionState, DiskState, DrbdConnection, DrbdDevice, DrbdPeerDevice, DrbdResource, Quorum,
    ReplicationState, Role,
};
use converge_core::observe::mountinfo::{self, DevNum, Mount};

use crate::drbd_view::Peers;
use crate::drbd_world::{WorldPeers, load_world, valid_node_name};
use crate::sandbox::{
    NodePaths, REQUIRED_PROGRAMS, ResHost, SERVICE, SandboxContainer, SandboxError,
    create_lxc_container_with, define_container, destroy_lxc, drbd_res, in_path, is_lxc_cgroup_of,
    loops_over, lxc_rootfs, node_config, path_with, populate_container, populate_devfs,
    remove_lxc_cgroups, seed_data, seed_manifest_for,
};

/// What a world needs on top of [`REQUIRED_PROGRAMS`].
pub const WORLD_PROGRAMS: &[(&str, &str)] = &[
    ("nsenter", "util-linux"),
    ("ip", "iproute2"),
    ("hostname", "hostname"),
    ("sleep", "coreutils"),
];

/// Missing programs for a world, as "program (package)".
pub fn missing_world_programs() -> Vec<String> {
    REQUIRED_PROGRAMS
        .iter()
        .chain(WORLD_PROGRAMS)
        .filter(|(program, _)| !in_path(program))
        .map(|(program, package)| format!("{program} (package {package})"))
        .collect()
}

/// How long a node's processes, or the loop devices they held, may take to go.
const GONE_WITHIN: Duration = Duration::from_secs(10);
/// A node's mount table is read with this cap: thousands of mounts fit.
const MOUNTINFO_CAP: u64 = 16 << 20;

/// Copies a file, or a directory and what is in it (a checkout's `drbd/` next to its
/// manifests); anything else is left out.
fn copy_tree(from: &Path, to: &Path) -> Result<(), SandboxError> {
    let kind = fs::symlink_metadata(from)
        .map_err(io("copy the manifests"))?
        .file_type();
    if kind.is_file() {
        fs::copy(from, to).map_err(io("copy the manifests"))?;
    } else if kind.is_dir() {
        fs::create_dir_all(to).map_err(io("copy the manifests"))?;
        for entry in fs::read_dir(from).map_err(io("copy the manifests"))? {
            let entry = entry.map_err(io("copy the manifests"))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn step_error(step: impl Into<String>, detail: impl Into<String>) -> SandboxError {
    SandboxError::Step {
        step: step.into(),
        detail: detail.into(),
    }
}

fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let step = step.into();
    move |source| SandboxError::Io { step, source }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Where [`World::publish`] keeps the revisions of the manifests, under the work directory.
const REVS: &str = "revs";

/// The simulated nodes and the paths shared by all of them.
#[derive(Debug)]
pub struct World {
    pub work: PathBuf,
    /// The simulators' symlinks (`drbdsetup`, `vzctl`, `vzlist`): first in every node's PATH.
    pub bin: PathBuf,
    /// `CONVERGE_SIM_WORLD`: the DRBD simulator's world.
    pub world_dir: PathBuf,
    /// The shared resource file, bound on every node's /etc/drbd.conf.
    pub res_file: PathBuf,
    /// The shared manifest directory (GitOps: one checkout every node reads). A symlink to the
    /// revision in force (`revs/N`), as git-sync's `--link` is: [`World::publish`] swaps it.
    pub manifests: PathBuf,
    /// The seed service's manifest in `manifests`, pinned to the first node.
    pub manifest: PathBuf,
    /// The filesystem's mount point (the same path on every node; mounts are per node).
    pub mnt: PathBuf,
    /// The backing disk's loop device, shared by every node's DRBD.
    pub disk: String,
    pub service: String,
    /// In node-id order.
    pub nodes: Vec<WorldNode>,
    /// The seed service's container: the OpenVZ simulator's, or a real LXC container (its
    /// configuration in the host's lxcpath, its rootfs on the filesystem: each node runs its
    /// own in its own namespaces).
    pub container: SandboxContainer,
    /// `converge-world-TAG` under the cgroup v2 mount, when there is one.
    cgroup: Option<PathBuf>,
    torn_down: bool,
    /// See [`WorldSetup::res_files`].
    res_files: bool,
}

/// How a world's service and resource are set up, beyond its nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldSetup {
    pub container: SandboxContainer,
    /// The DRBD resource's `options` section once the seed is made (quorum, its policies).
    pub drbd_options: String,
    /// Each node reads its resource from a configuration directory of its own
    /// ([`WorldNode::drbd_conf_dir`], converge's `drbd_conf_dir`; its /etc/drbd.conf includes
    /// `*.res` there), where converge installs the file a manifest names; otherwise every node
    /// binds the shared resource file itself.
    pub res_files: bool,
}

impl Default for WorldSetup {
    /// The OpenVZ simulator's container; quorum by majority, failing I/O without it.
    fn default() -> WorldSetup {
        WorldSetup {
            container: SandboxContainer::Vz,
            drbd_options: DEFAULT_QUORUM_OPTIONS.to_string(),
            res_files: false,
        }
    }
}

/// What DRBD recommends for a cluster that must never run two Primaries: a node promotes only
/// in a partition that holds a majority of the nodes. auto-promote off: the simulator never
/// promotes on open, and failover (converge's decision) needs it off.
pub const DEFAULT_QUORUM_OPTIONS: &str = "auto-promote no; quorum majority; on-no-quorum io-error;";

/// For a holder that freezes on a quorum loss (`on_quorum_loss: freeze`): I/O suspended
/// without quorum, and the node demoted by DRBD when it meets the side that took over.
pub const FREEZE_QUORUM_OPTIONS: &str = "auto-promote no; quorum majority; on-no-quorum suspend-io; on-suspended-primary-outdated force-secondary;";

/// A node to create: its name (its hostname, and its `on` section) and whether it has a
/// disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    /// `disk none`: DRBD's diskless client, a quorum tiebreaker.
    pub diskless: bool,
}

impl NodeSpec {
    /// A node with its own disk (a loop device over the shared backing disk once attached).
    pub fn diskful(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.to_string(),
            diskless: false,
        }
    }

    /// A diskless client: a vote for quorum, never a copy of the data.
    pub fn diskless(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.to_string(),
            diskless: true,
        }
    }
}

/// One simulated node.
#[derive(Debug)]
pub struct WorldNode {
    pub name: String,
    pub node_id: u32,
    /// `disk none` in the resource file: no disk to attach, a diskless client in DRBD.
    pub diskless: bool,
    /// Its address in the resource file (on its own loopback).
    pub address: String,
    /// `work/nodes/NAME`: its converge state, logs, configuration.
    pub dir: PathBuf,
    /// converge's configuration for this node (`--config`).
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The OpenVZ simulator's state (`CONVERGE_SIM_DIR`) on this node.
    pub sim_dir: PathBuf,
    /// The DRBD simulator's /proc/drbd stand-in for this node.
    pub proc_drbd: PathBuf,
    cgroup: Option<PathBuf>,
    /// The namespace holder; `None` while the node is powered off.
    holder: Option<Child>,
}

impl WorldNode {
    /// Its DRBD configuration directory, in a world set up with
    /// [`WorldSetup::res_files`]: converge's `drbd_conf_dir`.
    pub fn drbd_conf_dir(&self) -> PathBuf {
        self.dir.join("drbd.d")
    }

    /// Its own /etc/drbd.conf, in such a world: it includes `*.res` of
    /// [`WorldNode::drbd_conf_dir`].
    fn drbd_conf(&self) -> PathBuf {
        self.dir.join("drbd.conf")
    }

    /// The holder's pid, the way into the node's namespaces; `None` while powered off.
    pub fn holder_pid(&self) -> Option<u32> {
        self.holder.as_ref().map(Child::id)
    }
}

/// What one node's DRBD looks like, from the world's state.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDrbd {
    pub powered_on: bool,
    /// Its resources that are up, as converge's own model (and parsers) would have them.
    /// A device's `open` is whether the node's mount table holds it.
    pub resources: Vec<DrbdResource>,
}

impl NodeDrbd {
    pub fn resource(&self, name: &str) -> Option<&DrbdResource> {
        self.resources.iter().find(|r| r.name == name)
    }
}

/// A long-running process inside a node, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    pub node: String,
    child: Child,
}

impl NodeProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process itself (its pipes, `try_wait`).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// SIGTERM (a daemon finishes its running action and exits), then waits for it up to
    /// `within`; SIGKILL after that. Its exit status.
    pub fn terminate(&mut self, within: Duration) -> std::io::Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        terminate(self.child.id())?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill9()?;
        self.child.wait()
    }

    /// `kill -9`, then reaps it.
    pub fn kill9(&mut self) -> std::io::Result<()> {
        match self.child.kill() {
            Ok(()) => {}
            // Already exited: reaping is all there is to do.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {}
            Err(e) => return Err(e),
        }
        self.child.wait().map(drop)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// Sends SIGTERM to process `pid` (a daemon in a node, the demo's own child).
pub fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) has no memory preconditions; at worst the process is gone (ESRCH).
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The cgroup a world made for `work`, whether or not it still exists: named after the work
/// directory, so that whoever created the world can find it after a crash.
pub fn world_cgroup(work: &Path) -> Option<PathBuf> {
    let root = cgroup2_root()?;
    let base = work.file_name()?.to_string_lossy();
    let tag: String = base
        .trim_start_matches('.')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(root.join(format!("converge-world-{tag}")))
}

/// Kills whatever is left in the cgroup of the world made in `work`, and removes it: for the
/// process that made the world, after that world's process died without tearing it down.
pub fn remove_world_cgroup(work: &Path) -> Vec<String> {
    match world_cgroup(work) {
        Some(cgroup) if cgroup.exists() => remove_cgroup_tree(&cgroup),
        _ => Vec::new(),
    }
}

/// Thaws every freezer cgroup of LXC container `name` (cgroup v1's `freezer.state`, v2's
/// `cgroup.freeze`, wherever LXC made them), whichever node froze it.
fn thaw_lxc_cgroups(name: &str) {
    fn walk(dir: &Path, name: &str, depth: usize) {
        if depth > 6 {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let ours = is_lxc_cgroup_of(&entry.file_name().to_string_lossy(), "lxc.payload.", name);
            if ours {
                let _ = fs::write(path.join("freezer.state"), "THAWED");
                let _ = fs::write(path.join("cgroup.freeze"), "0");
            } else {
                walk(&path, name, depth + 1);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), name, 0);
}

/// Where cgroup v2 is mounted, from this process's mountinfo.
fn cgroup2_root() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mounts = mountinfo::parse(&text).ok()?;
    mounts
        .iter()
        .find(|m| m.fstype() == "cgroup2")
        .map(|m| m.mount_point().to_path_buf())
}

/// Kills every process in `cgroup` and below, waits for them, and removes the cgroups.
fn remove_cgroup_tree(cgroup: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = kill_cgroup(cgroup) {
        problems.push(e.to_string());
    }
    remove_empty_cgroups(cgroup, &mut problems);
    problems
}

/// Removes `cgroup` and every cgroup below it, deepest first (a cgroup with children cannot
/// be removed): the nodes' cgroups hold the ones converge makes for its commands.
fn remove_empty_cgroups(cgroup: &Path, problems: &mut Vec<String>) {
    let children: Vec<PathBuf> = fs::read_dir(cgroup)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    for child in &children {
        remove_empty_cgroups(child, problems);
    }
    if let Err(e) = fs::remove_dir(cgroup)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        problems.push(format!("remove cgroup {}: {e}", cgroup.display()));
    }
}

/// `cgroup.kill`, then waits until `cgroup.events` says nothing is left in it.
fn kill_cgroup(cgroup: &Path) -> Result<(), SandboxError> {
    let kill = cgroup.join("cgroup.kill");
    fs::write(&kill, "1").map_err(io(format!("write {}", kill.display())))?;
    let events = cgroup.join("cgroup.events");
    let deadline = Instant::now() + GONE_WITHIN;
    loop {
        let populated = fs::read_to_string(&events)
            .map(|t| t.lines().any(|l| l == "populated 1"))
            .unwrap_or(false);
        if !populated {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(step_error(
                format!("kill cgroup {}", cgroup.display()),
                format!("processes still there after {GONE_WITHIN:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The processes descending from those in mount namespace `ns` that are in another one (an
/// LXC container's), with their own descendants.
fn outside_descendants(ns: &OsStr) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(i32, i32)> = entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "PID (COMM) STATE PPID …": COMM may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let inside: std::collections::BTreeSet<i32> = processes_in(ns).into_iter().collect();
    let mut found: std::collections::BTreeSet<i32> = std::collections::BTreeSet::new();
    let mut frontier: Vec<i32> = inside.iter().copied().collect();
    while let Some(parent) = frontier.pop() {
        for (pid, _) in parents.iter().filter(|(_, ppid)| *ppid == parent) {
            if !inside.contains(pid) && found.insert(*pid) {
                frontier.push(*pid);
            }
        }
    }
    found.into_iter().collect()
}

/// Thaws the cgroup v1 freezer cgroup of `pid`, when it has one that is not the root.
fn thaw_v1_freezer_of(pid: i32) {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return;
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "freezer") && path != "/" {
            let state = Path::new("/sys/fs/cgroup/freezer")
                .join(path.trim_start_matches('/'))
                .join("freezer.state");
            let _ = fs::write(state, "THAWED");
        }
    }
}

/// The processes whose mount namespace is `ns` (a `/proc/PID/ns/mnt` link's text).
fn processes_in(ns: &OsStr) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l.as_os_str() == ns)
        })
        .collect()
}

/// Joins the cgroup whose `cgroup.procs` is `procs`, in a forked child before exec: only
/// async-signal-safe calls (open, write, close) and no allocation.
fn join_cgroup(procs: &CString) -> std::io::Result<()> {
    // SAFETY: `procs` is a valid NUL-terminated path; the buffer written is a static byte.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // "0" moves the writing process itself.
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if written != 1 {
            return Err(error);
        }
    }
    Ok(())
}

/// Makes `command` join `cgroup` (if any) when it starts.
fn in_cgroup(command: &mut Command, cgroup: Option<&Path>) -> Result<(), SandboxError> {
    let Some(cgroup) = cgroup else {
        return Ok(());
    };
    let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes())
        .map_err(|_| step_error("join the node's cgroup", "the cgroup path holds a NUL byte"))?;
    // SAFETY: the closure only calls join_cgroup, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || join_cgroup(&procs));
    }
    Ok(())
}

impl World {
    /// Builds a world of `names` (two or three nodes, each with a disk, node ids in this
    /// order) in `work`, a fresh directory, with `sim` the simulators' binary (`converge-sim`,
    /// or a converge built with the `sim` feature): the shared backing disk with the seed
    /// service's data (made on the first node), the shared resource file and manifest (the
    /// service pinned to the first node), and every node powered on with DRBD down.
    pub fn create(work: &Path, sim: &Path, names: &[&str]) -> Result<World, SandboxError> {
        let nodes: Vec<NodeSpec> = names.iter().map(|n| NodeSpec::diskful(n)).collect();
        World::create_with(work, sim, &nodes)
    }

    /// As [`World::create`], with diskless nodes among them (`NodeSpec::diskless`): two
    /// diskful nodes and a tiebreaker, say. The first node has a disk: the seed is made there.
    pub fn create_with(work: &Path, sim: &Path, nodes: &[NodeSpec]) -> Result<World, SandboxError> {
        World::create_setup(work, sim, nodes, WorldSetup::default())
    }

    /// As [`World::create_with`], with the container and DRBD options of `setup`. An LXC
    /// container's name must be unique on the host (its configuration is in the host's
    /// lxcpath); the world destroys it when torn down.
    pub fn create_setup(
        work: &Path,
        sim: &Path,
        nodes: &[NodeSpec],
        setup: WorldSetup,
    ) -> Result<World, SandboxError> {
        if !(2..=3).contains(&nodes.len()) {
            return Err(step_error(
                "world",
                format!("{} nodes asked for: a world has 2 or 3", nodes.len()),
            ));
        }
        for (i, node) in nodes.iter().enumerate() {
            let name = &node.name;
            if !valid_node_name(name) {
                return Err(step_error(
                    "world",
                    format!("{name:?} cannot name a node: use letters, digits, '-', '_', '.'"),
                ));
            }
            if nodes[..i].iter().any(|n| n.name == *name) {
                return Err(step_error("world", format!("node {name} named twice")));
            }
        }
        if nodes[0].diskless {
            return Err(step_error(
                "world",
                format!(
                    "the first node, {}, is diskless: the seed data is made on the first node, which needs a disk",
                    nodes[0].name
                ),
            ));
        }
        let missing = missing_world_programs();
        if !missing.is_empty() {
            return Err(step_error(
                "world",
                format!("not installed: {}", missing.join(", ")),
            ));
        }
        if !Path::new("/etc/drbd.conf").exists() {
            return Err(step_error(
                "drbd configuration",
                "/etc/drbd.conf does not exist (it is where each node's resource file is bound): install drbd-utils",
            ));
        }
        let bin = work.join("bin");
        fs::create_dir_all(&bin).map_err(io("create bin"))?;
        for tool in ["drbdsetup", "vzctl", "vzlist"] {
            symlink(sim, bin.join(tool)).map_err(io(format!("link {tool}")))?;
        }
        let image = work.join("backing.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .map_err(io("create the backing file"))?;
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .stdin(Stdio::null())
            .output()
            .map_err(io("attach the backing file: losetup"))?;
        if !out.status.success() {
            return Err(step_error(
                "attach the backing file",
                format!(
                    "losetup exited {}: {}",
                    out.status,
                    text(&out.stderr).trim()
                ),
            ));
        }
        let disk = text(&out.stdout).trim().to_string();
        // From here on, a failure tears down what exists (Drop).
        let cgroup = world_cgroup(work).filter(|c| fs::create_dir_all(c).is_ok());
        let world_dir = work.join("world");
        let mut world = World {
            work: work.to_path_buf(),
            bin,
            res_file: work.join("drbd.conf"),
            manifests: work.join("manifests"),
            manifest: work.join("manifests/drbdsvc.yaml"),
            mnt: work.join("drbdsvc"),
            disk,
            service: SERVICE.to_string(),
            nodes: Vec::new(),
            container: setup.container.clone(),
            cgroup,
            torn_down: false,
            world_dir,
            res_files: setup.res_files,
        };
        for (id, spec) in nodes.iter().enumerate() {
            let name = spec.name.as_str();
            let dir = work.join("nodes").join(name);
            let node_cgroup = world.cgroup.as_ref().map(|c| c.join(name));
            if let Some(c) = &node_cgroup {
                fs::create_dir_all(c).map_err(io(format!("create cgroup {}", c.display())))?;
            }
            world.nodes.push(WorldNode {
                name: name.to_string(),
                node_id: u32::try_from(id).unwrap_or(u32::MAX),
                diskless: spec.diskless,
                address: format!("127.0.0.{}", id + 1),
                config: dir.join("config.yaml"),
                state_dir: dir.join("state"),
                log_dir: dir.join("log"),
                sim_dir: dir.join("sim"),
                proc_drbd: world.world_dir.join("nodes").join(name).join("proc_drbd"),
                dir,
                cgroup: node_cgroup,
                holder: None,
            });
        }
        world.build(&setup.drbd_options)?;
        Ok(world)
    }

    fn build(&mut self, drbd_options: &str) -> Result<(), SandboxError> {
        let hosts: Vec<ResHost> = self
            .nodes
            .iter()
            .map(|n| ResHost {
                name: n.name.clone(),
                address: n.address.clone(),
                diskless: n.diskless,
            })
            .collect();
        // The seed is made on the first node alone, which quorum would not let promote: the
        // resource file gets its quorum once the seed is made (written in place: every node's
        // /etc/drbd.conf is a bind mount of this very file).
        fs::write(&self.res_file, drbd_res(&self.disk, &hosts, None))
            .map_err(io("write the resource file"))?;
        for index in 0..self.nodes.len() {
            fs::create_dir_all(&self.nodes[index].sim_dir)
                .map_err(io("create the node's directories"))?;
            self.start_holder(index)?;
            let name = self.nodes[index].name.clone();
            self.hook(&["add-node", &name])?;
        }

        // The seed data, made on the first node.
        let first = self.nodes[0].name.clone();
        let holder = self.nodes[0]
            .holder_pid()
            .ok_or_else(|| step_error("seed data", "the first node has no holder"))?;
        let here =
            |step: &str, program: &str, args: &[&str]| self.checked(&first, step, program, args);
        let drbdsetup = format!("--drbdsetup={}", self.bin.join("drbdsetup").display());
        // The filesystem is mounted in the node's namespace: reach it through the holder's
        // root, which resolves paths in that namespace.
        let fs_root = Path::new(&format!("/proc/{holder}/root"))
            .join(self.mnt.strip_prefix("/").unwrap_or(&self.mnt));
        let container = self.container.clone();
        seed_data(
            &here,
            &[drbdsetup.as_str()],
            &self.mnt,
            || match &container {
                SandboxContainer::Vz => {
                    populate_container(&fs_root.join("vz/private").join(crate::sandbox::CTID))
                }
                // Made inside the first node, where the filesystem is mounted: its rootfs on it,
                // its configuration in the host's lxcpath, which every node shares.
                SandboxContainer::Lxc { name } => create_lxc_container_with(
                    &here,
                    &self.work,
                    &self.mnt,
                    &lxc_rootfs(&fs_root, name),
                    name,
                ),
            },
        )?;
        fs::write(
            &self.res_file,
            drbd_res(&self.disk, &hosts, Some(drbd_options)),
        )
        .map_err(io("write the resource file"))?;

        if self.res_files {
            self.use_res_files()?;
        }

        let first_rev = Path::new(REVS).join("0");
        fs::create_dir_all(self.work.join(&first_rev)).map_err(io("create manifests"))?;
        std::os::unix::fs::symlink(&first_rev, &self.manifests)
            .map_err(io("link the manifest directory"))?;
        for node in &self.nodes {
            for dir in [&node.state_dir, &node.log_dir] {
                fs::create_dir_all(dir).map_err(io("create the node's directories"))?;
            }
            if self.container == SandboxContainer::Vz {
                define_container(&self.bin, &self.mnt, &[("CONVERGE_SIM_DIR", &node.sim_dir)])?;
            }
            let paths = NodePaths {
                manifests: &self.manifests,
                state_dir: &node.state_dir,
                log_dir: &node.log_dir,
                proc_drbd: &node.proc_drbd,
            };
            let mut config = node_config(&node.name, &paths);
            if self.res_files {
                config.push_str(&format!(
                    "drbd_conf_dir: {}\n",
                    node.drbd_conf_dir().display()
                ));
            }
            fs::write(&node.config, config)
                .map_err(io(format!("write {}", node.config.display())))?;
        }
        self.set_state("up", &first).map(drop)
    }

    /// Moves every node from the shared resource file to a configuration directory of its own
    /// holding it as `data.res` (see [`WorldSetup::res_files`]), bound in place of the shared
    /// file on its /etc/drbd.conf.
    fn use_res_files(&self) -> Result<(), SandboxError> {
        let text = fs::read_to_string(&self.res_file).map_err(io("read the resource file"))?;
        for node in &self.nodes {
            let dir = node.drbd_conf_dir();
            fs::create_dir_all(&dir).map_err(io("create the node's drbd.d"))?;
            fs::write(dir.join(format!("{}.res", crate::sandbox::RESOURCE)), &text)
                .map_err(io("write the node's resource file"))?;
            fs::write(
                node.drbd_conf(),
                format!("include \"{}/*.res\";\n", dir.display()),
            )
            .map_err(io("write the node's drbd.conf"))?;
            let conf = node.drbd_conf().to_string_lossy().into_owned();
            self.checked(
                &node.name,
                "resource files",
                "mount",
                &["--bind", &conf, "/etc/drbd.conf"],
            )?;
        }
        Ok(())
    }

    /// The resource file as the world made it (quorum options included).
    pub fn res_text(&self) -> Result<String, SandboxError> {
        fs::read_to_string(&self.res_file).map_err(io("read the resource file"))
    }

    /// Publishes a new revision of the manifests as git-sync does: a complete copy of the
    /// directory in force, with the seed manifest now desired `state` on node `node`, in a
    /// directory of its own (`revs/N`); then a new symlink renamed over [`World::manifests`] at
    /// one instant, which is returned (taken right before the rename); then the old revision
    /// is deleted.
    pub fn publish(&self, state: &str, node: &str) -> Result<SystemTime, SandboxError> {
        let current = fs::read_link(&self.manifests).map_err(io("read the manifest link"))?;
        let number: u64 = current
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| SandboxError::Step {
                step: "publish the manifests".into(),
                detail: format!(
                    "{} leads to {}, not to {REVS}/N",
                    self.manifests.display(),
                    current.display()
                ),
            })?;
        let next = Path::new(REVS).join((number + 1).to_string());
        let dir = self.work.join(&next);
        fs::create_dir_all(&dir).map_err(io("create the new revision"))?;
        for entry in fs::read_dir(&self.manifests).map_err(io("list the manifests"))? {
            let entry = entry.map_err(io("list the manifests"))?;
            copy_tree(&entry.path(), &dir.join(entry.file_name()))?;
        }
        let name = self.manifest.file_name().unwrap_or_default();
        fs::write(
            dir.join(name),
            seed_manifest_for(state, node, &self.mnt, &self.container),
        )
        .map_err(io("write the manifest"))?;
        let staged = self.work.join(".manifests.new");
        let _ = fs::remove_file(&staged);
        std::os::unix::fs::symlink(&next, &staged).map_err(io("link the new revision"))?;
        let at = SystemTime::now();
        fs::rename(&staged, &self.manifests).map_err(io("swap the manifest link"))?;
        fs::remove_dir_all(self.work.join(&current)).map_err(io("delete the old revision"))?;
        Ok(at)
    }

    /// Rewrites the seed manifest: desired `state`, pinned to node `node`. The new text is
    /// written beside it (a hidden file, which the loader ignores) and renamed over it, as a
    /// GitOps checkout or an editor does: the daemons never read half a file, and the change
    /// happens at one instant, which is returned (taken right before the rename) so that a
    /// benchmark can time what follows from it.
    pub fn set_state(&self, state: &str, node: &str) -> Result<SystemTime, SandboxError> {
        let name = self
            .manifest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staged = self.manifest.with_file_name(format!(".{name}.new"));
        fs::write(
            &staged,
            seed_manifest_for(state, node, &self.mnt, &self.container),
        )
        .map_err(io("write the manifest"))?;
        let at = SystemTime::now();
        fs::rename(&staged, &self.manifest).map_err(io("rename the manifest into place"))?;
        Ok(at)
    }

    /// Whether the seed service runs on `node`: its DRBD resource Primary, the filesystem
    /// mounted there, and the app started (its start script's `/var/run/foo` in the container).
    pub fn runs_on(&self, node: &str) -> bool {
        let primary = self.drbd().is_ok_and(|all| {
            all.get(node)
                .and_then(|n| n.resource(crate::sandbox::RESOURCE))
                .is_some_and(|r| r.role == Role::Primary)
        });
        primary && self.mounted_on(node) && self.app_running_on(node)
    }

    /// Whether the seed app runs on `node`: its start script's `/var/run/foo` is in the
    /// container (the OpenVZ simulator's private area; for LXC, the container's own root,
    /// found through its init, whose /var/run is a tmpfs: this works while it is frozen).
    pub fn app_running_on(&self, node: &str) -> bool {
        let root = match &self.container {
            SandboxContainer::Vz => self.on_node(
                node,
                &self.mnt.join("vz/private").join(crate::sandbox::CTID),
            ),
            SandboxContainer::Lxc { name } => self
                .lxc_init(node, name)
                .map(|pid| PathBuf::from(format!("/proc/{pid}/root"))),
        };
        root.is_some_and(|root| root.join("var/run/foo").exists())
    }

    /// The pid of the LXC container `name`'s init on `node`, when it runs there.
    pub fn lxc_init(&self, node: &str, name: &str) -> Option<u32> {
        let out = self.run(node, "lxc-info", &["-n", name, "-p", "-H"]).ok()?;
        if !out.status.success() {
            return None;
        }
        text(&out.stdout).trim().parse().ok()
    }

    /// The state `lxc-info -s` gives of the LXC container `name` on `node` (`RUNNING`,
    /// `FROZEN`, `STOPPED`…).
    pub fn lxc_state(&self, node: &str, name: &str) -> Option<String> {
        let out = self.run(node, "lxc-info", &["-n", name, "-s", "-H"]).ok()?;
        out.status
            .success()
            .then(|| text(&out.stdout).trim().to_string())
    }

    /// Whether `node` stands by for the seed service: its DRBD resource up, Secondary and
    /// connected to every peer, the filesystem not mounted there.
    pub fn stands_by(&self, node: &str) -> bool {
        let standing = self.drbd().is_ok_and(|all| {
            all.get(node)
                .and_then(|n| n.resource(crate::sandbox::RESOURCE))
                .is_some_and(|r| {
                    r.role == Role::Secondary
                        && !r.connections.is_empty()
                        && r.connections
                            .iter()
                            // A peer that is powered off cannot be connected to.
                            .filter(|c| c.name.as_deref().is_none_or(|p| self.powered(p)))
                            .all(|c| c.state == ConnectionState::Connected)
                })
        });
        standing && !self.mounted_on(node)
    }

    /// Whether the seed filesystem is mounted on `node` (false when it is powered off).
    pub fn mounted_on(&self, node: &str) -> bool {
        self.mounts(node)
            .is_ok_and(|m| m.iter().any(|m| m.mount_point() == self.mnt))
    }

    /// `path` as `node` sees it (its mounts are its own): through its holder's root; `None`
    /// while the node is powered off or for a relative path.
    pub fn on_node(&self, node: &str, path: &Path) -> Option<PathBuf> {
        let pid = self.node(node).ok()?.holder_pid()?;
        let relative = path.strip_prefix("/").ok()?;
        Some(Path::new(&format!("/proc/{pid}/root")).join(relative))
    }

    /// Starts node `index`'s holder: new namespaces, its /dev, hostname, address and
    /// resource file.
    fn start_holder(&mut self, index: usize) -> Result<(), SandboxError> {
        let staging = self.nodes[index].dir.join("dev");
        populate_devfs(&staging)?;
        let started = self.spawn_holder(index, &staging);
        // The node moved its own copy of the staging mount onto its /dev; this namespace's
        // copy is not needed (and must not leak into the next node's namespaces).
        let _ = Command::new("umount")
            .args(["--recursive", "--lazy"])
            .arg(&staging)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
        started
    }

    fn spawn_holder(&mut self, index: usize, staging: &Path) -> Result<(), SandboxError> {
        let node = &self.nodes[index];
        let name = node.name.clone();
        let log_path = node.dir.join("holder.log");
        let log = fs::File::create(&log_path).map_err(io("create the holder's log"))?;
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--uts", "--net", "--propagation", "private"])
            .args(["sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let procs = node
            .cgroup
            .as_ref()
            .map(|c| CString::new(c.join("cgroup.procs").as_os_str().as_bytes()))
            .transpose()
            .map_err(|_| step_error("node cgroup", "the cgroup path holds a NUL byte"))?;
        // SAFETY: prctl and join_cgroup are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                // The holder dies with the thread that made the world, even on SIGKILL.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                match &procs {
                    Some(procs) => join_cgroup(procs),
                    None => Ok(()),
                }
            });
        }
        let mut child = command
            .spawn()
            .map_err(io(format!("start node {name}'s holder: unshare")))?;
        let pid = child.id();
        // unshare has set the namespaces up once it has exec'd sleep.
        let deadline = Instant::now() + GONE_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(step_error(
                    format!("start node {name}'s holder"),
                    format!("unshare exited {status}: {}", log.trim()),
                ));
            }
            if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep") {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(step_error(
                    format!("start node {name}'s holder"),
                    format!("not ready after {GONE_WITHIN:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.nodes[index].holder = Some(child);
        let staging = staging.to_string_lossy().into_owned();
        // A node powered on again in a world of resource files reads its own.
        let own = self.nodes[index].drbd_conf();
        let res_file = if self.res_files && own.exists() {
            own
        } else {
            self.res_file.clone()
        };
        let res_file = res_file.to_string_lossy().into_owned();
        let address = format!("{}/8", self.nodes[index].address);
        let mut steps: Vec<(&str, Vec<&str>)> = vec![
            ("private /dev", vec!["mount", "--move", &staging, "/dev"]),
            ("hostname", vec!["hostname", &name]),
            ("loopback", vec!["ip", "link", "set", "lo", "up"]),
            (
                "resource file",
                vec!["mount", "--bind", &res_file, "/etc/drbd.conf"],
            ),
        ];
        // 127.0.0.1 comes with the loopback.
        if self.nodes[index].address != "127.0.0.1" {
            steps.push(("address", vec!["ip", "addr", "add", &address, "dev", "lo"]));
        }
        for (step, argv) in steps {
            self.checked(&name, step, argv[0], &argv[1..])?;
        }
        Ok(())
    }

    fn index(&self, node: &str) -> Result<usize, SandboxError> {
        self.nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                step_error(
                    "world",
                    format!("no node {node:?} (nodes: {})", names.join(", ")),
                )
            })
    }

    pub fn node(&self, node: &str) -> Result<&WorldNode, SandboxError> {
        self.index(node).map(|i| &self.nodes[i])
    }

    /// The environment of a command on `node`: PATH with the simulators first, the DRBD
    /// world, the node's OpenVZ simulator state, DRBD 9.
    pub fn env(&self, node: &str) -> Result<Vec<(String, OsString)>, SandboxError> {
        let n = self.node(node)?;
        Ok(vec![
            ("PATH".into(), path_with(&self.bin)),
            ("CONVERGE_SIM_WORLD".into(), self.world_dir.clone().into()),
            ("CONVERGE_SIM_DIR".into(), n.sim_dir.clone().into()),
            ("CONVERGE_SIM_DRBD_VERSION".into(), "9".into()),
        ])
    }

    /// A command that runs `program` inside `node` (its namespaces and cgroup, its
    /// environment), stdin from /dev/null; add arguments and run or spawn it.
    pub fn command(&self, node: &str, program: impl AsRef<OsStr>) -> Result<Command, SandboxError> {
        let n = self.node(node)?;
        let pid = n.holder_pid().ok_or_else(|| {
            step_error(
                format!("run on {node}"),
                format!("node {node} is powered off: power it on first"),
            )
        })?;
        let mut command = Command::new("nsenter");
        command
            .arg("--target")
            .arg(pid.to_string())
            .args(["--mount", "--uts", "--net", "--"])
            .arg(program)
            .envs(self.env(node)?)
            // The hostname says which node this is.
            .env_remove("CONVERGE_SIM_NODE")
            .stdin(Stdio::null());
        in_cgroup(&mut command, n.cgroup.as_deref())?;
        Ok(command)
    }

    /// Runs `program args` inside `node` to completion: its exit status and output.
    pub fn run(&self, node: &str, program: &str, args: &[&str]) -> Result<Output, SandboxError> {
        self.command(node, program)?
            .args(args)
            .output()
            .map_err(io(format!("run {program} on {node}")))
    }

    /// As [`World::run`], failing (with the program's stderr) unless it exits 0; its stdout.
    pub fn checked(
        &self,
        node: &str,
        step: &str,
        program: &str,
        args: &[&str],
    ) -> Result<String, SandboxError> {
        let out = self.run(node, program, args)?;
        if !out.status.success() {
            let stderr: Vec<String> = text(&out.stderr)
                .lines()
                .filter(|l| !l.contains("modinfo"))
                .map(str::to_string)
                .collect();
            return Err(step_error(
                format!("{step} on {node}"),
                format!(
                    "{program} {} exited {}: {}",
                    args.join(" "),
                    out.status,
                    stderr.join(" / ")
                ),
            ));
        }
        Ok(text(&out.stdout))
    }

    /// `drbdadm ARGS` on `node`, driving the simulator (no `-c`: the node's /etc/drbd.conf).
    pub fn drbdadm(&self, node: &str, args: &[&str]) -> Result<Output, SandboxError> {
        let drbdsetup = format!("--drbdsetup={}", self.bin.join("drbdsetup").display());
        let mut all = vec![drbdsetup.as_str()];
        all.extend_from_slice(args);
        self.run(node, "drbdadm", &all)
    }

    /// The simulator's `drbdsetup ARGS` on `node`.
    pub fn drbdsetup(&self, node: &str, args: &[&str]) -> Result<Output, SandboxError> {
        self.run(node, &self.bin.join("drbdsetup").to_string_lossy(), args)
    }

    /// Starts `program args` inside `node` and leaves it running (a daemon, say).
    pub fn spawn(
        &self,
        node: &str,
        program: &str,
        args: &[&str],
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<NodeProcess, SandboxError> {
        let child = self
            .command(node, program)?
            .args(args)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("start {program} on {node}")))?;
        Ok(NodeProcess {
            node: node.to_string(),
            child,
        })
    }

    /// A world hook (`drbdsetup sim-world ARGS`), run from outside every node.
    pub fn hook(&self, args: &[&str]) -> Result<String, SandboxError> {
        let out = Command::new(self.bin.join("drbdsetup"))
            .arg("sim-world")
            .args(args)
            .env("CONVERGE_SIM_WORLD", &self.world_dir)
            // The hooks act on the world as a whole; this only gives the command a valid node
            // identity whatever this machine's hostname is.
            .env("CONVERGE_SIM_NODE", &self.nodes[0].name)
            .env("PATH", path_with(&self.bin))
            .stdin(Stdio::null())
            .output()
            .map_err(io("run a world hook"))?;
        if !out.status.success() {
            return Err(step_error(
                format!("sim-world {}", args.join(" ")),
                format!("exited {}: {}", out.status, text(&out.stderr).trim()),
            ));
        }
        Ok(text(&out.stdout))
    }

    /// Cuts the link between `a` and `b`: each sees the other go (Connecting).
    pub fn cut(&self, a: &str, b: &str) -> Result<(), SandboxError> {
        self.hook(&["cut", a, b]).map(drop)
    }

    /// Heals the link: they reconnect, resync, or find a split brain.
    pub fn heal(&self, a: &str, b: &str) -> Result<(), SandboxError> {
        self.hook(&["heal", a, b]).map(drop)
    }

    /// Resolves a split brain of resource `res`: `victim` discards its data and resyncs.
    pub fn resolve(&self, res: &str, victim: &str) -> Result<(), SandboxError> {
        self.hook(&["resolve", res, victim]).map(drop)
    }

    /// Resyncs wait (`true`) until released (`false`), or complete at once (the default).
    pub fn hold_resync(&self, hold: bool) -> Result<(), SandboxError> {
        self.hook(&["resync", if hold { "hold" } else { "release" }])
            .map(drop)
    }

    /// Powers `node` off: every process in it is killed (its mounts die with its
    /// namespace), then its simulated DRBD is gone (loop devices detached once nothing holds
    /// them) and its peers see the connection drop, and its OpenVZ containers are down and
    /// unmounted. Powering off a node that is off is fine.
    pub fn power_off(&mut self, node: &str) -> Result<(), SandboxError> {
        let index = self.index(node)?;
        let killed = self.kill_node(index);
        let hooked = self.hook(&["power-off", node]).map(drop);
        // Its OpenVZ kernel is gone too: the simulator's records live outside the node.
        let sim_dir = &self.nodes[index].sim_dir;
        let containers = crate::vz::power_cut(sim_dir)
            .map(drop)
            .map_err(|e| step_error(format!("power off {node}'s containers"), e.to_string()));
        killed.and(hooked).and(containers)
    }

    /// Whether `node` is powered on (and exists).
    pub fn powered(&self, node: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| n.name == node && n.holder.is_some())
    }

    /// Powers `node` on again: new namespaces (a fresh /dev, nothing mounted), DRBD down.
    pub fn power_on(&mut self, node: &str) -> Result<(), SandboxError> {
        let index = self.index(node)?;
        if self.nodes[index].holder.is_some() {
            return Err(step_error(
                format!("power on {node}"),
                "it is powered on already",
            ));
        }
        self.hook(&["power-on", node])?;
        self.start_holder(index)
    }

    /// Kills every process of node `index` (its cgroup, and whatever shares its mount
    /// namespace), the holder last.
    fn kill_node(&mut self, index: usize) -> Result<(), SandboxError> {
        let node = &mut self.nodes[index];
        let Some(mut holder) = node.holder.take() else {
            return Ok(());
        };
        let ns = fs::read_link(format!("/proc/{}/ns/mnt", holder.id()));
        // An LXC container the node started lives in namespaces and (LXC escapes to the root
        // cgroup) cgroups of its own, a child of its monitor, which is the node's: found by
        // descent before anything dies (orphans lose their parent), thawed (a task cgroup v1
        // froze dies of SIGKILL only once thawed), and killed with the node.
        if let Ok(ns) = &ns {
            for pid in outside_descendants(ns.as_os_str()) {
                thaw_v1_freezer_of(pid);
                // SAFETY: kill(2) with a pid read from /proc; at worst it is gone (ESRCH).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let mut result = match &node.cgroup {
            Some(cgroup) => kill_cgroup(cgroup),
            None => Ok(()),
        };
        // Without cgroups this is all; with them, it catches processes that entered the node
        // some other way.
        if let Ok(ns) = ns {
            let deadline = Instant::now() + GONE_WITHIN;
            loop {
                let left = processes_in(ns.as_os_str());
                if left.is_empty() {
                    break;
                }
                for pid in &left {
                    // SAFETY: kill(2) with a pid read from /proc; at worst it is gone (ESRCH).
                    unsafe {
                        libc::kill(*pid, libc::SIGKILL);
                    }
                }
                if Instant::now() > deadline {
                    result = result.and(Err(step_error(
                        format!("power off {}", node.name),
                        format!("processes {left:?} still in its namespace"),
                    )));
                    break;
                }
                // Zombies (our own children among them) have left their namespaces already.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = holder.kill();
        let _ = holder.wait();
        result
    }

    /// `node`'s mount table, read from its holder (cheap: one read of /proc).
    pub fn mounts(&self, node: &str) -> Result<Vec<Mount>, SandboxError> {
        let n = self.node(node)?;
        let pid = n.holder_pid().ok_or_else(|| {
            step_error(
                format!("mounts of {node}"),
                format!("node {node} is powered off"),
            )
        })?;
        let path = format!("/proc/{pid}/mountinfo");
        let mut text = String::new();
        fs::File::open(&path)
            .and_then(|f| f.take(MOUNTINFO_CAP).read_to_string(&mut text))
            .map_err(io(format!("read {path}")))?;
        mountinfo::parse(&text).map_err(|e| step_error(format!("parse {path}"), e.to_string()))
    }

    /// Every node's DRBD as the world's state has it: one read of the world file (replaced
    /// by rename under the world's lock, so all nodes are seen at the same instant), each
    /// powered-on node's mount table read just before it.
    pub fn drbd(&self) -> Result<BTreeMap<String, NodeDrbd>, SandboxError> {
        let mut mounted: BTreeMap<String, Vec<DevNum>> = BTreeMap::new();
        for node in &self.nodes {
            if node.holder.is_some() {
                let devs = self.mounts(&node.name)?.iter().map(|m| m.dev).collect();
                mounted.insert(node.name.clone(), devs);
            }
        }
        let path = self.world_dir.join("world.json");
        let world = load_world(&path)
            .map_err(|e| step_error(format!("read {}", path.display()), e.to_string()))?;
        let mut out = BTreeMap::new();
        for node in &self.nodes {
            let state = world.nodes.get(&node.name);
            let peers = WorldPeers {
                world: &world,
                node: &node.name,
            };
            let devs = mounted
                .get(&node.name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let resources = state
                .map(|s| {
                    s.resources
                        .values()
                        .map(|res| model_resource(res, &peers, devs))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(
                node.name.clone(),
                NodeDrbd {
                    powered_on: state.is_some() && !world.off.contains(&node.name),
                    resources,
                },
            );
        }
        Ok(out)
    }

    /// The pairs of nodes whose data of resource `res` went separate ways (a split brain:
    /// both were Primary while apart), from one read of the world file; each pair once. A
    /// node that is behind (cut off or powered off while another was Primary) is not apart.
    pub fn diverged(&self, res: &str) -> Result<Vec<(String, String)>, SandboxError> {
        let path = self.world_dir.join("world.json");
        let world = load_world(&path)
            .map_err(|e| step_error(format!("read {}", path.display()), e.to_string()))?;
        Ok(world.diverged(res))
    }

    /// The loop devices over the shared backing disk: one per node that has DRBD attached.
    pub fn stacked_loops(&self) -> Vec<String> {
        loops_over(&self.disk)
    }

    /// Powers every node off, detaches the backing disk, removes the cgroups; best effort,
    /// reports what failed (a loop device left behind is a failure). Runs once.
    pub fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        // A task frozen by cgroup v1's freezer does not die of SIGKILL until it is thawed.
        if let SandboxContainer::Lxc { name } = &self.container {
            thaw_lxc_cgroups(name);
        }
        for index in 0..self.nodes.len() {
            if let Err(e) = self.kill_node(index) {
                problems.push(e.to_string());
            }
            let name = self.nodes[index].name.clone();
            if self.world_dir.join("world.json").exists()
                && let Err(e) = self.hook(&["power-off", &name])
            {
                problems.push(e.to_string());
            }
        }
        // Loop devices whose last user was a dying namespace detach at their last close.
        let deadline = Instant::now() + GONE_WITHIN;
        let mut stacked = self.stacked_loops();
        while !stacked.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            stacked = self.stacked_loops();
        }
        for dev in &stacked {
            problems.push(format!("loop device {dev} still over {}", self.disk));
            detach(dev);
        }
        detach(&self.disk);
        if let Some(cgroup) = &self.cgroup {
            problems.extend(remove_cgroup_tree(cgroup));
        }
        if let SandboxContainer::Lxc { name } = &self.container {
            if let Err(e) = destroy_lxc(name) {
                problems.push(e.to_string());
            }
            // Killed with their nodes, the containers never removed their cgroups.
            remove_lxc_cgroups(name);
        }
        problems
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let problems = self.teardown();
        if !problems.is_empty() {
            eprintln!("world teardown: {}", problems.join("; "));
        }
    }
}

/// Clears read-only (it outlives `losetup -d`) and detaches a loop device.
fn detach(dev: &str) {
    let _ = Command::new("blockdev")
        .args(["--setrw", dev])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("losetup")
        .args(["-d", dev])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One resource of a node, as converge's DRBD model has it.
fn model_resource(
    res: &crate::drbd_state::Resource,
    peers: &dyn Peers,
    mounted: &[DevNum],
) -> DrbdResource {
    let devices = res
        .devices
        .values()
        .map(|d| DrbdDevice {
            volume: d.volume,
            minor: d.minor,
            disk: DiskState::parse(&d.disk),
            client: d.client,
            open: d.backing.as_ref().is_some_and(|b| {
                mounted.contains(&DevNum {
                    major: b.major,
                    minor: b.minor,
                })
            }),
            quorum: Quorum::from_flag(Some(d.quorum)),
        })
        .collect();
    let connections = res
        .connections
        .values()
        .map(|c| {
            let v = peers.view(res, c);
            DrbdConnection {
                peer_node_id: Some(c.peer_node_id),
                name: (!c.name.is_empty()).then(|| c.name.clone()),
                state: ConnectionState::parse(&v.cstate),
                peer_role: Role::parse(v.peer_role.as_str()),
                peer_devices: res
                    .devices
                    .values()
                    .map(|d| DrbdPeerDevice {
                        volume: d.volume,
                        replication: ReplicationState::parse(v.replication(d.volume)),
                        peer_disk: DiskState::parse(v.peer_disk(d.volume)),
                        percent_in_sync: None,
                    })
                    .collect(),
            }
        })
        .collect();
    DrbdResource {
        name: res.name.clone(),
        role: Role::parse(res.role.as_str()),
        suspended: crate::drbd_view::suspended_quorum(res),
        devices,
        connections,
    }
}
