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
//
// The loops are written once over tile lists (attn_tiles, attention.h): flash visits every
// tile, blocksparse.c only the blocks its layout lists. Within a visited tile the only masks
// left are positional (the causal diagonal, the kv_len cut), so one loop body serves both.
#include "kernels/attention/attention.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/attention/tile.h"
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
// forward

// out (B,T,C), lse (B,NH,T); qkv (B,T,3C)
//
// Per query tile of bq rows, FA-2's outer loop: for each key tile j the list gives (ending
// at the diagonal when causal, at kv_len[b] always), S^T (bk x bq) = K_j Q^T, then an online
// softmax update of the running row max m, row sum l and unnormalised output O += P V_j.
// The tile is kept transposed, keys by queries, so that the per-query running statistics
// are contiguous vectors (the row max and exp loops vectorise over queries) and only Q,
// once per query tile, needs transposing.
//
// A row's first visited tile shows it at least one key (flash: key 0; block-sparse, whose
// tiles are square: the tile's first key, since a tile past the diagonal is never visited),
// so after it the row's m is finite. A query tile whose list is empty (block-sparse only)
// sees no key at all: its rows get out 0 and lse -inf, FlexAttention's convention.
void attn_tiled_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *ad,
                        const attn_tiles *tl) {
    int B = ad->B, T = ad->T, NH = ad->NH, D = ad->D, C = NH * D, C3 = 3 * C, causal = ad->causal;
    float scale = ad->scale;
    const int BR = tl->bq, BC = tl->bk;
    PB_ASSERT(BR >= 1 && BR <= ATTN_TILE_MAX && BC >= 1 && BC <= ATTN_TILE_MAX);
    int nqt = (T + BR - 1) / BR, nkt = (T + BC - 1) / BC;
    uint32_t thr = pb_drop_threshold(ad->drop_p);

#pragma omp parallel
    {
        // this thread's tiles: O((BR + BC) * D + BR * BC), independent of T
        float *qt = pb_aligned_alloc((size_t)D * BR * sizeof(float));   // (D,BR) scale*Q^T
        float *st = pb_aligned_alloc((size_t)BC * BR * sizeof(float));  // (BC,BR) S^T, then P^T
        float *o = pb_aligned_alloc((size_t)BR * D * sizeof(float));    // (BR,D) unnormalised O
        float *vj = pb_aligned_alloc((size_t)BC * D * sizeof(float));   // (BC,D) V_j
        int32_t *kts = pb_malloc((size_t)nkt * sizeof(int32_t));        // this tile's key tiles
        float m[ATTN_TILE_MAX], l[ATTN_TILE_MAX];         // running row max, row sum of exp(s - m)
        float mnew[ATTN_TILE_MAX], alpha[ATTN_TILE_MAX];  // this tile's new max, rescale of the old

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
                    int kvl = attn_key_len(ad, b);
                    if (kend > kvl) kend = kvl;
                    int nk = tl->kv_tiles(tl->ctx, b, h, qt_i, kts);
                    for (int ti = 0; ti < nk; ti++) {
                        int j0 = kts[ti] * BC;
                        if (j0 >= kend) break;  // ascending: the rest are past kend too
                        int bc = kend - j0 < BC ? kend - j0 : BC;
                        // S^T (bc, br) = K_j (bc, D) (scale Q^T) (D, br)
                        memset(st, 0, (size_t)bc * BR * sizeof(float));
                        tile_mm(st, BR, k + (size_t)j0 * C3, C3, 1, qt, BR, bc, br, D);

                        // key j0+c is visible to query i0+r when j0+c <= i0+r; only the
                        // diagonal tile has masked entries.
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
                        // dropout (kernels/ops.h): l keeps the undropped sum, O gets the
                        // dropped and rescaled P
                        if (ad->drop_p > 0)
                            for (int c = 0; c < bc; c++)
                                for (int r = 0; r < br; r++)
                                    st[(size_t)c * BR + r] *=
                                        attn_drop_weight(ad, thr, b, h, i0 + r, j0 + c);
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
                        float *dst = out + ((size_t)b * T + i0 + r) * C + h * D;
                        float *lr = lse + ((size_t)b * NH + h) * T + i0 + r;
                        if (l[r] == 0.0f) {  // no key visible (an empty block row)
                            for (int d = 0; d < D; d++) dst[d] = 0.0f;
                            *lr = -INFINITY;
                            continue;
                        }
                        float inv = 1.0f / l[r];
                        for (int d = 0; d < D; d++) dst[d] = o[(size_t)r * D + d] * inv;
                        *lr = m[r] + logf(l[r]);
                    }
                }
            }
        }
        free(qt);
        free(st);
        free(o);
        free(vj);
        free(kts);
    }
}

// ----------------------------------------------------------------------------
// backward

