#!/usr/bin/env bash
# tune_stories - lmpress tune (PV-Tuning) on stories260K: it lowers the perplexity and the
# KL to the original; without --code-lr the V step's lr follows the scheme (3e-3 at 2 code
# bits per weight, 5e-4 at 4); SIGTERM checkpoints and the same command resumes to the artifact an
# uninterrupted run writes (every dataset identical); a checkpoint of other settings, the
# wrong original model, an RTN artifact and a too-short text are refused with exit 4 and a
# message naming the file; --out equal to --artifact is a usage error.
# Calibration, tuning and evaluation use disjoint parts of the TinyStories text.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 120000 "$TXT" > cal.txt
sed -n '1000,2000p' "$TXT" > tune.txt
tail -c 100000 "$TXT" > ev.txt
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin")
"$LMPRESS" compress "${MOD[@]}" --calib cal.txt --nsamples 12 --ctx 96 --threads 2 --max-rounds 4 \
    --adam-steps 50 --scheme 2x4g4 --keep '*.down_proj' --out a.h5 2> a.log || { bad "compress"; cat a.log; exit 1; }
TUNE=(--artifact a.h5 --model "$M/stories260K.bin" --data tune.txt --ctx 96 --batch 4 --lr 1e-3
      --code-lr 1e-3 --threads 2)

# 1. it helps: perplexity and KL to the original both go down
"$LMPRESS" tune "${TUNE[@]}" --steps 40 --out t.h5 --json > t.json 2> t.log || { bad "tune"; cat t.log; }
p0=$(ppl a.h5 ev.txt 128); p1=$(ppl t.h5 ev.txt 128)
echo "ppl before $p0, after $p1; $(cat t.json)"
python3 -c "import sys; sys.exit(0 if float('$p1') < 0.85 * float('$p0') else 1)" ||
    bad "tuning did not lower the perplexity enough ($p0 -> $p1)"
kl() { "$LMPRESS" eval --artifact "$1" --reference "$M/stories260K.bin" \
       --text ev.txt --ctx 128 --max-windows 40 --json | sed -n 's/.*"kl":\([^,}]*\).*/\1/p'; }
k0=$(kl a.h5); k1=$(kl t.h5)
echo "KL to the original before $k0, after $k1"
python3 -c "import sys; sys.exit(0 if float('$k1') < float('$k0') else 1)" || bad "KL did not drop ($k0 -> $k1)"
grep -q '"val_kl_after"' t.json || bad "--json lacks val_kl_after"

# 1b. without --code-lr the V step's lr follows the scheme's code bits per weight
"$LMPRESS" compress "${MOD[@]}" --calib cal.txt --nsamples 4 --ctx 96 --threads 2 --max-rounds 1 \
    --scheme 2x4g2 --keep '*.down_proj' --out g2.h5 2> g2.log || { bad "compress 2x4g2"; cat g2.log; }
for c in "a.h5 2.00 0.003" "g2.h5 4.00 0.0005"; do
    set -- $c
    "$LMPRESS" tune --artifact "$1" --model "$M/stories260K.bin" --data tune.txt --ctx 96 \
        --batch 2 --steps 1 --val-windows 0 --threads 2 --out "cl-$1" 2> "cl-$1.log" ||
        { bad "tune $1 with the default code lr"; cat "cl-$1.log"; }
    grep -q "code lr $3 for $2 code bits per weight" "cl-$1.log" ||
        bad "$1: not the default code lr $3 for $2 bits: $(grep 'code lr' "cl-$1.log")"
done
[ -d t.h5.tune ] && bad "the checkpoint directory stayed after a finished run"
n=$("$LMPRESS" logs t.h5 2>&1 | grep -c "tune step [0-9]*/40 kl")
[ "$n" = 40 ] || bad "the tuned artifact's events hold $n step records, want 40"
"$LMPRESS" inspect t.h5 > insp.txt 2>&1 || bad "inspect of the tuned artifact"
grep -q "pv-tuning" insp.txt || h5dump -a /calib_desc t.h5 | grep -q "pv-tuning" ||
    bad "the tuned artifact does not say it was tuned"

# 1b. sparse tuning: --blocks 2 tunes the two blocks the probe picks; the others' layers and
#     norms stay as they were, and it still helps
"$LMPRESS" tune "${TUNE[@]}" --steps 20 --blocks 2 --out sp.h5 2> sp.log || { bad "tune --blocks"; cat sp.log; }
sel=$(sed -n 's/.*tuning blocks \([0-9,]*\) of 5.*/\1/p' sp.log)
[ "$(echo "$sel" | tr ',' '\n' | grep -c .)" = 2 ] || { bad "--blocks 2 chose '$sel'"; cat sp.log; }
for b in 0 1 2 3 4; do
    d=/layers/model.layers.$b.self_attn.q_proj/codebooks
    if echo ",$sel," | grep -q ",$b,"; then
        h5diff -q a.h5 sp.h5 $d $d > /dev/null && bad "block $b was chosen but not tuned"
    else
        h5diff -q a.h5 sp.h5 $d $d > /dev/null || bad "block $b was not chosen but changed"
    fi
done
ps=$(ppl sp.h5 ev.txt 128)
python3 -c "import sys; sys.exit(0 if float('$ps') < float('$p0') else 1)" || bad "--blocks 2 did not help ($p0 -> $ps)"

