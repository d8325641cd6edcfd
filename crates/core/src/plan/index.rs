//! Lookups over one observation, built once per plan so that planning N services costs
//! O(N log N), not O(N²): a node with 1,000 services has 1,000 mounts, and every service asks
//! "what is mounted here?" and "is this device mounted anywhere?".

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::path::Path;

use crate::observe::drbd::device_path;
use crate::observe::{DevNum, Mount, NodeState};

pub(super) struct NodeIndex<'a> {
    node: &'a NodeState,
    /// Mount points, each with its mounts in mount order (the last one is on top).
    by_point: HashMap<&'a Path, Vec<&'a Mount>>,
    /// Mount points in path order, where the descendants of a path follow it contiguously;
    /// built on first use, since only stopping asks for sub-mounts.
    sorted_points: OnceCell<BTreeSet<&'a Path>>,
    by_dev: HashMap<DevNum, Vec<&'a Mount>>,
    by_source: HashMap<&'a str, Vec<&'a Mount>>,
    /// DRBD device → the resource it belongs to, by device number and by `/dev/drbdN` path.
    drbd_by_dev: HashMap<DevNum, &'a str>,
    drbd_by_path: HashMap<std::path::PathBuf, &'a str>,
}

impl<'a> NodeIndex<'a> {
    pub(super) fn new(node: &'a NodeState) -> Self {
        let mut index = NodeIndex {
            node,
            by_point: HashMap::new(),
            sorted_points: OnceCell::new(),
            by_dev: HashMap::new(),
            by_source: HashMap::new(),
            drbd_by_dev: HashMap::new(),
            drbd_by_path: HashMap::new(),
        };
        for mount in node.mounts.ok().into_iter().flatten() {
            index
                .by_point
                .entry(mount.mount_point())
                .or_default()
                .push(mount);
            index.by_dev.entry(mount.dev).or_default().push(mount);
            index
                .by_source
                .entry(mount.source())
                .or_default()
                .push(mount);
        }
        for (name, resource) in node.drbd.ok().into_iter().flatten() {
            for device in &resource.devices {
                let path = device_path(device.minor);
                if let Some(dev) = node.devices.get(&path) {
                    index.drbd_by_dev.insert(*dev, name.as_str());
                }
                index.drbd_by_path.insert(path, name.as_str());
            }
        }
        index
    }

    pub(super) fn node(&self) -> &'a NodeState {
        self.node
    }

    /// The visible mount at `mnt`.
    pub(super) fn top_mount_at(&self, mnt: &Path) -> Option<&'a Mount> {
        self.by_point.get(mnt).and_then(|m| m.last().copied())
    }

    /// The mounts at `mnt`, bottom to top (the last one is visible).
    pub(super) fn stack_at(&self, mnt: &Path) -> &[&'a Mount] {
        self.by_point.get(mnt).map_or(&[], Vec::as_slice)
    }

    /// Every mount of the device `dev`: by source name, or by device number when `dev` is a
    /// block device the observation could stat.
    pub(super) fn mounts_of(&self, dev: &Path) -> Vec<&'a Mount> {
        let mut found: Vec<&Mount> = dev
            .to_str()
            .and_then(|d| self.by_source.get(d))
            .cloned()
            .unwrap_or_default();
        if let Some(number) = self.node.devices.get(dev) {
            for mount in self.by_dev.get(number).into_iter().flatten() {
                if !found.iter().any(|m| std::ptr::eq(*m, *mount)) {
                    found.push(mount);
                }
            }
        }
        found
    }

    /// Whether `mount` is of the device `dev`.
    pub(super) fn is_device(&self, dev: &Path, mount: &Mount) -> bool {
        Path::new(mount.source()) == dev || self.node.devices.get(dev) == Some(&mount.dev)
    }

    /// Mount points strictly below `mnt`, deepest first.
    pub(super) fn submounts_below(&self, mnt: &Path) -> Vec<&'a Path> {
        let sorted = self
            .sorted_points
            .get_or_init(|| self.by_point.keys().copied().collect());
        let mut below: Vec<&Path> = sorted
            .range::<Path, _>((Bound::Excluded(mnt), Bound::Unbounded))
            .copied()
            .take_while(|point| point.starts_with(mnt))
            .collect();
        below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        below
    }

    /// The observed DRBD resource whose device `dev` is, by path or device number.
    pub(super) fn drbd_resource_of(&self, dev: &Path) -> Option<&'a str> {
        self.drbd_by_path
            .get(dev)
            .or_else(|| {
                self.node
                    .devices
                    .get(dev)
                    .and_then(|n| self.drbd_by_dev.get(n))
            })
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::observe::Observed;

    fn node_with_mounts(points: &[&str]) -> NodeState {
        let mounts = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Mount::new(crate::observe::mountinfo::MountFields {
                    mount_id: i as u32 + 10,
                    parent_id: 1,
                    dev: DevNum {
                        major: 0,
                        minor: i as u32,
                    },
                    root: Path::new("/"),
                    mount_point: Path::new(p),
                    options: "rw",
                    optional_fields: &[],
                    fstype: "tmpfs",
                    source: "tmpfs",
                    super_options: "rw",
                    deleted: false,
                })
            })
            .collect();
        NodeState {
            node: "n".into(),
            drbd: Observed::Ok(BTreeMap::new()),
            mounts: Observed::Ok(mounts),
            devices: BTreeMap::new(),
            dirs: Default::default(),
            vz: Observed::Ok(BTreeMap::new()),
            lxc: Observed::Ok(BTreeMap::new()),
            apps: BTreeMap::new(),
            scripts: BTreeMap::new(),
            quorum_frozen: BTreeMap::new(),
            split_brains: Default::default(),
            drbd_files: Default::default(),
            drbd_adjust: Default::default(),
            drbd_drift: Default::default(),
            drbd_configured: None,
            drbd_options: Default::default(),
        }
    }

    #[test]
    fn submounts_are_descendants_deepest_first_not_siblings_sharing_a_prefix() {
        let node =
            node_with_mounts(&["/", "/a", "/a/b", "/a/b/c", "/a-x", "/a.x/y", "/ab", "/a/z"]);
        let index = NodeIndex::new(&node);
        assert_eq!(
            index.submounts_below(Path::new("/a")),
            [Path::new("/a/b/c"), Path::new("/a/b"), Path::new("/a/z")]
        );
        assert!(index.submounts_below(Path::new("/ab")).is_empty());
        assert_eq!(
            index.top_mount_at(Path::new("/a-x")).map(|m| m.dev.minor),
            Some(4)
        );
    }
}
