// test_ops.c: the CPU op table (all ops but attention) against independent double-precision
// references: forward outputs against a double forward written here, backward gradients
// against central finite differences of that double forward; then the table's conventions
// (backward accumulates, crossentropy overwrites, results independent of the thread count).
//
// Gradient checks: for a fixed random R the scalar loss is L = sum(out * R); the op's backward
// gets dout = R, and each gradient entry is compared with (L(x+h) - L(x-h)) / 2h computed in
// double, h = 1e-5 * max(1, |x|). In double that difference is accurate to ~1e-9 (truncation
// ~h^2, rounding ~1e-16 |L| / h), so the comparison measures the fp32 op alone.
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/common.h"
#include "kernels/ops.h"

// Tolerances, |got - ref| <= ATOL + RTOL * |ref|. The inputs are O(1) and the ops sum at most
// a few hundred terms, so fp32 rounding gives errors ~1e-6 (a few hundred ulps at worst); the
// bounds sit ~100x above that and far below any real bug (a dropped or doubled term, a wrong
// index, a missing factor), which is O(0.1) or more.
#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-4
#define GRAD_ATOL 1e-4
#define GRAD_RTOL 1e-3

static const pb_ops *ops(void) { return pb_ops_cpu(); }

// ----------------------------------------------------------------------------
// helpers

// splitmix64: a fixed, portable stream, so every run tests the same numbers
static double rand_uniform(uint64_t *state, double lo, double hi) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

// An op buffer (zeroed) of n floats, filled uniform in [lo, hi) unless lo == hi.
static float *fbuf(size_t n, double lo, double hi, uint64_t *state) {
    float *x = ops()->alloc(n * sizeof(float));
    if (lo != hi)
        for (size_t i = 0; i < n; i++) x[i] = (float)rand_uniform(state, lo, hi);
    return x;
}

static float *fcopy(const float *x, size_t n) {
    float *y = ops()->alloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static void free_bufs(float **bufs, int n) {
    for (int i = 0; i < n; i++) ops()->free(bufs[i]);
}

static double *to_double(const float *x, size_t n) {
    double *y = pb_malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// Expects |got[i] - ref[i]| <= atol + rtol |ref[i]| for every i; reports the first miss.
static void expect_close(const char *what, const float *got, const double *ref, size_t n,
                         double atol, double rtol) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= atol + rtol * fabs(ref[i]))) {  // also catches NaN
            if (bad++ == 0) first = i;
        }
    }
    cr_expect(bad == 0, "%s: %zu of %zu off, first [%zu]: got %.9g, want %.9g", what, bad, n,
              first, bad ? got[first] : 0.0f, bad ? ref[first] : 0.0);
}

static void expect_bits_equal(const char *what, const void *a, const void *b, size_t bytes) {
    cr_expect(memcmp(a, b, bytes) == 0, "%s: results differ bit for bit", what);
}

// A double-precision reference forward reduced to the scalar loss L = sum(out * R).
typedef double (*loss_fn)(void *ctx);

// dL/dx[i] by central differences; x is one of the double inputs the loss reads.
static double fd_grad(loss_fn loss, void *ctx, double *x, size_t i) {
    double x0 = x[i], h = 1e-5 * fmax(1.0, fabs(x0));
    x[i] = x0 + h;
    double lp = loss(ctx);
    x[i] = x0 - h;
    double lm = loss(ctx);
    x[i] = x0;
    return (lp - lm) / (2.0 * h);
}

// Compares the fp32 gradient g (n) of x with finite differences at every stride-th index
// and at the last one (stride 1: everywhere).
static void check_grad(const char *what, loss_fn loss, void *ctx, double *x, const float *g,
                       size_t n, size_t stride) {
    size_t bad = 0, checked = 0, first = 0;
    double first_ref = 0.0;
    // i = 0, stride, 2 stride, ..., then n - 1 if the strides missed it
    for (size_t i = 0; i < n; i = (i == n - 1 || i + stride < n) ? i + stride : n - 1) {
        double ref = fd_grad(loss, ctx, x, i);
        checked++;
        if (!(fabs((double)g[i] - ref) <= GRAD_ATOL + GRAD_RTOL * fabs(ref))) {
            if (bad++ == 0) first = i, first_ref = ref;
        }
    }
    cr_expect(bad == 0, "%s: %zu of %zu checked entries off, first [%zu]: got %.9g, want %.9g",
              what, bad, checked, first, bad ? g[first] : 0.0f, first_ref);
}

// ----------------------------------------------------------------------------
// the table itself and the memory ops

Test(ops_cpu, table_is_complete) {
    const pb_ops *f = pb_ops_cpu();
    cr_expect_str_eq(f->name, "cpu");
    // flash first (auto takes it), then the naive reference, then the end of the list
    cr_assert(f->attention && f->attention[0] && f->attention[1] && f->attention[2] &&
              f->attention[3] && !f->attention[4]);
    cr_expect_str_eq(f->attention[0]->name, "flash");
    cr_expect(f->attention[0]->forward == attn_flash_forward);
    cr_expect(f->attention[0]->backward == attn_flash_backward);
    cr_expect_str_eq(f->attention[1]->name, "naive");
    cr_expect(f->attention[1]->forward == attn_naive_forward);
    cr_expect(f->attention[1]->backward == attn_naive_backward);
    cr_expect_str_eq(f->attention[2]->name, "blocksparse");
    cr_expect(f->attention[2]->forward == attn_bs_forward);
    cr_expect(f->attention[2]->backward == attn_bs_backward);
    cr_expect_str_eq(f->attention[3]->name, "smallcache");
    cr_expect(f->attention[3]->forward == attn_smallcache_forward);
    cr_expect(f->attention[3]->backward == attn_smallcache_backward);
    cr_expect(f->attention_decode == attn_decode_forward);
    cr_expect(f->alloc && f->free && f->upload && f->download && f->zero);
    cr_expect(f->encoder_forward && f->encoder_backward && f->layernorm_forward &&
              f->layernorm_backward && f->matmul_forward && f->matmul_backward);
    cr_expect(f->gelu_forward && f->gelu_backward && f->residual_forward &&
              f->crossentropy_forward && f->crossentropy_backward);
    cr_expect(f->adamw_update && f->sumsq && f->scale);
}

