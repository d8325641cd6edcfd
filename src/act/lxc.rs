//! LXC: `lxc-start -n NAME -d`, `lxc-info -n NAME -s`, `lxc-attach -n NAME -- …`,
//! `lxc-stop -n NAME -t SECONDS`. The waits are shared with OpenVZ in [`super::container`].

use std::path::PathBuf;

use super::container::PROBE_TIMEOUT;
use super::{ActError, Ctx};
use crate::observe::{ContainerState, lxc};

/// `lxc-info -n NAME -s`, parsed. A container LXC does not know is absent.
pub async fn probe_state(ctx: &Ctx<'_>, name: &str) -> Result<ContainerState, ActError> {
    let argv = vec![
        ctx.config.commands.lxc_info.clone(),
        "-n".into(),
        name.to_string(),
        "-s".into(),
    ];
    let out = ctx.run_quiet(&argv, PROBE_TIMEOUT).await?;
    if !out.success() {
        if out.stderr.contains("doesn't exist") || out.stderr.contains("does not exist") {
            return Ok(ContainerState::Absent);
        }
        return Err(ctx.failed(format!(
            "lxc-info -n {name} -s {}: {}",
            out.describe_end(),
            out.last_line()
        )));
    }
    lxc::parse_info_state(&out.stdout).map_err(|e| ctx.failed(format!("lxc-info -n {name}: {e}")))
}

/// Logs the end of the container's LXC log, where a failed start says why.
pub fn log_tail(ctx: &Ctx<'_>, name: &str) {
    let path = PathBuf::from("/var/log/lxc").join(format!("{name}.log"));
    if let Ok(text) = std::fs::read_to_string(&path) {
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        ctx.log
            .warn(format_args!("last lines of {}:\n{tail}", path.display()));
    }
}
