#!/bin/sh
# core_run.sh: the transformer-core issue's one call on the GPU machine: the new tree and the
# tree before the change (its archive in .hwork-base, carried) built side by side; both GPU
# suites, memcheck of the masked attention tests, `pebble train` e2e, `pebble import` against
# transformers, then the GPT-2 124M + attention benchmark of both trees in the same call and
# the torch.compile peer. Logs under $OUT (8 files at most), a summary last.
# From the repository root: . .deps/env.sh && sh tests/gpu/core_run.sh
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
t0=$(date +%s)
el() { echo "$(($(date +%s) - t0)) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
( cd .hwork-base && make -j6 build/tests/gpu/bench_cuda >/tmp/base_build.log 2>&1; echo "base build rc=$?" >>/tmp/base_build.log ) &
make -j10 build/pebble build/tests/gpu/test_cuda_bf16 build/tests/gpu/test_cuda_ops \
    build/tests/gpu/bench_cuda build/tests/gpu/hf_logits >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
wait
cat /tmp/base_build.log | tail -3 >>"$OUT/build.log"
echo "builds done, $(el)"; tail -1 "$OUT/build.log"

T="$OUT/tests.log"
timeout 150 build/tests/gpu/test_cuda_bf16 --jobs 1 >"$T" 2>&1; echo "test_cuda_bf16 rc=$?, $(el)"
timeout 100 build/tests/gpu/test_cuda_ops --jobs 1 >>"$T" 2>&1; echo "test_cuda_ops rc=$?, $(el)"
timeout 100 compute-sanitizer --tool memcheck build/tests/gpu/test_cuda_bf16 --jobs 1 \
    --filter '*/*mask*' >>"$T" 2>&1; echo "memcheck bf16 masked rc=$?, $(el)"
timeout 100 compute-sanitizer --tool memcheck build/tests/gpu/test_cuda_ops --jobs 1 \
    --filter '*/*mask*' >>"$T" 2>&1; echo "memcheck fp32 masked rc=$?, $(el)"
grep -E "Synthesis|FAIL|ERROR SUMMARY" "$T"

OUT=/tmp/e2e-out SKIP_TESTS=1 BENCH=0 E2E=1 sh tests/gpu/bf16_run.sh 2>&1 | grep -v "build done"
cp /tmp/e2e-out/e2e.txt "$OUT/e2e.txt"
echo "e2e done, $(el)"

timeout 120 python3 tests/gpu/check_hf_import.py /tmp/hf-import >"$OUT/hf_import.log" 2>&1
echo "check_hf_import rc=$?, $(el)"; grep -E "max \||FAIL|Error" "$OUT/hf_import.log"

timeout 130 build/tests/gpu/bench_cuda >"$OUT/bench_new.log" 2>&1; echo "bench new rc=$?, $(el)"
( cd .hwork-base && timeout 130 build/tests/gpu/bench_cuda ) >"$OUT/bench_old.log" 2>&1; echo "bench old rc=$?, $(el)"
if [ $(($(date +%s) - t0)) -lt 430 ]; then
    PYTHONUNBUFFERED=1 timeout 120 python3 .deps/bench/torch_gpt2.py --batch 16 32 >"$OUT/torch.log" 2>&1
    echo "torch rc=$?, $(el)"; tail -4 "$OUT/torch.log"
fi
grep -E "^\| gpt2-124m" "$OUT/bench_new.log" | head -4
grep -E "^\| gpt2-124m" "$OUT/bench_old.log" | head -4
exit 0
