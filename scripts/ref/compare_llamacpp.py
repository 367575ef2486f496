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
DEF_TEXT = "/work/shared/data/wikitext2_test_join.txt"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


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
    r = gguf.GGUFReader(path)
    f = r.fields.get("tokenizer.ggml.add_bos_token")
    if f is None:
        return None
    return bool(f.parts[f.data[0]][0])


def llama_eval(args):
    from llama_cpp import Llama
    import llama_cpp

    text = open(args.text, encoding="utf-8").read()
    llm = Llama(model_path=args.model, n_ctx=args.ctx, n_batch=args.ctx, n_ubatch=args.ctx,
                n_threads=args.threads, n_threads_batch=args.threads, logits_all=True,
                verbose=False)
    # add_bos=True means "add the model's special prefix": llama.cpp adds BOS only if the vocab
    # says so (llama_vocab_get_add_bos), so this follows the GGUF's tokenizer.ggml.add_bos_token.
    t0 = time.perf_counter()
    ids = llm.tokenize(text.encode("utf-8"), add_bos=(args.bos == "model"), special=False)
    t_tok = time.perf_counter() - t0
    vocab = llm.n_vocab()
    bos = llm.token_bos()
    if args.bos == "always" and bos >= 0 and (not ids or ids[0] != bos):
        ids = [bos] + ids
    ids = np.asarray(ids, dtype=np.int64)
    n_win = len(ids) // args.ctx
    if args.max_windows is not None:
        n_win = min(n_win, args.max_windows)
    log(f"llama.cpp: {len(ids)} tokens (first {ids[:8].tolist()}), {n_win} windows of {args.ctx}")
    nlls = []
    first_logits = None
    t_eval = 0.0
    for w in range(n_win):
        win = ids[w * args.ctx:(w + 1) * args.ctx]
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(win.tolist())
        t_eval += time.perf_counter() - t0
        logits = np.array(llm.scores[:args.ctx], dtype=np.float32, copy=True)
        nlls.append(window_nll(logits, win))
        if w == 0:
            first_logits = logits
        if (w + 1) % 50 == 0:
            log(f"  window {w + 1}/{n_win}: running ppl {math.exp(np.mean(nlls)):.4f}")
    ppl = math.exp(float(np.mean(np.asarray(nlls, dtype=np.float64)))) if nlls else float("nan")
    if args.dump_logits and first_logits is not None:
        first_logits.astype("<f4").tofile(args.dump_logits)
    if args.dump_tokens:
        ids.astype("<i4").tofile(args.dump_tokens)
    return {
        "ids": ids, "first_logits": first_logits, "nlls": nlls,
        "summary": {
            "llama_cpp_python": llama_cpp.__version__,
            "n_tokens": int(len(ids)), "bos_added": bool(len(ids) and ids[0] == bos),
            "bos_policy": args.bos, "bos_id": int(bos), "vocab": int(vocab), "n_windows": n_win,
            "ppl": ppl, "tokenize_s": round(t_tok, 3),
            "eval_tokens_per_s": round(n_win * args.ctx / t_eval, 1) if t_eval > 0 else None,
        },
    }


def find_lmpress(arg):
    if arg:
        return arg
    for p in (os.path.join(REPO, "build-fwd", "coordinator", "lmpress"),
              os.path.join(REPO, "build-ref", "coordinator", "lmpress"),
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
    ap.add_argument("--lmpress", help="lmpress binary (default: build-fwd, build-ref, build, PATH)")
    ap.add_argument("--no-lmpress", action="store_true", help="run llama.cpp only")
    args = ap.parse_args()

    ref = llama_eval(args)
    s = ref["summary"]
    s["add_bos_token_in_gguf"] = gguf_add_bos(args.model)
    result = {"model": args.model, "text": args.text, "ctx": args.ctx, "llama_cpp": s}
    binary = None if args.no_lmpress else find_lmpress(args.lmpress)
    if binary:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                js, logits = lmpress_eval(binary, args.model, args, tmp, "gguf")
                result["lmpress"] = compare(ref["first_logits"], s["ppl"], s["n_tokens"], js,
                                            logits, s["vocab"], args.ctx, "lmpress")
            except Exception as e:  # report, do not hide the reference numbers
                result["lmpress_error"] = str(e)
    elif not args.no_lmpress:
        result["lmpress_error"] = "no lmpress binary found (use --lmpress)"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
