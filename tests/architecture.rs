//! The layering, checked: no module of a crate depends on another that depends back on it
//! (directly or through others), at any level of the module tree; and the core crate does no
//! I/O beyond reading files: no tokio, no libc, no spawning.
//!
//! The crates themselves cannot form a cycle (cargo refuses it). Modules can, and a cycle is how
//! layers quietly merge: these tests read the sources, as a reviewer drawing the imports would.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");

/// Each crate's source directory and its root file.
const CRATES: &[(&str, &str, &str)] = &[
    ("converge-core", "crates/core/src", "lib.rs"),
    ("converge-node", "crates/node/src", "lib.rs"),
    ("converge-sim", "crates/sim/src", "lib.rs"),
    ("converge", "src", "main.rs"),
];

type Module = Vec<String>;

/// The modules of a crate, from its files: `a.rs` and `a/mod.rs` are `a`, `a/b.rs` is `a::b`.
/// `tests.rs` files are test modules and left out, as is the binary of a library crate.
fn modules(src: &Path, root: &str) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, PathBuf>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 file name")
                .to_string();
            if path.is_dir() {
                let mut module = prefix.to_vec();
                module.push(name);
                walk(&path, &module, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let module = match stem {
                    "mod" => prefix.to_vec(),
                    "tests" => continue,
                    _ => {
                        let mut module = prefix.to_vec();
                        module.push(stem.to_string());
                        module
                    }
                };
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    // The root file is the crate itself; another top-level binary is not one of its modules.
    out.retain(|module, _| module.len() != 1 || !["lib", "main"].contains(&module[0].as_str()));
    out.insert(Vec::new(), src.join(root));
    out
}

/// Rust source without comments, string and character literals, and without test-only items
/// (`#[cfg(test)]` and what follows it: an item up to its `;` or its closing brace).
fn code_of(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |end| end + 2);
        } else if let Some(len) = raw_string_len(rest) {
            out.push_str("\"\"");
            i += len;
        } else if rest.starts_with('"') || rest.starts_with("b\"") {
            let start = if rest.starts_with('b') { 2 } else { 1 };
            let mut j = start;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            out.push_str("\"\"");
            i += (j + 1).min(rest.len());
        } else if let Some(len) = char_literal_len(rest) {
            out.push_str("' '");
            i += len;
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
    strip_test_items(&out)
}

/// `r"…"`, `r#"…"#`, `br"…"`: the length, when `text` starts with one.
fn raw_string_len(text: &str) -> Option<usize> {
    let after_b = text.strip_prefix('b').unwrap_or(text);
    let after_r = after_b.strip_prefix('r')?;
    let hashes = after_r.len() - after_r.trim_start_matches('#').len();
    let body = after_r[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let end = body.find(&close)?;
    Some(text.len() - body.len() + end + close.len())
}

/// `'a'`, `'\n'`, `'\u{1F600}'`: the length, when `text` starts with a character literal
/// (not a lifetime such as `'a`).
fn char_literal_len(text: &str) -> Option<usize> {
    let body = text.strip_prefix('\'')?;
    if let Some(escaped) = body.strip_prefix('\\') {
        let end = escaped.find('\'')?;
        return Some(2 + end + 1);
    }
    let c = body.chars().next()?;
    body[c.len_utf8()..]
        .starts_with('\'')
        .then_some(1 + c.len_utf8() + 1)
}

fn strip_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every path starting with `crate` or `super` in `code`, as its segments (use trees
/// expanded: `crate::a::{b, c::d}` gives `crate::a::b` and `crate::a::c::d`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut out = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let starts = matches!(token.as_str(), "crate" | "super")
            && (i == 0 || tokens[i - 1] != "::")
            && tokens.get(i + 1).is_some_and(|t| t == "::");
        if starts {
            let mut j = i;
            tree(&tokens, &mut j, Vec::new(), &mut out);
        }
    }
    out
}

fn tokens(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut end = at + c.len_utf8();
            while let Some(&(i, n)) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    end = i + n.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(code[at..end].to_string());
        } else if c == ':' && chars.peek().is_some_and(|&(_, n)| n == ':') {
            chars.next();
            tokens.push("::".to_string());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// Reads one use tree at `tokens[*i]`, appending the paths it names to `out`.
fn tree(tokens: &[String], i: &mut usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        match tokens.get(*i).map(String::as_str) {
            Some("{") => {
                *i += 1;
                loop {
                    tree(tokens, i, prefix.clone(), out);
                    match tokens.get(*i).map(String::as_str) {
                        Some(",") => *i += 1,
                        Some("}") => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    if tokens.get(*i).map(String::as_str) == Some("}") {
                        *i += 1;
                        return;
                    }
                }
            }
            Some(word) if word.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                if word != "self" {
                    prefix.push(word.to_string());
                }
                *i += 1;
                if tokens.get(*i).map(String::as_str) == Some("::") {
                    *i += 1;
                    continue;
                }
                out.push(prefix);
                return;
            }
            _ => {
                // `*`, or the end of the path.
                if tokens.get(*i).map(String::as_str) == Some("*") {
                    *i += 1;
                }
                out.push(prefix);
                return;
            }
        }
    }
}

