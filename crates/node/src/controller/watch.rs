//! Watching the manifest directory: every change becomes one [`Trigger::Manifests`] after a quiet
//! period, and the daemon re-reads the whole directory. Events are never turned into per-file
//! deltas: inotify loses events (queue overflow → Rescan), editors and GitOps tools replace
//! files and directories by rename, and only a full re-read is right in all those cases.
//!
//! The quiet period lets a multi-file edit finish before it is read. An atomic swap of the
//! whole directory needs none: git-sync and Kubernetes publish a complete tree and then swap
//! one symlink (or rename a prepared directory over the old one), so a swap triggers at once —
//! this is how the nodes of a cluster receive a switchover commit. A directory that appears or
//! disappears is no swap (`mkdir` then files, a `rm -rf` under way) and waits for quiet like an
//! edit.
//!
//! The manifest path may be, or lead through, symlinks that a GitOps tool swaps atomically
//! (git-sync `--link`, Kubernetes' `..data`). So besides the resolved directory, the directory
//! holding each symlink on the way (and the one holding the last component) is watched,
//! non-recursively, for that one name. When one of those names changes, the path is resolved
//! again and the watches move to the new target before the trigger goes out, so the re-read the
//! trigger causes cannot miss an edit made in the new directory.
//!
//! [`revision`] names the manifests in force so that a re-read of unchanged manifests can be
//! skipped; the daemon's reload refuses manifests others than root and their owner
//! can write (manifests make converge run commands as root).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use thiserror::Error;

use super::trigger::{Trigger, TriggerSender};
use converge_core::manifest::load::{ParseCache, load_dir_lenient_cached};

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("cannot resolve manifest path {path}: {source}")]
    Resolve { path: PathBuf, source: io::Error },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("cannot start the watcher of {path}: {source}")]
    Start { path: PathBuf, source: io::Error },
}

