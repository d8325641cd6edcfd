//! The planner: `plan(desired services, observed node) -> Plan`. Pure: no I/O, no clock, no
//! randomness; it sees only the [`NodeState`] of one observation pass, so the same inputs always
//! give the same plan (level-triggered — it never knows why it was asked).
//!
//! For each service it lists the actions still needed, in order, each with its reason, assuming
//! every earlier action succeeds; the executor runs the first one and plans again from a fresh
//! observation. A safety rule that refuses ends the list with a [`Blocked`] step: nothing after it
//! is planned, so a refused promotion never lets a mount through.
//!
//! Safety rules (each has a test in `tests.rs`; `tests/plan_properties.rs` checks them all on
//! random nodes and services, and runs plans to rest on a model of the node):
//! - never `primary` while any peer is Primary, unless the resource sets `allow_two_primaries`;
//! - never `primary` without UpToDate local data (converge never uses `--force`);
//! - never `secondary`/`down` while a filesystem on that DRBD device is mounted (and not unmounted
//!   earlier in the same plan) or the device is held open;
//! - never fsck or mount a DRBD device that is not locally Primary (or promoted earlier in the plan);
//! - a frozen service gets no action;
//! - a frozen container is thawed only when converge froze it (`on_quorum_loss: freeze`, its
//!   record in [`NodeState::quorum_frozen`]), and not while DRBD suspends the service's I/O.

mod index;
pub mod placement;
mod rules;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde::Serialize;

use crate::manifest::{ContainerKind, DesiredState, ResourceId, Service};
use crate::observe::drbd::PeerHold;
use crate::observe::{NodeState, Observed};

/// One thing to do. Data, not argv: the executor turns it into commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `drbdadm up RES`: attach and connect a resource that is not configured.
    DrbdUp {
        res: String,
    },
    /// Reconnect StandAlone connections: `drbdadm connect RES:PEER` for the one to `peer`, or
    /// `drbdadm connect RES` for all (every connection of the resource StandAlone).
    DrbdConnect {
        res: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
    },
    DrbdPrimary {
        res: String,
    },
    /// `drbdadm secondary RES`; with `force` (`secondary_force: true`, the device held open and
    /// nothing of it mounted) `drbdadm secondary --force RES`, which fails the holder's I/O.
    DrbdSecondary {
        res: String,
        force: bool,
    },
    DrbdDown {
        res: String,
    },
    /// Install the resource file a manifest names (`config:`) as `to` in the DRBD
    /// configuration directory, once drbdadm accepts it.
    DrbdInstall {
        res: String,
        from: PathBuf,
        to: PathBuf,
    },
    /// `drbdadm adjust RES`: bring the running resource in line with its installed file.
    DrbdAdjust {
        res: String,
    },
    /// Create a missing mount point (mode 0755).
    Mkdir {
        path: PathBuf,
    },
    /// Mount, after `e2fsck -p` when `fsck` is set. The check is part of the mount, not a step of
    /// its own: it changes nothing an observation can see, so a plan made after it alone would
    /// ask for it again.
    Mount {
        dev: PathBuf,
        mnt: PathBuf,
        fstype: String,
        options: String,
        fsck: bool,
    },
    /// Unmount one mount point (sub-mounts below a managed one get their own step first).
    Umount {
        mnt: PathBuf,
        kill: bool,
    },
    ContainerStart {
        container: ContainerKind,
    },
    /// The container is starting already: wait until it runs and is operational.
    ContainerWaitUp {
        container: ContainerKind,
    },
    /// The container is stopping already: wait until it is down.
    ContainerWaitDown {
        container: ContainerKind,
    },
    ContainerStop {
        container: ContainerKind,
    },
    /// Freeze an LXC container (`lxc-freeze`) whose node lost quorum (`on_quorum_loss:
    /// freeze`), recording that converge froze it.
    ContainerFreeze {
        container: ContainerKind,
    },
    /// Thaw (`lxc-unfreeze`) a container converge froze on a quorum loss: to run on (`stop`
    /// false: the record goes), or to be stopped next (`stop` true: the record says so).
    ContainerThaw {
        container: ContainerKind,
        stop: bool,
    },
    /// Run the app's start commands (S* scripts in name order, or `start`).
    AppStart,
    /// Run the app's stop commands (K* scripts in name order, or `stop`).
    AppStop,
}

