//! Every metric swampgate exports, in one registry: the storage calls' families
//! (filled by each link's [`Metered`](crate::storage::layer::metrics::Metered) and
//! upload-sessions layers), the port's connections, each upstream's health (see
//! [`crate::health`]), the introducer relay's state and the process's own (both read
//! at scrape time).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use crate::introducer::Relay;

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
    /// The root: the process's metrics under their standard names, swampgate's own
    /// in a sub-registry prefixed `swampgate_`.
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
    /// The introducer relay, once started, read at each scrape (its metrics are
    /// registered, at zero until then, only when the daemon has a relay).
    pub relay: Arc<OnceLock<Relay>>,
    /// Per account: calls, bytes, quota refusals, usage.
    pub accounts: crate::accounting::metrics::AccountMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Introducer::None)
    }
}

/// Which introducer metrics the daemon exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Introducer {
    /// No relay: none.
    None,
    /// A relay without an upstream: the relay's.
    Relay,
    /// A relay with an upstream introducer: the relay's and its upstream's.
    RelayWithUpstream,
}

impl Metrics {
    /// Every family; the introducer's as `introducer` says.
    pub fn new(introducer: Introducer) -> Self {
        let mut root = Registry::default();
        #[cfg(target_os = "linux")]
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("swampgate");
        let calls = CallMetrics::register(registry);
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
        let accounts = crate::accounting::metrics::AccountMetrics::register(registry);
        let relay = Arc::new(OnceLock::new());
        if introducer != Introducer::None {
            registry.register_collector(Box::new(RelayCollector(relay.clone())));
        }
        let introducer_upstream = (introducer == Introducer::RelayWithUpstream).then(|| {
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
            registry: root,
            calls,
            connections,
            connections_accepted,
            connections_shed,
            connections_refused,
            upstream_up,
            upstream_last_success,
            introducer_upstream,
            relay,
            accounts,
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

/// Encode one metric without labels.
fn encode_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Encode one metric family, a series per label set.
fn encode_family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: &[(L, M)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The introducer relay's state, read at each scrape: announcements held,
/// subscriptions open, publications received. Zero until the relay starts.
struct RelayCollector(Arc<OnceLock<Relay>>);

impl std::fmt::Debug for RelayCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RelayCollector")
            .field(&self.0.get().map(Relay::status))
            .finish()
    }
}

impl Collector for RelayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = self.0.get().map(Relay::status).unwrap_or_default();
        encode_one(
            &mut encoder,
            "introducer_announcements",
            "Announcements the introducer relay holds (every service; local and upstream).",
            &ConstGauge::new(st.announcements as i64),
        )?;
        let protocol = |p: &str| ProtocolLabel { protocol: p.into() };
        encode_family(
            &mut encoder,
            "introducer_subscribers",
            "Subscriptions open at the introducer relay, by protocol.",
            MetricType::Gauge,
            &[
                (
                    protocol("foolscap"),
                    ConstGauge::new(st.foolscap_subscribers as i64),
                ),
                (
                    protocol("websocket"),
                    ConstGauge::new(st.websocket_subscribers as i64),
                ),
            ],
        )?;
        encode_family(
            &mut encoder,
            "introducer_publishes",
            "Publications from publishers connected to the introducer relay (Foolscap or \
             HTTP), by answer.",
            MetricType::Counter,
            &[
                (
                    ResultLabel { result: "accepted" },
                    ConstCounter::new(st.publishes_accepted),
                ),
                (
                    ResultLabel { result: "rejected" },
                    ConstCounter::new(st.publishes_rejected),
                ),
            ],
        )
    }
}

/// The process's own metrics under Prometheus's standard names, read from `/proc`
/// at each scrape (Linux only). A value that cannot be read is left out of that
/// scrape.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct ProcessCollector;

#[cfg(target_os = "linux")]
impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            encode_one(
                &mut encoder,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                &ConstCounter::new((stat.utime + stat.stime) as f64 / ticks),
            )?;
            encode_one(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                &ConstGauge::new((stat.rss * procfs::page_size()) as i64),
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                encode_one(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    &ConstGauge::new(boot as f64 + stat.starttime as f64 / ticks),
                )?;
            }
            encode_one(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process.",
                &ConstGauge::new(stat.num_threads),
            )?;
        }
        if let Ok(fds) = me.fd_count() {
            encode_one(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                &ConstGauge::new(fds as i64),
            )?;
        }
        if let Ok(limits) = me.limits() {
            if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
                encode_one(
                    &mut encoder,
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    &ConstGauge::new(max as i64),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name` (with its labels) in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_have_their_standard_names() {
        let text = Metrics::default().encode();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            let v = sample(&text, name).unwrap_or_else(|| panic!("{name} in {text}"));
            assert!(v >= 0.0, "{name} {v}");
        }
        assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
        assert!(sample(&text, "process_open_fds").unwrap() >= 3.0);
        let start = sample(&text, "process_start_time_seconds").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
        // swampgate's own keep their prefix; no relay, no relay metrics.
        assert!(text.contains("\nswampgate_build_info{"), "{text}");
        assert!(!text.contains("swampgate_introducer_"), "{text}");
    }

    #[tokio::test]
    async fn relay_metrics_are_zero_until_the_relay_starts_then_follow_it() {
        let m = Metrics::new(Introducer::Relay);
        let text = m.encode();
        for name in [
            "swampgate_introducer_announcements",
            "swampgate_introducer_subscribers{protocol=\"foolscap\"}",
            "swampgate_introducer_subscribers{protocol=\"websocket\"}",
            "swampgate_introducer_publishes_total{result=\"accepted\"}",
            "swampgate_introducer_publishes_total{result=\"rejected\"}",
        ] {
            assert_eq!(sample(&text, name), Some(0.0), "{name} in {text}");
        }
        assert!(!text.contains("swampgate_introducer_upstream_up"), "{text}");
        let relay = Relay::new("test", None);
        m.relay.set(relay.clone()).ok().unwrap();
        let ann = serde_json::json!({
            "service-name": "storage",
            "nickname": "n",
            "seqnum": 1,
            "anonymous-storage-FURL": "pb://x@tcp:127.0.0.1:1/y",
        });
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let signed = crate::introducer::SignedAnnouncement::sign(ann.as_object().unwrap(), &key);
        relay
            .accept_saved(&signed, crate::introducer::Origin::Local, "test")
            .await
            .unwrap();
        relay.publish_received(false);
        let _ws = relay.websocket_subscription();
        let text = m.encode();
        assert_eq!(
            sample(&text, "swampgate_introducer_announcements"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "swampgate_introducer_publishes_total{result=\"accepted\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "swampgate_introducer_publishes_total{result=\"rejected\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "swampgate_introducer_subscribers{protocol=\"websocket\"}"
            ),
            Some(1.0)
        );
        drop(_ws);
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "swampgate_introducer_subscribers{protocol=\"websocket\"}"
            ),
            Some(0.0)
        );
        let with_upstream = Metrics::new(Introducer::RelayWithUpstream).encode();
        assert!(
            with_upstream.contains("swampgate_introducer_upstream_up 0"),
            "{with_upstream}"
        );
    }
}
