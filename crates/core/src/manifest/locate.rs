//! Where things are in a YAML text, from one pass over its events (see [`super::events`]):
//! what the loader must refuse before serde_yaml parses the text (nesting too deep, YAML tags),
//! and, when asked, where every node starts, with every mapping key. Problems found later by
//! field path are then located by walking that tree: no problem costs another parse, so a file
//! with many problems costs what a file with one does.

use std::collections::{HashMap, hash_map};
use std::fmt;

use serde_yaml::Value;

use super::events::{EventKind, Events, Mark};
use super::schema::{At, Seg};

/// A 1-based position in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl From<Mark> for Location {
    fn from(mark: Mark) -> Location {
        Location {
            line: mark.line,
            column: mark.column,
        }
    }
}

/// `at`, or the end of `text` when `at` lies past it: at the end of a text without a final
/// newline, the YAML reader reports the line after the last one, a place no editor can open.
pub(crate) fn within(text: &str, at: Location) -> Location {
    at.clamped(end_of(text))
}

impl Location {
    /// This location, or `end` when it lies past it.
    pub(crate) fn clamped(self, end: Location) -> Location {
        if (self.line, self.column) > (end.line, end.column) {
            end
        } else {
            self
        }
    }
}

/// Where `text` ends, counting lines as YAML does (`\r\n`, `\r`, `\n`, NEL, LS and PS each
/// end one) and columns in characters, from 1.
pub(crate) fn end_of(text: &str) -> Location {
    let mut end = Location { line: 1, column: 1 };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}') {
            end = Location {
                line: end.line + 1,
                column: 1,
            };
        } else {
            end.column += 1;
        }
    }
    end
}

/// The deepest nesting of sequences and mappings the loader reads. A manifest needs 4 (the top
/// mapping, `resources`, a resource, a command's list) and a configuration 2; 32 leaves room
/// for any hand-written file. Deeper nesting is refused as soon as it is seen: the YAML
/// scanner's work grows with the square of the depth (100 000 `[` took 13 s), and stopping at
/// this depth bounds it.
pub const MAX_DEPTH: usize = 32;

/// What one pass over a text found.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    nodes: Vec<Node>,
    /// The first document's top node.
    root: Option<usize>,
    /// The first mapping key (in document order) that repeats an earlier key of its mapping.
    pub duplicate: Option<(Vec<Seg>, Location)>,
    /// Where the second document starts, when there is one.
    pub second_document: Option<Location>,
    /// Every tagged node (`!!str x`, `!custom {...}`): its path, where, and the tag as written.
    pub tags: Vec<(Vec<Seg>, Location, String)>,
    /// Where nesting first went past [`MAX_DEPTH`]; the pass stopped there.
    pub too_deep: Option<Location>,
}

#[derive(Debug)]
struct Node {
    mark: Location,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Scalar,
    Seq(Vec<usize>),
    Map(Map),
    /// `*name`: the node its anchor names, when known.
    Alias(Option<usize>),
}

#[derive(Debug, Default)]
struct Map {
    /// (where the key is, the value's node), in file order.
    entries: Vec<(Location, usize)>,
    /// Scalar keys → their entry; the first occurrence wins, as the duplicate is refused.
    index: HashMap<Value, usize>,
}

/// A collection being read.
enum Frame {
    Seq {
        node: usize,
        mark: Location,
        items: Vec<usize>,
    },
    Map {
        node: usize,
        mark: Location,
        map: Map,
        /// The key just read, waiting for its value: its value (`None` for a complex key) and
        /// where it is.
        key: Option<(Option<Value>, Location)>,
    },
}

/// What [`scan`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    /// What must be refused before serde_yaml parses the text (nesting, tags), and where the
    /// second document starts: no tree, so little memory.
    Refusals,
    /// Also where every node and key is, and the first duplicate key: to locate problems.
    Tree,
}

