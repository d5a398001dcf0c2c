//! The per-request work wakeway adds: route lookup, slot acquire/release, and the in-flight guard.
//! Run: `cargo bench --bench hot_path`.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wakeway::config::{ServiceConfig, Source};
use wakeway::events::EventLog;
use wakeway::metrics::Metrics;
use wakeway::proxy::route::RouteTable;
use wakeway::service::Service;
use wakeway::service::instance::{Instance, InstanceState};
use wakeway::service::pool::Pool;

fn pool(n: usize) -> Pool {
    Pool::new(
        (0..n)
            .map(|k| {
                let i = Instance::new(
                    format!("i{k}"),
                    "r".into(),
                    format!("127.0.0.1:{}", 2000 + k).parse().unwrap(),
                    None,
                );
                i.set_state(InstanceState::Ready);
                Arc::new(i)
            })
            .collect(),
    )
}

fn service(name: &str, hosts: Vec<String>) -> Arc<Service> {
    let cfg = ServiceConfig::new(name, hosts, Source::Upstreams(vec!["127.0.0.1:1".into()]));
    let metrics = Metrics::new();
    Service::new(cfg, metrics.service(name), Arc::new(EventLog::default()))
}

fn acquire_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_acquire_release");
    for n in [1usize, 8, 64] {
        let p = pool(n);
        // Half-loaded pools: the scan has real work to do.
        for i in &p.instances {
            for _ in 0..10 {
                i.try_acquire(100);
            }
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &p, |b, p| {
            b.iter(|| {
                let i = p.acquire(100).expect("capacity");
                i.release();
            })
        });
    }
    g.finish();
}

fn route_lookup(c: &mut Criterion) {
    let services: Vec<_> = (0..50)
        .map(|k| service(&format!("s{k}"), vec![format!("s{k}.example.com")]))
        .chain([service("fallback", vec!["*".into()])])
        .collect();
    let table = RouteTable::new(&services);
    c.bench_function("route_lookup_exact_with_port", |b| {
        b.iter(|| table.lookup(std::hint::black_box("s42.example.com:8080")))
    });
    c.bench_function("route_lookup_catch_all", |b| {
        b.iter(|| table.lookup(std::hint::black_box("unknown.example.com")))
    });
}

fn guard(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let svc = service("bench", vec!["bench.localhost".into()]);
    let inst = Arc::new(Instance::new(
        "bench-0".into(),
        "r".into(),
        "127.0.0.1:1".parse().unwrap(),
        None,
    ));
    inst.set_state(InstanceState::Ready);
    svc.lane().pool.store(Arc::new(Pool::new(vec![inst])));
    // One runtime entry per sample, not per iteration, so the figure is the acquire itself.
    c.bench_function("service_acquire_guard_drop", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let g = svc.acquire().await.expect("slot");
                    drop(g);
                }
                start.elapsed()
            })
        })
    });
}

criterion_group!(benches, acquire_release, route_lookup, guard);
criterion_main!(benches);
