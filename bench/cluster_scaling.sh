#!/usr/bin/env bash
# cluster_scaling - wall time of one independent-mode compression job on real `lmpress
# coordinator` + `lmpress worker` processes on loopback, for several layouts in ONE run,
# so that the ratios compare runs taken under the same machine load.
#
# A layout is WxT: W workers of T threads each (default "1x2 2x1 1x1": one 2-thread worker,
# two 1-thread workers, one 1-thread worker). Reported:
#   - wall: `lmpress submit --wait` start to exit (the whole job, calibration included), and
#     quant-phase wall: first TaskAssign logged by the coordinator to the last commit;
#   - speedup 2x1 vs 1x2 (worker scaling at equal cores: the target), 1x1 vs 1x2 (thread
#     scaling of one worker), 1x1 vs 2x1 (worker scaling at equal threads per worker);
#   - worker utilisation: sum over tasks of (worker's "done" - worker's "task" log time) / (W x
#     quant-phase wall);
#   - coordinator overhead per task, two ways (see "What is counted" below);
#   - whether every layout wrote the same artifact (h5diff, dataset by dataset).
#
# Threads: a worker's kernels read LMP_THREADS and OpenBLAS reads OPENBLAS_NUM_THREADS, so each
# worker runs with --threads T and both variables set to T. The coordinator (which calibrates
# in the versions where it computes H itself) gets --coord-threads (default 2) via the job's
# --threads and the same two variables, the same in every layout, so every layout runs the same
# job spec and must write the same artifact.
#
# Reduced runs: --blocks N quantizes only the LAST N blocks (the others are --keep patterns).
# The last ones, not the first: the coordinator forwards the calibration batch through every
# block in order, and with the first N blocks it would forward the unquantized rest while one
# worker waits for the other's last task (a cost only multi-worker runs would pay). With the
# last N, that forward is a prelude that every layout pays alike; the quant-phase wall leaves
# it out. --blocks all (or --full) quantizes every block.
#
# Timeouts: a coordinator that calibrates in its event loop answers nobody while it forwards the
# calibration batch (minutes for the prelude of a reduced run), so submit runs with
# LMPRESS_TIMEOUT_MS=3600000, the workers with --timeout 3600000, and the coordinator with
# --heartbeat-timeout 3600000 (a worker that hears nothing for that long says Hello again, and
# the coordinator then runs its task a second time).
#
# What is counted (coordinator overhead), from the logs, each line stamped by this script with
# $EPOCHREALTIME as it is read from the process's stderr (a pipe, one reader per process: each
# stamp lags its write by that reader's scheduling delay, milliseconds on an idle machine, tens
# of milliseconds under heavy load, so one interval can be off by that much either way, even
# negative; the means over many tasks are what to read):
#   dispatch_s = worker's "task 'L' (attempt A)" - coordinator's "'L' -> worker" (H packed, sent
#                over loopback, unpacked and copied by the worker);
#   result_s   = coordinator's "L committed" - worker's "task 'L' done in" (result packed, sent,
#                checked, converted and committed to the artifact, i.e. HDF5 write);
#   compute_s  = the seconds the worker reports for the task ("done in X s").
#   overhead = sum(dispatch_s + result_s) / sum(compute_s) over the quantization tasks.
# And from the coordinator process: utime + stime of /proc/PID/stat read when the job is done
# (all its threads, from its start: job planning, tokenization, and calibration when the
# coordinator calibrates), divided by the number of tasks and by sum(compute_s). Calibration is
# counted there, so that figure is an upper bound of the per-task handling cost when the
# coordinator calibrates, and the handling cost itself when workers calibrate.
#
# usage: bench/cluster_scaling.sh [options] [-- extra options of lmpress submit]
#   --lmpress BIN        lmpress binary (default: $LMPRESS, else build/cli/lmpress)
#   --commit REV         build REV (git archive of this repository, Release) under OUT/src and
#                        measure that binary instead
#   --source TEXT        what the binary of --lmpress was built from (recorded in settings.txt;
#                        default: this repository's HEAD and its uncommitted files)
#   --model PATH         (default: ~/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   --tokenizer PATH     (default: none, the model's own)
#   --calib FILE         (default: $LMP_SHARED/data/tinystories_valid_first1000.txt, LMP_SHARED
#                        defaulting to ../shared beside the checkout)
#   --blocks N|all       quantize the last N blocks (default 4); --full = --blocks all
#   --nsamples N --ctx L (default 32 and 512)
#   --scheme S           (default 2x8g8)
#   --layouts "WxT ..."  (default "1x2 2x1 1x1")
#   --repeat R           run the layouts R times, in rotation (default 1); medians are reported
#   --coord-threads T    (default 2)
#   --out DIR            keep logs, artifacts and results.tsv there (default: a temp dir, removed)
#   --timeout S          per job (default 7200)
# Exit 0 when every job finished (whatever the speedup), 1 otherwise; 2 on a usage error.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${LMP_SHARED:-$SRC/../shared}
LMP=${LMPRESS:-$SRC/build/cli/lmpress}
MODEL=$HOME/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf
TOKENIZER=
CALIB=$SHARED/data/tinystories_valid_first1000.txt
BLOCKS=4 NSAMPLES=32 CTX=512 SCHEME=2x8g8 LAYOUTS="1x2 2x1 1x1" REPEAT=1 CTHREADS=2
OUT='' COMMIT='' TMO=7200 SOURCE_LABEL=
EXTRA=()
ARGS="$*"
usage() { sed -n '/^# usage:/,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
    case $1 in
    --lmpress) LMP=$2; shift ;;
    --commit) COMMIT=$2; shift ;;
    --source) SOURCE_LABEL=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --tokenizer) TOKENIZER=$2; shift ;;
    --calib) CALIB=$2; shift ;;
    --blocks) BLOCKS=$2; shift ;;
    --full) BLOCKS=all ;;
    --nsamples) NSAMPLES=$2; shift ;;
    --ctx) CTX=$2; shift ;;
    --scheme) SCHEME=$2; shift ;;
    --layouts) LAYOUTS=$2; shift ;;
    --repeat) REPEAT=$2; shift ;;
    --coord-threads) CTHREADS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --timeout) TMO=$2; shift ;;
    -h|--help) usage 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "cluster_scaling: unknown option '$1'" >&2; usage 2 ;;
    esac
    shift
