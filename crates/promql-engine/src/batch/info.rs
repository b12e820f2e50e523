//! `info(v, [selector])` over a grid: enriches series with the data labels of matching info
//! metrics (`target_info` by default), joined on the identifying labels `instance` and `job`.
//!
//! At each step, the info series considered are those whose identifying labels take a value
//! some enriched input series has at that step, that match the selector's data matchers and
//! name matchers, and whose newest sample in the lookback window before the lookup time (the
//! `@` time and offset of the input's first selector) is not a stale marker. An input series
//! whose name matches the info metric names is passed through unchanged; another one receives
//! the data labels of the info series sharing its identifying labels (two info series with one
//! signature and sample time fail, two that disagree on a label fail, labels the series already
//! has are kept) and is dropped when none matches and the data matchers do not accept an empty
//! value.
//!
//! The info series are selected once for the whole grid; each step keeps the ones its input
//! asks for. An input series' output labels are recomputed only when the info series matching
//! it change from one step to the next.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use prom_model::{Labels, METRIC_NAME, MatchType, Matcher, is_stale_nan};

use super::{Batch, Grid, Row};
use crate::error::{Error, Result};
use crate::eval::{Evaluator, decode_points};
use crate::plan::{Node, NodeKind};
use crate::storage::SelectHints;
use crate::value::Point;

const TARGET_INFO: &str = "target_info";
const IDENTIFYING_LABELS: [&str; 2] = ["instance", "job"];
/// How many series are handled between two interrupt checks.
const INTERRUPT_EVERY: usize = 256;

