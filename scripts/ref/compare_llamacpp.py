#!/usr/bin/env python3
"""Perplexity and logits of a GGUF model under llama.cpp (llama-cpp-python), compared with lmpress.

Protocol (the one `lmpress eval` uses):
  * the whole text is tokenized once. --bos model (default): BOS in front only when the model's
    tokenizer adds one: llama.cpp's tokenize(add_bos=True) adds BOS exactly when the GGUF key
    tokenizer.ggml.add_bos_token is true (or absent for SentencePiece vocabularies); it is false
    in SmolLM2's GGUF, as in its HF tokenizer, so no BOS there. --bos always: BOS in front whenever
    the vocabulary has one, which is what `lmpress eval` does; --bos never: no BOS.
    Special-token text in the input is not parsed as special.
  * the ids are cut into floor(n / ctx) windows of ctx tokens (the tail is dropped); each window is
    evaluated from an empty context with logits at every position;
  * NLL of the ctx-1 next-token predictions of a window is its mean; ppl = exp(mean over windows),
    everything accumulated in float64 (log-softmax of the fp32 logits in float64).

Run with the reference venv (scripts/ref/setup_ref.sh):
  ~/.cache/lmpress/venv-ref/bin/python scripts/ref/compare_llamacpp.py [--max-windows N]
      [--model M.gguf] [--text T.txt] [--lmpress BIN | --no-lmpress] [--dump-logits F]
Prints one JSON object on stdout (progress on stderr).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

CACHE = os.environ.get("LMP_CACHE", os.path.expanduser("~/.cache/lmpress"))
DEF_MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("LMP_SHARED", os.path.join(REPO, "..", "shared"))
DEF_TEXT = os.path.join(SHARED, "data", "wikitext2_test_join.txt")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def window_nll(logits, ids):
    """Mean NLL (float64) of predicting ids[1:] from logits[:-1] (shape ctx x vocab, fp32)."""
    x = logits[:-1].astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    tgt = x[np.arange(x.shape[0]), ids[1:]]
    return float(np.mean(lse - tgt))


def gguf_add_bos(path):
    """tokenizer.ggml.add_bos_token of the GGUF (None if absent), read with the gguf package."""
    try:
        import gguf
    except ImportError:
        return None
    try:
        r = gguf.GGUFReader(path)
    except ValueError:  # e.g. a tensor type newer than the gguf package (Q2_0 = 42)
        return None
    f = r.fields.get("tokenizer.ggml.add_bos_token")
    if f is None:
        return None
    return bool(f.parts[f.data[0]][0])


class LlamaRef:
    """llama.cpp through llama-cpp-python: tokenizes the text once, evaluates id sequences."""

    def __init__(self, args):
        from llama_cpp import Llama
        import llama_cpp

        self.args = args
        self.version = llama_cpp.__version__
        self.llm = Llama(model_path=args.model, n_ctx=args.ctx, n_batch=args.ctx,
                         n_ubatch=args.ctx, n_threads=args.threads,
                         n_threads_batch=args.threads, logits_all=True, verbose=False)
        text = open(args.text, encoding="utf-8").read().encode("utf-8")
        t0 = time.perf_counter()
        # add_bos=True means "add the model's special prefix": llama.cpp adds BOS only if the
        # vocab says so (llama_vocab_get_add_bos), i.e. the GGUF's tokenizer.ggml.add_bos_token.
        with_prefix = self.llm.tokenize(text, add_bos=True, special=False)
        self.tokenize_s = time.perf_counter() - t0
        self.nobos = np.asarray(self.llm.tokenize(text, add_bos=False, special=False), np.int64)
        self.bos = int(self.llm.token_bos())
        self.vocab = int(self.llm.n_vocab())
        self.model_adds_bos = len(with_prefix) == len(self.nobos) + 1

    def ids(self, bos):
        """The text's ids with BOS in front (bos True, where the vocabulary has one) or not."""
        if bos and self.bos >= 0:
            return np.concatenate([[self.bos], self.nobos]).astype(np.int64)
        return self.nobos

    def policy_bos(self, policy):
        return {"model": self.model_adds_bos, "always": True, "never": False}[policy]

    def evaluate(self, ids):
        a = self.args
        n_win = len(ids) // a.ctx
        if a.max_windows is not None:
            n_win = min(n_win, a.max_windows)
        log(f"llama.cpp: {len(ids)} tokens (first {ids[:6].tolist()}), {n_win} windows of {a.ctx}")
        nlls, first, t_eval = [], None, 0.0
        for w in range(n_win):
            win = ids[w * a.ctx:(w + 1) * a.ctx]
            self.llm.reset()  # n_tokens = 0: eval() then clears the KV cache from position 0
            t0 = time.perf_counter()
            self.llm.eval(win.tolist())
            t_eval += time.perf_counter() - t0
            logits = np.array(self.llm.scores[:a.ctx], dtype=np.float32, copy=True)
            nlls.append(window_nll(logits, win))
            if w == 0:
                first = logits
            if (w + 1) % 50 == 0:
                log(f"  window {w + 1}/{n_win}: running ppl {math.exp(np.mean(nlls)):.4f}")
        ppl = math.exp(float(np.mean(np.asarray(nlls, np.float64)))) if nlls else float("nan")
        return first, {
            "n_tokens": int(len(ids)), "bos_added": bool(len(ids) and ids[0] == self.bos),
            "n_windows": n_win, "ppl": ppl,
            "eval_tokens_per_s": round(n_win * a.ctx / t_eval, 1) if t_eval > 0 else None,
        }