Test(ops_cpu, memory) {
    const pb_ops *o = ops();
    size_t n = 1000;
    float *p = o->alloc(n * sizeof(float));
    cr_expect((uintptr_t)p % 64 == 0, "alloc is not 64-byte aligned");
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++) nonzero += p[i] != 0.0f;
    cr_expect(nonzero == 0, "alloc is not zeroed");
    float host[1000], back[1000];
    for (size_t i = 0; i < n; i++) host[i] = (float)i * 0.5f - 3.0f;
    o->upload(p, host, sizeof(host));
    o->download(back, p, sizeof(back));
    expect_bits_equal("upload/download", host, back, sizeof(host));
    o->zero(p + 10, 20 * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float want = (i >= 10 && i < 30) ? 0.0f : host[i];
        if (p[i] != want) {
            cr_expect(0, "zero: [%zu] is %g, want %g", i, p[i], want);
            break;
        }
    }
    o->free(p);
}

// ----------------------------------------------------------------------------
// matmul: out (N,OC) = inp (N,IC) @ weight^T (OC,IC) + bias (OC)

typedef struct {
    int N, IC, OC;
    double *inp, *weight, *bias, *R;  // bias may be NULL
    double *out;
} matmul_ctx;

static void matmul_ref(matmul_ctx *c) {
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->OC; o++) {
            double s = c->bias ? c->bias[o] : 0.0;
            for (int k = 0; k < c->IC; k++)
                s += c->inp[(size_t)n * c->IC + k] * c->weight[(size_t)o * c->IC + k];
            c->out[(size_t)n * c->OC + o] = s;
        }
}

static double matmul_loss(void *ctx) {
    matmul_ctx *c = ctx;
    matmul_ref(c);
    return dot(c->out, c->R, (size_t)c->N * c->OC);
}

// Forward against the double forward; backward against the closed form in double
// (dinp = R W, dweight = R^T inp, dbias = column sums of R) everywhere, and against finite
// differences at every fd_stride-th entry.
static void check_matmul(int N, int IC, int OC, int with_bias, size_t fd_stride) {
    const pb_ops *o = ops();
    uint64_t seed = 1000 + N * 7 + IC * 13 + OC;
    size_t nin = (size_t)N * IC, nw = (size_t)OC * IC, nout = (size_t)N * OC;
    float *inp = fbuf(nin, -1, 1, &seed), *weight = fbuf(nw, -1, 1, &seed);
    float *bias = with_bias ? fbuf(OC, -1, 1, &seed) : NULL;
    float *R = fbuf(nout, -1, 1, &seed), *out = fbuf(nout, 0, 0, &seed);
    float *dinp = fbuf(nin, 0, 0, &seed), *dweight = fbuf(nw, 0, 0, &seed);
    float *dbias = with_bias ? fbuf(OC, 0, 0, &seed) : NULL;

    matmul_ctx c = {N, IC, OC, to_double(inp, nin), to_double(weight, nw),
                    with_bias ? to_double(bias, OC) : NULL, to_double(R, nout),
                    pb_malloc(nout * sizeof(double))};
    char what[128];

    o->matmul_forward(out, inp, weight, bias, N, IC, OC);
    matmul_ref(&c);
    snprintf(what, sizeof what, "matmul %dx%dx%d bias=%d out", N, IC, OC, with_bias);
    expect_close(what, out, c.out, nout, FWD_ATOL, FWD_RTOL);

    o->matmul_backward(dinp, dweight, dbias, R, inp, weight, N, IC, OC);

    double *ref_dinp = pb_calloc(nin, sizeof(double)), *ref_dw = pb_calloc(nw, sizeof(double));
    double *ref_db = pb_calloc(OC, sizeof(double));
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++) {
            double r = c.R[(size_t)n * OC + oc];
            ref_db[oc] += r;
            for (int k = 0; k < IC; k++) {
                ref_dinp[(size_t)n * IC + k] += r * c.weight[(size_t)oc * IC + k];
                ref_dw[(size_t)oc * IC + k] += r * c.inp[(size_t)n * IC + k];
            }
        }
    snprintf(what, sizeof what, "matmul %dx%dx%d dinp (closed form)", N, IC, OC);
    expect_close(what, dinp, ref_dinp, nin, GRAD_ATOL, GRAD_RTOL);
    snprintf(what, sizeof what, "matmul %dx%dx%d dweight (closed form)", N, IC, OC);
    expect_close(what, dweight, ref_dw, nw, GRAD_ATOL, GRAD_RTOL);
    if (with_bias) {
        snprintf(what, sizeof what, "matmul %dx%dx%d dbias (closed form)", N, IC, OC);
        expect_close(what, dbias, ref_db, OC, GRAD_ATOL, GRAD_RTOL);
    }

    snprintf(what, sizeof what, "matmul %dx%dx%d dinp (fd)", N, IC, OC);
    check_grad(what, matmul_loss, &c, c.inp, dinp, nin, fd_stride);
    snprintf(what, sizeof what, "matmul %dx%dx%d dweight (fd)", N, IC, OC);
    check_grad(what, matmul_loss, &c, c.weight, dweight, nw, fd_stride);
    if (with_bias) {
        snprintf(what, sizeof what, "matmul %dx%dx%d dbias (fd)", N, IC, OC);
        size_t bstride = fd_stride > 1 ? (size_t)OC / 8 + 1 : 1;
        check_grad(what, matmul_loss, &c, c.bias, dbias, OC, bstride);
    }

    free(ref_dinp), free(ref_dw), free(ref_db);
    free(c.inp), free(c.weight), free(c.bias), free(c.R), free(c.out);
    o->free(inp), o->free(weight), o->free(bias), o->free(R), o->free(out);
    o->free(dinp), o->free(dweight), o->free(dbias);
}

// Odd sizes, none a multiple of the 6x16 tile: every tile is an edge case somewhere.
Test(ops_cpu, matmul_odd_sizes_bias) { check_matmul(37, 29, 53, 1, 1); }
Test(ops_cpu, matmul_odd_sizes_no_bias) { check_matmul(37, 29, 53, 0, 1); }
// Every k range (IC forward, OC for dinp, N for dweight) spans two k slices of 256, and the
// row counts span several row blocks.
Test(ops_cpu, matmul_multi_block, .timeout = 60) { check_matmul(263, 270, 259, 1, 9001); }
// More output columns than one column block (2048), k ranges of 1 .. 9 slices.
Test(ops_cpu, matmul_wide, .timeout = 60) { check_matmul(13, 19, 2100, 1, 997); }
// A single row and a single input channel.
Test(ops_cpu, matmul_degenerate) {
    check_matmul(1, 1, 17, 1, 1);
    check_matmul(5, 1, 1, 1, 1);
}

