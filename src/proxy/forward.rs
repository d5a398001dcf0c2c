//! One request, from the client to an instance and back: route, acquire a slot, rewrite headers,
//! send with the pooled client, stream the response, and map every failure in one place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::body::{ProxyBody, RequestBody};
use super::error::ProxyError;
use super::route::RouteTable;
use crate::service::{InFlight, Service};

pub type UpstreamClient = Client<HttpConnector, RequestBody>;

/// How long a reset mid-request waits for the instance's exit notice (see `forward`).
const EXIT_NOTICE_WAIT: Duration = Duration::from_millis(250);

pub fn upstream_client(connect_timeout: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.enforce_http(true);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .set_host(false)
        .build(connector)
}

pub struct Forwarder {
    pub routes: arc_swap::ArcSwap<RouteTable>,
    pub client: UpstreamClient,
    pub response_timeout: Duration,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

impl Forwarder {
    /// The single exit point of a request: every outcome is counted and timed here.
    pub async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<ProxyBody> {
        let started = Instant::now();
        let host = match request_host(&req) {
            Ok(h) => h,
            Err(e) => return error_response(&e),
        };
        // `request_host` checked it is visible ASCII.
        let name = host.to_str().unwrap_or_default();
        let svc = self.routes.load().lookup(name).cloned();
        let Some(svc) = svc else {
            return error_response(&ProxyError::UnknownHost(name.to_string()));
        };
        let resp = match self.forward(&svc, req, remote, host).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(service = %svc.name, error = %e, side = ?e.side(), "request failed");
                error_response(&e)
            }
        };
        svc.metrics.observe_status(resp.status().as_u16());
        svc.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        resp
    }

    async fn forward(
        &self,
        svc: &Arc<Service>,
        mut req: Request<Incoming>,
        remote: SocketAddr,
        host: HeaderValue,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let upgrade = req
            .headers()
            .get(header::UPGRADE)
            .cloned()
            .filter(|_| connection_has(req.headers(), "upgrade"));
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        if let Some(u) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, u.clone());
        }
        add_forwarded(&mut headers, remote, &host)?;
        if !headers.contains_key(header::HOST) {
            // HTTP/2 carries the host in the authority; instances speak HTTP/1.1.
            headers.insert(header::HOST, host);
        }
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));

        // One deadline from arrival to answer: a retry does not queue afresh.
        let deadline = Instant::now() + svc.config.load().queue.timeout;
        let mut guard = svc
            .acquire_by(deadline)
            .await
            .map_err(ProxyError::Activator)?;
        let mut body = body;
        let mut retried = false;
        loop {
            let (rb, mut give_back) = RequestBody::new(body);
            let uri = Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(guard.instance().authority.clone())
                .path_and_query(path.clone())
                .build()
                .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
            let mut up = Request::new(rb);
            *up.method_mut() = parts.method.clone();
            *up.uri_mut() = uri;
            *up.version_mut() = Version::HTTP_11;
            *up.headers_mut() = headers.clone();

            let sent = tokio::time::timeout(self.response_timeout, self.client.request(up)).await;
            match sent {
                Err(_) => {
                    svc.metrics.upstream_timeout.inc();
                    return Err(ProxyError::ResponseTimeout(self.response_timeout));
                }
                Ok(Ok(resp)) => return Ok(respond(resp, guard, client_upgrade)),
                Ok(Err(e)) => {
                    let inst = guard.instance().clone();
                    drop(guard);
                    let detail = format!("{}: {}", inst.address, source_chain(&e));
                    let err = if e.is_connect() {
                        svc.metrics.upstream_connect.inc();
                        ProxyError::Connect(detail)
                    } else {
                        svc.metrics.upstream_reset.inc();
                        ProxyError::Upstream(detail)
                    };
                    // A refused connect proves the instance is gone. After a reset it may have
                    // crashed under this request: its exit notice (which makes it unroutable)
                    // follows within milliseconds, so wait for it briefly before answering, lest
                    // the client's next request reach the dead instance; a static upstream has
                    // no exit notice, so a fresh connect tells.
                    let gone = err.retry_safe()
                        || if svc.runtime != "static" {
                            inst.exits_within(EXIT_NOTICE_WAIT).await
                        } else {
                            !reachable(inst.address).await
                        };
                    // The controller decides: a refusal proves death, a timeout is one strike.
                    // After a refusal the retry waits (briefly) for that decision, or it could
                    // pick the same instance, now the least loaded of all.
                    if e.is_connect() && timed_out(&e) {
                        svc.report_timeout(&inst);
                    } else if gone {
                        svc.report_refused(&inst);
                        inst.leaves_within(EXIT_NOTICE_WAIT).await;
                    }
                    // Only when nothing reached the instance is sending again safe (even for a
                    // POST: its body comes back unread).
                    let reclaimed = give_back.try_recv();
                    let (true, false, Ok(b)) = (err.retry_safe(), retried, reclaimed) else {
                        return Err(err);
                    };
                    retried = true;
                    body = b;
                    guard = if svc.runtime == "static" {
                        // Nothing will start: another upstream now, or the error.
                        let max = svc.config.load().scaling.max_concurrency;
                        match svc.pool.load().acquire(max) {
                            Some(i) => svc.guard(i),
                            None => return Err(err),
                        }
                    } else {
                        svc.acquire_by(deadline)
                            .await
                            .map_err(ProxyError::Activator)?
                    };
                }
            }
        }
    }
}

