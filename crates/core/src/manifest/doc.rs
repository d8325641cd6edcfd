//! The file form of a manifest: one serde type per YAML mapping. The JSON Schema
//! (`docs/converge-manifest.schema.json`), the key tables of docs/manifest.md and the keys the
//! loader allows are all generated from these types (see [`crate::schema_files`]).
//!
//! They say which keys exist, with their types, defaults and meaning; the loader does not
//! deserialize into them. The schema reader of [`super::load`] reads the YAML, so that every
//! problem of a file is reported at once with its line and column, and it checks what a JSON
//! Schema cannot say (one container per service, a mount point or DRBD resource used once, ...):
//! `converge validate` is stricter than the schema. Two checks keep the reader and these types
//! in step: in debug builds the reader asserts that every key it asks for is declared here, and
//! a test asserts that it asks for every key declared here.
//!
//! Field order matters: it is the order in which an unknown-key error lists the allowed keys.
//! Field doc comments become the schema's descriptions, which editors show: they are written for
//! operators, on one paragraph, without Rust links.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{
    AppSpec, AppStatus, ContainerSpec, DesiredState, DrbdStop, EXT_TYPES, Failback, FailoverMode,
    FsSpec, Fsck, Kind, MAX_DRBD_RESOURCE_NAME, MAX_RES_FILE_NAME, MAX_SERVICE_NAME, OnQuorumLoss,
    ResourceId, Service, UpBy,
};

/// A name handed to a program as one argument (`[A-Za-z0-9_.-]`, not starting with `-`, which
/// would read as an option, nor `.`); the reader's `name_problem` is the same rule.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]*$";
/// `config:` of a `drbd#N`: names as [`NAME_PATTERN`], joined by `/`.
pub const RES_FILE_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$";
pub const ABSOLUTE_PATH_PATTERN: &str = "^/";
/// A `..` component, which a manifest's paths must not have (the reader's `normal_path`).
pub const DOT_DOT_PATTERN: &str = r"(^|/)\.\.(/|$)";
/// A humantime duration: number-unit pairs such as `30s`, `2m`, `1h 5m`. The reader also refuses
/// zero and more than 30 days, which a pattern cannot say.
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*[A-Za-zµ]+\s*)+$";
/// Mount options: one comma-separated word, as `mount -o` takes it.
pub const OPTIONS_PATTERN: &str = r"^\S+$";

/// The generator of every schema converge publishes. Draft 7: the YAML language server (so the
/// VS Code YAML extension) fully supports it, and only partly the later drafts. Doc comments are
/// unwrapped, so that each description is one line in the schema and in a Markdown table.
pub fn generator() -> SchemaGenerator {
    SchemaSettings::draft07()
        .with_transform(RecursiveTransform(unwrap_description))
        .into_generator()
}

fn unwrap_description(schema: &mut Schema) {
    if let Some(serde_json::Value::String(text)) = schema.get_mut("description") {
        *text = text
            .split("\n\n")
            .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }
}