done
for f in "$MODEL" "$CALIB" ${TOKENIZER:+"$TOKENIZER"}; do
    [ -f "$f" ] || { echo "cluster_scaling: no such file: $f" >&2; exit 2; }
done
for l in $LAYOUTS; do
    [[ $l =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "cluster_scaling: bad layout '$l' (WxT)" >&2; exit 2; }
done
command -v h5diff >/dev/null && command -v h5dump >/dev/null && HAVE_H5=1 || HAVE_H5=0

KEEP_OUT=1
if [ -z "$OUT" ]; then OUT=$(mktemp -d); KEEP_OUT=0; fi
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ "$KEEP_OUT" = 1 ] || rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the binary, and which source it was built from
if [ -n "$COMMIT" ]; then
    rev=$(git -C "$SRC" rev-parse --short "$COMMIT") || exit 2
    mkdir -p "$OUT/src-$rev"
    git -C "$SRC" archive "$rev" | tar -x -C "$OUT/src-$rev" || exit 1
    echo "building $rev in $OUT/src-$rev/build (Release, -j2) ..."
    { cmake -S "$OUT/src-$rev" -B "$OUT/src-$rev/build" -DCMAKE_BUILD_TYPE=Release &&
      cmake --build "$OUT/src-$rev/build" -j2 --target lmpress; } > "$OUT/build.log" 2>&1 ||
        { tail -20 "$OUT/build.log"; exit 1; }
    LMP=$OUT/src-$rev/build/cli/lmpress   # before the layered tree: build/coordinator/lmpress
    [ -x "$LMP" ] || LMP=$OUT/src-$rev/build/coordinator/lmpress
    SOURCE="commit $(git -C "$SRC" rev-parse "$rev") (git archive)"
