//! Who may drive the admin API: the bearer token, and the checks that keep a web page from
//! driving it through the user's browser.
//!
//! A browser sends a cross-site `POST` with `Content-Type: text/plain` (or no body at all)
//! without a preflight, and DNS rebinding makes a hostile page's requests name its own host in
//! `Host` while they reach the loopback admin port. So every request must name a host the admin
//! answers to, and every state-changing one must be JSON and must not come from another origin.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::OnceLock;

use http::{HeaderMap, Method, StatusCode, Uri, header};

/// Why a request was refused before it reached the API.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Host`, or one the admin does not answer to (DNS rebinding).
    Host(String),
    /// `Origin` or `Sec-Fetch-Site` says another site sent it.
    CrossSite(String),
    /// A state-changing call whose body is not declared JSON.
    ContentType(String),
    /// Missing or wrong bearer token.
    Token,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Host(_) | Refusal::CrossSite(_) => StatusCode::FORBIDDEN,
            Refusal::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Token => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::Host(m) | Refusal::CrossSite(m) | Refusal::ContentType(m) => m.clone(),
            Refusal::Token => "missing or wrong `Authorization: Bearer <token>` header".into(),
        }
    }
}

/// GET and HEAD only read; a browser's cross-site reads are already kept from the page by CORS.
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The request must name the admin's own address, `localhost` (or a `*.localhost` name, which
/// browsers resolve to loopback themselves), or one of the configured `admin.hosts`. An IP
/// literal cannot be rebound, so the admin's own IP (any IP when bound to the unspecified
/// address) passes.
pub fn check_host(
    uri: &Uri,
    headers: &HeaderMap,
    local: IpAddr,
    names: &[String],
) -> Result<(), Refusal> {
    let authority = match uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => match headers.get(header::HOST).map(|h| h.to_str()) {
            Some(Ok(h)) => h.to_string(),
            Some(Err(_)) => return Err(Refusal::Host("the `Host` header is not text".into())),
            None => return Err(Refusal::Host("the request has no `Host` header".into())),
        },
    };
    let host = host_of(&authority);
    if host_allowed(&host, local, names) {
        Ok(())
    } else {
        Err(Refusal::Host(format!(
            "`Host: {authority}` is not a name this admin API answers to; use its address, \
             localhost, or add the name to `hosts` in [admin]"
        )))
    }
}

fn host_allowed(host: &str, local: IpAddr, names: &[String]) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip == local
            || local.is_unspecified()
            || (ip.is_loopback() && local.is_loopback())
            || ip.to_canonical() == local.to_canonical();
    }
    names.iter().any(|n| n == host)
}

