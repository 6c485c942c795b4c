//! Per-account metrics: calls, bytes read and written, shares refused for the
//! quota, and what the account stores (from the ledger). Labelled by link and
//! account name, never by swissnum.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabel {
    pub link: String,
    pub account: String,
}

/// The families, registered once per process.
#[derive(Clone, Default)]
pub struct AccountMetrics {
    calls: Family<AccountLabel, Counter>,
    read_bytes: Family<AccountLabel, Counter>,
    written_bytes: Family<AccountLabel, Counter>,
    refused_shares: Family<AccountLabel, Counter>,
    stored_bytes: Family<AccountLabel, Gauge>,
    shares: Family<AccountLabel, Gauge>,
}

impl AccountMetrics {
    pub fn register(registry: &mut Registry) -> AccountMetrics {
        let m = AccountMetrics::default();
        registry.register(
            "account_calls",
            "Storage calls made with an account's URL",
            m.calls.clone(),
        );
        registry.register(
            "account_read_bytes",
            "Share data bytes an account read",
            m.read_bytes.clone(),
        );
        registry.register(
            "account_written_bytes",
            "Share data bytes an account sent",
            m.written_bytes.clone(),
        );
        registry.register(
            "account_quota_refused_shares",
            "Shares an account asked to allocate that its quota left out",
            m.refused_shares.clone(),
        );
        registry.register(
            "account_stored_bytes",
            "Bytes charged to an account (stored and uploading), as of the last ledger read",
            m.stored_bytes.clone(),
        );
        registry.register(
            "account_shares",
            "Shares charged to an account, as of the last ledger read",
            m.shares.clone(),
        );
        m
    }

    /// One account's series (created at zero).
    pub fn series(&self, link: &str, account: &str) -> AccountSeries {
        let l = AccountLabel {
            link: link.to_string(),
            account: account.to_string(),
        };
        AccountSeries {
            calls: self.calls.get_or_create(&l).clone(),
            read_bytes: self.read_bytes.get_or_create(&l).clone(),
            written_bytes: self.written_bytes.get_or_create(&l).clone(),
            refused_shares: self.refused_shares.get_or_create(&l).clone(),
            stored_bytes: self.stored_bytes.get_or_create(&l).clone(),
            shares: self.shares.get_or_create(&l).clone(),
        }
    }
}

/// One account's series (detached from any registry by default, for tests).
#[derive(Clone, Default)]
pub struct AccountSeries {
    pub calls: Counter,
    pub read_bytes: Counter,
    pub written_bytes: Counter,
    pub refused_shares: Counter,
    pub stored_bytes: Gauge,
    pub shares: Gauge,
}
