#!/usr/bin/env bash
# same_artifacts - the restructuring guard: run the same stories260K jobs with the lmpress of
# a reference commit and with the lmpress of this tree, and compare every artifact dataset
# with h5diff (the event log aside). Every job must give identical bits.
#
#   scripts/same_artifacts.sh REV [NEW_LMPRESS]
#
# REV is built (Release, git archive) under $HOME/.cache/lmpress/guard/REV once; the new
# binary defaults to build/coordinator/lmpress or build/cli/lmpress. Jobs:
#   independent, sequential, sequential --finetune, independent --finetune, --calib generate,
#   sequential RTN (lmpress compress); sequential on `lmpress coordinator` + one `lmpress worker`
#   (row-shard tasks) and independent on a coordinator + two workers (lmpress submit).
# Row shards over two workers follow the workers' measured throughputs, so their artifacts are
# not reproducible run to run; tests/integration/cluster_sequential.sh and cluster_rows.sh bound
# them by perplexity instead.
# Besides every dataset, the root attributes (the job's description) must be identical too,
# except the job key that the resume fingerprint v2 (issue 10) words differently from older
# trees on purpose: calib_fingerprint (every setting, field by field, and the tokens),
# calib_desc (those settings in words) and build (the build that wrote the artifact, absent
# before v2). LMP_GUARD_JOB_KEY_ATTRS overrides that list ("" compares every attribute, for
# two trees of the same fingerprint format). No dataset is ever excluded.
# GUARD_OLD_THREADS=N runs the reference binary's jobs (compress and submit) with --threads N
# while the new one keeps --threads 2: since the thread-invariance fix (docs/kernels.md) the
# new tree's results at any thread count equal an older tree's --threads 1 results, so
# compare against an older REV with GUARD_OLD_THREADS=1.
# Both binaries run the same OpenBLAS kernels: OPENBLAS_CORETYPE (default Prescott, what
# OpenBLAS 0.3.21 picks on a CPU it does not know; lmpress would otherwise re-execute itself
# with better ones, docs/kernels.md, and GEMM rounding would differ between the sides).
set -euo pipefail
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Prescott}
here=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:?usage: same_artifacts.sh REV [NEW_LMPRESS]}
new=${2:-}
JOB_KEY_ATTRS=${LMP_GUARD_JOB_KEY_ATTRS-"calib_fingerprint calib_desc build"}
OLD_THREADS=${GUARD_OLD_THREADS:-}
[[ -z "$OLD_THREADS" || "$OLD_THREADS" =~ ^[1-9][0-9]*$ ]] ||
    { echo "same_artifacts: GUARD_OLD_THREADS wants a positive integer" >&2; exit 2; }
if [ -z "$new" ]; then
    for c in "$here/build/cli/lmpress" "$here/build/coordinator/lmpress"; do
        [ -x "$c" ] && { new=$c; break; }
    done
fi
[ -x "$new" ] || { echo "same_artifacts: no lmpress binary (build first or pass one)" >&2; exit 2; }
shared=${LMP_SHARED:-$here/../shared}
M=$shared/models/stories260K
TXT=$shared/data/tinystories_valid_first1000.txt
[ -f "$M/stories260K.bin" ] || { echo "same_artifacts: $M/stories260K.bin not found" >&2; exit 2; }

sha=$(git -C "$here" rev-parse "$rev")
gdir=$HOME/.cache/lmpress/guard/$sha
old=""
for c in "$gdir/build/cli/lmpress" "$gdir/build/coordinator/lmpress"; do
    [ -x "$c" ] && { old=$c; break; }
done
if [ -z "$old" ]; then
    rm -rf "$gdir" && mkdir -p "$gdir/src"
    git -C "$here" archive "$sha" | tar -x -C "$gdir/src"
    cmake -S "$gdir/src" -B "$gdir/build" -DCMAKE_BUILD_TYPE=Release -DLMP_MPI=ON >/dev/null
    cmake --build "$gdir/build" -j"$(nproc)" --target lmpress >/dev/null
    for c in "$gdir/build/cli/lmpress" "$gdir/build/coordinator/lmpress"; do
        [ -x "$c" ] && { old=$c; break; }
    done
fi
echo "reference: $sha ($old)"
echo "new:       $new"
[ -n "$JOB_KEY_ATTRS" ] && echo "job key attributes not compared (fingerprint v2): $JOB_KEY_ATTRS"
[ -n "$OLD_THREADS" ] && echo "reference jobs at --threads $OLD_THREADS (GUARD_OLD_THREADS)"

