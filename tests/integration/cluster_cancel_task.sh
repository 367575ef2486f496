#!/usr/bin/env bash
# cluster_cancel_task - a cancel or a stop ends a worker's running task within about a second
# (issue 10: every task has its own cancel flag, polled by the stages with the process's stop;
# the worker and coordinator signal handlers request that stop). The worker's AQ rounds are
# slowed down (LMP_FAULT_ROUND_SLEEP_MS=1000, up to 64 rounds a layer), so a task left to run
# keeps its worker busy for many seconds:
#  1. `lmpress cancel` while the worker is mid-layer: the worker reports the task cancelled
#     and is idle again within 3 s, and the next job's first task runs on it;
#  2. SIGTERM to that worker mid-layer (the next job): it hands the task back and exits 0
#     within 2 s;
#  3. SIGTERM to a coordinator while it plans a job (--calib generate of 4000 x 256 tokens,
#     minutes of work): it exits 0 within 3 s.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 4
     --ctx 64 --threads 1 --max-rounds 64 --tol 1e-9 --adam-steps 20 --scheme 2x6g4
     --keep '*mlp*' --mode independent --seed 5)
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
under() { awk -v t="$1" -v l="$2" 'BEGIN { exit !(t < l) }'; }
n_tasks() { grep -c "worker w1: task 'model\.layers" w-w1.log; }
idle() { "$LMPRESS" workers --connect "$EP" 2> /dev/null | grep -q "^worker w1 *idle"; }
# stop PID: SIGTERM it and wait for its exit (kill -9 after 20 s); sets rc and took (seconds)
stop() {
    local pid=$1 t0 wd
    t0=$(now)
    kill -TERM "$pid"
    (sleep 20; kill -9 "$pid") > /dev/null 2>&1 &
    wd=$!
    wait "$pid"
    rc=$?
    took=$(since "$t0")
    kill "$wd" 2> /dev/null
}

start_coord c.log
start_worker w1 LMP_FAULT_ROUND_SLEEP_MS=1000
wait_for 20 grep -q "worker 'w1' joined" c.log || { bad "worker did not join"; tail -5 w-w1.log; }

# 1. cancel mid-layer
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "submit (rc $?)"; cat a.err; }
id=$(sed -n 's/^job \([0-9]*\) submitted.*/\1/p' a.out)
if wait_for 60 grep -q "worker w1: task 'model\.layers" w-w1.log; then
    sleep 2.5 # a few of its rounds
    t0=$(now)
    "$LMPRESS" cancel --connect "$EP" --job "$id" > cancel.out 2>&1 || bad "cancel: $(cat cancel.out)"
    wait_for 15 idle || bad "worker not idle 15 s after the cancel"
    took=$(since "$t0")
    echo "cancel: worker idle ${took}s after 'lmpress cancel'"
    under "$took" 3 || bad "the cancelled task kept the worker busy ${took}s (> 3 s)"
    grep -q "worker w1: task 'model\.layers.*' cancelled" w-w1.log ||
        bad "the worker did not report the task cancelled"
else
    bad "no quantization task started on the worker"; tail -5 w-w1.log
fi

# 2. the next job runs on the worker; SIGTERM to it mid-layer
n0=$(n_tasks)
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out b.h5 > b.out 2> b.err ||
    { bad "second submit (rc $?)"; cat b.err; }
more_tasks() { [ "$(n_tasks)" -gt "$n0" ]; }
if wait_for 60 more_tasks; then
    sleep 2.5
    stop "$WPID_w1"
    echo "SIGTERM: worker exited $rc ${took}s after the signal"
    [ "$rc" = 0 ] || bad "worker exit $rc after SIGTERM, not 0: $(tail -2 w-w1.log)"
    under "$took" 2 || bad "SIGTERM took ${took}s to stop the worker mid-task (> 2 s)"
    wait_for 5 grep -q "worker 'w1' handed back" c.log || bad "the task was not handed back"
else
    bad "the next job's task did not start on the worker"; tail -5 w-w1.log
fi
kill -TERM "$CPID"

# 3. SIGTERM to a coordinator planning a job that takes minutes to plan
start_coord c3.log
"$LMPRESS" submit --connect "$EP" --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" \
    --calib generate --nsamples 4000 --ctx 256 --threads 1 --scheme 2x4g4 --out g.h5 \
    > g.out 2> g.err || { bad "submit of the generating job (rc $?)"; cat g.err; }
sleep 1
stop "$CPID"
echo "SIGTERM: coordinator exited $rc ${took}s after the signal, while planning"
[ "$rc" = 0 ] || bad "coordinator exit $rc after SIGTERM, not 0: $(tail -2 c3.log)"
under "$took" 3 || bad "SIGTERM took ${took}s to stop the coordinator while it planned (> 3 s)"
exit $fail
