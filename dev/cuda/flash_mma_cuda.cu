// flash_mma_cuda.cu: dense FlashAttention-2 on the tensor cores: bf16 mma.sync (m16n8k16)
// with fp32 accumulation, forward and backward, head dims 64 and 128. Not in the production
// build: Hopper's wgmma kernels (kernels/attention/flash_wgmma_cuda.cu) beat it; kept in dev/
// for comparison (make dev-mma builds and runs dev/cuda/mma_bench.cu against them).
//
// Same algorithm, contract and determinism as flash_cuda.cu (read that first); what changes
// is where the products run. The kernels are templates on the tensors' element type S:
// with fp32 tensors each
// tile is rounded to bf16 as it is staged into shared memory, so results carry bf16 error
// (~4e-3 relative); with bf16 tensors (the mixed-precision table) tiles are copied as they
// are, 16 bytes at a time, and outputs written in bf16.
//
// Warps and fragments. A block has 4 warps; each warp owns 16*MT rows
// (v5: MT row tiles of 16, so each B fragment read from shared memory feeds MT MMAs) of the
// tile it computes (queries in the forward and dQ kernels, keys in the dK/dV kernel). v5
// streams its K/V (or Q/dO/lse/Di) tiles through two shared-memory stages filled by cp.async
// while the previous stage is used, reads every fragment with ldmatrix.x4, and masks only
// tiles that need it. Which version runs where: the launchers below. For one m16n8k16 mma
// a lane (g = lane/4, t = lane%4) holds:
//   A (16x16, row-major):  rows g, g+8; columns 2t, 2t+1 and 2t+8, 2t+9
//   B (16x8, k x n):       column n = g; rows k = 2t, 2t+1 and 2t+8, 2t+9
//   C (16x8 fp32):         rows g, g+8; columns 2t, 2t+1
// Two adjacent C tiles (columns 0-7 and 8-15) hold exactly the elements the A operand of the
// next product needs, so P = softmax(S) goes from the accumulators into the next mma without
// touching shared memory (packed to bf16). Every matrix is staged once, row-major as it
// lies in memory (X[row][d]); a B operand whose k runs along rows (V in P V, Q in dS^T Q, dO
// in P^T dO, K in dS K) is read with ldmatrix.trans, which transposes 8x8 blocks on the way.
// Rows are padded by 8 bf16 (16 bytes), which puts the 8 rows a fragment load touches in 8
// different bank groups.
#include "kernels/cuda/cuda_common.cuh"

#include <cuda_bf16.h>
#include <math.h>

extern "C" {
#include "dev/cuda/flash_mma_cuda.h"
#include "kernels/attention/flash_cuda.h"
}

#define MMA_WARPS 4
#define MMA_THREADS (32 * MMA_WARPS)
#define LOG2E 1.4426950408889634f

// d += a (16x16) b (16x8), bf16 in, fp32 accumulate
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // lo in the low half: element k
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ uint32_t ld32(const bf16 *p) {
    return *reinterpret_cast<const uint32_t *>(p);
}

// A fragment of rows r0..r0+15, columns k0..k0+15 of a row-major bf16 matrix X (stride ld)
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16 *X, int ld, int r0, int k0,
                                       int g, int t) {
    a[0] = ld32(X + (r0 + g) * ld + k0 + 2 * t);
    a[1] = ld32(X + (r0 + g + 8) * ld + k0 + 2 * t);
    a[2] = ld32(X + (r0 + g) * ld + k0 + 8 + 2 * t);
    a[3] = ld32(X + (r0 + g + 8) * ld + k0 + 8 + 2 * t);
}

// B fragment (k0..k0+15) x (n0..n0+7) from Y stored as rows of n: Y[n][k], stride ld
__device__ __forceinline__ void load_b(uint32_t &b0, uint32_t &b1, const bf16 *Y, int ld, int n0,
                                       int k0, int g, int t) {
    b0 = ld32(Y + (n0 + g) * ld + k0 + 2 * t);
    b1 = ld32(Y + (n0 + g) * ld + k0 + 8 + 2 * t);
}

// B fragments of two adjacent n-tiles (n0..n0+7 in b0,b1; n0+8..n0+15 in b2,b3), k0..k0+15,
// from X stored as rows of k (X[k][n], stride ld): ldmatrix.trans gives lane (g, t) the
// elements X[k0+2t][n0+g], X[k0+2t+1][n0+g] of each 8x8 block, the B layout. Lanes 0-7,
// 8-15, 16-23, 24-31 address the rows of blocks (k 0-7, n0), (k 8-15, n0), (k 0-7, n0+8),
// (k 8-15, n0+8); each row address is 16-byte aligned (ld and n0 are multiples of 8).
__device__ __forceinline__ void load_b_trans(uint32_t (&b)[4], const bf16 *X, int ld, int k0,
                                             int n0, int lane) {
    const bf16 *p = X + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8;
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                 : "r"(addr));
}

