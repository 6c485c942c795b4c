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

use crate::daemon::config::IntroducerConfig;
use crate::daemon::state::{self, StateDir};
use crate::foolscap::furl::Hint;
use crate::foolscap::Tub;
use tokio_util::sync::CancellationToken;

/// The introducer's swissnum (`STATE/private/introducer.swissnum`), created on first
/// use so the introducer FURL is stable across restarts.
pub fn introducer_swissnum(state: &StateDir) -> Result<String, String> {
    let p = state.root().join("private/introducer.swissnum");
    match std::fs::read_to_string(&p) {
        Ok(s) => {
            let s = s.trim().to_string();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!(
                    "{}: not a swissnum (expected base32 characters)",
                    p.display()
                ));
            }
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = state::new_swissnum();
            state::write_atomic(&p, &s, true).map_err(|e| e.to_string())?;
            Ok(s)
        }
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Publish the relay's introducer on `tub` (augmenting the announcements of the
/// `adopted` nodes), write `STATE/introducer.furl`, and (with
/// an upstream) keep the upstream connection from `client_tub` until `stop`.
/// Returns the introducer FURL, the relay and its HTTP/WebSocket API.
pub fn start_relay(
    config: &IntroducerConfig,
    state: &StateDir,
    tub: &Tub,
    client_tub: &Tub,
    hints: &[Hint],
    adopted: Vec<augment::Adopted>,
    stop: &CancellationToken,
) -> Result<(String, Relay, http::AnnouncementApi), String> {
    let swissnum = introducer_swissnum(state)?;
    let augment = augment::AdoptedNodes::new(adopted);
    let augment: Option<std::sync::Arc<dyn Augment>> =
        (!augment.is_empty()).then(|| std::sync::Arc::new(augment) as _);
    let relay = Relay::new(&config.nickname, augment);
    tub.publish(&swissnum, relay.service_object());
    let furl = tub.furl(&swissnum, hints.to_vec()).to_string();
    state::write_atomic(
        &state.root().join("introducer.furl"),
        &format!("{furl}\n"),
        true,
    )
    .map_err(|e| e.to_string())?;
    if let Some(up) = &config.upstream {
        tokio::spawn(
            relay
                .clone()
                .run_upstream(client_tub.clone(), up.clone(), stop.clone()),
        );
    }
    let api = http::AnnouncementApi::new(relay.clone(), &swissnum);
    Ok((furl, relay, api))
}
