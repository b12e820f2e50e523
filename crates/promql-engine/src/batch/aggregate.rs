//! Aggregation operators over a grid.
//!
//! The group of every input series is computed once; per-step work only touches numbers. The
//! update rules are Prometheus' ([`crate::aggregate::Acc`]): each group's values at a step are
//! folded in row order, which is the order Prometheus' evaluator sees them in at that step, so
//! compensated sums and means are bit-identical.
//!
//! Over a selector or a range function over a selector, a reduction (not `quantile`) with few
//! groups is folded as the input rows are produced, block by block ([`fold_stream`]), instead of
//! holding every input row first: the producer computes a block of rows (in parallel) and hands
//! them over in series order, and the fold runs in that order on this thread, so each group still
//! sees its values in row order and the results are the same bits.
//!
//! Output rows are listed in the order per-step results (instant queries at each step), step
//! after step, first show them: by the first step a row has a value, then by its position at
//! that step. For an instant query that is exactly Prometheus' order.

use std::collections::HashMap;

use prom_model::{Labels, METRIC_NAME};

use super::{Batch, Grid, Row};
use crate::aggregate::{
    Acc, Reduce, Selection, ascending_nan_last, check_quantile, count_values_label,
    descending_nan_last, format_f, ratio_keeps, ratio_offset, selection,
};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::functions::quantile;
use crate::plan::{Aggregate, AggregateOp, Binary, Function, Grouping, Node, NodeKind, Selector};

/// How often (in groups or rows) long loops check for cancellation.
const INTERRUPT_EVERY: usize = 256;

/// Evaluates an aggregation at every step of `grid`; `None` for an operator it does not know
/// (the caller reports it as not supported).
pub(super) fn eval(ev: &mut Evaluator<'_>, expr: &Aggregate, grid: Grid) -> Result<Option<Batch>> {
    let op = expr.op.name();
    let grouping = &expr.grouping;
    let anchor = expr
        .param
        .as_ref()
        .and_then(|param| param.anchor.as_deref());
    if expr.op == AggregateOp::CountValues {
        let label = count_values_label(expr.param.as_ref())?;
        let rows = super::eval_vector(ev, &expr.expr, grid)?;
        let out = count_values(ev, &rows, &label, grouping, grid)?;
        super::release_rows(ev, &rows);
        return Ok(Some(Batch::Vector(out)));
    }
    let select = matches!(
        expr.op,
        AggregateOp::Topk | AggregateOp::Bottomk | AggregateOp::Limitk | AggregateOp::LimitRatio
    );
    let reduce = Reduce::parse(op);
    if !select && reduce.is_none() {
        return Ok(None);
    }
    let params = match &expr.param {
        Some(param) => {
            let batch = super::eval(ev, param, grid)?;
            super::release(ev, &batch);
            Some(batch.into_scalar()?)
        }
        None => None,
    };
    let param_at = |step: usize| -> f64 {
        params
            .as_ref()
            .and_then(|values| values.get(step).copied())
            .unwrap_or(f64::NAN)
    };
    if let Some(reduce) = reduce.filter(|reduce| !select && *reduce != Reduce::Quantile)
        && let Some(source) = stream_source(ev, &expr.expr, grid)
        && folds_smaller(ev, source, grouping, grid)?
    {
        let out = fold_stream(ev, reduce, grouping, source, grid)?;
        return Ok(Some(Batch::Vector(out)));
    }
    let rows = super::eval_vector(ev, &expr.expr, grid)?;
    let (groups, keys) = group_rows(ev, &rows, |labels| grouping.key(labels))?;
    let out = match reduce {
        Some(reduce) if !select => {
            if reduce == Reduce::Quantile {
                for step in 0..grid.len {
                    check_quantile(ev, param_at(step), anchor);
                }
            }
            let params: Vec<f64> = (0..grid.len).map(param_at).collect();
            let out = reduce_groups(ev, reduce, &params, &rows, &groups, keys, grid)?;
            super::release_rows(ev, &rows);
            out
        }
        _ => {
            let mut selections = Vec::with_capacity(grid.len);
            for step in 0..grid.len {
                selections.push(selection(ev, op, param_at(step), anchor)?);
            }
            super::release_rows(ev, &rows);
            select_rows(ev, op, &selections, rows, &groups, grid)?
        }
    };
    Ok(Some(Batch::Vector(out)))
}

