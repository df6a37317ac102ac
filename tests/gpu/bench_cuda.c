// bench_cuda.c: `make bench-gpu`: the CUDA backend's speed on the GPU machine. A GPT-2 124M
// training step (T=1024, forward + backward + clip + AdamW) in tokens/s, ms/step and device
// memory, and the attention kernels' forward and forward+backward TFLOP/s. Prints tables;
// asserts nothing. Compare with the peers (../shared/bench/*.py) run in the same call.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/flash_cuda.h"
#include "kernels/common.h"
#include "kernels/cuda/cuda.h"
#include "model/bert.h"
#include "model/gpt2.h"
#include "train/optim.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

// ----------------------------------------------------------------------------
// per-op profile: a copy of the op table whose entries synchronise and time the real op.
// The syncs add a launch gap per call (~10 us), so the sum exceeds a plain step's time.

enum { P_ENC_F, P_ENC_B, P_LN_F, P_LN_B, P_MM_F, P_MM_B, P_ATT_F, P_ATT_B, P_GELU_F, P_GELU_B,
       P_RES_F, P_CE_F, P_CE_B, P_ADAMW, P_SUMSQ, P_SCALE, P_MEM, P_MMG_F, P_MMG_B,
       P_P2A, P_RES_LN, P_ACT, P_ROWS, P_POOL, P_ARGMAX, P_COUNT };
static const char *P_NAMES[P_COUNT] = {
    "encoder_forward", "encoder_backward", "layernorm_forward", "layernorm_backward",
    "matmul_forward", "matmul_backward", "attention_forward", "attention_backward",
    "gelu_forward", "gelu_backward", "residual_forward",
    "crossentropy_forward", "crossentropy_backward", "adamw_update", "sumsq", "scale",
    "zero/upload/download", "matmul_gelu_forward", "matmul_backward_gelu", "params_to_act",
    "residual_layernorm_forward", "head activation (fwd+bwd)", "gather/scatter_add rows",
    "mean_pool (fwd+bwd)", "argmax_rows"};
static const pb_ops *g_base;
static double g_time[P_COUNT];
static long g_calls[P_COUNT];

static double prof_t0(void) {
    pb_cuda_sync();
    return pb_now();
}
static void prof_t1(int k, double t0) {
    pb_cuda_sync();
    g_time[k] += pb_now() - t0;
    g_calls[k]++;
}
#define PROF_VOID(k, name, params, args)                                                     \
    static void prof_##name params {                                                         \
        double t0 = prof_t0();                                                               \
        g_base->name args;                                                                   \
        prof_t1(k, t0);                                                                      \
    }
PROF_VOID(P_ENC_F, encoder_forward,
          (float *o, const int32_t *i, const int32_t *p, const float *a, const float *b,
           const float *t, int B, int T, int C),
          (o, i, p, a, b, t, B, T, C))
PROF_VOID(P_ENC_B, encoder_backward,
          (float *a, float *b, float *t, const float *d, const int32_t *i, const int32_t *p,
           int B, int T, int C),
          (a, b, t, d, i, p, B, T, C))
PROF_VOID(P_LN_F, layernorm_forward,
          (float *o, float *m, float *r, const float *x, const float *w, const float *b, int N,
           int C, float eps),
          (o, m, r, x, w, b, N, C, eps))
PROF_VOID(P_LN_B, layernorm_backward,
          (float *dx, float *dw, float *db, const float *g, const float *x, const float *w,
           const float *m, const float *r, int N, int C),
          (dx, dw, db, g, x, w, m, r, N, C))
PROF_VOID(P_MM_F, matmul_forward,
          (float *o, const float *x, const float *w, const float *b, int N, int IC, int OC),
          (o, x, w, b, N, IC, OC))
PROF_VOID(P_MM_B, matmul_backward,
          (float *dx, float *dw, float *db, const float *g, const float *x, const float *w, int N,
           int IC, int OC),
          (dx, dw, db, g, x, w, N, IC, OC))
PROF_VOID(P_GELU_F, gelu_forward, (float *o, const float *x, size_t n, pb_gelu k), (o, x, n, k))
PROF_VOID(P_GELU_B, gelu_backward,
          (float *d, const float *x, const float *g, size_t n, pb_gelu k), (d, x, g, n, k))
PROF_VOID(P_RES_F, residual_forward, (float *o, const float *a, const float *b, size_t n),
          (o, a, b, n))
PROF_VOID(P_CE_F, crossentropy_forward,
          (float *l, const float *x, const int32_t *t, int N, int V, int Vp), (l, x, t, N, V, Vp))
PROF_VOID(P_CE_B, crossentropy_backward,
          (float *d, const float *x, const int32_t *t, float s, int N, int V, int Vp),
          (d, x, t, s, N, V, Vp))
