//! Every Prometheus family wakeway exports, in one place, with per-service handles resolved once
//! so the request path never looks a label up.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::stats::{RequestStats, RequestsCollector};

pub const REQUESTS_TOTAL: &str = "wakeway_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "wakeway_request_duration_seconds";
pub const IN_FLIGHT_REQUESTS: &str = "wakeway_in_flight_requests";
pub const QUEUED_REQUESTS: &str = "wakeway_queued_requests";
pub const INSTANCES: &str = "wakeway_instances";
pub const DESIRED_INSTANCES: &str = "wakeway_desired_instances";
pub const COLD_STARTS_TOTAL: &str = "wakeway_cold_starts_total";
pub const COLD_START_DURATION_SECONDS: &str = "wakeway_cold_start_duration_seconds";
pub const QUEUE_REJECTIONS_TOTAL: &str = "wakeway_queue_rejections_total";
pub const SCALE_EVENTS_TOTAL: &str = "wakeway_scale_events_total";
pub const UPSTREAM_ERRORS_TOTAL: &str = "wakeway_upstream_errors_total";
pub const DEPLOYMENTS_TOTAL: &str = "wakeway_deployments_total";
pub const REVISION_INFO: &str = "wakeway_revision_info";
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "wakeway_access_log_dropped_total";

pub struct Metrics {
    registry: Registry,
    /// Requests and their durations: per-worker shards, summed when scraped.
    requests: Arc<RequestsCollector>,
    in_flight: IntGaugeVec,
    queued: IntGaugeVec,
    instances: IntGaugeVec,
    desired: IntGaugeVec,
    cold_starts: IntCounterVec,
    cold_start_duration: HistogramVec,
    queue_rejections: IntCounterVec,
    scale_events: IntCounterVec,
    upstream_errors: IntCounterVec,
    deployments: IntCounterVec,
    revision_info: IntGaugeVec,
    access_log_dropped: IntCounter,
}

/// The handles of one service. Cloned into the service at creation.
#[derive(Clone)]
pub struct ServiceMetrics {
    requests: Arc<RequestStats>,
    pub in_flight: IntGauge,
    pub queued: IntGauge,
    pub starting: IntGauge,
    pub ready: IntGauge,
    pub draining: IntGauge,
    pub desired: IntGauge,
    pub cold_starts: IntCounter,
    pub cold_start_duration: Histogram,
    pub rejected_queue_full: IntCounter,
    pub rejected_timeout: IntCounter,
    pub rejected_unavailable: IntCounter,
    pub scale_up: IntCounter,
    pub scale_down: IntCounter,
    pub upstream_connect: IntCounter,
    pub upstream_timeout: IntCounter,
    pub upstream_reset: IntCounter,
    pub deployments_succeeded: IntCounter,
    pub deployments_failed: IntCounter,
    name: String,
    revision_info: IntGaugeVec,
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

    /// Counted in the calling worker's own shard.
    pub fn observe_status(&self, code: u16) {
        self.requests.observe_status(code)
    }

    /// Request arrival to response headers, in the calling worker's own shard.
    pub fn observe_duration(&self, d: Duration) {
        self.requests.observe_duration(d)
    }
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(reg: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets),
        &["service"],
    )
    .expect("valid metric");
    reg.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// Registers a collector the metrics also keep a handle to.
struct SharedCollector(Arc<RequestsCollector>);

