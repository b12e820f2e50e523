//! The conformance suite every [`Bucket`] backend must pass (feature `testing`).
//!
//! [`run_all`] runs each check under its own `conformance/<check>/` prefix and removes what it
//! wrote. A check panics with a message naming the backend, the check and the difference, so it
//! is meant to be called from a test:
//!
//! ```text
//! #[tokio::test]
//! async fn filesystem_conforms() {
//!     let bucket = /* open the backend */;
//!     objstore::testing::run_all(&bucket).await;
//! }
//! ```

use std::ops::Range;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::{Bucket, ErrorKind, Result};

/// Runs every check against `bucket`.
pub async fn run_all(bucket: &Bucket) {
    put_get_delete(bucket).await;
    missing_objects(bucket).await;
    empty_and_overwritten_objects(bucket).await;
    ranged_reads(bucket).await;
    many_ranges(bucket).await;
    listing(bucket).await;
    large_uploads(bucket).await;
    block_upload_and_delete_order(bucket).await;
}

/// Upload, read back, inspect and delete one object.
pub async fn put_get_delete(bucket: &Bucket) {
    let check = Check::new(bucket, "put_get_delete");
    let name = check.name("dir/object.bin");
    let data = pseudo_random(10_000, 1);
    check.ok(bucket.upload(&name, data.clone()).await, "upload");
    assert_eq!(
        check.ok(bucket.get(&name).await, "get"),
        data,
        "{check}: content read back"
    );
    assert!(
        check.ok(bucket.exists(&name).await, "exists"),
        "{check}: exists after upload"
    );
    let attributes = check.ok(bucket.attributes(&name).await, "attributes");
    assert_eq!(attributes.size, 10_000, "{check}: attributes size");
    let age = SystemTime::now()
        .duration_since(attributes.last_modified)
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(300),
        "{check}: last modified {age:?} ago, want just now"
    );
    check.ok(bucket.delete(&name).await, "delete");
    assert!(
        !check.ok(bucket.exists(&name).await, "exists"),
        "{check}: exists after delete"
    );
    check.cleanup().await;
}

/// A missing object is `NotFound` on reads, `false` for exists, and deleting it succeeds.
pub async fn missing_objects(bucket: &Bucket) {
    let check = Check::new(bucket, "missing_objects");
    let name = check.name("no/such/object");
    check.not_found(bucket.get(&name).await, "get");
    check.not_found(bucket.get_range(&name, 0..10).await, "get_range");
    check.not_found(bucket.attributes(&name).await, "attributes");
    assert!(
        !check.ok(bucket.exists(&name).await, "exists"),
        "{check}: exists of a missing object"
    );
    check.ok(bucket.delete(&name).await, "delete of a missing object");
    let listed = check.ok(bucket.iter(&check.name("no/such")).await, "iter");
    assert!(
        listed.is_empty(),
        "{check}: iter of a missing dir gave {listed:?}"
    );
}

/// Zero-byte objects work, and an upload replaces the previous content.
pub async fn empty_and_overwritten_objects(bucket: &Bucket) {
    let check = Check::new(bucket, "empty_and_overwritten");
    let empty = check.name("empty");
    check.ok(bucket.upload(&empty, Bytes::new()).await, "upload empty");
    assert!(
        check.ok(bucket.get(&empty).await, "get empty").is_empty(),
        "{check}: empty object"
    );
    assert_eq!(
        check.ok(bucket.attributes(&empty).await, "attributes").size,
        0
    );
    let name = check.name("replaced");
    check.ok(
        bucket
            .upload(&name, Bytes::from_static(b"first version"))
            .await,
        "upload",
    );
    check.ok(
        bucket.upload(&name, Bytes::from_static(b"second")).await,
        "overwrite",
    );
    assert_eq!(
        check.ok(bucket.get(&name).await, "get"),
        Bytes::from_static(b"second"),
        "{check}: content after overwrite"
    );
    check.cleanup().await;
}

