// smallcache_cuda.cu: attention for head dims where FlashAttention-style kernels stop being
// good or existing (D > 128 here): the small-cache algorithm of smallcache.c on the GPU.
//
// An H200 SM holds ~116K bf16 words of shared memory, below D^2 from D ~ 340: a FlashAttention
// tile of Br queries with all D columns then has Br < D and rereads K and V T/Br times. Here
// the scores are materialised in HBM instead, one (T,T) matrix per head, and every product
// is a cuBLASLt GEMM (square-tiled by cuBLAS, the sqrt(M) tiling of I/O-optimal matrix
// multiplication), each strided-batched over many (b, h) pairs (over a batch row's heads or
// over batch rows at one head, whichever needs fewer calls: sc_segments):
//   forward:  S = Q K^T (fp32 out); a row kernel (the row read once, into registers):
//             P = exp(scale S - lse) masked (E), lse;
//             O = P V.
//   backward: S = Q K^T again; P from the saved lse; dV += P^T dO; dP = dO V^T (fp32, over
//             S); dS = P (dP - Di) (over P); dQ += scale dS K; dK += scale dS^T Q.
// E is the tensors' element type: bf16 (the bf16 table: bf16 operands, fp32 accumulation,
// P and dS rounded to bf16 like the wgmma kernels) or float (the fp32 table).
//
// Causal: queries in row blocks of R; block [i0, i0+R) multiplies against keys [0, i0+R)
// only, so about half the work is done (1/2 + R/2T). dK and dV walk key blocks of the same
// R against queries [j0, T): every P and dS entry they read was written (0 where masked).
// Key padding (kv_len, device memory) is applied by the row kernels only: keys j >= kv_len[b]
// get P = dS = 0 exactly, so their dK and dV receive += 0 (the products still run over them;
// reading kv_len on the host would cost a synchronisation per call).
//
// Memory: (4 + sizeof E) T ld bytes per (b, h) pair (ld = T rounded up to 64, so rows stay
// aligned for the tensor-core kernels), in one scratch buffer (CUDA_SCRATCH_SCORES) sized for
// a chunk of pairs under a budget (8 GiB by default; attn_smallcache_cuda_set_budget).
// Deterministic: cuBLASLt products and fixed-shape block reductions, no atomics.
#include "kernels/cuda/cuda_common.cuh"

#include <math.h>

extern "C" {
#include "kernels/attention/flash_cuda.h"
}

#define SC_BUDGET_DEFAULT ((size_t)8 << 30)
#define SC_THREADS 512  // the row kernels: one block per score row

static size_t g_budget = SC_BUDGET_DEFAULT;
static int g_rows;  // causal row block R; 0: the plan's own choice

extern "C" void attn_smallcache_cuda_set_rows(int R) { g_rows = R > 0 ? R : 0; }

extern "C" void attn_smallcache_cuda_set_budget(size_t bytes) {
    g_budget = bytes ? bytes : SC_BUDGET_DEFAULT;
}

// Causal row blocks of R queries: the products compute 1/2 + R/2T of the full square, but
// each launch's products are small when R is (the first block's R x R), and their count grows
// with T/R. Measured on the H200 (bench_smallcache --rows, docs/PERF.md): T/4 queries, at
// least 512 and at most 2048, a multiple of 64 (aligned rows for cuBLASLt).
extern "C" int attn_smallcache_cuda_rows(int T, int causal) {
    if (!causal) return T;
    int R = g_rows;
    if (!R) R = T / 4 / 64 * 64, R = R < 512 ? 512 : R > 2048 ? 2048 : R;
    return R < T ? R : T;
}

// ----------------------------------------------------------------------------
// the plan of one call

typedef struct {
    int B, T, NH, D, C, C3;
    int ld;         // row stride of S and P: T rounded up to 64 elements
    int R;          // causal row and key block (T when not causal)
    size_t head;    // elements of one pair's S (and of its P): T * ld
    int per_chunk;  // (b, h) pairs whose scores are held at once
} sc_plan;

