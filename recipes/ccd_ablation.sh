#!/usr/bin/env bash
# Does CCD pretraining pay off at equal GPU time?
#   arm A (scratch): fine-tune a random siga-vit-s for TOTAL_MIN minutes;
#   arm B (ccd):     CCD-pretrain its encoder for PRE_MIN minutes on unlabeled images, then fine-tune from the
#                    teacher's encoder for TOTAL_MIN - PRE_MIN minutes, with the same data, lr and batch size.
# Both budgets count training-loop time only (`--minutes` of pretrain and train); both arms are evaluated on IIIT5K
# (the development benchmark, never trained on).
#
# Usage: recipes/ccd_ablation.sh [all|scratch|pretrain|finetune|eval]
# Environment: MODEL, MODEL_ARGS, PRE_ARGS, EVAL_ARGS, WORKERS, TOTAL_MIN, PRE_MIN, BATCH, PRE_BATCH, FT_LR, SEED,
# OUT, DATA, PRE_DATA, FT_DATA, SD (the CLI; default `python -m str_distill.cli`).
# With the defaults (TOTAL_MIN=8, PRE_MIN=4) each stage fits in one 10-minute device call (~20 minutes of device time
# in all): run the stages one by one there, or `all` on a machine without that limit. Repeat with SEED=1, 2 ... before
# trusting a small difference. Longer budgets (e.g. TOTAL_MIN=60 PRE_MIN=20) answer the question better.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-../shared/data}
[ -d "$DATA" ] || DATA=shared/data
MODEL=${MODEL:-siga-vit-s}
TOTAL_MIN=${TOTAL_MIN:-8}
PRE_MIN=${PRE_MIN:-4}
FT_MIN=$(python -c "print($TOTAL_MIN - $PRE_MIN)")
BATCH=${BATCH:-256}
PRE_BATCH=${PRE_BATCH:-128}
FT_LR=${FT_LR:-5e-4}
SEED=${SEED:-0}
OUT=${OUT:-runs/ccd_ablation/seed$SEED}
# labels of the real training sets are ignored by `pretrain`; IIIT5K (the benchmark) is in neither mix
PRE_DATA=${PRE_DATA:-"synth:0.5 $DATA/IIIT5K_train:0.2 $DATA/IC15_train:0.2 $DATA/SVT_train:0.1"}
FT_DATA=${FT_DATA:-"synth:0.5 $DATA/IIIT5K_train:0.25 $DATA/IC15_train:0.2 $DATA/SVT_train:0.05"}
MODEL_ARGS=${MODEL_ARGS:-}  # e.g. "--model-arg depth=4" for a toy run
EVAL_ARGS=${EVAL_ARGS:-}    # e.g. "--max-samples 500"
PRE_ARGS=${PRE_ARGS:-}      # extra `pretrain` options, e.g. "--out-dim 4096 --momentum 0.99"
WORKERS=${WORKERS:-}        # default: CPU cores - 2
SD=${SD:-"python -m str_distill.cli"}
STAGE=${1:-all}

run() { echo "+ $*" >&2; "$@"; }
mkdir -p "$OUT"
python -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" \
  | tee -a "$OUT/device.txt"

W=()
[ -n "$WORKERS" ] && W=(--workers "$WORKERS")

if [[ $STAGE == all || $STAGE == scratch ]]; then
  # shellcheck disable=SC2086
  run $SD train --model "$MODEL" $MODEL_ARGS --data $FT_DATA --minutes "$TOTAL_MIN" --batch-size "$BATCH" \
    --lr "$FT_LR" --seed "$SEED" --val-every 0 "${W[@]}" -o "$OUT/scratch"
fi
if [[ $STAGE == all || $STAGE == pretrain ]]; then
  # shellcheck disable=SC2086
  run $SD pretrain --method ccd --model "$MODEL" $MODEL_ARGS --data $PRE_DATA --minutes "$PRE_MIN" \
    --batch-size "$PRE_BATCH" --seed "$SEED" "${W[@]}" $PRE_ARGS --out "$OUT/ccd_pretrain"
fi
if [[ $STAGE == all || $STAGE == finetune ]]; then
  # shellcheck disable=SC2086
  run $SD train --init "$OUT/ccd_pretrain" --data $FT_DATA --minutes "$FT_MIN" --batch-size "$BATCH" \
    --lr "$FT_LR" --seed "$SEED" --val-every 0 "${W[@]}" -o "$OUT/ccd_finetune"
fi
if [[ $STAGE == all || $STAGE == eval ]]; then
  for arm in scratch ccd_finetune; do
    run $SD eval --model "$OUT/$arm/final" --data "$DATA/IIIT5K" --json "$OUT/$arm.iiit5k.json" \
      --failures "$OUT/$arm.failures.tsv" $EVAL_ARGS
  done
  # pictures: CCD masks and regions of the pretrained teacher, attention of both fine-tuned recognizers
  # shellcheck disable=SC2046
  for m in ccd_pretrain scratch/final ccd_finetune/final; do
    run $SD visualize --model "$OUT/$m" -o "$OUT/pictures/${m%%/*}" $(ls "$DATA"/IIIT5K/images/* | head -n 4)
  done
  echo "pretraining log: $OUT/ccd_pretrain/log.jsonl; results: $OUT/scratch.iiit5k.json vs $OUT/ccd_finetune.iiit5k.json"
fi
