//! OpenVZ: `vzctl status CTID` for one container, `vzlist -a -H -o ctid,status` for all.

use std::collections::BTreeMap;

use thiserror::Error;

use super::ContainerState;

/// One `vzctl status` line: `CTID 101 exist mounted running [suspended]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VzStatus {
    pub ctid: String,
    pub exists: bool,
    pub mounted: bool,
    pub running: bool,
    /// A checkpoint dump exists (left by `vzctl suspend`).
    pub suspended: bool,
}

impl VzStatus {
    /// Running wins over suspended: vzctl prints `suspended` whenever a dump file exists
    /// (some versions even for a running container), so only a container that is not running
    /// is really waiting to be resumed.
    pub fn state(&self) -> ContainerState {
        if !self.exists {
            ContainerState::Absent
        } else if self.running {
            ContainerState::Running
        } else if self.suspended {
            ContainerState::Frozen
        } else if self.mounted {
            ContainerState::Mounted
        } else {
            ContainerState::Stopped
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VzError {
    #[error("vzctl status: no \"CTID …\" status line in {text:?}")]
    NoStatus { text: String },
    #[error("vzctl status line {line}: unrecognised status line {text:?} ({why})")]
    BadStatus {
        line: usize,
        text: String,
        why: String,
    },
    #[error("vzctl status line {line}: a second status line {text:?}")]
    SecondStatus { line: usize, text: String },
    #[error("vzlist line {line}: unrecognised line {text:?} ({why})")]
    BadVzlist {
        line: usize,
        text: String,
        why: String,
    },
    #[error("vzlist line {line}: container {ctid} listed a second time")]
    DuplicateCtid { line: usize, ctid: String },
}

/// Lines not starting with `CTID`/`VEID` (`VEID` is the older vzctl's spelling) are skipped,
/// so a warning printed before the status does not hide it; exactly one status line is
/// required.
pub fn parse_status(text: &str) -> Result<VzStatus, VzError> {
    let mut found: Option<VzStatus> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let mut tokens = line.split_whitespace();
        if !matches!(tokens.next(), Some("CTID" | "VEID")) {
            continue;
        }
        if found.is_some() {
            return Err(VzError::SecondStatus {
                line: n,
                text: line.to_string(),
            });
        }
        let bad = |why: String| VzError::BadStatus {
            line: n,
            text: line.to_string(),
            why,
        };
        let ctid = tokens.next().ok_or_else(|| bad("no container id".into()))?;
        let mut word = |what: &str, yes: &str, no: &str| -> Result<bool, VzError> {
            match tokens.next() {
                Some(t) if t == yes => Ok(true),
                Some(t) if t == no => Ok(false),
                Some(t) => Err(bad(format!("expected {yes:?} or {no:?}, found {t:?}"))),
                None => Err(bad(format!("no {what} field"))),
            }
        };
        let exists = word("existence", "exist", "deleted")?;
        let mounted = word("mount", "mounted", "unmounted")?;
        let running = word("run", "running", "down")?;
        let suspended = match tokens.next() {
            None => false,
            Some("suspended") => true,
            Some(t) => return Err(bad(format!("unexpected field {t:?}"))),
        };
        if let Some(t) = tokens.next() {
            return Err(bad(format!("unexpected field {t:?}")));
        }
        found = Some(VzStatus {
            ctid: ctid.to_string(),
            exists,
            mounted,
            running,
            suspended,
        });
    }
    found.ok_or_else(|| VzError::NoStatus {
        text: text.to_string(),
    })
}

/// Empty output is an empty map (no containers on this node).
pub fn parse_vzlist(text: &str) -> Result<BTreeMap<String, ContainerState>, VzError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let bad = |why: String| VzError::BadVzlist {
            line: n,
            text: line.to_string(),
            why,
        };
        let mut tokens = line.split_whitespace();
        let Some(ctid) = tokens.next() else {
            continue;
        };
        let status = tokens
            .next()
            .ok_or_else(|| bad("no status after the container id".into()))?;
        if let Some(t) = tokens.next() {
            return Err(bad(format!("unexpected field {t:?}")));
        }
        let state = match status {
            "running" => ContainerState::Running,
            "stopped" => ContainerState::Stopped,
            "mounted" => ContainerState::Mounted,
            "suspended" => ContainerState::Frozen,
            other => return Err(bad(format!("unknown status {other:?}"))),
        };
        if out.insert(ctid.to_string(), state).is_some() {
            return Err(VzError::DuplicateCtid {
                line: n,
                ctid: ctid.to_string(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(text: &str) -> ContainerState {
        parse_status(text).unwrap().state()
    }

    #[test]
    fn exist_mounted_running() {
        let s = parse_status("CTID 101 exist mounted running\n").unwrap();
        assert_eq!(
            s,
            VzStatus {
                ctid: "101".into(),
                exists: true,
                mounted: true,
                running: true,
                suspended: false,
            }
        );
        assert_eq!(s.state(), ContainerState::Running);
    }

    #[test]
    fn exist_unmounted_down() {
        assert_eq!(
            state("CTID 101 exist unmounted down\n"),
            ContainerState::Stopped
        );
    }

    #[test]
    fn deleted() {
        let s = parse_status("CTID 101 deleted unmounted down\n").unwrap();
        assert!(!s.exists);
        assert_eq!(s.state(), ContainerState::Absent);
    }

    #[test]
    fn exist_mounted_down() {
        assert_eq!(
            state("CTID 101 exist mounted down\n"),
            ContainerState::Mounted
        );
    }

    #[test]
    fn suspended() {
        let s = parse_status("CTID 101 exist mounted running suspended\n").unwrap();
        assert!(s.suspended && s.running);
        assert_eq!(s.state(), ContainerState::Running);
        assert_eq!(
            state("CTID 101 exist unmounted down suspended\n"),
            ContainerState::Frozen
        );
    }

    #[test]
    fn veid_prefix() {
        let s = parse_status("VEID 101 exist mounted running\n").unwrap();
        assert_eq!(s.ctid, "101");
        assert_eq!(s.state(), ContainerState::Running);
    }

    #[test]
    fn warning_before_status_is_skipped() {
        assert_eq!(
            state("Warning: something odd\nCTID 7 exist unmounted down\n"),
            ContainerState::Stopped
        );
    }

    #[test]
    fn status_errors() {
        assert_eq!(
            parse_status("CTID 101 exist mounted sleeping\n")
                .unwrap_err()
                .to_string(),
            "vzctl status line 1: unrecognised status line \"CTID 101 exist mounted sleeping\" \
             (expected \"running\" or \"down\", found \"sleeping\")"
        );
        for text in [
            "",
            "\n",
            "garbage",
            "CTID",
            "CTID 101",
            "CTID 101 exist",
            "CTID 101 exist mounted",
            "CTID 101 exist mounted running suspended extra",
            "CTID 101 exist mounted running paused",
            "CTID 101 exists mounted running",
            "CTID 101 exist mounted running\nCTID 102 exist mounted running",
            "\0\u{fffd}",
        ] {
            assert!(parse_status(text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn vzlist_all_states() {
        let text =
            "       101 running\n       102 stopped\n       103 mounted\n       104 suspended\n";
        let m = parse_vzlist(text).unwrap();
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [
                ("101".to_string(), ContainerState::Running),
                ("102".to_string(), ContainerState::Stopped),
                ("103".to_string(), ContainerState::Mounted),
                ("104".to_string(), ContainerState::Frozen),
            ]
        );
    }

    #[test]
    fn vzlist_empty() {
        assert!(parse_vzlist("").unwrap().is_empty());
        assert!(parse_vzlist("\n  \n").unwrap().is_empty());
    }

    #[test]
    fn vzlist_errors() {
        assert_eq!(
            parse_vzlist("       101 running\n       105 paused\n")
                .unwrap_err()
                .to_string(),
            "vzlist line 2: unrecognised line \"       105 paused\" (unknown status \"paused\")"
        );
        assert_eq!(
            parse_vzlist("101 running\n101 stopped\n")
                .unwrap_err()
                .to_string(),
            "vzlist line 2: container 101 listed a second time"
        );
        for text in ["       101", "101 running now", "CTID STATUS\n", "\0"] {
            assert!(parse_vzlist(text).is_err(), "accepted {text:?}");
        }
    }
}
