// test_bert.c: BERT (model/bert.c) on a tiny config against a float64 PyTorch fixture written
// from Hugging Face's definitions (tests/fixtures/gen_bert_fixture.py): logits, losses and
// every parameter gradient of the MLM head and of the classifier with CLS and mean pooling
// (BERT's tanh pooler and LRA's ReLU head),
// with padding in the batch; gradients against finite differences; three AdamW steps;
// accuracy against the reference logits' argmax; padding that cannot change anything.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/bert.h"
#include "tests/fixture.h"
#include "train/optim.h"

static const int32_t *cfg_of(const char *c) {
    fx_load("tests/fixtures/bert_tiny.bin");
    char name[64];
    snprintf(name, sizeof name, "%s.config", c);
    return fx_get(name)->data;  // B, T, V, C, NH, L, F, MAXT, TYPES, NL
}

static const void *rec(const char *c, const char *what) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", c, what);
    return fx_get(name)->data;
}

// The model of case c ("mlm", "cls", "mean", "pre": pre-LN with mean pooling, "pad": "pre"
// with token 0 dropped wherever it stands, "raw": "pad" without the embeddings' LayerNorm,
// "relu": "raw" with LRA's ReLU head, ffn wide) with the fixture's weights.
static void build(bert *m, const char *c) {
    const int32_t *k = cfg_of(c);
    bert_config cfg = {.n_layer = k[5], .n_head = k[4], .n_embd = k[3], .ffn = k[6],
                       .seq_len = k[7], .vocab_size = k[2], .type_vocab = k[8],
                       .ln_eps = 1e-12f, .attention = "auto"};
    cfg.head = strcmp(c, "mlm") == 0 ? BERT_HEAD_MLM : BERT_HEAD_CLASSIFY;
    cfg.num_labels = k[9];
    int relu = strcmp(c, "relu") == 0, raw = strcmp(c, "raw") == 0 || relu;
    int pad = strcmp(c, "pad") == 0 || raw;
    cfg.pool = strcmp(c, "cls") == 0 || strcmp(c, "mlm") == 0 ? BERT_POOL_CLS : BERT_POOL_MEAN;
    cfg.pre_ln = strcmp(c, "pre") == 0 || pad;
    cfg.drop_pad = pad;  // pad_token 0
    cfg.raw_embed = raw;
    cfg.pooler = relu ? PB_ACT_RELU : PB_ACT_TANH;
    bert_build(m, &cfg, pb_ops_cpu());
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.w.", c);
    fx_load_params(&m->p, prefix);
}

static const char *g_case;
static double forward(bert *m, const char *c) {
    const int32_t *k = cfg_of(c);
    return bert_forward(m, rec(c, "inputs"), rec(c, "lengths"), rec(c, "targets"),
                        rec(c, "labels"), k[0], k[1]);
}
static double fd_loss(void *ctx) { return forward(ctx, g_case); }

// ----------------------------------------------------------------------------
// the table

// Names and shapes of BertForMaskedLM / BertForSequenceClassification for the tiny config:
// the fixture records every tensor of the state_dict, so the table must have exactly those.
static void table_is_the_fixtures(const char *c) {
    bert m;
    build(&m, c);  // fx_load_params asserts every name and shape of the table is in the fixture
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.w.", c);
    int n = 0;
    for (int i = 0; i < fx_count; i++) n += strncmp(fx[i].name, prefix, strlen(prefix)) == 0;
    cr_assert_eq(n, m.p.num, "%s: the fixture has %d tensors, the table %d", c, n, m.p.num);
    bert_free(&m);
}
Test(bert, table_matches_hugging_face_mlm) { table_is_the_fixtures("mlm"); }

