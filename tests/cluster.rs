//! Three wakeway replicas, one fleet, coordinated through a real etcd, with the docker runtime
//! against the real engine: a cold start through a follower, demand summed over replicas, the
//! leader killed under load, etcd stopped under load, a deploy through a follower.
//! Helpers (etcd on loopback, three replicas) are in `common/cluster.rs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use common::cluster::*;
use common::docker::*;
use common::*;
use http::StatusCode;

const HOST: &str = "web.localhost";

fn service(scaling: &str) -> String {
    let t = format!("[service.scaling]\n{scaling}\n");
    // The image is filled in by the caller.
    t
}

/// Instances of `svc` a replica routes to (its admin view), ready ones.
async fn ready_at(r: &Replica, svc: &str) -> Vec<String> {
    r.w.instances(svc)
        .await
        .into_iter()
        .filter(|i| i.state == "ready")
        .map(|i| i.id)
        .collect()
}

async fn running(t: &DockerTest, svc: &str) -> usize {
    t.containers(Some(svc), false).await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_through_a_follower_wakes_the_service_once_for_every_replica() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let services = docker_service(
        "web",
        &t.image,
        &service("min_instances = 0\nidle_timeout = \"3s\""),
    );
    let replicas = three(&t, &etcd, &services, "3s").await;
    let leader = agreed_leader(&replicas, &[0, 1, 2]).await;
    let follower = (leader + 1) % 3;

    let started = tokio::time::Instant::now();
    let r = replicas[follower].w.get(HOST, "/").await;
    let through_follower = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = r.instance().expect("whoami names its instance");
    assert_eq!(running(&t, "web").await, 1, "one container for the fleet");
    // Every replica routes to that one instance.
    for rep in &replicas {
        let addr = rep.w.proxy;
        let want = id.clone();
        wait_for(
            &format!("{} to route to {want}", rep.name),
            DEADLINE,
            || {
                let want = want.clone();
                async move {
                    let r = try_get(addr, HOST, "/").await.ok()?;
                    (r.instance()? == want).then_some(())
                }
            },
        )
        .await;
    }
    assert_eq!(running(&t, "web").await, 1);

    // Idle everywhere: the fleet goes to zero, and every replica drops the instance.
    wait_for("the fleet to scale to zero", DEADLINE, || async {
        (running(&t, "web").await == 0).then_some(())
    })
    .await;
    for rep in &replicas {
        wait_for("no instance in any view", DEADLINE, || async {
            ready_at(rep, "web").await.is_empty().then_some(())
        })
        .await;
    }
    let started = tokio::time::Instant::now();
    let r = replicas[leader].w.get(HOST, "/").await;
    let through_leader = started.elapsed();
    assert_eq!(r.status, StatusCode::OK);
    eprintln!(
        "MEASURED cold start: through a follower {through_follower:?}, through the leader {through_leader:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_under_load_is_replaced_within_the_lease_without_a_failed_request() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let services = docker_service(
        "web",
        &t.image,
        &service("min_instances = 2\nidle_timeout = \"3s\""),
    );
    let mut replicas = three(&t, &etcd, &services, "3s").await;
    let leader = agreed_leader(&replicas, &[0, 1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &others {
        let rep = &replicas[i];
        wait_for("two instances in a follower's view", DEADLINE, || async {
            (ready_at(rep, "web").await.len() == 2).then_some(())
        })
        .await;
    }
    let before: Vec<String> = ready_at(&replicas[others[0]], "web").await;

    // Load through the two followers while the leader dies.
    let failed = Arc::new(AtomicU32::new(0));
    let sent = Arc::new(AtomicU32::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for &i in &others {
        for _ in 0..2 {
            let addr = replicas[i].w.proxy;
            let (failed, sent, stop) = (failed.clone(), sent.clone(), stop.clone());
            load.push(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    sent.fetch_add(1, SeqCst);
                    match try_get(addr, HOST, "/?sleep=50ms").await {
                        Ok(r) if r.status == StatusCode::OK => {}
                        other => {
                            eprintln!("failed: {:?}", other.map(|r| (r.status, r.text())));
                            failed.fetch_add(1, SeqCst);
                        }
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = replicas[leader].name.clone();
    replicas[leader].w.proc.signal(libc::SIGKILL);
    let (new, took) = new_leader_within(&replicas, &others, &old, Duration::from_secs(4)).await;
    eprintln!(
        "MEASURED leader fail-over: {} leads {took:?} after the SIGKILL (lease 3s)",
        replicas[new].name
    );
    // Past the hand-over: the new leader adopted both instances.
    wait_for("the new leader to adopt the fleet", DEADLINE, || async {
        (ready_at(&replicas[new], "web").await.len() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(failed.load(SeqCst), 0, "of {} requests", sent.load(SeqCst));
    let mut after = ready_at(&replicas[new], "web").await;
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before, "adopted, not replaced");
    assert_eq!(running(&t, "web").await, 2, "no duplicate, no orphan");
    let _ = replicas.remove(leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_stopped_every_replica_serves_the_fleet_and_scaling_resumes_after() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let services = docker_service(
        "web",
        &t.image,
        &service(
            "min_instances = 1\nmax_instances = 4\ntarget_concurrency = 1\nidle_timeout = \"3s\"",
        ),
    );
    let replicas = three(&t, &etcd, &services, "3s").await;
    let leader = agreed_leader(&replicas, &[0, 1, 2]).await;
    for rep in &replicas {
        wait_for("an instance in every view", DEADLINE, || async {
            (ready_at(rep, "web").await.len() == 1).then_some(())
        })
        .await;
    }

    let failed = Arc::new(AtomicU32::new(0));
    let sent = Arc::new(AtomicU32::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for rep in &replicas {
        let addr = rep.w.proxy;
        let (failed, sent, stop) = (failed.clone(), sent.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                sent.fetch_add(1, SeqCst);
                match try_get(addr, HOST, "/?sleep=20ms").await {
                    Ok(r) if r.status == StatusCode::OK => {}
                    _ => {
                        failed.fetch_add(1, SeqCst);
                    }
                }
            }
        }));
    }
    etcd.stop();
    // Past the lease: nobody leads, every replica says why in /healthz, and still serves.
    for rep in &replicas {
        let admin = rep.w.admin;
        wait_for(
            "/healthz to say etcd is unreachable",
            DEADLINE,
            || async move {
                let r = try_get(admin, "localhost", "/healthz").await.ok()?;
                (r.status == StatusCode::OK && r.text().contains("etcd unreachable")).then_some(())
            },
        )
        .await;
    }
    wait_for("nobody to lead", DEADLINE, || async {
        for rep in &replicas {
            if cluster_view(rep).await["leading"] == true {
                return None;
            }
        }
        Some(())
    })
    .await;
    etcd.resume().await;
    let back = agreed_leader(&replicas, &[0, 1, 2]).await;
    eprintln!(
        "etcd back: {} leads (before: {})",
        replicas[back].name, replicas[leader].name
    );
    stop.cancel();
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(failed.load(SeqCst), 0, "of {} requests", sent.load(SeqCst));
    assert_eq!(running(&t, "web").await, 1, "no duplicate after the outage");

    // Scaling resumes: the idle fleet goes back to its minimum, a burst scales it out.
    let addr = replicas[(back + 1) % 3].w.proxy;
    let burst: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { try_get(addr, HOST, "/?sleep=3s").await }))
        .collect();
    wait_for("the leader to scale out again", DEADLINE, || async {
        (running(&t, "web").await >= 2).then_some(())
    })
    .await;
    for b in burst {
        assert_eq!(b.await.unwrap().unwrap().status, StatusCode::OK);
    }
}
