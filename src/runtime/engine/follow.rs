//! Following an engine's container events until wakeway closes, whatever the instances are:
//! reconnecting with backoff while the engine is away (instances keep serving meanwhile), and
//! looking at every watched instance on each reconnection so an exit missed meanwhile is still
//! reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;

use super::backend::Backend;
use super::client::{EVENTS_BACKOFF_MAX, EVENTS_BACKOFF_MIN, unix_now_nanos};
use super::connection::EngineCore;
use super::labels::scope_labels;
use crate::runtime::RuntimeError;

/// What a container event says of an exit.
pub(crate) enum Exit {
    /// Killed for its memory limit (a `die` follows).
    OutOfMemory,
    Died(Option<i64>),
    Destroyed,
}

/// A container event's actor id, attributes and what it says of an exit.
pub(crate) fn read_event(ev: EventMessage) -> Option<(String, HashMap<String, String>, Exit)> {
    let actor = ev.actor?;
    let attrs = actor.attributes.unwrap_or_default();
    let exit = match ev.action.as_deref()? {
        "oom" => Exit::OutOfMemory,
        "die" => Exit::Died(attrs.get("exitCode").and_then(|c| c.parse().ok())),
        "destroy" => Exit::Destroyed,
        _ => return None,
    };
    Some((actor.id?, attrs, exit))
}

pub(crate) fn out_of_memory(container: &str) -> String {
    format!("container {container} ran out of memory (its memory limit) and was killed")
}

/// Follows `F::EVENTS` of the scope's containers until the core's `close`.
pub(crate) async fn follow<F: Backend>(this: Arc<F>) {
    let core: &EngineCore = &this;
    let runtime = core.naming.runtime;
    let mut backoff = EVENTS_BACKOFF_MIN;
    let mut down = Down::default();
    // Replaying from just before the connection covers an instance that dies while the stream
    // is being set up; duplicates are harmless (the first reason wins).
    let mut since = unix_now_nanos().saturating_sub(1_000_000_000);
    loop {
        let docker = match this.ready_client().await {
            Ok(d) => d,
            Err(e) => {
                down.went(core, &e);
                if pause(core, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), scope_labels(&core.scope)),
            (
                "event".to_string(),
                F::EVENTS.iter().map(|e| e.to_string()).collect(),
            ),
        ]);
        let opts = EventsOptions {
            since: Some(format!(
                "{}.{:09}",
                since / 1_000_000_000,
                since % 1_000_000_000
            )),
            until: None,
            filters: Some(filters),
        };
        let mut stream = docker.events(Some(opts));
        match this.recheck(&docker).await {
            Ok(()) => down.back(core),
            Err(e) => {
                down.went(core, &e);
                if pause(core, &mut backoff).await {
                    return;
                }
                continue;
            }
        }
        let mut recheck = F::RECHECK_EVERY.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let tick = async {
                match recheck.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = core.stop_events.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(ev)) => {
                        backoff = EVENTS_BACKOFF_MIN;
                        if let Some(t) = ev.time_nano {
                            since = since.max(t.max(0) as u64);
                        }
                        this.on_event(ev);
                    }
                    Some(Err(e)) => {
                        tracing::warn!("{runtime}: event stream from {} failed: {e}; reconnecting", core.endpoint);
                        break;
                    }
                    None => {
                        tracing::warn!("{runtime}: event stream from {} ended; reconnecting", core.endpoint);
                        break;
                    }
                },
                _ = tick => match this.recheck(&docker).await {
                    Ok(()) => down.back(core),
                    Err(e) => {
                        down.went(core, &e);
                        break;
                    }
                },
            }
        }
        if pause(core, &mut backoff).await {
            return;
        }
    }
}

/// Logs an outage once when it begins and once when it ends.
#[derive(Default)]
struct Down(bool);

impl Down {
    fn went(&mut self, core: &EngineCore, e: &RuntimeError) {
        if !self.0 {
            tracing::error!(
                "{e}; {} services answer 503 until it is back",
                core.naming.runtime
            );
            self.0 = true;
        }
    }

    fn back(&mut self, core: &EngineCore) {
        if self.0 {
            tracing::info!(
                "{} at {} is reachable again",
                core.naming.who,
                core.endpoint
            );
            self.0 = false;
        }
    }
}

/// Sleeps the backoff (doubling it); true when `close` was called meanwhile.
async fn pause(core: &EngineCore, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(EVENTS_BACKOFF_MAX);
    tokio::select! {
        _ = core.stop_events.cancelled() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}
