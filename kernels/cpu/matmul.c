// matmul.c: the CPU matmul: a cache-blocked, OpenMP-parallel GEMM with an AVX2/FMA micro-kernel.
//
// The three products of a linear layer are one routine, gemm(), on strided views:
//   forward   out     (N,OC)   = inp (N,IC) @ weight^T          k runs over IC
//   backward  dinp    (N,IC)  += dout (N,OC) @ weight (OC,IC)    k runs over OC
//             dweight (OC,IC) += dout^T @ inp (N,IC)             k runs over N
//
// Blocking, after Goto and BLIS: the k range is cut into KC slices. For each slice a KC x NC
// block of B is packed once, by all threads together, into panels of NR columns; each thread
// then packs an MC x KC block of A into panels of MR rows (it stays in that core's L2) and
// runs the MR x NR micro-kernel, which keeps a tile of C in 12 AVX registers while it streams
// one A panel and one B panel (L1) through the slice.
//
// Determinism: threads split the output rows (MC blocks) and nothing else. Every element of C
// is one chain of multiply-adds in k order, run by one thread with the same instructions
// whichever tile it falls in (edge tiles run the full kernel on a padded copy); between k
// slices the running sum is stored to C and reloaded, which is exact in fp32. So the result
// depends on none of the blocking sizes and not on the thread count.
#include "kernels/cpu/matmul.h"

#include <omp.h>
#include <string.h>

#include "kernels/common.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#define MR 6        // rows of the micro-tile
#define NR 16       // columns of the micro-tile: two 8-float AVX registers
#define KC 256      // k slice: a 6 x 256 A panel and a 256 x 16 B panel fit L1 together
#define MC_MAX 144  // rows of an A block: 144 x 256 floats = 144 KiB, in one core's L2
#define NC 2048     // columns of a B block: 256 x 2048 floats = 2 MiB, in the shared L3

static int imin(int a, int b) { return a < b ? a : b; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }

// A read-only strided matrix: element (r, c) is at p[r*rs + c*cs]. Lets one gemm() read
// weight, weight^T and dout^T without copying them first.
typedef struct {
    const float *p;
    size_t rs, cs;
} mview;

static const float *mview_at(mview m, int r, int c) {
    return m.p + (size_t)r * m.rs + (size_t)c * m.cs;
}

// ----------------------------------------------------------------------------
// micro-kernel: c (MR,NR) with row stride ldc gets init + a @ b, where a is a packed A panel
// (kc,MR) and b a packed B panel (kc,NR), both k-major. init is c's own value when load_c,
// else the row vector bias (NR) on every row, else 0. Each element is one chain of
// multiply-adds in k order.

#if defined(__AVX2__) && defined(__FMA__)
static void kernel_6x16(int kc, const float *a, const float *b, float *c, size_t ldc,
                        const float *bias, int load_c) {
    __m256 acc[MR][2];
    for (int i = 0; i < MR; i++) {
        if (load_c) {
            acc[i][0] = _mm256_loadu_ps(c + i * ldc);
            acc[i][1] = _mm256_loadu_ps(c + i * ldc + 8);
        } else if (bias) {
            acc[i][0] = _mm256_loadu_ps(bias);
            acc[i][1] = _mm256_loadu_ps(bias + 8);
        } else {
            acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        }
    }
    for (int k = 0; k < kc; k++) {
        // 2 loads + 6 broadcasts feed 12 independent fmas: enough to cover the fma latency
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += NR;
    }
    for (int i = 0; i < MR; i++) {
        _mm256_storeu_ps(c + i * ldc, acc[i][0]);
        _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
    }
}
#else
// Portable fallback, same contract; gcc vectorizes the j loop.
static void kernel_6x16(int kc, const float *a, const float *b, float *c, size_t ldc,
                        const float *bias, int load_c) {
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            acc[i][j] = load_c ? c[i * ldc + j] : bias ? bias[j] : 0.0f;
    for (int k = 0; k < kc; k++) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] += a[i] * b[j];
        a += MR;
        b += NR;
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) c[i * ldc + j] = acc[i][j];
}
#endif

// ----------------------------------------------------------------------------
// packing: copy a block into the exact order the micro-kernel reads it, zero-padding the
// last panel so the kernel never needs a short variant.

// A block (mc,kc) -> panels of MR rows, each (kc,MR).
static void pack_a(float *dst, mview A, int mc, int kc) {
    for (int i0 = 0; i0 < mc; i0 += MR) {
        int mr = imin(MR, mc - i0);
        for (int k = 0; k < kc; k++) {
            for (int i = 0; i < mr; i++) dst[i] = *mview_at(A, i0 + i, k);
            for (int i = mr; i < MR; i++) dst[i] = 0.0f;
            dst += MR;
        }
    }
}

