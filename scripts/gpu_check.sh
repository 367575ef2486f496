#!/usr/bin/env bash
# gpu_check - the GPU checks, in one run on a machine with an NVIDIA GPU (docs/gpu.md):
#   1. build with the CUDA table: lmpress and test_kernels_cuda by CMake (-DLMP_CUDA=ON), or,
#      where the project does not configure (the machine lacks ZeroMQ, HDF5, ...), the
#      CUDA kernels and their test alone with nvcc and cc;
#   2. compare every CUDA op with its scalar reference (test_kernels_cuda);
#   3. time every op on realistic shapes (test_kernels_cuda --perf: ms, GFLOP/s, GB/s and
#      the fraction of the device's nominal fp32 and memory peaks), into perf.tsv;
#   4. `lmpress worker --device cuda:0` selects the GPU (CMake build only);
#   5. where the toolkit has compute-sanitizer: the test under its racecheck tool (shared-
#      memory hazards: what the CPU emulator, scripts/cuda_emu_check.sh, cannot see).
# Everything goes into OUTDIR: gpu_check.log (all output), nvidia-smi.txt, build.log,
# test.log, perf.tsv, worker.log, racecheck.log, summary.txt (one line per step: ok / FAIL /
# skipped).
#
#   scripts/gpu_check.sh [OUTDIR]      OUTDIR default: $OUT, else ./gpu-check-<UTC time>
#
# Environment: CUDACXX or CUDA_HOME (nvcc: $CUDACXX, PATH, $CUDA_HOME/bin), LMP_CUDA_ARCH (CMAKE_CUDA_ARCHITECTURES, default 80;90),
# LMP_GPU_BUILD_DIR (default build-gpu), LMP_GPU_CHECK_TIMEOUT (seconds per step, default
# 300). Exit: 0 every step passed; 1 a step failed; 77 no usable GPU (nothing compared).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${OUT:-$PWD/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
exec > >(tee "$out/gpu_check.log") 2>&1
limit=${LMP_GPU_CHECK_TIMEOUT:-300}
jobs=$(nproc)
rc=0
step() { echo "$1: $2" | tee -a "$out/summary.txt"; }
: > "$out/summary.txt"

echo "gpu_check: $(date -u +%FT%TZ) on $(hostname), tree $(git -C "$here" rev-parse --short HEAD 2>/dev/null)"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed (see nvidia-smi.txt)"
head -15 "$out/nvidia-smi.txt"
nvcc=${CUDACXX:-$(command -v nvcc || echo "${CUDA_HOME:-}/bin/nvcc")}
if [ ! -x "$nvcc" ]; then
    step build "FAIL: no nvcc (set CUDACXX or CUDA_HOME)"
    exit 1
fi
"$nvcc" --version | tail -2
arch=${LMP_CUDA_ARCH:-80;90}

# 1. build
b=${LMP_GPU_BUILD_DIR:-$here/build-gpu}
lmpress="" test=""
if cmake -S "$here" -B "$b" -DCMAKE_BUILD_TYPE=Release -DLMP_CUDA=ON -DLMP_WERROR=ON \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="$arch" > "$out/build.log" 2>&1 &&
    cmake --build "$b" -j"$jobs" --target test_kernels_cuda lmpress >> "$out/build.log" 2>&1; then
    test=$b/tests/test_kernels_cuda lmpress=$b/cli/lmpress
    step build "ok (CMake, $b)"
