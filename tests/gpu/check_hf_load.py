#!/usr/bin/env python3
# check_hf_load.py: loads a pebble checkpoint into Hugging Face's GPT2LMHeadModel, from the
# HDF5 file (h5py + load_state_dict) and from `pebble export`'s safetensors
# (from_pretrained(DIR)), and checks that it computes pebble's logits and loss.
#
# Run on the GPU machine (torch, h5py, transformers installed), from the repository root:
#     . .deps/env.sh && make -j16 build/tests/test_checkpoint &&
#     PEBBLE_HF_CHECK_DIR=$OUT/hf-check build/tests/test_checkpoint \
#         --filter 'checkpoint/hf_reference_logits' &&
#     python3 tests/gpu/check_hf_load.py $OUT/hf-check
# (.deps from `sh ../shared/device/prepare.sh`, carried; any directory works for $OUT.)
# The test leaves in DIR: the checkpoint (ckpt_*.h5), the export (hf/), tokens.bin and
# targets.bin (int32, B x T), logits.bin (float32, B x T x V, pebble's) and meta.json.
#
# Without transformers, only the checks that need torch and h5py run: the checkpoint's
# layout, the safetensors file against the HDF5 file, and a GPT-2 forward written here
# from the state_dict in float64. Exit status 0 when every check that ran passed.
import argparse
import json
import math
import os
import struct
import sys

import h5py
import numpy as np
import torch

# pebble computes in float32 with its own summation order; torch in its own.
LOGITS_ATOL = 1e-3
LOSS_ATOL = 1e-4


def load_h5(path):
    """The checkpoint's model shape and /model as a state_dict, the way a user would."""
    with h5py.File(path, "r") as f:
        fmt = f.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        assert fmt == "pebble-checkpoint", f"{path}: format {fmt!r}"
        assert int(f.attrs["version"]) == 1
        cfg = {k: int(f["config"].attrs[k])
               for k in ("n_layer", "n_head", "n_embd", "seq_len", "vocab_size")}
        sd = {k: torch.from_numpy(f["model"][k][...]) for k in f["model"]}
        for k in f["model"]:
            assert f["model"][k].fletcher32, f"{k} has no Fletcher32 checksum"
    return cfg, sd