// The A fragment for k = 16*ks .. 16*ks+15 from two accumulator tiles (columns 0-7, 8-15).
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&lo)[4],
                                       const float (&hi)[4]) {
    a[0] = pack_bf16(lo[0], lo[1]);
    a[1] = pack_bf16(lo[2], lo[3]);
    a[2] = pack_bf16(hi[0], hi[1]);
    a[3] = pack_bf16(hi[2], hi[3]);
}

template <int N, int M>
__device__ __forceinline__ void zero4(float (&x)[N][M]) {
#pragma unroll
    for (int i = 0; i < N; i++)
#pragma unroll
        for (int j = 0; j < M; j++) x[i][j] = 0.0f;
}
template <int L, int N, int M>
__device__ __forceinline__ void zero4(float (&x)[L][N][M]) {
#pragma unroll
    for (int i = 0; i < L; i++) zero4(x[i]);
}

// ldmatrix (no transpose) of four 8x8 blocks; lanes 8i..8i+7 address the rows of block i.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16 *p) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// The A fragment of rows r0..r0+15, columns k0..k0+15 of row-major X in one ldmatrix.x4:
// blocks (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
__device__ __forceinline__ void ldsm_a(uint32_t (&a)[4], const bf16 *X, int ld, int r0, int k0,
                                       int lane) {
    ldsm_x4(a, X + (r0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + k0 + (lane >> 4) * 8);
}

// B fragments of two adjacent n-tiles from Y stored as rows of n (Y[n][k]): b[0], b[1] for
// n0..n0+7 and b[2], b[3] for n0+8..n0+15, k0..k0+15 (the layout load_b reads word by word).
__device__ __forceinline__ void ldsm_b(uint32_t (&b)[4], const bf16 *Y, int ld, int n0, int k0,
                                       int lane) {
    ldsm_x4(b, Y + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8);
}

// cp.async of 16 bytes; src_bytes 0 zero-fills the destination (rows past T)
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool in) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(src),
                 "r"(in ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool in) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(addr), "l"(src),
                 "r"(in ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;\n" ::); }

// Stages rows t0 .. t0+ROWS-1 (DH elements each, row r at src + r*stride) as bf16 into
// X[r][d] (stride ld); rows past T are 0. From fp32 rows: 16-byte loads, rounded, 8-byte
// stores, done when the call returns. From bf16 rows: cp.async, 16 bytes per copy, landing
// in the background: the caller commits the group and waits for it before reading X.
template <int ROWS, int DH, int NT>
__device__ __forceinline__ void stage(bf16 *X, int ld, const float *src, size_t stride, int t0,
                                      int T) {
    for (int idx = threadIdx.x; idx < ROWS * DH / 4; idx += NT) {
        int r = idx / (DH / 4), c = idx % (DH / 4) * 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (t0 + r < T) v = *reinterpret_cast<const float4 *>(src + (size_t)(t0 + r) * stride + c);
        *reinterpret_cast<uint2 *>(X + r * ld + c) =
            make_uint2(pack_bf16(v.x, v.y), pack_bf16(v.z, v.w));
    }
}
template <int ROWS, int DH, int NT>
__device__ __forceinline__ void stage(bf16 *X, int ld, const bf16 *src, size_t stride, int t0,
                                      int T) {
#pragma unroll
    for (int idx = threadIdx.x; idx < ROWS * DH / 8; idx += NT) {
        int r = idx / (DH / 8), c = idx % (DH / 8) * 8;
        bool in = t0 + r < T;
        cp_async16(X + r * ld + c, in ? src + (size_t)(t0 + r) * stride + c : src, in);
    }
}

// Two adjacent elements of an output (columns 2t, 2t+1 of an accumulator tile).
__device__ __forceinline__ float2 load2(const float *p) {
    return *reinterpret_cast<const float2 *>(p);
}
__device__ __forceinline__ float2 load2(const bf16 *p) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
}
__device__ __forceinline__ void store2(float *p, float a, float b) {
    *reinterpret_cast<float2 *>(p) = make_float2(a, b);
}
__device__ __forceinline__ void store2(bf16 *p, float a, float b) {
    *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(a, b);
}

// ----------------------------------------------------------------------------
// forward: a block = BM = 64*MT queries of one (b, h), 4 warps of 16*MT rows each, streaming
// key tiles of BN through two shared-memory stages (tile j+1 lands while tile j is used).
// Each K or V fragment read from shared memory feeds MT row tiles. Scores in the log2 domain.

