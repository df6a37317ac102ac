#!/bin/sh
# nccl_run.sh: the GPU's NCCL data-parallel path on the one GPU of the GPU machine (two NCCL
# ranks cannot share a GPU, so the world is 1): build; gpt2-tiny for 30 steps (2 micro-batches
# a step, validation on) in fp32 and bf16 on the plain single-GPU path and with
# dist.reduce = nccl, ZeRO 0 and 1: losses, norms, validation and the final checkpoint's
# weights and AdamW state must be the plain run's bits; a NCCL ZeRO-1 run stopped at step 15
# and resumed on the plain path must finish as the straight run; the same ZeRO-1 run launched
# torchrun-style (RANK=0 WORLD_SIZE=1 LOCAL_RANK=0: the id file) and under mpirun -np 1;
# then GPT-2 124M step times with and without the NCCL path (the overlap must not slow the
# one-GPU step). From the repository root, after `. .deps/env.sh`. Logs: $OUT/build.log and
# $OUT/nccl.log; PASS/FAIL lines and a short table last.
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
LOG="$OUT/nccl.log"
: >"$LOG"
t0=$(date +%s)
el() { echo "$(($(date +%s) - t0)) s"; }
fails=0
W=/tmp/pebble-nccl
rm -rf "$W" && mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
make -j16 build/pebble >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build done, $(el)"
python3 -c "
import os
for d in os.environ.get('LD_LIBRARY_PATH', '').split(':'):
    if d and os.path.exists(os.path.join(d, 'libnccl.so.2')): print('libnccl.so.2 in', d)" >>"$LOG" 2>&1

