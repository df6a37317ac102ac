// test_attention.c: naive and flash attention, called by descriptor (pb_attn_desc), against
// finite differences, a double reference, and each other; with and without causal and
// key-padding (kv_len) masks; and pb_attn_choose on the CPU table.
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/attention/blocksparse.h"
#include "kernels/ops.h"
#include "tests/attn_ref.h"

// flash.c's key and query tile (FLASH_BC = FLASH_BR = 64 by default): the shapes and masks
// below put T and kv_len on, just past and just before its multiples.
#define TILE 64

// ----------------------------------------------------------------------------
// helpers

typedef struct {
    const char *name;
    const char *(*supports)(const pb_attn_desc *d);
    void (*fwd)(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
    void (*bwd)(float *dqkv, const float *dout, const float *out, const float *lse,
                const float *qkv, const pb_attn_desc *d);
} algo;
static const algo ALGOS[] = {
    {"naive", attn_naive_supports, attn_naive_forward, attn_naive_backward},
    {"flash", attn_flash_supports, attn_flash_forward, attn_flash_backward},
};
#define NALGOS (int)(sizeof ALGOS / sizeof ALGOS[0])
#define NAIVE (&ALGOS[0])
#define FLASH (&ALGOS[1])

// Key-padding patterns, kv_len[b] for b = 0, 1, 2, then repeating.
typedef enum {
    KV_NONE,    // kv_len = NULL
    KV_FULL,    // {T, T, T}: a mask that masks nothing
    KV_ONE,     // {1, 1, 1}: every query sees key 0 only
    KV_RAGGED,  // {T, 1, T/2+3}
    KV_TILE,    // {TILE, TILE+1, TILE-1}: a last key tile that is full, of one key, cut short
    KV_NPATTERNS
} kv_pattern;
static const char *const KV_NAMES[] = {"none", "full", "one", "ragged", "tile"};

static int imin(int a, int b) { return a < b ? a : b; }

static void kv_fill(int32_t *kv, int B, int T, kv_pattern pat) {
    for (int b = 0; b < B; b++) {
        int n = T;
        if (pat == KV_ONE) n = 1;
        if (pat == KV_RAGGED) n = (int[]){T, 1, T / 2 + 3}[b % 3];
        if (pat == KV_TILE) n = (int[]){TILE, TILE + 1, TILE - 1}[b % 3];
        kv[b] = imin(n, T);
    }
}

// One case: the shape, the masks, the input range.
typedef struct {
    int B, T, D, NH, causal;
    kv_pattern kv;
    float amp;    // inputs uniform in [-amp, amp]
    float scale;  // 0: 1/sqrtf(D), the model's
    float drop;   // the probabilities' dropout (pb_attn_desc.drop_p; 0: none)
} shape;

static const char *describe(const shape *s) {
    static char buf[176];
    snprintf(buf, sizeof buf, "B=%d T=%d D=%d NH=%d causal=%d kv=%s amp=%g scale=%g drop=%g",
             s->B, s->T, s->D, s->NH, s->causal, KV_NAMES[s->kv], s->amp, s->scale, s->drop);
    return buf;
}

// One problem: the descriptor, inputs, and one algorithm's outputs and gradient.
typedef struct {
    pb_attn_desc d;
    int C;
    size_t nqkv, nout, nlse;
    int32_t *kv;                 // (B), what d.kv_len points to unless KV_NONE
    float *qkv, *dout;           // inputs
    float *out, *lse, *dqkv;     // outputs of one algorithm
} problem;

static void problem_init(problem *p, const shape *s, uint64_t seed) {
    memset(p, 0, sizeof *p);
    p->kv = xcalloc((size_t)s->B, sizeof(int32_t));
    kv_fill(p->kv, s->B, s->T, s->kv);
    p->d = (pb_attn_desc){.B = s->B, .T = s->T, .Tk = s->T, .NH = s->NH, .D = s->D,
                          .scale = s->scale ? s->scale : 1.0f / sqrtf((float)s->D),
                          .causal = s->causal, .kv_len = s->kv == KV_NONE ? NULL : p->kv,
                          .layout = NULL, .drop_p = s->drop,
                          .drop_key = 0x5EED0000u + (uint64_t)s->T * 7 + (uint64_t)s->kv};
    p->C = s->D * s->NH;
    p->nqkv = (size_t)s->B * s->T * 3 * p->C;
    p->nout = (size_t)s->B * s->T * p->C;
    p->nlse = (size_t)s->B * s->NH * s->T;
    p->qkv = xcalloc(p->nqkv, sizeof(float));
    p->dout = xcalloc(p->nout, sizeof(float));
    p->out = xcalloc(p->nout, sizeof(float));
    p->lse = xcalloc(p->nlse, sizeof(float));
    p->dqkv = xcalloc(p->nqkv, sizeof(float));
    rng_seed(seed);
    fill(p->qkv, p->nqkv, s->amp);
    fill(p->dout, p->nout, 1.0f);
    // NaN where the forward must write, so an element it skips fails every comparison
    for (size_t i = 0; i < p->nout; i++) p->out[i] = NAN;
    for (size_t i = 0; i < p->nlse; i++) p->lse[i] = NAN;
}

// forward, then backward into a zeroed dqkv
static void problem_run(problem *p, const algo *a) {
    cr_assert(a->supports(&p->d) == NULL, "%s refuses the descriptor: %s", a->name,
              a->supports(&p->d));
    a->fwd(p->out, p->lse, p->qkv, &p->d);
    memset(p->dqkv, 0, p->nqkv * sizeof(float));
    a->bwd(p->dqkv, p->dout, p->out, p->lse, p->qkv, &p->d);
}

static void problem_free(problem *p) {
    free(p->kv), free(p->qkv), free(p->dout), free(p->out), free(p->lse), free(p->dqkv);
}

// The mask written out element by element from its definition in kernels/ops.h, (B,T,T):
// key j visible to query i of row b iff (!causal || j <= i) && (!kv_len || j < kv_len[b]).
// The references below read only this, never the ranges the kernels compute.
static unsigned char *make_mask(const pb_attn_desc *d) {
    int B = d->B, T = d->T;
    unsigned char *m = xcalloc((size_t)B * T * T, 1);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++)
                m[((size_t)b * T + i) * T + j] =
                    (!d->causal || j <= i) && (!d->kv_len || j < d->kv_len[b]);
    return m;
}

