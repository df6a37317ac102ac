// test_cuda_ops.c: the CUDA backend against the CPU backend (GPU machine only: make test-gpu):
// every op on random inputs, attention against the CPU naive attention (and, with key-padding
// masks, a double-precision reference), the whole GPT-2
// (loss, every gradient, AdamW steps), and bit-for-bit determinism.
//
// Tolerances (relative L2 error ||gpu - cpu|| / ||cpu||, both sides fp32; TF32 stays off):
//   1e-6  elementwise ops (encoder, GELU, residual, scale, AdamW): the same formula per
//         element; only expf/tanhf/sqrtf implementations differ, by an ulp or two (6e-8 each).
//   1e-5  reductions (LayerNorm over C, matmul over K <= 3072, cross-entropy over V, column
//         sums over N): another summation order; fp32 rounding grows like eps * sqrt(K), which
//         is 3e-6 at K = 3072, so 1e-5 leaves a 3x margin and is still 10^5 below what any
//         indexing bug gives (an error of order 1).
//   2e-5  attention (two chained reductions: over D for the scores, over T for P V and the
//         gradients; T up to 1024).
//   1e-4  the whole model's gradients: 2 layers of the above composed, through LayerNorm's
//         division by a standard deviation that amplifies relative error a few times.
//   sumsq: 1e-12, double accumulation of squares that are exact in double.
// Every output buffer is poisoned with NaN before a forward op, so an element the kernel
// forgot to write fails the test; every backward starts from random gradients, checking +=,
// and is compared on its increment (result - start), so the start does not dilute the error.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/attention/flash_cuda.h"
#include "kernels/common.h"
#include "kernels/cuda/cuda.h"
#include "model/gpt2.h"
#include "train/optim.h"
#include "tests/gpu/compare.h"

// ----------------------------------------------------------------------------
// helpers

static const pb_ops *G;  // CUDA
static const pb_ops *H;  // CPU, the reference

static void setup(void) {
    cr_assert(pb_cuda_available(), "make test-gpu needs a GPU: %s", pb_cuda_unavailable_reason());
    G = pb_ops_cuda();
    H = pb_ops_cpu();
}

static pb_rng rng;

// n floats uniform in [-amp, amp), host memory
static float *rand_host(size_t n, float amp) {
    float *x = pb_malloc(n * sizeof(float) + 16);
    for (size_t i = 0; i < n; i++) x[i] = (float)(amp * (2.0 * pb_rng_uniform(&rng) - 1.0));
    return x;
}

static void *to_gpu(const void *h, size_t bytes) {
    void *d = G->alloc(bytes);
    G->upload(d, h, bytes);
    return d;
}

static float *from_gpu(const float *d, size_t n) {
    float *h = pb_malloc(n * sizeof(float) + 16);
    G->download(h, d, n * sizeof(float));
    return h;
}

// NaN in every float of a device buffer: unwritten outputs then fail the comparison.
static void poison(float *d, size_t n) {
    float *h = pb_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    G->upload(d, h, n * sizeof(float));
    free(h);
}

// Download a device buffer and compare it with a host reference.
static void expect_gpu_close(const char *what, const float *dgot, const float *ref, size_t n,
                             double tol) {
    float *h = from_gpu(dgot, n);
    expect_close(what, h, ref, n, tol);
    free(h);
}

// The same on the increments of an accumulating op: (gpu - init) against (ref - init).
static void expect_gpu_delta(const char *what, const float *dgot, const float *ref,
                             const float *init, size_t n, double tol) {
    float *h = from_gpu(dgot, n), *r = pb_malloc(n * sizeof(float) + 16);
    for (size_t i = 0; i < n; i++) h[i] -= init[i], r[i] = ref[i] - init[i];
    expect_close(what, h, r, n, tol);
    free(h), free(r);
}

TestSuite(cuda, .init = setup);

// ----------------------------------------------------------------------------
// memory

Test(cuda, memory) {
    pb_rng_seed(&rng, 1);
    size_t n = 1000;
    float *d = G->alloc(n * sizeof(float));
    float *h = from_gpu(d, n);
    for (size_t i = 0; i < n; i++) cr_assert(h[i] == 0.0f, "alloc is not zeroed at %zu", i);
    float *x = rand_host(n, 1.0f);
    G->upload(d, x, n * sizeof(float));
    float *y = from_gpu(d, n);
    cr_assert(memcmp(x, y, n * sizeof(float)) == 0, "upload/download round trip differs");
    G->zero(d + 10, 100 * sizeof(float));
    free(y);
    y = from_gpu(d, n);
    for (size_t i = 0; i < n; i++)
        cr_assert(y[i] == (i >= 10 && i < 110 ? 0.0f : x[i]), "zero touched the wrong range");
    G->free(d);
    free(h), free(x), free(y);
}

// ----------------------------------------------------------------------------
// encoder