# 2. SIGTERM checkpoints, the same command resumes; result = the uninterrupted run's
"$LMPRESS" tune "${TUNE[@]}" --steps 12 --out full.h5 2> full.log || { bad "tune full"; cat full.log; }
LMP_TUNE_CKPT_EVERY_STEP=1 LMP_FAULT_ROUND_SLEEP_MS=200 "$LMPRESS" tune "${TUNE[@]}" --steps 12 \
    --out r.h5 2> r1.log &
pid=$!; PIDS+=("$pid")
wait_for 60 grep -q "^step 4/" r1.log || bad "no step 4 in time"
kill -TERM "$pid"; wait "$pid"; rc=$?
[ "$rc" = 130 ] || { bad "SIGTERM: exit $rc, want 130"; cat r1.log; }
[ -f r.h5.tune/checkpoint.h5 ] || bad "no checkpoint after SIGTERM"
[ -f r.h5 ] && bad "an artifact was written by a stopped run"
"$LMPRESS" tune "${TUNE[@]}" --steps 12 --out r.h5 2> r2.log || { bad "resume"; cat r2.log; }
grep -q "resuming" r2.log || bad "the second run did not resume"
"$LMPRESS" logs r.h5 2>&1 | grep -q "resume" || bad "the resumed run's events lack the resume"
same_layers full.h5 r.h5 || bad "resumed artifact differs from the uninterrupted one"

# 3. refusals
LMP_TUNE_CKPT_EVERY_STEP=1 LMP_FAULT_ROUND_SLEEP_MS=200 "$LMPRESS" tune "${TUNE[@]}" --steps 50 \
    --out m.h5 2> m1.log &
pid=$!; PIDS+=("$pid")
wait_for 60 grep -q "^step 2/" m1.log; kill -TERM "$pid"; wait "$pid"
"$LMPRESS" tune "${TUNE[@]}" --steps 50 --seed 9 --out m.h5 2> m2.log; rc=$?
[ "$rc" = 4 ] && grep -q "other settings" m2.log && grep -q "m.h5.tune" m2.log ||
    { bad "a checkpoint of other settings: exit $rc"; cat m2.log; }
"$LMPRESS" compress "${MOD[@]}" --method rtn --bits 2 --group 32 --out rtn.h5 2> /dev/null
"$LMPRESS" tune --artifact rtn.h5 --model "$M/stories260K.bin" --data tune.txt --out x.h5 2> x.log; rc=$?
[ "$rc" = 4 ] && grep -q "rtn.h5" x.log || { bad "RTN artifact: exit $rc"; cat x.log; }
printf 'Once upon a time.' > short.txt
"$LMPRESS" tune --artifact a.h5 --model "$M/stories260K.bin" --data short.txt --out x.h5 2> x.log; rc=$?
[ "$rc" = 4 ] && grep -q "short.txt" x.log || { bad "short text: exit $rc"; cat x.log; }
python3 - "$M/stories260K.bin" other.bin <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
b[1000] ^= 0x01  # one weight's low bit: a valid checkpoint of another model
open(sys.argv[2], 'wb').write(b)
PY
"$LMPRESS" tune --artifact a.h5 --model other.bin --data tune.txt --out x.h5 2> x.log; rc=$?
[ "$rc" = 4 ] && grep -q "other.bin" x.log && grep -q "not the one" x.log ||
    { bad "another model: exit $rc"; cat x.log; }
"$LMPRESS" tune --artifact a.h5 --model "$M/stories260K.bin" --data tune.txt --out a.h5 2> x.log; rc=$?
[ "$rc" = 2 ] || bad "--out == --artifact: exit $rc"
[ -f x.h5 ] && bad "a refused run wrote its artifact"

# 4. compress --pv from a JOB file: ART.aqlm.h5 quantized, --out tuned; a rerun has nothing
#    to do; another tuning setting against the same --out is refused before any work
cat > job <<EOF
model = $M/stories260K.bin
tokenizer = $M/tok512.bin
calib = cal.txt
nsamples = 12
ctx = 96
max-rounds = 4
adam-steps = 50
scheme = 2x4g4
keep = *.down_proj
threads = 2
pv = true
pv-data = tune.txt
pv-steps = 6
pv-batch = 4
pv-lr = 1e-3
pv-code-lr = 1e-3
EOF
"$LMPRESS" compress job --out j.h5 --json > j.json 2> j.log || { bad "compress --pv (JOB)"; cat j.log; }
[ -f j.aqlm.h5 ] && [ -f j.h5 ] || bad "compress --pv: want j.aqlm.h5 and j.h5"
grep -q '"pv":{"out":"j.h5","steps":6' j.json || { bad "compress --pv --json"; cat j.json; }
pj=$(ppl j.h5 ev.txt 128); pa=$(ppl j.aqlm.h5 ev.txt 128)
python3 -c "import sys; sys.exit(0 if float('$pj') < float('$pa') else 1)" ||
    bad "compress --pv did not improve on its quantized artifact ($pa -> $pj)"
"$LMPRESS" compress job --out j.h5 2> j2.log || bad "rerun of a finished compress --pv"
grep -q "nothing to do" j2.log || { bad "rerun did work again"; cat j2.log; }
"$LMPRESS" compress job --out j.h5 --pv-lr 2e-3 2> j3.log; rc=$?
[ "$rc" = 4 ] && grep -q "another job" j3.log || { bad "another setting, same --out: exit $rc"; cat j3.log; }
grep -q "^step" j3.log && bad "the refused run tuned before refusing"
sed -i 's/^pv = true/pv = false/' job
"$LMPRESS" compress job --out k.h5 2> k.log; rc=$?
[ "$rc" = 2 ] && grep -q "add --pv" k.log || bad "pv-steps without pv: exit $rc"
exit $fail