impl Action {
    /// The action's kind, as `--json` names it (`drbd_primary`, `mount`, `app_start`): what a
    /// record of an action in progress says it was.
    pub fn name(&self) -> &'static str {
        match self {
            Action::DrbdUp { .. } => "drbd_up",
            Action::DrbdConnect { .. } => "drbd_connect",
            Action::DrbdPrimary { .. } => "drbd_primary",
            Action::DrbdSecondary { .. } => "drbd_secondary",
            Action::DrbdDown { .. } => "drbd_down",
            Action::DrbdInstall { .. } => "drbd_install",
            Action::DrbdAdjust { .. } => "drbd_adjust",
            Action::Mkdir { .. } => "mkdir",
            Action::Mount { .. } => "mount",
            Action::Umount { .. } => "umount",
            Action::ContainerStart { .. } => "container_start",
            Action::ContainerWaitUp { .. } => "container_wait_up",
            Action::ContainerWaitDown { .. } => "container_wait_down",
            Action::ContainerStop { .. } => "container_stop",
            Action::ContainerFreeze { .. } => "container_freeze",
            Action::ContainerThaw { .. } => "container_thaw",
            Action::AppStart => "app_start",
            Action::AppStop => "app_stop",
        }
    }

    /// Whether the action leaves the service further up (used for `rollback` later). A thaw is
    /// not: the container ran before it was frozen, and a rollback must not stop it.
    pub fn is_start(&self) -> bool {
        matches!(
            self,
            Action::DrbdUp { .. }
                | Action::DrbdConnect { .. }
                | Action::DrbdPrimary { .. }
                | Action::Mkdir { .. }
                | Action::Mount { .. }
                | Action::ContainerStart { .. }
                | Action::ContainerWaitUp { .. }
                | Action::AppStart
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub rid: ResourceId,
    pub action: Action,
    /// Why, from the observation: "resource data is Secondary".
    pub reason: String,
}

/// What stops a service from going on: a safety rule or an unobservable dependency refused
/// ([`BlockKind::Refused`]), or a peer must step down first ([`BlockKind::Waiting`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocked {
    pub rid: ResourceId,
    pub kind: BlockKind,
    pub reason: String,
}

/// Whether a block passes by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// A rule refused; it stays so until the node or the manifest changes.
    Refused,
    /// Waiting for what passes by itself: a peer to go Secondary or to come into sight (the
    /// normal middle of a switchover), the system to bring a resource up (`up_by: system`).
    /// Not a failure; DRBD's events say when to look again.
    Waiting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePlan {
    pub service: String,
    /// What this node should hold (a service pinned elsewhere is `down` here).
    pub desired: DesiredState,
    pub steps: Vec<Step>,
    pub blocked: Option<Blocked>,
    /// Problems of `optional` resources, which do not stop the service.
    pub warnings: Vec<String>,
    /// What is already as wanted, per resource ("drbd resource data is already Primary"):
    /// logged when the service acts, so the log tells the whole story. Kept by
    /// [`plan_service`] only: [`plan`], which plans every service for a look at the node (a
    /// resync, `status`, `plan`), leaves it empty — most services act on nothing, and these
    /// notes were a third of its time at 10,000 services. Plan the service again for them.
    pub satisfied: Vec<(ResourceId, String)>,
    /// For a service that fails over, on a node it lists: what DRBD decided here
    /// ([`placement::decide`]). The controller holds a [`placement::Decision::Take`] back by
    /// its rank before promoting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<placement::Decision>,
}

impl ServicePlan {
    /// Nothing to do and nothing in the way.
    pub fn is_converged(&self) -> bool {
        self.steps.is_empty() && self.blocked.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub services: Vec<ServicePlan>,
}

impl Plan {
    pub fn is_converged(&self) -> bool {
        self.services.iter().all(ServicePlan::is_converged)
    }

    pub fn step_count(&self) -> usize {
        self.services.iter().map(|s| s.steps.len()).sum()
    }