// zeros: the percentage of positions holding token 0 (a Pathfinder image's background: one
// token's run crosses many of the backward's chunks)
static void check_encoder(int B, int T, int C, int vocab_used, int zeros) {
    int Vp = 128, N = B * T;
    char what[96];
    int32_t *inp = pb_malloc((size_t)N * sizeof(int32_t));
    // few distinct tokens: every token repeats, the hard case for the backward's scatter
    for (int i = 0; i < N; i++)
        inp[i] = pb_rng_u64(&rng) % 100 < (uint64_t)zeros
                     ? 0
                     : (int32_t)(pb_rng_u64(&rng) % (uint64_t)vocab_used) * 3;
    float *wte = rand_host((size_t)Vp * C, 1.0f), *wpe = rand_host((size_t)T * C, 1.0f);
    float *out = pb_malloc((size_t)N * C * sizeof(float));
    H->encoder_forward(out, inp, NULL, wte, wpe, NULL, B, T, C);
    int32_t *dinp = to_gpu(inp, (size_t)N * sizeof(int32_t));
    float *dwte = to_gpu(wte, (size_t)Vp * C * 4), *dwpe = to_gpu(wpe, (size_t)T * C * 4);
    float *dout = G->alloc((size_t)N * C * 4);
    poison(dout, (size_t)N * C);
    G->encoder_forward(dout, dinp, NULL, dwte, dwpe, NULL, B, T, C);
    snprintf(what, sizeof what, "encoder_forward B%d T%d C%d", B, T, C);
    expect_gpu_close(what, dout, out, (size_t)N * C, 1e-6);

    // backward: gradients start random (the op accumulates)
    float *g = rand_host((size_t)N * C, 1.0f);
    float *gwte = rand_host((size_t)Vp * C, 1.0f), *gwpe = rand_host((size_t)T * C, 1.0f);
    float *gwte0 = copy_host(gwte, (size_t)Vp * C), *gwpe0 = copy_host(gwpe, (size_t)T * C);
    float *d_g = to_gpu(g, (size_t)N * C * 4);
    float *d_gwte = to_gpu(gwte, (size_t)Vp * C * 4), *d_gwpe = to_gpu(gwpe, (size_t)T * C * 4);
    H->encoder_backward(gwte, gwpe, NULL, g, inp, NULL, B, T, C);
    G->encoder_backward(d_gwte, d_gwpe, NULL, d_g, dinp, NULL, B, T, C);
    // dwte against sums in double: a token's run of ~59,000 positions (zeros = 90) summed in
    // fp32 in position order, as the CPU does, is itself ~4e-6 off; the GPU's chunked sums
    // are ~4e-7 off (an emulation of both orders on such data, before the test ran)
    double *sum = pb_calloc((size_t)Vp * C, sizeof(double));
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) sum[(size_t)inp[i] * C + c] += g[(size_t)i * C + c];
    float *dref = pb_malloc((size_t)Vp * C * sizeof(float));
    for (size_t i = 0; i < (size_t)Vp * C; i++) dref[i] = gwte0[i] + (float)sum[i];
    snprintf(what, sizeof what, "encoder_backward dwte B%d T%d C%d", B, T, C);
    expect_gpu_delta(what, d_gwte, dref, gwte0, (size_t)Vp * C, 1e-6);
    free(sum), free(dref);
    snprintf(what, sizeof what, "encoder_backward dwpe B%d T%d C%d", B, T, C);
    expect_gpu_delta(what, d_gwpe, gwpe, gwpe0, (size_t)T * C, 1e-6);

    // determinism: the same call from the same state gives the same bits
    float *first = from_gpu(d_gwte, (size_t)Vp * C);
    G->upload(d_gwte, gwte0, (size_t)Vp * C * 4);
    G->encoder_backward(d_gwte, d_gwpe, NULL, d_g, dinp, NULL, B, T, C);
    float *again = from_gpu(d_gwte, (size_t)Vp * C);
    cr_expect(memcmp(first, again, (size_t)Vp * C * 4) == 0,
              "encoder_backward B%d T%d C%d differs between two identical calls", B, T, C);
    free(again), free(first), free(gwte0), free(gwpe0);

    G->free(dinp), G->free(dwte), G->free(dwpe), G->free(dout), G->free(d_g), G->free(d_gwte),
        G->free(d_gwpe);
    free(inp), free(wte), free(wpe), free(out), free(g), free(gwte), free(gwpe);
}

Test(cuda, encoder) {
    pb_rng_seed(&rng, 2);
    check_encoder(4, 33, 96, 7, 0);       // float4 path, heavy repetition
    check_encoder(3, 17, 30, 40, 0);      // C % 4 != 0: scalar path
    check_encoder(8, 512, 64, 42, 0);     // 4096 positions: runs across chunk boundaries
    check_encoder(5, 999, 40, 42, 50);    // a last chunk cut short
    check_encoder(64, 1024, 64, 42, 90);  // Pathfinder-like: one run over ~230 chunks of 256
}

// ----------------------------------------------------------------------------
// LayerNorm

