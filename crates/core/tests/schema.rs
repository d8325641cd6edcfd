//! The committed JSON Schemas (docs/*.schema.json), as an editor or a CI job uses them: the
//! shipped manifests are valid, an unknown key is not, and the schema never refuses what
//! `converge validate` accepts (it may accept what validate refuses: validate is stricter).

use std::fs;
use std::path::{Path, PathBuf};

use converge_core::config::Config;
use converge_core::manifest::parse_manifest;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn validator(file: &str) -> jsonschema::Validator {
    let path = repo().join("docs").join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn manifest_schema() -> jsonschema::Validator {
    validator("converge-manifest.schema.json")
}

/// A YAML document as a JSON Schema validator sees it.
fn json(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"))
}

/// What the schema says about `yaml`, one line per problem, each with where it is.
fn schema_errors(schema: &jsonschema::Validator, yaml: &str) -> Vec<String> {
    schema
        .iter_errors(&json(yaml))
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn yaml_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files_under(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

#[test]
fn every_shipped_manifest_is_valid_against_the_schema() {
    let schema = manifest_schema();
    let mut files = Vec::new();
    yaml_files_under(&repo().join("manifests"), &mut files);
    files.sort();
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(repo()).ok())
        .map(|f| f.display().to_string())
        .collect();
    assert_eq!(
        names,
        ["manifests/drbdsvc.yaml", "manifests/lxc/drbdsvc.yaml"]
    );
    for file in &files {
        let text = fs::read_to_string(file).expect("manifest");
        let errors = schema_errors(&schema, &text);
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
}

#[test]
fn unknown_keys_are_rejected_by_the_schema() {
    let schema = manifest_schema();
    let seed = fs::read_to_string(repo().join("manifests/drbdsvc.yaml")).expect("seed");

    let top = format!("{seed}colour: blue\n");
    let errors = schema_errors(&schema, &top);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("colour"), "{errors:#?}");

    let inside = seed.replace("    type: ext3\n", "    type: ext3\n    colour: blue\n");
    assert_ne!(inside, seed);
    let errors = schema_errors(&schema, &inside);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("/resources/fs#1: ") && errors[0].contains("colour"),
        "{errors:#?}"
    );

    // A key of another kind is unknown too: each id's kind selects its resource's keys.
    let other_kind = seed.replace("    type: ext3\n", "    type: ext3\n    ctid: 101\n");
    assert!(!schema_errors(&schema, &other_kind).is_empty());
}

/// Manifests `converge validate` accepts, each of which the schema must accept too.
const VALID: &[&str] = &[
    "service: s\nstate: down\n",
    "service: s\nstate: frozen\nresources:\n  # fs#0: {}\n",
    "service: s.1_a-b\nstate: up\nnode: n1\nrollback: false\nresources:\n  drbd#10: {res: r0, stop: down, allow_two_primaries: true, disabled: true, optional: true}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /a/, type: xfs, options: 'noatime,nodev', fsck: false, umount_kill: true, timeout: 1h 5m}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /a, type: ext4, fsck: true}\n  fs#1: {dev: /dev/b, mnt: /b, type: xfs, fsck: auto}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: vz, ctid: '101', start_timeout: 30s, stop_timeout: 2m}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: lxc, name: web-1}\n",
    "service: s\nstate: up\nresources:\n  app#0: {start: [/bin/svc, start], check: [/bin/svc, status], timeout: 5s, retcodes: '0:up 1:down 3:warn 4:n/a'}\n",
    "service: s\nstate: up\nresources:\n  app#0: {scripts: /etc/init.d}\n  app#1: {stop: [/bin/true]}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: vz, ctid: '0101'}\n",
    "service: s\nstate: up\nresources:\n  drbd#0: {res: '123'}\n  drbd#1: {res: all-data}\n",
    "service: s\nstate: up\nresources:\n  app#0: {start: [/bin/sh, -c, cd .., ../x]}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /a/..b/c.., type: ext4}\n",
];

/// Manifests both refuse: what JSON Schema can say, the schema says.
const INVALID: &[&str] = &[
    "state: up\n",
    "service: -s\nstate: up\n",
    "service: .s\nstate: up\n",
    "service: s\nstate: sideways\n",
    "service: s\nstate: up\nrollback: 1\n",
    "service: s\nstate: up\nresources:\n  disk#0: {}\n",
    "service: s\nstate: up\nresources:\n  fs#01: {dev: /dev/a, mnt: /a, type: ext4}\n",
    "service: s\nstate: up\nresources:\n  drbd#0: {res: -x}\n",
    "service: s\nstate: up\nresources:\n  drbd#0: {res: r, stop: primary}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: a, type: ext4}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, type: ext4}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /a, type: ext4, options: 'a b'}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /a, type: ext4, fsck: yes}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /a, type: xfs, fsck: true}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /a, type: ext4, timeout: 30}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: kvm}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: vz}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: vz, ctid: 0}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: vz, ctid: -101}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: vz, ctid: 101, name: a}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: lxc, name: a, ctid: 1}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: lxc}\n",
    "service: s\nstate: up\nresources:\n  app#0: {}\n",
    "service: s\nstate: up\nresources:\n  app#0: {scripts: /s, start: [/bin/a]}\n",
    "service: s\nstate: up\nresources:\n  app#0: {start: [bin/a]}\n",
    "service: s\nstate: up\nresources:\n  app#0: {stop: []}\n",
    "service: s\nstate: up\nresources:\n  app#0: {check: /bin/x}\n",
    "service: s\nstate: up\nresources:\n  app#0: {check: [/bin/sleep, 10]}\n",
    "service: s\nstate: up\nresources:\n  app#0: {stop: [/x], retcodes: '0:up 1:sideways'}\n",
    "service: s\nstate: up\nresources:\n  drbd#0: {res: all}\n",
    "service: s\nstate: up\nresources:\n  drbd#0: {res: minor-3}\n",
    "service: s\nstate: up\nresources:\n  container#0: {type: vz, ctid: '00'}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /srv/.., type: ext4}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/../dev/a, mnt: /srv, type: ext4}\n",
    "service: s\nstate: up\nresources:\n  app#0: {scripts: /svc/../etc}\n",
    "service: s\nstate: up\nresources:\n  app#0: {start: [/usr/../bin/sh]}\n",
];

/// Manifests only `converge validate` refuses: rules across resources or files, and limits a
/// pattern cannot express.
const ONLY_VALIDATE_REFUSES: &[&str] = &[
    "service: s\nstate: up\nresources:\n  container#0: {type: vz, ctid: 1}\n  container#1: {type: lxc, name: c}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /srv, type: ext4}\n  fs#1: {dev: /dev/b, mnt: /srv/, type: ext4}\n",
    "service: s\nstate: up\nresources:\n  drbd#0: {res: data}\n  drbd#1: {res: data}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /, type: ext4}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: /a, type: ext4, timeout: 0s}\n",
    "service: s\nstate: up\nresources:\n  app#0: {stop: [/x], retcodes: '0:up 0:down'}\n",
    "service: s\nstate: up\nresources:\n  fs#0: {dev: /dev/a, mnt: //, type: ext4}\n",
    "service: s\nstate: up\nresources:\n  app#0: {start: [/bin/echo, \"a\\0b\"]}\n",
];

fn validate(text: &str) -> Result<(), Vec<String>> {
    parse_manifest(Path::new("/m/t.yaml"), text)
        .map(drop)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

#[test]
fn the_schema_accepts_what_validate_accepts() {
    let schema = manifest_schema();
    for text in VALID {
        validate(text).unwrap_or_else(|e| panic!("validate refuses {text:?}: {e:#?}"));
        let errors = schema_errors(&schema, text);
        assert!(
            errors.is_empty(),
            "the schema refuses {text:?}: {errors:#?}"
        );
    }
}

#[test]
fn the_schema_refuses_what_it_can_express() {
    let schema = manifest_schema();
    for text in INVALID {
        assert!(validate(text).is_err(), "validate accepts {text:?}");
        assert!(
            !schema.is_valid(&json(text)),
            "the schema accepts {text:?}, which validate refuses"
        );
    }
}

/// The length limits, which the schema states as `maxLength`.
#[test]
fn the_schema_and_validate_agree_on_name_lengths() {
    let schema = manifest_schema();
    let service = |n: usize| format!("service: {}\nstate: up\n", "s".repeat(n));
    let res = |n: usize| {
        format!(
            "service: s\nstate: up\nresources:\n  drbd#0: {{res: {}}}\n",
            "r".repeat(n)
        )
    };
    for text in [service(128), res(127)] {
        validate(&text).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(schema_errors(&schema, &text).is_empty());
    }
    for text in [service(129), res(128)] {
        assert!(validate(&text).is_err());
        assert!(!schema.is_valid(&json(&text)));
    }
}

#[test]
fn validate_is_stricter_than_the_schema() {
    let schema = manifest_schema();
    for text in ONLY_VALIDATE_REFUSES {
        assert!(validate(text).is_err(), "validate accepts {text:?}");
        let errors = schema_errors(&schema, text);
        assert!(
            errors.is_empty(),
            "the schema now refuses {text:?} ({errors:#?}): move it to INVALID, and say so in docs/manifest.md"
        );
    }
}

#[test]
fn the_config_schema_matches_the_config_reader() {
    let schema = validator("converge-config.schema.json");
    let accepted = [
        "",
        "# only comments\n",
        "node: deb1\nmanifests: /m\nstate_dir: /s\nlog_dir: /l\nproc_drbd: /p\nmountinfo: /i\ndebounce: 50ms\nresync: 2m\nconcurrency: 3\nprune: true\nallow_empty: true\ncommands:\n  drbdadm: /opt/drbdadm\n  e2fsck: e2fsck.static\n  lxc-attach: /l/lxc-attach\n",
        "commands:\n",
    ];
    for text in accepted {
        Config::from_yaml(Path::new("/c.yaml"), text)
            .unwrap_or_else(|e| panic!("the reader refuses {text:?}: {e}"));
        let errors = schema_errors(&schema, text);
        assert!(
            errors.is_empty(),
            "the schema refuses {text:?}: {errors:#?}"
        );
    }
    let refused = [
        "statedir: /s\n",
        "commands:\n  lxc_start: /x\n",
        "manifests: etc/manifests\n",
        "node: -x\n",
        "concurrency: 0\n",
        "resync: 30\n",
        "commands:\n  mount: sbin/mount\n",
        "commands:\n  umount: umount -l\n",
        "commands:\n  drbdadm: ''\n",
        "- a\n",
    ];
    for text in refused {
        assert!(
            Config::from_yaml(Path::new("/c.yaml"), text).is_err(),
            "the reader accepts {text:?}"
        );
        assert!(
            !schema.is_valid(&json(text)),
            "the schema accepts {text:?}, which the reader refuses"
        );
    }
}
