//! Accounts served: each enabled account of a served link gets its own swissnum on
//! the link's Tub (Foolscap) and port (GBS), over the link's stack with an
//! [`Accounted`] layer on top. The ledger is polled every [`REFRESH`], so an
//! `account` command acts on a running daemon within a second: a new account is
//! served, new limits apply, and a disabled or removed one stops answering at once
//! and its connections close.
//!
//! Also here: the counters' flush (every [`REFRESH`]) and the reconciliation of
//! charges against the backend (at start, then every `[accounting]
//! reconcile_secs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::state::StateDir;
use crate::accounting::ledger::{now, Account, Kind};
use crate::accounting::metrics::AccountMetrics;
use crate::accounting::{AccountHandle, Accounted, Ledger};
use crate::foolscap::furl::Hint;
use crate::foolscap::storage::front::StorageServerObject;
use crate::foolscap::Tub;
use crate::gbs::nurl::Nurl;
use crate::gbs::server::{GbsServer, ServerConfig};
use crate::storage::layer::trace::{TraceSink, Traced};
use crate::storage::layer::wrap;
use crate::storage::StorageApi;

/// How often the daemon reads the accounts, and writes its counters.
pub const REFRESH: Duration = Duration::from_millis(500);

/// The usage gauges are read from the ledger every this many [`REFRESH`]es (5 s).
const USAGE_EVERY: u64 = 10;

/// The GBS servers of a port's accounts, by the `Authorization` header they
/// answer to (its SHA-256: the lookup compares no secret byte by byte).
#[derive(Default)]
pub struct AccountRoutes {
    by_auth: RwLock<HashMap<[u8; 32], (GbsServer, CancellationToken)>>,
}

impl AccountRoutes {
    fn key(swissnum: &str) -> [u8; 32] {
        Sha256::digest(crate::gbs::auth::authorization_value(swissnum.as_bytes())).into()
    }

    /// The server of the account whose swissnum `authorization` carries, and what
    /// revokes it.
    pub fn pick(&self, authorization: &[u8]) -> Option<(GbsServer, Revocation)> {
        let key: [u8; 32] = Sha256::digest(authorization).into();
        let routes = self.by_auth.read().expect("routes");
        let (server, revoked) = routes.get(&key)?;
        Some((
            server.clone(),
            Revocation {
                account: key,
                revoked: revoked.clone(),
            },
        ))
    }

    fn add(&self, swissnum: &str, server: GbsServer, revoked: CancellationToken) {
        self.by_auth
            .write()
            .expect("routes")
            .insert(Self::key(swissnum), (server, revoked));
    }

    fn remove(&self, swissnum: &str) {
        self.by_auth
            .write()
            .expect("routes")
            .remove(&Self::key(swissnum));
    }
}

/// An account's revocation, as a connection sees it: which account (a key, not
/// its swissnum) and the token cancelled when it is revoked.
pub struct Revocation {
    pub account: [u8; 32],
    pub revoked: CancellationToken,
}

