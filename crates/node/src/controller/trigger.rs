//! Why the daemon looks again. A trigger only says *when*; the reconcile that follows observes
//! everything it decides on and never reads the reason (level-triggered). The reason is logged.

use std::fmt;

/// One wake-up for the daemon's scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Something changed in the manifest directory (or its watcher lost track and rescans):
    /// re-read the whole directory.
    Manifests { reason: String },
    /// DRBD reported a change of this resource (events2).
    Drbd { resource: String },
    /// The mount table changed.
    Mounts,
    /// Re-observe and re-plan everything: the periodic resync, SIGHUP, or an event source that
    /// restarted and may have missed changes.
    Resync { reason: String },
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Manifests { reason } => write!(f, "manifests changed ({reason})"),
            Trigger::Drbd { resource } => write!(f, "DRBD resource {resource} changed"),
            Trigger::Mounts => f.write_str("mount table changed"),
            Trigger::Resync { reason } => write!(f, "resync ({reason})"),
        }
    }
}

/// Where event sources send their triggers.
pub type TriggerSender = tokio::sync::mpsc::UnboundedSender<Trigger>;
