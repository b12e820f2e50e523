//! One block in the bucket: its meta, its lazily loaded index-header, and selection of series,
//! label names and label values with coalesced ranged reads of postings, series and chunks.

mod aggr;
mod bounds;
#[cfg(test)]
mod chunk_read_tests;
mod select;
mod series;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use objstore::Bucket;
use prom_model::Labels;
use tsdb_block::index::TOC_LEN;
use tsdb_block::meta::BlockMeta;
use ulid::Ulid;

use crate::error::{Error, Result};
use crate::header::{HeaderBytes, IndexHeader, decode_start, section_ranges};

pub(crate) use aggr::requested_aggregates;
pub(crate) use select::{BlockQuery, Reads, SelectedSeries};
pub(crate) use series::{BlockBatch, BlockSeries, SeriesContext, compare_series};

/// A loaded block.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) id: Ulid,
    pub(crate) meta: BlockMeta,
    /// The block's external labels (`thanos.labels`).
    pub(crate) external: Labels,
    bucket: Bucket,
    header_path: PathBuf,
    state: Mutex<HeaderState>,
    /// Sizes of the chunk segment files, by 0-based segment index.
    segment_sizes: Mutex<HashMap<u32, u64>>,
    /// Counts index-headers loaded again after an idle release.
    lazy_loads: prometheus::IntCounter,
}

#[derive(Debug)]
struct HeaderState {
    loaded: Option<Arc<IndexHeader>>,
    last_used: Instant,
}

/// The external labels of a meta (`thanos.labels`), sorted.
pub(crate) fn external_labels(meta: &BlockMeta) -> Labels {
    let pairs: Vec<(String, String)> = meta
        .thanos
        .as_ref()
        .map(|thanos| {
            thanos
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Labels::from_pairs(pairs)
}

impl Block {
    /// Builds (or finds on disk) the block's index-header and loads it. A corrupt index is an
    /// [`Error::Block`].
    pub(crate) async fn load(
        meta: BlockMeta,
        bucket: Bucket,
        data_dir: &std::path::Path,
        lazy_loads: prometheus::IntCounter,
    ) -> Result<Self> {
        let id = meta.ulid;
        let header_path = data_dir.join(id.to_string()).join("index-header");
        let block = Self {
            id,
            external: external_labels(&meta),
            meta,
            bucket,
            header_path,
            state: Mutex::new(HeaderState {
                loaded: None,
                last_used: Instant::now(),
            }),
            segment_sizes: Mutex::new(HashMap::new()),
            lazy_loads,
        };
        let header = block.open_header().await?;
        block.lock().loaded = Some(Arc::new(header));
        Ok(block)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HeaderState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn object(&self, name: &str) -> String {
        format!("{}/{name}", self.id)
    }

    /// The index-header from the local file, built from ranged reads of the index first when
    /// the file is missing or unreadable.
    async fn open_header(&self) -> Result<IndexHeader> {
        if tokio::fs::try_exists(&self.header_path)
            .await
            .unwrap_or(false)
        {
            match open_header_file(self.header_path.clone()).await? {
                Ok(header) => {
                    tracing::debug!(block = %self.id, memory_bytes = header.size_bytes, "index-header loaded");
                    return Ok(header);
                }
                Err(error) => {
                    tracing::warn!(block = %self.id, %error, "rebuilding unreadable index-header");
                }
            }
        }
        let bytes = self.download_header().await?;
        bytes.write(&self.header_path)?;
        drop(bytes);
        let header = open_header_file(self.header_path.clone())
            .await?
            .map_err(|source| Error::Block {
                block: self.id,
                action: "parse index-header",
                source,
            })?;
        tracing::debug!(block = %self.id, memory_bytes = header.size_bytes, "index-header built");
        Ok(header)
    }

    /// The size of a block file: from `thanos.files` when listed, else asked of the bucket.
    async fn file_size(&self, rel_path: &str) -> Result<u64> {
        let listed = self
            .meta
            .thanos
            .as_ref()
            .and_then(|thanos| thanos.files.iter().find(|file| file.rel_path == rel_path))
            .and_then(|file| u64::try_from(file.size_bytes).ok())
            .filter(|size| *size > 0);
        if let Some(size) = listed {
            return Ok(size);
        }
        let name = self.object(rel_path);
        let attributes = self
            .bucket
            .attributes(&name)
            .await
            .map_err(|source| Error::bucket(format!("stat {name}"), source))?;
        Ok(attributes.size)
    }

    async fn download_header(&self) -> Result<HeaderBytes> {
        let index_size = self.file_size("index").await?;
        let name = self.object("index");
        if index_size < TOC_LEN + 5 {
            return Err(self.corrupt(
                "read index",
                format!("index of {index_size} bytes is too short"),
            ));
        }
        let fetch = |ranges: Vec<std::ops::Range<u64>>| {
            let name = name.clone();
            async move {
                self.bucket
                    .get_ranges(&name, &ranges)
                    .await
                    .map_err(|source| Error::bucket(format!("read {name}"), source))
            }
        };
        let start = fetch(vec![0..5, index_size - TOC_LEN..index_size]).await?;
        let toc =
            decode_start(&start[0], &start[1], index_size).map_err(|source| Error::Block {
                block: self.id,
                action: "read index toc",
                source,
            })?;
        let [symbols, table] = section_ranges(&toc, index_size);
        let sections = fetch(vec![symbols, table]).await?;
        Ok(HeaderBytes {
            toc,
            symbols: sections[0].to_vec(),
            table: sections[1].to_vec(),
        })
    }

    fn corrupt(&self, action: &'static str, detail: String) -> Error {
        Error::Block {
            block: self.id,
            action,
            source: tsdb_block::Error::Corrupt {
                file: "index".to_owned(),
                section: "header",
                offset: 0,
                detail,
            },
        }
    }

    /// The index-header, loaded from disk when it was released.
    pub(crate) async fn header(&self) -> Result<Arc<IndexHeader>> {
        {
            let mut state = self.lock();
            state.last_used = Instant::now();
            if let Some(header) = &state.loaded {
                return Ok(Arc::clone(header));
            }
        }
        let header = Arc::new(self.open_header().await?);
        self.lazy_loads.inc();
        let mut state = self.lock();
        state.last_used = Instant::now();
        state.loaded = Some(Arc::clone(&header));
        Ok(header)
    }

    /// Drops the in-memory header when unused for `idle`; returns whether it did.
    pub(crate) fn release_if_idle(&self, idle: Duration) -> bool {
        let mut state = self.lock();
        if state.loaded.is_some() && state.last_used.elapsed() >= idle {
            state.loaded = None;
            return true;
        }
        false
    }

    /// Removes the local index-header folder.
    pub(crate) fn remove_local_files(&self) {
        if let Some(dir) = self.header_path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    async fn segment_size(&self, segment: u32) -> Result<u64> {
        if let Some(size) = self
            .segment_sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&segment)
        {
            return Ok(*size);
        }
        let size = self
            .file_size(&format!(
                "chunks/{}",
                tsdb_block::chunks::segment_file_name(segment)
            ))
            .await?;
        self.segment_sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(segment, size);
        Ok(size)
    }
}

/// Opens an index-header file off the async threads.
async fn open_header_file(path: PathBuf) -> Result<tsdb_block::Result<IndexHeader>> {
    tokio::task::spawn_blocking(move || IndexHeader::open(&path))
        .await
        .map_err(|error| Error::Internal(format!("index-header open task: {error}")))
}