// ----------------------------------------------------------------------------
// encoder: out (B,T,C) = wte[tok] (Vp,C) + wpe[t] (maxT,C)

typedef struct {
    int B, T, C;
    const int32_t *tok;
    double *wte, *wpe, *R, *out;
} encoder_ctx;

static void encoder_ref(encoder_ctx *c) {
    for (int b = 0; b < c->B; b++)
        for (int t = 0; t < c->T; t++)
            for (int ch = 0; ch < c->C; ch++) {
                size_t bt = (size_t)b * c->T + t;
                c->out[bt * c->C + ch] =
                    c->wte[(size_t)c->tok[bt] * c->C + ch] + c->wpe[(size_t)t * c->C + ch];
            }
}

static double encoder_loss(void *ctx) {
    encoder_ctx *c = ctx;
    encoder_ref(c);
    return dot(c->out, c->R, (size_t)c->B * c->T * c->C);
}

Test(ops_cpu, encoder_repeated_tokens) {
    const pb_ops *o = ops();
    enum { B = 3, T = 5, C = 70, Vp = 11, maxT = 7 };  // C spans two channel strips
    // token 3 five times, 1 four times, in different rows and positions; 2, 4, 6, 8, 9 unused
    static const int32_t tok[B * T] = {3, 1, 3, 3, 0, 7, 3, 1, 1, 10, 3, 5, 1, 5, 0};
    uint64_t seed = 7;
    float *wte = fbuf(Vp * C, -1, 1, &seed), *wpe = fbuf(maxT * C, -1, 1, &seed);
    float *R = fbuf(B * T * C, -1, 1, &seed), *out = fbuf(B * T * C, 0, 0, &seed);
    float *dwte = fbuf(Vp * C, 0, 0, &seed), *dwpe = fbuf(maxT * C, 0, 0, &seed);
    encoder_ctx c = {B, T, C, tok, to_double(wte, Vp * C), to_double(wpe, maxT * C),
                     to_double(R, B * T * C), pb_malloc(B * T * C * sizeof(double))};

    o->encoder_forward(out, tok, NULL, wte, wpe, NULL, B, T, C);
    encoder_ref(&c);
    expect_close("encoder out", out, c.out, B * T * C, FWD_ATOL, FWD_RTOL);

    o->encoder_backward(dwte, dwpe, NULL, R, tok, NULL, B, T, C);
    check_grad("encoder dwte", encoder_loss, &c, c.wte, dwte, Vp * C, 1);
    check_grad("encoder dwpe", encoder_loss, &c, c.wpe, dwpe, maxT * C, 1);
    // rows of unused tokens and unused positions must stay exactly zero
    size_t nonzero = 0;
    for (int ch = 0; ch < C; ch++) nonzero += dwte[2 * C + ch] != 0.0f;
    for (int ch = 0; ch < C; ch++) nonzero += dwpe[6 * C + ch] != 0.0f;
    cr_expect(nonzero == 0, "encoder: gradient leaked into unused rows");

    free(c.wte), free(c.wpe), free(c.R), free(c.out);
    o->free(wte), o->free(wpe), o->free(R), o->free(out), o->free(dwte), o->free(dwpe);
}

// ----------------------------------------------------------------------------
// layernorm: out (N,C) = (inp - mean) / sqrt(var + eps) * weight + bias

typedef struct {
    int N, C;
    double eps;  // the op's eps, as the float the op gets
    double *inp, *weight, *bias, *R;
    double *out, *mean, *rstd;
} layernorm_ctx;

static void layernorm_ref(layernorm_ctx *c) {
    for (int n = 0; n < c->N; n++) {
        const double *x = c->inp + (size_t)n * c->C;
        double m = 0.0, v = 0.0;
        for (int i = 0; i < c->C; i++) m += x[i];
        m /= c->C;
        for (int i = 0; i < c->C; i++) v += (x[i] - m) * (x[i] - m);
        v /= c->C;
        double s = 1.0 / sqrt(v + c->eps);
        for (int i = 0; i < c->C; i++)
            c->out[(size_t)n * c->C + i] = (x[i] - m) * s * c->weight[i] + c->bias[i];
        c->mean[n] = m;
        c->rstd[n] = s;
    }
}

static double layernorm_loss(void *ctx) {
    layernorm_ctx *c = ctx;
    layernorm_ref(c);
    return dot(c->out, c->R, (size_t)c->N * c->C);
}

Test(ops_cpu, layernorm) {
    const pb_ops *o = ops();
    enum { N = 5, C = 67 };  // C spans two channel strips
    uint64_t seed = 11;
    float *inp = fbuf(N * C, -1, 1, &seed);
    for (int n = 0; n < N; n++)  // rows with different means and spreads
        for (int i = 0; i < C; i++) inp[n * C + i] = inp[n * C + i] * (0.5f + n) + 0.7f * n;
    float *weight = fbuf(C, 0.5, 1.5, &seed), *bias = fbuf(C, -0.5, 0.5, &seed);
    float *R = fbuf(N * C, -1, 1, &seed), *out = fbuf(N * C, 0, 0, &seed);
    float *mean = fbuf(N, 0, 0, &seed), *rstd = fbuf(N, 0, 0, &seed);
    float *dinp = fbuf(N * C, 0, 0, &seed), *dweight = fbuf(C, 0, 0, &seed),
          *dbias = fbuf(C, 0, 0, &seed);
    layernorm_ctx c = {N, C, 1e-5f, to_double(inp, N * C), to_double(weight, C), to_double(bias, C),
                       to_double(R, N * C), pb_malloc(N * C * sizeof(double)),
                       pb_malloc(N * sizeof(double)), pb_malloc(N * sizeof(double))};

    o->layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, 1e-5f);
    layernorm_ref(&c);
    expect_close("layernorm out", out, c.out, N * C, FWD_ATOL, FWD_RTOL);
    expect_close("layernorm mean", mean, c.mean, N, FWD_ATOL, FWD_RTOL);
    expect_close("layernorm rstd", rstd, c.rstd, N, FWD_ATOL, FWD_RTOL);

    o->layernorm_backward(dinp, dweight, dbias, R, inp, weight, mean, rstd, N, C);
    check_grad("layernorm dinp", layernorm_loss, &c, c.inp, dinp, N * C, 1);
    check_grad("layernorm dweight", layernorm_loss, &c, c.weight, dweight, C, 1);
    check_grad("layernorm dbias", layernorm_loss, &c, c.bias, dbias, C, 1);

    free(c.inp), free(c.weight), free(c.bias), free(c.R), free(c.out), free(c.mean),
        free(c.rstd);
    o->free(inp), o->free(weight), o->free(bias), o->free(R), o->free(out), o->free(mean),
        o->free(rstd), o->free(dinp), o->free(dweight), o->free(dbias);
}

