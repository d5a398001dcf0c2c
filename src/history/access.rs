//! The last access-log lines of each service, for the console's live tail and `wakeway logs
//! --access`. Fed by the access log's writer thread, off the request path, so it holds what the
//! access log writes: nothing while `log.access = "off"`.
//!
//! Memory is fixed: [`LINES_PER_SERVICE`] lines per service, each path cut at [`MAX_PATH`]
//! bytes and each reason at [`MAX_REASON`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

pub const LINES_PER_SERVICE: usize = 200;
pub const MAX_PATH: usize = 256;
pub const MAX_REASON: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct AccessLine {
    /// Rises with every line of every service: `after=SEQ` reads only newer lines.
    pub seq: u64,
    pub time: String,
    pub method: String,
    /// Without the query unless `log.access_query = true`.
    pub path: String,
    pub status: u16,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub bytes_out: u64,
    pub client: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cold_start: bool,
    /// Why wakeway answered itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Default)]
struct Registry {
    seq: u64,
    rings: HashMap<String, VecDeque<AccessLine>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Keeps `line` as `service`'s latest; its `seq` is given here.
pub fn keep(service: &str, mut line: AccessLine) {
    let mut g = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let reg = g.get_or_insert_with(Registry::default);
    reg.seq += 1;
    line.seq = reg.seq;
    let ring = reg.rings.entry(service.to_string()).or_default();
    if ring.len() == LINES_PER_SERVICE {
        ring.pop_front();
    }
    ring.push_back(line);
}

/// Which statuses a tail shows: `5xx` (a class), `404` (a code), `errors` (400 and up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    All,
    Class(u16),
    Code(u16),
    Errors,
}

impl StatusFilter {
    pub fn parse(s: &str) -> Result<StatusFilter, String> {
        let bad = || {
            format!(
                "`status` is a class (`5xx`), a code (`404`) or `errors` (400 and up), not `{s}`"
            )
        };
        match s {
            "" | "all" => Ok(StatusFilter::All),
            "errors" => Ok(StatusFilter::Errors),
            _ if s.len() == 3 && s.ends_with("xx") => match s.as_bytes()[0] {
                d @ b'1'..=b'5' => Ok(StatusFilter::Class((d - b'0') as u16)),
                _ => Err(bad()),
            },
            _ => match s.parse::<u16>() {
                Ok(code) if (100..600).contains(&code) => Ok(StatusFilter::Code(code)),
                _ => Err(bad()),
            },
        }
    }

    fn matches(self, status: u16) -> bool {
        match self {
            StatusFilter::All => true,
            StatusFilter::Class(c) => status / 100 == c,
            StatusFilter::Code(c) => status == c,
            StatusFilter::Errors => status >= 400,
        }
    }
}

/// `service`'s kept lines after `after` that pass `filter`, the last `tail` of them, oldest
/// first.
pub fn lines(service: &str, filter: StatusFilter, after: u64, tail: usize) -> Vec<AccessLine> {
    let g = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(ring) = g.as_ref().and_then(|r| r.rings.get(service)) else {
        return Vec::new();
    };
    let mut out: Vec<AccessLine> = ring
        .iter()
        .rev()
        .filter(|l| l.seq > after && filter.matches(l.status))
        .take(tail)
        .cloned()
        .collect();
    out.reverse();
    out
}

/// Forgets a service's lines (it left the config).
pub fn forget(service: &str) {
    let mut g = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(reg) = g.as_mut() {
        reg.rings.remove(service);
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked with an ellipsis.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(path: &str, status: u16) -> AccessLine {
        AccessLine {
            seq: 0,
            time: "2026-12-02T00:00:00Z".into(),
            method: "GET".into(),
            path: path.into(),
            status,
            duration_ms: 1.23,
            revision: Some("r-00001".into()),
            instance: None,
            bytes_out: 5,
            client: "127.0.0.1".into(),
            cold_start: false,
            reason: None,
        }
    }

    #[test]
    fn a_tail_is_bounded_filtered_and_read_after_a_mark() {
        for i in 0..LINES_PER_SERVICE + 20 {
            let status = if i % 4 == 0 { 503 } else { 200 };
            keep("acc-t1", line(&format!("/r{i}"), status));
        }
        keep("acc-t2", line("/other", 200));
        let all = lines("acc-t1", StatusFilter::All, 0, usize::MAX);
        assert_eq!(all.len(), LINES_PER_SERVICE, "bounded per service");
        assert_eq!(
            all.last().unwrap().path,
            format!("/r{}", LINES_PER_SERVICE + 19)
        );
        let errors = lines("acc-t1", StatusFilter::parse("5xx").unwrap(), 0, 3);
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|l| l.status == 503));
        assert!(
            errors.windows(2).all(|w| w[0].seq < w[1].seq),
            "oldest first"
        );
        let newer = lines("acc-t1", StatusFilter::All, all[all.len() - 2].seq, 10);
        assert_eq!(newer.len(), 1);
        let json = serde_json::to_value(&newer[0]).unwrap();
        assert!(json.get("instance").is_none() && json.get("reason").is_none());
        forget("acc-t1");
        assert!(lines("acc-t1", StatusFilter::All, 0, 10).is_empty());
        assert_eq!(lines("acc-t2", StatusFilter::All, 0, 10).len(), 1);
    }

    #[test]
    fn status_filters_parse_and_refuse() {
        assert_eq!(StatusFilter::parse("4xx"), Ok(StatusFilter::Class(4)));
        assert_eq!(StatusFilter::parse("404"), Ok(StatusFilter::Code(404)));
        assert_eq!(StatusFilter::parse("errors"), Ok(StatusFilter::Errors));
        for bad in ["9xx", "abc", "42", "xx"] {
            let e = StatusFilter::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