static sc_plan sc_make_plan(const pb_attn_desc *d, size_t esize) {
    sc_plan p;
    p.B = d->B, p.T = d->T, p.NH = d->NH, p.D = d->D, p.C = d->NH * d->D, p.C3 = 3 * p.C;
    p.ld = (d->T + 63) / 64 * 64;
    p.R = attn_smallcache_cuda_rows(d->T, d->causal);
    p.head = (size_t)d->T * p.ld;
    size_t pair = p.head * (4 + esize);
    size_t n = g_budget / pair, pairs = (size_t)d->B * d->NH;
    if (n < 1) n = 1;  // T <= SC_MAX_T keeps one pair within 8 GiB (supports())
    p.per_chunk = (int)(n < pairs ? n : pairs);
    return p;
}

extern "C" size_t attn_smallcache_cuda_scratch_bytes(const pb_attn_desc *d, pb_dtype dt) {
    size_t es = dt == PB_DTYPE_BF16 ? 2 : 4;
    sc_plan p = sc_make_plan(d, es);
    return (size_t)p.per_chunk * p.head * (4 + es);
}

template <typename E> static cudaDataType_t cu_type(void);
template <> cudaDataType_t cu_type<float>(void) { return CUDA_R_32F; }
template <> cudaDataType_t cu_type<bf16>(void) { return CUDA_R_16BF; }

// ----------------------------------------------------------------------------
// products over a batch of (b, h) pairs at once, row-major in pebble's terms (cuBLASLt's
// column-major view is each one transposed: matmul_cuda.cu). A batch steps either over heads
// of one batch row (operands D apart in the (B,T,*) tensors, scratch head apart) or over
// batch rows at one head (operands T * 3C or T * C apart, scratch NH * head apart): sc_batch
// holds the count and the element strides. Each product takes the strides of its operands.

typedef struct {
    int n;             // products in the batch
    int64_t scr;       // between consecutive pairs' S (and P)
    int64_t c3, c1;    // between their rows of a (B,T,3C) tensor and of a (B,T,C) one
} sc_batch;

// X (n, m) = A (n, D) B (m, D)^T, X fp32 of row stride ldx: S = Q K^T, dP = dO V^T
template <typename E>
static void mm_abt(float *X, int ldx, const E *A, int lda, int64_t sa, const E *Bm, int ldb,
                   int64_t sb, int n, int m, int D, const sc_batch *bt) {
    cuda_matmul_strided(X, Bm, A, m, n, D, 1, 0, ldb, lda, ldx, sb, sa, bt->scr, bt->n, 1.0f,
                        0.0f, cu_type<E>(), CUDA_R_32F);
}

// Y (n, D) = alpha X (n, k) M (k, D) + beta Y: O = P V, dQ += scale dS K
template <typename E>
static void mm_xm(E *Y, int ldy, int64_t sy, const E *X, int ldx, const E *M, int ldm,
                  int64_t sm, int n, int k, int D, const sc_batch *bt, float alpha,
                  float beta) {
    cuda_matmul_strided(Y, M, X, D, n, k, 0, 0, ldm, ldx, ldy, sm, bt->scr, sy, bt->n, alpha,
                        beta, cu_type<E>(), cu_type<E>());
}

// Y (n, D) = alpha X^T M + beta Y with X (k, n), M (k, D): dV += P^T dO, dK += scale dS^T Q
template <typename E>
static void mm_xtm(E *Y, int ldy, int64_t sy, const E *X, int ldx, const E *M, int ldm,
                   int64_t sm, int n, int k, int D, const sc_batch *bt, float alpha,
                   float beta) {
    cuda_matmul_strided(Y, M, X, D, n, k, 0, 1, ldm, ldx, ldy, sm, bt->scr, sy, bt->n, alpha,
                        beta, cu_type<E>(), cu_type<E>());
}

