//! Every Prometheus family wakeway exports, in one place, with per-service handles resolved once
//! so the request path never looks a label up.

pub mod proto;
pub mod requests;
pub mod services;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, IntCounter, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::metrics::requests::{RequestStats, RequestsCollector};
use crate::metrics::services::{ServiceStats, ServicesCollector};

pub const REQUESTS_TOTAL: &str = "wakeway_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "wakeway_request_duration_seconds";
pub const IN_FLIGHT_REQUESTS: &str = "wakeway_in_flight_requests";
pub const QUEUED_REQUESTS: &str = "wakeway_queued_requests";
pub const INSTANCES: &str = "wakeway_instances";
pub const DESIRED_INSTANCES: &str = "wakeway_desired_instances";
pub const COLD_STARTS_TOTAL: &str = "wakeway_cold_starts_total";
pub const COLD_START_DURATION_SECONDS: &str = "wakeway_cold_start_duration_seconds";
pub const QUEUE_WAIT_SECONDS: &str = "wakeway_queue_wait_seconds";
pub const QUEUE_REJECTIONS_TOTAL: &str = "wakeway_queue_rejections_total";
pub const SCALE_EVENTS_TOTAL: &str = "wakeway_scale_events_total";
pub const UPSTREAM_ERRORS_TOTAL: &str = "wakeway_upstream_errors_total";
pub const DEPLOYMENTS_TOTAL: &str = "wakeway_deployments_total";
pub const REVISION_INFO: &str = "wakeway_revision_info";
pub const REVISION_TRAFFIC_PERCENT: &str = "wakeway_revision_traffic_percent";
pub const REVISION_READY_INSTANCES: &str = "wakeway_revision_ready_instances";
pub const REVISION_DESIRED_INSTANCES: &str = "wakeway_revision_desired_instances";
pub const REVISION_REQUESTS_TOTAL: &str = "wakeway_revision_requests_total";
pub const REVISION_ERRORS_TOTAL: &str = "wakeway_revision_errors_total";
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "wakeway_access_log_dropped_total";
/// Frozen instances are `wakeway_instances{state="frozen"}`; what they hold is this one.
pub const FROZEN_MEMORY_BYTES: &str = "wakeway_frozen_memory_bytes";
pub const THAWS_TOTAL: &str = "wakeway_thaws_total";
pub const GRPC_CALLS_TOTAL: &str = "wakeway_grpc_calls_total";
/// With `[cluster]`: 1 while this replica leads.
pub const CLUSTER_LEADER: &str = "wakeway_cluster_leader";
/// With `[cluster]`: the live members this replica knows, itself included.
pub const CLUSTER_MEMBERS: &str = "wakeway_cluster_members";
/// With `[cluster]`: puts, deletes and transactions this replica sent to etcd.
pub const CLUSTER_ETCD_WRITES_TOTAL: &str = "wakeway_cluster_etcd_writes_total";
/// With `[cluster]`: lease keep-alives this replica sent to etcd.
pub const CLUSTER_ETCD_KEEPALIVES_TOTAL: &str = "wakeway_cluster_etcd_keepalives_total";
pub const CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS: &str =
    "wakeway_certificate_expiry_timestamp_seconds";

pub struct Metrics {
    registry: Registry,
    /// Requests and their durations: per-worker shards, summed when scraped.
    requests: Arc<RequestsCollector>,
    /// Every other per-service figure: plain atomics, rendered when scraped.
    services: Arc<ServicesCollector>,
    revision_info: IntGaugeVec,
    access_log_dropped: IntCounter,
    certificate_expiry: IntGaugeVec,
}

/// The handles of one service. Cloned into the service at creation; the control-plane figures
/// are fields of `ServiceStats` (`svc.metrics.cold_starts.inc()`).
#[derive(Clone)]
pub struct ServiceMetrics {
    requests: Arc<RequestStats>,
    stats: Arc<ServiceStats>,
    name: String,
    revision_info: IntGaugeVec,
}

impl std::ops::Deref for ServiceMetrics {
    type Target = ServiceStats;

    fn deref(&self) -> &ServiceStats {
        &self.stats
    }
}

