//! The simulator's text outputs, shaped like drbdsetup 9.22's (and DRBD's /proc/drbd): `status`
//! (text and `--json`), `show`, `role`/`cstate`/`dstate`, and the /proc/drbd stand-in.

use std::fmt::Write as _;

use super::drbd_state::{Backing, Resource, State};
use super::drbd_view::{self, Peers};

/// Which DRBD the simulator pretends to be; it shapes /proc/drbd and `--version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    V84,
    V9,
}

impl Dialect {
    pub fn parse(text: &str) -> Option<Dialect> {
        match text {
            "9" | "9.2" | "9.2.8" => Some(Dialect::V9),
            "8.4" | "8.4.11" => Some(Dialect::V84),
            _ => None,
        }
    }

    fn version(self) -> (&'static str, &'static str) {
        match self {
            Dialect::V9 => ("9.2.8", "api:2/proto:86-122"),
            Dialect::V84 => ("8.4.11", "api:1/proto:86-101"),
        }
    }
}

pub fn version_text(dialect: Dialect) -> String {
    let (version, _) = dialect.version();
    let code = version
        .split('.')
        .filter_map(|p| p.parse::<u32>().ok())
        .fold(0u32, |acc, p| (acc << 8) | p);
    format!(
        "DRBDADM_BUILDTAG=converge\\ simulator\n\
         DRBDADM_API_VERSION={api}\n\
         DRBD_KERNEL_VERSION_CODE=0x{code:06x}\n\
         DRBD_KERNEL_VERSION={version}\n\
         DRBDADM_VERSION_CODE=0x091600\n\
         DRBDADM_VERSION=9.22.0\n",
        api = if dialect == Dialect::V9 { 2 } else { 1 },
    )
}

