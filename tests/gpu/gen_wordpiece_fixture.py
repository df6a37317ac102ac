#!/usr/bin/env python3
"""Expected WordPiece ids from Hugging Face for test_wordpiece (run where transformers is).

usage: gen_wordpiece_fixture.py VOCAB_TXT CASES_TXT OUT_DIR
e.g. on the GPU machine (which has transformers; 15 s on 16 cores):
  python3 tests/gpu/gen_wordpiece_fixture.py data/cache/bert_vocab.txt \
      tests/fixtures/wordpiece_cases.txt tests/fixtures

VOCAB_TXT is data/cache/bert_vocab.txt (make bert-vocab), CASES_TXT tests/fixtures/
wordpiece_cases.txt. Two tokenizers: transformers' Python one (BertTokenizerLegacy in
transformers 5, BertTokenizer before it: BasicTokenizer + WordpieceTokenizer) and its Rust one
(BertTokenizer in transformers 5: the tokenizers library's BertNormalizer, BertPreTokenizer,
WordPiece). For each, with SUFFIX "" for the Python one and "_rust" for the Rust one, OUT_DIR
gets:
  wordpiece_ids SUFFIX .txt         per case, in order: "ids<TAB>pieces" (space-separated) of
                                    encode(text, add_special_tokens=False) and tokenize(text)
  wordpiece_codepoints SUFFIX .txt  every code point c (but surrogates) in the text "a" c "a":
                                    "FIRST LAST ids" (hex code points, ids comma-separated) for
                                    each run of consecutive code points with the same ids
Lines starting with "#" give the versions. The texts are decoded from bytes with
errors="replace": an invalid byte becomes U+FFFD, which both tokenizers drop. Special tokens
written in the text ("[CLS]") are encoded as text (split_special_tokens=True), as pebble does.
"""
import json
import multiprocessing
import os
import sys
import tempfile
import unicodedata

import transformers


def unescape(line):
    """The escapes of wordpiece_cases.txt -> bytes."""
    out = bytearray()
    i = 0
    while i < len(line):
        c = line[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        e = line[i + 1]
        if e in "\\tnr":
            out += {"\\": b"\\", "t": b"\t", "n": b"\n", "r": b"\r"}[e]
            i += 2
        elif e == "x":
            out.append(int(line[i + 2:i + 4], 16))
            i += 4
        elif e == "u":
            end = line.index("}", i)
            out += chr(int(line[i + 3:end], 16)).encode("utf-8")
            i = end + 1
        else:
            raise ValueError("bad escape in %r" % line)
    return bytes(out)


tok = None
direct = None  # how to bypass special-token matching where split_special_tokens is ignored:
# "python" calls BasicTokenizer and WordpieceTokenizer, "rust" the backend's three stages


def tokenize(text):
    if direct is None:
        return tok.tokenize(text)
    if direct == "python":
        return [p for w in tok.basic_tokenizer.tokenize(text, never_split=None)
                for p in tok.wordpiece_tokenizer.tokenize(w)]
    b = tok.backend_tokenizer
    words = b.pre_tokenizer.pre_tokenize_str(b.normalizer.normalize_str(text))
    return [t.value for w, _ in words for t in b.model.tokenize(w)]


def encode(text):
    """ids of text, no [CLS]/[SEP] added"""
    if direct is None:
        return tok.encode(text, add_special_tokens=False)
    return tok.convert_tokens_to_ids(tokenize(text))


def sweep(cps):
    return [",".join(map(str, encode("a" + chr(cp) + "a"))) for cp in cps]


def make_python(vocab):
    cls = getattr(transformers, "BertTokenizerLegacy", None)
    if cls is None:  # transformers 4: BertTokenizer is the Python one
        cls = transformers.BertTokenizer
    return cls(vocab_file=vocab, do_lower_case=True, split_special_tokens=True)


def make_rust(vocab):
    # transformers 5's BertTokenizer ignores vocab_file=; from_pretrained reads a vocab.txt
    d = tempfile.mkdtemp()
    with open(vocab, "rb") as src, open(os.path.join(d, "vocab.txt"), "wb") as dst:
        dst.write(src.read())
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)
    cls = transformers.BertTokenizer
    if "TokenizersBackend" not in [c.__name__ for c in cls.__mro__]:
        cls = transformers.BertTokenizerFast  # transformers 4
    return cls.from_pretrained(d, do_lower_case=True, split_special_tokens=True)


