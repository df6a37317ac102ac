// bert.c: BERT on the transformer core: the parameter table in Hugging Face's names, the
// initialisation, the embeddings, the MLM and classification heads and their losses around
// a stack of post-LN blocks (model/transformer.c).
#include "model/bert.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/common.h"

// ----------------------------------------------------------------------------
// parameter table

// The 16 tensors of a block: the suffix after "bert.encoder.layer.<l>.", rows and columns
// (R_C: C, R_F: the hidden width F, R_1: none). query, key and value follow one another,
// weights then biases, so that they are the stack's fused (3C,C) and (3C) qkv tensors.
enum { R_1 = 0, R_C = 1, R_F = 2 };
static const struct {
    const char *suffix;
    int rows, cols;
} bert_block[16] = {
    {"attention.self.query.weight", R_C, R_C}, {"attention.self.key.weight", R_C, R_C},
    {"attention.self.value.weight", R_C, R_C}, {"attention.self.query.bias", R_C, R_1},
    {"attention.self.key.bias", R_C, R_1},     {"attention.self.value.bias", R_C, R_1},
    {"attention.output.dense.weight", R_C, R_C}, {"attention.output.dense.bias", R_C, R_1},
    {"attention.output.LayerNorm.weight", R_C, R_1}, {"attention.output.LayerNorm.bias", R_C, R_1},
    {"intermediate.dense.weight", R_F, R_C},   {"intermediate.dense.bias", R_F, R_1},
    {"output.dense.weight", R_C, R_F},         {"output.dense.bias", R_C, R_1},
    {"output.LayerNorm.weight", R_C, R_1},     {"output.LayerNorm.bias", R_C, R_1},
};

// The classify head's hidden width H: the pooler's C (tanh, BERT's), or ffn (ReLU, LRA's)
static int head_width(const bert_config *c) {
    return c->pooler == PB_ACT_RELU ? c->ffn : c->n_embd;
}

static void map_weights(const bert *m, bert_weights *w, const void *base, size_t eb) {
    const pb_params *ps = &m->p;
    int i = 0;
    w->wte = params_at(ps, base, eb, i++);
    w->wpe = params_at(ps, base, eb, i++);
    w->wtt = params_at(ps, base, eb, i++);
    w->embw = params_at(ps, base, eb, i++);
    w->embb = params_at(ps, base, eb, i++);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        tf_layer_weights *h = &w->tf.h[l];
        h->qkvw = params_at(ps, base, eb, i);      // query, key, value weights: (3C, C)
        h->qkvb = params_at(ps, base, eb, i + 3);  // and their biases: (3C)
        i += 6;
        float **slots[10] = {&h->attprojw, &h->attprojb, &h->ln1w, &h->ln1b, &h->fcw,
                             &h->fcb,      &h->fcprojw,  &h->fcprojb, &h->ln2w, &h->ln2b};
        for (int k = 0; k < 10; k++) *slots[k] = params_at(ps, base, eb, i++);
    }
    w->tf.lnfw = w->tf.lnfb = NULL;
    if (m->cfg.pre_ln) {
        w->tf.lnfw = params_at(ps, base, eb, i++);
        w->tf.lnfb = params_at(ps, base, eb, i++);
    }
    if (m->cfg.head == BERT_HEAD_MLM) {
        float **slots[5] = {&w->mlmw, &w->mlmb, &w->mlmlnw, &w->mlmlnb, &w->mlmbias};
        for (int k = 0; k < 5; k++) *slots[k] = params_at(ps, base, eb, i++);
    } else {
        float **slots[4] = {&w->poolw, &w->poolb, &w->clsw, &w->clsb};
        for (int k = 0; k < 4; k++) *slots[k] = params_at(ps, base, eb, i++);
    }
    PB_ASSERT(i == ps->num);
}

void bert_shape_text(const bert_config *c, char *buf, size_t n) {
    int k = snprintf(buf, n, "n_layer=%d n_head=%d n_embd=%d ffn=%d seq_len=%d vocab_size=%d head=%s",
                     c->n_layer, c->n_head, c->n_embd, c->ffn, c->seq_len, c->vocab_size,
                     c->head == BERT_HEAD_MLM ? "mlm" : "classify");
    if (c->head == BERT_HEAD_CLASSIFY && k > 0 && (size_t)k < n)
        k += snprintf(buf + k, n - (size_t)k, " num_labels=%d pool=%s", c->num_labels,
                      c->pool == BERT_POOL_CLS ? "cls" : "mean");
    if (c->head == BERT_HEAD_CLASSIFY && c->pooler == PB_ACT_RELU && k > 0 && (size_t)k < n)
        k += snprintf(buf + k, n - (size_t)k, " pooler=relu");
    if (c->pre_ln && k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, " norm=pre");
}

