//! The storage seam: one protocol-neutral interface for every Tahoe storage operation.
//!
//! Fronts (a Foolscap `RIStorageServer`, a GBS HTTP server) turn their protocol's
//! requests into calls on [`StorageApi`]; backends (a Foolscap upstream, a GBS
//! upstream, the embedded share store) implement it. Nothing else crosses the seam:
//! no protocol type appears here, and every failure is a [`StorageError`].
//!
//! The shape follows the semantics both protocols share, with the gaps made explicit:
//! - Immutable uploads are keyed by `(storage index, share number)` and guarded by an
//!   *upload secret* (GBS's `upload-secret`; a Foolscap front invents one per bucket
//!   writer). A write reports the ranges still required; [`StorageApi::write_immutable`]
//!   completes the share implicitly once every byte is written (GBS's 201), while
//!   [`StorageApi::close_immutable`] completes it explicitly with holes (Foolscap's
//!   `close()`, which Tahoe's server allows on an incomplete share).
//! - Mutable test-and-write carries only equality tests (the only operator Tahoe
//!   servers accept).
//!
//! Layout: `api` (the request/response types and [`StorageApi`]), `error`
//! ([`StorageError`] and its [`ErrorKind`]), `call` (a call as a value: [`Method`],
//! [`Call`], [`Reply`], [`CallInfo`]), [`layer`] (the one interception wrapper and the
//! concerns built on it), [`store`] (the embedded share store).

mod api;
mod call;
mod error;
pub mod layer;
/// A share store in memory: a quick backend for the unit tests of the layers.
#[cfg(test)]
pub mod memory;
pub mod store;

pub use api::*;
pub use call::*;
pub use error::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_index_base32_roundtrip_and_strictness() {
        let si = StorageIndex([0xab; 16]);
        let s = si.to_base32();
        assert_eq!(s.len(), 26);
        assert_eq!(StorageIndex::from_base32(&s), Some(si));
        assert_eq!(StorageIndex::from_base32(&s.to_ascii_uppercase()), None);
        assert_eq!(
            StorageIndex::from_base32("../../../../etc/passwd0000"),
            None
        );
        assert_eq!(StorageIndex::from_base32(&s[..25]), None);
        // Non-canonical: last character carries bits beyond the 128.
        let mut bad = s.clone();
        bad.pop();
        bad.push('7');
        if bad != s {
            assert_eq!(StorageIndex::from_base32(&bad), None);
        }
    }

    #[test]
    fn secrets_never_debug_print() {
        let s = Secret(b"supersecretsupersecretsupersecre".to_vec());
        assert!(!format!("{s:?}").contains("supersecret"));
    }
}
