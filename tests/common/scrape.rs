//! Reading Prometheus text exposition in assertions.

use std::collections::BTreeMap;

/// The value of the sample `name{labels}` in Prometheus text; the sample's labels must include
/// all of `labels` (other labels are allowed). Several matching samples are summed.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric_name != name {
            continue;
        }
        let sample_labels = parse_labels(label_text);
        if labels
            .iter()
            .all(|(k, v)| sample_labels.get(*k).map(String::as_str) == Some(*v))
        {
            let v: f64 = value.trim().parse().ok()?;
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    out
}

#[test]
fn metric_parsing() {
    let text = "# HELP x y\n\
        wakeway_requests_total{service=\"hello\",code=\"200\"} 5\n\
        wakeway_requests_total{service=\"hello\",code=\"503\"} 1\n\
        wakeway_requests_total{service=\"other\",code=\"200\"} 7\n\
        wakeway_cold_starts_total{service=\"hello\"} 1\n\
        plain 3.5\n";
    assert_eq!(
        metric(
            text,
            "wakeway_requests_total",
            &[("service", "hello"), ("code", "200")]
        ),
        Some(5.0)
    );
    assert_eq!(
        metric(text, "wakeway_requests_total", &[("service", "hello")]),
        Some(6.0)
    );
    assert_eq!(
        metric(text, "wakeway_cold_starts_total", &[("service", "x")]),
        None
    );
    assert_eq!(metric(text, "plain", &[]), Some(3.5));
}