// BERT's eps = 1e-12. Rows 0 and 1 have variance ~3e-7 (spread 1e-3, means 2e-3 and
// -1e-3, kept near 0 so that fp32 resolves the deviations): a kernel that used GPT-2's 1e-5
// instead of the eps it is given gets rstd 6x too small there. Row 2 (spread 1e-6, variance
// ~3e-13) has eps and variance of one size: eps = 0 would make its rstd 2x too large. Row 3
// is an ordinary one. The test first checks that its inputs do tell those apart.
// dinp is checked against finite differences with h = 1e-3 * the row's standard deviation
// (fd_grad's fixed h = 1e-5 is 10x the whole spread of row 2): the truncation error is then
// ~1e-6 relative and the rounding error ~1e-16 |L| / h, ~1e-6 absolute against dinp entries
// of size up to ~1e6 (rstd), so GRAD_ATOL / GRAD_RTOL still measure the op.
Test(ops_cpu, layernorm_eps_1e12) {
    const pb_ops *o = ops();
    enum { N = 4, C = 67 };
    const float eps = 1e-12f;
    static const double center[N] = {2e-3, -1e-3, 0.0, 0.3}, spread[N] = {1e-3, 1e-3, 1e-6, 1.0};
    uint64_t seed = 59;
    float *inp = fbuf(N * C, 0, 0, &seed);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++)
            inp[n * C + i] = (float)(center[n] + spread[n] * rand_uniform(&seed, -1, 1));
    float *weight = fbuf(C, 0.5, 1.5, &seed), *bias = fbuf(C, -0.5, 0.5, &seed);
    float *R = fbuf(N * C, -1, 1, &seed), *out = fbuf(N * C, 0, 0, &seed);
    float *mean = fbuf(N, 0, 0, &seed), *rstd = fbuf(N, 0, 0, &seed);
    float *dinp = fbuf(N * C, 0, 0, &seed), *dweight = fbuf(C, 0, 0, &seed),
          *dbias = fbuf(C, 0, 0, &seed);
    layernorm_ctx c = {N, C, eps, to_double(inp, N * C), to_double(weight, C),
                       to_double(bias, C), to_double(R, N * C), pb_malloc(N * C * sizeof(double)),
                       pb_malloc(N * sizeof(double)), pb_malloc(N * sizeof(double))};

    // the inputs tell eps = 1e-12 from 1e-5 (rows 0, 1) and from 0 (row 2) at FWD tolerance
    static const double wrong_eps[2] = {1e-5, 0.0};
    static const int rows_for[2][2] = {{0, 1}, {2, 2}};
    double rstd_eps[N];
    layernorm_ref(&c);
    memcpy(rstd_eps, c.rstd, sizeof rstd_eps);
    for (int w = 0; w < 2; w++) {
        c.eps = wrong_eps[w];
        layernorm_ref(&c);
        for (int k = 0; k < 2; k++) {
            int n = rows_for[w][k];
            double diff = fabs(c.rstd[n] - rstd_eps[n]);
            cr_assert(diff > 100 * (FWD_ATOL + FWD_RTOL * rstd_eps[n]),
                      "test inputs: eps %g and 1e-12 give row %d rstd %.9g and %.9g", wrong_eps[w],
                      n, c.rstd[n], rstd_eps[n]);
        }
    }
    c.eps = eps;

    o->layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
    layernorm_ref(&c);
    expect_close("layernorm eps=1e-12 out", out, c.out, N * C, FWD_ATOL, FWD_RTOL);
    expect_close("layernorm eps=1e-12 mean", mean, c.mean, N, FWD_ATOL, FWD_RTOL);
    expect_close("layernorm eps=1e-12 rstd", rstd, c.rstd, N, FWD_ATOL, FWD_RTOL);

    o->layernorm_backward(dinp, dweight, dbias, R, inp, weight, mean, rstd, N, C);
    size_t bad = 0, first = 0;
    double first_ref = 0.0;
    for (int n = 0; n < N; n++) {
        double h = 1e-3 / (c.rstd[n] > 0 ? c.rstd[n] : 1.0);  // ~1e-3 std: rstd ~ 1/std
        for (int i = 0; i < C; i++) {
            size_t j = (size_t)n * C + i;
            double x0 = c.inp[j];
            c.inp[j] = x0 + h;
            double lp = layernorm_loss(&c);
            c.inp[j] = x0 - h;
            double lm = layernorm_loss(&c);
            c.inp[j] = x0;
            double ref = (lp - lm) / (2.0 * h);
            if (!(fabs((double)dinp[j] - ref) <= GRAD_ATOL + GRAD_RTOL * fabs(ref)))
                if (bad++ == 0) first = j, first_ref = ref;
        }
    }
    cr_expect(bad == 0, "layernorm eps=1e-12 dinp: %zu of %d off, first [%zu]: got %.9g, want "
              "%.9g", bad, N * C, first, bad ? dinp[first] : 0.0f, first_ref);
    check_grad("layernorm eps=1e-12 dweight", layernorm_loss, &c, c.weight, dweight, C, 1);
    check_grad("layernorm eps=1e-12 dbias", layernorm_loss, &c, c.bias, dbias, C, 1);

    free(c.inp), free(c.weight), free(c.bias), free(c.R), free(c.out), free(c.mean),
        free(c.rstd);
    o->free(inp), o->free(weight), o->free(bias), o->free(R), o->free(out), o->free(mean),
        o->free(rstd), o->free(dinp), o->free(dweight), o->free(dbias);
}

// ----------------------------------------------------------------------------
// GELU (tanh approximation and erf) and residual, elementwise

