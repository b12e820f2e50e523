//! A block's trips between the bucket and the compactor's disk, done so that nothing half-done
//! is ever visible: downloads land under a temporary name and are renamed when complete,
//! uploads send `meta.json` last (with `thanos.files` filled as Thanos' uploader fills it), marks
//! never overwrite an existing mark, and deletions remove `meta.json` first.

use std::io::Read;
use std::path::{Path, PathBuf};

use objstore::Bucket;
use tsdb_block::meta::{BlockMeta, META_FILENAME, Mark, ObjectHash, ThanosFile};
use ulid::Ulid;

use crate::error::{Error, Result};

/// Suffix of a download in progress.
const DOWNLOADING: &str = ".tmp-download";

/// Downloads block `id` into `<parent>/<id>` unless a complete copy is already there (a previous
/// pass kept it after a failure). Returns the block's folder.
pub(crate) async fn download(bucket: &Bucket, id: Ulid, parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(id.to_string());
    if dir.join(META_FILENAME).is_file() {
        return Ok(dir);
    }
    let partial = parent.join(format!("{id}{DOWNLOADING}"));
    remove_dir_if_present(&partial)?;
    remove_dir_if_present(&dir)?;
    tokio::fs::create_dir_all(&partial)
        .await
        .map_err(|source| Error::local(&partial, source))?;
    bucket
        .download_dir(&id.to_string(), &partial)
        .await
        .map_err(|source| Error::bucket(format!("download block {id}"), source))?;
    if !partial.join(META_FILENAME).is_file() {
        return Err(Error::Block {
            block: id,
            action: "download (meta.json vanished: the block is being deleted)",
            source: tsdb_block::Error::InvalidMeta {
                path: format!("{id}/{META_FILENAME}"),
                detail: "missing after download".to_owned(),
            },
        });
    }
    tokio::fs::rename(&partial, &dir)
        .await
        .map_err(|source| Error::local(&dir, source))?;
    Ok(dir)
}

/// Uploads the local block `dir` (its `meta` is rewritten with `thanos.files`, hashed when
/// `hash_func` is `SHA256`), `meta.json` last.
pub(crate) async fn upload(
    bucket: &Bucket,
    dir: &Path,
    mut meta: BlockMeta,
    hash_func: &str,
) -> Result<BlockMeta> {
    let id = meta.ulid;
    let owned_dir = dir.to_owned();
    let sha256 = hash_func == "SHA256";
    let (files, segments) = tokio::task::spawn_blocking(move || block_files(&owned_dir, sha256))
        .await
        .map_err(|error| Error::Task {
            what: "gathering block files",
            message: error.to_string(),
        })??;
    // The tombstones file is never uploaded (Thanos ignores tombstones).
    let tombstones = dir.join("tombstones");
    if tombstones.exists() {
        std::fs::remove_file(&tombstones).map_err(|source| Error::local(&tombstones, source))?;
    }
    let thanos = meta.thanos.get_or_insert_with(Default::default);
    thanos.files = files;
    thanos.segment_files = segments;
    meta.write_to_dir(dir).map_err(|source| Error::Block {
        block: id,
        action: "write meta.json",
        source,
    })?;
    bucket
        .upload_dir(dir, &id.to_string())
        .await
        .map_err(|source| Error::bucket(format!("upload block {id}"), source))?;
    Ok(meta)
}

/// `thanos.files` (chunk segments, index, meta.json; sorted) and the segment names of a local
/// block.
fn block_files(dir: &Path, sha256: bool) -> Result<(Vec<ThanosFile>, Vec<String>)> {
    let chunks_dir = dir.join("chunks");
    let mut segments: Vec<String> = std::fs::read_dir(&chunks_dir)
        .map_err(|source| Error::local(&chunks_dir, source))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    segments.sort();
    let mut files = Vec::with_capacity(segments.len() + 2);
    for segment in &segments {
        files.push(file_entry(
            &chunks_dir.join(segment),
            format!("chunks/{segment}"),
            sha256,
        )?);
    }
    files.push(file_entry(&dir.join("index"), "index".to_owned(), sha256)?);
    files.push(ThanosFile {
        rel_path: META_FILENAME.to_owned(),
        size_bytes: 0,
        hash: None,
    });
    files.sort_by(|left, right| left.rel_path.cmp(&right.rel_path));
    Ok((files, segments))
}

fn file_entry(path: &Path, rel_path: String, sha256: bool) -> Result<ThanosFile> {
    let size = std::fs::metadata(path)
        .map_err(|source| Error::local(path, source))?
        .len();
    let hash = if sha256 {
        let mut file = std::fs::File::open(path).map_err(|source| Error::local(path, source))?;
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = file
                .read(&mut buffer)
                .map_err(|source| Error::local(path, source))?;
            if read == 0 {
                break;
            }
            context.update(&buffer[..read]);
        }
        let digest = context.finish();
        let value: String = digest
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Some(ObjectHash {
            hash_func: "SHA256".to_owned(),
            value,
        })
    } else {
        None
    };
    Ok(ThanosFile {
        rel_path,
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        hash,
    })
}

