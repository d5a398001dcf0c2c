//! `wakeway replay`: loads the configs as `wakeway check` does, replays the log through them and
//! prints the comparison (a table, or JSON for scripts) and, when asked, each config's decisions.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use wakeway::client::{EVENT_HEADER, format_event};
use wakeway::config;
use wakeway::replay::{self, Options};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The access log: wakeway's JSON lines (or its `combined` lines), read as it streams.
    pub log: PathBuf,
    /// A config to replay the log through; repeat it to compare (`-c proposed.toml -c
    /// current.toml`).
    #[arg(short, long, required = true)]
    pub config: Vec<PathBuf>,
    /// Replay one service only.
    #[arg(long)]
    pub service: Option<String>,
    /// `text`: a table, configs side by side; `json`: an array, one object per config and
    /// service.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also print every decision each config took, as `wakeway events` shows them.
    #[arg(long)]
    pub events: bool,
    /// How long an instance takes to become ready, e.g. 1.2s; by default measured from the
    /// log's cold starts.
    #[arg(long, value_parser = config::parse_duration)]
    pub cold_start: Option<Duration>,
}

pub fn replay(args: Args) -> ExitCode {
    let mut configs = Vec::new();
    for path in &args.config {
        match config::load(path) {
            Ok(c) => configs.push((path.display().to_string(), c)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(s) = &args.service
        && !configs
            .iter()
            .any(|(_, c)| c.services.iter().any(|sc| &sc.name == s))
    {
        eprintln!("error: --service {s}: no config given has a service of that name");
        return ExitCode::FAILURE;
    }
    let opts = Options {
        log: args.log.clone(),
        configs,
        service: args.service,
        cold_start: args.cold_start,
        events: args.events,
    };
    let outcome = match replay::run(&opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let m = &outcome.malformed;
    if m.count > 0 {
        eprintln!(
            "{}: {} of {} line(s) malformed and skipped:",
            args.log.display(),
            m.count,
            outcome.lines
        );
        for (line, why) in &m.first {
            eprintln!("  line {line}: {why}");
        }
        if m.count > m.first.len() as u64 {
            eprintln!("  ...");
        }
    }
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    match args.format {
        Format::Text => {
            if args.events {
                for (config, events) in &outcome.events {
                    println!("events under {config}:");
                    println!("{EVENT_HEADER}");
                    for e in events {
                        println!(
                            "{}",
                            format_event(&serde_json::to_value(e).unwrap_or_default())
                        );
                    }
                    println!();
                }
            }
            print!("{}", replay::text(&outcome.rows));
        }
        Format::Json => {
            let rows: Vec<Value> = outcome
                .rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    if let (true, Some(obj)) = (args.events, v.as_object_mut()) {
                        let events = outcome
                            .events
                            .iter()
                            .filter(|(c, _)| *c == r.config)
                            .flat_map(|(_, es)| es.iter().filter(|e| e.service == r.service))
                            .map(|e| serde_json::to_value(e).unwrap_or_default())
                            .collect();
                        obj.insert("events".into(), Value::Array(events));
                    }
                    v
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).expect("rows serialize")
            );
        }
    }
    ExitCode::SUCCESS
}
