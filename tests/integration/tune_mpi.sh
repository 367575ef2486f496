#!/usr/bin/env bash
# tune_mpi - lmpress tune under mpirun: 2 data-parallel ranks give the artifact one process
# gives (every dataset identical: exact integer gradient sums, worker/tune.h); a 2-rank run
# stopped by SIGTERM checkpoints and resumes, as 1 rank, to the same artifact again (the
# checkpoint does not depend on the number of ranks). Pipeline stages (--stages 2: the blocks
# split between 2 ranks, activations and gradients between them) give it too, alone and
# as 2 stages x 2 replicas, and a stopped 2-stage run resumes as 1 process to it; ranks that
# are not a multiple of the stages are refused. Windows the original model writes (--data
# generate) are the same when 2 ranks write half of them each.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_mpi
lmp_need_cmds h5diff h5dump
lmp_workdir
stories_tune_setup
"$LMPRESS" tune "${TUNE[@]}" --out one.h5 --threads 2 2> one.log || { bad "tune, 1 process"; cat one.log; }
# --data generate: the original model writes the windows, 2 ranks half of them each
G=(--artifact a.h5 --model "$M/stories260K.bin" --data generate --ctx 96 --batch 4 --lr 1e-3
   --code-lr 1e-3 --steps 12)
"$LMPRESS" tune "${G[@]}" --out g1.h5 --threads 2 2> g1.log || { bad "tune --data generate"; cat g1.log; }
grep -q "generated 50 windows of 96 tokens" g1.log || { bad "no 12 x 4 + 2 generated windows"; cat g1.log; }
mpirun -n 2 "$LMPRESS" tune "${G[@]}" --out g2.h5 --threads 1 2> g2.log ||
    { bad "tune --data generate under mpirun -n 2"; cat g2.log; }
same_layers g1.h5 g2.h5 || bad "--data generate: 2 ranks differ from 1 process"
mpirun -n 2 "$LMPRESS" tune "${TUNE[@]}" --out two.h5 --threads 1 > two.out 2> two.log ||
    { bad "tune under mpirun -n 2"; cat two.log; }
same_layers one.h5 two.h5 || bad "2 ranks differ from 1 process"
[ "$(grep -c '^step 12/12' two.log)" = 1 ] || bad "want one progress line per step (rank 0 only)"

mpirun -n 2 "$LMPRESS" tune "${TUNE[@]}" --stages 2 --out p2.h5 --threads 1 > p2.out 2> p2.log ||
    { bad "tune --stages 2 under mpirun -n 2"; cat p2.log; }
same_layers one.h5 p2.h5 || bad "2 pipeline stages differ from 1 process"
grep -q "pipeline: 2 stages x 1 replicas" p2.log || bad "no pipeline notice for --stages 2"
[ "$(grep -c '^step 12/12' p2.log)" = 1 ] || bad "2 stages: want one progress line per step"
mpirun -n 4 "$LMPRESS" tune "${TUNE[@]}" --stages 2 --out p4.h5 --threads 1 > p4.out 2> p4.log ||
    { bad "tune --stages 2 under mpirun -n 4"; cat p4.log; }
same_layers one.h5 p4.h5 || bad "2 stages x 2 replicas differ from 1 process"
grep -q "pipeline: 2 stages x 2 replicas" p4.log || bad "no pipeline notice for 4 ranks"
mpirun -n 3 "$LMPRESS" tune "${TUNE[@]}" --stages 2 --out p3.h5 --threads 1 > p3.out 2> p3.log &&
    bad "3 ranks in 2 stages were accepted"
grep -q "multiple of 2 ranks (here 3)" p3.log || { bad "no reason for refusing 3 ranks"; cat p3.log; }
[ ! -e p3.h5 ] || bad "a refused run wrote p3.h5"

for mode in replicas stages; do
[ $mode = stages ] && ST=(--stages 2) || ST=()
rm -rf r.h5 r.h5.tune
LMP_TUNE_CKPT_EVERY_STEP=1 LMP_FAULT_ROUND_SLEEP_MS=200 mpirun -n 2 "$LMPRESS" tune "${TUNE[@]}" "${ST[@]}" --out r.h5 --threads 1 \
    > r1.out 2> r1.log &
MPID=$!
wait_for 60 grep -q "^step 5/" r1.log || bad "no step 5 in time"
kill -TERM "$MPID"; wait "$MPID"; rc=$?; MPID=
[ "$rc" != 0 ] || bad "a stopped mpirun exited 0"
[ -f r.h5.tune/checkpoint.h5 ] || { bad "no checkpoint after SIGTERM"; cat r1.log; }
"$LMPRESS" tune "${TUNE[@]}" --out r.h5 --threads 2 2> r2.log || { bad "resume as 1 process"; cat r2.log; }
grep -q "resuming" r2.log || bad "the resume did not resume"
same_layers one.h5 r.h5 || bad "2 ranks ($mode) stopped + 1 resumed differ from 1 process"
done
exit $fail
