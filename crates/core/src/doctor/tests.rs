use std::path::Path;

use super::*;
use crate::manifest::load::parse_manifest;
use crate::observe::drbd_conf::{self, QuorumPolicy};

fn service(name: &str, yaml_resources: &str) -> Service {
    let text = format!("service: {name}\nstate: up\nresources:\n{yaml_resources}");
    parse_manifest(Path::new(&format!("/m/{name}.yaml")), &text).expect("valid manifest")
}

fn failover_service(name: &str, on_quorum_loss: &str) -> Service {
    let text = format!(
        "service: {name}\nstate: up\nnodes: [deb1, deb2]\nfailover: auto\non_quorum_loss: {on_quorum_loss}\nresources:\n  drbd#0:\n    res: data\n"
    );
    parse_manifest(Path::new(&format!("/m/{name}.yaml")), &text).expect("valid manifest")
}

fn severities(findings: &[Finding]) -> Vec<Severity> {
    findings.iter().map(|f| f.severity).collect()
}

#[test]
fn exit_code_is_the_worst_severity() {
    let f = |s| Finding {
        severity: s,
        area: Area::Drbd,
        subject: String::new(),
        message: String::new(),
        fix: None,
    };
    let table: [(&[Severity], u8); 6] = [
        (&[], 0),
        (&[Severity::Ok, Severity::Skipped], 0),
        (&[Severity::Ok, Severity::Warn], 2),
        (&[Severity::Warn, Severity::Error, Severity::Ok], 1),
        (&[Severity::Error], 1),
        (&[Severity::Skipped, Severity::Warn], 2),
    ];
    for (given, code) in table {
        let findings: Vec<Finding> = given.iter().map(|&s| f(s)).collect();
        assert_eq!(exit_code(&findings), code, "{given:?}");
        let report = Report::new(findings);
        assert_eq!(report.exit_code, code);
        assert_eq!(
            report.summary.errors
                + report.summary.warnings
                + report.summary.ok
                + report.summary.skipped,
            given.len()
        );
    }
}

#[test]
fn report_groups_by_area_keeping_the_order_within_one() {
    let report = Report::new(vec![
        Finding::ok(Area::Fs, "a", "1"),
        Finding::ok(Area::Drbd, "b", "2"),
        Finding::ok(Area::Fs, "c", "3"),
        Finding::ok(Area::Converge, "d", "4"),
    ]);
    let order: Vec<&str> = report.findings.iter().map(|f| f.subject.as_str()).collect();
    assert_eq!(order, ["d", "b", "a", "c"]);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["findings"][0]["severity"], "ok");
    assert_eq!(json["findings"][0]["area"], "converge");
    assert!(json["findings"][0]["fix"].is_null());
    assert_eq!(json["summary"]["ok"], 4);
    assert_eq!(json["exit_code"], 0);
}

#[test]
fn split_fix_ignores_semicolons_quoted_in_backticks() {
    let table = [
        ("a; b", ("a", "b")),
        (
            "two nodes; add a tiebreaker (`on tb { volume 0 { disk none; } }`, see x)",
            (
                "two nodes",
                "add a tiebreaker (`on tb { volume 0 { disk none; } }`, see x)",
            ),
        ),
        ("x; y; set `a; b`", ("x; y", "set `a; b`")),
    ];
    for (text, (message, fix)) in table {
        assert_eq!(
            split_fix(text),
            (message.to_string(), fix.to_string()),
            "{text}"
        );
    }
    let (message, fix) = split_fix("no fix here");
    assert_eq!(message, "no fix here");
    assert!(fix.contains("drbdadm adjust"));
}

#[test]
fn tool_message_drops_the_modinfo_noise() {
    let stderr = "sh: 1: modinfo: not found\n/x/bad.res:2: Parse error: ';' expected,\n\tbut got '}' (TK 125)\nsh: 1: modinfo: not found\n";
    assert_eq!(
        tool_message(stderr),
        "/x/bad.res:2: Parse error: ';' expected, but got '}' (TK 125)"
    );
    // With kmod installed, modinfo itself says the module is missing.
    let stderr = "modinfo: ERROR: Module drbd not found.\n/x/bad.res:2: Parse error\n";
    assert_eq!(tool_message(stderr), "/x/bad.res:2: Parse error");
}

