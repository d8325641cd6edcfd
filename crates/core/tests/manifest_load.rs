//! Loading manifest directories end to end, with real files.

use std::fs;
use std::path::{Path, PathBuf};

use converge_core::manifest::{DesiredState, LoadErrors, load_dir, load_dir_lenient};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write test file");
    path
}

fn service(name: &str) -> String {
    format!(
        "service: {name}\nstate: up\nresources:\n  fs#0: {{dev: /dev/{name}, mnt: /{name}, type: ext4}}\n"
    )
}

#[test]
fn shipped_manifests_validate() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("manifests");
    let set = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = set.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["drbdsvc.opensvc.com"]);
    let svc = &set.services[0];
    assert_eq!(svc.state, DesiredState::Up);
    assert_eq!(svc.source, dir.join("drbdsvc.yaml"));
    assert_eq!(svc.resources.len(), 4);
    // The LXC variant lives in its own directory: one node runs one of the two.
    assert_eq!(set.skipped, [dir.join("lxc")]);
}

#[test]
fn every_error_of_every_file_is_listed_with_its_position() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    write(
        dir,
        "a.yaml",
        "service: a\nstate: up\nresources:\n  fs#1:\n    dev: /dev/drbd0\n    mnt: drbdsvc\n    type: ext3\n    colour: blue\n",
    );
    write(dir, "b.yml", "service: b\nstate: [up\n");
    write(dir, "c.yaml", "");
    write(
        dir,
        "d.yaml",
        "service: d\nstate: up\nresources:\n  drbd#0: {res: r0}\n  drbd#0: {res: r1}\n",
    );
    write(dir, "e.yaml", "service: e\nstate: maybe\nrollback: sure\n");
    write(dir, "good.yaml", &service("good"));

    let errors = load_dir(dir).expect_err("broken files");
    let d = dir.display();
    let expected = [
        format!("{d}/a.yaml:6:10: resources.fs#1.mnt: must be an absolute path, got \"drbdsvc\""),
        format!(
            "{d}/a.yaml:8:5: resources.fs#1.colour: unknown key `colour`; allowed keys: dev, mnt, type, options, fsck, umount_kill, timeout, disabled, optional"
        ),
        format!(
            "{d}/b.yml:3:1: invalid YAML: did not find expected ',' or ']', while parsing a flow sequence at line 2 column 8"
        ),
        format!(
            "{d}/c.yaml: empty manifest: expected a mapping with keys `service`, `state` and `resources`"
        ),
        format!(
            "{d}/d.yaml:5:3: resources.drbd#0: duplicate key `drbd#0`: each key may appear only once in a mapping"
        ),
        format!("{d}/e.yaml:2:8: state: expected one of up, down, frozen, got \"maybe\""),
        format!("{d}/e.yaml:3:11: rollback: invalid type: string \"sure\", expected a boolean"),
    ];
    assert_eq!(errors.to_string(), expected.join("\n"));

    // Lenient loading keeps what is valid.
    let (services, errors) = load_dir_lenient(dir);
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["good"]);
    assert_eq!(LoadErrors(errors).to_string(), expected.join("\n"));
}

#[test]
fn editor_and_other_files_are_ignored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    write(dir, "web.yaml", &service("web"));
    write(dir, "db.yml", &service("db"));
    let junk = [
        ".web.yaml.swp",
        "web.yaml~",
        ".#web.yaml",
        "#web.yaml#",
        ".hidden.yaml",
        "README",
        "notes.txt",
        "web.yaml.bak",
    ];
    for name in junk {
        write(dir, name, "this: [is not: valid");
    }
    fs::create_dir(dir.join("sub.yaml")).expect("mkdir");
    write(&dir.join("sub.yaml"), "nested.yaml", &service("nested"));

    let set = load_dir(dir).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = set.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    let mut skipped: Vec<String> = set
        .skipped
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    skipped.sort();
    let mut expected: Vec<&str> = junk.to_vec();
    expected.push("sub.yaml");
    expected.sort();
    assert_eq!(skipped, expected);
    // Named like a manifest, it was surely meant as one: skipped, but said.
    let warnings: Vec<String> = set.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [format!(
            "{}/sub.yaml: warning: skipped, not read as a manifest: it is a directory; a manifest is a regular file, or a symlink to one",
            dir.display()
        )]
    );
}

