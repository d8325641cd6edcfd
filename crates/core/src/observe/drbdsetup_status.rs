//! `drbdsetup status --json` (DRBD 9): the whole DRBD state in one document.
//!
//! Only the keys the model needs are read; statistics and any key a newer drbdsetup adds are
//! ignored. A key of the wrong type is an error that names the resource and the field path
//! (e.g. `devices[1].minor`), because a silently defaulted state could make the planner act.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde_json::Value;

use super::drbd::{
    ConnectionState, DiskState, DrbdConnection, DrbdDevice, DrbdPeerDevice, DrbdResource,
    DrbdResources, Quorum, ReplicationState, Role,
};

#[derive(Debug, thiserror::Error)]
pub enum StatusJsonError {
    #[error("drbdsetup status JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("drbdsetup status JSON: resource #{index} has no \"name\" string")]
    NoName { index: usize },
    #[error("drbdsetup status JSON: resource {resource:?}, field {field}: {message}")]
    Field {
        resource: String,
        /// Path below the resource, e.g. `connections[0].peer_devices[1].volume`.
        field: String,
        message: String,
    },
    #[error("drbdsetup status JSON: resource {0:?} is listed twice")]
    Duplicate(String),
}

/// Parses the output of `drbdsetup status --json`.
pub fn parse_json(text: &str) -> Result<DrbdResources, StatusJsonError> {
    // Through `Value` first so that a resource's name is known even when another of its fields
    // is what fails, and the error can say which resource.
    let documents: Vec<Value> = serde_json::from_str(text)?;
    let mut resources = DrbdResources::new();
    for (index, document) in documents.iter().enumerate() {
        let name = document
            .get("name")
            .and_then(Value::as_str)
            .ok_or(StatusJsonError::NoName { index })?;
        let raw = RawResource::deserialize(document).map_err(|e| field_error(name, &e))?;
        let resource = raw.into_model(name);
        if resources.insert(name.to_string(), resource).is_some() {
            return Err(StatusJsonError::Duplicate(name.to_string()));
        }
    }
    Ok(resources)
}

/// Whether `percent-in-sync` / `done:` describe a resync or verify in progress; outside one,
/// drbdsetup still reports a percentage (100) that the model does not keep.
pub(crate) fn resync_running(state: &ReplicationState) -> bool {
    matches!(
        state,
        ReplicationState::SyncSource
            | ReplicationState::SyncTarget
            | ReplicationState::PausedSyncS
            | ReplicationState::PausedSyncT
            | ReplicationState::VerifyS
            | ReplicationState::VerifyT
    )
}

// Field paths travel inside serde's string errors: `path SEP message`. The separator is a
// control character that no serde message or JSON key in drbdsetup output contains.
const PATH_SEP: char = '\u{1f}';

fn field_error(resource: &str, error: &serde_json::Error) -> StatusJsonError {
    let text = error.to_string();
    let (field, message) = text.split_once(PATH_SEP).unwrap_or(("(resource)", &text));
    StatusJsonError::Field {
        resource: resource.to_string(),
        field: field.to_string(),
        message: message.to_string(),
    }
}

/// Prefixes `inner`'s path (if it has one) with `prefix`.
fn wrap_path(prefix: &str, inner: &str) -> String {
    match inner.split_once(PATH_SEP) {
        Some((path, message)) if path.starts_with('[') => {
            format!("{prefix}{path}{PATH_SEP}{message}")
        }
        Some((path, message)) => format!("{prefix}.{path}{PATH_SEP}{message}"),
        None => format!("{prefix}{PATH_SEP}{inner}"),
    }
}

/// One `deserialize_with` function per JSON key, so each error learns the key it came from
/// (serde derive does not report it for type errors).
macro_rules! keyed {
    ($($fn_name:ident: $ty:ty = $key:literal;)+) => {
        mod keyed {
            use super::*;
            $(
                pub(super) fn $fn_name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                    <$ty>::deserialize(d)
                        .map_err(|e| de::Error::custom(wrap_path($key, &e.to_string())))
                }
            )+
        }
    };
}