// X (T, ld) over the row blocks: X[i0:i0+n, 0:kend] = A[i0:] B[0:kend]^T, kend = i0 + n when
// causal (the block's last row sees most), T otherwise
template <typename E>
static void sc_scores(const sc_plan *p, float *X, const E *A, int lda, int64_t sa, const E *Bm,
                      int ldb, int64_t sb, const sc_batch *bt) {
    for (int i0 = 0; i0 < p->T; i0 += p->R) {
        int n = p->T - i0 < p->R ? p->T - i0 : p->R, kend = p->R == p->T ? p->T : i0 + n;
        mm_abt<E>(X + (size_t)i0 * p->ld, p->ld, A + (size_t)i0 * lda, lda, sa, Bm, ldb, sb, n,
                  kend, p->D, bt);
    }
}

// Y (T, D) rows by block: Y[i0:i0+n] = alpha X[i0:i0+n, 0:kend] M[0:kend] + beta Y[i0:]
template <typename E>
static void sc_rows(const sc_plan *p, E *Y, int ldy, int64_t sy, const E *X, const E *M,
                    int ldm, int64_t sm, const sc_batch *bt, float alpha, float beta) {
    for (int i0 = 0; i0 < p->T; i0 += p->R) {
        int n = p->T - i0 < p->R ? p->T - i0 : p->R, kend = p->R == p->T ? p->T : i0 + n;
        mm_xm<E>(Y + (size_t)i0 * ldy, ldy, sy, X + (size_t)i0 * p->ld, p->ld, M, ldm, sm, n,
                 kend, p->D, bt, alpha, beta);
    }
}

// Y (T, D) rows by key block: Y[j0:j0+n] += alpha X[q0:T, j0:j0+n]^T M[q0:T], q0 = j0 when
// causal (queries before j0 do not see these keys), 0 otherwise
template <typename E>
static void sc_cols(const sc_plan *p, E *Y, int ldy, int64_t sy, const E *X, const E *M,
                    int ldm, int64_t sm, const sc_batch *bt, float alpha) {
    for (int j0 = 0; j0 < p->T; j0 += p->R) {
        int n = p->T - j0 < p->R ? p->T - j0 : p->R, q0 = p->R == p->T ? 0 : j0;
        mm_xtm<E>(Y + (size_t)j0 * ldy, ldy, sy, X + (size_t)q0 * p->ld + j0, p->ld,
                  M + (size_t)q0 * ldm, ldm, sm, n, p->T - q0, p->D, bt, alpha, 1.0f);
    }
}

// The chunk's pairs [p0, p0 + np) as few batches as the layout allows: the rest of a batch
// row the chunk starts inside (a batch over its heads), then its whole batch rows, then the
// head of the row it ends inside. Whole rows nb x NH go as NH batches over the nb rows or nb
// batches over the NH heads, whichever is fewer calls: at T 1024, D 512 (B 32, NH 4) four
// calls per product and row block where one per batch row made 32. f(b, h, batch): pair
// (b, h) is the batch's first, its scores at scratch index b NH + h - p0.
template <typename F> static void sc_segments(const sc_plan *p, int p0, int np, F f) {
    int pair = p0, end = p0 + np, NH = p->NH;
    int64_t scr = (int64_t)p->head, c3 = (int64_t)p->T * p->C3, c1 = (int64_t)p->T * p->C;
    if (pair % NH != 0) {
        int b = pair / NH, h = pair % NH, nh = NH - h < end - pair ? NH - h : end - pair;
        sc_batch bt = {nh, scr, p->D, p->D};
        f(b, h, &bt);
        pair += nh;
    }
    int nb = (end - pair) / NH, b0 = pair / NH;
    if (nb > 0 && nb <= NH) {
        sc_batch bt = {NH, scr, p->D, p->D};
        for (int b = b0; b < b0 + nb; b++) f(b, 0, &bt);
    } else if (nb > NH) {
        sc_batch bt = {nb, NH * scr, c3, c1};
        for (int h = 0; h < NH; h++) f(b0, h, &bt);
    }
    pair += nb * NH;
    if (pair < end) {
        sc_batch bt = {end - pair, scr, p->D, p->D};
        f(pair / NH, 0, &bt);
    }
}

