// gpt2.c: GPT-2 forward and backward as op calls; the parameter table; initialisation.
#include "model/gpt2.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/common.h"

// ----------------------------------------------------------------------------
// parameter table

static void add_param(gpt2 *m, size_t *offset, const char *name, int rows, int cols,
                      int hf_transposed, int hf_rows) {
    pb_param *p = &m->params[m->num_params++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = cols ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols;
    if (hf_transposed) {
        p->hf_shape[0] = cols;
        p->hf_shape[1] = rows;
    } else {
        p->hf_shape[0] = hf_rows;
        p->hf_shape[1] = cols;
    }
    p->hf_transposed = hf_transposed;
    p->offset = *offset;
    p->numel = (size_t)rows * (size_t)(cols ? cols : 1);
    p->decay = p->ndim == 2;
    *offset += p->numel;
}

// Points a gpt2_weights view at the parameter table's offsets inside `base`, whose
// elements are elem_bytes wide (4, or 2 for the bf16 copy params_act).
static void map_weights(gpt2 *m, gpt2_weights *w, float *base, size_t elem_bytes) {
#define AT(i) ((float *)((char *)base + m->params[(i)].offset * elem_bytes))
    int i = 0;
    w->wte = AT(i), i++;
    w->wpe = AT(i), i++;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        gpt2_layer_weights *h = &w->h[l];
        float **slots[12] = {&h->ln1w, &h->ln1b, &h->qkvw, &h->qkvb, &h->attprojw, &h->attprojb,
                             &h->ln2w, &h->ln2b, &h->fcw, &h->fcb, &h->fcprojw, &h->fcprojb};
        for (int k = 0; k < 12; k++) *slots[k] = AT(i), i++;
    }
    w->lnfw = AT(i), i++;
    w->lnfb = AT(i), i++;
#undef AT
    PB_ASSERT(i == m->num_params);
}

void gpt2_build(gpt2 *m, const gpt2_config *cfg, const pb_ops *ops) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->cfg.padded_vocab = (cfg->vocab_size + 127) / 128 * 128;
    m->ops = ops;
    int L = cfg->n_layer, C = cfg->n_embd, Vp = m->cfg.padded_vocab;
    PB_ASSERT(L > 0 && C > 0 && cfg->n_head > 0 && C % cfg->n_head == 0);

    m->params = pb_calloc((size_t)(4 + 12 * L), sizeof(pb_param));
    size_t off = 0;
    char name[64];
    add_param(m, &off, "transformer.wte.weight", Vp, C, 0, cfg->vocab_size);
    add_param(m, &off, "transformer.wpe.weight", cfg->seq_len, C, 0, cfg->seq_len);
    for (int l = 0; l < L; l++) {
        // Hugging Face order within a block; Conv1D weights are stored transposed there.
        static const struct { const char *suffix; int rows_mult, cols_mult, is_weight; } blk[12] = {
            {"ln_1.weight", 1, 0, 0},        {"ln_1.bias", 1, 0, 0},
            {"attn.c_attn.weight", 3, 1, 1}, {"attn.c_attn.bias", 3, 0, 0},
            {"attn.c_proj.weight", 1, 1, 1}, {"attn.c_proj.bias", 1, 0, 0},
            {"ln_2.weight", 1, 0, 0},        {"ln_2.bias", 1, 0, 0},
            {"mlp.c_fc.weight", 4, 1, 1},    {"mlp.c_fc.bias", 4, 0, 0},
            {"mlp.c_proj.weight", 1, 4, 1},  {"mlp.c_proj.bias", 1, 0, 0},
        };
        for (int k = 0; k < 12; k++) {
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, blk[k].suffix);
            int rows = blk[k].rows_mult * C, cols = blk[k].cols_mult * C;
            add_param(m, &off, name, rows, cols, blk[k].is_weight, rows);
        }
    }
    add_param(m, &off, "transformer.ln_f.weight", C, 0, 0, C);
    add_param(m, &off, "transformer.ln_f.bias", C, 0, 0, C);
    m->num_floats = off;

    m->params_mem = ops->alloc(off * sizeof(float));
    m->grads_mem = ops->alloc(off * sizeof(float));
    m->w.h = pb_calloc((size_t)L, sizeof(gpt2_layer_weights));
    m->g.h = pb_calloc((size_t)L, sizeof(gpt2_layer_weights));
    map_weights(m, &m->w, m->params_mem, sizeof(float));
    map_weights(m, &m->g, m->grads_mem, sizeof(float));
    m->wa = m->w;
    if (ops->act_dtype != PB_DTYPE_FP32) {
        m->params_act = ops->alloc(off * pb_act_bytes(ops));
        m->wa.h = pb_calloc((size_t)L, sizeof(gpt2_layer_weights));
        map_weights(m, &m->wa, m->params_act, pb_act_bytes(ops));
    }
}

