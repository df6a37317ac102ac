#!/usr/bin/env python3
# check_hf_import.py: `pebble import` against Hugging Face transformers. Makes a
# GPT2LMHeadModel with random weights, save_pretrained()s it (F32, and a BF16 copy), imports
# each with build/pebble import, and checks that pebble (tests/gpu/hf_logits, on the CPU)
# computes transformers' logits for the same tokens. The BF16 file is compared with the
# model transformers loads from it upcast to float32: pebble widens BF16 exactly.
# Run on the GPU machine (transformers there), from the repository root, after
#     make build/pebble build/tests/gpu/hf_logits
# as: python3 tests/gpu/check_hf_import.py DIR. Exit status 0 when every check passed.
import os
import subprocess
import sys

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

ATOL = 2e-4  # fp32 against fp32, other summation orders; the logits are O(1-10)

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/hf-import"
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
cfg = GPT2Config(n_layer=3, n_head=4, n_embd=128, n_positions=96, vocab_size=1000,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
model = GPT2LMHeadModel(cfg).eval()
with torch.no_grad():  # larger than the init's 0.02, so every layer moves the logits
    for p in model.parameters():
        p.mul_(5.0) if p.dim() == 2 else p.add_(0.1 * torch.randn_like(p))
T = 80
tokens = torch.randint(0, cfg.vocab_size, (1, T))
tokens.numpy().astype(np.int32).tofile(f"{out}/tokens.bin")
failed = 0
for dtype in ("float32", "bfloat16"):
    d = f"{out}/{dtype}"
    m = model if dtype == "float32" else GPT2LMHeadModel(cfg).eval()
    if dtype == "bfloat16":
        m.load_state_dict(model.state_dict())
        m = m.to(torch.bfloat16)
    m.save_pretrained(d, safe_serialization=True)
    ref = GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        want = ref(tokens).logits[0].numpy()
    ck = f"{out}/{dtype}.h5"
    if os.path.exists(ck):
        os.remove(ck)
    r = subprocess.run(["build/pebble", "import", "--hf", d, "--out", ck], capture_output=True,
                       text=True)
    print(r.stdout.strip(), r.stderr.strip())
    if r.returncode != 0:
        print(f"{dtype}: import failed ({r.returncode})")
        failed += 1
        continue
    subprocess.run(["build/tests/gpu/hf_logits", ck, f"{out}/tokens.bin", "1", str(T),
                    f"{out}/{dtype}_logits.bin"], check=True)
    got = np.fromfile(f"{out}/{dtype}_logits.bin", np.float32).reshape(T, cfg.vocab_size)
    diff = np.abs(got - want).max()
    ok = diff <= ATOL
    failed += not ok
    print(f"{dtype}: max |pebble - transformers| logits = {diff:.3g} (max |logit| "
          f"{np.abs(want).max():.3g}, tol {ATOL}): {'ok' if ok else 'FAIL'}")
sys.exit(1 if failed else 0)
