// test_cuda_blocksparse.c: the CUDA block-sparse attention ("blocksparse" of both CUDA op
// tables: the wgmma kernels on bf16 tensors at D 64 and 128, the fp32 kernel on fp32 tensors,
// the fp32-arithmetic kernel on bf16 tensors at other D) against the CPU's block-sparse
// attention (blocksparse.c, itself tested against a masked double reference and finite
// differences in tests/test_blocksparse.c) on the same inputs and the same host layout:
// out, lse and dqkv, for every pattern, causal and not, key padding in the layout (nb = B)
// and in the descriptor, per-head layouts (nh = NH), T no block divides, empty query rows.
// GPU machine only: make test-gpu (or tests/gpu/bs_run.sh).
//
// Tolerances (relative L2 error, compare.h): bf16 tables 1e-2, as test_cuda_bf16.c's
// attention (bf16 outputs and bf16 P, dS operands: ~4e-3); fp32 table 1e-4 (fp32 everywhere,
// only the order of sums and expf differ; test_cuda_ops.c's attention margin). lse compared
// where finite, and -inf exactly where the CPU gives -inf (rows that see no key).
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/attention/blocksparse.h"
#include "kernels/attention/flash_cuda.h"
#include "kernels/common.h"
#include "kernels/cuda/cuda.h"
#include "tests/gpu/compare.h"

static const pb_ops *G16, *G32;  // CUDA bf16 and fp32 tables
static pb_rng rng;

static void setup(void) {
    cr_assert(pb_cuda_available(), "make test-gpu needs a GPU: %s", pb_cuda_unavailable_reason());
    G16 = pb_ops_cuda_bf16();
    G32 = pb_ops_cuda();
}

TestSuite(cuda_blocksparse, .init = setup);

// ----------------------------------------------------------------------------
// comparisons (bf16 on the host and device buffers of either type, to_dev, to_host,
// poison_dev: compare.h)

// lse: -inf exactly where the reference has -inf, the rest within tol
static void expect_lse(const char *what, const float *got, const float *ref, size_t n,
                       double tol) {
    float *g = copy_host(got, n), *r = copy_host(ref, n);
    size_t mism = 0, ninf = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i] == -INFINITY || g[i] == -INFINITY) {
            mism += !(r[i] == -INFINITY && g[i] == -INFINITY);
            ninf += r[i] == -INFINITY;
            g[i] = r[i] = 0.0f;
        }
    cr_expect(mism == 0, "%s: %zu rows -inf in one and not the other", what, mism);
    if (ninf) printf("  %-44s %zu rows with no key: -inf\n", what, ninf);
    expect_close(what, g, r, n, tol);
    free(g), free(r);
}

// ----------------------------------------------------------------------------
// one case: a layout (host), a table, a shape; CPU blocksparse vs CUDA blocksparse

typedef struct bs_case {
    int B, T, NH, D, causal;
    int layout_kv;  // 1: the layout built with kv_len (nb = B)
    int desc_kv;    // 1: the descriptor carries kv_len (applies on top of the layout's)
    bs_params p;
} bs_case;

static void describe(char *buf, size_t n, const char *tab, const bs_case *c, const char *what) {
    snprintf(buf, n, "%s %s T%d NH%d D%d c%d %s%s%s", tab, attn_bs_pattern_name(c->p.pattern),
             c->T, c->NH, c->D, c->causal, c->layout_kv ? "lkv " : "", c->desc_kv ? "dkv " : "",
             what);
}

// Ragged key lengths: all, two thirds, a block and a bit, a few.
static void kv_fill(int32_t *kv, int B, int T) {
    for (int b = 0; b < B; b++) {
        int r[4] = {T, T - T / 3, 130, 7};
        kv[b] = r[b % 4] > T ? T : r[b % 4];
    }
}