// ----------------------------------------------------------------------------
// (1) backward against central finite differences of the double reference

// L = sum(out * R); dL/dqkv by the algorithm's backward with dout = R, and by
// (L(x + h) - L(x - h)) / 2h in double with h = 1e-4 (only the batch row of x moves, so
// only its part of L is recomputed).
// Tolerance 2e-6 + 1e-5 |fd|, and why: the FD value is good to ~1e-8 (truncation
// h^2/6 |L'''| with |L'''| = O(1), rounding 1e-16 |L| / h ~ 1e-11), so the error measured is
// the fp32 backward's own: sums of O(T*D) terms of size O(1) with unit roundoff 6e-8, which
// comes to a few 1e-7 here (measured: max 2.6e-7 abs without masks; with them, at T=67, the
// worst error is 0.13 of its tolerance). A wrong formula or a missing term is off by
// O(0.01)-O(1); a masked key leaking into a gradient changes it by O(P) ~ 1/T or more.
static void check_fd(const algo *a, const shape *s) {
    problem p;
    problem_init(&p, s, 1000 + 10 * s->T + s->causal + 100 * s->kv);
    problem_run(&p, a);
    unsigned char *mask = make_mask(&p.d);

    double *x = to_double(p.qkv, p.nqkv);
    double *R = to_double(p.dout, p.nout);
    double *out = xcalloc(p.nout, sizeof(double));
    double *lse = xcalloc(p.nlse, sizeof(double));
    double *fd = xcalloc(p.nqkv, sizeof(double));
    const double h = 1e-4;
    size_t per_b = p.nqkv / s->B, out_per_b = p.nout / s->B;
    for (size_t i = 0; i < p.nqkv; i++) {
        int b = (int)(i / per_b);
        double x0 = x[i], L[2];
        for (int side = 0; side < 2; side++) {
            x[i] = side ? x0 - h : x0 + h;
            ref_forward(out, lse, x, &p.d, mask, 1, b, b + 1);
            L[side] = 0.0;
            for (size_t j = b * out_per_b; j < (b + 1) * out_per_b; j++) L[side] += out[j] * R[j];
        }
        x[i] = x0;
        fd[i] = (L[0] - L[1]) / (2 * h);
    }
    char msg[256];
    size_t bad = count_bad(msg, sizeof msg, p.dqkv, fd, p.nqkv, 2e-6, 1e-5);
    cr_expect(bad == 0, "%s backward vs finite differences, %s: %s", a->name, describe(s), msg);
    free(x), free(R), free(out), free(lse), free(fd), free(mask);
    problem_free(&p);
}

