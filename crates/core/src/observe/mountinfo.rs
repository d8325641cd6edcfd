//! `/proc/self/mountinfo`: the mount table, with device numbers.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

/// A block device's major:minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl Serialize for DevNum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One line of mountinfo, unescaped.
///
/// The text fields are read through the accessors: the mounts of a table share buffers for
/// them, where separate strings cost eight allocations per mount and dominated parsing.
#[derive(Clone)]
pub struct Mount {
    pub mount_id: u32,
    pub parent_id: u32,
    /// Field 3: the device's major:minor (the reliable way to match a device).
    pub dev: DevNum,
    /// The mount point was deleted (` (deleted)` suffix).
    pub deleted: bool,
    /// The text fields of a run of consecutive mounts of one table (or of this one alone, for a
    /// mount built by hand), back to back.
    text: Arc<str>,
    /// The rare path whose escapes spell bytes that are not UTF-8 (paths are bytes on Linux).
    raw_paths: Option<Arc<[u8]>>,
    layout: Layout,
}

/// Where a mount's fields lie in its `text` and `raw_paths`.
#[derive(Clone, Copy)]
struct Layout {
    /// Part `i` (see [`Part`]) is `text[text_bounds[i]..text_bounds[i + 1]]`; the optional
    /// fields are joined by single spaces.
    text_bounds: [usize; PARTS + 1],
    /// Likewise for the two paths in `raw_paths`.
    raw_bounds: [usize; 3],
    /// Bit `part` set: that path is in `raw_paths` (its part of `text` is empty).
    raw: u8,
    /// How many optional fields (an empty part may hold one empty field or none).
    optional_count: usize,
}

/// The text fields of a [`Mount`], in the order they are stored.
#[derive(Clone, Copy)]
enum Part {
    Root,
    MountPoint,
    Options,
    OptionalFields,
    FsType,
    Source,
    SuperOptions,
}

const PARTS: usize = 7;

const STR_PARTS: [Part; 5] = [
    Part::Options,
    Part::OptionalFields,
    Part::FsType,
    Part::Source,
    Part::SuperOptions,
];

/// The span `bounds[i]..bounds[i + 1]`.
#[inline]
fn span(bounds: &[usize], i: usize) -> Option<Range<usize>> {
    Some(*bounds.get(i)?..*bounds.get(i + 1)?)
}

/// Everything a [`Mount`] holds, borrowed: for building one by hand ([`Mount::new`]).
#[derive(Debug, Clone, Copy)]
pub struct MountFields<'a> {
    pub mount_id: u32,
    pub parent_id: u32,
    pub dev: DevNum,
    pub root: &'a Path,
    pub mount_point: &'a Path,
    pub options: &'a str,
    /// Each tag as mountinfo prints it (`shared:1`); a tag never holds a space.
    pub optional_fields: &'a [&'a str],
    pub fstype: &'a str,
    pub source: &'a str,
    pub super_options: &'a str,
    pub deleted: bool,
}

impl Mount {
    pub fn new(f: MountFields<'_>) -> Mount {
        let (mut text, mut raw_paths, mut scratch) = (String::new(), Vec::new(), Vec::new());
        let mut b = MountBuilder::new(&mut text, &mut raw_paths, &mut scratch);
        b.push_path(f.root.as_os_str().as_bytes(), Part::Root);
        b.push_path(f.mount_point.as_os_str().as_bytes(), Part::MountPoint);
        b.push_str(f.options, Part::Options);
        for tag in f.optional_fields {
            b.push_optional(tag);
        }
        b.end_optional_fields();
        b.push_str(f.fstype, Part::FsType);
        b.push_str(f.source, Part::Source);
        b.push_str(f.super_options, Part::SuperOptions);
        let layout = b.layout();
        Mount {
            mount_id: f.mount_id,
            parent_id: f.parent_id,
            dev: f.dev,
            deleted: f.deleted,
            text: Arc::from(text),
            raw_paths: (!raw_paths.is_empty()).then(|| Arc::from(raw_paths)),
            layout,
        }
    }

    // Inlined, the part is a constant and the bounds checks fold away: the planner reads mount
    // points by the million.
    #[inline]
    fn str(&self, part: Part) -> &str {
        span(&self.layout.text_bounds, part as usize)
            .and_then(|span| self.text.get(span))
            .unwrap_or_default()
    }

    #[inline]
    fn path(&self, part: Part) -> &Path {
        // As bytes, which a path is on Linux anyway: no char boundaries to check.
        let bytes = if self.layout.raw & (1 << part as u8) == 0 {
            span(&self.layout.text_bounds, part as usize)
                .and_then(|span| self.text.as_bytes().get(span))
        } else {
            span(&self.layout.raw_bounds, part as usize)
                .zip(self.raw_paths.as_deref())
                .and_then(|(span, raw)| raw.get(span))
        };
        Path::new(OsStr::from_bytes(bytes.unwrap_or_default()))
    }

    /// Root of the mount within the filesystem.
    #[inline]
    pub fn root(&self) -> &Path {
        self.path(Part::Root)
    }

    #[inline]
    pub fn mount_point(&self) -> &Path {
        self.path(Part::MountPoint)
    }

    #[inline]
    pub fn options(&self) -> &str {
        self.str(Part::Options)
    }

    /// The optional fields (`shared:N`, `master:N`, …), in order.
    pub fn optional_fields(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.str(Part::OptionalFields)
            .split(' ')
            .take(self.layout.optional_count)
    }

    #[inline]
    pub fn fstype(&self) -> &str {
        self.str(Part::FsType)
    }

    /// The source as given to mount(8), e.g. `/dev/drbd0`.
    #[inline]
    pub fn source(&self) -> &str {
        self.str(Part::Source)
    }

    #[inline]
    pub fn super_options(&self) -> &str {
        self.str(Part::SuperOptions)
    }
}

