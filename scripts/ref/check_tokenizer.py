#!/usr/bin/env python3
"""lmpress's token ids against the Hugging Face tokenizers library, text by text.

For every tokenizer at hand, `lmpress tokenize` and the reference encode the same texts
(WikiText-2 test; tests/data/multilingual.txt: CJK, Arabic, Hebrew, emoji with ZWJ sequences,
combining marks, digits of several scripts, whitespace runs, CRLF; and a seeded random text of
about 64 KB drawn from edge cases: contractions, exotic spaces such as U+180E, U+0085 and U+1C,
case-mapping oddities, digits, punctuation) and the ids are compared one by one:

  * SmolLM2 GGUF (tokenizer.ggml.pre = "smollm"): transformers converts the GGUF's vocabulary
    and merges into a tokenizer.json (AutoTokenizer.from_pretrained(dir, gguf_file=...),
    save_pretrained). transformers' converter ignores tokenizer.ggml.pre (its tokenizer.json
    has a plain ByteLevel pre_tokenizer), so the reference for the GGUF is that file with the
    pre_tokenizer SmolLM2's own tokenizer.json declares: Digits(individual_digits) then
    ByteLevel. Then tokenizer.json variants over the same real vocabulary, each run by
    lmpress (--tokenizer FILE) and by tokenizers.Tokenizer.from_file(FILE): the converted
    file as saved, the SmolLM2 form (lmpress's scanner fast path), the same forced through
    the PCRE2 path (an empty normalizer Sequence), the Llama-3 and Qwen2 split regexes, and
    normalizers/pre-tokenizers lmpress runs only through PCRE2 (NFKC, Lowercase, Replace,
    Prepend, Strip; Split behaviours, Whitespace, WhitespaceSplit, contiguous Digits,
    ByteLevel add_prefix_space).
  * stories260K (llama2.c tok512.bin): the Python port of run.c's encode() in
    tokenizer_refs.py (quadratic, so only the multilingual text and the first 4 KB of
    WikiText-2).
  * GGUF tokenizer.ggml.pre names other than smollm (llama.cpp's names lmpress maps to a
    scanner or runs as llama.cpp's regex lists through PCRE2): a copy of the SmolLM2 GGUF's
    metadata with tokenizer.ggml.pre rewritten, lmpress against llama.cpp (llama-cpp-python,
    vocab_only, tokenize(add_bos=False, special=False)) run by --llama-python (default the
    reference venv of scripts/ref/setup_ref.sh, skipped when absent).
  * the SmolLM2 and Gemma 3 GGUFs as they are, lmpress against llama.cpp the same way
    (transformers 4.x has no gemma3 GGUF converter and 5.x needs PyTorch to read any GGUF, so
    llama.cpp is Gemma's reference here).

Setup (once): python3 -m venv ~/.cache/lmpress/venv-tok &&
  ~/.cache/lmpress/venv-tok/bin/pip install tokenizers "transformers>=4.46,<4.50" gguf numpy
Run:
  ~/.cache/lmpress/venv-tok/bin/python scripts/ref/check_tokenizer.py --lmpress BUILD/cli/lmpress
      [--smollm2 GGUF] [--stories DIR] [--wikitext FILE] [--work DIR] [--llama-python PY]
Prints one line per (tokenizer, text) and a JSON summary; exit status 1 if any ids differ.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

HOME = os.path.expanduser("~")
CACHE = os.environ.get("LMP_CACHE") or os.path.join(HOME, ".cache", "lmpress")
SHARED = os.environ.get("LMP_SHARED") or os.path.join(os.path.dirname(ROOT), "shared")

LLAMA3_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}"
             "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_RE = LLAMA3_RE.replace("\\p{N}{1,3}", "\\p{N}")


def byte_level(prefix=False, regex=True):
    return {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True,
            "use_regex": regex}


def split(pattern, behavior="Isolated", invert=False, regex=True):
    return {"type": "Split", "pattern": {"Regex" if regex else "String": pattern},
            "behavior": behavior, "invert": invert}


def seq(*steps):
    return {"type": "Sequence", "pretokenizers": list(steps)}


SMOLLM_PRE = seq({"type": "Digits", "individual_digits": True}, byte_level())

# (name, normalizer, pre_tokenizer, lmpress path) over the real vocabulary; None = as saved
VARIANTS = [
    ("smollm (scanner)", None, SMOLLM_PRE, "scanner"),
    ("smollm (pcre2)", {"type": "Sequence", "normalizers": []}, SMOLLM_PRE, "pcre2"),
    ("llama3 split (scanner)", None, seq(split(LLAMA3_RE), byte_level(regex=False)), "scanner"),
    ("llama3 split (pcre2)", {"type": "Sequence", "normalizers": []},
     seq(split(LLAMA3_RE), byte_level(regex=False)), "pcre2"),
    ("qwen2 split (scanner)", None, seq(split(QWEN2_RE), byte_level(regex=False)), "scanner"),
    ("nfkc+lowercase+replace", {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Lowercase"},
        {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}]},
     SMOLLM_PRE, "pcre2"),
    ("nfc+prepend+strip", {"type": "Sequence", "normalizers": [
        {"type": "Strip", "strip_left": True, "strip_right": True}, {"type": "NFC"},
        {"type": "Prepend", "prepend": " "}]}, byte_level(), "pcre2"),
    ("nfd", {"type": "NFD"}, byte_level(), "pcre2"),
    ("punct merged-with-next + digits contiguous + prefix",
     None, seq(split("\\p{P}", "MergedWithNext"), {"type": "Digits", "individual_digits": False},
               byte_level(prefix=True)), "pcre2"),
    ("space merged-with-previous, contiguous, removed",
     None, seq(split(" ", "MergedWithPrevious", regex=False),
               split("[aeiou]", "Contiguous"), split("x", "Removed", regex=False),
               byte_level(regex=False)), "pcre2"),
    ("whitespace", None, seq({"type": "Whitespace"}, byte_level(prefix=True, regex=False)),
     "pcre2"),
    ("whitespace-split inverted", None,
     seq({"type": "WhitespaceSplit"}, split("\\p{L}+", "Isolated", invert=True),
         byte_level(regex=False)), "pcre2"),
]


def random_text(path, seed=13, size=40000):
    import random
    rng = random.Random(seed)
    pool = list("aeiouxyzAEXZ  \t\n\r0123456789'\u2019.,!?;:-_()[]{}<>\"/\\@#$%^&*+=|~`") + [
        "  ", "   ", "\n\n", "\r\n", "\u00a0", "\u3000", "\u2003", "\u0301", "\u0308", "\u00e9",
        "\u00df", "\u0130", "\u0131", "\u03a3", "\u03c2", "\u65e5\u672c", "\u4e2d\u6587",
        "\ud55c\uad6d", "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd",
        "\u041f\u0440\u0438\u0432\u0435\u0442", "\U0001F600", "\U0001F44D\U0001F3FD",
        "\U0001F469\u200d\U0001F469\u200d\U0001F467", "\U0001F1EB\U0001F1F7", "\u0663\u0664",
        "\u096a\u0968", "\u00bd", "\u00b2", "\u216b", "\ufb01", "\u2026", "\u3002", "\uff0c",
        "\u3001", "'s", "'S", "'ll", "'LL", "'re", "'ve", "'d", "'m", "'t", "\u200d", "\u200b",
        "\u180e", "\u0085", "\x0b", "\x0c", "\x1c", "\u01c4", "\u01c5", "x\u00b2", "H\u2082O",
        "\u22125", "\u1e9e", "\ufb03", "\u0345", "\u2126", "A\u030a"]
    out, n = [], 0
    while n < size:
        w = "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
        out.append(w)
        n += len(w)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(out))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def lmpress_ids(lmpress, args, text_path):
    out = subprocess.run([lmpress, "tokenize", "--json", "--text", text_path] + args,
                         check=False, capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
    return json.loads(out.stdout)["ids"], None


def compare(name, text_name, mine, ref, err, text):
    res = {"tokenizer": name, "text": text_name, "ref_tokens": len(ref)}
    if mine is None:
        res.update(identical=False, error=err)
        log("%-55s %-16s lmpress failed: %s" % (name, text_name, err))
        return res
    first = next((i for i, (a, b) in enumerate(zip(mine, ref)) if a != b), None)
    if first is None and len(mine) != len(ref):
        first = min(len(mine), len(ref))
    res.update(lmpress_tokens=len(mine), identical=first is None)
    if first is None:
        log("%-55s %-16s %8d tokens, identical" % (name, text_name, len(ref)))
    else:
        res.update(first_difference=first, lmpress_ids=mine[first:first + 8],
                   ref_ids=ref[first:first + 8],
                   n_differing=sum(a != b for a, b in zip(mine, ref)))
        log("%-55s %-16s DIFFER at token %d of %d/%d: lmpress %s, ref %s" %
            (name, text_name, first, len(mine), len(ref), mine[first:first + 8],
             ref[first:first + 8]))
    return res


# tokenizer.ggml.pre names checked against llama.cpp: PCRE2 regex lists, then scanner aliases
LLAMA_PRES = ["deepseek-coder", "deepseek-v3", "falcon", "bloom", "viking", "tekken", "gpt-4o",
              "qwen35", "dbrx", "mpt", "command-r", "stablelm2"]

LLAMA_TOKENIZE = """
import json, sys
import llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
print(json.dumps(llm.tokenize(open(sys.argv[2], "rb").read(), add_bos=False, special=False)))
"""


def gguf_with_pre(src, dst, pre):
    """A metadata-only copy of src (no tensors) with tokenizer.ggml.pre = pre."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    r = GGUFReader(src)
    w = GGUFWriter(dst, bytes(r.fields["general.architecture"].parts[-1]).decode())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        t = f.types[0]
        if k == "tokenizer.ggml.pre":
            w.add_string(k, pre)
        elif t == GGUFValueType.ARRAY and f.types[1] == GGUFValueType.STRING:
            w.add_array(k, [bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data])
        elif t == GGUFValueType.ARRAY:
            w.add_array(k, [f.parts[i][0].item() for i in f.data])
        elif t == GGUFValueType.STRING:
            w.add_string(k, bytes(f.parts[-1]).decode())
        else:
            w.add_key_value(k, f.parts[-1][0].item(), t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def convert_gguf(gguf, out_dir):
    """tokenizer.json of a GGUF through transformers' converter (no weights are read: the
    PyTorch check of load_gguf_checkpoint is skipped, return_tensors=False needs no torch)."""
    import transformers.modeling_gguf_pytorch_utils as mg
    from transformers import AutoTokenizer
    mg.is_torch_available = lambda: True
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    tok.save_pretrained(out_dir)
    return os.path.join(out_dir, "tokenizer.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lmpress", required=True)
    ap.add_argument("--smollm2", default=os.path.join(CACHE, "models",
                                                       "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--gemma3", default=os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--stories", default=os.path.join(SHARED, "models", "stories260K"))
    ap.add_argument("--wikitext", default=os.path.join(SHARED, "data", "wikitext2_test_join.txt"))
    ap.add_argument("--multilingual", default=os.path.join(ROOT, "tests", "data",
                                                           "multilingual.txt"))
    ap.add_argument("--work", default=None, help="where the tokenizer.json files go (a temp dir)")
    ap.add_argument("--llama-python", default=os.path.join(CACHE, "venv-ref", "bin", "python"),
                    help="a Python with llama-cpp-python, for the tokenizer.ggml.pre names")
    a = ap.parse_args()
    from tokenizers import Tokenizer

    work = a.work or tempfile.mkdtemp(prefix="lmp_tok_")
    os.makedirs(work, exist_ok=True)
    texts = []
    random_path = os.path.join(work, "random.txt")
    random_text(random_path)
    for name, path in (("wikitext-2", a.wikitext), ("multilingual", a.multilingual),
                       ("random", random_path)):
        if os.path.exists(path):
            with open(path, encoding="utf-8", newline="") as f:  # keep CR as it is
                texts.append((name, path, f.read()))
        else:
            log("note: %s absent (%s)" % (name, path))
    results = []

    if os.path.exists(a.smollm2):
        conv = convert_gguf(a.smollm2, os.path.join(work, "smollm2"))
        with open(conv, encoding="utf-8") as f:
            base = json.load(f)
        files = [("smollm2 tokenizer.json as converted", conv)]
        for name, norm, pre, path in VARIANTS:
            j = copy.deepcopy(base)
            j["normalizer"] = norm
            j["pre_tokenizer"] = pre
            fn = os.path.join(work, "smollm2", "variant%02d_%s.json" % (len(files), path))
            with open(fn, "w", encoding="utf-8") as f:
                json.dump(j, f, ensure_ascii=False)
            files.append(("smollm2 " + name, fn))
        smollm_json = files[1][1]
        for text_name, path, text in texts:
            ref = Tokenizer.from_file(smollm_json).encode(text, add_special_tokens=False).ids
            mine, err = lmpress_ids(a.lmpress, ["--model", a.smollm2], path)
            results.append(compare("smollm2 GGUF (scanner smollm)", text_name, mine, ref, err,
                                   text))
            for name, fn in files:
                ref = Tokenizer.from_file(fn).encode(text, add_special_tokens=False).ids
                mine, err = lmpress_ids(a.lmpress, ["--tokenizer", fn], path)
                results.append(compare(name, text_name, mine, ref, err, text))
    else:
        log("note: SmolLM2 GGUF absent (%s)" % a.smollm2)

    if os.path.exists(a.smollm2) and os.path.exists(a.llama_python):
        script = os.path.join(work, "llama_tokenize.py")
        with open(script, "w") as f:
            f.write(LLAMA_TOKENIZE)
        ggufs = [("smollm2 GGUF", a.smollm2), ("gemma3 GGUF", a.gemma3)]
        for pre in LLAMA_PRES:
            g = os.path.join(work, "pre_%s.gguf" % pre)
            gguf_with_pre(a.smollm2, g, pre)
            ggufs.append(("GGUF pre %s" % pre, g))
        for name, g in ggufs:
            if not os.path.exists(g):
                log("note: %s absent (%s)" % (name, g))
                continue
            for text_name, path, text in texts:
                out = subprocess.run([a.llama_python, script, g, path], capture_output=True,
                                     text=True, check=True)
                ref = json.loads(out.stdout)
                mine, err = lmpress_ids(a.lmpress, ["--model", g], path)
                results.append(compare(name + " vs llama.cpp", text_name, mine, ref, err, text))
    else:
        log("note: no llama-cpp-python (%s): tokenizer.ggml.pre names not checked"
            % a.llama_python)

    tok512 = os.path.join(a.stories, "tok512.bin")
    if os.path.exists(tok512):
        import tokenizer_refs as tr
        vocab, scores = tr.load_llama2c(tok512, 512)
        for text_name, path, text in texts:
            raw = text.encode("utf-8")
            if len(raw) > 8192:  # run.c's merge loop is quadratic in Python
                raw = raw[:4096]
                while raw and (raw[-1] & 0xC0) == 0x80:
                    raw = raw[:-1]
                raw = raw[:-1] if raw and raw[-1] >= 0xC0 else raw
                text_name += " (4 KB)"
                path = os.path.join(work, "head.txt")
                with open(path, "wb") as f:
                    f.write(raw)
            ref = tr.llama2c_encode(vocab, scores, raw, True)
            mine, err = lmpress_ids(a.lmpress, ["--model", os.path.join(a.stories,
                                                                        "stories260K.bin"),
                                                "--tokenizer", tok512, "--bos"], path)
            results.append(compare("stories260K tok512.bin (run.c port)", text_name, mine, ref,
                                   err, raw))
    else:
        log("note: stories260K absent (%s)" % a.stories)

    n_bad = sum(not r["identical"] for r in results)
    print(json.dumps({"work": work, "n_checks": len(results), "n_differing": n_bad,
                      "results": results}, indent=1))
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
