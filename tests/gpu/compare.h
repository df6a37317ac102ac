// compare.h: what the GPU suites share: host copies, bf16 on the host and device buffers of
// either element type, the one comparison they all make (the relative L2 error of a GPU
// result against the CPU reference), and the whole-model tests' shape and batch.
// Header-only, static.
#ifndef PEBBLE_TESTS_GPU_COMPARE_H
#define PEBBLE_TESTS_GPU_COMPARE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "model/gpt2.h"

#pragma GCC diagnostic ignored "-Wunused-function"

static float *copy_host(const float *x, size_t n) {
    float *y = pb_malloc(n * sizeof(float) + 16);
    memcpy(y, x, n * sizeof(float));
    return y;
}

// --- bf16 on the host, and device buffers of table G in either element type (bf: bf16,
// else fp32)

// fp32 -> bf16 rounded to nearest even (finite inputs), as the GPU's __float2bfloat16_rn
static uint16_t f2bf(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    b += 0x7FFFu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}
static float bf2f(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float x;
    memcpy(&x, &b, 4);
    return x;
}
static float round_bf(float x) { return bf2f(f2bf(x)); }

// n floats uniform in [-amp, amp) drawn from r; with bf rounded to bf16, so that a bf16
// table and its fp32 reference start from the same numbers
static float *rand_vals(pb_rng *r, size_t n, float amp, int bf) {
    float *x = pb_malloc(n * sizeof(float) + 16);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)(amp * (2.0 * pb_rng_uniform(r) - 1.0));
        if (bf) x[i] = round_bf(x[i]);
    }
    return x;
}

// a new device buffer of G holding the n host floats h (bf: as bf16)
static float *to_dev(const pb_ops *G, const float *h, size_t n, int bf) {
    float *d = G->alloc(n * (bf ? 2 : 4));
    if (!bf) {
        G->upload(d, h, n * 4);
        return d;
    }
    uint16_t *t = pb_malloc(n * 2 + 16);
    for (size_t i = 0; i < n; i++) t[i] = f2bf(h[i]);
    G->upload(d, t, n * 2);
    free(t);
    return d;
}
// the n elements of device buffer d (bf: bf16) as new host floats
static float *to_host(const pb_ops *G, const float *d, size_t n, int bf) {
    float *h = pb_malloc(n * 4 + 16);
    if (!bf) {
        G->download(h, d, n * 4);
        return h;
    }
    uint16_t *t = pb_malloc(n * 2 + 16);
    G->download(t, d, n * 2);
    for (size_t i = 0; i < n; i++) h[i] = bf2f(t[i]);
    free(t);
    return h;
}
// NaN (every bit set) in each of the n elements (bf: bf16), so that an output the kernel
// leaves unwritten fails the comparison
static void poison_dev(const pb_ops *G, float *d, size_t n, int bf) {
    size_t bytes = n * (bf ? 2 : 4);
    unsigned char *t = pb_malloc(bytes + 16);
    memset(t, 0xFF, bytes);
    G->upload(d, t, bytes);
    free(t);
}

// Asserts ||got - ref|| <= tol * ||ref|| (and got == ref where ref is all zero), with every
// element of got finite. Prints the error either way: the numbers go into docs/PERF.md.
static double expect_close(const char *what, const float *got, const float *ref, size_t n,
                           double tol) {
    double num = 0.0, den = 0.0, maxabs = 0.0;
    size_t bad = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            if (bad++ == 0) worst = i;
            continue;
        }
        double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (fabs(d) > maxabs) maxabs = fabs(d), worst = i;
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    printf("  %-44s n=%-9zu rel %.2e  max|d| %.2e  (tol %.0e)\n", what, n, rel, maxabs, tol);
    fflush(stdout);
    cr_expect(bad == 0, "%s: %zu non-finite elements (first at %zu): unwritten or NaN", what,
              bad, worst);
    cr_expect(rel <= tol, "%s: relative error %.3e > %.0e (worst at %zu: %.8g vs %.8g)", what,
              rel, tol, worst, (double)got[worst], (double)ref[worst]);
    return rel;
}

// The whole-model tests' shape and batch: the same init runs on the GPU and the CPU.
static const gpt2_config TINY = {.n_layer = 2, .n_head = 2, .n_embd = 128, .seq_len = 96,
                                 .vocab_size = 1000, .attention = "auto"};  // L, NH, C (D = 64), maxT, V
#define TB 3
#define TT 80  // not a multiple of the 64-row attention tile

// inputs and targets (TB, TT) of vocabulary 1000, every 31st target ignored (-1)
static void tiny_batch(int32_t *inp, int32_t *tgt, uint64_t seed) {
    pb_rng r;
    pb_rng_seed(&r, seed);
    for (int i = 0; i < TB * TT; i++) {
        inp[i] = (int32_t)(pb_rng_u64(&r) % 1000);
        tgt[i] = i % 31 == 7 ? -1 : (int32_t)(pb_rng_u64(&r) % 1000);
    }
}

