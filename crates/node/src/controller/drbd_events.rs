//! DRBD's own change notifications: a long-running `drbdsetup events2 all` child whose lines
//! become [`Trigger::Drbd`] for the resource they change.
//!
//! The initial dump (everything up to `exists -`) describes what already exists, not changes:
//! it becomes one [`Trigger::Resync`] rather than one trigger per resource. Whenever the stream
//! cannot be trusted — the child died, could not start, or DRBD dropped events (`- skipped`) —
//! a new child is started after a backoff, and the Resync of its dump re-observes everything
//! that may have been missed in between. Nothing here decides anything: the reconcile that
//! follows a trigger observes for itself.

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::trigger::{Trigger, TriggerSender};
use crate::exec::confine::{self, Cell};
use crate::observer::stream_view::StandAloneView;
use crate::state;
use converge_core::config::Config;
use converge_core::observe::events2::{Events2State, SplitBrainNews, parse_line, split_brain_news};

/// The first restart delay; it doubles on each failure in a row, up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A child that completed its dump and ran this long counts as healthy: the next failure starts
/// again from [`INITIAL_BACKOFF`].
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// The reason of the Resync sent when a dump completes.
pub const RESYNC_REASON: &str = "events2 (re)started";
/// How many of the child's last stderr lines an exit report quotes.
const STDERR_TAIL: usize = 3;
/// The longest line of the child's output that is read whole: events2 lines are well under
/// 1 KB. A longer one is skipped, read in pieces of this size, so that a line without end
/// cannot grow the daemon.
const MAX_LINE: usize = 64 * 1024;

/// Why one `events2` child ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{program} not found (not installed, or not in PATH)")]
    NotFound { program: String },
    #[error("cannot run {program} events2: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("reading the output of {program} events2: {source}")]
    Read { program: String, source: io::Error },
    #[error("{program} events2 {how}{stderr}")]
    Ended {
        program: String,
        how: String,
        /// `": last stderr lines"`, or empty.
        stderr: String,
    },
    #[error("{program} events2 reported lost events (\"- skipped\"): restarting it")]
    EventsLost { program: String },
}

/// The running event source. Dropping it (or [`DrbdEvents::stop`]) kills the child.
pub struct DrbdEvents {
    task: JoinHandle<()>,
    child: Arc<Mutex<ChildSlot>>,
    view: Arc<StandAloneView>,
}

impl DrbdEvents {
    /// Starts supervising `<commands.drbdsetup> events2 all`. Must be called within a tokio
    /// runtime. Runs until stopped, or until nobody listens on `tx` any more. `view` is kept
    /// with what the stream says of StandAlone connections.
    pub fn start(config: Arc<Config>, tx: TriggerSender, view: Arc<StandAloneView>) -> DrbdEvents {
        let child = Arc::new(Mutex::new(ChildSlot::default()));
        let task = tokio::spawn(supervise(
            config.commands.drbdsetup.clone(),
            config.state_dir.clone(),
            tx,
            Arc::clone(&child),
            Arc::clone(&view),
        ));
        DrbdEvents { task, child, view }
    }

    /// Kills the child (all of it: its cgroup, or its process group) and ends the supervision.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for DrbdEvents {
    fn drop(&mut self) {
        // Killed here rather than left to the task's cancellation: that runs whenever the
        // runtime gets to it (or never, if it is shutting down), and the child must not outlive
        // the daemon's intent.
        let mut slot = lock(&self.child);
        slot.stopped = true;
        slot.kill();
        drop(slot);
        self.task.abort();
        self.view.stop();
    }
}

/// Where the child currently running runs (its cgroup, or its process group), shared between
/// the task and `stop`.
///
/// It is only killed while the child is not yet reaped (the task takes it out of the slot
/// before it waits), so a process group's id cannot have been reused by an unrelated process.
#[derive(Debug, Default)]
struct ChildSlot {
    cell: Option<Cell>,
    stopped: bool,
}

impl ChildSlot {
    fn kill(&mut self) {
        // A cell dropped unreleased kills all that runs in it, and removes its cgroup once
        // empty.
        drop(self.cell.take());
    }
}

