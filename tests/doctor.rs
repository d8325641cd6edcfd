//! `converge doctor` end to end: the real binary against the real `drbdadm`, each run in a
//! private mount and UTS namespace where /etc is the host's with the sandbox's drbd.conf,
//! drbd.d and lvm (an overlay, gone with the namespace) and the hostname is deb1, so that
//! drbdadm reads the test's resource files and picks their `on deb1` sections. Nothing on the
//! host changes; the sandbox is a temporary directory removed on drop, failures included.

mod support;

use std::process::{Command, Output, Stdio};

use support::{CONVERGE, Sandbox, assert_no_panic, text};

/// A resource converge promotes here, as `converge doctor` wants it; `{options}` is its
/// options section's body.
fn resource(options: &str) -> String {
    format!(
        "resource data {{\n    volume 0 {{\n        device /dev/drbd0 minor 0;\n        disk /dev/vg0/data;\n        meta-disk internal;\n    }}\n    on deb1 {{\n        node-id 0;\n        address ipv4 127.0.0.1:7789;\n    }}\n    on deb2 {{\n        node-id 1;\n        address ipv4 127.0.0.2:7789;\n    }}\n    options {{\n{options}    }}\n}}\n"
    )
}

const GOOD_OPTIONS: &str = "        auto-promote no;\n        quorum majority;\n        on-no-quorum io-error;\n        on-no-data-accessible io-error;\n";

const GOOD_LVM: &str = "# DRBD on LVM\ndevices {\n\tdir = \"/dev\"\n\twrite_cache_state = 0\n\tglobal_filter = [ \"r|^/dev/drbd|\", # DRBD's devices\n\t                  \"a|.*|\" ]\n}\n";

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<&'static str> {
    if euid() != 0 {
        return Some("needs root (mount and UTS namespaces)");
    }
    let found = |program: &str| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !found("drbdadm") {
        return Some("needs drbdadm (apt-get install drbd-utils)");
    }
    if !found("unshare") {
        return Some("needs unshare (util-linux)");
    }
    None
}

fn euid() -> u32 {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| text(&o.stdout).trim().parse().ok())
        .unwrap_or(u32::MAX)
}

/// A node: its configuration (node deb1, a fake /proc/drbd of a loaded DRBD 9.2.8), one
/// service on deb1 with DRBD resource `data` and an ext4 filesystem, `data.res` and lvm.conf.
fn node(res: &str, lvm: Option<&str>) -> Sandbox {
    let sb = Sandbox::new();
    sb.write("proc_drbd", "version: 9.2.8 (api:2/proto:86-122)\n");
    sb.write(
        "m/web.yaml",
        &format!(
            "service: web\nstate: up\nnode: deb1\nresources:\n  drbd#0: {{ res: data }}\n  fs#1: {{ dev: /dev/drbd0, mnt: {}/mnt, type: ext4 }}\n",
            sb.root().display()
        ),
    );
    sb.config(&format!(
        "manifests: {0}/m\nproc_drbd: {0}/proc_drbd\n",
        sb.root().display()
    ));
    sb.write("etc/drbd.conf", "include \"drbd.d/*.res\";\n");
    sb.write("etc/drbd.d/data.res", res);
    if let Some(lvm) = lvm {
        sb.write("etc/lvm/lvm.conf", lvm);
    }
    sb
}

/// `converge doctor [--output json]` on the node, in its own namespaces.
fn doctor(sb: &Sandbox, json: bool) -> Output {
    let script = format!(
        "hostname deb1 && mount -t overlay overlay -o lowerdir={}:/etc /etc && exec {} --config {} doctor{}",
        sb.path("etc").display(),
        CONVERGE,
        sb.path("config.yaml").display(),
        if json { " --output json" } else { "" }
    );
    let out = Command::new("unshare")
        .args(["-m", "-u", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    assert_no_panic(&out);
    out
}

/// The findings of `doctor --output json`, and its exit code.
fn findings(sb: &Sandbox) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = doctor(sb, true);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        report["exit_code"].as_i64().map(|c| c as i32),
        out.status.code()
    );
    (out.status.code(), findings)
}