template <int DH, int BN, int MT, typename S>
__global__ void __launch_bounds__(MMA_THREADS) mma_forward_kernel(S *out, float *lse,
                                                                  const S *qkv, int T, int C,
                                                                  int NH, int causal,
                                                                  float scale_log2) {
    constexpr int BM = 64 * MT, LD = DH + 8, QREG = DH == 64;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = reinterpret_cast<bf16 *>(smem_raw);  // [BM][LD]
    bf16 *Ks = Qs + BM * LD;                         // [2][BN][LD]
    bf16 *Vs = Ks + 2 * BN * LD;                     // [2][BN][LD]
    int nq = (T + BM - 1) / BM, qt = nq - 1 - blockIdx.x;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    size_t C3 = 3 * (size_t)C;
    const S *q = qkv + (size_t)b * T * C3 + (size_t)h * DH, *k = q + C, *v = q + 2 * C;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int q0 = qt * BM, rw = warp * 16 * MT;  // the warp's first row in the tile
    int nk = causal ? (min(q0 + BM, T) + BN - 1) / BN : (T + BN - 1) / BN;

    stage<BM, DH, MMA_THREADS>(Qs, LD, q, C3, q0, T);
    stage<BN, DH, MMA_THREADS>(Ks, LD, k, C3, 0, T);
    stage<BN, DH, MMA_THREADS>(Vs, LD, v, C3, 0, T);
    cp_async_commit();

    uint32_t qr[QREG ? MT : 1][QREG ? DH / 16 : 1][4];
    float o[MT][DH / 8][4], m[MT][2], l[MT][2];
    zero4(o);
    int qi[MT][2];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            m[i][r] = -INFINITY, l[i][r] = 0.0f;
            qi[i][r] = q0 + rw + i * 16 + g + 8 * r;
        }
    for (int kt = 0; kt < nk; kt++) {
        int k0 = kt * BN, cur = kt & 1;
        if (kt + 1 < nk) {
            stage<BN, DH, MMA_THREADS>(Ks + (cur ^ 1) * BN * LD, LD, k, C3, k0 + BN, T);
            stage<BN, DH, MMA_THREADS>(Vs + (cur ^ 1) * BN * LD, LD, v, C3, k0 + BN, T);
        }
        cp_async_commit();
        cp_async_wait1();
        __syncthreads();
        if (QREG && kt == 0) {
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int kk = 0; kk < DH / 16; kk++)
                    ldsm_a(qr[QREG ? i : 0][QREG ? kk : 0], Qs, LD, rw + i * 16, kk * 16, lane);
        }
        const bf16 *Kc = Ks + cur * BN * LD, *Vc = Vs + cur * BN * LD;
        // causal: a warp whose rows all precede the tile's first key has nothing to do
        if (!(causal && k0 > q0 + rw + 16 * MT - 1)) {
            float s[MT][BN / 8][4];
            zero4(s);
#pragma unroll
            for (int kk = 0; kk < DH / 16; kk++) {
                uint32_t qa[MT][4];
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    if (QREG) {
#pragma unroll
                        for (int e = 0; e < 4; e++) qa[i][e] = qr[QREG ? i : 0][QREG ? kk : 0][e];
                    } else {
                        ldsm_a(qa[i], Qs, LD, rw + i * 16, kk * 16, lane);
                    }
                }
#pragma unroll
                for (int j = 0; j < BN / 16; j++) {
                    uint32_t kb[4];
                    ldsm_b(kb, Kc, LD, j * 16, kk * 16, lane);
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        mma16816(s[i][2 * j], qa[i], kb[0], kb[1]);
                        mma16816(s[i][2 * j + 1], qa[i], kb[2], kb[3]);
                    }
                }
            }
            // masks only where a key can be past T or past a row of this warp (causal)
            bool need = k0 + BN > T || (causal && k0 + BN - 1 > q0 + rw);
            if (need) {
#pragma unroll
                for (int i = 0; i < MT; i++)
#pragma unroll
                    for (int j = 0; j < BN / 8; j++)
#pragma unroll
                        for (int c = 0; c < 4; c++) {
                            int key = k0 + j * 8 + 2 * t + (c & 1);
                            if (key >= T || (causal && key > qi[i][c >> 1])) s[i][j][c] = -INFINITY;
                        }
            }
#pragma unroll
            for (int i = 0; i < MT; i++) {
                float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
                for (int j = 0; j < BN / 8; j++)
#pragma unroll
                    for (int c = 0; c < 4; c++) mx[c >> 1] = fmaxf(mx[c >> 1], s[i][j][c]);
                float base[2], corr[2];
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                    float mn = fmaxf(m[i][r], mx[r] * scale_log2);  // scale > 0
                    base[r] = mn == -INFINITY ? 0.0f : mn;
                    corr[r] = exp2f(m[i][r] - base[r]);
                    m[i][r] = mn;
                    l[i][r] *= corr[r];  // this lane's partial sum; the quad is summed at the end
                }
#pragma unroll
                for (int j = 0; j < BN / 8; j++)
#pragma unroll
                    for (int c = 0; c < 4; c++) {
                        s[i][j][c] = exp2f(fmaf(s[i][j][c], scale_log2, -base[c >> 1]));
                        l[i][c >> 1] += s[i][j][c];
                    }
#pragma unroll
                for (int n = 0; n < DH / 8; n++)
