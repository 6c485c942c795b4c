//! Foolscap, as foolscap 24.9 speaks it under Tahoe-LAFS 1.20.
//!
//! - [`banana`]: the token codec (sans-IO).
//! - [`value`]: the value tree, its references as on the wire (sans-IO).
//! - [`message`]: PB messages of values over tokens (sans-IO).
//! - [`negotiate`]: the plaintext upgrade and HELLO/DECISION blocks (sans-IO).
//! - [`tls`]: rustls configs pinning TubIDs (with
//!   [`crate::identity::PinnedCertVerifier`]).
//! - [`broker`]: one connection's PB state over tokio; it resolves received
//!   references into live objects and exports ours, so its [`Value`] (the one
//!   re-exported here) is the value the application sees.
//! - [`tub`]: dialling and accepting connections; published objects.
//! - [`schema`]: the RemoteInterface constraints Tahoe uses.
//! - [`storage`]: Tahoe's storage protocol on the seam: the front (an
//!   `RIStorageServer` on any backend), the backend (the seam over an upstream
//!   `RIStorageServer`) and the error mapping between the two, in one place.
//! - [`backoff`]: jittered exponential backoff for reconnecting to an upstream.
//! - [`furl`]: addressing (key material is in [`crate::identity`]).

pub mod backoff;
pub mod banana;
pub mod broker;
pub mod furl;
pub mod message;
pub mod negotiate;
pub mod schema;
pub mod storage;
pub mod tls;
pub mod tub;
pub mod value;

pub use broker::{CallError, Connection, Live, RemoteObject, RemoteRef, Value};
pub use furl::Furl;
pub use tub::{Tub, TubConfig, TubError};
pub use value::Failure;