#[test]
fn drbdadm_version_lines() {
    let real = "DRBDADM_BUILDTAG=GIT-hash:\\ 409097fe\nDRBDADM_API_VERSION=2\nDRBD_KERNEL_VERSION_CODE=0x000000\nDRBD_KERNEL_VERSION=0\nDRBDADM_VERSION_CODE=0x091600\nDRBDADM_VERSION=9.22.0\n";
    assert_eq!(
        parse_drbdadm_version(real),
        Some(DrbdadmVersion {
            utils: "9.22.0".into(),
            kernel: None
        })
    );
    let loaded = "DRBD_KERNEL_VERSION=9.2.8\nDRBDADM_VERSION=9.27.0\n";
    assert_eq!(
        parse_drbdadm_version(loaded).and_then(|v| v.kernel),
        Some("9.2.8".into())
    );
    assert_eq!(parse_drbdadm_version("nothing\n"), None);
}

fn loaded(raw: &str) -> ProcDrbdFact {
    let (major, minor, patch) = version_triple(raw).expect("version");
    ProcDrbdFact::Loaded(DrbdVersion {
        major,
        minor,
        patch,
        api: None,
        proto: None,
        raw: raw.into(),
    })
}

fn utils(utils: &str, kernel: Option<&str>) -> UtilsFact {
    UtilsFact::Version(DrbdadmVersion {
        utils: utils.into(),
        kernel: kernel.map(str::to_string),
    })
}

#[test]
fn drbd_module_and_userland_rules() {
    use Severity::*;
    let missing_tool = UtilsFact::NotInstalled("drbdadm not found".into());
    let table: Vec<(ProcDrbdFact, UtilsFact, bool, Vec<Severity>)> = vec![
        (
            loaded("9.2.8"),
            utils("9.22.0", Some("9.2.8")),
            true,
            vec![Ok, Ok],
        ),
        // drbd-utils 9 drives an 8.4 module.
        (loaded("8.4.11"), utils("9.22.0", None), true, vec![Ok, Ok]),
        (
            loaded("9.2.8"),
            utils("8.9.10", None),
            true,
            vec![Ok, Error],
        ),
        // Upgraded on disk, not reloaded.
        (
            loaded("9.2.8-1"),
            utils("9.27.0", Some("9.2.10")),
            true,
            vec![Ok, Ok, Warn],
        ),
        (
            ProcDrbdFact::Missing,
            missing_tool.clone(),
            false,
            vec![Skipped, Skipped],
        ),
        (
            ProcDrbdFact::Missing,
            missing_tool,
            true,
            vec![Error, Error],
        ),
        (
            ProcDrbdFact::Unreadable("denied".into()),
            UtilsFact::Failed("exited 20".into()),
            true,
            vec![Error, Error],
        ),
    ];
    for (proc, tools, in_use, want) in table {
        let got = drbd_versions(Path::new("/proc/drbd"), &proc, &tools, in_use);
        assert_eq!(severities(&got), want, "{proc:?} {tools:?} {in_use}");
        assert!(
            got.iter()
                .all(|f| f.severity < Severity::Warn || f.fix.is_some()),
            "{got:?}"
        );
    }
}

fn config(options: &str, hosts: &[(&str, bool)]) -> ResourceConfig {
    let mut text = String::from("resource data {\n  options {\n");
    text.push_str(options);
    text.push_str("  }\n");
    for (host, diskless) in hosts {
        if *diskless {
            text.push_str(&format!(
                "  on {host} {{\n    volume 0 {{\n      disk none;\n    }}\n  }}\n"
            ));
        } else {
            text.push_str(&format!("  on {host} {{\n    node-id 0;\n  }}\n"));
        }
    }
    text.push_str("}\n");
    drbd_conf::parse_dump(&text)
        .expect("parses")
        .remove("data")
        .expect("data")
}

