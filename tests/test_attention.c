// test_attention.c: naive and flash attention vs finite differences, a double reference, each other
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/attention.h"

// ----------------------------------------------------------------------------
// helpers

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
    void *p = calloc(n, size);
    cr_assert(p != NULL, "out of memory");
    return p;
}

typedef void (*fwd_fn)(float *, float *, const float *, int, int, int, int, int);
typedef void (*bwd_fn)(float *, const float *, const float *, const float *, const float *, int,
                       int, int, int, int);
typedef struct {
    const char *name;
    fwd_fn fwd;
    bwd_fn bwd;
} algo;
static const algo ALGOS[] = {
    {"naive", attn_naive_forward, attn_naive_backward},
    {"flash", attn_flash_forward, attn_flash_backward},
};
#define NALGOS (int)(sizeof ALGOS / sizeof ALGOS[0])

// Independent reference in double: out (B,T,C), lse (B,NH,T) from qkv (B,T,3C); one score
// row at a time, straight from the definition softmax(q k^T / sqrt(D)) v.
static void ref_forward(double *out, double *lse, const double *qkv, int B, int T, int C,
                        int NH, int causal) {
    int D = C / NH;
    double *s = xcalloc((size_t)T, sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const double *qi = qkv + ((size_t)b * T + i) * 3 * C + h * D;
                int jn = causal ? i + 1 : T;
                double mx = -INFINITY;
                for (int j = 0; j < jn; j++) {
                    const double *kj = qkv + ((size_t)b * T + j) * 3 * C + C + h * D;
                    double dot = 0.0;
                    for (int d = 0; d < D; d++) dot += qi[d] * kj[d];
                    s[j] = dot / sqrt((double)D);
                    mx = fmax(mx, s[j]);
                }
                double sum = 0.0;
                for (int j = 0; j < jn; j++) sum += exp(s[j] - mx);
                double *o = out + ((size_t)b * T + i) * C + h * D;
                for (int d = 0; d < D; d++) o[d] = 0.0;
                for (int j = 0; j < jn; j++) {
                    const double *vj = qkv + ((size_t)b * T + j) * 3 * C + 2 * C + h * D;
                    double p = exp(s[j] - mx) / sum;
                    for (int d = 0; d < D; d++) o[d] += p * vj[d];
                }
                lse[((size_t)b * NH + h) * T + i] = mx + log(sum);
            }
    free(s);
}

