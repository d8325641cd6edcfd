//! DRBD: `drbdadm up|connect|primary|secondary|down|adjust RES`, and installing a resource
//! file a manifest names.
//!
//! Right before promoting, the peers' roles are read again (`drbdadm role`, and on DRBD 9
//! `drbdsetup status --json`, where `role` shows only the local one): the plan was made from an
//! observation that may be seconds old, and two Primaries is the failure operators fear most.
//! DRBD's own refusals are honoured, never forced: exit 11 (a cluster-wide state change is in
//! progress, or the device is held open) is retried every second up to 10 times; exit 17 (no
//! access to UpToDate data) blocks. A service that fails over (`failover: auto`) promotes over
//! peers it cannot see when DRBD reports quorum, and DRBD's exit 11 there may mean another node
//! won the race: after the retries it waits, as a standby does, instead of failing.

use std::path::Path;
use std::time::Duration;

use super::ctx::{ActError, Ctx};
use crate::observer::drbd_file::{self, MAX_RES_FILE_BYTES};
use crate::observer::probe::DrbdRoles;
use crate::secure;
use converge_core::command::{self, DrbdVerb};
use converge_core::manifest::{DrbdSpec, Spec};
use converge_core::observe::drbd::{PeerHold, PromoteGuard, Role};
use converge_core::plan::{Action, waiting_for};

/// drbdadm waits for the peer in some calls (connect, primary with quorum); bound it.
pub const DRBDADM_TIMEOUT: Duration = Duration::from_secs(120);
/// DRBD's "cluster-wide state change in progress" / "device held open".
pub const EXIT_STATE_CHANGE: i32 = 11;
/// DRBD's "no access to UpToDate data".
pub const EXIT_NO_UP_TO_DATE_DATA: i32 = 17;
const RETRIES: u32 = 10;
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What guards this service's promotions: DRBD's quorum for a service that fails over, else
/// the peers' roles (unless two Primaries are allowed).
fn guard(ctx: &Ctx<'_>) -> PromoteGuard {
    if ctx.service.failover().is_some() {
        PromoteGuard::Quorum
    } else if allow_two_primaries(ctx) {
        PromoteGuard::TwoPrimaries
    } else {
        PromoteGuard::Seen
    }
}

fn allow_two_primaries(ctx: &Ctx<'_>) -> bool {
    ctx.spec()
        .and_then(Spec::as_drbd)
        .is_some_and(|s: &DrbdSpec| s.allow_two_primaries)
}

