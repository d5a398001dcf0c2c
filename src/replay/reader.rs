//! Reads an access log line by line (never the whole file): wakeway's JSON lines, or its
//! `combined` lines with the `key=value` tail. Each usable line becomes a [`Request`]; a line that
//! is not is counted with its number and the reason. Lines are written when a request ends, so
//! they come in end order: a bounded reorder buffer hands requests out in arrival order.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::BufRead;
use std::time::Duration;

use serde::Deserialize;

/// One logged request, as replay needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    /// Microseconds since the Unix epoch.
    pub arrival: i64,
    /// Line number, so two requests at the same microsecond keep their log order.
    pub line: u64,
    /// Index into [`Reader::services`].
    pub service: u32,
    /// Its own time at the instance: the logged duration minus the time it waited.
    pub service_time: Duration,
    /// How long it waited for a slot (`queue_ms`), a cold start included.
    pub waited: Duration,
    /// It waited for its revision's first instance (`cold_start`).
    pub cold: bool,
    /// Wakeway answered it 503 or 504 itself (no instance served it): that status.
    pub refused: Option<u16>,
}

/// The lines that could not be used: how many, and the first few with their line numbers.
#[derive(Debug, Default, Clone)]
pub struct Malformed {
    pub count: u64,
    pub first: Vec<(u64, String)>,
}

const KEEP_MALFORMED: usize = 10;

impl Malformed {
    fn add(&mut self, line: u64, why: String) {
        self.count += 1;
        if self.first.len() < KEEP_MALFORMED {
            self.first.push((line, why));
        }
    }
}

/// Streams the requests of a log in arrival order.
pub struct Reader<R> {
    input: R,
    buf: String,
    line: u64,
    /// Service names as met, so a request carries a small index and no string.
    names: HashMap<String, u32>,
    pub services: Vec<String>,
    pub malformed: Malformed,
    /// Lines without a service: no route matched the `Host` (404), nothing to scale.
    pub unrouted: u64,
    /// Requests that arrived before one already handed out (a line later than the reorder
    /// buffer allows): replayed at once, late.
    pub late: u64,
    pending: BinaryHeap<Reverse<Request>>,
    /// The latest arrival seen and the longest duration seen: no later line can have arrived
    /// before the first minus the second.
    latest: i64,
    longest: i64,
    last_out: i64,
    done: bool,
}

/// Requests the reorder buffer holds at most (tens of MB).
const MAX_PENDING: usize = 500_000;

/// Slack on top of the longest duration for the access-log writer's own delay.
const REORDER_SLACK_US: i64 = 1_000_000;

impl<R> Reader<R> {
    /// Lines read so far.
    pub fn lines(&self) -> u64 {
        self.line
    }
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input,
            buf: String::with_capacity(1024),
            line: 0,
            names: HashMap::new(),
            services: Vec::new(),
            malformed: Malformed::default(),
            unrouted: 0,
            late: 0,
            pending: BinaryHeap::new(),
            latest: i64::MIN,
            longest: 0,
            last_out: i64::MIN,
            done: false,
        }
    }

    /// The next request by arrival, or `None` at the end of the log. An unreadable file (not a
    /// bad line) is an error.
    pub fn next_request(&mut self) -> std::io::Result<Option<Request>> {
        loop {
            // A very long request (a tunnel open for hours) would hold everything behind it:
            // past a bound the earliest goes out anyway, and a line it overtook comes late.
            let full = self.pending.len() >= MAX_PENDING;
            let ready = self
                .pending
                .peek()
                .is_some_and(|Reverse(r)| self.done || full || r.arrival <= self.watermark());
            if ready {
                let Reverse(r) = self.pending.pop().expect("peeked");
                if r.arrival < self.last_out {
                    self.late += 1;
                }
                self.last_out = self.last_out.max(r.arrival);
                return Ok(Some(r));
            }
            if self.done {
                return Ok(None);
            }
            self.read_one()?;
        }
    }

    fn watermark(&self) -> i64 {
        self.latest
            .saturating_sub(self.longest)
            .saturating_sub(REORDER_SLACK_US)
    }

    fn read_one(&mut self) -> std::io::Result<()> {
        self.buf.clear();
        if self.input.read_line(&mut self.buf)? == 0 {
            self.done = true;
            return Ok(());
        }
        self.line += 1;
        let text = self.buf.trim();
        if text.is_empty() {
            return Ok(());
        }
        let line = self.line;
        match parse_line(text) {
            Ok(None) => self.unrouted += 1,
            Ok(Some(f)) => {
                let service = match self.names.get(f.service.as_ref()) {
                    Some(&k) => k,
                    None => {
                        let k = self.services.len() as u32;
                        self.names.insert(f.service.to_string(), k);
                        self.services.push(f.service.to_string());
                        k
                    }
                };
                let req = f.request(service, line);
                self.latest = self.latest.max(req.arrival);
                self.longest = self.longest.max(micros(f.duration));
                self.pending.push(Reverse(req));
            }
            Err(why) => self.malformed.add(line, why),
        }
        Ok(())
    }
}

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

