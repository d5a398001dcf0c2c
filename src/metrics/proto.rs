//! Building Prometheus families at scrape time: the one set of helpers every collector uses for
//! descriptions, label pairs, counters, gauges and histograms.

use prometheus::core::Desc;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

/// The description of a family with these label names.
pub fn desc(name: &str, help: &str, labels: &[&str]) -> Desc {
    Desc::new(
        name.into(),
        help.into(),
        labels.iter().map(|l| l.to_string()).collect(),
        Default::default(),
    )
    .expect("valid metric description")
}

pub fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

/// A series with these `(name, value)` labels, in this order, and no value yet.
pub fn series(labels: &[(&str, &str)]) -> Metric {
    Metric::from_label(labels.iter().map(|(k, v)| label(k, v)).collect())
}

pub fn gauge(labels: &[(&str, &str)], v: f64) -> Metric {
    let mut m = series(labels);
    let mut g = Gauge::default();
    g.set_value(v);
    m.set_gauge(g);
    m
}

pub fn counter(labels: &[(&str, &str)], v: u64) -> Metric {
    let mut m = series(labels);
    let mut c = Counter::default();
    c.set_value(v as f64);
    m.set_counter(c);
    m
}

/// A histogram from non-cumulative counts: one per bound in `bounds`, then any left over are
/// above the last bound (+Inf).
pub fn histogram(
    labels: &[(&str, &str)],
    bounds: &[f64],
    counts: impl IntoIterator<Item = u64>,
    sum_seconds: f64,
) -> Metric {
    let mut counts = counts.into_iter();
    let mut cumulative = 0;
    let buckets = bounds
        .iter()
        .zip(counts.by_ref())
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(cumulative + counts.sum::<u64>());
    h.set_sample_sum(sum_seconds);
    let mut m = series(labels);
    m.set_histogram(h);
    m
}

pub fn family(name: &str, help: &str, t: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(t);
    f.set_metric(metrics);
    f
}

/// The family `desc` describes, with these series.
pub fn family_of(desc: &Desc, t: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    family(&desc.fq_name, &desc.help, t, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_the_rest_is_over_the_last() {
        let m = histogram(&[("service", "web")], &[0.1, 1.0], [2, 3, 4], 5.5);
        let h = m.get_histogram();
        let b = h.get_bucket();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].cumulative_count(), 2);
        assert_eq!(b[1].cumulative_count(), 5);
        assert_eq!(h.get_sample_count(), 9);
        assert_eq!(h.get_sample_sum(), 5.5);
        assert_eq!(m.get_label()[0].value(), "web");
    }
}