// Runs layout l on G (bf = its element type is bf16) against the CPU; returns nothing, asserts.
static void run_case(const pb_ops *G, int bf, const bs_case *c, pb_block_layout *l,
                     const int32_t *kv) {
    int B = c->B, T = c->T, NH = c->NH, D = c->D, C = NH * D;
    size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
    double tol = bf ? 1e-2 : 1e-4;
    const char *tab = bf ? "bf16" : "fp32";
    char what[192];
    int32_t *d_kv = NULL;
    if (c->desc_kv) {
        d_kv = G->alloc((size_t)B * 4);
        G->upload(d_kv, kv, (size_t)B * 4);
    }
    pb_attn_desc hd = {B, T, T, NH, D, 1.0f / sqrtf((float)D), c->causal,
                       c->desc_kv ? kv : NULL, l, 0, 0};
    pb_attn_desc gd = hd;
    gd.kv_len = d_kv;
    char err[256];
    const pb_attn_impl *im = pb_attn_choose(G, "blocksparse", &gd, err, sizeof err);
    cr_assert(im, "%s", err);
    cr_assert(!attn_bs_supports(&hd), "%s", attn_bs_supports(&hd));

    float *qkv = rand_vals(&rng, n3, 1.0f, bf), *dout = rand_vals(&rng, n1, 1.0f, bf);
    // dqkv starts small (test_cuda_bf16.c: a bf16 accumulator of 1 would round the increments)
    float *dqkv = rand_vals(&rng, n3, 1e-3f, bf), *dqkv0 = copy_host(dqkv, n3);
    float *out = pb_malloc(n1 * 4), *lse = pb_malloc(nl * 4);
    attn_bs_forward(out, lse, qkv, &hd);

    float *g_qkv = to_dev(G, qkv, n3, bf), *g_out = G->alloc(n1 * (bf ? 2 : 4));
    float *g_lse = G->alloc(nl * 4);
    poison_dev(G, g_out, n1, bf);
    poison_dev(G, g_lse, nl, 0);
    im->forward(g_out, g_lse, g_qkv, &gd);
    float *h_out = to_host(G, g_out, n1, bf), *h_lse = to_host(G, g_lse, nl, 0);
    describe(what, sizeof what, tab, c, "out");
    expect_close(what, h_out, out, n1, tol);
    describe(what, sizeof what, tab, c, "lse");
    expect_lse(what, h_lse, lse, nl, tol);

    // the backward from the reference's out (rounded to the table's type) and lse
    if (bf)
        for (size_t i = 0; i < n1; i++) out[i] = bf2f(f2bf(out[i]));
    attn_bs_backward(dqkv, dout, out, lse, qkv, &hd);
    float *g_dout = to_dev(G, dout, n1, bf), *g_o2 = to_dev(G, out, n1, bf);
    float *g_dqkv = to_dev(G, dqkv0, n3, bf);
    G->upload(g_lse, lse, nl * 4);
    im->backward(g_dqkv, g_dout, g_o2, g_lse, g_qkv, &gd);
    float *h_dqkv = to_host(G, g_dqkv, n3, bf);
    // dq, dk, dv apart: a wrong walk of the transposed lists shows in dk/dv only
    static const char *const part[3] = {"dq", "dk", "dv"};
    size_t np = (size_t)B * T * C;
    float *gp = pb_malloc(np * 4), *rp = pb_malloc(np * 4);
    for (int k = 0; k < 3; k++) {
        for (size_t r = 0; r < (size_t)B * T; r++)
            for (int e = 0; e < C; e++) {
                size_t i = r * 3 * C + (size_t)k * C + e;
                gp[r * C + e] = h_dqkv[i] - dqkv0[i];
                rp[r * C + e] = dqkv[i] - dqkv0[i];
            }
        describe(what, sizeof what, tab, c, part[k]);
        expect_close(what, gp, rp, np, tol);
    }
    free(gp), free(rp);
    if (d_kv) G->free(d_kv);
    G->free(g_qkv), G->free(g_out), G->free(g_lse), G->free(g_dout), G->free(g_o2),
        G->free(g_dqkv);
    free(qkv), free(dout), free(dqkv), free(dqkv0), free(out), free(lse), free(h_out),
        free(h_lse), free(h_dqkv);
}

