//! `info(v, [selector])`: enriches series with the data labels of matching info metrics
//! (`target_info` by default), joined on the identifying labels `instance` and `job`.

use std::collections::{BTreeMap, HashMap};

use prom_model::{Labels, METRIC_NAME, MatchType, Matcher, is_stale_nan};
use promql_parser::parser::Expr;

use crate::error::{Error, Result};
use crate::eval::{Evaluator, StepValue};
use crate::parse::{at_ms, matcher_sets, offset_ms};
use crate::storage::SelectHints;
use crate::value::Element;

const TARGET_INFO: &str = "target_info";
const IDENTIFYING_LABELS: [&str; 2] = ["instance", "job"];

/// Where the info series are looked up: the `@` time and offset of the first vector selector of
/// the expression, with the offsets (and, lacking its own, the `@`) of enclosing subqueries.
fn lookup_time(ev: &Evaluator<'_>, expr: &Expr) -> Option<(Option<i64>, i64)> {
    match expr {
        Expr::VectorSelector(selector) => Some((
            at_ms(selector.at.as_ref(), ev.start, ev.end),
            offset_ms(selector.offset.as_ref()),
        )),
        Expr::MatrixSelector(matrix) => Some((
            at_ms(matrix.vs.at.as_ref(), ev.start, ev.end),
            offset_ms(matrix.vs.offset.as_ref()),
        )),
        Expr::Paren(paren) => lookup_time(ev, &paren.expr),
        Expr::Unary(unary) => lookup_time(ev, &unary.expr),
        Expr::Subquery(subquery) => {
            let (at, offset) = lookup_time(ev, &subquery.expr)?;
            if at.is_some() {
                return Some((at, offset));
            }
            Some((
                at_ms(subquery.at.as_ref(), ev.start, ev.end),
                offset + offset_ms(subquery.offset.as_ref()),
            ))
        }
        Expr::Binary(binary) => {
            lookup_time(ev, &binary.lhs).or_else(|| lookup_time(ev, &binary.rhs))
        }
        Expr::Aggregate(aggregate) => lookup_time(ev, &aggregate.expr),
        Expr::Call(call) => call.args.args.iter().find_map(|arg| lookup_time(ev, arg)),
        _ => None,
    }
}

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

pub(crate) fn eval(ev: &mut Evaluator<'_>, args: &[&Expr], ts: i64) -> Result<StepValue> {
    let base_expr = args
        .first()
        .ok_or_else(|| Error::exec("info requires an argument"))?;
    let base = ev.eval_vector(base_expr, ts)?;
    let mut data_matchers: BTreeMap<String, Vec<Matcher>> = BTreeMap::new();
    let mut name_matchers = Vec::new();
    match args.get(1).map(|arg| crate::parse::unwrap_parens(arg)) {
        Some(Expr::VectorSelector(selector)) => {
            for matcher in matcher_sets(selector)?
                .into_iter()
                .next()
                .unwrap_or_default()
            {
                if matcher.name() == METRIC_NAME {
                    name_matchers.push(matcher);
                } else {
                    data_matchers
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
        None => name_matchers.push(Matcher::equal(METRIC_NAME, TARGET_INFO)),
    }
    let effective = effective_name_matchers(name_matchers.clone())?;
    let ignored: Vec<bool> = base
        .iter()
        .map(|element| {
            let name = element.labels.metric_name().unwrap_or("");
            effective.iter().all(|m| m.matches(name))
        })
        .collect();

    let mut id_values: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (element, ignore) in base.iter().zip(&ignored) {
        if *ignore {
            continue;
        }
        for label in IDENTIFYING_LABELS {
            if let Some(value) = element.labels.get(label) {
                let values = id_values.entry(label).or_default();
                if !values.iter().any(|v| v == value) {
                    values.push(value.to_string());
                }
            }
        }
    }

    // Info series at this step: signature -> (labels, sample time).
    let mut infos: HashMap<Labels, (Labels, i64)> = HashMap::new();
    let mut info_names: Vec<String> = Vec::new();
    if !id_values.is_empty() {
        let mut matchers = Vec::new();
        for (name, values) in &id_values {
            let pattern: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
            matchers.push(regex_matcher(name, &pattern.join("|"))?);
        }
        for list in data_matchers.values() {
            matchers.extend(list.iter().cloned());
        }
        matchers.extend(effective_name_matchers(name_matchers)?);
        let (at, offset) = lookup_time(ev, base_expr).unwrap_or((None, 0));
        let reference = at.unwrap_or(ts) - offset;
        let hints = SelectHints {
            start: reference - ev.settings.lookback_delta + 1,
            end: reference,
            step: ev.step,
            func: Some("info".to_string()),
            ..SelectHints::default()
        };
        for series in ev.storage.select(&matchers, &hints)? {
            let series = series?;
            let mut latest = None;
            for sample in series.samples {
                let sample = sample?;
                if sample.t > reference - ev.settings.lookback_delta && sample.t <= reference {
                    latest = Some(sample);
                }
            }
            let Some(sample) = latest.filter(|s| !is_stale_nan(s.v)) else {
                continue;
            };
            let name = series.labels.metric_name().unwrap_or("").to_string();
            let sig = signature(&name, &series.labels);
            if !info_names.contains(&name) {
                info_names.push(name);
            }
            match infos.get(&sig) {
                Some((existing, existing_t)) if *existing_t == sample.t => {
                    return Err(Error::exec(format!(
                        "found duplicate series for info metric: existing {existing} @ {existing_t}, new {} @ {}",
                        series.labels, sample.t
                    )));
                }
                Some((_, existing_t)) if *existing_t > sample.t => {}
                _ => {
                    infos.insert(sig, (series.labels, sample.t));
                }
            }
        }
    }

    let mut out = Vec::with_capacity(base.len());
    for (element, ignore) in base.into_iter().zip(ignored) {
        if ignore {
            out.push(element);
            continue;
        }
        let mut added = Labels::empty();
        let mut seen_any = false;
        for name in &info_names {
            let Some((info_labels, _)) = infos.get(&signature(name, &element.labels)) else {
                continue;
            };
            for label in info_labels.iter() {
                if label.name == METRIC_NAME {
                    continue;
                }
                if !data_matchers.is_empty() && !data_matchers.contains_key(&label.name) {
                    continue;
                }
                if let Some(value) = added.get(&label.name)
                    && value != label.value
                {
                    return Err(Error::exec(format!("conflicting label: {}", label.name)));
                }
                if element.labels.get(&label.name).is_some() {
                    continue;
                }
                added.set(label.name.clone(), label.value.clone());
            }
            seen_any = true;
        }
        if !seen_any && !data_matchers.values().flatten().all(Matcher::matches_empty) {
            continue;
        }
        let mut labels = element.labels;
        for label in added.iter() {
            labels.set(label.name.clone(), label.value.clone());
        }
        out.push(Element {
            labels,
            t: ts,
            v: element.v,
            drop_name: element.drop_name,
        });
    }
    Ok(StepValue::Vector(out))
}
