//! `wakeway run -c FILE` as a test fixture: its addresses, its admin views and its instances.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::StatusCode;
use serde_json::Value;

use super::{
    DEADLINE, LISTEN_ANY, MIN_ONE, Proc, Resp, admin_json, get, metric, path_str, toml_string,
    wait_for, whoami_args, whoami_service,
};

/// `wakeway run -c FILE` with its proxy and admin addresses.
pub struct Wakeway {
    pub proc: Proc,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Wakeway {
    /// Starts wakeway with `services` (TOML `[[service]]` tables) on OS-picked ports.
    pub async fn start(services: &str) -> Wakeway {
        Self::start_config(&Self::config(services)).await
    }

    /// A complete config: `services` (TOML `[[service]]` tables) on OS-picked ports.
    pub fn config(services: &str) -> String {
        format!("{LISTEN_ANY}\n{services}")
    }

    /// Starts wakeway with one `wakeway whoami` service for host `NAME.localhost`, with `extra`
    /// TOML appended to its table.
    pub async fn whoami(name: &str, extra: &str) -> Wakeway {
        Self::start(&whoami_args(name, &[], extra)).await
    }

    /// Starts wakeway with one `wakeway whoami` service keeping an instance warm, and waits
    /// until it is ready.
    pub async fn start_warm(name: &str, host: &str) -> Wakeway {
        let wk = Self::start(&whoami_service(name, host, MIN_ONE)).await;
        wk.wait_ready(name).await;
        wk
    }

    /// Starts wakeway with a complete config file (its listeners should use port 0).
    pub async fn start_config(config: &str) -> Wakeway {
        Self::start_with(config, None).await
    }

    /// As `start_config`, with the process's open-file limit set to `nofile`.
    pub async fn start_with_nofile(config: &str, nofile: u64) -> Wakeway {
        Self::start_with(config, Some(nofile)).await
    }

    async fn start_with(config: &str, nofile: Option<u64>) -> Wakeway {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("wakeway.toml");
        std::fs::write(&config_path, config).expect("write config");
        let (proc, proxy, admin) = run_listening(&config_path, nofile).await;
        Wakeway {
            proc,
            proxy,
            admin,
            config_path,
            _dir: dir,
        }
    }

    /// Stops wakeway the way a user does (SIGTERM) and checks it exited cleanly.
    pub async fn stop(mut self) {
        self.proc.signal(libc::SIGTERM);
        let status = self.proc.wait_exit(DEADLINE).await;
        assert!(status.success(), "wakeway stopped cleanly: {status}");
    }

    /// `GET path` with `Host: host` through the proxy.
    pub async fn get(&self, host: &str, path: &str) -> Resp {
        get(self.proxy, host, path).await
    }

    /// `GET path` with `Host: host` through the proxy, which must answer 200.
    pub async fn get_ok(&self, host: &str, path: &str) -> Resp {
        let resp = self.get(host, path).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        resp
    }

    /// `GET path` on the admin listener, parsed as JSON (must answer 200).
    pub async fn admin_json(&self, path: &str) -> Value {
        admin_json(self.admin, path).await
    }

    /// `GET /v1/services/{name}`.
    pub async fn service(&self, name: &str) -> Value {
        self.admin_json(&format!("/v1/services/{name}")).await
    }

    /// The instances of service `name`.
    pub async fn instances(&self, name: &str) -> Vec<Instance> {
        instances_of(&self.service(name).await)
    }

    /// Once `name` has one request in flight and none queued, the instance holding it.
    pub async fn holding_one(&self, name: &str) -> Option<Instance> {
        self.wait_load(name, 1, 0).await;
        self.instances(name)
            .await
            .into_iter()
            .find(|i| i.in_flight == 1)
    }

    /// `GET /v1/events?service=NAME`.
    pub async fn events(&self, name: &str) -> Vec<Value> {
        match self.admin_json(&format!("/v1/events?service={name}")).await {
            Value::Array(events) => events,
            other => panic!("/v1/events is not an array: {other}"),
        }
    }

    /// The events of service `name` that are of `kind`.
    pub async fn events_of(&self, name: &str, kind: &str) -> Vec<Value> {
        let mut events = self.events(name).await;
        events.retain(|e| e["kind"] == kind);
        events
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let resp = get(self.admin, "localhost", "/metrics").await;
        assert_eq!(resp.status, StatusCode::OK, "/metrics: {}", resp.text());
        resp.text()
    }

    /// The value of one sample of `/metrics`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric(&self.metrics().await, name, labels)
    }

