// transformer.c: the block, forward and backward, pre- and post-LayerNorm (transformer.h).
#include "model/transformer.h"

#include <math.h>

#include "kernels/common.h"
#include "kernels/dropout.h"

// ----------------------------------------------------------------------------
// layout

void tf_map_acts(const tf_config *c, size_t N, size_t nlse, size_t ab, tf_acts *a, void *base,
                 size_t *off) {
    size_t C = (size_t)c->C;
    for (int l = 0; l < c->n_layer; l++) {
        tf_layer_acts *h = &a->h[l];
        h->ln1 = tf_take(base, off, N * C, ab);
        h->ln1_mean = tf_take(base, off, N, 4);
        h->ln1_rstd = tf_take(base, off, N, 4);
        h->qkv = tf_take(base, off, N * 3 * C, ab);
        h->atty = tf_take(base, off, N * C, ab);
        h->lse = tf_take(base, off, nlse, 4);
        h->attproj = tf_take(base, off, N * C, ab);
        h->res2 = tf_take(base, off, N * C, ab);
        h->ln2 = tf_take(base, off, N * C, ab);
        h->ln2_mean = tf_take(base, off, N, 4);
        h->ln2_rstd = tf_take(base, off, N, 4);
        h->fch = tf_take(base, off, N * c->F, ab);
        h->fch_gelu = tf_take(base, off, N * c->F, ab);
        h->fcproj = tf_take(base, off, N * C, ab);
        h->res3 = tf_take(base, off, N * C, ab);
    }
    a->lnf = a->lnf_mean = a->lnf_rstd = NULL;
    if (!c->post_ln) {
        a->lnf = tf_take(base, off, N * C, ab);
        a->lnf_mean = tf_take(base, off, N, 4);
        a->lnf_rstd = tf_take(base, off, N, 4);
    }
}

void tf_map_grads(const tf_config *c, size_t N, size_t ab, int fused_gelu, tf_grads *g,
                  void *base, size_t *off) {
    size_t C = (size_t)c->C;
    g->stream = tf_take(base, off, N * C, ab);
    g->aux = tf_take(base, off, N * C, ab);
    g->out = c->post_ln ? g->stream : g->aux;
    g->ln1 = g->ln2 = NULL;
    if (!c->post_ln) g->ln1 = tf_take(base, off, N * C, ab);  // ln1, qkv, atty: one memset
    g->qkv = tf_take(base, off, N * 3 * C, ab);
    g->atty = tf_take(base, off, N * C, ab);
    if (!c->post_ln) g->ln2 = tf_take(base, off, N * C, ab);
    g->fch = tf_take(base, off, N * c->F, ab);
    // with the fused matmul_backward_gelu (tanh GELU only: mlp_backward) the gradient of
    // gelu(fch) is never stored
    int fused = fused_gelu && c->gelu == PB_GELU_TANH;
    g->fch_gelu = fused ? NULL : tf_take(base, off, N * c->F, ab);
    g->drop = c->dropout > 0 ? tf_take(base, off, N * C, ab) : NULL;
}

// The key of layer l's dropout site (0: attention's output, 1: the MLP's) in this forward;
// the stack's input is site 0 of layer L (after every block's).
static uint64_t drop_site(const tf_acts *a, int l, int site) {
    return pb_drop_hash(a->drop_key, 2 * (uint64_t)l + (uint64_t)site);
}

// ----------------------------------------------------------------------------
// forward

pb_attn_desc tf_self_attention(const tf_config *c, int B, int T, int causal,
                               const int32_t *kv_len) {
    int D = c->C / c->NH;
    return (pb_attn_desc){.B = B, .T = T, .Tk = T, .NH = c->NH, .D = D,
                          .scale = 1.0f / sqrtf((float)D), .causal = causal, .kv_len = kv_len,
                          .drop_p = c->attn_dropout};
}

