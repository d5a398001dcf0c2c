//! The one writer of every ACME name's state: it loads what storage holds, orders what is
//! missing or due, one order at a time (never a burst at the CA), retries failures on backoff,
//! keeps an old certificate when its renewal fails, and publishes the state for the API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use instant_acme::Account;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::AcmeConfig;
use super::order::{Failure, Responders, order};
use super::schedule::{ari_again, in_window, renew_at, retry_at};
use super::storage::Storage;
use super::{CertStatus, describe, unix};
use crate::events::EventLog;

/// An order that takes longer than this (a CA that stalls mid-answer) counts as failed.
const ORDER_DEADLINE: Duration = Duration::from_secs(300);

struct Name {
    held: Option<Held>,
    failures: u32,
    due: SystemTime,
    last_error: Option<String>,
    /// When to ask the CA for this certificate's renewal window (ARI) next.
    ari_next: Option<SystemTime>,
}

#[derive(Clone)]
struct Held {
    issuer: String,
    not_after: SystemTime,
    leaf: rustls_pki_types::CertificateDer<'static>,
}

/// A certificate that passed the checks, not yet served.
struct Checked {
    key: Arc<rustls::sign::CertifiedKey>,
    held: Held,
    renew: SystemTime,
}

pub(super) struct Manager {
    config: AcmeConfig,
    storage: Arc<dyn Storage>,
    responders: Responders,
    events: Arc<EventLog>,
    expiry: prometheus::IntGaugeVec,
    status: Arc<ArcSwap<Vec<CertStatus>>>,
    names: BTreeMap<String, Name>,
    account: Option<Account>,
    /// The CA publishes no renewal information: the two-thirds rule alone decides.
    ari_unsupported: bool,
}