/// A node whose rows can be produced block by block, in the order [`super::eval`] lists them.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source<'e> {
    /// An instant selector.
    Selector(&'e Selector),
    /// A range function over a range selector.
    RangeFunction(Function, &'e [Node]),
    /// An arithmetic operator or comparison between a source and a number
    /// (`rate(x[5m]) * 60`, `x > bool 0.7`), applied row by row.
    WithNumber(&'e Binary),
}

/// `node` as a [`Source`], if it is one that [`super::eval`] would evaluate the same way (not
/// computed once and repeated over the steps).
pub(super) fn stream_source<'e>(
    ev: &Evaluator<'_>,
    node: &'e Node,
    grid: Grid,
) -> Option<Source<'e>> {
    if evaluated_once(ev, node, grid) {
        return None;
    }
    match &node.kind {
        NodeKind::VectorSelector(selector) => Some(Source::Selector(selector)),
        NodeKind::Call { function, args } if super::selector::is_over_selector(*function, args) => {
            Some(Source::RangeFunction(*function, args))
        }
        NodeKind::Binary(binary) => {
            let (vector, _) = number_operand(binary)?;
            if binary.op.is_set() {
                return None;
            }
            stream_source(ev, vector, grid)?;
            Some(Source::WithNumber(binary))
        }
        _ => None,
    }
}

/// Whether [`super::eval`] computes `node` once and repeats it over `grid`.
fn evaluated_once(ev: &Evaluator<'_>, node: &Node, grid: Grid) -> bool {
    grid.len > 1 && ev.start != ev.end && node.evaluated_once()
}

/// The vector operand and the number of `binary`, if one side is a number literal.
fn number_operand(binary: &Binary) -> Option<(&Node, f64)> {
    match (&binary.lhs.kind, &binary.rhs.kind) {
        (NodeKind::Number(_), NodeKind::Number(_)) => None,
        (_, NodeKind::Number(number)) => Some((&binary.lhs, *number)),
        (NodeKind::Number(number), _) => Some((&binary.rhs, *number)),
        _ => None,
    }
}

/// The selector a [`Source`] reads.
fn source_selector<'e>(ev: &Evaluator<'_>, source: Source<'e>, grid: Grid) -> Option<&'e Selector> {
    match source {
        Source::WithNumber(binary) => {
            let (vector, _) = number_operand(binary)?;
            source_selector(ev, stream_source(ev, vector, grid)?, grid)
        }
        Source::Selector(selector) => Some(selector),
        Source::RangeFunction(function, args) => {
            super::selector::range_selector(function, args).map(|(_, selector)| selector)
        }
    }
}

/// Bytes a fold keeps per group and step: the accumulator, the first row and the name mark.
const FOLD_SLOT_BYTES: usize =
    std::mem::size_of::<Option<Acc>>() + std::mem::size_of::<usize>() + 1;

/// Bytes a materialised input row takes per step.
const ROW_SLOT_BYTES: usize = std::mem::size_of::<Option<f64>>();

/// Up to this many steps (an instant query has one) a fold is taken without counting groups:
/// its worst case, one group per series, holds `FOLD_SLOT_BYTES` per step and series.
const FOLD_UNCOUNTED_STEPS: usize = 16;

