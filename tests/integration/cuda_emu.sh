#!/usr/bin/env bash
# cuda_emu - the CUDA table's kernels run on the CPU emulator against their references
# (scripts/cuda_emu_check.sh, docs/gpu.md): what can be checked of them without a GPU
# (indexing, bounds, barriers, shared memory, the beam search's selection and updates).
# Skipped (77) without g++, python3 or OpenBLAS's pkg-config file outside CI.
set -u
. "$(dirname "$0")/lib.bash"
lmp_need_cmds g++ cc python3 pkg-config
pkg-config --exists openblas || lmp_skip "no pkg-config file for openblas"
lmp_workdir
"${LMP_SOURCE_DIR:?}/scripts/cuda_emu_check.sh" "$T/emu" > emu.out 2>&1 ||
    { bad "cuda_emu_check.sh: exit $?"; tail -30 emu.out; }
grep -q "^ok   test_aq_beam" emu.out || bad "the beam search did not pass: $(grep -A3 aq_beam emu.out | head)"
[ $fail = 0 ] && grep -E "^(ok|FAIL) |checks" emu.out | tr '\n' ' ' && echo
exit $fail
