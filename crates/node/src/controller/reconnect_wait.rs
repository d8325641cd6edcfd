//! The backoff between reconnections of a DRBD connection that keeps falling back to
//! StandAlone, remembered between reconciles.
//!
//! A connection converge reconnects (`drbdadm connect`) may go StandAlone again a moment later:
//! a handshake DRBD refuses (unrelated data, a configuration the peer does not share). Each of
//! those falls back with an event that starts a reconcile, which would reconnect at once, as
//! often as the handshake fails. So the Nth reconnection in a row of the same connection waits
//! [`FIRST`] × 2^(N-2) after the one before it (the first and second go at once and after
//! [`FIRST`]), at most [`MAX`]; the reconcile says "look again then" instead of sleeping. A
//! connection the plan no longer reconnects (established again, or its service down) starts
//! from the beginning. A split brain is never reconnected at all (the planner refuses it).
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
}

impl ReconnectWait {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Attempts>> {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long before `connection` may be reconnected again (`None`: now), and how many
    /// reconnections in a row it had.
    pub fn left(&self, connection: &str, now: Instant) -> Option<(Duration, u32)> {
        let attempts = *self.lock().get(connection)?;
        let wait = FIRST
            .saturating_mul(1 << (attempts.count.saturating_sub(1)).min(16))
            .min(MAX);
        let waited = now.saturating_duration_since(attempts.last);
        (waited < wait).then(|| (wait - waited, attempts.count))
    }

    /// `connection` was reconnected at `now`.
    pub fn attempted(&self, connection: &str, now: Instant) {
        let mut all = self.lock();
        let attempts = all.entry(connection.to_string()).or_insert(Attempts {
            count: 0,
            last: now,
        });
        attempts.count = attempts.count.saturating_add(1);
        attempts.last = now;
    }

    /// Forgets the connections of DRBD resources `resources` that are not in `reconnected`
    /// (those the last plan reconnects): they start from the beginning next time.
    pub fn planned(&self, resources: &[&str], reconnected: &[String]) {
        self.lock().retain(|connection, _| {
            let res = connection.split(':').next().unwrap_or(connection);
            !resources.contains(&res) || reconnected.iter().any(|r| r == connection)
        });
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
    fn a_connection_the_plan_no_longer_reconnects_starts_again() {
        let waits = ReconnectWait::default();
        let t0 = Instant::now();
        for c in ["data:deb2", "data:tb", "web"] {
            waits.attempted(c, t0);
        }
        // data's plan reconnects only tb now; web is another service's.
        waits.planned(&["data"], &["data:tb".to_string()]);
        assert_eq!(waits.left("data:deb2", t0), None);
        assert!(waits.left("data:tb", t0).is_some());
        assert!(waits.left("web", t0).is_some());
        waits.planned(&["data", "web"], &[]);
        assert_eq!(waits.left("data:tb", t0), None);
        assert_eq!(waits.left("web", t0), None);
    }
}