fn selected<'a>(state: &'a State, filter: Option<&'a str>) -> impl Iterator<Item = &'a Resource> {
    state
        .resources
        .values()
        .filter(move |r| filter.is_none_or(|f| f == r.name))
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct StatusOpts {
    pub verbose: bool,
    /// stdout is a terminal (drbdsetup then leaves out `client:no`).
    pub tty: bool,
}

/// `drbdsetup status` without `--json`.
pub fn status_text(
    state: &State,
    peers: &dyn Peers,
    filter: Option<&str>,
    opts: StatusOpts,
    open: &mut dyn FnMut(&Backing) -> bool,
) -> String {
    let mut out = String::new();
    if state.resources.is_empty() {
        out.push_str("# No currently configured DRBD found.\n");
    }
    let v = opts.verbose;
    for res in selected(state, filter) {
        out.push_str(&res.name);
        if v {
            let _ = write!(out, " node-id:{}", res.node_id);
        }
        let _ = write!(out, " role:{}", res.role.as_str());
        // drbdsetup shows a suspension unasked (resource_status in drbdsetup.c).
        let suspended = drbd_view::suspended_quorum(res);
        if v || suspended {
            let _ = write!(out, " suspended:{}", drbd_view::suspended_word(suspended));
        }
        if v {
            out.push_str(if res.force_io_failures {
                " force-io-failures:yes"
            } else {
                " force-io-failures:no"
            });
        }
        out.push('\n');

        let single = res.devices.len() == 1;
        for dev in res.devices.values() {
            let mut line = Vec::new();
            if v || !(single && dev.volume == 0) {
                line.push(format!("volume:{}", dev.volume));
                if v {
                    line.push(format!("minor:{}", dev.minor));
                }
            }
            line.push(format!("disk:{}", dev.disk));
            if dev.disk == "Diskless" && (v || !opts.tty) {
                line.push(format!("client:{}", yes_no(dev.client)));
            }
            if v {
                let backing = dev.backing.as_ref().map_or("none", |b| b.lower.as_str());
                line.push(format!("backing_dev:{backing}"));
            }
            // drbdsetup shows a missing quorum even when not verbose.
            if v || !dev.quorum {
                line.push(format!("quorum:{}", yes_no(dev.quorum)));
            }
            let is_open = dev.backing.as_ref().is_some_and(&mut *open);
            line.push(format!("open:{}", yes_no(is_open)));
            let _ = writeln!(out, "  {}", line.join(" "));
        }

        for conn in res.connections.values() {
            let view = peers.view(res, conn);
            let mut line = Vec::new();
            if !conn.name.is_empty() {
                line.push(conn.name.clone());
            }
            if v || conn.name.is_empty() {
                line.push(format!("node-id:{}", conn.peer_node_id));
            }
            if v || !view.connected {
                line.push(format!("connection:{}", view.cstate));
            }
            if v || view.connected {
                line.push(format!("role:{}", view.peer_role.as_str()));
                if v {
                    line.push("tls:no".to_string());
                }
            }
            if v {
                line.push("congested:no ap-in-flight:0 rs-in-flight:0".to_string());
            }
            let _ = writeln!(out, "  {}", line.join(" "));
            if !(v || view.connected) {
                continue;
            }
            for dev in res.devices.values() {
                let replication = view.replication(dev.volume);
                let peer_disk = view.peer_disk(dev.volume);
                let mut line = Vec::new();
                if v || !(single && dev.volume == 0) {
                    line.push(format!("volume:{}", dev.volume));
                }
                // drbdsetup shows a resync (SyncSource, SyncTarget) even when not verbose.
                if v || !matches!(replication, "Established" | "Off") {
                    line.push(format!("replication:{replication}"));
                }
                if v || view.connected || peer_disk != "DUnknown" {
                    line.push(format!("peer-disk:{peer_disk}"));
                    if peer_disk == "Diskless" && (v || !opts.tty) {
                        line.push(format!(
                            "peer-client:{}",
                            yes_no(conn.peer_client(dev.volume))
                        ));
                    }
                    if v {
                        line.push("resync-suspended:no".to_string());
                    }
                }
                let _ = writeln!(out, "    {}", line.join(" "));
            }
        }
        out.push('\n');
    }
    out
}

fn json_str(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// An endpoint as `new-path` got it (`ipv4:10.0.0.1:7789`, `ipv6:[::1]:7789`, `10.0.0.1:7789`):
/// family, address, port (drbdsetup's default port is 7788).
pub fn split_endpoint(text: &str) -> (String, String, u16) {
    let text = text
        .strip_prefix("local:")
        .or_else(|| text.strip_prefix("peer:"))
        .unwrap_or(text);
    let (family, rest) = match text.split_once(':') {
        Some((f, rest)) if ["ipv4", "ipv6", "sdp", "ssocks"].contains(&f) => (f, rest),
        _ => ("ipv4", text),
    };
    let (address, port) = if let Some(inner) = rest.strip_prefix('[') {
        match inner.split_once(']') {
            Some((a, p)) => (a, p.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (inner, None),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((a, p)) => (a, p.parse().ok()),
            None => (rest, None),
        }
    };
    (
        family.to_string(),
        address.to_string(),
        port.unwrap_or(7788),
    )
}

/// The endpoint as drbdsetup prints it in events2 (`ipv4:10.0.0.1:7789`).
pub fn canonical_endpoint(text: &str) -> String {
    let (family, address, port) = split_endpoint(text);
    if family == "ipv6" {
        format!("{family}:[{address}]:{port}")
    } else {
        format!("{family}:{address}:{port}")
    }
}

fn endpoint_json(text: &str, indent: &str) -> String {
    let (family, address, port) = split_endpoint(text);
    format!(
        "{indent}\"address\": {},\n{indent}\"port\": {port},\n{indent}\"family\": {}\n",
        json_str(&address),
        json_str(&family)
    )
}

/// `drbdsetup status --json`, with drbdsetup's own layout (it prints JSON by hand).
pub fn status_json(
    state: &State,
    peers: &dyn Peers,
    filter: Option<&str>,
    open: &mut dyn FnMut(&Backing) -> bool,
) -> String {
    let mut out = String::from("[\n");
    let mut first = true;
    for res in selected(state, filter) {
        if !first {
            out.push_str(",\n");
        }
        first = false;
        let _ = write!(
            out,
            "{{\n  \"name\": {},\n  \"node-id\": {},\n  \"role\": \"{}\",\n  \"suspended\": {suspended},\n  \"suspended-user\": false,\n  \"suspended-no-data\": false,\n  \"suspended-fencing\": false,\n  \"suspended-quorum\": {suspended},\n  \"force-io-failures\": {force_io_failures},\n  \"write-ordering\": \"flush\",\n  \"devices\": [\n",
            json_str(&res.name),
            res.node_id,
            res.role.as_str(),
            suspended = drbd_view::suspended_quorum(res),
            force_io_failures = res.force_io_failures,
        );
        let devices: Vec<String> = res
            .devices
            .values()
            .map(|dev| {
                let is_open = dev.backing.as_ref().is_some_and(&mut *open);
                let size = dev.backing.as_ref().map_or(0, |b| b.size_bytes / 1024);
                let (client, quorum) = (dev.client, dev.quorum);
                format!(
                    "    {{\n      \"volume\": {},\n      \"minor\": {},\n      \"disk-state\": \"{}\",\n      \"client\": {client},\n      \"open\": {is_open},\n      \"quorum\": {quorum},\n      \"size\": {size},\n      \"read\": 0,\n      \"written\": 0,\n      \"al-writes\": 0,\n      \"bm-writes\": 0,\n      \"upper-pending\": 0,\n      \"lower-pending\": 0\n    }}",
                    dev.volume, dev.minor, dev.disk
                )
            })
            .collect();
        out.push_str(&devices.join(",\n"));
        out.push_str(" ],\n  \"connections\": [\n");
        let connections: Vec<String> = res
            .connections
            .values()
            .map(|conn| {
                let view = peers.view(res, conn);
                let mut c = format!(
                    "    {{\n      \"peer-node-id\": {},\n      \"name\": {},\n      \"connection-state\": \"{}\", \n      \"congested\": false,\n      \"peer-role\": \"{}\",\n      \"tls\": false,\n      \"ap-in-flight\": 0,\n      \"rs-in-flight\": 0,\n      \"paths\": [\n",
                    conn.peer_node_id,
                    json_str(&conn.name),
                    view.cstate,
                    view.peer_role.as_str()
                );
                let paths: Vec<String> = conn
                    .paths
                    .iter()
                    .map(|p| {
                        format!(
                            "        {{\n          \"this_host\": {{\n{}          }},\n          \"remote_host\": {{\n{}          }},\n          \"established\": {}\n        }}",
                            endpoint_json(&p.local, "            "),
                            endpoint_json(&p.remote, "            "),
                            view.connected
                        )
                    })
                    .collect();
                c.push_str(&paths.join(",\n"));
                c.push_str(" ],\n      \"peer_devices\": [\n");
                let peer_devices: Vec<String> = res
                    .devices
                    .values()
                    .map(|dev| {
                        let in_sync = if dev.backing.is_some() { 100.0 } else { 0.0 };
                        let peer_client = conn.peer_client(dev.volume);
                        format!(
                            "        {{\n          \"volume\": {},\n          \"replication-state\": \"{}\",\n          \"peer-disk-state\": \"{}\",\n          \"peer-client\": {peer_client},\n          \"resync-suspended\": \"no\",\n          \"received\": 0,\n          \"sent\": 0,\n          \"out-of-sync\": 0,\n          \"pending\": 0,\n          \"unacked\": 0,\n          \"has-sync-details\": false,\n          \"has-online-verify-details\": false,\n          \"percent-in-sync\": {in_sync:.2}\n        }}",
                            dev.volume,
                            view.replication(dev.volume),
                            view.peer_disk(dev.volume)
                        )
                    })
                    .collect();
                c.push_str(&peer_devices.join(",\n"));
                c.push_str(" ]\n    }");
                c
            })
            .collect();
        out.push_str(&connections.join(",\n"));
        out.push_str(" ]\n}");
    }
    if !first {
        out.push('\n');
    }
    out.push_str("]\n\n");
    out
}

fn options_section(out: &mut String, indent: &str, section: &str, options: &[(String, String)]) {
    if options.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}{section} {{");
    for (key, value) in options {
        let value = if value.is_empty() { "yes" } else { value };
        let _ = writeln!(out, "{indent}    {key:<16}\t{value};");
    }
    let _ = writeln!(out, "{indent}}}");
}

/// `drbdsetup show`: the configuration in drbd.conf syntax, which `drbdadm adjust` reads back.
pub fn show_text(state: &State, peers: &dyn Peers, filter: Option<&str>) -> String {
    let mut out = String::new();
    if state.resources.is_empty() {
        out.push_str("# No currently configured DRBD found.\n");
    }
    for res in selected(state, filter) {
        let _ = writeln!(out, "resource {} {{", json_str(&res.name));
        options_section(&mut out, "    ", "options", &res.options);
        out.push_str("    _this_host {\n");
        let _ = writeln!(out, "        node-id\t\t\t{};", res.node_id);
        for dev in res.devices.values() {
            let _ = writeln!(out, "        volume {} {{", dev.volume);
            let _ = writeln!(out, "            device\t\t\tminor {};", dev.minor);
            if let Some(b) = &dev.backing {
                let _ = writeln!(out, "            disk\t\t\t{};", json_str(&b.lower));
                let meta = match b.meta_index.as_str() {
                    "internal" => "internal".to_string(),
                    "flexible" => json_str(&b.meta),
                    index => format!("{} [ {index} ]", json_str(&b.meta)),
                };
                let _ = writeln!(out, "            meta-disk\t\t\t{meta};");
                options_section(&mut out, "            ", "disk", &b.options);
            } else if dev.client {
                // What `drbdadm adjust` compares with a `disk none` volume.
                out.push_str("            disk\t\t\tnone;\n");
            }
            out.push_str("        }\n");
        }
        out.push_str("    }\n");
        for conn in res.connections.values() {
            out.push_str("    connection {\n");
            let _ = writeln!(out, "        _peer_node_id {};", conn.peer_node_id);
            for path in &conn.paths {
                let (lf, la, lp) = split_endpoint(&path.local);
                let (rf, ra, rp) = split_endpoint(&path.remote);
                let bracket = |f: &str, a: &str| {
                    if f == "ipv6" {
                        format!("[{a}]")
                    } else {
                        a.to_string()
                    }
                };
                let _ = write!(
                    out,
                    "        path {{\n            _this_host {lf} {}:{lp};\n            _remote_host {rf} {}:{rp};\n        }}\n",
                    bracket(&lf, &la),
                    bracket(&rf, &ra)
                );
            }
            if peers.view(res, conn).cstate == "StandAlone" {
                out.push_str("        _is_standalone;\n");
            }
            let mut net = vec![("_name".to_string(), json_str(&conn.name))];
            net.extend(conn.net.iter().cloned());
            options_section(&mut out, "        ", "net", &net);
            for (volume, options) in &conn.peer_devices {
                if options.is_empty() {
                    continue;
                }
                let _ = writeln!(out, "        volume {volume} {{");
                options_section(&mut out, "            ", "disk", options);
                out.push_str("        }\n");
            }
            out.push_str("    }\n");
        }
        out.push_str("}\n\n");
    }
    out
}

/// `dstate`: the local disk, then one peer disk per connection.
pub fn dstate_text(res: &Resource, peers: &dyn Peers, volume: u32) -> String {
    let mut out = res
        .devices
        .get(&volume)
        .map_or_else(|| "Diskless".to_string(), |d| d.disk.clone());
    for conn in res.connections.values() {
        out.push('/');
        out.push_str(peers.view(res, conn).peer_disk(volume));
    }
    out.push('\n');
    out
}

/// The /proc/drbd stand-in. DRBD 9 lists only its version there; 8.4 lists every minor.
pub fn proc_text(state: &State, peers: &dyn Peers, dialect: Dialect) -> String {
    let (version, api) = dialect.version();
    let mut out = format!(
        "version: {version} ({api})\nGIT-hash: 0000000000000000000000000000000000000000 build by converge-simulator, 1970-01-01 00:00:00\n"
    );
    if dialect == Dialect::V9 {
        let _ = writeln!(out, "Transports (api:21): tcp ({version})");
        return out;
    }
    let mut minors: Vec<(u32, String)> = Vec::new();
    for res in state.resources.values() {
        // 8.4 has one peer per resource: the first connection speaks for it.
        let conn = res.connections.values().next();
        let view = conn.map(|c| peers.view(res, c));
        let cs = match view.as_ref().map(|v| v.cstate.as_str()) {
            None => "StandAlone",
            Some("Connecting") => "WFConnection",
            Some(other) => other,
        };
        let protocol = conn.map_or(' ', |c| {
            c.net_option("protocol")
                .and_then(|p| p.chars().next())
                .unwrap_or('C')
        });
        let peer_role = view.as_ref().map_or("Unknown", |v| v.peer_role.as_str());
        for dev in res.devices.values() {
            let peer_disk = view
                .as_ref()
                .map_or("DUnknown", |v| v.peer_disk(dev.volume));
            minors.push((
                dev.minor,
                format!(
                    "{:2}: cs:{cs} ro:{}/{peer_role} ds:{}/{peer_disk} {protocol} r-----\n    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n",
                    dev.minor,
                    res.role.as_str(),
                    dev.disk
                ),
            ));
        }
    }
    minors.sort_by_key(|(minor, _)| *minor);
    for (_, text) in minors {
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::drbd_state::{PeerSim, Role};
    use super::super::drbd_view::Scripted;
    use super::*;
    use converge_core::observe::drbd::{
        ConnectionState, DiskState, ReplicationState, Role as ModelRole,
    };
    use converge_core::observe::{drbdsetup_status, proc_drbd};

    fn state() -> State {
        super::super::drbd_view::tests_support::two_node_state()
    }

    #[test]
    fn status_text_is_drbd9_shaped() {
        let s = state();
        let text = status_text(
            &s,
            &Scripted(&s.peers),
            None,
            StatusOpts::default(),
            &mut |_| true,
        );
        assert_eq!(
            text,
            "data role:Secondary\n  disk:UpToDate open:yes\n  peer1 role:Secondary\n    peer-disk:UpToDate\n\n"
        );
        let mut s2 = s.clone();
        s2.peers.insert(
            "data".into(),
            PeerSim {
                connection: "Connecting".into(),
                ..PeerSim::default()
            },
        );
        let text = status_text(
            &s2,
            &Scripted(&s2.peers),
            Some("data"),
            StatusOpts::default(),
            &mut |_| false,
        );
        assert_eq!(
            text,
            "data role:Secondary\n  disk:UpToDate open:no\n  peer1 connection:Connecting\n\n"
        );
        assert_eq!(
            status_text(
                &State::default(),
                &PeerSim::default(),
                None,
                StatusOpts::default(),
                &mut |_| { false }
            ),
            "# No currently configured DRBD found.\n"
        );
        let verbose = status_text(
            &s,
            &Scripted(&s.peers),
            None,
            StatusOpts {
                verbose: true,
                tty: false,
            },
            &mut |_| false,
        );
        assert!(
            verbose.contains(
                "  volume:0 minor:7 disk:UpToDate backing_dev:/dev/loop0 quorum:yes open:no\n"
            ),
            "{verbose}"
        );
    }

    #[test]
    fn status_json_reads_back() {
        let mut s = state();
        s.peers.insert(
            "data".into(),
            PeerSim {
                role: Role::Primary,
                disk: "UpToDate".into(),
                connection: "Connected".into(),
            },
        );
        let json = status_json(&s, &Scripted(&s.peers), None, &mut |_| true);
        let parsed = drbdsetup_status::parse_json(&json).expect("parses");
        let r = &parsed["data"];
        assert_eq!(r.role, ModelRole::Secondary);
        assert!(r.devices[0].open);
        assert_eq!(r.devices[0].minor, 7);
        assert_eq!(r.devices[0].disk, DiskState::UpToDate);
        let c = &r.connections[0];
        assert_eq!(c.peer_node_id, Some(1));
        assert_eq!(c.name.as_deref(), Some("peer1"));
        assert_eq!(c.state, ConnectionState::Connected);
        assert_eq!(c.peer_role, ModelRole::Primary);
        assert_eq!(c.peer_devices[0].replication, ReplicationState::Established);
        assert!(r.peer_primary());
        // Also valid JSON when nothing is up, and the paths carry the endpoints.
        assert!(
            drbdsetup_status::parse_json(&status_json(
                &State::default(),
                &PeerSim::default(),
                None,
                &mut |_| false
            ))
            .expect("empty")
            .is_empty()
        );
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(
            v[0]["connections"][0]["paths"][0]["remote_host"]["address"],
            "127.0.0.2"
        );
        assert_eq!(
            v[0]["connections"][0]["paths"][0]["this_host"]["port"],
            7789
        );
    }

    #[test]
    fn proc_file_in_both_dialects_reads_back() {
        let s = state();
        let p9 =
            proc_drbd::parse(&proc_text(&s, &Scripted(&s.peers), Dialect::V9)).expect("9 parses");
        assert!(p9.is_drbd9() && p9.minors.is_empty());
        let p84 = proc_drbd::parse(&proc_text(&s, &Scripted(&s.peers), Dialect::V84))
            .expect("8.4 parses");
        assert!(!p84.is_drbd9());
        let r = p84.resource("data", &[7]).expect("up");
        assert_eq!(r.role, ModelRole::Secondary);
        assert_eq!(r.connections[0].state, ConnectionState::Connected);
        assert_eq!(r.connections[0].peer_role, ModelRole::Secondary);
        assert!(r.has_up_to_date_data());

        let mut alone = s.clone();
        if let Some(res) = alone.resources.get_mut("data") {
            res.connections.clear();
            res.role = Role::Primary;
        }
        let p = proc_drbd::parse(&proc_text(&alone, &Scripted(&alone.peers), Dialect::V84))
            .expect("parses");
        let m = p.minor(7).expect("minor 7");
        assert_eq!(m.cs, "StandAlone");
        assert_eq!(m.protocol, None);
        assert_eq!(m.role, Some(ModelRole::Primary));
    }

    #[test]
    fn show_has_what_drbdadm_adjust_reads() {
        let s = state();
        let text = show_text(&s, &Scripted(&s.peers), Some("data"));
        for needle in [
            "resource \"data\" {\n",
            "        node-id\t\t\t0;\n",
            "            device\t\t\tminor 7;\n",
            "            disk\t\t\t\"/dev/loop0\";\n",
            "            meta-disk\t\t\tinternal;\n",
            "        _peer_node_id 1;\n",
            "            _this_host ipv4 127.0.0.1:7789;\n",
            "            _remote_host ipv4 127.0.0.2:7789;\n",
            "        net {\n            _name           \t\"peer1\";\n",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            split_endpoint("ipv4:10.0.0.1:7789"),
            ("ipv4".into(), "10.0.0.1".into(), 7789)
        );
        assert_eq!(
            split_endpoint("ipv6:[fe80::1]:7790"),
            ("ipv6".into(), "fe80::1".into(), 7790)
        );
        assert_eq!(
            split_endpoint("10.0.0.1"),
            ("ipv4".into(), "10.0.0.1".into(), 7788)
        );
        assert_eq!(canonical_endpoint("10.0.0.1:1"), "ipv4:10.0.0.1:1");
    }

    #[test]
    fn dstate_and_version() {
        let s = state();
        let res = &s.resources["data"];
        assert_eq!(
            dstate_text(res, &Scripted(&s.peers), 0),
            "UpToDate/UpToDate\n"
        );
        assert!(version_text(Dialect::V9).contains("DRBD_KERNEL_VERSION_CODE=0x090208\n"));
        assert!(version_text(Dialect::V84).contains("DRBD_KERNEL_VERSION=8.4.11\n"));
        assert_eq!(Dialect::parse("8.4"), Some(Dialect::V84));
        assert_eq!(Dialect::parse("7"), None);
    }
}
