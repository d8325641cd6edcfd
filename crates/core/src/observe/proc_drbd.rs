//! `/proc/drbd` of DRBD 8.3 and 8.4, and recognising DRBD 9 (whose /proc/drbd holds only
//! version lines, so the caller must then ask drbdsetup instead).
//!
//! The parser is strict about the lines it knows and rejects the ones it does not: a misread
//! role or disk state would make the planner act on a wrong picture, while an error only makes
//! this pass report DRBD as unavailable.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::drbd::{
    ConnectionState, DiskState, DrbdConnection, DrbdDevice, DrbdPeerDevice, DrbdResource, Quorum,
    ReplicationState, Role,
};

/// The `version:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// `api:N`.
    pub api: Option<u32>,
    /// `proto:MIN-MAX` (a single number gives MIN = MAX).
    pub proto: Option<(u32, u32)>,
    /// The version as printed, release suffix included (e.g. `9.0.32-1`).
    pub raw: String,
}

/// A running resync or online verify.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncProgress {
    /// `verified:` (online verify) rather than `sync'ed:` (resync).
    pub verify: bool,
    pub percent: f64,
    pub remaining_kib: u64,
    pub total_kib: u64,
    pub finish: Option<Duration>,
    /// The current rate (the first number after `speed:`).
    pub speed_kib_s: Option<u64>,
}

/// One minor (device line plus the lines indented under it).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcDrbdMinor {
    pub minor: u32,
    /// DRBD 8's `cs:`, which mixes connection and replication state; `Unconfigured` for a minor
    /// that exists but is not set up.
    pub cs: Text,
    pub role: Option<Role>,
    pub peer_role: Option<Role>,
    pub disk: Option<DiskState>,
    pub peer_disk: Option<DiskState>,
    /// `A`, `B` or `C`; `None` when no network config is loaded (DRBD prints a space).
    pub protocol: Option<char>,
    /// E.g. `r-----`; empty for an unconfigured minor.
    pub flags: Text,
    /// The `ns:… nr:… oos:…` line, values as printed (not all are numbers: `wo:b`).
    pub counters: Counters,
    pub sync: Option<SyncProgress>,
}

impl ProcDrbdMinor {
    pub fn is_configured(&self) -> bool {
        self.cs != "Unconfigured"
    }

    /// A numeric counter, e.g. `counter("oos")`.
    pub fn counter(&self, key: &str) -> Option<u64> {
        self.counters.get(key)?.parse().ok()
    }

    /// The first flag is `s` while I/O is suspended (e.g. by fencing), `r` otherwise.
    pub fn io_suspended(&self) -> bool {
        self.flags.starts_with('s')
    }
}

/// A piece of the text of one /proc/drbd, read as a `&str`.
///
/// The text fields of every minor share one copy of the whole file rather than holding an
/// allocation each: thousands of small strings dominated parsing a big /proc/drbd.
#[derive(Clone)]
pub struct Text {
    source: Arc<str>,
    start: usize,
    end: usize,
}

