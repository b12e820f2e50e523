//! Thanos' aggregate chunk (0xFF) over arbitrary bytes: never panics; each part read alone
//! (`get`) agrees with reading all five (`parts`) wherever `parts` succeeds; what parses
//! re-encodes into bytes that parse to the same parts; a present float part decodes as XOR
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_block::chunkenc::{AggrChunk, AggrType, Encoding, XorIterator, encode_aggr_chunk};

fuzz_target!(|data: &[u8]| {
    let chunk = AggrChunk::new(data);
    let _ = chunk.num_samples();
    let Ok(parts) = chunk.parts() else {
        for aggregate in AggrType::ALL {
            let _ = chunk.get(aggregate);
        }
        return;
    };
    for aggregate in AggrType::ALL {
        let alone = chunk.get(aggregate).expect("a part of a chunk that parses whole");
        assert_eq!(alone, parts[aggregate.index()], "{aggregate}");
    }
    let encoded = encode_aggr_chunk(&parts);
    let again = AggrChunk::new(&encoded)
        .parts()
        .expect("our own encoding parses");
    assert_eq!(again, parts);
    for part in parts.iter().flatten() {
        if part.encoding == Encoding::Xor {
            let _ = XorIterator::new(part.data).count();
        }
    }
});