void bert_build(bert *m, const bert_config *cfg, const pb_ops *ops) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    bert_config *c = &m->cfg;
    if (c->ffn <= 0) c->ffn = 4 * c->n_embd;
    if (c->type_vocab <= 0) c->type_vocab = 2;
    c->padded_vocab = (c->vocab_size + 127) / 128 * 128;
    m->ops = ops;
    int L = c->n_layer, C = c->n_embd, F = c->ffn, Vp = c->padded_vocab;
    PB_ASSERT(L > 0 && C > 0 && c->n_head > 0 && C % c->n_head == 0 && c->seq_len > 0);
    PB_ASSERT(c->head == BERT_HEAD_MLM || c->num_labels >= 2);
    PB_ASSERT(!c->raw_embed || c->pre_ln);
    PB_ASSERT(!c->drop_pad || (c->pad_token >= 0 && c->pad_token < c->vocab_size &&
                               c->head == BERT_HEAD_CLASSIFY && c->pool == BERT_POOL_MEAN));
    m->tf = (tf_config){L, C, c->n_head, !c->pre_ln, PB_GELU_ERF, c->ln_eps, F, c->dropout,
                        c->attn_dropout};
    m->Lp = (c->num_labels + 7) / 8 * 8;

    pb_params *ps = &m->p;
    params_init(ps, "bert", ops);
    bert_shape_text(c, ps->shape, sizeof ps->shape);
    params_add(ps, "bert.embeddings.word_embeddings.weight", Vp, C, 0, c->vocab_size, 1);
    params_add(ps, "bert.embeddings.position_embeddings.weight", c->seq_len, C, 0, c->seq_len, 1);
    params_add(ps, "bert.embeddings.token_type_embeddings.weight", c->type_vocab, C, 0,
               c->type_vocab, 1);
    params_add(ps, "bert.embeddings.LayerNorm.weight", C, 0, 0, C, 0);
    params_add(ps, "bert.embeddings.LayerNorm.bias", C, 0, 0, C, 0);
    char name[64];
    int dim[3] = {0, C, F};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 16; k++) {
            snprintf(name, sizeof name, "bert.encoder.layer.%d.%s", l, bert_block[k].suffix);
            int rows = dim[bert_block[k].rows], cols = dim[bert_block[k].cols];
            params_add(ps, name, rows, cols, 0, rows, cols != 0);
        }
    if (c->pre_ln) {  // the pre-LN stack's final LayerNorm (no Hugging Face name: not exported)
        params_add(ps, "bert.encoder.LayerNorm.weight", C, 0, 0, C, 0);
        params_add(ps, "bert.encoder.LayerNorm.bias", C, 0, 0, C, 0);
    }
    int first_head = ps->num;
    if (c->head == BERT_HEAD_MLM) {
        params_add(ps, "cls.predictions.transform.dense.weight", C, C, 0, C, 1);
        params_add(ps, "cls.predictions.transform.dense.bias", C, 0, 0, C, 0);
        params_add(ps, "cls.predictions.transform.LayerNorm.weight", C, 0, 0, C, 0);
        params_add(ps, "cls.predictions.transform.LayerNorm.bias", C, 0, 0, C, 0);
        params_add(ps, "cls.predictions.bias", Vp, 0, 0, c->vocab_size, 0);
    } else {
        int H = head_width(c);
        params_add(ps, "bert.pooler.dense.weight", H, C, 0, H, 1);
        params_add(ps, "bert.pooler.dense.bias", H, 0, 0, H, 0);
        params_add(ps, "classifier.weight", m->Lp, H, 0, c->num_labels, 1);
        params_add(ps, "classifier.bias", m->Lp, 0, 0, c->num_labels, 0);
    }
    for (int i = first_head; i < ps->num; i++) ps->tab[i].head = 1;
    params_alloc(ps);

    bert_weights *views[3] = {&m->w, &m->g, &m->wa};
    for (int v = 0; v < 3; v++) views[v]->tf.h = pb_calloc((size_t)L, sizeof(tf_layer_weights));
    map_weights(m, &m->w, ps->mem, sizeof(float));
    map_weights(m, &m->g, ps->grad, sizeof(float));
    map_weights(m, &m->wa, params_read(ps), pb_act_bytes(ops));
}

