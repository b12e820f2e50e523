//! `histogram_quantile`, `histogram_fraction` and `histogram_quantiles` over classic buckets.
//!
//! Bucket rows are grouped by their labels without `le` once; each step then gathers the
//! buckets present at that step and runs the per-step kernels
//! ([`bucket_quantile`], [`bucket_fraction`]).

use std::collections::HashMap;

use prom_model::Labels;

use super::{Batch, Grid, Row, scalar, vector};
use crate::annotations;
use crate::error::Result;
use crate::eval::Evaluator;
use crate::functions::string_arg;
use crate::histogram::{
    Anchors, Bucket, bucket_fraction, bucket_quantile, openmetrics_float, parse_le,
};
use crate::plan::Node;

/// The bucket rows of one histogram: output labels and `(row index, upper bound)` per bucket.
struct Group {
    labels: Labels,
    members: Vec<(usize, f64)>,
}

/// The rows grouped into histograms, in first-seen order, and the rows whose `le` does not
/// parse (with the value of that label).
struct Groups {
    groups: Vec<Group>,
    bad: Vec<(usize, String)>,
}

impl Groups {
    fn of(ev: &mut Evaluator<'_>, rows: &[Row]) -> Result<Self> {
        let mut index_of: HashMap<Labels, usize> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut bad = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            if index % 256 == 0 {
                ev.check_interrupt("query execution")?;
            }
            let le = row.labels.get("le").unwrap_or("");
            let Some(upper) = parse_le(le) else {
                bad.push((index, le.to_string()));
                continue;
            };
            let key = row.labels.without(&["le"]);
            let group = match index_of.get(&key) {
                Some(&group) => group,
                None => {
                    index_of.insert(key.clone(), groups.len());
                    groups.push(Group {
                        labels: key,
                        members: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            groups[group].members.push((index, upper));
        }
        Ok(Self { groups, bad })
    }

    /// Warns about the rows with an unparsable `le` that have a value at `step`, as
    /// Prometheus does when it meets them.
    fn warn_bad(&self, ev: &mut Evaluator<'_>, rows: &[Row], step: usize, anchors: &Anchors) {
        for (index, le) in &self.bad {
            let row = &rows[*index];
            if row.values[step].is_none() {
                continue;
            }
            let metric = row.labels.metric_name().unwrap_or("");
            ev.annotations.warn(
                annotations::bad_bucket_label(metric, le),
                anchors.buckets.as_deref(),
            );
        }
    }
}

/// The buckets of `group` present at `step`, in row order; `None` when there are none.
fn buckets_at(group: &Group, rows: &[Row], step: usize) -> Option<Vec<Bucket>> {
    let buckets: Vec<Bucket> = group
        .members
        .iter()
        .filter_map(|&(index, upper)| rows[index].values[step].map(|count| Bucket { upper, count }))
        .collect();
    (!buckets.is_empty()).then_some(buckets)
}

fn warn_quantile(ev: &mut Evaluator<'_>, q: f64, anchors: &Anchors) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ev.annotations.warn(
            annotations::invalid_quantile(q),
            anchors.parameter.as_deref(),
        );
    }
}

fn note_forced(ev: &mut Evaluator<'_>, group: &Group, anchors: &Anchors) {
    let metric = group.labels.metric_name().unwrap_or("");
    ev.annotations.info(
        annotations::forced_monotonicity(metric),
        anchors.buckets.as_deref(),
    );
}

/// One output row per group, in group order, keeping those with a value.
fn group_rows(groups: &Groups, values: Vec<Vec<Option<f64>>>) -> Batch {
    Batch::Vector(
        groups
            .groups
            .iter()
            .zip(values)
            .filter(|(_, values)| values.iter().any(Option::is_some))
            .map(|(group, values)| Row {
                labels: group.labels.clone(),
                drop_name: true,
                values,
            })
            .collect(),
    )
}

/// `histogram_quantile(φ, buckets)`.
pub(super) fn quantile(ev: &mut Evaluator<'_>, args: &[Node], grid: Grid) -> Result<Batch> {
    let qs = scalar(ev, args, 0, grid)?;
    let rows = vector(ev, args, 1, grid)?;
    let anchors = Anchors::of(args, 0, 1);
    let groups = Groups::of(ev, &rows)?;
    let mut values = vec![vec![None; grid.len]; groups.groups.len()];
    for (step, &q) in qs.iter().enumerate() {
        if step % 64 == 0 {
            ev.check_interrupt("query execution")?;
        }
        warn_quantile(ev, q, &anchors);
        groups.warn_bad(ev, &rows, step, &anchors);
        for (group, out) in groups.groups.iter().zip(values.iter_mut()) {
            let Some(buckets) = buckets_at(group, &rows, step) else {
                continue;
            };
            let (value, forced) = bucket_quantile(q, buckets);
            if forced {
                note_forced(ev, group, &anchors);
            }
            out[step] = Some(value);
        }
    }
    Ok(group_rows(&groups, values))
}

/// `histogram_fraction(lower, upper, buckets)`.
pub(super) fn fraction(ev: &mut Evaluator<'_>, args: &[Node], grid: Grid) -> Result<Batch> {
    let lower = scalar(ev, args, 0, grid)?;
    let upper = scalar(ev, args, 1, grid)?;
    let rows = vector(ev, args, 2, grid)?;
    let anchors = Anchors::of(args, 0, 2);
    let groups = Groups::of(ev, &rows)?;
    let mut values = vec![vec![None; grid.len]; groups.groups.len()];
    for step in 0..grid.len {
        if step % 64 == 0 {
            ev.check_interrupt("query execution")?;
        }
        groups.warn_bad(ev, &rows, step, &anchors);
        for (group, out) in groups.groups.iter().zip(values.iter_mut()) {
            if let Some(buckets) = buckets_at(group, &rows, step) {
                out[step] = Some(bucket_fraction(lower[step], upper[step], buckets));
            }
        }
    }
    Ok(group_rows(&groups, values))
}

/// `histogram_quantiles(buckets, "label", φ0, φ1, ...)`: per histogram, one row per quantile,
/// labelled with the quantile's value (a quantile that changes between steps gives a row per
/// value).
pub(super) fn quantiles(ev: &mut Evaluator<'_>, args: &[Node], grid: Grid) -> Result<Batch> {
    let rows = vector(ev, args, 0, grid)?;
    let label = string_arg(args, 1)?;
    let mut qs: Vec<Vec<f64>> = Vec::new();
    for index in 2..args.len() {
        qs.push(scalar(ev, args, index, grid)?);
    }
    let anchors = Anchors::of(args, 2, 0);
    // Per quantile: its distinct label values and which one each step uses.
    let mut texts: Vec<Vec<String>> = Vec::with_capacity(qs.len());
    let mut slot_at: Vec<Vec<usize>> = Vec::with_capacity(qs.len());
    for values in &qs {
        let mut distinct: Vec<String> = Vec::new();
        let mut slots = Vec::with_capacity(grid.len);
        for &q in values {
            let text = openmetrics_float(q);
            let slot = match distinct.iter().position(|known| *known == text) {
                Some(slot) => slot,
                None => {
                    distinct.push(text);
                    distinct.len() - 1
                }
            };
            slots.push(slot);
        }
        texts.push(distinct);
        slot_at.push(slots);
    }
    let groups = Groups::of(ev, &rows)?;
    // Output values by group, quantile and label value.
    let mut values: Vec<Vec<Vec<Vec<Option<f64>>>>> = groups
        .groups
        .iter()
        .map(|_| {
            texts
                .iter()
                .map(|distinct| vec![vec![None; grid.len]; distinct.len()])
                .collect()
        })
        .collect();
    for step in 0..grid.len {
        if step % 64 == 0 {
            ev.check_interrupt("query execution")?;
        }
        for values in &qs {
            warn_quantile(ev, values[step], &anchors);
        }
        groups.warn_bad(ev, &rows, step, &anchors);
        for (group, out) in groups.groups.iter().zip(values.iter_mut()) {
            let Some(buckets) = buckets_at(group, &rows, step) else {
                continue;
            };
            for (index, values) in qs.iter().enumerate() {
                let (value, forced) = bucket_quantile(values[step], buckets.clone());
                if forced {
                    note_forced(ev, group, &anchors);
                }
                out[index][slot_at[index][step]][step] = Some(value);
            }
        }
    }
    let mut out = Vec::new();
    for (group, by_quantile) in groups.groups.iter().zip(values) {
        for (index, by_text) in by_quantile.into_iter().enumerate() {
            for (slot, values) in by_text.into_iter().enumerate() {
                if values.iter().all(Option::is_none) {
                    continue;
                }
                let mut labels = group.labels.clone();
                labels.set(label.clone(), texts[index][slot].clone());
                out.push(Row {
                    labels,
                    drop_name: true,
                    values,
                });
            }
        }
    }
    Ok(Batch::Vector(out))
}