#pragma unroll
                    for (int c = 0; c < 4; c++) o[i][n][c] *= corr[c >> 1];
            }
            // O += P V: k runs over this tile's BN keys; each V fragment serves MT row tiles
#pragma unroll
            for (int ks = 0; ks < BN / 16; ks++) {
                uint32_t pa[MT][4];
#pragma unroll
                for (int i = 0; i < MT; i++) c_to_a(pa[i], s[i][2 * ks], s[i][2 * ks + 1]);
#pragma unroll
                for (int n = 0; n < DH / 8; n += 2) {
                    uint32_t vb[4];
                    load_b_trans(vb, Vc, LD, ks * 16, n * 8, lane);
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        mma16816(o[i][n], pa[i], vb[0], vb[1]);
                        mma16816(o[i][n + 1], pa[i], vb[2], vb[3]);
                    }
                }
            }
        }
        __syncthreads();  // the next iteration's prefetch overwrites this tile's stage
    }

#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float li = l[i][r];
            li += __shfl_xor_sync(0xffffffffu, li, 1);
            li += __shfl_xor_sync(0xffffffffu, li, 2);
            if (qi[i][r] >= T) continue;
            float inv = 1.0f / li;
            S *dst = out + ((size_t)b * T + qi[i][r]) * C + (size_t)h * DH;
#pragma unroll
            for (int n = 0; n < DH / 8; n++)
                store2(dst + n * 8 + 2 * t, o[i][n][2 * r] * inv, o[i][n][2 * r + 1] * inv);
            // natural log: lse = (m + log2 l) * ln 2
            if (t == 0) lse[(size_t)bh * T + qi[i][r]] = (m[i][r] + log2f(li)) * 0.6931471805599453f;
        }
}

// ----------------------------------------------------------------------------
// backward v5, dK and
// dV: a block = BM = 64*MT keys of one (b, h), streaming query tiles of BQ rows (Q, dO, lse,
// Di, all by cp.async) through two stages. Each warp computes S^T (its 16*MT keys x BQ
// queries) directly, so P^T and dS^T come out of the accumulators in the A layout that
// dV += P^T dO and dK += dS^T Q need.

