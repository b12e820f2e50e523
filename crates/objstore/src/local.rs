//! Range reads of a FILESYSTEM bucket's objects straight from their files, without
//! `object_store`'s zero-filled buffer and its two blocking tasks per read (open and stat, then
//! read). Only the plain case is taken here: an existing regular file, a name made of safe path
//! segments, a range starting inside the file. Everything else (missing objects, odd names,
//! ranges past the end, I/O errors) returns `None`, and the caller asks the object store, whose
//! answers and errors stay those of every other read.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// The file of object `name` under `root`, when `name` is a plain relative path: segments of
/// ASCII letters, digits, `.`, `-` and `_`, none empty, `.` or `..`.
pub(crate) fn object_path(root: &Path, name: &str) -> Option<PathBuf> {
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'))
    };
    name.split('/').all(plain).then(|| root.join(name))
}

/// The bytes of `range` of the file at `path` (fewer at the end of the file), or `None` when
/// the read is not the plain case (see the [module docs](self)).
pub(crate) fn read_range(path: &Path, range: Range<u64>) -> Option<Bytes> {
    read_ranges(path, std::slice::from_ref(&range))?.pop()
}

/// `length` bytes at `offset` of `file` with one positioned read (a few for a large range):
/// `read_to_end` into spare capacity would probe with reads of 8 KiB, doubling, each a system
/// call; zero-filling the buffer first costs far less.
fn read_exact(file: &File, offset: u64, length: u64) -> Option<Bytes> {
    let mut data = vec![0; usize::try_from(length).ok()?];
    file.read_exact_at(&mut data, offset).ok()?;
    Some(Bytes::from(data))
}

/// Ranges of one file closer than this are read together: below a page, the gap's bytes cost
/// less than another system call.
pub(crate) const COALESCE_GAP: u64 = 4096;

/// The bytes of each of `ranges` (sorted, each starting inside the file; one reaching past the
/// end stops there) from one open file, or `None` when any read is not the plain case.
pub(crate) fn read_ranges(path: &Path, ranges: &[Range<u64>]) -> Option<Vec<Bytes>> {
    let file = File::open(path).ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() {
        return None;
    }
    let size = metadata.len();
    let mut fetched = Vec::with_capacity(ranges.len());
    for range in ranges {
        if range.start >= size {
            return None;
        }
        fetched.push(read_exact(
            &file,
            range.start,
            range.end.min(size) - range.start,
        )?);
    }
    Some(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_map_under_the_root_and_others_do_not() {
        let root = Path::new("/bucket");
        assert_eq!(
            object_path(root, "01HQZ8X3M6V2T6J9R1K4W5Y7AB/chunks/000001"),
            Some(PathBuf::from(
                "/bucket/01HQZ8X3M6V2T6J9R1K4W5Y7AB/chunks/000001"
            ))
        );
        for name in [
            "", "/index", "a//b", "a/../b", "./a", "a/", "a b", "a#1", "é",
        ] {
            assert_eq!(object_path(root, name), None, "{name:?}");
        }
    }

    #[test]
    fn reads_ranges_inside_the_file_and_declines_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object");
        let content: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        std::fs::write(&path, &content).unwrap();
        assert_eq!(read_range(&path, 0..10_000).unwrap(), content);
        assert_eq!(read_range(&path, 123..4567).unwrap(), content[123..4567]);
        // A range reaching past the end stops at the end.
        assert_eq!(read_range(&path, 9_990..20_000).unwrap(), content[9_990..]);
        // Ranges starting at or past the end, missing files and directories are left to the
        // object store.
        assert_eq!(read_range(&path, 10_000..10_001), None);
        assert_eq!(read_range(&dir.path().join("missing"), 0..1), None);
        assert_eq!(read_range(dir.path(), 0..1), None);
    }

    #[test]
    fn reads_many_ranges_from_one_file_and_declines_any_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object");
        let content: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        std::fs::write(&path, &content).unwrap();
        let read = read_ranges(&path, &[0..10, 100..4_000, 9_990..20_000]).unwrap();
        assert_eq!(read[0], content[0..10]);
        assert_eq!(read[1], content[100..4_000]);
        assert_eq!(read[2], content[9_990..]);
        assert!(read_ranges(&path, &[]).unwrap().is_empty());
        assert_eq!(read_ranges(&path, &[0..10, 10_000..10_001]), None);
        let missing = [0..1, 2..3];
        assert_eq!(read_ranges(&dir.path().join("missing"), &missing), None);
    }
}
