//! What a daemon's periodic resync costs when everything is converged: one batched observation
//! and the status of every service, its plan included (`Daemon::look_at_all`), for 1,000 and
//! 10,000 services that are apps without a check (the costliest kind to look at without running
//! anything: converge's own start record is the observation). Target: 10,000 in ≤ 60 ms.

use std::path::Path;

use converge_core::config::Config;
use converge_core::manifest::Service;
use converge_core::manifest::load::parse_manifest;
use converge_core::status::statuses;
use converge_node::observer::Observer;
use converge_node::state::record_app_start;
use criterion::{Criterion, criterion_group, criterion_main};

fn services(n: usize) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let text = format!(
                "service: svc{i}\nstate: up\nresources:\n  app#0:\n    start: [/bin/true]\n    stop: [/bin/true]\n"
            );
            parse_manifest(Path::new(&format!("svc{i}.yaml")), &text).expect("manifest")
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    for n in [1_000, 10_000] {
        bench_resync(c, n);
    }
}

fn bench_resync(c: &mut Criterion, n: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = Config {
        state_dir: tmp.path().join("state"),
        ..Config::default()
    };
    let state_dir = config.state_dir.clone();
    let services = services(n);
    for service in &services {
        let rid = service.resources[0].id;
        record_app_start(&state_dir, &service.name, rid).expect("record");
    }
    let observer = Observer::new(std::sync::Arc::new(config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let converged = runtime.block_on(async {
        let node = observer.observe(&services).await;
        statuses(&services, &node)
            .iter()
            .filter(|s| s.converged)
            .count()
    });
    assert_eq!(
        converged,
        services.len(),
        "the bench needs a converged node"
    );
    c.bench_function(&format!("resync/{n} converged app services"), |b| {
        b.iter(|| {
            runtime.block_on(async {
                let node = observer.observe(&services).await;
                statuses(&services, &node)
            })
        });
    });
}

criterion_group!(resync, benches);
criterion_main!(resync);
