//! Probes: the narrow way the act layer looks at the node right before or while acting. A plan
//! is made from an observation that may be seconds old; a driver that must re-check (the peers'
//! roles before `primary`, a container's state while waiting for it) asks here, and never runs
//! a listing program or parses its output itself.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::{Listing, Observer};
use crate::exec::{self, ExecError, Output};
use crate::secure;
use converge_core::manifest::{AppCommands, ContainerKind, ResourceId, Service, Spec};
use converge_core::observe::drbd::{ConnectionState, PeerHold, PromoteGuard, Quorum, Role};
use converge_core::observe::drbdadm_role::{self, RoleReport};
use converge_core::observe::{ContainerState, drbdsetup_status, lxc, vz};
use converge_core::shell::shell_line;

/// Probes run often while waiting; each must answer quickly.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// `drbdadm role` may wait for a state change in progress; bound it.
const DRBD_PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// What a probe may print, all of which is parsed: it asks about one resource or container
/// (a few KB at most).
const PROBE_OUTPUT_MAX: usize = 1024 * 1024;

/// A probe that could not tell.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The program ran and failed.
    #[error("{command} {end}: {last_line}")]
    Failed {
        command: String,
        end: String,
        last_line: String,
    },
    /// The program's answer does not say.
    #[error("{command}: {message}")]
    Unreadable { command: String, message: String },
}

impl ProbeError {
    fn failed(argv: &[String], out: &Output) -> ProbeError {
        ProbeError::Failed {
            command: shell_line(argv),
            end: out.describe_end(),
            last_line: out.last_line(),
        }
    }

    fn unreadable(argv: &[String], message: impl Into<String>) -> ProbeError {
        ProbeError::Unreadable {
            command: shell_line(argv),
            message: message.into(),
        }
    }
}

/// A DRBD resource's roles, read fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrbdRoles {
    Up {
        local: Role,
        /// What keeps this node from promoting under the guard asked for
        /// (`DrbdResource::promote_hold`).
        hold: Option<PeerHold>,
    },
    /// Defined, but not up on this node.
    NotUp,
    /// Not in this host's DRBD configuration.
    NotDefined,
}

/// Where a container's LXC log ended before a start, so a failure shows only that start's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMark {
    /// `None`: the container keeps no log converge can find.
    pub path: Option<PathBuf>,
    pub offset: u64,
}

/// A log can be huge after months of DEBUG: only its end is read.
const TAIL_BYTES: u64 = 64 * 1024;

/// What an LXC log gained since a mark: its ERROR lines (else its last lines), and the first
/// error's message, usually the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    pub lines: Vec<String>,
    pub cause: Option<String>,
}

impl LogMark {
    /// What the log gained since the mark (its last [`TAIL_BYTES`] at most; from the start
    /// when the log shrank, rotated). `None` when there is no log.
    pub fn tail(&self) -> Option<std::io::Result<LogTail>> {
        self.path.as_deref().map(|path| {
            read_since(path, self.offset).map(|text| {
                let (lines, cause) = lxc::summarize(&text);
                LogTail { lines, cause }
            })
        })
    }
}

