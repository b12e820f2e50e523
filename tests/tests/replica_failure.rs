//! Killing one Prometheus replica loses no data in query answers.

use std::time::{Duration, Instant};

use e2e::cluster::now_millis;
use e2e::continuity::{Cadence, check_window};
use e2e::history::{HISTORY_METRIC, HISTORY_SERIES};
use e2e::{Cluster, ClusterOptions, Component, SCRAPE_INTERVAL_MS, points};

/// Largest distance between two samples of the de-duplicated series, also across the moment
/// the followed replica dies: twice the scrape interval before switching, one interval to the
/// other replica's next scrape, plus scrape jitter on a loaded machine. Lost data shows as no
/// samples after the kill (checked separately), not as a slightly longer switch-over.
const MAX_FRESH_GAP_MS: i64 = 6 * SCRAPE_INTERVAL_MS;

/// The cadence of the surviving replica's scrapes: the scrape interval, give or take 900 ms of
/// delay of one scrape on a loaded machine. Less than half the interval, so two replicas'
/// interleaved scrapes (no de-duplication) always show as a doubled sample, and one lost scrape
/// (a gap of two intervals) always shows as a gap.
const CADENCE: Cadence = Cadence {
    interval_ms: SCRAPE_INTERVAL_MS,
    jitter_ms: 900,
};

fn check_complete(cluster: &Cluster, now: i64) -> Vec<(i64, f64)> {
    let history = cluster.history();
    let window = format!("{}ms", now - history.start_ms + 1000);
    for series in 0..HISTORY_SERIES {
        let selector = format!("{HISTORY_METRIC}{{series=\"{series}\"}}[{window}]");
        let answer = cluster.query(&selector, now, "").expect("query history");
        assert!(answer.is_success(), "{:?}", answer.json);
        assert_eq!(answer.result().len(), 1, "{:?}", answer.json);
        assert_eq!(
            points(&answer.result()[0]),
            history.counter_samples(series),
            "series {series}"
        );
    }
    let up = cluster
        .query(&format!("{}[{window}]", history.up_selector()), now, "")
        .expect("query up");
    assert!(up.is_success(), "{:?}", up.json);
    assert_eq!(up.result().len(), 1, "{:?}", up.json);
    let samples = points(&up.result()[0]);
    let old: Vec<i64> = samples
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t <= history.end_ms)
        .collect();
    assert_eq!(old, history.up_timestamps());
    let fresh: Vec<(i64, f64)> = samples
        .into_iter()
        .filter(|(t, _)| *t > history.end_ms)
        .collect();
    for pair in fresh.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap > 0 && gap <= MAX_FRESH_GAP_MS,
            "fresh samples {:?} then {:?}; all fresh samples: {fresh:?}; each replica's: {}",
            pair[0],
            pair[1],
            replicas_fresh(cluster, now, &window)
        );
    }
    fresh
}

