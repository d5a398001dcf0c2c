//! The access log: one line per request, written by a thread of its own.
//!
//! The request path only moves an [`AccessRecord`] (reference-counted strings, header values and
//! numbers; no formatting) into a bounded channel with `try_send`. When the writer falls behind
//! the record is dropped and counted (`wakeway_access_log_dropped_total`): a slow disk never
//! slows a request. The writer formats off the request path and flushes whenever the channel
//! runs empty, so a quiet proxy's log is always complete on disk.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Version};
use prometheus::IntCounter;
use serde_json::{Map, Value};

use crate::config::{AccessLogFormat, AccessLogTarget, LogConfig};
use crate::events::{civil_from_days, rfc3339};
use crate::history::access::{self, AccessLine, MAX_PATH, MAX_REASON};
use crate::proxy::trace::TraceId;

/// Records that may wait for the writer; beyond it they are dropped and counted.
pub const CHANNEL_CAPACITY: usize = 8192;

/// What the access log says about one request. Filled in by the data plane at the request's one
/// exit point; cheap to build (clones of `Arc`s and header values, no string formatting).
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When the request arrived.
    pub time: SystemTime,
    /// `None` when no service matched the `Host`.
    pub service: Option<Arc<str>>,
    pub revision: Option<Arc<str>>,
    pub instance: Option<Arc<str>>,
    pub method: Method,
    /// The request target as forwarded (bytes as the client sent them, escaped when written);
    /// the query is written only with `log.access_query = true`.
    pub target: Box<[u8]>,
    pub version: Version,
    pub status: u16,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Arrival to the end of the response body (or the client leaving).
    pub duration: Duration,
    /// Time spent in the activator queue waiting for capacity.
    pub queue_wait: Duration,
    /// Whether the request waited for an instance to start.
    pub cold_start: bool,
    /// TCP connect to the instance, when a new connection was made.
    pub upstream_connect: Option<Duration>,
    pub client: SocketAddr,
    pub user_agent: Option<HeaderValue>,
    pub referer: Option<HeaderValue>,
    pub request_id: HeaderValue,
    pub trace_id: Option<TraceId>,
    /// A gRPC call's `grpc-status` (its method is the path); the line is written when the call
    /// ends, so streaming calls carry their final status.
    pub grpc_status: Option<u8>,
    /// Why wakeway answered itself (a refused or failed request); `None` for an answer that
    /// came from the instance.
    pub reason: Option<String>,
}

/// Why wakeway answered a request itself: carried on the response it made, for its line.
#[derive(Debug, Clone)]
pub struct Reason(pub String);

/// The sending side, cloned into every worker. `None`-like when the log is off: see
/// [`AccessLog::start`].
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<AccessRecord>,
    dropped: IntCounter,
}

impl AccessLog {
    /// Opens the target and starts the writer thread. `Ok(None)` when `log.access = "off"`.
    /// The error names the file that could not be opened.
    pub fn start(config: &LogConfig, dropped: IntCounter) -> Result<Option<AccessLog>, String> {
        Self::start_with_capacity(config, dropped, CHANNEL_CAPACITY)
    }

    fn start_with_capacity(
        config: &LogConfig,
        dropped: IntCounter,
        capacity: usize,
    ) -> Result<Option<AccessLog>, String> {
        let out: Box<dyn Write + Send> = match &config.access {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::File(path) => Box::new(open(path)?),
        };
        let (tx, rx) = sync_channel(capacity);
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
            format: config.access_format,
            query: config.access_query,
            line: Vec::with_capacity(512),
        };
        std::thread::Builder::new()
            .name("wakeway-access-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("cannot start the access-log writer: {e}"))?;
        Ok(Some(AccessLog { tx, dropped }))
    }

    /// Hands a record to the writer; never blocks. A full channel drops the record and counts it.
    pub fn record(&self, record: AccessRecord) {
        // Full or (the writer died) disconnected: either way the line is lost, and counted.
        if self.tx.try_send(record).is_err() {
            self.dropped.inc();
        }
    }
}

fn open(path: &PathBuf) -> Result<std::fs::File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("log.access: cannot open {}: {e}", path.display()))
}

struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    format: AccessLogFormat,
    query: bool,
    line: Vec<u8>,
}

