#!/usr/bin/env bash
# slurm_submit - deploy/slurm/lmpress.sbatch on a real one-node Slurm cluster (slurmctld +
# slurmd on loopback, generated slurm.conf, no munge, no systemd), stories260K, independent mode:
#  1. a submitted job completes (COMPLETED, exit 0:0), its artifact is complete (`lmpress
#     inspect`) and equals `lmpress compress` dataset for dataset (h5diff), the job log has the
#     template's start/end lines;
#  2. one job requeued twice once some layers are committed: by `scontrol requeue`
#     (preemption: SIGTERM to its tasks) and by the template itself on SIGUSR1 (what
#     --signal=B:USR1@300 sends before the time limit); each restart appends to the same log
#     and resumes the committed layers, and the artifact equals the uninterrupted run's.
#  3. the template's errors: no JOB file, and a bad JOB on a job with --gres=gpu:2 (two stand-in
#     GPUs): both FAILED with exit code 2, the GPUs in the start line, lmpress run's message.
#  4. GPU workers: --gres=gpu:2 and 4 tasks: local tasks 1 and 2 report cuda:0 and cuda:1
#     (LMPRESS_FAKE_GPUS=1), task 3 the CPU; the job completes to the reference artifact.
# Also: srun --mpi=pmix wires Open MPI ranks together (an MPI program on 3 tasks).
# Skipped (77) when the Slurm binaries are missing outside CI (deploy/setup.sh installs them),
# or when `lmpress run` does not exist. Daemons are stopped through their PID files and the
# temp dir removed on every exit path; every wait is bounded.
set -u
: "${LMPRESS:?}" "${LMP_SHARED:?}" "${LMP_SOURCE_DIR:?}"
export PATH="$PATH:/usr/sbin:/sbin"
TEMPLATE="$LMP_SOURCE_DIR/deploy/slurm/lmpress.sbatch"
. "$LMP_SOURCE_DIR/tests/integration/lib.bash"
lmp_need_stories
for b in slurmctld slurmd sbatch srun squeue scontrol scancel sinfo; do
    command -v "$b" >/dev/null || lmp_skip "missing the Slurm program '$b' (deploy/setup.sh installs slurmctld slurmd slurm-client)"
done
command -v h5diff >/dev/null && command -v h5dump >/dev/null || lmp_skip "missing h5diff/h5dump (hdf5-tools)"
command -v mpicc >/dev/null || lmp_skip "missing mpicc (libopenmpi-dev)"

T=$(mktemp -d /tmp/lmp-slurm.XXXXXX)
export SLURM_CONF="$T/slurm.conf"
unset SLURM_JOB_ID SLURM_JOBID   # a test run inside a Slurm job must not talk to that job
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# wait_for SECONDS CMD...: poll CMD every 0.2 s
wait_for() {
    local s=$1; shift
    local end=$((SECONDS + s))
    while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done
    "$@"
}
# Every client call is bounded: a controller that died must not hang the test.
sc() { timeout 20 "$@"; }

