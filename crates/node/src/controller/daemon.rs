//! `converge run`: keeps the node converged as manifests and the node change.
//!
//! One task owns all the state. Event sources (the manifest watcher, DRBD events2, the mount
//! table watch, the resync timer, SIGHUP) send [`Trigger`]s. The daemon maps each trigger to the
//! services it concerns and asks the [`Scheduler`] which reconciles start; the scheduler's
//! guarantees (one run per service at a time, requests merged, at most `concurrency` at once,
//! backoff after failures) are its own, tested there. A blocked service waits for the next
//! relevant event or resync.
//!
//! The trigger's reason is logged and never used by the reconcile, which observes what it
//! decides on. The scheduler writes its view to `state_dir/daemon.json` atomically after a
//! change, at most once a second ([`VIEW_EVERY`]), for `converge status`.
//!
//! The manifest directory is read on a blocking thread, one read at a time, and what it found
//! is taken in by the loop (see [`super::desired`]): a reload that parses many large broken
//! files holds up neither the other events nor SIGTERM. A change arriving during a read is read
//! again after it. At shutdown the read under way is abandoned between two files and never
//! taken in: the manifests in force stay as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::Waits;
use super::desired::{DesiredSet, Read};
use super::once::{Outcome, blocked_outcome, blocked_reason, reconcile_service};
use super::scheduler::Scheduler;
use super::trigger::{Trigger, TriggerSender};
pub use super::view::{DaemonView, HISTORY, Reconciled, ServiceResult, ServiceView, VIEW_VERSION};
use crate::observer::Observer;
use crate::observer::stream_view::StandAloneView;
use converge_core::config::Config;
use converge_core::fsutil::write_replace;
use converge_core::manifest::load::ParseCache;
use converge_core::manifest::{DesiredState, Service, Spec};
use converge_core::metrics::ServiceObservation;
use converge_core::observe::NodeState;
use converge_core::plan::{BlockKind, plan_service};
use converge_core::status::{ServiceStatus, Status, service_status};

pub const STATUS_FILE: &str = "daemon.json";

/// The view is written at once after a change, then at most once per this while changes keep
/// coming, and the last change is always written. Each write builds, compares and encodes the
/// view of every service (4.5 MB of JSON at 10,000 services): written after every reconcile,
/// a start with 10,000 services spent most of its time rewriting it, quadratically.
pub const VIEW_EVERY: Duration = Duration::from_secs(1);

/// What one observation said of a service, for its view.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: Status,
    converged: bool,
    runs_on: Vec<String>,
    standby: bool,
    drbd: Vec<String>,
    failover: Option<String>,
    /// The same, typed, for the metrics; only when they are on.
    observation: Option<ServiceObservation>,
}

impl Seen {
    /// `node`: the observation `status` comes from, when the metrics are on.
    fn of(status: &ServiceStatus, service: &Service, node: Option<&NodeState>) -> Seen {
        let drbd = status
            .resources
            .iter()
            .filter(|r| {
                service
                    .resource(r.rid)
                    .is_some_and(|r| r.spec.as_drbd().is_some())
            })
            .map(|r| format!("{}: {}", r.rid, r.detail))
            .collect();
        Seen {
            status: status.status,
            converged: status.converged,
            runs_on: status.runs_on.clone(),
            standby: status.standby,
            drbd,
            failover: status
                .failover
                .as_ref()
                .and_then(|f| f.decision.as_ref())
                .map(ToString::to_string),
            observation: node.map(|node| ServiceObservation::of(status, service, node)),
        }
    }
}

impl ServiceView {
    /// Takes in what an observation saw; says whether anything changed.
    fn saw(&mut self, seen: Seen) -> bool {
        let changed = self.status != Some(seen.status)
            || self.converged != Some(seen.converged)
            || self.runs_on != seen.runs_on
            || self.standby != seen.standby
            || self.drbd != seen.drbd
            || self.failover != seen.failover;
        self.status = Some(seen.status);
        self.converged = Some(seen.converged);
        self.runs_on = seen.runs_on;
        self.standby = seen.standby;
        self.drbd = seen.drbd;
        self.failover = seen.failover;
        changed
    }
}

enum Message {
    Trigger(Trigger),
    Done {
        service: String,
        /// What the run reconciled the service to on this node.
        desired: DesiredState,
        outcome: Outcome,
        seen: Option<Seen>,
        /// How long the reconcile took.
        took: Duration,
    },
    /// A timer armed after a reconcile fired: its retry after a failure, or its requeue.
    Due {
        service: String,
        why: &'static str,
    },
    /// A batched look at many services: the converged ones need nothing more.
    Batch {
        why: String,
        statuses: Vec<(String, Seen)>,
        to_reconcile: Vec<String>,
    },
    /// A read of the manifest directory ended (see [`Daemon::start_reload`]); `Err` when its
    /// thread panicked.
    Read(Result<Box<ReadDone>, tokio::task::JoinError>),
}