PROF_VOID(P_ADAMW, adamw_update,
          (float *p, const float *g, float *m, float *v, const size_t *e, const float *wd,
           int ns, float lr, float b1, float b2, float eps, int t),
          (p, g, m, v, e, wd, ns, lr, b1, b2, eps, t))
PROF_VOID(P_SCALE, scale, (float *x, float s, size_t n), (x, s, n))
PROF_VOID(P_MMG_F, matmul_gelu_forward,
          (float *o, float *p, const float *x, const float *w, const float *b, int N, int IC,
           int OC),
          (o, p, x, w, b, N, IC, OC))
PROF_VOID(P_MMG_B, matmul_backward_gelu,
          (float *dp, float *dw, float *db, const float *g, const float *x, const float *w,
           const float *p, int N, int IC, int OC),
          (dp, dw, db, g, x, w, p, N, IC, OC))
PROF_VOID(P_RES_LN, residual_layernorm_forward,
          (float *r, float *o, float *m, float *s, const float *a, const float *b,
           const float *w, const float *bias, int N, int C, float eps),
          (r, o, m, s, a, b, w, bias, N, C, eps))
PROF_VOID(P_P2A, params_to_act, (float *d, const float *s, size_t n, uint64_t seed),
          (d, s, n, seed))
PROF_VOID(P_ACT, act_forward, (float *o, const float *x, size_t n, pb_act k), (o, x, n, k))
PROF_VOID(P_ACT, act_backward, (float *d, const float *y, const float *g, size_t n, pb_act k),
          (d, y, g, n, k))
PROF_VOID(P_ROWS, gather_rows, (float *o, const float *x, const int32_t *i, int M, int C),
          (o, x, i, M, C))
PROF_VOID(P_ROWS, scatter_add_rows, (float *d, const float *g, const int32_t *i, int M, int C),
          (d, g, i, M, C))
PROF_VOID(P_POOL, mean_pool_forward,
          (float *o, const float *x, const int32_t *l, const int32_t *n, int B, int T, int C),
          (o, x, l, n, B, T, C))
PROF_VOID(P_POOL, mean_pool_backward,
          (float *d, const float *g, const int32_t *l, const int32_t *n, int B, int T, int C),
          (d, g, l, n, B, T, C))
PROF_VOID(P_ARGMAX, argmax_rows, (int32_t *o, const float *x, int N, int V, int Vp),
          (o, x, N, V, Vp))
PROF_VOID(P_MEM, zero, (void *p, size_t n), (p, n))
PROF_VOID(P_MEM, upload, (void *d, const void *s, size_t n), (d, s, n))
PROF_VOID(P_MEM, download, (void *d, const void *s, size_t n), (d, s, n))
static double prof_sumsq(const float *x, size_t n) {
    double t0 = prof_t0(), r = g_base->sumsq(x, n);
    prof_t1(P_SUMSQ, t0);
    return r;
}

// attention: the table's first implementation (the one "auto" picks for GPT-2's D = 64),
// timed; the others as they are
static const pb_attn_impl *g_attn_base;
static void prof_attention_forward(float *o, float *l, const float *q, const pb_attn_desc *d) {
    double t0 = prof_t0();
    g_attn_base->forward(o, l, q, d);
    prof_t1(P_ATT_F, t0);
}
static void prof_attention_backward(float *dq, const float *g, const float *o, const float *l,
                                    const float *q, const pb_attn_desc *d) {
    double t0 = prof_t0();
    g_attn_base->backward(dq, g, o, l, q, d);
    prof_t1(P_ATT_B, t0);
}

static const pb_ops *profiled(const pb_ops *base) {
    static pb_ops p;
    static pb_attn_impl attn;
    static const pb_attn_impl *list[8];
    g_base = base;
    p = *base;
    g_attn_base = base->attention[0];
    attn = *g_attn_base;
    attn.forward = prof_attention_forward, attn.backward = prof_attention_backward;
    list[0] = &attn;
    for (int i = 1; i < 7 && base->attention[i - 1]; i++) list[i] = base->attention[i];
    p.attention = list;
    p.encoder_forward = prof_encoder_forward, p.encoder_backward = prof_encoder_backward;
    p.layernorm_forward = prof_layernorm_forward, p.layernorm_backward = prof_layernorm_backward;
    p.matmul_forward = prof_matmul_forward, p.matmul_backward = prof_matmul_backward;
    p.gelu_forward = prof_gelu_forward, p.gelu_backward = prof_gelu_backward;
    p.residual_forward = prof_residual_forward;
    p.crossentropy_forward = prof_crossentropy_forward;
    p.crossentropy_backward = prof_crossentropy_backward;
    p.adamw_update = prof_adamw_update, p.sumsq = prof_sumsq, p.scale = prof_scale;
    p.zero = prof_zero, p.upload = prof_upload, p.download = prof_download;
    p.act_forward = prof_act_forward, p.act_backward = prof_act_backward;
    p.gather_rows = prof_gather_rows, p.scatter_add_rows = prof_scatter_add_rows;
    p.mean_pool_forward = prof_mean_pool_forward, p.mean_pool_backward = prof_mean_pool_backward;
    p.argmax_rows = prof_argmax_rows;
    if (base->matmul_gelu_forward) p.matmul_gelu_forward = prof_matmul_gelu_forward;
    if (base->matmul_backward_gelu) p.matmul_backward_gelu = prof_matmul_backward_gelu;
    if (base->params_to_act) p.params_to_act = prof_params_to_act;
    if (base->residual_layernorm_forward)
        p.residual_layernorm_forward = prof_residual_layernorm_forward;
    return &p;
}

