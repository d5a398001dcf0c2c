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
    /// The services at the hosts their live configs name.
    pub fn new(services: &[Arc<Service>]) -> RouteTable {
        let configs: Vec<_> = services.iter().map(|s| s.config.load_full()).collect();
        RouteTable::with_hosts(configs.iter().map(|c| &c.hosts[..]).zip(services))
    }

    /// Each service at the hosts given with it (a config file's, before the services' controllers
    /// have applied it).
    pub fn with_hosts<'a>(
        routes: impl IntoIterator<Item = (&'a [String], &'a Arc<Service>)>,
    ) -> RouteTable {
        let mut t = RouteTable::default();
        for (hosts, svc) in routes {
            for host in hosts {
                if host == "*" {
                    t.catch_all = Some(svc.clone());
                } else {
                    t.exact.insert(host.to_ascii_lowercase(), svc.clone());
                }
            }
        }
        t
    }

    /// `host` as the client sent it: any port is ignored, case does not matter. A host
    /// `TAG--NAME` that is not itself a service's reaches the revision tagged `TAG` of the
    /// service at `NAME`; the tag comes back lower-cased.
    pub fn lookup(&self, host: &str) -> Option<(&Arc<Service>, Option<Box<str>>)> {
        let name = strip_port(host);
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        if let Some(svc) = self.exact.get(name) {
            return Some((svc, None));
        }
        if let Some((tag, rest)) = name.split_once("--")
            && !tag.is_empty()
            && let Some(svc) = self.exact.get(rest)
        {
            return Some((svc, Some(tag.into())));
        }
        self.catch_all.as_ref().map(|svc| (svc, None))
    }

    /// As `lookup`, for a host already checked to be ASCII (`headers::valid_host`).
    pub fn lookup_bytes(&self, host: &[u8]) -> Option<(&Arc<Service>, Option<Box<str>>)> {
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
    fn a_tag_prefix_reaches_the_service_with_its_tag() {
        use crate::config::{ServiceConfig, Source};
        use crate::events::EventLog;
        use crate::metrics::Metrics;
        let cfg = ServiceConfig::new(
            "web",
            vec!["web.localhost".into()],
            Source::Upstreams(vec!["127.0.0.1:1".into()]),
        );
        let svc = Service::new(
            cfg,
            Metrics::new().service("web"),
            Arc::new(EventLog::default()),
        );
        let t = RouteTable::new(&[svc]);
        let (s, tag) = t.lookup("Canary--Web.localhost:8080").unwrap();
        assert_eq!((s.name.as_str(), tag.as_deref()), ("web", Some("canary")));
        assert_eq!(t.lookup("web.localhost").unwrap().1, None);
        assert!(t.lookup("canary--other.localhost").is_none());
        assert!(t.lookup("--web.localhost").is_none());
    }

    #[test]
    fn ports_are_ignored() {
        assert_eq!(strip_port("hello.localhost:8080"), "hello.localhost");
        assert_eq!(strip_port("hello.localhost"), "hello.localhost");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("127.0.0.1:80"), "127.0.0.1");
    }
}
