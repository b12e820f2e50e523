//! Small values every service parses from outside, the first byte picking which: Prometheus
//! durations (flags, YAML, query parameters), byte sizes (`250MB`), and snappy-framed gRPC
//! request messages (`grpc-encoding: snappy`). Never panics; a duration prints as text that
//! parses back to it, and a message that decompresses compresses back into one that
//! decompresses to the same bytes, never above the message size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use service_core::PromDuration;
use service_core::size::parse_bytes;
use service_core::snappy::{snappy_compress, snappy_decompress};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(duration) = text.parse::<PromDuration>() {
                let printed = duration.to_string();
                let reparsed: PromDuration = printed.parse().expect("a printed duration parses");
                assert_eq!(reparsed, duration, "{text:?} printed as {printed:?}");
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let _ = parse_bytes(text);
        }
        _ => {
            if let Ok(message) = snappy_decompress(rest) {
                let compressed = snappy_compress(&message).expect("compression into memory");
                let again = snappy_decompress(&compressed).expect("our own snappy decompresses");
                assert_eq!(again, message);
            }
        }
    }
});
