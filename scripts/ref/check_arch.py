#!/usr/bin/env python3
"""Qwen3, Phi-3 and Gemma 2 in lmpress against llama.cpp and NumPy, on generated checkpoints of
the real shapes.

No Qwen3, Phi-3 or Gemma 2 checkpoint is published on the registries these machines reach
(PyPI and Debian), so `gen` writes one: the block shapes of the real config (Qwen3-0.6B,
Phi-3-mini-4k, Gemma-2-2B) with few layers and seeded random values, in llama.cpp's GGUF
layout for the architecture (the converter's key and tensor names: qwen3.* with attn_q_norm /
attn_k_norm; phi3.* with the fused attn_qkv and ffn_up holding gate then up; gemma2.* with
post_attention_norm / post_ffw_norm and the soft-cap keys), all F32 so that both sides
multiply in fp32. Its vocabulary is stories260K's 512-token SentencePiece one (shared/models/stories260K:
the real 151936 / 32064-token heads would only make the file larger; the head is the same
code for every architecture). `compare` then evaluates a GGUF with `lmpress eval` and with
llama.cpp (llama-cpp-python) over the same windows:
  * perplexity (the protocol of compare_llamacpp.py: the text tokenized once, BOS first where
    the vocabulary adds one, windows of ctx tokens from an empty context, ppl = exp(mean of
    the windows' mean NLL), float64);
  * the first window's logits: max / mean |difference| and top-1 agreement;
  * token ids: lmpress's (dump_ids, scripts/ref/build_dump_ids.sh, if given) against llama.cpp's.
llama.cpp's KV cache is F16 by default; --kv f32 keeps it in F32 (both sides then fp32).
--numpy (gemma2, gemma3 files; needs --dump-ids) also runs scripts/ref/check_gemma3.py's NumPy
forward pass (fp32 products, float64 norms, softmax and soft-caps) on lmpress's token ids:
perplexity over the same windows and the first window's logits, and with llama.cpp also
llama.cpp's first window against it, as it is and with GELU through fp16 as ggml's CPU
table computes it; --no-llama skips llama.cpp.

Gemma 2's random values are scaled so that its soft-caps act (with the usual scale they
would not: scores of std 1 against a cap of 50): q and k weights times 8 (scores of std
about 64 against attn_logit_softcapping 50), the embedding of std 40/sqrt(dim) (tied head:
logits of std about 40 against final_logit_softcapping 30; the residual stream of std 40),
and the post norms 40 (1 + N(0, 0.1)) so the blocks' outputs are of the residual's size.
Its sliding_window is 128 in the file (the real 4096 would not cut at ctx 512).
Run with the reference venv (scripts/ref/setup_ref.sh):
  PY=~/.cache/lmpress/venv-ref/bin/python
  $PY scripts/ref/check_arch.py gen qwen3            # -> $LMP_CACHE/gen/qwen3-0.6b-shapes-l4.gguf
  $PY scripts/ref/check_arch.py gen phi3             # -> $LMP_CACHE/gen/phi-mini-4k-shapes-l2.gguf
  $PY scripts/ref/check_arch.py gen gemma2           # -> $LMP_CACHE/gen/gemma-2-2b-shapes-l2.gguf
  $PY scripts/ref/check_arch.py compare --model M.gguf --lmpress BUILD/cli/lmpress \
      [--max-windows 4] [--kv f32] [--dump-ids TOOL] [--text T] [--numpy] [--no-llama]
`gen` prints the file's path and sha256; `compare` one JSON object on stdout (progress on
stderr). Any GGUF both read can be compared (e.g. the stories260K conversions that
tests/integration/stories_gguf.py writes).
"""
import argparse
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare_llamacpp as cl  # noqa: E402  (window_nll, compare_ids, CACHE, SHARED, DEF_TEXT)

