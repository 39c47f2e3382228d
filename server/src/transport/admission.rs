//! Admission per source: how many sessions one source may hold, how fast it may open
//! connections, and how many failed authentications it may make.
//!
//! A source is an IPv4 address or an IPv6 prefix (a /64 by default): one IPv6 host owns at least
//! a /64, so counting single IPv6 addresses would let it open sessions from 2^64 of them. An
//! IPv4-mapped IPv6 address counts as the IPv4 address it maps. Sources in `server.source_exempt`
//! (loopback by default) are not limited.
//!
//! The table of sources is bounded: entries that hold no session and whose buckets are full again
//! are purged, and past [`MAX_SOURCES`] tracked sources a new source is admitted untracked rather
//! than refused, so that an attacker with many addresses cannot lock everybody else out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ipnet::IpNet;
use tokio::time::Instant;

use crate::config::Config;
use crate::transport::labels::Rejection;

/// Most sources tracked at once (about 100 bytes each).
pub const MAX_SOURCES: usize = 100_000;

/// The limits, copied from the configuration.
#[derive(Debug, Clone)]
pub struct SourceLimits {
    /// Most sessions per source; 0 = no limit.
    pub max_sessions: usize,
    /// Connections per second per source; 0 = no limit.
    pub connect_rate: u32,
    /// Connection burst per source.
    pub connect_burst: u32,
    /// IPv4 prefix length of a source.
    pub prefix_v4: u8,
    /// IPv6 prefix length of a source.
    pub prefix_v6: u8,
    /// Sources not limited.
    pub exempt: Vec<IpNet>,
    /// Failed authentications a source may make in a burst.
    pub auth_failures: u32,
    /// Time to regain every failed-authentication allowance.
    pub auth_window: Duration,
}

impl SourceLimits {
    /// The limits a configuration sets.
    pub fn from_config(config: &Config) -> SourceLimits {
        SourceLimits {
            max_sessions: config.server.max_sessions_per_source,
            connect_rate: config.server.connect_rate_per_source,
            connect_burst: config.server.connect_burst_per_source,
            prefix_v4: config.server.source_prefix_v4,
            prefix_v6: config.server.source_prefix_v6,
            exempt: config.server.source_exempt.clone(),
            auth_failures: config.auth.max_failures_per_source,
            auth_window: config.auth.failure_window,
        }
    }
}

/// The network one address counts under.
pub fn source_of(ip: IpAddr, prefix_v4: u8, prefix_v6: u8) -> IpNet {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let prefix = match ip {
        IpAddr::V4(_) => prefix_v4.min(32),
        IpAddr::V6(_) => prefix_v6.min(128),
    };
    IpNet::new(ip, prefix).map_or_else(|_| IpNet::from(ip), |net| net.trunc())
}

/// A token bucket over the session clock.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct SourceState {
    sessions: usize,
    connects: Bucket,
    auth: Bucket,
}

#[derive(Debug)]
struct Table {
    sources: HashMap<IpNet, SourceState>,
    next_purge: usize,
    last_purge: Instant,
}

/// Purge at least this often, so that the table shrinks back after a burst of sources.
const PURGE_EVERY: Duration = Duration::from_secs(30);
/// Purge at most this often: a purge walks the whole table under its lock.
const PURGE_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// Per-source admission state, shared by the acceptor and the sessions.
#[derive(Debug)]
pub struct Admission {
    limits: SourceLimits,
    table: Mutex<Table>,
}

/// Why a Hello from a source is refused before its token is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled;

