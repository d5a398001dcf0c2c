//! Properties of the one reading every request gets: generated request heads (well-formed and
//! hostile) must either be refused or become an upstream head that a second parser reads one way
//! only; chunked bodies decode the same however they are split; the h2 path's header rewriting
//! leaves the same guarantees.
//!
//! The oracles here are written from the rules (RFC 9110 7.6.1, RFC 9112 6.1, the `_` rule),
//! not from `headers::disposition`, so a change to the code that breaks a rule shows up.
//!
//! - `request_gen`: request heads, from a careful client's to an attacker's;
//! - `heads`: what the instance receives for an accepted head;
//! - `chunked`: the chunked decoder and encoder;
//! - `h2`: the h2 path's header rewriting.

mod chunked;
mod h2;
mod heads;
mod request_gen;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::sample::select;

/// Twice proptest's default: a good share of the generated heads is refused early on purpose.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// Names that describe one connection and never reach the instance (RFC 9110 7.6.1, plus the
/// de-facto `Proxy-Connection`, the proxy's own credentials, and `Proxy`, which CGI-style apps
/// turn into an `HTTP_PROXY` variable that HTTP clients obey: "httpoxy").
const HOP_BY_HOP: &[&str] = &[
    "proxy",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Headers whose values wakeway writes itself.
const WAKEWAY_OWNED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

pub(super) fn is(name: &[u8], want: &str) -> bool {
    name.eq_ignore_ascii_case(want.as_bytes())
}

pub(super) fn in_set(name: &[u8], set: &[&str]) -> bool {
    set.iter().any(|w| is(name, w))
}

fn bytes_of(s: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    select(s).prop_map(|s| s.as_bytes().to_vec()).boxed()
}

fn peer() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
    ]
}

/// `http(s)://authority/...` → authority.
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let lower = target.to_ascii_lowercase();
    let rest = if lower.starts_with(b"http://") {
        &target[7..]
    } else if lower.starts_with(b"https://") {
        &target[8..]
    } else {
        return None;
    };
    let end = rest
        .iter()
        .position(|b| *b == b'/' || *b == b'?')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}