def compare_ids(ref, other):
    """Equality of two id sequences; where they differ, the first position and a count."""
    res = {"ids_equal": bool(len(ref) == len(other) and np.array_equal(ref, other)),
           "n_ref": int(len(ref)), "n_other": int(len(other))}
    if not res["ids_equal"]:
        n = min(len(ref), len(other))
        neq = np.nonzero(ref[:n] != other[:n])[0]
        res["first_diff"] = int(neq[0]) if len(neq) else n
    return res


def lmpress_ids(args, model, tmpdir):
    """(ids without BOS, BOS id or -1) from lmpress's tokenizer via the dump_ids tool
    (scripts/ref/build_dump_ids.sh); None if the tool is not built."""
    tool = args.dump_ids or os.path.join(CACHE, "tools", "dump_ids")
    if not os.access(tool, os.X_OK):
        return None
    out = os.path.join(tmpdir, "lmpress-ids.i32")
    p = subprocess.run([tool, model, args.text, out], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"dump_ids failed: {p.stderr.strip()}")
    info = json.loads(p.stdout)
    return np.fromfile(out, dtype="<i4").astype(np.int64), int(info["bos"])


def lmpress_bos(js, ref_nobos, lids):
    """Did `lmpress eval` put BOS first? From its text_tokens against lmpress's own count without
    BOS (dump_ids) where available, else against the reference's count."""
    ntext = pick(js, "text_tokens", "n_tokens")
    base = len(lids[0]) if lids is not None else len(ref_nobos)
    return ntext == base + 1


def with_bos(ids, bos):
    return np.concatenate([[bos], ids]).astype(np.int64)


def find_lmpress(arg):
    if arg:
        return arg
    for p in (os.path.join(REPO, "build-ref", "coordinator", "lmpress"),
              os.path.join(REPO, "build-fwd", "coordinator", "lmpress"),
              os.path.join(REPO, "build", "coordinator", "lmpress")):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("lmpress")


