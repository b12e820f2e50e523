#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS seconds each (default 60) and fails as soon as one
# finds a crash: tsdb-block's decoders (crates/tsdb-block/fuzz) and promql-engine's parser and
# evaluator (crates/promql-engine/fuzz). Installs cargo-fuzz into .tools/ if it is missing. Works
# on the stable toolchain: the targets are built without a sanitizer (`--sanitizer none`),
# relying on libFuzzer's coverage and on Rust's own checks (debug assertions and overflow checks
# are on).
#
# Usage: scripts/fuzz.sh [target...]     (default: every target of every fuzz crate)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
seconds="${FUZZ_SECONDS:-60}"
crates=("$root/crates/tsdb-block" "$root/crates/promql-engine")
testdata="$root/crates/tsdb-block/testdata"

if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
    echo "installing cargo-fuzz into $tools"
    cargo install cargo-fuzz --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"

seed() {
    local crate="$1" target="$2"
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
        promql)
            printf '%s' 'sum by (job) (rate(x{job=~"a|b"}[5m] offset 1m)) / on(job) group_left count(x)' >"$corpus/seed-binary"
            printf '%s' 'max_over_time(-abs(x @ 300)[10m:1m]) > bool 2 ^ -1' >"$corpus/seed-subquery"
            printf '%s' '((topk(2, x) or label_replace(x, "y", "$1", "job", "(.*)")))' >"$corpus/seed-functions"
            ;;
    esac
}

# Every target as "crate-dir target".
all=()
for crate in "${crates[@]}"; do
    while read -r target; do
        all+=("$crate $target")
    done < <(cd "$crate" && cargo fuzz list)
done

ran=()
for entry in "${all[@]}"; do
    crate="${entry% *}"
    target="${entry#* }"
    if [[ $# -gt 0 ]] && [[ ! " $* " == *" $target "* ]]; then
        continue
    fi
    seed "$crate" "$target"
    echo "fuzzing $target for ${seconds}s"
    (cd "$crate" && cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1)
    ran+=("$target")
done
if [[ ${#ran[@]} -eq 0 ]]; then
    echo "no fuzz target matches: $*" >&2
    exit 2
fi
echo "fuzzing finished without crashes: ${ran[*]}"
