#!/usr/bin/env bash
# A whole GPU session's plan in ONE background process: measure, train the arms, evaluate them, choose, export.
#
#   bash recipes/gpu/session.sh start      # returns at once (setsid); then recipes/gpu/wait.sh, recipes/gpu/collect.sh
#   bash recipes/gpu/session.sh run        # the same in the foreground (what `start` runs)
#
# PLAN (environment):
#   ablation  (default) arm "scratch": ARM_MIN minutes of supervised training from random weights;
#             arm "ccd": PRE_MIN minutes of CCD pretraining, then ARM_MIN - PRE_MIN minutes of the same supervised
#             training from the teacher's encoder. Equal GPU time, same data, lr, batch and seed. The arm with the
#             better validation accuracy (36-character protocol, attention) becomes $RUN_DIR/final: it is what
#             ships, and report.json says which arm it was and why (issue 4 item 8 and issue 5 in one session).
#   scratch   the scratch arm alone.
#   continue  one arm "continue": ARM_MIN minutes starting from INIT_WEIGHTS (default: the shipped `siga-vit-s`),
#             with a fresh optimizer and schedule. Each GPU session adds to the last.
# BENCH=1 first runs benchmark.sh (training images/s with data, data images/s, resident-batch images/s, GPU
# utilization); without a working torch.compile the arms run eagerly, and when the data cannot feed the GPU
# (training with data < 0.8 x the resident-batch rate) the arms train with REUSE = that ratio rounded, 2 to 3
# (each batch used REUSE times, the repeats augmented on the GPU) unless the caller set REUSE.
# Every stage is evaluated on the packed validation split ($REAL_DIR/val) and, when present, the packed IIIT5K
# copy ($BENCH_DIR, report only) under both protocols and both decodings; report.json gathers it all.
set -uo pipefail
REUSE_GIVEN="${REUSE_GIVEN-${REUSE+set}}"  # REUSE given by the caller: keep it whatever the benchmark says
export REUSE_GIVEN
if [ "${PLAN:-}" = continue ] && [ -z "${LR:-}" ]; then
    export LR=5e-4  # restarting from trained weights: half the from-scratch peak
fi
source "$(dirname "$0")/common.sh"
PLAN="${PLAN:-ablation}"
ARM_MIN="${ARM_MIN:-8}"
PRE_MIN="${PRE_MIN:-3}"
PRE_BATCH="${PRE_BATCH:-256}"
BENCH="${BENCH:-1}"
DEADLINE_MIN="${DEADLINE_MIN:-24}"      # an arm that would end later than this (minutes from the start) is skipped
EVAL_ARGS="${EVAL_ARGS:-}"              # extra `str-distill eval` arguments, e.g. "--max-samples 300" (CPU smoke runs)
SESSION_DIR="$RUN_DIR"

case "${1:-}" in
start)
    mkdir -p "$SESSION_DIR"
    if [ -f "$SESSION_DIR/train.pid" ] && kill -0 "$(cat "$SESSION_DIR/train.pid")" 2>/dev/null; then
        echo "a run is already going (pid $(cat "$SESSION_DIR/train.pid")); see recipes/gpu/wait.sh"
        exit 1
    fi
    rm -f "$SESSION_DIR/DONE"
    setsid nohup bash "$0" run >>"$SESSION_DIR/train.log" 2>&1 </dev/null &
    echo $! >"$SESSION_DIR/train.pid"
    echo "session ($PLAN) started: pid $(cat "$SESSION_DIR/train.pid"); log: $SESSION_DIR/train.log"
    exit 0 ;;
run) ;;
*) echo "usage: bash recipes/gpu/session.sh start|run   (settings: see the header of this file)"; exit 2 ;;
esac

stage() { echo "== $(date +%T) [session] $*"; }
SD=("$PY" -m str_distill.cli)
case "$PLAN" in
ablation) ARMS=(scratch ccd) ;;
scratch) ARMS=(scratch) ;;
continue) ARMS=(continue); INIT_WEIGHTS="${INIT_WEIGHTS:-siga-vit-s}" ;;
*) stage "unknown PLAN=$PLAN (ablation, scratch or continue)"; exit 2 ;;
esac
stage "plan $PLAN: arms ${ARMS[*]}, $ARM_MIN min each (ccd: $PRE_MIN of them pretraining); bench $BENCH"
"$PY" - <<'EOF'
import torch
print("torch", torch.__version__, "| device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
      flush=True)
EOF