def lmpress_eval(binary, model, args, tmpdir, tag):
    """Runs `lmpress eval --json --dump-logits`; returns (json dict, first-window logits or None)."""
    dump = os.path.join(tmpdir, f"lmpress-{tag}.f32")
    cmd = [binary, "eval", "--model", model, "--text", args.text, "--ctx", str(args.ctx),
           "--threads", str(args.threads), "--json", "--dump-logits", dump]
    if args.max_windows is not None:
        cmd += ["--max-windows", str(args.max_windows)]
    log("running: " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"lmpress eval failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    out = p.stdout.strip()
    js = json.loads(out[out.index("{"):])
    logits = None
    if os.path.exists(dump) and os.path.getsize(dump) > 0:
        logits = np.fromfile(dump, dtype="<f4")
    return js, logits


def pick(js, *keys):
    for k in keys:
        if k in js:
            return js[k]
    return None


def compare(ref_logits, ref_ppl, ref_ntok, js, logits, vocab, ctx, tag):
    ppl = pick(js, "ppl", "perplexity")
    ntok = pick(js, "text_tokens", "n_tokens")
    res = {f"{tag}_json": js, f"{tag}_ppl": ppl, f"{tag}_n_tokens": ntok,
           "token_count_equal": (ntok == ref_ntok) if ntok is not None else None}
    if ppl is not None and ref_ppl:
        res["ppl_rel_diff"] = (ppl - ref_ppl) / ref_ppl
        res["ppl_within_0.5pct"] = abs(res["ppl_rel_diff"]) <= 0.005
    if logits is not None and ref_logits is not None:
        if logits.size != ctx * vocab:
            res["logits_error"] = f"dump has {logits.size} floats, expected {ctx}x{vocab}"
        else:
            d = np.abs(logits.reshape(ctx, vocab).astype(np.float64) - ref_logits)
            res["max_abs_logit_diff"] = float(d.max())
            res["mean_abs_logit_diff"] = float(d.mean())
            res["argmax_agree"] = float(np.mean(logits.reshape(ctx, vocab).argmax(1)
                                                == ref_logits.argmax(1)))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEF_MODEL)
    ap.add_argument("--text", default=DEF_TEXT)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-windows", type=int, default=None)
    ap.add_argument("--bos", choices=("model", "always", "never"), default="model",
                    help="BOS policy of the llama.cpp side (see the module doc)")
    ap.add_argument("--dump-logits", help="write llama.cpp's first-window logits (fp32, ctx x vocab)")
    ap.add_argument("--dump-tokens", help="write llama.cpp's token ids (int32 little-endian)")
    ap.add_argument("--lmpress", help="lmpress binary (default: build-ref, build-fwd, build, PATH)")
    ap.add_argument("--no-lmpress", action="store_true", help="run llama.cpp only")
    ap.add_argument("--dump-ids", help="dump_ids tool (default ~/.cache/lmpress/tools/dump_ids)")
    args = ap.parse_args()

    ref = LlamaRef(args)
    want_bos = ref.policy_bos(args.bos)
    first, summ = ref.evaluate(ref.ids(want_bos))
    summ.update({"llama_cpp_python": ref.version, "bos_policy": args.bos, "bos_id": ref.bos,
                 "vocab": ref.vocab, "tokenize_s": round(ref.tokenize_s, 3),
                 "add_bos_token_in_gguf": gguf_add_bos(args.model),
                 "llama_cpp_tokenize_add_bos_adds_bos": ref.model_adds_bos})
    if args.dump_logits and first is not None:
        first.astype("<f4").tofile(args.dump_logits)
    if args.dump_tokens:
        ref.ids(want_bos).astype("<i4").tofile(args.dump_tokens)
    result = {"model": args.model, "text": args.text, "ctx": args.ctx, "llama_cpp": summ}
    binary = None if args.no_lmpress else find_lmpress(args.lmpress)
    if binary:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                js, logits = lmpress_eval(binary, args.model, args, tmp, "gguf")
                # lmpress eval puts BOS first whenever the vocabulary has one; compare with the
                # llama.cpp run over the same BOS choice (re-evaluated if --bos differs).
                lids = lmpress_ids(args, args.model, tmp)
                lm_bos = lmpress_bos(js, ref.nobos, lids)
                r_first, r_summ = first, summ
                if lm_bos != want_bos:
                    r_first, r_summ = ref.evaluate(ref.ids(lm_bos))
                res = compare(r_first, r_summ["ppl"], r_summ["n_tokens"], js, logits, ref.vocab,
                              args.ctx, "lmpress")
                res["lmpress_bos"] = lm_bos
                res["llama_cpp_same_bos"] = r_summ
                if lids is not None:
                    res["token_ids"] = compare_ids(
                        ref.ids(lm_bos), with_bos(lids[0], lids[1]) if lm_bos else lids[0])
                result["lmpress"] = res
            except Exception as e:  # report, do not hide the reference numbers
                result["lmpress_error"] = str(e)
    elif not args.no_lmpress:
        result["lmpress_error"] = "no lmpress binary found (use --lmpress)"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
