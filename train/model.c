// model.c: the one switch over the model families (see model.h).
#include "train/model.h"

#include <stdio.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/dropout.h"

// The [attention] keys as the block-sparse pattern (config_validate checked the name).
static bs_params model_sparsity(const pb_config *cfg) {
    bs_params p = {.block = cfg->attn_block, .window = cfg->attn_window,
                   .global = cfg->attn_global, .random = cfg->attn_random,
                   .seed = cfg->attn_seed};
    PB_ASSERT(attn_bs_pattern_parse(cfg->attn_sparsity, &p.pattern) == 0);
    return p;
}

void model_gpt2_config(const pb_config *cfg, gpt2_config *mc) {
    memset(mc, 0, sizeof *mc);
    mc->n_layer = cfg->n_layer;
    mc->n_head = cfg->n_head;
    mc->n_embd = cfg->n_embd;
    mc->seq_len = cfg->seq_len;
    mc->vocab_size = cfg->vocab_size;
    snprintf(mc->attention, sizeof mc->attention, "%s", cfg->attention);
    mc->sparse = model_sparsity(cfg);
    mc->ln_eps = (float)cfg->ln_eps;
    mc->dropout = (float)cfg->dropout;
    mc->attn_dropout = (float)cfg->attn_dropout;
}

void model_bert_config(const pb_config *cfg, bert_config *mc) {
    memset(mc, 0, sizeof *mc);
    mc->n_layer = cfg->n_layer;
    mc->n_head = cfg->n_head;
    mc->n_embd = cfg->n_embd;
    mc->ffn = cfg->ffn ? cfg->ffn : 4 * cfg->n_embd;
    mc->seq_len = cfg->max_positions ? cfg->max_positions : cfg->seq_len;
    mc->vocab_size = cfg->vocab_size;
    mc->type_vocab = cfg->type_vocab_size;
    mc->ln_eps = cfg->ln_eps > 0 ? (float)cfg->ln_eps : 1e-12f;
    mc->head = strcmp(cfg->head, "classify") == 0 ? BERT_HEAD_CLASSIFY : BERT_HEAD_MLM;
    mc->num_labels = cfg->num_labels;
    mc->pool = strcmp(cfg->pool, "mean") == 0 ? BERT_POOL_MEAN : BERT_POOL_CLS;
    mc->pooler = strcmp(cfg->pooler, "relu") == 0 ? PB_ACT_RELU : PB_ACT_TANH;
    mc->pre_ln = strcmp(cfg->norm, "pre") == 0;
    mc->init = strcmp(cfg->init, "fan_in") == 0 ? BERT_INIT_FAN_IN : BERT_INIT_HF;
    mc->raw_embed = !cfg->embed_norm;
    mc->drop_pad = cfg->pad_token >= 0;
    mc->pad_token = cfg->pad_token;
    snprintf(mc->attention, sizeof mc->attention, "%s", cfg->attention);
    mc->sparse = model_sparsity(cfg);
    mc->dropout = (float)cfg->dropout;
    mc->attn_dropout = (float)cfg->attn_dropout;
}

int model_check_config(const pb_config *c, char *err, size_t errlen) {
    int bert = strcmp(c->model_family, "bert") == 0;
    if (!bert && strcmp(c->model_family, "gpt2") != 0)
        pb_seterr(err, errlen, "model.family = '%s' (pebble builds gpt2 and bert)", c->model_family);
    else if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->seq_len < 1 ||
             c->vocab_size < 1 || c->ffn < 0)
        pb_seterr(err, errlen, "a model size below 1 (n_layer %d, n_head %d, n_embd %d, seq_len "
                  "%d, vocab_size %d, ffn %d)", c->n_layer, c->n_head, c->n_embd, c->seq_len,
                  c->vocab_size, c->ffn);
    else if (!(c->dropout >= 0.0 && c->dropout < 1.0))
        pb_seterr(err, errlen, "model.dropout = %g (a probability in [0, 1))", c->dropout);
    else if (!(c->attn_dropout >= 0.0 && c->attn_dropout < 1.0))
        pb_seterr(err, errlen, "model.attn_dropout = %g (a probability in [0, 1))",
                  c->attn_dropout);
    else if (c->n_embd % c->n_head != 0)
        pb_seterr(err, errlen, "model.n_embd %d is not divisible by model.n_head %d", c->n_embd,
                  c->n_head);
    else if (bert && (c->num_labels < 2 || c->type_vocab_size < 1 ||
                      (c->max_positions && c->max_positions < c->seq_len)))
        pb_seterr(err, errlen, "bert: num_labels %d, type_vocab_size %d, max_positions %d "
                  "(below seq_len %d?)", c->num_labels, c->type_vocab_size, c->max_positions,
                  c->seq_len);
    else
        return 0;
    return -1;
}

void model_build(pb_model *m, const pb_config *cfg, const pb_ops *ops) {
    memset(m, 0, sizeof *m);
    if (strcmp(cfg->model_family, "bert") == 0) {
        bert_config bc;
        model_bert_config(cfg, &bc);
        m->family = MODEL_BERT;
        bert_build(&m->bert, &bc, ops);
        m->p = &m->bert.p;
    } else {
        gpt2_config gc;
        model_gpt2_config(cfg, &gc);
        m->family = MODEL_GPT2;
        gpt2_build(&m->gpt2, &gc, ops);
        m->p = &m->gpt2.p;
    }
}

