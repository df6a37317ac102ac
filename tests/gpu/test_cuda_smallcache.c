// test_cuda_smallcache.c: the CUDA small-cache attention (kernels/attention/smallcache_cuda.cu)
// against the CPU small-cache attention (kernels/attention/smallcache.c, fp32, its own tiled
// loops) on the same inputs rounded to bf16: out, lse and dqkv at head dims 256, 512 and
// 1024, T of no particular multiple, causal and not, key padding, several (b, h) pairs with
// the chunk loop forced by a tiny budget; which descriptors it refuses and where auto picks
// it. GPU machine only: make test-gpu.
//
// Tolerances (relative L2 error ||gpu - cpu|| / ||cpu||):
//   1e-2  bf16 tensors: out and dqkv are stored in bf16 (one rounding: 2^-9 at most, RMS
//         ~1.1e-3), and P and dS are bf16 operands of the second products (a second
//         rounding of the same size inside), as in the wgmma kernels, which reach ~4e-3 on
//         the same inputs; 1e-2 leaves a margin of 2.5x and stays far below an indexing or
//         masking bug (errors of order 1). lse is fp32 from fp32 scores, checked at 1e-4
//         (only the products' summation order and __expf differ).
//   1e-4  fp32 tensors: every product in full fp32 (TF32 stays off), the same algorithm;
//         summation order and __expf (2 ulp) only.
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
#include "tests/gpu/compare.h"

static const pb_ops *G16;  // CUDA, bf16 mixed precision
static const pb_ops *G32;  // CUDA, fp32

static void setup(void) {
    cr_assert(pb_cuda_available(), "make test-gpu needs a GPU: %s", pb_cuda_unavailable_reason());
    G16 = pb_ops_cuda_bf16();
    G32 = pb_ops_cuda();
}

TestSuite(smallcache, .init = setup);

static pb_rng rng;

// inputs exact in bf16 (rand_vals), device copies of either element type (to_dev, to_host)
// and NaN-poisoned outputs (poison_dev): compare.h

static pb_attn_desc desc(int B, int T, int NH, int D, int causal, const int32_t *kv_len) {
    return (pb_attn_desc){B, T, T, NH, D, 1.0f / sqrtf((float)D), causal, kv_len, NULL, 0, 0};
}

// The CUDA smallcache of table G (bf16 or fp32 tensors) against the CPU smallcache on
// (B,T,NH,D), key padding of pattern (compare.h; -1: none). Returns the GPU dqkv (host, the
// caller frees) for the determinism check.
static float *check(int bf, int B, int T, int NH, int D, int causal, int pattern) {
    const pb_ops *G = bf ? G16 : G32;
    const pb_attn_impl *im = bf ? &attn_cuda_smallcache_bf16 : &attn_cuda_smallcache;
    double tol = bf ? 1e-2 : 1e-4;
    int C = NH * D;
    size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
    int32_t *kv = pb_malloc((size_t)B * 4), *d_kv = kv_pattern_dev(G, kv, B, T, pattern);
    pb_attn_desc d = desc(B, T, NH, D, causal, d_kv), hd = desc(B, T, NH, D, causal,
                                                                 pattern >= 0 ? kv : NULL);
    cr_assert(!im->supports(&d), "%s", im->supports(&d));
    cr_assert(!attn_smallcache_supports(&hd), "%s", attn_smallcache_supports(&hd));
    char what[160], tag[96];
    snprintf(tag, sizeof tag, "%s B%d T%-4d NH%d D%-4d causal%d kv %s", bf ? "bf16" : "fp32", B,
             T, NH, D, causal, pattern >= 0 ? KV_NAMES[pattern] : "-");

    float *qkv = rand_vals(&rng, n3, 1.0f, 1), *out = pb_malloc(n1 * 4), *lse = pb_malloc(nl * 4);
    attn_smallcache_forward(out, lse, qkv, &hd);
    float *d_qkv = to_dev(G, qkv, n3, bf), *d_out = G->alloc(n1 * (bf ? 2 : 4));
    float *d_lse = G->alloc(nl * 4);
    poison_dev(G, d_out, n1, bf);
    poison_dev(G, d_lse, nl, 0);
    im->forward(d_out, d_lse, d_qkv, &d);
    float *h = to_host(G, d_out, n1, bf);
    snprintf(what, sizeof what, "fwd out %s", tag);
    expect_close(what, h, out, n1, tol);
    free(h);
    h = to_host(G, d_lse, nl, 0);
    snprintf(what, sizeof what, "fwd lse %s", tag);
    expect_close(what, h, lse, nl, 1e-4);
    free(h);

    // the backward from the reference's out (rounded as the GPU's bf16 out) and lse; dqkv
    // starts small (as the model's 0) so that a bf16 accumulator does not round the
    // increments to its own ulp
    if (bf)
        for (size_t i = 0; i < n1; i++) out[i] = round_bf(out[i]);
    float *dout = rand_vals(&rng, n1, 1.0f, 1), *dqkv = rand_vals(&rng, n3, 1e-3f, 1);
    float *dqkv0 = copy_host(dqkv, n3);
    attn_smallcache_backward(dqkv, dout, out, lse, qkv, &hd);
    float *d_dout = to_dev(G, dout, n1, bf), *d_out2 = to_dev(G, out, n1, bf);
    float *d_dqkv = to_dev(G, dqkv0, n3, bf);
    G->upload(d_lse, lse, nl * 4);
    im->backward(d_dqkv, d_dout, d_out2, d_lse, d_qkv, &d);
    h = to_host(G, d_dqkv, n3, bf);
    float *inc = copy_host(h, n3), *rinc = copy_host(dqkv, n3);
    for (size_t i = 0; i < n3; i++) inc[i] -= dqkv0[i], rinc[i] -= dqkv0[i];
    snprintf(what, sizeof what, "bwd dqkv %s", tag);
    expect_close(what, inc, rinc, n3, tol);
    if (pattern >= 0) expect_padding_untouched(what, h, dqkv0, kv, B, T, C);

    free(inc), free(rinc);
    G->free(d_qkv), G->free(d_out), G->free(d_lse), G->free(d_dout), G->free(d_out2);
    G->free(d_dqkv);
    if (d_kv) G->free(d_kv);
    free(qkv), free(out), free(lse), free(dout), free(dqkv), free(dqkv0), free(kv);
    return h;
}