static void check(const pb_ops *G, int bf, const bs_case *c) {
    int32_t *kv = pb_malloc((size_t)c->B * 4);
    kv_fill(kv, c->B, c->T);
    char err[256];
    pb_block_layout *l = attn_bs_build(&c->p, c->T, c->NH, c->causal,
                                       c->layout_kv ? kv : NULL, c->B, err, sizeof err);
    cr_assert(l, "%s", err);
    run_case(G, bf, c, l, kv);
    attn_bs_free(l);  // frees the device copy too (dev_free)
    free(kv);
}

static const bs_params DENSE = {BS_DENSE, 128, 0, 0, 0, 1};
static const bs_params LGR = {BS_LOCAL_GLOBAL_RANDOM, 128, 1, 1, 2, 7};
static const bs_params BFLY = {BS_BUTTERFLY, 128, 0, 1, 0, 1};

// Every pattern x causal x {T = 300, 1000} on one table at head dim D; key padding in the
// layout and in the descriptor on some.
static void pattern_sweep(const pb_ops *G, int bf, int D, int NH) {
    const bs_params *ps[3] = {&DENSE, &LGR, &BFLY};
    int Ts[2] = {300, 1000};
    for (int pi = 0; pi < 3; pi++)
        for (int causal = 0; causal < 2; causal++)
            for (int ti = 0; ti < 2; ti++) {
                bs_case c = {2, Ts[ti], NH, D, causal, 0, 0, *ps[pi]};
                check(G, bf, &c);
            }
    // padding: layout per batch row (nb = B), descriptor kv_len, both
    for (int causal = 0; causal < 2; causal++) {
        bs_case a = {4, 1000, NH, D, causal, 1, 0, LGR};
        check(G, bf, &a);
        bs_case b = {4, 1000, NH, D, causal, 0, 1, BFLY};
        check(G, bf, &b);
        bs_case both = {4, 700, NH, D, causal, 1, 1, LGR};
        check(G, bf, &both);
    }
}

Test(cuda_blocksparse, wgmma_d64, .timeout = 300) {
    pb_rng_seed(&rng, 1);
    pattern_sweep(G16, 1, 64, 3);
}

Test(cuda_blocksparse, wgmma_d128, .timeout = 300) {
    pb_rng_seed(&rng, 2);
    pattern_sweep(G16, 1, 128, 2);
}

Test(cuda_blocksparse, wgmma_d32, .timeout = 300) {
    pb_rng_seed(&rng, 8);
    pattern_sweep(G16, 1, 32, 4);
}

// past WG_LONG (2048): the dK/dV kernel's long-sequence shape (BQ 128 at D 64)
Test(cuda_blocksparse, wgmma_long, .timeout = 300) {
    pb_rng_seed(&rng, 3);
    bs_case a = {1, 2500, 2, 64, 1, 0, 0, LGR};
    check(G16, 1, &a);
    bs_case b = {1, 2500, 1, 128, 0, 0, 0, BFLY};
    check(G16, 1, &b);
    bs_case c = {1, 2500, 2, 32, 1, 0, 0, LGR};
    check(G16, 1, &c);
}

Test(cuda_blocksparse, fp32_table, .timeout = 300) {
    pb_rng_seed(&rng, 4);
    pattern_sweep(G32, 0, 64, 2);
    bs_case c = {2, 300, 2, 40, 1, 0, 1, LGR};  // a head dim no tile is
    check(G32, 0, &c);
}

// the bf16 table at head dims wgmma does not run: the fp32-arithmetic kernel on bf16
Test(cuda_blocksparse, bf16_other_head_dims, .timeout = 120) {
    pb_rng_seed(&rng, 5);
    bs_case a = {2, 300, 2, 48, 1, 0, 0, LGR};
    check(G16, 1, &a);
    bs_case b = {2, 1000, 1, 96, 0, 1, 0, BFLY};
    check(G16, 1, &b);
}

