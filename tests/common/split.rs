//! A service as an operator finds it on a busy day: a deployment that failed (the app printed
//! why and exited), a canary deployed beside the live revision with a tag, the traffic split
//! 90/10 between them with tags on both, and requests arriving (a few answered 503).

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{DEADLINE, admin_call, try_get, wait_for};

/// What the failing revision prints before it exits 3.
pub const FAILED_OUTPUT: &str = "cannot open /etc/app/config.yml: no such file";

/// The admin API of a running wakeway, with its token if it has one.
pub struct Admin {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Admin {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        admin_call(
            self.addr,
            method,
            path,
            body.as_ref(),
            self.token.as_deref(),
        )
        .await
    }

    /// `GET path`, which must answer 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {v}");
        v
    }

    /// Deploys `body` to `service` and waits for the outcome; returns the deployment.
    pub async fn deploy(&self, service: &str, body: Value) -> Value {
        let path = format!("/v1/services/{service}/deployments");
        let (status, d) = self.call(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "deploy {body}: {d}");
        let id = d["id"].as_str().expect("a deployment id").to_string();
        wait_for(&format!("deployment {id} to end"), DEADLINE, || async {
            let d = self.get(&format!("{path}/{id}")).await;
            (d["state"] != "in_progress").then_some(d)
        })
        .await
    }
}

/// The revisions of the split and the failed deployment.
pub struct Split {
    pub stable: String,
    pub canary: String,
    pub failed: Value,
}

/// Makes `service` (a `wakeway whoami` process service with one revision) the busy day above.
pub async fn failed_deploy_and_split(admin: &Admin, service: &str) -> Split {
    let stable = admin.get(&format!("/v1/services/{service}")).await["revision"]
        .as_str()
        .expect("a live revision")
        .to_string();
    let script = format!("echo '{FAILED_OUTPUT}' >&2; exit 3");
    let failed = admin
        .deploy(service, json!({ "command": ["sh", "-c", script] }))
        .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let canary = admin
        .deploy(
            service,
            json!({ "command": ["wakeway", "whoami"], "update_env": { "RELEASE": "canary" },
                    "no_traffic": true, "tag": "canary" }),
        )
        .await;
    assert_eq!(canary["state"], "succeeded", "{canary}");
    let canary = canary["revision"].as_str().unwrap().to_string();
    let body = json!({ "traffic": [
        { "revision": stable, "percent": 90, "tag": "stable" },
        { "revision": canary, "percent": 10, "tag": "canary" },
    ]});
    let (status, v) = admin
        .call(
            Method::PUT,
            &format!("/v1/services/{service}/traffic"),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    Split {
        stable,
        canary,
        failed,
    }
}

/// Sends requests to `host` (one in ten asks for a 503) until `steps` seconds of the service's
/// history hold answers; the requests go on until the returned task is aborted (or dropped
/// with the test's runtime).
pub async fn traffic_until_history(
    proxy: SocketAddr,
    admin: &Admin,
    service: &str,
    host: &str,
    steps: usize,
) -> tokio::task::JoinHandle<()> {
    let host = host.to_string();
    let sender = tokio::spawn(async move {
        for i in 0u64.. {
            let path = if i % 10 == 9 {
                "/?status=503"
            } else {
                "/hello"
            };
            let _ = try_get(proxy, &host, path).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    wait_for(
        &format!("{steps} steps of {service}'s history with answers"),
        Duration::from_secs(60),
        || async {
            let h = admin.get(&format!("/v1/services/{service}/history")).await;
            let busy = h["points"]
                .as_array()?
                .iter()
                .filter(|p| p["requests_per_second"].as_f64() > Some(0.0))
                .count();
            (busy >= steps).then_some(())
        },
    )
    .await;
    sender
}
