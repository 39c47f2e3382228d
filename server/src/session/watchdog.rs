//! The session's deadlines, as pure logic over instants: the handshake deadline, the idle
//! deadline, the next ping, the acknowledgement of inputs and the write-stall deadline.
//!
//! The session keeps ONE timer and arms it at [`Watchdog::next_deadline`]. The server pings a
//! client only when it has heard nothing from it for a heartbeat interval, so a client that sends
//! its own heartbeat (or plays) is never pinged and its session wakes once per heartbeat, for the
//! client's frame. Inbound activity moves the deadlines later; the session moves its timer with
//! them (moving a timer later costs the runtime almost nothing and saves a wake-up).

use std::time::Duration;

use tokio::time::Instant;

/// What the watchdog found due when the timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No `Hello` within the handshake timeout.
    Handshake,
    /// Nothing received for the idle timeout.
    Idle,
    /// The socket stayed backed up for the write timeout.
    WriteStall,
    /// Time to send the next heartbeat ping.
    Ping,
    /// Inputs applied a heartbeat ago are still unacknowledged.
    Ack,
}

/// Timer settings, copied from the session configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Time allowed for `Hello`.
    pub handshake: Duration,
    /// Ping period; zero means no pings.
    pub heartbeat: Duration,
    /// Silence allowed after the handshake.
    pub idle: Duration,
    /// Backpressure allowed on writes.
    pub write: Duration,
}

/// The deadlines of one session.
#[derive(Debug)]
pub struct Watchdog {
    timeouts: Timeouts,
    handshake_deadline: Option<Instant>,
    last_inbound: Instant,
    /// Where the idle deadline counts from: the last frame, moved later by server stalls.
    idle_from: Instant,
    next_ping: Option<Instant>,
    /// When the inputs applied since the last `Ack` must be acknowledged.
    ack_due: Option<Instant>,
    write_stalled_since: Option<Instant>,
}

impl Watchdog {
    /// A watchdog for a connection accepted at `now`, waiting for its `Hello`.
    pub fn new(timeouts: Timeouts, now: Instant) -> Self {
        Watchdog {
            timeouts,
            handshake_deadline: Some(now + timeouts.handshake),
            last_inbound: now,
            idle_from: now,
            next_ping: None,
            ack_due: None,
            write_stalled_since: None,
        }
    }

    /// The handshake completed: the idle deadline and the ping schedule start now.
    pub fn handshake_done(&mut self, now: Instant) {
        self.handshake_deadline = None;
        self.last_inbound = now;
        self.idle_from = now;
        if !self.timeouts.heartbeat.is_zero() {
            self.next_ping = Some(now + self.timeouts.heartbeat);
        }
    }

    /// A frame arrived. Cheap on purpose: called for every frame. The client is heard, so the
    /// next ping is a heartbeat away again.
    pub fn inbound(&mut self, now: Instant) {
        self.last_inbound = now;
        self.idle_from = now;
        if let Some(ping) = &mut self.next_ping {
            *ping = now + self.timeouts.heartbeat;
        }
    }

    /// An input was applied: it is acknowledged within a heartbeat interval (sooner if a `Ping` or
    /// `Pong` goes out first). Without a heartbeat, only the close acknowledges.
    pub fn input_applied(&mut self, now: Instant) {
        if self.ack_due.is_none() && !self.timeouts.heartbeat.is_zero() {
            self.ack_due = Some(now + self.timeouts.heartbeat);
        }
    }

    /// Every applied input is acknowledged.
    pub fn acked(&mut self) {
        self.ack_due = None;
    }

    /// The server itself stood still for `stall` (see [`crate::session::stall`]): the client could not be
    /// heard meanwhile, so the handshake, idle and write-stall deadlines move later by as much.
    pub fn forgive(&mut self, stall: Duration) {
        if let Some(deadline) = &mut self.handshake_deadline {
            *deadline += stall;
        }
        self.idle_from += stall;
        if let Some(since) = &mut self.write_stalled_since {
            *since += stall;
        }
    }

    /// Moves the idle deadline `extra` later, until the client is heard again (the loss grace,
    /// see `session::driver`).
    pub fn extend_idle(&mut self, extra: Duration) {
        self.idle_from += extra;
    }

    /// The timeouts it keeps.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// When the last frame arrived (or the connection was accepted).
    pub fn last_inbound(&self) -> Instant {
        self.last_inbound
    }

    /// A write left bytes in the buffer: the kernel's send buffer is full. Starts the stall clock
    /// unless it is already running.
    pub fn write_blocked(&mut self, now: Instant) {
        self.write_stalled_since.get_or_insert(now);
    }

    /// The write buffer drained completely.
    pub fn write_drained(&mut self) {
        self.write_stalled_since = None;
    }

    /// The earliest instant at which something may be due.
    pub fn next_deadline(&self) -> Instant {
        let idle = match self.handshake_deadline {
            Some(handshake) => handshake,
            None => self.idle_from + self.timeouts.idle,
        };
        [
            self.next_ping,
            self.ack_due,
            self.write_stalled_since.map(|t| t + self.timeouts.write),
        ]
        .into_iter()
        .flatten()
        .fold(idle, Instant::min)
    }

