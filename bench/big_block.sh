#!/usr/bin/env bash
# big_block - what one block of a big model costs: the first LAYERS blocks of a Llama-2-7B-
# or Llama-2-70B-shaped checkpoint (scripts/gen_llama.py: the real shapes, seeded
# synthetic values, F16 safetensors, vocabulary 512 with stories260K's tokenizer) compressed
# by `lmpress compress` with the job's defaults (AQLM SCHEME, sequential calibration on
# NSAMPLES x CTX TinyStories tokens, beam 8, up to 20 rounds), on this machine. Prints each
# linear's line as compress reports it (relative error before -> after, bits, seconds), then
# one JSON object: the wall seconds of the whole job and per block, the workers' seconds of
# calibration and quantization, and the peak RSS (/usr/bin/time). The whole-model time on N
# workers follows from the per-linear seconds with scripts/sched_model.py
# (docs/results-cluster.md).
# Usage: bench/big_block.sh [LMPRESS [COMPRESS OPTIONS...]] (e.g. --max-rounds 4 for a quicker
# run); environment: SHAPE (7b | 70b, default 7b), LAYERS (1),
# SCHEME (2x8g8), NSAMPLES (128), CTX (512), THREADS (2), FINETUNE=1 (add --finetune), OUT
# (work directory, default a temporary one, removed with the checkpoint), KEEP_MODEL=1 (keep
# OUT's checkpoint for the next run), LMP_SHARED (the shared data directory).
# Needs the checkpoint's size on disk (7b: 0.4 GB per block; 70b: 1.7 GB per block) and the
# spool's beside the artifact (a calibration slice's sums: 1.4 GB for 7b, 8.2 GB for 70b, one
# or two at a time; the block's H: 0.7 GB / 4.1 GB). The peak RSS is the one process's: the
# embedded coordinator and its worker together. Measured: docs/results-cluster.md ("A
# Llama-2-7B block"); 70b needs about 29 GB in one process, more than this machine has.
set -u
LMPRESS=${1:-${LMPRESS:-build/cli/lmpress}}
shift $(($# > 0 ? 1 : 0))
SHARED=${LMP_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
TOK=$SHARED/models/stories260K/tok512.bin
CALIB=$SHARED/data/tinystories_valid_first1000.txt
SHAPE=${SHAPE:-7b}; LAYERS=${LAYERS:-1}; SCHEME=${SCHEME:-2x8g8}
NSAMPLES=${NSAMPLES:-128}; CTX=${CTX:-512}; THREADS=${THREADS:-2}
for f in "$LMPRESS" "$TOK" "$CALIB"; do
    [ -e "$f" ] || { echo "big_block: missing $f" >&2; exit 77; }
done
if [ -z "${OUT:-}" ]; then OUT=$(mktemp -d); KEEP_MODEL=; fi
cleanup() {
    rm -rf "$OUT"/art.h5*
    [ -n "${KEEP_MODEL:-}" ] || rm -rf "$OUT"
}
trap cleanup EXIT
M=$OUT/synth-$SHAPE-$LAYERS
if [ ! -f "$M/model.safetensors" ]; then
    python3 "$(dirname "$0")/../scripts/gen_llama.py" "$M" --shape "$SHAPE" \
        --layers "$LAYERS" --vocab 512 ||
        { echo "big_block: cannot write the checkpoint into $M" >&2; exit 1; }
fi
ft=(); [ "${FINETUNE:-0}" = 1 ] && ft=(--finetune)
rm -rf "$OUT"/art.h5*
/usr/bin/time -f 'rss_kb %M' "$LMPRESS" compress --model "$M" --tokenizer "$TOK" \
    --calib "$CALIB" --nsamples "$NSAMPLES" --ctx "$CTX" --scheme "$SCHEME" \
    --threads "$THREADS" "${ft[@]}" "$@" --out "$OUT/art.h5" --json > "$OUT/c.json" 2> "$OUT/c.log" ||
    { echo "big_block: compress failed:" >&2; tail -5 "$OUT/c.log" >&2; exit 1; }
grep -E '^\[[0-9]+/[0-9]+\]' "$OUT/c.log"
num() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$OUT/c.json" | head -1; }
rss=$(awk '/^rss_kb/ { print int($2 / 1024) }' "$OUT/c.log")
wall=$(num seconds_total)
printf '{"shape":"%s","blocks":%s,"scheme":"%s","calibration":"%s x %s","threads":%s,' \
    "$SHAPE" "$LAYERS" "$SCHEME" "$NSAMPLES" "$CTX" "$THREADS"
printf '"seconds_total":%s,"seconds_per_block":%.1f,"seconds_calibration":%s,' "$wall" \
    "$(echo "$wall / $LAYERS" | bc -l)" "$(num seconds_calibration)"
printf '"seconds_quantization":%s,"peak_rss_mb":%s}\n' "$(num seconds_quantization)" "$rss"