// The attention probabilities' site follows drop_site's 2L + 1 (and the layers' keys are drawn
// from it by layer_attention).
void tf_attn_dropout(pb_attn_desc *d, const tf_config *c, const tf_acts *acts) {
    PB_ASSERT(acts->attn_drop_p >= 0.0f && acts->attn_drop_p <= c->attn_dropout &&
              acts->attn_drop_p < 1.0f);
    d->drop_p = acts->attn_drop_p;
    d->drop_key = pb_drop_hash(acts->drop_key, 2 * (uint64_t)c->n_layer + 1);
}

// Layer l's descriptor: d with its own dropout key.
static pb_attn_desc layer_attention(const pb_attn_desc *d, int l) {
    pb_attn_desc r = *d;
    if (r.drop_p > 0) r.drop_key = pb_drop_hash(d->drop_key, (uint64_t)l);
    return r;
}

static void attend_desc(void *ctx, int layer, float *out, float *lse, const float *qkv) {
    const void *const *p = ctx;
    const pb_attn_impl *a = p[0];
    pb_attn_desc d = layer_attention((const pb_attn_desc *)p[1], layer);
    a->forward(out, lse, qkv, &d);
}

tf_attend tf_attend_desc(const pb_attn_impl *a, const pb_attn_desc *d, const void *ctx[2]) {
    ctx[0] = a;
    ctx[1] = d;
    return (tf_attend){attend_desc, (void *)ctx};
}

// res = a + b, then out, mean, rstd = LayerNorm(res): the fused op when the table has it
// (the same bits as the two ops).
static void residual_ln(const pb_ops *ops, float *res, const float *a, const float *b,
                        float *out, float *mean, float *rstd, const float *w, const float *bias,
                        int N, int C, float eps) {
    if (ops->residual_layernorm_forward) {
        ops->residual_layernorm_forward(res, out, mean, rstd, a, b, w, bias, N, C, eps);
    } else {
        ops->residual_forward(res, a, b, (size_t)N * C);
        ops->layernorm_forward(out, mean, rstd, res, w, bias, N, C, eps);
    }
}

// fch_gelu (N,F) = gelu(fch = in @ fcw^T + fcb), in one product where the table fuses it
// (tanh GELU only).
static void mlp_up(const pb_ops *ops, const tf_config *c, const tf_layer_weights *w,
                   tf_layer_acts *h, const float *in, int N) {
    int C = c->C;
    if (ops->matmul_gelu_forward && c->gelu == PB_GELU_TANH) {
        ops->matmul_gelu_forward(h->fch_gelu, h->fch, in, w->fcw, w->fcb, N, C, c->F);
    } else {
        ops->matmul_forward(h->fch, in, w->fcw, w->fcb, N, C, c->F);
        ops->gelu_forward(h->fch_gelu, h->fch, (size_t)N * c->F, c->gelu);
    }
}

