// gpt2_decode.c: GPT-2 inference with a KV cache (see gpt2_decode.h): a prefill of the
// prompt, then one row per generated token.
#include "model/gpt2_decode.h"

#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/common.h"

// The cached attention runs where the table has one (the CPU's reads host memory).
static int can_decode(const gpt2 *m) { return m->ops->attention_decode != NULL; }

// ----------------------------------------------------------------------------
// the cache and its working rows

static void free_rows(gpt2_kv_cache *kv, const pb_ops *ops) {
    float **bufs[] = {&kv->x,    &kv->ln,      &kv->mean, &kv->rstd,     &kv->qkv,
                      &kv->atty, &kv->attproj, &kv->res2, &kv->fch,      &kv->fch_gelu,
                      &kv->fcproj};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        ops->free(*bufs[i]);
        *bufs[i] = NULL;
    }
    ops->free(kv->tokens);
    kv->tokens = NULL;
    kv->rows = 0;
}

// Working rows for n positions at once; a step needs 1, a prefill the prompt's length.
static void ensure_rows(gpt2_kv_cache *kv, const pb_ops *ops, int n) {
    if (n <= kv->rows) return;
    free_rows(kv, ops);
    size_t N = (size_t)n, C = (size_t)kv->C, f = sizeof(float);
    kv->tokens = ops->alloc(N * sizeof(int32_t));
    kv->x = ops->alloc(N * C * f);
    kv->ln = ops->alloc(N * C * f);
    kv->mean = ops->alloc(N * f);
    kv->rstd = ops->alloc(N * f);
    kv->qkv = ops->alloc(N * 3 * C * f);
    kv->atty = ops->alloc(N * C * f);
    kv->attproj = ops->alloc(N * C * f);
    kv->res2 = ops->alloc(N * C * f);
    kv->fch = ops->alloc(N * 4 * C * f);
    kv->fch_gelu = ops->alloc(N * 4 * C * f);
    kv->fcproj = ops->alloc(N * C * f);
    kv->rows = n;
}

void gpt2_decode_init(gpt2_kv_cache *kv, const gpt2 *m) {
    // The cached attention (attn_decode_forward) reads host memory.
    PB_ASSERT(can_decode(m));
    memset(kv, 0, sizeof *kv);
    const gpt2_config *c = &m->cfg;
    kv->L = c->n_layer;
    kv->NH = c->n_head;
    kv->C = c->n_embd;
    kv->D = c->n_embd / c->n_head;
    kv->maxT = c->seq_len;
    kv->Vp = c->padded_vocab;
    size_t per = (size_t)kv->L * kv->NH * kv->maxT * kv->D * sizeof(float);
    kv->k = m->ops->alloc(per);
    kv->v = m->ops->alloc(per);
    kv->logits = m->ops->alloc((size_t)kv->Vp * sizeof(float));
}

void gpt2_decode_free(gpt2_kv_cache *kv) {
    // The buffers came from the CPU table; free them the same way.
    const pb_ops *ops = pb_ops_cpu();
    free_rows(kv, ops);
    ops->free(kv->k);
    ops->free(kv->v);
    ops->free(kv->logits);
    memset(kv, 0, sizeof *kv);
}

void gpt2_decode_copy_weights(gpt2 *dst, const gpt2 *src) {
    PB_ASSERT(can_decode(dst) && dst->num_floats == src->num_floats);
    PB_ASSERT(memcmp(&dst->cfg, &src->cfg, sizeof dst->cfg) == 0);
    src->ops->download(dst->params_mem, src->params_mem, src->num_floats * sizeof(float));
}

// ----------------------------------------------------------------------------
// the forward of n new rows

