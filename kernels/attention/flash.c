// flash.c: FlashAttention-2 style attention on the CPU: tiled, online softmax, O(T) memory.
//
// The GPU algorithm, moved to a CPU: "shared memory" becomes the L1/L2 cache, a thread block
// becomes an OpenMP thread, and each tile product is a small matrix multiply whose 6 x 16
// block of output stays in vector registers. Nothing of size T x T is allocated: the
// forward saves only lse (B,NH,T), and the backward recomputes score tiles from q, k, lse.
//
// Determinism: every output element is computed by exactly one thread in a fixed order
// (the forward splits work by (b, h, query tile), the backward by (b, h)), so results are
// bit-identical whatever the number of threads. No atomics, no reductions across threads.
//
// Masks: a key-padding mask (kv_len) ends every key loop at kv_len[b], the last tile cut
// short there, so the work is proportional to the visible keys and the padding keys are
// never read; the causal mask ends it at the diagonal as well. Without kv_len the loops are
// exactly what they were before it existed (GPT-2's results do not move by a bit).
#include "kernels/attention/attention.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/common.h"

// Tile sizes: BR query rows by BC keys. Per step the forward touches the transposed Q tile
// (D x BR), the score tile (BC x BR), the output tile (BR x D) and one K and one V tile
// (BC x D each): at D=64 and 64 x 64 tiles, 16 KiB each, 80 KiB in all, which stays in a
// 512 KiB L2 while the K/V tiles stream through, and the 16 KiB operand that each tile
// product rereads per 6-row block stays in the 32 KiB L1. Bigger tiles amortise the
// per-tile work (transposes, row maxima) over more products but spill L1 and, in the
// forward, leave fewer work items to balance across threads. tests/bench_attention.c
// measured 64 x 64 best or tied among {32, 64, 128}^2 on a Zen 3 core. Any sizes >= 1
// are correct; FLASH_BR == FLASH_BC keeps causal diagonal tiles square.
#ifndef FLASH_BR  // -DFLASH_BR=.. -DFLASH_BC=.. to measure others
#define FLASH_BR 64
#endif
#ifndef FLASH_BC
#define FLASH_BC 64
#endif

// ----------------------------------------------------------------------------
// small matrix products

// 8 floats as one value (a GCC/Clang vector extension). Written with float arrays, GCC
// keeps the 6 x 16 accumulator block below in memory and runs at about half this speed;
// as vectors it lives in 12 registers. On a target without 256-bit vectors GCC splits
// them, so the source stays portable.
// Loads and stores go through memcpy: unaligned, no aliasing questions, and no vector
// passed by value (which draws ABI warnings when building without AVX).
typedef float flash_v8 __attribute__((vector_size(32)));

#define MM_MR 6   // rows of C per register block
#define MM_NR 16  // columns of C per register block: two vectors

// One register block: C (mr, 16) += A (mr, K) B (K, 16), mr <= MM_MR. Inlined with
// mr == MM_MR the loops over i unroll and c[][] becomes registers.
static inline __attribute__((always_inline)) void mm_block(
    int mr, float *restrict C, int ldc, const float *restrict A, int a_rs, int a_cs,
    const float *restrict B, int ldb, int K) {
    flash_v8 c[MM_MR][2], b0, b1;
    for (int i = 0; i < mr; i++) memcpy(c[i], C + (size_t)i * ldc, sizeof c[i]);
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        memcpy(&b0, b, sizeof b0);
        memcpy(&b1, b + 8, sizeof b1);
        for (int i = 0; i < mr; i++) {
            float a = A[(size_t)i * a_rs + (size_t)k * a_cs];
            c[i][0] += a * b0;
            c[i][1] += a * b1;
        }
    }
    for (int i = 0; i < mr; i++) memcpy(C + (size_t)i * ldc, c[i], sizeof c[i]);
}

