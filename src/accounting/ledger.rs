//! The accounts and the ledger of what each has stored, in one SQL database: SQLite
//! in the state dir (one process), or PostgreSQL (several processes sharing accounts
//! and usage). One schema, one set of statements for both, through sqlx's `Any`
//! driver.
//!
//! Charges are rows of `swampgate_shares`, one per share, keyed by link, storage
//! index and share number. An immutable share's row is written `pending` when its
//! allocation is granted (so it counts against the quota at once, in every process)
//! and turned `stored` when the upload completes; an aborted upload deletes it. A row
//! left `pending` by a killed process is settled by asking the backend whether the
//! share exists ([`Ledger::pending`], [`Ledger::settle`]): a completed upload is never
//! lost, an aborted one never charged.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::storage::{ShareNum, StorageIndex};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("accounting database {url}: {why}")]
    Open { url: String, why: String },
    #[error("accounting database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("no account named {0:?}")]
    NoSuchAccount(String),
    #[error("an account named {0:?} already exists")]
    Exists(String),
}

pub type LedgerResult<T> = Result<T, LedgerError>;

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An account as stored. Its swissnum is a secret: `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub link: String,
    pub swissnum: String,
    pub enabled: bool,
    /// Bytes it may store; `None`: no limit.
    pub quota: Option<u64>,
    /// Bytes per second it may read; `None`: no limit.
    pub read_rate: Option<u64>,
    /// Bumped on every change, so a running daemon sees what changed.
    pub generation: i64,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("link", &self.link)
            .field("enabled", &self.enabled)
            .field("quota", &self.quota)
            .field("read_rate", &self.read_rate)
            .finish_non_exhaustive()
    }
}

/// What `account list` shows of an account.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub name: String,
    pub link: String,
    pub state: &'static str,
    pub quota: Option<u64>,
    pub read_rate: Option<u64>,
    /// Stored and pending (allocated, not yet complete) shares' bytes.
    pub bytes_stored: u64,
    pub shares: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub calls: u64,
    /// Seconds since the epoch of its last call, if any.
    pub last_seen: Option<i64>,
}

/// Counts of one account's calls since the last flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub calls: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub last_seen: i64,
}

/// Which kind of share a row charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Immutable,
    Mutable,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Immutable => "immutable",
            Kind::Mutable => "mutable",
        }
    }
}

/// A share row left `pending`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub storage_index: StorageIndex,
    pub shnum: ShareNum,
    pub kind: Kind,
}

/// A share charged to an account, for reconciliation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charged {
    pub storage_index: StorageIndex,
    pub shnum: ShareNum,
    pub kind: Kind,
}

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS swampgate_accounts (
        name TEXT PRIMARY KEY,
        link TEXT NOT NULL,
        swissnum TEXT NOT NULL UNIQUE,
        enabled BIGINT NOT NULL,
        quota BIGINT,
        read_rate BIGINT,
        bytes_read BIGINT NOT NULL DEFAULT 0,
        bytes_written BIGINT NOT NULL DEFAULT 0,
        calls BIGINT NOT NULL DEFAULT 0,
        last_seen BIGINT,
        created BIGINT NOT NULL,
        generation BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS swampgate_shares (
        link TEXT NOT NULL,
        storage_index TEXT NOT NULL,
        shnum BIGINT NOT NULL,
        kind TEXT NOT NULL,
        account TEXT NOT NULL,
        size BIGINT NOT NULL,
        state TEXT NOT NULL,
        updated BIGINT NOT NULL,
        PRIMARY KEY (link, storage_index, shnum)
    )",
];

/// The accounting database.
#[derive(Clone)]
pub struct Ledger {
    pool: AnyPool,
    sqlite: bool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("sqlite", &self.sqlite)
            .finish()
    }
}

fn kind(s: &str) -> Kind {
    match s {
        "mutable" => Kind::Mutable,
        _ => Kind::Immutable,
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn account(row: &AnyRow) -> LedgerResult<Account> {
    Ok(Account {
        name: row.try_get("name")?,
        link: row.try_get("link")?,
        swissnum: row.try_get("swissnum")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        quota: row.try_get::<Option<i64>, _>("quota")?.map(to_u64),
        read_rate: row.try_get::<Option<i64>, _>("read_rate")?.map(to_u64),
        generation: row.try_get("generation")?,
    })
}

impl Ledger {
    /// Open (creating if need be) the database at `url`: `sqlite://PATH` or
    /// `postgres://…`. The URL is never logged or shown whole (it may hold a
    /// password): errors name [`redact`]ed URLs.
    pub async fn open(url: &str) -> LedgerResult<Ledger> {
        sqlx::any::install_default_drivers();
        let shown = redact(url);
        let open_err = |e: sqlx::Error| LedgerError::Open {
            url: shown.clone(),
            why: e.to_string(),
        };
        let sqlite = url.starts_with("sqlite:");
        if let Some(path) = sqlite_path(url) {
            // The accounts' swissnums are secrets: the file (and its WAL and shared
            // memory files, which SQLite creates with the same mode) is 0600.
            private_file(path).map_err(|e| LedgerError::Open {
                url: shown.clone(),
                why: format!("{path}: {e}"),
            })?;
        }
        let options = AnyPoolOptions::new()
            // SQLite has one writer: one connection serialises this process's
            // statements instead of making them wait on each other's locks.
            .max_connections(if sqlite { 1 } else { 4 })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        // WAL with full sync: a committed charge survives a power
                        // cut; the daemon and the `account` commands may write at
                        // once (they wait up to 10 s on each other).
                        for p in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA busy_timeout = 10000",
                        ] {
                            sqlx::query(p).execute(&mut *conn).await?;
                        }
                    } else {
                        // No NOTICEs ("relation … already exists, skipping" at
                        // every start): sqlx would log each at INFO.
                        sqlx::query("SET client_min_messages = warning")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            });
        let pool = options.connect(url).await.map_err(open_err)?;
        for s in SCHEMA {
            // Two processes starting at once on one PostgreSQL database race in
            // CREATE TABLE IF NOT EXISTS (one fails on a unique index of the
            // catalog); a retry then finds the table.
            let mut tries = 0;
            while let Err(e) = sqlx::query(s).execute(&pool).await {
                tries += 1;
                if tries == 5 {
                    return Err(open_err(e));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
            }
        }
        Ok(Ledger { pool, sqlite })
    }

    /// Whether this is a SQLite database (one process owns it).
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    pub async fn close(&self) {
        self.pool.close().await
    }

    /// Add an account; `Exists` if the name is taken.
    pub async fn add(&self, a: &Account) -> LedgerResult<()> {
        let r = sqlx::query(
            "INSERT INTO swampgate_accounts
                (name, link, swissnum, enabled, quota, read_rate, created, generation)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&a.name)
        .bind(&a.link)
        .bind(&a.swissnum)
        .bind(i64::from(a.enabled))
        .bind(a.quota.map(to_i64))
        .bind(a.read_rate.map(to_i64))
        .bind(now())
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(LedgerError::Exists(a.name.clone()));
        }
        Ok(())
    }

    pub async fn get(&self, name: &str) -> LedgerResult<Account> {
        let row = sqlx::query("SELECT * FROM swampgate_accounts WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| LedgerError::NoSuchAccount(name.to_string()))?;
        account(&row)
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> LedgerResult<Vec<Account>> {
        let rows = sqlx::query("SELECT * FROM swampgate_accounts ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account).collect()
    }

    async fn update(&self, name: &str, set: &str, value: Option<i64>) -> LedgerResult<()> {
        let sql = format!(
            "UPDATE swampgate_accounts SET {set} = $1, generation = generation + 1 \
             WHERE name = $2"
        );
        let r = sqlx::query(&sql)
            .bind(value)
            .bind(name)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(LedgerError::NoSuchAccount(name.to_string()));
        }
        Ok(())
    }

    pub async fn set_quota(&self, name: &str, quota: Option<u64>) -> LedgerResult<()> {
        self.update(name, "quota", quota.map(to_i64)).await
    }

    pub async fn set_read_rate(&self, name: &str, rate: Option<u64>) -> LedgerResult<()> {
        self.update(name, "read_rate", rate.map(to_i64)).await
    }

    pub async fn set_enabled(&self, name: &str, enabled: bool) -> LedgerResult<()> {
        self.update(name, "enabled", Some(i64::from(enabled))).await
    }

    /// Remove an account and its charges.
    pub async fn remove(&self, name: &str) -> LedgerResult<()> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("DELETE FROM swampgate_accounts WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(LedgerError::NoSuchAccount(name.to_string()));
        }
        sqlx::query("DELETE FROM swampgate_shares WHERE account = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every account's usage.
    pub async fn usage(&self) -> LedgerResult<Vec<Usage>> {
        let rows = sqlx::query(
            "SELECT a.name, a.link, a.enabled, a.quota, a.read_rate, a.bytes_read,
                    a.bytes_written, a.calls, a.last_seen,
                    CAST(COALESCE(SUM(s.size), 0) AS BIGINT) AS stored,
                    CAST(COUNT(s.shnum) AS BIGINT) AS shares
             FROM swampgate_accounts a LEFT JOIN swampgate_shares s ON s.account = a.name
             GROUP BY a.name, a.link, a.enabled, a.quota, a.read_rate, a.bytes_read,
                      a.bytes_written, a.calls, a.last_seen
             ORDER BY a.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Usage {
                    name: r.try_get("name")?,
                    link: r.try_get("link")?,
                    state: if r.try_get::<i64, _>("enabled")? != 0 {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    quota: r.try_get::<Option<i64>, _>("quota")?.map(to_u64),
                    read_rate: r.try_get::<Option<i64>, _>("read_rate")?.map(to_u64),
                    bytes_stored: to_u64(r.try_get("stored")?),
                    shares: to_u64(r.try_get("shares")?),
                    bytes_read: to_u64(r.try_get("bytes_read")?),
                    bytes_written: to_u64(r.try_get("bytes_written")?),
                    calls: to_u64(r.try_get("calls")?),
                    last_seen: r.try_get("last_seen")?,
                })
            })
            .collect()
    }

    /// Add `counts` to the accounts' counters (every process adds its own).
    pub async fn add_counts(&self, counts: &BTreeMap<String, Counts>) -> LedgerResult<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (name, c) in counts {
            sqlx::query(
                "UPDATE swampgate_accounts SET calls = calls + $1,
                    bytes_read = bytes_read + $2, bytes_written = bytes_written + $3,
                    last_seen = $4
                 WHERE name = $5",
            )
            .bind(to_i64(c.calls))
            .bind(to_i64(c.bytes_read))
            .bind(to_i64(c.bytes_written))
            .bind(c.last_seen)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Bytes charged to `account` (stored and pending).
    pub async fn stored(&self, account: &str) -> LedgerResult<u64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS stored FROM swampgate_shares WHERE account = $1",
        )
        .bind(account)
        .fetch_one(&self.pool)
        .await?;
        Ok(to_u64(row.try_get("stored")?))
    }

    /// Charge `account` for the first shares of `shnums` (in order) that fit in
    /// `quota` at `size` bytes each, as `pending` rows; the shares granted, and how
    /// many the quota left out. A share that already has a row (another upload of
    /// it, or stored) is not charged again, and not granted.
    pub async fn reserve(
        &self,
        account: &str,
        link: &str,
        si: StorageIndex,
        shnums: &[ShareNum],
        size: u64,
        quota: Option<u64>,
    ) -> LedgerResult<(Vec<ShareNum>, usize)> {
        let mut tx = self.pool.begin().await?;
        let mut room = match quota {
            None => u64::MAX,
            Some(q) => {
                let row = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS stored FROM swampgate_shares \
                     WHERE account = $1",
                )
                .bind(account)
                .fetch_one(&mut *tx)
                .await?;
                q.saturating_sub(to_u64(row.try_get("stored")?))
            }
        };
        let mut granted = Vec::new();
        let si_text = si.to_base32();
        let mut refused = 0;
        for &sh in shnums {
            if room < size {
                refused += 1;
                continue;
            }
            let r = sqlx::query(
                "INSERT INTO swampgate_shares
                    (link, storage_index, shnum, kind, account, size, state, updated)
                 VALUES ($1, $2, $3, 'immutable', $4, $5, 'pending', $6)
                 ON CONFLICT (link, storage_index, shnum) DO NOTHING",
            )
            .bind(link)
            .bind(&si_text)
            .bind(i64::from(sh))
            .bind(account)
            .bind(to_i64(size))
            .bind(now())
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 1 {
                room -= size;
                granted.push(sh);
            }
        }
        tx.commit().await?;
        Ok((granted, refused))
    }

    /// A pending immutable share completed: it now counts as stored. With
    /// `charge` (the account and allocated size this process reserved it for), a row
    /// a reconcile dropped meanwhile is written again.
    pub async fn complete(
        &self,
        link: &str,
        si: StorageIndex,
        sh: ShareNum,
        charge: Option<(&str, u64)>,
    ) -> LedgerResult<()> {
        match charge {
            None => {
                sqlx::query(
                    "UPDATE swampgate_shares SET state = 'stored', updated = $1
                     WHERE link = $2 AND storage_index = $3 AND shnum = $4
                       AND state = 'pending'",
                )
                .bind(now())
                .bind(link)
                .bind(si.to_base32())
                .bind(i64::from(sh))
                .execute(&self.pool)
                .await?;
            }
            Some((account, size)) => {
                sqlx::query(
                    "INSERT INTO swampgate_shares
                        (link, storage_index, shnum, kind, account, size, state, updated)
                     VALUES ($1, $2, $3, 'immutable', $4, $5, 'stored', $6)
                     ON CONFLICT (link, storage_index, shnum)
                     DO UPDATE SET state = 'stored', updated = excluded.updated",
                )
                .bind(link)
                .bind(si.to_base32())
                .bind(i64::from(sh))
                .bind(account)
                .bind(to_i64(size))
                .bind(now())
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// A pending immutable share will not complete (aborted, or not allocated after
    /// all): drop its charge.
    pub async fn release(&self, link: &str, si: StorageIndex, sh: ShareNum) -> LedgerResult<()> {
        sqlx::query(
            "DELETE FROM swampgate_shares
             WHERE link = $1 AND storage_index = $2 AND shnum = $3 AND state = 'pending'",
        )
        .bind(link)
        .bind(si.to_base32())
        .bind(i64::from(sh))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The pending rows of `link` last touched before `before` (seconds since the
    /// epoch): uploads that should have completed or been aborted by then.
    pub async fn pending(&self, link: &str, before: i64) -> LedgerResult<Vec<Pending>> {
        let rows = sqlx::query(
            "SELECT storage_index, shnum, kind FROM swampgate_shares
             WHERE link = $1 AND state = 'pending' AND updated < $2",
        )
        .bind(link)
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Pending {
                    storage_index: StorageIndex::from_base32(r.try_get("storage_index").ok()?)?,
                    shnum: ShareNum::try_from(r.try_get::<i64, _>("shnum").ok()?).ok()?,
                    kind: kind(r.try_get::<String, _>("kind").ok()?.as_str()),
                })
            })
            .collect())
    }

    /// Settle a pending row: `stored` if the share exists (the upload completed),
    /// else gone.
    pub async fn settle(&self, link: &str, p: &Pending, exists: bool) -> LedgerResult<()> {
        if exists {
            self.complete(link, p.storage_index, p.shnum, None).await
        } else {
            self.release(link, p.storage_index, p.shnum).await
        }
    }

    /// The stored shares of `link`, for reconciliation against the backend.
    pub async fn charged(&self, link: &str) -> LedgerResult<Vec<Charged>> {
        let rows = sqlx::query(
            "SELECT storage_index, shnum, kind FROM swampgate_shares
             WHERE link = $1 AND state = 'stored' ORDER BY storage_index, shnum",
        )
        .bind(link)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Charged {
                    storage_index: StorageIndex::from_base32(r.try_get("storage_index").ok()?)?,
                    shnum: ShareNum::try_from(r.try_get::<i64, _>("shnum").ok()?).ok()?,
                    kind: kind(r.try_get::<String, _>("kind").ok()?.as_str()),
                })
            })
            .collect())
    }

    /// A charged share the backend no longer holds: stop counting it.
    pub async fn forget(&self, link: &str, si: StorageIndex, sh: ShareNum) -> LedgerResult<()> {
        sqlx::query(
            "DELETE FROM swampgate_shares
             WHERE link = $1 AND storage_index = $2 AND shnum = $3 AND state = 'stored'",
        )
        .bind(link)
        .bind(si.to_base32())
        .bind(i64::from(sh))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A mutable share's row: the account it is charged to and its size, if any.
    pub async fn mutable(
        &self,
        link: &str,
        si: StorageIndex,
        sh: ShareNum,
    ) -> LedgerResult<Option<(String, u64)>> {
        let row = sqlx::query(
            "SELECT account, size FROM swampgate_shares
             WHERE link = $1 AND storage_index = $2 AND shnum = $3 AND kind = $4",
        )
        .bind(link)
        .bind(si.to_base32())
        .bind(i64::from(sh))
        .bind(Kind::Mutable.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("account")?, to_u64(r.try_get("size")?))))
            .transpose()
    }

    /// Before the write that creates a mutable share: a `pending` row charging
    /// `creator`, so a kill between the write and [`Ledger::set_mutable`] cannot
    /// lose the charge (a reconcile settles it). `false` if the share has a row.
    pub async fn create_mutable(
        &self,
        link: &str,
        si: StorageIndex,
        sh: ShareNum,
        creator: &str,
        size: u64,
    ) -> LedgerResult<bool> {
        let r = sqlx::query(
            "INSERT INTO swampgate_shares
                (link, storage_index, shnum, kind, account, size, state, updated)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)
             ON CONFLICT (link, storage_index, shnum) DO NOTHING",
        )
        .bind(link)
        .bind(si.to_base32())
        .bind(i64::from(sh))
        .bind(Kind::Mutable.as_str())
        .bind(creator)
        .bind(to_i64(size))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Record a mutable share's size after a write: charged to `creator` if the
    /// share has no row yet, else to whoever it is charged to. Size 0 (deleted)
    /// removes the row.
    pub async fn set_mutable(
        &self,
        link: &str,
        si: StorageIndex,
        sh: ShareNum,
        creator: &str,
        size: u64,
    ) -> LedgerResult<()> {
        if size == 0 {
            sqlx::query(
                "DELETE FROM swampgate_shares
                 WHERE link = $1 AND storage_index = $2 AND shnum = $3 AND kind = $4",
            )
            .bind(link)
            .bind(si.to_base32())
            .bind(i64::from(sh))
            .bind(Kind::Mutable.as_str())
            .execute(&self.pool)
            .await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO swampgate_shares
                (link, storage_index, shnum, kind, account, size, state, updated)
             VALUES ($1, $2, $3, $4, $5, $6, 'stored', $7)
             ON CONFLICT (link, storage_index, shnum)
             DO UPDATE SET size = excluded.size, state = 'stored', updated = excluded.updated",
        )
        .bind(link)
        .bind(si.to_base32())
        .bind(i64::from(sh))
        .bind(Kind::Mutable.as_str())
        .bind(creator)
        .bind(to_i64(size))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The file of a `sqlite://PATH[?options]` URL (not `:memory:`).
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Create `path` if missing, and make it readable by its owner only.
fn private_file(path: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// `url` without a password, for messages. The user info ends at the last `@`
/// (as URL parsers read it: a password may hold an unescaped `@`), so nothing of
/// the password survives, whatever it holds.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The passwords of the `SCHEME://USER:PASSWORD@HOST` URLs anywhere in `text` (a
/// URL ends at white space, a quote or a backslash; its user info at its last `@`),
/// for [`scrub`].
pub fn url_passwords(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '\\'))
            .unwrap_or(rest.len());
        let url = &rest[..end];
        if let Some((userinfo, _)) = url.rsplit_once('@') {
            if let Some((_, password)) = userinfo.split_once(':') {
                // Also each part before an `@` in it: a reader that ends the user
                // info at the first `@` sees that much.
                for (i, _) in password.match_indices('@') {
                    if i > 0 {
                        out.push(&password[..i]);
                    }
                }
                if !password.is_empty() {
                    out.push(password);
                }
            }
        }
    }
    out
}