/// Each replica's fresh `up` timestamps (no de-duplication), to read a failure from.
fn replicas_fresh(cluster: &Cluster, now: i64, window: &str) -> String {
    let history = cluster.history();
    let Ok(raw) = cluster.query(
        &format!("{}[{window}]", history.up_selector()),
        now,
        "&dedup=false",
    ) else {
        return "(query failed)".to_owned();
    };
    raw.result()
        .iter()
        .map(|series| {
            let fresh: Vec<i64> = points(series)
                .into_iter()
                .map(|(t, _)| t)
                .filter(|t| *t > history.end_ms)
                .collect();
            format!("{}: {fresh:?}", series["metric"]["replica"])
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where the de-duplicated answer follows replica b from after the kill. Following replica a up
/// to its last sample `t_a` (at or just after the kill), Thanos' penalty algorithm (compatibility sheet §6.2) seeks replica b
/// past `t_a + 2 * (t_a - previous)`, `previous` being the sample followed before `t_a`: b's
/// scrapes up to there are skipped by design, exactly as Thanos skips them. When the answer
/// holds no sample of replica a before the kill (its sidecar cannot serve while it is down),
/// b is followed from the kill on. The point is computed from replica a's own samples, with the
/// scrape jitter the cadence tolerates added to the interval (the querier rebuilds replicas from
/// chunk timing, see `querier::dedup`, so the interval it penalises with is not exactly a's),
/// and the checks after it stay exact: every later scrape of b, once, and nothing else.
fn switch_point(cluster: &Cluster, killed_at: i64, end: i64) -> i64 {
    let range = format!(
        "{}[{}ms]",
        cluster.history().up_selector(),
        end - killed_at + 4 * SCRAPE_INTERVAL_MS
    );
    let raw = cluster
        .query(&range, end, "&dedup=false")
        .expect("query replica a before the kill");
    assert!(raw.is_success(), "{:?}", raw.json);
    let before_kill: Vec<i64> = raw
        .result()
        .iter()
        .filter(|series| series["metric"]["replica"] == "a")
        .flat_map(points)
        .map(|(t, _)| t)
        // A scrape may land in the moment between taking the time and the kill; the restart
        // comes many intervals later.
        .filter(|t| *t <= killed_at + SCRAPE_INTERVAL_MS)
        .collect();
    match before_kill.as_slice() {
        [.., previous, last] => killed_at.max(last + 2 * (last - previous + CADENCE.jitter_ms)),
        _ => killed_at,
    }
}

/// Checks the window between the kill and the end of the query range: from the switch point
/// ([`switch_point`]) on, the de-duplicated answer is replica b's samples, exactly, one per
/// scrape (none doubled, none missing) up to the end, and before it only b's samples.
/// The range ends one interval in the past, so both queries see the same committed scrapes.
/// With `both_replicas`, replica a must hold samples in the window too (so the check would see
/// doubled samples if the answer were not de-duplicated). Returns a summary of the window.
fn check_survivor_window(
    cluster: &Cluster,
    killed_at: i64,
    when: &str,
    both_replicas: bool,
) -> String {
    let end = now_millis() - SCRAPE_INTERVAL_MS;
    let range = format!(
        "{}[{}ms]",
        cluster.history().up_selector(),
        end - killed_at + SCRAPE_INTERVAL_MS
    );
    let deduplicated = cluster
        .query(&range, end, "")
        .expect("query since the kill");
    assert!(deduplicated.is_success(), "{when}: {:?}", deduplicated.json);
    assert_eq!(
        deduplicated.result().len(),
        1,
        "{when}: {:?}",
        deduplicated.json
    );
    let cut = switch_point(cluster, killed_at, end);
    let deduplicated_points = points(&deduplicated.result()[0]);
    let answered = check_window(&deduplicated_points, cut, end, CADENCE)
        .unwrap_or_else(|error| panic!("{when}: {error} (replica b followed from {cut})"));
    let raw = cluster
        .query(&range, end, "&dedup=false")
        .expect("query since the kill, dedup=false");
    assert!(raw.is_success(), "{when}: {:?}", raw.json);
    let survivor: Vec<(i64, f64)> = raw
        .result()
        .iter()
        .filter(|series| series["metric"]["replica"] == "b")
        .flat_map(points)
        .filter(|(t, _)| *t > killed_at && *t <= end)
        .collect();
    let survivor_after_cut: Vec<(i64, f64)> =
        survivor.iter().copied().filter(|(t, _)| *t > cut).collect();
    assert_eq!(
        answered, survivor_after_cut,
        "{when}: the answer vs replica b's samples after {cut}"
    );
    // Between the kill and the switch point the answer holds only replica b's samples too.
    for sample in deduplicated_points
        .iter()
        .filter(|(t, _)| *t > killed_at && *t <= cut)
    {
        assert!(
            survivor.contains(sample),
            "{when}: {sample:?} before the switch point {cut} is not one of replica b's samples {survivor:?}"
        );
    }
    let replica_a_samples = raw
        .result()
        .iter()
        .filter(|series| series["metric"]["replica"] == "a")
        .flat_map(points)
        .filter(|(t, _)| *t > killed_at && *t <= end)
        .count();
    assert_eq!(
        replica_a_samples > 0,
        both_replicas,
        "{when}: replica a's samples since the kill: {:?}",
        raw.json
    );
    let gaps: Vec<i64> = answered
        .windows(2)
        .map(|pair| pair[1].0 - pair[0].0)
        .collect();
    format!(
        "{when}: {} samples in the {} ms since the kill, gaps {}..{} ms",
        answered.len(),
        end - killed_at,
        gaps.iter().min().unwrap_or(&0),
        gaps.iter().max().unwrap_or(&0)
    )
}

#[test]
fn killing_one_prometheus_replica_loses_no_data() {
    let started = Instant::now();
    let mut cluster = Cluster::start(ClusterOptions::default()).unwrap();
    cluster.wait_history_in_bucket().unwrap();
    cluster.wait_fresh_samples(5).unwrap();
    let before = check_complete(&cluster, now_millis());

    // Replica a dies without a chance to flush anything; its sidecar stays up.
    let killed_at = now_millis();
    cluster.kill(Component::PrometheusA);
    std::thread::sleep(Duration::from_millis(6 * SCRAPE_INTERVAL_MS as u64));

    let now = now_millis();
    let after = check_complete(&cluster, now);
    // The time answered before the kill is still covered (replica a's own scrapes died with
    // its head, replica b's take their place without holes, as checked above), and fresh data
    // goes on past the kill.
    let (first_before, last_before) = (before[0].0, before[before.len() - 1].0);
    assert!(
        after[0].0 <= first_before + MAX_FRESH_GAP_MS && after[after.len() - 1].0 >= last_before,
        "answered {first_before}..{last_before} before the kill, {:?}..{:?} after",
        after.first(),
        after.last()
    );
    // The window between the kill and the end of the query range, served by replica b alone.
    let summary = check_survivor_window(&cluster, killed_at, "before replica a restarts", false);
    eprintln!("{summary}");

    // Replica a comes back on its folder; both replicas answer again.
    cluster.restart(Component::PrometheusA).unwrap();
    let restarted_at = now_millis();
    let selector = cluster.history().up_selector();
    e2e::cluster::wait_until_ok(
        "fresh samples of replica a",
        Duration::from_secs(60),
        || {
            let now = now_millis();
            let answer = cluster.query(
                &format!("{selector}[{}ms]", now - restarted_at),
                now,
                "&dedup=false",
            )?;
            Ok(answer
                .result()
                .iter()
                .any(|series| series["metric"]["replica"] == "a" && !points(series).is_empty()))
        },
    )
    .unwrap();
    check_complete(&cluster, now_millis());
    // With replica a back (its new scrapes and, from its WAL, the ones before the kill), the
    // window since the kill still answers replica b's samples exactly once each: without
    // de-duplication the replicas' scrapes would show as doubled samples or a second series.
    std::thread::sleep(Duration::from_millis(2 * SCRAPE_INTERVAL_MS as u64));
    let summary = check_survivor_window(&cluster, killed_at, "after replica a restarted", true);
    eprintln!("{summary}");
    eprintln!(
        "killing_one_prometheus_replica_loses_no_data: {:?}",
        started.elapsed()
    );
}
