#!/usr/bin/env bash
# calib_text - which calibration text makes the better AQLM model of SmolLM2-135M: the same
# compression (SCHEME, default 2x8g8; OPTS, default a quick one) calibrated on TinyStories
# (the shared sample), on text the model writes itself (`--calib generate`), and on general
# text held out from the evaluation (WikiText-2 test from byte WIKI_SKIP, default 400000, on:
# the first MAX_WINDOWS windows of 512 tokens evaluated are about 90 KB), each evaluated on
# the first MAX_WINDOWS (default 40) WikiText-2 test windows at ctx 512: perplexity, KL and
# top-1 agreement against the original (`lmpress eval --reference`); also each run's mean
# layer relative error, on its own calibration's H (so not comparable between the rows), and
# its seconds.
#
#   bench/calib_text.sh [LMPRESS]
#
# Environment: MODEL (default SmolLM2 in ~/.cache/lmpress), SCHEME, OPTS (compress options,
# default "--mode independent --nsamples 32 --ctx 256 --max-rounds 4 --beam 4": 3.6-4.5 min
# of compression and 1.5 of evaluation a row on 2 cores; the job's defaults take 20-40 min a
# row), THREADS (2), OUT (directory,
# default a new temporary one), LMP_SHARED (the shared data directory).
set -u
LMPRESS=${1:-${LMPRESS:-build/cli/lmpress}}
MODEL=${MODEL:-$HOME/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf}
SHARED=${LMP_SHARED:-$(dirname "$0")/../../shared}
TS=$SHARED/data/tinystories_valid_first1000.txt
WIKI=$SHARED/data/wikitext2_test_join.txt
SCHEME=${SCHEME:-2x8g8}; THREADS=${THREADS:-2}; MAX_WINDOWS=${MAX_WINDOWS:-40}
OPTS=${OPTS:---mode independent --nsamples 32 --ctx 256 --max-rounds 4 --beam 4}
OUT=${OUT:-$(mktemp -d)}
for f in "$LMPRESS" "$MODEL" "$TS" "$WIKI"; do
    [ -e "$f" ] || { echo "calib_text: missing $f" >&2; exit 77; }
done
[ "$MAX_WINDOWS" -gt 0 ] || { echo "calib_text: MAX_WINDOWS must be > 0 (held-out text)" >&2; exit 2; }
mkdir -p "$OUT"
tail -c +"$(( ${WIKI_SKIP:-400000} + 1 ))" "$WIKI" > "$OUT/wikitail.txt"
read -r -a opts <<< "$OPTS"
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
rows=()
for c in "tinystories $TS" "generate generate" "wikitail $OUT/wikitail.txt"; do
    set -- $c
    rm -rf "$OUT/$1.h5" "$OUT/$1.h5.parts"
    "$LMPRESS" compress --model "$MODEL" --calib "$2" --scheme "$SCHEME" --threads "$THREADS" \
        "${opts[@]}" --out "$OUT/$1.h5" --json > "$OUT/$1.json" 2> "$OUT/$1.log" ||
        { echo "calib_text: compress with $1 failed, see $OUT/$1.log" >&2; continue; }
    js=$("$LMPRESS" eval --artifact "$OUT/$1.h5" --reference "$MODEL" --text "$WIKI" --ctx 512 \
         --max-windows "$MAX_WINDOWS" --threads "$THREADS" --json 2> /dev/null)
    rows+=("$(printf '%-12s %9.2f %8.4f %7.4f %10.4f %8.0f' "$1" "$(echo "$js" | field ppl)" \
        "$(echo "$js" | field kl)" "$(echo "$js" | field top1_agreement)" \
        "$(field mean_rel_err < "$OUT/$1.json")" "$(field seconds_total < "$OUT/$1.json")")")
    echo "${rows[-1]}" >&2
done
printf '\nSmolLM2-135M %s (%s); WikiText-2 ctx 512, first %s windows\n' "$SCHEME" "$OPTS" "$MAX_WINDOWS"
printf '%-12s %9s %8s %7s %10s %8s\n' calibration ppl KL agree "err own H" seconds
printf '%s\n' "${rows[@]}"
