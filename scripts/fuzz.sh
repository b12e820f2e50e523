#!/usr/bin/env bash
# Runs every tsdb-block fuzz target (crates/tsdb-block/fuzz) for FUZZ_SECONDS seconds each
# (default 60) and fails as soon as one finds a crash. Installs cargo-fuzz into .tools/ if it is
# missing. Works on the stable toolchain: the targets are built without a sanitizer
# (`--sanitizer none`), relying on libFuzzer's coverage and on Rust's own checks (debug
# assertions and overflow checks are on).
#
# Usage: scripts/fuzz.sh [target...]     (default: every target)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
seconds="${FUZZ_SECONDS:-60}"
crate="$root/crates/tsdb-block"
testdata="$crate/testdata"

if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
    echo "installing cargo-fuzz into $tools"
    cargo install cargo-fuzz --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"

seed() {
    local target="$1"
    local corpus="$crate/fuzz/corpus/$target"
    mkdir -p "$corpus"
    case "$target" in
        xor_chunk)
            # The XOR chunk data inside the edge-values segment (offset 10, 99 bytes).
            tail -c +11 "$testdata/promtool-edge-values-000001" | head -c 99 >"$corpus/seed-edge-values"
            ;;
        segment_chunk)
            cp "$testdata/promtool-edge-values-000001" "$testdata/promtool-two-series-000001" "$corpus/"
            ;;
        meta_json)
            cp "$testdata/promtool-meta.json" "$corpus/"
            ;;
        tombstones)
            printf '\x01\x30\xba\x30\x01\x00\x00\x00\x00' >"$corpus/seed-empty"
            ;;
        index_reader)
            cp "$testdata/promtool-edge-values-index" "$corpus/"
            ;;
    esac
}

cd "$crate"
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

for target in "${targets[@]}"; do
    seed "$target"
    echo "fuzzing $target for ${seconds}s"
    cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1
done
echo "fuzzing finished without crashes: ${targets[*]}"
