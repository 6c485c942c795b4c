//! The daemon: configuration, state directory, the listeners that tell Foolscap
//! from GBS by the first bytes (one port, or one per identity), and the running
//! links.

pub mod account_cli;
pub mod accounts;
pub mod admin;
pub mod config;
pub mod limits;
pub mod link;
pub mod metrics;
pub mod node_upstream;
pub mod page;
pub mod ports;
pub mod run;
pub mod sniff;
pub mod state;