/// What serving one link's accounts takes.
pub struct AccountLink {
    pub name: String,
    pub tub: Tub,
    pub hints: Vec<Hint>,
    /// The link's NURL (its swissnum replaced per account).
    pub nurl: Nurl,
    /// The link's stack below the fronts' trace layers.
    pub api: Arc<dyn StorageApi>,
    /// The link's trace, if any, and the protocol its backend speaks: an
    /// account's calls are traced with its name.
    pub trace: Option<(Arc<TraceSink>, &'static str)>,
    /// The backend itself, which reconciliation asks.
    pub backend: Arc<dyn StorageApi>,
    pub routes: Arc<AccountRoutes>,
    /// The GBS server settings of the link's port (the swissnum replaced).
    pub server_config: ServerConfig,
}

struct Live {
    generation: i64,
    swissnum: String,
    handle: Arc<AccountHandle>,
}

/// The accounts this process serves.
pub struct Accounts {
    ledger: Ledger,
    state: StateDir,
    links: BTreeMap<String, AccountLink>,
    live: Mutex<BTreeMap<String, Live>>,
    /// Accounts of links this process does not serve, already logged.
    elsewhere: Mutex<std::collections::BTreeSet<String>>,
    upload_idle: Duration,
    metrics: AccountMetrics,
}

/// An account's URLs.
pub struct AccountUrls {
    pub furl: String,
    pub nurl: String,
}

impl Accounts {
    pub fn new(
        ledger: Ledger,
        state: StateDir,
        links: Vec<AccountLink>,
        upload_idle: Duration,
        metrics: AccountMetrics,
    ) -> Accounts {
        Accounts {
            ledger,
            state,
            links: links.into_iter().map(|l| (l.name.clone(), l)).collect(),
            live: Mutex::new(BTreeMap::new()),
            elsewhere: Default::default(),
            upload_idle,
            metrics,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// An account's URLs on its link.
    fn urls(link: &AccountLink, swissnum: &str) -> AccountUrls {
        let furl = link.tub.furl(swissnum, link.hints.clone()).to_string();
        let nurl = Nurl {
            swissnum: swissnum.to_string(),
            ..link.nurl.clone()
        }
        .to_string();
        AccountUrls { furl, nurl }
    }

    /// Serve `a` (enabled, on a served link).
    fn serve(&self, link: &AccountLink, a: &Account) -> Live {
        let handle = Arc::new(
            AccountHandle::new(
                &a.name,
                &a.link,
                self.ledger.clone(),
                a.quota,
                a.read_rate,
                self.upload_idle,
            )
            .with_series(self.metrics.series(&a.link, &a.name)),
        );
        let layer = Arc::new(Accounted {
            handle: handle.clone(),
        });
        // The fronts' views: traced (with the account's name) if the link is.
        let traced = |front| match &link.trace {
            None => link.api.clone(),
            Some((sink, upstream)) => wrap(
                Arc::new(
                    Traced::new(&link.name, front, upstream, sink.clone()).for_account(&a.name),
                ),
                link.api.clone(),
            ),
        };
        let revoked = handle.revoked().clone();
        link.tub.publish(
            &a.swissnum,
            StorageServerObject::revocable(
                wrap(
                    layer.clone(),
                    traced(crate::foolscap::storage::front::TRACE_FRONT),
                ),
                revoked.clone(),
            ),
        );
        let mut config = link.server_config.clone();
        config.swissnum = a.swissnum.clone();
        link.routes.add(
            &a.swissnum,
            GbsServer::new(wrap(layer, traced(crate::gbs::server::TRACE_FRONT)), config),
            revoked,
        );
        let urls = Self::urls(link, &a.swissnum);
        if let Err(e) = self
            .state
            .write_account_urls(&a.name, &urls.furl, &urls.nurl)
        {
            warn!(account = %a.name, "cannot write the account's URL files: {e}");
        }
        info!(account = %a.name, link = %a.link, "account served");
        Live {
            generation: a.generation,
            swissnum: a.swissnum.clone(),
            handle,
        }
    }

    /// Stop serving an account: its swissnum is unknown from now on and its
    /// connections close.
    fn revoke(&self, name: &str, live: Live, why: &str) {
        if let Some(link) = self.links.get(&live.handle.link) {
            link.tub.unpublish(&live.swissnum);
            link.routes.remove(&live.swissnum);
        }
        live.handle.revoke();
        info!(account = %name, link = %live.handle.link, "account {why}: no longer served");
    }

    /// Read the accounts and serve what changed.
    pub async fn refresh(&self) -> Result<(), crate::accounting::LedgerError> {
        let accounts = self.ledger.accounts().await?;
        let mut live = self.live.lock().expect("accounts");
        let mut seen = std::collections::BTreeSet::new();
        for a in &accounts {
            seen.insert(a.name.clone());
            let Some(link) = self.links.get(&a.link) else {
                if self
                    .elsewhere
                    .lock()
                    .expect("elsewhere")
                    .insert(a.name.clone())
                {
                    info!(account = %a.name, link = %a.link, "account of a link this process does not serve");
                }
                continue;
            };
            match live.get(&a.name) {
                Some(l) if l.generation == a.generation => continue,
                Some(l) if a.enabled && l.swissnum == a.swissnum => {
                    l.handle.set_limits(a.quota, a.read_rate);
                    live.get_mut(&a.name).expect("present").generation = a.generation;
                    info!(account = %a.name, quota = ?a.quota, read_rate = ?a.read_rate, "account limits changed");
                }
                Some(_) => {
                    let old = live.remove(&a.name).expect("present");
                    self.revoke(&a.name, old, "disabled");
                    if a.enabled {
                        live.insert(a.name.clone(), self.serve(link, a));
                    }
                }
                None if a.enabled => {
                    live.insert(a.name.clone(), self.serve(link, a));
                }
                None => {}
            }
        }
        let gone: Vec<String> = live
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            let old = live.remove(&name).expect("present");
            self.revoke(&name, old, "removed");
        }
        Ok(())
    }

    /// Write the counters of every served account.
    async fn flush(&self) {
        let handles: Vec<Arc<AccountHandle>> = self
            .live
            .lock()
            .expect("accounts")
            .values()
            .map(|l| l.handle.clone())
            .collect();
        let mut counts = BTreeMap::new();
        for h in &handles {
            let c = h.take_counts();
            if c.calls > 0 || c.bytes_read > 0 {
                counts.insert(h.name.clone(), c);
            }
        }
        if let Err(e) = self.ledger.add_counts(&counts).await {
            warn!("accounting: cannot write the counters (kept for the next try): {e}");
            for h in &handles {
                if let Some(c) = counts.remove(&h.name) {
                    h.return_counts(c);
                }
            }
        }
    }

    /// Set the served accounts' usage gauges from the ledger.
    async fn read_usage(&self) {
        let usage = match self.ledger.usage().await {
            Ok(u) => u,
            Err(e) => return warn!("accounting: cannot read usage: {e}"),
        };
        let live = self.live.lock().expect("accounts");
        for u in usage {
            if let Some(l) = live.get(&u.name) {
                let s = l.handle.series();
                s.stored_bytes
                    .set(i64::try_from(u.bytes_stored).unwrap_or(i64::MAX));
                s.shares.set(i64::try_from(u.shares).unwrap_or(i64::MAX));
            }
        }
    }

    fn uploading_here(&self, si: crate::storage::StorageIndex, sh: u16) -> bool {
        self.live
            .lock()
            .expect("accounts")
            .values()
            .any(|l| l.handle.is_uploading(si, sh))
    }

    /// Settle the pending charges last touched before `before` and forget charged
    /// shares the backend no longer holds.
    pub async fn reconcile(&self, before: i64) {
        for link in self.links.values() {
            if let Err(e) = self.reconcile_link(link, before).await {
                warn!(link = %link.name, "accounting: reconciliation stopped: {e}");
            }
        }
    }

    async fn reconcile_link(&self, link: &AccountLink, before: i64) -> Result<(), String> {
        let pending = self
            .ledger
            .pending(&link.name, before)
            .await
            .map_err(|e| e.to_string())?;
        let mut settled = 0;
        for p in pending {
            if self.uploading_here(p.storage_index, p.shnum) {
                continue;
            }
            let shares = match p.kind {
                Kind::Immutable => link.backend.list_immutable_shares(p.storage_index).await,
                Kind::Mutable => link.backend.list_mutable_shares(p.storage_index).await,
            }
            .map_err(|e| format!("cannot list shares upstream: {e}"))?;
            self.ledger
                .settle(&link.name, &p, shares.contains(&p.shnum))
                .await
                .map_err(|e| e.to_string())?;
            settled += 1;
        }
        let charged = self
            .ledger
            .charged(&link.name)
            .await
            .map_err(|e| e.to_string())?;
        let mut forgotten = 0;
        let mut listed: HashMap<(crate::storage::StorageIndex, bool), _> = HashMap::new();
        for c in charged {
            let mutable = c.kind == Kind::Mutable;
            let key = (c.storage_index, mutable);
            let held = match listed.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let shares = if mutable {
                        link.backend.list_mutable_shares(c.storage_index).await
                    } else {
                        link.backend.list_immutable_shares(c.storage_index).await
                    }
                    .map_err(|e| format!("cannot list shares upstream: {e}"))?;
                    e.insert(shares)
                }
            };
            if !held.contains(&c.shnum) {
                self.ledger
                    .forget(&link.name, c.storage_index, c.shnum)
                    .await
                    .map_err(|e| e.to_string())?;
                forgotten += 1;
            }
        }
        if settled > 0 || forgotten > 0 {
            info!(
                link = %link.name,
                settled, forgotten, "accounting: charges reconciled with the backend"
            );
        }
        Ok(())
    }

