//! Mount table changes as [`Trigger::Mounts`].
//!
//! The kernel flags an open `/proc/self/mountinfo` with POLLPRI (and POLLERR) when the mount
//! namespace's table changes; reading the file again re-arms the flag. A dedicated thread
//! blocks in poll(2) on it and on a stop pipe, so an idle node costs nothing: no timer, no
//! re-reading on a schedule.
//!
//! A burst of changes (a recursive mount, a container starting) becomes few triggers: the first
//! change is sent at once, later ones at most once per [`WINDOW`], and the last change of a
//! burst is always sent once its window ends.
//!
//! A path that is not a /proc mount table (a plain file, as in tests) never raises POLLPRI:
//! the watch starts and simply never fires. The daemon's periodic resync covers that case, as
//! it covers a watch that ended on an error.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;

use rustix::event::{PollFd, PollFlags, Timespec};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::trigger::{Trigger, TriggerSender};
use crate::observer::MOUNTINFO_MAX;

/// At most one trigger per window.
pub const WINDOW: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum MountWatchError {
    #[error("cannot open the mount table {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read the mount table {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("watching the mount table {path}: cannot create a pipe: {source}")]
    Pipe { path: PathBuf, source: io::Error },
    #[error("watching the mount table {path}: cannot start a thread: {source}")]
    Thread { path: PathBuf, source: io::Error },
}

/// The running watch. Dropping it (or [`MountWatch::stop`]) ends the thread and waits for it.
pub struct MountWatch {
    /// Closing it wakes the thread (POLLHUP on the read end).
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl MountWatch {
    /// Opens `path` (normally `/proc/self/mountinfo`) and starts watching it. Fails only when
    /// the file cannot be opened or read, or the thread cannot start.
    pub fn start(path: PathBuf, tx: TriggerSender) -> Result<MountWatch, MountWatchError> {
        // Without blocking on a FIFO, and only a regular file (a /proc file is one): reading
        // `/dev/zero` to its end would never end.
        let open = || -> io::Result<File> {
            let file = crate::secure::open_input(&path).map_err(io::Error::other)?;
            let kind = converge_core::fsutil::not_regular(file.metadata()?.file_type());
            match kind {
                None => Ok(file),
                Some(kind) => Err(io::Error::other(format!(
                    "not a regular file (it is {kind})"
                ))),
            }
        };
        let mut file = open().map_err(|source| MountWatchError::Open {
            path: path.clone(),
            source,
        })?;
        // The first read sets the baseline the kernel compares later changes with.
        let mut buf = Vec::new();
        reread(&mut file, &mut buf).map_err(|source| MountWatchError::Read {
            path: path.clone(),
            source,
        })?;
        let (stop_read, stop_write) = pipe().map_err(|source| MountWatchError::Pipe {
            path: path.clone(),
            source,
        })?;
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("mount-watch".into())
            .spawn(move || watch(file, buf, &thread_path, stop_read, tx))
            .map_err(|source| MountWatchError::Thread { path, source })?;
        Ok(MountWatch {
            stop: Some(stop_write),
            thread: Some(thread),
        })
    }

    /// Ends the watch; returns once its thread has.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for MountWatch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread wakes on the pipe's hang-up at once; a panic in it was already
            // reported by the panic hook.
            let _ = thread.join();
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Reads the whole table: a seek to the start and a read to the end is what re-arms POLLPRI.
/// At most [`MOUNTINFO_MAX`], as the observer reads it; a larger table is an error.
fn reread(file: &mut File, buf: &mut Vec<u8>) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    buf.clear();
    file.take(MOUNTINFO_MAX + 1).read_to_end(buf)?;
    if buf.len() as u64 > MOUNTINFO_MAX {
        buf.clear();
        return Err(io::Error::other(format!(
            "larger than {MOUNTINFO_MAX} bytes"
        )));
    }
    Ok(())
}

fn watch(mut file: File, mut buf: Vec<u8>, path: &Path, stop: OwnedFd, tx: TriggerSender) {
    let mut coalescer = Coalescer::default();
    loop {
        let timeout = coalescer
            .wait(Instant::now())
            // The wait is at most one coalescing window; a conversion that fails cannot happen.
            .map(|wait| {
                Timespec::try_from(wait).unwrap_or(Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                })
            });
        let mut fds = [
            PollFd::new(&file, PollFlags::PRI),
            PollFd::new(&stop, PollFlags::IN),
        ];
        if let Err(e) = rustix::event::poll(&mut fds, timeout.as_ref()) {
            if e == rustix::io::Errno::INTR {
                continue;
            }
            tracing::warn!(
                "watching the mount table {}: {e}; watch ended",
                path.display()
            );
            return;
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        let revents = fds[0].revents();
        if revents.contains(PollFlags::NVAL) {
            tracing::warn!(
                "watching the mount table {}: descriptor invalid; watch ended",
                path.display()
            );
            return;
        }
        if revents.intersects(PollFlags::PRI | PollFlags::ERR) {
            // A table that cannot be read cannot be re-armed either: polling on would spin.
            if let Err(e) = reread(&mut file, &mut buf) {
                tracing::warn!(
                    "cannot read the mount table {}: {e}; watch ended",
                    path.display()
                );
                return;
            }
            coalescer.changed();
        }
        if coalescer.take_due(Instant::now()) && tx.send(Trigger::Mounts).is_err() {
            return;
        }
    }
}

/// Turns change notices into triggers: the first at once, then at most one per [`WINDOW`],
/// never losing the last.
#[derive(Debug, Default)]
struct Coalescer {
    last_sent: Option<Instant>,
    pending: bool,
}

impl Coalescer {
    fn changed(&mut self) {
        self.pending = true;
    }

