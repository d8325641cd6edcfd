//! The waits before a failover node takes a service, remembered between reconciles: its rank
//! wait, and its hold after it lost the service (anti-flap).
//!
//! **Rank wait.** A node listed Nth among a failover service's nodes that finds it may take the
//! service waits N-1 times `failover_delay` before it promotes, so that a node listed before it
//! that may take it too (one it cannot see, bridged by a third node) promotes first and DRBD
//! refuses the later one.
//!
//! **Hold after a loss.** A node that gave the service up because its partition lost quorum
//! does not take it back at once when quorum returns: it holds off for `failover_delay` × 2^N
//! (N: its losses in a row, ±20 % jitter, at most [`HOLD_MAX`]), so that a link that comes and
//! goes does not start and stop the whole stack each time, and a node listed after it that kept
//! quorum gets the service meanwhile. Losses in a row are forgotten after [`FORGET_AFTER`]
//! without one. (A failed start backs off in the scheduler, as every failure does.)
//!
//! Neither wait is a sleep inside a reconcile: a reconcile that slept would promote, after its
//! sleep, from the manifest it started with, although a commit (`state: down`, a changed
//! `nodes:`) may have arrived meanwhile. Instead the reconcile says "look again after the rest
//! of the wait" and ends; the next one, with the manifests then in force and a fresh
//! observation, promotes if the node still may. This memory is what lets it know how long the
//! node has waited.
//!
//! Guarantees:
//! - a node promotes only after it was found free to take the service, at the same rank, in
//!   reconciles spanning at least the whole rank wait, the last of them the one that promotes;
//! - anything else in between (standing by, giving up, another rank, a stopped service) starts
//!   the count again, and so does a count left unlooked at for long past its end (the node was
//!   busy or the service unreconciled: what it saw then is too old to act on now);
//! - a node that lost the service to a quorum loss does not promote it again before its hold
//!   ends, however often it is looked at.
//!
//! The memory is the process's: the daemon keeps it for its life; each `reconcile --once` run
//! starts without one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use converge_core::plan::placement::{Decision, GiveUp};
use tokio::time::Instant;

/// How long past its end a count still holds; later, the count starts again.
const STALE_AFTER: Duration = Duration::from_secs(5);
/// The longest hold after a loss.
pub const HOLD_MAX: Duration = Duration::from_secs(60);
/// Losses further apart than this are not "in a row".
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    rank: usize,
    since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loss {
    /// Losses in a row.
    streak: u32,
    /// When the last one began.
    at: Instant,
    /// No promotion before this.
    until: Instant,
    /// The last plan gave the service up (the same loss goes on).
    giving_up: bool,
    /// The hold was said in the log.
    said: bool,
}

#[derive(Debug, Default)]
struct Memory {
    count: Option<Count>,
    loss: Option<Loss>,
}

/// Per service: since when this node has been free to take it (and at which rank), and when it
/// last lost it.
#[derive(Debug, Default)]
pub struct TakeWait {
    services: Mutex<HashMap<String, Memory>>,
}

/// Why a node waits before it takes a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its rank: nodes listed before it go first.
    Rank,
    /// It lost the service (`streak` times in a row) and holds off for `hold` in all.
    Lost { streak: u32, hold: Duration },
}

/// What [`TakeWait::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Every wait has passed: promote now.
    Over,
    /// Look again after this long. `first`: this wait was not said before (log it).
    Left {
        left: Duration,
        why: Why,
        first: bool,
    },
}

/// The hold after the `streak`th loss in a row: `base` × 2^streak, ±20 % by `seed`, at most
/// [`HOLD_MAX`].
pub fn hold(streak: u32, base: Duration, seed: u64) -> Duration {
    let doubled = base.saturating_mul(1u32 << streak.clamp(1, 16));
    let factor = 800 + (seed % 401);
    doubled.mul_f64(factor as f64 / 1000.0).min(HOLD_MAX)
}

/// A jitter seed for [`TakeWait::planned`]: differs between services and between moments.
pub fn seed(service: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    service.hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        .hash(&mut h);
    h.finish()
}

impl TakeWait {
    fn with<T>(&self, service: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut services = self
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(services.entry(service.to_string()).or_default())
    }