/// A converge manifest: one service, the stack of resources converge starts and stops on this
/// node. `converge validate` checks it completely, this schema as far as JSON Schema can.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "converge manifest")]
pub struct ManifestDoc {
    /// The service's name, unique across the manifest directory; converge keeps the service's
    /// records under it. Letters, digits, `_`, `.` and `-`, not starting with `-` or `.`, at
    /// most 128 characters (converge names files after it).
    #[schemars(pattern(NAME_PATTERN), length(max = MAX_SERVICE_NAME))]
    pub service: String,
    /// What this node should hold: `up`, `down`, or `frozen` (observe and report, never act).
    pub state: DesiredState,
    /// The only node that runs the service (the node configuration's `node`). Every other node
    /// keeps it down and stands by: where the DRBD configuration has a section for that node
    /// (`drbdadm sh-resources`), its DRBD resources are kept up, connected and Secondary
    /// (whatever `stop` says), so that its data stays UpToDate and it can take the service
    /// over. Changing `node:` moves the service (operations.md, "Two nodes, one git
    /// repository"). Absent: any node that reads the manifest runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", pattern(NAME_PATTERN))]
    pub node: Option<String>,
    /// The nodes the service may run on, in order of preference, each once; excludes `node`.
    /// With `failover: manual` (the default) it runs on the first and moves when the list is
    /// edited, as with `node`. With `failover: auto` each listed node decides from what its
    /// DRBD shows: the service runs on a node whose partition has quorum, with UpToDate data,
    /// no Primary peer, and no node listed before it connected and able to run it
    /// (operations.md, "Automatic failover"). Nodes the DRBD configuration names but the list
    /// does not (a diskless tiebreaker) stand by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), inner(pattern(NAME_PATTERN)))]
    pub nodes: Option<Vec<String>>,
    /// How a service listed on several nodes moves: `manual` (default; by editing `nodes`) or
    /// `auto` (by itself, on DRBD quorum: needs `nodes` with at least two, one DRBD resource
    /// whose configuration enforces quorum, and no `allow_two_primaries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "FailoverMode")]
    pub failover: Option<FailoverMode>,
    /// With `failover: auto`: `never` (default; the service stays where it failed over to) or
    /// `preferred` (once a node listed before the holder is connected and UpToDate, the holder
    /// stops the service and it moves back as a switchover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Failback")]
    pub failback: Option<Failback>,
    /// With `failover: auto`, what the node holding the service does when its partition loses
    /// quorum: `stop` (default; apps, container, unmount, `drbdadm secondary`, in order) or
    /// `freeze` (freeze the LXC container and keep DRBD Primary and the filesystem mounted while
    /// DRBD suspends the I/O: thawed when quorum comes back; thawed and stopped once DRBD has
    /// demoted the node because the other side took over). `freeze` needs an `lxc` container
    /// and the DRBD options `on-no-quorum suspend-io` and `on-suspended-primary-outdated
    /// force-secondary` (operations.md, "Freezing on a quorum loss").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "OnQuorumLoss")]
    pub on_quorum_loss: Option<OnQuorumLoss>,
    /// The resources by id, `KIND#N`: `drbd#0`, `fs#1`, `container#0`, `app#2` (N without
    /// leading zeros). They start in kind order (drbd, fs, container, app), then N ascending, and
    /// stop in reverse. Absent or empty: a service with nothing to manage.
    #[serde(default)]
    pub resources: ResourcesDoc,
    /// A start that fails midway undoes what that run did.
    #[serde(default = "default_rollback")]
    pub rollback: bool,
}

fn default_rollback() -> bool {
    Service::DEFAULT_ROLLBACK
}

/// `resources`: each id's kind selects the schema of its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourcesDoc(pub BTreeMap<ResourceId, ResourceDoc>);

#[derive(Debug, Clone, PartialEq)]
pub enum ResourceDoc {
    Drbd(DrbdDoc),
    Fs(FsDoc),
    Container(ContainerDoc),
    App(AppDoc),
}

impl JsonSchema for ResourcesDoc {
    fn schema_name() -> Cow<'static, str> {
        "Resources".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut by_kind = serde_json::Map::new();
        for kind in Kind::ALL {
            let schema = match kind {
                Kind::Drbd => generator.subschema_for::<DrbdDoc>(),
                Kind::Fs => generator.subschema_for::<FsDoc>(),
                Kind::Container => generator.subschema_for::<ContainerDoc>(),
                Kind::App => generator.subschema_for::<AppDoc>(),
            };
            by_kind.insert(resource_id_pattern(kind), schema.to_value());
        }
        // null: a `resources:` whose entries are all commented out.
        json_schema!({
            "type": ["object", "null"],
            "patternProperties": by_kind,
            "additionalProperties": false,
        })
    }
}

/// The ids of one kind, as `ResourceId::parse` reads them: `fs#0`, `fs#12`, not `fs#01`.
pub fn resource_id_pattern(kind: Kind) -> String {
    format!("^{}#(0|[1-9][0-9]*)$", kind.as_str())
}

