//! Replays Prometheus' own PromQL test scripts (`shared/conformance/promql/*.test`) against the
//! engine.
//!
//! The folder is `<workspace>/../shared/conformance/promql` or `$PROMQL_CONFORMANCE_DIR`; when it
//! is missing the test passes with a note, except under `CI=true`, where it fails. Cases that
//! need native histograms or syntax the parser cannot read are skipped with a reason. Every other
//! case must pass unless it is listed in `tests/conformance_known_failures.txt` (`file:line
//! reason`); a listed case that passes, or a listed entry that no longer names a failing case,
//! fails the test so the list only shrinks. Set `PROMQL_CONFORMANCE_WRITE_KNOWN_FAILURES=1` to
//! rewrite the list from the current failures.
#![allow(clippy::print_stdout)]

#[path = "conformance/at_rewrite.rs"]
mod at_rewrite;
#[path = "conformance/dsl.rs"]
mod dsl;
#[path = "conformance/run.rs"]
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use run::{Outcome, Script};

fn conformance_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PROMQL_CONFORMANCE_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.join("../../../shared/conformance/promql")
}

fn known_failures_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance_known_failures.txt")
}

fn load_known_failures() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(known_failures_path()).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| match line.split_once(char::is_whitespace) {
            Some((key, reason)) => (key.to_string(), reason.trim().to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
}

#[test]
fn prometheus_conformance_scripts() {
    let dir = conformance_dir();
    if !dir.is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "conformance folder {} is missing",
            dir.display()
        );
        println!(
            "conformance folder {} is missing; nothing to run",
            dir.display()
        );
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read conformance folder")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());

    let known = load_known_failures();
    let mut total = Tally::default();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut skip_reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut passing_known = Vec::new();
    let mut seen_keys = BTreeSet::new();
    let mut at_rewrites = 0;
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let text = std::fs::read_to_string(path).expect("read test file");
        let commands = match dsl::parse_script(&text) {
            Ok(commands) => commands,
            Err(error) => panic!("{name}: cannot parse script: {error}"),
        };
        let mut tally = Tally::default();
        let mut script = Script::new();
        for (line, command) in &commands {
            let Some(outcome) = script.apply(command) else {
                continue;
            };
            let key = format!("{name}:{line}");
            seen_keys.insert(key.clone());
            match outcome {
                Outcome::Passed => {
                    tally.passed += 1;
                    if known.contains_key(&key) {
                        passing_known.push(key);
                    }
                }
                Outcome::Failed(reason) => {
                    tally.failed += 1;
                    failures.insert(key, reason);
                }
                Outcome::Skipped(reason) => {
                    tally.skipped += 1;
                    let group = reason.split(':').next().unwrap_or(&reason).to_string();
                    *skip_reasons.entry(group).or_default() += 1;
                    println!("{key}: skipped: {reason}");
                }
            }
        }
        println!(
            "{name}: {} passed, {} failed, {} skipped",
            tally.passed, tally.failed, tally.skipped
        );
        at_rewrites += script.at_rewrites.get();
        total.passed += tally.passed;
        total.failed += tally.failed;
        total.skipped += tally.skipped;
    }
    println!(
        "extra checks: {at_rewrites} @-rewritten instant queries (each also run as a range query)"
    );
    for (reason, count) in &skip_reasons {
        println!("skipped {count}: {reason}");
    }
    println!(
        "total: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );

    if std::env::var("PROMQL_CONFORMANCE_WRITE_KNOWN_FAILURES").as_deref() == Ok("1") {
        let mut out = String::from(
            "# Conformance cases known to fail: `file:line reason`. Remove entries as they pass.\n",
        );
        for (key, reason) in &failures {
            // Keep a hand-written explanation over the raw failure text.
            let reason = known
                .get(key)
                .filter(|known| !known.is_empty())
                .unwrap_or(reason);
            let short: String = reason.replace('\n', " ").chars().take(200).collect();
            out.push_str(&format!("{key} {short}\n"));
        }
        std::fs::write(known_failures_path(), out).expect("write known failures");
        return;
    }

    let regressions: Vec<String> = failures
        .iter()
        .filter(|(key, _)| !known.contains_key(*key))
        .map(|(key, reason)| format!("{key}: {reason}"))
        .collect();
    let stale: Vec<&String> = known
        .keys()
        .filter(|key| !failures.contains_key(*key) && !passing_known.contains(key))
        .collect();
    for key in &passing_known {
        println!("{key}: listed as a known failure but passes; remove it from the list");
    }
    for regression in &regressions {
        println!("FAILED {regression}");
    }
    assert!(
        regressions.is_empty() && passing_known.is_empty() && stale.is_empty(),
        "{} new failures, {} known failures now pass ({:?}), {} stale entries ({:?})",
        regressions.len(),
        passing_known.len(),
        passing_known,
        stale.len(),
        stale
    );
}
