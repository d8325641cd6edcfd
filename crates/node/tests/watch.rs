//! The manifest watcher against real directories: editors, GitOps swaps, deletions.
//!
//! Waits are generous and counts loose (this runs on a loaded 2-core machine): a change must
//! bring a trigger within seconds, a series of changes must not bring many, and once things are
//! quiet no trigger may follow. Nothing here measures time.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use converge_node::controller::trigger::Trigger;
use converge_node::controller::watch::{ManifestWatcher, WatchError, revision};
use tokio::sync::mpsc::{UnboundedReceiver, error::TryRecvError, unbounded_channel};

const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest wait for a trigger that must come.
const WITHIN: Duration = Duration::from_secs(5);
/// How long without a trigger counts as settled.
const SETTLED: Duration = Duration::from_secs(1);

struct Watched {
    watcher: ManifestWatcher,
    rx: UnboundedReceiver<Trigger>,
}

fn watch(path: &Path) -> Watched {
    watch_with(path, DEBOUNCE)
}

fn watch_with(path: &Path, debounce: Duration) -> Watched {
    let (tx, rx) = unbounded_channel();
    let watcher = ManifestWatcher::start(path.to_path_buf(), debounce, tx)
        .unwrap_or_else(|e| panic!("start watching {}: {e}", path.display()));
    Watched { watcher, rx }
}

/// A quiet period no test waits out: what triggers within [`WITHIN`] under it did not wait.
const FOREVER: Duration = Duration::from_secs(600);

impl Watched {
    /// The reason of the next trigger, if one comes within `within`.
    fn next_within(&mut self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            match self.rx.try_recv() {
                Ok(Trigger::Manifests { reason }) => return Some(reason),
                Ok(other) => panic!("unexpected trigger {other:?}"),
                Err(TryRecvError::Disconnected) => panic!("watcher stopped sending"),
                Err(TryRecvError::Empty) if Instant::now() >= deadline => return None,
                Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn next(&mut self, what: &str) -> String {
        self.next_within(WITHIN)
            .unwrap_or_else(|| panic!("no trigger within {WITHIN:?} after {what}"))
    }

    /// Every trigger until none came for [`SETTLED`].
    fn settle(&mut self) -> Vec<String> {
        let mut reasons = Vec::new();
        while let Some(reason) = self.next_within(SETTLED) {
            reasons.push(reason);
            assert!(reasons.len() < 50, "triggers never stop: {reasons:?}");
        }
        reasons
    }

    /// A change brings a trigger, and at most one more straggler (a stall of the test thread
    /// between the system calls of one change can split it in two).
    fn expect_one(&mut self, what: &str) -> Vec<String> {
        let mut reasons = vec![self.next(what)];
        reasons.extend(self.settle());
        assert!(
            reasons.len() <= 2,
            "too many triggers after {what}: {reasons:?}"
        );
        reasons
    }

    fn expect_none(&mut self, what: &str) {
        let reasons = self.settle();
        assert!(reasons.is_empty(), "triggers after {what}: {reasons:?}");
    }
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = fs::canonicalize(tmp.path()).expect("canonicalize tempdir");
    (tmp, root)
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn manifests(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    write(&dir.join("web.yaml"), "service: web\n");
    write(&dir.join("db.yaml"), "service: db\n");
    dir
}

#[test]
fn editing_a_manifest_triggers_once() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    let mut w = watch(&dir);
    write(&dir.join("web.yaml"), "service: web\nstate: down\n");
    let reasons = w.expect_one("an edit");
    assert!(reasons[0].contains("web.yaml"), "{reasons:?}");
}

#[test]
fn a_burst_of_writes_brings_few_triggers() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    let mut w = watch(&dir);
    for i in 0..20 {
        let name = if i % 2 == 0 { "web.yaml" } else { "db.yaml" };
        write(&dir.join(name), &format!("service: x\n# {i}\n"));
    }
    let mut reasons = vec![w.next("a burst")];
    reasons.extend(w.settle());
    assert!(
        reasons.len() <= 5,
        "{} triggers: {reasons:?}",
        reasons.len()
    );
}

#[test]
fn reading_the_directory_does_not_trigger() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    let mut w = watch(&dir);
    for _ in 0..5 {
        let _ = converge_core::manifest::load_dir_lenient(&dir);
        revision(&dir).expect("revision");
        converge_node::trust::check(&dir, "manifest directory").expect("trusted");
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let _ = fs::read(entry.expect("entry").path());
        }
    }
    w.expect_none("reading the directory (the daemon's own re-read)");
}

