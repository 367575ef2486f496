#!/usr/bin/env bash
# threads_invariant - the artifact does not depend on the thread count: `lmpress compress`
# on stories260K with --threads 1, 2 and 3 gives identical datasets (independent; sequential
# with fine-tuning), and `lmpress eval` the same perplexity at --threads 1 and 2.
# OpenBLAS runs one thread and every parallel stage splits its work in fixed blocks
# (docs/kernels.md "Thread invariance"); before that, --threads 1 and 2 differed in 53
# datasets.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 120000 "$TXT" > cal.txt
tail -c 50000 "$TXT" > eval.txt
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin")
CAL=(--calib cal.txt --nsamples 12 --ctx 96 --max-rounds 4 --adam-steps 50 --seed 5)
AQ=(--scheme 2x6g4 --keep '*.down_proj')

for job in independent seq_ft; do
    args=(--mode independent)
    [ $job = seq_ft ] && args=(--mode sequential --finetune --ft-epochs 1)
    for t in 1 2 3; do
        "$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" "${args[@]}" --threads $t \
            --out "$job-t$t.h5" > "$job-t$t.out" 2>&1 ||
            { bad "$job --threads $t"; tail -3 "$job-t$t.out"; }
    done
    for t in 2 3; do
        r=$(same_layers "$job-t1.h5" "$job-t$t.h5") ||
            bad "$job: --threads $t artifact differs from --threads 1: $r"
    done
done

e1=$("$LMPRESS" eval --artifact independent-t1.h5 --text eval.txt --ctx 128 --threads 1 --json)
e2=$("$LMPRESS" eval --artifact independent-t1.h5 --text eval.txt --ctx 128 --threads 2 --json)
p1=$(echo "$e1" | sed -n 's/.*"ppl":\([^,]*\).*/\1/p')
p2=$(echo "$e2" | sed -n 's/.*"ppl":\([^,]*\).*/\1/p')
[ -n "$p1" ] && [ "$p1" = "$p2" ] || bad "eval ppl at --threads 1 '$p1' != --threads 2 '$p2'"

exit $fail
