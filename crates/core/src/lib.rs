//! converge's core: the models and the pure logic, with no I/O beyond reading files.
//!
//! The data path through this crate: [`manifest`] (desired state, from YAML) and [`config`]
//! (this node) → [`observe`] (the node's state as a typed model, and the parsers that build it
//! from what the node prints) → [`plan`] (the pure difference) → [`command`] (what each planned
//! action runs). [`status`] aggregates what is observed as the OpenSVC agent does; [`metrics`] is the
//! daemon's Prometheus exposition of it. The node
//! crate does the observing and acting; this one decides.

pub mod command;
pub mod config;
pub mod doctor;
pub mod escape;
pub mod fsutil;
pub mod manifest;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod schema_files;
pub mod shell;
pub mod status;