else
    head=$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$SRC" status --porcelain -- base kernels model proto worker artifact coordinator cli 2>/dev/null | wc -l)
    SOURCE="working tree of $SRC at $head"
    [ "$dirty" -gt 0 ] && SOURCE="$SOURCE + $dirty uncommitted file(s) under coordinator/ worker/ kernels/ proto/ (binary built from the tree at its build time)"
fi
[ -n "$SOURCE_LABEL" ] && SOURCE=$SOURCE_LABEL
[ -x "$LMP" ] || { echo "cluster_scaling: no lmpress binary at '$LMP' (build it, or pass --lmpress/--commit)" >&2; exit 2; }

NL=$("$LMP" inspect "$MODEL" ${TOKENIZER:+--tokenizer "$TOKENIZER"} 2>/dev/null |
     sed -n 's/^config *\([0-9][0-9]*\) layers.*/\1/p' | head -1)
[ -n "$NL" ] || { echo "cluster_scaling: cannot read the layer count of $MODEL" >&2; exit 1; }
[ "$BLOCKS" = all ] && BLOCKS=$NL
[[ $BLOCKS =~ ^[1-9][0-9]*$ ]] && [ "$BLOCKS" -le "$NL" ] ||
    { echo "cluster_scaling: --blocks must be 1..$NL or all" >&2; exit 2; }
KEEP=()
for ((b = 0; b < NL - BLOCKS; b++)); do KEEP+=(--keep "model.layers.$b.*"); done

JOB=(--model "$MODEL" ${TOKENIZER:+--tokenizer "$TOKENIZER"} --calib "$CALIB" --nsamples "$NSAMPLES"
     --ctx "$CTX" --scheme "$SCHEME" --mode independent --seed 0 --threads "$CTHREADS"
     "${KEEP[@]}" "${EXTRA[@]}")

stamp() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }
cpu_s() {   # PID: utime + stime of the process (all threads), seconds
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}
load1() { cut -d' ' -f1 /proc/loadavg; }

