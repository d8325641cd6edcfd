//! The daemon's scheduler: which service's reconcile starts when. Pure bookkeeping, no I/O and
//! no clock of its own (the caller passes `now`), so its guarantees are tested here:
//! - never two reconciles of one service at once: a request for a running service makes it run
//!   once more afterwards, and any number of requests meanwhile merge into that one run;
//! - at most `limit` reconciles at once; the others wait, first requested first started;
//! - what happens after a reconcile is what the reconcile said ([`Next`]): wait for the next
//!   request, look again after a set time (any request meanwhile runs at once), or retry after a backoff that grows with consecutive failures (1 s doubling to
//!   5 min, ±20 % jitter so services failing together do not retry in lockstep), reset by any
//!   other result or by a fresh request from the manifests;
//! - once stopping, nothing new starts.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What a reconcile says should happen next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Converged, or blocked: nothing to do until something changes (an event, a resync).
    AwaitChange,
    /// Failed: try again after a backoff.
    Retry,
    /// Look again after this long (a failover node waiting its rank), or sooner if requested.
    RequeueAfter(Duration),
    /// Stopped by a shutdown: nothing more.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Requested, waiting for a free slot.
    Waiting,
    /// `again`: requested while running.
    Running {
        again: bool,
    },
    /// Failed; not started before `until` unless requested afresh.
    Backoff {
        until: Instant,
    },
    /// To be looked at again at `until`, or at the next request if it comes first.
    Requeued {
        until: Instant,
    },
}

#[derive(Debug, Clone, Copy)]
struct State {
    phase: Phase,
    /// Consecutive failures.
    failures: u32,
}

/// What [`Scheduler::finished`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Finished {
    /// Reconciles to start now (this service again, or others that were waiting for a slot).
    pub start: Vec<String>,
    /// When this service failed: how long until its retry (the caller arms a timer and calls
    /// [`Scheduler::due`] then).
    pub retry_in: Option<Duration>,
    /// When this service asked to be looked at again: how long until then (the caller arms a
    /// timer and calls [`Scheduler::due`] then).
    pub requeue_in: Option<Duration>,
}

#[derive(Debug)]
pub struct Scheduler {
    limit: usize,
    running: usize,
    services: HashMap<String, State>,
    waiting: VecDeque<String>,
    stopping: bool,
}

impl Scheduler {
    /// At most `limit` (at least 1) reconciles at once.
    pub fn new(limit: usize) -> Scheduler {
        Scheduler {
            limit: limit.max(1),
            running: 0,
            services: HashMap::new(),
            waiting: VecDeque::new(),
            stopping: false,
        }
    }

    fn state(&mut self, name: &str) -> &mut State {
        self.services.entry(name.to_string()).or_insert(State {
            phase: Phase::Idle,
            failures: 0,
        })
    }

    /// Something may have changed for `name`. Returns the reconciles to start now.
    pub fn request(&mut self, name: &str, now: Instant) -> Vec<String> {
        if self.stopping {
            return Vec::new();
        }
        let state = self.state(name);
        match state.phase {
            Phase::Running { .. } => {
                state.phase = Phase::Running { again: true };
                Vec::new()
            }
            Phase::Waiting => Vec::new(),
            Phase::Backoff { until } if until > now => Vec::new(),
            Phase::Idle | Phase::Backoff { .. } | Phase::Requeued { .. } => {
                state.phase = Phase::Waiting;
                self.waiting.push_back(name.to_string());
                self.fill()
            }
        }
    }

    /// A new request from the manifests: whatever the backoff said, it is tried now.
    pub fn request_afresh(&mut self, name: &str, now: Instant) -> Vec<String> {
        let state = self.state(name);
        state.failures = 0;
        if let Phase::Backoff { .. } = state.phase {
            state.phase = Phase::Idle;
        }
        self.request(name, now)
    }

    /// The reconcile of `name` ended and said what next; `jitter` is any random number.
    pub fn finished(&mut self, name: &str, next: Next, now: Instant, jitter: u64) -> Finished {
        let Some(state) = self.services.get_mut(name) else {
            return Finished::default();
        };
        let again = match state.phase {
            Phase::Running { again } => {
                self.running -= 1;
                again
            }
            // Not started by this scheduler: nothing to account for.
            _ => return Finished::default(),
        };
        let mut finished = Finished::default();
        match next {
            Next::Retry => {
                state.failures = state.failures.saturating_add(1);
                let delay = backoff(state.failures, jitter);
                // A request during the failed run waits for the retry too: a failing service
                // is not hammered by events.
                state.phase = Phase::Backoff { until: now + delay };
                finished.retry_in = Some(delay);
            }
            Next::AwaitChange => {
                state.failures = 0;
                state.phase = Phase::Idle;
                if again {
                    finished.start = self.request(name, now);
                }
            }
            Next::RequeueAfter(delay) => {
                state.failures = 0;
                if again {
                    // What it was requested for may change what it waits for: at once.
                    state.phase = Phase::Idle;
                    finished.start = self.request(name, now);
                } else {
                    state.phase = Phase::Requeued { until: now + delay };
                    finished.requeue_in = Some(delay);
                }
            }
            Next::Stop => state.phase = Phase::Idle,
        }
        finished.start.extend(self.fill());
        finished
    }

