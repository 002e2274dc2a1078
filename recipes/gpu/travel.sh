#!/usr/bin/env bash
# What a device call would send: the working tree (tracked + untracked-not-ignored files) plus the carried paths,
# as the sum of file sizes, against the device tool's 64 MiB. Exit 1 when over.
#   bash recipes/gpu/travel.sh [CARRIED_PATH...]      e.g. .synth_pack .carry/real .carry/bench
set -euo pipefail
cd "$(dirname "$0")/../.."
sum_bytes() { find "$@" -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
# files git tracks but the tree lacks (e.g. weights set aside) do not travel: count only those present
total=$( { git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null || true; } \
        | awk '{ s += $1 } END { print s + 0 }')
printf 'travel (sum of file sizes):\n  %-28s %7.2f MiB\n' "working tree" "$(awk -v b="$total" 'BEGIN { print b / 1048576 }')"
for p in "$@"; do
    b=$(sum_bytes "$p")
    [ -e "$p" ] || echo "  (missing: $p)"
    printf '  %-28s %7.2f MiB\n' "$p" "$(awk -v b="$b" 'BEGIN { print b / 1048576 }')"
    total=$((total + b))
done
awk -v t="$total" 'BEGIN {
    m = 1048576
    printf "  %-28s %7.2f MiB of 64 (%.2f MiB left)\n", "total", t / m, 64 - t / m
    if (t > 64 * m) { print "  OVER the 64 MiB the device tool sends: carry less (recipes/gpu/README.md)"; exit 1 }
}'