/// Ranged reads: inside, at the end, past the end (truncated), starting past the end (error).
pub async fn ranged_reads(bucket: &Bucket) {
    let check = Check::new(bucket, "ranged_reads");
    let name = check.name("object");
    let data = pseudo_random(1000, 2);
    check.ok(bucket.upload(&name, data.clone()).await, "upload");
    for range in [0..1, 0..1000, 100..200, 999..1000, 500..1500] {
        let expected = data.slice(range.start as usize..(range.end as usize).min(1000));
        let got = check.ok(bucket.get_range(&name, range.clone()).await, "get_range");
        assert_eq!(got, expected, "{check}: range {range:?}");
    }
    assert!(
        check
            .ok(bucket.get_range(&name, 10..10).await, "empty range")
            .is_empty(),
        "{check}: an empty range is empty"
    );
    match bucket.get_range(&name, 1000..1010).await {
        Err(error) => assert_eq!(
            error.kind(),
            ErrorKind::InvalidRange,
            "{check}: range past the end: {error}"
        ),
        Ok(data) => panic!(
            "{check}: range starting past the end returned {} bytes",
            data.len()
        ),
    }
    check.cleanup().await;
}

/// [`Bucket::get_ranges`] returns each requested range, whatever the order, overlap and gaps.
pub async fn many_ranges(bucket: &Bucket) {
    let check = Check::new(bucket, "many_ranges");
    let name = check.name("object");
    let size = 300_000;
    let data = pseudo_random(size, 3);
    check.ok(bucket.upload(&name, data.clone()).await, "upload");
    let ranges: Vec<Range<u64>> = vec![
        250_000..250_100,
        0..16,
        16..32,
        100..5000,
        4000..4100,
        70_000..70_001,
        140_000..200_000,
        7..7,
        299_990..300_000,
        299_995..300_500,
    ];
    let parts = check.ok(bucket.get_ranges(&name, &ranges).await, "get_ranges");
    assert_eq!(parts.len(), ranges.len(), "{check}: one result per range");
    for (range, part) in ranges.iter().zip(&parts) {
        let end = (range.end as usize).min(size);
        let expected = data.slice(range.start as usize..end.max(range.start as usize));
        assert_eq!(*part, expected, "{check}: range {range:?}");
    }
    check.not_found(
        bucket
            .get_ranges(&check.name("missing"), &[0..10, 20..30])
            .await,
        "get_ranges of a missing object",
    );
    check.cleanup().await;
}

/// Thanos' `Iter`: direct children with `dir/` entries, and the recursive listing.
pub async fn listing(bucket: &Bucket) {
    let check = Check::new(bucket, "listing");
    let root = check.name("");
    let root = root.trim_end_matches('/');
    for relative in ["a/1", "a/2", "a/b/3", "a/b/c/4", "c", "d/5"] {
        let name = format!("{root}/{relative}");
        check.ok(
            bucket.upload(&name, Bytes::from_static(b"x")).await,
            "upload",
        );
    }
    let expected = |names: &[&str]| -> Vec<String> {
        names.iter().map(|name| format!("{root}/{name}")).collect()
    };
    let top = check.ok(bucket.iter(root).await, "iter root");
    assert_eq!(top, expected(&["a/", "c", "d/"]), "{check}: iter {root}");
    let with_slash = check.ok(bucket.iter(&format!("{root}/")).await, "iter root/");
    assert_eq!(with_slash, top, "{check}: trailing slash on the dir");
    let a = check.ok(bucket.iter(&format!("{root}/a")).await, "iter a");
    assert_eq!(a, expected(&["a/1", "a/2", "a/b/"]), "{check}: iter a");
    let all = check.ok(bucket.iter_recursive(root).await, "iter recursive");
    assert_eq!(
        all,
        expected(&["a/1", "a/2", "a/b/3", "a/b/c/4", "c", "d/5"]),
        "{check}: recursive iter"
    );
    let with_attributes = check.ok(
        bucket.iter_recursive_with_attributes(root).await,
        "iter recursive with attributes",
    );
    let names: Vec<String> = with_attributes
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(names, all, "{check}: names with attributes");
    for (name, attributes) in &with_attributes {
        assert_eq!(attributes.size, 1, "{check}: listed size of {name}");
        let age = SystemTime::now()
            .duration_since(attributes.last_modified)
            .unwrap_or_default();
        assert!(
            age < Duration::from_secs(300),
            "{check}: listed age of {name}: {age:?}"
        );
    }
    let nested = check.ok(
        bucket.iter_recursive(&format!("{root}/a/b")).await,
        "iter a/b",
    );
    assert_eq!(
        nested,
        expected(&["a/b/3", "a/b/c/4"]),
        "{check}: recursive iter a/b"
    );
    // A dir name is a whole path segment: `a` does not list `ab`.
    check.ok(
        bucket
            .upload(&format!("{root}/ab"), Bytes::from_static(b"y"))
            .await,
        "upload ab",
    );
    let a_again = check.ok(bucket.iter(&format!("{root}/a/")).await, "iter a/");
    assert_eq!(a_again, a, "{check}: sibling with a common name prefix");
    check.cleanup().await;
}

