// smallcache_cuda.cu: attention for head dims where FlashAttention-style kernels stop being
// good or existing (D > 128 here): the small-cache algorithm of smallcache.c on the GPU.
//
// An H200 SM holds ~116K bf16 words of shared memory, below D^2 from D ~ 340: a FlashAttention
// tile of Br queries with all D columns then has Br < D and rereads K and V T/Br times. Here
// the scores are materialised in HBM instead, one (T,T) matrix per head, and every product
// is a cuBLASLt GEMM (square-tiled by cuBLAS, the sqrt(M) tiling of I/O-optimal matrix
// multiplication), batched over a batch row's heads:
//   forward:  S = Q K^T (fp32 out); a row kernel: P = exp(scale S - lse) masked (E), lse;
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

extern "C" void attn_smallcache_cuda_set_budget(size_t bytes) {
    g_budget = bytes ? bytes : SC_BUDGET_DEFAULT;
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
    // blocks of 256 or 512 queries: causal work 1/2 + R/2T of the full square (53% at
    // T = 16384), while each product stays large enough for the tensor cores
    p.R = !d->causal ? d->T : d->T <= 4096 ? 256 : 512;
    if (p.R > d->T) p.R = d->T;
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
// products of nh heads at once, row-major in pebble's terms (cuBLASLt's column-major view
// is each one transposed: matmul_cuda.cu). Head i's operands are i * D apart in the (B,T,*)
// tensors and i * head apart in the scratch.

// X (n, m) = A (n, D) B (m, D)^T, X fp32 of row stride ldx: S = Q K^T, dP = dO V^T
template <typename E>
static void mm_abt(float *X, int ldx, size_t sx, const E *A, int lda, const E *Bm, int ldb,
                   int n, int m, int D, int nh) {
    cuda_matmul_strided(X, Bm, A, m, n, D, 1, 0, ldb, lda, ldx, D, D, (int64_t)sx, nh, 1.0f,
                        0.0f, cu_type<E>(), CUDA_R_32F);
}

// Y (n, D) = alpha X (n, k) M (k, D) + beta Y: O = P V, dQ += scale dS K
template <typename E>
static void mm_xm(E *Y, int ldy, const E *X, int ldx, size_t sx, const E *M, int ldm, int n,
                  int k, int D, int nh, float alpha, float beta) {
    cuda_matmul_strided(Y, M, X, D, n, k, 0, 0, ldm, ldx, ldy, D, (int64_t)sx, D, nh, alpha,
                        beta, cu_type<E>(), cu_type<E>());
}

// Y (n, D) = alpha X^T M + beta Y with X (k, n), M (k, D): dV += P^T dO, dK += scale dS^T Q
template <typename E>
static void mm_xtm(E *Y, int ldy, const E *X, int ldx, size_t sx, const E *M, int ldm, int n,
                   int k, int D, int nh, float alpha, float beta) {
    cuda_matmul_strided(Y, M, X, D, n, k, 0, 1, ldm, ldx, ldy, D, (int64_t)sx, D, nh, alpha,
                        beta, cu_type<E>(), cu_type<E>());
}

// X (T, ld) over the row blocks: X[i0:i0+n, 0:kend] = A[i0:] B[0:kend]^T, kend = i0 + n when
// causal (the block's last row sees most), T otherwise
template <typename E>
static void sc_scores(const sc_plan *p, float *X, const E *A, int lda, const E *Bm, int ldb,
                      int nh) {
    for (int i0 = 0; i0 < p->T; i0 += p->R) {
        int n = p->T - i0 < p->R ? p->T - i0 : p->R, kend = p->R == p->T ? p->T : i0 + n;
        mm_abt<E>(X + (size_t)i0 * p->ld, p->ld, p->head, A + (size_t)i0 * lda, lda, Bm, ldb,
                  n, kend, p->D, nh);
    }
}

// Y (T, D) rows by block: Y[i0:i0+n] = alpha X[i0:i0+n, 0:kend] M[0:kend] + beta Y[i0:]
template <typename E>
static void sc_rows(const sc_plan *p, E *Y, int ldy, const E *X, const E *M, int ldm, int nh,
                    float alpha, float beta) {
    for (int i0 = 0; i0 < p->T; i0 += p->R) {
        int n = p->T - i0 < p->R ? p->T - i0 : p->R, kend = p->R == p->T ? p->T : i0 + n;
        mm_xm<E>(Y + (size_t)i0 * ldy, ldy, X + (size_t)i0 * p->ld, p->ld, p->head, M, ldm, n,
                 kend, p->D, nh, alpha, beta);
    }
}

// Y (T, D) rows by key block: Y[j0:j0+n] += alpha X[q0:T, j0:j0+n]^T M[q0:T], q0 = j0 when
// causal (queries before j0 do not see these keys), 0 otherwise
template <typename E>
static void sc_cols(const sc_plan *p, E *Y, int ldy, const E *X, const E *M, int ldm, int nh,
                    float alpha) {
    for (int j0 = 0; j0 < p->T; j0 += p->R) {
        int n = p->T - j0 < p->R ? p->T - j0 : p->R, q0 = p->R == p->T ? 0 : j0;
        mm_xtm<E>(Y + (size_t)j0 * ldy, ldy, X + (size_t)q0 * p->ld + j0, p->ld, p->head,
                  M + (size_t)q0 * ldm, ldm, n, p->T - q0, p->D, nh, alpha, 1.0f);
    }
}

// ----------------------------------------------------------------------------
// row kernels: grid (T, pairs of the chunk), one block per score row i of pair p0 + q.
// Row i sees keys [0, n): n = min(i + 1, kv_len) causal, kv_len otherwise; the products
// read its columns [0, wend): its row block's end when causal, T otherwise.

__device__ __forceinline__ void sc_row_extent(int i, int T, int R, int causal, int kvl, int *n,
                                              int *wend) {
    int v = causal && i + 1 < kvl ? i + 1 : kvl;
    int e = (i / R + 1) * R;
    *n = v;
    *wend = causal ? (e < T ? e : T) : T;
}

// The (max, sum) pair of an online softmax merged over the block, in a fixed order.
__device__ void sc_block_merge(float *m, float *l) {
    __shared__ float sm[SC_THREADS / 32], sl[SC_THREADS / 32];
    int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    float M = warp_max(*m);
    float e = *m == -INFINITY ? 0.0f : __expf(*m - M);
    float L = warp_sum(*l * e);
    if (lane == 0) sm[w] = M, sl[w] = L;
    __syncthreads();
    if (w == 0) {
        int nw = blockDim.x / 32;
        float mm = lane < nw ? sm[lane] : -INFINITY, ll = lane < nw ? sl[lane] : 0.0f;
        float MM = warp_max(mm);
        float ee = mm == -INFINITY ? 0.0f : __expf(mm - MM);
        float LL = warp_sum(ll * ee);
        if (lane == 0) sm[0] = MM, sl[0] = LL;
    }
    __syncthreads();
    *m = sm[0], *l = sl[0];
}

// P = exp(scale S - lse) over the visible keys, 0 over the rest of [0, wend). lse_out:
// the forward, which computes lse (B,NH,T) from S first; else lse_in is the forward's.
template <typename E>
__global__ void __launch_bounds__(SC_THREADS)
    sc_softmax_kernel(E *P, float *lse_out, const float *lse_in, const float *S,
                      const int32_t *kv_len, int T, int NH, int ld, size_t head, int R,
                      int causal, float scale, int p0) {
    int i = blockIdx.x, q = blockIdx.y, pair = p0 + q;
    const float *s = S + (size_t)q * head + (size_t)i * ld;
    E *pr = P + (size_t)q * head + (size_t)i * ld;
    int n, wend;
    sc_row_extent(i, T, R, causal, kv_len ? kv_len[pair / NH] : T, &n, &wend);
    float lse;
    if (lse_out) {
        float m = -INFINITY, l = 0.0f;
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
            float x = scale * s[j];
            if (x > m) {
                l = l * __expf(m - x) + 1.0f;  // m = -inf: 0 * 0 + 1
                m = x;
            } else {
                l += __expf(x - m);
            }
        }
        sc_block_merge(&m, &l);
        lse = m + logf(l);
        if (threadIdx.x == 0) lse_out[(size_t)pair * T + i] = lse;
    } else {
        lse = lse_in[(size_t)pair * T + i];
    }
    for (int j = threadIdx.x; j < wend; j += blockDim.x)
        pr[j] = from_f<E>(j < n ? __expf(scale * s[j] - lse) : 0.0f);
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
    for (int j = threadIdx.x; j < wend; j += blockDim.x)
        pr[j] = from_f<E>(j < n ? to_f(pr[j]) * (dp[j] - di) : 0.0f);
}

