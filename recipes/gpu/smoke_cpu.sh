#!/usr/bin/env bash
# The recipe's CPU path end to end with a tiny model and a 1-minute budget (no GPU needed):
# start in the background -> wait -> collect into $OUT (default /tmp/str-distill-smoke-out).
set -euo pipefail
export RUN_DIR="${RUN_DIR:-runs/smoke-cpu}" DEVICE=cpu COMPILE= BATCH="${BATCH:-32}" LR=2e-3 EMA=0.99 WORKERS="${WORKERS:-1}"
export VAL_EVERY=50 SHARD_MB=0.25
export MODEL_ARGS="--model-arg depth=2 --model-arg embed_dim=64 --model-arg num_heads=2 --model-arg dec_dim=64 \
--model-arg dec_heads=2 --model-arg dec_depth=1"
OUT="${OUT:-/tmp/str-distill-smoke-out}"
here="$(dirname "$0")"
rm -rf "$RUN_DIR" "$OUT"
bash "$here/start.sh" "${1:-1}" --val-max-samples 200
bash "$here/wait.sh" 600
OUT="$OUT" bash "$here/collect.sh"
