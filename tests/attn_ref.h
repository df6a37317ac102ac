// attn_ref.h: what the attention suites share (test_attention.c, test_blocksparse.c,
// test_smallcache.c): a fixed generator, the double references of the forward and the
// backward straight from the definition under an element mask, and the tolerance check.
// Static functions in a header: each suite is one translation unit.
#ifndef PEBBLE_TEST_ATTN_REF_H
#define PEBBLE_TEST_ATTN_REF_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dropout.h"
#include "kernels/ops.h"

// The weight of probability P_ij of head (b, h) after the descriptor's dropout, from its
// definition in kernels/ops.h: 1 without dropout; 1 / (1 - p) where kept, else 0.
static double ref_drop(const pb_attn_desc *d, int b, int h, int i, int j) {
    if (d->drop_p <= 0) return 1.0;
    uint64_t e = (((uint64_t)b * d->NH + h) * d->T + i) * d->Tk + j;
    return pb_drop_keep(d->drop_key, e, pb_drop_threshold(d->drop_p)) ? 1.0 / (1.0 - d->drop_p)
                                                                       : 0.0;
}

// xorshift64*: a fixed generator, so a failing case reproduces exactly
static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }
static double rng_uniform(void) {  // [0, 1)
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}
static void fill(float *x, size_t n, float amp) {  // uniform in [-amp, amp)
    for (size_t i = 0; i < n; i++) x[i] = (float)(amp * (2.0 * rng_uniform() - 1.0));
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    cr_assert(p != NULL, "out of memory");
    return p;
}

// Independent reference in double for batch rows b0..b1-1, under the element mask mask
// (B,mh,T,T) (mh = 1: one mask for every head; else NH); a row with no visible key gets out
// 0 and lse -inf and no gradient (the kernels' convention for empty block-sparse rows).
// out (B,T,C), lse (B,NH,T) from
// qkv (B,T,3C); one score row at a time, straight from the definition
// softmax(scale q k^T, masked) v, masked scores left out of the sum.
static void ref_forward(double *out, double *lse, const double *qkv, const pb_attn_desc *d,
                        const unsigned char *mask, int mh, int b0, int b1) {
    int T = d->T, NH = d->NH, D = d->D, C = NH * D;
    double scale = d->scale;
    double *s = xcalloc((size_t)T, sizeof(double));
    for (int b = b0; b < b1; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const unsigned char *vis = mask + (((size_t)b * mh + h % mh) * T + i) * T;
                const double *qi = qkv + ((size_t)b * T + i) * 3 * C + h * D;
                double mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    if (!vis[j]) continue;
                    const double *kj = qkv + ((size_t)b * T + j) * 3 * C + C + h * D;
                    double dot = 0.0;
                    for (int e = 0; e < D; e++) dot += qi[e] * kj[e];
                    s[j] = scale * dot;
                    mx = fmax(mx, s[j]);
                }
                double sum = 0.0;
                for (int j = 0; j < T; j++)
                    if (vis[j]) sum += exp(s[j] - mx);
                double *o = out + ((size_t)b * T + i) * C + h * D;
                for (int e = 0; e < D; e++) o[e] = 0.0;
                for (int j = 0; j < T; j++) {
                    if (!vis[j]) continue;
                    const double *vj = qkv + ((size_t)b * T + j) * 3 * C + 2 * C + h * D;
                    double p = exp(s[j] - mx) / sum * ref_drop(d, b, h, i, j);
                    for (int e = 0; e < D; e++) o[e] += p * vj[e];
                }
                lse[((size_t)b * NH + h) * T + i] = mx + log(sum);
            }
    free(s);
}

