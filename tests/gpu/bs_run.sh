#!/bin/sh
# bs_run.sh: one call on the GPU machine for the CUDA block-sparse attention: build, its GPU
# suite, compute-sanitizer memcheck on a subset, the benchmark, the FlexAttention peer, and
# ncu DRAM bytes of one dense and one block-sparse forward at T=65536 D=128 beside the tile
# model's prediction. From the repository root, after `. .deps/env.sh`. Under 300 s; logs in
# $OUT/bs.log (build, tests, memcheck, ncu) and $OUT/bs_bench.log (bench, peer); a summary last.
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
LOG="$OUT/bs.log" BENCH="$OUT/bs_bench.log"
: >"$LOG"
: >"$BENCH"
t0=$(date +%s)
el() { echo "$(($(date +%s) - t0)) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
make -j16 build/pebble build/tests/gpu/test_cuda_blocksparse build/tests/gpu/bench_blocksparse \
    >>"$LOG" 2>&1 || { tail -30 "$LOG"; exit 1; }
echo "build done, $(el)"

echo "== test_cuda_blocksparse" >>"$LOG"
timeout 120 build/tests/gpu/test_cuda_blocksparse --jobs 1 >>"$LOG" 2>&1
trc=$?
echo "test_cuda_blocksparse rc=$trc, $(el)"

echo "== memcheck (empty_rows: every kernel, BS walk, empty lists)" >>"$LOG"
timeout 60 compute-sanitizer --tool memcheck build/tests/gpu/test_cuda_blocksparse --jobs 1 \
    --filter '*/empty_rows' >"$OUT/mc.tmp" 2>&1
mrc=$?
cat "$OUT/mc.tmp" >>"$LOG"
echo "memcheck rc=$mrc, $(el)"

echo "== bench_blocksparse" >>"$BENCH"
timeout 60 build/tests/gpu/bench_blocksparse >>"$BENCH" 2>&1
echo "bench rc=$?, $(el)"
if [ "${FLEX:-1}" = 1 ]; then  # FLEX=0: without the FlexAttention peer
    echo "== torch_flex.py" >>"$BENCH"
    PYTHONUNBUFFERED=1 timeout 150 python3 .deps/bench/torch_flex.py --hd 64 128 --seq 16384 65536 \
        --density 0.1 0.25 >>"$BENCH" 2>&1
    echo "torch_flex rc=$?, $(el)"
fi

echo "== ncu T=65536 D=128: dense wgmma forward, then blocksparse forward (10%)" >>"$LOG"
timeout 60 ncu --clock-control none --metrics dram__bytes_read.sum,dram__bytes_write.sum \
    -k regex:wg_forward_kernel --launch-count 2 \
    build/tests/gpu/bench_blocksparse --ncu 65536 128 >"$OUT/ncu.tmp" 2>&1
echo "ncu rc=$?, $(el)"
cat "$OUT/ncu.tmp" >>"$LOG"
rm -f "$OUT/mc.tmp"

echo "---- summary"
grep -E "Synthesis|FAIL|rel .*\(tol" "$LOG" | grep -E "Synthesis|FAIL|fail" | head -30
grep -E "ERROR SUMMARY" "$LOG"
grep -E "^\| " "$BENCH"
grep -E '^\{' "$BENCH" | head -8
grep -E "wg_forward_kernel|dram__bytes|ncu-model|dense wgmma fwd|blocksparse fwd" "$OUT/ncu.tmp"
rm -f "$OUT/ncu.tmp"
exit 0
