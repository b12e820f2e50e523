//! XOR chunk decoding over arbitrary bytes: never panics, honours the sample count, the batch
//! loop (`decode_into`) yields exactly what the iterator yields and fails where it fails, and
//! whatever decodes re-encodes into a chunk that decodes to the same samples bit for bit, and
//! the many-chunk decoder (`decode_xor_chunks`, AVX-512 lanes) agrees on a batch of the input
//! and its re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_block::chunkenc::{
    XorIterator, decode_xor, decode_xor_chunks, decodes_side_by_side, encode_xor,
};

fuzz_target!(|data: &[u8]| {
    let mut iterator = XorIterator::new(data);
    let total = iterator.num_samples();
    let samples: Vec<(i64, f64)> = iterator.by_ref().collect();
    assert!(samples.len() <= usize::from(total));
    assert!(samples.len() == usize::from(total) || iterator.err().is_some());
    let mut batch = Vec::new();
    let batch_result = XorIterator::new(data).decode_into(&mut batch);
    assert_eq!(batch_result.is_err(), iterator.err().is_some());
    assert_eq!(batch.len(), samples.len());
    for (got, want) in batch.iter().zip(&samples) {
        assert_eq!(got.0, want.0);
        assert_eq!(got.1.to_bits(), want.1.to_bits());
    }
    let encoder = encode_xor(&samples);
    let decoded = decode_xor(encoder.bytes()).expect("our own chunk decodes");
    assert_eq!(decoded.len(), samples.len());
    for (got, want) in decoded.iter().zip(&samples) {
        assert_eq!(got.0, want.0);
        assert_eq!(got.1.to_bits(), want.1.to_bits());
    }
    // The input among valid chunks, in a batch wide enough for the lanes where the CPU has them.
    let chunks: Vec<&[u8]> = [encoder.bytes(), data].repeat(4);
    assert_eq!(
        decodes_side_by_side(chunks.len()),
        decodes_side_by_side(usize::MAX)
    );
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    let result = decode_xor_chunks(&chunks, &mut timestamps, &mut values);
    let (mut want_t, mut want_v) = (Vec::new(), Vec::new());
    let mut want = Ok(());
    for (index, chunk) in chunks.iter().enumerate() {
        if let Err(error) = XorIterator::new(chunk).decode_columns(&mut want_t, &mut want_v) {
            want = Err((index, error));
            break;
        }
    }
    assert_eq!(result.map_err(|error| (error.chunk, error.error)), want);
    assert_eq!(timestamps, want_t);
    let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&values), bits(&want_v));
});
