//! The binary end to end, without root: fake programs and /proc files in a temp directory,
//! pointed at by a node configuration.

use std::fs;
use std::path::Path;

mod support;

use support::{SEED_DIR as SEED, Sandbox, assert_no_panic, converge_with as converge, text};

#[test]
fn shipped_manifests_validate() {
    let sb = Sandbox::new();
    let out = converge(&sb.config(""), &["validate", SEED]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid"));
}

#[test]
fn plan_on_a_node_without_drbd_or_openvz_says_so_in_one_line_each() {
    let sb = Sandbox::new();
    let config = sb.config(&format!(
        "proc_drbd: {0}/no-such-proc-drbd\ncommands:\n  vzlist: {0}/no-such-vzlist\n",
        sb.root().display()
    ));
    let out = converge(&config, &["plan", SEED]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("! DRBD: ")
            && stdout.contains("no-such-proc-drbd does not exist: DRBD is not loaded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("! OpenVZ: ") && stdout.contains("no-such-vzlist not found"),
        "{stdout}"
    );
    assert!(stdout.contains("blocked: cannot observe DRBD"), "{stdout}");
    assert!(
        stdout.contains("Plan: 0 actions in 1 service, 1 blocked, 0 converged."),
        "{stdout}"
    );
}

#[test]
fn plan_lists_the_seed_sequence_from_a_down_node() {
    let sb = Sandbox::new();
    let proc_drbd = sb.write("proc-drbd", "version: 9.2.8 (api:2/proto:86-122)\nGIT-hash: abc build by x, 2024-01-01\nTransports (api:21): tcp (9.2.8)\n");
    let drbdsetup = sb.program("drbdsetup", "[]\n", 0);
    let vzlist = sb.program("vzlist", "       101 stopped\n", 0);
    let mountinfo = sb.write(
        "mountinfo",
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n",
    );
    let config = sb.config(&format!(
        "proc_drbd: {}\nmountinfo: {}\ncommands:\n  drbdsetup: {}\n  vzlist: {}\n",
        proc_drbd.display(),
        mountinfo.display(),
        drbdsetup.display(),
        vzlist.display()
    ));
    let manifests = sb.path("manifests");
    fs::create_dir_all(&manifests).expect("mkdir");
    let seed = fs::read_to_string(Path::new(SEED).join("drbdsvc.yaml")).expect("seed manifest");
    fs::write(
        manifests.join("drbdsvc.yaml"),
        seed.replace("/drbdsvc\n", &format!("{}/drbdsvc\n", sb.root().display())),
    )
    .expect("write");

    let out = converge(&config, &["plan", manifests.to_str().expect("utf-8 path")]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let ds = drbdsetup.display().to_string();
    let mnt = sb.path("drbdsvc").display().to_string();
    for expected in [
        format!("+ drbd#0       drbdadm --drbdsetup={ds} up data    # resource data is not up"),
        format!("+ drbd#0       drbdadm --drbdsetup={ds} primary data"),
        format!("+ fs#1         mkdir -m 0755 {mnt}"),
        "e2fsck -p /dev/drbd0".to_string(),
        format!("mount -t ext3 -o defaults /dev/drbd0 {mnt}"),
        "+ container#0  vzctl start 101".to_string(),
        "+ app#0        vzctl exec2 101 /svc/etc/init.d/S* start (each script in name order; /svc/etc/init.d is listed once the container runs)"
            .to_string(),
        "Plan: 6 actions in 1 service, 0 blocked, 0 converged.".to_string(),
    ] {
        assert!(
            stdout.contains(&expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    assert!(!stdout.contains("--force"));

    let out = converge(
        &config,
        &[
            "plan",
            manifests.to_str().expect("utf-8 path"),
            "--output",
            "json",
        ],
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("plan --output json is JSON");
    assert_eq!(
        doc["plan"]["services"][0]["steps"][0]["action"]["action"],
        "drbd_up"
    );
    assert_eq!(doc["node"]["vz"]["value"]["101"], "stopped");
}

#[test]
fn regression_plan_shows_each_script_a_start_runs() {
    // `plan` showed `S*` while the executor ran the scripts it found: now both list them.
    let sb = Sandbox::new();
    let scripts = sb.path("app.d");
    for name in ["S20second", "S10first", "K10stop", "C10check", "S30backup~"] {
        sb.script(&format!("app.d/{name}"), "exit 1");
    }
    let manifests = sb.path("m");
    sb.write(
        "m/app.yaml",
        &format!(
            "service: app\nstate: up\nresources:\n  app#0:\n    scripts: {}\n",
            scripts.display()
        ),
    );
    let out = converge(
        &sb.config(""),
        &["plan", manifests.to_str().expect("utf-8")],
    );
    assert_no_panic(&out);
    let stdout = text(&out.stdout);
    let first = format!("+ app#0        {}/S10first start    # ", scripts.display());
    let second = format!("\n                 {}/S20second start\n", scripts.display());
    assert!(stdout.contains(&first), "{stdout}");
    assert!(stdout.contains(&second), "{stdout}");
    assert!(
        !stdout.contains("S30backup") && !stdout.contains('*'),
        "{stdout}"
    );
}

#[test]
fn regression_plan_and_status_write_nothing() {
    // Observation saved the DRBD 8.4 minor map and the script listings inside containers in
    // state_dir, so `plan` and `status` wrote, beside a daemon that owns that directory.
    let sb = Sandbox::new();
    let proc_drbd = sb.write(
        "proc-drbd",
        "version: 8.4.11-1 (api:1/proto:86-101)\n 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n",
    );
    let drbdadm = sb.program("drbdadm", "0\n", 0);
    let vzlist = sb.program("vzlist", "       101 running\n", 0);
    // `vzctl exec2 101 /bin/ls -1 DIR` lists the scripts; every script run says "up".
    let vzctl = sb.program("vzctl", "C10check\nS10start\n", 0);
    let mountinfo = sb.write(
        "mountinfo",
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n",
    );
    let state = sb.path("state");
    let config = sb.write(
        "config.yaml",
        &format!(
            "node: deb1\nstate_dir: {}\nproc_drbd: {}\nmountinfo: {}\ncommands:\n  drbdadm: {}\n  vzlist: {}\n  vzctl: {}\n",
            state.display(),
            proc_drbd.display(),
            mountinfo.display(),
            drbdadm.display(),
            vzlist.display(),
            vzctl.display()
        ),
    );
    sb.write(
        "m/svc.yaml",
        "service: svc\nstate: up\nresources:\n  drbd#0: {res: data}\n  container#0: {type: vz, ctid: 101}\n  app#0: {scripts: /svc/init.d}\n",
    );
    let dir = sb.path("m");
    for command in ["plan", "status"] {
        let out = converge(&config, &[command, dir.to_str().expect("utf-8")]);
        assert_no_panic(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(!state.exists(), "{command} wrote to {}", state.display());
    }
}

#[test]
fn plan_with_broken_manifests_lists_errors_and_exits_1() {
    let sb = Sandbox::new();
    let dir = sb.path("m");
    sb.write("m/a.yaml", "service: a\nstate: up\nresources:\n  fs#1:\n    dev: /dev/x\n    mnt: relative\n    type: ext4\n");
    sb.write("m/b.yaml", "service: b\nstate: sideways\n");
    let out = converge(&sb.config(""), &["plan", dir.to_str().expect("utf-8")]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("a.yaml:6:10: resources.fs#1.mnt"),
        "{stderr}"
    );
    assert!(stderr.contains("b.yaml:2:8: state"), "{stderr}");
}

#[test]
fn validate_refuses_fsck_on_a_type_converge_cannot_check() {
    let sb = Sandbox::new();
    let dir = sb.path("m");
    sb.write(
        "m/x.yaml",
        "service: x\nstate: up\nresources:\n  fs#1:\n    dev: /dev/x\n    mnt: /x\n    type: xfs\n    fsck: true\n",
    );
    let out = converge(&sb.config(""), &["validate", dir.to_str().expect("utf-8")]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:8:11: resources.fs#1.fsck: fsck: true needs a filesystem converge can check (ext2, ext3, ext4), not xfs; set fsck: false or auto",
            dir.join("x.yaml").display()
        )),
        "{stderr}"
    );
}

#[test]
fn missing_explicit_config_is_one_clear_line() {
    let out = converge(Path::new("/nonexistent/converge.yaml"), &["validate", SEED]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("converge: ") && stderr.contains("/nonexistent/converge.yaml"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// `converge validate DIR` with a fake `drbdadm` printing `dump`: its exit code and stderr.
fn validate_with_drbdadm_dump(sb: &Sandbox, dir: &Path, dump: &str) -> (Option<i32>, String) {
    let drbdadm = sb.program("drbdadm", dump, 0);
    let config = sb.config(&format!("commands:\n  drbdadm: {}\n", drbdadm.display()));
    let out = converge(&config, &["validate", dir.to_str().expect("utf-8")]);
    assert_no_panic(&out);
    (out.status.code(), text(&out.stderr))
}

/// `on_quorum_loss: freeze` wants the DRBD options a freezing holder needs: the freeze
/// example's resource passes with nothing to say; the io-error one used for stopping gets two
/// warnings, with the fix.
#[test]
fn validate_checks_a_freezing_service_against_the_options_freezing_needs() {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/core/tests/fixtures/drbd_conf");
    let sb = Sandbox::new();
    let dir = sb.path("m");
    sb.write(
        "m/web.yaml",
        "service: web\nstate: up\nnodes: [deb1, deb2]\nfailover: auto\non_quorum_loss: freeze\nresources:\n  drbd#0:\n    res: data\n  container#0:\n    type: lxc\n    name: web\n",
    );
    let validate = |fixture: &str| {
        let dump = fs::read_to_string(fixtures.join(fixture)).expect("fixture");
        validate_with_drbdadm_dump(&sb, &dir, &dump)
    };
    // docs/examples/freeze-tiebreaker.res, as drbdadm dumps it.
    let (code, stderr) = validate("dump-freeze.txt");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    // docs/examples/failover-tiebreaker.res (on-no-quorum io-error, no force-secondary).
    let (code, stderr) = validate("dump-tiebreaker.txt");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: resource data is configured with on-no-quorum io-error: a holder that loses quorum sees its I/O fail")
            && stderr.contains("set `on-no-quorum suspend-io`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("on-suspended-primary-outdated disconnect (DRBD's default)")
            && stderr.contains("set `on-suspended-primary-outdated force-secondary`"),
        "{stderr}"
    );
}

/// `failover: auto` is checked against the node's DRBD configuration (`drbdadm dump RES`):
/// two nodes without a third cannot keep quorum after losing one, so `validate` refuses it,
/// located at `failover:`, with the reason and the fix; a configuration with a diskless
/// tiebreaker passes; one that cannot be read is said, not refused.
#[test]
fn validate_refuses_failover_on_two_nodes_without_a_tiebreaker() {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/core/tests/fixtures/drbd_conf");
    let sb = Sandbox::new();
    let dir = sb.path("m");
    sb.write(
        "m/web.yaml",
        "service: web\nstate: up\nnodes: [deb1, deb2]\nfailover: auto\nresources:\n  drbd#0:\n    res: web\n",
    );
    let validate = |dump: &str| validate_with_drbdadm_dump(&sb, &dir, dump);
    let two = fs::read_to_string(fixtures.join("dump-two-nodes.txt")).expect("fixture");
    let (code, stderr) = validate(&two);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4:1: failover: resource web has two nodes and no third: once one is lost, the survivor is half of them, not a majority",
            dir.join("web.yaml").display()
        )) && stderr.contains("a diskless tiebreaker is enough"),
        "{stderr}"
    );
    // Its options work against failing over too: said as warnings.
    assert!(
        stderr.contains("warning: resource web is configured with auto-promote yes"),
        "{stderr}"
    );
    assert!(stderr.contains("on-no-quorum suspend-io"), "{stderr}");
    // The same resource with a tiebreaker, as docs/examples/failover-tiebreaker.res has it.
    let three = fs::read_to_string(fixtures.join("dump-tiebreaker.txt"))
        .expect("fixture")
        .replace("resource data", "resource web");
    let (code, stderr) = validate(&three);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("failover"), "{stderr}");
    // drbdadm does not know the resource here (a CI runner): not checked, and said.
    let drbdadm = sb.script(
        "drbdadm",
        "echo \"'web' not defined in your config (for this host).\" >&2; exit 10",
    );
    let config = sb.config(&format!("commands:\n  drbdadm: {}\n", drbdadm.display()));
    let out = converge(&config, &["validate", dir.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("failover: warning: not checked against DRBD's configuration on this node"),
        "{}",
        text(&out.stderr)
    );
}

/// A resource file a manifest names (`config:`): `plan` shows its install (drbdadm's check of
/// the very copy, then the rename) before `up`; `validate` runs drbdadm's check on it and,
/// refused, fails at the `config:` key with drbdadm's message.
#[test]
fn a_resource_file_is_checked_by_drbdadm_installed_in_the_plan_and_refused_at_its_key() {
    let sb = Sandbox::new();
    let proc_drbd = sb.write("proc-drbd", "version: 9.2.8 (api:2/proto:86-122)\n");
    let drbdsetup = sb.program("drbdsetup", "[]\n", 0);
    let vzlist = sb.program("vzlist", "       101 stopped\n", 0);
    let mountinfo = sb.write(
        "mountinfo",
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n",
    );
    // drbdadm's check: the file after -t is refused when it holds a typo.
    let drbdadm = sb.script(
        "drbdadm",
        "while [ $# -gt 0 ]; do [ \"$1\" = -t ] && f=$2; shift; done\n\
         if grep -q optoins \"$f\"; then echo \"$f:2: Parse error: 'TK_STRING | {' expected\" >&2; exit 10; fi",
    );
    let conf_dir = sb.path("drbd.d");
    fs::create_dir_all(&conf_dir).expect("mkdir");
    fs::write(conf_dir.join("data.res"), "resource data { }\n").expect("write");
    let config = sb.config(&format!(
        "proc_drbd: {}\nmountinfo: {}\ndrbd_conf_dir: {}\ncommands:\n  drbdadm: {}\n  drbdsetup: {}\n  vzlist: {}\n",
        proc_drbd.display(),
        mountinfo.display(),
        conf_dir.display(),
        drbdadm.display(),
        drbdsetup.display(),
        vzlist.display()
    ));
    let manifests = sb.path("manifests");
    fs::create_dir_all(manifests.join("drbd")).expect("mkdir");
    let seed = fs::read_to_string(Path::new(SEED).join("drbdsvc.yaml")).expect("seed manifest");
    let manifest = seed
        .replace("/drbdsvc\n", &format!("{}/drbdsvc\n", sb.root().display()))
        .replace(
            "    res: data                  # DRBD resource name, defined in /etc/drbd.d/data.res\n",
            "    res: data\n    config: drbd/data.res\n",
        );
    assert!(manifest.contains("config: drbd/data.res"), "{manifest}");
    fs::write(manifests.join("drbdsvc.yaml"), &manifest).expect("write");
    let source = manifests.join("drbd/data.res");
    fs::write(
        &source,
        "resource data {\n  options { auto-promote no; }\n}\n",
    )
    .expect("write");
    let dir = manifests.to_str().expect("utf-8 path");

    let out = converge(&config, &["plan", dir]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let installed = conf_dir.join("data.res").display().to_string();
    let staged = conf_dir
        .join(".data.res.converge-new")
        .display()
        .to_string();
    for expected in [
        format!(
            "+ drbd#0       copy {} to {staged} (mode 0600)    # drbd/data.res differs from the installed {installed}",
            source.display()
        ),
        format!(
            "drbdadm --drbdsetup={} -t {staged} -E {installed} dump data",
            drbdsetup.display()
        ),
        format!("record that resource data is to be adjusted; rename it to {installed}"),
        "up data    # resource data is not up".to_string(),
    ] {
        assert!(
            stdout.contains(&expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    // plan writes nothing.
    assert_eq!(
        fs::read_to_string(conf_dir.join("data.res")).expect("installed"),
        "resource data { }\n"
    );
    let out = converge(&config, &["validate", dir]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    fs::write(
        &source,
        "resource data {\n  optoins { auto-promote no; }\n}\n",
    )
    .expect("write");
    let out = converge(&config, &["validate", dir]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "drbdsvc.yaml:7:5: resources.drbd#0.config: drbdadm refuses {}: {}:2: Parse error",
            source.display(),
            source.display()
        )),
        "{stderr}"
    );
    // The plan keeps the installed file and says why.
    let out = converge(&config, &["plan", dir]);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("copy "), "{stdout}");
    assert!(
        stdout.contains("~ warning: drbd#0: drbd/data.res is refused: ")
            && stdout.contains(&format!("{installed} stays as it is")),
        "{stdout}"
    );
}

/// The configuration file the package installs (a conffile) is one converge reads: every key
/// in it commented out, all defaults.
#[test]
fn the_packaged_configuration_file_is_valid() {
    let sb = Sandbox::new();
    let shipped = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/deb/config.yaml"
    ))
    .expect("packaging/deb/config.yaml");
    let config = sb.write("config.yaml", &shipped);
    let manifests = sb.path("manifests");
    fs::create_dir_all(&manifests).expect("mkdir");
    let out = converge(&config, &["validate", manifests.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Each key it mentions is one converge knows: uncommented, the file still loads.
    let uncommented: String = shipped
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.split_once(": ").is_some_and(|(key, _)| {
                key != "node" && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
        })
        .map(|l| format!("{}\n", l.split(" #").next().unwrap_or(l).trim_end()))
        .collect();
    assert!(
        uncommented.contains("drbd_conf_dir: /etc/drbd.d"),
        "{uncommented}"
    );
    let config = sb.write("uncommented.yaml", &uncommented);
    let out = converge(&config, &["validate", manifests.to_str().expect("utf-8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{uncommented}\n{}",
        text(&out.stderr)
    );
}

/// A host app service `web` in `m/`: S10web creates a marker, C10web checks it.
fn host_app(sb: &Sandbox, state: &str) -> String {
    let marker = sb.path("web.up");
    sb.script("web.d/S10web", &format!("touch {}", marker.display()));
    sb.script("web.d/K10web", &format!("rm -f {}", marker.display()));
    sb.script("web.d/C10web", &format!("test -e {}", marker.display()));
    sb.write(
        "m/web.yaml",
        &format!(
            "service: web\nstate: {state}\nresources:\n  app#0:\n    scripts: {}\n",
            sb.path("web.d").display()
        ),
    );
    sb.path("m").to_string_lossy().into_owned()
}

fn is_json(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object())
}

/// stdout's lines, and the last one as JSON (the report) when it is.
fn lines_and_report(out: &std::process::Output) -> (Vec<String>, Option<serde_json::Value>) {
    let stdout = text(&out.stdout);
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    let report = lines
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("services").is_some());
    (lines, report)
}

#[test]
fn reconcile_without_once_runs_once_and_output_and_log_format_choose_each_stream() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = host_app(&sb, "up");

    // `--once` may be left out: one reconcile, the agent's log lines, then the text report.
    let out = sb.converge(&["reconcile", &dir]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("APP     INFO    spawn: "), "{stdout}");
    assert!(
        stdout.ends_with("web: converged (1 action(s))\n"),
        "{stdout}"
    );
    assert!(sb.path("web.up").exists());

    // --output json: the log stays text, the report is the last line, as JSON.
    let out = sb.converge(&["reconcile", "--once", &dir, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (lines, report) = lines_and_report(&out);
    let report = report.unwrap_or_else(|| panic!("no JSON report last: {lines:?}"));
    assert_eq!(report["services"][0]["service"], "web", "{report}");
    assert!(lines.len() > 1 && !is_json(&lines[0]), "{lines:?}");

    // --log-format json: JSON log lines, the text report.
    let out = sb.converge(&["reconcile", &dir, "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (lines, report) = lines_and_report(&out);
    assert!(report.is_none(), "{lines:?}");
    let (report_line, log) = lines.split_last().expect("output");
    assert_eq!(report_line, "web: converged (0 action(s))");
    assert!(
        !log.is_empty() && log.iter().all(|l| is_json(l)),
        "{lines:?}"
    );

    // The former --json keeps its meaning: both in JSON.
    let out = sb.converge(&["reconcile", "--once", &dir, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (lines, report) = lines_and_report(&out);
    assert!(report.is_some(), "{lines:?}");
    assert!(lines.iter().all(|l| is_json(l)), "{lines:?}");
    let both = sb.converge(&[
        "reconcile",
        &dir,
        "--log-format",
        "json",
        "--output",
        "json",
    ]);
    let (both_lines, _) = lines_and_report(&both);
    assert_eq!(both_lines.len(), lines.len(), "{both_lines:?}");

    // --json beside one of its successors is a command-line error, not a guess.
    for extra in [["--output", "text"], ["--log-format", "json"]] {
        let out = sb.converge(&["reconcile", &dir, "--json", extra[0], extra[1]]);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert!(
            text(&out.stderr).contains("cannot be used with"),
            "{extra:?}"
        );
    }
}

#[test]
fn output_json_and_the_former_json_print_the_same_on_plan_status_and_doctor() {
    let sb = Sandbox::new();
    sb.config(&format!(
        "manifests: {}\nproc_drbd: {}/no-proc-drbd\n",
        sb.path("m").display(),
        sb.root().display()
    ));
    let dir = host_app(&sb, "down");
    for command in [&["plan", &dir][..], &["status", &dir], &["doctor"]] {
        let new: Vec<&str> = command
            .iter()
            .copied()
            .chain(["--output", "json"])
            .collect();
        let old: Vec<&str> = command.iter().copied().chain(["--json"]).collect();
        let (new, old) = (sb.converge(&new), sb.converge(&old));
        assert_no_panic(&new);
        assert_eq!(new.status.code(), old.status.code(), "{command:?}");
        let doc: serde_json::Value = serde_json::from_slice(&new.stdout)
            .unwrap_or_else(|e| panic!("{command:?} --output json: {e}: {}", text(&new.stdout)));
        assert!(doc.is_object() || doc.is_array(), "{command:?}");
        assert_eq!(text(&new.stdout), text(&old.stdout), "{command:?}");
        let plain = sb.converge(command);
        assert!(
            serde_json::from_slice::<serde_json::Value>(&plain.stdout).is_err(),
            "{command:?} prints text by default"
        );
        let explicit: Vec<&str> = command
            .iter()
            .copied()
            .chain(["--output", "text"])
            .collect();
        assert_eq!(
            text(&sb.converge(&explicit).stdout),
            text(&plain.stdout),
            "{command:?}"
        );
    }
}
