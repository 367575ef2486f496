#!/usr/bin/env bash
# Create the Python environment for the reference comparisons (scripts/ref/*.py) outside the
# repository, at $LMP_CACHE/venv-ref (default ~/.cache/lmpress/venv-ref), with pinned versions
# from PyPI:
#   llama-cpp-python  built from its sdist for this CPU (AVX-512, no AMX: see build_llamacpp.sh);
#                     the same sdist and flags that scripts/ref/build_llamacpp.sh builds the
#                     llama.cpp tools with
#   numpy, gguf, safetensors, sentencepiece, transformers (+ accelerate, needed for GGUF), torch
# torch from PyPI is the CUDA build for Linux x86_64 and pulls about 3 GB of nvidia-* wheels;
# it only runs on the CPU here. --no-torch leaves torch and transformers out
# (compare_transformers.py then cannot run). Idempotent: a second run installs only what is
# missing; the llama-cpp-python build takes 10+ minutes on 2 cores.
#
#   scripts/ref/setup_ref.sh [--no-torch] [--no-llama]
set -euo pipefail

LLAMA_CPP_PY_VERSION=${LLAMA_CPP_PY_VERSION:-0.3.36}
cache=${LMP_CACHE:-$HOME/.cache/lmpress}
venv="$cache/venv-ref"
with_torch=1 with_llama=1 with_aqlm=0
for a in "$@"; do
    case $a in
        --no-torch) with_torch=0 ;;
        --no-llama) with_llama=0 ;;
        --with-aqlm) with_aqlm=1 ;;
        *) echo "setup_ref.sh: unknown option '$a'" >&2; exit 2 ;;
    esac
done

pins=(numpy==2.4.6 gguf==0.19.0 safetensors==0.8.0 sentencepiece==0.2.3)
[ $with_torch = 1 ] && pins+=(torch==2.15.0 transformers==5.23.0 accelerate==1.15.0)
if [ $with_aqlm = 1 ]; then
    [ $with_torch = 1 ] || { echo "setup_ref.sh: --with-aqlm needs torch (drop --no-torch)" >&2; exit 2; }
    pins+=("aqlm[cpu]==1.1.7" numba==0.68.1)
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup_ref: creating $venv"
    python3 -m venv "$venv"
fi
py="$venv/bin/python"

missing=()
for p in "${pins[@]}"; do
    name=${p%%==*} want=${p##*==}
    name=${name%%\[*}   # aqlm[cpu] -> aqlm
    have=$("$py" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
    [ "$have" = "$want" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup_ref: installing ${missing[*]}"
    "$py" -m pip install --quiet "${missing[@]}"
fi

if [ $with_llama = 1 ]; then
    have=$("$py" -m pip show llama-cpp-python 2>/dev/null | sed -n 's/^Version: //p' || true)
    stamp="$venv/.llama-cpp-python-noamx"   # builds before the AMX fix crash: rebuild those
    if [ "$have" != "$LLAMA_CPP_PY_VERSION" ] || [ ! -f "$stamp" ]; then
        src_dir="$cache/src"
        sdist="$src_dir/llama_cpp_python-$LLAMA_CPP_PY_VERSION.tar.gz"
        mkdir -p "$src_dir"
        [ -s "$sdist" ] || "$py" -m pip download --quiet --no-deps --no-binary :all: \
            "llama-cpp-python==$LLAMA_CPP_PY_VERSION" -d "$src_dir"
        echo "setup_ref: building llama-cpp-python $LLAMA_CPP_PY_VERSION (10+ minutes)"
        CMAKE_ARGS="${GGML_CPU_FLAGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON} -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} MAKEFLAGS=${MAKEFLAGS:--j2} \
            "$py" -m pip install --quiet --force-reinstall --no-deps "$sdist"
        "$py" -m pip install --quiet typing-extensions numpy diskcache jinja2   # its requirements
        touch "$stamp"
    fi
fi

{
    echo "python: $("$py" -c 'import sys; print(sys.version.split()[0])')"
    "$py" -m pip list --format=freeze 2>/dev/null |
        grep -iE '^(numpy|gguf|safetensors|sentencepiece|torch|transformers|tokenizers|accelerate|aqlm|numba|llama.cpp.python)=='
} > "$venv/VERSIONS.txt"
cat "$venv/VERSIONS.txt"
echo "setup_ref: ready, use $py"
