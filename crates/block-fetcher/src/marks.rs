//! Reading marks (`deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json`) only
//! when the listing shows them new or changed.

use std::collections::{BTreeMap, HashMap};

use futures_util::StreamExt;
use objstore::{Bucket, ObjectAttributes};
use tsdb_block::meta::Mark;
use ulid::Ulid;

/// A mark as last read, with the listing's attributes of the file then; `mark` is `None` for an
/// unparsable file (a partial upload, skipped with a warning as Thanos does).
#[derive(Debug)]
pub(crate) struct CachedMark<M> {
    attributes: ObjectAttributes,
    mark: Option<M>,
}

/// The marks of one kind by block.
pub(crate) type MarkCache<M> = HashMap<Ulid, CachedMark<M>>;

/// What reading one mark gave.
enum MarkRead<M> {
    Mark(M),
    Unparsable,
    NotFound,
    Failed,
}

/// The marks of the `wanted` blocks (`(block, attributes in the listing)`), from `cache` when
/// the attributes are unchanged, else read from the bucket at most `concurrency` at once.
/// Returns the readable marks and the blocks whose mark could not be read (a bucket error).
/// Entries of blocks not wanted are dropped from the cache.
pub(crate) async fn read_marks<M>(
    bucket: &Bucket,
    cache: &mut MarkCache<M>,
    wanted: Vec<(Ulid, Option<ObjectAttributes>)>,
    concurrency: usize,
) -> (BTreeMap<Ulid, M>, Vec<Ulid>)
where
    M: Mark + Clone + Send + 'static,
{
    let wanted_ids: std::collections::HashSet<Ulid> = wanted.iter().map(|(id, _)| *id).collect();
    cache.retain(|id, _| wanted_ids.contains(id));
    let mut marks = BTreeMap::new();
    let mut to_read = Vec::new();
    for (id, attributes) in wanted {
        match (cache.get(&id), attributes) {
            (Some(cached), Some(listed)) if cached.attributes == listed => {
                if let Some(mark) = &cached.mark {
                    marks.insert(id, mark.clone());
                }
            }
            _ => to_read.push((id, attributes)),
        }
    }
    let reads: Vec<(Ulid, Option<ObjectAttributes>, MarkRead<M>)> =
        futures_util::stream::iter(to_read)
            .map(|(id, attributes)| async move { (id, attributes, read_mark(bucket, id).await) })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let mut failed = Vec::new();
    for (id, attributes, read) in reads {
        let mark = match read {
            MarkRead::Mark(mark) => Some(mark),
            MarkRead::Unparsable => None,
            MarkRead::NotFound => {
                // Removed since the listing: nothing to remember.
                cache.remove(&id);
                continue;
            }
            MarkRead::Failed => {
                failed.push(id);
                continue;
            }
        };
        if let Some(mark) = &mark {
            marks.insert(id, mark.clone());
        }
        match attributes {
            Some(attributes) => {
                cache.insert(id, CachedMark { attributes, mark });
            }
            None => {
                cache.remove(&id);
            }
        }
    }
    (marks, failed)
}

async fn read_mark<M: Mark>(bucket: &Bucket, id: Ulid) -> MarkRead<M> {
    let name = format!("{id}/{}", M::FILE_NAME);
    match bucket.get(&name).await {
        Ok(bytes) => match M::from_json(&bytes) {
            Ok(mark) => MarkRead::Mark(mark),
            Err(error) => {
                tracing::warn!(block = %id, file = M::FILE_NAME, %error, "skipping unparsable mark");
                MarkRead::Unparsable
            }
        },
        Err(error) if error.is_not_found() => MarkRead::NotFound,
        Err(error) => {
            tracing::warn!(block = %id, file = M::FILE_NAME, error = %service_core::error_chain(&error), "read mark");
            MarkRead::Failed
        }
    }
}