template <int DH, int BQ, int MT, int MINB, typename S>
__global__ void __launch_bounds__(MMA_THREADS, MINB) mma_backward_dkdv_kernel(
    S *dqkv, const S *dout, const S *qkv, const float *lse, const float *Di, int T,
    int C, int NH, int causal, float scale, float scale_log2) {
    constexpr int BM = 64 * MT, LD = DH + 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Ks = reinterpret_cast<bf16 *>(smem_raw);  // [BM][LD]
    bf16 *Vs = Ks + BM * LD;                         // [BM][LD]
    bf16 *Qs = Vs + BM * LD;                         // [2][BQ][LD]
    bf16 *dOs = Qs + 2 * BQ * LD;                    // [2][BQ][LD]
    float *ls = reinterpret_cast<float *>(dOs + 2 * BQ * LD);  // [2][BQ] lse
    float *ds = ls + 2 * BQ;                                     // [2][BQ] Di
    int kt = blockIdx.x;  // causal: low key tiles see the most queries, so they start first
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    size_t C3 = 3 * (size_t)C;
    const S *q = qkv + (size_t)b * T * C3 + (size_t)h * DH, *k = q + C, *v = q + 2 * C;
    const S *go = dout + (size_t)b * T * C + (size_t)h * DH;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int k0 = kt * BM, kw = k0 + warp * 16 * MT;  // the warp's first key
    int kr[MT][2];
#pragma unroll
    for (int i = 0; i < MT; i++) kr[i][0] = kw + i * 16 + g, kr[i][1] = kw + i * 16 + g + 8;
    const float *lse_h = lse + (size_t)bh * T, *di_h = Di + (size_t)bh * T;

    int qt0 = causal ? k0 / BQ : 0, nqt = (T + BQ - 1) / BQ;
    stage<BM, DH, MMA_THREADS>(Ks, LD, k, C3, k0, T);
    stage<BM, DH, MMA_THREADS>(Vs, LD, v, C3, k0, T);
    stage<BQ, DH, MMA_THREADS>(Qs, LD, q, C3, qt0 * BQ, T);
    stage<BQ, DH, MMA_THREADS>(dOs, LD, go, C, qt0 * BQ, T);
    for (int r = threadIdx.x; r < BQ; r += MMA_THREADS) {
        int qq = qt0 * BQ + r;
        cp_async4(ls + r, qq < T ? lse_h + qq : lse_h, qq < T);
        cp_async4(ds + r, qq < T ? di_h + qq : di_h, qq < T);
    }
    cp_async_commit();
    float dk[MT][DH / 8][4], dv[MT][DH / 8][4];
    zero4(dk);
    zero4(dv);

    for (int qt = qt0; qt < nqt; qt++) {
        int q0 = qt * BQ, cur = (qt - qt0) & 1;
        if (qt + 1 < nqt) {
            int nb = cur ^ 1;
            stage<BQ, DH, MMA_THREADS>(Qs + nb * BQ * LD, LD, q, C3, q0 + BQ, T);
            stage<BQ, DH, MMA_THREADS>(dOs + nb * BQ * LD, LD, go, C, q0 + BQ, T);
            for (int r = threadIdx.x; r < BQ; r += MMA_THREADS) {
                int qq = q0 + BQ + r;
                cp_async4(ls + nb * BQ + r, qq < T ? lse_h + qq : lse_h, qq < T);
                cp_async4(ds + nb * BQ + r, qq < T ? di_h + qq : di_h, qq < T);
            }
        }
        cp_async_commit();
        cp_async_wait1();
        __syncthreads();
        const bf16 *Qc = Qs + cur * BQ * LD, *dOc = dOs + cur * BQ * LD;
        const float *lc = ls + cur * BQ, *dc = ds + cur * BQ;
        // causal: a warp whose keys all follow the tile's last query has nothing to do
        if (!(causal && kw > q0 + BQ - 1)) {
            // S^T = K Q^T and dP^T = V dO^T (keys x queries)
            float p[MT][BQ / 8][4], dp[MT][BQ / 8][4];
            zero4(p);
            zero4(dp);
#pragma unroll
            for (int kk = 0; kk < DH / 16; kk++) {
                uint32_t ka[MT][4], va[MT][4];
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    ldsm_a(ka[i], Ks, LD, warp * 16 * MT + i * 16, kk * 16, lane);
                    ldsm_a(va[i], Vs, LD, warp * 16 * MT + i * 16, kk * 16, lane);
                }
#pragma unroll
                for (int j = 0; j < BQ / 16; j++) {
                    uint32_t qb[4], ob[4];
                    ldsm_b(qb, Qc, LD, j * 16, kk * 16, lane);
                    ldsm_b(ob, dOc, LD, j * 16, kk * 16, lane);
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        mma16816(p[i][2 * j], ka[i], qb[0], qb[1]);
                        mma16816(p[i][2 * j + 1], ka[i], qb[2], qb[3]);
                        mma16816(dp[i][2 * j], va[i], ob[0], ob[1]);
                        mma16816(dp[i][2 * j + 1], va[i], ob[2], ob[3]);
                    }
                }
            }
            // P^T = exp2(S^T scale log2e - lse log2e); dS^T = P^T (dP^T - Di)
            bool need = q0 + BQ > T || kw + 16 * MT > T || (causal && kw + 16 * MT - 1 > q0);
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < BQ / 8; j++)
#pragma unroll
                    for (int c = 0; c < 4; c++) {
                        int qc = j * 8 + 2 * t + (c & 1), qi = q0 + qc, key = kr[i][c >> 1];
                        bool masked = need && (qi >= T || key >= T || (causal && key > qi));
                        float pv = masked ? 0.0f : exp2f(fmaf(p[i][j][c], scale_log2, -lc[qc] * LOG2E));
                        p[i][j][c] = pv;
                        dp[i][j][c] = pv * (dp[i][j][c] - dc[qc]);
                    }
            // dV += P^T dO and dK += dS^T Q: k runs over the BQ queries
#pragma unroll
            for (int ks = 0; ks < BQ / 16; ks++) {
                uint32_t pa[MT][4], sa[MT][4];
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    c_to_a(pa[i], p[i][2 * ks], p[i][2 * ks + 1]);
                    c_to_a(sa[i], dp[i][2 * ks], dp[i][2 * ks + 1]);
                }
#pragma unroll
                for (int n = 0; n < DH / 8; n += 2) {
                    uint32_t ob[4], qb[4];
                    load_b_trans(ob, dOc, LD, ks * 16, n * 8, lane);
                    load_b_trans(qb, Qc, LD, ks * 16, n * 8, lane);
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        mma16816(dv[i][n], pa[i], ob[0], ob[1]);
                        mma16816(dv[i][n + 1], pa[i], ob[2], ob[3]);
                        mma16816(dk[i][n], sa[i], qb[0], qb[1]);
                        mma16816(dk[i][n + 1], sa[i], qb[2], qb[3]);
                    }
                }
            }
        }
        __syncthreads();  // the next iteration's prefetch overwrites this tile's stage
    }

    S *dkg = dqkv + (size_t)b * T * C3 + C + (size_t)h * DH, *dvg = dkg + C;
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            if (kr[i][r] >= T) continue;
#pragma unroll
            for (int n = 0; n < DH / 8; n++) {
                size_t o = (size_t)kr[i][r] * C3 + n * 8 + 2 * t;
                float2 a = load2(dkg + o), c = load2(dvg + o);
                a.x += scale * dk[i][n][2 * r], a.y += scale * dk[i][n][2 * r + 1];
                c.x += dv[i][n][2 * r], c.y += dv[i][n][2 * r + 1];
                store2(dkg + o, a.x, a.y);
                store2(dvg + o, c.x, c.y);
            }
        }
}