// ----------------------------------------------------------------------------
// forward and backward

// A chunk's pairs [p0, p0 + np) in runs of one batch row: the run at pair p0 + q is batch
// row *b, heads *h0 .. *h0 + return - 1 (at scratch index q).
static int sc_segment(const sc_plan *p, int pair, int left, int *b, int *h0) {
    *b = pair / p->NH, *h0 = pair % p->NH;
    return p->NH - *h0 < left ? p->NH - *h0 : left;
}

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
        for (int q = 0, b, h0, nh; q < np; q += nh) {
            nh = sc_segment(&p, p0 + q, np - q, &b, &h0);
            const E *Q = qkv + (size_t)b * p.T * p.C3 + (size_t)h0 * p.D;
            sc_scores<E>(&p, S + q * p.head, Q, p.C3, Q + p.C, p.C3, nh);
        }
        sc_softmax_kernel<E><<<dim3(p.T, np), SC_THREADS>>>(P, lse, NULL, S, d->kv_len, p.T,
                                                            p.NH, p.ld, p.head, p.R, d->causal,
                                                            d->scale, p0);
        cudaCheckLaunch();
        for (int q = 0, b, h0, nh; q < np; q += nh) {
            nh = sc_segment(&p, p0 + q, np - q, &b, &h0);
            const E *V = qkv + (size_t)b * p.T * p.C3 + 2 * p.C + (size_t)h0 * p.D;
            E *O = out + (size_t)b * p.T * p.C + (size_t)h0 * p.D;
            sc_rows<E>(&p, O, p.C, P + q * p.head, V, p.C3, nh, 1.0f, 0.0f);
        }
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
    int pairs = p.B * p.NH;
    for (int p0 = 0; p0 < pairs; p0 += p.per_chunk) {
        int np = pairs - p0 < p.per_chunk ? pairs - p0 : p.per_chunk;
        for (int q = 0, b, h0, nh; q < np; q += nh) {
            nh = sc_segment(&p, p0 + q, np - q, &b, &h0);
            const E *Q = qkv + (size_t)b * p.T * p.C3 + (size_t)h0 * p.D;
            sc_scores<E>(&p, S + q * p.head, Q, p.C3, Q + p.C, p.C3, nh);
        }
        sc_softmax_kernel<E><<<dim3(p.T, np), SC_THREADS>>>(P, NULL, lse, S, d->kv_len, p.T,
                                                            p.NH, p.ld, p.head, p.R, d->causal,
                                                            d->scale, p0);
        cudaCheckLaunch();
        // dV += P^T dO, then dP = dO V^T over S
        for (int q = 0, b, h0, nh; q < np; q += nh) {
            nh = sc_segment(&p, p0 + q, np - q, &b, &h0);
            size_t row = (size_t)b * p.T * p.C3 + (size_t)h0 * p.D;
            const E *V = qkv + row + 2 * p.C;
            const E *dO = dout + (size_t)b * p.T * p.C + (size_t)h0 * p.D;
            sc_cols<E>(&p, dqkv + row + 2 * p.C, p.C3, P + q * p.head, dO, p.C, nh, 1.0f);
            sc_scores<E>(&p, S + q * p.head, dO, p.C, V, p.C3, nh);
        }
        sc_ds_kernel<E><<<dim3(p.T, np), SC_THREADS>>>(P, S, Di, d->kv_len, p.T, p.NH, p.ld,
                                                       p.head, p.R, d->causal, p0);
        cudaCheckLaunch();
        // dQ += scale dS K; dK += scale dS^T Q
        for (int q = 0, b, h0, nh; q < np; q += nh) {
            nh = sc_segment(&p, p0 + q, np - q, &b, &h0);
            size_t row = (size_t)b * p.T * p.C3 + (size_t)h0 * p.D;
            const E *Q = qkv + row, *K = qkv + row + p.C;
            sc_rows<E>(&p, dqkv + row, p.C3, P + q * p.head, K, p.C3, nh, d->scale, 1.0f);
            sc_cols<E>(&p, dqkv + row + p.C, p.C3, P + q * p.head, Q, p.C3, nh, d->scale);
        }
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
