#!/usr/bin/env bash
# cluster_curve - a coordinator with CURVE keys on loopback, stories260K, independent mode:
#  1. lmpress keygen: file modes, no overwrite without --force, bad key files named;
#  2. a non-loopback bind without keys is refused (exit 2), --insecure and --curve-dir
#     exclude each other;
#  3. an authorized worker joins and an authorized client's job completes, equal to
#     `lmpress compress`;
#  4. a worker with an unlisted key is refused at once (exit 5), never gets a task, and the
#     coordinator logs the refusal with the key's prefix;
#  5. a client with an unlisted key, with a worker's key, or without keys cannot submit or
#     cancel (exit 5, one clear line each); the coordinator keeps serving.
# Every wait is bounded, so a broken build fails instead of hanging.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
umask 022
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 8
     --ctx 64 --threads 2 --max-rounds 2 --adam-steps 20 --scheme 2x6g4 --keep '*.down_proj'
     --mode independent --seed 7)
mode() { stat -c %a "$1"; }
# expect RC FILE PATTERN CMD...: CMD exits RC and prints one stderr line matching PATTERN
expect() {
    local rc=$1 f=$2 pat=$3; shift 3
    "$@" > /dev/null 2> "$f"
    local got=$?
    [ "$got" -eq "$rc" ] || bad "$* exited $got, not $rc: $(cat "$f")"
    grep -q -- "$pat" "$f" || bad "$*: message '$(cat "$f")' lacks '$pat'"
    [ "$(wc -l < "$f")" -eq 1 ] || bad "$*: not one line: $(cat "$f")"
}

# 1. keys: the coordinator's directory, a worker, a client, and two strangers
mkdir -p cdir/workers cdir/clients
"$LMPRESS" keygen --out cdir/server > server.z85 2> kg.err || bad "keygen server: $(cat kg.err)"
[ "$(mode cdir/server.key)" = 600 ] || bad "server.key mode $(mode cdir/server.key)"
[ "$(wc -c < cdir/server.pub)" -eq 41 ] && [ "$(wc -c < cdir/server.key)" -eq 41 ] ||
    bad "key files are not 40 characters and a newline"
[ "$(cat server.z85)" = "$(cat cdir/server.pub)" ] || bad "keygen did not print the public key"
for k in w1 alice mallory bob; do
    "$LMPRESS" keygen --out "$k" > /dev/null 2>&1 || bad "keygen $k"
done
cp w1.pub cdir/workers/ && cp alice.pub cdir/clients/
before=$(cat alice.key)
expect 2 kg2.err "already exists" "$LMPRESS" keygen --out alice
[ "$(cat alice.key)" = "$before" ] || bad "keygen overwrote alice.key without --force"
"$LMPRESS" keygen --out bob --force > /dev/null 2>&1 || bad "keygen --force"
printf 'not-a-key\n' > junk.key && chmod 600 junk.key
chmod 644 bob.key
AUTH=(--server-key cdir/server.pub)

# 2. bind policy
expect 2 bind.err "refusing to bind 'tcp://0.0.0.0:0' without CURVE keys" \
    "$LMPRESS" coordinator --bind tcp://0.0.0.0:0
"$LMPRESS" coordinator --bind tcp://0.0.0.0:0 --insecure --curve-dir cdir > /dev/null 2>&1
[ $? -eq 2 ] || bad "--insecure with --curve-dir is not a usage error"
expect 4 cd.err "nowhere" "$LMPRESS" coordinator --curve-dir "$T/nowhere"
mkdir empty
expect 4 cd2.err "empty/server.key" "$LMPRESS" coordinator --curve-dir empty

# 3. the coordinator with CURVE, an authorized worker and client
"$LMPRESS" coordinator --bind 'tcp://127.0.0.1:*' --curve-dir cdir --heartbeat-timeout 2000 \
    --verbose 2> c.log &
