//! What a certificate reload did, and its lines in the event log: a rejected file is a warning
//! (the previous certificate keeps serving), and the first good read after it says so.

use serde_json::json;

use super::{CertError, CertStore, CertificateConfig};
use crate::events::EventLog;

/// What a reload did: the entries whose new files now serve, those that kept their old pair,
/// and those that read well again after a rejection.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Indexes of entries now serving new files.
    pub replaced: Vec<usize>,
    pub failed: Vec<CertError>,
    /// Indexes of entries whose files (or whose config list) had been rejected and now read
    /// well.
    pub fixed: Vec<usize>,
}

impl CertStore {
    /// Records a reload's outcome in the event log (service `wakeway`).
    pub fn report(&self, outcome: &Reloaded, events: &EventLog) {
        let entries = self.entries();
        // `kind`: certificate `index` (`config`) serves again, or anew (`what`).
        let serves = |kind: &'static str, index: usize, what: &str, config: &CertificateConfig| {
            let (cert, hosts) = (config.cert.display(), hosts_label(config));
            let message = format!("proxy.tls.certificate[{index}] {what} {cert} for {hosts}");
            events.emit("wakeway", kind, message, fields(index, config));
        };
        for &index in &outcome.fixed {
            let Some(entry) = entries.get(index) else {
                continue;
            };
            let what = if outcome.replaced.contains(&index) {
                "now serves"
            } else {
                "reads again and serves"
            };
            serves("certificate_fixed", index, what, &entry.config);
        }
        for &index in outcome
            .replaced
            .iter()
            .filter(|i| !outcome.fixed.contains(i))
        {
            let Some(entry) = entries.get(index) else {
                continue;
            };
            serves("certificate_reloaded", index, "now serves", &entry.config);
        }
        for e in &outcome.failed {
            let hosts = entries
                .get(e.index)
                .map(|e| hosts_label(&e.config))
                .unwrap_or_default();
            events.emit(
                "wakeway",
                "certificate_rejected",
                format!("{e}; the previous certificate keeps serving {hosts}"),
                json!({
                    "certificate": e.index,
                    "file": e.path.display().to_string(),
                    "key": e.key_path(),
                    "error": e.reason,
                }),
            );
        }
    }
}

fn fields(index: usize, config: &CertificateConfig) -> serde_json::Value {
    json!({
        "certificate": index,
        "cert": config.cert.display().to_string(),
        "key": config.key.display().to_string(),
        "hosts": config.hosts,
    })
}

pub(super) fn hosts_label(config: &CertificateConfig) -> String {
    let mut label = config.hosts.join(", ");
    if config.default {
        if !label.is_empty() {
            label.push_str(" and ");
        }
        label.push_str("names no other certificate has");
    }
    label
}
