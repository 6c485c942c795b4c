//! The `leases` group: leases are added to and renewed on immutable and mutable
//! shares. Leases are how a share stays on a server (garbage collection removes
//! shares without one), so a client that cannot add or renew them loses its files.
//! A lease on a storage index without shares is the one place the protocols differ:
//! Tahoe ignores it over Foolscap and answers 404 over GBS.

use super::edges::foolscap_add_lease;
use super::format::{err, err_detail};
use super::suite::{lease, random_si, secret, Suite};
use super::{Group, Status, Target};
use crate::foolscap::Tub;

const G: Group = Group::Leases;

impl Suite {
    pub(super) async fn leases(&mut self, target: &Target, tub: &Tub) {
        immutable(self).await;
        mutable(self).await;
        unknown(self, target, tub).await;
        self.special(
            G,
            "expiry",
            "leases expire 31 days after they were added or renewed",
            Status::NotObservable,
            "lease expiry times are internal to the server; no protocol call shows them",
        );
    }
}

/// A lease on a new immutable share is added, then renewed with the same secrets.
async fn immutable(s: &mut Suite) {
    let si = random_si();
    let l = lease();
    let made = s.upload_share(si).await;
    let d = err_detail(&made);
    let setup = "an immutable share to lease is uploaded";
    if !s.check(G, "setup", setup, "ok", err(&made), d) {
        return;
    }
    let r = s.api.add_lease(si, l.clone()).await;
    let d = err_detail(&r);
    s.check(
        G,
        "add",
        "adding a lease to a share succeeds",
        "ok",
        err(&r),
        d,
    );
    let r = s.api.add_lease(si, l).await;
    let d = err_detail(&r);
    s.check(
        G,
        "renew",
        "adding it again with the same secrets renews it",
        "ok",
        err(&r),
        d,
    );
    s.left_behind.push(format!(
        "immutable share 0 of {si} (10 bytes) with its leases"
    ));
}

/// A lease on a new mutable share is added; the share is deleted afterwards.
async fn mutable(s: &mut Suite) {
    let msi = random_si();
    let we = secret();
    let r = match s.create_slot(msi, &we).await {
        Ok(_) => s.api.add_lease(msi, lease()).await,
        Err(e) => Err(e),
    };
    let d = err_detail(&r);
    s.check(
        G,
        "add-mutable",
        "adding a lease to a mutable share succeeds",
        "ok",
        err(&r),
        d,
    );
    s.delete_mutable(msi, &we).await;
}

/// A lease on a storage index without shares.
async fn unknown(s: &mut Suite, target: &Target, tub: &Tub) {
    let unknown = random_si();
    let r = match target {
        Target::Gbs(_) => s.api.add_lease(unknown, lease()).await,
        // The Foolscap backend refuses unknown storage indexes itself (as GBS does);
        // ask the server directly.
        Target::Foolscap(furl) => foolscap_add_lease(tub, furl, unknown).await,
    };
    let d = err_detail(&r);
    s.check_proto(
        G,
        "unknown",
        "a lease on a storage index without shares: ignored over Foolscap, 404 over GBS",
        "ok",
        "error not_found",
        err(&r),
        d,
    );
}
