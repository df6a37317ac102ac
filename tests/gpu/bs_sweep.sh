#!/bin/sh
# bs_sweep.sh: one call on the GPU machine that sweeps the block-sparse kernels' tile shapes
# (WG_BS_* at the top of kernels/attention/flash_wgmma_cuda.cu; the dense kernels' shapes
# never change). Builds libpebble.a once and, in parallel, flash_wgmma_cuda.cu once per
# variant (Makefile: BSV, BS_SHAPES), links each variant's bench_blocksparse, runs them one
# after another (`--quick`: the 8 rows of the FlexAttention table, no dense column), prints
# one table, picks per head dim and kernel the best measured shape (each variant changes at
# most one kernel per head dim, so the deltas add), builds that combination, benches it and
# runs test_cuda_blocksparse on it. From the repository root, after `. .deps/env.sh`.
# Under 240 s; logs in $OUT/bs_sweep.log, one bench output per variant in $OUT/sweep/.
#   VARIANTS='name|-DWG_BS_...=... -D...;name2|...'  other variants (base is always added)
#   TEST=0   no suite at the end      ITERS=N   fwd+bwd calls per row (median; default 7)
set -u
OUT=${OUT:-/tmp/pebble-out}
mkdir -p "$OUT/sweep"
LOG="$OUT/bs_sweep.log"
: >"$LOG"
t0=$(date +%s)
el() { echo "$(($(date +%s) - t0)) s"; }
ITERS=${ITERS:-7}
# Shapes: tile*100 + NWG*10 + MINB. T 16384 and 65536 both take the long dK/dV shape (KVL,
# T > WG_BS_LONG = 2048). Register use (ptxas, CUDA 13) of each, as CTAs x warps per SM:
#   D 64  dK/dV  12821 today: 255 regs, 88 B spill, 1 x 8 | 6413: 168, 64 B spill, 3 x 4
#                6412: 210, no spill, 2 x 4               | 6421: 196, no spill, 1 x 8
#   D 64  dQ     6422 today (the sweep's pick; 6413 before): 128, no spill, 2 x 8 | 6413: 153, 3 x 4 | 12811: 242, 2 x 4
#                12821: 221, 1 x 8
#   D 128 dK/dV  6421 today: 252, 1 x 8 | 6412: 255, 104 B spill, 2 x 4 (BQ 128 spills ~1 KB)
#   D 128 dQ     12821 today: 254, 64 B spill, 1 x 8 | 6421: 194, no spill, 1 x 8
#                6412: 216, no spill, 2 x 4
#   D 128 fwd    12821 today: 255, 1 x 8 | 6421: 198, 1 x 8
DEF_VARIANTS='kv1|-DWG_BS_KVL64=6413 -DWG_BS_KVL128=6412;kv2|-DWG_BS_KVL64=6412 -DWG_BS_DQ128=6421;kv3|-DWG_BS_KVL64=6421 -DWG_BS_DQ128=6412;dq1|-DWG_BS_DQ64=6422 -DWG_BS_FWD128=6421;dq2|-DWG_BS_DQ64=12811;dq3|-DWG_BS_DQ64=12821'
VARIANTS="base|;${VARIANTS:-$DEF_VARIANTS};base2|"

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
rm -rf build/bsv
# the variants' objects compile beside libpebble.a's build (they need nothing of it)
names=""
IFS=';'
for v in $VARIANTS; do
    n=${v%%|*} f=${v#*|}
    names="$names $n"
    [ "$n" = base2 ] && continue  # the same build as base, run again last (drift)
    (IFS=' '; make BSV=build/bsv/$n BS_SHAPES="$f" build/bsv/$n/flash_wgmma_cuda.cu.o \
        >"$OUT/sweep/$n.build" 2>&1 || echo "BUILD FAILED $n" >>"$LOG") &
done
unset IFS
make -j10 build/libpebble.a >>"$LOG" 2>&1 || { tail -30 "$LOG"; exit 1; }
wait
grep "BUILD FAILED" "$LOG" && { for f in "$OUT"/sweep/*.build; do tail -5 "$f"; done; exit 1; }
IFS=';'
for v in $VARIANTS; do
    n=${v%%|*} f=${v#*|}
    [ "$n" = base2 ] && continue
    (IFS=' '; make BSV=build/bsv/$n BS_SHAPES="$f" build/bsv/$n/bench_blocksparse \
        >>"$OUT/sweep/$n.build" 2>&1 || echo "LINK FAILED $n" >>"$LOG") &
done
unset IFS
wait
grep "LINK FAILED" "$LOG" && exit 1
echo "builds done, $(el)"

for n in $names; do
    b=$n; [ "$n" = base2 ] && b=base
    timeout 40 build/bsv/$b/bench_blocksparse --quick "$ITERS" >"$OUT/sweep/$n.txt" 2>&1
    echo "$n rc=$?, $(el)"
done

# the table, and the best shape per (head dim, kernel) under the additive model
VARIANTS="$VARIANTS" python3 - "$OUT/sweep" >"$OUT/sweep/pick.txt" <<'EOF'
import os, re, sys
d = sys.argv[1]
vs = [v.split('|', 1) for v in os.environ['VARIANTS'].split(';') if v]
rows, res = [], {}
for n, f in vs:
    res[n] = {}
    try:
        for line in open(os.path.join(d, n + '.txt')):
            c = [x.strip() for x in line.strip().strip('|').split('|')]
            if len(c) >= 8 and c[0].isdigit():
                key = (int(c[0]), int(c[1]), c[4])
                res[n][key] = (float(c[5]), float(c[7]))
                if key not in rows: rows.append(key)
    except OSError:
        pass
def sh(f, D):  # {kernel: shape} this variant sets for head dim D
    return {k: v for k, dd, v in re.findall(r'-DWG_BS_([A-Z]+?)(64|128)=(\d+)', f) if int(dd) == D}
hdr = ' | '.join('D%d T%dK %.0f%%' % (D, T // 1024, float(s) * 100) for D, T, s in rows)
print('fwd+bwd ms (fwd ms) per row\n| variant | shapes | ' + hdr + ' |')
print('|---|---|' + '---|' * len(rows))
for n, f in vs:
    cells = ['%.3f (%.3f)' % (res[n][r][1], res[n][r][0]) if r in res[n] else '-' for r in rows]
    print('| %s | %s | %s |' % (n, f.strip() or 'defaults', ' | '.join(cells)))
best = []
for D in sorted({r[0] for r in rows}):
    rD = [r for r in rows if r[0] == D]
    base = [n for n, f in vs if not sh(f, D) and all(r in res[n] for r in rD)]
    if not base: continue
    ref = {r: sum(res[n][r][1] for n in base) / len(base) for r in rD}
    print('\nD %d: reference = mean of %s; ratio = mean over its rows of fwd+bwd / reference' % (D, ' '.join(base)))
    cand = {}
    for n, f in vs:
        s = sh(f, D)
        if not s or not all(r in res[n] for r in rD): continue
        (k, v), = s.items() if len(s) == 1 else [(None, None)]
        if k is None: print('  %s sets more than one kernel: skipped' % n); continue
        ratio = sum(res[n][r][1] / ref[r] for r in rD) / len(rD)
        print('  %s: WG_BS_%s%d=%s ratio %.4f' % (n, k, D, v, ratio))
        if ratio < cand.get(k, ('', 0.99))[1]: cand[k] = (v, ratio)  # 1% below noise
    for k, (v, ratio) in sorted(cand.items()):
        best.append('-DWG_BS_%s%d=%s' % (k, D, v))
print('\nBEST ' + ' '.join(best))
EOF
cat "$OUT/sweep/pick.txt"
BEST=$(sed -n 's/^BEST //p' "$OUT/sweep/pick.txt")
T=base
if [ -n "$BEST" ]; then
    make BSV=build/bsv/best BS_SHAPES="$BEST" build/bsv/best/bench_blocksparse \
        >"$OUT/sweep/best.build" 2>&1 || { tail -20 "$OUT/sweep/best.build"; exit 1; }
    timeout 40 build/bsv/best/bench_blocksparse --quick "$ITERS" >"$OUT/sweep/best.txt" 2>&1
    echo "best ($BEST) rc=$?, $(el)"
    grep -E '^\| [0-9]' "$OUT/sweep/best.txt" | awk -F'|' '{printf "  D %s T %s density %s: fwd %s fwd+bwd %s ms\n", $2, $3, $6, $7, $9}'
    T=best
fi
if [ "${TEST:-1}" = 1 ]; then
    make BSV=build/bsv/$T BS_SHAPES="$BEST" build/bsv/$T/test_cuda_blocksparse >>"$LOG" 2>&1 &&
        timeout 100 build/bsv/$T/test_cuda_blocksparse --jobs 1 >"$OUT/sweep/test_$T.log" 2>&1
    echo "test_cuda_blocksparse ($T) rc=$?, $(el)"
    grep -E "Synthesis|FAIL" "$OUT/sweep/test_$T.log" | head -20
fi
exit 0
