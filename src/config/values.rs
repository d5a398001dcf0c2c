//! The value types of the TOML front end whose parse errors carry the value's span, so an
//! error names its key and line: durations, sizes, addresses, listen lists, address blocks.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::duration::{UNITS_HELP, parse_duration};
use super::size::parse_size;
use super::types::IpNet;

/// A duration string (`"30s"`).
pub(super) struct Dur(pub(super) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration string; {UNITS_HELP}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(bare_number(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(bare_number(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(bare_number(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size string (`"256MiB"`).
pub(super) struct Size(pub(super) u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a size string; {}", super::size::SIZE_UNITS_HELP)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse_size(s).map(Size).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                Err(bare_size(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Err(bare_size(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Size, E> {
                Err(bare_size(n))
            }
        }
        d.deserialize_any(V)
    }
}

fn bare_size<E: de::Error>(n: impl fmt::Display) -> E {
    E::custom(format!(
        "invalid size {n}: a bare number has no unit, write a string such as \"{n}MiB\"; {}",
        super::size::SIZE_UNITS_HELP
    ))
}

/// An IP address without a port (`"127.0.0.1"`).
pub(super) struct HostIp(pub(super) IpAddr);

impl<'de> Deserialize<'de> for HostIp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HostIp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address string such as \"127.0.0.1\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HostIp, E> {
                s.trim().parse().map(HostIp).map_err(|_| {
                    E::custom(format!(
                        "invalid address {s:?}: expected an IP address without a port, such as \"127.0.0.1\""
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

fn bare_number<E: de::Error>(n: impl fmt::Display) -> E {
    E::custom(format!(
        "invalid duration {n}: a bare number has no unit, write a string such as \"{n}s\"; {UNITS_HELP}"
    ))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "invalid address {s:?}: expected an IP address and port such as \"127.0.0.1:8080\" or \"[::1]:8080\""
        )
    })
}

/// `listen = "addr"` or `listen = ["addr", ...]`.
pub(super) struct ListenList(pub(super) Vec<SocketAddr>);

impl<'de> Deserialize<'de> for ListenList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListenList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string such as \"127.0.0.1:8080\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ListenList, E> {
                parse_addr(s)
                    .map(|a| ListenList(vec![a]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListenList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(parse_addr(&s).map_err(de::Error::custom)?);
                }
                Ok(ListenList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `listen = "addr"` or `listen = "off"`.
pub(super) struct AdminListen(pub(super) Option<SocketAddr>);

impl<'de> Deserialize<'de> for AdminListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AdminListen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string such as \"127.0.0.1:9180\", or \"off\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<AdminListen, E> {
                if s.trim().eq_ignore_ascii_case("off") {
                    return Ok(AdminListen(None));
                }
                parse_addr(s).map(|a| AdminListen(Some(a))).map_err(|m| {
                    E::custom(format!("{m}, or \"off\" to disable the admin listener"))
                })
            }
        }
        d.deserialize_str(V)
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
