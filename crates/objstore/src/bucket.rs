//! [`Bucket`]: the one handle every service uses to read and write object storage.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::Path as LocalPath;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    Attributes, GetOptions, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    WriteMultipart,
};
use prometheus::Registry;
use tokio::io::AsyncReadExt;
use tracing::debug;

use crate::config::{ObjstoreConfig, ProviderConfig};
use crate::error::{Error, Result};
use crate::metrics::{BucketMetrics, op};
use crate::options::BucketOptions;
use crate::ranges;

/// Size and modification time of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttributes {
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written.
    pub last_modified: SystemTime,
}

/// A bucket (or container, or directory) of objects, addressed by `/`-separated names relative
/// to the configured prefix. Cheap to clone; clones share the client and the metrics.
///
/// Every operation is counted in Thanos' `thanos_objstore_bucket_*` metrics. A missing object
/// is reported as an error whose [`Error::is_not_found`] is true, and is not counted as a
/// failure on reads.
#[derive(Clone)]
pub struct Bucket {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    provider: &'static str,
    store: Arc<dyn ObjectStore>,
    metrics: BucketMetrics,
    options: BucketOptions,
    /// Objects larger than this are uploaded in parts; `None` = always one request.
    part_size: Option<u64>,
    put_attributes: Attributes,
    /// The directory of a FILESYSTEM bucket without prefix: its range reads go to the files
    /// directly ([`crate::local`]).
    local_root: Option<std::path::PathBuf>,
}

/// What [`Bucket::assemble`] needs.
struct Parts<'a> {
    name: String,
    provider: &'static str,
    store: Arc<dyn ObjectStore>,
    options: BucketOptions,
    part_size: Option<u64>,
    put_attributes: Attributes,
    local_root: Option<std::path::PathBuf>,
    registry: &'a Registry,
}