static void fd_cases(const algo *a) {
    for (int causal = 0; causal <= 1; causal++) {
        check_fd(a, &(shape){2, 5, 4, 2, causal, KV_NONE, 2.0f, 0, 0});
        check_fd(a, &(shape){1, 1, 3, 1, causal, KV_NONE, 2.0f, 0, 0});  // T=1: out = v, dq = dk = 0
        check_fd(a, &(shape){1, 9, 8, 1, causal, KV_NONE, 2.0f, 0, 0});
        check_fd(a, &(shape){1, 9, 8, 1, causal, KV_NONE, 2.0f, 0.3f, 0});  // scale from the desc
    }
}

Test(attention, naive_backward_matches_finite_differences) { fd_cases(NAIVE); }
// flash is checked against naive below; this makes its gradient independently anchored too
Test(attention, flash_backward_matches_finite_differences) { fd_cases(FLASH); }

// Key-padding masks, every pattern, causal and not: T=9 (one tile) and T=67 (two tiles, the
// second of 3 keys; kv=tile puts kv_len at 64, 65, 63), D small to keep the FD sweep short.
static void fd_masked_cases(const algo *a) {
    for (int causal = 0; causal <= 1; causal++)
        for (int kv = KV_FULL; kv < KV_NPATTERNS; kv++) {
            if (kv != KV_TILE) check_fd(a, &(shape){3, 9, 4, 2, causal, kv, 2.0f, 0, 0});
            check_fd(a, &(shape){3, 67, 2, 1, causal, kv, 2.0f, 0, 0});
        }
}

Test(attention, naive_masked_backward_matches_finite_differences, .timeout = 60) {
    fd_masked_cases(NAIVE);
}
Test(attention, flash_masked_backward_matches_finite_differences, .timeout = 60) {
    fd_masked_cases(FLASH);
}

// ----------------------------------------------------------------------------
// (2) forward and backward against the double reference

// Tolerance: out atol_for(amp) + 1e-4 |ref|; lse atol_for(amp) + 1e-5 |ref|. A mistake in
// scale, mask or normalisation moves values by far more.
static void check_forward_ref(const algo *a, const shape *s) {
    problem p;
    problem_init(&p, s, 2000 + s->T + s->D + s->causal + 100 * s->kv);
    cr_assert(a->supports(&p.d) == NULL, "%s refuses %s", a->name, describe(s));
    a->fwd(p.out, p.lse, p.qkv, &p.d);
    unsigned char *mask = make_mask(&p.d);
    double *x = to_double(p.qkv, p.nqkv);
    double *out = xcalloc(p.nout, sizeof(double));
    double *lse = xcalloc(p.nlse, sizeof(double));
    ref_forward(out, lse, x, &p.d, mask, 1, 0, s->B);
    char msg[256];
    size_t bad = count_bad(msg, sizeof msg, p.out, out, p.nout, atol_for(s->amp), 1e-4);
    cr_expect(bad == 0, "%s out vs double ref, %s: %s", a->name, describe(s), msg);
    bad = count_bad(msg, sizeof msg, p.lse, lse, p.nlse, atol_for(s->amp), 1e-5);
    cr_expect(bad == 0, "%s lse vs double ref, %s: %s", a->name, describe(s), msg);
    free(x), free(out), free(lse), free(mask);
    problem_free(&p);
}

static void forward_ref_cases(const algo *a) {
    for (int causal = 0; causal <= 1; causal++) {
        check_forward_ref(a, &(shape){2, 1, 8, 1, causal, KV_NONE, 2.0f, 0, 0});
        check_forward_ref(a, &(shape){2, 7, 16, 2, causal, KV_NONE, 2.0f, 0, 0});
        check_forward_ref(a, &(shape){2, 65, 16, 3, causal, KV_NONE, 2.0f, 0, 0});
        check_forward_ref(a, &(shape){2, 130, 64, 2, causal, KV_NONE, 2.0f, 0, 0});
        check_forward_ref(a, &(shape){1, 1000, 16, 1, causal, KV_NONE, 2.0f, 0, 0});  // many tiles
        // large scores: peaked rows whose max moves between tiles, exp underflow
        check_forward_ref(a, &(shape){1, 257, 16, 2, causal, KV_NONE, 6.0f, 0, 0});
        check_forward_ref(a, &(shape){2, 65, 16, 2, causal, KV_NONE, 2.0f, 0.3f, 0});
    }
}

