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


class HFRef:
    """transformers forward pass on id sequences; the text tokenized once by the HF tokenizer."""

    def __init__(self, tok, model, args):
        self.tok, self.model, self.args = tok, model, args
        text = open(args.text, encoding="utf-8").read()
        self.nobos = np.asarray(tok(text, add_special_tokens=False)["input_ids"], np.int64)
        with_special = tok(text[:1000], add_special_tokens=True)["input_ids"]
        self.bos = tok.bos_token_id
        self.model_adds_bos = bool(with_special) and self.bos is not None and \
            with_special[0] == self.bos
        self.cache = {}

    def ids(self, bos):
        if bos and self.bos is not None:
            return np.concatenate([[self.bos], self.nobos]).astype(np.int64)
        return self.nobos

    def policy_bos(self, policy):
        return {"model": self.model_adds_bos, "always": True, "never": False}[policy]

    def evaluate(self, bos):
        """(first-window logits, summary) for the ids with or without BOS; cached."""
        import torch

        if bos in self.cache:
            return self.cache[bos]
        a, ids = self.args, self.ids(bos)
        n_win = len(ids) // a.ctx
        if a.max_windows is not None:
            n_win = min(n_win, a.max_windows)
        cl.log(f"transformers: {len(ids)} tokens (first {ids[:6].tolist()}), {n_win} windows")
        nlls, first, t_eval = [], None, 0.0
        with torch.inference_mode():
            for w in range(n_win):
                win = ids[w * a.ctx:(w + 1) * a.ctx]
                t0 = time.perf_counter()
                logits = self.model(torch.from_numpy(win)[None]).logits[0].float().numpy()
                t_eval += time.perf_counter() - t0
                nlls.append(cl.window_nll(logits, win))
                if w == 0:
                    first = logits.copy()
                if (w + 1) % 50 == 0:
                    cl.log(f"  window {w + 1}/{n_win}: running ppl {math.exp(np.mean(nlls)):.4f}")
        ppl = math.exp(float(np.mean(np.asarray(nlls, np.float64)))) if nlls else float("nan")
        summ = {"n_tokens": int(len(ids)), "bos_added": bool(bos and self.bos is not None),
                "n_windows": n_win, "ppl": ppl,
                "eval_tokens_per_s": round(n_win * a.ctx / t_eval, 1) if t_eval > 0 else None}
        self.cache[bos] = (first, summ)
        return first, summ


def verify_export(args, win, ref_logits):
    """Reload the exported checkpoint with transformers: same logits as the GGUF-loaded model?"""
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(args.export_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = m(torch.from_numpy(win)[None]).logits[0].float().numpy()
    d = float(np.abs(logits.astype(np.float64) - ref_logits).max())
    return {"max_abs_logit_diff_vs_gguf_load": d, "ok": d < 1e-3}


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
    ap.add_argument("--dump-ids", help="dump_ids tool (default ~/.cache/lmpress/tools/dump_ids)")
    args = ap.parse_args()

    tok, model = load(args)
    result = {"model": args.model, "text": args.text, "ctx": args.ctx,
              "torch": torch.__version__, "transformers": transformers.__version__}
    if not args.no_export:
        result["export_dir"] = args.export_dir
        result["export_files"] = export(tok, model, args.export_dir)
    ref = HFRef(tok, model, args)
    want_bos = ref.policy_bos(args.bos)
    first, summ = ref.evaluate(want_bos)
    summ.update({"bos_policy": args.bos, "bos_id": ref.bos,
                 "tokenizer_adds_bos": ref.model_adds_bos})
    result["transformers_eval"] = summ
    if not args.no_export:
        result["export_check"] = verify_export(args, ref.ids(want_bos)[:args.ctx], first)
    vocab = int(first.shape[1])
    if args.dump_logits and first is not None:
        first.astype("<f4").tofile(args.dump_logits)
    if args.dump_tokens:
        ref.ids(want_bos).astype("<i4").tofile(args.dump_tokens)
    binary = None if args.no_lmpress else cl.find_lmpress(args.lmpress)
    if binary:
        targets = [("lmpress_gguf", args.model)]
        if not args.no_export or os.path.isdir(args.export_dir):
            targets.append(("lmpress_hf", args.export_dir))
        with tempfile.TemporaryDirectory() as tmp:
            for tag, m in targets:
                try:
                    js, logits = cl.lmpress_eval(binary, m, args, tmp, tag)
                    # compare with the transformers run over the same BOS choice as lmpress
                    lids = cl.lmpress_ids(args, m, tmp)
                    lm_bos = cl.lmpress_bos(js, ref.nobos, lids)
                    r_first, r_summ = ref.evaluate(lm_bos)
                    res = cl.compare(r_first, r_summ["ppl"], r_summ["n_tokens"], js, logits,
                                     vocab, args.ctx, tag)
                    res["lmpress_bos"] = lm_bos
                    res["transformers_same_bos"] = r_summ
                    if lids is not None:
                        res["token_ids_vs_hf_tokenizer"] = cl.compare_ids(
                            ref.ids(lm_bos),
                            cl.with_bos(lids[0], lids[1]) if lm_bos else lids[0])
                    result[tag] = res
                except Exception as e:
                    result[tag + "_error"] = str(e)
    elif not args.no_lmpress:
        result["lmpress_error"] = "no lmpress binary found (use --lmpress)"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
