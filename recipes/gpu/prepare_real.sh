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

# What travels: tracked + untracked-not-ignored files, plus the carried folders (sum of file sizes).
sum_bytes() { find "$@" -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
code=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null \
       | awk '{ s += $1 } END { print s + 0 }')
pack=0
[ -d .synth_pack ] && pack=$(sum_bytes .synth_pack)
real=$(sum_bytes "$REAL_DIR")
bb=$(sum_bytes "$BENCH_DIR")
awk -v c="$code" -v p="$pack" -v r="$real" -v d="$REAL_DIR" -v b="$bb" -v bd="$BENCH_DIR" 'BEGIN {
    m = 1048576; t = c + p + r + b
    printf "travel budget (sum of file sizes):\n"
    printf "  %-28s %7.2f MiB\n  %-28s %7.2f MiB\n  %-28s %7.2f MiB\n", "code (git tree)", c / m, ".synth_pack", p / m, d, r / m
    printf "  %-28s %7.2f MiB\n", bd, b / m
    printf "  %-28s %7.2f MiB of 64 (%.2f MiB left)\n", "total", t / m, 64 - t / m
    if (t > 64 * m) { print "  OVER the device tool'"'"'s 64 MiB: build a smaller pack (see recipes/gpu/README.md)"; exit 1 }
}'
