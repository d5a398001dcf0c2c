//! Semantic checks on the front-door keys: request limits, `[proxy.tls]` and the per-service
//! `max_body_bytes` and `redirect_https`. The certificate files themselves are read and checked
//! by `parse` (see `check_tls_files` in mod.rs), which knows the config file's directory.

use std::collections::{BTreeMap, HashSet};

use super::ConfigError;
use super::types::*;

type Result<T = ()> = std::result::Result<T, ConfigError>;

fn fail(key: impl Into<String>, message: impl Into<String>) -> Result {
    Err(ConfigError::at_key(key, message))
}

/// The smallest limit that still fits an ordinary request line or header line.
const MIN_LINE_BYTES: usize = 256;
/// httparse parses into a caller-sized array; more than this is a mistake, not a need.
const MAX_HEADERS_CAP: usize = 10_000;

pub(super) fn validate(config: &Config) -> Result {
    let p = &config.proxy;
    for (key, value) in [
        ("proxy.max_uri_bytes", p.max_uri_bytes),
        ("proxy.max_header_line_bytes", p.max_header_line_bytes),
    ] {
        if value < MIN_LINE_BYTES {
            return fail(
                key,
                format!("must be at least {MIN_LINE_BYTES}B (got {value}B); the default is 8KiB"),
            );
        }
    }
    if p.max_header_bytes < p.max_header_line_bytes {
        return fail(
            "proxy.max_header_bytes",
            format!(
                "max_header_bytes ({}) is smaller than max_header_line_bytes ({}): no request with a header line that long could pass",
                super::format_size(p.max_header_bytes as u64),
                super::format_size(p.max_header_line_bytes as u64)
            ),
        );
    }
    if !(1..=MAX_HEADERS_CAP).contains(&p.max_headers) {
        return fail(
            "proxy.max_headers",
            format!(
                "max_headers must be 1-{MAX_HEADERS_CAP} (got {}); the default is 100",
                p.max_headers
            ),
        );
    }
    if p.header_read_timeout.is_zero() {
        return fail(
            "proxy.header_read_timeout",
            "header_read_timeout must be greater than 0: without it a silent connection is held forever",
        );
    }
    if p.max_connections == 0 {
        return fail(
            "proxy.max_connections",
            "max_connections must be at least 1",
        );
    }
    if let Some(tls) = &p.tls {
        validate_tls(config, tls)?;
    }
    for (i, svc) in config.services.iter().enumerate() {
        if svc.max_body_bytes == Some(0) {
            return fail(
                format!("service[{i}].max_body_bytes"),
                "max_body_bytes must be greater than 0; leave it out for no limit",
            );
        }
        if svc.redirect_https && p.tls.is_none() {
            return fail(
                format!("service[{i}].redirect_https"),
                "redirect_https needs an HTTPS listener: add [proxy.tls] with a certificate for this service's hosts",
            );
        }
    }
    Ok(())
}

