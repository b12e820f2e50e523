//! Downsampled data: which resolution to ask for and which aggregate to read (sheet §4.4).
//!
//! `max_source_resolution` (`raw`/`0s`, `5m`, `1h`, a duration, or `auto`) becomes the
//! `max_resolution_window` of every `SeriesRequest`; with `auto` (or `--query.auto-downsampling`
//! when the parameter is absent) a range query allows `step / 5`. Stores answer downsampled
//! chunks with the aggregate parts the querier asks for, chosen from the function that reads the
//! selector.

use storeapi::proto::thanos::Aggr;

/// Resolution of 5m downsampled blocks, in ms.
pub const RESOLUTION_5M: i64 = 5 * 60 * 1000;
/// Resolution of 1h downsampled blocks, in ms.
pub const RESOLUTION_1H: i64 = 60 * 60 * 1000;

/// Which part of a downsampled chunk a selector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// `min` parts.
    Min,
    /// `max` parts.
    Max,
    /// `count` parts.
    Count,
    /// `sum` parts.
    Sum,
    /// `counter` parts (rate-like functions).
    Counter,
    /// `sum / count`: everything else.
    Average,
}

impl Aggregate {
    /// The aggregate for the function consuming a selector, as Thanos chooses it.
    pub fn for_function(function: Option<&str>) -> Self {
        let Some(name) = function else {
            return Aggregate::Average;
        };
        match name {
            "rate" | "increase" | "irate" | "resets" | "xrate" | "xincrease" => Aggregate::Counter,
            name if name == "min" || name.starts_with("min_") => Aggregate::Min,
            name if name == "max" || name.starts_with("max_") => Aggregate::Max,
            name if name == "count" || name.starts_with("count_") => Aggregate::Count,
            name if name.starts_with("sum_") => Aggregate::Sum,
            _ => Aggregate::Average,
        }
    }

    /// The one part of a downsampled chunk that holds this aggregate; `None` for
    /// [`Aggregate::Average`], which takes two (sum and count).
    pub fn single_part(self) -> Option<Aggr> {
        match self {
            Aggregate::Min => Some(Aggr::Min),
            Aggregate::Max => Some(Aggr::Max),
            Aggregate::Count => Some(Aggr::Count),
            Aggregate::Sum => Some(Aggr::Sum),
            Aggregate::Counter => Some(Aggr::Counter),
            Aggregate::Average => None,
        }
    }

    /// The `aggregates` to put in a `SeriesRequest`.
    pub fn request_parts(self) -> Vec<Aggr> {
        match self.single_part() {
            Some(part) => vec![part],
            None => vec![Aggr::Count, Aggr::Sum],
        }
    }
}

/// The `max_source_resolution` request parameter, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceResolution {
    /// `auto`: derived from the step.
    Auto,
    /// An explicit window in ms (0 = raw only).
    Window(i64),
}

/// Parses `max_source_resolution`; `None` for an absent or empty parameter.
pub fn parse_source_resolution(value: Option<&str>) -> Result<Option<SourceResolution>, String> {
    let Some(value) = value.filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    match value {
        "auto" => Ok(Some(SourceResolution::Auto)),
        "raw" => Ok(Some(SourceResolution::Window(0))),
        other => match crate::params::parse_duration_ms(other) {
            Ok(ms) if ms >= 0 => Ok(Some(SourceResolution::Window(ms))),
            _ => Err(format!(
                "invalid parameter \"max_source_resolution\": cannot parse {other:?} to a valid duration"
            )),
        },
    }
}

/// The `max_resolution_window` (ms) for a query with `step` ms (0 for instant queries).
pub fn max_resolution_window(
    requested: Option<SourceResolution>,
    auto_downsampling: bool,
    step: i64,
    instant_default: i64,
) -> i64 {
    let auto = |step: i64| {
        if step > 0 { step / 5 } else { instant_default }
    };
    match requested {
        Some(SourceResolution::Window(window)) => window,
        Some(SourceResolution::Auto) => auto(step),
        None if auto_downsampling => auto(step),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_choose_aggregates() {
        for (function, expected) in [
            (Some("rate"), Aggregate::Counter),
            (Some("increase"), Aggregate::Counter),
            (Some("min_over_time"), Aggregate::Min),
            (Some("max"), Aggregate::Max),
            (Some("count_over_time"), Aggregate::Count),
            (Some("sum_over_time"), Aggregate::Sum),
            (Some("sum"), Aggregate::Average),
            (Some("avg_over_time"), Aggregate::Average),
            (None, Aggregate::Average),
        ] {
            assert_eq!(Aggregate::for_function(function), expected, "{function:?}");
        }
        assert_eq!(
            Aggregate::Average.request_parts(),
            vec![Aggr::Count, Aggr::Sum]
        );
    }

    #[test]
    fn resolution_selection() {
        let parse = |value| parse_source_resolution(Some(value)).unwrap();
        assert_eq!(parse("raw"), Some(SourceResolution::Window(0)));
        assert_eq!(parse("5m"), Some(SourceResolution::Window(RESOLUTION_5M)));
        assert_eq!(parse("1h"), Some(SourceResolution::Window(RESOLUTION_1H)));
        assert_eq!(parse("auto"), Some(SourceResolution::Auto));
        assert_eq!(parse_source_resolution(None).unwrap(), None);
        assert!(parse_source_resolution(Some("soon")).is_err());

        assert_eq!(max_resolution_window(None, false, 3_600_000, 0), 0);
        assert_eq!(max_resolution_window(None, true, 3_600_000, 0), 720_000);
        assert_eq!(max_resolution_window(None, true, 0, 0), 0);
        assert_eq!(
            max_resolution_window(Some(SourceResolution::Auto), false, 1_500_000, 0),
            RESOLUTION_5M
        );
        assert_eq!(
            max_resolution_window(
                Some(SourceResolution::Window(RESOLUTION_1H)),
                true,
                60_000,
                0
            ),
            RESOLUTION_1H
        );
    }
}
