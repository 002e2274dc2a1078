#!/usr/bin/env bash
# Run HERE, on the development machine, before a GPU session (the GPU machine never sees ../shared/data):
# pack the real training sets (IIIT5K_train, SVT_train, IC15_train; never the IIIT5K benchmark) into
# $REAL_DIR/{train,val} (default .carry/real, git-ignored) and the IIIT5K benchmark into $BENCH_DIR/IIIT5K (default
# .carry/bench/IIIT5K: evaluated on the device for the report, never trained on), then print what would travel.
#   bash recipes/gpu/prepare_real.sh [extra `str-distill data pack` arguments, e.g. --max-height 32 --quality 75]
# Then name ".carry/real", ".carry/bench" (and ".synth_pack") in the `run` call's carry; the scripts find them.
set -euo pipefail
source "$(dirname "$0")/common.sh"
sets=()
for root in shared/data ../shared/data; do
    for s in IIIT5K_train SVT_train IC15_train; do
        [ -f "$root/$s/labels.tsv" ] && sets+=("$root/$s")
    done
    [ ${#sets[@]} -gt 0 ] && break
done
[ ${#sets[@]} -gt 0 ] || { echo "no IIIT5K_train/SVT_train/IC15_train under shared/data or ../shared/data"; exit 1; }
"$PY" -m str_distill.cli data pack "${sets[@]}" -o "$REAL_DIR" --val-split 0.05 --seed 0 --force "$@"
bench=$(benchmark_set)
if [ -n "$bench" ]; then
    "$PY" -m str_distill.cli data pack "$bench" -o "$BENCH_DIR/IIIT5K" --force "$@"
fi

# What travels: the working tree plus the carried folders (sum of file sizes).
carried=("$REAL_DIR")
[ -d .synth_pack ] && carried=(.synth_pack "${carried[@]}")
[ -d "$BENCH_DIR" ] && carried+=("$BENCH_DIR")
bash recipes/gpu/travel.sh "${carried[@]}"