// ----------------------------------------------------------------------------
// numbers

Test(smallcache, d256) {
    pb_rng_seed(&rng, 1);
    free(check(1, 1, 77, 2, 256, 1, -1));
    free(check(1, 2, 300, 2, 256, 0, -1));
    free(check(1, 2, 300, 3, 256, 1, KV_RAGGED));
    free(check(1, 2, 1000, 1, 256, 1, -1));
    free(check(1, 3, 1000, 1, 256, 0, KV_RAGGED));
    free(check(1, 2, 200, 1, 256, 1, KV_ONE));
}

Test(smallcache, d512) {
    pb_rng_seed(&rng, 2);
    free(check(1, 1, 300, 2, 512, 1, -1));
    free(check(1, 2, 300, 1, 512, 0, KV_RAGGED));
    free(check(1, 1, 1000, 2, 512, 1, KV_RAGGED));
    free(check(1, 1, 1000, 1, 512, 0, -1));
}

Test(smallcache, d1024) {
    pb_rng_seed(&rng, 3);
    free(check(1, 1, 77, 2, 1024, 0, -1));
    free(check(1, 1, 300, 2, 1024, 1, KV_RAGGED));
    free(check(1, 1, 1000, 1, 1024, 1, -1));
}

// other head dims the rule admits (multiples of 8, below and above 128), and T beyond 4096,
// where the causal row blocks grow to 1024 queries (4133 = 4 x 1024 + 37) and 2048 (8300)
Test(smallcache, other_shapes) {
    pb_rng_seed(&rng, 4);
    free(check(1, 2, 130, 2, 64, 1, -1));
    free(check(1, 1, 257, 2, 200, 0, KV_RAGGED));
    free(check(1, 1, 4133, 1, 256, 1, -1));
    free(check(1, 1, 1, 2, 256, 1, -1));
    // the forward row kernel's register row at 8 float4 per thread (ld 8320 > 4 x 4 x 512)
    free(check(1, 1, 8300, 1, 8, 1, KV_RAGGED));
}

// Batches over batch rows at one head (more whole rows in a chunk than heads: one product
// per head and row block over all the rows), causal at T not a multiple of the row block
// (forced to 128 queries: 300 = 2 x 128 + 44), with key padding; and the same beside
// partial rows in one chunk (budget 7 pairs of 10:
// chunk [0, 7) is 3 whole rows by head plus one head of row 3, chunk [7, 10) the rest of
// row 3 by itself and row 4 as a batch over its heads).
Test(smallcache, row_batches) {
    pb_rng_seed(&rng, 8);
    attn_smallcache_cuda_set_rows(128);
    free(check(1, 5, 300, 2, 256, 1, KV_RAGGED));
    free(check(1, 9, 77, 3, 256, 0, -1));
    free(check(0, 5, 300, 2, 256, 1, -1));
    attn_smallcache_cuda_set_budget((size_t)7 * 300 * 320 * 6);
    free(check(1, 5, 300, 2, 256, 1, KV_RAGGED));
    free(check(1, 5, 600, 2, 512, 1, -1));
    attn_smallcache_cuda_set_budget(0);
    attn_smallcache_cuda_set_rows(0);
}

// the fp32 table: the same code on fp32 tensors
Test(smallcache, fp32) {
    pb_rng_seed(&rng, 5);
    free(check(0, 2, 300, 2, 256, 1, KV_RAGGED));
    free(check(0, 1, 77, 1, 512, 0, -1));
}

