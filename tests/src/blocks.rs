//! Block folders as the tests write them into buckets.

use std::path::Path;

use anyhow::{Context, Result};
use tsdb_block::meta::ThanosFile;

/// The files of a block folder (but `meta.json`) with their sizes, sorted, as the sidecar lists
/// them in `thanos.files`.
pub fn thanos_files(block_dir: &Path) -> Result<Vec<ThanosFile>> {
    let size = |path: &Path| -> Result<i64> {
        let length = std::fs::metadata(path)
            .with_context(|| format!("stat {}", path.display()))?
            .len();
        Ok(i64::try_from(length)?)
    };
    let mut files = vec![ThanosFile {
        rel_path: "index".to_owned(),
        size_bytes: size(&block_dir.join("index"))?,
        hash: None,
    }];
    let chunks = block_dir.join("chunks");
    for entry in std::fs::read_dir(&chunks).with_context(|| format!("list {}", chunks.display()))? {
        let entry = entry?;
        files.push(ThanosFile {
            rel_path: format!("chunks/{}", entry.file_name().to_string_lossy()),
            size_bytes: size(&entry.path())?,
            hash: None,
        });
    }
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(files)
}
