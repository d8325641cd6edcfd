//! Lookups over one observation, built once per plan so that planning N services costs
//! O(N log N), not O(N²): a node with 1,000 services has 1,000 mounts, and every service asks
//! "what is mounted here?" and "is this device mounted anywhere?".

use std::cell::OnceCell;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::manifest::{ContainerKind, ResourceId};
use crate::observe::{AppObservation, ContainerState, DevNum, DrbdResource, Mount, NodeState};

/// foldhash instead of std's SipHash: the keys are short paths and numbers, hashed about ten
/// times per service and plan; SipHash's cost was a fifth of a 10,000-service plan. foldhash
/// is seeded per process, so keys from the mount table cannot be chosen to collide.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A path as bytes. Paths are compared and hashed as bytes, not as [`Path`]s (which parse
/// their components for every comparison and hash, the largest single cost of a plan): the
/// manifest's paths are normal (the reader's `normal_path`: absolute, no `//`, `.` or trailing
/// `/`), as are the kernel's mount points, so for them byte equality is path equality.
fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// The minor of a `/dev/drbdN` path, written as [`crate::observe::drbd::device_path`] writes
/// it (no leading zero).
fn drbd_minor(path: &Path) -> Option<u32> {
    let digits = bytes(path).strip_prefix(b"/dev/drbd")?;
    match digits {
        [b'0'] => Some(0),
        [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(digits).ok()?.parse().ok()
        }
        _ => None,
    }
}

/// The mounts under one key, in mount order. Almost every key has one: it takes no allocation.
enum Mounts<'a> {
    One(&'a Mount),
    Many(Vec<&'a Mount>),
}

impl<'a> Mounts<'a> {
    fn push(&mut self, mount: &'a Mount) {
        match self {
            Mounts::One(first) => *self = Mounts::Many(vec![*first, mount]),
            Mounts::Many(all) => all.push(mount),
        }
    }

    fn as_slice(&self) -> &[&'a Mount] {
        match self {
            Mounts::One(one) => std::slice::from_ref(one),
            Mounts::Many(all) => all,
        }
    }
}

fn add<'a, K: std::hash::Hash + Eq>(map: &mut Map<K, Mounts<'a>>, key: K, mount: &'a Mount) {
    map.entry(key)
        .and_modify(|m| m.push(mount))
        .or_insert(Mounts::One(mount));
}

pub(super) struct NodeIndex<'a> {
    node: &'a NodeState,
    /// Mount points, each with its mounts in mount order (the last one is on top).
    by_point: Map<&'a [u8], Mounts<'a>>,
    /// Mount points in byte order, where the descendants of `/a` are the contiguous run of
    /// those starting with `/a/`; built on first use, since only stopping asks for sub-mounts.
    sorted_points: OnceCell<Vec<&'a [u8]>>,
    by_dev: Map<DevNum, Mounts<'a>>,
    by_source: Map<&'a str, Mounts<'a>>,
    /// The device numbers the observation found for the manifests' device paths.
    devices: Map<&'a [u8], DevNum>,
    /// DRBD device → the resource it belongs to, by minor (its `/dev/drbdN` path) and by
    /// device number (any other path to it).
    drbd_by_minor: Map<u32, &'a str>,
    drbd_by_dev: Map<DevNum, &'a str>,
    /// The observation's maps that grow with the services, by name: a service asks each of
    /// them a few times, and a lookup in a `BTreeMap` of 10,000 names is 13 string comparisons.
    drbd: Map<&'a str, &'a DrbdResource>,
    vz: Map<&'a str, ContainerState>,
    lxc: Map<&'a str, ContainerState>,
    apps: Map<&'a str, &'a std::collections::BTreeMap<ResourceId, AppObservation>>,
}

impl<'a> NodeIndex<'a> {
    pub(super) fn new(node: &'a NodeState) -> Self {
        let mounts = node.mounts.ok().map_or(&[][..], Vec::as_slice);
        let mut index = NodeIndex {
            node,
            by_point: Map::with_capacity_and_hasher(mounts.len(), Default::default()),
            sorted_points: OnceCell::new(),
            by_dev: Map::with_capacity_and_hasher(mounts.len(), Default::default()),
            by_source: Map::with_capacity_and_hasher(mounts.len(), Default::default()),
            devices: node.devices.iter().map(|(p, d)| (bytes(p), *d)).collect(),
            drbd_by_minor: Map::default(),
            drbd_by_dev: Map::default(),
            drbd: (node.drbd.ok().into_iter().flatten())
                .map(|(name, r)| (name.as_str(), r))
                .collect(),
            vz: (node.vz.ok().into_iter().flatten())
                .map(|(id, state)| (id.as_str(), *state))
                .collect(),
            lxc: (node.lxc.ok().into_iter().flatten())
                .map(|(id, state)| (id.as_str(), *state))
                .collect(),
            apps: node
                .apps
                .iter()
                .map(|(service, apps)| (service.as_str(), apps))
                .collect(),
        };
        for mount in mounts {
            add(&mut index.by_point, bytes(mount.mount_point()), mount);
            add(&mut index.by_dev, mount.dev, mount);
            add(&mut index.by_source, mount.source(), mount);
        }
        for (name, resource) in node.drbd.ok().into_iter().flatten() {
            for device in &resource.devices {
                index.drbd_by_minor.insert(device.minor, name.as_str());
            }
        }
        for (path, dev) in &node.devices {
            if let Some(name) = drbd_minor(path).and_then(|m| index.drbd_by_minor.get(&m)) {
                index.drbd_by_dev.insert(*dev, name);
            }
        }
        index
    }

