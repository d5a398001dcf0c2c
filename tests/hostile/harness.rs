//! Replaying the hostile corpus: how a case reaches wakeway (plain, h2c, TLS), what it got back,
//! whether that is what the row expects, and what the upstream saw.

use super::*;

/// What a case produced, in the vocabulary of [`Expect`].
#[derive(Debug)]
pub(crate) enum Got {
    Statuses(Vec<(u16, bool)>),
    Closed,
    Silent,
    Garbage(String),
    Reset(u32),
    GoAway(u32),
    /// The connection (or its TLS handshake) could not be made.
    NoConnection(String),
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::Statuses(s) => {
                let list: Vec<String> = s
                    .iter()
                    .map(|(code, fwd)| format!("{code}{}", if *fwd { " (forwarded)" } else { "" }))
                    .collect();
                write!(f, "{}", list.join(", "))
            }
            Got::Closed => f.write_str("close"),
            Got::Silent => f.write_str("nothing (connection left open)"),
            Got::Garbage(g) => write!(f, "unparseable reply {g:?}"),
            Got::Reset(code) => write!(f, "RST_STREAM 0x{code:x}"),
            Got::GoAway(code) => write!(f, "GOAWAY 0x{code:x}"),
            Got::NoConnection(e) => write!(f, "no connection: {e}"),
        }
    }
}

/// Whether `got` is what `expect` allows. A 200 must come from the upstream, and any other
/// status from wakeway itself.
pub(crate) fn matches(expect: Expect, got: &Got) -> bool {
    let status_ok = |want: u16, (code, fwd): (u16, bool)| code == want && fwd == (want == 200);
    match (expect, got) {
        (Status(want), Got::Statuses(s)) => s.len() == 1 && status_ok(want, s[0]),
        (OneOf(any), Got::Statuses(s)) => s.len() == 1 && any.iter().any(|w| status_ok(*w, s[0])),
        (StatusOrClose(want), Got::Statuses(s)) => s.len() == 1 && status_ok(want, s[0]),
        (StatusOrClose(_), Got::Closed) => true,
        (Seq(want), Got::Statuses(s)) => {
            s.len() == want.len() && want.iter().zip(s).all(|(w, g)| status_ok(*w, *g))
        }
        (GoAway, Got::GoAway(code)) => *code != h2::NO_ERROR,
        (H2Refused, Got::Reset(_) | Got::GoAway(_) | Got::Closed) => true,
        (H2Refused, Got::Statuses(s)) => s.len() == 1 && (400..500).contains(&s[0].0) && !s[0].1,
        _ => false,
    }
}

/// The number of final responses to read for `expect`.
pub(crate) fn wanted(expect: Expect) -> usize {
    match expect {
        Seq(s) => s.len(),
        _ => 1,
    }
}

pub(crate) const CASE_DEADLINE: Duration = Duration::from_secs(4);

/// How the cases reach wakeway.
pub(crate) enum Via {
    /// Plain TCP: HTTP/1 as written, h2 by prior knowledge (h2c).
    Plain(SocketAddr),
    /// The HTTPS listener, with SNI [`TLS_NAME`]: h2 when ALPN agreed on `h2`, HTTP/1 when it
    /// agreed on `http/1.1`.
    Tls {
        addr: SocketAddr,
        h2: Arc<ClientConfig>,
        http1: Arc<ClientConfig>,
    },
}

/// The name the test certificate is for, and the `:authority` / `Host` of the cases.
pub(crate) const TLS_NAME: &str = "h";

impl Via {
    fn scheme(&self) -> &'static str {
        match self {
            Via::Plain(_) => "http",
            Via::Tls { .. } => "https",
        }
    }

    /// A TLS connection on which ALPN chose `h2` (or `http/1.1`).
    pub(crate) async fn tls(&self, want_h2: bool) -> Result<TlsStream<TcpStream>, String> {
        let Via::Tls { addr, h2, http1 } = self else {
            unreachable!("a plain listener has no TLS")
        };
        let config = if want_h2 { h2 } else { http1 }.clone();
        let stream = tls::connect(*addr, TLS_NAME, config).await?;
        let want = if want_h2 { "h2" } else { "http/1.1" };
        match tls::alpn(&stream) {
            Some(p) if p == want => Ok(stream),
            other => Err(format!("ALPN chose {other:?}, not {want}")),
        }
    }
}