    /// How long until a pending change is due; `None` when nothing is pending.
    fn wait(&self, now: Instant) -> Option<Duration> {
        if !self.pending {
            return None;
        }
        Some(match self.last_sent {
            Some(sent) => WINDOW.saturating_sub(now.saturating_duration_since(sent)),
            None => Duration::ZERO,
        })
    }

    /// True when a trigger is to be sent now (and records it as sent).
    fn take_due(&mut self, now: Instant) -> bool {
        if self.wait(now) != Some(Duration::ZERO) {
            return false;
        }
        self.pending = false;
        self.last_sent = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_change_at_once_then_one_per_window_and_never_the_last_lost() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut c = Coalescer::default();
        assert_eq!(c.wait(t0), None);
        assert!(!c.take_due(t0));

        c.changed();
        assert!(c.take_due(t0));
        assert_eq!(c.wait(ms(1)), None);

        // A burst inside the window: held back, not dropped.
        c.changed();
        c.changed();
        assert!(!c.take_due(ms(10)));
        assert_eq!(c.wait(ms(10)), Some(Duration::from_millis(40)));
        assert!(c.take_due(ms(50)));
        assert!(!c.take_due(ms(51)));

        // Quiet for longer than a window: the next change goes at once again.
        c.changed();
        assert!(c.take_due(ms(500)));
    }

    #[test]
    fn a_plain_file_starts_and_stops_without_triggers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mountinfo");
        std::fs::write(&path, "1 0 0:1 / / rw - tmpfs none rw\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watch = MountWatch::start(path, tx).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        watch.stop();
        assert_eq!(rx.try_recv().ok(), None);
    }

    #[test]
    fn regression_a_device_or_a_fifo_as_the_mount_table_is_refused_at_once() {
        // `mountinfo: /dev/zero` once grew the daemon by a gigabyte a second; a FIFO hung it.
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("mountinfo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        // The FIFO first: without the fix it hangs (and fails at the deadline) rather than eat
        // memory for 10 s.
        for path in [fifo, PathBuf::from("/dev/zero")] {
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let (done, ended) = std::sync::mpsc::channel();
            let shown = path.display().to_string();
            std::thread::spawn(move || {
                let started = MountWatch::start(path, tx).map(MountWatch::stop);
                let _ = done.send(started.map_err(|e| e.to_string()));
            });
            let err = ended
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("{shown}: still reading after 10 s"))
                .expect_err(&shown);
            assert!(err.contains("not a regular file"), "{err}");
        }
    }

    #[test]
    fn a_missing_table_is_an_error_naming_it() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let err = MountWatch::start(PathBuf::from("/nonexistent/mountinfo"), tx)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot open the mount table /nonexistent/mountinfo:"),
            "{err}"
        );
    }
}