impl ServiceMetrics {
    /// Moves `wakeway_revision_info` to the live revision; the old series goes away so the label
    /// stays bounded to one revision per service.
    pub fn set_revision(&self, old: Option<&str>, new: &str) {
        if let Some(old) = old {
            let _ = self.revision_info.remove_label_values(&[&self.name, old]);
        }
        self.revision_info
            .with_label_values(&[&self.name, new])
            .set(1);
    }

    /// Requests answered so far, every status summed (the console's requests/s).
    pub fn requests_total(&self) -> u64 {
        self.requests.total()
    }

    /// Every status class and duration bucket counted so far (for the console's history).
    pub fn requests_snapshot(&self) -> requests::RequestSnapshot {
        self.requests.snapshot()
    }

    /// Counted in the calling worker's own shard.
    pub fn observe_status(&self, code: u16) {
        self.requests.observe_status(code)
    }

    /// Request arrival to response headers, in the calling worker's own shard.
    pub fn observe_duration(&self, d: Duration) {
        self.requests.observe_duration(d)
    }
}

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Registers a collector the metrics also keep a handle to.
struct SharedCollector<C>(Arc<C>);

impl<C: prometheus::core::Collector> prometheus::core::Collector for SharedCollector<C> {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let requests = Arc::new(RequestsCollector::new());
        r.register(Box::new(SharedCollector(requests.clone())))
            .expect("unique metric");
        let services = Arc::new(ServicesCollector::new());
        r.register(Box::new(SharedCollector(services.clone())))
            .expect("unique metric");
        Metrics {
            requests,
            services,
            revision_info: gauge(
                &r,
                REVISION_INFO,
                "1 for the revision that takes a service's traffic.",
                &["service", "revision"],
            ),
            access_log_dropped: {
                let c = IntCounter::new(
                    ACCESS_LOG_DROPPED_TOTAL,
                    "Access-log lines dropped because the writer fell behind.",
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            certificate_expiry: gauge(
                &r,
                CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
                "When each served certificate expires (not-after, seconds since the epoch).",
                &["name"],
            ),
            registry: r,
        }
    }

    /// The `wakeway_cluster_*` gauges, registered only in a cluster: leader, members, and
    /// etcd writes and keep-alives (set from the client's counters at each scrape).
    pub fn cluster(&self) -> [prometheus::IntGauge; 4] {
        let help = [
            (CLUSTER_LEADER, "1 while this replica leads the cluster."),
            (
                CLUSTER_MEMBERS,
                "Live members of the cluster, this replica included.",
            ),
            (
                CLUSTER_ETCD_WRITES_TOTAL,
                "Puts, deletes and transactions sent to etcd.",
            ),
            (
                CLUSTER_ETCD_KEEPALIVES_TOTAL,
                "Lease keep-alives sent to etcd.",
            ),
        ];
        help.map(|(name, help)| {
            let g = prometheus::IntGauge::new(name, help).expect("valid metric");
            self.registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        })
    }

    /// One series per certificate name; the ACME manager and the file store set them.
    pub fn certificate_expiry(&self) -> IntGaugeVec {
        self.certificate_expiry.clone()
    }

    /// The counter the access log's senders bump when its channel is full.
    pub fn access_log_dropped(&self) -> IntCounter {
        self.access_log_dropped.clone()
    }

    pub fn service(&self, name: &str) -> ServiceMetrics {
        ServiceMetrics {
            requests: self.requests.services.add(name),
            stats: self.services.services.add(name),
            name: name.to_string(),
            revision_info: self.revision_info.clone(),
        }
    }

    /// Drops every series of a service that went away, so `/metrics` does not keep it.
    pub fn remove_service(&self, name: &str) {
        self.requests.services.remove(name);
        self.services.services.remove(name);
        for m in prometheus::core::Collector::collect(&self.revision_info) {
            for metric in m.get_metric() {
                let labels: Vec<&str> = metric.get_label().iter().map(|l| l.value()).collect();
                if labels.first() == Some(&name) {
                    let _ = self.revision_info.remove_label_values(&labels);
                }
            }
        }
    }

    /// The text exposition, with `extra` families (built at scrape time) after the registry's.
    pub fn render(&self, extra: Vec<prometheus::proto::MetricFamily>) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        let mut families = self.registry.gather();
        families.extend(extra.into_iter().filter(|f| !f.get_metric().is_empty()));
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding never fails on a valid registry");
        out
    }
}