def generate(make, vocab, lines, out_dir, suffix):
    global tok, direct
    tok = make(vocab)
    direct = None
    # the vocabulary must really be ours (a tokenizer that ignored it would say [UNK] to all)
    n, the = len(tok.get_vocab()), tok.convert_tokens_to_ids("the")
    if n != 30522 or the != 1996:
        sys.exit("%s: %d pieces, 'the' = %s: the vocabulary was not loaded" % (type(tok), n, the))
    # Older transformers ignore split_special_tokens ("[CLS]" stays one token): then the
    # tokenizer's own stages are called directly, with nothing kept whole.
    mode = "encode(split_special_tokens=True)"
    if tok.tokenize("[CLS]") == ["[CLS]"]:
        direct = "python" if hasattr(tok, "basic_tokenizer") else "rust"
        mode = "its stages called directly"
        if tokenize("[CLS]") == ["[CLS]"]:
            sys.exit("cannot make %s encode [CLS] as text" % type(tok))
    head = "# transformers %s, %s (%s), %s, Python %s, unicodedata %s\n" % (
        transformers.__version__, type(tok).__name__,
        " < ".join(c.__name__ for c in type(tok).__mro__[1:3]), mode, sys.version.split()[0],
        unicodedata.unidata_version)
    sys.stderr.write(head)
    ids_by_case = []
    with open(os.path.join(out_dir, "wordpiece_ids%s.txt" % suffix), "w", encoding="utf-8") as f:
        f.write(head)
        for line in lines:
            text = unescape(line).decode("utf-8", errors="replace")
            pieces = tokenize(text)
            ids = encode(text)
            if tok.convert_tokens_to_ids(pieces) != ids:
                sys.exit("tokenize and encode disagree on %r" % line)
            f.write("%s\t%s\n" % (" ".join(map(str, ids)), " ".join(pieces)))
            ids_by_case.append(ids)
    sys.stderr.write("%d cases\n" % len(lines))

    runs = 0
    with open(os.path.join(out_dir, "wordpiece_codepoints%s.txt" % suffix), "w",
              encoding="utf-8") as f:
        f.write(head)
        cps = list(range(0xD800)) + list(range(0xE000, 0x110000))
        chunks = [cps[i:i + 4096] for i in range(0, len(cps), 4096)]
        with multiprocessing.get_context("fork").Pool() as pool:
            encoded = pool.map(sweep, chunks)
        first, prev, cur = None, None, None
        for cp, ids in zip(cps, (x for chunk in encoded for x in chunk)):
            if cur is not None and ids == cur and cp == prev + 1:
                prev = cp
                continue
            if cur is not None:
                f.write("%x %x %s\n" % (first, prev, cur))
                runs += 1
            first, prev, cur = cp, cp, ids
        f.write("%x %x %s\n" % (first, prev, cur))
        runs += 1
    sys.stderr.write("%d code point runs\n" % runs)
    return ids_by_case


def main():
    vocab, cases_path, out_dir = sys.argv[1:4]
    lines = open(cases_path, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's last newline ends the last case
    lines = [l for l in lines if not l.startswith("# ")]
    py = generate(make_python, vocab, lines, out_dir, "")
    rs = generate(make_rust, vocab, lines, out_dir, "_rust")
    for line, a, b in zip(lines, py, rs):
        if a != b:
            sys.stderr.write("Python and Rust differ on %r\n" % line)


if __name__ == "__main__":
    main()
