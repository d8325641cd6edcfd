//! The DRBD simulator's world mode on real parts: two and three simulated nodes, each in its
//! own UTS, mount and network namespaces (`converge_sim::world`), driven by the real
//! `drbdadm`, sharing one backing disk.
//!
//! Each test re-runs itself as root in a private mount namespace
//! (`converge_sim::testing::in_world_namespace`); the world is torn down by the test and, if
//! that failed, its cgroup and loop devices by the parent. Without root they say why they skip.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use converge_core::observe::drbd::{ConnectionState, DiskState, DrbdResource, Quorum, Role};
use converge_core::observe::drbdsetup_status;
use converge_core::observe::events2::{Events2State, parse_line};

use converge_sim::testing::in_world_namespace;
use converge_sim::world::{NodeProcess, NodeSpec, World};

/// The simulators' binary.
const SIM: &str = env!("CARGO_BIN_EXE_converge-sim");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Without drbdadm's `modinfo: not found` noise.
fn stderr(out: &Output) -> String {
    text(&out.stderr)
        .lines()
        .filter(|l| !l.contains("modinfo"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}: {}{}",
        out.status.code(),
        text(&out.stdout),
        stderr(&out)
    );
    text(&out.stdout)
}

/// A world, torn down at the end of the test; teardown problems fail a test that passed.
struct Guard(World);

impl Drop for Guard {
    fn drop(&mut self) {
        let problems = self.0.teardown();
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("world teardown: {problems:?}");
        }
    }
}

impl std::ops::Deref for Guard {
    type Target = World;
    fn deref(&self) -> &World {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.0
    }
}

fn world(work: &Path, names: &[&str]) -> Guard {
    Guard(World::create(work, Path::new(SIM), names).unwrap_or_else(|e| panic!("{e}")))
}

fn drbdadm(w: &World, node: &str, args: &[&str]) -> String {
    let out = w.drbdadm(node, args).unwrap_or_else(|e| panic!("{e}"));
    ok(&format!("{node}: drbdadm {}", args.join(" ")), out)
}

/// drbdadm's exit code and stderr.
fn drbdadm_fails(w: &World, node: &str, args: &[&str]) -> (i32, String) {
    let out = w.drbdadm(node, args).unwrap_or_else(|e| panic!("{e}"));
    (out.status.code().unwrap_or(-1), stderr(&out))
}

fn sh(w: &World, node: &str, script: &str) -> String {
    let out = w
        .run(node, "sh", &["-c", script])
        .unwrap_or_else(|e| panic!("{e}"));
    ok(&format!("{node}: {script}"), out)
}

/// `drbdsetup status --json` on `node`, through converge's own parser.
fn status(w: &World, node: &str) -> DrbdResource {
    let out = w
        .drbdsetup(node, &["status", "--json", "data"])
        .unwrap_or_else(|e| panic!("{e}"));
    let json = ok(&format!("{node}: status --json"), out);
    let mut parsed = drbdsetup_status::parse_json(&json).expect("status --json parses");
    parsed.remove("data").expect("data is up")
}

/// How `node` sees the peer named `peer`: (connection state, peer role, peer disk).
fn sees(res: &DrbdResource, peer: &str) -> (ConnectionState, Role, DiskState) {
    let conn = res
        .connections
        .iter()
        .find(|c| c.name.as_deref() == Some(peer))
        .unwrap_or_else(|| panic!("no connection to {peer} in {res:?}"));
    (
        conn.state.clone(),
        conn.peer_role.clone(),
        conn.peer_devices[0].peer_disk.clone(),
    )
}

/// The world's own view of `node`'s resource `data` (what a safety checker samples).
fn sampled(w: &World, node: &str) -> DrbdResource {
    let all = w.drbd().unwrap_or_else(|e| panic!("{e}"));
    all[node]
        .resource("data")
        .unwrap_or_else(|| panic!("data not up on {node}: {all:?}"))
        .clone()
}

fn connected(role: Role) -> (ConnectionState, Role, DiskState) {
    (ConnectionState::Connected, role, DiskState::UpToDate)
}

fn unknown(state: ConnectionState) -> (ConnectionState, Role, DiskState) {
    (state, Role::Unknown, DiskState::DUnknown)
}

