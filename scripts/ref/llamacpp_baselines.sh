#!/usr/bin/env bash
# llama.cpp low-bit baselines for the quality table: requantizes the model llama.cpp's way (Q2_K;
# IQ2_XS / IQ2_XXS with an importance matrix from calibration text), measures every file's bits
# per weight from its tensor table, and its WikiText-2 perplexity under the protocol of
# `lmpress eval` (scripts/ref/compare_llamacpp.py --no-lmpress: text tokenized once, BOS only
# where the model adds one, floor(n/ctx) non-overlapping windows from an empty context,
# ppl = exp(mean over windows of the window's mean NLL)).
#
# The source model is already quantized (SmolLM2-135M-Instruct Q4_1, token_embd Q8_0), so every
# file here is a requantization (llama-quantize --allow-requantize) of those weights, not a
# quantization of the fp16 checkpoint; the Q4_1 file itself is the reference row.
#
# SmolLM2-135M's rows are 576 long, which 256-element super-blocks do not divide: llama-quantize
# puts Q2_K/Q3_K's 576-wide tensors in Q4_0 and IQ2_*'s in IQ4_NL ("falling back"), so only
# ffn_down (rows of 1536) gets a 2-3 bit type there. Q2_0 (2.25 bpw, groups of 64) is the llama.cpp
# type that is 2-bit on every linear weight of this model. The bpw JSON shows what each file holds.
#
# Everything is written to $LMP_CACHE/baselines (default ~/.cache/lmpress/baselines):
#   <stem>.<TYPE>.gguf, <stem>.<TYPE>.quantize.log   llama-quantize output and its log
#   imatrix-<calib>-c<ctx>-x<chunks>.gguf / .log      llama-imatrix output and its log
#   <name>.bpw.json                                    bits per weight, per-type breakdown
#   <name>.ppl-w<N>.json                               compare_llamacpp.py's JSON (N windows)
#   summary-w<N>.md                                    the table of all of them
# Rerunnable: existing outputs are kept (--force redoes them). Needs scripts/ref/setup_ref.sh
# (venv with llama_cpp) and scripts/ref/build_llamacpp.sh (the llama.cpp tools).
#
#   scripts/ref/llamacpp_baselines.sh [--windows N|all] [--chunks N] [--types "Q2_K IQ2_XS ..."]
#                                     [--threads N] [--no-eval] [--force]
set -euo pipefail

cache=${LMP_CACHE:-$HOME/.cache/lmpress}
bin=${LLAMACPP_BIN:-$cache/llama.cpp-build/bin}
py=${PY:-$cache/venv-ref/bin/python}
model=${MODEL:-$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}
here=$(cd "$(dirname "$0")" && pwd)
shared=${LMP_SHARED:-$here/../../../shared}
text=${TEXT:-$shared/data/wikitext2_test_join.txt}
calib=${CALIB:-$shared/data/tinystories_valid_first1000.txt}
out=$cache/baselines
windows=40
chunks=32
ctx=512
threads=2
types="Q2_K Q2_0 IQ2_XS IQ2_XXS"
do_eval=1
force=0
while [ $# -gt 0 ]; do
    case $1 in
        --windows) windows=$2; shift 2 ;;
        --chunks) chunks=$2; shift 2 ;;
        --types) types=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --no-eval) do_eval=0; shift ;;
        --force) force=1; shift ;;
        -h|--help) awk 'NR > 1 && /^set -e/ { exit } NR > 1' "$0"; exit 0 ;;
        *) echo "llamacpp_baselines.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
for f in "$model" "$text" "$calib" "$bin/llama-quantize" "$bin/llama-imatrix" "$py"; do
    [ -e "$f" ] || { echo "llamacpp_baselines.sh: missing $f (see docs/reference.md)" >&2; exit 1; }
done
case $windows in
    all) win_args=(); wtag=all ;;
    ''|*[!0-9]*) echo "llamacpp_baselines.sh: --windows takes a number or 'all'" >&2; exit 2 ;;
    *) win_args=(--max-windows "$windows"); wtag=$windows ;;
