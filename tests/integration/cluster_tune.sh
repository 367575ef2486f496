#!/usr/bin/env bash
# cluster_tune - PV-Tuning as a cluster job (`lmpress tune --connect EP --wait`), on
# stories260K:
#  1. two workers, --replicas 2: the job's artifact equals `lmpress tune`'s in one process,
#     dataset by dataset (exact integer gradient sums through the coordinator); `status`
#     shows the tuning's step, KL and ranks; `logs` has its steps; a second submission of the
#     same job while it runs is that job;
#  1b. the same two workers as 2 pipeline stages (--stages 2: the blocks split between them,
#     activations and gradients as sums through the coordinator): the same artifact again;
#  1c. --data generate (windows the original model writes) as 2 replicas: the same artifact
#     as one process;
#  2. a worker killed with -9 mid-run: the other rank is stopped, the job goes on from the
#     checkpoint on the workers left (one), and still ends with the same artifact;
#  3. the coordinator killed with -9 mid-run and restarted with its --state on the same port:
#     the workers stop their ranks (rank 0 checkpoints), the restarted coordinator resumes the
#     job from its state, `--wait` follows it, and the artifact is the same again;
#  4. refusals: an artifact that is not there is refused at submission (exit 4, naming it),
#     a text too short for one window fails the job at once (exit 4, not retried), and
#     --wait / --replicas without --connect is a usage error.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump timeout
lmp_workdir
stories_tune_setup
"$LMPRESS" tune "${TUNE[@]}" --out one.h5 --threads 2 2> one.log || { bad "tune, 1 process"; cat one.log; }
export LMPRESS_TIMEOUT_MS=5000

# 1. two replicas through the coordinator
start_coord c.log
start_worker w1 LMP_FAULT_ROUND_SLEEP_MS=600
start_worker w2 LMP_FAULT_ROUND_SLEEP_MS=600
timeout 300 "$LMPRESS" tune "${TUNE[@]}" --out two.h5 --connect "$EP" --wait --replicas 2 \
    > two.out 2> two.err &
SUB=$!
PIDS+=("$SUB")
tuning() { "$LMPRESS" status --connect "$EP" --json 2> /dev/null | grep -q '"step":[1-9]'; }
wait_for 120 tuning || bad "no tuning step in status: $(tail -3 two.err)"
"$LMPRESS" status --connect "$EP" --json > st.json 2>&1
grep -q '"ranks":2' st.json || bad "status does not show 2 ranks: $(cat st.json)"
grep -q '"kl":' st.json || bad "status has no KL: $(cat st.json)"
"$LMPRESS" tune "${TUNE[@]}" --out two.h5 --connect "$EP" --replicas 2 > again.out 2> again.err ||
    bad "the same tuning job submitted again: $(cat again.err)"
[ "$(sed -n 's/^job \([0-9]*\) submitted.*/\1/p' again.out)" = \
  "$(sed -n 's/^job \([0-9]*\) submitted.*/\1/p' two.out)" ] ||
    bad "the same job submitted again is another job: $(cat again.out two.out)"
wait "$SUB"
rc=$?
[ $rc = 0 ] || { bad "tune --connect --wait exit $rc"; cat two.err; }
grep -q "tune step 12/12" two.err || bad "--wait printed no last step: $(tail -3 two.err)"
same_layers one.h5 two.h5 || bad "2 replicas through the coordinator differ from 1 process"
"$LMPRESS" logs --connect "$EP" > logs.out 2>&1
grep -q "tune step 12/12" logs.out || bad "logs: no tuning step: $(tail -3 logs.out)"
"$LMPRESS" logs two.h5 > alog.out 2>&1
[ "$(grep -c 'tune step' alog.out)" -ge 12 ] || bad "the artifact's event log lacks the steps"

# 1b. two pipeline stages through the coordinator
timeout 300 "$LMPRESS" tune "${TUNE[@]}" --out st.h5 --connect "$EP" --wait --stages 2 \
    > st.out 2> st.err || { bad "tune --connect --stages 2 --wait exit $?"; cat st.err; }
same_layers one.h5 st.h5 || bad "2 pipeline stages through the coordinator differ from 1 process"
grep -q "pipeline: 2 stages x 1 replicas" w-w1.log w-w2.log ||
    bad "no rank ran as a pipeline stage: $(grep -h pipeline w-w1.log w-w2.log)"

