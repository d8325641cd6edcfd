//! DRBD configuration in drbd.conf's syntax, as two commands print it:
//! - `drbdsetup show RES`: the configuration DRBD runs with, options that differ from DRBD's
//!   defaults only (without `--show-defaults`). The file on disk may say otherwise until
//!   `drbdadm adjust` runs; this is what the kernel enforces now.
//! - `drbdadm dump RES`: the configuration files as drbdadm reads them for this host, every
//!   host's `on` section included: what `converge validate` checks a failover service against.
//!
//! Only what converge decides on is kept: the resource options' `quorum`, `on-no-quorum` and
//! `auto-promote`, and the hosts with whether each has a disk. The syntax is read strictly
//! enough to notice output it does not understand (an error names the line), loosely enough for
//! sections converge does not read: every `NAME … {` opens a section, `}` closes one, and
//! `KEY VALUE;` is a statement of the innermost section.

use std::collections::BTreeMap;

use serde::Serialize;

/// `quorum` of a resource's configuration.
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

/// The resource options converge reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceOptions {
    pub quorum: QuorumPolicy,
    /// `on-no-quorum` as printed (`io-error`, `suspend-io`); `None`: DRBD's default.
    pub on_no_quorum: Option<String>,
    /// `auto-promote` as printed (`no`, `yes`); `None`: DRBD's default (yes).
    pub auto_promote: Option<String>,
    /// `on-suspended-primary-outdated` as printed (`force-secondary`); `None`: DRBD's default
    /// (`disconnect`).
    pub on_suspended_primary_outdated: Option<String>,
}

impl Default for ResourceOptions {
    fn default() -> ResourceOptions {
        ResourceOptions {
            quorum: QuorumPolicy::Off,
            on_no_quorum: None,
            auto_promote: None,
            on_suspended_primary_outdated: None,
        }
    }
}

/// A host of a resource (an `on NAME` section of `drbdadm dump`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    pub name: String,
    /// Every volume has `disk none` here: a diskless node (a tiebreaker, or a client).
    pub diskless: bool,
}

/// One resource's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResourceConfig {
    pub options: ResourceOptions,
    /// In the order printed; empty for `drbdsetup show`, which names no host.
    pub hosts: Vec<Host>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command}, line {line}: {message}")]
pub struct ShowError {
    /// The command whose output it is.
    pub command: &'static str,
    pub line: usize,
    pub message: String,
}

/// The options of every resource `drbdsetup show` printed (`text`), by resource name.
pub fn parse(text: &str) -> Result<BTreeMap<String, ResourceOptions>, ShowError> {
    Ok(parse_config(text, "drbdsetup show")?
        .into_iter()
        .map(|(name, config)| (name, config.options))
        .collect())
}

/// Every resource `drbdadm dump` printed (`text`), by name.
pub fn parse_dump(text: &str) -> Result<BTreeMap<String, ResourceConfig>, ShowError> {
    parse_config(text, "drbdadm dump")
}

/// A host's disks while its section is read: `Some(true)` once a volume says `disk none`,
/// `Some(false)` once one names a disk.
#[derive(Default)]
struct HostDisks {
    name: String,
    none: Option<bool>,
}

