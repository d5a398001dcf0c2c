//! The TOML shape of the front-door keys: `[proxy.tls]` with its `[[proxy.tls.certificate]]`
//! entries, `trusted_proxies` and `underscore_headers`. The limits themselves are plain sizes,
//! counts and durations read in `file.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::types::{
    AcmeChallenge, AcmeConfig, CertificateConfig, LETS_ENCRYPT_DIRECTORY, TlsConfig,
    UnderscoreHeaders,
};
use super::values::ListenList;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    listen: Option<ListenList>,
    #[serde(default)]
    certificate: Vec<RawCertificate>,
    acme: Option<RawAcme>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Option<String>,
    email: Option<String>,
    #[serde(default)]
    ca_roots: Vec<PathBuf>,
    challenges: Option<Vec<RawChallenge>>,
}

#[derive(Deserialize, Clone, Copy)]
enum RawChallenge {
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    #[serde(rename = "http-01")]
    Http01,
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
        acme: raw.acme.map(|a| AcmeConfig {
            directory: a
                .directory
                .unwrap_or_else(|| LETS_ENCRYPT_DIRECTORY.to_string()),
            email: a.email,
            ca_roots: a.ca_roots,
            challenges: match a.challenges {
                Some(list) => list
                    .into_iter()
                    .map(|c| match c {
                        RawChallenge::TlsAlpn01 => AcmeChallenge::TlsAlpn01,
                        RawChallenge::Http01 => AcmeChallenge::Http01,
                    })
                    .collect(),
                None => vec![AcmeChallenge::TlsAlpn01, AcmeChallenge::Http01],
            },
            storage: None,
        }),
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::{ConfigError, load, types::*};

