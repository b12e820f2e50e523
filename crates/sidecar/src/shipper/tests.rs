//! Shipper tests over fake blocks and an in-memory bucket.

use std::path::Path;

use super::*;
use prom_model::Labels;

fn fake_block(tsdb: &Path, min_time: i64, samples: u64, level: u32) -> Ulid {
    let id = Ulid::new();
    let dir = tsdb.join(id.to_string());
    std::fs::create_dir_all(dir.join("chunks")).unwrap();
    std::fs::write(dir.join("chunks/000001"), b"chunk-bytes").unwrap();
    std::fs::write(dir.join("index"), b"index-bytes!").unwrap();
    std::fs::write(dir.join("tombstones"), b"tomb").unwrap();
    let mut meta = BlockMeta::new(id, min_time, min_time + 7_200_000);
    meta.stats.num_samples = samples;
    meta.compaction.level = level;
    meta.write_to_dir(&dir).unwrap();
    id
}

struct Setup {
    tsdb: tempfile::TempDir,
    bucket: Bucket,
    registry: Registry,
}

fn setup() -> Setup {
    let registry = Registry::new();
    let bucket = Bucket::in_memory("test", objstore::BucketOptions::default(), &registry).unwrap();
    Setup {
        tsdb: tempfile::tempdir().unwrap(),
        bucket,
        registry,
    }
}

fn shipper(setup: &Setup, upload_compacted: bool) -> Shipper {
    let state = Arc::new(PrometheusState::new(
        Labels::from_pairs([("replica", "a")]),
        0,
    ));
    let registry = Registry::new();
    Shipper::new(
        setup.bucket.clone(),
        ShipperConfig {
            tsdb_path: setup.tsdb.path().to_owned(),
            meta_file_name: "thanos.shipper.json".to_owned(),
            upload_compacted,
            interval: Duration::from_secs(30),
        },
        state,
        ShipperMetrics::register(&registry).unwrap(),
    )
}

#[tokio::test]
async fn uploads_each_eligible_block_once_with_thanos_meta() {
    let setup = setup();
    let _ = &setup.registry;
    let first = fake_block(setup.tsdb.path(), 0, 10, 1);
    let second = fake_block(setup.tsdb.path(), 7_200_000, 10, 1);
    let empty = fake_block(setup.tsdb.path(), 14_400_000, 0, 1);
    let compacted = fake_block(setup.tsdb.path(), 0, 10, 2);
    std::fs::create_dir_all(
        setup
            .tsdb
            .path()
            .join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation"),
    )
    .unwrap();

    let shipper = shipper(&setup, false);
    assert_eq!(shipper.sync().await.unwrap(), 2);
    assert_eq!(shipper.sync().await.unwrap(), 0);

    let names = setup.bucket.iter_recursive("").await.unwrap();
    assert!(names.contains(&format!("{first}/meta.json")), "{names:?}");
    assert!(
        names.contains(&format!("{second}/chunks/000001")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|name| name.ends_with("tombstones")),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|name| name.starts_with(&empty.to_string()))
    );
    assert!(
        !names
            .iter()
            .any(|name| name.starts_with(&compacted.to_string()))
    );

    let meta = setup
        .bucket
        .get(&format!("{first}/meta.json"))
        .await
        .unwrap();
    let meta = BlockMeta::from_json(&meta, "bucket").unwrap();
    let thanos = meta.thanos.unwrap();
    assert_eq!(thanos.source, "sidecar");
    assert_eq!(thanos.labels.get("replica").map(String::as_str), Some("a"));
    assert_eq!(thanos.downsample.resolution, 0);
    assert_eq!(thanos.segment_files, ["000001"]);
    let files: Vec<(&str, i64)> = thanos
        .files
        .iter()
        .map(|file| (file.rel_path.as_str(), file.size_bytes))
        .collect();
    assert_eq!(
        files,
        [("chunks/000001", 11), ("index", 12), ("meta.json", 0)]
    );

    let record = ShipperFile::read(&setup.tsdb.path().join("thanos.shipper.json")).unwrap();
    assert_eq!(record.version, 1);
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(record.uploaded, expected);
    // The staging folder is cleaned up.
    let staging = setup.tsdb.path().join("thanos/upload");
    assert!(std::fs::read_dir(&staging).map_or(true, |mut dir| dir.next().is_none()));
}

#[tokio::test]
async fn compacted_blocks_upload_when_asked_and_bucket_copies_are_recorded() {
    let setup = setup();
    let compacted = fake_block(setup.tsdb.path(), 0, 10, 3);
    let already = fake_block(setup.tsdb.path(), 7_200_000, 10, 1);
    setup
        .bucket
        .upload(
            &format!("{already}/meta.json"),
            bytes::Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    let shipper = shipper(&setup, true);
    assert_eq!(shipper.sync().await.unwrap(), 1);
    let record = ShipperFile::read(&setup.tsdb.path().join("thanos.shipper.json")).unwrap();
    let mut expected = vec![compacted, already];
    expected.sort();
    assert_eq!(record.uploaded, expected);
}

#[tokio::test]
async fn restart_does_not_reupload_and_forgets_deleted_blocks() {
    let setup = setup();
    let first = fake_block(setup.tsdb.path(), 0, 10, 1);
    assert_eq!(shipper(&setup, false).sync().await.unwrap(), 1);
    // A new shipper (a restarted sidecar) sees the record.
    let second = fake_block(setup.tsdb.path(), 7_200_000, 10, 1);
    assert_eq!(shipper(&setup, false).sync().await.unwrap(), 1);
    std::fs::remove_dir_all(setup.tsdb.path().join(first.to_string())).unwrap();
    assert_eq!(shipper(&setup, false).sync().await.unwrap(), 0);
    let record = ShipperFile::read(&setup.tsdb.path().join("thanos.shipper.json")).unwrap();
    assert_eq!(record.uploaded, vec![second]);
}

#[test]
fn shipper_file_round_trips_in_thanos_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("thanos.shipper.json");
    let id = Ulid::from_string("01DN3SK96XDAEKRB1AN30AAW6E").unwrap();
    ShipperFile {
        version: 1,
        uploaded: vec![id],
    }
    .write(&path)
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"01DN3SK96XDAEKRB1AN30AAW6E\"\n\t]\n}"
    );
    assert_eq!(ShipperFile::read(&path).unwrap().uploaded, vec![id]);
    assert!(
        ShipperFile::read(&dir.path().join("missing"))
            .unwrap()
            .uploaded
            .is_empty()
    );
    std::fs::write(&path, "{\"version\":2}").unwrap();
    assert!(ShipperFile::read(&path).is_err());
}
