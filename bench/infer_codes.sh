#!/usr/bin/env bash
# Inference on AQLM codes against the original model: batch-1 decode tokens/s, prompt-processing
# tokens/s and peak RSS of `lmpress generate --artifact ART` (every quantized linear run from its
# codes: the aq_matvec_packed / aq_matvec kernels) and `lmpress generate --model ORIGINAL` (every
# linear dequantized to fp32 at load, OpenBLAS), same prompt, same threads, greedy, alternated in
# one run (the machine is shared and noisy: read the ratios, not the absolute numbers). Each
# round runs, under /usr/bin/time -v,
#   lmpress generate --model M    --prompt P -n N --threads T --raw           (original)
#   lmpress generate --artifact A --prompt P -n N --threads T --raw           (artifact)
#   BEFORE  generate --artifact A --prompt P -n N --threads T --raw           (--before BIN)
#   llama.cpp (llama-cpp-python) on M: the prompt, then N greedy tokens        (--llama)
# and reads the rates from the line generate prints on stderr ("(P prompt tokens, s, R tokens/s;
# N generated tokens, s, G tokens/s)"; llama.cpp: the same line from a Python loop that times
# llama_decode of the prompt and of each token, sampling included) and the peak RSS from
# time -v. Prints one JSON object: per-side medians, every round, and the ratios of each side to
# the original.
# Defaults: SmolLM2-135M-Instruct (Q4_1 GGUF) and its 2x8g8 artifact from ~/.cache/lmpress,
# the prompt the first --prompt-bytes bytes of WikiText-2 (../shared/data).
#
# --base-artifact B puts the artifact B on the "original" side instead of the model (the same
# compression with another storage, e.g. its embedding at 16 bits against --embed-bits 4).
# --before BIN adds the artifact run by another lmpress build (an earlier commit: before/after).
# --llama adds llama.cpp on the original GGUF through llama-cpp-python (--llama-python PY, default
# the reference environment's, ~/.cache/lmpress/venv-ref, scripts/ref/setup_ref.sh);
# --llama-also G (repeatable) adds llama.cpp on another GGUF too, as side llama_cpp_<G's stem>
# (e.g. a Q2_K requantization: scripts/ref/requant_gguf.py).
#
#   bench/infer_codes.sh [--model M | --base-artifact B] [--artifact A] [--text FILE]
#                        [--prompt-bytes B] [-n N] [--rounds R] [--threads T] [--lmpress BIN]
#                        [--before BIN] [--llama] [--llama-python PY] [--llama-also G]...
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${LMP_CACHE:-$HOME/.cache/lmpress}
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
artifact="$cache/runs/smollm2-2x8g8-seq-ft.h5"
text=${LMP_SHARED:-$here/../shared}/data/wikitext2_test_join.txt
pbytes=1200 n=64 rounds=3 threads=2 lmpress="" base=(--model) before="" llama=0 also=()
llpy="$cache/venv-ref/bin/python"
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
        --before) before=$2; shift 2 ;;
        --llama) llama=1; shift ;;
        --llama-python) llpy=$2; llama=1; shift 2 ;;
        --llama-also) also+=("$2"); llama=1; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "infer_codes.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
if [ -z "$lmpress" ]; then
    for d in build-infer build-ref build-fwd build; do
        [ -x "$here/$d/cli/lmpress" ] && { lmpress=$here/$d/cli/lmpress; break; }
    done
fi
for f in "$model" "$artifact" "$text" ${also[@]+"${also[@]}"}; do
    [ -f "$f" ] || { echo "infer_codes.sh: no file '$f'" >&2; exit 1; }
done
for b in "$lmpress" /usr/bin/time ${before:+"$before"}; do
    [ -x "$b" ] || { echo "infer_codes.sh: '$b' is missing (build lmpress; deploy/setup.sh for GNU time)" >&2; exit 1; }
done
if [ "$llama" = 1 ]; then
    [ "${base[0]}" = --model ] || { echo "infer_codes.sh: --llama needs the GGUF on the original side" >&2; exit 2; }
    "$llpy" -c 'import llama_cpp' 2> /dev/null ||
        { echo "infer_codes.sh: no llama_cpp in '$llpy' (scripts/ref/setup_ref.sh)" >&2; exit 1; }
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the prompt: whole words of the text's first bytes, on one line
prompt=$(head -c "$pbytes" "$text" | tr '\n' ' ' | sed 's/ [^ ]*$//')
printf '%s' "$prompt" > "$tmp/prompt.txt"