/// The findings of `severity` whose message contains `needle`.
fn with<'a>(
    findings: &'a [serde_json::Value],
    severity: &str,
    needle: &str,
) -> Vec<&'a serde_json::Value> {
    findings
        .iter()
        .filter(|f| {
            f["severity"] == severity && f["message"].as_str().is_some_and(|m| m.contains(needle))
        })
        .collect()
}

#[test]
fn a_good_node_exits_0_and_json_lists_typed_findings() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let sb = node(&resource(GOOD_OPTIONS), Some(GOOD_LVM));
    let (code, all) = findings(&sb);
    let bad: Vec<_> = all
        .iter()
        .filter(|f| f["severity"] == "warn" || f["severity"] == "error")
        .collect();
    assert_eq!(code, Some(0), "{bad:#?}");
    for f in &all {
        let mut keys: Vec<&str> = f
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["area", "fix", "message", "severity", "subject"],
            "{f}"
        );
        assert!(
            ["converge", "drbd", "lvm", "fs", "container"]
                .contains(&f["area"].as_str().unwrap_or("")),
            "{f}"
        );
    }
    assert_eq!(with(&all, "ok", "auto-promote no").len(), 1, "{all:#?}");
    assert_eq!(
        with(&all, "ok", "defines data for this host").len(),
        1,
        "{all:#?}"
    );
    assert_eq!(
        with(&all, "ok", "global_filter rejects the DRBD devices").len(),
        1,
        "{all:#?}"
    );
    assert_eq!(
        with(&all, "ok", "version 9.2.8 loaded").len(),
        1,
        "{all:#?}"
    );
    // The human form: grouped by area, then the summary.
    let out = doctor(&sb, false);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let drbd = stdout.find("\ndrbd\n").expect("drbd heading");
    let lvm = stdout.find("\nlvm\n").expect("lvm heading");
    assert!(drbd < lvm, "{stdout}");
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("doctor: 0 error(s), 0 warning(s)")),
        "{stdout}"
    );
}

#[test]
fn drbd_options_that_work_against_converge_are_warnings_with_the_fix() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    // auto-promote left at DRBD 9's default.
    let sb = node(
        &resource(
            "        quorum majority;\n        on-no-quorum io-error;\n        on-no-data-accessible io-error;\n",
        ),
        Some(GOOD_LVM),
    );
    let (code, all) = findings(&sb);
    assert_eq!(code, Some(2), "{all:#?}");
    let warned = with(&all, "warn", "auto-promote yes (DRBD 9's default)");
    assert_eq!(warned.len(), 1, "{all:#?}");
    assert_eq!(warned[0]["subject"], "resource data");
    assert!(
        warned[0]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("set `auto-promote no;`")),
        "{warned:#?}"
    );
    // on-no-quorum and on-no-data-accessible disagree.
    let sb = node(
        &resource(
            "        auto-promote no;\n        quorum majority;\n        on-no-quorum io-error;\n        on-no-data-accessible suspend-io;\n",
        ),
        Some(GOOD_LVM),
    );
    let (code, all) = findings(&sb);
    assert_eq!(code, Some(2), "{all:#?}");
    let warned = with(
        &all,
        "warn",
        "on-no-quorum io-error but on-no-data-accessible suspend-io",
    );
    assert_eq!(warned.len(), 1, "{all:#?}");
    assert!(
        warned[0]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("on-no-data-accessible io-error;")),
        "{warned:#?}"
    );
}

