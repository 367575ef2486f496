#!/usr/bin/env bash
# trust_state - a coordinator's state file (--state DIR/job.pb) is outside input too: a
# restarted coordinator checks the spec it reads back as it checks a client's JobSubmit
# (coordinator/job_check.h, lmp_job_spec_check) before planning it (issue 10):
#  1. a job.pb without a method, one without a calibration spec, one with an unknown mode:
#     each is logged ("...: ignored", one line naming the problem), nothing is planned,
#     and the coordinator goes on answering (before, the planner dereferenced the missing
#     method: an abort);
#  2. a job.pb that is not a JobSpec at all: ignored, as before.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_workdir

# JobSpec fields (proto/lmpress.proto): 2 model_path, 3 calib, 4 method, 5 mode, 6 out_path;
# MethodSpec 1 method (1 = AQLM, 2 = RTN: no calibration needed)
model=$M/stories260K.bin
str() { printf "\\x$(printf %02x "$1")\\x$(printf %02x "${#2}")%s" "$2"; } # field $1, len < 128
spec_nomethod() { str 0x12 "$model"; str 0x32 "$T/o.h5"; }
spec_nocalib() { str 0x12 "$model"; printf '\x22\x02\x08\x01'; str 0x32 "$T/o.h5"; }
spec_badmode() { str 0x12 "$model"; printf '\x22\x02\x08\x02\x28\x63'; str 0x32 "$T/o.h5"; }
[ ${#model} -lt 100 ] || lmp_skip "model path too long for this script's encoder"

for kind in nomethod nocalib badmode garbage; do
    rm -rf st && mkdir st
    if [ $kind = garbage ]; then printf '\xff\xff\xff\xff' > st/job.pb; else spec_$kind > st/job.pb; fi
    try_coord c-$kind.log --state st || { bad "$kind: the coordinator did not start"; tail -3 c-$kind.log; continue; }
    wait_for 5 grep -q "ignored" c-$kind.log ||
        { bad "$kind: job.pb not refused"; tail -5 c-$kind.log; }
    timeout 20 "$LMPRESS" status --connect "$EP" > st-$kind.out 2>&1 ||
        { bad "$kind: the coordinator does not answer"; tail -3 c-$kind.log; }
    grep -q "job" st-$kind.out && grep -qi "queued\|running\|failed" st-$kind.out &&
        bad "$kind: a job was planned from a bad job.pb: $(head -2 st-$kind.out)"
    kill -TERM "$CPID" 2>/dev/null
    wait "$CPID" 2>/dev/null
    grep -qi "AddressSanitizer\|runtime error\|Assertion" c-$kind.log && bad "$kind: crash: $(grep -i -m1 'sanitizer\|assert' c-$kind.log)"
    [ $(grep -c "ignored" c-$kind.log) = 1 ] || bad "$kind: not one line"
done
grep -q "no method" c-nomethod.log || bad "nomethod: the message does not name the problem"
grep -q "no calibration spec" c-nocalib.log || bad "nocalib: the message does not name the problem"
grep -q "unknown mode 99" c-badmode.log || bad "badmode: the message does not name the problem"
exit $fail
