#!/usr/bin/env python3
"""Write a copy of a GGUF with every tensor dequantized to F32 (same names, shapes, metadata).

The F32 copy holds exactly the values lmpress computes with (it dequantizes to fp32 at load),
and makes llama.cpp multiply in fp32 too: with quantized weights its CPU matrix products
quantize the activations to 8 bits (Q8_0/Q8_K), so comparing both programs on the copy
separates llama.cpp's arithmetic from differences in the model's definition.

  ~/.cache/lmpress/venv-ref/bin/python scripts/ref/dequant_gguf.py IN.gguf OUT.gguf
"""
import sys

import numpy as np


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    import gguf
    src, dst = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "general.file_type":
            w.add_uint32(key, int(gguf.LlamaFileType.ALL_F32))
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), vtype, sub_type=f.types[-1])
        else:
            w.add_key_value(key, f.contents(), vtype)
    for t in r.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        w.add_tensor(t.name, np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(dst)


if __name__ == "__main__":
    main()
