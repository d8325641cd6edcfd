//! Names the build for `converge --version`: the git revision the binary was built from.
//!
//! Nothing here fails the build. Where the revision cannot be known (a build from a tarball has
//! no `.git`; git is not installed; git refuses a repository someone else owns) it is
//! `unknown`. A package built outside git can name it: `CONVERGE_GIT_REVISION=abc1234`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable the revision is handed to the compiler in, and read from when set
/// by whoever builds.
const VAR: &str = "CONVERGE_GIT_REVISION";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={VAR}");
    let given = std::env::var(VAR).ok().filter(|r| is_revision(r));
    let revision = given
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env={VAR}={revision}");
}

/// A revision as printed: hex digits, short or full. Anything else (a typo in the variable, a
/// message from git) is not shown as one.
fn is_revision(text: &str) -> bool {
    (4..=64).contains(&text.len()) && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// `git rev-parse --short HEAD` of the checkout this package is the top of, or `None`.
fn git_revision() -> Option<String> {
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // A tarball unpacked inside another repository (a packaging repository, say) would otherwise
    // be named by that repository's revision: only a checkout whose top is this package counts.
    let top = git(&here, &["rev-parse", "--show-toplevel"])?;
    if !same_dir(Path::new(&top), &here) {
        return None;
    }
    let revision = git(&here, &["rev-parse", "--short", "HEAD"]).filter(|r| is_revision(r))?;
    // Built again when HEAD moves: a commit, a checkout, a branch updated in place. The paths
    // come from git, so a worktree (whose `.git` is a file) is followed to its real HEAD. Only
    // paths that exist are named: cargo reruns a script every time for a missing one.
    for name in ["HEAD", "packed-refs", "refs/heads"] {
        if let Some(path) = git(&here, &["rev-parse", "--git-path", name]) {
            let path = here.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(revision)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// One git command's output, trimmed, when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}
