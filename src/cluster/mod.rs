//! Several wakeway replicas, one fleet (`[cluster]`, docs/cluster.md). Every replica serves
//! traffic and counts its own requests; one leader, elected on an etcd lease, starts and stops
//! instances on the sum of everyone's demand and publishes the fleet each replica routes to.
//!
//! `etcd/` speaks to etcd; `lease` keeps this replica's lease; `leader` campaigns and fences;
//! `members` registers and lists the replicas; `internal` is the endpoint they call each other
//! on; `demand` sums their load; `fleet` is the published view; `publish` (leader) and `follow`
//! (followers) keep it; `store` keeps revisions, deployments, traffic and pins in etcd; `roles`
//! runs or stops this replica's controllers as leadership moves.

pub mod demand;
pub mod etcd;
pub mod fleet;
mod follow;
pub mod internal;
pub mod leader;
pub mod lease;
pub mod members;
mod publish;
mod roles;
mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::config::ClusterConfig;
pub use internal::AdminAnswer;
pub use leader::Role;
use members::Member;

/// How long one call between replicas may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Cluster {
    pub config: ClusterConfig,
    pub etcd: Arc<etcd::Client>,
    pub(crate) lease: watch::Sender<Option<i64>>,
    pub(crate) role: watch::Sender<Role>,
    pub(crate) members: ArcSwap<Vec<Member>>,
    /// The last etcd call answered (cleared when one could not reach any endpoint).
    etcd_ok: AtomicBool,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    /// For forwarded admin writes: a new connection each, so that a dead leader shows as a
    /// refused connect (safe to send elsewhere), never as a pooled connection that closed after
    /// the call was written (which may have been carried out).
    fresh: HttpClient<HttpConnector, Full<Bytes>>,
    listener: std::sync::Mutex<Option<TcpListener>>,
    gauges: [prometheus::IntGauge; 4],
    /// The last view of each service read from etcd or written to it.
    pub(crate) views: std::sync::Mutex<HashMap<String, fleet::FleetView>>,
    /// Set while this replica routes by the published views (no controller of its own runs).
    pub(crate) following: AtomicBool,
    /// What `{prefix}/state/` holds, by service, as last read or written.
    pub(crate) stored: std::sync::Mutex<HashMap<String, Vec<u8>>>,
    /// The lease under which this replica last loaded the stored state to lead (0: none); its
    /// writer writes nothing before.
    pub(crate) loaded_for: AtomicI64,
    /// This replica leads and its controllers run: admin calls can be applied here.
    pub(crate) acting: watch::Sender<bool>,
    pub(crate) lead_loaded: tokio::sync::Notify,
}

/// `GET /v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub advertise: String,
    pub leader: Option<String>,
    pub leading: bool,
    pub etcd_reachable: bool,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub name: String,
    pub advertise: String,
    pub leader: bool,
    /// Milliseconds since this replica last heard from it.
    pub last_seen_ms: u64,
    /// Requests it served, and its share of all the members' (as the leader last pulled them).
    pub served: u64,
    pub traffic_share: f64,
}

