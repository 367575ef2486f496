#!/usr/bin/env bash
# cluster_reconnect - the clients that follow a job (`submit --wait`, `status --watch`,
# `logs --follow`) across a restart of the coordinator (docs/cli.md, "Cluster"):
#  1. the coordinator is killed with -9 mid-job and restarted with the same --state and
#     --bind: each client opens a new session (Hello again), finds the job (resumed as a new
#     job, found by id or by its artifact) and follows it to its end: all three exit 0, the
#     job is done, the artifact is complete and equals `lmpress compress`'s, dataset by
#     dataset (independent mode is deterministic);
#  2. the coordinator killed and never restarted: all three exit 3 within their
#     LMPRESS_TIMEOUT_MS + LMPRESS_RECONNECT_MS (and a little);
#  3. `submit --wait` sent while no coordinator answers yet (one being restarted) waits for
#     it and runs the job; the same job submitted again while it runs is that job (same id:
#     a client that lost the answer may resend it), while another job is still refused;
#  4. a coordinator killed with -9 after a job ended and restarted with its state still
#     answers for that job (DIR/last.pb): status shows it done, with its artifact, and the
#     next job's id comes after it.
# Tasks are slowed down on the workers (LMP_FAULT_TASK_SLEEP_MS) so that the kill lands
# mid-job. Every wait is bounded.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5dump h5diff timeout
lmp_workdir
head -c 120000 "$TXT" > cal.txt
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 12
     --ctx 96 --threads 2 --max-rounds 4 --adam-steps 50 --scheme 2x6g4 --keep '*.down_proj'
     --mode independent --seed 5)
export LMPRESS_TIMEOUT_MS=5000

n_parts() { ls "$1.parts" 2>/dev/null | grep -c '^layer-'; }
has_parts() { [ "$(n_parts "$1")" -ge "$2" ]; }
job_running() {
    "$LMPRESS" status --connect "$EP" --json 2> /dev/null | grep -q '"state":"running","model"'
}
slow_workers() {
    local w
    for w in "$@"; do
        LMP_FAULT_TASK_SLEEP_MS=250 "$LMPRESS" worker --connect "$EP" --name "$w" \
            --timeout 120000 2> "w-$w.log" &
        PIDS+=("$!")
    done
}
restart_coord() { # LOG PORT ARG...: the same port again (it may take a moment to be free)
    local log=$1 port=$2
    shift 2
    for _ in $(seq 1 40); do
        BIND="tcp://127.0.0.1:$port" try_coord "$log" "$@" && return 0
        sleep 0.25
    done
    return 1
}

# the reference artifact, in one process
"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > ref.out 2>&1 || { bad "compress"; cat ref.out; }

# 1. kill -9 mid-job, restart with the same state and port
start_coord c1.log --state st
slow_workers w1 w2
export LMPRESS_RECONNECT_MS=60000
timeout 300 "$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out a.h5 --wait > sub.out 2> sub.err &
SUB=$!
wait_for 60 job_running || bad "the job did not start: $(cat sub.err)"
timeout 300 "$LMPRESS" status --connect "$EP" --watch --interval 0.3 > watch.out 2> watch.err &
WATCH=$!
timeout 300 "$LMPRESS" logs --connect "$EP" --follow > logs.out 2> logs.err &
LOGS=$!
PIDS+=("$SUB" "$WATCH" "$LOGS")
wait_for 120 has_parts a.h5 6 || bad "no 6 layers committed"
kill -9 "$CPID"
wait "$CPID" 2> /dev/null
[ ! -f a.h5 ] || bad "the job finished before the kill"
sleep 0.3 # a fast restart: the clients' sessions are unknown to the new coordinator
restart_coord c2.log "${EP##*:}" --state st || { bad "coordinator did not restart"; cat c2.log; }
wait "$SUB"
rc=$?
[ $rc -eq 0 ] || { bad "submit --wait exit $rc across the restart"; cat sub.err; }
wait "$WATCH"
rc=$?
[ $rc -eq 0 ] || { bad "status --watch exit $rc across the restart"; cat watch.err; }
wait "$LOGS"
rc=$?
[ $rc -eq 0 ] || { bad "logs --follow exit $rc across the restart"; cat logs.err; }
for e in sub.err watch.err logs.err; do
    grep -q "reconnected to the coordinator" "$e" || bad "$e: no reconnection: $(cat "$e")"
done
grep -q "job [0-9]* done: " sub.out || bad "submit --wait: $(cat sub.out)"
grep -q "^job [0-9]* done: 30/30 layers done" watch.out ||
    bad "status --watch did not end on the job done: $(grep '^job' watch.out | tail -2)"
[ "$(grep -c ' joined  *\[w1\]' logs.out)" -ge 2 ] ||
    bad "logs --follow: no line of the restarted coordinator: $(grep joined logs.out)"