#[test]
fn vim_style_save_by_rename() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    let mut w = watch(&dir);
    for round in 0..2 {
        let swap = dir.join(".web.yaml.swp");
        write(&swap, "vim swap");
        write(&dir.join("4913"), "");
        fs::remove_file(dir.join("4913")).expect("rm 4913");
        fs::rename(dir.join("web.yaml"), dir.join("web.yaml~")).expect("backup");
        write(
            &dir.join("web.yaml"),
            &format!("service: web\n# save {round}\n"),
        );
        fs::remove_file(dir.join("web.yaml~")).expect("rm backup");
        fs::remove_file(&swap).expect("rm swap");
        w.expect_one(&format!("vim save #{round}"));
        let text = fs::read_to_string(dir.join("web.yaml")).expect("read");
        assert!(text.contains(&format!("save {round}")));
    }
}

#[test]
fn sed_in_place_style_save() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    let mut w = watch(&dir);
    for round in 0..2 {
        let tmp = dir.join(format!("sed{round}Xq9"));
        write(&tmp, &format!("service: web\n# sed {round}\n"));
        fs::rename(&tmp, dir.join("web.yaml")).expect("rename over");
        w.expect_one(&format!("sed -i #{round}"));
    }
}

#[test]
fn deleting_and_adding_manifests_trigger() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    let mut w = watch(&dir);
    fs::remove_file(dir.join("db.yaml")).expect("rm");
    let reasons = w.expect_one("a deletion");
    assert!(reasons[0].contains("db.yaml"), "{reasons:?}");
    write(&dir.join("new.yaml"), "service: new\n");
    let reasons = w.expect_one("an addition");
    assert!(reasons[0].contains("new.yaml"), "{reasons:?}");
}

/// git-sync `--link`: a new worktree, a temporary symlink renamed over the link, the old
/// worktree deleted.
#[test]
fn git_sync_style_swap() {
    let (_tmp, root) = tempdir();
    manifests(&root, "rev1");
    let link = root.join("link");
    symlink("rev1", &link).expect("symlink");
    let mut w = watch(&link);
    let before = revision(&link).expect("revision");
    assert_eq!(before.link_target(), Some("rev1"));

    let rev2 = manifests(&root, "rev2");
    write(&rev2.join("web.yaml"), "service: web\nstate: down\n");
    symlink("rev2", root.join("tmp-link")).expect("tmp symlink");
    fs::rename(root.join("tmp-link"), &link).expect("rename over link");
    let reasons = w.expect_one("the swap");
    assert!(
        reasons.iter().any(|r| r.contains("swapped to rev2")),
        "{reasons:?}"
    );
    let after = revision(&link).expect("revision");
    assert_eq!(after.link_target(), Some("rev2"));
    assert_ne!(before, after);

    fs::remove_dir_all(root.join("rev1")).expect("rm -rf rev1");
    w.settle();

    write(&rev2.join("db.yaml"), "service: db\nstate: down\n");
    w.expect_one("an edit in the new worktree");
    let edited = revision(&link).expect("revision");
    assert_ne!(edited, after, "edited in place under the same link");

    // The old path means nothing any more, even when it comes back.
    fs::create_dir(root.join("rev1")).expect("mkdir");
    write(&root.join("rev1/web.yaml"), "service: web\n");
    w.expect_none("writing into the old worktree's path");
    assert_eq!(revision(&link).expect("revision"), edited);
}

/// A manifest directory inside the swapped worktree (`--link=current`, manifests in a subdir).
#[test]
fn swap_of_a_link_above_the_manifest_directory() {
    let (_tmp, root) = tempdir();
    manifests(&root, "rev1/deploy");
    symlink("rev1", root.join("current")).expect("symlink");
    let path = root.join("current/deploy");
    let mut w = watch(&path);
    assert_eq!(
        revision(&path).expect("revision").link_target(),
        Some("rev1")
    );

    manifests(&root, "rev2/deploy");
    symlink("rev2", root.join("tmp-link")).expect("tmp symlink");
    fs::rename(root.join("tmp-link"), root.join("current")).expect("rename over link");
    w.expect_one("the swap");
    assert_eq!(
        revision(&path).expect("revision").link_target(),
        Some("rev2")
    );
    fs::remove_dir_all(root.join("rev1")).expect("rm -rf rev1");
    w.settle();
    write(
        &root.join("rev2/deploy/web.yaml"),
        "service: web\n# edited\n",
    );
    w.expect_one("an edit in the new worktree");
}