impl Text {
    pub fn as_str(&self) -> &str {
        self.source.get(self.start..self.end).unwrap_or_default()
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text {
            source: Arc::from(text),
            start: 0,
            end: text.len(),
        }
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        let end = text.len();
        Text {
            source: Arc::from(text),
            start: 0,
            end,
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::from("")
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The input being parsed and its shared copy, which [`Text`]s point into.
struct Source<'a> {
    text: &'a str,
    shared: Arc<str>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Self {
        Source {
            text,
            shared: Arc::from(text),
        }
    }

    /// `piece` (a slice of the input) as a [`Text`], without copying it.
    fn text(&self, piece: &str) -> Text {
        let start = (piece.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
        let end = start.wrapping_add(piece.len());
        if self.shared.get(start..end).is_none() {
            // Not a slice of the input after all: a copy of its own.
            return Text::from(piece);
        }
        Text {
            source: Arc::clone(&self.shared),
            start,
            end,
        }
    }

    fn empty(&self) -> Text {
        Text {
            source: Arc::clone(&self.shared),
            start: 0,
            end: 0,
        }
    }
}

/// The `key:value` counters of one minor, values as printed, looked up by key like a map (a
/// key printed twice reads as its last value).
///
/// The line is kept as printed and searched on lookup: a dozen keys and values as separate
/// strings cost two dozen allocations per minor, most of parsing a big /proc/drbd.
#[derive(Clone, Default)]
pub struct Counters {
    /// The counters line, trimmed; every whitespace-separated token is `key:value` with a
    /// non-empty key.
    line: Text,
}

impl Counters {
    /// The tokens as (key, value), in printed order, repeats included.
    fn tokens(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        words(&self.line).filter_map(|token| token.split_once(':'))
    }

    /// The value of `key` as printed (the last one if printed twice).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.tokens()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// The number of distinct keys.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// (key, value) in printed order; a key printed twice comes once, where it was last
    /// printed, with that value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut later = self.tokens();
        std::iter::from_fn(move || {
            loop {
                let (key, value) = later.next()?;
                if !later.clone().any(|(k, _)| k == key) {
                    return Some((key, value));
                }
            }
        })
    }
}

/// Equal when they map the same keys to the same values, like the maps they stand for.
impl PartialEq for Counters {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for Counters {}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The whole of /proc/drbd.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcDrbd {
    pub version: DrbdVersion,
    /// In the order printed (ascending minor numbers).
    pub minors: Vec<ProcDrbdMinor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProcDrbdError {
    #[error("/proc/drbd is empty (expected a \"version:\" line)")]
    Empty,
    #[error("/proc/drbd line {line}: unrecognised version line {text:?} ({why})")]
    BadVersion {
        line: usize,
        text: String,
        why: String,
    },
    #[error("/proc/drbd line {line}: unrecognised device line {text:?} ({why})")]
    BadDevice {
        line: usize,
        text: String,
        why: String,
    },
    #[error("/proc/drbd line {line}: minor {minor} appears a second time")]
    DuplicateMinor { line: usize, minor: u32 },
    #[error("/proc/drbd line {line}: unrecognised counters line {text:?} ({why})")]
    BadCounters {
        line: usize,
        text: String,
        why: String,
    },
    #[error("/proc/drbd line {line}: unrecognised resync line {text:?} ({why})")]
    BadSync {
        line: usize,
        text: String,
        why: String,
    },
    #[error("/proc/drbd line {line}: indented line {text:?} before any device line")]
    Orphan { line: usize, text: String },
    #[error("/proc/drbd line {line}: unrecognised line {text:?}")]
    Unrecognised { line: usize, text: String },
}

impl ProcDrbd {
    /// DRBD 9 lists no devices here: the caller must observe with drbdsetup.
    pub fn is_drbd9(&self) -> bool {
        self.version.major >= 9
    }

    pub fn minor(&self, minor: u32) -> Option<&ProcDrbdMinor> {
        self.minors.iter().find(|m| m.minor == minor)
    }

    /// The typed resource whose volume `i` lives on `minors[i]` (the name → minor mapping comes
    /// from `drbdadm sh-minor`). `None` when no listed minor is configured, i.e. the resource is
    /// down.
    ///
    /// A volume whose minor is missing or unconfigured while others are up still gets a device,
    /// with disk state `Other("Unconfigured")`: dropping it would let `has_up_to_date_data`
    /// answer for the volumes that happen to be up, and the planner could promote a resource
    /// that is only partly there.
    pub fn resource(&self, name: &str, minors: &[u32]) -> Option<DrbdResource> {
        let volumes: Vec<(u32, u32, Option<&ProcDrbdMinor>)> = minors
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let volume = u32::try_from(i).unwrap_or(u32::MAX);
                (volume, m, self.minor(m).filter(|d| d.is_configured()))
            })
            .collect();
        // 8.4 keeps role and connection per resource, so any configured volume speaks for all;
        // the first one is as good as any.
        let first = volumes.iter().find_map(|(_, _, d)| *d)?;
        let (state, _) = ConnectionState::from_84_cs(&first.cs);

        let devices = volumes
            .iter()
            .map(|&(volume, minor, d)| DrbdDevice {
                volume,
                minor,
                disk: match d {
                    Some(d) => d.disk.clone().unwrap_or(DiskState::DUnknown),
                    None => DiskState::Other("Unconfigured".to_string()),
                },
                client: false,
                // /proc/drbd does not say whether the device is open, nor whether it has quorum.
                open: false,
                quorum: Quorum::Unknown,
            })
            .collect();
        let peer_devices = volumes
            .iter()
            .map(|&(volume, _, d)| DrbdPeerDevice {
                volume,
                replication: d.map_or(ReplicationState::Off, |d| replication_of_84_cs(&d.cs)),
                peer_disk: d
                    .and_then(|d| d.peer_disk.clone())
                    .unwrap_or(DiskState::DUnknown),
                // A verify's percentage is how far the check got, not how much is in sync.
                percent_in_sync: d
                    .and_then(|d| d.sync.as_ref())
                    .filter(|s| !s.verify)
                    .map(|s| s.percent),
            })
            .collect();

        Some(DrbdResource {
            name: name.to_string(),
            role: first.role.clone().unwrap_or(Role::Unknown),
            suspended: volumes
                .iter()
                .any(|(_, _, d)| d.is_some_and(|d| d.io_suspended())),
            devices,
            connections: vec![DrbdConnection {
                peer_node_id: None,
                name: None,
                state,
                peer_role: first.peer_role.clone().unwrap_or(Role::Unknown),
                peer_devices,
            }],
        })
    }
}

/// 8.4's plain `Connected` is DRBD 9's `Established`; anything short of connected replicates
/// nothing.
fn replication_of_84_cs(cs: &str) -> ReplicationState {
    match ConnectionState::from_84_cs(cs) {
        (_, Some(replication)) => replication,
        (ConnectionState::Connected, None) => ReplicationState::Established,
        _ => ReplicationState::Off,
    }
}

pub fn parse(text: &str) -> Result<ProcDrbd, ProcDrbdError> {
    if text.trim().is_empty() {
        return Err(ProcDrbdError::Empty);
    }
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let (_, first) = lines.next().ok_or(ProcDrbdError::Empty)?;
    let version = parse_version(first).map_err(|why| ProcDrbdError::BadVersion {
        line: 1,
        text: first.to_string(),
        why,
    })?;
    let source = Source::new(text);

    let mut minors: Vec<ProcDrbdMinor> = Vec::new();
    // The kernel prints minors in ascending order, which rules out repeats by itself; the set
    // of seen minors is only built if that order ever breaks.
    let mut seen: Option<BTreeSet<u32>> = None;
    let mut in_header = true;
    for (n, line) in lines {
        let trimmed = line.trim();
        // 8.4 prints a blank line wherever minor numbers skip.
        if trimmed.is_empty() {
            in_header = false;
            continue;
        }
        if let Some((minor, rest)) = device_line(trimmed) {
            in_header = false;
            let bad = |why: String| ProcDrbdError::BadDevice {
                line: n,
                text: line.to_string(),
                why,
            };
            let minor: u32 = minor
                .parse()
                .map_err(|_| bad(format!("minor number {minor:?} out of range")))?;
            let repeated = match (&mut seen, minors.last()) {
                (None, Some(last)) if minor <= last.minor => {
                    let set = seen.insert(minors.iter().map(|m| m.minor).collect());
                    !set.insert(minor)
                }
                (None, _) => false,
                (Some(set), _) => !set.insert(minor),
            };
            if repeated {
                return Err(ProcDrbdError::DuplicateMinor { line: n, minor });
            }
            minors.push(parse_device(&source, minor, rest).map_err(bad)?);
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            if in_header && is_header_line(trimmed) {
                continue;
            }
            return Err(ProcDrbdError::Unrecognised {
                line: n,
                text: line.to_string(),
            });
        }
        let Some(current) = minors.last_mut() else {
            return Err(ProcDrbdError::Orphan {
                line: n,
                text: line.to_string(),
            });
        };
        parse_detail(&source, current, n, line, trimmed)?;
    }
    Ok(ProcDrbd { version, minors })
}

/// Lines between `version:` and the first device: the build tag (`GIT-hash: … build by …`,
/// `srcversion: …` or `built-in`) and DRBD 9's `Transports (api:N): …`.
fn is_header_line(trimmed: &str) -> bool {
    ["GIT-hash:", "srcversion:", "built-in", "Transports"]
        .iter()
        .any(|p| trimmed.starts_with(p))
}

/// `N: …` → (`N`, `…`). Only the digits-then-colon shape counts, so `ns:0 …` is not one.
fn device_line(trimmed: &str) -> Option<(&str, &str)> {
    // Bytes, not `split_once`: this runs on every line and most lines fail at their first byte.
    let colon = trimmed.bytes().position(|b| !b.is_ascii_digit())?;
    if colon == 0 || trimmed.as_bytes().get(colon) != Some(&b':') {
        return None;
    }
    Some((trimmed.get(..colon)?, trimmed.get(colon + 1..)?))
}

fn parse_version(line: &str) -> Result<DrbdVersion, String> {
    let rest = line
        .strip_prefix("version:")
        .ok_or("expected \"version:\"")?
        .trim();
    let (raw, extra) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if raw.is_empty() {
        return Err("no version number".into());
    }
    let mut parts = raw.splitn(3, '.');
    let number = |part: Option<&str>, what: &str| -> Result<u32, String> {
        let part = part.ok_or_else(|| format!("no {what} version"))?;
        // The patch level may carry a release suffix (`32-1`, `0rc1`): keep its digits.
        let digits_end = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        part.get(..digits_end)
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("bad {what} version in {raw:?}"))
    };
    let major = number(parts.next(), "major")?;
    let minor = number(parts.next(), "minor")?;
    let patch = number(parts.next(), "patch")?;

    let mut api = None;
    let mut proto = None;
    let extra = extra.trim();
    if !extra.is_empty() {
        let inner = extra
            .strip_prefix('(')
            .and_then(|e| e.strip_suffix(')'))
            .ok_or_else(|| format!("expected \"(api:…/proto:…)\", found {extra:?}"))?;
        for field in inner.split('/') {
            let (key, value) = field
                .split_once(':')
                .ok_or_else(|| format!("expected key:value, found {field:?}"))?;
            match key {
                "api" => {
                    api = Some(
                        value
                            .parse()
                            .map_err(|_| format!("bad api number {value:?}"))?,
                    )
                }
                "proto" => {
                    let (lo, hi) = value.split_once('-').unwrap_or((value, value));
                    match (lo.parse(), hi.parse()) {
                        (Ok(lo), Ok(hi)) => proto = Some((lo, hi)),
                        _ => return Err(format!("bad proto range {value:?}")),
                    }
                }
                // Informational only; a future key must not stop observation.
                _ => {}
            }
        }
    }
    Ok(DrbdVersion {
        major,
        minor,
        patch,
        api,
        proto,
        raw: raw.to_string(),
    })
}

/// `cs:… ro:…/… ds:…/… P flags` after `N:`; `st:` is 8.3's older spelling of `ro:`.
fn parse_device(source: &Source<'_>, minor: u32, rest: &str) -> Result<ProcDrbdMinor, String> {
    let mut tokens = words(rest);
    let cs = tokens
        .next()
        .and_then(|t| t.strip_prefix("cs:"))
        .filter(|cs| !cs.is_empty())
        .ok_or("expected \"cs:\" first")?;
    let mut d = ProcDrbdMinor {
        minor,
        cs: source.text(cs),
        role: None,
        peer_role: None,
        disk: None,
        peer_disk: None,
        protocol: None,
        flags: source.empty(),
        counters: Counters {
            line: source.empty(),
        },
        sync: None,
    };
    for token in tokens {
        if let Some(v) = token.strip_prefix("ro:").or(token.strip_prefix("st:")) {
            if d.role.is_some() {
                return Err("roles given twice".into());
            }
            let (local, peer) = pair(v).ok_or_else(|| format!("bad roles {token:?}"))?;
            d.role = Some(Role::parse(local));
            d.peer_role = Some(Role::parse(peer));
        } else if let Some(v) = token.strip_prefix("ds:") {
            if d.disk.is_some() {
                return Err("disk states given twice".into());
            }
            let (local, peer) = pair(v).ok_or_else(|| format!("bad disk states {token:?}"))?;
            d.disk = Some(DiskState::parse(local));
            d.peer_disk = Some(DiskState::parse(peer));
        } else if d.protocol.is_none() && d.flags.is_empty() && matches!(token, "A" | "B" | "C") {
            d.protocol = token.chars().next();
        } else if d.flags.is_empty() && token.bytes().all(|b| b == b'-' || b.is_ascii_lowercase()) {
            d.flags = source.text(token);
        } else {
            return Err(format!("unexpected field {token:?}"));
        }
    }
    // Every configured minor has all of these; a line without them is cut short.
    if d.is_configured() {
        if d.role.is_none() {
            return Err("no \"ro:\" roles".into());
        }
        if d.disk.is_none() {
            return Err("no \"ds:\" disk states".into());
        }
        if d.flags.is_empty() {
            return Err("no flags".into());
        }
    }
    Ok(d)
}

/// `str::split_whitespace`, but a plain byte loop on ASCII text (all of /proc/drbd in
/// practice), where decoding and classifying every char dominated parsing.
#[derive(Clone)]
enum Words<'a> {
    Ascii(&'a str),
    Unicode(std::str::SplitWhitespace<'a>),
}

fn words(text: &str) -> Words<'_> {
    if text.is_ascii() {
        Words::Ascii(text)
    } else {
        Words::Unicode(text.split_whitespace())
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            Words::Unicode(split) => split.next(),
            Words::Ascii(rest) => {
                let bytes = rest.as_bytes();
                let mut start = 0;
                while bytes.get(start).is_some_and(|&b| is_blank(b)) {
                    start += 1;
                }
                if start == bytes.len() {
                    *rest = "";
                    return None;
                }
                let end = find_blank(bytes, start + 1);
                let word = rest.get(start..end)?;
                *rest = rest.get(end..)?;
                Some(word)
            }
        }
    }
}

