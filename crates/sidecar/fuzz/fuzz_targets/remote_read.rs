//! The sidecar's remote read decoding over arbitrary bytes. The first byte sets how the rest is
//! cut into pieces, as the HTTP body could arrive; the rest is read three ways:
//!
//! - as a streamed answer: the incremental frame decoder yields the same frames and the same
//!   error whether it gets the bytes at once or piece by piece, never holds more than it was
//!   given, and every frame that decodes goes through the streaming order, whose output is
//!   strictly sorted by labels (or the call fails);
//! - as one frame's `ChunkedReadResponse` (no checksum to get past), whose series go through the
//!   streaming order too;
//! - as a `SAMPLES` answer under a 1 MiB limit, whose series come out sorted.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prom_model::Labels;
use sidecar::remote_read::{
    FrameDecoder, ReadSeries, SeriesOrder, decode_chunked_frame, decode_samples_response,
};
use storeapi::convert::compare_labels;
use storeapi::proto::thanos;

/// Every frame of `pieces` fed in order, and the error that ended them, if any.
fn frames(pieces: &[&[u8]]) -> (Vec<Bytes>, Option<String>) {
    let mut decoder = FrameDecoder::default();
    let mut out = Vec::new();
    let mut given = 0;
    for piece in pieces {
        decoder.push(piece);
        given += piece.len();
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(error) => return (out, Some(error)),
            }
            assert!(decoder.buffered() <= given);
        }
    }
    (out, decoder.finish().err())
}

fn assert_sorted(series: &[thanos::Series]) {
    for pair in series.windows(2) {
        assert!(compare_labels(&pair[0].labels, &pair[1].labels).is_lt());
    }
}

/// Pushes the frames' series through the streaming order: what it passes on is strictly sorted,
/// whether or not it refuses a series on the way.
fn stream_in_order(external: &Labels, frames: Vec<Vec<ReadSeries>>) {
    let mut order = SeriesOrder::streamed(external.clone());
    let mut sent = Vec::new();
    for one in frames.into_iter().flatten() {
        if order.push(one, &mut sent).is_err() {
            assert_sorted(&sent);
            return;
        }
    }
    order.finish(&mut sent);
    assert_sorted(&sent);
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let whole = frames(&[rest]);
    let pieces: Vec<&[u8]> = rest.chunks(usize::from(cut % 16) + 1).collect();
    assert_eq!(frames(&pieces), whole);

    let external = Labels::from_pairs([("cluster", "c"), ("replica", "a")]);
    let decoded: Vec<_> = whole
        .0
        .into_iter()
        .filter_map(|frame| decode_chunked_frame(frame).ok())
        .collect();
    stream_in_order(&external, decoded);
    if let Ok(series) = decode_chunked_frame(Bytes::copy_from_slice(rest)) {
        stream_in_order(&external, vec![series]);
    }

    if let Ok(series) = decode_samples_response(rest, 1 << 20) {
        let mut order = SeriesOrder::unordered(external);
        let mut sorted = Vec::new();
        for one in series {
            order
                .push(one, &mut sorted)
                .expect("an unordered answer sends nothing before its end");
        }
        order.finish(&mut sorted);
        assert_sorted(&sorted);
    }
});
