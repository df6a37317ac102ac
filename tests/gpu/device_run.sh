#!/bin/sh
# device_run.sh: one call on the GPU machine: build, GPU tests, benchmarks, the PyTorch peers
# and compute-sanitizer's memcheck, each under a time limit, logs under $OUT, summary last.
# Run from the repository root after `. .deps/env.sh` (see ../shared/device/README.md):
#   . .deps/env.sh && sh tests/gpu/device_run.sh            (with carry [".deps"])
# BUDGET (seconds, default 560) bounds the whole run; the memcheck gets what is left.
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
BUDGET=${BUDGET:-560}
start=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - start))); }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
    >"$OUT/build.log" 2>&1
cat "$OUT/build.log"

# The image has no pkg-config entries for the carried libraries: name them explicitly.
CUDA_LIBS="-L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcublasLt -lcudart_static -ldl -lrt -lpthread -lstdc++"
LIBS="-linih -lpcre2-8 -lm $CUDA_LIBS ${EXTRA_LIBS:-}"
make -k -j16 LDLIBS="$LIBS" build/pebble build/tests/gpu/test_cuda_ops build/tests/gpu/bench_cuda \
    >>"$OUT/build.log" 2>&1
if [ ! -x build/tests/gpu/test_cuda_ops ] || [ ! -x build/tests/gpu/bench_cuda ]; then
    # Another module mid-edit can break libpebble.a: build what the GPU suites need alone.
    echo "make failed (see build.log); building the GPU suites from their own sources" | tee -a "$OUT/build.log"
    grep -E "error|Error" "$OUT/build.log" | head -20
    mkdir -p build/gpu-only
    SRC="kernels/common.c kernels/ops.c kernels/cpu/ops_cpu.c kernels/cpu/matmul.c kernels/attention/naive.c
         kernels/attention/flash.c model/gpt2.c train/optim.c"
    objs=""
    for f in $SRC; do
        o=build/gpu-only/$(echo "$f" | tr / _).o
        cc -std=c11 -O3 -march=native -fopenmp -I. -D_GNU_SOURCE -c "$f" -o "$o" || exit 1
        objs="$objs $o"
    done
    for f in kernels/cuda/*.cu kernels/attention/*.cu; do
        o=build/gpu-only/$(basename "$f").o
        nvcc -O3 -std=c++17 -lineinfo -gencode arch=compute_90a,code=sm_90a -I. -c "$f" -o "$o" &
        objs="$objs $o"
    done
    wait
    mkdir -p build/tests/gpu
    cc -std=c11 -O3 -fopenmp -I. -D_GNU_SOURCE tests/gpu/test_cuda_ops.c $objs -o build/tests/gpu/test_cuda_ops \
        -fopenmp -lcriterion $CUDA_LIBS -lm >>"$OUT/build.log" 2>&1
    cc -std=c11 -O3 -fopenmp -I. -D_GNU_SOURCE tests/gpu/bench_cuda.c $objs -o build/tests/gpu/bench_cuda \
        -fopenmp $CUDA_LIBS -lm >>"$OUT/build.log" 2>&1
fi
[ -x build/pebble ] && ldd build/pebble | grep -E "cuda|cublas|nvidia" >>"$OUT/build.log"
echo "build done at $(($(date +%s) - start)) s"

t=$(left); [ "$t" -gt 200 ] && t=200
timeout "$t" build/tests/gpu/test_cuda_ops --jobs 1 >"$OUT/test.log" 2>&1
echo "tests rc=$? at $(($(date +%s) - start)) s"

# End to end: `pebble train` on the GPU and on the CPU from the same seed and data (a
# learnable synthetic shard), 20 steps; the two loss curves side by side.
if [ -x build/pebble ]; then
    mkdir -p /tmp/e2e
    python3 -c "
import numpy as np
n = 200000; i = np.arange(n)
tok = ((i * 7 + i // 13) % 500).astype(np.uint16)
hdr = np.zeros(256, np.int32); hdr[0] = 20240520; hdr[1] = 1; hdr[2] = n
open('/tmp/e2e/train_000.bin', 'wb').write(hdr.tobytes() + tok.tobytes())"
    for dev in cuda cpu; do
        timeout 60 build/pebble train -c configs/gpt2-tiny.ini --set "data.train=/tmp/e2e/train_*.bin" \
            --set data.val= --set system.device=$dev --set train.steps=20 --set run.plot=false \
            --set run.dir=/tmp/e2e/run_$dev >"/tmp/e2e/$dev.log" 2>&1
        echo "pebble train device=$dev rc=$?"
    done
    python3 -c "
import json
r = {d: [json.loads(l) for l in open('/tmp/e2e/run_%s/metrics.jsonl' % d)] for d in ('cuda', 'cpu')}
r = {d: [x for x in v if 'loss' in x and 'step' in x] for d, v in r.items()}
for a, b in zip(r['cuda'], r['cpu']): print('step %3d  loss cuda %.6f  cpu %.6f' % (a['step'], a['loss'], b['loss']))
" >"$OUT/e2e.txt" 2>&1
    head -3 /tmp/e2e/cuda.log >>"$OUT/e2e.txt"
    tail -4 "$OUT/e2e.txt"
fi

t=$(left); [ "$t" -gt 150 ] && t=150
timeout "$t" build/tests/gpu/bench_cuda ${BENCH_ARGS:-} >"$OUT/bench.log" 2>&1
echo "bench rc=$? at $(($(date +%s) - start)) s"

t=$(left); [ "$t" -gt 150 ] && t=150
PYTHONUNBUFFERED=1 timeout "$t" python3 .deps/bench/torch_gpt2.py --batch 16 32 >"$OUT/peer.log" 2>&1
echo "peer gpt2 rc=$? at $(($(date +%s) - start)) s"

t=$(left); [ "$t" -gt 60 ] && t=60
PYTHONUNBUFFERED=1 timeout "$t" python3 .deps/bench/torch_sdpa.py --seq 1024 4096 16384 --backends flash \
    >>"$OUT/peer.log" 2>&1
echo "peer sdpa rc=$? at $(($(date +%s) - start)) s"

t=$(($(left) - 15))
if [ "$t" -gt 30 ]; then
    timeout "$t" compute-sanitizer --tool memcheck --target-processes all \
        build/tests/gpu/test_cuda_ops --jobs 1 >"$OUT/memcheck.log" 2>&1
    echo "memcheck rc=$? at $(($(date +%s) - start)) s"
fi

echo "===== summary"
grep -E "Synthesis|FAIL|Assertion|rel [0-9].*tol" "$OUT/test.log" | grep -E "Synthesis|FAIL|Assertion" | head -40
grep -E "^\|" "$OUT/bench.log" | grep -v -E "^\| (gelu|residual|scale|sumsq|encoder|zero)"
grep -E "tok_per_s|fwdbwd_tflops" "$OUT/peer.log" | head -20
grep -E "ERROR SUMMARY|Synthesis" "$OUT/memcheck.log" 2>/dev/null | tail -3
