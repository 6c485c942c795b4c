//! Connection admission for the listeners: at most `max_total` connections at once,
//! and at most `max_per_ip` from one peer address. A connection past the per-address
//! limit is closed before a byte of it is read, so a flood from one address cannot
//! starve the others.
//!
//! At the total limit, a flood from many addresses must not starve legitimate
//! clients either: connections that have not yet identified themselves (no complete
//! protocol sniff, Foolscap negotiation or TLS handshake) are shed, oldest first, to
//! make room for a new one. A connection that has identified itself is never shed
//! for one that has not; only when every open connection has, a new one is refused.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every one of `max_total` connections has identified itself.
    Total,
    PerIp,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections not yet identified, by admission order (oldest first), with
    /// the token that sheds each.
    unidentified: BTreeMap<u64, CancellationToken>,
    next_id: u64,
}

/// Counts open connections; cheap to clone.
#[derive(Clone, Debug)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
    shed: AtomicU64,
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> ConnLimiter {
        ConnLimiter {
            inner: Arc::new(Inner {
                max_total,
                max_per_ip,
                counts: Mutex::new(Counts::default()),
                refused_total: AtomicU64::new(0),
                refused_per_ip: AtomicU64::new(0),
                shed: AtomicU64::new(0),
            }),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a connection from `ip`; the permit counts it until dropped, and holds
    /// it unidentified until [`ConnPermit::identified`]. At the total limit the
    /// oldest unidentified connection is shed (its permit's token is cancelled and
    /// it stops counting at once).
    pub fn admit(&self, ip: IpAddr) -> Result<ConnPermit, Refusal> {
        let mut c = self.counts();
        if c.per_ip.get(&ip).copied().unwrap_or(0) >= self.inner.max_per_ip {
            self.inner.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerIp);
        }
        if c.total >= self.inner.max_total {
            match c.unidentified.pop_first() {
                Some((_, shed)) => {
                    // Its permit no longer counts: the slot is this connection's.
                    c.total -= 1;
                    shed.cancel();
                    self.inner.shed.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.inner.refused_total.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::Total);
                }
            }
        }
        c.total += 1;
        *c.per_ip.entry(ip).or_insert(0) += 1;
        let id = c.next_id;
        c.next_id += 1;
        let shed = CancellationToken::new();
        c.unidentified.insert(id, shed.clone());
        Ok(ConnPermit {
            limiter: self.clone(),
            ip,
            id,
            shed,
        })
    }

    /// Connections open now (shed ones no longer count).
    pub fn open(&self) -> usize {
        self.counts().total
    }

    /// Connections refused so far (both reasons).
    pub fn refused(&self) -> u64 {
        self.refused_total() + self.refused_per_ip()
    }

    /// Refused because every slot held an identified connection.
    pub fn refused_total(&self) -> u64 {
        self.inner.refused_total.load(Ordering::Relaxed)
    }

    /// Refused by the per-address limit.
    pub fn refused_per_ip(&self) -> u64 {
        self.inner.refused_per_ip.load(Ordering::Relaxed)
    }

    /// Unidentified connections shed to admit newer ones.
    pub fn shed(&self) -> u64 {
        self.inner.shed.load(Ordering::Relaxed)
    }
}

/// One admitted connection.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: ConnLimiter,
    ip: IpAddr,
    id: u64,
    shed: CancellationToken,
}

impl ConnPermit {
    /// Cancelled when this connection is shed: its task must close it.
    pub fn shed_token(&self) -> CancellationToken {
        self.shed.clone()
    }

    /// The connection identified itself (negotiation or handshake done): it is
    /// never shed from now on. Does nothing if it was shed already.
    pub fn identified(&self) {
        self.limiter.counts().unidentified.remove(&self.id);
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.limiter.counts();
        let was_shed = self.shed.is_cancelled();
        if !was_shed {
            c.unidentified.remove(&self.id);
            c.total = c.total.saturating_sub(1);
        }
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // No entry is kept for an address with no connection: the table
                // cannot grow with the number of peers ever seen.
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_limit_at_and_past_the_boundary() {
        let l = ConnLimiter::new(10, 2);
        let a1 = l.admit(ip("10.0.0.1")).unwrap();
        let _a2 = l.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(l.admit(ip("10.0.0.1")).unwrap_err(), Refusal::PerIp);
        // Another address is unaffected.
        let _b = l.admit(ip("10.0.0.2")).unwrap();
        drop(a1);
        let _a3 = l.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(l.refused(), 1);
        assert_eq!(l.refused_per_ip(), 1);
        assert_eq!(l.open(), 3);
    }

    #[test]
    fn at_the_total_limit_the_oldest_unidentified_is_shed() {
        let l = ConnLimiter::new(3, 10);
        let p: Vec<_> = (1..=3)
            .map(|i| l.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        p[0].identified();
        // Full: the oldest unidentified (p[1]) makes room; p[0] is never shed.
        let q = l.admit(ip("10.0.0.9")).unwrap();
        assert!(!p[0].shed_token().is_cancelled());
        assert!(p[1].shed_token().is_cancelled());
        assert!(!p[2].shed_token().is_cancelled());
        assert_eq!((l.open(), l.shed()), (3, 1));
        p[2].identified();
        q.identified();
        // Every slot identified: refused.
        assert_eq!(l.admit(ip("10.0.0.8")).unwrap_err(), Refusal::Total);
        assert_eq!(l.refused_total(), 1);
        // Dropping a shed permit does not count it twice.
        drop(p);
        assert_eq!(l.open(), 1);
        drop(q);
        assert_eq!(l.open(), 0);
        let c = l.counts();
        assert!(c.per_ip.is_empty() && c.unidentified.is_empty());
    }

    #[test]
    fn identified_after_shed_is_harmless() {
        let l = ConnLimiter::new(1, 10);
        let a = l.admit(ip("10.0.0.1")).unwrap();
        let b = l.admit(ip("10.0.0.2")).unwrap();
        assert!(a.shed_token().is_cancelled());
        a.identified();
        drop(a);
        assert_eq!(l.open(), 1);
        drop(b);
        assert_eq!(l.open(), 0);
    }
}
