//! The event log: what the control loops decided and why, in a bounded ring that `/v1/events`
//! serves. Never touched by the request path.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

const CAPACITY: usize = 2000;

/// Kinds that report something gone wrong: logged at WARN, and `"level": "warn"` in the API.
pub const WARN_KINDS: &[&str] = &[
    "adopt_failed",
    "certificate_failed",
    "certificate_rejected",
    "deploy_failed",
    "drain_timeout",
    "freeze_failed",
    "instance_unhealthy",
    "rollout_halted",
    "start_failed",
    "thaw_failed",
    "traffic_invalid",
];

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub service: String,
    pub kind: &'static str,
    /// `info`, or `warn` for the [`WARN_KINDS`].
    pub level: &'static str,
    pub message: String,
    /// Inputs of the decision (instance id, stable average, bound that clamped, ...).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

pub struct EventLog {
    ring: Mutex<Ring>,
    /// What time an event happened at: the wall clock, or `wakeway replay`'s virtual one.
    clock: Clock,
    capacity: usize,
}

type Clock = Box<dyn Fn() -> SystemTime + Send + Sync>;

struct Ring {
    next_seq: u64,
    events: VecDeque<Event>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            ring: Mutex::new(Ring {
                next_seq: 1,
                events: VecDeque::with_capacity(CAPACITY),
            }),
            clock: Box::new(SystemTime::now),
            capacity: CAPACITY,
        }
    }
}

impl EventLog {
    /// A log whose events are stamped by `clock` and that keeps up to `capacity` of them:
    /// `wakeway replay` runs the controllers on virtual time and keeps every decision.
    pub fn with_clock(
        clock: impl Fn() -> SystemTime + Send + Sync + 'static,
        capacity: usize,
    ) -> EventLog {
        EventLog {
            clock: Box::new(clock),
            capacity,
            ..EventLog::default()
        }
    }

    /// Records an event and mirrors it to the log.
    pub fn emit(
        &self,
        service: &str,
        kind: &'static str,
        message: impl Into<String>,
        fields: Value,
    ) {
        let message = message.into();
        let fields = match fields {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("detail".into(), other);
                m
            }
        };
        let level = if WARN_KINDS.contains(&kind) {
            tracing::warn!(target: "wakeway::events", service, kind, "{message}");
            "warn"
        } else {
            tracing::info!(target: "wakeway::events", service, kind, "{message}");
            "info"
        };
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.events.len() >= self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(Event {
            seq,
            time: rfc3339((self.clock)()),
            service: service.to_string(),
            kind,
            level,
            message,
            fields,
        });
    }

    /// Events oldest first, optionally of one service and after a sequence number.
    pub fn list(&self, service: Option<&str>, after: u64) -> Vec<Event> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.events
            .iter()
            .filter(|e| e.seq > after && service.is_none_or(|s| e.service == s))
            .cloned()
            .collect()
    }
}

/// Formats a time as RFC 3339 UTC with milliseconds, without pulling a date crate in.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31): Howard Hinnant's days-to-civil.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_199_123);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.123Z");
    }

    #[test]
    fn ring_is_bounded_and_filters() {
        let log = EventLog::default();
        for i in 0..CAPACITY + 10 {
            let svc = if i % 2 == 0 { "a" } else { "b" };
            log.emit(svc, "test", format!("{i}"), Value::Null);
        }
        let all = log.list(None, 0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all.last().unwrap().seq, (CAPACITY + 10) as u64);
        assert!(log.list(Some("a"), 0).iter().all(|e| e.service == "a"));
    }
}