void bert_init_weights(bert *m, uint64_t seed) {
    const pb_params *ps = &m->p;
    float *host = pb_calloc(ps->num_floats, sizeof(float));
    int fan_in = m->cfg.init == BERT_INIT_FAN_IN;
    for (int i = 0; i < ps->num; i++) {
        const pb_param *p = &ps->tab[i];
        float *x = host + p->offset;
        pb_rng rng;
        pb_rng_seed(&rng, seed * 0x9E3779B97F4A7C15ull + (uint64_t)i);
        // padding rows (word embeddings past V, classifier rows past num_labels) stay zero
        size_t n = (size_t)p->hf_shape[0] * (p->ndim == 1 ? 1 : (size_t)p->shape[1]);
        if (strstr(p->name, "LayerNorm.")) {  // weights 1, biases 0
            if (strstr(p->name, "LayerNorm.weight"))
                for (size_t j = 0; j < n; j++) x[j] = 1.0f;
        } else if (fan_in && !strstr(p->name, "embeddings")) {
            // a Linear's weight (out, in), or its bias: the bound of the weight's fan-in
            const pb_param *w = p;
            if (p->ndim == 1) {
                char wname[sizeof p->name];
                size_t k = strlen(p->name) - strlen("bias");
                snprintf(wname, sizeof wname, "%.*sweight", (int)k, p->name);
                w = params_find(ps, wname);
                if (!w) continue;  // a bias of no Linear (the MLM decoder's): 0
            }
            double bound = 1.0 / sqrt((double)w->shape[1]);
            for (size_t j = 0; j < n; j++)
                x[j] = (float)(bound * (2.0 * pb_rng_uniform(&rng) - 1.0));
        } else if (p->ndim == 2) {
            for (size_t j = 0; j < n; j++) x[j] = (float)(0.02 * pb_rng_normal(&rng));
        }  // else a bias: 0
    }
    // [PAD] (id 0) is Hugging Face's padding_idx: its embedding starts at zero
    if (!fan_in) memset(host + ps->tab[0].offset, 0, (size_t)m->cfg.n_embd * sizeof(float));
    m->ops->upload(ps->mem, host, ps->num_floats * sizeof(float));
    m->p.round_seed = seed;
    free(host);
}

// ----------------------------------------------------------------------------
// activations

// bidirectional, the batch's lengths as key lengths
static pb_attn_desc attention_desc(const bert *m, int B, int T) {
    return tf_self_attention(&m->tf, B, T, 0, m->lengths);
}

const pb_attn_impl *bert_attention(const bert *m, int B, int T, char *err, size_t errlen) {
    return attn_bs_choose(m->ops, m->cfg.attention, &m->cfg.sparse, attention_desc(m, B, T), err,
                          errlen);
}

static size_t map_acts(bert *m, int B, int T, void *base) {
    size_t N = (size_t)B * T, C = m->cfg.n_embd, ab = pb_act_bytes(m->ops), off = 0;
    bert_acts *a = &m->acts;
    a->emb = tf_take(base, &off, N * C, ab);
    // the stack's input x0: the embeddings' LayerNorm, or (raw_embed) the embeddings themselves
    a->x0 = a->emb, a->x0_mean = a->x0_rstd = NULL;
    if (!m->cfg.raw_embed) {
        a->x0 = tf_take(base, &off, N * C, ab);
        a->x0_mean = tf_take(base, &off, N, 4);
        a->x0_rstd = tf_take(base, &off, N, 4);
    }
    tf_map_acts(&m->tf, N, N * m->cfg.n_head, ab, &a->tf, base, &off);
    a->hsel = a->hpre = a->hgelu = a->hln = a->hln_mean = a->hln_rstd = NULL;
    a->pin = a->ppre = a->pout = NULL;
    if (m->cfg.head == BERT_HEAD_MLM) {
        a->hsel = tf_take(base, &off, N * C, ab);
        a->hpre = tf_take(base, &off, N * C, ab);
        a->hgelu = tf_take(base, &off, N * C, ab);
        a->hln = tf_take(base, &off, N * C, ab);
        a->hln_mean = tf_take(base, &off, N, 4);
        a->hln_rstd = tf_take(base, &off, N, 4);
        a->logits = tf_take(base, &off, N * (size_t)m->cfg.padded_vocab, ab);
    } else {
        size_t BH = (size_t)B * head_width(&m->cfg);
        a->pin = tf_take(base, &off, (size_t)B * C, ab);
        a->ppre = tf_take(base, &off, BH, ab);
        a->pout = tf_take(base, &off, BH, ab);
        a->logits = tf_take(base, &off, (size_t)B * m->Lp, ab);
    }
    a->losses = tf_take(base, &off, N, 4);
    return off;
}

