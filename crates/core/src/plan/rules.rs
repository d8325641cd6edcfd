//! The per-resource rules of the planner. One [`ServicePlanner`] walks one service's resources in
//! start order (up) or stop order (down), keeping a small model of what the steps planned so far
//! will have changed, so that later rules judge the node as it will be when their turn comes.

use std::collections::BTreeSet;
use std::path::Path;

use super::index::NodeIndex;
use super::{Action, BlockKind, Blocked, Step, waiting_for};
use crate::manifest::{
    AppStatus, ContainerKind, ContainerSpec, DrbdSpec, DrbdStop, FsSpec, Kind, Resource,
    ResourceId, Service, Spec, UpBy,
};
use crate::observe::drbd::{
    ConnectionState, DiskState, DrbdConnection, PromoteGuard, device_path as drbd_device_path,
};
use crate::observe::{
    ContainerState, DrbdFileState, DrbdResource, Mount, NodeState, Observed, QuorumFreeze, Role,
};

/// Whether a path names a DRBD device by the names DRBD's udev rules create.
fn looks_like_drbd_device(dev: &Path) -> bool {
    dev.to_str().is_some_and(|d| d.starts_with("/dev/drbd"))
}

pub(super) struct ServicePlanner<'n: 'a, 'a> {
    service: &'a Service,
    node: &'a NodeState,
    index: &'a NodeIndex<'n>,
    steps: Vec<Step>,
    blocked: Option<Blocked>,
    warnings: Vec<String>,
    /// DRBD resources that are Primary once the steps so far have run.
    primary: BTreeSet<&'a str>,
    /// The service runs on another node: its DRBD resources stand by here (see
    /// [`Service::stands_by_here`]).
    standby: bool,
    /// The mounts the steps so far unmount, each one (one mount point may hold several,
    /// stacked): compared by identity, as the index hands them out.
    unmounted: Vec<&'a Mount>,
    satisfied: Vec<(ResourceId, String)>,
    /// Keep what is already as wanted in `satisfied`.
    notes: bool,
    /// A mount is planned: a container not visible now may live on that filesystem.
    mount_planned: bool,
    /// A step that leaves the service's container running is planned: its apps can follow.
    container_start_planned: bool,
    /// The container is thawed first: its apps are looked at once it runs again.
    thaw_planned: bool,
    /// DRBD resources whose file a step installs.
    installing: BTreeSet<&'a str>,
    /// Steps that go after all the others: applying a new DRBD file to a running resource
    /// changes nothing the rest of the stack needs, and one the act layer leaves to a person
    /// (see `adjust`) must not hold up, say, an app's restart.
    last: Vec<Step>,
}

