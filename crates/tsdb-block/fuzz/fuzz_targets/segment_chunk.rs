//! Chunk segment reading over arbitrary bytes: `read_chunk` at an offset taken from the input and
//! a walk over every chunk never panic; XOR chunks found are decoded too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_block::chunkenc::{Encoding, XorIterator};
use tsdb_block::chunks::{iter_segment, read_chunk};

fuzz_target!(|data: &[u8]| {
    let offset = data.first().map_or(0, |byte| u64::from(*byte));
    if let Ok((encoding, chunk)) = read_chunk(data, offset, "chunks/000001") {
        let _ = encoding.sample_count(chunk);
    }
    for item in iter_segment(data, "chunks/000001").take(10_000) {
        let Ok((_, chunk)) = item else { break };
        if chunk.encoding == Encoding::Xor {
            let _ = XorIterator::new(chunk.data).count();
        }
    }
});