/// Watches a manifest path until stopped or dropped; sends into the daemon's trigger channel.
#[derive(Debug)]
pub struct ManifestWatcher {
    path: PathBuf,
    control: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

enum Msg {
    /// An event of the watcher, with when it was received: the watcher hands events on as
    /// inotify reports them, so that is when the change happened, give or take a wake-up.
    Event(notify::Result<Event>, Instant),
    Stop,
}

impl ManifestWatcher {
    /// Watches `path` (a directory, or a symlink to one; it may not exist yet, as long as a
    /// parent does). A trigger is sent `debounce` after the last of a series of changes.
    pub fn start(
        path: PathBuf,
        debounce: Duration,
        tx: TriggerSender,
    ) -> Result<ManifestWatcher, WatchError> {
        let timing = Timing::new(debounce);
        let (control, events) = mpsc::channel();
        let sender = control.clone();
        let watcher = notify::recommended_watcher(move |result| {
            // The receiver only goes away when the worker stops, after which nothing matters.
            let _ = sender.send(Msg::Event(result, Instant::now()));
        })
        .map_err(|source| WatchError::Watch {
            path: path.clone(),
            source,
        })?;
        let mut worker = Worker {
            path: path.clone(),
            watcher,
            watched: BTreeMap::new(),
            interest: Interest::default(),
            target: None,
            settled: false,
            out: tx,
            timing,
        };
        worker.start_watching()?;
        let thread = std::thread::Builder::new()
            .name("converge-watch".into())
            .spawn(move || worker.run(&events))
            .map_err(|source| WatchError::Start {
                path: path.clone(),
                source,
            })?;
        Ok(ManifestWatcher {
            path,
            control,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops watching and waits for the watcher's threads to end.
    pub fn stop(self) {
        // Drop does the work, so that a watcher that is simply dropped also ends cleanly.
    }
}

impl Drop for ManifestWatcher {
    fn drop(&mut self) {
        let _ = self.control.send(Msg::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the watcher of {} panicked", self.path.display());
        }
    }
}

/// How the configured quiet period is kept: the trigger goes out `debounce` after the last
/// change of a series, over the whole directory (a series of changes to different files is one
/// period), counted from when each change was received.
#[derive(Debug, Clone, Copy)]
struct Timing {
    debounce: Duration,
    /// A directory that never stays quiet (a program writing a file in it every 100 ms) is
    /// re-read at least this often rather than never.
    max_wait: Duration,
}

impl Timing {
    fn new(debounce: Duration) -> Timing {
        Timing {
            debounce,
            max_wait: (debounce * 10).max(Duration::from_secs(2)),
        }
    }

    /// When the trigger of a period of changes goes out: `debounce` after its last change, and
    /// never later than `max_wait` after its first.
    fn deadline(&self, first: Instant, last: Instant) -> Instant {
        (last + self.debounce).min(first + self.max_wait)
    }
}

/// The directories watched and which of their entries matter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Interest {
    dirs: BTreeMap<PathBuf, DirInterest>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DirInterest {
    /// The manifest directory itself: every entry matters.
    all: bool,
    /// A directory on the way: only these entries (the symlinks and the last component).
    names: BTreeSet<OsString>,
}

impl Interest {
    fn from_resolution(res: &Resolution) -> Interest {
        let mut dirs: BTreeMap<PathBuf, DirInterest> = BTreeMap::new();
        for (dir, name) in &res.points {
            dirs.entry(dir.clone())
                .or_default()
                .names
                .insert(name.clone());
        }
        if let Some(target) = &res.target {
            dirs.entry(target.clone()).or_default().all = true;
        }
        Interest { dirs }
    }

    fn covers(&self, path: &Path) -> bool {
        if self.dirs.contains_key(path) {
            // The directory itself was deleted or moved.
            return true;
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return true;
        };
        self.dirs
            .get(parent)
            .is_some_and(|d| d.all || d.names.contains(name))
    }
}

/// One thing that changed, for the log: `web.yaml modified`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    /// What changed (a file name, "rescan"); one change is kept per subject.
    subject: String,
    what: String,
}

impl Change {
    fn new(subject: impl Into<String>, what: impl Into<String>) -> Change {
        Change {
            subject: subject.into(),
            what: what.into(),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.subject, self.what)
    }
}

/// What one event of the watcher says, when it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dirty {
    change: Change,
    /// The event itself shows the whole manifest set swapped, complete (Kubernetes' atomic
    /// writer renaming `..data` over), so the re-read need not wait for quiet.
    swap: bool,
}

impl Dirty {
    fn edit(change: Change) -> Option<Dirty> {
        Some(Dirty {
            change,
            swap: false,
        })
    }
}

/// Whether `result` matters, and why. Rescans (inotify's queue overflowed) and watcher errors
/// always do: events may have been lost. Pure reads (the daemon's own re-read opens every file)
/// and events of names next to the manifest path, or of a directory no longer watched, do not.
fn dirty_reason(result: &notify::Result<Event>, interest: &Interest) -> Option<Dirty> {
    let event = match result {
        Err(error) => {
            return Dirty::edit(Change::new(
                "watcher error",
                format!("({error}), rescanning"),
            ));
        }
        Ok(event) => event,
    };
    if event.need_rescan() {
        return Dirty::edit(Change::new("rescan", "(the watcher lost events)"));
    }
    if is_read_only_access(&event.kind) || is_rename_pair(&event.kind) {
        return None;
    }
    if event.paths.is_empty() {
        return Dirty::edit(Change::new("event without a path", kind_word(&event.kind)));
    }
    if !event.paths.iter().any(|p| interest.covers(p)) {
        return None;
    }
    Some(Dirty {
        change: describe(&event.kind, &event.paths),
        swap: is_data_swap(&event.kind, &event.paths, interest)
            || is_rename_onto_the_path(&event.kind, &event.paths, interest),
    })
}

/// Something renamed onto the manifest path itself or onto a symlink on the way (git-sync's
/// link, `mv m.new m`): prepared elsewhere, complete by contract. Judged from the event alone,
/// because an earlier event of the same rename may have moved the watches already (the old
/// directory's own "moved" event, seen first, finds the new one in place).
fn is_rename_onto_the_path(kind: &EventKind, paths: &[PathBuf], interest: &Interest) -> bool {
    let renamed_in = matches!(kind, EventKind::Modify(ModifyKind::Name(RenameMode::To)));
    let Some(to) = paths.last() else {
        return false;
    };
    renamed_in
        && to
            .parent()
            .zip(to.file_name())
            .and_then(|(dir, name)| interest.dirs.get(dir).map(|d| d.names.contains(name)))
            .unwrap_or(false)
}

/// A Kubernetes volume's `..data` symlink renamed over in the manifest directory: the files
/// lead through it, and the atomic writer swaps it only once the new directory is complete.
fn is_data_swap(kind: &EventKind, paths: &[PathBuf], interest: &Interest) -> bool {
    let renamed_in = matches!(kind, EventKind::Modify(ModifyKind::Name(RenameMode::To)));
    let Some(to) = paths.last() else {
        return false;
    };
    renamed_in
        && to.file_name() == Some(OsStr::new("..data"))
        && to
            .parent()
            .and_then(|dir| interest.dirs.get(dir))
            .is_some_and(|d| d.all)
}

/// notify follows a rename's two halves (`moved away`, `moved in`: each checked on its own) with
/// one event naming both paths. It says nothing new, and as a change of its own it would trigger
/// a swap's re-read a second time.
fn is_rename_pair(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
}

fn is_read_only_access(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_)
                | AccessKind::Read
                | AccessKind::Close(AccessMode::Read | AccessMode::Execute)
        )
    )
}

