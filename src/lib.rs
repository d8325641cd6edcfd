//! converge: a node-local declarative state reconciler for DRBD-backed services.
//!
//! The data path, one module each: [`manifest`] (desired state) → [`observe`] (node state) →
//! [`plan`] (the pure difference) → [`act`] (run it) → [`controller`] (the loops).

pub mod config;
pub mod manifest;
pub mod observe;
pub mod plan;
pub mod exec;