/// Runs a state change, retrying DRBD's exit 11 (another state change in progress).
pub async fn state_change(
    ctx: &Ctx<'_>,
    verb: DrbdVerb,
    res: &str,
    argv: &[String],
) -> Result<(), ActError> {
    let verb = verb.as_str();
    for attempt in 1..=RETRIES {
        let out = ctx.run(argv, DRBDADM_TIMEOUT).await?;
        match out.code {
            Some(0) => return Ok(()),
            Some(EXIT_STATE_CHANGE) if attempt < RETRIES => {
                // A peer that became Primary meanwhile is a refusal to respect, not a
                // transient state change to wait out.
                if verb == "primary"
                    && let Some(hold) = peer_hold(ctx, res).await?
                {
                    return Err(ctx.waiting(waiting_for(&hold, res)));
                }
                ctx.log.info(format_args!(
                    "{}; retry {attempt}/{} in 1s",
                    nonempty(&out.last_line(), "state change refused (exit 11)"),
                    RETRIES - 1
                ));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Some(EXIT_NO_UP_TO_DATE_DATA) => {
                ctx.log.output(&out.stderr);
                return Err(ctx.blocked(format!(
                    "drbdadm {verb} {res}: no access to UpToDate data (exit 17); converge never forces it"
                )));
            }
            _ => {
                ctx.log.output(&out.stderr);
                return Err(ctx.ended_badly(argv, &out));
            }
        }
    }
    if verb == "primary" && guard(ctx) == PromoteGuard::Quorum {
        // Nodes that fail over race for the promotion and DRBD lets one win; the others are
        // refused, and may not see the winner (a node between them does).
        return Err(ctx.waiting(format!(
            "drbdadm {verb} {res}: refused {RETRIES} times (exit 11): another node may hold the service; standing by"
        )));
    }
    Err(ctx.failed(format!(
        "drbdadm {verb} {res}: still refused after {RETRIES} tries"
    )))
}

/// Right before `drbdadm secondary --force`: the node is observed and the service planned
/// again, and the forced demotion runs only if the planner still asks for it. Its rules (no
/// filesystem of the device mounted, the mount table readable, `secondary_force` set) are the
/// one place that decides; a plan seconds old may predate a mount.
pub async fn confirm_forced_demotion(ctx: &Ctx<'_>, res: &str) -> Result<(), ActError> {
    let node = ctx
        .observer
        .observe(std::slice::from_ref(ctx.service))
        .await;
    let plan = converge_core::plan::plan_service(ctx.service, &node);
    let still = plan.steps.first().is_some_and(|step| {
        step.rid == ctx.rid
            && matches!(&step.action, Action::DrbdSecondary { res: r, force: true } if r == res)
    });
    if still {
        return Ok(());
    }
    let now = match (plan.steps.first(), &plan.blocked) {
        (Some(step), _) => format!("its next step is now {}", step.action.name()),
        (None, Some(blocked)) => blocked.reason.clone(),
        (None, None) => "nothing is left to do".to_string(),
    };
    Err(ctx.blocked(format!(
        "not forcing resource {res} to Secondary: the node changed since the plan ({now})"
    )))
}

fn nonempty<'s>(text: &'s str, fallback: &'s str) -> &'s str {
    if text.is_empty() { fallback } else { text }
}

/// `drbdadm up` or `connect`: one try, judged by its exit code.
pub async fn run_once(ctx: &Ctx<'_>, argv: &[String]) -> Result<(), ActError> {
    let out = ctx.run(argv, DRBDADM_TIMEOUT).await?;
    if out.success() {
        return Ok(());
    }
    ctx.log.output(&out.stderr);
    Err(ctx.ended_badly(argv, &out))
}

/// `drbdadm up`: the resource comes up on its installed file, so converge's record that the
/// file is not applied yet goes.
pub async fn up(ctx: &Ctx<'_>, res: &str, argv: &[String]) -> Result<(), ActError> {
    run_once(ctx, argv).await?;
    applied(ctx, res)
}

/// `drbdadm adjust`: first what it would run (`drbdadm -d adjust`), which must only change
/// options or add (see [`command::adjust_refusal`]): the plan was made from an observation
/// that may be seconds old, and a connection that dropped since, or a file that removes a
/// volume or a peer, would have adjust take apart what runs. Then the adjust, retried as a
/// state change is (exit 11), and the record goes.
pub async fn adjust(ctx: &Ctx<'_>, res: &str, argv: &[String]) -> Result<(), ActError> {
    let dry = command::adjust_dry_run_argv(&ctx.config.commands, res);
    let out = ctx.probe(&dry, DRBDADM_TIMEOUT).await?;
    if !out.success() {
        ctx.log.output(&out.stderr);
        return Err(ctx.ended_badly(&dry, &out));
    }
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("modinfo"))
        .map(str::to_string)
        .collect();
    if let Some(why) = command::adjust_refusal(&lines) {
        return Err(ctx.blocked(format!(
            "not applying the new file of resource {res} by itself: {why}; check `drbdadm -d adjust {res}` and run `drbdadm adjust {res}` by hand when it is what you want"
        )));
    }
    state_change(ctx, DrbdVerb::Adjust, res, argv).await?;
    applied(ctx, res)
}