    /// True when the handshake or idle deadline has passed: the peer looks silent.
    pub fn silence_due(&self, now: Instant) -> bool {
        match self.handshake_deadline {
            Some(deadline) => now >= deadline,
            None => now >= self.idle_from + self.timeouts.idle,
        }
    }

    /// What is due at `now`, most severe first. A due ping is consumed: the next one is scheduled
    /// one period later, unless the client is heard meanwhile. A due acknowledgement is consumed
    /// by [`Watchdog::acked`].
    pub fn expired(&mut self, now: Instant) -> Option<Expiry> {
        if let Some(deadline) = self.handshake_deadline {
            return (now >= deadline).then_some(Expiry::Handshake);
        }
        if now >= self.idle_from + self.timeouts.idle {
            return Some(Expiry::Idle);
        }
        if let Some(since) = self.write_stalled_since
            && now >= since + self.timeouts.write
        {
            return Some(Expiry::WriteStall);
        }
        if let Some(ping) = self.next_ping
            && now >= ping
        {
            self.next_ping = Some(now + self.timeouts.heartbeat);
            return Some(Expiry::Ping);
        }
        if let Some(ack) = self.ack_due
            && now >= ack
        {
            return Some(Expiry::Ack);
        }
        None
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
///
/// The server's own stalls are not charged to the client: tokens the client earned while the
/// server stood still (which the bucket's cap would otherwise clip at `burst`) are granted as a
/// credit, valid while the server catches up on the frames that piled up meanwhile.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
    credit: f64,
    credit_until: Instant,
    stall_seen: Duration,
}

/// The longest stall whose frames are all credited.
const STALL_CREDIT_MAX: Duration = Duration::from_secs(30);

/// How long after a stall its credit stays usable: time to read what piled up meanwhile.
const STALL_CATCH_UP: Duration = Duration::from_secs(1);

impl RateLimit {
    /// A full bucket. `stall_total` is the server's stall clock now.
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant, stall_total: Duration) -> Self {
        RateLimit {
            rate: f64::from(rate_per_sec),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            updated: now,
            credit: 0.0,
            credit_until: now,
            stall_seen: stall_total,
        }
    }

    /// The rate and burst, as configured.
    pub fn limits(&self) -> (u32, u32) {
        (self.rate as u32, self.burst as u32)
    }

    /// Takes one token; false when the bucket is empty. `stall_total` is the server's stall
    /// clock now.
    pub fn take(&mut self, now: Instant, stall_total: Duration) -> bool {
        if stall_total > self.stall_seen {
            let stall = stall_total - self.stall_seen;
            self.stall_seen = stall_total;
            // What the stall earned, at most STALL_CREDIT_MAX of it: a frozen hour does not
            // license a flood.
            self.credit = (self.credit + stall.as_secs_f64() * self.rate)
                .min(STALL_CREDIT_MAX.as_secs_f64() * self.rate);
            self.credit_until = now + STALL_CATCH_UP;
        }
        if now != self.updated {
            // The frames of one read share a clock reading: only the first refills.
            let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
            self.updated = now;
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else if self.credit >= 1.0 && now < self.credit_until {
            self.credit -= 1.0;
            true
        } else {
            self.credit = 0.0;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        handshake: Duration::from_secs(5),
        heartbeat: Duration::from_secs(1),
        idle: Duration::from_secs(3),
        write: Duration::from_secs(2),
    };

    #[test]
    fn handshake_deadline_is_absolute_from_accept() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T, t0);
        w.inbound(t0 + Duration::from_secs(4));
        assert_eq!(w.next_deadline(), t0 + Duration::from_secs(5));
        assert_eq!(w.expired(t0 + Duration::from_millis(4999)), None);
        assert_eq!(
            w.expired(t0 + Duration::from_secs(5)),
            Some(Expiry::Handshake)
        );
    }