fn details(on_no_data: Option<&str>) -> DumpDetails {
    DumpDetails {
        on_no_data_accessible: on_no_data.map(str::to_string),
        ..DumpDetails::default()
    }
}

#[test]
fn resource_options_rules() {
    use Severity::*;
    let two = [("deb1", false), ("deb2", false)];
    let three = [("deb1", false), ("deb2", false), ("tb", true)];
    let pinned = ResourceUse {
        res: "data",
        promoted_by: vec!["web"],
        failovers: vec![],
    };
    let nobody = ResourceUse {
        res: "data",
        promoted_by: vec![],
        failovers: vec![],
    };
    /// (usage, configuration, on-no-data-accessible, severities, a message's text)
    type Case<'a> = (
        &'a ResourceUse<'a>,
        ResourceConfig,
        Option<&'a str>,
        Vec<Severity>,
        &'a str,
    );
    let table: Vec<Case> = vec![
        (
            &pinned,
            config("    auto-promote no;\n", &two),
            None,
            vec![Ok],
            "auto-promote no",
        ),
        (
            &pinned,
            config("", &two),
            None,
            vec![Warn],
            "auto-promote yes (DRBD 9's default)",
        ),
        (
            &pinned,
            config("    auto-promote yes;\n", &two),
            None,
            vec![Warn],
            "auto-promote yes:",
        ),
        // Not promoted here: auto-promote is not this node's business.
        (&nobody, config("", &two), None, vec![], ""),
        (
            &pinned,
            config(
                "    auto-promote no;\n    quorum majority;\n    on-no-quorum io-error;\n",
                &three,
            ),
            Some("io-error"),
            vec![Ok, Ok],
            "agree (io-error)",
        ),
        (
            &pinned,
            config(
                "    auto-promote no;\n    quorum majority;\n    on-no-quorum io-error;\n",
                &three,
            ),
            None,
            vec![Ok, Ok],
            "agree (io-error)",
        ),
        (
            &pinned,
            config(
                "    auto-promote no;\n    quorum majority;\n    on-no-quorum io-error;\n",
                &three,
            ),
            Some("suspend-io"),
            vec![Ok, Warn],
            "on-no-quorum io-error but on-no-data-accessible suspend-io",
        ),
        (
            &pinned,
            config("    auto-promote no;\n    quorum majority;\n", &three),
            None,
            vec![Ok, Warn],
            "on-no-quorum suspend-io (DRBD's default) but on-no-data-accessible io-error (DRBD's default)",
        ),
    ];
    for (usage, config, on_no_data, want, text) in table {
        let got = drbd_resource(usage, &Result::Ok((config.clone(), details(on_no_data))));
        assert_eq!(severities(&got), want, "{config:?} {on_no_data:?}: {got:?}");
        assert!(
            got.iter().any(|f| f.message.contains(text)) || want.is_empty(),
            "{text}: {got:?}"
        );
        for f in got.iter().filter(|f| f.severity == Warn) {
            assert!(
                f.fix
                    .as_deref()
                    .is_some_and(|x| x.contains("drbdadm adjust data")),
                "{f:?}"
            );
        }
    }
    let unreadable = drbd_resource(&pinned, &Err("'data' not defined".into()));
    assert_eq!(severities(&unreadable), [Error]);
    assert!(
        unreadable[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("drbdadm dump data"))
    );
}

