#!/usr/bin/env bash
# spool - payloads too big for a frame go by reference through the job's spool directory
# (proto/blobfile.h): with LMP_INLINE_MAX=1 every calibration result, every H and every task's
# shipped blocks travel as files next to the artifact, as a 7B block's sums and H do at the
# default 64 MiB (and a 70B block's codes would).
#  1. `lmpress compress` (independent; sequential with fine-tuning) through the spool gives
#     the same datasets as inline, and leaves no spool directory behind;
#  2. a cluster job whose workers spool: one worker changes a byte of its file after the
#     checksum (LMP_FAULT_SPOOL_FLIP), one writes a NaN sum (calnan): both are refused,
#     naming the worker and the problem (the file and its checksum), their slices go to the
#     good worker, and the artifact equals case 1's;
# The write and read errors themselves (a missing directory, a truncated file, a changed byte)
# are tests/proto/test_blobfile.c's.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib "$T/cal.txt" --nsamples 4
     --ctx 64 --threads 1 --max-rounds 2 --adam-steps 20 --scheme 2x6g4 --keep '*mlp*' --seed 5)
IND=(--mode independent)
SEQ=(--mode sequential --finetune --ft-epochs 1)

# 1. embedded: inline and spooled give the same artifact
for m in IND SEQ; do
    eval "args=(\"\${$m[@]}\")"
    "$LMPRESS" compress "${JOB[@]}" "${args[@]}" --out "ref-$m.h5" > /dev/null 2> "ref-$m.err" ||
        { bad "compress $m"; tail -3 "ref-$m.err"; }
    LMPRESS_LOG=info LMP_INLINE_MAX=1 "$LMPRESS" compress "${JOB[@]}" "${args[@]}" \
        --out "sp-$m.h5" > /dev/null 2> "sp-$m.err" ||
        { bad "compress $m through the spool"; tail -3 "sp-$m.err"; }
    r=$(same_layers "ref-$m.h5" "sp-$m.h5") || bad "$m: spooled artifact differs: $r"
    grep -q "calibration sums of block 0 written to '$T/sp-$m.h5.spool/cal-j1-" "sp-$m.err" ||
        bad "$m: no calibration result went through the spool"
    grep -q "calibration sums of block 0, sequences \[0, 1), read from '$T/sp-$m.h5.spool/" \
        "sp-$m.err" || bad "$m: the coordinator read no calibration result from the spool"
    grep -q "H of block 0 written to '$T/sp-$m.h5.spool'" "sp-$m.err" ||
        bad "$m: no H went through the spool"
    grep -q "H of 'model.layers.0.self_attn.q_proj' read from '$T/sp-$m.h5.spool/h-j1-b0-0.f32'" \
        "sp-$m.err" || bad "$m: no worker read its H from the spool"
    if [ $m = SEQ ]; then # the quantized blocks a slice passes, the layers a block tunes
        grep -q "cal-s[0-9]*: [0-9]* MB of blocks shipped through '$T/sp-$m.h5.spool/q-j1-cal-s" \
            "sp-$m.err" || bad "$m: no calibration task's blocks went through the spool"
        grep -q "ft-b1: [0-9]* MB of blocks shipped through '$T/sp-$m.h5.spool/q-j1-ft-b1-a1.pb'" \
            "sp-$m.err" || bad "$m: no fine-tuning task's blocks went through the spool"
        grep -q "shipped arrays read from '$T/sp-$m.h5.spool/q-j1-ft-b1-a1.pb'" "sp-$m.err" ||
            bad "$m: no worker read shipped blocks"
    fi
    [ -e "sp-$m.h5.spool" ] && bad "$m: the spool directory is left behind: $(ls "sp-$m.h5.spool")"
done

# 2. a cluster: a good worker and two whose spooled sums are wrong
export LMP_INLINE_MAX=1
start_coord c2.log --max-attempts 10
start_worker good
start_worker badflip LMP_FAULT_SPOOL_FLIP=1
start_worker badnan LMP_FAULT_RESULT_CORRUPT=calnan
for w in good badflip badnan; do
    wait_for 20 grep -q "worker '$w' joined" c2.log || bad "worker $w did not join"
done
timeout 180 "$LMPRESS" submit --connect "$EP" --wait "${JOB[@]}" "${IND[@]}" --out a.h5 \
    > a.out 2> a.err || { bad "submit --wait with spool-corrupting workers (rc $?)"; tail -5 a.err; }
r=$(same_layers a.h5 ref-IND.h5) || bad "artifact with spool-corrupting workers differs: $r"
grep -q "from 'badflip' refused: blob '$T/a.h5.spool/cal-j1-t[0-9]*-a[0-9]*.f64': checksum" c2.log ||
    bad "no refusal of the changed spool file logged"
grep -q "from 'badnan' refused: a Gram sum is not finite" c2.log ||
    bad "no refusal of the spooled NaN sum logged"
[ -e a.h5.spool ] && bad "cluster: the spool directory is left behind"
kill "$CPID"; wait "$CPID" 2>/dev/null
grep -qi "AddressSanitizer\|runtime error" ./*.log ./*.err && bad "sanitizer report"

exit $fail
