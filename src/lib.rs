//! swampgate: a gateway between Tahoe-LAFS's legacy Foolscap storage protocol and
//! its HTTP storage protocol ("Great Black Swamp", GBS).
//!
//! # Layout
//! - [`identity`]: protocol-neutral: a node's certificate and key (Tahoe's `node.pem`
//!   layout), its tubid and SPKI hash, and the one pinned-certificate rustls verifier
//!   both protocols use (no web PKI; X.509 v1 certificates accepted).
//! - [`foolscap`]: the legacy protocol. `banana` is the sans-IO token codec,
//!   `negotiate` the sans-IO connection negotiation, `tls` the rustls configuration
//!   (tubid pinning), `broker` one connection's PB state, and `furl` the addressing.
//! - [`gbs`]: the HTTP storage protocol: server, client, CBOR/JSON bodies, NURLs,
//!   authorization and Range handling, `tls` the rustls configuration (SPKI-hash
//!   pinning).
//! - [`storage`]: the protocol-neutral seam ([`storage::StorageApi`]) every front calls
//!   and every backend implements, plus the embedded share store.
//! - `bridge`, `daemon`: later layers built on the above.
//! - [`introducer`]: signed announcements, the introducer protocol and its relay.
//!
//! Pure codecs know nothing of sockets or clocks; one thin async driver per
//! connection owns the IO.

pub mod bridge;
pub mod check;
pub mod daemon;
pub mod foolscap;
pub mod gbs;
pub mod identity;
pub mod introducer;
pub mod storage;
