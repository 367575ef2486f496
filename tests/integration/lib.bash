# lib.bash - what the integration scripts share; sourced (not a test: CTest runs *.sh only).
#
#   . "$(dirname "$0")/lib.bash"
#
# Needs LMPRESS and LMP_SHARED in the environment. Defines:
#   lmp_skip MSG          exit 77 (CTest: skipped), or 1 where CI=true: CI must not skip
#   lmp_need_stories      M (stories260K directory) and TXT (TinyStories text), or skip
#   lmp_need_cmds C...    each program on PATH, or skip
#   lmp_need_mpi          mpirun and an lmpress built with MPI, or skip; Open MPI set for tests
#                         (root, more ranks than cores, no binding, its leaks not checked)
#   lmp_workdir [TEMPLATE] T: a new temporary directory, entered; on exit the PIDS (array)
#                         and MPID are killed and T removed
#   bad MSG               reports a failure and sets fail=1 (the script ends `exit $fail`)
#   wait_for S CMD...     polls CMD every 0.1 s for up to S seconds
#   try_coord LOG [ARG...]     a coordinator on BIND (default a free loopback port): EP and
#                         CPID, or status 1 if it did not start
#   start_coord LOG [ARG...]   the same, and a failure ends the script
#   start_worker NAME [VAR=VAL...]  a worker named NAME (log w-NAME.log; WORKER_ARGS, an
#                         array, adds options): WPID_NAME
#   same_layers A B       every dataset of artifact A equals B's, the event log aside
#   ppl ART [TEXT] [CTX]  the perplexity `lmpress eval` reports (default ev.txt, 96)
#   near A B TOL          A finite and within TOL (relative) of B
#   stories_tune_setup    in the work directory: cal.txt, tune.txt, a.h5 (a small 2x4g4
#                         AQLM artifact of stories260K, down_proj kept) and TUNE (an array:
#                         the options of a 12-step `lmpress tune` of it, --out not given)
: "${LMPRESS:?}" "${LMP_SHARED:?}"

lmp_skip() {
    echo "skip: $*"
    [ "${CI:-}" = true ] && exit 1
    exit 77
}

lmp_need_stories() {
    M="$LMP_SHARED/models/stories260K"
    TXT="$LMP_SHARED/data/tinystories_valid_first1000.txt"
    local f
    for f in "$M/stories260K.bin" "$M/tok512.bin" "$TXT"; do
        [ -f "$f" ] || lmp_skip "missing $f"
    done
}

lmp_need_cmds() {
    local c
    for c in "$@"; do command -v "$c" > /dev/null || lmp_skip "no '$c' on PATH"; done
}

lmp_need_mpi() {
    lmp_need_cmds mpirun
    if "$LMPRESS" run /dev/null 2>&1 | grep -q "built without MPI"; then lmp_skip "lmpress built without MPI"; fi
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
    export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
}

PIDS=()
MPID=
lmp_cleanup() {
    local p
    for p in "${PIDS[@]}" $MPID; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [ -n "${T:-}" ] && [ "${fail:-0}" != 0 ] && [ -n "${LMP_KEEP_FAILED:-}" ]; then
        echo "kept the work directory of the failed test: $T" >&2
    elif [ -n "${T:-}" ]; then
        rm -rf "$T"
    fi
}
lmp_workdir() {
    T=$(mktemp -d ${1:+"$1"})
    trap lmp_cleanup EXIT
    cd "$T" || exit 1
}

fail=0
bad() { echo "FAIL: $*"; fail=1; }

wait_for() {
    local s=$1; shift
    for _ in $(seq 1 $((s * 10))); do "$@" && return 0; sleep 0.1; done
    return 1
}

try_coord() {
    local log=$1; shift
    "$LMPRESS" coordinator --bind "${BIND:-tcp://127.0.0.1:*}" --heartbeat-timeout 2000 --verbose "$@" \
        2> "$log" &
    CPID=$!
    PIDS+=("$CPID")
    EP=
    for _ in $(seq 1 200); do
        EP=$(sed -n 's/.*coordinator listening on \(tcp:[^ ]*\).*/\1/p' "$log" | head -1)
        [ -n "$EP" ] && return 0
        kill -0 "$CPID" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}
start_coord() {
    try_coord "$@" || { bad "coordinator did not start"; cat "$1"; exit 1; }
}

WORKER_ARGS=()
start_worker() {
    local name=$1; shift
    env "$@" "$LMPRESS" worker --connect "$EP" --name "$name" ${WORKER_ARGS[@]+"${WORKER_ARGS[@]}"} \
        --verbose 2> "w-$name.log" &
    PIDS+=("$!")
    eval "WPID_$name=$!"
}

same_layers() {
    local la lb d n=0
    la=$(h5dump -n "$1" | awk '$1=="dataset"{print $2}' | grep -v '^/events/' | sort)
    lb=$(h5dump -n "$2" | awk '$1=="dataset"{print $2}' | grep -v '^/events/' | sort)
    [ -n "$la" ] && [ "$la" = "$lb" ] || { echo "different dataset lists"; return 1; }
    for d in $la; do
        h5diff -q "$1" "$2" "$d" "$d" > /dev/null || { echo "dataset $d differs"; return 1; }
        n=$((n + 1))
    done
    echo "$n datasets identical"
}

ppl() {
    "$LMPRESS" eval --artifact "$1" --text "${2:-ev.txt}" --ctx "${3:-96}" 2>/dev/null |
        sed -n 's/^ppl \([0-9.eE+-]*\) .*/\1/p' | head -1
}

near() {
    python3 -c "import math,sys; a,r=float('$1' or 'nan'),float('$2' or 'nan'); sys.exit(0 if math.isfinite(a) and abs(a/r-1)<$3 else 1)"
}

stories_tune_setup() {
    head -c 120000 "$TXT" > cal.txt
    sed -n '1000,2000p' "$TXT" > tune.txt
    "$LMPRESS" compress --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib cal.txt \
        --nsamples 12 --ctx 96 --threads 2 --max-rounds 4 --adam-steps 50 --scheme 2x4g4 \
        --keep '*.down_proj' --out a.h5 2> a.log || { bad "compress"; cat a.log; exit 1; }
    TUNE=(--artifact a.h5 --model "$M/stories260K.bin" --data tune.txt --ctx 96 --batch 4
          --lr 1e-3 --code-lr 1e-3 --steps 12)
}