# ---- 0. the machine: cores, memory, shared memory (DataLoader workers hand batches over through /dev/shm)
cores=$(nproc)
[ -n "$WORKERS" ] || WORKERS=$((cores > 2 ? cores - 2 : 0))
shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
# uint8 batches of BATCH x 3 x 32 x 128 bytes live in /dev/shm, up to 2 in flight per worker (prefetch 2)
batch_kb=$(( BATCH * 3 * 32 * 128 / 1024 ))
need_kb=$(( WORKERS * 2 * batch_kb ))
stage "machine: $cores cores, $(free -g 2>/dev/null | awk '/^Mem/ { print $2 }') GiB RAM, /dev/shm ${shm_kb:-?} KiB free" \
      "(batches need ~$need_kb KiB with $WORKERS workers)"
short() { [ -n "$shm_kb" ] && [ "$need_kb" -gt 0 ] && [ $((4 * shm_kb)) -lt $((5 * need_kb)) ]; }  # < 1.25 x need
if short && [ "$(id -u)" = 0 ]; then
    # a container-sized /dev/shm (e.g. 64 MiB) on a machine of our own for the session: enlarge the tmpfs
    mount -o remount,size=$((4 * need_kb))k /dev/shm 2>/dev/null \
        && stage "/dev/shm enlarged to $((4 * need_kb)) KiB" \
        && shm_kb=$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')
fi
if short; then
    WORKERS=$(( 4 * shm_kb / (5 * 2 * batch_kb) ))
    [ "$WORKERS" -ge 1 ] || WORKERS=1
    stage "small /dev/shm: WORKERS lowered to $WORKERS"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv,noheader
export WORKERS

# ---- 1. measure
if [ "$BENCH" = 1 ]; then
    stage "benchmark (compile: ${COMPILE:-off})"
    # a benchmark that hangs (a compile gone wrong) must not eat the session: at most BENCH_TIMEOUT seconds
    if ! BENCH_RUN_DIR="$SESSION_DIR/bench" timeout "${BENCH_TIMEOUT:-300}" bash recipes/gpu/benchmark.sh; then
        if [ -n "$COMPILE" ]; then
            stage "benchmark failed with $COMPILE: measuring eagerly, and the arms run eagerly"
            COMPILE=""
            BENCH_RUN_DIR="$SESSION_DIR/bench-eager" COMPILE="" timeout "${BENCH_TIMEOUT:-300}" \
                bash recipes/gpu/benchmark.sh || stage "benchmark failed again"
        fi
    fi
    if [ -z "$REUSE_GIVEN" ]; then
        REUSE=$("$PY" - "$SESSION_DIR" <<'EOF'
import json, pathlib, sys
rec = None
for f in sorted(pathlib.Path(sys.argv[1]).glob("bench*/metrics.jsonl")):
    for line in f.read_text().splitlines():
        if '"benchmark"' in line:
            rec = json.loads(line)
if rec is None:
    print(1)
else:
    ratio = rec["model_images_per_s"] / max(rec["train_images_per_s"], 1e-9)
    # data-bound: echo each batch (repeats augmented on the GPU) about as often as the GPU could go faster, <= 3
    print(1 if ratio < 1.25 else min(3, max(2, round(ratio))))
EOF
)
        stage "REUSE=$REUSE chosen from the benchmark"
    fi
fi
export COMPILE REUSE