// C (M,N) += A (M,K) B (K,N). B and C are row-major with row strides ldb and ldc; A's
// element (i,k) is A[i*a_rs + k*a_cs], so (a_rs, a_cs) = (1, lda) multiplies by A^T
// without copying it. Each C element sums over k in plain order, whichever path it takes.
static void tile_mm(float *restrict C, int ldc, const float *restrict A, int a_rs, int a_cs,
                    const float *restrict B, int ldb, int M, int N, int K) {
    int N16 = N - N % MM_NR;
    for (int i0 = 0; i0 < M; i0 += MM_MR) {
        int mr = M - i0 < MM_MR ? M - i0 : MM_MR;
        const float *Ai = A + (size_t)i0 * a_rs;
        float *Ci = C + (size_t)i0 * ldc;
        for (int j0 = 0; j0 < N16; j0 += MM_NR) {
            if (mr == MM_MR)
                mm_block(MM_MR, Ci + j0, ldc, Ai, a_rs, a_cs, B + j0, ldb, K);
            else
                mm_block(mr, Ci + j0, ldc, Ai, a_rs, a_cs, B + j0, ldb, K);
        }
        // the columns past the last multiple of 16 (a partial key tile, D=8)
        for (int i = 0; i < mr; i++)
            for (int j = N16; j < N; j++) {
                float acc = Ci[(size_t)i * ldc + j];
                for (int k = 0; k < K; k++)
                    acc += Ai[(size_t)i * a_rs + (size_t)k * a_cs] * B[(size_t)k * ldb + j];
                Ci[(size_t)i * ldc + j] = acc;
            }
    }
}

// dst (D, ld) = scale * transpose of n rows of src (row stride lds, D columns)
static void transpose_rows(float *restrict dst, int ld, const float *restrict src, size_t lds,
                           int n, int D, float scale) {
    for (int c = 0; c < n; c++)
        for (int d = 0; d < D; d++) dst[(size_t)d * ld + c] = scale * src[(size_t)c * lds + d];
}

// dst (n, D) contiguous = n rows of src (row stride lds, D columns)
static void copy_rows(float *restrict dst, const float *restrict src, size_t lds, int n,
                      int D) {
    for (int c = 0; c < n; c++)
        memcpy(dst + (size_t)c * D, src + (size_t)c * lds, (size_t)D * sizeof(float));
}

// ----------------------------------------------------------------------------
// softmax helpers