// ----------------------------------------------------------------------------
// backward v5, dQ: a block = BM = 64*MT queries of one (b, h), streaming key tiles of BN
// through two stages

template <int DH, int BN, int MT, int MINB, typename S>
__global__ void __launch_bounds__(MMA_THREADS, MINB) mma_backward_dq_kernel(
    S *dqkv, const S *dout, const S *qkv, const float *lse, const float *Di, int T,
    int C, int NH, int causal, float scale, float scale_log2) {
    constexpr int BM = 64 * MT, LD = DH + 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = reinterpret_cast<bf16 *>(smem_raw);  // [BM][LD]
    bf16 *dOs = Qs + BM * LD;                        // [BM][LD]
    bf16 *Ks = dOs + BM * LD;                        // [2][BN][LD]
    bf16 *Vs = Ks + 2 * BN * LD;                     // [2][BN][LD]
    int nq = (T + BM - 1) / BM, qt = nq - 1 - blockIdx.x;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    size_t C3 = 3 * (size_t)C;
    const S *q = qkv + (size_t)b * T * C3 + (size_t)h * DH, *k = q + C, *v = q + 2 * C;
    const S *go = dout + (size_t)b * T * C + (size_t)h * DH;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int q0 = qt * BM, rw = warp * 16 * MT;
    int qi[MT][2];
    float lr[MT][2], dr[MT][2];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            qi[i][r] = q0 + rw + i * 16 + g + 8 * r;
            lr[i][r] = qi[i][r] < T ? lse[(size_t)bh * T + qi[i][r]] * LOG2E : 0.0f;
            dr[i][r] = qi[i][r] < T ? Di[(size_t)bh * T + qi[i][r]] : 0.0f;
        }
    int nk = causal ? (min(q0 + BM, T) + BN - 1) / BN : (T + BN - 1) / BN;
    stage<BM, DH, MMA_THREADS>(Qs, LD, q, C3, q0, T);
    stage<BM, DH, MMA_THREADS>(dOs, LD, go, C, q0, T);
    stage<BN, DH, MMA_THREADS>(Ks, LD, k, C3, 0, T);
    stage<BN, DH, MMA_THREADS>(Vs, LD, v, C3, 0, T);
    cp_async_commit();
    float dq[MT][DH / 8][4];
    zero4(dq);

    for (int kt = 0; kt < nk; kt++) {
        int k0 = kt * BN, cur = kt & 1;
        if (kt + 1 < nk) {
            stage<BN, DH, MMA_THREADS>(Ks + (cur ^ 1) * BN * LD, LD, k, C3, k0 + BN, T);
            stage<BN, DH, MMA_THREADS>(Vs + (cur ^ 1) * BN * LD, LD, v, C3, k0 + BN, T);
        }
        cp_async_commit();
        cp_async_wait1();
        __syncthreads();
        const bf16 *Kc = Ks + cur * BN * LD, *Vc = Vs + cur * BN * LD;
        if (!(causal && k0 > q0 + rw + 16 * MT - 1)) {
            float s[MT][BN / 8][4], dp[MT][BN / 8][4];
            zero4(s);
            zero4(dp);
#pragma unroll
            for (int kk = 0; kk < DH / 16; kk++) {
                uint32_t qa[MT][4], ga[MT][4];
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    ldsm_a(qa[i], Qs, LD, rw + i * 16, kk * 16, lane);
                    ldsm_a(ga[i], dOs, LD, rw + i * 16, kk * 16, lane);
                }
#pragma unroll
                for (int j = 0; j < BN / 16; j++) {
                    uint32_t kb[4], vb[4];
                    ldsm_b(kb, Kc, LD, j * 16, kk * 16, lane);
                    ldsm_b(vb, Vc, LD, j * 16, kk * 16, lane);
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        mma16816(s[i][2 * j], qa[i], kb[0], kb[1]);
                        mma16816(s[i][2 * j + 1], qa[i], kb[2], kb[3]);
                        mma16816(dp[i][2 * j], ga[i], vb[0], vb[1]);
                        mma16816(dp[i][2 * j + 1], ga[i], vb[2], vb[3]);
                    }
                }
            }
            bool need = k0 + BN > T || q0 + rw + 16 * MT > T || (causal && k0 + BN - 1 > q0 + rw);
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < BN / 8; j++)
#pragma unroll
                    for (int c = 0; c < 4; c++) {
                        int key = k0 + j * 8 + 2 * t + (c & 1), r = c >> 1;
                        bool masked =
                            need && (qi[i][r] >= T || key >= T || (causal && key > qi[i][r]));
                        float pv = masked ? 0.0f : exp2f(fmaf(s[i][j][c], scale_log2, -lr[i][r]));
                        s[i][j][c] = pv * (dp[i][j][c] - dr[i][r]);  // dS
                    }
