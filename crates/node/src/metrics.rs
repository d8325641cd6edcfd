//! The daemon's metrics, out: what the daemon tells ([`Metrics`], its hooks), the actions
//! counted where they run ([`count_action`]), and the two ways out configured by `metrics:`
//! (both off by default): `GET /metrics` over HTTP, and a node_exporter textfile. What the
//! metrics are and their text are the core's ([`converge_core::metrics`]).
//!
//! The daemon's loop only records into a shared state (a lock held for a few map updates); the
//! text is rendered by whoever reads it, the HTTP connection or the textfile writer, each on a
//! task of its own. A render holds the lock too (3 ms for 1,000 services, see
//! docs/performance.md): a hook of the daemon's may wait that long, never for a client's I/O.
//! A slow or stuck client holds a connection slot and its own task, never the daemon.
//!
//! The HTTP side is a few dozen lines on tokio rather than hyper: it has one route, answers one
//! request per connection (`Connection: close`, no keep-alive), reads at most
//! [`REQUEST_MAX`] bytes of a request's head within [`CONNECTION_TIMEOUT`] and never a body,
//! and serves at most [`MAX_CONNECTIONS`] clients at once. hyper with hyper-util would bring a
//! dozen crates for that, and the bounds above would still be ours to set.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use converge_core::config::MetricsConfig;
use converge_core::metrics::{
    ActionResult, CONTENT_TYPE, Histogram, ResultKind, ServiceMetrics, ServiceObservation,
    Snapshot, render,
};

/// converge's version, for `converge_build_info`.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A request's head (request line and headers) longer than this is refused (431): a scraper
/// sends a few hundred bytes.
pub const REQUEST_MAX: usize = 8 * 1024;

/// A connection is closed this long after it was accepted, whatever it is doing: reading the
/// request and writing the answer (some MB for thousands of services) take milliseconds on the
/// loopback. Scrape timeouts are 10 s by default: a scraper never waits this long.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; one more is closed as soon as it is accepted. A scraper or two
/// and a person with curl need no more, and clients that hold their connection open without a
/// word cost at most this many tasks until their timeout.
pub const MAX_CONNECTIONS: usize = 8;

/// The textfile is replaced at most this often: a burst of reconciles (a start with hundreds of
/// services) costs one write a second, not one per reconcile.
pub const TEXTFILE_EVERY: Duration = Duration::from_secs(1);

/// The textfile's mode: node_exporter reads it as its own user. Nothing in it is secret that
/// `converge status` does not show to whoever can run it.
const TEXTFILE_MODE: u32 = 0o644;

