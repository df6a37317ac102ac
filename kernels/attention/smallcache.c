// smallcache.c: attention for a fast memory smaller than D^2 (the small-cache regime of
// Saha & Ye 2024 and Li et al. 2024; docs/PERF.md "I/O model").
//
// FlashAttention keeps a query tile of Br rows with all D columns in fast memory, so when
// M < D^2 its Br falls below D and it rereads K and V N/Br times: ~N^2 D^2 / M words. This
// algorithm instead materialises the scores, as I/O-optimal matrix multiplication would:
//   forward:  S = scale Q K^T by square b x b tiles, each summed over D in chunks of b;
//             a softmax over each row of S (max, exp, sum: lse saved); O = P V by the same
//             square tiles (output tiles of b rows x b columns of D, summed over keys).
//   backward: S recomputed, P = exp(S - lse); then five tiled products and two elementwise
//             passes: dV = P^T dO; Di = rowsum(dO * O); dP = dO V^T; dS = P (dP - Di) (in
//             place of P); dQ = scale dS K; dK = dS^T (scale Q).
// Every product is a sequence of b x b tile products, so with b ~ sqrt(M/3) each moves
// O(N^2 D / sqrt(M)) words: the bound's second term. On the CPU b = SC_TILE plays the role
// of sqrt(M/3) for the L1/L2 caches.
//
// Memory: per OpenMP thread one (T,T) fp32 score buffer and a few (T,D) copies of the head's
// rows: 4 (T^2 + 8 T D) bytes (at T = 4096, D = 512: 64 MiB + 64 MiB). supports() refuses
// T > SC_MAX_T. Work is split by (b, h): one head per thread, each output summed in a fixed
// order, bit-identical whatever the thread count.
#include <math.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/attention/tile.h"
#include "kernels/common.h"

#define SC_TILE 64     // b: the square tile of every product
#define SC_MAX_T 16384  // T^2 fp32 scores per thread: 1 GiB at this T

// The rows of one head, copied out of qkv's 3C stride once (they are reread tile by tile)
typedef struct {
    float *S;       // (T,T) scores, then P, then dS
    float *qs;      // (T,D) scale * Q
    float *kk;      // (T,D) K
    float *kt, *vt; // (D,T) K^T, V^T
    float *vv;      // (T,D) V
} sc_head;

static void sc_alloc(sc_head *w, int T, int D) {
    w->S = pb_aligned_alloc((size_t)T * T * sizeof(float));
    w->qs = pb_aligned_alloc((size_t)T * D * sizeof(float));
    w->kk = pb_aligned_alloc((size_t)T * D * sizeof(float));
    w->kt = pb_aligned_alloc((size_t)D * T * sizeof(float));
    w->vt = pb_aligned_alloc((size_t)D * T * sizeof(float));
    w->vv = pb_aligned_alloc((size_t)T * D * sizeof(float));
}

static void sc_free(sc_head *w) {
    free(w->S), free(w->qs), free(w->kk), free(w->kt), free(w->vt), free(w->vv);
}

// Keys 0..n-1 are visible to query i: causal and key padding.
static inline int visible_keys(int i, int causal, int kvl) {
    int n = causal ? i + 1 : kvl;
    return n < kvl ? n : kvl;
}

