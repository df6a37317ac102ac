// naive.c: reference attention for the CPU: materialises each head's T x T score matrix.
//
// Written to be read and trusted, not to be fast: the formulas appear as plainly as
// possible, and flash.c is tested against this file. One (b, h) pair is one unit of work;
// each OpenMP thread owns a T x T scratch matrix, so memory is O(threads * T^2).
//
// Masks only shorten each score row: query i sees keys 0..jn-1 with jn = min(causal ? i+1 :
// T, kv_len[b]). Every sum below still runs over all T keys, the masked ones with P = 0, so
// that the formulas read as written (and with kv_len == NULL nothing changed from before).
#include "kernels/attention/attention.h"

#include <math.h>

#include "kernels/common.h"

// ----------------------------------------------------------------------------
// helpers

static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// P (T,T) = softmax of the scaled and masked scores of one head; row i of the head's
// queries is q + i*3C, its keys k + j*3C; keys kvl..T-1 are padding (kvl = T: none).
// vis (T,T), when not NULL, is an element mask on top (1: visible), which may leave a row
// no key: that row of P is 0 and its lse -inf (FlexAttention's convention). Masked entries
// of P are 0. lse (T), when not NULL, gets the log-sum-exp of each row.
static void softmax_rows(float *P, float *lse, const float *q, const float *k, int T, int C3,
                         int D, float scale, int causal, int kvl, const uint8_t *vis) {
    for (int i = 0; i < T; i++) {
        float *Pi = P + (size_t)i * T;
        const uint8_t *vi = vis ? vis + (size_t)i * T : NULL;
        int jn = causal ? i + 1 : T;  // keys 0..jn-1 are visible to query i
        if (jn > kvl) jn = kvl;       // kvl >= 1: key 0 always is, so sum > 0 below
        float mx = -INFINITY;
        for (int j = 0; j < jn; j++) {
            if (vi && !vi[j]) continue;
            Pi[j] = scale * dot(q + (size_t)i * C3, k + (size_t)j * C3, D);
            if (Pi[j] > mx) mx = Pi[j];
        }
        if (mx == -INFINITY) {  // the element mask left no key (scores are finite)
            for (int j = 0; j < T; j++) Pi[j] = 0.0f;
            if (lse) lse[i] = -INFINITY;
            continue;
        }
        // subtract the row max before exp so nothing overflows
        float sum = 0.0f;
        for (int j = 0; j < jn; j++) {
            if (vi && !vi[j]) {
                Pi[j] = 0.0f;
                continue;
            }
            Pi[j] = expf(Pi[j] - mx);
            sum += Pi[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < jn; j++) Pi[j] *= inv;
        for (int j = jn; j < T; j++) Pi[j] = 0.0f;
        if (lse) lse[i] = mx + logf(sum);
    }
}

// The (T,T) element mask of head (b, h) in mask (B,NH,T,T), or NULL without one.
static const uint8_t *head_mask(const uint8_t *mask, int b, int h, int NH, int T) {
    return mask ? mask + ((size_t)b * NH + h) * T * T : NULL;
}

// ----------------------------------------------------------------------------
// forward

// out (B,T,C), lse (B,NH,T); qkv (B,T,3C); mask (B,NH,T,T) or NULL
static void naive_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *ad,
                          const uint8_t *mask) {
    int B = ad->B, T = ad->T, NH = ad->NH, D = ad->D, C = NH * D, C3 = 3 * C, causal = ad->causal;
    float scale = ad->scale;
    uint32_t thr = pb_drop_threshold(ad->drop_p);

#pragma omp parallel
    {
        float *P = pb_malloc((size_t)T * T * sizeof(float));  // (T,T), this thread's
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                const float *q = qkv + (size_t)b * T * C3 + h * D;
                const float *k = q + C;
                const float *v = q + 2 * C;
                softmax_rows(P, lse + ((size_t)b * NH + h) * T, q, k, T, C3, D, scale, causal,
                             attn_key_len(ad, b), head_mask(mask, b, h, NH, T));
                // out_i = sum_j w_ij P_ij v_j (w the dropout's weight, 1 without it)
                for (int i = 0; i < T; i++) {
                    float *o = out + ((size_t)b * T + i) * C + h * D;
                    for (int d = 0; d < D; d++) o[d] = 0.0f;
                    for (int j = 0; j < T; j++) {
                        float p = P[(size_t)i * T + j] * attn_drop_weight(ad, thr, b, h, i, j);
                        const float *vj = v + (size_t)j * C3;
                        for (int d = 0; d < D; d++) o[d] += p * vj[d];
                    }
                }
            }
        }
        free(P);
    }
}

// ----------------------------------------------------------------------------
// backward