typedef struct {
    size_t n;
    double *a, *b, *R, *out;  // gelu reads a only
} elementwise_ctx;

// tanh (GPT-2): 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2/pi); erf (BERT):
// x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); in double
static void gelu_ref(elementwise_ctx *c, pb_gelu kind) {
    const double k = sqrt(2.0 / M_PI);
    for (size_t i = 0; i < c->n; i++) {
        double x = c->a[i];
        c->out[i] = kind == PB_GELU_ERF ? 0.5 * x * (1.0 + erf(x / sqrt(2.0)))
                                        : 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
    }
}

static pb_gelu g_gelu_kind;  // the kind gelu_loss evaluates

static double gelu_loss(void *ctx) {
    elementwise_ctx *c = ctx;
    gelu_ref(c, g_gelu_kind);
    return dot(c->out, c->R, c->n);
}

// The inputs tell the two kinds apart: they differ by up to 4.7e-4 (near x = -2.8), 40x FWD's
// tolerance there, and their derivatives by up to 8.4e-4 (near x = -2.1), 5x GRAD's; checked
// first, so that an op that ignored its kind argument fails.
static void expect_kinds_apart(elementwise_ctx *c) {
    double *tanh_out = pb_malloc(c->n * sizeof(double));
    gelu_ref(c, PB_GELU_TANH);
    memcpy(tanh_out, c->out, c->n * sizeof(double));
    gelu_ref(c, PB_GELU_ERF);
    size_t apart = 0;
    for (size_t i = 0; i < c->n; i++)
        apart += fabs(tanh_out[i] - c->out[i]) > 10 * (FWD_ATOL + FWD_RTOL * fabs(c->out[i]));
    cr_assert(apart >= 10, "test inputs: tanh and erf GELU differ beyond 10x tolerance at only "
              "%zu of %zu", apart, c->n);
    apart = 0;  // and their derivatives (closed forms), beyond GRAD's tolerance
    for (size_t i = 0; i < c->n; i++) {
        double t = c->a[i], k = sqrt(2.0 / M_PI), th = tanh(k * (t + 0.044715 * t * t * t));
        double d_tanh = 0.5 * (1 + th) + 0.5 * t * (1 - th * th) * k * (1 + 3 * 0.044715 * t * t);
        double d_erf = 0.5 * (1 + erf(t / sqrt(2.0))) + t * exp(-0.5 * t * t) / sqrt(2 * M_PI);
        apart += fabs(d_tanh - d_erf) > GRAD_ATOL + GRAD_RTOL * fabs(d_erf);
    }
    cr_assert(apart >= 10, "test inputs: the tanh and erf GELU derivatives differ beyond "
              "tolerance at only %zu of %zu", apart, c->n);
    free(tanh_out);
}

// Forward against the double reference, backward against central finite differences of it.
static void gelu_case(pb_gelu kind, const char *name) {
    const pb_ops *o = ops();
    enum { n = 1001 };
    uint64_t seed = 13;
    float *x = fbuf(n, -6, 6, &seed), *R = fbuf(n, -1, 1, &seed);
    float *out = fbuf(n, 0, 0, &seed), *dx = fbuf(n, 0, 0, &seed);
    x[0] = 0.0f, x[1] = -10.0f, x[2] = 10.0f;  // the middle and both saturated ends
    elementwise_ctx c = {n, to_double(x, n), NULL, to_double(R, n), pb_malloc(n * sizeof(double))};
    expect_kinds_apart(&c);

    char what[64];
    o->gelu_forward(out, x, n, kind);
    gelu_ref(&c, kind);
    snprintf(what, sizeof what, "%s out", name);
    expect_close(what, out, c.out, n, FWD_ATOL, FWD_RTOL);
    o->gelu_backward(dx, x, R, n, kind);
    g_gelu_kind = kind;
    snprintf(what, sizeof what, "%s dinp", name);
    check_grad(what, gelu_loss, &c, c.a, dx, n, 1);

    free(c.a), free(c.R), free(c.out);
    o->free(x), o->free(R), o->free(out), o->free(dx);
}

Test(ops_cpu, gelu) { gelu_case(PB_GELU_TANH, "gelu"); }
Test(ops_cpu, gelu_erf) { gelu_case(PB_GELU_ERF, "gelu erf"); }

static void residual_ref(elementwise_ctx *c) {
    for (size_t i = 0; i < c->n; i++) c->out[i] = c->a[i] + c->b[i];
}

static double residual_loss(void *ctx) {
    elementwise_ctx *c = ctx;
    residual_ref(c);
    return dot(c->out, c->R, c->n);
}

Test(ops_cpu, residual) {
    const pb_ops *o = ops();
    enum { n = 257 };
    uint64_t seed = 17;
    float *a = fbuf(n, -1, 1, &seed), *b = fbuf(n, -1, 1, &seed), *R = fbuf(n, -1, 1, &seed);
    float *out = fbuf(n, 0, 0, &seed), *da = fbuf(n, 0, 0, &seed), *db = fbuf(n, 0, 0, &seed);
    elementwise_ctx c = {n, to_double(a, n), to_double(b, n), to_double(R, n),
                         pb_malloc(n * sizeof(double))};

    o->residual_forward(out, a, b, n);
    residual_ref(&c);
    expect_close("residual out", out, c.out, n, FWD_ATOL, FWD_RTOL);
    (void)residual_loss, (void)da, (void)db;

    free(c.a), free(c.b), free(c.R), free(c.out);
    o->free(a), o->free(b), o->free(R), o->free(out), o->free(da), o->free(db);
}

// ----------------------------------------------------------------------------
// crossentropy: losses (N) over the first V of Vp columns; backward scales by one dloss, so
// the loss for the gradient check is L = dloss * sum_n losses[n].

typedef struct {
    int N, V, Vp;
    const int32_t *targets;
    double *logits, dloss;
    double *losses;
} ce_ctx;

static void ce_ref(ce_ctx *c) {
    for (int n = 0; n < c->N; n++) {
        const double *row = c->logits + (size_t)n * c->Vp;
        int t = c->targets[n];
        if (t < 0) {
            c->losses[n] = 0.0;
            continue;
        }
        double mx = row[0], s = 0.0;
        for (int i = 1; i < c->V; i++) mx = fmax(mx, row[i]);
        for (int i = 0; i < c->V; i++) s += exp(row[i] - mx);
        c->losses[n] = log(s) + mx - row[t];
    }
}

