//! systemd's notification protocol (sd_notify(3)) for `converge run` under `Type=notify`:
//! READY=1 once every service has been looked at and reconciled (or reached its first retry),
//! STATUS= with a one-line summary kept current, WATCHDOG=1 from the daemon's own loop, and
//! STOPPING=1 when it starts to shut down. Without `NOTIFY_SOCKET` (not started by systemd, or
//! `Type=simple`) nothing is sent.
//!
//! The watchdog is fed from the loop that handles every event, not from a timer task of its
//! own: a loop that stops turning (a deadlock, a blocking call) stops the pings, and systemd
//! restarts converge after `WatchdogSec=`.

use std::time::Duration;

use sd_notify::NotifyState;

use super::view::{DaemonView, ServiceResult};

/// The longest STATUS= line sent: systemctl shows one line.
const STATUS_MAX: usize = 200;

/// What the daemon tells systemd, and what it told it last.
#[derive(Debug, Default)]
pub struct Notifier {
    enabled: bool,
    /// The watchdog's timeout (`WATCHDOG_USEC`), when systemd asks for pings.
    watchdog: Option<Duration>,
    ready: bool,
    status: String,
    /// A failed send is logged once, not at every ping.
    failed: bool,
}

impl Notifier {
    /// From the environment systemd gives a service: `NOTIFY_SOCKET`, `WATCHDOG_USEC` and
    /// `WATCHDOG_PID`.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        Notifier {
            enabled,
            watchdog: sd_notify::watchdog_enabled().filter(|_| enabled),
            ..Notifier::default()
        }
    }

    /// How often to ping the watchdog: half its timeout, as sd_watchdog_enabled(3) advises.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog
            .map(|timeout| (timeout / 2).max(Duration::from_millis(10)))
    }

    pub fn watchdog(&mut self) {
        self.send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// After the view changed: STATUS= when its summary did, READY=1 the first time
    /// [`is_ready`] holds.
    pub fn view(&mut self, view: &DaemonView) {
        if !self.enabled {
            return;
        }
        let status = summary(view);
        if status != self.status {
            self.send(&[NotifyState::Status(&status)]);
            self.status = status;
        }
        if !self.ready && is_ready(view) {
            self.ready = true;
            self.send(&[NotifyState::Ready]);
        }
    }

    fn send(&mut self, state: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        match sd_notify::notify(state) {
            Ok(()) => self.failed = false,
            Err(e) if !self.failed => {
                self.failed = true;
                tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
            }
            Err(_) => {}
        }
    }
}

/// Whether startup is over: every service in force has been looked at and reconciled to a
/// result (a failed start counts: its retry is scheduled), none pending or running.
pub fn is_ready(view: &DaemonView) -> bool {
    view.services
        .iter()
        .all(|s| !matches!(s.result, ServiceResult::Pending | ServiceResult::Running))
}

/// `12 services: 11 converged, 1 blocked (web: peer Primary)`: how many services, then how
/// many of each result, the first service of each kind that is not converged with its reason;
/// manifest errors last. One line, at most [`STATUS_MAX`] characters.
pub fn summary(view: &DaemonView) -> String {
    let mut kinds: Vec<(&'static str, usize, Option<String>)> = Vec::new();
    for s in &view.services {
        let (kind, why) = match &s.result {
            ServiceResult::Converged => ("converged", None),
            ServiceResult::Pending => ("pending", None),
            ServiceResult::Running => ("running", None),
            ServiceResult::Blocked { reason } => ("blocked", Some(reason.as_str())),
            ServiceResult::Waiting { reason } => ("waiting", Some(reason.as_str())),
            ServiceResult::Failed { error, .. } => ("failed", Some(error.as_str())),
            ServiceResult::Interrupted => ("interrupted", None),
            ServiceResult::Stuck { reason } => ("STUCK", Some(reason.as_str())),
            ServiceResult::Orphaned => ("orphaned", None),
        };
        match kinds.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, n, _)) => *n += 1,
            None => kinds.push((kind, 1, why.map(|w| format!("{}: {w}", s.service)))),
        }
    }
    let n = view.services.len();
    let mut line = format!("{n} service{}", if n == 1 { "" } else { "s" });
    let parts: Vec<String> = kinds
        .iter()
        .map(|(kind, count, why)| match why {
            Some(why) => format!("{count} {kind} ({why})"),
            None => format!("{count} {kind}"),
        })
        .collect();
    if !parts.is_empty() {
        line.push_str(": ");
        line.push_str(&parts.join(", "));
    }
    if !view.errors.is_empty() {
        line.push_str(&format!("; {} manifest error(s)", view.errors.len()));
    }
    one_line(&line)
}

/// Control characters become spaces (a reason quoting a program's output may hold a
/// newline, which would end the STATUS= field), and a long line is cut with `…`.
fn one_line(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= STATUS_MAX {
        return clean;
    }
    let mut cut: String = clean.chars().take(STATUS_MAX - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::view::ServiceView;

    fn service(name: &str, result: ServiceResult) -> ServiceView {
        ServiceView {
            service: name.into(),
            result,
            ..ServiceView::default()
        }
    }

    #[test]
    fn the_summary_counts_each_result_and_names_the_first_of_each_kind() {
        let mut view = DaemonView {
            services: vec![
                service("a", ServiceResult::Converged),
                service("b", ServiceResult::Converged),
                service(
                    "web",
                    ServiceResult::Blocked {
                        reason: "peer Primary".into(),
                    },
                ),
                service(
                    "z",
                    ServiceResult::Blocked {
                        reason: "other".into(),
                    },
                ),
            ],
            ..DaemonView::default()
        };
        assert_eq!(
            summary(&view),
            "4 services: 2 converged, 2 blocked (web: peer Primary)"
        );
        view.errors.push("/m/x.yaml:1:1: bad".into());
        view.services.truncate(1);
        assert_eq!(
            summary(&view),
            "1 service: 1 converged; 1 manifest error(s)"
        );
        view.services.clear();
        view.errors.clear();
        assert_eq!(summary(&view), "0 services");
    }

    #[test]
    fn the_summary_is_one_bounded_line() {
        let view = DaemonView {
            services: vec![service(
                "web",
                ServiceResult::Failed {
                    error: format!("exit 1:\nline two{}", "x".repeat(500)),
                    rolled_back: true,
                },
            )],
            ..DaemonView::default()
        };
        let line = summary(&view);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(line.chars().count(), STATUS_MAX);
        assert!(
            line.starts_with("1 service: 1 failed (web: exit 1: line two"),
            "{line}"
        );
        assert!(line.ends_with('…'));
    }

    #[test]
    fn ready_once_nothing_is_pending_or_running() {
        let mut view = DaemonView {
            services: vec![
                service("a", ServiceResult::Converged),
                service("b", ServiceResult::Pending),
            ],
            ..DaemonView::default()
        };
        assert!(!is_ready(&view));
        view.services[1].result = ServiceResult::Running;
        assert!(!is_ready(&view));
        view.services[1].result = ServiceResult::Failed {
            error: "e".into(),
            rolled_back: false,
        };
        assert!(is_ready(&view), "a failed start has its retry scheduled");
        assert!(is_ready(&DaemonView::default()), "no service: ready");
    }
}