impl<'n: 'a, 'a> ServicePlanner<'n, 'a> {
    pub(super) fn new(
        service: &'a Service,
        index: &'a NodeIndex<'n>,
        standby: bool,
        notes: bool,
    ) -> Self {
        ServicePlanner {
            standby,
            notes,
            service,
            node: index.node(),
            index,
            steps: Vec::new(),
            blocked: None,
            warnings: Vec::new(),
            primary: BTreeSet::new(),
            unmounted: Vec::new(),
            satisfied: Vec::new(),
            mount_planned: false,
            container_start_planned: false,
            thaw_planned: false,
            installing: BTreeSet::new(),
            last: Vec::new(),
        }
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn finish(
        self,
    ) -> (
        Vec<Step>,
        Option<Blocked>,
        Vec<String>,
        Vec<(ResourceId, String)>,
    ) {
        (self.steps, self.blocked, self.warnings, self.satisfied)
    }

    /// What is already as wanted, noted only when the plan keeps notes (formatting them was a
    /// third of a plan of 10,000 converged services, which a resync drops unread).
    fn already<S: Into<String>>(&mut self, rid: ResourceId, note: impl FnOnce() -> S) {
        if self.notes {
            self.satisfied.push((rid, note().into()));
        }
    }

    fn step(&mut self, rid: ResourceId, action: Action, reason: impl Into<String>) {
        self.steps.push(Step {
            rid,
            action,
            reason: reason.into(),
        });
    }

    /// A rule refused. An optional resource only warns and is skipped; any other blocks the
    /// rest of the service, because what follows depends on it.
    fn refuse(&mut self, resource: &Resource, reason: impl Into<String>) {
        self.block(resource, BlockKind::Refused, reason.into());
    }

    /// A peer must step down (or come into sight) first: as [`Self::refuse`], but it passes by
    /// itself.
    fn wait(&mut self, resource: &Resource, reason: impl Into<String>) {
        self.block(resource, BlockKind::Waiting, reason.into());
    }

    fn block(&mut self, resource: &Resource, kind: BlockKind, reason: String) {
        if resource.optional {
            self.warnings
                .push(format!("{} (optional): {reason}", resource.id));
        } else {
            self.blocked = Some(Blocked {
                rid: resource.id,
                kind,
                reason,
            });
        }
    }

    fn enabled(&self) -> impl Iterator<Item = &'a Resource> + use<'a> {
        self.service.resources.iter().filter(|r| !r.disabled)
    }

    pub(super) fn up(&mut self) {
        for resource in self.enabled() {
            if self.blocked.is_some() {
                return;
            }
            match &resource.spec {
                Spec::Drbd(spec) => self.up_drbd(resource, spec),
                Spec::Fs(spec) => self.up_fs(resource, spec),
                Spec::Container(spec) => self.up_container(resource, spec),
                Spec::App(_) => self.up_app(resource),
            }
        }
        self.add_last();
    }

    /// The steps kept for the end, once everything else is planned unblocked.
    fn add_last(&mut self) {
        if self.blocked.is_none() {
            self.steps.append(&mut self.last);
        }
    }

    /// The holder lost quorum and holds the service frozen (`on_quorum_loss: freeze`): the
    /// container is frozen, and nothing else is touched. DRBD holds the I/O (`on-no-quorum
    /// suspend-io`), so an unmount or a demotion would hang, and the apps are frozen with the
    /// container.
    pub(super) fn freeze(&mut self) {
        for resource in self.enabled() {
            match &resource.spec {
                Spec::Container(spec) => self.freeze_container(resource, spec),
                Spec::App(_) => self.already(resource.id, || "frozen with its container"),
                Spec::Drbd(_) | Spec::Fs(_) => self.already(
                    resource.id,
                    || "kept while frozen: DRBD holds the I/O until quorum returns or DRBD demotes this node",
                ),
            }
        }
    }

    fn freeze_container(&mut self, resource: &Resource, spec: &ContainerSpec) {
        let Some(state) = self.container_state(resource, &spec.kind) else {
            return;
        };
        let (rid, id) = (resource.id, spec.kind.id());
        match state {
            ContainerState::Running | ContainerState::Starting => self.step(
                rid,
                Action::ContainerFreeze {
                    container: spec.kind.clone(),
                },
                format!(
                    "container {id} is {}, and this node's partition lost quorum (on_quorum_loss: freeze)",
                    state_word(state)
                ),
            ),
            ContainerState::Frozen => self.already(rid, || format!("container {id} is frozen")),
            other => self.already(
                rid,
                || format!("container {id} is {}: nothing to freeze", state_word(other)),
            ),
        }
    }

    /// While DRBD suspends the service's I/O, nothing that does I/O on it is done: an app's
    /// start, check or stop, a container's start or stop, an unmount or a demotion would hang
    /// on the held I/O (uninterruptibly, past any timeout). Called after [`Self::up`] or
    /// [`Self::down`] (never after [`Self::freeze`], whose freeze does no I/O): what they
    /// planned waits until DRBD resumes the I/O or demotes this node.
    pub(super) fn hold_while_suspended(&mut self) {
        let Some(res) = self.suspended_drbd() else {
            return;
        };
        let Some(first) = self.steps.first() else {
            return;
        };
        let rid = first.rid;
        self.steps.clear();
        self.blocked = Some(Blocked {
            rid,
            kind: BlockKind::Waiting,
            reason: format!(
                "DRBD suspends the I/O of resource {res} (no quorum, or another reason DRBD gives): acting now would hang; waiting until DRBD resumes it or demotes this node"
            ),
        });
    }

    /// The record of a freeze converge made on a quorum loss, for this service.
    fn quorum_frozen(&self) -> Option<QuorumFreeze> {
        self.node.quorum_frozen.get(&self.service.name).copied()
    }

    /// The service's DRBD resource, when DRBD suspends its I/O here (no quorum under
    /// `on-no-quorum suspend-io`, or another reason DRBD gives).
    fn suspended_drbd(&self) -> Option<&'a str> {
        self.enabled()
            .filter_map(|r| r.spec.as_drbd())
            .map(|d| d.res.as_str())
            .find(|res| self.index.drbd(res).is_some_and(|r| r.suspended))
    }

    /// Whether the service's DRBD resource is Primary here.
    fn drbd_primary_here(&self) -> bool {
        self.enabled().filter_map(|r| r.spec.as_drbd()).any(|d| {
            self.index
                .drbd(&d.res)
                .is_some_and(|r| r.role == Role::Primary)
        })
    }

    pub(super) fn down(&mut self) {
        for resource in stop_order(self.enabled().collect()) {
            if self.blocked.is_some() {
                return;
            }
            match &resource.spec {
                Spec::App(_) => self.down_app(resource),
                Spec::Container(spec) => self.down_container(resource, spec),
                Spec::Fs(spec) => self.down_fs(resource, spec),
                Spec::Drbd(spec) => self.down_drbd(resource, spec),
            }
        }
        self.add_last();
    }

    // ---- DRBD ----

    /// False (and refused) when DRBD could not be observed.
    fn drbd_observed(&mut self, resource: &Resource) -> bool {
        match &self.node.drbd {
            Observed::Ok(_) => true,
            Observed::Unavailable(why) => {
                self.refuse(resource, format!("cannot observe DRBD: {why}"));
                false
            }
        }
    }

    fn up_drbd(&mut self, resource: &Resource, spec: &'a DrbdSpec) {
        if !self.drbd_observed(resource) {
            return;
        }
        let res = spec.res.as_str();
        let rid = resource.id;
        let system = spec.up_by == UpBy::System;
        let observed = self.index.drbd(res);
        if !self.drbd_file(resource, spec, true, observed.is_some()) {
            return;
        }
        let Some(drbd) = observed else {
            if system {
                self.wait(
                    resource,
                    format!(
                        "resource {res} is not up: the system brings it up (up_by: system; e.g. systemctl start drbd@{res}.service)"
                    ),
                );
                return;
            }
            self.step(
                rid,
                Action::DrbdUp { res: res.into() },
                format!("resource {res} is not up"),
            );
            // Peers are unknown until it is up; the driver re-reads peer roles right before it
            // promotes, and the plan after `up` sees them.
            self.step(
                rid,
                Action::DrbdPrimary { res: res.into() },
                format!("resource {res} will be Secondary"),
            );
            self.primary.insert(res);
            return;
        };
        if !drbd.is_standalone() {
            self.already(rid, || format!("drbd resource {res} is already up"));
        }
        if !self.reconnect(resource, drbd, res, system, "") {
            return;
        }
        self.adjust(resource.id, drbd);
        if drbd.role == Role::Primary {
            self.already(rid, || format!("drbd resource {res} is already Primary"));
            self.primary.insert(res);
            return;
        }
        let guard = if self.service.failover().is_some() {
            PromoteGuard::Quorum
        } else if spec.allow_two_primaries {
            PromoteGuard::TwoPrimaries
        } else {
            PromoteGuard::Seen
        };
        if let Some(hold) = drbd.promote_hold(guard) {
            self.wait(resource, waiting_for(&hold, res));
            return;
        }
        if !drbd.has_up_to_date_data() {
            let disks: Vec<String> = drbd.devices.iter().map(|d| d.disk.to_string()).collect();
            let disks = if disks.is_empty() {
                "no local disk".to_string()
            } else {
                disks.join("/")
            };
            self.refuse(
                resource,
                format!("resource {res} has {disks} data; promotion needs UpToDate data and converge never forces it"),
            );
            return;
        }
        self.step(
            rid,
            Action::DrbdPrimary { res: res.into() },
            format!("resource {res} is {}", drbd.role),
        );
        self.primary.insert(res);
    }

    fn down_drbd(&mut self, resource: &Resource, spec: &'a DrbdSpec) {
        if !self.drbd_observed(resource) {
            return;
        }
        let res = spec.res.as_str();
        let observed = self.index.drbd(res);
        if !self.drbd_file(resource, spec, false, observed.is_some()) {
            return;
        }
        if self.standby {
            self.standby_drbd(resource, spec, observed);
            return;
        }
        let Some(drbd) = observed else {
            self.already(resource.id, || {
                format!("drbd resource {res} is already down")
            });
            return;
        };
        // `up_by: system` leaves `down` to the system (the reader refuses it with `stop:
        // down`); the planner never takes such a resource down either way.
        let stop = match spec.up_by {
            UpBy::System => DrbdStop::Secondary,
            UpBy::Converge => spec.stop,
        };
        match stop {
            DrbdStop::Secondary if drbd.role == Role::Primary => {
                let hazard = self.demote_hazard(drbd);
                self.demote(resource, spec, hazard, format!("resource {res} is Primary"));
                if self.blocked.is_none() {
                    self.adjust(resource.id, drbd);
                }
            }
            DrbdStop::Secondary => {
                self.already(resource.id, || {
                    format!("drbd resource {res} is already {}", drbd.role)
                });
                self.adjust(resource.id, drbd);
            }
            DrbdStop::Down => match self.demote_hazard(drbd) {
                Some(Hazard::Mounted(why)) => self.refuse(resource, why),
                // `drbdadm down` of a device in use fails whatever is forced.
                Some(Hazard::HeldOpen(what)) => self.refuse(
                    resource,
                    format!("{what}; refusing to take resource {res} down"),
                ),
                None => self.step(
                    resource.id,
                    Action::DrbdDown { res: res.into() },
                    format!("resource {res} is up and the service stops it with down"),
                ),
            },
        }
    }

    /// On a node that stands by: up, connected, Secondary, whatever the resource's `stop` says
    /// (`stop: down` is for a service that is down everywhere). A node the DRBD configuration
    /// does not name is no standby: nothing to do.
    fn standby_drbd(
        &mut self,
        resource: &Resource,
        spec: &DrbdSpec,
        drbd: Option<&'a DrbdResource>,
    ) {
        let rid = resource.id;
        let res = spec.res.as_str();
        let system = spec.up_by == UpBy::System;
        let holder = self.service.pinned_node().unwrap_or("another node");
        let Some(drbd) = drbd else {
            if system {
                self.already(rid, || {
                    format!("resource {res} is not up; the system brings it up (up_by: system)")
                });
                return;
            }
            match self.node.drbd_configured.as_ref() {
                // drbdadm accepted the file being installed for this very node.
                _ if self.installing.contains(res) => self.step(
                    rid,
                    Action::DrbdUp { res: res.into() },
                    format!(
                        "resource {res} is not up, and this node stands by for it (the service runs on {holder})"
                    ),
                ),
                Some(Observed::Ok(here)) if here.contains(res) => self.step(
                    rid,
                    Action::DrbdUp { res: res.into() },
                    format!(
                        "resource {res} is not up, and this node stands by for it (the service runs on {holder})"
                    ),
                ),
                Some(Observed::Ok(_)) => self.already(
                    rid,
                    || format!(
                        "the DRBD configuration has no section for this node in resource {res}: no standby here"
                    ),
                ),
                Some(Observed::Unavailable(why)) => self.warnings.push(format!(
                    "{rid}: cannot tell whether this node stands by for resource {res}: {why}"
                )),
                None => self.warnings.push(format!(
                    "{rid}: whether this node stands by for resource {res} was not observed"
                )),
            }
            return;
        };
        // Demoting discards nothing: it goes first, split brain or not.
        if drbd.role == Role::Primary {
            let hazard = self.demote_hazard(drbd);
            self.demote(
                resource,
                spec,
                hazard,
                format!("resource {res} is Primary, and the service runs on {holder}"),
            );
            return;
        }
        if !self.reconnect(resource, drbd, res, system, "; a standby replicates") {
            return;
        }
        self.adjust(rid, drbd);
        if !drbd.is_standalone() || system {
            self.already(rid, || {
                format!("drbd resource {res} stands by ({})", drbd.role)
            });
        }
    }

    /// The resource file the manifest names (`config:`), against the installed one: a step
    /// installs it when it differs and drbdadm accepts it. A file drbdadm refuses leaves the
    /// installed one in place, with a warning; the service is refused only where it runs here
    /// and has nothing to run on (nothing installed and the resource not up, or no section
    /// for this node). False when refused.
    fn drbd_file(
        &mut self,
        resource: &Resource,
        spec: &'a DrbdSpec,
        runs_here: bool,
        up: bool,
    ) -> bool {
        let res = spec.res.as_str();
        let Some(file) = self.node.drbd_files.get(res) else {
            return true;
        };
        let rid = resource.id;
        let name = spec.config.as_deref().unwrap_or(&file.source).display();
        let installed = file.installed.display();
        match &file.state {
            DrbdFileState::Installed => {
                self.already(rid, || format!("{name} is installed as {installed}"));
            }
            DrbdFileState::Differs { missing } => {
                let reason = if *missing {
                    format!("{name} is not installed ({installed} does not exist)")
                } else {
                    format!("{name} differs from the installed {installed}")
                };
                self.step(
                    rid,
                    Action::DrbdInstall {
                        res: res.into(),
                        from: file.source.clone(),
                        to: file.installed.clone(),
                    },
                    reason,
                );
                self.installing.insert(res);
            }
            DrbdFileState::Refused { why, missing } => {
                if *missing && runs_here && !up {
                    self.refuse(
                        resource,
                        format!(
                            "{name} is refused and nothing is installed for resource {res}: {why}"
                        ),
                    );
                    return false;
                }
                let kept = if *missing {
                    "nothing is installed".to_string()
                } else {
                    format!("{installed} stays as it is")
                };
                self.warnings
                    .push(format!("{rid}: {name} is refused: {why}; {kept}"));
            }
            DrbdFileState::NotHere if runs_here => {
                self.refuse(
                    resource,
                    format!(
                        "{name} defines resource {res} without a section for this node ({}): add an `on {}` section, or run the service where the file has one",
                        self.node.node, self.node.node
                    ),
                );
                return false;
            }
            DrbdFileState::NotHere => {
                self.already(rid, || {
                    format!("{name} has no section for this node: nothing to install here")
                });
            }
        }
        true
    }

    /// `drbdadm adjust` of a resource that is up here, when its file is installed by an
    /// earlier step or was installed without being applied yet (converge's record). Not while
    /// a connection is StandAlone or a local disk is detached: `adjust` would also connect and
    /// attach them, bypassing the rules converge keeps for those (reconnection with backoff,
    /// never a split brain, never for `up_by: system`; a disk detached after I/O errors stays
    /// detached). It waits for them, with a warning; the act layer checks the rest.
    fn adjust(&mut self, rid: ResourceId, drbd: &DrbdResource) {
        let res = drbd.name.as_str();
        let installing = self.installing.contains(res);
        if !installing && !self.node.drbd_adjust.contains(res) {
            return;
        }
        let standalone: Vec<String> = drbd
            .connections
            .iter()
            .filter(|c| c.state == ConnectionState::StandAlone)
            .map(DrbdConnection::peer_label)
            .collect();
        let detached = drbd
            .devices
            .iter()
            .any(|d| !d.client && matches!(d.disk, DiskState::Diskless | DiskState::Failed));
        if !standalone.is_empty() || detached {
            let why = if standalone.is_empty() {
                "the local disk is detached".to_string()
            } else {
                format!("the connection to {} is StandAlone", standalone.join(", "))
            };
            self.warnings.push(format!(
                "{rid}: the new file of resource {res} waits to be applied (drbdadm adjust): {why}, and adjust would connect or attach it too, which converge does only under its own rules"
            ));
            return;
        }
        let reason = match self.node.drbd_drift.get(res) {
            _ if installing => format!("resource {res} is up and its file changes"),
            Some(Observed::Ok(lines)) if !lines.is_empty() => format!(
                "resource {res} runs on its former file; adjust runs: {}",
                lines.join("; ")
            ),
            _ => format!("the installed file of resource {res} is not applied yet"),
        };
        self.last.push(Step {
            rid,
            action: Action::DrbdAdjust { res: res.into() },
            reason,
        });
    }

    /// Plans the reconnection of the resource's StandAlone connections (none with `up_by:
    /// system`): all at once when every one is StandAlone, else each by its peer. A connection
    /// DRBD found a split brain on is never reconnected: false, the resource refused, with
    /// what to do. Nor is one the event stream (when one runs) has not reported StandAlone
    /// yet, or not again since converge reconnected it: false, the resource waiting for the
    /// news. `why` ends the reason of each step.
    fn reconnect(
        &mut self,
        resource: &Resource,
        drbd: &DrbdResource,
        res: &str,
        system: bool,
        why: &str,
    ) -> bool {
        let standalone: Vec<&DrbdConnection> = drbd
            .connections
            .iter()
            .filter(|c| c.state == ConnectionState::StandAlone)
            .collect();
        let split = standalone.iter().find_map(|c| {
            let name = c.name.as_deref()?;
            self.node
                .split_brains
                .get(res)?
                .iter()
                .find(|s| s.peer == name)
        });
        if let Some(split) = split {
            self.refuse(
                resource,
                format!(
                    "resource {res} is in split brain with {} (seen {}): both sides wrote what the other has not, and converge never chooses whose writes to discard; resolve it by hand (docs/operations.md, \"Split brain\")",
                    split.peer, split.since
                ),
            );
            return false;
        }
        if system || standalone.is_empty() {
            return true;
        }
        // Connected again first, its split brain would only be known once DRBD finds it anew.
        // DRBD 8.4 names no connection: its one peer's, if any reported, is the one.
        let unreported = self.node.standalone_reported.as_ref().and_then(|reported| {
            let peers = reported.get(res);
            standalone
                .iter()
                .find(|c| match (c.name.as_deref(), peers) {
                    (_, None) => true,
                    (Some(name), Some(peers)) => !peers.contains(name),
                    (None, Some(peers)) => peers.is_empty(),
                })
        });
        if let Some(c) = unreported {
            self.wait(
                resource,
                format!(
                    "the connection of resource {res} to {} is StandAlone, and DRBD's event stream has not said so yet: converge reconnects it once the stream shows it was no split brain",
                    c.peer_label()
                ),
            );
            return false;
        }
        if standalone.len() == drbd.connections.len() {
            self.step(
                resource.id,
                Action::DrbdConnect {
                    res: res.into(),
                    peer: None,
                },
                format!("resource {res} is StandAlone{why}"),
            );
            return true;
        }
        for c in standalone {
            self.step(
                resource.id,
                Action::DrbdConnect {
                    res: res.into(),
                    peer: c.name.clone(),
                },
                format!(
                    "the connection of resource {res} to {} is StandAlone{why}",
                    c.peer_label()
                ),
            );
        }
        true
    }

    /// Why demoting (or downing) this resource now would hurt: a mount of one of its devices that
    /// no earlier step unmounts, or a device held open by something converge does not manage.
    fn demote_hazard(&self, drbd: &DrbdResource) -> Option<Hazard> {
        let mut held_open = None;
        for device in &drbd.devices {
            let path = drbd_device_path(device.minor);
            let mut unmounting = false;
            for mount in self.index.mounts_of(&path).iter().copied() {
                if self.unmounting(mount) {
                    unmounting = true;
                } else {
                    return Some(Hazard::Mounted(format!(
                        "{} is mounted on {}; refusing to demote resource {} under a mounted filesystem",
                        path.display(),
                        mount.mount_point().display(),
                        drbd.name
                    )));
                }
            }
            if device.open && !unmounting && held_open.is_none() {
                held_open = Some(Hazard::HeldOpen(format!(
                    "{} is held open by a process",
                    path.display()
                )));
            }
        }
        if let Observed::Unavailable(why) = &self.node.mounts {
            return Some(Hazard::Mounted(format!(
                "cannot tell whether {} is mounted: {why}",
                drbd.name
            )));
        }
        held_open
    }

    /// `drbdadm secondary` for `spec`'s resource, or the refusal `hazard` calls for: a device
    /// held open (and nothing mounted) is demoted with `--force` when the manifest allows it.
    fn demote(
        &mut self,
        resource: &Resource,
        spec: &DrbdSpec,
        hazard: Option<Hazard>,
        reason: String,
    ) {
        let res = spec.res.as_str();
        match hazard {
            None => self.step(
                resource.id,
                Action::DrbdSecondary {
                    res: res.into(),
                    force: false,
                },
                reason,
            ),
            Some(Hazard::HeldOpen(what)) if spec.secondary_force => self.step(
                resource.id,
                Action::DrbdSecondary {
                    res: res.into(),
                    force: true,
                },
                format!(
                    "{reason}; {what}, with no filesystem of it mounted: secondary_force demotes it anyway (that process's I/O fails)"
                ),
            ),
            Some(Hazard::HeldOpen(what)) => self.refuse(
                resource,
                format!(
                    "{what}; refusing to demote resource {res} (secondary_force: true would demote it with --force once nothing of it is mounted)"
                ),
            ),
            Some(Hazard::Mounted(why)) => self.refuse(resource, why),
        }
    }

    /// The DRBD resource a device belongs to, when it is a DRBD device: observed minors first,
    /// then (for a DRBD-looking path no minor matches) this service's DRBD resources that are
    /// not up yet — the device will appear when they come up.
    fn drbd_owner(&self, dev: &Path) -> Option<Vec<&'a str>> {
        if let Some(name) = self.index.drbd_resource_of(dev) {
            return Some(vec![name]);
        }
        if !looks_like_drbd_device(dev) {
            return None;
        }
        let observed = self.node.drbd.ok();
        let pending = self
            .enabled()
            .filter_map(|r| match &r.spec {
                Spec::Drbd(d) if observed.is_none_or(|o| !o.contains_key(&d.res)) => {
                    Some(d.res.as_str())
                }
                _ => None,
            })
            .collect();
        Some(pending)
    }

    // ---- filesystems ----

    /// False (and refused) when the mount table could not be read.
    fn mounts_known(&mut self, resource: &Resource) -> bool {
        match &self.node.mounts {
            Observed::Ok(_) => true,
            Observed::Unavailable(why) => {
                self.refuse(resource, format!("cannot read the mount table: {why}"));
                false
            }
        }
    }

    fn up_fs(&mut self, resource: &Resource, spec: &FsSpec) {
        if !self.mounts_known(resource) {
            return;
        }
        let rid = resource.id;
        let (dev, mnt) = (&spec.dev, &spec.mnt);
        if let Some(top) = self.index.top_mount_at(mnt) {
            if self.index.is_device(dev, top) {
                self.already(rid, || {
                    format!("{} is already mounted on {}", dev.display(), mnt.display())
                });
            } else {
                self.refuse(
                    resource,
                    format!(
                        "{} is mounted on {}, not {}",
                        top.source(),
                        mnt.display(),
                        dev.display()
                    ),
                );
            }
            return;
        }
        if let Some(elsewhere) = self.index.mounts_of(dev).first() {
            self.refuse(
                resource,
                format!(
                    "{} is already mounted on {}",
                    dev.display(),
                    elsewhere.mount_point().display()
                ),
            );
            return;
        }
        if let Some(owners) = self.drbd_owner(dev) {
            if owners.is_empty() {
                self.refuse(
                    resource,
                    format!(
                        "{} looks like a DRBD device but no DRBD resource provides it",
                        dev.display()
                    ),
                );
                return;
            }
            if let Some(res) = owners.iter().find(|res| !self.primary.contains(*res)) {
                let role = self
                    .node
                    .drbd
                    .ok()
                    .and_then(|o| o.get(*res))
                    .map_or("not up".to_string(), |d| d.role.to_string());
                self.refuse(
                    resource,
                    format!("{} belongs to DRBD resource {res}, which is {role} here; it must be Primary before fsck or mount", dev.display()),
                );
                return;
            }
        }
        if !self.node.dirs.contains(mnt) {
            self.step(
                rid,
                Action::Mkdir { path: mnt.clone() },
                format!("mount point {} is missing", mnt.display()),
            );
        }
        // `fsck: true` on a type e2fsck cannot check is refused by the loader, not here.
        let fsck = spec.wants_fsck();
        self.mount_planned = true;
        self.step(
            rid,
            Action::Mount {
                dev: dev.clone(),
                mnt: mnt.clone(),
                fstype: spec.fstype.clone(),
                options: spec.options.clone(),
                fsck,
            },
            format!("{} is not mounted", mnt.display()),
        );
    }

    fn down_fs(&mut self, resource: &Resource, spec: &FsSpec) {
        if !self.mounts_known(resource) {
            return;
        }
        let Some(top) = self.index.top_mount_at(&spec.mnt) else {
            self.already(resource.id, || {
                format!("{} is already unmounted", spec.mnt.display())
            });
            return;
        };
        if !self.index.is_device(&spec.dev, top) {
            // Someone else's filesystem on our mount point is not ours to unmount.
            return;
        }
        // The mount point stays busy while anything is mounted below it, stacked or not.
        for sub in self.index.submounts_below(&spec.mnt) {
            let stack = self.index.stack_at(sub);
            let why = format!("mounted below {}", spec.mnt.display());
            self.unmount_stack(resource.id, spec, sub, stack, &why);
        }
        // Our filesystem may be mounted there more than once, one mount on another: each needs
        // its own unmount, down to the first that is someone else's.
        let stack = self.index.stack_at(&spec.mnt);
        let ours = stack
            .iter()
            .rev()
            .take_while(|m| self.index.is_device(&spec.dev, m))
            .count();
        let why = format!(
            "{} is mounted on {}",
            spec.dev.display(),
            spec.mnt.display()
        );
        self.unmount_stack(
            resource.id,
            spec,
            &spec.mnt,
            &stack[stack.len() - ours..],
            &why,
        );
    }

    /// Whether a step so far unmounts this very mount.
    fn unmounting(&self, mount: &Mount) -> bool {
        self.unmounted.iter().any(|m| std::ptr::eq(*m, mount))
    }

    /// One unmount per mount of `stack` (bottom to top, as the index lists them) that no step
    /// unmounts yet, top first. While more than one is left the reason says how many, so that
    /// two unmounts of one mount point in a row are two different steps: the controller takes a
    /// step planned again right after it ran for one that changed nothing.
    fn unmount_stack(
        &mut self,
        rid: ResourceId,
        spec: &FsSpec,
        point: &Path,
        stack: &[&'a Mount],
        why: &str,
    ) {
        let left: Vec<&'a Mount> = stack
            .iter()
            .rev()
            .copied()
            .filter(|m| !self.unmounting(m))
            .collect();
        for (i, mount) in left.iter().enumerate() {
            let count = left.len() - i;
            let reason = if count > 1 {
                format!("{why} ({count} mounts stacked there)")
            } else {
                why.to_string()
            };
            self.unmounted.push(mount);
            self.step(
                rid,
                Action::Umount {
                    mnt: point.to_path_buf(),
                    kill: spec.umount_kill,
                },
                reason,
            );
        }
    }

    // ---- containers ----

    fn container_state(
        &mut self,
        resource: &Resource,
        kind: &ContainerKind,
    ) -> Option<ContainerState> {
        let (observed, tool) = match kind {
            ContainerKind::Vz(_) => (&self.node.vz, "OpenVZ"),
            ContainerKind::Lxc(_) => (&self.node.lxc, "LXC"),
        };
        if let Observed::Unavailable(why) = observed {
            self.refuse(resource, format!("cannot observe {tool} containers: {why}"));
            return None;
        }
        self.index.container(kind)
    }

    fn up_container(&mut self, resource: &Resource, spec: &ContainerSpec) {
        let Some(state) = self.container_state(resource, &spec.kind) else {
            return;
        };
        let (rid, id) = (resource.id, spec.kind.id());
        let container = || spec.kind.clone();
        let steps_before = self.steps.len();
        self.plan_container_up(resource, state, rid, id, container);
        // Whatever was planned here ends with the container running (or a refusal, which
        // plans nothing).
        self.container_start_planned = self.steps.len() > steps_before;
    }

    fn plan_container_up(
        &mut self,
        resource: &Resource,
        state: ContainerState,
        rid: ResourceId,
        id: &str,
        container: impl Fn() -> ContainerKind,
    ) {
        match state {
            // converge's record of a freeze outlived it (killed between the thaw and the
            // record's removal): forgotten through a thaw, which finds nothing to thaw, or a
            // later freeze by someone else would look like converge's.
            ContainerState::Running if self.quorum_frozen().is_some() => {
                self.step(
                    rid,
                    Action::ContainerThaw {
                        container: container(),
                        stop: false,
                    },
                    format!("container {id} runs, and converge's record of freezing it is stale"),
                );
                self.thaw_planned = true;
            }
            ContainerState::Running => {
                self.already(rid, || format!("container {id} is already running"))
            }
            ContainerState::Stopped | ContainerState::Mounted => {
                self.step(
                    rid,
                    Action::ContainerStart {
                        container: container(),
                    },
                    format!("container {id} is down"),
                );
            }
            ContainerState::Starting => {
                self.step(
                    rid,
                    Action::ContainerWaitUp {
                        container: container(),
                    },
                    format!("container {id} is starting"),
                );
            }
            ContainerState::Stopping => {
                self.step(
                    rid,
                    Action::ContainerWaitDown {
                        container: container(),
                    },
                    format!("container {id} is stopping"),
                );
                self.step(
                    rid,
                    Action::ContainerStart {
                        container: container(),
                    },
                    format!("container {id} will be down"),
                );
            }
            // OpenVZ reports a container whose private area is on an unmounted filesystem as
            // deleted: once the mount planned above is done, it will be there (or the start
            // fails, saying so).
            ContainerState::Absent if self.mount_planned => self.step(
                rid,
                Action::ContainerStart {
                    container: container(),
                },
                format!("container {id} is not visible until its filesystem is mounted"),
            ),
            ContainerState::Absent => self.refuse(
                resource,
                format!("container {id} does not exist on this node"),
            ),
            ContainerState::Frozen if self.quorum_frozen().is_some() => {
                match self.suspended_drbd() {
                    Some(res) => self.wait(
                        resource,
                        format!(
                            "container {id} stays frozen while DRBD suspends the I/O of resource {res}; it is thawed once DRBD resumes it"
                        ),
                    ),
                    None => {
                        self.step(
                            rid,
                            Action::ContainerThaw {
                                container: container(),
                                stop: false,
                            },
                            format!(
                                "converge froze container {id} when this node lost quorum, and the service runs here again"
                            ),
                        );
                        self.thaw_planned = true;
                    }
                }
            }
            ContainerState::Frozen => self.refuse(
                resource,
                format!("container {id} is frozen; converge does not thaw containers"),
            ),
            ContainerState::Aborting => {
                self.refuse(resource, format!("container {id} is aborting a start"))
            }
        }
    }

    fn down_container(&mut self, resource: &Resource, spec: &ContainerSpec) {
        let Some(state) = self.container_state(resource, &spec.kind) else {
            return;
        };
        let (rid, id) = (resource.id, spec.kind.id());
        let container = spec.kind.clone();
        match state {
            ContainerState::Running | ContainerState::Starting | ContainerState::Aborting => {
                self.step(
                    rid,
                    Action::ContainerStop { container },
                    format!("container {id} is {}", state_word(state)),
                );
            }
            ContainerState::Stopping => {
                self.step(
                    rid,
                    Action::ContainerWaitDown { container },
                    format!("container {id} is stopping"),
                );
            }
            ContainerState::Frozen if self.quorum_frozen().is_some() => {
                match self.suspended_drbd() {
                    Some(res) => self.wait(
                        resource,
                        format!(
                            "container {id} stays frozen: DRBD suspends the I/O of resource {res}, and stopping it now would hang; it stops once DRBD resumes the I/O or demotes this node"
                        ),
                    ),
                    None => {
                        self.step(
                            rid,
                            Action::ContainerThaw {
                                container: container.clone(),
                                stop: true,
                            },
                            format!(
                                "converge froze container {id} when this node lost quorum, and the service stops here"
                            ),
                        );
                        self.step(
                            rid,
                            Action::ContainerStop { container },
                            format!("container {id} is thawed to be stopped"),
                        );
                    }
                }
            }
            ContainerState::Frozen => self.refuse(
                resource,
                format!("container {id} is frozen; converge does not thaw containers"),
            ),
            ContainerState::Absent | ContainerState::Stopped | ContainerState::Mounted => {
                self.already(rid, || format!("container {id} is already down"))
            }
        }
    }

    // ---- apps ----

    /// Whether the service's container runs now (apps inside a stopped container are down).
    /// A service without a container runs its apps on the host, which is always "running".
    fn app_host_running(&self) -> bool {
        let Some(container) = self.service.container() else {
            return true;
        };
        self.index.container(&container.kind) == Some(ContainerState::Running)
    }

    fn app_status(&self, rid: ResourceId) -> Option<&'a crate::observe::AppObservation> {
        self.index.app(&self.service.name, rid)
    }

    fn up_app(&mut self, resource: &Resource) {
        let rid = resource.id;
        if self.thaw_planned {
            return;
        }
        if !self.app_host_running() {
            let disabled_container = self
                .service
                .resources
                .iter()
                .find(|r| r.disabled && r.spec.as_container().is_some());
            if let Some(container) = disabled_container {
                self.refuse(
                    resource,
                    format!("its container ({}) is disabled and not running; converge does not start it", container.id),
                );
                return;
            }
            if !self.container_start_planned {
                // An optional container that was refused only warned: nothing starts it, and
                // an app start inside it would fail and roll back everything before it.
                let id = self.service.container().map_or("", |c| c.kind.id());
                self.refuse(
                    resource,
                    format!("its container {id} is not running and nothing starts it"),
                );
                return;
            }
            self.step(rid, Action::AppStart, "its container is not running yet");
            return;
        }
        match self.app_status(rid) {
            None => self.step(rid, Action::AppStart, "not started"),
            Some(obs) => match obs.status {
                AppStatus::Up | AppStatus::NotApplicable => {
                    self.already(rid, || format!("already up ({})", obs.detail))
                }
                AppStatus::Down => self.step(rid, Action::AppStart, obs.detail.clone()),
                AppStatus::Warn => self.refuse(
                    resource,
                    format!(
                        "check reports warn ({}); not starting an app in an unknown state",
                        obs.detail
                    ),
                ),
            },
        }
    }

    fn down_app(&mut self, resource: &Resource) {
        if self.quorum_frozen().is_some() && !self.drbd_primary_here() {
            // DRBD demoted this node under the service converge froze: the apps' I/O fails,
            // and a stop script could only fail on it and hold the stop up.
            self.already(
                resource.id,
                || "not stopped by its scripts: DRBD demoted this node under it, so its I/O fails; the container's stop ends it",
            );
            return;
        }
        if !self.app_host_running() {
            return;
        }
        match self.app_status(resource.id) {
            Some(obs) if matches!(obs.status, AppStatus::Up | AppStatus::Warn) => {
                self.step(resource.id, Action::AppStop, obs.detail.clone());
            }
            _ => self.already(resource.id, || "already down"),
        }
    }
}