/// The resource took its installed file: converge's record that it waited for it goes.
fn applied(ctx: &Ctx<'_>, res: &str) -> Result<(), ActError> {
    crate::state::forget_adjust(&ctx.config.state_dir, res).map_err(|e| {
        ctx.failed(format!(
            "resource {res} took its file, but the record that it waited for it stays: {e}"
        ))
    })
}

/// Installs the resource file `from` as `to`: a private copy beside it (`staged`), checked by
/// drbdadm with the rest of the configuration (`check`), then renamed over `to`. The record
/// that the resource waits for an adjust is written before the rename, so a converge killed
/// in between still applies it. A copy drbdadm refuses is removed, and `to` stays as it was.
pub async fn install(
    ctx: &Ctx<'_>,
    res: &str,
    from: &Path,
    staged: &Path,
    to: &Path,
    check: &[String],
) -> Result<(), ActError> {
    // One install at a time: each is checked against the others as installed, so two files
    // that clash (one minor, one port) cannot both pass while neither is in place yet.
    let _one_at_a_time = INSTALLING.lock().await;
    let dir = to
        .parent()
        .ok_or_else(|| ctx.failed(format!("{} has no directory", to.display())))?;
    // Whoever can write there can make root run anything (a handler): converge does not add
    // its file to a directory it would not trust.
    match secure::check_path(dir, "DRBD configuration directory") {
        Ok(resolved) if resolved.missing.is_empty() => {}
        Ok(_) => {
            return Err(ctx.failed(format!(
                "the DRBD configuration directory {} does not exist: install drbd-utils, or set drbd_conf_dir to the directory drbd.conf includes",
                dir.display()
            )));
        }
        Err(e) => return Err(ctx.failed(e.to_string())),
    }
    let text = secure::read_input(from, MAX_RES_FILE_BYTES)
        .map_err(|e| ctx.failed(format!("cannot read {}: {e}", from.display())))?;
    ctx.log.info(format_args!(
        "install {} as {}",
        from.display(),
        to.display()
    ));
    write_private(staged, &text)
        .map_err(|e| ctx.failed(format!("cannot write {}: {e}", staged.display())))?;
    let checked = ctx.probe(check, DRBDADM_TIMEOUT).await;
    let refused = match checked {
        Ok(out) if out.success() => None,
        Ok(out) => Some(format!(
            "drbdadm refuses {}: {}",
            from.display(),
            drbd_file::drbdadm_complaint(&out.stderr, &out.stdout)
                .replace(&*staged.to_string_lossy(), &from.to_string_lossy())
        )),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = refused {
        let _ = std::fs::remove_file(staged);
        return Err(ctx.failed(format!("{why}; {} stays as it was", to.display())));
    }
    let installed = crate::state::record_adjust(&ctx.config.state_dir, res)
        .and_then(|()| std::fs::rename(staged, to))
        .and_then(|()| std::fs::File::open(dir)?.sync_all());
    if let Err(e) = installed {
        let _ = std::fs::remove_file(staged);
        return Err(ctx.failed(format!("cannot install {}: {e}", to.display())));
    }
    read_where_installed(ctx, res, to).await
}

/// Whether drbdadm reads the resource from the file just installed (its `dump` says where
/// each resource is defined): a `drbd_conf_dir` that /etc/drbd.conf does not include would
/// take the file where DRBD never reads it, and every check would pass on the old one.
async fn read_where_installed(ctx: &Ctx<'_>, res: &str, to: &Path) -> Result<(), ActError> {
    let argv = ctx.config.commands.drbdadm_argv(&["dump", res]);
    let out = ctx.probe(&argv, DRBDADM_TIMEOUT).await?;
    let defined_at = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("# defined at "))
        .and_then(|at| at.rsplit_once(':').map(|(file, _)| file.to_string()));
    let same = |file: &str| {
        let canonical = |p: &Path| std::fs::canonicalize(p).ok();
        canonical(Path::new(file)).is_some_and(|f| Some(f) == canonical(to))
    };
    match defined_at {
        Some(file) if same(&file) => Ok(()),
        Some(file) => Err(ctx.failed(format!(
            "{} is installed, but drbdadm reads resource {res} from {file}: set drbd_conf_dir to the directory /etc/drbd.conf includes, or remove the other definition",
            to.display()
        ))),
        None => Err(ctx.failed(format!(
            "{} is installed, but `{}` does not say where resource {res} is defined ({})",
            to.display(),
            argv.join(" "),
            nonempty(&out.last_line(), "no output")
        ))),
    }
}

