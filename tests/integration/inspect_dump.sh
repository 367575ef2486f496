#!/usr/bin/env bash
# inspect_dump - `lmpress inspect --dump-tensor NAME --out FILE` on a GGUF of K-quants (the
# fuzz seed tests/fuzz/corpus/fuzz_gguf/kquants_v3.gguf.seed: Q2_K..Q6_K, Q5_0, Q5_1 with
# "general.architecture" llama but no model in it, which --dump-tensor does not need):
#  1. every tensor is written as rows x cols raw f32, the same bytes with LMP_KERNELS=ref as
#     with the best table;
#  2. a missing tensor is exit 4 in one line naming it; --dump-tensor without --out is exit 2;
#  3. where a Python with the gguf package is at hand (LMP_REF_PY, default
#     ~/.cache/lmpress/venv-ref/bin/python from scripts/ref/setup_ref.sh), the values equal
#     gguf.quants.dequantize's on random blocks of every type (scripts/ref/check_kquants.py
#     --synthetic); without one that part is skipped (said on stdout).
set -u
. "$(dirname "$0")/lib.bash"
: "${LMP_SOURCE_DIR:?}"
lmp_workdir
F="$LMP_SOURCE_DIR/tests/fuzz/corpus/fuzz_gguf/kquants_v3.gguf.seed"

for t in q2_k:512 q3_k:256 q4_k:512 q5_k:256 q6_k:512 q5_0:64 q5_1:32; do
    name=${t%%:*} n=${t##*:}
    "$LMPRESS" inspect --dump-tensor "$name" --out best.f32 "$F" 2> err.txt ||
        { bad "dump $name: exit $?"; cat err.txt; }
    LMP_KERNELS=ref "$LMPRESS" inspect --dump-tensor "$name" --out ref.f32 "$F" 2> /dev/null ||
        bad "dump $name with LMP_KERNELS=ref failed"
    [ "$(stat -c %s best.f32)" = $((4 * n)) ] || bad "$name: $(stat -c %s best.f32) bytes, not $((4 * n))"
    cmp -s best.f32 ref.f32 || bad "$name: best table and reference differ"
done

"$LMPRESS" inspect --dump-tensor nope --out x.f32 "$F" > out.txt 2> err.txt
rc=$?
[ $rc = 4 ] || bad "missing tensor: exit $rc, not 4"
[ "$(wc -l < err.txt)" = 1 ] && grep -qF "no tensor 'nope'" err.txt || { bad "missing tensor message"; cat err.txt; }
"$LMPRESS" inspect --dump-tensor q4_k "$F" > /dev/null 2>&1
rc=$?
[ $rc = 2 ] || bad "--dump-tensor without --out: exit $rc, not 2"

py=${LMP_REF_PY:-$HOME/.cache/lmpress/venv-ref/bin/python}
if [ -x "$py" ] && "$py" -c 'import gguf, numpy' 2> /dev/null; then
    "$py" "$LMP_SOURCE_DIR/scripts/ref/check_kquants.py" --lmpress "$LMPRESS" --synthetic ||
        bad "check_kquants.py --synthetic: lmpress differs from gguf.quants.dequantize"
else
    echo "inspect_dump: no Python with gguf at $py: the comparison with gguf is skipped"
fi
exit $fail
