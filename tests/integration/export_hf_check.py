#!/usr/bin/env python3
"""export_hf_check - read an `lmpress export --format hf-aqlm` directory back with the standard
library only and compare it with the artifact it came from (read with h5dump -b FILE: the
artifact is little-endian, and h5dump -b LE writes nothing for its 2-byte float types).

    export_hf_check.py OUT_DIR ART.h5 KEY=VALUE...

KEY=VALUE are the config.json fields expected (integers, true/false, strings). Checks:
  - model.safetensors: 8-byte little-endian header length, JSON header with
    "__metadata__": {"format": "pt"}, data_offsets contiguous from 0 to the end of the file
    (no holes), each tensor's byte count = its shape times its dtype's size, 2-byte tensors
    aligned;
  - per compressed layer of the artifact: <prefix>.codes I8/I16 (n_out, n_in/g, M) equal to
    the artifact's codes in aqlm's convention (code - 2^B when code >= 2^(B-1), read back
    modulo 2^B), <prefix>.codebooks F16 (M, 2^B, 1, g) and <prefix>.scales F16
    (n_out, 1, 1, 1) equal to the artifact's float16 values (format 2; format 1's float32
    rounded to float16 with struct 'e', round to nearest even), q_proj/k_proj rows in Hugging Face RoPE order when the artifact's
    RoPE is interleaved;
  - every /tensors/<name> of the artifact under the same name in F16, rounded the same way;
  - config.json fields and quantization_config; tokenizer.json and tokenizer_config.json.
Prints one line per problem and exits 1 if there is any.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

problems = []


def bad(msg):
    problems.append(msg)
    print("FAIL: " + msg)


def h5_raw(art, path, tmp):
    out = os.path.join(tmp, "d.bin")
    if os.path.exists(out):
        os.remove(out)
    subprocess.run(["h5dump", "-d", path, "-b", "FILE", "-o", out, art], check=True,
                   stdout=subprocess.DEVNULL)
    return open(out, "rb").read()


def h5_shape_type(art, path):
    txt = subprocess.run(["h5dump", "-H", "-d", path, art], check=True, capture_output=True,
                         text=True).stdout
    dtype = txt.split("DATATYPE", 1)[1].split()[0]
    dims = txt.split("SIMPLE { (", 1)[1].split(")", 1)[0]
    return dtype, [int(x) for x in dims.split(",")]


def h5_attr(art, path):
    txt = subprocess.run(["h5dump", "-a", path, art], check=True, capture_output=True,
                         text=True).stdout
    return txt.split("(0):", 1)[1].split("\n", 1)[0].strip().strip('"')


def f16_bytes(f32_bytes):
    n = len(f32_bytes) // 4
    vals = struct.unpack("<%df" % n, f32_bytes)
    return struct.pack("<%de" % n, *vals)


def as_f16(art, path, tmp):
    """The dataset's values as float16 bytes: fp16 (format 2) as stored, fp32 (format 1)
    rounded."""
    dt, _ = h5_shape_type(art, path)
    src = h5_raw(art, path, tmp)
    return src if dt != "H5T_IEEE_F32LE" else f16_bytes(src)


def hf_row(r, head_dim):
    h, k = divmod(r, head_dim)
    return h * head_dim + (k % 2) * (head_dim // 2) + k // 2


def permute(rows, head_dim, row_bytes):
    """rows: source-order bytes -> HF-order bytes."""
    n = len(rows) // row_bytes
    out = bytearray(len(rows))
    for r in range(n):
        d = hf_row(r, head_dim)
        out[d * row_bytes:(d + 1) * row_bytes] = rows[r * row_bytes:(r + 1) * row_bytes]
    return bytes(out)


SIZES = {"F16": 2, "I16": 2, "I8": 1, "F32": 4}


def main():
    out_dir, art = sys.argv[1], sys.argv[2]
    want = {}
    for kv in sys.argv[3:]:
        k, v = kv.split("=", 1)
        want[k] = {"true": True, "false": False}.get(v, int(v) if v.lstrip("-").isdigit() else v)

    raw = open(os.path.join(out_dir, "model.safetensors"), "rb").read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    if base % 8:
        bad("data section starts at %d, not 8-aligned" % base)
    if header.get("__metadata__") != {"format": "pt"}:
        bad("__metadata__ is %r" % header.get("__metadata__"))
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in tensors.items())
    pos = 0
    for b, e, k in spans:
        if b != pos:
            bad("%s starts at %d, the previous tensor ends at %d (hole or overlap)" % (k, b, pos))
        pos = e
        t = tensors[k]
        n = SIZES[t["dtype"]]
        for d in t["shape"]:
            n *= d
        if e - b != n:
            bad("%s: %d bytes for %s %s" % (k, e - b, t["dtype"], t["shape"]))
        if SIZES[t["dtype"]] == 2 and b % 2:
            bad("%s is not 2-aligned" % k)
    if base + pos != len(raw):
        bad("data ends at %d, the file at %d" % (base + pos, len(raw)))

    def data(name):
        b, e = tensors[name]["data_offsets"]
        return raw[base + b:base + e]

    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    for k, v in want.items():
        got = cfg.get(k)
        if k == "architectures":
            got = got[0] if got else None
        if got != v:
            bad("config.json %s = %r, expected %r" % (k, got, v))
    q = cfg.get("quantization_config", {})
    if q.get("quant_method") != "aqlm" or q.get("out_group_size") != 1:
        bad("quantization_config %r" % q)
    M, B, g = q.get("num_codebooks"), q.get("nbits_per_codebook"), q.get("in_group_size")
    keep = q.get("linear_weights_not_to_quantize", [])
    head_dim = cfg["head_dim"]
    interleaved = h5_attr(art, "/model/rope") == "interleaved"
    K = 1 << B

    n_layers = n_neg = 0
    with tempfile.TemporaryDirectory() as tmp:
        names = subprocess.run(["h5dump", "-d", "/model/linear_names", "-y", "-w", "0", art],
                               check=True, capture_output=True, text=True).stdout
        linears = [s for s in names.split('"')[1::2] if s.startswith("model.")]
        for lin in linears:
            grp = "/layers/" + lin
            try:
                ctype, cshape = h5_shape_type(art, grp + "/codes")
            except subprocess.CalledProcessError:
                if lin + ".weight" not in tensors or lin + ".weight" not in keep:
                    bad("kept linear %s: no F16 weight or not listed as not to quantize" % lin)
                continue
            n_layers += 1
            n_out, n_grp, m = cshape
            rope = interleaved and (lin.endswith("q_proj") or lin.endswith("k_proj"))
            t = tensors.get(lin + ".codes")
            if t is None:
                bad("%s.codes missing" % lin)
                continue
            if t["dtype"] != ("I8" if B <= 8 else "I16") or t["shape"] != [n_out, n_grp, M]:
                bad("%s.codes is %s %s" % (lin, t["dtype"], t["shape"]))
                continue
            src = h5_raw(art, grp + "/codes", tmp)
            usz = 1 if ctype == "H5T_STD_U8LE" else 2
            codes = struct.unpack("<%d%s" % (len(src) // usz, "B" if usz == 1 else "H"), src)
            packed = [c - K if c >= K // 2 else c for c in codes]
            esz = 1 if B <= 8 else 2
            exp = struct.pack("<%d%s" % (len(packed), "b" if esz == 1 else "h"), *packed)
            if rope:
                exp = permute(exp, head_dim, n_grp * M * esz)
            got = data(lin + ".codes")
            if got != exp:
                bad("%s.codes differ from the artifact's" % lin)
            vals = struct.unpack("<%d%s" % (len(got) // esz, "b" if esz == 1 else "h"), got)
            n_neg += sum(1 for v in vals if v < 0)
            cb = tensors.get(lin + ".codebooks")
            if cb is None or cb["dtype"] != "F16" or cb["shape"] != [M, K, 1, g]:
                bad("%s.codebooks is %r" % (lin, cb))
            elif data(lin + ".codebooks") != as_f16(art, grp + "/codebooks", tmp):
                bad("%s.codebooks differ from the artifact's (float16 rounding)" % lin)
            sc = tensors.get(lin + ".scales")
            if sc is None or sc["dtype"] != "F16" or sc["shape"] != [n_out, 1, 1, 1]:
                bad("%s.scales is %r" % (lin, sc))
            else:
                exp = as_f16(art, grp + "/scales", tmp)
                if rope:
                    exp = permute(exp, head_dim, 2)
                if data(lin + ".scales") != exp:
                    bad("%s.scales differ from the artifact's (float16 rounding)" % lin)
        tnames = subprocess.run(["h5dump", "-n", art], check=True, capture_output=True,
                                text=True).stdout
        n_t = 0
        for line in tnames.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "dataset" and parts[1].startswith("/tensors/"):
                name = parts[1][len("/tensors/"):]
                n_t += 1
                t = tensors.get(name)
                if t is None or t["dtype"] != "F16":
                    bad("tensor %s: %r" % (name, t))
                    continue
                dt, shape = h5_shape_type(art, parts[1])
                if t["shape"] != shape:
                    bad("tensor %s shape %s, artifact %s" % (name, t["shape"], shape))
                src = h5_raw(art, parts[1], tmp)
                exp = src if dt != "H5T_IEEE_F32LE" else f16_bytes(src)
                if rope_name(name) and interleaved:
                    exp = permute(exp, head_dim, len(exp) // shape[0])
                if data(name) != exp:
                    bad("tensor %s differs from the artifact's (float16 rounding)" % name)
    if n_layers == 0:
        bad("no compressed layer found")
    if n_neg == 0 and B >= 2:
        bad("no code >= 2^(B-1): the signed convention was not exercised")
    for k in ("model.embed_tokens.weight", "lm_head.weight", "lm_head"):
        if k not in keep:
            bad("%s not in linear_weights_not_to_quantize" % k)

    tok = json.load(open(os.path.join(out_dir, "tokenizer.json")))
    tcfg = json.load(open(os.path.join(out_dir, "tokenizer_config.json")))
    vocab = tok.get("model", {}).get("vocab", {})
    if len(vocab) != cfg["vocab_size"]:
        bad("tokenizer.json has %d tokens, config.json vocab_size %d" % (len(vocab), cfg["vocab_size"]))
    if tok["model"].get("type") != "BPE" or not tok["model"].get("merges"):
        bad("tokenizer.json model is not a BPE with merges")
    bos = cfg.get("bos_token_id")
    if bos is not None and tcfg.get("bos_token") is not None and vocab.get(tcfg["bos_token"]) != bos:
        bad("tokenizer_config.json bos_token %r is not id %r" % (tcfg.get("bos_token"), bos))
    print("export_hf_check: %d tensors, %d compressed layers, %d artifact tensors, %d negative codes, "
          "%d problems" % (len(tensors), n_layers, n_t, n_neg, len(problems)))
    return 1 if problems else 0


def rope_name(name):
    return name.endswith("q_proj.weight") or name.endswith("k_proj.weight") or \
        name.endswith("q_proj.bias") or name.endswith("k_proj.bias")


if __name__ == "__main__":
    sys.exit(main())
