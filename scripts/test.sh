#!/usr/bin/env bash
# The test command: check the formatting (scripts/check_format.sh), build with
# AddressSanitizer + UBSan and -Werror and run every test (unit, kernels, proto,
# integration) with ctest; then build a Release lmpress and run the fault-injection test
# (which skips under ASan); then, when clang is present, build the libFuzzer targets and
# run each briefly (LMP_FUZZ_SECONDS, default 20). Where nvcc exists, the CUDA table is
# compiled too (build-cuda: the table and its test only) and its test run, which skips
# without a GPU.
#   scripts/test.sh            everything
#   scripts/test.sh -L unit    extra arguments go to ctest
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc)
[ $# -eq 0 ] && "$here/scripts/check_format.sh"
b="$here/build-asan"
cmake -S "$here" -B "$b" -DCMAKE_BUILD_TYPE=Debug -DLMP_SANITIZE=ON -DLMP_MPI=ON -DLMP_WERROR=ON >/dev/null
cmake --build "$b" -j"$jobs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd "$b" && ctest --output-on-failure -j"$jobs" "$@")
# fault injection (tests/integration/fault_inject.sh) needs a plain build: the interposer
# cannot be preloaded into an ASan lmpress, where the test skips. A Release build in
# build-rel-fault (kept between runs) runs it with a few faults of each kind, the same ones
# every time (LMP_FAULT_SEED), each run bounded (LMP_FAULT_TIMEOUT s, and its resume as
# long) and the whole step too (ctest --timeout); docs/reliability.md has its duration.
# LMP_FAULT_RUNS (default 2 here), LMP_FAULT_SEED and LMP_FAULT_TIMEOUT override.
if [ $# -eq 0 ]; then
    r="$here/build-rel-fault"
    cmake -S "$here" -B "$r" -DCMAKE_BUILD_TYPE=Release -DLMP_MPI=ON -DLMP_WERROR=ON >/dev/null
    cmake --build "$r" -j"$jobs" --target lmpress lmp_failinject
    (cd "$r" && LMP_FAULT_RUNS=${LMP_FAULT_RUNS:-2} LMP_FAULT_SEED=${LMP_FAULT_SEED:-4242} \
        LMP_FAULT_TIMEOUT=${LMP_FAULT_TIMEOUT:-30} \
        ctest --output-on-failure --timeout 900 -R fault_inject)
fi
# CUDA (docs/gpu.md): nvcc from $CUDACXX, PATH or $CUDA_HOME/bin.
# Only the CUDA kernels library and test_kernels_cuda are built (LMP_CUDA stays OFF in the
# builds above); the test compares every op with its reference on a GPU and exits 77
# (skipped) where cudaGetDeviceCount fails, after checking that --device cuda:0 is refused.
nvcc=${CUDACXX:-$(command -v nvcc || echo "${CUDA_HOME:-}/bin/nvcc")}
if [ $# -eq 0 ] && [ -x "$nvcc" ]; then
    c="$here/build-cuda"
    cmake -S "$here" -B "$c" -DCMAKE_BUILD_TYPE=Release -DLMP_CUDA=ON -DLMP_WERROR=ON \
        -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
    cmake --build "$c" -j"$jobs" --target test_kernels_cuda
    (cd "$c" && ctest --output-on-failure -R '^test_kernels_cuda$')
fi
if [ $# -eq 0 ] && command -v clang >/dev/null 2>&1; then
    f="$here/build-fuzz"
    CC=clang cmake -S "$here" -B "$f" -DCMAKE_BUILD_TYPE=Debug -DLMP_FUZZ=ON -DLMP_MPI=ON -DLMP_WERROR=ON \
        -DLMP_FUZZ_SECONDS="${LMP_FUZZ_SECONDS:-20}" >/dev/null
    cmake --build "$f" -j"$jobs"
    (cd "$f" && ctest --output-on-failure -L fuzz)
fi
