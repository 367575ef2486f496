#!/usr/bin/env bash
# trust_paths - no fixed-size buffer takes a path from outside (issue 10): paths of
# thousands of characters (nested directories) as --out, --calib and --state either work
# or are refused in one line, never cut to fit a buffer (which wrote parts under a
# truncated name and lost them) and never a sanitizer report:
#  1. --out in a directory 3000 characters deep: the job runs, the artifact equals the one
#     written under a short path (the parts' names are built whole);
#  2. --out 4050 and 5000 characters long: exit 4 when the job is planned, before any
#     calibration, a last line naming the path's length, no artifact, parts or .tmp left;
#  3. --calib 5000 characters long: exit 4, one line;
#  4. lmpress eval --artifact 5000 characters long: exit 4, one line;
#  5. a coordinator whose --state is 5000 characters long keeps running and answers.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
head -c 60000 "$TXT" > cal.txt
export LMPRESS_TIMEOUT_MS=10000
JOB=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --nsamples 4 --ctx 64 --threads 1
     --max-rounds 2 --adam-steps 10 --scheme 2x4g4 --keep '*mlp*' --mode independent --seed 3)

# deep LEN: a directory under $T whose absolute path is LEN characters, made with mkdir -p
# (components of 200 characters; the last one pads)
deep() {
    local want=$1 d=$T comp
    comp=$(printf 'd%.0s' $(seq 1 200))
    while [ $((${#d} + 201)) -le "$want" ]; do d=$d/$comp; done
    [ "${#d}" -lt "$want" ] && d=$d/$(printf 'p%.0s' $(seq 1 $((want - ${#d} - 1))))
    mkdir -p "$d" || return 1
    printf '%s' "$d"
}

# one_line RC WHAT LOG: exit RC was wanted, LOG has one line containing WHAT
one_line() {
    local rc=$1 want=$2 what=$3 log=$4 n
    [ "$rc" = "$want" ] || bad "$what: exit $rc, not $want"
    n=$(wc -l < "$log")
    [ "$n" = 1 ] || { bad "$what: $n lines on stderr, not 1"; head -3 "$log" | cut -c1-300; }
    grep -qi "AddressSanitizer\|runtime error" "$log" && bad "$what: sanitizer report"
}

"$LMPRESS" compress "${JOB[@]}" --calib cal.txt --out ref.h5 > /dev/null 2> ref.err ||
    { bad "compress with a short --out"; tail -3 ref.err; }

# 1. 3000 characters deep: works
D=$(deep 3000) || lmp_skip "cannot make a directory 3000 characters deep here"
"$LMPRESS" compress "${JOB[@]}" --calib cal.txt --out "$D/long.h5" > /dev/null 2> long.err ||
    { bad "compress with --out 3000 characters deep"; tail -3 long.err | cut -c1-300; }
lmp_need_cmds h5diff h5dump
cp "$D/long.h5" long.h5 2>/dev/null || bad "no artifact at the deep --out"
same_layers long.h5 ref.h5 || bad "the artifact under a deep --out differs"
[ -e "$D/long.h5.parts" ] && bad "the parts of a deep --out were left behind"

# 2. --out too long for its parts: refused before any work, nothing written
for len in 4050 5000; do
    D=$(deep $((len - 8))) || lmp_skip "cannot make a directory $len characters deep here"
    out=$D/o.h5
    timeout 60 "$LMPRESS" compress "${JOB[@]}" --calib cal.txt --out "$out" > /dev/null 2> o$len.all
    rc=$?
    # the refusal comes when the job is planned, after the kept layers' lines: its own
    # message is the last line
    tail -1 o$len.all > o$len.err
    one_line $rc 4 "--out of ${#out} characters" o$len.err
    grep -qi "AddressSanitizer\|runtime error" o$len.all && bad "--out of ${#out}: sanitizer report"
    grep -q "path of ${#out} bytes, too long" o$len.err ||
        { bad "--out of ${#out}: the message does not name the problem"; cut -c1-300 o$len.err; }
    [ -e "$out" ] || [ -e "$out.parts" ] && bad "--out of ${#out}: something was written"
    find "$T" -name '*.tmp' | grep -q . && bad "--out of ${#out}: a .tmp was left"
done

# 3. --calib 5000 characters long
D=$(deep 5000)
timeout 60 "$LMPRESS" compress "${JOB[@]}" --calib "$D/cal.txt" --out c.h5 > /dev/null 2> c.err
one_line $? 4 "--calib of 5000 characters" c.err
grep -q "calibration file '.*': File name too long" c.err ||
    { bad "--calib of 5000: the message does not name the problem"; cut -c1-300 c.err; }

# 4. eval --artifact 5000 characters long
timeout 60 "$LMPRESS" eval --artifact "$D/x.h5" --text cal.txt > /dev/null 2> e.err
one_line $? 4 "eval --artifact of 5000 characters" e.err

# 5. a coordinator with a --state 5000 characters long
try_coord s.log --state "$D/state" || { bad "coordinator with a long --state"; head -3 s.log | cut -c1-300; }
[ -n "$EP" ] && { timeout 20 "$LMPRESS" status --connect "$EP" > /dev/null 2>&1 ||
    bad "a coordinator with a long --state does not answer"; }
kill -TERM "$CPID" 2>/dev/null
wait "$CPID" 2>/dev/null
grep -qi "AddressSanitizer\|runtime error" s.log && bad "coordinator: sanitizer report"
exit $fail
