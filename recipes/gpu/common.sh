# Shared settings of the GPU recipe; sourced by the other scripts (run them from anywhere).
# Every value can be overridden from the environment, e.g. `BATCH=384 bash recipes/gpu/start.sh 20`.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PY="${PY:-python3}"
RUN_DIR="${RUN_DIR:-runs/gpu}"            # the run folder (checkpoint/, final/, metrics.jsonl, curves.png, train.log)
MODEL="${MODEL:-siga-vit-s}"
MODEL_ARGS="${MODEL_ARGS:-}"              # e.g. "--model-arg depth=2 --model-arg embed_dim=64" (tiny smoke runs)
CHARSET="${CHARSET:-94}"
BATCH="${BATCH:-512}"
LR="${LR:-1e-3}"
WORKERS="${WORKERS:-}"                    # default: CPU cores - 2
DEVICE="${DEVICE:-auto}"
REUSE="${REUSE:-1}"                       # >1 if the benchmark shows the CPUs cannot feed the GPU
REAL_WEIGHT="${REAL_WEIGHT:-0.1}"         # share of real samples when real data is present
REAL_DIR="${REAL_DIR:-.carry/real}"       # packed real data, built here by prepare_real.sh (carry it: ".carry/real")
COMPILE="${COMPILE---compile}"            # set COMPILE= (empty) to run eagerly
EMA="${EMA:-0.999}"
SEED="${SEED:-0}"                         # data stream, initialization and augmentation seed
VAL_EVERY="${VAL_EVERY:-2000}"
SHARD_MB="${SHARD_MB:-15.5}"              # fp16 ViT-S = 57.4 MiB -> 4 shards of <= 15.5 MiB (device tool: 16 MiB/file)
INIT_WEIGHTS="${INIT_WEIGHTS:-}"          # previously shipped weights (a name or save_pretrained folder) to continue from
BENCH_DIR="${BENCH_DIR:-.carry/bench}"    # packed copy of the IIIT5K benchmark (prepare_real.sh): report only

# Real training folders of shared/data, if this copy has them (never the IIIT5K benchmark itself).
shared_specs() {
    local root sets=() n total=0 counts=()
    for root in shared/data ../shared/data; do
        [ -d "$root" ] || continue
        for s in IIIT5K_train SVT_train IC15_train; do
            if [ -f "$root/$s/labels.tsv" ]; then
                n=$(grep -c . "$root/$s/labels.tsv")
                sets+=("$root/$s"); counts+=("$n"); total=$((total + n))
            fi
        done
        [ ${#sets[@]} -gt 0 ] && break
    done
    local i
    for i in "${!sets[@]}"; do  # weight proportional to size, REAL_WEIGHT in total
        awk -v p="${sets[$i]}" -v n="${counts[$i]}" -v t="$total" -v w="$REAL_WEIGHT" \
            'BEGIN { printf "%s:%.5f\n", p, w * n / t }'
    done
}

# Real data -> REAL_SPECS (--data entries) and VAL_ARGS, first match wins:
#  1. the pack $REAL_DIR/train (+ $REAL_DIR/val as the validation set) that prepare_real.sh built and carry brought;
#     its samples are drawn uniformly, i.e. each set in proportion to its size;
#  2. a pack without split ($REAL_DIR/labels.tsv): 5 % carved out for validation;
#  3. the training folders of shared/data (a copy that has them): 5 % carved out of each for validation;
#  4. none: synthetic-only (validation on the fixed synthetic words alone).
real_data() {
    REAL_SPECS=(); VAL_ARGS=()
    if [ -f "$REAL_DIR/train/labels.tsv" ]; then
        REAL_SPECS=("$REAL_DIR/train:$REAL_WEIGHT")
        if [ -f "$REAL_DIR/val/labels.tsv" ]; then VAL_ARGS=(--val-data "$REAL_DIR/val"); else VAL_ARGS=(--val-split 0.05); fi
    elif [ -f "$REAL_DIR/labels.tsv" ]; then
        REAL_SPECS=("$REAL_DIR:$REAL_WEIGHT"); VAL_ARGS=(--val-split 0.05)
    else
        mapfile -t REAL_SPECS < <(shared_specs)
        if [ ${#REAL_SPECS[@]} -gt 0 ]; then VAL_ARGS=(--val-split 0.05); fi
    fi
    return 0
}

bench_copy() {  # the packed IIIT5K copy that travelled (evaluation only, never trained on), or nothing
    [ -f "$BENCH_DIR/IIIT5K/labels.tsv" ] && echo "$BENCH_DIR/IIIT5K"
    return 0
}

benchmark_set() {  # the development benchmark (original images), for the final report only
    local root
    for root in shared/data ../shared/data; do
        [ -f "$root/IIIT5K/labels.tsv" ] && { echo "$root/IIIT5K"; return 0; }
    done
    return 0  # none (the GPU machine): callers test for an empty answer; `set -e` scripts must not stop here
}

train_args() {  # the common `str-distill train` arguments of the recipe
    local synth_w
    real_data
    synth_w=1
    [ ${#REAL_SPECS[@]} -gt 0 ] && synth_w=$(awk -v w="$REAL_WEIGHT" 'BEGIN { printf "%.5f", 1 - w }')
    ARGS=(train --model "$MODEL" $MODEL_ARGS --charset "$CHARSET" --data "synth:$synth_w" "${REAL_SPECS[@]}"
          --batch-size "$BATCH" --lr "$LR" --schedule cosine --warmup 0.05 --weight-decay 0.05 --clip-grad 3
          --label-smoothing 0.1 --ema "$EMA" --reuse "$REUSE" $COMPILE --device "$DEVICE"
          --val-synth 1000 --val-every "$VAL_EVERY" --val-max-samples 2000 --log-every 100 --save-minutes 4
          --save-dtype float16 --max-shard-mb "$SHARD_MB" --progress log --seed "$SEED" -o "$RUN_DIR")
    ARGS+=("${VAL_ARGS[@]}")
    [ -n "$WORKERS" ] && ARGS+=(--workers "$WORKERS")
    return 0
}