/// Whether folding `source` into its groups holds less than its rows would: the groups (counted
/// over the selector's series, which a range function keeps the labels of) are few enough.
fn folds_smaller(
    ev: &Evaluator<'_>,
    source: Source<'_>,
    grouping: &Grouping,
    grid: Grid,
) -> Result<bool> {
    let Some(selector) = source_selector(ev, source, grid) else {
        return Ok(false);
    };
    if (!grouping.without && grouping.labels.is_empty()) || grid.len <= FOLD_UNCOUNTED_STEPS {
        // One group at most, or few steps: even one group per series would hold no more
        // than a few bytes per series beside its label set, so the label sets need not be
        // read first (a selection read as the store streams it has none before it is read).
        return Ok(true);
    }
    let mut keys: std::collections::HashSet<Labels> = std::collections::HashSet::new();
    let mut series = 0usize;
    let known = ev.selector_label_sets(selector, &mut |labels| {
        series += 1;
        if keys.len().saturating_mul(FOLD_SLOT_BYTES) <= series.saturating_mul(ROW_SLOT_BYTES) {
            keys.insert(grouping.key(labels));
        }
    })?;
    Ok(
        known
            && keys.len().saturating_mul(FOLD_SLOT_BYTES) <= series.saturating_mul(ROW_SLOT_BYTES),
    )
}

/// A reduction folded row by row, in row order: per group, its accumulator at each step.
pub(super) struct Fold {
    reduce: Reduce,
    len: usize,
    index_of: HashMap<Labels, usize>,
    groups: Vec<FoldGroup>,
    /// Rows folded so far (the index of the next row).
    rows: usize,
    /// Accumulators started so far: the samples the fold holds.
    slots: usize,
}

/// One group of a [`Fold`].
struct FoldGroup {
    key: Labels,
    accs: Vec<Option<Acc>>,
    /// The row that started the accumulator at each step.
    first_row: Vec<usize>,
    /// Whether a row marked for name removal took part, at each step.
    drop: Vec<bool>,
}

impl Fold {
    /// An empty fold of `reduce` (not [`Reduce::Quantile`]) over `len` steps.
    pub(super) fn new(reduce: Reduce, len: usize) -> Self {
        Self {
            reduce,
            len,
            index_of: HashMap::new(),
            groups: Vec::new(),
            rows: 0,
            slots: 0,
        }
    }

