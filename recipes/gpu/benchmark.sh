#!/usr/bin/env bash
# Measure before training: data images/s alone, training images/s with data, on a resident batch, GPU utilization.
#   bash recipes/gpu/benchmark.sh [extra `str-distill train` arguments, e.g. --batch-size 384]
# Writes nothing but $BENCH_RUN_DIR (default $RUN_DIR-bench/, a throw-away run folder; its metrics.jsonl keeps the figures).
set -euo pipefail
source "$(dirname "$0")/common.sh"
RUN_DIR="${BENCH_RUN_DIR:-$RUN_DIR-bench}"
train_args
"$PY" -m str_distill.cli "${ARGS[@]}" --steps 100 --benchmark --benchmark-steps "${BENCH_STEPS:-40}" "$@"
