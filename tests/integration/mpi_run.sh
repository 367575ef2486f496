#!/usr/bin/env bash
# mpi_run - `mpirun -np N lmpress run JOB` on stories260K, independent mode, one host:
#  1. -np 3 (coordinator on loopback without keys, 2 worker ranks): the artifact equals
#     `lmpress compress` of the same JOB dataset for dataset (h5diff; the event log aside),
#     exit code 0 on every rank;
#  2. -np 1 (coordinator + one in-process worker): the same artifact;
#  3. a bad JOB file: exit code 2 (the JOBFILE:LINE message), on every rank;
#  4. SIGTERM to the ranks mid-job: exit 130, committed layers and OUT.state kept, and
#     the same command again resumes to the same artifact.
# Skipped (77) when lmpress was built without MPI or mpirun is missing (fails under CI).
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_need_mpi
lmp_workdir
head -c 120000 "$TXT" > cal.txt
mkdir jobs
cat > jobs/stories.job <<EOF
# stories260K, 2x6g4, independent mode (paths relative to this file)
model      = $M/stories260K.bin
tokenizer  = $M/tok512.bin
calib      = ../cal.txt
nsamples   = 12
ctx        = 96
max-rounds = 4
adam-steps = 50
scheme     = 2x6g4
keep       = *.down_proj
mode       = independent
seed       = 5
out        = ../mpi3.h5
EOF

# reference: lmpress compress of the same JOB (the command line overrides its out)
"$LMPRESS" compress jobs/stories.job --threads 2 --out ref.h5 > ref.out 2> ref.err ||
    { bad "compress JOB"; cat ref.err; }

# 1. three ranks
timeout 300 mpirun -np 3 "$LMPRESS" run jobs/stories.job > r3.out 2> r3.err
rc=$?
[ $rc -eq 0 ] || { bad "mpirun -np 3: exit $rc"; tail -20 r3.err; }
grep -q "2 worker ranks" r3.err || bad "no coordinator line: $(head -3 r3.err)"
# one host: loopback, no keys (the multi-host path is mpi_run_remote.sh)
grep -q "coordinator on tcp://127.0.0.1:" r3.err || bad "one host but not loopback: $(head -1 r3.err)"
grep -q "CURVE" r3.err && bad "one host but CURVE keys: $(head -1 r3.err)"
grep -q "30/30 layers done" r3.err || bad "no progress to 30/30"
same_layers mpi3.h5 ref.h5 || bad "mpirun -np 3 artifact differs from lmpress compress"

# 2. one rank: coordinator + an in-process worker
timeout 300 mpirun -np 1 "$LMPRESS" run jobs/stories.job --out mpi1.h5 > r1.out 2> r1.err ||
    { bad "mpirun -np 1"; tail -20 r1.err; }
same_layers mpi1.h5 ref.h5 || bad "mpirun -np 1 artifact differs"

# 3. a bad JOB: 2 everywhere, and the message names the line
printf 'model = x\nbits = nine\n' > bad.job
timeout 60 mpirun -np 2 "$LMPRESS" run bad.job > bad.out 2> bad.err
rc=$?
[ $rc -eq 2 ] || bad "bad JOB: exit $rc, expected 2"
grep -q "bad.job:2: bits wants an integer" bad.err || bad "bad JOB message: $(head -3 bad.err)"

# 4. SIGTERM mid-job (tasks slowed to 400 ms), then the same command resumes
sed 's|^out .*|out = ../term.h5|' jobs/stories.job > jobs/term.job
LMP_FAULT_TASK_SLEEP_MS=400 mpirun -np 2 -x LMP_FAULT_TASK_SLEEP_MS "$LMPRESS" run jobs/term.job \
    > t1.out 2> t1.err &
MPID=$!
for _ in $(seq 1 600); do
    n=$(ls term.h5.parts 2>/dev/null | grep -c '^layer-' || true)
    [ "$n" -ge 3 ] && break
    sleep 0.05
done
# as Slurm does on preemption: SIGTERM to every rank (mpirun's children)
ranks=$(pgrep -P "$MPID")
[ -n "$ranks" ] && kill -TERM $ranks
wait "$MPID"
rc=$?
MPID=
[ $rc -eq 130 ] || { bad "SIGTERM: exit $rc, expected 130"; tail -5 t1.err; }
[ -d term.h5.state ] || bad "no state directory after SIGTERM"
[ ! -f term.h5 ] || bad "the job finished before the SIGTERM"
kept=$(ls term.h5.parts 2>/dev/null | grep -c '^layer-')
timeout 300 mpirun -np 2 "$LMPRESS" run jobs/term.job > t2.out 2> t2.err ||
    { bad "resume after SIGTERM"; tail -20 t2.err; }
grep -q "resuming job" t2.err || bad "the state directory was not used to resume"
same_layers term.h5 ref.h5 || bad "artifact after SIGTERM + resume differs"
exit $fail
