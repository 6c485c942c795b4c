//! swampgate: a gateway between Tahoe-LAFS's legacy Foolscap storage protocol and
//! its HTTP storage protocol ("Great Black Swamp", GBS).
//!
//! # Layout
//! The tree is the architecture; each layer imports only those below it.
//! - [`base32`]: Tahoe's lowercase unpadded base32, used at every layer.
//! - [`durable`]: crash-safe whole-file writes (temp, fsync, rename, fsync dir).
//! - [`identity`]: protocol-neutral key material: the certificate and key (Tahoe's
//!   `node.pem` layout), the tubid, the SPKI hash, and one pinned-certificate rustls
//!   verifier used by both protocols.
//! - [`storage`]: the protocol-neutral seam ([`storage::StorageApi`]) every front
//!   calls and every backend implements; its vocabulary (a call as a value:
//!   [`storage::Method`], [`storage::Call`], [`storage::Reply`]; failures:
//!   [`storage::StorageError`] and its [`storage::ErrorKind`]); `layer`, the one
//!   interception wrapper and the concerns built on it (metrics, traces, upload
//!   sessions); `store`, the embedded share store.
//! - [`foolscap`]: the legacy protocol. `banana` is the sans-IO token codec,
//!   `negotiate` the sans-IO connection negotiation, `tls` the rustls configuration
//!   (certificate-hash pinning, no web PKI), `broker` one connection's PB state, and
//!   `furl` the addressing; `storage` its front, backend and error mapping onto the
//!   seam.
//! - [`gbs`]: the HTTP storage protocol: `server` (the GBS front), `client` (the GBS
//!   backend), `errors` (its mapping onto the seam), CBOR/JSON bodies, NURLs,
//!   authorization and Range handling.
//! - [`introducer`]: signed announcements, the introducer protocol and its relay;
//!   takes plain values, never the daemon's configuration.
//! - [`daemon`]: configuration, the state dir, `link` (assembles a link: identity,
//!   layers, backend, fronts), the listeners (each port serves both protocols; one
//!   port per identity), the admin endpoint. The only place that wires protocols
//!   together.
//! - [`nodedir`]: a Tahoe storage node's directory, read: its identity, server id,
//!   FURL and NURLs as the node announces them (`node:` upstreams, `node-info`).
//! - [`stall`]: the bound on writes to a peer that keeps its TCP window shut,
//!   below TLS on every connection of either protocol.
//! - [`check`]: the conformance suite behind `swampgate check`.
//! - [`health`]: whether an upstream answers, as periodic probes find it (links and
//!   the introducer relay).
//!
//! Pure codecs know nothing of sockets or clocks; one thin async driver per
//! connection owns the IO.

pub mod accounting;
pub mod base32;
pub mod check;
pub mod daemon;
pub mod durable;
pub mod foolscap;
pub mod gbs;
pub mod health;
pub mod identity;
pub mod introducer;
pub mod nodedir;
pub mod stall;
pub mod storage;
