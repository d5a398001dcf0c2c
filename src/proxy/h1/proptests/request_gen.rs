//! Request heads as clients send them: each part comes clean (what a careful client sends, so
//! that enough heads are accepted to test what is forwarded) or hostile (anything).

use proptest::collection::vec;
use proptest::prelude::*;

use super::{absolute_authority, bytes_of};
use crate::proxy::h1::request::Limits;
use crate::proxy::headers::Underscore;

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

pub(super) fn request_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![3 => request(true), 2 => request(false)].boxed()
}

/// The configured limits, as a value proptest can print.
#[derive(Debug, Clone)]
pub(super) struct TestLimits {
    uri: usize,
    line: usize,
    total: usize,
    count: usize,
    reject_underscore: bool,
}

impl TestLimits {
    pub(super) fn get(&self) -> Limits {
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

pub(super) fn limits() -> impl Strategy<Value = TestLimits> {
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