    /// Folds the next row into the group `key`; returns how many accumulators it started.
    pub(super) fn add(&mut self, row: &Row, key: Labels) -> usize {
        let group = match self.index_of.get(&key) {
            Some(&group) => group,
            None => {
                self.index_of.insert(key.clone(), self.groups.len());
                self.groups.push(FoldGroup {
                    key,
                    accs: vec![None; self.len],
                    first_row: vec![usize::MAX; self.len],
                    drop: vec![false; self.len],
                });
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[group];
        let mut started = 0;
        for (step, value) in row.values.iter().enumerate() {
            let Some(f) = *value else { continue };
            match &mut group.accs[step] {
                Some(acc) => acc.add(self.reduce, f),
                slot @ None => {
                    *slot = Some(Acc::start(Some(self.reduce), f));
                    group.first_row[step] = self.rows;
                    started += 1;
                }
            }
            group.drop[step] |= row.drop_name;
        }
        self.rows += 1;
        self.slots += started;
        started
    }

    /// The output rows, in the order [`reduce_groups`] lists them.
    pub(super) fn finish(self) -> Vec<Row> {
        let mut placed = Vec::with_capacity(self.groups.len());
        for group in self.groups {
            let values: Vec<Option<f64>> = group
                .accs
                .iter()
                .map(|acc| acc.map(|acc| acc.finish(Some(self.reduce))))
                .collect();
            place_split(
                &mut placed,
                group.key,
                values,
                &group.drop,
                &group.first_row,
            );
        }
        in_order(placed)
    }
}

/// Reduces the rows of `source` as they are produced, block by block, without holding them.
pub(super) fn fold_stream(
    ev: &mut Evaluator<'_>,
    reduce: Reduce,
    grouping: &Grouping,
    source: Source<'_>,
    grid: Grid,
) -> Result<Vec<Row>> {
    let mut fold = Fold::new(reduce, grid.len);
    let mut sink = |ev: &mut Evaluator<'_>, row: Row| -> Result<()> {
        let started = fold.add(&row, grouping.key(&row.labels));
        ev.add_samples(started)
    };
    let outcome = each_row(ev, source, grid, &mut sink);
    ev.release_samples(fold.slots);
    outcome?;
    Ok(fold.finish())
}

/// Produces the rows of `source` block by block, handing them to `sink` in order.
fn each_row(
    ev: &mut Evaluator<'_>,
    source: Source<'_>,
    grid: Grid,
    sink: &mut super::selector::Sink<'_>,
) -> Result<()> {
    match source {
        Source::Selector(selector) => super::selector::instant_each(ev, selector, grid, sink),
        Source::RangeFunction(function, args) => {
            super::selector::range_function_each(ev, function, args, grid, sink)
        }
        Source::WithNumber(binary) => {
            let op = binary.op;
            let Some((vector, number)) = number_operand(binary) else {
                return Err(Error::exec("expected a number operand"));
            };
            let Some(inner) = stream_source(ev, vector, grid) else {
                return Err(Error::exec("expected a streamed operand"));
            };
            // A literal: the same at every step, nothing to evaluate or account for first.
            let scalars = vec![number; grid.len];
            let number_on_left = std::ptr::eq(vector, &binary.rhs);
            let return_bool = binary.return_bool;
            each_row(ev, inner, grid, &mut |ev, row| {
                let rows = super::binary::vector_scalar(
                    ev,
                    op,
                    vec![row],
                    &scalars,
                    number_on_left,
                    return_bool,
                )?;
                rows.into_iter().try_for_each(|row| sink(ev, row))
            })
        }
    }
}

/// Assigns each row to a group by `key` of its labels: the member rows of each group in row
/// order, and each group's key, both in order of first appearance.
fn group_rows(
    ev: &Evaluator<'_>,
    rows: &[Row],
    key: impl Fn(&Labels) -> Labels,
) -> Result<(Vec<Vec<usize>>, Vec<Labels>)> {
    let mut index_of: HashMap<Labels, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut keys: Vec<Labels> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        if index % INTERRUPT_EVERY == 0 {
            ev.check_interrupt("query execution")?;
        }
        let group_key = key(&row.labels);
        let group = match index_of.get(&group_key) {
            Some(&group) => group,
            None => {
                index_of.insert(group_key.clone(), keys.len());
                keys.push(group_key);
                members.push(Vec::new());
                keys.len() - 1
            }
        };
        members[group].push(index);
    }
    Ok((members, keys))
}

/// An output row with the position where the per-step results first show it: its first step
/// with a value, then its rank at that step.
struct Placed {
    first: (usize, usize, usize),
    row: Row,
}

/// Sorts placed rows into output order.
fn in_order(mut placed: Vec<Placed>) -> Vec<Row> {
    placed.sort_by_key(|placed| placed.first);
    placed.into_iter().map(|placed| placed.row).collect()
}

