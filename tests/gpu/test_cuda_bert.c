// test_cuda_bert.c: BERT's new ops and the whole BERT on the CUDA backend against the CPU
// backend (GPU machine only: make test-gpu), in both tables: the encoder's token-type row,
// tanh, rows by index, mean pooling and argmax op by op; then the whole tiny BERT with
// padding in the batch, MLM and classification heads, loss, logits, every gradient, and a
// few AdamW steps, and the bf16 table bit for bit between two runs; and the Pathfinder-32
// model (pre-LN, head dim 32, T 1024, dropout) against the CPU in both tables.
//
// Tolerances are those of test_cuda_ops.c (fp32: 1e-6 elementwise, 1e-5 reductions, 1e-4 a
// whole model's gradients) and test_cuda_bf16.c (bf16: 1e-2 an op, 5e-3 a whole model's loss,
// 3e-2 its gradients together); argmax and the gathers must be exact.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/cuda/cuda.h"
#include "model/bert.h"
#include "train/optim.h"
#include "tests/gpu/compare.h"

static const pb_ops *G, *G16, *H;
static pb_rng rng;

static void setup(void) {
    cr_assert(pb_cuda_available(), "make test-gpu needs a GPU: %s", pb_cuda_unavailable_reason());
    G = pb_ops_cuda();
    G16 = pb_ops_cuda_bf16();
    H = pb_ops_cpu();
    pb_rng_seed(&rng, 17);
}
TestSuite(cuda_bert, .init = setup);

// n values uniform in [-amp, amp), exact in bf16 (the low 16 bits cleared), so both tables
// start from the same numbers
static float *rand_bf(size_t n, float amp) {
    float *x = pb_malloc(n * sizeof(float) + 16);
    for (size_t i = 0; i < n; i++) {
        float v = (float)(amp * (2.0 * pb_rng_uniform(&rng) - 1.0));
        uint32_t b;
        memcpy(&b, &v, 4);
        b &= 0xFFFF0000u;
        memcpy(&x[i], &b, 4);
    }
    return x;
}

// A device buffer of o's activation type holding h (n floats), and back.
static float *dev(const pb_ops *o, const float *h, size_t n) {
    float *d = o->alloc(n * 4);
    if (o->act_dtype == PB_DTYPE_BF16) {
        uint16_t *b = pb_malloc(n * 2 + 16);
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &h[i], 4);
            b[i] = (uint16_t)(u >> 16);
        }
        o->upload(d, b, n * 2);
        free(b);
    } else {
        o->upload(d, h, n * 4);
    }
    return d;
}
static float *host(const pb_ops *o, const float *d, size_t n) {
    float *h = pb_malloc(n * 4 + 16);
    if (o->act_dtype == PB_DTYPE_BF16) {
        uint16_t *b = pb_malloc(n * 2 + 16);
        o->download(b, d, n * 2);
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)b[i] << 16;
            memcpy(&h[i], &u, 4);
        }
        free(b);
    } else {
        o->download(h, d, n * 4);
    }
    return h;
}
static int32_t *dev_i(const int32_t *h, int n) {
    int32_t *d = G->alloc((size_t)n * 4);
    G->upload(d, h, (size_t)n * 4);
    return d;
}

// ----------------------------------------------------------------------------
// the ops, on both tables

