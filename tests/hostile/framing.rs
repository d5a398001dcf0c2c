//! The hostile corpus, HTTP/1 framing: line endings, Content-Length and Transfer-Encoding alone
//! and together (every CL.TE / TE.CL smuggling shape), and chunked bodies.

use super::*;

pub fn cases() -> Vec<Case> {
    let mut c = vec![
        // --- Baseline: well-formed requests are forwarded.
        case("plain GET", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case(
            "POST with Content-Length",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
            Status(200),
        )
        .check(|s| body_is(s, b"hello")),
        case(
            "POST chunked",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Status(200),
        )
        .check(|s| body_is(s, b"hello")),
        case(
            "chunk extension",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n",
            Status(200),
        )
        .check(|s| body_is(s, b"hello")),
        case(
            "chunk size with leading zeros",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n0\r\n\r\n",
            Status(200),
        ),
        case(
            "upper-case hex chunk size",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
            Status(200),
        )
        .check(|s| body_is(s, b"0123456789")),
        case(
            "chunked with trailer",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
            Status(200),
        ),
        case(
            "many one-byte chunks",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                "1\r\na\r\n".repeat(1000)
            ),
            Status(200),
        ),
        case(
            "GET with a body",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            Status(200),
        ),
        case("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", Status(200)),
        case(
            "HTTP/1.0 with Host and body",
            "POST / HTTP/1.0\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
            Status(200),
        ),
        case("IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", Status(200)),
        case("Host with port", "GET / HTTP/1.1\r\nHost: h:8080\r\n\r\n", Status(200)),
        case("extension method", "PURGE / HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case("double slash path", "GET //x HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case("dot segments", "GET /../../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case("encoded NUL", "GET /%00 HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case("obs-text in value", b"GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9 \xff\r\n\r\n", Status(200)),
        case("tab in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\r\n\r\n", Status(200)),
        case("empty value", "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n\r\n", Status(200)),
        case("no space after colon", "GET / HTTP/1.1\r\nHost:h\r\nX:y\r\n\r\n", Status(200)),
        case(
            "colon in value",
            "GET / HTTP/1.1\r\nHost: h\r\nX: a: b\r\n\r\n",
            Status(200),
        ),
        case(
            "Expect: 100-continue",
            "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
            Status(200),
        ),
        case(
            "pipelined pair",
            "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
            Seq(&[200, 200]),
        ),
        case(
            "pipelined POST then GET",
            "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
            Seq(&[200, 200]),
        ),
        // --- LF-only line endings: accepted, as nginx and httparse do.
        case("LF-only lines", "GET / HTTP/1.1\nHost: h\n\n", Status(200)),
        case("mixed CRLF and LF", "GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\n", Status(200)),
        case(
            "LF-only with Content-Length",
            "POST / HTTP/1.1\nHost: h\nContent-Length: 2\n\nhi",
            Status(200),
        )
        .check(|s| body_is(s, b"hi")),
        // --- Bare CR: 400.
        case("bare CR line ends", "GET / HTTP/1.1\rHost: h\r\r", StatusOrClose(400)),
        case("bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", Status(400)),
        case("CR before header name", "GET / HTTP/1.1\r\nHost: h\r\n\rX: a\r\n\r\n", Status(400)),
        case("CR in request line", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        // --- CL.TE / TE.CL: both framings at once is 400.
        case(
            "CL.TE",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            Status(400),
        ),
        case(
            "TE.CL",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n",
                SMUGGLED.len()
            ),
            Status(400),
        ),
        case(
            "CL.TE with CL 0",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            Status(400),
        ),
        case(
            "TE.CL with obfuscated TE",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            OneOf(&[400, 501]),
        ),
        case(
            "TE and CL on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "CL.TE with Transfer_Encoding (underscore dropped)",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\nContent-Length: {}\r\n\r\n0\r\n\r\n{SMUGGLED}",
                5 + SMUGGLED.len()
            ),
            Status(200),
        )
        .check(|s| no_header(s, "transfer_encoding")),
        case(
            "Content_Length beside chunked (underscore dropped)",
            "POST / HTTP/1.1\r\nHost: h\r\nContent_Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Status(200),
        )
        .check(|s| no_header(s, "content_length")),
        // --- Content-Length: one plain decimal number, once.
        case(
            "duplicate identical CL",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            Status(400),
        ),
        case(
            "duplicate different CL",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            Status(400),
        ),
        case(
            "CL list",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
            Status(400),
        ),
        case(
            "CL list differing",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0, {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            Status(400),
        ),
        case(
            "CL with surrounding whitespace is OWS",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:  5 \r\n\r\nhello",
            OneOf(&[200, 400]),
        ),
        case(
            "CL name with space before colon",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello",
            Status(400),
        ),
        case(
            "CL folded",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n 5\r\n\r\nhello",
            Status(400),
        ),
        case(
            "huge CL then close",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\nhello",
            StatusOrClose(400),
        )
        .paced(Pace::ThenShutdown),
        case(
            "body shorter than CL then close",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello",
            StatusOrClose(400),
        )
        .paced(Pace::ThenShutdown),
        // --- Transfer-Encoding other than exactly chunked: 501.
        case(
            "TE gzip, chunked",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            Status(501),
        ),
        case(
            "TE chunked, chunked",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            Status(501),
        ),
        case(
            "TE split over two lines",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Status(501),
        ),
        case(
            "TE chunked twice",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            OneOf(&[400, 501]),
        ),
        case(
            "TE chunked then identity",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            OneOf(&[400, 501]),
        ),
        case(
            "TE name with space before colon",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE folded",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE after a folded line",
            "POST / HTTP/1.1\r\nHost: h\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE tab before value is OWS",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Status(200),
        ),
        case(
            "TE trailing space is OWS",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Status(200),
        ),
        case(
            "TE vertical tab before value",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
            OneOf(&[400, 501]),
        ),
        case(
            "TE form feed after value",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x0c\r\n\r\n0\r\n\r\n",
            OneOf(&[400, 501]),
        ),
        case(
            "TE NUL in value",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x00\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE NUL in name",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\x00: chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        // --- Bad chunking: 400, or a close once the head went upstream.
        case(
            "chunk data longer than its size",
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
            StatusOrClose(400),
        ),
        case(
            "no CRLF after chunk data",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "chunked body without last chunk then close",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            StatusOrClose(400),
        )
        .paced(Pace::ThenShutdown),
        case(
            "NUL in chunk extension",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x00\r\nhello\r\n0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "bad trailer name",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer: 1\r\n\r\n",
            OneOf(&[200, 400]),
        ),
    ];

    // --- Content-Length values other than one plain decimal number: 400.
    for (name, value) in [
        ("signed +", "+5"),
        ("signed -", "-5"),
        ("negative one", "-1"),
        ("hex", "0x5"),
        ("decimal point", "5.0"),
        ("exponent", "5e0"),
        ("empty", ""),
        ("inner space", "5 5"),
        ("letters", "five"),
        ("trailing garbage", "5x"),
        ("quoted", "\"5\""),
        ("overflow u64", "18446744073709551616"),
        ("huge", "99999999999999999999999999"),
        ("NUL after digits", "5\x00"),
        ("tab inside", "5\t5"),
    ] {
        c.push(case(
            &format!("Content-Length {name}"),
            format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {value}\r\n\r\nhello"),
            Status(400),
        ));
    }

    // Leading zeros are still one plain decimal number (RFC 9110 `1*DIGIT`): every reader
    // agrees on the length, so refusing it is allowed but not needed.
    c.push(case(
        "Content-Length leading zeros",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 005\r\n\r\nhello",
        OneOf(&[200, 400]),
    ));

    // --- Transfer-Encoding obfuscations, alone: 501 (or 400 where the value is malformed).
    for (name, value) in [
        ("xchunked", "xchunked"),
        ("chunkedx", "chunkedx"),
        ("identity", "identity"),
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("quoted", "\"chunked\""),
        ("with parameter", "chunked;q=1"),
        ("comma first", ",chunked"),
        ("chunked comma", "chunked,"),
        ("chunked, identity", "chunked, identity"),
        ("identity, chunked", "identity, chunked"),
        ("x-chunked", "x-chunked"),
        ("chunk", "chunk"),
        ("empty", ""),
        ("dotted", "chunked."),
    ] {
        c.push(case(
            &format!("Transfer-Encoding {name}"),
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {value}\r\n\r\n0\r\n\r\n"),
            OneOf(&[400, 501]),
        ));
    }
    for (name, value) in [("upper case", "CHUNKED"), ("mixed case", "Chunked")] {
        // Coding names are case-insensitive (RFC 9112 §7): the same single coding.
        c.push(case(
            &format!("Transfer-Encoding {name}"),
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {value}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            ),
            OneOf(&[200, 501]),
        ));
    }

    // --- Bad chunk sizes: 400, or a close once the head went upstream.
    for (name, size) in [
        ("non-hex", "zz"),
        ("0x prefix", "0x5"),
        ("negative", "-5"),
        ("plus sign", "+5"),
        ("overflow", "fffffffffffffffffffff"),
        ("empty", ""),
        ("space inside", "5 5"),
        ("space before", " 5"),
        ("bare CR after", "5\r"),
    ] {
        c.push(case(
            &format!("chunk size {name}"),
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n"
            ),
            StatusOrClose(400),
        ));
    }

    c
}
