//! Planner tests. The cases follow Prometheus' leveled planner tests and Thanos' planner tests
//! (ranges 20, 60, 180, 540, 1620 as there), plus the real 2h/8h/2d/14d ranges.

use std::collections::{BTreeMap, HashMap, HashSet};

use tsdb_block::meta::{BlockMeta, no_compact_reason};

use super::*;
use crate::plan::testing::{MetaExt, id, meta, numbers};
use crate::plan::{DAY_MS, HOUR_MS};

const TEST_RANGES: [i64; 5] = [20, 60, 180, 540, 1620];

fn group_of(metas: Vec<BlockMeta>) -> Group {
    let mut metas = metas;
    crate::plan::group::sort_by_min_time(&mut metas);
    Group {
        key: "0@17241709254077376921".to_owned(),
        resolution: metas.first().map_or(0, BlockMeta::resolution),
        labels: BTreeMap::new(),
        metas,
    }
}

fn marks(numbers: &[u64]) -> HashSet<Ulid> {
    numbers.iter().map(|n| id(*n)).collect()
}

fn config(ranges: &[i64]) -> PlannerConfig {
    PlannerConfig {
        ranges: ranges.to_vec(),
        max_index_size_bytes: DEFAULT_BLOCK_MAX_INDEX_SIZE,
        vertical_compaction: false,
    }
}

/// Runs the bare leveled planner over `metas` (any order) and returns the planned ULID numbers.
fn leveled(metas: &[BlockMeta], no_compact: &[u64], ranges: &[i64]) -> Vec<u64> {
    let sorted = sorted_by_min_time(metas);
    numbers(
        leveled_plan(&sorted, &marks(no_compact), ranges)
            .iter()
            .map(|meta| &meta.ulid),
    )
}

/// Checks the leveled planner and `plan_group` (vertical compaction on, so overlaps are planned
/// rather than reported) agree on the expected plan.
fn check(metas: Vec<BlockMeta>, no_compact: &[u64], expected: &[u64]) {
    assert_eq!(leveled(&metas, no_compact, &TEST_RANGES), expected);
    let mut vertical = config(&TEST_RANGES);
    vertical.vertical_compaction = true;
    let outcome = plan_group(
        &group_of(metas),
        &marks(no_compact),
        &HashMap::new(),
        &vertical,
    );
    match outcome {
        PlanOutcome::Nothing => assert!(expected.is_empty(), "expected {expected:?}"),
        PlanOutcome::Compact(plan) => assert_eq!(numbers(&plan.ids()), expected),
        other => panic!("unexpected outcome {other:?}"),
    }
}

// Test metas carry no index size; give every block one so the guard stays quiet.
fn sized(metas: Vec<BlockMeta>) -> Vec<BlockMeta> {
    metas.into_iter().map(|meta| meta.index_size(1)).collect()
}

