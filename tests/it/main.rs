//! The integration tests, one binary: every suite is a module, and all share the
//! test kit in [`kit`] (real Tahoe-LAFS peers on loopback, guarded processes, free
//! ports, the seam helpers). One binary links the dependencies once and keeps the
//! kit free of per-binary dead code.
//!
//! Run one suite with `cargo test --test it SUITE::` (e.g. `cargo test --test it
//! gbs_loopback::`). See `tests/README.md`.

mod kit;

mod accounting;
mod bridge_e2e;
mod check;
mod check_faults;
mod crash;
mod daemon;
mod end_state;
mod faults;
mod faults_tahoe;
mod fixtures;
mod flood;
mod foolscap_interop;
mod gbs_interop;
mod gbs_loopback;
mod harness;
mod health;
mod identities;
mod introducer_protocol;
mod introducer_relay;
mod istorageserver;
mod legacy;
mod limits;
mod node_info;
mod scaleout;
mod security;
mod service;
mod soak;
mod stalls;
mod store;
mod trace;
mod websocket;