keyed! {
    role: Option<String> = "role";
    suspended: bool = "suspended";
    devices: Indexed<RawDevice> = "devices";
    connections: Indexed<RawConnection> = "connections";
    volume: u32 = "volume";
    minor: u32 = "minor";
    disk_state: Option<String> = "disk-state";
    client: bool = "client";
    open: bool = "open";
    quorum: Option<bool> = "quorum";
    peer_node_id: Option<u32> = "peer-node-id";
    conn_name: Option<String> = "name";
    connection_state: Option<String> = "connection-state";
    peer_role: Option<String> = "peer-role";
    peer_devices: Indexed<RawPeerDevice> = "peer_devices";
    replication_state: Option<String> = "replication-state";
    peer_disk_state: Option<String> = "peer-disk-state";
    percent_in_sync: Option<f64> = "percent-in-sync";
}

/// A JSON array whose element errors carry their index.
struct Indexed<T>(Vec<T>);

impl<T> Default for Indexed<T> {
    fn default() -> Self {
        Indexed(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Indexed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IndexedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for IndexedVisitor<T> {
            type Value = Indexed<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                loop {
                    let index = items.len();
                    match seq.next_element::<T>() {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) => return Ok(Indexed(items)),
                        Err(e) => {
                            let prefix = format!("[{index}]");
                            return Err(de::Error::custom(wrap_path(&prefix, &e.to_string())));
                        }
                    }
                }
            }
        }

        d.deserialize_seq(IndexedVisitor(PhantomData))
    }
}

#[derive(serde::Deserialize)]
struct RawResource {
    #[serde(default, deserialize_with = "keyed::role")]
    role: Option<String>,
    #[serde(default, deserialize_with = "keyed::suspended")]
    suspended: bool,
    #[serde(default, deserialize_with = "keyed::devices")]
    devices: Indexed<RawDevice>,
    #[serde(default, deserialize_with = "keyed::connections")]
    connections: Indexed<RawConnection>,
}

#[derive(serde::Deserialize)]
struct RawDevice {
    #[serde(deserialize_with = "keyed::volume")]
    volume: u32,
    #[serde(deserialize_with = "keyed::minor")]
    minor: u32,
    #[serde(rename = "disk-state", default, deserialize_with = "keyed::disk_state")]
    disk_state: Option<String>,
    #[serde(default, deserialize_with = "keyed::client")]
    client: bool,
    #[serde(default, deserialize_with = "keyed::open")]
    open: bool,
    #[serde(default, deserialize_with = "keyed::quorum")]
    quorum: Option<bool>,
}

#[derive(serde::Deserialize)]
struct RawConnection {
    #[serde(
        rename = "peer-node-id",
        default,
        deserialize_with = "keyed::peer_node_id"
    )]
    peer_node_id: Option<u32>,
    #[serde(default, deserialize_with = "keyed::conn_name")]
    name: Option<String>,
    #[serde(
        rename = "connection-state",
        default,
        deserialize_with = "keyed::connection_state"
    )]
    connection_state: Option<String>,
    #[serde(rename = "peer-role", default, deserialize_with = "keyed::peer_role")]
    peer_role: Option<String>,
    // drbdsetup really spells this one with an underscore; the hyphen is accepted in case a
    // later version makes it consistent.
    #[serde(
        rename = "peer_devices",
        alias = "peer-devices",
        default,
        deserialize_with = "keyed::peer_devices"
    )]
    peer_devices: Indexed<RawPeerDevice>,
}

#[derive(serde::Deserialize)]
struct RawPeerDevice {
    #[serde(deserialize_with = "keyed::volume")]
    volume: u32,
    #[serde(
        rename = "replication-state",
        default,
        deserialize_with = "keyed::replication_state"
    )]
    replication_state: Option<String>,
    #[serde(
        rename = "peer-disk-state",
        default,
        deserialize_with = "keyed::peer_disk_state"
    )]
    peer_disk_state: Option<String>,
    #[serde(
        rename = "percent-in-sync",
        default,
        deserialize_with = "keyed::percent_in_sync"
    )]
    percent_in_sync: Option<f64>,
}

impl RawResource {
    fn into_model(self, name: &str) -> DrbdResource {
        let mut devices: Vec<DrbdDevice> =
            self.devices.0.into_iter().map(|d| d.into_model()).collect();
        devices.sort_by_key(|d| d.volume);
        let connections = self
            .connections
            .0
            .into_iter()
            .map(|c| c.into_model())
            .collect();
        DrbdResource {
            name: name.to_string(),
            role: self.role.as_deref().map_or(Role::Unknown, Role::parse),
            suspended: self.suspended,
            devices,
            connections,
        }
    }
}

