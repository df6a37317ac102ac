// test_transformer.c: the transformer block (model/transformer.c) against a float64 PyTorch
// reference (tests/fixtures/transformer_block.bin, gen_block_fixture.py): the output and
// every gradient of sum(out * R) for
//   post: a post-LN block (BERT): bidirectional attention with key padding (kv_len 7, 1, 5),
//         erf GELU, LayerNorm eps 1e-12;
//   pre:  a one-block pre-LN stack (GPT-2): causal attention, tanh GELU, eps 1e-5, ln_f,
// with each CPU attention implementation, and both again with dropout (post_drop, pre_drop:
// the fixture draws the masks from kernels/dropout.h's hash, written again in Python), and
// with dropout on the attention probabilities as well (post_drop_attn, pre_drop_attn: the
// layer's key as model/transformer.c derives it, written again there too).
// Padding rows are real rows (their queries attend to the visible keys), so every row is
// compared.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/ops.h"
#include "model/transformer.h"
#include "tests/fixture.h"

#define FIXTURE "tests/fixtures/transformer_block.bin"

// fp32 against float64: the block's values are O(1-5); measured worst errors are below 1e-6 of
// the largest value. 2e-5 of the largest |reference| leaves a wide margin and is still far
// below what a wrong mask, epsilon or GELU changes (~1e-2 and up).
#define RTOL 2e-5

static const void *rec(const char *cs, const char *name, size_t numel) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", cs, name);
    const fx_record *r = fx_get(full);
    cr_assert_eq(r->numel, numel, "%s has %zu values, expected %zu", full, r->numel, numel);
    return r->data;
}

static void expect_close(const char *what, const float *got, const float *want, size_t n) {
    double scale = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (e > worst) worst = e, at = i;
    }
    cr_expect(worst <= RTOL * scale, "%s: max |diff| %g at %zu (got %g, want %g) > %g * %g",
              what, worst, at, (double)got[at], (double)want[at], RTOL, scale);
}

// The 12 block tensors (and ln_f's 2 in a pre-LN stack): fixture name, and rows and
// columns in multiples of C (0 columns: a vector).
static const struct { const char *name; int rows, cols; } tensors[14] = {
    {"ln1w", 1, 0},     {"ln1b", 1, 0},     {"qkvw", 3, 1}, {"qkvb", 3, 0},
    {"attprojw", 1, 1}, {"attprojb", 1, 0}, {"ln2w", 1, 0}, {"ln2b", 1, 0},
    {"fcw", 4, 1},      {"fcb", 4, 0},      {"fcprojw", 1, 4}, {"fcprojb", 1, 0},
    {"lnfw", 1, 0},     {"lnfb", 1, 0},
};

static size_t numel_of(int k, int C) {
    return (size_t)tensors[k].rows * C * (tensors[k].cols ? (size_t)tensors[k].cols * C : 1);
}

// Points the 12 (or 14) slots of a block's weights (and ln_f) at fresh buffers, copied from
// the fixture's records (prefix "" for values, "d." for the reference gradients) or zeroed.
static void weights(const pb_ops *ops, const char *cs, int C, int nt, tf_weights *w,
                    tf_layer_weights *h, int zero) {
    float **slots[14] = {&h->ln1w, &h->ln1b, &h->qkvw, &h->qkvb, &h->attprojw, &h->attprojb,
                         &h->ln2w, &h->ln2b, &h->fcw, &h->fcb, &h->fcprojw, &h->fcprojb,
                         &w->lnfw, &w->lnfb};
    w->h = h;
    w->lnfw = w->lnfb = NULL;
    for (int k = 0; k < nt; k++) {
        size_t n = numel_of(k, C);
        *slots[k] = ops->alloc(n * sizeof(float));
        if (!zero) memcpy(*slots[k], rec(cs, tensors[k].name, n), n * sizeof(float));
    }
}

