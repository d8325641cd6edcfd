//! converge: a node-local declarative state reconciler for DRBD-backed services.
//!
//! The data path, one module each: [`manifest`] (desired state, from YAML) and [`config`] (this
//! node) → [`observe`] (the node's state, one batched pass) → [`plan`] (the pure difference) →
//! [`act`] (commands that carry it out). [`exec`] runs every external program; [`cli`] maps the
//! command line onto all of it.

pub mod act;
pub mod cli;
pub mod command;
pub mod config;
pub mod controller;
pub mod demo;
pub mod exec;
pub mod fsutil;
pub mod manifest;
pub mod observe;
pub mod observer;
pub mod plan;
pub mod render;
pub mod schema_files;
pub mod shell;
pub mod sim;
pub mod state;
pub mod status;