esac
mkdir -p "$out"
stem=$(basename "$model" .gguf)
stem=${stem%.Q4_1}
log() { echo "llamacpp_baselines: $*" >&2; }
fresh() { [ "$force" = 1 ] || [ ! -s "$1" ]; }   # true when $1 has to be (re)made

# 1. The importance matrix, from calibration text that is not the evaluation text.
calib_tag=$(basename "$calib" .txt | cut -d_ -f1)
imatrix=$out/imatrix-$calib_tag-c$ctx-x$chunks.gguf
needs_imatrix=0
for t in $types; do case $t in IQ*|*_S) needs_imatrix=1 ;; esac; done
imatrix_ok=1
if [ "$needs_imatrix" = 1 ] && fresh "$imatrix"; then
    log "llama-imatrix: $chunks chunks of $ctx tokens of $calib"
    set +e
    "$bin/llama-imatrix" -m "$model" -f "$calib" -c "$ctx" -b "$ctx" --chunks "$chunks" \
        -t "$threads" -o "$imatrix" > "${imatrix%.gguf}.log" 2>&1
    rc=$?
    set -e
    if [ $rc -ne 0 ] || [ ! -s "$imatrix" ]; then
        imatrix_ok=0
        log "llama-imatrix failed (exit $rc); last lines of ${imatrix%.gguf}.log:"
        tail -n 15 "${imatrix%.gguf}.log" >&2
        rm -f "$imatrix"
    fi
fi

# 2. The quantized files.
files=("$model")
for t in $types; do
    dst=$out/$stem.$t.gguf
    args=(--allow-requantize)
    case $t in
        IQ*|*_S)
            if [ "$imatrix_ok" != 1 ]; then log "skipping $t: no importance matrix"; continue; fi
            args+=(--imatrix "$imatrix") ;;
    esac
    if fresh "$dst"; then
        log "llama-quantize ${args[*]} -> $t"
        if ! "$bin/llama-quantize" "${args[@]}" "$model" "$dst" "$t" "$threads" \
                > "$out/$stem.$t.quantize.log" 2>&1; then
            log "llama-quantize $t failed; last lines of $out/$stem.$t.quantize.log:"
            tail -n 15 "$out/$stem.$t.quantize.log" >&2
            rm -f "$dst"
            continue
        fi
    fi
    files+=("$dst")
done

# 3. Bits per weight from the tensor table: whole model, and over the linear weights of the
#    blocks only (blk.N.attn_{q,k,v,output}, blk.N.ffn_{gate,up,down}). The table is parsed here and
#    each tensor's size comes from ggml_row_size() of the llama.cpp build that wrote it: the gguf
#    package (0.19.0) rejects types newer than itself (Q2_0 = 42).
for f in "${files[@]}"; do
    j=$out/$(basename "$f" .gguf).bpw.json
    if fresh "$j" || [ "$f" -nt "$j" ]; then
        "$py" - "$f" "$bin/libggml-base.so" > "$j" <<'EOF'
import collections, ctypes, json, os, re, struct, sys
path, lib = sys.argv[1], ctypes.CDLL(sys.argv[2])
lib.ggml_row_size.restype = ctypes.c_size_t
lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
lib.ggml_type_name.restype = ctypes.c_char_p
lib.ggml_type_name.argtypes = [ctypes.c_int]
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value types

