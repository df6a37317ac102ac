// gpt2.c: GPT-2 on the transformer core: the parameter table, initialisation, embeddings,
// the tied LM head and the loss around a stack of pre-LN blocks (model/transformer.c).
#include "model/gpt2.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/common.h"

// ----------------------------------------------------------------------------
// parameter table

// The 12 tensors of a block, in Hugging Face's order: the suffix after
// "transformer.h.<l>.", rows and columns in multiples of C (0 columns: a vector), and
// whether it is a Conv1D weight (stored transposed there, and decayed).
static const struct {
    const char *suffix;
    int rows, cols, conv1d;
} gpt2_block[12] = {
    {"ln_1.weight", 1, 0, 0},        {"ln_1.bias", 1, 0, 0},
    {"attn.c_attn.weight", 3, 1, 1}, {"attn.c_attn.bias", 3, 0, 0},
    {"attn.c_proj.weight", 1, 1, 1}, {"attn.c_proj.bias", 1, 0, 0},
    {"ln_2.weight", 1, 0, 0},        {"ln_2.bias", 1, 0, 0},
    {"mlp.c_fc.weight", 4, 1, 1},    {"mlp.c_fc.bias", 4, 0, 0},
    {"mlp.c_proj.weight", 1, 4, 1},  {"mlp.c_proj.bias", 1, 0, 0},
};

// Points a gpt2_weights view at the table's tensors inside base (elements of eb bytes).
static void map_weights(const gpt2 *m, gpt2_weights *w, const void *base, size_t eb) {
    const pb_params *ps = &m->p;
    int i = 0;
    w->wte = params_at(ps, base, eb, i++);
    w->wpe = params_at(ps, base, eb, i++);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        tf_layer_weights *h = &w->tf.h[l];
        float **slots[12] = {&h->ln1w, &h->ln1b, &h->qkvw, &h->qkvb, &h->attprojw, &h->attprojb,
                             &h->ln2w, &h->ln2b, &h->fcw, &h->fcb, &h->fcprojw, &h->fcprojb};
        for (int k = 0; k < 12; k++) *slots[k] = params_at(ps, base, eb, i++);
    }
    w->tf.lnfw = params_at(ps, base, eb, i++);
    w->tf.lnfb = params_at(ps, base, eb, i++);
    PB_ASSERT(i == ps->num);
}

void gpt2_shape_text(const gpt2_config *c, char *buf, size_t n) {
    snprintf(buf, n, "n_layer=%d n_head=%d n_embd=%d seq_len=%d vocab_size=%d", c->n_layer,
             c->n_head, c->n_embd, c->seq_len, c->vocab_size);
}

void gpt2_build(gpt2 *m, const gpt2_config *cfg, const pb_ops *ops) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->cfg.padded_vocab = (cfg->vocab_size + 127) / 128 * 128;
    m->ops = ops;
    int L = cfg->n_layer, C = cfg->n_embd, Vp = m->cfg.padded_vocab;
    PB_ASSERT(L > 0 && C > 0 && cfg->n_head > 0 && C % cfg->n_head == 0);
    m->tf = (tf_config){L, C, cfg->n_head, 0, PB_GELU_TANH, cfg->ln_eps > 0 ? cfg->ln_eps : 1e-5f,
                        4 * C, cfg->dropout, cfg->attn_dropout};

    pb_params *ps = &m->p;
    params_init(ps, "gpt2", ops);
    gpt2_shape_text(&m->cfg, ps->shape, sizeof ps->shape);
    params_add(ps, "transformer.wte.weight", Vp, C, 0, cfg->vocab_size, 1);
    params_add(ps, "transformer.wpe.weight", cfg->seq_len, C, 0, cfg->seq_len, 1);
    char name[64];
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 12; k++) {
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, gpt2_block[k].suffix);
            int rows = gpt2_block[k].rows * C, cols = gpt2_block[k].cols * C;
            params_add(ps, name, rows, cols, gpt2_block[k].conv1d, rows, cols != 0);
        }
    params_add(ps, "transformer.ln_f.weight", C, 0, 0, C, 0);
    params_add(ps, "transformer.ln_f.bias", C, 0, 0, C, 0);
    params_alloc(ps);

    gpt2_weights *views[3] = {&m->w, &m->g, &m->wa};
    for (int v = 0; v < 3; v++) views[v]->tf.h = pb_calloc((size_t)L, sizeof(tf_layer_weights));
    map_weights(m, &m->w, ps->mem, sizeof(float));
    map_weights(m, &m->g, ps->grad, sizeof(float));
    map_weights(m, &m->wa, params_read(ps), pb_act_bytes(ops));
}

