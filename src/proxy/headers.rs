//! Which headers cross the proxy, for both protocols. A header is either passed as the client sent
//! it, decided by wakeway (host, framing, forwarding), or dropped because it describes one
//! connection (RFC 9110 7.6.1) or could be read differently by the app (`_` in the name).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Pass,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    /// `X-Forwarded-For`: kept (and appended to) only from a trusted proxy.
    ForwardedFor,
    /// RFC 7239 `Forwarded`: kept only from a trusted proxy.
    Forwarded,
    /// `X-Forwarded-Host` and `-Proto`: always wakeway's own.
    Replaced,
    HopByHop,
    /// A name with `_`, which CGI/WSGI apps fold into `-`.
    Underscore,
    /// `X-Request-Id`: kept when valid, else wakeway's own.
    RequestId,
    /// W3C `traceparent` and `tracestate`: passed on when valid, else a trace starts here.
    TraceParent,
    TraceState,
}

/// What to do with a header name the client sent that contains `_` (`proxy.underscore_headers`).
pub use crate::config::UnderscoreHeaders as Underscore;

pub fn disposition(name: &[u8]) -> Disposition {
    if name.contains(&b'_') {
        return Disposition::Underscore;
    }
    // Lengths first: most names fail the cheap test.
    let is = |want: &[u8]| name.len() == want.len() && name.eq_ignore_ascii_case(want);
    match name.len() {
        2 if is(b"te") => Disposition::HopByHop,
        4 if is(b"host") => Disposition::Host,
        6 if is(b"expect") => Disposition::Expect,
        7 if is(b"upgrade") => Disposition::Upgrade,
        // httpoxy: CGI-style apps turn `Proxy` into `HTTP_PROXY`, which their HTTP clients
        // obey. No client has a reason to send it to an app.
        5 if is(b"proxy") => Disposition::HopByHop,
        7 if is(b"trailer") => Disposition::HopByHop,
        9 if is(b"forwarded") => Disposition::Forwarded,
        10 if is(b"connection") => Disposition::Connection,
        10 if is(b"keep-alive") => Disposition::HopByHop,
        10 if is(b"tracestate") => Disposition::TraceState,
        11 if is(b"traceparent") => Disposition::TraceParent,
        12 if is(b"x-request-id") => Disposition::RequestId,
        14 if is(b"content-length") => Disposition::ContentLength,
        15 if is(b"x-forwarded-for") => Disposition::ForwardedFor,
        16 if is(b"x-forwarded-host") => Disposition::Replaced,
        16 if is(b"proxy-connection") => Disposition::HopByHop,
        17 if is(b"transfer-encoding") => Disposition::TransferEncoding,
        17 if is(b"x-forwarded-proto") => Disposition::Replaced,
        18 if is(b"proxy-authenticate") => Disposition::HopByHop,
        19 if is(b"proxy-authorization") => Disposition::HopByHop,
        _ => Disposition::Pass,
    }
}

/// Response headers that describe the upstream connection, not the response.
pub fn response_hop_by_hop(name: &[u8]) -> bool {
    matches!(
        disposition(name),
        Disposition::HopByHop
            | Disposition::Connection
            | Disposition::TransferEncoding
            | Disposition::Upgrade
    )
}

/// The comma-separated tokens of a list header, trimmed.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// The protocols of an `Upgrade` list that may pass: all but `h2c`, which would switch the
/// upstream connection to h2 behind wakeway's back (an h2c upgrade smuggles requests past it).
pub fn upgrade_protocols(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    tokens(value).filter(|t| {
        let name = t.split(|b| *b == b'/').next().unwrap_or(t);
        !name.eq_ignore_ascii_case(b"h2c")
    })
}

/// Digits only: no sign, no spaces inside, no list (`1, 1`), no overflow.
pub fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

/// A Host value: a registered name, IPv4 or `[IPv6]`, with an optional port. Nothing a URL parser
/// would split differently (`@`, `/`, `\`, spaces, `%`).
pub fn valid_host(v: &[u8]) -> bool {
    if v.is_empty() || v.len() > 255 {
        return false;
    }
    let (name, port) = if v[0] == b'[' {
        let Some(end) = v.iter().position(|b| *b == b']') else {
            return false;
        };
        let inner = &v[1..end];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b".:".contains(b))
        {
            return false;
        }
        (&v[..0], &v[end + 1..])
    } else {
        match v.iter().rposition(|b| *b == b':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, &v[v.len()..]),
        }
    };
    let port_ok = port.is_empty()
        || (port[0] == b':' && port.len() <= 6 && port[1..].iter().all(u8::is_ascii_digit));
    port_ok
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "a",
            "a.localhost:8080",
            "127.0.0.1",
            "[::1]:80",
            "[::1]",
            "x-y.z",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "a b", "a@b", "a/b", "a:b", "[::1", "a%2f", "a\\b", "a:123456",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn h2c_is_struck_from_any_upgrade_list() {
        let kept = |v: &str| -> Vec<String> {
            upgrade_protocols(v.as_bytes())
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect()
        };
        assert_eq!(kept("websocket, h2c"), ["websocket"]);
        assert_eq!(kept("H2C/1, websocket"), ["websocket"]);
        assert!(kept("h2c").is_empty());
        assert_eq!(kept("websocket"), ["websocket"]);
    }

    #[test]
    fn dispositions() {
        assert_eq!(disposition(b"Content-Length"), Disposition::ContentLength);
        assert_eq!(disposition(b"X_Forwarded_For"), Disposition::Underscore);
        assert_eq!(disposition(b"X-Forwarded-Host"), Disposition::Replaced);
        assert_eq!(disposition(b"Keep-Alive"), Disposition::HopByHop);
        assert_eq!(disposition(b"Proxy"), Disposition::HopByHop);
        assert_eq!(disposition(b"X-Custom"), Disposition::Pass);
    }
}
