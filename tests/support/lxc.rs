//! What the tests with real LXC containers share: LXC keeps container configurations in the
//! host's lxcpath, outside every namespace, so each test names its containers uniquely
//! (`PREFIX` `TAG-PID`, PID the test binary's) and the parent process destroys any its
//! namespace child left behind (killed, or panicking in a way that skipped the teardown).

use std::path::Path;

use converge_sim::sandbox::{destroy_lxc, lxc_containers, missing_lxc_programs};
use converge_sim::testing::is_root;

/// Set by `converge_sim::testing::in_namespace` in the re-run child.
const INSIDE: &str = "CONVERGE_TEST_NAMESPACE_WORK";

/// The container's name for test `tag`: the same in the parent and in its namespace child
/// (`unshare` execs the child, whose parent is this test binary).
pub fn container_name(prefix: &str, tag: &str) -> String {
    let pid = if std::env::var_os(INSIDE).is_some() {
        std::os::unix::process::parent_id()
    } else {
        std::process::id()
    };
    format!("{prefix}{tag}-{pid}")
}

/// In the parent: destroys, when the test ends however it ends, every container named with
/// `prefix` this test binary made, and `name`.
pub struct Sweep {
    prefix: &'static str,
    name: Option<String>,
}

impl Drop for Sweep {
    fn drop(&mut self) {
        let pid = format!("-{}", std::process::id());
        let mut leftovers: Vec<String> = lxc_containers(self.prefix)
            .into_iter()
            .filter(|n| n.ends_with(&pid))
            .collect();
        if let Some(name) = &self.name
            && !leftovers.contains(name)
        {
            leftovers.push(name.clone());
        }
        for name in leftovers {
            if let Err(e) = destroy_lxc(&name) {
                eprintln!("cannot destroy LXC container {name}: {e}");
            }
        }
    }
}

/// Runs `scenario` through `in_namespace` (one of `converge_sim::testing`'s), with the LXC
/// programs checked first (in CI a missing one is a failure) and the containers named with
/// `prefix` (and `name`) swept afterwards.
pub fn lxc_test(
    test: &str,
    prefix: &'static str,
    name: Option<String>,
    in_namespace: fn(&str, fn(&Path)),
    scenario: fn(&Path),
) {
    if std::env::var_os(INSIDE).is_none() && is_root() {
        let missing = missing_lxc_programs();
        if !missing.is_empty() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: not installed in CI: {}",
                missing.join(", ")
            );
            eprintln!("skipping {test}: not installed: {}", missing.join(", "));
            return;
        }
    }
    let _sweep =
        (std::env::var_os(INSIDE).is_none() && is_root()).then_some(Sweep { prefix, name });
    in_namespace(test, scenario);
}