static void print_profile(int steps, const char *mode) {
    double total = 0.0;
    for (int k = 0; k < P_COUNT; k++) total += g_time[k];
    printf("\n### Per-op time of one step (%s, synchronised around each op; median-free mean "
           "of %d steps)\n\n", mode, steps);
    printf("| op | calls/step | ms/step | share |\n|---|---|---|---|\n");
    for (int k = 0; k < P_COUNT; k++)
        if (g_calls[k])
            printf("| %s | %ld | %.2f | %.1f%% |\n", P_NAMES[k], g_calls[k] / steps,
                   g_time[k] / steps * 1e3, 100.0 * g_time[k] / total);
    printf("| total | | %.2f | |\n", total / steps * 1e3);
    memset(g_time, 0, sizeof g_time);
    memset(g_calls, 0, sizeof g_calls);
}

// ----------------------------------------------------------------------------
// GPT-2 training step

// FLOPs of one training step per token: matmuls (2 per multiply-add, backward twice the
// forward) and causal attention (QK^T and PV over T/2 keys on average), as train/bench.c.
static double step_flops_per_token(const gpt2_config *c, int T) {
    double C = c->n_embd, L = c->n_layer, Vp = c->padded_vocab;
    return 3.0 * (2.0 * (12.0 * C * C * L + C * Vp) + 2.0 * 2.0 * (T / 2.0) * C * L);
}

// MFU: the step's model FLOPs per second over the dense bf16 tensor-core peak of an H100 or
// H200 SXM (989.4 TFLOP/s, NVIDIA's figure; the only GPUs this build targets are sm_90a),
// whatever the mode, as llm.c and PyTorch report it.
#define PEAK_BF16_TFLOPS 989.4

// ops: the fp32 table (mode fp32 or tf32) or the bf16 mixed-precision one
static void bench_gpt2(const pb_ops *ops, int B, int T, int steps, int tf32, int profile) {
    const char *mode = ops->act_dtype == PB_DTYPE_BF16 ? "bf16 mixed" : tf32 ? "tf32" : "fp32";
    pb_cuda_set_tf32(tf32);
    if (profile) ops = profiled(ops);
    gpt2_config cfg = {.n_layer = 12, .n_head = 12, .n_embd = 768, .seq_len = 1024,
                       .vocab_size = 50257, .attention = "auto"};
    gpt2 m;
    gpt2_build(&m, &cfg, ops);
    gpt2_init_weights(&m, 1);
    pb_adamw opt;
    adamw_init(&opt, &m.p, 0.9f, 0.95f, 1e-8f, 0.1f);
    int N = B * T;
    int32_t *inp = pb_malloc((size_t)N * sizeof(int32_t)), *tgt = pb_malloc((size_t)N * sizeof(int32_t));
    pb_rng rng;
    pb_rng_seed(&rng, 7);
    for (int i = 0; i < N; i++) inp[i] = (int32_t)(pb_rng_u64(&rng) % 50257);
    for (int i = 0; i < N; i++) tgt[i] = (int32_t)(pb_rng_u64(&rng) % 50257);

    double *tf = pb_malloc(sizeof(double) * steps), *tb = pb_malloc(sizeof(double) * steps);
    double *to = pb_malloc(sizeof(double) * steps), *tall = pb_malloc(sizeof(double) * steps);
    float loss = 0.0f;
    for (int s = -2; s < steps; s++) {  // two warm-up steps: allocation, plans, module load
        pb_cuda_sync();
        double t0 = pb_now();
        gpt2_zero_grad(&m);
        loss = gpt2_forward(&m, inp, tgt, B, T);  // downloads the losses: synchronises
        double t1 = pb_now();
        gpt2_backward(&m, 1.0f);
        pb_cuda_sync();
        double t2 = pb_now();
        optim_clip_grad_norm(&m.p, 1.0f);
        adamw_step(&opt, &m.p, 6e-4f);
        pb_cuda_sync();
        double t3 = pb_now();
        if (s >= 0) tf[s] = t1 - t0, tb[s] = t2 - t1, to[s] = t3 - t2, tall[s] = t3 - t0;
        if (profile && s == -1) {  // count the timed steps only
            memset(g_time, 0, sizeof g_time);
            memset(g_calls, 0, sizeof g_calls);
        }
    }
    if (profile) {
        print_profile(steps, mode);
    } else {
        double f = median(tf, steps), b = median(tb, steps), o = median(to, steps);
        double all = median(tall, steps);
        double mem = pb_cuda_mem_used() / (double)(1u << 30);
        double tflops = step_flops_per_token(&m.cfg, T) * N / all / 1e12;
        printf("| gpt2-124m | %-14s | %2d | %4d | %8.0f | %8.1f | %6.1f | %6.1f | %5.1f | %6.1f | %4.1f%% | %6.2f | %.3f |\n",
               mode, B, T, N / all, all * 1e3, f * 1e3, b * 1e3, o * 1e3, tflops,
               100.0 * tflops / PEAK_BF16_TFLOPS, mem, loss);
        fflush(stdout);
    }
    adamw_free(&opt);
    gpt2_free(&m);
    free(inp), free(tgt), free(tf), free(tb), free(to), free(tall);
    pb_cuda_set_tf32(0);
}

