//! Every storage call of a link counted, timed and sized for `/metrics`; the calls in
//! flight (for a graceful shutdown), per-minute counts of calls and failures (for
//! `/status` and the status page), and a word to the link's health probe when a call
//! finds the upstream unreachable.

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
pub struct FaultLabels {
    pub link: String,
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
    /// The errors that are faults ([`StorageError::is_fault`]), per link and kind.
    pub faults: Family<FaultLabels, Counter>,
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
            faults: Family::default(),
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
            "faults",
            "Failed storage calls that are faults of the server side (upstream \
             unavailable or failing, internal, no space), per link and kind: alert on \
             these; the other error kinds are normal client traffic",
            m.faults.clone(),
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

/// How many minutes of per-minute counts a link keeps (for `/status` and the status
/// page).
pub const MINUTES_KEPT: usize = 15;

/// One minute's calls and failed calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MinuteCount {
    /// The minute's start, Unix seconds.
    pub minute_unix: u64,
    pub calls: u64,
    pub errors: u64,
}

/// The last [`MINUTES_KEPT`] minutes' counts, oldest first.
#[derive(Debug, Default)]
struct MinuteRing(std::collections::VecDeque<MinuteCount>);

impl MinuteRing {
    fn add(&mut self, now_unix: u64, failed: bool) {
        let minute_unix = now_unix - now_unix % 60;
        if self.0.back().is_none_or(|m| m.minute_unix < minute_unix) {
            if self.0.len() == MINUTES_KEPT {
                self.0.pop_front();
            }
            self.0.push_back(MinuteCount {
                minute_unix,
                ..Default::default()
            });
        }
        let m = self.0.back_mut().expect("just pushed");
        m.calls += 1;
        m.errors += u64::from(failed);
    }