    #[test]
    fn pings_are_due_every_period_and_idle_fires_after_silence() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T, t0);
        w.handshake_done(t0);
        assert_eq!(w.next_deadline(), t0 + Duration::from_secs(1));
        assert_eq!(w.expired(t0 + Duration::from_secs(1)), Some(Expiry::Ping));
        assert_eq!(w.next_deadline(), t0 + Duration::from_secs(2));
        assert_eq!(w.expired(t0 + Duration::from_secs(2)), Some(Expiry::Ping));
        assert_eq!(w.expired(t0 + Duration::from_millis(2500)), None);
        // No pong ever came: idle at 3 s after the handshake, whatever the pings did.
        assert_eq!(w.expired(t0 + Duration::from_secs(3)), Some(Expiry::Idle));
    }

    #[test]
    fn inbound_frames_push_the_idle_deadline_and_the_next_ping_back() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T, t0);
        w.handshake_done(t0);
        w.inbound(t0 + Duration::from_millis(2900));
        // The client was heard 0.1 s ago: no ping until a heartbeat after that.
        assert_eq!(w.expired(t0 + Duration::from_secs(3)), None);
        assert_eq!(w.next_deadline(), t0 + Duration::from_millis(3900));
        assert_eq!(
            w.expired(t0 + Duration::from_millis(3900)),
            Some(Expiry::Ping)
        );
        assert_eq!(
            w.expired(t0 + Duration::from_millis(5900)),
            Some(Expiry::Idle)
        );
    }

    #[test]
    fn a_client_heard_every_heartbeat_is_never_pinged() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T, t0);
        w.handshake_done(t0);
        for i in 1..=100u64 {
            let at = t0 + Duration::from_millis(900 * i);
            assert_eq!(w.expired(at), None, "at {i}");
            w.inbound(at);
            assert!(w.next_deadline() > at + Duration::from_millis(900));
        }
    }

    #[test]
    fn an_applied_input_is_acknowledged_within_a_heartbeat() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T, t0);
        w.handshake_done(t0);
        // Inputs keep coming, so no ping is ever due; the acknowledgement still is.
        w.inbound(t0 + Duration::from_millis(100));
        w.input_applied(t0 + Duration::from_millis(100));
        w.inbound(t0 + Duration::from_millis(600));
        w.input_applied(t0 + Duration::from_millis(600));
        assert_eq!(w.next_deadline(), t0 + Duration::from_millis(1100));
        w.inbound(t0 + Duration::from_millis(1050));
        assert_eq!(
            w.expired(t0 + Duration::from_millis(1100)),
            Some(Expiry::Ack)
        );
        w.acked();
        assert_eq!(w.expired(t0 + Duration::from_millis(1100)), None);
    }

    #[test]
    fn write_stall_counts_from_the_first_blocked_write() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(
            Timeouts {
                heartbeat: Duration::ZERO,
                idle: Duration::from_secs(60),
                ..T
            },
            t0,
        );
        w.handshake_done(t0);
        w.write_blocked(t0 + Duration::from_secs(1));
        w.write_blocked(t0 + Duration::from_secs(2));
        assert_eq!(w.next_deadline(), t0 + Duration::from_secs(3));
        w.inbound(t0 + Duration::from_secs(3));
        assert_eq!(
            w.expired(t0 + Duration::from_secs(3)),
            Some(Expiry::WriteStall)
        );
        w.write_drained();
        assert_eq!(w.expired(t0 + Duration::from_secs(4)), None);
    }

    #[test]
    fn heartbeat_off_means_no_pings() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(
            Timeouts {
                heartbeat: Duration::ZERO,
                ..T
            },
            t0,
        );
        w.handshake_done(t0);
        assert_eq!(w.next_deadline(), t0 + Duration::from_secs(3));
        assert_eq!(w.expired(t0 + Duration::from_millis(2999)), None);
    }

    #[test]
    fn rate_limit_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let z = Duration::ZERO;
        let mut r = RateLimit::new(10, 5, t0, z);
        assert!((0..5).all(|_| r.take(t0, z)));
        assert!(!r.take(t0, z));
        assert!(r.take(t0 + Duration::from_millis(100), z));
        assert!(!r.take(t0 + Duration::from_millis(100), z));
        // A long pause of the client refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..5).all(|_| r.take(later, z)));
        assert!(!r.take(later, z));
    }

    #[test]
    fn a_server_stall_is_not_charged_to_a_client_within_its_rate() {
        // 20 frames/s against a limit of 100/s with a burst of 10: during a 10 s stall of the
        // server, 200 frames pile up and arrive at once.
        let t0 = Instant::now();
        let mut r = RateLimit::new(100, 10, t0, Duration::ZERO);
        let after = t0 + Duration::from_secs(10);
        let stalled = Duration::from_secs(10);
        assert!((0..200).all(|_| r.take(after, stalled)));
        // The credit is what the stall earned, not a licence to flood afterwards.
        let flood = after + Duration::from_secs(3);
        assert!((0..10).all(|_| r.take(flood, stalled)));
        assert!(!r.take(flood, stalled));
    }

    #[test]
    fn without_a_stall_the_same_pile_is_rate_limited() {
        let t0 = Instant::now();
        let z = Duration::ZERO;
        let mut r = RateLimit::new(100, 10, t0, z);
        let after = t0 + Duration::from_secs(10);
        assert!(!(0..200).all(|_| r.take(after, z)));
    }

    #[test]
    fn a_stall_moves_the_deadlines_later() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(T, t0);
        w.forgive(Duration::from_secs(10));
        assert_eq!(w.next_deadline(), t0 + Duration::from_secs(15));
        w.handshake_done(t0 + Duration::from_secs(1));
        w.forgive(Duration::from_secs(10));
        assert_eq!(w.expired(t0 + Duration::from_secs(12)), Some(Expiry::Ping));
        assert!(!w.silence_due(t0 + Duration::from_secs(13)));
        assert_eq!(w.expired(t0 + Duration::from_secs(14)), Some(Expiry::Idle));
        // The detection time still counts from the last frame.
        assert_eq!(w.last_inbound(), t0 + Duration::from_secs(1));
    }
}