static void ops_of(const pb_ops *o) {
    int bf = o->act_dtype == PB_DTYPE_BF16;
    double tol_ew = bf ? 1e-2 : 1e-6, tol_red = bf ? 1e-2 : 1e-5;
    const char *tab = bf ? "bf16" : "fp32";
    char what[96];
    int B = 3, T = 37, C = 96, N = B * T, V = 50;
    int32_t tok[3 * 37], len[3] = {37, 20, 1};
    for (int i = 0; i < N; i++) tok[i] = (int32_t)(pb_rng_u64(&rng) % 7);  // repeats
    int32_t *dtok = dev_i(tok, N), *dlen = dev_i(len, B);

    // encoder with the token-type row: forward, and its gradient (column sums)
    float *wte = rand_bf((size_t)V * C, 1), *wpe = rand_bf((size_t)T * C, 1), *wtt = rand_bf(C, 1);
    float *out = pb_malloc((size_t)N * C * 4);
    H->encoder_forward(out, tok, NULL, wte, wpe, wtt, B, T, C);
    float *d_wte = dev(o, wte, (size_t)V * C), *d_wpe = dev(o, wpe, (size_t)T * C);
    float *d_wtt = dev(o, wtt, C), *d_out = o->alloc((size_t)N * C * 4);
    o->encoder_forward(d_out, dtok, NULL, d_wte, d_wpe, d_wtt, B, T, C);
    float *got = host(o, d_out, (size_t)N * C);
    snprintf(what, sizeof what, "%s encoder_forward with wtt", tab);
    expect_close(what, got, out, (size_t)N * C, tol_ew);
    free(got);
    float *g = rand_bf((size_t)N * C, 1), *gw = calloc((size_t)V * C, 4), *gp = calloc((size_t)T * C, 4);
    float *gt = calloc(C, 4);
    H->encoder_backward(gw, gp, gt, g, tok, NULL, B, T, C);
    float *d_g = dev(o, g, (size_t)N * C), *d_gw = G->alloc((size_t)V * C * 4);
    float *d_gp = G->alloc((size_t)T * C * 4), *d_gt = G->alloc((size_t)C * 4);
    o->encoder_backward(d_gw, d_gp, d_gt, d_g, dtok, NULL, B, T, C);
    float *gt_got = pb_malloc((size_t)C * 4);
    G->download(gt_got, d_gt, (size_t)C * 4);  // fp32 in both tables
    snprintf(what, sizeof what, "%s encoder_backward dwtt", tab);
    expect_close(what, gt_got, gt, C, 1e-5);
    free(gt_got);

    // the head's activations, tanh and ReLU, forward and backward (from the output)
    float *x = rand_bf((size_t)N * C, 3), *y = pb_malloc((size_t)N * C * 4);
    float *d_x = dev(o, x, (size_t)N * C), *d_y = o->alloc((size_t)N * C * 4);
    float *dx = rand_bf((size_t)N * C, 1), *dx0 = copy_host(dx, (size_t)N * C);
    for (int kind = PB_ACT_TANH; kind <= PB_ACT_RELU; kind++) {
        const char *an = kind == PB_ACT_RELU ? "relu" : "tanh";
        H->act_forward(y, x, (size_t)N * C, (pb_act)kind);
        o->act_forward(d_y, d_x, (size_t)N * C, (pb_act)kind);
        got = host(o, d_y, (size_t)N * C);
        snprintf(what, sizeof what, "%s act_forward %s", tab, an);
        expect_close(what, got, y, (size_t)N * C, tol_ew);
        // the backward from the GPU's own output, so both see the same out
        memcpy(dx, dx0, (size_t)N * C * 4);
        H->act_backward(dx, got, g, (size_t)N * C, (pb_act)kind);
        float *d_dx = dev(o, dx0, (size_t)N * C), *d_y2 = dev(o, got, (size_t)N * C);
        o->act_backward(d_dx, d_y2, d_g, (size_t)N * C, (pb_act)kind);
        free(got);
        got = host(o, d_dx, (size_t)N * C);
        for (size_t i = 0; i < (size_t)N * C; i++) got[i] -= dx0[i], dx[i] -= dx0[i];
        snprintf(what, sizeof what, "%s act_backward %s (increment)", tab, an);
        expect_close(what, got, dx, (size_t)N * C, bf ? 2e-2 : 1e-6);
        free(got);
        G->free(d_dx), G->free(d_y2);
    }

    // gather: exact copies; scatter_add: += at distinct rows
    int M = 17;
    int32_t idx[17];
    for (int i = 0; i < M; i++) idx[i] = (i * 31 + 5) % N;  // distinct: 31 is prime to 111
    int32_t *didx = dev_i(idx, M);
    float *d_sel = o->alloc((size_t)M * C * 4);
    o->gather_rows(d_sel, d_x, didx, M, C);
    got = host(o, d_sel, (size_t)M * C);
    for (int i = 0; i < M; i++)
        cr_expect(memcmp(got + (size_t)i * C, x + (size_t)idx[i] * C, (size_t)C * 4) == 0,
                  "%s gather_rows: row %d differs", tab, i);
    free(got);
    float *acc = copy_host(dx0, (size_t)N * C);
    H->scatter_add_rows(acc, g, idx, M, C);
    float *d_acc = dev(o, dx0, (size_t)N * C);
    o->scatter_add_rows(d_acc, d_g, didx, M, C);
    got = host(o, d_acc, (size_t)N * C);
    snprintf(what, sizeof what, "%s scatter_add_rows", tab);
    expect_close(what, got, acc, (size_t)N * C, tol_ew);
    free(got);

    // mean pooling over the unpadded positions, and its backward
    float *pool = pb_malloc((size_t)B * C * 4), *d_pool = o->alloc((size_t)B * C * 4);
    H->mean_pool_forward(pool, x, len, NULL, B, T, C);
    o->mean_pool_forward(d_pool, d_x, dlen, NULL, B, T, C);
    got = host(o, d_pool, (size_t)B * C);
    snprintf(what, sizeof what, "%s mean_pool_forward", tab);
    expect_close(what, got, pool, (size_t)B * C, tol_red);
    free(got);
    float *pg = rand_bf((size_t)B * C, 1), *d_pg = dev(o, pg, (size_t)B * C);
    float *pin = copy_host(dx0, (size_t)N * C), *d_pin = dev(o, dx0, (size_t)N * C);
    H->mean_pool_backward(pin, pg, len, NULL, B, T, C);
    o->mean_pool_backward(d_pin, d_pg, dlen, NULL, B, T, C);
    got = host(o, d_pin, (size_t)N * C);
    snprintf(what, sizeof what, "%s mean_pool_backward", tab);
    expect_close(what, got, pin, (size_t)N * C, tol_ew);
    free(got);

    // argmax of each row over the first V of Vp columns: exactly the CPU's, ties included
    int R = 64, Vr = 1000, Vpr = 1024;
    float *lg = rand_bf((size_t)R * Vpr, 4);
    for (int r = 0; r < R; r += 5) lg[(size_t)r * Vpr + 3] = lg[(size_t)r * Vpr + 900] = 9.0f;  // a tie
    for (int r = 0; r < R; r++) lg[(size_t)r * Vpr + Vr + 1] = 99.0f;  // padding column: ignored
    int32_t want[64], have[64], *d_am = G->alloc(64 * 4);
    H->argmax_rows(want, lg, R, Vr, Vpr);
    float *d_lg = dev(o, lg, (size_t)R * Vpr);
    o->argmax_rows(d_am, d_lg, R, Vr, Vpr);
    G->download(have, d_am, sizeof have);
    for (int r = 0; r < R; r++)
        cr_expect_eq(have[r], want[r], "%s argmax row %d: %d, cpu %d", tab, r, have[r], want[r]);
    cr_expect_eq(want[0], 3, "the first of two equal maxima");

    void *bufs[] = {dtok, dlen, d_wte, d_wpe, d_wtt, d_out, d_g, d_gw, d_gp, d_gt, d_x, d_y,
                    didx, d_sel, d_acc, d_pool, d_pg, d_pin, d_am, d_lg};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) G->free(bufs[i]);
    float *hb[] = {wte, wpe, wtt, out, g, gw, gp, gt, x, y, dx, dx0, acc, pool, pg, pin, lg};
    for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++) free(hb[i]);
}

