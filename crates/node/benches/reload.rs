//! What the daemon pays on every manifest change, with 1,000 and 10,000 services in force
//! (target: 10,000 in ≤ 100 ms): the whole
//! directory read (and hashed for the revision) again, the files whose text changed parsed, and
//! the desired set rebuilt. This is added to `debounce` in the edit → action latency.

use std::fs;

use converge_node::controller::desired::DesiredSet;
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    for n in [1_000, 10_000] {
        bench_reload(c, n);
    }
}

fn bench_reload(c: &mut Criterion, n: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    for i in 0..n {
        fs::write(
            tmp.path().join(format!("svc{i}.yaml")),
            format!(
                "service: svc{i}\nstate: up\nresources:\n  app#0:\n    start: [/bin/true]\n    stop: [/bin/true]\n"
            ),
        )
        .expect("manifest");
    }
    let mut set = DesiredSet::default();
    set.reload(tmp.path(), false, false);
    assert_eq!(set.reconciled().len(), n, "the bench needs valid manifests");
    c.bench_function(&format!("reload/{n} manifests, nothing changed"), |b| {
        b.iter(|| set.reload(tmp.path(), false, false));
    });
}

criterion_group!(reload, benches);
criterion_main!(reload);
