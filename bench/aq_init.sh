#!/usr/bin/env bash
# aq_init - the AQLM start and search-order settings on real (W, H) pairs of SmolLM2-135M
# (bench/bench_aq_init.c): the first BLOCKS (2) blocks of the original model, calibrated
# on NSAMPLES x CTX (32 x 256) TinyStories tokens, every linear quantized at SCHEME (2x8g8)
# with each configuration in one run, ratios to the first. Two runs:
#   1. old (64 K-group weighted k-means, search in order (j, m)) against new (every group,
#      unweighted, shuffled order every round) and new with each of its changes undone,
#      on every linear;
#   2. beam width 8 (the default) against 4 and 16 with the new settings, on gate_proj and
#      up_proj (the layers the order matters most for) unless LAYERS says otherwise.
# Usage: bench/aq_init.sh [BUILD_DIR]; environment: BLOCKS, NSAMPLES, CTX, SCHEME, THREADS
# (2), MODEL, LMP_SHARED (the shared data directory), CONFIGS / BEAMS (override run 1's /
# run 2's configuration list; BEAMS empty: skip run 2), LAYERS (run 2's linears).
set -eu
BUILD=${1:-build}
BENCH=$BUILD/bench/bench_aq_init
SHARED=${LMP_SHARED:-$(dirname "$0")/../../shared}
TEXT=$SHARED/data/tinystories_valid_first1000.txt
MODEL=${MODEL:-$HOME/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf}
BLOCKS=${BLOCKS:-2}; NSAMPLES=${NSAMPLES:-32}; CTX=${CTX:-256}; SCHEME=${SCHEME:-2x8g8}
THREADS=${THREADS:-2}
CONFIGS=${CONFIGS:-old,new,new-sample,new-weighted,new-fixed}
BEAMS=${BEAMS-new,new@4,new@16}
LAYERS=${LAYERS:-gate,up}
for f in "$BENCH" "$TEXT" "$MODEL"; do
    [ -e "$f" ] || { echo "aq_init: missing $f" >&2; exit 77; }
done
common=(--model "$MODEL" --text "$TEXT" --blocks "$BLOCKS" --nsamples "$NSAMPLES" --ctx "$CTX"
        --scheme "$SCHEME" --threads "$THREADS")
"$BENCH" "${common[@]}" --configs "$CONFIGS"
[ -z "$BEAMS" ] || { echo; "$BENCH" "${common[@]}" --configs "$BEAMS" --layers "$LAYERS"; }