/// Kubernetes ConfigMap volume: files are symlinks through `..data`, which is swapped to a new
/// timestamped directory.
#[test]
fn configmap_style_swap() {
    let (_tmp, root) = tempdir();
    let cm = root.join("cm");
    fs::create_dir(&cm).expect("mkdir");
    let old = cm.join("..2026_11_25_10_00_00.1");
    fs::create_dir(&old).expect("mkdir");
    write(&old.join("web.yaml"), "service: web\n");
    symlink("..2026_11_25_10_00_00.1", cm.join("..data")).expect("symlink ..data");
    symlink("..data/web.yaml", cm.join("web.yaml")).expect("symlink web.yaml");

    let mut on_dir = watch(&cm);
    let mut on_data = watch(&cm.join("..data"));
    let before = revision(&cm).expect("revision");
    assert_eq!(before.link_target(), Some("..2026_11_25_10_00_00.1"));

    let new = cm.join("..2026_11_25_11_00_00.2");
    fs::create_dir(&new).expect("mkdir");
    write(&new.join("web.yaml"), "service: web\nstate: down\n");
    symlink("..2026_11_25_11_00_00.2", cm.join("..data_tmp")).expect("symlink");
    fs::rename(cm.join("..data_tmp"), cm.join("..data")).expect("rename over ..data");
    fs::remove_dir_all(&old).expect("rm old");

    on_dir.expect_one("the swap (watching the volume)");
    on_data.expect_one("the swap (watching ..data)");
    let after = revision(&cm).expect("revision");
    assert_eq!(after.link_target(), Some("..2026_11_25_11_00_00.2"));
    assert_ne!(before.content_hash(), after.content_hash());
    assert_eq!(
        revision(&cm.join("..data"))
            .expect("revision")
            .content_hash(),
        after.content_hash()
    );
}

/// `mv m m.old && mv m.new m`: same path, another directory.
#[test]
fn directory_replaced_by_rename() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    let mut w = watch(&dir);
    manifests(&root, "m.new");
    fs::rename(&dir, root.join("m.old")).expect("mv away");
    fs::rename(root.join("m.new"), &dir).expect("mv in");
    w.expect_one("the replacement");
    write(
        &dir.join("web.yaml"),
        "service: web\n# in the new directory\n",
    );
    w.expect_one("an edit in the new directory");
    write(&root.join("m.old/web.yaml"), "service: web\n# old\n");
    w.expect_none("an edit in the directory moved away");
}

/// git-sync publishes a complete worktree, then swaps the link: the nodes of a cluster get a
/// switchover commit this way, and the quiet period would only delay it.
#[test]
fn a_swap_triggers_without_the_quiet_period_an_edit_waits_for() {
    let (_tmp, root) = tempdir();
    manifests(&root, "rev1");
    let link = root.join("link");
    symlink("rev1", &link).expect("symlink");
    let mut w = watch_with(&link, FOREVER);

    write(
        &root.join("rev1/web.yaml"),
        "service: web
# edited
",
    );
    assert_eq!(w.next_within(SETTLED), None, "an edit waits for quiet");

    manifests(&root, "rev2");
    symlink("rev2", root.join("tmp-link")).expect("tmp symlink");
    fs::rename(root.join("tmp-link"), &link).expect("rename over link");
    let reason = w.next("the swap");
    assert!(reason.starts_with("symlink swapped to rev2"), "{reason}");
    // The edit pending before is in that re-read: it is not read a second time.
    assert!(reason.contains("web.yaml"), "{reason}");
    assert_eq!(w.next_within(SETTLED), None, "nothing after the swap");
}

