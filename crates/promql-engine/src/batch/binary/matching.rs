//! Arithmetic and comparisons between two vectors over a grid (vector matching).
//!
//! The "many" side is the left operand, or the right one for `group_right`; the "one" side is
//! the other. Each row's signature is computed once and the rows of both sides are grouped by
//! signature. An output row is made per (many row, partner) pair that is active at some step,
//! where the partner is the one-side row present at that step with the same signature, or the
//! `fill_right`/`fill_left` filler; then, with a filler for the many side, a row per one-side
//! row for the steps where no many-side row has its signature. Rows come in the order
//! Prometheus emits elements at a step: many side in order, then the filled one-side rows.
//!
//! The error conditions (duplicate series on the one side, one-to-one matches that are not
//! unique, `group_*` results that are not unique) are detected at every step; at the first step
//! where any occurs, the per-step kernel ([`crate::binary::vector_vector`]) is run on that step
//! alone to raise its error with its exact message.

use std::collections::HashMap;

use prom_model::Labels;

use super::INTERRUPT_EVERY;
use crate::batch::{Grid, Row};
use crate::binary::{Card, Matching, Op, apply, result_labels};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::value::Element;

/// No one-side row at a step.
const NONE: u32 = u32::MAX;

/// The rows of both sides grouped by signature.
struct Groups {
    /// The labels of each signature.
    labels: Vec<Labels>,
    /// The signature of each many-side row.
    many_sig: Vec<usize>,
    /// The signature of each one-side row.
    one_sig: Vec<usize>,
    /// The many-side rows of each signature, in order.
    many_of: Vec<Vec<usize>>,
    /// The one-side rows of each signature, in order.
    one_of: Vec<Vec<usize>>,
    /// For signatures with several one-side rows: per step, the position (in `one_of`) of the
    /// first one present, or [`NONE`].
    one_at: Vec<Option<Vec<u32>>>,
}

impl Groups {
    fn new(ev: &mut Evaluator<'_>, many: &[Row], one: &[Row], matching: &Matching) -> Result<Self> {
        let mut ids: HashMap<Labels, usize> = HashMap::new();
        let mut groups = Groups {
            labels: Vec::new(),
            many_sig: Vec::with_capacity(many.len()),
            one_sig: Vec::with_capacity(one.len()),
            many_of: Vec::new(),
            one_of: Vec::new(),
            one_at: Vec::new(),
        };
        for (is_many, rows) in [(true, many), (false, one)] {
            for (index, row) in rows.iter().enumerate() {
                if index % INTERRUPT_EVERY == 0 {
                    ev.check_interrupt("query execution")?;
                }
                let signature = matching.signature(&row.labels);
                let id = match ids.get(&signature) {
                    Some(&id) => id,
                    None => {
                        let id = groups.labels.len();
                        ids.insert(signature.clone(), id);
                        groups.labels.push(signature);
                        groups.many_of.push(Vec::new());
                        groups.one_of.push(Vec::new());
                        id
                    }
                };
                if is_many {
                    groups.many_sig.push(id);
                    groups.many_of[id].push(index);
                } else {
                    groups.one_sig.push(id);
                    groups.one_of[id].push(index);
                }
            }
        }
        groups.one_at = vec![None; groups.labels.len()];
        Ok(groups)
    }

    /// The position in `one_of[sig]` of the one-side row present at `step`.
    fn one_at(&self, one: &[Row], sig: usize, step: usize) -> Option<usize> {
        match self.one_of[sig].as_slice() {
            [] => None,
            [only] => one[*only].values[step].is_some().then_some(0),
            _ => {
                let at = self.one_at[sig].as_ref()?[step];
                (at != NONE).then_some(at as usize)
            }
        }
    }

    /// Whether some many-side row with signature `sig` is present at `step`.
    fn many_present(&self, many: &[Row], sig: usize, step: usize) -> bool {
        self.many_of[sig]
            .iter()
            .any(|&row| many[row].values[step].is_some())
    }
}

/// The earliest step at which the per-step kernel fails.
#[derive(Default)]
struct FirstError(Option<usize>);

impl FirstError {
    fn note(&mut self, step: usize) {
        if self.0.is_none_or(|first| step < first) {
            self.0 = Some(step);
        }
    }
}

