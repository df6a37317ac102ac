#!/bin/sh
# sc_run.sh: the small-cache CUDA attention's one call on the GPU machine: build, its suite
# (test_cuda_smallcache) and the bf16 suite's choose test, compute-sanitizer memcheck of the
# chunked tests, the benchmark (bench_smallcache), the PyTorch SDPA peer at D 256 and 512,
# one ncu DRAM measurement of the forward beside the bytes the design predicts, and a
# 20-step `pebble train` at head dim 256 (model.attention = auto picks smallcache).
# Logs: $OUT/sc.log (build, tests, memcheck, e2e) and $OUT/sc_bench.log (benchmark, peer,
# ncu); a summary last. From the repository root: . .deps/env.sh && sh tests/gpu/sc_run.sh
# NO_PEER=1 skips the SDPA peer (its numbers from an earlier call stand in PERF.md).
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
L="$OUT/sc.log" BL="$OUT/sc_bench.log"
: >"$L"; : >"$BL"
t0=$(date +%s)
el() { echo "$(($(date +%s) - t0)) s"; }
left() { [ $(($(date +%s) - t0)) -lt "$1" ]; }  # still before second $1 of the call
say() { echo "$*" | tee -a "$L"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee -a "$L"
make -j16 build/pebble build/tests/gpu/test_cuda_smallcache build/tests/gpu/test_cuda_bf16 \
    build/tests/gpu/bench_smallcache >/tmp/sc_build.log 2>&1 || { tail -30 /tmp/sc_build.log | tee -a "$L"; exit 1; }
say "build done, $(el)"

timeout 100 build/tests/gpu/test_cuda_smallcache --jobs 1 --verbose >>"$L" 2>&1
say "test_cuda_smallcache rc=$?, $(el)"
timeout 30 build/tests/gpu/test_cuda_bf16 --jobs 1 --filter 'bf16/attention_choose' >>"$L" 2>&1
say "test_cuda_bf16 attention_choose rc=$?, $(el)"
if left 120; then
    timeout 60 compute-sanitizer --tool memcheck build/tests/gpu/test_cuda_smallcache --jobs 1 \
        --filter 'smallcache/chunks' >>"$L" 2>&1
    say "memcheck smallcache/chunks rc=$?, $(el)"
fi

timeout 60 build/tests/gpu/bench_smallcache >>"$BL" 2>&1
say "bench_smallcache rc=$?, $(el)"
if left 150; then
    echo "## ncu: smallcache forward, T 16384, D 512, not causal" >>"$BL"
    timeout 40 ncu --profile-from-start off --clock-control none \
        --metrics dram__bytes_read.sum,dram__bytes_write.sum --csv --print-units base \
        build/tests/gpu/bench_smallcache --ncu 16384 512 0 >/tmp/sc_ncu.txt 2>&1
    say "ncu rc=$?, $(el)"
    grep -v '^"' /tmp/sc_ncu.txt | grep -v '^==PROF==' | tail -3 >>"$BL"
    python3 - /tmp/sc_ncu.txt >>"$BL" 2>&1 <<'EOF'
import csv, sys
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
head, sums, kernels = rows[0], {}, set()
name, value, kid = head.index("Metric Name"), head.index("Metric Value"), head.index("ID")
for r in rows[1:]:
    sums[r[name]] = sums.get(r[name], 0.0) + float(r[value].replace(",", ""))
    kernels.add(r[kid])
print("measured DRAM bytes over %d kernels: read %.3f GB, write %.3f GB" % (
    len(kernels), sums.get("dram__bytes_read.sum", 0) / 1e9, sums.get("dram__bytes_write.sum", 0) / 1e9))
EOF
fi

if left 170; then
    # 20 steps on a learnable synthetic shard, gpt2-tiny widened to C = 512 with 2 heads
    # (D = 256): cuda bf16 and fp32, both auto (smallcache); their losses side by side
    mkdir -p /tmp/sc_e2e
    python3 -c "
import numpy as np
n = 200000; i = np.arange(n)
tok = ((i * 7 + i // 13) % 500).astype(np.uint16)
hdr = np.zeros(256, np.int32); hdr[0] = 20240520; hdr[1] = 1; hdr[2] = n
open('/tmp/sc_e2e/train_000.bin', 'wb').write(hdr.tobytes() + tok.tobytes())"
    for prec in auto fp32; do
        rm -rf /tmp/sc_e2e/run_$prec
        timeout 40 build/pebble train -c configs/gpt2-tiny.ini --set "data.train=/tmp/sc_e2e/train_*.bin" \
            --set data.val= --set model.n_embd=512 --set model.n_head=2 --set system.device=cuda \
            --set system.precision=$prec --set train.steps=20 --set run.plot=false \
            --set sample.every=0 --set run.dir=/tmp/sc_e2e/run_$prec >/tmp/sc_e2e/$prec.log 2>&1
        say "pebble train D=256 precision=$prec rc=$?, $(el)"
        grep -iE "attention|error" /tmp/sc_e2e/$prec.log | head -3 | tee -a "$L"
    done
    python3 -c "
import json
def load(d): return [x for x in map(json.loads, open('/tmp/sc_e2e/run_%s/metrics.jsonl' % d)) if 'loss' in x and 'step' in x]
a, b = load('auto'), load('fp32')
for x, y in zip(a, b): print('step %3d  loss cuda-bf16 %.6f  cuda-fp32 %.6f' % (x['step'], x['loss'], y['loss']))
" >/tmp/sc_e2e/losses.txt 2>&1
    cat /tmp/sc_e2e/losses.txt >>"$L"
fi

if [ "${NO_PEER:-0}" = 1 ]; then
    say "torch_sdpa skipped (NO_PEER=1)"
elif left 215; then
    PYTHONUNBUFFERED=1 timeout $((235 - $(date +%s) + t0)) python3 .deps/bench/torch_sdpa.py \
        --hd 256 512 --seq 1024 4096 16384 >>"$BL" 2>&1
    say "torch_sdpa rc=$?, $(el)"
fi

echo "=== summary ($(el))"
grep -E "Synthesis|ERROR SUMMARY" "$L"
grep -E "rel .* \(tol" "$L" | awk '{ if ($0 ~ /FAIL/) print }' | head
grep -E "^\[FAIL\]|Assertion|error" "$L" | head -10
sed -n '1,3p;5,30p' /tmp/sc_e2e/losses.txt 2>/dev/null | sed -n '1p;10p;20p'
grep -E "^\| |predicted|measured" "$BL"
grep -E '"hd": (256|512)' "$BL" | python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    print('sdpa %-9s D %3d T %5d causal %-5s fwd %s ms  fwd+bwd %s ms  %s TFLOP/s' % (r['backend'], r['hd'], r['T'], r['causal'], r.get('fwd_ms', '-'), r.get('fwdbwd_ms', '-'), r.get('fwdbwd_tflops', r.get('error', ''))))" 2>/dev/null
exit 0
