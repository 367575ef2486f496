#!/usr/bin/env bash
# soak - a coordinator (with --state) and three workers on loopback run stories260K jobs one
# after another for LMP_SOAK_SECONDS (default 75) while workers are killed with -9 at random
# moments and restarted under new names, and now and then (LMP_SOAK_COORD_KILL, one kill in
# 6 by default) the coordinator is killed with -9 and restarted from its state directory on
# the same port. Every job must end with `submit --wait` exit 0 and an artifact whose every
# dataset equals `lmpress compress`'s (independent mode does not depend on the workers), and
# no layer may be lost: a layer is lost when it is committed ("done" in the job's event log,
# `lmpress logs ART.h5`) more than once, or is missing or different at the end.
# Figures: jobs, kills (workers, coordinator), layers committed, layers lost (must be 0).
#   LMP_SOAK_SECONDS=S    how long new jobs are started (a job running then is finished)
#   LMP_SOAK_SEED=S       the random kills (default: random, printed)
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5dump h5diff timeout
SECS=${LMP_SOAK_SECONDS:-75}
SEED=${LMP_SOAK_SEED:-$RANDOM}
CK=${LMP_SOAK_COORD_KILL:-6}
RANDOM=$SEED
lmp_workdir
head -c 120000 "$TXT" > cal.txt
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt --nsamples 12
     --ctx 96 --threads 1 --max-rounds 2 --adam-steps 20 --scheme 2x4g4 --keep '*.down_proj'
     --mode independent)
export LMPRESS_TIMEOUT_MS=5000 LMPRESS_RECONNECT_MS=60000

"$LMPRESS" compress "${JOB[@]}" --out ref.h5 > ref.out 2>&1 || { bad "compress"; cat ref.out; exit 1; }

restart_coord() { # LOG: the same port again (it may take a moment to be free)
    for _ in $(seq 1 80); do
        BIND="tcp://127.0.0.1:$PORT" try_coord "$1" --state st && return 0
        sleep 0.25
    done
    return 1
}
PORT=
for _ in $(seq 1 20); do # a free port that a restarted coordinator can bind again
    PORT=$((20000 + RANDOM % 30000))
    BIND="tcp://127.0.0.1:$PORT" try_coord c0.log --state st && break
    PORT=
done
[ -n "$PORT" ] || { bad "coordinator did not start"; exit 1; }
gen=0
declare -A WP # worker slot -> pid
spawn() { # SLOT: a worker under a new name (a killed worker's name may still be held)
    gen=$((gen + 1))
    LMP_FAULT_TASK_SLEEP_MS=150 "$LMPRESS" worker --connect "$EP" --name "w$1-$gen" \
        --timeout 120000 2> "w$1-$gen.log" &
    WP[$1]=$!
    PIDS+=("$!")
}
for s in 1 2 3; do spawn $s; done

jobs_run=0 wkills=0 ckills=0 layers=0 lost=0 t_end=$(($(date +%s) + SECS))
while [ "$(date +%s)" -lt "$t_end" ]; do
    jobs_run=$((jobs_run + 1))
    out=job$jobs_run.h5
    timeout 600 "$LMPRESS" submit --connect "tcp://127.0.0.1:$PORT" --wait "${JOB[@]}" \
        --out "$out" > "sub$jobs_run.out" 2> "sub$jobs_run.err" &
    sub=$!
    PIDS+=("$sub")
    while kill -0 "$sub" 2> /dev/null; do
        sleep "$((RANDOM % 3)).$((RANDOM % 10))"
        kill -0 "$sub" 2> /dev/null || break
        if [ $((RANDOM % CK)) = 0 ]; then
            kill -9 "$CPID" 2> /dev/null
            wait "$CPID" 2> /dev/null
            ckills=$((ckills + 1))
            restart_coord "c$ckills.log" || { bad "coordinator did not restart"; cat "c$ckills.log"; exit 1; }
        else
            s=$((RANDOM % 3 + 1))
            kill -9 "${WP[$s]}" 2> /dev/null
            wait "${WP[$s]}" 2> /dev/null
            wkills=$((wkills + 1))
            sleep 0.$((RANDOM % 10))
            spawn $s
        fi
    done
    wait "$sub"
    rc=$?
    # (a coordinator killed after the job ended, before the client saw it, still knows the
    # job from its state directory's last.pb: every exit but 0 fails)
    [ $rc = 0 ] || bad "job $jobs_run: submit --wait exit $rc: $(tail -1 "sub$jobs_run.err")"
    same_layers ref.h5 "$out" > /dev/null || { bad "job $jobs_run: artifact differs from compress's"; }
    # committed per layer, over every run of the job (a coordinator restart is a new run)
    "$LMPRESS" logs "$out" > "logs$jobs_run.txt" 2>&1
    n=$(awk '$5 == "done" { print $6 }' "logs$jobs_run.txt" | sort | uniq -c |
        awk '{ c += 1; if ($1 > 1) l += $1 - 1 } END { print c + 0, l + 0 }')
    read -r c l <<< "$n"
    layers=$((layers + c))
    lost=$((lost + l))
    [ "$c" -gt 0 ] || bad "job $jobs_run: no layer done in its event log"
    [ "$l" = 0 ] || bad "job $jobs_run: $l layers committed twice (lost once): $(awk '$5 == "done" { print $6 }' "logs$jobs_run.txt" | sort | uniq -d | tr '\n' ' ')"
    rm -rf "$out" "$out.parts"
done
echo "soak: seed $SEED, ${SECS}s, $jobs_run jobs, $wkills worker kills, $ckills coordinator kills, $layers layers committed, $lost layers lost"
[ "$lost" = 0 ] || bad "$lost layers lost"
exit $fail