// The chunk loop: one (b, h) pair at a time (a budget below one pair), then three pairs at
// a time (chunks that start mid batch row, so a chunk's products run in two segments); the
// same numbers, and the default budget restored.
Test(smallcache, chunks) {
    pb_rng_seed(&rng, 6);
    attn_smallcache_cuda_set_budget(1);
    pb_attn_desc d = desc(3, 300, 2, 256, 1, NULL);
    cr_expect(attn_smallcache_cuda_scratch_bytes(&d, PB_DTYPE_BF16) == 300 * 320 * 6,
              "%zu", attn_smallcache_cuda_scratch_bytes(&d, PB_DTYPE_BF16));
    free(check(1, 3, 300, 2, 256, 1, KV_RAGGED));
    free(check(0, 3, 77, 2, 256, 0, -1));
    attn_smallcache_cuda_set_budget((size_t)3 * 300 * 320 * 6);
    cr_expect(attn_smallcache_cuda_scratch_bytes(&d, PB_DTYPE_BF16) == 3 * 300 * 320 * 6);
    free(check(1, 3, 300, 2, 256, 1, KV_RAGGED));
    free(check(1, 2, 1000, 3, 256, 0, KV_RAGGED));
    attn_smallcache_cuda_set_budget(0);
    cr_expect(attn_smallcache_cuda_scratch_bytes(&d, PB_DTYPE_BF16) == 6 * 300 * 320 * 6);
}

// bit-identical gradients on a repeat (cuBLASLt products and fixed reduction trees)
Test(smallcache, deterministic) {
    pb_rng_seed(&rng, 7);
    float *a = check(1, 2, 300, 2, 256, 1, KV_RAGGED);
    pb_rng_seed(&rng, 7);
    float *b = check(1, 2, 300, 2, 256, 1, KV_RAGGED);
    size_t n3 = (size_t)2 * 300 * 3 * 512;
    cr_expect(memcmp(a, b, n3 * sizeof(float)) == 0, "two runs gave different dqkv");
    free(a), free(b);
}

// ----------------------------------------------------------------------------
// what it runs, and where auto picks it

Test(smallcache, supports) {
    pb_attn_desc d = desc(2, 64, 4, 100, 1, NULL);
    const char *why = attn_smallcache_cuda_supports(&d);
    cr_expect(why && strstr(why, "head dim 100") && strstr(why, "multiples of 8"), "%s",
              why ? why : "(null)");
    d = desc(1, 40000, 1, 256, 1, NULL);
    why = attn_smallcache_cuda_supports(&d);
    cr_expect(why && strstr(why, "T above 32768"), "%s", why ? why : "(null)");
    d = desc(2, 64, 4, 256, 1, NULL);
    d.Tk = 32;
    cr_expect(attn_smallcache_cuda_supports(&d) != NULL);
    d = desc(1, 32768, 1, 1024, 0, NULL);
    cr_expect(attn_smallcache_cuda_supports(&d) == NULL);
}

Test(smallcache, choose) {
    char err[512] = "";
    pb_attn_desc d = desc(2, 64, 4, 256, 1, NULL);
    cr_expect(pb_attn_choose(G16, "auto", &d, err, sizeof err) == &attn_cuda_smallcache_bf16);
    cr_expect(pb_attn_choose(G16, "smallcache", &d, err, sizeof err) ==
              &attn_cuda_smallcache_bf16);
    cr_expect(pb_attn_choose(G32, "auto", &d, err, sizeof err) == &attn_cuda_smallcache);
    d.D = 512;
    cr_expect(pb_attn_choose(G16, "auto", &d, err, sizeof err) == &attn_cuda_smallcache_bf16);
    d.D = 1024;
    cr_expect(pb_attn_choose(G16, "", &d, err, sizeof err) == &attn_cuda_smallcache_bf16);
    // the fused kernels stay first where they run (wgmma at D 32, 64 and 128 in bf16)
    d.D = 128;
    cr_expect(pb_attn_choose(G16, "auto", &d, err, sizeof err) == &attn_cuda_wgmma);
    cr_expect(pb_attn_choose(G16, "smallcache", &d, err, sizeof err) ==
              &attn_cuda_smallcache_bf16);
    d.D = 64;
    cr_expect(pb_attn_choose(G16, "auto", &d, err, sizeof err) == &attn_cuda_wgmma);
    cr_expect(pb_attn_choose(G32, "auto", &d, err, sizeof err) == &attn_cuda_flash);
    d.D = 32;
    cr_expect(pb_attn_choose(G16, "auto", &d, err, sizeof err) == &attn_cuda_wgmma);
    // nothing runs an odd head dim above 128; a named smallcache says why
    d.D = 161;
    cr_expect(pb_attn_choose(G16, "auto", &d, err, sizeof err) == NULL);
    cr_expect(strstr(err, "smallcache: head dim 161") != NULL, "%s", err);
    cr_expect(pb_attn_choose(G16, "smallcache", &d, err, sizeof err) == NULL);
    cr_expect(strstr(err, "head dim 161 (it runs multiples of 8)") != NULL, "%s", err);
}
