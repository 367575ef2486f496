#!/usr/bin/env bash
# trust_calib - every calibration input that cannot serve is "input rejected", exit 4 with
# one line naming the file, whatever the launcher (issue 10): a missing file, a directory,
# an empty file, a FIFO (refused, not waited on), a text with fewer tokens than the job
# needs (--nsamples x --ctx, or even one window of --ctx), under lmpress compress, lmpress
# run JOB (with MPI) and lmpress submit; the message of a text shorter than one window
# suggests a --ctx, not "at most 0 samples".
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir
export LMPRESS_TIMEOUT_MS=10000
printf 'Once upon a time there was a cat.' > short.txt
head -c 600 "$TXT" > few.txt # more than one window, fewer than 8 x 64 tokens
mkdir dir.txt
: > empty.txt
mkfifo fifo.txt
OPTS=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --nsamples 8 --ctx 64 --threads 1
      --scheme 2x4g4 --mode independent)
CASES=(missing.txt dir.txt empty.txt fifo.txt short.txt few.txt)

# check WHAT RC ERR F: exit 4 and an "lmpress:" line of ERR names the file F (mpirun adds
# lines of its own)
check() {
    local what=$1 rc=$2 err=$3 f=$4
    [ "$rc" = 4 ] || { bad "$what: exit $rc, not 4"; tail -2 "$err"; }
    grep "^lmpress: " "$err" | grep -q "$f" ||
        { bad "$what: the message does not name '$f'"; tail -2 "$err"; }
}

for f in "${CASES[@]}"; do
    timeout 60 "$LMPRESS" compress "${OPTS[@]}" --calib "$f" --out "c-$f.h5" > /dev/null 2> "c-$f.err"
    check "compress --calib $f" $? "c-$f.err" "$f"
    # a file that cannot be read is refused before the job starts, in one line (a text too
    # short is known once tokenized, by the coordinator: its refusal is the last line)
    case $f in short.txt | few.txt) ;; *)
        [ "$(wc -l < "c-$f.err")" = 1 ] || bad "compress --calib $f: not one line: $(head -3 "c-$f.err")"
    esac
done
grep -q "use a longer text or --ctx at most" c-short.txt.err ||
    bad "a text shorter than one window: $(cat c-short.txt.err)"
grep -q "use a longer text or at most [1-9][0-9]* samples\?$" c-few.txt.err ||
    bad "a text shorter than the job: $(cat c-few.txt.err)"
for f in short.txt few.txt; do # said once: by the command, not also by its coordinator's log
    [ "$(grep -c "use a longer text" "c-$f.err")" = 1 ] ||
        bad "compress --calib $f: the refusal is not said once: $(cat "c-$f.err")"
done

start_coord coord.log
for f in "${CASES[@]}"; do
    timeout 60 "$LMPRESS" submit --connect "$EP" "${OPTS[@]}" --calib "$T/$f" --out "$T/s.h5" \
        --wait > /dev/null 2> "s-$f.err"
    check "submit --calib $f" $? "s-$f.err" "$f"
done
kill -TERM "$CPID" 2>/dev/null
wait "$CPID" 2>/dev/null

if command -v mpirun > /dev/null && ! "$LMPRESS" run /dev/null 2>&1 | grep -q "built without MPI"; then
    lmp_need_mpi
    for f in "${CASES[@]}"; do
        printf 'model = %s\ntokenizer = %s\ncalib = %s\nnsamples = 8\nctx = 64\nscheme = 2x4g4\nout = r.h5\n' \
            "$M/stories260K.bin" "$M/tok512.bin" "$T/$f" > j.job
        timeout 120 mpirun -np 1 "$LMPRESS" run j.job > /dev/null 2> "r-$f.err"
        check "run --calib $f" $? "r-$f.err" "$f"
    done
fi
grep -qi "AddressSanitizer\|runtime error" ./*.err coord.log && bad "sanitizer report"
exit $fail
