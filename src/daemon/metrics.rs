//! Every metric swampgate exports, in one registry: the storage calls' families
//! (filled by each link's [`Metered`](crate::storage::layer::metrics::Metered) and
//! upload-sessions layers) and the port's connections.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::storage::layer::metrics::CallMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub calls: CallMetrics,
    pub connections: Family<ProtocolLabel, Gauge>,
    pub connections_accepted: Family<ProtocolLabel, Counter>,
    /// Connections closed unidentified to make room at the connection limit.
    pub connections_shed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
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
        Metrics {
            registry,
            calls,
            connections,
            connections_accepted,
            connections_shed,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
