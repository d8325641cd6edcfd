//! DRBD resource files from the manifest directory, on two simulated nodes with a daemon each
//! and the real drbdadm. Each node reads its resource from a configuration directory of its
//! own (`drbd_conf_dir`), as /etc/drbd.d is on a real node; the seed manifest names
//! `drbd/data.res` in the shared manifest directory (`config:`).
//!
//! - A change to the file in the manifest directory reaches both nodes: drbdadm checks it,
//!   converge installs it and runs `drbdadm adjust`, and the running resource takes the new
//!   option; the service is not restarted.
//! - A file drbdadm refuses never replaces the installed one: the daemons say so, the service
//!   runs on, and `converge validate` points at the `config:` key with drbdadm's message.
//! - Drift: an option changed by hand with drbdsetup shows in `converge status`.
//!
//! Each test re-runs itself as root in a private mount namespace.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use converge_sim::sandbox::{SandboxContainer, seed_manifest_for};
use converge_sim::testing::in_world_namespace;
use converge_sim::world::{NodeSpec, World, WorldSetup};

use support::CONVERGE;
use support::world::{Daemon, Guard, RES, logs, settled_on, status_of, until};

const NODES: [&str; 2] = ["deb1", "deb2"];

/// The seed manifest, running on deb1, naming its resource file.
fn manifest(world: &World) -> String {
    seed_manifest_for("up", "deb1", &world.mnt, &world.container).replace(
        &format!("    res: {RES}\n"),
        &format!("    res: {RES}\n    config: drbd/{RES}.res\n"),
    )
}

/// Replaces `path` with `text` as an editor or a checkout does: beside it, then renamed.
fn replace(path: &Path, text: &str) {
    let staged = path.with_file_name(".staged");
    fs::write(&staged, text).expect("write");
    fs::rename(&staged, path).expect("rename");
}

/// The manifest directory's resource file.
fn source(world: &World) -> std::path::PathBuf {
    world.manifests.join(format!("drbd/{RES}.res"))
}

fn installed(world: &World, node: &str) -> String {
    let node = world.node(node).expect("node");
    fs::read_to_string(node.drbd_conf_dir().join(format!("{RES}.res"))).unwrap_or_default()
}

