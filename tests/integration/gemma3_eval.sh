#!/usr/bin/env bash
# gemma3_eval - `lmpress eval` of Gemma 3 270M (Q4_K_M GGUF) on the first 4 windows of 512
# tokens of WikiText-2, against the perplexity llama.cpp gives on the same windows, and its
# format-3 artifact. (Block fine-tuning and PV-Tuning of Gemma 3, which take minutes on
# this model: tests/integration/train_arch.sh on a generated Gemma-3-shaped checkpoint.)
#
# The model is not in the shared data: it is read from $LMP_GEMMA3_GGUF or
# ${LMP_CACHE:-$HOME/.cache/lmpress}/gemma-3-270m-q4_k_m.gguf, and the test is skipped
# (exit 77, under CI too) where it is absent.
#
# Reference numbers (docs/models.md), recorded on 2026-12-06 with llama-cpp-python 0.3.36
# (scripts/ref/setup_ref.sh; llama.cpp built for AVX-512 without AMX) by
#   PY=~/.cache/lmpress/venv-ref/bin/python
#   $PY scripts/ref/dequant_gguf.py $G /tmp/gemma-3-270m-f32.gguf
#   $PY scripts/ref/check_gemma3.py --model /tmp/gemma-3-270m-f32.gguf --lmpress LMPRESS \
#       --dump-ids DUMP_IDS --max-windows 4 --no-numpy
# and the same without --model (the Q4_K_M file); the same 292283 token ids from both
# tokenizers:
#   llama.cpp on the F32 copy of the GGUF (fp32 products):      ppl 51.94111003049205
#   llama.cpp on the Q4_K_M GGUF itself (8-bit activations):     ppl 52.34611983306216
#   lmpress (the same on both files: it dequantizes to fp32):    ppl 51.94052309203685
# lmpress must stay within 1e-4 (relative) of llama.cpp's fp32 number (measured: -1.1e-5;
# llama.cpp keeps the KV cache in F16 and evaluates GELU through an fp16 table).
set -u
. "$(dirname "$0")/lib.bash"
G=${LMP_GEMMA3_GGUF:-${LMP_CACHE:-$HOME/.cache/lmpress}/gemma-3-270m-q4_k_m.gguf}
TEXT="$LMP_SHARED/data/wikitext2_test_join.txt"
if [ ! -f "$G" ]; then
    echo "skip: Gemma 3 GGUF '$G' absent (not in the shared data; set LMP_GEMMA3_GGUF)"
    exit 77
fi
[ -f "$TEXT" ] || lmp_skip "missing $TEXT"
lmp_workdir
LLAMA_CPP_PPL=51.94111003049205
TOL=1e-4
jfield() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; }

"$LMPRESS" eval --model "$G" --text "$TEXT" --ctx 512 --max-windows 4 --threads 2 --json \
    > ev.json 2> ev.err || { bad "eval"; cat ev.err; }
ppl=$(jfield ev.json ppl)
echo "lmpress ppl $ppl, llama.cpp $LLAMA_CPP_PPL"
near "$ppl" "$LLAMA_CPP_PPL" "$TOL" || bad "ppl $ppl is not within $TOL of llama.cpp's $LLAMA_CPP_PPL"
[ "$(jfield ev.json windows)" = 4 ] || bad "windows: $(jfield ev.json windows)"

# the model goes into a format-3 artifact: with every linear kept, the artifact
# is the source model with its ggml-quantized weights dequantized and stored as fp16, so
# the same perplexity to 1e-3 (measured: 51.91533 against 51.94052, -4.9e-4)
"$LMPRESS" compress --model "$G" --calib "$TEXT" --nsamples 4 --ctx 64 --threads 2 --keep '*' \
    --out k.h5 > k.out 2> k.err || { bad "compress --keep '*' of Gemma 3"; cat k.err; }
"$LMPRESS" eval --artifact k.h5 --text "$TEXT" --ctx 512 --max-windows 4 --threads 2 --json \
    > ka.json 2> ka.err || { bad "eval --artifact"; cat ka.err; }
pk=$(jfield ka.json ppl)
echo "every linear kept, from the artifact: ppl $pk"
near "$pk" "$ppl" 1e-3 || bad "the kept artifact's ppl $pk is not the source's $ppl"
exit $fail
