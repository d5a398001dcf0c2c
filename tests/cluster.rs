//! Three wakeway replicas, one fleet, coordinated through a real etcd, with the docker runtime
//! against the real engine: a cold start through a follower, demand summed over replicas, the
//! leader killed under load, etcd stopped under load, a deploy and a split through a follower
//! (and kept after the leader dies). Helpers (etcd on loopback, three replicas) are in
//! `common/cluster.rs`.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::*;
use common::docker::*;
use common::*;
use http::StatusCode;

const HOST: &str = "web.localhost";

/// etcd, the engine, three replicas of one docker service `web` with these scaling settings,
/// and the replica they agreed leads.
/// Fields drop in order: the replicas end before the engine's cleanup removes this test's
/// containers, so that no leader is left to start them again.
struct Fleet {
    replicas: Vec<Replica>,
    t: DockerTest,
    etcd: Etcd,
    leader: usize,
    /// Replicas killed by the test.
    dead: Vec<usize>,
}

impl Fleet {
    /// `None` (after a loud message) without etcd or docker, unless `CI=true`.
    async fn start(scaling: &str) -> Option<Fleet> {
        let etcd = Etcd::start().await?;
        let t = DockerTest::new().await?;
        let extra = format!("[service.scaling]\n{scaling}\n");
        let services = docker_service("web", &t.image, &extra);
        let replicas = three(&t, &etcd, &services, "3s").await;
        let leader = agreed_leader(&replicas, &[0, 1, 2]).await;
        Some(Fleet {
            replicas,
            t,
            etcd,
            leader,
            dead: Vec::new(),
        })
    }

    /// The replica `k` places after the leader.
    fn after_leader(&self, k: usize) -> usize {
        (self.leader + k) % 3
    }

    fn proxies(&self, which: &[usize]) -> Vec<SocketAddr> {
        which.iter().map(|&i| self.replicas[i].w.proxy).collect()
    }

    /// Waits until each of `which` routes to `n` ready instances.
    async fn views_hold(&self, which: &[usize], n: usize) {
        for &i in which {
            let rep = &self.replicas[i];
            wait_for(
                &format!("{n} ready instance(s) in the view of {}", rep.name),
                DEADLINE,
                || async { (ready_at(rep, "web").await.len() == n).then_some(()) },
            )
            .await;
        }
    }

    async fn running(&self) -> usize {
        self.t.containers(Some("web"), false).await.len()
    }

    /// The instances of the running containers (their `wakeway.instance` labels).
    async fn running_instances(&self) -> BTreeSet<String> {
        let list = self.t.containers(Some("web"), false).await;
        list.into_iter()
            .filter_map(|c| c.labels?.remove("wakeway.instance"))
            .collect()
    }

    /// No duplicate, no orphan: the engine runs exactly the instances `leader`'s view holds.
    async fn engine_runs_the_view(&self, leader: usize) {
        let leader = &self.replicas[leader];
        wait_for(
            "the engine to run what the leader holds",
            DEADLINE,
            || async {
                let held = leader.w.instances("web").await.len();
                (self.running().await == held).then_some(())
            },
        )
        .await;
    }

    /// SIGKILLs the leader; returns the new one once a live replica leads (within `limit`) and
    /// the others know it.
    async fn kill_leader(&mut self, limit: Duration) -> usize {
        self.kill_leader_and(limit, async {}).await
    }

