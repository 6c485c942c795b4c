//! The introducer relay: swampgate's own introducer service (Tahoe's
//! `RIIntroducerPublisherAndSubscriberService_v2`), optionally backed by an upstream
//! Foolscap introducer that it subscribes and publishes to.
//!
//! - Announcements from local publishers (`publish_v2`) and from the upstream
//!   (`announce_v2`) are verified, indexed by `(service-name, key)` and replaced only
//!   by a higher seqnum, as Tahoe does. Refused ones are logged with the reason and
//!   go nowhere.
//! - Local subscribers get the current set on `subscribe_v2` (answered only after
//!   they answered that `announce_v2`, like Tahoe) and one `announce_v2` per new or
//!   replaced announcement.
//! - Local publications are forwarded upstream, and published again after every
//!   reconnection. When the upstream is lost, the last known announcements keep
//!   being served; the relay reconnects with backoff.
//! - An optional augmenter rewrites announcements before they are stored (see
//!   [`Augment`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::announcement::{Announcement, AnnouncementError, Replace, SignedAnnouncement};
use crate::foolscap::backoff::Backoff;
use crate::foolscap::broker::Canary;
use crate::foolscap::schema::{RemoteInterface, RI_INTRODUCER, RI_INTRODUCER_SUBSCRIBER};
use crate::foolscap::{Connection, Failure, Furl, RemoteObject, RemoteRef, Tub, Value};
use crate::health::Health;

/// The version key every v2 introducer announces and every client requires.
pub const V2: &str = "http://allmydata.org/tahoe/protocols/introducer/v2";

/// The most announcements (distinct `(service, key)` indexes) the relay keeps; past
/// it, announcements from new keys are refused (replacements are still taken).
pub const MAX_ANNOUNCEMENTS: usize = 10_000;

/// What we call ourselves in `get_version` and subscriber info.
pub fn app_version() -> String {
    format!("swampgate/{}", env!("CARGO_PKG_VERSION"))
}

/// Why [`Relay::accept_saved`] did not acknowledge an announcement.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("{0}")]
    Refused(#[from] AnnouncementError),
    #[error("announcement taken but not saved to disk in time; publish it again")]
    NotSaved,
}

/// Where an announcement came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A publisher connected to us (Foolscap `publish_v2` or the HTTP API): forwarded
    /// upstream.
    Local,
    /// The upstream introducer.
    Upstream,
}

/// Rewrites announcements passing through (announcement augmentation). Returns the
/// announcement to store and relay instead, or `None` to keep it as it is.
pub trait Augment: Send + Sync + 'static {
    fn augment(&self, ann: &Announcement) -> Option<Announcement>;
}

type Index = (String, String);

struct Subscriber {
    service: String,
    peer: String,
    rref: RemoteRef,
}

#[derive(Default)]
struct State {
    announcements: BTreeMap<Index, Announcement>,
    /// Local publications (as published, before augmentation), kept to re-publish.
    published: BTreeMap<Index, SignedAnnouncement>,
    subscribers: Vec<Subscriber>,
    /// Services subscribed to upstream (always at least `storage`).
    services: HashSet<String>,
    upstream: Option<RemoteRef>,
    upstream_since: Option<Instant>,
    /// Counts stored changes; the persisted file is as new as [`Inner::saved`].
    generation: u64,
}

struct Inner {
    state: Mutex<State>,
    nickname: String,
    augment: Option<Arc<dyn Augment>>,
    changes: broadcast::Sender<Announcement>,
    canary: Arc<dyn RemoteObject>,
    /// With persistence: the generation last written to disk. Publishers are
    /// answered only once their announcement is in it.
    saved: Option<tokio::sync::watch::Sender<u64>>,
    /// Publications received from publishers connected to us, by their answer.
    publishes_accepted: AtomicU64,
    publishes_rejected: AtomicU64,
    /// WebSocket subscriptions open now (the HTTP API's).
    websocket_subscribers: AtomicUsize,
}

/// How long a publisher waits for its announcement to reach the disk before it is
/// answered with an error (the announcement is served meanwhile).
pub const SAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The relay (cheap to clone).
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