// ----------------------------------------------------------------------------
// row kernels: grid (T, pairs of the chunk), one block per score row i of pair p0 + q,
// float4 loads and 4-element stores (rows are ld = 64k elements apart, so aligned).
// Row i sees keys [0, n): n = min(i + 1, kv_len) causal, kv_len otherwise; the products
// read its columns [0, wend): its row block's end when causal, T otherwise. The kernels
// write [0, wend rounded up to 4), within ld (the extra entries are 0, as the masked ones).

__device__ __forceinline__ void sc_row_extent(int i, int T, int R, int causal, int kvl, int *n,
                                              int *wend) {
    int v = causal && i + 1 < kvl ? i + 1 : kvl;
    int e = (i / R + 1) * R;
    *n = v;
    *wend = causal ? (e < T ? e : T) : T;
}

// block-wide max and sum in a fixed order (deterministic); every thread gets the result
__device__ float sc_block_max(float x) {
    __shared__ float sh[32];
    int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = blockDim.x / 32;
    x = warp_max(x);
    __syncthreads();  // sh may still be read by a previous reduction
    if (lane == 0) sh[w] = x;
    __syncthreads();
    x = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(x);
}
__device__ float sc_block_sum(float x) {
    __shared__ float sh[32];
    int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = blockDim.x / 32;
    x = warp_sum(x);
    __syncthreads();
    if (lane == 0) sh[w] = x;
    __syncthreads();
    x = lane < nw ? sh[lane] : 0.0f;
    return warp_sum(x);
}

__device__ __forceinline__ void sc_store4(float *p, float a, float b, float c, float d) {
    *(float4 *)p = make_float4(a, b, c, d);
}
__device__ __forceinline__ void sc_store4(bf16 *p, float a, float b, float c, float d) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(a, b), hi = __floats2bfloat162_rn(c, d);
    uint2 u;
    u.x = *(uint32_t *)&lo, u.y = *(uint32_t *)&hi;
    *(uint2 *)p = u;
}
__device__ __forceinline__ float4 sc_load4(const float *p) { return *(const float4 *)p; }
__device__ __forceinline__ float4 sc_load4(const bf16 *p) {
    uint2 u = *(const uint2 *)p;
    __nv_bfloat162 lo = *(__nv_bfloat162 *)&u.x, hi = *(__nv_bfloat162 *)&u.y;
    float2 a = __bfloat1622float2(lo), b = __bfloat1622float2(hi);
    return make_float4(a.x, a.y, b.x, b.y);
}

