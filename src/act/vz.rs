//! OpenVZ: `vzctl start|stop|status|exec CTID`. The waits are shared with LXC in
//! [`super::container`]; this file knows how to ask vzctl about one container.

use super::container::PROBE_TIMEOUT;
use super::{ActError, Ctx};
use crate::observe::{ContainerState, vz};

/// `vzctl status CTID`, parsed.
pub async fn probe_state(ctx: &Ctx<'_>, ctid: &str) -> Result<ContainerState, ActError> {
    let argv = vec![
        ctx.config.commands.vzctl.clone(),
        "status".into(),
        ctid.to_string(),
    ];
    let out = ctx.run_quiet(&argv, PROBE_TIMEOUT).await?;
    // vzctl status exits 0 for existing and deleted containers alike; the text says which.
    vz::parse_status(&out.stdout)
        .map(|status| status.state())
        .map_err(|e| ctx.failed(format!("vzctl status {ctid}: {e}")))
}