// Runs tokens[0..n) at positions pos0..pos0+n-1: the same op sequence as gpt2_forward,
// over n rows instead of B*T, with attention against the cache. Each layer's keys and
// values of the new rows are written into the cache before its attention reads them.
static void decode_rows(const gpt2 *m, gpt2_kv_cache *kv, const int32_t *tokens, int pos0,
                        int n, float *logits) {
    PB_ASSERT(can_decode(m) && kv->k);
    const pb_ops *ops = m->ops;
    const gpt2_config *c = &m->cfg;
    int C = c->n_embd, NH = c->n_head, D = kv->D, maxT = kv->maxT, Vp = c->padded_vocab;
    if (pos0 < 0 || pos0 > kv->len)
        pb_die(PB_EXIT_USAGE, "decode at position %d, but the cache holds positions 0..%d",
               pos0, kv->len - 1);
    if (n < 1 || pos0 + n > maxT)
        pb_die(PB_EXIT_USAGE, "sequence of %d tokens is longer than model.seq_len = %d",
               pos0 + n, maxT);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            pb_die(PB_EXIT_DATA, "token id %d at position %d is outside the vocabulary (%d)",
                   tokens[i], pos0 + i, c->vocab_size);
    ensure_rows(kv, ops, n);
    ops->upload(kv->tokens, tokens, (size_t)n * sizeof(int32_t));

    // x (n,C) = wte[token] + wpe[pos0 + i]: the encoder over one sequence of n, with the
    // position table started at pos0.
    ops->encoder_forward(kv->x, kv->tokens, m->w.wte, m->w.wpe + (size_t)pos0 * C, 1, n, C);
    size_t nC = (size_t)n * C;
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer_weights *w = &m->w.h[l];
        ops->layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, w->ln1w, w->ln1b, n, C, 1e-5f);
        ops->matmul_forward(kv->qkv, kv->ln, w->qkvw, w->qkvb, n, C, 3 * C);
        // qkv row i: q, k, v side by side, head h at [h*D, (h+1)*D) of each -> the cache
        float *kc = kv->k + (size_t)l * NH * maxT * D;
        float *vc = kv->v + (size_t)l * NH * maxT * D;
        for (int i = 0; i < n; i++) {
            const float *row = kv->qkv + (size_t)i * 3 * C;
            for (int h = 0; h < NH; h++) {
                size_t at = ((size_t)h * maxT + pos0 + i) * D;
                memcpy(kc + at, row + C + (size_t)h * D, (size_t)D * sizeof(float));
                memcpy(vc + at, row + 2 * C + (size_t)h * D, (size_t)D * sizeof(float));
            }
        }
        ops->attention_decode(kv->atty, kv->qkv, 3 * C, kc, vc, pos0, n, NH, D, maxT);
        ops->matmul_forward(kv->attproj, kv->atty, w->attprojw, w->attprojb, n, C, C);
        ops->residual_forward(kv->res2, kv->x, kv->attproj, nC);
        ops->layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->res2, w->ln2w, w->ln2b, n, C, 1e-5f);
        ops->matmul_forward(kv->fch, kv->ln, w->fcw, w->fcb, n, C, 4 * C);
        ops->gelu_forward(kv->fch_gelu, kv->fch, 4 * nC, PB_GELU_TANH);
        ops->matmul_forward(kv->fcproj, kv->fch_gelu, w->fcprojw, w->fcprojb, n, 4 * C, C);
        ops->residual_forward(kv->x, kv->res2, kv->fcproj, nC);
    }
    kv->len = pos0 + n;
    if (!logits) return;
    // Only the last row's logits are wanted: ln_f and the tied head on that row alone.
    const float *last = kv->x + (size_t)(n - 1) * C;
    ops->layernorm_forward(kv->ln, kv->mean, kv->rstd, last, m->w.lnfw, m->w.lnfb, 1, C, 1e-5f);
    ops->matmul_forward(kv->logits, kv->ln, m->w.wte, NULL, 1, C, Vp);
    ops->download(logits, kv->logits, (size_t)Vp * sizeof(float));
}

void gpt2_decode_prefill(const gpt2 *m, gpt2_kv_cache *kv, const int32_t *tokens, int n,
                         float *logits) {
    kv->len = 0;
    decode_rows(m, kv, tokens, 0, n, logits);
}

void gpt2_decode_step(const gpt2 *m, gpt2_kv_cache *kv, int32_t token, int pos,
                      float *logits) {
    decode_rows(m, kv, &token, pos, 1, logits);
}