// The forward's row kernel: the visible part of S's row read once into registers (NV
// float4 per thread, blockDim x NV x 4 >= ld), lse = max + log(sum exp) from them, then
// P = exp(scale S - lse) (0 over the rest of [0, wend)).
template <typename E, int NV>
__global__ void __launch_bounds__(SC_THREADS)
    sc_softmax_fwd_kernel(E *P, float *lse_out, const float *S, const int32_t *kv_len, int T,
                          int NH, int ld, size_t head, int R, int causal, float scale, int p0) {
    int i = blockIdx.x, q = blockIdx.y, pair = p0 + q;
    const float *s = S + (size_t)q * head + (size_t)i * ld;
    E *pr = P + (size_t)q * head + (size_t)i * ld;
    int n, wend;
    sc_row_extent(i, T, R, causal, kv_len ? kv_len[pair / NH] : T, &n, &wend);
    float x[NV][4];
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int j = 4 * (threadIdx.x + k * blockDim.x);
        float4 v = j < n ? sc_load4(s + j) : make_float4(0.f, 0.f, 0.f, 0.f);
        x[k][0] = j < n ? scale * v.x : -INFINITY;
        x[k][1] = j + 1 < n ? scale * v.y : -INFINITY;
        x[k][2] = j + 2 < n ? scale * v.z : -INFINITY;
        x[k][3] = j + 3 < n ? scale * v.w : -INFINITY;
        m = fmaxf(m, fmaxf(fmaxf(x[k][0], x[k][1]), fmaxf(x[k][2], x[k][3])));
    }
    m = sc_block_max(m);
    float l = 0.0f;
    if (m != -INFINITY) {
#pragma unroll
        for (int k = 0; k < NV; k++)
#pragma unroll
            for (int c = 0; c < 4; c++) l += __expf(x[k][c] - m);  // -inf: 0
    }
    l = sc_block_sum(l);
    float lse = m + logf(l);  // no visible key: -inf
    if (threadIdx.x == 0) lse_out[(size_t)pair * T + i] = lse;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int j = 4 * (threadIdx.x + k * blockDim.x);
        if (j < wend) {
            float e[4];
#pragma unroll
            for (int c = 0; c < 4; c++) e[c] = j + c < n ? __expf(x[k][c] - lse) : 0.0f;
            sc_store4(pr + j, e[0], e[1], e[2], e[3]);
        }
    }
}

// The backward's: P = exp(scale S - lse) from the forward's lse, one pass.
template <typename E>
__global__ void __launch_bounds__(SC_THREADS)
    sc_softmax_bwd_kernel(E *P, const float *lse_in, const float *S, const int32_t *kv_len,
                          int T, int NH, int ld, size_t head, int R, int causal, float scale,
                          int p0) {
    int i = blockIdx.x, q = blockIdx.y, pair = p0 + q;
    const float *s = S + (size_t)q * head + (size_t)i * ld;
    E *pr = P + (size_t)q * head + (size_t)i * ld;
    int n, wend;
    sc_row_extent(i, T, R, causal, kv_len ? kv_len[pair / NH] : T, &n, &wend);
    float lse = lse_in[(size_t)pair * T + i];
    for (int j = 4 * threadIdx.x; j < wend; j += 4 * blockDim.x) {
        float4 v = j < n ? sc_load4(s + j) : make_float4(0.f, 0.f, 0.f, 0.f);
        sc_store4(pr + j, j < n ? __expf(scale * v.x - lse) : 0.0f,
                  j + 1 < n ? __expf(scale * v.y - lse) : 0.0f,
                  j + 2 < n ? __expf(scale * v.z - lse) : 0.0f,
                  j + 3 < n ? __expf(scale * v.w - lse) : 0.0f);
    }
}

// dS = P (dP - Di) over the visible keys, 0 over the rest of [0, wend), in place of P.
template <typename E>
__global__ void __launch_bounds__(SC_THREADS)
    sc_ds_kernel(E *P, const float *dP, const float *Di, const int32_t *kv_len, int T, int NH,
                 int ld, size_t head, int R, int causal, int p0) {
    int i = blockIdx.x, q = blockIdx.y, pair = p0 + q;
    const float *dp = dP + (size_t)q * head + (size_t)i * ld;
    E *pr = P + (size_t)q * head + (size_t)i * ld;
    int n, wend;
    sc_row_extent(i, T, R, causal, kv_len ? kv_len[pair / NH] : T, &n, &wend);
    float di = Di[(size_t)pair * T + i];
    for (int j = 4 * threadIdx.x; j < wend; j += 4 * blockDim.x) {
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f), g = a;
        if (j < n) a = sc_load4(pr + j), g = sc_load4(dp + j);
        sc_store4(pr + j, j < n ? a.x * (g.x - di) : 0.0f, j + 1 < n ? a.y * (g.y - di) : 0.0f,
                  j + 2 < n ? a.z * (g.z - di) : 0.0f, j + 3 < n ? a.w * (g.w - di) : 0.0f);
    }
}

