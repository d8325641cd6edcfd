//! The daemon's event sources: `drbdsetup events2` (a fake drbdsetup script, and as root the
//! DRBD simulator behind the real drbdadm) and the mount table watch (as root, in a private
//! mount namespace). Waits are generous and event-driven; nothing here asserts timing.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use converge_core::config::{Commands, Config};
use converge_node::controller::drbd_events::{DrbdEvents, RESYNC_REASON};
use converge_node::controller::mount_watch::MountWatch;
use converge_node::controller::trigger::Trigger;
use converge_sim::sandbox::Sandbox;
use converge_sim::testing::in_namespace;
use support::{CONVERGE, text};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const PATIENCE: Duration = Duration::from_secs(10);
/// No trigger for this long: whatever a step caused has arrived.
const SETTLE: Duration = Duration::from_millis(500);

fn resync() -> Trigger {
    Trigger::Resync {
        reason: RESYNC_REASON.to_string(),
    }
}

fn drbd(resource: &str) -> Trigger {
    Trigger::Drbd {
        resource: resource.to_string(),
    }
}

async fn next(rx: &mut UnboundedReceiver<Trigger>, waiting_for: &str) -> Trigger {
    match tokio::time::timeout(PATIENCE, rx.recv()).await {
        Ok(Some(trigger)) => trigger,
        Ok(None) => panic!("{waiting_for}: the trigger channel closed"),
        Err(_) => panic!("{waiting_for}: no trigger within {PATIENCE:?}"),
    }
}

/// Waits for `expected`, returning what came before it.
async fn until(rx: &mut UnboundedReceiver<Trigger>, expected: &Trigger) -> Vec<Trigger> {
    let mut before = Vec::new();
    loop {
        let trigger = next(rx, &format!("waiting for {expected} after {before:?}")).await;
        if &trigger == expected {
            return before;
        }
        before.push(trigger);
    }
}

/// Drains triggers until none came for [`SETTLE`].
async fn settle(rx: &mut UnboundedReceiver<Trigger>) -> Vec<Trigger> {
    let mut seen = Vec::new();
    while let Ok(Some(trigger)) = tokio::time::timeout(SETTLE, rx.recv()).await {
        seen.push(trigger);
    }
    seen
}

fn config_with_drbdsetup(drbdsetup: &Path) -> Arc<Config> {
    Arc::new(Config {
        commands: Commands {
            drbdsetup: drbdsetup.to_string_lossy().into_owned(),
            ..Commands::default()
        },
        ..Config::default()
    })
}

/// An executable script put in place by rename, so that it is never run half-written (or
/// refused as "text file busy").
fn install_script(path: &Path, body: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod script");
    fs::rename(&tmp, path).expect("install script");
}

/// Alive and not a zombie.
fn alive(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after) = stat.rsplit_once(')')?;
            after.trim_start().chars().next()
        })
        .is_some_and(|state| state != 'Z')
}

async fn wait_dead(pid: &str, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pids(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

const DUMP: &str = "exists resource name:r0 role:Secondary suspended:no
exists device name:r0 volume:0 minor:0 disk:UpToDate client:no quorum:yes
exists connection name:r0 peer-node-id:1 conn-name:peer connection:Connected role:Secondary
exists resource name:r1 role:Secondary suspended:no
exists -";

#[tokio::test]
async fn events2_dump_is_one_resync_changes_name_their_resource_and_a_dead_child_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("drbdsetup");
    let args = dir.path().join("args");
    install_script(
        &script,
        &format!(
            r#"echo "$@" >> '{args}'
cat <<'EOF'
{DUMP}
garbage that is no event
change frob name:r0
change resource name:r1 suspended:no
EOF
printf 'change resource name:r0 \377\376\n'
sleep 0.2
echo 'change connection name:r0 peer-node-id:1 conn-name:peer role:Primary'
"#,
            args = args.display()
        ),
    );
    let (tx, mut rx) = unbounded_channel();
    let events = DrbdEvents::start(config_with_drbdsetup(&script), tx, Arc::default());

    assert_eq!(next(&mut rx, "the dump").await, resync());
    // Garbage, invalid UTF-8 and a change that changes nothing came before: skipped, and the
    // stream went on.
    assert_eq!(next(&mut rx, "the peer's promotion").await, drbd("r0"));
    // The child exited: a new one, whose dump is a new full re-observe.
    assert_eq!(next(&mut rx, "the restart").await, resync());
    events.stop();
    assert_eq!(
        fs::read_to_string(&args).expect("args").lines().next(),
        Some("events2 all")
    );
}

#[tokio::test]
async fn lost_events_restart_the_child_and_stop_kills_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("drbdsetup");
    let leaders = dir.path().join("leaders");
    let sleepers = dir.path().join("sleepers");
    install_script(
        &script,
        &format!(
            r#"echo $$ >> '{leaders}'
cat <<'EOF'
{DUMP}
EOF
if [ "$(wc -l < '{leaders}')" -eq 1 ]; then echo '- skipped 3'; fi
sleep 60 &
echo $! >> '{sleepers}'
wait"#,
            leaders = leaders.display(),
            sleepers = sleepers.display()
        ),
    );
    let (tx, mut rx) = unbounded_channel();
    let events = DrbdEvents::start(config_with_drbdsetup(&script), tx, Arc::default());

    assert_eq!(next(&mut rx, "the first dump").await, resync());
    // The first child lost events but still runs: it is killed and a new one started.
    assert_eq!(next(&mut rx, "the restart").await, resync());
    let first = pids(&leaders);
    assert_eq!(first.len(), 2, "{first:?}");
    wait_dead(&first[0], "the child that lost events").await;

    events.stop();
    for pid in pids(&leaders).iter().chain(&pids(&sleepers)) {
        wait_dead(pid, "a process of the stopped child's group").await;
    }
    assert_eq!(settle(&mut rx).await, []);
}

