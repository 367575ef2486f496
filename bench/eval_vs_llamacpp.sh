#!/usr/bin/env bash
# Throughput and peak memory of `lmpress eval` against llama.cpp on the same GGUF, measured
# alternately in one run (the machine is shared and noisy: read the ratios, not the absolute
# numbers). Each round runs, one after the other:
#   llama-bench       -m M -p CTX -n 0 -t T -r 3        prompt processing (ppCTX) tokens/s
#   llama-perplexity  -m M -f TEXT -c CTX -b CTX -t T --chunks K
#                     the same K windows of CTX tokens with logits at every position, as
#                     lmpress eval computes; tokens/s = K*CTX over the time between its
#                     "calculating perplexity" and "Final estimate" log lines
#   lmpress eval      --model M --text TEXT --ctx CTX --max-windows K --threads T --json
#                     tokens_per_s (forward passes and losses, without loading/tokenizing)
# each under /usr/bin/time -v for the peak RSS. Prints one JSON object: per-tool medians over the
# rounds, every round's numbers, and the ratios lmpress / llama.cpp.
# Needs the llama.cpp tools from scripts/ref/build_llamacpp.sh and GNU time (deploy/setup.sh).
#
#   bench/eval_vs_llamacpp.sh [--model M] [--text T] [--ctx N] [--windows K] [--rounds R]
#                             [--threads T] [--lmpress BIN] [--llama-bin DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${LMP_CACHE:-$HOME/.cache/lmpress}
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
text=${LMP_SHARED:-$here/../shared}/data/wikitext2_test_join.txt
ctx=512 windows=8 rounds=3 threads=2 lmpress="" llbin="$cache/llama.cpp-build/bin"
while [ $# -gt 0 ]; do
    case $1 in
        --model) model=$2; shift 2 ;;
        --text) text=$2; shift 2 ;;
        --ctx) ctx=$2; shift 2 ;;
        --windows) windows=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --lmpress) lmpress=$2; shift 2 ;;
        --llama-bin) llbin=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "eval_vs_llamacpp.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
if [ -z "$lmpress" ]; then
    for d in build-ref build-fwd build; do
        [ -x "$here/$d/cli/lmpress" ] && { lmpress=$here/$d/cli/lmpress; break; }
    done
fi
for f in "$model" "$text"; do [ -f "$f" ] || { echo "eval_vs_llamacpp.sh: no file '$f'" >&2; exit 1; }; done
for b in "$lmpress" "$llbin/llama-bench" "$llbin/llama-perplexity" /usr/bin/time; do
    [ -x "$b" ] || { echo "eval_vs_llamacpp.sh: '$b' is missing (scripts/ref/build_llamacpp.sh, deploy/setup.sh)" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rows="$tmp/rows.jsonl"
: > "$rows"

# run NAME ROUND CMD...: runs CMD under time -v, output in $tmp/NAME.out, RSS in $tmp/NAME.time
run() {
    local name=$1; shift
    /usr/bin/time -v -o "$tmp/$name.time" "$@" > "$tmp/$name.out" 2>&1 ||
        { echo "eval_vs_llamacpp.sh: $name failed:" >&2; tail -5 "$tmp/$name.out" >&2; exit 1; }
}
rss_mb() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"; }
cpu_s() { awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$1"; }

for r in $(seq 1 "$rounds"); do
    echo "round $r/$rounds: llama-bench" >&2
    run bench "$llbin/llama-bench" -m "$model" -p "$ctx" -n 0 -t "$threads" -r 3 -o json
    tps=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[0]["avg_ts"])' "$tmp/bench.out")
    echo "{\"round\": $r, \"tool\": \"llama-bench\", \"tokens_per_s\": $tps, \"rss_mb\": $(rss_mb "$tmp/bench.time"), \"cpu_s\": $(cpu_s "$tmp/bench.time")}" >> "$rows"

    echo "round $r/$rounds: llama-perplexity" >&2
    run ppl "$llbin/llama-perplexity" -m "$model" -f "$text" -c "$ctx" -b "$ctx" -t "$threads" --chunks "$windows"
    # log lines start with a timestamp M.SS.mmm.uuu: the time from "calculating perplexity"
    # to "Final estimate" is the evaluation of the windows (after loading and tokenizing)
    tps=$(awk -v n=$((windows * ctx)) '
        function sec(t,  a) { split(t, a, "."); return a[1] * 60 + a[2] + a[3] / 1e3 + a[4] / 1e6 }
        /perplexity: calculating perplexity over/ { t0 = sec($1) }
        /Final estimate/ { t1 = sec($1) }
        END { if (t0 > 0 && t1 > t0) printf "%.3f", n / (t1 - t0) }' "$tmp/ppl.out")
    [ -n "$tps" ] || { echo "eval_vs_llamacpp.sh: no timestamps in llama-perplexity output" >&2; exit 1; }
    echo "{\"round\": $r, \"tool\": \"llama-perplexity\", \"tokens_per_s\": $tps, \"rss_mb\": $(rss_mb "$tmp/ppl.time"), \"cpu_s\": $(cpu_s "$tmp/ppl.time")}" >> "$rows"

    echo "round $r/$rounds: lmpress eval" >&2
    run lmp "$lmpress" eval --model "$model" --text "$text" --ctx "$ctx" --max-windows "$windows" \
        --threads "$threads" --json
    tps=$(python3 -c 'import json,sys; l=[x for x in open(sys.argv[1]) if x.startswith("{")]; print(json.loads(l[-1])["tokens_per_s"])' "$tmp/lmp.out")
    echo "{\"round\": $r, \"tool\": \"lmpress\", \"tokens_per_s\": $tps, \"rss_mb\": $(rss_mb "$tmp/lmp.time"), \"cpu_s\": $(cpu_s "$tmp/lmp.time")}" >> "$rows"
done

python3 - "$rows" "$model" "$ctx" "$windows" "$threads" "$rounds" "$lmpress" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
model, ctx, windows, threads, rounds, lmpress = sys.argv[2:8]
med = {}
for tool in ("llama-bench", "llama-perplexity", "lmpress"):
    rs = [r for r in rows if r["tool"] == tool]
    med[tool] = {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "rss_mb", "cpu_s")}
lm = med["lmpress"]
print(json.dumps({
    "model": model, "ctx": int(ctx), "windows": int(windows), "threads": int(threads),
    "rounds": int(rounds), "lmpress": lmpress,
    "median": med,
    "ratio_tokens_per_s": {
        "lmpress_over_llama_bench": lm["tokens_per_s"] / med["llama-bench"]["tokens_per_s"],
        "lmpress_over_llama_perplexity": lm["tokens_per_s"] / med["llama-perplexity"]["tokens_per_s"],
    },
    "ratio_rss": {
        "lmpress_over_llama_bench": lm["rss_mb"] / med["llama-bench"]["rss_mb"],
        "lmpress_over_llama_perplexity": lm["rss_mb"] / med["llama-perplexity"]["rss_mb"],
    },
    "rounds_detail": rows,
}, indent=2))
EOF