T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"' EXIT
head -c 120000 "$TXT" > "$T/cal.txt"
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin")
CAL=(--calib "$T/cal.txt" --nsamples 12 --ctx 96 --threads 2 --max-rounds 4 --adam-steps 50)
AQ=(--scheme 2x4g4 --keep '*.down_proj')
declare -A JOBS=(
    [independent]="${CAL[*]} ${AQ[*]} --mode independent"
    [sequential]="${CAL[*]} ${AQ[*]} --mode sequential"
    [seq_finetune]="${CAL[*]} ${AQ[*]} --mode sequential --finetune --ft-epochs 1"
    [ind_finetune]="${CAL[*]} ${AQ[*]} --mode independent --finetune --ft-epochs 1"
    [generate]="--calib generate --nsamples 4 --ctx 64 --threads 2 --max-rounds 2 --adam-steps 20 ${AQ[*]} --mode sequential"
    [seq_rtn]="--calib $T/cal.txt --nsamples 12 --ctx 96 --threads 2 --method rtn --bits 2 --group 32 --keep *.down_proj --mode sequential"
)

fail=0
rootattrs() {   # FILE: the root attribute names, sorted, the job key left out
    local a
    for a in $(h5dump -H "$1" | sed -n 's/^   ATTRIBUTE "\(.*\)" {$/\1/p' | sort); do
        [[ " $JOB_KEY_ATTRS " == *" $a "* ]] || echo "$a"
    done
}
same() {
    local la lb d n=0
    la=$(h5dump -n "$1" | awk '$1=="dataset"{print $2}' | grep -v '^/events/' | sort)
    lb=$(h5dump -n "$2" | awk '$1=="dataset"{print $2}' | grep -v '^/events/' | sort)
    [ -n "$la" ] && [ "$la" = "$lb" ] || { echo "different dataset lists"; return 1; }
    for d in $la; do
        h5diff -q "$1" "$2" "$d" "$d" > /dev/null || { echo "dataset $d differs"; return 1; }
        n=$((n + 1))
    done
    la=$(rootattrs "$1"); lb=$(rootattrs "$2")
    [ "$la" = "$lb" ] || { echo "different root attribute lists"; return 1; }
    for d in $la; do
        [ "$(h5dump -a "/$d" "$1" | tail -n +2)" = "$(h5dump -a "/$d" "$2" | tail -n +2)" ] ||
            { echo "root attribute $d differs"; return 1; }
    done
    echo "$n datasets and $(echo "$la" | wc -w) root attributes identical"
}
side_args() {   # SIDE ARGS...: ARGS, the reference's --threads replaced by GUARD_OLD_THREADS
    local side=$1 prev=""; shift
    out=()
    for a in "$@"; do
        [ "$side" = old ] && [ -n "$OLD_THREADS" ] && [ "$prev" = --threads ] && a=$OLD_THREADS
        out+=("$a"); prev=$a
    done
}
check() {   # NAME
    local r
    if r=$(same "$T/old_$1.h5" "$T/new_$1.h5"); then echo "  $1: $r"
    else echo "  $1: DIFFERENT: $r"; fail=1; fi
}

for name in independent sequential seq_finetune ind_finetune generate seq_rtn; do
    read -r -a args <<< "${JOBS[$name]}"
    for side in old new; do
        bin=$old; [ $side = new ] && bin=$new
        set -f
        side_args $side "${args[@]}"
        if ! "$bin" compress "${MOD[@]}" "${out[@]}" --out "$T/${side}_$name.h5" \
                > "$T/${side}_$name.out" 2>&1; then
            echo "  $name: $side lmpress compress failed:"; tail -3 "$T/${side}_$name.out"; fail=1
        fi
        set +f
    done
    [ -f "$T/old_$name.h5" ] && [ -f "$T/new_$name.h5" ] && check "$name"
done

# cluster: real coordinator and worker processes on loopback
cluster() {   # SIDE NAME NWORKERS ARGS...
    local side=$1 name=$2 nw=$3 bin=$old port; shift 3
    [ "$side" = new ] && bin=$new
    port=$((20000 + RANDOM % 20000))
    "$bin" coordinator --bind "tcp://127.0.0.1:$port" 2> "$T/$side-$name-coord.log" &
    local cpid=$! wp=()
    sleep 1
    for i in $(seq "$nw"); do
        "$bin" worker --connect "tcp://127.0.0.1:$port" --name "w$i" --threads 1 \
            2> "$T/$side-$name-w$i.log" &
        wp+=($!)
    done
    side_args "$side" "$@"
    timeout 600 "$bin" submit --connect "tcp://127.0.0.1:$port" --wait "${MOD[@]}" "${out[@]}" \
        --out "$T/${side}_$name.h5" > "$T/$side-$name.out" 2>&1 ||
        { echo "  $name: $side submit failed"; tail -3 "$T/$side-$name.out"; fail=1; }
    kill "$cpid" "${wp[@]}" 2>/dev/null || true
    wait "$cpid" "${wp[@]}" 2>/dev/null || true
}
for side in old new; do
    cluster $side cluster_seq 1 "${CAL[@]}" "${AQ[@]}" --mode sequential
    cluster $side cluster_ind2 2 "${CAL[@]}" "${AQ[@]}" --mode independent
done
for name in cluster_seq cluster_ind2; do
    [ -f "$T/old_$name.h5" ] && [ -f "$T/new_$name.h5" ] && check "$name"
done
[ $fail = 0 ] && echo "same_artifacts: every artifact identical to $sha" || echo "same_artifacts: FAILED"
exit $fail