fn lock(slot: &Mutex<ChildSlot>) -> MutexGuard<'_, ChildSlot> {
    // The slot holds plain data that no panic can leave half-written.
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// How one child's run ended.
enum RunEnd {
    /// Stopped, or the receiver is gone: no restart.
    Stop,
    Restart {
        error: StreamError,
        /// The dump completed: the stream worked for a while.
        dump_done: bool,
    },
}

async fn supervise(
    program: String,
    state_dir: PathBuf,
    tx: TriggerSender,
    child: Arc<Mutex<ChildSlot>>,
    view: Arc<StandAloneView>,
) {
    let mut backoff = INITIAL_BACKOFF;
    // The same failure over and over (drbdsetup not installed, no DRBD module) is reported once,
    // not once a minute for the life of the daemon.
    let mut last_problem: Option<String> = None;
    loop {
        let started = Instant::now();
        let end = run_once(&program, &state_dir, &tx, &child, &view).await;
        view.stop();
        let (error, dump_done) = match end {
            RunEnd::Stop => return,
            RunEnd::Restart { error, dump_done } => (error, dump_done),
        };
        if dump_done && started.elapsed() >= HEALTHY_RUN {
            backoff = INITIAL_BACKOFF;
        }
        if dump_done {
            last_problem = None;
        }
        let problem = error.to_string();
        let delay = humantime::format_duration(backoff);
        if last_problem.as_deref() == Some(problem.as_str()) {
            tracing::debug!("{problem} (again); retrying in {delay}");
        } else {
            tracing::warn!("{problem}; retrying in {delay}");
            last_problem = Some(problem);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = tx.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn run_once(
    program: &str,
    state_dir: &Path,
    tx: &TriggerSender,
    slot: &Mutex<ChildSlot>,
    view: &StandAloneView,
) -> RunEnd {
    let (mut child, cell) = match spawn(program) {
        Ok(spawned) => spawned,
        Err(error) => {
            return RunEnd::Restart {
                error,
                dump_done: false,
            };
        }
    };
    {
        let mut slot = lock(slot);
        slot.cell = Some(cell);
        if slot.stopped {
            slot.kill();
            return RunEnd::Stop;
        }
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let events = async {
        let end = match stdout {
            // A quiet stream would otherwise keep the child alive long after the daemon stopped
            // listening.
            Some(stdout) => tokio::select! {
                end = read_events(program, stdout, tx, Some((state_dir, view))) => end,
                () = tx.closed() => Ended::Stop,
            },
            None => Ended::Eof { dump_done: false },
        };
        // Whatever ended the stream, the rest of the group goes too: a child that printed
        // `- skipped` is still running, and a dead one may have left helpers holding stderr.
        lock(slot).kill();
        end
    };
    let (end, stderr_tail) = tokio::join!(events, stderr_tail(program, stderr));
    let status = child.wait().await;
    if lock(slot).stopped {
        return RunEnd::Stop;
    }
    match end {
        Ended::Stop => RunEnd::Stop,
        Ended::Lost { dump_done } => RunEnd::Restart {
            error: StreamError::EventsLost {
                program: program.to_string(),
            },
            dump_done,
        },
        Ended::ReadFailed { source, dump_done } => RunEnd::Restart {
            error: StreamError::Read {
                program: program.to_string(),
                source,
            },
            dump_done,
        },
        Ended::Eof { dump_done } => RunEnd::Restart {
            error: StreamError::Ended {
                program: program.to_string(),
                how: describe(status),
                stderr: if stderr_tail.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr_tail}")
                },
            },
            dump_done,
        },
    }
}

/// Starts the child in a place of its own (as [`crate::exec`] runs every command), so that
/// killing it takes anything it started along.
fn spawn(program: &str) -> Result<(Child, Cell), StreamError> {
    let spawn_error = |source| StreamError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut cell = Cell::new(confine::mode()).map_err(spawn_error)?;
    let mut command = Command::new(program);
    command
        .args(["events2", "all"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cell.prepare(&mut command);
    let child = command.spawn().map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => StreamError::NotFound {
            program: program.to_string(),
        },
        _ => spawn_error(source),
    })?;
    // `id()` is only `None` once the child is reaped, which nothing has done yet.
    if let Some(pid) = child.id() {
        cell.spawned(pid);
    }
    Ok((child, cell))
}

fn describe(status: io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "ended".to_string(),
        },
        Err(e) => format!("ended (waiting for it failed: {e})"),
    }
}

