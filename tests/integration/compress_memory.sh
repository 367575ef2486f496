#!/usr/bin/env bash
# compress_memory - peak memory of `lmpress compress` does not grow with model depth: two
# synthetic checkpoints in SmolLM2-135M's shapes (dim 576, hidden 1536; a 512-token
# vocabulary, stories260K's tokenizer) with 2 and 16 layers (7.7x the file) compressed the
# same way (bench/compress_memory.sh, on the default embedded path); the 16-layer run's
# peak RSS must stay within 20% of the 2-layer run's. Seen: x1.085 (417 -> 452 MB); before
# the model's mapped pages were released after fingerprinting and after storing the kept
# tensors, every layer added its file pages (SmolLM2 vocabulary, 8 -> 32 layers: x1.33).
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds python3 /usr/bin/time
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=16"   # freed memory is not kept resident
TOKENIZER="$M/tok512.bin" VOCAB=512 L_SMALL=2 L_LARGE=16 NSAMPLES=8 CTX=64 MAX_RATIO=1.2 \
    LMP_SHARED="$LMP_SHARED" bash "$LMP_SOURCE_DIR/bench/compress_memory.sh" "$LMPRESS" || bad "peak memory grows with depth"
exit $fail
