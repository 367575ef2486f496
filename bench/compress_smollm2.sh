#!/usr/bin/env bash
# compress_smollm2 - the measured targets on SmolLM2-135M: perplexity on WikiText-2
# (ctx 512) of the original model, RTN 2/3 bits, AQLM 2x8g8 independent and sequential,
# with and without block fine-tuning; bits per weight and wall time per stage.
# Calibration: TinyStories (the shared validation excerpt) or --calib generate; never
# WikiText-2. Usage: bench/compress_smollm2.sh [LMPRESS] ; environment: NSAMPLES (128),
# CTX (512), THREADS (2), MAX_WINDOWS (0 = all), CALIB (file or "generate"), OUT (dir).
set -u
LMPRESS=${1:-${LMPRESS:-build/coordinator/lmpress}}
MODEL=${MODEL:-/root/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf}
SHARED=${LMP_SHARED:-$(dirname "$0")/../../shared}
CALIB=${CALIB:-$SHARED/data/tinystories_valid_first1000.txt}
WIKI=$SHARED/data/wikitext2_test_join.txt
NSAMPLES=${NSAMPLES:-128}; CTX=${CTX:-512}; THREADS=${THREADS:-2}; MAX_WINDOWS=${MAX_WINDOWS:-0}
OUT=${OUT:-$(mktemp -d)}
for f in "$MODEL" "$WIKI"; do [ -f "$f" ] || { echo "missing $f" >&2; exit 77; }; done
EV=(--text "$WIKI" --ctx 512 --threads "$THREADS" --json)
[ "$MAX_WINDOWS" -gt 0 ] && EV+=(--max-windows "$MAX_WINDOWS")
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
rows=()
run() {   # name, compress args...
    local name=$1; shift
    local art="$OUT/$name.h5" js
    js=$("$LMPRESS" compress --model "$MODEL" --out "$art" --threads "$THREADS" --json "$@" \
         2> "$OUT/$name.log") || { echo "$name: compress failed (see $OUT/$name.log)" >&2; return; }
    local ppl; ppl=$("$LMPRESS" eval --artifact "$art" "${EV[@]}" | field ppl)
    rows+=("$(printf '%-28s %9.3f %7.3f %7.3f %9.1f %9.1f %9.1f %9.1f' "$name" "$ppl" \
        "$(echo "$js" | field bits_per_weight_linear)" "$(echo "$js" | field bits_per_weight_model)" \
        "$(echo "$js" | field seconds_calibration)" "$(echo "$js" | field seconds_quantization)" \
        "$(echo "$js" | field seconds_finetune)" "$(echo "$js" | field seconds_total)")")
    echo "${rows[-1]}" >&2
}
orig=$("$LMPRESS" eval --model "$MODEL" "${EV[@]}" | field ppl)
rows+=("$(printf '%-28s %9.3f %7s %7s' original "$orig" 16 16)")
CAL=(--calib "$CALIB" --nsamples "$NSAMPLES" --ctx "$CTX")
run rtn-3bit-g128 --method rtn --bits 3 --group 128
run rtn-2bit-g64  --method rtn --bits 2 --group 64
run aqlm-2x8g8-independent    "${CAL[@]}" --scheme 2x8g8 --mode independent
run aqlm-2x8g8-sequential     "${CAL[@]}" --scheme 2x8g8 --mode sequential
run aqlm-2x8g8-independent-ft "${CAL[@]}" --scheme 2x8g8 --mode independent --finetune
run aqlm-2x8g8-sequential-ft  "${CAL[@]}" --scheme 2x8g8 --mode sequential --finetune
printf '\nSmolLM2-135M, WikiText-2 ctx 512, calibration %s n=%s ctx=%s, %s threads\n' \
    "$CALIB" "$NSAMPLES" "$CTX" "$THREADS"
printf '%-28s %9s %7s %7s %9s %9s %9s %9s\n' config ppl bits/lin bits/all calib_s quant_s ft_s total_s
printf '%s\n' "${rows[@]}"
