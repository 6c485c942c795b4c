//! Error mapping between the storage seam and Foolscap, in one place.
//!
//! Tahoe's Python peers match remote errors on the `parents` of the copied
//! Failure, so each error carries the qualified class names Tahoe's own server
//! would raise.

use crate::foolscap::{CallError, Failure};
use crate::storage::StorageError;

/// What a Foolscap client sees for a seam error.
pub fn storage_to_failure(e: &StorageError) -> Failure {
    match e {
        StorageError::DataTooLarge(m) => {
            Failure::new("allmydata.interfaces.DataTooLargeError", m.clone(), &[])
        }
        StorageError::ConflictingWrite(m) => {
            Failure::new("allmydata.interfaces.ConflictingWriteError", m.clone(), &[])
        }
        StorageError::BadWriteEnabler(m) => {
            Failure::new("allmydata.interfaces.BadWriteEnablerError", m.clone(), &[])
        }
        StorageError::NotFound(m) => {
            Failure::new("builtins.KeyError", m.clone(), &["builtins.LookupError"])
        }
        StorageError::InvalidRequest(m) => Failure::new("builtins.AssertionError", m.clone(), &[]),
        StorageError::WrongContainer(m) => Failure::new(
            "allmydata.storage.mutable.UnknownMutableContainerVersionError",
            m.clone(),
            &["allmydata.storage.common.UnknownContainerVersionError"],
        ),
        StorageError::NotAllowed(m) => Failure::new("builtins.AssertionError", m.clone(), &[]),
        StorageError::WrongUploadSecret => {
            Failure::new("builtins.AssertionError", "wrong upload secret", &[])
        }
        StorageError::NoSpace(m) => Failure::new("builtins.OSError", m.clone(), &[]),
        StorageError::Unavailable(m) => Failure::new(
            "builtins.ConnectionError",
            format!("upstream storage server unavailable: {m}"),
            &["builtins.OSError"],
        ),
        StorageError::Remote { kind, message } => Failure::new(kind, message.clone(), &[]),
        StorageError::Internal(m) => Failure::new("builtins.RuntimeError", m.clone(), &[]),
    }
}

/// What the seam sees for a failed call to an upstream Foolscap server.
pub fn call_to_storage(e: CallError) -> StorageError {
    match e {
        CallError::ConnectionLost(m) => StorageError::Unavailable(m),
        e @ CallError::Timeout(..) => StorageError::Unavailable(e.to_string()),
        CallError::Violation(m) => {
            StorageError::Internal(format!("upstream answer violated its schema: {m}"))
        }
        CallError::Remote(f) => failure_to_storage(&f),
    }
}

pub fn failure_to_storage(f: &Failure) -> StorageError {
    let m = f.value.clone();
    if f.check("allmydata.interfaces.DataTooLargeError") {
        StorageError::DataTooLarge(m)
    } else if f.check("allmydata.interfaces.ConflictingWriteError") {
        StorageError::ConflictingWrite(m)
    } else if f.check("allmydata.interfaces.BadWriteEnablerError") {
        StorageError::BadWriteEnabler(m)
    } else if f.check("foolscap.tokens.Violation") {
        StorageError::InvalidRequest(m)
    } else if f.check("allmydata.storage.common.UnknownContainerVersionError") {
        StorageError::WrongContainer(m)
    } else {
        StorageError::Remote {
            kind: f.kind.clone(),
            message: m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_application_errors() {
        for e in [
            StorageError::DataTooLarge("(100, 100, 10)".into()),
            StorageError::ConflictingWrite("x".into()),
            StorageError::BadWriteEnabler("The write enabler was recorded by nodeid 'x'.".into()),
        ] {
            assert_eq!(failure_to_storage(&storage_to_failure(&e)), e);
        }
        let f = storage_to_failure(&StorageError::NotFound("share".into()));
        assert!(f.check("builtins.KeyError") && f.check("builtins.LookupError"));
    }
}