    pub(super) fn node(&self) -> &'a NodeState {
        self.node
    }

    /// The DRBD resource `res` as observed, when DRBD could be observed and it is up.
    pub(super) fn drbd(&self, res: &str) -> Option<&'a DrbdResource> {
        self.drbd.get(res).copied()
    }

    /// The container's state when its tool could be observed; absent from the listing is
    /// [`ContainerState::Absent`].
    pub(super) fn container(&self, kind: &ContainerKind) -> Option<ContainerState> {
        let (observed, states) = match kind {
            ContainerKind::Vz(_) => (self.node.vz.ok(), &self.vz),
            ContainerKind::Lxc(_) => (self.node.lxc.ok(), &self.lxc),
        };
        observed?;
        Some(
            states
                .get(kind.id())
                .copied()
                .unwrap_or(ContainerState::Absent),
        )
    }

    /// What the observation says of one app of `service`.
    pub(super) fn app(&self, service: &str, rid: ResourceId) -> Option<&'a AppObservation> {
        self.apps.get(service).and_then(|apps| apps.get(&rid))
    }

    /// The device number observed for the device path `dev`, if it is a block device.
    fn device_number(&self, dev: &Path) -> Option<DevNum> {
        self.devices.get(bytes(dev)).copied()
    }

    /// The visible mount at `mnt`.
    pub(super) fn top_mount_at(&self, mnt: &Path) -> Option<&'a Mount> {
        self.stack_at(mnt).last().copied()
    }

    /// The mounts at `mnt`, bottom to top (the last one is visible).
    pub(super) fn stack_at(&self, mnt: &Path) -> &[&'a Mount] {
        self.by_point.get(bytes(mnt)).map_or(&[], Mounts::as_slice)
    }

    /// Every mount of the device `dev`: by source name, or by device number when `dev` is a
    /// block device the observation could stat.
    /// Borrowed when the device number adds no mount to those found by name (the usual case:
    /// a plan of 10,000 services to stop asks this for each).
    pub(super) fn mounts_of(&self, dev: &Path) -> std::borrow::Cow<'_, [&'a Mount]> {
        let by_name = dev
            .to_str()
            .and_then(|d| self.by_source.get(d))
            .map_or(&[][..], Mounts::as_slice);
        let by_number = self
            .device_number(dev)
            .and_then(|number| self.by_dev.get(&number))
            .map_or(&[][..], Mounts::as_slice);
        let mut more = by_number
            .iter()
            .filter(|mount| !by_name.iter().any(|m| std::ptr::eq(*m, **mount)))
            .peekable();
        if more.peek().is_none() {
            return std::borrow::Cow::Borrowed(by_name);
        }
        let mut found = by_name.to_vec();
        found.extend(more);
        std::borrow::Cow::Owned(found)
    }

    /// Whether `mount` is of the device `dev`.
    pub(super) fn is_device(&self, dev: &Path, mount: &Mount) -> bool {
        mount.source().as_bytes() == bytes(dev) || self.device_number(dev) == Some(mount.dev)
    }

    /// Mount points strictly below `mnt`, deepest first.
    pub(super) fn submounts_below(&self, mnt: &Path) -> Vec<&'a Path> {
        let sorted = self.sorted_points.get_or_init(|| {
            let mut points: Vec<&[u8]> = self.by_point.keys().copied().collect();
            points.sort_unstable();
            points
        });
        let mut prefix = bytes(mnt).to_vec();
        if prefix.last() != Some(&b'/') {
            prefix.push(b'/');
        }
        let first = sorted.partition_point(|p| *p < prefix.as_slice());
        let mut below: Vec<&Path> = sorted[first..]
            .iter()
            .take_while(|p| p.starts_with(&prefix))
            // `/` is its own prefix's only point that is not below it.
            .filter(|p| p.len() > prefix.len())
            .map(|p| Path::new(std::ffi::OsStr::from_bytes(p)))
            .collect();
        below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        below
    }

    /// The observed DRBD resource whose device `dev` is, by path or device number.
    pub(super) fn drbd_resource_of(&self, dev: &Path) -> Option<&'a str> {
        drbd_minor(dev)
            .and_then(|m| self.drbd_by_minor.get(&m))
            .or_else(|| {
                self.device_number(dev)
                    .and_then(|n| self.drbd_by_dev.get(&n))
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
            standalone_reported: None,
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

    #[test]
    fn the_root_is_not_below_itself_and_everything_else_is() {
        let node = node_with_mounts(&["/", "/a", "/a/b", "/b"]);
        let index = NodeIndex::new(&node);
        assert_eq!(
            index.submounts_below(Path::new("/")),
            [Path::new("/a/b"), Path::new("/a"), Path::new("/b")]
        );
        assert!(index.submounts_below(Path::new("/b")).is_empty());
    }

    #[test]
    fn drbd_minors_are_read_only_from_the_paths_drbd_device_path_writes() {
        for (path, minor) in [
            ("/dev/drbd0", Some(0)),
            ("/dev/drbd7", Some(7)),
            ("/dev/drbd1000", Some(1000)),
            ("/dev/drbd4294967295", Some(u32::MAX)),
            ("/dev/drbd4294967296", None),
            ("/dev/drbd01", None),
            ("/dev/drbd", None),
            ("/dev/drbd1p1", None),
            ("/dev/drbd/by-res/data/0", None),
            ("/dev/sdb1", None),
        ] {
            assert_eq!(drbd_minor(Path::new(path)), minor, "{path}");
            if let Some(minor) = minor {
                assert_eq!(crate::observe::drbd::device_path(minor), Path::new(path));
            }
        }
    }
}