// The table against transformers' own state_dict of BertForMaskedLM and
// BertForSequenceClassification for the fixture's config (tests/fixtures/bert_hf_names.txt,
// written on the GPU machine by tests/gpu/check_hf_bert.py from transformers 5.17): every
// name and shape, in both directions; the tied decoder (= the word embeddings and
// cls.predictions.bias) is the one thing pebble does not store.
static void table_is_transformers(const char *c, const char *cls) {
    bert m;
    build(&m, c);
    FILE *f = fopen("tests/fixtures/bert_hf_names.txt", "r");
    cr_assert(f, "tests/fixtures/bert_hf_names.txt (run from the repository root)");
    char line[256], name[128], shape[64], want[64];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char klass[64];
        cr_assert(sscanf(line, "%63s %127s %63[^\n]", klass, name, shape) == 3, "%s", line);
        if (strcmp(klass, cls) != 0 || strstr(name, "cls.predictions.decoder.")) continue;
        const pb_param *p = params_find(&m.p, name);
        cr_assert(p, "%s: transformers has %s, pebble's table does not", cls, name);
        if (p->ndim == 2) snprintf(want, sizeof want, "[%d, %d]", p->hf_shape[0], p->hf_shape[1]);
        else snprintf(want, sizeof want, "[%d]", p->hf_shape[0]);
        cr_expect_str_eq(shape, want, "%s: %s is %s in transformers", cls, name, shape);
        n++;
    }
    fclose(f);
    cr_assert_eq(n, m.p.num, "%s: transformers stores %d tensors (tied aside), pebble %d", cls, n,
                 m.p.num);
    bert_free(&m);
}
Test(bert, table_is_transformers_bert_for_masked_lm) { table_is_transformers("mlm", "BertForMaskedLM"); }
Test(bert, table_is_transformers_bert_for_sequence_classification) {
    table_is_transformers("cls", "BertForSequenceClassification");
}
Test(bert, table_matches_hugging_face_classifier) { table_is_the_fixtures("cls"); }

// ----------------------------------------------------------------------------
// forward

static void expect_logits(const bert *m, const float *ref, int rows, int V, int Vp) {
    double maxdiff = 0, maxref = 0;
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < V; v++) {
            maxdiff = fmax(maxdiff, fabs((double)m->acts.logits[(size_t)i * Vp + v] - ref[(size_t)i * V + v]));
            maxref = fmax(maxref, fabs((double)ref[(size_t)i * V + v]));
        }
    cr_assert(maxdiff <= 1e-5 * maxref, "logits: max diff %g (max |logit| %g)", maxdiff, maxref);
}

static void forward_matches(const char *c) {
    bert m;
    build(&m, c);
    double loss = forward(&m, c);
    double ref = *(const float *)rec(c, "loss");
    cr_assert(fabs(loss - ref) <= 1e-5 * fabs(ref), "%s: loss %.8f, PyTorch %.8f", c, loss, ref);
    int mlm = m.cfg.head == BERT_HEAD_MLM;
    int rows = mlm ? m.M : m.B, V = mlm ? m.cfg.vocab_size : m.cfg.num_labels;
    expect_logits(&m, rec(c, "logits"), rows, V, mlm ? m.cfg.padded_vocab : m.Lp);
    // accuracy: the reference logits' argmax against the targets
    const float *rl = rec(c, "logits");
    const int32_t *tgt = mlm ? rec(c, "targets") : rec(c, "labels");
    long want = 0, n = 0;
    for (int i = 0, r = 0; i < (mlm ? m.B * m.T : m.B); i++) {
        if (tgt[i] < 0) continue;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (rl[(size_t)r * V + v] > rl[(size_t)r * V + best]) best = v;
        want += best == tgt[i];
        n++;
        r++;
    }
    long correct, count;
    bert_accuracy(&m, &correct, &count);
    cr_assert(count == n && correct == want, "%s: accuracy %ld/%ld, reference %ld/%ld", c,
              correct, count, want, n);
    bert_free(&m);
}
Test(bert, mlm_forward_matches_pytorch) { forward_matches("mlm"); }
Test(bert, cls_forward_matches_pytorch) { forward_matches("cls"); }
Test(bert, mean_forward_matches_pytorch) { forward_matches("mean"); }
Test(bert, pre_ln_forward_matches_pytorch) { forward_matches("pre"); }
// Token 0 dropped (model.pad_token = 0) against the reference that keeps the whole sequence
// and masks those keys (Nystromformer's model).
Test(bert, pad_token_forward_matches_masked_pytorch) { forward_matches("pad"); }
// model.embed_norm = false: the summed embeddings straight into the first block
Test(bert, raw_embeddings_forward_matches_pytorch) { forward_matches("raw"); }
// model.pooler = relu: LRA's classifier head, relu(dense to ffn), then the classifier
Test(bert, relu_head_forward_matches_pytorch) { forward_matches("relu"); }

