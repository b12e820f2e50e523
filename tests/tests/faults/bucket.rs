//! Bucket faults under a running store gateway and querier.

use super::*;

/// How a bucket fault is made and ended.
#[derive(Debug, Clone, Copy)]
enum BucketFault {
    /// s3s-fs SIGKILLed, started again on the same port and folder.
    Killed,
    /// s3s-fs SIGSTOPped, then SIGCONTinued.
    Frozen,
    /// The proxy's fault.
    Proxy(Fault),
}

#[test]
fn bucket_faults_never_shorten_an_answer_silently() {
    let _serial = serial();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let mut s3 = S3sFs::start(ACCESS_KEY, SECRET_KEY).unwrap();
    s3.create_bucket("thanos").unwrap();
    let data = Data {
        metric: "faults_bucket_total",
        start_ms: (now_millis() - 12 * HOUR_MS) / BLOCK_MS * BLOCK_MS,
        blocks: 4,
        series: 20,
    };
    data.write_bucket_blocks(&s3.data_dir().join("thanos"));
    let proxy = FaultProxy::start(s3.addr()).unwrap();
    let store = start(
        "store-gateway",
        &[
            format!("--objstore.config={}", s3_objstore(&proxy.endpoint())),
            format!("--data-dir={}", work.path().join("store").display()),
            "--sync-block-duration=2s".to_owned(),
            "--index-cache-size=0".to_owned(),
        ],
        work.path(),
    );
    let querier = start_querier(store.grpc, work.path());
    let expected = data.expected();
    let path = data.raw_query("");
    let strict_path = data.raw_query("&partial_response=false");
    wait_exact(querier.http, &path, &expected, Duration::from_secs(60));
    eprintln!(
        "bucket faults: {} blocks x {} series served exactly after {:.1?}",
        data.blocks,
        data.series,
        started.elapsed()
    );

    // How many bytes one query reads from the bucket, for a bucket dying halfway through one.
    let before = proxy.bytes_down();
    wait_exact(querier.http, &path, &expected, Duration::from_secs(10));
    let query_bytes = proxy.bytes_down() - before;
    let faults = [
        ("s3s-fs killed", BucketFault::Killed),
        ("s3s-fs frozen (SIGSTOP)", BucketFault::Frozen),
        ("503 answers", BucketFault::Proxy(Fault::HttpStatus(503))),
        ("connections closed", BucketFault::Proxy(Fault::Close)),
        (
            "answers cut after 700 bytes",
            BucketFault::Proxy(Fault::CutAfter(700)),
        ),
        (
            "bucket closing everything halfway through a query",
            BucketFault::Proxy(Fault::CloseAfterTotal(query_bytes / 2)),
        ),
        ("bucket stalled", BucketFault::Proxy(Fault::Stall)),
        (
            "bucket slowed (25 ms per read)",
            BucketFault::Proxy(Fault::Delay(Duration::from_millis(25))),
        ),
    ];
    let mut passed = 0;
    for (name, fault) in faults {
        let began = Instant::now();
        let faulted_before = proxy.faulted();
        match fault {
            BucketFault::Killed => s3.stop(),
            BucketFault::Frozen => s3.process().signal("STOP").unwrap(),
            BucketFault::Proxy(fault) => proxy.set(fault),
        }
        let mut outcomes = Vec::new();
        for (partial, query) in [(true, &path), (false, &strict_path)] {
            let asked = Instant::now();
            let answer = get(querier.http, query);
            let outcome = judge(name, &answer, &expected, partial);
            eprintln!(
                "  {name}, partial_response={partial}: {} in {:.1?}",
                short(&outcome),
                asked.elapsed()
            );
            outcomes.push(outcome);
        }
        assert!(healthy(store.http), "{name}: store gateway unhealthy");
        assert!(healthy(querier.http), "{name}: querier unhealthy");
        match fault {
            BucketFault::Proxy(Fault::Delay(_)) => {
                assert!(
                    outcomes.iter().all(|outcome| *outcome == Outcome::Exact),
                    "{name}: a slow bucket must still answer exactly: {outcomes:?}"
                );
            }
            _ => {
                // The fault reached the queries: neither answered as if nothing happened, and
                // the strict one failed.
                assert!(
                    !outcomes.contains(&Outcome::Exact),
                    "{name}: the fault did not reach the query: {outcomes:?}"
                );
                assert!(
                    matches!(outcomes[1], Outcome::Failed(..)),
                    "{name}: without partial responses the query must fail: {outcomes:?}"
                );
            }
        }
        if let BucketFault::Proxy(
            Fault::Close | Fault::HttpStatus(_) | Fault::CutAfter(_) | Fault::CloseAfterTotal(_),
        ) = fault
        {
            assert!(
                proxy.faulted() > faulted_before,
                "{name}: no connection was faulted"
            );
        }
        match fault {
            BucketFault::Killed => s3.restart().unwrap(),
            BucketFault::Frozen => s3.process().signal("CONT").unwrap(),
            BucketFault::Proxy(_) => proxy.set(Fault::None),
        }
        let recovered = wait_exact(querier.http, &path, &expected, Duration::from_secs(60));
        let strict = get(querier.http, &strict_path);
        assert_eq!(judge(name, &strict, &expected, false), Outcome::Exact);
        passed += 1;
        eprintln!(
            "bucket fault {name}: passed in {:.1?} (exact again {recovered:.1?} after the bucket came back)",
            began.elapsed()
        );
    }
    assert_eq!(
        metric(store.http, "thanos_bucket_store_blocks_loaded"),
        Some(data.blocks as f64),
        "a bucket fault made the store gateway drop blocks"
    );
    eprintln!(
        "bucket faults: {passed} of {} passed, {} connections, {} faulted, {query_bytes} bytes \
         per query, in {:.1?}",
        faults.len(),
        proxy.accepted(),
        proxy.faulted(),
        started.elapsed()
    );
}