impl Writer {
    /// Until every sender is gone: write what arrives, flush when nothing more is waiting.
    fn run(mut self, rx: Receiver<AccessRecord>) {
        while let Ok(first) = rx.recv() {
            self.write(&first);
            while let Ok(next) = rx.try_recv() {
                self.write(&next);
            }
            if let Err(e) = self.out.flush() {
                tracing::warn!("access log: write failed: {e}");
            }
        }
    }

    fn write(&mut self, r: &AccessRecord) {
        self.line.clear();
        match self.format {
            AccessLogFormat::Json => json_line(&mut self.line, r, self.query),
            AccessLogFormat::Combined => combined_line(&mut self.line, r, self.query),
        }
        self.line.push(b'\n');
        if let Some(service) = r.service.as_deref() {
            access::keep(service, console_line(r, self.query));
        }
        if let Err(e) = self.out.write_all(&self.line) {
            tracing::warn!("access log: write failed: {e}");
        }
    }
}

/// The console's short form of `r` (its `seq` is given when it is kept).
fn console_line(r: &AccessRecord, query: bool) -> AccessLine {
    AccessLine {
        seq: 0,
        time: rfc3339(r.time),
        method: r.method.as_str().to_string(),
        path: access::cut(&String::from_utf8_lossy(target(&r.target, query)), MAX_PATH),
        status: r.status,
        duration_ms: (r.duration.as_secs_f64() * 1e5).round() / 100.0,
        revision: r.revision.as_deref().map(str::to_string),
        instance: r.instance.as_deref().map(str::to_string),
        bytes_out: r.bytes_out,
        client: r.client.ip().to_string(),
        cold_start: r.cold_start,
        reason: r.reason.as_deref().map(|why| access::cut(why, MAX_REASON)),
    }
}

fn target(t: &[u8], query: bool) -> &[u8] {
    match t.iter().position(|b| *b == b'?') {
        Some(q) if !query => &t[..q],
        _ => t,
    }
}

/// Bytes as JSON text: UTF-8 as it is (the serializer escapes what JSON requires), any byte
/// that is not UTF-8 as `\xHH`.
fn json_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\x{b:02X}"));
        }
    }
    out
}

