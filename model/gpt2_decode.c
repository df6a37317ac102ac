// gpt2_decode.c: GPT-2 inference with a KV cache (see gpt2_decode.h): a prefill of the
// prompt, then one row per generated token, through transformer.c's block forward.
#include "model/gpt2_decode.h"

#include <stddef.h>
#include <string.h>

#include "kernels/common.h"

// The cached attention runs where the table has one (the CPU's reads host memory).
static int can_decode(const gpt2 *m) { return m->ops->attention_decode != NULL; }

// ----------------------------------------------------------------------------
// the cache and its working rows

static void free_rows(gpt2_kv_cache *kv, const pb_ops *ops) {
    if (kv->rows_mem) ops->free(kv->rows_mem);
    free(kv->acts.h);
    kv->rows_mem = NULL;
    kv->acts.h = NULL;
    kv->rows = 0;
}

// Lays out the working rows for n positions over base (NULL: only counts); returns bytes.
static size_t map_rows(gpt2_kv_cache *kv, const tf_config *tc, int n, void *base) {
    size_t off = 0;
    kv->tokens = (int32_t *)tf_take(base, &off, (size_t)n, sizeof(int32_t));
    kv->x = tf_take(base, &off, (size_t)n * kv->C, sizeof(float));
    // one block's buffers; the others alias them (forward only, a block at a time)
    tf_config one = *tc;
    one.n_layer = 1;
    tf_acts a = {.h = kv->acts.h};
    tf_map_acts(&one, (size_t)n, 0, sizeof(float), &a, base, &off);
    for (int l = 1; l < kv->L; l++) kv->acts.h[l] = kv->acts.h[0];
    // ln_f after the last block (one.n_layer = 1 kept it at the end of a pre-LN stack)
    kv->acts.lnf = a.lnf;
    kv->acts.lnf_mean = a.lnf_mean;
    kv->acts.lnf_rstd = a.lnf_rstd;
    return off;
}

// Working rows for n positions at once; a step needs 1, a prefill the prompt's length.
static void ensure_rows(gpt2_kv_cache *kv, const gpt2 *m, int n) {
    if (n <= kv->rows) return;
    free_rows(kv, m->ops);
    kv->acts.h = pb_calloc((size_t)kv->L, sizeof(tf_layer_acts));
    size_t bytes = map_rows(kv, &m->tf, n, NULL);
    kv->rows_mem = m->ops->alloc(bytes);
    map_rows(kv, &m->tf, n, kv->rows_mem);
    kv->rows = n;
}

void gpt2_decode_init(gpt2_kv_cache *kv, const gpt2 *m) {
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
    PB_ASSERT(can_decode(dst) && dst->p.num_floats == src->p.num_floats);
    PB_ASSERT(memcmp(&dst->cfg, &src->cfg, offsetof(gpt2_config, attention)) == 0);
    src->ops->download(dst->p.mem, src->p.mem, src->p.num_floats * sizeof(float));
}

// ----------------------------------------------------------------------------
// the forward of n new rows

// A block's attention against the cache: the new rows' keys and values (qkv row i: q, k, v
// side by side, head h at [h*D, (h+1)*D) of each) are written into the cache at pos0 + i,
// then their queries attend to positions 0..pos0+i.
typedef struct {
    const gpt2 *m;
    gpt2_kv_cache *kv;
    int pos0, n;
} cache_attend;

static void attend_cache(void *ctx, int layer, float *out, float *lse, const float *qkv) {
    (void)lse;  // nothing is saved for a backward
    cache_attend *ca = ctx;
    gpt2_kv_cache *kv = ca->kv;
    int C = kv->C, NH = kv->NH, D = kv->D, maxT = kv->maxT;
    float *kc = kv->k + (size_t)layer * NH * maxT * D;
    float *vc = kv->v + (size_t)layer * NH * maxT * D;
    for (int i = 0; i < ca->n; i++) {
        const float *row = qkv + (size_t)i * 3 * C;
        for (int h = 0; h < NH; h++) {
            size_t at = ((size_t)h * maxT + ca->pos0 + i) * D;
            memcpy(kc + at, row + C + (size_t)h * D, (size_t)D * sizeof(float));
            memcpy(vc + at, row + 2 * C + (size_t)h * D, (size_t)D * sizeof(float));
        }
    }
    ca->m->ops->attention_decode(out, qkv, 3 * C, kc, vc, ca->pos0, ca->n, NH, D, maxT);
}

// Runs tokens[0..n) at positions pos0..pos0+n-1: gpt2_forward's blocks over n rows instead
// of B*T, with attention against the cache.
static void decode_rows(const gpt2 *m, gpt2_kv_cache *kv, const int32_t *tokens, int pos0,
                        int n, float *logits) {
    PB_ASSERT(can_decode(m) && kv->k);
    const pb_ops *ops = m->ops;
    const gpt2_config *c = &m->cfg;
    int C = c->n_embd, maxT = kv->maxT, Vp = c->padded_vocab;
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
    ensure_rows(kv, m, n);
    ops->upload(kv->tokens, tokens, (size_t)n * sizeof(int32_t));

    // x (n,C) = wte[token] + wpe[pos0 + i]: the encoder over one sequence of n, with the
    // position table started at pos0.
    ops->encoder_forward(kv->x, kv->tokens, NULL, m->w.wte, m->w.wpe + (size_t)pos0 * C, NULL, 1,
                         n, C);
    cache_attend ca = {m, kv, pos0, n};
    const float *y = tf_forward(ops, &m->tf, &m->w.tf, &kv->acts, kv->x, n,
                                (tf_attend){attend_cache, &ca});
    kv->len = pos0 + n;
    if (!logits) return;
    // Only the last row's logits are wanted: the tied head on that row alone.
    ops->matmul_forward(kv->logits, y + (size_t)(n - 1) * C, m->w.wte, NULL, 1, C, Vp);
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
