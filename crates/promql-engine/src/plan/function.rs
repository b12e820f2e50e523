//! The PromQL functions the engine evaluates, as an enum resolved once when a plan is built.

/// Declares [`Function`] with one variant per PromQL name, and the table between them.
macro_rules! functions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A PromQL function the engine evaluates: every function of Prometheus 3, including the
        /// experimental ones this crate implements (`info`, `mad_over_time`, `ts_of_*`,
        /// `double_exponential_smoothing`, `start_timestamp`, `max_of`/`min_of`,
        /// `histogram_quantiles`, the `start`/`end`/`range`/`step` time functions, ...).
        ///
        /// A name the parser accepts but the engine cannot evaluate (`integral`, functions a
        /// caller registered with the parser) has no variant: [`Function::from_name`] returns
        /// `None` and building the plan fails with the error evaluation raised before.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Function {
            $($(#[$doc])* $variant,)*
        }

        impl Function {
            /// Every function, in alphabetical order of its name.
            pub(crate) const ALL: &'static [Function] = &[$(Function::$variant,)*];

            /// The PromQL name.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Function::$variant => $name,)*
                }
            }
        }
    };
}

functions! {
    /// `abs(v)`.
    Abs => "abs",
    /// `absent(v)`: 1 with the selector's equality labels where `v` is empty.
    Absent => "absent",
    /// `absent_over_time(m)`.
    AbsentOverTime => "absent_over_time",
    /// `acos(v)`.
    Acos => "acos",
    /// `acosh(v)`.
    Acosh => "acosh",
    /// `asin(v)`.
    Asin => "asin",
    /// `asinh(v)`.
    Asinh => "asinh",
    /// `atan(v)`.
    Atan => "atan",
    /// `atanh(v)`.
    Atanh => "atanh",
    /// `avg_over_time(m)`.
    AvgOverTime => "avg_over_time",
    /// `ceil(v)`.
    Ceil => "ceil",
    /// `changes(m)`.
    Changes => "changes",
    /// `clamp(v, min, max)`.
    Clamp => "clamp",
    /// `clamp_max(v, max)`.
    ClampMax => "clamp_max",
    /// `clamp_min(v, min)`.
    ClampMin => "clamp_min",
    /// `cos(v)`.
    Cos => "cos",
    /// `cosh(v)`.
    Cosh => "cosh",
    /// `count_over_time(m)`.
    CountOverTime => "count_over_time",
    /// `day_of_month(v?)`.
    DayOfMonth => "day_of_month",
    /// `day_of_week(v?)`.
    DayOfWeek => "day_of_week",
    /// `day_of_year(v?)`.
    DayOfYear => "day_of_year",
    /// `days_in_month(v?)`.
    DaysInMonth => "days_in_month",
    /// `deg(v)`.
    Deg => "deg",
    /// `delta(m)`.
    Delta => "delta",
    /// `deriv(m)`.
    Deriv => "deriv",
    /// `double_exponential_smoothing(m, sf, tf)` (experimental).
    DoubleExponentialSmoothing => "double_exponential_smoothing",
    /// `end()`: the query's end time in seconds.
    End => "end",
    /// `exp(v)`.
    Exp => "exp",
    /// `first_over_time(m)` (experimental).
    FirstOverTime => "first_over_time",
    /// `floor(v)`.
    Floor => "floor",
    /// `histogram_avg(v)`.
    HistogramAvg => "histogram_avg",
    /// `histogram_count(v)`.
    HistogramCount => "histogram_count",
    /// `histogram_fraction(lower, upper, v)`.
    HistogramFraction => "histogram_fraction",
    /// `histogram_quantile(q, v)`.
    HistogramQuantile => "histogram_quantile",
    /// `histogram_quantiles(v, label, q...)` (experimental).
    HistogramQuantiles => "histogram_quantiles",
    /// `histogram_stddev(v)`.
    HistogramStddev => "histogram_stddev",
    /// `histogram_stdvar(v)`.
    HistogramStdvar => "histogram_stdvar",
    /// `histogram_sum(v)`.
    HistogramSum => "histogram_sum",
    /// `hour(v?)`.
    Hour => "hour",
    /// `idelta(m)`.
    Idelta => "idelta",
    /// `increase(m)`.
    Increase => "increase",
    /// `info(v, selector?)` (experimental).
    Info => "info",
    /// `irate(m)`.
    Irate => "irate",
    /// `label_join(v, dst, sep, src...)`.
    LabelJoin => "label_join",
    /// `label_replace(v, dst, replacement, src, regex)`.
    LabelReplace => "label_replace",
    /// `last_over_time(m)`.
    LastOverTime => "last_over_time",
    /// `ln(v)`.
    Ln => "ln",
    /// `log10(v)`.
    Log10 => "log10",
    /// `log2(v)`.
    Log2 => "log2",
    /// `mad_over_time(m)` (experimental).
    MadOverTime => "mad_over_time",
    /// `max_of(a, b, ...)` (experimental).
    MaxOf => "max_of",
    /// `max_over_time(m)`.
    MaxOverTime => "max_over_time",
    /// `min_of(a, b, ...)` (experimental).
    MinOf => "min_of",
    /// `min_over_time(m)`.
    MinOverTime => "min_over_time",
    /// `minute(v?)`.
    Minute => "minute",
    /// `month(v?)`.
    Month => "month",
    /// `pi()`.
    Pi => "pi",
    /// `predict_linear(m, t)`.
    PredictLinear => "predict_linear",
    /// `present_over_time(m)`.
    PresentOverTime => "present_over_time",
    /// `quantile_over_time(q, m)`.
    QuantileOverTime => "quantile_over_time",
    /// `rad(v)`.
    Rad => "rad",
    /// `range()`: the query's range in seconds.
    Range => "range",
    /// `rate(m)`.
    Rate => "rate",
    /// `resets(m)`.
    Resets => "resets",
    /// `round(v, to_nearest?)`.
    Round => "round",
    /// `scalar(v)`.
    Scalar => "scalar",
    /// `sgn(v)`.
    Sgn => "sgn",
    /// `sin(v)`.
    Sin => "sin",
    /// `sinh(v)`.
    Sinh => "sinh",
    /// `sort(v)`.
    Sort => "sort",
    /// `sort_by_label(v, label...)` (experimental).
    SortByLabel => "sort_by_label",
    /// `sort_by_label_desc(v, label...)` (experimental).
    SortByLabelDesc => "sort_by_label_desc",
    /// `sort_desc(v)`.
    SortDesc => "sort_desc",
    /// `sqrt(v)`.
    Sqrt => "sqrt",
    /// `start()`: the query's start time in seconds.
    Start => "start",
    /// `start_timestamp(v)` (experimental): the series' start time.
    StartTimestamp => "start_timestamp",
    /// `stddev_over_time(m)`.
    StddevOverTime => "stddev_over_time",
    /// `stdvar_over_time(m)`.
    StdvarOverTime => "stdvar_over_time",
    /// `step()`: the query's step in seconds.
    Step => "step",
    /// `sum_over_time(m)`.
    SumOverTime => "sum_over_time",
    /// `tan(v)`.
    Tan => "tan",
    /// `tanh(v)`.
    Tanh => "tanh",
    /// `time()`: the evaluation time in seconds.
    Time => "time",
    /// `timestamp(v)`: the sample time of each element.
    Timestamp => "timestamp",
    /// `ts_of_first_over_time(m)` (experimental).
    TsOfFirstOverTime => "ts_of_first_over_time",
    /// `ts_of_last_over_time(m)` (experimental).
    TsOfLastOverTime => "ts_of_last_over_time",
    /// `ts_of_max_over_time(m)` (experimental).
    TsOfMaxOverTime => "ts_of_max_over_time",
    /// `ts_of_min_over_time(m)` (experimental).
    TsOfMinOverTime => "ts_of_min_over_time",
    /// `vector(s)`.
    Vector => "vector",
    /// `year(v?)`.
    Year => "year",
}

