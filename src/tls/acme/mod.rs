//! Automatic HTTPS: certificates from an ACME CA (RFC 8555) for the service names no
//! certificate file covers. `Acme` is the handle the app keeps; the `Manager` task is the one
//! writer of every name's state (orders, renewals, retries) and talks to the CA through
//! instant-acme. An unreachable or failing CA never blocks start, serving or reload: a name
//! without its certificate gets the default one (or a failed handshake) until it is issued.
//!
//! `account` (credentials), `order` (one order), `challenge` (the answers), `schedule` (when),
//! `storage` (where), `names` (which).

mod account;
pub mod challenge;
mod client;
mod manager;
pub mod names;
mod order;
pub mod schedule;
mod settings;
pub mod storage;

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use challenge::Http01;
pub use client::read_roots;
pub use names::{Plan, covered_by, plan};
pub use settings::{AcmeChallenge, AcmeConfig, LETS_ENCRYPT_DIRECTORY};

use crate::events::EventLog;
use crate::tls::CertStore;

/// One name's certificate as `GET /v1/certificates` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CertStatus {
    pub name: String,
    /// `acme` or `file`.
    pub source: &'static str,
    /// The issuer's distinguished name; `None` until issued.
    pub issuer: Option<String>,
    /// Seconds since the epoch.
    pub not_after: Option<u64>,
    /// `issued`, `pending` (no certificate yet) or `failing` (the last attempt failed).
    pub state: &'static str,
    /// The CA's problem type and detail of the last failed attempt.
    pub last_error: Option<String>,
    /// When the next order or renewal is due, seconds since the epoch.
    pub next_attempt: Option<u64>,
}

/// What the app keeps: a way to tell the manager the names, and what it last published.
pub struct Acme {
    commands: mpsc::UnboundedSender<Vec<String>>,
    status: Arc<ArcSwap<Vec<CertStatus>>>,
    /// The HTTP-01 answers, read by the plain listeners.
    pub http01: Arc<Http01>,
    pub storage: String,
}

impl Acme {
    /// Serves what storage already holds for `names` at once, then orders the rest in the
    /// background until `cancel`.
    pub fn start(
        config: &AcmeConfig,
        store: CertStore,
        events: Arc<EventLog>,
        expiry: prometheus::IntGaugeVec,
        names: Vec<String>,
        cancel: CancellationToken,
    ) -> Acme {
        let storage: Arc<dyn storage::Storage> = match &config.storage {
            Some(root) => Arc::new(storage::Dir::new(storage::ca_dir(root, &config.directory))),
            None => Arc::new(storage::Memory::default()),
        };
        let http01 = Arc::new(Http01::default());
        let status = Arc::new(ArcSwap::from_pointee(Vec::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut manager = manager::Manager::new(
            config.clone(),
            storage.clone(),
            order::Responders {
                store,
                http01: http01.clone(),
            },
            events,
            expiry,
            status.clone(),
        );
        manager.set_names(names);
        tokio::spawn(manager.run(rx, cancel));
        Acme {
            commands: tx,
            status,
            http01,
            storage: storage.describe(),
        }
    }

    /// The names to hold certificates for now (a reload or a deploy changed the hosts).
    pub fn set_names(&self, names: Vec<String>) {
        let _ = self.commands.send(names);
    }

    pub fn status(&self) -> Arc<Vec<CertStatus>> {
        self.status.load_full()
    }
}

/// The issuer and validity of a DER certificate.
pub struct Described {
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

pub fn describe(der: &[u8]) -> Result<Described, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    Ok(Described {
        issuer: cert.issuer().to_string(),
        not_before: at(cert.validity().not_before),
        not_after: at(cert.validity().not_after),
    })
}

/// Seconds since the epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