// A query block row of zeros and a key block column of zeros (attn_bs_from_mask): those rows
// give out 0, lse -inf, dq 0 and those keys dk = dv = 0, no NaN, on every table.
static void empty_rows(const pb_ops *G, int bf, int D, int causal) {
    int T = 640, n = 5, B = 2, NH = 2;
    uint8_t m[25];
    for (int i = 0; i < 25; i++) m[i] = (uint8_t)((i * 7 + 3) % 3 != 0 || i % 6 == 0);
    for (int j = 0; j < n; j++) m[2 * n + j] = 0;  // query block 2: nothing
    for (int i = 0; i < n; i++) m[i * n + 3] = 0;  // key block 3: nobody
    char err[256];
    pb_block_layout *l = attn_bs_from_mask(m, 128, T, 1, 1, causal, NULL, err, sizeof err);
    cr_assert(l, "%s", err);
    bs_case c = {B, T, NH, D, causal, 0, 0, DENSE};
    int32_t kv[2] = {T, T};
    run_case(G, bf, &c, l, kv);  // the CPU gives 0 / -inf there (tests/test_blocksparse.c)
    // and exactly so on the GPU: forward once more, read the rows of query block 2
    int C = NH * D;
    size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
    pb_attn_desc d = {B, T, T, NH, D, 1.0f / sqrtf((float)D), causal, NULL, l, 0, 0};
    const pb_attn_impl *im = pb_attn_choose(G, "blocksparse", &d, err, sizeof err);
    cr_assert(im, "%s", err);
    float *qkv = rand_vals(&rng, n3, 1.0f, bf);
    float *g_qkv = to_dev(G, qkv, n3, bf), *g_out = G->alloc(n1 * 4), *g_lse = G->alloc(nl * 4);
    poison_dev(G, g_out, n1, bf);
    im->forward(g_out, g_lse, g_qkv, &d);
    float *o = to_host(G, g_out, n1, bf), *ls = to_host(G, g_lse, nl, 0);
    size_t bad_o = 0, bad_l = 0;
    for (int b = 0; b < B; b++)
        for (int t = 256; t < 384; t++) {
            for (int e = 0; e < C; e++) bad_o += o[((size_t)b * T + t) * C + e] != 0.0f;
            for (int h = 0; h < NH; h++) bad_l += ls[((size_t)b * NH + h) * T + t] != -INFINITY;
        }
    cr_expect(bad_o == 0 && bad_l == 0, "%s D%d causal %d: %zu out not 0, %zu lse not -inf",
              bf ? "bf16" : "fp32", D, causal, bad_o, bad_l);
    G->free(g_qkv), G->free(g_out), G->free(g_lse);
    free(qkv), free(o), free(ls);
    attn_bs_free(l);
}

Test(cuda_blocksparse, empty_rows, .timeout = 120) {
    pb_rng_seed(&rng, 6);
    for (int causal = 0; causal < 2; causal++) {
        empty_rows(G16, 1, 64, causal);
        empty_rows(G16, 1, 128, causal);
        empty_rows(G16, 1, 32, causal);
        empty_rows(G32, 0, 64, causal);
    }
}

