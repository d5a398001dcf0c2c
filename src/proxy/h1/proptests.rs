//! Properties of the one reading every request gets: generated request heads (well-formed and
//! hostile) must either be refused or become an upstream head that a second parser reads one way
//! only; chunked bodies decode the same however they are split; the h2 path's header rewriting
//! leaves the same guarantees.
//!
//! The oracles here are written from the rules (RFC 9110 7.6.1, RFC 9112 6.1, the `_` rule),
//! not from `headers::disposition`, so a change to the code that breaks a rule shows up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::chunked::{Decoder, LAST_CHUNK, encode_chunk};
use super::request::{Framing, Limits, Parsed, RequestHead};
use super::write::write_upstream_head;
use crate::proxy::forward::{add_forwarded, rewrite_request_headers};
use crate::proxy::headers::Underscore;

/// Names that describe one connection and never reach the instance (RFC 9110 7.6.1, plus the
/// de-facto `Proxy-Connection`, the proxy's own credentials, and `Proxy`, which CGI-style apps
/// turn into an `HTTP_PROXY` variable that HTTP clients obey: "httpoxy").
const HOP_BY_HOP: &[&str] = &[
    "proxy",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Headers whose values wakeway writes itself.
const WAKEWAY_OWNED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

const FALLBACK_HOST: &[u8] = b"fallback.svc";

fn is(name: &[u8], want: &str) -> bool {
    name.eq_ignore_ascii_case(want.as_bytes())
}

fn in_set(name: &[u8], set: &[&str]) -> bool {
    set.iter().any(|w| is(name, w))
}

fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

// ------------------------------------------------------------------------------------------
// Generators for HTTP/1 request heads
// ------------------------------------------------------------------------------------------

fn bytes_of(s: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    select(s).prop_map(|s| s.as_bytes().to_vec()).boxed()
}

/// Each part of a head comes in two flavours: `clean` ones that a careful client sends (so that
/// enough heads are accepted to test what is forwarded), and hostile ones that may be anything.
fn method(clean: bool) -> BoxedStrategy<Vec<u8>> {
    let good = bytes_of(&[
        "GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH", "PURGE", "get",
    ]);
    if clean {
        return good;
    }
    prop_oneof![
        4 => good,
        2 => bytes_of(&["TRACE", "CONNECT", "PRI", "G\0T", "GET\t", ""]),
        1 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}".prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..6),
    ]
    .boxed()
}

fn host_value(clean: bool) -> BoxedStrategy<Vec<u8>> {
    let good = bytes_of(&[
        "h",
        "H",
        "a.localhost",
        "h:8080",
        "[::1]:80",
        "[::1]",
        "127.0.0.1",
        "x-y.z",
        "*.w",
    ]);
    if clean {
        return good;
    }
    prop_oneof![
        6 => good,
        2 => bytes_of(&["", "a b", "a@b", "h/x", "a:b", "[::1", "a%2f", "a\\b", "h:123456"]),
        1 => "[a-z0-9.:-]{1,12}".prop_map(String::into_bytes),
    ]
    .boxed()
}

fn path() -> BoxedStrategy<Vec<u8>> {
    "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,10}){1,3}(\\?[a-z0-9=&%/?]{0,10})?"
        .prop_map(String::into_bytes)
        .boxed()
}

fn target(clean: bool) -> BoxedStrategy<Vec<u8>> {
    let absolute = (
        bytes_of(&["http://", "https://", "HTTP://"]),
        host_value(clean),
        prop_oneof![Just(Vec::new()), path()],
    )
        .prop_map(|(scheme, host, path)| [scheme, host, path].concat());
    if clean {
        return prop_oneof![6 => path(), 2 => absolute].boxed();
    }
    prop_oneof![
        6 => path(),
        1 => Just(b"*".to_vec()),
        2 => absolute,
        2 => bytes_of(&[
            "http://a@b/x", "http:///x", "http://h?x", "http://", "ftp://h/", "x", "", "/a b",
            "/#f", "/\\x", "//x",
        ]),
        1 => vec(any::<u8>(), 0..10),
        1 => (7_990usize..8_300).prop_map(|n| [b"/".to_vec(), vec![b'a'; n]].concat()),
    ]
    .boxed()
}

fn version(clean: bool) -> BoxedStrategy<Vec<u8>> {
    let good = prop_oneof![4 => Just(b"HTTP/1.1".to_vec()), 1 => Just(b"HTTP/1.0".to_vec())];
    if clean {
        return good.boxed();
    }
    prop_oneof![
        6 => good,
        1 => bytes_of(&["HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1", "HTTP/1.1 ", "HTTP/0.9", ""]),
    ]
    .boxed()
}