# llama.cpp's side: the prompt in one llama_decode (n_batch 512), then n greedy tokens one
# llama_decode each; the rates line in lmpress's format
cat > "$tmp/llama.py" <<'PY'
import sys, time
from llama_cpp import Llama
model, prompt_file, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=model, n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads,
            verbose=False, seed=0)
toks = llm.tokenize(open(prompt_file).read().encode(), add_bos=False)
llm.reset()
t0 = time.perf_counter()
llm.eval(toks)
t1 = time.perf_counter()
for _ in range(n):
    llm.eval([llm.sample(temp=0.0)])
t2 = time.perf_counter()
print("(%d prompt tokens, %.3f s, %.1f tokens/s; %d generated tokens, %.3f s, %.1f tokens/s)"
      % (len(toks), t1 - t0, len(toks) / (t1 - t0), n, t2 - t1, n / (t2 - t1)), file=sys.stderr)
PY

# one run: "pp_tps gen_tps rss_kb n_prompt n_gen" on stdout
one() {
    local err=$tmp/err.txt
    /usr/bin/time -v "$@" > "$tmp/out.txt" 2> "$err" || { echo "infer_codes.sh: $1 failed:" >&2; tail -3 "$err" >&2; exit 1; }
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
gen() { # gen BIN ARGS...: lmpress generate with the shared settings
    local bin=$1; shift
    one "$bin" generate "$@" --prompt "$prompt" -n "$n" --threads "$threads" --temperature 0 --raw
}

sides=(original artifact)
[ -n "$before" ] && sides+=(artifact_before)
[ "$llama" = 1 ] && sides+=(llama_cpp)
declare -A also_of=()
for g in ${also[@]+"${also[@]}"}; do
    stem=$(basename "$g" .gguf); stem=${stem//[^A-Za-z0-9_]/_}
    sides+=("llama_cpp_$stem"); also_of["llama_cpp_$stem"]=$g
done
rows=()
for r in $(seq 1 "$rounds"); do
    row=""
    for side in "${sides[@]}"; do
        case $side in
            original) o=$(gen "$lmpress" "${base[@]}" "$model") ;;
            artifact) o=$(gen "$lmpress" --artifact "$artifact") ;;
            artifact_before) o=$(gen "$before" --artifact "$artifact") ;;
            llama_cpp) o=$(one "$llpy" "$tmp/llama.py" "$model" "$tmp/prompt.txt" "$n" "$threads") ;;
            llama_cpp_*) o=$(one "$llpy" "$tmp/llama.py" "${also_of[$side]}" "$tmp/prompt.txt" "$n" "$threads") ;;
        esac
        row+="$side=$o|"
        echo "round $r: $side (pp, gen tok/s, rss KB, prompt, generated) $o" >&2
    done
    rows+=("$row")
done
python3 - "$model" "$artifact" "$threads" "$n" "$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)" "${before:-}" "${rows[@]}" <<'PY'
import json, statistics, sys
model, artifact, threads, n, version, before = sys.argv[1:7]
keys = ("pp_tokens_per_s", "gen_tokens_per_s", "peak_rss_kb", "prompt_tokens", "generated_tokens")
rounds = []
for row in sys.argv[7:]:
    sides = dict(kv.split("=", 1) for kv in row.strip("|").split("|"))
    rounds.append({s: dict(zip(keys, [float(x) for x in v.split()])) for s, v in sides.items()})
names = list(rounds[0])
med = {s: {k: statistics.median(r[s][k] for r in rounds) for k in keys} for s in names}
ratio = {s: {k: med[s][k] / med["original"][k] for k in ("pp_tokens_per_s", "gen_tokens_per_s", "peak_rss_kb")}
         for s in names if s != "original"}
out = {"model": model, "artifact": artifact, "threads": int(threads), "n": int(n), "commit": version,
       "median": med, "ratio_over_original": ratio, "rounds": rounds}
if before:
    out["before"] = before
print(json.dumps(out, indent=1))
PY