    /// A self-signed pair for `names`, as PEM (certificate, key).
    fn pair(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    const FRONT: &str = r#"
[proxy]
listen = "127.0.0.1:8080"
max_uri_bytes = "4KiB"
max_header_line_bytes = "4KiB"
max_header_bytes = "16KiB"
max_headers = 50
header_read_timeout = "5s"
trusted_proxies = ["10.0.0.0/8", "::1"]
underscore_headers = "reject"
max_connections = 500

[proxy.tls]
listen = ["127.0.0.1:8443", "[::1]:8443"]

[[proxy.tls.certificate]]
hosts = ["A.example", "*.a.example"]
cert = "certs/a.crt"
key = "certs/a.key"

[[proxy.tls.certificate]]
cert = "/ABS/b.crt"
key = "/ABS/b.key"
default = true

[[service]]
name = "a"
hosts = ["a.example"]
upstreams = ["127.0.0.1:3000"]
max_body_bytes = "10MiB"
redirect_https = true
"#;

    struct Files {
        _dir: tempfile::TempDir,
        config: std::path::PathBuf,
        dir: std::path::PathBuf,
    }

    /// Writes the config (with `edit` applied) and its certificates; `b` lives elsewhere.
    fn files(edit: impl Fn(&str) -> String) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("etc/certs")).unwrap();
        std::fs::create_dir_all(root.join("abs")).unwrap();
        let (ca, ka) = pair(&["a.example", "*.a.example"]);
        let (cb, kb) = pair(&["b.example"]);
        std::fs::write(root.join("etc/certs/a.crt"), ca).unwrap();
        std::fs::write(root.join("etc/certs/a.key"), ka).unwrap();
        std::fs::write(root.join("abs/b.crt"), cb).unwrap();
        std::fs::write(root.join("abs/b.key"), kb).unwrap();
        let text = edit(&FRONT.replace("/ABS", &root.join("abs").display().to_string()));
        let config = root.join("etc/wakeway.toml");
        std::fs::write(&config, text).unwrap();
        Files {
            _dir: dir,
            config,
            dir: root,
        }
    }

    fn load_err(f: &Files) -> ConfigError {
        load(&f.config).unwrap_err()
    }

    #[test]
    fn front_door_keys_parse() {
        let f = files(|t| t.to_string());
        let cfg = load(&f.config).unwrap();
        let p = &cfg.proxy;
        assert_eq!(
            (p.max_uri_bytes, p.max_header_line_bytes, p.max_header_bytes),
            (4096, 4096, 16384)
        );
        assert_eq!((p.max_headers, p.max_connections), (50, 500));
        assert_eq!(p.header_read_timeout, Duration::from_secs(5));
        assert_eq!(p.underscore_headers, UnderscoreHeaders::Reject);
        assert_eq!(
            p.trusted_proxies,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
        let tls = p.tls.as_ref().unwrap();
        assert_eq!(
            tls.listen,
            vec![
                "127.0.0.1:8443".parse().unwrap(),
                "[::1]:8443".parse().unwrap()
            ]
        );
        let [a, b] = &tls.certificates[..] else {
            panic!("{tls:?}")
        };
        // Relative to the config file's directory; absolute paths as written.
        assert_eq!(a.cert, f.dir.join("etc/certs/a.crt"));
        assert_eq!(a.key, f.dir.join("etc/certs/a.key"));
        assert_eq!(a.hosts, vec!["a.example", "*.a.example"]);
        assert!(!a.default);
        assert_eq!(b.cert, f.dir.join("abs/b.crt"));
        assert!(b.default && b.hosts.is_empty());
        let svc = &cfg.services[0];
        assert_eq!(svc.max_body_bytes, Some(10 << 20));
        assert!(svc.redirect_https);
        let summary = super::super::summary(&cfg);
        assert!(
            summary.contains("tls    127.0.0.1:8443, [::1]:8443"),
            "{summary}"
        );
        assert!(summary.contains("a.example, *.a.example: "), "{summary}");
        assert!(summary.contains("(default): "), "{summary}");
    }

    #[test]
    fn defaults_when_absent() {
        let cfg = super::super::parse(
            "[proxy.tls]\n[[proxy.tls.certificate]]\nhosts = [\"x\"]\ncert = \"c\"\nkey = \"k\"\n",
            None,
        );
        // The files do not exist: the error names the certificate file and its line.
        let e = cfg.unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("proxy.tls.certificate[0].cert")),
            "{e}"
        );
        let plain = super::super::parse("", None).unwrap();
        let p = &plain.proxy;
        assert_eq!(p.tls, None);
        assert_eq!(
            (
                p.max_uri_bytes,
                p.max_header_line_bytes,
                p.max_header_bytes,
                p.max_headers
            ),
            (8192, 8192, 32768, 100)
        );
        assert_eq!(p.header_read_timeout, Duration::from_secs(10));
        assert_eq!(p.underscore_headers, UnderscoreHeaders::Drop);
        assert!(p.trusted_proxies.is_empty());
        assert_eq!(p.max_connections, 10_000);
        let c = super::super::parse(
            "[proxy.tls]\n[[proxy.tls.certificate]]\nhosts = [\"x\"]\ncert = \"c\"\nkey = \"k\"\n",
            Some(Path::new("/nonexistent/w.toml")),
        )
        .unwrap_err();
        assert!(c.message.contains("/nonexistent/c"), "{c}");
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let cases: [(&str, &str, &str, &str); 8] = [
            (
                "\"10.0.0.0/8\"",
                "\"10.0.0.1/8\"",
                "proxy.trusted_proxies[0]",
                "10.0.0.0/8?",
            ),
            (
                "\"reject\"",
                "\"strip\"",
                "proxy.underscore_headers",
                "`drop`",
            ),
            (
                "\"4KiB\"\nmax_header_line",
                "4096\nmax_header_line",
                "proxy.max_uri_bytes",
                "bare number",
            ),
            (
                "max_headers = 50",
                "max_headers = 0",
                "proxy.max_headers",
                "1-10000",
            ),
            (
                "hosts = [\"A.example\", \"*.a.example\"]",
                "hosts = [\"A.example\", \"a.*.example\"]",
                "proxy.tls.certificate[0].hosts[1]",
                "first label",
            ),
            (
                "cert = \"certs/a.crt\"",
                "cert = \"certs/b.crt\"",
                "proxy.tls.certificate[0].cert",
                "cannot read",
            ),
            (
                "key = \"certs/a.key\"",
                "key = \"certs/a.crt\"",
                "proxy.tls.certificate[0].key",
                "no private key",
            ),
            (
                "key = \"certs/a.key\"",
                "key = \"../abs/b.key\"",
                "proxy.tls.certificate[0].key",
                "does not belong",
            ),
        ];
        for (from, to, key, says) in cases {
            let f = files(|t| {
                assert!(t.contains(from), "{from}");
                t.replace(from, to)
            });
            let e = load_err(&f);
            let text = std::fs::read_to_string(&f.config).unwrap();
            let first = to.lines().next().unwrap();
            let line = text.lines().position(|l| l.contains(first)).unwrap() + 1;
            e.assert_case(to, key, Some(line), says);
            assert!(
                e.to_string()
                    .starts_with(&format!("{}:{line}: key `{key}`", f.config.display())),
                "{e}"
            );
        }
    }
}

#[cfg(test)]
mod example {
    const EXAMPLE: &str = include_str!("../../config/wakeway.toml");

    #[test]
    fn example_mentions_every_front_door_key() {
        for key in [
            "max_uri_bytes =",
            "max_header_line_bytes =",
            "max_header_bytes =",
            "max_headers =",
            "header_read_timeout =",
            "trusted_proxies =",
            "underscore_headers =",
            "max_connections =",
            "[proxy.tls]",
            "[[proxy.tls.certificate]]",
            "cert =",
            "key =",
            "default =",
            "max_body_bytes =",
            "redirect_https =",
        ] {
            assert!(EXAMPLE.contains(key), "config/wakeway.toml lacks {key}");
        }
        // Uncommented, the example's front-door keys parse (the certificate files aside).
        let ours = [
            "max_",
            "header_read_timeout",
            "trusted_proxies",
            "underscore_headers",
            "[proxy.tls]",
            "listen = \"0.0.0.0:443\"",
            "[[proxy.tls.certificate]]",
            "hosts = [\"example.com\"",
            "cert = ",
            "key = ",
            "default = ",
            "redirect_https",
        ];
        let uncommented = crate::config::uncomment(EXAMPLE, &ours);
        let e = super::super::parse(&uncommented, None).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("proxy.tls.certificate[0].cert"),
            "{e}"
        );
        assert!(e.message.contains("cannot read"), "{e}");
    }
}