fn line_end(clean: bool) -> BoxedStrategy<&'static [u8]> {
    if clean {
        return Just(&b"\r\n"[..]).boxed();
    }
    prop_oneof![
        12 => Just(&b"\r\n"[..]),
        1 => Just(&b"\n"[..]),
        1 => Just(&b"\r"[..]),
    ]
    .boxed()
}

fn separator(clean: bool) -> BoxedStrategy<Vec<u8>> {
    let good = prop_oneof![
        6 => Just(b": ".to_vec()),
        2 => Just(b":".to_vec()),
        1 => bytes_of(&[":\t", ":  ", ": \t"]),
    ];
    if clean {
        return good.boxed();
    }
    prop_oneof![6 => good, 1 => bytes_of(&[" : ", "\t:", " :"])].boxed()
}

/// A header name with its value, themed so that the interesting combinations (framing, the
/// Connection list, forwarding) are frequent rather than left to chance.
fn header(clean: bool) -> BoxedStrategy<(Vec<u8>, Vec<u8>)> {
    let length_names = bytes_of(&["Content-Length", "content-length", "CONTENT-LENGTH"]);
    let chunked_names = bytes_of(&["Transfer-Encoding", "transfer-encoding"]);
    let underscore_names = bytes_of(&["Transfer_Encoding", "Content_Length"]);
    let lengths = bytes_of(&["0", "5", "12", "00"]);
    let chunked = bytes_of(&["chunked", "CHUNKED", "Chunked"]);
    let hostile_framing = bytes_of(&[
        "+5",
        "-1",
        "1, 1",
        " 7 ",
        "18446744073709551616",
        "99999999999999999999",
        " chunked",
        "chunked ",
        "gzip, chunked",
        "chunked, chunked",
        "identity",
        "chunked\x0b",
        "x",
        "",
    ]);
    let framing = if clean {
        prop_oneof![
            (length_names, lengths.clone()),
            (chunked_names, chunked.clone()),
            (underscore_names, prop_oneof![lengths, chunked]),
        ]
        .boxed()
    } else {
        let names = prop_oneof![length_names, chunked_names, underscore_names];
        (names, prop_oneof![lengths, chunked, hostile_framing]).boxed()
    };
    let connection_values = bytes_of(&[
        "close",
        "keep-alive",
        "Keep-Alive",
        "upgrade",
        "Upgrade",
        "close, x-a",
        "keep-alive, X-B, te",
        "upgrade, x-a",
        "host",
        "content-length",
        "transfer-encoding",
        "x-forwarded-for",
        "forwarded, cookie",
        ",,x-a,,",
        "X-A , x-b",
        "",
    ]);
    let forwarding_names = bytes_of(&[
        "X-Forwarded-For",
        "x-forwarded-for",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "Forwarded",
        "X_Forwarded_For",
        "X-Forwarded-For_",
    ]);
    let forwarding_values = bytes_of(&[
        "1.2.3.4",
        "10.0.0.1, 10.0.0.2",
        "for=1.2.3.4;proto=https",
        "evil.example",
        "https",
        "",
    ]);
    let other_names = bytes_of(&[
        "X-A",
        "x-a",
        "X-B",
        "Cookie",
        "Accept",
        "Host_",
        "_",
        "X_Foo",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Proxy-Connection",
        "Proxy-Authorization",
        "Proxy-Authenticate",
        "Proxy",
        "proxy",
        "Upgrade",
        "Upgrade",
    ]);
    let good_values = prop_oneof![
        3 => bytes_of(&[
            "1", "a b", "websocket", "h2c", "100-continue", "trailers", "timeout=5", "caf\u{e9}",
            "a: b", "\tpadded\t", "",
        ]),
        1 => "[ -~]{0,24}".prop_map(String::into_bytes),
        1 => vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..16),
    ];
    let values = if clean {
        good_values.boxed()
    } else {
        prop_oneof![
            4 => good_values,
            1 => bytes_of(&[
                "a\r\n b", "a\r\n\tb", "a\rb", "a\nb", "a\0b", "a\x7fb", "\u{80}\u{ff}",
            ]),
            1 => vec(any::<u8>(), 0..12),
            1 => (8_000usize..8_300).prop_map(|n| vec![b'v'; n]),
        ]
        .boxed()
    };
    let token = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}".prop_map(String::into_bytes);
    let themed = prop_oneof![
        3 => framing,
        2 => (Just(b"Connection".to_vec()), connection_values),
        2 => (forwarding_names, forwarding_values),
        6 => (other_names, values.clone()),
        2 => (token, values.clone()),
    ];
    if clean {
        return prop_oneof![
            15 => themed,
            1 => (Just(b"Expect".to_vec()), Just(b"100-continue".to_vec())),
        ]
        .boxed();
    }
    prop_oneof![
        15 => themed,
        1 => (Just(b"Host".to_vec()), host_value(clean)),
        1 => (Just(b"Expect".to_vec()), values),
        1 => (vec(any::<u8>(), 0..8), vec(any::<u8>(), 0..8)),
        1 => ((8_000usize..8_300).prop_map(|n| vec![b'N'; n]), Just(b"1".to_vec())),
    ]
    .boxed()
}

