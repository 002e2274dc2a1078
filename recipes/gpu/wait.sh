#!/usr/bin/env bash
# Follow the background run for up to SECONDS (default 560, under the device tool's 10-minute command limit).
# Follows start.sh's training run or session.sh's whole session (same pid file and log).
# Prints the new log lines every 30 s; exits 0 when training finished, 3 when still running, 1 if it failed.
set -uo pipefail
source "$(dirname "$0")/common.sh"
SECONDS_MAX="${1:-560}"
LOG="$RUN_DIR/train.log"
PIDF="$RUN_DIR/train.pid"
[ -f "$PIDF" ] || { echo "no run started in $RUN_DIR"; exit 1; }
pid=$(cat "$PIDF")
start=$(date +%s)
shown=0
show() {
    local n
    n=$(wc -l <"$LOG" 2>/dev/null || echo 0)
    if [ "$n" -gt "$shown" ]; then
        tail -n +"$((shown + 1))" "$LOG" | grep -v '^\s*$' | tail -n 40
        shown=$n
    fi
}
while kill -0 "$pid" 2>/dev/null; do
    show
    if [ $(( $(date +%s) - start )) -ge "$SECONDS_MAX" ]; then
        echo "[wait] still running after ${SECONDS_MAX}s (pid $pid): call wait.sh again right away"
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
        exit 3
    fi
    sleep 30
done
show
if [ -f "$RUN_DIR/DONE" ] || { grep -q '"type": "summary"' "$RUN_DIR/metrics.jsonl" 2>/dev/null && grep -q '^done:' "$LOG"; }; then
    echo "[wait] training finished"
    exit 0
fi
echo "[wait] training process ended without finishing; last lines:"
tail -n 30 "$LOG"
exit 1
