//! `converge status`: what each service and resource looks like now, aggregated the way the
//! OpenSVC agent does. Pure: a function of the manifests and one observation.
//!
//! Aggregation: `n/a` is neutral; `warn` absorbs everything; up and down together are `warn`.
//! A DRBD resource that is Secondary is `stdby up` (ready to take over): it is not a problem for
//! a service that is down, and it counts as down next to resources that are up.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::manifest::{AppStatus, ContainerKind, DesiredState, ResourceId, Service, Spec};
use crate::observe::drbd::{ConnectionState, DrbdResource, Role};
use crate::observe::{ContainerState, NodeState, Observed};
use crate::plan::plan_service;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "up")]
    Up,
    #[serde(rename = "down")]
    Down,
    #[serde(rename = "warn")]
    Warn,
    #[serde(rename = "n/a")]
    NotApplicable,
    #[serde(rename = "stdby up")]
    StandbyUp,
}

impl Status {
    /// The word OpenSVC shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Down => "down",
            Status::Warn => "warn",
            Status::NotApplicable => "n/a",
            Status::StandbyUp => "stdby up",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceStatus {
    pub rid: ResourceId,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub desired: DesiredState,
    pub status: Status,
    pub converged: bool,
    pub resources: Vec<ResourceStatus>,
}

/// The aggregate of resource statuses.
pub fn aggregate(statuses: impl IntoIterator<Item = Status>) -> Status {
    let (mut up, mut down, mut warn) = (false, false, false);
    for status in statuses {
        match status {
            Status::Up => up = true,
            Status::Down | Status::StandbyUp => down = true,
            Status::Warn => warn = true,
            Status::NotApplicable => {}
        }
    }
    match (warn, up, down) {
        (true, _, _) | (false, true, true) => Status::Warn,
        (false, true, false) => Status::Up,
        (false, false, true) => Status::Down,
        (false, false, false) => Status::NotApplicable,
    }
}

pub fn service_status(service: &Service, node: &NodeState) -> ServiceStatus {
    status_with_plan(service, node, &plan_service(service, node))
}

/// The status of many services against one observation, planned together (the observation is
/// indexed once, not once per service).
pub fn statuses(services: &[Service], node: &NodeState) -> Vec<ServiceStatus> {
    let plan = crate::plan::plan(services, node);
    services
        .iter()
        .zip(&plan.services)
        .map(|(s, p)| status_with_plan(s, node, p))
        .collect()
}

fn status_with_plan(
    service: &Service,
    node: &NodeState,
    plan: &crate::plan::ServicePlan,
) -> ServiceStatus {
    let resources: Vec<ResourceStatus> = service
        .resources
        .iter()
        .map(|r| {
            let (status, detail) = if r.disabled {
                (Status::NotApplicable, "disabled".to_string())
            } else {
                match &r.spec {
                    Spec::Drbd(d) => drbd_status(node, &d.res),
                    Spec::Fs(f) => fs_status(node, &f.dev, &f.mnt),
                    Spec::Container(c) => container_status(node, &c.kind),
                    Spec::App(_) => app_status(service, node, r.id),
                }
            };
            ResourceStatus {
                rid: r.id,
                status,
                detail,
            }
        })
        .collect();
    ServiceStatus {
        service: service.name.clone(),
        desired: plan.desired,
        status: aggregate(resources.iter().map(|r| r.status)),
        converged: plan.is_converged(),
        resources,
    }
}

fn drbd_status(node: &NodeState, res: &str) -> (Status, String) {
    let resources = match &node.drbd {
        Observed::Ok(r) => r,
        Observed::Unavailable(why) => return (Status::Warn, format!("cannot observe: {why}")),
    };
    let Some(drbd) = resources.get(res) else {
        return (Status::Down, format!("resource {res} is not up"));
    };
    let detail = drbd_detail(drbd);
    match drbd.role {
        Role::Primary => (Status::Up, detail),
        Role::Secondary => (Status::StandbyUp, detail),
        _ => (Status::Warn, detail),
    }
}

/// `Primary, peer Secondary, UpToDate/UpToDate`.
fn drbd_detail(drbd: &DrbdResource) -> String {
    let local_disk: Vec<String> = drbd.devices.iter().map(|d| d.disk.to_string()).collect();
    let local_disk = if local_disk.is_empty() {
        "Diskless".to_string()
    } else {
        local_disk.join(",")
    };
    let Some(conn) = drbd.connections.first() else {
        return format!("{}, no peer, {local_disk}", drbd.role);
    };
    let peer_disk: Vec<String> = conn
        .peer_devices
        .iter()
        .map(|p| p.peer_disk.to_string())
        .collect();
    let peer_disk = if peer_disk.is_empty() {
        "DUnknown".to_string()
    } else {
        peer_disk.join(",")
    };
    let mut detail = format!(
        "{}, peer {}, {local_disk}/{peer_disk}",
        drbd.role, conn.peer_role
    );
    if conn.state != ConnectionState::Connected {
        detail.push_str(&format!(", {}", conn.state));
    }
    detail
}

fn fs_status(node: &NodeState, dev: &std::path::Path, mnt: &std::path::Path) -> (Status, String) {
    let mounts = match &node.mounts {
        Observed::Ok(m) => m,
        Observed::Unavailable(why) => return (Status::Warn, format!("cannot observe: {why}")),
    };
    let devnum = node.devices.get(dev);
    match mounts.iter().rev().find(|m| m.mount_point() == mnt) {
        Some(m) if std::path::Path::new(m.source()) == dev || devnum == Some(&m.dev) => {
            (Status::Up, format!("mounted on {}", mnt.display()))
        }
        Some(m) => (
            Status::Warn,
            format!("{} is mounted on {}", m.source(), mnt.display()),
        ),
        None => (Status::Down, "not mounted".to_string()),
    }
}

fn container_status(node: &NodeState, kind: &ContainerKind) -> (Status, String) {
    let observed = match kind {
        ContainerKind::Vz(_) => &node.vz,
        ContainerKind::Lxc(_) => &node.lxc,
    };
    let map = match observed {
        Observed::Ok(m) => m,
        Observed::Unavailable(why) => return (Status::Warn, format!("cannot observe: {why}")),
    };
    match map
        .get(kind.id())
        .copied()
        .unwrap_or(ContainerState::Absent)
    {
        ContainerState::Running => (Status::Up, "running".into()),
        ContainerState::Stopped => (Status::Down, "stopped".into()),
        ContainerState::Mounted => (Status::Down, "mounted, not running".into()),
        ContainerState::Absent => (Status::Down, "not found on this node".into()),
        ContainerState::Starting => (Status::Warn, "starting".into()),
        ContainerState::Stopping => (Status::Warn, "stopping".into()),
        ContainerState::Frozen => (Status::Warn, "frozen".into()),
        ContainerState::Aborting => (Status::Warn, "aborting".into()),
    }
}

fn app_status(service: &Service, node: &NodeState, rid: ResourceId) -> (Status, String) {
    if let Some(container) = service.container() {
        let running = match &container.kind {
            ContainerKind::Vz(_) => &node.vz,
            ContainerKind::Lxc(_) => &node.lxc,
        }
        .ok()
        .and_then(|m| m.get(container.kind.id()))
            == Some(&ContainerState::Running);
        if !running {
            return (Status::Down, "container not running".into());
        }
    }
    match node.apps.get(&service.name).and_then(|a| a.get(&rid)) {
        Some(obs) => (
            match obs.status {
                AppStatus::Up => Status::Up,
                AppStatus::Down => Status::Down,
                AppStatus::Warn => Status::Warn,
                AppStatus::NotApplicable => Status::NotApplicable,
            },
            obs.detail.clone(),
        ),
        None => (Status::Down, "not started (no check to ask)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn aggregation_follows_the_agent() {
        assert_eq!(aggregate([Up, Up, NotApplicable]), Up);
        assert_eq!(aggregate([Down, Down]), Down);
        assert_eq!(aggregate([Up, Down]), Warn);
        assert_eq!(aggregate([Up, Warn]), Warn);
        assert_eq!(aggregate([Down, Warn]), Warn);
        assert_eq!(aggregate([NotApplicable]), NotApplicable);
        assert_eq!(aggregate([]), NotApplicable);
        // A standby-ready DRBD under a stopped service is not a warning…
        assert_eq!(aggregate([StandbyUp, Down, Down]), Down);
        // …but a Secondary under mounted filesystems is.
        assert_eq!(aggregate([StandbyUp, Up]), Warn);
    }
}
