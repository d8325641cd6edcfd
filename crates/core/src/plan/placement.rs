//! Where a service with `failover: auto` runs, decided on each node from what its own DRBD
//! shows. Nodes never talk to each other: DRBD's quorum says which side of a partition may
//! write, DRBD's roles say who holds the data, and the order of `nodes` breaks ties between
//! nodes that see each other. Pure: the same resource state always gives the same decision.
//!
//! Why this is safe without a cluster layer (the guarantees, and what they rest on):
//! - A node takes the service only while DRBD says its partition has quorum (on every volume)
//!   *and* the running DRBD configuration enforces quorum: with `quorum off` DRBD reports
//!   quorum on every node, so the report alone proves nothing.
//! - Quorum is what lets a node promote over peers it cannot see: a peer on the other side of a
//!   cut has no quorum, and DRBD (`on-no-quorum io-error`) keeps it from writing. A connected
//!   Primary peer still holds the service off.
//! - Of two eligible nodes that see each other, the one listed later stands by. Two that do
//!   not see each other but both have quorum (a third node bridges them) both contend: the
//!   later-listed one waits longer ([`Decision::Take`]'s rank), and DRBD refuses the second
//!   promotion (a cluster-wide state change through the bridging node), which converge takes
//!   as "another node won".
//! - Unknown never starts anything: a quorum DRBD does not report, a disk not UpToDate, a
//!   resource not observed.

use serde::Serialize;

use crate::manifest::{Failback, Failover, OnQuorumLoss};
use crate::observe::drbd::{ConnectionState, DiskState, DrbdResource, Quorum, Role};
use crate::observe::drbd_conf::{QuorumPolicy, ResourceConfig, ResourceOptions};

