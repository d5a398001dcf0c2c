//! The h2 path's header rewriting leaves the guarantees HTTP/1 has: no hop-by-hop or `_` names,
//! one of each forwarding header, everything else untouched.

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::collection::vec;
use proptest::prelude::*;

use super::{HOP_BY_HOP, WAKEWAY_OWNED, bytes_of, peer};
use crate::proxy::forward::{add_forwarded, rewrite_request_headers};
use crate::proxy::headers::Underscore;

fn h2_header() -> impl Strategy<Value = (HeaderName, HeaderValue)> {
    let name = prop_oneof![
        3 => bytes_of(&[
            "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
            "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "expect",
            "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded",
            "x_forwarded_for", "transfer_encoding", "_", "x-a", "cookie", "accept", "host", "proxy",
        ]),
        1 => "[a-z0-9!#$%&'*+.^_`|~-]{1,20}".prop_map(String::into_bytes),
    ];
    let value = vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..24);
    (name, value).prop_map(|(n, v)| {
        (
            HeaderName::from_bytes(&n).expect("generated a token"),
            HeaderValue::from_bytes(&v).expect("generated a field value"),
        )
    })
}

fn h2_headers() -> impl Strategy<Value = HeaderMap> {
    vec(h2_header(), 0..16).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(n, v);
        }
        map
    })
}

/// Names the h2 path removes whatever their value (`Forwarded` only from an untrusted peer).
fn h2_removed(name: &str, trusted: bool) -> bool {
    HOP_BY_HOP.contains(&name)
        || name.contains('_')
        || matches!(
            name,
            "expect" | "x-forwarded-for" | "x-forwarded-host" | "x-forwarded-proto" | "host"
        )
        || (name == "forwarded" && !trusted)
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn h2_headers_leave_one_reading(
        original in h2_headers(),
        underscore in prop_oneof![Just(Underscore::Drop), Just(Underscore::Reject)],
        trusted: bool,
        https: bool,
        peer in peer(),
        host in bytes_of(&["h", "a.localhost:8080", "[::1]:443", "127.0.0.1"]),
    ) {
        let host = HeaderValue::from_bytes(&host).unwrap();
        let remote = SocketAddr::new(peer, 40000);
        let mut h = original.clone();
        let had_underscore = original.keys().any(|k| k.as_str().contains('_'));
        let rewritten = rewrite_request_headers(&mut h, underscore, trusted);
        if underscore == Underscore::Reject && had_underscore {
            prop_assert!(rewritten.is_err());
            return Ok(());
        }
        prop_assert!(rewritten.is_ok());
        prop_assert!(add_forwarded(&mut h, remote, &host, trusted, https).is_ok());
        h.insert(http::header::HOST, host.clone());

        for name in h.keys() {
            let name = name.as_str();
            prop_assert!(!name.contains('_'), "{name}");
            prop_assert!(!HOP_BY_HOP.contains(&name), "{name} forwarded");
            prop_assert!(name != "expect");
        }
        let values = |n: &str| h.get_all(n).iter().cloned().collect::<Vec<_>>();
        prop_assert_eq!(values("host"), vec![host.clone()]);
        prop_assert_eq!(values("x-forwarded-host"), vec![host.clone()]);
        prop_assert_eq!(
            values("x-forwarded-proto"),
            vec![HeaderValue::from_static(if https { "https" } else { "http" })]
        );
        let xff = values("x-forwarded-for");
        prop_assert_eq!(xff.len(), 1);
        let ip = peer.to_string();
        let prior = original.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let want = match prior {
            Some(p) if trusted => format!("{p}, {ip}"),
            _ => ip,
        };
        prop_assert_eq!(xff[0].as_bytes(), want.as_bytes());

        // Everything else passes untouched, every value in order.
        for name in original.keys() {
            if h2_removed(name.as_str(), trusted) {
                continue;
            }
            let before: Vec<_> = original.get_all(name).iter().collect();
            let after: Vec<_> = h.get_all(name).iter().collect();
            prop_assert_eq!(before, after, "{}", name);
        }
        for name in h.keys() {
            prop_assert!(
                original.contains_key(name) || WAKEWAY_OWNED.contains(&name.as_str()),
                "{} appeared",
                name
            );
        }
    }
}