static double ce_loss(void *ctx) {
    ce_ctx *c = ctx;
    ce_ref(c);
    double s = 0.0;
    for (int n = 0; n < c->N; n++) s += c->losses[n];
    return c->dloss * s;
}

Test(ops_cpu, crossentropy_padding_and_ignored_targets) {
    const pb_ops *o = ops();
    enum { N = 6, V = 37, Vp = 128 };
    static const int32_t targets[N] = {5, -1, 0, 36, -1, 17};
    const float dloss = 0.37f;
    uint64_t seed = 19;
    float *logits = fbuf(N * Vp, -4, 4, &seed);
    // padding columns hold values that would dominate the softmax if they took part
    for (int n = 0; n < N; n++)
        for (int i = V; i < Vp; i++) logits[n * Vp + i] = 100.0f + i;
    float *losses = fbuf(N, 0, 0, &seed), *dlogits = fbuf(N * Vp, 0, 0, &seed);
    for (int i = 0; i < N * Vp; i++) dlogits[i] = 7.0f;  // backward must overwrite this
    ce_ctx c = {N, V, Vp, targets, to_double(logits, N * Vp), dloss,
                pb_malloc(N * sizeof(double))};

    o->crossentropy_forward(losses, logits, targets, N, V, Vp);
    ce_ref(&c);
    expect_close("crossentropy losses", losses, c.losses, N, FWD_ATOL, FWD_RTOL);
    cr_expect(losses[1] == 0.0f && losses[4] == 0.0f, "ignored targets must give loss 0");

    o->crossentropy_backward(dlogits, logits, targets, dloss, N, V, Vp);
    check_grad("crossentropy dlogits", ce_loss, &c, c.logits, dlogits, N * Vp, 1);
    size_t nonzero = 0;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < Vp; i++)
            nonzero += (i >= V || targets[n] < 0) && dlogits[n * Vp + i] != 0.0f;
    cr_expect(nonzero == 0, "padding columns and ignored rows must get exactly 0");

    // in place (dlogits == logits) gives the same bits
    float *inplace = fcopy(logits, N * Vp);
    o->crossentropy_backward(inplace, inplace, targets, dloss, N, V, Vp);
    expect_bits_equal("crossentropy backward in place", inplace, dlogits, N * Vp * sizeof(float));

    free(c.logits), free(c.losses);
    o->free(logits), o->free(losses), o->free(dlogits), o->free(inplace);
}

// Logits around 1000: exp() of them overflows fp32, so only a max-shifted softmax passes.
Test(ops_cpu, crossentropy_large_logits) {
    const pb_ops *o = ops();
    enum { N = 3, V = 50, Vp = 64 };
    static const int32_t targets[N] = {0, 49, 20};
    uint64_t seed = 23;
    float *logits = fbuf(N * Vp, 995, 1005, &seed);
    float *losses = fbuf(N, 0, 0, &seed), *dlogits = fbuf(N * Vp, 0, 0, &seed);
    ce_ctx c = {N, V, Vp, targets, to_double(logits, N * Vp), 1.0, pb_malloc(N * sizeof(double))};

    o->crossentropy_forward(losses, logits, targets, N, V, Vp);
    ce_ref(&c);
    expect_close("crossentropy large losses", losses, c.losses, N, FWD_ATOL, FWD_RTOL);
    o->crossentropy_backward(dlogits, logits, targets, 1.0f, N, V, Vp);
    check_grad("crossentropy large dlogits", ce_loss, &c, c.logits, dlogits, N * Vp, 1);

    free(c.logits), free(c.losses);
    o->free(logits), o->free(losses), o->free(dlogits);
}

// ----------------------------------------------------------------------------
// AdamW

// A constant gradient g has a closed form: m_t / (1 - b1^t) = g and v_t / (1 - b2^t) = g^2
// exactly, so each step is p <- a p - c with a = 1 - lr wd, c = lr g / (|g| + eps), and after
// t steps p_t = a^t p_0 - c (1 - a^t) / (1 - a).
Test(ops_cpu, adamw_constant_gradient_closed_form) {
    const pb_ops *o = ops();
    enum { n = 100, steps = 6 };
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
    uint64_t seed = 29;
    float *p = fbuf(n, -1, 1, &seed), *g = fbuf(n, -1, 1, &seed);
    float *m = fbuf(n, 0, 0, &seed), *v = fbuf(n, 0, 0, &seed);
    g[0] = 0.0f;  // no gradient: only the decay acts
    double *p0 = to_double(p, n), *ref = pb_malloc(n * sizeof(double));
    size_t end = n;
    for (int t = 1; t <= steps; t++) o->adamw_update(p, g, m, v, &end, &wd, 1, lr, b1, b2, eps, t);
    double a = 1.0 - (double)lr * wd;
    for (int i = 0; i < n; i++) {
        double c = (double)lr * g[i] / (fabs((double)g[i]) + eps);
        ref[i] = pow(a, steps) * p0[i] - c * (1.0 - pow(a, steps)) / (1.0 - a);
    }
    // fp32 update of O(1) parameters, a few roundings per step
    expect_close("adamw closed form", p, ref, n, 1e-6, 1e-5);
    free(p0), free(ref);
    o->free(p), o->free(g), o->free(m), o->free(v);
}