impl Cluster {
    /// Binds the internal endpoint; contacts nothing yet.
    pub async fn new(
        config: ClusterConfig,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Arc<Cluster>, String> {
        let etcd = etcd::Client::new(&config.etcd)?;
        let listener = TcpListener::bind(&config.advertise).await.map_err(|e| {
            format!(
                "cannot listen on cluster.advertise {}: {e}",
                config.advertise
            )
        })?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        Ok(Arc::new(Cluster {
            config,
            etcd: Arc::new(etcd),
            lease: watch::Sender::new(None),
            role: watch::Sender::new(Role::default()),
            members: ArcSwap::from_pointee(Vec::new()),
            etcd_ok: AtomicBool::new(true),
            http: HttpClient::builder(TokioExecutor::new()).build(connector.clone()),
            fresh: HttpClient::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector),
            listener: std::sync::Mutex::new(Some(listener)),
            gauges: metrics.cluster(),
            views: std::sync::Mutex::new(HashMap::new()),
            following: AtomicBool::new(true),
            stored: std::sync::Mutex::new(HashMap::new()),
            loaded_for: AtomicI64::new(0),
            acting: watch::Sender::new(false),
            lead_loaded: tokio::sync::Notify::new(),
        }))
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.config.prefix)
    }

    pub fn leading(&self) -> bool {
        self.role.borrow().leading.is_some()
    }

    /// The leader's internal endpoint, when a leader is known.
    pub fn leader_endpoint(&self) -> Option<String> {
        self.leader_named().map(|(_, endpoint)| endpoint)
    }

    /// The leader's name and internal endpoint, when both are known.
    fn leader_named(&self) -> Option<(String, String)> {
        let leader = self.role.borrow().leader.clone()?;
        self.members
            .load()
            .iter()
            .find(|m| m.record.name == leader)
            .map(|m| (leader.clone(), m.record.advertise.clone()))
    }

    pub(crate) fn etcd_reachable(&self, ok: bool) {
        self.etcd_ok.store(ok, SeqCst);
    }

    pub fn is_etcd_reachable(&self) -> bool {
        self.etcd_ok.load(SeqCst)
    }

    /// Sets the `wakeway_cluster_*` gauges (before a scrape).
    pub fn sample_gauges(&self) {
        let c = &self.etcd.counters;
        self.gauges[0].set(self.leading() as i64);
        self.gauges[1].set(self.members.load().len() as i64);
        self.gauges[2].set(c.writes.load(SeqCst) as i64);
        self.gauges[3].set(c.keepalives.load(SeqCst) as i64);
    }

    pub fn view(&self) -> ClusterView {
        let role = self.role.borrow().clone();
        let members = self.members.load();
        let total: u64 = members.iter().map(|m| m.served).sum();
        ClusterView {
            name: self.config.name.clone(),
            advertise: self.config.advertise.clone(),
            leader: role.leader.clone(),
            leading: role.leading.is_some(),
            etcd_reachable: self.is_etcd_reachable(),
            members: members
                .iter()
                .map(|m| MemberView {
                    name: m.record.name.clone(),
                    advertise: m.record.advertise.clone(),
                    leader: role.leader.as_deref() == Some(m.record.name.as_str()),
                    last_seen_ms: m.last_seen.elapsed().as_millis() as u64,
                    served: m.served,
                    traffic_share: if total == 0 {
                        0.0
                    } else {
                        m.served as f64 / total as f64
                    },
                })
                .collect(),
        }
    }

    /// One call to another replica's internal endpoint, through `client` (`http`, pooled, or
    /// `fresh`).
    pub(crate) async fn call(
        &self,
        client: &HttpClient<HttpConnector, Full<Bytes>>,
        endpoint: &str,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let failed = |detail: String| CallError {
            unsent: false,
            detail,
        };
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{endpoint}{path_and_query}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| failed(e.to_string()))?;
        let call = async {
            let resp = client.request(req).await.map_err(|e| CallError {
                unsent: e.is_connect(),
                detail: e.to_string(),
            })?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| failed(format!("{endpoint} did not answer within {timeout:?}")))?
    }

    /// Waits, at most a lease and a second, until this replica's controllers run as the leader:
    /// a call taken in between would find them stopped.
    pub(crate) async fn until_acting(&self) {
        let mut acting = self.acting.subscribe();
        let within = self.config.lease + Duration::from_secs(1);
        let _ = tokio::time::timeout(within, acting.wait_for(|a| *a)).await;
    }

    /// Waits, at most a lease and a second, for a leader other than `gone`; false if none came.
    async fn next_leader(&self, gone: &str) -> bool {
        let mut role = self.role.subscribe();
        let wait = role.wait_for(|r| r.leader.as_deref().is_some_and(|l| l != gone));
        matches!(
            tokio::time::timeout(self.config.lease + Duration::from_secs(1), wait).await,
            Ok(Ok(_))
        )
    }

    /// Starts every task of this replica's membership; they end with `stop`.
    pub fn start(
        self: &Arc<Self>,
        state: Arc<State>,
        admin: internal::AdminAnswer,
        stop: CancellationToken,
    ) {
        let ttl = self.config.lease;
        tokio::spawn(lease::keep(
            self.etcd.clone(),
            ttl,
            self.lease.clone(),
            stop.clone(),
        ));
        tokio::spawn(leader::campaign(
            self.etcd.clone(),
            self.key("leader"),
            self.config.name.clone(),
            self.lease.subscribe(),
            self.role.clone(),
            stop.clone(),
        ));
        tokio::spawn(members::run(self.clone(), state.clone(), stop.clone()));
        if let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            tokio::spawn(internal::serve(
                listener,
                state.clone(),
                admin,
                stop.clone(),
            ));
        }
        tokio::spawn(follow::run(self.clone(), state.clone(), stop.clone()));
        tokio::spawn(publish::run(self.clone(), state.clone(), stop.clone()));
        tokio::spawn(store::run(self.clone(), state.clone(), stop.clone()));
        tokio::spawn(pull_demand(self.clone(), state.clone(), stop.clone()));
        tokio::spawn(roles::run(self.clone(), state, stop));
    }

    /// Reads the fleet views (and the stored state) once and routes by them: a replica that starts (or comes back)
    /// serves what the fleet is, not nothing. Returns whether etcd answered.
    pub async fn catch_up(&self, state: &State) -> bool {
        match self.etcd.get_prefix(&self.key("")).await {
            Ok((kvs, _)) => {
                for kv in &kvs {
                    follow::apply_kv(self, state, kv);
                }
                store::apply_listed(self, state, &kvs);
                true
            }
            Err(e) => {
                tracing::warn!("cluster: cannot read the fleet from etcd: {e}; serving none yet");
                false
            }
        }
    }
}

