//! Whether an upstream answers, as probes find it: each link's storage server and the
//! introducer relay's upstream introducer.
//!
//! A [`Health`] is probed at start, then every interval, and again right after a
//! client's call failed for want of the upstream ([`Health::call_failed`]). Probes
//! are cheap, harmless calls (`get_version`) made past the link's layers, so they
//! are no client's calls and are not counted as such. What they find is kept for
//! `/status`, `/healthz` and the status page, and exported as two gauges:
//! `up` (1 or 0) and the time of the last success (0 before any).
//!
//! The state changes only on a probe's answer (or, for the relay, on its connection
//! coming or going), so what is shown is always what was last observed.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The default interval between probes (`[limits] upstream_probe_interval_secs`).
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// The least time between two probes, however many calls fail meanwhile.
const MIN_PROBE_GAP: Duration = Duration::from_millis(500);

/// The error shown for an upstream not probed yet.
pub const NOT_PROBED: &str = "not probed yet";

/// What was last observed of an upstream.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HealthState {
    /// `up` when the last probe was answered, else `down` (also before the first
    /// probe has been answered).
    pub state: &'static str,
    /// Since when (Unix seconds) the upstream has been in this state.
    pub since_unix: u64,
    /// The last failure, and when (Unix seconds): kept after the upstream is up
    /// again. `None` while down means not probed yet.
    pub last_error: Option<String>,
    pub last_error_unix: Option<u64>,
    pub last_success_unix: Option<u64>,
    /// When the last probe was answered or failed.
    pub last_probe_unix: Option<u64>,
}

impl HealthState {
    pub fn is_up(&self) -> bool {
        self.state == "up"
    }
}