// exp(x) for x <= 88, to about 2 ulp; 0 below -87 (where expf goes denormal) and for -inf.
// Our own because glibc's expf is a scalar call and the softmax would otherwise cost as
// much as the tile products at D=64; this one inlines, and GCC vectorises the loops that
// call it. The clamp is a bit mask, not `x < -87 ? ..`: without -fno-trapping-math GCC
// will not vectorise a float comparison that picks a value.
// Range reduction as in Cephes: x = n ln2 + r, |r| <= ln2/2, exp(x) = 2^n exp(r).
static inline float flash_exp(float x) {
    int32_t keep = -(int32_t)(x >= -87.0f);  // all ones where x >= -87, else 0
    union { float f; int32_t i; } xc = {x}, lo = {-87.0f};
    xc.i = (xc.i & keep) | (lo.i & ~keep);
    float n = (xc.f * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to int
    float r = xc.f - n * 0.693359375f;  // ln2 in two parts so r keeps its low bits
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    union { int32_t i; float f; } two_n = {(((int32_t)n + 127) << 23) & keep};  // 2^n, or 0
    return p * two_n.f;
}

static inline int clampi(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

// Keys of batch row b that are not padding: kv_len[b], or all T without a key-padding mask.
// Checked although the caller guarantees 1 <= kv_len[b] <= T: a 0 leaves a row with no key
// (l = 0, lse = -inf) and a T+1 reads the next row's keys.
static int key_len(const pb_attn_desc *ad, int b) {
    if (!ad->kv_len) return ad->T;
    int n = ad->kv_len[b];
    PB_ASSERT(n >= 1 && n <= ad->T);
    return n;
}

// max(a, b) elementwise, as a bit select for the same reason as in flash_exp
static inline float max_select(float a, float b) {
    int32_t take_b = -(int32_t)(b > a);
    union { float f; int32_t i; } ua = {a}, ub = {b};
    ua.i = (ua.i & ~take_b) | (ub.i & take_b);
    return ua.f;
}

// ----------------------------------------------------------------------------
// forward

// out (B,T,C), lse (B,NH,T); qkv (B,T,3C)
//
// Per query tile of BR rows, FA-2's outer loop: for each key tile j (up to the diagonal
// when causal), S^T (BC x BR) = K_j Q^T, then an online softmax update of the running
// row max m, row sum l and unnormalised output O += P V_j. The tile is kept transposed,
// keys by queries, so that the per-query running statistics are contiguous vectors
// (the row max and exp loops vectorise over queries) and only Q, once per query tile,
// needs transposing.
void attn_flash_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *ad) {
    PB_ASSERT(!attn_flash_supports(ad));
    int B = ad->B, T = ad->T, NH = ad->NH, D = ad->D, C = NH * D, C3 = 3 * C, causal = ad->causal;
    float scale = ad->scale;
    const int BR = FLASH_BR, BC = FLASH_BC;
    int nqt = (T + BR - 1) / BR;

#pragma omp parallel
    {
        // this thread's tiles: O((BR + BC) * D + BR * BC), independent of T
        float *qt = pb_aligned_alloc((size_t)D * BR * sizeof(float));   // (D,BR) scale*Q^T
        float *st = pb_aligned_alloc((size_t)BC * BR * sizeof(float));  // (BC,BR) S^T, then P^T
        float *o = pb_aligned_alloc((size_t)BR * D * sizeof(float));    // (BR,D) unnormalised O
        float *vj = pb_aligned_alloc((size_t)BC * D * sizeof(float));   // (BC,D) V_j
        float m[FLASH_BR], l[FLASH_BR];         // running row max, row sum of exp(s - m)
        float mnew[FLASH_BR], alpha[FLASH_BR];  // this tile's new max, rescale of the old

        // dynamic: with a causal mask, later query tiles have more key tiles to visit
#pragma omp for collapse(3) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                for (int qt_i = 0; qt_i < nqt; qt_i++) {
                    const float *q = qkv + (size_t)b * T * C3 + h * D;  // row t at q + t*3C
                    const float *k = q + C;
                    const float *v = q + 2 * C;
                    int i0 = qt_i * BR;
                    int br = T - i0 < BR ? T - i0 : BR;

                    transpose_rows(qt, BR, q + (size_t)i0 * C3, C3, br, D, scale);
                    memset(o, 0, (size_t)br * D * sizeof(float));
                    for (int r = 0; r < br; r++) m[r] = -INFINITY, l[r] = 0.0f;

                    // causal: key tiles past the last query of this tile are all masked;
                    // keys from kv_len[b] on are padding for every query. Within kend only
                    // the causal mask is left to apply.
                    int kend = causal ? i0 + br : T;
                    int kvl = key_len(ad, b);
                    if (kend > kvl) kend = kvl;
                    for (int j0 = 0; j0 < kend; j0 += BC) {
                        int bc = kend - j0 < BC ? kend - j0 : BC;
                        // S^T (bc, br) = K_j (bc, D) (scale Q^T) (D, br)
                        memset(st, 0, (size_t)bc * BR * sizeof(float));
                        tile_mm(st, BR, k + (size_t)j0 * C3, C3, 1, qt, BR, bc, br, D);

                        // key j0+c is visible to query i0+r when j0+c <= i0+r; only the
                        // diagonal tile has masked entries. Key 0 is visible to every
                        // query, so after the first tile every m is finite.
                        int diag = causal && j0 + bc - 1 > i0;
                        for (int r = 0; r < br; r++) mnew[r] = m[r];
                        for (int c = 0; c < bc; c++) {
                            const float *sc = st + (size_t)c * BR;
                            int r0 = diag ? clampi(j0 + c - i0, 0, br) : 0;  // first to see key
                            for (int r = r0; r < br; r++) mnew[r] = max_select(mnew[r], sc[r]);
                        }
                        for (int r = 0; r < br; r++) {
                            alpha[r] = flash_exp(m[r] - mnew[r]);  // 0 on the first tile
                            l[r] *= alpha[r];
                        }
                        for (int c = 0; c < bc; c++) {
                            float *sc = st + (size_t)c * BR;
                            int r0 = diag ? clampi(j0 + c - i0, 0, br) : 0;
                            for (int r = 0; r < r0; r++) sc[r] = 0.0f;  // masked
                            for (int r = r0; r < br; r++) sc[r] = flash_exp(sc[r] - mnew[r]);
                            for (int r = r0; r < br; r++) l[r] += sc[r];
                        }
                        for (int r = 0; r < br; r++) {
                            m[r] = mnew[r];
                            float *orow = o + (size_t)r * D;
                            for (int d = 0; d < D; d++) orow[d] *= alpha[r];
                        }
                        // O (br, D) += P (br, bc) V_j (bc, D), P read through P^T. V_j is
                        // copied out first: its rows in qkv are 3C floats apart, a stride
                        // that maps them onto a few L1 sets, which then thrash when the
                        // product rereads them for every block of rows.
                        copy_rows(vj, v + (size_t)j0 * C3, C3, bc, D);
                        tile_mm(o, D, st, 1, BR, vj, D, br, D, bc);
                    }

                    for (int r = 0; r < br; r++) {
                        float inv = 1.0f / l[r];
                        float *dst = out + ((size_t)b * T + i0 + r) * C + h * D;
                        for (int d = 0; d < D; d++) dst[d] = o[(size_t)r * D + d] * inv;
                        lse[((size_t)b * NH + h) * T + i0 + r] = m[r] + logf(l[r]);
                    }
                }
            }
        }
        free(qt);
        free(st);
        free(o);
        free(vj);
    }
}

