#!/usr/bin/env python3
"""Expected WordPiece ids from Hugging Face for test_wordpiece (run where transformers is).

usage: gen_wordpiece_fixture.py VOCAB_TXT CASES_TXT OUT_DIR

VOCAB_TXT is data/cache/bert_vocab.txt (make bert-vocab), CASES_TXT tests/fixtures/
wordpiece_cases.txt. Writes into OUT_DIR:
  wordpiece_ids.txt         per case, in order: "ids<TAB>pieces" (space-separated), from
                            BertTokenizer(vocab_file, do_lower_case=True).encode(text,
                            add_special_tokens=False) and .tokenize(text)
  wordpiece_codepoints.txt  every code point c (but surrogates) in the text "a" c "a": lines
                            "FIRST LAST ids" (hex code points, ids comma-separated) for each run
                            of consecutive code points with the same ids
Lines starting with "#" give the versions. The texts are decoded from bytes with
errors="replace": an invalid byte becomes U+FFFD, which BertTokenizer drops. Special tokens
written in the text ("[CLS]") are encoded as text (split_special_tokens=True), as pebble does.
"""
import multiprocessing
import sys
import unicodedata

import transformers
from transformers import BertTokenizer


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


def main():
    vocab, cases_path, out_dir = sys.argv[1:4]
    global tok, direct
    sys.stderr.write("transformers %s at %s; Bert tokenizer classes: %s\n" % (
        transformers.__version__, transformers.__file__,
        [n for n in dir(transformers) if "Bert" in n and "Token" in n]))
    try:
        tok = BertTokenizer(vocab_file=vocab, do_lower_case=True, split_special_tokens=True)
    except Exception as e:  # noqa: BLE001
        sys.stderr.write("BertTokenizer(vocab_file=...) failed: %r; trying vocab=\n" % e)
        tok = BertTokenizer(vocab=vocab, do_lower_case=True, split_special_tokens=True)
    sys.stderr.write("%s, mro %s\n" % (type(tok), [c.__name__ for c in type(tok).__mro__]))
    # Older transformers ignore split_special_tokens ("[CLS]" stays one token): then the
    # tokenizer's own stages are called directly, with nothing kept whole.
    mode = "encode(split_special_tokens=True)"
    if tok.tokenize("[CLS]") == ["[CLS]"]:
        direct = "python" if hasattr(tok, "basic_tokenizer") else "rust"
        mode = "its stages called directly (%s)" % direct
        if tokenize("[CLS]") == ["[CLS]"]:
            sys.exit("cannot make this transformers encode [CLS] as text")
    head = "# transformers %s, %s, %s, Python %s, unicodedata %s\n" % (
        transformers.__version__, type(tok).__name__, mode, sys.version.split()[0],
        unicodedata.unidata_version)
    sys.stderr.write(head)

    lines = open(cases_path, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's last newline ends the last case
    n = 0
    with open(out_dir + "/wordpiece_ids.txt", "w", encoding="utf-8") as f:
        f.write(head)
        for line in lines:
            if line.startswith("# "):
                continue
            text = unescape(line).decode("utf-8", errors="replace")
            pieces = tokenize(text)
            ids = encode(text)
            if tok.convert_tokens_to_ids(pieces) != ids:
                sys.exit("tokenize and encode disagree on %r" % line)
            f.write("%s\t%s\n" % (" ".join(map(str, ids)), " ".join(pieces)))
            n += 1
    sys.stderr.write("%d cases\n" % n)
    try:  # for the log only: where the Rust tokenizer differs from this one
        fast = transformers.BertTokenizerFast(vocab_file=vocab, do_lower_case=True)
        for line in lines:
            if line.startswith("# "):
                continue
            text = unescape(line).decode("utf-8", errors="replace")
            if fast.encode(text, add_special_tokens=False) != encode(text):
                sys.stderr.write("BertTokenizerFast differs on %r\n" % line)
    except Exception as e:  # noqa: BLE001
        sys.stderr.write("BertTokenizerFast not compared: %s\n" % e)

    runs = 0
    with open(out_dir + "/wordpiece_codepoints.txt", "w", encoding="utf-8") as f:
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


if __name__ == "__main__":
    main()