/// Objects larger than the part size (multipart), from memory and from a file.
pub async fn large_uploads(bucket: &Bucket) {
    let check = Check::new(bucket, "large_uploads");
    let size = match bucket.part_size() {
        Some(part_size) if part_size <= 16 * 1024 * 1024 => part_size as usize * 2 + 12_345,
        _ => 3 * 1024 * 1024 + 17,
    };
    let data = pseudo_random(size, 4);
    let from_memory = check.name("from-memory");
    check.ok(bucket.upload(&from_memory, data.clone()).await, "upload");
    assert_eq!(
        check
            .ok(bucket.attributes(&from_memory).await, "attributes")
            .size,
        size as u64
    );
    assert!(
        check.ok(bucket.get(&from_memory).await, "get") == data,
        "{check}: content from memory"
    );
    let dir = check.ok(tempdir(), "create temp dir");
    let local = dir.path().join("large");
    check.ok(
        std::fs::write(&local, &data).map_err(|source| crate::Error::LocalIo {
            path: local.clone(),
            source,
        }),
        "write local file",
    );
    let from_file = check.name("from-file");
    check.ok(bucket.upload_file(&from_file, &local).await, "upload_file");
    let tail = check.ok(
        bucket
            .get_range(&from_file, size as u64 - 100..size as u64)
            .await,
        "get_range",
    );
    assert_eq!(
        tail,
        data.slice(size - 100..),
        "{check}: tail of the file upload"
    );
    assert!(
        check.ok(bucket.get(&from_file).await, "get") == data,
        "{check}: content from file"
    );
    check.cleanup().await;
}

