//! The typed DRBD model every DRBD observer produces, shaped like DRBD 9
//! (resource → devices, connections → peer devices). DRBD 8.4's /proc/drbd is mapped into it.
//!
//! State names are DRBD's own spellings. Unknown spellings are kept as `Other` rather than
//! rejected, so a newer DRBD never makes observation fail; the planner treats `Other` as "not the
//! state it is waiting for".

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

macro_rules! drbd_state_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A spelling this version of converge does not know.
            Other(String),
        }

        impl $name {
            /// Parses DRBD's spelling; never fails (unknown spellings become `Other`).
            pub fn parse(text: &str) -> Self {
                match text {
                    $(stringify!($variant) => $name::$variant,)+
                    other => $name::Other(other.to_string()),
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                    $name::Other(s) => s,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

drbd_state_enum!(
    /// A node's role for a resource.
    Role { Primary, Secondary, Unknown }
);

drbd_state_enum!(
    /// Local or peer disk state.
    DiskState {
        Diskless, Attaching, Detaching, Failed, Negotiating, Inconsistent, Outdated, DUnknown,
        Consistent, UpToDate,
    }
);

drbd_state_enum!(
    /// Connection state (DRBD 9 `connection:`; the connection half of 8.4's `cs:`).
    ConnectionState {
        StandAlone, Disconnecting, Unconnected, Timeout, BrokenPipe, NetworkFailure,
        ProtocolError, TearDown, Connecting, Connected, WFConnection, WFReportParams,
    }
);

drbd_state_enum!(
    /// Replication state of a peer device (DRBD 9 `replication:`; 8.4's `cs:` past Connected).
    ReplicationState {
        Off, Established, StartingSyncS, StartingSyncT, WFBitMapS, WFBitMapT, WFSyncUUID,
        SyncSource, SyncTarget, PausedSyncS, PausedSyncT, VerifyS, VerifyT, Ahead, Behind,
    }
);

impl ConnectionState {
    /// DRBD 8.4's `cs:` mixes connection and replication states: split it.
    pub fn from_84_cs(cs: &str) -> (ConnectionState, Option<ReplicationState>) {
        match ReplicationState::parse(cs) {
            ReplicationState::Other(_) => (ConnectionState::parse(cs), None),
            // `Connected` in 8.4 means connected and idle: DRBD 9 calls that Established.
            repl => (ConnectionState::Connected, Some(repl)),
        }
    }
}

/// Whether DRBD says a device has quorum. DRBD says it only where quorum is supported and
/// reported: DRBD 8.4's /proc/drbd, a drbdsetup whose `status --json` lacks the field (seen from
/// DRBD 9.3.2) and an events2 `create` without it say nothing, and that is `Unknown` — never read
/// as quorum, since a service that starts on quorum must see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quorum {
    Yes,
    No,
    Unknown,
}

impl Quorum {
    /// From DRBD's `yes`/`no` (events2) or `true`/`false` (JSON).
    pub fn from_flag(flag: Option<bool>) -> Quorum {
        match flag {
            Some(true) => Quorum::Yes,
            Some(false) => Quorum::No,
            None => Quorum::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrbdDevice {
    pub volume: u32,
    pub minor: u32,
    pub disk: DiskState,
    /// Diskless client (DRBD 9).
    pub client: bool,
    /// Opened by someone (mounted, or a process holds it).
    pub open: bool,
    pub quorum: Quorum,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrbdPeerDevice {
    pub volume: u32,
    pub replication: ReplicationState,
    pub peer_disk: DiskState,
    /// Resync progress when one is running.
    pub percent_in_sync: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrbdConnection {
    /// DRBD 9 peer node id; `None` from DRBD 8.4 (one peer, no ids).
    pub peer_node_id: Option<u32>,
    /// The peer's connection name (`conn-name`), when known.
    pub name: Option<String>,
    pub state: ConnectionState,
    pub peer_role: Role,
    pub peer_devices: Vec<DrbdPeerDevice>,
}

impl DrbdConnection {
    /// The peer's connection name (drbdadm passes the host name), else its node id; `None`
    /// where DRBD names neither (8.4).
    pub fn peer_name(&self) -> Option<String> {
        self.name
            .clone()
            .or_else(|| self.peer_node_id.map(|id| format!("node-id {id}")))
    }

    /// `peer deb2`, or `the peer` where DRBD does not name it: for messages.
    pub fn peer_label(&self) -> String {
        peer_label(self.peer_name().as_deref())
    }
}

fn peer_label(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("peer {name}"),
        None => "the peer".to_string(),
    }
}

/// Why a node may not promote now because of a peer: it waits, it is not refused (the peer
/// stepping down, or coming back into sight, lets it go on by itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerHold {
    /// The peer (by name, when DRBD names it) is Primary: two Primaries are not allowed.
    Primary { peer: Option<String> },
    /// The peer is not connected (`state`): its role cannot be seen.
    Unseen {
        peer: Option<String>,
        state: ConnectionState,
    },
    /// A promotion that relies on DRBD's quorum, and DRBD does not say this partition has it.
    NoQuorum { quorum: Quorum },
}

/// What guards a promotion against a second Primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromoteGuard {
    /// Every peer seen, none Primary: the default.
    Seen,
    /// `allow_two_primaries`: nothing is checked.
    TwoPrimaries,
    /// A service that fails over: DRBD's quorum, enforced by the running configuration (the
    /// planner checked), reported on every volume. A peer that cannot be seen is then on the
    /// losing side of a partition and cannot write; a connected Primary still holds.
    Quorum,
}

impl fmt::Display for PeerHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerHold::Primary { peer } => write!(f, "{} is Primary", peer_label(peer.as_deref())),
            PeerHold::Unseen { peer, state } => write!(
                f,
                "{} is not connected ({state}): its role cannot be seen",
                peer_label(peer.as_deref())
            ),
            PeerHold::NoQuorum { quorum } => match quorum {
                Quorum::No => f.write_str("DRBD says this node's partition has no quorum"),
                Quorum::Unknown | Quorum::Yes => {
                    f.write_str("DRBD does not say this node's partition has quorum")
                }
            },
        }
    }
}

/// One configured ("up") DRBD resource as this node sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrbdResource {
    pub name: String,
    pub role: Role,
    pub suspended: bool,
    pub devices: Vec<DrbdDevice>,
    pub connections: Vec<DrbdConnection>,
}

