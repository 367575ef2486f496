#!/usr/bin/env bash
# compress_sigterm - SIGTERM acts within seconds in every stage (issue 10, item 5): the
# stages poll a stop flag (base/cancel.h) between small units of work (~2048 tokens of a
# block, one generated token, one AQ iteration or beam-search chunk, one Adam step).
#  1. lmpress compress on stories260K with a big --nsamples (2000 x 512 tokens: each
#     calibration task is a slice of 250 sequences, several seconds of work on one thread)
#     gets SIGTERM just after the first calibration task of block 1 starts (block 0 is
#     committed by then): it exits 130 within 3 s, saying its committed layers are kept,
#     and the artifact reads back with block 0's layers intact;
#  2. --calib generate with a big --nsamples gets SIGTERM while the planner generates its
#     calibration text: it exits within 3 s too, and leaves no layer.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
for i in 1 2 3; do cat "$TXT"; done > big.txt          # ~1.2 M tokens of tok512
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --threads 1 --scheme 2x4g4
     --max-rounds 2)
now() { date +%s.%N; }

# stop LIMIT CMD...: wait (up to LIMIT s) until CMD succeeds, then SIGTERM the job; sets
# took (seconds from the signal to the exit) and rc
stop() {
    local limit=$1 t0
    shift
    if ! wait_for "$limit" "$@"; then
        bad "not seen in ${limit}s: $*"
        kill -9 "$JPID"
        wait "$JPID"
        return 1
    fi
    sleep 0.3
    t0=$(now)
    kill -TERM "$JPID"
    wait "$JPID"
    rc=$?
    took=$(echo "$(now) - $t0" | bc)
    PIDS=()
}

# 1. during calibration of block 1
"$LMPRESS" compress "${MOD[@]}" --calib big.txt --nsamples 2000 --ctx 512 --out out.h5 \
    > out.txt 2> err.txt &
JPID=$!
PIDS=($JPID)
logged() { "$LMPRESS" logs out.h5 2> /dev/null | grep -q "$1"; }
if stop 600 logged "calibrate .*block 1"; then
    echo "calibration: exit $rc ${took}s after SIGTERM"
    [ "$rc" = 130 ] || bad "exit $rc, not 130 (interrupted): $(tail -2 err.txt)"
    awk -v t="$took" 'BEGIN { exit !(t < 3.0) }' || bad "SIGTERM took ${took}s to act (> 3 s)"
    grep -q "interrupted; committed layers are kept" err.txt || bad "no 'interrupted' line"
    "$LMPRESS" inspect out.h5 --json > insp.json 2> insp.err || bad "inspect: $(cat insp.err)"
    n=$(grep -o '"name":"model.layers.0.[a-z_.]*"' insp.json | sort -u | wc -l)
    [ "$n" = 7 ] || bad "$n layers of block 0 in the artifact, not 7"
    grep -q '"name":"model.layers.1.' insp.json && bad "a layer of block 1 was committed"
fi

# 2. during the planner's generation of calibration text
rm -rf out.h5 out.h5.parts
"$LMPRESS" compress "${MOD[@]}" --calib generate --nsamples 4000 --ctx 256 --out out.h5 \
    > out.txt 2> err.txt &
JPID=$!
PIDS=($JPID)
started() { grep -q "coordinator on" err.txt && sleep 1.5; }   # the planner generates
if stop 60 started; then
    echo "generation: exit $rc ${took}s after SIGTERM"
    [ "$rc" = 130 ] || bad "generate: exit $rc, not 130: $(tail -2 err.txt)"
    awk -v t="$took" 'BEGIN { exit !(t < 3.0) }' || bad "generate: SIGTERM took ${took}s (> 3 s)"
fi
[ $fail = 0 ] && echo "compress_sigterm: ok"
exit $fail