impl RawDevice {
    fn into_model(self) -> DrbdDevice {
        DrbdDevice {
            volume: self.volume,
            minor: self.minor,
            disk: self
                .disk_state
                .as_deref()
                .map_or(DiskState::DUnknown, DiskState::parse),
            client: self.client,
            open: self.open,
            // A drbdsetup without the key (older ones, and DRBD 9.3.2's) says nothing of it.
            quorum: Quorum::from_flag(self.quorum),
        }
    }
}

impl RawConnection {
    fn into_model(self) -> DrbdConnection {
        let mut peer_devices: Vec<DrbdPeerDevice> = self
            .peer_devices
            .0
            .into_iter()
            .map(|p| p.into_model())
            .collect();
        peer_devices.sort_by_key(|p| p.volume);
        DrbdConnection {
            peer_node_id: self.peer_node_id,
            name: self.name,
            state: self
                .connection_state
                .as_deref()
                .map_or_else(unknown_connection_state, ConnectionState::parse),
            peer_role: self.peer_role.as_deref().map_or(Role::Unknown, Role::parse),
            peer_devices,
        }
    }
}

impl RawPeerDevice {
    fn into_model(self) -> DrbdPeerDevice {
        let replication = self
            .replication_state
            .as_deref()
            .map_or(ReplicationState::Off, ReplicationState::parse);
        DrbdPeerDevice {
            volume: self.volume,
            percent_in_sync: self
                .percent_in_sync
                .filter(|_| resync_running(&replication)),
            replication,
            peer_disk: self
                .peer_disk_state
                .as_deref()
                .map_or(DiskState::DUnknown, DiskState::parse),
        }
    }
}

