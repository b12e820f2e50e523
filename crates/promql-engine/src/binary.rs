//! Binary operators: arithmetic, comparisons, set operators and vector matching.

use std::collections::{HashMap, HashSet};

use prom_model::Labels;

use crate::engine::drop_metadata_labels;
use crate::error::{Error, Result};
use crate::value::Element;

/// The binary operators PromQL knows, by their token text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    /// The operator named by `token`.
    pub(crate) fn parse(token: &str) -> Result<Self> {
        Ok(match token {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(Error::exec(format!("operator {other:?} is not supported"))),
        })
    }

    /// `==`, `!=`, `>`, `<`, `>=`, `<=`.
    pub(crate) fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// `and`, `or`, `unless`.
    pub(crate) fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }
}

/// Applies `op` to two floats: the arithmetic result, or for comparisons the left value and
/// whether the comparison holds.
pub(crate) fn apply(op: Op, lhs: f64, rhs: f64) -> (f64, bool) {
    match op {
        Op::Add => (lhs + rhs, true),
        Op::Sub => (lhs - rhs, true),
        Op::Mul => (lhs * rhs, true),
        Op::Div => (lhs / rhs, true),
        Op::Mod => (go_mod(lhs, rhs), true),
        Op::Pow => (go_pow(lhs, rhs), true),
        Op::Atan2 => (lhs.atan2(rhs), true),
        Op::Eq => (lhs, lhs == rhs),
        Op::Ne => (lhs, lhs != rhs),
        Op::Gt => (lhs, lhs > rhs),
        Op::Lt => (lhs, lhs < rhs),
        Op::Ge => (lhs, lhs >= rhs),
        Op::Le => (lhs, lhs <= rhs),
        Op::And | Op::Or | Op::Unless => (lhs, true),
    }
}

/// Go's `math.Mod`: the result has the sign of `x`; NaN for `y == 0` or infinite `x`.
fn go_mod(x: f64, y: f64) -> f64 {
    if y == 0.0 || x.is_infinite() || x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    x % y
}

/// Go's `math.Pow` special cases differ from `powf` only for `1^NaN` and `(-1)^±Inf`.
fn go_pow(x: f64, y: f64) -> f64 {
    if x == 1.0 {
        return 1.0;
    }
    if y.is_nan() || x.is_nan() {
        return f64::NAN;
    }
    if x == -1.0 && y.is_infinite() {
        return 1.0;
    }
    x.powf(y)
}

/// Whether the result of `op` is no longer the metric of its operand (arithmetic).
pub(crate) fn changes_metric_schema(op: Op) -> bool {
    matches!(
        op,
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow | Op::Atan2
    )
}

/// How two vectors are matched: `on`/`ignoring` labels, cardinality, `group_*` labels, fill.
/// How two vectors' series are matched: the plan's [`VectorMatching`], built once per query.
pub(crate) use crate::plan::VectorMatching as Matching;

/// The cardinality of a vector matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

impl Matching {
    /// The labels two elements must agree on.
    pub(crate) fn signature(&self, labels: &Labels) -> Labels {
        crate::plan::project(labels, &self.labels, self.on)
    }
}