impl prometheus::core::Collector for SharedCollector {
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
        let cold = vec![
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        Metrics {
            requests,
            in_flight: gauge(
                &r,
                IN_FLIGHT_REQUESTS,
                "Requests (and open tunnels) currently at an instance.",
                &["service"],
            ),
            queued: gauge(
                &r,
                QUEUED_REQUESTS,
                "Requests waiting in the activator queue.",
                &["service"],
            ),
            instances: gauge(&r, INSTANCES, "Instances by state.", &["service", "state"]),
            desired: gauge(
                &r,
                DESIRED_INSTANCES,
                "Instances the autoscaler wants.",
                &["service"],
            ),
            cold_starts: counter(
                &r,
                COLD_STARTS_TOTAL,
                "Starts triggered by a request arriving at a service with no instance.",
                &["service"],
            ),
            cold_start_duration: histogram(
                &r,
                COLD_START_DURATION_SECONDS,
                "From a request arriving at an empty service to an instance being ready.",
                cold,
            ),
            queue_rejections: counter(
                &r,
                QUEUE_REJECTIONS_TOTAL,
                "Requests refused by the activator queue, by reason.",
                &["service", "reason"],
            ),
            scale_events: counter(
                &r,
                SCALE_EVENTS_TOTAL,
                "Changes of the desired instance count, by direction.",
                &["service", "direction"],
            ),
            upstream_errors: counter(
                &r,
                UPSTREAM_ERRORS_TOTAL,
                "Failures talking to instances, by kind.",
                &["service", "kind"],
            ),
            deployments: counter(
                &r,
                DEPLOYMENTS_TOTAL,
                "Blue/green deployments finished, by outcome.",
                &["service", "outcome"],
            ),
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
            registry: r,
        }
    }

    /// The counter the access log's senders bump when its channel is full.
    pub fn access_log_dropped(&self) -> IntCounter {
        self.access_log_dropped.clone()
    }

    pub fn service(&self, name: &str) -> ServiceMetrics {
        let state = |s: &str| self.instances.with_label_values(&[name, s]);
        let reject = |s: &str| self.queue_rejections.with_label_values(&[name, s]);
        let upstream = |s: &str| self.upstream_errors.with_label_values(&[name, s]);
        ServiceMetrics {
            requests: self.requests.add(name),
            in_flight: self.in_flight.with_label_values(&[name]),
            queued: self.queued.with_label_values(&[name]),
            starting: state("starting"),
            ready: state("ready"),
            draining: state("draining"),
            desired: self.desired.with_label_values(&[name]),
            cold_starts: self.cold_starts.with_label_values(&[name]),
            cold_start_duration: self.cold_start_duration.with_label_values(&[name]),
            rejected_queue_full: reject("queue_full"),
            rejected_timeout: reject("timeout"),
            rejected_unavailable: reject("unavailable"),
            scale_up: self.scale_events.with_label_values(&[name, "up"]),
            scale_down: self.scale_events.with_label_values(&[name, "down"]),
            upstream_connect: upstream("connect"),
            upstream_timeout: upstream("timeout"),
            upstream_reset: upstream("reset"),
            deployments_succeeded: self.deployments.with_label_values(&[name, "succeeded"]),
            deployments_failed: self.deployments.with_label_values(&[name, "failed"]),
            name: name.to_string(),
            revision_info: self.revision_info.clone(),
        }
    }

    /// Drops every label value of a service that went away, so `/metrics` does not keep it.
    pub fn remove_service(&self, name: &str) {
        self.requests.remove(name);
        for s in ["starting", "ready", "draining"] {
            let _ = self.instances.remove_label_values(&[name, s]);
        }
        for r in ["queue_full", "timeout", "unavailable"] {
            let _ = self.queue_rejections.remove_label_values(&[name, r]);
        }
        for d in ["up", "down"] {
            let _ = self.scale_events.remove_label_values(&[name, d]);
        }
        for k in ["connect", "timeout", "reset"] {
            let _ = self.upstream_errors.remove_label_values(&[name, k]);
        }
        for o in ["succeeded", "failed"] {
            let _ = self.deployments.remove_label_values(&[name, o]);
        }
        for m in prometheus::core::Collector::collect(&self.revision_info) {
            for metric in m.get_metric() {
                let labels: Vec<&str> = metric.get_label().iter().map(|l| l.value()).collect();
                if labels.first() == Some(&name) {
                    let _ = self.revision_info.remove_label_values(&labels);
                }
            }
        }
        let _ = self.in_flight.remove_label_values(&[name]);
        let _ = self.queued.remove_label_values(&[name]);
        let _ = self.desired.remove_label_values(&[name]);
        let _ = self.cold_starts.remove_label_values(&[name]);
        let _ = self.cold_start_duration.remove_label_values(&[name]);
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails on a valid registry");
        out
    }
}
