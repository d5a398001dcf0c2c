//! An accepted head reaches the instance with one reading: httparse reads the upstream head as
//! one complete request whose framing, host, forwarding headers and passed headers follow the
//! rules, whatever the client sent.

use std::net::IpAddr;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::request_gen::{limits, request_bytes};
use super::{HOP_BY_HOP, WAKEWAY_OWNED, absolute_authority, in_set, is, peer};
use crate::proxy::h1::request::{Framing, Limits, Parsed, RequestHead};
use crate::proxy::h1::write::write_upstream_head;

const FALLBACK_HOST: &[u8] = b"fallback.svc";

fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

struct Parsed1<'a> {
    method: &'a [u8],
    target: &'a [u8],
    version: u8,
    headers: Vec<(&'a [u8], &'a [u8])>,
    len: usize,
}

/// A complete request head read by httparse's default (strict) configuration.
fn httparse_head(buf: &[u8]) -> Result<Parsed1<'_>, String> {
    let mut slots = vec![httparse::EMPTY_HEADER; 1024];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("incomplete".into()),
        Err(e) => return Err(e.to_string()),
    };
    Ok(Parsed1 {
        method: req.method.unwrap_or_default().as_bytes(),
        target: req.path.unwrap_or_default().as_bytes(),
        version: req.version.unwrap_or(9),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.as_bytes(), h.value))
            .collect(),
        len,
    })
}

