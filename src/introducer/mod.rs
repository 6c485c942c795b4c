//! The introducer links: Tahoe's signed announcements, the introducer protocol over
//! Foolscap in both roles, and the relay between swampgate's subscribers and
//! publishers and an upstream Foolscap introducer.
//!
//! - [`announcement`]: `sign_to_foolscap` / `unsign_from_foolscap`, exact bytes.

pub mod announcement;

pub use announcement::{Announcement, AnnouncementError, SignedAnnouncement};

pub mod augment;
pub mod http;
pub mod relay;

pub use relay::{Augment, Origin, Relay};

use crate::foolscap::furl::Hint;
use crate::foolscap::{Furl, Tub};
use tokio_util::sync::CancellationToken;

/// Publish a relay named `nickname` on `tub` under `swissnum` (augmenting the
/// announcements of the `adopted` nodes) and, with an `upstream` introducer, keep the
/// upstream connection from `client_tub` until `stop`. Returns the introducer FURL,
/// the relay and its HTTP/WebSocket API.
#[allow(clippy::too_many_arguments)]
pub fn start_relay(
    nickname: &str,
    upstream: Option<Furl>,
    swissnum: &str,
    tub: &Tub,
    client_tub: &Tub,
    hints: &[Hint],
    adopted: Vec<augment::Adopted>,
    stop: &CancellationToken,
) -> (String, Relay, http::AnnouncementApi) {
    let augment = augment::AdoptedNodes::new(adopted);
    let augment: Option<std::sync::Arc<dyn Augment>> =
        (!augment.is_empty()).then(|| std::sync::Arc::new(augment) as _);
    let relay = Relay::new(nickname, augment);
    tub.publish(swissnum, relay.service_object());
    let furl = tub.furl(swissnum, hints.to_vec()).to_string();
    if let Some(up) = upstream {
        tokio::spawn(
            relay
                .clone()
                .run_upstream(client_tub.clone(), up, stop.clone()),
        );
    }
    let api = http::AnnouncementApi::new(relay.clone(), swissnum);
    (furl, relay, api)
}