    /// This node is free to take `service` at `rank`, which asks for `wait` in all: how much of
    /// it, or of a hold after a loss, is left at `now`. Starts the rank count if none runs for
    /// that rank.
    pub fn check(&self, service: &str, rank: usize, wait: Duration, now: Instant) -> Wait {
        self.with(service, |memory| {
            let (rank_left, counting_from_now) = if wait.is_zero() {
                (Duration::ZERO, false)
            } else {
                let fresh = Count { rank, since: now };
                let count = memory.count.get_or_insert(fresh);
                let elapsed = now.saturating_duration_since(count.since);
                if count.rank != rank || elapsed > wait + STALE_AFTER {
                    *count = fresh;
                }
                let elapsed = now.saturating_duration_since(count.since);
                (wait.saturating_sub(elapsed), count.since == now)
            };
            let held = memory.loss.as_mut().filter(|loss| loss.until > now);
            match held {
                Some(loss) if loss.until - now >= rank_left => {
                    let first = !loss.said;
                    loss.said = true;
                    Wait::Left {
                        left: loss.until - now,
                        why: Why::Lost {
                            streak: loss.streak,
                            hold: loss.until - loss.at,
                        },
                        first,
                    }
                }
                _ if rank_left.is_zero() => {
                    memory.count = None;
                    Wait::Over
                }
                _ => Wait::Left {
                    left: rank_left,
                    why: Why::Rank,
                    first: counting_from_now,
                },
            }
        })
    }