fn describe(kind: &EventKind, paths: &[PathBuf]) -> Change {
    let name = |p: &PathBuf| {
        p.file_name()
            .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
    };
    match paths {
        [.., last] => Change::new(name(last), kind_word(kind)),
        [] => Change::new("event without a path", kind_word(kind)),
    }
}

fn kind_word(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Create(_) => "created",
        EventKind::Remove(_) => "removed",
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => "moved away",
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => "moved in",
        EventKind::Modify(ModifyKind::Name(_)) => "renamed",
        EventKind::Modify(ModifyKind::Metadata(_)) => "attributes changed",
        EventKind::Modify(_) => "modified",
        EventKind::Access(_) => "written",
        EventKind::Any | EventKind::Other => "changed",
    }
}

/// The changes of one quiet period, a few of them spelled out.
#[derive(Debug, Default)]
struct Reasons {
    shown: Vec<Change>,
    more: usize,
}

impl Reasons {
    const SHOWN: usize = 3;

    fn add(&mut self, change: Change) {
        if self.shown.iter().any(|c| c.subject == change.subject) {
            return;
        }
        if self.shown.len() < Self::SHOWN {
            self.shown.push(change);
        } else {
            self.more += 1;
        }
    }

    /// A change that explains the others (the symlink swap) goes first.
    fn add_first(&mut self, change: Change) {
        self.shown.retain(|c| c.subject != change.subject);
        self.shown.insert(0, change);
        if self.shown.len() > Self::SHOWN {
            self.shown.truncate(Self::SHOWN);
            self.more += 1;
        }
    }

    fn take(&mut self) -> String {
        let shown: Vec<String> = self.shown.drain(..).map(|c| c.to_string()).collect();
        let mut text = shown.join(", ");
        if self.more > 0 {
            text.push_str(&format!(" (+{} more)", self.more));
        }
        self.more = 0;
        text
    }
}

/// A directory's identity: after `mv dir dir.old && mv dir.new dir` the path is the same but
/// the watch (which follows the inode) is not.
type DirId = (u64, u64);

