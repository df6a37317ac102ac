#!/bin/sh
# lra_run.sh: a Long Range Arena task end to end in one call on the GPU machine: the data made
# there (`pebble lra gen`), configs/lra-TASK.ini trained under a wall-clock budget
# (train.time_limit), validation on the way, the test set at the end when the run finishes.
# The run's last checkpoint is copied to $OUT: the LRA models are small (Pathfinder-32's is
# 2.2 MB with AdamW's moments), so it comes back, and a later call continues the run from it
# (RESUME, the file put in the repository as an untracked file, which travels).
# From the repository root, after `. .deps/env.sh`:
#   TASK    listops (default), pathfinder32 (200,000 images at 32 x 32), pathfinder64 or pathx
#           (Path-X, 128 x 128: N images, default 200,000, about 4 minutes to make there)
#   N       images to make for pathfinder64 and pathx (default 200,000)
#   INIT    weights to start from (--init FILE: a Path-64 checkpoint through `pebble lra
#           upsample-pos`, FlashAttention's recipe), put in the repository as RESUME is
#   LIMIT   seconds of training (default 420)
#   STEPS   train.steps (default the config's)
#   EXTRA   more --set arguments for pebble train
#   NAME    names this run's logs and run directory (default TASK): several runs in one call,
#           side by side (start them after the data exist) or one after another
#   RESUME  a checkpoint to continue (--resume FILE; the data are made again, to the same bits)
#   SEEDS   listops: after the run, the last checkpoint's accuracy (`pebble eval`) on the
#           validation and test splits of the data sets of these other seeds too (e.g.
#           "2 3 4 5"; 2,000 trees a split, so each is one sample of the generator's task,
#           +-1.1 points), and their mean
# Logs under $OUT: lra_$NAME.log (the run's output), lra_$NAME.jsonl (metrics); a summary last.
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
t0=$(date +%s)
el() { echo "$(($(date +%s) - t0)) s"; }
make -j16 build/pebble >"$OUT/lra_build.log" 2>&1 || { tail -30 "$OUT/lra_build.log"; exit 1; }
rm -f "$OUT/lra_build.log"
echo "build done, $(el)"
TASK=${TASK:-listops}
case $TASK in
listops) GEN="listops" ;;
pathfinder32) GEN="pathfinder --res 32 --threads 16" ;;
pathfinder64) GEN="pathfinder --res 64 --threads 16 ${N:+--n $N}" ;;
pathx) GEN="pathfinder --res 128 --threads 16 ${N:+--n $N}" ;;
*) echo "lra_run.sh: TASK '$TASK' is not listops, pathfinder32, pathfinder64 or pathx"; exit 2 ;;
esac
D=/tmp/lra/$TASK${N:+_$N}
[ -f $D/test.lseq ] || build/pebble lra gen $GEN --out $D 2>&1 | tail -2
echo "data done, $(el)"
RUN=${NAME:-$TASK}  # the run's name (N is the image count)
LOG="$OUT/lra_$RUN.log"
R=/tmp/lra/run_$RUN
rm -rf $R
timeout $((${LIMIT:-420} + 120)) build/pebble train -c configs/lra-$TASK.ini \
    --set data.train=$D/train.lseq --set data.val=$D/val.lseq --set data.test=$D/test.lseq \
    --set run.dir=$R --set run.plot=false --set checkpoint.every=0 \
    --set train.time_limit=${LIMIT:-420} ${STEPS:+--set train.steps=$STEPS} ${EXTRA:-} \
    ${RESUME:+--resume $RESUME} ${INIT:+--init $INIT} >"$LOG" 2>&1
echo "train rc=$?, $(el)"
cp $R/metrics.jsonl "$OUT/lra_$RUN.jsonl" 2>/dev/null
last=$(ls $R/ckpt_*.h5 2>/dev/null | tail -1)
[ -n "$last" ] && cp "$last" "$OUT/lra_${RUN}_$(basename "$last")"
if [ "$TASK" = listops ] && [ -n "${SEEDS:-}" ] && [ -n "$last" ]; then
    for s in $SEEDS; do
        [ -f /tmp/lra/listops_s$s/test.lseq ] ||
            build/pebble lra gen listops --seed $s --train 100 --out /tmp/lra/listops_s$s >/dev/null
        for sp in val test; do
            a=$(build/pebble eval --ckpt "$last" --data /tmp/lra/listops_s$s/$sp.lseq | tail -1 |
                sed 's/.*accuracy \([0-9.]*\).*/\1/')
            echo "seed $s $sp accuracy $a" | tee -a "$LOG"
        done
    done | awk '{print; s += $5; n++} END {if (n) printf "mean of %d splits: %.4f\n", n, s / n}' |
        tee -a "$OUT/lra_${RUN}_seeds.txt"
fi
grep -E "^pebble |^data |^step (1|[0-9]*[05]00)/|val loss|test loss|stopped|done:|this run|rror" "$LOG" |
    tail -40