const pb_param *gpt2_find_param(const gpt2 *m, const char *name) {
    for (int i = 0; i < m->num_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

size_t gpt2_num_trainable(const gpt2 *m) {
    return m->num_floats - (size_t)(m->cfg.padded_vocab - m->cfg.vocab_size) * m->cfg.n_embd;
}

void gpt2_init_weights(gpt2 *m, uint64_t seed) {
    // Built on the host, then uploaded once: the same values on every backend.
    float *host = pb_calloc(m->num_floats, sizeof(float));
    double proj_std = 0.02 / sqrt(2.0 * m->cfg.n_layer);
    for (int i = 0; i < m->num_params; i++) {
        const pb_param *p = &m->params[i];
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
    m->ops->upload(m->params_mem, host, m->num_floats * sizeof(float));
    m->round_seed = seed;
    free(host);
}

// ----------------------------------------------------------------------------
// activations

// Lays out one gpt2_acts over `base` (or only counts bytes when base is NULL). Activations
// take ab bytes per element (pb_act_bytes), statistics and losses 4; every buffer starts on
// a 64-byte boundary.
static size_t map_acts(const gpt2_config *c, int B, int T, size_t ab, gpt2_acts *a,
                       float *base) {
    size_t N = (size_t)B * T, C = c->n_embd, NH = c->n_head, off = 0;
#define TAKE(ptr, n, eb)                                   \
    do {                                                   \
        if (base) (ptr) = (float *)((char *)base + off);   \
        off += ((size_t)(n) * (eb) + 63) / 64 * 64;        \
    } while (0)
    TAKE(a->encoded, N * C, ab);
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_layer_acts *h = &a->h[l];
        TAKE(h->ln1, N * C, ab);
        TAKE(h->ln1_mean, N, 4);
        TAKE(h->ln1_rstd, N, 4);
        TAKE(h->qkv, N * 3 * C, ab);
        TAKE(h->atty, N * C, ab);
        TAKE(h->lse, N * NH, 4);
        TAKE(h->attproj, N * C, ab);
        TAKE(h->res2, N * C, ab);
        TAKE(h->ln2, N * C, ab);
        TAKE(h->ln2_mean, N, 4);
        TAKE(h->ln2_rstd, N, 4);
        TAKE(h->fch, N * 4 * C, ab);
        TAKE(h->fch_gelu, N * 4 * C, ab);
        TAKE(h->fcproj, N * C, ab);
        TAKE(h->res3, N * C, ab);
    }
    TAKE(a->lnf, N * C, ab);
    TAKE(a->lnf_mean, N, 4);
    TAKE(a->lnf_rstd, N, 4);
    TAKE(a->logits, N * (size_t)c->padded_vocab, ab);
    TAKE(a->losses, N, 4);
#undef TAKE
    return off;
}

static void free_acts(gpt2 *m) {
    if (!m->acts_mem) return;
    m->ops->free(m->acts_mem);
    m->ops->free(m->dacts_mem);
    m->ops->free(m->inputs);
    m->ops->free(m->targets);
    free(m->targets_host);
    free(m->acts.h);
    free(m->dacts.h);
    m->acts_mem = m->dacts_mem = NULL;
}

// (Re)allocates activations when (B,T) changes.
static void ensure_acts(gpt2 *m, int B, int T) {
    if (m->acts_mem && m->B == B && m->T == T) return;
    free_acts(m);
    const pb_ops *ops = m->ops;
    m->B = B;
    m->T = T;
    m->acts.h = pb_calloc((size_t)m->cfg.n_layer, sizeof(gpt2_layer_acts));
    m->dacts.h = pb_calloc((size_t)m->cfg.n_layer, sizeof(gpt2_layer_acts));
    size_t ab = pb_act_bytes(ops);
    m->acts_bytes = map_acts(&m->cfg, B, T, ab, &m->acts, NULL);
    m->acts_mem = ops->alloc(m->acts_bytes);
    m->dacts_mem = ops->alloc(m->acts_bytes);
    map_acts(&m->cfg, B, T, ab, &m->acts, m->acts_mem);
    map_acts(&m->cfg, B, T, ab, &m->dacts, m->dacts_mem);
    m->inputs = ops->alloc((size_t)B * T * sizeof(int32_t));
    m->targets = ops->alloc((size_t)B * T * sizeof(int32_t));
    m->targets_host = pb_malloc((size_t)B * T * sizeof(int32_t));
    int D = m->cfg.n_embd / m->cfg.n_head;
    m->attn_desc = (pb_attn_desc){B, T, T, m->cfg.n_head, D, 1.0f / sqrtf((float)D), 1, NULL, NULL};
    char err[1024];
    m->attn = pb_attn_choose(ops, m->cfg.attention, &m->attn_desc, err, sizeof err);
    if (!m->attn) pb_die(PB_EXIT_USAGE, "%s", err);
}

void gpt2_free(gpt2 *m) {
    free_acts(m);
    m->ops->free(m->params_mem);
    m->ops->free(m->grads_mem);
    if (m->params_act) {
        m->ops->free(m->params_act);
        free(m->wa.h);
    }
    free(m->w.h);
    free(m->g.h);
    free(m->params);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------
// forward and backward

// res = a + b, then out, mean, rstd = LayerNorm(res): the fused op when the table has it.
static void residual_ln(const pb_ops *ops, float *res, const float *a, const float *b, float *out,
                        float *mean, float *rstd, const float *w, const float *bias, int N,
                        int C) {
    if (ops->residual_layernorm_forward) {
        ops->residual_layernorm_forward(res, out, mean, rstd, a, b, w, bias, N, C, 1e-5f);
    } else {
        ops->residual_forward(res, a, b, (size_t)N * C);
        ops->layernorm_forward(out, mean, rstd, res, w, bias, N, C, 1e-5f);
    }
}

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
    // The low-precision weights from the masters: rounding the same masters with the same
    // (seed, step) gives the same bits, so doing it at every forward (0.2 ms for 124M
    // parameters) keeps them right after any change to params_mem (optimizer, checkpoint).
    if (m->params_act)
        ops->params_to_act(m->params_act, m->params_mem, m->num_floats,
                           m->round_seed * 0x9E3779B97F4A7C15ull + m->updates);

    gpt2_acts *a = &m->acts;
    ops->encoder_forward(a->encoded, m->inputs, m->wa.wte, m->wa.wpe, B, T, C);
    const float *x = a->encoded;  // the residual stream entering each block
    int L = c->n_layer;
    // Each residual add is followed by a LayerNorm of its sum (ln_2; the next block's ln_1, or
    // ln_f after the last): residual_ln runs the pair, fused where the table has it. So each
    // block starts with its ln1 already computed, except the first.
    if (L)
        ops->layernorm_forward(a->h[0].ln1, a->h[0].ln1_mean, a->h[0].ln1_rstd, x, m->wa.h[0].ln1w,
                               m->wa.h[0].ln1b, N, C, 1e-5f);
    else
        ops->layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, x, m->wa.lnfw, m->wa.lnfb, N, C, 1e-5f);
    for (int l = 0; l < L; l++) {
        const gpt2_layer_weights *w = &m->wa.h[l];
        gpt2_layer_acts *h = &a->h[l];
        ops->matmul_forward(h->qkv, h->ln1, w->qkvw, w->qkvb, N, C, 3 * C);
        m->attn->forward(h->atty, h->lse, h->qkv, &m->attn_desc);
        ops->matmul_forward(h->attproj, h->atty, w->attprojw, w->attprojb, N, C, C);
        residual_ln(ops, h->res2, x, h->attproj, h->ln2, h->ln2_mean, h->ln2_rstd, w->ln2w,
                    w->ln2b, N, C);
        if (ops->matmul_gelu_forward) {  // one product writes fch and gelu(fch)
            ops->matmul_gelu_forward(h->fch_gelu, h->fch, h->ln2, w->fcw, w->fcb, N, C, 4 * C);
        } else {
            ops->matmul_forward(h->fch, h->ln2, w->fcw, w->fcb, N, C, 4 * C);
            ops->gelu_forward(h->fch_gelu, h->fch, (size_t)N * 4 * C, PB_GELU_TANH);
        }
        ops->matmul_forward(h->fcproj, h->fch_gelu, w->fcprojw, w->fcprojb, N, 4 * C, C);
        if (l + 1 < L) {
            gpt2_layer_acts *n = &a->h[l + 1];
            residual_ln(ops, h->res3, h->res2, h->fcproj, n->ln1, n->ln1_mean, n->ln1_rstd,
                        m->wa.h[l + 1].ln1w, m->wa.h[l + 1].ln1b, N, C);
        } else {
            residual_ln(ops, h->res3, h->res2, h->fcproj, a->lnf, a->lnf_mean, a->lnf_rstd,
                        m->wa.lnfw, m->wa.lnfb, N, C);
        }
        x = h->res3;
    }
    // LM head tied to the token embedding: logits (N,Vp) = lnf (N,C) @ wte^T.
    ops->matmul_forward(a->logits, a->lnf, m->wa.wte, NULL, N, C, Vp);

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

void gpt2_zero_grad(gpt2 *m) { m->ops->zero(m->grads_mem, m->num_floats * sizeof(float)); }

void gpt2_backward(gpt2 *m, float loss_scale) {
    PB_ASSERT(m->acts_mem && m->have_targets);
    const pb_ops *ops = m->ops;
    const gpt2_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, N = B * T;
    int V = c->vocab_size, Vp = c->padded_vocab;
    gpt2_acts *a = &m->acts, *d = &m->dacts;
    // The residual stream's gradient lives in one buffer, dres (dacts.encoded): a residual
    // add passes its output's gradient unchanged to both inputs, so each block's branches
    // read dres as the gradient of their output projection, and the LayerNorm backwards add
    // their input gradients into it; no residual_backward, no per-layer res/proj gradients.
    // Zeroed: the buffers the ops accumulate into (dres, each layer's dln1, dqkv, datty,
    // dln2, and dlnf); with the fused matmul_backward_gelu, dfch is overwritten by its only
    // writer and dfch_gelu is never used, otherwise both are zeroed too. map_acts lays out
    // ln1, ln1_mean, ln1_rstd, qkv, atty, lse in that order: one memset covers ln1 .. atty.
    float *dres = d->encoded;
    size_t NC = (size_t)N * C;
    ops->zero(dres, NC * pb_act_bytes(ops));
    ops->zero(d->lnf, NC * pb_act_bytes(ops));
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_layer_acts *dh = &d->h[l];
        PB_ASSERT(dh->ln1 < dh->qkv && dh->qkv < dh->atty && dh->atty < dh->lse);
        ops->zero(dh->ln1, (size_t)((char *)dh->atty - (char *)dh->ln1) + NC * pb_act_bytes(ops));
        ops->zero(dh->ln2, NC * pb_act_bytes(ops));
        if (!ops->matmul_backward_gelu) {
            ops->zero(dh->fch, 4 * NC * pb_act_bytes(ops));
            ops->zero(dh->fch_gelu, 4 * NC * pb_act_bytes(ops));
        }
    }

    // d(mean loss)/d(loss of one position); dlogits overwrite the logits in place.
    float dloss = m->valid_targets ? loss_scale / (float)m->valid_targets : 0.0f;
    ops->crossentropy_backward(a->logits, a->logits, m->targets, dloss, N, V, Vp);
    ops->matmul_backward(d->lnf, m->g.wte, NULL, a->logits, a->lnf, m->wa.wte, N, C, Vp);

    int L = c->n_layer;
    const float *x_last = L ? a->h[L - 1].res3 : a->encoded;
    ops->layernorm_backward(dres, m->g.lnfw, m->g.lnfb, d->lnf, x_last, m->wa.lnfw,
                            a->lnf_mean, a->lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        const gpt2_layer_weights *w = &m->wa.h[l];
        gpt2_layer_weights *g = &m->g.h[l];
        gpt2_layer_acts *h = &a->h[l], *dh = &d->h[l];
        const float *x = l ? a->h[l - 1].res3 : a->encoded;  // block input
        // MLP branch: res3 = res2 + fcproj, so dfcproj = dres3 = dres
        if (ops->matmul_backward_gelu) {  // dfch directly; dfch_gelu is never stored
            ops->matmul_backward_gelu(dh->fch, g->fcprojw, g->fcprojb, dres, h->fch_gelu,
                                      w->fcprojw, h->fch, N, 4 * C, C);
        } else {
            ops->matmul_backward(dh->fch_gelu, g->fcprojw, g->fcprojb, dres, h->fch_gelu,
                                 w->fcprojw, N, 4 * C, C);
            ops->gelu_backward(dh->fch, h->fch, dh->fch_gelu, 4 * NC, PB_GELU_TANH);
        }
        ops->matmul_backward(dh->ln2, g->fcw, g->fcb, dh->fch, h->ln2, w->fcw, N, C, 4 * C);
        // dres2 = dres3 + ln_2's input gradient
        ops->layernorm_backward(dres, g->ln2w, g->ln2b, dh->ln2, h->res2, w->ln2w,
                                h->ln2_mean, h->ln2_rstd, N, C);
        // attention branch: res2 = x + attproj, so dattproj = dres2 = dres
        ops->matmul_backward(dh->atty, g->attprojw, g->attprojb, dres, h->atty, w->attprojw, N,
                             C, C);
        m->attn->backward(dh->qkv, dh->atty, h->atty, h->lse, h->qkv, &m->attn_desc);
        ops->matmul_backward(dh->ln1, g->qkvw, g->qkvb, dh->qkv, h->ln1, w->qkvw, N, C, 3 * C);
        // dx = dres2 + ln_1's input gradient: the previous block's dres3
        ops->layernorm_backward(dres, g->ln1w, g->ln1b, dh->ln1, x, w->ln1w, h->ln1_mean,
                                h->ln1_rstd, N, C);
    }
    ops->encoder_backward(m->g.wte, m->g.wpe, d->encoded, m->inputs, B, T, C);
    // The logits now hold gradients: a new forward is needed before the next backward.
    m->have_targets = 0;
}
