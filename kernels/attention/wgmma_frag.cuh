// wgmma_frag.cuh: what one lane of flash_wgmma_cuda.cu's kernels does with its accumulator
// fragment: the exponentials, the bf16 A operands built from a fragment, the probabilities
// with and without masks, the dropout mask of a fragment, and two global-memory helpers.
// A wgmma m64nN accumulator gives lane (g = lane / 4, t = lane % 4) of warp w the N / 2
// elements i of rows 16 w + g + 8 ((i >> 1) & 1) and columns (i / 4) 8 + 2 t + (i & 1).
#ifndef PEBBLE_WGMMA_FRAG_CUH
#define PEBBLE_WGMMA_FRAG_CUH

#include "kernels/cuda/cuda_common.cuh"

extern "C" {
#include "kernels/dropout.h"
#include "kernels/ops.h"
}

#ifndef LOG2E
#define LOG2E 1.4426950408889634f
#endif

// The probabilities' dropout of a call: its key, threshold and 1 / (1 - p) (kernels/dropout.h).
struct wg_drop {
    uint64_t key;
    uint32_t thr;
    float scale;
};

static wg_drop wg_drop_of(const pb_attn_desc *d) {
    return {d->drop_key, pb_drop_threshold(d->drop_p), pb_drop_scale(d->drop_p)};
}

// Bit i set when element i of this lane's accumulator fragment (N <= 64 of them) is kept:
// rows (queries) and columns (keys) of element i as the callers' fragments lay them out, the
// element index ((b NH + h) T + query) T + key. A query or key past T gets some bit; its P
// is 0 (or its row is never written) either way.
template <int N, bool TRANSPOSED>
__device__ __forceinline__ uint64_t drop_bits(const wg_drop &dr, int bh, int T, int c0,
                                              const int (&rc)[2], int t) {
    static_assert(N <= 64, "a fragment of at most 64 elements");
    uint64_t bits = 0;
#pragma unroll
    for (int i = 0; i < N; i++) {
        // the fragment's column (+ c0) and its row (rc[0] or rc[1]): queries x keys, or keys x
        // queries (TRANSPOSED, the dK/dV kernel's S^T)
        int col = c0 + (i / 4) * 8 + 2 * t + (i & 1), row = rc[(i >> 1) & 1];
        int qi = TRANSPOSED ? col : row, kj = TRANSPOSED ? row : col;
        uint64_t e = ((uint64_t)bh * T + (uint64_t)qi) * (uint64_t)T + (uint64_t)kj;
        if (pb_drop_keep(dr.key, e, dr.thr)) bits |= 1ull << i;
    }
    return bits;
}

__device__ __forceinline__ float drop_w(uint64_t bits, int i, float scale) {
    return (bits >> i) & 1 ? scale : 0.0f;
}


// 2^x on the special-function unit, one instruction: exp2f() compiles to ex2.approx.f32, whose
// denormal handling costs three more (a compare and two predicated multiplies) on every
// element. Flushing results below 2^-126 to 0 changes no probability that bf16 can hold.
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // lo in the low half: element k
    return *reinterpret_cast<uint32_t *>(&v);
}

// The A operand for k = 16 ks .. 16 ks + 15 from accumulator columns of the same range.
template <int N>
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&d)[N], int ks) {
    a[0] = pack2(d[8 * ks + 0], d[8 * ks + 1]);
    a[1] = pack2(d[8 * ks + 2], d[8 * ks + 3]);
    a[2] = pack2(d[8 * ks + 4], d[8 * ks + 5]);
    a[3] = pack2(d[8 * ks + 6], d[8 * ks + 7]);
}

// acc_to_a of the dropped and rescaled values (bits from drop_bits)
template <int N>
__device__ __forceinline__ void acc_to_a_drop(uint32_t (&a)[4], const float (&d)[N], int ks,
                                              uint64_t bits, float sc) {
    int i = 8 * ks;
#pragma unroll
    for (int e = 0; e < 4; e++)
        a[e] = pack2(d[i + 2 * e] * drop_w(bits, i + 2 * e, sc),
                     d[i + 2 * e + 1] * drop_w(bits, i + 2 * e + 1, sc));
}

__device__ __forceinline__ uint32_t ld32g(const bf16 *p) {
    return *reinterpret_cast<const uint32_t *>(p);
}

// The A operand of this lane's two rows (row[0], row[1]; all DH columns) of a (T x DH) bf16
// matrix with row stride `stride`, straight from global memory; rows past T are 0.
template <int DH>
__device__ __forceinline__ void load_a_rows(uint32_t (&a)[DH / 16][4], const bf16 *src,
                                            size_t stride, const int (&row)[2], int t, int T) {
#pragma unroll
    for (int kk = 0; kk < DH / 16; kk++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int r = row[e & 1], c = kk * 16 + 2 * t + (e >> 1) * 8;
            a[kk][e] = r < T ? ld32g(src + (size_t)r * stride + c) : 0u;
        }
}

// dst[0..1] += (a, b) * s, read-modify-write of two bf16 (the op contract: gradients add)
__device__ __forceinline__ void add2(bf16 *p, float a, float b) {
    float2 v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
    *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(v.x + a, v.y + b);
}

// The backward's probabilities in place of the scores, P = exp2(S scale log2e - lse log2e),
// with MASK: 0 for keys past kvl (T, or kv_len[b]), queries past T and (causal) keys after
// their query. Tiles
// that need no mask (most of them) take the MASK = false copy, which has no compares.
// probs: rows are queries (this lane's two rows; lse log2e of each in lr), columns keys k0 ..
template <bool MASK, int N>
__device__ __forceinline__ void probs(float (&s)[N], const float (&lr)[2], int k0,
                                      const int (&row)[2], int t, int T, int kvl, int causal,
                                      float scale_log2) {
#pragma unroll
    for (int i = 0; i < N; i++) {
        int kc = k0 + (i / 4) * 8 + 2 * t + (i & 1), r = (i >> 1) & 1;
        float v = ex2(fmaf(s[i], scale_log2, -lr[r]));
        s[i] = MASK && (row[r] >= T || kc >= kvl || (causal && kc > row[r])) ? 0.0f : v;
    }
}
// probs_t: transposed, rows are keys (this lane's two keys), columns queries q0 .. whose lse
// (natural log) are lc[0 ..]
template <bool MASK, int N>
__device__ __forceinline__ void probs_t(float (&p)[N], const float *lc, int q0,
                                        const int (&key)[2], int t, int T, int kvl, int causal,
                                        float scale_log2) {
#pragma unroll
    for (int i = 0; i < N; i++) {
        int qc = (i / 4) * 8 + 2 * t + (i & 1), qi = q0 + qc, kr = key[(i >> 1) & 1];
        float v = ex2(fmaf(p[i], scale_log2, -lc[qc] * LOG2E));
        p[i] = MASK && (qi >= T || kr >= kvl || (causal && kr > qi)) ? 0.0f : v;
    }
}

#endif
