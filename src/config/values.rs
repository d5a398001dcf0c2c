//! The value types of the TOML front end whose parse errors carry the value's span, so an
//! error names its key and line: durations, sizes, addresses, listen lists, address blocks.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::cidr::IpNet;
use super::duration::{UNITS_HELP, parse_duration};
use super::size::parse_size;

/// Reads a value written as a string with `parse`; its error carries the value's span, so it
/// names the key and line. A bare number gets the message `bare` makes of it (the unit it
/// lacks), or serde's own "invalid type" without one.
pub(super) fn from_str<'de, D: Deserializer<'de>, T>(
    d: D,
    expecting: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
    bare: Option<fn(&dyn fmt::Display) -> String>,
) -> Result<T, D::Error> {
    struct V<'a, P> {
        expecting: &'a str,
        parse: P,
        bare: Option<fn(&dyn fmt::Display) -> String>,
    }
    impl<P> V<'_, P> {
        fn number<E: de::Error>(&self, n: &dyn fmt::Display, what: de::Unexpected<'_>) -> E {
            match self.bare {
                Some(bare) => E::custom(bare(n)),
                None => E::invalid_type(what, &self.expecting),
            }
        }
    }
    impl<T, P: FnOnce(&str) -> Result<T, String>> Visitor<'_> for V<'_, P> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            (self.parse)(s).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
            Err(self.number(&n, de::Unexpected::Signed(n)))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
            Err(self.number(&n, de::Unexpected::Unsigned(n)))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<T, E> {
            Err(self.number(&n, de::Unexpected::Float(n)))
        }
    }
    d.deserialize_any(V {
        expecting,
        parse,
        bare,
    })
}

/// A duration string (`"30s"`).
pub(super) struct Dur(pub(super) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = format!("a duration string; {UNITS_HELP}");
        let bare = Some(bare_number as fn(&dyn fmt::Display) -> String);
        from_str(d, &expecting, |s| parse_duration(s).map(Dur), bare)
    }
}

/// A byte size string (`"256MiB"`).
pub(super) struct Size(pub(super) u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = format!("a size string; {}", super::size::SIZE_UNITS_HELP);
        let bare = Some(bare_size as fn(&dyn fmt::Display) -> String);
        from_str(d, &expecting, |s| parse_size(s).map(Size), bare)
    }
}

fn bare_size(n: &dyn fmt::Display) -> String {
    format!(
        "invalid size {n}: a bare number has no unit, write a string such as \"{n}MiB\"; {}",
        super::size::SIZE_UNITS_HELP
    )
}

/// An IP address without a port (`"127.0.0.1"`).
pub(super) struct HostIp(pub(super) IpAddr);

impl<'de> Deserialize<'de> for HostIp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parse = |s: &str| {
            s.trim().parse().map(HostIp).map_err(|_| {
                format!(
                    "invalid address {s:?}: expected an IP address without a port, such as \"127.0.0.1\""
                )
            })
        };
        from_str(d, "an IP address string such as \"127.0.0.1\"", parse, None)
    }
}

fn bare_number(n: &dyn fmt::Display) -> String {
    format!(
        "invalid duration {n}: a bare number has no unit, write a string such as \"{n}s\"; {UNITS_HELP}"
    )
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
        let parse = |s: &str| {
            if s.trim().eq_ignore_ascii_case("off") {
                return Ok(AdminListen(None));
            }
            parse_addr(s)
                .map(|a| AdminListen(Some(a)))
                .map_err(|m| format!("{m}, or \"off\" to disable the admin listener"))
        };
        let expecting = "an address string such as \"127.0.0.1:9180\", or \"off\"";
        from_str(d, expecting, parse, None)
    }
}

/// One `trusted_proxies` entry; a parse error carries the element's span, so it names its line.
pub(super) struct Cidr(pub(super) IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = "an address block string such as \"10.0.0.0/8\"";
        from_str(d, expecting, |s| s.parse().map(Cidr), None)
    }
}