# run_layout W T TAG: one job; appends a row to results.tsv
run_layout() {
    local W=$1 T=$2 tag=$3 d="$OUT/$3" ep='' cpid wp=() i
    mkdir -p "$d"
    local la0; la0=$(load1)
    env LMP_THREADS="$CTHREADS" OPENBLAS_NUM_THREADS="$CTHREADS" \
        "$LMP" coordinator --bind 'tcp://127.0.0.1:*' --heartbeat-timeout 3600000 --verbose \
        2> >(stamp > "$d/coord.log") &
    cpid=$!
    PIDS+=("$cpid")
    for _ in $(seq 1 200); do
        ep=$(sed -n 's/.*coordinator listening on \(tcp:[^ ]*\).*/\1/p' "$d/coord.log" | head -1)
        [ -n "$ep" ] && break
        sleep 0.05
    done
    [ -n "$ep" ] || { echo "$tag: coordinator did not start"; cat "$d/coord.log"; return 1; }
    for ((i = 1; i <= W; i++)); do
        env LMP_THREADS="$T" OPENBLAS_NUM_THREADS="$T" \
            "$LMP" worker --connect "$ep" --threads "$T" --name "w$i" --timeout 3600000 --verbose \
            2> >(stamp > "$d/w$i.log") &
        wp+=("$!")
        PIDS+=("$!")
    done
    for _ in $(seq 1 200); do
        [ "$(grep -c "worker 'w[0-9]*' joined" "$d/coord.log")" -ge "$W" ] && break
        sleep 0.05
    done
    local t0 t1 rc
    t0=$EPOCHREALTIME
    LMPRESS_TIMEOUT_MS=3600000 timeout "$TMO" "$LMP" submit --connect "$ep" --wait "${JOB[@]}" --out "$d/art.h5" \
        > "$d/submit.out" 2> "$d/submit.err"
    rc=$?
    t1=$EPOCHREALTIME
    local ccpu wcpu=0 c
    ccpu=$(cpu_s "$cpid")
    for p in "${wp[@]}"; do c=$(cpu_s "$p"); wcpu=$(awk -v a="$wcpu" -v b="$c" 'BEGIN{print a + b}'); done
    kill -TERM "${wp[@]}" "$cpid" 2>/dev/null
    wait "${wp[@]}" "$cpid" 2>/dev/null
    sleep 0.2   # let the stampers drain
    local la1; la1=$(load1)
    if [ "$rc" != 0 ]; then
        echo "$tag: submit --wait exit $rc"; tail -n 5 "$d/submit.err" "$d/coord.log"; return 1
    fi
    "$LMP" inspect "$d/art.h5" > "$d/inspect.txt" 2>&1   # per-layer seconds and steps
    # per-task pairing of the stamped log lines (see "What is counted")
    cat "$d"/w*.log | awk -v W="$W" -v T="$T" -v tag="$tag" -v wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" \
        -v ccpu="$ccpu" -v wcpu="$wcpu" -v la0="$la0" -v la1="$la1" -v clog="$d/coord.log" '
        function q(s) { sub(/^[^'\'']*'\''/, "", s); sub(/'\''.*$/, "", s); return s }
        { ts = $1 }
        / worker [^ ]*: task '\''.*'\'' \(attempt [0-9]+\)/ { split($0, a, "'\''"); recv[a[2]] = ts }
        / worker [^ ]*: task '\''.*'\'' done in / {
            split($0, a, "'\''"); done[a[2]] = ts
            s = $0; sub(/.* done in /, "", s); sub(/s .*/, "", s); comp[a[2]] = s + 0 }
        END {
            while ((getline l < clog) > 0) {
                split(l, f, " "); t = f[1]
                if (l ~ /coordinator: '\''.*'\'' -> worker/) { split(l, a, "'\''"); asg[a[2]] = t
                    if (first == "" || t < first) first = t }
                if (l ~ /\] [^ ]* committed /) { s = l; sub(/.*\] /, "", s); sub(/ committed .*/, "", s)
                    com[s] = t; if (t > last) last = t }
            }
            n = 0; ndisp = 0; nres = 0; sc = 0; sb = 0
            for (k in done) {
                sb += done[k] - recv[k]
                if (!(k in com)) { nother++; sother += comp[k]; continue }
                n++; sc += comp[k]
                if (k in asg) { sd += recv[k] - asg[k]; if (recv[k] - asg[k] > md) md = recv[k] - asg[k] }
                sr += com[k] - done[k]; if (com[k] - done[k] > mr) mr = com[k] - done[k]
            }
            qw = last - first
            printf "%s\t%d\t%d\t%.2f\t%.2f\t%d\t%.2f\t%.3f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.2f\t%.1f\t%.4f\t%.2f\t%s\t%s\n",
                tag, W, T, wall, qw, n, sc, (qw > 0 ? sb / (W * qw) : 0), (n ? sd / n : 0), md,
                (n ? sr / n : 0), mr, (sc > 0 ? (sd + sr) / sc : 0), ccpu, (n ? 1000 * ccpu / n : 0),
                (sc > 0 ? ccpu / sc : 0), wcpu, la0, la1
        }' >> "$OUT/results.tsv"
    tail -1 "$OUT/results.tsv" | awk -F'\t' '{printf "%-8s wall %8.2f s  quant phase %8.2f s  %d tasks, compute %.1f s, util %.2f, dispatch %.1f ms/task, result+commit %.1f ms/task, coord cpu %.2f s (%.0f ms/task)  load %s->%s\n", $1, $4, $5, $6, $7, $8, 1000*$9, 1000*$11, $14, $15, $18, $19}'
}

