//! `drbdsetup show RES`: the configuration DRBD runs with, in drbd.conf's syntax, options that
//! differ from DRBD's defaults only (without `--show-defaults`). Only what converge decides on is
//! kept: the resource options' `quorum`, `on-no-quorum` and `auto-promote`. The file on disk may
//! say otherwise until `drbdadm adjust` runs; this is what the kernel enforces now.
//!
//! The syntax is read strictly enough to notice output it does not understand (an error names
//! the line), loosely enough for sections converge does not read: every `NAME … {` opens a
//! section, `}` closes one, and `KEY VALUE;` is a statement of the innermost section.

use std::collections::BTreeMap;

use serde::Serialize;

/// `quorum` of a resource's running configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuorumPolicy {
    /// Not printed (DRBD's default) or `off`: quorum is not enforced, and DRBD reports quorum
    /// on every node whatever it is connected to.
    Off,
    Majority,
    All,
    /// At least this many nodes, this one included.
    AtLeast(u32),
}

impl QuorumPolicy {
    pub fn is_enforced(self) -> bool {
        self != QuorumPolicy::Off
    }
}

/// The resource options converge reads from `drbdsetup show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceOptions {
    pub quorum: QuorumPolicy,
    /// `on-no-quorum` as printed (`io-error`, `suspend-io`); `None`: DRBD's default.
    pub on_no_quorum: Option<String>,
    /// `auto-promote` as printed (`no`, `yes`); `None`: DRBD's default (yes).
    pub auto_promote: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("drbdsetup show, line {line}: {message}")]
pub struct ShowError {
    pub line: usize,
    pub message: String,
}

/// The options of every resource `text` shows, by resource name.
pub fn parse(text: &str) -> Result<BTreeMap<String, ResourceOptions>, ShowError> {
    let mut out = BTreeMap::new();
    // The open sections, outermost first: (section word, resource name for `resource`).
    let mut open: Vec<String> = Vec::new();
    let mut resource: Option<(String, ResourceOptions)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| ShowError { line, message };
        let stmt = strip_comment(raw).trim();
        if stmt.is_empty() {
            continue;
        }
        if stmt == "}" {
            if open.pop().is_none() {
                return Err(err("`}` closes no section".into()));
            }
            if open.is_empty()
                && let Some((name, options)) = resource.take()
            {
                out.insert(name, options);
            }
            continue;
        }
        if let Some(head) = stmt.strip_suffix('{') {
            let mut words = head.split_whitespace();
            let Some(word) = words.next() else {
                return Err(err("a section without a name".into()));
            };
            if open.is_empty() {
                if word != "resource" {
                    return Err(err(format!("expected `resource NAME {{`, found `{stmt}`")));
                }
                let name = words
                    .next()
                    .map(unquote)
                    .ok_or_else(|| err("`resource {` without a name".into()))?;
                resource = Some((
                    name,
                    ResourceOptions {
                        quorum: QuorumPolicy::Off,
                        on_no_quorum: None,
                        auto_promote: None,
                    },
                ));
            }
            open.push(word.to_string());
            continue;
        }
        let Some(body) = stmt.strip_suffix(';') else {
            return Err(err(format!(
                "expected `KEY VALUE;`, `NAME {{` or `}}`, found `{stmt}`"
            )));
        };
        if open.is_empty() {
            return Err(err(format!("`{stmt}` outside a resource")));
        }
        // Only the resource's own `options` section is read.
        if open.len() != 2 || open[1] != "options" {
            continue;
        }
        let mut words = body.split_whitespace();
        let (Some(key), value) = (words.next(), words.next()) else {
            continue;
        };
        let Some((_, options)) = resource.as_mut() else {
            continue;
        };
        let value = value.map(unquote);
        match (key, value) {
            ("quorum", Some(v)) => options.quorum = quorum_policy(&v).map_err(err)?,
            ("on-no-quorum", Some(v)) => options.on_no_quorum = Some(v),
            ("auto-promote", Some(v)) => options.auto_promote = Some(v),
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err(ShowError {
            line: text.lines().count(),
            message: format!("the output ends inside `{}`", open.join(" > ")),
        });
    }
    Ok(out)
}

