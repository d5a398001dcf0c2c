//! Duration strings: `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1.5s"`, and sums such as `"1m30s"`.
//! Bare numbers are rejected: a unit is always required.

use std::time::Duration;

/// The units accepted by [`parse_duration`], for error messages.
pub(crate) const UNITS_HELP: &str =
    "accepted units: ms, s, m, h (e.g. \"250ms\", \"30s\", \"1.5s\", \"5m\", \"1h\", \"1m30s\")";

const NANOS_PER_MS: u128 = 1_000_000;
const NANOS_PER_S: u128 = 1_000 * NANOS_PER_MS;
const NANOS_PER_M: u128 = 60 * NANOS_PER_S;
const NANOS_PER_H: u128 = 60 * NANOS_PER_M;

/// Parse a duration string such as `"250ms"`, `"30s"`, `"5m"`, `"1h"` or `"1.5s"`.
///
/// Several parts may be concatenated (`"1m30s"`). Bare numbers (`"30"`), negative values and
/// unknown units are errors; the message shows the bad value and the accepted units.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration {s:?}: {why}; {UNITS_HELP}");
    let text = s.trim();
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // Number: digits with an optional fractional part.
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];

        if number.is_empty() {
            if unit.starts_with('-') {
                return Err(bad("negative durations are not allowed"));
            }
            return Err(bad("expected a number before the unit"));
        }
        let unit_nanos = match unit {
            "ms" => NANOS_PER_MS,
            "s" => NANOS_PER_S,
            "m" => NANOS_PER_M,
            "h" => NANOS_PER_H,
            "" => return Err(bad("missing unit")),
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(bad(&format!("{number:?} is not a number")));
        }
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad("number too large"))?
        };
        let mut nanos = int
            .checked_mul(unit_nanos)
            .ok_or_else(|| bad("too large"))?;
        if !frac_part.is_empty() {
            // Exact decimal arithmetic; digits beyond nanosecond precision are truncated.
            let digits = &frac_part[..frac_part.len().min(20)];
            let frac: u128 = digits.parse().map_err(|_| bad("bad fraction"))?;
            nanos += frac * unit_nanos / 10u128.pow(digits.len() as u32);
        }
        total = total.checked_add(nanos).ok_or_else(|| bad("too large"))?;
    }
    let secs = u64::try_from(total / NANOS_PER_S).map_err(|_| bad("too large"))?;
    Ok(Duration::new(secs, (total % NANOS_PER_S) as u32))
}

/// Render a duration in the same syntax [`parse_duration`] accepts, as compactly as possible:
/// `30s`, `5m`, `1h30m`, `250ms`, `1.5s`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < NANOS_PER_S {
        let (ms, rem) = (nanos / NANOS_PER_MS, nanos % NANOS_PER_MS);
        if rem == 0 {
            return format!("{ms}ms");
        }
        let s = format!("{ms}.{rem:06}");
        return format!("{}ms", s.trim_end_matches('0'));
    }
    if !nanos.is_multiple_of(NANOS_PER_S) {
        let s = format!("{}.{:09}", nanos / NANOS_PER_S, nanos % NANOS_PER_S);
        return format!("{}s", s.trim_end_matches('0'));
    }
    let mut secs = nanos / NANOS_PER_S;
    let mut out = String::new();
    let h = secs / 3600;
    secs %= 3600;
    let m = secs / 60;
    secs %= 60;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if secs > 0 {
        out.push_str(&format!("{secs}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: &[(&str, Duration)] = &[
            ("250ms", Duration::from_millis(250)),
            ("0ms", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            (".5s", Duration::from_millis(500)),
            ("2.5m", Duration::from_secs(150)),
            ("1.25ms", Duration::from_micros(1250)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s", Duration::from_secs(3723)),
            (" 30s ", Duration::from_secs(30)),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration(s).as_ref(), Ok(want), "{s:?}");
        }
        let bad = [
            "", "30", "1.5", "s", "-5s", "5 s", "5sec", "5d", "1.2.3s", "5S", "abc", "ms30",
            "1m30", ".s",
        ];
        for s in bad {
            let err = parse_duration(s).expect_err(s);
            assert!(err.contains(&format!("{s:?}")), "{err}");
            assert!(err.contains("accepted units"), "{err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in [
            "0s", "250ms", "30s", "5m", "1h", "1.5s", "1m30s", "1h2m3s", "1.25ms",
        ] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_micros(1)), "0.001ms");
        assert_eq!(format_duration(Duration::from_nanos(1)), "0.000001ms");
    }
}
