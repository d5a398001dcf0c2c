//! What `[proxy.tls.acme]` says, as the ACME manager takes it: the config front end builds it
//! and re-exports it, so reading certificates depends on no config code.

use std::path::PathBuf;

/// Let's Encrypt's production directory: what `[proxy.tls.acme]` orders from by default.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[proxy.tls.acme]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    /// The CA's ACME directory URL.
    pub directory: String,
    /// The account's contact address.
    pub email: Option<String>,
    /// Extra roots trusted for the directory's own HTTPS (a private or test CA), resolved
    /// against the config file's directory.
    pub ca_roots: Vec<PathBuf>,
    /// The challenges offered to the CA, in order of preference.
    pub challenges: Vec<AcmeChallenge>,
    /// Where the account key and the certificates are kept (`acme/` beside the state file);
    /// `None` when the config was built in code: nothing persists.
    pub storage: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// RFC 8737, answered on the TLS listener.
    TlsAlpn01,
    /// RFC 8555 §8.3, answered on the plain listener.
    Http01,
}

impl AcmeChallenge {
    pub fn name(self) -> &'static str {
        match self {
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
            AcmeChallenge::Http01 => "http-01",
        }
    }
}