// ----------------------------------------------------------------------------
// BERT masked-LM training step (the peer: ../shared/bench/torch_bert.py)

// FLOPs per token of a BERT step: the encoder's matmuls (4 C^2 + 2 C F a layer: 12 C^2 with
// F = 4C) and attention over T keys, and the MLM head (transform C^2 and decoder C Vp) on the
// masked 15% only, as pebble computes it (the loss needs no more); times 3 for the backward.
// The classifier's head (a few B C^2) is left out.
static double bert_flops_per_token(const bert_config *c, int T) {
    double C = c->n_embd, L = c->n_layer, F = c->ffn, Vp = c->padded_vocab;
    double head = c->head == BERT_HEAD_MLM ? 0.15 * 2.0 * (C * C + C * Vp) : 0.0;
    return 3.0 * (2.0 * (4.0 * C * C + 2.0 * C * F) * L + 2.0 * 2.0 * T * C * L + head);
}

// size: base, large (masked LM) or pf32 (configs/lra-pathfinder32.ini's classifier: 2 layers
// of 64, 2 heads of 32, MLP 128, mean pooling, grey levels 90% 0, random labels). pad: each
// sequence's last pad fraction (drawn uniformly per row) is padding, as the peer's --pad; MLM:
// 15% of the real positions carry a target
static void bench_bert(const pb_ops *ops, const char *size, int B, int T, double pad, int steps,
                       int profile) {
    int large = strcmp(size, "large") == 0, pf32 = strcmp(size, "pf32") == 0;
    if (profile) ops = profiled(ops);
    bert_config cfg = {.n_layer = large ? 24 : 12, .n_head = large ? 16 : 12,
                       .n_embd = large ? 1024 : 768, .seq_len = 512, .vocab_size = 30522,
                       .type_vocab = 2, .ln_eps = 1e-12f, .head = BERT_HEAD_MLM,
                       .attention = "auto"};
    if (pf32)
        cfg = (bert_config){.n_layer = 2, .n_head = 2, .n_embd = 64, .ffn = 128, .seq_len = 1024,
                            .vocab_size = 256, .type_vocab = 2, .ln_eps = 1e-12f,
                            .head = BERT_HEAD_CLASSIFY, .num_labels = 2, .pool = BERT_POOL_MEAN,
                            .attention = "auto"};
    int V = cfg.vocab_size;
    bert m;
    bert_build(&m, &cfg, ops);
    bert_init_weights(&m, 1);
    pb_adamw opt;
    adamw_init(&opt, &m.p, 0.9f, 0.999f, 1e-8f, 0.01f);
    int N = B * T;
    int32_t *inp = pb_malloc((size_t)N * 4), *tgt = pb_malloc((size_t)N * 4), *len = pb_malloc((size_t)B * 4);
    int32_t *lab = pb_malloc((size_t)B * 4);
    pb_rng rng;
    pb_rng_seed(&rng, 7);
    long real = 0;
    for (int b = 0; b < B; b++) {
        len[b] = pad > 0 ? (int)(T * (1.0 - pad * pb_rng_uniform(&rng))) : T;
        if (len[b] < 1) len[b] = 1;
        real += len[b];
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            // pf32: like the images, 90% background (grey level 0), the rest any level
            int tok = pf32 && pb_rng_uniform(&rng) < 0.9 ? 0 : (int32_t)(pb_rng_u64(&rng) % V);
            inp[i] = t < len[b] ? tok : 0;
            tgt[i] = t < len[b] && pb_rng_uniform(&rng) < 0.15 ? inp[i] : -1;
        }
        lab[b] = (int32_t)(pb_rng_u64(&rng) % 2);
    }
    double *tall = pb_malloc(sizeof(double) * steps);
    float loss = 0.0f;
    for (int s = -2; s < steps; s++) {
        pb_cuda_sync();
        double t0 = pb_now();
        params_zero_grad(&m.p);
        loss = pf32 ? bert_forward(&m, inp, len, NULL, lab, B, T)
                    : bert_forward(&m, inp, len, tgt, NULL, B, T);
        bert_backward(&m, 1.0f);
        optim_clip_grad_norm(&m.p, 1.0f);
        adamw_step(&opt, &m.p, 1e-4f);
        pb_cuda_sync();
        if (s >= 0) tall[s] = pb_now() - t0;
        if (profile && s == -1) {  // count the timed steps only
            memset(g_time, 0, sizeof g_time);
            memset(g_calls, 0, sizeof g_calls);
        }
    }
    if (profile) {
        char mode[64];
        snprintf(mode, sizeof mode, "bert-%s, B=%d, T=%d, bf16", size, B, T);
        print_profile(steps, mode);
        adamw_free(&opt);
        bert_free(&m);
        free(inp), free(tgt), free(len), free(lab), free(tall);
        return;
    }
    double all = median(tall, steps), mem = pb_cuda_mem_used() / (double)(1u << 30);
    double tflops = bert_flops_per_token(&m.cfg, T) * N / all / 1e12;
    printf("| bert-%-5s | %4.2f | %3d | %4d | %8.0f | %8.1f | %6.1f | %4.1f%% | %6.2f | %.3f |\n",
           size, pad, B, T, N / all, all * 1e3, tflops, 100.0 * tflops / PEAK_BF16_TFLOPS, mem,
           loss);
    fflush(stdout);
    (void)real;
    adamw_free(&opt);
    bert_free(&m);
    free(inp), free(tgt), free(len), free(lab), free(tall);
}