# A learnable synthetic shard (tokens < 500) and a validation shard.
python3 -c "
import numpy as np
def shard(path, n, off):
    i = np.arange(n) + off
    tok = ((i * 7 + i // 13) % 500).astype(np.uint16)
    hdr = np.zeros(256, np.int32); hdr[0] = 20240520; hdr[1] = 1; hdr[2] = n
    open(path, 'wb').write(hdr.tobytes() + tok.tobytes())
shard('$W/train_000.bin', 1000000, 0); shard('$W/val_000.bin', 40000, 12345)"

# gpt2-tiny with 2 heads (D = 64: the bf16 attention runs it), 2 micro-batches a step.
TINY="-c configs/gpt2-tiny.ini --set data.train=$W/train_*.bin --set data.val=$W/val_*.bin \
 --set model.n_head=2 --set system.device=cuda --set train.steps=30 --set train.total_batch_tokens=2048 \
 --set train.val_every=10 --set train.val_batches=4 --set run.plot=false --set sample.every=0"
RUN_ENV=""  # VAR=value words for the next tiny run (POSIX sh keeps no prefix on functions)
tiny() {  # name, then --set arguments
    name=$1; shift
    echo "=== $name: $RUN_ENV pebble train $*" >>"$LOG"
    env $RUN_ENV timeout 60 build/pebble train $TINY --set run.dir=$W/$name "$@" >>"$LOG" 2>&1
    rc=$?
    echo "--- $name rc=$rc" >>"$LOG"
    [ $rc = 0 ] || { echo "FAIL $name: exit status $rc (see nccl.log)"; fails=$((fails + 1)); }
}
# Bit equality of two runs: metrics (loss, grad_norm, val_loss as printed) and every tensor of
# the last checkpoint (weights, AdamW m and v, as stored).
same() {  # label, run a, run b
    python3 - "$W/$2" "$W/$3" <<'EOF' >>"$LOG" 2>&1
import glob, json, sys
import h5py, numpy as np
a, b = sys.argv[1], sys.argv[2]
def metrics(d):
    rows = [json.loads(l) for l in open(d + "/metrics.jsonl")]
    return [(r.get("step"), r.get("loss"), r.get("grad_norm"), r.get("val_loss")) for r in rows
            if "loss" in r or "val_loss" in r]
ma, mb = metrics(a), metrics(b)
if not ma or ma != mb:
    for x, y in zip(ma, mb):
        if x != y: print("metrics differ:", x, y); break
    print("metrics rows", len(ma), len(mb)); sys.exit(1)
def last(d): return sorted(glob.glob(d + "/ckpt_*.h5"))[-1]
fa, fb = h5py.File(last(a), "r"), h5py.File(last(b), "r")
names = []
for g in ("model", "optimizer"):
    if g in fa: fa[g].visit(lambda n, g=g: names.append(g + "/" + n))
bad = 0
for n in names:
    x = fa[n]
    if not isinstance(x, h5py.Dataset) or x.dtype.kind not in "fiu": continue
    if n not in fb: print("missing in b:", n); bad += 1; continue
    if x.shape != fb[n].shape or x[()].tobytes() != fb[n][()].tobytes():
        print("differs:", n); bad += 1
print("%s vs %s: %d metric rows, %d tensors compared, %d differ" % (a, b, len(ma), len(names), bad))
sys.exit(1 if bad or not names else 0)
EOF
    if [ $? = 0 ]; then echo "PASS $1"; else echo "FAIL $1 (see nccl.log)"; fails=$((fails + 1)); fi
}

for prec in fp32 bf16; do
    tiny plain_$prec --set system.precision=$prec
    tiny nccl0_$prec --set system.precision=$prec --set dist.reduce=nccl --set dist.zero=0
    tiny nccl1_$prec --set system.precision=$prec --set dist.reduce=nccl --set dist.zero=1
    same "$prec: dist.reduce=nccl ZeRO-0 at world 1 = the plain single-GPU run, to the bit" plain_$prec nccl0_$prec
    same "$prec: dist.reduce=nccl ZeRO-1 at world 1 = the plain single-GPU run, to the bit" plain_$prec nccl1_$prec
done
echo "tiny runs done, $(el)"
grep -h "^dist:" "$LOG" | sort | uniq | head -4

# Stopped (SIGTERM through the test hook) after step 15 under NCCL ZeRO-1, resumed on the plain
# path: the checkpoint held the full moments, gathered from the shard.
RUN_ENV="PEBBLE_TEST_SIGNAL_AT_STEP=15"
tiny resume_bf16 --set dist.reduce=nccl --set dist.zero=1
RUN_ENV=""
grep -q "stopped by SIGTERM after step 15" "$LOG" && echo "PASS the NCCL ZeRO-1 run stopped after step 15 with a checkpoint" || { echo "FAIL no stop at step 15"; fails=$((fails + 1)); }
echo "=== resume_bf16 (plain path): --resume auto" >>"$LOG"
timeout 60 build/pebble train $TINY --set run.dir=$W/resume_bf16 --resume auto >>"$LOG" 2>&1
echo "--- resume rc=$?" >>"$LOG"
same "a NCCL ZeRO-1 checkpoint (step 15) resumed on the plain path = the straight run" plain_bf16 resume_bf16

# The launchers at world 1: torchrun's convention (the id through the file in run.dir, removed
# after) and mpirun -np 1.
RUN_ENV="RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 PEBBLE_RDZV_TOKEN=nccl-run"
tiny torchrun_bf16 --set dist.reduce=nccl --set dist.zero=1
RUN_ENV=""
grep -q "torchrun launch" "$LOG" && echo "PASS torchrun-style launch named in the banner" || { echo "FAIL torchrun-style banner"; fails=$((fails + 1)); }
if ls -a "$W/torchrun_bf16" | grep -q "pebble-rdzv"; then echo "FAIL the id file was left in run.dir"; fails=$((fails + 1)); fi
same "torchrun-style world of 1 (id file) = the plain run" plain_bf16 torchrun_bf16
if command -v mpirun >/dev/null; then
    echo "=== mpirun -np 1" >>"$LOG"
    OMPI_MCA_btl_vader_single_copy_mechanism=none timeout 90 mpirun --allow-run-as-root -np 1 \
        build/pebble train $TINY --set run.dir=$W/mpirun_bf16 --set dist.reduce=nccl --set dist.zero=1 >>"$LOG" 2>&1
    rc=$?; echo "--- mpirun rc=$rc" >>"$LOG"
    [ $rc = 0 ] || { echo "FAIL mpirun -np 1: exit status $rc"; fails=$((fails + 1)); }
    same "mpirun -np 1 world of 1 = the plain run" plain_bf16 mpirun_bf16
else
    echo "SKIP mpirun: not on PATH"
fi
echo "launchers done, $(el)"

# GPT-2 124M, bf16, B=16 T=1024, 2 micro-batches a step, 12 steps: median ms/step of steps
# 4..12 (metrics.jsonl) on each path; their losses must agree to the bit as well.
BIG="-c configs/gpt2-124m.ini --set data.train=$W/train_*.bin --set data.val= --set sample.every=0 \
 --set system.device=cuda --set train.steps=12 --set train.total_batch_tokens=32768 --set train.warmup_steps=2 \
 --set checkpoint.every=0 --set run.plot=false"
for mode in plain:auto:0 nccl0:nccl:0 nccl1:nccl:1; do
    name=${mode%%:*}; rest=${mode#*:}; red=${rest%%:*}; zero=${rest##*:}
    echo "=== big_$name" >>"$LOG"
    timeout 120 build/pebble train $BIG --set run.dir=$W/big_$name --set dist.reduce=$red --set dist.zero=$zero >>"$LOG" 2>&1
    rc=$?; echo "--- big_$name rc=$rc" >>"$LOG"
    [ $rc = 0 ] || { echo "FAIL 124M $name: exit status $rc"; fails=$((fails + 1)); }
done
python3 - "$W" <<'EOF' 2>&1 | tee -a "$LOG"
import json, statistics, sys
w = sys.argv[1]
rows = {}
for n in ("plain", "nccl0", "nccl1"):
    try: rows[n] = [json.loads(l) for l in open("%s/big_%s/metrics.jsonl" % (w, n)) if '"loss"' in l]
    except OSError: rows[n] = []
base = None
print("GPT-2 124M bf16, 32768 tokens/step (2 x 16 x 1024), median of steps 4..12:")
for n, r in rows.items():
    ms = [x["ms"] for x in r if x["step"] >= 4]
    if not ms: print("  %-6s no steps" % n); continue
    med = statistics.median(ms)
    base = base or med
    print("  %-6s %8.1f ms/step  %6.0f tok/s  (%+.1f%% vs plain)  losses %s" % (
        n, med, 32768 / med * 1000, 100 * (med / base - 1),
        "= plain" if [x["loss"] for x in r] == [x["loss"] for x in rows["plain"]] else "DIFFER"))
EOF
echo "124M done, $(el)"
[ $fails = 0 ] && echo "ALL PASS ($(el))" || echo "$fails FAILED ($(el))"
exit 0