size_t gpt2_num_trainable(const gpt2 *m) { return params_num_trainable(&m->p); }

void gpt2_init_weights(gpt2 *m, uint64_t seed) {
    // Built on the host, then uploaded once: the same values on every backend.
    const pb_params *ps = &m->p;
    float *host = pb_calloc(ps->num_floats, sizeof(float));
    double proj_std = 0.02 / sqrt(2.0 * m->cfg.n_layer);
    for (int i = 0; i < ps->num; i++) {
        const pb_param *p = &ps->tab[i];
        float *x = host + p->offset;
        const char *dot = strrchr(p->name, '.');
        int is_ln = strstr(p->name, ".ln_") != NULL;
        if (strcmp(dot, ".bias") == 0) continue;  // zeros
        if (is_ln) {
            for (size_t j = 0; j < p->numel; j++) x[j] = 1.0f;
            continue;
        }
        double std = strstr(p->name, "c_proj.weight") ? proj_std : 0.02;
        pb_rng rng;
        pb_rng_seed(&rng, seed * 0x9E3779B97F4A7C15ull + (uint64_t)i);
        // The padding rows of wte get no draws: they stay zero (no token maps to them).
        size_t n = i == 0 ? (size_t)m->cfg.vocab_size * m->cfg.n_embd : p->numel;
        for (size_t j = 0; j < n; j++) x[j] = (float)(std * pb_rng_normal(&rng));
    }
    m->ops->upload(ps->mem, host, ps->num_floats * sizeof(float));
    m->p.round_seed = seed;
    free(host);
}

// ----------------------------------------------------------------------------
// activations

// GPT-2's attention at (B,T): causal self-attention over every key, scale 1/sqrt(D).
static pb_attn_desc attention_desc(const gpt2 *m, int B, int T) {
    return tf_self_attention(&m->tf, B, T, 1, NULL);
}

const pb_attn_impl *gpt2_attention(const gpt2 *m, int B, int T, char *err, size_t errlen) {
    return attn_bs_choose(m->ops, m->cfg.attention, &m->cfg.sparse, attention_desc(m, B, T), err,
                          errlen);
}

// The activations of (B,T), laid out over base (NULL: only counted): the embeddings, the
// stack, logits and losses. Returns the bytes.
static size_t map_acts(gpt2 *m, int B, int T, void *base) {
    size_t N = (size_t)B * T, C = m->cfg.n_embd, ab = pb_act_bytes(m->ops), off = 0;
    gpt2_acts *a = &m->acts;
    a->encoded = tf_take(base, &off, N * C, ab);
    tf_map_acts(&m->tf, N, N * m->cfg.n_head, ab, &a->tf, base, &off);
    a->logits = tf_take(base, &off, N * (size_t)m->cfg.padded_vocab, ab);
    a->losses = tf_take(base, &off, N, 4);
    return off;
}

static void free_acts(gpt2 *m) {
    if (!m->acts_mem) return;
    m->ops->free(m->acts_mem);
    m->ops->free(m->grads_mem);
    m->ops->free(m->inputs);
    m->ops->free(m->targets);
    free(m->targets_host);
    free(m->acts.tf.h);
    attn_bs_free(m->layout);
    m->layout = NULL;
    m->acts_mem = m->grads_mem = NULL;
}

// (Re)allocates activations when (B,T) changes, and picks the attention for (B,T).
static void ensure_acts(gpt2 *m, int B, int T) {
    if (m->acts_mem && m->B == B && m->T == T) return;
    free_acts(m);
    const pb_ops *ops = m->ops;
    char err[1024];
    m->attn_desc = attention_desc(m, B, T);
    // block-sparse: the layout of this T, built once here (free_acts drops it)
    m->attn = attn_bs_setup(ops, m->cfg.attention, &m->cfg.sparse, &m->attn_desc, &m->layout,
                            err, sizeof err);
    if (!m->attn) pb_die(PB_EXIT_USAGE, "%s", err);
    m->B = B;
    m->T = T;
    m->acts.tf.h = pb_calloc((size_t)m->cfg.n_layer, sizeof(tf_layer_acts));
    m->acts_bytes = map_acts(m, B, T, NULL);
    m->acts_mem = ops->alloc(m->acts_bytes);
    map_acts(m, B, T, m->acts_mem);
    // the gradients the backward writes: one block's and the stream's (transformer.h)
    size_t N = (size_t)B * T, ab = pb_act_bytes(ops);
    int fused = ops->matmul_backward_gelu != NULL;
    m->grads_bytes = 0;
    tf_map_grads(&m->tf, N, ab, fused, &m->grads, NULL, &m->grads_bytes);
    m->grads_mem = ops->alloc(m->grads_bytes);
    size_t off = 0;
    tf_map_grads(&m->tf, N, ab, fused, &m->grads, m->grads_mem, &off);
    m->inputs = ops->alloc(N * sizeof(int32_t));
    m->targets = ops->alloc(N * sizeof(int32_t));
    m->targets_host = pb_malloc(N * sizeof(int32_t));
}