/// A running `drbdsetup events2` inside a node, its lines arriving on a channel.
struct Stream {
    _process: NodeProcess,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Stream {
    fn start(w: &World, node: &str) -> Stream {
        let mut process = w
            .spawn(
                node,
                &w.bin.join("drbdsetup").to_string_lossy(),
                &["events2", "--timestamps", "all"],
                Stdio::piped(),
                Stdio::null(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let stdout = process.child().stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stream = Stream {
            _process: process,
            lines,
            seen: Vec::new(),
        };
        stream.wait_for("exists -");
        stream
    }

    /// Waits (10 s at most) for a line containing `needle` after those already matched.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.seen.iter().position(|l| l.contains(needle)) {
                let line = self.seen[i].clone();
                self.seen.drain(..=i);
                return line;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no {needle:?} from events2; got:\n{}", self.seen.join("\n")),
            }
        }
    }
}

#[test]
fn two_nodes_see_each_other_refuse_two_primaries_and_split_on_a_cut() {
    in_world_namespace(
        "two_nodes_see_each_other_refuse_two_primaries_and_split_on_a_cut",
        |work| {
            let w = world(work, &["deb1", "deb2"]);
            drbdadm(&w, "deb1", &["up", "data"]);
            // deb2 is not up yet: deb1 keeps trying.
            assert_eq!(
                sees(&status(&w, "deb1"), "deb2"),
                unknown(ConnectionState::Connecting)
            );
            drbdadm(&w, "deb2", &["up", "data"]);
            for (node, peer) in [("deb1", "deb2"), ("deb2", "deb1")] {
                let res = status(&w, node);
                assert_eq!(res.role, Role::Secondary, "{node}");
                assert_eq!(res.devices[0].disk, DiskState::UpToDate, "{node}");
                assert_eq!(sees(&res, peer), connected(Role::Secondary), "{node}");
                // The world's sample says the same as the node's own drbdsetup.
                assert_eq!(sampled(&w, node), res, "{node}");
            }
            // Each node has its own block device, read-only while Secondary.
            assert_eq!(sh(&w, "deb2", "blockdev --getro /dev/drbd0").trim(), "1");

            let mut events = Stream::start(&w, "deb2");
            drbdadm(&w, "deb1", &["primary", "data"]);
            events
                .wait_for("change connection name:data peer-node-id:0 conn-name:deb1 role:Primary");
            assert_eq!(sees(&status(&w, "deb2"), "deb1"), connected(Role::Primary));
            assert_eq!(sh(&w, "deb1", "blockdev --getro /dev/drbd0").trim(), "0");
            assert_eq!(sh(&w, "deb2", "blockdev --getro /dev/drbd0").trim(), "1");
            // A fresh dump on deb2 agrees with what its stream told.
            let dump = ok(
                "events2 --now",
                w.drbdsetup("deb2", &["events2", "--now", "data"])
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            let mut now = Events2State::new();
            for line in dump.lines() {
                if let Some(event) = parse_line(line).expect("dump parses") {
                    now.apply(&event);
                }
            }
            assert!(now.resources()["data"].peer_primary());

            // DRBD refuses a second Primary beside a connected one.
            let (code, err) = drbdadm_fails(&w, "deb2", &["primary", "data"]);
            assert_eq!(code, 11, "{err}");
            assert!(
                err.contains(
                    "data: State change failed: (-1) Multiple primaries not allowed by config"
                ),
                "{err}"
            );

            // The link is cut: both keep trying, neither knows the other's role.
            w.cut("deb1", "deb2").unwrap_or_else(|e| panic!("{e}"));
            events.wait_for("conn-name:deb1 connection:Connecting role:Unknown");
            assert_eq!(
                sees(&status(&w, "deb1"), "deb2"),
                unknown(ConnectionState::Connecting)
            );
            assert_eq!(
                sees(&status(&w, "deb2"), "deb1"),
                unknown(ConnectionState::Connecting)
            );
            // The world's resource has `quorum majority`: alone, neither side has quorum,
            // and DRBD refuses the promotion.
            events.wait_for("quorum:no");
            let (code, err) = drbdadm_fails(&w, "deb2", &["primary", "data"]);
            assert_eq!(code, 11, "{err}");
            assert!(err.contains("(-25) No quorum"), "{err}");
            // Without quorum (or fencing) DRBD lets the cut-off, UpToDate Secondary promote:
            // keeping that from happening is then converge's business, not the simulator's.
            for node in ["deb1", "deb2"] {
                let out = w
                    .drbdsetup(node, &["resource-options", "data", "--quorum=off"])
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(out.status.success(), "{out:?}");
            }
            drbdadm(&w, "deb2", &["primary", "data"]);
            assert_eq!(sh(&w, "deb2", "blockdev --getro /dev/drbd0").trim(), "0");
            drbdadm(&w, "deb2", &["secondary", "data"]);

            // Both wrote while apart: on heal, a split brain, both StandAlone.
            w.heal("deb1", "deb2").unwrap_or_else(|e| panic!("{e}"));
            events.wait_for("conn-name:deb1 connection:StandAlone");
            for (node, peer) in [("deb1", "deb2"), ("deb2", "deb1")] {
                assert_eq!(
                    sees(&status(&w, node), peer),
                    unknown(ConnectionState::StandAlone),
                    "{node}"
                );
            }
            // drbdadm connect again finds the same split brain.
            drbdadm(&w, "deb2", &["connect", "data"]);
            drbdadm(&w, "deb1", &["connect", "data"]);
            assert_eq!(
                sees(&status(&w, "deb1"), "deb2"),
                unknown(ConnectionState::StandAlone)
            );
            // The administrator's way out: deb2 discards its data and resyncs from deb1.
            w.hold_resync(true).unwrap_or_else(|e| panic!("{e}"));
            drbdadm(&w, "deb1", &["connect", "data"]);
            drbdadm(&w, "deb2", &["connect", "--discard-my-data", "data"]);
            let res = status(&w, "deb2");
            assert_eq!(res.devices[0].disk, DiskState::Inconsistent);
            assert_eq!(sees(&res, "deb1"), connected(Role::Primary));
            events.wait_for("disk:Inconsistent");
            w.hold_resync(false).unwrap_or_else(|e| panic!("{e}"));
            events.wait_for("disk:UpToDate");
            assert_eq!(status(&w, "deb2").devices[0].disk, DiskState::UpToDate);
            assert_eq!(
                sees(&status(&w, "deb1"), "deb2"),
                connected(Role::Secondary)
            );

            drbdadm(&w, "deb1", &["secondary", "data"]);
            drbdadm(&w, "deb2", &["down", "data"]);
            events.wait_for("destroy resource name:data");
            drbdadm(&w, "deb1", &["down", "data"]);
        },
    );
}

#[test]
fn data_written_on_one_node_is_read_on_the_other_after_a_switch() {
    in_world_namespace(
        "data_written_on_one_node_is_read_on_the_other_after_a_switch",
        |work| {
            let w = world(work, &["deb1", "deb2"]);
            let mnt = w.mnt.display().to_string();
            for node in ["deb1", "deb2"] {
                drbdadm(&w, node, &["up", "data"]);
            }
            // deb2 reads the device first, so that stale cached blocks would show below.
            sh(
                &w,
                "deb2",
                "dd if=/dev/drbd0 of=/dev/null bs=1M status=none",
            );
            // A round trip: deb1 writes, switch, deb2 reads and writes, switch, deb1 reads.
            let mut writer = "deb1";
            let mut reader = "deb2";
            for round in 0..2 {
                drbdadm(&w, writer, &["primary", "data"]);
                sh(
                    &w,
                    writer,
                    &format!("mount /dev/drbd0 {mnt} && echo round{round} > {mnt}/from-{writer}"),
                );
                // Mounted: the world's sample shows the device open on that node, and DRBD
                // will not demote under it.
                assert!(sampled(&w, writer).devices[0].open);
                assert!(
                    w.mounts(writer)
                        .unwrap_or_else(|e| panic!("{e}"))
                        .iter()
                        .any(|m| m.mount_point() == w.mnt),
                );
                assert!(
                    !w.mounts(reader)
                        .unwrap_or_else(|e| panic!("{e}"))
                        .iter()
                        .any(|m| m.mount_point() == w.mnt),
                    "mounts are per node"
                );
                let (code, err) = drbdadm_fails(&w, writer, &["secondary", "data"]);
                assert_eq!(code, 11, "{err}");
                sh(&w, writer, &format!("umount {mnt}"));
                drbdadm(&w, writer, &["secondary", "data"]);
                drbdadm(&w, reader, &["primary", "data"]);
                sh(&w, reader, &format!("mount /dev/drbd0 {mnt}"));
                assert_eq!(
                    sh(&w, reader, &format!("cat {mnt}/from-{writer}")),
                    format!("round{round}\n"),
                    "round {round}: {reader} reads what {writer} wrote"
                );
                sh(&w, reader, &format!("umount {mnt}"));
                drbdadm(&w, reader, &["secondary", "data"]);
                std::mem::swap(&mut writer, &mut reader);
            }
            // The seed's container files, made on deb1 when the world was built, are there too.
            drbdadm(&w, "deb2", &["primary", "data"]);
            sh(
                &w,
                "deb2",
                &format!(
                    "mount -o ro /dev/drbd0 {mnt} && test -x {mnt}/vz/private/101/svc/etc/init.d/S10foo && umount {mnt}"
                ),
            );
            for node in ["deb1", "deb2"] {
                drbdadm(&w, node, &["down", "data"]);
            }
        },
    );
}

#[test]
fn three_nodes_power_off_and_on() {
    in_world_namespace("three_nodes_power_off_and_on", |work| {
        let mut w = world(work, &["deb1", "deb2", "deb3"]);
        let mnt = w.mnt.display().to_string();
        for node in ["deb1", "deb2", "deb3"] {
            drbdadm(&w, node, &["up", "data"]);
        }
        // A connection mesh: everyone sees everyone.
        for (node, peers) in [
            ("deb1", ["deb2", "deb3"]),
            ("deb2", ["deb1", "deb3"]),
            ("deb3", ["deb1", "deb2"]),
        ] {
            let res = status(&w, node);
            for peer in peers {
                assert_eq!(
                    sees(&res, peer),
                    connected(Role::Secondary),
                    "{node} → {peer}"
                );
            }
        }
        assert_eq!(w.stacked_loops().len(), 3, "a loop device per node");
        drbdadm(&w, "deb1", &["primary", "data"]);
        sh(
            &w,
            "deb1",
            &format!("mount /dev/drbd0 {mnt} && echo before > {mnt}/crash && sync"),
        );
        // A process of deb1's that will die with it.
        let mut sleeper = w
            .spawn("deb1", "sleep", &["600"], Stdio::null(), Stdio::null())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut events = Stream::start(&w, "deb3");

        w.power_off("deb1").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            sleeper.child().try_wait().expect("wait").is_some(),
            "the node's processes are gone"
        );
        events.wait_for("conn-name:deb1 connection:Connecting role:Unknown");
        let all = w.drbd().unwrap_or_else(|e| panic!("{e}"));
        assert!(!all["deb1"].powered_on && all["deb1"].resources.is_empty());
        assert!(
            w.run("deb1", "true", &[]).is_err(),
            "nothing runs on a node that is off"
        );
        for node in ["deb2", "deb3"] {
            assert_eq!(
                sees(&status(&w, node), "deb1"),
                unknown(ConnectionState::Connecting),
                "{node}"
            );
        }
        // deb1's loop device went with its kernel (once its namespace let go of the mount).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stacked = w.stacked_loops();
            if stacked.len() == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "over {}: {stacked:?}, not the 2 of deb2 and deb3",
                w.disk
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        // Failover: deb2 takes over, the file written on deb1 is there.
        drbdadm(&w, "deb2", &["primary", "data"]);
        events.wait_for("conn-name:deb2 role:Primary");
        sh(
            &w,
            "deb2",
            &format!("mount /dev/drbd0 {mnt} && grep -q before {mnt}/crash"),
        );

        // deb1 comes back with DRBD down, nothing mounted, and a fresh /dev.
        w.power_on("deb1").unwrap_or_else(|e| panic!("{e}"));
        let all = w.drbd().unwrap_or_else(|e| panic!("{e}"));
        assert!(all["deb1"].powered_on && all["deb1"].resources.is_empty());
        assert!(
            !w.mounts("deb1")
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .any(|m| m.mount_point() == w.mnt)
        );
        assert_eq!(
            sh(&w, "deb1", "ls /dev/drbd0 2>/dev/null || echo none").trim(),
            "none"
        );
        assert_eq!(sh(&w, "deb1", "hostname").trim(), "deb1");
        // It was Primary when it died and deb2 has written since: it is behind, and resyncs.
        w.hold_resync(true).unwrap_or_else(|e| panic!("{e}"));
        drbdadm(&w, "deb1", &["up", "data"]);
        let res = status(&w, "deb1");
        assert_eq!(res.role, Role::Secondary);
        assert_eq!(res.devices[0].disk, DiskState::Inconsistent);
        assert_eq!(sees(&res, "deb2").1, Role::Primary);
        // Not UpToDate by itself, but it reads through its UpToDate peers: DRBD 9 would let
        // it promote if deb2 were not Primary; with deb2 Primary it is refused (exit 11).
        let (code, err) = drbdadm_fails(&w, "deb1", &["primary", "data"]);
        assert_eq!(code, 11, "{err}");
        w.hold_resync(false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status(&w, "deb1").devices[0].disk, DiskState::UpToDate);
        assert_eq!(
            sees(&status(&w, "deb3"), "deb1"),
            connected(Role::Secondary)
        );

        sh(&w, "deb2", &format!("umount {mnt}"));
        for node in ["deb1", "deb2", "deb3"] {
            drbdadm(&w, node, &["down", "data"]);
        }
        assert_eq!(w.stacked_loops(), Vec::<String>::new());
        sleeper.kill9().expect("reaped");
    });
}