#[test]
fn failover_services_are_judged_by_placement_s_check() {
    use Severity::*;
    let stop = failover_service("web", "stop");
    let Some(failover) = stop.failover() else {
        panic!("failover");
    };
    let usage = ResourceUse {
        res: "data",
        promoted_by: vec!["web"],
        failovers: vec![("web", failover)],
    };
    // Two nodes and no third: an error, with the fix apart.
    let two = config(
        "    auto-promote no;\n    quorum majority;\n    on-no-quorum io-error;\n",
        &[("deb1", false), ("deb2", false)],
    );
    let got = drbd_resource(&usage, &Result::Ok((two, details(Some("io-error")))));
    assert_eq!(severities(&got), [Error, Ok], "{got:?}");
    assert!(
        got[0].message.contains("has two nodes and no third"),
        "{got:?}"
    );
    assert!(
        got[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.starts_with("add a third node")),
        "{got:?}"
    );
    // A tiebreaker and the options failover wants: all good.
    let three = config(
        "    auto-promote no;\n    quorum majority;\n    on-no-quorum io-error;\n",
        &[("deb1", false), ("deb2", false), ("tb", true)],
    );
    assert_eq!(three.options.quorum, QuorumPolicy::Majority);
    let got = drbd_resource(&usage, &Result::Ok((three, details(Some("io-error")))));
    assert_eq!(severities(&got), [Ok, Ok], "{got:?}");
    // auto-promote is said once, by the failover check.
    let yes = config(
        "    quorum majority;\n    on-no-quorum io-error;\n",
        &[("deb1", false), ("deb2", false), ("tb", true)],
    );
    let got = drbd_resource(&usage, &Result::Ok((yes, details(Some("io-error")))));
    assert_eq!(severities(&got), [Warn, Ok], "{got:?}");
    assert!(got[0].message.contains("auto-promote"), "{got:?}");
    assert!(
        got[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("set `auto-promote no`"))
    );
}

#[test]
fn res_file_rules() {
    let fact = |parses: Result<(), String>, names: Result<Vec<String>, String>, named: &[&str]| {
        ResFileFact {
            path: "/etc/drbd.d/data.res".into(),
            parses,
            this_host: names,
            named_by: named.iter().map(|s| s.to_string()).collect(),
        }
    };
    let table = [
        (
            fact(Ok(()), Ok(vec!["data".into()]), &[]),
            Severity::Ok,
            "defines data for this host",
        ),
        (
            fact(Err("x.res:2: Parse error".into()), Ok(vec![]), &[]),
            Severity::Error,
            "cannot parse it: x.res:2: Parse error",
        ),
        (
            fact(Ok(()), Ok(vec![]), &[]),
            Severity::Warn,
            "`on deb1` section",
        ),
        (
            fact(Ok(()), Ok(vec![]), &["web"]),
            Severity::Error,
            "(named by web)",
        ),
        (
            fact(Ok(()), Err("exited 10".into()), &[]),
            Severity::Error,
            "cannot list",
        ),
    ];
    for (fact, severity, text) in table {
        let got = res_file("deb1", &fact);
        assert_eq!(got.severity, severity, "{got:?}");
        assert!(got.message.contains(text), "{text}: {got:?}");
    }
}

#[test]
fn node_name_against_uname() {
    assert_eq!(node_name("deb1", Some("deb1")).severity, Severity::Ok);
    assert_eq!(node_name("deb1", None).severity, Severity::Ok);
    let other = node_name("deb1", Some("deb2"));
    assert_eq!(other.severity, Severity::Warn);
    assert!(
        other
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("node: deb2"))
    );
}

const LVM_CONF: &str = r#"# This is an example configuration file for the LVM2 system.
config {
	checks = 1
	abort_on_errors = 0
}
devices {
	dir = "/dev"
	scan = [ "/dev" ]
	# filter = [ "a|.*|" ]
	global_filter = [ "r|^/dev/drbd.*|", # DRBD devices
	                  "a|.*|" ]
	write_cache_state = 0
	sysfs_scan = 1
	types = [ "fd", 16 ]
}
log {
	verbose = 0
	prefix = "  # not a comment"
	activation {
		level = 0.5
	}
}
"#;