    /// A timer of `name` (its retry, or its requeue) fired: it runs if it is still waiting for
    /// that time.
    pub fn due(&mut self, name: &str, now: Instant) -> Vec<String> {
        match self.services.get(name).map(|s| s.phase) {
            Some(Phase::Backoff { until } | Phase::Requeued { until }) if until <= now => {
                self.request(name, now)
            }
            _ => Vec::new(),
        }
    }

    /// `name` is gone (its manifest deleted and the service pruned): forget it.
    pub fn forget(&mut self, name: &str) {
        if let Some(state) = self.services.remove(name)
            && let Phase::Running { .. } = state.phase
        {
            self.running -= 1;
        }
        self.waiting.retain(|n| n != name);
    }

    /// Nothing new starts from now on; what runs finishes.
    pub fn stop(&mut self) {
        self.stopping = true;
        for name in std::mem::take(&mut self.waiting) {
            self.state(&name).phase = Phase::Idle;
        }
    }

    pub fn is_running(&self, name: &str) -> bool {
        matches!(
            self.services.get(name).map(|s| s.phase),
            Some(Phase::Running { .. })
        )
    }

    pub fn any_running(&self) -> bool {
        self.running > 0
    }

    /// Consecutive failures of `name`.
    pub fn failures(&self, name: &str) -> u32 {
        self.services.get(name).map_or(0, |s| s.failures)
    }

    /// Starts waiting services while slots are free.
    fn fill(&mut self) -> Vec<String> {
        let mut start = Vec::new();
        while self.running < self.limit && !self.stopping {
            let Some(name) = self.waiting.pop_front() else {
                break;
            };
            let state = self.state(&name);
            if state.phase != Phase::Waiting {
                continue;
            }
            state.phase = Phase::Running { again: false };
            self.running += 1;
            start.push(name);
        }
        start
    }
}