Test(attention, naive_forward_matches_double_reference) { forward_ref_cases(NAIVE); }
Test(attention, flash_forward_matches_double_reference) { forward_ref_cases(FLASH); }

static void forward_masked_cases(const algo *a) {
    for (int causal = 0; causal <= 1; causal++)
        for (int kv = KV_FULL; kv < KV_NPATTERNS; kv++) {
            check_forward_ref(a, &(shape){3, 1, 8, 1, causal, kv, 2.0f, 0, 0});
            check_forward_ref(a, &(shape){3, 7, 16, 2, causal, kv, 2.0f, 0, 0});
            check_forward_ref(a, &(shape){3, 130, 64, 2, causal, kv, 2.0f, 0, 0});
            check_forward_ref(a, &(shape){3, 300, 16, 1, causal, kv, 2.0f, 0, 0});
            check_forward_ref(a, &(shape){3, 257, 16, 2, causal, kv, 6.0f, 0, 0});
        }
}

Test(attention, naive_masked_forward_matches_double_reference) { forward_masked_cases(NAIVE); }
Test(attention, flash_masked_forward_matches_double_reference) { forward_masked_cases(FLASH); }

// dq, dk, dv against ref_backward. Tolerance atol_for(amp) + 1e-4 |ref|, the one of the
// flash-naive comparison below: the fp32 gradients are sums of O(T) terms of size O(1)
// (measured at amp 2, masks or not: the worst error 0.18 of its tolerance; the largest
// absolute one, 9.5e-6, on an entry of |ref| > 0.4).
static void check_backward_ref(const algo *a, const shape *s) {
    problem p;
    problem_init(&p, s, 6000 + s->T + s->D + s->causal + 100 * s->kv);
    problem_run(&p, a);
    unsigned char *mask = make_mask(&p.d);
    double *x = to_double(p.qkv, p.nqkv), *R = to_double(p.dout, p.nout);
    double *g = xcalloc(p.nqkv, sizeof(double));
    ref_backward(g, x, R, &p.d, mask, 1);
    // the three parts of dqkv, each row of the 3C channels split in q, k, v
    static const char *part[3] = {"dq", "dk", "dv"};
    size_t rows = p.nqkv / (3 * (size_t)p.C);
    float *gotp = xcalloc(rows * p.C, sizeof(float));
    double *refp = xcalloc(rows * p.C, sizeof(double));
    for (int w = 0; w < 3; w++) {
        for (size_t r = 0; r < rows; r++)
            for (int c = 0; c < p.C; c++) {
                gotp[r * p.C + c] = p.dqkv[(r * 3 + w) * p.C + c];
                refp[r * p.C + c] = g[(r * 3 + w) * p.C + c];
            }
        char msg[256];
        size_t bad = count_bad(msg, sizeof msg, gotp, refp, rows * p.C, atol_for(s->amp), 1e-4);
        cr_expect(bad == 0, "%s %s vs double ref, %s: %s", a->name, part[w], describe(s), msg);
    }
    free(gotp), free(refp), free(x), free(R), free(g), free(mask);
    problem_free(&p);
}

static void backward_ref_cases(const algo *a) {
    for (int causal = 0; causal <= 1; causal++)
        for (int kv = KV_NONE; kv < KV_NPATTERNS; kv++) {
            check_backward_ref(a, &(shape){3, 7, 16, 2, causal, kv, 2.0f, 0, 0});
            check_backward_ref(a, &(shape){3, 130, 64, 2, causal, kv, 2.0f, 0, 0});
            check_backward_ref(a, &(shape){3, 200, 24, 1, causal, kv, 2.0f, 0, 0});
        }
}

Test(attention, naive_backward_matches_double_reference) { backward_ref_cases(NAIVE); }
Test(attention, flash_backward_matches_double_reference) { backward_ref_cases(FLASH); }

// ----------------------------------------------------------------------------
// (2b) dropout on the probabilities (kernels/ops.h): the references weight each P_ij as the
// descriptor's definition says (attn_ref.h's ref_drop), the finite differences run through
// them with the mask fixed by its key

static void dropout_fd_cases(const algo *a) {
    for (int causal = 0; causal <= 1; causal++) {
        check_fd(a, &(shape){2, 9, 4, 2, causal, KV_NONE, 2.0f, 0, 0.3f});
        check_fd(a, &(shape){3, 67, 2, 1, causal, KV_RAGGED, 2.0f, 0, 0.3f});
    }
}
Test(attention, naive_dropout_backward_matches_finite_differences, .timeout = 60) {
    dropout_fd_cases(NAIVE);
}
Test(attention, flash_dropout_backward_matches_finite_differences, .timeout = 60) {
    dropout_fd_cases(FLASH);
}