// ----------------------------------------------------------------------------
// matmuls of one GPT-2 124M layer and the LM head, one product at a time (matmul_backward
// skips the gradients passed as NULL): where the backward's time goes.

static double time_op_ms(void (*fn)(const pb_ops *, void **, int, int, int, int),
                         const pb_ops *ops, void **bufs, int N, int IC, int OC, int which) {
    double t[5];
    fn(ops, bufs, N, IC, OC, which);  // warm-up: plan creation
    for (int i = 0; i < 5; i++) {
        pb_cuda_sync();
        double a = pb_now();
        fn(ops, bufs, N, IC, OC, which);
        pb_cuda_sync();
        t[i] = (pb_now() - a) * 1e3;
    }
    return median(t, 5);
}

// n floats uniform in [-0.5, 0.5) into device memory: one 4M-float random block, tiled.
static void upload_random(const pb_ops *ops, void *dst, size_t n) {
    static float *block;
    const size_t B = (size_t)1 << 22;
    if (!block) {
        block = pb_malloc(B * sizeof(float));
        pb_rng rng;
        pb_rng_seed(&rng, 11);
        for (size_t i = 0; i < B; i++) block[i] = (float)(pb_rng_uniform(&rng) - 0.5);
    }
    for (size_t off = 0; off < n; off += B) {
        size_t m = n - off < B ? n - off : B;
        ops->upload((float *)dst + off, block, m * sizeof(float));
    }
}

// which: 0 forward (+bias), 1 dinp, 2 dweight, 3 dbias; bufs: inp, weight, bias, out, and
// the gradients dinp, dweight, dbias, dout
static void mm_call(const pb_ops *ops, void **b, int N, int IC, int OC, int which) {
    float **f = (float **)b;
    if (which == 0) ops->matmul_forward(f[3], f[0], f[1], f[2], N, IC, OC);
    else ops->matmul_backward(which == 1 ? f[4] : NULL, which == 2 ? f[5] : NULL,
                              which == 3 ? f[6] : NULL, f[7], f[0], f[1], N, IC, OC);
}