/// A read of the manifest directory, back from its blocking thread.
struct ReadDone {
    /// Why it was read: the reason of the reconciles it asks for.
    why: String,
    /// The parse cache lent to the read.
    cache: ParseCache,
    /// What it found, and the revision that is; `None` when it gave up (the daemon stopping).
    read: Option<(Read, Option<String>)>,
}

pub struct Daemon {
    config: Arc<Config>,
    /// Shared by every reconcile: what it caches (script listings inside containers) is kept
    /// for the daemon's life.
    observer: Arc<Observer>,
    dir: PathBuf,
    desired: DesiredSet,
    scheduler: Scheduler,
    /// What each service looked like last, for `daemon.json`.
    views: BTreeMap<String, ServiceView>,
    /// Why each requested service will reconcile, logged when it starts.
    reasons: BTreeMap<String, String>,
    /// Why each running reconcile started, for its history.
    running_reasons: BTreeMap<String, String>,
    revision: Option<String>,
    notices: Vec<String>,
    mounts_seen: BTreeSet<PathBuf>,
    /// The manifests' parse cache; lent to the read under way while there is one (`None` then).
    cache: Option<ParseCache>,
    /// A reload asked for while a read was under way, and why: started once that read is taken
    /// in, so that a change it may have missed is read after it.
    reload_again: Option<String>,
    /// Whether a read of the manifests was taken in yet: until the first one nothing is in
    /// force, and no view is written (the tests take the view for the daemon being up).
    loaded: bool,
    /// Set at shutdown: a reconcile stops between two steps, a read of the manifests between
    /// two files.
    stopping: Arc<AtomicBool>,
    /// Since when this node may take each failover service (its rank wait, across reconciles).
    waits: Arc<Waits>,
    tx: mpsc::UnboundedSender<Message>,
    rx: mpsc::UnboundedReceiver<Message>,
    tasks: JoinSet<()>,
    /// The `drbdsetup events2` child: started once some service uses DRBD, so a node without
    /// DRBD runs no such child at all.
    drbd_events: Option<super::drbd_events::DrbdEvents>,
    /// What that stream said of StandAlone connections, which the observer reads.
    stream_view: Arc<StandAloneView>,
    /// A hash of the view last written (without its time), to skip writes that change nothing.
    /// A hash, not a copy: a copy of every service's view was 7 MB at 10,000 services.
    last_view: Option<u64>,
    /// When the view was last built, and when it is to be built next: a change came within
    /// [`VIEW_EVERY`] of the last.
    view_built: Option<tokio::time::Instant>,
    view_due: Option<tokio::time::Instant>,
    /// What systemd is told (`Type=notify`), when it listens.
    notifier: super::notify::Notifier,
    /// Requests from `converge trigger` ([`super::control`]).
    asks_tx: mpsc::UnboundedSender<super::control::Ask>,
    asks_rx: mpsc::UnboundedReceiver<super::control::Ask>,
    /// Answers owed, by service: for the next reconcile to start (asked while none or another
    /// ran), and for the one running.
    asked: BTreeMap<String, Vec<oneshot::Sender<super::control::Answer>>>,
    answering: BTreeMap<String, Vec<oneshot::Sender<super::control::Answer>>>,
    /// Where the daemon's metrics go, when configured (`metrics:`).
    metrics: Option<crate::metrics::Metrics>,
}

/// `Trigger`s sent here reach the scheduler.
pub fn trigger_sender(daemon: &Daemon) -> TriggerSender {
    let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
    let inner = daemon.tx.clone();
    tokio::spawn(async move {
        while let Some(trigger) = rx.recv().await {
            if inner.send(Message::Trigger(trigger)).is_err() {
                break;
            }
        }
    });
    tx
}

impl Daemon {
    pub fn new(config: Arc<Config>, dir: PathBuf) -> Daemon {
        let (tx, rx) = mpsc::unbounded_channel();
        let (asks_tx, asks_rx) = mpsc::unbounded_channel();
        let stream_view = Arc::new(StandAloneView::default());
        Daemon {
            observer: Arc::new(Observer::with_stream(
                Arc::clone(&config),
                Arc::clone(&stream_view),
            )),
            stream_view,
            scheduler: Scheduler::new(config.daemon.concurrency),
            config,
            dir,
            desired: DesiredSet::default(),
            views: BTreeMap::new(),
            reasons: BTreeMap::new(),
            running_reasons: BTreeMap::new(),
            revision: None,
            notices: Vec::new(),
            mounts_seen: BTreeSet::new(),
            cache: Some(ParseCache::default()),
            reload_again: None,
            loaded: false,
            stopping: Arc::new(AtomicBool::new(false)),
            waits: Arc::new(Waits::default()),
            tx,
            rx,
            tasks: JoinSet::new(),
            drbd_events: None,
            last_view: None,
            view_built: None,
            view_due: None,
            notifier: super::notify::Notifier::from_env(),
            asks_tx,
            asks_rx,
            asked: BTreeMap::new(),
            answering: BTreeMap::new(),
            metrics: None,
        }
    }