static void check_layernorm(int N, int C, float eps) {
    char what[96];
    size_t NC = (size_t)N * C;
    float *x = rand_host(NC, 2.0f), *w = rand_host(C, 1.0f), *b = rand_host(C, 1.0f);
    for (size_t i = 0; i < NC; i++) x[i] += 0.5f;  // a non-zero mean
    float *out = pb_malloc(NC * 4), *mean = pb_malloc(N * 4), *rstd = pb_malloc(N * 4);
    H->layernorm_forward(out, mean, rstd, x, w, b, N, C, eps);
    float *dx = to_gpu(x, NC * 4), *dw = to_gpu(w, C * 4), *db = to_gpu(b, C * 4);
    float *dout = G->alloc(NC * 4), *dmean = G->alloc(N * 4), *drstd = G->alloc(N * 4);
    poison(dout, NC), poison(dmean, N), poison(drstd, N);
    G->layernorm_forward(dout, dmean, drstd, dx, dw, db, N, C, eps);
    snprintf(what, sizeof what, "layernorm_forward out N%d C%d", N, C);
    expect_gpu_close(what, dout, out, NC, 1e-5);
    snprintf(what, sizeof what, "layernorm_forward mean N%d C%d", N, C);
    expect_gpu_close(what, dmean, mean, N, 1e-5);
    snprintf(what, sizeof what, "layernorm_forward rstd N%d C%d", N, C);
    expect_gpu_close(what, drstd, rstd, N, 1e-5);

    float *g = rand_host(NC, 1.0f), *gx = rand_host(NC, 1.0f);
    float *gw = rand_host(C, 1.0f), *gb = rand_host(C, 1.0f);
    float *d_g = to_gpu(g, NC * 4), *d_gx = to_gpu(gx, NC * 4);
    float *d_gw = to_gpu(gw, C * 4), *d_gb = to_gpu(gb, C * 4);
    float *gx0 = copy_host(gx, NC), *gw0 = copy_host(gw, C), *gb0 = copy_host(gb, C);
    // both backward passes from the CPU's saved statistics: the comparison is of one op
    G->upload(dmean, mean, N * 4);
    G->upload(drstd, rstd, N * 4);
    H->layernorm_backward(gx, gw, gb, g, x, w, mean, rstd, N, C);
    G->layernorm_backward(d_gx, d_gw, d_gb, d_g, dx, dw, dmean, drstd, N, C);
    snprintf(what, sizeof what, "layernorm_backward dinp N%d C%d", N, C);
    expect_gpu_delta(what, d_gx, gx, gx0, NC, 1e-5);
    snprintf(what, sizeof what, "layernorm_backward dweight N%d C%d", N, C);
    expect_gpu_delta(what, d_gw, gw, gw0, C, 1e-5);
    snprintf(what, sizeof what, "layernorm_backward dbias N%d C%d", N, C);
    expect_gpu_delta(what, d_gb, gb, gb0, C, 1e-5);
    free(gx0), free(gw0), free(gb0);

    G->free(dx), G->free(dw), G->free(db), G->free(dout), G->free(dmean), G->free(drstd);
    G->free(d_g), G->free(d_gx), G->free(d_gw), G->free(d_gb);
    free(x), free(w), free(b), free(out), free(mean), free(rstd), free(g), free(gx), free(gw),
        free(gb);
}

Test(cuda, layernorm) {
    pb_rng_seed(&rng, 3);
    check_layernorm(257, 768, 1e-5f);
    check_layernorm(4096, 768, 1e-5f);  // the row count of a real micro-batch slice: 512 blocks
    check_layernorm(33, 50, 1e-5f);     // C % 4 != 0
    check_layernorm(5, 2048, 1e-5f);    // wider than 1024: the row streamed twice
    check_layernorm(300, 1000, 1e-5f);  // rows in registers, the last chunk partly past C
    check_layernorm(64, 768, 1e-12f);   // BERT's eps
    check_layernorm(33, 50, 1e-12f);
}

// ----------------------------------------------------------------------------
// matmul

static void check_matmul(int N, int IC, int OC, int with_bias) {
    char what[96];
    float *x = rand_host((size_t)N * IC, 1.0f), *w = rand_host((size_t)OC * IC, 1.0f);
    float *b = with_bias ? rand_host(OC, 1.0f) : NULL;
    float *out = pb_malloc((size_t)N * OC * 4);
    H->matmul_forward(out, x, w, b, N, IC, OC);
    float *dx = to_gpu(x, (size_t)N * IC * 4), *dw = to_gpu(w, (size_t)OC * IC * 4);
    float *db = b ? to_gpu(b, OC * 4) : NULL;
    float *dout = G->alloc((size_t)N * OC * 4);
    poison(dout, (size_t)N * OC);
    G->matmul_forward(dout, dx, dw, db, N, IC, OC);
    snprintf(what, sizeof what, "matmul_forward N%d IC%d OC%d bias%d", N, IC, OC, with_bias);
    expect_gpu_close(what, dout, out, (size_t)N * OC, 1e-5);

    float *g = rand_host((size_t)N * OC, 1.0f), *gx = rand_host((size_t)N * IC, 1.0f);
    float *gw = rand_host((size_t)OC * IC, 1.0f), *gb = with_bias ? rand_host(OC, 1.0f) : NULL;
    float *d_g = to_gpu(g, (size_t)N * OC * 4), *d_gx = to_gpu(gx, (size_t)N * IC * 4);
    float *d_gw = to_gpu(gw, (size_t)OC * IC * 4), *d_gb = gb ? to_gpu(gb, OC * 4) : NULL;
    float *gx0 = copy_host(gx, (size_t)N * IC), *gw0 = copy_host(gw, (size_t)OC * IC);
    float *gb0 = gb ? copy_host(gb, OC) : NULL;
    H->matmul_backward(gx, gw, gb, g, x, w, N, IC, OC);
    G->matmul_backward(d_gx, d_gw, d_gb, d_g, dx, dw, N, IC, OC);
    snprintf(what, sizeof what, "matmul_backward dinp N%d IC%d OC%d", N, IC, OC);
    expect_gpu_delta(what, d_gx, gx, gx0, (size_t)N * IC, 1e-5);
    snprintf(what, sizeof what, "matmul_backward dweight N%d IC%d OC%d", N, IC, OC);
    expect_gpu_delta(what, d_gw, gw, gw0, (size_t)OC * IC, 1e-5);
    if (gb) {
        snprintf(what, sizeof what, "matmul_backward dbias N%d IC%d OC%d", N, IC, OC);
        expect_gpu_delta(what, d_gb, gb, gb0, OC, 1e-5);
    }
    free(gx0), free(gw0), free(gb0);
    G->free(dx), G->free(dw), G->free(dout), G->free(d_g), G->free(d_gx), G->free(d_gw);
    if (db) G->free(db), G->free(d_gb);
    free(x), free(w), free(b), free(out), free(g), free(gx), free(gw), free(gb);
}

