//! Tombstones parsing over arbitrary bytes: never panics, and what parses encodes and parses back
//! to the same deletions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_block::tombstones::Tombstones;

fuzz_target!(|data: &[u8]| {
    if let Ok(tombstones) = Tombstones::decode(data, "tombstones") {
        let again =
            Tombstones::decode(&tombstones.encode(), "tombstones").expect("our own file parses");
        assert_eq!(again, tombstones);
    }
});
