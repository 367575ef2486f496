#!/usr/bin/env bash
# compress_memory - peak memory of `lmpress compress` against model depth. Two synthetic
# Hugging Face checkpoints in SmolLM2-135M's shapes (dim 576, hidden 1536, 9 heads, 3 kv
# heads, head dim 64, vocab 49152, tied embeddings, F16 safetensors, seeded random
# weights), with L_SMALL (8) and L_LARGE (32) layers, are compressed with the same cheap
# configuration (AQLM 1x8g8 on k_proj, the other linears kept, sequential calibration on
# NSAMPLES x CTX TinyStories tokens) under /usr/bin/time -v. Prints one JSON object with
# the peak RSS of each run and their ratio: the block walk holds one block's weights, so
# the ratio stays near 1 while the model grows 4x (an eager transformer that dequantizes
# every linear at load grows by ~14 MB of fp32 per layer).
# Usage: bench/compress_memory.sh [LMPRESS]; environment: L_SMALL (8), L_LARGE (32),
# NSAMPLES (16), CTX (128), THREADS (2), OUT (work dir, default a temporary one, removed),
# TOKENIZER (a tokenizer.json with a 49152-token vocabulary, default SmolLM2's from the model
# cache; or a llama2.c tokenizer.bin, with VOCAB its vocabulary size), VOCAB (49152),
# MAX_RATIO (if set: exit 1 when the peak-RSS ratio exceeds it; tests/integration/
# compress_memory.sh), LMP_SHARED (the shared data directory).
set -eu
LMPRESS=${1:-${LMPRESS:-build/cli/lmpress}}
SHARED=${LMP_SHARED:-$(dirname "$0")/../../shared}
CALIB=${CALIB:-$SHARED/data/tinystories_valid_first1000.txt}
CACHE=${LMP_CACHE:-$HOME/.cache/lmpress}
TOKENIZER=${TOKENIZER:-$CACHE/models/smollm2-135m-hf/tokenizer.json}
L_SMALL=${L_SMALL:-8}; L_LARGE=${L_LARGE:-32}
NSAMPLES=${NSAMPLES:-16}; CTX=${CTX:-128}; THREADS=${THREADS:-2}; VOCAB=${VOCAB:-49152}
TOKOPT=()   # a tokenizer.json is copied into the checkpoint; a tokenizer.bin is passed
case "$TOKENIZER" in *.bin) TOKOPT=(--tokenizer "$TOKENIZER") ;; esac
for f in "$LMPRESS" "$CALIB" "$TOKENIZER" /usr/bin/time; do
    [ -e "$f" ] || { echo "compress_memory: missing $f" >&2; exit 77; }
done
if [ -z "${OUT:-}" ]; then OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT; fi
mkdir -p "$OUT"

# gen DIR N_LAYERS: a SmolLM2-shaped checkpoint (scripts/gen_llama.py)
gen() {
    python3 "$(dirname "$0")/../scripts/gen_llama.py" "$1" --shape smollm2 --layers "$2" \
        --vocab "$VOCAB" --tokenizer "$TOKENIZER"
}

# run NAME N_LAYERS: prints "<peak RSS kB> <seconds> <file MB>"
run() {
    local dir="$OUT/synth-L$2"
    [ -f "$dir/model.safetensors" ] || gen "$dir" "$2"
    rm -f "$OUT/$1.h5"
    /usr/bin/time -v "$LMPRESS" compress --model "$dir" ${TOKOPT[@]+"${TOKOPT[@]}"} --calib "$CALIB" --nsamples "$NSAMPLES" \
        --ctx "$CTX" --out "$OUT/$1.h5" --scheme 1x8g8 --beam 1 --max-rounds 1 \
        --threads "$THREADS" --keep '*.q_proj' --keep '*.v_proj' --keep '*.o_proj' \
        --keep '*.mlp.*' --json > "$OUT/$1.json" 2> "$OUT/$1.log" ||
        { echo "compress_memory: compress of L=$2 failed (see $OUT/$1.log)" >&2; tail -3 "$OUT/$1.log" >&2; exit 1; }
    local rss secs
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$OUT/$1.log")
    secs=$(sed -n 's/.*"seconds_total":\([^,}]*\).*/\1/p' "$OUT/$1.json")
    echo "$rss ${secs:-0} $(( $(stat -c %s "$dir/model.safetensors") / 1048576 ))"
}

read -r rss_s sec_s mb_s <<< "$(run small "$L_SMALL")"
read -r rss_l sec_l mb_l <<< "$(run large "$L_LARGE")"
python3 - "$L_SMALL" "$rss_s" "$sec_s" "$mb_s" "$L_LARGE" "$rss_l" "$sec_l" "$mb_l" <<'EOF'
import json, sys
a = sys.argv[1:]
row = lambda l, r, s, mb: {'layers': int(l), 'model_file_mb': int(mb),
                           'peak_rss_mb': round(int(r) / 1024, 1), 'seconds': float(s)}
print(json.dumps({'bench': 'compress_memory', 'small': row(*a[0:4]), 'large': row(*a[4:8]),
                  'rss_ratio_large_over_small': round(int(a[5]) / int(a[1]), 3),
                  'model_ratio_large_over_small': round(int(a[7]) / max(1, int(a[3])), 3)}))
EOF
if [ -n "${MAX_RATIO:-}" ]; then
    awk -v a="$rss_l" -v b="$rss_s" -v m="$MAX_RATIO" 'BEGIN { exit !(a / b <= m) }' ||
        { echo "compress_memory: peak RSS grew x$(awk -v a="$rss_l" -v b="$rss_s" 'BEGIN { printf "%.3f", a / b }') from $L_SMALL to $L_LARGE layers (limit x$MAX_RATIO)" >&2; exit 1; }
fi