Test(cuda, matmul) {
    pb_rng_seed(&rng, 4);
    check_matmul(256, 768, 2304, 1);  // GPT-2 c_attn shape
    check_matmul(256, 3072, 768, 1);  // c_proj of the MLP: K = 3072
    check_matmul(200, 96, 1024, 0);   // LM head: no bias
    check_matmul(37, 50, 33, 1);      // odd sizes: 4-byte alignment only
}

// ----------------------------------------------------------------------------
// elementwise: GELU, residual, scale, AdamW (n with a tail; one misaligned call)

Test(cuda, elementwise) {
    pb_rng_seed(&rng, 5);
    for (int off = 0; off < 2; off++) {  // off = 1: pointers 4 bytes past alignment
        size_t n = 10001;
        char what[96];
        float *x = rand_host(n + 1, 4.0f), *y = rand_host(n + 1, 1.0f), *g = rand_host(n + 1, 1.0f);
        float *acc = rand_host(n + 1, 1.0f), *acc2 = rand_host(n + 1, 1.0f);
        float *out = pb_malloc((n + 1) * 4);
        float *dx = to_gpu(x, (n + 1) * 4), *dy = to_gpu(y, (n + 1) * 4), *dg = to_gpu(g, (n + 1) * 4);
        float *dacc = to_gpu(acc, (n + 1) * 4), *dacc2 = to_gpu(acc2, (n + 1) * 4);
        float *dout = G->alloc((n + 1) * 4);

        float *h;
        for (int kind = PB_GELU_TANH; kind <= PB_GELU_ERF; kind++) {
            const char *kn = kind == PB_GELU_ERF ? "erf" : "tanh";
            H->gelu_forward(out + off, x + off, n, (pb_gelu)kind);
            poison(dout, n + 1);
            G->gelu_forward(dout + off, dx + off, n, (pb_gelu)kind);
            snprintf(what, sizeof what, "gelu_forward %s off%d", kn, off);
            h = from_gpu(dout, n + 1);
            expect_close(what, h + off, out + off, n, 1e-6);
            free(h);

            float *acc0 = copy_host(acc, n + 1);
            H->gelu_backward(acc + off, x + off, g + off, n, (pb_gelu)kind);
            G->gelu_backward(dacc + off, dx + off, dg + off, n, (pb_gelu)kind);
            snprintf(what, sizeof what, "gelu_backward %s off%d", kn, off);
            h = from_gpu(dacc, n + 1);
            for (size_t i = 0; i <= n; i++) h[i] -= acc0[i];
            float *ref = copy_host(acc, n + 1);
            for (size_t i = 0; i <= n; i++) ref[i] -= acc0[i];
            expect_close(what, h + off, ref + off, n, 1e-6);
            free(h), free(ref), free(acc0);
            G->upload(dacc, acc, (n + 1) * 4);  // the next kind starts where the host is
        }

        H->residual_forward(out + off, x + off, y + off, n);
        poison(dout, n + 1);
        G->residual_forward(dout + off, dx + off, dy + off, n);
        snprintf(what, sizeof what, "residual_forward off%d", off);
        h = from_gpu(dout, n + 1);
        expect_close(what, h + off, out + off, n, 1e-6);
        free(h);

        // dropout: the same elements kept (kernels/dropout.h), the same products: equal bits,
        // also in place
        for (int inplace = 0; inplace < 2; inplace++) {
            uint64_t key = 0x9E3779B97F4A7C15ull + (uint64_t)off;
            float *src = inplace ? copy_host(x, n + 1) : x;
            float *dsrc = inplace ? to_gpu(x, (n + 1) * 4) : dx;
            H->dropout((inplace ? src : out) + off, src + off, n, key, 0.25f);
            poison(dout, n + 1);
            G->dropout((inplace ? dsrc : dout) + off, dsrc + off, n, key, 0.25f);
            h = from_gpu(inplace ? dsrc : dout, n + 1);
            const float *want = (inplace ? src : out) + off;
            size_t diff = 0, kept = 0;
            for (size_t i = 0; i < n; i++)
                diff += memcmp(&h[off + i], &want[i], 4) != 0, kept += want[i] != 0.0f;
            cr_expect(diff == 0, "dropout off%d inplace%d: %zu of %zu elements differ", off,
                      inplace, diff, n);
            cr_expect(kept > n * 0.70 && kept < n * 0.80, "dropout kept %zu of %zu", kept, n);
            free(h);
            if (inplace) G->free(dsrc), free(src);
        }

        H->scale(x + off, 0.37f, n);
        G->scale(dx + off, 0.37f, n);
        snprintf(what, sizeof what, "scale off%d", off);
        h = from_gpu(dx, n + 1);
        expect_close(what, h + off, x + off, n, 1e-7);
        free(h);

        G->free(dx), G->free(dy), G->free(dg), G->free(dacc), G->free(dacc2), G->free(dout);
        free(x), free(y), free(g), free(acc), free(acc2), free(out);
    }
}