fn dir_id(path: &Path) -> Option<DirId> {
    fs::metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

struct Worker {
    path: PathBuf,
    watcher: RecommendedWatcher,
    watched: BTreeMap<PathBuf, DirId>,
    interest: Interest,
    /// The resolved manifest directory and its identity, when it exists.
    target: Option<(PathBuf, DirId)>,
    /// Whether every directory that should be watched is; if not, each batch retries.
    settled: bool,
    out: TriggerSender,
    timing: Timing,
}

impl Worker {
    /// The first watches: failing to set them up is the caller's error, not a log line.
    fn start_watching(&mut self) -> Result<(), WatchError> {
        let res = resolve(&self.path).map_err(|source| WatchError::Resolve {
            path: self.path.clone(),
            source,
        })?;
        let wanted = Interest::from_resolution(&res);
        for dir in wanted.dirs.keys() {
            // Identified before watching: if the directory is swapped in between, the recorded
            // identity is the stale one and the next refresh (the swap's event) re-watches.
            let id = dir_id(dir);
            self.watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError::Watch {
                    path: dir.clone(),
                    source,
                })?;
            if let Some(id) = id {
                self.watched.insert(dir.clone(), id);
            }
        }
        self.target = res
            .target
            .as_ref()
            .and_then(|t| Some((t.clone(), dir_id(t)?)));
        self.interest = wanted;
        self.settled = true;
        Ok(())
    }

    /// Resolves the path again and moves the watches; says why when the manifest directory is
    /// now a different one.
    fn refresh(&mut self) -> Option<Moved> {
        let res = match resolve(&self.path) {
            Ok(res) => res,
            Err(e) => {
                // Keep the watches there are: they are what will tell when this is fixed.
                tracing::warn!(
                    "cannot resolve the manifest path {}: {e}",
                    self.path.display()
                );
                self.settled = false;
                return None;
            }
        };
        let wanted = Interest::from_resolution(&res);
        let ids: BTreeMap<&PathBuf, Option<DirId>> =
            wanted.dirs.keys().map(|d| (d, dir_id(d))).collect();
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(dir, id)| ids.get(dir).is_none_or(|now| *now != Some(**id)))
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in stale {
            // Fails when the directory is gone, and with it the watch: as good as removed.
            let _ = self.watcher.unwatch(&dir);
            self.watched.remove(&dir);
        }
        self.settled = true;
        for (dir, id) in ids {
            if self.watched.contains_key(dir) {
                continue;
            }
            let Some(id) = id else {
                self.settled = false;
                continue;
            };
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir.clone(), id);
                }
                Err(e) => {
                    tracing::warn!("cannot watch the manifest directory {}: {e}", dir.display());
                    self.settled = false;
                }
            }
        }
        self.interest = wanted;

        let target = res
            .target
            .as_ref()
            .and_then(|t| Some((t.clone(), dir_id(t)?)));
        if target == self.target {
            return None;
        }
        let appeared = self.target.is_none();
        self.target = target;
        Some(match (&self.target, &res.link) {
            (Some((dir, _)), _) if appeared => Moved::Appeared(dir.clone()),
            (Some(_), Some(link)) => Moved::Swapped(link.to_string_lossy().into_owned()),
            (Some((dir, _)), None) => Moved::Replaced(dir.clone()),
            (None, _) => Moved::Gone,
        })
    }

    fn run(mut self, events: &mpsc::Receiver<Msg>) {
        let mut reasons = Reasons::default();
        // (first change, last change) of the period while a trigger is pending.
        let mut pending: Option<(Instant, Instant)> = None;
        loop {
            let msg = match pending {
                None => events
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some((first, last)) => {
                    let deadline = self.timing.deadline(first, last);
                    events.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                }
            };
            let swapped = match msg {
                Ok(Msg::Event(result, at)) => {
                    let Some(dirty) = dirty_reason(&result, &self.interest) else {
                        continue;
                    };
                    reasons.add(dirty.change);
                    // Before the trigger leaves, so that its re-read finds the new directory
                    // watched already.
                    let moved = self.refresh();
                    let renamed_in = matches!(
                        &result,
                        Ok(e) if matches!(e.kind, EventKind::Modify(ModifyKind::Name(RenameMode::To)))
                    );
                    let swap =
                        dirty.swap || moved.as_ref().is_some_and(|m| m.is_complete(renamed_in));
                    if let Some(moved) = moved {
                        reasons.add_first(moved.change());
                    }
                    if !swap {
                        pending = Some(match pending {
                            None => (at, at),
                            Some((first, last)) => (first.min(at), last.max(at)),
                        });
                        continue;
                    }
                    true
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !self.settled
                        && let Some(moved) = self.refresh()
                    {
                        reasons.add_first(moved.change());
                    }
                    false
                }
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // A swap brings a complete tree: read at once, with whatever edits were pending
            // (they are in the re-read too).
            pending = None;
            let reason = reasons.take();
            tracing::debug!(
                "manifests changed{}: {reason}",
                if swapped {
                    " (a swap: no quiet period)"
                } else {
                    ""
                }
            );
            if self.out.send(Trigger::Manifests { reason }).is_err() {
                // The daemon is gone; nobody is left to tell.
                break;
            }
        }
        // Dropping the watcher ends its inotify thread.
    }
}

