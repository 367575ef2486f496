#!/usr/bin/env bash
# layers - the include-layer check (cmake/check_layers.cmake over cmake/layers.txt): the
# source tree passes it, and a copy of the tree with one upward include (base -> model) and
# one sideways include (artifact -> proto) fails it, naming both files.
set -u
: "${LMP_SOURCE_DIR:?}"
fail=0
bad() { echo "FAIL: $*"; fail=1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cmake -DROOT="$LMP_SOURCE_DIR" -P "$LMP_SOURCE_DIR/cmake/check_layers.cmake" > "$T/ok.log" 2>&1 ||
    { bad "the source tree fails the layer check"; cat "$T/ok.log"; }
mkdir -p "$T/tree"
(cd "$LMP_SOURCE_DIR" && cp -r cmake base kernels model proto worker artifact coordinator cli "$T/tree/")
printf '#include "model/model.h"\n' >> "$T/tree/base/log.h"
printf '#include "proto/wire.h"\n' >> "$T/tree/artifact/events.c"
if cmake -DROOT="$T/tree" -P "$T/tree/cmake/check_layers.cmake" > "$T/bad.log" 2>&1; then
    bad "an upward include passed the layer check"
fi
grep -q 'base/log.h includes "model/model.h"' "$T/bad.log" || bad "base -> model not named"
grep -q 'artifact/events.c includes "proto/wire.h"' "$T/bad.log" || bad "artifact -> proto not named"
# a layer table that names a dependency above itself is refused too
sed -i 's/^base:.*/base: cli/' "$T/tree/cmake/layers.txt"
cmake -DROOT="$T/tree" -P "$T/tree/cmake/check_layers.cmake" > "$T/tab.log" 2>&1 &&
    bad "a layer table with base depending on cli passed"
grep -q "'base' depends on 'cli'" "$T/tab.log" || bad "the bad table was not explained"
[ $fail -eq 0 ] && echo "layers: ok"
exit $fail
