//! The simulated runtime replay runs a service's real controller against: an instance starts at
//! once, answers its probe after the service's cold-start time, and stops when asked. Nothing is
//! spawned and nothing listens; it counts what the instances would have cost.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::runtime::{BoxFuture, InstanceHandle, InstanceSpec, Runtime, RuntimeError, Started};
use crate::service::controller::Prober;

struct Live {
    ready_at: Instant,
    since: Instant,
    exit: watch::Sender<Option<String>>,
}

struct Table {
    live: HashMap<SocketAddr, Live>,
    next: u32,
    started: u64,
    peak: u32,
    /// Instance time of the instances already stopped, within the window.
    spent: Duration,
    /// Instance time counts from here (the log's first request), not from the lead-in.
    window_start: Instant,
}

/// One service's simulated instances and what they cost.
#[derive(Clone)]
pub struct SimRuntime {
    table: Arc<Mutex<Table>>,
    cold_start: Duration,
}

/// What a service's instances did over the replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub started: u64,
    pub peak: u32,
    pub instance_seconds: f64,
}

impl SimRuntime {
    pub fn new(cold_start: Duration, window_start: Instant) -> SimRuntime {
        SimRuntime {
            table: Arc::new(Mutex::new(Table {
                live: HashMap::new(),
                next: 0,
                started: 0,
                peak: 0,
                spent: Duration::ZERO,
                window_start,
            })),
            cold_start,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// Instances that run now (starting or ready).
    pub fn alive(&self) -> usize {
        self.table().live.len()
    }

    /// The usage up to `end`, counting the instances still running as running until then.
    pub fn usage(&self, end: Instant) -> Usage {
        let t = self.table();
        let running: Duration = t
            .live
            .values()
            .map(|l| end.saturating_duration_since(l.since.max(t.window_start)))
            .sum();
        Usage {
            started: t.started,
            peak: t.peak,
            instance_seconds: (t.spent + running).as_secs_f64(),
        }
    }

    /// The controller's probe: an instance answers once its cold start is over. A probe of a
    /// starting instance waits for that moment instead of failing, so a start takes exactly
    /// the cold-start time (the controller's `startup_timeout` still bounds it).
    pub fn prober(&self) -> Prober {
        let table = self.table.clone();
        Arc::new(move |addr, _| {
            let ready_at = lock(&table).live.get(&addr).map(|l| l.ready_at);
            Box::pin(async move {
                let Some(at) = ready_at else {
                    return Err(format!("connect {addr}: connection refused"));
                };
                tokio::time::sleep_until(at).await;
                Ok(())
            })
        })
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runtime for SimRuntime {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn start(&self, _spec: InstanceSpec) -> BoxFuture<'_, Result<Started, RuntimeError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut t = self.table();
            t.next += 1;
            // 10.0.0.0/8 holds 16 million instances, each its own address.
            let address = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + t.next), 80));
            let (exit, exited) = watch::channel(None);
            t.live.insert(
                address,
                Live {
                    ready_at: now + self.cold_start,
                    since: now,
                    exit,
                },
            );
            t.started += 1;
            t.peak = t.peak.max(t.live.len() as u32);
            Ok(Started {
                address,
                pid: None,
                exited,
                handle: Box::new(SimHandle {
                    table: self.table.clone(),
                    address,
                }),
            })
        })
    }
}

struct SimHandle {
    table: Arc<Mutex<Table>>,
    address: SocketAddr,
}

impl InstanceHandle for SimHandle {
    fn stop(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let now = Instant::now();
            let mut t = lock(&self.table);
            if let Some(l) = t.live.remove(&self.address) {
                let ran = now.saturating_duration_since(l.since.max(t.window_start));
                t.spent += ran;
                l.exit.send_replace(Some("stopped".into()));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            service: "web".into(),
            revision: "web-00001".into(),
            instance: "web-00001-a".into(),
            env: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ready_after_the_cold_start_and_counted_until_stopped() {
        let t0 = Instant::now();
        let rt = SimRuntime::new(Duration::from_millis(1200), t0);
        let started = rt.start(spec()).await.unwrap();
        let probe = rt.prober();
        probe(started.address, Default::default()).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_millis(1200));
        tokio::time::sleep(Duration::from_millis(800)).await;
        started.handle.stop(Duration::ZERO).await;
        assert_eq!(started.exited.borrow().as_deref(), Some("stopped"));
        let u = rt.usage(Instant::now());
        assert_eq!((u.started, u.peak, rt.alive()), (1, 1, 0));
        assert!((u.instance_seconds - 2.0).abs() < 1e-9, "{u:?}");
    }
}