/// The module a path names, seen from `from`: the deepest module its segments reach.
fn resolve(path: &[String], from: &Module, known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut module: Module = Vec::new();
    let mut segments = path.iter().peekable();
    match segments.next().map(String::as_str) {
        Some("crate") => {}
        Some("super") => {
            module = from.clone();
            module.pop()?;
            while segments.peek().map(|s| s.as_str()) == Some("super") {
                segments.next();
                module.pop()?;
            }
        }
        _ => return None,
    }
    for segment in segments {
        let mut next = module.clone();
        next.push(segment.clone());
        if !known.contains_key(&next) {
            break;
        }
        module = next;
    }
    Some(module)
}

/// The dependencies between sibling modules, at every level: an edge from `a::x::y` to
/// `a::z` is an edge `x → z` among the children of `a`. A module's use of its own parent or
/// children is not one (a parent declares and re-exports its children).
fn sibling_edges(crate_src: &Path, root: &str) -> BTreeMap<Module, BTreeSet<(String, String)>> {
    let known = modules(crate_src, root);
    let mut edges: BTreeMap<Module, BTreeSet<(String, String)>> = BTreeMap::new();
    for (module, file) in &known {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for path in paths(&code_of(&text)) {
            let Some(target) = resolve(&path, module, &known) else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue;
            }
            edges
                .entry(module[..common].to_vec())
                .or_default()
                .insert((module[common].clone(), target[common].clone()));
        }
    }
    edges
}

/// A cycle among `edges`, if there is one, as the modules on it.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeSet<(String, String)>,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), false);
        stack.push(node.to_string());
        for (_, to) in edges.iter().filter(|(from, _)| from == node) {
            match state.get(to) {
                Some(false) => {
                    let start = stack.iter().position(|n| n == to).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(to.clone());
                    return Some(cycle);
                }
                Some(true) => {}
                None => {
                    if let Some(cycle) = visit(to, edges, state, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), true);
        None
    }
    let mut state = BTreeMap::new();
    for (from, _) in edges {
        if !state.contains_key(from) {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(from, edges, &mut state, &mut stack) {
                return Some(cycle);
            }
        }
    }
    None
}

#[test]
fn no_module_depends_on_one_that_depends_back_on_it() {
    let mut cycles = Vec::new();
    for (name, src, root) in CRATES {
        let src = Path::new(REPOSITORY).join(src);
        for (parent, edges) in sibling_edges(&src, root) {
            if let Some(cycle) = find_cycle(&edges) {
                let within = if parent.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}::{}", parent.join("::"))
                };
                cycles.push(format!("in {within}: {}", cycle.join(" → ")));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_cycles_through_every_level() {
    // A check that cannot fail proves nothing: a crate with a cycle two levels down.
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    };
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write("a/mod.rs", "pub mod x;\n");
    write(
        "a/x.rs",
        "use crate::b::{self, y::{Y, z}};\n// use crate::c;\nconst S: &str = \"crate::c\";\n",
    );
    write("b/mod.rs", "pub mod y;\n");
    write(
        "b/y.rs",
        "pub struct Y;\n#[cfg(test)]\nmod tests { use crate::a::x; }\n",
    );
    let edges = sibling_edges(dir.path(), "lib.rs");
    assert_eq!(
        edges.get(&Vec::new()),
        Some(&BTreeSet::from([("a".to_string(), "b".to_string())])),
        "comments, strings and test code are not dependencies"
    );
    assert_eq!(find_cycle(&edges[&Vec::new()]), None);
    write(
        "b/y.rs",
        "pub struct Y;\npub fn f() -> usize { super::super::a::x::N }\n",
    );
    let edges = sibling_edges(dir.path(), "lib.rs");
    assert_eq!(
        find_cycle(&edges[&Vec::new()]),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
}

#[test]
fn the_core_crate_spawns_nothing_and_uses_no_runtime() {
    let manifest = fs::read_to_string(Path::new(REPOSITORY).join("crates/core/Cargo.toml"))
        .expect("crates/core/Cargo.toml");
    let dependencies: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(['.', '=', ' ']).next())
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    assert!(dependencies.contains(&"serde"), "{dependencies:?}");
    for forbidden in ["tokio", "libc", "rustix", "nix", "notify", "converge-node"] {
        assert!(
            !dependencies.contains(&forbidden),
            "converge-core depends on {forbidden}"
        );
    }
    let known = modules(&Path::new(REPOSITORY).join("crates/core/src"), "lib.rs");
    for file in known.values() {
        let code = code_of(&fs::read_to_string(file).expect("read"));
        for forbidden in ["std::process", "Command::new", "tokio::", "libc::"] {
            assert!(
                !code.contains(forbidden),
                "{} uses {forbidden}",
                file.display()
            );
        }
    }
}
