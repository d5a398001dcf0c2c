//! Picking a certificate per handshake: the configured files first (exact name, then wildcard),
//! then a certificate issued by the ACME CA, then the default. A TLS-ALPN-01 validation
//! (`acme-tls/1`, RFC 8737) gets only the challenge certificate of an order in flight.
//!
//! Every lookup reads `ArcSwap`s once; the control plane builds new maps and stores them, so a
//! certificate is served from the handshake after its `store`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{CertStore, Entry};

/// The ALPN protocol of a TLS-ALPN-01 validation.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Server name -> certificate, built from the configured entries.
#[derive(Default)]
pub(super) struct Table {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl Table {
    pub(super) fn build(entries: &[Entry]) -> Table {
        let mut table = Table::default();
        for entry in entries {
            for host in &entry.config.hosts {
                match host.strip_prefix("*.") {
                    Some(parent) => table.wildcard.insert(parent.to_string(), entry.key.clone()),
                    None => table.exact.insert(host.clone(), entry.key.clone()),
                };
            }
            if entry.config.default {
                table.default = Some(entry.key.clone());
            }
        }
        table
    }
}

/// Server name -> certificate issued by the ACME CA, or challenge certificate; one writer (the
/// ACME manager), which stores a whole new map.
pub(super) type NameMap = HashMap<String, Arc<CertifiedKey>>;

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.inner.table.load();
        let mut exact: Vec<&String> = table.exact.keys().collect();
        exact.sort();
        let mut wildcard: Vec<&String> = table.wildcard.keys().collect();
        wildcard.sort();
        let issued = self.inner.issued.load();
        let mut acme: Vec<&String> = issued.keys().collect();
        acme.sort();
        f.debug_struct("CertStore")
            .field("exact", &exact)
            .field("wildcard", &wildcard)
            .field("acme", &acme)
            .field("default", &table.default.is_some())
            .finish()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands the name over lower-cased; a trailing dot is the same name.
        let name = hello
            .server_name()
            .map(|name| name.strip_suffix('.').unwrap_or(name));
        let validation = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if validation {
            // RFC 8737 §3: only the challenge certificate, and only for an order in flight;
            // anything else fails the handshake.
            return self.inner.challenges.load().get(name?).cloned();
        }
        let table = self.inner.table.load();
        let found = name.and_then(|name| {
            table
                .exact
                .get(name)
                .or_else(|| {
                    // A wildcard covers exactly one label (RFC 6125 §6.4.3).
                    let (_, parent) = name.split_once('.')?;
                    table.wildcard.get(parent)
                })
                .cloned()
                .or_else(|| self.inner.issued.load().get(name).cloned())
        });
        found.or_else(|| table.default.clone())
    }
}