/// A stable number per name: spreads renewals over the CA's window.
fn seed(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

fn cert_key(name: &str) -> String {
    format!("certs/{name}.pem")
}

impl Manager {
    pub(super) fn new(
        config: AcmeConfig,
        storage: Arc<dyn Storage>,
        responders: Responders,
        events: Arc<EventLog>,
        expiry: prometheus::IntGaugeVec,
        status: Arc<ArcSwap<Vec<CertStatus>>>,
    ) -> Manager {
        Manager {
            config,
            storage,
            responders,
            events,
            expiry,
            status,
            names: BTreeMap::new(),
            account: None,
            ari_unsupported: false,
        }
    }

    /// Adopts a new list of names: new ones are served from storage at once if it has them,
    /// else due now; names that left stop being served.
    pub(super) fn set_names(&mut self, names: Vec<String>) {
        let gone: Vec<String> = self
            .names
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        for name in gone {
            self.names.remove(&name);
            self.responders.store.set_issued(&name, None);
            let _ = self.expiry.remove_label_values(&[&name]);
        }
        for name in names {
            if self.names.contains_key(&name) {
                continue;
            }
            let held = self.load(&name);
            let due = match &held {
                Some(h) => h.1,
                None => SystemTime::now(),
            };
            let ari_next = (held.is_some() && !self.ari_unsupported).then(SystemTime::now);
            self.names.insert(
                name,
                Name {
                    held: held.map(|h| h.0),
                    failures: 0,
                    due,
                    last_error: None,
                    ari_next,
                },
            );
        }
        self.publish();
    }

    /// The stored certificate of `name`, served now; with its renewal time.
    fn load(&self, name: &str) -> Option<(Held, SystemTime)> {
        let pem = match self.storage.load(&cert_key(name)) {
            Ok(Some(pem)) => pem,
            Ok(None) => return None,
            Err(e) => {
                self.fail_event(
                    name,
                    &Failure {
                        problem: None,
                        detail: format!("reading the stored certificate: {e}"),
                    },
                    None,
                );
                return None;
            }
        };
        match self.serve(name, &pem) {
            Ok(found) => Some(found),
            Err(detail) => {
                let failure = Failure {
                    problem: None,
                    detail: format!(
                        "the stored certificate is unusable ({detail}); ordering a new one"
                    ),
                };
                self.fail_event(name, &failure, None);
                None
            }
        }
    }

    /// Serves a PEM bundle (key and chain) for `name` from the next handshake on.
    fn serve(&self, name: &str, pem: &[u8]) -> Result<(Held, SystemTime), String> {
        let checked = self.check(name, pem)?;
        self.install(name, &checked);
        Ok((checked.held, checked.renew))
    }

    /// Checks a PEM bundle for `name` without serving it.
    fn check(&self, name: &str, pem: &[u8]) -> Result<Checked, String> {
        let key = self.responders.store.certified_key(pem, pem, false)?;
        let leaf = key.cert.first().ok_or("no certificate")?.clone();
        let d = describe(&leaf)?;
        let sni = rustls_pki_types::ServerName::try_from(name).map_err(|e| e.to_string())?;
        webpki::EndEntityCert::try_from(&leaf)
            .map_err(|e| format!("{e:?}"))?
            .verify_is_valid_for_subject_name(&sni)
            .map_err(|_| format!("the certificate is not valid for {name}"))?;
        if d.not_after <= SystemTime::now() {
            return Err("the certificate has expired".into());
        }
        let renew = renew_at(d.not_before, d.not_after);
        Ok(Checked {
            key: Arc::new(key),
            held: Held {
                issuer: d.issuer,
                not_after: d.not_after,
                leaf,
            },
            renew,
        })
    }

    fn install(&self, name: &str, checked: &Checked) {
        self.responders
            .store
            .set_issued(name, Some(checked.key.clone()));
        self.expiry
            .with_label_values(&[name])
            .set(unix(checked.held.not_after) as i64);
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Vec<String>>,
        cancel: CancellationToken,
    ) {
        loop {
            let next = self
                .names
                .values()
                .flat_map(|n| [Some(n.due), n.ari_next])
                .flatten()
                .min();
            let wait = next
                .map(|due| due.duration_since(SystemTime::now()).unwrap_or_default())
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = cancel.cancelled() => return,
                cmd = commands.recv() => match cmd {
                    Some(names) => {
                        self.set_names(names);
                        continue;
                    }
                    None => return,
                },
                _ = tokio::time::sleep(wait) => {}
            }
            let now = SystemTime::now();
            let ask: Option<String> = self
                .names
                .iter()
                .find(|(_, n)| n.ari_next.is_some_and(|t| t <= now))
                .map(|(name, _)| name.clone());
            if let Some(name) = ask {
                let asked = cancel.run_until_cancelled(self.renewal_window(&name));
                if asked.await.is_none() {
                    return;
                }
                self.publish();
                continue;
            }
            let due: Option<String> = self
                .names
                .iter()
                .filter(|(_, n)| n.due <= now)
                .min_by_key(|(_, n)| n.due)
                .map(|(name, _)| name.clone());
            if let Some(name) = due {
                if cancel
                    .run_until_cancelled(self.attempt(&name))
                    .await
                    .is_none()
                {
                    return;
                }
                self.publish();
            }
        }
    }

    async fn attempt(&mut self, name: &str) {
        let renewal = self.names.get(name).is_some_and(|n| n.held.is_some());
        self.events.emit(
            "wakeway",
            "certificate_ordered",
            format!(
                "ordering a certificate for {name} from {}{}",
                self.config.directory,
                if renewal { " (renewal)" } else { "" }
            ),
            json!({ "name": name, "directory": self.config.directory, "renewal": renewal }),
        );
        let outcome = match tokio::time::timeout(ORDER_DEADLINE, self.order(name)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure {
                problem: None,
                detail: format!("the CA did not finish the order within {ORDER_DEADLINE:?}"),
            }),
        };
        match outcome {
            Ok(checked) => {
                let (held, renew) = (checked.held.clone(), checked.renew);
                let message = format!(
                    "{} certificate for {name} from {}, valid until {} (unix), renewal due at {} (unix)",
                    if renewal { "renewed the" } else { "issued a" },
                    held.issuer,
                    unix(held.not_after),
                    unix(renew)
                );
                self.events.emit(
                    "wakeway",
                    if renewal {
                        "certificate_renewed"
                    } else {
                        "certificate_issued"
                    },
                    message,
                    json!({
                        "name": name,
                        "issuer": held.issuer,
                        "not_after": unix(held.not_after),
                        "renew_at": unix(renew),
                    }),
                );
                let ari_next = (!self.ari_unsupported).then(SystemTime::now);
                if let Some(n) = self.names.get_mut(name) {
                    n.held = Some(held);
                    n.failures = 0;
                    n.due = renew;
                    n.last_error = None;
                    n.ari_next = ari_next;
                }
                // The status says "issued" before the first handshake can present it.
                self.publish();
                self.install(name, &checked);
            }
            Err(failure) => {
                let Some(n) = self.names.get_mut(name) else {
                    return;
                };
                n.failures += 1;
                let expires = n.held.as_ref().map(|h| h.not_after);
                n.due = retry_at(SystemTime::now(), n.failures, expires);
                n.last_error = Some(failure.to_string());
                let due = n.due;
                if matches!(failure.problem.as_deref(), Some(p) if p.ends_with(":accountDoesNotExist") || p.ends_with(":unauthorized"))
                {
                    // Ask the CA again for the account next time (it may have been removed).
                    self.account = None;
                }
                self.fail_event(name, &failure, Some(due));
            }
        }
    }

    async fn account(&mut self) -> Result<Account, Failure> {
        if let Some(a) = &self.account {
            return Ok(a.clone());
        }
        let a = super::account::open(&self.config, self.storage.as_ref()).await?;
        self.account = Some(a.clone());
        Ok(a)
    }

    /// Asks the CA when to renew `name` (RFC 9773) and follows its window; a CA without
    /// renewal information leaves the two-thirds rule in force.
    async fn renewal_window(&mut self, name: &str) {
        let now = SystemTime::now();
        let id = self
            .names
            .get(name)
            .and_then(|n| n.held.as_ref())
            .and_then(|h| instant_acme::CertificateIdentifier::try_from(&h.leaf).ok());
        let answer = match (id, self.account().await) {
            (Some(id), Ok(account)) => Some(account.renewal_info(&id).await),
            _ => None,
        };
        let Some(n) = self.names.get_mut(name) else {
            return;
        };
        match answer {
            Some(Ok((info, retry))) => {
                let start = SystemTime::from(info.suggested_window.start);
                let end = SystemTime::from(info.suggested_window.end);
                if n.failures == 0 {
                    n.due = in_window(now, start, end, seed(name));
                }
                n.ari_next = Some(ari_again(now, retry));
            }
            Some(Err(instant_acme::Error::Unsupported(_))) => {
                self.ari_unsupported = true;
                for n in self.names.values_mut() {
                    n.ari_next = None;
                }
            }
            // No identifier (no AKI), no account or no answer now: ask again later.
            _ => n.ari_next = Some(ari_again(now, Duration::ZERO)),
        }
    }

    async fn order(&mut self, name: &str) -> Result<Checked, Failure> {
        let account = self.account().await?;
        let issued = order(&account, name, &self.config.challenges, &self.responders).await?;
        let mut bundle = issued.key_pem.into_bytes();
        bundle.extend_from_slice(issued.chain_pem.as_bytes());
        // Checked before it is kept: a malformed answer from the CA must not replace a good
        // stored certificate.
        let checked = self.check(name, &bundle).map_err(|detail| Failure {
            problem: None,
            detail: format!("the CA's certificate is unusable: {detail}"),
        })?;
        if let Err(e) = self.storage.store(&cert_key(name), &bundle) {
            // Served all the same; the next start orders again.
            self.events.emit(
                "wakeway",
                "certificate_failed",
                format!(
                    "cannot store the certificate of {name} in {}: {e}",
                    self.storage.describe()
                ),
                json!({ "name": name, "detail": e.to_string() }),
            );
        }
        Ok(checked)
    }

    fn fail_event(&self, name: &str, failure: &Failure, retry: Option<SystemTime>) {
        let retry_in = retry.map(|r| r.duration_since(SystemTime::now()).unwrap_or_default());
        let keeps = self
            .names
            .get(name)
            .and_then(|n| n.held.as_ref())
            .map(|h| {
                format!(
                    "; the current certificate keeps serving until {} (unix)",
                    unix(h.not_after)
                )
            })
            .unwrap_or_default();
        let message = match retry_in {
            Some(wait) => format!(
                "certificate for {name} failed: {failure}; retrying in {:.0}s{keeps}",
                wait.as_secs_f64()
            ),
            None => format!("certificate for {name}: {failure}"),
        };
        self.events.emit(
            "wakeway",
            "certificate_failed",
            message,
            json!({
                "name": name,
                "problem": failure.problem,
                "detail": failure.detail,
                "retry_in_seconds": retry_in.map(|w| w.as_secs()),
            }),
        );
    }

    fn publish(&self) {
        let list = self
            .names
            .iter()
            .map(|(name, n)| CertStatus {
                name: name.clone(),
                source: "acme",
                issuer: n.held.as_ref().map(|h| h.issuer.clone()),
                not_after: n.held.as_ref().map(|h| unix(h.not_after)),
                state: match (&n.held, &n.last_error) {
                    (_, Some(_)) => "failing",
                    (Some(_), None) => "issued",
                    (None, None) => "pending",
                },
                last_error: n.last_error.clone(),
                next_attempt: Some(unix(n.due)),
            })
            .collect();
        self.status.store(Arc::new(list));
    }
}