/// What a node listed in `nodes` does about the service now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// This node holds the service (its resource is Primary here) and keeps it.
    Keep,
    /// This node may take the service: it is eligible and no node listed before it that it
    /// can see is. `rank` is its position among the listed nodes (0 first): the later a node
    /// is listed, the longer it waits before promoting, so that a better-placed node that is
    /// also contending wins the race.
    Take { rank: usize },
    /// This node holds the service but gives it up (stops it down to Secondary).
    GiveUp(GiveUp),
    /// This node holds the service and DRBD says its partition lost quorum, and the manifest
    /// says `on_quorum_loss: freeze`: the container is frozen, DRBD stays Primary and the
    /// filesystem mounted while DRBD holds the I/O. Quorum back, it is [`Decision::Keep`]
    /// again (thawed); DRBD demoting this node makes it stand by (thawed and stopped).
    Freeze,
    /// This node stands by: another node holds the service or should take it, or this one
    /// cannot.
    StandBy(StandBy),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum GiveUp {
    /// DRBD says this node's partition lost quorum: the other side may take the service.
    QuorumLost,
    /// `failback: preferred`: `to`, listed before this node, is back, connected and UpToDate.
    Failback { to: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StandBy {
    /// The resource is not up here (standing by brings it up).
    NotUp,
    /// A connected peer is Primary: it holds the service.
    PeerPrimary { peer: Option<String> },
    /// DRBD does not say this partition has quorum (`No`, or not reported: `Unknown`).
    NoQuorum { quorum: Quorum },
    /// The running DRBD configuration does not enforce quorum (or it could not be read): DRBD's
    /// own quorum report cannot be trusted, so nothing fails over.
    QuorumNotEnforced,
    /// This node's data is not UpToDate on every volume.
    Disk { disk: DiskState },
    /// `peer`, listed before this node, is connected, Secondary and UpToDate: it takes the
    /// service.
    Preferred { peer: String },
}

impl Decision {
    /// Whether the service runs here (or is about to, or is held here frozen).
    pub fn runs_here(&self) -> bool {
        matches!(
            self,
            Decision::Keep | Decision::Take { .. } | Decision::Freeze
        )
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Keep => f.write_str("runs here"),
            Decision::Take { rank } => write!(
                f,
                "takes the service here (listed {}: it waits {rank} × failover_delay before it promotes)",
                rank + 1
            ),
            Decision::GiveUp(GiveUp::QuorumLost) => {
                f.write_str("gives the service up: DRBD says this node's partition lost quorum")
            }
            Decision::Freeze => f.write_str(
                "holds the service frozen: DRBD says this node's partition lost quorum (on_quorum_loss: freeze); it thaws when quorum returns, and stops if DRBD demotes this node",
            ),
            Decision::GiveUp(GiveUp::Failback { to }) => write!(
                f,
                "gives the service back to {to}, listed before this node (failback: preferred)"
            ),
            Decision::StandBy(why) => {
                f.write_str("standby here: ")?;
                match why {
                    StandBy::NotUp => f.write_str("the DRBD resource is not up here yet"),
                    StandBy::PeerPrimary { peer } => match peer {
                        Some(peer) => write!(f, "{peer} holds it (Primary)"),
                        None => f.write_str("a peer holds it (Primary)"),
                    },
                    StandBy::NoQuorum { quorum: Quorum::No } => {
                        f.write_str("DRBD says this node's partition has no quorum")
                    }
                    StandBy::NoQuorum { .. } => {
                        f.write_str("DRBD does not say this node's partition has quorum")
                    }
                    StandBy::QuorumNotEnforced => f.write_str(
                        "the running DRBD configuration does not enforce quorum, so DRBD's quorum proves nothing: set `quorum majority` in the resource's options and run `drbdadm adjust` (failover: auto needs it)",
                    ),
                    StandBy::Disk { disk } => {
                        write!(f, "this node's data is {disk}, not UpToDate")
                    }
                    StandBy::Preferred { peer } => write!(
                        f,
                        "{peer}, listed before this node, is connected and UpToDate: it takes the service"
                    ),
                }
            }
        }
    }
}

/// The decision for `this` node, listed in `nodes` (in order of preference), from its view of
/// the service's DRBD resource (`None`: not up here). `quorum_enforced`: whether the running
/// configuration of that resource enforces quorum (`quorum majority`, `all` or a number), as
/// far as it could be read.
pub fn decide(
    nodes: &[String],
    this: &str,
    failback: Failback,
    on_quorum_loss: OnQuorumLoss,
    res: Option<&DrbdResource>,
    quorum_enforced: bool,
) -> Decision {
    let Some(res) = res else {
        return Decision::StandBy(StandBy::NotUp);
    };
    let rank = |name: &str| nodes.iter().position(|n| n == name);
    let my_rank = rank(this).unwrap_or(nodes.len());
    let quorum = res.quorum();
    // A peer listed before this node, connected, Secondary and UpToDate on every volume: the
    // node that should hold the service when it is eligible.
    let preferred = || {
        res.connections.iter().find_map(|c| {
            let name = c.name.as_deref()?;
            let listed_before = rank(name).is_some_and(|r| r < my_rank);
            let up_to_date = !c.peer_devices.is_empty()
                && c.peer_devices
                    .iter()
                    .all(|p| p.peer_disk == DiskState::UpToDate);
            (listed_before
                && c.state == ConnectionState::Connected
                && c.peer_role == Role::Secondary
                && up_to_date)
                .then(|| name.to_string())
        })
    };

    if res.role == Role::Primary {
        if quorum == Quorum::No {
            return match on_quorum_loss {
                OnQuorumLoss::Stop => Decision::GiveUp(GiveUp::QuorumLost),
                OnQuorumLoss::Freeze => Decision::Freeze,
            };
        }
        if failback == Failback::Preferred
            && let Some(to) = preferred()
        {
            return Decision::GiveUp(GiveUp::Failback { to });
        }
        return Decision::Keep;
    }

    if let Some(peer) = res
        .connections
        .iter()
        .find(|c| c.peer_role == Role::Primary)
    {
        return Decision::StandBy(StandBy::PeerPrimary {
            peer: peer.peer_name(),
        });
    }
    if quorum != Quorum::Yes {
        return Decision::StandBy(StandBy::NoQuorum { quorum });
    }
    if !quorum_enforced {
        return Decision::StandBy(StandBy::QuorumNotEnforced);
    }
    if let Some(d) = res.devices.iter().find(|d| d.disk != DiskState::UpToDate) {
        return Decision::StandBy(StandBy::Disk {
            disk: d.disk.clone(),
        });
    }
    if res.devices.is_empty() {
        return Decision::StandBy(StandBy::Disk {
            disk: DiskState::Diskless,
        });
    }
    if let Some(peer) = preferred() {
        return Decision::StandBy(StandBy::Preferred { peer });
    }
    Decision::Take { rank: my_rank }
}

/// Where DRBD options were read: what decides how a warning reads and what fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsFrom {
    /// `drbdsetup show`: what the kernel runs with now (fixed by editing, then `drbdadm adjust`).
    Running,
    /// `drbdadm dump`: the configuration files.
    Files,
}