    /// Where `converge trigger`'s requests go ([`super::control::listen`]).
    pub fn ask_sender(&self) -> mpsc::UnboundedSender<super::control::Ask> {
        self.asks_tx.clone()
    }

    /// The daemon, telling `metrics` what it learns.
    pub fn with_metrics(mut self, metrics: Option<crate::metrics::Metrics>) -> Daemon {
        self.metrics = metrics;
        self
    }

    /// Runs until `shutdown` resolves, then lets running actions finish and returns; a read of
    /// the manifests under way then ends after the file it is parsing, and is not taken in.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.mounts_seen = self.read_mount_points();
        // Taken in by the loop as any read is; the first look at every service follows it.
        // Until then `shutdown` is listened to as always.
        self.start_reload("start");
        // Pinged from this loop, which handles every event: if it stops turning, the pings
        // stop, and systemd restarts converge.
        let mut watchdog = self.notifier.watchdog_period().map(tokio::time::interval);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(message) = self.rx.recv() => self.handle(message),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                () = tick(&mut watchdog) => self.notifier.watchdog(),
                Some(ask) = self.asks_rx.recv() => self.on_ask(ask),
                () = until(self.view_due) => {
                    self.write_view();
                    self.give_back_memory();
                }
            }
        }
        self.notifier.stopping();
        tracing::info!("shutting down: letting running actions finish; no service is stopped");
        self.stopping.store(true, Ordering::SeqCst);
        self.scheduler.stop();
        if self.cache.is_none() {
            tracing::info!(
                "shutting down: the manifest reload under way is abandoned; the manifests in force stay as they were"
            );
        }
        // The abandoned read ends after the file it is parsing, and is dropped: nothing of it
        // is taken in. Waited for, so that no thread is left reading once this returns.
        while self.scheduler.any_running() || self.cache.is_none() {
            // systemd keeps watching while the unit stops: the pings go on until the end.
            let message = tokio::select! {
                message = self.rx.recv() => message,
                () = tick(&mut watchdog) => {
                    self.notifier.watchdog();
                    continue;
                }
                () = until(self.view_due) => {
                    self.write_view();
                    continue;
                }
            };
            match message {
                Some(message @ Message::Done { .. }) => self.handle(message),
                Some(Message::Read(done)) => {
                    let cache = done.map_or_else(|_| ParseCache::default(), |d| d.cache);
                    self.cache = Some(cache);
                }
                Some(_) => {}
                None => break,
            }
        }
        self.tasks.abort_all();
        if let Some(events) = self.drbd_events.take() {
            events.stop();
        }
        self.write_view();
        if let Some(metrics) = self.metrics.take() {
            metrics.stop().await;
        }
    }

    fn handle(&mut self, message: Message) {
        let work_ended = matches!(
            message,
            Message::Done { .. } | Message::Batch { .. } | Message::Read(_)
        );
        let changed = match message {
            Message::Trigger(trigger) => self.on_trigger(trigger),
            Message::Due { service, why } => {
                self.reasons.insert(service.clone(), why.into());
                let start = self.scheduler.due(&service, tokio::time::Instant::now());
                self.start_all(start);
                true
            }
            Message::Done {
                service,
                desired,
                outcome,
                seen,
                took,
            } => {
                if let Some(metrics) = &self.metrics {
                    if let Some(observation) = seen.as_ref().and_then(|s| s.observation.as_ref()) {
                        metrics.saw(&service, observation);
                    }
                    metrics.reconciled(ServiceResult::of(&outcome).kind(), took);
                }
                self.on_done(service, desired, outcome, seen, took);
                true
            }
            Message::Batch {
                why,
                statuses,
                to_reconcile,
            } => self.on_batch(&why, statuses, to_reconcile),
            Message::Read(Ok(done)) => self.on_read(*done),
            Message::Read(Err(e)) => match e.try_into_panic() {
                // A bug of the loader: the daemon dies of it, as it did when it read on its loop.
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only when the runtime shuts down.
                Err(e) => {
                    tracing::error!("the manifest reload did not end: {e}");
                    self.cache = Some(ParseCache::default());
                    false
                }
            },
        };
        // The resync of a converged node changes nothing and writes nothing: building the view
        // of every service only to find it unchanged was most of an idle daemon's work.
        if changed {
            self.tell_metrics();
            self.view_changed();
        }
        if work_ended {
            self.give_back_memory();
        }
    }

    /// Once nothing runs any more, what the work just ended freed goes back to the kernel: a
    /// start with 1,000 services left 3.6 MB free in malloc's heap, resident (see
    /// [`crate::memory::give_back`]).
    fn give_back_memory(&self) {
        if !self.scheduler.any_running() && self.cache.is_some() {
            crate::memory::give_back();
        }
    }

    /// The services in force and their results, for the metrics: at every change, not when the
    /// view's file is next written, so that a scrape agrees with the observations it shows.
    fn tell_metrics(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let result = |name: &str| {
            self.views
                .get(name)
                .map_or(ServiceResult::Pending.kind(), |v| v.result.kind())
        };
        let services = self
            .desired
            .in_force()
            .map(|(service, _)| (service.name.as_str(), result(&service.name)))
            .chain(
                self.desired
                    .orphans()
                    .filter(|o| !o.pruning)
                    .map(|o| (o.service.name.as_str(), ServiceResult::Orphaned.kind())),
            );
        metrics.in_force(
            self.revision.as_deref(),
            self.desired.errors.len(),
            services,
        );
    }

    /// The view changed: written now, or once [`VIEW_EVERY`] has passed since the last write.
    fn view_changed(&mut self) {
        if self.view_due.is_some() {
            return;
        }
        match self.view_built {
            Some(built) if built.elapsed() < VIEW_EVERY => {
                self.view_due = Some(built + VIEW_EVERY);
            }
            _ => self.write_view(),
        }
    }

    /// Takes in a batched look; says whether the view changed.
    fn on_batch(
        &mut self,
        why: &str,
        statuses: Vec<(String, Seen)>,
        to_reconcile: Vec<String>,
    ) -> bool {
        let mut changed = !to_reconcile.is_empty();
        for (name, seen) in statuses {
            if let (Some(metrics), Some(observation)) = (&self.metrics, &seen.observation) {
                metrics.saw(&name, observation);
            }
            let running = self.scheduler.is_running(&name);
            let converged = seen.converged;
            let view = self.views.entry(name).or_default();
            changed |= view.saw(seen);
            if converged && !running && view.result != ServiceResult::Converged {
                view.result = ServiceResult::Converged;
                changed = true;
            }
        }
        for name in to_reconcile {
            self.queue(&name, why, false);
        }
        changed
    }

    /// Looks at every service in one batched observation (one mountinfo read, one
    /// `drbdsetup status`, one `vzlist`… for all of them) and reconciles only those that need
    /// it: a resync of a converged node costs one pass, not one per service.
    fn look_at_all(&mut self, why: &str) {
        let all = self.desired.reconciled();
        // Those being reconciled are looked at again once that ends, from a fresh observation:
        // their run may have observed for the last time before what this look is for (a
        // SIGHUP after a drift). Skipping them lost that look: the run ended converged and
        // nothing looked again until the next resync.
        let running: Vec<String> = all
            .iter()
            .filter(|s| self.scheduler.is_running(&s.name))
            .map(|s| s.name.clone())
            .collect();
        for name in &running {
            self.queue(name, why, false);
        }
        let idle: Arc<[Service]> = if running.is_empty() {
            all
        } else {
            all.iter()
                .filter(|s| !running.contains(&s.name))
                .cloned()
                .collect()
        };
        if idle.is_empty() {
            return;
        }
        tracing::debug!("{why}: looking at {} service(s)", idle.len());
        let observer = Arc::clone(&self.observer);
        let tx = self.tx.clone();
        let why = why.to_string();
        let metrics_on = self.metrics.is_some();
        self.tasks.spawn(async move {
            let node = observer.observe_with_drift(&idle).await;
            let mut statuses = Vec::new();
            let mut to_reconcile = Vec::new();
            for (status, service) in converge_core::status::statuses(&idle, &node)
                .into_iter()
                .zip(idle.iter())
            {
                if !status.converged {
                    to_reconcile.push(status.service.clone());
                }
                let seen = Seen::of(&status, service, metrics_on.then_some(&node));
                statuses.push((status.service, seen));
            }
            let _ = tx.send(Message::Batch {
                why,
                statuses,
                to_reconcile,
            });
        });
    }

    /// Says whether the view may have changed.
    fn on_trigger(&mut self, trigger: Trigger) -> bool {
        let reason = trigger.to_string();
        let names: Vec<String> = match &trigger {
            Trigger::Manifests { .. } => {
                // What it finds comes back as a read.
                self.start_reload(&reason);
                return false;
            }
            Trigger::Resync { .. } => {
                // What it finds comes back as a batch.
                self.look_at_all(&reason);
                return false;
            }
            Trigger::Drbd { resource } => self
                .desired
                .reconciled()
                .iter()
                .filter(|s| {
                    s.resources
                        .iter()
                        .any(|r| matches!(&r.spec, Spec::Drbd(d) if &d.res == resource))
                })
                .map(|s| s.name.clone())
                .collect(),
            Trigger::Mounts => {
                let now = self.read_mount_points();
                let changed: BTreeSet<PathBuf> = now
                    .symmetric_difference(&self.mounts_seen)
                    .cloned()
                    .collect();
                self.mounts_seen = now;
                self.desired
                    .reconciled()
                    .iter()
                    .filter(|s| {
                        s.resources.iter().any(|r| match &r.spec {
                            Spec::Fs(f) => changed.iter().any(|m| m.starts_with(&f.mnt)),
                            _ => false,
                        })
                    })
                    .map(|s| s.name.clone())
                    .collect()
            }
        };
        if !names.is_empty() {
            tracing::debug!("{reason}: {} service(s) to look at", names.len());
        }
        let changed = !names.is_empty();
        for name in names {
            self.queue(&name, &reason, false);
        }
        changed
    }

    /// Starts reading the manifest directory on a blocking thread, for `why`; what it finds
    /// comes back as [`Message::Read`]. One read at a time: asked for while one is under way,
    /// the next starts when that one is taken in (a change it may have missed is read then).
    fn start_reload(&mut self, why: &str) {
        let Some(mut cache) = self.cache.take() else {
            tracing::debug!("{why}: a reload is under way; the directory is read again after it");
            self.reload_again = Some(why.to_string());
            return;
        };
        let dir = self.dir.clone();
        let stopping = Arc::clone(&self.stopping);
        let why = why.to_string();
        // Read once: the loader hashes what it reads, and files it parsed before with the same
        // text are not parsed again, so a reload that finds nothing new costs the reads alone.
        // A shutdown stops the read between two files.
        let reading = tokio::task::spawn_blocking(move || {
            let stop = || stopping.load(Ordering::SeqCst);
            let read = super::desired::read(&dir, &mut cache, &stop).map(|read| {
                let revision = super::watch::revision_with_content(&dir, read.content())
                    .ok()
                    .map(|r| r.to_string());
                (read, revision)
            });
            ReadDone { why, cache, read }
        });
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            let _ = tx.send(Message::Read(reading.await.map(Box::new)));
        });
    }

    /// Takes in a read of the manifest directory, and starts the one asked for meanwhile;
    /// says whether the view may have changed.
    fn on_read(&mut self, done: ReadDone) -> bool {
        let ReadDone { why, cache, read } = done;
        self.cache = Some(cache);
        // Gave up: only when stopping, which the loop is not.
        let changed = read.is_some();
        if let Some((read, revision)) = read {
            let first = !self.loaded;
            self.loaded = true;
            let names = self.take_read(read, revision, first);
            if let Some(metrics) = &self.metrics {
                metrics.reloaded(!self.desired.errors.is_empty());
            }
            if first {
                // Every service is looked at, the changed ones with the rest.
                self.look_at_all(&why);
            } else {
                for name in names {
                    // A manifest change is a new request: tried now, whatever the backoff said.
                    self.queue(&name, &why, true);
                }
            }
        }
        if let Some(again) = self.reload_again.take() {
            self.start_reload(&again);
        }
        // A reload may have changed errors, notices or the revision even with nothing to run.
        changed
    }

    /// Takes in what a read of the manifest directory found (the `first` at start); returns
    /// the services to reconcile because of it.
    fn take_read(&mut self, read: Read, revision: Option<String>, first: bool) -> Vec<String> {
        let before_errors: Vec<String> = self
            .desired
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        let before_warnings = self.desired.warnings.clone();
        let reload = self.desired.take(
            read,
            self.config.daemon.prune,
            self.config.daemon.allow_empty,
        );
        let after_errors: Vec<String> = self
            .desired
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        // The same text can give another desired set: a manifest refused for its permissions,
        // made private again, is taken in with the content it already had.
        let same_set = reload.changed.is_empty()
            && reload.removed.is_empty()
            && after_errors == before_errors
            && self.desired.warnings == before_warnings;
        if revision.is_some() && revision == self.revision && !first && same_set {
            // The same manifests give the same desired set: nothing changed, nothing to say.
            tracing::debug!(
                "manifests unchanged (revision {})",
                revision.as_deref().unwrap_or("?")
            );
            return Vec::new();
        }
        // Logged once per change, not on every look.
        if after_errors != before_errors {
            for error in &after_errors {
                tracing::error!("{error} (last good version kept in force)");
            }
        }
        if self.desired.warnings != before_warnings {
            for warning in &self.desired.warnings {
                tracing::warn!("{warning}");
            }
        }
        self.notices.clear();
        if reload.emptiness_refused {
            let notice = format!(
                "{} holds no valid manifest: nothing is brought down (set allow_empty: true to allow it)",
                self.dir.display()
            );
            tracing::warn!("{notice}");
            self.notices.push(notice);
        }
        for name in &reload.removed {
            let pruning = self.desired.orphan(name).is_some_and(|o| o.pruning);
            if pruning {
                tracing::warn!(service = %name, "manifest deleted: bringing the service down (prune: true)");
            } else {
                tracing::warn!(service = %name, "manifest deleted: service left as it is, orphaned (prune: false)");
            }
        }
        if revision != self.revision {
            tracing::info!(
                "manifests: revision {} ({} service(s) in force, {} changed)",
                revision.as_deref().unwrap_or("unknown"),
                self.desired.reconciled().len(),
                reload.changed.len()
            );
        }
        self.revision = revision;
        let uses_drbd = self
            .desired
            .reconciled()
            .iter()
            .any(|s| s.resources.iter().any(|r| r.spec.as_drbd().is_some()));
        if uses_drbd && self.drbd_events.is_none() {
            let tx = trigger_sender(self);
            self.drbd_events = Some(super::drbd_events::DrbdEvents::start(
                Arc::clone(&self.config),
                tx,
                Arc::clone(&self.stream_view),
            ));
        }
        let mut names = reload.changed;
        names.extend(
            reload
                .removed
                .into_iter()
                .filter(|n| self.desired.orphan(n).is_some_and(|o| o.pruning)),
        );
        names
    }

    fn read_mount_points(&self) -> BTreeSet<PathBuf> {
        crate::secure::read_input_text(&self.config.mountinfo, crate::observer::MOUNTINFO_MAX)
            .ok()
            .and_then(|text| converge_core::observe::mountinfo::parse(&text).ok())
            .map(|mounts| {
                mounts
                    .into_iter()
                    .map(|m| m.mount_point().to_path_buf())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `converge trigger SERVICE`: a reconcile now (a new request: any backoff is cancelled),
    /// answered when a reconcile that starts after the request ends.
    fn on_ask(&mut self, ask: super::control::Ask) {
        let name = ask.service;
        if self.desired.get(&name).is_none() {
            let _ = ask
                .reply
                .send(super::control::Answer::Unknown { service: name });
            return;
        }
        self.asked.entry(name.clone()).or_default().push(ask.reply);
        self.queue(&name, "asked by converge trigger", true);
    }

    /// Asks for a reconcile of `name` (one in force), for `reason`; `afresh` for a new request
    /// from the manifests, which cancels a backoff.
    fn queue(&mut self, name: &str, reason: &str, afresh: bool) {
        if self.desired.get(name).is_none() {
            return;
        }
        self.reasons.insert(name.to_string(), reason.to_string());
        let now = tokio::time::Instant::now();
        let start = if afresh {
            self.scheduler.request_afresh(name, now)
        } else {
            self.scheduler.request(name, now)
        };
        self.start_all(start);
    }

    fn start_all(&mut self, names: Vec<String>) {
        for name in names {
            self.start(&name);
        }
    }

    /// Starts the reconcile the scheduler said to start.
    fn start(&mut self, name: &str) {
        let reason = self
            .reasons
            .remove(name)
            .unwrap_or_else(|| "requested".to_string());
        let Some(service) = self.desired.get(name) else {
            // Gone from the manifests while it waited for a slot.
            self.scheduler.forget(name);
            for reply in self.asked.remove(name).unwrap_or_default() {
                let _ = reply.send(super::control::Answer::Unknown {
                    service: name.to_string(),
                });
            }
            return;
        };
        // Those who asked before this start get its result.
        if let Some(replies) = self.asked.remove(name) {
            self.answering
                .entry(name.to_string())
                .or_default()
                .extend(replies);
        }
        let view = self.views.entry(name.to_string()).or_default();
        // A blocked service is looked at again on every event and resync, and stays blocked
        // for as long as the cause lasts: said once, then quiet until something changes.
        let still_blocked = match &view.result {
            ServiceResult::Blocked { reason } | ServiceResult::Waiting { reason } => {
                Some(reason.clone())
            }
            _ => None,
        };
        view.result = ServiceResult::Running;
        self.running_reasons
            .insert(name.to_string(), reason.clone());
        // Why, for the operator; the reconcile itself never learns it.
        if still_blocked.is_some() {
            tracing::debug!(service = %name, "reconcile: {reason}");
        } else {
            tracing::info!(service = %name, "reconcile: {reason}");
        }
        let observer = Arc::clone(&self.observer);
        let stopping = Arc::clone(&self.stopping);
        let waits = Arc::clone(&self.waits);
        let tx = self.tx.clone();
        let desired = service.desired_here(&self.config.node);
        let metrics_on = self.metrics.is_some();
        self.tasks.spawn(async move {
            let began = std::time::Instant::now();
            let (outcome, seen) = run_one(
                &observer,
                &service,
                &stopping,
                &waits,
                still_blocked,
                metrics_on,
            )
            .await;
            let _ = tx.send(Message::Done {
                service: service.name.clone(),
                desired,
                outcome,
                seen,
                took: began.elapsed(),
            });
        });
    }

    fn on_done(
        &mut self,
        name: String,
        desired: DesiredState,
        outcome: Outcome,
        seen: Option<Seen>,
        took: Duration,
    ) {
        // Only a run that brought it down: one that started before the manifest was deleted
        // (and converged it up) leaves the pruning to the run that follows.
        let pruned_down = self.desired.orphan(&name).is_some_and(|o| o.pruning)
            && desired == DesiredState::Down
            && matches!(outcome, Outcome::Converged { .. });
        let now = tokio::time::Instant::now();
        let failures = self.scheduler.failures(&name);
        let finished =
            self.scheduler
                .finished(&name, outcome.next(), now, jitter_seed(&name, failures + 1));
        let view = self.views.entry(name.clone()).or_default();
        let at = now_text();
        view.last_reconcile = Some(at.clone());
        view.history.insert(
            0,
            Reconciled {
                at,
                trigger: self
                    .running_reasons
                    .remove(&name)
                    .unwrap_or_else(|| "requested".to_string()),
                took_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                result: ServiceResult::of(&outcome),
            },
        );
        view.history.truncate(HISTORY);
        if let Some(seen) = seen {
            view.saw(seen);
        }
        view.result = ServiceResult::of(&outcome);
        view.next_retry = finished
            .retry_in
            .map(|delay| humantime::format_rfc3339_seconds(SystemTime::now() + delay).to_string());
        let result = view.result.clone();
        let replies = self.answering.remove(&name).unwrap_or_default();
        if !replies.is_empty() {
            // Whoever asked reads the status next: written now, not when the next write is due.
            self.write_view();
        }
        for reply in replies {
            let _ = reply.send(super::control::Answer::Done {
                service: name.clone(),
                result: result.clone(),
            });
        }
        if let Some(delay) = finished.retry_in {
            tracing::warn!(service = %name, "failed; next try in {}", humantime::format_duration(round_secs(delay)));
            self.due_in(&name, delay, "retry after failure");
        }
        if let Some(delay) = finished.requeue_in {
            self.due_in(&name, delay, "look again: the failover rank wait is over");
        }
        if pruned_down {
            tracing::info!(service = %name, "pruned service is down: forgotten");
            self.desired.forget_orphan(&name);
            self.views.remove(&name);
            self.reasons.remove(&name);
            self.scheduler.forget(&name);
        }
        self.start_all(finished.start);
    }

    /// Sends [`Message::Due`] for `service` after `delay`.
    fn due_in(&mut self, service: &str, delay: Duration, why: &'static str) {
        let tx = self.tx.clone();
        let service = service.to_string();
        self.tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Message::Due { service, why });
        });
    }

    fn write_view(&mut self) {
        self.view_due = None;
        if !self.loaded {
            // Stopped during the first read: nothing is in force to say anything of.
            return;
        }
        self.view_built = Some(tokio::time::Instant::now());
        let mut services: Vec<ServiceView> = Vec::new();
        for (service, pruning) in self.desired.in_force() {
            let mut view = self.views.get(&service.name).cloned().unwrap_or_default();
            view.service = service.name.clone();
            view.desired = match service.pinned_node() {
                _ if pruning => "down (pruned)".to_string(),
                // Said as `converge status` says it without a daemon.
                Some(pin) if service.stands_by_here(&self.config.node) => {
                    format!("up on {pin}; standby here")
                }
                Some(pin) => format!("{} on {pin}", service.desired_here(&self.config.node)),
                None => match service.failover() {
                    Some(f) if view.standby => {
                        format!("up, fails over: {}; standby here", f.nodes.join(", "))
                    }
                    Some(f) => format!(
                        "{}, fails over: {}",
                        service.desired_here(&self.config.node),
                        f.nodes.join(", ")
                    ),
                    None => service.desired_here(&self.config.node).to_string(),
                },
            };
            view.source = service.source.clone();
            services.push(view);
        }
        for orphan in self.desired.orphans().filter(|o| !o.pruning) {
            services.push(ServiceView {
                service: orphan.service.name.clone(),
                desired: "orphaned".into(),
                result: ServiceResult::Orphaned,
                source: orphan.service.source.clone(),
                ..ServiceView::default()
            });
        }
        services.sort_by(|a, b| a.service.cmp(&b.service));
        let view = DaemonView {
            version: VIEW_VERSION,
            pid: std::process::id(),
            node: self.config.node.clone(),
            manifests: self.dir.clone(),
            revision: self.revision.clone(),
            errors: self
                .desired
                .errors
                .iter()
                .map(ToString::to_string)
                .collect(),
            notices: self.notices.clone(),
            services,
            updated: String::new(),
        };
        self.notifier.view(&view);
        // A resync that changed nothing rewrites nothing.
        let mut hashing = Hashing::default();
        if serde_json::to_writer(&mut hashing, &view).is_ok() {
            let hash = std::hash::Hasher::finish(&hashing.0);
            if self.last_view == Some(hash) {
                return;
            }
            self.last_view = Some(hash);
        }
        let view = DaemonView {
            updated: now_text(),
            ..view
        };
        let path = self.config.state_dir.join(STATUS_FILE);
        match serde_json::to_vec_pretty(&view) {
            Ok(json) => {
                // Not synced: the view is rewritten by the next daemon, and a reader that finds
                // it empty after a power cut observes the node instead. Its fsyncs, on the
                // daemon's loop, queued in the same journal commits as the in-progress record
                // written right then, before the action's spawn.
                if let Err(e) = write_replace(&path, &json) {
                    tracing::warn!("cannot write {}: {e}", path.display());
                }
            }
            Err(e) => tracing::warn!("cannot encode the daemon's view: {e}"),
        }
    }
}