pub(crate) async fn run_case(via: &Via, case: &Case) -> Got {
    if case.h2 {
        let stream = h2_stream(case);
        let reply = match via {
            Via::Plain(addr) => h2::h2_exchange(*addr, &case.bytes, stream, CASE_DEADLINE).await,
            Via::Tls { .. } => match via.tls(true).await {
                Ok(conn) => h2::h2_exchange_on(conn, &case.bytes, stream, CASE_DEADLINE).await,
                Err(e) => return Got::NoConnection(e),
            },
        };
        return match reply {
            H2Reply::Response { status, forwarded } => Got::Statuses(vec![(status, forwarded)]),
            H2Reply::Reset(code) => Got::Reset(code),
            H2Reply::GoAway(code) => Got::GoAway(code),
            H2Reply::Closed => Got::Closed,
            H2Reply::Silent => Got::Silent,
        };
    }
    let want = wanted(case.expect);
    let reply = match via {
        Via::Plain(addr) => {
            raw::exchange(*addr, &case.bytes, &case.pace, want, CASE_DEADLINE).await
        }
        Via::Tls { .. } => match via.tls(false).await {
            Ok(conn) => raw::exchange_on(conn, &case.bytes, &case.pace, want, CASE_DEADLINE).await,
            Err(e) => return Got::NoConnection(e),
        },
    };
    match reply {
        Reply::Responses(r) => Got::Statuses(r.iter().map(|r| (r.status, r.forwarded())).collect()),
        Reply::Closed => Got::Closed,
        Reply::Silent => Got::Silent,
        Reply::Garbage(g) => {
            Got::Garbage(String::from_utf8_lossy(&g[..g.len().min(120)]).into_owned())
        }
    }
}

