//! The headers of an h2 request on their way upstream, by the same rules as HTTP/1
//! (`headers::disposition`): which host it asked for, what is hop-by-hop or wakeway's own, and
//! the `X-Forwarded-*` wakeway adds.

use std::net::SocketAddr;

use http::Request;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::body::Incoming;

use crate::proxy::error::ProxyError;
use crate::proxy::headers::{self, Disposition, Underscore};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static PROXY: HeaderName = HeaderName::from_static("proxy");

/// Whether the client said it reads trailers (`TE: trailers`): gRPC needs them, and an h2
/// instance gets the header again, as the one `TE` value h2 allows.
pub(super) fn wants_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    })
}

/// The host the client asked for: the Host header, or the authority of an HTTP/2 request.
/// A header value, so forwarding copies it without parsing it again.
pub(super) fn request_host(req: &Request<Incoming>) -> Result<HeaderValue, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header".into()));
    }
    let authority = req.uri().authority().map(|a| a.as_str());
    let host = match (header, authority) {
        // Both given and different: the app could read either, so neither is taken.
        (Some(h), Some(a)) if !h.as_bytes().eq_ignore_ascii_case(a.as_bytes()) => {
            return Err(ProxyError::BadRequest(
                ":authority and the Host header differ".into(),
            ));
        }
        (Some(h), _) => h.clone(),
        (None, Some(a)) => HeaderValue::from_str(a)
            .map_err(|_| ProxyError::BadRequest("invalid :authority".into()))?,
        (None, None) => return Err(ProxyError::BadRequest("missing Host header".into())),
    };
    if !headers::valid_host(host.as_bytes()) {
        return Err(ProxyError::BadRequest(
            "the Host header is not a valid host".into(),
        ));
    }
    Ok(host)
}

pub(super) static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// The h2 side of the one reading every request gets (`headers::disposition`): hop-by-hop and
/// wakeway-owned headers go, names with `_` are dropped or refused.
pub(crate) fn rewrite_request_headers(
    headers: &mut HeaderMap,
    underscore: Underscore,
    trusted: bool,
) -> Result<(), ProxyError> {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::EXPECT);
    // httpoxy (see `headers::disposition`).
    headers.remove(&PROXY);
    headers.remove(&X_FORWARDED_HOST);
    headers.remove(&X_FORWARDED_PROTO);
    if !trusted {
        headers.remove(header::FORWARDED);
    }
    if headers.keys().any(|k| k.as_str().contains('_')) {
        if underscore == Underscore::Reject {
            return Err(ProxyError::BadRequest("a header name contains `_`".into()));
        }
        let names: Vec<HeaderName> = headers
            .keys()
            .filter(|k| headers::disposition(k.as_str().as_bytes()) == Disposition::Underscore)
            .cloned()
            .collect();
        for n in names {
            headers.remove(n);
        }
    }
    Ok(())
}

pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    remote: SocketAddr,
    host: &HeaderValue,
    trusted: bool,
    https: bool,
) -> Result<(), ProxyError> {
    let ip = remote.ip().to_string();
    let prior = headers
        .get(&X_FORWARDED_FOR)
        .filter(|_| trusted)
        .and_then(|v| v.to_str().ok());
    let xff = match prior {
        Some(prior) => format!("{prior}, {ip}"),
        None => ip,
    };
    headers.insert(
        X_FORWARDED_FOR.clone(),
        HeaderValue::from_str(&xff)
            .map_err(|_| ProxyError::BadRequest("invalid X-Forwarded-For header".into()))?,
    );
    let proto = if https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_underscore_and_wakeway_owned_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x_forwarded_for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil"));
        h.insert("proxy", HeaderValue::from_static("http://evil.example"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        rewrite_request_headers(&mut h, Underscore::Drop, false).unwrap();
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
        h.insert("a_b", HeaderValue::from_static("1"));
        assert!(rewrite_request_headers(&mut h, Underscore::Reject, false).is_err());
    }

    #[test]
    fn forwarded_for_appends_only_to_a_trusted_proxy() {
        let peer = "127.0.0.2:5555".parse().unwrap();
        let host = HeaderValue::from_static("a.localhost");
        for (trusted, want) in [(true, "10.0.0.1, 127.0.0.2"), (false, "127.0.0.2")] {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
            add_forwarded(&mut h, peer, &host, trusted, false).unwrap();
            assert_eq!(h["x-forwarded-for"], want);
            assert_eq!(h["x-forwarded-proto"], "http");
            assert_eq!(h["x-forwarded-host"], "a.localhost");
        }
    }
}
