//! The instances one engine connection watches, by id (a container's, or a swarm service's):
//! where their exit notices go, and whether wakeway itself is stopping them.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

struct Watched {
    name: String,
    exited: watch::Sender<Option<String>>,
    /// It ran: from now on, not running is an exit (swarm tasks take a while to run).
    running: bool,
    /// wakeway is stopping it: the stop path removes it, not the exit handlers.
    stopping: bool,
}

/// What [`Watchlist::report`] found.
pub(crate) struct Reported {
    pub(crate) name: String,
    /// This was the instance's first exit notice (the first reason wins).
    pub(crate) first: bool,
    pub(crate) stopping: bool,
}

#[derive(Default)]
pub(crate) struct Watchlist(Mutex<HashMap<String, Watched>>);

impl Watchlist {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        self.0.lock().expect("watched lock")
    }

    /// Watches `id` from now on: its exit notices go to the receiver.
    pub(crate) fn watch(&self, id: &str, name: &str) -> watch::Receiver<Option<String>> {
        let (tx, rx) = watch::channel(None);
        self.lock().insert(
            id.to_string(),
            Watched {
                name: name.to_string(),
                exited: tx,
                running: false,
                stopping: false,
            },
        );
        rx
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// The ids of watched instances that ran and that wakeway is not stopping.
    pub(crate) fn running_ids(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, w)| w.running && !w.stopping)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every watched id, with whether wakeway is stopping it.
    pub(crate) fn stopping_by_id(&self) -> Vec<(String, bool)> {
        self.lock()
            .iter()
            .map(|(id, w)| (id.clone(), w.stopping))
            .collect()
    }

    /// Its name and whether wakeway is stopping it, when watched.
    pub(crate) fn stopping(&self, id: &str) -> Option<(bool, String)> {
        self.lock().get(id).map(|w| (w.stopping, w.name.clone()))
    }

    pub(crate) fn mark_running(&self, id: &str) {
        if let Some(w) = self.lock().get_mut(id) {
            w.running = true;
        }
    }

    pub(crate) fn mark_stopping(&self, id: &str) {
        if let Some(w) = self.lock().get_mut(id) {
            w.stopping = true;
        }
    }

    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Sends the exit notice of `id` (the first reason wins) and stops watching it when
    /// `forget` says so. `None` when `id` is not watched.
    pub(crate) fn report(
        &self,
        id: &str,
        reason: impl FnOnce(&str) -> String,
        forget: impl FnOnce(&Reported) -> bool,
    ) -> Option<Reported> {
        let mut watched = self.lock();
        let w = watched.get(id)?;
        let reason = reason(&w.name);
        let first = w.exited.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
        let reported = Reported {
            name: w.name.clone(),
            first,
            stopping: w.stopping,
        };
        if forget(&reported) {
            watched.remove(id);
        }
        Some(reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_forgetting_is_the_callers_call() {
        let list = Watchlist::default();
        let rx = list.watch("c1", "wakeway-web-1");
        assert!(list.contains("c1"));
        assert!(list.running_ids().is_empty(), "not running yet");
        list.mark_running("c1");
        assert_eq!(list.running_ids(), ["c1"]);
        let r = list
            .report("c1", |name| format!("{name} died"), |_| false)
            .unwrap();
        assert!(r.first && !r.stopping);
        let again = list
            .report("c1", |_| "removed".into(), |r| !r.first)
            .unwrap();
        assert!(!again.first);
        assert_eq!(rx.borrow().as_deref(), Some("wakeway-web-1 died"));
        assert!(!list.contains("c1"), "forgotten");
        assert!(list.report("c1", |_| "x".into(), |_| true).is_none());
    }

    #[test]
    fn an_instance_being_stopped_is_not_running_for_the_exit_poll() {
        let list = Watchlist::default();
        let _rx = list.watch("s1", "svc");
        list.mark_running("s1");
        list.mark_stopping("s1");
        assert!(list.running_ids().is_empty());
        assert_eq!(list.stopping("s1"), Some((true, "svc".to_string())));
        assert_eq!(list.stopping_by_id(), [("s1".to_string(), true)]);
    }
}
