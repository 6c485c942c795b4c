//! Bridging through the storage seam: fronts that serve a protocol on any
//! [`crate::storage::StorageApi`], backends that implement it over a protocol, and
//! the error mapping between them (in [`errors`], and nowhere else).

pub mod backoff;
pub mod errors;
pub mod foolscap_backend;
pub mod foolscap_front;
pub mod instrument;
pub mod journal;
pub mod trace;