    /// Poll the accounts and flush counters every [`REFRESH`], reconcile every
    /// `reconcile` (the first time at once: for SQLite, whose only writer this
    /// process is, every upload left pending by an earlier run), until `stop`.
    pub async fn run(self: Arc<Self>, reconcile: Duration, stop: CancellationToken) {
        // SQLite has one writer, this process: every pending row but those of its
        // own uploads (skipped) was left by an earlier run. PostgreSQL may be shared
        // with processes uploading now: only rows idle past the upload timeout.
        let first_before = if self.ledger.is_sqlite() {
            i64::MAX
        } else {
            now() - self.upload_idle.as_secs() as i64
        };
        self.reconcile(first_before).await;
        self.read_usage().await;
        let mut tick = tokio::time::interval(REFRESH);
        let mut ticks = 0u64;
        let mut next_reconcile = tokio::time::Instant::now() + reconcile;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.refresh().await {
                warn!("accounting: cannot read the accounts: {e}");
            }
            self.flush().await;
            ticks += 1;
            if ticks.is_multiple_of(USAGE_EVERY) {
                self.read_usage().await;
            }
            if tokio::time::Instant::now() >= next_reconcile {
                next_reconcile = tokio::time::Instant::now() + reconcile;
                self.reconcile(now() - self.upload_idle.as_secs() as i64)
                    .await;
            }
        }
        self.flush().await;
    }
}