/// What `char::is_whitespace` accepts below 0x80: \t, \n, \v, \f, \r and space.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t'..=b'\r')
}

// Eight ASCII bytes at a time, as a little-endian u64 (the lowest byte comes first). Every byte
// is below 0x80, so no per-byte sum below carries into the next byte (the additions wrap only
// to stay panic-free should a non-ASCII byte ever get here).
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of (ASCII) `word` equal to (ASCII) `byte`, and no other bit:
/// `b ^ byte` is zero exactly when adding 0x7f leaves the high bit clear.
fn ascii_bytes_equal(word: u64, byte: u8) -> u64 {
    !(word ^ (ONES * u64::from(byte))).wrapping_add(ONES * 0x7f) & HIGHS
}

/// The high bit of every blank byte (see [`is_blank`]) of (ASCII) `word`.
fn ascii_blanks(word: u64) -> u64 {
    // 9..=13: adding 0x80 - 9 reaches the high bit, adding 0x80 - 14 does not.
    let at_least_9 = word.wrapping_add(ONES * (0x80 - 9));
    let at_least_14 = word.wrapping_add(ONES * (0x80 - 14));
    ascii_bytes_equal(word, b' ') | (at_least_9 & !at_least_14 & HIGHS)
}

/// High-bit flags to one bit per byte (bit i for byte i).
fn flag_bits(flags: u64) -> u8 {
    // The multiplication gathers bit 8i into bit 56 + i, without carries.
    ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// The first blank in ASCII `bytes` at or after `from`, or the end.
fn find_blank(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(word) = bytes.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        let blanks = ascii_blanks(u64::from_le_bytes(*word));
        if blanks != 0 {
            return at + (blanks.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes.get(at).is_some_and(|&b| !is_blank(b)) {
        at += 1;
    }
    at
}

/// Whether every whitespace-separated token of `line` is `key:value` with a non-empty key.
fn all_key_value(line: &str) -> bool {
    if !line.is_ascii() {
        return words(line).all(is_key_value);
    }
    // Eight bytes at a time, as bit masks (bit i for byte i) rather than token by token.
    // The byte before the current eight is blank (the line start counts as blank).
    let mut after_blank = true;
    // A token runs into the current eight bytes and has shown no colon yet.
    let mut open = false;
    for chunk in line.as_bytes().chunks(8) {
        let word = match <[u8; 8]>::try_from(chunk) {
            Ok(word) => word,
            Err(_) => {
                // The end of the line ends its last token, as a blank would.
                let mut word = [b' '; 8];
                for (w, &b) in word.iter_mut().zip(chunk) {
                    *w = b;
                }
                word
            }
        };
        let word = u64::from_le_bytes(word);
        let blank = flag_bits(ascii_blanks(word));
        let colon = flag_bits(ascii_bytes_equal(word, b':'));
        let starts = !blank & ((blank << 1) | u8::from(after_blank));
        if starts & colon != 0 || (open && blank & 1 != 0) {
            // An empty key, or the open token ended without a colon.
            return false;
        }
        // A carry started at each token still without a colon runs along its bytes that are
        // neither blank nor colon, and lands on the first byte that is one (bit 8: none yet).
        let plain = u16::from(!blank & !colon);
        let seeds = u16::from(starts) | u16::from(open);
        let landed = (plain + seeds) & !plain;
        if landed & u16::from(blank) != 0 {
            return false;
        }
        open = landed & 0x100 != 0;
        after_blank = blank & 0x80 != 0;
    }
    !open
}

fn is_key_value(token: &str) -> bool {
    token.bytes().position(|b| b == b':').is_some_and(|i| i > 0)
}

fn pair(v: &str) -> Option<(&str, &str)> {
    // Bytes, not `split_once`: a general searcher is slow on a handful of bytes.
    let slash = v.bytes().position(|b| b == b'/')?;
    let (a, b) = (v.get(..slash)?, v.get(slash + 1..)?);
    (!a.is_empty() && !b.is_empty() && !b.bytes().any(|c| c == b'/')).then_some((a, b))
}

/// A line indented under a device line.
fn parse_detail(
    source: &Source<'_>,
    d: &mut ProcDrbdMinor,
    n: usize,
    line: &str,
    trimmed: &str,
) -> Result<(), ProcDrbdError> {
    let bad_sync = |why: String| ProcDrbdError::BadSync {
        line: n,
        text: line.to_string(),
        why,
    };
    if trimmed.starts_with("ns:") {
        if !d.counters.is_empty() {
            return Err(ProcDrbdError::BadCounters {
                line: n,
                text: line.to_string(),
                why: format!("second counters line for minor {}", d.minor),
            });
        }
        if !all_key_value(trimmed) {
            let token = words(trimmed)
                .find(|t| !is_key_value(t))
                .unwrap_or_default();
            return Err(ProcDrbdError::BadCounters {
                line: n,
                text: line.to_string(),
                why: format!("expected key:value, found {token:?}"),
            });
        }
        d.counters = Counters {
            line: source.text(trimmed),
        };
    } else if trimmed.starts_with('[') {
        if d.sync.is_some() {
            return Err(bad_sync(format!(
                "second progress line for minor {}",
                d.minor
            )));
        }
        d.sync = Some(parse_sync(trimmed).map_err(bad_sync)?);
    } else if trimmed.starts_with("finish:") {
        // Small resyncs print finish on its own line, large ones (M units) on the progress line.
        match d.sync.as_mut() {
            Some(sync) if sync.finish.is_none() => {
                let (finish, speed) = parse_finish(trimmed).map_err(bad_sync)?;
                sync.finish = Some(finish);
                sync.speed_kib_s = speed;
            }
            Some(_) => return Err(bad_sync("second \"finish:\" for one resync".into())),
            None => return Err(bad_sync("\"finish:\" without a progress line".into())),
        }
    } else if is_ignored_detail(trimmed) {
        // Debug statistics (the `proc_details` module parameter): nothing the planner uses.
    } else {
        return Err(ProcDrbdError::Unrecognised {
            line: n,
            text: line.to_string(),
        });
    }
    Ok(())
}

fn is_ignored_detail(trimmed: &str) -> bool {
    trimmed.starts_with("resync:")
        || trimmed.starts_with("act_log:")
        || trimmed.starts_with("blocked on activity log:")
        || trimmed.contains("sector pos:")
}

/// `[==>....] sync'ed: 83.6% (89620/524236)K` with optionally `finish: …` after it.
fn parse_sync(trimmed: &str) -> Result<SyncProgress, String> {
    let (_, after_bar) = trimmed
        .split_once(']')
        .ok_or("no ']' closing the progress bar")?;
    let after_bar = after_bar.trim_start();
    let (verify, rest) = if let Some(r) = after_bar.strip_prefix("sync'ed:") {
        (false, r)
    } else if let Some(r) = after_bar.strip_prefix("verified:") {
        (true, r)
    } else {
        return Err("expected \"sync'ed:\" or \"verified:\"".into());
    };
    // `%3u.%u%%`: padded to one or two leading spaces, or none at 100.0.
    let (percent, rest) = rest.trim_start().split_once('%').ok_or("no percentage")?;
    let percent: f64 = percent
        .parse()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| format!("bad percentage {percent:?}"))?;
    let (counts, rest) = rest
        .trim_start()
        .strip_prefix('(')
        .and_then(|r| r.split_once(')'))
        .ok_or("no \"(remaining/total)\"")?;
    let (remaining, total) = counts
        .split_once('/')
        .ok_or_else(|| format!("bad amounts {counts:?}"))?;
    let mut rest_chars = rest.chars();
    let scale: u64 = match rest_chars.next() {
        Some('K') => 1,
        Some('M') => 1024,
        other => return Err(format!("unknown unit {other:?} (expected K or M)")),
    };
    let kib = |s: &str| -> Result<u64, String> {
        s.parse::<u64>()
            .ok()
            .and_then(|v| v.checked_mul(scale))
            .ok_or_else(|| format!("bad amount {s:?}"))
    };
    let mut sync = SyncProgress {
        verify,
        percent,
        remaining_kib: kib(remaining)?,
        total_kib: kib(total)?,
        finish: None,
        speed_kib_s: None,
    };
    // With M units some kernels print `finish:` right after the unit, with no space.
    let rest = rest_chars.as_str().trim();
    if !rest.is_empty() {
        let (finish, speed) = parse_finish(rest)?;
        sync.finish = Some(finish);
        sync.speed_kib_s = speed;
    }
    Ok(sync)
}

/// `finish: H:MM:SS speed: 18,712 (13,580) [want: 4,320] K/sec [(stalled)]`; what follows the
/// current speed is not needed.
fn parse_finish(text: &str) -> Result<(Duration, Option<u64>), String> {
    let rest = text
        .strip_prefix("finish:")
        .ok_or_else(|| format!("expected \"finish:\", found {text:?}"))?
        .trim_start();
    let (time, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let finish = parse_hms(time).ok_or_else(|| format!("bad finish time {time:?}"))?;
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok((finish, None));
    }
    let speed = rest
        .strip_prefix("speed:")
        .ok_or_else(|| format!("expected \"speed:\", found {rest:?}"))?
        .trim_start();
    let speed = words(speed).next().unwrap_or("");
    // Digits with thousands separators (`18,712`).
    let digits = || speed.bytes().filter(|&b| b != b',');
    if digits().next().is_none() || !digits().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad speed {speed:?}"));
    }
    let speed = digits()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or_else(|| format!("speed {speed:?} out of range"))?;
    Ok((finish, Some(speed)))
}

fn parse_hms(time: &str) -> Option<Duration> {
    let mut parts = time.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let s: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || m >= 60 || s >= 60 {
        return None;
    }
    let secs = h.checked_mul(3600)?.checked_add(m * 60 + s)?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realistic 8.4 node: minors 0-2 and 4 (3 skipped, hence the blank line), 10 after a
    /// further gap; small and large resyncs, a verify, a StandAlone and an unconfigured minor.
    const PROC_84: &str = include_str!("../../tests/fixtures/proc_drbd/8.4.txt");

    const PROC_83: &str = include_str!("../../tests/fixtures/proc_drbd/8.3.txt");

    const PROC_9: &str = include_str!("../../tests/fixtures/proc_drbd/9.0.txt");

    fn p84() -> ProcDrbd {
        parse(PROC_84).unwrap()
    }

    #[test]
    fn version_84() {
        let v = p84().version;
        assert_eq!((v.major, v.minor, v.patch), (8, 4, 11));
        assert_eq!(v.api, Some(1));
        assert_eq!(v.proto, Some((86, 101)));
        assert_eq!(v.raw, "8.4.11-1");
        assert!(!p84().is_drbd9());
    }

    #[test]
    fn version_line_with_built_in_tag() {
        let p =
            parse("version: 8.4.0 (api:1/proto:86-100)\nbuilt-in\n 0: cs:Unconfigured\n").unwrap();
        assert_eq!(p.version.patch, 0);
        assert_eq!(p.minors.len(), 1);
    }

    #[test]
    fn minors_and_skips() {
        let minors: Vec<u32> = p84().minors.iter().map(|m| m.minor).collect();
        assert_eq!(minors, [0, 1, 2, 4, 5, 6, 10]);
    }

    #[test]
    fn connected_device_line_and_counters() {
        let p = p84();
        let m = p.minor(0).unwrap();
        assert_eq!(m.cs, "Connected");
        assert_eq!(m.role, Some(Role::Primary));
        assert_eq!(m.peer_role, Some(Role::Secondary));
        assert_eq!(m.disk, Some(DiskState::UpToDate));
        assert_eq!(m.peer_disk, Some(DiskState::UpToDate));
        assert_eq!(m.protocol, Some('C'));
        assert_eq!(m.flags, "r-----");
        assert_eq!(m.counter("dr"), Some(656));
        assert_eq!(m.counters.get("wo"), Some("f"));
        assert_eq!(m.counter("wo"), None);
        assert_eq!(m.sync, None);
    }

    #[test]
    fn unknown_counter_keys_are_kept() {
        let p = parse("version: 8.4.5 (api:1/proto:86-101)\n 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n    ns:0 nr:0 zz:7 oos:0\n").unwrap();
        assert_eq!(p.minors[0].counter("zz"), Some(7));
    }

    #[test]
    fn sync_with_finish_on_its_own_line() {
        let p = p84();
        let s = p.minor(1).unwrap().sync.as_ref().unwrap();
        assert!(!s.verify);
        assert_eq!(s.percent, 83.6);
        assert_eq!((s.remaining_kib, s.total_kib), (89620, 524236));
        assert_eq!(s.finish, Some(Duration::from_secs(4)));
        assert_eq!(s.speed_kib_s, Some(18712));
    }

    #[test]
    fn sync_in_m_units_with_finish_on_the_same_line() {
        let p = p84();
        let s = p.minor(2).unwrap().sync.as_ref().unwrap();
        assert_eq!(s.percent, 10.2);
        assert_eq!(
            (s.remaining_kib, s.total_kib),
            (202752 * 1024, 225792 * 1024)
        );
        assert_eq!(s.finish, Some(Duration::from_secs(3600 + 23 * 60 + 45)));
        assert_eq!(s.speed_kib_s, Some(41600));
    }

    #[test]
    fn m_units_with_finish_glued_to_the_unit() {
        let text = "version: 8.4.3 (api:1/proto:86-101)\n 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----\n    ns:0 nr:0 oos:1\n\t[>....................] sync'ed:  0.1% (4095/4096)Mfinish: 12:01:02 speed: 1,234,567 (1,000) K/sec (stalled)\n";
        let s = parse(text).unwrap().minors[0].sync.clone().unwrap();
        assert_eq!(s.total_kib, 4096 * 1024);
        assert_eq!(s.finish, Some(Duration::from_secs(12 * 3600 + 62)));
        assert_eq!(s.speed_kib_s, Some(1_234_567));
    }

    #[test]
    fn verify_with_padded_percentage() {
        let p = p84();
        let s = p.minor(4).unwrap().sync.as_ref().unwrap();
        assert!(s.verify);
        assert_eq!(s.percent, 0.4);
        assert_eq!((s.remaining_kib, s.total_kib), (522108, 524236));
        assert_eq!(s.speed_kib_s, Some(1588));
    }

    #[test]
    fn hundred_percent_has_no_padding() {
        let text = "version: 8.4.4 (api:1/proto:86-101)\n 0: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----\n    ns:0 oos:0\n    [===================>] sync'ed:100.0% (0/524236)K\n    finish: 0:00:00 speed: 0 (0) want: 0 K/sec\n";
        let s = parse(text).unwrap().minors[0].sync.clone().unwrap();
        assert_eq!(s.percent, 100.0);
        assert_eq!(s.remaining_kib, 0);
    }

    #[test]
    fn missing_protocol_letter() {
        let p = p84();
        let m = p.minor(5).unwrap();
        assert_eq!(m.cs, "StandAlone");
        assert_eq!(m.protocol, None);
        assert_eq!(m.flags, "r-----");
        assert_eq!(m.peer_role, Some(Role::Unknown));
    }

    #[test]
    fn unconfigured_minor() {
        let p = p84();
        let m = p.minor(6).unwrap();
        assert!(!m.is_configured());
        assert_eq!((m.role.clone(), m.disk.clone()), (None, None));
        assert!(m.flags.is_empty() && m.counters.is_empty());
    }

    #[test]
    fn short_and_suspended_flags() {
        let p = p84();
        assert_eq!(p.minor(10).unwrap().flags, "r----s");
        assert!(!p.minor(10).unwrap().io_suspended());
        let p = parse(PROC_83).unwrap();
        assert_eq!(p.minor(1).unwrap().flags, "r---");
        let text = "version: 8.4.4 (api:1/proto:86-101)\n 0: cs:WFConnection ro:Primary/Unknown ds:UpToDate/DUnknown C s---d-\n";
        assert!(parse(text).unwrap().minors[0].io_suspended());
    }

    #[test]
    fn drbd_83_with_st_roles_and_srcversion() {
        let p = parse(PROC_83).unwrap();
        assert_eq!(
            (p.version.major, p.version.minor, p.version.patch),
            (8, 3, 11)
        );
        assert_eq!(p.version.api, Some(88));
        assert_eq!(p.version.proto, Some((86, 96)));
        let m = p.minor(0).unwrap();
        assert_eq!(m.role, Some(Role::Secondary));
        assert_eq!(m.peer_role, Some(Role::Primary));
        assert_eq!(m.counters.get("wo"), Some("b"));
        assert!(!p.minor(2).unwrap().is_configured());
    }

    #[test]
    fn drbd9_has_only_version_lines() {
        let p = parse(PROC_9).unwrap();
        assert!(p.is_drbd9());
        assert!(p.minors.is_empty());
        assert_eq!(
            (p.version.major, p.version.minor, p.version.patch),
            (9, 0, 32)
        );
        assert_eq!(p.version.api, Some(2));
        assert_eq!(p.version.proto, Some((86, 121)));
    }

    #[test]
    fn proc_details_lines_are_skipped() {
        let text = "version: 8.4.4 (api:1/proto:86-101)\n 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----\n    ns:0 oos:8\n\t[>....................] sync'ed:  0.4% (522108/524236)K\n\tfinish: 0:05:28 speed: 1,588 (1,500 -- 1,588) K/sec\n\t  0% sector pos: 4096/1048472\n\tresync: used:1/61 hits:30 misses:1 starving:0 locked:0 changed:1\n\tact_log: used:0/1237 hits:0 misses:0 starving:0 locked:0 changed:0\n\tblocked on activity log: 0\n";
        let p = parse(text).unwrap();
        assert_eq!(p.minors[0].sync.as_ref().unwrap().speed_kib_s, Some(1588));
    }

    #[test]
    fn many_minors() {
        let mut text = String::from(
            "version: 8.4.11-1 (api:1/proto:86-101)\nsrcversion: 0123456789ABCDEF0123456\n",
        );
        for i in 0..1000u32 {
            if i % 7 == 3 {
                // Skipped minor: a blank line in its place.
                text.push('\n');
                continue;
            }
            text.push_str(&format!(
                "{i:2}: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----\n    ns:0 nr:{i} dw:{i} dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
            ));
            if i % 50 == 1 {
                text.push_str("\t[=====>..............] sync'ed: 25.0% (3/4)K\n\tfinish: 0:00:01 speed: 1 (1) K/sec\n");
            }
        }
        let p = parse(&text).unwrap();
        assert_eq!(p.minors.len(), 1000 - 143);
        assert_eq!(p.minor(999).unwrap().counter("nr"), Some(999));
        let r = p.resource("big", &[998, 999]).unwrap();
        assert!(r.has_up_to_date_data());
    }

    #[test]
    fn resource_connected() {
        let r = p84().resource("r0", &[0]).unwrap();
        assert_eq!(r.name, "r0");
        assert_eq!(r.role, Role::Primary);
        assert!(!r.suspended);
        assert_eq!(
            r.devices,
            [DrbdDevice {
                volume: 0,
                minor: 0,
                disk: DiskState::UpToDate,
                client: false,
                open: false,
                quorum: Quorum::Unknown,
            }]
        );
        let c = &r.connections[0];
        assert_eq!(c.state, ConnectionState::Connected);
        assert_eq!(c.peer_role, Role::Secondary);
        assert_eq!(c.peer_node_id, None);
        assert_eq!(
            c.peer_devices,
            [DrbdPeerDevice {
                volume: 0,
                replication: ReplicationState::Established,
                peer_disk: DiskState::UpToDate,
                percent_in_sync: None,
            }]
        );
        assert!(r.has_up_to_date_data() && !r.peer_primary() && !r.is_standalone());
    }

    #[test]
    fn resource_multi_volume_syncing() {
        let r = p84().resource("r1", &[1, 2]).unwrap();
        assert_eq!(r.role, Role::Primary);
        assert_eq!(r.devices[1].volume, 1);
        assert_eq!(r.devices[1].minor, 2);
        let pds = &r.connections[0].peer_devices;
        assert_eq!(pds[0].replication, ReplicationState::SyncSource);
        assert_eq!(pds[0].percent_in_sync, Some(83.6));
        assert_eq!(pds[1].replication, ReplicationState::SyncTarget);
        assert_eq!(pds[1].percent_in_sync, Some(10.2));
        assert!(!r.has_up_to_date_data());
    }

    #[test]
    fn resource_verifying() {
        let r = p84().resource("r4", &[4]).unwrap();
        let pd = &r.connections[0].peer_devices[0];
        assert_eq!(pd.replication, ReplicationState::VerifyS);
        assert_eq!(pd.percent_in_sync, None);
    }

    #[test]
    fn resource_standalone_and_waiting() {
        let p = p84();
        let r = p.resource("r5", &[5]).unwrap();
        assert!(r.is_standalone());
        assert_eq!(
            r.connections[0].peer_devices[0].replication,
            ReplicationState::Off
        );
        assert_eq!(
            r.connections[0].peer_devices[0].peer_disk,
            DiskState::DUnknown
        );
        let r = p.resource("r10", &[10]).unwrap();
        assert_eq!(r.connections[0].state, ConnectionState::WFConnection);
        assert_eq!(r.devices[0].disk, DiskState::Outdated);
        assert!(!r.is_standalone());
    }

    #[test]
    fn resource_down_or_partly_up() {
        let p = p84();
        assert_eq!(p.resource("gone", &[6]), None);
        assert_eq!(p.resource("gone", &[3, 6, 77]), None);
        assert_eq!(p.resource("none", &[]), None);
        // Volume 0 is not up: the resource is reported, but not as having up-to-date data.
        let r = p.resource("half", &[6, 0]).unwrap();
        assert_eq!(r.role, Role::Primary);
        assert_eq!(r.devices[0].disk, DiskState::Other("Unconfigured".into()));
        assert!(!r.has_up_to_date_data());
        assert_eq!(
            r.connections[0].peer_devices[0].replication,
            ReplicationState::Off
        );
    }

    #[test]
    fn resource_suspended() {
        let text = "version: 8.4.4 (api:1/proto:86-101)\n 0: cs:WFConnection ro:Primary/Unknown ds:UpToDate/DUnknown C s---d-\n";
        assert!(parse(text).unwrap().resource("r", &[0]).unwrap().suspended);
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_line_and_text() {
        assert_eq!(
            err("version: 8.4.0 (api:1/proto:86-100)\nbuilt-in\n 0: foo\n"),
            "/proc/drbd line 3: unrecognised device line \" 0: foo\" (expected \"cs:\" first)"
        );
        assert_eq!(
            err(""),
            "/proc/drbd is empty (expected a \"version:\" line)"
        );
        assert!(err("hello\n").starts_with("/proc/drbd line 1: unrecognised version line"));
        assert!(err("version: 8.4.0\n    ns:0\n").starts_with("/proc/drbd line 2: indented line"));
    }

    #[test]
    fn truncated_inputs_are_errors() {
        let full = PROC_84;
        for cut in [
            " 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpTo",
            " 0: cs:Connected ro:Primary/Sec",
            " 0: cs:Connected ro:",
            " 0: cs:",
            "\t[===============>....] sync'ed: 83.6% (89620/52",
            "\t[===============>....] sync'ed: 83.6",
            "\tfinish: 0:0",
            "version: 8.4.11-1 (api:1/pro",
        ] {
            let end = full.find(cut).unwrap() + cut.len();
            let text = full.get(..end).unwrap();
            // A cut inside a counters or speed line can still read as valid; these cannot.
            assert!(parse(text).is_err(), "accepted {text:?}");
        }
        assert!(parse("version: 8.4.11-1 (api:1/proto:86-101)\n 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n    ns:0 nr:0 dw\n").is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        for text in [
            "\0\0\0",
            "version:",
            "version: x.y.z",
            "version: 8.4.0 (api:one)\n",
            "version: 8.4.0\nrandom words\n",
            "version: 8.4.0\n 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r----- extra\n",
            "version: 8.4.0\n 0: cs:Unconfigured\n 0: cs:Unconfigured\n",
            "version: 8.4.0\n 99999999999: cs:Unconfigured\n",
            "version: 8.4.0\n 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n\tfinish: 0:00:01\n",
            "version: 8.4.0\n 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----\n\t[>] sync'ed: 200.0% (1/2)K\n",
            "version: 8.4.0\n 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----\n\t[>] sync'ed: 1.0% (1/2)G\n",
            "version: 8.4.0\n 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----\n\t[>] sync'ed: 1.0% (1/2)K finish: 0:99:00\n",
            "version: 8.4.0\n 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----\n\t[>] sync'ed: 1.0% (99999999999999999999/2)M\n",
            "version: 8.4.0\n 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n\twhat is this\n",
        ] {
            assert!(parse(text).is_err(), "accepted {text:?}");
        }
    }

    /// Short strings over an alphabet of blanks (ASCII and not), colons and a few letters.
    fn tricky_strings() -> Vec<String> {
        const ALPHABET: [char; 12] = [
            ' ', '\t', '\x0b', '\x0c', '\r', ':', 'a', 'b', '0', '/', '\u{a0}', '\u{3000}',
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        (0..20_000)
            .map(|i| {
                // Mostly ASCII, so the fast paths get most of the cases.
                let letters = if i % 4 == 0 { 12 } else { 10 };
                let len = next() % 40;
                (0..len)
                    .map(|_| ALPHABET[(next() % letters) as usize])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn words_split_like_split_whitespace() {
        for text in tricky_strings() {
            let ours: Vec<&str> = words(&text).collect();
            let std: Vec<&str> = text.split_whitespace().collect();
            assert_eq!(ours, std, "{text:?}");
        }
    }

    #[test]
    fn key_value_check_agrees_with_token_by_token() {
        let mut accepted = 0;
        for text in tricky_strings() {
            let expected = text
                .split_whitespace()
                .all(|t| t.split_once(':').is_some_and(|(k, _)| !k.is_empty()));
            assert_eq!(all_key_value(&text), expected, "{text:?}");
            accepted += usize::from(expected);
        }
        // The cases are not all trivially rejected.
        assert!(accepted > 1_000, "{accepted}");
        for text in [
            "",
            "   ",
            "ns:0",
            "ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0",
            "ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 u",
            "abcdefghijklmnop:",
            "abcdefghijklmnopq",
            "abcdefg hijklmn:",
            "abcdefg :ijklmn",
        ] {
            let expected = text
                .split_whitespace()
                .all(|t| t.split_once(':').is_some_and(|(k, _)| !k.is_empty()));
            assert_eq!(all_key_value(text), expected, "{text:?}");
        }
    }

    #[test]
    fn counters_read_like_a_map() {
        let p = parse("version: 8.4.5 (api:1/proto:86-101)\n 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n    ns:1 nr:2 ns:3 wo:b x: oos:0\n 1: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n    ns:3 x: oos:0 wo:b  nr:2\n").unwrap();
        let (a, b) = (&p.minors[0].counters, &p.minors[1].counters);
        assert_eq!(a.get("ns"), Some("3"));
        assert_eq!(p.minors[0].counter("ns"), Some(3));
        assert_eq!(a.get("x"), Some(""));
        assert_eq!(p.minors[0].counter("x"), None);
        assert_eq!(a.get("n"), None);
        assert!(a.contains_key("wo") && !a.contains_key("zz"));
        assert_eq!(a.len(), 5);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [
                ("nr", "2"),
                ("ns", "3"),
                ("wo", "b"),
                ("x", ""),
                ("oos", "0")
            ]
        );
        assert_eq!(
            format!("{a:?}"),
            r#"{"nr": "2", "ns": "3", "wo": "b", "x": "", "oos": "0"}"#
        );
        // Same keys and values in another order and spacing: equal, as maps would be.
        assert_eq!(a, b);
        assert_ne!(a, &p84().minors[0].counters);
        assert!(Counters::default().is_empty() && !a.is_empty());
    }

    #[test]
    fn odd_but_valid_spacing_parses_as_before() {
        // Tabs, vertical tabs and non-ASCII blanks separate fields like spaces do.
        let text = "version: 8.4.5 (api:1/proto:86-101)\n 0:\tcs:Connected\u{a0}ro:Primary/Secondary\x0bds:UpToDate/UpToDate C r-----\n    ns:1\u{3000}nr:2\x0cwo:b\n";
        let p = parse(text).unwrap();
        let m = &p.minors[0];
        assert_eq!(m.role, Some(Role::Primary));
        assert_eq!(m.flags, "r-----");
        assert_eq!(m.counter("nr"), Some(2));
        assert_eq!(m.counters.get("wo"), Some("b"));
    }

    #[test]
    fn device_lines_and_pairs_split_as_before() {
        for text in tricky_strings() {
            let text = text.replace('/', "1");
            let old = text
                .split_once(':')
                .filter(|(m, _)| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(device_line(&text), old, "{text:?}");
        }
        for text in tricky_strings() {
            let old = text
                .split_once('/')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'));
            assert_eq!(pair(&text), old, "{text:?}");
        }
    }

    #[test]
    fn repeated_minors_are_caught_out_of_order_too() {
        let device = |m: u32| format!("{m:2}: cs:Unconfigured\n");
        let text = |minors: &[u32]| {
            let mut t = String::from("version: 8.4.0\n");
            for &m in minors {
                t.push_str(&device(m));
            }
            t
        };
        let minors = |list: &[u32]| {
            parse(&text(list))
                .unwrap()
                .minors
                .iter()
                .map(|m| m.minor)
                .collect::<Vec<_>>()
        };
        assert_eq!(minors(&[0, 5, 3, 4]), [0, 5, 3, 4]);
        assert_eq!(minors(&[9, 1]), [9, 1]);
        assert_eq!(
            parse(&text(&[0, 5, 3, 5])).unwrap_err(),
            ProcDrbdError::DuplicateMinor { line: 5, minor: 5 }
        );
        assert_eq!(
            parse(&text(&[4, 4])).unwrap_err(),
            ProcDrbdError::DuplicateMinor { line: 3, minor: 4 }
        );
        assert_eq!(
            parse(&text(&[1, 2, 0, 7, 2])).unwrap_err(),
            ProcDrbdError::DuplicateMinor { line: 6, minor: 2 }
        );
    }

    #[test]
    fn speeds_are_read_or_rejected_as_before() {
        let speed = |s: &str| parse_finish(&format!("finish: 0:00:01 speed: {s} (1) K/sec"));
        assert_eq!(speed("18,712"), Ok((Duration::from_secs(1), Some(18_712))));
        assert_eq!(speed("1,2,3"), Ok((Duration::from_secs(1), Some(123))));
        assert_eq!(
            speed("18446744073709551615"),
            Ok((Duration::from_secs(1), Some(u64::MAX)))
        );
        assert_eq!(
            speed("18,446,744,073,709,551,616"),
            Err("speed \"18,446,744,073,709,551,616\" out of range".to_string())
        );
        assert_eq!(speed(","), Err("bad speed \",\"".to_string()));
        assert_eq!(speed("1x"), Err("bad speed \"1x\"".to_string()));
        assert_eq!(
            speed("99999999999999999999x"),
            Err("bad speed \"99999999999999999999x\"".to_string())
        );
    }

    #[test]
    fn text_fields_read_and_compare_as_strings() {
        let p = p84();
        let m = p.minor(0).unwrap();
        assert_eq!(m.cs.as_str(), "Connected");
        assert_eq!(&*m.cs, "Connected");
        assert_eq!(m.cs, Text::from("Connected"));
        assert_eq!(m.cs, String::from("Connected"));
        assert_eq!(m.cs.to_string(), "Connected");
        assert_eq!(format!("{:?}", m.flags), "\"r-----\"");
        assert!(Text::default().is_empty());
        // A minor outlives the text it was parsed from, and clones compare equal.
        let owned = {
            let text = PROC_84.to_string();
            parse(&text).unwrap().minors[1].clone()
        };
        assert_eq!(&owned, p.minor(1).unwrap());
        assert_eq!(owned.counter("oos"), Some(89620));
    }

    #[test]
    fn never_panics_on_any_prefix_or_mangling() {
        for text in [PROC_84, PROC_83, PROC_9] {
            for end in 0..=text.len() {
                if let Some(prefix) = text.get(..end) {
                    let _ = parse(prefix);
                }
            }
            let _ = parse(&text.replace(':', ""));
            let _ = parse(&text.replace('/', ""));
            let _ = parse(&text.replace(' ', ""));
            let _ = parse(&text.replace('%', "%%("));
        }
    }
}