grep -q "job_end .*done" logs.out || bad "logs --follow: no job_end event: $(tail -3 logs.out)"
grep -q "say Hello first" sub.err watch.err logs.err && bad "a client still says 'say Hello first'"
[ -f a.h5 ] && [ ! -d a.h5.parts ] || bad "artifact not assembled"
same_layers a.h5 ref.h5 || bad "the artifact across the restart differs from lmpress compress's"
kill -TERM "$CPID"
wait "$CPID" 2> /dev/null

# 2. the coordinator never comes back: exit 3 within LMPRESS_TIMEOUT_MS + LMPRESS_RECONNECT_MS
export LMPRESS_TIMEOUT_MS=1000 LMPRESS_RECONNECT_MS=3000
start_coord c3.log --state st3
slow_workers w3
timeout 120 "$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out b.h5 --wait > sub2.out 2> sub2.err &
SUB=$!
wait_for 60 job_running || bad "the second job did not start: $(cat sub2.err)"
timeout 120 "$LMPRESS" status --connect "$EP" --watch --interval 0.3 > watch2.out 2> watch2.err &
WATCH=$!
timeout 120 "$LMPRESS" logs --connect "$EP" --follow > logs2.out 2> logs2.err &
LOGS=$!
PIDS+=("$SUB" "$WATCH" "$LOGS")
sleep 1
kill -9 "$CPID"
t0=$(date +%s)
for p in "$SUB" "$WATCH" "$LOGS"; do
    wait "$p"
    rc=$?
    [ $rc -eq 3 ] || bad "client $p: exit $rc with the coordinator gone (want 3)"
done
t=$(($(date +%s) - t0))
[ "$t" -le 12 ] || bad "the clients took ${t}s to give up (timeout 1 s + reconnect 3 s)"
for e in sub2.err watch2.err logs2.err; do
    grep -q "cannot reach the coordinator at '$EP'" "$e" || bad "$e: $(cat "$e")"
done

# 3. submit --wait before the coordinator answers; a resent submission is the same job
export LMPRESS_TIMEOUT_MS=1000 LMPRESS_RECONNECT_MS=30000
PORT=${EP##*:}
timeout 120 "$LMPRESS" submit --connect "tcp://127.0.0.1:$PORT" "${JOB[@]}" --out d.h5 --wait \
    > sub3.out 2> sub3.err &
SUB=$!
PIDS+=("$SUB")
sleep 2.5
kill -0 "$SUB" 2> /dev/null || bad "submit --wait gave up at once with no coordinator: $(cat sub3.err)"
restart_coord c4.log "$PORT" || { bad "coordinator did not start on port $PORT"; cat c4.log; }
slow_workers w4
wait_for 60 job_running || bad "the waiting submission did not start its job: $(cat sub3.err)"
id1=$(sed -n 's/^job \([0-9]*\) submitted.*/\1/p' sub3.out)
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out d.h5 > again.out 2> again.err ||
    bad "the same job submitted again: exit $?: $(cat again.err)"
id2=$(sed -n 's/^job \([0-9]*\) submitted.*/\1/p' again.out)
[ -n "$id1" ] && [ "$id1" = "$id2" ] || bad "the same job submitted again is job '$id2', not '$id1'"
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out other.h5 > other.out 2> other.err &&
    bad "a second, different job was accepted while one runs: $(cat other.out)"
grep -q "one job at a time" other.err || bad "second job: $(cat other.err)"
wait "$SUB"
rc=$?
[ $rc -eq 0 ] || { bad "submit --wait (sent before the coordinator was up): exit $rc"; cat sub3.err; }
same_layers d.h5 ref.h5 || bad "the artifact of the waiting submission differs"
kill -TERM "$CPID"
wait "$CPID" 2> /dev/null

# 4. the ended job survives a restart of its coordinator
start_coord c5.log --state st5
PORT=${EP##*:}
slow_workers w5
timeout 120 "$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out e.h5 --wait > e.out 2> e.err ||
    bad "job e: $(tail -2 e.err)"
kill -9 "$CPID"
wait "$CPID" 2> /dev/null
restart_coord c6.log "$PORT" --state st5 || { bad "coordinator did not restart"; cat c6.log; }
"$LMPRESS" status --connect "$EP" --json > st5.json 2>&1
grep -q '"state":"done".*"out":"e.h5"' st5.json ||
    bad "the restarted coordinator does not know the ended job: $(cat st5.json)"
id_e=$(sed -n 's/^job \([0-9]*\) submitted.*/\1/p' e.out)
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out f.h5 > f.out 2> f.err
id_f=$(sed -n 's/^job \([0-9]*\) submitted.*/\1/p' f.out)
[ -n "$id_f" ] && [ "$id_f" -gt "$id_e" ] || bad "the next job is '$id_f', not after '$id_e'"
exit $fail