    pub fn blocked_count(&self) -> usize {
        self.services.iter().filter(|s| s.blocked.is_some()).count()
    }
}

/// Plans every service against one observation, without the notes of what is already as
/// wanted ([`ServicePlan::satisfied`]): otherwise as [`plan_service`] plans each.
pub fn plan(services: &[Service], node: &NodeState) -> Plan {
    let index = index::NodeIndex::new(node);
    Plan {
        services: services
            .iter()
            .map(|s| plan_indexed(s, &index, false))
            .collect(),
    }
}

/// Plans one service against one observation, with its notes.
pub fn plan_service(service: &Service, node: &NodeState) -> ServicePlan {
    plan_indexed(service, &index::NodeIndex::new(node), true)
}

/// What this node holds of a service, all things considered: the manifest, and for a service
/// that fails over, what its DRBD resource shows here.
struct Here {
    desired: DesiredState,
    /// Keep DRBD up and Secondary, everything above it down.
    standby: bool,
    /// Hold the service frozen ([`placement::Decision::Freeze`]).
    freeze: bool,
    placement: Option<placement::Decision>,
    /// What in the running DRBD configuration works against failing over.
    warnings: Vec<String>,
}

impl Here {
    fn of(service: &Service, node: &NodeState) -> Here {
        let desired = service.desired_here(&node.node);
        let standby = service.stands_by_here(&node.node);
        let fixed = Here {
            desired,
            standby,
            freeze: false,
            placement: None,
            warnings: Vec::new(),
        };
        let Some(failover) = service.failover().filter(|f| f.lists(&node.node)) else {
            return fixed;
        };
        if desired != DesiredState::Up {
            return fixed;
        }
        // The reader allows one DRBD resource to a service that fails over; a disabled one
        // leaves nothing to decide from, and the service is planned as written.
        let Some(res) = service
            .resources
            .iter()
            .filter(|r| !r.disabled)
            .find_map(|r| r.spec.as_drbd())
            .map(|d| d.res.as_str())
        else {
            return fixed;
        };
        // Unobserved DRBD: planned up, which refuses at the DRBD resource ("cannot observe
        // DRBD") and so does nothing.
        let Observed::Ok(resources) = &node.drbd else {
            return fixed;
        };
        let options = match node.drbd_options.get(res) {
            Some(Observed::Ok(options)) => Some(options),
            _ => None,
        };
        let enforced = options.is_some_and(|o| o.quorum.is_enforced());
        let decision = placement::decide(
            &failover.nodes,
            &node.node,
            failover.failback,
            failover.on_quorum_loss,
            resources.get(res),
            enforced,
        );
        let freeze = decision == placement::Decision::Freeze;
        let runs = freeze
            || matches!(
                decision,
                placement::Decision::Keep | placement::Decision::Take { .. }
            );
        Here {
            freeze,
            desired: if runs {
                DesiredState::Up
            } else {
                DesiredState::Down
            },
            standby: !runs,
            placement: Some(decision),
            warnings: options
                .map(|o| {
                    placement::option_warnings(
                        res,
                        o,
                        failover.on_quorum_loss,
                        placement::OptionsFrom::Running,
                    )
                })
                .unwrap_or_default(),
        }
    }
}

fn plan_indexed(service: &Service, index: &index::NodeIndex<'_>, notes: bool) -> ServicePlan {
    let here = Here::of(service, index.node());
    let desired = here.desired;
    let mut planner = rules::ServicePlanner::new(service, index, here.standby, notes);
    match desired {
        DesiredState::Frozen => {}
        DesiredState::Up if here.freeze => planner.freeze(),
        DesiredState::Up => {
            planner.up();
            planner.hold_while_suspended();
        }
        DesiredState::Down => {
            planner.down();
            planner.hold_while_suspended();
        }
    }
    let (steps, blocked, mut warnings, satisfied) = planner.finish();
    warnings.extend(here.warnings);
    ServicePlan {
        service: service.name.clone(),
        desired,
        steps,
        blocked,
        warnings,
        satisfied,
        placement: here.placement,
    }
}

/// What a node that waits to promote says: the peer, and what it waits for.
pub fn waiting_for(hold: &PeerHold, res: &str) -> String {
    match hold {
        PeerHold::Primary { .. } => format!(
            "{hold} for resource {res}: waiting for it to become Secondary (allow_two_primaries is false)"
        ),
        PeerHold::NoQuorum { .. } => format!(
            "{hold}, for resource {res}: a service that fails over promotes only with quorum (failover: auto)"
        ),
        PeerHold::Unseen { .. } => format!(
            "{hold}, for resource {res}: waiting for it to connect (converge promotes only over peers it sees Secondary; if it is down for good, see \"A peer that is gone\" in docs/operations.md)"
        ),
    }
}
