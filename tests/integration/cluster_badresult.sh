#!/usr/bin/env bash
# cluster_badresult - the coordinator checks every result before it commits it (issue 10,
# item 2). Workers with LMP_FAULT_RESULT_CORRUPT=nan|inf|code|relerr send NaN codebooks,
# Inf scales, codes of 2^B, a relative error of -1e300:
#  1. four corrupting workers and a good one: every bad result is refused (logged, naming
#     the worker and the problem) and requeued; the job completes with the artifact of
#     `lmpress compress`;
#  2. only a corrupting worker: the job fails with a message naming the worker and the
#     problem, and no layer is committed.
set -u
: "${LMP_BUILD_DIR:?}"
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 4
     --ctx 64 --threads 1 --max-rounds 2 --adam-steps 20 --scheme 2x6g4 --keep '*mlp*'
     --mode independent --seed 5)

"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > /dev/null 2> ref.err || { bad "compress"; cat ref.err; }

# 1. corrupting workers and a good one (enough attempts that a layer can meet every bad one)
start_coord c1.log --max-attempts 10
start_worker good
for f in nan inf code relerr; do start_worker "bad$f" LMP_FAULT_RESULT_CORRUPT=$f; done
for w in good badnan badinf badcode badrelerr; do
    wait_for 20 grep -q "worker '$w' joined" c1.log || bad "worker $w did not join"
done
timeout 120 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "submit --wait with corrupting workers (rc $?)"; tail -5 a.err; tail -20 c1.log; }
same_layers a.h5 ref.h5 || bad "artifact with corrupting workers differs from lmpress compress"
grep -q "from 'bad.*' refused: " c1.log || bad "no refused result logged"
grep -q "committed (worker 'bad" c1.log && bad "a corrupting worker's layer was committed"
kill "$CPID"

# 2. only a corrupting worker: the job fails, nothing committed
start_coord c2.log
start_worker badonly LMP_FAULT_RESULT_CORRUPT=nan
timeout 120 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out b.h5 > b.out 2> b.err
rc=$?
[ "$rc" = 1 ] || bad "submit --wait with only a corrupting worker: rc $rc, want 1"
grep -q "failed.*'badonly' refused: codebooks not finite" b.err c2.log ||
    { bad "the failure does not name the worker and the problem"; tail -3 b.err; }
grep -q "] .* committed (worker" c2.log && bad "a layer was committed from a corrupting worker"
exit $fail
