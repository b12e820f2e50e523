#!/usr/bin/env bash
# Seeds from tsdb-block's testdata (files written by real Prometheus), for scripts/fuzz.sh.
# Usage: seed.sh <target> <corpus-dir>
set -euo pipefail

target="$1"
corpus="$2"
testdata="$(cd "$(dirname "${BASH_SOURCE[0]}")/../testdata" && pwd)"

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
    index_reader)
        cp "$testdata/promtool-edge-values-index" "$corpus/"
        ;;
esac