CPID=$!
PIDS+=("$CPID")
EP=
for _ in $(seq 1 200); do
    EP=$(sed -n 's/.*coordinator listening on \(tcp:[^ ]*\).*/\1/p' c.log | head -1)
    [ -n "$EP" ] && break
    sleep 0.05
done
[ -n "$EP" ] || { bad "coordinator did not start: $(cat c.log)"; exit 1; }
grep -q "CURVE: 1 worker keys, 1 client keys" c.log || bad "key count: $(head -1 c.log)"
"$LMPRESS" worker --connect "$EP" --name w1 --key w1.key "${AUTH[@]}" --verbose 2> w1.log &
PIDS+=("$!")
W1=$!
wait_for 20 grep -q "worker 'w1' joined" c.log || bad "authorized worker did not join: $(cat w1.log)"
grep -q "key 'w1' (worker) connected" c.log || bad "no accepted-key log line"

# 4. a worker with an unlisted key: refused at once, logged, no task
expect 5 mallory.err "refused this key" \
    "$LMPRESS" worker --connect "$EP" --name mallory --key mallory.key "${AUTH[@]}" --timeout 5000
prefix=$(head -c 10 mallory.pub)
grep -qF "refused key '$prefix" c.log || bad "the refusal of mallory's key is not logged: $(cat c.log)"

"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > /dev/null 2> ref.err || { bad "compress"; cat ref.err; }
timeout 300 env LMPRESS_KEY=alice.key LMPRESS_SERVER_KEY=cdir/server.pub \
    "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "submit --wait with alice's key (rc $?)"; cat a.err; tail -20 c.log; }
grep -q "job 1 done" c.log || bad "job 1 not done"
n=0
for d in $(h5dump -n ref.h5 | awk '$1=="dataset" && $2 !~ /^\/events\//{print $2}'); do   # not the event log
    n=$((n + 1))
    h5diff -q a.h5 ref.h5 "$d" "$d" > /dev/null || { bad "dataset $d differs"; break; }
done
[ "$n" -gt 10 ] || bad "only $n datasets compared"
grep -q "> worker 'mallory'" c.log && bad "mallory got a task"
grep -q "worker 'mallory' joined" c.log && bad "mallory joined"

# 5. clients that may not submit or cancel
expect 4 bobm.err "chmod 600" \
    "$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out b.h5 --key bob.key "${AUTH[@]}"
chmod 600 bob.key
expect 5 bob.err "refused this key" \
    "$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out b.h5 --key bob.key "${AUTH[@]}"
expect 5 bobc.err "refused this key" "$LMPRESS" cancel --connect "$EP" --key bob.key "${AUTH[@]}"
expect 5 wk.err "is a worker key" \
    "$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out b.h5 --key w1.key "${AUTH[@]}"
expect 5 wkc.err "is a worker key" "$LMPRESS" cancel --connect "$EP" --key w1.key "${AUTH[@]}"
expect 5 none.err "requires CURVE keys" "$LMPRESS" submit --connect "$EP" "${JOB[@]}" --out b.h5
expect 5 wrong.err "is the server key its public key" \
    "$LMPRESS" status --connect "$EP" --key alice.key --server-key bob.pub
expect 4 junk.err "junk.key" "$LMPRESS" status --connect "$EP" --key junk.key "${AUTH[@]}"
expect 2 half.err "needs both keys" "$LMPRESS" status --connect "$EP" --key alice.key
[ ! -e b.h5 ] && [ ! -d b.h5.parts ] || bad "a refused client's job left an artifact"
grep -q "job 2" c.log && bad "a refused client submitted a job"
grep -q "may not join as a client" c.log || bad "the worker-key client refusal is not logged"
"$LMPRESS" status --connect "$EP" --key alice.key "${AUTH[@]}" --json > st.json ||
    bad "status with alice's key after the refusals"
grep -q '"state":"done"' st.json || bad "status: $(cat st.json)"

kill -TERM "$W1"
wait "$W1" || bad "worker exit code on SIGTERM"
kill -TERM "$CPID"
wait "$CPID" || bad "coordinator exit code on SIGTERM"
exit $fail
