#!/usr/bin/env bash
# tune_smollm2 - the PV-Tuning targets of issue 11 on SmolLM2-135M: WikiText-2 perplexity
# (ctx 512, the same MAX_WINDOWS windows, default 40) and KL / top-1 agreement against the
# original, of the AQLM artifact before and after `lmpress tune`, with the tuning's wall time
# and tokens/s; optionally several configurations in one run (CONFIGS), each from the same
# artifact, so their ratios are measured on the same machine state.
#
#   bench/tune_smollm2.sh ART.h5 [LMPRESS]
#
# ART.h5 is an AQLM artifact of SmolLM2 (deploy/run-default.sh makes one). Environment:
#   DATA        tuning text (default ../shared/data/tinystories_valid_first1000.txt; never the
#               evaluation text), or "wikitail": WikiText-2 test from byte WIKI_SKIP (default
#               400000) on, general text held out from the evaluated windows (40 windows of
#               512 tokens are about 90 KB; refused with MAX_WINDOWS=0, which evaluates all),
#               or "generate": windows the original model writes itself (`lmpress tune
#               --data generate`: sampled at temperature 1 from BOS; --max-windows of them
#               or one per window the steps take, at most 512, plus --val-windows)
#   CONFIGS     ';'-separated option sets for `lmpress tune`, each a row (default one row:
#               "--steps 30 --batch 4 --lr 5e-4 --code-lr 1e-3")
#   THREADS     threads (default 2; per rank with LAUNCH; the evaluations take EVAL_THREADS,
#               default THREADS, or every core with LAUNCH); MAX_WINDOWS evaluation windows
#               (default 40; 0: all)
#   LAUNCH      a launcher for the tuning, e.g. "mpirun -n 2" (data-parallel ranks; the
#               artifact is the same as one process's)
#   SKIP_INPUT  set: do not evaluate the input artifact (a second run on the same one)
#   OUT         directory for the tuned artifacts and logs (default a new temporary one)
set -u
ART=${1:?usage: tune_smollm2.sh ART.h5 [LMPRESS]}
LMPRESS=${2:-${LMPRESS:-build/cli/lmpress}}
MODEL=${MODEL:-$HOME/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf}
SHARED=${LMP_SHARED:-$(dirname "$0")/../../shared}
DATA=${DATA:-$SHARED/data/tinystories_valid_first1000.txt}
WIKI=$SHARED/data/wikitext2_test_join.txt
THREADS=${THREADS:-2}; MAX_WINDOWS=${MAX_WINDOWS:-40}
OUT=${OUT:-$(mktemp -d)}
read -r -a LAUNCHER <<< "${LAUNCH:-}"
[ -n "${LAUNCH:-}" ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
CONFIGS=${CONFIGS:---steps 30 --batch 4 --lr 5e-4 --code-lr 1e-3}
mkdir -p "$OUT"
if [ "$DATA" = wikitail ]; then
    [ "$MAX_WINDOWS" -gt 0 ] || { echo "DATA=wikitail overlaps an evaluation of all windows" >&2; exit 2; }
    mkdir -p "$OUT"; tail -c +"$(( ${WIKI_SKIP:-400000} + 1 ))" "$WIKI" > "$OUT/wikitail.txt"
    DATA=$OUT/wikitail.txt
fi
files=("$ART" "$MODEL" "$WIKI"); [ "$DATA" = generate ] || files+=("$DATA")
for f in "${files[@]}"; do [ -f "$f" ] || { echo "missing $f" >&2; exit 77; }; done
# the evaluations run alone: every core unless EVAL_THREADS says (THREADS is per rank)
EVAL_THREADS=${EVAL_THREADS:-$([ -n "${LAUNCH:-}" ] && nproc || echo "$THREADS")}
EV=(--text "$WIKI" --ctx 512 --threads "$EVAL_THREADS" --json --reference "$MODEL")
[ "$MAX_WINDOWS" -gt 0 ] && EV+=(--max-windows "$MAX_WINDOWS")
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
evaluate() {   # ART -> "ppl kl agree"
    local js; js=$("$LMPRESS" eval --artifact "$1" "${EV[@]}" 2>/dev/null)
    echo "$(echo "$js" | field ppl) $(echo "$js" | field kl) $(echo "$js" | field top1_agreement)"
}
rows=()
if [ -z "${SKIP_INPUT:-}" ]; then
    read -r p k a <<< "$(evaluate "$ART")"
    rows+=("$(printf '%-48s %9.3f %8.4f %7.4f %9s %8s' "input (no tuning)" "$p" "$k" "$a" - -)")
    echo "${rows[-1]}" >&2
fi
IFS=';' read -r -a cfgs <<< "$CONFIGS"
i=0
for c in "${cfgs[@]}"; do
    i=$((i + 1)); read -r -a opts <<< "$c"
    t="$OUT/tuned-$i.h5"
    js=$(${LAUNCHER[@]+"${LAUNCHER[@]}"} "$LMPRESS" tune --artifact "$ART" --model "$MODEL" --data "$DATA" --out "$t" \
         --threads "$THREADS" --json "${opts[@]}" 2> "$OUT/tune-$i.log") ||
        { echo "config $i ($c): tune failed, see $OUT/tune-$i.log" >&2; continue; }
    read -r p k a <<< "$(evaluate "$t")"
    rows+=("$(printf '%-48s %9.3f %8.4f %7.4f %9.0f %8.1f' "$c" "$p" "$k" "$a" \
        "$(echo "$js" | field seconds_tuning)" "$(echo "$js" | field tokens_per_s)")")
    echo "${rows[-1]}" >&2
done
printf '\nSmolLM2-135M, %s; WikiText-2 ctx 512 (%s windows); tuning text %s; %s threads%s\n' \
    "$ART" "$([ "$MAX_WINDOWS" -gt 0 ] && echo "first $MAX_WINDOWS" || echo all)" "$DATA" "$THREADS" \
    "${LAUNCH:+ per rank, $LAUNCH}"
printf '%-48s %9s %8s %7s %9s %8s\n' configuration ppl KL agree seconds tok/s
printf '%s\n' "${rows[@]}"
