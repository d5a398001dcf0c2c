//! `wakeway certificates`: the certificates the TLS listeners hold, from files and from the
//! ACME CA, as a table (`GET /v1/certificates`).

use std::process::ExitCode;

use http::Method;
use serde_json::Value;
use wakeway::client::{AdminClient, items, table};

use super::{Output, show};

pub async fn certificates(client: AdminClient, output: Output) -> ExitCode {
    let answer = client.ok(Method::GET, "/v1/certificates", None).await;
    show(answer, output, |v| format_certificates(&v))
}

fn format_certificates(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("-").to_string();
            vec![
                s("name"),
                s("source"),
                s("issuer"),
                c["not_after"].as_u64().map_or("-".into(), utc),
                s("state"),
                s("last_error"),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no certificates (no [proxy.tls] in the config)\n".into();
    }
    table(
        &[
            "NAME",
            "SOURCE",
            "ISSUER",
            "NOT AFTER",
            "STATE",
            "LAST ERROR",
        ],
        &rows,
    )
}

/// `2026-12-02 09:30Z` from seconds since the epoch (civil-from-days, proleptic Gregorian).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00Z");
        assert_eq!(utc(1_796_207_400), "2026-12-02 10:30Z");
    }

    #[test]
    fn rows_show_source_state_and_error() {
        let v = serde_json::json!([
            {"name": "a.test", "source": "acme", "issuer": null, "not_after": null,
             "state": "failing", "last_error": "urn:ietf:params:acme:error:connection: refused"}
        ]);
        let out = format_certificates(&v);
        assert!(out.contains("a.test") && out.contains("failing"), "{out}");
        assert!(out.contains("error:connection: refused"), "{out}");
    }
}
