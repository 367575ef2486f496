#!/usr/bin/env bash
# cuda_emu_check - run the CUDA table's kernels on the CPU under an emulator and compare them
# with the references (test_kernels_cuda), where no GPU is available (docs/gpu.md).
#
# The .cu files are compiled as C++ with stand-in CUDA and cuBLAS headers
# (tests/kernels/cuda_emu/: device memory is host memory, cuBLAS is OpenBLAS, each block's
# threads are coroutines that meet at __syncthreads and warp shuffles); the launches
# `k<<<grid, block, shmem, stream>>>(args)` are rewritten into emu_launch(k, ...). It checks
# the kernels' logic: indexing, bounds, barriers, shared memory, the selection and update of
# the beam search. It proves nothing about the real compiler, the memory model, races
# between threads that never meet at a barrier, or speed: scripts/gpu_check.sh on a GPU does.
#
#   scripts/cuda_emu_check.sh [WORKDIR]     (default: a temporary directory, removed)
#   LMP_EMU_SANITIZE=1 scripts/cuda_emu_check.sh    also AddressSanitizer + UBSan: "device"
#                                               buffers are heap blocks, so a kernel reading
#                                               or writing past one is reported
# Needs g++, cc, python3 and OpenBLAS (pkg-config openblas). Exit: the test's (0 passed).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -gt 0 ]; then
    w=$1
    mkdir -p "$w"
else
    w=$(mktemp -d)
    trap 'rm -rf "$w"' EXIT
fi
blas=$(pkg-config --cflags --libs openblas)
emu="$here/tests/kernels/cuda_emu"
for f in "$here"/kernels/cuda/*.cu; do
    python3 - "$f" "$w/$(basename "$f" .cu).cc" << 'EOF'
import re, sys
s = open(sys.argv[1]).read()
s = re.sub(r'extern\s+__shared__[^;]*?(\w+)\s*\[\s*\]\s*;', r'char *\1 = emu_dyn_shared;', s)
s = re.sub(r'(\w+)\s*<<<(.*?)>>>\s*\(', r'emu_launch(\1, emu_cfg_make(\2), ', s, flags=re.S)
open(sys.argv[2], 'w').write('#line 1 "%s"\n' % sys.argv[1] + s)
EOF
done
san=()
[ "${LMP_EMU_SANITIZE:-0}" = 1 ] && san=("-fsanitize=address,undefined" -fno-omit-frame-pointer)
# small chunk limits, so that the beam search takes several launches and the matvec several
# batches of lookup tables even on the test's shapes
cxx=(g++ -std=c++17 -O1 -g -ffp-contract=off -w "${san[@]}" -I"$emu" -I"$here"
     -DLMP_CUDA_BEAM_STATE_MAX=100000 -DLMP_CUDA_LUT_MAX_BYTES=300000 -DLMP_CUDA_GRAD_ROWS=16)
cc_=(cc -std=gnu11 -O1 -g -ffp-contract=off "${san[@]}" -I"$here")
pids=()
for f in "$w"/*.cc; do
    # shellcheck disable=SC2086  # $blas is a list of flags
    "${cxx[@]}" $blas -c "$f" -o "$f.o" & pids+=($!)
done
# the references the test compares with (a list, not ref/*.c: other references may need
# more of the tree), the scratch arena they use, and the status strings
refs=(sgemm gram_acc aq_decode aq_matvec aq_beam aq_grad aq_grad_dw kmeans forward)
for f in "${refs[@]/#/$here/kernels/ref/}" "$here"/kernels/scratch.c "$here"/base/status.c; do
    case $f in *.c) ;; *) f=${f}_ref.c ;; esac
    "${cc_[@]}" -c "$f" -o "$w/lib-$(basename "$f").o" & pids+=($!)
done
"${cc_[@]}" -DLMP_HAVE_CUDA -c "$here/kernels/device.c" -o "$w/device.o" & pids+=($!)
"${cc_[@]}" -DLMP_HAVE_CUDA -c "$here/tests/kernels/test_kernels_cuda.c" -o "$w/test.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
rm -f "$w/libkref.a"
ar rcs "$w/libkref.a" "$w"/lib-*.o
# shellcheck disable=SC2086
g++ "${san[@]}" -o "$w/test_kernels_cuda_emu" "$w/test.o" "$w/device.o" "$w"/*.cc.o "$w/libkref.a" $blas -lm
echo "cuda_emu_check: running the CUDA table's kernels on the CPU emulator"
OPENBLAS_NUM_THREADS=1 "$w/test_kernels_cuda_emu"
