//! `[service.scaling.idle_ignore]`: requests a service serves without counting them as activity,
//! so a health checker, an uptime monitor or a crawler does not keep it from scaling to zero.
//! Patterns are parsed once, when the config is; matching a request allocates nothing.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{Deserialize, Deserializer};

use super::cidr::IpNet;

/// Which requests do not count as activity. A request matches when any one pattern does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdleIgnore {
    /// Found anywhere in the `User-Agent` header, ignoring ASCII case (`"kube-probe/"`).
    pub user_agents: Vec<String>,
    pub paths: Vec<PathPattern>,
    /// The peer's address: the client as wakeway's socket sees it, never `X-Forwarded-For`
    /// (a client could write anything there).
    pub networks: Vec<IpNet>,
    /// An ignored request at a service with no ready instance starts one (`true`), or is
    /// answered 503 at once (`false`, the default).
    pub wake: bool,
}

impl IdleIgnore {
    /// Nothing is ignored (the default): the request path skips matching altogether.
    pub fn is_empty(&self) -> bool {
        self.user_agents.is_empty() && self.paths.is_empty() && self.networks.is_empty()
    }

    /// Whether a request matches. `target` is the request target as sent (any query is not
    /// compared); `user_agent` is only asked for when a user-agent pattern is configured, so the
    /// caller's header lookup costs nothing otherwise.
    pub fn matches<'a>(
        &self,
        peer: IpAddr,
        target: &[u8],
        user_agent: impl FnOnce() -> Option<&'a [u8]>,
    ) -> bool {
        if self.networks.iter().any(|n| n.contains(peer)) {
            return true;
        }
        if !self.paths.is_empty() {
            let path = target
                .iter()
                .position(|&b| b == b'?')
                .map_or(target, |q| &target[..q]);
            // An absolute-form target without a path (`http://host`) asks for `/`.
            let path = if path.is_empty() { &b"/"[..] } else { path };
            if self.paths.iter().any(|p| p.matches(path)) {
                return true;
            }
        }
        if self.user_agents.is_empty() {
            return false;
        }
        let Some(ua) = user_agent() else {
            return false;
        };
        self.user_agents
            .iter()
            .any(|p| contains_ignore_case(ua, p.as_bytes()))
    }
}

/// `needle` anywhere in `hay`, ASCII case ignored. User-Agent values are short and patterns
/// few, so a first-byte check before each comparison is all the speed this needs.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    if needle.len() > hay.len() {
        return false;
    }
    let first = first.to_ascii_lowercase();
    hay.windows(needle.len())
        .any(|w| w[0].to_ascii_lowercase() == first && w.eq_ignore_ascii_case(needle))
}

/// One `paths` entry: an exact path (`/healthz`), or every path that starts with what comes
/// before a trailing `*` (`/status/*`). Compared byte for byte with the path as the client sent
/// it: no percent-decoding, no case folding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    path: String,
    prefix: bool,
}

impl PathPattern {
    pub fn matches(&self, path: &[u8]) -> bool {
        if self.prefix {
            path.starts_with(self.path.as_bytes())
        } else {
            path == self.path.as_bytes()
        }
    }
}

impl FromStr for PathPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!(
                "invalid path {s:?}: a path starts with '/', e.g. \"/healthz\" or \"/status/*\""
            ));
        }
        let (path, prefix) = match s.strip_suffix('*') {
            Some(p) => (p, true),
            None => (s, false),
        };
        if path.contains('*') {
            return Err(format!(
                "invalid path {s:?}: '*' may only end a pattern (\"/status/*\" matches every path under /status/)"
            ));
        }
        if path.contains(['?', '#']) {
            return Err(format!(
                "invalid path {s:?}: the query is not compared; give the path alone"
            ));
        }
        if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "invalid path {s:?}: {c:?} cannot appear in a request path (write it percent-encoded, as clients send it)"
            ));
        }
        if prefix && path == "/" {
            return Err(format!(
                "{s:?} matches every request: nothing would count as activity and the service would scale to zero under any traffic"
            ));
        }
        Ok(PathPattern {
            path: path.to_string(),
            prefix,
        })
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

