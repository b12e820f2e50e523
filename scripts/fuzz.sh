#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS seconds each (default 60) and fails as soon as one
# finds a crash. A target lives with the crate whose parsers of outside bytes it exercises,
# `crates/<crate>/fuzz/fuzz_targets/<target>.rs`, and every target is a `[[bin]]` of the one
# cargo-fuzz package `crates/fuzz` (a workspace of its own, excluded from the main one), so all of
# them build in one cargo invocation with one dependency resolution: the dependencies they share
# (tokio, hyper, tonic, object_store, the workspace's own crates) compile once. Installs cargo-fuzz
# into .tools/ if it is missing. Works on the stable toolchain: the targets are built without a
# sanitizer (`--sanitizer none`), relying on libFuzzer's coverage and on Rust's own checks (debug
# assertions and overflow checks are on).
#
# Seeds come from the target's crate: the files in `crates/<crate>/fuzz/seeds/<target>/` are
# copied into the target's corpus (`crates/fuzz/corpus/<target>/`, gitignored like
# `crates/fuzz/artifacts/`), and a crate may add more with a `fuzz/seed.sh <target> <corpus-dir>`
# hook (tsdb-block copies its testdata).
#
# The build goes to FUZZ_TARGET_DIR (default target/fuzz). FUZZ_DEV=1 builds without
# optimizations (cargo-fuzz's --dev): about half the cold build time for a tenth of the
# executions per second, the right trade for the short smoke run of `make test`; long runs
# (`make fuzz`) keep the optimized build.
#
# Usage: scripts/fuzz.sh [target...]     (default: every target)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
seconds="${FUZZ_SECONDS:-60}"
target_dir="${FUZZ_TARGET_DIR:-$root/target/fuzz}"
fuzz_dir="$root/crates/fuzz"
profile=()
if [[ "${FUZZ_DEV:-0}" == 1 ]]; then
    profile=(--dev)
fi

if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
    echo "installing cargo-fuzz into $tools"
    cargo install cargo-fuzz --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"

fuzz() {
    (cd "$fuzz_dir" && cargo fuzz "$1" --fuzz-dir "$fuzz_dir" "${@:2}")
}

# The crate directory a target's source lives in.
crate_of() {
    local source
    for source in "$root"/crates/*/fuzz/fuzz_targets/"$1".rs; do
        if [[ -f "$source" ]]; then
            echo "${source%/fuzz/fuzz_targets/*}"
            return
        fi
    done
    echo "fuzz target $1 has no crates/<crate>/fuzz/fuzz_targets/$1.rs" >&2
    exit 1
}

seed() {
    local target="$1"
    local crate corpus="$fuzz_dir/corpus/$target"
    crate="$(crate_of "$target")"
    mkdir -p "$corpus"
    if [[ -d "$crate/fuzz/seeds/$target" ]]; then
        cp -R "$crate/fuzz/seeds/$target/." "$corpus/"
    fi
    if [[ -f "$crate/fuzz/seed.sh" ]]; then
        bash "$crate/fuzz/seed.sh" "$target" "$corpus"
    fi
}

all=()
while read -r target; do
    all+=("$target")
done < <(fuzz list)

for wanted in "$@"; do
    if [[ " ${all[*]} " != *" $wanted "* ]]; then
        echo "no fuzz target $wanted; the targets are: ${all[*]}" >&2
        exit 2
    fi
done

selected=()
for target in "${all[@]}"; do
    if [[ $# -eq 0 ]] || [[ " $* " == *" $target "* ]]; then
        selected+=("$target")
    fi
done

# Build before fuzzing, so the timed runs below measure fuzzing and a build failure shows up
# before any fuzzing starts: every target in one cargo invocation, or the chosen ones one by one
# (the same resolution, so nothing is compiled twice).
echo "building fuzz targets: ${selected[*]}"
if [[ $# -eq 0 ]]; then
    fuzz build "${profile[@]}" --sanitizer none --target-dir "$target_dir"
else
    for target in "${selected[@]}"; do
        fuzz build "${profile[@]}" --sanitizer none --target-dir "$target_dir" "$target"
    done
fi

for target in "${selected[@]}"; do
    seed "$target"
    echo "fuzzing $target for ${seconds}s"
    fuzz run "${profile[@]}" --sanitizer none --target-dir "$target_dir" "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1
done
echo "fuzzing finished without crashes: ${selected[*]}"
