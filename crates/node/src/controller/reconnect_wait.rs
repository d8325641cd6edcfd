//! The backoff between reconnections of a DRBD connection that keeps falling back to
//! StandAlone, remembered between reconciles.
//!
//! A connection converge reconnects (`drbdadm connect`) may go StandAlone again a moment later:
//! a handshake DRBD refuses (unrelated data, a configuration the peer does not share). Each of
//! those falls back with an event that starts a reconcile, which would reconnect at once, as
//! often as the handshake fails. So the Nth reconnection in a row of the same connection waits
//! [`FIRST`] × 2^(N-2) after the one before it (the first and second go at once and after
//! [`FIRST`]), at most [`MAX`]; the reconcile leaves it out and goes on with the rest, then
//! says "look again then" instead of sleeping. Reconnections more than [`FORGET_AFTER`] apart
//! are not "in a row": a connection that held that long starts from the beginning. (Whether
//! it is connected now says little: a handshake DRBD refuses passes through Connected first.)
//! A split brain is never reconnected at all (the planner refuses it).
//!
//! The memory is the process's: the daemon keeps it for its life; each `reconcile --once` run
//! starts without one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The wait before the second reconnection in a row.
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two reconnections.
pub const MAX: Duration = Duration::from_secs(300);
/// Reconnections further apart than this are not in a row.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Attempts {
    /// Reconnections in a row.
    count: u32,
    last: Instant,
}

/// The reconnections made, by connection (`RES`, or `RES:PEER`: what drbdadm is given).
#[derive(Debug, Default)]
pub struct ReconnectWait {
    attempts: Mutex<HashMap<String, Attempts>>,
    /// `reconcile --once`: one run reconnects at most once anyway, and must not wait out a
    /// backoff meant for a daemon's life.
    off: bool,
}

impl ReconnectWait {
    /// No backoff: every reconnection goes at once.
    pub fn off() -> ReconnectWait {
        ReconnectWait {
            off: true,
            ..ReconnectWait::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Attempts>> {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long before `connection` may be reconnected again (`None`: now), and how many
    /// reconnections in a row it had.
    pub fn left(&self, connection: &str, now: Instant) -> Option<(Duration, u32)> {
        if self.off {
            return None;
        }
        let attempts = *self.lock().get(connection)?;
        if now.saturating_duration_since(attempts.last) > FORGET_AFTER {
            return None;
        }
        let wait = FIRST
            .saturating_mul(1 << (attempts.count.saturating_sub(1)).min(16))
            .min(MAX);
        let waited = now.saturating_duration_since(attempts.last);
        (waited < wait).then(|| (wait - waited, attempts.count))
    }

    /// `connection` was reconnected at `now`. Connections not reconnected for
    /// [`FORGET_AFTER`] are forgotten, so that the memory stays as small as the node's trouble.
    pub fn attempted(&self, connection: &str, now: Instant) {
        let mut all = self.lock();
        all.retain(|_, a| now.saturating_duration_since(a.last) <= FORGET_AFTER);
        let attempts = all.entry(connection.to_string()).or_insert(Attempts {
            count: 0,
            last: now,
        });
        attempts.count = attempts.count.saturating_add(1);
        attempts.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnections_in_a_row_wait_longer_each_time_up_to_the_cap() {
        let waits = ReconnectWait::default();
        let t0 = Instant::now();
        assert_eq!(waits.left("data:deb2", t0), None, "the first goes at once");
        waits.attempted("data:deb2", t0);
        // Then 1 s, 2 s, 4 s… after the one before.
        let mut at = t0;
        for (n, wait) in [(1u32, 1u64), (2, 2), (3, 4), (4, 8)] {
            assert_eq!(
                waits.left("data:deb2", at),
                Some((Duration::from_secs(wait), n))
            );
            let half = at + Duration::from_secs(wait) / 2;
            assert_eq!(
                waits.left("data:deb2", half),
                Some((Duration::from_secs(wait) / 2, n))
            );
            at += Duration::from_secs(wait);
            assert_eq!(waits.left("data:deb2", at), None);
            waits.attempted("data:deb2", at);
        }
        for _ in 0..20 {
            waits.attempted("data:deb2", at);
        }
        assert_eq!(waits.left("data:deb2", at).map(|(w, _)| w), Some(MAX));
        // Another connection has its own count.
        assert_eq!(waits.left("data:tb", at), None);
    }

    #[test]
    fn off_never_holds_a_reconnection_back() {
        let waits = ReconnectWait::off();
        let t0 = Instant::now();
        for _ in 0..5 {
            waits.attempted("data", t0);
        }
        assert_eq!(waits.left("data", t0), None);
    }

    #[test]
    fn reconnections_far_apart_are_not_in_a_row() {
        let waits = ReconnectWait::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            waits.attempted("data:deb2", t0);
        }
        let late = t0 + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(waits.left("data:deb2", late), None);
        // A new run of them starts from the beginning, and the old one is gone.
        waits.attempted("data:deb2", late);
        assert_eq!(
            waits.left("data:deb2", late),
            Some((FIRST, 1)),
            "counted afresh"
        );
        assert_eq!(waits.lock().len(), 1);
    }
}