/// Reads the events of `text` once. Stops early at a syntax error (serde_yaml reports it) or
/// at nesting deeper than [`MAX_DEPTH`] (see [`Positions::too_deep`]).
pub(crate) fn scan(text: &str, record: Record) -> Positions {
    let tree = record == Record::Tree;
    let mut out = Positions::default();
    let mut frames: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut documents = 0;
    let mut document_start = None;
    for event in Events::new(text) {
        let mark = Location::from(event.mark);
        let (anchor, tag) = match &event.kind {
            EventKind::Scalar { anchor, tag, .. }
            | EventKind::SequenceStart { anchor, tag }
            | EventKind::MappingStart { anchor, tag } => (anchor.clone(), tag.clone()),
            _ => (None, None),
        };
        if matches!(
            event.kind,
            EventKind::Scalar { .. }
                | EventKind::Alias(_)
                | EventKind::SequenceStart { .. }
                | EventKind::MappingStart { .. }
        ) && documents == 2
            && out.second_document.is_none()
        {
            out.second_document = Some(mark);
        }
        if let Some(tag) = tag {
            let mut path = path_of(&frames);
            if let (Some(Frame::Map { key: None, .. }), EventKind::Scalar { value, plain, .. }) =
                (frames.last(), &event.kind)
            {
                // A tagged key: the field is the key itself.
                path.push(Seg::Key(key_value(value, *plain)));
            }
            out.tags.push((path, mark, tag));
        }
        let node = out.nodes.len();
        match event.kind {
            EventKind::DocumentStart => {
                documents += 1;
                document_start = Some(mark);
                continue;
            }
            EventKind::DocumentEnd => {
                if documents == 2 && out.second_document.is_none() {
                    out.second_document = document_start;
                }
                continue;
            }
            EventKind::Scalar { value, plain, .. } => {
                let key = match frames.last() {
                    Some(Frame::Map { key: None, .. }) => Some(key_value(&value, plain)),
                    _ => None,
                };
                if tree {
                    out.nodes.push(Node {
                        mark,
                        kind: Kind::Scalar,
                    });
                    if let Some(anchor) = anchor {
                        anchors.insert(anchor, node);
                    }
                }
                attach(&mut out, &mut frames, node, key, mark, tree);
            }
            EventKind::Alias(name) => {
                if tree {
                    out.nodes.push(Node {
                        mark,
                        kind: Kind::Alias(anchors.get(&name).copied()),
                    });
                }
                attach(&mut out, &mut frames, node, None, mark, tree);
            }
            EventKind::SequenceStart { .. } | EventKind::MappingStart { .. } => {
                if frames.len() >= MAX_DEPTH {
                    out.too_deep = Some(mark);
                    return out;
                }
                if tree {
                    out.nodes.push(Node {
                        mark,
                        kind: Kind::Scalar,
                    });
                    if let Some(anchor) = anchor {
                        anchors.insert(anchor, node);
                    }
                }
                frames.push(match event.kind {
                    EventKind::SequenceStart { .. } => Frame::Seq {
                        node,
                        mark,
                        items: Vec::new(),
                    },
                    _ => Frame::Map {
                        node,
                        mark,
                        map: Map::default(),
                        key: None,
                    },
                });
            }
            EventKind::SequenceEnd | EventKind::MappingEnd => {
                let Some(frame) = frames.pop() else {
                    continue;
                };
                let (done, mark, kind) = match frame {
                    Frame::Seq { node, mark, items } => (node, mark, Kind::Seq(items)),
                    Frame::Map {
                        node, mark, map, ..
                    } => (node, mark, Kind::Map(map)),
                };
                if let Some(node) = out.nodes.get_mut(done).filter(|_| tree) {
                    node.kind = kind;
                }
                // A collection used as a key never matches a path segment.
                attach(&mut out, &mut frames, done, None, mark, tree);
            }
        }
    }
    out
}

/// Hangs a finished node on the collection being read: an element, a key, or a key's value.
/// `key` is the node's value when it is a scalar read as a mapping key.
fn attach(
    out: &mut Positions,
    frames: &mut [Frame],
    node: usize,
    key: Option<Value>,
    mark: Location,
    tree: bool,
) {
    let Some((parent, outer)) = frames.split_last_mut() else {
        if out.root.is_none() {
            out.root = Some(node);
        }
        return;
    };
    match parent {
        Frame::Seq { items, .. } => items.push(node),
        Frame::Map {
            key: pending @ None,
            ..
        } => *pending = Some((key, mark)),
        Frame::Map {
            map, key: pending, ..
        } => {
            let Some((key, key_mark)) = pending.take() else {
                return;
            };
            if !tree {
                return;
            }
            let entry = map.entries.len();
            map.entries.push((key_mark, node));
            match key.map(|key| map.index.entry(key)) {
                Some(hash_map::Entry::Vacant(vacant)) => {
                    vacant.insert(entry);
                }
                Some(hash_map::Entry::Occupied(repeated)) if out.duplicate.is_none() => {
                    let mut path = path_of(outer);
                    path.push(Seg::Key(repeated.key().clone()));
                    out.duplicate = Some((path, key_mark));
                }
                _ => {}
            }
        }
    }
}

/// The path of the node being read, from the collections open around it.
fn path_of(frames: &[Frame]) -> Vec<Seg> {
    let mut path = Vec::with_capacity(frames.len());
    for frame in frames {
        match frame {
            Frame::Seq { items, .. } => path.push(Seg::Index(items.len())),
            Frame::Map {
                key: Some((key, _)),
                ..
            } => path.push(Seg::Key(key.clone().unwrap_or(Value::Null))),
            // Inside a key: the path stops at its mapping.
            Frame::Map { key: None, .. } => break,
        }
    }
    path
}