// Counts the elements with |got - want| > atol + rtol * |want| (NaN counts), and
// describes the worst one (largest error / tolerance) in msg.
static size_t count_bad(char *msg, size_t msglen, const float *got, const double *want,
                        size_t n, double atol, double rtol) {
    size_t bad = 0, worst = 0;
    double worst_ratio = -1.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
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

// One problem: inputs, and each algorithm's outputs and gradient (dqkv from zero).
typedef struct {
    int B, T, C, NH, causal;
    size_t nqkv, nout, nlse;
    float *qkv, *dout;           // inputs
    float *out, *lse, *dqkv;     // outputs of one algorithm
} problem;

static void problem_init(problem *p, int B, int T, int D, int NH, int causal, float amp,
                         uint64_t seed) {
    p->B = B, p->T = T, p->C = D * NH, p->NH = NH, p->causal = causal;
    p->nqkv = (size_t)B * T * 3 * p->C;
    p->nout = (size_t)B * T * p->C;
    p->nlse = (size_t)B * NH * T;
    p->qkv = xcalloc(p->nqkv, sizeof(float));
    p->dout = xcalloc(p->nout, sizeof(float));
    p->out = xcalloc(p->nout, sizeof(float));
    p->lse = xcalloc(p->nlse, sizeof(float));
    p->dqkv = xcalloc(p->nqkv, sizeof(float));
    rng_seed(seed);
    fill(p->qkv, p->nqkv, amp);
    fill(p->dout, p->nout, 1.0f);
    // NaN where the forward must write, so an element it skips fails every comparison
    for (size_t i = 0; i < p->nout; i++) p->out[i] = NAN;
    for (size_t i = 0; i < p->nlse; i++) p->lse[i] = NAN;
}

// forward, then backward into a zeroed dqkv
static void problem_run(problem *p, const algo *a) {
    a->fwd(p->out, p->lse, p->qkv, p->B, p->T, p->C, p->NH, p->causal);
    memset(p->dqkv, 0, p->nqkv * sizeof(float));
    a->bwd(p->dqkv, p->dout, p->out, p->lse, p->qkv, p->B, p->T, p->C, p->NH, p->causal);
}

static void problem_free(problem *p) {
    free(p->qkv), free(p->dout), free(p->out), free(p->lse), free(p->dqkv);
}

// ----------------------------------------------------------------------------
// (1) backward against central finite differences of the double reference

// L = sum(out * R); dL/dqkv by the algorithm's backward with dout = R, and by
// (L(x + h) - L(x - h)) / 2h in double with h = 1e-4.
// Tolerance 2e-6 + 1e-5 |fd|, and why: the FD value is good to ~1e-8 (truncation
// h^2/6 |L'''| with |L'''| = O(1), rounding 1e-16 |L| / h ~ 1e-11), so the error measured is
// the fp32 backward's own: sums of O(T*D) terms of size O(1) with unit roundoff 6e-8, which
// comes to a few 1e-7 here (measured max 2.6e-7 abs, 1/8 of the tolerance). A wrong formula
// or a missing term is off by O(0.01)-O(1).
static void check_fd(const algo *a, int B, int T, int D, int NH, int causal) {
    problem p;
    problem_init(&p, B, T, D, NH, causal, 2.0f, 1000 + 10 * T + causal);
    problem_run(&p, a);

    double *x = to_double(p.qkv, p.nqkv);
    double *R = to_double(p.dout, p.nout);
    double *out = xcalloc(p.nout, sizeof(double));
    double *lse = xcalloc(p.nlse, sizeof(double));
    double *fd = xcalloc(p.nqkv, sizeof(double));
    const double h = 1e-4;
    for (size_t i = 0; i < p.nqkv; i++) {
        double x0 = x[i], L[2];
        for (int side = 0; side < 2; side++) {
            x[i] = side ? x0 - h : x0 + h;
            ref_forward(out, lse, x, B, T, p.C, NH, causal);
            L[side] = 0.0;
            for (size_t j = 0; j < p.nout; j++) L[side] += out[j] * R[j];
        }
        x[i] = x0;
        fd[i] = (L[0] - L[1]) / (2 * h);
    }
    char msg[256];
    size_t bad = count_bad(msg, sizeof msg, p.dqkv, fd, p.nqkv, 2e-6, 1e-5);
    cr_expect(bad == 0, "%s backward vs finite differences, B=%d T=%d D=%d NH=%d causal=%d: %s",
              a->name, B, T, D, NH, causal, msg);
    free(x), free(R), free(out), free(lse), free(fd);
    problem_free(&p);
}

Test(attention, naive_backward_matches_finite_differences) {
    for (int causal = 0; causal <= 1; causal++) {
        check_fd(&ALGOS[0], 2, 5, 4, 2, causal);
        check_fd(&ALGOS[0], 1, 1, 3, 1, causal);   // T=1: out = v, dq = dk = 0
        check_fd(&ALGOS[0], 1, 9, 8, 1, causal);
    }
}

// flash is checked against naive below; this makes its gradient independently anchored too
Test(attention, flash_backward_matches_finite_differences) {
    for (int causal = 0; causal <= 1; causal++) {
        check_fd(&ALGOS[1], 2, 5, 4, 2, causal);
        check_fd(&ALGOS[1], 1, 1, 3, 1, causal);
        check_fd(&ALGOS[1], 1, 9, 8, 1, causal);
    }
}

// ----------------------------------------------------------------------------
// (2) forward against the double reference

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

// Tolerance: out atol_for(amp) + 1e-4 |ref|; lse atol_for(amp) + 1e-5 |ref|. A mistake in
// scale, mask or normalisation moves values by far more.
static void check_forward_ref(const algo *a, int B, int T, int D, int NH, int causal,
                              float amp) {
    problem p;
    problem_init(&p, B, T, D, NH, causal, amp, 2000 + T + D + causal);
    a->fwd(p.out, p.lse, p.qkv, B, T, p.C, NH, causal);
    double *x = to_double(p.qkv, p.nqkv);
    double *out = xcalloc(p.nout, sizeof(double));
    double *lse = xcalloc(p.nlse, sizeof(double));
    ref_forward(out, lse, x, B, T, p.C, NH, causal);
    char msg[256];
    size_t bad = count_bad(msg, sizeof msg, p.out, out, p.nout, atol_for(amp), 1e-4);
    cr_expect(bad == 0, "%s out vs double ref, B=%d T=%d D=%d NH=%d causal=%d amp=%g: %s",
              a->name, B, T, D, NH, causal, amp, msg);
    bad = count_bad(msg, sizeof msg, p.lse, lse, p.nlse, atol_for(amp), 1e-5);
    cr_expect(bad == 0, "%s lse vs double ref, B=%d T=%d D=%d NH=%d causal=%d amp=%g: %s",
              a->name, B, T, D, NH, causal, amp, msg);
    free(x), free(out), free(lse);
    problem_free(&p);
}

static void forward_ref_cases(const algo *a) {
    for (int causal = 0; causal <= 1; causal++) {
        check_forward_ref(a, 2, 1, 8, 1, causal, 2.0f);
        check_forward_ref(a, 2, 7, 16, 2, causal, 2.0f);
        check_forward_ref(a, 2, 65, 16, 3, causal, 2.0f);
        check_forward_ref(a, 2, 130, 64, 2, causal, 2.0f);
        check_forward_ref(a, 1, 1000, 16, 1, causal, 2.0f);  // many key tiles
        // large scores: peaked rows whose max moves between tiles, exp underflow
        check_forward_ref(a, 1, 257, 16, 2, causal, 6.0f);
    }
}

Test(attention, naive_forward_matches_double_reference) { forward_ref_cases(&ALGOS[0]); }
Test(attention, flash_forward_matches_double_reference) { forward_ref_cases(&ALGOS[1]); }

// ----------------------------------------------------------------------------
// (3) naive and flash agree, forward and backward

// Tolerance atol_for(amp) + 1e-4 |naive| for out, lse and dqkv (1e-5 abs at amp 2): both
// are fp32 with different summation orders (tiles, online rescaling, a polynomial exp in
// flash), which moves results by a few ulp times the number of terms; measured at amp 2:
// at most 1.1e-6 abs, 1/20 of the tolerance.
static void check_agree(int B, int T, int D, int NH, int causal, float amp) {
    problem n, f;
    uint64_t seed = 3000 + 1000 * T + 10 * D + NH + causal;
    problem_init(&n, B, T, D, NH, causal, amp, seed);
    problem_init(&f, B, T, D, NH, causal, amp, seed);
    problem_run(&n, &ALGOS[0]);
    problem_run(&f, &ALGOS[1]);
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
        size_t bad = count_bad(msg, sizeof msg, cmp[i].a, want, cmp[i].len, atol_for(amp), 1e-4);
        cr_expect(bad == 0, "flash vs naive %s, B=%d T=%d D=%d NH=%d causal=%d amp=%g: %s",
                  cmp[i].what, B, T, D, NH, causal, amp, msg);
        free(want);
    }
    problem_free(&n);
    problem_free(&f);
}