static void bench_matmuls(const pb_ops *ops, int N) {
    static const struct { const char *name; int IC, OC, count; } shapes[] = {
        {"c_attn", 768, 2304, 12}, {"attn.c_proj", 768, 768, 12}, {"c_fc", 768, 3072, 12},
        {"mlp.c_proj", 3072, 768, 12}, {"lm head", 768, 50304, 1}};
    printf("\n## Matmuls of one step, TF32, N = %d rows, median of 5 (ms per call; TFLOP/s)\n\n", N);
    printf("| layer | IC | OC | calls/step | fwd+bias | dinp | dweight | dbias | fwd TFLOP/s | dinp TFLOP/s | dweight TFLOP/s |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    pb_cuda_set_tf32(1);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int IC = shapes[k].IC, OC = shapes[k].OC;
        size_t sizes[8] = {(size_t)N * IC, (size_t)OC * IC, (size_t)OC, (size_t)N * OC,
                           (size_t)N * IC, (size_t)OC * IC, (size_t)OC, (size_t)N * OC};
        void *b[8];
        for (int i = 0; i < 8; i++) b[i] = ops->alloc(sizes[i] * sizeof(float));
        int in[4] = {0, 1, 2, 7};  // inputs random, never zeros
        for (int i = 0; i < 4; i++) upload_random(ops, b[in[i]], sizes[in[i]]);
        double ms[4];
        for (int w = 0; w < 4; w++) ms[w] = time_op_ms(mm_call, ops, b, N, IC, OC, w);
        double fl = 2.0 * N * IC * OC;
        printf("| %s | %d | %d | %d | %.3f | %.3f | %.3f | %.3f | %.0f | %.0f | %.0f |\n",
               shapes[k].name, IC, OC, shapes[k].count, ms[0], ms[1], ms[2], ms[3],
               fl / ms[0] / 1e9, fl / ms[1] / 1e9, fl / ms[2] / 1e9);
        fflush(stdout);
        for (int i = 0; i < 8; i++) ops->free(b[i]);
    }
    pb_cuda_set_tf32(0);
}

// ----------------------------------------------------------------------------
// attention

// kv_len: NULL (dense) or (B) key lengths in device memory; the FLOPs counted are the dense
// problem's either way, so a masked row's skipped work shows as time, and as TFLOP/s above
// the dense row's.
static void bench_attention(const pb_ops *ops, const char *name, const pb_attn_impl *im, int D,
                            int T, int causal, const int32_t *kv_len, int iters, float *qkv,
                            float *dout, float *out, float *lse, float *dqkv, int tokens,
                            int hidden) {
    int B = tokens / T, NH = hidden / D, C = hidden;
    pb_attn_desc desc = {B, T, T, NH, D, 1.0f / sqrtf((float)D), causal, kv_len, NULL, 0, 0};
    if (im->supports(&desc)) return;
    double fl = 4.0 * B * NH * (double)T * T * D / (causal ? 2.0 : 1.0);
    double *t1 = pb_malloc(sizeof(double) * iters), *t2 = pb_malloc(sizeof(double) * iters);
    for (int i = -1; i < iters; i++) {
        pb_cuda_sync();
        double a = pb_now();
        im->forward(out, lse, qkv, &desc);
        pb_cuda_sync();
        double b = pb_now();
        ops->zero(dqkv, (size_t)B * T * 3 * C * sizeof(float));
        pb_cuda_sync();
        double c = pb_now();
        im->forward(out, lse, qkv, &desc);
        im->backward(dqkv, dout, out, lse, qkv, &desc);
        pb_cuda_sync();
        double d = pb_now();
        if (i >= 0) t1[i] = b - a, t2[i] = d - c;
    }
    double f = median(t1, iters), fb = median(t2, iters);
    printf("| %-10s | %3d | %5d | %2d | %3d | %-6s | %8.2f | %11.1f | %10.2f | %15.1f |\n", name,
           D, T, B, NH, causal ? "yes" : "no", f * 1e3, fl / f / 1e12, fb * 1e3, 3.5 * fl / fb / 1e12);
    fflush(stdout);
    free(t1), free(t2);
}