#[test]
fn leveled_windows_follow_prometheus_cases() {
    // A single block is never compacted.
    check(sized(vec![meta(1, 0, 20)]), &[], &[]);
    // Wait for four blocks of the smallest range: two are not enough...
    check(sized(vec![meta(1, 0, 20), meta(2, 20, 40)]), &[], &[]);
    // ...nor three, the newest being held back.
    check(
        sized(vec![meta(1, 0, 20), meta(2, 20, 40), meta(3, 40, 60)]),
        &[],
        &[],
    );
    // The block filling the parent range arrived: compact the first window.
    check(
        sized(vec![
            meta(1, 0, 20),
            meta(2, 20, 40),
            meta(3, 40, 60),
            meta(4, 60, 80),
        ]),
        &[],
        &[1, 2, 3],
    );
    // Blocks fill the second parent range.
    check(
        sized(vec![
            meta(6, 0, 60),
            meta(7, 60, 120),
            meta(8, 120, 180),
            meta(9, 180, 200),
            meta(10, 200, 220),
        ]),
        &[],
        &[6, 7, 8],
    );
    // The next range's block appeared after a gap but is the newest: nothing yet.
    check(
        sized(vec![meta(1, 0, 20), meta(2, 20, 40), meta(4, 60, 80)]),
        &[],
        &[],
    );
    // With another block after it, the gap will never be filled: compact the two.
    check(
        sized(vec![
            meta(1, 0, 20),
            meta(2, 20, 40),
            meta(4, 60, 80),
            meta(5, 80, 100),
        ]),
        &[],
        &[1, 2],
    );
    // 20, 20, 20, 60, 60 with the last one fresh.
    check(
        sized(vec![
            meta(1, 0, 20),
            meta(2, 20, 40),
            meta(3, 40, 60),
            meta(4, 60, 120),
            meta(5, 120, 180),
        ]),
        &[],
        &[1, 2, 3],
    );
    // The second range is full but with a gap.
    check(
        sized(vec![
            meta(6, 0, 60),
            meta(8, 120, 180),
            meta(9, 180, 200),
            meta(10, 200, 220),
        ]),
        &[],
        &[6, 8],
    );
    // 20, 60, 20(fresh), 60, 240 given out of order: 20 + 60 + 60 is a 180 window.
    check(
        sized(vec![
            meta(2, 20, 40),
            meta(4, 60, 120),
            meta(5, 960, 980),
            meta(6, 120, 180),
            meta(7, 720, 960),
        ]),
        &[],
        &[2, 4, 6],
    );
    // The newest block is the one with the greatest minTime, not the greatest ULID.
    check(
        sized(vec![
            meta(5, 0, 360),
            meta(6, 540, 560),
            meta(7, 360, 420),
            meta(8, 420, 540),
        ]),
        &[],
        &[7, 8],
    );
}

#[test]
fn only_the_first_window_is_planned() {
    // Two full windows and a higher-level set: only the first window of the smallest range.
    check(
        sized(vec![
            meta(1, 180, 200),
            meta(2, 200, 220),
            meta(3, 220, 240),
            meta(4, 240, 260),
            meta(5, 260, 280),
            meta(6, 280, 300),
            meta(7, 0, 60),
            meta(8, 60, 120),
            meta(9, 120, 180),
            meta(10, 300, 320),
        ]),
        &[],
        &[1, 2, 3],
    );
}

#[test]
fn overlapping_blocks_plan_only_the_first_cluster() {
    check(
        sized(vec![meta(1, 0, 20), meta(2, 19, 40), meta(3, 40, 60)]),
        &[],
        &[1, 2],
    );
    check(
        sized(vec![meta(1, 0, 20), meta(2, 20, 40), meta(3, 30, 50)]),
        &[],
        &[2, 3],
    );
    check(
        sized(vec![meta(1, 0, 20), meta(2, 10, 40), meta(3, 30, 50)]),
        &[],
        &[1, 2, 3],
    );
    check(
        sized(vec![
            meta(5, 0, 360),
            meta(6, 340, 560),
            meta(7, 360, 420),
            meta(8, 420, 540),
        ]),
        &[],
        &[5, 6, 7, 8],
    );
    // Two independent clusters: only the first is returned (Thanos' selectOverlappingMetas).
    check(
        sized(vec![
            meta(1, 0, 10),
            meta(2, 9, 20),
            meta(3, 17, 35),
            meta(4, 35, 50),
            meta(5, 47, 60),
        ]),
        &[],
        &[1, 2, 3],
    );
    // Two clusters with a gap between them: the first.
    check(
        sized(vec![
            meta(1, 0, 10),
            meta(2, 9, 20),
            meta(3, 30, 40),
            meta(4, 39, 50),
        ]),
        &[],
        &[1, 2],
    );
    // A no-compact-marked block takes no part in the overlap: the rest is planned by windows.
    check(
        sized(vec![meta(1, 0, 20), meta(2, 19, 40), meta(3, 40, 60)]),
        &[1],
        &[],
    );
}

