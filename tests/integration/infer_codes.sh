#!/usr/bin/env bash
# infer_codes - inference on AQLM codes (eval/generate --artifact, no dense copy of a
# quantized layer) gives the model the dense-decode path (--decode) gives, on stories260K:
#   1. an AQLM 2x8g4 artifact (independent mode, short settings; down_proj has n_in 172:
#      43 groups, a partial chunk of the lookup tables);
#   2. eval --artifact perplexity on the codes == --decode's within 1e-4 relative, at window
#      lengths that take each kernel path: ctx 4 (lookup tables, 4 rows: aq_matvec_packed's
#      24-bit tables where the table has it, else aq_matvec's fp32 ones; within 1e-5 there),
#      ctx 12 and ctx 64 with --batch 2 (decoded tiles + sgemm); the JSON says which weights
#      ran;
#   3. the same with every kernel table this CPU runs (LMP_KERNELS=ref, avx2, avx512), and
#      for a 1x16g8 artifact (decode-dot, tiles + sgemm);
#   4. 1 and 3 threads give the same perplexity on the codes;
#   5. generate --artifact streams text, the greedy continuation of --decode's, and prints
#      its rates on stderr;
#   6. --decode without --artifact, --artifact with --tokenizer: usage errors (exit 2);
#   7. where the SmolLM2 2x8g8 artifact is in the cache (LMP_CACHE, ~/.cache/lmpress/runs;
#      else skipped): generate --artifact, 2 threads (q, k, v and gate, up in one kernel call
#      each; the fp32 head that is Q8_0 exactly run on those blocks), gives --decode's greedy
#      text.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
head -c 60000 "$TXT" > cal.txt
tail -c 40000 "$TXT" > ev.txt
"$LMPRESS" compress --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt \
    --nsamples 8 --ctx 64 --threads 2 --max-rounds 2 --adam-steps 20 --mode independent \
    --scheme 2x8g4 --out a.h5 > compress.out 2> compress.err ||
    { bad "compress failed: $(tail -3 compress.err)"; exit $fail; }

# "ppl weights" of one eval (of a.h5 unless the arguments name another --artifact)
ev() {
    "$LMPRESS" eval --artifact a.h5 --text ev.txt --threads 2 --json "$@" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.9g %s" % (d["ppl"], d["weights"]))'
}
for args in "--ctx 4 --max-windows 60" "--ctx 12 --max-windows 30" "--ctx 64 --batch 2 --max-windows 8"; do
    tol=1e-4
    [ "${args:0:7}" = "--ctx 4" ] && tol=1e-5   # lookup tables: measured 7e-7 (24-bit), 4e-8 (fp32)
    read -r pd wd <<< "$(ev $args --decode)"
    read -r pc wc <<< "$(ev $args)"
    [ "$wd" = dense ] && [ "$wc" = codes ] || bad "eval $args: weights '$wd' / '$wc', not dense / codes"
    near "$pc" "$pd" $tol || bad "eval $args: ppl on the codes $pc, decoded $pd"
    echo "ok   eval $args: ppl on the codes $pc, decoded $pd"
    for k in ref avx2 avx512; do   # one this CPU lacks: lmpress warns and runs best
        read -r pk _ <<< "$(LMP_KERNELS=$k ev $args)"
        near "$pk" "$pd" $tol || bad "eval $args, kernels $k: ppl on the codes $pk, decoded $pd"
    done
done

# the thread count does not change the result (fixed chunks of groups, fixed sgemm blocks)
for args in "--ctx 4 --max-windows 30" "--ctx 12 --max-windows 10"; do
    r1=$(ev $args --threads 1)
    r3=$(ev $args --threads 3)
    [ -n "$r1" ] && [ "$r1" = "$r3" ] || bad "eval $args: 1 thread '$r1', 3 threads '$r3'"
done

# 1x16 (one codebook of 65536 entries: the decode-dot path, and tiles + sgemm at ctx 32);
# attention layers only, to keep it short
"$LMPRESS" compress --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt \
    --nsamples 4 --ctx 32 --threads 2 --max-rounds 1 --adam-steps 5 --mode independent \
    --scheme 1x16g8 --keep '*.mlp.*' --out b.h5 > compress16.out 2> compress16.err ||
    bad "compress 1x16g8 failed: $(tail -3 compress16.err)"
for args in "--ctx 8 --max-windows 20" "--ctx 32 --max-windows 6"; do
    read -r pd _ <<< "$(ev $args --decode --artifact b.h5)"
    read -r pc _ <<< "$(ev $args --artifact b.h5)"
    near "$pc" "$pd" 1e-4 || bad "1x16 eval $args: ppl on the codes $pc, decoded $pd"
    echo "ok   1x16 eval $args: ppl on the codes $pc, decoded $pd"
done

gen() { "$LMPRESS" generate --artifact a.h5 --prompt "Once upon a time" -n 40 --threads 2 "$@"; }
gc=$(gen 2> gen.err) || bad "generate --artifact exited $?: $(tail -2 gen.err)"
gd=$(gen --decode 2> /dev/null) || bad "generate --artifact --decode exited $?"
[ ${#gc} -gt 30 ] && [ "${gc:0:16}" = "Once upon a time" ] || bad "generate --artifact: '$gc'"
[ "$gc" = "$gd" ] || bad "generate on the codes '$gc' differs from decoded '$gd'"
grep -q "generated tokens, .* tokens/s)" gen.err || bad "generate: no rates on stderr: $(cat gen.err)"
echo "ok   generate --artifact: $gc"

"$LMPRESS" eval --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --text ev.txt --decode \
    > /dev/null 2>&1
[ $? -eq 2 ] || bad "eval --decode without --artifact: not a usage error"
"$LMPRESS" generate --artifact a.h5 --tokenizer "$M/tok512.bin" --prompt x > /dev/null 2>&1
[ $? -eq 2 ] || bad "generate --artifact --tokenizer: not a usage error"

smol=${LMP_CACHE:-$HOME/.cache/lmpress}/runs/smollm2-2x8g8-seq-ft.h5
if [ -f "$smol" ]; then
    sg() { "$LMPRESS" generate --artifact "$smol" --prompt "The capital of France is" -n 24 --threads 2 --raw "$@"; }
    sc=$(sg 2> /dev/null) || bad "SmolLM2 generate --artifact exited $?"
    sd=$(sg --decode 2> /dev/null) || bad "SmolLM2 generate --artifact --decode exited $?"
    [ ${#sc} -gt 40 ] && [ "$sc" = "$sd" ] || bad "SmolLM2: on the codes '$sc', decoded '$sd'"
    echo "ok   SmolLM2 generate --artifact: $sc"
else
    echo "skip SmolLM2 generate: no $smol"
fi
exit $fail