/// The delay before retry `failures` (1-based): 1 s doubling to 5 min, with ±20 % jitter.
pub fn backoff(failures: u32, seed: u64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_FIRST.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
    // seed % 401 → 0..=400 → factor 0.8..=1.2
    let factor = 800 + (seed % 401);
    base.mul_f64(factor as f64 / 1000.0).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn never_two_runs_of_one_service_and_requests_meanwhile_merge_into_one() {
        let now = Instant::now();
        let mut s = Scheduler::new(4);
        assert_eq!(s.request("web", now), names(&["web"]));
        for _ in 0..5 {
            assert_eq!(s.request("web", now), names(&[]), "already running");
        }
        let done = s.finished("web", Next::AwaitChange, now, 0);
        assert_eq!(done.start, names(&["web"]), "once more, once");
        assert!(s.is_running("web"));
        let done = s.finished("web", Next::AwaitChange, now, 0);
        assert_eq!(done, Finished::default(), "nothing asked meanwhile");
        assert!(!s.any_running());
    }

    #[test]
    fn at_most_limit_run_and_the_others_start_in_request_order() {
        let now = Instant::now();
        let mut s = Scheduler::new(2);
        assert_eq!(s.request("a", now), names(&["a"]));
        assert_eq!(s.request("b", now), names(&["b"]));
        assert_eq!(s.request("c", now), names(&[]));
        assert_eq!(s.request("d", now), names(&[]));
        assert_eq!(s.request("c", now), names(&[]), "waiting already");
        assert_eq!(
            s.finished("b", Next::AwaitChange, now, 0).start,
            names(&["c"])
        );
        assert_eq!(
            s.finished("a", Next::AwaitChange, now, 0).start,
            names(&["d"])
        );
        assert!(s.is_running("c") && s.is_running("d"));
        s.finished("c", Next::AwaitChange, now, 0);
        s.finished("d", Next::AwaitChange, now, 0);
        assert!(!s.any_running());
    }

    #[test]
    fn a_failure_waits_for_its_backoff_and_a_success_resets_it() {
        let now = Instant::now();
        let mut s = Scheduler::new(1);
        s.request("web", now);
        let done = s.finished("web", Next::Retry, now, 200);
        assert_eq!(done.retry_in, Some(Duration::from_secs(1)));
        assert_eq!(
            s.request("web", now),
            names(&[]),
            "an event does not cut it short"
        );
        assert_eq!(s.due("web", now), names(&[]), "not due yet");
        let later = now + Duration::from_secs(1);
        assert_eq!(s.due("web", later), names(&["web"]));
        let done = s.finished("web", Next::Retry, later, 200);
        assert_eq!(done.retry_in, Some(Duration::from_secs(2)), "doubled");
        assert_eq!(s.failures("web"), 2);
        let later = later + Duration::from_secs(2);
        s.due("web", later);
        s.finished("web", Next::AwaitChange, later, 0);
        assert_eq!(s.failures("web"), 0);
        assert_eq!(s.request("web", later), names(&["web"]));
    }

    #[test]
    fn a_manifest_change_retries_at_once() {
        let now = Instant::now();
        let mut s = Scheduler::new(1);
        s.request("web", now);
        s.finished("web", Next::Retry, now, 0);
        assert_eq!(s.request_afresh("web", now), names(&["web"]));
        assert_eq!(s.failures("web"), 0);
        // The timer of the cancelled backoff fires later: it starts nothing.
        s.finished("web", Next::AwaitChange, now, 0);
        assert_eq!(s.due("web", now + BACKOFF_MAX), names(&[]));
    }

    #[test]
    fn a_requeue_looks_again_at_its_time_without_holding_a_slot() {
        let now = Instant::now();
        let mut s = Scheduler::new(1);
        s.request("web", now);
        s.request("db", now);
        let done = s.finished("web", Next::RequeueAfter(Duration::from_secs(1)), now, 0);
        assert_eq!(done.requeue_in, Some(Duration::from_secs(1)));
        assert_eq!(done.retry_in, None, "not a failure");
        assert_eq!(done.start, names(&["db"]), "its slot is free meanwhile");
        assert!(!s.is_running("web"));
        s.finished("db", Next::AwaitChange, now, 0);
        assert_eq!(s.due("web", now), names(&[]), "not due yet");
        let later = now + Duration::from_secs(1);
        assert_eq!(s.due("web", later), names(&["web"]));
        s.finished("web", Next::AwaitChange, later, 0);
        assert_eq!(s.due("web", later), names(&[]), "a timer runs it once");
    }

    #[test]
    fn a_request_during_a_requeue_runs_at_once_and_the_timer_then_starts_nothing() {
        let now = Instant::now();
        let mut s = Scheduler::new(1);
        s.request("web", now);
        s.finished("web", Next::RequeueAfter(Duration::from_secs(1)), now, 0);
        assert_eq!(
            s.request("web", now),
            names(&["web"]),
            "a commit or an event meanwhile is looked at now, unlike during a backoff"
        );
        s.finished("web", Next::AwaitChange, now, 0);
        assert_eq!(s.due("web", now + Duration::from_secs(1)), names(&[]));
    }

    #[test]
    fn a_request_while_running_beats_the_requeue() {
        let now = Instant::now();
        let mut s = Scheduler::new(1);
        s.request("web", now);
        s.request("web", now);
        let done = s.finished("web", Next::RequeueAfter(Duration::from_secs(1)), now, 0);
        assert_eq!(done.start, names(&["web"]), "again, at once");
        assert_eq!(done.requeue_in, None);
    }

    #[test]
    fn a_requeue_is_not_a_failure_and_ends_a_backoff_count() {
        let now = Instant::now();
        let mut s = Scheduler::new(1);
        s.request("web", now);
        s.finished("web", Next::Retry, now, 0);
        let later = now + BACKOFF_MAX;
        s.due("web", later);
        s.finished("web", Next::RequeueAfter(Duration::from_secs(1)), later, 0);
        assert_eq!(s.failures("web"), 0);
    }

    #[test]
    fn a_failing_service_does_not_hold_a_slot_while_it_waits() {
        let now = Instant::now();
        let mut s = Scheduler::new(1);
        s.request("bad", now);
        s.request("good", now);
        let done = s.finished("bad", Next::Retry, now, 0);
        assert_eq!(done.start, names(&["good"]));
    }

    #[test]
    fn stopping_starts_nothing_new_and_lets_the_running_finish() {
        let now = Instant::now();
        let mut s = Scheduler::new(1);
        s.request("a", now);
        s.request("b", now);
        s.stop();
        assert_eq!(s.request("c", now), names(&[]));
        assert!(s.any_running());
        let done = s.finished("a", Next::Stop, now, 0);
        assert_eq!(done.start, names(&[]), "b waited and does not start");
        assert!(!s.any_running());
    }

    #[test]
    fn a_forgotten_service_frees_its_slot_and_its_place_in_line() {
        let now = Instant::now();
        let mut s = Scheduler::new(1);
        s.request("a", now);
        s.request("b", now);
        s.forget("b");
        assert_eq!(s.finished("a", Next::AwaitChange, now, 0).start, names(&[]));
        s.request("c", now);
        s.forget("c");
        assert!(!s.any_running());
        assert_eq!(
            s.finished("c", Next::AwaitChange, now, 0),
            Finished::default()
        );
    }

    #[test]
    fn backoff_doubles_to_five_minutes_with_bounded_jitter() {
        for seed in [0, 200, 400, 12345] {
            let first = backoff(1, seed);
            assert!(
                first >= Duration::from_millis(800) && first <= Duration::from_millis(1200),
                "{first:?}"
            );
            let fourth = backoff(4, seed);
            assert!(
                fourth >= Duration::from_millis(6400) && fourth <= Duration::from_millis(9600),
                "{fourth:?}"
            );
            assert!(backoff(30, seed) <= BACKOFF_MAX);
            assert!(backoff(30, seed) >= BACKOFF_MAX.mul_f64(0.8));
        }
    }
}