/// What one line says, before its service is interned.
#[derive(Debug)]
pub struct Fields<'a> {
    pub arrival: i64,
    pub service: Cow<'a, str>,
    pub duration: Duration,
    pub waited: Duration,
    pub cold: bool,
    pub refused: Option<u16>,
}

impl Fields<'_> {
    fn request(&self, service: u32, line: u64) -> Request {
        Request {
            arrival: self.arrival,
            line,
            service,
            service_time: self.duration.saturating_sub(self.waited),
            waited: self.waited,
            cold: self.cold,
            refused: self.refused,
        }
    }
}

/// The fields replay reads from a JSON line; the others are skipped unread.
#[derive(Deserialize)]
struct JsonLine<'a> {
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    /// `Some(None)`: the key is there and `null` (no service matched).
    #[serde(borrow, default, deserialize_with = "present")]
    service: Option<Option<Cow<'a, str>>>,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default)]
    queue_ms: Option<f64>,
    #[serde(default)]
    cold_start: Option<bool>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(borrow, default, deserialize_with = "present")]
    instance: Option<Option<Cow<'a, str>>>,
}

fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// One line: `Ok(None)` when it names no service (a 404 before routing).
pub fn parse_line(text: &str) -> Result<Option<Fields<'_>>, String> {
    if text.starts_with('{') {
        parse_json(text)
    } else {
        parse_combined(text)
    }
}

fn missing(field: &str) -> String {
    format!("no `{field}` field")
}

fn parse_json(text: &str) -> Result<Option<Fields<'_>>, String> {
    let l: JsonLine<'_> = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let service = match l.service {
        None => return Err(missing("service")),
        Some(None) => return Ok(None),
        Some(Some(s)) => s,
    };
    let time = l.time.ok_or_else(|| missing("time"))?;
    let arrival = parse_rfc3339(&time).ok_or_else(|| format!("`time` is not RFC 3339: {time}"))?;
    let duration = ms(
        "duration_ms",
        l.duration_ms.ok_or_else(|| missing("duration_ms"))?,
    )?;
    let waited = ms("queue_ms", l.queue_ms.ok_or_else(|| missing("queue_ms"))?)?;
    let status = l.status.ok_or_else(|| missing("status"))?;
    Ok(Some(Fields {
        arrival,
        service,
        duration,
        waited,
        cold: l.cold_start.unwrap_or(false),
        refused: refusal(status, matches!(l.instance, None | Some(None))),
    }))
}

/// A 503 or 504 no instance answered is wakeway's own refusal.
fn refusal(status: u16, no_instance: bool) -> Option<u16> {
    (matches!(status, 503 | 504) && no_instance).then_some(status)
}

fn ms(field: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(Duration::from_secs_f64(v / 1000.0))
    } else {
        Err(format!("`{field}` is not a duration in milliseconds: {v}"))
    }
}

/// `IP - - [27/Nov/2026:08:45:20 +0000] "GET / HTTP/1.1" 200 345 "-" "ua" service=web ...`:
/// the time has whole seconds only, so concurrency within a second is approximate.
fn parse_combined(text: &str) -> Result<Option<Fields<'_>>, String> {
    let open = text
        .find('[')
        .ok_or("neither JSON nor combined: no `[time]`")?;
    let close = open + text[open..].find(']').ok_or("no `]` after the time")?;
    let arrival = parse_clf_time(&text[open + 1..close]).ok_or_else(|| {
        format!(
            "`[time]` is not `dd/Mon/yyyy:hh:mm:ss +0000`: {}",
            &text[open + 1..close]
        )
    })?;
    // The status follows the quoted request line.
    let rest = &text[close + 1..];
    let q1 = rest.find('"').ok_or("no quoted request line")?;
    let q2 = q1
        + 1
        + rest[q1 + 1..]
            .find('"')
            .ok_or("unterminated request line")?;
    let status: u16 = rest[q2 + 1..]
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| missing("status"))?;
    let field = |key: &str| {
        let pat = format!(" {key}=");
        text.find(&pat).map(|at| {
            let v = &text[at + pat.len()..];
            &v[..v.find(' ').unwrap_or(v.len())]
        })
    };
    let service = field("service").ok_or_else(|| missing("service"))?;
    if service == "-" {
        return Ok(None);
    }
    let number = |key: &str| -> Result<Duration, String> {
        let v = field(key).ok_or_else(|| missing(key))?;
        ms(
            key,
            v.parse()
                .map_err(|_| format!("`{key}` is not a number: {v}"))?,
        )
    };
    Ok(Some(Fields {
        arrival,
        service: Cow::Borrowed(service),
        duration: number("duration_ms")?,
        waited: number("queue_ms")?,
        cold: field("cold_start") == Some("true"),
        refused: refusal(status, matches!(field("instance"), None | Some("-"))),
    }))
}

