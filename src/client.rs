//! The CLI's admin client: `wakeway status`, `deploy`, `rollback`, `events` talk to a running
//! wakeway's admin API.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// `admin` is `host:port` or a URL; `token` the admin bearer token, if one is set.
    pub fn new(admin: &str, token: Option<String>) -> AdminClient {
        let base = if admin.contains("://") {
            admin.trim_end_matches('/').to_string()
        } else {
            format!("http://{admin}")
        };
        AdminClient {
            base,
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request; returns the status and the JSON body. Transport failures name the
    /// admin address.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), String> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        // The admin refuses state-changing calls not declared JSON (a browser's cross-site
        // form post cannot declare it), even those without a body.
        if method != Method::GET {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let body = match body {
            Some(v) => Full::new(Bytes::from(v.to_string())),
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.http.request(req))
            .await
            .map_err(|_| format!("{} did not answer within 30s", self.base))?
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", self.base))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }

    /// Like `call`, but a non-2xx answer is an error carrying the API's message.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let (status, v) = self.call(method.clone(), path, body).await?;
        if status.is_success() {
            return Ok(v);
        }
        let msg = v
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        Err(format!("{method} {path}: {status}: {msg}"))
    }
}

/// One line per service and instance, like `kubectl get`.
pub fn format_status(services: &Value) -> String {
    let mut out = String::new();
    for s in services.as_array().into_iter().flatten() {
        let instances = s["instances"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!(
            "{:<16} {:<8} revision {:<14} desired {:<3} instances {:<3} in-flight {:<4} queued {}{}\n",
            s["name"].as_str().unwrap_or("?"),
            s["runtime"].as_str().unwrap_or("?"),
            s["revision"].as_str().unwrap_or("-"),
            s["desired"],
            instances.len(),
            s["in_flight"],
            s["queued"],
            if s["paused"].as_bool() == Some(true) { "  PAUSED" } else { "" },
        ));
        for i in instances {
            out.push_str(&format!(
                "  {:<22} {:<9} {:<22} in-flight {:<4} since {}\n",
                i["id"].as_str().unwrap_or("?"),
                i["state"].as_str().unwrap_or("?"),
                i["address"].as_str().unwrap_or("?"),
                i["in_flight"],
                i["started_at"].as_str().unwrap_or("?"),
            ));
        }
    }
    out
}

pub fn format_event(e: &Value) -> String {
    format!(
        "{} {:<10} {:<18} {}",
        e["time"].as_str().unwrap_or(""),
        e["service"].as_str().unwrap_or(""),
        e["kind"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_services_and_instances() {
        let v = serde_json::json!([{
            "name": "web", "runtime": "process", "revision": "web-00002", "desired": 1,
            "in_flight": 0, "queued": 0, "paused": false,
            "instances": [{"id": "web-00002-a", "state": "ready", "address": "127.0.0.1:1",
                           "in_flight": 0, "started_at": "t"}]
        }]);
        let s = format_status(&v);
        assert!(s.contains("web-00002-a"), "{s}");
        assert!(s.starts_with("web "), "{s}");
    }
}
