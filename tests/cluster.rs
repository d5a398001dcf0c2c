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
        &service("min_instances = 0\ntarget_concurrency = 2\nidle_timeout = \"3s\""),
    );
    let mut replicas = three(&t, &etcd, &services, "3s").await;
    let leader = agreed_leader(&replicas, &[0, 1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    // Four requests at a time through the two followers (two instances at target 2), kept up
    // while the leader dies.
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
    for &i in &others {
        let rep = &replicas[i];
        wait_for("two instances in a follower's view", DEADLINE, || async {
            (ready_at(rep, "web").await.len() == 2).then_some(())
        })
        .await;
    }
    let before: Vec<String> = ready_at(&replicas[others[0]], "web").await;
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
    // The new leader counts the adopted instances as its own: idle, they go.
    wait_for("the fleet to scale to zero", DEADLINE, || async {
        (running(&t, "web").await == 0).then_some(())
    })
    .await;
    let _ = replicas.remove(leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_spread_over_three_replicas_is_summed_by_the_leader() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let Some(t) = DockerTest::new().await else {
        return;
    };
    const MAX: usize = 6;
    let services = docker_service(
        "web",
        &t.image,
        &service(&format!(
            "min_instances = 1\nmax_instances = {MAX}\ntarget_concurrency = 2\nidle_timeout = \"3s\""
        )),
    );
    let replicas = three(&t, &etcd, &services, "3s").await;
    agreed_leader(&replicas, &[0, 1, 2]).await;
    for rep in &replicas {
        wait_for("an instance in every view", DEADLINE, || async {
            (ready_at(rep, "web").await.len() == 1).then_some(())
        })
        .await;
    }
    // etcd's load from three replicas at rest (a measurement window, not a wait for anything).
    let idle_from = (etcd_traffic(&replicas).await, tokio::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = per_second(
        idle_from.0,
        etcd_traffic(&replicas).await,
        idle_from.1.elapsed().as_secs_f64(),
    );
    let busy_from = (etcd_traffic(&replicas).await, tokio::time::Instant::now());
    // Twelve slow requests at a time, four through each replica: alone, each would want two
    // instances (4 / 2); the leader must want six.
    let failed = Arc::new(AtomicU32::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for rep in &replicas {
        for _ in 0..4 {
            let addr = rep.w.proxy;
            let (failed, stop) = (failed.clone(), stop.clone());
            load.push(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    match try_get(addr, HOST, "/?sleep=2s").await {
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
    // Watched all along: what the engine runs and what each replica's view holds.
    let (mut most_running, mut most_seen) = (0, 0);
    let reached = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = running(&t, "web").await;
        most_running = most_running.max(now);
        for rep in &replicas {
            most_seen = most_seen.max(rep.w.instances("web").await.len());
        }
        if now >= 5 || tokio::time::Instant::now() > reached {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer at full load: the count must not overshoot.
    let settle = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < settle {
        most_running = most_running.max(running(&t, "web").await);
        for rep in &replicas {
            most_seen = most_seen.max(rep.w.instances("web").await.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let busy = per_second(
        busy_from.0,
        etcd_traffic(&replicas).await,
        busy_from.1.elapsed().as_secs_f64(),
    );
    stop.cancel();
    for l in load {
        l.await.unwrap();
    }
    eprintln!(
        "MEASURED etcd from 3 replicas (lease 3s): idle {idle}; scaling out under load {busy}"
    );
    eprintln!(
        "MEASURED aggregated demand: at most {most_running} containers, {most_seen} in a view"
    );
    assert!(
        most_running >= 5,
        "12 requests over 3 replicas at target 2 want >= 5 instances, the engine ran {most_running}"
    );
    assert!(
        most_running <= MAX,
        "the engine ran {most_running} > max_instances"
    );
    assert!(
        most_seen <= MAX,
        "a replica saw {most_seen} > max_instances"
    );
    assert_eq!(failed.load(SeqCst), 0);
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

/// The revision each answer of `n` requests through `r` came from.
async fn answers_by_revision(r: &Replica, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let resp = r.w.get(HOST, "/").await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        let id = resp.instance().expect("whoami names its instance");
        *seen
            .entry(revision_of_instance(&id).to_string())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_and_a_split_through_a_follower_hold_on_every_replica() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let services = docker_service(
        "web",
        &t.image,
        &service("min_instances = 1\nidle_timeout = \"30s\""),
    );
    let replicas = three(&t, &etcd, &services, "3s").await;
    let leader = agreed_leader(&replicas, &[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    for rep in &replicas {
        wait_for("an instance in every view", DEADLINE, || async {
            (ready_at(rep, "web").await.len() == 1).then_some(())
        })
        .await;
    }
    let old = revision_of_instance(&ready_at(&replicas[0], "web").await[0]).to_string();

    // Requests through every replica while a follower's admin API deploys.
    let failed = Arc::new(AtomicU32::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for rep in &replicas {
        let addr = rep.w.proxy;
        let (failed, stop) = (failed.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                match try_get(addr, HOST, "/?sleep=20ms").await {
                    Ok(r) if r.status == StatusCode::OK => {}
                    other => {
                        eprintln!("failed: {:?}", other.map(|r| (r.status, r.text())));
                        failed.fetch_add(1, SeqCst);
                    }
                }
            }
        }));
    }
    let d = replicas[follower]
        .w
        .deploy("web", serde_json::json!({ "update_env": { "V": "2" } }))
        .await;
    let done = replicas[leader]
        .w
        .wait_deployment("web", d["id"].as_str().unwrap())
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let new = done["revision"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    for rep in &replicas {
        let want = new.clone();
        wait_for(
            &format!("{} to answer from {want} only", rep.name),
            DEADLINE,
            || {
                let want = want.clone();
                async move {
                    let seen = answers_by_revision(rep, 5).await;
                    (seen.keys().all(|r| *r == want)).then_some(())
                }
            },
        )
        .await;
    }
    stop.cancel();
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(failed.load(SeqCst), 0, "requests failed during the deploy");

    // A split set on the other follower: every replica routes by it.
    let other = (leader + 2) % 3;
    let split = serde_json::json!({ "traffic": [
        { "revision": old, "percent": 50 }, { "latest": true, "percent": 50 }
    ] });
    let (status, body) = admin_call(
        replicas[other].w.admin,
        http::Method::PUT,
        "/v1/services/web/traffic",
        Some(&split),
        None,
    )
    .await;
    assert!(status.is_success(), "{status}: {body}");
    for rep in &replicas {
        wait_for(
            &format!("{} to hold the split", rep.name),
            DEADLINE,
            || async {
                let t = rep.w.admin_json("/v1/services/web/traffic").await;
                let shares = t["traffic"].as_array()?.clone();
                let percent_of = |rev: &str| {
                    shares
                        .iter()
                        .find(|s| s["revision"] == rev)
                        .and_then(|s| s["percent"].as_u64())
                };
                (percent_of(&old) == Some(50) && percent_of(&new) == Some(50)).then_some(())
            },
        )
        .await;
        let seen = answers_by_revision(rep, 30).await;
        assert!(
            seen.contains_key(&old) && seen.contains_key(&new),
            "{} routes 50/50: {seen:?}",
            rep.name
        );
    }
}