# ---- 2. the arms
eval_arm() {  # eval_arm NAME WEIGHTS: both protocols x both decodings on val (and the packed IIIT5K copy)
    local name=$1 weights=$2 sets=() p d
    [ -f "$REAL_DIR/val/labels.tsv" ] && sets+=("$REAL_DIR/val")
    [ -n "$(bench_copy)" ] && sets+=("$(bench_copy)")
    [ ${#sets[@]} -gt 0 ] || return 0
    # shellcheck disable=SC2086
    for p in 36 94; do
        for d in attention ctc; do
            "${SD[@]}" eval --model "$weights" --data "${sets[@]}" --protocol "$p" --decoding "$d" \
                --device "$DEVICE" --batch-size 256 --no-progress --json "$SESSION_DIR/$name/eval_${p}_${d}.json" \
                --failures "$SESSION_DIR/$name/failures_${p}_${d}.tsv" $EVAL_ARGS | tail -n 4
        done
    done
}

pictures() {  # pictures ARM: per-character attention of the arm's recognizer (and the CCD teacher's masks/regions)
    local arm=$1 src imgs=()
    for src in "$REAL_DIR/val" "$(bench_copy)"; do
        [ -f "$src/labels.tsv" ] && mapfile -t imgs < <(head -n 4 "$src/labels.tsv" | cut -f1 | sed "s|^|$src/|")
        [ ${#imgs[@]} -gt 0 ] && break
    done
    [ ${#imgs[@]} -gt 0 ] || return 0
    "${SD[@]}" visualize --model "$SESSION_DIR/$arm/final" -o "$SESSION_DIR/pictures/$arm" "${imgs[@]}" >/dev/null \
        || stage "pictures of $arm failed"
    if [ -d "$SESSION_DIR/${arm}_pretrain" ]; then
        "${SD[@]}" visualize --model "$SESSION_DIR/${arm}_pretrain" -o "$SESSION_DIR/pictures/${arm}_pretrain" \
            "${imgs[@]}" >/dev/null || stage "pictures of ${arm}_pretrain failed"
    fi
}

train_arm() {  # train_arm NAME MINUTES [extra train args...]
    local name=$1 minutes=$2
    shift 2
    RUN_DIR="$SESSION_DIR/$name" train_args
    ARGS+=(--minutes "$minutes" "$@")
    echo "$PY -m str_distill.cli ${ARGS[*]}" >"$SESSION_DIR/$name.command.txt"
    "$PY" -m str_distill.cli "${ARGS[@]}"
}

ok_arms=()
for arm in "${ARMS[@]}"; do
    # an arm takes ARM_MIN of training plus ~2.5 min (start-up, compile, export, evaluations, pictures)
    if [ ${#ok_arms[@]} -gt 0 ] && awk -v e="$SECONDS" -v a="$ARM_MIN" -v d="$DEADLINE_MIN" \
            'BEGIN { exit !(e / 60 + a + 2.5 > d) }'; then
        stage "arm $arm SKIPPED: $((SECONDS / 60)) min gone, it would end after DEADLINE_MIN=$DEADLINE_MIN"
        continue
    fi
    case $arm in
    scratch)
        stage "arm scratch: $ARM_MIN min of supervised training from random weights"
        train_arm scratch "$ARM_MIN" ;;
    continue)
        stage "arm continue: $ARM_MIN min from $INIT_WEIGHTS"
        train_arm continue "$ARM_MIN" --init "$INIT_WEIGHTS" ;;
    ccd)
        stage "arm ccd: $PRE_MIN min of CCD pretraining"
        real_data
        pre_data=(synth:0.7)
        [ -f "$REAL_DIR/train/labels.tsv" ] && pre_data=(synth:0.5 "$REAL_DIR/train:0.5")
        W=()
        [ -n "$WORKERS" ] && W=(--workers "$WORKERS")
        # shellcheck disable=SC2086
        "${SD[@]}" pretrain --method ccd --model "$MODEL" $MODEL_ARGS --data "${pre_data[@]}" --minutes "$PRE_MIN" \
            --batch-size "$PRE_BATCH" --device "$DEVICE" --log-every 50 --seed "$SEED" "${W[@]}" \
            -o "$SESSION_DIR/ccd_pretrain" \
            && { ft=$("$PY" -c "print(max(0.1, $ARM_MIN - $PRE_MIN))")
                 stage "arm ccd: $ft min of supervised training from the CCD teacher's encoder"
                 train_arm ccd "$ft" --init "$SESSION_DIR/ccd_pretrain"; } ;;
    esac
    rc=$?
    if [ $rc -eq 0 ] && [ -f "$SESSION_DIR/$arm/final/config.json" ]; then
        ok_arms+=("$arm")
        stage "evaluating arm $arm"
        eval_arm "$arm" "$SESSION_DIR/$arm/final"
        pictures "$arm"
    else
        stage "arm $arm FAILED (exit $rc)"
    fi
done

# ---- 3. choose, report, export
if [ ${#ok_arms[@]} -eq 0 ]; then
    stage "no arm finished: nothing to ship"
    exit 1
fi
stage "choosing among ${ok_arms[*]}"
"$PY" recipes/gpu/report.py "$SESSION_DIR" --plan "$PLAN" --arm-minutes "$ARM_MIN" --pretrain-minutes "$PRE_MIN" \
    --arms "${ok_arms[@]}" || { stage "report failed"; exit 1; }
touch "$SESSION_DIR/DONE"
stage "done: $(cat "$SESSION_DIR/chosen.txt") is in $SESSION_DIR/final; collect with recipes/gpu/collect.sh"