/// The state of a connection nothing has reported on yet: not a state the planner waits for.
pub(crate) fn unknown_connection_state() -> ConnectionState {
    ConnectionState::Other("Unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str =
        include_str!("../../tests/fixtures/drbdsetup_status/two-volumes-three-peers.json");

    #[test]
    fn realistic_document() {
        let res = parse_json(STATUS).unwrap();
        assert_eq!(res.keys().collect::<Vec<_>>(), ["db", "web"]);

        let web = &res["web"];
        assert_eq!(web.name, "web");
        assert_eq!(web.role, Role::Primary);
        assert!(!web.suspended);
        assert_eq!(
            web.devices,
            [
                DrbdDevice {
                    volume: 0,
                    minor: 10,
                    disk: DiskState::UpToDate,
                    client: false,
                    open: true,
                    quorum: Quorum::Yes,
                },
                DrbdDevice {
                    volume: 1,
                    minor: 11,
                    disk: DiskState::UpToDate,
                    client: false,
                    open: true,
                    quorum: Quorum::Yes,
                },
            ]
        );
        assert!(web.has_up_to_date_data());
        assert!(!web.is_standalone());
        assert_eq!(web.connections.len(), 2);

        let beta = &web.connections[0];
        assert_eq!(beta.peer_node_id, Some(1));
        assert_eq!(beta.name.as_deref(), Some("beta"));
        assert_eq!(beta.state, ConnectionState::Connected);
        assert_eq!(beta.peer_role, Role::Secondary);
        assert_eq!(
            beta.peer_devices,
            [
                DrbdPeerDevice {
                    volume: 0,
                    replication: ReplicationState::Established,
                    peer_disk: DiskState::UpToDate,
                    percent_in_sync: None,
                },
                DrbdPeerDevice {
                    volume: 1,
                    replication: ReplicationState::SyncSource,
                    peer_disk: DiskState::Inconsistent,
                    percent_in_sync: Some(37.5),
                },
            ]
        );

        let gamma = &web.connections[1];
        assert_eq!(gamma.state, ConnectionState::StandAlone);
        assert_eq!(gamma.peer_role, Role::Unknown);
        assert!(gamma.peer_devices.is_empty());

        let db = &res["db"];
        assert_eq!(db.role, Role::Secondary);
        assert!(db.suspended);
        assert_eq!(db.devices[0].disk, DiskState::Diskless);
        assert!(db.devices[0].client);
        assert_eq!(db.devices[0].quorum, Quorum::No);
        assert_eq!(db.connections[0].state, ConnectionState::Connecting);
        assert!(db.connections[0].peer_devices.is_empty());
    }

    #[test]
    fn empty_array() {
        assert!(parse_json("[]").unwrap().is_empty());
        assert!(parse_json(" [ ]\n").unwrap().is_empty());
    }

    #[test]
    fn missing_optional_keys_get_defaults() {
        let res = parse_json(
            r#"[{"name": "r", "devices": [{"volume": 0, "minor": 3}],
                 "connections": [{"peer_devices": [{"volume": 0}]}]}]"#,
        )
        .unwrap();
        let r = &res["r"];
        assert_eq!(r.role, Role::Unknown);
        assert!(!r.suspended);
        assert_eq!(r.devices[0].disk, DiskState::DUnknown);
        // Older drbdsetup, and DRBD 9.3.2's, print no quorum: unknown, never "yes".
        assert_eq!(r.devices[0].quorum, Quorum::Unknown);
        assert!(!r.devices[0].open);
        let c = &r.connections[0];
        assert_eq!(c.peer_node_id, None);
        assert_eq!(c.name, None);
        assert_eq!(c.state, ConnectionState::Other("Unknown".into()));
        assert_eq!(c.peer_devices[0].replication, ReplicationState::Off);
        assert_eq!(c.peer_devices[0].peer_disk, DiskState::DUnknown);
    }

    #[test]
    fn unknown_state_spellings_are_kept() {
        let res = parse_json(
            r#"[{"name": "r", "role": "Superior", "devices": [{"volume": 0, "minor": 3,
                 "disk-state": "Shiny"}]}]"#,
        )
        .unwrap();
        assert_eq!(res["r"].role, Role::Other("Superior".into()));
        assert_eq!(res["r"].devices[0].disk, DiskState::Other("Shiny".into()));
    }

    fn field_err(text: &str) -> (String, String, String) {
        match parse_json(text) {
            Err(StatusJsonError::Field {
                resource,
                field,
                message,
            }) => (resource, field, message),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn wrong_types_name_resource_and_field() {
        let (resource, field, message) =
            field_err(r#"[{"name": "r0", "devices": [{"volume": 0, "minor": "ten"}]}]"#);
        assert_eq!(
            (resource.as_str(), field.as_str()),
            ("r0", "devices[0].minor")
        );
        assert!(message.contains("invalid type"), "{message}");

        let (_, field, _) = field_err(
            r#"[{"name": "r0", "connections": [{"name": "a"}, {"name": "b",
                 "peer_devices": [{"volume": 0}, {"volume": 1, "percent-in-sync": "x"}]}]}]"#,
        );
        assert_eq!(field, "connections[1].peer_devices[1].percent-in-sync");

        let (_, field, _) = field_err(r#"[{"name": "r0", "suspended": "no"}]"#);
        assert_eq!(field, "suspended");

        let (_, field, message) = field_err(r#"[{"name": "r0", "devices": [{"volume": 0}]}]"#);
        assert_eq!(field, "devices[0]");
        assert!(message.contains("missing field `minor`"), "{message}");

        let (_, field, _) = field_err(r#"[{"name": "r0", "devices": {"volume": 0}}]"#);
        assert_eq!(field, "devices");

        let err = parse_json(r#"[{"name": "r0", "role": 1}]"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "drbdsetup status JSON: resource \"r0\", field role: \
             invalid type: integer `1`, expected a string"
        );
    }

    #[test]
    fn bad_documents() {
        for text in [
            "",
            "[",
            "{}",
            "null",
            r#"[{"name": "r0""#,
            r#"[{"name": "r0", "devices": [}]"#,
            "[1]",
            r#"[{"role": "Primary"}]"#,
            r#"[{"name": 5}]"#,
            r#"[{"name": "a"}, {"name": "a"}]"#,
        ] {
            assert!(parse_json(text).is_err(), "{text:?} parsed");
        }
        assert!(matches!(
            parse_json("[1]"),
            Err(StatusJsonError::NoName { index: 0 })
        ));
        let err = parse_json("[{").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn truncations_never_panic() {
        for end in 0..STATUS.len() {
            if STATUS.is_char_boundary(end) {
                let _ = parse_json(&STATUS[..end]);
            }
        }
    }
}
