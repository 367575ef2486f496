#!/usr/bin/env bash
# job_budget - a job may ask only for what the text and the machine can give (issue 10,
# item 5); a refusal is one line naming the option and the bound, exit 4, and nothing is
# written:
#  1. lmpress compress --nsamples 2000 --ctx 96 on a 120 KB text (~59 K tokens): refused by
#     the planner (windows would only repeat the text), naming the text and its tokens;
#  2. lmpress compress --nsamples 1000000 (the issue's case; 46 GiB): refused before it
#     starts, over the memory budget; with LMP_MEM_BUDGET=1M an ordinary job is refused too;
#  3. lmpress submit to a coordinator (LMP_MEM_BUDGET=64M): the same refusals come back to
#     the client, exit 4; so does a calibration text too big to read and tokenize (x 5).
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
head -c 120000 "$TXT" > cal.txt
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib "$PWD/cal.txt"
     --threads 1 --scheme 2x4g4 --max-rounds 2)

refused() {   # WHAT CMD...: exit 4, the refusal once, no artifact
    local what=$1 rc; shift
    rm -rf out.h5 out.h5.parts
    timeout 120 "$@" --out "$PWD/out.h5" > out.txt 2> err.txt
    rc=$?
    [ $rc = 4 ] || bad "exit $rc, not 4: ${*:2}: $(tail -2 err.txt)"
    [ "$(grep -cE "^lmpress: $what" err.txt)" = 1 ] ||
        { bad "not one line naming '$what': ${*:2}"; cat err.txt; }
    [ -e out.h5 ] || [ -e out.h5.parts ] && bad "something was written: ${*:2}"
}
refused "calibration text '.*cal.txt' has [0-9]* tokens, fewer than --nsamples 2000 x --ctx 96" \
    "$LMPRESS" compress "${MOD[@]}" --nsamples 2000 --ctx 96
# (on a machine of more than 92 GiB, the text's bound refuses it instead)
refused "calibration (of .* needs 46.1 GiB .*over this machine's budget|text .* fewer than)" \
    "$LMPRESS" compress "${MOD[@]}" --nsamples 1000000 --ctx 96
LMP_MEM_BUDGET=1M refused "calibration of .* needs 6 MiB .*budget of 1 MiB" \
    "$LMPRESS" compress "${MOD[@]}" --nsamples 128 --ctx 96
[ "$(grep -c '' err.txt)" = 1 ] || bad "the memory refusal is not the only line on stderr"

# the coordinator refuses the same jobs to a submitting client
export LMPRESS_TIMEOUT_MS=10000
LMP_MEM_BUDGET=64M start_coord coord.log
refused "calibration text .* has [0-9]* tokens, fewer than --nsamples 700 x --ctx 96" \
    "$LMPRESS" submit --connect "$EP" --wait "${MOD[@]}" --nsamples 700 --ctx 96
refused "calibration of .* needs 76 MiB .*over this machine's budget of 64 MiB" \
    "$LMPRESS" submit --connect "$EP" "${MOD[@]}" --nsamples 300 --ctx 512
for i in $(seq 17); do cat "$TXT"; done > huge.txt   # 13.5 MB: x 5 is over 64 MiB
refused "calibration text '.*huge.txt' \(12 MiB\) is too big to tokenize" \
    "$LMPRESS" submit --connect "$EP" "${MOD[@]}" --calib "$PWD/huge.txt" --nsamples 8 --ctx 96
[ $fail = 0 ] && echo "job_budget: ok"
exit $fail