    /// The `n` minutes up to the one holding `now_unix`, oldest first, quiet ones
    /// as zeros.
    fn last(&self, now_unix: u64, n: usize) -> Vec<MinuteCount> {
        let this = now_unix - now_unix % 60;
        (0..n as u64)
            .rev()
            .map(|back| {
                let minute_unix = this.saturating_sub(back * 60);
                self.0
                    .iter()
                    .find(|m| m.minute_unix == minute_unix)
                    .copied()
                    .unwrap_or(MinuteCount {
                        minute_unix,
                        ..Default::default()
                    })
            })
            .collect()
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Told when a call failed for want of the upstream (the link's health probe).
pub type OnUnavailable = Box<dyn Fn() + Send + Sync>;

/// The metrics layer of one link.
pub struct Metered {
    link: String,
    metrics: CallMetrics,
    inflight_calls: AtomicUsize,
    minutes: Mutex<MinuteRing>,
    on_unavailable: Option<OnUnavailable>,
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
        // Every series of the link exists from the start, at zero.
        for method in Method::ALL {
            let _ = metrics.calls.get_or_create(&CallLabels {
                link: link.to_string(),
                method: method.as_str(),
            });
        }
        for kind in ErrorKind::ALL.into_iter().filter(|k| k.can_be_fault()) {
            let _ = metrics.faults.get_or_create(&FaultLabels {
                link: link.to_string(),
                kind: kind.as_str(),
            });
        }
        for direction in ["in", "out"] {
            let _ = metrics.bytes.get_or_create(&BytesLabels {
                link: link.to_string(),
                direction,
            });
        }
        let _ = metrics.inflight_uploads.get_or_create(&LinkLabel {
            link: link.to_string(),
        });
        Metered {
            link: link.to_string(),
            metrics,
            inflight_calls: AtomicUsize::new(0),
            minutes: Mutex::new(MinuteRing::default()),
            on_unavailable: None,
        }
    }

    /// Call `f` whenever a call fails because the upstream could not be reached.
    pub fn on_unavailable(mut self, f: OnUnavailable) -> Metered {
        self.on_unavailable = Some(f);
        self
    }

    pub fn link(&self) -> &str {
        &self.link
    }

    /// Calls running now.
    pub fn inflight_calls(&self) -> usize {
        self.inflight_calls.load(Ordering::SeqCst)
    }

    /// Calls and failed calls in each of the last `n` minutes (at most
    /// [`MINUTES_KEPT`]), oldest first, the current minute last.
    pub fn recent_minutes(&self, n: usize) -> Vec<MinuteCount> {
        self.minutes
            .lock()
            .expect("minutes")
            .last(now_unix(), n.min(MINUTES_KEPT))
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
        match r {
            Err(e) => {
                self.metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        link: self.link.clone(),
                        method: method.as_str(),
                        kind: e.kind().as_str(),
                    })
                    .inc();
                if e.is_fault() {
                    tracing::debug!(link = %self.link, method = method.as_str(), "fault: {e:?}");
                    self.metrics
                        .faults
                        .get_or_create(&FaultLabels {
                            link: self.link.clone(),
                            kind: e.kind().as_str(),
                        })
                        .inc();
                }
                if let (StorageError::Unavailable(_), Some(f)) = (e, &self.on_unavailable) {
                    f();
                }
            }
            Ok(reply) => match reply {
                Reply::Written(_) => self.count_bytes("in", bytes_in),
                Reply::ReadTestWrite(r) => {
                    if r.success {
                        self.count_bytes("in", bytes_in);
                    }
                    self.count_bytes("out", reply.bytes_out());
                }
                Reply::Data(_) | Reply::Readv(_) => self.count_bytes("out", reply.bytes_out()),
                _ => {}
            },
        }
        self.minutes
            .lock()
            .expect("minutes")
            .add(now_unix(), r.is_err());
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

    #[test]
    fn the_minute_ring_keeps_the_last_minutes() {
        let mut r = MinuteRing::default();
        let t0 = 1_000_020;
        r.add(t0, false);
        r.add(t0 + 1, true);
        r.add(t0 + 60, false);
        let last = r.last(t0 + 60, 3);
        assert_eq!(
            last.iter().map(|m| (m.calls, m.errors)).collect::<Vec<_>>(),
            [(0, 0), (2, 1), (1, 0)]
        );
        assert_eq!(last[2].minute_unix % 60, 0);
        for k in 0..(MINUTES_KEPT as u64 + 5) {
            r.add(t0 + 120 + k * 60, false);
        }
        assert_eq!(r.0.len(), MINUTES_KEPT);
        assert_eq!(r.last(t0, 1)[0].calls, 0, "old minutes are forgotten");
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_told_to_the_health_probe() {
        /// Fails every call as a backend fails when it cannot reach its upstream,
        /// or, for reads, as an upstream that answered "not found".
        struct Down;
        impl Layer for Down {
            async fn call<'a>(
                &'a self,
                call: Call<'a>,
                _: &'a dyn StorageApi,
            ) -> StorageResult<Reply> {
                Err(match call.method() {
                    Method::ReadImmutable => StorageError::NotFound("no share".into()),
                    _ => StorageError::Unavailable("connection refused".into()),
                })
            }
        }
        let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = told.clone();
        let mut registry = Registry::default();
        let metered = Metered::new("l", CallMetrics::register(&mut registry)).on_unavailable(
            Box::new(move || {
                t.fetch_add(1, Ordering::SeqCst);
            }),
        );
        // Every series of the link is there before any call, at zero.
        let before = text(&registry);
        for series in [
            "calls_total{link=\"l\",method=\"read_immutable\"} 0",
            "faults_total{link=\"l\",kind=\"unavailable\"} 0",
            "share_bytes_total{link=\"l\",direction=\"out\"} 0",
            "inflight_uploads{link=\"l\"} 0",
        ] {
            assert!(before.contains(series), "{series} missing:\n{before}");
        }
        let down = wrap(Arc::new(Down), Arc::new(MemoryStorage::new(1 << 20)));
        let api = wrap(Arc::new(metered), down);
        api.version().await.unwrap_err();
        assert_eq!(told.load(Ordering::SeqCst), 1);
        api.read_immutable(StorageIndex([1; 16]), 0, 0, 1)
            .await
            .unwrap_err();
        assert_eq!(
            told.load(Ordering::SeqCst),
            1,
            "an answer from the upstream, even an error, says it is reachable"
        );
        // A fault is counted as one; a client's question with a negative answer is not.
        let after = text(&registry);
        assert!(
            after.contains("faults_total{link=\"l\",kind=\"unavailable\"} 1"),
            "{after}"
        );
        assert!(
            !after.contains("faults_total{link=\"l\",kind=\"not_found\"}"),
            "{after}"
        );
    }
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
        assert_eq!(metered.inflight_calls(), 0);
        let minutes = metered.recent_minutes(3);
        assert_eq!(minutes.len(), 3);
        let total: (u64, u64) = minutes
            .iter()
            .fold((0, 0), |(c, e), m| (c + m.calls, e + m.errors));
        assert_eq!(total, (4, 1), "{minutes:?}");
    }
}
