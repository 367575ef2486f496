#!/usr/bin/env bash
# mpi_run_remote - `lmpress run JOB` on its multi-host path, on one machine: with
# LMPRESS_RUN_FORCE_REMOTE=1 rank 0 behaves as if the ranks spanned several hosts (a
# non-loopback address, CURVE keys made for the run). stories260K, independent mode:
#  1. mpirun -np 3: the coordinator binds this host's non-loopback IPv4 address (127.0.0.2
#     where the machine has none), the two worker ranks and rank 0's client join with the
#     run's keys, exit 0 everywhere, the artifact equals `lmpress compress` (h5diff, the
#     event log aside);
#  2. while that job runs, peers outside the launch are refused with exit 5 and never join:
#     a worker with a key of its own (and the right server key, printed by rank 0), a worker
#     without keys, a client without keys and a client with a stranger's key; the
#     coordinator logs the refused key;
#  3. mpirun -np 1 (coordinator + an in-process worker with the run's keys): the same artifact;
#  4. --bind-address of a wildcard, an IPv6 address or an unknown name: exit 2, one message;
#  5. worker ranks that cannot join (LMP_FAULT_RUN_WRONG_SERVER_KEY: a wrong server key) are
#     reported by rank 0, which stops the run once none is left: exit 5 instead of a hang.
# Skipped (77) when lmpress was built without MPI or mpirun is missing (fails under CI).
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_need_mpi
export LMPRESS_TIMEOUT_MS=10000
lmp_workdir
umask 022
head -c 120000 "$TXT" > cal.txt
cat > stories.job <<EOF
model      = $M/stories260K.bin
tokenizer  = $M/tok512.bin
calib      = cal.txt
nsamples   = 12
ctx        = 96
max-rounds = 4
adam-steps = 50
scheme     = 2x6g4
keep       = *.down_proj
mode       = independent
seed       = 5
out        = remote3.h5
EOF
# expect RC FILE PATTERN CMD...: CMD exits RC and its stderr matches PATTERN
expect() {
    local rc=$1 f=$2 pat=$3; shift 3
    timeout 60 "$@" > /dev/null 2> "$f"
    local got=$?
    [ "$got" -eq "$rc" ] || bad "$* exited $got, not $rc: $(cat "$f")"
    grep -q -- "$pat" "$f" || bad "$*: message '$(cat "$f")' lacks '$pat'"
}

# the address rank 0 should pick: this host's first global IPv4 address, if it has one
ADDR=
if command -v ip >/dev/null; then
    ADDR=$(ip -4 -o addr show scope global up 2>/dev/null |
           awk '{sub(/\/.*/, "", $4); print $4; exit}')
fi
RUNENV=(-x LMPRESS_RUN_FORCE_REMOTE=1)
if [ -z "$ADDR" ]; then
    echo "no global IPv4 address here: binding 127.0.0.2 (CURVE is on all the same)"
    ADDR=127.0.0.2
    RUNENV+=(-x LMPRESS_RUN_ADDRESS=127.0.0.2)
fi

"$LMPRESS" compress stories.job --threads 2 --out ref.h5 > ref.out 2> ref.err ||
    { bad "compress JOB"; cat ref.err; }

# 1 + 2. three ranks on the remote path, tasks slowed so that strangers knock while it runs
timeout 300 mpirun -np 3 "${RUNENV[@]}" -x LMP_FAULT_TASK_SLEEP_MS=250 "$LMPRESS" run stories.job \
    --verbose > r3.out 2> r3.err &
MPID=$!
EP= SKEY=
for _ in $(seq 1 600); do
    line=$(grep -m1 "coordinator on " r3.err)
    if [ -n "$line" ]; then
        EP=$(sed -n 's/.*coordinator on \(tcp:[^,]*\),.*/\1/p' <<< "$line")
        SKEY=$(sed -n 's/.*(server key \(.\{40\}\)).*/\1/p' <<< "$line")
        break
    fi
    kill -0 "$MPID" 2>/dev/null || break
    sleep 0.05
done
echo "rank 0: $line"
[ -n "$EP" ] && [ ${#SKEY} -eq 40 ] ||
    bad "no endpoint and server key from rank 0: $(head -5 r3.err)"
case "$EP" in
    "tcp://$ADDR:"*) ;;
    *) bad "rank 0 bound $EP, expected an endpoint on $ADDR" ;;