    /// Checks what shows one frozen instance of `name`: the frozen-instances gauge says 1, and the
    /// first `instance_frozen` event counts more than `min_bytes` of memory.
    pub async fn assert_one_frozen(&self, name: &str, min_bytes: u64) {
        let gauge = self
            .metric(
                "wakeway_instances",
                &[("service", name), ("state", "frozen")],
            )
            .await;
        assert_eq!(gauge, Some(1.0));
        let frozen = self.events_of(name, "instance_frozen").await;
        assert!(
            frozen[0]["memory_bytes"]
                .as_u64()
                .is_some_and(|b| b > min_bytes),
            "{frozen:?}"
        );
    }

    /// Checks that wakeway saw a frozen instance of `name` killed: it exited, or thawing it
    /// failed.
    pub async fn assert_frozen_kill_seen(&self, name: &str) {
        let events = self.events(name).await;
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "instance_exited" || e["kind"] == "thaw_failed"),
            "{events:?}"
        );
    }

    /// How many instances of `name` are ready.
    pub async fn ready_count(&self, name: &str) -> usize {
        let instances = self.instances(name).await;
        instances.iter().filter(|i| i.state == "ready").count()
    }

    /// Checks that the reload whose answer is `report` deployed service `name` first, and waits
    /// until that deployment has succeeded.
    pub async fn wait_reload_deployed(&self, report: &Value, name: &str) {
        let id = report["deployed"][0]["deployment"]["Ok"]
            .as_str()
            .unwrap_or_else(|| panic!("the reload deployed {name}: {report}"));
        let d = self.wait_deployment(name, id).await;
        assert_eq!(d["state"], "succeeded", "{d}");
    }

    /// Waits until service `name` has a ready instance; returns the ready instances.
    pub async fn wait_ready(&self, name: &str) -> Vec<Instance> {
        wait_for(
            &format!("a ready instance of {name}"),
            DEADLINE,
            || async move {
                let ready: Vec<Instance> = self
                    .instances(name)
                    .await
                    .into_iter()
                    .filter(|i| i.state == "ready")
                    .collect();
                (!ready.is_empty()).then_some(ready)
            },
        )
        .await
    }

    /// Waits (up to 40 s: idle timeouts and drains) until service `name` has no instance;
    /// `what` says why it should have none.
    pub async fn wait_scaled_to_zero(&self, name: &str, what: &str) {
        wait_for(
            &format!("zero instances {what}"),
            std::time::Duration::from_secs(40),
            || async { self.instances(name).await.is_empty().then_some(()) },
        )
        .await
    }

    /// Waits until the service's `in_flight` (and `queued`) reach the given values.
    pub async fn wait_load(&self, name: &str, in_flight: u64, queued: u64) {
        wait_for(
            &format!("{name}: in_flight {in_flight}, queued {queued}"),
            DEADLINE,
            || async move {
                let s = self.service(name).await;
                (s["in_flight"].as_u64() == Some(in_flight) && s["queued"].as_u64() == Some(queued))
                    .then_some(())
            },
        )
        .await
    }
}

/// A complete config, listening on OS-picked ports, that writes its access log to `path`
/// (`log_keys` go into the `[log]` table too), then `services`.
pub fn access_log_config(path: &Path, log_keys: &str, services: &str) -> String {
    format!(
        "{LISTEN_ANY}\n[log]\naccess = {}\n{log_keys}\n{services}",
        toml_string(path_str(path))
    )
}

/// Runs `wakeway run -c config` (with the open-file limit `nofile` if given) until it has printed
/// its proxy and admin addresses.
pub async fn run_listening(config: &Path, nofile: Option<u64>) -> (Proc, SocketAddr, SocketAddr) {
    let args = ["run", "-c", config.to_str().unwrap()];
    let mut proc = match nofile {
        Some(n) => Proc::spawn_with_nofile("wakeway run", &args, n),
        None => Proc::spawn("wakeway run", &args),
    };
    let proxy = proc.listening_addr("proxy").await;
    let admin = proc.listening_addr("admin").await;
    (proc, proxy, admin)
}

/// One entry of a service's `instances` array.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub pid: Option<u32>,
    pub in_flight: u64,
    pub address: String,
}

/// The pids of the instances that have one.
pub fn pids_of(instances: &[Instance]) -> Vec<u32> {
    instances.iter().filter_map(|i| i.pid).collect()
}

/// The ids of `instances`.
pub fn ids_of(instances: &[Instance]) -> BTreeSet<String> {
    instances.iter().map(|i| i.id.clone()).collect()
}

pub fn instances_of(service: &Value) -> Vec<Instance> {
    let Some(list) = service["instances"].as_array() else {
        panic!("service has no instances array: {service}");
    };
    list.iter()
        .map(|i| Instance {
            id: i["id"].as_str().unwrap_or_default().to_string(),
            state: i["state"].as_str().unwrap_or_default().to_string(),
            pid: i["pid"].as_u64().map(|p| p as u32),
            in_flight: i["in_flight"].as_u64().unwrap_or(0),
            address: i["address"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}
