//! The one place where storage errors and HTTP statuses meet, in both directions. Pure.
//!
//! Server side ([`status_for`]): the status Tahoe 1.20's server sends for the same
//! failure, per operation. Some of Tahoe's statuses are accidents of unhandled Python
//! exceptions (500 for a write past the allocated size, for a mutable operation on an
//! immutable storage index); they are kept so a Tahoe client sees what it would see
//! from a Tahoe server.
//!
//! Client side ([`error_for`]): what a status from an upstream GBS server means, per
//! operation, using what Tahoe's server sends (e.g. 401 with the body "Wrong
//! Authorization header" is a bad swissnum, 401 with an empty body on a PATCH is a
//! wrong upload secret).

use http::StatusCode;

use crate::storage::StorageError;

/// The GBS operations, for the operation-specific parts of the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Version,
    Allocate,
    Write,
    Abort,
    ListImmutable,
    ReadImmutable,
    AddLease,
    CorruptImmutable,
    ReadTestWrite,
    ListMutable,
    ReadMutable,
    CorruptMutable,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Version => "version",
            Operation::Allocate => "allocate",
            Operation::Write => "write",
            Operation::Abort => "abort",
            Operation::ListImmutable => "list immutable shares",
            Operation::ReadImmutable => "read immutable share",
            Operation::AddLease => "add lease",
            Operation::CorruptImmutable => "advise corrupt immutable share",
            Operation::ReadTestWrite => "read-test-write",
            Operation::ListMutable => "list mutable shares",
            Operation::ReadMutable => "read mutable share",
            Operation::CorruptMutable => "advise corrupt mutable share",
        }
    }
}

/// The body Tahoe's server sends with a 401 for a bad swissnum.
pub const WRONG_AUTHORIZATION: &str = "Wrong Authorization header";

/// The status a GBS server answers when `op` fails with `e`.
pub fn status_for(op: Operation, e: &StorageError) -> StatusCode {
    use StorageError::*;
    match e {
        NotFound(_) => StatusCode::NOT_FOUND,
        ConflictingWrite(_) => StatusCode::CONFLICT,
        // Tahoe: DataTooLargeError is not handled by the HTTP server.
        DataTooLarge(_) => StatusCode::INTERNAL_SERVER_ERROR,
        WrongUploadSecret | BadWriteEnabler(_) => StatusCode::UNAUTHORIZED,
        NotAllowed(_) => match op {
            // Tahoe: aborting a completed upload.
            Operation::Abort => StatusCode::METHOD_NOT_ALLOWED,
            // Tahoe: writing to a completed (no longer in progress) upload.
            Operation::Write => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        },
        InvalidRequest(_) => StatusCode::BAD_REQUEST,
        // Tahoe: Unknown{Mutable,Immutable}ContainerVersionError is not handled.
        WrongContainer(_) => StatusCode::INTERNAL_SERVER_ERROR,
        NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
        Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Remote { .. } | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What an upstream's non-success status means for `op`. `body` is the (already
/// length-limited) response body, used for the message.
pub fn error_for(op: Operation, status: StatusCode, body: &[u8]) -> StorageError {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let detail = if text.is_empty() {
        format!("{} answered {}", op.name(), status)
    } else {
        format!("{} answered {}: {}", op.name(), status, text)
    };
    let remote = |detail: String| StorageError::Remote {
        kind: format!("HTTP {}", status.as_u16()),
        message: detail,
    };
    match status {
        StatusCode::UNAUTHORIZED if text == WRONG_AUTHORIZATION => {
            remote(format!("{detail} (the server refused the NURL's swissnum)"))
        }
        StatusCode::UNAUTHORIZED => match op {
            Operation::Write | Operation::Abort => StorageError::WrongUploadSecret,
            Operation::ReadTestWrite => StorageError::BadWriteEnabler(detail),
            _ => remote(detail),
        },
        StatusCode::NOT_FOUND => StorageError::NotFound(detail),
        StatusCode::CONFLICT => StorageError::ConflictingWrite(detail),
        StatusCode::METHOD_NOT_ALLOWED if op == Operation::Abort => {
            StorageError::NotAllowed(detail)
        }
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::RANGE_NOT_SATISFIABLE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::NOT_ACCEPTABLE => StorageError::InvalidRequest(detail),
        StatusCode::INSUFFICIENT_STORAGE => StorageError::NoSpace(detail),
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            StorageError::Unavailable(detail)
        }
        _ => remote(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_statuses_follow_tahoe() {
        use Operation::*;
        let s = |op, e: StorageError| status_for(op, &e).as_u16();
        assert_eq!(s(Write, StorageError::NotFound("x".into())), 404);
        assert_eq!(s(Write, StorageError::ConflictingWrite("x".into())), 409);
        assert_eq!(s(Write, StorageError::DataTooLarge("x".into())), 500);
        assert_eq!(s(Write, StorageError::WrongUploadSecret), 401);
        assert_eq!(s(Write, StorageError::NotAllowed("done".into())), 404);
        assert_eq!(s(Abort, StorageError::NotAllowed("done".into())), 405);
        assert_eq!(s(Abort, StorageError::WrongUploadSecret), 401);
        assert_eq!(
            s(ReadTestWrite, StorageError::BadWriteEnabler("x".into())),
            401
        );
        assert_eq!(
            s(ReadTestWrite, StorageError::WrongContainer("x".into())),
            500
        );
        assert_eq!(s(AddLease, StorageError::NotFound("x".into())), 404);
        assert_eq!(
            s(ReadTestWrite, StorageError::InvalidRequest("x".into())),
            400
        );
    }

    #[test]
    fn client_errors_round_trip() {
        use Operation::*;
        // What our server sends comes back as the same error kind.
        let cases = [
            (Write, StorageError::NotFound("x".into())),
            (Write, StorageError::ConflictingWrite("x".into())),
            (Write, StorageError::WrongUploadSecret),
            (Abort, StorageError::WrongUploadSecret),
            (Abort, StorageError::NotAllowed("x".into())),
            (ReadTestWrite, StorageError::BadWriteEnabler("x".into())),
            (Allocate, StorageError::InvalidRequest("x".into())),
            (Allocate, StorageError::Unavailable("x".into())),
        ];
        for (op, e) in cases {
            let back = error_for(op, status_for(op, &e), b"");
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{op:?} {e:?} -> {back:?}"
            );
        }
        let e = error_for(
            Write,
            StatusCode::UNAUTHORIZED,
            WRONG_AUTHORIZATION.as_bytes(),
        );
        assert!(matches!(e, StorageError::Remote { .. }));
        assert!(e.to_string().contains("swissnum"));
        let e = error_for(Version, StatusCode::IM_A_TEAPOT, b"");
        assert!(matches!(e, StorageError::Remote { ref kind, .. } if kind == "HTTP 418"));
    }
}