// With pad_token the stack's T changes from batch to batch, and the activations are mapped
// again in the same memory: a shorter batch in between, then the first one again, give what
// fresh models give.
Test(bert, pad_token_batches_of_other_lengths) {
    const int32_t *k = cfg_of("pad");
    int B = k[0], T = k[1], S = T / 2;
    const int32_t *in = rec("pad", "inputs"), *len = rec("pad", "lengths");
    const int32_t *lab = rec("pad", "labels");
    int32_t *in2 = malloc((size_t)B * S * sizeof(int32_t)), len2[8];
    for (int b = 0; b < B; b++) {
        memcpy(in2 + (size_t)b * S, in + (size_t)b * T, (size_t)S * sizeof(int32_t));
        len2[b] = len[b] < S ? len[b] : S;
    }
    bert m, fresh;
    build(&m, "pad");
    double first = bert_forward(&m, in, len, NULL, lab, B, T);
    double shorter = bert_forward(&m, in2, len2, NULL, lab, B, S);
    double again = bert_forward(&m, in, len, NULL, lab, B, T);
    build(&fresh, "pad");
    double want = bert_forward(&fresh, in2, len2, NULL, lab, B, S);
    cr_assert(again == first, "the first batch again: loss %.9g, before %.9g", again, first);
    cr_assert(shorter == want, "the shorter batch: loss %.9g, a fresh model %.9g", shorter, want);
    cr_assert(first != shorter);  // the batches differ, so the check above says something
    bert_free(&fresh);
    bert_free(&m);
    free(in2);
}

// A sequence of nothing but the pad token leaves nothing to attend to: one line, exit 3.
Test(bert, pad_token_only_sequence_refused, .exit_code = 3) {
    bert m;
    build(&m, "pad");
    int32_t in[2 * 4] = {5, 0, 7, 0, 0, 0, 0, 0}, len[2] = {4, 4}, lab[2] = {0, 1};
    bert_forward(&m, in, len, NULL, lab, 2, 4);
}

// Without targets the MLM head runs on every position (inference, `pebble eval` of logits).
Test(bert, mlm_logits_of_every_position) {
    bert m;
    build(&m, "mlm");
    const int32_t *k = cfg_of("mlm");
    cr_assert_eq(bert_forward(&m, rec("mlm", "inputs"), rec("mlm", "lengths"), NULL, NULL, k[0], k[1]), 0.0);
    cr_assert_eq(m.M, k[0] * k[1]);
    expect_logits(&m, rec("mlm", "logits_all"), m.M, m.cfg.vocab_size, m.cfg.padded_vocab);
    bert_free(&m);
}

// Tokens at padding positions are masked out of every attention and feed no loss: any
// change to them leaves the loss and every real position's logits exactly as they were.
Test(bert, padding_changes_nothing) {
    bert m;
    build(&m, "mlm");
    const int32_t *k = cfg_of("mlm"), *len = rec("mlm", "lengths");
    int B = k[0], T = k[1], V = k[2];
    double loss = forward(&m, "mlm");
    size_t nl = (size_t)m.M * m.cfg.padded_vocab;
    float *logits = malloc(nl * sizeof(float));
    memcpy(logits, m.acts.logits, nl * sizeof(float));
    int32_t *in = malloc((size_t)B * T * sizeof(int32_t));
    memcpy(in, rec("mlm", "inputs"), (size_t)B * T * sizeof(int32_t));
    int changed = 0;
    for (int b = 0; b < B; b++)
        for (int t = len[b]; t < T; t++, changed++) in[b * T + t] = (7 * b + 3 * t) % V;
    cr_assert(changed > 0);
    double loss2 = bert_forward(&m, in, len, rec("mlm", "targets"), NULL, B, T);
    cr_assert(loss2 == loss, "loss %.9g became %.9g", loss, loss2);
    cr_assert(memcmp(logits, m.acts.logits, nl * sizeof(float)) == 0);
    free(in);
    free(logits);
    bert_free(&m);
}

// ----------------------------------------------------------------------------
// backward