#[test]
fn windows_with_a_failed_compaction_are_not_selected() {
    let cases = [
        vec![
            meta(1, 0, 20),
            meta(2, 20, 40).failed(),
            meta(3, 40, 60),
            meta(4, 60, 80),
        ],
        vec![
            meta(1, 0, 20),
            meta(2, 20, 40).failed(),
            meta(4, 60, 80),
            meta(5, 80, 100),
        ],
        vec![
            meta(1, 0, 20),
            meta(2, 20, 40).failed(),
            meta(3, 40, 60),
            meta(4, 60, 120),
            meta(5, 120, 180),
            meta(6, 180, 200),
        ],
    ];
    for case in cases {
        check(sized(case), &[], &[]);
    }
    // The same windows without the failure are planned.
    check(
        sized(vec![
            meta(1, 0, 20),
            meta(2, 20, 40),
            meta(3, 40, 60),
            meta(4, 60, 80),
        ]),
        &[],
        &[1, 2, 3],
    );
}

#[test]
fn no_compact_marks_split_windows_into_gap_free_runs() {
    let four = || {
        sized(vec![
            meta(1, 0, 20),
            meta(2, 20, 40),
            meta(3, 40, 60),
            meta(4, 60, 80),
        ])
    };
    check(sized(vec![meta(1, 0, 20)]), &[1], &[]);
    check(four(), &[1], &[2, 3]);
    check(four(), &[2], &[]);
    check(four(), &[4], &[1, 2, 3]);
    check(four(), &[1, 4], &[2, 3]);
    check(four(), &[1, 2, 3, 4], &[]);
    check(
        sized(vec![
            meta(1, 0, 20),
            meta(2, 20, 40),
            meta(4, 60, 80),
            meta(5, 80, 100),
        ]),
        &[2],
        &[],
    );
    let mixed = || {
        sized(vec![
            meta(2, 20, 40),
            meta(4, 60, 120),
            meta(5, 960, 980),
            meta(6, 120, 180),
            meta(7, 720, 960),
        ])
    };
    check(mixed(), &[6], &[2, 4]);
    check(mixed(), &[4], &[]);
}

#[test]
fn tombstone_rule_rewrites_one_large_block_once_a_fresh_one_exists() {
    let large = || meta(1, 0, 540).tombstones(10, 3);
    // Alone, the large block is the newest and held back.
    check(sized(vec![large()]), &[], &[]);
    check(sized(vec![large(), meta(2, 540, 560)]), &[], &[1]);
    // Small blocks are not rewritten for tombstones.
    check(
        sized(vec![meta(1, 0, 60).tombstones(10, 3), meta(2, 60, 80)]),
        &[],
        &[],
    );
    // No tombstones, no series: 0 / 1 is not above 5 %.
    check(sized(vec![meta(1, 0, 540), meta(2, 540, 560)]), &[], &[]);
    // Exactly at 5 % (1 / (19 + 1)) is not above it.
    check(
        sized(vec![meta(1, 0, 540).tombstones(19, 1), meta(2, 540, 560)]),
        &[],
        &[],
    );
    // A marked block is not rewritten.
    check(sized(vec![large(), meta(2, 540, 560)]), &[1], &[]);
}