/// Evaluates `info(args...)` at every step of `grid`.
pub(super) fn eval(ev: &mut Evaluator<'_>, args: &[Node], grid: Grid) -> Result<Batch> {
    let base_expr = args
        .first()
        .ok_or_else(|| Error::exec("info requires an argument"))?;
    let base = super::functions::vector(ev, args, 0, grid)?;
    let filter = Filter::of(args.get(1))?;
    let effective = effective_name_matchers(filter.name_matchers.clone())?;
    let ignored: Vec<bool> = base
        .iter()
        .map(|row| {
            let name = row.labels.metric_name().unwrap_or("");
            effective.iter().all(|m| m.matches(name))
        })
        .collect();
    let (at, offset) = lookup_time(base_expr).unwrap_or((None, 0));
    let references: Vec<i64> = grid
        .timestamps()
        .map(|ts| at.unwrap_or(ts).saturating_sub(offset))
        .collect();
    let wanted = Wanted::of(&base, &ignored, grid.len);
    let infos = select_infos(ev, &filter, &wanted, &references)?;
    // The names of the info metrics in the order they were met, and each input series'
    // signature under each of them.
    let mut names: Vec<&str> = Vec::new();
    for info in &infos {
        if !names.contains(&info.name.as_str()) {
            names.push(&info.name);
        }
    }
    let signatures: Vec<Vec<Labels>> = base
        .iter()
        .map(|row| {
            names
                .iter()
                .map(|name| signature(name, &row.labels))
                .collect()
        })
        .collect();

    let mut out: Vec<(usize, Row)> = Vec::new();
    let mut index_of: HashMap<(Labels, bool), usize> = HashMap::new();
    // Per input series: the info series it matched at its previous step and its output row.
    let mut previous: Vec<Option<(Vec<usize>, Option<usize>)>> = vec![None; base.len()];
    for (step, &reference) in references.iter().enumerate() {
        ev.check_interrupt("query execution")?;
        let lookback_start = reference.saturating_sub(ev.settings.lookback_delta);
        // The info series at this step, by signature (the newest sample wins).
        let mut at_step: HashMap<&Labels, (usize, i64)> = HashMap::new();
        let mut step_names: Vec<usize> = Vec::new();
        if !wanted.is_empty_at(step) {
            for (index, info) in infos.iter().enumerate() {
                if !wanted.accepts(step, &info.labels) {
                    continue;
                }
                let Some(t) = info.newest(lookback_start, reference) else {
                    continue;
                };
                let name = names.iter().position(|name| *name == info.name);
                if let Some(name) = name
                    && !step_names.contains(&name)
                {
                    step_names.push(name);
                }
                match at_step.get(&info.signature) {
                    Some(&(existing, existing_t)) if existing_t == t => {
                        return Err(Error::exec(format!(
                            "found duplicate series for info metric: existing {} @ {existing_t}, new {} @ {t}",
                            infos[existing].labels, info.labels
                        )));
                    }
                    Some(&(_, existing_t)) if existing_t > t => {}
                    _ => {
                        at_step.insert(&info.signature, (index, t));
                    }
                }
            }
        }
        for (row_index, row) in base.iter().enumerate() {
            if row_index % INTERRUPT_EVERY == 0 && row_index > 0 {
                ev.check_interrupt("query execution")?;
            }
            let Some(v) = row.values[step] else { continue };
            let target = if ignored[row_index] {
                Some(output_row(
                    &mut out,
                    &mut index_of,
                    (row.labels.clone(), row.drop_name),
                    (row_index, grid.len),
                ))
            } else {
                let matched: Vec<usize> = step_names
                    .iter()
                    .filter_map(|&name| {
                        at_step
                            .get(&signatures[row_index][name])
                            .map(|&(index, _)| index)
                    })
                    .collect();
                match &previous[row_index] {
                    Some((last, target)) if *last == matched => *target,
                    _ => {
                        let labels = enriched(&row.labels, &matched, &infos, &filter)?;
                        let target = labels.map(|labels| {
                            output_row(
                                &mut out,
                                &mut index_of,
                                (labels, row.drop_name),
                                (row_index, grid.len),
                            )
                        });
                        previous[row_index] = Some((matched, target));
                        target
                    }
                }
            };
            if let Some(target) = target
                && out[target].1.values[step].replace(v).is_some()
            {
                return Err(Error::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
        }
    }
    // Listed in the order of the input rows that produced them, so each step sees its
    // elements in the input's order (as an aggregation over them must).
    out.sort_by_key(|(creator, _)| *creator);
    Ok(Batch::Vector(out.into_iter().map(|(_, row)| row).collect()))
}

/// The index of the output row `key`, added (empty, with the index of the input row `creator`
/// producing it) if new.
fn output_row(
    out: &mut Vec<(usize, Row)>,
    index_of: &mut HashMap<(Labels, bool), usize>,
    key: (Labels, bool),
    (creator, len): (usize, usize),
) -> usize {
    if let Some(&index) = index_of.get(&key) {
        return index;
    }
    out.push((
        creator,
        Row {
            labels: key.0.clone(),
            drop_name: key.1,
            values: vec![None; len],
        },
    ));
    index_of.insert(key, out.len() - 1);
    out.len() - 1
}

/// `labels` with the data labels of the `matched` info series, or `None` when the series is
/// dropped (no info series matched and the data matchers need a value).
fn enriched(
    labels: &Labels,
    matched: &[usize],
    infos: &[InfoSeries],
    filter: &Filter,
) -> Result<Option<Labels>> {
    if matched.is_empty() {
        let keeps = filter
            .data_matchers
            .values()
            .flatten()
            .all(Matcher::matches_empty);
        return Ok(keeps.then(|| labels.clone()));
    }
    let mut added = Labels::empty();
    for &index in matched {
        for label in infos[index].labels.iter() {
            if label.name == METRIC_NAME {
                continue;
            }
            if !filter.data_matchers.is_empty() && !filter.data_matchers.contains_key(&label.name) {
                continue;
            }
            if let Some(value) = added.get(&label.name)
                && value != label.value
            {
                return Err(Error::exec(format!("conflicting label: {}", label.name)));
            }
            if labels.get(&label.name).is_some() {
                continue;
            }
            added.set(label.name.clone(), label.value.clone());
        }
    }
    let mut out = labels.clone();
    for label in added.iter() {
        out.set(label.name.clone(), label.value.clone());
    }
    Ok(Some(out))
}

/// The second argument's matchers: on the metric name, and on data labels by label.
#[derive(Debug)]
struct Filter {
    name_matchers: Vec<Matcher>,
    data_matchers: BTreeMap<String, Vec<Matcher>>,
}

impl Filter {
    fn of(arg: Option<&Node>) -> Result<Self> {
        let mut filter = Filter {
            name_matchers: Vec::new(),
            data_matchers: BTreeMap::new(),
        };
        match arg.map(|arg| &arg.kind) {
            Some(NodeKind::VectorSelector(selector)) => {
                for matcher in selector.matcher_sets.first().cloned().unwrap_or_default() {
                    if matcher.name() == METRIC_NAME {
                        filter.name_matchers.push(matcher);
                    } else {
                        filter
                            .data_matchers
                            .entry(matcher.name().to_string())
                            .or_default()
                            .push(matcher);
                    }
                }
            }
            Some(_) => {
                return Err(Error::exec(
                    "info's second argument must be a label selector",
                ));
            }
            None => filter
                .name_matchers
                .push(Matcher::equal(METRIC_NAME, TARGET_INFO)),
        }
        Ok(filter)
    }
}

/// The identifying label values the enriched input series have, step by step.
#[derive(Debug)]
struct Wanted {
    /// Per step, per identifying label, the values seen (empty map: nothing to look up).
    steps: Vec<BTreeMap<&'static str, Vec<String>>>,
}

impl Wanted {
    fn of(base: &[Row], ignored: &[bool], len: usize) -> Self {
        let mut steps: Vec<BTreeMap<&'static str, Vec<String>>> = vec![BTreeMap::new(); len];
        for (row, ignore) in base.iter().zip(ignored) {
            if *ignore {
                continue;
            }
            let present: Vec<(&'static str, &str)> = IDENTIFYING_LABELS
                .iter()
                .filter_map(|&label| row.labels.get(label).map(|value| (label, value)))
                .collect();
            if present.is_empty() {
                continue;
            }
            for (step, value) in row.values.iter().enumerate() {
                if value.is_none() {
                    continue;
                }
                for &(label, label_value) in &present {
                    let values = steps[step].entry(label).or_default();
                    if !values.iter().any(|v| v == label_value) {
                        values.push(label_value.to_string());
                    }
                }
            }
        }
        Self { steps }
    }

    fn is_empty_at(&self, step: usize) -> bool {
        self.steps[step].is_empty()
    }

    /// Whether an info series with `labels` would be selected at `step`: every identifying
    /// label with values at this step has one of them.
    fn accepts(&self, step: usize, labels: &Labels) -> bool {
        self.steps[step].iter().all(|(label, values)| {
            let value = labels.get(label).unwrap_or("");
            values.iter().any(|v| v == value)
        })
    }

    /// Matchers selecting every info series some step may accept: per identifying label that
    /// every step with values constrains, the union of its values.
    fn union_matchers(&self) -> Result<Vec<Matcher>> {
        let active: Vec<&BTreeMap<&'static str, Vec<String>>> =
            self.steps.iter().filter(|step| !step.is_empty()).collect();
        let mut matchers = Vec::new();
        for label in IDENTIFYING_LABELS {
            if !active.iter().all(|step| step.contains_key(label)) {
                continue;
            }
            let mut values: Vec<&str> = Vec::new();
            for step in &active {
                for value in step.get(label).into_iter().flatten() {
                    if !values.contains(&value.as_str()) {
                        values.push(value);
                    }
                }
            }
            let pattern: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
            matchers.push(regex_matcher(label, &pattern.join("|"))?);
        }
        Ok(matchers)
    }
}

/// One selected info series.
#[derive(Debug)]
struct InfoSeries {
    labels: Labels,
    name: String,
    signature: Labels,
    points: Vec<Point>,
}

impl InfoSeries {
    /// The time of the newest sample in `(after, upto]`, unless it is a stale marker.
    fn newest(&self, after: i64, upto: i64) -> Option<i64> {
        let end = self.points.partition_point(|p| p.t <= upto);
        let point = self.points.get(end.checked_sub(1)?)?;
        (point.t > after && !is_stale_nan(point.v)).then_some(point.t)
    }
}

/// The info series any step may use, with their samples over every step's lookback window.
fn select_infos(
    ev: &mut Evaluator<'_>,
    filter: &Filter,
    wanted: &Wanted,
    references: &[i64],
) -> Result<Vec<InfoSeries>> {
    if wanted.steps.iter().all(BTreeMap::is_empty) {
        return Ok(Vec::new());
    }
    let mut matchers = wanted.union_matchers()?;
    for list in filter.data_matchers.values() {
        matchers.extend(list.iter().cloned());
    }
    matchers.extend(effective_name_matchers(filter.name_matchers.clone())?);
    let first = references.iter().copied().min().unwrap_or(0);
    let last = references.iter().copied().max().unwrap_or(0);
    let hints = SelectHints {
        start: first
            .saturating_sub(ev.settings.lookback_delta)
            .saturating_add(1),
        end: last,
        step: ev.step,
        func: Some("info".to_string()),
        ..SelectHints::default()
    };
    let mut infos = Vec::new();
    for (index, series) in ev.storage.select(&matchers, &hints)?.enumerate() {
        if index % INTERRUPT_EVERY == 0 {
            ev.check_interrupt("query execution")?;
        }
        let series = series?;
        let points = decode_points(series.samples)?;
        let name = series.labels.metric_name().unwrap_or("").to_string();
        infos.push(InfoSeries {
            signature: signature(&name, &series.labels),
            name,
            labels: series.labels,
            points,
        });
    }
    Ok(infos)
}

/// Where the info series are looked up: the `@` time and offset of the first vector selector of
/// the expression, with the offsets (and, lacking its own, the `@`) of enclosing subqueries.
fn lookup_time(node: &Node) -> Option<(Option<i64>, i64)> {
    match &node.kind {
        NodeKind::VectorSelector(selector) | NodeKind::MatrixSelector { selector, .. } => {
            Some((selector.at_ms, selector.offset_ms))
        }
        NodeKind::Neg(inner) => lookup_time(inner),
        NodeKind::Subquery(subquery) => {
            let (at, offset) = lookup_time(&subquery.expr)?;
            if at.is_some() {
                return Some((at, offset));
            }
            Some((subquery.at_ms, offset.saturating_add(subquery.offset_ms)))
        }
        NodeKind::Binary(binary) => lookup_time(&binary.lhs).or_else(|| lookup_time(&binary.rhs)),
        NodeKind::Aggregate(aggregate) => lookup_time(&aggregate.expr),
        NodeKind::Call { args, .. } => args.iter().find_map(lookup_time),
        NodeKind::Number(_) | NodeKind::String(_) => None,
    }
}

/// The matchers on info metric names: the given ones if one is `=` or `=~`, otherwise the
/// given ones restricted to names ending in `_info`, or `target_info` when none is given.
fn effective_name_matchers(matchers: Vec<Matcher>) -> Result<Vec<Matcher>> {
    if matchers
        .iter()
        .any(|m| matches!(m.kind(), MatchType::Equal | MatchType::Regex))
    {
        return Ok(matchers);
    }
    if !matchers.is_empty() {
        let mut out = vec![regex_matcher(METRIC_NAME, ".+_info")?];
        out.extend(matchers);
        return Ok(out);
    }
    Ok(vec![Matcher::equal(METRIC_NAME, TARGET_INFO)])
}

fn regex_matcher(name: &str, pattern: &str) -> Result<Matcher> {
    Matcher::new(MatchType::Regex, name, pattern).map_err(|error| Error::exec(error.to_string()))
}

/// The join key of a series under info metric `name`: the name and the identifying labels.
fn signature(name: &str, labels: &Labels) -> Labels {
    let mut sig = Labels::empty();
    sig.set(METRIC_NAME, name);
    for label in IDENTIFYING_LABELS {
        if let Some(value) = labels.get(label) {
            sig.set(label, value);
        }
    }
    sig
}