/// Equal when every field reads the same, wherever the text lies.
impl PartialEq for Mount {
    fn eq(&self, other: &Self) -> bool {
        self.mount_id == other.mount_id
            && self.parent_id == other.parent_id
            && self.dev == other.dev
            && self.deleted == other.deleted
            && self.layout.optional_count == other.layout.optional_count
            && self.root().as_os_str() == other.root().as_os_str()
            && self.mount_point().as_os_str() == other.mount_point().as_os_str()
            && STR_PARTS.iter().all(|&p| self.str(p) == other.str(p))
    }
}

impl Eq for Mount {}

/// Appends a mount's fields to the text buffers, in [`Part`] order.
struct MountBuilder<'t> {
    text: &'t mut String,
    raw_paths: &'t mut Vec<u8>,
    /// Where escaped fields are unescaped, to be checked for UTF-8.
    scratch: &'t mut Vec<u8>,
    layout: Layout,
}

impl<'t> MountBuilder<'t> {
    fn new(text: &'t mut String, raw_paths: &'t mut Vec<u8>, scratch: &'t mut Vec<u8>) -> Self {
        let layout = Layout {
            text_bounds: [text.len(); PARTS + 1],
            raw_bounds: [raw_paths.len(); 3],
            raw: 0,
            optional_count: 0,
        };
        MountBuilder {
            text,
            raw_paths,
            scratch,
            layout,
        }
    }

    /// Ends `part` where the text now ends; parts must be ended in order.
    fn end(&mut self, part: Part) {
        if let Some(end) = self.layout.text_bounds.get_mut(part as usize + 1) {
            *end = self.text.len();
        }
    }

    /// Ends `part`, a path, in `raw_paths` too.
    fn end_raw(&mut self, part: Part) {
        if let Some(end) = self.layout.raw_bounds.get_mut(part as usize + 1) {
            *end = self.raw_paths.len();
        }
    }

    fn push_str(&mut self, text: &str, part: Part) {
        self.text.push_str(text);
        self.end(part);
    }

    /// A path: with `text` when it is UTF-8 (nearly always), in `raw_paths` when not.
    fn push_path(&mut self, bytes: &[u8], part: Part) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.push_str(text, part),
            Err(_) => {
                self.raw_paths.extend_from_slice(bytes);
                self.layout.raw |= 1 << part as u8;
                // Its span in `text` stays empty.
                self.push_str("", part);
            }
        }
        self.end_raw(part);
    }

    /// A path with the kernel's octal escapes undone.
    fn push_unescaped_path(&mut self, field: Field<'_>, part: Part) {
        if !field.escaped {
            self.push_str(field.text, part);
            self.end_raw(part);
            return;
        }
        let mut scratch = std::mem::take(self.scratch);
        scratch.clear();
        unescape_into(&mut scratch, field.text.as_bytes());
        self.push_path(&scratch, part);
        *self.scratch = scratch;
    }

    /// A string field with the kernel's octal escapes undone; an escape that spells invalid
    /// UTF-8 becomes U+FFFD.
    fn push_unescaped_str(&mut self, field: Field<'_>, part: Part) {
        if !field.escaped {
            return self.push_str(field.text, part);
        }
        let mut scratch = std::mem::take(self.scratch);
        scratch.clear();
        unescape_into(&mut scratch, field.text.as_bytes());
        self.push_str(&String::from_utf8_lossy(&scratch), part);
        *self.scratch = scratch;
    }

    /// One more optional field; [`Self::end_optional_fields`] after the last.
    fn push_optional(&mut self, tag: &str) {
        if self.layout.optional_count > 0 {
            self.text.push(' ');
        }
        self.text.push_str(tag);
        self.layout.optional_count += 1;
    }

    fn end_optional_fields(&mut self) {
        self.end(Part::OptionalFields);
    }

    fn layout(&self) -> Layout {
        self.layout
    }
}

/// The optional fields as a list, for `Debug` and `Serialize`.
struct OptionalFields<'a>(&'a Mount);

impl fmt::Debug for OptionalFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.optional_fields()).finish()
    }
}

impl Serialize for OptionalFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.optional_fields())
    }
}

impl fmt::Debug for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mount")
            .field("mount_id", &self.mount_id)
            .field("parent_id", &self.parent_id)
            .field("dev", &self.dev)
            .field("root", &self.root())
            .field("mount_point", &self.mount_point())
            .field("options", &self.options())
            .field("optional_fields", &OptionalFields(self))
            .field("fstype", &self.fstype())
            .field("source", &self.source())
            .field("super_options", &self.super_options())
            .field("deleted", &self.deleted)
            .finish()
    }
}

/// The same shape as a plain struct with those fields.
impl Serialize for Mount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Mount", 11)?;
        st.serialize_field("mount_id", &self.mount_id)?;
        st.serialize_field("parent_id", &self.parent_id)?;
        st.serialize_field("dev", &self.dev)?;
        st.serialize_field("root", self.root())?;
        st.serialize_field("mount_point", self.mount_point())?;
        st.serialize_field("options", self.options())?;
        st.serialize_field("optional_fields", &OptionalFields(self))?;
        st.serialize_field("fstype", self.fstype())?;
        st.serialize_field("source", self.source())?;
        st.serialize_field("super_options", self.super_options())?;
        st.serialize_field("deleted", &self.deleted)?;
        st.end()
    }
}

/// A mountinfo line that cannot be read; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountinfoError {
    #[error("mountinfo line {line}: missing {field} in {text:?}")]
    Missing {
        line: usize,
        field: &'static str,
        text: String,
    },
    #[error("mountinfo line {line}: bad {field} {value:?}")]
    Bad {
        line: usize,
        field: &'static str,
        value: String,
    },
}

/// Parses the whole of `/proc/self/mountinfo`. Blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Mount>, MountinfoError> {
    // One pass over the bytes to size the vector saves the repeated regrowth on big tables.
    let mut mounts = Vec::with_capacity(count_newlines(text.as_bytes()) + 1);
    let mut run = Run::new(0);
    // A run's lines until it is complete, and where escaped fields are unescaped.
    let (mut pending, mut scratch) = (Vec::new(), Vec::new());
    for (index, line) in (Lines { rest: text }).enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if !run.has_room_for(line) {
            std::mem::replace(&mut run, Run::new(line.len())).finish(&mut pending, &mut mounts);
        }
        let mut b = MountBuilder::new(&mut run.text, &mut run.raw_paths, &mut scratch);
        pending.push(parse_line(index + 1, line, &mut b)?);
    }
    run.finish(&mut pending, &mut mounts);
    Ok(mounts)
}

