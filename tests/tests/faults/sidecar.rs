//! A sidecar SIGKILLed while it uploads, restarted, in a loop.

use super::*;

#[test]
fn a_sidecar_killed_while_uploading_loses_and_doubles_nothing() {
    const ITERATIONS: usize = 8;
    let _serial = serial();
    let started = Instant::now();
    let setup = ShippingSetup::start("faults_shipped_total", 8);
    // The sidecar uploads through a proxy that slows every read and write, so a block takes
    // about a second to upload and the kills land in the middle of uploads.
    let proxy = FaultProxy::start(setup.s3.addr()).unwrap();
    proxy.set(Fault::Delay(Duration::from_millis(150)));
    let args = setup.sidecar_args(&proxy.endpoint());
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_nanos() as u64)
        | 1;
    let mut random = Random(seed);

    // The checker: the bucket and the querier, every 100 ms, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let stop = Arc::clone(&stop);
        let mut watch = setup.watch();
        let querier = setup.querier.http;
        let store = setup.store.http;
        let data = setup.data.clone();
        let path = data.raw_query("&partial_response=false");
        std::thread::spawn(move || {
            let (mut checks, mut partial_seen, mut most_visible, mut hidden_partial) =
                (0, 0, 0, 0.0f64);
            while !stop.load(Ordering::Relaxed) {
                let view = watch.check()?;
                partial_seen = partial_seen.max(view.partial);
                let answer = get(querier, &path);
                most_visible = most_visible.max(whole_blocks_only(&answer, &data)?);
                if let Some(n) = metric(store, "thanos_blocks_meta_synced{state=\"no-meta-json\"}")
                {
                    hidden_partial = hidden_partial.max(n);
                }
                checks += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok::<_, String>((checks, partial_seen, most_visible, hidden_partial, watch))
        })
    };

    let mut kills = Vec::new();
    let mut probe = setup.watch();
    let bucket = setup.s3.data_dir().join("thanos");
    for iteration in 0..ITERATIONS {
        let (http, grpc) = addresses();
        let mut sidecar = Process::spawn(
            &format!("sidecar.{iteration}"),
            command("sidecar", http, grpc, &args),
            setup.work.path(),
        )
        .unwrap();
        // Odd iterations kill at a random moment; even ones the moment an object of a block
        // without meta.json lands in the bucket (so some kills surely fall inside an upload).
        let spawned = Instant::now();
        let files_before = bucket_files(&bucket);
        let mid_upload = iteration % 2 == 0;
        if mid_upload {
            let deadline = spawned + Duration::from_secs(8);
            while Instant::now() < deadline
                && !(bucket_files(&bucket) > files_before && probe.check().unwrap().partial > 0)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            std::thread::sleep(Duration::from_millis(300 + random.below(3_000)));
        }
        let after = spawned.elapsed();
        sidecar.kill();
        // What the proxy still held of the dead sidecar's requests reaches the bucket.
        std::thread::sleep(Duration::from_millis(400));
        let view = probe.check().unwrap();
        kills.push((after, view));
    }
    let killed_mid_upload = kills.iter().filter(|(_, view)| view.partial > 0).count();
    let before_final = probe.check().unwrap().complete;

    // The last start runs to the end.
    proxy.set(Fault::None);
    let (http, grpc) = addresses();
    let sidecar = start_command(
        "sidecar.final",
        command("sidecar", http, grpc, &args),
        http,
        grpc,
        setup.work.path(),
    );
    wait_until("every block shipped", Duration::from_secs(90), || {
        setup.shipped() == setup.data.blocks
    })
    .unwrap();
    setup.check_answers_equal_prometheus();
    stop.store(true, Ordering::Relaxed);
    let (checks, partial_seen, most_visible, hidden_partial, mut watch) = checker
        .join()
        .unwrap()
        .unwrap_or_else(|violation| panic!("{violation}"));
    watch.check_final().unwrap();
    // Only the blocks not complete before were uploaded by the last run.
    assert_eq!(
        metric(sidecar.http, "thanos_shipper_uploads_total"),
        Some((setup.data.blocks - before_final) as f64)
    );
    eprintln!(
        "sidecar kills (seed {seed}): {}",
        kills
            .iter()
            .map(|(after, view)| format!("{after:.1?}: {}+{} partial", view.complete, view.partial))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "sidecar killed {ITERATIONS} times ({killed_mid_upload} in the middle of a block): {checks} checks, \
         up to {partial_seen} partial blocks in the bucket and {hidden_partial} without meta.json \
         in the store gateway, up to {most_visible} blocks visible; {before_final} of {} complete \
         before the last start; passed in {:.1?}",
        setup.data.blocks,
        started.elapsed()
    );
    assert!(
        killed_mid_upload >= 1,
        "no kill landed in the middle of an upload: {kills:?}"
    );
    drop(sidecar);
}
