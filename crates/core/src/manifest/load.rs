//! Manifest files → [`Service`] values, with every problem reported as
//! `FILE:LINE:COL: FIELD: MESSAGE`.
//!
//! Two passes per file: the text is parsed into a `serde_yaml::Value` and read by the schema
//! reader, which collects all problems by field path; only then are the problems located in the
//! text (see [`super::locate`]). A directory is loaded completely before anything is reported,
//! so an operator sees every mistake of every file at once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_yaml::Value;

use super::doc::{AppDoc, ContainerDoc, ContainerType, DrbdDoc, FsDoc, ManifestDoc};
pub use super::locate::Location;
use super::locate::{locate_duplicate_key, locate_nearest, locate_second_document, within};
use super::schema::{At, FieldPath, Fields, KeyText, Keys, Node, Problem, Reader, Seg, describe};
use super::{
    AppCommands, AppSpec, AppStatus, ContainerKind, ContainerSpec, DesiredState, DrbdSpec,
    DrbdStop, EXT_TYPES, FsSpec, Fsck, Kind, Resource, ResourceId, Service, Spec, is_ext,
};

/// Larger files are refused unread: locating a problem re-parses the file, and no hand-written
/// manifest comes anywhere near this.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Problems located per file; past this the file is garbage and one more line says so.
const MAX_PROBLEMS_PER_FILE: usize = 200;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub location: Option<Location>,
    /// The field path, e.g. `resources.fs#1.mnt`.
    pub field: Option<String>,
    pub message: String,
}

impl LoadError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        LoadError {
            file: file.to_path_buf(),
            location: None,
            field: None,
            message: message.into(),
        }
    }

    pub(crate) fn io(file: &Path, what: &str, err: &io::Error) -> Self {
        LoadError::new(file, format!("cannot read {what}: {err}"))
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file.display())?;
        if let Some(loc) = self.location {
            write!(f, "{loc}:")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}:")?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for LoadError {}

/// Every problem found, sorted by file then position; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl LoadErrors {
    pub fn new(mut errors: Vec<LoadError>) -> Self {
        sort_errors(&mut errors);
        LoadErrors(errors)
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

fn sort_errors(errors: &mut [LoadError]) {
    // Stable: problems at one position keep the order the schema reader found them in.
    errors.sort_by(|a, b| a.file.cmp(&b.file).then(a.location.cmp(&b.location)));
}

/// The valid services of a manifest directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestSet {
    /// Sorted by name.
    pub services: Vec<Service>,
    /// Directory entries that are not manifests (hidden, editor files, other extensions,
    /// subdirectories), for debug logs.
    pub skipped: Vec<PathBuf>,
}

/// Loads every manifest of `dir`; any problem in any file fails the whole load, listing all.
pub fn load_dir(dir: &Path) -> Result<ManifestSet, LoadErrors> {
    let scan = scan_dir(dir, &mut ParseCache::default());
    if scan.errors.is_empty() {
        Ok(ManifestSet {
            services: scan.services,
            skipped: scan.skipped,
        })
    } else {
        Err(LoadErrors::new(scan.errors))
    }
}

/// Loads what can be loaded: the valid services, plus the errors of the files that are not.
/// A service whose name is claimed by several files is left out (all its files get an error),
/// as there is no telling which one the operator meant.
pub fn load_dir_lenient(dir: &Path) -> (Vec<Service>, Vec<LoadError>) {
    let loaded = load_dir_lenient_cached(dir, &mut ParseCache::default());
    (loaded.services, loaded.errors)
}

/// What [`load_dir_lenient_cached`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub services: Vec<Service>,
    pub errors: Vec<LoadError>,
    /// The [`ContentHash`] of what was read.
    pub content: u64,
}

/// As [`load_dir_lenient`], for a caller that loads the same directory again and again (the
/// daemon, on every change): every file is still read, but one whose text is the same as last
/// time is not parsed again. Also hashes what it read (see [`ContentHash`]).
pub fn load_dir_lenient_cached(dir: &Path, cache: &mut ParseCache) -> Loaded {
    let mut scan = scan_dir(dir, cache);
    sort_errors(&mut scan.errors);
    Loaded {
        services: scan.services,
        errors: scan.errors,
        content: scan.content.value(),
    }
}

/// Manifests parsed before, by path, with the exact text they were parsed from: parsing is a
/// function of the two, so an equal text gives the same service. Only files that parsed are
/// kept, and only those found by the last load.
#[derive(Debug, Default)]
pub struct ParseCache {
    parsed: HashMap<PathBuf, (String, Service)>,
}

/// Whether a directory entry name is a manifest: `*.yaml` / `*.yml`, not hidden. Editor files
/// (`.x.yaml.swp`, `x.yaml~`, `.#x.yaml`, `#x.yaml#`) fail one test or the other.
pub fn is_manifest_name(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    if name.starts_with('.') {
        return false;
    }
    let path = Path::new(name);
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    ) && path.file_stem().is_some_and(|s| !s.is_empty())
}

struct Scan {
    services: Vec<Service>,
    skipped: Vec<PathBuf>,
    errors: Vec<LoadError>,
    content: ContentHash,
}

/// A hash over a directory's manifests as the loader reads them: names in order, each with its
/// text or why it could not be read. Equal hashes mean the same manifests, so the daemon skips
/// a reload that would find nothing new. FNV-1a, 64 bits: stable across Rust releases (unlike
/// `DefaultHasher`), so a revision shown by one build compares with the next.
#[derive(Debug, Clone)]
pub struct ContentHash(u64);

impl Default for ContentHash {
    fn default() -> ContentHash {
        ContentHash(0xcbf2_9ce4_8422_2325)
    }
}

