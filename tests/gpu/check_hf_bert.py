#!/usr/bin/env python3
# check_hf_bert.py: pebble's BERT against Hugging Face transformers, on the GPU machine (where
# transformers is installed), from the repository root, after
#     make build/pebble build/tests/gpu/hf_logits
# as: python3 tests/gpu/check_hf_bert.py DIR. For each head (mlm; classify with cls pooling):
#   1. trains a tiny BERT for a few steps with build/pebble on a shard this script writes
#      (pieces [CLS] w ... [SEP]; for classify a labelled-sequence file), on the CPU;
#   2. exports it (build/pebble export) and loads it with from_pretrained, offline: no
#      missing or unexpected tensors (the tied decoder aside), and the state_dict's names and
#      shapes are the exported ones;
#   3. compares the logits pebble computes (tests/gpu/hf_logits, CPU, fp32) on a padded batch
#      with the model's (attention_mask), and the MLM loss with labels.
# Also writes the Hugging Face name list of a tiny BertForMaskedLM and
# BertForSequenceClassification to DIR/hf_names.txt. Exit status 0 when every check passed.
import json
import os
import struct
import subprocess
import sys

import numpy as np
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

ATOL = 2e-4  # fp32 against fp32, other summation orders; the logits are O(1-10)
V, T, B = 1000, 64, 3
out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/hf-bert"
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
failed = 0


def check(ok, what):
    global failed
    failed += not ok
    print(f"{what}: {'ok' if ok else 'FAIL'}", flush=True)


def write_pieces(path, n_tok):
    toks = []
    while len(toks) < n_tok:
        n = int(rng.integers(4, T))
        toks += [101] + list(rng.integers(104, V, n - 2)) + [102]
    hdr = np.zeros(256, np.int32)
    hdr[:3] = [20240520, 1, len(toks)]
    with open(path, "wb") as f:
        f.write(hdr.tobytes() + np.array(toks, np.uint16).tobytes())


def write_rows(path, rows):
    hdr = np.zeros(256, np.int32)
    hdr[:8] = [20261202, 1, rows, 0, T, 2, 3, V]
    with open(path, "wb") as f:
        f.write(hdr.tobytes())
        for _ in range(rows):
            n = int(rng.integers(4, T + 1))
            tok = np.zeros(T, np.uint16)
            tok[:n] = [101] + list(rng.integers(104, V, n - 2)) + [102]
            f.write(struct.pack("<ii", n, int(rng.integers(0, 3))) + tok.tobytes())


def pebble(*args):
    r = subprocess.run(["build/pebble", *args], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-2000:])
        raise SystemExit(f"pebble {args[0]} failed ({r.returncode})")
    return r.stdout


lengths = np.array([T, 40, 7], np.int32)
ids = np.zeros((B, T), np.int32)
for b in range(B):
    ids[b, :lengths[b]] = [101] + list(rng.integers(104, V, lengths[b] - 2)) + [102]
targets = np.full((B, T), -1, np.int32)
for b in range(B):
    for t in range(1, lengths[b] - 1):
        if rng.random() < 0.3:
            targets[b, t] = int(rng.integers(0, V))
labels = np.array([0, 2, 1], np.int32)
ids.tofile(f"{out}/ids.bin")
lengths.tofile(f"{out}/lengths.bin")
targets.tofile(f"{out}/targets.bin")
labels.tofile(f"{out}/labels.bin")
mask = torch.from_numpy((np.arange(T)[None, :] < lengths[:, None]).astype(np.int64))

for head in ("mlm", "classify"):
    d = f"{out}/{head}"
    os.makedirs(d, exist_ok=True)
    if head == "mlm":
        write_pieces(f"{d}/train.bin", 20000)
        data = f"{d}/train.bin"
    else:
        write_rows(f"{d}/train.lseq", 64)
        data = f"{d}/train.lseq"
    pebble("train", "--force", "--set", "model.family=bert", "--set", f"model.head={head}",
           "--set", "model.num_labels=3", "--set", "model.n_layer=2", "--set", "model.n_head=4",
           "--set", "model.n_embd=64", "--set", "model.ffn=200", "--set", f"model.seq_len={T}",
           "--set", f"model.vocab_size={V}", "--set", f"data.train={data}", "--set",
           "train.steps=5", "--set", "train.lr=1e-2", "--set", "train.batch_size=4", "--set",
           "run.plot=false", "--set", f"run.dir={d}/run")
    pebble("export", "--ckpt", f"{d}/run", "--out", f"{d}/hf")
    cls = BertForMaskedLM if head == "mlm" else BertForSequenceClassification
    m, info = cls.from_pretrained(f"{d}/hf", output_loading_info=True, local_files_only=True)
    m = m.float().eval()
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    missing = [k for k in info["missing_keys"] if k not in tied]
    check(not missing and not info["unexpected_keys"] and not info["mismatched_keys"],
          f"{head}: from_pretrained missing {missing} unexpected {info['unexpected_keys']} "
          f"mismatched {info['mismatched_keys']}")
    with open(f"{d}/hf/model.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        exported = {k: v["shape"] for k, v in json.loads(f.read(n)).items() if k != "__metadata__"}
    sd = {k: list(v.shape) for k, v in m.state_dict().items() if k not in tied}
    check(exported == sd, f"{head}: exported names and shapes = the state_dict's ({len(sd)} tensors)")

    args = ["build/tests/gpu/hf_logits", f"{d}/run", f"{out}/ids.bin", str(B), str(T),
            f"{d}/logits.bin", f"{out}/lengths.bin"]
    with torch.no_grad():
        ti = torch.from_numpy(ids.astype(np.int64))
        if head == "mlm":
            want = m(input_ids=ti, attention_mask=mask).logits.numpy().reshape(B * T, V)
            subprocess.run(args, check=True)
            got = np.fromfile(f"{d}/logits.bin", np.float32).reshape(B * T, V)
            lab = torch.from_numpy(np.where(targets < 0, -100, targets).astype(np.int64))
            hf_loss = m(input_ids=ti, attention_mask=mask, labels=lab).loss.item()
            r = subprocess.run(args + [f"{out}/targets.bin"], check=True, capture_output=True,
                               text=True)
            loss = float(r.stdout.split()[1])
            check(abs(loss - hf_loss) <= 1e-5 * abs(hf_loss),
                  f"mlm: loss pebble {loss:.7f} transformers {hf_loss:.7f}")
        else:
            want = m(input_ids=ti, attention_mask=mask).logits.numpy()
            subprocess.run(args, check=True)
            got = np.fromfile(f"{d}/logits.bin", np.float32).reshape(B, 3)
    diff = np.abs(got - want).max()
    check(diff <= ATOL, f"{head}: max |pebble - transformers| logits = {diff:.3g} "
          f"(max |logit| {np.abs(want).max():.3g}, tol {ATOL})")

# The name lists, for tests/fixtures (the CPU suite checks its tables against them)
with open(f"{out}/hf_names.txt", "w") as f:
    c = BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=40, max_position_embeddings=12, num_labels=3)
    for cls in (BertForMaskedLM, BertForSequenceClassification):
        for k, v in cls(c).state_dict().items():
            f.write(f"{cls.__name__} {k} {list(v.shape)}\n")
print("FAILED" if failed else "all checks passed", f"({failed} failed)")
sys.exit(1 if failed else 0)
