//! A small schema reader over `serde_yaml::Value`: it walks the tree, converts leaves and collects
//! every problem as (field path, key-or-value, message) instead of stopping at the first one.
//!
//! `Value` carries no positions, so problems hold the path only; [`super::locate`] turns the path
//! back into line:column against the text afterwards.
//!
//! Which keys a mapping may hold is not written here, nor in the code that reads each mapping:
//! it is a [`Keys`], the properties of a document type's generated schema (see
//! [`super::doc`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use crate::escape::{EXCERPT_CHARS, excerpt, shortened};

/// One step down the tree: a mapping key (as written, any scalar) or a sequence index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Key(Value),
    Index(usize),
}

impl Seg {
    pub(crate) fn key(name: &str) -> Seg {
        Seg::Key(Value::String(name.to_owned()))
    }
}

/// Whether a problem is about a mapping key itself (unknown key, bad id) or about the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    Key,
    Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub path: Vec<Seg>,
    pub at: At,
    pub message: String,
}

/// Renders a path the way operators write it: `resources.fs#1.mnt`, `resources.app#0.start[0]`.
pub(crate) struct FieldPath<'a>(pub &'a [Seg]);

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "{}", KeyText(key))?;
                }
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A mapping key as text, for paths and messages.
pub(crate) struct KeyText<'a>(pub &'a Value);

impl fmt::Display for KeyText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::String(s) => f.write_str(&shortened(s)),
            Value::Number(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => f.write_str("~"),
            Value::Sequence(_) => f.write_str("<sequence>"),
            Value::Mapping(_) => f.write_str("<mapping>"),
            Value::Tagged(t) => write!(f, "{} {}", t.tag, KeyText(&t.value)),
        }
    }
}

/// A position in the tree being read.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    pub value: &'a Value,
    pub path: Vec<Seg>,
}

impl<'a> Node<'a> {
    pub(crate) fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: Vec::new(),
        }
    }

    fn child(&self, seg: Seg, value: &'a Value) -> Node<'a> {
        let mut path = self.path.clone();
        path.push(seg);
        Node { value, path }
    }
}

/// The keys a mapping may hold, in the order an unknown-key error lists them: the
/// `properties` of a document type's schema, which are in field declaration order.
#[derive(Debug)]
pub(crate) struct Keys {
    /// The document type's schema name, e.g. `FsDoc`.
    model: String,
    names: Vec<String>,
}

impl Keys {
    /// The keys of `T`'s mapping. Generating a schema is not free: callers keep the result in a
    /// static.
    pub(crate) fn of<T: JsonSchema>() -> Keys {
        let schema = super::doc::generator().into_root_schema_for::<T>();
        let names = schema
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default();
        Keys {
            model: T::schema_name().into_owned(),
            names,
        }
    }

    #[cfg(test)]
    pub(crate) fn listed(model: &str, names: &[&str]) -> Keys {
        Keys {
            model: model.to_owned(),
            names: names.iter().map(|&n| n.to_owned()).collect(),
        }
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.names.iter().any(|n| n == key)
    }

    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

/// The entries of a mapping whose unknown keys have already been reported.
pub(crate) struct Fields<'a> {
    node: Node<'a>,
    map: &'a Mapping,
    /// `None`: any key (the resource ids of `resources`, checked by their reader).
    keys: Option<&'a Keys>,
}

impl<'a> Fields<'a> {
    pub(crate) fn node(&self) -> &Node<'a> {
        &self.node
    }

    pub(crate) fn get(&self, key: &str) -> Option<Node<'a>> {
        self.asking(key);
        self.map
            .get(key)
            .map(|value| self.node.child(Seg::key(key), value))
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.asking(key);
        self.map.contains_key(key)
    }

    /// The reader may ask only for keys the model declares: a key it reads that the model lacks
    /// would be refused as unknown before it is ever read.
    fn asking(&self, key: &str) {
        if let Some(keys) = self.keys {
            debug_assert!(
                keys.contains(key),
                "the reader asks for `{key}`, which {} does not declare",
                keys.model()
            );
            #[cfg(test)]
            asked::note(keys.model(), key);
        }
    }

    /// All entries in file order, each as (key, node of its value).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&'a Value, Node<'a>)> + '_ {
        self.map
            .iter()
            .map(|(key, value)| (key, self.node.child(Seg::Key(key.clone()), value)))
    }
}