/// How the manifest path's directory changed as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Moved {
    /// The path now leads to a directory where it led to none.
    Appeared(PathBuf),
    /// A symlink on the way now leads elsewhere (the basename of its new target).
    Swapped(String),
    /// Another directory was renamed onto the path.
    Replaced(PathBuf),
    Gone,
}

impl Moved {
    /// Whether the new directory is complete by contract: a swapped symlink, a directory that
    /// replaced the old one, or one renamed into place (`renamed_in`: what the event that showed
    /// it was) was prepared first. One that appeared otherwise (`mkdir`, then files) may be
    /// filling up, and a directory gone may be a `rm -rf` under way.
    fn is_complete(&self, renamed_in: bool) -> bool {
        match self {
            Moved::Swapped(_) | Moved::Replaced(_) => true,
            Moved::Appeared(_) => renamed_in,
            Moved::Gone => false,
        }
    }

    fn change(&self) -> Change {
        match self {
            Moved::Appeared(dir) => Change::new(
                "manifest directory",
                format!("appeared ({})", dir.display()),
            ),
            Moved::Swapped(link) => Change::new("symlink", format!("swapped to {link}")),
            Moved::Replaced(dir) => Change::new(
                "manifest directory",
                format!("replaced ({})", dir.display()),
            ),
            Moved::Gone => Change::new("manifest directory", "gone"),
        }
    }
}

/// A manifest path resolved one component at a time, remembering where symlinks were met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Resolution {
    /// (directory, entry name) for each symlink met and for the last component: a change of
    /// one of these entries can make the path lead elsewhere.
    points: Vec<(PathBuf, OsString)>,
    /// The basename of the last symlink's target (git-sync names worktrees by commit).
    link: Option<OsString>,
    /// The directory the path leads to, when it exists and is one.
    target: Option<PathBuf>,
}

