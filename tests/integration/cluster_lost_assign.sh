#!/usr/bin/env bash
# cluster_lost_assign - a TaskAssign the worker never runs is given up and assigned again.
# A worker that cannot unpack a TaskAssign (protobuf-c out of memory: fault_inject.sh,
# LMP_FAILINJECT=malloc:58086) drops it and goes on heartbeating idle; the coordinator
# compares the worker's heartbeats (running_tasks) with the lease it holds and, when none
# lists it for the heartbeat timeout (2 s here) after the assignment, requeues the work
# (not a failure). stories260K, sequential mode with block fine-tuning, one worker:
#  1. the worker drops its 1st, 6th and 11th TaskAssign (LMP_FAULT_DROP_ASSIGN): a
#     calibration slice, a layer and a block's fine-tuning; each is logged and recorded as
#     a "requeued" event naming the worker, and the artifact equals `lmpress compress`'s;
#  2. a worker whose every task starts 2.5 s late (longer than the heartbeat timeout;
#     LMP_FAULT_TASK_SLEEP_MS): its heartbeats list the task, nothing is requeued, and the
#     artifact is the same (a smaller job: one sequence, block 0 quantized).
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
WORKER_ARGS=(--threads 1)
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 4
     --ctx 64 --threads 1 --max-rounds 2 --scheme 2x6g4 --keep '*mlp*' --mode sequential --seed 5
     --finetune --ft-max-steps 5)

"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > /dev/null 2> ref.err || { bad "compress"; cat ref.err; }

# 1. three TaskAssigns dropped
start_coord c1.log
start_worker w1 LMP_FAULT_DROP_ASSIGN=1,6,11
wait_for 20 grep -q "worker 'w1' joined" c1.log || bad "worker w1 did not join"
timeout 120 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "submit --wait with dropped assignments (rc $?)"; tail -5 a.err; tail -20 c1.log; }
same_layers a.h5 ref.h5 || bad "artifact after dropped assignments differs from lmpress compress"
n=$(grep -c "TaskAssign .* dropped (LMP_FAULT_DROP_ASSIGN)" w-w1.log)
[ "$n" = 3 ] || bad "the worker dropped $n TaskAssigns, want 3"
for what in "calibration of sequences" "model.layers.0.self_attn.q_proj" "fine-tuning of block 0"; do
    grep -q "worker 'w1' does not run $what.*; assigned again" c1.log ||
        bad "no requeue logged for $what"
done
"$LMPRESS" logs a.h5 > ev.txt 2>&1 || bad "lmpress logs a.h5"
n=$(grep -c "requeued .*\[w1\]: worker 'w1' does not run" ev.txt)
[ "$n" = 3 ] || { bad "$n requeued events name the worker, want 3"; grep requeued ev.txt; }
grep -q "failed" ev.txt && bad "a dropped assignment counted as a failure"
kill "$CPID" "$WPID_w1"

# 2. tasks that start late are not taken back (blocks 1-4 kept whole: fewer tasks)
JOB+=(--nsamples 1 --keep 'model.layers.[1-4].*')
"$LMPRESS" compress "${JOB[@]}" --out refb.h5 > /dev/null 2> refb.err || { bad "compress 2"; cat refb.err; }
start_coord c2.log
start_worker slow LMP_FAULT_TASK_SLEEP_MS=2500
timeout 120 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out b.h5 > b.out 2> b.err ||
    { bad "submit --wait with a slow worker (rc $?)"; tail -5 b.err; tail -20 c2.log; }
same_layers b.h5 refb.h5 || bad "artifact with late-starting tasks differs from lmpress compress"
grep -q "does not run" c2.log && bad "a task that started late was requeued"
exit $fail
