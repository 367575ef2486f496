#!/usr/bin/env bash
# cluster_rows - one large layer quantized by 1 worker (whole, TASK_KIND_QUANTIZE_LAYER) and by
# 2 workers as 2 row shards (TASK_KIND_QUANTIZE_ROWS, the coordinator adding each sum of the
# optimisation), on real `lmpress coordinator` + `lmpress worker` processes on loopback, both
# layouts in ONE run so that the ratio compares runs under the same machine load.
#
# The job quantizes only model.layers.0.mlp.<PROJ> (every other linear is a --keep pattern), so
# calibration is block 0 alone. Reported per layout:
#   layer_s: the coordinator's wall time for the layer, from its first assignment line to its
#            "committed" line (each line stamped with $EPOCHREALTIME as this script reads the
#            coordinator's stderr pipe: H sent, k-means, every round, the sums' round trips,
#            the result sent and committed);
#   task_s:  the seconds the worker(s) report for the quantization (the largest shard's);
#   rel:     the layer's final relative error;
# and the speedup layer_s(1 worker) / layer_s(2 workers). Each worker runs --threads T (default
# 1; LMP_THREADS and OPENBLAS_NUM_THREADS set to T), so 2 workers use twice the cores of 1.
#
# usage: bench/cluster_rows.sh [--lmpress BIN] [--model PATH] [--proj gate_proj|up_proj|down_proj]
#                              [--scheme MxBgG] [--nsamples N] [--ctx L] [--threads T]
#                              [--out DIR] [-- extra options of lmpress submit]
# defaults: build/cli/lmpress, ~/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf,
# gate_proj, 2x8g8, 16 sequences of 256 tokens, 1 thread; OUT keeps the logs (default: a
# temporary directory, removed).
set -u
LMPRESS=${LMPRESS:-}
MODEL=$HOME/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf
PROJ=gate_proj SCHEME=2x8g8 NSAMPLES=16 CTX=256 THREADS=1 OUT=
CALIB=${LMP_SHARED:-$(cd "$(dirname "$0")/.." && pwd)/../shared}/data/tinystories_valid_first1000.txt
EXTRA=()
while [ $# -gt 0 ]; do
    case $1 in
        --lmpress) LMPRESS=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        --proj) PROJ=$2; shift 2 ;;
        --scheme) SCHEME=$2; shift 2 ;;
        --nsamples) NSAMPLES=$2; shift 2 ;;
        --ctx) CTX=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --calib) CALIB=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
HERE=$(cd "$(dirname "$0")/.." && pwd)
[ -n "$LMPRESS" ] || LMPRESS=$HERE/build/cli/lmpress
for f in "$LMPRESS" "$MODEL" "$CALIB"; do [ -e "$f" ] || { echo "missing $f" >&2; exit 2; }; done
case $PROJ in
    gate_proj) KEEP_MLP=('*up_proj' '*down_proj') ;;
    up_proj) KEEP_MLP=('*gate_proj' '*down_proj') ;;
    down_proj) KEEP_MLP=('*gate_proj' '*up_proj') ;;
    *) echo "--proj must be gate_proj, up_proj or down_proj" >&2; exit 2 ;;
esac
LAYER=model.layers.0.mlp.$PROJ
if [ -z "$OUT" ]; then OUT=$(mktemp -d); RM_OUT=1; else mkdir -p "$OUT"; RM_OUT=; fi
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "$RM_OUT" ] && rm -rf "$OUT"
}
trap cleanup EXIT
export LMP_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS LMPRESS_TIMEOUT_MS=600000
JOB=(--model "$MODEL" --calib "$CALIB" --nsamples "$NSAMPLES" --ctx "$CTX" --scheme "$SCHEME"
     --mode independent --seed 1 --threads "$THREADS" --row-shards 2
     --keep '*self_attn*' --keep 'model.layers.[1-9]*' --keep '*lm_head*')
for k in "${KEEP_MLP[@]}"; do JOB+=(--keep "$k"); done

# run NAME N_WORKERS: one coordinator, N workers, the job; sets LAYER_S, TASK_S, REL
run() {
    local name=$1 nw=$2 log=$OUT/$1-coord.log ep=
    rm -rf "$OUT/$name.h5" "$OUT/$name.h5.parts"   # a kept artifact would be resumed
    : > "$log"
    "$LMPRESS" coordinator --bind 'tcp://127.0.0.1:*' --heartbeat-timeout 600000 --verbose \
        2> >(while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done > "$log") &
    PIDS+=("$!")
    for _ in $(seq 1 200); do
        ep=$(sed -n 's/.*coordinator listening on \(tcp:[^ ]*\).*/\1/p' "$log" | head -1)
        [ -n "$ep" ] && break
        sleep 0.05
    done
    [ -n "$ep" ] || { echo "coordinator did not start" >&2; exit 1; }
    for w in $(seq 1 "$nw"); do
        "$LMPRESS" worker --connect "$ep" --name "$name-w$w" --threads "$THREADS" --verbose \
            2> "$OUT/$name-w$w.log" &
        PIDS+=("$!")
    done
    for _ in $(seq 1 100); do
        [ "$(grep -c "worker '$name-w[0-9]*' joined" "$log")" -ge "$nw" ] && break
        sleep 0.1
    done
    local t0=$EPOCHREALTIME
    "$LMPRESS" submit --connect "$ep" --wait "${JOB[@]}" "${EXTRA[@]}" --out "$OUT/$name.h5" \
        > "$OUT/$name.out" 2> "$OUT/$name.err" || { echo "$name: submit failed" >&2; cat "$OUT/$name.err" >&2; exit 1; }
    JOB_S=$(echo "$EPOCHREALTIME - $t0" | bc -l)
    local a c
    a=$(grep -m1 -E "'$LAYER' (rows \[|-> worker)" "$log" | cut -d' ' -f1)
    c=$(grep -m1 -E "\] $LAYER committed" "$log" | cut -d' ' -f1)
    LAYER_S=$(echo "$c - $a" | bc -l)
    REL=$(grep -m1 -E "\] $LAYER committed" "$log" | sed -n 's/.*rel err \([0-9.e+-]*\).*/\1/p')
    TASK_S=$(cat "$OUT/$name"-w*.log | sed -n "s/.*task '$LAYER' done in \([0-9.]*\)s.*/\1/p" | sort -g | tail -1)
    # CPU seconds of the workers so far (user + system, from /proc): the work, whatever the load
    CPU_S=0
    for p in $(pgrep -f "worker --connect $ep"); do
        CPU_S=$(echo "$CPU_S + $(awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' /proc/$p/stat)" | bc -l)
    done
    # stop this layout's processes before the next
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    PIDS=()
}

echo "layer $LAYER, scheme $SCHEME, calibration $NSAMPLES x $CTX, $THREADS thread(s) per worker"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run one 1
L1=$LAYER_S T1=$TASK_S R1=$REL J1=$JOB_S C1=$CPU_S
printf "1 worker : layer %.2f s (task %s s), rel err %s, job %.1f s, worker cpu %.1f s\n" "$L1" "$T1" "$R1" "$J1" "$C1"
run two 2
L2=$LAYER_S T2=$TASK_S R2=$REL J2=$JOB_S C2=$CPU_S
printf "2 workers: layer %.2f s (task %s s), rel err %s, job %.1f s, worker cpu %.1f s\n" "$L2" "$T2" "$R2" "$J2" "$C2"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "speedup (layer, 1 worker / 2 row-shard workers): %.2fx\n" "$(echo "$L1 / $L2" | bc -l)"
