//! How a storage call fails: [`StorageError`], and its [`ErrorKind`], the one
//! spelling metrics, traces and `check` use.

/// Every way a storage operation can fail, independent of protocol.
///
/// Fronts map these to their protocol's errors in one place; backends map their
/// upstream's errors to these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The storage index, share or upload is unknown (or not yet complete, for reads).
    #[error("not found: {0}")]
    NotFound(String),
    /// A write disagreed with bytes already written at the same offsets.
    #[error("conflicting write: {0}")]
    ConflictingWrite(String),
    /// A write went past the allocated size.
    #[error("data too large: {0}")]
    DataTooLarge(String),
    /// The upload secret does not match the one the upload was allocated with.
    #[error("wrong upload secret")]
    WrongUploadSecret,
    /// The write enabler does not match the one recorded for the mutable slot.
    #[error("bad write enabler: {0}")]
    BadWriteEnabler(String),
    /// The operation is not allowed in the share's current state (e.g. abort of a
    /// completed upload, write after close).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The request itself is malformed (bad vectors, unsupported test operator, …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The storage index holds a container of the other kind (mutable vs immutable).
    #[error("wrong container kind: {0}")]
    WrongContainer(String),
    /// No space left, or the request exceeds a configured limit.
    #[error("no space: {0}")]
    NoSpace(String),
    /// The upstream server could not be reached or the connection was lost.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// An upstream failure that maps to none of the above, passed through with the
    /// upstream's own type name (e.g. a Python exception class) and message.
    #[error("remote error {kind}: {message}")]
    Remote { kind: String, message: String },
    /// A local failure (I/O, corrupt container on disk, …).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// What kind of failure a [`StorageError`] is, without its message: the label of
/// `swampgate_errors_total`, a trace line's `outcome` and `check`'s "error KIND".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    NotFound,
    ConflictingWrite,
    DataTooLarge,
    WrongUploadSecret,
    BadWriteEnabler,
    NotAllowed,
    InvalidRequest,
    WrongContainer,
    NoSpace,
    Unavailable,
    Remote,
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::NotFound,
        ErrorKind::ConflictingWrite,
        ErrorKind::DataTooLarge,
        ErrorKind::WrongUploadSecret,
        ErrorKind::BadWriteEnabler,
        ErrorKind::NotAllowed,
        ErrorKind::InvalidRequest,
        ErrorKind::WrongContainer,
        ErrorKind::NoSpace,
        ErrorKind::Unavailable,
        ErrorKind::Remote,
        ErrorKind::Internal,
    ];

    /// The kinds under which a fault ([`StorageError::is_fault`]) can be counted.
    pub fn can_be_fault(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::Remote | ErrorKind::Internal | ErrorKind::NoSpace
        )
    }

    /// The kind's one spelling (snake case, as Prometheus labels are written).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::ConflictingWrite => "conflicting_write",
            ErrorKind::DataTooLarge => "data_too_large",
            ErrorKind::WrongUploadSecret => "wrong_upload_secret",
            ErrorKind::BadWriteEnabler => "bad_write_enabler",
            ErrorKind::NotAllowed => "not_allowed",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::WrongContainer => "wrong_container",
            ErrorKind::NoSpace => "no_space",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Remote => "remote",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exceptions a Tahoe server raises when it rejects a request's arguments (a
/// precondition, an unknown key, a bad value): the upstream answered, the client
/// asked wrongly.
const REJECTIONS: &[&str] = &[
    "AssertionError",
    "KeyError",
    "ValueError",
    "IndexError",
    "TypeError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
];

impl StorageError {
    /// True for a fault of the server side, what an operator is alerted on: the
    /// upstream unreachable or failing (an HTTP 5xx, an exception that is not a
    /// rejection of the request), swampgate's own error, a full disk. Everything
    /// else is a client's mistake or a question with a negative answer (an unknown
    /// share, a conflicting write, a wrong secret, a rejected argument), normal on
    /// a healthy grid.
    pub fn is_fault(&self) -> bool {
        match self {
            StorageError::Remote { kind, .. } => {
                if let Some(status) = kind.strip_prefix("HTTP ") {
                    !status.starts_with('4')
                } else {
                    let name = kind.rsplit('.').next().unwrap_or(kind);
                    !REJECTIONS.contains(&name)
                }
            }
            e => matches!(
                e.kind(),
                ErrorKind::Unavailable | ErrorKind::Internal | ErrorKind::NoSpace
            ),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::NotFound(_) => ErrorKind::NotFound,
            StorageError::ConflictingWrite(_) => ErrorKind::ConflictingWrite,
            StorageError::DataTooLarge(_) => ErrorKind::DataTooLarge,
            StorageError::WrongUploadSecret => ErrorKind::WrongUploadSecret,
            StorageError::BadWriteEnabler(_) => ErrorKind::BadWriteEnabler,
            StorageError::NotAllowed(_) => ErrorKind::NotAllowed,
            StorageError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            StorageError::WrongContainer(_) => ErrorKind::WrongContainer,
            StorageError::NoSpace(_) => ErrorKind::NoSpace,
            StorageError::Unavailable(_) => ErrorKind::Unavailable,
            StorageError::Remote { .. } => ErrorKind::Remote,
            StorageError::Internal(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_distinct_snake_case_name() {
        let names: std::collections::BTreeSet<_> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        for n in names {
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{n}"
            );
        }
        let e = StorageError::Remote {
            kind: "builtins.KeyError".into(),
            message: "x".into(),
        };
        assert_eq!(e.kind().as_str(), "remote");
        assert_eq!(
            StorageError::WrongUploadSecret.kind(),
            ErrorKind::WrongUploadSecret
        );
    }
}

#[cfg(test)]
mod fault_tests {
    use super::*;

    #[test]
    fn faults_are_the_server_side_failing() {
        let remote = |kind: &str| StorageError::Remote {
            kind: kind.into(),
            message: String::new(),
        };
        for e in [
            StorageError::Unavailable("x".into()),
            StorageError::Internal("x".into()),
            StorageError::NoSpace("x".into()),
            remote("HTTP 500"),
            remote("builtins.OSError"),
            remote("exceptions.IOError"),
        ] {
            assert!(e.is_fault(), "{e:?}");
        }
        for e in [
            StorageError::NotFound("x".into()),
            StorageError::ConflictingWrite("x".into()),
            StorageError::WrongUploadSecret,
            StorageError::BadWriteEnabler("x".into()),
            remote("HTTP 400"),
            remote("builtins.AssertionError"),
            remote("exceptions.KeyError"),
        ] {
            assert!(!e.is_fault(), "{e:?}");
        }
    }
}