#[test]
fn real_ranges_compact_2h_blocks_into_8h_and_hold_the_newest_back() {
    let two_hours = |n: u64| meta(n, (n as i64 - 1) * 2 * HOUR_MS, n as i64 * 2 * HOUR_MS);
    let ranges = crate::plan::COMPACTION_RANGES;
    // Four 2h blocks fill the first 8h window, but the fourth is the newest: held back, and the
    // three others end after the newest considered block starts.
    let four: Vec<BlockMeta> = (1..=4).map(two_hours).collect();
    assert_eq!(leveled(&four, &[], &ranges), Vec::<u64>::new());
    // A fifth block arrives: the 8h window is complete.
    let five: Vec<BlockMeta> = (1..=5).map(two_hours).collect();
    assert_eq!(leveled(&five, &[], &ranges), vec![1, 2, 3, 4]);
    // Four 8h blocks and a new 2h one: the 2d window is not full, the 8h blocks are spread over
    // windows of their own; a 2d window needs six 8h blocks or a later block.
    let eight_hours = |n: u64| meta(n, (n as i64 - 1) * 8 * HOUR_MS, n as i64 * 8 * HOUR_MS);
    let mut blocks: Vec<BlockMeta> = (1..=6).map(eight_hours).collect();
    blocks.push(meta(7, 2 * DAY_MS, 2 * DAY_MS + 2 * HOUR_MS));
    assert_eq!(leveled(&blocks, &[], &ranges), vec![1, 2, 3, 4, 5, 6]);
    // The tombstone rule uses the middle range (8h): a 10h block qualifies, a 6h one does not.
    let long = meta(1, 0, 10 * HOUR_MS).tombstones(100, 50);
    let fresh = meta(2, 10 * HOUR_MS, 12 * HOUR_MS);
    assert_eq!(leveled(&[long, fresh.clone()], &[], &ranges), vec![1]);
    let short = meta(1, 0, 6 * HOUR_MS).tombstones(100, 50);
    assert_eq!(leveled(&[short, fresh], &[], &ranges), Vec::<u64>::new());
}

#[test]
fn max_compaction_level_limits_the_ranges() {
    let two_hours = |n: u64| meta(n, (n as i64 - 1) * 2 * HOUR_MS, n as i64 * 2 * HOUR_MS);
    let five: Vec<BlockMeta> = (1..=5).map(two_hours).collect();
    // Level 1 keeps 1h and 2h: the 2h blocks are already at the top, nothing to do.
    assert_eq!(
        leveled(&five, &[], &crate::plan::COMPACTION_RANGES[..2]),
        Vec::<u64>::new()
    );
    // Level 0 keeps only 1h: no window selection at all.
    assert_eq!(
        leveled(&five, &[], &crate::plan::COMPACTION_RANGES[..1]),
        Vec::<u64>::new()
    );
}

#[test]
fn windows_align_for_negative_times() {
    // Blocks before the epoch: [-60, 0) is one 60-window, floor-aligned.
    let blocks = sized(vec![
        meta(1, -60, -40),
        meta(2, -40, -20),
        meta(3, -20, 0),
        meta(4, 0, 20),
    ]);
    check(blocks, &[], &[1, 2, 3]);
    let crossing = [meta(1, -21, -1), meta(2, -1, 5)];
    let split = split_by_range(&sorted_by_min_time(&crossing), 20);
    // -21 aligns to [-40, -20]: the block crosses its window end and is skipped; -1 aligns to
    // [-20, 0], and the second block crosses it too.
    assert!(split.is_empty(), "{split:?}");
}

#[test]
fn split_by_range_skips_blocks_crossing_their_window() {
    let blocks = [
        meta(1, 0, 10),
        meta(2, 10, 20),
        meta(3, 50, 60),
        meta(4, 90, 100),
    ];
    let sorted = sorted_by_min_time(&blocks);
    let windows: Vec<Vec<u64>> = split_by_range(&sorted, 30)
        .iter()
        .map(|window| numbers(window.iter().map(|meta| &meta.ulid)))
        .collect();
    assert_eq!(windows, vec![vec![1, 2], vec![3], vec![4]]);
    let crossing = [meta(1, 0, 40), meta(2, 40, 50)];
    let sorted = sorted_by_min_time(&crossing);
    let windows: Vec<Vec<u64>> = split_by_range(&sorted, 30)
        .iter()
        .map(|window| numbers(window.iter().map(|meta| &meta.ulid)))
        .collect();
    assert_eq!(windows, vec![vec![2]]);
}