{
    echo "command=$0 $ARGS"
    echo "source=$SOURCE"
    echo "model=$MODEL"
    echo "n_layers=$NL"
    echo "blocks=$BLOCKS"
    echo "nsamples=$NSAMPLES"
    echo "ctx=$CTX"
    echo "scheme=$SCHEME"
    echo "coord_threads=$CTHREADS"
    echo "layouts=$LAYOUTS"
    echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/settings.txt"
echo "lmpress: $LMP"
echo "source:  $SOURCE"
echo "model:   $MODEL ($NL blocks; quantizing the last $BLOCKS), calib $CALIB, nsamples $NSAMPLES, ctx $CTX, scheme $SCHEME, coordinator threads $CTHREADS"
echo "layouts: $LAYOUTS (WxT: W workers of T threads), repeat $REPEAT"
echo "uptime:  $(uptime)"
printf 'layout\tworkers\tthreads\twall_s\tquant_wall_s\tn_tasks\tcompute_s\tutil\tdispatch_s_mean\tdispatch_s_max\tresult_s_mean\tresult_s_max\toverhead_frac\tcoord_cpu_s\tcoord_cpu_ms_per_task\tcoord_cpu_frac\tworkers_cpu_s\tload_before\tload_after\n' > "$OUT/results.tsv"
fail=0
for ((r = 1; r <= REPEAT; r++)); do
    for l in $LAYOUTS; do
        run_layout "${l%x*}" "${l#*x}" "$l-r$r" || fail=1
    done
done
echo "uptime:  $(uptime)"
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/settings.txt"

# same artifact from every layout
if [ "$HAVE_H5" = 1 ] && [ "$fail" = 0 ]; then
    ref=
    for a in "$OUT"/*/art.h5; do
        [ -z "$ref" ] && { ref=$a; continue; }
        # /events (the job's event log: times, worker names) differs by design
        la=$(h5dump -n "$a" | awk '$1=="dataset" && $2 !~ /^\/events\//{print $2}' | sort)
        lr=$(h5dump -n "$ref" | awk '$1=="dataset" && $2 !~ /^\/events\//{print $2}' | sort)
        same=1
        [ "$la" = "$lr" ] || same=0
        for ds in $la; do h5diff -q "$a" "$ref" "$ds" "$ds" >/dev/null || { same=0; break; }; done
        [ "$same" = 1 ] || { echo "ARTIFACT DIFFERS: $a vs $ref"; fail=1; }
    done
    [ "$fail" = 0 ] && echo "artifacts: every layout wrote the same datasets (h5diff; /events left out)"
fi

# medians and ratios
awk -F'\t' 'NR > 1 { split($1, a, "-r"); k = a[1]; n[k]++; w[k, n[k]] = $4; q[k, n[k]] = $5
                     ov[k, n[k]] = $13; cc[k, n[k]] = $16; ms[k, n[k]] = $15 }
    function med(arr, k, m,    i, j, t, v) {
        for (i = 1; i <= m; i++) v[i] = arr[k, i]
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
    END {
        printf "\n%-6s %10s %14s %22s %22s\n", "layout", "wall (s)", "quant phase (s)", "coord handling/compute", "coord cpu/compute"
        for (k in n) { W[k] = med(w, k, n[k]); Q[k] = med(q, k, n[k])
            printf "%-6s %10.2f %14.2f %21.3f%% %21.2f%%  (%.0f ms cpu/task)\n", k, W[k], Q[k],
                   100 * med(ov, k, n[k]), 100 * med(cc, k, n[k]), med(ms, k, n[k]) }
        print ""
        if (("1x2" in n) && ("2x1" in n))
            printf "speedup 2 workers x 1 thread vs 1 worker x 2 threads: %.3fx (job wall), %.3fx (quant phase); target >= 1.7x\n", W["1x2"] / W["2x1"], Q["1x2"] / Q["2x1"]
        if (("1x1" in n) && ("2x1" in n))
            printf "speedup 2 workers x 1 thread vs 1 worker x 1 thread:  %.3fx (job wall), %.3fx (quant phase)\n", W["1x1"] / W["2x1"], Q["1x1"] / Q["2x1"]
        if (("1x1" in n) && ("1x2" in n))
            printf "speedup 1 worker x 2 threads vs 1 worker x 1 thread:  %.3fx (job wall), %.3fx (quant phase)\n", W["1x1"] / W["1x2"], Q["1x1"] / Q["1x2"]
    }' "$OUT/results.tsv"
[ "$KEEP_OUT" = 1 ] && echo "logs and results.tsv: $OUT"
exit $fail
