#!/usr/bin/env bash
# fault_inject - fail the N-th allocation, file write, fsync, zmq send and socket send of a
# stories260K `lmpress compress` job (sequential, block fine-tuning: every stage and the
# read-back of committed blocks), for N spread over the range a clean run makes, as SQLite
# tests its own I/O errors. The failures come from tests/fault/lmp_failinject.c, preloaded
# into lmpress, so they also land inside HDF5, libzmq, protobuf-c and glibc. Every run must
#  - exit 0 with an artifact whose every dataset equals the clean run's (h5diff), or
#  - stop with exit 1..127 and a last stderr line "lmpress: ..." (no crash, no sanitizer
#    report, no hang), after which the same command without a fault resumes every layer the
#    stopped run committed ("(resumed)") and completes with the clean run's artifact.
# A stop decided inside a library we do not own (HDF5 calls exit(-1) when an allocation of its
# id table fails; libzmq aborts on any failed allocation) cannot give our message: it is
# counted as a library stop (the caller is read from the interposer's stack log) and must
# still leave the committed layers intact. Layers lost = layers committed before a stop that
# the resume did not find, plus every layer of an artifact that differs.
#   LMP_FAULT_RUNS=N     runs per kind (default 4; docs/reliability.md used more)
#   LMP_FAULT_KINDS=...  kinds to run (default "malloc write fsync send netsend")
#   LMP_FAULT_SEED=S     the sample of N (default: random, printed)
#   LMP_FAULT_TIMEOUT=S  seconds one run may take (default 20: a lost message costs a 5 s
#                        heartbeat timeout or two)
#   LMP_FAULT_KEEP=DIR   keep each failing run's stderr and stack log in DIR
#   LMP_FAULT_INLINE_MAX=B  payloads over B bytes through the spool (1: all of them, so the
#                        failures land in the spool's writes and reads too; default: 64 MiB)
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump h5ls timeout
LIB=${LMP_FAILINJECT_LIB:-${LMP_BUILD_DIR:-}/tests/liblmp_failinject.so}
[ -f "$LIB" ] || lmp_skip "no fault-injection library '$LIB' (built on Linux only)"
RUNS=${LMP_FAULT_RUNS:-4}
KINDS=${LMP_FAULT_KINDS:-malloc write fsync send netsend}
SEED=${LMP_FAULT_SEED:-$RANDOM}
TO=${LMP_FAULT_TIMEOUT:-20}
KEEP=${LMP_FAULT_KEEP:-}
[ -n "${LMP_FAULT_INLINE_MAX:-}" ] && export LMP_INLINE_MAX=$LMP_FAULT_INLINE_MAX
# An AddressSanitizer lmpress cannot take the interposer: its malloc must be found before
# ASan's, and preloaded first (verify_asan_link_order=0) it crashes ASan's start-up. Skipped
# there, also under CI (the CI build is ASan); run it on a Release build (docs/reliability.md).
if ldd "$LMPRESS" 2> /dev/null | grep -q 'libasan'; then
    echo "skip: '$LMPRESS' is an AddressSanitizer build; the fault-injection interposer needs" \
        "a plain one (cmake -DCMAKE_BUILD_TYPE=Release; ctest -R fault_inject)"
    exit 77
fi
lmp_workdir
[ -n "$KEEP" ] && mkdir -p "$KEEP"
head -c 120000 "$TXT" > cal.txt
JOB=(compress --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt
     --nsamples 12 --ctx 96 --threads 1 --max-rounds 2 --adam-steps 20 --scheme 2x4g4
     --keep '*.down_proj' --mode sequential --finetune --ft-epochs 1)