/// The leader pulls every other member's demand a few times a second.
async fn pull_demand(cluster: Arc<Cluster>, state: Arc<State>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(demand::PULL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !cluster.leading() {
            continue;
        }
        let members = cluster.members.load_full();
        let others = members
            .iter()
            .filter(|m| m.record.name != cluster.config.name);
        let asks = others.map(|m| {
            let cluster = cluster.clone();
            let endpoint = m.record.advertise.clone();
            async move {
                let (status, body) = cluster
                    .call(
                        &cluster.http,
                        &endpoint,
                        Method::GET,
                        "/cluster/demand",
                        Bytes::new(),
                        demand::PULL_TIMEOUT,
                    )
                    .await
                    .ok()?;
                if !status.is_success() {
                    return None;
                }
                serde_json::from_slice::<demand::Report>(&body).ok()
            }
        });
        let reports: Vec<demand::Report> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let services = state.services.load_full();
        demand::apply(&services, &reports);
        let mine = demand::collect(&cluster.config.name, &services);
        let now = Instant::now();
        let list: Vec<Member> = members
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if m.record.name == cluster.config.name {
                    m.served = mine.served;
                    m.last_seen = now;
                } else if let Some(r) = reports.iter().find(|r| r.member == m.record.name) {
                    m.served = r.served;
                    m.last_seen = now;
                }
                m
            })
            .collect();
        cluster.members.store(Arc::new(list));
    }
}

/// What `/healthz` adds in a cluster: why this replica does not act, if it does not.
pub fn health_detail(state: &State) -> Option<String> {
    let cluster = state.cluster.as_ref()?;
    if !cluster.is_etcd_reachable() {
        return Some(
            "cluster: etcd unreachable; serving the current fleet, scaling and deploys paused"
                .into(),
        );
    }
    let role = cluster.role.borrow().clone();
    match (role.leading, role.leader) {
        (Some(_), _) => Some(format!("cluster: {} leads", cluster.config.name)),
        (None, Some(l)) => Some(format!("cluster: following {l}")),
        (None, None) => Some("cluster: no leader yet; scaling and deploys paused".into()),
    }
}

/// Why a call to another replica failed; `unsent`: it never reached the other side (no
/// connection), so sending it elsewhere cannot apply it twice.
#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) unsent: bool,
    detail: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// In a cluster, a follower's state-changing API call goes to the leader, which applies it as
/// its own; `None`: answer it here.
pub async fn forward_admin(
    state: &State,
    method: &Method,
    path: &str,
    query: &str,
    body: &Bytes,
) -> Option<Response<Full<Bytes>>> {
    let cluster = state.cluster.as_ref()?;
    let writes = matches!(
        *method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    );
    if !writes || !path.starts_with("/v1/services") {
        return None;
    }
    if cluster.leading() {
        cluster.until_acting().await;
        return None;
    }
    let answer = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    let target = if query.is_empty() {
        format!("/cluster/admin{path}")
    } else {
        format!("/cluster/admin{path}?{query}")
    };
    // A leader that died is replaced within a lease: the call then goes to the new one (or is
    // answered here, if this replica took the lead). A POST that may have reached the dead one
    // is never sent again (it could be a deploy carried out twice); a PUT or a DELETE says the
    // same thing twice, so it is.
    let idempotent = matches!(*method, Method::PUT | Method::DELETE);
    let mut retried = false;
    loop {
        let Some((name, leader)) = cluster.leader_named() else {
            let msg = serde_json::json!({
                "error": "no cluster leader is known (is etcd reachable?): changes are paused; try again"
            });
            return Some(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from(msg.to_string()),
            ));
        };
        let call = cluster.call(
            &cluster.fresh,
            &leader,
            method.clone(),
            &target,
            body.clone(),
            CALL_TIMEOUT,
        );
        match call.await {
            Ok((status, body)) => return Some(answer(status, body)),
            Err(e) if (e.unsent || idempotent) && !retried && cluster.next_leader(&name).await => {
                retried = true;
                if cluster.leading() {
                    cluster.until_acting().await;
                    return None;
                }
            }
            Err(e) => {
                let msg =
                    serde_json::json!({ "error": format!("the cluster leader at {leader}: {e}") });
                return Some(answer(
                    StatusCode::BAD_GATEWAY,
                    Bytes::from(msg.to_string()),
                ));
            }
        }
    }
}
