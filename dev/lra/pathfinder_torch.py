#!/usr/bin/env python3
# pathfinder_torch.py: an independent PyTorch trainer of the LRA Pathfinder model that
# configs/lra-pathfinder32.ini describes, to tell pebble's training from the data: the
# architecture of Nystromformer's LRA reproduction (their LRA/code, read, not copied): token +
# learned position embeddings N(0, 0.02), dropout; pre-LN blocks (LN, attention with the keys
# of token 0 masked and dropout on the probabilities, output Linear, dropout; LN, Linear-GELU-
# dropout-Linear-dropout); a final LN times the mask, the mean over all T positions; head
# Linear-ReLU-Linear. PyTorch's default Linear init. AdamW (0.9, 0.999, eps 1e-6, no decay),
# warmup then linear decay, fp16 autocast with a GradScaler. Reads pebble's .lseq files.
#   python3 dev/lra/pathfinder_torch.py DIR [--steps 62400] [--lr 1e-4] [--time-limit S] [--no-mask]
#       [--attn-dropout P (default 0.1, theirs; 0: pebble's CUDA configs)] [--wd W] [--cosine]
# (--lr 1e-3 --steps 15600 --wd 0.1 --cosine is configs/lra-pathfinder32.ini's schedule.)
import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_lseq(path):
    raw = np.fromfile(path, dtype=np.uint8)
    h = raw[:1024].view(np.int32)
    T, tb = int(h[4]), int(h[5])
    assert tb == 1, "one-byte tokens only"
    rows = raw[1024:].reshape(-1, 8 + T)
    labels = rows[:, 4:8].copy().view(np.int32).ravel()
    return torch.from_numpy(rows[:, 8:].astype(np.int64)), torch.from_numpy(labels.astype(np.int64))


class Block(nn.Module):
    def __init__(self, C, H, F_, p, pa):
        super().__init__()
        self.H, self.p, self.pa = H, p, pa
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.fc1, self.fc2 = nn.Linear(C, F_), nn.Linear(F_, C)

    def forward(self, x, keep):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.H, C // self.H).permute(2, 0, 3, 1, 4)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :],
                                               dropout_p=self.pa if self.training else 0.0)
        else:  # older torch: the same, spelled out
            s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
            a = F.dropout(torch.softmax(s, -1), self.pa, self.training) @ v
        x = x + F.dropout(self.proj(a.transpose(1, 2).reshape(B, T, C)), self.p, self.training)
        h = F.dropout(F.gelu(self.fc1(self.ln2(x))), self.p, self.training)
        return x + F.dropout(self.fc2(h), self.p, self.training)


class Model(nn.Module):
    def __init__(self, T=1024, V=256, C=64, H=2, F_=128, L=2, p=0.1, mask=True, pa=0.1):
        super().__init__()
        self.mask, self.p = mask, p
        self.tok, self.pos = nn.Embedding(V, C), nn.Embedding(T, C)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(C, H, F_, p, pa) for _ in range(L))
        self.ln = nn.LayerNorm(C)
        self.head = nn.Sequential(nn.Linear(C, F_), nn.ReLU(), nn.Linear(F_, 2))

    def forward(self, ids):
        keep = ids != 0 if self.mask else torch.ones_like(ids, dtype=torch.bool)
        x = F.dropout(self.tok(ids) + self.pos.weight[None, : ids.shape[1]], self.p, self.training)
        for b in self.blocks:
            x = b(x, keep)
        x = self.ln(x) * keep[..., None]
        return self.head(x.mean(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--steps", type=int, default=62400)
    ap.add_argument("--warmup", type=int, default=312)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--val-every", type=int, default=625)
    ap.add_argument("--time-limit", type=float, default=0)
    ap.add_argument("--no-mask", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attn-dropout", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--cosine", action="store_true", help="cosine decay to 0 (pebble's)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    dev = "cuda"
    xtr, ytr = (t.to(dev) for t in read_lseq(f"{a.dir}/train.lseq"))
    xva, yva = (t.to(dev) for t in read_lseq(f"{a.dir}/val.lseq"))
    m = Model(mask=not a.no_mask, pa=a.attn_dropout).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-6,
                            weight_decay=a.wd)
    frac = lambda s: min(1.0, max(0.0, (s - a.warmup) / (a.steps - a.warmup)))
    if a.cosine:
        decay = lambda s: 0.5 * (1 + math.cos(math.pi * frac(s)))
    else:
        decay = lambda s: 1.0 - frac(s)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / a.warmup if s < a.warmup else decay(s))
    amp = torch.amp if hasattr(torch.amp, "GradScaler") else torch.cuda.amp
    scaler = amp.GradScaler("cuda") if amp is torch.amp else amp.GradScaler()
    n = xtr.shape[0]
    perm, at = torch.randperm(n, device=dev), 0
    t0 = time.time()
    for step in range(1, a.steps + 1):
        if at + a.batch > n:
            perm, at = torch.randperm(n, device=dev), 0
        idx = perm[at:at + a.batch]
        at += a.batch
        m.train()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = F.cross_entropy(m(xtr[idx]).float(), ytr[idx])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        last = step == a.steps or (a.time_limit and time.time() - t0 > a.time_limit)
        if step % a.val_every == 0 or last:
            m.eval()
            tot, right, ls = 0, 0, 0.0
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
                for i in range(0, xva.shape[0], 256):
                    lg = m(xva[i:i + 256]).float()
                    ls += F.cross_entropy(lg, yva[i:i + 256], reduction="sum").item()
                    right += (lg.argmax(1) == yva[i:i + 256]).sum().item()
                    tot += lg.shape[0]
            t = time.time() - t0
            print(f"step {step}: train loss {loss.item():.4f} val loss {ls / tot:.4f} accuracy "
                  f"{right / tot:.4f} ({t:.0f} s, {t / step * 1e3:.1f} ms/step)", flush=True)
        if last:
            break


if __name__ == "__main__":
    main()