inj() { # SPEC LOG OUT ARGS...: lmpress with the interposer, failing SPEC ("" = count only)
    local spec=$1 log=$2 out=$3
    shift 3
    timeout "$TO" env LD_PRELOAD="$LIB" LMP_FAILINJECT="$spec" LMP_FAILINJECT_LOG="$log" \
        LMP_FAILINJECT_COUNT=count.txt "$LMPRESS" "$@" --out "$out"
}
n_layers() { # committed layers: one per layer part, and each layer of a block part
    {
        ls "$1.parts" 2> /dev/null | sed -n 's/^layer-\(.*\)-[0-9a-f]\{16\}\.h5$/\1/p'
        for f in "$1.parts"/block-*.h5; do
            [ -f "$f" ] && h5ls "$f/layers" 2> /dev/null | awk '{ print $1 }'
        done
    } | sort -u | wc -l
}
caller() { # WHAT LOG: the library that called WHAT (inject, exit, abort) or crashed (signal):
    # the first frame of its stack log outside the interposer (and the signal trampoline)
    awk -v w="$1" '$1 == w { f = 1; s = (w == "signal"); next }
        f && /liblmp_failinject/ { next }
        f && s { s = 0; next }
        f { print; exit }' "$2" | sed 's/(.*//; s,.*/,,'
}
third_party() { [ -n "$1" ] && [ "${1#lmpress}" = "$1" ] && [ "${1#libc.so}" = "$1" ]; }

# the clean run: the reference artifact and the number of calls of each kind
rm -f count.txt
t0=$(date +%s.%N)
inj "" /dev/null ref.h5 "${JOB[@]}" > ref.out 2> ref.err || { bad "clean run"; cat ref.err; exit 1; }
t1=$(date +%s.%N)
n_ref=$(n_layers ref.h5)
read -r _ counts < count.txt
echo "clean run: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; calls: $counts"
total() { echo "$counts" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

runs=0 injected=0 identical=0 stopped=0 libstops=0 notreached=0 failures=0 committed=0 lost=0
declare -A per_kind
fail_run() { # SPEC WHY
    bad "$1: $2"
    failures=$((failures + 1))
    if [ -n "$KEEP" ]; then
        local k=${1//[:+]/_}
        cp o.err "$KEEP/$k.err" 2> /dev/null
        cp f.log "$KEEP/$k.log" 2> /dev/null
    fi
}
resume_check() { # SPEC: the committed layers survive, the resume completes identically
    local spec=$1 c r
    c=$(n_layers o.h5)
    committed=$((committed + c))
    if ! timeout "$TO" "$LMPRESS" "${JOB[@]}" --out o.h5 > r.out 2> r.err; then
        fail_run "$spec" "the resume failed: $(tail -1 r.err)"
        lost=$((lost + c))
        return
    fi
    r=$(grep -c '(resumed)' r.err)
    [ "$r" -ge "$c" ] || { fail_run "$spec" "$c layers committed, $r resumed"; lost=$((lost + c - r)); }
    same_layers ref.h5 o.h5 > /dev/null || { fail_run "$spec" "resumed artifact differs"; lost=$((lost + n_ref)); }
}

for kind in $KINDS; do
    C=$(total "$kind")
    [ -n "$C" ] && [ "$C" -gt 0 ] || { bad "$kind: no calls counted"; continue; }
    step=$(((C + RUNS - 1) / RUNS))
    RANDOM=$((SEED + ${#kind}))
    per_kind[$kind]=0
    for i in $(seq 0 $((RUNS - 1))); do
        n=$((i * step + 1 + (RANDOM * 32768 + RANDOM) % step))
        [ "$n" -le "$C" ] || n=$C
        spec="$kind:$n"
        [ "$kind" = write ] && [ $((i % 2)) = 1 ] && spec="$kind:$n+"   # a disk that stays full
        [ "$kind" = write ] && [ $((i % 2)) = 0 ] && spec="$kind:$n:EIO" # a transient I/O error
        rm -rf o.h5 o.h5.parts f.log
        inj "$spec" f.log o.h5 "${JOB[@]}" > o.out 2> o.err
        rc=$?
        runs=$((runs + 1))
        if ! grep -q '^inject ' f.log 2> /dev/null; then # this run made fewer calls
            notreached=$((notreached + 1))
            [ $rc = 0 ] || fail_run "$spec" "exit $rc without a fault"
            continue
        fi
        injected=$((injected + 1))
        per_kind[$kind]=$((per_kind[$kind] + 1))
        if grep -q 'Sanitizer\|runtime error:' o.err; then
            fail_run "$spec" "sanitizer report: $(grep -m1 'Sanitizer\|runtime error:' o.err)"
            resume_check "$spec"
        elif [ $rc = 0 ]; then
            if same_layers ref.h5 o.h5 > /dev/null; then identical=$((identical + 1))
            else fail_run "$spec" "completed with a different artifact"; lost=$((lost + n_ref)); fi
        elif [ $rc = 124 ]; then
            fail_run "$spec" "no end within ${TO}s: $(grep -v '^\[' o.err | tail -1)"
            resume_check "$spec"
        else
            # a stop decided in a library (its exit or abort, or a crash in its code), or a
            # crash of any kind after the fault went into a library (its heap corrupted)
            who=""
            for w in abort exit _exit signal; do
                c=$(caller "$w" f.log)
                third_party "$c" && who="$w in $c"
            done
            c=$(caller inject f.log)
            [ -z "$who" ] && [ $rc -gt 128 ] && third_party "$c" && who="crash after the fault in $c"
            last=$(tail -1 o.err)
            if [ -n "$who" ]; then
                libstops=$((libstops + 1))
                echo "  $spec: exit $rc: library stop ($who)"
            elif [ $rc -le 127 ] && [[ "$last" == "lmpress: "* ]]; then
                stopped=$((stopped + 1))
            else
                fail_run "$spec" "exit $rc, last line '$last'"
            fi
            resume_check "$spec"
        fi
    done
done

echo "fault_inject: seed $SEED, $runs runs, $injected faults injected ($(for k in $KINDS; do printf '%s %s ' "$k" "${per_kind[$k]:-0}"; done| sed 's/ $//'))"
echo "  completed identically $identical, stopped with a message $stopped, library stops $libstops, fault not reached $notreached, failed $failures"
echo "  layers committed before a stop $committed, layers lost $lost"
[ "$lost" = 0 ] || bad "$lost layers lost"
exit $fail