/// Problems reported per file; past this the file is garbage, and one more line says how many
/// more there are. Enough to fix a file in one round; few enough to read.
pub const MAX_PROBLEMS_PER_FILE: usize = 50;

/// Collects problems while converting a `Value` tree into typed values: the first
/// [`MAX_PROBLEMS_PER_FILE`], and how many more (a file with a problem on every line keeps no
/// more than that in memory).
#[derive(Debug, Default)]
pub(crate) struct Reader {
    problems: Vec<Problem>,
    more: usize,
}

impl Reader {
    /// The problems kept: the first [`MAX_PROBLEMS_PER_FILE`] found.
    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// How many problems were found past the ones kept.
    pub(crate) fn more(&self) -> usize {
        self.more
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn push(&mut self, node: &Node, at: At, message: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS_PER_FILE {
            self.problems.push(Problem {
                path: node.path.clone(),
                at,
                message: message.into(),
            });
        } else {
            self.more += 1;
        }
    }

    /// A problem with the value at `node`.
    pub(crate) fn error(&mut self, node: &Node, message: impl Into<String>) {
        self.push(node, At::Value, message);
    }

    /// A problem with the key that leads to `node`.
    pub(crate) fn key_error(&mut self, node: &Node, message: impl Into<String>) {
        self.push(node, At::Key, message);
    }

    /// Opens a mapping, reporting every key not in `allowed` (`None`: any key is). `null` reads
    /// as an empty mapping only when `null_is_empty`, for sections whose entries may all be
    /// commented out.
    pub(crate) fn fields<'a>(
        &mut self,
        node: &Node<'a>,
        allowed: Option<&'a Keys>,
        null_is_empty: bool,
    ) -> Option<Fields<'a>> {
        static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
        let map = match node.value {
            Value::Mapping(map) => map,
            Value::Null if null_is_empty => EMPTY.get_or_init(Mapping::new),
            other => {
                self.error(
                    node,
                    format!("expected a mapping, found {}", describe(other)),
                );
                return None;
            }
        };
        let fields = Fields {
            node: node.clone(),
            map,
            keys: allowed,
        };
        if let Some(allowed) = allowed {
            for (key, child) in fields.entries() {
                let known = key.as_str().is_some_and(|k| allowed.contains(k));
                if !known {
                    self.key_error(&child, unknown_key_message(key, allowed));
                }
            }
        }
        Some(fields)
    }

    /// Whether `node` is a mapping that is some other file than a `what`: none of its keys is
    /// one `allowed`, and they are not a few misspelt keys either (more than
    /// [`FOREIGN_KEYS`], or one that is no key name, such as a line of /etc/shadow,
    /// `root:$6$…:19000:0:99999:7::`, which YAML reads as a key). One error then says so
    /// without quoting any key, so that a file symlinked in by mistake is not copied into the
    /// logs line by line.
    pub(crate) fn foreign(&mut self, node: &Node, allowed: &Keys, what: &str) -> bool {
        let Value::Mapping(map) = node.value else {
            return false;
        };
        let known = map
            .keys()
            .any(|k| k.as_str().is_some_and(|k| allowed.contains(k)));
        let misspelt = map.len() <= FOREIGN_KEYS
            && map.keys().all(|k| {
                k.as_str().is_some_and(|k| {
                    (1..=64).contains(&k.len())
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_-.#".contains(&b))
                })
            });
        if known || misspelt || map.is_empty() {
            return false;
        }
        self.error(
            node,
            format!(
                "not a {what}: none of its {} top-level keys is one of {} (they are not quoted back, as this may be any file)",
                map.len(),
                allowed.names().collect::<Vec<_>>().join(", ")
            ),
        );
        true
    }

    /// The node of a key that must be present; reports it missing otherwise.
    pub(crate) fn required<'a>(&mut self, fields: &Fields<'a>, key: &str) -> Option<Node<'a>> {
        let found = fields.get(key);
        if found.is_none() {
            self.error(fields.node(), format!("missing required key `{key}`"));
        }
        found
    }

    /// Any leaf serde knows how to read; its messages already say expected vs found.
    pub(crate) fn leaf<T: DeserializeOwned>(&mut self, node: &Node) -> Option<T> {
        match serde_yaml::from_value::<T>(node.value.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                let message = serde_message(&e, node.value);
                self.error(node, message);
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, node: &Node) -> Option<bool> {
        self.leaf(node)
    }

    /// Any string the loader reads. A NUL is refused in every one: no argument, path or name
    /// can hold it (the kernel ends a C string there), so a program would be handed something
    /// other than what the manifest says, or could not be started at all.
    pub(crate) fn string(&mut self, node: &Node) -> Option<String> {
        let s: String = self.leaf(node)?;
        if s.contains('\0') {
            self.error(
                node,
                format!("must not contain a NUL character (no argument, path or name can hold one), got {s:?}"),
            );
            return None;
        }
        Some(s)
    }

    pub(crate) fn nonempty_string(&mut self, node: &Node) -> Option<String> {
        let s = self.string(node)?;
        if s.trim().is_empty() {
            self.error(node, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// A name handed to a program as one argument: `[A-Za-z0-9_.-]+`, and no leading `-` so it
    /// cannot be taken for an option.
    pub(crate) fn name(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node)?;
        self.check_name(node, what, &s).then_some(s)
    }

    pub(crate) fn check_name(&mut self, node: &Node, what: &str, s: &str) -> bool {
        match name_problem(s) {
            None => true,
            Some(problem) => {
                self.error(node, format!("invalid {what} {}: {problem}", excerpt(s)));
                false
            }
        }
    }

    pub(crate) fn absolute_path(&mut self, node: &Node) -> Option<PathBuf> {
        let s = self.string(node)?;
        if !s.starts_with('/') {
            self.error(
                node,
                format!("must be an absolute path, got {}", excerpt(&s)),
            );
            return None;
        }
        Some(PathBuf::from(s))
    }

    /// An absolute path naming a thing on the node, in its one spelling (see
    /// [`normal_path`]): a service holds the normalised path, and two services are compared by
    /// it.
    pub(crate) fn normal_path(&mut self, node: &Node) -> Option<PathBuf> {
        let s = self.string(node)?;
        match normal_path(&s) {
            Ok(path) => Some(path),
            Err(problem) => {
                self.error(node, format!("{problem}, got {}", excerpt(&s)));
                None
            }
        }
    }

    /// A humantime duration such as "30s", "2m" or "1h 5m". Zero is refused (a zero timeout
    /// would fail every action, a zero period would spin), and so is anything over
    /// [`MAX_DURATION`]: deadlines are computed as now plus the duration, which must not
    /// overflow.
    pub(crate) fn duration(&mut self, node: &Node) -> Option<Duration> {
        let s: String = match serde_yaml::from_value(node.value.clone()) {
            Ok(s) => s,
            Err(e) => {
                let message = serde_message(&e, node.value);
                self.error(
                    node,
                    format!("{message}; a duration is written with a unit, e.g. \"30s\", \"2m\", \"1h 5m\""),
                );
                return None;
            }
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) if d.is_zero() => {
                self.error(
                    node,
                    format!("duration must not be zero, got {}", excerpt(&s)),
                );
                None
            }
            Ok(d) if d > MAX_DURATION => {
                self.error(
                    node,
                    format!("duration must be at most 30 days, got {}", excerpt(&s)),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(node, format!("invalid duration {}: {e}", excerpt(&s)));
                None
            }
        }
    }

    /// One of a fixed set of words.
    pub(crate) fn choice<T: Copy>(&mut self, node: &Node, choices: &[(&str, T)]) -> Option<T> {
        let s = self.string(node)?;
        match choices.iter().find(|(word, _)| *word == s) {
            Some((_, v)) => Some(*v),
            None => {
                let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
                self.error(
                    node,
                    format!("expected one of {}, got {}", words.join(", "), excerpt(&s)),
                );
                None
            }
        }
    }

    /// A non-empty list of strings; each bad element is reported at its own index.
    pub(crate) fn string_list(&mut self, node: &Node) -> Option<Vec<String>> {
        let Value::Sequence(items) = node.value else {
            self.error(
                node,
                format!("expected a list of strings, found {}", describe(node.value)),
            );
            return None;
        };
        if items.is_empty() {
            self.error(node, "must not be an empty list");
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(&node.child(Seg::Index(i), item)) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The node of a sequence element, for problems found after [`Reader::string_list`].
    pub(crate) fn element<'a>(node: &Node<'a>, index: usize) -> Option<Node<'a>> {
        match node.value {
            Value::Sequence(items) => items.get(index).map(|v| node.child(Seg::Index(index), v)),
            _ => None,
        }
    }
}

/// More unknown keys than this, and none known, is not a file with typos but another file.
pub(crate) const FOREIGN_KEYS: usize = 5;

/// serde's message about `value`, as an operator reads it: serde calls YAML's null "unit
/// value", and quotes a string whole, which for a long one is cut to an excerpt.
fn serde_message(e: &serde_yaml::Error, value: &Value) -> String {
    // serde's names for YAML's null and Rust's integer types mean nothing to an operator.
    let mut message = e.to_string().replace("unit value", "null");
    for rust in ["u64", "u32", "i64", "i32", "usize"] {
        message = message.replace(&format!("expected {rust}"), "expected a whole number");
    }
    match value {
        Value::String(s) if s.chars().nth(EXCERPT_CHARS).is_some() => {
            message.replace(&format!("{s:?}"), &excerpt(s))
        }
        _ => message,
    }
}

/// The longest duration any key takes: longer than any sane timeout or period, and far from
/// what would overflow a deadline.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// `s` as one spelling of its path: absolute, with `//` and `/./` collapsed and no trailing
/// `/`, so that `/srv/x/`, `/srv//x` and `/srv/./x` are all `/srv/x`. A `..` component is
/// refused rather than resolved: lexically `/srv/y/../x` is `/srv/x`, but the kernel resolves
/// `..` after symlinks, so the two can name different directories; and `/srv/..` is `/`.
pub(crate) fn normal_path(s: &str) -> Result<PathBuf, &'static str> {
    if !s.starts_with('/') {
        return Err("must be an absolute path");
    }
    let mut normal = String::with_capacity(s.len());
    for part in s.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(
                "must not contain a `..` component (converge cannot tell which directory it names once symlinks are involved): write the path without it",
            );
        }
        normal.push('/');
        normal.push_str(part);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    Ok(PathBuf::from(normal))
}