/// Two diskful nodes and a diskless tiebreaker, as DRBD 9 users deploy for quorum.
fn tiebreaker_world(work: &Path) -> Guard {
    let nodes = [
        NodeSpec::diskful("deb1"),
        NodeSpec::diskful("deb2"),
        NodeSpec::diskless("tb"),
    ];
    Guard(World::create_with(work, Path::new(SIM), &nodes).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn a_diskless_tiebreaker_keeps_quorum_for_the_survivor_of_a_power_cut() {
    in_world_namespace(
        "a_diskless_tiebreaker_keeps_quorum_for_the_survivor_of_a_power_cut",
        |work| {
            let mut w = tiebreaker_world(work);
            // The real drbdadm reads `disk none` in tb's section: a diskless minor, no
            // metadata, no attach; its peers keep no bitmap for it.
            let dump = drbdadm(&w, "tb", &["dump", "data"]);
            assert!(dump.contains("disk             none;"), "{dump}");
            let plan = drbdadm(&w, "tb", &["--dry-run", "up", "data"]);
            assert!(plan.contains("new-minor data 0 0 --diskless"), "{plan}");
            assert!(!plan.contains("attach"), "{plan}");
            let plan = drbdadm(&w, "deb1", &["--dry-run", "up", "data"]);
            assert!(
                plan.contains("peer-device-options data 2 0 --bitmap=no"),
                "{plan}"
            );
            let (code, err) = drbdadm_fails(&w, "tb", &["create-md", "data"]);
            assert_ne!(code, 0, "{err}");

            for node in ["deb1", "deb2", "tb"] {
                drbdadm(&w, node, &["up", "data"]);
            }
            // Nothing left for adjust: the simulator shows what drbdadm configured.
            for node in ["deb1", "deb2", "tb"] {
                let plan = drbdadm(&w, node, &["--dry-run", "adjust", "data"]);
                assert_eq!(plan.trim(), "", "{node}: adjust would run\n{plan}");
            }
            let tb = status(&w, "tb");
            assert_eq!(tb.devices[0].disk, DiskState::Diskless);
            assert!(
                tb.devices[0].client && tb.devices[0].quorum == Quorum::Yes,
                "{tb:?}"
            );
            for peer in ["deb1", "deb2"] {
                assert_eq!(sees(&tb, peer), connected(Role::Secondary), "tb → {peer}");
            }
            for node in ["deb1", "deb2"] {
                let res = status(&w, node);
                assert!(
                    !res.devices[0].client && res.devices[0].quorum == Quorum::Yes,
                    "{res:?}"
                );
                assert_eq!(
                    sees(&res, "tb"),
                    (
                        ConnectionState::Connected,
                        Role::Secondary,
                        DiskState::Diskless
                    ),
                    "{node} → tb"
                );
            }
            for node in ["deb1", "deb2", "tb"] {
                assert_eq!(sampled(&w, node), status(&w, node), "{node}");
            }
            // As drbdsetup prints them (not on a terminal: `client:`/`peer-client:` shown).
            let text = ok(
                "tb: status",
                w.drbdsetup("tb", &["status", "data"])
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            assert!(
                text.contains("  disk:Diskless client:yes open:no\n"),
                "{text}"
            );
            let text = ok(
                "deb1: status",
                w.drbdsetup("deb1", &["status", "data"])
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            assert!(
                text.contains("  tb role:Secondary\n    peer-disk:Diskless peer-client:yes\n"),
                "{text}"
            );
            let dump = ok(
                "deb1: events2 --now",
                w.drbdsetup("deb1", &["events2", "--now", "data"])
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            assert!(
                dump.contains(
                    "exists peer-device name:data peer-node-id:2 conn-name:tb volume:0 replication:Established peer-disk:Diskless peer-client:yes resync-suspended:no"
                ),
                "{dump}"
            );
            let dump = ok(
                "tb: events2 --now",
                w.drbdsetup("tb", &["events2", "--now", "data"])
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            assert!(
                dump.contains(
                    "exists device name:data volume:0 minor:0 backing_dev:none disk:Diskless client:yes open:no quorum:yes"
                ),
                "{dump}"
            );
            // Only the diskful nodes have a disk; the tiebreaker has no block device.
            assert_eq!(w.stacked_loops().len(), 2, "{:?}", w.stacked_loops());
            assert_eq!(
                sh(&w, "tb", "ls /dev/drbd0 2>/dev/null || echo none").trim(),
                "none"
            );

            drbdadm(&w, "deb1", &["primary", "data"]);
            let mut events = Stream::start(&w, "deb2");
            w.power_off("deb1").unwrap_or_else(|e| panic!("{e}"));
            events.wait_for("conn-name:deb1 connection:Connecting role:Unknown");
            // One diskful voter of two, and the tiebreaker: deb2 keeps the quorum it had.
            for node in ["deb2", "tb"] {
                assert_eq!(status(&w, node).devices[0].quorum, Quorum::Yes, "{node}");
            }
            drbdadm(&w, "deb2", &["primary", "data"]);
            events.wait_for("change resource name:data role:Primary");
            assert!(
                !events.seen.iter().any(|l| l.contains("quorum:no")),
                "{:?}",
                events.seen
            );
            // The tiebreaker is never a data source: a Primary is refused there beside one.
            let (code, err) = drbdadm_fails(&w, "tb", &["primary", "data"]);
            assert_eq!(code, 11, "{err}");

            // deb1 comes back behind, resyncs from deb2, and stands by.
            w.power_on("deb1").unwrap_or_else(|e| panic!("{e}"));
            drbdadm(&w, "deb1", &["up", "data"]);
            let res = status(&w, "deb1");
            assert_eq!(res.devices[0].disk, DiskState::UpToDate);
            assert_eq!(res.devices[0].quorum, Quorum::Yes, "{res:?}");
            assert_eq!(sees(&res, "deb2"), connected(Role::Primary));
            let (code, err) = drbdadm_fails(&w, "deb1", &["primary", "data"]);
            assert_eq!(code, 11, "{err}");
            assert!(err.contains("(-1) Multiple primaries"), "{err}");
            drbdadm(&w, "deb2", &["secondary", "data"]);
            for node in ["deb1", "deb2", "tb"] {
                drbdadm(&w, node, &["down", "data"]);
            }
            assert_eq!(w.stacked_loops(), Vec::<String>::new());
        },
    );
}

#[test]
fn a_node_cut_from_both_peers_has_no_quorum_and_the_tiebreaker_does_not_give_it_back() {
    in_world_namespace(
        "a_node_cut_from_both_peers_has_no_quorum_and_the_tiebreaker_does_not_give_it_back",
        |work| {
            let w = tiebreaker_world(work);
            for node in ["deb1", "deb2", "tb"] {
                drbdadm(&w, node, &["up", "data"]);
            }
            drbdadm(&w, "deb2", &["primary", "data"]);
            let mut events = Stream::start(&w, "deb1");
            // Cut from deb2 only: deb1 keeps quorum through tb, and through tb it still
            // reaches Primary deb2, which DRBD's cluster-wide promotion finds.
            w.cut("deb1", "deb2").unwrap_or_else(|e| panic!("{e}"));
            events.wait_for("conn-name:deb2 connection:Connecting role:Unknown");
            assert_eq!(status(&w, "deb1").devices[0].quorum, Quorum::Yes);
            let (code, err) = drbdadm_fails(&w, "deb1", &["primary", "data"]);
            assert_eq!(code, 11, "{err}");
            assert!(
                err.contains(
                    "data: State change failed: (-1) Multiple primaries not allowed by config"
                ),
                "{err}"
            );
            // Cut from tb too: alone, no quorum, in status, --json and events2 alike.
            w.cut("deb1", "tb").unwrap_or_else(|e| panic!("{e}"));
            events.wait_for("quorum:no");
            let res = status(&w, "deb1");
            assert_eq!(res.devices[0].quorum, Quorum::No, "{res:?}");
            assert_eq!(sampled(&w, "deb1"), res);
            let text = ok(
                "deb1: status",
                w.drbdsetup("deb1", &["status", "data"])
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            assert!(text.contains("quorum:no"), "{text}");
            let (code, err) = drbdadm_fails(&w, "deb1", &["primary", "data"]);
            assert_eq!(code, 11, "{err}");
            assert!(
                err.contains("data: State change failed: (-25) No quorum"),
                "{err}"
            );
            // deb2 keeps its quorum through tb and goes on as Primary.
            assert_eq!(status(&w, "deb2").devices[0].quorum, Quorum::Yes);
            assert_eq!(status(&w, "tb").devices[0].quorum, Quorum::Yes);
            // Back in touch with tb alone: the tiebreaker keeps quorum, never hands it back.
            w.heal("deb1", "tb").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                sees(&status(&w, "deb1"), "tb"),
                (
                    ConnectionState::Connected,
                    Role::Secondary,
                    DiskState::Diskless
                )
            );
            assert_eq!(status(&w, "deb1").devices[0].quorum, Quorum::No);
            let (code, err) = drbdadm_fails(&w, "deb1", &["primary", "data"]);
            assert_eq!(code, 11, "{err}");
            assert!(err.contains("(-25) No quorum"), "{err}");
            // Healed: deb1 reconnects, resyncs what deb2 wrote, and there is one Primary.
            w.heal("deb1", "deb2").unwrap_or_else(|e| panic!("{e}"));
            events.wait_for("quorum:yes");
            let res = status(&w, "deb1");
            assert_eq!(res.role, Role::Secondary);
            assert_eq!(res.devices[0].disk, DiskState::UpToDate);
            assert_eq!(sees(&res, "deb2"), connected(Role::Primary));
            let (code, err) = drbdadm_fails(&w, "deb1", &["primary", "data"]);
            assert_eq!(code, 11, "{err}");
            assert!(err.contains("(-1) Multiple primaries"), "{err}");
            drbdadm(&w, "deb2", &["secondary", "data"]);
            drbdadm(&w, "deb1", &["primary", "data"]);
            let all = w.drbd().unwrap_or_else(|e| panic!("{e}"));
            let primaries: Vec<&String> = all
                .iter()
                .filter(|(_, n)| n.resource("data").is_some_and(|r| r.role == Role::Primary))
                .map(|(name, _)| name)
                .collect();
            assert_eq!(primaries, ["deb1"]);
            assert_eq!(w.diverged("data").unwrap_or_else(|e| panic!("{e}")), []);
            drbdadm(&w, "deb1", &["secondary", "data"]);
            for node in ["deb1", "deb2", "tb"] {
                drbdadm(&w, node, &["down", "data"]);
            }
        },
    );
}
