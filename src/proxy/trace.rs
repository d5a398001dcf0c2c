//! Request ids, W3C Trace Context (`traceparent`/`tracestate`) and `Server-Timing`: the small,
//! allocation-light pieces the data plane calls once per request.

use std::cell::Cell;
use std::fmt;
use std::hash::BuildHasher;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::ServerTimingMode;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Longest incoming request id kept; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// W3C: a `tracestate` longer than this may be dropped.
const MAX_TRACESTATE_LEN: usize = 512;

// ---------------------------------------------------------------------------------------------
// Ids

thread_local! {
    /// Per-thread generator state: a random start, then a Weyl sequence through splitmix64
    /// (a bijection, so one thread never repeats an id). No shared counter: no cache line
    /// bounces between the data plane's cores.
    static STATE: (Cell<u64>, u64) = {
        let r = std::hash::RandomState::new();
        (Cell::new(r.hash_one(0u8)), r.hash_one(1u8))
    };
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 128 random-looking bits, unique per thread and process with overwhelming probability.
fn next_id() -> [u8; 16] {
    STATE.with(|(state, salt)| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let lo = splitmix64(s);
        let hi = splitmix64(s ^ salt);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&hi.to_be_bytes());
        out[8..].copy_from_slice(&lo.to_be_bytes());
        out
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
}

fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        // Upper-case hex is invalid in traceparent.
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// X-Request-Id

/// Whether an incoming request id is kept: 1 to 128 characters from a conservative set (letters,
/// digits, `-_.:/+=@`), so it is safe in logs, error bodies and headers as it is.
pub fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_REQUEST_ID_LEN
        && v.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&c))
}

/// A new request id's 32 lower-case hex characters, on the stack.
pub fn new_request_id_bytes() -> [u8; 32] {
    let mut buf = [0u8; 32];
    hex_into(&next_id(), &mut buf);
    buf
}

/// A new request id: 32 lower-case hex characters.
pub fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; 32];
    hex_into(&next_id(), &mut buf);
    HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
}

/// Keeps the request's one valid `X-Request-Id`, or replaces it (absent, invalid, or sent twice)
/// with a new one. Returns the id for the access log, events, error bodies and the response.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    let mut all = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(one), None) = (all.next(), all.next())
        && valid_request_id(one.as_bytes())
    {
        return one.clone();
    }
    let id = new_request_id();
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

// ---------------------------------------------------------------------------------------------
// Trace Context

