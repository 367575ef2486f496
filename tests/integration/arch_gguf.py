#!/usr/bin/env python3
"""Write stories260K (llama2.c checkpoint + tok512.bin) as a Gemma-3- or Gemma-2-shaped GGUF.

    arch_gguf.py gemma3|gemma2 MODEL.bin TOK.bin OUT.gguf

Python's standard library only (stories_gguf.py's reader and writer). The trained weights
in llama.cpp's gemma3 layout: q and k rows reordered for NEOX RoPE, attn_q_norm /
attn_k_norm and post_attention_norm / post_ffw_norm of ones, tied head; the config turns on
what Gemma 3 adds: GeGLU, embeddings times sqrt(dim), blocks 0, 2, 4 local (a window of 32
keys, RoPE base 1000; sliding_window_pattern 2), linear RoPE scaling (factor 2) on the
global blocks 1 and 3. gemma2: the same without the q/k norms, RoPE scaling and local base,
with the soft-caps small enough to act on this model (attention scores 5, logits 10; the
released models have 50 and 30). The extra pieces change the function: the perplexity is
not stories260K's (it is a model to train, not a reference).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stories_gguf import Writer, neox, put_tokenizer, read_llama2c  # noqa: E402


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("gemma3", "gemma2"):
        sys.exit(__doc__.split("\n\n")[1])
    a, model, tok, out = sys.argv[1:]
    g3 = a == "gemma3"
    c, w = read_llama2c(model)
    dim, hid, L, nh, nkv, hd = c["dim"], c["hid"], c["L"], c["nh"], c["nkv"], c["hd"]
    if "out" in w:
        sys.exit(f"arch_gguf.py: {a} has a tied head; this checkpoint has its own")
    g = Writer()
    g.string("general.architecture", a)
    g.string("general.name", "stories260K")
    g.u32(f"{a}.block_count", L)
    g.u32(f"{a}.context_length", c["seq"])
    g.u32(f"{a}.embedding_length", dim)
    g.u32(f"{a}.feed_forward_length", hid)
    g.u32(f"{a}.attention.head_count", nh)
    g.u32(f"{a}.attention.head_count_kv", nkv)
    g.u32(f"{a}.attention.key_length", hd)
    g.u32(f"{a}.attention.value_length", hd)
    g.f32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    g.f32(f"{a}.rope.freq_base", 10000.0)
    g.u32(f"{a}.attention.sliding_window", 32)
    if g3:
        g.f32(f"{a}.rope.freq_base_swa", 1000.0)
        g.u32(f"{a}.attention.sliding_window_pattern", 2)
        g.string(f"{a}.rope.scaling.type", "linear")
        g.f32(f"{a}.rope.scaling.factor", 2.0)
    else:
        g.f32(f"{a}.attn_logit_softcapping", 5.0)
        g.f32(f"{a}.final_logit_softcapping", 10.0)
    put_tokenizer(g, tok, c["vocab"])

    g.tensor("token_embd.weight", w["tok"], (c["vocab"], dim))
    g.tensor("output_norm.weight", w["norm"], (dim,))
    for b in range(L):
        q, k = neox(w["wq"][b], nh, hd, dim), neox(w["wk"][b], nkv, hd, dim)
        p = f"blk.{b}."
        g.tensor(p + "attn_norm.weight", w["att_norm"][b], (dim,))
        g.tensor(p + "attn_q.weight", q, (nh * hd, dim))
        g.tensor(p + "attn_k.weight", k, (nkv * hd, dim))
        g.tensor(p + "attn_v.weight", w["wv"][b], (nkv * hd, dim))
        if g3:
            g.tensor(p + "attn_q_norm.weight", [1.0] * hd, (hd,))
            g.tensor(p + "attn_k_norm.weight", [1.0] * hd, (hd,))
        g.tensor(p + "attn_output.weight", w["wo"][b], (dim, nh * hd))
        g.tensor(p + "post_attention_norm.weight", [1.0] * dim, (dim,))
        g.tensor(p + "ffn_norm.weight", w["ffn_norm"][b], (dim,))
        g.tensor(p + "ffn_gate.weight", w["w1"][b], (hid, dim))
        g.tensor(p + "ffn_up.weight", w["w3"][b], (hid, dim))
        g.tensor(p + "ffn_down.weight", w["w2"][b], (dim, hid))
        g.tensor(p + "post_ffw_norm.weight", [1.0] * dim, (dim,))
    g.write(out)


if __name__ == "__main__":
    main()