/// Like the kernel's path walk (and `realpath`), except that a missing component ends the walk
/// with the directory it would appear in, instead of an error.
fn resolve(path: &Path) -> io::Result<Resolution> {
    enum Part {
        Up,
        Name(OsString),
    }
    fn parts(path: &Path) -> impl DoubleEndedIterator<Item = Part> + '_ {
        path.components().filter_map(|c| match c {
            Component::ParentDir => Some(Part::Up),
            Component::Normal(name) => Some(Part::Name(name.to_owned())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
    }
    // As Linux's MAXSYMLINKS.
    const MAX_LINKS: usize = 40;

    let start = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir()?
    };
    let mut res = Resolution::default();
    let mut cur = start;
    let mut todo: VecDeque<Part> = parts(path).collect();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        let name = match part {
            Part::Up => {
                cur.pop();
                continue;
            }
            Part::Name(name) => name,
        };
        let last = todo.is_empty();
        let next = cur.join(&name);
        let meta = match fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                res.points.push((cur, name));
                return Ok(res);
            }
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from(rustix::io::Errno::LOOP));
            }
            let target = fs::read_link(&next)?;
            res.points.push((cur.clone(), name));
            if let Some(base) = target.file_name() {
                res.link = Some(base.to_owned());
            }
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            for part in parts(&target).rev() {
                todo.push_front(part);
            }
            continue;
        }
        if last {
            res.points.push((cur.clone(), name));
        } else if !meta.is_dir() {
            return Err(io::Error::from(rustix::io::Errno::NOTDIR));
        }
        cur = next;
    }
    if fs::metadata(&cur).is_ok_and(|m| m.is_dir()) {
        res.target = Some(cur);
    }
    Ok(res)
}

/// The manifests in force: equal revisions mean the same manifest files with the same contents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Revision {
    link: Option<String>,
    content: u64,
}

impl Revision {
    /// The basename of the symlink target the manifests are read through (a git-sync commit, a
    /// Kubernetes `..2026_11_25_…` directory), if any.
    pub fn link_target(&self) -> Option<&str> {
        self.link.as_deref()
    }

    /// A hash over the manifest files' names and contents.
    pub fn content_hash(&self) -> u64 {
        self.content
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The content is part of a linked revision too: a worktree can be edited in place, and a
        // symlink that is no GitOps swap (`/etc/converge → /data/converge`) never changes.
        match &self.link {
            Some(link) => write!(f, "{link}@{:08x}", self.content >> 32),
            None => write!(f, "{:016x}", self.content),
        }
    }
}

/// The revision of the manifests at `path` (see [`Revision`]).
pub fn revision(path: &Path) -> io::Result<Revision> {
    let (dir, link) = resolve_manifests(path)?;
    let content = load_dir_lenient_cached(&dir, &mut ParseCache::default()).content;
    Ok(Revision { link, content })
}

/// The revision of manifests read from `path` whose content hash the loader computed as it
/// read them: the files are not read a second time.
pub fn revision_with_content(path: &Path, content: u64) -> io::Result<Revision> {
    let (_, link) = resolve_manifests(path)?;
    Ok(Revision { link, content })
}