void model_init_weights(pb_model *m, uint64_t seed) {
    if (m->family == MODEL_BERT)
        bert_init_weights(&m->bert, seed);
    else
        gpt2_init_weights(&m->gpt2, seed);
}

void model_free(pb_model *m) {
    if (m->family == MODEL_BERT)
        bert_free(&m->bert);
    else
        gpt2_free(&m->gpt2);
    m->p = NULL;
}

double model_forward(pb_model *m, const int32_t *inputs, const int32_t *targets,
                     const int32_t *lengths, const int32_t *labels, int B, int T) {
    if (m->family == MODEL_BERT) return bert_forward(&m->bert, inputs, lengths, targets, labels, B, T);
    return gpt2_forward(&m->gpt2, inputs, targets, B, T);
}

void model_backward(pb_model *m, float loss_scale) {
    if (m->family == MODEL_BERT)
        bert_backward(&m->bert, loss_scale);
    else
        gpt2_backward(&m->gpt2, loss_scale);
}

void model_set_dropout(pb_model *m, int on, uint64_t key) {
    tf_acts *a = m->family == MODEL_BERT ? &m->bert.acts.tf : &m->gpt2.acts.tf;
    const tf_config *c = m->family == MODEL_BERT ? &m->bert.tf : &m->gpt2.tf;
    a->drop_p = on ? c->dropout : 0.0f;
    a->attn_drop_p = on ? c->attn_dropout : 0.0f;
    a->drop_key = key;
}

uint64_t model_dropout_key(uint64_t seed, uint64_t step, uint64_t first_row) {
    uint64_t h = pb_drop_hash(seed, 0x64726F706F7574ull);  // "dropout": apart from other uses
    return pb_drop_hash(pb_drop_hash(h, step), first_row);
}

void model_set_layer_hook(pb_model *m, void (*fn)(void *ctx, int layer), void *ctx) {
    tf_grads *g = m->family == MODEL_BERT ? &m->bert.grads : &m->gpt2.grads;
    g->layer_done = fn;
    g->layer_done_ctx = ctx;
}

int model_num_layers(const pb_model *m) {
    return m->family == MODEL_BERT ? m->bert.tf.n_layer : m->gpt2.tf.n_layer;
}

int model_layer_spans(const pb_model *m, size_t *lo, size_t *hi) {
    const tf_config *c = m->family == MODEL_BERT ? &m->bert.tf : &m->gpt2.tf;
    const tf_weights *g = m->family == MODEL_BERT ? &m->bert.g.tf : &m->gpt2.g.tf;
    for (int l = 0; l < c->n_layer; l++)
        if (!tf_layer_span(c, &g->h[l], m->p->grad, &lo[l], &hi[l])) return 0;
    return c->n_layer;
}

int model_has_accuracy(const pb_model *m) { return m->family == MODEL_BERT; }

void model_accuracy(pb_model *m, long *correct, long *count) {
    *correct = *count = 0;
    if (m->family == MODEL_BERT) bert_accuracy(&m->bert, correct, count);
}

const pb_attn_impl *model_attention(const pb_model *m, int B, int T, char *err, size_t errlen) {
    if (m->family == MODEL_BERT) return bert_attention(&m->bert, B, T, err, errlen);
    return gpt2_attention(&m->gpt2, B, T, err, errlen);
}

void model_describe(const pb_model *m, char *buf, size_t n) {
    if (m->family == MODEL_BERT) {
        const bert_config *c = &m->bert.cfg;
        int k = snprintf(buf, n, "bert L%d H%d C%d F%d T%d V%d (padded %d) %s", c->n_layer,
                         c->n_head, c->n_embd, c->ffn, c->seq_len, c->vocab_size,
                         c->padded_vocab, c->head == BERT_HEAD_MLM ? "mlm" : "classify");
        if (c->head == BERT_HEAD_CLASSIFY && k > 0 && (size_t)k < n)
            k += snprintf(buf + k, n - (size_t)k, " %d labels, %s pooling%s", c->num_labels,
                          c->pool == BERT_POOL_CLS ? "cls" : "mean",
                          c->pooler == PB_ACT_RELU ? ", ReLU head" : "");
        if (c->pre_ln && k > 0 && (size_t)k < n) k += snprintf(buf + k, n - (size_t)k, ", pre-LN");
        if (c->raw_embed && k > 0 && (size_t)k < n)
            snprintf(buf + k, n - (size_t)k, ", no embedding LayerNorm");
        return;
    }
    const gpt2_config *c = &m->gpt2.cfg;
    snprintf(buf, n, "gpt2 L%d H%d C%d T%d V%d (padded %d)", c->n_layer, c->n_head, c->n_embd,
             c->seq_len, c->vocab_size, c->padded_vocab);
}

size_t model_num_trainable(const pb_model *m) { return params_num_trainable(m->p); }

double model_flops_per_token(const pb_model *m, int T) {
    int L = m->family == MODEL_BERT ? m->bert.cfg.n_layer : m->gpt2.cfg.n_layer;
    int C = m->family == MODEL_BERT ? m->bert.cfg.n_embd : m->gpt2.cfg.n_embd;
    return 6.0 * (double)model_num_trainable(m) + 12.0 * L * (double)C * T;
}