/// `mv m.new m` over a directory moved away, Kubernetes' `..data` swap and a link renamed into
/// place are complete too; a directory made in place may still be filling up.
#[test]
fn a_replacement_a_data_swap_and_a_rename_into_place_need_no_quiet_period_a_mkdir_does() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    manifests(&root, "m.new");
    let mut w = watch_with(&dir, FOREVER);
    fs::rename(&dir, root.join("m.old")).expect("mv away");
    fs::rename(root.join("m.new"), &dir).expect("mv in");
    // Both renames may reach the watcher before it looks again (a replacement), or the first
    // alone (the directory gone, which waits for quiet; then one renamed into place).
    let reason = w.next("the replacement");
    assert!(
        reason.contains("replaced") || reason.contains("appeared"),
        "{reason}"
    );

    let cm = root.join("cm");
    fs::create_dir(&cm).expect("mkdir");
    let old = cm.join("..2026_11_25_10_00_00.1");
    fs::create_dir(&old).expect("mkdir");
    write(
        &old.join("web.yaml"),
        "service: web
",
    );
    symlink("..2026_11_25_10_00_00.1", cm.join("..data")).expect("symlink ..data");
    symlink("..data/web.yaml", cm.join("web.yaml")).expect("symlink web.yaml");
    let mut volume = watch_with(&cm, FOREVER);
    let new = cm.join("..2026_11_25_11_00_00.2");
    fs::create_dir(&new).expect("mkdir");
    write(
        &new.join("web.yaml"),
        "service: web
state: down
",
    );
    symlink("..2026_11_25_11_00_00.2", cm.join("..data_tmp")).expect("symlink");
    fs::rename(cm.join("..data_tmp"), cm.join("..data")).expect("rename over ..data");
    let reason = volume.next("the ..data swap");
    assert!(reason.contains("..data"), "{reason}");

    let later = root.join("later");
    let mut appearing = watch_with(&later, FOREVER);
    manifests(&root, "later");
    assert_eq!(
        appearing.next_within(SETTLED),
        None,
        "a directory made in place waits for quiet"
    );

    // git-sync's first clone: the link renamed into place where there was none.
    let link = root.join("link");
    let mut first = watch_with(&link, FOREVER);
    manifests(&root, "rev1");
    symlink("rev1", root.join("tmp-link")).expect("tmp symlink");
    fs::rename(root.join("tmp-link"), &link).expect("rename into place");
    let reason = first.next("the first clone's link");
    assert!(reason.contains("appeared"), "{reason}");
}

/// The directory may not exist yet when the daemon starts (git-sync's first clone).
#[test]
fn a_missing_directory_is_picked_up_when_it_appears() {
    let (_tmp, root) = tempdir();
    let path = root.join("link");
    let mut w = watch(&path);
    manifests(&root, "rev1");
    symlink("rev1", &path).expect("symlink");
    w.expect_one("the link appearing");
    write(&root.join("rev1/web.yaml"), "service: web\n# later\n");
    w.expect_one("an edit after the directory appeared");
}

#[test]
fn a_path_through_a_file_is_refused() {
    let (tx, _rx) = unbounded_channel();
    let (_tmp, root) = tempdir();
    write(&root.join("file"), "");
    match ManifestWatcher::start(root.join("file/below"), DEBOUNCE, tx) {
        Err(e @ WatchError::Resolve { .. }) => {
            assert!(e.to_string().contains("file/below"), "{e}")
        }
        other => panic!("expected a resolve error, got {other:?}"),
    }
}

#[test]
fn stop_ends_the_watcher() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    let mut w = watch(&dir);
    w.watcher.stop();
    write(&dir.join("web.yaml"), "service: web\n# after stop\n");
    // The worker held the only sender: gone means its thread ended.
    let deadline = Instant::now() + WITHIN;
    loop {
        match w.rx.try_recv() {
            Err(TryRecvError::Disconnected) => break,
            Ok(t) => panic!("trigger after stop: {t:?}"),
            Err(TryRecvError::Empty) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(TryRecvError::Empty) => panic!("the watcher still runs after stop"),
        }
    }
}

#[test]
fn revision_follows_content() {
    let (_tmp, root) = tempdir();
    let dir = manifests(&root, "m");
    let r1 = revision(&dir).expect("revision");
    assert_eq!(r1.link_target(), None);
    assert!(!r1.to_string().is_empty());
    assert_eq!(revision(&dir).expect("revision"), r1, "nothing changed");

    write(&dir.join("README.md"), "not a manifest");
    write(&dir.join(".web.yaml.swp"), "editor file");
    assert_eq!(revision(&dir).expect("revision"), r1, "only non-manifests");

    write(&dir.join("web.yaml"), "service: web\nstate: down\n");
    let r2 = revision(&dir).expect("revision");
    assert_ne!(r2, r1);

    write(&dir.join("web.yaml"), "service: web\n");
    assert_eq!(revision(&dir).expect("revision"), r1, "content restored");

    fs::rename(dir.join("web.yaml"), dir.join("web2.yaml")).expect("rename");
    assert_ne!(revision(&dir).expect("revision"), r1, "renamed");
}
