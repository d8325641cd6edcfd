//! `/proc/self/mountinfo`: the mount table, with device numbers.

use std::fmt;
use std::path::PathBuf;

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