// AdamW over segments with their own decay, boundaries inside a thread's four elements and
// empty segments; then 600 segments, more than one launch carries (ADAMW_SEGS = 256).
static void check_adamw(const size_t *ends, const float *wd, int nseg) {
    size_t n = ends[nseg - 1];
    float *p = rand_host(n, 1.0f), *m = pb_calloc(n, 4), *v = pb_calloc(n, 4);
    float *dp = to_gpu(p, n * 4), *dm = G->alloc(n * 4), *dv = G->alloc(n * 4);
    for (int t = 1; t <= 5; t++) {
        float *g = rand_host(n, 0.1f);
        float *dg = to_gpu(g, n * 4);
        H->adamw_update(p, g, m, v, ends, wd, nseg, 1e-3f, 0.9f, 0.95f, 1e-8f, t);
        G->adamw_update(dp, dg, dm, dv, ends, wd, nseg, 1e-3f, 0.9f, 0.95f, 1e-8f, t);
        G->free(dg);
        free(g);
    }
    char what[64];
    snprintf(what, sizeof what, "adamw param (5 steps, %d segments)", nseg);
    expect_gpu_close(what, dp, p, n, 1e-6);
    expect_gpu_close("adamw m", dm, m, n, 1e-6);
    expect_gpu_close("adamw v", dv, v, n, 1e-6);
    G->free(dp), G->free(dm), G->free(dv);
    free(p), free(m), free(v);
}

Test(cuda, adamw) {
    pb_rng_seed(&rng, 6);
    size_t ends[5] = {3, 1000, 1000, 5002, 10001};
    float wd[5] = {0.1f, 0.0f, 0.3f, 0.0f, 0.2f};
    check_adamw(ends, wd, 5);
    enum { many = 600 };
    size_t ends2[many];
    float wd2[many];
    for (int k = 0; k < many; k++)
        ends2[k] = (k ? ends2[k - 1] : 0) + 1 + (size_t)(k * 37 % 101), wd2[k] = k % 3 ? 0.1f : 0.0f;
    check_adamw(ends2, wd2, many);
}

Test(cuda, sumsq) {
    pb_rng_seed(&rng, 7);
    size_t sizes[] = {1, 1000, 3000001};
    for (int k = 0; k < 3; k++) {
        size_t n = sizes[k];
        float *x = rand_host(n, 3.0f);
        float *dx = to_gpu(x, n * 4);
        double ref = H->sumsq(x, n), got = G->sumsq(dx, n), again = G->sumsq(dx, n);
        printf("  sumsq n=%zu: %.17g vs %.17g\n", n, got, ref);
        cr_expect(fabs(got - ref) <= 1e-12 * ref, "sumsq n=%zu: %.17g vs %.17g", n, got, ref);
        cr_expect(memcmp(&got, &again, sizeof got) == 0, "sumsq is not deterministic");
        G->free(dx);
        free(x);
    }
}

// ----------------------------------------------------------------------------
// cross-entropy