// dqkv (B,T,3C) += gradient; dout, out (B,T,C); lse (B,NH,T); qkv (B,T,3C).
//
// With dropout (kernels/ops.h) dP and the P of dV are the dropped ones (w_ij dP_ij, w_ij
// P_ij), dS = P (w dP - Di); Di = rowsum(dO * O) still, O being the dropped output.
//
// FA-2 loop order: key tiles outer, so a tile's dK and dV accumulate in cache and are
// added to dqkv once; query tiles inner (the ones the key tile's list gives), each adding
// its part of dQ to a per-thread (T,D) buffer. For query tile i and key tile j, with
// Qs = Q/sqrt(D), Di = rowsum(dO * O):
//   S = Qs_i K_j^T,  P = exp(S - lse_i),  dV_j += P^T dO_i,  dP = dO_i V_j^T,
//   dS = P (dP - Di),  dK_j += dS^T Qs_i,  dQ_i += dS K_j  (times 1/sqrt(D) at the end).
// K_j (as is and transposed) and V_j^T are copied once per key tile, outside the query
// loop; Qs_i and dO_i once per query tile. Copies, not reads in place, because rows of
// qkv are 3C floats apart, a stride that maps a tile onto a few L1 sets.
//
// The pairs (i, j) visited are those of the forward, so a row with lse = -inf (it saw no
// key) is never visited and its gradient is 0.
//
// Work is split by (b, h): each head's dQ rows collect contributions from every key tile,
// and giving the whole head to one thread keeps that sum in one fixed order without
// atomics or per-tile partial buffers. B*NH is >= the thread count in every recipe; below
// that, threads sit idle.
void attn_tiled_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, const pb_attn_desc *ad, const attn_tiles *tl) {
    int B = ad->B, T = ad->T, NH = ad->NH, C = NH * ad->D, causal = ad->causal;
    int D = ad->D, C3 = 3 * C;
    float scale = ad->scale;
    const int BR = tl->bq, BC = tl->bk;
    PB_ASSERT(BR >= 1 && BR <= ATTN_TILE_MAX && BC >= 1 && BC <= ATTN_TILE_MAX);
    int nqt = (T + BR - 1) / BR, nkt = (T + BC - 1) / BC;
    uint32_t thr = pb_drop_threshold(ad->drop_p);

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
        int32_t *qts = pb_malloc((size_t)nqt * sizeof(int32_t));        // this tile's query tiles

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
                int kvl = attn_key_len(ad, b);
                for (int kt_i = 0; kt_i < nkt; kt_i++) {
                    int j0 = kt_i * BC;
                    if (j0 >= kvl) break;
                    int nq = tl->q_tiles(tl->ctx, b, h, kt_i, qts);
                    if (nq == 0) continue;  // a key block no query visits: dK, dV += 0
                    int bc = kvl - j0 < BC ? kvl - j0 : BC;
                    copy_rows(kj, k + (size_t)j0 * C3, C3, bc, D);
                    transpose_rows(kt, BC, k + (size_t)j0 * C3, C3, bc, D, 1.0f);
                    transpose_rows(vt, BC, v + (size_t)j0 * C3, C3, bc, D, 1.0f);
                    memset(dk, 0, (size_t)bc * D * sizeof(float));
                    memset(dv, 0, (size_t)bc * D * sizeof(float));

                    for (int qi = 0; qi < nq; qi++) {
                        int i0 = qts[qi] * BR;
                        int br = T - i0 < BR ? T - i0 : BR;
                        if (causal && i0 + br <= j0) continue;  // sees none of these keys
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
                            if (ad->drop_p <= 0) {
                                for (int c = 0; c < bc; c++) dsr[c] = pr[c] * (dsr[c] - Dr);
                                continue;
                            }
                            // dropout: dP and the P that dV reads are the dropped ones
                            for (int c = 0; c < bc; c++) {
                                float w = attn_drop_weight(ad, thr, b, h, i0 + r, j0 + c);
                                dsr[c] = pr[c] * (w * dsr[c] - Dr);
                                pr[c] *= w;
                            }
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
        free(qts);
    }
}

// ----------------------------------------------------------------------------
// flash: every tile (the tiled loops above cut them at the diagonal and at kv_len)

static int all_tiles(const void *ctx, int b, int h, int t, int32_t *list) {
    int n = *(const int *)ctx;
    for (int i = 0; i < n; i++) list[i] = i;
    return n;
}

// out (B,T,C), lse (B,NH,T); qkv (B,T,3C)
void attn_flash_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *ad) {
    PB_ASSERT(!attn_flash_supports(ad));
    int nkt = (ad->T + FLASH_BC - 1) / FLASH_BC;
    attn_tiles tl = {FLASH_BR, FLASH_BC, all_tiles, NULL, &nkt};
    attn_tiled_forward(out, lse, qkv, ad, &tl);
}

// dqkv (B,T,3C) += gradient; dout, out (B,T,C); lse (B,NH,T); qkv (B,T,3C)
void attn_flash_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, const pb_attn_desc *ad) {
    PB_ASSERT(!attn_flash_supports(ad));
    int nqt = (ad->T + FLASH_BR - 1) / FLASH_BR;
    attn_tiles tl = {FLASH_BR, FLASH_BC, NULL, all_tiles, &nqt};
    attn_tiled_backward(dqkv, dout, out, lse, qkv, ad, &tl);
}

// causal and key-padding masks, alone or together
const char *attn_flash_supports(const pb_attn_desc *d) { return attn_cpu_dense_supports(d); }