/// A regression: a directory (or a FIFO, a device, a symlink to one) named `*.yaml` in the
/// manifest directory was skipped without a word, so a manifest that was never read looked
/// loaded. It is now a warning, which `validate` prints (exit 0) and the daemon logs; the rest
/// of the directory loads as before.
#[test]
fn regression_an_entry_named_like_a_manifest_that_is_not_a_file_is_a_warning() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    write(dir, "web.yaml", &service("web"));
    fs::create_dir(dir.join("db.yaml")).expect("mkdir");
    fs::create_dir(dir.join("real")).expect("mkdir");
    std::os::unix::fs::symlink(dir.join("real"), dir.join("linked.yml")).expect("symlink");
    let set = load_dir(dir).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = set.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web"]);
    let warnings: Vec<String> = set.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0]
            .contains("/db.yaml: warning: skipped, not read as a manifest: it is a directory;"),
        "{warnings:#?}"
    );
    assert!(warnings[1].contains("/linked.yml: warning: skipped, not read as a manifest: it is a directory (through a symlink);"), "{warnings:#?}");
    let (services, errors) = load_dir_lenient(dir);
    assert_eq!((services.len(), errors.len()), (1, 0));
}

#[test]
fn duplicate_services_across_files_name_both_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let one = write(dir, "one.yaml", &service("shared"));
    let two = write(
        dir,
        "two.yaml",
        &format!("# the same name again\n{}", service("shared")),
    );
    write(dir, "other.yaml", &service("other"));

    let errors = load_dir(dir).expect_err("duplicate");
    assert_eq!(
        errors.to_string(),
        format!(
            "{}:1:10: service: duplicate service \"shared\": also defined in {}\n{}:2:10: service: duplicate service \"shared\": also defined in {}",
            one.display(),
            two.display(),
            two.display(),
            one.display()
        )
    );

    let (services, errors) = load_dir_lenient(dir);
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["other"]);
    assert_eq!(errors.len(), 2);
}

#[test]
fn missing_directory_and_unreadable_files_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nope");
    let errors = load_dir(&missing).expect_err("missing dir");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].file, missing);
    assert!(
        errors.to_string().starts_with(&format!(
            "{}: cannot read manifest directory: ",
            missing.display()
        )),
        "{errors}"
    );

    let dir = tmp.path().join("m");
    fs::create_dir(&dir).expect("mkdir");
    let dangling = dir.join("gone.yaml");
    std::os::unix::fs::symlink(tmp.path().join("absent"), &dangling).expect("symlink");
    let bad_utf8 = dir.join("latin1.yaml");
    fs::write(&bad_utf8, b"service: caf\xe9\nstate: up\n").expect("write");
    let errors = load_dir(&dir).expect_err("unreadable");
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{}: cannot read manifest: ", dangling.display())),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        format!("{}:1:13: not valid UTF-8 text", bad_utf8.display())
    );
}

#[test]
fn empty_directory_is_an_empty_set() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let set = load_dir(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(set.services.is_empty());
    assert!(set.skipped.is_empty());
}

#[test]
fn two_services_managing_one_drbd_resource_mount_point_or_container_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = |name: &str| {
        format!(
            "service: {name}\nstate: up\nresources:\n  drbd#0:\n    res: data\n  fs#1:\n    dev: /dev/drbd0\n    mnt: /srv/x\n    type: ext4\n  container#0:\n    type: vz\n    ctid: 101\n"
        )
    };
    let a = write(tmp.path(), "a.yaml", &body("a"));
    write(tmp.path(), "b.yaml", &body("b"));
    write(tmp.path(), "c.yaml", &service("c"));
    let (services, errors) = converge_core::manifest::load_dir_lenient(tmp.path());
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["c"], "neither conflicting service is in force");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 6, "{shown:#?}");
    let first = format!(
        "{}:5:10: resources.drbd#0.res: DRBD resource \"data\" is also managed by service b",
        a.display()
    );
    assert!(shown.iter().any(|e| e.starts_with(&first)), "{shown:#?}");
    assert!(
        shown.iter().any(|e| e.contains("mount point \"/srv/x\"")),
        "{shown:#?}"
    );
    assert!(
        shown.iter().any(|e| e.contains("OpenVZ container \"101\"")),
        "{shown:#?}"
    );
}