impl<'de> Deserialize<'de> for ResourcesDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ResourcesVisitor;

        impl<'de> Visitor<'de> for ResourcesVisitor {
            type Value = ResourcesDoc;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of resource ids (KIND#N) to resources")
            }

            fn visit_unit<E: de::Error>(self) -> Result<ResourcesDoc, E> {
                Ok(ResourcesDoc::default())
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResourcesDoc, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let id = ResourceId::parse(&key)
                        .ok_or_else(|| de::Error::custom(format!("invalid resource id `{key}`")))?;
                    let resource = match id.kind {
                        Kind::Drbd => ResourceDoc::Drbd(map.next_value()?),
                        Kind::Fs => ResourceDoc::Fs(map.next_value()?),
                        Kind::Container => ResourceDoc::Container(map.next_value()?),
                        Kind::App => ResourceDoc::App(map.next_value()?),
                    };
                    if out.insert(id, resource).is_some() {
                        return Err(de::Error::custom(format!("duplicate resource id `{key}`")));
                    }
                }
                Ok(ResourcesDoc(out))
            }
        }

        deserializer.deserialize_any(ResourcesVisitor)
    }
}

/// `drbd#N`: a DRBD resource. Started with `drbdadm up` when it is not up, `drbdadm connect` when
/// it is StandAlone, then `drbdadm primary`; never promoted while a peer is Primary (unless
/// `allow_two_primaries`), never without UpToDate local data; `--force` only to demote, when
/// `secondary_force` allows it and no filesystem of it is mounted.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrbdDoc {
    /// The DRBD resource name, as in /etc/drbd.d/RES.res. Letters, digits, `_`, `.` and `-`, not
    /// starting with `-` or `.`, at most 127 characters; not `all` nor `minor-N`, which drbdadm
    /// reads as every resource and as a device minor. A service names a resource once, and no
    /// two services share one.
    #[schemars(
        pattern(NAME_PATTERN),
        length(max = MAX_DRBD_RESOURCE_NAME),
        extend("not" = { "anyOf": [{ "const": "all" }, { "pattern": "^minor-" }] })
    )]
    pub res: String,
    /// How the service stops it when it is down everywhere (`state: down`): `secondary`
    /// (`drbdadm secondary`: stays connected and replicating) or `down` (`drbdadm down`:
    /// detached and disconnected). A node that stands by for a service pinned elsewhere always
    /// keeps the resource up and Secondary. Never while a filesystem on its device is still
    /// mounted.
    #[serde(default)]
    pub stop: DrbdStop,
    /// Allow promotion while a peer is Primary or not connected: for dual-primary setups only.
    /// Without it, converge promotes only when every peer of the resource is connected and
    /// Secondary; otherwise the service waits for the peer (not a failure: DRBD's events bring
    /// it back).
    #[serde(default)]
    pub allow_two_primaries: bool,
    /// Demote with `drbdadm secondary --force` when the device is held open by a process
    /// converge does not manage (the filesystem already unmounted): DRBD then fails that
    /// process's I/O instead of refusing. Never while a filesystem on the device is mounted.
    /// Without it, such a demotion is refused and reported, and the node stays Primary (on a
    /// quorum loss: stuck, said loudly). For a holder that must give a failover service up.
    #[serde(default)]
    pub secondary_force: bool,
    /// Who brings the resource up: `converge` (`drbdadm up`, and `connect` when it is
    /// StandAlone, where the service runs and where it stands by) or `system` (`drbd.service`
    /// or `drbd@RES.service` bring it up at boot: converge never runs `drbdadm up`, `connect`
    /// or `down` for it, only `primary` and `secondary`, and where the service should run it
    /// waits while the resource is not up). Not with `stop: down`.
    #[serde(default)]
    pub up_by: UpBy,
    /// The resource's DRBD configuration file in the manifest directory, relative to it (e.g.
    /// `drbd/data.res`), so that one git repository carries it to every node. converge installs
    /// it as `RES.res` in the DRBD configuration directory (`drbd_conf_dir`, /etc/drbd.d),
    /// atomically and only when it differs, after `drbdadm` accepted it together with the rest
    /// of the configuration (a file drbdadm refuses never replaces the installed one); then
    /// `drbdadm adjust RES` applies it where the resource is up. Each part of the path a safe
    /// name (no `..`, nothing hidden). Held to the manifests' trust rules: its handlers run as
    /// root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "String",
        pattern(RES_FILE_PATTERN),
        length(max = MAX_RES_FILE_NAME)
    )]
    pub config: Option<String>,
    /// Ignore the resource entirely: neither observed nor acted on.
    #[serde(default)]
    pub disabled: bool,
    /// A problem with this resource is a warning, and the rest of the stack goes on.
    #[serde(default)]
    pub optional: bool,
}

