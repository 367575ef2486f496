#!/usr/bin/env bash
# compress_stories - lmpress compress / eval --artifact / inspect on stories260K:
# round trips in both modes, sequential the default, AQLM beats RTN at more bits, kill -9 + resume gives the
# same model, refusal of another job's artifact, corrupt artifact, full disk.
# Calibration and evaluation use disjoint parts of the TinyStories text.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 120000 "$TXT" > "$T/cal.txt"
tail -c 100000 "$TXT" > "$T/eval.txt"
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin")
CAL=(--calib "$T/cal.txt" --nsamples 12 --ctx 96 --threads 2 --max-rounds 4 --adam-steps 50)
# g=4 divides every layer (down_proj has n_in 172); keep down_proj so RTN g32 fits too
AQ=(--scheme 2x4g4 --keep '*.down_proj')
ppl() { "$LMPRESS" eval --artifact "$1" --text "$T/eval.txt" --ctx 128 --json |
        sed -n 's/.*"ppl":\([^,]*\).*/\1/p'; }
num_lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
finite() { awk -v a="$1" 'BEGIN { exit !(a + 0 == a && a > 1 && a < 1e6) }'; }
jfield() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; }

base=$("$LMPRESS" eval "${MOD[@]}" --text "$T/eval.txt" --ctx 128 --json |
       sed -n 's/.*"ppl":\([^,]*\).*/\1/p')
finite "$base" || bad "original ppl '$base'"

# 1. round trips in both modes
for mode in independent sequential; do
    if ! "$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" --mode $mode --json \
            --out "$T/$mode.h5" > "$T/$mode.json" 2> "$T/$mode.err"; then
        bad "compress --mode $mode"; cat "$T/$mode.err"
    fi
    grep -q "model.layers.4.mlp.up_proj rel err" "$T/$mode.err" || bad "$mode: no progress lines"
    for s in seconds_calibration seconds_quantization; do   # stage times (embedded path: worker-seconds)
        v=$(jfield "$T/$mode.json" $s)
        awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }' || bad "$mode: $s is '$v', not > 0"
    done
    p=$(ppl "$T/$mode.h5")
    finite "$p" || bad "$mode ppl '$p'"
    num_lt "$base" "$p" || bad "$mode ppl $p not above the original's $base"
    eval "ppl_$mode=$p"
    echo "$mode: ppl $p (original $base)"
done
[ "$ppl_independent" != "$ppl_sequential" ] || bad "modes gave identical models"

# 1a. one default mode: without --mode, the JSON summary and the artifact (its calibration
#     settings, which the resume fingerprint hashes) both say sequential, and the artifact
#     is the --mode sequential one
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" --json --out "$T/default.h5" \
    > "$T/default.json" 2> "$T/default.err" || { bad "compress without --mode"; cat "$T/default.err"; }
grep -q '"mode":"sequential"' "$T/default.json" || bad "compress --json: mode is not sequential"
"$LMPRESS" inspect --json "$T/default.h5" | grep -q '"calibration":"[^"]* mode=sequential ' ||
    bad "inspect --json: the artifact's mode is not sequential"
same_layers "$T/sequential.h5" "$T/default.h5" || bad "no --mode differs from --mode sequential"

# 1b. one code path: independent mode runs on the embedded coordinator + local workers;
#     its artifact equals a separate coordinator + worker's (submit --wait, whose default
#     mode is sequential too), dataset for dataset (the event log aside)
start_coord coord.log
start_worker w1
timeout 300 "$LMPRESS" submit --connect "$EP" --wait "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" \
    --mode independent --out "$T/cluster.h5" > /dev/null 2> "$T/cluster.err" ||
    { bad "submit --wait"; cat "$T/cluster.err"; }
kill -TERM "$WPID_w1" "$CPID" 2>/dev/null
wait "$WPID_w1" "$CPID" 2>/dev/null
same_layers "$T/independent.h5" "$T/cluster.h5" || bad "embedded path differs from the cluster path"

# 1c. the embedded coordinator blocks its loop while it plans a job (hashing the model,
#     tokenizing the text): 12 s of that, past the cluster's 10 s timeouts, must not fail
#     `lmpress compress`, whose client and workers share its process; the worker says Hello
#     after the job came in (it then waits the whole planning for its HelloAck)
LMP_FAULT_HELLO_SLEEP_MS=1000 LMP_FAULT_PLAN_SLEEP_MS=12000 timeout 300 "$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" --mode independent \
    --out "$T/slowplan.h5" > /dev/null 2> "$T/slowplan.err" ||
    { bad "compress with a slow job plan failed"; cat "$T/slowplan.err"; }
same_layers "$T/independent.h5" "$T/slowplan.h5" > /dev/null || bad "slow job plan: a different artifact"

# 2. AQLM beats RTN with more bits per weight
"$LMPRESS" compress "${MOD[@]}" --method rtn --bits 2 --group 32 --keep '*.down_proj' --json \
    --out "$T/rtn.h5" > "$T/rtn.json" 2>/dev/null || bad "compress rtn"
