#!/usr/bin/env python3
"""check_hf_export - load an `lmpress export --format hf-aqlm` directory with transformers + aqlm
on the CPU and compare it with lmpress on the same artifact.

    python check_hf_export.py --hf DIR --artifact ART.h5 --text FILE [--ctx N]
                              [--max-windows K] [--lmpress BIN] [--prompt TEXT] [-n N]
                              [--source MODEL] [--threads T]

Needs torch, transformers and aqlm[cpu] (pip install torch transformers 'aqlm[cpu]', or
scripts/ref/setup_ref.sh --with-aqlm).

What it reports (one JSON object on stdout, details on stderr):
  - tokens: the text tokenized by the exported tokenizer.json (BOS first where the tokenizer
    adds one) against the count `lmpress eval --json` reports (text_tokens); with --source
    MODEL (the checkpoint the artifact was compressed from) also every id against
    `lmpress tokenize --model MODEL --bos` (what eval and generate encode with);
  - ppl: perplexity with the GPTQ/AQLM protocol of `lmpress eval` (model/eval.h): floor(n/ctx)
    non-overlapping windows of ctx tokens, each from an empty context, ppl = exp(mean over
    windows of the mean NLL of the window's ctx-1 predictions), beside lmpress's ppl on the
    same text and ctx (`lmpress eval --artifact ART.h5`);
  - top1: the fraction of positions of the first window whose argmax agrees with lmpress's
    (`lmpress eval --dump-logits`), and the largest absolute logit difference;
  - generation: greedy continuation of --prompt as text by transformers and by
    `lmpress generate --raw`, and whether they are the same text; where the exported tokenizer
    has a ChatML chat template (<|im_start|>), also the greedy answer to --prompt as one user
    turn (`lmpress generate` without --raw; transformers: apply_chat_template with the
    generation prompt, the template's default system turn included) from both.
Exit status 1 when the token counts (or, with --source, the ids) differ, the perplexities
differ by more than --ppl-tol (relative, default 0.005), or top-1 agreement is under
--top1-min (default 0.99). transformers runs the float16 export, lmpress the float32
artifact: the rounding of codebooks, scales and embeddings to float16 is what separates them.
Greedy continuations are reported, not required to match (a near tie can flip a token).
"""
import argparse
import json
import math
import struct
import subprocess
import sys
import tempfile
import os


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", required=True, help="the exported directory")
    ap.add_argument("--artifact", required=True, help="the artifact it was exported from")
    ap.add_argument("--text", required=True)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--max-windows", type=int, default=0, help="0: all")
    ap.add_argument("--lmpress", default=os.environ.get("LMPRESS", "lmpress"))
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("-n", type=int, default=32, help="tokens to generate")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ppl-tol", type=float, default=0.005)
    ap.add_argument("--top1-min", type=float, default=0.99)
    ap.add_argument("--source", help="the checkpoint ART.h5 was compressed from: compare every "
                    "token id with `lmpress tokenize --model SOURCE`")
    ap.add_argument("--numba-threads", type=int, default=1,
                    help="threads of aqlm's CPU kernel for 8-bit codebooks (default 1: see below)")
    a = ap.parse_args()

    # aqlm 1.1.7's CPU kernel for 2^8-entry codebooks (numba_kernel.py) runs a numba prange over
    # the input groups and adds into the shared output row: a data race, so with more than one
    # numba thread its results vary from run to run (measured here: up to 0.5 off on a layer
    # whose outputs are ~1.5). One thread gives the exact sum. Set before numba is imported.
    os.environ.setdefault("NUMBA_NUM_THREADS", str(a.numba_threads))

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if a.threads:
        torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(a.hf)
    model = AutoModelForCausalLM.from_pretrained(a.hf, dtype=torch.float32, device_map="cpu")
    model.eval()
    kinds = sorted({type(m).__module__ + "." + type(m).__name__ for m in model.modules()
                    if type(m).__name__ == "QuantizedLinear"})
    print(f"transformers {transformers.__version__}, quantized modules: {kinds}", file=sys.stderr)

    text = open(a.text, encoding="utf-8").read()
    ids = tok(text, add_special_tokens=True).input_ids
    n_win = len(ids) // a.ctx
    if a.max_windows > 0:
        n_win = min(n_win, a.max_windows)

    # lmpress on the artifact: ppl, text tokens, logits of the first window
    with tempfile.TemporaryDirectory() as td:
        dump = os.path.join(td, "logits.bin")
        cmd = [a.lmpress, "eval", "--artifact", a.artifact, "--text", a.text, "--ctx", str(a.ctx),
               "--json", "--dump-logits", dump]
        if a.max_windows > 0:
            cmd += ["--max-windows", str(a.max_windows)]
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        lm = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        raw = open(dump, "rb").read()
    vocab = model.config.vocab_size
    lm_logits = torch.tensor(struct.unpack(f"<{len(raw) // 4}f", raw)).view(-1, vocab)

    nll_sum = 0.0
    first = None
    with torch.no_grad():
        for w in range(n_win):
            x = torch.tensor([ids[w * a.ctx:(w + 1) * a.ctx]])
            logits = model(x).logits[0].float()
            if w == 0:
                first = logits
            nll = torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:], reduction="mean")
            nll_sum += float(nll)
    ppl = math.exp(nll_sum / n_win) if n_win else float("nan")

    agree = float((first.argmax(-1) == lm_logits.argmax(-1)).float().mean())
    max_diff = float((first - lm_logits).abs().max())

    def lmpress_generate(raw):
        cmd = [a.lmpress, "generate", "--artifact", a.artifact, "--prompt", a.prompt,
               "-n", str(a.n), "--temperature", "0"] + (["--raw"] if raw else [])
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        return subprocess.run(cmd, check=True, capture_output=True, encoding="utf-8",
                              errors="replace").stdout

    def hf_generate(x, stop):
        with torch.no_grad():
            out = model.generate(torch.tensor([x]), max_new_tokens=a.n, do_sample=False,
                                 eos_token_id=stop or None)
        return out[0, len(x):].tolist()

    # the prompt continued as text; lmpress prints the prompt, then the continuation
    p = tok(a.prompt, add_special_tokens=True).input_ids
    stop = [t for t in (tok.bos_token_id, tok.eos_token_id) if t is not None]
    hf_text = a.prompt + tok.decode(hf_generate(p, stop), skip_special_tokens=True)
    lm_text = lmpress_generate(True).removesuffix("\n")

    res = {"hf": a.hf, "artifact": a.artifact, "ctx": a.ctx, "windows": n_win,
           "tokens": len(ids), "lmpress_text_tokens": lm.get("text_tokens")}
    ids_ok = True
    if a.source:
        out = subprocess.run([a.lmpress, "tokenize", "--model", a.source, "--text", a.text,
                              "--bos", "--json"], check=True, capture_output=True, text=True)
        lm_ids = json.loads(out.stdout)["ids"]
        ids_ok = lm_ids == ids
        at = next((i for i, (u, v) in enumerate(zip(ids, lm_ids)) if u != v),
                  None if ids_ok else min(len(ids), len(lm_ids)))
        res["token_ids_equal"] = ids_ok
        if not ids_ok:
            res["token_ids_first_difference"] = at
    res.update({"ppl": ppl, "lmpress_ppl": lm.get("ppl"),
                "ppl_rel_diff": abs(ppl - lm["ppl"]) / lm["ppl"],
                "top1_first_window": agree, "max_abs_logit_diff_first_window": max_diff,
                "generation_hf": hf_text, "generation_lmpress": lm_text,
                "generation_identical": hf_text == lm_text})

    # the prompt as a ChatML user turn, as `lmpress generate` does for such a model
    vocab_ids = tok.get_vocab()
    if ("<|im_start|>" in (tok.chat_template or "") and "<|im_start|>" in vocab_ids
            and "<|im_end|>" in vocab_ids):
        # the template's own rendering: its default system turn included, as lmpress's
        turn = tok.apply_chat_template([{"role": "user", "content": a.prompt}],
                                       add_generation_prompt=True, tokenize=False)
        x = tok(turn, add_special_tokens=False).input_ids
        ans = hf_generate(x, stop + [vocab_ids["<|im_end|>"]])
        hf_chat = tok.decode(ans, skip_special_tokens=True)
        lm_chat = lmpress_generate(False).removeprefix(a.prompt + "\n").removesuffix("\n")
        res.update({"chat_hf": hf_chat, "chat_lmpress": lm_chat,
                    "chat_identical": hf_chat == lm_chat})

    print(json.dumps(res, indent=1))
    ok = (len(ids) == lm.get("text_tokens") and ids_ok and res["ppl_rel_diff"] <= a.ppl_tol
          and agree >= a.top1_min)
    if not ok:
        print("check_hf_export: FAILED (tokens, ppl or top-1 outside the tolerances)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
