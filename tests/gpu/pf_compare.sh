#!/bin/sh
# pf_compare.sh: Pathfinder-32 in one call on the GPU machine, pebble beside the independent
# PyTorch model of Nystromformer's architecture (dev/lra/pathfinder_torch.py), on the same
# 200,000 images made there, all runs side by side on the one GPU (so their step times are
# not timings; lra_run.sh alone is): which of the reference's differences move the accuracy.
# From the repository root, after `. .deps/env.sh`:
#   STEPS  steps of every run (default 15600, configs/lra-pathfinder32.ini's)
#   LIMIT  seconds each run may train (default 420)
#   RUNS   which runs (default "pebble"; four side by side take ~31 ms a step each,
#          so 15,600 steps do not fit LIMIT 400: the runs stop with a checkpoint, which
#          lra_run.sh copies to $OUT for a RESUME):
#          pebble        configs/lra-pathfinder32.ini as it is
#          sN            the same with train.seed = N (N a number: how the recipe varies
#                        with the training seed; the fifteenth session's seeds 2-4 ended at
#                        68.10%, 67.56% and chance)
#          relu          the same with model.pooler = relu (LRA's classifier head)
#          raw           the same with model.embed_norm = false (no embedding LayerNorm)
#          adrop         the same with model.attn_dropout = 0.1 (wgmma's dropout)
#          ref           both: the reference's architecture but for its ReLU head
#          refrelu       all three: the reference's architecture in pebble
#          torch         the PyTorch model, the config's schedule (lr 1e-3, cosine, decay 0.1),
#                        its attention-probability dropout 0.1
#          torch_noattn  the same without attention-probability dropout
#   RESUME_FROM  a folder in the repository (it travels untracked) holding a previous call's
#          lra_pf_NAME_ckpt_*.h5 from $OUT: each pebble run continues from its own there
#   CHECK  1 (default): first the GPU cases of what these runs use that were new in the
#          thirteenth and fourteenth sessions (test_cuda_bf16's attention dropout,
#          test_cuda_bert's raw embeddings and ReLU head); a failure stops the script before
#          any run. 0: skip them.
# Logs under $OUT: pf_NAME.log per run; the validation lines and test rows last.
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT"
STEPS=${STEPS:-15600}
LIMIT=${LIMIT:-420}
RUNS=${RUNS:-pebble}
t0=$(date +%s)
make -j16 build/pebble build/tests/gpu/test_cuda_bf16 build/tests/gpu/test_cuda_bert \
    >"$OUT/pf_build.log" 2>&1 || { tail -30 "$OUT/pf_build.log"; exit 1; }
rm -f "$OUT/pf_build.log"
if [ "${CHECK:-1}" = 1 ]; then
    build/tests/gpu/test_cuda_bf16 --filter 'bf16/attention*' >"$OUT/pf_check.log" 2>&1 &&
        build/tests/gpu/test_cuda_bert --filter 'cuda_bert/pathfinder32*' >>"$OUT/pf_check.log" 2>&1
    rc=$?
    grep -E "Synthesis|FAIL|Assertion" "$OUT/pf_check.log" | head -20
    [ $rc = 0 ] || { echo "pf_compare.sh: the GPU checks failed (rc $rc): no runs"; exit 1; }
    echo "checks done, $(($(date +%s) - t0)) s"
fi
D=/tmp/lra/pathfinder32
[ -f $D/test.lseq ] || build/pebble lra gen pathfinder --res 32 --threads 16 --out $D 2>&1 | tail -1
echo "data done, $(($(date +%s) - t0)) s"
TORCH="/usr/bin/env python3 dev/lra/pathfinder_torch.py $D --steps $STEPS --lr 1e-3 --wd 0.1"
TORCH="$TORCH --cosine --time-limit $LIMIT"
# a pebble run: its name and its --set arguments; from RESUME_FROM's checkpoint of it if any
prun() {
    ck=$(ls "${RESUME_FROM:-/nonexistent}"/lra_pf_$1_ckpt_*.h5 2>/dev/null | tail -1)
    NAME=pf_$1 TASK=pathfinder32 LIMIT=$LIMIT STEPS=$STEPS EXTRA="$2" RESUME="$ck" \
        sh tests/gpu/lra_run.sh >/dev/null 2>&1
}
AD="--set model.attn_dropout=0.1" RAW="--set model.embed_norm=false" RELU="--set model.pooler=relu"
for r in $RUNS; do
    case $r in
    pebble) prun pebble "" ;;
    s[0-9]*) prun "$r" "--set train.seed=${r#s}" ;;
    relu) prun relu "$RELU" ;;
    raw) prun raw "$RAW" ;;
    adrop) prun adrop "$AD" ;;
    ref) prun ref "$AD $RAW" ;;
    refrelu) prun refrelu "$AD $RAW $RELU" ;;
    torch) $TORCH >"$OUT/pf_torch.log" 2>&1 ;;
    torch_noattn) $TORCH --attn-dropout 0 >"$OUT/pf_torch_noattn.log" 2>&1 ;;
    *) echo "pf_compare.sh: run '$r' is not pebble, sN, relu, raw, adrop, ref, refrelu, torch" \
            "or torch_noattn" ;;
    esac &
done
wait
echo "runs done, $(($(date +%s) - t0)) s"
for r in $RUNS; do
    f="$OUT/pf_$r.log"
    [ -f "$f" ] || f="$OUT/lra_pf_$r.log"
    echo "== $r"
    grep -E "val loss|test loss|stopped" "$f" | awk 'NR % 4 == 0' | tail -8
    grep -E "test loss|^done" "$f" | tail -2
done