/// `sum avg min max count group stddev stdvar quantile` of each group at each step.
fn reduce_groups(
    ev: &mut Evaluator<'_>,
    reduce: Reduce,
    params: &[f64],
    rows: &[Row],
    groups: &[Vec<usize>],
    keys: Vec<Labels>,
    grid: Grid,
) -> Result<Vec<Row>> {
    let len = grid.len;
    let mut placed: Vec<Placed> = Vec::with_capacity(groups.len());
    let mut accs: Vec<Option<Acc>> = vec![None; len];
    let mut first_row: Vec<usize> = vec![usize::MAX; len];
    let mut drop: Vec<bool> = vec![false; len];
    let mut scratch: Vec<f64> = Vec::new();
    for (group, (members, key)) in groups.iter().zip(keys).enumerate() {
        if group % INTERRUPT_EVERY == 0 {
            ev.check_interrupt("query execution")?;
        }
        accs.fill(None);
        first_row.fill(usize::MAX);
        drop.fill(false);
        for &member in members {
            let row = &rows[member];
            for (step, value) in row.values.iter().enumerate() {
                let Some(f) = *value else { continue };
                match &mut accs[step] {
                    Some(acc) => {
                        if reduce != Reduce::Quantile {
                            acc.add(reduce, f);
                        }
                    }
                    slot @ None => {
                        *slot = Some(Acc::start(Some(reduce), f));
                        first_row[step] = member;
                    }
                }
                drop[step] |= row.drop_name;
            }
        }
        let mut values: Vec<Option<f64>> = vec![None; len];
        for (step, acc) in accs.iter().enumerate() {
            let Some(acc) = acc else { continue };
            values[step] = Some(if reduce == Reduce::Quantile {
                scratch.clear();
                scratch.extend(
                    members
                        .iter()
                        .filter_map(|&member| rows[member].values[step]),
                );
                quantile(params[step], &mut scratch)
            } else {
                acc.finish(Some(reduce))
            });
        }
        place_split(&mut placed, key, values, &drop, &first_row);
    }
    Ok(in_order(placed))
}

/// Adds a group's output: one row, or two when its name-dropping mark differs between steps
/// (the per-step results then hold two series with the same labels).
fn place_split(
    placed: &mut Vec<Placed>,
    labels: Labels,
    values: Vec<Option<f64>>,
    drop: &[bool],
    first_row: &[usize],
) {
    let present = |step: &usize| values[*step].is_some();
    let Some(first) = (0..values.len()).find(present) else {
        return;
    };
    let mixed = (0..values.len())
        .filter(present)
        .any(|step| drop[step] != drop[first]);
    if !mixed {
        placed.push(Placed {
            first: (first, first_row[first], 0),
            row: Row {
                labels,
                drop_name: drop[first],
                values,
            },
        });
        return;
    }
    for mark in [false, true] {
        let part: Vec<Option<f64>> = values
            .iter()
            .zip(drop)
            .map(|(value, &d)| value.filter(|_| d == mark))
            .collect();
        if let Some(first) = part.iter().position(Option::is_some) {
            placed.push(Placed {
                first: (first, first_row[first], 0),
                row: Row {
                    labels: labels.clone(),
                    drop_name: mark,
                    values: part,
                },
            });
        }
    }
}

/// `topk bottomk limitk limit_ratio`: each input row keeps its values at the steps where it is
/// selected.
fn select_rows(
    ev: &mut Evaluator<'_>,
    op: &str,
    selections: &[Selection],
    rows: Vec<Row>,
    groups: &[Vec<usize>],
    grid: Grid,
) -> Result<Vec<Row>> {
    let len = grid.len;
    let offsets: Vec<f64> = if op == "limit_ratio" {
        rows.iter().map(|row| ratio_offset(&row.labels)).collect()
    } else {
        Vec::new()
    };
    let mut kept: Vec<Option<Vec<Option<f64>>>> = vec![None; rows.len()];
    let mut first: Vec<Option<(usize, usize, usize)>> = vec![None; rows.len()];
    let mut present: Vec<(f64, usize)> = Vec::new();
    for (group, members) in groups.iter().enumerate() {
        if group % INTERRUPT_EVERY == 0 {
            ev.check_interrupt("query execution")?;
        }
        for (step, selection) in selections.iter().enumerate() {
            present.clear();
            present.extend(
                members
                    .iter()
                    .filter_map(|&member| Some((rows[member].values[step]?, member))),
            );
            let Some(&(_, rank)) = present.first() else {
                continue;
            };
            match *selection {
                Selection::Nothing => present.clear(),
                Selection::K(k) => {
                    // With all kept, the order within the group only matters for placing rows
                    // shown for the first time.
                    if k < present.len()
                        || present.iter().any(|&(_, member)| first[member].is_none())
                    {
                        match op {
                            "topk" => present.sort_by(|a, b| descending_nan_last(a.0, b.0)),
                            "bottomk" => present.sort_by(|a, b| ascending_nan_last(a.0, b.0)),
                            _ => {}
                        }
                        present.truncate(k);
                    }
                }
                Selection::Ratio(ratio) => {
                    present.retain(|&(_, member)| ratio_keeps(ratio, offsets[member]));
                }
            }
            for (position, &(value, member)) in present.iter().enumerate() {
                kept[member].get_or_insert_with(|| vec![None; len])[step] = Some(value);
                if first[member].is_none() {
                    first[member] = Some((step, rank, position));
                }
            }
        }
    }
    let mut placed: Vec<Placed> = Vec::new();
    for ((row, values), first) in rows.into_iter().zip(kept).zip(first) {
        let (Some(values), Some(first)) = (values, first) else {
            continue;
        };
        placed.push(Placed {
            first,
            row: Row { values, ..row },
        });
    }
    Ok(in_order(placed))
}