/// A bad pattern's error carries its value's span, so it names the entry's line.
impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = "a path string such as \"/healthz\" or \"/status/*\"";
        super::values::from_str(d, expecting, str::parse, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(user_agents: &[&str], paths: &[&str], networks: &[&str]) -> IdleIgnore {
        IdleIgnore {
            user_agents: user_agents.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.parse().unwrap()).collect(),
            networks: networks.iter().map(|s| s.parse().unwrap()).collect(),
            wake: false,
        }
    }

    const CLIENT: &str = "203.0.113.7";

    fn matches(i: &IdleIgnore, peer: &str, target: &str, ua: Option<&str>) -> bool {
        i.matches(peer.parse().unwrap(), target.as_bytes(), || {
            ua.map(str::as_bytes)
        })
    }

    #[test]
    fn user_agents_match_anywhere_ignoring_case() {
        let i = ignore(&["kube-probe/", "Googlebot"], &[], &[]);
        for ua in [
            "kube-probe/1.29",
            "KUBE-PROBE/1.30",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "googlebot",
        ] {
            assert!(matches(&i, CLIENT, "/", Some(ua)), "{ua}");
        }
        for ua in ["kube-probe", "curl/8.5.0", "Google", ""] {
            assert!(!matches(&i, CLIENT, "/", Some(ua)), "{ua}");
        }
        assert!(!matches(&i, CLIENT, "/", None));
    }

    #[test]
    fn paths_match_exactly_or_by_prefix_without_the_query() {
        let i = ignore(&[], &["/healthz", "/status/*", "/"], &[]);
        for target in [
            "/healthz",
            "/healthz?verbose=1",
            "/status/",
            "/status/db?x",
            "/",
        ] {
            assert!(matches(&i, CLIENT, target, None), "{target}");
        }
        // An absolute-form target with no path asks for `/`.
        assert!(matches(&i, CLIENT, "", None));
        for target in [
            "/healthz/",
            "/healthzx",
            "/HEALTHZ",
            "/status",
            "/app?/healthz",
            "/index.html",
            "*",
        ] {
            assert!(!matches(&i, CLIENT, target, None), "{target}");
        }
    }

    #[test]
    fn networks_match_the_peer() {
        let i = ignore(&[], &[], &["10.0.0.0/8", "fd00::/8"]);
        assert!(matches(&i, "10.1.2.3", "/", None));
        assert!(matches(&i, "::ffff:10.1.2.3", "/", None));
        assert!(matches(&i, "fd12::1", "/", None));
        assert!(!matches(&i, "11.0.0.1", "/", None));
    }

    #[test]
    fn any_one_pattern_is_enough_and_the_header_is_read_only_when_needed() {
        let i = ignore(&["kube-probe/"], &["/healthz"], &["10.0.0.0/8"]);
        assert!(matches(&i, "10.0.0.1", "/app", Some("curl/8")));
        assert!(matches(&i, CLIENT, "/healthz", Some("curl/8")));
        assert!(matches(&i, CLIENT, "/app", Some("kube-probe/1.29")));
        assert!(!matches(&i, CLIENT, "/app", Some("curl/8")));
        let no_ua = ignore(&[], &["/healthz"], &[]);
        let peer = CLIENT.parse().unwrap();
        assert!(!no_ua.matches(peer, b"/app", || panic!("User-Agent looked up")));
        assert!(IdleIgnore::default().is_empty());
        assert!(!no_ua.is_empty());
    }

    #[test]
    fn bad_paths_say_why() {
        crate::config::assert_refused::<PathPattern>(&[
            ("healthz", "starts with '/'"),
            ("/a*b", "only end"),
            ("/*/x", "only end"),
            ("/healthz?x=1", "query"),
            ("/a b", "percent-encoded"),
            ("/*", "every request"),
        ]);
        assert_eq!(
            "/status/*".parse::<PathPattern>().unwrap().to_string(),
            "/status/*"
        );
    }
}