/// `fs#N`: a filesystem. Checked (see `fsck`) and mounted on start, unmounted on stop; a
/// filesystem on a DRBD device only while that resource is Primary here.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "if" = { "properties": { "fsck": { "const": true } }, "required": ["fsck"] },
    "then" = { "properties": { "type": { "enum": EXT_TYPES } } }
))]
pub struct FsDoc {
    /// The block device, an absolute path without `..`, e.g. /dev/drbd0.
    #[schemars(
        pattern(ABSOLUTE_PATH_PATTERN),
        extend("not" = { "pattern": DOT_DOT_PATTERN })
    )]
    pub dev: String,
    /// The mount point: an absolute path other than /, without `..`, created with mode 0755
    /// when missing. A service mounts a directory once, and no two services share one; `/srv/x`,
    /// `/srv/x/` and `/srv//x` are one directory.
    #[schemars(
        pattern(ABSOLUTE_PATH_PATTERN),
        extend("not" = { "pattern": DOT_DOT_PATTERN })
    )]
    pub mnt: String,
    /// Filesystem type passed to mount -t, e.g. ext3, ext4, xfs.
    #[serde(rename = "type")]
    #[schemars(pattern(NAME_PATTERN))]
    pub fstype: String,
    /// Mount options passed to mount -o: comma-separated, without spaces.
    #[serde(default = "default_options")]
    #[schemars(pattern(OPTIONS_PATTERN))]
    pub options: String,
    /// Check before mounting: `auto` runs `e2fsck -p` for ext2, ext3 and ext4 and nothing for
    /// other types; `true` always runs it, so it needs one of those types; `false` never does.
    #[serde(default = "default_fsck")]
    pub fsck: FsckDoc,
    /// When unmounting finds the mount point busy, kill its users (`fuser -kmv`) between
    /// retries.
    #[serde(default)]
    pub umount_kill: bool,
    /// How long unmount retries last: a duration such as `30s`, `2m`, `1h 5m`.
    #[serde(default = "default_fs_timeout")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub timeout: String,
    /// Ignore the resource entirely: neither observed nor acted on.
    #[serde(default)]
    pub disabled: bool,
    /// A problem with this resource is a warning, and the rest of the stack goes on.
    #[serde(default)]
    pub optional: bool,
}

fn default_options() -> String {
    FsSpec::DEFAULT_OPTIONS.to_owned()
}

fn default_fsck() -> FsckDoc {
    Fsck::default().into()
}

fn default_fs_timeout() -> String {
    duration_text(FsSpec::DEFAULT_TIMEOUT)
}

/// A duration as a manifest or the configuration writes it.
pub fn duration_text(duration: std::time::Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `fsck`: `true`, `false` or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FsckDoc {
    Bool(bool),
    Word(FsckWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsckWord {
    Auto,
}

impl From<Fsck> for FsckDoc {
    fn from(fsck: Fsck) -> FsckDoc {
        match fsck {
            Fsck::Yes => FsckDoc::Bool(true),
            Fsck::No => FsckDoc::Bool(false),
            Fsck::Auto => FsckDoc::Word(FsckWord::Auto),
        }
    }
}

impl JsonSchema for FsckDoc {
    fn schema_name() -> Cow<'static, str> {
        "Fsck".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "enum": [true, false, "auto"] })
    }
}