/// Why `s` is not a safe name, if it is not.
pub(crate) fn name_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("must not be empty")
    } else if s.starts_with('-') {
        Some("must not start with `-` (it would be taken for an option)")
    } else if s.starts_with('.') {
        // `.` and `..` name directories, and converge keeps per-service state under the name.
        Some("must not start with `.`")
    } else if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("only letters, digits, `_`, `.` and `-` are allowed")
    } else {
        None
    }
}

fn unknown_key_message(key: &Value, allowed: &Keys) -> String {
    let shown = match key {
        Value::String(_) => format!("`{}`", KeyText(key)),
        Value::Sequence(_) | Value::Mapping(_) => format!("({})", describe(key)),
        other => format!("{} `{}`", describe_kind(other), KeyText(key)),
    };
    let hint = if key.as_str() == Some("<<") {
        " (YAML merge keys are not supported)"
    } else {
        ""
    };
    format!(
        "unknown key {shown}{hint}; allowed keys: {}",
        allowed.names().collect::<Vec<_>>().join(", ")
    )
}

fn describe_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "floating point",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Sequence(_) => "sequence",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged value",
    }
}

/// "a string", "a sequence", "null": what kind of node was found, without quoting it.
pub(crate) fn describe_shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// "integer `3`", "a sequence", "null": what was found, for type errors not produced by serde.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("{} `{n}`", describe_kind(v)),
        Value::String(s) => format!("string {}", excerpt(s)),
        Value::Sequence(_) => "a sequence".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Which keys the reader asked for, by model: the test that every declared key is read.
