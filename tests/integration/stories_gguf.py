#!/usr/bin/env python3
"""Write stories260K (llama2.c checkpoint + tok512.bin) as a GGUF of another architecture.

    stories_gguf.py ARCH MODEL.bin TOK.bin OUT.gguf      ARCH: llama, phi3 or qwen3

Python's standard library only (CI has no gguf package). The same weights in llama.cpp's
layout for ARCH, with the tokenizer as a SentencePiece ("llama") vocabulary:
  llama  the tensors as they are (llama2.c and GGUF llama both rotate interleaved pairs);
  phi3   q and k rows of each head reordered for NEOX RoPE (pairs (2i, 2i+1) become
         (i, i + head_dim/2), llama.cpp's converter un-permutes the same way), q, k and v
         fused into blk.N.attn_qkv and gate and up into blk.N.ffn_up (gate rows first), a
         phi3.attention.sliding_window of 48 (llama.cpp does not apply it to phi3);
  qwen3  q and k reordered as for phi3, separate tensors, attn_q_norm / attn_k_norm of ones.
llama and phi3 compute the same function, so their perplexities must agree; qwen3's q/k
norms change it.
"""
import struct
import sys

GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STR, GGUF_ARR = 4, 5, 6, 7, 8, 9


def read_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hid, L, nh, nkv, vocab, seq = struct.unpack_from("<7i", data, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // nh
    kvd = hd * nkv
    off = 28

    def take(n):
        nonlocal off
        v = struct.unpack_from(f"<{n}f", data, off)
        off += 4 * n
        return list(v)

    def per_layer(rows, cols):
        return [take(rows * cols) for _ in range(L)]

    w = {"tok": take(vocab * dim)}
    w["att_norm"] = per_layer(1, dim)
    w["wq"] = per_layer(dim, dim)
    w["wk"] = per_layer(kvd, dim)
    w["wv"] = per_layer(kvd, dim)
    w["wo"] = per_layer(dim, dim)
    w["ffn_norm"] = per_layer(1, dim)
    w["w1"] = per_layer(hid, dim)
    w["w2"] = per_layer(dim, hid)
    w["w3"] = per_layer(hid, dim)
    w["norm"] = take(dim)
    off += 2 * seq * (hd // 2) * 4
    if not shared:
        w["out"] = take(vocab * dim)
    cfg = dict(dim=dim, hid=hid, L=L, nh=nh, nkv=nkv, vocab=vocab, seq=seq, hd=hd)
    return cfg, w


def read_tok(path, vocab):
    with open(path, "rb") as f:
        data = f.read()
    off = 4
    toks, scores, types = [], [], []
    for i in range(vocab):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        piece = data[off:off + n].decode("utf-8", "replace")
        off += n
        if i == 0:
            piece, t = "<unk>", 2
        elif i == 1:
            piece, t = "<s>", 3
        elif i == 2:
            piece, t = "</s>", 3
        elif piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            t = 6
        else:
            piece, t = piece.replace(" ", "\u2581"), 1
        toks.append(piece)
        scores.append(score)
        types.append(t)
    return toks, scores, types


def put_tokenizer(g, tok, vocab):
    """The llama2.c tokenizer.bin at tok as a GGUF SentencePiece ("llama") vocabulary."""
    toks, scores, types = read_tok(tok, vocab)
    g.string("tokenizer.ggml.model", "llama")
    g.arr("tokenizer.ggml.tokens", GGUF_STR, toks)
    g.arr("tokenizer.ggml.scores", GGUF_F32, scores)
    g.arr("tokenizer.ggml.token_type", GGUF_I32, types)
    g.u32("tokenizer.ggml.bos_token_id", 1)
    g.u32("tokenizer.ggml.eos_token_id", 2)
    g.u32("tokenizer.ggml.unknown_token_id", 0)
    g.boolean("tokenizer.ggml.add_bos_token", True)


def neox(rows, n_heads, hd, cols):
    """Reorder the rows of each head: (0, 2, 4, ..., 1, 3, 5, ...)."""
    out = []
    for h in range(n_heads):
        order = [2 * i for i in range(hd // 2)] + [2 * i + 1 for i in range(hd // 2)]
        for r in order:
            base = (h * hd + r) * cols
            out.extend(rows[base:base + cols])
    return out


class Writer:
    def __init__(self):
        self.kv = []
        self.tensors = []

    @staticmethod
    def s(x):
        b = x.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def key(self, k, typ, payload):
        self.kv.append(self.s(k) + struct.pack("<I", typ) + payload)

    def u32(self, k, v):
        self.key(k, GGUF_U32, struct.pack("<I", v))

    def f32(self, k, v):
        self.key(k, GGUF_F32, struct.pack("<f", v))

    def boolean(self, k, v):
        self.key(k, GGUF_BOOL, struct.pack("<B", 1 if v else 0))

    def string(self, k, v):
        self.key(k, GGUF_STR, self.s(v))

    def arr(self, k, elem, items):
        if elem == GGUF_STR:
            body = b"".join(self.s(x) for x in items)
        else:
            body = struct.pack(f"<{len(items)}{'f' if elem == GGUF_F32 else 'i'}", *items)
        self.key(k, GGUF_ARR, struct.pack("<IQ", elem, len(items)) + body)

    def tensor(self, name, values, shape):  # shape outermost first, F32
        self.tensors.append((name, shape, struct.pack(f"<{len(values)}f", *values)))

    def write(self, path):
        out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)))
        for kv in self.kv:
            out += kv
        off = 0
        for name, shape, data in self.tensors:
            out += self.s(name) + struct.pack("<I", len(shape))
            for d in reversed(shape):
                out += struct.pack("<Q", d)
            out += struct.pack("<IQ", 0, off)
            off += (len(data) + 31) // 32 * 32
        out += b"\0" * (-len(out) % 32)
        for _, _, data in self.tensors:
            out += data + b"\0" * (-len(data) % 32)
        with open(path, "wb") as f:
            f.write(out)


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("llama", "phi3", "qwen3"):
        sys.exit(__doc__.split("\n\n")[1])
    arch, model, tok, out = sys.argv[1:]
    c, w = read_llama2c(model)
    dim, hid, L, nh, nkv, hd = c["dim"], c["hid"], c["L"], c["nh"], c["nkv"], c["hd"]
    g = Writer()
    g.string("general.architecture", arch)
    g.string("general.name", "stories260K")  # llama.cpp keys token fixes on "phi3" in a name
    g.u32(f"{arch}.block_count", L)
    g.u32(f"{arch}.context_length", c["seq"])
    g.u32(f"{arch}.embedding_length", dim)
    g.u32(f"{arch}.feed_forward_length", hid)
    g.u32(f"{arch}.attention.head_count", nh)
    g.u32(f"{arch}.attention.head_count_kv", nkv)
    g.f32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    g.f32(f"{arch}.rope.freq_base", 10000.0)
    if arch == "phi3":
        g.u32("phi3.rope.dimension_count", hd)
        g.u32("phi3.attention.sliding_window", 48)
    if arch == "qwen3":
        g.u32("qwen3.attention.key_length", hd)
        g.u32("qwen3.attention.value_length", hd)
    put_tokenizer(g, tok, c["vocab"])

    g.tensor("token_embd.weight", w["tok"], (c["vocab"], dim))
    g.tensor("output_norm.weight", w["norm"], (dim,))
    if "out" in w:
        g.tensor("output.weight", w["out"], (c["vocab"], dim))
    for b in range(L):
        q, k, v = w["wq"][b], w["wk"][b], w["wv"][b]
        if arch != "llama":
            q, k = neox(q, nh, hd, dim), neox(k, nkv, hd, dim)
        p = f"blk.{b}."
        g.tensor(p + "attn_norm.weight", w["att_norm"][b], (dim,))
        if arch == "phi3":
            g.tensor(p + "attn_qkv.weight", q + k + v, (nh * hd + 2 * nkv * hd, dim))
        else:
            g.tensor(p + "attn_q.weight", q, (nh * hd, dim))
            g.tensor(p + "attn_k.weight", k, (nkv * hd, dim))
            g.tensor(p + "attn_v.weight", v, (nkv * hd, dim))
        if arch == "qwen3":
            g.tensor(p + "attn_q_norm.weight", [1.0] * hd, (hd,))
            g.tensor(p + "attn_k_norm.weight", [1.0] * hd, (hd,))
        g.tensor(p + "attn_output.weight", w["wo"][b], (dim, nh * hd))
        g.tensor(p + "ffn_norm.weight", w["ffn_norm"][b], (dim,))
        if arch == "phi3":
            g.tensor(p + "ffn_up.weight", w["w1"][b] + w["w3"][b], (2 * hid, dim))
        else:
            g.tensor(p + "ffn_gate.weight", w["w1"][b], (hid, dim))
            g.tensor(p + "ffn_up.weight", w["w3"][b], (hid, dim))
        g.tensor(p + "ffn_down.weight", w["w2"][b], (dim, hid))
    g.write(out)


if __name__ == "__main__":
    main()
