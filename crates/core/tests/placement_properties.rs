//! `plan::placement::decide` on random clusters of three nodes, each node's view built from one
//! global state (roles, disks, which links are up, quorum as DRBD's `majority` computes it), as
//! DRBD would show it on each node. What must hold whatever the state:
//! - of two nodes that see each other, at most one takes the service;
//! - no node takes it while a peer it sees is Primary, or while it is Primary itself;
//! - a node takes it only with quorum reported and enforced, and UpToDate data;
//! - a Primary without quorum gives the service up.

use converge_core::manifest::{Failback, OnQuorumLoss};
use converge_core::observe::drbd::{
    ConnectionState, DiskState, DrbdConnection, DrbdDevice, DrbdPeerDevice, DrbdResource, Quorum,
    ReplicationState, Role,
};
use converge_core::plan::placement::{Decision, GiveUp, decide};
use proptest::prelude::*;

const N: usize = 3;
const NAMES: [&str; N] = ["deb1", "deb2", "deb3"];

#[derive(Debug, Clone)]
struct Cluster {
    /// Per node: its DRBD resource is up.
    up: [bool; N],
    primary: [bool; N],
    disk: [DiskState; N],
    /// links[i][j] for i < j: the link between i and j is up.
    links: [[bool; N]; N],
    /// Whether quorum is enforced (`quorum majority`); `off` reports quorum everywhere.
    enforced: bool,
    failback: Failback,
    on_quorum_loss: OnQuorumLoss,
}

impl Cluster {
    fn connected(&self, i: usize, j: usize) -> bool {
        let (a, b) = (i.min(j), i.max(j));
        i != j && self.up[i] && self.up[j] && self.links[a][b]
    }

    fn quorum(&self, i: usize) -> Quorum {
        if !self.enforced {
            return Quorum::Yes;
        }
        let reachable = 1 + (0..N).filter(|&j| self.connected(i, j)).count();
        if reachable * 2 > N {
            Quorum::Yes
        } else {
            Quorum::No
        }
    }

    /// What node `i` sees, as its drbdsetup would report it.
    fn view(&self, i: usize) -> Option<DrbdResource> {
        if !self.up[i] {
            return None;
        }
        let connections = (0..N)
            .filter(|&j| j != i)
            .map(|j| {
                let seen = self.connected(i, j);
                DrbdConnection {
                    peer_node_id: Some(j as u32),
                    name: Some(NAMES[j].to_string()),
                    state: if seen {
                        ConnectionState::Connected
                    } else {
                        ConnectionState::Connecting
                    },
                    peer_role: match (seen, self.primary[j]) {
                        (false, _) => Role::Unknown,
                        (true, true) => Role::Primary,
                        (true, false) => Role::Secondary,
                    },
                    peer_devices: vec![DrbdPeerDevice {
                        volume: 0,
                        replication: if seen {
                            ReplicationState::Established
                        } else {
                            ReplicationState::Off
                        },
                        peer_disk: if seen {
                            self.disk[j].clone()
                        } else {
                            DiskState::DUnknown
                        },
                        percent_in_sync: None,
                    }],
                }
            })
            .collect();
        Some(DrbdResource {
            name: "data".into(),
            role: if self.primary[i] {
                Role::Primary
            } else {
                Role::Secondary
            },
            suspended: false,
            devices: vec![DrbdDevice {
                volume: 0,
                minor: 0,
                disk: self.disk[i].clone(),
                client: false,
                open: false,
                quorum: self.quorum(i),
            }],
            connections,
        })
    }

    fn decisions(&self) -> Vec<Decision> {
        let nodes: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
        (0..N)
            .map(|i| {
                decide(
                    &nodes,
                    NAMES[i],
                    self.failback,
                    self.on_quorum_loss,
                    self.view(i).as_ref(),
                    self.enforced,
                )
            })
            .collect()
    }
}

fn disk() -> impl Strategy<Value = DiskState> {
    prop_oneof![
        4 => Just(DiskState::UpToDate),
        1 => Just(DiskState::Outdated),
        1 => Just(DiskState::Inconsistent),
        1 => Just(DiskState::Consistent),
    ]
}

fn cluster() -> impl Strategy<Value = Cluster> {
    (
        prop::array::uniform3(prop::bool::weighted(0.9)),
        prop::array::uniform3(prop::bool::weighted(0.3)),
        prop::array::uniform3(disk()),
        prop::array::uniform3(prop::array::uniform3(prop::bool::weighted(0.7))),
        prop::bool::weighted(0.8),
        prop_oneof![Just(Failback::Never), Just(Failback::Preferred)],
        prop_oneof![Just(OnQuorumLoss::Stop), Just(OnQuorumLoss::Freeze)],
    )
        .prop_map(
            |(up, primary, disk, links, enforced, failback, on_quorum_loss)| Cluster {
                up,
                // A node whose resource is down is not Primary.
                primary: [0, 1, 2].map(|i| up[i] && primary[i]),
                disk,
                links,
                enforced,
                failback,
                on_quorum_loss,
            },
        )
}

fn takes(d: &Decision) -> bool {
    matches!(d, Decision::Take { .. })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn two_nodes_that_see_each_other_never_both_take(c in cluster()) {
        let d = c.decisions();
        for i in 0..N {
            for j in i + 1..N {
                prop_assert!(
                    !(takes(&d[i]) && takes(&d[j]) && c.connected(i, j)),
                    "{} and {} both take: {d:?}\n{c:?}", NAMES[i], NAMES[j]
                );
            }
        }
    }

    #[test]
    fn nobody_takes_beside_a_primary_or_without_quorum_or_good_data(c in cluster()) {
        let d = c.decisions();
        for i in 0..N {
            if !takes(&d[i]) {
                continue;
            }
            prop_assert!(!c.primary[i], "{} takes while Primary: {d:?}", NAMES[i]);
            prop_assert!(
                !(0..N).any(|j| c.primary[j] && c.connected(i, j)),
                "{} takes beside a Primary it sees: {d:?}\n{c:?}", NAMES[i]
            );
            prop_assert!(c.enforced && c.quorum(i) == Quorum::Yes, "{d:?}\n{c:?}");
            prop_assert_eq!(&c.disk[i], &DiskState::UpToDate);
        }
    }

    #[test]
    fn a_primary_without_quorum_gives_it_up_or_freezes_as_the_manifest_says(c in cluster()) {
        for (i, d) in c.decisions().iter().enumerate() {
            if c.up[i] && c.primary[i] && c.quorum(i) == Quorum::No {
                let want = match c.on_quorum_loss {
                    OnQuorumLoss::Stop => Decision::GiveUp(GiveUp::QuorumLost),
                    OnQuorumLoss::Freeze => Decision::Freeze,
                };
                prop_assert_eq!(d, &want);
            }
        }
    }
}
