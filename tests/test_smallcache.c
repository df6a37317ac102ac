// test_smallcache.c: the small-cache attention (kernels/attention/smallcache.c) against the
// double reference (tests/attn_ref.h), naive and flash, forward and backward, with causal
// and key-padding masks, at head dims up to 512 and T across its 64-tiles; and finite
// differences in double.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "tests/attn_ref.h"

typedef struct {
    pb_attn_desc d;
    int32_t kv[4];
    size_t nqkv, nout, nlse;
    float *qkv, *dout;
    unsigned char *mask;  // (B,1,T,T) from the definition
} sc_prob;

typedef void (*fwd_fn)(float *, float *, const float *, const pb_attn_desc *);
typedef void (*bwd_fn)(float *, const float *, const float *, const float *, const float *,
                       const pb_attn_desc *);

static void sc_init(sc_prob *p, int B, int T, int D, int NH, int causal, int padded) {
    memset(p, 0, sizeof *p);
    for (int b = 0; b < B; b++) p->kv[b] = (int[]){T, 1, T / 2 + 3, T - 1}[b % 4];
    for (int b = 0; b < B; b++) p->kv[b] = p->kv[b] > T ? T : p->kv[b] < 1 ? 1 : p->kv[b];
    p->d = (pb_attn_desc){B, T, T, NH, D, 1.0f / sqrtf((float)D), causal, padded ? p->kv : NULL,
                          NULL, 0, 0};
    int C = NH * D;
    p->nqkv = (size_t)B * T * 3 * C, p->nout = (size_t)B * T * C, p->nlse = (size_t)B * NH * T;
    p->qkv = xcalloc(p->nqkv, 4), p->dout = xcalloc(p->nout, 4);
    rng_seed(31 + T + D + causal + padded);
    fill(p->qkv, p->nqkv, 2.0f);
    fill(p->dout, p->nout, 1.0f);
    p->mask = xcalloc((size_t)B * T * T, 1);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++)
                p->mask[((size_t)b * T + i) * T + j] =
                    (!causal || j <= i) && (!padded || j < p->kv[b]);
}

static void sc_run(const sc_prob *p, fwd_fn f, bwd_fn g, float **out, float **lse, float **dq) {
    *out = xcalloc(p->nout, 4), *lse = xcalloc(p->nlse, 4), *dq = xcalloc(p->nqkv, 4);
    for (size_t i = 0; i < p->nout; i++) (*out)[i] = NAN;
    f(*out, *lse, p->qkv, &p->d);
    g(*dq, p->dout, *out, *lse, p->qkv, &p->d);
}

static const char *desc(const sc_prob *p) {
    static char buf[128];
    snprintf(buf, sizeof buf, "B=%d T=%d D=%d NH=%d causal=%d kv=%s", p->d.B, p->d.T, p->d.D,
             p->d.NH, p->d.causal, p->d.kv_len ? "ragged" : "none");
    return buf;
}

// Tolerance 1e-5 + 1e-4 |ref| (atol_for(2), as between flash and naive): fp32 sums of O(T)
// and O(D) terms in another order; at D = 512 the score sums are longer, so 4e-5 there.
static void check_case(int B, int T, int D, int NH, int causal, int padded) {
    sc_prob p;
    sc_init(&p, B, T, D, NH, causal, padded);
    cr_assert(attn_smallcache_supports(&p.d) == NULL);
    float *so, *sl, *sg, *no, *nl, *ng, *fo, *fl, *fg;
    sc_run(&p, attn_smallcache_forward, attn_smallcache_backward, &so, &sl, &sg);
    sc_run(&p, attn_naive_forward, attn_naive_backward, &no, &nl, &ng);
    sc_run(&p, attn_flash_forward, attn_flash_backward, &fo, &fl, &fg);
    double *x = to_double(p.qkv, p.nqkv), *R = to_double(p.dout, p.nout);
    double *ro = xcalloc(p.nout, 8), *rl = xcalloc(p.nlse, 8), *rg = xcalloc(p.nqkv, 8);
    ref_forward(ro, rl, x, &p.d, p.mask, 1, 0, B);
    ref_backward(rg, x, R, &p.d, p.mask, 1);
    double atol = D >= 256 ? 4e-5 : atol_for(2.0f);
    char msg[256];
    struct { const char *what; const float *got; const double *want; size_t n; } cmp[] = {
        {"out vs double", so, ro, p.nout}, {"lse vs double", sl, rl, p.nlse},
        {"dqkv vs double", sg, rg, p.nqkv},
    };
    for (int i = 0; i < 3; i++) {
        size_t bad = count_bad(msg, sizeof msg, cmp[i].got, cmp[i].want, cmp[i].n, atol, 1e-4);
        cr_expect(bad == 0, "smallcache %s, %s: %s", cmp[i].what, desc(&p), msg);
    }
    const float *others[2][3] = {{no, nl, ng}, {fo, fl, fg}};
    for (int a = 0; a < 2; a++) {
        double *w[3] = {to_double(others[a][0], p.nout), to_double(others[a][1], p.nlse),
                        to_double(others[a][2], p.nqkv)};
        for (int i = 0; i < 3; i++) {
            size_t bad = count_bad(msg, sizeof msg, cmp[i].got, w[i], cmp[i].n, atol, 1e-4);
            cr_expect(bad == 0, "smallcache vs %s %s, %s: %s", a ? "flash" : "naive",
                      cmp[i].what, desc(&p), msg);
            free(w[i]);
        }
    }
    free(so), free(sl), free(sg), free(no), free(nl), free(ng), free(fo), free(fl), free(fg);
    free(x), free(R), free(ro), free(rl), free(rg), free(p.qkv), free(p.dout), free(p.mask);
}