#[cfg(test)]
pub(crate) mod asked {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    thread_local! {
        static ASKED: RefCell<Option<BTreeSet<(String, String)>>> = const { RefCell::new(None) };
    }

    pub(super) fn note(model: &str, key: &str) {
        ASKED.with_borrow_mut(|asked| {
            if let Some(asked) = asked {
                asked.insert((model.to_owned(), key.to_owned()));
            }
        });
    }

    /// Runs `f`, returning what it returned and the (model, key) pairs asked for meanwhile on
    /// this thread.
    pub(crate) fn record<R>(f: impl FnOnce() -> R) -> (R, BTreeSet<(String, String)>) {
        ASKED.set(Some(BTreeSet::new()));
        let result = f();
        let asked = ASKED.take().unwrap_or_default();
        (result, asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Value {
        serde_yaml::from_str(text).expect("test yaml")
    }

    #[test]
    fn unknown_keys_are_all_reported_with_the_allowed_list() {
        let v = read("a: 1\nb: 2\nc: 3\n");
        let mut r = Reader::default();
        let keys = Keys::listed("T", &["a"]);
        let f = r
            .fields(&Node::root(&v), Some(&keys), false)
            .expect("mapping");
        assert!(f.has("a"));
        let problems = r.into_problems();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].path, vec![Seg::key("b")]);
        assert_eq!(problems[0].at, At::Key);
        assert_eq!(problems[0].message, "unknown key `b`; allowed keys: a");
    }