/// The text buffers of a run of lines being read.
///
/// Runs of a few kilobytes rather than one buffer for the whole table: big buffers made and
/// dropped with every parse come and go as fresh memory from the kernel, whose page faults
/// cost more than the parsing itself.
struct Run {
    text: String,
    raw_paths: Vec<u8>,
}

impl Run {
    const BYTES: usize = 16 * 1024;

    /// Room for lines up to `line_len` long at least.
    fn new(line_len: usize) -> Self {
        Run {
            text: String::with_capacity(Self::BYTES.max(line_len)),
            raw_paths: Vec::new(),
        }
    }

    /// The fields of `line` surely fit without growing the buffer: unescaping only shortens
    /// them (even where U+FFFD stands in for a byte, which took an escape of four).
    fn has_room_for(&self, line: &str) -> bool {
        self.text.capacity() - self.text.len() >= line.len()
    }

    /// The mounts of the `pending` lines, sharing this run's text.
    fn finish(self, pending: &mut Vec<Parsed>, mounts: &mut Vec<Mount>) {
        // One copy per run, to a shared buffer each mount reaches in one step.
        let text: Arc<str> = Arc::from(self.text);
        let raw_paths: Option<Arc<[u8]>> =
            (!self.raw_paths.is_empty()).then(|| Arc::from(self.raw_paths));
        mounts.extend(pending.drain(..).map(|p| Mount {
            mount_id: p.mount_id,
            parent_id: p.parent_id,
            dev: p.dev,
            deleted: p.deleted,
            text: Arc::clone(&text),
            raw_paths: raw_paths.clone(),
            layout: p.layout,
        }));
    }
}

/// A parsed line whose text is in the current [`Run`].
struct Parsed {
    mount_id: u32,
    parent_id: u32,
    dev: DevNum,
    deleted: bool,
    layout: Layout,
}

/// `bytes.iter().filter(|b| **b == b'\n').count()`, but counted in byte-wide lanes so the
/// compiler can vectorise it.
fn count_newlines(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(255);
    let mut count = 0;
    for chunk in &mut chunks {
        // At most 255 per chunk: a u8 cannot overflow.
        let in_chunk = chunk
            .iter()
            .fold(0u8, |n, &b| n.wrapping_add(u8::from(b == b'\n')));
        count += usize::from(in_chunk);
    }
    count + chunks.remainder().iter().filter(|&&b| b == b'\n').count()
}

/// `str::split(' ')` that also says whether each field holds a backslash, so the common field
/// without escapes is neither scanned twice nor unescaped.
///
/// The line is read eight bytes at a time: each word is scanned once for spaces and
/// backslashes whatever the number of fields in it.
struct Fields<'a> {
    line: &'a str,
    /// Where the next field starts.
    start: usize,
    /// Where the word after the loaded one starts.
    next_word: usize,
    /// Flags (see [`bytes_equal`]) of the loaded word's spaces not yet returned.
    spaces: u64,
    /// Flags of the loaded word's backslashes not yet attributed to a field.
    backslashes: u64,
    /// The current field had a backslash in an earlier word.
    escaped: bool,
    done: bool,
}

impl<'a> Fields<'a> {
    fn new(line: &'a str) -> Self {
        Fields {
            line,
            start: 0,
            next_word: 0,
            spaces: 0,
            backslashes: 0,
            escaped: false,
            done: false,
        }
    }

    // Inlined into `parse_line`, its state stays in registers: measurably faster.
    #[inline(always)]
    fn next_field(&mut self) -> Option<Field<'a>> {
        if self.done {
            return None;
        }
        loop {
            if self.spaces != 0 {
                let flag = self.spaces.trailing_zeros();
                self.spaces &= self.spaces - 1;
                // The flags of the bytes before this space (`flag` is at most 63).
                let before = (1u64 << flag) - 1;
                let escaped = self.escaped || self.backslashes & before != 0;
                self.backslashes &= !before;
                self.escaped = false;
                // The loaded word starts 8 bytes before the next one.
                let end = self.next_word.saturating_sub(8) + (flag / 8) as usize;
                // A space is ASCII, so both sides of it are char boundaries.
                let text = self.line.get(self.start..end)?;
                self.start = end + 1;
                return Some(Field { text, escaped });
            }
            // No space left in this word: its remaining backslashes are the current field's.
            self.escaped |= self.backslashes != 0;
            let bytes = self.line.as_bytes();
            let Some(rest) = bytes.get(self.next_word..).filter(|r| !r.is_empty()) else {
                self.done = true;
                return Some(Field {
                    text: self.line.get(self.start..)?,
                    escaped: self.escaped,
                });
            };
            let word = load_word(rest);
            self.spaces = bytes_equal(word, b' ');
            self.backslashes = bytes_equal(word, b'\\');
            self.next_word += 8;
        }
    }
}

/// The high bit of each byte of `word` that equals `byte`, and no other bit. The bytes are
/// in little-endian order, so a lower flag is an earlier byte.
fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ (0x0101_0101_0101_0101 * u64::from(byte));
    // Per byte, `(x & 0x7f) + 0x7f` sets the high bit unless the low seven bits are zero, and
    // never carries into the next byte.
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// The first eight bytes of `bytes` as a little-endian word, padded with zero bytes (which no
/// search here looks for) when fewer are left.
fn load_word(bytes: &[u8]) -> u64 {
    match bytes.first_chunk::<8>() {
        Some(word) => u64::from_le_bytes(*word),
        // Shifts rather than a copy into a buffer, which compiles to a call to memcpy.
        None => bytes
            .iter()
            .take(8)
            .enumerate()
            .fold(0, |word, (i, &b)| word | u64::from(b) << (8 * i)),
    }
}