impl ContentHash {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
    fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    fn add(&mut self, path: &Path, read: Result<&str, &LoadError>) {
        let name = path.file_name().unwrap_or_default();
        self.field(name.as_encoded_bytes());
        match read {
            Ok(text) => self.field(text.as_bytes()),
            Err(e) => self.field(format!("unreadable: {}", e.message).as_bytes()),
        }
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

fn scan_dir(dir: &Path, cache: &mut ParseCache) -> Scan {
    let mut scan = Scan {
        services: Vec::new(),
        skipped: Vec::new(),
        errors: Vec::new(),
        content: ContentHash::default(),
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            scan.errors
                .push(LoadError::io(dir, "manifest directory", &e));
            return scan;
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => paths.push(entry.path()),
            Err(e) => scan
                .errors
                .push(LoadError::io(dir, "manifest directory", &e)),
        }
    }
    paths.sort();

    // (service, text): the text is kept to locate `service` if the name turns out duplicated.
    let mut loaded: Vec<(Service, String)> = Vec::new();
    let mut known = std::mem::take(&mut cache.parsed);
    for path in paths {
        let is_manifest = path.file_name().is_some_and(is_manifest_name);
        // Following symlinks: a linked manifest counts, a FIFO or directory would not read.
        let regular = fs::metadata(&path).map(|m| m.is_file());
        match (is_manifest, regular) {
            (false, _) | (true, Ok(false)) => scan.skipped.push(path),
            (true, Err(e)) => {
                let error = LoadError::io(&path, "manifest", &e);
                scan.content.add(&path, Err(&error));
                scan.errors.push(error);
            }
            (true, Ok(true)) => match read_text(&path) {
                Err(e) => {
                    scan.content.add(&path, Err(&e));
                    scan.errors.push(e);
                }
                Ok(text) => {
                    scan.content.add(&path, Ok(&text));
                    let parsed = match known.remove(&path) {
                        Some((seen, service)) if seen == text => Ok(service),
                        _ => parse_manifest(&path, &text),
                    };
                    match parsed {
                        Ok(service) => loaded.push((service, text)),
                        Err(errors) => scan.errors.extend(errors),
                    }
                }
            },
        }
    }

    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (service, _)) in loaded.iter().enumerate() {
        by_name.entry(service.name.clone()).or_default().push(i);
    }
    let mut keep = vec![true; loaded.len()];
    for (name, indexes) in &by_name {
        if indexes.len() < 2 {
            continue;
        }
        for &i in indexes {
            keep[i] = false;
            let (service, text) = &loaded[i];
            let others: Vec<String> = indexes
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| loaded[j].0.source.display().to_string())
                .collect();
            let path = [Seg::key("service")];
            scan.errors.push(LoadError {
                file: service.source.clone(),
                location: locate_nearest(text, &path, At::Value),
                field: Some("service".into()),
                message: format!(
                    "duplicate service {name:?}: also defined in {}",
                    others.join(", ")
                ),
            });
        }
    }
    // Two services must not manage one thing: one would unmount or demote what the other
    // just brought up. Every file involved gets the error, and none of them is in force.
    // (what, which) → the (service index, resource id, field) of each claimant.
    type Claimants = Vec<(usize, String, &'static str)>;
    let mut claims: BTreeMap<(&str, String), Claimants> = BTreeMap::new();
    for (i, (service, _)) in loaded.iter().enumerate().filter(|(i, _)| keep[*i]) {
        for claim in claims_of(service) {
            claims.entry((claim.what, claim.value)).or_default().push((
                i,
                claim.rid.to_string(),
                claim.field,
            ));
        }
    }
    for ((what, value), claimants) in &claims {
        let services: std::collections::BTreeSet<usize> =
            claimants.iter().map(|(i, _, _)| *i).collect();
        if services.len() < 2 {
            continue;
        }
        for (i, rid, field) in claimants {
            keep[*i] = false;
            let (service, text) = &loaded[*i];
            let others: Vec<String> = services
                .iter()
                .filter(|&&j| j != *i)
                .map(|&j| format!("{} ({})", loaded[j].0.name, loaded[j].0.source.display()))
                .collect();
            let path = [Seg::key("resources"), Seg::key(rid), Seg::key(field)];
            scan.errors.push(LoadError {
                file: service.source.clone(),
                location: locate_nearest(text, &path, At::Value),
                field: Some(format!("resources.{rid}.{field}")),
                message: format!(
                    "{what} {value:?} is also managed by service {}: one thing, one service",
                    others.join(", ")
                ),
            });
        }
    }
    // Files that parsed are cached even when refused for a conflict: the conflict is checked
    // on every load, the parse is what is saved.
    cache.parsed = loaded
        .iter()
        .map(|(service, text)| (service.source.clone(), (text.clone(), service.clone())))
        .collect();
    scan.services = loaded
        .into_iter()
        .zip(keep)
        .filter_map(|((service, _), keep)| keep.then_some(service))
        .collect();
    scan.services.sort_by(|a, b| a.name.cmp(&b.name));
    scan
}

/// One thing on the node a service manages, which no other service may manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// "DRBD resource", "mount point", "OpenVZ container", "LXC container".
    pub what: &'static str,
    pub value: String,
    pub rid: super::ResourceId,
    /// The key naming it in the resource.
    pub field: &'static str,
}

/// What `service` manages: its DRBD resources, mount points and container.
pub fn claims_of(service: &Service) -> Vec<Claim> {
    service
        .resources
        .iter()
        .filter_map(|r| {
            let (what, value, field) = match &r.spec {
                super::Spec::Drbd(d) => ("DRBD resource", d.res.clone(), "res"),
                super::Spec::Fs(f) => ("mount point", f.mnt.display().to_string(), "mnt"),
                super::Spec::Container(c) => match &c.kind {
                    super::ContainerKind::Vz(id) => ("OpenVZ container", id.clone(), "ctid"),
                    super::ContainerKind::Lxc(name) => ("LXC container", name.clone(), "name"),
                },
                super::Spec::App(_) => return None,
            };
            Some(Claim {
                what,
                value,
                rid: r.id,
                field,
            })
        })
        .collect()
}

/// Reads a file as UTF-8 text, refusing oversized files and locating the first invalid byte.
pub(crate) fn read_text(path: &Path) -> Result<String, LoadError> {
    let file = fs::File::open(path).map_err(|e| LoadError::io(path, "file", &e))?;
    read_opened(path, file)
}

/// [`read_text`] for a file already open, so callers can tell "missing" from other failures.
pub(crate) fn read_opened(path: &Path, file: fs::File) -> Result<String, LoadError> {
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| LoadError::io(path, "file", &e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::new(
            path,
            format!("file is larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // The prefix is valid UTF-8 by definition; lossy only to avoid an unwrap.
        let valid = String::from_utf8_lossy(valid);
        let line = valid.matches('\n').count() + 1;
        let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        LoadError {
            location: Some(Location { line, column }),
            ..LoadError::new(path, "not valid UTF-8 text")
        }
    })
}

/// Parses YAML text into one `Value`, turning syntax errors, duplicate keys and multiple
/// documents into located errors. An empty document is `Value::Null`.
pub(crate) fn parse_yaml(path: &Path, text: &str) -> Result<Value, LoadError> {
    let err = match serde_yaml::from_str::<Value>(text) {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    let message = err.to_string();
    if message.contains("more than one document") {
        return Err(LoadError {
            location: locate_second_document(text),
            ..LoadError::new(
                path,
                "more than one YAML document (`---`) in the file; a file holds exactly one",
            )
        });
    }
    let duplicate = if message.contains("duplicate entry") {
        locate_duplicate_key(text)
    } else {
        None
    };
    if let Some((key_path, location)) = duplicate {
        let key = match key_path.last() {
            Some(Seg::Key(k)) => KeyText(k).to_string(),
            _ => String::new(),
        };
        return Err(LoadError {
            file: path.to_path_buf(),
            location: Some(location),
            field: Some(FieldPath(&key_path).to_string()),
            message: format!("duplicate key `{key}`: each key may appear only once in a mapping"),
        });
    }
    if message.contains("EOF while parsing") {
        return Ok(Value::Null);
    }
    static AT_MARK: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r" at (line \d+ column \d+|position \d+)").ok());
    let location = err.location().map(|l| {
        within(
            text,
            Location {
                line: l.line(),
                column: l.column(),
            },
        )
    });
    // The position goes in front, FILE:LINE:COL style; the message keeps only any context mark.
    let message = match (&*AT_MARK, location) {
        (Some(re), Some(_)) => re.replace(&message, "").into_owned(),
        _ => message,
    };
    Err(LoadError {
        location,
        ..LoadError::new(path, format!("invalid YAML: {message}"))
    })
}