    #[test]
    #[should_panic(expected = "the reader asks for `b`, which T does not declare")]
    fn asking_for_an_undeclared_key_is_a_bug() {
        let v = read("a: 1\n");
        let keys = Keys::listed("T", &["a"]);
        let mut r = Reader::default();
        let f = r
            .fields(&Node::root(&v), Some(&keys), false)
            .expect("mapping");
        f.get("b");
    }

    #[test]
    fn asked_keys_are_recorded_by_model() {
        let v = read("a: 1\n");
        let keys = Keys::listed("T", &["a", "b"]);
        let ((), asked) = asked::record(|| {
            let mut r = Reader::default();
            let f = r
                .fields(&Node::root(&v), Some(&keys), false)
                .expect("mapping");
            f.get("a");
            f.has("b");
        });
        let expected = [("T", "a"), ("T", "b")].map(|(m, k)| (m.to_owned(), k.to_owned()));
        assert_eq!(asked, expected.into_iter().collect());
    }

    #[test]
    fn keys_come_from_the_model_in_declaration_order() {
        let keys = Keys::of::<crate::manifest::doc::FsDoc>();
        assert_eq!(keys.model(), "FsDoc");
        assert_eq!(
            keys.names().collect::<Vec<_>>(),
            [
                "dev",
                "mnt",
                "type",
                "options",
                "fsck",
                "umount_kill",
                "timeout",
                "disabled",
                "optional"
            ]
        );
    }