/// Actions run by this process, by kind and result. Process-wide, where each action runs
/// ([`count_action`]): the act layer knows nothing of the daemon. The keys are the planner's
/// fixed action names, so the map stays small.
static ACTIONS: Mutex<BTreeMap<(&'static str, ActionResult), u64>> = Mutex::new(BTreeMap::new());

/// Counts one action of kind `action` (`Action::name`) that ended as `result`.
pub fn count_action(action: &'static str, result: ActionResult) {
    let mut actions = ACTIONS.lock().unwrap_or_else(PoisonError::into_inner);
    *actions.entry((action, result)).or_default() += 1;
}

fn actions() -> BTreeMap<(&'static str, ActionResult), u64> {
    ACTIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Why the metrics could not start: the daemon does not start either, as with any error in its
/// configuration.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("metrics textfile: {0}")]
    Textfile(String),
}

/// One service, as the metrics know it.
#[derive(Debug, Clone)]
struct Tracked {
    result: ResultKind,
    observation: Option<ServiceObservation>,
    last_success: Option<f64>,
}

impl Default for Tracked {
    fn default() -> Self {
        Tracked {
            result: ResultKind::Pending,
            observation: None,
            last_success: None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    revision: Option<String>,
    manifest_errors: usize,
    reloads_ok: u64,
    reloads_error: u64,
    /// The services in force and the orphans, by name (the order of the text).
    services: BTreeMap<String, Tracked>,
    reconciles: BTreeMap<ResultKind, u64>,
    durations: Histogram,
}

impl State {
    fn render(&self) -> String {
        let snapshot = Snapshot {
            version: VERSION,
            revision: self.revision.as_deref(),
            manifest_errors: self.manifest_errors,
            reloads_ok: self.reloads_ok,
            reloads_error: self.reloads_error,
            services: self
                .services
                .iter()
                .map(|(name, t)| ServiceMetrics {
                    service: name,
                    result: t.result,
                    observation: t.observation.as_ref(),
                    last_success: t.last_success,
                })
                .collect(),
            reconciles: self.reconciles.clone(),
            reconcile_seconds: Some(&self.durations),
            actions: actions(),
        };
        render(&snapshot)
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Told after each change: the textfile writer's cue.
    changed: Notify,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_one();
    }

    fn render(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .render()
    }
}

/// The daemon's metrics: its hooks record what it learns; the HTTP server and the textfile
/// writer read it.
#[derive(Debug)]
pub struct Metrics {
    shared: Arc<Shared>,
    /// Where the HTTP server listens, when it does (the port the system chose for port 0).
    addr: Option<SocketAddr>,
    textfile: Option<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// Starts what `config` turns on; `None` when it turns nothing on. Binding the listener and
    /// checking the textfile's directory are what can fail, and a failure stops the start: a
    /// monitoring that silently does not run is worse than a daemon that says why it cannot.
    pub async fn start(config: &MetricsConfig) -> Result<Option<Metrics>, MetricsError> {
        if !config.is_on() {
            return Ok(None);
        }
        let shared = Arc::new(Shared::default());
        let mut tasks = Vec::new();
        let mut addr = None;
        if let Some(textfile) = &config.textfile {
            textfile_dir(textfile).map_err(MetricsError::Textfile)?;
        }
        if let Some(listen) = config.listen {
            let listener =
                TcpListener::bind(listen)
                    .await
                    .map_err(|source| MetricsError::Bind {
                        addr: listen,
                        source,
                    })?;
            let bound = listener.local_addr().map_err(|source| MetricsError::Bind {
                addr: listen,
                source,
            })?;
            tracing::info!("metrics: serving http://{bound}/metrics");
            addr = Some(bound);
            tasks.push(tokio::spawn(accept(listener, Arc::clone(&shared))));
        }
        if let Some(textfile) = &config.textfile {
            tracing::info!("metrics: writing {}", textfile.display());
            tasks.push(tokio::spawn(write_textfile_loop(
                textfile.clone(),
                Arc::clone(&shared),
            )));
        }
        Ok(Some(Metrics {
            shared,
            addr,
            textfile: config.textfile.clone(),
            tasks,
        }))
    }

    /// Where `GET /metrics` is served, when it is.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The text as a scrape would get it now.
    pub fn render(&self) -> String {
        self.shared.render()
    }

    /// An observation of `service` (after a reconcile, or in a batched look).
    pub fn saw(&self, service: &str, observation: &ServiceObservation) {
        let converged = observation.converged;
        self.shared.update(|state| {
            let tracked = state.services.entry(service.to_string()).or_default();
            tracked.observation = Some(observation.clone());
            if converged {
                tracked.last_success = Some(now_seconds());
            }
        });
    }

    /// A reconcile of one service ended as `result` after `took`.
    pub fn reconciled(&self, result: ResultKind, took: Duration) {
        self.shared.update(|state| {
            *state.reconciles.entry(result).or_default() += 1;
            state.durations.observe(took.as_secs_f64());
        });
    }

    /// A read of the manifest directory was taken in; `errors`: it found some.
    pub fn reloaded(&self, errors: bool) {
        self.shared.update(|state| {
            if errors {
                state.reloads_error += 1;
            } else {
                state.reloads_ok += 1;
            }
        });
    }

    /// What the daemon's view says now: the revision in force, how many manifest errors, and
    /// each service (in force or orphaned) with its result. A service no longer listed is
    /// forgotten.
    pub fn in_force<'a>(
        &self,
        revision: Option<&str>,
        manifest_errors: usize,
        services: impl Iterator<Item = (&'a str, ResultKind)>,
    ) {
        self.shared.update(|state| {
            state.revision = revision.map(str::to_string);
            state.manifest_errors = manifest_errors;
            let mut kept = BTreeMap::new();
            for (name, result) in services {
                let mut tracked = state.services.remove(name).unwrap_or_default();
                tracked.result = result;
                kept.insert(name.to_string(), tracked);
            }
            state.services = kept;
        });
    }

    /// Stops serving, and writes the textfile a last time: what it holds after the daemon
    /// exits is its state at the exit (node_exporter's `node_textfile_mtime_seconds` tells how
    /// old it is).
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(path) = self.textfile {
            let text = self.shared.render();
            let written =
                tokio::task::spawn_blocking(move || write_textfile(&path, text.as_bytes())).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("{e}"),
                Err(e) => tracing::warn!("metrics textfile: {e}"),
            }
        }
    }
}

/// Accepts connections until aborted, each served on a task of its own.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, mostly: wait for some to be freed rather than spin.
                tracing::debug!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Every slot is held, by slow or silent clients: this one is closed now rather than
            // queued behind them; a scraper tries again at its next interval.
            drop(stream);
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(CONNECTION_TIMEOUT, serve_one(stream, &shared)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("metrics: a connection ended: {e}"),
                Err(_) => tracing::debug!("metrics: a client took too long: closed"),
            }
        });
    }
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `GET /metrics`: the metrics.
    Metrics,
    /// 400: not an HTTP/1 request line.
    BadRequest,
    /// 404: another path.
    NotFound,
    /// 405: another method on `/metrics`.
    MethodNotAllowed,
    /// 431: a head longer than [`REQUEST_MAX`].
    TooLarge,
}

