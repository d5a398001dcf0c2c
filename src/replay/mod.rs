//! `wakeway replay`: runs a recorded access log through one or more configs, on virtual time,
//! with the same autoscaler, reconciler, idle timer, queue and traffic split `wakeway run` uses
//! (each service's real controller, on a simulated runtime), and says what each config would
//! have done: cold starts, waits, refusals, instances and instance-seconds.
//!
//! The whole replay runs in one current-thread tokio runtime with paused time: when every task
//! waits, the clock jumps to the next timer, so a day of traffic takes seconds.

mod measure;
mod reader;
mod report;
mod sim;
mod stats;
mod world;

use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::config::Config;
use crate::events::Event;
pub use reader::{Malformed, parse_line, parse_rfc3339};
pub use report::{Figures, Row, text};
use stats::Stats;
use world::{Hold, World};

/// The cold-start time of a service whose log has none and no `--cold-start` was given.
pub const DEFAULT_COLD_START: Duration = Duration::from_secs(1);

pub struct Options {
    pub log: PathBuf,
    /// Each config with the path it was given as.
    pub configs: Vec<(String, Config)>,
    /// Replay this service only.
    pub service: Option<String>,
    /// Overrides every service's measured cold-start time.
    pub cold_start: Option<Duration>,
    /// Keep every decision for `Outcome::events`.
    pub events: bool,
}

pub struct Outcome {
    /// One per config and service, in the configs' order.
    pub rows: Vec<Row>,
    /// Each config's decisions, when asked for.
    pub events: Vec<(String, Vec<Event>)>,
    pub lines: u64,
    pub malformed: Malformed,
    /// Things a reader of the numbers should know (an assumed cold-start time, a service a
    /// config lacks, lines replayed late).
    pub notes: Vec<String>,
}

/// Replays the log through every config. Fails only when the log cannot be read or has no
/// usable line; bad lines are counted in the outcome.
pub fn run(opts: &Options) -> Result<Outcome, String> {
    let open = || {
        File::open(&opts.log)
            .map(|f| BufReader::with_capacity(256 * 1024, f))
            .map_err(|e| format!("cannot read {}: {e}", opts.log.display()))
    };
    let read_err = |e: std::io::Error| format!("cannot read {}: {e}", opts.log.display());
    let measured = measure::cold_starts(open()?).map_err(read_err)?;
    let mut reader = reader::Reader::new(open()?);
    let first = reader.next_request().map_err(read_err)?;
    let Some(first) = first else {
        return Err(no_usable_line(&opts.log, &reader));
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start the replay runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let cold_start = |name: &str| {
            opts.cold_start
                .or_else(|| measured.get(name).and_then(|m| m.median()))
                .unwrap_or(DEFAULT_COLD_START)
        };
        // The controllers start a lead-in before the first request, so `min_instances` are up
        // when it comes, as they were in the run that wrote the log.
        let lead = opts
            .configs
            .iter()
            .flat_map(|(_, c)| c.services.iter().map(|s| cold_start(&s.name)))
            .max()
            .unwrap_or_default()
            + Duration::from_secs(1);
        let began = Instant::now();
        let window_start = began + lead;
        let log_start = UNIX_EPOCH + Duration::from_micros(first.arrival.max(0) as u64);
        let mut worlds: Vec<World> = opts
            .configs
            .iter()
            .map(|(label, config)| {
                let clock = move || {
                    (log_start + Instant::now().saturating_duration_since(began))
                        .checked_sub(lead)
                        .unwrap_or(SystemTime::UNIX_EPOCH)
                };
                World::start(
                    label.clone(),
                    config.clone(),
                    opts.service.as_deref(),
                    &cold_start,
                    window_start,
                    clock,
                    opts.events,
                )
            })
            .collect();
        let mut recorded: Vec<Stats> = Vec::new();
        feed(
            &mut reader,
            first,
            &mut worlds,
            &mut recorded,
            window_start,
            opts.service.as_deref(),
        )
        .await
        .map_err(read_err)?;
        settle(&mut worlds).await;
        Ok(outcome(opts, &reader, worlds, recorded, &measured))
    })
}

fn no_usable_line<R>(log: &Path, reader: &reader::Reader<R>) -> String {
    let mut e = format!(
        "{}: no usable line in {} line(s)",
        log.display(),
        reader.lines()
    );
    if let Some((line, why)) = reader.malformed.first.first() {
        e.push_str(&format!("; line {line}: {why}"));
    } else if reader.unrouted > 0 {
        e.push_str(": every line has `\"service\": null` (no service matched its host)");
    }
    e
}

