//! The replay's answer: one row per config and service, printed as a table with the configs
//! side by side (and the log's own figures first), or as JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;
use tokio::time::Instant;

use super::stats::Stats;
use super::world::Sim;

/// A service's figures over the log: as the log itself recorded them, or as a config replays
/// them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: u64,
    /// Starts from zero: no instance was running or starting. Whether the demand path or the
    /// autoscaler's next tick started it is a race (as in a real run); the count is not.
    pub cold_starts: u64,
    pub waited_for_cold_start: u64,
    /// The wait for a slot the config adds, over the served requests.
    pub wait_p50_ms: f64,
    pub wait_p99_ms: f64,
    pub wait_max_ms: f64,
    /// Answered 503 (queue full, start failed) or 504 (queue timeout) by wakeway itself.
    pub refused: u64,
}

impl Figures {
    pub fn new(s: &mut Stats, cold_starts: u64) -> Figures {
        Figures {
            requests: s.requests,
            cold_starts,
            waited_for_cold_start: s.waited_for_cold_start,
            wait_p50_ms: s.wait_ms(0.5),
            wait_p99_ms: s.wait_ms(0.99),
            wait_max_ms: s.wait_max_ms(),
            refused: s.refused_total(),
        }
    }
}

/// One service under one config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The config's path as given.
    pub config: String,
    pub service: String,
    /// What the replay under this config did.
    #[serde(flatten)]
    pub replayed: Figures,
    pub refused_503: u64,
    pub refused_504: u64,
    pub peak_instances: u32,
    pub instance_starts: u64,
    /// Instance time from the log's first request to the service's settling after its last.
    pub instance_seconds: f64,
    /// The cold-start time the simulated runtime used.
    pub cold_start_ms: f64,
    pub recorded: Figures,
}

impl Row {
    pub(super) fn new(config: &str, sim: &Sim, end: Instant, recorded: Figures) -> Row {
        let mut s = sim.stats.borrow_mut();
        let usage = sim.runtime.usage(end);
        Row {
            config: config.to_string(),
            service: sim.svc.name.clone(),
            replayed: Figures::new(&mut s, usage.from_zero),
            refused_503: s.refused_503,
            refused_504: s.refused_504,
            peak_instances: usage.peak,
            instance_starts: usage.started,
            instance_seconds: (usage.instance_seconds * 10.0).round() / 10.0,
            cold_start_ms: sim.cold_start.as_secs_f64() * 1000.0,
            recorded,
        }
    }
}

/// Per service, one column for the log's own figures and one per config.
pub fn text(rows: &[Row]) -> String {
    let mut services: Vec<&str> = Vec::new();
    for r in rows {
        if !services.contains(&r.service.as_str()) {
            services.push(&r.service);
        }
    }
    let mut out = String::new();
    for service in services {
        let cols: Vec<&Row> = rows.iter().filter(|r| r.service == service).collect();
        let rec = &cols[0].recorded;
        let mut table: Vec<Vec<String>> = vec![
            std::iter::once(format!("service {service}"))
                .chain(std::iter::once("recorded".to_string()))
                .chain(cols.iter().map(|r| r.config.clone()))
                .collect(),
        ];
        let mut line = |label: &str, recorded: String, each: &dyn Fn(&Row) -> String| {
            table.push(
                std::iter::once(format!("  {label}"))
                    .chain(std::iter::once(recorded))
                    .chain(cols.iter().map(|r| each(r)))
                    .collect(),
            );
        };
        type Show = fn(&Figures) -> String;
        let figures: [(&str, Show); 5] = [
            ("requests", |f| f.requests.to_string()),
            ("cold starts", |f| f.cold_starts.to_string()),
            ("waited for a cold start", |f| {
                f.waited_for_cold_start.to_string()
            }),
            ("added wait ms p50/p99/max", |f| {
                let (p50, p99, max) = (f.wait_p50_ms, f.wait_p99_ms, f.wait_max_ms);
                format!("{p50:.0} / {p99:.0} / {max:.0}")
            }),
            ("refused (503/504)", |f| f.refused.to_string()),
        ];
        for (label, show) in figures {
            line(label, show(rec), &|r| show(&r.replayed));
        }
        line("peak instances", "-".into(), &|r| {
            r.peak_instances.to_string()
        });
        line("instance starts", "-".into(), &|r| {
            r.instance_starts.to_string()
        });
        line("instance-seconds", "-".into(), &|r| {
            format!("{:.1}", r.instance_seconds)
        });
        line("cold-start time used", "-".into(), &|r| {
            format!("{:.0} ms", r.cold_start_ms)
        });
        let widths: Vec<usize> = (0..table[0].len())
            .map(|c| table.iter().map(|row| row[c].len()).max().unwrap_or(0))
            .collect();
        for row in &table {
            let mut l = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c == 0 {
                    let _ = write!(l, "{cell:<w$}", w = widths[c]);
                } else {
                    let _ = write!(l, "  {cell:>w$}", w = widths[c]);
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(config: &str, cold: u64) -> Row {
        Row {
            config: config.into(),
            service: "web".into(),
            replayed: Figures {
                requests: 10,
                cold_starts: cold,
                waited_for_cold_start: cold,
                wait_p50_ms: 0.0,
                wait_p99_ms: 900.0,
                wait_max_ms: 1000.0,
                refused: 0,
            },
            refused_503: 0,
            refused_504: 0,
            peak_instances: 1,
            instance_starts: cold,
            instance_seconds: 1234.5,
            cold_start_ms: 900.0,
            recorded: Figures {
                requests: 10,
                cold_starts: 3,
                ..Figures::default()
            },
        }
    }

    #[test]
    fn configs_sit_side_by_side() {
        let t = text(&[row("current.toml", 3), row("proposed.toml", 1)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].split_whitespace().eq([
                "service",
                "web",
                "recorded",
                "current.toml",
                "proposed.toml"
            ]),
            "{t}"
        );
        let cold = lines.iter().find(|l| l.contains("cold starts")).unwrap();
        assert!(
            cold.split_whitespace()
                .eq(["cold", "starts", "3", "3", "1"]),
            "{t}"
        );
        assert!(t.contains("900 / 1000"), "{t}");
    }
}