/// Plans like the driver: applies every requested no-compact mark and plans again.
fn plan_until_settled(
    group: &Group,
    config: &PlannerConfig,
    no_compact: &mut HashSet<Ulid>,
) -> (PlanOutcome, Vec<NoCompactDecision>) {
    let mut written = Vec::new();
    for _ in 0..20 {
        match plan_group(group, no_compact, &HashMap::new(), config) {
            PlanOutcome::MarkNoCompact(decisions) => {
                for decision in &decisions {
                    no_compact.insert(decision.block);
                }
                written.extend(decisions);
            }
            outcome => return (outcome, written),
        }
    }
    panic!("the planner asked for marks forever");
}

fn planned(outcome: &PlanOutcome) -> Vec<u64> {
    match outcome {
        PlanOutcome::Compact(plan) => numbers(&plan.ids()),
        PlanOutcome::Nothing => Vec::new(),
        other => panic!("unexpected outcome {other:?}"),
    }
}

#[test]
fn index_size_guard_marks_the_largest_block_seen_and_plans_again() {
    let mut limited = config(&TEST_RANGES);
    limited.max_index_size_bytes = 100; // threshold 85
    let cases: Vec<(Vec<BlockMeta>, Vec<u64>, Vec<u64>)> = vec![
        (vec![meta(1, 0, 20).index_size(100)], vec![], vec![]),
        (
            vec![
                meta(1, 0, 20).index_size(41),
                meta(2, 20, 40).index_size(30),
                meta(3, 40, 60).index_size(30),
                meta(4, 60, 80).index_size(30),
            ],
            vec![2, 3],
            vec![1],
        ),
        (
            vec![
                meta(1, 0, 20).index_size(30),
                meta(2, 20, 40).index_size(41),
                meta(3, 40, 60).index_size(30),
                meta(4, 60, 80).index_size(20),
            ],
            vec![],
            vec![2],
        ),
        // The newest block is not planned, so its size does not matter.
        (
            vec![
                meta(1, 0, 20).index_size(10),
                meta(2, 20, 40).index_size(10),
                meta(3, 40, 60).index_size(10),
                meta(4, 60, 80).index_size(90),
            ],
            vec![1, 2, 3],
            vec![],
        ),
        (
            vec![
                meta(1, 0, 20).index_size(90),
                meta(2, 20, 40).index_size(30),
                meta(3, 40, 50).index_size(30),
                meta(4, 50, 60).index_size(90),
                meta(5, 60, 80).index_size(90),
            ],
            vec![2, 3],
            vec![1, 4],
        ),
        (
            vec![
                meta(2, 20, 40).index_size(30),
                meta(4, 60, 120).index_size(30),
                meta(5, 960, 980).index_size(30),
                meta(6, 120, 180).index_size(90),
                meta(7, 720, 960).index_size(30),
            ],
            vec![2, 4],
            vec![6],
        ),
    ];
    for (blocks, expected_plan, expected_marks) in cases {
        let group = group_of(blocks);
        let mut no_compact = HashSet::new();
        let (outcome, written) = plan_until_settled(&group, &limited, &mut no_compact);
        assert_eq!(planned(&outcome), expected_plan);
        assert_eq!(numbers(written.iter().map(|d| &d.block)), expected_marks);
        for decision in &written {
            assert_eq!(decision.reason, no_compact_reason::INDEX_SIZE_EXCEEDING);
            assert!(
                decision.details.contains("100 bytes"),
                "{}",
                decision.details
            );
        }
    }
}

