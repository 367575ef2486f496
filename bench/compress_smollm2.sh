#!/usr/bin/env bash
# compress_smollm2 - the measured targets on SmolLM2-135M: perplexity on WikiText-2
# (ctx 512) of the original model, RTN 2/3 bits, AQLM 2x8g8 independent and sequential,
# with and without block fine-tuning; bits per weight and wall time per stage.
# Calibration: TinyStories (the shared validation excerpt) or --calib generate; never
# WikiText-2. Usage: bench/compress_smollm2.sh [LMPRESS] ; environment: NSAMPLES (128),
# CTX (512), THREADS (2), MAX_WINDOWS (0 = all), CALIB (file or "generate"), OUT (dir),
# RUNS (the rows to run, in order; default: original rtn3 rtn2 indep seq indep-ft seq-ft),
# EXTRA (more compress options for the AQLM rows, e.g. "--cg-iters 0").
# One row at a time: every row reports its own wall times. A row whose compress fails is
# reported and skipped; the summary table lists the rows that finished.
set -u
LMPRESS=${1:-${LMPRESS:-build/cli/lmpress}}
MODEL=${MODEL:-$HOME/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf}
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
    local t0 ppl; t0=$(date +%s)
    ppl=$("$LMPRESS" eval --artifact "$art" "${EV[@]}" | field ppl)
    rows+=("$(printf '%-28s %9.3f %7.3f %7.3f %9.1f %9.1f %9.1f %9.1f  (eval %ss)' "$name" "$ppl" \
        "$(echo "$js" | field bits_per_weight_linear)" "$(echo "$js" | field bits_per_weight_model)" \
        "$(echo "$js" | field seconds_calibration)" "$(echo "$js" | field seconds_quantization)" \
        "$(echo "$js" | field seconds_finetune)" "$(echo "$js" | field seconds_total)" \
        $(( $(date +%s) - t0 )))")
    echo "${rows[-1]}" >&2
}
RUNS=${RUNS:-original rtn3 rtn2 indep seq indep-ft seq-ft}
read -r -a XA <<< "${EXTRA:-}"
CAL=(--calib "$CALIB" --nsamples "$NSAMPLES" --ctx "$CTX" --scheme 2x8g8 "${XA[@]}")
for r in $RUNS; do
    case $r in
    original)
        t0=$(date +%s)
        orig=$("$LMPRESS" eval --model "$MODEL" "${EV[@]}" | field ppl)
        rows+=("$(printf '%-28s %9.3f %7s %7s %9s %9s %9s %9s  (eval %ss)' original "$orig" 16 16 - - - - \
            $(( $(date +%s) - t0 )))")
        echo "${rows[-1]}" >&2 ;;
    rtn3)     run rtn-3bit-g64  --method rtn --bits 3 --group 64 ;;
    rtn2)     run rtn-2bit-g64  --method rtn --bits 2 --group 64 ;;
    indep)    run aqlm-2x8g8-independent    "${CAL[@]}" --mode independent ;;
    seq)      run aqlm-2x8g8-sequential     "${CAL[@]}" --mode sequential ;;
    indep-ft) run aqlm-2x8g8-independent-ft "${CAL[@]}" --mode independent --finetune ;;
    seq-ft)   run aqlm-2x8g8-sequential-ft  "${CAL[@]}" --mode sequential --finetune ;;
    *) echo "unknown run '$r'" >&2; exit 2 ;;
    esac
done
printf '\nSmolLM2-135M, WikiText-2 ctx 512 (%s windows), calibration %s n=%s ctx=%s, %s threads\n' \
    "$([ "$MAX_WINDOWS" -gt 0 ] && echo "first $MAX_WINDOWS" || echo all)" "$CALIB" "$NSAMPLES" "$CTX" "$THREADS"
printf '%-28s %9s %7s %7s %9s %9s %9s %9s\n' config ppl bits/lin bits/all calib_s quant_s ft_s total_s
printf '%s\n' "${rows[@]}"
