//! What instances write on stdout and stderr. Each line is mirrored into wakeway's log with the
//! service, revision, instance and stream as fields (so JSON logs carry them apart from the
//! text), and kept in a bounded ring per instance — also for a while after the instance ended,
//! so a failed start can show what the app printed. `wakeway logs` and the console read it.
//!
//! Memory is fixed: at most `LINES_PER_INSTANCE` lines and `BYTES_PER_INSTANCE` bytes per
//! instance, `MAX_INSTANCES` instances (the one written to longest ago goes first), each line cut
//! at `MAX_LINE_BYTES`: under 17 MiB in all, about 100 KiB per instance for typical logs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::events::rfc3339;

pub const LINES_PER_INSTANCE: usize = 500;
pub const BYTES_PER_INSTANCE: usize = 64 * 1024;
pub const MAX_INSTANCES: usize = 256;
pub const MAX_LINE_BYTES: usize = 4096;

/// Whose output a line is.
#[derive(Debug, Clone)]
pub struct Source {
    pub service: String,
    pub revision: String,
    pub instance: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Rises with every line of every instance: `after=SEQ` reads only newer lines.
    pub seq: u64,
    pub time: String,
    pub revision: String,
    pub instance: String,
    pub stream: Stream,
    pub line: String,
}

struct Ring {
    lines: VecDeque<Line>,
    bytes: usize,
    last_seq: u64,
}

#[derive(Default)]
struct Registry {
    seq: u64,
    /// By service, then instance.
    rings: HashMap<String, HashMap<String, Ring>>,
    count: usize,
}

/// Not on the request path: one lock per line an app prints.
static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Logs `text` as `src`'s output and keeps it in its ring.
pub fn record(src: &Source, stream: Stream, text: &str) {
    let text = cut(text.trim_end_matches(['\r', '\n']));
    tracing::info!(
        target: "wakeway::instance",
        service = %src.service,
        revision = %src.revision,
        instance = %src.instance,
        stream = stream.as_str(),
        "[{}/{}] {text}",
        src.service,
        src.instance
    );
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let reg = guard.get_or_insert_with(Registry::default);
    reg.seq += 1;
    let seq = reg.seq;
    let line = Line {
        seq,
        time: rfc3339(SystemTime::now()),
        revision: src.revision.clone(),
        instance: src.instance.clone(),
        stream,
        line: text.to_string(),
    };
    let is_new = !reg
        .rings
        .get(&src.service)
        .is_some_and(|s| s.contains_key(&src.instance));
    if is_new {
        if reg.count >= MAX_INSTANCES {
            reg.evict_oldest();
        }
        reg.count += 1;
    }
    let ring = reg
        .rings
        .entry(src.service.clone())
        .or_default()
        .entry(src.instance.clone())
        .or_insert_with(|| Ring {
            lines: VecDeque::new(),
            bytes: 0,
            last_seq: 0,
        });
    ring.bytes += line.line.len();
    ring.last_seq = seq;
    ring.lines.push_back(line);
    while ring.lines.len() > LINES_PER_INSTANCE || ring.bytes > BYTES_PER_INSTANCE {
        match ring.lines.pop_front() {
            Some(old) => ring.bytes -= old.line.len(),
            None => break,
        }
    }
}

impl Registry {
    fn evict_oldest(&mut self) {
        let oldest = self
            .rings
            .iter()
            .flat_map(|(svc, rings)| rings.iter().map(move |(id, r)| (r.last_seq, svc, id)))
            .min()
            .map(|(_, svc, id)| (svc.clone(), id.clone()));
        if let Some((svc, id)) = oldest {
            let rings = self.rings.get_mut(&svc).expect("found above");
            rings.remove(&id);
            if rings.is_empty() {
                self.rings.remove(&svc);
            }
            self.count -= 1;
        }
    }
}