static void dropout_ref_cases(const algo *a) {
    for (int causal = 0; causal <= 1; causal++)
        for (int kv = KV_NONE; kv < KV_NPATTERNS; kv += 3) {  // none, ragged
            check_forward_ref(a, &(shape){3, 130, 16, 2, causal, kv, 2.0f, 0, 0.1f});
            check_forward_ref(a, &(shape){2, 300, 16, 1, causal, kv, 2.0f, 0, 0.5f});
            check_backward_ref(a, &(shape){3, 130, 16, 2, causal, kv, 2.0f, 0, 0.1f});
            check_backward_ref(a, &(shape){2, 200, 24, 1, causal, kv, 2.0f, 0, 0.5f});
        }
}
Test(attention, naive_dropout_matches_double_reference) { dropout_ref_cases(NAIVE); }
Test(attention, flash_dropout_matches_double_reference) { dropout_ref_cases(FLASH); }

// The dropout is there: a share p of the visible probabilities dropped (within 5 sigma of
// the binomial), out changed by far more than the tolerance, lse unchanged to the bit (it is
// the undropped softmax's), and another key drops other elements.
Test(attention, dropout_drops_a_share_p_and_keeps_lse) {
    shape s = {2, 200, 16, 2, 1, KV_RAGGED, 2.0f, 0, 0.3f};
    shape s0 = s;
    s0.drop = 0;
    problem p, q;
    problem_init(&p, &s, 77);
    problem_init(&q, &s0, 77);
    FLASH->fwd(p.out, p.lse, p.qkv, &p.d);
    FLASH->fwd(q.out, q.lse, q.qkv, &q.d);
    unsigned char *mask = make_mask(&p.d);
    long n = 0, dropped = 0, differ = 0;
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.NH; h++)
            for (int i = 0; i < s.T; i++)
                for (int j = 0; j < s.T; j++) {
                    if (!mask[((size_t)b * s.T + i) * s.T + j]) continue;
                    n++;
                    dropped += ref_drop(&p.d, b, h, i, j) == 0.0;
                    pb_attn_desc other = p.d;
                    other.drop_key++;
                    differ += ref_drop(&p.d, b, h, i, j) != ref_drop(&other, b, h, i, j);
                }
    double mean = 0.3 * n, sd = sqrt(n * 0.3 * 0.7);
    cr_expect(fabs(dropped - mean) < 5 * sd, "dropped %ld of %ld, expected %.0f +- %.0f", dropped,
              n, mean, 5 * sd);
    cr_expect(differ > 0.3 * n, "another key drops other elements: %ld of %ld differ", differ, n);
    size_t far = 0;
    for (size_t i = 0; i < p.nout; i++) far += fabsf(p.out[i] - q.out[i]) > 1e-2f;
    cr_expect(far > p.nout / 2, "dropout moved only %zu of %zu outputs by 1e-2", far, p.nout);
    cr_expect(memcmp(p.lse, q.lse, p.nlse * sizeof(float)) == 0, "lse changed with dropout");
    free(mask);
    problem_free(&p);
    problem_free(&q);
}

// smallcache does not drop: it says so rather than ignoring drop_p
Test(attention, smallcache_refuses_dropout) {
    pb_attn_desc d = {.B = 1, .T = 8, .Tk = 8, .NH = 1, .D = 8, .scale = 1.0f, .drop_p = 0.1f};
    cr_expect(attn_smallcache_supports(&d) != NULL);
    d.drop_p = 0;
    cr_expect(attn_smallcache_supports(&d) == NULL);
}

// ----------------------------------------------------------------------------
// (3) masked keys contribute nothing

