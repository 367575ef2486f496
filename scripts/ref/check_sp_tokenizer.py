#!/usr/bin/env python3
"""SentencePiece vocabularies in tokenizer.json (Llama-2, Mistral, Gemma form): lmpress's ids
against the Hugging Face tokenizers library.

No such model can be downloaded here, so the vocabulary is made the way theirs were: a
SentencePiece BPE model (byte_fallback, split digits, whitespace kept as it is) trained with
the sentencepiece package on the first 600 KB of WikiText-2 plus tests/data/multilingual.txt,
converted by transformers' LlamaTokenizerFast (the converter that wrote those models'
tokenizer.json) into four files:
  * legacy_p:    normalizer Prepend(U+2581) + Replace(' ', U+2581), no pre_tokenizer,
                 decoder ... Strip(1)                                   (Llama-2)
  * metaspace_p: pre_tokenizer Metaspace(prepend_scheme "first", split false)  (Mistral v0.3)
  * legacy, metaspace: the same without the dummy prefix (add_prefix_space=False; Gemma-like)
and one variant written here, metaspace_split: Metaspace(prepend_scheme "always", split true).
Each is run by `lmpress tokenize --tokenizer FILE` and by tokenizers.Tokenizer.from_file(FILE)
(no special tokens added) on WikiText-2 test, tests/data/multilingual.txt and a seeded random
text of edge cases (runs of spaces, tabs, newlines, characters outside the vocabulary, <s>
written in the text: text, not the control token, for both sides: lmpress matches only
user-defined added tokens in text, as llama.cpp does, and the reference runs with
encode_special_tokens); the ids are compared one by one. Decoding is checked by
tests/unit/test_tokenizer.c.

Setup (once): the venv of scripts/ref/check_tokenizer.py plus `pip install sentencepiece protobuf`.
Run: ~/.cache/lmpress/venv-tok/bin/python scripts/ref/check_sp_tokenizer.py --lmpress BUILD/cli/lmpress
Exit status 1 if any ids differ.
"""
import argparse
import json
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def lmpress_ids(lmpress, tok, text_file):
    out = subprocess.run([lmpress, "tokenize", "--tokenizer", tok, "--text", text_file],
                         check=True, capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmpress", required=True)
    shared = os.environ.get("LMP_SHARED", os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--wikitext", default=os.path.join(shared, "data", "wikitext2_test_join.txt"))
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/lmpress/gen/sp-tokenizer"))
    a = ap.parse_args()
    import sentencepiece as spm
    from tokenizers import Tokenizer
    from transformers import LlamaTokenizerFast

    os.makedirs(a.work, exist_ok=True)
    multi = os.path.join(ROOT, "tests", "data", "multilingual.txt")
    model = os.path.join(a.work, "sp.model")
    if not os.path.exists(model):
        train = os.path.join(a.work, "train.txt")
        with open(train, "wb") as f:
            f.write(open(a.wikitext, "rb").read()[:600000])
            f.write(open(multi, "rb").read())
        spm.SentencePieceTrainer.train(
            input=train, model_prefix=model[:-6], vocab_size=3000, model_type="bpe",
            byte_fallback=True, character_coverage=0.9995, split_digits=True,
            allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
            normalization_rule_name="identity", minloglevel=2)
    files = {}
    for legacy in (True, False):
        for prefix in (True, False):
            name = ("legacy" if legacy else "metaspace") + ("_p" if prefix else "")
            d = os.path.join(a.work, name)
            LlamaTokenizerFast(vocab_file=model, legacy=legacy, from_slow=True,
                               add_prefix_space=prefix).save_pretrained(d)
            files[name] = os.path.join(d, "tokenizer.json")
    j = json.load(open(files["metaspace_p"]))
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "always", "split": True}
    files["metaspace_split"] = os.path.join(a.work, "metaspace_split.json")
    json.dump(j, open(files["metaspace_split"], "w"), ensure_ascii=False)

    rnd = random.Random(7)
    parts = ["  ", "\t", "\n", " \n ", "word", "Word", "1234", "\u2581", "<s>", "</s>", "x",
             "\u00e9", "\u65e5\u672c", "\U0001F600", "\u0300", "\u00a0", "\u3000", "'s", "--"]
    edge = "".join(rnd.choice(parts) for _ in range(20000))
    edge_file = os.path.join(a.work, "edge.txt")
    open(edge_file, "w", encoding="utf-8", newline="").write(edge)
    texts = {"wikitext2": a.wikitext, "multilingual": multi, "edge": edge_file}
    bad = 0
    summary = {}
    for name, tj in files.items():
        ref = Tokenizer.from_file(tj)
        ref.encode_special_tokens = True  # "<s>" in the text is text, as lmpress reads it
        for tname, tf in texts.items():
            want = ref.encode(open(tf, encoding="utf-8", newline="").read(),
                             add_special_tokens=False).ids
            got = lmpress_ids(a.lmpress, tj, tf)
            first = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y),
                         None if len(got) == len(want) else min(len(got), len(want)))
            ok = first is None
            bad += not ok
            summary[f"{name}/{tname}"] = {"tokens": len(want), "lmpress": len(got),
                                          "identical": ok, "first_difference": first}
            print(f"{name:16s} {tname:13s} {len(want):7d} tokens  "
                  f"{'identical' if ok else f'DIFFER at {first}'}")
    print(json.dumps(summary))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
