//! The daemon: configuration, state directory, the one-port listener that tells
//! Foolscap from GBS by the first bytes, and the running links.

pub mod admin;
pub mod config;
pub mod limits;
pub mod link;
pub mod metrics;
pub mod node_upstream;
pub mod page;
pub mod run;
pub mod sniff;
pub mod state;