// Relative to each tensor's largest entry, 1e-4 (as test_gpt2: fp32 against float64).
static void gradients_match(const char *c) {
    bert m;
    build(&m, c);
    params_zero_grad(&m.p);
    forward(&m, c);
    bert_backward(&m, 1.0f);
    char name[160];
    for (int i = 0; i < m.p.num; i++) {
        const pb_param *p = &m.p.tab[i];
        snprintf(name, sizeof name, "%s.d.%s", c, p->name);
        const float *ref = fx_get(name)->data;
        if (strstr(p->name, "attention.self.key.bias")) {
            // A bias on every key adds q.b to a whole score row, which the softmax ignores:
            // the true gradient is 0 and both sides hold rounding noise. Against the scale
            // of the query bias's gradient (the tensor before it), it must vanish.
            double gmax = 0, qmax = 0;
            for (size_t j = 0; j < p->numel; j++) {
                gmax = fmax(gmax, fabs(m.p.grad[p->offset + j]));
                qmax = fmax(qmax, fabs(m.p.grad[p[-1].offset + j]));
            }
            cr_expect(gmax <= 1e-5 * qmax && qmax > 0, "%s: %s: gradient %g (query bias %g)",
                      c, p->name, gmax, qmax);
            continue;
        }
        double e = rel_err_hf(p, m.p.grad + p->offset, ref);
        cr_expect(e <= 1e-4, "%s: %s: relative gradient error %g", c, p->name, e);
    }
    // padding rows (word embeddings past V, classifier rows past num_labels) get nothing
    for (int i = 0; i < m.p.num; i++) {
        const pb_param *p = &m.p.tab[i];
        size_t real = (size_t)p->hf_shape[0] * (p->ndim == 2 ? p->hf_shape[1] : 1);
        for (size_t j = real; j < p->numel; j++) cr_assert_eq(m.p.grad[p->offset + j], 0.0f);
    }
    bert_free(&m);
}
Test(bert, mlm_gradients_match_pytorch) { gradients_match("mlm"); }
Test(bert, cls_gradients_match_pytorch) { gradients_match("cls"); }
Test(bert, mean_gradients_match_pytorch) { gradients_match("mean"); }
Test(bert, pre_ln_gradients_match_pytorch) { gradients_match("pre"); }
Test(bert, pad_token_gradients_match_masked_pytorch) { gradients_match("pad"); }
Test(bert, raw_embeddings_gradients_match_pytorch) { gradients_match("raw"); }
Test(bert, relu_head_gradients_match_pytorch) { gradients_match("relu"); }

static void finite_differences(const char *c) {
    bert m;
    build(&m, c);
    params_zero_grad(&m.p);
    forward(&m, c);
    bert_backward(&m, 1.0f);
    g_case = c;
    // the key biases' gradient is exactly 0 (below): a finite difference only sees rounding
    fx_check_finite_differences(&m.p, fd_loss, &m, "attention.self.key.bias");
    bert_free(&m);
}
Test(bert, mlm_gradients_match_finite_differences) { finite_differences("mlm"); }
Test(bert, mean_gradients_match_finite_differences) { finite_differences("mean"); }
Test(bert, pre_ln_gradients_match_finite_differences) { finite_differences("pre"); }
Test(bert, pad_token_gradients_match_finite_differences) { finite_differences("pad"); }
Test(bert, raw_embeddings_gradients_match_finite_differences) { finite_differences("raw"); }
Test(bert, relu_head_gradients_match_finite_differences) { finite_differences("relu"); }

// Three AdamW steps (lr 1e-2, no clipping): the loss before each and the weights after.
// As in test_gpt2, the key biases are left out: their true gradient is exactly 0 (a bias
// on every key shifts a whole score row, which the softmax ignores), and Adam turns the
// rounding noise on either side into full-size steps in arbitrary directions.
static void adamw_matches(const char *c) {
    bert m;
    build(&m, c);
    pb_adamw opt;
    adamw_init(&opt, &m.p, 0.9f, 0.95f, 1e-8f, 0.1f);
    const float *ref_losses = rec(c, "adamw_losses");
    for (int s = 0; s < 3; s++) {
        params_zero_grad(&m.p);
        double loss = forward(&m, c);
        bert_backward(&m, 1.0f);
        adamw_step(&opt, &m.p, 1e-2f);
        cr_expect(fabs(loss - ref_losses[s]) <= 2e-5 * ref_losses[s],
                  "%s step %d: loss %.7f, PyTorch %.7f", c, s + 1, loss, ref_losses[s]);
    }
    char name[160];
    for (int i = 0; i < m.p.num; i++) {
        const pb_param *p = &m.p.tab[i];
        if (strstr(p->name, "attention.self.key.bias")) continue;
        snprintf(name, sizeof name, "%s.adamw.%s", c, p->name);
        double e = rel_err_hf(p, m.p.mem + p->offset, fx_get(name)->data);
        cr_expect(e <= 1e-3, "%s: %s after AdamW: relative error %g", c, p->name, e);
    }
    adamw_free(&opt);
    bert_free(&m);
}
Test(bert, mlm_adamw_steps_match_pytorch) { adamw_matches("mlm"); }
Test(bert, cls_adamw_steps_match_pytorch) { adamw_matches("cls"); }

// ----------------------------------------------------------------------------
// the two inits (model.init), against their distributions' closed forms: every tensor's
// bound, mean and variance (U(-b, b): b^2 / 3; N(0, 0.02): 4e-4), padding rows zero

