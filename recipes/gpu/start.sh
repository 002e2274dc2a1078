#!/usr/bin/env bash
# Start (or resume) training in the background and return at once; the process survives between device commands.
#   bash recipes/gpu/start.sh [MINUTES=25] [extra `str-distill train` arguments...]
# Resumes exactly from $RUN_DIR/checkpoint when one exists; else starts from $INIT_WEIGHTS when set; else scratch.
set -euo pipefail
source "$(dirname "$0")/common.sh"
MINUTES="${1:-25}"
shift || true
mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR/DONE"
if [ -f "$RUN_DIR/train.pid" ] && kill -0 "$(cat "$RUN_DIR/train.pid")" 2>/dev/null; then
    echo "training is already running (pid $(cat "$RUN_DIR/train.pid")); see recipes/gpu/wait.sh"
    exit 1
fi
train_args
if [ -f "$RUN_DIR/checkpoint/trainer_state.pt" ]; then
    ARGS+=(--resume)
    echo "resuming from $RUN_DIR/checkpoint (the budget counts the minutes already trained)"
elif [ -n "$INIT_WEIGHTS" ]; then
    ARGS+=(--init "$INIT_WEIGHTS")
    echo "starting from $INIT_WEIGHTS"
fi
ARGS+=(--minutes "$MINUTES" "$@")
echo "$PY -m str_distill.cli ${ARGS[*]}" | tee "$RUN_DIR/command.txt"
setsid nohup "$PY" -m str_distill.cli "${ARGS[@]}" >>"$RUN_DIR/train.log" 2>&1 </dev/null &
echo $! >"$RUN_DIR/train.pid"
echo "started pid $(cat "$RUN_DIR/train.pid"); log: $RUN_DIR/train.log"