/// What in a failover resource's DRBD options works against failing over, for a holder that
/// does `on_quorum_loss` when its partition loses quorum (an absent option is DRBD's default,
/// as both `drbdsetup show` and a configuration file leave it out).
pub fn option_warnings(
    res: &str,
    options: &ResourceOptions,
    on_quorum_loss: OnQuorumLoss,
    from: OptionsFrom,
) -> Vec<String> {
    let (verb, adjust) = match from {
        OptionsFrom::Running => ("runs", format!(" and run `drbdadm adjust {res}`")),
        OptionsFrom::Files => ("is configured", String::new()),
    };
    let mut warnings = Vec::new();
    if options.auto_promote.as_deref() != Some("no") {
        warnings.push(format!(
            "resource {res} {verb} with auto-promote {}: opening its device (a mount) promotes it outside the failover decision; set `auto-promote no` in its options{adjust}",
            options.auto_promote.as_deref().unwrap_or("yes (DRBD's default)")
        ));
    }
    let on_no_quorum = options
        .on_no_quorum
        .as_deref()
        .unwrap_or("suspend-io (DRBD's default)");
    match on_quorum_loss {
        OnQuorumLoss::Stop => {
            if options.on_no_quorum.as_deref() != Some("io-error") {
                warnings.push(format!(
                    "resource {res} {verb} with on-no-quorum {on_no_quorum}: a holder that loses quorum freezes its I/O and cannot unmount to give the service up; set `on-no-quorum io-error`{adjust}, or `on_quorum_loss: freeze` in the manifest"
                ));
            }
        }
        OnQuorumLoss::Freeze => {
            if options.on_no_quorum.as_deref() == Some("io-error") {
                warnings.push(format!(
                    "resource {res} {verb} with on-no-quorum io-error: a holder that loses quorum sees its I/O fail, so the container it freezes (on_quorum_loss: freeze) has nothing left to resume; set `on-no-quorum suspend-io`{adjust}"
                ));
            }
            if options.on_suspended_primary_outdated.as_deref() != Some("force-secondary") {
                warnings.push(format!(
                    "resource {res} {verb} with on-suspended-primary-outdated {}: once the other side has taken the service over, a frozen holder that meets it again stays Primary with its I/O suspended, and DRBD does not reconnect it; set `on-suspended-primary-outdated force-secondary` (DRBD 9.1.7 or later){adjust}",
                    options
                        .on_suspended_primary_outdated
                        .as_deref()
                        .unwrap_or("disconnect (DRBD's default)")
                ));
            }
        }
    }
    warnings
}