// threads for a row of ld entries in float4s: ld / 4 of them up to SC_THREADS (ld is a
// multiple of 64, so a multiple of 16; rounded up to a warp)
static int sc_row_threads(int ld) {
    int t = (ld / 4 + 31) / 32 * 32;
    return t < SC_THREADS ? t : SC_THREADS;
}

template <typename E>
static void sc_softmax_fwd(const sc_plan *p, E *P, float *lse, const float *S,
                           const pb_attn_desc *d, int p0, int np) {
    int n4 = p->ld / 4, t = sc_row_threads(p->ld), nv = (n4 + t - 1) / t;
    dim3 g(p->T, np);
#define SC_FWD(NV)                                                                            \
    sc_softmax_fwd_kernel<E, NV><<<g, t>>>(P, lse, S, d->kv_len, p->T, p->NH, p->ld, p->head, \
                                           p->R, d->causal, d->scale, p0)
    if (nv <= 1) SC_FWD(1);
    else if (nv <= 2) SC_FWD(2);
    else if (nv <= 4) SC_FWD(4);
    else if (nv <= 8) SC_FWD(8);
    else if (nv <= 16) SC_FWD(16);
    else pb_die(PB_EXIT_RUNTIME, "smallcache: T %d beyond the row kernel's registers", p->T);
#undef SC_FWD
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// forward and backward

// out (B,T,C), lse (B,NH,T); qkv (B,T,3C)
template <typename E>
static void sc_forward(E *out, float *lse, const E *qkv, const pb_attn_desc *d) {
    sc_plan p = sc_make_plan(d, sizeof(E));
    size_t chunk = (size_t)p.per_chunk * p.head;
    float *S = (float *)cuda_scratch(CUDA_SCRATCH_SCORES, chunk * (4 + sizeof(E)));
    E *P = (E *)(S + chunk);
    int pairs = p.B * p.NH;
    for (int p0 = 0; p0 < pairs; p0 += p.per_chunk) {
        int np = pairs - p0 < p.per_chunk ? pairs - p0 : p.per_chunk;
        sc_segments(&p, p0, np, [&](int b, int h, const sc_batch *bt) {
            const E *Q = qkv + (size_t)b * p.T * p.C3 + (size_t)h * p.D;
            sc_scores<E>(&p, S + (size_t)(b * p.NH + h - p0) * p.head, Q, p.C3, bt->c3,
                         Q + p.C, p.C3, bt->c3, bt);
        });
        sc_softmax_fwd<E>(&p, P, lse, S, d, p0, np);
        sc_segments(&p, p0, np, [&](int b, int h, const sc_batch *bt) {
            const E *V = qkv + (size_t)b * p.T * p.C3 + 2 * p.C + (size_t)h * p.D;
            E *O = out + (size_t)b * p.T * p.C + (size_t)h * p.D;
            sc_rows<E>(&p, O, p.C, bt->c1, P + (size_t)(b * p.NH + h - p0) * p.head, V, p.C3,
                       bt->c3, bt, 1.0f, 0.0f);
        });
    }
}

// dqkv (B,T,3C) += the gradient; dout, out (B,T,C); lse (B,NH,T); qkv (B,T,3C)
template <typename E>
static void sc_backward(E *dqkv, const E *dout, const E *out, const float *lse, const E *qkv,
                        const pb_attn_desc *d) {
    sc_plan p = sc_make_plan(d, sizeof(E));
    const float *Di = attn_cuda_di((const float *)dout, (const float *)out, d,
                                   sizeof(E) == 2 ? PB_DTYPE_BF16 : PB_DTYPE_FP32);
    size_t chunk = (size_t)p.per_chunk * p.head;
    float *S = (float *)cuda_scratch(CUDA_SCRATCH_SCORES, chunk * (4 + sizeof(E)));
    E *P = (E *)(S + chunk);
    int pairs = p.B * p.NH, t = sc_row_threads(p.ld);
    for (int p0 = 0; p0 < pairs; p0 += p.per_chunk) {
        int np = pairs - p0 < p.per_chunk ? pairs - p0 : p.per_chunk;
        sc_segments(&p, p0, np, [&](int b, int h, const sc_batch *bt) {
            const E *Q = qkv + (size_t)b * p.T * p.C3 + (size_t)h * p.D;
            sc_scores<E>(&p, S + (size_t)(b * p.NH + h - p0) * p.head, Q, p.C3, bt->c3,
                         Q + p.C, p.C3, bt->c3, bt);
        });
        sc_softmax_bwd_kernel<E><<<dim3(p.T, np), t>>>(P, lse, S, d->kv_len, p.T, p.NH, p.ld,
                                                       p.head, p.R, d->causal, d->scale, p0);
        cudaCheckLaunch();
        // dV += P^T dO, then dP = dO V^T over S
        sc_segments(&p, p0, np, [&](int b, int h, const sc_batch *bt) {
            size_t row = (size_t)b * p.T * p.C3 + (size_t)h * p.D;
            size_t q = (size_t)(b * p.NH + h - p0) * p.head;
            const E *V = qkv + row + 2 * p.C;
            const E *dO = dout + (size_t)b * p.T * p.C + (size_t)h * p.D;
            sc_cols<E>(&p, dqkv + row + 2 * p.C, p.C3, bt->c3, P + q, dO, p.C, bt->c1, bt,
                       1.0f);
            sc_scores<E>(&p, S + q, dO, p.C, bt->c1, V, p.C3, bt->c3, bt);
        });
        sc_ds_kernel<E><<<dim3(p.T, np), t>>>(P, S, Di, d->kv_len, p.T, p.NH, p.ld, p.head, p.R,
                                              d->causal, p0);
        cudaCheckLaunch();
        // dQ += scale dS K; dK += scale dS^T Q
        sc_segments(&p, p0, np, [&](int b, int h, const sc_batch *bt) {
            size_t row = (size_t)b * p.T * p.C3 + (size_t)h * p.D;
            size_t q = (size_t)(b * p.NH + h - p0) * p.head;
            const E *Q = qkv + row, *K = qkv + row + p.C;
            sc_rows<E>(&p, dqkv + row, p.C3, bt->c3, P + q, K, p.C3, bt->c3, bt, d->scale,
                       1.0f);
            sc_cols<E>(&p, dqkv + row + p.C, p.C3, bt->c3, P + q, Q, p.C3, bt->c3, bt,
                       d->scale);
        });
    }
}

// The op table's entry points (kernels/ops.h types: the pointers hold E).
extern "C" void attn_smallcache_cuda_forward(float *out, float *lse, const float *qkv,
                                             const pb_attn_desc *d) {
    PB_ASSERT(!attn_smallcache_cuda_supports(d));
    sc_forward<float>(out, lse, qkv, d);
}
extern "C" void attn_smallcache_cuda_backward(float *dqkv, const float *dout, const float *out,
                                              const float *lse, const float *qkv,
                                              const pb_attn_desc *d) {
    PB_ASSERT(!attn_smallcache_cuda_supports(d));
    sc_backward<float>(dqkv, dout, out, lse, qkv, d);
}
extern "C" void attn_smallcache_cuda_forward_bf16(float *out, float *lse, const float *qkv,
                                                  const pb_attn_desc *d) {
    PB_ASSERT(!attn_smallcache_cuda_supports(d));
    sc_forward<bf16>((bf16 *)out, lse, (const bf16 *)qkv, d);
}
extern "C" void attn_smallcache_cuda_backward_bf16(float *dqkv, const float *dout,
                                                   const float *out, const float *lse,
                                                   const float *qkv, const pb_attn_desc *d) {
    PB_ASSERT(!attn_smallcache_cuda_supports(d));
    sc_backward<bf16>((bf16 *)dqkv, (const bf16 *)dout, (const bf16 *)out, lse,
                      (const bf16 *)qkv, d);
}
