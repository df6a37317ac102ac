#!/bin/sh
# bert_run.sh: the BERT issue's calls on the GPU machine, from the repository root:
#     . .deps/env.sh && PHASE=1 sh tests/gpu/bert_run.sh   # build, GPU suites, transformers
#     . .deps/env.sh && PHASE=2 sh tests/gpu/bert_run.sh   # pebble's BERT bench and the peer
#     . .deps/env.sh && PHASE=3 sh tests/gpu/bert_run.sh   # the BERT suite, transformers, bench
#                                                          # and peer in one call (short budget)
# Phase 1: every GPU suite (BERT's new one, and the fp32 and bf16 ones the changed ops touch),
# memcheck of the BERT suite, tests/gpu/check_hf_bert.py (export -> from_pretrained, logits
# and loss). Phase 2: make bench-gpu's BERT and GPT-2 rows, then ../shared/bench/torch_bert.py
# in the same call (base T=128 B=256, T=512 B=32, the same with 30% padding, large T=512
# B=16). Logs under $OUT (8 files at most), a summary on stdout.
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
t0=$(date +%s)
el() { echo "$(($(date +%s) - t0)) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
make -j16 build/pebble build/tests/gpu/test_cuda_bert build/tests/gpu/test_cuda_ops \
    build/tests/gpu/test_cuda_bf16 build/tests/gpu/bench_cuda build/tests/gpu/hf_logits \
    >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build done, $(el)"
if [ "${PHASE:-1}" = 3 ]; then
    T="$OUT/tests.log"
    timeout 60 build/tests/gpu/test_cuda_bert --jobs 1 --verbose >"$T" 2>&1; echo "test_cuda_bert rc=$?, $(el)"
    timeout 60 compute-sanitizer --tool memcheck build/tests/gpu/test_cuda_bert --jobs 1 \
        --filter '*/*bf16*' >"$OUT/memcheck.log" 2>&1; echo "memcheck test_cuda_bert bf16 rc=$?, $(el)"
    grep -E "Synthesis|FAIL|ERROR SUMMARY" "$T" "$OUT/memcheck.log"
    grep -E "loss:|all gradients|10 steps" "$T"
    timeout 90 python3 tests/gpu/check_hf_bert.py /tmp/hf-bert >"$OUT/hf_bert.log" 2>&1
    echo "check_hf_bert rc=$?, $(el)"; grep -v Loading "$OUT/hf_bert.log" | tail -8
    cp /tmp/hf-bert/hf_names.txt "$OUT/hf_names.txt" 2>/dev/null
    timeout 90 build/tests/gpu/bench_cuda --no-gpt2 --no-attention >"$OUT/bench.log" 2>&1; echo "bench rc=$?, $(el)"
    grep -E "^\| bert" "$OUT/bench.log"
    P="$OUT/peer.log"
    : >"$P"
    for a in "--size base --seq 512 --batch 32" "--size base --seq 128 --batch 256" \
             "--size base --seq 512 --batch 32 --pad 0.3" "--size large --seq 512 --batch 16"; do
        [ $(($(date +%s) - t0)) -lt ${PEER_UNTIL:-380} ] || { echo "skipped peer $a: time"; continue; }
        PYTHONUNBUFFERED=1 timeout 90 python3 .deps/bench/torch_bert.py $a --steps 10 >>"$P" 2>&1
        echo "peer $a rc=$?, $(el)"
    done
    grep '"peer"' "$P"
elif [ "${PHASE:-1}" = 1 ]; then
    T="$OUT/tests.log"
    timeout 120 build/tests/gpu/test_cuda_bert --jobs 1 --verbose >"$T" 2>&1; echo "test_cuda_bert rc=$?, $(el)"
    timeout 150 build/tests/gpu/test_cuda_bf16 --jobs 1 >>"$T" 2>&1; echo "test_cuda_bf16 rc=$?, $(el)"
    timeout 100 build/tests/gpu/test_cuda_ops --jobs 1 >>"$T" 2>&1; echo "test_cuda_ops rc=$?, $(el)"
    timeout 120 compute-sanitizer --tool memcheck build/tests/gpu/test_cuda_bert --jobs 1 \
        >"$OUT/memcheck.log" 2>&1; echo "memcheck test_cuda_bert rc=$?, $(el)"
    grep -E "Synthesis|FAIL|ERROR SUMMARY" "$T" "$OUT/memcheck.log"
    grep -E "Assertion|rel [0-9.e-]+ " "$T" | grep -iE "bert|fail|Assert" | head -60
    timeout 200 python3 tests/gpu/check_hf_bert.py /tmp/hf-bert >"$OUT/hf_bert.log" 2>&1
    echo "check_hf_bert rc=$?, $(el)"; cat "$OUT/hf_bert.log" | tail -12
    cp /tmp/hf-bert/hf_names.txt "$OUT/hf_names.txt" 2>/dev/null
else
    timeout 150 build/tests/gpu/bench_cuda --no-attention >"$OUT/bench.log" 2>&1; echo "bench rc=$?, $(el)"
    grep -E "^\| (gpt2|bert)" "$OUT/bench.log"
    P="$OUT/peer.log"
    : >"$P"
    for a in "--size base --seq 128 --batch 256" "--size base --seq 512 --batch 32" \
             "--size base --seq 512 --batch 32 --pad 0.3" "--size large --seq 512 --batch 16"; do
        [ $(($(date +%s) - t0)) -lt 500 ] || { echo "skipped peer $a: time"; continue; }
        PYTHONUNBUFFERED=1 timeout 150 python3 .deps/bench/torch_bert.py $a >>"$P" 2>&1
        echo "peer $a rc=$?, $(el)"
    done
    grep '"peer"' "$P"
fi