// S (T,T) = scale Q K^T over the visible tiles (those with a visible key), then P: each row
// i gets exp(S - m) / l over its visible keys, 0 elsewhere; lse[i] = m + log l when lse_out,
// else P = exp(S - lse[i]) from the saved lse (the backward, so that P is the forward's).
static void scores_to_p(sc_head *w, const float *q, const float *k, const float *v, int T,
                        int C3, int D, float scale, int causal, int kvl, float *lse,
                        int lse_out) {
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) {
            w->qs[(size_t)t * D + d] = scale * q[(size_t)t * C3 + d];
            w->kk[(size_t)t * D + d] = k[(size_t)t * C3 + d];
            w->vv[(size_t)t * D + d] = v[(size_t)t * C3 + d];
        }
    transpose_rows(w->kt, T, k, C3, T, D, 1.0f);
    transpose_rows(w->vt, T, v, C3, T, D, 1.0f);
    const int b = SC_TILE;
    for (int i0 = 0; i0 < T; i0 += b) {
        int br = T - i0 < b ? T - i0 : b;
        int kend = visible_keys(i0 + br - 1, causal, kvl);  // the tile's last row sees most
        for (int j0 = 0; j0 < kend; j0 += b) {
            int bc = kend - j0 < b ? kend - j0 : b;
            float *St = w->S + (size_t)i0 * T + j0;
            for (int r = 0; r < br; r++) memset(St + (size_t)r * T, 0, bc * sizeof(float));
            // S_tile (br, bc) += Qs (br, dc) K^T (dc, bc), D in chunks of b
            for (int d0 = 0; d0 < D; d0 += b) {
                int dc = D - d0 < b ? D - d0 : b;
                tile_mm(St, T, w->qs + (size_t)i0 * D + d0, D, 1, w->kt + (size_t)d0 * T + j0,
                        T, br, bc, dc);
            }
        }
    }
    // the softmax pass over the rows of S
    for (int i = 0; i < T; i++) {
        float *Si = w->S + (size_t)i * T;
        int n = visible_keys(i, causal, kvl);
        if (lse_out) {
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < n; j++) mx = max_select(mx, Si[j]);
            for (int j = 0; j < n; j++) sum += (Si[j] = flash_exp(Si[j] - mx));
            float inv = 1.0f / sum;
            for (int j = 0; j < n; j++) Si[j] *= inv;
            lse[i] = mx + logf(sum);
        } else {
            for (int j = 0; j < n; j++) Si[j] = flash_exp(Si[j] - lse[i]);
        }
        for (int j = n; j < T; j++) Si[j] = 0.0f;
    }
}

// C (T, D) rows of stride ldc += A B by square tiles: A's (i, j) at A[i*a_rs + j*a_cs] over
// rows [0, M) and inner [0, K), B (K, D) row-major with row stride ldb. The tile loop every
// product of this file shares.
static void tiled_product(float *C, int ldc, const float *A, int a_rs, int a_cs,
                          const float *B, int ldb, int M, int K, int D) {
    const int b = SC_TILE;
    for (int i0 = 0; i0 < M; i0 += b) {
        int br = M - i0 < b ? M - i0 : b;
        for (int d0 = 0; d0 < D; d0 += b) {
            int dc = D - d0 < b ? D - d0 : b;
            for (int j0 = 0; j0 < K; j0 += b) {
                int bc = K - j0 < b ? K - j0 : b;
                tile_mm(C + (size_t)i0 * ldc + d0, ldc, A + (size_t)i0 * a_rs + (size_t)j0 * a_cs,
                        a_rs, a_cs, B + (size_t)j0 * ldb + d0, ldb, br, dc, bc);
            }
        }
    }
}

// out (B,T,C), lse (B,NH,T); qkv (B,T,3C)
void attn_smallcache_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *ad) {
    PB_ASSERT(!attn_smallcache_supports(ad));
    int B = ad->B, T = ad->T, NH = ad->NH, D = ad->D, C = NH * D, C3 = 3 * C;
#pragma omp parallel
    {
        sc_head w;
        sc_alloc(&w, T, D);
        float *o = pb_aligned_alloc((size_t)T * D * sizeof(float));  // (T,D)
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const float *q = qkv + (size_t)b * T * C3 + h * D;
                int kvl = attn_key_len(ad, b);
                scores_to_p(&w, q, q + C, q + 2 * C, T, C3, D, ad->scale, ad->causal, kvl,
                            lse + ((size_t)b * NH + h) * T, 1);
                // O (T, D) = P (T, kvl) V (kvl, D): masked entries of P are 0
                memset(o, 0, (size_t)T * D * sizeof(float));
                tiled_product(o, D, w.S, T, 1, w.vv, D, T, kvl, D);
                for (int t = 0; t < T; t++)
                    memcpy(out + ((size_t)b * T + t) * C + h * D, o + (size_t)t * D,
                           (size_t)D * sizeof(float));
            }
        free(o);
        sc_free(&w);
    }
}

