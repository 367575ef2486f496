#!/usr/bin/env bash
# cluster_monitor - `lmpress status` and `lmpress logs` against a real coordinator and
# workers on loopback (stories260K, independent mode), and the job's events in the artifact:
#  1. mid-job, `status --json` shows layers pending, running and done, and the workers with
#     their heartbeats; a running layer shows its round and loss (the worker's TaskProgress);
#     `logs` (text and --json) shows the task events;
#  2. the coordinator killed with -9 mid-job: `lmpress logs ART.h5` reads the events from
#     ART.h5.parts; Ctrl-C of `status --watch` is exit 130;
#  3. restarted with its state directory, the job completes: `status --watch` ends with
#     exit 0, and the assembled artifact's /events holds events of both runs (h5dump reads it);
#  4. exit codes: a cancelled job's `status --watch` is 1, an unreachable coordinator 3,
#     a bad option 2, a missing artifact 4.
# Every wait is bounded, so a broken build fails instead of hanging.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5dump
lmp_workdir
head -c 120000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 12
     --ctx 96 --threads 2 --max-rounds 4 --adam-steps 50 --scheme 2x6g4 --keep '*.down_proj'
     --mode independent --seed 5)

n_parts() { ls "$1.parts" 2>/dev/null | grep -c '^layer-'; }
has_parts() { [ "$(n_parts "$1")" -ge "$2" ]; }

# 1. a job whose tasks take 400 ms or more each on two workers (100 ms, then 150 ms more
#    per optimisation round, so that a status poll sees a layer mid-way)
start_coord c1.log --state st || { bad "coordinator did not start"; cat c1.log; exit 1; }
for w in w1 w2; do
    LMP_FAULT_TASK_SLEEP_MS=100 LMP_FAULT_ROUND_SLEEP_MS=150 \
        "$LMPRESS" worker --connect "$EP" --name "$w" --timeout 60000 \
        2> "w-$w.log" &
    PIDS+=("$!")
done
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out a.h5 > sub.out 2> sub.err || { bad "submit"; cat sub.err; }
wait_for 60 has_parts a.h5 4 || bad "no layers committed"
"$LMPRESS" status --connect "$EP" --json > st1.json || bad "status --json exit $?"
[ "$(wc -l < st1.json)" -eq 1 ] || bad "status --json is not one document"
for s in pending running done; do
    grep -q "\"state\":\"$s\"" st1.json || bad "status --json: no layer $s: $(head -c 600 st1.json)"
done
grep -q '"state":"running","model"' st1.json || bad "status: job not running"
for w in w1 w2; do
    grep -q "\"id\":\"$w\",\"state\":\"\(busy\|idle\)\"" st1.json || bad "status: worker $w missing"
done
grep -Eq '"last_heartbeat_ms":[1-9][0-9]{11}' st1.json || bad "status: no worker heartbeat time"
grep -Eq '"heartbeat_age_s":[0-9.e-]+' st1.json || bad "status: no heartbeat age"
# a running layer's latest round, step of n_steps and a non-zero loss, from TaskProgress
RUNRX='"state":"running","worker":"w[12]","attempt":[0-9]+,"step":[1-9][0-9]*,'
RUNRX+='"n_steps":[1-9][0-9]*,"loss":(0\.[0-9]*[1-9]|[1-9])'
seen_step() { "$LMPRESS" status --connect "$EP" --json > stp.json && grep -Eq "$RUNRX" stp.json; }
wait_for 20 seen_step || bad "no running layer showed its step and loss: $(head -c 900 stp.json)"
grep -Eq '"id":"w[12]","state":"busy",[^}]*"layer":"model\.layers\.' stp.json ||
    bad "status: no busy worker on a layer: $(head -c 900 stp.json)"
"$LMPRESS" status --connect "$EP" > st1.txt || bad "status text"
grep -q "^job 1 running: [0-9]*/30 layers done" st1.txt || bad "status text: $(head -3 st1.txt)"
grep -q $'\033' st1.txt && bad "escape codes in status output that is not a terminal"
grep -q "^worker w1 " st1.txt || bad "status text: no worker line"
if command -v script > /dev/null; then   # on a terminal: progress bars
    script -qec "'$LMPRESS' status --connect '$EP'" /dev/null > st1.tty 2>&1 || bad "status on a tty"
    grep -Eq '\[[#-]{40}\] +[0-9]+%' st1.tty || bad "status on a tty: no progress bar: $(head -4 st1.tty)"
fi
"$LMPRESS" logs --connect "$EP" > l1.txt || bad "logs exit $?"
grep -q " assigned  *model\.layers\.[0-9]*\.[a-z_.]* \[w[12]\]: attempt 1$" l1.txt ||
    bad "logs: no assigned event: $(head -5 l1.txt)"
