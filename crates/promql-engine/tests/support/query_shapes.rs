//! The classes of query ([`Shape`]) the differential test must cover (issue #22's list, plus a
//! few function families), with their names in the printed tally.

macro_rules! shapes {
    ($($variant:ident => $name:literal,)*) => {
        /// A class of query the issue requires the differential test to cover.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub(crate) enum Shape {
            $($variant,)*
        }

        impl Shape {
            /// Every shape, in tally order.
            pub(crate) const ALL: &'static [Shape] = &[$(Shape::$variant,)*];

            /// The tally's name of the shape.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Shape::$variant => $name,)*
                }
            }
        }
    };
}

shapes! {
    InstantQuery => "instant query",
    RangeQuery => "range query",
    MatchEqual => "matcher =",
    MatchNotEqual => "matcher !=",
    MatchRegex => "matcher =~",
    MatchNotRegex => "matcher !~",
    RateFamily => "rate/irate/increase",
    CounterChanges => "resets/changes",
    DeltaFamily => "delta/idelta",
    Regression => "deriv/predict_linear",
    OverTime => "avg/min/max/sum/count/last/present_over_time",
    OverTimeStatistics => "quantile/stddev/stdvar_over_time",
    AbsentOverTime => "absent_over_time",
    Sum => "sum",
    Avg => "avg",
    Min => "min",
    Max => "max",
    Count => "count",
    Stddev => "stddev",
    Stdvar => "stdvar",
    Group => "group",
    Topk => "topk",
    Bottomk => "bottomk",
    Quantile => "quantile",
    CountValues => "count_values",
    VectorScalar => "vector-scalar arithmetic",
    ScalarScalar => "scalar-scalar arithmetic",
    OneToOne => "vector-vector one-to-one",
    On => "on",
    Ignoring => "ignoring",
    GroupLeft => "group_left",
    GroupRight => "group_right",
    ComparisonFilter => "comparison filter",
    ComparisonBool => "comparison bool",
    And => "and",
    Or => "or",
    Unless => "unless",
    Subquery => "subquery",
    NestedSubquery => "nested subquery",
    LabelReplace => "label_replace",
    LabelJoin => "label_join",
    HistogramQuantile => "histogram_quantile",
    Absent => "absent",
    AtTimestamp => "@ timestamp",
    AtStart => "@ start()",
    AtEnd => "@ end()",
    Offset => "offset",
    UnaryMinus => "unary minus",
    ScalarFunction => "scalar()",
    VectorFunction => "vector()",
    Time => "time()",
    Timestamp => "timestamp()",
    MathFunction => "abs/ceil/floor/round/sqrt/ln/exp/sgn",
    Clamp => "clamp/clamp_min/clamp_max",
    Sort => "sort/sort_desc",
}