/// The line without its `# comment` (drbdsetup adds units: `65536; # bytes`); a `#` inside
/// quotes is text.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(word: &str) -> String {
    word.trim_matches('"').to_string()
}

fn quorum_policy(value: &str) -> Result<QuorumPolicy, String> {
    match value {
        "off" => Ok(QuorumPolicy::Off),
        "majority" => Ok(QuorumPolicy::Majority),
        "all" => Ok(QuorumPolicy::All),
        n => n
            .parse::<u32>()
            .map(QuorumPolicy::AtLeast)
            .map_err(|_| format!("quorum `{n}`: expected off, majority, all or a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As drbd-utils 9 prints a three-node resource with quorum (the sections converge does
    /// not read included, so that skipping them is tested too).
    const QUORUM: &str = r#"resource "data" {
    options {
        auto-promote    	no;
        quorum          	majority;
        on-no-quorum    	io-error;
    }
    _this_host {
        node-id			0;
        volume 0 {
            device			minor 0;
            disk			"/dev/loop3";
            meta-disk			internal;
            disk {
                rs-discard-granularity	65536; # bytes
            }
        }
    }
    connection {
        _peer_node_id 1;
        path {
            _this_host ipv4 127.0.0.1:7789;
            _remote_host ipv4 127.0.0.2:7789;
        }
        net {
            _name               	"deb2";
        }
    }
}

resource "plain" {
    _this_host {
        node-id			1;
    }
}
"#;

    #[test]
    fn options_of_each_resource_and_defaults_where_nothing_is_printed() {
        let all = parse(QUORUM).expect("parses");
        assert_eq!(
            all["data"],
            ResourceOptions {
                quorum: QuorumPolicy::Majority,
                on_no_quorum: Some("io-error".into()),
                auto_promote: Some("no".into()),
            }
        );
        assert!(all["data"].quorum.is_enforced());
        assert_eq!(
            all["plain"],
            ResourceOptions {
                quorum: QuorumPolicy::Off,
                on_no_quorum: None,
                auto_promote: None,
            }
        );
        assert!(!all["plain"].quorum.is_enforced());
        assert!(
            parse("# No currently configured DRBD found.\n")
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn comments_are_cut_but_not_inside_quotes() {
        assert_eq!(strip_comment("a 1; # bytes"), "a 1; ");
        assert_eq!(strip_comment(r#"_name "deb#2"; # x"#), r#"_name "deb#2"; "#);
        let text = "resource \"r#1\" { # the resource\n    options { quorum 2; }\n}\n";
        // `options { quorum 2; }` on one line is not how drbdsetup prints: an error, located.
        assert_eq!(parse(text).expect_err("one-line section").line, 2);
        let text =
            "resource \"r#1\" { # the resource\n    options {\n        quorum 2;\n    }\n}\n";
        assert_eq!(
            parse(text).expect("parses")["r#1"].quorum,
            QuorumPolicy::AtLeast(2)
        );
    }

    #[test]
    fn quorum_words_and_numbers() {
        for (word, policy) in [
            ("off", QuorumPolicy::Off),
            ("all", QuorumPolicy::All),
            ("2", QuorumPolicy::AtLeast(2)),
        ] {
            let text =
                format!("resource r {{\n    options {{\n        quorum {word};\n    }}\n}}\n");
            assert_eq!(parse(&text).expect("parses")["r"].quorum, policy);
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "resource r {\n    options {\n        quorum sometimes;\n    }\n}\n",
                3,
                "quorum `sometimes`",
            ),
            ("}\n", 1, "closes no section"),
            (
                "resource r {\n    options {\n",
                2,
                "ends inside `resource > options`",
            ),
            (
                "resource r {\n    garbage here\n}\n",
                2,
                "expected `KEY VALUE;`",
            ),
            ("options {\n}\n", 1, "expected `resource NAME {`"),
            ("quorum majority;\n", 1, "outside a resource"),
        ];
        for (text, line, what) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {e}");
        }
    }
}
