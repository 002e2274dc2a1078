#!/usr/bin/env bash
# session.sh's CPU path end to end with a tiny model (no GPU needed, ~4 minutes on 2 cores): benchmark, the two
# ablation arms (20 s of training each; the ccd arm pretrains 10 s of it), evaluation, choice, then collect.sh into
# $OUT (default /tmp/str-distill-session-out), and ship.py into a scratch manifest and weights folder under
# $OUT-ship (never the package's own; 50 samples per evaluation).
set -euo pipefail
export RUN_DIR="${RUN_DIR:-runs/smoke-session}" DEVICE=cpu COMPILE= BATCH="${BATCH:-32}" LR=2e-3 EMA=0.99
export WORKERS="${WORKERS:-1}" VAL_EVERY=50 SHARD_MB=0.25 PRE_BATCH=16 BENCH_STEPS=5 EVAL_ARGS="--max-samples 100"
export PLAN="${PLAN:-ablation}" ARM_MIN="${ARM_MIN:-0.34}" PRE_MIN="${PRE_MIN:-0.17}"
export MODEL_ARGS="--model-arg depth=2 --model-arg embed_dim=64 --model-arg num_heads=2 --model-arg dec_dim=64 \
--model-arg dec_heads=2 --model-arg dec_depth=1"
OUT="${OUT:-/tmp/str-distill-session-out}"
here="$(dirname "$0")"
rm -rf "$RUN_DIR" "$OUT"
bash "$here/session.sh" start
bash "$here/wait.sh" 900
OUT="$OUT" bash "$here/collect.sh"
S="$OUT-ship"
rm -rf "$S"
python3 "$here/ship.py" "$OUT" --allow-any-arch --allow-missing-data --max-samples 50 --work "$S/work" --manifest "$S/manifest.json" \
    --bundle-dir "$S/weights" --golden "$S/golden.json"