/// What a failover service's DRBD resource, as configured (`drbdadm dump RES` on a node),
/// means for failing over: `errors` make failing over impossible or unsafe, `warnings` work
/// against it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigCheck {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks `failover`'s nodes against resource `res`'s configuration. Quorum must be enforced,
/// and must survive the loss of any one node, or no survivor ever has quorum to take over:
/// with `quorum majority`, that takes three hosts at least (two data nodes and a diskless
/// tiebreaker).
pub fn check_config(failover: &Failover, res: &str, config: &ResourceConfig) -> ConfigCheck {
    let mut check = ConfigCheck::default();
    let hosts: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
    for node in &failover.nodes {
        match config.hosts.iter().find(|h| &h.name == node) {
            None => check.errors.push(format!(
                "{node} (in nodes) is not a host of DRBD resource {res} (its hosts: {})",
                if hosts.is_empty() { "none".to_string() } else { hosts.join(", ") }
            )),
            Some(h) if h.diskless => check.errors.push(format!(
                "{node} (in nodes) has no disk for DRBD resource {res} (disk none): it cannot run the service; list only nodes with the data"
            )),
            Some(_) => {}
        }
    }
    let n = config.hosts.len();
    let survivors = n.saturating_sub(1);
    let example = "docs/examples/failover-tiebreaker.res";
    match config.options.quorum {
        QuorumPolicy::Off => check.errors.push(format!(
            "failover: auto needs DRBD quorum, and resource {res} does not enforce it (no `quorum` in its options): without it a node cut off would take the service too; add `quorum majority;` and `on-no-quorum io-error;` to its options (see {example})"
        )),
        QuorumPolicy::Majority if n == 2 => check.errors.push(format!(
            "resource {res} has two nodes and no third: once one is lost, the survivor is half of them, not a majority, so it never has quorum to take the service over; add a third node, a diskless tiebreaker is enough (`on tb {{ volume 0 {{ disk none; }} }}`, see {example})"
        )),
        QuorumPolicy::Majority if n < 2 => {}
        QuorumPolicy::All => check.errors.push(format!(
            "resource {res} has `quorum all`: once any node is lost no node has quorum, so the service never fails over; use `quorum majority` with three nodes or more"
        )),
        QuorumPolicy::AtLeast(k) if (survivors as u64) < u64::from(k) => check.errors.push(format!(
            "resource {res} has `quorum {k}` with {n} node(s): once one is lost, {survivors} remain, fewer than {k}, so the service never fails over; lower it or add nodes (a diskless tiebreaker counts)"
        )),
        QuorumPolicy::Majority | QuorumPolicy::AtLeast(_) => {}
    }
    check.warnings = option_warnings(
        res,
        &config.options,
        failover.on_quorum_loss,
        OptionsFrom::Files,
    );
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::drbd::{DrbdConnection, DrbdDevice, DrbdPeerDevice, ReplicationState};

    const NODES: [&str; 3] = ["deb1", "deb2", "deb3"];

    fn nodes() -> Vec<String> {
        NODES.iter().map(|n| n.to_string()).collect()
    }

    /// A peer as seen from here: `Connected`+role+disk, or cut off (`StandAlone`, unknown).
    fn peer(name: &str, state: ConnectionState, role: Role, disk: DiskState) -> DrbdConnection {
        let connected = state == ConnectionState::Connected;
        DrbdConnection {
            peer_node_id: None,
            name: Some(name.into()),
            state,
            peer_role: if connected { role } else { Role::Unknown },
            peer_devices: vec![DrbdPeerDevice {
                volume: 0,
                replication: if connected {
                    ReplicationState::Established
                } else {
                    ReplicationState::Off
                },
                peer_disk: if connected { disk } else { DiskState::DUnknown },
                percent_in_sync: None,
            }],
        }
    }

    fn seen(name: &str, role: Role) -> DrbdConnection {
        peer(name, ConnectionState::Connected, role, DiskState::UpToDate)
    }

    fn cut(name: &str) -> DrbdConnection {
        peer(
            name,
            ConnectionState::Connecting,
            Role::Unknown,
            DiskState::DUnknown,
        )
    }

    fn res(
        role: Role,
        disk: DiskState,
        quorum: Quorum,
        peers: Vec<DrbdConnection>,
    ) -> DrbdResource {
        DrbdResource {
            name: "data".into(),
            role,
            suspended: false,
            devices: vec![DrbdDevice {
                volume: 0,
                minor: 0,
                disk,
                client: false,
                open: false,
                quorum,
            }],
            connections: peers,
        }
    }

    fn on(this: &str, failback: Failback, r: &DrbdResource) -> Decision {
        decide(&nodes(), this, failback, OnQuorumLoss::Stop, Some(r), true)
    }

    use DiskState::{Outdated, UpToDate};
    use Role::{Primary, Secondary};

    #[test]
    fn the_holder_keeps_the_service_until_its_partition_loses_quorum() {
        let holding = res(
            Primary,
            UpToDate,
            Quorum::Yes,
            vec![seen("deb2", Secondary)],
        );
        assert_eq!(on("deb1", Failback::Never, &holding), Decision::Keep);
        // Peers cut off, quorum kept (a tiebreaker still answers): keep.
        let alone_with_quorum = res(Primary, UpToDate, Quorum::Yes, vec![cut("deb2")]);
        assert_eq!(
            on("deb1", Failback::Never, &alone_with_quorum),
            Decision::Keep
        );
        // Not reported: the holder keeps running (DRBD itself fails its I/O if quorum is gone).
        let unknown = res(Primary, UpToDate, Quorum::Unknown, vec![cut("deb2")]);
        assert_eq!(on("deb1", Failback::Never, &unknown), Decision::Keep);
        let lost = res(
            Primary,
            UpToDate,
            Quorum::No,
            vec![cut("deb2"), cut("deb3")],
        );
        assert_eq!(
            on("deb1", Failback::Never, &lost),
            Decision::GiveUp(GiveUp::QuorumLost)
        );
    }

    #[test]
    fn a_survivor_with_quorum_takes_the_service_over_a_peer_it_cannot_see() {
        // deb1 powered off; deb2 still sees deb3 (a diskless tiebreaker, say).
        let survivor = res(
            Secondary,
            UpToDate,
            Quorum::Yes,
            vec![cut("deb1"), seen("deb3", Secondary)],
        );
        assert_eq!(
            on("deb2", Failback::Never, &survivor),
            Decision::Take { rank: 1 }
        );
    }

    #[test]
    fn nothing_starts_without_quorum_seen_and_enforced() {
        let cut_off = |quorum| res(Secondary, UpToDate, quorum, vec![cut("deb1"), cut("deb3")]);
        for quorum in [Quorum::No, Quorum::Unknown] {
            assert_eq!(
                on("deb2", Failback::Never, &cut_off(quorum)),
                Decision::StandBy(StandBy::NoQuorum { quorum })
            );
        }
        // `quorum off` reports quorum everywhere: not to be trusted.
        let reported = res(Secondary, UpToDate, Quorum::Yes, vec![cut("deb1")]);
        assert_eq!(
            decide(
                &nodes(),
                "deb2",
                Failback::Never,
                OnQuorumLoss::Stop,
                Some(&reported),
                false
            ),
            Decision::StandBy(StandBy::QuorumNotEnforced)
        );
        assert_eq!(
            decide(
                &nodes(),
                "deb2",
                Failback::Never,
                OnQuorumLoss::Stop,
                None,
                true
            ),
            Decision::StandBy(StandBy::NotUp)
        );
    }

    #[test]
    fn a_connected_primary_holds_the_service_off_whatever_the_order() {
        let r = res(
            Secondary,
            UpToDate,
            Quorum::Yes,
            vec![seen("deb2", Primary)],
        );
        assert_eq!(
            on("deb1", Failback::Never, &r),
            Decision::StandBy(StandBy::PeerPrimary {
                peer: Some("deb2".into())
            })
        );
    }

    #[test]
    fn stale_data_never_takes_the_service() {
        let r = res(Secondary, Outdated, Quorum::Yes, vec![cut("deb1")]);
        assert_eq!(
            on("deb2", Failback::Never, &r),
            Decision::StandBy(StandBy::Disk { disk: Outdated })
        );
    }

    #[test]
    fn of_two_eligible_nodes_that_see_each_other_the_first_listed_takes_it() {
        let deb2 = res(
            Secondary,
            UpToDate,
            Quorum::Yes,
            vec![seen("deb1", Secondary), seen("deb3", Secondary)],
        );
        assert_eq!(
            on("deb2", Failback::Never, &deb2),
            Decision::StandBy(StandBy::Preferred {
                peer: "deb1".into()
            })
        );
        let deb1 = res(
            Secondary,
            UpToDate,
            Quorum::Yes,
            vec![seen("deb2", Secondary), seen("deb3", Secondary)],
        );
        assert_eq!(
            on("deb1", Failback::Never, &deb1),
            Decision::Take { rank: 0 }
        );
        // A preferred node with stale data does not count.
        let deb2_fresher = res(
            Secondary,
            UpToDate,
            Quorum::Yes,
            vec![peer(
                "deb1",
                ConnectionState::Connected,
                Secondary,
                Outdated,
            )],
        );
        assert_eq!(
            on("deb2", Failback::Never, &deb2_fresher),
            Decision::Take { rank: 1 }
        );
    }

    #[test]
    fn failback_preferred_gives_the_service_back_failback_never_keeps_it() {
        let deb2_holding = res(
            Primary,
            UpToDate,
            Quorum::Yes,
            vec![seen("deb1", Secondary), seen("deb3", Secondary)],
        );
        assert_eq!(on("deb2", Failback::Never, &deb2_holding), Decision::Keep);
        assert_eq!(
            on("deb2", Failback::Preferred, &deb2_holding),
            Decision::GiveUp(GiveUp::Failback { to: "deb1".into() })
        );
        // Not yet UpToDate (resyncing): not yet.
        let resyncing = res(
            Primary,
            UpToDate,
            Quorum::Yes,
            vec![peer(
                "deb1",
                ConnectionState::Connected,
                Secondary,
                DiskState::Inconsistent,
            )],
        );
        assert_eq!(on("deb2", Failback::Preferred, &resyncing), Decision::Keep);
        // The first listed node has nowhere better to go.
        let deb1_holding = res(
            Primary,
            UpToDate,
            Quorum::Yes,
            vec![seen("deb2", Secondary)],
        );
        assert_eq!(
            on("deb1", Failback::Preferred, &deb1_holding),
            Decision::Keep
        );
    }

    #[test]
    fn one_volume_without_quorum_is_no_quorum() {
        let mut r = res(Primary, UpToDate, Quorum::Yes, vec![cut("deb2")]);
        let mut second = r.devices[0].clone();
        second.volume = 1;
        second.minor = 1;
        second.quorum = Quorum::No;
        r.devices.push(second);
        assert_eq!(
            on("deb1", Failback::Never, &r),
            Decision::GiveUp(GiveUp::QuorumLost)
        );
    }

    mod config_check {
        use super::super::*;
        use crate::observe::drbd_conf::Host;

        fn config(hosts: &[(&str, bool)], quorum: QuorumPolicy) -> ResourceConfig {
            ResourceConfig {
                options: ResourceOptions {
                    quorum,
                    on_no_quorum: Some("io-error".into()),
                    auto_promote: Some("no".into()),
                    on_suspended_primary_outdated: None,
                },
                hosts: hosts
                    .iter()
                    .map(|(name, diskless)| Host {
                        name: (*name).into(),
                        diskless: *diskless,
                    })
                    .collect(),
            }
        }

        fn failover(nodes: &[&str]) -> Failover {
            Failover {
                nodes: nodes.iter().map(|n| n.to_string()).collect(),
                failback: Failback::Never,
                on_quorum_loss: OnQuorumLoss::Stop,
            }
        }

        /// (host, diskless)
        type Hosts<'a> = &'a [(&'a str, bool)];

        const TIEBREAKER: Hosts = &[("deb1", false), ("deb2", false), ("tb", true)];

        #[test]
        fn each_configuration_and_what_it_means_for_failing_over() {
            use QuorumPolicy::*;
            let two: Hosts = &[("deb1", false), ("deb2", false)];
            let three: Hosts = &[("deb1", false), ("deb2", false), ("deb3", false)];
            // (hosts, quorum, nodes, the error's fragment or none)
            type Case<'a> = (Hosts<'a>, QuorumPolicy, &'a [&'a str], Option<&'a str>);
            let cases: &[Case] = &[
                (TIEBREAKER, Majority, &["deb1", "deb2"], None),
                (three, Majority, &["deb1", "deb2", "deb3"], None),
                (three, AtLeast(2), &["deb1", "deb2"], None),
                (
                    two,
                    Majority,
                    &["deb1", "deb2"],
                    Some("two nodes and no third"),
                ),
                (
                    TIEBREAKER,
                    Off,
                    &["deb1", "deb2"],
                    Some("does not enforce it"),
                ),
                (TIEBREAKER, All, &["deb1", "deb2"], Some("`quorum all`")),
                (
                    TIEBREAKER,
                    AtLeast(3),
                    &["deb1", "deb2"],
                    Some("fewer than 3"),
                ),
                (
                    TIEBREAKER,
                    Majority,
                    &["deb1", "deb3"],
                    Some("deb3 (in nodes) is not a host"),
                ),
                (
                    TIEBREAKER,
                    Majority,
                    &["deb1", "tb"],
                    Some("tb (in nodes) has no disk"),
                ),
            ];
            for (hosts, quorum, nodes, error) in cases {
                let check = check_config(&failover(nodes), "data", &config(hosts, *quorum));
                match error {
                    None => assert!(check.errors.is_empty(), "{hosts:?} {quorum:?}: {check:?}"),
                    Some(fragment) => assert!(
                        check.errors.len() == 1 && check.errors[0].contains(fragment),
                        "{hosts:?} {quorum:?} {nodes:?}: {check:?}"
                    ),
                }
                assert!(check.warnings.is_empty(), "{check:?}");
            }
        }

        #[test]
        fn options_against_failing_over_are_warnings_about_the_files() {
            let mut c = config(TIEBREAKER, QuorumPolicy::Majority);
            c.options.auto_promote = None;
            c.options.on_no_quorum = Some("suspend-io".into());
            let check = check_config(&failover(&["deb1", "deb2"]), "data", &c);
            assert!(check.errors.is_empty(), "{check:?}");
            assert_eq!(check.warnings.len(), 2, "{check:?}");
            assert!(
                check.warnings[0].contains("is configured with auto-promote yes (DRBD's default)")
            );
            assert!(check.warnings[1].contains("on-no-quorum suspend-io"));
            assert!(!check.warnings.iter().any(|w| w.contains("drbdadm adjust")));
            let running =
                option_warnings("data", &c.options, OnQuorumLoss::Stop, OptionsFrom::Running);
            assert!(
                running
                    .iter()
                    .all(|w| w.contains("runs with") && w.contains("drbdadm adjust data"))
            );
        }

        /// A holder that freezes wants the opposite of one that stops: I/O suspended, not
        /// failed, and DRBD demoting it when it meets the node that took over.
        #[test]
        fn a_freezing_holder_wants_suspend_io_and_force_secondary() {
            let freeze = Failover {
                on_quorum_loss: OnQuorumLoss::Freeze,
                ..failover(&["deb1", "deb2"])
            };
            let mut c = config(TIEBREAKER, QuorumPolicy::Majority);
            // As config() has it: io-error, and no on-suspended-primary-outdated.
            let check = check_config(&freeze, "data", &c);
            assert!(check.errors.is_empty(), "{check:?}");
            assert_eq!(check.warnings.len(), 2, "{check:?}");
            assert!(
                check.warnings[0].contains(
                    "on-no-quorum io-error: a holder that loses quorum sees its I/O fail"
                ),
                "{check:?}"
            );
            assert!(
                check.warnings[1]
                    .contains("on-suspended-primary-outdated disconnect (DRBD's default)"),
                "{check:?}"
            );
            // What docs/examples/freeze-tiebreaker.res sets: nothing to say.
            c.options.on_no_quorum = None;
            c.options.on_suspended_primary_outdated = Some("force-secondary".into());
            assert_eq!(check_config(&freeze, "data", &c), ConfigCheck::default());
            c.options.on_no_quorum = Some("suspend-io".into());
            assert_eq!(check_config(&freeze, "data", &c), ConfigCheck::default());
            // The same options under `stop` warn about the suspended I/O.
            let stop = check_config(&failover(&["deb1", "deb2"]), "data", &c);
            assert_eq!(stop.warnings.len(), 1, "{stop:?}");
            assert!(stop.warnings[0].contains("or `on_quorum_loss: freeze` in the manifest"));
        }
    }
}