/// `2026-11-27T08:42:00.123Z` (any number of fraction digits, `Z` only: the log is UTC) to
/// microseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, sec) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let mut micros = 0i64;
    let frac = &s[19..s.len() - 1];
    if let Some(digits) = frac.strip_prefix('.') {
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let six: String = digits
            .chars()
            .chain(std::iter::repeat('0'))
            .take(6)
            .collect();
        micros = six.parse().ok()?;
    } else if !frac.is_empty() {
        return None;
    }
    civil(y, mo, d, h, mi, sec).map(|secs| secs * 1_000_000 + micros)
}

/// `27/Nov/2026:08:45:20 +0000` to microseconds since the epoch.
fn parse_clf_time(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (stamp, zone) = s.split_once(' ')?;
    if zone != "+0000" {
        return None;
    }
    let mut parts = stamp.splitn(4, [':', '/']);
    let d: i64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let mo = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let y: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (hms.next()??, hms.next()??, hms.next()??);
    civil(y, mo, d, h, mi, sec).map(|secs| secs * 1_000_000)
}

/// Seconds since the epoch of a UTC civil time (Howard Hinnant's days-from-civil).
fn civil(y: i64, m: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_the_log_writer() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_764_232_920_123);
        let text = crate::events::rfc3339(t);
        assert_eq!(parse_rfc3339(&text), Some(1_764_232_920_123_000));
        assert_eq!(
            parse_clf_time("27/Nov/2025:08:42:00 +0000"),
            Some(1_764_232_920_000_000)
        );
        assert_eq!(
            parse_rfc3339("2025-11-27T08:42:00Z"),
            Some(1_764_232_920_000_000)
        );
        assert_eq!(parse_rfc3339("2025-11-27 08:42:00Z"), None);
        assert_eq!(parse_rfc3339("2025-13-27T08:42:00Z"), None);
    }

    #[test]
    fn json_and_combined_lines_give_the_same_request() {
        let json = r#"{"time":"2025-11-27T08:42:00.000Z","service":"web","revision":"web-00001","instance":"web-00001-a","status":200,"duration_ms":850.5,"queue_ms":800.0,"cold_start":true}"#;
        let combined = r#"10.0.0.7 - - [27/Nov/2025:08:42:00 +0000] "GET / HTTP/1.1" 200 345 "-" "curl" service=web revision=web-00001 instance=web-00001-a request_id=r duration_ms=850.5 queue_ms=800 cold_start=true upstream_connect_ms=- bytes_in=0"#;
        for text in [json, combined] {
            let f = parse_line(text).unwrap().unwrap();
            assert_eq!(f.service, "web");
            assert_eq!(f.arrival, 1_764_232_920_000_000);
            assert_eq!(
                f.duration.saturating_sub(f.waited),
                Duration::from_micros(50_500)
            );
            assert!(f.cold && f.refused.is_none());
        }
    }

    #[test]
    fn a_refusal_has_no_instance_and_a_404_no_service() {
        let refused = r#"{"time":"2025-11-27T08:42:00Z","service":"web","instance":null,"status":503,"duration_ms":1,"queue_ms":0}"#;
        assert_eq!(parse_line(refused).unwrap().unwrap().refused, Some(503));
        let unrouted = r#"{"time":"2025-11-27T08:42:00Z","service":null,"status":404,"duration_ms":1,"queue_ms":0}"#;
        assert!(parse_line(unrouted).unwrap().is_none());
        let e = parse_line(r#"{"time":"2025-11-27T08:42:00Z","service":"web","status":200}"#)
            .unwrap_err();
        assert_eq!(e, "no `duration_ms` field");
    }

    #[test]
    fn lines_in_end_order_come_out_in_arrival_order() {
        // b arrived first but took 5 s, so its line is written after a's.
        let log = [
            r#"{"time":"2025-11-27T08:42:01Z","service":"web","status":200,"duration_ms":10,"queue_ms":0}"#,
            r#"{"time":"2025-11-27T08:42:00Z","service":"web","status":200,"duration_ms":5000,"queue_ms":0}"#,
            "garbage",
            r#"{"time":"2025-11-27T08:42:09Z","service":"api","status":200,"duration_ms":10,"queue_ms":0}"#,
        ]
        .join("\n");
        let mut r = Reader::new(log.as_bytes());
        let mut got = Vec::new();
        while let Some(req) = r.next_request().unwrap() {
            got.push((req.arrival / 1_000_000 % 60, req.line));
        }
        assert_eq!(got, [(0, 2), (1, 1), (9, 4)]);
        assert_eq!(r.malformed.count, 1);
        assert_eq!(r.malformed.first[0].0, 3);
        assert_eq!(r.services, ["web", "api"]);
    }
}
