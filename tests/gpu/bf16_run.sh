#!/bin/sh
# bf16_run.sh: one call on the GPU machine for the mixed-precision path: build, the GPU suites,
# the benchmark (bf16 rows, profile) and the torch.compile peer in the same call; logs under
# $OUT, a short table last. From the repository root, after `. .deps/env.sh`.
#   BENCH_ARGS  extra arguments for bench_cuda (default: --profile)
#   SKIP_TESTS=1  benchmark only;  MEMCHECK=1  also compute-sanitizer memcheck of the bf16 suite
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
timeout 150 build/tests/gpu/bench_cuda ${BENCH_ARGS:---profile} >"$OUT/bench.log" 2>&1
echo "bench rc=$?, $(el)"
PYTHONUNBUFFERED=1 timeout 150 python3 .deps/bench/torch_gpt2.py --batch 16 32 >"$OUT/torch.log" 2>&1
echo "torch rc=$?, $(el)"
if [ "${MEMCHECK:-0}" = 1 ]; then
    timeout 150 compute-sanitizer --tool memcheck --target-processes all \
        build/tests/gpu/test_cuda_bf16 --jobs 1 >"$OUT/memcheck.log" 2>&1
    echo "memcheck rc=$?, $(el)"
    grep -E "ERROR SUMMARY|Synthesis" "$OUT/memcheck.log" | sort | uniq -c
fi
tail -8 "$OUT/torch.log"
cat "$OUT/bench.log"