Test(cuda_bert, ops_fp32) { ops_of(G); }
Test(cuda_bert, ops_bf16) { ops_of(G16); }

// ----------------------------------------------------------------------------
// the whole model: L2, C128 (D = 64: the bf16 table's wgmma kernel), F 512, V 1000, padding

#define BB 3
#define BT 80
static const int32_t LENS[BB] = {80, 45, 9};

static bert_config tiny(bert_head head, bert_pool pool) {
    bert_config c = {.n_layer = 2, .n_head = 2, .n_embd = 128, .ffn = 512, .seq_len = 96,
                     .vocab_size = 1000, .type_vocab = 2, .ln_eps = 1e-12f, .head = head,
                     .num_labels = 3, .pool = pool, .attention = "auto"};
    return c;
}

static void batch(int32_t *inp, int32_t *tgt, int32_t *labels, uint64_t seed) {
    pb_rng r;
    pb_rng_seed(&r, seed);
    for (int b = 0; b < BB; b++) {
        labels[b] = (int32_t)(pb_rng_u64(&r) % 3);
        for (int t = 0; t < BT; t++) {
            int i = b * BT + t, real = t < LENS[b];
            inp[i] = real ? (int32_t)(104 + pb_rng_u64(&r) % 896) : 0;
            tgt[i] = real && t > 0 && pb_rng_u64(&r) % 5 == 0 ? (int32_t)(pb_rng_u64(&r) % 1000) : -1;
        }
    }
}

