#!/usr/bin/env bash
# Inference on AQLM codes against the original model: batch-1 decode tokens/s, prompt-processing
# tokens/s and peak RSS of `lmpress generate --artifact ART` (every quantized linear run from its
# codes by the aq_matvec kernel) and `lmpress generate --model ORIGINAL` (every linear dequantized
# to fp32 at load, OpenBLAS), same prompt, same threads, greedy, alternated in one run (the
# machine is shared and noisy: read the ratios, not the absolute numbers). Each round runs
#   lmpress generate --model M    --prompt P -n N --threads T --raw    under /usr/bin/time -v
#   lmpress generate --artifact A --prompt P -n N --threads T --raw    under /usr/bin/time -v
# and reads the rates from the line generate prints on stderr ("(P prompt tokens, s, R tokens/s;
# N generated tokens, s, G tokens/s)") and the peak RSS from time -v. Prints one JSON object:
# per-side medians, every round, and the ratios artifact / original.
# Defaults: SmolLM2-135M-Instruct (Q4_1 GGUF) and its 2x8g8 artifact from ~/.cache/lmpress,
# the prompt the first --prompt-bytes bytes of WikiText-2 (../shared/data).
#
# --base-artifact B puts the artifact B on the "original" side instead of the model (the same
# compression with another storage, e.g. its embedding at 16 bits against --embed-bits 4).
#
#   bench/infer_codes.sh [--model M | --base-artifact B] [--artifact A] [--text FILE]
#                        [--prompt-bytes B] [-n N] [--rounds R] [--threads T] [--lmpress BIN]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${LMP_CACHE:-$HOME/.cache/lmpress}
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
artifact="$cache/runs/smollm2-2x8g8-seq-ft.h5"
text=${LMP_SHARED:-$here/../shared}/data/wikitext2_test_join.txt
pbytes=1200 n=64 rounds=3 threads=2 lmpress="" base=(--model)
while [ $# -gt 0 ]; do
    case $1 in
        --model) model=$2; base=(--model); shift 2 ;;
        --base-artifact) model=$2; base=(--artifact); shift 2 ;;
        --artifact) artifact=$2; shift 2 ;;
        --text) text=$2; shift 2 ;;
        --prompt-bytes) pbytes=$2; shift 2 ;;
        -n) n=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --lmpress) lmpress=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "infer_codes.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
if [ -z "$lmpress" ]; then
    for d in build-infer build-ref build-fwd build; do
        [ -x "$here/$d/cli/lmpress" ] && { lmpress=$here/$d/cli/lmpress; break; }
    done
fi
for f in "$model" "$artifact" "$text"; do
    [ -f "$f" ] || { echo "infer_codes.sh: no file '$f'" >&2; exit 1; }
done
for b in "$lmpress" /usr/bin/time; do
    [ -x "$b" ] || { echo "infer_codes.sh: '$b' is missing (build lmpress; deploy/setup.sh for GNU time)" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the prompt: whole words of the text's first bytes, on one line
prompt=$(head -c "$pbytes" "$text" | tr '\n' ' ' | sed 's/ [^ ]*$//')

# one run: "pp_tps gen_tps rss_kb n_prompt n_gen" on stdout
one() {
    local err=$tmp/err.txt
    /usr/bin/time -v "$lmpress" generate "$@" --prompt "$prompt" -n "$n" --threads "$threads" \
        --temperature 0 --raw > "$tmp/out.txt" 2> "$err" || { echo "infer_codes.sh: lmpress failed:" >&2; tail -3 "$err" >&2; exit 1; }
    python3 - "$err" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
m = re.search(r"\((\d+) prompt tokens, [0-9.]+ s, ([0-9.]+) tokens/s; (\d+) generated tokens, [0-9.]+ s, ([0-9.]+) tokens/s\)", s)
r = re.search(r"Maximum resident set size \(kbytes\): (\d+)", s)
if not m or not r:
    sys.exit("infer_codes.sh: no rates or RSS in the output")
print(m.group(2), m.group(4), r.group(1), m.group(1), m.group(3))
PY
}

rows=()
for r in $(seq 1 "$rounds"); do
    o=$(one "${base[@]}" "$model")
    a=$(one --artifact "$artifact")
    rows+=("$o|$a")
    echo "round $r: original (pp, gen tok/s, rss KB, prompt, generated) $o; artifact $a" >&2
done
python3 - "$model" "$artifact" "$threads" "$n" "$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)" "${rows[@]}" <<'PY'
import json, statistics, sys
model, artifact, threads, n, version = sys.argv[1:6]
rounds = []
for row in sys.argv[6:]:
    o, a = row.split("|")
    f = lambda s: dict(zip(("pp_tokens_per_s", "gen_tokens_per_s", "peak_rss_kb", "prompt_tokens", "generated_tokens"),
                           [float(x) for x in s.split()]))
    rounds.append({"original": f(o), "artifact": f(a)})
med = {side: {k: statistics.median(r[side][k] for r in rounds) for k in rounds[0][side]}
       for side in ("original", "artifact")}
ratio = {k: med["artifact"][k] / med["original"][k]
         for k in ("pp_tokens_per_s", "gen_tokens_per_s", "peak_rss_kb")}
print(json.dumps({"model": model, "artifact": artifact, "threads": int(threads), "n": int(n),
                  "commit": version, "median": med, "ratio_artifact_over_original": ratio,
                  "rounds": rounds}, indent=1))
PY
