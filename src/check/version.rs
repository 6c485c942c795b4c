//! The `version` group: the server describes itself. Every client asks for the
//! version first and sizes its shares by the maxima it announces, so a server that
//! cannot answer, or announces a zero maximum, cannot be used at all.

use super::format::{err, err_detail};
use super::suite::Suite;
use super::Group;

const G: Group = Group::Version;

impl Suite {
    pub(super) async fn version(&mut self) {
        let r = self.api.version().await;
        let d = err_detail(&r);
        self.check(
            G,
            "answers",
            "the server describes itself",
            "ok",
            err(&r),
            d,
        );
        let Ok(v) = r else { return };
        let got = if v.maximum_immutable_share_size > 0 && v.maximum_mutable_share_size > 0 {
            "positive"
        } else {
            "zero"
        };
        self.check(
            G,
            "share-sizes",
            "maximum immutable and mutable share sizes are positive",
            "positive",
            got,
            Some(format!(
                "immutable {}, mutable {}",
                v.maximum_immutable_share_size, v.maximum_mutable_share_size
            )),
        );
        let got = if v.application_version.is_empty() {
            "empty"
        } else {
            "present"
        };
        self.check(
            G,
            "application-version",
            "the server names its software",
            "present",
            got,
            None,
        );
    }
}
