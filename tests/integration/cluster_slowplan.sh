#!/usr/bin/env bash
# cluster_slowplan - the coordinator's loop never blocks on slow work. A coordinator process
# (--heartbeat-timeout 2000, lib.bash) and a worker process on loopback, stories260K; the
# fault hooks make planning a job (LMP_FAULT_PLAN_SLEEP_MS), reading committed blocks back
# for a sequential task (LMP_FAULT_READBACK_SLEEP_MS), adding a block's calibration sums
# (LMP_FAULT_ADD_SLEEP_MS, 1.5 s per add: 8 GB per slice of a 70B block) and finalizing the
# artifact (LMP_FAULT_FINALIZE_SLEEP_MS) each take longer than the heartbeat timeout or near
# it, so a loop that waited for them would declare its worker gone and leave status
# unanswered:
#  1. independent mode, 5 s plan and 5 s finalize: `lmpress status` answers within a second
#     all along (the job is "queued" while planned), a worker that says Hello during the plan
#     is welcomed at once, the submitter gets JobAccepted (after 2 s) instead of timing out,
#     and the artifact equals `lmpress compress`'s;
#  2. sequential mode, 2.5 s per read-back: status within a second, the same artifact as
#     `lmpress compress --mode sequential` (one worker: bit for bit);
#  3. a plan that fails after the submitter was answered shows the job failed, with why;
#  4. a sequential job cancelled while a read-back is in flight, and submitted again at once:
#     the artifact is closed (its lock released) before the new plan opens it, and the
#     resumed job gives the same artifact;
#  5. in none of the jobs is a worker declared gone.
set -u
: "${LMP_BUILD_DIR:?}"
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 2
     --ctx 64 --threads 2 --max-rounds 2 --adam-steps 20 --scheme 2x4g4 --keep '*.down_proj'
     --seed 7)

# status every 0.25 s until $1 exists: one line per answer, "<ms> <state>" (or "<ms> none")
poll_status() {
    local stop=$1 out=$2 t0 t1 st
    while [ ! -e "$stop" ]; do
        t0=$(date +%s%N)
        st=$(timeout 10 "$LMPRESS" status --connect "$EP" --json 2> /dev/null)
        t1=$(date +%s%N)
        st=$(python3 -c 'import json, sys
try:
    j = json.loads(sys.argv[1])["jobs"]
    print(j[0]["state"] if j else "none")
except Exception:
    print("none")' "$st")
        echo "$(( (t1 - t0) / 1000000 )) ${st:-none}" >> "$out"
        sleep 0.25
    done
}
slowest() { sort -n "$1" | tail -1 | cut -d' ' -f1; }

"$LMPRESS" compress "${JOB[@]}" --mode independent --out ref_ind.h5 > /dev/null 2> ref1.err ||
    { bad "compress independent"; cat ref1.err; }
"$LMPRESS" compress "${JOB[@]}" --mode sequential --out ref_seq.h5 > /dev/null 2> ref2.err ||
    { bad "compress sequential"; cat ref2.err; }

LMP_FAULT_PLAN_SLEEP_MS=5000 LMP_FAULT_FINALIZE_SLEEP_MS=5000 LMP_FAULT_READBACK_SLEEP_MS=2500 \
    LMP_FAULT_ADD_SLEEP_MS=1500 start_coord c.log

# 1. a slow plan and a slow finalize
poll_status stop1 st1.txt &
POLL=$!
PIDS+=("$POLL")
timeout 120 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --mode independent --out a.h5 \
    > a.out 2> a.err &
SUB=$!
PIDS+=("$SUB")
wait_for 10 grep -q "planning job 1" c.log || bad "the job is not being planned"
start_worker w1 LMP_FAULT_HELLO_SLEEP_MS=500   # says Hello while the job is planned
wait_for 2 grep -q "worker 'w1' joined" c.log || bad "a worker's Hello waited for the plan"
grep -q "job 1 accepted" c.log && bad "planning took no time: the fault hook is not on"
wait "$SUB" || { bad "submit --wait with a slow plan (rc $?)"; cat a.err; tail -20 c.log; }
touch stop1
wait "$POLL"
grep -q "finalizing" c.log || bad "no finalize logged"
grep -q "calibration slices added in" c.log || bad "no slow add of calibration sums logged"
grep -q " queued$" st1.txt || bad "status never showed the job queued: $(sort -u -k2 st1.txt | head)"
[ "$(slowest st1.txt)" -lt 1000 ] || bad "status took $(slowest st1.txt) ms (plan/finalize)"
# the job spans more than 10 s of fault sleeps; a poll (status, its JSON read, 0.25 s) takes
# 0.4-0.8 s on a loaded 2-core machine: at least 10 answers show status answered all along
[ "$(wc -l < st1.txt)" -ge 10 ] || bad "only $(wc -l < st1.txt) status answers in the job"
same_layers a.h5 ref_ind.h5 || bad "slow plan: the artifact differs from lmpress compress"

# 2. slow read-back of the committed blocks (sequential)
poll_status stop2 st2.txt &
POLL=$!
PIDS+=("$POLL")
timeout 300 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --mode sequential --out b.h5 \
    > b.out 2> b.err || { bad "submit --wait sequential (rc $?)"; cat b.err; tail -20 c.log; }
touch stop2
wait "$POLL"
grep -q "block 4 -> worker 'w1'" c.log || bad "no sequential calibration of block 4"
[ "$(slowest st2.txt)" -lt 1000 ] || bad "status took $(slowest st2.txt) ms (read-back)"
same_layers b.h5 ref_seq.h5 || bad "slow read-back: the artifact differs from lmpress compress"

# 3. a plan that fails late (an output folder that is not there)
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --mode independent --out "$T/nodir/e.h5" \
    > e.out 2> e.err || bad "submit of a job that fails while planned: refused at once ($(cat e.err))"
wait_for 10 grep -q "job 3 failed while planned" c.log || bad "the late plan failure is not logged"
"$LMPRESS" status --connect "$EP" --json > e.json
grep -q '"state":"failed"' e.json && grep -q "nodir" e.json ||
    bad "status after a late plan failure: $(head -c 300 e.json)"

# 4. cancelled during a read-back, resubmitted at once (its plan queued behind the close)
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --mode sequential --out d.h5 > d.out 2> d.err ||
    bad "submit d: $(cat d.err)"
wait_for 15 grep -q "job 4 accepted:" c.log || bad "job 4 not planned"
"$LMPRESS" cancel --connect "$EP" > /dev/null 2>&1 || bad "cancel job 4"
timeout 300 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --mode sequential --out d.h5 \
    > d2.out 2> d2.err || { bad "resubmit after a cancel during a read-back"; cat d2.err; }
same_layers d.h5 ref_seq.h5 || bad "cancel during a read-back + resume: the artifact differs"

# 5. nobody was declared gone
grep -q "declared gone" c.log && bad "a worker was declared gone: $(grep 'declared gone' c.log)"
kill -TERM "$WPID_w1" "$CPID"
wait "$CPID" || bad "coordinator exit code on SIGTERM"
exit $fail
