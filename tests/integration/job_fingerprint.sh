#!/usr/bin/env bash
# job_fingerprint - the resume fingerprint covers every setting that changes the artifact,
# whole, whatever the length of the text (issue 10, items 2 and 3):
#  1. a calibration path of ~330 characters and a keep list of ~180: the job runs (no
#     overflow: this script runs under the ASan build in scripts/test.sh) and the artifact
#     describes the settings whole (inspect shows the last keep pattern);
#  2. a resume whose keep list differs only in its last pattern (past character 160) is
#     refused, exit 4, one line naming the artifact and both settings; so is one with
#     another --max-rounds or --mode; the artifact is left as it was;
#  3. the same job again resumes every layer (exit 0, nothing recomputed);
#  4. the artifact records the build that wrote it (root attribute `build`).
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_stories
lmp_need_cmds h5dump
lmp_workdir
d=$PWD
for i in 1 2 3 4 5 6; do d=$d/$(printf 'c%.0s' $(seq 50)); done
mkdir -p "$d"
head -c 60000 "$TXT" > "$d/cal.txt"
[ ${#d} -gt 300 ] || bad "calibration directory of ${#d} characters, wanted > 300"
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --calib "$d/cal.txt"
     --nsamples 4 --ctx 32 --threads 1 --scheme 2x4g4 --max-rounds 2)
KEEP=()
for b in 0 1 2 3 4; do KEEP+=(--keep "model.layers.$b.mlp.down_proj"); done
A=("${KEEP[@]}" --keep model.layers.4.mlp.up_proj)
B=("${KEEP[@]}" --keep model.layers.3.mlp.up_proj)   # differs past character 160

"$LMPRESS" compress "${MOD[@]}" "${A[@]}" --out a.h5 > a.out 2> a.err ||
    { bad "the long-path job failed: $(tail -2 a.err)"; exit 1; }
"$LMPRESS" inspect a.h5 > insp.txt 2>&1 || bad "inspect failed"
grep -q "model.layers.4.mlp.up_proj\]" insp.txt || bad "the description lost the keep list's end"
grep -qF "$d/cal.txt" insp.txt || bad "the description lost the calibration path"
h5dump -a /build a.h5 | grep -q '"lmpress ' || bad "no build attribute"
before=$(h5dump -d /layers/model.layers.3.mlp.up_proj/codes a.h5 | md5sum)

# refused resumes: exit 4, one line
refused() {   # WHAT ARGS...
    local what=$1; shift
    "$LMPRESS" compress "${MOD[@]}" "$@" --out a.h5 > r.out 2> r.err
    local rc=$?
    [ $rc = 4 ] || bad "$what: exit $rc, not 4 (resume accepted?): $(tail -2 r.err)"
    grep -q "was made with other calibration data or settings" r.err ||
        bad "$what: no mismatch message: $(tail -2 r.err)"
    [ "$(grep -c "^lmpress: .a.h5. was made" r.err)" = 1 ] || bad "$what: not one refusal line"
}
refused "keep list changed past 160 characters" "${B[@]}"
refused "another --max-rounds" "${A[@]}" --max-rounds 3
refused "another --mode" "${A[@]}" --mode independent
[ "$(h5dump -d /layers/model.layers.3.mlp.up_proj/codes a.h5 | md5sum)" = "$before" ] ||
    bad "a refused resume changed the artifact"
h5dump -d /tensors/model.layers.3.mlp.up_proj.weight a.h5 > /dev/null 2>&1 &&
    bad "the artifact holds model.layers.3.mlp.up_proj both quantized and kept"

# the same job resumes every layer
"$LMPRESS" compress "${MOD[@]}" "${A[@]}" --out a.h5 > s.out 2> s.err ||
    bad "the same job did not resume: $(tail -2 s.err)"
grep -q "(0 compressed, 29 resumed, 6 kept)" s.out || bad "not everything resumed: $(cat s.out)"
[ $fail = 0 ] && echo "job_fingerprint: ok"
tail -1 r.err
exit $fail
