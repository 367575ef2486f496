#!/usr/bin/env bash
# cluster_device - device workers (issue 14): `lmpress worker --device cuda:0` on a machine
# where no GPU can be used exits 1 with one line naming the problem (and a bad device name
# is a usage error, 2), before any coordinator is involved; a worker that reports a GPU
# (LMP_FAKE_DEVICE=cuda:0, tests only: it computes on the CPU) and a CPU worker share a
# job under the coordinator's throughput-weighted scheduling, the job gives the same
# artifact as `lmpress compress`, and `lmpress workers` / `lmpress status` show each
# worker's device. Where a GPU is usable, the refusal part is skipped (it would succeed).
set -u
: "${LMP_BUILD_DIR:?}"
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000

# --device cuda:0 without a usable GPU: one line, exit 1, no coordinator needed
timeout 20 "$LMPRESS" worker --connect tcp://127.0.0.1:1 --device cuda:0 > d.out 2> d.err
rc=$?
if [ $rc -eq 0 ] || grep -q "selected" d.err; then
    echo "note: a GPU is usable here; the no-GPU refusal is not checked"
else
    [ $rc -eq 1 ] || bad "--device cuda:0 without a GPU: exit $rc, want 1"
    [ "$(wc -l < d.err)" -eq 1 ] || bad "--device cuda:0: not one line: $(cat d.err)"
    grep -q "^lmpress: cannot use cuda:0: " d.err || bad "--device cuda:0: message: $(cat d.err)"
fi
timeout 20 "$LMPRESS" worker --connect tcp://127.0.0.1:1 --device gpu0 > d.out 2> d.err
rc=$?
[ $rc -eq 2 ] || bad "--device gpu0: exit $rc, want 2 (usage)"
grep -q "expected cpu, cuda:N or auto" d.err || bad "--device gpu0: message: $(cat d.err)"
if LMP_FAKE_DEVICE=tpu:0 timeout 20 "$LMPRESS" worker --connect tcp://127.0.0.1:1 > d.out 2> d.err ||
    ! grep -q "LMP_FAKE_DEVICE='tpu:0' is not cpu or cuda:N" d.err; then
    bad "a bad LMP_FAKE_DEVICE was not refused: $(cat d.err)"
fi

JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 4
     --ctx 64 --threads 2 --max-rounds 2 --adam-steps 20 --scheme 2x6g4 --keep '*mlp*'
     --mode independent --seed 5)
"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > /dev/null 2> ref.err || { bad "compress"; cat ref.err; }
start_coord c.log
start_worker g1 LMP_FAKE_DEVICE=cuda:0
start_worker c1 LMPRESS_DEVICE=cpu
wait_for 20 grep -q "worker 'g1' joined" c.log || { bad "g1 did not join"; tail -5 w-g1.log; }
wait_for 20 grep -q "worker 'c1' joined" c.log || { bad "c1 did not join"; tail -5 w-c1.log; }
grep -q "reporting device cuda:0 without using it" w-g1.log || bad "g1 did not say it fakes its device"
"$LMPRESS" workers --connect "$EP" > wk.out 2>&1 || bad "workers: $(cat wk.out)"
grep -q "^worker g1 .* cores cuda:0 " wk.out || bad "workers: g1 is not shown on cuda:0: $(cat wk.out)"
grep -q "^worker c1 .* cores cpu " wk.out || bad "workers: c1 is not shown on cpu: $(cat wk.out)"
timeout 120 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "submit --wait (rc $?)"; cat a.err; tail -20 c.log; }
same_layers a.h5 ref.h5 || bad "cluster artifact differs from lmpress compress"
"$LMPRESS" status --connect "$EP" > st.out 2>&1 || bad "status: $(cat st.out)"
grep -q "^worker g1 .* cores cuda:0 " st.out || bad "status: g1 is not shown on cuda:0: $(cat st.out)"
for w in g1 c1; do   # the scheduler gave both workers tasks
    n=$(sed -n "s/^worker $w .*  \([0-9]*\) done .*/\1/p" st.out)
    [ "${n:-0}" -gt 0 ] || bad "worker $w did no task: $(grep "^worker $w " st.out)"
done
grep "^worker " st.out
"$LMPRESS" status --connect "$EP" --json > st.json 2>&1 || bad "status --json: $(cat st.json)"
grep -q '"device":[[:space:]]*"cuda:0"' st.json || bad "status --json has no device cuda:0"
exit $fail