// The dense pattern equals the dense wgmma kernel closely (same kernels, same tiles; only
// the order of the diagonal block differs when causal).
Test(cuda_blocksparse, dense_pattern_equals_wgmma, .timeout = 120) {
    pb_rng_seed(&rng, 7);
    for (int D = 32; D <= 128; D *= 2)
        for (int causal = 0; causal < 2; causal++) {
            int B = 2, T = 1000, NH = 2, C = NH * D;
            size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
            char err[256], what[128];
            pb_block_layout *l = attn_bs_build(&DENSE, T, NH, causal, NULL, B, err, sizeof err);
            cr_assert(l, "%s", err);
            pb_attn_desc dd = {B, T, T, NH, D, 1.0f / sqrtf((float)D), causal, NULL, NULL, 0, 0};
            pb_attn_desc ds = dd;
            ds.layout = l;
            float *qkv = rand_vals(&rng, n3, 1.0f, 1), *dout = rand_vals(&rng, n1, 1.0f, 1);
            float *g_qkv = to_dev(G16, qkv, n3, 1), *g_dout = to_dev(G16, dout, n1, 1);
            float *o[2], *ls[2], *dq[2];
            for (int k = 0; k < 2; k++) {
                const pb_attn_impl *im = k ? &attn_cuda_blocksparse_bf16 : &attn_cuda_wgmma;
                const pb_attn_desc *d = k ? &ds : &dd;
                cr_assert(!im->supports(d), "%s", im->supports(d));
                float *go = G16->alloc(n1 * 2), *gl = G16->alloc(nl * 4), *gq = G16->alloc(n3 * 2);
                G16->zero(gq, n3 * 2);
                im->forward(go, gl, g_qkv, d);
                im->backward(gq, g_dout, go, gl, g_qkv, d);
                o[k] = to_host(G16, go, n1, 1), ls[k] = to_host(G16, gl, nl, 0);
                dq[k] = to_host(G16, gq, n3, 1);
                G16->free(go), G16->free(gl), G16->free(gq);
            }
            snprintf(what, sizeof what, "dense pattern vs wgmma D%d c%d out", D, causal);
            expect_close(what, o[1], o[0], n1, 5e-3);
            snprintf(what, sizeof what, "dense pattern vs wgmma D%d c%d lse", D, causal);
            expect_close(what, ls[1], ls[0], nl, 1e-5);
            snprintf(what, sizeof what, "dense pattern vs wgmma D%d c%d dqkv", D, causal);
            expect_close(what, dq[1], dq[0], n3, 5e-3);
            for (int k = 0; k < 2; k++) free(o[k]), free(ls[k]), free(dq[k]);
            G16->free(g_qkv), G16->free(g_dout);
            free(qkv), free(dout);
            attn_bs_free(l);
        }
}

// What the CUDA implementation refuses, by name: a block of 64 (naming both sizes), no
// layout; and the dense kernels refuse layouts.
Test(cuda_blocksparse, refusals) {
    char err[256];
    bs_params p64 = LGR;
    p64.block = 64;
    pb_block_layout *l = attn_bs_build(&p64, 512, 2, 1, NULL, 1, err, sizeof err);
    cr_assert(l, "%s", err);
    pb_attn_desc d = {1, 512, 512, 2, 64, 0.125f, 1, NULL, l, 0, 0};
    const char *why = attn_bs_cuda_supports(&d);
    cr_expect(why && strstr(why, "64 x 64") && strstr(why, "128 x 128"), "%s", why ? why : "");
    cr_expect(pb_attn_choose(G16, "blocksparse", &d, err, sizeof err) == NULL);
    cr_expect(strstr(err, "64 x 64") != NULL, "%s", err);
    cr_expect(pb_attn_choose(G32, "blocksparse", &d, err, sizeof err) == NULL);
    cr_expect(attn_cuda_wgmma.supports(&d) != NULL && attn_cuda_flash.supports(&d) != NULL);
    cr_expect(pb_attn_choose(G16, "wgmma", &d, err, sizeof err) == NULL);
    attn_bs_free(l);
    d.layout = NULL;
    why = attn_bs_cuda_supports(&d);
    cr_expect(why && strstr(why, "no block-sparse layout"), "%s", why ? why : "");
    // a layout of 128 at D 192: the head dim named
    l = attn_bs_build(&LGR, 512, 2, 1, NULL, 1, err, sizeof err);
    pb_attn_desc e = {1, 512, 512, 2, 192, 0.07f, 1, NULL, l, 0, 0};
    why = attn_bs_cuda_supports(&e);
    cr_expect(why && strstr(why, "head dim 192"), "%s", why ? why : "");
    e.D = 64;
    cr_expect(attn_bs_cuda_supports(&e) == NULL, "%s", attn_bs_cuda_supports(&e));
    e.causal = 0;  // the layout's causal flag must match
    cr_expect(attn_bs_cuda_supports(&e) != NULL);
    attn_bs_free(l);
}