Test(smallcache, matches_reference_naive_and_flash, .timeout = 120) {
    for (int causal = 0; causal <= 1; causal++)
        for (int padded = 0; padded <= 1; padded++) {
            check_case(3, 1, 8, 1, causal, padded);
            check_case(3, 65, 16, 2, causal, padded);
            check_case(3, 130, 100, 1, causal, padded);  // D not a multiple of the tile
            check_case(2, 200, 24, 3, causal, padded);
        }
    check_case(2, 70, 512, 1, 1, 1);  // the head dims it is for
    check_case(1, 129, 256, 2, 0, 0);
}

// L = sum(out * R): the backward against central differences of the double reference
// (h = 1e-4), tolerance 2e-6 + 1e-5 |fd| as in test_attention.c
Test(smallcache, backward_matches_finite_differences, .timeout = 60) {
    for (int causal = 0; causal <= 1; causal++)
        for (int padded = 0; padded <= 1; padded++) {
            sc_prob p;
            sc_init(&p, 3, 67, 3, 1, causal, padded);
            float *o, *l, *g;
            sc_run(&p, attn_smallcache_forward, attn_smallcache_backward, &o, &l, &g);
            double *x = to_double(p.qkv, p.nqkv), *R = to_double(p.dout, p.nout);
            double *ro = xcalloc(p.nout, 8), *rl = xcalloc(p.nlse, 8), *fd = xcalloc(p.nqkv, 8);
            size_t per_b = p.nqkv / 3, out_b = p.nout / 3;
            for (size_t i = 0; i < p.nqkv; i++) {
                int b = (int)(i / per_b);
                double x0 = x[i], L[2];
                for (int s = 0; s < 2; s++) {
                    x[i] = s ? x0 - 1e-4 : x0 + 1e-4;
                    ref_forward(ro, rl, x, &p.d, p.mask, 1, b, b + 1);
                    L[s] = 0;
                    for (size_t j = b * out_b; j < (b + 1) * out_b; j++) L[s] += ro[j] * R[j];
                }
                x[i] = x0;
                fd[i] = (L[0] - L[1]) / 2e-4;
            }
            char msg[256];
            size_t bad = count_bad(msg, sizeof msg, g, fd, p.nqkv, 2e-6, 1e-5);
            cr_expect(bad == 0, "smallcache vs finite differences, %s: %s", desc(&p), msg);
            free(o), free(l), free(g), free(x), free(R), free(ro), free(rl), free(fd);
            free(p.qkv), free(p.dout), free(p.mask);
        }
}

Test(smallcache, refuses_what_it_cannot_run) {
    pb_attn_desc d = {1, 20000, 20000, 1, 64, 0.125f, 0, NULL, NULL, 0, 0};
    const char *why = attn_smallcache_supports(&d);
    cr_expect(why && strstr(why, "16384"), "T = 20000: %s", why ? why : "accepted");
    d.T = d.Tk = 100;
    cr_expect(attn_smallcache_supports(&d) == NULL);
    d.Tk = 90;
    cr_expect(attn_smallcache_supports(&d) != NULL);
}