/// Which lines to read.
#[derive(Debug, Default, Clone)]
pub struct Query<'a> {
    pub instance: Option<&'a str>,
    pub revision: Option<&'a str>,
    /// Only lines with a greater `seq`.
    pub after: u64,
    /// The last this many (after the filters); all when `None`.
    pub tail: Option<usize>,
}

/// `service`'s kept lines that match `q`, oldest first, across its instances.
pub fn lines(service: &str, q: &Query<'_>) -> Vec<Line> {
    let guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(rings) = guard.as_ref().and_then(|r| r.rings.get(service)) else {
        return Vec::new();
    };
    let mut out: Vec<Line> = rings
        .iter()
        .filter(|(id, _)| q.instance.is_none_or(|want| want == id.as_str()))
        .flat_map(|(_, r)| r.lines.iter())
        .filter(|l| l.seq > q.after && q.revision.is_none_or(|want| want == l.revision))
        .cloned()
        .collect();
    drop(guard);
    out.sort_by_key(|l| l.seq);
    if let Some(n) = q.tail {
        out.drain(..out.len().saturating_sub(n));
    }
    out
}

/// Forgets a service's output (it left the config).
pub fn forget(service: &str) {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(reg) = guard.as_mut()
        && let Some(rings) = reg.rings.remove(service)
    {
        reg.count -= rings.len();
    }
}

/// Reads `stream` line by line until it closes, recording each line as `src`'s.
pub async fn forward(stream: impl AsyncRead + Unpin, src: Arc<Source>, which: Stream) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => record(&src, which, &String::from_utf8_lossy(&buf)),
        }
    }
}

/// At most `MAX_LINE_BYTES`, cut on a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_LINE_BYTES {
        return text;
    }
    let mut end = MAX_LINE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(service: &str, instance: &str) -> Source {
        Source {
            service: service.into(),
            revision: format!("{service}-00001"),
            instance: instance.into(),
        }
    }

    #[test]
    fn lines_are_kept_per_instance_bounded_and_read_in_order() {
        let a = src("out-t1", "out-t1-00001-a");
        let b = src("out-t1", "out-t1-00001-b");
        for i in 0..LINES_PER_INSTANCE + 10 {
            record(&a, Stream::Stdout, &format!("a{i}\n"));
        }
        record(&b, Stream::Stderr, "b0");
        let all = lines("out-t1", &Query::default());
        assert_eq!(all.len(), LINES_PER_INSTANCE + 1, "a's ring is bounded");
        assert_eq!(all[0].line, "a10", "the oldest lines went first");
        assert_eq!(all.last().unwrap().line, "b0");
        assert_eq!(all.last().unwrap().stream, Stream::Stderr);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));

        let only_b = lines(
            "out-t1",
            &Query {
                instance: Some("out-t1-00001-b"),
                ..Default::default()
            },
        );
        assert_eq!(only_b.len(), 1);
        let tail = lines(
            "out-t1",
            &Query {
                tail: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(
            tail.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            [format!("a{}", LINES_PER_INSTANCE + 9).as_str(), "b0"]
        );
        let after = lines(
            "out-t1",
            &Query {
                after: tail[0].seq,
                ..Default::default()
            },
        );
        assert_eq!(after.len(), 1);
        forget("out-t1");
        assert!(lines("out-t1", &Query::default()).is_empty());
    }

    #[test]
    fn a_long_line_is_cut_and_bytes_are_bounded() {
        let a = src("out-t2", "out-t2-00001-a");
        let long = "é".repeat(MAX_LINE_BYTES);
        for _ in 0..40 {
            record(&a, Stream::Stdout, &long);
        }
        let all = lines("out-t2", &Query::default());
        assert!(all.iter().all(|l| l.line.len() <= MAX_LINE_BYTES));
        let bytes: usize = all.iter().map(|l| l.line.len()).sum();
        assert!(bytes <= BYTES_PER_INSTANCE, "{bytes}");
        forget("out-t2");
    }
}
