//! `converge reconcile --once` and `converge status` end to end, without root: host apps and
//! OpenVZ containers (through the simulator), real processes, real timeouts, the real lock.
//! (DRBD and filesystems need root: see tests/real_parts.rs.)

mod support;

use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::{Sandbox, assert_no_panic, text};

/// A scripts directory whose S10foo creates a marker, K90foo removes it, C10foo reports it.
fn scripts(sb: &Sandbox, dir: &str, start_extra: &str) -> PathBuf {
    let marker = sb.path("marker");
    let m = marker.display();
    sb.script(
        &format!("{dir}/S10foo"),
        &format!("{start_extra}\necho started; touch {m}"),
    );
    sb.script(
        &format!("{dir}/K90foo"),
        &format!("echo stopping; rm -f {m}"),
    );
    sb.script(&format!("{dir}/C10foo"), &format!("test -e {m}"));
    sb.script(&format!("{dir}/README~"), "exit 99");
    sb.path(dir)
}

fn host_app_service(sb: &Sandbox, state: &str, start_extra: &str, timeout: &str) -> PathBuf {
    let dir = scripts(sb, "init.d", start_extra);
    sb.write(
        "manifests/web.yaml",
        &format!(
            "service: web\nstate: {state}\nresources:\n  app#0:\n    scripts: {}\n    timeout: {timeout}\n",
            dir.display()
        ),
    );
    sb.path("manifests")
}