// A ReLU head compares precisions only away from its kink: a pooler unit whose pre-activation
// is within bf16's error of 0 is alive in one table and dead in the other, and the flip moves
// every gradient below it (measured on the H200: the bias of one such unit 2.5e-3 against 0,
// the whole sum 16% off). So the CPU's forward is run once and each unit with a row closer
// than 0.02 to 0 (pre-activations are ~0.2 at this init) has its bias raised until every row
// is 0.02 above it, in both models: the kernels are compared, not the kink.
static void off_the_kink(bert *mg, bert *mc, const int32_t *inp, const int32_t *lens,
                         const int32_t *tgt, const int32_t *lab, int B, int T) {
    const float m = 0.02f;
    int H = mc->cfg.ffn, moved = 0;
    bert_forward(mc, inp, lens, tgt, lab, B, T);
    for (int j = 0; j < H; j++) {
        float lo = INFINITY, near = INFINITY;
        for (int b = 0; b < B; b++) {
            float z = mc->acts.ppre[(size_t)b * H + j];
            lo = fminf(lo, z);
            near = fminf(near, fabsf(z));
        }
        if (near < m) mc->w.poolb[j] += m - lo, moved++;
    }
    G->upload(mg->w.poolb, mc->w.poolb, (size_t)H * sizeof(float));
    printf("  relu head: %d of %d pooler units moved off the kink\n", moved, H);
}

// One forward and backward of config c on batch (inp, tgt, lab) of B x T (lens: NULL, or
// each row's length) on table o and on the CPU, from the same init: loss, accuracy and every
// gradient compared. drop: the blocks' dropout probability in this step (both backends draw
// the same masks from one key, kernels/dropout.h). tol32, tol16: the gradient tolerances of
// the fp32 and bf16 tables.
static void compare_model(const pb_ops *o, const bert_config *c, const char *name, int B, int T,
                          const int32_t *lens, const int32_t *inp, const int32_t *tgt,
                          const int32_t *lab, float drop, double tol32, double tol16) {
    int bf = o->act_dtype == PB_DTYPE_BF16;
    bert mg, mc;
    bert_build(&mg, c, o);
    bert_build(&mc, c, H);
    bert_init_weights(&mg, 42);
    bert_init_weights(&mc, 42);
    mg.acts.tf.drop_p = mc.acts.tf.drop_p = drop;
    mg.acts.tf.attn_drop_p = mc.acts.tf.attn_drop_p = c->attn_dropout;
    mg.acts.tf.drop_key = mc.acts.tf.drop_key = 0x5eed;
    if (c->pooler == PB_ACT_RELU) off_the_kink(&mg, &mc, inp, lens, tgt, lab, B, T);
    double lg = bert_forward(&mg, inp, lens, tgt, lab, B, T);
    double lc = bert_forward(&mc, inp, lens, tgt, lab, B, T);
    printf("  bert %s loss: cuda %s %.8f cpu %.8f\n", name, bf ? "bf16" : "fp32", lg, lc);
    cr_expect(fabs(lg - lc) <= (bf ? 5e-3 : 1e-5) * fabs(lc), "%s loss %.8f vs %.8f", name, lg, lc);
    long cg, ng, cc, nc;
    bert_accuracy(&mg, &cg, &ng);
    bert_accuracy(&mc, &cc, &nc);
    cr_expect(ng == nc && ng > 0, "%s: %ld vs %ld predictions", name, ng, nc);
    if (!bf) cr_expect_eq(cg, cc, "%s: %ld right on the GPU, %ld on the CPU", name, cg, cc);
    params_zero_grad(&mg.p);
    params_zero_grad(&mc.p);
    bert_backward(&mg, 1.0f);
    bert_backward(&mc, 1.0f);
    float *grads = pb_malloc(mg.p.num_floats * 4);
    G->download(grads, mg.p.grad, mg.p.num_floats * 4);
    char what[128];
    if (bf) {
        snprintf(what, sizeof what, "bert %s all gradients (bf16 vs fp32)", name);
        expect_close(what, grads, mc.p.grad, mc.p.num_floats, tol16);
    }
    // fp32: every tensor; bf16: the tensors whose error would not show in the sum above
    // (the embeddings: a wrong position table is a small share of all the gradients)
    for (int i = 0; i < mc.p.num; i++) {
        const pb_param *p = &mc.p.tab[i];
        if (strstr(p->name, "attention.self.key.bias")) continue;  // 0 up to rounding
        if (bf && !strstr(p->name, "embeddings")) continue;
        snprintf(what, sizeof what, "%s %s", name, p->name);
        expect_close(what, grads + p->offset, mc.p.grad + p->offset, p->numel, bf ? tol16 : tol32);
    }
    free(grads);
    bert_free(&mg);
    bert_free(&mc);
}

