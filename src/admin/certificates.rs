//! `GET /v1/certificates`: every name the TLS listeners hold a certificate for, from a file or
//! from the ACME CA, with its issuer, expiry and (for ACME) the last error and next attempt.

use crate::State;
use crate::tls::acme::{CertStatus, describe, unix};

/// File certificates first (one row per name, `(default)` for the default's), then ACME's.
pub fn list(state: &State) -> Vec<CertStatus> {
    let mut rows = Vec::new();
    if let Some(store) = &state.cert_store {
        for (config, leaf) in store.files() {
            let described = describe(&leaf).ok();
            let mut names = config.hosts.clone();
            if config.default {
                names.push("(default)".into());
            }
            for name in names {
                rows.push(CertStatus {
                    name,
                    source: "file",
                    issuer: described.as_ref().map(|d| d.issuer.clone()),
                    not_after: described.as_ref().map(|d| unix(d.not_after)),
                    state: "issued",
                    last_error: None,
                    next_attempt: None,
                });
            }
        }
    }
    if let Some(acme) = &state.acme {
        rows.extend(acme.status().iter().cloned());
    }
    rows
}

/// Sets `wakeway_certificate_expiry_timestamp_seconds` of the file certificates before a scrape
/// (the ACME manager sets its own as it issues).
pub fn sample(state: &State) {
    let gauge = state.metrics.certificate_expiry();
    for row in list(state).iter().filter(|r| r.source == "file") {
        if let Some(t) = row.not_after {
            gauge.with_label_values(&[&row.name]).set(t as i64);
        }
    }
}