// dqkv (B,T,3C) += gradient; dout, out (B,T,C); qkv (B,T,3C); mask (B,NH,T,T) or NULL.
// lse is not used: the reference recomputes P from scratch, so that it checks the saved
// lse of flash rather than trusting it.
static void naive_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                           const float *qkv, const pb_attn_desc *ad, const uint8_t *mask) {
    int B = ad->B, T = ad->T, NH = ad->NH, C = NH * ad->D, causal = ad->causal;
    (void)lse;
    int D = ad->D, C3 = 3 * C;
    float scale = ad->scale;
    uint32_t thr = pb_drop_threshold(ad->drop_p);

#pragma omp parallel
    {
        float *P = pb_malloc((size_t)T * T * sizeof(float));  // (T,T): P, then dS in place
        float *acc = pb_malloc((size_t)D * sizeof(float));     // (D) one gradient row
        float *Di = pb_malloc((size_t)T * sizeof(float));      // (T) rowsum(dO * O)
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                size_t base = (size_t)b * T * C3 + h * D;  // q of row 0 of this head
                const float *q = qkv + base, *k = q + C, *v = q + 2 * C;
                float *dq = dqkv + base, *dk = dq + C, *dv = dq + 2 * C;
                const float *dO = dout + (size_t)b * T * C + h * D;  // rows of stride C
                const float *O = out + (size_t)b * T * C + h * D;
                softmax_rows(P, NULL, q, k, T, C3, D, scale, causal, attn_key_len(ad, b),
                             head_mask(mask, b, h, NH, T));

                // dV_j = sum_i w_ij P_ij dO_i
                for (int j = 0; j < T; j++) {
                    for (int d = 0; d < D; d++) acc[d] = 0.0f;
                    for (int i = 0; i < T; i++) {
                        float p = P[(size_t)i * T + j] * attn_drop_weight(ad, thr, b, h, i, j);
                        for (int d = 0; d < D; d++) acc[d] += p * dO[(size_t)i * C + d];
                    }
                    for (int d = 0; d < D; d++) dv[(size_t)j * C3 + d] += acc[d];
                }

                // dS_ij = P_ij (dP_ij - Di), dP_ij = w_ij dO_i . v_j, Di = dO_i . O_i
                // (Di equals sum_j P_ij dP_ij, the softmax Jacobian's correction term)
                for (int i = 0; i < T; i++) {
                    Di[i] = dot(dO + (size_t)i * C, O + (size_t)i * C, D);
                    for (int j = 0; j < T; j++) {
                        float dp = dot(dO + (size_t)i * C, v + (size_t)j * C3, D) *
                                   attn_drop_weight(ad, thr, b, h, i, j);
                        P[(size_t)i * T + j] *= dp - Di[i];
                    }
                }

                // dQ_i = scale * sum_j dS_ij k_j
                for (int i = 0; i < T; i++) {
                    for (int d = 0; d < D; d++) acc[d] = 0.0f;
                    for (int j = 0; j < T; j++) {
                        float ds = P[(size_t)i * T + j];
                        for (int d = 0; d < D; d++) acc[d] += ds * k[(size_t)j * C3 + d];
                    }
                    for (int d = 0; d < D; d++) dq[(size_t)i * C3 + d] += scale * acc[d];
                }

                // dK_j = scale * sum_i dS_ij q_i
                for (int j = 0; j < T; j++) {
                    for (int d = 0; d < D; d++) acc[d] = 0.0f;
                    for (int i = 0; i < T; i++) {
                        float ds = P[(size_t)i * T + j];
                        for (int d = 0; d < D; d++) acc[d] += ds * q[(size_t)i * C3 + d];
                    }
                    for (int d = 0; d < D; d++) dk[(size_t)j * C3 + d] += scale * acc[d];
                }
            }
        }
        free(P);
        free(acc);
        free(Di);
    }
}

// ----------------------------------------------------------------------------
// entry points

void attn_naive_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *ad) {
    PB_ASSERT(!attn_naive_supports(ad));
    naive_forward(out, lse, qkv, ad, NULL);
}

void attn_naive_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, const pb_attn_desc *ad) {
    PB_ASSERT(!attn_naive_supports(ad));
    naive_backward(dqkv, dout, out, lse, qkv, ad, NULL);
}

// The block-sparse reference: the layout is ignored (it may be set), mask says it all.
void attn_naive_masked_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *ad,
                               const uint8_t *mask) {
    PB_ASSERT(ad->Tk == ad->T && mask);
    naive_forward(out, lse, qkv, ad, mask);
}

void attn_naive_masked_backward(float *dqkv, const float *dout, const float *out,
                                const float *lse, const float *qkv, const pb_attn_desc *ad,
                                const uint8_t *mask) {
    PB_ASSERT(ad->Tk == ad->T && mask);
    naive_backward(dqkv, dout, out, lse, qkv, ad, mask);
}

// ----------------------------------------------------------------------------
// what the CPU algorithms run

const char *attn_cpu_dense_supports(const pb_attn_desc *d) {
    if (d->Tk != d->T) return "keys and queries of different lengths (it runs self-attention)";
    if (d->layout) return "block-sparse layouts (model.attention = blocksparse runs them)";
    if (d->B < 1 || d->T < 1 || d->NH < 1 || d->D < 1) return "an empty shape";
    return NULL;
}

// causal and key-padding masks, alone or together
const char *attn_naive_supports(const pb_attn_desc *d) { return attn_cpu_dense_supports(d); }
