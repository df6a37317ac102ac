"""pathfinder_cnn.py: is the generated Pathfinder task learnable at all? A small CNN (not a
Transformer) trained on pebble's Pathfinder lseq files, on the CPU with Debian's python3-torch.

    build/pebble lra gen pathfinder --res 32 --n 60000 --out /tmp/pf32s
    /usr/bin/python3 dev/lra/pathfinder_cnn.py /tmp/pf32s [--epochs 6] [--threads 2]

Reads DIR/{train,val}.lseq (data/lseq.h: a 1024-byte header of int32, then rows of int32
length, int32 label, T one-byte pixels), trains 3x3 convolutions (16-32-32-64 channels, two
poolings) with Adam, and prints the validation accuracy after every epoch. Chance is 50%.
"""
import argparse, struct, time
import numpy as np
import torch, torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("dir"); p.add_argument("--epochs", type=int, default=6)
p.add_argument("--threads", type=int, default=2); p.add_argument("--batch", type=int, default=128)
p.add_argument("--lr", type=float, default=2e-3)
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)

def load(path):
    raw = open(path, "rb").read()
    h = struct.unpack("<256i", raw[:1024])
    assert h[0] == 20261202 and h[5] == 1, f"{path}: not a one-byte lseq file"
    n, T = h[2] | (h[3] << 31), h[4]
    rows = np.frombuffer(raw, np.uint8, offset=1024).reshape(n, 8 + T)
    labels = rows[:, 4:8].copy().view("<i4")[:, 0]
    side = int(round(T ** 0.5))
    x = torch.from_numpy(rows[:, 8:].astype(np.float32) / 255.0).reshape(n, 1, side, side)
    return x, torch.from_numpy(labels.astype(np.int64))

xt, yt = load(f"{a.dir}/train.lseq"); xv, yv = load(f"{a.dir}/val.lseq")
print(f"train {len(yt)} images ({yt.float().mean():.3f} label 1), val {len(yv)}, {xt.shape[-1]} px")

def block(i, o): return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
net = nn.Sequential(*block(1, 16), *block(16, 16), *block(16, 32), nn.MaxPool2d(2),
                    *block(32, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64),
                    *block(64, 64), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, 2))
opt = torch.optim.Adam(net.parameters(), lr=a.lr)
steps = a.epochs * (len(yt) // a.batch)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=steps)
loss_fn = nn.CrossEntropyLoss()
for ep in range(a.epochs):
    t0, net_loss = time.time(), 0.0
    net.train()
    perm = torch.randperm(len(yt))
    for i in range(len(yt) // a.batch):
        idx = perm[i * a.batch:(i + 1) * a.batch]
        loss = loss_fn(net(xt[idx]), yt[idx])
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        net_loss += loss.item()
    net.eval()
    with torch.no_grad():
        acc = sum((net(xv[i:i + 500]).argmax(1) == yv[i:i + 500]).sum().item()
                  for i in range(0, len(yv), 500)) / len(yv)
    print(f"epoch {ep + 1}: train loss {net_loss / (len(yt) // a.batch):.4f}, "
          f"val accuracy {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
