#!/usr/bin/env python3
"""Reference token ids for tests/unit/test_tokenizer.c.

Prints, for every test string, the ids produced by implementations independent of
lmpress, as C initialisers ready to paste into the test:
  - llama2.c tok512.bin: a direct Python port of run.c's encode() (quadratic merge
    loop, bsearch-free dict lookup), over raw bytes (the text may contain NUL);
  - SmolLM2 GGUF: llama.cpp through llama-cpp-python (Llama.tokenize(text,
    add_bos=False, special=False), vocab_only) when importable, otherwise the
    Hugging Face tokenizer converted from the same GGUF by transformers;
    plus the token count of the whole WikiText-2 test text.

Usage:
  python3 scripts/ref/tokenizer_refs.py [--shared ../shared]
      [--gguf ~/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf]
      [--hf-out ~/.cache/lmpress/models/smollm2-135m-hf]
A venv with llama-cpp-python (~/.cache/lmpress/venv-ref) or transformers+gguf
(~/.cache/lmpress/venv-tok) is needed for the GGUF part; the llama2.c part needs
only the standard library.
"""
import argparse
import os
import struct
import sys

# The test strings, as bytes (invalid UTF-8 and NUL included on purpose).
STRINGS = [
    b"",
    b"Hello world",
    b"  leading and trailing  ",
    b"12345",
    b"a   b\n\n\tc",
    b"don't I'll we're THEY'VE",
    "h\u00e9llo w\u00f6rld caf\u00e9".encode(),
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587".encode(),
    "emoji \U0001F999\U0001F680 ok \u2764\ufe0f".encode(),
    b"nul \x00 byte",
    b"bad \xff\xfe utf8 \xc3",
    b"Once upon a time, there was a little girl named Lily. She liked 3 cats.",
    b"x = f(a[1], b{2});  // 100% $5.00 #tag @user",
]
VALID_UTF8 = [s for s in STRINGS if b"\xff" not in s]


def load_llama2c(path, vocab_size):
    with open(path, "rb") as f:
        data = f.read()
    pos = 4
    vocab, scores = [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        vocab.append(data[pos:pos + n])
        scores.append(score)
        pos += n
    return vocab, scores


def llama2c_encode(vocab, scores, text, bos):
    """run.c encode(): BOS, dummy prefix, per-UTF-8-char lookup with byte fallback,
    then merge the best-scoring adjacent pair until none is left."""
    index = {}
    for i, v in enumerate(vocab):
        index[v] = i          # last duplicate wins (lmpress and llama.cpp convention)
    tokens = []
    if bos:
        tokens.append(1)
    if len(text) > 0:
        tokens.append(index[b" "])
    buf = b""
    for i, c in enumerate(text):
        if (c & 0xC0) != 0x80:
            buf = b""
        buf += bytes([c])
        nxt = text[i + 1] if i + 1 < len(text) else 0
        if (nxt & 0xC0) == 0x80 and len(buf) < 4:
            continue
        if buf in index:
            tokens.append(index[buf])
        else:
            tokens.extend(b + 3 for b in buf)
        buf = b""
    while True:
        best, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            m = index.get(vocab[tokens[i]] + vocab[tokens[i + 1]])
            if m is not None and struct.unpack("<f", struct.pack("<f", scores[m]))[0] > best:
                best, best_id, best_idx = scores[m], m, i
        if best_idx < 0:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


def c_list(ids):
    return "{" + ", ".join(str(i) for i in ids) + "}"


def c_str(b):
    out = []
    for c in b:
        if c == 0x22 or c == 0x5C:
            out.append("\\" + chr(c))
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append("\\x%02x\"\"" % c)
    return '"' + "".join(out) + '"'


def hf_from_gguf(path):
    """A Hugging Face tokenizers BPE with SmolLM2's pre-tokenizer (Digits(individual) then
    ByteLevel with the GPT-2 regex), from the GGUF's tokens, types and merges."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    r = GGUFReader(path)
    f = r.fields
    field_str = lambda k, i: bytes(f[k].parts[f[k].data[i]]).decode("utf-8")
    pre = field_str("tokenizer.ggml.pre", 0)
    assert pre == "smollm", "only the smollm pre-tokenizer is mapped here, not %r" % pre
    n = len(f["tokenizer.ggml.tokens"].data)
    tokens = [field_str("tokenizer.ggml.tokens", i) for i in range(n)]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    merges = [tuple(field_str("tokenizer.ggml.merges", i).split(" ", 1))
              for i in range(len(f["tokenizer.ggml.merges"].data))]
    bos = int(f["tokenizer.ggml.bos_token_id"].parts[-1][0])
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True) for i in range(n) if types[i] == 3])
    tok.post_processor = processors.TemplateProcessing(
        single="%s $A" % tokens[bos], special_tokens=[(tokens[bos], bos)])
    return tok


def gguf_refs(gguf, hf_out, wikitext):
    try:
        import llama_cpp
        llm = llama_cpp.Llama(model_path=gguf, vocab_only=True, verbose=False)
        enc = lambda b: llm.tokenize(b, add_bos=False, special=False)
        who = "llama.cpp %s (llama-cpp-python)" % llama_cpp.__version__
    except ImportError:
        tok = hf_from_gguf(gguf)
        enc = lambda b: tok.encode(b.decode("utf-8"), add_special_tokens=False).ids
        who = "Hugging Face tokenizers %s (built from the GGUF vocabulary and merges)" % (
            __import__("tokenizers").__version__)
        if hf_out and not os.path.exists(os.path.join(hf_out, "tokenizer.json")):
            os.makedirs(hf_out, exist_ok=True)
            tok.save(os.path.join(hf_out, "tokenizer.json"))
            print("/* wrote %s/tokenizer.json */" % hf_out)
    print("/* SmolLM2 (%s) by %s */" % (os.path.basename(gguf), who))
    for s in VALID_UTF8:
        print("    { %s, %d, %s }," % (c_str(s), len(s), c_list(enc(s))))
    if wikitext and os.path.exists(wikitext):
        with open(wikitext, "rb") as f:
            data = f.read()
        print("/* WikiText-2 %s: %d bytes, %d tokens */" % (os.path.basename(wikitext), len(data), len(enc(data))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../../shared"))
    ap.add_argument("--gguf", default=os.path.expanduser(
        "~/.cache/lmpress/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--hf-out", default=os.path.expanduser("~/.cache/lmpress/models/smollm2-135m-hf"))
    ap.add_argument("--skip-gguf", action="store_true")
    a = ap.parse_args()
    tokbin = os.path.join(a.shared, "models/stories260K/tok512.bin")
    vocab, scores = load_llama2c(tokbin, 512)
    print("/* llama2.c tok512.bin: run.c encode() port; add_bos = 1 */")
    for s in STRINGS:
        print("    { %s, %d, %s }," % (c_str(s), len(s), c_list(llama2c_encode(vocab, scores, s, True))))
    if not a.skip_gguf:
        gguf_refs(a.gguf, a.hf_out, os.path.join(a.shared, "data/wikitext2_test_join.txt"))


if __name__ == "__main__":
    main()
