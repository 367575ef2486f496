#!/usr/bin/env python3
"""Gemma 3 in lmpress against two independent references: llama.cpp and a NumPy forward pass.

What it checks, on a Gemma 3 GGUF (default $LMP_CACHE/gemma-3-270m-q4_k_m.gguf, or
$LMP_GEMMA3_GGUF):
  * token ids: lmpress's tokenizer (the dump_ids tool, scripts/ref/build_dump_ids.sh) against
    llama.cpp's (llama-cpp-python, tokenize(add_bos=False, special=False)) on the text
    (WikiText-2 test by default) and on a built-in Unicode-heavy text (scripts, emoji, combining
    marks, RTL, whitespace runs, byte-fallback characters);
  * perplexity: `lmpress eval --ctx C --max-windows N` against llama.cpp over the same windows
    (the protocol of compare_llamacpp.py: BOS where the model adds one, each window from an
    empty context, ppl = exp(mean of the windows' mean NLL), float64);
  * logits of the first window: lmpress (`eval --dump-logits`) against llama.cpp (max/mean
    absolute difference, top-1 agreement) and against a NumPy forward pass written here from
    the published Gemma 3 architecture on the same dequantized weights (gguf.quants), float32
    matrix products with float64 norms and softmax. llama.cpp is not an fp32 reference: it
    multiplies K-quant weights with 8-bit-quantized activations and evaluates GELU through an
    fp16 table, so the NumPy pass is the tight check of lmpress's arithmetic and llama.cpp the
    independent check of the architecture.

Run with the reference venv (scripts/ref/setup_ref.sh; --no-llama needs only numpy and gguf):
  ~/.cache/lmpress/venv-ref/bin/python scripts/ref/check_gemma3.py --lmpress BUILD/cli/lmpress \
      [--max-windows 8] [--model M] [--text T] [--no-llama] [--no-numpy]
Prints one JSON object on stdout (progress on stderr).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare_llamacpp as cl  # noqa: E402  (window_nll, compare_ids, LlamaRef)

CACHE = cl.CACHE
DEF_MODEL = os.environ.get("LMP_GEMMA3_GGUF", os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf"))

# Unicode-heavy text: many scripts, emoji (with ZWJ and variation selectors), combining marks,
# right-to-left text, math, NBSP and other spaces, whitespace runs, rare characters that need
# byte fallback. Repeated with variations so that it is a few thousand tokens.
UNICODE_LINES = [
    "Ünïcödé tëxt: naïve café, coöperate, façade, jalapeño, smörgåsbord, Øresund, Łódź.",
    "日本語のテキストと漢字、ひらがな、カタカナ。中文文本：你好，世界！한국어 텍스트입니다.",
    "Русский текст: съешь же ещё этих мягких французских булок. Ελληνικά: Καλημέρα κόσμε.",
    "العربية: مرحبا بالعالم. עברית: שלום עולם. हिन्दी: नमस्ते दुनिया। ไทย: สวัสดีชาวโลก",
    "Emoji: 🦙🚀 ❤️ 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 ✌🏽 1️⃣ #️⃣ ☕ 🧪",
    "Math: ∀x∈ℝ, ∃y: x² + y² ≤ 1 ⇒ ∫₀¹ f(t) dt ≈ ∑ₙ aₙ; α β γ Δ ∞ ≠ ± √ ∂ ∇ ⊗ ℵ₀.",
    "Combining: e\u0301 a\u0308 n\u0303 Z\u0335\u0321a\u0337\u031bl\u0338g\u0336o\u0334; "
    "Hangul jamo \u1100\u1161\u11a8.",
    "Spaces:\u00a0nbsp,\u2009thin,\u3000ideographic,\u200bzero-width; tabs\t\tand   runs    of"
    "     spaces\n\n\n  indented\r\nCRLF",
    "Rare: \U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522 \U00010348 "
    "\U0002070e \uffff\ufffd \U0001fae0 \u2603 \u00bd \u00be ¼ ‰ † ‡ • ‣ ⁂",
    "Code: def f(x): return {'k': [1, 2, 3]}  # コメント\n\tif (a && b) { printf(\"%d\\n\", x); }",
    "Mixed: The 東京 Olympics (2020→2021) cost ¥1.6兆 — “quotes”, ‘single’, «guillemets», „low“.",
]


def unicode_text():
    out = []
    for rep in range(12):
        for i, line in enumerate(UNICODE_LINES):
            out.append(line if rep % 2 == 0 else line.upper() if i % 3 == 0 else line[::-1])
        out.append(" " * (rep + 1) + "\n" * (rep % 4))
    return "\n".join(out)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- the NumPy reference ---------------------------------------------------------------------

class NumpyGemma3:
    """Gemma 3 (and Gemma 2) forward pass from a GGUF, written from the architecture (Gemma 3
    technical report, Hugging Face's modeling_gemma3 / modeling_gemma2, llama.cpp's gemma3 and
    gemma2 graphs), not from lmpress:
      x = embed(ids) * sqrt(dim)
      per layer: h = rmsnorm(x) * attn_norm; q, k, v = h Wq, h Wk, h Wv (per head);
                 q, k = rmsnorm_head(q) * q_norm, rmsnorm_head(k) * k_norm;
                 NEOX RoPE (halves), base freq_base_swa (10000) on local layers, freq_base on
                 every 6th (global); softmax(q k^T / sqrt(head_dim), causal, local layers
                 limited to the last sliding_window keys) v; x += rmsnorm(a Wo) * post_attn_norm
                 h = rmsnorm(x) * ffn_norm; x += rmsnorm((gelu_tanh(h Wg) * h Wu) Wd) * post_ffw
      logits = (rmsnorm(x) * output_norm) Wemb^T
    Gemma 2: no q/k norms; every even layer local (sliding_window keys), one RoPE base; the
    scores scaled by 1/sqrt(head_dim) (dim / heads for the 46-layer 27B, as llama.cpp) are
    soft-capped, c tanh(s / c) with c = attn_logit_softcapping (default 50), before the mask
    and softmax, and the logits with c = final_logit_softcapping (default 30), in float64.
    GGUF norm weights already hold Gemma's (1 + w)."""

    def __init__(self, path):
        import gguf
        self.gguf = gguf
        r = gguf.GGUFReader(path)
        self.t = {x.name: x for x in r.tensors}
        f = r.fields

        def val(key, default=None):
            if key not in f:
                return default
            return f[key].contents()
        arch = val("general.architecture")
        if arch not in ("gemma3", "gemma2"):
            raise ValueError(f"{path}: architecture {arch}, not gemma3 or gemma2")
        self.arch = arch
        a = arch + "."
        self.n_layers = int(val(a + "block_count"))
        self.dim = int(val(a + "embedding_length"))
        self.n_heads = int(val(a + "attention.head_count"))
        self.n_kv = int(val(a + "attention.head_count_kv", self.n_heads))
        self.hd = int(val(a + "attention.key_length", self.dim // self.n_heads))
        self.eps = float(val(a + "attention.layer_norm_rms_epsilon"))
        self.theta = float(val(a + "rope.freq_base", 10000.0))
        if arch == "gemma2":  # llama.cpp: window 4096, pattern 2 (even layers local), caps
            self.theta_swa = self.theta
            self.window = int(val(a + "attention.sliding_window", 4096))
            self.pattern = 2
            self.scale = 1.0
            self.attn_cap = float(val(a + "attn_logit_softcapping", 50.0))
            self.final_cap = float(val(a + "final_logit_softcapping", 30.0))
            q_scalar = self.dim // self.n_heads if self.n_layers == 46 else self.hd
        else:
            self.theta_swa = float(val(a + "rope.freq_base_swa", 10000.0))
            self.window = int(val(a + "attention.sliding_window", 0))
            self.pattern = int(val(a + "attention.sliding_window_pattern", 6))
            self.scale = float(val(a + "rope.scaling.factor", 1.0) or 1.0)
            self.attn_cap = self.final_cap = 0.0
            q_scalar = self.dim // self.n_heads if self.n_layers == 62 else self.hd
        self.attn_scale = 1.0 / math.sqrt(q_scalar)
        # True: GELU as ggml's CPU default (GGML_GELU_FP16: input and output through fp16,
        # x <= -10 gives 0 and x >= 10 gives x), to tell llama.cpp's table from the rest
        self.gelu_fp16 = False
        self._emb = None

    def w(self, name):
        x = self.t[name]
        return self.gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float32)

    def emb(self):
        if self._emb is None:
            self._emb = self.w("token_embd.weight")
        return self._emb

    def rmsnorm(self, x, w):
        x64 = x.astype(np.float64)
        s = 1.0 / np.sqrt((x64 * x64).mean(axis=-1, keepdims=True) + self.eps)
        return (x64 * s).astype(np.float32) * w

    def rope(self, x, theta, scale):
        # x (T, heads, hd): NEOX rotation of (i, i + hd/2)
        T, half = x.shape[0], self.hd // 2
        inv = theta ** (-2.0 * np.arange(half, dtype=np.float64) / self.hd) / scale
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        c = np.cos(ang).astype(np.float32)[:, None, :]
        s = np.sin(ang).astype(np.float32)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)

    def logits(self, ids):
        ids = np.asarray(ids, np.int64)
        T = len(ids)
        x = self.emb()[ids] * np.float32(math.sqrt(self.dim))
        mask_causal = np.tril(np.ones((T, T), bool))
        for L in range(self.n_layers):
            p = f"blk.{L}."
            local = self.window > 0 and (L + 1) % self.pattern != 0
            h = self.rmsnorm(x, self.w(p + "attn_norm.weight"))
            q = (h @ self.w(p + "attn_q.weight").T).reshape(T, self.n_heads, self.hd)
            k = (h @ self.w(p + "attn_k.weight").T).reshape(T, self.n_kv, self.hd)
            v = (h @ self.w(p + "attn_v.weight").T).reshape(T, self.n_kv, self.hd)
            if self.arch == "gemma3":
                q = self.rmsnorm(q, self.w(p + "attn_q_norm.weight"))
                k = self.rmsnorm(k, self.w(p + "attn_k_norm.weight"))
            theta, scale = (self.theta_swa, 1.0) if local else (self.theta, self.scale)
            q, k = self.rope(q, theta, scale), self.rope(k, theta, scale)
            mask = mask_causal.copy()
            if local:
                idx = np.arange(T)
                mask &= (idx[:, None] - idx[None, :]) < self.window
            att = np.empty((T, self.n_heads, self.hd), np.float32)
            g = self.n_heads // self.n_kv
            for hh in range(self.n_heads):
                s = (q[:, hh, :] @ k[:, hh // g, :].T).astype(np.float64) * self.attn_scale
                if self.attn_cap > 0:
                    s = self.attn_cap * np.tanh(s / self.attn_cap)
                s[~mask] = -np.inf
                s -= s.max(axis=1, keepdims=True)
                pr = np.exp(s)
                pr /= pr.sum(axis=1, keepdims=True)
                att[:, hh, :] = pr.astype(np.float32) @ v[:, hh // g, :]
            o = att.reshape(T, -1) @ self.w(p + "attn_output.weight").T
            x = x + self.rmsnorm(o, self.w(p + "post_attention_norm.weight"))
            h = self.rmsnorm(x, self.w(p + "ffn_norm.weight"))
            gt = h @ self.w(p + "ffn_gate.weight").T
            up = h @ self.w(p + "ffn_up.weight").T
            gx = gt.astype(np.float16).astype(np.float32) if self.gelu_fp16 else gt
            gelu = 0.5 * gx * (1.0 + np.tanh(np.float32(math.sqrt(2.0 / math.pi))
                                             * (gx + np.float32(0.044715) * gx ** 3)))
            if self.gelu_fp16:
                gelu = np.where(gt <= -10, 0, np.where(gt >= 10, gt,
                                                       gelu.astype(np.float16).astype(np.float32)))
            f = (gelu * up) @ self.w(p + "ffn_down.weight").T
            x = x + self.rmsnorm(f, self.w(p + "post_ffw_norm.weight"))
        x = self.rmsnorm(x, self.w("output_norm.weight"))
        out = self.w("output.weight") if "output.weight" in self.t else self.emb()
        z = x @ out.T
        if self.final_cap > 0:
            z = (self.final_cap * np.tanh(z.astype(np.float64) / self.final_cap)).astype(np.float32)
        return z


def logit_stats(a, b):
    """max/mean |a - b| and top-1 agreement of two (T, vocab) float32 arrays, by row blocks."""
    mx, tot, agree = 0.0, 0.0, 0
    for r0 in range(0, a.shape[0], 64):
        d = np.abs(a[r0:r0 + 64].astype(np.float64) - b[r0:r0 + 64])
        mx, tot = max(mx, float(d.max())), tot + float(d.sum())
        agree += int((a[r0:r0 + 64].argmax(1) == b[r0:r0 + 64].argmax(1)).sum())
    return {"max_abs_logit_diff": mx, "mean_abs_logit_diff": tot / a.size,
            "argmax_agree": agree / a.shape[0]}


# --- driver ----------------------------------------------------------------------------------

def dump_ids(tool, model, text_path, tmp):
    out = os.path.join(tmp, "ids.i32")
    p = subprocess.run([tool, model, text_path, out], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"dump_ids failed: {p.stderr.strip()}")
    info = json.loads(p.stdout)
    return np.fromfile(out, dtype="<i4").astype(np.int64), int(info["bos"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEF_MODEL)
    ap.add_argument("--text", default=cl.DEF_TEXT)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-windows", type=int, default=8)
    ap.add_argument("--lmpress", help="lmpress binary")
    ap.add_argument("--dump-ids", help="dump_ids tool (default $LMP_CACHE/tools/dump_ids)")
    ap.add_argument("--no-llama", action="store_true", help="skip llama.cpp")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy forward pass")
    args = ap.parse_args()
    if not os.path.exists(args.model):
        sys.exit(f"check_gemma3: no model at '{args.model}' (set LMP_GEMMA3_GGUF or --model)")
    res = {"model": args.model, "text": args.text, "ctx": args.ctx,
           "max_windows": args.max_windows}
    tool = args.dump_ids or os.path.join(CACHE, "tools", "dump_ids")
    with tempfile.TemporaryDirectory() as tmp:
        uni_path = os.path.join(tmp, "unicode.txt")
        with open(uni_path, "w", encoding="utf-8") as fh:
            fh.write(unicode_text())
        lm_ids = {}
        if os.access(tool, os.X_OK):
            lm_ids["text"] = dump_ids(tool, args.model, args.text, tmp)
            lm_ids["unicode"] = dump_ids(tool, args.model, uni_path, tmp)
        else:
            res["token_ids"] = f"dump_ids not built ({tool}): scripts/ref/build_dump_ids.sh"

        # lmpress eval: ppl over the windows and the first window's logits
        lm_logits = None
        if args.lmpress:
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
                              "windows": js.get("windows"), "seconds": time.perf_counter() - t0,
                              "command": " ".join(cmd[:-2])}
            lm_logits = np.fromfile(dump, dtype="<f4")

        ids0 = None
        if "text" in lm_ids:
            ids, bos = lm_ids["text"]
            ids0 = np.concatenate([[bos], ids[:args.ctx - 1]]) if bos >= 0 else ids[:args.ctx]
        if lm_logits is not None and ids0 is not None:
            lm_logits = lm_logits.reshape(args.ctx, -1)

        if not args.no_llama:
            ref = cl.LlamaRef(args)
            res["llama_cpp_python"] = ref.version
            ref_ids = ref.ids(ref.model_adds_bos)
            if "text" in lm_ids:
                ids, bos = lm_ids["text"]
                mine = np.concatenate([[bos], ids]) if ref.model_adds_bos else ids
                res["token_ids_text"] = cl.compare_ids(ref_ids, mine)
                with open(uni_path, "rb") as fh:  # bytes: text mode would turn \r\n into \n
                    uni = fh.read()
                r_uni = np.asarray(ref.llm.tokenize(uni, add_bos=False, special=False), np.int64)
                res["token_ids_unicode"] = cl.compare_ids(r_uni, lm_ids["unicode"][0])
            first, summ = ref.evaluate(ref_ids)
            res["llama_cpp"] = summ
            if "lmpress" in res:
                res["ppl_rel_diff"] = (res["lmpress"]["ppl"] - summ["ppl"]) / summ["ppl"]
            if lm_logits is not None:
                res["logits_lmpress_vs_llama_cpp"] = logit_stats(lm_logits, first)
            ref_first = first
        else:
            ref_first = None

        if not args.no_numpy and ids0 is not None:
            t0 = time.perf_counter()
            npm = NumpyGemma3(args.model)
            nl = npm.logits(ids0)
            res["numpy_seconds"] = time.perf_counter() - t0
            res["numpy_window0_nll"] = cl.window_nll(nl, ids0)
            if lm_logits is not None:
                res["lmpress_window0_nll"] = cl.window_nll(lm_logits, ids0)
                res["logits_lmpress_vs_numpy"] = logit_stats(lm_logits, nl)
            if ref_first is not None:
                res["logits_llama_cpp_vs_numpy"] = logit_stats(ref_first, nl)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