    /// As [`Fleet::kill_leader`], doing `meanwhile` before a new leader is known (`limit` counts
    /// from its end).
    async fn kill_leader_and(
        &mut self,
        limit: Duration,
        meanwhile: impl std::future::Future<Output = ()>,
    ) -> usize {
        let old = self.replicas[self.leader].name.clone();
        let killed = tokio::time::Instant::now();
        self.replicas[self.leader].w.proc.signal(libc::SIGKILL);
        self.dead.push(self.leader);
        meanwhile.await;
        let live: Vec<usize> = (0..3).filter(|i| !self.dead.contains(i)).collect();
        let (new, took) = (
            new_leader_within(&self.replicas, &live, &old, limit)
                .await
                .0,
            killed.elapsed(),
        );
        // Every live replica knows it before the test goes on through them.
        assert_eq!(agreed_leader(&self.replicas, &live).await, new);
        self.leader = new;
        eprintln!(
            "MEASURED leader fail-over: {} leads {took:?} after the SIGKILL (lease 3s)",
            self.replicas[new].name
        );
        new
    }
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

/// Waits until every replica in `which` answers from `revision` alone.
async fn all_answer_from(f: &Fleet, which: &[usize], revision: &str) {
    for &i in which {
        let rep = &f.replicas[i];
        wait_for(
            &format!("{} to answer from {revision} only", rep.name),
            DEADLINE,
            || async move {
                let seen = answers_by_revision(rep, 5).await;
                seen.keys().all(|r| r == revision).then_some(())
            },
        )
        .await;
    }
}

/// Waits until every replica in `which` splits 50/50 between `a` and `b`.
async fn all_split(f: &Fleet, which: &[usize], a: &str, b: &str) {
    for &i in which {
        let rep = &f.replicas[i];
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
                (percent_of(a) == Some(50) && percent_of(b) == Some(50)).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_through_a_follower_wakes_the_service_once_for_every_replica() {
    let Some(f) = Fleet::start("min_instances = 0\nidle_timeout = \"3s\"").await else {
        return;
    };
    let follower = f.after_leader(1);

    let started = tokio::time::Instant::now();
    let r = f.replicas[follower].w.get(HOST, "/").await;
    let through_follower = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = r.instance().expect("whoami names its instance");
    assert_eq!(f.running().await, 1, "one container for the fleet");
    // Every replica routes to that one instance.
    for rep in &f.replicas {
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
    assert_eq!(f.running().await, 1);

    // Idle everywhere: the fleet goes to zero, and every replica drops the instance.
    wait_for("the fleet to scale to zero", DEADLINE, || async {
        (f.running().await == 0).then_some(())
    })
    .await;
    f.views_hold(&[0, 1, 2], 0).await;
    let started = tokio::time::Instant::now();
    let r = f.replicas[f.leader].w.get(HOST, "/").await;
    let through_leader = started.elapsed();
    assert_eq!(r.status, StatusCode::OK);
    eprintln!(
        "MEASURED cold start: through a follower {through_follower:?}, through the leader {through_leader:?}"
    );
    console_shows_the_cluster(&f, follower).await;
}

/// The console of replica `at` shows the cluster: itself, who leads, the three members.
async fn console_shows_the_cluster(f: &Fleet, at: usize) {
    let Some(exe) = common::chromium::chromium() else {
        return;
    };
    let url = format!("http://{}/", f.replicas[at].w.admin);
    let html = common::chromium::dump_dom(&exe, &url, 3000).await;
    let panel = common::chromium::element(&html, "id=\"cluster\"").expect("a cluster panel");
    assert!(
        common::chromium::attribute(panel, "hidden").is_none(),
        "shown: {panel}"
    );
    let (me, leader) = (&f.replicas[at].name, &f.replicas[f.leader].name);
    assert!(panel.contains(&format!("this replica: {me}")), "{panel}");
    assert!(panel.contains(&format!("{leader} leads")), "{panel}");
    for rep in &f.replicas {
        let row = common::chromium::element(panel, &format!("data-member=\"{}\"", rep.name))
            .unwrap_or_else(|| panic!("a row of {}: {panel}", rep.name));
        let role = if rep.name == *leader {
            "leader"
        } else {
            "follower"
        };
        assert!(row.contains(role), "{row}");
        assert!(row.contains("s ago") && row.contains('%'), "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_under_load_is_replaced_within_the_lease_without_a_failed_request() {
    // Four requests at a time at target 1 want both instances; idle, the fleet goes to zero.
    let scaling =
        "min_instances = 0\nmax_instances = 2\ntarget_concurrency = 1\nidle_timeout = \"2s\"";
    let Some(mut f) = Fleet::start(scaling).await else {
        return;
    };
    let others = [f.after_leader(1), f.after_leader(2)];
    let load = SteadyLoad::through(HOST, &f.proxies(&others), 2, "/?sleep=50ms");
    f.views_hold(&others, 2).await;
    let before: BTreeSet<String> = f.running_instances().await;
    assert_eq!(
        before.len(),
        2,
        "the engine runs the two instances of the view"
    );

    let new = f.kill_leader(Duration::from_secs(4)).await;
    // Watched from the new leader's start until a second after it holds the fleet: the engine
    // never runs more (nothing starts while nobody leads).
    let leader = &f.replicas[new];
    let (mut most, mut held_at) = (0, None);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while held_at.is_none_or(|at: tokio::time::Instant| at.elapsed() < Duration::from_secs(1)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new leader adopts the fleet"
        );
        most = most.max(f.running().await);
        if held_at.is_none() && ready_at(leader, "web").await.len() == 2 {
            held_at = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    load.end_without_failure("through the two other replicas")
        .await;

    assert!(
        most <= before.len(),
        "no duplicate: the engine ran {most} containers"
    );
    let adopted: BTreeSet<String> = ready_at(leader, "web").await.into_iter().collect();
    assert_eq!(adopted, before, "the fleet adopted as it was, not replaced");
    // No orphan: every container the engine runs is one the new leader holds.
    wait_for(
        "every container to be the new leader's",
        DEADLINE,
        || async {
            let held: BTreeSet<String> = leader
                .w
                .instances("web")
                .await
                .into_iter()
                .map(|i| i.id)
                .collect();
            f.running_instances().await.is_subset(&held).then_some(())
        },
    )
    .await;
    // Idle now: the new leader scales the fleet to zero, and every live replica drops it.
    wait_for("the fleet to scale to zero", DEADLINE, || async {
        (f.running().await == 0).then_some(())
    })
    .await;
    f.views_hold(&others, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_spread_over_three_replicas_is_summed_by_the_leader() {
    const MAX: usize = 6;
    let scaling = format!(
        "min_instances = 1\nmax_instances = {MAX}\ntarget_concurrency = 2\nidle_timeout = \"3s\""
    );
    let Some(f) = Fleet::start(&scaling).await else {
        return;
    };
    f.views_hold(&[0, 1, 2], 1).await;
    // etcd's load from three replicas at rest (a measurement window, not a wait for anything).
    let idle_from = (etcd_traffic(&f.replicas).await, tokio::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = per_second(
        idle_from.0,
        etcd_traffic(&f.replicas).await,
        idle_from.1.elapsed().as_secs_f64(),
    );
    let busy_from = (etcd_traffic(&f.replicas).await, tokio::time::Instant::now());
    // Twelve slow requests at a time, four through each replica: alone, each would want two
    // instances (4 / 2); the leader must want six.
    let load = SteadyLoad::through(HOST, &f.proxies(&[0, 1, 2]), 4, "/?sleep=2s");
    // Watched all along: what the engine runs and what each replica's view holds.
    let (mut most_running, mut most_seen) = (0, 0);
    let reached = tokio::time::Instant::now() + DEADLINE;
    let settled = |now: tokio::time::Instant| now + Duration::from_secs(3);
    let mut until = None;
    loop {
        let now = f.running().await;
        most_running = most_running.max(now);
        for rep in &f.replicas {
            most_seen = most_seen.max(rep.w.instances("web").await.len());
        }
        let at = tokio::time::Instant::now();
        // Once five run, a little longer at full load: the count must not overshoot.
        if now >= 5 && until.is_none() {
            until = Some(settled(at));
        }
        if until.is_some_and(|u| at >= u) || at > reached {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let busy = per_second(
        busy_from.0,
        etcd_traffic(&f.replicas).await,
        busy_from.1.elapsed().as_secs_f64(),
    );
    load.end_without_failure("spread over three replicas").await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_stopped_every_replica_serves_the_fleet_and_scaling_resumes_after() {
    let scaling =
        "min_instances = 1\nmax_instances = 4\ntarget_concurrency = 1\nidle_timeout = \"3s\"";
    let Some(mut f) = Fleet::start(scaling).await else {
        return;
    };
    f.views_hold(&[0, 1, 2], 1).await;
    let load = SteadyLoad::through(HOST, &f.proxies(&[0, 1, 2]), 1, "/?sleep=20ms");
    f.etcd.stop();
    // Past the lease: nobody leads, every replica says why in /healthz, and still serves.
    for rep in &f.replicas {
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
        for rep in &f.replicas {
            if cluster_view(rep).await["leading"] == true {
                return None;
            }
        }
        Some(())
    })
    .await;
    f.etcd.resume().await;
    let back = agreed_leader(&f.replicas, &[0, 1, 2]).await;
    eprintln!(
        "etcd back: {} leads (before: {})",
        f.replicas[back].name, f.replicas[f.leader].name
    );
    load.end_without_failure("while etcd was down").await;
    // The load may have scaled the fleet out; whatever it is, the engine runs no duplicate.
    f.engine_runs_the_view(back).await;

    // Scaling resumes: a burst scales the fleet out.
    let addr = f.replicas[(back + 1) % 3].w.proxy;
    let burst: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { try_get(addr, HOST, "/?sleep=3s").await }))
        .collect();
    wait_for("the leader to scale out again", DEADLINE, || async {
        (f.running().await >= 2).then_some(())
    })
    .await;
    for b in burst {
        assert_eq!(b.await.unwrap().unwrap().status, StatusCode::OK);
    }
}

/// Deploys `V=2` through a follower while every replica serves; returns (old, new) revisions.
async fn deploy_through_a_follower(f: &Fleet) -> (String, String) {
    f.views_hold(&[0, 1, 2], 1).await;
    let old = revision_of_instance(&ready_at(&f.replicas[0], "web").await[0]).to_string();
    let load = SteadyLoad::through(HOST, &f.proxies(&[0, 1, 2]), 1, "/?sleep=20ms");
    let d = f.replicas[f.after_leader(1)]
        .w
        .deploy("web", serde_json::json!({ "update_env": { "V": "2" } }))
        .await;
    let done = f.replicas[f.leader]
        .w
        .wait_deployment("web", d["id"].as_str().unwrap())
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let new = done["revision"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    all_answer_from(f, &[0, 1, 2], &new).await;
    load.end_without_failure("during the deploy").await;
    (old, new)
}

/// Splits 50/50 between `old` and the latest revision through replica `at`.
async fn split_at(f: &Fleet, at: usize, old: &str) {
    let split = serde_json::json!({ "traffic": [
        { "revision": old, "percent": 50 }, { "latest": true, "percent": 50 }
    ] });
    let (status, body) = admin_call(
        f.replicas[at].w.admin,
        http::Method::PUT,
        "/v1/services/web/traffic",
        Some(&split),
        None,
    )
    .await;
    assert!(status.is_success(), "{status}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_and_a_split_through_a_follower_hold_on_every_replica() {
    let Some(f) = Fleet::start("min_instances = 1\nidle_timeout = \"30s\"").await else {
        return;
    };
    let (old, new) = deploy_through_a_follower(&f).await;
    // A split set on the other follower: every replica routes by it.
    split_at(&f, f.after_leader(2), &old).await;
    all_split(&f, &[0, 1, 2], &old, &new).await;
    for rep in &f.replicas {
        let seen = answers_by_revision(rep, 30).await;
        assert!(
            seen.contains_key(&old) && seen.contains_key(&new),
            "{} routes 50/50: {seen:?}",
            rep.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_and_a_split_made_through_the_api_outlive_the_leader() {
    let Some(mut f) = Fleet::start("min_instances = 1\nidle_timeout = \"30s\"").await else {
        return;
    };
    let (old, new) = deploy_through_a_follower(&f).await;
    let others = [f.after_leader(1), f.after_leader(2)];
    let via = f.replicas[others[0]].w.admin;
    let new_leader = f
        .kill_leader_and(Duration::from_secs(4), async move {
            // Sent while `via` still names the dead leader: it waits for the next one and is
            // answered, not refused (the call never reached the dead one).
            let all_latest = serde_json::json!({ "traffic": [{ "latest": true, "percent": 100 }] });
            let (status, body) = admin_call(
                via,
                http::Method::PUT,
                "/v1/services/web/traffic",
                Some(&all_latest),
                None,
            )
            .await;
            assert!(status.is_success(), "{status}: {body}");
        })
        .await;
    // The revision deployed through the API is still the one served, by every live replica.
    all_answer_from(&f, &others, &new).await;
    let revisions = f.replicas[new_leader]
        .w
        .admin_json("/v1/services/web/revisions")
        .await
        .to_string();
    assert!(revisions.contains(&new), "{revisions}");

    // A split set through a follower now, then that leader killed too: the split holds.
    let follower = others.into_iter().find(|&i| i != new_leader).unwrap();
    split_at(&f, follower, &old).await;
    all_split(&f, &others, &old, &new).await;
    // Two replicas and a lease each: the follower takes over alone.
    let last = f.kill_leader(Duration::from_secs(4)).await;
    assert_eq!(last, follower);
    all_split(&f, &[last], &old, &new).await;
    let seen = answers_by_revision(&f.replicas[last], 30).await;
    assert!(seen.contains_key(&new), "the split still routes: {seen:?}");
}