Test(attention, flash_agrees_with_naive) {
    static const int Ts[] = {1, 7, 64, 65, 130, 257};
    static const int Ds[] = {8, 16, 64};
    for (int causal = 0; causal <= 1; causal++)
        for (int ti = 0; ti < 6; ti++)
            for (int di = 0; di < 3; di++)
                for (int NH = 1; NH <= 3; NH++) check_agree(2, Ts[ti], Ds[di], NH, causal, 2.0f);
}

// head dims that are not a multiple of flash's 16-column register blocks
Test(attention, flash_agrees_with_naive_odd_head_dims) {
    static const int Ds[] = {1, 24, 40};
    for (int causal = 0; causal <= 1; causal++)
        for (int di = 0; di < 3; di++) check_agree(2, 100, Ds[di], 2, causal, 2.0f);
}

Test(attention, flash_agrees_with_naive_large_scores) {
    for (int causal = 0; causal <= 1; causal++) {
        check_agree(2, 257, 16, 2, causal, 6.0f);
        check_agree(1, 200, 64, 1, causal, 4.0f);
    }
}

// ----------------------------------------------------------------------------
// (4) backward accumulates into dqkv

// dqkv prefilled with G (uniform in [-3, 3]) must come back as G + g, g the gradient from
// zero. Tolerance 1 ulp of the largest |G| + |g|, under 1e-6 (an implementation that adds
// partial sums into dqkv one at a time rounds a little differently); overwriting or adding
// twice is off by |G| or |g|, almost everywhere far more.
Test(attention, backward_accumulates) {
    for (int ai = 0; ai < NALGOS; ai++)
        for (int causal = 0; causal <= 1; causal++) {
            problem p;
            problem_init(&p, 2, 70, 16, 2, causal, 2.0f, 4000 + causal);
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
            ALGOS[ai].bwd(acc, p.dout, p.out, p.lse, p.qkv, p.B, p.T, p.C, p.NH, causal);
            char msg[256];
            size_t bad = count_bad(msg, sizeof msg, acc, want, p.nqkv, ulp * 0x1.0p-23, 0.0);
            cr_expect(bad == 0, "%s backward must add into dqkv (causal=%d): %s",
                      ALGOS[ai].name, causal, msg);
            free(acc), free(want);
            problem_free(&p);
        }
}