#pragma unroll
            for (int ks = 0; ks < BN / 16; ks++) {
                uint32_t sa[MT][4];
#pragma unroll
                for (int i = 0; i < MT; i++) c_to_a(sa[i], s[i][2 * ks], s[i][2 * ks + 1]);
#pragma unroll
                for (int n = 0; n < DH / 8; n += 2) {
                    uint32_t kb[4];
                    load_b_trans(kb, Kc, LD, ks * 16, n * 8, lane);
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        mma16816(dq[i][n], sa[i], kb[0], kb[1]);
                        mma16816(dq[i][n + 1], sa[i], kb[2], kb[3]);
                    }
                }
            }
        }
        __syncthreads();  // the next iteration's prefetch overwrites this tile's stage
    }

    S *dqg = dqkv + (size_t)b * T * C3 + (size_t)h * DH;
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            if (qi[i][r] >= T) continue;
#pragma unroll
            for (int n = 0; n < DH / 8; n++) {
                S *p = dqg + (size_t)qi[i][r] * C3 + n * 8 + 2 * t;
                float2 a = load2(p);
                store2(p, a.x + scale * dq[i][n][2 * r], a.y + scale * dq[i][n][2 * r + 1]);
            }
        }
}

// ----------------------------------------------------------------------------
// launchers. What runs (the fastest measured, docs/PERF.md v5; registers: nvcc -Xptxas -v):
//   forward   v5 at both head dims: D64 128 queries (MT 2) x 64-key tiles (247 registers),
//             D128 128 x 32 (254)
//   backward  v5: D128 dK/dV 64 keys x 32-query steps (244), dQ 128 queries (MT 2) x 32-key
//             tiles (252). (The v4 backward, 10-18% faster at D=64 in its day, is in git
//             history before the transformer-core change; PERF.md v4/v5 has its numbers.)

// (each overridable at compile time, -DFWD64_N=... -DFWD64_MT=..., for tuning runs)
#ifndef FWD64_N
#define FWD64_N 64
#endif
#ifndef FWD64_MT
#define FWD64_MT 2
#endif
#ifndef FWD128_N
#define FWD128_N 32
#endif
#ifndef FWD128_MT
#define FWD128_MT 2
#endif
#ifndef DKDV64_N
#define DKDV64_N 64
#endif
#ifndef DKDV64_MT
#define DKDV64_MT 1
#endif
#ifndef DKDV128_N
#define DKDV128_N 32
#endif
#ifndef DKDV128_MT
#define DKDV128_MT 1
#endif
#ifndef DQ64_N
#define DQ64_N 32
#endif
#ifndef DQ64_MT
#define DQ64_MT 2
#endif
#ifndef DQ128_N
#define DQ128_N 32
#endif
#ifndef DQ128_MT
#define DQ128_MT 2
#endif

#ifndef DKDV64_MINB
#define DKDV64_MINB 1
#endif
#ifndef DKDV128_MINB
#define DKDV128_MINB 1
#endif
#ifndef DQ64_MINB
#define DQ64_MINB 1
#endif
#ifndef DQ128_MINB
#define DQ128_MINB 1
#endif

template <int DH> struct AttnCfg;
template <> struct AttnCfg<64> {
    static constexpr int F[2] = {FWD64_N, FWD64_MT}, KV[3] = {DKDV64_N, DKDV64_MT, DKDV64_MINB},
                         Q[3] = {DQ64_N, DQ64_MT, DQ64_MINB};
};
template <> struct AttnCfg<128> {
    static constexpr int F[2] = {FWD128_N, FWD128_MT}, KV[3] = {DKDV128_N, DKDV128_MT, DKDV128_MINB},
                         Q[3] = {DQ128_N, DQ128_MT, DQ128_MINB};
};

