//! Parser throughput at scale. Targets (2-core machine): /proc/drbd with 1,000 minors < 1 ms,
//! mountinfo with 10,000 lines < 5 ms, 10,000 events2 lines (parse + fold) < 10 ms.
//! Results are recorded in docs/performance.md.

use std::fmt::Write;

use converge_core::observe::{events2, mountinfo, proc_drbd};
use criterion::{Criterion, criterion_group, criterion_main};

fn proc_drbd_text(minors: u32) -> String {
    let mut text =
        String::from("version: 8.4.11 (api:1/proto:86-101)\nsrcversion: 1F4F0A1C7A8A1DD4E6F8D2B\n");
    for m in 0..minors {
        let _ = writeln!(
            text,
            "{m:>2}: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----"
        );
        let _ = writeln!(
            text,
            "    ns:{m} nr:0 dw:{m} dr:656 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0"
        );
        if m % 10 == 5 {
            // Every tenth minor resyncs, the costliest lines to parse.
            let _ = writeln!(
                text,
                "\t[====>...............] sync'ed: 23.6% (89620/524236)K"
            );
            let _ = writeln!(text, "\tfinish: 0:00:04 speed: 18,712 (13,580) K/sec");
        }
    }
    text
}

fn mountinfo_text(lines: u32) -> String {
    let mut text = String::new();
    for i in 0..lines {
        let _ = writeln!(
            text,
            "{} 22 7:{} / /srv/svc{i}/data\\040dir rw,relatime shared:{i} - ext4 /dev/loop{} rw,errors=remount-ro",
            i + 100,
            i % 256,
            i % 256
        );
    }
    text
}

fn events2_text(lines: u32) -> String {
    let mut text = String::new();
    let resources = 100;
    for r in 0..resources {
        let _ = writeln!(
            text,
            "exists resource name:r{r} role:Secondary suspended:no force-io-failures:no may_promote:no promotion_score:0"
        );
        let _ = writeln!(
            text,
            "exists device name:r{r} volume:0 minor:{r} backing_dev:/dev/loop{r} disk:UpToDate client:no open:no quorum:yes"
        );
        let _ = writeln!(
            text,
            "exists connection name:r{r} peer-node-id:1 conn-name:peer connection:Connected role:Secondary"
        );
        let _ = writeln!(
            text,
            "exists peer-device name:r{r} peer-node-id:1 conn-name:peer volume:0 replication:Established peer-disk:UpToDate peer-client:no resync-suspended:no"
        );
    }
    text.push_str("exists -\n");
    let mut written = resources * 4 + 1;
    let mut i = 0;
    while written < lines {
        let r = i % resources;
        let line = match i % 4 {
            0 => format!(
                "change resource name:r{r} role:Primary may_promote:no promotion_score:10102"
            ),
            1 => {
                format!("change connection name:r{r} peer-node-id:1 conn-name:peer role:Secondary")
            }
            2 => format!(
                "change peer-device name:r{r} peer-node-id:1 conn-name:peer volume:0 replication:SyncSource peer-disk:Inconsistent done:37.50"
            ),
            _ => {
                format!("2024-05-06T09:10:38.123456+02:00 change resource name:r{r} role:Secondary")
            }
        };
        text.push_str(&line);
        text.push('\n');
        written += 1;
        i += 1;
    }
    text
}

fn benches(c: &mut Criterion) {
    let proc = proc_drbd_text(1_000);
    assert_eq!(
        proc_drbd::parse(&proc).map(|p| p.minors.len()).ok(),
        Some(1_000)
    );
    c.bench_function("proc_drbd/1000 minors", |b| {
        b.iter(|| proc_drbd::parse(std::hint::black_box(&proc)))
    });

    let mounts = mountinfo_text(10_000);
    assert_eq!(
        mountinfo::parse(&mounts).map(|m| m.len()).ok(),
        Some(10_000)
    );
    c.bench_function("mountinfo/10000 lines", |b| {
        b.iter(|| mountinfo::parse(std::hint::black_box(&mounts)))
    });

    let events = events2_text(10_000);
    assert_eq!(events.lines().count(), 10_000);
    c.bench_function("events2/10000 lines parse+fold", |b| {
        b.iter(|| {
            let mut state = events2::Events2State::new();
            for line in std::hint::black_box(&events).lines() {
                if let Ok(Some(event)) = events2::parse_line(line) {
                    state.apply(&event);
                }
            }
            state.resources().len()
        })
    });
}

criterion_group!(observe, benches);
criterion_main!(observe);