// ----------------------------------------------------------------------------
// (5) bit-identical whatever the number of threads

Test(attention, deterministic_across_thread_counts) {
    static const int threads[] = {1, 2, 3};
    int saved = omp_get_max_threads();
    for (int ai = 0; ai < NALGOS; ai++)
        for (int causal = 0; causal <= 1; causal++) {
            problem p[3];
            for (int t = 0; t < 3; t++) {
                // B*NH = 6 (b,h) pairs and 3 query blocks each: splits unevenly across 2
                // and 3 threads, and T=130 leaves a partial tile
                problem_init(&p[t], 2, 130, 16, 3, causal, 2.0f, 5000 + causal);
                omp_set_num_threads(threads[t]);
                problem_run(&p[t], &ALGOS[ai]);
            }
            omp_set_num_threads(saved);
            for (int t = 1; t < 3; t++) {
                cr_expect(memcmp(p[0].out, p[t].out, p[0].nout * sizeof(float)) == 0,
                          "%s out differs with 1 and %d threads (causal=%d)", ALGOS[ai].name,
                          threads[t], causal);
                cr_expect(memcmp(p[0].lse, p[t].lse, p[0].nlse * sizeof(float)) == 0,
                          "%s lse differs with 1 and %d threads (causal=%d)", ALGOS[ai].name,
                          threads[t], causal);
                cr_expect(memcmp(p[0].dqkv, p[t].dqkv, p[0].nqkv * sizeof(float)) == 0,
                          "%s dqkv differs with 1 and %d threads (causal=%d)", ALGOS[ai].name,
                          threads[t], causal);
            }
            for (int t = 0; t < 3; t++) problem_free(&p[t]);
        }
}