/// `container#N`: the service's container, at most one per service. Started after the
/// filesystems (its root may live on one), stopped before them.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("allOf" = [
    {
        "if": { "properties": { "type": { "const": "vz" } }, "required": ["type"] },
        "then": { "required": ["ctid"], "not": { "required": ["name"] } }
    },
    {
        "if": { "properties": { "type": { "const": "lxc" } }, "required": ["type"] },
        "then": { "required": ["name"], "not": { "required": ["ctid"] } }
    }
]))]
pub struct ContainerDoc {
    /// `vz` (OpenVZ, identified by `ctid`) or `lxc` (LXC, identified by `name`).
    #[serde(rename = "type")]
    pub kind: ContainerType,
    /// The OpenVZ container id: required with `type: vz`, not allowed with `lxc`. An integer
    /// other than 0 (the host), or a string of letters, digits, `_`, `.` and `-`, not starting
    /// with `-` or `.`. A number is read as OpenVZ reads it: `'0101'` is container 101, `'00'`
    /// the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "CtidDoc")]
    pub ctid: Option<CtidDoc>,
    /// The LXC container name: required with `type: lxc`, not allowed with `vz`. Letters,
    /// digits, `_`, `.` and `-`, not starting with `-` or `.`; the container must be in the
    /// default lxcpath.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", pattern(NAME_PATTERN))]
    pub name: Option<String>,
    /// How long a start may take: start, wait until it runs, then until it accepts commands.
    #[serde(default = "default_start_timeout")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub start_timeout: String,
    /// How long a stop may take, until the container is down (LXC: passed as `lxc-stop -t`,
    /// clean shutdown, then kill).
    #[serde(default = "default_stop_timeout")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub stop_timeout: String,
    /// Ignore the resource entirely: neither observed nor acted on. Its service's apps still run
    /// inside it, and wait until it runs.
    #[serde(default)]
    pub disabled: bool,
    /// A problem with this resource is a warning, and the rest of the stack goes on.
    #[serde(default)]
    pub optional: bool,
}

fn default_start_timeout() -> String {
    duration_text(ContainerSpec::DEFAULT_START_TIMEOUT)
}

fn default_stop_timeout() -> String {
    duration_text(ContainerSpec::DEFAULT_STOP_TIMEOUT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum ContainerType {
    /// OpenVZ, identified by `ctid`.
    Vz,
    /// LXC, identified by `name`.
    Lxc,
}

/// `ctid`: YAML reads `ctid: 101` as an integer, which is as good as the string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CtidDoc {
    Number(u64),
    Text(String),
}

impl JsonSchema for CtidDoc {
    fn schema_name() -> Cow<'static, str> {
        "Ctid".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": NAME_PATTERN, "not": { "pattern": "^0+$" } }
            ]
        })
    }
}

/// `app#N`: an application, driven either by a directory of scripts or by `start`, `stop` and
/// `check` commands, inside the service's container when it has one (OpenVZ: `vzctl exec2 CTID`,
/// LXC: `lxc-attach -n NAME --`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    { "required": ["scripts"] },
    { "anyOf": [{ "required": ["start"] }, { "required": ["stop"] }, { "required": ["check"] }] }
]))]
pub struct AppDoc {
    /// A directory of scripts, an absolute path without `..`: `S*` run with `start` in name order, `K*` with
    /// `stop`, `C*` with `status` (its exit code read through `retcodes`). Not with `start`,
    /// `stop` or `check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "String",
        pattern(ABSOLUTE_PATH_PATTERN),
        extend("not" = { "pattern": DOT_DOT_PATTERN })
    )]
    pub scripts: Option<String>,
    /// The command that starts the app: the program, an absolute path, then its arguments. Not
    /// with `scripts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "argv_schema")]
    pub start: Option<Vec<String>>,
    /// The command that stops the app: the program, an absolute path, then its arguments. Not
    /// with `scripts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "argv_schema")]
    pub stop: Option<Vec<String>>,
    /// The command that checks the app, its exit code read through `retcodes`: the program, an
    /// absolute path, then its arguments. Not with `scripts`. An app without a check cannot be
    /// observed; one whose check says `warn` is not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "argv_schema")]
    pub check: Option<Vec<String>>,
    /// Each script or command is killed, with its whole process group, after this long: a
    /// duration such as `30s`, `2m`, `1h 5m`.
    #[serde(default = "default_app_timeout")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub timeout: String,
    /// How a check's exit code reads: space-separated `CODE:STATUS` pairs, STATUS one of `up`,
    /// `down`, `warn`, `n/a`. Codes not listed mean `warn`.
    #[serde(default = "default_retcodes")]
    #[schemars(schema_with = "retcodes_schema")]
    pub retcodes: String,
    /// Ignore the resource entirely: neither observed nor acted on.
    #[serde(default)]
    pub disabled: bool,
    /// A problem with this resource is a warning, and the rest of the stack goes on.
    #[serde(default)]
    pub optional: bool,
}