enum Ended {
    Eof { dump_done: bool },
    ReadFailed { source: io::Error, dump_done: bool },
    Lost { dump_done: bool },
    Stop,
}

/// Feeds the child's lines to a fresh [`Events2State`] and sends the triggers they call for.
/// What [`next_line`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// A line (its newline included, unless the stream ended without one), or the end of one
    /// that was [`Line::Long`].
    Whole,
    /// [`MAX_LINE`] bytes of a line that goes on.
    Long,
    Eof,
}

/// Reads the next line into `buf` (emptied first), never more than [`MAX_LINE`] bytes of it.
async fn next_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
) -> io::Result<Line> {
    buf.clear();
    let read = reader.take(MAX_LINE as u64).read_until(b'\n', buf).await?;
    Ok(if read == 0 {
        Line::Eof
    } else if read == MAX_LINE && buf.last() != Some(&b'\n') {
        Line::Long
    } else {
        Line::Whole
    })
}

/// Lines as [`next_line`] reads them, with the pieces of a line longer than [`MAX_LINE`] left
/// out: `Ok(true)` when `buf` holds a line, `Ok(false)` at the end of the stream.
struct Lines<R> {
    reader: BufReader<R>,
    /// In the middle of a long line: what comes up to its newline is skipped.
    skipping: bool,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader: BufReader::new(reader),
            skipping: false,
        }
    }

    async fn next(&mut self, program: &str, buf: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            match next_line(&mut self.reader, buf).await? {
                Line::Eof => return Ok(false),
                Line::Long => {
                    if !self.skipping {
                        tracing::debug!(
                            "{program} events2: skipping a line longer than {MAX_LINE} bytes"
                        );
                    }
                    self.skipping = true;
                }
                Line::Whole if self.skipping => self.skipping = false,
                Line::Whole => return Ok(true),
            }
        }
    }
}

/// Reads the stream; with `keep`, keeps the split brains it reports in the state directory,
/// and what it says of StandAlone connections in the view (always in that order: see
/// [`StandAloneView`]).
async fn read_events(
    program: &str,
    stdout: impl AsyncRead + Unpin,
    tx: &TriggerSender,
    keep: Option<(&Path, &StandAloneView)>,
) -> Ended {
    let mut lines = Lines::new(stdout);
    let mut state = Events2State::new();
    let mut buf = Vec::new();
    loop {
        match lines.next(program, &mut buf).await {
            Ok(false) => {
                return Ended::Eof {
                    dump_done: state.initial_dump_done(),
                };
            }
            Ok(true) => {}
            Err(source) => {
                return Ended::ReadFailed {
                    source,
                    dump_done: state.initial_dump_done(),
                };
            }
        }
        // A stray byte must not end the stream: it costs at most that one line.
        let line = String::from_utf8_lossy(&buf);
        let event = match parse_line(&line) {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(
                    "{program} events2: skipping a line ({e}): {:?}",
                    line.trim_end()
                );
                continue;
            }
        };
        if let (Some((dir, view)), Some(news)) = (keep, split_brain_news(&event)) {
            note_split_brain(dir, &news);
            view.split_brain(&news);
        }
        let dump_was_done = state.initial_dump_done();
        let changed = state.apply(&event);
        if state.events_lost() {
            return Ended::Lost {
                dump_done: state.initial_dump_done(),
            };
        }
        if let Some((_, view)) = keep {
            if !dump_was_done {
                if state.initial_dump_done() {
                    view.start(state.resources().iter().map(|(n, r)| (n.as_str(), r)));
                }
            } else if let Some(res) = changed {
                view.update(res, state.resources().get(res));
            }
        }
        let trigger = if !dump_was_done {
            // During the dump every resource "changes"; its end stands for all of them.
            state.initial_dump_done().then(|| Trigger::Resync {
                reason: RESYNC_REASON.to_string(),
            })
        } else {
            changed.map(|resource| Trigger::Drbd {
                resource: resource.to_string(),
            })
        };
        if let Some(trigger) = trigger
            && tx.send(trigger).is_err()
        {
            return Ended::Stop;
        }
    }
}

