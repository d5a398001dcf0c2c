//! Three wakeway replicas and one etcd on loopback, for tests/cluster.rs: etcd from Debian's
//! `etcd-server` (`.ci/needs/40-etcd.sh`) on free ports with a temporary data directory,
//! stopped (and restarted) by the test and killed at the end.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use http::StatusCode;
use tokio_util::sync::CancellationToken;

use serde_json::Value;

use super::docker::{DockerTest, skip};
use super::{DEADLINE, Proc, Wakeway, admin_json, metric, try_get, wait_for};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Etcd {
    proc: Option<Proc>,
    pub client: SocketAddr,
    peer: u16,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// `None` (after a loud message) when etcd is not installed, unless `CI=true`.
    pub async fn start() -> Option<Etcd> {
        if std::process::Command::new("etcd")
            .arg("--version")
            .output()
            .is_err()
        {
            return skip("etcd", "no `etcd` on PATH (apt-get install etcd-server)");
        }
        let mut etcd = Etcd {
            proc: None,
            client: SocketAddr::from(([127, 0, 0, 1], free_port())),
            peer: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        etcd.resume().await;
        Some(etcd)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Starts (again) on the same ports and data, and waits until it serves.
    pub async fn resume(&mut self) {
        let client = format!("http://{}", self.client);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let data = self.data_dir();
        let args = [
            "--name",
            "t",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("t={peer}"),
            "--log-level",
            "error",
        ];
        let proc = Proc::spawn_program("etcd", &args);
        self.proc = Some(proc);
        let addr = self.client;
        wait_for("etcd to serve", DEADLINE, || async move {
            let r = try_get(addr, "localhost", "/health").await.ok()?;
            r.text().contains("true").then_some(())
        })
        .await;
    }

    /// Kills etcd (its data stays for `resume`).
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.signal(libc::SIGKILL);
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One replica: its wakeway and its name.
pub struct Replica {
    pub name: String,
    pub w: Wakeway,
}

/// `[cluster]` for replica `name` against `etcd`, with this test's lease.
pub fn cluster_keys(etcd: &Etcd, name: &str, prefix: &str, lease: &str) -> String {
    format!(
        "[cluster]\netcd = [\"{}\"]\nname = \"{name}\"\nadvertise = \"127.0.0.1:{}\"\nprefix = \"{prefix}\"\nlease = \"{lease}\"\n",
        etcd.endpoint(),
        free_port()
    )
}

/// Three replicas of the same config (docker runtime, this test's scope) in one cluster.
pub async fn three(t: &DockerTest, etcd: &Etcd, services: &str, lease: &str) -> Vec<Replica> {
    let prefix = format!("/{}", t.scope);
    let mut out = Vec::new();
    for k in 1..=3 {
        let name = format!("edge-{k}");
        let config = format!(
            "{}\n{}",
            cluster_keys(etcd, &name, &prefix, lease),
            t.config("stop_on_exit = false", services)
        );
        out.push(Replica {
            name,
            w: Wakeway::start_config(&config).await,
        });
    }
    out
}

pub async fn cluster_view(r: &Replica) -> Value {
    admin_json(r.w.admin, "/v1/cluster").await
}

/// Waits until every replica in `live` names the same leader among them, and returns its index.
pub async fn agreed_leader(replicas: &[Replica], live: &[usize]) -> usize {
    wait_for("the replicas to agree on a leader", DEADLINE, || async {
        let mut leaders = Vec::new();
        for &i in live {
            let v = cluster_view(&replicas[i]).await;
            leaders.push(v["leader"].as_str()?.to_string());
        }
        let first = leaders[0].clone();
        if leaders.iter().all(|l| *l == first) {
            live.iter().copied().find(|&i| replicas[i].name == first)
        } else {
            None
        }
    })
    .await
}

/// Polls often: how long until some replica in `live` other than `old` leads.
pub async fn new_leader_within(
    replicas: &[Replica],
    live: &[usize],
    old: &str,
    limit: Duration,
) -> (usize, Duration) {
    let started = tokio::time::Instant::now();
    let i = wait_for("a new leader", limit, || async {
        for &i in live {
            let v = cluster_view(&replicas[i]).await;
            if v["leading"] == true && replicas[i].name != old {
                return Some(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        None
    })
    .await;
    (i, started.elapsed())
}

/// etcd writes (puts, deletes, transactions) and lease keep-alives, summed over `replicas`.
pub async fn etcd_traffic(replicas: &[Replica]) -> (f64, f64) {
    let (mut writes, mut keepalives) = (0.0, 0.0);
    for r in replicas {
        let text = r.w.metrics().await;
        writes += metric(&text, "wakeway_cluster_etcd_writes_total", &[]).unwrap_or(0.0);
        keepalives += metric(&text, "wakeway_cluster_etcd_keepalives_total", &[]).unwrap_or(0.0);
    }
    (writes, keepalives)
}

/// Per second, over all replicas, between two `etcd_traffic` readings `secs` apart.
pub fn per_second(before: (f64, f64), after: (f64, f64), secs: f64) -> String {
    format!(
        "{:.1} writes/s, {:.1} keep-alives/s",
        (after.0 - before.0) / secs,
        (after.1 - before.1) / secs
    )
}

/// Requests kept up through some replicas until `end`, counting those that fail.
pub struct SteadyLoad {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sent: Arc<AtomicU32>,
    failed: Arc<AtomicU32>,
}

impl SteadyLoad {
    /// `each` loops of `path` at `host` through every address in `addrs`.
    pub fn through(
        host: &'static str,
        addrs: &[SocketAddr],
        each: usize,
        path: &'static str,
    ) -> SteadyLoad {
        let (stop, sent, failed) = (
            CancellationToken::new(),
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicU32::new(0)),
        );
        let mut tasks = Vec::new();
        for &addr in addrs {
            for _ in 0..each {
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                tasks.push(tokio::spawn(async move {
                    while !stop.is_cancelled() {
                        sent.fetch_add(1, SeqCst);
                        match try_get(addr, host, path).await {
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
        SteadyLoad {
            stop,
            tasks,
            sent,
            failed,
        }
    }

    /// Ends the load; asserts that no request failed.
    pub async fn end_without_failure(self, what: &str) {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
        let (failed, sent) = (self.failed.load(SeqCst), self.sent.load(SeqCst));
        assert_eq!(failed, 0, "{what}: {failed} of {sent} requests failed");
    }
}