// --- attention with key-padding masks, in double: the reference of the masked GPU tests
// (independent of every kernel; the CPU backend's naive attention runs no masks yet).
// qkv (B,T,3C), out (B,T,C), lse (B,NH,T); key j visible to query i iff (!causal || j <= i)
// && j < kv_len[b]. With dout != NULL also dqkv (B,T,3C) += the gradient, summed in double
// and added once (a float running sum on top of dqkv's start would round the increments).
static void ref_attention(float *out, float *lse, float *dqkv, const float *dout,
                          const float *qkv, int B, int T, int NH, int D, float scale, int causal,
                          const int32_t *kv_len) {
    int C = NH * D;
    size_t C3 = 3 * (size_t)C;
    double *p = pb_malloc((size_t)T * sizeof(double)), *dp = pb_malloc((size_t)T * sizeof(double));
    size_t n3 = (size_t)B * T * C3;
    double *acc = dout ? calloc(n3, sizeof(double)) : NULL;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * C3 + (size_t)h * D;
                int n = causal ? i + 1 : T;
                if (kv_len[b] < n) n = kv_len[b];
                double m = -INFINITY, l = 0.0;
                for (int j = 0; j < n; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * C3 + C + (size_t)h * D;
                    double s = 0.0;
                    for (int d = 0; d < D; d++) s += (double)q[d] * k[d];
                    p[j] = s * scale;
                    if (p[j] > m) m = p[j];
                }
                for (int j = 0; j < n; j++) l += (p[j] = exp(p[j] - m));
                float *o = out + ((size_t)b * T + i) * C + (size_t)h * D;
                for (int d = 0; d < D; d++) {
                    double acc = 0.0;
                    for (int j = 0; j < n; j++)
                        acc += p[j] / l * qkv[((size_t)b * T + j) * C3 + 2 * C + (size_t)h * D + d];
                    o[d] = (float)acc;
                }
                lse[((size_t)b * NH + h) * T + i] = (float)(m + log(l));
                if (!dout) continue;
                const float *g = dout + ((size_t)b * T + i) * C + (size_t)h * D;
                double di = 0.0;
                for (int j = 0; j < n; j++) {
                    const float *v = qkv + ((size_t)b * T + j) * C3 + 2 * C + (size_t)h * D;
                    double s = 0.0;
                    for (int d = 0; d < D; d++) s += (double)g[d] * v[d];
                    p[j] /= l;
                    dp[j] = s;
                    di += p[j] * s;
                }
                double *dq = acc + ((size_t)b * T + i) * C3 + (size_t)h * D;
                for (int j = 0; j < n; j++) {
                    double ds = p[j] * (dp[j] - di);
                    const float *k = qkv + ((size_t)b * T + j) * C3 + C + (size_t)h * D;
                    double *dk = acc + ((size_t)b * T + j) * C3 + C + (size_t)h * D, *dv = dk + C;
                    for (int d = 0; d < D; d++) {
                        dq[d] += scale * ds * k[d];
                        dk[d] += scale * ds * q[d];
                        dv[d] += p[j] * g[d];
                    }
                }
            }
    if (acc)
        for (size_t i = 0; i < n3; i++) dqkv[i] += (float)acc[i];
    free(acc);
    free(p);
    free(dp);
}

// kv_len patterns of the masked tests: every key, one key, ragged (full, most, a tile and a
// bit, a few), for B rows of T keys
enum { KV_FULL, KV_ONE, KV_RAGGED };
static const char *const KV_NAMES[] = {"full", "one", "ragged"};
static void kv_pattern(int32_t *kv, int B, int T, int pattern) {
    for (int b = 0; b < B; b++) {
        int r[4] = {T, T - T / 3, 65, 7};
        kv[b] = pattern == KV_FULL ? T : pattern == KV_ONE ? 1 : r[b % 4];
        if (kv[b] > T) kv[b] = T;
        if (kv[b] < 1) kv[b] = 1;
    }
}

// kv (B, host) filled with pattern and a device copy on table g; pattern -1: kv untouched and
// no copy (NULL). The caller frees the copy (g->free).
static int32_t *kv_pattern_dev(const pb_ops *g, int32_t *kv, int B, int T, int pattern) {
    if (pattern < 0) return NULL;
    kv_pattern(kv, B, T, pattern);
    int32_t *d = g->alloc((size_t)B * 4);
    g->upload(d, kv, (size_t)B * 4);
    return d;
}

// Asserts that the rows j >= kv_len[b] of the K and V parts of dqkv (B,T,3C), downloaded
// as h, kept their start h0 bit for bit (padding keys get no gradient: += 0 or nothing).
static void expect_padding_untouched(const char *what, const float *h, const float *h0,
                                     const int32_t *kv, int B, int T, int C) {
    size_t bad = 0;
    for (int b = 0; b < B; b++)
        for (int j = kv[b]; j < T; j++)
            for (int c = C; c < 3 * C; c++) {
                size_t i = ((size_t)b * T + j) * 3 * C + c;
                bad += memcmp(&h[i], &h0[i], sizeof(float)) != 0;
            }
    cr_expect(bad == 0, "%s: %zu dK/dV elements of padding keys changed", what, bad);
}

#endif