# The real configs (config.json of Qwen/Qwen3-0.6B and microsoft/Phi-3-mini-4k-instruct);
# n_layers is the generated file's.
SHAPES = {
    "qwen3": dict(name="qwen3-0.6b-shapes", dim=1024, ffn=3072, heads=16, kv=8, head_dim=128,
                  ctx=40960, theta=1e6, eps=1e-6, tied=True, window=0, layers=4),
    "phi3": dict(name="phi-mini-4k-shapes", dim=3072, ffn=8192, heads=32, kv=32, head_dim=96,
                 ctx=4096, theta=10000.0, eps=1e-5, tied=False, window=2047, layers=2),
    # google/gemma-2-2b's config.json (query_pre_attn_scalar 256 = head_dim; caps 50 and 30;
    # sliding_window 4096, written as 128 here: see the header)
    "gemma2": dict(name="gemma-2-2b-shapes", dim=2304, ffn=9216, heads=8, kv=4, head_dim=256,
                   ctx=8192, theta=10000.0, eps=1e-6, tied=True, window=128, layers=2,
                   attn_cap=50.0, final_cap=30.0),
}
# Gemma 2's value scales (see the header): q/k gain, logit and residual standard deviation
G2_QK_GAIN, G2_STD = 8.0, 40.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def read_tok512(path):
    """stories260K's tok512.bin (llama2.c: max_len, then score, length, bytes per token) as a
    GGUF SentencePiece vocabulary: tokens, scores, types (0 unk, 1 BOS, 2 EOS, bytes <0xXX>)."""
    data = open(path, "rb").read()
    off, toks, scores, types = 4, [], [], []
    for i in range(512):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        piece = data[off:off + n].decode("utf-8", "replace")
        off += n
        if i < 3:
            piece, t = ("<unk>", 2) if i == 0 else ("<s>", 3) if i == 1 else ("</s>", 3)
        elif piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            t = 6
        else:
            piece, t = piece.replace(" ", "\u2581"), 1
        toks.append(piece)
        scores.append(score)
        types.append(t)
    return toks, scores, types