esac
grep -q "CURVE with this run's keys" <<< "$line" || bad "rank 0 does not say it uses CURVE"
if [ -n "$EP" ] && [ ${#SKEY} -eq 40 ]; then
    printf '%s\n' "$SKEY" > server.pub
    "$LMPRESS" keygen --out mallory > /dev/null 2>&1 || bad "keygen mallory"
    # a worker with a key of its own and the right server key: refused by the ZAP handler
    expect 5 mallory.err "refused this key" \
        "$LMPRESS" worker --connect "$EP" --name mallory --key mallory.key --server-key server.pub \
        --timeout 5000
    # a worker without keys
    expect 5 nokey.err "requires CURVE keys" \
        "$LMPRESS" worker --connect "$EP" --name nokey --timeout 5000
    # clients: no keys, a stranger's key
    expect 5 cli1.err "requires CURVE keys" "$LMPRESS" status --connect "$EP"
    expect 5 cli2.err "refused this key" \
        "$LMPRESS" cancel --connect "$EP" --key mallory.key --server-key server.pub
    kill -0 "$MPID" 2>/dev/null || bad "the job ended before the strangers were refused (too fast?)"
fi
wait "$MPID"
rc=$?
MPID=
[ $rc -eq 0 ] || { bad "mpirun -np 3 remote: exit $rc"; tail -20 r3.err; }
for k in rank1 rank2; do
    grep -q "key '$k' (worker) connected" r3.err || bad "worker key $k not accepted"
done
grep -q "key 'run' (cli) connected" r3.err || bad "rank 0's client key not accepted"
prefix=$(head -c 10 mallory.pub 2>/dev/null)
if [ -n "$prefix" ]; then
    grep -qF "refused key '$prefix" r3.err || bad "mallory's key refusal is not logged"
fi
grep -Eq "worker '(mallory|nokey)' joined" r3.err && bad "a stranger joined as a worker"
grep -q "job 1 cancelled\|cancelled" r3.err && bad "a stranger cancelled the job"
grep -q "30/30 layers done" r3.err || bad "no progress to 30/30"
same_layers remote3.h5 ref.h5 || bad "remote mpirun -np 3 artifact differs from lmpress compress"

# 3. one rank: coordinator + an in-process worker, both with the run's keys
timeout 300 mpirun -np 1 "${RUNENV[@]}" "$LMPRESS" run stories.job --out remote1.h5 --verbose \
    > r1.out 2> r1.err || { bad "remote mpirun -np 1"; tail -20 r1.err; }
grep -q "key 'rank0' (worker) connected" r1.err || bad "-np 1: the in-process worker's key not used"
same_layers remote1.h5 ref.h5 || bad "remote mpirun -np 1 artifact differs"

# 4. bind addresses the workers could not use
for a in 0.0.0.0 fe80::1 nosuchif.invalid; do
    timeout 60 mpirun -np 2 -x LMPRESS_RUN_FORCE_REMOTE=1 "$LMPRESS" run stories.job \
        --bind-address "$a" --out never.h5 > ba.out 2> ba.err
    rc=$?
    [ $rc -eq 2 ] || bad "--bind-address '$a': exit $rc, expected 2: $(cat ba.err)"
    grep -q "bind address '$a'" ba.err || bad "--bind-address '$a' message: $(head -3 ba.err)"
done
[ ! -e never.h5 ] || bad "a refused bind address still ran the job"

# 5. no worker rank can join: the run ends by itself, with the refusal's exit code
timeout 120 mpirun -np 3 "${RUNENV[@]}" -x LMP_FAULT_RUN_WRONG_SERVER_KEY=1 "$LMPRESS" run \
    stories.job --out lost.h5 > lost.out 2> lost.err
rc=$?
[ $rc -eq 5 ] || bad "worker ranks that cannot join: exit $rc, expected 5: $(tail -5 lost.err)"
for r in 1 2; do
    grep -q "worker rank $r cannot work with the coordinator" lost.err ||
        bad "rank 0 does not report worker rank $r"
done
grep -q "no worker rank is left" lost.err || bad "no 'no worker rank is left' line"
exit $fail