/// Arithmetic or a comparison between two vectors at every step of `grid`.
pub(super) fn vector_vector(
    ev: &mut Evaluator<'_>,
    op: Op,
    lhs: &[Row],
    rhs: &[Row],
    matching: &Matching,
    return_bool: bool,
    grid: Grid,
) -> Result<Vec<Row>> {
    let len = grid.len;
    // Nothing at a step where a side is empty, unless filling.
    let has_fill = matching.fill_lhs.is_some() || matching.fill_rhs.is_some();
    let lhs_any = any_present(lhs, len);
    let rhs_any = any_present(rhs, len);
    let proceed: Vec<bool> = lhs_any
        .iter()
        .zip(&rhs_any)
        .map(|(&l, &r)| (l && r) || ((l || r) && has_fill))
        .collect();
    let swapped = matching.card == Card::OneToMany;
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    // As in Prometheus, the fill values are not swapped with the sides.
    let (fill_many, fill_one) = (matching.fill_lhs, matching.fill_rhs);
    let mut groups = Groups::new(ev, many, one, matching)?;
    let mut first_error = FirstError::default();

    // Duplicate series on the one side.
    for sig in 0..groups.labels.len() {
        if groups.one_of[sig].len() < 2 {
            continue;
        }
        let mut at = vec![NONE; len];
        for (position, &row) in groups.one_of[sig].iter().enumerate() {
            for (step, value) in one[row].values.iter().enumerate() {
                if value.is_none() {
                    continue;
                }
                if at[step] == NONE {
                    at[step] = position as u32;
                } else if proceed[step] {
                    first_error.note(step);
                }
            }
        }
        groups.one_at[sig] = Some(at);
    }

    // One-to-one matching: at most one many-side row per signature may match at a step.
    if matching.card == Card::OneToOne {
        for sig in 0..groups.labels.len() {
            if groups.many_of[sig].len() < 2 {
                continue;
            }
            for (step, &proceeds) in proceed.iter().enumerate() {
                if !proceeds || (fill_one.is_none() && groups.one_at(one, sig, step).is_none()) {
                    continue;
                }
                let present = groups.many_of[sig]
                    .iter()
                    .filter(|&&row| many[row].values[step].is_some())
                    .count();
                if present > 1 {
                    first_error.note(step);
                    break;
                }
            }
        }
    }

    let mut out: Vec<Row> = Vec::new();
    // Pairs by signature and result labels, for `group_*` uniqueness: (many row, partner).
    let mut results: HashMap<(usize, Labels), Vec<(usize, usize)>> = HashMap::new();
    let check_unique = matching.card != Card::OneToOne;
    for (index, many_row) in many.iter().enumerate() {
        if index % INTERRUPT_EVERY == 0 {
            ev.check_interrupt("query execution")?;
        }
        let sig = groups.many_sig[index];
        // Partner `k < partners` is the k-th one-side row of the signature; `partners` is the
        // filler.
        let partners = groups.one_of[sig].len();
        let mut active = vec![false; partners + 1];
        let mut outputs: Vec<Option<Vec<Option<f64>>>> = vec![None; partners + 1];
        let first_of_row = out.len();
        for (step, many_value) in many_row.values.iter().enumerate() {
            let Some(many_value) = *many_value else {
                continue;
            };
            if !proceed[step] {
                continue;
            }
            let (partner, one_value) = match groups.one_at(one, sig, step) {
                Some(position) => {
                    let Some(value) = one[groups.one_of[sig][position]].values[step] else {
                        continue;
                    };
                    (position, value)
                }
                None => match fill_one {
                    Some(fill) => (partners, fill),
                    None => continue,
                },
            };
            active[partner] = true;
            let (l, r) = if swapped {
                (one_value, many_value)
            } else {
                (many_value, one_value)
            };
            if let Some(value) = combine(op, l, r, return_bool) {
                outputs[partner].get_or_insert_with(|| vec![None; len])[step] = Some(value);
            }
        }
        for (partner, values) in outputs.into_iter().enumerate() {
            if !active[partner] {
                continue;
            }
            let one_labels = match groups.one_of[sig].get(partner) {
                Some(&row) => &one[row].labels,
                None => &groups.labels[sig],
            };
            let labels = result_labels(&many_row.labels, one_labels, op, matching);
            if check_unique {
                results
                    .entry((sig, labels.clone()))
                    .or_default()
                    .push((index, partner));
            }
            let Some(values) = values else { continue };
            // Partners are never active at the same step: rows of this many-side row with the
            // same result labels are one series.
            match out[first_of_row..]
                .iter_mut()
                .find(|row| row.labels == labels)
            {
                Some(row) => {
                    for (slot, value) in row.values.iter_mut().zip(values) {
                        if value.is_some() {
                            *slot = value;
                        }
                    }
                }
                None => out.push(Row {
                    labels,
                    drop_name: return_bool,
                    values,
                }),
            }
        }
    }

    // `group_*` matching: the results of one signature must differ at every step.
    for ((sig, _), pairs) in &results {
        if pairs.len() < 2 {
            continue;
        }
        for (step, &proceeds) in proceed.iter().enumerate() {
            if !proceeds {
                continue;
            }
            let at = groups.one_at(one, *sig, step);
            let live = pairs
                .iter()
                .filter(|&&(row, partner)| {
                    many[row].values[step].is_some()
                        && match at {
                            Some(position) => partner == position,
                            None => fill_one.is_some() && partner == groups.one_of[*sig].len(),
                        }
                })
                .count();
            if live > 1 {
                first_error.note(step);
                break;
            }
        }
    }

    if let Some(fill) = fill_many {
        for (index, one_row) in one.iter().enumerate() {
            if index % INTERRUPT_EVERY == 0 {
                ev.check_interrupt("query execution")?;
            }
            let sig = groups.one_sig[index];
            let mut active = false;
            let mut values: Option<Vec<Option<f64>>> = None;
            for (step, one_value) in one_row.values.iter().enumerate() {
                let Some(one_value) = *one_value else {
                    continue;
                };
                if !proceed[step] || groups.many_present(many, sig, step) {
                    continue;
                }
                active = true;
                let (l, r) = if swapped {
                    (one_value, fill)
                } else {
                    (fill, one_value)
                };
                if let Some(value) = combine(op, l, r, return_bool) {
                    values.get_or_insert_with(|| vec![None; len])[step] = Some(value);
                }
            }
            if let (true, Some(values)) = (active, values) {
                out.push(Row {
                    labels: result_labels(&groups.labels[sig], &one_row.labels, op, matching),
                    drop_name: return_bool,
                    values,
                });
            }
        }
    }

    if let Some(step) = first_error.0 {
        // Should the per-step kernel find nothing wrong there, the rows above are right.
        step_error(op, lhs, rhs, matching, return_bool, grid, step)?;
    }
    Ok(out)
}