/// A request head as the client sends it, with whatever follows it on the connection.
fn request(clean: bool) -> BoxedStrategy<Vec<u8>> {
    (
        method(clean),
        target(clean),
        version(clean),
        line_end(clean),
        // Most heads carry a Host, so the header rules are reached.
        prop_oneof![6 => host_value(clean).prop_map(Some), 1 => Just(None)],
        vec((header(clean), separator(clean), line_end(clean)), 0..10),
        line_end(clean),
        vec(any::<u8>(), 0..16),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            move |(m, t, v, eol, mut host, headers, end, tail, upgrade)| {
                if clean && let Some(authority) = absolute_authority(&t) {
                    // A careful client's Host agrees with its absolute-form target.
                    host = host.map(|_| authority.to_vec());
                }
                let mut out = [m, b" ".to_vec(), t, b" ".to_vec(), v].concat();
                out.extend_from_slice(eol);
                if let Some(h) = host {
                    out.extend_from_slice(b"Host: ");
                    out.extend_from_slice(&h);
                    out.extend_from_slice(b"\r\n");
                }
                for ((name, value), sep, eol) in headers {
                    out.extend_from_slice(&name);
                    out.extend_from_slice(&sep);
                    out.extend_from_slice(&value);
                    out.extend_from_slice(eol);
                }
                if upgrade {
                    out.extend_from_slice(b"Connection: Upgrade, x-a\r\nUpgrade: websocket\r\n");
                }
                out.extend_from_slice(end);
                out.extend_from_slice(&tail);
                out
            },
        )
        .boxed()
}

fn request_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![3 => request(true), 2 => request(false)].boxed()
}

/// The configured limits, as a value proptest can print.
#[derive(Debug, Clone)]
struct TestLimits {
    uri: usize,
    line: usize,
    total: usize,
    count: usize,
    reject_underscore: bool,
}

impl TestLimits {
    fn get(&self) -> Limits {
        Limits {
            max_uri_bytes: self.uri,
            max_header_line_bytes: self.line,
            max_header_bytes: self.total,
            max_headers: self.count,
            underscore: if self.reject_underscore {
                Underscore::Reject
            } else {
                Underscore::Drop
            },
        }
    }
}

fn limits() -> impl Strategy<Value = TestLimits> {
    (
        prop_oneof![
            // The defaults.
            3 => Just((8192usize, 8192usize, 32768usize, 100usize)),
            // Tight: the limits are reached by ordinary heads.
            1 => Just((40, 64, 512, 4)),
            // More slots than the stack holds.
            1 => Just((8192, 8192, 65536, 300)),
        ],
        any::<bool>(),
    )
        .prop_map(
            |((uri, line, total, count), reject_underscore)| TestLimits {
                uri,
                line,
                total,
                count,
                reject_underscore,
            },
        )
}

fn peer() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
    ]
}

// ------------------------------------------------------------------------------------------
// The HTTP/1 oracle
// ------------------------------------------------------------------------------------------

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

/// `http(s)://authority/...` → authority.
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let lower = target.to_ascii_lowercase();
    let rest = if lower.starts_with(b"http://") {
        &target[7..]
    } else if lower.starts_with(b"https://") {
        &target[8..]
    } else {
        return None;
    };
    let end = rest
        .iter()
        .position(|b| *b == b'/' || *b == b'?')
        .unwrap_or(rest.len());
    Some(&rest[..end])
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

// ------------------------------------------------------------------------------------------
// Chunked bodies
// ------------------------------------------------------------------------------------------

/// One chunk's size line: hex in either case, with leading zeros and extensions.
fn size_line(n: usize, upper: bool, zeros: usize, ext: &str) -> Vec<u8> {
    let hex = if upper {
        format!("{n:X}")
    } else {
        format!("{n:x}")
    };
    format!("{}{hex}{ext}\r\n", "0".repeat(zeros)).into_bytes()
}

fn extension() -> impl Strategy<Value = String> {
    "(;[a-z]{1,5}(=[a-z0-9\"]{0,6})?){0,2}"
}