static void run_case(const char *cs, const char *attention) {
    fx_load(FIXTURE);
    const int32_t *cfg = rec(cs, "config", 6);
    int B = cfg[0], T = cfg[1], C = cfg[2], NH = cfg[3], post = cfg[4], causal = cfg[5];
    int N = B * T, nt = post ? 12 : 14;
    const pb_ops *ops = pb_ops_cpu();
    tf_config tc = {1, C, NH, post, post ? PB_GELU_ERF : PB_GELU_TANH, post ? 1e-12f : 1e-5f,
                    4 * C, 0.0f, 0.0f};

    tf_layer_weights h, dh;
    tf_weights w, dw;
    weights(ops, cs, C, nt, &w, &h, 0);
    weights(ops, cs, C, nt, &dw, &dh, 1);
    tf_layer_acts la;
    tf_acts acts = {.h = &la};
    if (strstr(cs, "_drop")) {  // the masks the fixture drew from this p and key
        const uint32_t *k = rec(cs, "drop_key", 2);
        tc.dropout = acts.drop_p = *(const float *)rec(cs, "drop_p", 1);
        acts.drop_key = (uint64_t)k[1] << 32 | k[0];
    }
    if (strstr(cs, "_attn"))  // and the attention probabilities' mask, keyed per layer
        tc.attn_dropout = acts.attn_drop_p = *(const float *)rec(cs, "attn_drop_p", 1);
    tf_grads g = {0};  // no layer hook
    size_t abytes = 0, gbytes = 0, off = 0;
    tf_map_acts(&tc, N, (size_t)N * NH, 4, &acts, NULL, &abytes);
    tf_map_grads(&tc, N, 4, ops->matmul_backward_gelu != NULL, &g, NULL, &gbytes);
    void *amem = ops->alloc(abytes), *gmem = ops->alloc(gbytes);
    tf_map_acts(&tc, N, (size_t)N * NH, 4, &acts, amem, &off);
    off = 0;
    tf_map_grads(&tc, N, 4, ops->matmul_backward_gelu != NULL, &g, gmem, &off);

    int32_t *kv_len = ops->alloc((size_t)B * sizeof(int32_t));
    memcpy(kv_len, rec(cs, "kv_len", B), (size_t)B * sizeof(int32_t));
    pb_attn_desc d = tf_self_attention(&tc, B, T, causal, post ? kv_len : NULL);
    char err[512];
    const pb_attn_impl *a = pb_attn_choose(ops, attention, &d, err, sizeof err);
    cr_assert(a, "%s", err);
    cr_assert_str_eq(a->name, attention);

    float *x = ops->alloc((size_t)N * C * sizeof(float));
    memcpy(x, rec(cs, "x", (size_t)N * C), (size_t)N * C * sizeof(float));
    tf_attn_dropout(&d, &tc, &acts);
    const void *ctx[2];
    const float *y = tf_forward(ops, &tc, &w, &acts, x, N, tf_attend_desc(a, &d, ctx));
    char what[96];
    snprintf(what, sizeof what, "%s/%s out", cs, attention);
    expect_close(what, y, rec(cs, "out", (size_t)N * C), (size_t)N * C);

    tf_backward_begin(ops, &tc, &g, N);
    memcpy(g.out, rec(cs, "R", (size_t)N * C), (size_t)N * C * sizeof(float));
    tf_backward(ops, &tc, &w, &dw, &acts, &g, x, N, a, &d);
    snprintf(what, sizeof what, "%s/%s d.x", cs, attention);
    expect_close(what, g.stream, rec(cs, "d.x", (size_t)N * C), (size_t)N * C);
    float **got[14] = {&dh.ln1w, &dh.ln1b, &dh.qkvw, &dh.qkvb, &dh.attprojw, &dh.attprojb,
                       &dh.ln2w, &dh.ln2b, &dh.fcw, &dh.fcb, &dh.fcprojw, &dh.fcprojb,
                       &dw.lnfw, &dw.lnfb};
    for (int k = 0; k < nt; k++) {
        char name[32];
        snprintf(name, sizeof name, "d.%s", tensors[k].name);
        snprintf(what, sizeof what, "%s/%s %s", cs, attention, name);
        expect_close(what, *got[k], rec(cs, name, numel_of(k, C)), numel_of(k, C));
    }
}

// with dropout (p = 0.3) on both branch outputs: the forward's masks, and the backward's
Test(transformer, post_ln_block_dropout) { run_case("post_drop", "flash"); }
Test(transformer, pre_ln_stack_dropout) { run_case("pre_drop", "naive"); }
// and on the attention probabilities (p = 0.25), each CPU implementation that drops
Test(transformer, post_ln_block_attention_dropout) {
    run_case("post_drop_attn", "naive");
    run_case("post_drop_attn", "flash");
}
Test(transformer, pre_ln_stack_attention_dropout) {
    run_case("pre_drop_attn", "naive");
    run_case("pre_drop_attn", "flash");
}
Test(transformer, post_ln_block_with_padding_naive) { run_case("post", "naive"); }
Test(transformer, post_ln_block_with_padding_flash) { run_case("post", "flash"); }
Test(transformer, pre_ln_stack_causal_naive) { run_case("pre", "naive"); }
Test(transformer, pre_ln_stack_causal_flash) { run_case("pre", "flash"); }

// The dropout op itself (kernels/dropout.h): a share 1 - p of the elements kept, within 5
// standard deviations of the binomial; each kept one scaled by 1 / (1 - p) exactly, the others
// 0; the same key gives the same elements (the backward's mask), another key others; p = 0
// keeps everything unscaled.
Test(dropout, op_keeps_a_share_1_minus_p_and_scales) {
    const pb_ops *ops = pb_ops_cpu();
    size_t n = 1 << 20;
    float *x = pb_malloc(n * sizeof(float)), *y = pb_malloc(n * sizeof(float));
    float *z = pb_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 1.0f + (float)(i % 1000) * 1e-3f;
    const float ps[3] = {0.1f, 0.5f, 0.0f};
    for (int k = 0; k < 3; k++) {
        float p = ps[k], sc = 1.0f / (1.0f - p);
        ops->dropout(y, x, n, 42, p);
        ops->dropout(z, x, n, 43, p);
        size_t kept = 0, both = 0, bad = 0;
        for (size_t i = 0; i < n; i++) {
            kept += y[i] != 0.0f;
            both += y[i] != 0.0f && z[i] != 0.0f;
            bad += y[i] != 0.0f && y[i] != x[i] * sc;
        }
        double mean = n * (1.0 - p), sd = sqrt(n * p * (1.0 - p));
        cr_expect(fabs((double)kept - mean) <= 5 * sd + 0.5, "p %g: kept %zu of %zu", p, kept, n);
        cr_expect(bad == 0, "p %g: %zu kept elements not scaled by 1/(1-p)", p, bad);
        // two keys: independent draws keep (1-p)^2 of the elements together
        double m2 = n * (1.0 - p) * (1.0 - p), sd2 = sqrt(m2 * (1.0 - (1.0 - p) * (1.0 - p)));
        cr_expect(fabs((double)both - m2) <= 5 * sd2 + 0.5, "p %g: keys 42 and 43 share %zu", p,
                  both);
        // in place, on a gradient: the same key drops the same elements
        memcpy(z, x, n * sizeof(float));
        ops->dropout(z, z, n, 42, p);
        cr_expect(memcmp(y, z, n * sizeof(float)) == 0, "p %g: in place differs", p);
    }
    free(x), free(y), free(z);
}