/// Keeps what the stream says of split brains in `state_dir` (DRBD says it once, when it calls
/// its handler; after that the connection is only StandAlone), and says it: at error level
/// once when found, at info level when the connection is back.
fn note_split_brain(state_dir: &Path, news: &SplitBrainNews<'_>) {
    match news {
        SplitBrainNews::Found { res, peer } => {
            match state::record_split_brain(state_dir, res, peer) {
                Ok(true) => tracing::error!(
                    "resource {res}: split brain with {peer}: both sides wrote what the other has not, and DRBD dropped the connection. converge does not reconnect it and never chooses whose writes to discard: resolve it by hand (docs/operations.md, \"Split brain\")"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    "resource {res}: split brain with {peer}, which converge cannot record ({e}): it is refused while this event stream runs, and taken for merely StandAlone after a restart of the stream or of converge"
                ),
            }
        }
        SplitBrainNews::Connected { res, peer } => {
            match state::forget_split_brain(state_dir, res, peer) {
                Ok(true) => tracing::info!(
                    "resource {res}: connected to {peer} again: the split brain is resolved"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    "resource {res}: connected to {peer} again, but the record of its split brain stays: {e}"
                ),
            }
        }
    }
}

/// The child's last stderr lines, joined for an error message; each is logged at debug.
async fn stderr_tail(program: &str, stderr: Option<impl AsyncRead + Unpin>) -> String {
    let Some(stderr) = stderr else {
        return String::new();
    };
    let mut lines = Lines::new(stderr);
    let mut tail = VecDeque::with_capacity(STDERR_TAIL);
    let mut buf = Vec::new();
    loop {
        match lines.next(program, &mut buf).await {
            Ok(false) | Err(_) => break,
            Ok(true) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim().to_string();
        // drbd-utils' noise on machines without the module.
        if line.is_empty() || line.contains("modinfo") {
            continue;
        }
        tracing::debug!("{program} events2: {line}");
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Vec::from(tail).join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn regression_a_line_without_end_is_read_in_bounded_pieces() {
        // A child printing without a newline once grew the daemon for as long as it printed.
        let endless = tokio::io::repeat(b'x').take(64 * 1024 * 1024);
        let mut reader = BufReader::new(endless.chain(&b"\nexists -\n"[..]));
        let mut buf = Vec::new();
        assert_eq!(
            next_line(&mut reader, &mut buf).await.expect("read"),
            Line::Long
        );
        assert_eq!(buf.len(), MAX_LINE);
        let mut pieces = 1;
        while next_line(&mut reader, &mut buf).await.expect("read") == Line::Long {
            assert!(buf.len() <= MAX_LINE);
            pieces += 1;
        }
        assert_eq!(pieces, 64 * 1024 * 1024 / MAX_LINE);
        assert_eq!(buf, b"\n", "the end of the long line");
        assert_eq!(
            next_line(&mut reader, &mut buf).await.expect("read"),
            Line::Whole
        );
        assert_eq!(buf, b"exists -\n");
        assert_eq!(
            next_line(&mut reader, &mut buf).await.expect("read"),
            Line::Eof
        );
    }

    #[tokio::test]
    async fn a_long_line_is_skipped_and_the_stream_goes_on() {
        let long = vec![b'x'; 3 * MAX_LINE + 7];
        let stream = [&long[..], b"\nexists -\n"].concat();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let end = read_events("drbdsetup", &stream[..], &tx, None).await;
        assert!(matches!(end, Ended::Eof { dump_done: true }));
        assert!(matches!(
            rx.try_recv(),
            Ok(Trigger::Resync { reason }) if reason == RESYNC_REASON
        ));
        let tail = stderr_tail("drbdsetup", Some(&stream[..])).await;
        assert_eq!(tail, "exists -");
    }

    /// The lines of the fixture's plain run: from its first line after the command to the exit
    /// code.
    fn split_brain_run() -> Vec<&'static str> {
        include_str!("../../../core/tests/fixtures/events2/web-split-brain.test")
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("124"))
            .collect()
    }

    #[tokio::test]
    async fn a_split_brain_in_the_stream_is_kept_until_the_connection_is_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain: String = split_brain_run().iter().map(|l| format!("{l}\n")).collect();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let view = StandAloneView::default();
        let keep = Some((dir.path(), &view));
        read_events("drbdsetup", plain.as_bytes(), &tx, keep).await;
        let records = state::split_brains(dir.path());
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(
            (records[0].res.as_str(), records[0].peer.as_str()),
            ("web", "deb2")
        );
        let seen = view.snapshot().expect("the dump was read");
        assert_eq!(
            seen.standalone
                .get("web")
                .map(|p| p.iter().map(String::as_str).collect::<Vec<_>>()),
            Some(vec!["deb2"])
        );
        // Resolved by hand: the next stream (a restarted child's dump) sees it connected.
        let later = "exists connection name:web peer-node-id:1 conn-name:deb2 connection:Connected role:Secondary\nexists -\n";
        read_events("drbdsetup", later.as_bytes(), &tx, keep).await;
        assert!(state::split_brains(dir.path()).is_empty());
        assert_eq!(view.snapshot(), Some(Default::default()));
    }

    /// The order the reconnection rests on: when the view first shows a connection StandAlone,
    /// the split brain that dropped it is already recorded.
    #[tokio::test]
    async fn a_split_brain_is_recorded_before_the_view_shows_its_connection_standalone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = split_brain_run();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut shown = false;
        // Each prefix of the stream, as a reader cut off after it would have left things.
        for end in 1..=plain.len() {
            let dir_n = dir.path().join(end.to_string());
            std::fs::create_dir(&dir_n).expect("mkdir");
            let view = StandAloneView::default();
            let text: String = plain[..end].iter().map(|l| format!("{l}\n")).collect();
            read_events("drbdsetup", text.as_bytes(), &tx, Some((&dir_n, &view))).await;
            let seen = view.snapshot().unwrap_or_default();
            let standalone = seen
                .standalone
                .get("web")
                .is_some_and(|p| p.contains("deb2"));
            if standalone {
                shown = true;
                assert_eq!(state::split_brains(&dir_n).len(), 1, "after line {end}");
                let in_view = seen.split_brains.get("web").map(Vec::len);
                assert_eq!(in_view, Some(1), "after line {end}: {seen:?}");
            }
        }
        assert!(shown, "the fixture ends StandAlone");
    }

    /// A split brain the state directory cannot take (a full disk, here a file where the
    /// directory should be) is still held while the stream runs: the view has it.
    #[tokio::test]
    async fn a_split_brain_that_cannot_be_recorded_is_still_in_the_view() {
        let dir = tempfile::tempdir().expect("tempdir");
        let not_a_dir = dir.path().join("state");
        std::fs::write(&not_a_dir, "").expect("write");
        let plain: String = split_brain_run().iter().map(|l| format!("{l}\n")).collect();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let view = StandAloneView::default();
        read_events(
            "drbdsetup",
            plain.as_bytes(),
            &tx,
            Some((&not_a_dir, &view)),
        )
        .await;
        assert!(
            state::split_brains(&not_a_dir).is_empty(),
            "nothing recorded"
        );
        let seen = view.snapshot().expect("the dump was read");
        let peers: Vec<&str> = seen.split_brains["web"]
            .iter()
            .map(|s| s.peer.as_str())
            .collect();
        assert_eq!(peers, ["deb2"]);
    }
}