static void init_follows(bert_init init, bert_head head) {
    bert_config cfg = {.n_layer = 2, .n_head = 2, .n_embd = 64, .ffn = 128, .seq_len = 1024,
                       .vocab_size = 256, .type_vocab = 2, .ln_eps = 1e-12f, .head = head,
                       .num_labels = 2, .pool = BERT_POOL_MEAN, .pre_ln = 1, .attention = "auto",
                       .init = init};
    bert m;
    bert_build(&m, &cfg, pb_ops_cpu());
    bert_init_weights(&m, 7);
    const pb_params *ps = &m.p;
    int linears = 0;
    for (int i = 0; i < ps->num; i++) {
        const pb_param *p = &ps->tab[i];
        const float *x = ps->mem + p->offset;
        size_t cols = p->ndim == 1 ? 1 : (size_t)p->shape[1];
        size_t n = (size_t)p->hf_shape[0] * cols;  // the real rows; the rest is padding
        for (size_t j = n; j < p->numel; j++)
            cr_assert(x[j] == 0.0f, "%s: padding element %zu is %g", p->name, j, x[j]);
        double s = 0, s2 = 0, mx = 0;
        for (size_t j = 0; j < n; j++)
            s += x[j], s2 += (double)x[j] * x[j], mx = fmax(mx, fabs(x[j]));
        double mean = s / n, var = s2 / n - mean * mean;
        int ln = strstr(p->name, "LayerNorm.") != NULL, emb = strstr(p->name, "embeddings.") && !ln;
        int is_w = p->ndim == 2 && !emb;
        char wname[64];
        snprintf(wname, sizeof wname, "%.*sweight", (int)(strlen(p->name) - 4), p->name);
        const pb_param *w = p->ndim == 2 ? p : params_find(ps, wname);
        int is_b = p->ndim == 1 && !ln && w != NULL;
        if (ln) {
            float want = strstr(p->name, "LayerNorm.weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < n; j++)
                cr_assert(x[j] == want, "%s[%zu] = %g", p->name, j, x[j]);
        } else if (emb) {
            size_t from = init == BERT_INIT_HF && i == 0 ? (size_t)cfg.n_embd : 0;  // [PAD]'s row
            for (size_t j = 0; j < from; j++) cr_assert(x[j] == 0.0f, "%s: [PAD]'s row", p->name);
            if (n >= 4096)
                cr_expect(fabs(var / 4e-4 - 1) < 0.1 && fabs(mean) < 2e-3, "%s: mean %g var %g, "
                          "N(0, 0.02) has var 4e-4", p->name, mean, var);
        } else if (init == BERT_INIT_FAN_IN && (is_w || is_b)) {
            double b = 1.0 / sqrt((double)w->shape[1]);
            linears++;
            cr_expect(mx <= b && mx > 0.5 * b, "%s: max |x| %g, bound %g", p->name, mx, b);
            if (n >= 4096)
                cr_expect(fabs(var / (b * b / 3) - 1) < 0.1 && fabs(mean) < 0.05 * b,
                          "%s: mean %g var %g, U(-b, b) has var %g", p->name, mean, var, b * b / 3);
        } else if (p->ndim == 1) {  // a bias under HF's init, or the MLM decoder's: 0
            cr_expect(mx == 0.0, "%s: max |x| %g, want 0", p->name, mx);
        } else {  // HF's init: N(0, 0.02)
            cr_expect(mx > 0 && mx < 0.02 * 6, "%s: max |x| %g", p->name, mx);
            if (n >= 4096)
                cr_expect(fabs(var / 4e-4 - 1) < 0.1, "%s: var %g, want 4e-4", p->name, var);
        }
    }
    if (init == BERT_INIT_FAN_IN)  // per block 4 Linears (q, k, v fused: their 3+3) x 2, head
        cr_expect(linears == cfg.n_layer * 12 + (head == BERT_HEAD_MLM ? 2 : 4),
                  "%d tensors drawn by fan-in", linears);
    bert_free(&m);
}

Test(bert, init_hf_is_normal_002) { init_follows(BERT_INIT_HF, BERT_HEAD_CLASSIFY); }
Test(bert, init_fan_in_is_pytorch_linear_classify) {
    init_follows(BERT_INIT_FAN_IN, BERT_HEAD_CLASSIFY);
}
Test(bert, init_fan_in_is_pytorch_linear_mlm) { init_follows(BERT_INIT_FAN_IN, BERT_HEAD_MLM); }