/// A 16-byte W3C trace id; `Display` is its 32 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        hex_into(&self.0, &mut buf);
        f.write_str(std::str::from_utf8(&buf).expect("hex is ASCII"))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// A parsed `traceparent` (`version-traceid-parentid-flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub version: u8,
    pub trace_id: TraceId,
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` by W3C Trace Context: lower-case hex only; version `ff` invalid;
    /// version `00` exactly 55 characters; a later version at least 55 with `-` after them;
    /// all-zero trace or parent ids invalid.
    pub fn parse(s: &str) -> Option<TraceContext> {
        let b = s.as_bytes();
        if b.len() < 55 {
            return None;
        }
        let [version] = unhex::<1>(&b[0..2])?;
        let shape_ok = match version {
            0xff => false,
            0x00 => b.len() == 55,
            _ => b.len() == 55 || b[55] == b'-',
        };
        if !shape_ok || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let trace_id = unhex::<16>(&b[3..35])?;
        let parent_id = unhex::<8>(&b[36..52])?;
        let [flags] = unhex::<1>(&b[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            version,
            trace_id: TraceId(trace_id),
            parent_id,
            flags,
        })
    }

    /// A new trace with wakeway as its first hop, marked sampled so the app's tracer (usually
    /// parent-based) records it.
    pub fn start() -> TraceContext {
        let id = next_id();
        let parent = next_id();
        TraceContext {
            version: 0,
            trace_id: TraceId(id),
            parent_id: parent[..8].try_into().expect("8 bytes"),
            flags: 0x01,
        }
    }

    /// `00-<trace id>-<parent id>-<flags>` (always version 00: the format wakeway speaks).
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.header_bytes()).expect("hex is a valid header value")
    }

    /// The same, on the stack.
    pub fn header_bytes(&self) -> [u8; 55] {
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&self.trace_id.0, &mut buf[3..35]);
        hex_into(&self.parent_id, &mut buf[36..52]);
        hex_into(&[self.flags], &mut buf[53..55]);
        buf
    }
}

/// What [`propagate`] did with a request's trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// A valid `traceparent` arrived and goes upstream unchanged (with its `tracestate`).
    Kept(TraceId),
    /// None arrived, or an invalid one (then its `tracestate` is dropped too): a new trace.
    Started(TraceId),
    /// None (or an invalid one) arrived and starting traces is off: headers left as they were.
    None,
}

impl Trace {
    pub fn id(self) -> Option<TraceId> {
        match self {
            Trace::Kept(id) | Trace::Started(id) => Some(id),
            Trace::None => None,
        }
    }
}

/// Passes W3C trace context through, and (when `start` is set) starts a trace for requests that
/// arrive without a valid one, as a trace's first participant must: a new `traceparent`, and the
/// old `tracestate` dropped because it belonged to a trace that could not be read.
pub fn propagate(headers: &mut HeaderMap, start: bool) -> Trace {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    let incoming = match (all.next(), all.next()) {
        (Some(one), None) => one.to_str().ok().and_then(TraceContext::parse),
        _ => None,
    };
    if let Some(ctx) = incoming {
        let state_ok = headers
            .get_all(&TRACESTATE)
            .iter()
            .map(|v| v.len())
            .sum::<usize>()
            <= MAX_TRACESTATE_LEN;
        if !state_ok {
            headers.remove(&TRACESTATE);
        }
        return Trace::Kept(ctx.trace_id);
    }
    if !start {
        return Trace::None;
    }
    let ctx = TraceContext::start();
    headers.remove(&TRACESTATE);
    headers.insert(TRACEPARENT, ctx.header_value());
    Trace::Started(ctx.trace_id)
}

// ---------------------------------------------------------------------------------------------
// Server-Timing

/// What a response's `Server-Timing` reports: wakeway's time to the response headers, and the
/// parts of it spent queued and waiting for a cold start (or for a thaw, when the instance that
/// served it came back from frozen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTiming {
    pub total: Duration,
    pub queue: Option<Duration>,
    pub cold_start: Option<Duration>,
    /// The cold wait ended with a thaw: it is named `thaw`, not `cold-start`.
    pub thawed: bool,
}

impl ServerTiming {
    /// Whether a response gets the header under `mode`.
    pub fn applies(mode: ServerTimingMode, cold_start: bool) -> bool {
        match mode {
            ServerTimingMode::Off => false,
            ServerTimingMode::ColdStart => cold_start,
            ServerTimingMode::Always => true,
        }
    }

    /// `wakeway;dur=12.3, queue;dur=1.0, cold-start;dur=850.2` (milliseconds, one decimal;
    /// `thaw;dur=2.1` in place of `cold-start` after a thaw), formatted on the stack.
    pub fn header_value(&self) -> HeaderValue {
        let mut buf = StackBuf::default();
        write_metric(&mut buf, "wakeway", self.total);
        if let Some(q) = self.queue {
            buf.push(b", ");
            write_metric(&mut buf, "queue", q);
        }
        if let Some(c) = self.cold_start {
            buf.push(b", ");
            let name = if self.thawed { "thaw" } else { "cold-start" };
            write_metric(&mut buf, name, c);
        }
        HeaderValue::from_bytes(buf.as_bytes()).expect("ASCII metric names and digits")
    }
}

fn write_metric(buf: &mut StackBuf, name: &str, d: Duration) {
    let tenths = (d.as_micros() + 50) / 100;
    buf.push(name.as_bytes());
    buf.push(b";dur=");
    buf.push_u128(tenths / 10);
    buf.push(b".");
    buf.push_u128(tenths % 10);
}

/// Enough for the three metrics with any duration a `u128` of microseconds can hold.
struct StackBuf {
    bytes: [u8; 160],
    len: usize,
}

impl Default for StackBuf {
    fn default() -> Self {
        StackBuf {
            bytes: [0; 160],
            len: 0,
        }
    }
}

impl StackBuf {
    fn push(&mut self, s: &[u8]) {
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn push_u128(&mut self, mut n: u128) {
        let mut digits = [0u8; 39];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn request_ids_are_kept_when_valid_and_made_otherwise() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(ensure_request_id(&mut h), "abc-123_x.y:z");
        assert_eq!(h.get(X_REQUEST_ID).unwrap(), "abc-123_x.y:z");

        for bad in ["", "has space", "quote\"d", &"x".repeat(129)] {
            let mut h = HeaderMap::new();
            h.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = ensure_request_id(&mut h);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
            assert_eq!(
                h.get(X_REQUEST_ID).unwrap(),
                &id,
                "the new id goes upstream"
            );
        }
        let mut two = HeaderMap::new();
        two.append(X_REQUEST_ID, HeaderValue::from_static("a"));
        two.append(X_REQUEST_ID, HeaderValue::from_static("b"));
        let id = ensure_request_id(&mut two);
        assert_eq!(two.get_all(X_REQUEST_ID).iter().count(), 1);
        assert_eq!(two.get(X_REQUEST_ID).unwrap(), &id);

        let mut none = HeaderMap::new();
        let id = ensure_request_id(&mut none);
        assert!(valid_request_id(id.as_bytes()));
        assert!(id.as_bytes().iter().all(|c| HEX.contains(c)));
    }

    #[test]
    fn generated_ids_do_not_repeat() {
        let ids: HashSet<_> = (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        let other = std::thread::spawn(new_request_id).join().unwrap();
        assert!(!ids.contains(&other));
    }

    #[test]
    fn traceparent_parsing_follows_the_w3c_rules() {
        let ctx = TraceContext::parse(VALID).unwrap();
        assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ctx.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(ctx.flags, 1);
        assert_eq!(ctx.header_value(), VALID);
        // A later version may append fields after a dash.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future";
        assert_eq!(TraceContext::parse(future).unwrap().version, 0xcc);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn propagation_keeps_valid_context_and_starts_a_trace_when_configured() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        h.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        let t = propagate(&mut h, true);
        assert_eq!(
            t.id().unwrap().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(matches!(t, Trace::Kept(_)));
        assert_eq!(h.get(TRACEPARENT).unwrap(), VALID);
        assert_eq!(h.get(TRACESTATE).unwrap(), "congo=t61rcWkgMzE");

        let mut absent = HeaderMap::new();
        let t = propagate(&mut absent, true);
        let started = TraceContext::parse(absent.get(TRACEPARENT).unwrap().to_str().unwrap())
            .expect("a valid traceparent was added");
        assert_eq!(t, Trace::Started(started.trace_id));
        assert_eq!(started.flags, 1);

        let mut invalid = HeaderMap::new();
        invalid.insert(TRACEPARENT, HeaderValue::from_static("00-garbage"));
        invalid.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        assert!(matches!(propagate(&mut invalid, true), Trace::Started(_)));
        assert!(
            invalid.get(TRACESTATE).is_none(),
            "orphan tracestate dropped"
        );

        let mut off = HeaderMap::new();
        off.insert(TRACEPARENT, HeaderValue::from_static("00-garbage"));
        assert_eq!(propagate(&mut off, false), Trace::None);
        assert_eq!(
            off.get(TRACEPARENT).unwrap(),
            "00-garbage",
            "untouched when off"
        );
        let mut off = HeaderMap::new();
        assert_eq!(propagate(&mut off, false), Trace::None);
        assert!(off.is_empty());
    }

    #[test]
    fn server_timing_value_and_modes() {
        let t = ServerTiming {
            total: Duration::from_micros(851_234),
            queue: Some(Duration::from_micros(1_000)),
            cold_start: Some(Duration::from_micros(850_160)),
            thawed: false,
        };
        assert_eq!(
            t.header_value(),
            "wakeway;dur=851.2, queue;dur=1.0, cold-start;dur=850.2"
        );
        let thaw = ServerTiming {
            total: Duration::from_micros(2_500),
            queue: None,
            cold_start: Some(Duration::from_micros(2_140)),
            thawed: true,
        };
        assert_eq!(thaw.header_value(), "wakeway;dur=2.5, thaw;dur=2.1");
        let warm = ServerTiming {
            total: Duration::from_micros(49),
            queue: None,
            cold_start: None,
            thawed: false,
        };
        assert_eq!(warm.header_value(), "wakeway;dur=0.0");
        let huge = ServerTiming {
            total: Duration::MAX,
            queue: Some(Duration::MAX),
            cold_start: Some(Duration::MAX),
            thawed: true,
        };
        assert!(huge.header_value().len() < 160);
        assert!(ServerTiming::applies(ServerTimingMode::ColdStart, true));
        assert!(!ServerTiming::applies(ServerTimingMode::ColdStart, false));
        assert!(ServerTiming::applies(ServerTimingMode::Always, false));
        assert!(!ServerTiming::applies(ServerTimingMode::Off, true));
    }
}