/// The result of one pair: `None` where a filtering comparison does not hold.
fn combine(op: Op, lhs: f64, rhs: f64, return_bool: bool) -> Option<f64> {
    let (value, holds) = apply(op, lhs, rhs);
    if return_bool {
        Some(if holds { 1.0 } else { 0.0 })
    } else {
        holds.then_some(value)
    }
}

/// Whether each step has some row present.
fn any_present(rows: &[Row], len: usize) -> Vec<bool> {
    let mut any = vec![false; len];
    for row in rows {
        for (seen, value) in any.iter_mut().zip(&row.values) {
            *seen |= value.is_some();
        }
    }
    any
}

/// Runs the per-step kernel at `step` alone, for its error.
fn step_error(
    op: Op,
    lhs: &[Row],
    rhs: &[Row],
    matching: &Matching,
    return_bool: bool,
    grid: Grid,
    step: usize,
) -> Result<()> {
    let ts = grid.ts(step);
    let elements = |rows: &[Row]| -> Vec<Element> {
        rows.iter()
            .filter_map(|row| {
                Some(Element {
                    labels: row.labels.clone(),
                    t: ts,
                    v: row.values[step]?,
                    drop_name: row.drop_name,
                })
            })
            .collect()
    };
    crate::binary::vector_vector(op, elements(lhs), elements(rhs), matching, return_bool, ts)
        .map(|_| ())
}
