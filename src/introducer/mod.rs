//! The introducer links: Tahoe's signed announcements, the introducer protocol over
//! Foolscap in both roles, and the relay between swampgate's subscribers and
//! publishers and an upstream Foolscap introducer.
//!
//! - [`announcement`]: `sign_to_foolscap` / `unsign_from_foolscap`, exact bytes.

pub mod announcement;

pub use announcement::{Announcement, AnnouncementError, SignedAnnouncement};

pub mod augment;
pub mod http;
pub mod persist;
pub mod relay;

pub use relay::{Augment, Origin, Probe, Relay};

use crate::foolscap::furl::Hint;
use crate::foolscap::{Furl, Tub};
use tokio_util::sync::CancellationToken;

/// Publish a relay named `nickname` on `tub` under `swissnum` (augmenting the
/// announcements of the `adopted` nodes) and, with an `upstream` introducer, keep the
/// upstream connection from `client_tub` until `stop`, its state in `health` (probed
/// as `probe` says). With `persist`, the announcements saved there are served from
/// the start, and every change is saved there (see [`persist`]). Returns the
/// introducer FURL, the relay and its HTTP/WebSocket API.
#[allow(clippy::too_many_arguments)]
pub fn start_relay(
    nickname: &str,
    upstream: Option<(Furl, std::sync::Arc<crate::health::Health>, Probe)>,
    swissnum: &str,
    tub: &Tub,
    client_tub: &Tub,
    hints: &[Hint],
    adopted: Vec<augment::Adopted>,
    persist: Option<std::path::PathBuf>,
    stop: &CancellationToken,
) -> Result<(String, Relay, http::AnnouncementApi), persist::PersistError> {
    let augment = augment::AdoptedNodes::new(adopted);
    let augment: Option<std::sync::Arc<dyn Augment>> =
        (!augment.is_empty()).then(|| std::sync::Arc::new(augment) as _);
    let relay = match persist {
        Some(_) => Relay::persisted(nickname, augment),
        None => Relay::new(nickname, augment),
    };
    if let Some(path) = persist {
        let saved = persist::load(&path)?;
        let total = saved.len();
        let taken = relay.restore(saved);
        tracing::info!(
            path = %path.display(),
            announcements = taken,
            refused = total - taken,
            "persisted announcements restored"
        );
        tokio::spawn(persist::keep_persisted(relay.clone(), path, stop.clone()));
    }
    tub.publish(swissnum, relay.service_object());
    let furl = tub.furl(swissnum, hints.to_vec()).to_string();
    if let Some((up, health, probe)) = upstream {
        tokio::spawn(relay.clone().run_upstream(
            client_tub.clone(),
            up,
            health,
            probe,
            stop.clone(),
        ));
    }
    let api = http::AnnouncementApi::new(relay.clone(), swissnum);
    Ok((furl, relay, api))
}