#[test]
fn lvm_conf_sections_values_arrays_and_comments() {
    let conf = parse_lvm_conf(LVM_CONF).expect("parses");
    let v = |k: &str| conf.values.get(k).cloned();
    assert_eq!(
        v("devices/write_cache_state"),
        Some(LvmValue::Number("0".into()))
    );
    assert_eq!(v("devices/dir"), Some(LvmValue::Str("/dev".into())));
    assert_eq!(
        v("devices/global_filter"),
        Some(LvmValue::Array(vec![
            "r|^/dev/drbd.*|".into(),
            "a|.*|".into()
        ]))
    );
    assert_eq!(
        v("devices/types"),
        Some(LvmValue::Array(vec!["fd".into(), "16".into()]))
    );
    assert_eq!(v("devices/filter"), None, "commented out");
    assert_eq!(
        v("log/prefix"),
        Some(LvmValue::Str("  # not a comment".into()))
    );
    assert_eq!(
        v("log/activation/level"),
        Some(LvmValue::Number("0.5".into()))
    );
    assert!(parse_lvm_conf("").expect("empty").values.is_empty());
    let broken = [
        ("devices {\n write_cache_state = 0\n", "not closed"),
        (
            "devices {\n filter = [ \"a|.*|\"\n}\n",
            "not closed with `]`",
        ),
        ("devices {\n filter\n}\n", "expected `=` or `{`"),
        ("}\n", "closes no section"),
        ("devices {\n dir = \"/dev\n}\n", "string is not closed"),
    ];
    for (text, message) in broken {
        let err = parse_lvm_conf(text).expect_err(text);
        assert!(err.to_string().contains(message), "{text}: {err}");
    }
}

#[test]
fn lvm_filter_rule_per_device_name() {
    let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let names = ["/dev/drbd0", "/dev/drbd/by-res/data/0"];
    let table: [(&[&str], Result<bool, ()>); 7] = [
        (&["r|^/dev/drbd.*|", "a|.*|"], Ok(true)),
        (&["r|/dev/drbd|"], Ok(true)),
        (&["a|.*|", "r|/dev/drbd|"], Ok(false)),
        (&["a|^/dev/sd|", "r|.*|"], Ok(true)),
        (&[], Ok(false)),
        // Rejects the short name only: the by-res name is still accepted.
        (&["r|^/dev/drbd[0-9]+$|", "a|.*|"], Ok(false)),
        (&["x|/dev|"], Err(())),
    ];
    for (patterns, want) in table {
        let got = lvm_filter_rejects(&p(patterns), &names).map_err(|_| ());
        assert_eq!(got, want, "{patterns:?}");
    }
}

#[test]
fn lvm_volume_names() {
    for (disk, lvm) in [
        ("/dev/vg0/data", true),
        ("/dev/mapper/vg0-data", true),
        ("/dev/sdb1", false),
        ("/dev/disk/by-id/x", false),
        ("/dev/drbd/by-res", false),
        ("/dev/loop3", false),
        ("/var/x/y", false),
    ] {
        assert_eq!(is_lvm_volume(disk), lvm, "{disk}");
    }
}

#[test]
fn lvm_rules() {
    use Severity::*;
    let conf = |text: &str| LvmConfFact::Read(parse_lvm_conf(text));
    let on_lvm = vec![("data".to_string(), "/dev/vg0/data".to_string())];
    let good = conf(LVM_CONF);
    let no_filter = conf("devices {\n write_cache_state = 0\n}\n");
    let cache_on = conf("devices {\n write_cache_state = 1\n}\n");
    let unset = conf("devices {\n}\n");
    let broken = LvmConfFact::Read(Err(LvmConfError {
        line: 1,
        message: "x".into(),
    }));
    /// (lvm.conf, the cache file exists, DRBD disks on LVM, severities)
    type Case<'a> = (&'a LvmConfFact, bool, &'a [(String, String)], Vec<Severity>);
    let table: Vec<Case> = vec![
        (&good, false, &on_lvm, vec![Ok, Ok]),
        (&good, false, &[], vec![Ok]),
        (&no_filter, false, &on_lvm, vec![Ok, Warn]),
        (&cache_on, false, &[], vec![Warn]),
        (&cache_on, true, &[], vec![Warn, Warn]),
        (&unset, false, &[], vec![Ok]),
        (&unset, true, &[], vec![Warn, Warn]),
        (&LvmConfFact::Missing, false, &on_lvm, vec![Skipped]),
        (&broken, false, &[], vec![Error]),
    ];
    for (fact, cache, disks, want) in table {
        let got = lvm(
            Path::new("/etc/lvm/lvm.conf"),
            Path::new("/etc/lvm/cache/.cache"),
            fact,
            cache,
            disks,
        );
        assert_eq!(
            severities(&got),
            want,
            "{fact:?} {cache} {disks:?}: {got:?}"
        );
    }
    let warned = lvm(
        Path::new("/etc/lvm/lvm.conf"),
        Path::new("/etc/lvm/cache/.cache"),
        &no_filter,
        false,
        &on_lvm,
    );
    assert!(
        warned[1].message.contains("/dev/vg0/data (resource data)"),
        "{warned:?}"
    );
    assert!(
        warned[1]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("global_filter"))
    );
}

