#!/usr/bin/env python3
"""requant_gguf - requantize a GGUF to another llama.cpp type with the llama.cpp library that
llama-cpp-python bundles (llama_model_quantize, --allow-requantize semantics: the source's
quantized weights are dequantized and quantized again), for baselines that need no llama.cpp
build (types without an importance matrix: Q2_K, Q3_K_S, Q4_0, Q4_K_M, ...). llama.cpp's log
goes to OUT.quantize.log; prints the output's size in bytes.

    ~/.cache/lmpress/venv-ref/bin/python scripts/ref/requant_gguf.py IN.gguf OUT.gguf Q2_K
"""
import os
import sys

import llama_cpp


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, out, typ = sys.argv[1:]
    ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + typ.upper(), None)
    if ftype is None:
        sys.exit(f"requant_gguf: unknown llama.cpp type '{typ}'")
    if not os.path.isfile(src):
        sys.exit(f"requant_gguf: no file '{src}'")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.allow_requantize = True
    p.nthread = os.cpu_count() or 1
    # llama.cpp logs to stderr (fd 2): keep it in a file beside the output
    log = os.open(out + ".quantize.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved = os.dup(2)
    os.dup2(log, 2)
    try:
        rc = llama_cpp.llama_model_quantize(src.encode(), out.encode(), p)
    finally:
        os.dup2(saved, 2)
        os.close(log)
    if rc != 0:
        sys.exit(f"requant_gguf: llama_model_quantize failed ({rc}), see {out}.quantize.log")
    print(os.path.getsize(out))


if __name__ == "__main__":
    main()