/// Locates the schema reader's problems in `text`.
pub(crate) fn problems_to_errors(
    path: &Path,
    text: &str,
    problems: Vec<Problem>,
) -> Vec<LoadError> {
    let total = problems.len();
    let mut errors: Vec<LoadError> = problems
        .into_iter()
        .take(MAX_PROBLEMS_PER_FILE)
        .map(|p| LoadError {
            file: path.to_path_buf(),
            location: locate_nearest(text, &p.path, p.at),
            field: (!p.path.is_empty()).then(|| FieldPath(&p.path).to_string()),
            message: p.message,
        })
        .collect();
    if total > MAX_PROBLEMS_PER_FILE {
        errors.push(LoadError::new(
            path,
            format!("{} more problems not shown", total - MAX_PROBLEMS_PER_FILE),
        ));
    }
    errors
}

/// Parses one manifest; `path` is recorded as the service's source and names the file in errors.
pub fn parse_manifest(path: &Path, text: &str) -> Result<Service, Vec<LoadError>> {
    let value = parse_yaml(path, text).map_err(|e| vec![e])?;
    if value.is_null() {
        // No location: "line 1" of a file holding only comments would point at nothing.
        return Err(vec![LoadError::new(
            path,
            "empty manifest: expected a mapping with keys `service`, `state` and `resources`",
        )]);
    }
    let mut reader = Reader::default();
    let service = read_service(&mut reader, &value, path);
    let problems = reader.into_problems();
    match service {
        Some(service) if problems.is_empty() => Ok(service),
        _ if problems.is_empty() => Err(vec![LoadError::new(
            path,
            "internal error: manifest rejected without a reason",
        )]),
        _ => Err(problems_to_errors(path, text, problems)),
    }
}

// The keys each mapping may hold, in the order errors list them: the model's (see `doc`).
static TOP_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<ManifestDoc>);
static DRBD_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<DrbdDoc>);
static FS_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<FsDoc>);
static CONTAINER_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<ContainerDoc>);
static APP_KEYS: LazyLock<Keys> = LazyLock::new(Keys::of::<AppDoc>);

/// Reads an optional key: `Some(default)` when absent, `None` when present but invalid.
fn opt<'a, T>(
    r: &mut Reader,
    f: &Fields<'a>,
    key: &str,
    default: T,
    read: impl FnOnce(&mut Reader, &Node<'a>) -> Option<T>,
) -> Option<T> {
    match f.get(key) {
        Some(node) => read(r, &node),
        None => Some(default),
    }
}

fn read_service(r: &mut Reader, value: &Value, source: &Path) -> Option<Service> {
    let root = Node::root(value);
    match value {
        Value::Mapping(_) => {}
        other => {
            r.error(
                &root,
                format!(
                    "the top level must be a mapping with keys `service`, `state` and `resources`, found {}",
                    describe(other)
                ),
            );
            return None;
        }
    }
    let f = r.fields(&root, Some(&TOP_KEYS), false)?;
    let name = r
        .required(&f, "service")
        .and_then(|n| r.name(&n, "service name"));
    let state = r.required(&f, "state").and_then(|n| {
        r.choice(
            &n,
            &[
                ("up", DesiredState::Up),
                ("down", DesiredState::Down),
                ("frozen", DesiredState::Frozen),
            ],
        )
    });
    let node = opt(r, &f, "node", None, |r, n| r.name(n, "node name").map(Some));
    let rollback = opt(r, &f, "rollback", Service::DEFAULT_ROLLBACK, Reader::bool);
    let resources = opt(r, &f, "resources", Vec::new(), read_resources);
    Some(Service {
        name: name?,
        state: state?,
        node: node?,
        rollback: rollback?,
        resources: resources?,
        source: source.to_path_buf(),
    })
}

/// What earlier resources of the service claimed, for the per-service uniqueness rules.
#[derive(Default)]
struct Claims {
    mounts: Vec<(PathBuf, ResourceId)>,
    drbd: Vec<(String, ResourceId)>,
    container: Option<ResourceId>,
}

fn read_resources(r: &mut Reader, node: &Node) -> Option<Vec<Resource>> {
    // `resources:` with every entry commented out reads as null: an empty service.
    let f = r.fields(node, None, true)?;
    let mut claims = Claims::default();
    let mut out = Vec::new();
    let mut ok = true;
    for (key, child) in f.entries() {
        let Some(id) = key.as_str().and_then(ResourceId::parse) else {
            r.key_error(
                &child,
                format!(
                    "invalid resource id `{}`: expected KIND#N, KIND one of drbd, fs, container, app, N a number (fs#0, app#12)",
                    KeyText(key)
                ),
            );
            ok = false;
            continue;
        };
        match read_resource(r, id, &child, &mut claims) {
            Some(resource) => out.push(resource),
            None => ok = false,
        }
    }
    out.sort_by_key(|res| res.id);
    ok.then_some(out)
}

fn read_resource(
    r: &mut Reader,
    id: ResourceId,
    node: &Node,
    claims: &mut Claims,
) -> Option<Resource> {
    let mut ok = true;
    if id.kind == Kind::Container {
        match claims.container {
            Some(first) => {
                r.key_error(
                    node,
                    format!("a service has at most one container, and {first} is already one"),
                );
                ok = false;
            }
            None => claims.container = Some(id),
        }
    }
    let allowed: &Keys = match id.kind {
        Kind::Drbd => &DRBD_KEYS,
        Kind::Fs => &FS_KEYS,
        Kind::Container => &CONTAINER_KEYS,
        Kind::App => &APP_KEYS,
    };
    let f = r.fields(node, Some(allowed), false)?;
    let disabled = opt(r, &f, "disabled", false, Reader::bool);
    let optional = opt(r, &f, "optional", false, Reader::bool);
    let spec = match id.kind {
        Kind::Drbd => read_drbd(r, &f, id, claims).map(Spec::Drbd),
        Kind::Fs => read_fs(r, &f, id, claims).map(Spec::Fs),
        Kind::Container => read_container(r, &f).map(Spec::Container),
        Kind::App => read_app(r, &f).map(Spec::App),
    };
    let resource = Resource {
        id,
        disabled: disabled?,
        optional: optional?,
        spec: spec?,
    };
    ok.then_some(resource)
}

