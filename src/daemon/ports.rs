//! The ports of the daemon: which links each listening address serves, with which
//! identity and hints (`plan_ports`), the Tubs that serve the identities, and
//! binding (`bind`). Each link serves with its own identity; a port serves one
//! Tub per identity over Foolscap (a connection names its TubID before TLS), but one
//! certificate over GBS, so links with different identities get different ports.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::accounts::AccountRoutes;
use super::config::Limits;
use super::config::{Config, LinkConfig, Origin};
use super::run::{cfg, tub_config, DaemonError};
use crate::foolscap::furl::Hint;
use crate::foolscap::{Tub, TubConfig};
use crate::gbs::server::GbsServer;
use crate::identity::Identity;

/// One listening address and what it serves.
pub(super) struct PortPlan {
    pub(super) listen: SocketAddr,
    pub(super) location: Option<Vec<Hint>>,
    /// Where the address and the location were configured, for errors.
    pub(super) listen_origin: Origin,
    pub(super) location_origin: Origin,
    /// Indexes of the links served on it.
    pub(super) links: Vec<usize>,
    /// The identity its TLS (GBS) side serves with: its links' (they share one),
    /// else swampgate's own.
    pub(super) identity: Identity,
}

/// Group the links by listening address: the top-level `listen` first (always
/// bound: it serves the introducer relay, if any), then each other address. Links
/// with different identities cannot share an address (GBS picks its certificate
/// before it sees a request), and links sharing an address must agree on its
/// location.
pub(super) fn plan_ports(
    config: &Config,
    identities: &[Identity],
    own: &Identity,
) -> Result<Vec<PortPlan>, DaemonError> {
    let mut plans = vec![PortPlan {
        listen: config.listen,
        location: config.location.clone(),
        listen_origin: config.origins.listen.clone(),
        location_origin: config.origins.location.clone(),
        links: Vec::new(),
        identity: own.clone(),
    }];
    for (i, l) in config.links.iter().enumerate() {
        let listen = l.listen.unwrap_or(config.listen);
        // Links name the same port by the same address; port 0 ("any free port")
        // is a port of its own each time.
        let same = |p: &PortPlan| p.listen == listen && listen.port() != 0;
        let found = match l.listen {
            None => Some(0),
            Some(_) => plans.iter().position(same),
        };
        let at = match found {
            Some(at) => at,
            None => {
                plans.push(PortPlan {
                    listen,
                    location: None,
                    listen_origin: l.origins.listen.clone(),
                    location_origin: l.origins.location.clone(),
                    links: Vec::new(),
                    identity: identities[i].clone(),
                });
                plans.len() - 1
            }
        };
        let plan = &mut plans[at];
        if let Some(&j) = plan.links.first() {
            if identities[j].tubid() != identities[i].tubid() {
                return Err(l
                    .origins
                    .listen
                    .error(format!(
                        "link {:?} and link {:?} serve different identities ({}) on one \
                         listen address {listen}: HTTP (GBS) clients could not tell them \
                         apart; give one of them a listen address of its own",
                        config.links[j].name,
                        l.name,
                        describe_identities(&config.links[j], l),
                    ))
                    .into());
            }
        } else {
            plan.identity = identities[i].clone();
        }
        if let Some(loc) = &l.location {
            match &plan.location {
                Some(have) if have != loc && at == 0 => {
                    return Err(l
                        .origins
                        .location
                        .error(
                            "this link listens on the top-level address, whose location is \
                             the top-level location",
                        )
                        .into())
                }
                Some(have) if have != loc => {
                    return Err(l
                        .origins
                        .location
                        .error(format!(
                            "another link on {listen} gives a different location ({})",
                            plan.location_origin.place()
                        ))
                        .into())
                }
                _ => {
                    plan.location = Some(loc.clone());
                    plan.location_origin = l.origins.location.clone();
                }
            }
        }
        plan.links.push(i);
    }
    Ok(plans)
}

/// `"a" adopts DIR, "b" swampgate's own`, for the two links of a conflict.
fn describe_identities(first: &LinkConfig, second: &LinkConfig) -> String {
    let one = |l: &LinkConfig| match &l.adopt {
        Some(dir) => format!("{:?} adopts {}", l.name, dir.display()),
        None => format!("{:?} swampgate's own", l.name),
    };
    format!("{}, {}", one(first), one(second))
}

/// The Tubs of the process, one per identity, shared by every port serving it.
pub(super) struct Tubs {
    pub(super) config: TubConfig,
    pub(super) by_tubid: std::collections::BTreeMap<String, Tub>,
}

impl Tubs {
    pub(super) fn new(limits: &Limits) -> Tubs {
        Tubs {
            config: tub_config(limits),
            by_tubid: Default::default(),
        }
    }

    pub(super) fn get(&mut self, identity: &Identity) -> Result<Tub, DaemonError> {
        if let Some(t) = self.by_tubid.get(identity.tubid()) {
            return Ok(t.clone());
        }
        let tub =
            Tub::new(identity.clone(), self.config).map_err(|e| cfg("identity", e.to_string()))?;
        self.by_tubid
            .insert(identity.tubid().to_string(), tub.clone());
        Ok(tub)
    }
}

/// The Tubs one port serves (a connection names the one it wants).
#[derive(Default)]
pub(super) struct PortTubs(pub(super) Vec<Tub>);

impl PortTubs {
    pub(super) fn add(&mut self, tub: &Tub) {
        if !self.0.iter().any(|t| t.tubid() == tub.tubid()) {
            self.0.push(tub.clone());
        }
    }
}

/// A bound port, filled as its links are assembled.
pub(super) struct Port {
    pub(super) plan: PortPlan,
    pub(super) listener: TcpListener,
    pub(super) local_addr: SocketAddr,
    /// The hints FURLs carry: the configured location, or the bound address.
    pub(super) hints: Vec<Hint>,
    /// Where NURLs point: the first `tcp:` hint.
    pub(super) nurl_host: String,
    pub(super) nurl_port: u16,
    pub(super) tubs: PortTubs,
    pub(super) servers: Vec<(String, GbsServer)>,
    pub(super) accounts: Arc<AccountRoutes>,
}

/// Bind one port; the hints FURLs carry (configured, or the bound address) and the
/// host and port NURLs carry (the first `tcp:` hint).
pub(super) async fn bind(plan: PortPlan) -> Result<Port, DaemonError> {
    let listen_err = |e: std::io::Error| {
        DaemonError::from(
            plan.listen_origin
                .error(format!("cannot listen on {}: {e}", plan.listen)),
        )
    };
    let listener = TcpListener::bind(plan.listen).await.map_err(listen_err)?;
    let local_addr = listener.local_addr().map_err(listen_err)?;
    let hints = plan.location.clone().unwrap_or_else(|| {
        vec![Hint::Tcp {
            host: local_addr.ip().to_string(),
            port: local_addr.port(),
        }]
    });
    let (nurl_host, nurl_port) = hints
        .iter()
        .find_map(|h| match h {
            Hint::Tcp { host, port } => Some((host.clone(), *port)),
            Hint::Other(_) => None,
        })
        .ok_or_else(|| {
            DaemonError::from(plan.location_origin.error("needs at least one tcp: hint"))
        })?;
    Ok(Port {
        plan,
        listener,
        local_addr,
        hints,
        nurl_host,
        nurl_port,
        tubs: PortTubs::default(),
        servers: Vec::new(),
        accounts: Arc::default(),
    })
}
