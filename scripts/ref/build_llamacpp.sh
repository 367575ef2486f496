#!/usr/bin/env bash
# Build llama.cpp's command-line tools (llama-bench, llama-perplexity, llama-quantize,
# llama-imatrix, llama-tokenize) from the llama.cpp source vendored in the llama-cpp-python sdist,
# so that the Python bindings (scripts/ref/setup_ref.sh) and the tools are the same llama.cpp.
# Everything lives outside the repository, under $LMP_CACHE (default ~/.cache/lmpress):
#   src/llama_cpp_python-<v>.tar.gz, src/llama_cpp_python-<v>/   the sdist and its source
#   llama.cpp-build/bin/llama-*                                    the tools
#   llama.cpp-build/VERSIONS.txt                                   what was built from what
# Idempotent: an existing build is only brought up to date. Only PyPI is needed.
#
#   scripts/ref/build_llamacpp.sh [-j N]
set -euo pipefail

LLAMA_CPP_PY_VERSION=${LLAMA_CPP_PY_VERSION:-0.3.36}
cache=${LMP_CACHE:-$HOME/.cache/lmpress}
jobs=2
while [ $# -gt 0 ]; do
    case $1 in
        -j) jobs=$2; shift 2 ;;
        *) echo "build_llamacpp.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done

src_dir="$cache/src"
sdist="$src_dir/llama_cpp_python-$LLAMA_CPP_PY_VERSION.tar.gz"
tree="$src_dir/llama_cpp_python-$LLAMA_CPP_PY_VERSION"
build="$cache/llama.cpp-build"
mkdir -p "$src_dir"

if [ ! -s "$sdist" ]; then
    echo "build_llamacpp: fetching the llama-cpp-python $LLAMA_CPP_PY_VERSION sdist from PyPI"
    python3 -m pip download --quiet --no-deps --no-binary :all: \
        "llama-cpp-python==$LLAMA_CPP_PY_VERSION" -d "$src_dir"
fi
if [ ! -f "$tree/vendor/llama.cpp/CMakeLists.txt" ]; then
    tar -xzf "$sdist" -C "$src_dir"
fi

# CPU flags: this machine's AVX-512 set without AMX. -DGGML_NATIVE=ON would turn AMX on from
# -march=native, and ggml's AMX matmul crashes (SIGSEGV in ggml_backend_amx_mul_mat) on these
# machines; GGML_NATIVE=OFF with the instruction sets listed keeps everything else.
ggml_cpu=${GGML_CPU_FLAGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"}
targets=(llama-bench llama-perplexity llama-quantize llama-imatrix llama-tokenize)
# shellcheck disable=SC2086
cmake -S "$tree/vendor/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release $ggml_cpu \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

commit=$(git -C "$tree/vendor/llama.cpp" rev-parse HEAD 2>/dev/null || echo unknown)
{
    echo "llama-cpp-python sdist: $LLAMA_CPP_PY_VERSION"
    echo "llama.cpp commit: $commit"
    echo "cmake: -DCMAKE_BUILD_TYPE=Release $ggml_cpu"
    echo "compiler: $(${CC:-cc} --version | head -1)"
    echo "tools: ${targets[*]}"
} > "$build/VERSIONS.txt"
cat "$build/VERSIONS.txt"
echo "build_llamacpp: tools in $build/bin"