static size_t map_grads(bert *m, int B, size_t N, void *base) {
    size_t C = m->cfg.n_embd, ab = pb_act_bytes(m->ops), off = 0;
    // the stack's gradients (one block's and the stream's), then the heads' two scratch
    // buffers: (N,C) for the MLM head's rows, (B,H) for the classifier's
    tf_map_grads(&m->tf, N, ab, m->ops->matmul_backward_gelu != NULL, &m->grads, base, &off);
    size_t BH = (size_t)B * head_width(&m->cfg), n = N * C > BH ? N * C : BH;
    m->dhead = tf_take(base, &off, n, ab);
    m->dhead2 = tf_take(base, &off, n, ab);
    return off;
}

static void free_acts(bert *m) {
    if (!m->acts_mem) return;
    const pb_ops *ops = m->ops;
    ops->free(m->acts_mem);
    ops->free(m->grads_mem);
    void *dev[] = {m->inputs, m->lengths, m->pos, m->counts, m->sel, m->targets, m->pred};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) ops->free(dev[i]);
    free(m->sel_host);
    free(m->targets_host);
    free(m->acts.tf.h);
    attn_bs_free(m->layout);
    m->layout = NULL;
    m->acts_mem = m->grads_mem = NULL;
    m->acts.tf.h = NULL;
}

// The activations and gradients of a B x T batch (and the descriptor and kernel of its
// attention). The memory is allocated for the largest batch so far; a batch that fits in it
// is mapped there again (pad_token's batches change T from one batch to the next).
static void ensure_acts(bert *m, int B, int T) {
    if (m->acts_mem && m->B == B && m->T == T) return;
    const pb_ops *ops = m->ops;
    size_t N = (size_t)B * T;
    int fits = m->acts_mem && N <= m->cap_N && B <= m->cap_B &&
               map_acts(m, B, T, NULL) <= m->acts_bytes &&
               map_grads(m, B, N, NULL) <= m->grads_bytes;
    if (fits) {
        attn_bs_free(m->layout);  // a block-sparse layout is made for one T
        m->layout = NULL;
    } else {
        free_acts(m);
        m->cap_N = N;
        m->cap_B = B;
        m->inputs = ops->alloc(N * sizeof(int32_t));
        m->lengths = ops->alloc((size_t)B * sizeof(int32_t));
        m->pos = ops->alloc(N * sizeof(int32_t));
        m->counts = ops->alloc((size_t)B * sizeof(int32_t));
        m->sel = ops->alloc(N * sizeof(int32_t));
        m->targets = ops->alloc(N * sizeof(int32_t));
        m->pred = ops->alloc(N * sizeof(int32_t));
        m->sel_host = pb_malloc(N * sizeof(int32_t));
        m->targets_host = pb_malloc(N * sizeof(int32_t));
        m->acts.tf.h = pb_calloc((size_t)m->cfg.n_layer, sizeof(tf_layer_acts));
        m->acts_bytes = map_acts(m, B, T, NULL);
        m->acts_mem = ops->alloc(m->acts_bytes);
        m->grads_bytes = map_grads(m, B, N, NULL);
        m->grads_mem = ops->alloc(m->grads_bytes);
    }
    m->B = B;
    m->T = T;
    map_acts(m, B, T, m->acts_mem);
    map_grads(m, B, N, m->grads_mem);
    char err[1024];
    m->attn_desc = attention_desc(m, B, T);
    // block-sparse: the layout of this T, built once here (free_acts drops it); each
    // batch's key lengths apply through the descriptor's kv_len
    m->attn = attn_bs_setup(ops, m->cfg.attention, &m->cfg.sparse, &m->attn_desc, &m->layout,
                            err, sizeof err);
    if (!m->attn) pb_die(PB_EXIT_USAGE, "%s", err);
}