def tensors(path):
    with open(path, "rb") as fh:
        buf = fh.read(64 << 20)  # header + tensor table; tensor data follows
    pos = 0
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v
    def string():
        nonlocal pos
        n = take("Q"); pos += n
        return buf[pos - n:pos].decode("utf-8", "replace")
    def skip(vt):
        nonlocal pos
        if vt == 8: string()
        elif vt == 9:
            et, n = take("I"), take("Q")
            if et in SCALAR: pos += SCALAR[et] * n
            else:
                for _ in range(n): skip(et)
        else: pos += SCALAR[vt]
    if buf[:4] != b"GGUF":
        sys.exit(f"{path}: not a GGUF file")
    pos = 4
    version, n_t, n_kv = take("I"), take("Q"), take("Q")
    for _ in range(n_kv):
        string(); skip(take("I"))
    for _ in range(n_t):
        name = string(); nd = take("I"); dims = [take("Q") for _ in range(nd)]
        ty = take("I"); take("Q")
        n = 1
        for d in dims: n *= d
        rows = n // dims[0]
        yield name, lib.ggml_type_name(ty).decode(), n, rows * lib.ggml_row_size(ty, dims[0])

lin = re.compile(r"^blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$")
tot = collections.Counter()
by_type = collections.defaultdict(collections.Counter)
by_role = collections.defaultdict(collections.Counter)
for name, ty, n, b in tensors(path):
    tot["n"] += n; tot["bytes"] += b
    by_type[ty]["tensors"] += 1; by_type[ty]["n"] += n; by_type[ty]["bytes"] += b
    m = lin.match(name)
    role = m.group(1) if m else name.split(".")[-2] if name.startswith("blk.") else name
    if m:
        tot["lin_n"] += n; tot["lin_bytes"] += b
    by_role[role][ty] += 1
def bpw(b, n): return round(8.0 * b / n, 4) if n else None
print(json.dumps({
    "file": path, "file_bytes": os.path.getsize(path), "tensor_data_bytes": tot["bytes"],
    "n_params": tot["n"], "bpw_model": bpw(tot["bytes"], tot["n"]),
    "bpw_file": bpw(os.path.getsize(path), tot["n"]),
    "n_linear": tot["lin_n"], "linear_bytes": tot["lin_bytes"],
    "bpw_linear": bpw(tot["lin_bytes"], tot["lin_n"]),
    "by_type": {k: {**v, "bpw": bpw(v["bytes"], v["n"])} for k, v in sorted(by_type.items())},
    "types_by_role": {k: dict(v) for k, v in sorted(by_role.items())},
}, indent=1))
EOF
    fi
done

# 4. Perplexity under lmpress's protocol, one model at a time.
if [ "$do_eval" = 1 ]; then
    for f in "${files[@]}"; do
        j=$out/$(basename "$f" .gguf).ppl-w$wtag.json
        if fresh "$j" || [ "$f" -nt "$j" ]; then
            log "perplexity of $(basename "$f") over ${windows} windows"
            "$py" "$here/compare_llamacpp.py" --no-lmpress --model "$f" --text "$text" \
                --ctx "$ctx" --threads "$threads" "${win_args[@]}" > "$j.tmp"
            mv "$j.tmp" "$j"
        fi
    done
fi

# 5. The table.
"$py" - "$out" "$wtag" "${files[@]}" > "$out/summary-w$wtag.md" <<'EOF'
import json, os, sys
out, wtag, files = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"| file | types of the linear weights | bpw (model) | bpw (linear) | ppl ({wtag} windows) |")
print("| --- | --- | --- | --- | --- |")
for f in files:
    base = os.path.join(out, os.path.basename(f)[:-5])
    b = json.load(open(base + ".bpw.json"))
    roles = {k: v for k, v in b["types_by_role"].items()
             if k.startswith("attn_") or k.startswith("ffn_")}
    types = "; ".join(f"{k} {'/'.join(sorted(v))}" for k, v in roles.items()
                      if k not in ("attn_norm", "ffn_norm"))
    ppl = "-"
    p = f"{base}.ppl-w{wtag}.json"
    if os.path.exists(p):
        s = json.load(open(p))["llama_cpp"]
        ppl = f"{s['ppl']:.4f} ({s['n_windows']} windows)"
    print(f"| {os.path.basename(f)} | {types} | {b['bpw_model']:.3f} | {b['bpw_linear']:.3f} | {ppl} |")
EOF
cat "$out/summary-w$wtag.md"
