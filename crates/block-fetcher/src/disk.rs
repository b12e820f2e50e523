//! The optional on-disk meta cache, `<cache dir>/meta-syncer/<ulid>/meta.json` as Thanos lays
//! it out, so a restart does not read every `meta.json` of the bucket again. Best effort: a
//! failure here is logged and the bucket is read instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tsdb_block::meta::{BlockMeta, META_FILENAME};
use ulid::Ulid;

/// The cache folder under the caller's directory.
pub(crate) const META_SYNCER_DIR: &str = "meta-syncer";

fn meta_path(root: &Path, id: Ulid) -> PathBuf {
    root.join(id.to_string()).join(META_FILENAME)
}

/// The cached meta of `id`, if present and valid; an invalid copy is removed.
pub(crate) async fn read(root: PathBuf, id: Ulid) -> Option<BlockMeta> {
    let result = tokio::task::spawn_blocking(move || {
        let path = meta_path(&root, id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "read cached meta.json");
                return None;
            }
        };
        match BlockMeta::from_json(&bytes, &path.to_string_lossy()) {
            Ok(meta) if meta.ulid == id => Some(meta),
            Ok(_) | Err(_) => {
                tracing::warn!(path = %path.display(), "removing invalid cached meta.json");
                let _ = std::fs::remove_dir_all(root.join(id.to_string()));
                None
            }
        }
    })
    .await;
    result.ok().flatten()
}

/// Stores the bytes of `id`'s meta.json (through a temporary file, so a crash leaves no torn
/// copy).
pub(crate) async fn write(root: PathBuf, id: Ulid, bytes: Vec<u8>) {
    let result = tokio::task::spawn_blocking(move || {
        let dir = root.join(id.to_string());
        std::fs::create_dir_all(&dir)?;
        let temporary = dir.join(format!("{META_FILENAME}.tmp"));
        std::fs::write(&temporary, &bytes)?;
        std::fs::rename(&temporary, dir.join(META_FILENAME))
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(block = %id, %error, "cache meta.json on disk"),
        Err(error) => tracing::warn!(block = %id, %error, "cache meta.json on disk"),
    }
}

/// Removes cached metas of blocks no longer in the bucket.
pub(crate) async fn retain(root: PathBuf, present: BTreeSet<Ulid>) {
    let result = tokio::task::spawn_blocking(move || {
        for entry in std::fs::read_dir(&root)?.flatten() {
            let name = entry.file_name();
            let keep = name
                .to_str()
                .and_then(|name| Ulid::from_string(name).ok())
                .is_some_and(|id| present.contains(&id));
            if !keep {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if let Ok(Err(error)) = result {
        tracing::warn!(%error, "clean up the meta cache");
    }
}