#[test]
fn fs_type_rules() {
    let fact = |in_kernel, helper: Option<&str>, module: Option<&str>| FsTypeFact {
        fstype: "xfs".into(),
        in_kernel,
        helper: helper.map(PathBuf::from),
        module: module.map(PathBuf::from),
        used_by: vec!["web".into()],
    };
    let table = [
        (fact(true, None, None), Severity::Ok, "supported"),
        (
            fact(false, Some("/sbin/mount.xfs"), None),
            Severity::Ok,
            "mount.xfs",
        ),
        (
            fact(false, None, Some("/lib/modules/6/kernel/fs/xfs/xfs.ko")),
            Severity::Warn,
            "not loaded; mount will try to load the module",
        ),
        (fact(false, None, None), Severity::Error, "does not support"),
    ];
    for (fact, severity, text) in table {
        let got = fs_type(&fact);
        assert_eq!(got.severity, severity, "{got:?}");
        assert!(got.message.contains(text), "{got:?}");
    }
    assert_eq!(
        fsck("e2fsck", Some(Path::new("/sbin/e2fsck")), &[]).severity,
        Severity::Ok
    );
    let missing = fsck("e2fsck", None, &["web".into()]);
    assert_eq!(missing.severity, Severity::Error);
    assert!(
        missing
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("e2fsprogs"))
    );
}

#[test]
fn mount_points_nested_across_services_are_errors() {
    let fs = |mnt: &str| format!("  fs#1:\n    dev: /dev/drbd0\n    mnt: {mnt}\n    type: ext4\n");
    let outer = service("outer", &fs("/srv/data"));
    let inner = service("inner", &fs("/srv/data/sub"));
    let apart = service("apart", &fs("/srv/database"));
    let got = mount_nesting(&[outer.clone(), inner]);
    assert_eq!(severities(&got), [Severity::Error], "{got:?}");
    assert_eq!(got[0].subject, "/srv/data/sub");
    assert!(got[0].message.contains("below /srv/data of service outer"));
    // A common prefix that is not a parent directory is not nesting.
    let got = mount_nesting(&[outer, apart]);
    assert_eq!(severities(&got), [Severity::Ok], "{got:?}");
    assert!(mount_nesting(&[]).is_empty());
}

#[test]
fn container_tools_rules() {
    let found = Some(PathBuf::from("/usr/bin/lxc-start"));
    let ok = container_tools(
        "lxc",
        "install lxc",
        &[("lxc-start".into(), "lxc-start", found.clone())],
    );
    assert_eq!(severities(&ok), [Severity::Ok]);
    let missing = container_tools(
        "lxc",
        "install lxc",
        &[
            ("lxc-start".into(), "lxc-start", found),
            ("lxc-stop".into(), "lxc-stop", None),
        ],
    );
    assert_eq!(severities(&missing), [Severity::Error]);
    assert_eq!(missing[0].subject, "lxc-stop");
    assert!(
        missing[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("commands.lxc-stop"))
    );
}

#[test]
fn lxc_rootfs_values() {
    let table = [
        (
            "lxc.rootfs.path = dir:/srv/web/rootfs\n",
            Some(Ok(PathBuf::from("/srv/web/rootfs"))),
        ),
        (
            "lxc.rootfs.path = /srv/web/rootfs\n",
            Some(Ok(PathBuf::from("/srv/web/rootfs"))),
        ),
        (
            "lxc.rootfs = /old/rootfs\n",
            Some(Ok(PathBuf::from("/old/rootfs"))),
        ),
        (
            "lxc.rootfs.path = lvm:/dev/vg0/web\n",
            Some(Err("lvm:/dev/vg0/web".to_string())),
        ),
        ("lxc.uts.name = web\n", None),
    ];
    for (text, want) in table {
        assert_eq!(lxc_rootfs(text), want, "{text}");
    }
}