fn default_app_timeout() -> String {
    duration_text(AppSpec::DEFAULT_TIMEOUT)
}

fn default_retcodes() -> String {
    AppSpec::default_retcodes()
        .iter()
        .map(|(code, status)| format!("{code}:{}", status.word()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command line: a non-empty list of strings whose first is an absolute path without `..`,
/// as there is no PATH to trust. (`prefixItems` becomes draft 7's `items` array in the
/// generated schema.)
fn argv_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "prefixItems": [{
            "type": "string",
            "pattern": ABSOLUTE_PATH_PATTERN,
            "not": { "pattern": DOT_DOT_PATTERN }
        }],
        "items": { "type": "string" }
    })
}

fn retcodes_schema(_: &mut SchemaGenerator) -> Schema {
    let words: Vec<&str> = AppStatus::ALL.iter().map(|s| s.word()).collect();
    let pair = format!("[+-]?[0-9]+:({})", words.join("|"));
    json_schema!({
        "type": "string",
        "pattern": format!(r"^\s*{pair}(\s+{pair})*\s*$"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Result<ManifestDoc, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    #[test]
    fn the_model_reads_the_shipped_manifests_with_its_defaults() {
        for text in [
            include_str!("../../../../manifests/drbdsvc.yaml"),
            include_str!("../../../../manifests/lxc/drbdsvc.yaml"),
        ] {
            let manifest = doc(text).expect("shipped manifest");
            assert_eq!(manifest.service, "drbdsvc.opensvc.com");
            assert!(manifest.rollback);
            let ids: Vec<String> = manifest
                .resources
                .0
                .keys()
                .map(ToString::to_string)
                .collect();
            assert_eq!(ids, ["drbd#0", "fs#1", "container#0", "app#0"]);
            let fs = manifest.resources.0.values().find_map(|r| match r {
                ResourceDoc::Fs(fs) => Some(fs),
                _ => None,
            });
            let fs = fs.expect("fs#1");
            assert_eq!(fs.fsck, FsckDoc::Word(FsckWord::Auto));
            assert_eq!(fs.timeout, "1m");
        }
    }

    #[test]
    fn the_model_refuses_unknown_keys_and_ids() {
        assert!(doc("service: s\nstate: up\ncolour: x\n").is_err());
        assert!(doc("service: s\nstate: up\nresources:\n  disk#0: {}\n").is_err());
        let unknown = "service: s\nstate: up\nresources:\n  drbd#0: {res: r, size: 1}\n";
        assert!(doc(unknown).is_err());
        let commented_out = doc("service: s\nstate: up\nresources:\n").expect("null resources");
        assert_eq!(commented_out.resources, ResourcesDoc::default());
    }

    #[test]
    fn doc_comments_become_one_line_descriptions() {
        let schema = generator().into_root_schema_for::<ManifestDoc>();
        let service = schema
            .pointer("/properties/service/description")
            .and_then(serde_json::Value::as_str)
            .expect("service has a description");
        // The doc comment breaks its line after "service's".
        assert!(
            service.contains("the service's records under it"),
            "{service}"
        );
        assert!(!service.contains('\n'), "{service}");
    }
}