#[test]
fn index_size_guard_applies_to_overlapping_plans() {
    let mut limited = config(&TEST_RANGES);
    limited.max_index_size_bytes = 100;
    limited.vertical_compaction = true;
    // The first cluster is too large: its largest block is marked, then the second cluster goes.
    let group = group_of(vec![
        meta(1, 0, 20).index_size(90),
        meta(2, 19, 40).index_size(30),
        meta(3, 40, 60).index_size(30),
        meta(4, 70, 80).index_size(30),
        meta(5, 75, 90).index_size(30),
    ]);
    let (outcome, written) = plan_until_settled(&group, &limited, &mut HashSet::new());
    assert_eq!(numbers(written.iter().map(|d| &d.block)), vec![1]);
    assert_eq!(planned(&outcome), vec![4, 5]);
    match outcome {
        PlanOutcome::Compact(plan) => assert!(plan.overlapping),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_index_sizes_are_asked_for() {
    let group = group_of(vec![
        meta(1, 0, 20).index_size(10),
        meta(2, 20, 40),
        meta(3, 40, 60),
        meta(4, 60, 80),
    ]);
    let config = config(&TEST_RANGES);
    let outcome = plan_group(&group, &HashSet::new(), &HashMap::new(), &config);
    assert_eq!(outcome, PlanOutcome::NeedIndexSizes(vec![id(2), id(3)]));
    let sizes = HashMap::from([(id(2), 10), (id(3), 10)]);
    let outcome = plan_group(&group, &HashSet::new(), &sizes, &config);
    assert_eq!(planned(&outcome), vec![1, 2, 3]);
    assert_eq!(
        blocks_missing_index_size(&group.metas),
        vec![id(2), id(3), id(4)]
    );
}

#[test]
fn overlap_without_vertical_compaction_is_a_group_problem_not_a_halt() {
    let group = group_of(sized(vec![
        meta(1, 0, 20),
        meta(2, 19, 40),
        meta(3, 40, 60),
        meta(4, 70, 80),
        meta(5, 75, 90),
    ]));
    let outcome = plan_group(
        &group,
        &HashSet::new(),
        &HashMap::new(),
        &config(&TEST_RANGES),
    );
    let PlanOutcome::Problem(problem) = outcome else {
        panic!("expected a problem, got {outcome:?}");
    };
    assert_eq!(problem.kind_label(), "overlapping-blocks");
    // Every overlap is named, not only the first.
    assert_eq!(numbers(&problem.blocks()), vec![1, 2, 4, 5]);
    let message = problem.to_string();
    assert!(message.contains(&id(1).to_string()), "{message}");
    assert!(message.contains("[19, 40)"), "{message}");
    assert!(message.contains(&group.key), "{message}");
    assert!(
        problem
            .remedy()
            .contains("--compact.enable-vertical-compaction")
    );
    assert!(problem.remedy().contains("no-compact-mark.json"));
    // Marking one block of each overlap no-compact clears the problem (thanos#5603); what is
    // left has no window to compact yet.
    let outcome = plan_group(
        &group,
        &marks(&[2, 5]),
        &HashMap::new(),
        &config(&TEST_RANGES),
    );
    assert_eq!(outcome, PlanOutcome::Nothing);
}

#[test]
fn overlapping_sources_are_a_problem_without_vertical_compaction_and_a_warning_with_it() {
    let group = group_of(sized(vec![
        meta(1, 0, 20).sources(&[1, 9]),
        meta(2, 20, 40).sources(&[2, 9]),
        meta(3, 40, 60),
        meta(4, 60, 80),
    ]));
    let outcome = plan_group(
        &group,
        &HashSet::new(),
        &HashMap::new(),
        &config(&TEST_RANGES),
    );
    let PlanOutcome::Problem(problem) = outcome else {
        panic!("expected a problem, got {outcome:?}");
    };
    assert_eq!(problem.kind_label(), "overlapping-sources");
    assert_eq!(
        problem.kind,
        GroupProblemKind::OverlappingSources {
            plan: vec![id(1), id(2), id(3)],
            sources: vec![id(9)],
        }
    );
    assert!(problem.remedy().contains("mark for deletion"));
    assert!(problem.to_string().contains(&id(9).to_string()));
    let mut vertical = config(&TEST_RANGES);
    vertical.vertical_compaction = true;
    match plan_group(&group, &HashSet::new(), &HashMap::new(), &vertical) {
        PlanOutcome::Compact(plan) => {
            assert_eq!(numbers(&plan.ids()), vec![1, 2, 3]);
            assert_eq!(plan.repeated_sources, vec![id(9)]);
            assert!(!plan.overlapping);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn vertical_compaction_marks_downsampled_blocks_of_an_overlapping_plan() {
    let mut vertical = config(&TEST_RANGES);
    vertical.vertical_compaction = true;
    let downsampled = group_of(sized(vec![
        meta(1, 0, 30).res(300_000),
        meta(2, 0, 60).res(300_000),
        meta(3, 0, 20).res(300_000),
    ]));
    let outcome = plan_group(&downsampled, &HashSet::new(), &HashMap::new(), &vertical);
    let PlanOutcome::MarkNoCompact(decisions) = outcome else {
        panic!("expected marks, got {outcome:?}");
    };
    assert_eq!(numbers(decisions.iter().map(|d| &d.block)), vec![1, 2, 3]);
    assert!(
        decisions
            .iter()
            .all(|d| d.reason == no_compact_reason::DOWNSAMPLE_VERTICAL_COMPACTION)
    );
    let (outcome, _) = plan_until_settled(&downsampled, &vertical, &mut HashSet::new());
    assert_eq!(outcome, PlanOutcome::Nothing);
    // Raw overlapping blocks are compacted vertically.
    let raw = group_of(sized(vec![meta(1, 0, 30), meta(2, 0, 60), meta(3, 0, 20)]));
    match plan_group(&raw, &HashSet::new(), &HashMap::new(), &vertical) {
        PlanOutcome::Compact(plan) => {
            assert_eq!(numbers(&plan.ids()), vec![1, 2, 3]);
            assert!(plan.overlapping);
        }
        other => panic!("{other:?}"),
    }
    // Non-overlapping downsampled windows are compacted as usual.
    let windows = group_of(sized(vec![
        meta(1, 0, 20).res(300_000),
        meta(2, 20, 40).res(300_000),
        meta(3, 40, 60).res(300_000),
        meta(4, 60, 80).res(300_000),
    ]));
    assert_eq!(
        planned(&plan_group(
            &windows,
            &HashSet::new(),
            &HashMap::new(),
            &vertical
        )),
        vec![1, 2, 3]
    );
}

#[test]
fn small_groups_have_nothing_to_do() {
    let outcome = plan_group(
        &group_of(sized(vec![meta(1, 0, 540).tombstones(10, 9)])),
        &HashSet::new(),
        &HashMap::new(),
        &PlannerConfig::default(),
    );
    assert_eq!(outcome, PlanOutcome::Nothing);
    let outcome = plan_group(
        &group_of(Vec::new()),
        &HashSet::new(),
        &HashMap::new(),
        &PlannerConfig::default(),
    );
    assert_eq!(outcome, PlanOutcome::Nothing);
}

#[test]
fn a_compacted_block_must_not_overlap_the_rest_of_the_group() {
    let group = group_of(sized(vec![
        meta(1, 0, 20),
        meta(2, 20, 40),
        meta(3, 40, 60),
        meta(4, 60, 80),
    ]));
    let plan = match plan_group(
        &group,
        &HashSet::new(),
        &HashMap::new(),
        &config(&TEST_RANGES),
    ) {
        PlanOutcome::Compact(plan) => plan,
        other => panic!("{other:?}"),
    };
    let output = |min_time, max_time| BlockDesc {
        ulid: id(50),
        min_time,
        max_time,
    };
    assert_eq!(output_overlaps(&group, &plan, &output(0, 60), false), None);
    let problem = output_overlaps(&group, &plan, &output(0, 61), false).unwrap();
    assert_eq!(problem.kind_label(), "output-overlaps");
    assert_eq!(numbers(&problem.blocks()), vec![50, 4]);
    assert!(problem.to_string().contains("[60, 80)"), "{problem}");
    assert_eq!(output_overlaps(&group, &plan, &output(0, 61), true), None);
}