impl DrbdResource {
    /// A resource with no connection at all, or only StandAlone ones, needs `drbdadm connect`.
    pub fn is_standalone(&self) -> bool {
        !self.connections.is_empty()
            && self
                .connections
                .iter()
                .all(|c| c.state == ConnectionState::StandAlone)
    }

    /// Any peer currently Primary.
    pub fn peer_primary(&self) -> bool {
        self.connections
            .iter()
            .any(|c| c.peer_role == Role::Primary)
    }

    /// The name of a peer that is Primary (its connection name, else its node id), for
    /// messages.
    pub fn primary_peer_name(&self) -> Option<String> {
        self.connections
            .iter()
            .find(|c| c.peer_role == Role::Primary)
            .map(|c| c.peer_name().unwrap_or_else(|| "peer".to_string()))
    }

    /// What keeps this node from promoting, as DRBD shows its peers now: a peer that is
    /// Primary, or one whose role cannot be seen because it is not connected. `None` when every
    /// peer is connected and not Primary, or when the resource allows two Primaries.
    ///
    /// A peer that is not connected may be Primary on its side: DRBD without quorum or fencing
    /// lets both sides of a cut link promote, and the data then diverges (a split brain). So
    /// converge promotes only over peers it sees; an operator who knows a peer is down for good
    /// promotes by hand (`drbdadm primary`), and converge carries on from there.
    pub fn peer_hold(&self, allow_two_primaries: bool) -> Option<PeerHold> {
        self.promote_hold(if allow_two_primaries {
            PromoteGuard::TwoPrimaries
        } else {
            PromoteGuard::Seen
        })
    }

    /// What keeps this node from promoting under `guard` (see [`PromoteGuard`]).
    pub fn promote_hold(&self, guard: PromoteGuard) -> Option<PeerHold> {
        if guard == PromoteGuard::TwoPrimaries {
            return None;
        }
        if let Some(peer) = self
            .connections
            .iter()
            .find(|c| c.peer_role == Role::Primary)
        {
            return Some(PeerHold::Primary {
                peer: peer.peer_name(),
            });
        }
        if guard == PromoteGuard::Quorum {
            let quorum = self.quorum();
            return (quorum != Quorum::Yes).then_some(PeerHold::NoQuorum { quorum });
        }
        self.connections
            .iter()
            .find(|c| c.state != ConnectionState::Connected || c.peer_role == Role::Unknown)
            .map(|c| PeerHold::Unseen {
                peer: c.peer_name(),
                state: c.state.clone(),
            })
    }

    /// The least certain quorum over the volumes: one volume without quorum is none, and a
    /// resource without volumes says nothing.
    pub fn quorum(&self) -> Quorum {
        let mut worst = if self.devices.is_empty() {
            Quorum::Unknown
        } else {
            Quorum::Yes
        };
        for d in &self.devices {
            match d.quorum {
                Quorum::No => return Quorum::No,
                Quorum::Unknown => worst = Quorum::Unknown,
                Quorum::Yes => {}
            }
        }
        worst
    }

    /// All local volumes hold UpToDate data (what promotion needs without `--force`).
    pub fn has_up_to_date_data(&self) -> bool {
        !self.devices.is_empty() && self.devices.iter().all(|d| d.disk == DiskState::UpToDate)
    }

    pub fn device_by_minor(&self, minor: u32) -> Option<&DrbdDevice> {
        self.devices.iter().find(|d| d.minor == minor)
    }
}

/// The path udev gives DRBD minor N. Mounts are matched by device number as well, so a device
/// reached through another name (`/dev/drbd/by-res/…`) still matches.
pub fn device_path(minor: u32) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/dev/drbd{minor}"))
}

/// All DRBD resources that are up on this node, by name.
pub type DrbdResources = BTreeMap<String, DrbdResource>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_spellings_are_kept() {
        assert_eq!(Role::parse("Primary"), Role::Primary);
        assert_eq!(
            DiskState::parse("Frobbed"),
            DiskState::Other("Frobbed".into())
        );
        assert_eq!(DiskState::parse("Frobbed").to_string(), "Frobbed");
    }

    #[test]
    fn cs_84_splits_connection_and_replication() {
        assert_eq!(
            ConnectionState::from_84_cs("SyncSource"),
            (
                ConnectionState::Connected,
                Some(ReplicationState::SyncSource)
            )
        );
        assert_eq!(
            ConnectionState::from_84_cs("WFConnection"),
            (ConnectionState::WFConnection, None)
        );
        assert_eq!(
            ConnectionState::from_84_cs("Connected"),
            (ConnectionState::Connected, None)
        );
    }
}
