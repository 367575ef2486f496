#!/usr/bin/env bash
# eval_reference - lmpress eval --reference on stories260K: the original against itself has
# KL 0 and top-1 agreement 1 (text and --json); a compressed artifact (AQLM 2x4g4, a short
# run) against its original has KL > 0 and agreement < 1, its perplexity unchanged by
# --reference and the reference's perplexity equal to the original's own eval; a worse
# model (RTN at 2 bits, g32) has a larger KL and lower agreement than the AQLM one; a reference
# of another vocabulary is refused (exit 4). Calibration and evaluation use disjoint parts
# of the TinyStories text.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
head -c 120000 "$TXT" > "$T/cal.txt"
tail -c 100000 "$TXT" > "$T/eval.txt"
ORIG="$M/stories260K.bin"
MOD=(--model "$ORIG" --tokenizer "$M/tok512.bin")
EV=(--text "$T/eval.txt" --ctx 128 --max-windows 16 --threads 2)
jfield() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; }
cmp_lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

# 1. the original against itself
"$LMPRESS" eval "${MOD[@]}" "${EV[@]}" --reference "$ORIG" --json > self.json 2> self.err ||
    { bad "eval --reference (self)"; cat self.err; }
[ "$(jfield self.json kl)" = 0 ] || bad "self: kl $(jfield self.json kl), not 0"
[ "$(jfield self.json top1_agreement)" = 1 ] || bad "self: top-1 agreement not 1"
[ "$(jfield self.json predicted_tokens)" = $((16 * 127)) ] || bad "self: predicted tokens"
[ "$(jfield self.json ppl)" = "$(jfield self.json reference_ppl)" ] || bad "self: ppl differs"
"$LMPRESS" eval "${MOD[@]}" "${EV[@]}" --reference "$ORIG" > self.txt ||
    bad "eval --reference (text)"
grep -q "^against .*: kl 0.000000 nats per token, top-1 agreement 1.0000 over 2032 predicted" \
    self.txt || { bad "self: text output"; cat self.txt; }
"$LMPRESS" eval "${MOD[@]}" "${EV[@]}" --json > orig.json || bad "eval of the original"
base=$(jfield orig.json ppl)

# 2. compressed artifacts against the original
CAL=(--calib "$T/cal.txt" --nsamples 12 --ctx 96 --threads 2 --max-rounds 2 --adam-steps 20)
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" --scheme 2x4g4 --keep '*.down_proj' \
    --out aq.h5 > aq.out 2> aq.err || { bad "compress (aqlm)"; tail -3 aq.err; }
"$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" --method rtn --bits 2 --group 32 --keep '*.down_proj' \
    --out rtn.h5 > rtn.out 2> rtn.err || { bad "compress (rtn)"; tail -3 rtn.err; }
for a in aq rtn; do
    "$LMPRESS" eval --artifact $a.h5 "${EV[@]}" --reference "$ORIG" --json > $a.json 2> $a.eerr ||
        { bad "eval --artifact $a.h5 --reference"; cat $a.eerr; continue; }
    "$LMPRESS" eval --artifact $a.h5 "${EV[@]}" --json > $a.plain.json || bad "eval $a.h5"
    kl=$(jfield $a.json kl) agree=$(jfield $a.json top1_agreement) p=$(jfield $a.json ppl)
    echo "$a: ppl $p (original $base) kl $kl top-1 agreement $agree"
    cmp_lt 0 "$kl" || bad "$a: kl $kl not > 0"
    cmp_lt "$agree" 1 || bad "$a: agreement $agree not < 1"
    cmp_lt 0 "$agree" || bad "$a: agreement $agree is 0"
    [ "$p" = "$(jfield $a.plain.json ppl)" ] || bad "$a: --reference changed the ppl"
    [ "$(jfield $a.json reference_ppl)" = "$base" ] || bad "$a: reference ppl is not the original's"
    cmp_lt "$base" "$p" || bad "$a: ppl $p not above the original's $base"
    eval "kl_$a=$kl agree_$a=$agree ppl_$a=$p"
done
if [ -n "${kl_aq:-}" ] && [ -n "${kl_rtn:-}" ]; then
    cmp_lt "$ppl_aq" "$ppl_rtn" || bad "rtn 2-bit ppl $ppl_rtn not above aqlm's $ppl_aq"
    cmp_lt "$kl_aq" "$kl_rtn" || bad "rtn kl $kl_rtn not above aqlm's $kl_aq"
    cmp_lt "$agree_rtn" "$agree_aq" || bad "rtn agreement $agree_rtn not below aqlm's $agree_aq"
fi

# 3. the artifact as the reference of itself, and an artifact as reference of the original
"$LMPRESS" eval --artifact aq.h5 "${EV[@]}" --reference aq.h5 --json > aqself.json ||
    bad "eval --reference ARTIFACT"
[ "$(jfield aqself.json kl)" = 0 ] || bad "artifact against itself: kl not 0"
"$LMPRESS" eval "${MOD[@]}" "${EV[@]}" --reference aq.h5 --json > rev.json || bad "reverse"
cmp_lt 0 "$(jfield rev.json kl)" || bad "original against the artifact: kl not > 0"

# 4. refusals: a reference that is not a model (exit 4)
echo "not a model" > junk.bin
"$LMPRESS" eval "${MOD[@]}" "${EV[@]}" --reference junk.bin > /dev/null 2> junk.err
rc=$?
[ $rc = 4 ] || bad "a junk reference exits $rc, not 4"
exit $fail