fn validate_tls(config: &Config, tls: &TlsConfig) -> Result {
    if tls.listen.is_empty() {
        return fail(
            "proxy.tls.listen",
            "no listen address: set e.g. listen = \"0.0.0.0:443\"",
        );
    }
    let mut seen = HashSet::new();
    for addr in &tls.listen {
        if addr.port() == 0 {
            continue;
        }
        if !seen.insert(*addr) {
            return fail(
                "proxy.tls.listen",
                format!("address {addr} is listed twice"),
            );
        }
        if config.proxy.listen.contains(addr) {
            return fail(
                "proxy.tls.listen",
                format!(
                    "address {addr} is also a plain-HTTP address in proxy.listen; use another port"
                ),
            );
        }
        if config.admin.listen == Some(*addr) {
            return fail(
                "proxy.tls.listen",
                format!("address {addr} is also the admin address; use another port"),
            );
        }
    }
    if tls.certificates.is_empty() && tls.acme.is_none() {
        return fail(
            "proxy.tls",
            "no certificate: add a [[proxy.tls.certificate]] with `hosts`, `cert` and `key`, or [proxy.tls.acme] to order them",
        );
    }
    if let Some(acme) = &tls.acme {
        super::validate_acme::validate_acme(acme)?;
    }
    let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
    let mut default: Option<usize> = None;
    for (i, cert) in tls.certificates.iter().enumerate() {
        let at = |k: &str| format!("proxy.tls.certificate[{i}].{k}");
        if cert.default {
            if let Some(first) = default {
                return fail(
                    at("default"),
                    format!(
                        "proxy.tls.certificate[{first}] is already the default; at most one certificate may be"
                    ),
                );
            }
            default = Some(i);
        }
        if cert.hosts.is_empty() && !cert.default {
            return fail(
                at("hosts"),
                "no hosts: list the server names this certificate is for (e.g. [\"example.com\", \"*.example.com\"]), or mark it `default = true`",
            );
        }
        for (j, host) in cert.hosts.iter().enumerate() {
            let key = at(&format!("hosts[{j}]"));
            check_server_name(host).or_else(|why| fail(&key, why))?;
            if let Some(prev) = owners.insert(host, i) {
                let msg = if prev == i {
                    format!("host `{host}` is listed twice")
                } else {
                    format!(
                        "host `{host}` already has a certificate in proxy.tls.certificate[{prev}]; each name gets one"
                    )
                };
                return fail(key, msg);
            }
        }
        for (k, path) in [("cert", &cert.cert), ("key", &cert.key)] {
            if path.as_os_str().is_empty() {
                return fail(
                    at(k),
                    format!("`{k}` is empty: give the path of a PEM file"),
                );
            }
        }
    }
    Ok(())
}