Test(cuda, crossentropy) {
    pb_rng_seed(&rng, 8);
    int N = 65, V = 1000, Vp = 1024;
    size_t NV = (size_t)N * Vp;
    float *logits = rand_host(NV, 8.0f);
    int32_t *tgt = pb_malloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++) tgt[i] = i % 9 == 4 ? -1 : (int32_t)(pb_rng_u64(&rng) % V);
    tgt[0] = V - 1;  // the last real column
    float *loss = pb_malloc(N * 4);
    H->crossentropy_forward(loss, logits, tgt, N, V, Vp);
    float *dl = to_gpu(logits, NV * 4), *dloss = G->alloc(N * 4);
    int32_t *dt = to_gpu(tgt, N * sizeof(int32_t));
    poison(dloss, N);
    G->crossentropy_forward(dloss, dl, dt, N, V, Vp);
    expect_gpu_close("crossentropy_forward losses", dloss, loss, N, 1e-5);

    // backward into a separate buffer, then in place; padding columns must be 0
    float *grad = pb_malloc(NV * 4);
    H->crossentropy_backward(grad, logits, tgt, 0.01f, N, V, Vp);
    float *dgrad = G->alloc(NV * 4);
    poison(dgrad, NV);
    G->crossentropy_backward(dgrad, dl, dt, 0.01f, N, V, Vp);
    expect_gpu_close("crossentropy_backward", dgrad, grad, NV, 1e-5);
    G->crossentropy_backward(dl, dl, dt, 0.01f, N, V, Vp);
    float *h = from_gpu(dl, NV);
    expect_close("crossentropy_backward in place", h, grad, NV, 1e-5);
    for (int i = 0; i < N; i++)
        for (int v = V; v < Vp; v++)
            cr_assert(h[(size_t)i * Vp + v] == 0.0f, "padding column %d of row %d is not 0", v, i);
    for (int v = 0; v < Vp; v++) cr_assert(h[4 * (size_t)Vp + v] == 0.0f, "ignored row has gradient");
    G->free(dl), G->free(dloss), G->free(dt), G->free(dgrad);
    free(logits), free(tgt), free(loss), free(grad), free(h);
}

// ----------------------------------------------------------------------------
// attention: the table's "flash" (fp32) against the CPU naive attention, and with key-padding
// masks against the double-precision reference of compare.h

static pb_attn_desc attn_desc(int B, int T, int NH, int D, int causal, const int32_t *kv_len) {
    return (pb_attn_desc){B, T, T, NH, D, 1.0f / sqrtf((float)D), causal, kv_len, NULL, 0, 0};
}

static void check_attention(int B, int T, int NH, int D, int causal) {
    int C = NH * D;
    size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
    char what[128];
    const pb_attn_impl *im = &attn_cuda_flash;
    pb_attn_desc d = attn_desc(B, T, NH, D, causal, NULL);
    cr_assert(!im->supports(&d));
    float *qkv = rand_host(n3, 1.0f);
    float *out = pb_malloc(n1 * 4), *lse = pb_malloc(nl * 4);
    attn_naive_forward(out, lse, qkv, &d);
    float *d_qkv = to_gpu(qkv, n3 * 4), *d_out = G->alloc(n1 * 4), *d_lse = G->alloc(nl * 4);
    poison(d_out, n1), poison(d_lse, nl);
    im->forward(d_out, d_lse, d_qkv, &d);
    snprintf(what, sizeof what, "attn flash fwd out  B%d T%-4d NH%d D%-3d causal%d", B, T, NH, D,
             causal);
    expect_gpu_close(what, d_out, out, n1, 2e-5);
    snprintf(what, sizeof what, "attn flash fwd lse  B%d T%-4d NH%d D%-3d causal%d", B, T, NH, D,
             causal);
    expect_gpu_close(what, d_lse, lse, nl, 2e-5);

    float *dout = rand_host(n1, 1.0f), *dqkv = rand_host(n3, 1.0f), *dqkv0 = copy_host(dqkv, n3);
    float *d_dout = to_gpu(dout, n1 * 4), *d_dqkv = to_gpu(dqkv, n3 * 4);
    // both from the CPU's out and lse: the backward is compared alone
    G->upload(d_out, out, n1 * 4);
    G->upload(d_lse, lse, nl * 4);
    attn_naive_backward(dqkv, dout, out, lse, qkv, &d);
    im->backward(d_dqkv, d_dout, d_out, d_lse, d_qkv, &d);
    snprintf(what, sizeof what, "attn flash bwd dqkv B%d T%-4d NH%d D%-3d causal%d", B, T, NH, D,
             causal);
    expect_gpu_delta(what, d_dqkv, dqkv, dqkv0, n3, 2e-5);

    G->free(d_qkv), G->free(d_out), G->free(d_lse), G->free(d_dout), G->free(d_dqkv);
    free(qkv), free(out), free(lse), free(dout), free(dqkv), free(dqkv0);
}

static const int ATTN_T[] = {1, 63, 64, 65, 257, 1024};

static void attention_suite(int D, int causal) {
    pb_rng_seed(&rng, 100 + D + causal);
    for (int i = 0; i < 6; i++) {
        int T = ATTN_T[i];
        check_attention(T >= 1024 ? 1 : 2, T, 2, D, causal);
    }
}

Test(cuda, attention_d64_causal) { attention_suite(64, 1); }
Test(cuda, attention_d64_full) { attention_suite(64, 0); }
Test(cuda, attention_d128_causal) { attention_suite(128, 1); }
Test(cuda, attention_d128_full) { attention_suite(128, 0); }

Test(cuda, attention_other_head_dims) {
    pb_rng_seed(&rng, 9);
    check_attention(2, 100, 4, 32, 1);  // gpt2-tiny's D
    check_attention(2, 100, 2, 48, 0);  // zero-padded to 64
    check_attention(1, 70, 3, 80, 1);   // zero-padded to 128
}