int main(int argc, char **argv) {
    int steps = 10, iters = 5, do_gpt2 = 1, do_attn = 1, do_bert = 1, batch = 16, profile = 0, all = 0;
    int wgmma_only = 0;  // --wgmma-only: only the bf16-wgmma rows (the bf16 table's first)
    int do_lra = 0;      // --lra: also the Pathfinder-32 classifier's step (with --profile: its ops)
    int masked = 0;      // --masked: also rows with half of every row's keys padded (kv_len)
    int offset_mb = 0;   // --alloc-offset MB: see the attention section
    int Ds[3] = {32, 64, 128}, nd = 3;  // --hd D[,D..]: the attention rows' head dims
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) batch = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-gpt2") == 0) do_gpt2 = 0;
        else if (strcmp(argv[i], "--no-bert") == 0) do_bert = 0;
        else if (strcmp(argv[i], "--lra") == 0) do_lra = 1;
        else if (strcmp(argv[i], "--profile") == 0) profile = 1;
        else if (strcmp(argv[i], "--all-modes") == 0) all = 1;
        else if (strcmp(argv[i], "--no-attention") == 0) do_attn = 0;
        else if (strcmp(argv[i], "--wgmma-only") == 0) wgmma_only = 1;
        else if (strcmp(argv[i], "--masked") == 0) masked = 1;
        else if (strcmp(argv[i], "--alloc-offset") == 0 && i + 1 < argc) offset_mb = atoi(argv[++i]);
        else if (strcmp(argv[i], "--hd") == 0 && i + 1 < argc) {
            const char *list = argv[++i];
            for (nd = 0; nd < 3 && *list; nd++) {
                char *end;
                long v = strtol(list, &end, 10);
                if (end == list || (v != 32 && v != 64 && v != 128) || (*end && *end != ','))
                    pb_die(PB_EXIT_USAGE, "bench_cuda: --hd '%s': head dims 32, 64, 128, "
                           "comma-separated", argv[i]);
                Ds[nd] = (int)v;
                list = *end ? end + 1 : end;
            }
            if (*list) pb_die(PB_EXIT_USAGE, "bench_cuda: --hd '%s': at most 3 head dims", argv[i]);
        } else pb_die(PB_EXIT_USAGE, "bench_cuda: unknown option '%s' (--steps N --iters N "
                    "--batch B --no-gpt2 --no-bert --no-attention --wgmma-only --masked --alloc-offset MB --profile "
                    "--all-modes --hd 32,64,128 --lra)", argv[i]);
    }
    if (steps < 1 || iters < 1 || batch < 1) pb_die(PB_EXIT_USAGE, "bench_cuda: counts must be >= 1");
    if (!pb_cuda_available())
        pb_die(PB_EXIT_RUNTIME, "bench_cuda needs a GPU: %s", pb_cuda_unavailable_reason());
    const pb_ops *ops = pb_ops_cuda(), *ops16 = pb_ops_cuda_bf16();

    if (do_gpt2) {
        printf("\n## GPT-2 124M training step (forward + backward + clip + AdamW), random tokens, "
               "median of %d steps\n\n", steps);
        printf("MFU: model TFLOP/s over %.1f, the dense bf16 peak of an H100/H200 SXM; mem: GPU "
               "memory in use after the steps (every buffer is allocated up front)\n\n",
               PEAK_BF16_TFLOPS);
        printf("| model     | mode           |  B |    T | tokens/s |  ms/step | fwd ms | bwd ms | opt ms | TFLOP/s |  MFU  | mem GiB | loss |\n");
        printf("|-----------|----------------|----|------|----------|----------|--------|--------|--------|---------|-------|---------|------|\n");
        // fp32 and tf32 alone (--all-modes) are the slow parity modes: 4 s and 2 s a row
        if (all) {
            bench_gpt2(ops, batch, 1024, steps, 0, 0);
            bench_gpt2(ops, batch, 1024, steps, 1, 0);
        }
        bench_gpt2(ops16, batch, 1024, steps, 0, 0);
        bench_gpt2(ops16, 2 * batch, 1024, steps, 0, 0);
        if (profile) {
            bench_gpt2(ops16, batch, 1024, 3, 0, 1);
            if (all) bench_matmuls(ops, batch * 1024);
        }
    }

    if (do_bert) {
        printf("\n## BERT masked-LM training step (forward + backward + clip + AdamW), bf16, random "
               "tokens, 15%% of the real positions masked, median of %d steps\n\n", steps);
        printf("TFLOP/s: the encoder and the head on the masked positions (what the loss needs); "
               "pad: the last pad fraction of each row (uniform per row) is padding, as the peer's --pad\n\n");
        printf("| model      | pad  |   B |    T | tokens/s |  ms/step | TFLOP/s |  MFU  | mem GiB | loss |\n");
        printf("|------------|------|-----|------|----------|----------|---------|-------|---------|------|\n");
        bench_bert(ops16, "base", 256, 128, 0.0, steps, 0);
        bench_bert(ops16, "base", 32, 512, 0.0, steps, 0);
        bench_bert(ops16, "base", 32, 512, 0.3, steps, 0);
        bench_bert(ops16, "large", 16, 512, 0.0, steps, 0);
        if (profile) bench_bert(ops16, "base", 32, 512, 0.0, 3, 1);
    }
    if (do_lra) {
        printf("\n## LRA Pathfinder-32 classifier step (configs/lra-pathfinder32.ini's model), "
               "bf16, random grey levels (90%% of them 0, as an image's background) and labels, median of %d steps\n\n", steps);
        printf("| model      | pad  |   B |    T | tokens/s |  ms/step | TFLOP/s |  MFU  | mem GiB | loss |\n");
        printf("|------------|------|-----|------|----------|----------|---------|-------|---------|------|\n");
        bench_bert(ops16, "pf32", 512, 1024, 0.0, steps, 0);
        if (profile) bench_bert(ops16, "pf32", 512, 1024, 0.0, 3, 1);
    }

    if (do_attn) {
        // --alloc-offset MB: a buffer of that size first, so every attention buffer lands
        // elsewhere in device memory (a timing's sensitivity to placement, not a kernel's)
        void *pad = offset_mb > 0 ? ops->alloc((size_t)offset_mb << 20) : NULL;
        if (offset_mb > 0) printf("\nattention buffers after a %d MB allocation\n", offset_mb);
        int tokens = 32768, hidden = 2048;
        size_t n3 = (size_t)tokens * 3 * hidden, n1 = (size_t)tokens * hidden;
        float *h = pb_malloc(n3 * sizeof(float));
        pb_rng rng;
        pb_rng_seed(&rng, 3);
        for (size_t i = 0; i < n3; i++) h[i] = (float)(2.0 * pb_rng_uniform(&rng) - 1.0);
        float *qkv = ops->alloc(n3 * 4), *dqkv = ops->alloc(n3 * 4), *dout = ops->alloc(n1 * 4);
        float *out = ops->alloc(n1 * 4), *lse = ops->alloc((size_t)tokens * (hidden / 32) * 4);
        ops->upload(qkv, h, n3 * 4);
        ops->upload(dout, h, n1 * 4);
        // the same values as bf16 (truncated: any bf16 values will do) for the bf16 kernels
        uint16_t *hb = pb_malloc(n3 * 2);
        for (size_t i = 0; i < n3; i++) {
            uint32_t b;
            memcpy(&b, &h[i], 4);
            hb[i] = (uint16_t)(b >> 16);
        }
        // dqkv16 at fp32 size: bench_attention zeroes it as if it held floats
        float *qkv16 = ops->alloc(n3 * 2), *dqkv16 = ops->alloc(n3 * 4), *dout16 = ops->alloc(n1 * 2);
        float *out16 = ops->alloc(n1 * 2);
        ops->upload(qkv16, hb, n3 * 2);
        ops->upload(dout16, hb, n1 * 2);
        free(h);
        free(hb);
        // kv_len = T/2 for every batch row (the most rows: T = 1024), for the masked rows
        int32_t *kvh = pb_malloc((size_t)tokens / 1024 * 4), *kv = ops->alloc((size_t)tokens / 1024 * 4);
        printf("\n## Attention, %d tokens, hidden %d, median of %d; FLOPs fwd 4BHT^2D (/2 "
               "causal), fwd+bwd 3.5x. fp32 = flash on fp32 tensors (CUDA cores, exact); "
               "bf16-wgmma = Hopper wgmma, bf16-flash = flash on bf16 tensors; -pad: kv_len = T/2 "
               "in every row (dense FLOPs counted)\n\n", tokens, hidden, iters);
        printf("| kernel     |   D |     T |  B |  NH | causal |   fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |\n");
        printf("|------------|-----|-------|----|-----|--------|----------|-------------|------------|-----------------|\n");
        // The CUDA-core kernels stop at 4K: at 16K they would take seconds per row.
        int Ts[3] = {1024, 4096, 16384};
        for (int a = 0; a < nd; a++)
            for (int b = 0; b < 3; b++)
                for (int c = 1; c >= 0; c--) {
                    int T = Ts[b], B = tokens / T;
                    // the CUDA-core rows: T <= 4096 with --all-modes, T = 1024 with --masked
                    int slow = !wgmma_only && ((all && b < 2) || (masked && b == 0));
                    for (int i = 0; i < B; i++) kvh[i] = T / 2;
                    ops->upload(kv, kvh, (size_t)B * 4);
                    if (slow)
                        bench_attention(ops, "fp32", &attn_cuda_flash, Ds[a], T, c, NULL, iters,
                                        qkv, dout, out, lse, dqkv, tokens, hidden);
                    bench_attention(ops, "bf16-wgmma", &attn_cuda_wgmma, Ds[a], T, c, NULL, iters,
                                    qkv16, dout16, out16, lse, dqkv16, tokens, hidden);
                    if (masked)
                        bench_attention(ops, "wgmma-pad", &attn_cuda_wgmma, Ds[a], T, c, kv,
                                        iters, qkv16, dout16, out16, lse, dqkv16, tokens, hidden);
                    if (slow)
                        bench_attention(ops, "bf16-flash", &attn_cuda_flash_bf16, Ds[a], T, c,
                                        NULL, iters, qkv16, dout16, out16, lse, dqkv16, tokens,
                                        hidden);
                    if (slow && masked)
                        bench_attention(ops, "flash-pad", &attn_cuda_flash_bf16, Ds[a], T, c, kv,
                                        iters, qkv16, dout16, out16, lse, dqkv16, tokens, hidden);
                }
        free(kvh);
        ops->free(kv);
        ops->free(qkv), ops->free(dqkv), ops->free(dout), ops->free(out), ops->free(lse);
        ops->free(qkv16), ops->free(dqkv16), ops->free(dout16), ops->free(out16);
        if (pad) ops->free(pad);
    }
    return 0;
}