void bert_free(bert *m) {
    free_acts(m);
    free(m->drop_host);
    params_free(&m->p);
    free(m->w.tf.h);
    free(m->g.tf.h);
    free(m->wa.tf.h);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------
// forward

// Mean of the first n losses, summed on the host in double in a fixed order.
static double mean_loss(const bert *m, int n) {
    float *losses = pb_malloc((size_t)n * sizeof(float));
    m->ops->download(losses, m->acts.losses, (size_t)n * sizeof(float));
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += losses[i];
    free(losses);
    return sum / n;
}

// MLM head on the M rows sel of the stack's output y: logits (M,Vp), and the loss when the
// targets of those rows are in m->targets.
static void mlm_head(bert *m, const float *y, int M) {
    const pb_ops *ops = m->ops;
    bert_acts *a = &m->acts;
    const bert_weights *w = &m->wa;
    int C = m->cfg.n_embd;
    ops->gather_rows(a->hsel, y, m->sel, M, C);
    ops->matmul_forward(a->hpre, a->hsel, w->mlmw, w->mlmb, M, C, C);
    ops->gelu_forward(a->hgelu, a->hpre, (size_t)M * C, PB_GELU_ERF);
    ops->layernorm_forward(a->hln, a->hln_mean, a->hln_rstd, a->hgelu, w->mlmlnw, w->mlmlnb, M,
                           C, m->cfg.ln_eps);
    // the decoder is tied to the word embeddings, with its own bias
    ops->matmul_forward(a->logits, a->hln, w->wte, w->mlmbias, M, C, m->cfg.padded_vocab);
}

// Classification head: pooled (B,C) from the stack's output y (B,T,C), logits (B,Lp).
static void classify_head(bert *m, const float *y) {
    const pb_ops *ops = m->ops;
    bert_acts *a = &m->acts;
    const bert_weights *w = &m->wa;
    int B = m->B, T = m->T, C = m->cfg.n_embd;
    if (m->cfg.pool == BERT_POOL_CLS)
        ops->gather_rows(a->pin, y, m->sel, B, C);  // sel = the first token of each row
    else
        ops->mean_pool_forward(a->pin, y, m->lengths, m->cfg.drop_pad ? m->counts : NULL,
                               B, T, C);
    int H = head_width(&m->cfg);
    ops->matmul_forward(a->ppre, a->pin, w->poolw, w->poolb, B, C, H);
    ops->act_forward(a->pout, a->ppre, (size_t)B * H, m->cfg.pooler);
    ops->matmul_forward(a->logits, a->pout, w->clsw, w->clsb, B, H, m->Lp);
}

// pad_token's drop: row b keeps its tokens t < len[b] that are not pad_token, in order, in
// the rows of tok and pos (B,Ts) (the rest: pad_token at position 0, padding), their count in
// kept[b]. Ts: the longest row's count rounded up to a multiple of 64, at most T.
static int drop_pad_tokens(const bert *m, const int32_t *inputs, const int32_t *len, int B,
                           int T, int32_t *tok, int32_t *pos, int32_t *kept) {
    int pad = m->cfg.pad_token, most = 0;
    for (int b = 0; b < B; b++) {
        int n = 0;
        for (int t = 0; t < len[b]; t++) n += inputs[(size_t)b * T + t] != pad;
        if (n == 0)
            pb_die(PB_EXIT_DATA, "sequence %d has only model.pad_token (%d) tokens: nothing to "
                   "attend to", b, pad);
        kept[b] = n;
        most = n > most ? n : most;
    }
    int Ts = (most + 63) / 64 * 64;
    if (Ts > T) Ts = T;
    for (int b = 0; b < B; b++) {
        int32_t *ot = tok + (size_t)b * Ts, *op = pos + (size_t)b * Ts;
        int n = 0;
        for (int t = 0; t < len[b]; t++)
            if (inputs[(size_t)b * T + t] != pad) ot[n] = inputs[(size_t)b * T + t], op[n++] = t;
        for (; n < Ts; n++) ot[n] = pad, op[n] = 0;
    }
    return Ts;
}

double bert_forward(bert *m, const int32_t *inputs, const int32_t *lengths,
                    const int32_t *targets, const int32_t *labels, int B, int T) {
    const pb_ops *ops = m->ops;
    const bert_config *c = &m->cfg;
    int C = c->n_embd, V = c->vocab_size;
    int mlm = c->head == BERT_HEAD_MLM, drop = c->drop_pad;
    if (T > c->seq_len)
        pb_die(PB_EXIT_USAGE, "sequence of %d tokens is longer than model.seq_len = %d", T,
               c->seq_len);
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (inputs[i] < 0 || inputs[i] >= V)
            pb_die(PB_EXIT_DATA, "token id %d at position %zu is outside the vocabulary (%d)",
                   inputs[i], i, V);
    int32_t *len = pb_malloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        len[b] = lengths ? lengths[b] : T;
        if (len[b] < 1 || len[b] > T)
            pb_die(PB_EXIT_DATA, "sequence %d has length %d (must be 1 .. %d)", b, len[b], T);
    }
    int Tin = T;  // the batch's T; T becomes the stack's
    const int32_t *tok = inputs, *klen = len;
    if (drop) {
        size_t need = 2 * (size_t)B * T + B;
        if (m->drop_cap < need) {
            free(m->drop_host);
            m->drop_host = pb_malloc(need * sizeof(int32_t));
            m->drop_cap = need;
        }
        int32_t *dtok = m->drop_host, *dpos = dtok + (size_t)B * T, *kept = dpos + (size_t)B * T;
        T = drop_pad_tokens(m, inputs, len, B, Tin, dtok, dpos, kept);
        tok = dtok, klen = kept;
        ensure_acts(m, B, T);
        ops->upload(m->pos, dpos, (size_t)B * T * sizeof(int32_t));
        ops->upload(m->counts, len, (size_t)B * sizeof(int32_t));
    } else {
        ensure_acts(m, B, T);
    }
    int N = B * T, padded = 0;
    for (int b = 0; b < B; b++) padded |= klen[b] < T;
    ops->upload(m->lengths, klen, (size_t)B * sizeof(int32_t));
    ops->upload(m->inputs, tok, (size_t)N * sizeof(int32_t));
    free(len);
    // without padding, every key is visible: the kernels' unmasked path
    m->attn_desc.kv_len = padded ? m->lengths : NULL;
    params_round(&m->p);

    bert_acts *a = &m->acts;
    const bert_weights *w = &m->wa;
    ops->encoder_forward(a->emb, m->inputs, drop ? m->pos : NULL, w->wte, w->wpe, w->wtt, B, T,
                         C);
    if (!c->raw_embed)
        ops->layernorm_forward(a->x0, a->x0_mean, a->x0_rstd, a->emb, w->embw, w->embb, N, C,
                               c->ln_eps);
    tf_attn_dropout(&m->attn_desc, &m->tf, &a->tf);
    const void *ctx[2];
    const float *y = tf_forward(ops, &m->tf, &m->wa.tf, &a->tf, a->x0, N,
                                tf_attend_desc(m->attn, &m->attn_desc, ctx));

    // The rows the head runs on, and their targets (host copies for the accuracy).
    int M = 0;
    if (mlm) {
        for (int i = 0; i < N; i++) {
            int t = targets ? targets[i] : 0;  // no targets: every position (logits only)
            if (t >= V)
                pb_die(PB_EXIT_DATA, "target id %d at position %d is outside the vocabulary (%d)",
                       t, i, V);
            if (t < 0) continue;
            m->sel_host[M] = i;
            m->targets_host[M++] = t;
        }
    } else {
        for (int b = 0; b < B; b++) {
            int t = labels ? labels[b] : 0;
            if (t < 0 || t >= c->num_labels)
                pb_die(PB_EXIT_DATA, "label %d of sequence %d is outside 0 .. %d", t, b,
                       c->num_labels - 1);
            m->sel_host[b] = b * T;
            m->targets_host[b] = t;
        }
        M = B;
    }
    m->M = M;
    m->have_targets = mlm ? targets != NULL : labels != NULL;
    if (M == 0) return 0.0;  // no position to predict in this batch: no loss, no gradient
    ops->upload(m->sel, m->sel_host, (size_t)M * sizeof(int32_t));
    ops->upload(m->targets, m->targets_host, (size_t)M * sizeof(int32_t));
    if (mlm)
        mlm_head(m, y, M);
    else
        classify_head(m, y);
    if (!m->have_targets) return 0.0;
    int V_ = mlm ? V : c->num_labels, Vp_ = mlm ? c->padded_vocab : m->Lp;
    ops->crossentropy_forward(a->losses, a->logits, m->targets, M, V_, Vp_);
    return mean_loss(m, M);
}