/// Held by an install from its check to its rename.
static INSTALLING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes `bytes` to a new file at `path`, mode 0600 (a resource file may hold the
/// connection's shared secret), never through a symlink: whatever is at `path` is removed
/// first (unlink does not follow a link), and the file is created exclusively.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

pub async fn primary(ctx: &Ctx<'_>, res: &str, argv: &[String]) -> Result<(), ActError> {
    let (local, hold) = roles(ctx, res).await?;
    if local == Role::Primary {
        ctx.log
            .info(format_args!("drbd resource {res} is already Primary"));
        return Ok(());
    }
    if let Some(hold) = hold {
        return Err(ctx.waiting(waiting_for(&hold, res)));
    }
    state_change(ctx, DrbdVerb::Primary, res, argv).await
}

/// What keeps this node from promoting now, if anything does.
async fn peer_hold(ctx: &Ctx<'_>, res: &str) -> Result<Option<PeerHold>, ActError> {
    roles(ctx, res).await.map(|(_, hold)| hold)
}

/// The local role and what a peer holds promotion on — read fresh.
async fn roles(ctx: &Ctx<'_>, res: &str) -> Result<(Role, Option<PeerHold>), ActError> {
    let roles = ctx
        .observer
        .drbd_roles(res, guard(ctx))
        .await
        .map_err(|e| {
            ctx.failed(format!(
                "cannot read the roles of {res} before promoting: {e}"
            ))
        })?;
    match roles {
        DrbdRoles::Up { local, hold } => Ok((local, hold)),
        DrbdRoles::NotUp => Err(ctx.failed(format!("resource {res} is not up; cannot promote it"))),
        DrbdRoles::NotDefined => Err(ctx.failed(format!(
            "resource {res} is not defined in the DRBD configuration of this host"
        ))),
    }
}

#[cfg(test)]
mod tests {
    //! The driver against stub `drbdadm`/`drbdsetup` scripts: what it runs, and what it
    //! refuses to run.

    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::observer::Observer;
    use converge_core::config::{Commands, Config};
    use converge_core::manifest::{Kind, ResourceId, parse_manifest};
    use converge_core::plan::{Action, Step};

    struct Stubs {
        dir: tempfile::TempDir,
    }

    impl Stubs {
        /// `drbdadm`: logs its arguments to `calls`, answers `role` with `role_out`, and
        /// `primary` with the exit codes in `primary_codes` (one per call, the last repeating).
        /// `drbdsetup status --json` prints `status_json`.
        fn new(role_out: &str, primary_codes: &[i32], status_json: &str) -> Stubs {
            let dir = tempfile::tempdir().expect("tempdir");
            let write = |name: &str, body: String| {
                let path = dir.path().join(name);
                std::fs::write(&path, body).expect("write stub");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            };
            std::fs::write(dir.path().join("status.json"), status_json).expect("json");
            let codes: Vec<String> = primary_codes.iter().map(ToString::to_string).collect();
            write(
                "drbdadm",
                format!(
                    "#!/bin/sh\nd={d}\ncase \"$1\" in --drbdsetup=*) shift;; esac\necho \"$*\" >> $d/calls\ncase \"$1\" in\n  role) echo {role_out}; exit 0;;\n  primary)\n    n=$(grep -c '^primary' $d/calls)\n    set -- {codes}\n    while [ $n -gt 1 ] && [ $# -gt 1 ]; do shift; n=$((n-1)); done\n    [ \"$1\" = 11 ] && echo 'data: State change failed: (-1) Multiple primaries not allowed by config' >&2\n    exit $1;;\n  connect) [ -f $d/connect_fails ] && exit 10; exit 0;;\n  *) exit 0;;\nesac\n",
                    d = dir.path().display(),
                    codes = codes.join(" ")
                ),
            );
            write(
                "drbdsetup",
                format!("#!/bin/sh\ncat {}/status.json\n", dir.path().display()),
            );
            Stubs { dir }
        }

        fn config(&self) -> Config {
            Config {
                commands: Commands {
                    drbdadm: self.path("drbdadm").display().to_string(),
                    drbdsetup: self.path("drbdsetup").display().to_string(),
                    ..Commands::default()
                },
                // Never the host's /var/lib/converge: promotion writes an in-progress record.
                state_dir: self.path("state"),
                log_dir: self.path("log"),
                ..Config::default()
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn primary_calls(&self) -> usize {
            std::fs::read_to_string(self.path("calls"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("primary data"))
                .count()
        }
    }

    fn status_json(peer_role: &str) -> String {
        status_json_with("Connected", peer_role)
    }

    fn status_json_with(connection: &str, peer_role: &str) -> String {
        format!(
            r#"[{{"name":"data","node-id":0,"role":"Secondary","suspended":false,"devices":[{{"volume":0,"minor":0,"disk-state":"UpToDate","client":false,"open":false,"quorum":true}}],"connections":[{{"peer-node-id":1,"name":"deb2","connection-state":"{connection}","peer-role":"{peer_role}","peer_devices":[{{"volume":0,"replication-state":"Established","peer-disk-state":"UpToDate","percent-in-sync":100.0}}]}}]}}]"#
        )
    }

    /// Runs the planned step `primary data`, as the executor would.
    async fn promote(stubs: &Stubs, allow_two: bool) -> Result<(), ActError> {
        let observer = Observer::new(std::sync::Arc::new(stubs.config()));
        let step = Step {
            rid: ResourceId::new(Kind::Drbd, 0),
            action: Action::DrbdPrimary { res: "data".into() },
            reason: String::new(),
        };
        super::super::run_step(&observer, &service(allow_two), &step).await
    }

    fn service(allow_two: bool) -> converge_core::manifest::Service {
        let text = format!(
            "service: s\nstate: up\nresources:\n  drbd#0:\n    res: data\n    allow_two_primaries: {allow_two}\n"
        );
        parse_manifest(Path::new("/m/s.yaml"), &text).expect("valid")
    }

    #[tokio::test]
    async fn peer_roles_are_read_again_right_before_promoting() {
        // The plan was made when the peer was Secondary; now `status --json` says Primary.
        let stubs = Stubs::new("Secondary", &[0], &status_json("Primary"));
        let err = promote(&stubs, false).await.expect_err("must refuse");
        assert!(matches!(err, ActError::Waiting { .. }), "{err}");
        assert!(err.to_string().contains("peer deb2 is Primary"), "{err}");
        assert_eq!(stubs.primary_calls(), 0, "drbdadm primary was never run");
    }

    #[tokio::test]
    async fn regression_a_peer_that_is_not_connected_is_not_promoted_over() {
        // Planned while the peer was connected and Secondary; now the link is down and the
        // peer may be Primary on its side.
        let stubs = Stubs::new(
            "Secondary",
            &[0],
            &status_json_with("Connecting", "Unknown"),
        );
        let err = promote(&stubs, false).await.expect_err("must wait");
        assert!(matches!(err, ActError::Waiting { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("peer deb2 is not connected (Connecting)"),
            "{err}"
        );
        assert_eq!(stubs.primary_calls(), 0, "drbdadm primary was never run");
    }

    #[tokio::test]
    async fn drbd_84_peer_role_unknown_is_not_promoted_over() {
        // DRBD 8.4's `drbdadm role` prints both roles; `Unknown` while not connected.
        let stubs = Stubs::new("Secondary/Unknown", &[0], "[]");
        let err = promote(&stubs, false).await.expect_err("must wait");
        assert!(matches!(err, ActError::Waiting { .. }), "{err}");
        assert_eq!(stubs.primary_calls(), 0);
        let stubs = Stubs::new("Secondary/Secondary", &[0], "[]");
        promote(&stubs, false).await.expect("promoted");
        assert_eq!(stubs.primary_calls(), 1);
    }

    #[tokio::test]
    async fn allow_two_primaries_promotes_beside_a_primary_peer() {
        let stubs = Stubs::new("Secondary", &[0], &status_json("Primary"));
        promote(&stubs, true).await.expect("promoted");
        assert_eq!(stubs.primary_calls(), 1);
    }

    #[tokio::test]
    async fn exit_11_is_retried_then_succeeds() {
        let stubs = Stubs::new("Secondary", &[11, 0], &status_json("Secondary"));
        promote(&stubs, false)
            .await
            .expect("promoted on the second try");
        assert_eq!(stubs.primary_calls(), 2);
    }

    #[tokio::test]
    async fn exit_17_blocks_and_is_not_retried() {
        let stubs = Stubs::new("Secondary", &[17], &status_json("Secondary"));
        let err = promote(&stubs, false).await.expect_err("blocked");
        assert!(
            err.is_blocked() && err.to_string().contains("UpToDate"),
            "{err}"
        );
        assert_eq!(stubs.primary_calls(), 1);
    }

    #[tokio::test]
    async fn status_without_the_resource_is_a_failure_not_a_promotion() {
        let stubs = Stubs::new("Secondary", &[0], "[]");
        let err = promote(&stubs, false)
            .await
            .expect_err("must not promote blind");
        assert!(
            !err.is_blocked() && err.to_string().contains("does not list resource data"),
            "{err}"
        );
        assert_eq!(stubs.primary_calls(), 0);
    }

    /// converge's own reconnection makes the stream's StandAlone of that connection stale
    /// (`StandAloneView`); one that fails leaves the connection as it was, and the view too.
    #[tokio::test]
    async fn a_reconnection_makes_the_streams_standalone_stale_unless_it_fails() {
        use converge_core::observe::drbdsetup_status::parse_json;
        use std::sync::Arc;

        use crate::observer::stream_view::StandAloneView;

        let status = status_json_with("StandAlone", "Unknown");
        let stubs = Stubs::new("Secondary", &[0], &status);
        let resources = parse_json(&status).expect("status parses");
        let view = Arc::new(StandAloneView::default());
        view.start(resources.iter().map(|(n, r)| (n.as_str(), r)));
        let deb2 = || Some(["deb2".to_string()].into());
        let reported = |view: &StandAloneView| {
            view.snapshot()
                .expect("a stream")
                .standalone
                .get("data")
                .cloned()
        };
        assert_eq!(reported(&view), deb2());
        let observer =
            Observer::with_stream(std::sync::Arc::new(stubs.config()), Arc::clone(&view));
        let step = Step {
            rid: ResourceId::new(Kind::Drbd, 0),
            action: Action::DrbdConnect {
                res: "data".into(),
                peer: Some("deb2".into()),
            },
            reason: String::new(),
        };
        std::fs::write(stubs.path("connect_fails"), "").expect("write");
        let err = super::super::run_step(&observer, &service(false), &step)
            .await
            .expect_err("connect fails");
        assert!(matches!(err, ActError::Failed { .. }), "{err}");
        assert_eq!(reported(&view), deb2(), "a failed connect changed nothing");
        std::fs::remove_file(stubs.path("connect_fails")).expect("remove");
        super::super::run_step(&observer, &service(false), &step)
            .await
            .expect("connect succeeds");
        assert_eq!(reported(&view), None, "stale until the stream says it anew");
        let calls = std::fs::read_to_string(stubs.path("calls")).expect("calls");
        assert_eq!(calls.matches("connect data:deb2").count(), 2, "{calls}");
    }
}