// Key-padding masks: forward and backward against ref_attention; every query row written;
// dK and dV of padding keys unchanged to the bit.
static void check_attention_masked(int B, int T, int NH, int D, int causal, int pattern) {
    int C = NH * D;
    size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
    char what[160];
    int32_t *kv = pb_malloc((size_t)B * 4);
    kv_pattern(kv, B, T, pattern);
    int32_t *d_kv = to_gpu(kv, (size_t)B * 4);
    const pb_attn_impl *im = &attn_cuda_flash;
    pb_attn_desc d = attn_desc(B, T, NH, D, causal, d_kv);
    cr_assert(!im->supports(&d));
    float *qkv = rand_host(n3, 1.0f), *dout = rand_host(n1, 1.0f);
    float *dqkv = rand_host(n3, 1.0f), *dqkv0 = copy_host(dqkv, n3);
    float *out = pb_malloc(n1 * 4), *lse = pb_malloc(nl * 4);
    ref_attention(out, lse, dqkv, dout, qkv, B, T, NH, D, d.scale, causal, kv);
    float *d_qkv = to_gpu(qkv, n3 * 4), *d_out = G->alloc(n1 * 4), *d_lse = G->alloc(nl * 4);
    poison(d_out, n1), poison(d_lse, nl);
    im->forward(d_out, d_lse, d_qkv, &d);
    snprintf(what, sizeof what, "attn flash masked(%s) fwd out  B%d T%-4d D%-3d causal%d",
             KV_NAMES[pattern], B, T, D, causal);
    expect_gpu_close(what, d_out, out, n1, 2e-5);
    snprintf(what, sizeof what, "attn flash masked(%s) fwd lse  B%d T%-4d D%-3d causal%d",
             KV_NAMES[pattern], B, T, D, causal);
    expect_gpu_close(what, d_lse, lse, nl, 2e-5);
    float *d_dout = to_gpu(dout, n1 * 4), *d_dqkv = to_gpu(dqkv0, n3 * 4);
    G->upload(d_out, out, n1 * 4);
    G->upload(d_lse, lse, nl * 4);
    im->backward(d_dqkv, d_dout, d_out, d_lse, d_qkv, &d);
    snprintf(what, sizeof what, "attn flash masked(%s) bwd dqkv B%d T%-4d D%-3d causal%d",
             KV_NAMES[pattern], B, T, D, causal);
    expect_gpu_delta(what, d_dqkv, dqkv, dqkv0, n3, 2e-5);
    float *h = from_gpu(d_dqkv, n3);
    expect_padding_untouched(what, h, dqkv0, kv, B, T, C);
    G->free(d_qkv), G->free(d_out), G->free(d_lse), G->free(d_dout), G->free(d_dqkv), G->free(d_kv);
    free(qkv), free(out), free(lse), free(dout), free(dqkv), free(dqkv0), free(h), free(kv);
}

Test(cuda, attention_masked) {
    pb_rng_seed(&rng, 11);
    for (int causal = 0; causal < 2; causal++)
        for (int pat = 0; pat < 3; pat++) {
            check_attention_masked(3, 200, 2, 64, causal, pat);
            check_attention_masked(2, 1000, 1, 32, causal, pat);
        }
    check_attention_masked(2, 2111, 1, 128, 1, KV_RAGGED);
    check_attention_masked(2, 2111, 1, 64, 0, KV_RAGGED);
}

// The table and pb_attn_choose: fp32 has one implementation, "flash", for head dims <= 128.
Test(cuda, attention_choose) {
    char err[256];
    pb_attn_desc d = attn_desc(2, 64, 4, 32, 1, NULL);
    cr_expect(pb_attn_choose(G, "auto", &d, err, sizeof err) == &attn_cuda_flash);
    cr_expect(pb_attn_choose(G, "wgmma", &d, err, sizeof err) == NULL);
    cr_expect(strstr(err, "no such attention") != NULL, "%s", err);
    d.D = 256;
    cr_expect(pb_attn_choose(G, "flash", &d, err, sizeof err) == NULL);
    cr_expect(strstr(err, "head dim 256") != NULL, "%s", err);
    cr_expect(G->attention_decode == NULL);
}

Test(cuda, attention_deterministic) {
    pb_rng_seed(&rng, 10);
    int B = 2, T = 300, NH = 4, D = 64, C = NH * D;
    size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
    float *qkv = rand_host(n3, 1.0f), *dout = rand_host(n1, 1.0f);
    float *d_qkv = to_gpu(qkv, n3 * 4), *d_dout = to_gpu(dout, n1 * 4);
    float *d_out = G->alloc(n1 * 4), *d_lse = G->alloc(nl * 4);
    float *d_dqkv = G->alloc(n3 * 4);
    pb_attn_desc d = attn_desc(B, T, NH, D, 1, NULL);
    float *res[2];
    for (int r = 0; r < 2; r++) {
        G->zero(d_dqkv, n3 * 4);
        attn_cuda_flash.forward(d_out, d_lse, d_qkv, &d);
        attn_cuda_flash.backward(d_dqkv, d_dout, d_out, d_lse, d_qkv, &d);
        res[r] = from_gpu(d_dqkv, n3);
    }
    cr_expect(memcmp(res[0], res[1], n3 * 4) == 0, "attention backward differs between runs");
    G->free(d_qkv), G->free(d_dout), G->free(d_out), G->free(d_lse), G->free(d_dqkv);
    free(qkv), free(dout), free(res[0]), free(res[1]);
}