/// The first `byte` in `bytes`, eight bytes at a time (`byte` must not be zero: padding).
fn find_byte(bytes: &[u8], byte: u8) -> Option<usize> {
    let mut at = 0;
    while let Some(rest) = bytes.get(at..).filter(|rest| !rest.is_empty()) {
        let found = bytes_equal(load_word(rest), byte);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    None
}

/// `str::lines`, finding line ends eight bytes at a time.
struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        match find_byte(self.rest.as_bytes(), b'\n') {
            Some(at) => {
                // A newline is ASCII, so both sides of it are char boundaries.
                let line = self.rest.get(..at)?;
                self.rest = self.rest.get(at + 1..)?;
                // `\r\n` ends a line too (a lone `\r` at the very end stays).
                Some(line.strip_suffix('\r').unwrap_or(line))
            }
            None => Some(std::mem::take(&mut self.rest)),
        }
    }
}

#[derive(Clone, Copy)]
struct Field<'a> {
    text: &'a str,
    /// `text` holds a backslash, i.e. possibly an octal escape.
    escaped: bool,
}

fn parse_line<'a>(
    line_no: usize,
    line: &'a str,
    b: &mut MountBuilder<'_>,
) -> Result<Parsed, MountinfoError> {
    // The kernel separates fields with exactly one space and escapes blanks inside them, so a
    // plain split keeps an empty field (e.g. an empty source) in its place.
    let fields_text = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Fields::new(fields_text);
    let mut next = |field: &'static str| {
        fields.next_field().ok_or_else(|| MountinfoError::Missing {
            line: line_no,
            field,
            text: line.to_string(),
        })
    };
    let bad = |field: &'static str, value: &str| MountinfoError::Bad {
        line: line_no,
        field,
        value: value.to_string(),
    };
    let nonempty = |f: Field<'a>, field: &'static str| {
        if f.text.is_empty() {
            Err(bad(field, f.text))
        } else {
            Ok(f)
        }
    };

    let id_text = next("mount ID")?.text;
    let mount_id = id_text.parse().map_err(|_| bad("mount ID", id_text))?;
    let parent_text = next("parent ID")?.text;
    let parent_id = parent_text
        .parse()
        .map_err(|_| bad("parent ID", parent_text))?;
    let dev_text = next("major:minor")?.text;
    let dev = DevNum::parse(dev_text).ok_or_else(|| bad("major:minor", dev_text))?;
    let root = nonempty(next("root")?, "root")?;
    let raw_mount_point = nonempty(next("mount point")?, "mount point")?;

    // d_path() appends " (deleted)" before the kernel escapes the space, so the raw field
    // ends in `\040(deleted)`.
    let (mount_point, deleted) = if raw_mount_point.escaped {
        match raw_mount_point.text.strip_suffix("\\040(deleted)") {
            Some(stripped) => (
                Field {
                    text: stripped,
                    escaped: stripped.contains('\\'),
                },
                true,
            ),
            None => (raw_mount_point, false),
        }
    } else {
        (raw_mount_point, false)
    };

    b.push_unescaped_path(root, Part::Root);
    b.push_unescaped_path(mount_point, Part::MountPoint);
    let options = nonempty(next("mount options")?, "mount options")?;
    b.push_str(options.text, Part::Options);
    loop {
        match next("\"-\" separator")?.text {
            "-" => break,
            tag => b.push_optional(tag),
        }
    }
    b.end_optional_fields();
    let fstype = nonempty(next("filesystem type")?, "filesystem type")?;
    b.push_unescaped_str(fstype, Part::FsType);
    // The source alone may be empty: mount(2) accepts an empty string there.
    b.push_unescaped_str(next("mount source")?, Part::Source);
    let super_options = nonempty(next("super options")?, "super options")?;
    b.push_str(super_options.text, Part::SuperOptions);
    // Anything after the super options would be a future kernel's addition: ignored, like
    // unknown optional fields.

    if mount_point.text.is_empty() {
        return Err(bad("mount point", mount_point.text));
    }
    Ok(Parsed {
        mount_id,
        parent_id,
        dev,
        deleted,
        layout: b.layout(),
    })
}

