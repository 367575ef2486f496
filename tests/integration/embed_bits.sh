#!/usr/bin/env bash
# embed_bits - compress --embed-bits 8 / 4 stores the token embedding (stories260K: tied to the
# lm head) as Q8_0 / Q4_1 blocks, and the compressed model runs on them (docs/artifact.md,
# "Quantized tensors"; docs/inference.md), on stories260K:
#   1. the same 2x8g4 job at --embed-bits 16, 8 (JOB file key embed-bits) and 4: each file
#      smaller than the one before; inspect names the embedding's type and counts the same
#      parameters; the settings differ, so the fingerprints do, and 16 is the job of before
#      the option (no embed_bits in its settings);
#   2. eval --artifact perplexity of 8 bits within 1 % of 16 bits', 4 bits' within 10 %; on
#      the codes (the head on its blocks) equal to --decode's (the head widened) within 1e-4;
#   3. generate --artifact (the qmatvec head) streams the --decode greedy continuation;
#   4. an existing artifact is not resumed with other --embed-bits (EMISMATCH, exit 4);
#      --embed-bits 5 is a usage error (exit 2); export of a 4-bit artifact works.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5ls
lmp_workdir
head -c 60000 "$TXT" > cal.txt
tail -c 40000 "$TXT" > ev.txt
comp() { # comp OUT [options]: the job, at short settings
    local out=$1
    shift
    "$LMPRESS" compress --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt \
        --nsamples 8 --ctx 64 --threads 2 --max-rounds 2 --adam-steps 20 --mode independent \
        --scheme 2x8g4 --out "$out" "$@" > "$out.out" 2> "$out.err"
}
comp e16.h5 || { bad "compress --embed-bits 16 failed: $(tail -3 e16.h5.err)"; exit $fail; }
printf 'embed-bits = 8\n' > job8.txt
comp e8.h5 job8.txt || bad "compress with embed-bits = 8 in a JOB file failed: $(tail -3 e8.h5.err)"
comp e4.h5 --embed-bits 4 || bad "compress --embed-bits 4 failed: $(tail -3 e4.h5.err)"
[ $fail -eq 0 ] || exit $fail

# "file_bytes params embed_dtype" of an artifact
insp() {
    "$LMPRESS" inspect --json "$1" | python3 -c 'import json,sys; t=json.load(sys.stdin)["totals"]
print(int(t["file_bytes"]), int(t["params"]), t.get("embed_dtype", "-"))'
}
read -r b16 p16 t16 <<< "$(insp e16.h5)"
read -r b8 p8 t8 <<< "$(insp e8.h5)"
read -r b4 p4 t4 <<< "$(insp e4.h5)"
[ "$t16" = F32 ] && [ "$t8" = Q8_0 ] && [ "$t4" = Q4_1 ] || bad "embedding types '$t16' '$t8' '$t4'"
[ "$p16" = "$p8" ] && [ "$p8" = "$p4" ] || bad "parameters $p16 / $p8 / $p4 differ"
# stories260K's embedding: 512 x 64 fp32 = 131072 bytes; Q8_0 34816, Q4_1 20480. The files
# shrink by about that much; their event logs differ by a few KB with the timing, so the
# embedding's own dataset is what is compared exactly.
estore() { h5ls -v "$1/tensors/model.embed_tokens.weight" |
           sed -n 's/.*Storage: *\([0-9]*\) logical bytes.*/\1/p'; }
[ "$(estore e16.h5) $(estore e8.h5) $(estore e4.h5)" = "131072 34816 20480" ] ||
    bad "embedding datasets of $(estore e16.h5) / $(estore e8.h5) / $(estore e4.h5) bytes"
[ "$b8" -lt $((b16 - 80000)) ] && [ "$b4" -lt "$b16" ] ||
    bad "files do not shrink by the embedding: $b16 / $b8 / $b4 bytes"
"$LMPRESS" inspect e4.h5 | grep -q '^embedding Q4_1 (the lm head is tied to it)' ||
    bad "inspect does not name the 4-bit embedding"
"$LMPRESS" inspect e16.h5 | grep '^calib' | grep -q embed_bits && bad "16 bits named in the settings"
"$LMPRESS" inspect e4.h5 | grep '^calib' | grep -q 'embed_bits=4' ||
    bad "inspect: no embed_bits=4 in the settings"
echo "ok   sizes: $b16 / $b8 / $b4 bytes at 16 / 8 / 4 bits ($t16 $t8 $t4)"

ev() { # "ppl weights" of one eval
    "$LMPRESS" eval --text ev.txt --threads 2 --ctx 64 --max-windows 20 --json "$@" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.9g %s" % (d["ppl"], d["weights"]))'
}
read -r q16 _ <<< "$(ev --artifact e16.h5)"
for b in 8 4; do
    read -r pc wc <<< "$(ev --artifact e$b.h5)"
    read -r pd wd <<< "$(ev --artifact e$b.h5 --decode)"
    [ "$wc" = codes ] && [ "$wd" = dense ] || bad "eval $b bits: weights '$wc' / '$wd'"
    near "$pc" "$pd" 1e-4 || bad "eval $b bits: ppl on the blocks $pc, decoded $pd"
    tol=$([ $b = 8 ] && echo 0.01 || echo 0.1)
    near "$pc" "$q16" "$tol" || bad "eval $b bits: ppl $pc, 16 bits $q16 (tolerance $tol)"
    echo "ok   eval $b bits: ppl $pc (decoded $pd), 16 bits $q16"
    gen() { "$LMPRESS" generate --artifact e$b.h5 --prompt "Once upon a time" -n 40 --threads 2 "$@"; }
    gc=$(gen 2> gen.err) || bad "generate $b bits exited $?: $(tail -2 gen.err)"
    gd=$(gen --decode 2> /dev/null) || bad "generate $b bits --decode exited $?"
    [ ${#gc} -gt 30 ] && [ "$gc" = "$gd" ] || bad "generate $b bits: '$gc', decoded '$gd'"
done

# another --embed-bits is another job: the artifact is not resumed with it
comp e4.h5 --embed-bits 8
[ $? -eq 4 ] || bad "resume at other --embed-bits: not EMISMATCH (exit 4)"
grep -q "embed_bits" e4.h5.err || bad "the mismatch does not name embed_bits: $(tail -2 e4.h5.err)"
comp e5.h5 --embed-bits 5
[ $? -eq 2 ] || bad "--embed-bits 5: not a usage error"
"$LMPRESS" export --format hf-aqlm --out hf4 e4.h5 > export.out 2>&1 ||
    bad "export of the 4-bit artifact failed: $(tail -2 export.out)"
exit $fail