grep -q " done  *model.layers.*\[w[12]\]: \[[0-9]*/30\] rel err" l1.txt || bad "logs: no done event"
grep -q " joined  *\[w1\]" l1.txt || bad "logs: no joined event"
"$LMPRESS" logs --connect "$EP" --json --tail 3 > l1.json || bad "logs --json"
[ "$(wc -l < l1.json)" -eq 3 ] || bad "logs --tail 3 gave $(wc -l < l1.json) lines"
grep -q '"kind":"' l1.json || bad "logs --json: $(cat l1.json)"
"$LMPRESS" logs --connect "$EP" --worker w2 > l1w.txt || bad "logs --worker"
grep -q "\[w1\]" l1w.txt && bad "logs --worker w2 shows w1's events"

# 2. kill -9 of the coordinator mid-job: the events stay readable from the parts
wait_for 60 has_parts a.h5 8 || bad "no 8 layers"
kill -9 "$CPID"
wait "$CPID" 2>/dev/null
done_before=$(n_parts a.h5)
[ ! -f a.h5 ] || bad "the job finished before the kill"
"$LMPRESS" logs a.h5 > l2.txt 2> l2.err || { bad "logs on the parts: exit $?"; cat l2.err; }
n_done=$(grep -c "run 1 info  done " l2.txt)
[ "$n_done" -ge "$done_before" ] || bad "logs on the parts: $n_done done events for $done_before layers"
grep -q "run 1 info  open " l2.txt || bad "no open event: $(head -3 l2.txt)"
grep -q "run 1 info  assigned " l2.txt || bad "no assigned event in the parts"

# 3. restart (same port, same state): the job resumes and completes
port=${EP##*:}
for _ in $(seq 1 40); do   # the port may take a moment to be free again
    BIND="tcp://127.0.0.1:$port" try_coord c2.log --state st && break
    sleep 0.5
done
"$LMPRESS" status --connect "$EP" --watch --interval 0.2 > /dev/null 2>&1 &
WATCH=$!
PIDS+=("$WATCH")
sleep 1
kill -INT "$WATCH"
wait "$WATCH"
[ $? -eq 130 ] || bad "Ctrl-C of status --watch is not exit code 130"
timeout 180 "$LMPRESS" status --connect "$EP" --watch --interval 0.3 --json > w.json 2> w.err
rc=$?
[ $rc -eq 0 ] || { bad "status --watch exit $rc"; cat w.err; tail -20 c2.log; }
[ "$(wc -l < w.json)" -ge 2 ] || bad "status --watch --json: $(wc -l < w.json) refreshes"
tail -1 w.json | grep -q '"state":"done","model"' || bad "status --watch did not end on done"
[ -f a.h5 ] && [ ! -d a.h5.parts ] || bad "artifact not assembled"
"$LMPRESS" logs a.h5 > l3.txt || bad "logs on the final artifact"
grep -q "run 1 info  open " l3.txt || bad "final /events lacks run 1"
grep -q "run 2 info  resume " l3.txt || bad "final /events lacks run 2's resume"
grep -q "run 2 info  done " l3.txt || bad "final /events lacks run 2's layers"
grep -q "run 2 info  finalize " l3.txt || bad "final /events lacks the finalize event"
[ "$(grep -c ' info  done ' l3.txt)" -ge 30 ] || bad "fewer than 30 done events"
"$LMPRESS" logs a.h5 --json | grep -q '"run":2,' || bad "logs --json on the artifact"
h5dump -d /events/kind a.h5 > ev.dump 2>&1 || bad "h5dump /events/kind"
grep -q '"assigned"' ev.dump || bad "h5dump: $(head -20 ev.dump)"
h5dump -a /format_minor a.h5 | grep -q "(0): 1" || bad "format_minor is not 1"
"$LMPRESS" logs --connect "$EP" --follow > lf.txt || bad "logs --follow on an ended job: exit $?"
grep -q "job_end .*done" lf.txt || bad "logs --follow: no job_end event"

# 4. exit codes
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out c.h5 > /dev/null 2>&1 || bad "submit c"
"$LMPRESS" cancel --connect "$EP" > /dev/null 2>&1 || bad "cancel"
timeout 30 "$LMPRESS" status --connect "$EP" --watch > /dev/null
[ $? -eq 1 ] || bad "status --watch of a cancelled job is not 1"
"$LMPRESS" logs --connect "$EP" | grep -q " cancel .*cancelled by" || bad "no cancel event"
LMPRESS_TIMEOUT_MS=500 "$LMPRESS" status --connect tcp://127.0.0.1:1 > /dev/null 2>&1
[ $? -eq 3 ] || bad "status: unreachable is not 3"
LMPRESS_TIMEOUT_MS=500 "$LMPRESS" logs --connect tcp://127.0.0.1:1 > /dev/null 2>&1
[ $? -eq 3 ] || bad "logs: unreachable is not 3"
"$LMPRESS" status --interval 0 > /dev/null 2>&1
[ $? -eq 2 ] || bad "status --interval 0 is not a usage error"
"$LMPRESS" logs nothing.h5 > /dev/null 2> nf.err
[ $? -eq 4 ] || bad "logs on a missing artifact is not 4: $(cat nf.err)"
kill -TERM "$CPID"
wait "$CPID" || bad "coordinator exit code on SIGTERM"
exit $fail