impl fmt::Debug for Bucket {
    /// Shows the name and provider only: the client holds credentials.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Bucket")
            .field("name", &self.inner.name)
            .field("provider", &self.inner.provider)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    /// Opens the bucket described by a Thanos objstore configuration and registers its metrics
    /// on `registry`. For Azure with `storage_create_container` (the default) and a shared key,
    /// the container is created when missing, as Thanos does.
    pub async fn from_config(
        config: &ObjstoreConfig,
        options: BucketOptions,
        registry: &Registry,
    ) -> Result<Self> {
        if !matches!(config.provider, ProviderConfig::Filesystem(_)) {
            crate::tls::install_crypto_provider();
        }
        let mut options = options;
        let mut multipart = true;
        let mut put_attributes = Attributes::new();
        let mut local_root = None;
        let (name, store): (String, Arc<dyn ObjectStore>) = match &config.provider {
            ProviderConfig::S3(s3) => {
                let store = s3.build(&options)?;
                match s3.effective_part_size() {
                    Some(part_size) => options.part_size = part_size,
                    None => multipart = false,
                }
                put_attributes = s3.put_attributes();
                (s3.bucket.clone(), store)
            }
            ProviderConfig::Azure(azure) => {
                let store = azure.build(&options)?;
                azure.ensure_container(&options).await?;
                (azure.container.clone(), store)
            }
            ProviderConfig::Gcs(gcs) => {
                let store = gcs.build(&options)?;
                if let Some(part_size) = gcs.part_size() {
                    options.part_size = part_size;
                }
                (gcs.bucket.clone(), store)
            }
            ProviderConfig::Filesystem(filesystem) => {
                let directory = &filesystem.directory;
                std::fs::create_dir_all(directory).map_err(|source| Error::LocalIo {
                    path: directory.clone(),
                    source,
                })?;
                // Writes go to a staging file renamed into place: readers never see half an
                // object.
                let store = object_store::local::LocalFileSystem::new_with_prefix(directory)
                    .map_err(|source| Error::CreateClient {
                        provider: "FILESYSTEM",
                        source: Box::new(source),
                    })?
                    .with_automatic_cleanup(true);
                if config.prefix.is_empty() {
                    local_root = Some(directory.clone());
                }
                (directory.display().to_string(), Arc::new(store))
            }
        };
        let store: Arc<dyn ObjectStore> = if config.prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, config.prefix.as_str()))
        };
        debug!(
            bucket = %name,
            provider = config.provider.name(),
            prefix = %config.prefix,
            "opened bucket"
        );
        let part_size = multipart.then_some(options.part_size);
        Self::assemble(Parts {
            name,
            provider: config.provider.name(),
            store,
            options,
            part_size,
            put_attributes,
            local_root,
            registry,
        })
    }

    /// An empty in-memory bucket (tests, tools).
    pub fn in_memory(name: &str, options: BucketOptions, registry: &Registry) -> Result<Self> {
        let part_size = Some(options.part_size);
        Self::assemble(Parts {
            name: name.to_owned(),
            provider: "INMEMORY",
            store: Arc::new(InMemory::new()),
            options,
            part_size,
            put_attributes: Attributes::new(),
            local_root: None,
            registry,
        })
    }

    /// Wraps any `object_store` implementation (e.g. a fault-injecting one in tests).
    pub fn from_store(
        name: &str,
        store: Arc<dyn ObjectStore>,
        options: BucketOptions,
        registry: &Registry,
    ) -> Result<Self> {
        let part_size = Some(options.part_size);
        Self::assemble(Parts {
            name: name.to_owned(),
            provider: "CUSTOM",
            store,
            options,
            part_size,
            put_attributes: Attributes::new(),
            local_root: None,
            registry,
        })
    }

    fn assemble(parts: Parts<'_>) -> Result<Self> {
        let metrics = BucketMetrics::register(parts.registry, &parts.name)
            .map_err(|source| Error::RegisterMetrics { source })?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: parts.name,
                provider: parts.provider,
                store: parts.store,
                metrics,
                options: parts.options,
                part_size: parts.part_size.map(|size| size.max(1)),
                put_attributes: parts.put_attributes,
                local_root: parts.local_root,
            }),
        })
    }

    /// The bucket's name: the S3/GCS bucket, the Azure container or the directory. It is the
    /// `bucket` label of the metrics.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `S3`, `AZURE`, `GCS`, `FILESYSTEM`, `INMEMORY` or `CUSTOM`.
    pub fn provider(&self) -> &'static str {
        self.inner.provider
    }

    /// The options the bucket was opened with (after the configuration's overrides).
    pub fn options(&self) -> &BucketOptions {
        &self.inner.options
    }

    /// The multipart part size, or `None` when every upload is a single request.
    pub fn part_size(&self) -> Option<u64> {
        self.inner.part_size
    }

    /// Reads a whole object.
    pub async fn get(&self, name: &str) -> Result<Bytes> {
        self.observe(op::GET, name, async {
            let result = self
                .inner
                .store
                .get_opts(&Path::from(name), GetOptions::default())
                .await;
            let data = match result {
                Ok(result) => result.bytes().await,
                Err(error) => Err(error),
            }
            .map_err(|error| Error::from_store(op::GET, &self.inner.name, name, error))?;
            self.inner.metrics.fetched(op::GET, data.len() as u64);
            Ok(data)
        })
        .await
    }

    /// Streams a whole object into the local file `local` (parent directories are created). The
    /// data goes to `<local>.tmp-download` first and is renamed into place when complete, so
    /// `local` is never half-written. Returns the object's size. Counted as a `get`.
    pub async fn download_file(&self, name: &str, local: &LocalPath) -> Result<u64> {
        self.observe(op::GET, name, async {
            let store_error = |error| Error::from_store(op::GET, &self.inner.name, name, error);
            let result = self
                .inner
                .store
                .get_opts(&Path::from(name), GetOptions::default())
                .await
                .map_err(store_error)?;
            let mut staging = local.as_os_str().to_owned();
            staging.push(".tmp-download");
            let staging = std::path::PathBuf::from(staging);
            let written = write_stream(result.into_stream(), &staging, store_error).await;
            let renamed = match written {
                Ok(size) => tokio::fs::rename(&staging, local)
                    .await
                    .map(|()| size)
                    .map_err(|source| Error::LocalIo {
                        path: local.to_owned(),
                        source,
                    }),
                Err(error) => Err(error),
            };
            if renamed.is_err() {
                // Best effort: the staging file may not even exist.
                let _ = tokio::fs::remove_file(&staging).await;
            }
            let size = renamed?;
            self.inner.metrics.fetched(op::GET, size);
            Ok(size)
        })
        .await
    }

    /// Reads `range` of an object. A range reaching past the end returns the bytes up to the end;
    /// a range starting past the end is an [`ErrorKind::InvalidRange`](crate::ErrorKind) error.
    pub async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        self.observe(op::GET_RANGE, name, async {
            if let Some(path) = self.local_path(name) {
                let wanted = range.clone();
                let read =
                    tokio::task::spawn_blocking(move || crate::local::read_range(&path, wanted));
                if let Ok(Some(data)) = read.await {
                    self.inner.metrics.fetched(op::GET_RANGE, data.len() as u64);
                    return Ok(data);
                }
            }
            let options = GetOptions::new().with_range(Some(range.clone()));
            let result = self.inner.store.get_opts(&Path::from(name), options).await;
            let fetched = match result {
                Ok(result) => result.bytes().await,
                Err(error) => Err(error),
            };
            match fetched {
                Ok(data) => {
                    self.inner.metrics.fetched(op::GET_RANGE, data.len() as u64);
                    Ok(data)
                }
                Err(error) => Err(self.range_error(name, range, error).await),
            }
        })
        .await
    }

    /// Reads many ranges of one object, returning each range's bytes in the order asked.
    /// Ranges closer than [`RangeOptions::max_gap`](crate::RangeOptions::max_gap) are fetched
    /// with one request, and up to [`RangeOptions::concurrency`](crate::RangeOptions::concurrency)
    /// requests run at once. Each request counts as one `get_range` operation.
    pub async fn get_ranges(&self, name: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let settings = &self.inner.options.ranges;
        if let Some(path) = self.local_path(name) {
            // A local read costs a system call, not a round trip: ranges are merged only across
            // gaps smaller than a page, and every read of the call shares one open file.
            let gap = settings.max_gap.min(crate::local::COALESCE_GAP);
            let plan = ranges::plan(ranges, gap, settings.max_merged_size);
            let fetches = plan.fetches.clone();
            let started = Instant::now();
            let read =
                tokio::task::spawn_blocking(move || crate::local::read_ranges(&path, &fetches));
            if let Ok(Some(fetched)) = read.await {
                let metrics = &self.inner.metrics;
                let seconds = started.elapsed().as_secs_f64() / fetched.len().max(1) as f64;
                for data in &fetched {
                    metrics.attempted(op::GET_RANGE);
                    metrics.succeeded(op::GET_RANGE, seconds);
                    metrics.fetched(op::GET_RANGE, data.len() as u64);
                }
                return self.place_ranges(name, ranges, &plan, &fetched);
            }
        }
        let plan = ranges::plan(ranges, settings.max_gap, settings.max_merged_size);
        let fetched: Vec<Bytes> = futures_util::stream::iter(plan.fetches.iter().cloned())
            .map(|fetch| self.get_range(name, fetch))
            .buffered(settings.concurrency.max(1))
            .try_collect()
            .await?;
        self.place_ranges(name, ranges, &plan, &fetched)
    }

    /// The file of object `name` when this is a FILESYSTEM bucket and `name` a plain path.
    fn local_path(&self, name: &str) -> Option<std::path::PathBuf> {
        self.inner
            .local_root
            .as_deref()
            .and_then(|root| crate::local::object_path(root, name))
    }

    /// Each requested range's bytes, cut from the fetches of `plan`.
    fn place_ranges(
        &self,
        name: &str,
        ranges: &[Range<u64>],
        plan: &ranges::RangePlan,
        fetched: &[Bytes],
    ) -> Result<Vec<Bytes>> {
        plan.place(ranges, fetched)
            .map_err(|(range, size)| Error::InvalidRange {
                operation: op::GET_RANGE,
                bucket: self.inner.name.clone(),
                name: name.to_owned(),
                start: range.start,
                end: range.end,
                size,
            })
    }

    /// Whether an object exists. A missing object is `Ok(false)`, not an error.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        self.observe(op::EXISTS, name, async {
            match self.head(op::EXISTS, name).await {
                Ok(_) => Ok(true),
                Err(error) if error.is_not_found() => Ok(false),
                Err(error) => Err(error),
            }
        })
        .await
    }

    /// Size and modification time of an object.
    pub async fn attributes(&self, name: &str) -> Result<ObjectAttributes> {
        self.observe(op::ATTRIBUTES, name, async {
            let meta = self.head(op::ATTRIBUTES, name).await?;
            Ok(ObjectAttributes {
                size: meta.size,
                last_modified: SystemTime::from(meta.last_modified),
            })
        })
        .await
    }

    /// Writes an object from memory, replacing any existing one. Objects larger than the part
    /// size are uploaded in parts. Readers never see a partial object.
    pub async fn upload(&self, name: &str, data: Bytes) -> Result<()> {
        self.observe(op::UPLOAD, name, async {
            let size = data.len() as u64;
            match self.inner.part_size {
                Some(part_size) if size > part_size => {
                    let chunks = split_chunks(&data, part_size);
                    self.upload_parts(name, futures_util::stream::iter(chunks.map(Ok)))
                        .await?;
                }
                _ => self.put_whole(name, data).await?,
            }
            self.inner.metrics.uploaded(size);
            Ok(())
        })
        .await
    }

    /// Writes an object from a local file, streaming it in parts when it is larger than the part
    /// size.
    pub async fn upload_file(&self, name: &str, local: &LocalPath) -> Result<()> {
        self.observe(op::UPLOAD, name, async {
            let local_error = |source| Error::LocalIo {
                path: local.to_owned(),
                source,
            };
            let mut file = tokio::fs::File::open(local).await.map_err(local_error)?;
            let size = file.metadata().await.map_err(local_error)?.len();
            match self.inner.part_size {
                Some(part_size) if size > part_size => {
                    let part_len = usize::try_from(part_size).unwrap_or(usize::MAX);
                    let parts =
                        futures_util::stream::try_unfold(file, move |mut file| async move {
                            let part = read_up_to(&mut file, part_len).await?;
                            Ok::<_, std::io::Error>((!part.is_empty()).then_some((part, file)))
                        })
                        .map_err(local_error);
                    self.upload_parts(name, parts).await?;
                }
                _ => {
                    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                    file.read_to_end(&mut data).await.map_err(local_error)?;
                    self.put_whole(name, Bytes::from(data)).await?;
                }
            }
            self.inner.metrics.uploaded(size);
            Ok(())
        })
        .await
    }

    /// Deletes an object. Deleting a missing object succeeds (deletion is idempotent).
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.observe(op::DELETE, name, async {
            let location = Path::from(name);
            let mut results = self
                .inner
                .store
                .delete_stream(futures_util::stream::once(async move { Ok(location) }).boxed());
            while let Some(result) = results.next().await {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(error) => {
                        return Err(Error::from_store(op::DELETE, &self.inner.name, name, error));
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Lists the entries directly under `dir` (`""` = the bucket's top level) as Thanos' `Iter`
    /// does: object names, and `name/` for each sub-directory (common prefix), sorted, all
    /// relative to the bucket (including `dir`).
    pub async fn iter(&self, dir: &str) -> Result<Vec<String>> {
        self.observe(op::ITER, dir, async {
            let prefix = dir_prefix(dir);
            let listing = self
                .inner
                .store
                .list_with_delimiter(prefix.as_ref())
                .await
                .map_err(|error| Error::from_store(op::ITER, &self.inner.name, dir, error))?;
            let mut names: Vec<String> = listing
                .common_prefixes
                .iter()
                .map(|prefix| format!("{prefix}/"))
                .chain(
                    listing
                        .objects
                        .iter()
                        .map(|object| object.location.to_string()),
                )
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// Lists every object under `dir` at any depth (Thanos' `Iter` with the recursive option):
    /// object names only, sorted.
    pub async fn iter_recursive(&self, dir: &str) -> Result<Vec<String>> {
        let objects = self.iter_recursive_with_attributes(dir).await?;
        Ok(objects.into_iter().map(|(name, _)| name).collect())
    }

    /// Like [`Bucket::iter_recursive`], with each object's size and modification time (Thanos'
    /// `IterWithAttributes`; the compactor ages partial uploads with it). Sorted by name.
    pub async fn iter_recursive_with_attributes(
        &self,
        dir: &str,
    ) -> Result<Vec<(String, ObjectAttributes)>> {
        self.observe(op::ITER, dir, async {
            let prefix = dir_prefix(dir);
            let mut objects: Vec<(String, ObjectAttributes)> = self
                .inner
                .store
                .list(prefix.as_ref())
                .map_ok(|object| {
                    let attributes = ObjectAttributes {
                        size: object.size,
                        last_modified: SystemTime::from(object.last_modified),
                    };
                    (object.location.to_string(), attributes)
                })
                .try_collect()
                .await
                .map_err(|error| Error::from_store(op::ITER, &self.inner.name, dir, error))?;
            objects.sort_by(|left, right| left.0.cmp(&right.0));
            Ok(objects)
        })
        .await
    }

    /// Runs `operation` with its metrics: counted, timed on success, and counted as a failure
    /// unless it is a missing object on a read.
    async fn observe<T: Send>(
        &self,
        operation: &'static str,
        name: &str,
        future: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let metrics = &self.inner.metrics;
        metrics.attempted(operation);
        let started = Instant::now();
        let result = future.await;
        match &result {
            Ok(_) => metrics.succeeded(operation, started.elapsed().as_secs_f64()),
            Err(error) if error.is_not_found() && is_read(operation) => {}
            Err(error) => {
                metrics.failed(operation);
                debug!(bucket = %self.inner.name, operation, name, %error, "bucket operation failed");
            }
        }
        result
    }

    async fn head(&self, operation: &'static str, name: &str) -> Result<object_store::ObjectMeta> {
        let options = GetOptions::new().with_head(true);
        self.inner
            .store
            .get_opts(&Path::from(name), options)
            .await
            .map(|result| result.meta)
            .map_err(|error| Error::from_store(operation, &self.inner.name, name, error))
    }

    /// Classifies a failed ranged read: a start past the object's end is an invalid range.
    async fn range_error(
        &self,
        name: &str,
        range: Range<u64>,
        error: object_store::Error,
    ) -> Error {
        let error = Error::from_store(op::GET_RANGE, &self.inner.name, name, error);
        if !matches!(error, Error::Backend { .. }) {
            return error;
        }
        match self.head(op::GET_RANGE, name).await {
            Ok(meta) if range.start >= meta.size => Error::InvalidRange {
                operation: op::GET_RANGE,
                bucket: self.inner.name.clone(),
                name: name.to_owned(),
                start: range.start,
                end: range.end,
                size: meta.size,
            },
            _ => error,
        }
    }

    async fn put_whole(&self, name: &str, data: Bytes) -> Result<()> {
        let options = PutOptions {
            attributes: self.inner.put_attributes.clone(),
            ..PutOptions::default()
        };
        self.inner
            .store
            .put_opts(&Path::from(name), PutPayload::from(data), options)
            .await
            .map(|_| ())
            .map_err(|error| Error::from_store(op::UPLOAD, &self.inner.name, name, error))
    }

    /// Multipart upload of `parts` (each at most the part size); aborted on any error so no
    /// partial object or orphaned parts remain.
    async fn upload_parts(
        &self,
        name: &str,
        parts: impl futures_util::Stream<Item = Result<Bytes>> + Send,
    ) -> Result<()> {
        let store_error = |error| Error::from_store(op::UPLOAD, &self.inner.name, name, error);
        let options = PutMultipartOptions {
            attributes: self.inner.put_attributes.clone(),
            ..PutMultipartOptions::default()
        };
        let upload = self
            .inner
            .store
            .put_multipart_opts(&Path::from(name), options)
            .await
            .map_err(store_error)?;
        let part_size = self.inner.part_size.unwrap_or(u64::MAX);
        let mut writer = WriteMultipart::new_with_chunk_size(
            upload,
            usize::try_from(part_size).unwrap_or(usize::MAX),
        );
        let concurrency = self.inner.options.upload_concurrency.max(1);
        let mut parts = std::pin::pin!(parts);
        let written: Result<()> = async {
            while let Some(part) = parts.next().await {
                let part = part?;
                writer
                    .wait_for_capacity(concurrency)
                    .await
                    .map_err(store_error)?;
                writer.put(part);
            }
            Ok(())
        }
        .await;
        if let Err(error) = written {
            if let Err(abort_error) = writer.abort().await {
                debug!(bucket = %self.inner.name, name, %abort_error, "abort multipart upload");
            }
            return Err(error);
        }
        writer.finish().await.map(|_| ()).map_err(store_error)
    }
}

/// Writes `stream` to the new file `path` (creating its parent directories) and returns the
/// number of bytes written.
async fn write_stream(
    mut stream: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    path: &LocalPath,
    store_error: impl Fn(object_store::Error) -> Error,
) -> Result<u64> {
    use tokio::io::AsyncWriteExt;
    let local_error = |source| Error::LocalIo {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(local_error)?;
    }
    let mut file = tokio::fs::File::create(path).await.map_err(local_error)?;
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(&store_error)?;
        file.write_all(&chunk).await.map_err(local_error)?;
        size += chunk.len() as u64;
    }
    file.sync_all().await.map_err(local_error)?;
    Ok(size)
}

/// Whether a missing object is an expected answer of `operation` (not a failure).
fn is_read(operation: &str) -> bool {
    matches!(
        operation,
        op::GET | op::GET_RANGE | op::EXISTS | op::ATTRIBUTES
    )
}

/// The listing prefix for a Thanos directory name (`""`, `dir` or `dir/`).
fn dir_prefix(dir: &str) -> Option<Path> {
    let trimmed = dir.trim_matches('/');
    (!trimmed.is_empty()).then(|| Path::from(trimmed))
}

/// `data` cut into pieces of at most `part_size` bytes.
fn split_chunks(data: &Bytes, part_size: u64) -> impl Iterator<Item = Bytes> + use<> {
    let data = data.clone();
    let step = usize::try_from(part_size).unwrap_or(usize::MAX).max(1);
    (0..data.len())
        .step_by(step)
        .map(move |start| data.slice(start..(start.saturating_add(step)).min(data.len())))
}

/// Reads up to `limit` bytes (fewer only at the end of the file).
async fn read_up_to(file: &mut tokio::fs::File, limit: usize) -> std::io::Result<Bytes> {
    let mut buffer = BytesMut::with_capacity(limit.min(64 * 1024 * 1024));
    while buffer.len() < limit {
        let wanted = (limit - buffer.len()).min(1024 * 1024);
        let read = (&mut *file)
            .take(wanted as u64)
            .read_buf(&mut buffer)
            .await?;
        if read == 0 {
            break;
        }
    }
    Ok(buffer.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_data_in_order() {
        let data = Bytes::from((0..10u8).collect::<Vec<_>>());
        let chunks: Vec<Bytes> = split_chunks(&data, 4).collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), data.to_vec());
        assert_eq!(chunks[2].len(), 2);
    }

    fn filesystem_bucket(dir: &std::path::Path) -> Bucket {
        let options = BucketOptions {
            part_size: 1024,
            ..BucketOptions::default()
        };
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .unwrap()
            .with_automatic_cleanup(true);
        Bucket::from_store("fs", Arc::new(store), options, &Registry::new()).unwrap()
    }

    /// Every regular file under `dir`, relative.
    fn files_on_disk(dir: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_owned()];
        while let Some(current) = pending.pop() {
            for entry in std::fs::read_dir(&current).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn failed_multipart_upload_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = filesystem_bucket(dir.path());
        let parts = futures_util::stream::iter(vec![
            Ok(Bytes::from(vec![1u8; 1024])),
            Ok(Bytes::from(vec![2u8; 1024])),
            Err(Error::LocalIo {
                path: "source".into(),
                source: std::io::Error::other("disk went away"),
            }),
        ]);
        let error = bucket.upload_parts("block/index", parts).await.unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::LocalIo);
        assert!(!bucket.exists("block/index").await.unwrap());
        assert!(bucket.iter_recursive("").await.unwrap().is_empty());
        assert_eq!(
            files_on_disk(dir.path()),
            Vec::<String>::new(),
            "staging files left"
        );
    }

    #[tokio::test]
    async fn filesystem_multipart_upload_appears_whole() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = filesystem_bucket(dir.path());
        let data = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
        bucket.upload("a/b", data.clone()).await.unwrap();
        assert_eq!(bucket.get("a/b").await.unwrap(), data);
        assert_eq!(files_on_disk(dir.path()), vec!["a/b".to_owned()]);
        bucket.delete("a/b").await.unwrap();
        assert_eq!(files_on_disk(dir.path()), Vec::<String>::new());
        assert!(!dir.path().join("a").exists(), "emptied directory removed");
    }

    #[test]
    fn dir_prefixes() {
        assert_eq!(dir_prefix(""), None);
        assert_eq!(dir_prefix("/"), None);
        assert_eq!(dir_prefix("a/"), Some(Path::from("a")));
        assert_eq!(dir_prefix("a/b"), Some(Path::from("a/b")));
    }
}