fn read_drbd(r: &mut Reader, f: &Fields, id: ResourceId, claims: &mut Claims) -> Option<DrbdSpec> {
    let res = r.required(f, "res").and_then(|n| {
        let res = r.name(&n, "DRBD resource name")?;
        if let Some((_, other)) = claims.drbd.iter().find(|(name, _)| *name == res) {
            r.error(
                &n,
                format!("DRBD resource {res:?} is already used by {other}"),
            );
            return None;
        }
        claims.drbd.push((res.clone(), id));
        Some(res)
    });
    let stop = opt(r, f, "stop", DrbdStop::default(), |r, n| {
        r.choice(
            n,
            &[("secondary", DrbdStop::Secondary), ("down", DrbdStop::Down)],
        )
    });
    let allow_two_primaries = opt(r, f, "allow_two_primaries", false, Reader::bool);
    Some(DrbdSpec {
        res: res?,
        stop: stop?,
        allow_two_primaries: allow_two_primaries?,
    })
}

fn read_fs(r: &mut Reader, f: &Fields, id: ResourceId, claims: &mut Claims) -> Option<FsSpec> {
    let dev = r.required(f, "dev").and_then(|n| r.absolute_path(&n));
    let mnt = r.required(f, "mnt").and_then(|n| {
        let mnt = r.absolute_path(&n)?;
        if mnt == Path::new("/") {
            r.error(&n, "the root directory cannot be a service mount point");
            return None;
        }
        // Path equality is by component: "/a/" and "/a" are the same mount point.
        if let Some((_, other)) = claims.mounts.iter().find(|(m, _)| *m == mnt) {
            r.error(
                &n,
                format!("mount point {} is already used by {other}", mnt.display()),
            );
            return None;
        }
        claims.mounts.push((mnt.clone(), id));
        Some(mnt)
    });
    let fstype = r
        .required(f, "type")
        .and_then(|n| r.name(&n, "filesystem type"));
    let default_options = FsSpec::DEFAULT_OPTIONS.to_owned();
    let options = opt(r, f, "options", default_options, |r, n| {
        let options = r.nonempty_string(n)?;
        if options.chars().any(char::is_whitespace) {
            r.error(
                n,
                format!("mount options must not contain whitespace (separate them with commas), got {options:?}"),
            );
            return None;
        }
        Some(options)
    });
    let fsck = opt(r, f, "fsck", Fsck::default(), |r, n| match n.value {
        Value::Bool(true) => Some(Fsck::Yes),
        Value::Bool(false) => Some(Fsck::No),
        Value::String(s) if s == "auto" => Some(Fsck::Auto),
        other => {
            r.error(
                n,
                format!(
                    "expected true, false or \"auto\", found {}",
                    describe(other)
                ),
            );
            None
        }
    });
    // The manifest alone says this cannot work, so `validate` says so rather than a plan.
    let fsck = match (fsck, &fstype) {
        (Some(Fsck::Yes), Some(fstype)) if !is_ext(fstype) => {
            if let Some(n) = f.get("fsck") {
                r.error(
                    &n,
                    format!(
                        "fsck: true needs a filesystem converge can check ({}), not {fstype}; set fsck: false or auto",
                        EXT_TYPES.join(", ")
                    ),
                );
            }
            None
        }
        (fsck, _) => fsck,
    };
    let umount_kill = opt(r, f, "umount_kill", false, Reader::bool);
    let timeout = opt(r, f, "timeout", FsSpec::DEFAULT_TIMEOUT, Reader::duration);
    Some(FsSpec {
        dev: dev?,
        mnt: mnt?,
        fstype: fstype?,
        options: options?,
        fsck: fsck?,
        umount_kill: umount_kill?,
        timeout: timeout?,
    })
}

fn read_container(r: &mut Reader, f: &Fields) -> Option<ContainerSpec> {
    let ctype = r.required(f, "type").and_then(|n| {
        r.choice(
            &n,
            &[("vz", ContainerType::Vz), ("lxc", ContainerType::Lxc)],
        )
    });
    // An OpenVZ ctid is a number; YAML reads `ctid: 101` as an integer, which is fine.
    let ctid = f.get("ctid").and_then(|n| {
        let text = match n.value {
            Value::Number(num) if num.is_u64() || num.is_i64() => num.to_string(),
            Value::String(s) => s.clone(),
            other => {
                r.error(
                    &n,
                    format!("expected a string or an integer, found {}", describe(other)),
                );
                return None;
            }
        };
        if !r.check_name(&n, "container id", &text) {
            return None;
        }
        // OpenVZ reserves CT 0 for the host itself: starting or stopping it is never meant.
        if text == "0" {
            r.error(&n, "ctid 0 is the host itself, not a container");
            return None;
        }
        Some(text)
    });
    let name = f.get("name").and_then(|n| r.name(&n, "container name"));
    let kind = match ctype {
        Some(ContainerType::Vz) => {
            if let Some(n) = f.get("name") {
                r.key_error(
                    &n,
                    "`name` is for lxc containers; a vz container is identified by `ctid`",
                );
            }
            if !f.has("ctid") {
                r.error(
                    f.node(),
                    "missing required key `ctid` (the OpenVZ container id)",
                );
            }
            ctid.map(ContainerKind::Vz)
        }
        Some(ContainerType::Lxc) => {
            if let Some(n) = f.get("ctid") {
                r.key_error(
                    &n,
                    "`ctid` is for vz containers; an lxc container is identified by `name`",
                );
            }
            if !f.has("name") {
                r.error(
                    f.node(),
                    "missing required key `name` (the LXC container name)",
                );
            }
            name.map(ContainerKind::Lxc)
        }
        None => None,
    };
    let start_timeout = opt(
        r,
        f,
        "start_timeout",
        ContainerSpec::DEFAULT_START_TIMEOUT,
        Reader::duration,
    );
    let stop_timeout = opt(
        r,
        f,
        "stop_timeout",
        ContainerSpec::DEFAULT_STOP_TIMEOUT,
        Reader::duration,
    );
    Some(ContainerSpec {
        kind: kind?,
        start_timeout: start_timeout?,
        stop_timeout: stop_timeout?,
    })
}

