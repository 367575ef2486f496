#!/usr/bin/env bash
# tune_scaling - PV-Tuning step time with 1 and 2 data-parallel ranks of one thread each
# (`mpirun -n 2 lmpress tune`), 2 pipeline stages of one thread each (`--stages 2`), and 1
# rank of 2 threads, on the same artifact, same run; the tuned artifacts of all four must be
# identical (exact integer gradient sums). Peak RSS per rank from /usr/bin/time.
#
#   bench/tune_scaling.sh ART.h5 MODEL DATA [LMPRESS]
#
# Environment: STEPS (default 5), BATCH (windows per step, default 4), CTX (default 512),
# OUT (directory, default a new temporary one). Reports seconds of tuning per step over all
# steps ("all") and over the steps after the first ("steady": the first step also pays for
# first-touching the optimizer state and the MPI buffers, which a run of a hundred steps
# pays once), each from the per-step tokens/s the artifact's event log keeps (`lmpress
# logs`); the speedup of 2 ranks over 1 rank (ratio of the 1-thread runs) for both; and of
# each step's seconds (all steps) those spent in the ranks' gradient sum, waiting for the
# slowest rank included ("sum"), and in the P/V steps with their exchange ("P/V"; with 2+
# ranks each rank steps only the linears it owns).
set -u
ART=${1:?usage: tune_scaling.sh ART.h5 MODEL DATA [LMPRESS]}
MODEL=${2:?}; DATA=${3:?}
LMPRESS=${4:-${LMPRESS:-build/cli/lmpress}}
STEPS=${STEPS:-5}; BATCH=${BATCH:-4}; CTX=${CTX:-512}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
T=(tune --artifact "$ART" --model "$MODEL" --data "$DATA" --steps "$STEPS" --batch "$BATCH"
   --ctx "$CTX" --val-windows 0 --json)
run() {   # name, threads, launcher... -> seconds of tuning
    local name=$1 th=$2; shift 2
    rm -rf "$OUT/$name.h5" "$OUT/$name.h5.tune" "$OUT/$name.h5.parts"
    local extra=(); [ "$name" = s2t1 ] && extra=(--stages 2)
    "$@" /usr/bin/time -f 'rss_kb %M' "$LMPRESS" "${T[@]}" "${extra[@]}" --threads "$th" \
        --out "$OUT/$name.h5" > "$OUT/$name.json" 2> "$OUT/$name.log" ||
        { echo "$name failed: see $OUT/$name.log" >&2; exit 1; }
    field seconds_tuning < "$OUT/$name.json" | tail -1
}
# of a run's seconds per step: the gradient sums, the P/V steps (with their exchange)
part() { echo "$(field "$2" < "$OUT/$1.json" | tail -1) / $STEPS" | bc -l; }
# seconds per step after the first, from the event log's "tune step k/N ... X tok/s"
steady() {
    "$LMPRESS" logs "$OUT/$1.h5" | awk -v rows=$((BATCH * CTX)) '
        / tune step / { split($0, a, "tune step "); split(a[2], b, "/"); k = b[1] + 0
                        for (i = 1; i <= NF; i++) if ($i == "tok/s") r = $(i - 1)
                        if (k > 1 && r > 0) { s += rows / r; n++ } }
        END { if (n) printf "%.2f", s / n; else print "nan" }'
}
rss() { awk '/^rss_kb/ { if ($2 > m) m = $2 } END { printf "%.0f", m / 1024 }' "$OUT/$1.log"; }
a=$(run r1t1 1 env); b=$(run r2t1 1 mpirun -n 2); s=$(run s2t1 1 mpirun -n 2)
c=$(run r1t2 2 env)
[ -n "$a" ] && [ -n "$b" ] && [ -n "$s" ] && [ -n "$c" ] || exit 1
same() { h5diff -q "$1" "$2" /layers /layers > /dev/null && echo identical || echo DIFFERENT; }
printf 'PV-Tuning, %s steps of %s windows of %s tokens (%s)\n' "$STEPS" "$BATCH" "$CTX" "$ART"
printf '%-30s %6s %7s %6s %6s %14s %10s\n' run "all" "steady" "sum" "P/V" "peak RSS/rank" \
    artifact
row() { # label, run name, seconds, artifact verdict
    printf '%-30s %6.1f %7.1f %6.2f %6.2f %11s MB %10s\n' "$1" "$(echo "$3 / $STEPS" | bc -l)" \
        "$(steady "$2")" "$(part "$2" seconds_sum)" "$(part "$2" seconds_pv)" "$(rss "$2")" "$4"
}
row "1 rank x 1 thread" r1t1 "$a" reference
row "2 ranks x 1 thread (mpirun)" r2t1 "$b" "$(same "$OUT/r1t1.h5" "$OUT/r2t1.h5")"
row "2 stages x 1 thread (--stages)" s2t1 "$s" "$(same "$OUT/r1t1.h5" "$OUT/s2t1.h5")"
row "1 rank x 2 threads" r1t2 "$c" "$(same "$OUT/r1t1.h5" "$OUT/r1t2.h5")"
printf '2 ranks over 1 rank: %.2fx (steady %.2fx); 2 stages over 1 rank: %.2fx (steady %.2fx)\n' \
    "$(echo "$a / $b" | bc -l)" "$(echo "$(steady r1t1) / $(steady r2t1)" | bc -l)" \
    "$(echo "$a / $s" | bc -l)" "$(echo "$(steady r1t1) / $(steady s2t1)" | bc -l)"