static void whole(const pb_ops *o, bert_head head, bert_pool pool) {
    bert_config c = tiny(head, pool);
    int32_t inp[BB * BT], tgt[BB * BT], lab[BB];
    batch(inp, tgt, lab, 5);
    const char *name = head == BERT_HEAD_MLM ? "mlm" : pool == BERT_POOL_CLS ? "cls" : "mean";
    compare_model(o, &c, name, BB, BT, LENS, inp, tgt, lab, 0.0f, 1e-4, 3e-2);
}

// The Pathfinder-32 model (configs/lra-pathfinder32.ini): pre-LN, head dim 32, mean pooling,
// 1024 grey levels a row, most of them 0 (an image's background), dropout 0.1 in the step;
// two rows, no padding. fp32: 5e-4 (every tensor but one within 2e-5; the final LayerNorm's
// bias, a sum of 2,048 positions' small gradients, 1.4e-4 off in the H200's summation order).
// In bf16 the gradients are 5-6% off (measured on the H200): the classifier's is
// 0.25 (pooled[0] - pooled[1]), the difference of two images' pooled features that are
// nearly equal (both mostly background), and token 0's embedding row sums ~1,740 positions'
// gradients that mostly cancel; bf16's 2^-8 steps in the pooled features and the stack's
// outputs show there in full. 1e-1 still catches a wrong kernel (an error of order 1).
// pad: the configs' model.pad_token = 0, the black pixels dropped (T 1024 -> 192 here: the
// positions given to the embedding, the mean over the whole length); raw: and no LayerNorm on
// the embeddings (model.embed_norm = false), in bf16 also dropout 0.1 on the attention
// probabilities (wgmma's, against the CPU's flash with the same masks; fp32's flash cannot);
// relu: and LRA's ReLU head (model.pooler = relu, 128 wide): the reference's architecture.
static void pathfinder_shape(const pb_ops *o, int pad, int raw, int relu) {
    bert_config c = {.n_layer = 2, .n_head = 2, .n_embd = 64, .ffn = 128, .seq_len = 1024,
                     .vocab_size = 256, .type_vocab = 2, .ln_eps = 1e-12f,
                     .head = BERT_HEAD_CLASSIFY, .num_labels = 2, .pool = BERT_POOL_MEAN,
                     .pre_ln = 1, .attention = "auto", .dropout = 0.1f, .drop_pad = pad,
                     .raw_embed = raw, .attn_dropout = raw && o == G16 ? 0.1f : 0.0f,
                     .pooler = relu ? PB_ACT_RELU : PB_ACT_TANH};
    enum { B = 2, T = 1024 };
    static int32_t inp[B * T];
    int32_t lab[B] = {1, 0};
    pb_rng r;
    pb_rng_seed(&r, 32);
    for (int i = 0; i < B * T; i++)
        inp[i] = pb_rng_u64(&r) % 100 < 85 ? 0 : (int32_t)(1 + pb_rng_u64(&r) % 255);
    compare_model(o, &c,
                  relu  ? "pathfinder32 pad_token raw embeddings relu head"
                  : raw ? "pathfinder32 pad_token raw embeddings"
                  : pad ? "pathfinder32 pad_token"
                        : "pathfinder32",
                  B, T, NULL, inp, NULL, lab, 0.1f, 5e-4, 1e-1);
}