/// The answer to a request whose head (up to its blank line, or [`REQUEST_MAX`] bytes of it)
/// is `head`. Only the request line matters: no header changes the answer.
pub fn answer(head: &[u8]) -> Answer {
    let line_end = head.iter().position(|b| *b == b'\n');
    let Some(line) = line_end.map(|end| &head[..end]) else {
        return if head.len() >= REQUEST_MAX {
            Answer::TooLarge
        } else {
            Answer::BadRequest
        };
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return Answer::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Answer::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Answer::BadRequest;
    }
    if !head_complete(head) {
        return Answer::TooLarge;
    }
    // A query string changes nothing (some scrapers add one).
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET", "/metrics") => Answer::Metrics,
        (_, "/metrics") => Answer::MethodNotAllowed,
        _ => Answer::NotFound,
    }
}

/// Whether `head` holds the blank line that ends a request's head.
fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// The bytes of `answer`'s response; `body` is the metrics' text for [`Answer::Metrics`].
pub fn response(answer: Answer, body: &str) -> Vec<u8> {
    let (status, content_type, body, allow) = match answer {
        Answer::Metrics => ("200 OK", CONTENT_TYPE, body, ""),
        Answer::BadRequest => ("400 Bad Request", "text/plain", "bad request\n", ""),
        Answer::NotFound => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n",
            "",
        ),
        Answer::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed: GET only\n",
            "Allow: GET\r\n",
        ),
        Answer::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain",
            "request head too large\n",
            "",
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Reads one request's head and answers it; the caller bounds the time.
async fn serve_one(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head_complete(&head) && head.len() < REQUEST_MAX {
        let room = (REQUEST_MAX - head.len()).min(chunk.len());
        let read = stream.read(&mut chunk[..room]).await?;
        if read == 0 {
            // Closed before a whole head: nobody to answer.
            return Ok(());
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let answer = answer(&head);
    let body = if answer == Answer::Metrics {
        shared.render()
    } else {
        String::new()
    };
    stream.write_all(&response(answer, &body)).await?;
    stream.shutdown().await?;
    // What the client still sends (a body, the rest of a head too long) is read and dropped
    // before closing: closing with unread data makes the kernel reset the connection, and the
    // client could lose the answer. Bounded in bytes and time like the rest.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut drained = 0;
        while drained < DRAIN_MAX {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => drained += read,
            }
        }
    })
    .await;
    Ok(())
}

/// After the answer, at most this much of what the client still sends is read, for at most
/// this long (see [`serve_one`]).
const DRAIN_MAX: usize = 64 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Rewrites the textfile after changes, at most once every [`TEXTFILE_EVERY`], until aborted.
async fn write_textfile_loop(path: PathBuf, shared: Arc<Shared>) {
    let mut failing: Option<String> = None;
    loop {
        shared.changed.notified().await;
        let text = shared.render();
        let target = path.clone();
        let written =
            tokio::task::spawn_blocking(move || write_textfile(&target, text.as_bytes())).await;
        let error = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(format!("metrics textfile: {e}")),
        };
        // A lasting problem is said once, and its end once.
        match (&error, &failing) {
            (Some(e), Some(before)) if e == before => {}
            (Some(e), _) => tracing::warn!("{e}"),
            (None, Some(_)) => tracing::info!("metrics: {} written again", path.display()),
            (None, None) => {}
        }
        failing = error;
        tokio::time::sleep(TEXTFILE_EVERY).await;
    }
}

/// The textfile's directory, checked as converge checks where it writes
/// ([`crate::secure::check_path`]): it must exist, and neither it nor anything on its path may
/// be changeable by another user, who could otherwise aim the write elsewhere. Its path with
/// every symlink resolved.
fn textfile_dir(path: &Path) -> Result<PathBuf, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| format!("{} names no directory", path.display()))?;
    let resolved =
        crate::secure::check_path(dir, "metrics textfile directory").map_err(|e| e.to_string())?;
    if !resolved.missing.is_empty() {
        return Err(format!(
            "the directory of {} does not exist (converge does not create it: it is node_exporter's)",
            path.display()
        ));
    }
    Ok(resolved.existing)
}

/// Replaces the textfile with `text`, in its directory as checked now, by rename: never written
/// through a symlink, and node_exporter never reads half of it.
fn write_textfile(path: &Path, text: &[u8]) -> Result<(), String> {
    let dir = textfile_dir(path)?;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    converge_core::fsutil::write_atomic_with_mode(&dir.join(name), text, TEXTFILE_MODE)
        .map_err(|e| format!("cannot write the metrics textfile {}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