#[tokio::test]
async fn a_dropped_receiver_ends_the_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("drbdsetup");
    let leaders = dir.path().join("leaders");
    install_script(
        &script,
        &format!(
            "echo $$ >> '{}'\ncat <<'EOF'\n{DUMP}\nEOF\nexec sleep 60",
            leaders.display()
        ),
    );
    let (tx, mut rx) = unbounded_channel();
    let events = DrbdEvents::start(config_with_drbdsetup(&script), tx, Arc::default());
    assert_eq!(next(&mut rx, "the dump").await, resync());
    drop(rx);
    for pid in pids(&leaders) {
        wait_dead(&pid, "the child nobody listens to").await;
    }
    drop(events);
}

/// Collects what the code under test logs, for the tests that check how often it complains.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        text(&self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_missing_drbdsetup_is_retried_quietly_until_it_appears() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The current-thread test runtime runs the event source's task on this thread.
    let _logging = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("drbdsetup");
    let (tx, mut rx) = unbounded_channel();
    let events = DrbdEvents::start(config_with_drbdsetup(&script), tx, Arc::default());

    let deadline = Instant::now() + PATIENCE * 2;
    while !log.text().contains("(again)") {
        assert!(
            Instant::now() < deadline,
            "no second attempt:\n{}",
            log.text()
        );
        assert_eq!(rx.try_recv().ok(), None);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logged = log.text();
    let warnings: Vec<&str> = logged.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logged}");
    assert!(
        warnings[0].contains(&format!("{} not found", script.display())),
        "{logged}"
    );

    install_script(&script, &format!("cat <<'EOF'\n{DUMP}\nEOF\nexec sleep 60"));
    assert_eq!(
        until(&mut rx, &resync()).await,
        [],
        "nothing but the dump's resync"
    );
    events.stop();
}

// ---- as root ----

fn sh(script: &str, env: &[(String, std::ffi::OsString)]) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{script}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn mount_table_changes_trigger() {
    in_namespace("mount_table_changes_trigger", |work| {
        runtime().block_on(async {
            let mnt = work.join("mnt");
            fs::create_dir_all(&mnt).expect("mkdir");
            let (tx, mut rx) = unbounded_channel();
            let watch =
                MountWatch::start(PathBuf::from("/proc/self/mountinfo"), tx).expect("watch");
            assert_eq!(settle(&mut rx).await, [], "no change yet");

            sh(
                &format!("mount -t tmpfs converge-test '{}'", mnt.display()),
                &[],
            );
            assert_eq!(next(&mut rx, "the mount").await, Trigger::Mounts);
            settle(&mut rx).await;

            sh(&format!("umount '{}'", mnt.display()), &[]);
            assert_eq!(next(&mut rx, "the unmount").await, Trigger::Mounts);
            settle(&mut rx).await;

            // A burst still ends with a trigger after its last change.
            sh(
                &format!(
                    "for i in 1 2 3 4 5 6 7 8; do mount -t tmpfs t '{0}' && umount '{0}'; done",
                    mnt.display()
                ),
                &[],
            );
            assert_eq!(next(&mut rx, "the burst").await, Trigger::Mounts);
            settle(&mut rx).await;
            watch.stop();
        });
    });
}

/// Brings the sandbox down even when an assertion fails.
struct Node(Sandbox);

impl Drop for Node {
    fn drop(&mut self) {
        let problems = self.0.teardown();
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("teardown: {problems:?}");
        }
    }
}

#[test]
fn drbd_simulator_changes_trigger() {
    in_namespace("drbd_simulator_changes_trigger", |work| {
        let node =
            Node(Sandbox::create(work, Path::new(CONVERGE)).unwrap_or_else(|e| panic!("{e}")));
        let sb = &node.0;
        // The daemon inherits its environment; this test's process must not change its own,
        // so the simulator's comes through a wrapper.
        let wrapper = work.join("events-drbdsetup");
        install_script(
            &wrapper,
            &format!(
                "CONVERGE_SIM_DIR='{}' exec '{}' \"$@\"",
                sb.sim_dir.display(),
                sb.bin.join("drbdsetup").display()
            ),
        );
        let drbdadm = format!(
            "drbdadm --drbdsetup='{}'",
            sb.bin.join("drbdsetup").display()
        );
        runtime().block_on(async {
            let (tx, mut rx) = unbounded_channel();
            let events = DrbdEvents::start(config_with_drbdsetup(&wrapper), tx, Arc::default());
            assert_eq!(next(&mut rx, "the (empty) dump").await, resync());

            sh(&format!("{drbdadm} up data"), &sb.env());
            until(&mut rx, &drbd("data")).await;
            settle(&mut rx).await;

            sh(
                &format!(
                    "'{}' sim-peer data --role Primary",
                    sb.bin.join("drbdsetup").display()
                ),
                &sb.env(),
            );
            assert_eq!(next(&mut rx, "the peer's promotion").await, drbd("data"));
            settle(&mut rx).await;

            sh(
                &format!(
                    "'{}' sim-peer data --role Secondary",
                    sb.bin.join("drbdsetup").display()
                ),
                &sb.env(),
            );
            assert_eq!(next(&mut rx, "the peer's demotion").await, drbd("data"));
            events.stop();
        });
    });
}