void bert_accuracy(bert *m, long *correct, long *count) {
    *correct = *count = 0;
    if (!m->have_targets || m->M == 0) return;
    int mlm = m->cfg.head == BERT_HEAD_MLM, M = m->M;
    int V_ = mlm ? m->cfg.vocab_size : m->cfg.num_labels, Vp_ = mlm ? m->cfg.padded_vocab : m->Lp;
    m->ops->argmax_rows(m->pred, m->acts.logits, M, V_, Vp_);
    int32_t *pred = pb_malloc((size_t)M * sizeof(int32_t));
    m->ops->download(pred, m->pred, (size_t)M * sizeof(int32_t));
    for (int i = 0; i < M; i++) *correct += pred[i] == m->targets_host[i];
    *count = M;
    free(pred);
}

// ----------------------------------------------------------------------------
// backward

void bert_backward(bert *m, float loss_scale) {
    PB_ASSERT(m->acts_mem && m->have_targets);
    m->have_targets = 0;  // the logits become gradients: a new forward is needed
    if (m->M == 0) return;
    const pb_ops *ops = m->ops;
    const bert_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, N = B * T, M = m->M;
    int mlm = c->head == BERT_HEAD_MLM;
    size_t ab = pb_act_bytes(ops), MC = (size_t)M * C;
    bert_acts *a = &m->acts;
    const bert_weights *w = &m->wa;
    bert_weights *g = &m->g;
    tf_grads *tg = &m->grads;
    float *d1 = m->dhead, *d2 = m->dhead2;
    int V_ = mlm ? c->vocab_size : c->num_labels, Vp_ = mlm ? c->padded_vocab : m->Lp;
    ops->crossentropy_backward(a->logits, a->logits, m->targets, loss_scale / (float)M, M, V_,
                               Vp_);
    tf_backward_begin(ops, &m->tf, tg, N);  // zeroes tg->out, where the head's gradient goes
    int H = mlm ? C : head_width(c);        // the head's hidden rows: (M,H)
    size_t MH = (size_t)M * H;
    ops->zero(d1, MH * ab);
    ops->zero(d2, MH * ab);
    if (mlm) {
        ops->matmul_backward(d1, g->wte, g->mlmbias, a->logits, a->hln, w->wte, M, C,
                             c->padded_vocab);
        ops->layernorm_backward(d2, g->mlmlnw, g->mlmlnb, d1, a->hgelu, w->mlmlnw, a->hln_mean,
                                a->hln_rstd, M, C);
        ops->zero(d1, MC * ab);
        ops->gelu_backward(d1, a->hpre, d2, MC, PB_GELU_ERF);
        ops->zero(d2, MC * ab);
        ops->matmul_backward(d2, g->mlmw, g->mlmb, d1, a->hsel, w->mlmw, M, C, C);
        ops->scatter_add_rows(tg->out, d2, m->sel, M, C);
    } else {
        ops->matmul_backward(d1, g->clsw, g->clsb, a->logits, a->pout, w->clsw, B, H, m->Lp);
        ops->act_backward(d2, a->pout, d1, MH, c->pooler);
        ops->zero(d1, MC * ab);
        ops->matmul_backward(d1, g->poolw, g->poolb, d2, a->pin, w->poolw, B, C, H);
        if (c->pool == BERT_POOL_CLS)
            ops->scatter_add_rows(tg->out, d1, m->sel, B, C);
        else
            ops->mean_pool_backward(tg->out, d1, m->lengths, c->drop_pad ? m->counts : NULL,
                                    B, T, C);
    }
    tf_backward(ops, &m->tf, &m->wa.tf, &g->tf, &a->tf, tg, a->x0, N, m->attn, &m->attn_desc);
    // d x0 is in tg->stream; the embeddings' LayerNorm (embw, embb get no gradient without
    // it), then the three tables
    const float *demb = tg->stream;
    if (!c->raw_embed) {
        ops->zero(tg->aux, (size_t)N * C * ab);
        ops->layernorm_backward(tg->aux, g->embw, g->embb, tg->stream, a->emb, w->embw,
                                a->x0_mean, a->x0_rstd, N, C);
        demb = tg->aux;
    }
    ops->encoder_backward(g->wte, g->wpe, g->wtt, demb, m->inputs, c->drop_pad ? m->pos : NULL,
                          B, T, C);
}
