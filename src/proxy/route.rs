//! Host → service. Built whole and swapped atomically; looked up once per request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::service::Service;

#[derive(Default)]
pub struct RouteTable {
    exact: HashMap<String, Arc<Service>>,
    catch_all: Option<Arc<Service>>,
}

impl RouteTable {
    pub fn new(services: &[Arc<Service>]) -> RouteTable {
        let mut t = RouteTable::default();
        for svc in services {
            for host in &svc.config.load().hosts {
                if host == "*" {
                    t.catch_all = Some(svc.clone());
                } else {
                    t.exact.insert(host.to_ascii_lowercase(), svc.clone());
                }
            }
        }
        t
    }

    /// `host` as the client sent it: any port is ignored, case does not matter.
    pub fn lookup(&self, host: &str) -> Option<&Arc<Service>> {
        let name = strip_port(host);
        let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.exact.get(&name.to_ascii_lowercase())
        } else {
            self.exact.get(name)
        };
        found.or(self.catch_all.as_ref())
    }
}

impl RouteTable {
    /// As `lookup`, for a host already checked to be ASCII (`headers::valid_host`).
    pub fn lookup_bytes(&self, host: &[u8]) -> Option<&Arc<Service>> {
        self.lookup(std::str::from_utf8(host).unwrap_or_default())
    }
}

pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_ignored() {
        assert_eq!(strip_port("hello.localhost:8080"), "hello.localhost");
        assert_eq!(strip_port("hello.localhost"), "hello.localhost");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("127.0.0.1:80"), "127.0.0.1");
    }
}
