#!/usr/bin/env bash
# Copy the deliverables to $OUT (at most 8 files of at most 16 MiB): the fp16 weight shards, config.json, the shard
# index, metrics.jsonl and curves.png; then evaluate the final weights on the IIIT5K benchmark when it is present.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT="${OUT:-${1:-}}"
[ -n "$OUT" ] || { echo "usage: OUT=folder bash recipes/gpu/collect.sh"; exit 2; }
mkdir -p "$OUT"
FINAL="$RUN_DIR/final"
[ -f "$FINAL/config.json" ] || { echo "no final weights in $FINAL (has training finished?)"; exit 1; }
cp "$FINAL"/config.json "$FINAL"/*.safetensors "$OUT"/
[ -f "$FINAL/model.safetensors.index.json" ] && cp "$FINAL/model.safetensors.index.json" "$OUT"/
cp "$RUN_DIR/metrics.jsonl" "$RUN_DIR/curves.png" "$OUT"/
n=$(find "$OUT" -maxdepth 1 -type f | wc -l)
big=$(find "$OUT" -maxdepth 1 -type f -size +16M | wc -l)
ls -l "$OUT"
echo "[collect] $n files in $OUT ($big over 16 MiB)"
[ "$n" -le 8 ] && [ "$big" -eq 0 ] || echo "[collect] WARNING: the device tool returns at most 8 files of 16 MiB"
bench=$(benchmark_set)
if [ -n "$bench" ]; then
    "$PY" -m str_distill.cli eval --model "$FINAL" --data "$bench" --device "$DEVICE" --batch-size 256 \
        --failures "$RUN_DIR/failures.tsv" --json "$RUN_DIR/eval_iiit5k.json"
fi
grep '"type": "bad_samples"' "$RUN_DIR/metrics.jsonl" | tail -n 1 | cut -c1-600 || true
