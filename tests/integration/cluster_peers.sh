#!/usr/bin/env bash
# cluster_peers - clients cost the coordinator nothing once answered (issue 10, item 1):
# 400 `lmpress status` calls in a loop (more than the old fixed table of 256 peer slots,
# which kept each client 600 s), then a new worker joins, a job completes to the same
# artifact as `lmpress compress`, and status still answers.
set -u
: "${LMP_BUILD_DIR:?}"
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 4
     --ctx 64 --threads 2 --max-rounds 2 --adam-steps 20 --scheme 2x6g4 --keep '*mlp*'
     --mode independent --seed 5)

"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > /dev/null 2> ref.err || { bad "compress"; cat ref.err; }
start_coord c.log
for i in $(seq 1 400); do
    "$LMPRESS" status --connect "$EP" > st.out 2>&1 || { bad "status call $i: rc $?: $(cat st.out)"; break; }
done
start_worker w1
wait_for 20 grep -q "worker 'w1' joined" c.log || { bad "worker did not join"; tail -5 w-w1.log; }
timeout 120 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "submit --wait (rc $?)"; cat a.err; tail -20 c.log; }
same_layers a.h5 ref.h5 || bad "cluster artifact differs from lmpress compress"
"$LMPRESS" status --connect "$EP" > st.out 2>&1 || bad "status after the job: $(cat st.out)"
grep -q "too many" c.log st.out a.err && bad "peers refused: $(grep -h 'too many' c.log st.out a.err | head -3)"
exit $fail
