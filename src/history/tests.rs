use super::*;

/// A sample at second `t` after `n` answers so far, `bad` of them 5xx, each in the 1-2.5 ms
/// bucket, with one ready instance of `web-00001` (all the traffic).
fn sample(t: u32, n: u64, bad: u64) -> Sample {
    let mut requests = RequestSnapshot {
        classes: [0, n - bad, 0, 0, bad],
        ..Default::default()
    };
    requests.buckets[1] = n;
    Sample {
        t,
        requests,
        instances: [0, 1, 0, 0, 0],
        desired: 1,
        revisions: vec![RevisionSample {
            revision: "web-00001".into(),
            served: n,
            errors: bad,
            ready: 1,
            percent: 100,
        }],
        ..Sample::default()
    }
}

#[test]
fn the_documented_bytes_hold() {
    // README and docs/observability.md state these figures.
    assert_eq!(std::mem::size_of::<Point>(), 56);
    assert_eq!(std::mem::size_of::<RevisionPoint>(), 16);
    assert_eq!(SERVICE_BYTES, 53_760);
    assert_eq!(REVISION_BYTES, 15_360);
    assert_eq!(MAX_BYTES, 115_200);
}

#[test]
fn steps_are_differences_served_densely_from_the_first_sample() {
    let h = ServiceHistory::default();
    h.record(sample(1000, 0, 0));
    h.record(sample(1001, 10, 0));
    h.record(sample(1002, 30, 5));
    let v = h.view(Range::Fine, 0);
    assert_eq!(v.step_seconds, 1);
    let t: Vec<u32> = v.points.iter().map(|p| p.t).collect();
    assert_eq!(t, [1001, 1002], "nothing before wakeway sampled");
    assert_eq!(v.points[0].rates.requests_per_second, 10.0);
    assert_eq!(v.points[1].rates.requests_per_second, 20.0);
    assert_eq!(v.points[1].rates.error_percent.unwrap().server, 25.0);
    assert_eq!(v.points[1].rates.p50_ms, Some(1.75));
    assert_eq!(v.points[1].instances.get("ready"), Some(&1));
    let rev = &v.revisions[0];
    assert_eq!(rev.revision, "web-00001");
    assert_eq!(rev.points[1].requests_per_second, 20.0);
    assert_eq!(rev.points[1].error_percent, Some(25.0));
    assert_eq!(rev.points[1].percent, 100);
    // `after` reads only what is new.
    let newer = h.view(Range::Fine, 1001);
    assert_eq!(newer.points.len(), 1);
    assert_eq!(newer.points[0].t, 1002);
}

#[test]
fn an_idle_stretch_is_not_stored_and_reads_as_zeros() {
    let h = ServiceHistory::default();
    let idle = |t| Sample {
        t,
        ..Sample::default()
    };
    h.record(idle(2000));
    for t in 2001..2400 {
        h.record(idle(t));
    }
    assert!(
        h.inner.lock().unwrap().fine.items.is_empty(),
        "idle steps are not kept"
    );
    let v = h.view(Range::Fine, 0);
    assert_eq!(v.points.len(), 399);
    assert!(v.points.iter().all(|p| p.rates.requests_per_second == 0.0));
}

#[test]
fn the_rings_stay_within_their_bounds() {
    let h = ServiceHistory::default();
    for (i, t) in (10_000..10_000 + 2 * 3600).enumerate() {
        h.record(sample(t, i as u64 * 3, 0));
    }
    let g = h.inner.lock().unwrap();
    assert_eq!(g.fine.items.len(), FINE_POINTS);
    assert!(g.fine.items.capacity() <= FINE_POINTS);
    assert_eq!(g.coarse.items.len(), COARSE_POINTS);
    assert!(g.coarse.items.capacity() <= COARSE_POINTS);
    assert!(g.revisions[0].fine.items.capacity() <= FINE_POINTS);
    drop(g);
    let fine = h.view(Range::Fine, 0);
    assert_eq!(fine.points.len(), FINE_POINTS);
    let coarse = h.view(Range::Coarse, 0);
    assert_eq!(coarse.points.len(), COARSE_POINTS);
    assert_eq!(coarse.step_seconds, 10);
    assert!(coarse.points.iter().all(|p| p.t % 10 == 0));
    assert!(
        coarse
            .points
            .iter()
            .all(|p| p.rates.requests_per_second == 3.0),
        "a coarse step is the rate over its 10 s"
    );
    assert!(coarse.points.iter().all(|p| p.rates.p50_ms == Some(1.75)));
}

#[test]
fn the_recent_window_and_the_last_minute() {
    let h = ServiceHistory::default();
    h.record(sample(500, 0, 0));
    for (i, t) in (501..=530).enumerate() {
        let n = (i as u64 + 1) * 4;
        h.record(sample(t, n, n));
    }
    let r = h.recent();
    assert_eq!(r.rates.requests_per_second, 4.0);
    assert_eq!(r.rates.error_percent.unwrap().server, 100.0);
    assert!(r.rates.p99_ms.is_some());
    assert_eq!(h.last_minute(), (120, 120));
}

#[test]
fn a_revision_gone_from_the_traffic_gives_way_to_new_ones() {
    let h = ServiceHistory::default();
    let with = |t: u32, revs: &[&str]| Sample {
        t,
        revisions: revs
            .iter()
            .map(|r| RevisionSample {
                revision: r.to_string(),
                percent: 10,
                ..RevisionSample::default()
            })
            .collect(),
        ..Sample::default()
    };
    h.record(with(1, &["a", "b", "c", "d"]));
    h.record(with(2, &["b", "c", "d"]));
    h.record(with(3, &["b", "c", "d", "e"]));
    let names: Vec<String> = h
        .view(Range::Fine, 0)
        .revisions
        .into_iter()
        .map(|r| r.revision)
        .collect();
    assert_eq!(names, ["b", "c", "d", "e"], "`a` left the traffic first");
}