/// Hands each request to every config at its arrival time (relative to the first) and ends each
/// held slot when its service time is over, until the log and the slots are done.
async fn feed<R: std::io::BufRead>(
    reader: &mut reader::Reader<R>,
    first: reader::Request,
    worlds: &mut [World],
    recorded: &mut Vec<Stats>,
    window_start: Instant,
    only: Option<&str>,
) -> std::io::Result<()> {
    let log_start = first.arrival;
    let at =
        |arrival: i64| window_start + Duration::from_micros((arrival - log_start).max(0) as u64);
    let mut holds: BinaryHeap<Hold> = BinaryHeap::new();
    let mut next = Some(first);
    let mut seq = 0u64;
    loop {
        let arrival = next.as_ref().map(|r| at(r.arrival));
        let release = holds.peek().map(|h| h.end);
        match (arrival, release) {
            (None, None) => return Ok(()),
            (_, Some(end)) if arrival.is_none_or(|a| end <= a) => {
                sleep_to(end).await;
                let now = Instant::now();
                while holds.peek().is_some_and(|h| h.end <= now) {
                    holds.pop();
                }
            }
            (Some(a), _) => {
                sleep_to(a).await;
                let req = next.take().expect("a request is next");
                let name = reader.services[req.service as usize].as_str();
                if only.is_none_or(|s| s == name) {
                    record(recorded, &req);
                    let mut queued = false;
                    for w in worlds.iter_mut() {
                        seq += 1;
                        queued |= w.dispatch(&req, name, &mut holds, seq);
                    }
                    if queued {
                        // A request that waits wakes its controller: let it act before the
                        // next request, as it would between two real ones.
                        tokio::task::yield_now().await;
                    }
                }
                next = reader.next_request()?;
            }
            _ => unreachable!("no arrival means a release is due"),
        }
    }
}

fn record(recorded: &mut Vec<Stats>, req: &reader::Request) {
    let k = req.service as usize;
    if recorded.len() <= k {
        recorded.resize_with(k + 1, Stats::default);
    }
    let r = &mut recorded[k];
    r.requests += 1;
    if let Some(status) = req.refused {
        r.refused_status(status);
    } else {
        r.served(req.waited, req.cold);
    }
}

async fn sleep_to(t: Instant) {
    if t > Instant::now() {
        tokio::time::sleep_until(t).await;
    }
}

/// After the log: every service runs on until it is back at its floor (idle instances drained
/// and stopped), or for its longest possible tail, so the last requests' instances are counted
/// as they would have run.
async fn settle(worlds: &mut [World]) {
    let horizon = worlds
        .iter()
        .map(World::settle_horizon)
        .max()
        .unwrap_or_default();
    let deadline = Instant::now() + horizon;
    loop {
        let mut all = true;
        for w in worlds.iter_mut() {
            all &= w.settle();
        }
        if all || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn outcome<R>(
    opts: &Options,
    reader: &reader::Reader<R>,
    worlds: Vec<World>,
    mut recorded: Vec<Stats>,
    measured: &HashMap<String, measure::ColdStarts>,
) -> Outcome {
    let end = Instant::now();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut events = Vec::new();
    for w in &worlds {
        for (k, name) in reader.services.iter().enumerate() {
            let Some(sim) = w.sim_for(k as u32) else {
                let skipped = w.skipped.get(k).copied().unwrap_or(0);
                if skipped > 0 {
                    notes.push(format!(
                        "{}: no service `{name}`; its {skipped} request(s) were not replayed",
                        w.label
                    ));
                }
                continue;
            };
            let rec = recorded
                .get_mut(k)
                .map(|r| Figures::new(r, measured.get(name).map_or(0, |m| m.starts.len() as u64)));
            rows.push(Row::new(
                &w.label,
                sim,
                sim.settled_at.unwrap_or(end),
                rec.unwrap_or_default(),
            ));
        }
        for name in &w.unscaled {
            notes.push(format!(
                "{}: `{name}` has static upstreams: nothing to scale, not replayed",
                w.label
            ));
        }
        if opts.events {
            events.push((w.label.clone(), w.events.list(None, 0)));
        }
    }
    if opts.cold_start.is_none() {
        for name in &reader.services {
            if !measured.contains_key(name) && rows.iter().any(|r| &r.service == name) {
                notes.push(format!(
                    "`{name}`: the log has no cold start to measure; assumed {:?} (set --cold-start)",
                    DEFAULT_COLD_START
                ));
            }
        }
    }
    if reader.late > 0 {
        notes.push(format!(
            "{} line(s) were further out of order than the reorder buffer allows and were replayed late",
            reader.late
        ));
    }
    Outcome {
        rows,
        events,
        lines: reader.lines(),
        malformed: reader.malformed.clone(),
        notes,
    }
}
