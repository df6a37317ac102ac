// flash_mma_cuda.cu: dense FlashAttention-2 on the tensor cores: bf16 mma.sync (m16n8k16)
// with fp32 accumulation, forward and backward, head dims 64 and 128.
//
// Same algorithm, contract and determinism as flash_cuda.cu (read that first); what changes
// is where the products run. The kernels are templates on the tensors' element type S:
// with fp32 tensors (the fp32 op table, opt-in through pb_cuda_set_attention_bf16) each
// tile is rounded to bf16 as it is staged into shared memory, so results carry bf16 error
// (~4e-3 relative); with bf16 tensors (the mixed-precision table) tiles are copied as they
// are, 16 bytes at a time, and outputs written in bf16.
//
// Warps and fragments. A block has 4 warps; each warp owns 16 rows of the tile it computes
// (queries in the forward and dQ kernels, keys in the dK/dV kernel). For one m16n8k16 mma
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
#include "kernels/attention/flash_cuda.h"
}

#define MMA_WARPS 4
#define MMA_THREADS (32 * MMA_WARPS)
#define TILE 64  // rows of a block's own tile (queries, or keys), and of streamed key tiles
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

// Stages rows t0 .. t0+ROWS-1 (DH floats each, row r at src + r*stride) as bf16 into
// X[r][d] (stride ld); rows past T are 0. 16-byte loads, 8-byte stores.
template <int ROWS, int DH>
__device__ __forceinline__ void stage(bf16 *X, int ld, const float *src, size_t stride, int t0,
                                      int T) {
    for (int idx = threadIdx.x; idx < ROWS * DH / 4; idx += MMA_THREADS) {
        int r = idx / (DH / 4), c = idx % (DH / 4) * 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (t0 + r < T) v = *reinterpret_cast<const float4 *>(src + (size_t)(t0 + r) * stride + c);
        *reinterpret_cast<uint2 *>(X + r * ld + c) =
            make_uint2(pack_bf16(v.x, v.y), pack_bf16(v.z, v.w));
    }
}