#[test]
fn lxc_container_rules() {
    let fact = |config: Result<&str, &str>, missing: bool, path: &str| LxcFact {
        service: "web".into(),
        name: "web".into(),
        config_path: PathBuf::from(path),
        config: config.map(str::to_string).map_err(str::to_string),
        missing,
        mounts: vec![PathBuf::from("/srv/web")],
    };
    let local = "/var/lib/lxc/web/config";
    let table = [
        (
            fact(Ok("lxc.rootfs.path = dir:/srv/web/rootfs\n"), false, local),
            Severity::Ok,
        ),
        (
            fact(
                Ok("lxc.rootfs.path = dir:/var/lib/lxc/web/rootfs\n"),
                false,
                local,
            ),
            Severity::Warn,
        ),
        (
            fact(Ok("lxc.uts.name = web\n"), false, local),
            Severity::Warn,
        ),
        (
            fact(Ok("lxc.rootfs.path = zfs:pool/web\n"), false, local),
            Severity::Skipped,
        ),
        (fact(Err("does not exist"), true, local), Severity::Error),
        (
            fact(Err("does not exist"), true, "/srv/web/lxc/web/config"),
            Severity::Skipped,
        ),
    ];
    for (fact, severity) in table {
        let got = lxc_container(&fact);
        assert_eq!(got.severity, severity, "{fact:?}: {got:?}");
    }
}

#[test]
fn systemd_unit_exec_start() {
    let shipped = include_str!("../../../../docs/systemd/converge.service");
    assert_eq!(
        unit_exec_start(shipped).as_deref(),
        Some("/usr/local/bin/converge")
    );
    let table = [
        (
            "[Service]\nExecStart=-/usr/bin/converge run\n",
            Some("/usr/bin/converge"),
        ),
        ("[Unit]\nExecStart=/x\n[Service]\nType=simple\n", None),
        (
            "[Service]\n# ExecStart=/old\nExecStart= /usr/sbin/converge run --json\n",
            Some("/usr/sbin/converge"),
        ),
    ];
    for (text, want) in table {
        assert_eq!(unit_exec_start(text).as_deref(), want, "{text}");
    }
}

#[test]
fn unit_and_dir_rules() {
    let found =
        |program: Option<&str>, exists, untrusted: Option<(String, String)>| UnitFact::Found {
            path: "/etc/systemd/system/converge.service".into(),
            program: program.map(str::to_string),
            exists,
            untrusted,
        };
    let table = [
        (UnitFact::NotInstalled, Severity::Skipped),
        (
            found(Some("/usr/local/bin/converge"), true, None),
            Severity::Ok,
        ),
        (
            found(Some("/usr/local/bin/converge"), false, None),
            Severity::Error,
        ),
        (found(None, false, None), Severity::Error),
        (
            found(
                Some("/x"),
                true,
                Some(("writable".into(), "chmod go-w /x".into())),
            ),
            Severity::Error,
        ),
    ];
    for (fact, severity) in table {
        assert_eq!(unit(&fact).severity, severity, "{fact:?}");
    }
    let dir = Path::new("/var/lib/converge");
    let table = [
        (DirFact::Private { mode: 0o700 }, Severity::Ok),
        (DirFact::Private { mode: 0o755 }, Severity::Warn),
        (
            DirFact::Missing {
                existing: "/var/lib".into(),
            },
            Severity::Ok,
        ),
        (DirFact::NotADirectory { path: dir.into() }, Severity::Error),
        (
            DirFact::Untrusted {
                message: "m".into(),
                fix: "f".into(),
            },
            Severity::Error,
        ),
        (
            DirFact::Unreadable {
                why: "EACCES".into(),
            },
            Severity::Error,
        ),
    ];
    for (fact, severity) in table {
        assert_eq!(
            private_dir("state_dir", dir, &fact).severity,
            severity,
            "{fact:?}"
        );
    }
}
