//! What `promtool tsdb dump` prints, for one or many blocks.
//!
//! Prometheus 2.42's `promtool tsdb dump DIR` opens every block of `DIR` that overlaps
//! `[min_time, max_time]`, selects all series (`{__name__=~'(?s:.*)'}`), merges series of equal
//! labels across blocks in label order and their samples by timestamp (one sample per timestamp,
//! as the merge querier keeps), and prints for each float sample a line
//! `{a="b", c="d"} VALUE TIMESTAMP` with `VALUE` in Go's `%g` format.

mod gofloat;

pub use gofloat::format_go_g;

use std::io::Write;
use std::path::{Path, PathBuf};

use prom_model::{MatchType, Matcher};

use crate::error::{Error, Result};
use crate::reader::{BlockReader, SelectedSeries, SeriesIter};

/// The block folders of `dir` (names that parse as ULIDs and hold a `meta.json`), sorted by name.
pub fn block_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::io("list", dir, source))?;
    let mut blocks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::io("list", dir, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if ulid::Ulid::from_string(&name).is_ok() && entry.path().join("meta.json").is_file() {
            blocks.push(entry.path());
        }
    }
    blocks.sort();
    Ok(blocks)
}

/// Opens the blocks of `dir`, ordered by min time as Prometheus orders them.
pub fn open_blocks(dir: &Path) -> Result<Vec<BlockReader>> {
    let mut blocks = Vec::new();
    for block_dir in block_dirs(dir)? {
        blocks.push(BlockReader::open(&block_dir)?);
    }
    blocks.sort_by_key(|block| (block.meta().min_time, block.meta().ulid));
    Ok(blocks)
}

/// Writes the dump of `blocks` for `[min_time, max_time]` (inclusive) to `out`, all series.
pub fn dump(
    blocks: &[BlockReader],
    min_time: i64,
    max_time: i64,
    out: &mut dyn Write,
) -> Result<()> {
    let all = Matcher::new(MatchType::Regex, "__name__", "(?s:.*)").map_err(|error| {
        Error::InvalidInput {
            writer: "dump",
            detail: error.to_string(),
        }
    })?;
    dump_matching(blocks, std::slice::from_ref(&all), min_time, max_time, out)
}

/// Like [`dump`], for the series matching all of `matchers` (`promtool tsdb dump --match`).
pub fn dump_matching(
    blocks: &[BlockReader],
    matchers: &[Matcher],
    min_time: i64,
    max_time: i64,
    out: &mut dyn Write,
) -> Result<()> {
    let mut cursors: Vec<Cursor<'_>> = Vec::new();
    for block in blocks {
        if block.meta().min_time <= max_time && min_time < block.meta().max_time {
            let mut series = block.select(matchers, min_time, max_time)?;
            let head = series.next().transpose()?;
            cursors.push(Cursor {
                block,
                series,
                head,
            });
        }
    }
    let mut samples: Vec<(i64, f64)> = Vec::new();
    let mut merged: Vec<(i64, f64)> = Vec::new();
    let mut line = String::new();
    loop {
        let Some(labels) = cursors
            .iter()
            .filter_map(|cursor| cursor.head.as_ref().map(|head| &head.labels))
            .min()
            .cloned()
        else {
            return Ok(());
        };
        merged.clear();
        let mut sources = 0;
        for cursor in &mut cursors {
            if cursor
                .head
                .as_ref()
                .is_some_and(|head| head.labels == labels)
            {
                if let Some(head) = cursor.head.take() {
                    samples.clear();
                    cursor.block.samples(&head, &mut samples)?;
                    merge_samples(&mut merged, &samples, sources > 0);
                    sources += 1;
                }
                cursor.head = cursor.series.next().transpose()?;
            }
        }
        let label_text = labels.to_string();
        for (t, v) in &merged {
            if *t == i64::MIN {
                // The merge querier starts from this timestamp and never returns it.
                continue;
            }
            line.clear();
            line.push_str(&label_text);
            line.push(' ');
            line.push_str(&format_go_g(*v));
            line.push(' ');
            line.push_str(&t.to_string());
            line.push('\n');
            out.write_all(line.as_bytes())
                .map_err(|source| Error::io("write", "stdout", source))?;
        }
    }
}

struct Cursor<'a> {
    block: &'a BlockReader,
    series: SeriesIter<'a>,
    head: Option<SelectedSeries>,
}

/// Merges `more` (time-ordered) into `merged` (time-ordered), keeping the sample already there on
/// equal timestamps; `merged` is replaced when it was empty.
fn merge_samples(merged: &mut Vec<(i64, f64)>, more: &[(i64, f64)], had_any: bool) {
    if !had_any || merged.is_empty() {
        merged.clear();
        merged.extend(dedup_sorted(more));
        return;
    }
    let mut result = Vec::with_capacity(merged.len() + more.len());
    let (mut left, mut right) = (0, 0);
    while left < merged.len() || right < more.len() {
        let take_left =
            right >= more.len() || (left < merged.len() && merged[left].0 <= more[right].0);
        let sample = if take_left {
            left += 1;
            merged[left - 1]
        } else {
            right += 1;
            more[right - 1]
        };
        if result
            .last()
            .is_none_or(|last: &(i64, f64)| last.0 != sample.0)
        {
            result.push(sample);
        }
    }
    *merged = result;
}

fn dedup_sorted(samples: &[(i64, f64)]) -> impl Iterator<Item = (i64, f64)> + '_ {
    samples
        .iter()
        .enumerate()
        .filter(|(index, sample)| *index == 0 || samples[index - 1].0 != sample.0)
        .map(|(_, sample)| *sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_first_sample_per_timestamp() {
        let mut merged = Vec::new();
        merge_samples(&mut merged, &[(1, 1.0), (3, 3.0)], false);
        merge_samples(&mut merged, &[(2, 20.0), (3, 30.0), (4, 40.0)], true);
        assert_eq!(merged, vec![(1, 1.0), (2, 20.0), (3, 3.0), (4, 40.0)]);
    }
}