// The k and v rows of every padding key (j >= kv_len[b], all heads) get new values, large
// enough (amp 8 against 2) that any weight on them would show: out, lse and the whole dqkv
// must come out bit-identical, and dk, dv of those keys exactly 0 (dqkv started at 0).
static void check_padding_ignored(const algo *a, const shape *s) {
    problem p, q;
    uint64_t seed = 7000 + s->T + s->causal + 100 * s->kv;
    problem_init(&p, s, seed);
    problem_init(&q, s, seed);
    int T = s->T, C = p.C;
    size_t nmasked = 0;
    rng_seed(seed + 1);
    for (int b = 0; b < s->B; b++)
        for (int j = p.kv[b]; j < T; j++) {
            fill(q.qkv + ((size_t)b * T + j) * 3 * C + C, 2 * (size_t)C, 8.0f);  // k and v
            nmasked++;
        }
    cr_assert(nmasked > 0, "case %s has no padding keys", describe(s));
    problem_run(&p, a);
    problem_run(&q, a);
    cr_expect(memcmp(p.out, q.out, p.nout * sizeof(float)) == 0,
              "%s out moved when padding keys changed, %s", a->name, describe(s));
    cr_expect(memcmp(p.lse, q.lse, p.nlse * sizeof(float)) == 0,
              "%s lse moved when padding keys changed, %s", a->name, describe(s));
    cr_expect(memcmp(p.dqkv, q.dqkv, p.nqkv * sizeof(float)) == 0,
              "%s dqkv moved when padding keys changed, %s", a->name, describe(s));
    size_t nonzero = 0;
    for (int b = 0; b < s->B; b++)
        for (int j = p.kv[b]; j < T; j++) {
            const float *g = q.dqkv + ((size_t)b * T + j) * 3 * C + C;  // dk, dv
            for (int c = 0; c < 2 * C; c++) nonzero += g[c] != 0.0f;
        }
    cr_expect(nonzero == 0, "%s: %zu dk/dv entries of padding keys are not 0, %s", a->name,
              nonzero, describe(s));
    problem_free(&p);
    problem_free(&q);
}

Test(attention, masked_keys_contribute_nothing) {
    for (int ai = 0; ai < NALGOS; ai++)
        for (int causal = 0; causal <= 1; causal++)
            for (int kv = KV_ONE; kv < KV_NPATTERNS; kv++) {
                check_padding_ignored(&ALGOS[ai], &(shape){3, 130, 16, 2, causal, kv, 2.0f, 0, 0});
                if (kv != KV_TILE)  // at T=9 the tile pattern pads nothing
                    check_padding_ignored(&ALGOS[ai], &(shape){3, 9, 8, 1, causal, kv, 2.0f, 0, 0});
            }
}

// ----------------------------------------------------------------------------
// (4) naive and flash agree, forward and backward

// Tolerance atol_for(amp) + 1e-4 |naive| for out, lse and dqkv (1e-5 abs at amp 2): both
// are fp32 with different summation orders (tiles, online rescaling, a polynomial exp in
// flash), which moves results by a few ulp times the number of terms; measured at amp 2:
// at most 1.1e-6 abs, 1/20 of the tolerance.
static void check_agree(const shape *s) {
    problem n, f;
    uint64_t seed = 3000 + 1000 * s->T + 10 * s->D + s->NH + s->causal + 100000 * s->kv;
    problem_init(&n, s, seed);
    problem_init(&f, s, seed);
    problem_run(&n, NAIVE);
    problem_run(&f, FLASH);
    struct {
        const char *what;
        const float *a, *b;
        size_t len;
    } cmp[] = {{"out", f.out, n.out, n.nout},
               {"lse", f.lse, n.lse, n.nlse},
               {"dqkv", f.dqkv, n.dqkv, n.nqkv}};
    for (int i = 0; i < 3; i++) {
        double *want = to_double(cmp[i].b, cmp[i].len);
        char msg[256];
        size_t bad =
            count_bad(msg, sizeof msg, cmp[i].a, want, cmp[i].len, atol_for(s->amp), 1e-4);
        cr_expect(bad == 0, "flash vs naive %s, %s: %s", cmp[i].what, describe(s), msg);
        free(want);
    }
    problem_free(&n);
    problem_free(&f);
}

static const int AGREE_TS[] = {1, 7, 64, 65, 130, 257};

Test(attention, flash_agrees_with_naive) {
    static const int Ds[] = {8, 16, 64};
    for (int causal = 0; causal <= 1; causal++)
        for (int ti = 0; ti < 6; ti++)
            for (int di = 0; di < 3; di++)
                for (int NH = 1; NH <= 3; NH++)
                    check_agree(&(shape){2, AGREE_TS[ti], Ds[di], NH, causal, KV_NONE, 2.0f, 0, 0});
}