impl Function {
    /// The function named `name`, if the engine evaluates it.
    pub(crate) fn from_name(name: &str) -> Option<Function> {
        Function::ALL
            .iter()
            .copied()
            .find(|function| function.name() == name)
    }

    /// Whether the value depends on the evaluation time or on the samples' own timestamps, so
    /// the call is not step invariant even when all its arguments are (Prometheus'
    /// `AtModifierUnsafeFunctions`, plus `start_timestamp` and `info`).
    pub(crate) fn is_time_dependent(self) -> bool {
        matches!(
            self,
            Function::Time
                | Function::Timestamp
                | Function::StartTimestamp
                | Function::PredictLinear
                | Function::Info
        ) || self.is_date()
    }

    /// Whether the function reads a date field (`year()`, `hour(v)`, ...) of its argument or,
    /// without one, of the evaluation time.
    pub(crate) fn is_date(self) -> bool {
        matches!(
            self,
            Function::DaysInMonth
                | Function::DayOfMonth
                | Function::DayOfWeek
                | Function::DayOfYear
                | Function::Hour
                | Function::Minute
                | Function::Month
                | Function::Year
        )
    }

    /// Whether a range function keeps its input's metric name (`last_over_time`,
    /// `first_over_time`); every other one drops it.
    pub(crate) fn keeps_name(self) -> bool {
        matches!(self, Function::LastOverTime | Function::FirstOverTime)
    }

    /// For a function over a range vector, the index of that argument (`quantile_over_time`
    /// takes it second); `None` for functions over instant vectors and scalars.
    pub(crate) fn range_arg(self) -> Option<usize> {
        match self {
            Function::QuantileOverTime => Some(1),
            Function::AbsentOverTime
            | Function::AvgOverTime
            | Function::Changes
            | Function::CountOverTime
            | Function::Delta
            | Function::Deriv
            | Function::DoubleExponentialSmoothing
            | Function::FirstOverTime
            | Function::Idelta
            | Function::Increase
            | Function::Irate
            | Function::LastOverTime
            | Function::MadOverTime
            | Function::MaxOverTime
            | Function::MinOverTime
            | Function::PredictLinear
            | Function::PresentOverTime
            | Function::Rate
            | Function::Resets
            | Function::StddevOverTime
            | Function::StdvarOverTime
            | Function::SumOverTime
            | Function::TsOfFirstOverTime
            | Function::TsOfLastOverTime
            | Function::TsOfMaxOverTime
            | Function::TsOfMinOverTime => Some(0),
            _ => None,
        }
    }
}
