//! Great Black Swamp (GBS): Tahoe-LAFS's HTTP storage protocol.
//!
//! # Layout
//! - [`nurl`]: `pb://SPKIHASH@HOST:PORT/SWISSNUM#v=1` addresses and the SPKI hash.
//! - [`auth`]: the `Authorization` swissnum header and the `X-Tahoe-Authorization`
//!   secrets.
//! - [`range`]: `Range` / `Content-Range` parsing and formatting, with Tahoe's rules.
//! - [`media`]: choosing CBOR or JSON from `Accept` and `Content-Type`.
//! - [`codec`]: the message bodies in CBOR (byte-for-byte as Tahoe's cbor2 writes
//!   them) and JSON.
//! - [`errors`]: the one place where [`StorageError`](crate::storage::StorageError)
//!   and HTTP status codes are mapped to each other, in both directions.
//! - [`tls`]: server identity and the client's SPKI-pinning certificate verifier.
//! - [`server`]: the front: HTTP requests in, [`StorageApi`](crate::storage::StorageApi)
//!   calls out.
//! - [`client`]: the backend: a [`StorageApi`](crate::storage::StorageApi) that speaks
//!   GBS to an upstream server.
//!
//! `nurl`, `auth`, `range`, `media`, `codec` and `errors` are pure: no sockets, no
//! clocks. The authority for every behaviour is Tahoe-LAFS 1.20's own server and
//! client; where the written specification differs, the code says so.

pub mod auth;
pub mod client;
pub mod codec;
pub mod errors;
pub mod media;
pub mod nurl;
pub mod range;
pub mod server;
pub mod tls;

/// The path prefix of every GBS endpoint.
pub const API_PREFIX: &str = "/storage/v1";

/// The key of the storage protocol's entry in the version message.
pub const VERSION_V1_KEY: &[u8] = b"http://allmydata.org/tahoe/protocols/storage/v1";
