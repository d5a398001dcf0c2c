//! Byte sizes for memory limits: `"256MiB"`, `"1GiB"`, `"512m"` (as `docker run -m` reads it),
//! `"500MB"`. Binary units (KiB, MiB, GiB and docker's k, m, g) are powers of 1024; KB, MB, GB
//! are powers of 1000.

/// The units accepted by [`parse_size`], for error messages.
pub(crate) const SIZE_UNITS_HELP: &str = "accepted units: B, KiB, MiB, GiB (or k, m, g as docker reads them), KB, MB, GB (e.g. \"256MiB\", \"1GiB\", \"512m\")";

const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
];

/// Parse a size with a unit (`"256MiB"`, `"1.5GiB"`, `"512m"`). A bare number is rejected: it is
/// too easy to mean megabytes and write bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid size {s:?}: {why}; {SIZE_UNITS_HELP}");
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    if number.is_empty() {
        return Err(bad("no number"));
    }
    if unit.is_empty() {
        return Err(bad("no unit"));
    }
    let value: f64 = number.parse().map_err(|_| bad("bad number"))?;
    let unit_lc = unit.to_ascii_lowercase();
    let Some((_, scale)) = UNITS.iter().find(|(u, _)| *u == unit_lc) else {
        return Err(bad(&format!("unknown unit {unit:?}")));
    };
    let bytes = value * *scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes.round() as u64)
}

/// The shortest exact binary rendering (`268435456` -> `"256MiB"`), else bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size(" 64 KiB "), Ok(64 << 10));
        assert_eq!(parse_size("100b"), Ok(100));
    }

    #[test]
    fn errors_show_value_and_units() {
        for bad in ["", "256", "MiB", "12parsecs", "1..2m", "1e30GiB"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("MiB"), "{e}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["256MiB", "1GiB", "3KiB", "100B"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
        assert_eq!(format_size(1536 << 20), "1536MiB");
    }
}
