//! Block marks (`deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json`) over
//! arbitrary bytes: never panics, and a mark that parses is written back into bytes that parse
//! into the same mark.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_block::meta::{DeletionMark, Mark, NoCompactMark, NoDownsampleMark};

fn round_trip<M: Mark + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(mark) = M::from_json(data) {
        let written = mark.to_json();
        let reread = M::from_json(&written).expect("our own mark parses");
        assert_eq!(reread, mark, "{}", String::from_utf8_lossy(&written));
        assert_eq!(reread.block(), mark.block());
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<DeletionMark>(data);
    round_trip::<NoCompactMark>(data);
    round_trip::<NoDownsampleMark>(data);
});