// One B panel: columns [0,nr) of a (kc, nr <= NR) block -> (kc,NR).
static void pack_b_panel(float *dst, mview B, int kc, int nr) {
    if (B.cs == 1) {  // rows contiguous (dout, inp, weight read as-is)
        for (int k = 0; k < kc; k++) {
            const float *row = mview_at(B, k, 0);
            for (int j = 0; j < nr; j++) dst[k * NR + j] = row[j];
            for (int j = nr; j < NR; j++) dst[k * NR + j] = 0.0f;
        }
    } else {  // columns contiguous (weight^T in the forward): read along them
        for (int j = 0; j < NR; j++) {
            if (j < nr) {
                const float *col = mview_at(B, 0, j);
                for (int k = 0; k < kc; k++) dst[k * NR + j] = col[(size_t)k * B.rs];
            } else {
                for (int k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
            }
        }
    }
}

// ----------------------------------------------------------------------------
// macro-kernel: c (mc,nc) block, row stride ldc, += (or = init +) packed A (mc,kc) @ packed
// B (kc,nc). The B panel (kc,NR) stays in L1 while the A panels stream from L2.
static void macro_kernel(int mc, int nc, int kc, const float *ap, const float *bp, float *c,
                         size_t ldc, const float *bias, int load_c) {
    for (int j0 = 0; j0 < nc; j0 += NR) {
        int nr = imin(NR, nc - j0);
        const float *bpanel = bp + (size_t)j0 * kc;
        const float *brow = bias ? bias + j0 : NULL;
        for (int i0 = 0; i0 < mc; i0 += MR) {
            int mr = imin(MR, mc - i0);
            const float *apanel = ap + (size_t)i0 * kc;
            float *ct = c + (size_t)i0 * ldc + j0;
            if (mr == MR && nr == NR) {
                kernel_6x16(kc, apanel, bpanel, ct, ldc, brow, load_c);
                continue;
            }
            // edge tile: the same kernel on a full-size copy, then write back the valid part
            float tmp[MR * NR] = {0}, bpad[NR] = {0};
            for (int i = 0; i < mr && load_c; i++)
                for (int j = 0; j < nr; j++) tmp[i * NR + j] = ct[i * ldc + j];
            for (int j = 0; j < nr && brow; j++) bpad[j] = brow[j];
            kernel_6x16(kc, apanel, bpanel, tmp, NR, brow ? bpad : NULL, load_c);
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < nr; j++) ct[i * ldc + j] = tmp[i * NR + j];
        }
    }
}

// c (M,N) row-major = A (M,K) @ B (K,N), added to c itself when accumulate, else to the row
// vector bias (N) on every row, or to 0 when bias is NULL.
static void gemm(float *c, mview A, mview B, int M, int N, int K, const float *bias,
                 int accumulate) {
    if (M <= 0 || N <= 0) return;
    PB_ASSERT(K > 0);

    // Cut the rows into a multiple of the thread count of blocks, so they share out evenly.
    // (MC may depend on the thread count: the result does not depend on MC.)
    int nth = omp_get_max_threads();
    int nblocks = ceil_div(ceil_div(M, MC_MAX), nth) * nth;
    int mc = ceil_div(ceil_div(M, nblocks), MR) * MR;

    int ncmax = imin(N, NC);
    float *bp = pb_aligned_alloc(sizeof(float) * KC * (size_t)(ceil_div(ncmax, NR) * NR));
#pragma omp parallel
    {
        float *ap = pb_aligned_alloc(sizeof(float) * (size_t)mc * KC);
        for (int jc = 0; jc < N; jc += NC) {
            int nc = imin(NC, N - jc);
            for (int pc = 0; pc < K; pc += KC) {
                int kc = imin(KC, K - pc);
                // All threads pack the shared B block; the barrier at the end of the loop
                // makes it complete before anyone multiplies with it.
#pragma omp for schedule(static)
                for (int j0 = 0; j0 < nc; j0 += NR) {
                    mview Bs = {mview_at(B, pc, jc + j0), B.rs, B.cs};
                    pack_b_panel(bp + (size_t)j0 * kc, Bs, kc, imin(NR, nc - j0));
                }
                // Each thread owns whole row blocks of C, taken first come first served
                // (a thread the OS preempts does not hold the others up); the barrier at
                // the end keeps the B block alive until everyone is done with it.
#pragma omp for schedule(dynamic, 1)
                for (int ic = 0; ic < M; ic += mc) {
                    int mcur = imin(mc, M - ic);
                    mview As = {mview_at(A, ic, pc), A.rs, A.cs};
                    pack_a(ap, As, mcur, kc);
                    macro_kernel(mcur, nc, kc, ap, bp, c + (size_t)ic * N + jc, (size_t)N,
                                 bias ? bias + jc : NULL, accumulate || pc > 0);
                }
            }
        }
        free(ap);
    }
    free(bp);
}

// ----------------------------------------------------------------------------

void cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                        int N, int IC, int OC) {
    // out[n,o] = bias[o] + sum_k inp[n,k] weight[o,k]: B (IC,OC) is weight read transposed
    mview A = {inp, (size_t)IC, 1}, B = {weight, 1, (size_t)IC};
    gemm(out, A, B, N, OC, IC, bias, 0);
}

void cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int IC, int OC) {
    // dinp[n,i] += sum_o dout[n,o] weight[o,i]
    mview dout_v = {dout, (size_t)OC, 1}, weight_v = {weight, (size_t)IC, 1};
    gemm(dinp, dout_v, weight_v, N, IC, OC, NULL, 1);

    // dweight[o,i] += sum_n dout[n,o] inp[n,i]: A (OC,N) is dout read transposed
    mview doutT_v = {dout, 1, (size_t)OC}, inp_v = {inp, (size_t)IC, 1};
    gemm(dweight, doutT_v, inp_v, OC, IC, N, NULL, 1);

    // dbias[o] += sum_n dout[n,o]: threads take column strips; each column is summed over n
    // in order, whatever the thread count.
    if (dbias) {
        enum { STRIP = 64 };
#pragma omp parallel for schedule(static)
        for (int o0 = 0; o0 < OC; o0 += STRIP) {
            int len = imin(STRIP, OC - o0);
            float acc[STRIP] = {0};
            for (int n = 0; n < N; n++) {
                const float *row = dout + (size_t)n * OC + o0;
                for (int j = 0; j < len; j++) acc[j] += row[j];
            }
            for (int j = 0; j < len; j++) dbias[o0 + j] += acc[j];
        }
    }
}
