//! The loops that drive observe → plan → act. [`once`] is `converge reconcile --once`; the
//! daemon (`converge run`) builds on the same per-service reconcile.
//!
//! Level-triggered: a reconcile observes everything it decides on and never learns why it was
//! started. Services are independent and run in parallel; the steps of one service run strictly
//! in order, one at a time, each followed by a fresh observation of that service.

pub mod control;
pub mod daemon;
pub mod desired;
pub mod drbd_events;
pub mod lock;
pub mod mount_watch;
pub mod notify;
pub mod once;
pub mod reconnect_wait;
pub mod scheduler;
pub mod take_wait;
pub mod trigger;
pub mod view;
pub mod watch;

use converge_core::config::Config;

/// Why `converge run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// `converge run`: the daemon with its event sources — the manifest watcher, the mount table
/// watch, the periodic resync and SIGHUP (DRBD events2 is started by the daemon once a service
/// uses DRBD) — until SIGTERM or SIGINT.
pub async fn serve(
    config: std::sync::Arc<Config>,
    dir: std::path::PathBuf,
) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    use trigger::Trigger;

    // Before anything else starts: a metrics address taken, or a textfile directory refused,
    // stops the start here.
    let metrics = crate::metrics::Metrics::start(&config.metrics).await?;
    let daemon =
        daemon::Daemon::new(std::sync::Arc::clone(&config), dir.clone()).with_metrics(metrics);
    let tx = daemon::trigger_sender(&daemon);
    // `converge trigger` asks through it. Without it, trigger finds no daemon and reconciles
    // by itself, which this daemon's lock refuses, naming the holder: said, not fatal.
    let control = match control::listen(&config.state_dir, daemon.ask_sender()) {
        Ok(control) => Some(control),
        Err(e) => {
            tracing::warn!("no control socket (converge trigger cannot reach this daemon): {e}");
            None
        }
    };
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    tracing::info!("converge run: watching {}", dir.display());
    let watcher = watch::ManifestWatcher::start(dir, config.daemon.debounce, tx.clone())?;
    // Without POLLPRI on the mount table (not a /proc file) the resync still corrects drift.
    let mounts = match mount_watch::MountWatch::start(config.mountinfo.clone(), tx.clone()) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!("mount table changes will be seen at the next resync only: {e}");
            None
        }
    };
    let resync_tx = tx.clone();
    let every = config.daemon.resync;
    let resync = tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // A late tick is delayed, never followed by a burst of catch-up ticks.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if resync_tx
                .send(Trigger::Resync {
                    reason: "periodic".into(),
                })
                .is_err()
            {
                break;
            }
        }
    });
    let hup_tx = tx;
    let hup_task = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: resync now");
            if hup_tx
                .send(Trigger::Resync {
                    reason: "SIGHUP".into(),
                })
                .is_err()
            {
                break;
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    };
    daemon.run(shutdown).await;
    if let Some(control) = control {
        control.stop();
    }
    resync.abort();
    hup_task.abort();
    if let Some(m) = mounts {
        m.stop();
    }
    watcher.stop();
    Ok(())
}

/// What the controller remembers of a service between its reconciles: the waits before a
/// failover node promotes, and the backoff between reconnections of a DRBD connection.
#[derive(Debug, Default)]
pub struct Waits {
    pub take: take_wait::TakeWait,
    pub reconnect: reconnect_wait::ReconnectWait,
}
