//! The TOML shape of the front-door keys: `[proxy.tls]` with its `[[proxy.tls.certificate]]`
//! entries, `trusted_proxies` and `underscore_headers`. The limits themselves are plain sizes,
//! counts and durations read in `file.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::file::ListenList;
use super::types::{CertificateConfig, IpNet, TlsConfig, UnderscoreHeaders};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    listen: Option<ListenList>,
    #[serde(default)]
    certificate: Vec<RawCertificate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    #[serde(default)]
    hosts: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
    default: Option<bool>,
}

/// The HTTPS port next to the plain one (`127.0.0.1:8080`).
pub(super) const DEFAULT_TLS_LISTEN: &str = "127.0.0.1:8443";

pub(super) fn convert_tls(raw: RawTls) -> TlsConfig {
    let listen = match raw.listen {
        Some(l) => l.0,
        None => vec![
            DEFAULT_TLS_LISTEN
                .parse::<SocketAddr>()
                .expect("the default TLS address parses"),
        ],
    };
    TlsConfig {
        listen,
        certificates: raw
            .certificate
            .into_iter()
            .map(|c| CertificateConfig {
                hosts: c
                    .hosts
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect(),
                cert: c.cert,
                key: c.key,
                default: c.default.unwrap_or(false),
            })
            .collect(),
    }
}

/// One `trusted_proxies` entry; a parse error carries the element's span, so it names its line.
pub(super) struct Cidr(pub(super) IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Cidr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address block string such as \"10.0.0.0/8\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Cidr, E> {
                s.parse().map(Cidr).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawUnderscoreHeaders {
    Drop,
    Reject,
}

impl From<RawUnderscoreHeaders> for UnderscoreHeaders {
    fn from(raw: RawUnderscoreHeaders) -> Self {
        match raw {
            RawUnderscoreHeaders::Drop => UnderscoreHeaders::Drop,
            RawUnderscoreHeaders::Reject => UnderscoreHeaders::Reject,
        }
    }
}
