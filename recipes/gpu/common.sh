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
REAL_WEIGHT="${REAL_WEIGHT:-0.1}"         # share of real samples when real folders are present
COMPILE="${COMPILE---compile}"            # set COMPILE= (empty) to run eagerly
EMA="${EMA:-0.999}"
VAL_EVERY="${VAL_EVERY:-2000}"
SHARD_MB="${SHARD_MB:-15.5}"              # fp16 ViT-S = 57.4 MiB -> 4 shards of <= 15.5 MiB (device tool: 16 MiB/file)
INIT_WEIGHTS="${INIT_WEIGHTS:-}"          # previously shipped weights (a save_pretrained folder) to continue from

# Real training folders, if this copy has them (never the IIIT5K benchmark itself).
real_specs() {
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

benchmark_set() {  # the development benchmark, for the final report only
    local root
    for root in shared/data ../shared/data; do
        [ -f "$root/IIIT5K/labels.tsv" ] && { echo "$root/IIIT5K"; return; }
    done
}

train_args() {  # the common `str-distill train` arguments of the recipe
    local real synth_w
    mapfile -t real < <(real_specs)
    synth_w=1
    [ ${#real[@]} -gt 0 ] && synth_w=$(awk -v w="$REAL_WEIGHT" 'BEGIN { printf "%.5f", 1 - w }')
    ARGS=(train --model "$MODEL" $MODEL_ARGS --charset "$CHARSET" --data "synth:$synth_w" "${real[@]}"
          --batch-size "$BATCH" --lr "$LR" --schedule cosine --warmup 0.05 --weight-decay 0.05 --clip-grad 3
          --label-smoothing 0.1 --ema "$EMA" --reuse "$REUSE" $COMPILE --device "$DEVICE"
          --val-synth 1000 --val-every "$VAL_EVERY" --val-max-samples 2000 --log-every 100 --save-minutes 4
          --save-dtype float16 --max-shard-mb "$SHARD_MB" --progress log -o "$RUN_DIR")
    [ ${#real[@]} -gt 0 ] && ARGS+=(--val-split 0.05)
    [ -n "$WORKERS" ] && ARGS+=(--workers "$WORKERS")
    return 0
}
