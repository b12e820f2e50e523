//! Bucket faults on Azure Blob Storage (Azurite) under a running store gateway and querier: the
//! same rule as on S3: an answer is exact, an error, or (partial responses on) a warned partial
//! answer, never silently shorter; once the bucket is back it is exact again.

use super::*;

/// Uploads the block folders under `local` into the bucket of `yaml`, `meta.json` last.
fn upload_blocks(yaml: &str, local: &Path, metas: &[BlockMeta]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = objstore::ObjstoreConfig::parse(yaml).unwrap();
        let bucket = objstore::Bucket::from_config(
            &config,
            objstore::BucketOptions::default(),
            &prometheus::Registry::new(),
        )
        .await
        .unwrap();
        for meta in metas {
            let id = meta.ulid.to_string();
            bucket.upload_dir(&local.join(&id), &id).await.unwrap();
        }
    });
}

/// The AZURE objstore YAML for the Azurite account behind `blob_endpoint` (one retry, a 2 s
/// answer timeout, so a fault shows within seconds).
fn azure_objstore(blob_endpoint: &str) -> String {
    format!(
        "type: AZURE\nconfig:\n  storage_account: {account}\n  container: thanos\n  \
         storage_connection_string: \"DefaultEndpointsProtocol=http;AccountName={account};\
         AccountKey={key};BlobEndpoint={blob_endpoint};\"\n  max_retries: 1\n  http_config:\n    \
         response_header_timeout: 2s\n",
        account = test_harness::AZURITE_ACCOUNT,
        key = test_harness::AZURITE_KEY,
    )
}

#[test]
fn azure_bucket_faults_never_shorten_an_answer_silently() {
    let _serial = serial();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let mut azurite = test_harness::Azurite::start().unwrap();
    let data = Data {
        metric: "faults_azure_total",
        start_ms: (now_millis() - 12 * HOUR_MS) / BLOCK_MS * BLOCK_MS,
        blocks: 3,
        series: 20,
    };
    let local = work.path().join("blocks");
    std::fs::create_dir_all(&local).unwrap();
    let metas = data.write_bucket_blocks(&local);
    upload_blocks(&azure_objstore(&azurite.blob_endpoint()), &local, &metas);
    let azurite_addr: SocketAddr = azurite
        .blob_endpoint()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(azurite_addr).unwrap();
    let through_proxy = format!("http://{}/{}", proxy.addr(), test_harness::AZURITE_ACCOUNT);
    let store = start(
        "store-gateway",
        &[
            format!("--objstore.config={}", azure_objstore(&through_proxy)),
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

    let faults: [(&str, Option<Fault>); 4] = [
        ("Azurite frozen (SIGSTOP)", None),
        ("503 answers", Some(Fault::HttpStatus(503))),
        ("connections closed", Some(Fault::Close)),
        ("answers cut after 700 bytes", Some(Fault::CutAfter(700))),
    ];
    for (name, fault) in faults {
        let began = Instant::now();
        match fault {
            None => azurite.process().signal("STOP").unwrap(),
            Some(fault) => proxy.set(fault),
        }
        let mut outcomes = Vec::new();
        for (partial, query) in [(true, &path), (false, &strict_path)] {
            let answer = get(querier.http, query);
            let outcome = judge(name, &answer, &expected, partial);
            eprintln!(
                "  azure {name}, partial_response={partial}: {}",
                short(&outcome)
            );
            outcomes.push(outcome);
        }
        assert!(healthy(store.http), "{name}: store gateway unhealthy");
        assert!(healthy(querier.http), "{name}: querier unhealthy");
        assert!(
            !outcomes.contains(&Outcome::Exact),
            "{name}: the fault did not reach the query: {outcomes:?}"
        );
        assert!(
            matches!(outcomes[1], Outcome::Failed(..)),
            "{name}: without partial responses the query must fail: {outcomes:?}"
        );
        match fault {
            None => azurite.process().signal("CONT").unwrap(),
            Some(_) => proxy.set(Fault::None),
        }
        let recovered = wait_exact(querier.http, &path, &expected, Duration::from_secs(60));
        eprintln!(
            "azure bucket fault {name}: passed in {:.1?} (exact again {recovered:.1?} after)",
            began.elapsed()
        );
    }
    assert_eq!(
        metric(store.http, "thanos_bucket_store_blocks_loaded"),
        Some(data.blocks as f64)
    );
    eprintln!(
        "azure bucket faults: {} passed in {:.1?}",
        faults.len(),
        started.elapsed()
    );
}
