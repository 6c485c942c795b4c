//! Tahoe's storage protocol over Foolscap, on the storage seam: [`front`] serves an
//! `RIStorageServer` on any [`crate::storage::StorageApi`]; [`backend`] implements
//! the seam over an upstream `RIStorageServer`; [`errors`] maps errors between the
//! two, and nowhere else does.

pub mod backend;
pub mod errors;
pub mod front;