/// Every resource of `text`, the output of `source`.
fn parse_config(
    text: &str,
    source: &'static str,
) -> Result<BTreeMap<String, ResourceConfig>, ShowError> {
    let mut out = BTreeMap::new();
    // The open sections, outermost first.
    let mut open: Vec<String> = Vec::new();
    let mut resource: Option<(String, ResourceConfig)> = None;
    let mut hosts: Vec<HostDisks> = Vec::new();
    // `disk none` in a volume of the resource itself: every host's, unless it says otherwise.
    let mut resource_diskless: Option<bool> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| ShowError {
            command: source,
            line,
            message,
        };
        let stmt = strip_comment(raw).trim();
        if stmt.is_empty() {
            continue;
        }
        if stmt == "}" {
            if open.pop().is_none() {
                return Err(err("`}` closes no section".into()));
            }
            if open.is_empty()
                && let Some((name, mut config)) = resource.take()
            {
                config.hosts = std::mem::take(&mut hosts)
                    .into_iter()
                    .map(|h| Host {
                        diskless: h.none.or(resource_diskless).unwrap_or(false),
                        name: h.name,
                    })
                    .collect();
                resource_diskless = None;
                out.insert(name, config);
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
                resource = Some((name, ResourceConfig::default()));
            } else if open.len() == 1 && word == "on" {
                let name = words
                    .next()
                    .map(unquote)
                    .ok_or_else(|| err("`on {` without a host name".into()))?;
                hosts.push(HostDisks { name, none: None });
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
        let mut words = body.split_whitespace();
        let (Some(key), value) = (words.next(), words.next().map(unquote)) else {
            continue;
        };
        let sections: Vec<&str> = open.iter().map(String::as_str).collect();
        match (&sections[1..], key) {
            // The resource's own options.
            (["options"], _) => {
                let Some((_, config)) = resource.as_mut() else {
                    continue;
                };
                let options = &mut config.options;
                match (key, value) {
                    ("quorum", Some(v)) => options.quorum = quorum_policy(&v).map_err(err)?,
                    ("on-no-quorum", Some(v)) => options.on_no_quorum = Some(v),
                    ("auto-promote", Some(v)) => options.auto_promote = Some(v),
                    ("on-suspended-primary-outdated", Some(v)) => {
                        options.on_suspended_primary_outdated = Some(v)
                    }
                    _ => {}
                }
            }
            // A host's volume (`on X { volume 0 { disk none; } }`), or a host's own `disk`.
            (["on", "volume"] | ["on"], "disk") => {
                if let (Some(host), Some(v)) = (hosts.last_mut(), value) {
                    let none = v == "none";
                    // Diskless only when every volume is.
                    host.none = Some(host.none.unwrap_or(true) && none);
                }
            }
            (["volume"], "disk") => {
                if let Some(v) = value {
                    let none = v == "none";
                    resource_diskless = Some(resource_diskless.unwrap_or(true) && none);
                }
            }
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err(ShowError {
            command: source,
            line: text.lines().count(),
            message: format!("the output ends inside `{}`", open.join(" > ")),
        });
    }
    Ok(out)
}

/// What `drbdadm dump` says of a resource beyond [`ResourceConfig`], for `converge doctor`:
/// kept apart so that the model placement decides on stays as small as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DumpDetails {
    /// `on-no-data-accessible` as printed; `None`: DRBD's default (io-error).
    pub on_no_data_accessible: Option<String>,
    /// Backing disks named in the resource's own volumes: every host's unless its `on`
    /// section names its own.
    pub disks: Vec<String>,
    /// Backing disks named in each host's `on` section, by host.
    pub host_disks: BTreeMap<String, Vec<String>>,
}

impl DumpDetails {
    /// The backing disks of `host` (`disk none` left out).
    pub fn disks_of(&self, host: &str) -> &[String] {
        self.host_disks.get(host).unwrap_or(&self.disks)
    }
}

/// [`DumpDetails`] of every resource `drbdadm dump` printed, by name; the syntax is read as
/// [`parse_dump`] reads it, so what one refuses the other does too.
pub fn parse_dump_details(text: &str) -> Result<BTreeMap<String, DumpDetails>, ShowError> {
    // The same walk as parse_config validates the syntax first.
    parse_config(text, "drbdadm dump")?;
    let mut out: BTreeMap<String, DumpDetails> = BTreeMap::new();
    let mut open: Vec<(String, Option<String>)> = Vec::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let stmt = strip_comment(raw).trim();
        if stmt.is_empty() {
            continue;
        }
        if stmt == "}" {
            open.pop();
            if open.is_empty() {
                current = None;
            }
            continue;
        }
        if let Some(head) = stmt.strip_suffix('{') {
            let mut words = head.split_whitespace();
            let word = words.next().unwrap_or_default().to_string();
            let name = words.next().map(unquote);
            if open.is_empty() {
                current = name.clone();
                if let Some(res) = &name {
                    out.entry(res.clone()).or_default();
                }
            }
            open.push((word, name));
            continue;
        }
        let (Some(res), Some(body)) = (current.as_ref(), stmt.strip_suffix(';')) else {
            continue;
        };
        let mut words = body.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next().map(unquote)) else {
            continue;
        };
        let Some(details) = out.get_mut(res) else {
            continue;
        };
        let sections: Vec<&str> = open.iter().skip(1).map(|(w, _)| w.as_str()).collect();
        match (sections.as_slice(), key) {
            (["options"], "on-no-data-accessible") => details.on_no_data_accessible = Some(value),
            (["volume"], "disk") if value != "none" => details.disks.push(value),
            // `disk none` still says the host has its own (no) disks.
            (["on", "volume"] | ["on"], "disk") => {
                if let Some((_, Some(host))) = open.get(1) {
                    let own = details.host_disks.entry(host.clone()).or_default();
                    if value != "none" {
                        own.push(value);
                    }
                }
            }
            _ => {}
        }
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
                on_suspended_primary_outdated: None,
            }
        );
        assert!(all["data"].quorum.is_enforced());
        assert_eq!(
            all["plain"],
            ResourceOptions {
                quorum: QuorumPolicy::Off,
                on_no_quorum: None,
                auto_promote: None,
                on_suspended_primary_outdated: None,
            }
        );
        assert!(!all["plain"].quorum.is_enforced());
        assert!(
            parse("# No currently configured DRBD found.\n")
                .expect("parses")
                .is_empty()
        );
    }

    /// As drbdadm 9.x dumps docs/examples/failover-tiebreaker.res on deb1.
    const DUMP_TIEBREAKER: &str =
        include_str!("../../tests/fixtures/drbd_conf/dump-tiebreaker.txt");
    /// As drbdadm 9.x dumps docs/examples/freeze-tiebreaker.res on deb1.
    const DUMP_FREEZE: &str = include_str!("../../tests/fixtures/drbd_conf/dump-freeze.txt");
    /// Two hosts, no third; auto-promote on and suspend-io.
    const DUMP_TWO_NODES: &str = include_str!("../../tests/fixtures/drbd_conf/dump-two-nodes.txt");

    fn host(name: &str, diskless: bool) -> Host {
        Host {
            name: name.into(),
            diskless,
        }
    }

    #[test]
    fn a_dump_names_every_host_with_its_disk_and_the_options() {
        let all = parse_dump(DUMP_TIEBREAKER).expect("parses");
        let data = &all["data"];
        assert_eq!(
            data.hosts,
            [host("deb1", false), host("deb2", false), host("tb", true)]
        );
        assert_eq!(
            data.options,
            ResourceOptions {
                quorum: QuorumPolicy::Majority,
                on_no_quorum: Some("io-error".into()),
                auto_promote: Some("no".into()),
                on_suspended_primary_outdated: None,
            }
        );
        let web = &parse_dump(DUMP_TWO_NODES).expect("parses")["web"];
        assert_eq!(web.hosts, [host("deb1", false), host("deb2", false)]);
        assert_eq!(web.options.auto_promote.as_deref(), Some("yes"));
        assert_eq!(web.options.on_no_quorum.as_deref(), Some("suspend-io"));
        // docs/examples/freeze-tiebreaker.res, for `on_quorum_loss: freeze`.
        let freeze = &parse_dump(DUMP_FREEZE).expect("parses")["data"];
        assert_eq!(
            freeze.options,
            ResourceOptions {
                quorum: QuorumPolicy::Majority,
                on_no_quorum: Some("suspend-io".into()),
                auto_promote: Some("no".into()),
                on_suspended_primary_outdated: Some("force-secondary".into()),
            }
        );
    }

    #[test]
    fn a_host_is_diskless_only_when_every_volume_is() {
        let text = |tb: &str, shared: &str| {
            format!(
                "resource r {{\n    volume 0 {{\n        disk {shared};\n    }}\n    on a {{\n        node-id 0;\n    }}\n    on tb {{\n{tb}    }}\n}}\n"
            )
        };
        let cases = [
            // tb's own volumes: all none, some none, none at all (the resource's then).
            (
                "        volume 0 {\n            disk none;\n        }\n        volume 1 {\n            disk none;\n        }\n",
                "/dev/x",
                [false, true],
            ),
            (
                "        volume 0 {\n            disk none;\n        }\n        volume 1 {\n            disk /dev/y;\n        }\n",
                "/dev/x",
                [false, false],
            ),
            ("        node-id 1;\n", "none", [true, true]),
            ("        disk none;\n", "/dev/x", [false, true]),
        ];
        for (tb, shared, expected) in cases {
            let text = text(tb, shared);
            let r = &parse_dump(&text).expect(&text)["r"];
            let diskless: Vec<bool> = r.hosts.iter().map(|h| h.diskless).collect();
            assert_eq!(diskless, expected, "{text}");
        }
    }

    #[test]
    fn show_reads_no_host_and_errors_say_which_command() {
        assert!(parse_dump(QUORUM).expect("parses")["data"].hosts.is_empty());
        let e = parse_dump("}\n").expect_err("closes nothing");
        assert!(e.to_string().starts_with("drbdadm dump, line 1:"), "{e}");
        let e = parse("}\n").expect_err("closes nothing");
        assert!(e.to_string().starts_with("drbdsetup show, line 1:"), "{e}");
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

    #[test]
    fn details_of_a_dump_name_the_disks_per_host_and_on_no_data_accessible() {
        let text = "resource data {\n    volume 0 {\n        device /dev/drbd0 minor 0;\n        disk /dev/vg0/data;\n        meta-disk internal;\n    }\n    on deb1 {\n        node-id 0;\n    }\n    on deb2 {\n        volume 0 {\n            disk /dev/sdb1;\n        }\n    }\n    on tb {\n        volume 0 {\n            disk none;\n        }\n    }\n    options {\n        on-no-data-accessible suspend-io;\n    }\n}\n";
        let all = parse_dump_details(text).expect("parses");
        let data = &all["data"];
        assert_eq!(data.on_no_data_accessible.as_deref(), Some("suspend-io"));
        assert_eq!(data.disks_of("deb1"), ["/dev/vg0/data".to_string()]);
        assert_eq!(data.disks_of("deb2"), ["/dev/sdb1".to_string()]);
        assert!(data.disks_of("tb").is_empty());
        assert!(parse_dump_details("resource x {\n").is_err());
    }
}
