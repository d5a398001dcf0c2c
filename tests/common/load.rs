//! Steady concurrent load and the samples it records.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use tokio::time::Instant;

use super::{DEADLINE, try_get, wait_for};

/// One finished request of a [`Load`].
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the request was sent (before connecting).
    pub sent: Instant,
    /// The status, or the transport error.
    pub result: Result<StatusCode, String>,
    /// The `Revision:` line of a whoami answer.
    pub revision: Option<String>,
    /// The `Instance:` line of a whoami answer.
    pub instance: Option<String>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.result == Ok(StatusCode::OK)
    }
}

/// Steady concurrent load: `clients` tasks each looping `GET path` until stopped.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, host: &str, path: &str, clients: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, samples) = (stop.clone(), samples.clone());
                let (host, path) = (host.to_string(), path.to_string());
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let sent = Instant::now();
                        let sample = match try_get(addr, &host, &path).await {
                            Ok(r) => Sample {
                                sent,
                                result: Ok(r.status),
                                revision: r.field("Revision"),
                                instance: r.instance(),
                            },
                            Err(e) => Sample {
                                sent,
                                result: Err(e),
                                revision: None,
                                instance: None,
                            },
                        };
                        samples.lock().unwrap().push(sample);
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            tasks,
        }
    }

    /// As [`Load::start`], returning once `n` of its requests have finished.
    pub async fn started(
        addr: SocketAddr,
        host: &str,
        path: &str,
        clients: usize,
        n: usize,
    ) -> Load {
        let load = Load::start(addr, host, path, clients);
        load.wait_done_since(Instant::now(), n).await;
        load
    }

    /// The requests finished so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Waits until `n` requests sent at or after `since` have finished.
    pub async fn wait_done_since(&self, since: Instant, n: usize) {
        wait_for(
            &format!("{n} load requests sent after the mark to finish"),
            DEADLINE,
            || async move {
                let done = self
                    .samples
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s| s.sent >= since)
                    .count();
                (done >= n).then_some(())
            },
        )
        .await
    }

    /// Waits until `n` requests sent at or after `since` have finished, then stops.
    pub async fn stop_after(self, since: Instant, n: usize) -> Vec<Sample> {
        self.wait_done_since(since, n).await;
        self.stop().await
    }

    /// Stops the clients (each finishes its current request) and returns every sample.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("load task");
        }
        self.samples.lock().unwrap().clone()
    }
}

/// Asserts every sample answered 200; `during` says when, for the message.
pub fn assert_none_failed(samples: &[Sample], during: &str) {
    let failed = failed_samples(samples);
    assert!(failed.is_empty(), "failed requests{during}: {failed:?}");
}

/// The samples that did not answer 200, described for an assertion message.
pub fn failed_samples(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| !s.ok())
        .map(|s| format!("{:?} (instance {:?})", s.result, s.instance))
        .collect()
}