/// [`Bucket::upload_dir`] writes `meta.json` last; [`Bucket::delete_dir`] deletes it first.
pub async fn block_upload_and_delete_order(bucket: &Bucket) {
    let check = Check::new(bucket, "block_order");
    let dir = check.ok(tempdir(), "create temp dir");
    let files = [
        ("chunks/000001", 5000),
        ("chunks/000002", 100),
        ("index", 3000),
        ("meta.json", 200),
        ("tombstones", 10),
        ("deletion-mark.json", 50),
    ];
    for (relative, size) in files {
        let path = dir.path().join(relative);
        if let Some(parent) = path.parent() {
            check.ok(
                local_io(std::fs::create_dir_all(parent), parent),
                "create dir",
            );
        }
        check.ok(
            local_io(
                std::fs::write(&path, pseudo_random(size, size as u64)),
                &path,
            ),
            "write",
        );
    }
    let block = check.name("01JBLOCKULID0000000000000A");
    let block = block.trim_end_matches('/');
    let uploaded = check.ok(bucket.upload_dir(dir.path(), block).await, "upload_dir");
    assert_eq!(
        uploaded.len(),
        files.len(),
        "{check}: every file uploaded: {uploaded:?}"
    );
    assert_eq!(
        uploaded.last().map(String::as_str),
        Some(format!("{block}/meta.json").as_str()),
        "{check}: meta.json uploaded last: {uploaded:?}"
    );
    for (relative, size) in files {
        let attributes = check.ok(
            bucket.attributes(&format!("{block}/{relative}")).await,
            relative,
        );
        assert_eq!(attributes.size, size as u64, "{check}: size of {relative}");
    }
    let chunk = check.ok(
        bucket.get(&format!("{block}/chunks/000001")).await,
        "get chunk",
    );
    assert_eq!(chunk, pseudo_random(5000, 5000), "{check}: chunk content");
    let copy = check.ok(tempdir(), "create temp dir");
    let downloaded = check.ok(
        bucket.download_dir(block, copy.path()).await,
        "download_dir",
    );
    assert_eq!(
        downloaded.len(),
        files.len(),
        "{check}: downloaded {downloaded:?}"
    );
    for (relative, size) in files {
        let path = copy.path().join(relative);
        let content = check.ok(local_io(std::fs::read(&path), &path), "read download");
        assert_eq!(
            content,
            pseudo_random(size, size as u64),
            "{check}: downloaded {relative}"
        );
    }
    let missing_target = copy.path().join("missing");
    check.not_found(
        bucket
            .download_file(&format!("{block}/no-such-file"), &missing_target)
            .await,
        "download_file of a missing object",
    );
    let leftovers = check
        .ok(
            local_io(std::fs::read_dir(copy.path()), copy.path()),
            "read dir",
        )
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("missing"))
        .count();
    assert_eq!(leftovers, 0, "{check}: a failed download left a local file");
    let deleted = check.ok(bucket.delete_dir(block).await, "delete_dir");
    assert_eq!(
        deleted.len(),
        files.len(),
        "{check}: every object deleted: {deleted:?}"
    );
    assert_eq!(
        deleted.first().map(String::as_str),
        Some(format!("{block}/meta.json").as_str()),
        "{check}: meta.json deleted first: {deleted:?}"
    );
    assert_eq!(
        deleted.last().map(String::as_str),
        Some(format!("{block}/deletion-mark.json").as_str()),
        "{check}: deletion mark deleted last: {deleted:?}"
    );
    let left = check.ok(bucket.iter_recursive(block).await, "iter after delete_dir");
    assert!(
        left.is_empty(),
        "{check}: objects left after delete_dir: {left:?}"
    );
    check.cleanup().await;
}

/// Deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    Bytes::from(data)
}

/// One check's context: its prefix and its messages.
struct Check<'a> {
    bucket: &'a Bucket,
    check: &'static str,
}

impl std::fmt::Display for Check<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} bucket {:?}, check {}",
            self.bucket.provider(),
            self.bucket.name(),
            self.check
        )
    }
}

impl<'a> Check<'a> {
    fn new(bucket: &'a Bucket, check: &'static str) -> Self {
        Self { bucket, check }
    }

    /// The object name `relative` under this check's prefix.
    fn name(&self, relative: &str) -> String {
        format!("conformance/{}/{relative}", self.check)
    }

    fn ok<T>(&self, result: Result<T>, what: &str) -> T {
        match result {
            Ok(value) => value,
            Err(error) => panic!("{self}: {what}: unexpected error: {error}"),
        }
    }

    fn not_found<T: std::fmt::Debug>(&self, result: Result<T>, what: &str) {
        match result {
            Err(error) if error.is_not_found() => {}
            Err(error) => panic!(
                "{self}: {what}: want not-found, got error {error} ({:?})",
                error.kind()
            ),
            Ok(value) => panic!("{self}: {what}: want not-found, got {value:?}"),
        }
    }

    /// Deletes everything under this check's prefix.
    async fn cleanup(&self) {
        let prefix = format!("conformance/{}", self.check);
        let names = self.ok(
            self.bucket.iter_recursive(&prefix).await,
            "list for cleanup",
        );
        for name in names {
            self.ok(self.bucket.delete(&name).await, "cleanup delete");
        }
        let left = self.ok(
            self.bucket.iter_recursive(&prefix).await,
            "list after cleanup",
        );
        assert!(
            left.is_empty(),
            "{self}: objects left after delete: {left:?}"
        );
    }
}

fn tempdir() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|source| crate::Error::LocalIo {
        path: std::env::temp_dir(),
        source,
    })
}

fn local_io<T>(result: std::io::Result<T>, path: &std::path::Path) -> Result<T> {
    result.map_err(|source| crate::Error::LocalIo {
        path: path.to_owned(),
        source,
    })
}
