//! A service's cold-start time as its log recorded it. Every request that waited for its
//! revision's first instance says so (`cold_start`) with how long it waited (`queue_ms`); the
//! requests that waited for one start form a group, and the first of them (the one that found
//! the service at zero) waited for the whole start. The measured time is the median over the
//! starts, so one slow start (a cold image cache) does not set it.

use std::collections::HashMap;
use std::io::BufRead;
use std::time::Duration;

use super::reader::parse_line;

/// What the log says about one service's cold starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColdStarts {
    /// Each start's duration (its first waiter's wait), in arrival order.
    pub starts: Vec<Duration>,
}

impl ColdStarts {
    /// The median start, or `None` when the log has no cold start of this service.
    pub fn median(&self) -> Option<Duration> {
        let mut s = self.starts.clone();
        s.sort();
        s.get(s.len().saturating_sub(1) / 2).copied()
    }
}

/// Reads the log once for the cold-start lines only (the others are not parsed), by service.
pub fn cold_starts(input: impl BufRead) -> std::io::Result<HashMap<String, ColdStarts>> {
    // (arrival, wait) of every cold request, by service.
    let mut cold: HashMap<String, Vec<(i64, Duration)>> = HashMap::new();
    for line in input.lines() {
        let line = line?;
        if !says_cold(&line) {
            continue;
        }
        if let Ok(Some(f)) = parse_line(line.trim()) {
            cold.entry(f.service.into_owned())
                .or_default()
                .push((f.arrival, f.waited));
        }
    }
    Ok(cold
        .into_iter()
        .map(|(name, waits)| (name, group(waits)))
        .collect())
}

/// Whether the line's `cold_start` is true (`"cold_start":true`, `"cold_start": true` or
/// `cold_start=true`), without parsing it: most lines say false.
fn says_cold(line: &str) -> bool {
    line.match_indices("cold_start").any(|(at, key)| {
        line[at + key.len()..]
            .trim_start_matches(['"', ':', '=', ' '])
            .starts_with("true")
    })
}

/// Requests that arrived while a start was under way (before its first waiter got a slot)
/// waited for that same start.
fn group(mut waits: Vec<(i64, Duration)>) -> ColdStarts {
    waits.sort();
    let mut starts = Vec::new();
    let mut ready_at = i64::MIN;
    for (arrival, waited) in waits {
        if arrival >= ready_at {
            starts.push(waited);
            ready_at = arrival + waited.as_micros() as i64;
        }
    }
    ColdStarts { starts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_waiter_of_each_start_measures_it() {
        let line = |t: &str, q: u32| {
            format!(
                r#"{{"time":"2025-11-27T08:{t}Z","service":"web","status":200,"duration_ms":{},"queue_ms":{q},"cold_start":true}}"#,
                q + 5
            )
        };
        let log = [
            line("00:00.000", 900),
            line("00:00.500", 400), // waited for the same start
            line("10:00.000", 1100),
            line("20:00.000", 1000),
            r#"{"time":"2025-11-27T08:20:05Z","service":"web","status":200,"duration_ms":3,"queue_ms":0,"cold_start":false}"#.into(),
        ]
        .join("\n");
        let m = cold_starts(log.as_bytes()).unwrap();
        let web = &m["web"];
        assert_eq!(web.starts.len(), 3);
        assert_eq!(web.median(), Some(Duration::from_millis(1000)));
        assert_eq!(ColdStarts::default().median(), None);
        assert!(says_cold(r#"{"cold_start": true}"#) && says_cold("x cold_start=true y"));
        assert!(!says_cold(r#"{"cold_start":false,"path":"/true"}"#));
    }
}