# stop_pids FILE...: SIGTERM the daemons named by PID files, SIGKILL those alive after 10 s
stop_pids() {
    local f p pids=()
    for f in "$@"; do
        p=$(cat "$f" 2>/dev/null) && [ -n "$p" ] && kill -TERM "$p" 2>/dev/null && pids+=("$p")
    done
    for _ in $(seq 1 100); do
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && break; p=; done
        [ -z "${p:-}" ] && return 0
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
}
# job processes (slurmstepd, the batch script, srun, lmpress) carry SLURM_CONF=$T/slurm.conf
# in their environment: this cluster's, and nobody else's
stray_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = $$ ] && continue
        tr '\0' '\n' 2>/dev/null < "$p/environ" | grep -qxF "SLURM_CONF=$T/slurm.conf" &&
            echo "${p#/proc/}"
    done
}
stop_slurm() {
    sc scancel --quiet --user="$(id -un)" 2>/dev/null
    stop_pids "$T/slurmd.pid" "$T/slurmctld.pid"
    local p
    for p in $(stray_pids); do kill -KILL "$p" 2>/dev/null; done
}
cleanup() {
    [ -n "${REF_PID:-}" ] && kill -KILL "$REF_PID" 2>/dev/null
    stop_slurm
    if [ "$fail" != 0 ]; then
        for f in "$T"/log/slurmctld.log "$T"/log/slurmd.log; do
            [ -f "$f" ] && { echo "--- tail $f"; tail -15 "$f"; }
        done
    fi
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
write_conf() {   # CTLD_PORT SLURMD_PORT
    local user
    user=$(id -un)
    mkdir -p "$T/state" "$T/spool" "$T/log"
    # two stand-in GPUs (count-only GPUs are refused: 0 reported), so --gres=gpu:N schedules
    printf 'Name=gpu File=/dev/null\nName=gpu File=/dev/zero\n' > "$T/gres.conf"
    cat > "$T/slurm.conf" <<EOF
ClusterName=lmptest
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$2
AuthType=auth/none
CredType=cred/none
SlurmUser=$user
SlurmdUser=$user
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobCompType=jobcomp/filetxt
JobCompLoc=$T/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
KillWait=15
InactiveLimit=0
MinJobAge=600
MessageTimeout=20
GresTypes=gpu
NodeName=n1 NodeAddr=127.0.0.1 CPUs=4 RealMemory=2000 Gres=gpu:2 State=UNKNOWN
PartitionName=test Nodes=n1 Default=YES MaxTime=INFINITE State=UP
EOF
}
node_idle() { [ "$(sc sinfo -h -n n1 -o %t 2>/dev/null)" = idle ]; }
start_slurm() {
    local try p1 p2 t0
    for try in 1 2 3; do
        p1=$((20000 + RANDOM % 40000))
        p2=$((p1 + 1))
        port_free "$p1" && port_free "$p2" || continue
        write_conf "$p1" "$p2"
        t0=$(now)
        slurmctld -f "$SLURM_CONF" < /dev/null >> "$T/log/daemons.out" 2>&1
        slurmd -f "$SLURM_CONF" -N n1 < /dev/null >> "$T/log/daemons.out" 2>&1
        if wait_for 60 node_idle; then
            echo "slurm: one-node cluster up in $(elapsed "$t0") s (ports $p1, $p2, try $try)"
            return 0
        fi
        echo "slurm: node not idle after 60 s (try $try): $(sc sinfo -h -o '%t %E' 2>&1)"
        cat "$T/log/daemons.out"
        stop_slurm
    done
    bad "no Slurm cluster after 3 tries"
    exit 1
}
# job_field ID FIELD: one field of `scontrol show job`
job_field() { sc scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
job_in() {   # ID STATE...: the job's state is one of STATE
    local s
    s=$(job_field "$1" JobState)
    shift
    for x in "$@"; do [ "$s" = "$x" ] && return 0; done
    return 1
}
restarted() { [ "$(job_field "$1" Restarts)" = "$2" ]; }
n_parts() { local f=("$1".parts/layer-*); [ -e "${f[0]}" ] && echo ${#f[@]} || echo 0; }
has_parts() { [ "$(n_parts "$1")" -ge "$2" ]; }
# write_job NAME: a JOB file for `lmpress run` (long options of `lmpress compress`)
write_job() {
    cat > "$T/$1.job" <<EOF
# stories260K, the small scheme of the integration tests
model = $M/stories260K.bin
tokenizer = $M/tok512.bin
calib = $T/cal.txt
nsamples = 8
ctx = 64
threads = 1
max-rounds = 2
adam-steps = 20
scheme = 2x4g4
keep = *.down_proj
mode = independent
seed = 5
out = $T/$1.h5
EOF
}
# submit NAME [sbatch options]: prints the job id
submit() {
    local name=$1; shift
    sc sbatch --parsable --chdir="$T" --output="$T/$name.log" --job-name="$name" \
        --nodes=1 --ntasks-per-node=3 --cpus-per-task=1 --time=10:00 "$@" \
        "$TEMPLATE" "$T/$name.job" 2> "$T/$name.sbatch.err"
}

cd "$T" || exit 1
start_slurm

# 0. srun and Open MPI: only --mpi=pmix wires Open MPI ranks together under srun
sc srun --mpi=list > mpi.txt 2>&1 || bad "srun --mpi=list: $(cat mpi.txt)"
grep -qw pmix mpi.txt || bad "srun has no pmix plugin: $(cat mpi.txt)"
cat > hello.c <<'EOF'
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    int rank, size, sum = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("rank %d of %d sum %d\n", rank, size, sum);
    MPI_Finalize();
    return 0;
}
EOF
mpicc -o hello hello.c 2> mpicc.err || bad "mpicc: $(cat mpicc.err)"
t0=$(now)
sc srun --mpi=pmix --ntasks=3 --cpus-per-task=1 ./hello > hello.out 2>&1 ||
    bad "srun --mpi=pmix: $(cat hello.out)"
echo "srun --mpi=pmix, 3 Open MPI ranks: $(elapsed "$t0") s"
[ "$(sort hello.out)" = "$(printf 'rank %d of 3 sum 3\n' 0 1 2)" ] ||
    bad "Open MPI under srun --mpi=pmix: $(cat hello.out)"

# Open MPI's own allocations are not ours to leak-check (sanitizer builds)
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
# lmpress run JOB, the launcher inside deploy/slurm/lmpress.sbatch, needs an MPI build
if "$LMPRESS" run "$T/none.job" 2>&1 | grep -q "built without MPI\|not a command"; then
    echo "lmpress run is missing or built without MPI (-DLMP_MPI=ON);" \
         "the Slurm cluster and srun --mpi=pmix work"
    [ $fail = 0 ] || exit 1
    lmp_skip "missing lmpress run"
fi
export LMPRESS

head -c 120000 "$TXT" > cal.txt
write_job ref
"$LMPRESS" compress ref.job > ref.out 2> ref.err &   # the same JOB, meanwhile job 1 runs
REF_PID=$!

# 1. a job runs to completion
write_job a
t0=$(now)
id=$(submit a) || { bad "sbatch: $(cat a.sbatch.err)"; exit 1; }
# 3. (meanwhile, on the CPU left, then after job 1) the template's errors: no JOB file; a bad
#    JOB with --gres=gpu:2 (the tasks run; lmpress run refuses the JOB: exit 2 on every rank)
printf 'model = x\nbits = nine\n' > bad.job
id_nojob=$(sc sbatch --parsable --chdir="$T" --output="$T/nojob.log" --ntasks=1 \
           --cpus-per-task=1 "$TEMPLATE" 2> nojob.sbatch.err) || bad "sbatch: $(cat nojob.sbatch.err)"
id_bad=$(sc sbatch --parsable --chdir="$T" --output="$T/bad.log" --ntasks=2 --cpus-per-task=1 \
         --gres=gpu:2 "$TEMPLATE" "$T/bad.job" 2> bad.sbatch.err) || bad "sbatch: $(cat bad.sbatch.err)"
wait_for 240 job_in "$id" COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY ||
    bad "job $id not finished after 240 s: $(job_field "$id" JobState)"
echo "job $id: $(job_field "$id" JobState) in $(elapsed "$t0") s"
job_in "$id" COMPLETED || bad "job $id ended $(job_field "$id" JobState)"
[ "$(job_field "$id" ExitCode)" = 0:0 ] || bad "job $id exit code $(job_field "$id" ExitCode)"
grep -q "^lmpress.sbatch: job $id start .* restart 0: 1 node(s) n1, 3 tasks" a.log ||
    bad "no start line in the job log"
grep -q "^lmpress.sbatch: running: srun --mpi=pmix .* run $T/a.job" a.log || bad "no srun line"
grep -q "^lmpress.sbatch: lmpress run exited with 0 " a.log || bad "no exit line in the job log"
grep -q "^lmpress: coordinator on tcp://127.0.0.1:[0-9]*, 2 worker ranks" a.log ||
    bad "no coordinator line from lmpress run"
grep -q "^job 1 done: $T/a.h5" a.log || bad "no done line from lmpress run"
"$LMPRESS" inspect a.h5 > a.inspect 2>&1 || bad "inspect: $(cat a.inspect)"
grep -q "30 of 35 linears compressed, 5 kept unquantized.*complete" a.inspect ||
    bad "inspect: $(tail -3 a.inspect)"
wait "$REF_PID" || { bad "lmpress compress (the reference)"; cat ref.err; }
REF_PID=
same_layers a.h5 ref.h5 || bad "the Slurm job's artifact differs from lmpress compress"
[ $fail = 0 ] || { echo "--- a.log"; cat a.log; }

# 3. (continued)
for j in "$id_nojob" "$id_bad"; do
    wait_for 120 job_in "$j" COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY ||
        bad "job $j not finished: $(job_field "$j" JobState)"
    job_in "$j" FAILED && [ "$(job_field "$j" ExitCode)" = 2:0 ] ||
        bad "job $j: $(job_field "$j" JobState) exit $(job_field "$j" ExitCode), expected FAILED 2:0"
done
grep -q "^lmpress.sbatch: no JOB file: give it as the argument or in LMPRESS_JOB" nojob.log ||
    bad "no-JOB message: $(cat nojob.log)"
grep -q "^lmpress.sbatch: job $id_bad start .* 2 tasks, 1 cpus/task, 2 gpus/node" bad.log ||
    bad "the GPU job's start line: $(head -1 bad.log)"
grep -q "^$T/bad.job:2: " bad.log || bad "no JOBFILE:LINE message: $(cat bad.log)"
grep -q "^lmpress.sbatch: lmpress run exited with 2 " bad.log || bad "bad JOB: $(cat bad.log)"
echo "jobs $id_nojob (no JOB) and $id_bad (bad JOB, --gres=gpu:2): $(job_field "$id_bad" JobState)" \
     "$(job_field "$id_bad" ExitCode)"

# 4. GPU workers (docs/gpu.md): --gres=gpu:2 (the stand-in GPUs) and 4 tasks: task 0 the
#    coordinator, local tasks 1 and 2 GPU workers on cuda:0 and cuda:1, task 3 a CPU worker;
#    LMPRESS_FAKE_GPUS=1 makes them report those devices without a GPU. The job completes to
#    the reference artifact.
write_job g
t0=$(now)
if id_g=$(LMPRESS_FAKE_GPUS=1 submit g --ntasks-per-node=4 --gres=gpu:2); then
    wait_for 240 job_in "$id_g" COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY ||
        bad "GPU job $id_g not finished after 240 s: $(job_field "$id_g" JobState)"
    echo "job $id_g (2 GPU workers, 1 CPU worker): $(job_field "$id_g" JobState) in $(elapsed "$t0") s"
    job_in "$id_g" COMPLETED || bad "GPU job $id_g ended $(job_field "$id_g" JobState)"
    for d in "local 0): device cpu" "local 1): device cuda:0" "local 2): device cuda:1" \
             "local 3): device cpu"; do
        grep -qF "$d" g.log || bad "GPU job: no task line '...$d'"
    done
    [ "$(grep -c "reporting device cuda:[01] without using it" g.log)" = 2 ] ||
        bad "GPU job: the two GPU workers did not report their devices"
    same_layers g.h5 ref.h5 || bad "the GPU job's artifact differs from lmpress compress"
    [ $fail = 0 ] || { echo "--- g.log"; cat g.log; }
else
    bad "sbatch: $(cat g.sbatch.err)"
fi

# 2. one job interrupted twice (tasks of 200 ms, so it is surely mid-job), then completed:
#  a. preemption: `scontrol requeue` (SIGTERM to every task, the job back to the queue);
#  b. near the time limit: --signal=B:USR1@300 reaches the batch script (sent here at once
#     with scancel --batch), which requeues the job itself: the same path as a.
# Each restart appends to the log and resumes the committed layers (none redone); the
# artifact equals the uninterrupted run's.
# Slurm holds a requeued batch job for 120 s (BeginTime); an operator may start it at once.
release() {   # ID RESTARTS: the job requeued RESTARTS times, pending, then started now
    wait_for 120 restarted "$1" "$2" || { bad "job $1 not requeued (restarts $(job_field "$1" Restarts))"; return 1; }
    wait_for 60 job_in "$1" PENDING || bad "requeued job $1 not pending: $(job_field "$1" JobState)"
    # slurmd revokes the requeued job's credential with a one-second clock: a restart within
    # the same second as the requeue is killed ("Job credential revoked"), so wait past it
    sleep 2
    sc scontrol update JobId="$1" StartTime=now || bad "scontrol update StartTime=now"
}
# resumed_at RESTART: the first "N/30 layers done" line after the restart's start line
resumed_at() {
    sed -n "/^lmpress.sbatch: job $id start .* restart $1:/,\$p" b.log |
        sed -n 's/^job 1: \([0-9]*\)\/30 layers done.*/\1/p' | head -1
}
write_job b
t0=$(now)
id=$(LMP_FAULT_TASK_SLEEP_MS=200 submit b) || { bad "sbatch: $(cat b.sbatch.err)"; exit 1; }
wait_for 240 has_parts b.h5 4 || bad "no layers committed before the requeue"
kept=(0 "$(n_parts b.h5)")
sc scontrol requeue "$id" || bad "scontrol requeue $id"
release "$id" 1
wait_for 240 has_parts b.h5 $((kept[1] + 4)) || bad "no layers committed after the restart"
kept+=("$(n_parts b.h5)")
sc scancel --batch --signal=USR1 "$id" || bad "scancel --batch --signal=USR1 $id"
release "$id" 2
wait_for 300 job_in "$id" COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY ||
    bad "requeued job $id not finished: $(job_field "$id" JobState)"
echo "job $id: requeued at ${kept[1]} layers, USR1 at ${kept[2]}, $(job_field "$id" JobState)" \
     "in $(elapsed "$t0") s"
job_in "$id" COMPLETED || bad "requeued job $id ended $(job_field "$id" JobState)"
[ "$(job_field "$id" ExitCode)" = 0:0 ] || bad "job $id exit code $(job_field "$id" ExitCode)"
for r in 0 1 2; do
    grep -q "^lmpress.sbatch: job $id start .* restart $r:" b.log ||
        bad "no start line of restart $r (log not appended?)"
done
[ "$(grep -c "^lmpress.sbatch: SIGTERM" b.log)" = 2 ] || bad "the batch script did not see 2 SIGTERMs"
grep -q "^lmpress.sbatch: time limit near: requeueing job $id" b.log || bad "no USR1 line"
[ "$(grep -c "^lmpress.sbatch: lmpress run exited with 130 " b.log)" = 2 ] ||
    bad "lmpress run did not exit 130 (stopped) twice"
grep -q "^lmpress.sbatch: lmpress run exited with 0 " b.log || bad "no clean exit"
[ "$(grep -c "^lmpress: resuming job 1 from the state directory" b.log)" = 2 ] ||
    bad "the restarts did not resume from the state directory"
for r in 1 2; do
    n=$(resumed_at $r)
    [ -n "$n" ] && [ "$n" -ge "${kept[r]}" ] ||
        bad "restart $r started at '$n' layers, ${kept[r]} were committed"
done
same_layers b.h5 ref.h5 || bad "the requeued job's artifact differs from an uninterrupted run"
grep "^lmpress.sbatch: \|^lmpress: \|CANCELLED" b.log | sed 's/^/  b.log: /' | head -30
[ $fail = 0 ] || { echo "--- b.log"; cat b.log; }
exit $fail