#[test]
fn a_resource_file_drbdadm_cannot_parse_is_an_error_with_drbdadm_s_message() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let sb = node(&resource(GOOD_OPTIONS), Some(GOOD_LVM));
    sb.write(
        "etc/drbd.d/broken.res",
        "resource broken {\n    volume 0 { device /dev/drbd1 minor 1; disk /dev/sdb; meta-disk internal }\n    on deb1 { node-id 0; address ipv4 127.0.0.1:7790; }\n}\n",
    );
    let (code, all) = findings(&sb);
    assert_eq!(code, Some(1), "{all:#?}");
    let broken = with(&all, "error", "Parse error");
    let file = broken
        .iter()
        .find(|f| {
            f["subject"]
                .as_str()
                .is_some_and(|s| s.ends_with("broken.res"))
        })
        .unwrap_or_else(|| panic!("{all:#?}"));
    let message = file["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("broken.res:2: Parse error: ';' expected") && !message.contains("modinfo"),
        "{message}"
    );
    assert!(
        file["fix"].as_str().is_some_and(|f| f.contains("sh-nop")),
        "{file}"
    );
}

#[test]
fn a_resource_file_without_this_host_is_said() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let sb = node(&resource(GOOD_OPTIONS), Some(GOOD_LVM));
    sb.write(
        "etc/drbd.d/elsewhere.res",
        "resource elsewhere {\n    volume 0 { device /dev/drbd2 minor 2; disk /dev/sdc; meta-disk internal; }\n    on deb7 { node-id 0; address ipv4 10.0.0.7:7791; }\n    on deb8 { node-id 1; address ipv4 10.0.0.8:7791; }\n}\n",
    );
    let (code, all) = findings(&sb);
    assert_eq!(code, Some(2), "{all:#?}");
    let warned = with(
        &all,
        "warn",
        "none of its resources has an `on deb1` section",
    );
    assert_eq!(warned.len(), 1, "{all:#?}");
    assert!(
        warned[0]["subject"]
            .as_str()
            .is_some_and(|s| s.ends_with("elsewhere.res"))
    );
}

#[test]
fn lvm_conf_without_the_drbd_advice_is_warned_about() {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let sb = node(
        &resource(GOOD_OPTIONS),
        Some("devices {\n\twrite_cache_state = 1\n\tfilter = [ \"a|.*|\" ]\n}\n"),
    );
    let (code, all) = findings(&sb);
    assert_eq!(code, Some(2), "{all:#?}");
    let lvm: Vec<_> = all.iter().filter(|f| f["area"] == "lvm").collect();
    assert_eq!(lvm.len(), 2, "{lvm:#?}");
    assert!(lvm.iter().all(|f| f["severity"] == "warn"), "{lvm:#?}");
    assert_eq!(
        with(&all, "warn", "write_cache_state is 1").len(),
        1,
        "{lvm:#?}"
    );
    assert_eq!(
        with(&all, "warn", "/dev/vg0/data (resource data)").len(),
        1,
        "{lvm:#?}"
    );
    // A broken lvm.conf is an error.
    sb.write("etc/lvm/lvm.conf", "devices {\n\tfilter = [ \"a|.*|\"\n}\n");
    let (code, all) = findings(&sb);
    assert_eq!(code, Some(1), "{all:#?}");
    assert_eq!(
        with(&all, "error", "cannot parse it: lvm.conf line").len(),
        1,
        "{all:#?}"
    );
}

/// Needs no namespace: nothing of DRBD is named, so DRBD is only skipped.
#[test]
fn an_invalid_manifest_is_an_error_pointing_at_validate() {
    let sb = Sandbox::new();
    sb.write(
        "m/bad.yaml",
        "service: bad\nstate: sideways\nresources: {}\n",
    );
    sb.config(&format!(
        "manifests: {0}/m\nproc_drbd: {0}/no-proc-drbd\n",
        sb.root().display()
    ));
    let out = sb.converge(&["doctor", "--output", "json"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let all = report["findings"].as_array().cloned().unwrap_or_default();
    let invalid = with(&all, "error", "invalid manifest");
    assert_eq!(invalid.len(), 1, "{all:#?}");
    assert!(
        invalid[0]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("converge validate")),
        "{invalid:#?}"
    );
    assert!(report["summary"]["errors"].as_u64() >= Some(1));
}