/// An upstream's health, shared by its prober, the calls that may wake it and
/// whatever shows it.
pub struct Health {
    name: String,
    state: Mutex<HealthState>,
    up: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    /// Wakes the prober early (a call failed for want of the upstream).
    wake: Notify,
    /// Probes answered so far (startup waits for the first).
    probes: watch::Sender<u64>,
    /// Log the first probe's result too (startup stopped waiting for it).
    log_first: AtomicBool,
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Health {
    /// A new, not yet probed upstream named `name` (a link name, or `introducer`),
    /// reported in `up` and `last_success` (set to 0 now, so both are exported from
    /// the start).
    pub fn new(name: &str, up: Gauge, last_success: Gauge<f64, AtomicU64>) -> Health {
        up.set(0);
        last_success.set(0.0);
        Health {
            name: name.to_string(),
            state: Mutex::new(HealthState {
                state: "down",
                since_unix: now_unix(),
                last_error: None,
                last_error_unix: None,
                last_success_unix: None,
                last_probe_unix: None,
            }),
            up,
            last_success,
            wake: Notify::new(),
            probes: watch::channel(0).0,
            log_first: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> HealthState {
        self.state.lock().expect("health").clone()
    }

    pub fn is_up(&self) -> bool {
        self.state().is_up()
    }

    /// Record what a probe (or a connection attempt) found. Returns whether the state
    /// changed from up to down or back.
    pub fn record(&self, outcome: Result<(), String>) -> bool {
        let now = now_unix();
        let changed = {
            let mut st = self.state.lock().expect("health");
            let was_up = st.is_up();
            st.last_probe_unix = Some(now);
            match outcome {
                Ok(()) => {
                    st.state = "up";
                    st.last_success_unix = Some(now);
                    self.last_success.set(now as f64);
                }
                Err(e) => {
                    st.state = "down";
                    st.last_error = Some(e);
                    st.last_error_unix = Some(now);
                }
            }
            let changed = was_up != st.is_up();
            if changed {
                st.since_unix = now;
            }
            self.up.set(i64::from(st.is_up()));
            changed
        };
        self.probes.send_modify(|n| *n += 1);
        changed
    }

    /// A client's call failed for want of the upstream: probe now.
    pub fn call_failed(&self) {
        self.wake.notify_one();
    }

    /// Wait until the first probe has been answered.
    pub async fn first_probe(&self) {
        let mut rx = self.probes.subscribe();
        let _ = rx.wait_for(|n| *n > 0).await;
    }

    /// Startup stopped waiting for the first probe: let the prober log its result.
    pub fn log_first_probe(&self) {
        self.log_first
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Log a change of state (or the first probe's result, when asked to).
    fn log(&self, changed: bool, first: bool) {
        let log = if first {
            // Startup reports the first probe, unless it stopped waiting for it.
            self.log_first.load(std::sync::atomic::Ordering::SeqCst)
        } else {
            changed
        };
        if !log {
            return;
        }
        let st = self.state();
        if st.is_up() {
            info!(upstream_of = %self.name, "upstream reachable");
        } else {
            warn!(
                upstream_of = %self.name,
                error = st.last_error.as_deref().unwrap_or(NOT_PROBED),
                "upstream unreachable"
            );
        }
    }

    /// Probe with `probe` now, then every `interval` and whenever a call failed,
    /// each probe bounded by `timeout`, until `stop`. Changes of state are logged
    /// (the first probe's result is startup's to log).
    pub async fn run_prober<F, Fut>(
        self: std::sync::Arc<Self>,
        probe: F,
        interval: Duration,
        timeout: Duration,
        stop: CancellationToken,
    ) where
        F: Fn() -> Fut + Send,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let mut first = true;
        loop {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(timeout, probe()) => match r {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer to get_version within {} s", timeout.as_secs_f64())),
                },
            };
            let changed = self.record(outcome);
            self.log(changed, first);
            first = false;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(MIN_PROBE_GAP) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn health() -> Arc<Health> {
        Arc::new(Health::new("l", Gauge::default(), Gauge::default()))
    }

    #[test]
    fn state_and_gauges_follow_what_was_observed() {
        let h = health();
        let st = h.state();
        assert_eq!(st.state, "down");
        assert_eq!(h.up.get(), 0);
        assert_eq!(h.last_success.get(), 0.0);
        assert!(h.record(Ok(())));
        assert!(h.is_up());
        assert_eq!(h.up.get(), 1);
        assert!(h.last_success.get() > 0.0);
        assert!(!h.record(Ok(())), "up again is no change");
        assert!(h.record(Err("connection refused".into())));
        let st = h.state();
        assert_eq!(st.state, "down");
        assert_eq!(st.last_error.as_deref(), Some("connection refused"));
        assert!(st.last_success_unix.is_some());
        assert_eq!(h.up.get(), 0);
        assert!(h.record(Ok(())));
        assert_eq!(
            h.state().last_error.as_deref(),
            Some("connection refused"),
            "the last error is kept for operators"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn probes_at_start_every_interval_and_after_a_failed_call() {
        let h = health();
        let n = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counted = n.clone();
        let task = tokio::spawn(h.clone().run_prober(
            move || {
                let k = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if k == 0 {
                        Err("refused".to_string())
                    } else {
                        Ok(())
                    }
                }
            },
            Duration::from_secs(10),
            Duration::from_secs(1),
            stop.clone(),
        ));
        h.first_probe().await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(!h.is_up());
        tokio::time::sleep(Duration::from_secs(10) + Duration::from_millis(1)).await;
        assert_eq!(n.load(Ordering::SeqCst), 2, "one probe per interval");
        assert!(h.is_up());
        h.call_failed();
        tokio::time::sleep(MIN_PROBE_GAP + Duration::from_millis(1)).await;
        assert_eq!(
            n.load(Ordering::SeqCst),
            3,
            "a failed call wakes the prober"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_without_answer_is_a_failure() {
        let h = health();
        let stop = CancellationToken::new();
        tokio::spawn(h.clone().run_prober(
            std::future::pending::<Result<(), String>>,
            Duration::from_secs(10),
            Duration::from_secs(2),
            stop.clone(),
        ));
        h.first_probe().await;
        let st = h.state();
        assert_eq!(st.state, "down");
        assert!(st.last_error.unwrap().contains("within 2 s"));
        stop.cancel();
    }
}