/// `message` with every one of `passwords` replaced by `***`.
pub fn scrub(message: &str, passwords: &[&str]) -> String {
    let mut passwords = passwords.to_vec();
    // Longest first: a password inside another is not left half-replaced.
    passwords.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = message.to_string();
    for p in passwords {
        if out.contains(p) {
            out = out.replace(p, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn si(b: u8) -> StorageIndex {
        StorageIndex([b; 16])
    }

    async fn ledger(dir: &tempfile::TempDir) -> Ledger {
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("a.sqlite").display()
        );
        Ledger::open(&url).await.unwrap()
    }

    fn acct(name: &str, quota: Option<u64>) -> Account {
        Account {
            name: name.into(),
            link: "default".into(),
            swissnum: format!("swiss{name}"),
            enabled: true,
            quota,
            read_rate: None,
            generation: 0,
        }
    }

    #[tokio::test]
    async fn accounts_are_added_changed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir).await;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("a.sqlite"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the swissnums' file is private");
        l.add(&acct("alice", Some(100))).await.unwrap();
        assert!(matches!(
            l.add(&acct("alice", None)).await,
            Err(LedgerError::Exists(_))
        ));
        let a = l.get("alice").await.unwrap();
        assert_eq!((a.quota, a.enabled, a.generation), (Some(100), true, 1));
        l.set_quota("alice", None).await.unwrap();
        l.set_enabled("alice", false).await.unwrap();
        l.set_read_rate("alice", Some(5)).await.unwrap();
        let a = l.get("alice").await.unwrap();
        assert_eq!(
            (a.quota, a.enabled, a.read_rate, a.generation),
            (None, false, Some(5), 4)
        );
        assert!(
            !format!("{a:?}").contains("swiss"),
            "Debug shows no swissnum"
        );
        assert!(matches!(
            l.set_quota("bob", None).await,
            Err(LedgerError::NoSuchAccount(_))
        ));
        l.remove("alice").await.unwrap();
        assert!(l.accounts().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn reservations_stop_at_the_quota_and_settle() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir).await;
        l.add(&acct("alice", Some(250))).await.unwrap();
        l.add(&acct("bob", None)).await.unwrap();
        // 250 bytes hold two shares of 100.
        let got = l
            .reserve("alice", "default", si(1), &[0, 1, 2], 100, Some(250))
            .await
            .unwrap();
        assert_eq!(got, (vec![0, 1], 1));
        assert_eq!(l.stored("alice").await.unwrap(), 200);
        // A share with a row is granted to nobody else.
        let got = l
            .reserve("bob", "default", si(1), &[1, 2], 100, None)
            .await
            .unwrap();
        assert_eq!(got, (vec![2], 0));
        l.complete("default", si(1), 0, None).await.unwrap();
        l.release("default", si(1), 1).await.unwrap();
        assert_eq!(l.stored("alice").await.unwrap(), 100);
        // Pending rows before a time, settled by existence.
        let p = l.pending("default", now() + 10).await.unwrap();
        assert_eq!(
            p,
            [Pending {
                storage_index: si(1),
                shnum: 2,
                kind: Kind::Immutable,
            }]
        );
        l.settle("default", &p[0], true).await.unwrap();
        assert!(l.pending("default", now() + 10).await.unwrap().is_empty());
        let usage = l.usage().await.unwrap();
        assert_eq!(usage[0].bytes_stored, 100);
        assert_eq!(usage[1].bytes_stored, 100);
        assert_eq!(l.charged("default").await.unwrap().len(), 2);
        l.forget("default", si(1), 2).await.unwrap();
        assert_eq!(l.stored("bob").await.unwrap(), 0);
        // A completion whose pending row was dropped writes it again.
        l.complete("default", si(3), 0, Some(("bob", 40)))
            .await
            .unwrap();
        assert_eq!(l.stored("bob").await.unwrap(), 40);
    }

    #[tokio::test]
    async fn mutable_rows_stay_with_their_creator() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir).await;
        l.set_mutable("default", si(2), 0, "alice", 10)
            .await
            .unwrap();
        l.set_mutable("default", si(2), 0, "bob", 30).await.unwrap();
        assert_eq!(
            l.mutable("default", si(2), 0).await.unwrap(),
            Some(("alice".to_string(), 30))
        );
        l.set_mutable("default", si(2), 0, "bob", 0).await.unwrap();
        assert_eq!(l.mutable("default", si(2), 0).await.unwrap(), None);
    }

    #[tokio::test]
    async fn counters_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir).await;
        l.add(&acct("alice", None)).await.unwrap();
        let c = Counts {
            calls: 3,
            bytes_read: 10,
            bytes_written: 20,
            last_seen: 77,
        };
        let m = BTreeMap::from([("alice".to_string(), c)]);
        l.add_counts(&m).await.unwrap();
        l.add_counts(&m).await.unwrap();
        let u = &l.usage().await.unwrap()[0];
        assert_eq!((u.calls, u.bytes_read, u.bytes_written), (6, 20, 40));
        assert_eq!(u.last_seen, Some(77));
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact("postgres://sg:hunter2@127.0.0.1:5432/sg"),
            "postgres://sg:***@127.0.0.1:5432/sg"
        );
        assert_eq!(redact("sqlite:///x/a.sqlite"), "sqlite:///x/a.sqlite");
        // A password holding an unescaped `@` (fuzz finding 5): none of it is shown.
        assert_eq!(
            redact("postgres://sg:hun@ter2@127.0.0.1:5432/sg"),
            "postgres://sg:***@127.0.0.1:5432/sg"
        );
    }

    #[test]
    fn passwords_are_found_in_text_and_scrubbed() {
        let text = "database = \"postgres://sg:hun@ter2@h/sg\"\nx = 'mysql://u:pw@h' sqlite://a";
        let found = url_passwords(text);
        assert_eq!(found, ["hun", "hun@ter2", "pw"]);
        assert_eq!(
            scrub("bad: \"hun@ter2\", u:pw", &found),
            "bad: \"***\", u:***"
        );
    }
}
