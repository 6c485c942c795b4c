//! Every metric swampgate exports, in one registry: the storage calls' families
//! (filled by each link's [`Metered`](crate::storage::layer::metrics::Metered) and
//! upload-sessions layers), the port's connections, and each upstream's health
//! (see [`crate::health`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::storage::layer::metrics::{CallMetrics, LinkLabel};

/// A gauge of Unix seconds.
pub type TimestampGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub calls: CallMetrics,
    pub connections: Family<ProtocolLabel, Gauge>,
    pub connections_accepted: Family<ProtocolLabel, Counter>,
    /// Connections closed unidentified to make room at the connection limit.
    pub connections_shed: Counter,
    /// Connections closed unread, by reason (`max_connections`,
    /// `max_connections_per_ip`).
    pub connections_refused: Family<ReasonLabel, Counter>,
    pub upstream_up: Family<LinkLabel, Gauge>,
    pub upstream_last_success: Family<LinkLabel, TimestampGauge>,
    /// The introducer relay's upstream, registered only when it has one.
    pub introducer_upstream: Option<(Gauge, TimestampGauge)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    /// Every family; the introducer upstream's gauges only with
    /// `introducer_upstream`.
    pub fn new(introducer_upstream: bool) -> Self {
        let mut registry = Registry::with_prefix("swampgate");
        let calls = CallMetrics::register(&mut registry);
        let connections = Family::<ProtocolLabel, Gauge>::default();
        let connections_accepted = Family::<ProtocolLabel, Counter>::default();
        registry.register(
            "open_connections",
            "Open client connections per protocol",
            connections.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted per protocol",
            connections_accepted.clone(),
        );
        let connections_shed = Counter::default();
        registry.register(
            "connections_shed",
            "Connections closed before they identified themselves (no finished \
             negotiation or TLS handshake), oldest first, to admit new ones at \
             max_connections",
            connections_shed.clone(),
        );
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        for reason in ["max_connections", "max_connections_per_ip"] {
            let _ = connections_refused.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "connections_refused",
            "Connections closed unread at a connection limit, by the limit",
            connections_refused.clone(),
        );
        // Every series exists from the start, at zero.
        for protocol in ["foolscap", "gbs"] {
            let label = ProtocolLabel {
                protocol: protocol.into(),
            };
            let _ = connections.get_or_create(&label);
            let _ = connections_accepted.get_or_create(&label);
        }
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "swampgate's version (the value is 1)", build);
        let upstream_up = Family::<LinkLabel, Gauge>::default();
        let upstream_last_success = Family::<LinkLabel, TimestampGauge>::default();
        registry.register(
            "upstream_up",
            "Whether the link's upstream answered its last probe (1) or not (0)",
            upstream_up.clone(),
        );
        registry.register(
            "upstream_last_success_timestamp_seconds",
            "When the link's upstream last answered a probe (Unix seconds; 0: never)",
            upstream_last_success.clone(),
        );
        let introducer_upstream = introducer_upstream.then(|| {
            let up = Gauge::default();
            let last = TimestampGauge::default();
            registry.register(
                "introducer_upstream_up",
                "Whether the introducer relay is connected to its upstream introducer",
                up.clone(),
            );
            registry.register(
                "introducer_upstream_last_success_timestamp_seconds",
                "When the upstream introducer last answered (Unix seconds; 0: never)",
                last.clone(),
            );
            (up, last)
        });
        Metrics {
            registry,
            calls,
            connections,
            connections_accepted,
            connections_shed,
            connections_refused,
            upstream_up,
            upstream_last_success,
            introducer_upstream,
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