fn all<'a>(headers: &[(&'a [u8], &'a [u8])], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|(n, _)| is(n, name))
        .map(|(_, v)| *v)
        .collect()
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What must hold of the head an instance receives for `buf`, if wakeway accepted it.
fn check_upstream_head(
    buf: &[u8],
    limits: &Limits,
    trusted: bool,
    https: bool,
    peer: IpAddr,
) -> Result<(), TestCaseError> {
    let mut head = RequestHead::default();
    match head.parse(buf, limits, trusted) {
        Ok(Parsed::Complete) => {}
        Ok(Parsed::Partial) | Err(_) => return Ok(()),
    }
    let client = httparse_head(buf)
        .map_err(|e| TestCaseError::fail(format!("accepted what httparse refuses: {e}")))?;
    prop_assert_eq!(client.len, head.head_len);

    let peer_ip = peer.to_string();
    let mut out = Vec::new();
    write_upstream_head(
        &mut out,
        &head,
        buf,
        peer_ip.as_bytes(),
        https,
        FALLBACK_HOST,
        b"",
    );
    let up = httparse_head(&out).map_err(|e| {
        TestCaseError::fail(format!(
            "the upstream head does not parse ({e}): {:?}",
            show(&out)
        ))
    })?;
    let ctx = || format!("\n  client: {:?}\n  upstream: {:?}", show(buf), show(&out));
    prop_assert_eq!(up.len, out.len(), "bytes after the head{}", ctx());
    prop_assert_eq!(up.version, 1, "not HTTP/1.1{}", ctx());
    prop_assert_eq!(up.method, client.method, "method changed{}", ctx());

    // The origin-form target.
    let want_target: &[u8] = if client.target.starts_with(b"/") || client.target == b"*" {
        client.target
    } else {
        let authority = absolute_authority(client.target).unwrap_or_default();
        let scheme = client.target.iter().position(|b| *b == b':').unwrap_or(0) + 3;
        match &client.target[scheme + authority.len()..] {
            b"" => b"/",
            path => path,
        }
    };
    prop_assert_eq!(up.target, want_target, "target{}", ctx());
    prop_assert!(
        up.target.starts_with(b"/") || (up.target == b"*" && up.method == b"OPTIONS"),
        "not origin-form{}",
        ctx()
    );

    // Exactly one Host: the client's, else the absolute-form authority, else the fallback.
    let hosts = all(&up.headers, "host");
    let client_host = all(&client.headers, "host")
        .first()
        .copied()
        .or_else(|| absolute_authority(client.target));
    prop_assert_eq!(hosts.len(), 1, "Host count{}", ctx());
    prop_assert_eq!(
        hosts[0],
        client_host.unwrap_or(FALLBACK_HOST),
        "Host{}",
        ctx()
    );

    // At most one framing header, and the one wakeway decided.
    let cl = all(&up.headers, "content-length");
    let te = all(&up.headers, "transfer-encoding");
    prop_assert!(cl.len() + te.len() <= 1, "two framings{}", ctx());
    let client_te = all(&client.headers, "transfer-encoding");
    let client_cl = all(&client.headers, "content-length");
    match head.framing {
        Some(Framing::Chunked) => {
            prop_assert_eq!(&te, &[b"chunked".as_slice()], "{}", ctx());
            prop_assert!(
                client_te.len() == 1 && client_te[0].eq_ignore_ascii_case(b"chunked"),
                "chunked without the client's TE{}",
                ctx()
            );
            prop_assert!(client_cl.is_empty(), "chunked beside a CL{}", ctx());
        }
        Some(Framing::Length(n)) => {
            let n_text = n.to_string();
            prop_assert_eq!(&cl, &[n_text.as_bytes()], "{}", ctx());
            prop_assert!(n > 0 && client_te.is_empty(), "{}", ctx());
            prop_assert_eq!(&client_cl, &[n_text.as_bytes()], "{}", ctx());
        }
        Some(Framing::None) => {
            prop_assert!(
                cl.is_empty() && te.is_empty(),
                "framing on a bodiless head{}",
                ctx()
            );
            prop_assert!(client_te.is_empty(), "{}", ctx());
            prop_assert!(
                client_cl.iter().all(|v| v.iter().all(|b| *b == b'0')),
                "a body was dropped{}",
                ctx()
            );
        }
        None => prop_assert!(false, "accepted without deciding the framing{}", ctx()),
    }

    for (name, _) in &up.headers {
        prop_assert!(!name.contains(&b'_'), "`_` in {:?}{}", show(name), ctx());
    }

    // No hop-by-hop header, except the pair that asks the instance to switch protocols.
    let upgrade = head.upgrade.map(|u| u.get(buf));
    for name in HOP_BY_HOP {
        let got = all(&up.headers, name);
        match (*name, upgrade) {
            ("connection", Some(_)) => prop_assert_eq!(&got, &[b"upgrade".as_slice()], "{}", ctx()),
            ("upgrade", Some(u)) => {
                // The client's protocol (its last Upgrade line, when it sent several).
                prop_assert_eq!(&got, &[u], "{}", ctx());
                let sent = all(&client.headers, "upgrade");
                prop_assert_eq!(sent.last(), Some(&u), "{}", ctx());
            }
            ("transfer-encoding", _) => {}
            _ => prop_assert!(got.is_empty(), "{} forwarded{}", name, ctx()),
        }
    }

    // Forwarding headers are wakeway's: one of each, ending with the peer.
    let xff = all(&up.headers, "x-forwarded-for");
    prop_assert_eq!(xff.len(), 1, "X-Forwarded-For count{}", ctx());
    let client_xff = all(&client.headers, "x-forwarded-for");
    let want_xff = match client_xff.first() {
        Some(prior) if trusted => format!("{}, {peer_ip}", show(prior)),
        _ => peer_ip.clone(),
    };
    prop_assert_eq!(show(xff[0]), want_xff, "X-Forwarded-For{}", ctx());
    prop_assert!(xff[0].ends_with(peer_ip.as_bytes()));
    let proto: &[u8] = if https { b"https" } else { b"http" };
    prop_assert_eq!(
        &all(&up.headers, "x-forwarded-proto"),
        &[proto],
        "{}",
        ctx()
    );
    // X-Forwarded-Host names the host the client asked for; an HTTP/1.0 request that named
    // none gets none.
    let want_xfh: Vec<&[u8]> = client_host.into_iter().collect();
    prop_assert_eq!(
        &all(&up.headers, "x-forwarded-host"),
        &want_xfh,
        "{}",
        ctx()
    );

    // Every other header the client sent passes byte for byte, in order, unless it is
    // hop-by-hop, named in a Connection list, has `_` in its name, or is a trusted proxy's alone.
    let nominated: Vec<&[u8]> = all(&client.headers, "connection")
        .into_iter()
        .flat_map(list_tokens)
        .collect();
    let want_kept: Vec<(&[u8], &[u8])> = client
        .headers
        .iter()
        .copied()
        .filter(|(name, _)| {
            !name.contains(&b'_')
                && !in_set(name, HOP_BY_HOP)
                && !in_set(name, WAKEWAY_OWNED)
                && !is(name, "expect")
                && (trusted || !is(name, "forwarded"))
                && !nominated.iter().any(|t| t.eq_ignore_ascii_case(name))
        })
        .collect();
    let kept: Vec<(&[u8], &[u8])> = up
        .headers
        .iter()
        .copied()
        .filter(|(name, _)| !in_set(name, WAKEWAY_OWNED))
        .collect();
    prop_assert_eq!(kept, want_kept, "passed headers{}", ctx());
    Ok(())
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn any_bytes_never_panic(buf in vec(any::<u8>(), 0..512), limits in limits(), trusted: bool) {
        let _ = RequestHead::default().parse(&buf, &limits.get(), trusted);
    }

    #[test]
    fn every_prefix_of_a_head_is_partial_refused_or_consistent(
        buf in request_bytes(),
        limits in limits(),
        trusted: bool,
        cut: Index,
    ) {
        let end = cut.index(buf.len() + 1);
        let mut head = RequestHead::default();
        if let Ok(Parsed::Complete) = head.parse(&buf[..end], &limits.get(), trusted) {
            prop_assert!(head.head_len <= end);
        }
    }

    #[test]
    fn an_accepted_head_reaches_the_instance_with_one_reading(
        buf in request_bytes(),
        limits in limits(),
        trusted: bool,
        https: bool,
        peer in peer(),
    ) {
        check_upstream_head(&buf, &limits.get(), trusted, https, peer)?;
    }

    #[test]
    fn a_reused_head_forgets_the_previous_request(
        first in request_bytes(),
        second in request_bytes(),
        limits in limits(),
        trusted: bool,
    ) {
        // The connection loop parses every request into the same `RequestHead`.
        let limits = limits.get();
        let mut reused = RequestHead::default();
        let _ = reused.parse(&first, &limits, trusted);
        let mut fresh = RequestHead::default();
        let a = reused.parse(&second, &limits, trusted).map(|p| matches!(p, Parsed::Complete));
        let b = fresh.parse(&second, &limits, trusted).map(|p| matches!(p, Parsed::Complete));
        prop_assert_eq!(a.is_ok(), b.is_ok());
        if let (Ok(true), Ok(true)) = (a, b) {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            write_upstream_head(
                &mut x,
                &reused,
                &second,
                b"127.0.0.1",
                false,
                FALLBACK_HOST,
                b"",
            );
            write_upstream_head(
                &mut y,
                &fresh,
                &second,
                b"127.0.0.1",
                false,
                FALLBACK_HOST,
                b"",
            );
            prop_assert_eq!(show(&x), show(&y));
        }
    }
}