/// One step of an arithmetic or comparison operation between two vectors.
pub(crate) fn vector_vector(
    op: Op,
    lhs: Vec<Element>,
    rhs: Vec<Element>,
    matching: &Matching,
    return_bool: bool,
    ts: i64,
) -> Result<Vec<Element>> {
    let has_fill = matching.fill_lhs.is_some() || matching.fill_rhs.is_some();
    if (lhs.is_empty() && rhs.is_empty()) || ((lhs.is_empty() || rhs.is_empty()) && !has_fill) {
        return Ok(Vec::new());
    }
    let swapped = matching.card == Card::OneToMany;
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    // As in Prometheus, the fill values are not swapped with the sides: `fill_right` pads a
    // missing partner of the "many" side, `fill_left` an unmatched element of the "one" side.
    let (fill_many, fill_one) = (matching.fill_lhs, matching.fill_rhs);

    let mut one_by_signature: HashMap<Labels, usize> = HashMap::new();
    for (index, element) in one.iter().enumerate() {
        let signature = matching.signature(&element.labels);
        if let Some(&previous) = one_by_signature.get(&signature) {
            let side = if swapped { "left" } else { "right" };
            let mut pair = [element.labels.to_string(), one[previous].labels.to_string()];
            pair.sort();
            return Err(Error::exec(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                match_labels_display(&element.labels, matching),
                pair[0],
                pair[1]
            )));
        }
        one_by_signature.insert(signature, index);
    }

    let mut state = MatchState {
        op,
        matching,
        swapped,
        return_bool,
        ts,
        matched_one_to_one: HashSet::new(),
        matched_many: HashMap::new(),
        out: Vec::new(),
    };
    for many_el in &many {
        let signature = matching.signature(&many_el.labels);
        match one_by_signature.get(&signature) {
            Some(&index) => state.apply_pair(many_el, &one[index], &signature)?,
            None => {
                let Some(fill) = fill_one else { continue };
                let filler = Element {
                    labels: match_labels(&many_el.labels, matching),
                    t: ts,
                    v: fill,
                    drop_name: false,
                };
                state.apply_pair(many_el, &filler, &signature)?;
            }
        }
    }
    if let Some(fill) = fill_many {
        for one_el in &one {
            let signature = matching.signature(&one_el.labels);
            let already = if matching.card == Card::OneToOne {
                state.matched_one_to_one.contains(&signature)
            } else {
                state
                    .matched_many
                    .get(&signature)
                    .is_some_and(|set| !set.is_empty())
            };
            if already {
                continue;
            }
            let filler = Element {
                labels: match_labels(&one_el.labels, matching),
                t: ts,
                v: fill,
                drop_name: false,
            };
            state.apply_pair(&filler, one_el, &signature)?;
        }
    }
    Ok(state.out)
}

/// Bookkeeping of one vector-vector operation.
struct MatchState<'m> {
    op: Op,
    matching: &'m Matching,
    swapped: bool,
    return_bool: bool,
    ts: i64,
    matched_one_to_one: HashSet<Labels>,
    matched_many: HashMap<Labels, HashSet<Labels>>,
    out: Vec<Element>,
}

impl MatchState<'_> {
    fn apply_pair(
        &mut self,
        many_el: &Element,
        one_el: &Element,
        signature: &Labels,
    ) -> Result<()> {
        let (l, r) = if self.swapped {
            (one_el.v, many_el.v)
        } else {
            (many_el.v, one_el.v)
        };
        let (mut value, keep) = apply(self.op, l, r);
        if self.return_bool {
            value = if keep { 1.0 } else { 0.0 };
        }
        let labels = result_labels(&many_el.labels, &one_el.labels, self.op, self.matching);
        if self.matching.card == Card::OneToOne {
            if !self.matched_one_to_one.insert(signature.clone()) {
                return Err(Error::exec(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
        } else {
            let inserted = self.matched_many.entry(signature.clone()).or_default();
            if !inserted.insert(labels.clone()) {
                return Err(Error::exec(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                ));
            }
        }
        if !keep && !self.return_bool {
            return Ok(());
        }
        self.out.push(Element {
            labels,
            t: self.ts,
            v: value,
            drop_name: self.return_bool,
        });
        Ok(())
    }
}

/// `MatchLabels` of Prometheus: the `on` labels, or everything but the ignored labels and the name.
fn match_labels(labels: &Labels, matching: &Matching) -> Labels {
    matching.signature(labels)
}

fn match_labels_display(labels: &Labels, matching: &Matching) -> String {
    match_labels(labels, matching).to_string()
}

/// The labels of the result of matching `many` with `one`.
pub(crate) fn result_labels(many: &Labels, one: &Labels, op: Op, matching: &Matching) -> Labels {
    let mut labels = many.clone();
    if changes_metric_schema(op) {
        labels = drop_metadata_labels(&labels);
    }
    if matching.card == Card::OneToOne {
        if matching.on {
            labels = crate::plan::project(&labels, &matching.labels, true);
        } else {
            let names: Vec<&str> = matching.labels.iter().map(String::as_str).collect();
            labels = labels.without(&names);
        }
    }
    for name in &matching.include {
        match one.get(name) {
            Some(value) => labels.set(name.clone(), value.to_string()),
            None => {
                labels.remove(name);
            }
        }
    }
    labels
}