fn run(sb: &Sandbox, dir: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["reconcile", "--once", dir.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let out = sb.converge(&args);
    assert_no_panic(&out);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn host_app_goes_up_then_a_second_run_does_nothing_then_down() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = host_app_service(&sb, "up", "", "10s");
    let (code, out, err) = run(&sb, &dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let script = sb.path("init.d/S10foo");
    let log = sb.path("log/svc_web_S10foo.log");
    assert!(
        out.contains(&format!(
            "APP     INFO    spawn: {} start\n",
            script.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(" - ret 0 - logs in {}\n", log.display()))
            && out.contains("APP     INFO    start done in 0:00:0"),
        "{out}"
    );
    assert!(out.contains("web: converged (1 action(s))"), "{out}");
    assert!(
        fs::read_to_string(&log)
            .expect("script log")
            .contains("started")
    );
    assert!(
        !out.contains("README~"),
        "editor backups are not scripts: {out}"
    );

    let (code, out, _) = run(&sb, &dir, &[]);
    assert_eq!(code, 0);
    assert!(
        !out.contains("spawn"),
        "a converged service runs no action: {out}"
    );
    assert!(out.contains("web: converged (0 action(s))"), "{out}");

    let status = sb.converge(&["status", dir.to_str().expect("utf-8")]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stdout));
    let status = text(&status.stdout);
    assert!(
        status.contains("web") && status.contains("converged: yes"),
        "{status}"
    );
    assert!(
        status.contains("app#0          up        C10foo up"),
        "{status}"
    );

    host_app_service(&sb, "down", "", "10s");
    let (code, out, err) = run(&sb, &dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("K90foo stop\n"), "{out}");
    assert!(!sb.path("marker").exists());
}

#[test]
fn a_start_recorded_in_the_former_layout_is_kept_across_the_upgrade() {
    // An app without a check: the record of its start is all converge knows. Written by the
    // former layout (state_dir/apps/SERVICE/app-0.json), it must still count after an upgrade,
    // or the app would be started a second time.
    let sb = Sandbox::new();
    sb.config("");
    let marker = sb.path("starts");
    sb.write(
        "manifests/web.yaml",
        &format!(
            "service: web\nstate: up\nresources:\n  app#0:\n    start: [/bin/sh, -c, 'echo x >> {}']\n    stop: [/bin/true]\n",
            marker.display()
        ),
    );
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    sb.write(
        "state/apps/web/app-0.json",
        &format!(r#"{{"boot_id":"{}","started_at":1}}"#, boot_id.trim()),
    );
    let (code, out, err) = run(&sb, &sb.path("manifests"), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("moved 1 app record(s)"), "{out}");
    assert!(out.contains("web: converged (0 action(s))"), "{out}");
    assert!(!marker.exists(), "started again: {out}");
    assert!(sb.path("state/app-records/web@app-0.start.json").exists());
}

#[test]
fn dry_run_prints_the_plan_and_runs_nothing() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = host_app_service(&sb, "up", "", "10s");
    let (code, out, _) = run(&sb, &dir, &["--dry-run"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("+ app#0") && out.contains("/init.d/S10foo start"),
        "{out}"
    );
    assert!(!sb.path("marker").exists());
}

#[test]
fn regression_hung_script_is_killed_at_its_timeout() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = host_app_service(&sb, "up", "sleep 30", "1s");
    let started = std::time::Instant::now();
    let (code, out, _) = run(&sb, &dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("S10foo start timed out after 1s and was killed"),
        "{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the hung script was waited for"
    );
    assert!(out.contains("web: failed"), "{out}");
}

#[test]
fn second_concurrent_reconcile_is_refused_naming_the_holder() {
    let sb = Sandbox::new();
    sb.config("");
    let dir = host_app_service(&sb, "up", "sleep 3", "10s");
    let mut first = sb
        .converge_cmd(&["reconcile", "--once", dir.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .spawn()
        .expect("first converge");
    // Wait until the first one holds the lock (its script has started).
    let lock = sb.path("state/converge.lock");
    for _ in 0..100 {
        if fs::read_to_string(&lock).is_ok_and(|t| t.contains("reconcile --once")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, err) = run(&sb, &dir, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another converge is acting on this node"),
        "{err}"
    );
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(first.wait().expect("first ends").success());
}

fn vz_service(sb: &Sandbox, state: &str, start: &str) -> PathBuf {
    let private = sb.path("ct101");
    fs::create_dir_all(&private).expect("mkdir");
    sb.write("ct101/etc/hostname", "ct101\n");
    let marker = sb.path("app-marker");
    let app = sb.script(
        "app.sh",
        &format!(
            "case $1 in start) {start}; touch {0};; stop) rm -f {0};; status) test -e {0};; esac",
            marker.display()
        ),
    );
    let app = app.display();
    sb.write(
        "manifests/ct.yaml",
        &format!(
            "service: ct\nstate: {state}\nresources:\n  container#0:\n    type: vz\n    ctid: 101\n    start_timeout: 20s\n  app#0:\n    start: [{app}, start]\n    stop: [{app}, stop]\n    check: [{app}, status]\n"
        ),
    );
    sb.path("manifests")
}

fn vz_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let vzctl = sb.sim_tool("vzctl");
    let vzlist = sb.sim_tool("vzlist");
    sb.config(&format!(
        "commands:\n  vzctl: {}\n  vzlist: {}\n",
        vzctl.display(),
        vzlist.display()
    ));
    sb.sim(
        "vzctl",
        &[
            "sim-create",
            "101",
            "--private",
            sb.path("ct101").to_str().expect("utf-8"),
            "--start-delay",
            "300ms",
        ],
    );
    sb
}

#[test]
fn container_starts_waits_and_runs_its_app_inside_then_stops() {
    let sb = vz_sandbox();
    let dir = vz_service(&sb, "up", "true");
    let (code, out, err) = run(&sb, &dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let vzctl = sb.path("bin/vzctl").display().to_string();
    let lines: Vec<&str> = out.lines().collect();
    let expected = [
        format!("VZ      INFO    {vzctl} start 101"),
        "VZ      INFO    wait for container up status".to_string(),
        "VZ      INFO    wait for container operational".to_string(),
        format!(
            "APP     INFO    spawn: {vzctl} exec2 101 {} start",
            sb.path("app.sh").display()
        ),
    ];
    let mut at = 0;
    for want in &expected {
        at += lines[at..]
            .iter()
            .position(|l| l == want)
            .unwrap_or_else(|| panic!("missing {want:?} in order in\n{out}"));
    }
    let (code, out, _) = run(&sb, &dir, &[]);
    assert_eq!(code, 0);
    assert!(out.contains("ct: converged (0 action(s))"), "{out}");

    vz_service(&sb, "down", "true");
    let (code, out, err) = run(&sb, &dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let stop_at = out.find("app.sh stop").expect("app stopped");
    let ct_at = out
        .find(&format!("{vzctl} stop 101"))
        .expect("container stopped");
    assert!(stop_at < ct_at, "the app stops before its container: {out}");
    assert!(
        out.contains("VZ      INFO    wait for container down status"),
        "{out}"
    );
}

#[test]
fn failed_app_start_rolls_the_container_back() {
    let sb = vz_sandbox();
    let dir = vz_service(&sb, "up", "exit 7");
    let (code, out, _) = run(&sb, &dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("app.sh start exited 7"), "{out}");
    assert!(
        out.contains("rollback: undoing what this run started"),
        "{out}"
    );
    assert!(
        out.contains("rollback: stopping app#0 after its failed start"),
        "{out}"
    );
    assert!(
        out.contains("ct: failed:") && out.contains("(rolled back)"),
        "{out}"
    );
    let status = text(&sb.sim("vzctl", &["status", "101"]).stdout);
    assert_eq!(
        status.trim(),
        "CTID 101 exist unmounted down",
        "rolled back to down"
    );
}

#[test]
fn without_rollback_a_failed_start_leaves_what_it_did() {
    let sb = vz_sandbox();
    let dir = vz_service(&sb, "up", "exit 7");
    let manifest = sb.path("manifests/ct.yaml");
    let text_before = fs::read_to_string(&manifest).expect("manifest");
    fs::write(
        &manifest,
        text_before.replace("state: up\n", "state: up\nrollback: false\n"),
    )
    .expect("write");
    let (code, out, _) = run(&sb, &dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("rollback:"), "{out}");
    let status = text(&sb.sim("vzctl", &["status", "101"]).stdout);
    assert_eq!(status.trim(), "CTID 101 exist mounted running");
}

#[test]
fn a_failing_optional_app_warns_and_the_rest_of_the_service_goes_on() {
    let sb = Sandbox::new();
    sb.config("");
    let ok = sb.script("ok.sh", &format!("touch {}", sb.path("ok.up").display()));
    sb.write(
        "manifests/mixed.yaml",
        &format!(
            "service: mixed\nstate: up\nresources:\n  app#0:\n    start: [/bin/false]\n    optional: true\n  app#1:\n    start: [{}]\n",
            ok.display()
        ),
    );
    let (code, out, _) = run(&sb, &sb.path("manifests"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(optional: the rest of the service goes on)"),
        "{out}"
    );
    assert!(
        sb.path("ok.up").exists(),
        "the next resource still started: {out}"
    );
    assert!(!out.contains("rollback"), "{out}");
}

#[test]
fn regression_a_block_that_passes_right_after_a_step_is_waited_out() {
    // After an unmount, an exiting container's processes may hold the DRBD device for a moment,
    // and the rollback stopped at once on "held open". A block seen right after a step is now
    // looked at again for a few seconds. Here the app's check says "warn" (a block: converge does
    // not start an app in an unknown state) for half a second after its start, then "up".
    let sb = Sandbox::new();
    sb.config("");
    let marker = sb.path("started");
    let m = marker.display();
    sb.script("init.d/S10slow", &format!("date +%s%N > {m}"));
    sb.script(
        "init.d/C10slow",
        &format!(
            "test -e {m} || exit 1\n\
             age=$(( $(date +%s%N) - $(cat {m}) ))\n\
             [ $age -ge 500000000 ] || exit 3"
        ),
    );
    sb.write(
        "manifests/slow.yaml",
        &format!(
            "service: slow\nstate: up\nresources:\n  app#0:\n    scripts: {}\n    retcodes: \"0:up 1:down 3:warn\"\n",
            sb.path("init.d").display()
        ),
    );
    let (code, out, err) = run(&sb, &sb.path("manifests"), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("slow: converged (1 action(s))"), "{out}");
    assert!(!out.contains("blocked"), "{out}");
}
