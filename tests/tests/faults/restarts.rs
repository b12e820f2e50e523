//! A store gateway SIGKILLed at random moments (while it syncs and writes index-headers, while it
//! answers), restarted on the same addresses and data folder, in a loop.

use super::*;

#[test]
fn a_store_gateway_killed_in_a_loop_serves_everything_after_each_restart() {
    const ITERATIONS: usize = 6;
    let _serial = serial();
    let started = Instant::now();
    let (work, s3, data, _) = s3_with_blocks("faults_restarted_total", 6);
    let store_dir = work.path().join("store");
    let (http, grpc) = addresses();
    let args = [
        format!("--objstore.config={}", s3_objstore(&s3.endpoint())),
        format!("--data-dir={}", store_dir.display()),
        "--sync-block-duration=1s".to_owned(),
    ];
    let querier = start_querier(grpc, work.path());
    let full = data.expected();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_nanos() as u64)
        | 1;
    let mut random = Random(seed);
    let (mut exact, mut warned, mut failed) = (0, 0, 0);
    for iteration in 0..ITERATIONS {
        let mut process = Process::spawn(
            &format!("store-gateway.{iteration}"),
            command("store-gateway", http, grpc, &args),
            work.path(),
        )
        .unwrap();
        // Odd iterations: killed at a random moment of the start (listing, index-headers).
        // Even ones: killed right after the querier got an exact answer through it.
        let kill_after = Instant::now() + Duration::from_millis(random.below(1_500));
        let give_up = Instant::now() + Duration::from_secs(30);
        let exact_before = exact;
        while Instant::now() < kill_after || iteration % 2 == 0 {
            for partial in [true, false] {
                let extra = if partial {
                    ""
                } else {
                    "&partial_response=false"
                };
                let answer = get(querier.http, &data.raw_query(extra));
                // With the store gateway down the querier has no store to ask: as Thanos, it
                // answers nothing with a warning saying so, partial responses or not.
                let no_store = answer
                    .warnings()
                    .iter()
                    .any(|warning| warning.contains("No StoreAPIs matched"));
                let lenient = partial || no_store;
                match judge(&format!("restart {iteration}"), &answer, &full, lenient) {
                    Outcome::Exact => exact += 1,
                    Outcome::Warned(_) => warned += 1,
                    Outcome::Failed(..) => failed += 1,
                }
            }
            if iteration % 2 == 0 && exact > exact_before {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "restart {iteration}: no exact answer within 30 s of the start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        process.kill();
        assert!(
            std::fs::read_dir(&store_dir)
                .is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
                || store_dir.is_dir(),
            "the data folder must survive a kill"
        );
    }
    // Started once more: whatever the kills left in the data folder, everything is served.
    let store = start_command(
        "store-gateway.last",
        command("store-gateway", http, grpc, &args),
        http,
        grpc,
        work.path(),
    );
    let recovered = wait_exact(
        querier.http,
        &data.raw_query("&partial_response=false"),
        &full,
        Duration::from_secs(60),
    );
    assert_eq!(
        metric(store.http, "thanos_bucket_store_block_load_failures_total"),
        Some(0.0),
        "a block failed to load after the kills"
    );
    assert_eq!(
        metric(store.http, "thanos_bucket_store_blocks_loaded"),
        Some(data.blocks as f64)
    );
    assert!(exact > 0, "no query was answered exactly during the kills");
    eprintln!(
        "store gateway killed {ITERATIONS} times (seed {seed}): {exact} queries exact, {warned} \
         warned, {failed} failed, none silently shorter; exact {recovered:.1?} after the last \
         start; passed in {:.1?}",
        started.elapsed()
    );
}
