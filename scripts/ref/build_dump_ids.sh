#!/usr/bin/env bash
# Build scripts/ref/dump_ids.c against an lmpress build directory's static libraries, into
# $LMP_CACHE/tools/dump_ids (default ~/.cache/lmpress). The build directory defaults to the
# first of build-ref, build-fwd, build that holds model/liblmp_model.a.
#   scripts/ref/build_dump_ids.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cache=${LMP_CACHE:-$HOME/.cache/lmpress}
b=${1:-}
if [ -z "$b" ]; then
    for d in build-ref build-fwd build; do
        [ -f "$here/$d/model/liblmp_model.a" ] && { b=$here/$d; break; }
    done
fi
[ -n "$b" ] && [ -f "$b/model/liblmp_model.a" ] || { echo "build_dump_ids: no build dir with liblmp_model.a" >&2; exit 1; }
mkdir -p "$cache/tools"
cc -O2 -std=c11 -march=native -I"$here" -I"$b" "$here/scripts/ref/dump_ids.c" \
    "$b/model/liblmp_model.a" "$b/kernels/liblmp_kernels.a" "$b/base/liblmp_base.a" \
    -lopenblas -lcjson -lpcre2-8 -lutf8proc -lm -lpthread -fopenmp -o "$cache/tools/dump_ids"
echo "$cache/tools/dump_ids"