impl Admission {
    /// Sources tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().sources.len()
    }

    /// Admission with these limits.
    pub fn new(limits: SourceLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            table: Mutex::new(Table {
                sources: HashMap::new(),
                next_purge: 1024,
                last_purge: Instant::now(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The source an address counts under, or `None` when it is exempt (or per-source limits
    /// are off): what the parking lot limits per source.
    pub fn source_key(&self, ip: IpAddr) -> Option<IpNet> {
        if self.limits.max_sessions == 0 {
            return None;
        }
        self.key(ip)
    }

    /// The source an address counts under, or `None` when it is exempt. The exemption is
    /// checked against the address itself, before it is widened to its source prefix.
    fn key(&self, ip: IpAddr) -> Option<IpNet> {
        let address = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.limits.exempt.iter().any(|net| net.contains(&address)) {
            return None;
        }
        Some(source_of(
            address,
            self.limits.prefix_v4,
            self.limits.prefix_v6,
        ))
    }

    fn connect_rate(&self) -> (f64, f64) {
        (
            f64::from(self.limits.connect_rate),
            f64::from(self.limits.connect_burst.max(1)),
        )
    }

    fn auth_rate(&self) -> (f64, f64) {
        let burst = f64::from(self.limits.auth_failures.max(1));
        let window = self.limits.auth_window.as_secs_f64().max(0.001);
        (burst / window, burst)
    }

    /// Decides whether a new connection from `ip` may become a session. On success the returned
    /// slot holds the source's share of `server.max_sessions_per_source` until it is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<SourceSlot, Rejection> {
        let Some(key) = self.key(ip) else {
            return Ok(SourceSlot(None));
        };
        let now = Instant::now();
        let (rate, burst) = self.connect_rate();
        let (auth_rate, auth_burst) = self.auth_rate();
        let mut table = self.lock();
        let since = now.saturating_duration_since(table.last_purge);
        let due = (table.sources.len() >= table.next_purge && since >= PURGE_AT_MOST_EVERY)
            || since >= PURGE_EVERY;
        if due && !table.sources.contains_key(&key) {
            purge(&mut table, now, (rate, burst), (auth_rate, auth_burst));
        }
        if !table.sources.contains_key(&key) && table.sources.len() >= MAX_SOURCES {
            // Untracked: admitting beats refusing every newcomer while an attacker fills the table.
            return Ok(SourceSlot(None));
        }
        let state = table.sources.entry(key).or_insert_with(|| SourceState {
            sessions: 0,
            connects: Bucket::full(burst, now),
            auth: Bucket::full(auth_burst, now),
        });
        if self.limits.connect_rate > 0 && !state.connects.take(rate, burst, now) {
            return Err(Rejection::ConnectRate);
        }
        if self.limits.max_sessions > 0 && state.sessions >= self.limits.max_sessions {
            return Err(Rejection::PerSourceLimit);
        }
        state.sessions += 1;
        Ok(SourceSlot(Some((self.clone(), key))))
    }

    /// True when `ip`'s source spent its failed-authentication allowance: its Hello is refused
    /// without checking the token.
    pub fn auth_throttled(&self, ip: IpAddr) -> Result<(), Throttled> {
        let Some(key) = self.key(ip) else {
            return Ok(());
        };
        let (rate, burst) = self.auth_rate();
        let now = Instant::now();
        let mut table = self.lock();
        match table.sources.get_mut(&key) {
            Some(state) => {
                state.auth.refill(rate, burst, now);
                if state.auth.tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(Throttled)
                }
            }
            None => Ok(()),
        }
    }

    /// Records a failed authentication from `ip`.
    pub fn auth_failed(&self, ip: IpAddr) {
        let Some(key) = self.key(ip) else {
            return;
        };
        let (rate, burst) = self.auth_rate();
        let now = Instant::now();
        if let Some(state) = self.lock().sources.get_mut(&key) {
            state.auth.take(rate, burst, now);
        }
    }

    fn release(&self, key: &IpNet) {
        let mut table = self.lock();
        if let Some(state) = table.sources.get_mut(key) {
            state.sessions = state.sessions.saturating_sub(1);
        }
    }
}

/// Drops the entries that hold no session and whose buckets have refilled: they say nothing a
/// fresh entry would not.
fn purge(table: &mut Table, now: Instant, connects: (f64, f64), auth: (f64, f64)) {
    table.sources.retain(|_, state| {
        state.connects.refill(connects.0, connects.1, now);
        state.auth.refill(auth.0, auth.1, now);
        state.sessions > 0 || state.connects.tokens < connects.1 || state.auth.tokens < auth.1
    });
    table.next_purge = (2 * table.sources.len()).clamp(1024, MAX_SOURCES);
    table.last_purge = now;
}

/// One admitted session's share of its source's limit, given back on drop.
#[derive(Debug)]
pub struct SourceSlot(Option<(Arc<Admission>, IpNet)>);

impl SourceSlot {
    /// No source counted: for a connection whose source never became known.
    pub(crate) fn none() -> SourceSlot {
        SourceSlot(None)
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Some((admission, key)) = self.0.take() {
            admission.release(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SourceLimits {
        SourceLimits {
            max_sessions: 2,
            connect_rate: 10,
            connect_burst: 3,
            prefix_v4: 32,
            prefix_v6: 64,
            exempt: vec!["127.0.0.0/8".parse().expect("net")],
            auth_failures: 2,
            auth_window: Duration::from_secs(10),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_prefixes() {
        assert_eq!(
            source_of(ip("203.0.113.7"), 32, 64).to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1"), 32, 64).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            source_of(ip("2001:db8:1:2:bbbb::9"), 32, 64),
            source_of(ip("2001:db8:1:2:aaaa::1"), 32, 64)
        );
        assert_eq!(
            source_of(ip("::ffff:203.0.113.7"), 32, 64).to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            source_of(ip("203.0.113.7"), 24, 64).to_string(),
            "203.0.113.0/24"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_holds_at_most_its_sessions_and_gets_them_back() {
        let admission = Admission::new(SourceLimits {
            connect_rate: 0,
            ..limits()
        });
        let a = admission.admit(ip("2001:db8::1")).expect("first");
        let _b = admission
            .admit(ip("2001:db8::2"))
            .expect("second, same /64");
        assert_eq!(
            admission.admit(ip("2001:db8::3")).err(),
            Some(Rejection::PerSourceLimit)
        );
        // Another /64 is another source.
        let _c = admission
            .admit(ip("2001:db8:0:1::1"))
            .expect("other prefix");
        drop(a);
        assert!(admission.admit(ip("2001:db8::3")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_rate_refills_over_time() {
        let admission = Admission::new(SourceLimits {
            max_sessions: 0,
            ..limits()
        });
        let peer = ip("198.51.100.1");
        for _ in 0..3 {
            assert!(admission.admit(peer).is_ok());
        }
        assert_eq!(admission.admit(peer).err(), Some(Rejection::ConnectRate));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(admission.admit(peer).is_ok());
        assert_eq!(admission.admit(peer).err(), Some(Rejection::ConnectRate));
    }

    #[tokio::test(start_paused = true)]
    async fn an_exempt_ipv6_address_is_exempt_although_its_prefix_is_wider() {
        let admission = Admission::new(SourceLimits {
            exempt: vec!["::1/128".parse().expect("net")],
            ..limits()
        });
        let slots: Vec<_> = (0..10)
            .map(|_| admission.admit(ip("::1")).expect("exempt"))
            .collect();
        assert_eq!(slots.len(), 10);
        // Its neighbour in the same /64 is not exempt.
        let _a = admission.admit(ip("::2")).expect("first");
        let _b = admission.admit(ip("::3")).expect("second");
        assert_eq!(
            admission.admit(ip("::4")).err(),
            Some(Rejection::PerSourceLimit)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exempt_sources_are_never_limited() {
        let admission = Admission::new(limits());
        let slots: Vec<_> = (0..50)
            .map(|_| admission.admit(ip("127.0.0.1")).expect("exempt"))
            .collect();
        assert_eq!(slots.len(), 50);
        assert_eq!(admission.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_authentications_throttle_a_source_for_a_while() {
        let admission = Admission::new(limits());
        let peer = ip("198.51.100.9");
        let _slot = admission.admit(peer).expect("admitted");
        assert_eq!(admission.auth_throttled(peer), Ok(()));
        admission.auth_failed(peer);
        admission.auth_failed(peer);
        assert_eq!(admission.auth_throttled(peer), Err(Throttled));
        // Another source is not affected.
        assert_eq!(admission.auth_throttled(ip("198.51.100.10")), Ok(()));
        // Two failures per ten seconds: one comes back after five.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(admission.auth_throttled(peer), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sources_are_purged() {
        let admission = Admission::new(SourceLimits {
            max_sessions: 0,
            ..limits()
        });
        for n in 0..2000u32 {
            let peer = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            drop(admission.admit(peer).expect("admitted"));
        }
        assert!(admission.tracked() <= 2000);
        tokio::time::advance(Duration::from_secs(60)).await;
        drop(admission.admit(ip("192.0.2.1")).expect("admitted"));
        assert!(
            admission.tracked() < 10,
            "idle sources were kept: {}",
            admission.tracked()
        );
    }
}