def load_safetensors(path):
    """A plain reader of the safetensors format (no safetensors package needed)."""
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        data = fh.read()
    meta = header.pop("__metadata__", {})
    assert meta.get("format") == "pt", meta
    sd, end = {}, 0
    for k, v in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        assert v["dtype"] == "F32", (k, v["dtype"])
        b, e = v["data_offsets"]
        assert b == end, f"{k}: offsets not back to back"
        end = e
        arr = np.frombuffer(data[b:e], dtype="<f4").reshape(v["shape"])
        sd[k] = torch.from_numpy(arr.copy())
    assert end == len(data), "data section longer than the tensors"
    return sd


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def reference_logits(sd, cfg, idx):
    """GPT-2 as GPT2LMHeadModel computes it, from its state_dict, in float64."""
    p = {k: v.to(torch.float64) for k, v in sd.items()}
    L, NH, C = cfg["n_layer"], cfg["n_head"], cfg["n_embd"]
    B, T = idx.shape
    D = C // NH
    ln = torch.nn.functional.layer_norm
    x = p["transformer.wte.weight"][idx] + p["transformer.wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = f"transformer.h.{l}."
        a = ln(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], 1e-5)
        q, k, v = (a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]).split(C, dim=2)
        q, k, v = (t.view(B, T, NH, D).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-2, -1)) / math.sqrt(D)
        y = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1) @ v
        x = x + y.transpose(1, 2).reshape(B, T, C) @ p[h + "attn.c_proj.weight"] \
            + p[h + "attn.c_proj.bias"]
        a = ln(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], 1e-5)
        f = gelu_tanh(a @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"])
        x = x + f @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = ln(x, (C,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], 1e-5)
    return x @ p["transformer.wte.weight"].t()


def loss_of(logits, targets):
    V = logits.shape[-1]
    return float(torch.nn.functional.cross_entropy(logits.reshape(-1, V).double(),
                                                   targets.reshape(-1), ignore_index=-1))


failures = []


def compare(what, logits, targets, want_logits, want_loss):
    logits = logits.detach().double().cpu()
    diff = float((logits - want_logits.double()).abs().max())
    loss = loss_of(logits, targets)
    ok = diff <= LOGITS_ATOL and abs(loss - want_loss) <= LOSS_ATOL
    print(f"{'ok  ' if ok else 'FAIL'} {what}: max |logits - pebble| = {diff:.3e}, "
          f"loss {loss:.7f} vs pebble {want_loss:.7f} (diff {abs(loss - want_loss):.2e})")
    if not ok:
        failures.append(what)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", help="PEBBLE_HF_CHECK_DIR of the test run")
    args = ap.parse_args()
    d = args.dir
    meta = json.load(open(os.path.join(d, "meta.json")))
    B, T, V = meta["B"], meta["T"], meta["V"]
    idx = torch.from_numpy(np.fromfile(os.path.join(d, "tokens.bin"), "<i4").astype(np.int64))
    tgt = torch.from_numpy(np.fromfile(os.path.join(d, "targets.bin"), "<i4").astype(np.int64))
    idx, tgt = idx.view(B, T), tgt.view(B, T)
    pebble_logits = torch.from_numpy(np.fromfile(os.path.join(d, "logits.bin"), "<f4").copy())
    pebble_logits = pebble_logits.view(B, T, V)
    pebble_loss = meta["loss"]

    ckpt = os.path.join(d, meta["checkpoint"])
    cfg, sd = load_h5(ckpt)
    print(f"checkpoint {ckpt}: {cfg}, {len(sd)} tensors")
    assert sd["transformer.wte.weight"].shape == (cfg["vocab_size"], cfg["n_embd"])
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (cfg["n_embd"], 3 * cfg["n_embd"])

    st = load_safetensors(os.path.join(d, "hf", "model.safetensors"))
    same = sorted(st) == sorted(sd) and all(torch.equal(st[k], sd[k]) for k in sd)
    print(f"{'ok  ' if same else 'FAIL'} model.safetensors holds the HDF5 tensors exactly")
    if not same:
        failures.append("safetensors vs HDF5")

    compare("float64 GPT-2 written here, from HDF5", reference_logits(sd, cfg, idx), tgt,
            pebble_logits, pebble_loss)

    try:
        import transformers
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        print("skip transformers is not installed: GPT2LMHeadModel checks not run")
        transformers = None
    if transformers is not None:
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        # Full fp32 matmuls on the GPU (TF32 would differ from pebble by ~1e-3).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        print(f"transformers {transformers.__version__}, torch {torch.__version__}, on {dev}")

        # 1. h5py + load_state_dict
        config = GPT2Config(vocab_size=cfg["vocab_size"], n_positions=cfg["seq_len"],
                            n_embd=cfg["n_embd"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                            activation_function="gelu_new", layer_norm_epsilon=1e-5,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                            tie_word_embeddings=True)
        model = GPT2LMHeadModel(config)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        # lm_head.weight is tied to wte; attn.bias / masked_bias are buffers, not weights.
        bad_missing = [k for k in missing if k != "lm_head.weight"
                       and not k.endswith((".attn.bias", ".attn.masked_bias"))]
        assert not unexpected and not bad_missing, (unexpected, bad_missing)
        model.tie_weights()  # a no-op where the head already shares wte's parameter
        assert torch.equal(model.lm_head.weight, sd["transformer.wte.weight"]), "head not tied"
        model.eval().to(dev)
        with torch.no_grad():
            out = model(idx.to(dev)).logits
        compare("GPT2LMHeadModel, h5py + load_state_dict", out, tgt, pebble_logits, pebble_loss)

        # 2. from_pretrained on the export
        model = GPT2LMHeadModel.from_pretrained(os.path.join(d, "hf"), local_files_only=True)
        model.eval().to(dev)
        with torch.no_grad():
            out = model(idx.to(dev)).logits
        compare("GPT2LMHeadModel.from_pretrained(export dir)", out, tgt, pebble_logits,
                pebble_loss)

    if failures:
        print("FAILED:", ", ".join(failures))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
