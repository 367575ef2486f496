#!/usr/bin/env bash
# trust_results - calibration sums and fine-tuning results are checked like AQLM results
# before the coordinator uses them (issue 10; cluster_badresult.sh does the AQLM results).
# Workers with LMP_FAULT_RESULT_CORRUPT=calnan|calneg send a Gram sum with a NaN or a
# negative diagonal, =ftnan|ftbig a tuned norm of NaN or 1e30:
#  1. independent mode, two calibration-corrupting workers and a good one: every bad sum is
#     refused (logged, naming the worker, the block and the problem) and its slice goes
#     to another worker; the artifact equals `lmpress compress`;
#  2. the same with --finetune and two tuning-corrupting workers;
#  3. only a calnan worker: the job fails with a message naming it and the problem, and no
#     layer is committed.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib "$T/cal.txt" --nsamples 4
     --ctx 64 --threads 1 --max-rounds 2 --adam-steps 20 --scheme 2x6g4 --keep '*mlp*'
     --mode independent --seed 5)
FT=(--finetune --ft-epochs 1)

"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > /dev/null 2> ref.err || { bad "compress"; cat ref.err; }
"$LMPRESS" compress "${JOB[@]}" "${FT[@]}" --out fref.h5 > /dev/null 2> fref.err ||
    { bad "compress --finetune"; cat fref.err; }

# run LOG OUT BAD... : a coordinator, a good worker and corrupting workers BAD; submit --wait
run() {
    local log=$1 out=$2 f; shift 2
    start_coord "$log" --max-attempts 10
    start_worker good ${GOOD_ENV[@]+"${GOOD_ENV[@]}"}
    for f in "$@"; do start_worker "bad$f" LMP_FAULT_RESULT_CORRUPT=$f; done
    for f in good "${@/#/bad}"; do
        wait_for 20 grep -q "worker '$f' joined" "$log" || bad "worker $f did not join"
    done
}

# 1. calibration sums
run c1.log a.h5 calnan calneg
timeout 180 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "submit --wait with calibration-corrupting workers (rc $?)"; tail -5 a.err; tail -20 c1.log; }
same_layers a.h5 ref.h5 || bad "artifact with calibration-corrupting workers differs"
grep -q "calibration result of block [0-9]* from 'badcal.*' refused: a Gram sum" c1.log ||
    bad "no refused calibration result logged"
kill "$CPID"; wait "$CPID" 2>/dev/null

# 2. fine-tuning results (the good worker starts its tasks late, so that the corrupting ones
#    get fine-tuning tasks whatever the timing)
GOOD_ENV=(LMP_FAULT_TASK_SLEEP_MS=400)
run c2.log f.h5 ftnan ftbig
GOOD_ENV=()
timeout 300 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" "${FT[@]}" --out f.h5 > f.out 2> f.err ||
    { bad "submit --wait --finetune with tuning-corrupting workers (rc $?)"; tail -5 f.err; tail -20 c2.log; }
same_layers f.h5 fref.h5 || bad "artifact with tuning-corrupting workers differs"
grep -q "fine-tuning result of block [0-9]* from 'badft.*' refused: tuned norms" c2.log ||
    bad "no refused fine-tuning result logged"
grep -q "committed after fine-tuning.*" c2.log || bad "no layer committed after fine-tuning"
kill "$CPID"; wait "$CPID" 2>/dev/null

# 3. only a corrupting worker
start_coord c3.log --max-attempts 3
start_worker badonly LMP_FAULT_RESULT_CORRUPT=calnan
timeout 120 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out b.h5 > b.out 2> b.err
rc=$?
[ "$rc" = 1 ] || bad "submit --wait with only a corrupting worker: rc $rc, want 1"
grep -q "failed.*'badonly' refused: a Gram sum is not finite" b.err c3.log ||
    { bad "the failure does not name the worker and the problem"; tail -3 b.err; }
grep -q "] .* committed (worker" c3.log && bad "a layer was committed"
grep -qi "AddressSanitizer\|runtime error" ./*.log && bad "sanitizer report"
exit $fail