// dqkv (B,T,3C) += gradient; dout, out (B,T,C); lse (B,NH,T); qkv (B,T,3C)
void attn_smallcache_backward(float *dqkv, const float *dout, const float *out,
                              const float *lse, const float *qkv, const pb_attn_desc *ad) {
    PB_ASSERT(!attn_smallcache_supports(ad));
    int B = ad->B, T = ad->T, NH = ad->NH, D = ad->D, C = NH * D, C3 = 3 * C;
    float scale = ad->scale;
#pragma omp parallel
    {
        sc_head w;
        sc_alloc(&w, T, D);
        float *dO = pb_aligned_alloc((size_t)T * D * sizeof(float));  // (T,D)
        float *g = pb_aligned_alloc((size_t)T * D * sizeof(float));   // (T,D) dV, dQ, dK
        float *di = pb_aligned_alloc((size_t)T * sizeof(float));      // (T)
        float *dp = pb_aligned_alloc((size_t)SC_TILE * SC_TILE * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                size_t base = (size_t)b * T * C3 + h * D;
                const float *q = qkv + base;
                float *gq = dqkv + base, *gk = gq + C, *gv = gq + 2 * C;
                const float *O = out + (size_t)b * T * C + h * D;
                int kvl = attn_key_len(ad, b);
                scores_to_p(&w, q, q + C, q + 2 * C, T, C3, D, scale, ad->causal, kvl,
                            (float *)(lse + ((size_t)b * NH + h) * T), 0);
                copy_rows(dO, dout + (size_t)b * T * C + h * D, C, T, D);
                // Di = rowsum(dO * O)
                for (int t = 0; t < T; t++) {
                    float acc = 0.0f;
                    for (int d = 0; d < D; d++) acc += dO[(size_t)t * D + d] * O[(size_t)t * C + d];
                    di[t] = acc;
                }
                // dV (kvl, D) = P^T (kvl, T) dO (T, D)
                memset(g, 0, (size_t)T * D * sizeof(float));
                tiled_product(g, D, w.S, 1, T, dO, D, kvl, T, D);
                for (int t = 0; t < kvl; t++)
                    for (int d = 0; d < D; d++) gv[(size_t)t * C3 + d] += g[(size_t)t * D + d];
                // dP tile = dO_i V_j^T, then dS = P (dP - Di) in place of P, tile by tile
                for (int i0 = 0; i0 < T; i0 += SC_TILE) {
                    int br = T - i0 < SC_TILE ? T - i0 : SC_TILE;
                    int kend = visible_keys(i0 + br - 1, ad->causal, kvl);
                    for (int j0 = 0; j0 < kend; j0 += SC_TILE) {
                        int bc = kend - j0 < SC_TILE ? kend - j0 : SC_TILE;
                        memset(dp, 0, (size_t)br * SC_TILE * sizeof(float));
                        tiled_product(dp, SC_TILE, dO + (size_t)i0 * D, D, 1, w.vt + j0, T, br,
                                      D, bc);
                        for (int r = 0; r < br; r++) {
                            float *Sr = w.S + (size_t)(i0 + r) * T + j0;
                            for (int c = 0; c < bc; c++)
                                Sr[c] *= dp[(size_t)r * SC_TILE + c] - di[i0 + r];
                        }
                    }
                }
                // dQ (T, D) = scale dS (T, kvl) K (kvl, D)
                memset(g, 0, (size_t)T * D * sizeof(float));
                tiled_product(g, D, w.S, T, 1, w.kk, D, T, kvl, D);
                for (int t = 0; t < T; t++)
                    for (int d = 0; d < D; d++) gq[(size_t)t * C3 + d] += scale * g[(size_t)t * D + d];
                // dK (kvl, D) = dS^T (kvl, T) (scale Q) (T, D)
                memset(g, 0, (size_t)T * D * sizeof(float));
                tiled_product(g, D, w.S, 1, T, w.qs, D, kvl, T, D);
                for (int t = 0; t < kvl; t++)
                    for (int d = 0; d < D; d++) gk[(size_t)t * C3 + d] += g[(size_t)t * D + d];
            }
        free(dO), free(g), free(di), free(dp);
        sc_free(&w);
    }
}

// Any head dim, causal and key padding; T bounded by the score buffer.
const char *attn_smallcache_supports(const pb_attn_desc *d) {
    const char *why = attn_cpu_dense_supports(d);
    if (why) return why;
    if (d->drop_p > 0)
        return "dropout on the attention probabilities (naive, flash and blocksparse drop)";
    if (d->T > SC_MAX_T)
        return "T above 16384 (it materialises a T x T fp32 score buffer per thread: 1 GiB "
               "at 16384)";
    return NULL;
}
