//! Finding line:column for a field path, after the fact.
//!
//! `serde_yaml::Value` keeps no positions, but the Deserializer stamps its current mark on any
//! error that leaves one of its `deserialize_*` calls. So the text is deserialized again with a
//! seed that walks the path (skipping other entries unread) and fails on purpose at the target:
//! from inside the key's own deserialize for a key, from inside the value's for a value. The
//! location of that error is the answer. One parse per problem; manifests are small.

use std::cell::RefCell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, EnumAccess, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_yaml::Value;

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

/// The message of the deliberate error; NULs keep it from ever matching a real YAML message.
const MARKER: &str = "\0converge-locate\0";

/// Where the key or value at `path` starts; `None` when the path is not in the text.
pub(crate) fn locate(text: &str, path: &[Seg], at: At) -> Option<Location> {
    // A key needs a parent mapping; an empty path can only mean the document itself.
    let at = if path.is_empty() { At::Value } else { at };
    let result = PathSeed { path, at }.deserialize(serde_yaml::Deserializer::from_str(text));
    marker_location(result)
}

/// [`locate`], falling back to the nearest enclosing node that can be found: a problem always
/// points somewhere useful even when its exact node is absent (a missing key, say).
pub(crate) fn locate_nearest(text: &str, path: &[Seg], at: At) -> Option<Location> {
    let found = locate(text, path, at).or_else(|| {
        (0..path.len())
            .rev()
            .find_map(|len| locate(text, &path[..len], At::Value))
    });
    found.map(|at| within(text, at))
}

/// Where the second YAML document of the text starts, when the first one is well-formed.
pub(crate) fn locate_second_document(text: &str) -> Option<Location> {
    let mut docs = serde_yaml::Deserializer::from_str(text);
    // The document iterator keeps parsing after a syntax error and can then hand out unbalanced
    // events that make yaml_serde panic; stop at the first broken document instead.
    IgnoredAny::deserialize(docs.next()?).ok()?;
    let doc = docs.next()?;
    marker_location(
        PathSeed {
            path: &[],
            at: At::Value,
        }
        .deserialize(doc),
    )
    .map(|at| within(text, at))
}

/// The first mapping key that repeats an earlier key of its mapping: its path and location.
/// `serde_yaml` reports duplicates at the start of the mapping, which in a long mapping is far
/// from the offending line.
pub(crate) fn locate_duplicate_key(text: &str) -> Option<(Vec<Seg>, Location)> {
    let found = RefCell::new(None);
    let result = DupSeed {
        path: Vec::new(),
        found: &found,
    }
    .deserialize(serde_yaml::Deserializer::from_str(text));
    let location = within(text, marker_location(result)?);
    found.into_inner().map(|path| (path, location))
}

/// `at`, or the end of `text` when `at` lies past it: at the end of a text without a final
/// newline, the YAML reader reports the line after the last one, a place no editor can open.
pub(crate) fn within(text: &str, at: Location) -> Location {
    let end = end_of(text);
    if (at.line, at.column) > (end.line, end.column) {
        end
    } else {
        at
    }
}

