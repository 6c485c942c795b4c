//! Every storage call of a link counted, timed and sized for `/metrics`; the calls in
//! flight (for a graceful shutdown) and the upstream's state as its answers show it
//! (for `/status`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::Layer;
use crate::storage::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub link: String,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub link: String,
    pub method: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub link: String,
    /// `in` (share data written by clients) or `out` (share data read by clients).
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabel {
    pub link: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// The storage calls' metric families, shared by every link.
#[derive(Clone)]
pub struct CallMetrics {
    pub calls: Family<CallLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Family<CallLabels, Histogram, fn() -> Histogram>,
    pub bytes: Family<BytesLabels, Counter>,
    pub inflight_uploads: Family<LinkLabel, Gauge>,
}

impl CallMetrics {
    /// New families, registered in `registry`.
    pub fn register(registry: &mut Registry) -> CallMetrics {
        let m = CallMetrics {
            calls: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            bytes: Family::default(),
            inflight_uploads: Family::default(),
        };
        registry.register(
            "calls",
            "Storage calls per link and method",
            m.calls.clone(),
        );
        registry.register(
            "errors",
            "Failed storage calls per link, method and error kind",
            m.errors.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Storage call latency per link and method",
            m.latency.clone(),
        );
        registry.register(
            "share_bytes",
            "Share data bytes per link and direction",
            m.bytes.clone(),
        );
        registry.register(
            "inflight_uploads",
            "Immutable share uploads allocated and not yet finished",
            m.inflight_uploads.clone(),
        );
        m
    }
}

/// What is known of the upstream, from the calls made to it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct UpstreamState {
    /// `up` after a call reached the upstream, `down` after one could not, `unknown`
    /// before any call.
    pub state: &'static str,
    pub last_success_unix: Option<u64>,
    pub last_failure_unix: Option<u64>,
    pub last_failure: Option<String>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The metrics layer of one link.
pub struct Metered {
    link: String,
    metrics: CallMetrics,
    inflight_calls: AtomicUsize,
    upstream: Mutex<UpstreamState>,
}

/// Decrements the in-flight count however the call ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Metered {
    pub fn new(link: &str, metrics: CallMetrics) -> Metered {
        Metered {
            link: link.to_string(),
            metrics,
            inflight_calls: AtomicUsize::new(0),
            upstream: Mutex::new(UpstreamState {
                state: "unknown",
                ..Default::default()
            }),
        }
    }

    pub fn link(&self) -> &str {
        &self.link
    }

    /// Calls running now.
    pub fn inflight_calls(&self) -> usize {
        self.inflight_calls.load(Ordering::SeqCst)
    }

    pub fn upstream_state(&self) -> UpstreamState {
        self.upstream.lock().expect("upstream").clone()
    }

    fn count_bytes(&self, direction: &'static str, n: u64) {
        self.metrics
            .bytes
            .get_or_create(&BytesLabels {
                link: self.link.clone(),
                direction,
            })
            .inc_by(n);
    }

    fn record(&self, method: Method, bytes_in: u64, r: &StorageResult<Reply>, start: Instant) {
        let labels = CallLabels {
            link: self.link.clone(),
            method: method.as_str(),
        };
        self.metrics.calls.get_or_create(&labels).inc();
        self.metrics
            .latency
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        let reached = match r {
            Err(e) => {
                self.metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        link: self.link.clone(),
                        method: method.as_str(),
                        kind: e.kind().as_str(),
                    })
                    .inc();
                // Any other answer came from a reachable upstream.
                !matches!(e, StorageError::Unavailable(_))
            }
            Ok(reply) => {
                match reply {
                    Reply::Written(_) => self.count_bytes("in", bytes_in),
                    Reply::ReadTestWrite(r) => {
                        if r.success {
                            self.count_bytes("in", bytes_in);
                        }
                        self.count_bytes("out", reply.bytes_out());
                    }
                    Reply::Data(_) | Reply::Readv(_) => self.count_bytes("out", reply.bytes_out()),
                    _ => {}
                }
                true
            }
        };
        let mut up = self.upstream.lock().expect("upstream");
        if reached {
            up.state = "up";
            up.last_success_unix = Some(now_unix());
        } else {
            up.state = "down";
            up.last_failure_unix = Some(now_unix());
            up.last_failure = r.as_ref().err().map(|e| e.to_string());
        }
    }
}

impl Layer for Metered {
    async fn call<'a>(&'a self, call: Call<'a>, next: &'a dyn StorageApi) -> StorageResult<Reply> {
        self.inflight_calls.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.inflight_calls);
        let (method, bytes_in) = (call.method(), call.bytes_in());
        let start = Instant::now();
        let r = call.send(next).await;
        self.record(method, bytes_in, &r, start);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::layer::wrap;
    use crate::storage::memory::MemoryStorage;
    use std::sync::Arc;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[tokio::test]
    async fn calls_errors_and_bytes_are_counted_per_link_and_method() {
        let mut registry = Registry::with_prefix("swampgate");
        let m = CallMetrics::register(&mut registry);
        let metered = Arc::new(Metered::new("l", m));
        let api = wrap(metered.clone(), Arc::new(MemoryStorage::new(1 << 20)));
        assert_eq!(metered.upstream_state().state, "unknown");
        let si = StorageIndex([1; 16]);
        let up = Secret(vec![1; 32]);
        api.allocate_buckets(AllocateRequest {
            storage_index: si,
            lease: LeaseSecrets {
                renew: Secret(vec![2; 32]),
                cancel: Secret(vec![3; 32]),
            },
            upload_secret: up.clone(),
            share_numbers: [0].into_iter().collect(),
            allocated_size: 5,
        })
        .await
        .unwrap();
        api.write_immutable(si, 0, &up, 0, bytes::Bytes::from_static(b"hello"))
            .await
            .unwrap();
        api.read_immutable(si, 0, 1, 3).await.unwrap();
        api.read_immutable(si, 4, 0, 3).await.unwrap_err();
        let t = text(&registry);
        for line in [
            "swampgate_calls_total{link=\"l\",method=\"allocate_buckets\"} 1",
            "swampgate_calls_total{link=\"l\",method=\"read_immutable\"} 2",
            "swampgate_errors_total{link=\"l\",method=\"read_immutable\",kind=\"not_found\"} 1",
            "swampgate_share_bytes_total{link=\"l\",direction=\"in\"} 5",
            "swampgate_share_bytes_total{link=\"l\",direction=\"out\"} 3",
        ] {
            assert!(t.contains(line), "{line} missing from\n{t}");
        }
        assert_eq!(metered.upstream_state().state, "up");
        assert_eq!(metered.inflight_calls(), 0);
    }
}
