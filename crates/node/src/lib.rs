//! converge on a node: everything that touches it.
//!
//! [`observer`] looks at the node (one batched pass for the planner, and the probes drivers use
//! right before acting) and hands what programs print to the core's parsers; [`act`] carries
//! out planned actions, one driver per resource kind; [`exec`] runs every external program, each
//! in a cgroup of its own; [`state`] keeps converge's own records, and [`in_progress`] those of
//! the actions running, for the next converge after a kill -9; [`secure`] refuses places other users could aim
//! converge's writes at, and opens what converge writes and reads without following or blocking;
//! [`controller`] drives observe → plan → act, once (`reconcile --once`) or as the daemon;
//! [`metrics`] serves or writes the daemon's Prometheus metrics when configured; [`memory`]
//! keeps a long-running converge's heap small.

pub mod act;
pub mod controller;
pub mod doctor;
pub mod exec;
pub mod in_progress;
pub mod memory;
pub mod metrics;
pub mod observer;
pub mod secure;
pub mod state;
pub mod trust;