// head dims that are not a multiple of flash's 16-column register blocks
Test(attention, flash_agrees_with_naive_odd_head_dims) {
    static const int Ds[] = {1, 24, 40};
    for (int causal = 0; causal <= 1; causal++)
        for (int di = 0; di < 3; di++)
            check_agree(&(shape){2, 100, Ds[di], 2, causal, KV_NONE, 2.0f, 0, 0});
}

Test(attention, flash_agrees_with_naive_large_scores) {
    for (int causal = 0; causal <= 1; causal++) {
        check_agree(&(shape){2, 257, 16, 2, causal, KV_NONE, 6.0f, 0, 0});
        check_agree(&(shape){1, 200, 64, 1, causal, KV_NONE, 4.0f, 0, 0});
    }
}

Test(attention, flash_agrees_with_naive_masked) {
    static const int Ds[] = {8, 24, 64};
    for (int causal = 0; causal <= 1; causal++)
        for (int kv = KV_FULL; kv < KV_NPATTERNS; kv++)
            for (int ti = 0; ti < 6; ti++)
                for (int di = 0; di < 3; di++)
                    check_agree(&(shape){3, AGREE_TS[ti], Ds[di], 2, causal, kv, 2.0f, 0, 0});
    for (int causal = 0; causal <= 1; causal++)
        check_agree(&(shape){3, 257, 16, 2, causal, KV_RAGGED, 6.0f, 0, 0});
}

// ----------------------------------------------------------------------------
// (5) backward accumulates into dqkv

// dqkv prefilled with G (uniform in [-3, 3]) must come back as G + g, g the gradient from
// zero. Tolerance 1 ulp of the largest |G| + |g|, under 1e-6 (an implementation that adds
// partial sums into dqkv one at a time rounds a little differently); overwriting or adding
// twice is off by |G| or |g|, almost everywhere far more. With a mask, G of padding keys'
// dk, dv comes back exactly (they get += 0).
Test(attention, backward_accumulates) {
    for (int ai = 0; ai < NALGOS; ai++)
        for (int causal = 0; causal <= 1; causal++)
            for (int kv = KV_NONE; kv <= KV_RAGGED; kv += KV_RAGGED) {
                shape s = {3, 70, 16, 2, causal, kv, 2.0f, 0, 0};
                problem p;
                problem_init(&p, &s, 4000 + causal + 10 * kv);
                problem_run(&p, &ALGOS[ai]);  // p.dqkv = g
                float *acc = xcalloc(p.nqkv, sizeof(float));
                fill(acc, p.nqkv, 3.0f);
                double *want = xcalloc(p.nqkv, sizeof(double));
                double ulp = 0.0;
                for (size_t i = 0; i < p.nqkv; i++) {
                    want[i] = (double)acc[i] + p.dqkv[i];
                    double mag = fabs(acc[i]) + fabs(p.dqkv[i]);
                    if (mag > ulp) ulp = mag;
                }
                ALGOS[ai].bwd(acc, p.dout, p.out, p.lse, p.qkv, &p.d);
                char msg[256];
                size_t bad = count_bad(msg, sizeof msg, acc, want, p.nqkv, ulp * 0x1.0p-23, 0.0);
                cr_expect(bad == 0, "%s backward must add into dqkv, %s: %s", ALGOS[ai].name,
                          describe(&s), msg);
                free(acc), free(want);
                problem_free(&p);
            }
}

// ----------------------------------------------------------------------------
// (6) bit-identical whatever the number of threads

Test(attention, deterministic_across_thread_counts) {
    static const int threads[] = {1, 2, 3};
    int saved = omp_get_max_threads();
    for (int ai = 0; ai < NALGOS; ai++)
        for (int causal = 0; causal <= 1; causal++)
            for (int kv = KV_NONE; kv <= KV_RAGGED; kv += KV_RAGGED) {
                // B*NH = 6 (b,h) pairs and 3 query blocks each: splits unevenly across 2
                // and 3 threads, and T=130 leaves a partial tile
                shape s = {2, 130, 16, 3, causal, kv, 2.0f, 0, 0};
                problem p[3];
                for (int t = 0; t < 3; t++) {
                    problem_init(&p[t], &s, 5000 + causal);
                    omp_set_num_threads(threads[t]);
                    problem_run(&p[t], &ALGOS[ai]);
                }
                omp_set_num_threads(saved);
                for (int t = 1; t < 3; t++) {
                    cr_expect(memcmp(p[0].out, p[t].out, p[0].nout * sizeof(float)) == 0,
                              "%s out differs with 1 and %d threads, %s", ALGOS[ai].name,
                              threads[t], describe(&s));
                    cr_expect(memcmp(p[0].lse, p[t].lse, p[0].nlse * sizeof(float)) == 0,
                              "%s lse differs with 1 and %d threads, %s", ALGOS[ai].name,
                              threads[t], describe(&s));
                    cr_expect(memcmp(p[0].dqkv, p[t].dqkv, p[0].nqkv * sizeof(float)) == 0,
                              "%s dqkv differs with 1 and %d threads, %s", ALGOS[ai].name,
                              threads[t], describe(&s));
                }
                for (int t = 0; t < 3; t++) problem_free(&p[t]);
            }
}