// The gradient in double, dqkv (B,T,3C) = d/dqkv of sum(out * dout), by the chain rule
// through softmax written directly: P_ij, dP_ij = w_ij dO_i . v_j (w_ij the dropout's
// weight, ref_drop), the correction Di = sum_j P_ij dP_ij (from P, not from the forward's
// out), dS_ij = P_ij (dP_ij - Di); dq_i = scale sum_j dS_ij k_j, dk_j = scale sum_i dS_ij q_i,
// dv_j = sum_i w_ij P_ij dO_i.
static void ref_backward(double *dqkv, const double *qkv, const double *dout,
                         const pb_attn_desc *d, const unsigned char *mask, int mh) {
    int B = d->B, T = d->T, NH = d->NH, D = d->D, C = NH * D;
    size_t C3 = 3 * (size_t)C;
    double scale = d->scale;
    double *P = xcalloc((size_t)T, sizeof(double)), *dP = xcalloc((size_t)T, sizeof(double));
    memset(dqkv, 0, (size_t)B * T * C3 * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const unsigned char *vis = mask + (((size_t)b * mh + h % mh) * T + i) * T;
                const double *row = qkv + (size_t)b * T * C3 + h * D;  // row t at + t*C3
                double *grow = dqkv + (size_t)b * T * C3 + h * D;
                const double *qi = row + i * C3;
                const double *dOi = dout + ((size_t)b * T + i) * C + h * D;
                double mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    P[j] = 0.0;
                    if (!vis[j]) continue;
                    double dot = 0.0;
                    for (int e = 0; e < D; e++) dot += qi[e] * row[j * C3 + C + e];
                    P[j] = scale * dot;
                    mx = fmax(mx, P[j]);
                }
                double sum = 0.0;
                for (int j = 0; j < T; j++)
                    if (vis[j]) sum += (P[j] = exp(P[j] - mx));
                double Di = 0.0;
                for (int j = 0; j < T; j++) {
                    dP[j] = 0.0;
                    if (!vis[j]) continue;
                    P[j] /= sum;
                    for (int e = 0; e < D; e++) dP[j] += dOi[e] * row[j * C3 + 2 * C + e];
                    dP[j] *= ref_drop(d, b, h, i, j);
                    Di += P[j] * dP[j];
                }
                for (int j = 0; j < T; j++) {
                    if (!vis[j]) continue;
                    double ds = P[j] * (dP[j] - Di), pw = P[j] * ref_drop(d, b, h, i, j);
                    for (int e = 0; e < D; e++) {
                        grow[i * C3 + e] += scale * ds * row[j * C3 + C + e];  // dq_i
                        grow[j * C3 + C + e] += scale * ds * qi[e];             // dk_j
                        grow[j * C3 + 2 * C + e] += pw * dOi[e];                // dv_j
                    }
                }
            }
    free(P), free(dP);
}

// Counts the elements with |got - want| > atol + rtol * |want| (NaN counts), and
// describes the worst one (largest error / tolerance) in msg.
static size_t count_bad(char *msg, size_t msglen, const float *got, const double *want,
                        size_t n, double atol, double rtol) {
    size_t bad = 0, worst = 0;
    double worst_ratio = -1.0;
    for (size_t i = 0; i < n; i++) {
        // equal counts as exact, so that an lse of -inf (a row that sees no key) matches
        double err = (double)got[i] == want[i] ? 0.0 : fabs((double)got[i] - want[i]);
        double tol = atol + rtol * fabs(want[i]);
        double ratio = isnan(err) ? INFINITY : err / tol;
        if (!(err <= tol)) bad++;
        if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
    }
    snprintf(msg, msglen, "%zu of %zu bad; worst [%zu]: got %.9g want %.9g (err/tol %.3g)", bad,
             n, worst, n ? got[worst] : 0.0, n ? want[worst] : 0.0, worst_ratio);
    return bad;
}

static double *to_double(const float *x, size_t n) {
    double *y = xcalloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

// The absolute tolerance of a case with inputs uniform in [-amp, amp]. At amp 2 it is 1e-5:
// fp32 (unit roundoff 6e-8) summing up to T=1000 terms, the flash online softmax also
// rescaling once per key tile, measured at most 5.4e-7 in out and 1.7e-6 in lse (|lse| up
// to ~8), under 1/20 of the tolerances below. Larger inputs are worse conditioned, not
// less accurate code: a score of size ~amp^2 carries an absolute rounding error ~u amp^2
// into exp, i.e. a relative error into P, which out carries times |v| ~ amp and the
// gradients times more factors of amp; so it grows as (amp/2)^3 (measured at amp 6:
// 1.6e-5 in out, 1.5e-5 in dqkv between flash and naive, against 2.7e-4).
static double atol_for(float amp) {
    double f = amp > 2.0f ? amp / 2.0 : 1.0;
    return 1e-5 * f * f * f;
}

#endif