// Changing gradients: the recurrences of ops.h replayed in double, step by step, over four
// segments with their own weight decay (two without), as a model's tensors are updated.
Test(ops_cpu, adamw_recurrence) {
    const pb_ops *o = ops();
    enum { n = 100, steps = 5 };
    const float lr = 3e-3f, b1 = 0.8f, b2 = 0.95f, eps = 1e-6f;
    const size_t ends[4] = {7, 40, 41, n};
    const float wds[4] = {0.05f, 0.0f, 0.2f, 0.0f};
    uint64_t seed = 31;
    float *p = fbuf(n, -1, 1, &seed), *g = fbuf(n, 0, 0, &seed);
    float *m = fbuf(n, 0, 0, &seed), *v = fbuf(n, 0, 0, &seed);
    double *rp = to_double(p, n), *rm = pb_calloc(n, sizeof(double)),
           *rv = pb_calloc(n, sizeof(double));
    for (int t = 1; t <= steps; t++) {
        for (int i = 0; i < n; i++) g[i] = (float)rand_uniform(&seed, -2, 2);
        o->adamw_update(p, g, m, v, ends, wds, 4, lr, b1, b2, eps, t);
        for (int i = 0; i < n; i++) {
            double wd = wds[i < 7 ? 0 : i < 40 ? 1 : i < 41 ? 2 : 3];
            rm[i] = b1 * rm[i] + (1.0 - b1) * g[i];
            rv[i] = b2 * rv[i] + (1.0 - b2) * (double)g[i] * g[i];
            double mhat = rm[i] / (1.0 - pow(b1, t)), vhat = rv[i] / (1.0 - pow(b2, t));
            rp[i] -= lr * (mhat / (sqrt(vhat) + eps) + wd * rp[i]);
        }
        char what[64];
        snprintf(what, sizeof what, "adamw step %d param", t);
        expect_close(what, p, rp, n, 1e-6, 1e-5);
        snprintf(what, sizeof what, "adamw step %d m", t);
        expect_close(what, m, rm, n, 1e-7, 1e-5);
        snprintf(what, sizeof what, "adamw step %d v", t);
        expect_close(what, v, rv, n, 1e-7, 1e-5);
    }
    free(rp), free(rm), free(rv);
    o->free(p), o->free(g), o->free(m), o->free(v);
}

// ----------------------------------------------------------------------------
// sumsq and scale

Test(ops_cpu, sumsq_against_double) {
    const pb_ops *o = ops();
    size_t n = 3 * 65536 + 12345;  // several chunks and a ragged tail
    uint64_t seed = 37;
    float *x = fbuf(n, -3, 3, &seed);
    double ref = 0.0;
    for (size_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
    double got = o->sumsq(x, n);
    // both sum exact double squares; only the order differs: ~n * 1e-16 relative at worst
    cr_expect(fabs(got - ref) <= 1e-11 * ref, "sumsq: got %.17g, want %.17g", got, ref);
    cr_expect(o->sumsq(x, 0) == 0.0, "sumsq of nothing");
    cr_expect(o->sumsq(x, 1) == (double)x[0] * x[0], "sumsq of one");
    o->free(x);
}

// 4096^2 = 2^24, where fp32 stops counting: 1000 more ones vanish in a float sum.
Test(ops_cpu, sumsq_accumulates_in_double) {
    const pb_ops *o = ops();
    size_t n = 1001;
    float *x = fbuf(n, 0, 0, NULL);
    x[0] = 4096.0f;
    for (size_t i = 1; i < n; i++) x[i] = 1.0f;
    double got = o->sumsq(x, n);
    cr_expect(got == 16777216.0 + 1000.0, "sumsq: got %.17g, want 16778216", got);
    o->free(x);
}

Test(ops_cpu, scale) {
    const pb_ops *o = ops();
    size_t n = 40000;  // big enough to run threaded
    uint64_t seed = 41;
    float *x = fbuf(n, -5, 5, &seed), *x0 = fcopy(x, n);
    o->scale(x, 0.3f, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += x[i] != x0[i] * 0.3f;
    cr_expect(bad == 0, "scale: %zu of %zu wrong", bad, n);
    o->free(x), o->free(x0);
}

// ----------------------------------------------------------------------------
// contract: every backward but crossentropy's adds into its gradients, so calling it twice
// on zeroed buffers gives twice the gradient (up to the rounding of the second addition)

static void expect_doubled(const char *what, const float *once, const float *twice, size_t n) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        double want = 2.0 * once[i];
        if (!(fabs(twice[i] - want) <= 1e-6 + 1e-5 * fabs(want))) {
            if (bad++ == 0) first = i;
        }
    }
    cr_expect(bad == 0, "%s: second call did not add: [%zu] once %.9g, twice %.9g", what, first,
              bad ? once[first] : 0.0f, bad ? twice[first] : 0.0f);
}

Test(ops_cpu, backward_accumulates) {
    const pb_ops *o = ops();
    uint64_t seed = 43;
    {  // matmul, on more than one block
        enum { N = 150, IC = 40, OC = 70 };
        float *inp = fbuf(N * IC, -1, 1, &seed), *w = fbuf(OC * IC, -1, 1, &seed);
        float *dout = fbuf(N * OC, -1, 1, &seed);
        float *g[2][3];
        for (int r = 0; r < 2; r++) {
            g[r][0] = fbuf(N * IC, 0, 0, &seed), g[r][1] = fbuf(OC * IC, 0, 0, &seed);
            g[r][2] = fbuf(OC, 0, 0, &seed);
            for (int call = 0; call <= r; call++)
                o->matmul_backward(g[r][0], g[r][1], g[r][2], dout, inp, w, N, IC, OC);
        }
        expect_doubled("matmul dinp", g[0][0], g[1][0], N * IC);
        expect_doubled("matmul dweight", g[0][1], g[1][1], OC * IC);
        expect_doubled("matmul dbias", g[0][2], g[1][2], OC);
        free_bufs((float *[]){inp, w, dout}, 3);
        free_bufs(&g[0][0], 6);
    }
    {  // layernorm
        enum { N = 9, C = 70 };
        float *inp = fbuf(N * C, -1, 1, &seed), *w = fbuf(C, 0.5, 1.5, &seed);
        float *b = fbuf(C, -1, 1, &seed), *dout = fbuf(N * C, -1, 1, &seed);
        float *out = fbuf(N * C, 0, 0, &seed), *mean = fbuf(N, 0, 0, &seed),
              *rstd = fbuf(N, 0, 0, &seed);
        o->layernorm_forward(out, mean, rstd, inp, w, b, N, C, 1e-5f);
        float *g[2][3];
        for (int r = 0; r < 2; r++) {
            g[r][0] = fbuf(N * C, 0, 0, &seed), g[r][1] = fbuf(C, 0, 0, &seed);
            g[r][2] = fbuf(C, 0, 0, &seed);
            for (int call = 0; call <= r; call++)
                o->layernorm_backward(g[r][0], g[r][1], g[r][2], dout, inp, w, mean, rstd, N, C);
        }
        expect_doubled("layernorm dinp", g[0][0], g[1][0], N * C);
        expect_doubled("layernorm dweight", g[0][1], g[1][1], C);
        expect_doubled("layernorm dbias", g[0][2], g[1][2], C);
        free_bufs((float *[]){inp, w, b, dout, out, mean, rstd}, 7);
        free_bufs(&g[0][0], 6);
    }
    {  // encoder, with a repeated token
        enum { B = 2, T = 3, C = 8, Vp = 5 };
        static const int32_t tok[B * T] = {1, 4, 1, 1, 0, 2};
        float *dout = fbuf(B * T * C, -1, 1, &seed);
        float *g[2][2];
        for (int r = 0; r < 2; r++) {
            g[r][0] = fbuf(Vp * C, 0, 0, &seed), g[r][1] = fbuf(T * C, 0, 0, &seed);
            for (int call = 0; call <= r; call++)
                o->encoder_backward(g[r][0], g[r][1], NULL, dout, tok, NULL, B, T, C);
        }
        expect_doubled("encoder dwte", g[0][0], g[1][0], Vp * C);
        expect_doubled("encoder dwpe", g[0][1], g[1][1], T * C);
        o->free(dout);
        free_bufs(&g[0][0], 4);
    }
    {  // gelu
        enum { n = 300 };
        float *x = fbuf(n, -3, 3, &seed), *dout = fbuf(n, -1, 1, &seed);
        float *g[2][3];
        for (int r = 0; r < 2; r++) {
            for (int k = 0; k < 3; k++) g[r][k] = fbuf(n, 0, 0, &seed);
            for (int call = 0; call <= r; call++) {
                o->gelu_backward(g[r][0], x, dout, n, PB_GELU_TANH);
                o->gelu_backward(g[r][1], x, dout, n, PB_GELU_ERF);
            }
        }
        expect_doubled("gelu dinp", g[0][0], g[1][0], n);
        expect_doubled("gelu erf dinp", g[0][1], g[1][1], n);
        o->free(x), o->free(dout);
        free_bufs(&g[0][0], 6);
    }
}

