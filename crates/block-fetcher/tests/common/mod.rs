//! Shared set-ups: blocks written into a bucket, metric reads, a store whose reads can fail.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use objstore::{Bucket, BucketOptions};
use prometheus::Registry;
use tsdb_block::meta::{BlockMeta, Mark, ThanosMeta, source};
use ulid::Ulid;

/// Unix milliseconds of `time`.
pub fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A ULID created `age` before `now`.
pub fn ulid_aged(now: SystemTime, age: Duration, random: u128) -> Ulid {
    Ulid::from_parts((millis(now) - age.as_millis() as i64) as u64, random)
}

/// A meta over `[min, max)` with external labels, source and compaction sources.
pub fn meta(id: Ulid, labels: &[(&str, &str)], source_name: &str, sources: &[Ulid]) -> BlockMeta {
    let mut meta = BlockMeta::new(id, 1_000, 2_000);
    let labels = labels
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    meta.thanos = Some(ThanosMeta::new(labels, 0, source_name));
    meta.compaction.sources = if sources.is_empty() {
        vec![id]
    } else {
        sources.to_vec()
    };
    meta
}

/// A sidecar block labelled `cluster="eu1"`.
pub fn sidecar_meta(id: Ulid) -> BlockMeta {
    meta(id, &[("cluster", "eu1")], source::SIDECAR, &[])
}

/// Uploads a block: a chunk file, an index, then `meta.json`.
pub async fn put_block(bucket: &Bucket, meta: &BlockMeta) {
    let id = meta.ulid;
    bucket
        .upload(
            &format!("{id}/chunks/000001"),
            Bytes::from_static(b"chunks"),
        )
        .await
        .unwrap();
    bucket
        .upload(&format!("{id}/index"), Bytes::from_static(b"index"))
        .await
        .unwrap();
    bucket
        .upload(&format!("{id}/meta.json"), Bytes::from(meta.to_json()))
        .await
        .unwrap();
}

/// Uploads a mark into its block's folder.
pub async fn put_mark<M: Mark + Sync>(bucket: &Bucket, mark: &M) {
    bucket
        .upload(
            &format!("{}/{}", mark.block(), M::FILE_NAME),
            Bytes::from(mark.to_json()),
        )
        .await
        .unwrap();
}

/// The value of a metric with the given labels (all of them must match); 0 when absent.
pub fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for family in registry.gather() {
        if family.name() != name {
            continue;
        }
        for sample in family.get_metric() {
            let matches = labels.iter().all(|(label, value)| {
                sample
                    .get_label()
                    .iter()
                    .any(|pair| pair.name() == *label && pair.value() == *value)
            });
            if !matches {
                continue;
            }
            total += if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
                sample.get_counter().get_value()
            } else {
                sample.get_gauge().get_value()
            };
        }
    }
    total
}

/// Every bucket operation so far (`thanos_objstore_bucket_operations_total`).
pub fn bucket_operations(registry: &Registry) -> f64 {
    metric(registry, "thanos_objstore_bucket_operations_total", &[])
}

/// Bucket operations of one kind (`get`, `iter`, ...).
pub fn bucket_operations_of(registry: &Registry, operation: &str) -> f64 {
    metric(
        registry,
        "thanos_objstore_bucket_operations_total",
        &[("operation", operation)],
    )
}

/// Short retries so a failing read fails fast.
pub fn test_options() -> BucketOptions {
    BucketOptions {
        max_retries: 0,
        init_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        retry_timeout: Duration::from_secs(2),
        ..BucketOptions::default()
    }
}

/// An in-memory store whose reads of chosen objects fail with a server error.
#[derive(Debug, Default)]
pub struct FaultyStore {
    inner: InMemory,
    failing: Mutex<Vec<String>>,
}

impl FaultyStore {
    /// A bucket over a new faulty store, and the store.
    pub fn bucket(registry: &Registry) -> (Bucket, Arc<FaultyStore>) {
        let store = Arc::new(FaultyStore::default());
        let dyn_store: Arc<dyn ObjectStore> = Arc::clone(&store) as Arc<dyn ObjectStore>;
        let bucket = Bucket::from_store("faulty", dyn_store, test_options(), registry).unwrap();
        (bucket, store)
    }

    /// Reads of `name` fail from now on.
    pub fn fail_reads_of(&self, name: &str) {
        self.failing.lock().unwrap().push(name.to_owned());
    }

    /// Reads of every object succeed again.
    pub fn heal(&self) {
        self.failing.lock().unwrap().clear();
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("FaultyStore")
    }
}

impl ObjectStore for FaultyStore {
    fn put_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> BoxFuture<'c, object_store::Result<PutResult>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.inner.put_opts(location, payload, opts)
    }

    fn put_multipart_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        opts: PutMultipartOptions,
    ) -> BoxFuture<'c, object_store::Result<Box<dyn MultipartUpload>>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.inner.put_multipart_opts(location, opts)
    }

    fn get_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        options: GetOptions,
    ) -> BoxFuture<'c, object_store::Result<GetResult>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        let failing = self
            .failing
            .lock()
            .unwrap()
            .iter()
            .any(|name| name.as_str() == location.as_ref());
        if failing {
            return Box::pin(async {
                Err(object_store::Error::Generic {
                    store: "FaultyStore",
                    source: "injected read failure".into(),
                })
            });
        }
        self.inner.get_opts(location, options)
    }

    fn get_ranges<'a, 'b, 'c, 'd>(
        &'a self,
        location: &'b Path,
        ranges: &'c [Range<u64>],
    ) -> BoxFuture<'d, object_store::Result<Vec<Bytes>>>
    where
        'a: 'd,
        'b: 'd,
        'c: 'd,
        Self: 'd,
    {
        self.inner.get_ranges(location, ranges)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_delimiter<'a, 'b, 'c>(
        &'a self,
        prefix: Option<&'b Path>,
    ) -> BoxFuture<'c, object_store::Result<ListResult>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.inner.list_with_delimiter(prefix)
    }

    fn copy_opts<'a, 'b, 'c, 'd>(
        &'a self,
        from: &'b Path,
        to: &'c Path,
        options: CopyOptions,
    ) -> BoxFuture<'d, object_store::Result<()>>
    where
        'a: 'd,
        'b: 'd,
        'c: 'd,
        Self: 'd,
    {
        self.inner.copy_opts(from, to, options)
    }
}

/// Block ids by state name, for readable assertions.
pub fn states(snapshot: &block_fetcher::Snapshot) -> BTreeMap<Ulid, &'static str> {
    snapshot
        .states
        .iter()
        .map(|(id, state)| (*id, state.as_str()))
        .collect()
}