/// A good request on a new connection: forwarded, with its own answer.
pub(crate) async fn probe(via: &Via) -> Result<(), String> {
    let bytes = b"GET /probe HTTP/1.1\r\nHost: h\r\n\r\n";
    let reply = match via {
        Via::Plain(addr) => raw::exchange(*addr, bytes, &Pace::AtOnce, 1, CASE_DEADLINE).await,
        Via::Tls { .. } => {
            let conn = via.tls(false).await?;
            raw::exchange_on(conn, bytes, &Pace::AtOnce, 1, CASE_DEADLINE).await
        }
    };
    match &reply {
        Reply::Responses(r) if r[0].forwarded() && r[0].body.ends_with(b" /probe") => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// The stream whose fate decides an h2 case: the last HEADERS frame's stream.
pub(crate) fn h2_stream(case: &Case) -> u32 {
    let mut i = 0;
    let mut last = 1;
    let b = &case.bytes;
    while i + 9 <= b.len() {
        let len = (usize::from(b[i]) << 16) | (usize::from(b[i + 1]) << 8) | usize::from(b[i + 2]);
        let id = u32::from_be_bytes([b[i + 5], b[i + 6], b[i + 7], b[i + 8]]) & 0x7fff_ffff;
        if b[i + 3] == h2::HEADERS && id != 0 {
            last = id;
        }
        i += 9 + len;
    }
    last
}

/// wakeway in front of `upstream` for every host, with `extra_proxy` added to `[proxy]`.
pub(crate) fn config(upstream: &RawUpstream, extra_proxy: &str) -> String {
    let proxy_keys = format!("header_read_timeout = \"{HEADER_READ_TIMEOUT}\"\n{extra_proxy}");
    format!(
        "{}{}",
        listen_with(&proxy_keys),
        static_service("raw", "*", upstream.addr, "", "")
    )
}

pub(crate) fn assert_unique_names(cases: &[Case]) {
    let mut names = std::collections::HashSet::new();
    for c in cases {
        assert!(
            names.insert(c.name.as_str()),
            "case name {:?} is used twice",
            c.name
        );
    }
}

/// Replays `cases` through `via`, each followed by a good request, and returns what went wrong:
/// a wrong answer, a request boundary the upstream saw that wakeway did not, or a forwarded head
/// with more than one reading.
pub(crate) async fn replay(via: &Via, upstream: &RawUpstream, cases: &[Case]) -> Vec<String> {
    let mut failures: Vec<String> = Vec::new();
    let mut forwarded_total = counted(upstream);
    for case in cases {
        let before = upstream.count();
        let before_counted = counted(upstream);
        let got = run_case(via, case).await;
        if !matches(case.expect, &got) {
            failures.push(format!(
                "{}: expected {:?}, got {got}",
                case.name, case.expect
            ));
        }
        let forwarded = match &got {
            Got::Statuses(s) => s.iter().filter(|(_, fwd)| *fwd).count(),
            _ => 0,
        };
        forwarded_total += forwarded;

        // A good request on a new connection still works, and gets its own answer.
        match probe(via).await {
            Ok(()) => forwarded_total += 1,
            Err(e) => failures.push(format!("{}: the next good request failed: {e}", case.name)),
        }

        // The upstream read exactly the requests wakeway answered with a forwarded response.
        let settled = wait_until_count(upstream, forwarded_total).await;
        if settled != forwarded_total {
            let seen: Vec<String> = upstream.requests()[before..]
                .iter()
                .map(|s| format!("{} {}", s.method, s.target))
                .collect();
            failures.push(format!(
                "{}: the upstream read {} requests but the client got {} forwarded answers (upstream saw: {seen:?})",
                case.name,
                settled - before_counted,
                forwarded_total - before_counted,
            ));
            forwarded_total = settled;
        }
        // The head wakeway forwarded for this case has one reading, and the case's own check.
        for seen in &upstream.requests()[before..] {
            if seen.target.contains("smuggled") {
                failures.push(format!(
                    "{}: the upstream read a smuggled request: {:?}",
                    case.name,
                    String::from_utf8_lossy(&seen.head)
                ));
            }
            let mut problems = Vec::new();
            // The instance learns which listener the client used.
            if let Err(e) = header_is(seen, "x-forwarded-proto", Some(via.scheme())) {
                problems.push(e);
            }
            if seen.target != "/probe" {
                problems.extend(seen.framing_problems());
            }
            if let Some(check) = case.check
                && seen.target != "/probe"
                && let Err(e) = check(seen)
            {
                problems.push(e);
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{}: forwarded head is wrong: {}\n    head: {:?}",
                    case.name,
                    problems.join("; "),
                    String::from_utf8_lossy(&seen.head)
                ));
            }
        }
    }
    failures
}

pub(crate) fn fail_if_any(failures: &[String], total: usize) {
    if !failures.is_empty() {
        panic!(
            "{} of {} cases failed:\n  {}",
            failures.len(),
            total,
            failures.join("\n  ")
        );
    }
}

/// wakeway in front of `upstream` with an HTTPS listener for [`TLS_NAME`], and the way to reach
/// it (ALPN `h2` or `http/1.1`), and its HTTPS address. The directory holds the certificate files: keep it alive.
pub(crate) async fn over_tls(
    upstream: &RawUpstream,
) -> (tempfile::TempDir, Wakeway, Via, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let leaf = ca.leaf(&[TLS_NAME]);
    let tls_config = format!(
        "\n[proxy.tls]\nlisten = \"127.0.0.1:0\"\n{}",
        certificate_toml(&[TLS_NAME], &leaf.write(dir.path(), "h"), true)
    );
    let mut wakeway = Wakeway::start_config(&config(upstream, &tls_config)).await;
    let https = wakeway.proc.listening_addr("https").await;
    wakeway.wait_ready("raw").await;
    let via = Via::Tls {
        addr: https,
        h2: ca.client(&["h2"]),
        http1: ca.client(&["http/1.1"]),
    };
    (dir, wakeway, via, https)
}
