#!/usr/bin/env bash
# cluster_rows - one layer in row shards (TASK_KIND_QUANTIZE_ROWS, submit --row-shards) on
# loopback, stories260K, independent mode:
#  1. two workers: every layer runs as 2 row shards whose sums the coordinator adds; the job
#     completes; each layer's relative error is within 2% (relative) of the single-process
#     run's (the sharded sums differ from the unsharded ones in fp32 rounding only; the
#     in-process bound is tests/unit/test_aq_rows.c), and so is the perplexity;
#  2. a row-shard worker killed with -9 mid-layer: its layer's shards are cancelled and the
#     layer requeued; the job completes.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
head -c 120000 "$TXT" > cal.txt
head -c 20000 "$TXT" > ev.txt
export LMPRESS_TIMEOUT_MS=10000
WORKER_ARGS=(--threads 1)
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 12
     --ctx 96 --threads 1 --max-rounds 2 --scheme 2x6g4 --keep '*.down_proj' --keep '*self_attn*'
     --mode independent --seed 5)

"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > ref.out 2> ref.err || { bad "compress"; cat ref.err; }

# 1. two workers, every layer in two row shards
start_coord c1.log
start_worker w1
start_worker w2
timeout 300 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --row-shards 2 --out a.h5 > a.out 2> a.err ||
    { bad "submit --row-shards 2 (rc $?)"; cat a.err; tail -30 c1.log; }
n_sh=$(grep -c "committed (2 row shards" c1.log)
[ "$n_sh" -ge 10 ] || bad "only $n_sh layers committed from 2 row shards"
grep -q "rows \[0, [0-9]*) -> worker 'w[12]' (shard 1 of 2" c1.log || bad "no shard 1 assignment"
grep -q "rows \[[1-9][0-9]*, [0-9]*) -> worker 'w[12]' (shard 2 of 2" c1.log || bad "no shard 2 assignment"
# per layer: the cluster's rel err against the single-process one
grep -o "\] [^ ]* committed (2 row shards, rel err [0-9.e+-]*" c1.log |
    sed "s/\] \([^ ]*\) .*rel err \(.*\)/\1 \2/" | sort > a.rel
python3 - "$T" <<'PY' || bad "per-layer errors"
import re, sys, subprocess, os
T = sys.argv[1]
a = dict(l.split() for l in open(os.path.join(T, "a.rel")) if l.strip())
ref = {}
for f in ("ref.err", "ref.out"):
    for l in open(os.path.join(T, f)):
        m = re.search(r"\] (\S+) rel err \S+ -> ([0-9.e+-]+),", l)
        if m: ref[m.group(1)] = float(m.group(2))
common = [k for k in a if k in ref]
if not common:
    print("no common layers between the cluster log and the compress output"); sys.exit(1)
worst = max(abs(float(a[k]) / ref[k] - 1) for k in common)
print("layers compared: %d, worst relative difference of the errors: %.4f" % (len(common), worst))
sys.exit(0 if worst < 0.02 else 1)
PY
pa=$(ppl a.h5); pr=$(ppl ref.h5)
echo "perplexity: row shards $pa, single process $pr"
python3 -c "import math,sys; a,r=float('$pa'),float('$pr'); sys.exit(0 if math.isfinite(a) and abs(a/r-1)<0.01 else 1)" ||
    bad "perplexity $pa vs $pr (tolerance 1%)"

# 2. kill -9 a row-shard worker mid-layer (its tasks sleep 4 s first: the other shard waits on
#    the first sum meanwhile)
start_worker slow LMP_FAULT_TASK_SLEEP_MS=4000
wait_for 10 grep -q "worker 'slow' joined" c1.log || bad "slow worker did not join"
"$LMPRESS" submit --connect "$EP" "${JOB[@]}" --row-shards 3 --out b.h5 > b.out 2> b.err || bad "submit b"
wait_for 30 grep -q "> worker 'slow' (shard" c1.log || bad "slow worker got no shard"
kill -9 "$WPID_slow"
wait_for 120 grep -q "job 2 done" c1.log || { bad "job 2 did not complete"; tail -20 c1.log; }
grep -q "row shards of '.*' stopped (worker 'slow' silent" c1.log || bad "the lost shard did not stop its layer"
[ -f b.h5 ] || bad "no artifact after a killed shard worker"
pb=$(ppl b.h5)
python3 -c "import math,sys; a,r=float('$pb'),float('$pr'); sys.exit(0 if math.isfinite(a) and abs(a/r-1)<0.01 else 1)" ||
    bad "perplexity after a killed shard $pb vs $pr"
[ $fail -eq 0 ] && echo "cluster_rows: ok"
exit $fail