const float *tf_forward(const pb_ops *ops, const tf_config *c, const tf_weights *w,
                        tf_acts *acts, float *x, int N, tf_attend attend) {
    int C = c->C, L = c->n_layer, post = c->post_ln;
    float eps = c->ln_eps, p = acts->drop_p;
    PB_ASSERT(p >= 0.0f && p <= c->dropout && p < 1.0f);
    size_t NC = (size_t)N * C;
    // the embeddings' dropout, in place: the blocks (and the backward) see the dropped x
    if (p > 0) ops->dropout(x, x, NC, drop_site(acts, L, 0), p);
    // pre-LN: each residual add is followed by a LayerNorm of its sum (ln_2; the next block's
    // ln_1, or ln_f after the last), so residual_ln runs each pair and every block but the
    // first starts with its ln_1 already computed. post-LN: the LayerNorm after each residual
    // add is the block's own (ln_1, ln_2).
    if (!post && L)
        ops->layernorm_forward(acts->h[0].ln1, acts->h[0].ln1_mean, acts->h[0].ln1_rstd, x,
                               w->h[0].ln1w, w->h[0].ln1b, N, C, eps);
    else if (!post)
        ops->layernorm_forward(acts->lnf, acts->lnf_mean, acts->lnf_rstd, x, w->lnfw, w->lnfb,
                               N, C, eps);
    for (int l = 0; l < L; l++) {
        const tf_layer_weights *lw = &w->h[l];
        tf_layer_acts *h = &acts->h[l];
        // attention branch: on ln_1(x) (pre) or x (post); res2 = x + attproj
        ops->matmul_forward(h->qkv, post ? x : h->ln1, lw->qkvw, lw->qkvb, N, C, 3 * C);
        attend.fn(attend.ctx, l, h->atty, h->lse, h->qkv);
        ops->matmul_forward(h->attproj, h->atty, lw->attprojw, lw->attprojb, N, C, C);
        if (p > 0) ops->dropout(h->attproj, h->attproj, NC, drop_site(acts, l, 0), p);
        if (post)
            residual_ln(ops, h->res2, x, h->attproj, h->ln1, h->ln1_mean, h->ln1_rstd, lw->ln1w,
                        lw->ln1b, N, C, eps);
        else
            residual_ln(ops, h->res2, x, h->attproj, h->ln2, h->ln2_mean, h->ln2_rstd, lw->ln2w,
                        lw->ln2b, N, C, eps);
        // MLP branch: on ln_2(res2) (pre) or ln_1 (post); res3 = its input's stream + fcproj
        const float *in = post ? h->ln1 : h->ln2, *stream = post ? h->ln1 : h->res2;
        mlp_up(ops, c, lw, h, in, N);
        ops->matmul_forward(h->fcproj, h->fch_gelu, lw->fcprojw, lw->fcprojb, N, c->F, C);
        if (p > 0) ops->dropout(h->fcproj, h->fcproj, NC, drop_site(acts, l, 1), p);
        if (post) {
            residual_ln(ops, h->res3, stream, h->fcproj, h->ln2, h->ln2_mean, h->ln2_rstd,
                        lw->ln2w, lw->ln2b, N, C, eps);
        } else if (l + 1 < L) {
            tf_layer_acts *n = &acts->h[l + 1];
            residual_ln(ops, h->res3, stream, h->fcproj, n->ln1, n->ln1_mean, n->ln1_rstd,
                        w->h[l + 1].ln1w, w->h[l + 1].ln1b, N, C, eps);
        } else {
            residual_ln(ops, h->res3, stream, h->fcproj, acts->lnf, acts->lnf_mean,
                        acts->lnf_rstd, w->lnfw, w->lnfb, N, C, eps);
        }
        x = post ? h->ln2 : h->res3;  // the block's output
    }
    return post ? x : acts->lnf;
}

// ----------------------------------------------------------------------------
// backward

void tf_backward_begin(const pb_ops *ops, const tf_config *c, tf_grads *g, int N) {
    ops->zero(g->out, (size_t)N * c->C * pb_act_bytes(ops));
}

// dres, the gradient of layer l's dropped branch output, through the dropout: g->drop (the
// same mask and scale), or dres itself when the forward dropped nothing.
static const float *undrop(const pb_ops *ops, const tf_acts *a, tf_grads *g, const float *dres,
                           int l, int site, size_t n) {
    if (a->drop_p <= 0) return dres;
    ops->dropout(g->drop, dres, n, drop_site(a, l, site), a->drop_p);
    return g->drop;
}

// The gradient of the stack's input (g->stream) through the embeddings' dropout, in place.
static void undrop_input(const pb_ops *ops, const tf_acts *a, tf_grads *g, int L, size_t n) {
    if (a->drop_p > 0) ops->dropout(g->stream, g->stream, n, drop_site(a, L, 0), a->drop_p);
}

