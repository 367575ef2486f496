#!/usr/bin/env bash
# mpi_run_pv - `mpirun -np 3 lmpress run JOB` of a JOB with `pv = true` (PV-Tuning after
# quantization), on stories260K: rank 0's coordinator runs the compression, then the tuning
# as its second job on the 2 worker ranks (data-parallel replicas); the quantized artifact
# (OUT.aqlm.h5) and the tuned one (OUT) equal `lmpress compress JOB`'s, dataset by dataset;
# the tuning's steps are printed; running the same command again finds both done. With
# `pv-stages = 2` the 2 worker ranks tune as one chain of 2 pipeline stages: the same
# tuned artifact.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_need_mpi
lmp_workdir
head -c 120000 "$TXT" > cal.txt
sed -n '1000,2000p' "$TXT" > tune.txt
cat > pv.job <<EOF2
model      = $M/stories260K.bin
tokenizer  = $M/tok512.bin
calib      = cal.txt
nsamples   = 12
ctx        = 96
max-rounds = 4
adam-steps = 50
scheme     = 2x4g4
keep       = *.down_proj
mode       = independent
seed       = 5
pv         = true
pv-data    = tune.txt
pv-steps   = 6
pv-batch   = 4
pv-lr      = 1e-3
out        = run.h5
EOF2
"$LMPRESS" compress pv.job --threads 2 --out ref.h5 > ref.out 2> ref.err ||
    { bad "compress JOB with pv"; cat ref.err; exit 1; }
timeout 300 mpirun -np 3 "$LMPRESS" run pv.job > r.out 2> r.err
rc=$?
[ $rc -eq 0 ] || { bad "mpirun -np 3 run (pv): exit $rc"; tail -20 r.err; }
grep -q "tune step 6/6" r.err || bad "no tuning step printed: $(tail -5 r.err)"
grep -q "(2 ranks)" r.err || bad "the tuning did not run on the 2 worker ranks: $(tail -3 r.err)"
same_layers ref.aqlm.h5 run.aqlm.h5 || bad "the quantized artifact differs from compress's"
same_layers ref.h5 run.h5 || bad "the tuned artifact differs from compress --pv's"
sum1=$(md5sum < run.h5)
timeout 120 mpirun -np 3 "$LMPRESS" run pv.job > r2.out 2> r2.err
rc=$?
[ $rc -eq 0 ] || { bad "the same run again: exit $rc"; tail -5 r2.err; }
grep -q "job [0-9]* done: run.h5" r2.out || bad "the second run did not end done: $(cat r2.out)"
grep -q "tune step" r2.err && bad "the second run tuned again: $(tail -3 r2.err)"
[ "$(md5sum < run.h5)" = "$sum1" ] || bad "the second run changed the tuned artifact"

sed 's/^out .*/out        = st.h5/' pv.job > st.job
echo "pv-stages  = 2" >> st.job
timeout 300 mpirun -np 3 "$LMPRESS" run st.job > s.out 2> s.err
rc=$?
[ $rc -eq 0 ] || { bad "mpirun -np 3 run (pv-stages 2): exit $rc"; tail -20 s.err; }
grep -q "tune step 6/6" s.err || bad "pv-stages 2: no tuning step printed: $(tail -5 s.err)"
grep -q "(2 ranks)" s.err || bad "pv-stages 2: not on the 2 worker ranks: $(tail -3 s.err)"
same_layers ref.h5 st.h5 || bad "the tuned artifact of 2 pipeline stages differs from compress --pv's"
"$LMPRESS" logs st.h5 > slog.out 2>&1
grep -q "pipeline: 2 stages x 1 replicas" slog.out || bad "pv-stages 2 ran no pipeline: $(grep -c . slog.out) log lines"
exit $fail