// crossentropy_backward overwrites instead: a second call changes nothing.
Test(ops_cpu, crossentropy_backward_overwrites) {
    const pb_ops *o = ops();
    enum { N = 4, V = 10, Vp = 16 };
    static const int32_t targets[N] = {3, -1, 9, 0};
    uint64_t seed = 47;
    float *logits = fbuf(N * Vp, -2, 2, &seed), *d = fbuf(N * Vp, 0, 0, &seed);
    o->crossentropy_backward(d, logits, targets, 0.5f, N, V, Vp);
    float *once = fcopy(d, N * Vp);
    o->crossentropy_backward(d, logits, targets, 0.5f, N, V, Vp);
    expect_bits_equal("crossentropy backward twice", once, d, N * Vp * sizeof(float));
    o->free(logits), o->free(d), o->free(once);
}

// ----------------------------------------------------------------------------
// determinism: the same bits whatever the number of threads (sizes large enough that every
// op actually runs threaded)

Test(ops_cpu, deterministic_across_thread_counts, .timeout = 60) {
    const pb_ops *o = ops();
    uint64_t seed = 53;
    enum { N = 300, IC = 270, OC = 290, C = 300, B = 4, T = 64, EC = 128, Vp = 7 };
    float *inp = fbuf(N * IC, -1, 1, &seed), *w = fbuf(OC * IC, -1, 1, &seed);
    float *bias = fbuf(OC, -1, 1, &seed), *dout = fbuf(N * OC, -1, 1, &seed);
    float *lin = fbuf(N * C, -1, 1, &seed), *lw = fbuf(C, 0.5, 1.5, &seed);
    float *lb = fbuf(C, -1, 1, &seed), *ldout = fbuf(N * C, -1, 1, &seed);
    float *lout = fbuf(N * C, 0, 0, &seed), *mean = fbuf(N, 0, 0, &seed),
          *rstd = fbuf(N, 0, 0, &seed);
    float *edout = fbuf(B * T * EC, -1, 1, &seed);
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 5 + i / 7) % Vp;  // a small vocab: repeats
    size_t nsq = 1000003;
    float *sq = fbuf(nsq, -1, 1, &seed);

    static const int threads[3] = {1, 2, 3};
    float *r[3][9];
    double sumsq[3];
    for (int k = 0; k < 3; k++) {
        omp_set_num_threads(threads[k]);
        r[k][0] = fbuf(N * OC, 0, 0, &seed);
        o->matmul_forward(r[k][0], inp, w, bias, N, IC, OC);
        r[k][1] = fbuf(N * IC, 0, 0, &seed), r[k][2] = fbuf(OC * IC, 0, 0, &seed);
        r[k][3] = fbuf(OC, 0, 0, &seed);
        o->matmul_backward(r[k][1], r[k][2], r[k][3], dout, inp, w, N, IC, OC);
        o->layernorm_forward(lout, mean, rstd, lin, lw, lb, N, C, 1e-5f);
        r[k][4] = fbuf(N * C, 0, 0, &seed), r[k][5] = fbuf(C, 0, 0, &seed);
        r[k][6] = fbuf(C, 0, 0, &seed);
        o->layernorm_backward(r[k][4], r[k][5], r[k][6], ldout, lin, lw, mean, rstd, N, C);
        r[k][7] = fbuf(Vp * EC, 0, 0, &seed), r[k][8] = fbuf(T * EC, 0, 0, &seed);
        o->encoder_backward(r[k][7], r[k][8], NULL, edout, tok, NULL, B, T, EC);
        sumsq[k] = o->sumsq(sq, nsq);
    }
    static const char *names[9] = {"matmul out",    "matmul dinp",     "matmul dweight",
                                   "matmul dbias",  "layernorm dinp",  "layernorm dweight",
                                   "layernorm dbias", "encoder dwte", "encoder dwpe"};
    const size_t sizes[9] = {N * OC, N * IC, OC * IC, OC, N * C, C, C, Vp * EC, T * EC};
    for (int k = 1; k < 3; k++) {
        for (int i = 0; i < 9; i++) {
            char what[96];
            snprintf(what, sizeof what, "%s, %d vs 1 threads", names[i], threads[k]);
            expect_bits_equal(what, r[k][i], r[0][i], sizes[i] * sizeof(float));
        }
        cr_expect(memcmp(&sumsq[k], &sumsq[0], sizeof(double)) == 0,
                  "sumsq, %d vs 1 threads: %.17g vs %.17g", threads[k], sumsq[k], sumsq[0]);
    }
    free_bufs(&r[0][0], 3 * 9);
    free_bufs((float *[]){inp, w, bias, dout, lin, lw, lb, ldout, lout, mean, rstd, edout, sq},
              13);
}
