#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS seconds each (default 60) and fails as soon as one
# finds a crash. The fuzz crates are found, not listed: every `crates/<crate>/fuzz` directory
# with a Cargo.toml is a cargo-fuzz crate of its own (outside the main workspace) whose targets
# exercise that crate's parsers of outside bytes. Installs cargo-fuzz into .tools/ if it is
# missing. Works on the stable toolchain: the targets are built without a sanitizer
# (`--sanitizer none`), relying on libFuzzer's coverage and on Rust's own checks (debug
# assertions and overflow checks are on).
#
# Seeds come from each fuzz crate: the files in `fuzz/seeds/<target>/` are copied into the
# target's corpus (`fuzz/corpus/<target>/`, gitignored like `fuzz/artifacts/`), and a crate may
# add more with a `fuzz/seed.sh <target> <corpus-dir>` hook (tsdb-block copies its testdata).
#
# All fuzz crates build into one target directory (FUZZ_TARGET_DIR, default target/fuzz) so the
# dependencies they share (tokio, serde, prost, the workspace's own crates) compile once.
#
# Usage: scripts/fuzz.sh [target...]     (default: every target of every fuzz crate)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
seconds="${FUZZ_SECONDS:-60}"
target_dir="${FUZZ_TARGET_DIR:-$root/target/fuzz}"

if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
    echo "installing cargo-fuzz into $tools"
    cargo install cargo-fuzz --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"

crates=()
for dir in "$root"/crates/*/fuzz; do
    if [[ -f "$dir/Cargo.toml" ]]; then
        crates+=("${dir%/fuzz}")
    fi
done

wanted() {
    [[ $# -eq 1 ]] || [[ " ${*:2} " == *" $1 "* ]]
}

seed() {
    local crate="$1" target="$2"
    local corpus="$crate/fuzz/corpus/$target"
    mkdir -p "$corpus"
    if [[ -d "$crate/fuzz/seeds/$target" ]]; then
        cp -R "$crate/fuzz/seeds/$target/." "$corpus/"
    fi
    if [[ -f "$crate/fuzz/seed.sh" ]]; then
        bash "$crate/fuzz/seed.sh" "$target" "$corpus"
    fi
}

# Every target as "crate-dir target"; a target name must be unique across crates (the binaries
# share one directory).
all=()
for crate in "${crates[@]}"; do
    while read -r target; do
        all+=("$crate $target")
    done < <(cd "$crate" && cargo fuzz list)
done

# Build each crate's targets in one cargo invocation before fuzzing, so the timed runs below
# measure fuzzing and a build failure shows up before any fuzzing starts.
for crate in "${crates[@]}"; do
    selected=()
    for entry in "${all[@]}"; do
        if [[ "${entry% *}" == "$crate" ]] && wanted "${entry#* }" "$@"; then
            selected+=("${entry#* }")
        fi
    done
    if [[ ${#selected[@]} -eq 0 ]]; then
        continue
    fi
    echo "building fuzz targets of ${crate#"$root"/}: ${selected[*]}"
    if [[ $# -eq 0 ]]; then
        (cd "$crate" && cargo fuzz build --sanitizer none --target-dir "$target_dir")
    else
        for target in "${selected[@]}"; do
            (cd "$crate" && cargo fuzz build --sanitizer none --target-dir "$target_dir" "$target")
        done
    fi
done

ran=()
for entry in "${all[@]}"; do
    crate="${entry% *}"
    target="${entry#* }"
    if ! wanted "$target" "$@"; then
        continue
    fi
    seed "$crate" "$target"
    echo "fuzzing $target for ${seconds}s"
    (cd "$crate" && cargo fuzz run --sanitizer none --target-dir "$target_dir" "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1)
    ran+=("$target")
done
if [[ ${#ran[@]} -eq 0 ]]; then
    echo "no fuzz target matches: $*" >&2
    exit 2
fi
echo "fuzzing finished without crashes: ${ran[*]}"
