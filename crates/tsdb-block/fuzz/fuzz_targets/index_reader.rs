//! Index parsing over arbitrary bytes through the public reader: opening, symbols, label names
//! and values, and every series reached from the all-postings list must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_block::index::IndexReader;
use tsdb_block::postings::Postings;
use tsdb_block::source::MemorySource;

fuzz_target!(|data: &[u8]| {
    let source = MemorySource::new("index", data.to_vec());
    let Ok(reader) = IndexReader::new(Box::new(source)) else {
        return;
    };
    let _ = reader.all_symbols();
    let names: Vec<String> = reader
        .label_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for name in names.iter().take(100) {
        let _ = reader.label_values(name);
    }
    if let Ok(mut postings) = reader.all_postings() {
        for _ in 0..1000 {
            let Some(series_ref) = postings.next() else {
                break;
            };
            let _ = reader.series(series_ref);
        }
    }
});
