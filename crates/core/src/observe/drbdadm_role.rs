//! `drbdadm role RES`: one resource's role, whatever the DRBD version.
//!
//! DRBD 8.x prints `Local/Peer` once per volume; DRBD 9 prints the local role once. Whether a
//! resource is down or unknown is decided from the messages, not the exit code: drbdadm uses
//! exit code 10 both for "not up" and for "not in the config", and for real failures too.

use thiserror::Error;

use super::drbd::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleReport {
    Up {
        local: Role,
        /// The peer's role as DRBD 8.x reports it (one peer); empty on DRBD 9, which prints
        /// only the local role.
        peers: Vec<Role>,
    },
    /// Defined in the config but not up (`RES: Unknown resource`).
    NotUp,
    /// Not in the config for this host.
    NotDefined,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RoleError {
    #[error("drbdadm role {res}: exit code {code}: {last}")]
    Failed {
        res: String,
        code: i32,
        last: String,
    },
    #[error("drbdadm role {res}: output line {line}: unrecognised role {text:?}")]
    Unrecognised {
        res: String,
        line: usize,
        text: String,
    },
    #[error("drbdadm role {res}: volumes disagree: {roles}")]
    Inconsistent { res: String, roles: String },
    #[error("drbdadm role {res}: exit code 0 but no role printed")]
    NoOutput { res: String },
}

pub fn parse(
    res: &str,
    stdout: &str,
    stderr: &str,
    exit_code: i32,
) -> Result<RoleReport, RoleError> {
    let messages: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_noise(l))
        .collect();

    // drbdadm checks the config before the kernel, so "not defined" wins if both appear.
    let not_defined = format!("'{res}' not defined in your config");
    if messages.iter().any(|l| l.contains(&not_defined)) {
        return Ok(RoleReport::NotDefined);
    }
    let unknown = format!("{res}: Unknown resource");
    // 8.4 asks by minor and so reports an unallocated minor instead.
    if messages
        .iter()
        .any(|l| l.contains(&unknown) || l.contains("Device minor not allocated"))
    {
        return Ok(RoleReport::NotUp);
    }
    if exit_code != 0 {
        return Err(RoleError::Failed {
            res: res.to_string(),
            code: exit_code,
            last: messages
                .last()
                .map_or_else(|| "(nothing on stderr)".to_string(), |l| l.to_string()),
        });
    }
    parse_roles(res, stdout)
}

/// drbdadm 9 runs modinfo to compare module and utils versions; on hosts without it the shell's
/// complaint lands on stderr and says nothing about the resource.
fn is_noise(line: &str) -> bool {
    line.contains("modinfo")
}

