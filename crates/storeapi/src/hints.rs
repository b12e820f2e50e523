//! Store hints in `google.protobuf.Any` fields (package `hintspb`).
//!
//! Thanos packs hints with type URLs `type.googleapis.com/hintspb.<Message>`; the store gateway
//! reads `SeriesRequestHints` from requests and answers with one `SeriesResponseHints` frame.

use prost::Message;
use prost_types::Any;

use crate::error::{Error, Result};
use crate::proto::hintspb;

const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// A hints message with its fully qualified protobuf name.
pub trait Hints: Message + Default {
    /// Fully qualified name, e.g. `hintspb.SeriesRequestHints`.
    const FULL_NAME: &'static str;
}

macro_rules! hints {
    ($($message:ident),* $(,)?) => {
        $(impl Hints for hintspb::$message {
            const FULL_NAME: &'static str = concat!("hintspb.", stringify!($message));
        })*
    };
}

hints!(
    SeriesRequestHints,
    SeriesResponseHints,
    LabelNamesRequestHints,
    LabelNamesResponseHints,
    LabelValuesRequestHints,
    LabelValuesResponseHints,
);

/// The type URL Thanos uses for `H`.
pub fn type_url<H: Hints>() -> String {
    format!("{TYPE_URL_PREFIX}{}", H::FULL_NAME)
}

/// Packs hints into an `Any`.
pub fn pack<H: Hints>(hints: &H) -> Any {
    Any {
        type_url: type_url::<H>(),
        value: hints.encode_to_vec(),
    }
}

/// Unpacks an `Any` holding `H`; another type or bad bytes is an [`Error::InvalidHints`].
pub fn unpack<H: Hints>(any: &Any) -> Result<H> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != H::FULL_NAME {
        return Err(Error::InvalidHints {
            type_url: any.type_url.clone(),
            detail: format!("expected {}", H::FULL_NAME),
        });
    }
    H::decode(any.value.as_slice()).map_err(|error| Error::InvalidHints {
        type_url: any.type_url.clone(),
        detail: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_round_trip_with_thanos_type_urls() {
        let hints = hintspb::SeriesResponseHints {
            queried_blocks: vec![hintspb::Block {
                id: "01ABC".to_owned(),
            }],
            query_stats: None,
        };
        let any = pack(&hints);
        assert_eq!(
            any.type_url,
            "type.googleapis.com/hintspb.SeriesResponseHints"
        );
        assert_eq!(unpack::<hintspb::SeriesResponseHints>(&any).unwrap(), hints);
        let wrong = unpack::<hintspb::SeriesRequestHints>(&any).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
        let corrupt = Any {
            type_url: any.type_url.clone(),
            value: vec![0x0A, 0x05],
        };
        assert!(unpack::<hintspb::SeriesResponseHints>(&corrupt).is_err());
    }
}