// The MLP's backward from the gradient dres of its output (fcproj, before its dropout):
// weight gradients into dw, and its input's gradient ADDED to din. in is the MLP's input
// (ln2 pre-LN, ln1 post-LN).
static void mlp_backward(const pb_ops *ops, const tf_config *c, const tf_layer_weights *w,
                         tf_layer_weights *dw, const tf_layer_acts *h, tf_grads *g,
                         const float *dres, const float *in, float *din, int N) {
    int C = c->C;
    size_t n4 = (size_t)N * c->F;
    if (ops->matmul_backward_gelu && c->gelu == PB_GELU_TANH) {
        // dfch directly (overwritten: its only writer); dgelu(fch) is never stored
        ops->matmul_backward_gelu(g->fch, dw->fcprojw, dw->fcprojb, dres, h->fch_gelu,
                                  w->fcprojw, h->fch, N, c->F, C);
    } else {
        size_t ab = pb_act_bytes(ops);
        ops->zero(g->fch_gelu, n4 * ab);
        ops->zero(g->fch, n4 * ab);
        ops->matmul_backward(g->fch_gelu, dw->fcprojw, dw->fcprojb, dres, h->fch_gelu,
                             w->fcprojw, N, c->F, C);
        ops->gelu_backward(g->fch, h->fch, g->fch_gelu, n4, c->gelu);
    }
    ops->matmul_backward(din, dw->fcw, dw->fcb, g->fch, in, w->fcw, N, C, c->F);
}

// The attention branch's backward from the gradient dres of its output (attproj, before its
// dropout), into
// dqkv; then qkv's input gradient ADDED to din. in is the branch's input (ln1 pre-LN, the
// block input post-LN).
static void attn_backward(const pb_ops *ops, const tf_config *c, const tf_layer_weights *w,
                          tf_layer_weights *dw, const tf_layer_acts *h, tf_grads *g,
                          const float *dres, const float *in, float *din, int N,
                          const pb_attn_impl *attn, const pb_attn_desc *d, int l) {
    int C = c->C;
    ops->matmul_backward(g->atty, dw->attprojw, dw->attprojb, dres, h->atty, w->attprojw, N, C,
                         C);
    pb_attn_desc dl = layer_attention(d, l);  // the forward's dropout key of this layer
    attn->backward(g->qkv, g->atty, h->atty, h->lse, h->qkv, &dl);
    ops->matmul_backward(din, dw->qkvw, dw->qkvb, g->qkv, in, w->qkvw, N, C, 3 * C);
}