/// The exact reverse of start order, except that filesystems go deepest mount point first
/// (a filesystem mounted inside another must come off before it).
fn stop_order(mut resources: Vec<&Resource>) -> Vec<&Resource> {
    resources.sort_by_key(|r| std::cmp::Reverse(r.id));
    let fs_depth = |r: &Resource| match &r.spec {
        Spec::Fs(f) => f.mnt.components().count(),
        _ => 0,
    };
    // Stable sort inside the fs block only: kinds stay in reverse start order.
    resources.sort_by(|a, b| match (a.id.kind, b.id.kind) {
        (Kind::Fs, Kind::Fs) => fs_depth(b).cmp(&fs_depth(a)),
        _ => std::cmp::Ordering::Equal,
    });
    resources
}

fn state_word(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Absent => "absent",
        ContainerState::Stopped => "stopped",
        ContainerState::Mounted => "mounted",
        ContainerState::Starting => "starting",
        ContainerState::Running => "running",
        ContainerState::Stopping => "stopping",
        ContainerState::Frozen => "frozen",
        ContainerState::Aborting => "aborting",
    }
}

/// Why a demotion must wait, or be forced.
enum Hazard {
    /// A filesystem of the device is mounted (or the mounts cannot be read): never demoted.
    Mounted(String),
    /// A process holds the device open, nothing of it is mounted: forced only when allowed.
    HeldOpen(String),
}