/// One output series of `count_values`.
struct Counted {
    /// Its group.
    group: usize,
    /// A value it counts (all its values format the same).
    value: f64,
    /// Where the per-step results first show it.
    first: (usize, usize, usize),
    /// The count at each step.
    counts: Vec<Option<f64>>,
}

/// `count_values`: how many series of each group have each value, at each step.
fn count_values(
    ev: &mut Evaluator<'_>,
    rows: &[Row],
    label: &str,
    grouping: &Grouping,
    grid: Grid,
) -> Result<Vec<Row>> {
    // The value label takes part in the output labels unless `without` removes it.
    let value_kept = !grouping.without
        || (label != METRIC_NAME && !grouping.labels.iter().any(|name| name == label));
    let (groups, keys) = group_rows(ev, rows, |labels| {
        let mut labels = labels.clone();
        labels.set(label, "");
        grouping.key(&labels)
    })?;
    let mut group_of = vec![0usize; rows.len()];
    for (group, members) in groups.iter().enumerate() {
        for &member in members {
            group_of[member] = group;
        }
    }
    // One output series per group and (formatted) value; `format_f` tells apart exactly the
    // values with different bits, except NaNs, which all read "NaN".
    let mut index_of: HashMap<(usize, u64), usize> = HashMap::new();
    let mut outputs: Vec<Counted> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        if index % INTERRUPT_EVERY == 0 {
            ev.check_interrupt("query execution")?;
        }
        let group = group_of[index];
        let mut last: Option<(u64, usize)> = None;
        for (step, value) in row.values.iter().enumerate() {
            let Some(v) = *value else { continue };
            let bits = if !value_kept {
                0
            } else if v.is_nan() {
                f64::NAN.to_bits()
            } else {
                v.to_bits()
            };
            // A series often keeps its value from one step to the next.
            let output = match last {
                Some((last_bits, output)) if last_bits == bits => output,
                _ => *index_of.entry((group, bits)).or_insert_with(|| {
                    outputs.push(Counted {
                        group,
                        value: v,
                        first: (step, index, 0),
                        counts: vec![None; grid.len],
                    });
                    outputs.len() - 1
                }),
            };
            last = Some((bits, output));
            let counted = &mut outputs[output];
            counted.first = counted.first.min((step, index, 0));
            *counted.counts[step].get_or_insert(0.0) += 1.0;
        }
    }
    let placed = outputs
        .into_iter()
        .map(|counted| {
            let mut labels = keys[counted.group].clone();
            if value_kept {
                labels.set(label, format_f(counted.value));
            }
            Placed {
                first: counted.first,
                row: Row {
                    labels,
                    drop_name: false,
                    values: counted.counts,
                },
            }
        })
        .collect();
    Ok(in_order(placed))
}

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