/// A snapshot for status displays and metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RelayStatus {
    pub upstream_connected: bool,
    /// Announcements held (every service, local and upstream ones).
    pub announcements: usize,
    /// Subscriptions open now: Foolscap ones (`subscribe_v2` of a connected
    /// subscriber) and WebSocket ones together.
    pub subscribers: usize,
    pub foolscap_subscribers: usize,
    pub websocket_subscribers: usize,
    /// Publications from publishers connected to us (Foolscap `publish_v2`, HTTP
    /// `publish`) answered with success (a duplicate or stale one included), and
    /// answered with an error (unreadable, unsigned, badly signed, relay full, not
    /// saved in time).
    pub publishes_accepted: u64,
    pub publishes_rejected: u64,
}

/// Counts a WebSocket subscription while it lives.
pub struct WebSocketSubscription(Relay);

impl Drop for WebSocketSubscription {
    fn drop(&mut self) {
        self.0
            .inner
            .websocket_subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Relay {
    pub fn new(nickname: &str, augment: Option<Arc<dyn Augment>>) -> Relay {
        Relay::build(nickname, augment, false)
    }

    /// A relay whose announcements are saved (see
    /// [`persist::keep_persisted`](super::persist::keep_persisted)): publishers are
    /// answered once theirs is on disk.
    pub fn persisted(nickname: &str, augment: Option<Arc<dyn Augment>>) -> Relay {
        Relay::build(nickname, augment, true)
    }

    fn build(nickname: &str, augment: Option<Arc<dyn Augment>>, persisted: bool) -> Relay {
        let mut state = State::default();
        state.services.insert("storage".into());
        Relay {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                nickname: nickname.to_string(),
                augment,
                changes: broadcast::channel(1024).0,
                canary: Arc::new(Canary),
                saved: persisted.then(|| tokio::sync::watch::channel(0).0),
                publishes_accepted: AtomicU64::new(0),
                publishes_rejected: AtomicU64::new(0),
                websocket_subscribers: AtomicUsize::new(0),
            }),
        }
    }

    /// The Foolscap object to publish on a Tub (the introducer FURL's target).
    pub fn service_object(&self) -> Arc<dyn RemoteObject> {
        Arc::new(ServiceObject {
            relay: self.clone(),
        })
    }