/// (data, a valid chunked encoding of it in any of the forms a client may send)
fn chunked_body() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        vec(
            (
                vec(any::<u8>(), 1..300),
                any::<bool>(),
                0usize..5,
                extension(),
            ),
            0..8,
        ),
        1usize..5,
        extension(),
        vec("[A-Za-z-]{1,10}:[ -~]{0,20}", 0..3),
    )
        .prop_map(|(chunks, last_zeros, last_ext, trailers)| {
            let mut data = Vec::new();
            let mut enc = Vec::new();
            for (bytes, upper, zeros, ext) in chunks {
                enc.extend(size_line(bytes.len(), upper, zeros, &ext));
                enc.extend_from_slice(&bytes);
                enc.extend_from_slice(b"\r\n");
                data.extend(bytes);
            }
            enc.extend(format!("{}{last_ext}\r\n", "0".repeat(last_zeros)).into_bytes());
            for t in trailers {
                enc.extend(format!("{t}\r\n").into_bytes());
            }
            enc.extend_from_slice(b"\r\n");
            (data, enc)
        })
}

/// `input` cut at `cuts`.
fn pieces<'a>(input: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
    at.push(0);
    at.push(input.len());
    at.sort_unstable();
    at.windows(2).map(|w| &input[w[0]..w[1]]).collect()
}

/// What a decoder made of `input` fed in `pieces`: the data, bytes consumed, and how it ended.
fn decode_in(pieces: &[&[u8]]) -> (Vec<u8>, usize, Result<bool, String>) {
    let mut d = Decoder::default();
    let mut data = Vec::new();
    let mut used = 0;
    for p in pieces {
        match d.decode(p, |b| data.extend_from_slice(b)) {
            Ok(n) => {
                assert!(n <= p.len(), "consumed more than it was given");
                assert!(
                    n == p.len() || d.is_done(),
                    "stopped early without finishing the body"
                );
                used += n;
            }
            Err(e) => return (data, used, Err(e.0.to_string())),
        }
    }
    (data, used, Ok(d.is_done()))
}

// ------------------------------------------------------------------------------------------
// The h2 path's header map
// ------------------------------------------------------------------------------------------

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
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

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
            write_upstream_head(&mut x, &reused, &second, b"127.0.0.1", false, FALLBACK_HOST);
            write_upstream_head(&mut y, &fresh, &second, b"127.0.0.1", false, FALLBACK_HOST);
            prop_assert_eq!(show(&x), show(&y));
        }
    }

    #[test]
    fn chunked_decodes_to_the_data_and_stops_at_its_end(
        (data, enc) in chunked_body(),
        tail in vec(any::<u8>(), 0..32),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let input = [enc.clone(), tail].concat();
        let (got, used, end) = decode_in(&pieces(&input, &cuts));
        prop_assert_eq!(end, Ok(true));
        prop_assert_eq!(used, enc.len());
        prop_assert_eq!(got, data);
    }

    #[test]
    fn chunked_is_done_only_at_the_last_byte(
        (_, enc) in chunked_body(),
        cut: Index,
    ) {
        let end = cut.index(enc.len());
        let mut d = Decoder::default();
        prop_assert_eq!(d.decode(&enc[..end], |_| {}), Ok(end));
        prop_assert!(!d.is_done());
    }

    #[test]
    fn reencoding_then_decoding_is_identity(
        data in vec(any::<u8>(), 0..3000),
        splits in vec(any::<Index>(), 0..10),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let mut enc = Vec::new();
        for piece in pieces(&data, &splits) {
            encode_chunk(&mut enc, piece);
        }
        enc.extend_from_slice(LAST_CHUNK);
        let (got, used, end) = decode_in(&pieces(&enc, &cuts));
        prop_assert_eq!(end, Ok(true));
        prop_assert_eq!(used, enc.len());
        prop_assert_eq!(got, data);
    }

    #[test]
    fn chunked_reads_the_same_however_it_is_split(
        (_, enc) in chunked_body(),
        damage in vec((any::<Index>(), any::<u8>()), 0..3),
        cuts in vec(any::<Index>(), 1..8),
    ) {
        let mut input = enc;
        for (at, byte) in damage {
            if !input.is_empty() {
                let i = at.index(input.len());
                input[i] = byte;
            }
        }
        let whole = decode_in(&[&input]);
        let split = decode_in(&pieces(&input, &cuts));
        prop_assert_eq!(&whole.0, &split.0);
        prop_assert_eq!(&whole.2, &split.2);
        if whole.2.is_ok() {
            prop_assert_eq!(whole.1, split.1);
        }
    }

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