impl DevNum {
    /// Parses `major:minor` as mountinfo and sysfs write it.
    pub fn parse(text: &str) -> Option<DevNum> {
        // A byte search: `split_once` sets up a general searcher, slow for a handful of bytes.
        let colon = text.bytes().position(|b| b == b':')?;
        let (major, minor) = (text.get(..colon)?, text.get(colon + 1..)?);
        Some(DevNum {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

/// Appends `raw` with the kernel's `\ooo` escaping of space, tab, newline and backslash undone.
/// A backslash not followed by three octal digits is kept as is: the kernel never writes one, and
/// losing it would only hide the oddity.
fn unescape_into(out: &mut Vec<u8>, raw: &[u8]) {
    let mut rest = raw;
    while let Some(at) = find_byte(rest, b'\\') {
        let (plain, escape) = rest.split_at(at);
        out.extend_from_slice(plain);
        // `escape` starts with the backslash.
        let digits = escape.get(1..).unwrap_or_default();
        match digits.get(..3).and_then(octal_byte) {
            Some(value) => {
                out.push(value);
                rest = digits.get(3..).unwrap_or_default();
            }
            None => {
                out.push(b'\\');
                rest = digits;
            }
        }
    }
    out.extend_from_slice(rest);
}

fn octal_byte(digits: &[u8]) -> Option<u8> {
    let mut value: u32 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        value = value * 8 + u32::from(d - b'0');
    }
    u8::try_from(value).ok()
}

/// The mounts whose mount point is exactly `mount_point`, in table order: when several are
/// stacked on one point, the last one is the one visible there.
pub fn mounts_at<'a>(mounts: &'a [Mount], mount_point: &Path) -> impl Iterator<Item = &'a Mount> {
    mounts
        .iter()
        .filter(move |m| m.mount_point() == mount_point)
}

/// The mounts of block device `dev` (including bind mounts of it), in table order.
pub fn mounts_of_device(mounts: &[Mount], dev: DevNum) -> impl Iterator<Item = &Mount> {
    mounts.iter().filter(move |m| m.dev == dev)
}

/// Every mount that hangs below `mnt` in the mount tree (children, grandchildren, ...), ordered
/// so that unmounting in that order never hits a mount that still has children: deepest first.
///
/// The tree is followed through parent IDs rather than path prefixes because a mount made under
/// a path before another mount covered that path is hidden, cannot be unmounted by path, and
/// does not keep `mnt` busy.
pub fn submounts_below<'a>(mounts: &'a [Mount], mnt: &Mount) -> Vec<&'a Mount> {
    let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
    for (index, m) in mounts.iter().enumerate() {
        // The kernel lists a namespace's root as its own parent on some versions; it is no one's
        // child here.
        if m.parent_id != m.mount_id {
            children.entry(m.parent_id).or_default().push(index);
        }
    }

    // (tree depth, table index); `seen` guards against a garbled table whose IDs form a cycle.
    let mut found: Vec<(usize, usize)> = Vec::new();
    let mut seen: HashSet<u32> = HashSet::from([mnt.mount_id]);
    let mut frontier = vec![mnt.mount_id];
    let mut depth = 0;
    while !frontier.is_empty() {
        depth += 1;
        let mut next_frontier = Vec::new();
        for parent in frontier {
            for &index in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
                let id = mounts[index].mount_id;
                if seen.insert(id) {
                    found.push((depth, index));
                    next_frontier.push(id);
                }
            }
        }
        frontier = next_frontier;
    }

    // Deeper in the tree first; among equals, the one mounted later (it may sit on top of the
    // other) first.
    found.sort_unstable_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, index)| &mounts[index]).collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const TABLE: &str = include_str!("../../tests/fixtures/mountinfo/kernel-doc-and-drbd.txt");

    fn path(p: &str) -> PathBuf {
        PathBuf::from(p)
    }

    #[test]
    fn kernel_documented_example() {
        let mounts = parse(TABLE).unwrap();
        assert_eq!(mounts.len(), 5);
        assert_eq!(
            mounts[1],
            Mount::new(MountFields {
                mount_id: 36,
                parent_id: 35,
                dev: DevNum {
                    major: 98,
                    minor: 0
                },
                root: Path::new("/mnt1"),
                mount_point: Path::new("/mnt2"),
                options: "rw,noatime",
                optional_fields: &["master:1"],
                fstype: "ext3",
                source: "/dev/root",
                super_options: "rw,errors=continue",
                deleted: false,
            })
        );
    }

    #[test]
    fn tmpfs_loop_and_drbd() {
        let mounts = parse(TABLE).unwrap();
        assert_eq!(mounts[2].fstype(), "tmpfs");
        assert_eq!(mounts[2].source(), "tmpfs");
        assert_eq!(
            mounts[2].super_options(),
            "rw,size=814372k,mode=755,inode64"
        );
        assert_eq!(mounts[3].dev, DevNum { major: 7, minor: 3 });
        assert_eq!(mounts[3].source(), "/dev/loop3");
        assert_eq!(
            mounts[4].dev,
            DevNum {
                major: 147,
                minor: 0
            }
        );
        assert_eq!(mounts[4].mount_point(), path("/srv/data"));
        assert_eq!(mounts[4].optional_fields().count(), 0);
        assert_eq!(mounts[4].dev.to_string(), "147:0");
    }

    #[test]
    fn several_optional_fields() {
        let line = "70 22 0:40 / /a rw shared:7 master:3 propagate_from:2 unbindable - tmpfs x rw";
        let m = &parse(line).unwrap()[0];
        assert_eq!(
            m.optional_fields().collect::<Vec<_>>(),
            ["shared:7", "master:3", "propagate_from:2", "unbindable"]
        );
        assert_eq!(m.fstype(), "tmpfs");
    }

    #[test]
    fn octal_escapes() {
        let line = r"80 22 8:3 /a\134b /mnt/with\040space\011tab\012nl rw - ext4 /dev/disk\040x rw";
        let m = &parse(line).unwrap()[0];
        assert_eq!(m.root(), path("/a\\b"));
        assert_eq!(m.mount_point(), path("/mnt/with space\ttab\nnl"));
        assert_eq!(m.source(), "/dev/disk x");
        assert!(!m.deleted);
    }

    #[test]
    fn escape_of_non_utf8_byte_is_kept_in_paths() {
        use std::os::unix::ffi::OsStrExt;
        let m = &parse(r"81 22 8:3 / /mnt/\377 rw - ext4 /dev/sdb rw").unwrap()[0];
        assert_eq!(m.mount_point().as_os_str().as_bytes(), b"/mnt/\xff");
    }

    #[test]
    fn malformed_escape_is_kept_literally() {
        let m = &parse(r"82 22 8:3 / /mnt/a\9b\04 rw - ext4 /dev/sdb rw").unwrap()[0];
        assert_eq!(m.mount_point(), path(r"/mnt/a\9b\04"));
    }

    #[test]
    fn deleted_mount_point() {
        let line = r"90 22 147:1 / /srv/gone\040(deleted) rw - ext4 /dev/drbd1 rw";
        let m = &parse(line).unwrap()[0];
        assert!(m.deleted);
        assert_eq!(m.mount_point(), path("/srv/gone"));

        let line = r"91 22 147:1 / /srv/my\040dir\040(deleted) rw - ext4 /dev/drbd1 rw";
        let m = &parse(line).unwrap()[0];
        assert!(m.deleted);
        assert_eq!(m.mount_point(), path("/srv/my dir"));
    }

    #[test]
    fn empty_source_keeps_field_positions() {
        let m = &parse("92 22 0:50 / /x rw - tmpfs  rw").unwrap()[0];
        assert_eq!(m.source(), "");
        assert_eq!(m.super_options(), "rw");
    }

    #[test]
    fn blank_lines_and_crlf_are_tolerated() {
        let mounts = parse("\n22 1 8:2 / / rw - ext4 /dev/sda2 rw\r\n\n").unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].super_options(), "rw");
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_name_the_line() {
        let text = "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n23 22 8:x / /b rw - ext4 /dev/sdb rw\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err,
            MountinfoError::Bad {
                line: 2,
                field: "major:minor",
                value: "8:x".into()
            }
        );
        assert_eq!(err.to_string(), "mountinfo line 2: bad major:minor \"8:x\"");

        let err = parse("22 1 8:2 / / rw shared:1 ext4 /dev/sda2 rw").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mountinfo line 1: missing \"-\" separator in \"22 1 8:2 / / rw shared:1 ext4 /dev/sda2 rw\""
        );
    }

    #[test]
    fn garbage_and_truncation_give_errors() {
        let full = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        for end in 0..full.len() {
            let truncated = &full[..end];
            if truncated.trim().is_empty() {
                continue;
            }
            // Any prefix that ends before the super options is incomplete.
            if end <= full.len() - "rw,errors=continue".len() {
                assert!(parse(truncated).is_err(), "{truncated:?} parsed");
            } else {
                assert!(parse(truncated).is_ok(), "{truncated:?} failed");
            }
        }
        for garbage in [
            "x",
            "-",
            " - - - - - -",
            "1 2 3:4",
            "99999999999 1 8:2 / / rw - ext4 a rw",
            "1 2 :4 / / rw - ext4 a rw",
            "1 2 3:4  / rw - ext4 a rw",
            "\\\\\\ \\1 \\12 \\",
            "1 2 3:4 / \\040(deleted) rw - ext4 a rw",
        ] {
            assert!(parse(garbage).is_err(), "{garbage:?} parsed");
        }
    }

    #[test]
    fn helpers_find_mounts() {
        let mounts = parse(TABLE).unwrap();
        let at: Vec<_> = mounts_at(&mounts, Path::new("/srv/data")).collect();
        assert_eq!(at.len(), 1);
        assert_eq!(at[0].mount_id, 60);
        assert_eq!(mounts_at(&mounts, Path::new("/srv")).count(), 0);

        let drbd0 = DevNum {
            major: 147,
            minor: 0,
        };
        let of: Vec<_> = mounts_of_device(&mounts, drbd0)
            .map(|m| m.mount_id)
            .collect();
        assert_eq!(of, [60]);
        assert_eq!(DevNum::parse("147:0"), Some(drbd0));
        assert_eq!(DevNum::parse("147"), None);
    }

    #[test]
    fn submounts_come_deepest_first() {
        let text = "\
22 1 8:2 / / rw - ext4 /dev/sda2 rw
30 22 8:3 / /srv/data/hidden rw - ext4 /dev/sdc rw
60 22 147:0 / /srv/data rw - ext4 /dev/drbd0 rw
61 60 0:51 / /srv/data/proc rw - proc proc rw
62 60 8:4 / /srv/data/var rw - ext4 /dev/sdd rw
63 62 0:52 / /srv/data/var/run rw - tmpfs tmpfs rw
64 62 0:53 / /srv/data/var/run rw - tmpfs tmpfs rw
65 63 0:54 / /srv/data/var/run/x rw - tmpfs tmpfs rw
";
        let mounts = parse(text).unwrap();
        let data = mounts.iter().find(|m| m.mount_id == 60).unwrap();
        let order: Vec<_> = submounts_below(&mounts, data)
            .iter()
            .map(|m| m.mount_id)
            .collect();
        // 30 predates /srv/data and hangs off the root: it is not below /srv/data's mount.
        assert_eq!(order, [65, 64, 63, 62, 61]);

        let leaf = mounts.iter().find(|m| m.mount_id == 65).unwrap();
        assert!(submounts_below(&mounts, leaf).is_empty());
    }

    #[test]
    fn submounts_survive_cyclic_ids() {
        let text = "1 2 0:1 / /a rw - tmpfs t rw\n2 1 0:2 / /a/b rw - tmpfs t rw\n";
        let mounts = parse(text).unwrap();
        let order: Vec<_> = submounts_below(&mounts, &mounts[0])
            .iter()
            .map(|m| m.mount_id)
            .collect();
        assert_eq!(order, [2]);
    }

    #[test]
    fn ten_thousand_lines() {
        let mut text = String::new();
        for i in 0..10_000u32 {
            text.push_str(&format!(
                "{} 22 147:{} / /srv/svc{i}/data\\040dir rw,noatime shared:{i} - ext4 /dev/drbd{i} rw,data=ordered\n",
                i + 100,
                i % 1000
            ));
        }
        let start = std::time::Instant::now();
        let mounts = parse(&text).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(mounts.len(), 10_000);
        assert_eq!(mounts[9_999].mount_point(), path("/srv/svc9999/data dir"));
        // Generous: unoptimised test builds are several times slower than the benchmark target.
        assert!(elapsed.as_millis() < 500, "took {elapsed:?}");
    }

    #[test]
    fn accessors_read_every_field() {
        let m = &parse(TABLE).unwrap()[1];
        assert_eq!((m.mount_id, m.parent_id), (36, 35));
        assert_eq!(
            m.dev,
            DevNum {
                major: 98,
                minor: 0
            }
        );
        assert_eq!(m.root(), Path::new("/mnt1"));
        assert_eq!(m.mount_point(), Path::new("/mnt2"));
        assert_eq!(m.options(), "rw,noatime");
        assert_eq!(m.optional_fields().collect::<Vec<_>>(), ["master:1"]);
        assert_eq!(m.fstype(), "ext3");
        assert_eq!(m.source(), "/dev/root");
        assert_eq!(m.super_options(), "rw,errors=continue");
        assert!(!m.deleted);
    }

    #[test]
    fn mounts_compare_by_content_whatever_table_they_came_from() {
        let table = parse(TABLE).unwrap();
        let alone = parse(TABLE.lines().nth(3).unwrap()).unwrap();
        assert_eq!(table[3], alone[0]);
        assert_ne!(table[2], alone[0]);
        let built = Mount::new(MountFields {
            mount_id: 51,
            parent_id: 22,
            dev: DevNum { major: 7, minor: 3 },
            root: Path::new("/"),
            mount_point: Path::new("/srv/loop"),
            options: "rw,relatime",
            optional_fields: &["shared:30"],
            fstype: "ext4",
            source: "/dev/loop3",
            super_options: "rw",
            deleted: false,
        });
        assert_eq!(built, alone[0]);
        let mut other = built.clone();
        other.deleted = true;
        assert_ne!(built, other);
    }

    #[test]
    fn one_empty_optional_field_is_not_none() {
        let m = &parse("1 2 0:1 / /a rw  - tmpfs t rw").unwrap()[0];
        assert_eq!(m.optional_fields().collect::<Vec<_>>(), [""]);
        let m = &parse("1 2 0:1 / /a rw - tmpfs t rw").unwrap()[0];
        assert_eq!(m.optional_fields().count(), 0);
    }

    #[test]
    fn escapes_spelling_invalid_utf8_in_strings_become_replacement_chars() {
        let m = &parse(r"1 2 0:1 / /a rw - ty\377pe \377src rw").unwrap()[0];
        assert_eq!(m.fstype(), "ty\u{fffd}pe");
        assert_eq!(m.source(), "\u{fffd}src");
    }

    #[test]
    fn serializes_and_debugs_like_the_plain_struct_it_was() {
        let mounts = parse(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n37 35 98:0 / /a\\040(deleted) rw - tmpfs  rw",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&mounts).unwrap(),
            r#"[{"mount_id":36,"parent_id":35,"dev":"98:0","root":"/mnt1","mount_point":"/mnt2","options":"rw,noatime","optional_fields":["master:1","shared:2"],"fstype":"ext3","source":"/dev/root","super_options":"rw,errors=continue","deleted":false},{"mount_id":37,"parent_id":35,"dev":"98:0","root":"/","mount_point":"/a","options":"rw","optional_fields":[],"fstype":"tmpfs","source":"","super_options":"rw","deleted":true}]"#
        );
        assert_eq!(
            format!("{:?}", mounts[0]),
            r#"Mount { mount_id: 36, parent_id: 35, dev: DevNum { major: 98, minor: 0 }, root: "/mnt1", mount_point: "/mnt2", options: "rw,noatime", optional_fields: ["master:1", "shared:2"], fstype: "ext3", source: "/dev/root", super_options: "rw,errors=continue", deleted: false }"#
        );
    }

    /// Deterministic pseudo-random numbers for the comparison tests.
    fn xorshift(seed: u64) -> impl FnMut() -> usize {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize
        }
    }

    fn random_text(next: &mut impl FnMut() -> usize, alphabet: &[&str], max_len: usize) -> String {
        let len = next() % (max_len + 1);
        (0..len)
            .map(|_| alphabet[next() % alphabet.len()])
            .collect()
    }

    #[test]
    fn lines_split_like_str_lines() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let text = random_text(&mut next, &["a", " ", "\n", "\r", "é", "\r\n"], 40);
            let ours: Vec<&str> = Lines { rest: &text }.collect();
            assert_eq!(ours, text.lines().collect::<Vec<_>>(), "{text:?}");
        }
    }

    #[test]
    fn fields_split_like_split_on_spaces() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let text = random_text(&mut next, &["a", " ", "\\", "é", "0", "  "], 40);
            let mut fields = Fields::new(&text);
            let ours: Vec<(&str, bool)> = std::iter::from_fn(|| fields.next_field())
                .map(|f| (f.text, f.escaped))
                .collect();
            let expected: Vec<(&str, bool)> =
                text.split(' ').map(|f| (f, f.contains('\\'))).collect();
            assert_eq!(ours, expected, "{text:?}");
        }
    }

    /// The parser as it was before its fields shared one buffer, to compare against.
    mod reference {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        use std::path::PathBuf;

        use super::super::{DevNum, MountinfoError, octal_byte};

        #[derive(Debug, PartialEq)]
        pub struct Mount {
            pub mount_id: u32,
            pub parent_id: u32,
            pub dev: DevNum,
            pub root: PathBuf,
            pub mount_point: PathBuf,
            pub options: String,
            pub optional_fields: Vec<String>,
            pub fstype: String,
            pub source: String,
            pub super_options: String,
            pub deleted: bool,
        }

        pub fn parse(text: &str) -> Result<Vec<Mount>, MountinfoError> {
            let mut mounts = Vec::new();
            for (index, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                mounts.push(parse_line(index + 1, line)?);
            }
            Ok(mounts)
        }

        fn parse_line(line_no: usize, line: &str) -> Result<Mount, MountinfoError> {
            let mut fields = line.strip_suffix('\r').unwrap_or(line).split(' ');
            let mut next = |field: &'static str| {
                fields.next().ok_or_else(|| MountinfoError::Missing {
                    line: line_no,
                    field,
                    text: line.to_string(),
                })
            };
            let bad = |field: &'static str, value: &str| MountinfoError::Bad {
                line: line_no,
                field,
                value: value.to_string(),
            };
            let nonempty = |text: &str, field: &'static str| {
                if text.is_empty() {
                    Err(bad(field, text))
                } else {
                    Ok(text.to_string())
                }
            };
            let id_text = next("mount ID")?;
            let mount_id = id_text.parse().map_err(|_| bad("mount ID", id_text))?;
            let parent_text = next("parent ID")?;
            let parent_id = parent_text
                .parse()
                .map_err(|_| bad("parent ID", parent_text))?;
            let dev_text = next("major:minor")?;
            let dev = dev_text
                .split_once(':')
                .and_then(|(a, b)| {
                    Some(DevNum {
                        major: a.parse().ok()?,
                        minor: b.parse().ok()?,
                    })
                })
                .ok_or_else(|| bad("major:minor", dev_text))?;
            let root = unescape_path(&nonempty(next("root")?, "root")?);
            let raw_mount_point = nonempty(next("mount point")?, "mount point")?;
            let options = nonempty(next("mount options")?, "mount options")?;
            let mut optional_fields = Vec::new();
            loop {
                match next("\"-\" separator")? {
                    "-" => break,
                    tag => optional_fields.push(tag.to_string()),
                }
            }
            let fstype = unescape_string(&nonempty(next("filesystem type")?, "filesystem type")?);
            let source = unescape_string(next("mount source")?);
            let super_options = nonempty(next("super options")?, "super options")?;
            let (raw_mount_point, deleted) = match raw_mount_point.strip_suffix("\\040(deleted)") {
                Some(stripped) => (stripped, true),
                None => (raw_mount_point.as_str(), false),
            };
            if raw_mount_point.is_empty() {
                return Err(bad("mount point", raw_mount_point));
            }
            Ok(Mount {
                mount_id,
                parent_id,
                dev,
                root,
                mount_point: unescape_path(raw_mount_point),
                options,
                optional_fields,
                fstype,
                source,
                super_options,
                deleted,
            })
        }

        fn unescape_bytes(raw: &str) -> Vec<u8> {
            let bytes = raw.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while let Some(&b) = bytes.get(i) {
                if b == b'\\'
                    && let Some(value) = bytes.get(i + 1..i + 4).and_then(octal_byte)
                {
                    out.push(value);
                    i += 4;
                    continue;
                }
                out.push(b);
                i += 1;
            }
            out
        }

        fn unescape_path(raw: &str) -> PathBuf {
            PathBuf::from(OsString::from_vec(unescape_bytes(raw)))
        }

        fn unescape_string(raw: &str) -> String {
            String::from_utf8_lossy(&unescape_bytes(raw)).into_owned()
        }
    }

    fn as_reference(m: &Mount) -> reference::Mount {
        reference::Mount {
            mount_id: m.mount_id,
            parent_id: m.parent_id,
            dev: m.dev,
            root: m.root().to_path_buf(),
            mount_point: m.mount_point().to_path_buf(),
            options: m.options().to_string(),
            optional_fields: m.optional_fields().map(String::from).collect(),
            fstype: m.fstype().to_string(),
            source: m.source().to_string(),
            super_options: m.super_options().to_string(),
            deleted: m.deleted,
        }
    }

    #[test]
    fn parses_exactly_like_the_reference_parser() {
        // (valid choices, invalid ones): each field is invalid one time in sixteen.
        type Choices = (&'static [&'static str], &'static [&'static str]);
        const IDS: Choices = (
            &["22", "1", "+5", "0", "4294967295"],
            &["", "x", "99999999999"],
        );
        const DEVS: Choices = (&["8:2", "147:0", "0:35"], &["8:x", ":4", "7", "", "1:2:3"]);
        const ROOTS: Choices = (&["/", r"/a\134b", r"/\377", "/é", r"/a\"], &[""]);
        const POINTS: Choices = (
            &[
                "/",
                "/srv/data",
                r"/srv/my\040dir",
                r"/srv/gone\040(deleted)",
                r"/mnt/a\9b\04",
                r"/x\",
                r"/a\040b\011c\012d\134e",
                "/srv/a/very/long/mount/point/that/spans/several/words",
                r"/srv/a/very/long/mount/point/with\040an\040escape\040(deleted)",
            ],
            &["", r"\040(deleted)"],
        );
        const OPTIONS: Choices = (&["rw", "rw,relatime"], &[""]);
        const OPTIONAL: Choices = (
            &[
                "",
                "shared:1",
                "shared:7 master:3",
                "shared:1  master:2",
                " ",
            ],
            &[],
        );
        const SEPARATORS: Choices = (&["-"], &["--", ""]);
        const FSTYPES: Choices = (&["ext4", r"ty\040pe", r"x\377"], &[""]);
        const SOURCES: Choices = (&["/dev/sda2", "", r"/dev/disk\040x", r"\3771"], &[]);
        const SUPERS: Choices = (&["rw", "rw,errors=remount-ro"], &[""]);
        const TAILS: Choices = (&["", " extra", " ", "\r", "\r\r", " \r"], &[]);
        const ENDS: Choices = (
            &[
                "\n",
                "\r\n",
                "\r\r\n",
                " \n",
                "\n\n",
                "\n \t\n",
                "\n\u{a0}\n",
            ],
            &[],
        );

        let mut next = xorshift(0x853c_49e6_748f_ea9b);
        let mut pick = |(valid, invalid): Choices| {
            let n = next();
            if n.is_multiple_of(16) && !invalid.is_empty() {
                invalid[(n / 16) % invalid.len()]
            } else {
                valid[(n / 16) % valid.len()]
            }
        };
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..1 + pick((&["", "x", "xx"], &[])).len() {
                let optional = pick(OPTIONAL);
                let mut line = [
                    pick(IDS),
                    pick(IDS),
                    pick(DEVS),
                    pick(ROOTS),
                    pick(POINTS),
                    pick(OPTIONS),
                ]
                .join(" ");
                if !optional.is_empty() {
                    line.push(' ');
                    line.push_str(optional);
                }
                let separator = pick(SEPARATORS);
                if !separator.is_empty() {
                    line.push(' ');
                    line.push_str(separator);
                }
                for field in [pick(FSTYPES), pick(SOURCES), pick(SUPERS)] {
                    line.push(' ');
                    line.push_str(field);
                }
                line.push_str(pick(TAILS));
                // Cut some lines short, anywhere.
                if pick((&[""], &["cut"])) == "cut" {
                    let at = (0..=line.len())
                        .rev()
                        .find(|&i| line.is_char_boundary(i) && i <= line.len() / 2)
                        .unwrap_or(0);
                    line.truncate(at);
                }
                text.push_str(&line);
                text.push_str(pick(ENDS));
            }
            if pick((&["", "end"], &[])) == "end" {
                text.pop();
            }
            let ours = parse(&text).map(|m| m.iter().map(as_reference).collect::<Vec<_>>());
            let expected = reference::parse(&text);
            assert_eq!(ours, expected, "{text:?}");
            parsed += usize::from(expected.is_ok());
        }
        // Both outcomes are well represented.
        assert!((5_000..15_000).contains(&parsed), "{parsed}");
    }
}
