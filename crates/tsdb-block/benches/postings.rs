//! Postings intersection for a three-matcher selector over 100k series.

use std::collections::BTreeSet;

use criterion::{Criterion, criterion_group, criterion_main};
use prom_model::{Labels, MatchType, Matcher};
use tsdb_block::index::{ChunkMeta, IndexReader, IndexWriter, postings_for_matchers};
use tsdb_block::postings::collect;
use tsdb_block::source::MemorySource;

const SERIES: usize = 100_000;

fn build_index() -> IndexReader {
    let mut series: Vec<Labels> = (0..SERIES)
        .map(|index| {
            Labels::from_pairs([
                ("__name__", format!("metric_{}", index % 20)),
                ("instance", format!("host-{}", index % 1000)),
                ("job", format!("job-{}", index % 7)),
                ("id", index.to_string()),
            ])
        })
        .collect();
    series.sort();
    let symbols: BTreeSet<String> = series
        .iter()
        .flat_map(|labels| {
            labels
                .iter()
                .flat_map(|l| [l.name.clone(), l.value.clone()])
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index");
    let mut writer = IndexWriter::create(&path, symbols).expect("create index");
    for (index, labels) in series.iter().enumerate() {
        let chunk = ChunkMeta {
            min_time: 0,
            max_time: 1000,
            chunk_ref: 8 + index as u64 * 100,
        };
        writer.add_series(labels, &[chunk]).expect("add series");
    }
    writer.finish().expect("finish index");
    let bytes = std::fs::read(&path).expect("read index");
    IndexReader::new(Box::new(MemorySource::new("index", bytes))).expect("open index")
}

fn bench_postings(c: &mut Criterion) {
    let reader = build_index();
    let matchers = [
        Matcher::new(MatchType::Equal, "__name__", "metric_3").expect("matcher"),
        Matcher::new(MatchType::Regex, "job", "job-(1|2|4)").expect("matcher"),
        Matcher::new(MatchType::NotRegex, "instance", "host-1.*").expect("matcher"),
    ];
    let expected = collect(postings_for_matchers(&reader, &matchers).expect("select")).len();
    assert!(expected > 1000, "{expected}");
    c.bench_function("postings_for_matchers 3 matchers over 100k series", |b| {
        b.iter(|| collect(postings_for_matchers(&reader, &matchers).expect("select")).len())
    });
}

criterion_group!(benches, bench_postings);
criterion_main!(benches);
