//! Which names get a certificate from the CA: every exact name in a service's `hosts` that no
//! `[[proxy.tls.certificate]]` covers. The catch-all, wildcards (they need DNS-01), IP
//! addresses and names no public CA issues for are skipped, each with its reason.

use std::net::IpAddr;

use crate::tls::CertificateConfig;

/// The names to order, and the ones skipped with why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub names: Vec<String>,
    pub skipped: Vec<(String, &'static str)>,
}

pub fn plan<'a>(hosts: impl IntoIterator<Item = &'a str>, covered: impl Fn(&str) -> bool) -> Plan {
    let mut plan = Plan::default();
    for host in hosts {
        let host = host.to_ascii_lowercase();
        if covered(&host)
            || plan.names.contains(&host)
            || plan.skipped.iter().any(|(h, _)| *h == host)
        {
            continue;
        }
        match skip_reason(&host) {
            Some(why) => plan.skipped.push((host, why)),
            None => plan.names.push(host),
        }
    }
    plan
}

/// Whether one of the certificate files serves `host` (exactly, or by a wildcard one label up).
pub fn covered_by(files: &[CertificateConfig], host: &str) -> bool {
    let parent = host.split_once('.').map(|(_, p)| p);
    files
        .iter()
        .flat_map(|c| &c.hosts)
        .any(|h| h == host || (h.strip_prefix("*.").is_some() && h.strip_prefix("*.") == parent))
}

fn skip_reason(host: &str) -> Option<&'static str> {
    if host == "*" {
        return Some("the catch-all has no name to order; it gets the default certificate");
    }
    if host.contains('*') {
        return Some(
            "a wildcard needs the DNS-01 challenge, which wakeway does not answer: give it a [[proxy.tls.certificate]]",
        );
    }
    if host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        return Some("an IP address is not ordered: give it a [[proxy.tls.certificate]]");
    }
    let special = [".localhost", ".local", ".internal", ".invalid", ".example"];
    if !host.contains('.') || special.iter().any(|s| host.ends_with(s)) {
        return Some("not a public DNS name: no ACME CA can validate it");
    }
    let valid = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !valid || host.len() > 253 {
        return Some("not a valid DNS name");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_public_names_not_covered_by_a_file_are_ordered() {
        let hosts = [
            "app.example.com",
            "*",
            "*.example.com",
            "127.0.0.1",
            "localhost",
            "api.localhost",
            "files.example.com",
            "App.Example.com",
            "bad_name.example.com",
        ];
        let p = plan(hosts, |h| h == "files.example.com");
        assert_eq!(p.names, ["app.example.com"]);
        let skipped: Vec<&str> = p.skipped.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(
            skipped,
            [
                "*",
                "*.example.com",
                "127.0.0.1",
                "localhost",
                "api.localhost",
                "bad_name.example.com"
            ]
        );
        assert!(p.skipped[1].1.contains("DNS-01"));
        assert!(p.skipped[2].1.contains("IP address"));
    }
}