fn respond(
    mut resp: Response<Incoming>,
    guard: InFlight,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ProxyBody> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        // The tunnel owns the slot: the instance counts as busy until either side closes.
        tokio::spawn(async move {
            let _guard = guard;
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let mut c = TokioIo::new(client);
                    let mut u = TokioIo::new(upstream);
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                }
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, ProxyBody::empty());
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, ProxyBody::upstream(body, Some(guard)))
}

pub fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(format!("{}\n", e.message())));
    *resp.status_mut() = e.status();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(ra) = e.retry_after() {
        h.insert(header::RETRY_AFTER, ra);
    }
    resp
}

/// The host the client asked for: the Host header, or the authority of an HTTP/2 request.
/// A header value, so forwarding copies it without parsing it again.
fn request_host(req: &Request<Incoming>) -> Result<HeaderValue, ProxyError> {
    let host = match req.headers().get(header::HOST) {
        Some(h) => h.clone(),
        None => {
            let authority = req
                .uri()
                .authority()
                .ok_or_else(|| ProxyError::BadRequest("missing Host header".into()))?;
            HeaderValue::from_str(authority.as_str())
                .map_err(|_| ProxyError::BadRequest("invalid :authority".into()))?
        }
    };
    if host.to_str().is_err() {
        return Err(ProxyError::BadRequest(
            "the Host header is not valid ASCII".into(),
        ));
    }
    Ok(host)
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the headers that describe one connection and must not cross the proxy (RFC 9110 7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

fn add_forwarded(
    headers: &mut HeaderMap,
    remote: SocketAddr,
    host: &HeaderValue,
) -> Result<(), ProxyError> {
    let ip = remote.ip().to_string();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {ip}"),
        None => ip,
    };
    headers.insert(
        X_FORWARDED_FOR.clone(),
        HeaderValue::from_str(&xff)
            .map_err(|_| ProxyError::BadRequest("invalid X-Forwarded-For header".into()))?,
    );
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if !headers.contains_key(&X_FORWARDED_HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    Ok(())
}

/// A fresh connect, on the error path only: does the instance still accept connections?
async fn reachable(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(250),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Whether a connect failed by its timeout rather than by a refusal.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cur = c.source();
    }
    false
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_with_the_ones_connection_lists() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_appends_the_client() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarded(
            &mut h,
            "127.0.0.2:5555".parse().unwrap(),
            &HeaderValue::from_static("a.localhost"),
        )
        .unwrap();
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.localhost");
    }
}
