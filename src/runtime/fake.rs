//! A runtime for controller unit tests on paused time: instances are entries in a table, ready
//! after a planned delay, and exit when stopped or killed. Nothing is spawned and nothing listens;
//! the tests' prober asks this table instead of connecting.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{BoxFuture, InstanceHandle, InstanceSpec, Runtime, RuntimeError, Started};

/// What the next start does.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Starts, and passes its probe after this long.
    ReadyAfter(Duration),
    /// The runtime refuses to start it.
    Fail(String),
    /// Starts and never passes a probe.
    NeverReady,
}

pub struct FakeInstance {
    pub id: String,
    pub address: SocketAddr,
    ready_at: Option<Instant>,
    alive: bool,
    frozen: bool,
    exit: watch::Sender<Option<String>>,
}

#[derive(Default)]
struct Table {
    plans: VecDeque<Plan>,
    instances: Vec<FakeInstance>,
    next_port: u16,
    /// What each instance reports holding, in bytes.
    memory: u64,
    /// The next thaw fails.
    fail_thaw: bool,
}

#[derive(Default, Clone)]
pub struct FakeRuntime {
    table: Arc<Mutex<Table>>,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plans the next start; with no plan left, a start is ready after 10 ms.
    pub fn plan(&self, plan: Plan) {
        self.table().plans.push_back(plan);
    }

    /// Ids of the instances that run now.
    pub fn alive(&self) -> Vec<String> {
        self.table()
            .instances
            .iter()
            .filter(|i| i.alive)
            .map(|i| i.id.clone())
            .collect()
    }

    /// Ids of the instances frozen now.
    pub fn frozen(&self) -> Vec<String> {
        self.table()
            .instances
            .iter()
            .filter(|i| i.alive && i.frozen)
            .map(|i| i.id.clone())
            .collect()
    }

    /// Each instance reports holding `bytes` of memory.
    pub fn set_memory(&self, bytes: u64) {
        self.table().memory = bytes;
    }

    /// The next thaw fails, as a container removed behind wakeway's back would.
    pub fn fail_next_thaw(&self) {
        self.table().fail_thaw = true;
    }

    /// How many instances were ever started.
    pub fn started(&self) -> usize {
        self.table().instances.len()
    }

    /// The instance dies on its own (a crash, `kill -9`).
    pub fn kill(&self, id: &str) {
        let mut t = self.table();
        for i in t.instances.iter_mut().filter(|i| i.id == id && i.alive) {
            i.alive = false;
            i.exit.send_replace(Some("killed".into()));
        }
    }

    /// A probe: passes once the instance at `addr` is alive and past its start delay.
    pub fn probe(&self, addr: SocketAddr) -> Result<(), String> {
        let t = self.table();
        match t.instances.iter().find(|i| i.address == addr) {
            Some(i) if i.alive && i.frozen => Err(format!("connect {addr}: timed out (frozen)")),
            Some(i) if i.alive && i.ready_at.is_some_and(|r| Instant::now() >= r) => Ok(()),
            Some(i) if i.alive => Err(format!("connect {addr}: connection refused (starting)")),
            _ => Err(format!("connect {addr}: connection refused")),
        }
    }
}

struct FakeHandle {
    table: Arc<Mutex<Table>>,
    address: SocketAddr,
}

impl FakeHandle {
    fn set_frozen(&self, frozen: bool) -> Result<(), RuntimeError> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if !frozen && std::mem::take(&mut t.fail_thaw) {
            return Err(RuntimeError {
                message: "thaw failed (planned)".into(),
                retryable: false,
            });
        }
        for i in t.instances.iter_mut().filter(|i| i.address == self.address) {
            i.frozen = frozen;
        }
        Ok(())
    }
}

impl InstanceHandle for FakeHandle {
    fn freeze(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move { self.set_frozen(true) })
    }

    fn thaw(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move { self.set_frozen(false) })
    }

    fn memory(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move { Some(self.table.lock().unwrap_or_else(|p| p.into_inner()).memory) })
    }

    fn stop(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            for i in t
                .instances
                .iter_mut()
                .filter(|i| i.address == self.address && i.alive)
            {
                i.alive = false;
                i.exit.send_replace(Some("stopped".into()));
            }
        })
    }
}

impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, RuntimeError>> {
        Box::pin(async move {
            let mut t = self.table();
            let plan = t
                .plans
                .pop_front()
                .unwrap_or(Plan::ReadyAfter(Duration::from_millis(10)));
            let ready_at = match plan {
                Plan::ReadyAfter(d) => Some(Instant::now() + d),
                Plan::NeverReady => None,
                Plan::Fail(message) => {
                    return Err(RuntimeError {
                        message,
                        retryable: false,
                    });
                }
            };
            t.next_port += 1;
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000 + t.next_port));
            let (exit, exited) = watch::channel(None);
            t.instances.push(FakeInstance {
                id: spec.instance,
                address,
                ready_at,
                alive: true,
                frozen: false,
                exit,
            });
            Ok(Started {
                address,
                pid: None,
                exited,
                handle: Box::new(FakeHandle {
                    table: self.table.clone(),
                    address,
                }),
            })
        })
    }
}
