#!/usr/bin/env bash
# cluster_dupname - worker names are unique among live workers, and a gone worker's name is
# free again (issue 10, item 7). A worker's routing id is its own (name, pid, random), its
# name travels in Hello:
#  1. a second worker named like a live one is refused at once: exit 3 and one line naming
#     the conflict (the holder's host and pid), not "cannot reach the coordinator"; the first
#     one keeps its place;
#  2. a hung holder (SIGSTOP) blocks nobody for long: once it is declared gone (missed
#     heartbeats) a worker of its name joins, and a job completes on it; the old one, resumed
#     (SIGCONT), is refused and exits 3;
#  3. a holder killed with -9 and restarted at once under its name joins without waiting for
#     the heartbeat timeout (its closed connection is seen), and runs a job.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 4
     --ctx 64 --threads 1 --max-rounds 2 --adam-steps 20 --scheme 2x6g4 --keep '*mlp*'
     --mode independent --seed 5)
host=$(hostname)
joined() { [ "$(grep -c "worker 'w1' joined" c.log)" -ge "$1" ]; }
gone() { kill -0 "$1" 2> /dev/null && return 1; return 0; }
# w1 LOG: one more worker named w1, logging to LOG: W
w1() {
    "$LMPRESS" worker --connect "$EP" --name w1 --verbose 2> "$1" &
    W=$!
    PIDS+=("$W")
}
# second NAME LOG: a worker that should be refused; sets rc
second() {
    timeout 20 "$LMPRESS" worker --connect "$EP" --name "$1" --timeout 10000 > /dev/null 2> "$2"
    rc=$?
}

start_coord c.log # heartbeat timeout 2 s
w1 w1-a.log
wait_for 20 joined 1 || { bad "worker w1 did not join"; tail -5 w1-a.log; }

# 1. a second live w1 is refused, naming the holder
second w1 dup.err
echo "second w1: exit $rc: $(cat dup.err)"
[ "$rc" = 3 ] || bad "second worker 'w1': exit $rc, not 3"
grep -qx "lmpress: worker 'w1' refused: a live worker of that name is connected from $host (pid $W)" dup.err ||
    bad "the refusal does not name the conflict: $(cat dup.err)"
[ "$(wc -l < dup.err)" = 1 ] || bad "the refusal is not one line"
grep -q "cannot reach" dup.err && bad "refusal reported as an unreachable coordinator"
grep -q "worker 'w1' refused: a live worker of that name" c.log || bad "the coordinator did not log the refusal"
kill -0 "$W" 2> /dev/null || bad "the first w1 exited"
"$LMPRESS" workers --connect "$EP" > wk.out 2>&1
[ "$(grep -c '^worker w1 ' wk.out)" = 1 ] || bad "workers lists w1 not once: $(cat wk.out)"

# 2. a hung holder: refused while it may still be alive, replaced once it is declared gone
old=$W
kill -STOP "$old"
wait_for 10 grep -q "worker 'w1' silent for .*declared gone" c.log || bad "the hung w1 was not declared gone"
w1 w1-b.log
wait_for 20 joined 2 || { bad "the replacement of a hung w1 did not join"; tail -5 w1-b.log; }
timeout 60 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "job on the replacement (rc $?)"; tail -3 a.err; }
kill -CONT "$old"
rc=running
if wait_for 20 gone "$old"; then
    wait "$old"
    rc=$?
fi
echo "resumed old w1: exit $rc"
[ "$rc" = 3 ] || bad "the resumed old w1 exited $rc, not 3"
grep -q "refused: a live worker of that name is connected from $host (pid $W)" w1-a.log ||
    bad "the resumed old w1 was not refused by name: $(tail -1 w1-a.log)"
kill -0 "$W" 2> /dev/null || bad "the replacement exited"

# 3. killed with -9 and restarted at once
kill -9 "$W"
wait "$W" 2> /dev/null
w1 w1-c.log
wait_for 20 joined 3 || { bad "w1 restarted after kill -9 did not join"; tail -5 w1-c.log; }
grep -q "worker 'w1' disconnected and replaced by a worker of its name" c.log ||
    bad "the killed w1 was not replaced at once (waited for the heartbeat timeout?)"
timeout 60 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out b.h5 > b.out 2> b.err ||
    { bad "job on the restarted w1 (rc $?)"; tail -3 b.err; }
"$LMPRESS" workers --connect "$EP" --all > wk.out 2>&1
[ "$(grep -c '^worker w1 ' wk.out)" = 1 ] || bad "workers --all lists w1 not once: $(cat wk.out)"
exit $fail
