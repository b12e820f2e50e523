//! Block-layout helpers: upload a local directory with `meta.json` last, delete a directory with
//! `meta.json` first, so readers never see a block whose `meta.json` promises missing files
//! (thanos-compat §2.3).

use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use tracing::debug;

use crate::bucket::Bucket;
use crate::error::{Error, Result};

/// The file whose presence makes a block directory complete.
pub const META_FILE: &str = "meta.json";

/// The marker deleted last, so an interrupted deletion is retried by the compactor.
pub const DELETION_MARK_FILE: &str = "deletion-mark.json";

impl Bucket {
    /// Uploads every file under `local_dir` to `prefix/<relative path>`, the top-level
    /// `meta.json` last and only after every other file succeeded. Returns the object names in
    /// upload-completion order.
    pub async fn upload_dir(&self, local_dir: &Path, prefix: &str) -> Result<Vec<String>> {
        let mut files = list_files(local_dir).await?;
        files.sort();
        let meta_position = files.iter().position(|relative| relative == META_FILE);
        let meta = meta_position.map(|position| files.remove(position));
        let prefix = prefix.trim_matches('/');
        let object_name = |relative: &str| {
            if prefix.is_empty() {
                relative.to_owned()
            } else {
                format!("{prefix}/{relative}")
            }
        };
        let concurrency = self.options().upload_concurrency.max(1);
        let mut uploaded: Vec<String> = futures_util::stream::iter(files)
            .map(|relative| {
                let name = object_name(&relative);
                let local = local_dir.join(&relative);
                async move {
                    self.upload_file(&name, &local).await?;
                    Ok::<_, Error>(name)
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        if let Some(meta) = meta {
            let name = object_name(&meta);
            self.upload_file(&name, &local_dir.join(&meta)).await?;
            uploaded.push(name);
        }
        debug!(bucket = %self.name(), prefix, files = uploaded.len(), "uploaded directory");
        Ok(uploaded)
    }

    /// Downloads every object under `prefix` into `local_dir`, keeping the paths below `prefix`
    /// (Thanos' `DownloadDir`). Each file is written whole or not at all. Returns the local paths
    /// relative to `local_dir`, sorted.
    pub async fn download_dir(&self, prefix: &str, local_dir: &Path) -> Result<Vec<String>> {
        let prefix = prefix.trim_matches('/');
        let names = self.iter_recursive(prefix).await?;
        let concurrency = self.options().upload_concurrency.max(1);
        let mut downloaded: Vec<String> = futures_util::stream::iter(names)
            .map(|name| async move {
                let relative = if prefix.is_empty() {
                    name.clone()
                } else {
                    name.strip_prefix(prefix)
                        .map(|rest| rest.trim_start_matches('/').to_owned())
                        .unwrap_or_else(|| name.clone())
                };
                self.download_file(&name, &local_dir.join(&relative))
                    .await?;
                Ok::<_, Error>(relative)
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        downloaded.sort();
        Ok(downloaded)
    }

    /// Deletes every object under `prefix`: `prefix/meta.json` first, `prefix/deletion-mark.json`
    /// last, the rest in between. Returns the deleted names in deletion order. Deleting an empty
    /// prefix succeeds.
    pub async fn delete_dir(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.trim_matches('/');
        let names = self.iter_recursive(prefix).await?;
        let meta_name = format!("{prefix}/{META_FILE}");
        let mark_name = format!("{prefix}/{DELETION_MARK_FILE}");
        let (firsts, rest): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|name| *name == meta_name);
        let (lasts, middle): (Vec<String>, Vec<String>) =
            rest.into_iter().partition(|name| *name == mark_name);
        let mut deleted = Vec::new();
        for name in firsts {
            self.delete(&name).await?;
            deleted.push(name);
        }
        let concurrency = self.options().upload_concurrency.max(1);
        let middle_deleted: Vec<String> = futures_util::stream::iter(middle)
            .map(|name| async move {
                self.delete(&name).await?;
                Ok::<_, Error>(name)
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        deleted.extend(middle_deleted);
        for name in lasts {
            self.delete(&name).await?;
            deleted.push(name);
        }
        debug!(bucket = %self.name(), prefix, objects = deleted.len(), "deleted directory");
        Ok(deleted)
    }
}

/// Every regular file under `root`, as `/`-separated paths relative to it.
async fn list_files(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending: Vec<(PathBuf, String)> = vec![(root.to_owned(), String::new())];
    while let Some((dir, relative_dir)) = pending.pop() {
        let io_error = |source| Error::LocalIo {
            path: dir.clone(),
            source,
        };
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(io_error)?;
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let relative = if relative_dir.is_empty() {
                file_name
            } else {
                format!("{relative_dir}/{file_name}")
            };
            let file_type = entry.file_type().await.map_err(io_error)?;
            if file_type.is_dir() {
                pending.push((entry.path(), relative));
            } else {
                files.push(relative);
            }
        }
    }
    Ok(files)
}