/// What `drbdsetup show RES` says on `node`: the running configuration.
fn running(world: &World, node: &str) -> String {
    let out = world
        .drbdsetup(node, &["show", RES])
        .expect("drbdsetup show");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two nodes reading their own drbd.d, the seed service on deb1 naming its resource file
/// (the one every node has), a daemon on each.
fn running_on_deb1(work: &Path) -> (Guard, Vec<Daemon>, String) {
    let nodes = NODES.map(NodeSpec::diskful);
    let setup = WorldSetup {
        container: SandboxContainer::Vz,
        drbd_options: "auto-promote no;".to_string(),
        res_files: true,
    };
    let guard =
        Guard::new(World::create_setup(work, Path::new(CONVERGE), &nodes, setup).expect("world"));
    let (daemons, text) = {
        let world = guard.read();
        let text = world.res_text().expect("resource text");
        fs::create_dir_all(world.manifests.join("drbd")).expect("mkdir drbd");
        replace(&source(&world), &text);
        replace(&world.manifest, &manifest(&world));
        let daemons = NODES.iter().map(|n| Daemon::start(&world, n)).collect();
        settled_on(&world, "deb1");
        (daemons, text)
    };
    (guard, daemons, text)
}

#[test]
fn a_resource_file_changed_in_the_manifest_directory_is_installed_and_adjusted_everywhere() {
    in_world_namespace(
        "a_resource_file_changed_in_the_manifest_directory_is_installed_and_adjusted_everywhere",
        |work| {
            let (guard, _daemons, text) = running_on_deb1(work);
            let world = guard.read();
            for node in NODES {
                assert_eq!(installed(&world, node), text, "{node}");
                assert!(!running(&world, node).contains("on-no-data-accessible"));
            }
            let started =
                fs::read_to_string(world.node("deb1").expect("deb1").dir.join("daemon.out"))
                    .unwrap_or_default()
                    .matches("S10foo start")
                    .count();

            assert!(started >= 1, "deb1's daemon started the app");
            let new = text.replace(
                "options { auto-promote no; }",
                "options { auto-promote no; on-no-data-accessible suspend-io; }",
            );
            assert_ne!(new, text, "the world's resource text has its options line");
            replace(&source(&world), &new);
            // Picked up at the next resync (the daemons' 30 s default is long for a test: a
            // manifest edit makes them read the directory, and the file with it).
            replace(
                &world.manifest,
                &format!("{}# the resource file changed\n", manifest(&world)),
            );
            until("both nodes to install and apply it", &world, || {
                NODES.iter().all(|n| {
                    installed(&world, n) == new
                        && running(&world, n).contains("on-no-data-accessible")
                })
            });
            until("both daemons to say it", &world, || {
                logs(&world).matches("drbdadm adjust data").count() >= 2
            });
            let log = logs(&world);
            assert!(
                log.contains(&format!("install {}", source(&world).display())),
                "{log}"
            );
            // The running resource took it; nothing else moved.
            assert!(world.runs_on("deb1"), "{log}");
            let restarted =
                fs::read_to_string(world.node("deb1").expect("deb1").dir.join("daemon.out"))
                    .unwrap_or_default()
                    .matches("S10foo start")
                    .count();
            assert_eq!(restarted, started, "the app was not restarted\n{log}");
            for node in NODES {
                let status = status_of(&world, node);
                assert!(
                    !status.contains("DRIFT") && !status.contains("not applied"),
                    "{node}: {status}"
                );
                // Private: a resource file may hold the connection's shared secret.
                let path = world
                    .node(node)
                    .expect("node")
                    .drbd_conf_dir()
                    .join(format!("{RES}.res"));
                let mode = fs::metadata(&path).expect("installed").permissions();
                assert_eq!(
                    std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                    0o600
                );
            }
        },
    );
}

#[test]
fn a_resource_file_drbdadm_refuses_never_replaces_the_installed_one() {
    in_world_namespace(
        "a_resource_file_drbdadm_refuses_never_replaces_the_installed_one",
        |work| {
            let (guard, daemons, text) = running_on_deb1(work);
            let world = guard.read();
            // A typo: `optoins`.
            let broken = text.replace("options {", "optoins {");
            assert_ne!(broken, text);
            replace(&source(&world), &broken);
            replace(
                &world.manifest,
                &format!("{}# the resource file changed\n", manifest(&world)),
            );
            until("both daemons to say it is refused", &world, || {
                NODES
                    .iter()
                    .all(|n| status_of(&world, n).contains("FILE REFUSED"))
            });
            // Left alone for a while: the installed file stays, the service runs on.
            let since = Instant::now();
            while since.elapsed() < Duration::from_secs(2) {
                for node in NODES {
                    assert_eq!(installed(&world, node), text, "{node}\n{}", logs(&world));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(world.runs_on("deb1"), "{}", logs(&world));
            let status = status_of(&world, "deb1");
            assert!(
                status.contains("drbdadm refuses it") && status.contains("optoins"),
                "{status}"
            );
            // No stray copy was left for drbd.conf's `*.res` (or anyone) to read.
            let conf_dir = world.node("deb1").expect("deb1").drbd_conf_dir();
            let names: Vec<String> = fs::read_dir(&conf_dir)
                .expect("drbd.d")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, [format!("{RES}.res")], "{}", conf_dir.display());

            // validate says where, with drbdadm's own words.
            let config = world.node("deb1").expect("deb1").config.clone();
            let manifests = world.manifests.to_string_lossy().into_owned();
            let out = world
                .run(
                    "deb1",
                    CONVERGE,
                    &[
                        "--config",
                        &config.to_string_lossy(),
                        "validate",
                        &manifests,
                    ],
                )
                .expect("validate runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(":7:5: resources.drbd#0.config: drbdadm refuses")
                    && stderr.contains("optoins"),
                "{stderr}"
            );

            // `reconcile --once` (CI) fails on it, having changed nothing.
            drop(daemons);
            let once = |node: &str| {
                let config = world.node(node).expect("node").config.clone();
                world
                    .run(
                        node,
                        CONVERGE,
                        &["--config", &config.to_string_lossy(), "reconcile", "--once"],
                    )
                    .expect("reconcile --once runs")
            };
            let out = once("deb1");
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(1), "{said}");
            assert!(said.contains("drbdadm refuses it"), "{said}");
            assert_eq!(installed(&world, "deb1"), text);
            assert!(world.runs_on("deb1"));

            // Fixed: it goes in.
            replace(
                &source(&world),
                &text.replace(
                    "auto-promote no;",
                    "auto-promote no; on-no-data-accessible suspend-io;",
                ),
            );
            for node in NODES {
                let out = once(node);
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{node}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(installed(&world, node).contains("on-no-data-accessible suspend-io"));
                assert!(running(&world, node).contains("on-no-data-accessible"));
            }
            assert!(world.runs_on("deb1"));
        },
    );
}

#[test]
fn drift_of_the_running_resource_from_its_file_shows_in_status() {
    in_world_namespace(
        "drift_of_the_running_resource_from_its_file_shows_in_status",
        |work| {
            let (guard, daemons, _text) = running_on_deb1(work);
            let world = guard.read();
            assert!(!status_of(&world, "deb2").contains("DRIFT"));
            world
                .drbdsetup(
                    "deb2",
                    &[
                        "resource-options",
                        RES,
                        "--on-no-data-accessible=suspend-io",
                    ],
                )
                .expect("drbdsetup resource-options");
            // The daemon looks for drift when it looks at everything: at each resync, or at
            // once on SIGHUP. Its status shows it; it does not undo a change made by hand.
            let deb2 = daemons.iter().find(|d| d.node == "deb2").expect("deb2");
            let hup = std::process::Command::new("kill")
                .args(["-HUP", &deb2.pid().to_string()])
                .status()
                .expect("kill -HUP");
            assert!(hup.success());
            until("deb2's status to show the drift", &world, || {
                status_of(&world, "deb2").contains("DRIFT")
            });
            let status = status_of(&world, "deb2");
            assert!(
                status.contains("DRIFT: the running resource differs from")
                    && status.contains("drbdadm adjust data` would run")
                    && status.contains("resource-options data --set-defaults"),
                "{status}"
            );
            assert!(!logs(&world).contains("drbdadm adjust"), "{}", logs(&world));
            // The same without a daemon, from a fresh observation.
            drop(daemons);
            until("the daemons to be gone", &world, || {
                !status_of(&world, "deb2").starts_with("daemon:")
            });
            assert!(status_of(&world, "deb2").contains("DRIFT"));
        },
    );
}

#[test]
fn a_file_that_takes_a_peer_away_is_installed_but_not_applied_by_itself() {
    in_world_namespace(
        "a_file_that_takes_a_peer_away_is_installed_but_not_applied_by_itself",
        |work| {
            let (guard, _daemons, text) = running_on_deb1(work);
            let world = guard.read();
            let without_deb2: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("on deb2"))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_ne!(
                without_deb2, text,
                "the world's resource text has an `on deb2` line"
            );
            replace(&source(&world), &without_deb2);
            replace(
                &world.manifest,
                &format!("{}# the resource file changed\n", manifest(&world)),
            );
            until(
                "deb1's daemon to leave the adjust to a person",
                &world,
                || logs(&world).contains("not applying the new file of resource data by itself"),
            );
            let log = logs(&world);
            assert!(
                log.contains("takes apart or changes what runs")
                    && log.contains("run `drbdadm adjust data` by hand"),
                "{log}"
            );
            // Installed on deb1 (drbdadm accepts it), not on deb2 (no section for it), and
            // nothing taken apart: the nodes stay connected, the service runs on.
            assert_eq!(installed(&world, "deb1"), without_deb2);
            assert_eq!(installed(&world, "deb2"), text);
            assert!(support::world::connected_everywhere(&world), "{log}");
            assert!(world.runs_on("deb1"), "{log}");
            until("deb1's status to say it", &world, || {
                let status = status_of(&world, "deb1");
                status.contains("not applied yet") && status.contains("blocked")
            });
        },
    );
}
