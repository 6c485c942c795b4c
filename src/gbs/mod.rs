//! Great Black Swamp (GBS): Tahoe-LAFS's HTTP storage protocol.
//!
//! # Layout
//! - [`nurl`]: `pb://SPKIHASH@HOST:PORT/SWISSNUM#v=1` addresses (the SPKI hash itself
//!   is computed in [`crate::identity`]).
//! - [`auth`]: the `Authorization` swissnum header and the `X-Tahoe-Authorization`
//!   secrets.
//! - [`range`]: `Range` / `Content-Range` parsing and formatting, with Tahoe's rules.
//! - [`media`]: choosing CBOR or JSON from `Accept` and `Content-Type`.
//! - [`codec`]: the message bodies in CBOR (byte-for-byte as Tahoe's cbor2 writes
//!   them) and JSON.
//! - [`errors`]: the one place where [`StorageError`](crate::storage::StorageError)
//!   and HTTP status codes are mapped to each other, in both directions.
//! - [`tls`]: the server's TLS identity and configuration, and the client's
//!   configuration pinning the server's SPKI hash (with
//!   [`crate::identity::PinnedCertVerifier`]).
//! - [`server`]: the front: HTTP requests in, [`StorageApi`](crate::storage::StorageApi)
//!   calls out.
//! - [`client`]: the backend: a [`StorageApi`](crate::storage::StorageApi) that speaks
//!   GBS to an upstream server.
//!
//! # Use
//! Serve a backend over GBS on its own listener:
//! ```no_run
//! # async fn f(api: std::sync::Arc<dyn swampgate::storage::StorageApi>) -> std::io::Result<()> {
//! use swampgate::gbs::{server::{GbsServer, ServerConfig}, tls::TlsIdentity};
//! let identity = TlsIdentity::generate(); // or TlsIdentity::from_pem(node.pem bytes)
//! let server = GbsServer::new(api, ServerConfig::new("swissnum"));
//! let handle = server.listen("127.0.0.1:0".parse().unwrap(), &identity).await?;
//! println!("{}", handle.nurl("127.0.0.1"));
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//! or hand it connections accepted elsewhere: `server.serve_tls_connection(stream,
//! &identity.tls_acceptor()?, peer)` (TLS) or `server.serve_connection(stream, peer)`
//! (already plaintext). Use an upstream GBS server as a backend:
//! `GbsClient::new(&nurl, ClientConfig::default())?`, which implements
//! [`StorageApi`](crate::storage::StorageApi).
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