# 1c. --data generate: each replica writes half of the windows, the same artifact as alone
G=("${TUNE[@]}"); G[5]=generate
[ "${TUNE[4]}" = --data ] || bad "TUNE changed: --data is not its fifth word"
"$LMPRESS" tune "${G[@]}" --out g1.h5 --threads 2 2> g1.log || { bad "tune --data generate"; cat g1.log; }
timeout 300 "$LMPRESS" tune "${G[@]}" --out g2.h5 --connect "$EP" --wait --replicas 2 \
    > g2.out 2> g2.err || { bad "tune --connect --data generate exit $?"; cat g2.err; }
same_layers g1.h5 g2.h5 || bad "--data generate: 2 replicas through the coordinator differ"

# 2. kill -9 of a rank's worker mid-run: resumed from the checkpoint on the worker left
LMP_TUNE_CKPT_EVERY_STEP=1 timeout 300 "$LMPRESS" tune "${TUNE[@]}" --out k.h5 --connect "$EP" \
    --wait --replicas 2 > k.out 2> k.err &
SUB=$!
PIDS+=("$SUB")
at_step() { "$LMPRESS" status --connect "$EP" --json 2> /dev/null | grep -q "\"step\":[4-9]"; }
wait_for 120 at_step || bad "the second job reached no step 4"
kill -9 "$WPID_w2"
wait "$WPID_w2" 2> /dev/null
wait "$SUB"
rc=$?
[ $rc = 0 ] || { bad "tune --wait exit $rc after a worker was killed"; cat k.err; }
grep -q "resumes from the checkpoint" c.log || bad "the coordinator did not restart the run"
grep -q '(1 rank)' k.err || bad "the run after the kill was not on 1 rank: $(tail -3 k.err)"
same_layers one.h5 k.h5 || bad "killed + resumed on fewer workers differs from 1 process"

# 3. kill -9 of the coordinator mid-run, restarted from its state
kill -TERM "$WPID_w1" 2> /dev/null
wait "$WPID_w1" 2> /dev/null
start_coord c2.log --state st
PORT=${EP##*:}
start_worker w3 LMP_FAULT_ROUND_SLEEP_MS=600
start_worker w4 LMP_FAULT_ROUND_SLEEP_MS=600
LMPRESS_RECONNECT_MS=60000 timeout 600 "$LMPRESS" tune "${TUNE[@]}" --out s.h5 --connect "$EP" \
    --wait --replicas 2 > s.out 2> s.err &
SUB=$!
PIDS+=("$SUB")
wait_for 120 at_step || bad "the third job reached no step 4"
kill -9 "$CPID"
wait "$CPID" 2> /dev/null
sleep 0.5
for _ in $(seq 1 40); do
    BIND="tcp://127.0.0.1:$PORT" try_coord c3.log --state st && break
    sleep 0.25
done
wait "$SUB"
rc=$?
[ $rc = 0 ] || { bad "tune --wait exit $rc across a coordinator restart"; cat s.err; tail -5 c3.log; }
grep -q "reconnected to the coordinator" s.err || bad "the client did not reconnect: $(tail -3 s.err)"
grep -q "stopping 'tune rank" w-w3.log w-w4.log || bad "no worker stopped its rank on the new session"
same_layers one.h5 s.h5 || bad "the run across a coordinator restart differs from 1 process"

# 4. refusals
"$LMPRESS" tune --artifact nothere.h5 --model "$M/stories260K.bin" --data tune.txt --out z.h5 \
    --connect "$EP" > z.out 2> z.err
rc=$?
[ $rc = 4 ] || bad "a missing artifact: exit $rc (want 4): $(cat z.err)"
grep -q "nothere.h5" z.err || bad "the refusal does not name the artifact: $(cat z.err)"
head -c 200 tune.txt > tiny.txt # far fewer tokens than one window: the ranks refuse it
runs0=$(grep -c "PV-Tuning run [0-9]*:" c3.log)
timeout 120 "$LMPRESS" tune --artifact a.h5 --model "$M/stories260K.bin" --data tiny.txt --ctx 96 \
    --out y.h5 --connect "$EP" --wait > y.out 2> y.err
rc=$?
[ $rc = 4 ] || bad "a tuning text too short: exit $rc (want 4): $(tail -2 y.err)"
grep -q "refused its input" y.err || bad "no refusal named: $(tail -2 y.err)"
[ "$(grep -c "PV-Tuning run [0-9]*:" c3.log)" = $((runs0 + 1)) ] ||
    bad "an input refusal was retried: $(grep 'PV-Tuning run' c3.log | tail -3)"
"$LMPRESS" tune "${TUNE[@]}" --out z.h5 --wait > /dev/null 2> u.err
[ $? = 2 ] || bad "--wait without --connect is not a usage error: $(cat u.err)"
exit $fail