/// A scalar mapping key as serde_yaml reads it into a `Value`: quoted keys are strings, plain
/// ones are typed by their text (`1` is a number, `true` a boolean, `~` null). Only texts that
/// can be something other than a string are handed to serde_yaml itself, so that the result is
/// its own.
fn key_value(text: &str, plain: bool) -> Value {
    let may_be_typed = plain
        && (text.is_empty()
            || text.starts_with(|c: char| c.is_ascii_digit() || "+-.~".contains(c))
            || matches!(
                text,
                "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
            ));
    if may_be_typed && !text.contains(['\n', '#', ':', '[', '{', '"', '\'']) {
        if text.is_empty() {
            return Value::Null;
        }
        if let Ok(value) = serde_yaml::from_str::<Value>(text) {
            return value;
        }
    }
    Value::String(text.to_owned())
}

impl Positions {
    /// The node at `node`, through aliases (to where the anchored node is written).
    fn resolve(&self, mut node: usize) -> Option<&Node> {
        // An alias names an anchor defined before it, so following aliases always goes back in
        // the file; the bound is a guard, never reached.
        for _ in 0..=self.nodes.len() {
            let found = self.nodes.get(node)?;
            match found.kind {
                Kind::Alias(Some(target)) => node = target,
                Kind::Alias(None) => return None,
                _ => return Some(found),
            }
        }
        None
    }

    /// Where the key or value at `path` starts; `None` when the path is not in the text.
    pub(crate) fn locate(&self, path: &[Seg], at: At) -> Option<Location> {
        let mut node = self.resolve(self.root?)?;
        let mut key_mark = None;
        for seg in path {
            let next = match (seg, &node.kind) {
                (Seg::Key(key), Kind::Map(map)) => {
                    let &entry = map.index.get(key)?;
                    let (mark, value) = map.entries[entry];
                    key_mark = Some(mark);
                    value
                }
                (Seg::Index(i), Kind::Seq(items)) => {
                    key_mark = None;
                    *items.get(*i)?
                }
                _ => return None,
            };
            node = self.resolve(next)?;
        }
        match (at, key_mark) {
            (At::Key, Some(mark)) => Some(mark),
            _ => Some(node.mark),
        }
    }