fn read_since(path: &Path, mark: u64) -> std::io::Result<String> {
    // Opened without blocking, and only a regular file is read: a FIFO or a device named as
    // the log (`lxc.log.file`) would never end.
    let mut file = secure::open_input(path).map_err(std::io::Error::other)?;
    let meta = file.metadata()?;
    if let Some(kind) = converge_core::fsutil::not_regular(meta.file_type()) {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file (it is {kind})",
            path.display()
        )));
    }
    let len = meta.len();
    let from = if len < mark { 0 } else { mark };
    let from = from.max(len.saturating_sub(TAIL_BYTES));
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    // The log may grow while it is read (the container's monitor still writes): only the
    // tail that was there is read.
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Observer {
    /// The local role of `res` and whether a peer is Primary, read now: `drbdadm role`, and on
    /// DRBD 9 (where `role` shows only the local role) `drbdsetup status --json`.
    pub async fn drbd_roles(
        &self,
        res: &str,
        guard: PromoteGuard,
    ) -> Result<DrbdRoles, ProbeError> {
        let commands = &self.config().commands;
        let argv = commands.drbdadm_argv(&["role", res]);
        let out = exec::run_parsed(&argv, DRBD_PROBE_TIMEOUT, PROBE_OUTPUT_MAX).await?;
        let report = drbdadm_role::parse(res, &out.stdout, &out.stderr, out.code.unwrap_or(-1))
            .map_err(|e| ProbeError::unreadable(&argv, e.to_string()))?;
        let (local, peers) = match report {
            RoleReport::Up { local, peers } => (local, peers),
            RoleReport::NotUp => return Ok(DrbdRoles::NotUp),
            RoleReport::NotDefined => return Ok(DrbdRoles::NotDefined),
        };
        if !peers.is_empty() {
            // DRBD 8.x: `role` names the peer's role (`Unknown` while not connected); there is
            // nothing more to read.
            let hold = if guard == PromoteGuard::TwoPrimaries {
                None
            } else if peers.contains(&Role::Primary) {
                Some(PeerHold::Primary { peer: None })
            } else if guard == PromoteGuard::Quorum {
                // DRBD 8 has no quorum to rely on.
                Some(PeerHold::NoQuorum {
                    quorum: Quorum::Unknown,
                })
            } else if peers.contains(&Role::Unknown) {
                Some(PeerHold::Unseen {
                    peer: None,
                    state: ConnectionState::Other("role Unknown".to_string()),
                })
            } else {
                None
            };
            return Ok(DrbdRoles::Up { local, hold });
        }
        let argv = vec![
            commands.drbdsetup.clone(),
            "status".into(),
            res.to_string(),
            "--json".into(),
        ];
        let out = exec::run_parsed(&argv, DRBD_PROBE_TIMEOUT, PROBE_OUTPUT_MAX).await?;
        if !out.success() {
            return Err(ProbeError::failed(&argv, &out));
        }
        let resources = drbdsetup_status::parse_json(&out.stdout)
            .map_err(|e| ProbeError::unreadable(&argv, e.to_string()))?;
        // Not knowing the peers is not the same as knowing none is Primary.
        let resource = resources.get(res).ok_or_else(|| {
            ProbeError::unreadable(&argv, format!("does not list resource {res}"))
        })?;
        Ok(DrbdRoles::Up {
            local,
            hold: resource.promote_hold(guard),
        })
    }

    /// One container's state now, as its tool reports it for that container alone.
    pub async fn container_state(
        &self,
        container: &ContainerKind,
    ) -> Result<ContainerState, ProbeError> {
        let commands = &self.config().commands;
        match container {
            ContainerKind::Vz(ctid) => {
                let argv = vec![commands.vzctl.clone(), "status".into(), ctid.clone()];
                let out = exec::run_parsed(&argv, PROBE_TIMEOUT, PROBE_OUTPUT_MAX).await?;
                // vzctl status exits 0 for existing and deleted containers alike; the text
                // says which.
                vz::parse_status(&out.stdout)
                    .map(|status| status.state())
                    .map_err(|e| ProbeError::unreadable(&argv, e.to_string()))
            }
            ContainerKind::Lxc(name) => {
                let argv = vec![
                    commands.lxc_info.clone(),
                    "-n".into(),
                    name.clone(),
                    "-s".into(),
                ];
                let out = exec::run_parsed(&argv, PROBE_TIMEOUT, PROBE_OUTPUT_MAX).await?;
                if !out.success() {
                    // A container LXC does not know is absent.
                    if out.stderr.contains("doesn't exist") || out.stderr.contains("does not exist")
                    {
                        return Ok(ContainerState::Absent);
                    }
                    return Err(ProbeError::failed(&argv, &out));
                }
                lxc::parse_info_state(&out.stdout)
                    .map_err(|e| ProbeError::unreadable(&argv, e.to_string()))
            }
        }
    }

    /// The names in an app's scripts directory, listed now (a start or stop must run what is
    /// there, not what was there); `None` when the app has no scripts directory.
    pub async fn app_scripts(&self, service: &Service, rid: ResourceId) -> Option<Vec<String>> {
        let Some(Spec::App(app)) = service.resource(rid).map(|r| &r.spec) else {
            return None;
        };
        let AppCommands::Scripts(dir) = &app.commands else {
            return None;
        };
        let container = service.container().map(|c| &c.kind);
        Some(
            self.script_names(&service.name, rid, dir, container, Listing::Fresh)
                .await,
        )
    }

    /// Where the LXC log of container `name` ends now: its `lxc.log.file` (`lxc-info -c`), else
    /// the packaged default `/var/log/lxc/NAME.log` when it exists (LXC 5 writes no log unless
    /// told).
    pub async fn lxc_log_mark(&self, name: &str) -> LogMark {
        let argv = vec![
            self.config().commands.lxc_info.clone(),
            "-n".into(),
            name.to_string(),
            "-c".into(),
            "lxc.log.file".into(),
        ];
        let configured = match exec::run_parsed(&argv, PROBE_TIMEOUT, PROBE_OUTPUT_MAX).await {
            Ok(out) if out.success() => lxc::parse_config_value(&out.stdout, "lxc.log.file"),
            _ => None,
        };
        let path = configured.map(PathBuf::from).or_else(|| {
            let default = Path::new("/var/log/lxc").join(format!("{name}.log"));
            default.is_file().then_some(default)
        });
        let offset = path
            .as_deref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        LogMark { path, offset }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_start_appended_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web.log");
        std::fs::write(&path, "old failure\n").expect("write");
        let mark = std::fs::metadata(&path).expect("stat").len();
        std::fs::write(&path, "old failure\nnew failure\n").expect("write");
        assert_eq!(read_since(&path, mark).expect("read"), "new failure\n");
        // Rotated (shorter than the mark): all of it.
        std::fs::write(&path, "x\n").expect("write");
        assert_eq!(read_since(&path, mark).expect("read"), "x\n");
        let none = LogMark {
            path: None,
            offset: 0,
        };
        assert!(none.tail().is_none());
        std::fs::write(
            &path,
            "x\nlxc-start web 20261125225843.313 ERROR    start - a.c:f:1 - boom\n",
        )
        .expect("write");
        let mark = LogMark {
            path: Some(path),
            offset: 2,
        };
        let tail = mark.tail().expect("a log").expect("readable");
        assert_eq!(tail.cause.as_deref(), Some("boom"));
        assert_eq!(tail.lines.len(), 1);
    }
}
