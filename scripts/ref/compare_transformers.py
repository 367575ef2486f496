#!/usr/bin/env python3
"""Perplexity and logits of a GGUF model under Hugging Face transformers (fp32, CPU), compared
with lmpress on the same GGUF and on the HF checkpoint exported from it.

transformers loads the GGUF with from_pretrained(dir, gguf_file=...), which dequantizes every
tensor to fp32 with the gguf package, so its forward pass is an independent fp32 implementation of
the same weights. The model and its tokenizer are then saved as an HF checkpoint (config.json,
model.safetensors in fp32, tokenizer.json, ...) to --export-dir (default
~/.cache/lmpress/models/smollm2-135m-hf), which the lmpress HF reader and tokenizer.json tests use.

Protocol as in compare_llamacpp.py and `lmpress eval`: the text is tokenized once (--bos model:
BOS only if the tokenizer adds one, which SmolLM2's does not; --bos always: BOS in front, as
lmpress does), cut into floor(n/ctx) windows, each evaluated from an empty context, ppl =
exp(mean over windows of the mean NLL of ctx-1 predictions), float64 accumulation.

  ~/.cache/lmpress/venv-ref/bin/python scripts/ref/compare_transformers.py [--max-windows N]
      [--model M.gguf] [--text T] [--export-dir D] [--no-export] [--lmpress BIN | --no-lmpress]
Prints one JSON object on stdout (progress on stderr).
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_llamacpp as cl  # noqa: E402  (shared helpers: window_nll, lmpress runner)


def load(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    d, f = os.path.split(os.path.abspath(args.model))
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    cl.log(f"transformers: loaded {args.model} in {time.perf_counter() - t0:.1f} s")
    return tok, model


def export(tok, model, out_dir):
    """fp32 HF checkpoint of the dequantized model. save_pretrained refuses a model loaded from
    GGUF ("quantized with gguf"), so the state dict is written with safetensors directly (the
    tied lm_head.weight left out, as transformers does) and the config without its
    quantization_config."""
    import copy
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.dtype = "float32"
    sd = model.state_dict()
    if getattr(cfg, "tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)
    sd = {k: v.detach().contiguous().float() for k, v in sd.items()}
    tmp = os.path.join(out_dir, "model.safetensors.part")
    save_file(sd, tmp, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(out_dir, "model.safetensors"))
    cfg.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return sorted(os.listdir(out_dir))


def hf_eval(tok, model, args):
    import torch

    text = open(args.text, encoding="utf-8").read()
    ids = tok(text, add_special_tokens=(args.bos == "model"))["input_ids"]
    bos = tok.bos_token_id
    if args.bos == "always" and bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    ids = np.asarray(ids, dtype=np.int64)
    n_win = len(ids) // args.ctx
    if args.max_windows is not None:
        n_win = min(n_win, args.max_windows)
    cl.log(f"transformers: {len(ids)} tokens (first {ids[:8].tolist()}), {n_win} windows")
    nlls, first = [], None
    t_eval = 0.0
    with torch.inference_mode():
        for w in range(n_win):
            win = ids[w * args.ctx:(w + 1) * args.ctx]
            t0 = time.perf_counter()
            logits = model(torch.from_numpy(win)[None]).logits[0].float().numpy()
            t_eval += time.perf_counter() - t0
            nlls.append(cl.window_nll(logits, win))
            if w == 0:
                first = logits.copy()
            if (w + 1) % 50 == 0:
                cl.log(f"  window {w + 1}/{n_win}: running ppl {math.exp(np.mean(nlls)):.4f}")
    ppl = math.exp(float(np.mean(np.asarray(nlls, dtype=np.float64)))) if nlls else float("nan")
    return ids, first, {
        "n_tokens": int(len(ids)), "bos_policy": args.bos, "bos_id": bos,
        "bos_added": bool(len(ids) and bos is not None and ids[0] == bos),
        "vocab": int(first.shape[1]) if first is not None else None,
        "n_windows": n_win, "ppl": ppl,
        "eval_tokens_per_s": round(n_win * args.ctx / t_eval, 1) if t_eval > 0 else None,
    }


def main():
    import torch
    import transformers

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=cl.DEF_MODEL)
    ap.add_argument("--text", default=cl.DEF_TEXT)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-windows", type=int, default=None)
    ap.add_argument("--bos", choices=("model", "always", "never"), default="model")
    ap.add_argument("--export-dir", default=os.path.join(cl.CACHE, "models", "smollm2-135m-hf"))
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--dump-logits", help="write transformers' first-window logits (fp32)")
    ap.add_argument("--dump-tokens", help="write the token ids (int32 little-endian)")
    ap.add_argument("--lmpress")
    ap.add_argument("--no-lmpress", action="store_true")
    args = ap.parse_args()

    tok, model = load(args)
    result = {"model": args.model, "text": args.text, "ctx": args.ctx,
              "torch": torch.__version__, "transformers": transformers.__version__}
    if not args.no_export:
        result["export_dir"] = args.export_dir
        result["export_files"] = export(tok, model, args.export_dir)
    ids, first, s = hf_eval(tok, model, args)
    result["transformers_eval"] = s
    if args.dump_logits and first is not None:
        first.astype("<f4").tofile(args.dump_logits)
    if args.dump_tokens:
        ids.astype("<i4").tofile(args.dump_tokens)
    binary = None if args.no_lmpress else cl.find_lmpress(args.lmpress)
    if binary:
        targets = [("lmpress_gguf", args.model)]
        if not args.no_export or os.path.isdir(args.export_dir):
            targets.append(("lmpress_hf", args.export_dir))
        with tempfile.TemporaryDirectory() as tmp:
            for tag, m in targets:
                try:
                    js, logits = cl.lmpress_eval(binary, m, args, tmp, tag)
                    result[tag] = cl.compare(first, s["ppl"], s["n_tokens"], js, logits,
                                             s["vocab"], args.ctx, tag)
                except Exception as e:
                    result[tag + "_error"] = str(e)
    elif not args.no_lmpress:
        result["lmpress_error"] = "no lmpress binary found (use --lmpress)"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