void gpt2_free(gpt2 *m) {
    free_acts(m);
    params_free(&m->p);
    free(m->w.tf.h);
    free(m->g.tf.h);
    free(m->wa.tf.h);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------
// forward and backward

double gpt2_forward(gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T) {
    const pb_ops *ops = m->ops;
    const gpt2_config *c = &m->cfg;
    int C = c->n_embd, N = B * T, V = c->vocab_size, Vp = c->padded_vocab;
    if (T > c->seq_len)
        pb_die(PB_EXIT_USAGE, "sequence of %d tokens is longer than model.seq_len = %d", T,
               c->seq_len);
    for (int i = 0; i < N; i++)
        if (inputs[i] < 0 || inputs[i] >= V)
            pb_die(PB_EXIT_DATA, "token id %d at position %d is outside the vocabulary (%d)",
                   inputs[i], i, V);
    ensure_acts(m, B, T);
    ops->upload(m->inputs, inputs, (size_t)N * sizeof(int32_t));
    params_round(&m->p);  // the low-precision weights from the masters (0.2 ms at 124M)

    gpt2_acts *a = &m->acts;
    ops->encoder_forward(a->encoded, m->inputs, NULL, m->wa.wte, m->wa.wpe, NULL, B, T, C);
    tf_attn_dropout(&m->attn_desc, &m->tf, &a->tf);
    const void *ctx[2];
    const float *y = tf_forward(ops, &m->tf, &m->wa.tf, &a->tf, a->encoded, N,
                                tf_attend_desc(m->attn, &m->attn_desc, ctx));
    // LM head tied to the token embedding: logits (N,Vp) = y (N,C) @ wte^T.
    ops->matmul_forward(a->logits, y, m->wa.wte, NULL, N, C, Vp);

    m->have_targets = targets != NULL;
    if (!targets) return 0.0;
    m->valid_targets = 0;
    for (int i = 0; i < N; i++) {
        if (targets[i] >= V)
            pb_die(PB_EXIT_DATA, "target id %d at position %d is outside the vocabulary (%d)",
                   targets[i], i, V);
        m->targets_host[i] = targets[i];
        m->valid_targets += targets[i] >= 0;
    }
    ops->upload(m->targets, targets, (size_t)N * sizeof(int32_t));
    ops->crossentropy_forward(a->losses, a->logits, m->targets, N, V, Vp);
    // The mean over valid targets, summed on the host in double in a fixed order.
    float *losses = pb_malloc((size_t)N * sizeof(float));
    ops->download(losses, a->losses, (size_t)N * sizeof(float));
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += losses[i];
    free(losses);
    return m->valid_targets ? sum / m->valid_targets : 0.0;
}

void gpt2_zero_grad(gpt2 *m) { params_zero_grad(&m->p); }

void gpt2_backward(gpt2 *m, float loss_scale) {
    PB_ASSERT(m->acts_mem && m->have_targets);
    const pb_ops *ops = m->ops;
    const gpt2_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, N = B * T, V = c->vocab_size, Vp = c->padded_vocab;
    gpt2_acts *a = &m->acts;
    tf_grads *g = &m->grads;
    // d(mean loss)/d(loss of one position); dlogits overwrite the logits in place.
    float dloss = m->valid_targets ? loss_scale / (float)m->valid_targets : 0.0f;
    ops->crossentropy_backward(a->logits, a->logits, m->targets, dloss, N, V, Vp);
    tf_backward_begin(ops, &m->tf, g, N);
    ops->matmul_backward(g->out, m->g.wte, NULL, a->logits, a->tf.lnf, m->wa.wte, N, C, Vp);
    tf_backward(ops, &m->tf, &m->wa.tf, &m->g.tf, &a->tf, g, a->encoded, N, m->attn,
                &m->attn_desc);
    ops->encoder_backward(m->g.wte, m->g.wpe, NULL, g->stream, m->inputs, NULL, B, T, C);
    // The logits now hold gradients: a new forward is needed before the next backward.
    m->have_targets = 0;
}
