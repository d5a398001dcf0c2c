//! What a release test does and checks: deployments through the admin API, paused answers,
//! clean blue/green switches, requests held in flight.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::exchange;
use super::{
    DEADLINE, Instance, REQUEST_TIMEOUT, Resp, Sample, Wakeway, admin_call, assert_none_failed,
    assert_retry_later, wait_for,
};

/// The revision an instance id belongs to (`web-00002-a` → `web-00002`).
pub fn revision_of_instance(id: &str) -> &str {
    id.rsplit_once('-').map(|(r, _)| r).unwrap_or(id)
}

impl Wakeway {
    /// `POST path` on the admin listener with a JSON body (no token).
    pub async fn admin_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        admin_call(self.admin, Method::POST, path, Some(&body), None).await
    }

    /// `POST /v1/services/{name}/deployments` with `body`; must answer 202. Returns the deployment.
    pub async fn deploy(&self, name: &str, body: Value) -> Value {
        let (status, d) = self
            .admin_post(&format!("/v1/services/{name}/deployments"), body.clone())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "deploy {name} {body}: {d}");
        assert!(d["id"].is_string(), "the deployment has an id: {d}");
        d
    }

    /// Deploys `body` to `name` (which must accept it) and waits until the deployment has
    /// finished; returns it.
    pub async fn deploy_and_wait(&self, name: &str, body: Value) -> Value {
        let d = self.deploy(name, body).await;
        self.wait_deployment(name, d["id"].as_str().unwrap()).await
    }

    /// As [`Wakeway::deploy_and_wait`], and the deployment must have succeeded.
    pub async fn deploy_ok(&self, name: &str, body: Value) -> Value {
        let done = self.deploy_and_wait(name, body).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        done
    }

    /// `GET /v1/services/{name}/deployments`.
    pub async fn deployments(&self, name: &str) -> Vec<Value> {
        match self
            .admin_json(&format!("/v1/services/{name}/deployments"))
            .await
        {
            Value::Array(list) => list,
            other => panic!("deployments of {name} is not an array: {other}"),
        }
    }

    /// Waits until deployment `id` of `name` is no longer `in_progress`; returns it.
    pub async fn wait_deployment(&self, name: &str, id: &str) -> Value {
        wait_for(
            &format!("deployment {id} of {name} to finish"),
            DEADLINE,
            || async move {
                let d = self
                    .admin_json(&format!("/v1/services/{name}/deployments/{id}"))
                    .await;
                (d["state"] != "in_progress").then_some(d)
            },
        )
        .await
    }

    /// The live revision id of service `name`.
    pub async fn revision(&self, name: &str) -> String {
        let s = self.service(name).await;
        s["revision"]
            .as_str()
            .unwrap_or_else(|| panic!("service {name} has no revision: {s}"))
            .to_string()
    }

    /// Waits until the instances of `name` satisfy `check`; returns them.
    pub async fn wait_instances(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&[Instance]) -> bool,
    ) -> Vec<Instance> {
        let check = &check;
        wait_for(&format!("{name}: {what}"), DEADLINE, || async move {
            let list = self.instances(name).await;
            check(&list).then_some(list)
        })
        .await
    }

    /// Waits until `name` has exactly `n` instances, all ready and of `revision`.
    pub async fn wait_ready_revision(&self, name: &str, revision: &str, n: usize) -> Vec<Instance> {
        self.wait_instances(
            name,
            &format!("exactly {n} ready instance(s), all of {revision}"),
            |list| {
                list.len() == n
                    && list
                        .iter()
                        .all(|i| i.state == "ready" && revision_of_instance(&i.id) == revision)
            },
        )
        .await
    }

    /// Waits until `GET /v1/events?service=NAME` has an event of `kind`; returns the events of it.
    pub async fn wait_event(&self, name: &str, kind: &str) -> Vec<Value> {
        wait_for(
            &format!("a {kind} event of {name}"),
            DEADLINE,
            || async move {
                let found = self.events_of(name, kind).await;
                (!found.is_empty()).then_some(found)
            },
        )
        .await
    }

    /// Instance `id` of `name`, which must still be listed and draining (it holds a request).
    pub async fn assert_draining(&self, name: &str, id: &str) -> Instance {
        let still = self
            .instances(name)
            .await
            .into_iter()
            .find(|i| i.id == id)
            .unwrap_or_else(|| panic!("{id} stopped with a request in flight"));
        assert_eq!(still.state, "draining", "{still:?}");
        still
    }

    /// A deploy of paused service `name` is refused (409); the refusal's body.
    pub async fn assert_no_deploy_while_paused(&self, name: &str) -> Value {
        let (status, body) = self
            .admin_post(&format!("/v1/services/{name}/deployments"), json!({}))
            .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "no deploy while paused: {body}"
        );
        body
    }

    /// Rolls `name` back (202 Accepted) and waits until that deployment succeeded; the
    /// deployment as accepted.
    pub async fn rollback_ok(&self, name: &str) -> Value {
        let (status, rb) = self
            .admin_post(&format!("/v1/services/{name}/rollback"), json!(null))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{rb}");
        let done = self.wait_deployment(name, rb["id"].as_str().unwrap()).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        rb
    }

    /// Resumes paused service `name`; a request to `host` then cold-starts it. Its answer.
    pub async fn resume_and_cold_start(&self, name: &str, host: &str) -> Resp {
        let (status, view) = self
            .admin_post(&format!("/v1/services/{name}/resume"), json!(null))
            .await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["paused"], false, "{view}");
        let resp = self.get(host, "/").await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "cold start after resume: {}",
            resp.text()
        );
        resp
    }

    /// Replaces the config file this wakeway was started with (for a reload).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write config");
    }
}