// ----------------------------------------------------------------------------
// (7) pb_attn_choose on the CPU table

Test(attention, choose_on_cpu_table) {
    const pb_ops *ops = pb_ops_cpu();
    int32_t kv[2] = {5, 1};
    pb_attn_desc d = {.B = 2, .T = 7, .Tk = 7, .NH = 2, .D = 16, .scale = 0.25f, .causal = 1,
                      .kv_len = NULL, .layout = NULL};
    char err[512];
    const pb_attn_impl *a;

    // auto (or "" or NULL): flash, the first of the table, with and without a key mask
    for (int masked = 0; masked <= 1; masked++) {
        d.kv_len = masked ? kv : NULL;
        const char *wants[] = {"auto", "", NULL};
        for (int w = 0; w < 3; w++) {
            err[0] = '\0';
            a = pb_attn_choose(ops, wants[w], &d, err, sizeof err);
            cr_expect(a && strcmp(a->name, "flash") == 0 && a->forward == attn_flash_forward,
                      "want=%s masked=%d: expected flash, got %s (%s)",
                      wants[w] ? wants[w] : "NULL", masked, a ? a->name : "NULL", err);
        }
        a = pb_attn_choose(ops, "naive", &d, err, sizeof err);
        cr_expect(a && strcmp(a->name, "naive") == 0 && a->backward == attn_naive_backward,
                  "want=naive masked=%d: got %s (%s)", masked, a ? a->name : "NULL", err);
        a = pb_attn_choose(ops, "flash", &d, err, sizeof err);
        cr_expect(a && a->forward == attn_flash_forward, "want=flash masked=%d: got %s (%s)",
                  masked, a ? a->name : "NULL", err);
    }

    // an unknown name: NULL, and the error names it and lists what the table has
    err[0] = '\0';
    a = pb_attn_choose(ops, "wgmma", &d, err, sizeof err);
    cr_expect(a == NULL, "an unknown name must give NULL, got %s", a ? a->name : "");
    cr_expect(strstr(err, "wgmma") && strstr(err, "flash, naive"),
              "the error must name the unknown one and list flash, naive: \"%s\"", err);

    // keys and queries of different lengths: refused by every CPU implementation, with why
    d.kv_len = NULL;
    d.Tk = 9;
    err[0] = '\0';
    a = pb_attn_choose(ops, "auto", &d, err, sizeof err);
    cr_expect(a == NULL, "Tk != T must be refused, got %s", a ? a->name : "");
    cr_expect(strstr(err, "self-attention") != NULL, "Tk != T: no reason given: \"%s\"", err);
    err[0] = '\0';
    a = pb_attn_choose(ops, "naive", &d, err, sizeof err);
    cr_expect(a == NULL && strstr(err, "naive") && strstr(err, "self-attention"),
              "naive with Tk != T: got %s, \"%s\"", a ? a->name : "NULL", err);
    d.Tk = d.T;

    // a block-sparse layout: flash and naive refuse it, auto takes blocksparse
    char berr[256];
    bs_params bp = {.pattern = BS_DENSE, .block = 16};
    pb_block_layout *lay = attn_bs_build(&bp, d.T, d.NH, d.causal, NULL, d.B, berr, sizeof berr);
    cr_assert(lay, "%s", berr);
    d.layout = lay;
    err[0] = '\0';
    a = pb_attn_choose(ops, "auto", &d, err, sizeof err);
    cr_expect(a && strcmp(a->name, "blocksparse") == 0, "auto with a layout: got %s (%s)",
              a ? a->name : "NULL", err);
    err[0] = '\0';
    a = pb_attn_choose(ops, "flash", &d, err, sizeof err);
    cr_expect(a == NULL && strstr(err, "flash") && strstr(err, "block-sparse"),
              "flash with a layout: got %s, \"%s\"", a ? a->name : "NULL", err);
    attn_bs_free(lay);
}
