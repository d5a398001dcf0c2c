//! The hostile corpus, HTTP/1 heads: Host and absolute-form routing, methods, versions and
//! targets, header names and values, folding, underscores, forwarding headers, sizes and slow
//! senders.

use super::*;

pub fn cases() -> Vec<Case> {
    let mut c = vec![
        // --- Host: exactly one.
        case("no Host on HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", Status(400)),
        case("two Host headers", "GET / HTTP/1.1\r\nHost: h\r\nHost: other\r\n\r\n", Status(400)),
        case("two identical Host headers", "GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", Status(400)),
        case("Host and host", "GET / HTTP/1.1\r\nHost: h\r\nhost: h\r\n\r\n", Status(400)),
        case("Host list", "GET / HTTP/1.1\r\nHost: h, other\r\n\r\n", Status(400)),
        case("Host with space", "GET / HTTP/1.1\r\nHost: h other\r\n\r\n", Status(400)),
        case("Host with path", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", Status(400)),
        case("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", Status(400)),
        case("Host folded", "GET / HTTP/1.1\r\nHost:\r\n h\r\n\r\n", Status(400)),
        case("Host_ is not Host", "GET / HTTP/1.1\r\nHost: h\r\nHost_: other\r\n\r\n", Status(200))
            .check(|s| header_is(s, "host", Some("h"))),
        // --- Absolute-form: routed by its authority, which must agree with Host.
        case("absolute-form, same Host", "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case(
            "absolute-form, same Host with port",
            "GET http://h:80/x HTTP/1.1\r\nHost: h:80\r\n\r\n",
            Status(200),
        ),
        case(
            "absolute-form, other Host",
            "GET http://other.example/ HTTP/1.1\r\nHost: h\r\n\r\n",
            Status(400),
        ),
        case(
            "absolute-form, other port",
            "GET http://h:8081/ HTTP/1.1\r\nHost: h:8080\r\n\r\n",
            Status(400),
        ),
        case(
            "absolute-form with userinfo",
            "GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            Status(400),
        ),
        case("absolute-form, empty authority", "GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        // --- Methods.
        case("TRACE", "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", Status(405)),
        case("TRACE with body", "TRACE / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", Status(405)),
        case("CONNECT", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", Status(405)),
        case("CONNECT to a path", "CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 405])),
        case("method with space", "G ET / HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("method with tab", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("method with (", "GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("method with NUL", "GE\x00T / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("method with DEL", "GE\x7fT / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("method with 8-bit byte", b"G\xc9T / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("two spaces after method", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("PRI on HTTP/1.1", "PRI / HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400, 405])),
        // --- Versions: HTTP/1.0 and HTTP/1.1 only.
        case("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", Status(505)),
        case("HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", Status(505)),
        case("HTTP/3.0", "GET / HTTP/3.0\r\nHost: h\r\n\r\n", Status(505)),
        case("HTTP/0.9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", Status(505)),
        case("HTTP/9.9", "GET / HTTP/9.9\r\nHost: h\r\n\r\n", Status(505)),
        case("lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTP/1", "GET / HTTP/1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTP/11", "GET / HTTP/11\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTP/1.10", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTP/1.1x", "GET / HTTP/1.1x\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTX/1.1", "GET / HTTX/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("trailing space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("no version", "GET /\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("no version, no headers (HTTP/0.9)", "GET /\r\n\r\n", StatusOrClose(400)),
        case("garbage line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", StatusOrClose(400)),
        // --- Targets.
        case("target without slash", "GET a HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("asterisk target for GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("empty target", "GET  HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("space in target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("fragment in target", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400])),
        case("8-bit bytes in target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400])),
        case("backslash in target", "GET /a\\b HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400])),
        case("quote and angle brackets in target", "GET /\"<x>\" HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400])),
        // --- Header names: tokens only.
        case("empty header name", "GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", Status(400)),
        case("line without colon", "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", Status(400)),
        case("space inside name", "GET / HTTP/1.1\r\nHost: h\r\nX Y: 1\r\n\r\n", Status(400)),
        case("tab before colon", "GET / HTTP/1.1\r\nHost: h\r\nX\t: 1\r\n\r\n", Status(400)),
        case("8-bit byte in name", b"GET / HTTP/1.1\r\nHost: h\r\nX\xe9: 1\r\n\r\n", Status(400)),
        case("whitespace before first header", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", Status(400)),
        // --- obs-fold: 400.
        case("obs-fold with space", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", Status(400)),
        case("obs-fold with tab", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", Status(400)),
        case("obs-fold of an empty value", "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n b\r\n\r\n", Status(400)),
        // --- Underscores: dropped (the default `underscore_headers = "drop"`).
        case("X_Foo dropped", "GET / HTTP/1.1\r\nHost: h\r\nX_Foo: 1\r\n\r\n", Status(200))
            .check(|s| no_header(s, "x_foo")),
        case("lone underscore name dropped", "GET / HTTP/1.1\r\nHost: h\r\n_: 1\r\n\r\n", Status(200))
            .check(|s| no_header(s, "_")),
        case(
            "X_Forwarded_For dropped",
            "GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n",
            Status(200),
        )
        .check(|s| {
            no_header(s, "x_forwarded_for")?;
            header_is(s, "x-forwarded-for", Some("127.0.0.1"))
        }),
        // --- Client-sent forwarding headers are replaced (peer 127.0.0.1 is not trusted).
        case(
            "X-Forwarded-Host replaced",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: evil.example\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-host", Some("h"))),
        case(
            "X-Forwarded-Proto replaced",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-proto", Some("http"))),
        case(
            "X-Forwarded-For replaced",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-for", Some("127.0.0.1"))),
        case(
            "two X-Forwarded-For replaced by one",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-for", Some("127.0.0.1"))),
        case(
            "Connection names X-Forwarded-For",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-for", Some("127.0.0.1"))),
        case(
            "Connection-nominated header removed",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\r\n",
            Status(200),
        )
        .check(|s| no_header(s, "x-secret")),
        case(
            "Connection names Content-Length",
            "POST / HTTP/1.1\r\nHost: h\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
            OneOf(&[200, 400]),
        ),
        case(
            "Connection names Host",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Host\r\n\r\n",
            OneOf(&[200, 400]),
        ),
        case(
            "hop-by-hop headers removed",
            "GET / HTTP/1.1\r\nHost: h\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\r\n",
            Status(200),
        )
        .check(|s| {
            no_header(s, "keep-alive")?;
            no_header(s, "proxy-connection")?;
            no_header(s, "proxy-authorization")
        }),
        // httpoxy: a CGI-style app would read `Proxy` as its HTTP_PROXY.
        case(
            "Proxy header removed (httpoxy)",
            "GET / HTTP/1.1\r\nHost: h\r\nProxy: http://evil.example:8080\r\n\r\n",
            Status(200),
        )
        .check(|s| no_header(s, "proxy")),
        // --- Sizes: 8 KiB per line, 32 KiB in all, 100 headers, 8 KiB of URI.
        case(
            "header line just under 8 KiB",
            format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(8000)),
            Status(200),
        ),
        case(
            "header line over 8 KiB",
            format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(9000)),
            Status(431),
        ),
        case(
            "header name over 8 KiB",
            format!("GET / HTTP/1.1\r\nHost: h\r\n{}: 1\r\n\r\n", "X".repeat(9000)),
            Status(431),
        ),
        case(
            "64 KiB header line",
            format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(64 << 10)),
            StatusOrClose(431),
        ),
        case(
            "200 KiB header line",
            format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(200 << 10)),
            StatusOrClose(431),
        ),
        case(
            "headers under 32 KiB in all",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..4).map(|i| format!("X-{i}: {}\r\n", "a".repeat(7000))).collect::<String>()
            ),
            Status(200),
        ),
        case(
            "headers over 32 KiB in all",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..5).map(|i| format!("X-{i}: {}\r\n", "a".repeat(7000))).collect::<String>()
            ),
            Status(431),
        ),
        case(
            "99 headers",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..98).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            ),
            Status(200),
        ),
        case(
            "100 headers",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..99).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            ),
            Status(200),
        ),
        case(
            "101 headers",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..100).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            ),
            Status(431),
        ),
        case(
            "1000 headers",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..1000).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            ),
            Status(431),
        ),
        case(
            "URI just under 8 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(8000)),
            Status(200),
        ),
        case(
            "URI over 8 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(9000)),
            Status(414),
        ),
        case(
            "64 KiB URI",
            format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(64 << 10)),
            StatusOrClose(414),
        ),
        case(
            "9 KiB method",
            format!("{} / HTTP/1.1\r\nHost: h\r\n\r\n", "G".repeat(9000)),
            OneOf(&[400, 414, 431, 501]),
        ),
        // --- Slow senders (bounded by the 1 s header read timeout).
        case("silent connection", "", StatusOrClose(408)),
        case("head never finished", "GET / HTTP/1.1\r\nHost: h\r\n", StatusOrClose(408)),
        case("request line never finished", "GET / HTTP/1.1", StatusOrClose(408)),
        case("h2 preface stalled", "PRI * HTTP/2.0\r\n", StatusOrClose(408)),
        case(
            "slow but in time",
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            Status(200),
        )
        .paced(Pace::Drip {
            chunk: 4,
            gap: Duration::from_millis(20),
        }),
        case(
            "drip past the header timeout",
            format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", "X: 1\r\n".repeat(40)),
            StatusOrClose(408),
        )
        .paced(Pace::Drip {
            chunk: 1,
            gap: Duration::from_millis(25),
        }),
    ];

    // --- Control characters in a header value (tab is allowed): 400.
    for b in (0x00u8..0x20).chain([0x7f]) {
        if matches!(b, b'\t' | b'\n' | b'\r') {
            continue;
        }
        let mut bytes = b"GET / HTTP/1.1\r\nHost: h\r\nX: a".to_vec();
        bytes.push(b);
        bytes.extend_from_slice(b"b\r\n\r\n");
        c.push(case(
            &format!("control 0x{b:02x} in a value"),
            bytes,
            Status(400),
        ));
    }

    // --- Control characters in the target: 400.
    for b in (0x00u8..0x20).chain([0x7f]) {
        if matches!(b, b'\n' | b'\r' | b' ') {
            continue;
        }
        let mut bytes = b"GET /a".to_vec();
        bytes.push(b);
        bytes.extend_from_slice(b"b HTTP/1.1\r\nHost: h\r\n\r\n");
        c.push(case(
            &format!("control 0x{b:02x} in the target"),
            bytes,
            Status(400),
        ));
    }

    // --- Separators and controls in a header name: 400.
    for b in b"\"(),/;<=>?@[\\]{}\x00\x01\x7f".iter().copied() {
        let mut bytes = b"GET / HTTP/1.1\r\nHost: h\r\nX".to_vec();
        bytes.push(b);
        bytes.extend_from_slice(b"Y: 1\r\n\r\n");
        c.push(case(
            &format!("0x{b:02x} in a header name"),
            bytes,
            Status(400),
        ));
    }

    c
}
