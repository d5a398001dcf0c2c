//! How exits are noticed: the local engine's container events (a task killed on the manager's
//! own node leaves the pool at once) and a poll of every task (exits on other nodes, a node that
//! died, events missed while the stream was down).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{EventMessage, Task};
use bollard::query_parameters::{EventsOptions, ListTasksOptions};
use futures_util::StreamExt;

use super::engine::SwarmEngine;
use super::spec::{self, TaskView};
use crate::runtime::RuntimeError;
use crate::runtime::engine::client::{
    EVENTS_BACKOFF_MAX, EVENTS_BACKOFF_MIN, QUICK_TIMEOUT, unix_now_nanos,
};
use crate::runtime::engine::labels::{SWARM_SERVICE_ID_LABEL, exit_reason, scope_filter};

/// How often tasks are listed to notice exits the local event stream cannot show (tasks on
/// other nodes, a node that died).
const TASK_POLL: Duration = Duration::from_secs(1);

impl SwarmEngine {
    /// Container events of this scope (exits on the manager's own node, at once) and a task
    /// poll (exits anywhere, and those missed while the stream was down), until `close`.
    pub(super) async fn follow(self: Arc<Self>) {
        let mut backoff = EVENTS_BACKOFF_MIN;
        let mut down_logged = false;
        let mut since = unix_now_nanos().saturating_sub(1_000_000_000);
        loop {
            let docker = match self.client().await {
                Ok(d) => d.clone(),
                Err(e) => {
                    if !down_logged {
                        tracing::error!("{e}; swarm services answer 503 until it is back");
                        down_logged = true;
                    }
                    if self.pause(&mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            let filters = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("label".to_string(), scope_filter(&self.cfg.scope)),
                ("event".to_string(), vec!["die".into(), "oom".into()]),
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
            let mut poll = tokio::time::interval(TASK_POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = self.stop_events.cancelled() => return,
                    item = stream.next() => match item {
                        Some(Ok(ev)) => {
                            backoff = EVENTS_BACKOFF_MIN;
                            if let Some(t) = ev.time_nano {
                                since = since.max(t.max(0) as u64);
                            }
                            self.on_event(ev);
                        }
                        Some(Err(e)) => {
                            tracing::warn!("swarm: event stream from {} failed: {e}; reconnecting", self.endpoint);
                            break;
                        }
                        None => {
                            tracing::warn!("swarm: event stream from {} ended; reconnecting", self.endpoint);
                            break;
                        }
                    },
                    _ = poll.tick() => match self.poll_tasks(&docker).await {
                        Ok(()) => {
                            if down_logged {
                                tracing::info!("swarm manager at {} is reachable again", self.endpoint);
                                down_logged = false;
                            }
                        }
                        Err(e) => {
                            if !down_logged {
                                tracing::error!("{e}; swarm services answer 503 until it is back");
                                down_logged = true;
                            }
                            break;
                        }
                    },
                }
            }
            if self.pause(&mut backoff).await {
                return;
            }
        }
    }

    async fn pause(&self, backoff: &mut Duration) -> bool {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(EVENTS_BACKOFF_MAX);
        tokio::select! {
            _ = self.stop_events.cancelled() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }

    fn on_event(self: &Arc<Self>, ev: EventMessage) {
        let Some(actor) = ev.actor else { return };
        let attrs = actor.attributes.unwrap_or_default();
        let Some(service_id) = attrs.get(SWARM_SERVICE_ID_LABEL) else {
            return;
        };
        let container = attrs.get("name").cloned().unwrap_or_default();
        match ev.action.as_deref() {
            Some("oom") => self.report_exit(
                service_id,
                |_| {
                    format!(
                        "container {container} ran out of memory (its memory limit) and was killed"
                    )
                },
                false,
            ),
            Some("die") => {
                let code = attrs.get("exitCode").and_then(|c| c.parse().ok());
                self.report_exit(service_id, |_| exit_reason(&container, code), false);
            }
            _ => {}
        }
    }

    /// Reports every running instance whose task is no longer running.
    async fn poll_tasks(self: &Arc<Self>, docker: &Docker) -> Result<(), RuntimeError> {
        let ids: Vec<String> = self
            .watched
            .lock()
            .expect("watched lock")
            .iter()
            .filter(|(_, w)| w.running && !w.stopping)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let opts = ListTasksOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                scope_filter(&self.cfg.scope),
            )])),
        };
        let tasks = tokio::time::timeout(QUICK_TIMEOUT, docker.list_tasks(Some(opts)))
            .await
            .map_err(|_| self.unreachable(format!("no answer within {QUICK_TIMEOUT:?}")))?
            .map_err(|e| self.api_error("list tasks", e))?;
        let mut by_service: HashMap<&str, Vec<Task>> = HashMap::new();
        for t in &tasks {
            if let Some(s) = t.service_id.as_deref() {
                by_service.entry(s).or_default().push(t.clone());
            }
        }
        for id in ids {
            let mine = by_service
                .get(id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            match spec::current_task(mine) {
                None => {
                    self.report_exit(&id, |name| format!("swarm service {name} is gone"), false)
                }
                Some(task) => {
                    if let TaskView::Ended(why) = spec::read_task(task) {
                        self.report_exit(&id, |name| format!("swarm service {name}: {why}"), false);
                    }
                }
            }
        }
        Ok(())
    }
}
