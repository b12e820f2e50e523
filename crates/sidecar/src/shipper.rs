//! The shipper: uploads finished Prometheus blocks to object storage, each exactly once.
//!
//! One pass ([`Shipper::sync`]) lists the block folders of the TSDB (ULID names with a readable
//! `meta.json`; `.tmp*` and other folders are not blocks), oldest first, and for each block not
//! yet recorded in the shipper file: skips it when it holds no samples or is compacted (level > 1)
//! without `--shipper.upload-compacted`; records it without uploading when its `meta.json` is
//! already in the bucket; otherwise links its `chunks/` and `index` into
//! `<tsdb>/thanos/upload/<ULID>`, writes a `meta.json` with the `thanos` section there and
//! uploads that folder (`meta.json` last). Tombstones are not uploaded. A failed upload is
//! counted and retried on the next pass; the shipper file
//! (`{"version":1,"uploaded":[...]}`, written atomically) only lists blocks still present.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use objstore::Bucket;
use prometheus::{IntCounter, Registry};
use serde::{Deserialize, Serialize};
use service_core::CancellationToken;
use tracing::{debug, error, info, warn};
use tsdb_block::meta::{BlockMeta, META_FILENAME, ThanosFile, ThanosMeta, source};
use ulid::Ulid;

use crate::error::{Error, Result};
use crate::store::PrometheusState;

/// The shipper file's only version.
const SHIPPER_FILE_VERSION: i64 = 1;

/// `thanos.shipper.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipperFile {
    /// Format version (1).
    pub version: i64,
    /// ULIDs of the blocks already in the bucket.
    #[serde(default)]
    pub uploaded: Vec<Ulid>,
}

impl ShipperFile {
    /// Reads the file; a missing file is an empty record.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(Error::LocalIo {
                    action: "read",
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let file: Self = serde_json::from_slice(&bytes).map_err(|error| Error::ShipperFile {
            path: path.display().to_string(),
            detail: error.to_string(),
        })?;
        if file.version != SHIPPER_FILE_VERSION {
            return Err(Error::ShipperFile {
                path: path.display().to_string(),
                detail: format!("unsupported version {}", file.version),
            });
        }
        Ok(file)
    }

    /// Writes the file atomically: temporary file, sync, rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        let io_error = |action: &'static str, path: &Path| {
            let path = path.display().to_string();
            move |source| Error::LocalIo {
                action,
                path,
                source,
            }
        };
        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        self.serialize(&mut serializer)
            .map_err(|error| Error::ShipperFile {
                path: path.display().to_string(),
                detail: error.to_string(),
            })?;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut file = std::fs::File::create(&temporary).map_err(io_error("create", &temporary))?;
        file.write_all(&bytes)
            .map_err(io_error("write", &temporary))?;
        file.sync_all().map_err(io_error("sync", &temporary))?;
        std::fs::rename(&temporary, path).map_err(io_error("rename", path))?;
        Ok(())
    }
}

/// Shipper settings from the flags.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// `--tsdb.path`.
    pub tsdb_path: PathBuf,
    /// `--shipper.meta-file-name`.
    pub meta_file_name: String,
    /// `--shipper.upload-compacted`.
    pub upload_compacted: bool,
    /// Time between passes (30s).
    pub interval: Duration,
}

/// The shipper's counters, with Thanos' names.
#[derive(Debug, Clone)]
pub struct ShipperMetrics {
    uploads: IntCounter,
    upload_failures: IntCounter,
    dir_syncs: IntCounter,
    dir_sync_failures: IntCounter,
}

impl ShipperMetrics {
    /// Registers the counters on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let counter = IntCounter::new(name, help)?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        Ok(Self {
            uploads: counter(
                "thanos_shipper_uploads_total",
                "Total number of uploaded blocks.",
            )?,
            upload_failures: counter(
                "thanos_shipper_upload_failures_total",
                "Total number of block upload failures.",
            )?,
            dir_syncs: counter(
                "thanos_shipper_dir_syncs_total",
                "Total number of dir syncs.",
            )?,
            dir_sync_failures: counter(
                "thanos_shipper_dir_sync_failures_total",
                "Total number of failed dir syncs.",
            )?,
        })
    }
}

/// Uploads the TSDB's finished blocks; see the [module docs](self).
#[derive(Debug)]
pub struct Shipper {
    bucket: Bucket,
    config: ShipperConfig,
    state: Arc<PrometheusState>,
    metrics: ShipperMetrics,
}

