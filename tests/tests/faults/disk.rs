//! Disk full in the store gateway's data folder and the sidecar's staging folder.

use super::*;

/// `command` run with `dir` on a tmpfs of `size_kib` KiB that only this process sees (a private
/// user and mount namespace: no root needed, and the mount goes away with the process), filled
/// but for `room_kib` KiB by a file `filler`. The process keeps its pid (`unshare` and `sh`
/// exec it), so killing it ends the mount too.
fn on_tiny_disk(command: &Command, dir: &Path, size_kib: u64, room_kib: u64) -> Command {
    std::fs::create_dir_all(dir).unwrap();
    let mut wrapped = Command::new(require_program("unshare").unwrap());
    wrapped
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={size_kib}k tmpfs \"$1\" && \
             head -c {} /dev/zero > \"$1/filler\" && shift && exec \"$@\"",
            (size_kib - room_kib) * 1024
        ))
        .arg("sh")
        .arg(dir)
        .arg(command.get_program())
        .args(command.get_args());
    wrapped
}

/// Frees the tiny disk of [`on_tiny_disk`] from outside, through the process' own view of the
/// file system.
fn free_tiny_disk(pid: u32, dir: &Path) {
    let filler = PathBuf::from(format!("/proc/{pid}/root{}/filler", dir.display()));
    std::fs::remove_file(&filler)
        .unwrap_or_else(|error| panic!("remove {}: {error}", filler.display()));
}

#[test]
fn a_full_disk_stops_nothing_and_loses_nothing() {
    let _serial = serial();
    let started = Instant::now();

    // The store gateway's data folder (index-headers) on a full disk.
    let (work, s3, data, _) = s3_with_blocks("faults_disk_total", 4);
    let store_dir = work.path().join("store");
    let (http, grpc) = addresses();
    let store_command = command(
        "store-gateway",
        http,
        grpc,
        &[
            format!("--objstore.config={}", s3_objstore(&s3.endpoint())),
            format!("--data-dir={}", store_dir.display()),
            "--sync-block-duration=1s".to_owned(),
        ],
    );
    let store = start_command(
        "store-gateway",
        on_tiny_disk(&store_command, &store_dir, 64, 4),
        http,
        grpc,
        work.path(),
    );
    let querier = start_querier(store.grpc, work.path());
    wait_until("failed block loads", Duration::from_secs(30), || {
        metric(store.http, "thanos_bucket_store_block_load_failures_total")
            .is_some_and(|n| n >= 2.0)
    })
    .unwrap();
    let loaded = metric(store.http, "thanos_bucket_store_blocks_loaded").unwrap();
    assert!(
        loaded < data.blocks as f64,
        "{loaded} blocks loaded on a full disk"
    );
    assert!(
        healthy(store.http),
        "store gateway unhealthy on a full disk"
    );
    let answer = get(querier.http, &data.raw_query(""));
    // The blocks whose index-header could not be written are not served; what is served is
    // whole blocks, exactly, and a warning names each block missing.
    let missing_warnings = answer
        .warnings()
        .iter()
        .filter(|warning| warning.contains("could not be loaded"))
        .count();
    let mut unwarned = answer.clone();
    unwarned.json["warnings"] = serde_json::Value::Array(Vec::new());
    let visible = whole_blocks_only(&unwarned, &data).unwrap();
    assert_eq!(visible as f64, loaded, "blocks answered");
    assert_eq!(
        missing_warnings as f64,
        data.blocks as f64 - loaded,
        "a shorter answer must say which blocks are missing: {:?}",
        answer.warnings()
    );
    let strict = get(querier.http, &data.raw_query("&partial_response=false"));
    assert!(
        !strict.is_success() && strict.json.to_string().contains("could not be loaded"),
        "without partial responses the answer must fail: status {} error {}",
        strict.status,
        strict.json["error"]
    );
    eprintln!(
        "disk full under the store gateway: {loaded} of {} blocks loaded, {visible} answered (warnings {:?})",
        data.blocks,
        answer.warnings()
    );
    free_tiny_disk(store.process.pid(), &store_dir);
    let recovered = wait_exact(
        querier.http,
        &data.raw_query("&partial_response=false"),
        &data.expected(),
        Duration::from_secs(30),
    );
    assert!(healthy(store.http));
    eprintln!(
        "disk full under the store gateway: passed in {:.1?} (exact {recovered:.1?} after the disk was freed)",
        started.elapsed()
    );
    drop(querier);
    drop(store);
    drop(s3);

    // The sidecar's upload staging folder (`<tsdb>/thanos`) on a full disk.
    let began = Instant::now();
    let setup = ShippingSetup::start("faults_staged_total", 4);
    let staging = setup.tsdb.join("thanos");
    let (http, grpc) = addresses();
    let sidecar_command = command(
        "sidecar",
        http,
        grpc,
        &setup.sidecar_args(&setup.s3.endpoint()),
    );
    let sidecar = start_command(
        "sidecar",
        on_tiny_disk(&sidecar_command, &staging, 64, 4),
        http,
        grpc,
        setup.work.path(),
    );
    wait_until("failed uploads", Duration::from_secs(30), || {
        metric(sidecar.http, "thanos_shipper_upload_failures_total").is_some_and(|n| n >= 2.0)
    })
    .unwrap();
    assert!(healthy(sidecar.http), "sidecar unhealthy on a full disk");
    let mut watch = setup.watch();
    let view = watch.check().unwrap();
    assert_eq!(
        view.partial, 0,
        "a block without meta.json in the bucket: {view:?}"
    );
    let answer = get(setup.querier.http, &setup.data.raw_query(""));
    whole_blocks_only(&answer, &setup.data).unwrap();
    let uploaded_while_full = metric(sidecar.http, "thanos_shipper_uploads_total").unwrap_or(0.0);
    free_tiny_disk(sidecar.process.pid(), &staging);
    wait_until("every block shipped", Duration::from_secs(60), || {
        setup.shipped() == setup.data.blocks
    })
    .unwrap();
    watch.check_final().unwrap();
    // One sidecar process throughout: each block was uploaded exactly once.
    assert_eq!(
        metric(sidecar.http, "thanos_shipper_uploads_total"),
        Some(setup.data.blocks as f64)
    );
    setup.check_answers_equal_prometheus();
    eprintln!(
        "disk full under the sidecar's staging folder: {uploaded_while_full} of {} blocks uploaded while full, \
         {} upload failures; passed in {:.1?}; disk scenarios {:.1?}",
        setup.data.blocks,
        metric(sidecar.http, "thanos_shipper_upload_failures_total").unwrap_or(0.0),
        began.elapsed(),
        started.elapsed()
    );
}
