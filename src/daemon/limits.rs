//! Connection admission for the one-port listener: at most `max_total` connections
//! at once, and at most `max_per_ip` from one peer address. A connection past either
//! limit is closed before a byte of it is read, so a flood from one address cannot
//! starve the others, and a flood from many cannot exhaust file descriptors.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
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
    refused: AtomicU64,
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> ConnLimiter {
        ConnLimiter {
            inner: Arc::new(Inner {
                max_total,
                max_per_ip,
                counts: Mutex::new(Counts::default()),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Admit a connection from `ip`; the permit counts it until dropped.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnPermit, Refusal> {
        let mut c = self.inner.counts.lock().unwrap_or_else(|p| p.into_inner());
        let refusal = if c.total >= self.inner.max_total {
            Some(Refusal::Total)
        } else if c.per_ip.get(&ip).copied().unwrap_or(0) >= self.inner.max_per_ip {
            Some(Refusal::PerIp)
        } else {
            None
        };
        if let Some(r) = refusal {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        c.total += 1;
        *c.per_ip.entry(ip).or_insert(0) += 1;
        Ok(ConnPermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .total
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }
}

/// One admitted connection.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: ConnLimiter,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self
            .limiter
            .inner
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
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
        assert_eq!(l.open(), 3);
    }

    #[test]
    fn total_limit_at_and_past_the_boundary() {
        let l = ConnLimiter::new(3, 10);
        let p: Vec<_> = (1..=3)
            .map(|i| l.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        assert_eq!(l.admit(ip("10.0.0.9")).unwrap_err(), Refusal::Total);
        drop(p);
        assert_eq!(l.open(), 0);
        assert!(l.inner.counts.lock().unwrap().per_ip.is_empty());
        l.admit(ip("10.0.0.9")).unwrap();
    }
}
