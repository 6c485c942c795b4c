//! The `corruption` group: corruption advisories, which a client sends when a share
//! fails its hashes so that the server's operator can look. Advisories about unknown
//! shares run always (Tahoe ignores them over Foolscap, 404 over GBS); advisories
//! about existing shares only with `--destructive`, since the server keeps every
//! advisory for its operator and the suite cannot remove them.

use super::format::{err, err_detail};
use super::suite::{random_si, secret, Suite};
use super::{Group, Status};
use crate::storage::*;

const G: Group = Group::Corruption;

impl Suite {
    pub(super) async fn corruption(&mut self) {
        unknown(self).await;
        if !self.destructive {
            self.special(
                G,
                "existing",
                "advisories about existing shares are accepted",
                Status::Skipped,
                "needs --destructive: the server keeps every advisory for its operator",
            );
            return;
        }
        existing_immutable(self).await;
        existing_mutable(self).await;
    }
}

/// Advisories about a share of a storage index without shares, of either type.
async fn unknown(s: &mut Suite) {
    let unknown = random_si();
    for (name, st) in [
        ("unknown-immutable", ShareType::Immutable),
        ("unknown-mutable", ShareType::Mutable),
    ] {
        let r = s
            .api
            .advise_corrupt_share(st, unknown, 0, "swampgate check: no such share".into())
            .await;
        let d = err_detail(&r);
        s.check_proto(
            G,
            name,
            &format!(
                "an advisory about an unknown {} share: ignored over Foolscap, 404 over GBS",
                st.as_str()
            ),
            "ok",
            "error not_found",
            err(&r),
            d,
        );
    }
}

async fn advise(s: &Suite, st: ShareType, si: StorageIndex) -> StorageResult<()> {
    let reason = "swampgate check: a test advisory".to_string();
    s.api.advise_corrupt_share(st, si, 0, reason).await
}

/// An advisory about a new immutable share (which stays behind, with the advisory).
async fn existing_immutable(s: &mut Suite) {
    let si = random_si();
    let r = match s.upload_share(si).await {
        Ok(_) => advise(s, ShareType::Immutable, si).await,
        Err(e) => Err(e),
    };
    let d = err_detail(&r);
    s.check(
        G,
        "existing-immutable",
        "an advisory about an existing immutable share is accepted",
        "ok",
        err(&r),
        d,
    );
    s.left_behind.push(format!(
        "immutable share 0 of {si} (10 bytes) and a corruption advisory about it"
    ));
}

/// An advisory about a new mutable share (deleted afterwards; the advisory stays).
async fn existing_mutable(s: &mut Suite) {
    let msi = random_si();
    let we = secret();
    let r = match s.create_slot(msi, &we).await {
        Ok(_) => advise(s, ShareType::Mutable, msi).await,
        Err(e) => Err(e),
    };
    let d = err_detail(&r);
    s.check(
        G,
        "existing-mutable",
        "an advisory about an existing mutable share is accepted",
        "ok",
        err(&r),
        d,
    );
    s.left_behind.push(format!(
        "a corruption advisory about mutable share 0 of {msi}"
    ));
    s.delete_mutable(msi, &we).await;
}
