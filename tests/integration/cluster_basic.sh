#!/usr/bin/env bash
# cluster_basic - lmpress coordinator + workers on loopback, stories260K, independent mode:
#  1. two workers, submit --wait: the artifact equals `lmpress compress --mode independent`
#     dataset for dataset (h5diff), with the same seed;
#  2. a worker killed with -9 mid-task: the task is requeued, the job completes, same artifact;
#     bad peers (garbage frames, another protocol version) hit the coordinator during the job
#     and are refused without disturbing it;
#  3. cancel mid-job: workers stop within seconds, committed layers are kept, and a new
#     submit of the same job resumes them (not redone) to the same artifact;
#  4. a coordinator killed with -9 and restarted with the same --state resumes its job;
#  5. independent --finetune (block fine-tuning tasks on the original model's activations)
#     on two workers equals `lmpress compress --mode independent --finetune`; an unreachable
#     coordinator is exit code 3; a refused job (a scheme that does not fit) is exit code 1.
# Every wait is bounded, so a broken build fails instead of hanging.
set -u
: "${LMP_BUILD_DIR:?}"
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 120000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 12
     --ctx 96 --threads 2 --max-rounds 4 --adam-steps 50 --scheme 2x6g4 --keep '*.down_proj'
     --mode independent --seed 5)

n_parts() { ls "$1.parts" 2>/dev/null | grep -c '^layer-'; }
has_parts() { [ "$(n_parts "$1")" -ge "$2" ]; }

# references: lmpress compress (embedded coordinator, one worker thread)
"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > /dev/null 2> ref.err || { bad "compress"; cat ref.err; }
FT=(--finetune --ft-epochs 1)
"$LMPRESS" compress "${JOB[@]}" "${FT[@]}" --out fref.h5 > /dev/null 2> fref.err ||
    { bad "compress --finetune"; cat fref.err; }

# 1. two workers
start_coord c1.log
start_worker w1
start_worker w2
timeout 300 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "submit --wait (rc $?)"; cat a.err c1.log; }
same_layers a.h5 ref.h5 || bad "cluster artifact differs from lmpress compress"
grep -q "30/30 layers done" a.err || bad "submit --wait: no progress lines"
"$LMPRESS" status --connect "$EP" --json > st.json || bad "status --json"
grep -q '"state":"done"' st.json || bad "status: job not done: $(cat st.json)"
grep -q '"id":"w1"' st.json && grep -q '"id":"w2"' st.json || bad "status: workers missing"
"$LMPRESS" workers --connect "$EP" > wk.txt || bad "workers"
grep -q "^worker w1 .*idle" wk.txt || bad "workers: $(cat wk.txt)"
for w in w1 w2; do
    n=$(grep -c "'$w'" c1.log)
    [ "$n" -gt 1 ] || bad "worker $w did no task"
done

# 2. kill -9 a worker mid-task (its tasks sleep 5 s first, so it is surely mid-task),
#    and bad peers during the job
start_worker slow LMP_FAULT_TASK_SLEEP_MS=5000
wait_for 10 grep -q "worker 'slow' joined" c1.log || bad "slow worker did not join"
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out b.h5 > b.out 2> b.err || bad "submit b"
wait_for 30 grep -q "> worker 'slow'" c1.log || bad "slow worker got no task"
kill -9 "$WPID_slow"
"$LMP_BUILD_DIR/tests/test_coord_peers" "$EP" > peers.out 2>&1 || { bad "bad peers"; cat peers.out; }
wait_for 60 grep -q "job 2 done" c1.log || { bad "job 2 did not complete"; tail -20 c1.log; }
grep -q "worker 'slow' silent for .*declared gone; task requeued" c1.log ||
    bad "the killed worker was not declared gone"
grep -q "refused 'time-traveller'" c1.log || bad "no version refusal logged"
same_layers b.h5 ref.h5 || bad "artifact after a killed worker differs"

