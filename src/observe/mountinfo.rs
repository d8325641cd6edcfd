//! `/proc/self/mountinfo`: the mount table, with device numbers.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub mount_id: u32,
    pub parent_id: u32,
    /// Field 3: the device's major:minor (the reliable way to match a device).
    pub dev: DevNum,
    /// Root of the mount within the filesystem.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub options: String,
    pub optional_fields: Vec<String>,
    pub fstype: String,
    /// The source as given to mount(8), e.g. `/dev/drbd0`.
    pub source: String,
    pub super_options: String,
    /// The mount point was deleted (` (deleted)` suffix).
    pub deleted: bool,
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
    let mut mounts = Vec::with_capacity(text.bytes().filter(|&b| b == b'\n').count() + 1);
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        mounts.push(parse_line(index + 1, line)?);
    }
    Ok(mounts)
}

fn parse_line<'a>(line_no: usize, line: &'a str) -> Result<Mount, MountinfoError> {
    // The kernel separates fields with exactly one space and escapes blanks inside them, so a
    // plain split keeps an empty field (e.g. an empty source) in its place.
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
    let nonempty = |text: &'a str, field: &'static str| {
        if text.is_empty() {
            Err(bad(field, text))
        } else {
            Ok(text)
        }
    };

    let id_text = next("mount ID")?;
    let mount_id = id_text.parse().map_err(|_| bad("mount ID", id_text))?;
    let parent_text = next("parent ID")?;
    let parent_id = parent_text
        .parse()
        .map_err(|_| bad("parent ID", parent_text))?;
    let dev_text = next("major:minor")?;
    let dev = DevNum::parse(dev_text).ok_or_else(|| bad("major:minor", dev_text))?;
    let root = unescape_path(nonempty(next("root")?, "root")?);
    let raw_mount_point = nonempty(next("mount point")?, "mount point")?;
    let options = nonempty(next("mount options")?, "mount options")?.to_string();

    let mut optional_fields = Vec::new();
    loop {
        match next("\"-\" separator")? {
            "-" => break,
            tag => optional_fields.push(tag.to_string()),
        }
    }
    let fstype = unescape_string(nonempty(next("filesystem type")?, "filesystem type")?);
    // The source alone may be empty: mount(2) accepts an empty string there.
    let source = unescape_string(next("mount source")?);
    let super_options = nonempty(next("super options")?, "super options")?.to_string();
    // Anything after the super options would be a future kernel's addition: ignored, like
    // unknown optional fields.

    // d_path() appends " (deleted)" before the kernel escapes the space, so the raw field
    // ends in `\040(deleted)`.
    let (raw_mount_point, deleted) = match raw_mount_point.strip_suffix("\\040(deleted)") {
        Some(stripped) => (stripped, true),
        None => (raw_mount_point, false),
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

impl DevNum {
    /// Parses `major:minor` as mountinfo and sysfs write it.
    pub fn parse(text: &str) -> Option<DevNum> {
        let (major, minor) = text.split_once(':')?;
        Some(DevNum {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

/// Undoes the kernel's `\ooo` escaping of space, tab, newline and backslash. A backslash not
/// followed by three octal digits is kept as is: the kernel never writes one, and losing it would
/// only hide the oddity.
fn unescape_bytes(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(value) = bytes.get(i + 1..i + 4).and_then(octal_byte) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
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

fn unescape_path(raw: &str) -> PathBuf {
    if !raw.contains('\\') {
        return PathBuf::from(raw);
    }
    // An escape may spell bytes that are not UTF-8; paths are bytes on Linux, so keep them.
    PathBuf::from(OsString::from_vec(unescape_bytes(raw)))
}

fn unescape_string(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_string();
    }
    match String::from_utf8(unescape_bytes(raw)) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The mounts whose mount point is exactly `mount_point`, in table order: when several are
/// stacked on one point, the last one is the one visible there.
pub fn mounts_at<'a>(mounts: &'a [Mount], mount_point: &Path) -> impl Iterator<Item = &'a Mount> {
    mounts.iter().filter(move |m| m.mount_point == mount_point)
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
    use super::*;

    const TABLE: &str = "\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 22 0:35 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=814372k,mode=755,inode64
51 22 7:3 / /srv/loop rw,relatime shared:30 - ext4 /dev/loop3 rw
60 22 147:0 / /srv/data rw,noatime - ext4 /dev/drbd0 rw,data=ordered
";

    fn path(p: &str) -> PathBuf {
        PathBuf::from(p)
    }

    #[test]
    fn kernel_documented_example() {
        let mounts = parse(TABLE).unwrap();
        assert_eq!(mounts.len(), 5);
        assert_eq!(
            mounts[1],
            Mount {
                mount_id: 36,
                parent_id: 35,
                dev: DevNum {
                    major: 98,
                    minor: 0
                },
                root: path("/mnt1"),
                mount_point: path("/mnt2"),
                options: "rw,noatime".into(),
                optional_fields: vec!["master:1".into()],
                fstype: "ext3".into(),
                source: "/dev/root".into(),
                super_options: "rw,errors=continue".into(),
                deleted: false,
            }
        );
    }

    #[test]
    fn tmpfs_loop_and_drbd() {
        let mounts = parse(TABLE).unwrap();
        assert_eq!(mounts[2].fstype, "tmpfs");
        assert_eq!(mounts[2].source, "tmpfs");
        assert_eq!(mounts[2].super_options, "rw,size=814372k,mode=755,inode64");
        assert_eq!(mounts[3].dev, DevNum { major: 7, minor: 3 });
        assert_eq!(mounts[3].source, "/dev/loop3");
        assert_eq!(
            mounts[4].dev,
            DevNum {
                major: 147,
                minor: 0
            }
        );
        assert_eq!(mounts[4].mount_point, path("/srv/data"));
        assert!(mounts[4].optional_fields.is_empty());
        assert_eq!(mounts[4].dev.to_string(), "147:0");
    }

    #[test]
    fn several_optional_fields() {
        let line = "70 22 0:40 / /a rw shared:7 master:3 propagate_from:2 unbindable - tmpfs x rw";
        let m = &parse(line).unwrap()[0];
        assert_eq!(
            m.optional_fields,
            ["shared:7", "master:3", "propagate_from:2", "unbindable"]
        );
        assert_eq!(m.fstype, "tmpfs");
    }

    #[test]
    fn octal_escapes() {
        let line = r"80 22 8:3 /a\134b /mnt/with\040space\011tab\012nl rw - ext4 /dev/disk\040x rw";
        let m = &parse(line).unwrap()[0];
        assert_eq!(m.root, path("/a\\b"));
        assert_eq!(m.mount_point, path("/mnt/with space\ttab\nnl"));
        assert_eq!(m.source, "/dev/disk x");
        assert!(!m.deleted);
    }

    #[test]
    fn escape_of_non_utf8_byte_is_kept_in_paths() {
        use std::os::unix::ffi::OsStrExt;
        let m = &parse(r"81 22 8:3 / /mnt/\377 rw - ext4 /dev/sdb rw").unwrap()[0];
        assert_eq!(m.mount_point.as_os_str().as_bytes(), b"/mnt/\xff");
    }

    #[test]
    fn malformed_escape_is_kept_literally() {
        let m = &parse(r"82 22 8:3 / /mnt/a\9b\04 rw - ext4 /dev/sdb rw").unwrap()[0];
        assert_eq!(m.mount_point, path(r"/mnt/a\9b\04"));
    }

    #[test]
    fn deleted_mount_point() {
        let line = r"90 22 147:1 / /srv/gone\040(deleted) rw - ext4 /dev/drbd1 rw";
        let m = &parse(line).unwrap()[0];
        assert!(m.deleted);
        assert_eq!(m.mount_point, path("/srv/gone"));

        let line = r"91 22 147:1 / /srv/my\040dir\040(deleted) rw - ext4 /dev/drbd1 rw";
        let m = &parse(line).unwrap()[0];
        assert!(m.deleted);
        assert_eq!(m.mount_point, path("/srv/my dir"));
    }

    #[test]
    fn empty_source_keeps_field_positions() {
        let m = &parse("92 22 0:50 / /x rw - tmpfs  rw").unwrap()[0];
        assert_eq!(m.source, "");
        assert_eq!(m.super_options, "rw");
    }

    #[test]
    fn blank_lines_and_crlf_are_tolerated() {
        let mounts = parse("\n22 1 8:2 / / rw - ext4 /dev/sda2 rw\r\n\n").unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].super_options, "rw");
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
        assert_eq!(mounts[9_999].mount_point, path("/srv/svc9999/data dir"));
        // Generous: unoptimised test builds are several times slower than the benchmark target.
        assert!(elapsed.as_millis() < 500, "took {elapsed:?}");
    }
}
