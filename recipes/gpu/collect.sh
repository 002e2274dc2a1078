#!/usr/bin/env bash
# Copy the deliverables to $OUT for the device tool (at most 8 files of at most 16 MiB): the fp16 weight shards of
# $RUN_DIR/final as they are, plus bundle.tar.gz with everything else that is small (config.json, the shard index,
# metrics.jsonl, curves.png, logs, bad samples, evaluations and failures, report.json of a session: every file of
# the run folder except weights, checkpoints and optimizer state). ship.py reads exactly this layout.
# Where the original IIIT5K folder exists (not on the GPU machine) it first evaluates the final weights on it
# (EVAL_IIIT5K=0 skips that).
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT="${OUT:-${1:-}}"
[ -n "$OUT" ] || { echo "usage: OUT=folder bash recipes/gpu/collect.sh"; exit 2; }
mkdir -p "$OUT"
FINAL="$RUN_DIR/final"
if [ ! -f "$FINAL/config.json" ]; then  # a session cut short: ship the first arm that finished, say so
    for arm in scratch continue ccd; do
        if [ -f "$RUN_DIR/$arm/final/config.json" ]; then
            echo "[collect] WARNING: the session did not finish; collecting arm $arm, the first that did"
            cp -r "$RUN_DIR/$arm/final" "$FINAL"
            echo "$arm (session unfinished)" >"$RUN_DIR/chosen.txt"
            break
        fi
    done
fi
[ -f "$FINAL/config.json" ] || { echo "no final weights in $FINAL (has training finished?)"; exit 1; }
bench=$(benchmark_set)
if [ -n "$bench" ] && [ "${EVAL_IIIT5K:-1}" = 1 ]; then
    "$PY" -m str_distill.cli eval --model "$FINAL" --data "$bench" --device "$DEVICE" --batch-size 256 \
        --failures "$RUN_DIR/failures.tsv" --json "$RUN_DIR/eval_iiit5k.json" --no-progress
fi
cp "$FINAL"/*.safetensors "$OUT"/
tar --exclude='*.safetensors' --exclude='checkpoint' --exclude='*.pt' --exclude='train.pid' \
    -czf "$OUT/bundle.tar.gz" -C "$RUN_DIR" .
n=$(find "$OUT" -maxdepth 1 -type f | wc -l)
big=$(find "$OUT" -maxdepth 1 -type f -size +16M | wc -l)
ls -l "$OUT"
echo "[collect] $n files in $OUT ($big over 16 MiB)"
[ "$n" -le 8 ] && [ "$big" -eq 0 ] || { echo "[collect] ERROR: the device tool returns at most 8 files of 16 MiB"; exit 1; }
[ -f "$RUN_DIR/report.json" ] && "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print('[collect] chosen arm:', r['choice'])" "$RUN_DIR/report.json"
grep '"type": "bad_samples"' "$RUN_DIR/metrics.jsonl" 2>/dev/null | tail -n 1 | cut -c1-600 || true