static void allow_smem(const void *kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int DH, typename S>
static void mma_forward(S *out, float *lse, const S *qkv, int B, int T, int C, int NH,
                        int causal) {
    constexpr int BN = AttnCfg<DH>::F[0], MT = AttnCfg<DH>::F[1], BM = 64 * MT;
    static int done;
    size_t smem = (size_t)(BM + 4 * BN) * (DH + 8) * sizeof(bf16);
    if (!done) allow_smem((const void *)mma_forward_kernel<DH, BN, MT, S>, smem), done = 1;
    float scale_log2 = LOG2E / sqrtf((float)DH);
    mma_forward_kernel<DH, BN, MT, S><<<dim3(cdiv(T, BM), B * NH), MMA_THREADS, smem>>>(
        out, lse, qkv, T, C, NH, causal, scale_log2);
    cudaCheckLaunch();
}

template <int DH, typename S>
static void mma_backward(S *dqkv, const S *dout, const S *qkv, const float *lse,
                         const float *Di, int B, int T, int C, int NH, int causal) {
    float scale = 1.0f / sqrtf((float)DH), scale_log2 = scale * LOG2E;
    static int done;
    constexpr int BQ = AttnCfg<DH>::KV[0], MK = AttnCfg<DH>::KV[1], BMK = 64 * MK;
    constexpr int BN = AttnCfg<DH>::Q[0], MQ = AttnCfg<DH>::Q[1], BMQ = 64 * MQ;
    constexpr int NBK = AttnCfg<DH>::KV[2], NBQ = AttnCfg<DH>::Q[2];
    size_t smem_kv =
        (size_t)(2 * BMK + 4 * BQ) * (DH + 8) * sizeof(bf16) + 4 * BQ * sizeof(float);
    size_t smem_q = (size_t)(2 * BMQ + 4 * BN) * (DH + 8) * sizeof(bf16);
    if (!done) {
        allow_smem((const void *)mma_backward_dkdv_kernel<DH, BQ, MK, NBK, S>, smem_kv);
        allow_smem((const void *)mma_backward_dq_kernel<DH, BN, MQ, NBQ, S>, smem_q);
        done = 1;
    }
    mma_backward_dkdv_kernel<DH, BQ, MK, NBK, S>
        <<<dim3(cdiv(T, BMK), B * NH), MMA_THREADS, smem_kv>>>(
            dqkv, dout, qkv, lse, Di, T, C, NH, causal, scale, scale_log2);
    cudaCheckLaunch();
    mma_backward_dq_kernel<DH, BN, MQ, NBQ, S><<<dim3(cdiv(T, BMQ), B * NH), MMA_THREADS, smem_q>>>(
        dqkv, dout, qkv, lse, Di, T, C, NH, causal, scale, scale_log2);
    cudaCheckLaunch();
}

// Head dims 64 and 128, dense (no masks: this family lost to wgmma before masks existed).
static int mma_supports(int C, int NH) {
    if (NH <= 0 || C % NH) return 0;
    int D = C / NH;
    return D == 64 || D == 128;
}

static const float *mma_di(const float *dout, const float *out, int B, int T, int C, int NH,
                           pb_dtype dt) {
    pb_attn_desc d = {B, T, T, NH, C / NH, 1.0f / sqrtf((float)(C / NH)), 1, NULL, NULL};
    return attn_cuda_di(dout, out, &d, dt);
}

extern "C" void attn_flash_mma_cuda_forward(float *out, float *lse, const float *qkv, int B,
                                            int T, int C, int NH, int causal) {
    PB_ASSERT(mma_supports(C, NH) && T > 0 && B * NH <= 65535);
    if (C / NH == 64) mma_forward<64>(out, lse, qkv, B, T, C, NH, causal);
    else mma_forward<128>(out, lse, qkv, B, T, C, NH, causal);
}

extern "C" void attn_flash_mma_cuda_backward(float *dqkv, const float *dout, const float *out,
                                             const float *lse, const float *qkv, int B, int T,
                                             int C, int NH, int causal) {
    PB_ASSERT(mma_supports(C, NH) && T > 0 && B * NH <= 65535);
    const float *Di = mma_di(dout, out, B, T, C, NH, PB_DTYPE_FP32);
    if (C / NH == 64) mma_backward<64>(dqkv, dout, qkv, lse, Di, B, T, C, NH, causal);
    else mma_backward<128>(dqkv, dout, qkv, lse, Di, B, T, C, NH, causal);
}

// --- bf16 tensors (the mixed-precision op table): qkv, out, dout, dqkv hold bf16

extern "C" void attn_flash_mma_cuda_forward_bf16(float *out_, float *lse, const float *qkv_,
                                                 int B, int T, int C, int NH, int causal) {
    PB_ASSERT(mma_supports(C, NH) && T > 0 && B * NH <= 65535 && C % 8 == 0);
    bf16 *out = (bf16 *)out_;
    const bf16 *qkv = (const bf16 *)qkv_;
    if (C / NH == 64) mma_forward<64>(out, lse, qkv, B, T, C, NH, causal);
    else mma_forward<128>(out, lse, qkv, B, T, C, NH, causal);
}

extern "C" void attn_flash_mma_cuda_backward_bf16(float *dqkv_, const float *dout_,
                                                  const float *out_, const float *lse,
                                                  const float *qkv_, int B, int T, int C, int NH,
                                                  int causal) {
    PB_ASSERT(mma_supports(C, NH) && T > 0 && B * NH <= 65535 && C % 8 == 0);
    bf16 *dqkv = (bf16 *)dqkv_;
    const bf16 *dout = (const bf16 *)dout_, *qkv = (const bf16 *)qkv_;
    const float *Di = mma_di(dout_, out_, B, T, C, NH, PB_DTYPE_BF16);
    if (C / NH == 64) mma_backward<64>(dqkv, dout, qkv, lse, Di, B, T, C, NH, causal);
    else mma_backward<128>(dqkv, dout, qkv, lse, Di, B, T, C, NH, causal);
}