else
    echo "the CMake build failed (tail of build.log below); building the CUDA kernels alone"
    tail -5 "$out/build.log"
    d=$b-direct
    rm -rf "$d" && mkdir -p "$d"
    gencode=()
    IFS=';' read -ra archs <<< "$arch"
    for a in "${archs[@]}"; do gencode+=("-gencode=arch=compute_$a,code=sm_$a"); done
    ok=1
    {
        for f in "$here"/kernels/cuda/*.cu; do
            "$nvcc" -std=c++17 -O3 "${gencode[@]}" -I"$here" -c "$f" -o "$d/$(basename "$f").o" &
        done
        for j in $(jobs -p); do wait "$j" || ok=0; done
        # the references the test uses (not ref/*.c: others may need more of the tree)
        refs=(sgemm gram_acc aq_decode aq_matvec aq_beam aq_grad aq_grad_dw kmeans forward)
        for f in "${refs[@]/#/$here/kernels/ref/}" "$here"/kernels/scratch.c "$here"/base/status.c; do
            case $f in *.c) ;; *) f=${f}_ref.c ;; esac
            cc -std=gnu11 -O2 -I"$here" -c "$f" -o "$d/lib-$(basename "$f").o" || ok=0
        done
        cc -std=gnu11 -O2 -DLMP_HAVE_CUDA -I"$here" -c "$here/kernels/device.c" -o "$d/device.o" &&
            cc -std=gnu11 -O2 -DLMP_HAVE_CUDA -I"$here" -c "$here/tests/kernels/test_kernels_cuda.c" \
                -o "$d/test.o" || ok=0
        ar rcs "$d/libkref.a" "$d"/lib-*.o && "$nvcc" -o "$d/test_kernels_cuda" "$d/test.o" \
            "$d/device.o" "$d"/*.cu.o "$d/libkref.a" -lcublas -lpthread -lm || ok=0
    } >> "$out/build.log" 2>&1
    if [ $ok = 1 ]; then
        test=$d/test_kernels_cuda
        step build "ok (CUDA kernels and test only, $d; no lmpress: see build.log)"
    else
        step build "FAIL (see build.log)"
        tail -20 "$out/build.log"
        exit 1
    fi
fi

# 2. comparisons, 3. timings (one run: the test, then --perf)
timeout "$limit" "$test" --perf "$out/perf.tsv" > "$out/test.log" 2>&1
t=$?
cat "$out/test.log"
case $t in
    0) step compare "ok (every CUDA op within its tolerance of the reference)"
       step perf "ok ($out/perf.tsv)" ;;
    77) step compare "skipped: $(grep '^SKIP' "$out/test.log")"
        exit 77 ;;
    124) step compare "FAIL: timed out after $limit s"; rc=1 ;;
    *) step compare "FAIL (exit $t; see test.log)"; rc=1 ;;
esac
[ -f "$out/perf.tsv" ] && column -t -s $'\t' "$out/perf.tsv" 2>/dev/null

# 4. lmpress worker --device cuda:0 (no coordinator: it selects the GPU, then gives up
# reaching tcp://127.0.0.1:1 with exit 3)
if [ -n "$lmpress" ]; then
    timeout 60 "$lmpress" worker --device cuda:0 --connect tcp://127.0.0.1:1 --timeout 1000 \
        > "$out/worker.log" 2>&1
    w=$?
    if [ $w = 3 ] && grep -q "device cuda:0 (.*) selected" "$out/worker.log"; then
        step worker "ok ($(grep -o 'device cuda:0 ([^)]*)' "$out/worker.log"))"
    else
        step worker "FAIL (exit $w): $(head -3 "$out/worker.log")"
        rc=1
    fi
else
    step worker "skipped (no lmpress build)"
fi
# 5. racecheck (shared-memory races between threads of a block), bounded: a timeout is
# reported, not a failure
san=$(command -v compute-sanitizer || echo "$(dirname "$nvcc")/compute-sanitizer")
if [ -x "$san" ]; then
    timeout "$limit" "$san" --tool racecheck --error-exitcode 9 "$test" > "$out/racecheck.log" 2>&1
    r=$?
    case $r in
        0) step racecheck "ok (no hazard reported)" ;;
        124) step racecheck "not finished in $limit s (see racecheck.log)" ;;
        *) step racecheck "FAIL (exit $r; see racecheck.log)"; rc=1 ;;
    esac
else
    step racecheck "skipped (no compute-sanitizer in this toolkit)"
fi
echo "--- summary ($out)"
cat "$out/summary.txt"
exit $rc