    #[test]
    fn non_string_keys_are_unknown_keys() {
        let v = read("1: x\n");
        let mut r = Reader::default();
        let keys = Keys::listed("T", &["a", "b"]);
        r.fields(&Node::root(&v), Some(&keys), false);
        let problems = r.into_problems();
        assert_eq!(
            problems[0].message,
            "unknown key integer `1`; allowed keys: a, b"
        );
        assert_eq!(problems[0].path, vec![Seg::Key(Value::Number(1.into()))]);
    }

    #[test]
    fn type_errors_say_expected_and_found() {
        let v = read("s: [1]\nb: yes\nn: ~\n");
        let mut r = Reader::default();
        let f = r.fields(&Node::root(&v), None, false).expect("mapping");
        assert_eq!(r.string(&f.get("s").expect("s")), None);
        assert_eq!(r.bool(&f.get("b").expect("b")), None);
        assert_eq!(r.string(&f.get("n").expect("n")), None);
        let messages: Vec<String> = r.into_problems().into_iter().map(|p| p.message).collect();
        assert_eq!(
            messages,
            [
                "invalid type: sequence, expected a string",
                "invalid type: string \"yes\", expected a boolean",
                "invalid type: null, expected a string",
            ]
        );
    }

    #[test]
    fn durations_need_a_unit_and_must_not_be_zero() {
        let v = read("a: 2m\nb: 1h 5m\nc: 0s\nd: 30\ne: 2x\nf: 30days\ng: 1000000000years\n");
        let mut r = Reader::default();
        let f = r.fields(&Node::root(&v), None, false).expect("mapping");
        let d = |r: &mut Reader, k| r.duration(&f.get(k).expect(k));
        assert_eq!(d(&mut r, "a"), Some(Duration::from_secs(120)));
        assert_eq!(d(&mut r, "b"), Some(Duration::from_secs(3900)));
        assert_eq!(d(&mut r, "c"), None);
        assert_eq!(d(&mut r, "d"), None);
        assert_eq!(d(&mut r, "e"), None);
        assert_eq!(d(&mut r, "f"), Some(MAX_DURATION));
        // A regression: this once reached `Instant::now() + timeout` and panicked.
        assert_eq!(d(&mut r, "g"), None);
        let problems = r.into_problems();
        assert_eq!(problems.len(), 4);
        assert!(problems[0].message.contains("must not be zero"));
        assert!(problems[1].message.contains("expected a string"));
        assert!(problems[1].message.contains("\"30s\""));
        assert!(problems[2].message.starts_with("invalid duration \"2x\""));
        assert_eq!(
            problems[3].message,
            "duration must be at most 30 days, got \"1000000000years\""
        );
    }

    #[test]
    fn names_refuse_option_lookalikes_and_odd_characters() {
        assert_eq!(name_problem("data"), None);
        assert_eq!(name_problem("r0.a_b-c"), None);
        assert!(name_problem("-data").is_some());
        assert!(name_problem("").is_some());
        assert!(name_problem("a b").is_some());
        assert!(name_problem("a/b").is_some());
        assert!(name_problem("é").is_some());
    }

    #[test]
    fn string_list_reports_each_bad_element() {
        let v = read("l: [/bin/a, 3, [x]]\ne: []\n");
        let mut r = Reader::default();
        let f = r.fields(&Node::root(&v), None, false).expect("mapping");
        assert_eq!(r.string_list(&f.get("l").expect("l")), None);
        assert_eq!(r.string_list(&f.get("e").expect("e")), None);
        let problems = r.into_problems();
        let paths: Vec<String> = problems
            .iter()
            .map(|p| FieldPath(&p.path).to_string())
            .collect();
        assert_eq!(paths, ["l[1]", "l[2]", "e"]);
    }

    #[test]
    fn field_paths_render_like_the_manifest() {
        let path = vec![
            Seg::key("resources"),
            Seg::key("app#0"),
            Seg::key("start"),
            Seg::Index(0),
        ];
        assert_eq!(FieldPath(&path).to_string(), "resources.app#0.start[0]");
    }
}
