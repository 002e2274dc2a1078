#!/usr/bin/env bash
# Once fp16 siga-vit-s weights are bundled (57.4 MiB, tracked), the tree plus the data no longer fit in one device
# call (64 MiB). A continuing session therefore sends the data first with the weights set aside, then the weights
# without the data (the device keeps git-ignored folders between calls of a session):
#   bash recipes/gpu/weights_aside.sh aside   # move str_distill/weights/* to .carry/weights-aside/ (ignored, not carried)
#   ... call 1: carry .synth_pack .carry/real .carry/bench, run the benchmark
#   bash recipes/gpu/weights_aside.sh back    # put them back (also: git checkout -- str_distill/weights)
#   ... call 2: no carry, PLAN=continue bash recipes/gpu/session.sh start
set -euo pipefail
cd "$(dirname "$0")/../.."
W=str_distill/weights
A=.carry/weights-aside
case "${1:-}" in
aside)
    mkdir -p "$A"
    shopt -s nullglob
    files=("$W"/*.safetensors "$W"/*.json)
    [ ${#files[@]} -gt 0 ] || { echo "no bundled weight files in $W"; exit 0; }
    mv "${files[@]}" "$A"/
    echo "moved ${#files[@]} files to $A; put them back with: bash $0 back" ;;
back)
    shopt -s nullglob
    files=("$A"/*)
    [ ${#files[@]} -gt 0 ] && mv "${files[@]}" "$W"/
    git status --short -- "$W"
    git diff --quiet -- "$W" && echo "bundled weights back in $W, identical to the committed ones" ;;
*) echo "usage: bash recipes/gpu/weights_aside.sh aside|back"; exit 2 ;;
esac