/// Where `text` ends, counting lines as YAML does (`\r\n`, `\r`, `\n`, NEL, LS and PS each
/// end one) and columns in characters, from 1.
fn end_of(text: &str) -> Location {
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

fn marker_location<T>(result: Result<T, serde_yaml::Error>) -> Option<Location> {
    let err = result.err()?;
    if !err.to_string().contains(MARKER) {
        return None;
    }
    let loc = err.location()?;
    Some(Location {
        line: loc.line(),
        column: loc.column(),
    })
}

fn marker<E: de::Error>() -> E {
    E::custom(MARKER)
}

/// Walks `path` from the node it is handed. `Ok(())` means "not found"; finding the target is
/// signalled by the marker error.
struct PathSeed<'p> {
    path: &'p [Seg],
    at: At,
}

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl PathSeed<'_> {
    /// Every visit_* goes through here: at the target, fail so the caller stamps this node's
    /// mark; elsewhere a scalar is a dead end.
    fn leaf<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(marker())
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for PathSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.leaf()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!tag value`): the tag is transparent to paths.
        if self.path.is_empty() {
            return Err(marker());
        }
        let (_, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (target, rest) = match self.path.split_first() {
            None => return Err(marker()),
            Some((Seg::Index(i), rest)) => (*i, rest),
            Some((Seg::Key(_), _)) => return Ok(()),
        };
        for _ in 0..target {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(PathSeed {
            path: rest,
            at: self.at,
        })
        .map(|_| ())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (target, rest) = match self.path.split_first() {
            None => return Err(marker()),
            Some((Seg::Key(k), rest)) => (k, rest),
            Some((Seg::Index(_), _)) => return Ok(()),
        };
        let fail_at_key = rest.is_empty() && self.at == At::Key;
        while let Some(found) = map.next_key_seed(KeySeed {
            target,
            fail_on_match: fail_at_key,
        })? {
            if found {
                return map.next_value_seed(PathSeed {
                    path: rest,
                    at: self.at,
                });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Reads one mapping key and says whether it equals `target`, failing right there when asked,
/// so the error carries the key's own mark.
struct KeySeed<'t> {
    target: &'t Value,
    fail_on_match: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeySeed<'_> {
    fn check<E: de::Error>(&self, key: Option<Value>) -> Result<bool, E> {
        let found = key.as_ref() == Some(self.target);
        if found && self.fail_on_match {
            Err(marker())
        } else {
            Ok(found)
        }
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.check(Some(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.check(Some(Value::Number(v.into())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.check(Some(Value::Number(v.into())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.check(Some(Value::Number(v.into())))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<bool, E> {
        self.check(None)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<bool, E> {
        self.check(None)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.check(Some(Value::String(v.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.check(Some(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        self.check(Some(Value::Null))
    }
    // Complex and tagged keys never match a path segment; they are read and skipped.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| false)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        IgnoredAny.visit_map(map).map(|_| false)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<bool, A::Error> {
        IgnoredAny.visit_enum(data).map(|_| false)
    }
}

/// Walks the whole document looking for a key repeated within one mapping.
struct DupSeed<'f> {
    path: Vec<Seg>,
    found: &'f RefCell<Option<Vec<Seg>>>,
}

impl<'de> DeserializeSeed<'de> for DupSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DupSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (_, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let mut path = self.path.clone();
            path.push(Seg::Index(index));
            let seed = DupSeed {
                path,
                found: self.found,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<Value> = Vec::new();
        loop {
            let seed = DupKeySeed {
                seen: &seen,
                path: &self.path,
                found: self.found,
            };
            let Some(key) = map.next_key_seed(seed)? else {
                return Ok(());
            };
            let mut path = self.path.clone();
            match key {
                Some(key) => {
                    path.push(Seg::Key(key.clone()));
                    seen.push(key);
                }
                None => path.push(Seg::Key(Value::Null)),
            }
            map.next_value_seed(DupSeed {
                path,
                found: self.found,
            })?;
        }
    }
}

/// Reads a key as a scalar `Value` (`None` for complex keys) and fails at it if already seen.
struct DupKeySeed<'s> {
    seen: &'s [Value],
    path: &'s [Seg],
    found: &'s RefCell<Option<Vec<Seg>>>,
}

impl<'de> DeserializeSeed<'de> for DupKeySeed<'_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl DupKeySeed<'_> {
    fn check<E: de::Error>(self, key: Value) -> Result<Option<Value>, E> {
        if self.seen.contains(&key) {
            let mut path = self.path.to_vec();
            path.push(Seg::Key(key));
            *self.found.borrow_mut() = Some(path);
            return Err(marker());
        }
        Ok(Some(key))
    }
}

impl<'de> Visitor<'de> for DupKeySeed<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.check(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.check(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.check(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.check(Value::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.check(Value::String(v.to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.check(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.check(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_enum(data).map(|_| None)
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
        locate(text, &path(segs), at).map(|l| (l.line, l.column))
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
        let near = locate_nearest(NESTED, &path(&["resources", "fs#1", "type"]), At::Value);
        assert_eq!(near, Some(Location { line: 4, column: 5 }));
        let root = locate_nearest("a: 1\n", &path(&["x", "y"]), At::Key);
        assert_eq!(root, Some(Location { line: 1, column: 1 }));
    }

    #[test]
    fn non_string_keys_and_tags() {
        let text = "1: one\ntrue: yes\n~: nothing\nt: !custom {a: 1}\n";
        let key = |v: Value| locate(text, &[Seg::Key(v)], At::Key).map(|l| (l.line, l.column));
        assert_eq!(key(Value::Number(1.into())), Some((1, 1)));
        assert_eq!(key(Value::Bool(true)), Some((2, 1)));
        assert_eq!(key(Value::Null), Some((3, 1)));
        assert_eq!(at(text, &["t", "a"], At::Value), Some((4, 16)));
    }

    #[test]
    fn empty_values_have_a_location() {
        let text = "a:\nb: 1\n";
        assert!(at(text, &["a"], At::Value).is_some());
    }

    #[test]
    fn second_document_is_located() {
        let text = "a: 1\n---\nb: 2\n";
        assert_eq!(
            locate_second_document(text),
            Some(Location { line: 3, column: 1 })
        );
    }

    #[test]
    fn duplicate_keys_are_located_at_the_repeat() {
        let text = "a: 1\nr:\n  x: 1\n  y: 2\n  x: 3\n";
        let (path, loc) = locate_duplicate_key(text).expect("duplicate");
        assert_eq!(path, vec![Seg::key("r"), Seg::key("x")]);
        assert_eq!(loc, Location { line: 5, column: 3 });
        assert_eq!(locate_duplicate_key("a: 1\nb: 2\n"), None);
    }

    #[test]
    fn garbage_never_locates_and_never_panics() {
        for text in ["", ":", "a: [", "- - -", "{a: 1", "a: *nope", "\t"] {
            let _ = locate_nearest(text, &path(&["a", "b"]), At::Key);
            let _ = locate_duplicate_key(text);
            let _ = locate_second_document(text);
        }
    }
}
