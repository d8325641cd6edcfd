//! The failover rank wait, remembered between reconciles.
//!
//! A node listed Nth among a failover service's nodes that finds it may take the service waits
//! N-1 times `failover_delay` before it promotes, so that a node listed before it that may take
//! it too (one it cannot see, bridged by a third node) promotes first and DRBD refuses the later
//! one. The wait is not a sleep inside a reconcile: a reconcile that slept would promote, after
//! its sleep, from the manifest it started with, although a commit (`state: down`, a changed
//! `nodes:`) may have arrived meanwhile. Instead the reconcile says "look again after the rest
//! of the wait" and ends; the next one, with the manifests then in force and a fresh
//! observation, promotes if the node still may. This memory is what lets that next reconcile
//! know how long the node has been waiting.
//!
//! Guarantees:
//! - a node promotes only after it was found free to take the service, at the same rank, in
//!   reconciles spanning at least the whole wait, the last of them the one that promotes;
//! - anything else in between (standing by, giving up, another rank, a stopped service) starts
//!   the count again, and so does a count left unlooked at for long past its end (the node was
//!   busy or the service unreconciled: what it saw then is too old to act on now).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use converge_core::plan::placement::Decision;
use tokio::time::Instant;

/// How long past its end a count still holds; later, the count starts again.
const STALE_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    rank: usize,
    since: Instant,
}

/// Per service: since when this node has been free to take it, and at which rank.
#[derive(Debug, Default)]
pub struct RankWait {
    counts: Mutex<HashMap<String, Count>>,
}

/// What [`RankWait::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The whole wait has passed: promote now.
    Over,
    /// Look again after this long; `started` when the count started just now.
    Left { left: Duration, started: bool },
}

impl RankWait {
    /// This node is free to take `service` at `rank`, which asks for `wait` in all: how much of
    /// it is left at `now`. Starts the count if none runs for that rank.
    pub fn check(&self, service: &str, rank: usize, wait: Duration, now: Instant) -> Wait {
        if wait.is_zero() {
            return Wait::Over;
        }
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = Count { rank, since: now };
        let count = counts.entry(service.to_string()).or_insert(fresh);
        let elapsed = now.saturating_duration_since(count.since);
        if count.rank != rank || elapsed > wait + STALE_AFTER {
            *count = fresh;
        }
        let elapsed = now.saturating_duration_since(count.since);
        if elapsed >= wait {
            Wait::Over
        } else {
            Wait::Left {
                left: wait - elapsed,
                started: count.since == now,
            }
        }
    }

    /// A plan of `service` was made with `placement`: unless it takes the service here, any
    /// count ends (it is counted only across plans that all take it).
    pub fn planned(&self, service: &str, placement: Option<&Decision>) {
        if !matches!(placement, Some(Decision::Take { .. })) {
            self.clear(service);
        }
    }

    /// This node is not (or no longer) waiting to take `service`: any count ends.
    pub fn clear(&self, service: &str) {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_look_starts_the_count_and_the_whole_wait_is_left() {
        let waits = RankWait::default();
        let now = Instant::now();
        assert_eq!(
            waits.check("web", 1, S, now),
            Wait::Left {
                left: S,
                started: true
            }
        );
    }

    #[test]
    fn looks_within_the_wait_see_what_is_left_and_the_end_promotes() {
        let waits = RankWait::default();
        let t0 = Instant::now();
        waits.check("web", 1, S, t0);
        assert_eq!(
            waits.check("web", 1, S, t0 + Duration::from_millis(300)),
            Wait::Left {
                left: Duration::from_millis(700),
                started: false
            }
        );
        assert_eq!(waits.check("web", 1, S, t0 + S), Wait::Over);
    }

    #[test]
    fn no_wait_is_over_at_once_and_counts_nothing() {
        let waits = RankWait::default();
        let now = Instant::now();
        assert_eq!(waits.check("web", 0, Duration::ZERO, now), Wait::Over);
        assert!(waits.counts.lock().unwrap().is_empty());
    }

    #[test]
    fn a_clear_in_between_starts_the_count_again() {
        let waits = RankWait::default();
        let t0 = Instant::now();
        waits.check("web", 1, S, t0);
        waits.clear("web");
        assert_eq!(
            waits.check("web", 1, S, t0 + S),
            Wait::Left {
                left: S,
                started: true
            }
        );
    }

    #[test]
    fn a_plan_that_does_not_take_the_service_ends_the_count() {
        let waits = RankWait::default();
        let t0 = Instant::now();
        waits.check("web", 1, S, t0);
        waits.planned("web", Some(&Decision::Take { rank: 1 }));
        assert_eq!(waits.check("web", 1, S, t0 + S), Wait::Over, "still taking");
        waits.check("db", 1, S, t0);
        waits.planned("db", None);
        assert_eq!(
            waits.check("db", 1, S, t0 + S),
            Wait::Left {
                left: S,
                started: true
            }
        );
    }

    #[test]
    fn another_rank_starts_the_count_again() {
        let waits = RankWait::default();
        let t0 = Instant::now();
        waits.check("web", 2, 2 * S, t0);
        assert_eq!(
            waits.check("web", 1, S, t0 + S),
            Wait::Left {
                left: S,
                started: true
            }
        );
    }

    #[test]
    fn a_count_long_past_its_end_is_stale_and_starts_again() {
        let waits = RankWait::default();
        let t0 = Instant::now();
        waits.check("web", 1, S, t0);
        assert_eq!(waits.check("web", 1, S, t0 + S + STALE_AFTER), Wait::Over);
        let later = t0 + S + STALE_AFTER + Duration::from_millis(1);
        assert_eq!(
            waits.check("web", 1, S, later),
            Wait::Left {
                left: S,
                started: true
            }
        );
    }

    #[test]
    fn services_count_apart() {
        let waits = RankWait::default();
        let t0 = Instant::now();
        waits.check("web", 1, S, t0);
        assert_eq!(
            waits.check("db", 1, S, t0 + S),
            Wait::Left {
                left: S,
                started: true
            }
        );
        assert_eq!(waits.check("web", 1, S, t0 + S), Wait::Over);
    }
}
