//! Deeply nested queries: a bound on their depth, and the stack their recursion needs.
//!
//! Parsing (`promql-parser` builds and type-checks nodes recursively), our syntax checker,
//! planning, evaluation, printing and even dropping a syntax tree recurse once per level of
//! nesting. A 6 KB query of 3,000 unary minuses or 8,000 parentheses is enough to overflow a
//! thread's 2 MiB stack, and a stack overflow aborts the whole process. Prometheus (whose Go
//! stacks grow) answers such queries, so we do too, up to [`MAX_DEPTH`] levels:
//!
//! - [`parse`](crate::parse_expr) bounds the depth from the tokens in one pass, without
//!   recursion (`syntax::depth_bound`), and refuses a query deeper than [`MAX_DEPTH`] with a
//!   parse error before anything recursive runs;
//! - every recursive walk over a tree ([`with_stack`]) runs where at least
//!   [`STACK_PER_LEVEL`] bytes per level are free: on the caller's stack when it has room (every
//!   ordinary query), otherwise on a stack segment allocated for the call and freed after it;
//! - a parsed tree is a [`ParsedExpr`], which drops its tree the same way.

use std::ops::Deref;

use promql_parser::parser::Expr;

use crate::error::{Error, Result};

/// The deepest nesting a query may have: levels of operators and brackets, as bounded by
/// `syntax::depth_bound`.
pub const MAX_DEPTH: usize = 10_000;

/// Stack bytes one level of nesting may take in the deepest recursion over a tree (the parser's
/// node checks, evaluation, printing), with room to spare: the `deep_nesting` tests' worst shape
/// (nested function calls, evaluated) needs between 8 and 16 KiB a level in a debug build. Only
/// the pages a query touches are ever resident.
pub(crate) const STACK_PER_LEVEL: usize = 32 * 1024;

/// Most a query's depth times its length may be for [`ParsedExpr::prettify`] (about 0.25 s of
/// printing in the worst shapes measured).
pub const MAX_FORMAT_COST: usize = 4_000_000;

/// Stack kept free for the work around the recursion.
const STACK_BASE: usize = 256 * 1024;

/// An upper bound of the depth of the tree `query` parses to (the bound [`parse_expr`]
/// checks against [`MAX_DEPTH`]), found in one pass over its tokens without recursion.
///
/// [`parse_expr`]: crate::parse_expr
pub fn depth_bound(query: &str) -> usize {
    crate::syntax::depth_bound(query)
}

/// Runs `f`, a recursion at most `depth` levels deep, where the stack has room for it.
pub(crate) fn with_stack<R>(depth: usize, f: impl FnOnce() -> R) -> R {
    let needed = depth
        .saturating_mul(STACK_PER_LEVEL)
        .saturating_add(STACK_BASE);
    stacker::maybe_grow(needed, needed.saturating_add(STACK_BASE), f)
}

/// The depth of a syntax tree (1 for a leaf), found without recursion.
pub fn expr_depth(expr: &Expr) -> usize {
    let mut deepest = 0;
    let mut pending: Vec<(&Expr, usize)> = vec![(expr, 1)];
    while let Some((node, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        let below = depth + 1;
        match node {
            Expr::Aggregate(aggregate) => {
                pending.push((&aggregate.expr, below));
                if let Some(param) = &aggregate.param {
                    pending.push((param, below));
                }
            }
            Expr::Unary(unary) => pending.push((&unary.expr, below)),
            Expr::Binary(binary) => {
                pending.push((&binary.lhs, below));
                pending.push((&binary.rhs, below));
            }
            Expr::Paren(paren) => pending.push((&paren.expr, below)),
            Expr::Subquery(subquery) => pending.push((&subquery.expr, below)),
            Expr::Call(call) => pending.extend(call.args.args.iter().map(|arg| (&**arg, below))),
            Expr::Extension(extension) => {
                pending.extend(extension.expr.children().iter().map(|child| (child, below)));
            }
            Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_) => {}
        }
    }
    deepest
}

/// A parsed query: the syntax tree of [`parse_expr`](crate::parse_expr), which dereferences to
/// `promql-parser`'s [`Expr`] and is dropped on a stack deep enough for it, wherever it is
/// dropped.
#[derive(Debug)]
pub struct ParsedExpr {
    expr: Option<Expr>,
    depth: usize,
    /// Length of the query text it was parsed from.
    text_len: usize,
}

impl ParsedExpr {
    pub(crate) fn new(expr: Expr, text_len: usize) -> Self {
        let depth = expr_depth(&expr);
        Self {
            expr: Some(expr),
            depth,
            text_len,
        }
    }

    /// The tree's depth (1 for a single selector or literal).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The query in Prometheus' canonical multi-line form (`/api/v1/format_query`).
    ///
    /// `promql-parser`'s printer prints every node's subtree again at each level above it, so its
    /// time grows with the depth times the printed size (and faster for deep trees: 0.55 s for a
    /// 19 KB query 512 levels deep, minutes for 8,000 parentheses). A query whose depth times
    /// length exceeds [`MAX_FORMAT_COST`] is refused with a parse error rather than tie up a CPU.
    pub fn prettify(&self) -> Result<String> {
        let cost = self.depth.saturating_mul(self.text_len);
        if cost > MAX_FORMAT_COST {
            return Err(Error::Parse {
                message: format!(
                    "query is too deeply nested to format: {} levels deep and {} bytes long \
                     (depth times length may be at most {MAX_FORMAT_COST})",
                    self.depth, self.text_len
                ),
            });
        }
        Ok(with_stack(self.depth, || self.deref().prettify()))
    }
}

impl Deref for ParsedExpr {
    type Target = Expr;

    fn deref(&self) -> &Expr {
        // Only `drop` takes the tree out.
        static EMPTY: Expr = Expr::NumberLiteral(promql_parser::parser::NumberLiteral { val: 0.0 });
        self.expr.as_ref().unwrap_or(&EMPTY)
    }
}

impl Drop for ParsedExpr {
    fn drop(&mut self) {
        if let Some(expr) = self.expr.take() {
            with_stack(self.depth, move || drop(expr));
        }
    }
}
