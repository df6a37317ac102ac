// tile.h: the pieces the tiled CPU attention kernels share (flash.c, blocksparse.c via
// flash.c's tile loops, smallcache.c): small register-blocked matrix products, row copies and
// transposes, a vectorisable exp and max. Internal to kernels/attention/; every function is
// static inline so that each kernel file inlines them into its own loops.
#ifndef PEBBLE_ATTN_TILE_H
#define PEBBLE_ATTN_TILE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
static inline void tile_mm(float *restrict C, int ldc, const float *restrict A, int a_rs, int a_cs,
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
static inline void transpose_rows(float *restrict dst, int ld, const float *restrict src, size_t lds,
                           int n, int D, float scale) {
    for (int c = 0; c < n; c++)
        for (int d = 0; d < D; d++) dst[(size_t)d * ld + c] = scale * src[(size_t)c * lds + d];
}

// dst (n, D) contiguous = n rows of src (row stride lds, D columns)
static inline void copy_rows(float *restrict dst, const float *restrict src, size_t lds, int n,
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

// max(a, b) elementwise, as a bit select for the same reason as in flash_exp
static inline float max_select(float a, float b) {
    int32_t take_b = -(int32_t)(b > a);
    union { float f; int32_t i; } ua = {a}, ub = {b};
    ua.i = (ua.i & ~take_b) | (ub.i & take_b);
    return ua.f;
}

#endif
