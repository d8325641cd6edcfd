//! DRBD: `drbdadm up|connect|primary|secondary|down RES`.
//!
//! Right before promoting, the peers' roles are read again (`drbdadm role`, and on DRBD 9
//! `drbdsetup status --json`, where `role` shows only the local one): the plan was made from an
//! observation that may be seconds old, and two Primaries is the failure operators fear most.
//! DRBD's own refusals are honoured, never forced: exit 11 (a cluster-wide state change is in
//! progress, or the device is held open) is retried every second up to 10 times; exit 17 (no
//! access to UpToDate data) blocks.

use std::time::Duration;

use super::{ActError, Ctx};
use crate::exec::Output;
use crate::manifest::{DrbdSpec, Spec};
use crate::observe::drbd::{DrbdResource, Role};
use crate::observe::drbdadm_role::{self, RoleReport};
use crate::observe::drbdsetup_status;

/// drbdadm waits for the peer in some calls (connect, primary with quorum); bound it.
pub const DRBDADM_TIMEOUT: Duration = Duration::from_secs(120);
/// DRBD's "cluster-wide state change in progress" / "device held open".
pub const EXIT_STATE_CHANGE: i32 = 11;
/// DRBD's "no access to UpToDate data".
pub const EXIT_NO_UP_TO_DATE_DATA: i32 = 17;
const RETRIES: u32 = 10;
const RETRY_PAUSE: Duration = Duration::from_secs(1);

fn spec<'s>(ctx: &'s Ctx<'_>) -> Option<&'s DrbdSpec> {
    ctx.spec().and_then(Spec::as_drbd)
}

async fn drbdadm(ctx: &Ctx<'_>, verb: &str, res: &str) -> Result<(Vec<String>, Output), ActError> {
    let argv = ctx.config.commands.drbdadm_argv(&[verb, res]);
    let out = ctx.run(&argv, DRBDADM_TIMEOUT).await?;
    Ok((argv, out))
}

/// Runs a state change, retrying DRBD's exit 11 (another state change in progress).
async fn state_change(ctx: &Ctx<'_>, verb: &str, res: &str) -> Result<(), ActError> {
    for attempt in 1..=RETRIES {
        let (argv, out) = drbdadm(ctx, verb, res).await?;
        match out.code {
            Some(0) => return Ok(()),
            Some(EXIT_STATE_CHANGE) if attempt < RETRIES => {
                ctx.log.info(format_args!(
                    "{}; retry {attempt}/{} in 1s",
                    nonempty(&out.last_line(), "state change refused (exit 11)"),
                    RETRIES - 1
                ));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Some(EXIT_NO_UP_TO_DATE_DATA) => {
                ctx.log.output(&out.stderr);
                return Err(ctx.blocked(format!(
                    "drbdadm {verb} {res}: no access to UpToDate data (exit 17); converge never forces it"
                )));
            }
            _ => {
                ctx.log.output(&out.stderr);
                return Err(ctx.ended_badly(&argv, &out));
            }
        }
    }
    Err(ctx.failed(format!(
        "drbdadm {verb} {res}: still refused after {RETRIES} tries"
    )))
}

fn nonempty<'s>(text: &'s str, fallback: &'s str) -> &'s str {
    if text.is_empty() { fallback } else { text }
}

pub async fn up(ctx: &Ctx<'_>, res: &str) -> Result<(), ActError> {
    let (argv, out) = drbdadm(ctx, "up", res).await?;
    if out.success() {
        return Ok(());
    }
    ctx.log.output(&out.stderr);
    Err(ctx.ended_badly(&argv, &out))
}

pub async fn connect(ctx: &Ctx<'_>, res: &str) -> Result<(), ActError> {
    let (argv, out) = drbdadm(ctx, "connect", res).await?;
    if out.success() {
        return Ok(());
    }
    ctx.log.output(&out.stderr);
    Err(ctx.ended_badly(&argv, &out))
}

pub async fn primary(ctx: &Ctx<'_>, res: &str) -> Result<(), ActError> {
    let allow_two = spec(ctx).is_some_and(|s| s.allow_two_primaries);
    match local_and_peer_roles(ctx, res).await? {
        (Role::Primary, _) => {
            ctx.log
                .info(format_args!("drbd resource {res} is already Primary"));
            return Ok(());
        }
        (_, Some(peer)) if !allow_two => {
            return Err(ctx.blocked(format!(
                "peer {peer} is Primary for resource {res}; refusing to promote (allow_two_primaries is false)"
            )));
        }
        _ => {}
    }
    state_change(ctx, "primary", res).await
}

pub async fn secondary(ctx: &Ctx<'_>, res: &str) -> Result<(), ActError> {
    state_change(ctx, "secondary", res).await
}

pub async fn down(ctx: &Ctx<'_>, res: &str) -> Result<(), ActError> {
    state_change(ctx, "down", res).await
}

/// The local role and, when a peer is Primary, that peer's name — read fresh.
async fn local_and_peer_roles(
    ctx: &Ctx<'_>,
    res: &str,
) -> Result<(Role, Option<String>), ActError> {
    let argv = ctx.config.commands.drbdadm_argv(&["role", res]);
    let out = ctx.run_quiet(&argv, DRBDADM_TIMEOUT).await?;
    let report = drbdadm_role::parse(res, &out.stdout, &out.stderr, out.code.unwrap_or(-1))
        .map_err(|e| ctx.failed(e.to_string()))?;
    let (local, peers) = match report {
        RoleReport::Up { local, peers } => (local, peers),
        RoleReport::NotUp => {
            return Err(ctx.failed(format!("resource {res} is not up; cannot promote it")));
        }
        RoleReport::NotDefined => {
            return Err(ctx.failed(format!(
                "resource {res} is not defined in the DRBD configuration of this host"
            )));
        }
    };
    if peers.contains(&Role::Primary) {
        return Ok((local, Some("peer".to_string())));
    }
    if !peers.is_empty() {
        // DRBD 8.x: `role` names the peer's role; there is nothing more to read.
        return Ok((local, None));
    }
    // DRBD 9: `role` shows only the local role; the peers are in `status --json`.
    let argv = vec![
        ctx.config.commands.drbdsetup.clone(),
        "status".into(),
        res.to_string(),
        "--json".into(),
    ];
    let out = ctx.run_quiet(&argv, DRBDADM_TIMEOUT).await?;
    if !out.success() {
        return Err(ctx.failed(format!(
            "cannot read the peers' roles of {res} before promoting: {} {}: {}",
            argv.join(" "),
            out.describe_end(),
            out.last_line()
        )));
    }
    let resources = drbdsetup_status::parse_json(&out.stdout)
        .map_err(|e| ctx.failed(format!("drbdsetup status {res} --json: {e}")))?;
    let peer = resources.get(res).and_then(DrbdResource::primary_peer_name);
    Ok((local, peer))
}