// The same from bf16 rows: a plain copy, 16 bytes (8 elements) per load and store.
template <int ROWS, int DH>
__device__ __forceinline__ void stage(bf16 *X, int ld, const bf16 *src, size_t stride, int t0,
                                      int T) {
    for (int idx = threadIdx.x; idx < ROWS * DH / 8; idx += MMA_THREADS) {
        int r = idx / (DH / 8), c = idx % (DH / 8) * 8;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (t0 + r < T) v = *reinterpret_cast<const uint4 *>(src + (size_t)(t0 + r) * stride + c);
        *reinterpret_cast<uint4 *>(X + r * ld + c) = v;
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
// forward: a block = 64 queries of one (b, h); scores in the log2 domain (exp2f)

template <int DH, typename S>
__global__ void __launch_bounds__(MMA_THREADS) mma_forward_kernel(S *out, float *lse,
                                                                  const S *qkv, int T, int C,
                                                                  int NH, int causal,
                                                                  float scale_log2) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int LD = DH + 8;
    bf16 *Qs = reinterpret_cast<bf16 *>(smem_raw);  // [64][LD]
    bf16 *Ks = Qs + TILE * LD;                       // [64][LD]
    bf16 *Vs = Ks + TILE * LD;                       // [64][LD]
    int nq = (T + TILE - 1) / TILE, qt = nq - 1 - blockIdx.x;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    size_t C3 = 3 * (size_t)C;
    const S *q = qkv + (size_t)b * T * C3 + (size_t)h * DH, *k = q + C, *v = q + 2 * C;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int q0 = qt * TILE;

    stage<TILE, DH>(Qs, LD, q, C3, q0, T);
    __syncthreads();
    uint32_t qa[DH / 16][4];
#pragma unroll
    for (int kk = 0; kk < DH / 16; kk++) load_a(qa[kk], Qs, LD, warp * 16, kk * 16, g, t);

    float o[DH / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    zero4(o);
    int qi[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
    int nk = causal ? qt + 1 : nq;
    for (int kt = 0; kt < nk; kt++) {
        int k0 = kt * TILE;
        __syncthreads();
        stage<TILE, DH>(Ks, LD, k, C3, k0, T);
        stage<TILE, DH>(Vs, LD, v, C3, k0, T);
        __syncthreads();
        float s[TILE / 8][4];
        zero4(s);
#pragma unroll
        for (int j = 0; j < TILE / 8; j++)
#pragma unroll
            for (int kk = 0; kk < DH / 16; kk++) {
                uint32_t b0, b1;
                load_b(b0, b1, Ks, LD, j * 8, kk * 16, g, t);
                mma16816(s[j], qa[kk], b0, b1);
            }
        // mask, running max per row (rows g and g+8: c >> 1), rescale
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < TILE / 8; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int key = k0 + j * 8 + 2 * t + (c & 1), r = c >> 1;
                bool masked = key >= T || (causal && key > qi[r]);
                s[j][c] = masked ? -INFINITY : s[j][c] * scale_log2;
                mx[r] = fmaxf(mx[r], s[j][c]);
            }
        float base[2], corr[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            float mn = fmaxf(m[r], mx[r]);
            base[r] = mn == -INFINITY ? 0.0f : mn;
            corr[r] = exp2f(m[r] - base[r]);
            m[r] = mn;
            l[r] *= corr[r];  // this lane's partial sum; the quad is summed at the end
        }
#pragma unroll
        for (int j = 0; j < TILE / 8; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                s[j][c] = exp2f(s[j][c] - base[c >> 1]);
                l[c >> 1] += s[j][c];
            }
#pragma unroll
        for (int n = 0; n < DH / 8; n++)
#pragma unroll
            for (int c = 0; c < 4; c++) o[n][c] *= corr[c >> 1];
        // O += P V: k runs over this tile's 64 keys
#pragma unroll
        for (int ks = 0; ks < TILE / 16; ks++) {
            uint32_t pa[4];
            c_to_a(pa, s[2 * ks], s[2 * ks + 1]);
#pragma unroll
            for (int n = 0; n < DH / 8; n += 2) {
                uint32_t vb[4];
                load_b_trans(vb, Vs, LD, ks * 16, n * 8, lane);
                mma16816(o[n], pa, vb[0], vb[1]);
                mma16816(o[n + 1], pa, vb[2], vb[3]);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        if (qi[r] >= T) continue;
        float inv = 1.0f / l[r];
        S *dst = out + ((size_t)b * T + qi[r]) * C + (size_t)h * DH;
#pragma unroll
        for (int n = 0; n < DH / 8; n++)
            store2(dst + n * 8 + 2 * t, o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
        // natural log: lse = (m + log2 l) * ln 2
        if (t == 0) lse[(size_t)bh * T + qi[r]] = (m[r] + log2f(l[r])) * 0.6931471805599453f;
    }
}

// ----------------------------------------------------------------------------
// backward, dK and dV: a block = 64 keys of one (b, h), streaming query tiles of BQ rows.
// Each warp computes S^T (its 16 keys x BQ queries) directly, so P^T and dS^T come out of
// the accumulators in the A layout that dV += P^T dO and dK += dS^T Q need.

template <int DH, int BQ, typename S>
__global__ void __launch_bounds__(MMA_THREADS) mma_backward_dkdv_kernel(
    S *dqkv, const S *dout, const S *qkv, const float *lse, const float *Di, int T,
    int C, int NH, int causal, float scale, float scale_log2) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int LD = DH + 8;
    bf16 *Ks = reinterpret_cast<bf16 *>(smem_raw);  // [64][LD]
    bf16 *Vs = Ks + TILE * LD;                       // [64][LD]
    bf16 *Qs = Vs + TILE * LD;                       // [BQ][LD]
    bf16 *dOs = Qs + BQ * LD;                        // [BQ][LD]
    float *ls = reinterpret_cast<float *>(dOs + BQ * LD);  // [BQ] lse * log2 e
    float *ds = ls + BQ;                                     // [BQ] Di
    int kt = blockIdx.x;  // causal: low key tiles see the most queries, so they start first
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    size_t C3 = 3 * (size_t)C;
    const S *q = qkv + (size_t)b * T * C3 + (size_t)h * DH, *k = q + C, *v = q + 2 * C;
    const S *go = dout + (size_t)b * T * C + (size_t)h * DH;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int k0 = kt * TILE;
    int kr[2] = {k0 + warp * 16 + g, k0 + warp * 16 + g + 8};

    stage<TILE, DH>(Ks, LD, k, C3, k0, T);
    stage<TILE, DH>(Vs, LD, v, C3, k0, T);
    float dk[DH / 8][4], dv[DH / 8][4];
    zero4(dk);
    zero4(dv);

    int nqt = (T + BQ - 1) / BQ;
    for (int qt = causal ? k0 / BQ : 0; qt < nqt; qt++) {
        int q0 = qt * BQ;
        __syncthreads();
        stage<BQ, DH>(Qs, LD, q, C3, q0, T);
        stage<BQ, DH>(dOs, LD, go, C, q0, T);
        for (int r = threadIdx.x; r < BQ; r += MMA_THREADS) {
            bool in = q0 + r < T;
            ls[r] = in ? lse[(size_t)bh * T + q0 + r] * LOG2E : 0.0f;
            ds[r] = in ? Di[(size_t)bh * T + q0 + r] : 0.0f;
        }
        __syncthreads();
        // S^T = K Q^T and dP^T = V dO^T (keys x queries)
        float p[BQ / 8][4], dp[BQ / 8][4];
        zero4(p);
        zero4(dp);
#pragma unroll
        for (int kk = 0; kk < DH / 16; kk++) {
            uint32_t ka[4], va[4];
            load_a(ka, Ks, LD, warp * 16, kk * 16, g, t);
            load_a(va, Vs, LD, warp * 16, kk * 16, g, t);
#pragma unroll
            for (int j = 0; j < BQ / 8; j++) {
                uint32_t b0, b1;
                load_b(b0, b1, Qs, LD, j * 8, kk * 16, g, t);
                mma16816(p[j], ka, b0, b1);
                load_b(b0, b1, dOs, LD, j * 8, kk * 16, g, t);
                mma16816(dp[j], va, b0, b1);
            }
        }
        // P^T = exp2(S^T scale log2e - lse log2e); dS^T = P^T (dP^T - Di)
#pragma unroll
        for (int j = 0; j < BQ / 8; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int qc = j * 8 + 2 * t + (c & 1), qi = q0 + qc, key = kr[c >> 1];
                bool masked = qi >= T || key >= T || (causal && key > qi);
                float pv = masked ? 0.0f : exp2f(p[j][c] * scale_log2 - ls[qc]);
                p[j][c] = pv;
                dp[j][c] = pv * (dp[j][c] - ds[qc]);
            }
        // dV += P^T dO and dK += dS^T Q: k runs over the BQ queries
#pragma unroll
        for (int ks = 0; ks < BQ / 16; ks++) {
            uint32_t pa[4], sa[4];
            c_to_a(pa, p[2 * ks], p[2 * ks + 1]);
            c_to_a(sa, dp[2 * ks], dp[2 * ks + 1]);
#pragma unroll
            for (int n = 0; n < DH / 8; n += 2) {
                uint32_t ob[4], qb[4];
                load_b_trans(ob, dOs, LD, ks * 16, n * 8, lane);
                mma16816(dv[n], pa, ob[0], ob[1]);
                mma16816(dv[n + 1], pa, ob[2], ob[3]);
                load_b_trans(qb, Qs, LD, ks * 16, n * 8, lane);
                mma16816(dk[n], sa, qb[0], qb[1]);
                mma16816(dk[n + 1], sa, qb[2], qb[3]);
            }
        }
    }

    S *dkg = dqkv + (size_t)b * T * C3 + C + (size_t)h * DH, *dvg = dkg + C;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (kr[r] >= T) continue;
#pragma unroll
        for (int n = 0; n < DH / 8; n++) {
            size_t o = (size_t)kr[r] * C3 + n * 8 + 2 * t;
            float2 a = load2(dkg + o), c = load2(dvg + o);
            a.x += scale * dk[n][2 * r], a.y += scale * dk[n][2 * r + 1];
            c.x += dv[n][2 * r], c.y += dv[n][2 * r + 1];
            store2(dkg + o, a.x, a.y);
            store2(dvg + o, c.x, c.y);
        }
    }
}

// ----------------------------------------------------------------------------
// backward, dQ: a block = 64 queries of one (b, h), streaming key tiles of 64

template <int DH, typename S>
__global__ void __launch_bounds__(MMA_THREADS) mma_backward_dq_kernel(
    S *dqkv, const S *dout, const S *qkv, const float *lse, const float *Di, int T,
    int C, int NH, int causal, float scale, float scale_log2) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int LD = DH + 8;
    bf16 *Qs = reinterpret_cast<bf16 *>(smem_raw);  // [64][LD]
    bf16 *dOs = Qs + TILE * LD;                      // [64][LD]
    bf16 *Ks = dOs + TILE * LD;                      // [64][LD]
    bf16 *Vs = Ks + TILE * LD;                       // [64][LD]
    int nq = (T + TILE - 1) / TILE, qt = nq - 1 - blockIdx.x;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    size_t C3 = 3 * (size_t)C;
    const S *q = qkv + (size_t)b * T * C3 + (size_t)h * DH, *k = q + C, *v = q + 2 * C;
    const S *go = dout + (size_t)b * T * C + (size_t)h * DH;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int q0 = qt * TILE;
    int qi[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
    float lr[2], dr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        lr[r] = qi[r] < T ? lse[(size_t)bh * T + qi[r]] * LOG2E : 0.0f;
        dr[r] = qi[r] < T ? Di[(size_t)bh * T + qi[r]] : 0.0f;
    }
    stage<TILE, DH>(Qs, LD, q, C3, q0, T);
    stage<TILE, DH>(dOs, LD, go, C, q0, T);
    float dq[DH / 8][4];
    zero4(dq);

    int nk = causal ? qt + 1 : nq;
    for (int kt = 0; kt < nk; kt++) {
        int k0 = kt * TILE;
        __syncthreads();
        stage<TILE, DH>(Ks, LD, k, C3, k0, T);
        stage<TILE, DH>(Vs, LD, v, C3, k0, T);
        __syncthreads();
        float s[TILE / 8][4], dp[TILE / 8][4];
        zero4(s);
        zero4(dp);
#pragma unroll
        for (int kk = 0; kk < DH / 16; kk++) {
            uint32_t qa[4], ga[4];
            load_a(qa, Qs, LD, warp * 16, kk * 16, g, t);
            load_a(ga, dOs, LD, warp * 16, kk * 16, g, t);
#pragma unroll
            for (int j = 0; j < TILE / 8; j++) {
                uint32_t b0, b1;
                load_b(b0, b1, Ks, LD, j * 8, kk * 16, g, t);
                mma16816(s[j], qa, b0, b1);
                load_b(b0, b1, Vs, LD, j * 8, kk * 16, g, t);
                mma16816(dp[j], ga, b0, b1);
            }
        }
#pragma unroll
        for (int j = 0; j < TILE / 8; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int key = k0 + j * 8 + 2 * t + (c & 1), r = c >> 1;
                bool masked = qi[r] >= T || key >= T || (causal && key > qi[r]);
                float pv = masked ? 0.0f : exp2f(s[j][c] * scale_log2 - lr[r]);
                s[j][c] = pv * (dp[j][c] - dr[r]);  // dS
            }
#pragma unroll
        for (int ks = 0; ks < TILE / 16; ks++) {
            uint32_t sa[4];
            c_to_a(sa, s[2 * ks], s[2 * ks + 1]);
#pragma unroll
            for (int n = 0; n < DH / 8; n += 2) {
                uint32_t kb[4];
                load_b_trans(kb, Ks, LD, ks * 16, n * 8, lane);
                mma16816(dq[n], sa, kb[0], kb[1]);
                mma16816(dq[n + 1], sa, kb[2], kb[3]);
            }
        }
    }

    S *dqg = dqkv + (size_t)b * T * C3 + (size_t)h * DH;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (qi[r] >= T) continue;
#pragma unroll
        for (int n = 0; n < DH / 8; n++) {
            S *p = dqg + (size_t)qi[r] * C3 + n * 8 + 2 * t;
            float2 a = load2(p);
            store2(p, a.x + scale * dq[n][2 * r], a.y + scale * dq[n][2 * r + 1]);
        }
    }
}

// ----------------------------------------------------------------------------
// launchers

static void allow_smem(const void *kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int DH, typename S>
static void mma_forward(S *out, float *lse, const S *qkv, int B, int T, int C, int NH,
                        int causal) {
    static int done;
    size_t smem = (size_t)3 * TILE * (DH + 8) * sizeof(bf16);
    if (!done) allow_smem((const void *)mma_forward_kernel<DH, S>, smem), done = 1;
    float scale_log2 = LOG2E / sqrtf((float)DH);
    mma_forward_kernel<DH, S><<<dim3(cdiv(T, TILE), B * NH), MMA_THREADS, smem>>>(
        out, lse, qkv, T, C, NH, causal, scale_log2);
    cudaCheckLaunch();
}

template <int DH, typename S>
static void mma_backward(S *dqkv, const S *dout, const S *qkv, const float *lse,
                         const float *Di, int B, int T, int C, int NH, int causal) {
    // 32 query rows per step at DH = 128 keep the dK and dV accumulators in registers
    const int BQ = DH == 128 ? 32 : 64;
    static int done;
    size_t smem_kv = (size_t)(2 * TILE + 2 * BQ) * (DH + 8) * sizeof(bf16) + 2 * BQ * sizeof(float);
    size_t smem_q = (size_t)4 * TILE * (DH + 8) * sizeof(bf16);
    if (!done) {
        allow_smem((const void *)mma_backward_dkdv_kernel<DH, BQ, S>, smem_kv);
        allow_smem((const void *)mma_backward_dq_kernel<DH, S>, smem_q);
        done = 1;
    }
    float scale = 1.0f / sqrtf((float)DH), scale_log2 = scale * LOG2E;
    mma_backward_dkdv_kernel<DH, BQ, S><<<dim3(cdiv(T, TILE), B * NH), MMA_THREADS, smem_kv>>>(
        dqkv, dout, qkv, lse, Di, T, C, NH, causal, scale, scale_log2);
    cudaCheckLaunch();
    mma_backward_dq_kernel<DH, S><<<dim3(cdiv(T, TILE), B * NH), MMA_THREADS, smem_q>>>(
        dqkv, dout, qkv, lse, Di, T, C, NH, causal, scale, scale_log2);
    cudaCheckLaunch();
}

extern "C" int attn_flash_mma_cuda_supports(int C, int NH) {
    if (NH <= 0 || C % NH) return 0;
    int D = C / NH;
    return D == 64 || D == 128;
}

extern "C" void attn_flash_mma_cuda_forward(float *out, float *lse, const float *qkv, int B,
                                            int T, int C, int NH, int causal) {
    PB_ASSERT(attn_flash_mma_cuda_supports(C, NH) && T > 0 && B * NH <= 65535);
    if (C / NH == 64) mma_forward<64>(out, lse, qkv, B, T, C, NH, causal);
    else mma_forward<128>(out, lse, qkv, B, T, C, NH, causal);
}

extern "C" void attn_flash_mma_cuda_backward(float *dqkv, const float *dout, const float *out,
                                             const float *lse, const float *qkv, int B, int T,
                                             int C, int NH, int causal) {
    PB_ASSERT(attn_flash_mma_cuda_supports(C, NH) && T > 0 && B * NH <= 65535);
    float *Di = attn_flash_cuda_di(dout, out, B, T, C, NH);
    if (C / NH == 64) mma_backward<64>(dqkv, dout, qkv, lse, Di, B, T, C, NH, causal);
    else mma_backward<128>(dqkv, dout, qkv, lse, Di, B, T, C, NH, causal);
}

// --- bf16 tensors (the mixed-precision op table): qkv, out, dout, dqkv hold bf16

// Di (B,NH,T) = rowsum(dO * O) per head from bf16 rows: one warp per (b, t, h).
__global__ void mma_di_bf16_kernel(float *Di, const bf16 *dout, const bf16 *out, int B, int T,
                                   int C, int NH) {
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= (size_t)B * T * NH) return;
    int h = (int)(w % NH);
    size_t bt = w / NH;  // b*T + t
    int D = C / NH;
    const bf16 *g = dout + bt * C + (size_t)h * D, *o = out + bt * C + (size_t)h * D;
    float s = 0.0f;
    for (int d = 2 * lane; d < D; d += 64) {
        float2 a = load2(g + d), c = load2(o + d);
        s += a.x * c.x + a.y * c.y;
    }
    s = warp_sum(s);
    if (lane == 0) {
        size_t b = bt / T, t = bt % T;
        Di[(b * NH + h) * T + t] = s;
    }
}

extern "C" void attn_flash_mma_cuda_forward_bf16(float *out_, float *lse, const float *qkv_,
                                                 int B, int T, int C, int NH, int causal) {
    PB_ASSERT(attn_flash_mma_cuda_supports(C, NH) && T > 0 && B * NH <= 65535 && C % 8 == 0);
    bf16 *out = (bf16 *)out_;
    const bf16 *qkv = (const bf16 *)qkv_;
    if (C / NH == 64) mma_forward<64>(out, lse, qkv, B, T, C, NH, causal);
    else mma_forward<128>(out, lse, qkv, B, T, C, NH, causal);
}

extern "C" void attn_flash_mma_cuda_backward_bf16(float *dqkv_, const float *dout_,
                                                  const float *out_, const float *lse,
                                                  const float *qkv_, int B, int T, int C, int NH,
                                                  int causal) {
    PB_ASSERT(attn_flash_mma_cuda_supports(C, NH) && T > 0 && B * NH <= 65535 && C % 8 == 0);
    bf16 *dqkv = (bf16 *)dqkv_;
    const bf16 *dout = (const bf16 *)dout_, *out = (const bf16 *)out_, *qkv = (const bf16 *)qkv_;
    float *Di = (float *)cuda_scratch(CUDA_SCRATCH_ATTN, (size_t)B * NH * T * sizeof(float));
    size_t warps = (size_t)B * T * NH;
    mma_di_bf16_kernel<<<cdiv(warps * 32, 256), 256>>>(Di, dout, out, B, T, C, NH);
    cudaCheckLaunch();
    if (C / NH == 64) mma_backward<64>(dqkv, dout, qkv, lse, Di, B, T, C, NH, causal);
    else mma_backward<128>(dqkv, dout, qkv, lse, Di, B, T, C, NH, causal);
}
