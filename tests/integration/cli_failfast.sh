#!/usr/bin/env bash
# cli_failfast - a job that cannot succeed fails before any work, in one line naming the
# problem, and leaves no artifact and no ART.h5.parts/ (LOCK) behind (coordinator/job_check.h):
#  1. lmpress compress, every mode and method: a scheme whose group size does not divide
#     a layer's input width (stories260K's down_proj has n_in 172) is exit 2 naming the
#     layer; a missing calibration file is exit 4 naming the file; a --keep pattern that
#     matches no layer is exit 2 naming the pattern;
#  2. lmpress submit: the coordinator refuses the same jobs with the same line (exit 1, a
#     refused job; 4 for the calibration file, an input) and writes nothing either.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
head -c 120000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --nsamples 4 --ctx 64
     --threads 1 --max-rounds 2 --adam-steps 10)

# expect RC WHAT CMD...: CMD exits RC within 60 s, with one line on stderr that contains
# WHAT and no progress line, and leaves neither out.h5 nor out.h5.parts/
expect() {
    local want=$1 what=$2; shift 2
    rm -rf out.h5 out.h5.parts
    timeout 60 "$@" --out out.h5 > out.txt 2> err.txt
    local rc=$? n
    n=$(wc -l < err.txt)
    [ "$rc" = "$want" ] || bad "exit $rc, not $want: ${*:2}"
    [ "$n" = 1 ] || { bad "$n lines on stderr, not 1: ${*:2}"; head -5 err.txt; }
    grep -qF -- "$what" err.txt || { bad "stderr does not name '$what': ${*:2}"; cat err.txt; }
    [ -e out.h5 ] && bad "an artifact was written: ${*:2}"
    [ -e out.h5.parts ] && bad "out.h5.parts/ was left behind: ${*:2}"
}

C=("$LMPRESS" compress "${MOD[@]}")
# 1. compress
for mode in sequential independent; do
    expect 2 "'model.layers.0.mlp.down_proj'" "${C[@]}" --calib cal.txt --scheme 2x4g8 --mode $mode
    expect 4 "nope.txt" "${C[@]}" --calib nope.txt --scheme 2x4g4 --mode $mode
    expect 2 "'*.dwon_proj'" "${C[@]}" --calib cal.txt --scheme 2x4g4 --mode $mode --keep '*.dwon_proj'
done
expect 2 "'*.dwon_proj'" "${C[@]}" --calib cal.txt --scheme 2x4g4 --keep '*.down_proj' --keep '*.dwon_proj'
expect 2 "'model.layers.0.mlp.down_proj'" "${C[@]}" --calib cal.txt --scheme 2x4g8 --mode independent --finetune
expect 2 "'model.layers.0.mlp.down_proj'" "${C[@]}" --calib generate --scheme 2x4g8
expect 2 "'model.layers.0.mlp.down_proj'" "${C[@]}" --method rtn --group 8
expect 2 "'*.dwon_proj'" "${C[@]}" --method rtn --group 4 --keep '*.dwon_proj'
mkdir cal.d
expect 4 "cal.d" "${C[@]}" --calib cal.d --scheme 2x4g4
# kept, a layer the scheme does not fit is no problem: this job runs
"${C[@]}" --calib cal.txt --scheme 2x4g8 --keep '*.down_proj' --out ok.h5 > /dev/null 2> ok.err ||
    { bad "a job whose misfit layers are kept failed"; cat ok.err; }

# 2. the coordinator refuses them too (submit: exit 1, a refused job; 4, an input file)
start_coord coord.log
S=("$LMPRESS" submit --connect "$EP" "${MOD[@]}" --mode independent)
expect 1 "'model.layers.0.mlp.down_proj'" "${S[@]}" --calib "$T/cal.txt" --scheme 2x4g8
expect 4 "nope.txt" "${S[@]}" --calib "$T/nope.txt" --scheme 2x4g4
expect 1 "'*.dwon_proj'" "${S[@]}" --calib "$T/cal.txt" --scheme 2x4g4 --keep '*.dwon_proj'
kill -TERM "$CPID" 2>/dev/null
wait "$CPID" 2>/dev/null
exit $fail