/// nginx's escaping for its text log: `"`, `\`, control bytes and bytes past ASCII as `\xHH`.
fn clf_escape(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = std::fmt::Write::write_fmt(out, format_args!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
}

fn header_bytes(v: &Option<HeaderValue>) -> Option<&[u8]> {
    v.as_ref().map(HeaderValue::as_bytes)
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// One JSON object; absent values are `null` so every line has the same keys.
pub fn json_line(out: &mut Vec<u8>, r: &AccessRecord, query: bool) {
    let mut m = Map::new();
    let s = |v: &Option<Arc<str>>| v.as_deref().map_or(Value::Null, |s| s.into());
    m.insert("time".into(), rfc3339(r.time).into());
    m.insert("service".into(), s(&r.service));
    m.insert("revision".into(), s(&r.revision));
    m.insert("instance".into(), s(&r.instance));
    m.insert("method".into(), r.method.as_str().into());
    m.insert("path".into(), json_text(target(&r.target, query)).into());
    m.insert("protocol".into(), format!("{:?}", r.version).into());
    m.insert("status".into(), r.status.into());
    m.insert("bytes_in".into(), r.bytes_in.into());
    m.insert("bytes_out".into(), r.bytes_out.into());
    m.insert("duration_ms".into(), millis(r.duration).into());
    m.insert("queue_ms".into(), millis(r.queue_wait).into());
    m.insert("cold_start".into(), r.cold_start.into());
    m.insert(
        "upstream_connect_ms".into(),
        r.upstream_connect.map_or(Value::Null, |d| millis(d).into()),
    );
    m.insert("client".into(), r.client.to_string().into());
    m.insert(
        "user_agent".into(),
        header_bytes(&r.user_agent).map_or(Value::Null, |v| json_text(v).into()),
    );
    m.insert(
        "referer".into(),
        header_bytes(&r.referer).map_or(Value::Null, |v| json_text(v).into()),
    );
    m.insert(
        "request_id".into(),
        r.request_id.to_str().unwrap_or("").into(),
    );
    m.insert(
        "trace_id".into(),
        r.trace_id.map_or(Value::Null, |t| t.to_string().into()),
    );
    m.insert(
        "grpc_method".into(),
        r.grpc_status.map_or(Value::Null, |_| {
            String::from_utf8_lossy(target(&r.target, false)).into()
        }),
    );
    m.insert(
        "grpc_status".into(),
        r.grpc_status.map_or(Value::Null, Into::into),
    );
    m.insert(
        "reason".into(),
        r.reason.as_deref().map_or(Value::Null, Into::into),
    );
    serde_json::to_writer(out, &m).expect("a map of JSON values serializes");
}

/// nginx's `combined` (`$remote_addr - $remote_user [$time_local] "$request" $status
/// $body_bytes_sent "$http_referer" "$http_user_agent"`), then wakeway's fields as `key=value`.
pub fn combined_line(out: &mut Vec<u8>, r: &AccessRecord, query: bool) {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(256);
    let quoted = |v: Option<&[u8]>| match v {
        Some(s) => {
            let mut q = String::with_capacity(s.len() + 2);
            q.push('"');
            clf_escape(&mut q, s);
            q.push('"');
            q
        }
        None => "\"-\"".into(),
    };
    let dash = |v: &Option<Arc<str>>| v.as_deref().unwrap_or("-").to_string();
    let _ = write!(
        line,
        "{} - - [{}] {} {} {} {} {}",
        r.client.ip(),
        clf_time(r.time),
        quoted(Some(
            &[
                r.method.as_str().as_bytes(),
                b" ",
                target(&r.target, query),
                format!(" {:?}", r.version).as_bytes(),
            ]
            .concat()
        )),
        r.status,
        r.bytes_out,
        quoted(header_bytes(&r.referer)),
        quoted(header_bytes(&r.user_agent)),
    );
    let _ = write!(
        line,
        " service={} revision={} instance={} request_id={} duration_ms={} queue_ms={} cold_start={} upstream_connect_ms={} bytes_in={}",
        dash(&r.service),
        dash(&r.revision),
        dash(&r.instance),
        r.request_id.to_str().unwrap_or("-"),
        millis(r.duration),
        millis(r.queue_wait),
        r.cold_start,
        r.upstream_connect
            .map_or("-".to_string(), |d| millis(d).to_string()),
        r.bytes_in,
    );
    if let Some(t) = r.trace_id {
        let _ = write!(line, " trace_id={t}");
    }
    if let Some(g) = r.grpc_status {
        let _ = write!(line, " grpc_status={g}");
    }
    match &r.reason {
        Some(why) => {
            line.push_str(" reason=");
            line.push_str(&quoted(Some(why.as_bytes())));
        }
        None => line.push_str(" reason=-"),
    }
    out.extend_from_slice(line.as_bytes());
}

/// `27/Nov/2026:08:45:20 +0000`, the common log format's time (always UTC here).
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[m as usize - 1],
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::trace::TraceContext;

    fn record(path: &str) -> AccessRecord {
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_764_232_920_123),
            service: Some("web".into()),
            revision: Some("web-00002".into()),
            instance: Some("web-00002-a".into()),
            method: Method::POST,
            target: path.as_bytes().into(),
            version: Version::HTTP_11,
            status: 201,
            bytes_in: 12,
            bytes_out: 345,
            duration: Duration::from_micros(12_345),
            queue_wait: Duration::from_micros(2_500),
            cold_start: true,
            upstream_connect: Some(Duration::from_micros(300)),
            client: "10.0.0.7:51234".parse().unwrap(),
            user_agent: Some(HeaderValue::from_static("curl/8.5 \"quoted\"")),
            referer: None,
            request_id: HeaderValue::from_static("req-1"),
            trace_id: TraceContext::parse(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .map(|t| t.trace_id),
            grpc_status: None,
            reason: None,
        }
    }

    #[test]
    fn the_console_line_drops_the_query_and_rounds_the_duration() {
        let line = console_line(&record("/orders?secret=1"), false);
        assert_eq!(line.path, "/orders");
        assert_eq!(line.duration_ms, 12.35);
        assert_eq!(line.client, "10.0.0.7");
        assert_eq!(console_line(&record("/o?q=1"), true).path, "/o?q=1");
        let long = format!("/{}", "a".repeat(MAX_PATH + 10));
        assert!(console_line(&record(&long), false).path.ends_with('…'));
    }

    fn config(access: AccessLogTarget, format: AccessLogFormat) -> LogConfig {
        LogConfig {
            access,
            access_format: format,
            ..LogConfig::default()
        }
    }

    #[test]
    fn json_line_has_every_field_and_no_query_by_default() {
        let mut out = Vec::new();
        json_line(&mut out, &record("/orders?token=secret"), false);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2025-11-27T08:42:00.123Z");
        assert_eq!(v["service"], "web");
        assert_eq!(v["revision"], "web-00002");
        assert_eq!(v["instance"], "web-00002-a");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/orders");
        assert_eq!(v["status"], 201);
        assert_eq!(v["bytes_in"], 12);
        assert_eq!(v["bytes_out"], 345);
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["queue_ms"], 2.5);
        assert_eq!(v["cold_start"], true);
        assert_eq!(v["upstream_connect_ms"], 0.3);
        assert_eq!(v["client"], "10.0.0.7:51234");
        assert_eq!(v["user_agent"], "curl/8.5 \"quoted\"");
        assert_eq!(v["referer"], Value::Null);
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let mut out = Vec::new();
        json_line(&mut out, &record("/orders?token=secret"), true);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["path"], "/orders?token=secret");
    }

    #[test]
    fn combined_line_reads_like_nginx_then_adds_wakeway_fields() {
        let mut out = Vec::new();
        combined_line(&mut out, &record("/orders?x=1"), false);
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.starts_with(
                "10.0.0.7 - - [27/Nov/2025:08:42:00 +0000] \"POST /orders HTTP/1.1\" 201 345 \"-\" \"curl/8.5 \\x22quoted\\x22\" "
            ),
            "{line}"
        );
        for field in [
            "service=web",
            "revision=web-00002",
            "instance=web-00002-a",
            "request_id=req-1",
            "duration_ms=12.345",
            "queue_ms=2.5",
            "cold_start=true",
            "upstream_connect_ms=0.3",
            "bytes_in=12",
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            assert!(line.contains(field), "{field}: {line}");
        }
    }

    #[test]
    fn off_starts_nothing_and_a_bad_path_names_it() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let off = config(AccessLogTarget::Off, AccessLogFormat::Json);
        assert!(AccessLog::start(&off, dropped.clone()).unwrap().is_none());
        let bad = config(
            AccessLogTarget::File("/nonexistent-dir/access.log".into()),
            AccessLogFormat::Json,
        );
        let e = AccessLog::start(&bad, dropped).err().unwrap();
        assert!(e.contains("/nonexistent-dir/access.log"), "{e}");
    }

    #[test]
    fn every_record_reaches_the_file_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let dropped = IntCounter::new("d", "d").unwrap();
        let cfg = config(AccessLogTarget::File(path.clone()), AccessLogFormat::Json);
        let log = AccessLog::start(&cfg, dropped.clone()).unwrap().unwrap();
        for i in 0..100 {
            log.record(record(&format!("/r{i}")));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let text = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() as u64 + dropped.get() >= 100 {
                break text;
            }
            assert!(std::time::Instant::now() < deadline, "lines: {text}");
            std::thread::yield_now();
        };
        assert_eq!(dropped.get(), 0, "100 records fit the channel");
        for (i, line) in text.lines().enumerate() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["path"], format!("/r{i}"));
        }
    }

    #[test]
    fn a_full_channel_drops_and_counts_without_blocking() {
        // A writer that never finishes its first write: everything after the channel's capacity
        // must be dropped at once.
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                let _ = self.0.recv();
                Err(io::Error::other("closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel();
        let (tx, rx) = sync_channel(4);
        let dropped = IntCounter::new("d", "d").unwrap();
        let writer = Writer {
            // No buffer: the first record's write blocks the writer.
            out: BufWriter::with_capacity(0, Box::new(Stuck(stuck))),
            format: AccessLogFormat::Json,
            query: false,
            line: Vec::new(),
        };
        let thread = std::thread::spawn(move || writer.run(rx));
        let log = AccessLog {
            tx,
            dropped: dropped.clone(),
        };
        for i in 0..50 {
            log.record(record(&format!("/r{i}")));
        }
        // At most the capacity plus the one record the writer holds got through.
        assert!(dropped.get() >= 50 - 5, "dropped {}", dropped.get());
        drop(log);
        drop(release);
        thread.join().unwrap();
    }
}