# 3. cancel mid-job (tasks of 300 ms), then resume by submitting again
kill -TERM "$WPID_w1" "$WPID_w2"
wait "$WPID_w1" || bad "worker w1 exit code $? on SIGTERM"
wait "$WPID_w2" || bad "worker w2 exit code $? on SIGTERM"
start_worker w3 LMP_FAULT_TASK_SLEEP_MS=300
start_worker w4 LMP_FAULT_TASK_SLEEP_MS=300
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out c.h5 > c.out 2> c.err || bad "submit c"
wait_for 60 has_parts c.h5 4 || bad "no layers committed before the cancel"
"$LMPRESS" cancel --connect "$EP" > cancel.out 2>&1 || { bad "cancel"; cat cancel.out; }
grep -q "cancelled" cancel.out || bad "cancel: $(cat cancel.out)"
idle() { "$LMPRESS" workers --connect "$EP" > wk2.txt && ! grep -q "busy\|draining" wk2.txt; }
wait_for 5 idle || bad "workers still busy 5 s after the cancel: $(cat wk2.txt)"
kept=$(n_parts c.h5)
sleep 0.5
[ "$(n_parts c.h5)" -eq "$kept" ] || bad "layers committed after the cancel"
[ "$kept" -lt 30 ] || bad "the job finished before the cancel ($kept layers)"
[ ! -f c.h5 ] || bad "a cancelled job was finalized"
"$LMPRESS" status --connect "$EP" --json | grep -q '"state":"cancelled"' || bad "status after cancel"
timeout 300 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out c.h5 > c2.out 2> c2.err ||
    { bad "resubmit after cancel"; cat c2.err; }
grep -q "tasks ($kept already committed)" c1.log || bad "resubmit did not resume $kept layers"
same_layers c.h5 ref.h5 || bad "artifact after cancel + resume differs"

# 4. coordinator killed and restarted with its state directory
kill -9 "$CPID"
wait "$CPID" 2>/dev/null
start_coord c2.log --state st
LMP_FAULT_TASK_SLEEP_MS=300 "$LMPRESS" worker --connect "$EP" --name w5 2> w-w5.log &
PIDS+=("$!")
W5=$!
LMP_FAULT_TASK_SLEEP_MS=300 "$LMPRESS" worker --connect "$EP" --name w6 2> w-w6.log &
PIDS+=("$!")
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out d.h5 > d.out 2> d.err || bad "submit d"
wait_for 60 has_parts d.h5 4 || bad "no layers before the coordinator kill"
kill -9 "$CPID"
wait "$CPID" 2>/dev/null
port=${EP##*:}
for _ in $(seq 1 40); do   # the port may take a moment to be free again
    "$LMPRESS" coordinator --bind "tcp://127.0.0.1:$port" --state st --heartbeat-timeout 2000 \
        --verbose 2> c3.log &
    CPID=$!
    PIDS+=("$CPID")
    sleep 0.5
    kill -0 "$CPID" 2>/dev/null && break
done
wait_for 120 grep -q "job 1 done" c3.log || { bad "restarted coordinator did not finish"; tail c3.log; }
grep -q "resumed job 1 from" c3.log || bad "no resume from the state directory"
same_layers d.h5 ref.h5 || bad "artifact after a coordinator restart differs"

# 5. exit codes
timeout 300 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" "${FT[@]}" --out f.h5 > f.out 2> f.err ||
    { bad "submit --finetune --mode independent"; cat f.err; }
grep -q "block 4 fine-tuned by" c3.log || bad "no fine-tuning task ran"
same_layers f.h5 fref.h5 || bad "independent --finetune on two workers differs from lmpress compress"
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --scheme 2x6g5 --out e.h5 > /dev/null 2> e.err
[ $? -eq 1 ] || bad "a scheme that does not fit was not refused with 1"
grep -q "2x6g5 does not fit" e.err || bad "refusal message: $(cat e.err)"
LMPRESS_TIMEOUT_MS=500 "$LMPRESS" status --connect tcp://127.0.0.1:1 > /dev/null 2> u.err
[ $? -eq 3 ] || bad "unreachable coordinator is not exit code 3"
grep -q "cannot reach the coordinator at 'tcp://127.0.0.1:1'" u.err || bad "message: $(cat u.err)"
kill -TERM "$W5"
wait "$W5" || bad "worker exit code on SIGTERM"
kill -TERM "$CPID"
wait "$CPID" || bad "coordinator exit code on SIGTERM"
exit $fail