    /// A plan of `service` was made at `now` with `placement`: unless it takes the service here,
    /// any rank count ends (it is counted only across plans that all take it); one that gives
    /// the service up on a quorum loss starts a hold (`base` and `seed` as [`hold`] takes them),
    /// once per loss.
    pub fn planned(
        &self,
        service: &str,
        placement: Option<&Decision>,
        now: Instant,
        base: Duration,
        seed: u64,
    ) {
        self.with(service, |memory| {
            if !matches!(placement, Some(Decision::Take { .. })) {
                memory.count = None;
            }
            // Frozen on the loss, it is lost too if DRBD then demotes this node.
            let losing = matches!(
                placement,
                Some(Decision::GiveUp(GiveUp::QuorumLost) | Decision::Freeze)
            );
            match (&mut memory.loss, losing) {
                (Some(loss), true) if loss.giving_up => {}
                (loss, true) => {
                    let streak = match loss {
                        Some(last) if now.saturating_duration_since(last.at) <= FORGET_AFTER => {
                            last.streak.saturating_add(1)
                        }
                        _ => 1,
                    };
                    *loss = Some(Loss {
                        streak,
                        at: now,
                        until: now + hold(streak, base, seed),
                        giving_up: true,
                        said: false,
                    });
                }
                (Some(loss), false) => loss.giving_up = false,
                (None, false) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    /// The jitter seed that gives the base hold exactly (factor 1.0).
    const EXACT: u64 = 200;

    fn left(left: Duration, first: bool) -> Wait {
        Wait::Left {
            left,
            why: Why::Rank,
            first,
        }
    }

    fn lost(waits: &TakeWait, service: &str, now: Instant) {
        waits.planned(
            service,
            Some(&Decision::GiveUp(GiveUp::QuorumLost)),
            now,
            S,
            EXACT,
        );
    }

    fn stands_by(waits: &TakeWait, service: &str, now: Instant) {
        waits.planned(service, None, now, S, EXACT);
    }

    #[test]
    fn the_first_look_starts_the_count_and_the_whole_wait_is_left() {
        let waits = TakeWait::default();
        assert_eq!(waits.check("web", 1, S, Instant::now()), left(S, true));
    }

    #[test]
    fn looks_within_the_wait_see_what_is_left_and_the_end_promotes() {
        let waits = TakeWait::default();
        let t0 = Instant::now();
        waits.check("web", 1, S, t0);
        assert_eq!(
            waits.check("web", 1, S, t0 + Duration::from_millis(300)),
            left(Duration::from_millis(700), false)
        );
        assert_eq!(waits.check("web", 1, S, t0 + S), Wait::Over);
    }

    #[test]
    fn no_wait_is_over_at_once() {
        let waits = TakeWait::default();
        assert_eq!(
            waits.check("web", 0, Duration::ZERO, Instant::now()),
            Wait::Over
        );
    }

    #[test]
    fn a_plan_that_does_not_take_the_service_ends_the_count() {
        let waits = TakeWait::default();
        let t0 = Instant::now();
        waits.check("web", 1, S, t0);
        waits.planned("web", Some(&Decision::Take { rank: 1 }), t0, S, EXACT);
        assert_eq!(waits.check("web", 1, S, t0 + S), Wait::Over, "still taking");
        waits.check("db", 1, S, t0);
        stands_by(&waits, "db", t0);
        assert_eq!(waits.check("db", 1, S, t0 + S), left(S, true));
    }

    #[test]
    fn another_rank_starts_the_count_again() {
        let waits = TakeWait::default();
        let t0 = Instant::now();
        waits.check("web", 2, 2 * S, t0);
        assert_eq!(waits.check("web", 1, S, t0 + S), left(S, true));
    }

    #[test]
    fn a_count_long_past_its_end_is_stale_and_starts_again() {
        let waits = TakeWait::default();
        let t0 = Instant::now();
        waits.check("web", 1, S, t0);
        let later = t0 + S + STALE_AFTER + Duration::from_millis(1);
        assert_eq!(waits.check("web", 1, S, later), left(S, true));
    }

    #[test]
    fn services_count_apart() {
        let waits = TakeWait::default();
        let t0 = Instant::now();
        waits.check("web", 1, S, t0);
        assert_eq!(waits.check("db", 1, S, t0 + S), left(S, true));
        assert_eq!(waits.check("web", 1, S, t0 + S), Wait::Over);
    }

    #[test]
    fn a_node_that_lost_the_service_holds_off_before_it_takes_it_back() {
        let waits = TakeWait::default();
        let t0 = Instant::now();
        lost(&waits, "web", t0);
        // Many plans of the same loss: one loss.
        lost(&waits, "web", t0 + S);
        stands_by(&waits, "web", t0 + S);
        // Quorum back: the first listed node (no rank wait) still holds off 2 s from the loss.
        let back = t0 + Duration::from_millis(1500);
        assert_eq!(
            waits.check("web", 0, Duration::ZERO, back),
            Wait::Left {
                left: Duration::from_millis(500),
                why: Why::Lost {
                    streak: 1,
                    hold: 2 * S
                },
                first: true
            }
        );
        let Wait::Left { first, .. } = waits.check("web", 0, Duration::ZERO, back) else {
            panic!("still held");
        };
        assert!(!first, "said once");
        assert_eq!(
            waits.check("web", 0, Duration::ZERO, t0 + 2 * S),
            Wait::Over
        );
    }

    #[test]
    fn losses_in_a_row_double_the_hold_and_are_forgotten_after_a_quiet_while() {
        let waits = TakeWait::default();
        let mut t = Instant::now();
        for (streak, expected) in [(1, 2), (2, 4), (3, 8)] {
            lost(&waits, "web", t);
            stands_by(&waits, "web", t);
            match waits.check("web", 0, Duration::ZERO, t) {
                Wait::Left {
                    why: Why::Lost { streak: s, hold },
                    ..
                } => {
                    assert_eq!((s, hold), (streak, Duration::from_secs(expected)));
                }
                other => panic!("{other:?}"),
            }
            t += Duration::from_secs(expected);
        }
        t += FORGET_AFTER + S;
        lost(&waits, "web", t);
        let Wait::Left {
            why: Why::Lost { streak, .. },
            ..
        } = waits.check("web", 0, Duration::ZERO, t)
        else {
            panic!("held");
        };
        assert_eq!(streak, 1, "forgotten");
    }

    #[test]
    fn the_longer_of_the_rank_wait_and_the_hold_is_waited() {
        let waits = TakeWait::default();
        let t0 = Instant::now();
        lost(&waits, "web", t0);
        stands_by(&waits, "web", t0);
        // Rank 2 at 3 s, hold 2 s: the rank wait is the longer.
        assert_eq!(waits.check("web", 2, 3 * S, t0), left(3 * S, true));
        assert_eq!(waits.check("web", 2, 3 * S, t0 + 3 * S), Wait::Over);
    }

    #[test]
    fn holds_are_jittered_and_bounded() {
        for seed in 0..1000 {
            let h = hold(1, S, seed);
            assert!(h >= Duration::from_millis(1600) && h <= Duration::from_millis(2400));
            assert!(hold(30, S, seed) <= HOLD_MAX);
        }
        assert_ne!(hold(1, S, 0), hold(1, S, 400), "jitter");
    }
}