impl Shipper {
    /// A shipper of `config.tsdb_path` into `bucket`, labelling blocks with the external labels
    /// in `state`.
    pub fn new(
        bucket: Bucket,
        config: ShipperConfig,
        state: Arc<PrometheusState>,
        metrics: ShipperMetrics,
    ) -> Self {
        Self {
            bucket,
            config,
            state,
            metrics,
        }
    }

    fn shipper_file_path(&self) -> PathBuf {
        self.config.tsdb_path.join(&self.config.meta_file_name)
    }

    /// Runs a pass every interval until `shutdown` is cancelled. Failed passes are logged and
    /// retried.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        loop {
            match self.sync().await {
                Ok(uploaded) if uploaded > 0 => info!(uploaded, "shipper pass done"),
                Ok(_) => debug!("shipper pass done, nothing to upload"),
                Err(error) => {
                    warn!(error = %service_core::error_chain(&error), "shipper pass failed")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// One pass; returns how many blocks were uploaded. Fails when any upload failed (the
    /// others still happened and are recorded).
    pub async fn sync(&self) -> Result<usize> {
        let outcome = self.sync_inner().await;
        self.metrics.dir_syncs.inc();
        if outcome.is_err() {
            self.metrics.dir_sync_failures.inc();
        }
        outcome
    }

    async fn sync_inner(&self) -> Result<usize> {
        let shipper_path = self.shipper_file_path();
        let recorded = match ShipperFile::read(&shipper_path) {
            Ok(file) => file.uploaded.into_iter().collect::<BTreeSet<Ulid>>(),
            Err(error) => {
                warn!(error = %error, "reading shipper file failed, relying on the bucket");
                BTreeSet::new()
            }
        };
        let blocks = local_blocks(&self.config.tsdb_path).await?;
        let mut uploaded_now = BTreeSet::new();
        let mut uploads = 0;
        let mut first_failure = None;
        for meta in blocks {
            let id = meta.ulid;
            if recorded.contains(&id) {
                uploaded_now.insert(id);
                continue;
            }
            if meta.stats.num_samples == 0 {
                debug!(block = %id, "skipping block without samples");
                continue;
            }
            if meta.compaction.level > 1 && !self.config.upload_compacted {
                debug!(block = %id, level = meta.compaction.level, "skipping compacted block");
                continue;
            }
            match self.ship(meta).await {
                Ok(true) => {
                    uploads += 1;
                    uploaded_now.insert(id);
                }
                Ok(false) => {
                    uploaded_now.insert(id);
                }
                Err(error) => {
                    self.metrics.upload_failures.inc();
                    error!(block = %id, error = %service_core::error_chain(&error), "block upload failed, will retry");
                    first_failure.get_or_insert(error);
                }
            }
        }
        let file = ShipperFile {
            version: SHIPPER_FILE_VERSION,
            uploaded: uploaded_now.into_iter().collect(),
        };
        let write = tokio::task::spawn_blocking(move || file.write(&shipper_path)).await;
        match write {
            Ok(result) => result?,
            Err(join_error) => {
                return Err(Error::LocalIo {
                    action: "write shipper file",
                    path: self.shipper_file_path().display().to_string(),
                    source: std::io::Error::other(join_error.to_string()),
                });
            }
        }
        match first_failure {
            Some(error) => Err(error),
            None => Ok(uploads),
        }
    }

    /// Uploads one block; `Ok(false)` when the bucket already had it.
    async fn ship(&self, meta: BlockMeta) -> Result<bool> {
        let id = meta.ulid;
        let meta_object = format!("{id}/{META_FILENAME}");
        let exists = self
            .bucket
            .exists(&meta_object)
            .await
            .map_err(|source| Error::Objstore {
                action: format!("check {meta_object}"),
                source,
            })?;
        if exists {
            info!(block = %id, "block already in the bucket, recording it");
            return Ok(false);
        }
        let labels: BTreeMap<String, String> = self
            .state
            .external_labels()
            .iter()
            .map(|label| (label.name.clone(), label.value.clone()))
            .collect();
        let block_dir = self.config.tsdb_path.join(id.to_string());
        let staging = self
            .config
            .tsdb_path
            .join("thanos")
            .join("upload")
            .join(id.to_string());
        let prepared_staging = staging.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            prepare_upload(&block_dir, &prepared_staging, meta, labels)
        })
        .await
        .map_err(|join_error| Error::LocalIo {
            action: "prepare upload of",
            path: staging.display().to_string(),
            source: std::io::Error::other(join_error.to_string()),
        })?;
        prepared?;
        let uploaded = self
            .bucket
            .upload_dir(&staging, &id.to_string())
            .await
            .map_err(|source| Error::Objstore {
                action: format!("upload block {id}"),
                source,
            });
        let _ = tokio::fs::remove_dir_all(&staging).await;
        uploaded?;
        self.metrics.uploads.inc();
        info!(block = %id, "uploaded block");
        Ok(true)
    }
}

