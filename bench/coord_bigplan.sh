#!/usr/bin/env bash
# coord_bigplan - does a coordinator stay responsive while it plans a job over a large model?
# A synthetic Hugging Face checkpoint in Llama-2-7B's shapes (dim 4096, hidden 11008, 32
# heads, 32 kv heads, 32 layers, F16 safetensors, seeded random weights; vocabulary VOCAB,
# default 512 with stories260K's llama2.c tokenizer, so the file is ~12.9 GB) is written once
# into OUT (needs that much disk). A `lmpress coordinator` (--heartbeat-timeout 2000) and one
# `lmpress worker` run on loopback; a job over the checkpoint is submitted (AQLM 2x8g8,
# sequential), and while the coordinator plans it (model open, the fingerprint that reads
# every weight, tokenization, the artifact) `lmpress status` is timed every 0.25 s. The job
# is cancelled once planned (nothing is compressed). Prints one JSON object: the planning
# seconds (coordinator log: "planning job 1" to "job 1 accepted"), the status answers during
# planning and their slowest time, and the workers declared gone (must be 0).
# Usage: bench/coord_bigplan.sh [LMPRESS]; environment: OUT (work dir, default a temporary
# one, removed with the checkpoint), KEEP_MODEL=1 (keep OUT's checkpoint for the next run),
# LMP_SHARED (the shared data directory), VOCAB (512).
set -u
LMPRESS=${1:-${LMPRESS:-build/cli/lmpress}}
SHARED=${LMP_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
TOK=$SHARED/models/stories260K/tok512.bin
CALIB=$SHARED/data/tinystories_valid_first1000.txt
VOCAB=${VOCAB:-512}
for f in "$LMPRESS" "$TOK" "$CALIB"; do
    [ -e "$f" ] || { echo "coord_bigplan: missing $f" >&2; exit 77; }
done
if [ -z "${OUT:-}" ]; then OUT=$(mktemp -d); KEEP_MODEL=; fi
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2> /dev/null; done
    wait 2> /dev/null
    rm -rf "$OUT"/art.h5* "$OUT"/st.txt "$OUT"/stop
    [ -n "${KEEP_MODEL:-}" ] || rm -rf "$OUT"
}
trap cleanup EXIT
mkdir -p "$OUT"
M=$OUT/synth-7b
if [ ! -f "$M/model.safetensors" ]; then
    python3 "$(dirname "$0")/../scripts/gen_llama.py" "$M" --shape 7b --vocab "$VOCAB" ||
        { echo "coord_bigplan: cannot write the checkpoint into $M" >&2; exit 1; }
fi
sync
echo 3 > /proc/sys/vm/drop_caches 2> /dev/null   # a cold page cache when allowed (root)

"$LMPRESS" coordinator --bind 'tcp://127.0.0.1:*' --heartbeat-timeout 2000 --verbose \
    2> "$OUT/c.log" &
PIDS+=($!)
EP=
for _ in $(seq 1 200); do
    EP=$(sed -n 's/.*coordinator listening on \(tcp:[^ ]*\).*/\1/p' "$OUT/c.log" | head -1)
    [ -n "$EP" ] && break
    sleep 0.05
done
[ -n "$EP" ] || { echo "coord_bigplan: no coordinator" >&2; exit 1; }
"$LMPRESS" worker --connect "$EP" --name w1 --threads 1 2> "$OUT/w.log" &
PIDS+=($!)
export LMPRESS_TIMEOUT_MS=10000
job_state() {   # JSON of lmpress status -> the first job's state, or "none"
    python3 -c 'import json, sys
try:
    j = json.loads(sys.argv[1])["jobs"]
    print(j[0]["state"] if j else "none")
except Exception:
    print("none")' "$1"
}
t0=$(date +%s%N)
"$LMPRESS" submit --connect "$EP" --model "$M" --tokenizer "$TOK" --calib "$CALIB" --nsamples 8 \
    --ctx 128 --scheme 2x8g8 --mode sequential --out "$OUT/art.h5" > "$OUT/sub.out" 2>&1 &
PIDS+=($!)
: > "$OUT/st.txt"
while ! grep -q "job 1 accepted:\|job refused\|job 1 failed" "$OUT/c.log"; do
    a=$(date +%s%N)
    j=$(timeout 10 "$LMPRESS" status --connect "$EP" --json 2> /dev/null)
    b=$(date +%s%N)
    s=$(job_state "$j")
    echo "$(((b - a) / 1000000)) ${s:-none}" >> "$OUT/st.txt"
    sleep 0.25
    [ $((($(date +%s%N) - t0) / 1000000000)) -lt 1800 ] || break
done
t1=$(date +%s%N)
"$LMPRESS" cancel --connect "$EP" > /dev/null 2>&1
sleep 1
n=$(wc -l < "$OUT/st.txt")
slowest=$(sort -n "$OUT/st.txt" | tail -1 | cut -d' ' -f1)
queued=$(grep -c ' queued$' "$OUT/st.txt")
gone=$(grep -c "declared gone" "$OUT/c.log")
planned=$(grep -q "job 1 accepted:" "$OUT/c.log" && echo true || echo false)
printf '{"model_gb":%.1f,"planned":%s,"planning_s":%.1f,"status_answers":%d,"queued_answers":%d,"status_slowest_ms":%s,"workers_gone":%d}\n' \
    "$(echo "$(stat -c %s "$M/model.safetensors") / 1000000000" | bc -l)" "$planned" \
    "$(echo "($t1 - $t0) / 1000000000" | bc -l)" "$n" "$queued" "${slowest:-0}" "$gone"
[ "$planned" = true ] && [ "$gone" -eq 0 ]