/// Uploads `mark` for its block unless one is already there (a mark is never overwritten).
/// Returns whether it was written.
pub(crate) async fn mark<M: Mark + Sync>(bucket: &Bucket, mark: &M) -> Result<bool> {
    let name = format!("{}/{}", mark.block(), M::FILE_NAME);
    let exists = bucket
        .exists(&name)
        .await
        .map_err(|source| Error::bucket(format!("check {name}"), source))?;
    if exists {
        return Ok(false);
    }
    bucket
        .upload(&name, mark.to_json().into())
        .await
        .map_err(|source| Error::bucket(format!("upload {name}"), source))?;
    Ok(true)
}

/// Deletes block `id` from the bucket: `meta.json` first, the deletion mark last.
pub(crate) async fn delete(bucket: &Bucket, id: Ulid) -> Result<()> {
    bucket
        .delete_dir(&id.to_string())
        .await
        .map_err(|source| Error::bucket(format!("delete block {id}"), source))?;
    Ok(())
}

/// Removes a local folder (or file) if it exists.
pub(crate) fn remove_dir_if_present(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => {
            std::fs::remove_dir_all(path).map_err(|source| Error::local(path, source))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|source| Error::local(path, source)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::local(path, source)),
    }
}

#[cfg(test)]
mod tests {
    use objstore::BucketOptions;
    use prometheus::Registry;
    use tsdb_block::meta::{DeletionMark, ThanosMeta};
    use tsdb_block::writer::BlockWriter;

    use super::*;

    fn write_block(parent: &Path) -> (BlockMeta, PathBuf) {
        let labels = prom_model::Labels::from_pairs([("__name__", "up".to_owned())]);
        let symbols = tsdb_block::writer::symbols_of([&labels]);
        let mut writer = BlockWriter::create(parent, symbols).unwrap();
        let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 15_000, i as f64)).collect();
        writer.add_series_samples(&labels, &samples).unwrap();
        writer.finish().unwrap()
    }

    #[tokio::test]
    async fn upload_fills_files_and_download_round_trips() {
        let bucket = Bucket::in_memory("test", BucketOptions::default(), &Registry::new()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let (mut meta, dir) = write_block(work.path());
        meta.thanos = Some(ThanosMeta::new(Default::default(), 0, "compactor"));
        let uploaded = upload(&bucket, &dir, meta, "SHA256").await.unwrap();
        let thanos = uploaded.thanos.as_ref().unwrap();
        let names: Vec<&str> = thanos.files.iter().map(|f| f.rel_path.as_str()).collect();
        assert_eq!(names, ["chunks/000001", "index", "meta.json"]);
        assert!(thanos.files[1].size_bytes > 0);
        assert_eq!(thanos.files[1].hash.as_ref().unwrap().value.len(), 64);
        assert!(!dir.join("tombstones").exists());
        let id = uploaded.ulid;
        let remote = BlockMeta::from_json(
            &bucket.get(&format!("{id}/meta.json")).await.unwrap(),
            "meta.json",
        )
        .unwrap();
        assert_eq!(remote.thanos.unwrap().files.len(), 3);

        let local = tempfile::tempdir().unwrap();
        let downloaded = download(&bucket, id, local.path()).await.unwrap();
        assert_eq!(
            std::fs::read(downloaded.join("index")).unwrap(),
            std::fs::read(dir.join("index")).unwrap()
        );
        assert!(!local.path().join(format!("{id}{DOWNLOADING}")).exists());
        // A complete local copy is reused; a missing block is an error.
        assert_eq!(
            download(&bucket, id, local.path()).await.unwrap(),
            downloaded
        );
        // A block gone from the bucket (deleted under the pass) is an error the next pass retries.
        let gone = download(&bucket, Ulid::new(), local.path())
            .await
            .unwrap_err();
        assert!(gone.is_retryable(), "{gone}");
    }

    #[tokio::test]
    async fn marks_are_never_overwritten_and_delete_removes_everything() {
        let bucket = Bucket::in_memory("test", BucketOptions::default(), &Registry::new()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let (meta, dir) = write_block(work.path());
        let id = meta.ulid;
        upload(&bucket, &dir, meta, "").await.unwrap();
        assert!(
            mark(&bucket, &DeletionMark::new(id, 100, "first"))
                .await
                .unwrap()
        );
        assert!(
            !mark(&bucket, &DeletionMark::new(id, 200, "second"))
                .await
                .unwrap()
        );
        let stored = bucket
            .get(&format!("{id}/deletion-mark.json"))
            .await
            .unwrap();
        assert_eq!(DeletionMark::from_json(&stored).unwrap().deletion_time, 100);
        delete(&bucket, id).await.unwrap();
        assert!(
            bucket
                .iter_recursive(&id.to_string())
                .await
                .unwrap()
                .is_empty()
        );
    }
}