    /// Current announcements of `service`.
    pub fn announcements(&self, service: &str) -> Vec<Announcement> {
        let st = self.inner.state.lock().expect("relay state");
        st.announcements
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Every new or replaced announcement, as it is stored.
    pub fn changes(&self) -> broadcast::Receiver<Announcement> {
        self.inner.changes.subscribe()
    }

    pub fn status(&self) -> RelayStatus {
        let st = self.inner.state.lock().expect("relay state");
        let foolscap_subscribers = st
            .subscribers
            .iter()
            .filter(|s| s.rref.is_connected())
            .count();
        let websocket_subscribers = self.inner.websocket_subscribers.load(Ordering::Relaxed);
        RelayStatus {
            upstream_connected: st.upstream.as_ref().is_some_and(|r| r.is_connected()),
            announcements: st.announcements.len(),
            subscribers: foolscap_subscribers + websocket_subscribers,
            foolscap_subscribers,
            websocket_subscribers,
            publishes_accepted: self.inner.publishes_accepted.load(Ordering::Relaxed),
            publishes_rejected: self.inner.publishes_rejected.load(Ordering::Relaxed),
        }
    }

    /// A publication from a publisher connected to us was answered: with success
    /// (`accepted`) or an error.
    pub fn publish_received(&self, accepted: bool) {
        let counter = match accepted {
            true => &self.inner.publishes_accepted,
            false => &self.inner.publishes_rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A WebSocket subscription opened; it counts until the value is dropped.
    pub fn websocket_subscription(&self) -> WebSocketSubscription {
        self.inner
            .websocket_subscribers
            .fetch_add(1, Ordering::Relaxed);
        WebSocketSubscription(self.clone())
    }

    /// Every announcement held, for persisting: a local publication as it was
    /// published (before augmentation), an upstream one as stored; with the
    /// generation it is as of.
    pub fn snapshot(&self) -> (u64, Vec<(Origin, SignedAnnouncement)>) {
        let st = self.inner.state.lock().expect("relay state");
        let entries = st
            .announcements
            .iter()
            .map(|(index, a)| match st.published.get(index) {
                Some(p) => (Origin::Local, p.clone()),
                None => (Origin::Upstream, a.signed.clone()),
            })
            .collect();
        (st.generation, entries)
    }

    /// The snapshot of `generation` is on disk.
    pub fn saved(&self, generation: u64) {
        if let Some(saved) = &self.inner.saved {
            saved.send_if_modified(|g| {
                let newer = generation > *g;
                *g = (*g).max(generation);
                newer
            });
        }
    }

    /// [`Relay::accept`], answered only once the announcement is on disk (at once
    /// without persistence). An announcement that does not reach the disk within
    /// [`SAVE_TIMEOUT`] is still served, but its publisher gets an error, so it
    /// publishes again.
    pub async fn accept_saved(
        &self,
        signed: &SignedAnnouncement,
        origin: Origin,
        from: &str,
    ) -> Result<(), AcceptError> {
        let r = self.accept_and_save(signed, origin, from).await;
        if origin == Origin::Local {
            self.publish_received(r.is_ok());
        }
        r
    }

    async fn accept_and_save(
        &self,
        signed: &SignedAnnouncement,
        origin: Origin,
        from: &str,
    ) -> Result<(), AcceptError> {
        self.accept(signed, origin, from)?;
        let Some(saved) = &self.inner.saved else {
            return Ok(());
        };
        let generation = self.inner.state.lock().expect("relay state").generation;
        let mut rx = saved.subscribe();
        let on_disk = async move { rx.wait_for(|g| *g >= generation).await.is_ok() };
        match tokio::time::timeout(SAVE_TIMEOUT, on_disk).await {
            Ok(true) => Ok(()),
            _ => Err(AcceptError::NotSaved),
        }
    }

    /// Take in persisted announcements (before serving): verified, augmented and
    /// stored as when they arrived, but sent nowhere (nobody is connected yet; local
    /// ones go upstream when it connects). Returns how many were taken; refused
    /// ones are logged.
    pub fn restore(&self, entries: Vec<(Origin, SignedAnnouncement)>) -> usize {
        let mut taken = 0;
        for (origin, signed) in &entries {
            if let Ok(Some(_)) = self.store(signed, *origin, "persisted") {
                taken += 1;
            }
        }
        // What was restored is on disk already.
        let generation = self.inner.state.lock().expect("relay state").generation;
        self.saved(generation);
        taken
    }

    /// Verify and take in an announcement. `Err` is the reason, also logged.
    pub fn accept(
        &self,
        signed: &SignedAnnouncement,
        origin: Origin,
        from: &str,
    ) -> Result<(), AnnouncementError> {
        let Some((stored, subscribers, upstream)) = self.store(signed, origin, from)? else {
            return Ok(());
        };
        let _ = self.inner.changes.send(stored.clone());
        let arg = Value::Set(vec![stored.signed.to_value()]);
        for rref in subscribers {
            let arg = arg.clone();
            tokio::spawn(async move {
                if let Err(e) = rref.call("announce_v2", &[arg]).await {
                    debug!("subscriber refused an announcement: {e}");
                }
            });
        }
        if let Some(up) = upstream {
            let relay = self.clone();
            let signed = signed.clone();
            tokio::spawn(async move { relay.publish_upstream(&up, &signed).await });
        }
        Ok(())
    }

    /// Verify, augment and store an announcement by Tahoe's replacement rules.
    /// Returns what was stored, with the subscribers to tell and the upstream to
    /// forward it to; `None` if it was already known or stale.
    #[allow(clippy::type_complexity)]
    fn store(
        &self,
        signed: &SignedAnnouncement,
        origin: Origin,
        from: &str,
    ) -> Result<Option<(Announcement, Vec<RemoteRef>, Option<RemoteRef>)>, AnnouncementError> {
        let ann = match signed.verify() {
            Ok(a) => a,
            Err(e) => {
                warn!(from, ?origin, "announcement refused: {e}");
                return Err(e);
            }
        };
        let index = (ann.service().to_string(), ann.key().to_string());
        let stored = match &self.inner.augment {
            Some(aug) => aug.augment(&ann).unwrap_or_else(|| ann.clone()),
            None => ann.clone(),
        };
        let (subscribers, upstream) = {
            let mut st = self.inner.state.lock().expect("relay state");
            if !st.announcements.contains_key(&index) && st.announcements.len() >= MAX_ANNOUNCEMENTS
            {
                let e = AnnouncementError::Full(MAX_ANNOUNCEMENTS);
                warn!(from, ?origin, server = %index.1, "announcement refused: {e}");
                return Err(e);
            }
            if origin == Origin::Local {
                // Keep the newest local publication for re-publishing.
                let newer = match st.published.get(&index).map(|p| p.verify()) {
                    Some(Ok(old)) => ann.replaces(&old) == Replace::Yes,
                    _ => true,
                };
                if newer {
                    st.published.insert(index.clone(), signed.clone());
                }
            }
            match st.announcements.get(&index).map(|old| stored.replaces(old)) {
                Some(Replace::Duplicate) => {
                    debug!(from, server = %index.1, "announcement already known");
                    return Ok(None);
                }
                Some(Replace::Stale(why)) => {
                    info!(from, server = %index.1, "announcement not replacing the current one: {why}");
                    return Ok(None);
                }
                _ => {}
            }
            st.announcements.insert(index.clone(), stored.clone());
            st.generation += 1;
            st.subscribers.retain(|s| s.rref.is_connected());
            let subs: Vec<RemoteRef> = st
                .subscribers
                .iter()
                .filter(|s| s.service == index.0)
                .map(|s| s.rref.clone())
                .collect();
            let up = (origin == Origin::Local)
                .then(|| st.upstream.clone())
                .flatten();
            (subs, up)
        };
        info!(
            from,
            ?origin,
            service = %index.0,
            server = %index.1,
            nickname = %stored.nickname(),
            seqnum = ?stored.seqnum(),
            subscribers = subscribers.len(),
            "announcement stored"
        );
        Ok(Some((stored, subscribers, upstream)))
    }

    async fn publish_upstream(&self, up: &RemoteRef, signed: &SignedAnnouncement) {
        let canary = Value::Local(self.inner.canary.clone());
        match up.call("publish_v2", &[signed.to_value(), canary]).await {
            Ok(_) => debug!(server = %signed.key, "published upstream"),
            Err(e) => warn!(server = %signed.key, "upstream refused a publication: {e}"),
        }
    }

    async fn subscribe(
        &self,
        conn: &Connection,
        rref: RemoteRef,
        service: String,
    ) -> Result<Value, Failure> {
        let peer = conn.peer_tubid().to_string();
        let (current, subscribe_up) = {
            let mut st = self.inner.state.lock().expect("relay state");
            st.subscribers.retain(|s| s.rref.is_connected());
            if st
                .subscribers
                .iter()
                .any(|s| s.service == service && s.peer == peer && s.rref.clid() == rref.clid())
            {
                debug!(%peer, %service, "already subscribed");
                return Ok(Value::None);
            }
            st.subscribers.push(Subscriber {
                service: service.clone(),
                peer: peer.clone(),
                rref: rref.clone(),
            });
            let current: Vec<Value> = st
                .announcements
                .iter()
                .filter(|((s, _), _)| *s == service)
                .map(|(_, a)| a.signed.to_value())
                .collect();
            let up = st
                .services
                .insert(service.clone())
                .then(|| st.upstream.clone())
                .flatten();
            (current, up)
        };
        info!(%peer, %service, announcements = current.len(), "subscriber added");
        if let Some(up) = subscribe_up {
            let relay = self.clone();
            let service = service.clone();
            tokio::spawn(async move { relay.subscribe_upstream(&up, &service).await });
        }
        if !current.is_empty() {
            // Tahoe answers subscribe_v2 only after the subscriber answered this call.
            if let Err(e) = rref.call("announce_v2", &[Value::Set(current)]).await {
                debug!(%peer, "subscriber refused the current announcements: {e}");
            }
        }
        Ok(Value::None)
    }

    fn subscriber_info(&self) -> Value {
        Value::bytes_dict([
            ("version", Value::int(0)),
            ("nickname", Value::text(self.inner.nickname.clone())),
            ("app-versions", Value::List(vec![])),
            ("my-version", Value::text(app_version())),
            ("oldest-supported", Value::text("1.0.0")),
        ])
    }

    async fn subscribe_upstream(&self, up: &RemoteRef, service: &str) {
        let me = Value::Local(Arc::new(SubscriberObject {
            relay: self.clone(),
        }));
        let args = [
            me,
            Value::bytes(service.as_bytes().to_vec()),
            self.subscriber_info(),
        ];
        match up.call("subscribe_v2", &args).await {
            Ok(_) => info!(%service, "subscribed upstream"),
            Err(e) => warn!(%service, "upstream refused a subscription: {e}"),
        }
    }

    /// Keep a connection to the upstream introducer until `stop`: subscribe, publish
    /// every local publication, and after a loss reconnect with backoff (at most
    /// `probe.interval` apart). While connected, the upstream is asked `get_version`
    /// every `probe.interval`; one unanswered within `probe.timeout` counts as lost.
    /// `health` follows what the connection and those probes find.
    pub async fn run_upstream(
        self,
        tub: Tub,
        furl: Furl,
        health: Arc<Health>,
        probe: Probe,
        stop: CancellationToken,
    ) {
        let max_wait = probe
            .interval
            .clamp(Duration::from_millis(500), Duration::from_secs(30));
        let mut backoff = Backoff::new(Duration::from_millis(500), max_wait);
        loop {
            let attempt = async {
                let up = tub.get_reference(&furl).await.map_err(|e| e.to_string())?;
                let version = up
                    .call("get_version", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                if version.get(V2.as_bytes()).is_none() {
                    return Err(format!(
                        "upstream is not a v2 introducer (no {V2} in its version)"
                    ));
                }
                Ok(up)
            };
            let up = tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(probe.timeout, attempt) => r.unwrap_or_else(|_| {
                    Err(format!("no answer within {} s", probe.timeout.as_secs_f64()))
                }),
            };
            match up {
                Ok(up) => {
                    backoff.succeeded();
                    health.record(Ok(()));
                    info!(upstream = ?furl, "connected to the upstream introducer");
                    let (services, published) = {
                        let mut st = self.inner.state.lock().expect("relay state");
                        st.upstream = Some(up.clone());
                        st.upstream_since = Some(Instant::now());
                        (
                            st.services.iter().cloned().collect::<Vec<_>>(),
                            st.published.values().cloned().collect::<Vec<_>>(),
                        )
                    };
                    for s in published {
                        let (relay, up) = (self.clone(), up.clone());
                        tokio::spawn(async move { relay.publish_upstream(&up, &s).await });
                    }
                    for service in services {
                        let (relay, up) = (self.clone(), up.clone());
                        tokio::spawn(async move { relay.subscribe_upstream(&up, &service).await });
                    }
                    let why = loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = up.disconnected() => break "connection lost".to_string(),
                            _ = tokio::time::sleep(probe.interval) => {}
                        }
                        let answer = tokio::select! {
                            _ = stop.cancelled() => return,
                            r = tokio::time::timeout(probe.timeout, up.call("get_version", &[])) => r,
                        };
                        match answer {
                            Ok(Ok(_)) => {
                                health.record(Ok(()));
                            }
                            Ok(Err(e)) => break format!("get_version failed: {e}"),
                            Err(_) => {
                                break format!(
                                    "no answer to get_version within {} s",
                                    probe.timeout.as_secs_f64()
                                )
                            }
                        }
                    };
                    self.inner.state.lock().expect("relay state").upstream = None;
                    health.record(Err(why.clone()));
                    warn!(upstream = ?furl, "lost the upstream introducer ({why}); serving the last known announcements");
                }
                Err(e) => {
                    health.record(Err(e.clone()));
                    warn!(upstream = ?furl, "cannot reach the upstream introducer: {e}");
                }
            }
            let wait = backoff.failed(Instant::now());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The nickname and service of every announcement held, sorted.
    pub fn announced(&self) -> Vec<(String, String)> {
        let st = self.inner.state.lock().expect("relay state");
        let mut v: Vec<(String, String)> = st
            .announcements
            .values()
            .map(|a| {
                (
                    a.ann
                        .get("nickname")
                        .and_then(|n| n.as_str())
                        .unwrap_or("")
                        .to_string(),
                    a.service().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

/// How often, and how patiently, the relay checks its upstream.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            interval: crate::health::DEFAULT_PROBE_INTERVAL,
            timeout: crate::health::DEFAULT_PROBE_INTERVAL,
        }
    }
}

/// `RIIntroducerPublisherAndSubscriberService_v2`, served to Tahoe nodes.
struct ServiceObject {
    relay: Relay,
}

#[async_trait::async_trait]
impl RemoteObject for ServiceObject {
    fn interface_name(&self) -> &str {
        RI_INTRODUCER.name
    }

    fn schema(&self) -> Option<&'static RemoteInterface> {
        Some(&RI_INTRODUCER)
    }

    async fn call(
        &self,
        conn: &Connection,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Value, Failure> {
        match method {
            "get_version" => Ok(Value::bytes_dict([
                (V2, Value::Dict(vec![])),
                (
                    "application-version",
                    Value::bytes(app_version().into_bytes()),
                ),
            ])),
            "publish_v2" => {
                let signed = SignedAnnouncement::from_value(&args[0]).map_err(|e| {
                    warn!(peer = %conn.peer_tubid(), "publication refused: {e}");
                    self.relay.publish_received(false);
                    Failure::violation(e.to_string())
                })?;
                self.relay
                    .accept_saved(&signed, Origin::Local, conn.peer_tubid())
                    .await
                    .map_err(|e| {
                        // The exception Tahoe's introducer raises for the same input.
                        let kind = match e {
                            AcceptError::Refused(AnnouncementError::BadSignature) => {
                                "allmydata.crypto.error.BadSignature"
                            }
                            AcceptError::Refused(
                                AnnouncementError::Unsigned | AnnouncementError::NotV0(_),
                            ) => "allmydata.introducer.common.UnknownKeyError",
                            AcceptError::Refused(_) => "builtins.ValueError",
                            AcceptError::NotSaved => "builtins.IOError",
                        };
                        Failure::new(kind, e.to_string(), &["builtins.Exception"])
                    })?;
                Ok(Value::None)
            }
            "subscribe_v2" => {
                let Value::Remote(rref) = &args[0] else {
                    return Err(Failure::violation("subscriber is not a reference"));
                };
                let service =
                    String::from_utf8(args[1].as_bytes().map(|b| b.to_vec()).unwrap_or_default())
                        .map_err(|_| Failure::violation("service_name is not UTF-8"))?;
                self.relay.subscribe(conn, rref.clone(), service).await
            }
            _ => Err(Failure::violation(format!("method '{method}' not defined"))),
        }
    }
}

/// `RIIntroducerSubscriberClient_v2`, handed to the upstream introducer.
struct SubscriberObject {
    relay: Relay,
}

#[async_trait::async_trait]
impl RemoteObject for SubscriberObject {
    fn interface_name(&self) -> &str {
        RI_INTRODUCER_SUBSCRIBER.name
    }

    fn schema(&self) -> Option<&'static RemoteInterface> {
        Some(&RI_INTRODUCER_SUBSCRIBER)
    }

    async fn call(
        &self,
        conn: &Connection,
        _method: &str,
        args: Vec<Value>,
    ) -> Result<Value, Failure> {
        for item in args[0].as_seq().unwrap_or_default() {
            match SignedAnnouncement::from_value(item) {
                Ok(s) => {
                    // Refusals are logged inside; Tahoe's client also just skips them.
                    let _ = self.relay.accept(&s, Origin::Upstream, conn.peer_tubid());
                }
                Err(e) => warn!(peer = %conn.peer_tubid(), "upstream announcement refused: {e}"),
            }
        }
        Ok(Value::None)
    }
}