/// The next watchdog tick, when there is a watchdog; never otherwise.
async fn tick(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A hash of what is written to it, without keeping it.
#[derive(Default)]
struct Hashing(std::collections::hash_map::DefaultHasher);

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(&mut self.0, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// When `at` comes; never when it is `None`.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Observes and reconciles one service; returns the outcome and the status after it.
/// `still_blocked`: the reason it was blocked for last time, if it was; blocked again for that
/// same reason with nothing it could do first, it is not logged again. `metrics_on`: the status
/// after it is also taken for the metrics.
async fn run_one(
    observer: &Observer,
    service: &Service,
    stopping: &AtomicBool,
    waits: &Waits,
    still_blocked: Option<String>,
    metrics_on: bool,
) -> (Outcome, Option<Seen>) {
    let node = observer.observe(std::slice::from_ref(service)).await;
    let plan = plan_service(service, &node);
    super::once::planned(observer, waits, service, &plan);
    let as_before = plan.blocked.as_ref().filter(|b| {
        plan.steps.is_empty() && still_blocked.as_deref() == Some(blocked_reason(b).as_str())
    });
    let blocked_as_before = as_before.is_some();
    let outcome = if plan.is_converged() {
        Outcome::Converged { steps: 0 }
    } else if let Some(blocked) = as_before {
        let word = match blocked.kind {
            BlockKind::Refused => "blocked",
            BlockKind::Waiting => "waiting",
        };
        tracing::debug!(service = %service.name, "still {word}: {}", blocked_reason(blocked));
        blocked_outcome(blocked, 0)
    } else {
        reconcile_service(observer, service, plan, stopping, waits).await
    };
    // Nothing was run: what was observed is still the state.
    let after = if matches!(outcome, Outcome::Converged { steps: 0 }) || blocked_as_before {
        node
    } else {
        observer.observe(std::slice::from_ref(service)).await
    };
    let status = service_status(service, &after);
    (
        outcome,
        Some(Seen::of(&status, service, metrics_on.then_some(&after))),
    )
}

fn jitter_seed(name: &str, failures: u32) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    failures.hash(&mut h);
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        .hash(&mut h);
    h.finish()
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

fn now_text() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The daemon's view is some 300 bytes per service and per manifest error: 64 MiB is 200,000
/// of them. A larger file is not the daemon's, and `status` observes the node instead.
const VIEW_MAX: u64 = 64 * 1024 * 1024;

/// Reads the daemon's view, when a daemon has written one.
pub fn read_view(state_dir: &Path) -> Option<DaemonView> {
    let text = crate::secure::read_input(&state_dir.join(STATUS_FILE), VIEW_MAX).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_tagged_by_kind_and_round_trip() {
        let results = [
            (ServiceResult::Pending, r#"{"kind":"pending"}"#),
            (ServiceResult::Orphaned, r#"{"kind":"orphaned"}"#),
            (
                ServiceResult::Blocked {
                    reason: "drbd#0: peer deb2 is Primary".into(),
                },
                r#"{"kind":"blocked","reason":"drbd#0: peer deb2 is Primary"}"#,
            ),
            (
                ServiceResult::Failed {
                    error: "fs#1: mount exited 32".into(),
                    rolled_back: true,
                },
                r#"{"kind":"failed","error":"fs#1: mount exited 32","rolled_back":true}"#,
            ),
        ];
        for (result, json) in results {
            assert_eq!(serde_json::to_string(&result).expect("encode"), json);
            let back: ServiceResult = serde_json::from_str(json).expect("decode");
            assert_eq!(back, result);
        }
        assert!(!ServiceResult::Orphaned.is_settled());
        assert!(ServiceResult::Converged.is_settled());
        assert_eq!(
            ServiceResult::Failed {
                error: "e".into(),
                rolled_back: true
            }
            .to_string(),
            "failed: e (rolled back)"
        );
    }
}
