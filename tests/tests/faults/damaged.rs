//! A block deleted and four corrupted under a running store gateway.

use super::*;

#[test]
fn a_deleted_and_a_corrupted_block_fail_loudly_while_the_rest_is_served() {
    let _serial = serial();
    let started = Instant::now();
    let (work, s3, data, metas) = s3_with_blocks("faults_damaged_total", 6);
    let bucket = s3.data_dir().join("thanos");
    let store_dir = work.path().join("store");
    // Syncs every 10 s: the damage is done right after one, so the queries before the next one
    // see the store gateway still serving the deleted block.
    let store = start(
        "store-gateway",
        &[
            format!("--objstore.config={}", s3_objstore(&s3.endpoint())),
            format!("--data-dir={}", store_dir.display()),
            "--sync-block-duration=10s".to_owned(),
            "--index-cache-size=0".to_owned(),
        ],
        work.path(),
    );
    let querier = start_querier(store.grpc, work.path());
    let full = data.expected();
    wait_exact(
        querier.http,
        &data.raw_query(""),
        &full,
        Duration::from_secs(60),
    );
    for block in 0..data.blocks {
        let answer = get(querier.http, &data.block_query(block, ""));
        assert_eq!(
            judge("before", &answer, &data.block_expected(block), false),
            Outcome::Exact
        );
    }

    // Block 1 deleted, block 2's chunk file and block 3's index truncated to half, right after a
    // sync.
    // Block 4's chunk file loses its last 40 bytes: the last chunk's end and checksum, inside
    // a range the store gateway reads (a ranged read past an object's end returns what there
    // is, so only the store gateway can notice the missing bytes).
    // Block 5's chunk file has one byte changed in the middle (same size: only the chunk's
    // checksum tells).
    let (deleted, chunk_damaged, index_damaged, chunk_end_cut, flipped) = (1, 2, 3, 4, 5);
    let id = |block: usize| metas[block].ulid.to_string();
    let chunk_file = bucket.join(id(chunk_damaged)).join("chunks/000001");
    let index_file = bucket.join(id(index_damaged)).join("index");
    let chunk_end_file = bucket.join(id(chunk_end_cut)).join("chunks/000001");
    let flipped_file = bucket.join(id(flipped)).join("chunks/000001");
    let originals = [
        (chunk_file.clone(), std::fs::read(&chunk_file).unwrap()),
        (index_file.clone(), std::fs::read(&index_file).unwrap()),
        (
            chunk_end_file.clone(),
            std::fs::read(&chunk_end_file).unwrap(),
        ),
        (flipped_file.clone(), std::fs::read(&flipped_file).unwrap()),
    ];
    let syncs = metric(store.http, "thanos_blocks_meta_syncs_total").unwrap();
    wait_until("a store gateway sync", Duration::from_secs(30), || {
        metric(store.http, "thanos_blocks_meta_syncs_total").is_some_and(|n| n > syncs)
    })
    .unwrap();
    // The counter goes up when a sync starts; it lists six blocks in well under a second.
    let damaged_at = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    std::fs::remove_dir_all(bucket.join(id(deleted))).unwrap();
    truncate_to_half(&chunk_file);
    truncate_to_half(&index_file);
    let chunk_end_size = std::fs::metadata(&chunk_end_file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&chunk_end_file)
        .unwrap()
        .set_len(chunk_end_size - 40)
        .unwrap();
    let mut bytes = std::fs::read(&flipped_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&flipped_file, bytes).unwrap();

    let mut outcomes = Vec::new();
    for (partial, extra) in [(true, ""), (false, "&partial_response=false")] {
        let answer = get(querier.http, &data.raw_query(extra));
        let outcome = judge("whole range over damaged blocks", &answer, &full, partial);
        assert_ne!(outcome, Outcome::Exact, "damage did not show: {outcome:?}");
        if !partial {
            assert!(matches!(outcome, Outcome::Failed(..)), "{outcome:?}");
        }
        outcomes.push(format!(
            "whole range, partial_response={partial}: {outcome:?}"
        ));
        for block in 0..data.blocks {
            let answer = get(querier.http, &data.block_query(block, extra));
            let what = format!("block {block} alone, partial_response={partial}");
            let outcome = judge(&what, &answer, &data.block_expected(block), partial);
            if block == 0 {
                assert_eq!(outcome, Outcome::Exact, "{what}: the intact block");
            } else {
                assert_ne!(outcome, Outcome::Exact, "{what}: damage did not show");
                if !partial {
                    assert!(
                        matches!(outcome, Outcome::Failed(..)),
                        "{what}: {outcome:?}"
                    );
                }
            }
            outcomes.push(format!("{what}: {}", short(&outcome)));
        }
        assert!(healthy(store.http), "store gateway unhealthy");
    }
    let before_resync = damaged_at.elapsed();
    assert!(
        before_resync < Duration::from_secs(9),
        "the queries took {before_resync:?}: a sync may have come between"
    );
    for outcome in &outcomes {
        eprintln!("  {outcome}");
    }

    // The next sync drops the deleted block (its local files too) and keeps the others.
    wait_until("the deleted block dropped", Duration::from_secs(30), || {
        metric(store.http, "thanos_bucket_store_block_drops_total") == Some(1.0)
    })
    .unwrap();
    assert_eq!(
        metric(store.http, "thanos_bucket_store_blocks_loaded"),
        Some(5.0)
    );
    assert!(
        !store_dir.join(id(deleted)).exists(),
        "local files of the dropped block remain"
    );
    let gone = get(
        querier.http,
        &data.block_query(deleted, "&partial_response=false"),
    );
    assert_eq!(
        judge("dropped block", &gone, &BTreeMap::new(), false),
        Outcome::Exact
    );
    let intact = get(
        querier.http,
        &data.block_query(0, "&partial_response=false"),
    );
    assert_eq!(
        judge("block 0", &intact, &data.block_expected(0), false),
        Outcome::Exact
    );
    for block in [chunk_damaged, index_damaged, chunk_end_cut, flipped] {
        let answer = get(
            querier.http,
            &data.block_query(block, "&partial_response=false"),
        );
        let outcome = judge(
            "damaged block after the resync",
            &answer,
            &data.block_expected(block),
            false,
        );
        assert!(
            matches!(outcome, Outcome::Failed(..)),
            "block {block}: {outcome:?}"
        );
    }
    assert!(healthy(store.http), "store gateway unhealthy");

    // Repaired files are served again, exactly; the whole range is the history without the
    // deleted block.
    for (path, bytes) in &originals {
        std::fs::write(path, bytes).unwrap();
    }
    let repaired = wait_exact(
        querier.http,
        &data.raw_query("&partial_response=false"),
        &data.expected_without(&[deleted]),
        Duration::from_secs(30),
    );
    eprintln!(
        "deleted and corrupted blocks: passed in {:.1?} ({} queries during the damage, exact {repaired:.1?} after the repair)",
        started.elapsed(),
        outcomes.len()
    );
}