p_rtn=$(ppl "$T/rtn.h5")
b_rtn=$(jfield "$T/rtn.json" bits_per_weight_linear)
b_aq=$(jfield "$T/independent.json" bits_per_weight_linear)
echo "rtn2g32: ppl $p_rtn at $b_rtn bits; aqlm 2x4g4: ppl $ppl_independent at $b_aq bits"
num_lt "$b_aq" "$b_rtn" || bad "aqlm bits $b_aq not below rtn's $b_rtn"
num_lt "$ppl_independent" "$p_rtn" || bad "aqlm ppl $ppl_independent not below rtn's $p_rtn"

# 3. inspect
"$LMPRESS" inspect "$T/independent.h5" > "$T/inspect.txt" || bad "inspect"
grep -q "scheme 2x4g4" "$T/inspect.txt" || bad "inspect: no scheme"
grep -q "model.layers.2.self_attn.v_proj *2x4g4" "$T/inspect.txt" || bad "inspect: no layer line"
grep -q "30 of 35 linears compressed, 5 kept unquantized.*complete" "$T/inspect.txt" ||
    bad "inspect: totals"
"$LMPRESS" inspect --json "$T/independent.h5" | grep -q '"complete":true' || bad "inspect --json"

# 4. kill -9 mid-run, resume: same model as the uninterrupted run (independent mode)
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" --mode independent \
    --out "$T/k.h5" 2> "$T/k.err" &
pid=$!
for _ in $(seq 1 600); do   # until a few layers are committed
    n=$(ls "$T/k.h5.parts" 2>/dev/null | grep -c '^layer-' || true)
    [ "$n" -ge 6 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
[ -f "$T/k.h5" ] && "$LMPRESS" eval --artifact "$T/k.h5" --text "$T/eval.txt" --ctx 128 \
    >/dev/null 2>&1 && bad "an interrupted artifact evaluated as complete"
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" --mode independent --out "$T/k.h5" \
    > "$T/k2.out" 2> "$T/k2.err" || { bad "resume"; cat "$T/k2.err"; }
grep -q "(resumed)" "$T/k2.err" || echo "note: the first run finished before the kill"
p=$(ppl "$T/k.h5")
[ "$p" = "$ppl_independent" ] || bad "resumed ppl $p != uninterrupted $ppl_independent"

# 5. refusal: the same artifact for another scheme / another calibration
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" --scheme 2x5g4 --keep '*.down_proj' \
    --mode independent --out "$T/independent.h5" 2> "$T/mm.err" && bad "other scheme accepted"
grep -qi "scheme\|another\|mismatch\|belongs" "$T/mm.err" || { bad "mismatch message"; cat "$T/mm.err"; }
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" --seed 7 --mode independent \
    --out "$T/independent.h5" 2> "$T/mm2.err" && bad "other calibration accepted"

# 6. a scheme that does not divide a layer
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" --scheme 2x8g8 --out "$T/g8.h5" 2> "$T/g8.err" &&
    bad "2x8g8 accepted on n_in 172"
grep -q "2x8g8 does not fit layer 'model.layers.0.mlp.down_proj'" "$T/g8.err" ||
    { bad "scheme message"; cat "$T/g8.err"; }

# 7. corrupt artifact
cp "$T/sequential.h5" "$T/c.h5"
sz=$(stat -c %s "$T/c.h5")
printf 'garbage!garbage!garbage!' | dd of="$T/c.h5" bs=1 seek=$((sz / 2)) conv=notrunc 2>/dev/null
head -c $((sz / 3)) "$T/sequential.h5" > "$T/t.h5"
for f in c t; do
    out=$("$LMPRESS" eval --artifact "$T/$f.h5" --text "$T/eval.txt" --ctx 128 2>&1)
    rc=$?
    if [ $rc -eq 0 ] || [ $rc -gt 127 ]; then bad "corrupt artifact $f: rc $rc"; fi
    echo "$out" | grep -q "^lmpress: .*$f.h5" || bad "corrupt artifact $f: message '$out'"
done

# 8. disk full: exits non-zero with the message, committed layers kept, resume completes
# (the limit is per part file: the layers fit, the 128 KiB embedding, stored last, does not)
LMP_FAULT_WRITE_LIMIT=100000 "$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" \
    --mode independent --out "$T/full.h5" 2> "$T/full.err" && bad "full disk not reported"
grep -qi "no space\|disk full\|ENOSPC" "$T/full.err" || { bad "full disk message"; cat "$T/full.err"; }
[ ! -f "$T/full.h5" ] || bad "full disk: a finalized artifact exists"
n=$(ls "$T/full.h5.parts" | grep -c '^layer-')
[ "$n" -eq 30 ] || bad "full disk: $n committed layers kept, expected 30"
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${AQ[@]}" --mode independent --out "$T/full.h5" \
    > /dev/null 2> "$T/full2.err" || bad "resume after full disk"
[ "$(grep -c '(resumed)' "$T/full2.err")" -eq 30 ] || bad "resume after full disk re-ran layers"
p=$(ppl "$T/full.h5")
[ "$p" = "$ppl_independent" ] || bad "after full disk: ppl $p != $ppl_independent"

# 9. keep everything: the artifact model is the original model
"$LMPRESS" compress "${MOD[@]}" --method rtn --keep '*' --out "$T/all.h5" >/dev/null 2>&1 ||
    bad "keep all"
p=$(ppl "$T/all.h5")
[ "$p" = "$base" ] || bad "keep-all ppl $p != original $base"

exit $fail