fn parse_roles(res: &str, stdout: &str) -> Result<RoleReport, RoleError> {
    let lines: Vec<(usize, &str)> = stdout
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Err(RoleError::NoOutput {
            res: res.to_string(),
        });
    }
    // drbdsetup 8.3 answers `Unconfigured` (exit 0) for a minor that is not set up.
    if lines.iter().all(|(_, l)| *l == "Unconfigured") {
        return Ok(RoleReport::NotUp);
    }

    let unrecognised = |line: usize, text: &str| RoleError::Unrecognised {
        res: res.to_string(),
        line,
        text: text.to_string(),
    };
    let role = |line: usize, text: &str| match Role::parse(text) {
        // An unknown spelling here is garbage rather than a newer DRBD: roles never changed.
        Role::Other(_) => Err(unrecognised(line, text)),
        r => Ok(r),
    };
    let mut pairs: Vec<(Role, Option<Role>)> = Vec::new();
    for &(n, text) in &lines {
        let pair = match text.split_once('/') {
            Some((local, peer)) => (role(n, local)?, Some(role(n, peer)?)),
            None => (role(n, text)?, None),
        };
        pairs.push(pair);
    }

    // Volumes of one resource share a role in DRBD 8.4 and 9. Answers that differ (or a mix of
    // 8.x and 9.x shapes) mean the resource is mid-transition or not what we think it is;
    // picking one would let the planner mount a half-promoted resource or promote beside a
    // Primary, so the disagreement is reported as an error and this pass waits instead.
    let (first_local, first_peer) = pairs.first().cloned().ok_or_else(|| RoleError::NoOutput {
        res: res.to_string(),
    })?;
    if pairs
        .iter()
        .any(|(l, p)| *l != first_local || *p != first_peer)
    {
        return Err(RoleError::Inconsistent {
            res: res.to_string(),
            roles: lines.iter().map(|(_, l)| *l).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(RoleReport::Up {
        local: first_local,
        peers: first_peer.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(local: Role, peers: &[Role]) -> Result<RoleReport, RoleError> {
        Ok(RoleReport::Up {
            local,
            peers: peers.to_vec(),
        })
    }

    #[test]
    fn drbd8_single_volume() {
        assert_eq!(
            parse("r0", "Primary/Secondary\n", "", 0),
            up(Role::Primary, &[Role::Secondary])
        );
        assert_eq!(
            parse("r0", "Secondary/Unknown\n", "", 0),
            up(Role::Secondary, &[Role::Unknown])
        );
    }

    #[test]
    fn drbd8_volumes_that_agree() {
        assert_eq!(
            parse("r0", "Secondary/Primary\nSecondary/Primary\n", "", 0),
            up(Role::Secondary, &[Role::Primary])
        );
    }

    #[test]
    fn drbd8_volumes_that_disagree() {
        let e = parse("r0", "Primary/Secondary\nSecondary/Secondary\n", "", 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "drbdadm role r0: volumes disagree: Primary/Secondary, Secondary/Secondary"
        );
        assert!(matches!(
            parse("r0", "Primary/Secondary\nPrimary/Unknown\n", "", 0),
            Err(RoleError::Inconsistent { .. })
        ));
    }

    #[test]
    fn drbd9_roles() {
        assert_eq!(parse("r0", "Primary\n", "", 0), up(Role::Primary, &[]));
        assert_eq!(parse("r0", "Secondary\n", "", 0), up(Role::Secondary, &[]));
        assert_eq!(parse("r0", "Unknown\n", "", 0), up(Role::Unknown, &[]));
    }

    #[test]
    fn mixed_shapes_are_inconsistent() {
        assert!(matches!(
            parse("r0", "Primary\nPrimary/Secondary\n", "", 0),
            Err(RoleError::Inconsistent { .. })
        ));
    }

    #[test]
    fn not_up() {
        let stderr =
            "r0: Unknown resource\nCommand 'drbdsetup role r0' terminated with exit code 10\n";
        assert_eq!(parse("r0", "", stderr, 10), Ok(RoleReport::NotUp));
    }

    #[test]
    fn not_up_with_modinfo_noise() {
        let stderr = "/bin/sh: 1: modinfo: not found\nr0: Unknown resource\nCommand 'drbdsetup role r0' terminated with exit code 10\n";
        assert_eq!(parse("r0", "", stderr, 10), Ok(RoleReport::NotUp));
    }

    #[test]
    fn not_up_on_84() {
        let stderr = "0: Failure: (127) Device minor not allocated\nadditional info from kernel:\nunknown minor\nCommand 'drbdsetup-84 role 0' terminated with exit code 10\n";
        assert_eq!(parse("r0", "", stderr, 10), Ok(RoleReport::NotUp));
        assert_eq!(parse("r0", "Unconfigured\n", "", 0), Ok(RoleReport::NotUp));
    }

    #[test]
    fn not_defined() {
        let stderr = "'r9' not defined in your config (for this host).\n";
        assert_eq!(parse("r9", "", stderr, 10), Ok(RoleReport::NotDefined));
        // Decided by the text, whatever the code.
        assert_eq!(parse("r9", "", stderr, 1), Ok(RoleReport::NotDefined));
        assert_eq!(parse("r9", "", stderr, 0), Ok(RoleReport::NotDefined));
    }

    #[test]
    fn another_resource_not_defined_is_a_failure() {
        let e = parse(
            "r0",
            "",
            "'r1' not defined in your config (for this host).\n",
            10,
        );
        assert!(matches!(e, Err(RoleError::Failed { code: 10, .. })));
    }

    #[test]
    fn other_failures_name_resource_code_and_last_line() {
        let stderr = "drbd.d/r0.res:12: Parse error: 'protocol' expected,\n\tbut got 'protcol'\n\n/bin/sh: modinfo: command not found\n";
        assert_eq!(
            parse("r0", "", stderr, 10).unwrap_err().to_string(),
            "drbdadm role r0: exit code 10: but got 'protcol'"
        );
        assert_eq!(
            parse("r0", "Primary\n", "", 20).unwrap_err().to_string(),
            "drbdadm role r0: exit code 20: (nothing on stderr)"
        );
        assert_eq!(
            parse("r0", "", "modinfo: ERROR: Module drbd not found.\n", -9)
                .unwrap_err()
                .to_string(),
            "drbdadm role r0: exit code -9: (nothing on stderr)"
        );
    }

    #[test]
    fn garbage_and_truncated_output() {
        assert_eq!(
            parse("r0", "", "", 0),
            Err(RoleError::NoOutput { res: "r0".into() })
        );
        assert_eq!(
            parse("r0", "Prim", "", 0).unwrap_err().to_string(),
            "drbdadm role r0: output line 1: unrecognised role \"Prim\""
        );
        for out in [
            "Primary/",
            "/Secondary",
            "Primary/Secondary/Primary",
            "\0\u{fffd}",
            "Primary Secondary",
        ] {
            assert!(
                matches!(parse("r0", out, "", 0), Err(RoleError::Unrecognised { .. })),
                "accepted {out:?}"
            );
        }
    }
}