/// The metas of the TSDB's block folders, oldest first.
async fn local_blocks(tsdb_path: &Path) -> Result<Vec<BlockMeta>> {
    let tsdb_path = tsdb_path.to_owned();
    let listed = tokio::task::spawn_blocking(move || list_blocks(&tsdb_path)).await;
    match listed {
        Ok(result) => result,
        Err(join_error) => Err(Error::LocalIo {
            action: "list blocks in",
            path: String::new(),
            source: std::io::Error::other(join_error.to_string()),
        }),
    }
}

fn list_blocks(tsdb_path: &Path) -> Result<Vec<BlockMeta>> {
    let entries = std::fs::read_dir(tsdb_path).map_err(|source| Error::LocalIo {
        action: "list",
        path: tsdb_path.display().to_string(),
        source,
    })?;
    let mut metas = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(id) = Ulid::from_string(name) else {
            continue;
        };
        let path = entry.path();
        if !path.is_dir() || !path.join(META_FILENAME).is_file() {
            continue;
        }
        match BlockMeta::read_from_dir(&path) {
            Ok(meta) if meta.ulid == id => metas.push(meta),
            Ok(meta) => {
                warn!(block = %id, meta_ulid = %meta.ulid, "block folder and meta.json disagree, skipping")
            }
            Err(error) => warn!(block = %id, error = %error, "unreadable meta.json, skipping"),
        }
    }
    metas.sort_by_key(|meta| (meta.min_time, meta.ulid));
    Ok(metas)
}

/// Links (or copies) the block's `index` and `chunks/` into `staging` and writes the meta with
/// the `thanos` section there.
fn prepare_upload(
    block_dir: &Path,
    staging: &Path,
    mut meta: BlockMeta,
    labels: BTreeMap<String, String>,
) -> Result<()> {
    let io_error = |action: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| Error::LocalIo {
            action,
            path,
            source,
        }
    };
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(io_error("clean", staging))?;
    }
    let staging_chunks = staging.join("chunks");
    std::fs::create_dir_all(&staging_chunks).map_err(io_error("create", &staging_chunks))?;

    let mut files = Vec::new();
    let mut segment_files = Vec::new();
    let chunks_dir = block_dir.join("chunks");
    let mut segments: Vec<String> = std::fs::read_dir(&chunks_dir)
        .map_err(io_error("list", &chunks_dir))?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    segments.sort();
    for segment in segments {
        let size = link_or_copy(&chunks_dir.join(&segment), &staging_chunks.join(&segment))?;
        files.push(ThanosFile {
            rel_path: format!("chunks/{segment}"),
            size_bytes: size,
            hash: None,
        });
        segment_files.push(segment);
    }
    let index_size = link_or_copy(&block_dir.join("index"), &staging.join("index"))?;
    files.push(ThanosFile {
        rel_path: "index".to_owned(),
        size_bytes: index_size,
        hash: None,
    });
    files.push(ThanosFile {
        rel_path: META_FILENAME.to_owned(),
        size_bytes: 0,
        hash: None,
    });
    files.sort_by(|left, right| left.rel_path.cmp(&right.rel_path));

    let mut thanos = ThanosMeta::new(labels, 0, source::SIDECAR);
    thanos.segment_files = segment_files;
    thanos.files = files;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    thanos.set_upload_time_millis(now);
    meta.thanos = Some(thanos);
    meta.write_to_dir(staging)
        .map_err(|source| Error::BlockMeta {
            path: staging.display().to_string(),
            source,
        })?;
    Ok(())
}

/// Hard-links `from` to `to`, copying when linking is impossible; returns the file size.
fn link_or_copy(from: &Path, to: &Path) -> Result<i64> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(|source| Error::LocalIo {
            action: "copy",
            path: from.display().to_string(),
            source,
        })?;
    }
    let size = std::fs::metadata(to)
        .map_err(|source| Error::LocalIo {
            action: "stat",
            path: to.display().to_string(),
            source,
        })?
        .len();
    Ok(i64::try_from(size).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
