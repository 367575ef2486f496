#!/usr/bin/env bash
# cluster_tune_queued - a PV-Tuning rank assigned to a worker whose stopped rank has not
# ended yet waits in that worker's queue; a cancel of the gang meanwhile must reach it.
#
# The coordinator is killed with -9 mid-run and restarted from its --state: the workers'
# new sessions stop their ranks, and w5's stopped rank takes 8 s to end
# (LMP_FAULT_STOP_SLEEP_MS), so the restarted coordinator's new gang waits behind it on w5.
# w6 is then killed: the coordinator stops the gang, and w5 reports its queued rank
# cancelled (it used to start it later and wait for ever for sums nobody sent, while the
# coordinator waited for that rank to stop). The job then ends on w5 alone, with the
# one-process artifact.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump timeout
lmp_workdir
stories_tune_setup
"$LMPRESS" tune "${TUNE[@]}" --out one.h5 --threads 2 2> one.log || { bad "tune, 1 process"; cat one.log; }
export LMPRESS_TIMEOUT_MS=5000

start_coord c.log --state st
PORT=${EP##*:}
start_worker w5 LMP_FAULT_ROUND_SLEEP_MS=600 LMP_FAULT_STOP_SLEEP_MS=8000
start_worker w6 LMP_FAULT_ROUND_SLEEP_MS=600
LMPRESS_RECONNECT_MS=60000 timeout 300 "$LMPRESS" tune "${TUNE[@]}" --out s.h5 --connect "$EP" \
    --wait --replicas 2 > s.out 2> s.err &
SUB=$!
PIDS+=("$SUB")
at_step() { "$LMPRESS" status --connect "$EP" --json 2> /dev/null | grep -q "\"step\":[2-9]"; }
wait_for 120 at_step || bad "the job reached no step 2"
kill -9 "$CPID"
wait "$CPID" 2> /dev/null
sleep 0.5
for _ in $(seq 1 40); do
    BIND="tcp://127.0.0.1:$PORT" try_coord c2.log --state st && break
    sleep 0.25
done
regang() { grep -q "PV-Tuning run 1: 2 ranks" c2.log; }
wait_for 60 regang || bad "the restarted coordinator started no gang of 2: $(tail -3 c2.log)"
kill -9 "$WPID_w6"
wait "$WPID_w6" 2> /dev/null
wait "$SUB"
rc=$?
[ $rc = 0 ] || { bad "tune --wait exit $rc"; tail -3 s.err; tail -5 c2.log; tail -5 w-w5.log; }
grep -q "cancelled before it started" w-w5.log ||
    bad "w5 reported no queued rank cancelled: $(tail -5 w-w5.log)"
grep -q '(1 rank)' s.err || bad "the job did not end on 1 rank: $(tail -3 s.err)"
same_layers one.h5 s.h5 || bad "the run differs from 1 process"
exit $fail