/// The directory `path` leads to, and the name of the link target it is read through (see
/// [`Revision::link_target`]).
fn resolve_manifests(path: &Path) -> io::Result<(PathBuf, Option<String>)> {
    let res = resolve(path)?;
    let dir = res.target.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a directory", path.display()),
        )
    })?;
    let link = match res.link {
        Some(link) => Some(link),
        // A Kubernetes volume: the directory is real, its files lead through `..data`.
        None => fs::read_link(dir.join("..data"))
            .ok()
            .and_then(|t| t.file_name().map(OsStr::to_owned)),
    };
    Ok((dir, link.map(|l| l.to_string_lossy().into_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::ErrorKind;
    use notify::event::{CreateKind, DataChange, Flag};

    fn interest() -> Interest {
        Interest::from_resolution(&Resolution {
            points: vec![(PathBuf::from("/git"), OsString::from("current"))],
            link: Some(OsString::from("rev2")),
            target: Some(PathBuf::from("/git/rev2")),
        })
    }

    /// What each event says, for the ones that matter.
    fn reasons_of(events: Vec<Event>, interest: &Interest) -> Vec<String> {
        events
            .into_iter()
            .filter_map(|e| dirty_reason(&Ok(e), interest))
            .map(|d| d.change.to_string())
            .collect()
    }

    fn modify(path: &str) -> Event {
        Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any))).add_path(path.into())
    }

    #[test]
    fn rescan_is_dirty() {
        let rescan = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        let reasons = reasons_of(vec![rescan], &interest());
        assert_eq!(reasons, ["rescan (the watcher lost events)"]);
    }

    #[test]
    fn errors_are_dirty() {
        let err = notify::Error::new(ErrorKind::MaxFilesWatch).add_path("/git/rev2".into());
        let dirty = dirty_reason(&Err(err), &interest()).expect("an error matters");
        assert!(
            dirty.change.to_string().starts_with("watcher error"),
            "{dirty:?}"
        );
        assert!(!dirty.swap);
    }

    #[test]
    fn events_of_the_manifest_directory_and_the_link_are_dirty() {
        let reasons = reasons_of(
            vec![
                modify("/git/rev2/web.yaml"),
                Event::new(EventKind::Create(CreateKind::File)).add_path("/git/current".into()),
                Event::new(EventKind::Remove(notify::event::RemoveKind::Folder))
                    .add_path("/git/rev2".into()),
            ],
            &interest(),
        );
        assert_eq!(
            reasons,
            ["web.yaml modified", "current created", "rev2 removed"]
        );
    }

    #[test]
    fn a_rename_onto_the_link_is_dirty_once() {
        let rename = |mode, paths: &[&str]| {
            paths.iter().fold(
                Event::new(EventKind::Modify(ModifyKind::Name(mode))),
                |e, p| e.add_path(p.into()),
            )
        };
        // As notify reports `mv tmp-link current`: the two halves, then the pair.
        let reasons = reasons_of(
            vec![
                rename(RenameMode::From, &["/git/tmp-link"]),
                rename(RenameMode::To, &["/git/current"]),
                rename(RenameMode::Both, &["/git/tmp-link", "/git/current"]),
            ],
            &interest(),
        );
        assert_eq!(reasons, ["current moved in"]);
    }

    #[test]
    fn regression_a_rename_onto_the_path_is_a_swap_whatever_was_seen_before_it() {
        // `mv m m.old && mv m.new m`: the old directory's own "moved away" event, handled first,
        // found m.new already in place and moved the watches; the "moved in" that followed
        // changed nothing more, and was taken for an edit: no trigger for the whole quiet
        // period (forever in the test that found it).
        let moved_in = |path: &str| {
            Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To))).add_path(path.into())
        };
        let swap = |event: Event| dirty_reason(&Ok(event), &interest()).map(|d| d.swap);
        assert_eq!(swap(moved_in("/git/current")), Some(true));
        // A file renamed into the manifest directory is an edit (an editor's save).
        assert_eq!(swap(moved_in("/git/rev2/web.yaml")), Some(false));
        let created =
            Event::new(EventKind::Create(CreateKind::Any)).add_path("/git/current".into());
        assert_eq!(swap(created), Some(false));
    }

    #[test]
    fn reads_siblings_and_stale_directories_are_not() {
        let open = Event::new(EventKind::Access(AccessKind::Open(AccessMode::Any)))
            .add_path("/git/rev2/web.yaml".into());
        let close = Event::new(EventKind::Access(AccessKind::Close(AccessMode::Read)))
            .add_path("/git/rev2".into());
        let reasons = reasons_of(
            vec![
                open,
                close,
                modify("/git/other"),
                modify("/git/rev1/web.yaml"),
            ],
            &interest(),
        );
        assert!(reasons.is_empty(), "{reasons:?}");
        let written = Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write)))
            .add_path("/git/rev2/web.yaml".into());
        assert_eq!(reasons_of(vec![written], &interest()), ["web.yaml written"]);
    }

    #[test]
    fn reasons_are_summarised() {
        let mut reasons = Reasons::default();
        for (subject, what) in [("a", "x"), ("b", "x"), ("a", "y"), ("c", "x"), ("d", "x")] {
            reasons.add(Change::new(subject, what));
        }
        reasons.add_first(Change::new("symlink", "swapped to rev2"));
        assert_eq!(
            reasons.take(),
            "symlink swapped to rev2, a x, b x (+2 more)"
        );
        assert_eq!(reasons.take(), "");
    }

    #[test]
    fn only_a_rename_over_data_in_the_manifest_directory_is_a_swap() {
        let volume = Interest::from_resolution(&Resolution {
            points: vec![(PathBuf::from("/etc"), OsString::from("cm"))],
            link: None,
            target: Some(PathBuf::from("/etc/cm")),
        });
        let rename = |from: &str, to: &str| {
            Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
                .add_path(from.into())
                .add_path(to.into())
        };
        let swap = |event: Event| dirty_reason(&Ok(event), &volume).map(|d| d.swap);
        // The pair after the halves says nothing new.
        assert_eq!(swap(rename("/etc/cm/..data_tmp", "/etc/cm/..data")), None);
        let moved_in = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
            .add_path("/etc/cm/..data".into());
        assert_eq!(swap(moved_in), Some(true));
        // An edit of a file, or `..data` created or renamed away, is no swap.
        assert_eq!(swap(modify("/etc/cm/web.yaml")), Some(false));
        let created =
            Event::new(EventKind::Create(CreateKind::Any)).add_path("/etc/cm/..data".into());
        assert_eq!(swap(created), Some(false));
        let moved_away = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::From)))
            .add_path("/etc/cm/..data".into());
        assert_eq!(swap(moved_away), Some(false));
        // Not in the manifest directory: not watched for its entries at all.
        let elsewhere = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
            .add_path("/etc/..data".into());
        assert_eq!(swap(elsewhere), None);
    }

    #[test]
    fn a_swap_a_replacement_or_a_rename_into_place_is_complete() {
        for renamed_in in [false, true] {
            assert!(Moved::Swapped("rev2".into()).is_complete(renamed_in));
            assert!(Moved::Replaced("/m".into()).is_complete(renamed_in));
            assert!(!Moved::Gone.is_complete(renamed_in));
        }
        assert!(Moved::Appeared("/m".into()).is_complete(true));
        assert!(!Moved::Appeared("/m".into()).is_complete(false));
    }

    #[test]
    fn the_quiet_period_runs_from_the_last_change() {
        let t = Timing::new(Duration::from_millis(200));
        let change = Instant::now();
        assert_eq!(
            t.deadline(change, change),
            change + Duration::from_millis(200)
        );
        // A later change in the same period moves the deadline…
        let later = change + Duration::from_millis(150);
        assert_eq!(
            t.deadline(change, later),
            later + Duration::from_millis(200)
        );
        // …but a directory that never stays quiet is still re-read.
        let busy = change + Duration::from_secs(60);
        assert_eq!(t.deadline(change, busy), change + t.max_wait);
    }

    #[test]
    fn resolve_records_links_and_the_last_component() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(tmp.path()).expect("canonicalize");
        fs::create_dir_all(root.join("rev1/sub")).expect("mkdir");
        std::os::unix::fs::symlink("rev1", root.join("current")).expect("symlink");
        let res = resolve(&root.join("current/sub")).expect("resolve");
        assert_eq!(
            res.points,
            [
                (root.clone(), OsString::from("current")),
                (root.join("rev1"), OsString::from("sub"))
            ]
        );
        assert_eq!(res.link.as_deref(), Some(OsStr::new("rev1")));
        assert_eq!(res.target, Some(root.join("rev1/sub")));

        let res = resolve(&root.join("missing/deeper")).expect("resolve");
        assert_eq!(res.points, [(root.clone(), OsString::from("missing"))]);
        assert_eq!(res.target, None);

        std::os::unix::fs::symlink("loop", root.join("loop")).expect("symlink");
        assert!(resolve(&root.join("loop")).is_err());
    }
}