// ----------------------------------------------------------------------------
// the whole model: the same init on both backends

// TINY, TB, TT and tiny_batch: tests/gpu/compare.h

Test(cuda, gpt2_loss_and_gradients) {
    gpt2 mg, mc;
    gpt2_build(&mg, &TINY, G);
    gpt2_build(&mc, &TINY, H);
    gpt2_init_weights(&mg, 42);
    gpt2_init_weights(&mc, 42);
    int32_t inp[TB * TT], tgt[TB * TT];
    tiny_batch(inp, tgt, 5);
    float lg = gpt2_forward(&mg, inp, tgt, TB, TT), lc = gpt2_forward(&mc, inp, tgt, TB, TT);
    printf("  gpt2 tiny loss: cuda %.8f cpu %.8f\n", lg, lc);
    cr_expect(fabsf(lg - lc) <= 1e-5f * fabsf(lc), "loss %.8f vs %.8f", lg, lc);
    // logits (before the backward overwrites them)
    size_t nlog = (size_t)TB * TT * mc.cfg.padded_vocab;
    expect_gpu_close("gpt2 logits", mg.acts.logits, mc.acts.logits, nlog, 1e-5);
    gpt2_zero_grad(&mg);
    gpt2_zero_grad(&mc);
    gpt2_backward(&mg, 1.0f);
    gpt2_backward(&mc, 1.0f);
    float *grads = from_gpu(mg.p.grad, mg.p.num_floats);
    for (int i = 0; i < mc.p.num; i++) {
        const pb_param *p = &mc.p.tab[i];
        expect_close(p->name, grads + p->offset, mc.p.grad + p->offset, p->numel, 1e-4);
    }
    free(grads);
    gpt2_free(&mg);
    gpt2_free(&mc);
}

// Ten AdamW steps (clip, schedule-free lr) on fresh batches: the GPU run tracks the CPU's
// losses. Drift compounds over steps, so the bound is looser than one step's.
Test(cuda, gpt2_training_tracks_cpu) {
    gpt2 mg, mc;
    gpt2_build(&mg, &TINY, G);
    gpt2_build(&mc, &TINY, H);
    gpt2_init_weights(&mg, 7);
    gpt2_init_weights(&mc, 7);
    pb_adamw og, oc;
    adamw_init(&og, &mg.p, 0.9f, 0.95f, 1e-8f, 0.1f);
    adamw_init(&oc, &mc.p, 0.9f, 0.95f, 1e-8f, 0.1f);
    int32_t inp[TB * TT], tgt[TB * TT];
    for (int step = 0; step < 10; step++) {
        tiny_batch(inp, tgt, 100 + step);
        float l[2];
        gpt2 *ms[2] = {&mg, &mc};
        pb_adamw *os[2] = {&og, &oc};
        float norms[2];
        for (int k = 0; k < 2; k++) {
            gpt2_zero_grad(ms[k]);
            l[k] = gpt2_forward(ms[k], inp, tgt, TB, TT);
            gpt2_backward(ms[k], 1.0f);
            norms[k] = optim_clip_grad_norm(&ms[k]->p, 1.0f);
            adamw_step(os[k], &ms[k]->p, 3e-3f);
        }
        printf("  step %d: loss cuda %.7f cpu %.7f | grad norm cuda %.7f cpu %.7f\n", step, l[0],
               l[1], norms[0], norms[1]);
        cr_expect(fabsf(l[0] - l[1]) <= 1e-4f * fabsf(l[1]), "step %d: loss %.7f vs %.7f",
                  step, l[0], l[1]);
    }
    float *pg = from_gpu(mg.p.mem, mg.p.num_floats);
    expect_close("parameters after 10 steps", pg, mc.p.mem, mc.p.num_floats, 1e-4);
    free(pg);
    adamw_free(&og);
    adamw_free(&oc);
    gpt2_free(&mg);
    gpt2_free(&mc);
}

Test(cuda, gpt2_deterministic) {
    float *grads[2], loss[2];
    int32_t inp[TB * TT], tgt[TB * TT];
    tiny_batch(inp, tgt, 11);
    // repeat tokens heavily too (the encoder backward's scatter)
    for (int i = 0; i < TB * TT; i += 2) inp[i] = 17;
    for (int r = 0; r < 2; r++) {
        gpt2 m;
        gpt2_build(&m, &TINY, G);
        gpt2_init_weights(&m, 3);
        loss[r] = gpt2_forward(&m, inp, tgt, TB, TT);
        gpt2_zero_grad(&m);
        gpt2_backward(&m, 1.0f);
        grads[r] = from_gpu(m.p.grad, m.p.num_floats);
        size_t n = m.p.num_floats;
        if (r == 1)
            cr_expect(memcmp(grads[0], grads[1], n * sizeof(float)) == 0,
                      "gradients differ between two identical runs");
        gpt2_free(&m);
    }
    cr_expect(memcmp(&loss[0], &loss[1], sizeof(float)) == 0, "loss differs: %.9g vs %.9g",
              loss[0], loss[1]);
    free(grads[0]), free(grads[1]);
}