def generate(arch, layers, seed, out, tok_path):
    """The random checkpoint: values chosen so that activations stay O(1) through the blocks
    (linears N(0, 1/n_in), norms 1 + N(0, 0.1)) and the logits spread (std about 3), so that
    the top-1 token is rarely a near tie."""
    import gguf
    s = dict(SHAPES[arch])
    L = layers or s["layers"]
    rng = np.random.default_rng(seed)
    dim, ffn, H, KV, hd = s["dim"], s["ffn"], s["heads"], s["kv"], s["head_dim"]
    toks, scores, types = read_tok512(tok_path)
    vocab = len(toks)

    def lin(n_out, n_in):
        return (rng.standard_normal((n_out, n_in), dtype=np.float32) / np.float32(math.sqrt(n_in)))

    def norm(n, scale=1.0):
        return (scale * (1.0 + 0.1 * rng.standard_normal(n))).astype(np.float32)

    g2 = arch == "gemma2"

    w = gguf.GGUFWriter(out, arch)
    w.add_name(s["name"])  # no "phi3" in it: llama.cpp keys token fixes on that name
    w.add_block_count(L)
    w.add_context_length(s["ctx"])
    w.add_embedding_length(dim)
    w.add_feed_forward_length(ffn)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_rope_freq_base(s["theta"])
    if arch in ("qwen3", "gemma2"):
        w.add_key_length(hd)
        w.add_value_length(hd)
    if g2:
        w.add_sliding_window(s["window"])
        w.add_float32("gemma2.attn_logit_softcapping", s["attn_cap"])
        w.add_float32("gemma2.final_logit_softcapping", s["final_cap"])
    if arch == "phi3":
        w.add_rope_dimension_count(hd)
        w.add_sliding_window(s["window"])
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)

    emb = rng.standard_normal((vocab, dim), dtype=np.float32)
    if s["tied"]:  # the head too: logits of std about 3 after the final norm (Gemma 2: 40)
        emb *= np.float32((G2_STD if g2 else 3.0) / math.sqrt(dim))
    w.add_tensor("token_embd.weight", emb)
    w.add_tensor("output_norm.weight", norm(dim))
    if not s["tied"]:
        w.add_tensor("output.weight", 3.0 * lin(vocab, dim))
    for b in range(L):
        p = f"blk.{b}."
        w.add_tensor(p + "attn_norm.weight", norm(dim))
        if arch == "phi3":
            w.add_tensor(p + "attn_qkv.weight", lin(H * hd + 2 * KV * hd, dim))
        else:
            gain = np.float32(G2_QK_GAIN if g2 else 1.0)
            w.add_tensor(p + "attn_q.weight", gain * lin(H * hd, dim))
            w.add_tensor(p + "attn_k.weight", gain * lin(KV * hd, dim))
            w.add_tensor(p + "attn_v.weight", lin(KV * hd, dim))
            if not g2:
                w.add_tensor(p + "attn_q_norm.weight", norm(hd))
                w.add_tensor(p + "attn_k_norm.weight", norm(hd))
        w.add_tensor(p + "attn_output.weight", lin(dim, H * hd))
        if g2:
            w.add_tensor(p + "post_attention_norm.weight", norm(dim, G2_STD))
        w.add_tensor(p + "ffn_norm.weight", norm(dim))
        if arch == "phi3":
            w.add_tensor(p + "ffn_up.weight", lin(2 * ffn, dim))
        else:
            w.add_tensor(p + "ffn_gate.weight", lin(ffn, dim))
            w.add_tensor(p + "ffn_up.weight", lin(ffn, dim))
        w.add_tensor(p + "ffn_down.weight", lin(dim, ffn))
        if g2:
            w.add_tensor(p + "post_ffw_norm.weight", norm(dim, G2_STD))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class Ref:
    """llama.cpp through llama-cpp-python, with the KV cache type chosen."""

    def __init__(self, args):
        from llama_cpp import Llama
        import llama_cpp
        kw = {}
        if args.kv == "f32":
            kw = dict(type_k=0, type_v=0)  # GGML_TYPE_F32
        self.version = llama_cpp.__version__
        self.llm = Llama(model_path=args.model, n_ctx=args.ctx, n_batch=args.ctx,
                         n_ubatch=args.ctx, n_threads=args.threads, n_threads_batch=args.threads,
                         logits_all=True, verbose=False, **kw)
        text = open(args.text, "rb").read()
        self.ids = np.asarray(self.llm.tokenize(text, add_bos=True, special=False), np.int64)
        self.nobos = np.asarray(self.llm.tokenize(text, add_bos=False, special=False), np.int64)

    def evaluate(self, ids, ctx, max_windows):
        n_win = min(len(ids) // ctx, max_windows)
        nlls, first, t = [], None, 0.0
        for k in range(n_win):
            win = ids[k * ctx:(k + 1) * ctx]
            self.llm.reset()
            t0 = time.perf_counter()
            self.llm.eval(win.tolist())
            t += time.perf_counter() - t0
            logits = np.array(self.llm.scores[:ctx], dtype=np.float32, copy=True)
            nlls.append(cl.window_nll(logits, win))
            first = logits if k == 0 else first
            log(f"llama.cpp window {k + 1}/{n_win}: nll {nlls[-1]:.6f}")
        ppl = math.exp(float(np.mean(np.asarray(nlls, np.float64))))
        return first, {"ppl": ppl, "n_windows": n_win, "n_tokens": int(len(ids)),
                       "tokens_per_s": round(n_win * ctx / t, 1) if t > 0 else None}


def logit_stats(a, b):
    d = np.abs(a.astype(np.float64) - b)
    return {"max_abs_logit_diff": float(d.max()), "mean_abs_logit_diff": float(d.mean()),
            "argmax_agree": float(np.mean(a.argmax(1) == b.argmax(1)))}


def numpy_check(args, res, lm, lids, bos):
    """check_gemma3.py's NumPy forward pass over lmpress's windows (BOS first where the
    vocabulary adds one, as lmpress eval): perplexity and the first window's logits."""
    if lids is None:
        sys.exit("--numpy needs --dump-ids (lmpress's token ids)")
    from check_gemma3 import NumpyGemma3
    ids = np.concatenate([[bos], lids]) if bos >= 0 else lids
    npm = NumpyGemma3(args.model)
    n_win = min(len(ids) // args.ctx, args.max_windows)
    nlls, t0 = [], time.perf_counter()
    for k in range(n_win):
        win = ids[k * args.ctx:(k + 1) * args.ctx]
        z = npm.logits(win)
        nlls.append(cl.window_nll(z, win))
        log(f"numpy window {k + 1}/{n_win}: nll {nlls[-1]:.6f}")
        if k == 0:
            res["logits_window0_lmpress_vs_numpy"] = logit_stats(lm.reshape(args.ctx, -1), z)
            res["lmpress_window0_nll"] = cl.window_nll(lm.reshape(args.ctx, -1), win)
            res["numpy_window0_nll"] = nlls[0]
            # what each soft-cap does here: the same window without it
            for cap in ("attn_cap", "final_cap"):
                if getattr(npm, cap, 0) > 0:
                    keep = getattr(npm, cap)
                    setattr(npm, cap, 0.0)
                    res[f"numpy_window0_without_{cap}"] = logit_stats(npm.logits(win), z)
                    setattr(npm, cap, keep)
    ppl = math.exp(float(np.mean(np.asarray(nlls, np.float64))))
    res["numpy"] = {"ppl": ppl, "n_windows": n_win,
                    "seconds": round(time.perf_counter() - t0, 1)}
    res["ppl_rel_diff_lmpress_vs_numpy"] = (res["lmpress"]["ppl"] - ppl) / ppl
    return npm, ids[:args.ctx]


def numpy_vs_llama(res, npm, win, first):
    """llama.cpp's first window against the NumPy pass, exact and with ggml's fp16 GELU."""
    res["logits_window0_llama_cpp_vs_numpy"] = logit_stats(first, npm.logits(win))
    npm.gelu_fp16 = True
    res["logits_window0_llama_cpp_vs_numpy_fp16_gelu"] = logit_stats(first, npm.logits(win))
    npm.gelu_fp16 = False


def compare(args):
    res = {"model": args.model, "text": args.text, "ctx": args.ctx,
           "max_windows": args.max_windows, "kv_cache": args.kv}
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "lmpress.f32")
        cmd = [args.lmpress, "eval", "--model", args.model, "--text", args.text, "--ctx",
               str(args.ctx), "--threads", str(args.threads), "--json", "--max-windows",
               str(args.max_windows), "--dump-logits", dump]
        log("running: " + " ".join(cmd))
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"lmpress eval failed: {p.stderr.strip()[-2000:]}")
        out = p.stdout.strip()
        js = json.loads(out[out.index("{"):])
        res["lmpress"] = {"ppl": js["ppl"], "text_tokens": js.get("text_tokens"),
                          "windows": js.get("windows"),
                          "seconds": round(time.perf_counter() - t0, 1),
                          "command": " ".join(cmd[:-2])}
        lm = np.fromfile(dump, dtype="<f4")
        if args.dump_ids:
            ids_out = os.path.join(tmp, "ids.i32")
            q = subprocess.run([args.dump_ids, args.model, args.text, ids_out],
                               capture_output=True, text=True)
            if q.returncode != 0:
                sys.exit(f"dump_ids failed: {q.stderr.strip()}")
            lids = np.fromfile(ids_out, dtype="<i4").astype(np.int64)
            lbos = int(json.loads(q.stdout)["bos"])
        else:
            lids, lbos = None, -1

    npm = None
    if args.numpy:
        npm, win0 = numpy_check(args, res, lm, lids, lbos)
    if args.no_llama:
        print(json.dumps(res, indent=2))
        return
    ref = Ref(args)
    res["llama_cpp_python"] = ref.version
    if lids is not None:
        res["token_ids"] = cl.compare_ids(ref.nobos, lids)
    res["token_count_equal"] = res["lmpress"]["text_tokens"] == len(ref.ids)
    first, summ = ref.evaluate(ref.ids, args.ctx, args.max_windows)
    res["llama_cpp"] = summ
    res["ppl_rel_diff"] = (res["lmpress"]["ppl"] - summ["ppl"]) / summ["ppl"]
    res["logits_window0"] = logit_stats(lm.reshape(args.ctx, -1), first)
    if npm is not None:
        numpy_vs_llama(res, npm, win0, first)
    print(json.dumps(res, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen", help="write a generated checkpoint of the real shapes")
    g.add_argument("arch", choices=sorted(SHAPES))
    g.add_argument("--layers", type=int, default=0,
                   help="blocks (default: qwen3 4, phi3 2, gemma2 2)")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--out", help="default $LMP_CACHE/gen/<name>-l<layers>.gguf")
    g.add_argument("--tokenizer", default=os.path.join(cl.SHARED, "models", "stories260K",
                                                       "tok512.bin"))
    c = sub.add_parser("compare", help="lmpress eval against llama.cpp on a GGUF")
    c.add_argument("--model", required=True)
    c.add_argument("--lmpress", required=True)
    c.add_argument("--text", default=cl.DEF_TEXT)
    c.add_argument("--ctx", type=int, default=512)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--max-windows", type=int, default=4)
    c.add_argument("--kv", choices=("f16", "f32"), default="f16")
    c.add_argument("--dump-ids", help="lmpress's dump_ids tool: compare token ids too")
    c.add_argument("--numpy", action="store_true",
                   help="gemma2/gemma3: also the NumPy forward pass (needs --dump-ids)")
    c.add_argument("--no-llama", action="store_true", help="skip llama.cpp")
    args = ap.parse_args()
    if args.cmd == "gen":
        layers = args.layers or SHAPES[args.arch]["layers"]
        out = args.out or os.path.join(cl.CACHE, "gen",
                                       f"{SHAPES[args.arch]['name']}-l{layers}.gguf")
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        t0 = time.perf_counter()
        generate(args.arch, layers, args.seed, out + ".tmp", args.tokenizer)
        os.replace(out + ".tmp", out)
        print(json.dumps({"path": out, "sha256": sha256(out), "bytes": os.path.getsize(out),
                          "seconds": round(time.perf_counter() - t0, 1)}))
    else:
        compare(args)


if __name__ == "__main__":
    main()