    /// [`Positions::locate`], falling back to the nearest enclosing node that can be found: a
    /// problem always points somewhere useful even when its exact node is absent (a missing
    /// key, say).
    pub(crate) fn locate_nearest(&self, path: &[Seg], at: At) -> Option<Location> {
        if let Some(found) = self.locate(path, at) {
            return Some(found);
        }
        (0..path.len())
            .rev()
            .find_map(|len| self.locate(&path[..len], At::Value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segs: &[&str]) -> Vec<Seg> {
        segs.iter()
            .map(|s| {
                s.strip_prefix('[')
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse().ok())
                    .map_or_else(|| Seg::key(s), Seg::Index)
            })
            .collect()
    }

    fn at(text: &str, segs: &[&str], at: At) -> Option<(usize, usize)> {
        scan(text, Record::Tree)
            .locate(&path(segs), at)
            .map(|l| (l.line, l.column))
    }

    const NESTED: &str = "\
service: s
resources:
  fs#1:
    dev: /dev/drbd0
    mnt: drbdsvc
  app#0:
    start: [/bin/true, x]
    stop:
      - /bin/false
      - y
";

    #[test]
    fn nested_values_and_keys() {
        assert_eq!(at(NESTED, &["service"], At::Value), Some((1, 10)));
        assert_eq!(at(NESTED, &["service"], At::Key), Some((1, 1)));
        assert_eq!(
            at(NESTED, &["resources", "fs#1", "mnt"], At::Value),
            Some((5, 10))
        );
        assert_eq!(
            at(NESTED, &["resources", "fs#1", "mnt"], At::Key),
            Some((5, 5))
        );
        assert_eq!(at(NESTED, &["resources", "app#0"], At::Key), Some((6, 3)));
    }

    #[test]
    fn sequence_elements_block_and_flow() {
        assert_eq!(
            at(NESTED, &["resources", "app#0", "start", "[1]"], At::Value),
            Some((7, 24))
        );
        assert_eq!(
            at(NESTED, &["resources", "app#0", "stop", "[1]"], At::Value),
            Some((10, 9))
        );
        assert_eq!(
            at(NESTED, &["resources", "app#0", "stop", "[2]"], At::Value),
            None
        );
    }

    #[test]
    fn flow_mappings() {
        let text = "resources: {fs#1: {dev: /dev/x, mnt: rel}}\n";
        assert_eq!(
            at(text, &["resources", "fs#1", "mnt"], At::Value),
            Some((1, 38))
        );
        assert_eq!(
            at(text, &["resources", "fs#1", "mnt"], At::Key),
            Some((1, 33))
        );
    }

    #[test]
    fn anchors_and_aliases_point_at_the_written_value() {
        let text = "\
base: &b
  mnt: rel
resources:
  fs#1: *b
  fs#2:
    mnt: *b
";
        // Through an alias, the location is where the anchored node is written.
        assert_eq!(
            at(text, &["resources", "fs#1", "mnt"], At::Value),
            Some((2, 8))
        );
        assert_eq!(
            at(text, &["resources", "fs#2", "mnt", "mnt"], At::Key),
            Some((2, 3))
        );
        assert_eq!(at(text, &["resources", "fs#2"], At::Key), Some((5, 3)));
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_parent() {
        assert_eq!(at(NESTED, &["resources", "fs#1", "type"], At::Value), None);
        let near = scan(NESTED, Record::Tree)
            .locate_nearest(&path(&["resources", "fs#1", "type"]), At::Value);
        assert_eq!(near, Some(Location { line: 4, column: 5 }));
        let root = scan("a: 1\n", Record::Tree).locate_nearest(&path(&["x", "y"]), At::Key);
        assert_eq!(root, Some(Location { line: 1, column: 1 }));
    }

    #[test]
    fn non_string_keys_are_typed_as_serde_yaml_types_them() {
        let text = "1: one\ntrue: yes\n~: nothing\n'2': two\n0x10: hex\n";
        let positions = scan(text, Record::Tree);
        let key = |v: Value| {
            positions
                .locate(&[Seg::Key(v)], At::Key)
                .map(|l| (l.line, l.column))
        };
        assert_eq!(key(Value::Number(1.into())), Some((1, 1)));
        assert_eq!(key(Value::Bool(true)), Some((2, 1)));
        assert_eq!(key(Value::Null), Some((3, 1)));
        assert_eq!(key(Value::String("2".into())), Some((4, 1)));
        assert_eq!(key(Value::Number(16.into())), Some((5, 1)));
        assert_eq!(key(Value::String("1".into())), None);
    }

    #[test]
    fn empty_values_have_a_location() {
        assert!(at("a:\nb: 1\n", &["a"], At::Value).is_some());
    }

    #[test]
    fn second_document_is_located() {
        assert_eq!(
            scan("a: 1\n---\nb: 2\n", Record::Refusals).second_document,
            Some(Location { line: 3, column: 1 })
        );
        assert!(
            scan("a: 1\n---\n", Record::Refusals)
                .second_document
                .is_some()
        );
        assert_eq!(scan("a: 1\n", Record::Refusals).second_document, None);
    }

    #[test]
    fn duplicate_keys_are_located_at_the_repeat() {
        let (path, loc) = scan("a: 1\nr:\n  x: 1\n  y: 2\n  x: 3\n", Record::Tree)
            .duplicate
            .expect("duplicate");
        assert_eq!(path, vec![Seg::key("r"), Seg::key("x")]);
        assert_eq!(loc, Location { line: 5, column: 3 });
        assert_eq!(scan("a: 1\nb: 2\n", Record::Tree).duplicate, None);
    }

    #[test]
    fn tags_are_found_with_their_field() {
        let tags = scan("a: !!str 1\nb: [x, !custom y]\n!k c: 1\n", Record::Refusals).tags;
        let found: Vec<(String, (usize, usize), String)> = tags
            .into_iter()
            .map(|(path, loc, tag)| {
                let path = super::super::schema::FieldPath(&path).to_string();
                (path, (loc.line, loc.column), tag)
            })
            .collect();
        assert_eq!(
            found,
            [
                ("a".into(), (1, 4), "tag:yaml.org,2002:str".into()),
                ("b[1]".into(), (2, 8), "!custom".into()),
                ("c".into(), (3, 1), "!k".into()),
            ]
        );
    }

    #[test]
    fn nesting_past_the_limit_stops_the_pass() {
        let deep = format!("x: {}\n", "[".repeat(MAX_DEPTH + 100));
        // The top mapping is one level: the 32nd `[` is the 33rd level.
        let expected = Location {
            line: 1,
            column: 4 + MAX_DEPTH - 1,
        };
        assert_eq!(scan(&deep, Record::Refusals).too_deep, Some(expected));
        let fits = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(scan(&fits, Record::Refusals).too_deep, None);
        let block: String = (0..MAX_DEPTH + 1)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        assert_eq!(
            scan(&block, Record::Refusals).too_deep,
            Some(Location {
                line: MAX_DEPTH + 1,
                column: MAX_DEPTH + 1
            })
        );
    }

    #[test]
    fn garbage_never_locates_and_never_panics() {
        for text in [
            "", ":", "a: [", "- - -", "{a: 1", "a: *nope", "\t", "&a [*a]",
        ] {
            let positions = scan(text, Record::Tree);
            let _ = positions.locate_nearest(&path(&["a", "b"]), At::Key);
        }
    }
}