/// `host[:port]` or `[v6]:port` → the lower-cased host without brackets or a trailing dot.
fn host_of(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// A state-changing call must come from the admin's own origin (or from no browser at all) and
/// carry JSON.
pub fn check_write(headers: &HeaderMap) -> Result<(), Refusal> {
    // Sent twice, each could be read differently by whatever reads one of them: refused.
    for name in ["Origin", "Sec-Fetch-Site"] {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(Refusal::CrossSite(format!(
                "more than one `{name}` header: state-changing admin calls need one at most"
            )));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return Err(Refusal::CrossSite(format!(
                "`Sec-Fetch-Site: {site}`: state-changing admin calls are accepted only from the \
                 admin's own origin"
            )));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if authority.is_none_or(|a| !a.eq_ignore_ascii_case(host)) {
            return Err(Refusal::CrossSite(format!(
                "`Origin: {origin}` is not the admin's own origin (`{host}`): state-changing \
                 admin calls are refused from other sites"
            )));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let is_json = content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(Refusal::ContentType(format!(
            "state-changing admin calls need `Content-Type: application/json` (got {})",
            content_type.map_or("none".to_string(), |c| format!("`{c}`"))
        )));
    }
    Ok(())
}

/// Whether the `Authorization: Bearer` header carries `expected`.
///
/// Both sides are hashed with a per-process random key and the fixed-size digests compared, so
/// the time taken depends neither on how much of the token matched nor on whether the lengths
/// did.
pub fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or("");
    let ok = digest(given.as_bytes()) == digest(expected.as_bytes());
    ok && !given.is_empty()
}

fn digest(bytes: &[u8]) -> [u64; 2] {
    static KEYS: OnceLock<[std::hash::RandomState; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| [Default::default(), Default::default()]);
    [keys[0].hash_one(bytes), keys[1].hash_one(bytes)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    /// `h` with `name: value` sent twice.
    fn twice(name: &'static str, value: &str, mut h: HeaderMap) -> HeaderMap {
        h.append(name, value.parse().unwrap());
        h.append(name, value.parse().unwrap());
        h
    }

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn host_ok(host: &str, local: IpAddr, names: &[&str]) -> bool {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        check_host(
            &Uri::from_static("/"),
            &headers(&[("host", host)]),
            local,
            &names,
        )
        .is_ok()
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret2".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"), "the scheme is case-insensitive");
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
    }

    #[test]
    fn host_must_be_the_admin_localhost_or_configured() {
        assert!(host_ok("127.0.0.1:9180", LOOPBACK, &[]));
        assert!(host_ok("localhost:9180", LOOPBACK, &[]));
        assert!(host_ok("LOCALHOST", LOOPBACK, &[]));
        assert!(host_ok("console.localhost:9180", LOOPBACK, &[]));
        assert!(host_ok("[::1]:9180", LOOPBACK, &[]));
        assert!(host_ok("admin.example:9180", LOOPBACK, &["admin.example"]));
        assert!(host_ok("admin.example.", LOOPBACK, &["admin.example"]));
        // DNS rebinding: a hostile name resolved to 127.0.0.1.
        assert!(!host_ok("evil.example:9180", LOOPBACK, &[]));
        assert!(!host_ok("localhost.evil.example", LOOPBACK, &[]));
        assert!(!host_ok("10.0.0.5:9180", LOOPBACK, &[]));
        let lan: IpAddr = "10.0.0.5".parse().unwrap();
        assert!(host_ok("10.0.0.5:9180", lan, &[]));
        assert!(!host_ok("10.0.0.6:9180", lan, &[]));
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(host_ok("192.168.1.4:9180", any, &[]));
        assert!(!host_ok("evil.example", any, &[]));
        let missing = check_host(&Uri::from_static("/"), &HeaderMap::new(), LOOPBACK, &[]);
        assert!(matches!(missing, Err(Refusal::Host(_))));
    }

    #[test]
    fn writes_need_json_from_the_same_origin() {
        let json = ("content-type", "application/json");
        assert_eq!(check_write(&headers(&[json])), Ok(()));
        assert_eq!(
            check_write(&headers(&[(
                "content-type",
                "Application/JSON; charset=utf-8"
            )])),
            Ok(())
        );
        let same = headers(&[
            json,
            ("host", "127.0.0.1:9180"),
            ("origin", "http://127.0.0.1:9180"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(check_write(&same), Ok(()));
        for bad in [
            headers(&[("content-type", "text/plain")]),
            headers(&[("content-type", "application/x-www-form-urlencoded")]),
            headers(&[]),
        ] {
            assert!(matches!(check_write(&bad), Err(Refusal::ContentType(_))));
        }
        for bad in [
            headers(&[
                json,
                ("host", "127.0.0.1:9180"),
                ("origin", "https://evil.example"),
            ]),
            headers(&[json, ("host", "127.0.0.1:9180"), ("origin", "null")]),
            headers(&[
                json,
                ("host", "127.0.0.1:9180"),
                ("origin", "http://127.0.0.1:3000"),
            ]),
            headers(&[json, ("sec-fetch-site", "cross-site")]),
            headers(&[json, ("sec-fetch-site", "same-site")]),
            twice(
                "origin",
                "http://127.0.0.1:9180",
                headers(&[json, ("host", "127.0.0.1:9180")]),
            ),
            twice("sec-fetch-site", "same-origin", headers(&[json])),
        ] {
            let r = check_write(&bad);
            assert!(matches!(r, Err(Refusal::CrossSite(_))), "{bad:?}: {r:?}");
            assert_eq!(r.unwrap_err().status(), StatusCode::FORBIDDEN);
        }
    }
}
