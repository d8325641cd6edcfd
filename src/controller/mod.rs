//! The loops that drive observe → plan → act. [`once`] is `converge reconcile --once`; the
//! daemon (`converge run`) builds on the same per-service reconcile.
//!
//! Level-triggered: a reconcile observes everything it decides on and never learns why it was
//! started. Services are independent and run in parallel; the steps of one service run strictly
//! in order, one at a time, each followed by a fresh observation of that service.

pub mod desired;
pub mod drbd_events;
pub mod lock;
pub mod mount_watch;
pub mod once;
pub mod trigger;
pub mod watch;