// ----------------------------------------------------------------------------
// backward

// dqkv (B,T,3C) += gradient; dout, out (B,T,C); lse (B,NH,T); qkv (B,T,3C).
//
// FA-2 loop order: key tiles outer, so a tile's dK and dV accumulate in cache and are
// added to dqkv once; query tiles inner, each adding its part of dQ to a per-thread
// (T,D) buffer. For query tile i and key tile j, with Qs = Q/sqrt(D), Di = rowsum(dO * O):
//   S = Qs_i K_j^T,  P = exp(S - lse_i),  dV_j += P^T dO_i,  dP = dO_i V_j^T,
//   dS = P (dP - Di),  dK_j += dS^T Qs_i,  dQ_i += dS K_j  (times 1/sqrt(D) at the end).
// K_j (as is and transposed) and V_j^T are copied once per key tile, outside the query
// loop; Qs_i and dO_i once per query tile. Copies, not reads in place, because rows of
// qkv are 3C floats apart, a stride that maps a tile onto a few L1 sets.
//
// Work is split by (b, h): each head's dQ rows collect contributions from every key tile,
// and giving the whole head to one thread keeps that sum in one fixed order without
// atomics or per-tile partial buffers. B*NH is >= the thread count in every recipe; below
// that, threads sit idle.
void attn_flash_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, const pb_attn_desc *ad) {
    PB_ASSERT(!attn_flash_supports(ad));
    int B = ad->B, T = ad->T, NH = ad->NH, C = NH * ad->D, causal = ad->causal;
    int D = ad->D, C3 = 3 * C;
    float scale = ad->scale;
    const int BR = FLASH_BR, BC = FLASH_BC;

#pragma omp parallel
    {
        // this thread's buffers: O(T*D) for dQ and Di, O((BR + BC) * D + BR*BC) for tiles
        float *dq = pb_aligned_alloc((size_t)T * D * sizeof(float));    // (T,D) dS K, unscaled
        float *di = pb_aligned_alloc((size_t)T * sizeof(float));        // (T)
        float *kj = pb_aligned_alloc((size_t)BC * D * sizeof(float));   // (BC,D) K_j
        float *kt = pb_aligned_alloc((size_t)D * BC * sizeof(float));   // (D,BC) K_j^T
        float *vt = pb_aligned_alloc((size_t)D * BC * sizeof(float));   // (D,BC) V_j^T
        float *dk = pb_aligned_alloc((size_t)BC * D * sizeof(float));   // (BC,D)
        float *dv = pb_aligned_alloc((size_t)BC * D * sizeof(float));   // (BC,D)
        float *qs = pb_aligned_alloc((size_t)BR * D * sizeof(float));   // (BR,D) Qs_i
        float *doi = pb_aligned_alloc((size_t)BR * D * sizeof(float));  // (BR,D) dO_i
        float *p = pb_aligned_alloc((size_t)BR * BC * sizeof(float));   // (BR,BC) S, then P
        float *ds = pb_aligned_alloc((size_t)BR * BC * sizeof(float));  // (BR,BC) dP, then dS

#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                size_t base = (size_t)b * T * C3 + h * D;  // row t of q at base + t*3C
                const float *q = qkv + base, *k = q + C, *v = q + 2 * C;
                float *dqkv_q = dqkv + base, *dqkv_k = dqkv_q + C, *dqkv_v = dqkv_q + 2 * C;
                const float *dO = dout + (size_t)b * T * C + h * D;  // row t at dO + t*C
                const float *O = out + (size_t)b * T * C + h * D;
                const float *L = lse + ((size_t)b * NH + h) * T;

                for (int t = 0; t < T; t++) {
                    float acc = 0.0f;
                    for (int d = 0; d < D; d++)
                        acc += dO[(size_t)t * C + d] * O[(size_t)t * C + d];
                    di[t] = acc;
                }
                memset(dq, 0, (size_t)T * D * sizeof(float));

                // key tiles from kv_len[b] on would add 0 to everything: skipped, so dK and
                // dV of padding keys stay as they were (+= 0), and the last tile ends there
                int kvl = key_len(ad, b);
                for (int j0 = 0; j0 < kvl; j0 += BC) {
                    int bc = kvl - j0 < BC ? kvl - j0 : BC;
                    copy_rows(kj, k + (size_t)j0 * C3, C3, bc, D);
                    transpose_rows(kt, BC, k + (size_t)j0 * C3, C3, bc, D, 1.0f);
                    transpose_rows(vt, BC, v + (size_t)j0 * C3, C3, bc, D, 1.0f);
                    memset(dk, 0, (size_t)bc * D * sizeof(float));
                    memset(dv, 0, (size_t)bc * D * sizeof(float));

                    // causal: queries before j0 see none of this tile's keys
                    for (int i0 = causal ? j0 / BR * BR : 0; i0 < T; i0 += BR) {
                        int br = T - i0 < BR ? T - i0 : BR;
                        // the same scale*q as the forward, and the same products summed in
                        // the same order, so that P matches the lse it saved
                        for (int r = 0; r < br; r++)
                            for (int d = 0; d < D; d++)
                                qs[(size_t)r * D + d] = scale * q[(size_t)(i0 + r) * C3 + d];
                        copy_rows(doi, dO + (size_t)i0 * C, C, br, D);
                        memset(p, 0, (size_t)br * BC * sizeof(float));
                        tile_mm(p, BC, qs, D, 1, kt, BC, br, bc, D);
                        memset(ds, 0, (size_t)br * BC * sizeof(float));
                        tile_mm(ds, BC, doi, D, 1, vt, BC, br, bc, D);  // dP

                        for (int r = 0; r < br; r++) {
                            float *pr = p + (size_t)r * BC, *dsr = ds + (size_t)r * BC;
                            // keys j0..j0+n-1 are visible to query i0+r
                            int n = causal && i0 + r - j0 + 1 < bc ? i0 + r - j0 + 1 : bc;
                            if (n < 0) n = 0;
                            float Lr = L[i0 + r], Dr = di[i0 + r];
                            for (int c = 0; c < n; c++) pr[c] = flash_exp(pr[c] - Lr);
                            for (int c = n; c < bc; c++) pr[c] = 0.0f;
                            for (int c = 0; c < bc; c++) dsr[c] = pr[c] * (dsr[c] - Dr);
                        }

                        // dV_j (bc, D) += P^T (bc, br) dO_i (br, D)
                        tile_mm(dv, D, p, 1, BC, doi, D, bc, D, br);
                        // dK_j (bc, D) += dS^T (bc, br) Qs_i (br, D)
                        tile_mm(dk, D, ds, 1, BC, qs, D, bc, D, br);
                        // dQ_i (br, D) += dS (br, bc) K_j (bc, D)
                        tile_mm(dq + (size_t)i0 * D, D, ds, BC, 1, kj, D, br, D, bc);
                    }

                    for (int c = 0; c < bc; c++) {
                        float *gk = dqkv_k + (size_t)(j0 + c) * C3;
                        float *gv = dqkv_v + (size_t)(j0 + c) * C3;
                        for (int d = 0; d < D; d++) gk[d] += dk[(size_t)c * D + d];
                        for (int d = 0; d < D; d++) gv[d] += dv[(size_t)c * D + d];
                    }
                }

                for (int t = 0; t < T; t++) {
                    float *g = dqkv_q + (size_t)t * C3;
                    for (int d = 0; d < D; d++) g[d] += scale * dq[(size_t)t * D + d];
                }
            }
        }
        free(dq);
        free(di);
        free(kj);
        free(kt);
        free(vt);
        free(dk);
        free(dv);
        free(qs);
        free(doi);
        free(p);
        free(ds);
    }
}

// causal and key-padding masks, alone or together
const char *attn_flash_supports(const pb_attn_desc *d) { return attn_cpu_dense_supports(d); }