/// A paused service's answer: 503, with Retry-After, saying it is paused.
/// The id of the one deployment a reload `report` began, which must be of `service`.
pub fn the_reload_deployment(report: &Value, service: &str) -> String {
    let deployed = &report["deployed"];
    assert_eq!(deployed.as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(deployed[0]["service"], service, "{report}");
    deployed[0]["deployment"]["Ok"]
        .as_str()
        .unwrap_or_else(|| panic!("the deployment began: {report}"))
        .to_string()
}

/// The ids of `instances` of `revision`.
pub fn of_revision(instances: &[Instance], revision: &str) -> BTreeSet<String> {
    instances
        .iter()
        .filter(|i| revision_of_instance(&i.id) == revision)
        .map(|i| i.id.clone())
        .collect()
}

/// The kinds of `events`, in order.
pub fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["kind"].as_str()).collect()
}

/// An event of kind `first`, then (after the first of those) one of kind `then`.
pub fn assert_kinds_in_order(events: &[Value], first: &str, then: &str) {
    let k = kinds(events);
    let a = k.iter().position(|k| *k == first);
    let b = k.iter().position(|k| *k == then);
    assert!(a.is_some() && b > a, "{first} then {then}: {k:?}");
}

/// A `paused` event, then a `resumed` one.
pub fn assert_paused_then_resumed(events: &[Value]) {
    assert_kinds_in_order(events, "paused", "resumed");
}

/// A paused service's answer: 503, with Retry-After, saying it is paused.
pub fn assert_paused(resp: &Resp) {
    assert_retry_later(resp);
    assert!(resp.text().contains("paused"), "{}", resp.text());
}

/// What a user of a blue/green deploy checks in the load's samples: no request failed, the
/// old revision served before the switch, and every request sent after it reached the new one.
pub fn assert_clean_switch(samples: &[Sample], switched: Instant, old: &str, new: &str) {
    assert_none_failed(samples, " during the deployment");
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= switched).collect();
    assert!(!after.is_empty(), "no request was sent after the switch");
    for s in &after {
        assert_eq!(
            s.revision.as_deref(),
            Some(new),
            "a request sent after the switch reached {:?}",
            s.instance
        );
    }
    assert!(
        samples.iter().any(|s| s.revision.as_deref() == Some(old)),
        "the old revision served before the switch"
    );
}

/// Asserts every sample answered 200 from `revision`; `what` says what that shows.
pub fn assert_only_revision_served(samples: &[Sample], revision: &str, what: &str) {
    assert_none_failed(samples, "");
    assert!(
        samples
            .iter()
            .all(|s| s.revision.as_deref() == Some(revision)),
        "{what}"
    );
}

/// A `POST path` whose request body stays open until [`HeldRequest::finish`]: the request is in
/// flight (on whichever instance took it) for exactly as long as the test wants. Against
/// whoami's `/echo` the answer is the body sent.
pub struct HeldRequest {
    first_chunk: &'static str,
    tx: tokio::sync::mpsc::UnboundedSender<Bytes>,
    task: tokio::task::JoinHandle<Result<Resp, String>>,
}

impl HeldRequest {
    pub fn start(
        addr: SocketAddr,
        host: &str,
        path: &str,
        first_chunk: &'static str,
    ) -> HeldRequest {
        use http_body::Frame;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let _ = tx.send(Bytes::from_static(first_chunk.as_bytes()));
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, std::convert::Infallible>(Frame::data(chunk)), rx))
        });
        let body = http_body_util::StreamBody::new(frames).boxed_unsync();
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(http::header::HOST, host)
            .body(body)
            .expect("request");
        let task = tokio::spawn(exchange(addr, req));
        HeldRequest {
            first_chunk,
            tx,
            task,
        }
    }

    /// As [`HeldRequest::finish`]; the answer must be a 200 echoing both chunks, so the request
    /// was served to its end.
    pub async fn finish_ok(self, last_chunk: &'static str) -> Resp {
        let sent = format!("{}{last_chunk}", self.first_chunk);
        let resp = self
            .finish(last_chunk)
            .await
            .expect("the held request completes");
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        assert_eq!(resp.text(), sent, "served to its end");
        resp
    }

    /// Sends `last_chunk`, ends the request body and waits (bounded) for the whole answer.
    pub async fn finish(self, last_chunk: &'static str) -> Result<Resp, String> {
        let _ = self.tx.send(Bytes::from_static(last_chunk.as_bytes()));
        drop(self.tx);
        match tokio::time::timeout(REQUEST_TIMEOUT, self.task).await {
            Ok(joined) => joined.map_err(|e| format!("held request task: {e}"))?,
            Err(_) => Err(format!(
                "held request: no answer within {REQUEST_TIMEOUT:?}"
            )),
        }
    }
}

/// `name` has two deployments, oldest first: `rolled_back_id`, rolled back, then the rollback
/// itself, succeeded.
pub async fn assert_rolled_back_then_rollback(wk: &Wakeway, name: &str, rolled_back_id: &str) {
    let list = wk.deployments(name).await;
    let states: Vec<(&Value, &Value)> = list.iter().map(|d| (&d["id"], &d["state"])).collect();
    assert_eq!(list.len(), 2, "{states:?}");
    assert_eq!(list[0]["id"], rolled_back_id, "oldest first: {states:?}");
    assert_eq!(list[0]["state"], "rolled_back", "{states:?}");
    assert_eq!(list[1]["state"], "succeeded", "{states:?}");
}
