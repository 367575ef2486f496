#!/usr/bin/env bash
# export_hf - lmpress export --format hf-aqlm on a stories260K artifact: the directory read back
# with the standard library (export_hf_check.py: safetensors layout, dtypes, shapes, values equal
# to the artifact's, config.json, tokenizer files), the summary, and the refusals and failures
# (non-empty DIR without --force, unknown format, an RTN artifact, a full disk, an unwritable
# place) with one-line messages and no half-written directory left.
# With LMP_HF_PYTHON set to a Python that has torch, transformers and aqlm, also loads the
# export with transformers on the CPU (scripts/ref/check_hf_export.py): perplexity, top-1.
set -u
. "$(dirname "$0")/lib.bash"
: "${LMP_SOURCE_DIR:?}"
lmp_need_stories
lmp_need_cmds h5dump python3
lmp_workdir
head -c 120000 "$TXT" > "$T/cal.txt"
tail -c 60000 "$TXT" > "$T/eval.txt"
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin")
CAL=(--calib "$T/cal.txt" --nsamples 8 --ctx 96 --threads 2 --max-rounds 2 --adam-steps 20)
# 2x8g4: 8-bit codes (int8 with negative values in aqlm's convention); g=4 divides n_in 172
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" --scheme 2x8g4 --keep '*.down_proj' \
    --mode independent --out "$T/a.h5" > /dev/null 2> "$T/c.err" || { cat "$T/c.err"; exit 1; }

# 1. export and read back
"$LMPRESS" export --format hf-aqlm --out "$T/hf" --json "$T/a.h5" > "$T/x.json" 2> "$T/x.err" ||
    { bad "export failed"; cat "$T/x.err"; }
grep -q '"scheme":"2x8g4","quantized":30,"kept":5' "$T/x.json" || bad "summary: $(cat "$T/x.json")"
grep -q '"rope_permuted":true' "$T/x.json" || bad "llama2.c q/k rows not permuted"
[ "$(ls "$T/hf" | tr '\n' ' ')" = "config.json model.safetensors tokenizer.json tokenizer_config.json " ] ||
    bad "files: $(ls "$T/hf" | tr '\n' ' ')"
want=$(printf '%o' $((0777 & ~$(umask))))   # the mode mkdir gives a directory here
[ "$(stat -c %a "$T/hf")" = "$want" ] || bad "DIR mode $(stat -c %a "$T/hf"), not $want"
python3 "$LMP_SOURCE_DIR/tests/integration/export_hf_check.py" "$T/hf" "$T/a.h5" \
    architectures=LlamaForCausalLM model_type=llama hidden_size=64 intermediate_size=172 \
    num_hidden_layers=5 num_attention_heads=8 num_key_value_heads=4 head_dim=8 vocab_size=512 \
    max_position_embeddings=512 tie_word_embeddings=true bos_token_id=1 eos_token_id=2 \
    torch_dtype=float16 || bad "the export does not read back as the artifact"
python3 - "$T/hf/config.json" <<'EOF' || bad "quantization_config"
import json, sys
q = json.load(open(sys.argv[1]))["quantization_config"]
assert (q["num_codebooks"], q["nbits_per_codebook"], q["in_group_size"]) == (2, 8, 4), q
keep = q["linear_weights_not_to_quantize"]
assert "model.layers.3.mlp.down_proj.weight" in keep and "model.layers.3.mlp.down_proj" in keep, keep
assert not any("q_proj" in k for k in keep), keep
EOF

# 2. refusals: a non-empty DIR without --force (exit 1, DIR untouched), then replaced with it
touch "$T/hf/mine.txt"
out=$("$LMPRESS" export --format hf-aqlm --out "$T/hf" "$T/a.h5" 2>&1); rc=$?
[ $rc = 1 ] || bad "non-empty DIR: exit $rc"
echo "$out" | grep -q "^lmpress: .*hf' is not empty: use --force" || bad "non-empty DIR: '$out'"
[ -f "$T/hf/mine.txt" ] || bad "non-empty DIR was touched"
"$LMPRESS" export --format hf-aqlm --out "$T/hf" --force "$T/a.h5" > /dev/null 2>&1 || bad "--force"
[ ! -e "$T/hf/mine.txt" ] && [ -f "$T/hf/model.safetensors" ] || bad "--force did not replace DIR"
"$LMPRESS" export --format gguf --out "$T/g" "$T/a.h5" > /dev/null 2>&1; rc=$?
[ $rc = 2 ] || bad "unknown format: exit $rc"
"$LMPRESS" export "$T/a.h5" > /dev/null 2>&1; rc=$?
[ $rc = 2 ] || bad "no --out: exit $rc"
"$LMPRESS" compress "${MOD[@]}" --method rtn --bits 2 --group 4 --out "$T/rtn.h5" > /dev/null 2>&1 ||
    bad "compress rtn"
out=$("$LMPRESS" export --out "$T/r" "$T/rtn.h5" 2>&1); rc=$?
[ $rc = 4 ] || bad "RTN artifact: exit $rc"
echo "$out" | grep -q "^lmpress: .*rtn" || bad "RTN artifact: '$out'"
[ ! -e "$T/r" ] || bad "RTN artifact: DIR created"

# 3. failures: a full disk and an unwritable place: one line naming the file, exit 1, nothing left
out=$(LMP_FAULT_WRITE_LIMIT=50000 "$LMPRESS" export --out "$T/full" "$T/a.h5" 2>&1); rc=$?
[ $rc = 1 ] || bad "full disk: exit $rc"
[ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q "full/model.safetensors': No space left" ||
    bad "full disk: '$out'"
out=$(LMP_FAULT_WRITE_LIMIT=50000 "$LMPRESS" export --force --out "$T/hf" "$T/a.h5" 2>&1) &&
    bad "full disk over an old export succeeded"
[ -f "$T/hf/model.safetensors" ] && [ -f "$T/hf/config.json" ] || bad "full disk: old DIR damaged"
out=$("$LMPRESS" export --out "$T/hf/config.json/x" "$T/a.h5" 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "config.json/x" || bad "unwritable place: exit $rc '$out'"
left=$(ls "$T" | grep -E '\.(tmp|old)-' || true)
[ -z "$left" ] || bad "left behind: $left"
[ ! -e "$T/full" ] || bad "full disk: DIR created"

# 4. optional: transformers + aqlm load it (CPU), perplexity and top-1 against lmpress
if [ -n "${LMP_HF_PYTHON:-}" ]; then
    "$LMP_HF_PYTHON" "$LMP_SOURCE_DIR/scripts/ref/check_hf_export.py" --hf "$T/hf" \
        --artifact "$T/a.h5" --text "$T/eval.txt" --ctx 128 --max-windows 40 \
        --lmpress "$LMPRESS" --threads 2 > "$T/ref.json" 2> "$T/ref.err" ||
        { bad "check_hf_export.py"; tail -5 "$T/ref.err"; }
    cat "$T/ref.json"
else
    echo "note: LMP_HF_PYTHON not set: transformers + aqlm loading not checked here"
fi
exit $fail