fn read_app(r: &mut Reader, f: &Fields) -> Option<AppSpec> {
    let argv_given: Vec<&str> = ["start", "stop", "check"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    let commands = match f.get("scripts") {
        Some(scripts) => {
            for key in &argv_given {
                if let Some(n) = f.get(key) {
                    r.key_error(
                        &n,
                        format!("`{key}` cannot be combined with `scripts`: use either a scripts directory or start/stop/check commands"),
                    );
                }
            }
            let dir = r.absolute_path(&scripts);
            if argv_given.is_empty() {
                dir.map(AppCommands::Scripts)
            } else {
                None
            }
        }
        None if argv_given.is_empty() => {
            r.error(
                f.node(),
                "missing commands: set `scripts` (a directory of S*/K*/C* scripts) or at least one of `start`, `stop`, `check`",
            );
            None
        }
        None => {
            let start = opt(r, f, "start", None, read_argv);
            let stop = opt(r, f, "stop", None, read_argv);
            let check = opt(r, f, "check", None, read_argv);
            Some(AppCommands::Argv {
                start: start?,
                stop: stop?,
                check: check?,
            })
        }
    };
    let timeout = opt(r, f, "timeout", AppSpec::DEFAULT_TIMEOUT, Reader::duration);
    let retcodes = opt(r, f, "retcodes", AppSpec::default_retcodes(), read_retcodes);
    Some(AppSpec {
        commands: commands?,
        timeout: timeout?,
        retcodes: retcodes?,
    })
}

/// A command line; the program must be an absolute path, as there is no PATH to trust.
fn read_argv(r: &mut Reader, node: &Node) -> Option<Option<Vec<String>>> {
    let argv = r.string_list(node)?;
    let first = Reader::element(node, 0)?;
    if !argv[0].starts_with('/') {
        r.error(
            &first,
            format!("the program must be an absolute path, got {:?}", argv[0]),
        );
        return None;
    }
    Some(Some(argv))
}

/// `"0:up 1:down 3:warn"`: exit code → status.
fn read_retcodes(r: &mut Reader, node: &Node) -> Option<Vec<(i32, AppStatus)>> {
    let text = r.string(node)?;
    let mut out: Vec<(i32, AppStatus)> = Vec::new();
    let mut ok = true;
    let status_words: Vec<&str> = AppStatus::ALL.iter().map(|s| s.word()).collect();
    for pair in text.split_whitespace() {
        let parsed = pair.split_once(':').and_then(|(code, status)| {
            let code = code.parse::<i32>().ok()?;
            let status = AppStatus::ALL.into_iter().find(|s| s.word() == status)?;
            Some((code, status))
        });
        match parsed {
            Some((code, _)) if out.iter().any(|(c, _)| *c == code) => {
                r.error(node, format!("exit code {code} is listed twice"));
                ok = false;
            }
            Some(entry) => out.push(entry),
            None => {
                r.error(
                    node,
                    format!(
                        "invalid entry {pair:?}: expected CODE:STATUS, STATUS one of {} (e.g. \"0:up 1:down 3:warn\")",
                        status_words.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    if ok && out.is_empty() {
        r.error(
            node,
            "must list at least one CODE:STATUS pair, e.g. \"0:up 1:down\"",
        );
        return None;
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const EXAMPLE: &str = include_str!("../../../../manifests/drbdsvc.yaml");

    fn parse(text: &str) -> Result<Service, Vec<LoadError>> {
        parse_manifest(Path::new("/m/t.yaml"), text)
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(s) => panic!("expected errors, got {s:?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// The one error of `text`, without the file name.
    fn error(text: &str) -> String {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        errs[0]
            .trim_start_matches("/m/t.yaml:")
            .trim_start()
            .to_string()
    }

    #[test]
    fn regression_a_yaml_error_at_the_end_of_a_file_points_inside_it() {
        // Found by the parsers' fuzz tests (tests/parser_fuzz.rs): at the end of a file without a
        // final newline, the YAML reader reports the line after the last one (`s.yaml:2:1` for
        // a one-line file), which an editor cannot open at. The error is placed at the end of
        // the text instead. Line breaks are YAML's: `\r\n`, `\r`, `\n`, NEL, LS and PS.
        for (text, line, column) in [
            ("{0", 1, 3),
            ("service: s\nstate: up\n0", 3, 2),
            ("a:\u{2028}b:null", 2, 7),
            ("a: [\r\n", 2, 1),
            // The second document's marker, placed by the locator.
            ("a:\n---", 2, 4),
        ] {
            let errors = parse(text).expect_err(text);
            let location = errors[0].location.expect("located");
            assert_eq!(
                (location.line, location.column),
                (line, column),
                "{text:?}: {}",
                errors[0]
            );
        }
    }

    #[test]
    fn the_example_parses_to_the_documented_values() {
        let svc = parse(EXAMPLE).expect("example");
        assert_eq!(svc.name, "drbdsvc.opensvc.com");
        assert_eq!(svc.state, DesiredState::Up);
        assert_eq!(svc.node.as_deref(), Some("deb1"));
        assert!(svc.rollback);
        assert_eq!(svc.source, Path::new("/m/t.yaml"));
        let ids: Vec<String> = svc.resources.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["drbd#0", "fs#1", "container#0", "app#0"]);
        assert_eq!(
            svc.resources[0].spec,
            Spec::Drbd(DrbdSpec {
                res: "data".into(),
                stop: DrbdStop::Secondary,
                allow_two_primaries: false
            })
        );
        assert_eq!(
            svc.resources[1].spec,
            Spec::Fs(FsSpec {
                dev: "/dev/drbd0".into(),
                mnt: "/drbdsvc".into(),
                fstype: "ext3".into(),
                options: "defaults".into(),
                fsck: Fsck::Auto,
                umount_kill: false,
                timeout: FsSpec::DEFAULT_TIMEOUT,
            })
        );
        assert_eq!(
            svc.resources[2].spec,
            Spec::Container(ContainerSpec {
                kind: ContainerKind::Vz("101".into()),
                start_timeout: ContainerSpec::DEFAULT_START_TIMEOUT,
                stop_timeout: ContainerSpec::DEFAULT_STOP_TIMEOUT,
            })
        );
        assert_eq!(
            svc.resources[3].spec,
            Spec::App(AppSpec {
                commands: AppCommands::Scripts("/svc/etc/init.d".into()),
                timeout: Duration::from_secs(120),
                retcodes: AppSpec::default_retcodes(),
            })
        );
        assert!(svc.resources.iter().all(|r| !r.disabled && !r.optional));
    }

    #[test]
    fn every_key_can_be_set() {
        let text = r#"
service: full
state: frozen
rollback: false
resources:
  drbd#3: {res: r1, stop: down, allow_two_primaries: true, disabled: true, optional: true}
  fs#0:
    dev: /dev/drbd1
    mnt: /srv/x/
    type: xfs
    options: noatime,nodev
    fsck: false
    umount_kill: true
    timeout: 1h 5m
  fs#2: {dev: /dev/a, mnt: /a, type: ext4, fsck: true}
  fs#4: {dev: /dev/b, mnt: /b, type: ext4, fsck: auto}
  container#7: {type: lxc, name: web-1, start_timeout: 30s, stop_timeout: 10s}
  app#1:
    start: [/bin/svc, start]
    check: ["/bin/svc", "status"]
    timeout: 5s
    retcodes: "0:up 1:down 3:warn 4:n/a"
  app#0:
    stop: [/bin/true]
"#;
        let svc = parse(text).expect("valid");
        assert_eq!(svc.state, DesiredState::Frozen);
        assert_eq!(svc.node, None);
        assert!(!svc.rollback);
        let ids: Vec<String> = svc.resources.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "drbd#3",
                "fs#0",
                "fs#2",
                "fs#4",
                "container#7",
                "app#0",
                "app#1"
            ]
        );
        let drbd = &svc.resources[0];
        assert!(drbd.disabled && drbd.optional);
        assert_eq!(
            drbd.spec,
            Spec::Drbd(DrbdSpec {
                res: "r1".into(),
                stop: DrbdStop::Down,
                allow_two_primaries: true
            })
        );
        let Spec::Fs(fs) = &svc.resources[1].spec else {
            panic!("fs")
        };
        assert_eq!(fs.options, "noatime,nodev");
        assert_eq!(fs.fsck, Fsck::No);
        assert!(fs.umount_kill);
        assert_eq!(fs.timeout, Duration::from_secs(3900));
        let fsck: Vec<Fsck> = svc.resources[2..4]
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::Fs(f) => Some(f.fsck),
                _ => None,
            })
            .collect();
        assert_eq!(fsck, [Fsck::Yes, Fsck::Auto]);
        assert_eq!(
            svc.resources[4].spec,
            Spec::Container(ContainerSpec {
                kind: ContainerKind::Lxc("web-1".into()),
                start_timeout: Duration::from_secs(30),
                stop_timeout: Duration::from_secs(10),
            })
        );
        assert_eq!(
            svc.resources[5].spec,
            Spec::App(AppSpec {
                commands: AppCommands::Argv {
                    start: None,
                    stop: Some(vec!["/bin/true".into()]),
                    check: None
                },
                timeout: AppSpec::DEFAULT_TIMEOUT,
                retcodes: AppSpec::default_retcodes(),
            })
        );
        let Spec::App(app) = &svc.resources[6].spec else {
            panic!("app")
        };
        assert_eq!(app.timeout, Duration::from_secs(5));
        assert_eq!(
            app.retcodes,
            [
                (0, AppStatus::Up),
                (1, AppStatus::Down),
                (3, AppStatus::Warn),
                (4, AppStatus::NotApplicable)
            ]
        );
        assert_eq!(
            app.commands,
            AppCommands::Argv {
                start: Some(vec!["/bin/svc".into(), "start".into()]),
                stop: None,
                check: Some(vec!["/bin/svc".into(), "status".into()]),
            }
        );
    }

    #[test]
    fn empty_resources_are_allowed() {
        for text in [
            "service: s\nstate: down\n",
            "service: s\nstate: down\nresources: {}\n",
            "service: s\nstate: down\nresources:\n  # fs#0: ...\n",
        ] {
            assert_eq!(parse(text).expect(text).resources, []);
        }
    }

    #[test]
    fn relative_mount_point_is_located() {
        let text = EXAMPLE.replace("mnt: /drbdsvc", "mnt: drbdsvc");
        assert_eq!(
            error(&text),
            "9:10: resources.fs#1.mnt: must be an absolute path, got \"drbdsvc\""
        );
    }

    #[test]
    fn unknown_keys_name_the_allowed_ones() {
        let text = "service: s\nstate: up\nresources:\n  drbd#0: {res: r, size: 1}\n";
        assert_eq!(
            error(text),
            "4:20: resources.drbd#0.size: unknown key `size`; allowed keys: res, stop, allow_two_primaries, disabled, optional"
        );
        let text = "service: s\nstate: up\nstat: up\n";
        assert!(error(text).starts_with("3:1: stat: unknown key `stat`;"));
    }

    #[test]
    fn all_errors_of_a_file_are_reported_in_order() {
        let text = "\
service: -bad
state: sideways
resources:
  disk#0: {}
  fs#01: {}
  drbd#0: {res: -x}
  fs#0: {dev: dev, mnt: /m, type: ext4, timeout: 0s}
  app#0: {}
";
        let errs = errors(text);
        let errs: Vec<&str> = errs
            .iter()
            .map(|e| e.trim_start_matches("/m/t.yaml:"))
            .collect();
        assert_eq!(
            errs,
            [
                "1:10: service: invalid service name \"-bad\": must not start with `-` (it would be taken for an option)",
                "2:8: state: expected one of up, down, frozen, got \"sideways\"",
                "4:3: resources.disk#0: invalid resource id `disk#0`: expected KIND#N, KIND one of drbd, fs, container, app, N a number (fs#0, app#12)",
                "5:3: resources.fs#01: invalid resource id `fs#01`: expected KIND#N, KIND one of drbd, fs, container, app, N a number (fs#0, app#12)",
                "6:17: resources.drbd#0.res: invalid DRBD resource name \"-x\": must not start with `-` (it would be taken for an option)",
                "7:15: resources.fs#0.dev: must be an absolute path, got \"dev\"",
                "7:50: resources.fs#0.timeout: duration must not be zero, got \"0s\"",
                "8:10: resources.app#0: missing commands: set `scripts` (a directory of S*/K*/C* scripts) or at least one of `start`, `stop`, `check`",
            ]
        );
    }

    #[test]
    fn missing_required_keys_point_at_the_mapping() {
        let text = "state: up\nresources:\n  fs#0:\n    dev: /dev/x\n";
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "/m/t.yaml:1:1: missing required key `service`",
                "/m/t.yaml:4:5: resources.fs#0: missing required key `mnt`",
                "/m/t.yaml:4:5: resources.fs#0: missing required key `type`",
            ]
        );
    }

    #[test]
    fn wrong_types_say_expected_and_found() {
        let text = "service: s\nstate: up\nrollback: 1\nresources:\n  fs#0: [a]\n";
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "/m/t.yaml:3:11: rollback: invalid type: integer `1`, expected a boolean",
                "/m/t.yaml:5:9: resources.fs#0: expected a mapping, found a sequence",
            ]
        );
    }

    #[test]
    fn a_cached_load_sees_every_edit_as_a_fresh_load_does() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let write = |name: &str, text: &str| fs::write(dir.join(name), text).expect("write");
        let app = "resources:\n  app#0:\n    start: [/bin/true]\n";
        let mut cache = ParseCache::default();
        let mut both_agree = |what: &str| {
            let cached = load_dir_lenient_cached(dir, &mut cache);
            assert_eq!(
                (cached.services.clone(), cached.errors.clone()),
                load_dir_lenient(dir),
                "{what}"
            );
            let fresh = load_dir_lenient_cached(dir, &mut ParseCache::default());
            assert_eq!(cached.content, fresh.content, "{what}");
            (cached.services, cached.errors)
        };
        write("a.yaml", &format!("service: a\nstate: up\nnode: n1\n{app}"));
        write("b.yaml", &format!("service: b\nstate: up\n{app}"));
        both_agree("first load");
        // The same size, within the same clock tick: only the text tells.
        write("a.yaml", &format!("service: a\nstate: up\nnode: n2\n{app}"));
        let (services, _) = both_agree("same-size edit");
        assert_eq!(services[0].node.as_deref(), Some("n2"));
        write("b.yaml", "service: b\nstate: sideways\n");
        let (services, errors) = both_agree("broken");
        assert_eq!((services.len(), errors.len()), (1, 1));
        write("b.yaml", &format!("service: b\nstate: down\n{app}"));
        both_agree("fixed");
        write("c.yaml", &format!("service: a\nstate: up\n{app}"));
        let (services, errors) = both_agree("a duplicate, though a.yaml is unchanged");
        assert_eq!((services.len(), errors.len()), (1, 2));
        fs::remove_file(dir.join("c.yaml")).expect("rm");
        let (services, errors) = both_agree("the duplicate gone");
        assert_eq!((services.len(), errors.len()), (2, 0));
    }

    #[test]
    fn per_service_uniqueness() {
        let text = "\
service: s
state: up
resources:
  drbd#0: {res: data}
  drbd#1: {res: data}
  fs#0: {dev: /dev/a, mnt: /srv, type: ext4}
  fs#1: {dev: /dev/b, mnt: /srv/, type: ext4}
  container#0: {type: vz, ctid: 101}
  container#1: {type: lxc, name: c}
";
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "/m/t.yaml:5:17: resources.drbd#1.res: DRBD resource \"data\" is already used by drbd#0",
                "/m/t.yaml:7:28: resources.fs#1.mnt: mount point /srv/ is already used by fs#0",
                "/m/t.yaml:9:3: resources.container#1: a service has at most one container, and container#0 is already one",
            ]
        );
    }

    #[test]
    fn container_identity_rules() {
        let base = "service: s\nstate: up\nresources:\n  container#0: ";
        let e = |spec: &str| errors(&format!("{base}{spec}\n"));
        assert_eq!(
            e("{type: vz}"),
            [
                "/m/t.yaml:4:16: resources.container#0: missing required key `ctid` (the OpenVZ container id)"
            ]
        );
        assert_eq!(
            e("{type: lxc, name: a, ctid: 1}"),
            [
                "/m/t.yaml:4:37: resources.container#0.ctid: `ctid` is for vz containers; an lxc container is identified by `name`"
            ]
        );
        assert_eq!(
            e("{type: vz, ctid: 1, name: a}"),
            [
                "/m/t.yaml:4:36: resources.container#0.name: `name` is for lxc containers; a vz container is identified by `ctid`"
            ]
        );
        assert_eq!(
            e("{type: vz, ctid: -101}"),
            [
                "/m/t.yaml:4:33: resources.container#0.ctid: invalid container id \"-101\": must not start with `-` (it would be taken for an option)"
            ]
        );
        assert_eq!(
            e("{type: lxc, name: 'a b'}"),
            [
                "/m/t.yaml:4:34: resources.container#0.name: invalid container name \"a b\": only letters, digits, `_`, `.` and `-` are allowed"
            ]
        );
        assert_eq!(
            e("{type: vz, ctid: 0}"),
            [
                "/m/t.yaml:4:33: resources.container#0.ctid: ctid 0 is the host itself, not a container"
            ]
        );
        assert_eq!(
            e("{type: kvm}"),
            ["/m/t.yaml:4:23: resources.container#0.type: expected one of vz, lxc, got \"kvm\""]
        );
    }

    #[test]
    fn app_command_styles() {
        let base = "service: s\nstate: up\nresources:\n  app#0: ";
        let e = |spec: &str| errors(&format!("{base}{spec}\n"));
        assert_eq!(
            e("{scripts: /s, start: [/bin/a]}"),
            [
                "/m/t.yaml:4:24: resources.app#0.start: `start` cannot be combined with `scripts`: use either a scripts directory or start/stop/check commands"
            ]
        );
        assert_eq!(
            e("{scripts: rel}"),
            ["/m/t.yaml:4:20: resources.app#0.scripts: must be an absolute path, got \"rel\""]
        );
        assert_eq!(
            e("{start: [bin/a, x], stop: []}"),
            [
                "/m/t.yaml:4:19: resources.app#0.start[0]: the program must be an absolute path, got \"bin/a\"",
                "/m/t.yaml:4:36: resources.app#0.stop: must not be an empty list",
            ]
        );
        assert_eq!(
            e("{check: [/bin/sleep, 10]}"),
            [
                "/m/t.yaml:4:31: resources.app#0.check[1]: invalid type: integer `10`, expected a string"
            ]
        );
        assert_eq!(
            e("{check: /bin/x}"),
            [
                "/m/t.yaml:4:18: resources.app#0.check: expected a list of strings, found string \"/bin/x\""
            ]
        );
    }

    #[test]
    fn retcodes_format() {
        let base = "service: s\nstate: up\nresources:\n  app#0: {stop: [/x], retcodes: ";
        let e = |spec: &str| errors(&format!("{base}{spec}}}\n"));
        assert_eq!(e("'0:up 0:down'").len(), 1);
        assert!(e("'0:up 1:sideways'")[0].contains("invalid entry \"1:sideways\""));
        assert!(e("'x:up'")[0].contains("invalid entry \"x:up\""));
        assert!(e("''")[0].contains("at least one"));
        assert!(e("0")[0].contains("expected a string"));
    }

    #[test]
    fn problems_past_the_cap_are_counted_not_listed() {
        let mut text = String::from("service: s\nstate: up\n");
        for i in 0..MAX_PROBLEMS_PER_FILE + 5 {
            text.push_str(&format!("k{i}: 1\n"));
        }
        let errs = errors(&text);
        assert_eq!(errs.len(), MAX_PROBLEMS_PER_FILE + 1);
        assert_eq!(
            errs[MAX_PROBLEMS_PER_FILE],
            "/m/t.yaml: 5 more problems not shown"
        );
    }

    #[test]
    fn fsck_accepts_booleans_and_auto_only() {
        let text = "service: s\nstate: up\nresources:\n  fs#0: {dev: /d, mnt: /m, type: ext4, fsck: yes}\n";
        assert_eq!(
            error(text),
            "4:46: resources.fs#0.fsck: expected true, false or \"auto\", found string \"yes\""
        );
    }

    #[test]
    fn fsck_true_needs_a_type_converge_can_check() {
        let text = "service: s\nstate: up\nresources:\n  fs#1:\n    dev: /d\n    mnt: /m\n    type: xfs\n    fsck: true\n";
        assert_eq!(
            error(text),
            "8:11: resources.fs#1.fsck: fsck: true needs a filesystem converge can check (ext2, ext3, ext4), not xfs; set fsck: false or auto"
        );
        for fsck in ["false", "auto"] {
            let text = text.replace("fsck: true", &format!("fsck: {fsck}"));
            parse(&text).expect(fsck);
        }
        for fstype in EXT_TYPES {
            let text = text.replace("type: xfs", &format!("type: {fstype}"));
            let svc = parse(&text).expect(fstype);
            assert_eq!(
                svc.resources[0].spec.as_fs().map(|f| f.fsck),
                Some(Fsck::Yes)
            );
        }
        // The other problems of the resource are still reported with it.
        let text = text.replace("mnt: /m", "mnt: m");
        assert_eq!(errors(&text).len(), 2, "{:?}", errors(&text));
    }

    /// Between them, these set every key of the manifest model (a service has one container,
    /// and an app uses scripts or commands, so one file cannot).
    const EVERY_KEY: [&str; 2] = [
        r#"
service: all-a
state: up
node: n1
rollback: false
resources:
  drbd#0: {res: r0, stop: down, allow_two_primaries: true, disabled: false, optional: true}
  fs#0:
    dev: /dev/drbd0
    mnt: /a
    type: ext4
    options: noatime
    fsck: true
    umount_kill: true
    timeout: 30s
    disabled: false
    optional: false
  container#0:
    type: vz
    ctid: 101
    start_timeout: 1m
    stop_timeout: 1m
    disabled: false
    optional: false
  app#0:
    scripts: /etc/init.d
    timeout: 1m
    retcodes: "0:up 1:down"
    disabled: false
    optional: false
"#,
        r#"
service: all-b
state: down
resources:
  container#0: {type: lxc, name: web}
  app#0: {start: [/bin/a], stop: [/bin/b], check: [/bin/c]}
"#,
    ];

    /// The reader and the model cannot drift apart: a key declared in a document type that the
    /// reader never reads fails here (and one the reader reads that the model does not declare
    /// fails the reader's debug assertion).
    #[test]
    fn the_reader_reads_every_key_of_the_model() {
        use crate::manifest::schema::asked;
        use schemars::JsonSchema;
        use std::collections::BTreeSet;

        let schema = crate::schema_files::manifest_schema();
        let models = crate::schema_files::models(&ManifestDoc::schema_name(), &schema);
        let names: BTreeSet<&str> = models.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from([
                TOP_KEYS.model(),
                DRBD_KEYS.model(),
                FS_KEYS.model(),
                CONTAINER_KEYS.model(),
                APP_KEYS.model()
            ]),
            "every model of the schema is a mapping the reader opens"
        );

        // The texts must set every key, or a key read only in some branch could go unnoticed.
        let mut set: BTreeSet<(String, String)> = BTreeSet::new();
        let mut asked_for = BTreeSet::new();
        for text in EVERY_KEY {
            let (parsed, asked) = asked::record(|| parse(text));
            parsed.expect("every-key manifest");
            asked_for.extend(asked);
            let value: Value = serde_yaml::from_str(text).expect("yaml");
            let mut note = |keys: &Keys, map: &Value| {
                let found = map.as_mapping().into_iter().flatten();
                for key in found.filter_map(|(k, _)| k.as_str()) {
                    set.insert((keys.model().to_owned(), key.to_owned()));
                }
            };
            note(&TOP_KEYS, &value);
            for (id, resource) in value["resources"].as_mapping().into_iter().flatten() {
                let kind = id.as_str().and_then(ResourceId::parse).expect("id").kind;
                let keys: &Keys = match kind {
                    Kind::Drbd => &DRBD_KEYS,
                    Kind::Fs => &FS_KEYS,
                    Kind::Container => &CONTAINER_KEYS,
                    Kind::App => &APP_KEYS,
                };
                note(keys, resource);
            }
        }
        for (model, keys) in &models {
            for key in keys {
                let pair = (model.clone(), key.clone());
                assert!(set.contains(&pair), "EVERY_KEY does not set {model}.{key}");
                assert!(
                    asked_for.contains(&pair),
                    "{model}.{key} is declared in the model but the reader never reads it"
                );
            }
        }
    }

    #[test]
    fn yaml_level_errors_are_clear_and_located() {
        assert_eq!(
            error(""),
            "empty manifest: expected a mapping with keys `service`, `state` and `resources`"
        );
        assert_eq!(
            error("# nothing\n"),
            "empty manifest: expected a mapping with keys `service`, `state` and `resources`"
        );
        assert_eq!(
            error("- a\n- b\n"),
            "1:1: the top level must be a mapping with keys `service`, `state` and `resources`, found a sequence"
        );
        assert_eq!(
            error("service: a\nstate: up\n---\nservice: b\n"),
            "4:1: more than one YAML document (`---`) in the file; a file holds exactly one"
        );
        assert_eq!(
            error("service: a\nstate: up\nresources:\n  fs#0: {}\n  app#0: {}\n  fs#0: {}\n"),
            "6:3: resources.fs#0: duplicate key `fs#0`: each key may appear only once in a mapping"
        );
        let syntax = error("service: a\nstate: [up\n");
        assert!(syntax.starts_with("3:1: invalid YAML: "), "{syntax}");
        assert!(!syntax.contains("at line 3"), "{syntax}");
        let tab = error("service: a\n\tstate: up\n");
        assert!(tab.contains("invalid YAML"), "{tab}");
    }

    #[test]
    fn error_display_omits_missing_parts() {
        let e = LoadError::new(Path::new("/d"), "boom");
        assert_eq!(e.to_string(), "/d: boom");
        let e = LoadError {
            location: Some(Location { line: 7, column: 5 }),
            field: Some("resources.fs#1.mnt".into()),
            ..LoadError::new(
                Path::new("/etc/converge/manifests/web.yaml"),
                "must be an absolute path, got \"drbdsvc\"",
            )
        };
        assert_eq!(
            e.to_string(),
            "/etc/converge/manifests/web.yaml:7:5: resources.fs#1.mnt: must be an absolute path, got \"drbdsvc\""
        );
    }

    #[test]
    fn manifest_names() {
        let yes = ["a.yaml", "a.yml", "a.b.yaml"];
        let no = [
            ".a.yaml",
            ".a.yaml.swp",
            "a.yaml~",
            ".#a.yaml",
            "#a.yaml#",
            "a.json",
            "a",
            "a.yaml.bak",
            "a.YAML.swp",
            ".yaml",
        ];
        for name in yes {
            assert!(is_manifest_name(name.as_ref()), "{name}");
        }
        for name in no {
            assert!(!is_manifest_name(name.as_ref()), "{name}");
        }
    }

    /// A tiny deterministic generator: the fuzz test must be reproducible without a dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn mutated_manifests_never_panic() {
        let bytes = EXAMPLE.as_bytes();
        let mut inputs: Vec<Vec<u8>> = (0..bytes.len())
            .step_by(3)
            .map(|n| bytes[..n].to_vec())
            .collect();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // Bytes that matter to YAML's grammar, to hit more than the "invalid scalar" paths.
        let specials = b":-[]{}#&*!|>'\"%@`,? \n\t0~";
        for _ in 0..400 {
            let mut b = bytes.to_vec();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                match rng.below(4) {
                    0 => b[i] = rng.next() as u8,
                    1 => b[i] = specials[rng.below(specials.len())],
                    2 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, specials[rng.below(specials.len())]),
                }
            }
            inputs.push(b);
        }
        let mut ok = 0;
        for input in &inputs {
            let text = String::from_utf8_lossy(input);
            match parse(&text) {
                Ok(_) => ok += 1,
                Err(errors) => assert!(!errors.is_empty()),
            }
        }
        assert!(ok > 0 && ok < inputs.len(), "{ok} of {}", inputs.len());
    }
}