/// A server name as SNI carries it: lower-case DNS labels, optionally `*.` in front.
fn check_server_name(host: &str) -> std::result::Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host == "*" {
        return Err(
            "\"*\" is not a server name: mark the certificate `default = true` to serve it to every name no other certificate has".into(),
        );
    }
    if name.contains('*') {
        return Err(format!(
            "invalid host {host:?}: a wildcard must be the whole first label, as in \"*.example.com\""
        ));
    }
    if host.contains(':') {
        return Err(format!(
            "invalid host {host:?}: server names carry no port (and IP addresses are not sent in SNI; use `default = true`)"
        ));
    }
    if name.is_empty() || name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(format!("invalid host {host:?}: empty label"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!(
            "invalid host {host:?}: {c:?} is not allowed in a server name (internationalised names are written in their xn-- form)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn cert(hosts: &[&str], default: bool) -> CertificateConfig {
        CertificateConfig {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            cert: PathBuf::from("c.pem"),
            key: PathBuf::from("k.pem"),
            default,
        }
    }

    fn config() -> Config {
        let mut c = super::super::parse("", None).unwrap();
        c.proxy.tls = Some(TlsConfig {
            acme: None,
            listen: vec!["127.0.0.1:8443".parse().unwrap()],
            certificates: vec![cert(&["a.example", "*.b.example"], true)],
        });
        c
    }

    #[test]
    fn valid_front_door_passes() {
        validate(&config()).unwrap();
    }

    #[test]
    fn each_rule_names_its_key() {
        type Edit = Box<dyn FnOnce(&mut Config)>;
        fn tls(c: &mut Config) -> &mut TlsConfig {
            c.proxy.tls.as_mut().unwrap()
        }
        let mut cases: Vec<(&str, &str, Edit)> = vec![
            (
                "proxy.tls.listen",
                "no listen",
                Box::new(|c| tls(c).listen.clear()),
            ),
            (
                "proxy.tls.listen",
                "proxy.listen",
                Box::new(|c| {
                    let plain = c.proxy.listen[0];
                    tls(c).listen.push(plain)
                }),
            ),
            (
                "proxy.tls.listen",
                "admin",
                Box::new(|c| {
                    let admin = c.admin.listen.unwrap();
                    tls(c).listen.push(admin)
                }),
            ),
            (
                "proxy.tls.listen",
                "twice",
                Box::new(|c| {
                    let a = tls(c).listen[0];
                    tls(c).listen.push(a)
                }),
            ),
            (
                "proxy.tls",
                "no certificate",
                Box::new(|c| tls(c).certificates.clear()),
            ),
            (
                "proxy.tls.certificate[1].default",
                "certificate[0] is already the default",
                Box::new(|c| tls(c).certificates.push(cert(&["c.example"], true))),
            ),
            (
                "proxy.tls.certificate[1].hosts",
                "no hosts",
                Box::new(|c| tls(c).certificates.push(cert(&[], false))),
            ),
            (
                "proxy.tls.certificate[1].hosts[1]",
                "certificate[0]",
                Box::new(|c| {
                    tls(c)
                        .certificates
                        .push(cert(&["c.example", "a.example"], false))
                }),
            ),
            (
                "proxy.tls.certificate[0].hosts[2]",
                "twice",
                Box::new(|c| tls(c).certificates[0].hosts.push("a.example".into())),
            ),
            (
                "proxy.tls.certificate[0].cert",
                "PEM",
                Box::new(|c| tls(c).certificates[0].cert = PathBuf::new()),
            ),
            (
                "proxy.tls.certificate[0].key",
                "PEM",
                Box::new(|c| tls(c).certificates[0].key = PathBuf::new()),
            ),
        ];
        // `[proxy]` limits, each with a value it refuses.
        type ProxyEdit = fn(&mut ProxyConfig);
        let limits: [(&str, &str, ProxyEdit); 7] = [
            ("proxy.max_uri_bytes", "at least 256B", |p| {
                p.max_uri_bytes = 10
            }),
            ("proxy.max_header_line_bytes", "at least", |p| {
                p.max_header_line_bytes = 0
            }),
            ("proxy.max_header_bytes", "smaller than", |p| {
                p.max_header_bytes = 4096
            }),
            ("proxy.max_headers", "1-10000", |p| p.max_headers = 0),
            ("proxy.max_headers", "1-10000", |p| p.max_headers = 20_000),
            ("proxy.header_read_timeout", "silent", |p| {
                p.header_read_timeout = Duration::ZERO
            }),
            ("proxy.max_connections", "at least 1", |p| {
                p.max_connections = 0
            }),
        ];
        cases.extend(limits.map(|(key, says, edit)| -> (&str, &str, Edit) {
            (
                key,
                says,
                Box::new(move |c: &mut Config| edit(&mut c.proxy)),
            )
        }));
        // Names the first certificate may not hold.
        let hosts = [
            ("*", "default = true"),
            ("a.*.example", "whole first label"),
            ("*a.example", "whole first label"),
            ("a.example:443", "no port"),
            ("a..example", "empty label"),
            ("bücher.example", "xn--"),
        ];
        cases.extend(hosts.map(|(host, says)| -> (&str, &str, Edit) {
            let edit = move |c: &mut Config| tls(c).certificates[0].hosts[0] = host.into();
            ("proxy.tls.certificate[0].hosts[0]", says, Box::new(edit))
        }));
        for (key, says, edit) in cases {
            let mut c = config();
            edit(&mut c);
            let e = validate(&c).expect_err(key);
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(e.message.contains(says), "{key}: {e}");
        }
    }

    #[test]
    fn service_keys() {
        let mut c = super::super::parse(
            "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\nredirect_https = true\n",
            None,
        )
        .unwrap_err();
        assert_eq!(c.key.as_deref(), Some("service[0].redirect_https"), "{c}");
        assert_eq!(c.line, Some(5), "{c}");
        c = super::super::parse(
            "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\nmax_body_bytes = \"0B\"\n",
            None,
        )
        .unwrap_err();
        assert_eq!(c.key.as_deref(), Some("service[0].max_body_bytes"), "{c}");
        assert_eq!(c.line, Some(5), "{c}");
    }
}
