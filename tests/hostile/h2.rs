//! The hostile corpus over HTTP/2: frame abuse over h2c (prior knowledge), and requests held to
//! the same rules as HTTP/1.

use super::*;

/// Frame abuse over h2c (prior knowledge). Connection errors get GOAWAY, stream errors
/// RST_STREAM (RFC 9113 §5.4); requests that parse are held to the same rules as HTTP/1.
pub fn cases() -> Vec<Case> {
    use h2::*;
    let hello = || get(1, "/", &[]);
    let mut c = vec![
        h2c("h2 GET", vec![hello()], Status(200)),
        h2c(
            "h2 POST with body",
            vec![post(1, "/", "5"), frame(DATA, END_STREAM, 1, b"hello")],
            Status(200),
        )
        .check(|s| body_is(s, b"hello")),
        h2c(
            "h2 DATA longer than content-length",
            vec![
                post(1, UNANSWERED, "1"),
                frame(DATA, END_STREAM, 1, SMUGGLED.as_bytes()),
            ],
            H2Refused,
        ),
        h2c(
            "h2 SETTINGS length not a multiple of 6",
            vec![frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS on a stream",
            vec![frame(SETTINGS, 0, 1, &[])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS ENABLE_PUSH = 2",
            vec![settings(&[(0x2, 2)])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS INITIAL_WINDOW_SIZE too large",
            vec![settings(&[(0x4, 0x8000_0000)])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS MAX_FRAME_SIZE too small",
            vec![settings(&[(0x5, 100)])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS ACK with payload",
            vec![frame(SETTINGS, ACK, 0, &[0; 6])],
            GoAway,
        ),
        h2c(
            "h2 PING of 7 bytes",
            vec![frame(PING, 0, 0, &[0; 7])],
            GoAway,
        ),
        h2c(
            "h2 PING on a stream",
            vec![frame(PING, 0, 1, &[0; 8])],
            GoAway,
        ),
        h2c(
            "h2 WINDOW_UPDATE of zero on the connection",
            vec![frame(WINDOW_UPDATE, 0, 0, &[0; 4])],
            GoAway,
        ),
        h2c(
            "h2 WINDOW_UPDATE overflowing the window",
            vec![
                frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
                frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
            ],
            GoAway,
        ),
        h2c(
            "h2 HEADERS on stream 0",
            vec![head(0, &[(":method", "GET")])],
            GoAway,
        ),
        h2c(
            "h2 HEADERS on an even stream",
            vec![get(2, "/", &[])],
            GoAway,
        ),
        h2c(
            "h2 stream ids going down",
            vec![get(5, UNANSWERED, &[]), get(3, "/", &[])],
            GoAway,
        ),
        h2c(
            "h2 CONTINUATION without HEADERS",
            vec![frame(CONTINUATION, END_HEADERS, 1, &block(&[("x", "1")]))],
            GoAway,
        ),
        h2c(
            "h2 other frame inside a header block",
            vec![
                frame(HEADERS, END_STREAM, 1, &block(&[(":method", "GET")])),
                frame(PING, 0, 0, &[0; 8]),
            ],
            GoAway,
        ),
        h2c(
            "h2 bad HPACK index",
            vec![frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[0xff, 0xff, 0xff, 0x0f],
            )],
            GoAway,
        ),
        h2c(
            "h2 padding longer than the frame",
            vec![frame(
                HEADERS,
                END_HEADERS | END_STREAM | PADDED,
                1,
                &[200, 0x82],
            )],
            GoAway,
        ),
        h2c(
            "h2 DATA on an idle stream",
            vec![frame(DATA, END_STREAM, 3, b"x")],
            GoAway,
        ),
        h2c(
            "h2 RST_STREAM on an idle stream",
            vec![frame(RST_STREAM, 0, 3, &[0, 0, 0, 8])],
            GoAway,
        ),
        h2c(
            "h2 frame over the maximum size",
            vec![frame(DATA, 0, 1, &vec![0; 16_385])],
            GoAway,
        ),
        h2c(
            "h2 stream depends on itself",
            vec![frame(PRIORITY, 0, 1, &[0, 0, 0, 1, 16])],
            H2Refused,
        ),
        h2c(
            "h2 missing :path",
            vec![head(
                1,
                &[(":method", "GET"), (":scheme", "http"), (":authority", "h")],
            )],
            H2Refused,
        ),
        h2c(
            "h2 pseudo-header after a regular one",
            vec![head(
                1,
                &[
                    (":method", "GET"),
                    ("x", "1"),
                    (":path", "/"),
                    (":scheme", "http"),
                    (":authority", "h"),
                ],
            )],
            H2Refused,
        ),
        h2c(
            "h2 TRACE",
            vec![head(
                1,
                &[
                    (":method", "TRACE"),
                    (":scheme", "http"),
                    (":authority", "h"),
                    (":path", "/"),
                ],
            )],
            Status(405),
        ),
        h2c(
            "h2 CONNECT",
            vec![head(1, &[(":method", "CONNECT"), (":authority", "h:443")])],
            Status(405),
        ),
        h2c(
            "h2 underscore header dropped",
            vec![get(1, "/", &[("x_foo", "1")])],
            Status(200),
        )
        .check(|s| no_header(s, "x_foo")),
        h2c(
            "h2 x-forwarded-host replaced",
            vec![get(1, "/", &[("x-forwarded-host", "evil.example")])],
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-host", Some("h"))),
        h2c(
            "h2 Proxy header removed (httpoxy)",
            vec![get(1, "/", &[("proxy", "http://evil.example:8080")])],
            Status(200),
        )
        .check(|s| no_header(s, "proxy")),
        h2c(
            "h2 header list over 32 KiB",
            vec![get(
                1,
                "/",
                &(0..5)
                    .map(|_| ("x-big", "a".repeat(7000)))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|(n, v)| (*n, v.as_str()))
                    .collect::<Vec<_>>(),
            )],
            H2Refused,
        ),
        h2c(
            "h2 rapid reset",
            (0..500u32)
                .flat_map(|i| {
                    let id = 2 * i + 3;
                    [
                        get(id, UNANSWERED, &[]),
                        frame(RST_STREAM, 0, id, &[0, 0, 0, 8]),
                    ]
                })
                .chain([get(1001, "/", &[])])
                .collect(),
            H2Refused,
        ),
        h2c(
            "h2 PING flood then a request",
            (0..1000u64)
                .map(|i| frame(PING, 0, 0, &i.to_be_bytes()))
                .chain([hello()])
                .collect(),
            Status(200),
        ),
    ];

    // A GET with one field HTTP/2 forbids (RFC 9113 §8.2): the stream is refused.
    for (name, field) in [
        ("h2 upper-case header name", ("X-Upper", "1")),
        ("h2 connection header", ("connection", "keep-alive")),
        (
            "h2 transfer-encoding header",
            ("transfer-encoding", "chunked"),
        ),
        ("h2 TE other than trailers", ("te", "gzip")),
        ("h2 NUL in a value", ("x", "a\0b")),
        ("h2 CR LF in a value", ("x", "a\r\nx-injected: 1")),
        (
            "h2 :authority and a different host",
            ("host", "other.example"),
        ),
    ] {
        c.push(h2c(name, vec![get(1, "/", &[field])], H2Refused));
    }
    c
}
