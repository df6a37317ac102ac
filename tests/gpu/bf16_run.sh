#!/bin/sh
# bf16_run.sh: one call on the GPU machine for the mixed-precision path: build, the GPU suites,
# the benchmark (bf16 rows, profile) and the torch.compile peer in the same call; logs under
# $OUT, a short table last. From the repository root, after `. .deps/env.sh`.
#   BENCH_ARGS  extra arguments for bench_cuda (default: --profile)
#   SKIP_TESTS=1  benchmark only;  MEMCHECK=1  also compute-sanitizer memcheck of the bf16 suite
#   E2E=1  also `pebble train` 20 steps: cuda bf16, cuda fp32, cpu, losses side by side
#   BENCH=0  no benchmark and no peer;  SDPA=1  also the FlashAttention-2 peer (torch_sdpa.py)
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
t0=$(date +%s)
el() { echo "$(($(date +%s) - t0)) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
make -j16 build/pebble build/tests/gpu/test_cuda_bf16 build/tests/gpu/test_cuda_ops \
    build/tests/gpu/bench_cuda >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build done, $(el)"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    timeout 150 build/tests/gpu/test_cuda_bf16 --jobs 1 >"$OUT/test_bf16.log" 2>&1
    echo "test_cuda_bf16 rc=$?, $(el)"
    timeout 100 build/tests/gpu/test_cuda_ops --jobs 1 >"$OUT/test_ops.log" 2>&1
    echo "test_cuda_ops rc=$?, $(el)"
    grep -E "Synthesis|FAIL|fail|rel .* \(tol" "$OUT/test_bf16.log" | grep -vE "^\s+\S+ +rel" | tail -60
    grep -E "Synthesis" "$OUT/test_ops.log"
fi
if [ "${E2E:-0}" = 1 ]; then
    # pebble train, 20 steps from one seed on a learnable synthetic shard: cuda bf16 (the
    # default), cuda fp32, cpu; gpt2-tiny with 2 heads (D = 64, which bf16 attention runs)
    mkdir -p /tmp/e2e
    python3 -c "
import numpy as np
n = 200000; i = np.arange(n)
tok = ((i * 7 + i // 13) % 500).astype(np.uint16)
hdr = np.zeros(256, np.int32); hdr[0] = 20240520; hdr[1] = 1; hdr[2] = n
open('/tmp/e2e/train_000.bin', 'wb').write(hdr.tobytes() + tok.tobytes())"
    for run in cuda:auto cuda:fp32 cpu:auto; do
        dev=${run%%:*} prec=${run##*:}
        timeout 90 build/pebble train -c configs/gpt2-tiny.ini --set "data.train=/tmp/e2e/train_*.bin" \
            --set data.val= --set model.n_head=2 --set system.device=$dev \
            --set system.precision=$prec --set train.steps=20 --set run.plot=false --set sample.every=0 \
            --set run.dir=/tmp/e2e/run_${dev}_$prec >"$OUT/e2e_${dev}_$prec.log" 2>&1
        echo "pebble train device=$dev precision=$prec rc=$?, $(el)"
    done
    python3 -c "
import json
def load(d): return [x for x in map(json.loads, open('/tmp/e2e/run_%s/metrics.jsonl' % d)) if 'loss' in x and 'step' in x]
a, b, c = load('cuda_auto'), load('cuda_fp32'), load('cpu_auto')
for x, y, z in zip(a, b, c): print('step %3d  loss cuda-bf16 %.6f  cuda-fp32 %.6f  cpu %.6f' % (x['step'], x['loss'], y['loss'], z['loss']))
" >"$OUT/e2e.txt" 2>&1
    sed -n '1p;5p;10p;15p;20p' "$OUT/e2e.txt"
fi
if [ "${BENCH:-1}" = 1 ]; then
    timeout 150 build/tests/gpu/bench_cuda ${BENCH_ARGS:---profile} >"$OUT/bench.log" 2>&1
    echo "bench rc=$?, $(el)"
    PYTHONUNBUFFERED=1 timeout 150 python3 .deps/bench/torch_gpt2.py --batch 16 32 >"$OUT/torch.log" 2>&1
    echo "torch rc=$?, $(el)"
fi
if [ "${SDPA:-0}" = 1 ]; then
    PYTHONUNBUFFERED=1 timeout 120 python3 .deps/bench/torch_sdpa.py --backends flash >"$OUT/sdpa.log" 2>&1
    echo "sdpa rc=$?, $(el)"
fi
if [ "${MEMCHECK:-0}" = 1 ]; then
    timeout 150 compute-sanitizer --tool memcheck --target-processes all \
        build/tests/gpu/test_cuda_bf16 --jobs 1 >"$OUT/memcheck.log" 2>&1
    echo "memcheck rc=$?, $(el)"
    grep -E "ERROR SUMMARY|Synthesis" "$OUT/memcheck.log" | sort | uniq -c
fi
[ "${BENCH:-1}" = 1 ] && tail -8 "$OUT/torch.log" && cat "$OUT/bench.log"
[ "${SDPA:-0}" = 1 ] && cat "$OUT/sdpa.log"
exit 0