void tf_backward(const pb_ops *ops, const tf_config *c, const tf_weights *w, tf_weights *dw,
                 const tf_acts *acts, tf_grads *g, const float *x0, int N,
                 const pb_attn_impl *attn, const pb_attn_desc *d) {
    int C = c->C, L = c->n_layer;
    size_t NC = (size_t)N * C, ab = pb_act_bytes(ops);
    // A residual add passes its output's gradient unchanged to both inputs, so the stream's
    // gradient lives in one buffer that the branches read and the LayerNorms add into: no
    // residual_backward, no per-block copies. Only buffers that ops accumulate into are zeroed.
    if (c->post_ln) {
        // stream holds d(block output) = d ln2; aux collects d res3, then d ln1 (the residual
        // part plus the MLP's input gradient); stream is then reused for d res2, then d x.
        for (int l = L - 1; l >= 0; l--) {
            const tf_layer_weights *lw = &w->h[l];
            tf_layer_weights *lg = &dw->h[l];
            const tf_layer_acts *h = &acts->h[l];
            const float *x = l ? acts->h[l - 1].ln2 : x0;
            ops->zero(g->aux, NC * ab);
            ops->layernorm_backward(g->aux, lg->ln2w, lg->ln2b, g->stream, h->res3, lw->ln2w,
                                    h->ln2_mean, h->ln2_rstd, N, C);
            mlp_backward(ops, c, lw, lg, h, g, undrop(ops, acts, g, g->aux, l, 1, NC), h->ln1,
                         g->aux, N);
            ops->zero(g->stream, NC * ab);
            ops->layernorm_backward(g->stream, lg->ln1w, lg->ln1b, g->aux, h->res2, lw->ln1w,
                                    h->ln1_mean, h->ln1_rstd, N, C);
            ops->zero(g->atty, NC * ab);
            ops->zero(g->qkv, 3 * NC * ab);
            attn_backward(ops, c, lw, lg, h, g, undrop(ops, acts, g, g->stream, l, 0, NC), x,
                          g->stream, N, attn, d, l);
            if (g->layer_done) g->layer_done(g->layer_done_ctx, l);
        }
        undrop_input(ops, acts, g, L, NC);
        return;
    }
    ops->zero(g->stream, NC * ab);
    const float *x_last = L ? acts->h[L - 1].res3 : x0;
    ops->layernorm_backward(g->stream, dw->lnfw, dw->lnfb, g->out, x_last, w->lnfw,
                            acts->lnf_mean, acts->lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        const tf_layer_weights *lw = &w->h[l];
        tf_layer_weights *lg = &dw->h[l];
        const tf_layer_acts *h = &acts->h[l];
        const float *x = l ? acts->h[l - 1].res3 : x0;  // block input
        // ln1, qkv, atty are laid out in that order: one memset
        PB_ASSERT(g->ln1 < g->qkv && g->qkv < g->atty);
        ops->zero(g->ln1, (size_t)((char *)g->atty - (char *)g->ln1) + NC * ab);
        ops->zero(g->ln2, NC * ab);
        // MLP branch: res3 = res2 + fcproj, so d fcproj = d res3 = stream; then
        // d res2 = d res3 + ln_2's input gradient
        mlp_backward(ops, c, lw, lg, h, g, undrop(ops, acts, g, g->stream, l, 1, NC), h->ln2,
                     g->ln2, N);
        ops->layernorm_backward(g->stream, lg->ln2w, lg->ln2b, g->ln2, h->res2, lw->ln2w,
                                h->ln2_mean, h->ln2_rstd, N, C);
        // attention branch: res2 = x + attproj, so d attproj = d res2 = stream; then
        // d x = d res2 + ln_1's input gradient: the block below's d res3
        attn_backward(ops, c, lw, lg, h, g, undrop(ops, acts, g, g->stream, l, 0, NC), h->ln1,
                      g->ln1, N, attn, d, l);
        ops->layernorm_backward(g->stream, lg->ln1w, lg->ln1b, g->ln1, x, lw->ln1w, h->ln1_mean,
                                h->ln1_rstd, N, C);
        if (g->layer_done) g->layer_done(g->layer_done_ctx, l);
    }
    undrop_input(ops, acts, g, L, NC);
}

int tf_layer_span(const tf_config *c, const tf_layer_weights *lw, const float *base, size_t *lo,
                  size_t *hi) {
    size_t C = (size_t)c->C, F = (size_t)c->F;
    const float *p[12] = {lw->ln1w, lw->ln1b, lw->qkvw, lw->qkvb, lw->attprojw, lw->attprojb,
                          lw->ln2w, lw->ln2b, lw->fcw, lw->fcb, lw->fcprojw, lw->fcprojb};
    size_t n[12] = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, F * C, F, C * F, C};
    size_t a = (size_t)-1, b = 0, total = 0;
    for (int k = 0; k < 12; k++) {
        if (p[k] < base) return 0;
        size_t off = (size_t)(p[k] - base);
        if (off < a) a = off;
        if (off + n[k] > b) b = off + n[k];
        total += n[k];
    }
    // the tensors do not overlap (one table), so the range is theirs alone when it is their sum
    if (b - a != total) return 0;
    *lo = a, *hi = b;
    return 1;
}