Test(cuda_bert, mlm_fp32) { whole(G, BERT_HEAD_MLM, BERT_POOL_CLS); }
Test(cuda_bert, cls_fp32) { whole(G, BERT_HEAD_CLASSIFY, BERT_POOL_CLS); }
Test(cuda_bert, mean_fp32) { whole(G, BERT_HEAD_CLASSIFY, BERT_POOL_MEAN); }
Test(cuda_bert, mlm_bf16) { whole(G16, BERT_HEAD_MLM, BERT_POOL_CLS); }
Test(cuda_bert, mean_bf16) { whole(G16, BERT_HEAD_CLASSIFY, BERT_POOL_MEAN); }
Test(cuda_bert, pathfinder32_fp32) { pathfinder_shape(G, 0, 0, 0); }
Test(cuda_bert, pathfinder32_bf16) { pathfinder_shape(G16, 0, 0, 0); }
Test(cuda_bert, pathfinder32_pad_token_fp32) { pathfinder_shape(G, 1, 0, 0); }
Test(cuda_bert, pathfinder32_pad_token_bf16) { pathfinder_shape(G16, 1, 0, 0); }
Test(cuda_bert, pathfinder32_raw_embeddings_fp32) { pathfinder_shape(G, 1, 1, 0); }
Test(cuda_bert, pathfinder32_raw_embeddings_bf16) { pathfinder_shape(G16, 1, 1, 0); }
Test(cuda_bert, pathfinder32_relu_head_fp32) { pathfinder_shape(G, 1, 1, 1); }
Test(cuda_bert, pathfinder32_relu_head_bf16) { pathfinder_shape(G16, 1, 1, 1); }

// Ten AdamW steps of the MLM model in bf16 on fresh batches, twice: the two runs are equal
// to the bit, and track the CPU run's losses within 1e-2 relative.
Test(cuda_bert, bf16_training_repeats_and_tracks_cpu) {
    bert_config c = tiny(BERT_HEAD_MLM, BERT_POOL_CLS);
    double losses[3][10];
    const pb_ops *tabs[3] = {G16, G16, H};
    float *first = NULL;
    for (int run = 0; run < 3; run++) {
        bert m;
        bert_build(&m, &c, tabs[run]);
        bert_init_weights(&m, 42);
        pb_adamw opt;
        adamw_init(&opt, &m.p, 0.9f, 0.999f, 1e-8f, 0.01f);
        for (int s = 0; s < 10; s++) {
            int32_t inp[BB * BT], tgt[BB * BT], lab[BB];
            batch(inp, tgt, lab, 100 + (uint64_t)s);
            params_zero_grad(&m.p);
            losses[run][s] = bert_forward(&m, inp, LENS, tgt, NULL, BB, BT);
            bert_backward(&m, 1.0f);
            optim_clip_grad_norm(&m.p, 1.0f);
            adamw_step(&opt, &m.p, 1e-3f);
        }
        if (run < 2) {
            float *w = pb_malloc(m.p.num_floats * 4);
            G->download(w, m.p.mem, m.p.num_floats * 4);
            if (run == 0) first = w;
            else {
                cr_expect(memcmp(first, w, m.p.num_floats * 4) == 0, "two bf16 runs differ");
                free(w);
            }
        }
        adamw_free(&opt);
        bert_free(&m);
    }
    free(first);
    for (int s = 0; s < 10; s++) {
        cr_expect(losses[0][s] == losses[1][s], "step %d: %.9g vs %.9g", s, losses[0][s], losses[1][s]);
        cr_expect(fabs(losses[0][s] - losses[2][s]) <= 1e-2 * losses[2][s],
                  "step %d: bf16 %.6f, cpu %.6f", s, losses[0][s], losses[2][s]);
    }
    printf("  bert mlm 10 steps: bf16 %.5f -> %.5f, cpu %.5f -> %.5f\n", losses[0][0],
           losses[0][9], losses[2][0], losses[2][9]);
}
