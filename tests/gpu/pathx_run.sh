#!/bin/sh
# pathx_run.sh: the Path-X (T = 16,384) and Path-256 (T = 65,536) pipeline in one call on the
# GPU machine: images made there (`pebble lra gen pathfinder`, a small N), a few training steps
# of configs/lra-pathx.ini and configs/lra-path256.ini with dense and with block-sparse
# attention, validation and the test set at the end; step time and the GPU's peak memory of
# each, from which the epoch time and the GPU time of the published recipe follow.
# From the repository root, after `. .deps/env.sh`, with cairo and its libraries in .deps
# (README, "Long Range Arena data"). Logs: $OUT/pathx.log; a table last.
#   N128, N256  images generated (default 2000, 400; split 80/10/10)   STEPS (default 6)
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
LOG="$OUT/pathx.log"
: >"$LOG"
t0=$(date +%s)
el() { echo "$(($(date +%s) - t0)) s"; }
make -j16 build/pebble >>"$LOG" 2>&1 || { tail -20 "$LOG"; exit 1; }
STEPS=${STEPS:-6}
row() {  # name config res T micro-batch extra...
    name=$1 cfg=$2 res=$3 T=$4 B=$5
    shift 5
    d=/tmp/pf$res
    rm -rf /tmp/px_$name
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >/tmp/mem_$name.txt &
    smi=$!
    timeout 150 build/pebble train -c $cfg --set data.train=$d/train.lseq --set data.val=$d/val.lseq \
        --set data.test=$d/test.lseq --set run.dir=/tmp/px_$name --set run.plot=false \
        --set checkpoint.every=0 --set train.steps=$STEPS --set train.warmup_steps=2 \
        --set train.batch_size=$B --set train.total_batch_tokens=$((B * T)) --set train.val_every=0 \
        --set train.val_batches=2 "$@" >/tmp/px_$name.log 2>&1
    rc=$?
    kill $smi 2>/dev/null
    cat /tmp/px_$name.log >>"$LOG"
    mem=$(sort -n /tmp/mem_$name.txt | tail -1)
    # the median ms/step of the steps after the first
    ms=$(grep -E "^step [0-9]+/" /tmp/px_$name.log | tail -n +2 | sed 's/.*| \([0-9.]*\) ms\/step.*/\1/' |
         sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "-")}')
    att=$(head -1 /tmp/px_$name.log | sed 's/.*threads, \(.*\) attention.*/\1/')
    tst=$(grep -E "test loss" /tmp/px_$name.log | sed 's/.*test loss \([0-9.]*\) accuracy \([0-9.]*\).*/loss \1 acc \2/')
    echo "| $name | T $T | B $B | $att | rc $rc | $ms ms/step | $B images/step | peak GPU memory $mem MiB | test $tst |" |
        tee -a "$OUT/pathx_rows.txt"
}
: >"$OUT/pathx_rows.txt"
for res in 128 256; do
    n=$([ $res = 128 ] && echo ${N128:-2000} || echo ${N256:-400})
    rm -rf /tmp/pf$res
    build/pebble lra gen pathfinder --res $res --n $n --out /tmp/pf$res 2>&1 | tail -1 | tee -a "$LOG"
    echo "gen $res done, $(el)"
done
# dense: the configs' model.pad_token = 0 (the black pixels dropped); block-sparse: every pixel
# (its pattern is of positions, which the drop would move)
BS="--set model.attention=blocksparse --set attention.sparsity=local+global+random"
BS="$BS --set model.pad_token=-1"
row pathx-dense configs/lra-pathx.ini 128 16384 32
row pathx-bs configs/lra-pathx.ini 128 16384 32 $BS
row path256-dense configs/lra-path256.ini 256 65536 8
row path256-bs configs/lra-path256.ini 256 65536 8 $BS
echo "done, $(el)"
cat "$OUT/pathx_rows.txt"
rm -f "$OUT/pathx_rows.txt"
