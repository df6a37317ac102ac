// transformer.h: the transformer block, written once, forward and backward, as op calls
// (kernels/ops.h); GPT-2 (model/gpt2.c) and BERT put embeddings and heads around a stack of
// them. The choices the two families differ in are parameters of the block:
//
//   pre-LN (GPT-2):  x -> x + attn(ln_1(x)) = res2 -> res2 + mlp(ln_2(res2)) = res3,
//                    and one more LayerNorm (ln_f) after the last block
//   post-LN (BERT):  x -> ln_1(x + attn(x)) -> ln_2(ln_1 + mlp(ln_1)), no final LayerNorm
//
// attn = c_proj(attention(c_attn(.))), mlp = c_proj(gelu(c_fc(.))), F hidden; GELU tanh or
// erf; LayerNorm epsilon; causal or bidirectional attention with optional key padding (the
// attention descriptor, kernels/ops.h). Shapes: N = B*T rows, C channels, NH heads.
#ifndef PEBBLE_TRANSFORMER_H
#define PEBBLE_TRANSFORMER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

typedef struct tf_config {
    int n_layer;   // L
    int C, NH;     // channels, heads (D = C / NH)
    int post_ln;   // 0: pre-LN blocks and a final LayerNorm; 1: post-LN blocks
    pb_gelu gelu;  // PB_GELU_TANH (GPT-2) or PB_GELU_ERF (BERT)
    float ln_eps;  // 1e-5 (GPT-2), 1e-12 (BERT)
    int F;         // the MLP's hidden width: 4C in GPT-2 and BERT, smaller in LRA's models
    // Dropout on the stack's input (the embeddings) and on each branch's output (attention's
    // c_proj, the MLP's c_proj) before its residual add, as BERT's hidden_dropout_prob and
    // GPT-2's embd_pdrop and resid_pdrop: the probability a training forward may use
    // (tf_acts.drop_p; 0: none, and no buffer for it)
    float dropout;
    // Dropout on the attention probabilities (pb_attn_desc.drop_p), as BERT's
    // attention_probs_dropout_prob and GPT-2's attn_pdrop: the probability a training
    // forward may use (tf_acts.attn_drop_p; 0: none)
    float attn_dropout;
} tf_config;

// One block's weights (pointers into a parameter buffer). pre-LN: ln1 before attention,
// ln2 before the MLP; post-LN: ln1 after the attention's residual add, ln2 after the MLP's.
typedef struct tf_layer_weights {
    float *ln1w, *ln1b;          // (C)
    float *qkvw, *qkvb;          // (3C, C), (3C)
    float *attprojw, *attprojb;  // (C, C), (C)
    float *ln2w, *ln2b;          // (C)
    float *fcw, *fcb;            // (F, C), (F)
    float *fcprojw, *fcprojb;    // (C, F), (C)
} tf_layer_weights;

typedef struct tf_weights {
    tf_layer_weights *h;  // [L]
    float *lnfw, *lnfb;   // (C): the final LayerNorm of a pre-LN stack (NULL for post-LN)
} tf_weights;

// One block's activations, saved for backward. (B,T,...) buffers hold act_dtype elements;
// LayerNorm statistics and lse are fp32.
typedef struct tf_layer_acts {
    float *ln1;                  // (N,C)
    float *ln1_mean, *ln1_rstd;  // (N)
    float *qkv;                  // (N,3C)
    float *atty;                 // (N,C)
    float *lse;                  // (B,NH,T)
    float *attproj;              // (N,C)
    float *res2;                 // (N,C) after the attention's residual add
    float *ln2;                  // (N,C)
    float *ln2_mean, *ln2_rstd;  // (N)
    float *fch;                  // (N,F)
    float *fch_gelu;             // (N,F)
    float *fcproj;               // (N,C)
    float *res3;                 // (N,C) after the MLP's residual add
} tf_layer_acts;

typedef struct tf_acts {
    tf_layer_acts *h;            // [L]
    float *lnf;                  // (N,C) pre-LN: the stack's output
    float *lnf_mean, *lnf_rstd;  // (N)
    // The dropout of the last forward, which its backward repeats: probability (0: none;
    // at most tf_config.dropout) and the key its masks are drawn from (kernels/dropout.h).
    // The model sets both before tf_forward; tf_map_acts leaves them alone.
    float drop_p;
    uint64_t drop_key;
    float attn_drop_p;  // the attention probabilities' (at most tf_config.attn_dropout)
} tf_acts;

// The activation gradients the backward writes: one block's worth, reused by every block
// (a block's gradients are dead once the block below starts), plus the residual stream's.
//   stream (N,C): the gradient flowing down the residual stream; after tf_backward, the
//                 gradient of the stack's input.
//   out    (N,C): where the caller puts the gradient of the stack's output (zeroed by
//                 tf_backward_begin): pre-LN its own buffer (d lnf), post-LN = stream.
typedef struct tf_grads {
    float *stream, *out, *aux;   // (N,C); aux: post-LN's second stream buffer
    float *ln1, *qkv, *atty;     // (N,C), (N,3C), (N,C): pre-LN; contiguous, zeroed at once
    float *ln2;                  // (N,C) pre-LN
    float *fch, *fch_gelu;       // (N,F)
    float *drop;                 // (N,C) a branch output's gradient through its dropout mask
                                 // (NULL when tf_config.dropout is 0)
    // Called by tf_backward after block l's last op that writes its weight gradients was
    // queued (the data-parallel path starts that block's exchange then); NULL: none. Not
    // touched by tf_map_grads (a model remaps at a new batch shape and keeps its hook): a
    // tf_grads starts zeroed.
    void (*layer_done)(void *ctx, int layer);
    void *layer_done_ctx;
} tf_grads;

// Carves one buffer of n elements of eb bytes at *off of base (NULL: only counts), each on a
// 64-byte boundary. The model lays out its own buffers around the stack's with it too.
static inline float *tf_take(void *base, size_t *off, size_t n, size_t eb) {
    float *p = base ? (float *)((char *)base + *off) : NULL;
    *off += (n * eb + 63) / 64 * 64;
    return p;
}
// Lay out the stack's activations (N rows, nlse = B*NH*T lse entries; a->h must hold L
// entries) and its gradients (one block's worth) at *off of base, advancing *off; ab is
// pb_act_bytes(ops). With base NULL they only count the bytes.
void tf_map_acts(const tf_config *c, size_t N, size_t nlse, size_t ab, tf_acts *a, void *base,
                 size_t *off);
void tf_map_grads(const tf_config *c, size_t N, size_t ab, int fused_gelu, tf_grads *g,
                  void *base, size_t *off);

// How a block's attention is computed in the forward: fn(ctx, layer, out, lse, qkv). Training
// runs an attention implementation over the batch (tf_attend_desc); generation attends to a
// KV cache (model/gpt2_decode.c).
typedef struct tf_attend {
    void (*fn)(void *ctx, int layer, float *out, float *lse, const float *qkv);
    void *ctx;
} tf_attend;

// The descriptor of the stack's self-attention over (B,T): keys = queries, scale 1/sqrt(D),
// causal or not, kv_len (B) in backend memory or NULL; drop_p = c->attn_dropout, the most a
// forward drops, so that choosing an implementation by it refuses one that cannot drop.
pb_attn_desc tf_self_attention(const tf_config *c, int B, int T, int causal,
                               const int32_t *kv_len);
// Before each tf_forward: d's dropout becomes this forward's (acts->attn_drop_p, and a key
// drawn from acts->drop_key); tf_forward and tf_backward give each layer its own key from it.
void tf_attn_dropout(pb_attn_desc *d, const tf_config *c, const tf_acts *acts);

// The attention implementation a and descriptor d (both outlive the call) as a tf_attend;
// ctx[2] is storage for it.
tf_attend tf_attend_desc(const pb_attn_impl *a, const pb_attn_desc *d, const void *ctx[2]);

// The stack over x (N,C) (the embeddings; dropped in place when acts->drop_p > 0, and the
// backward's x is that dropped x). Returns the output (N,C): acts->lnf (pre-LN) or the last
// block's ln2 (post-LN). Forward only needs acts; nothing else is kept.
const float *tf_forward(const pb_ops *ops, const tf_config *c, const tf_weights *w,
                        tf_acts *acts, float *x, int N, tf_attend attend);

// Zeroes g->out, for the head's backward to accumulate the output's gradient into.
void tf_backward_begin(const pb_ops *ops, const tf_config *c, tf_grads *g, int N);
// Backward of the last tf_forward over x, from the gradient of the output in g->out; the
// weight gradients ACCUMULATE into dw; the gradient of x (before its dropout) ends in
// g->stream. (The head's weights that feed the stack's output, and x's own producer, are the
// model's business.)
void tf_backward(const pb_ops *ops, const tf_config *c, const tf_weights *w, tf_weights *dw,
                 const tf_acts *acts, tf_grads *g, const float *x, int N,
                 const pb_attn_impl *attn, const pb_attn_desc *d);

// Where block l's weight tensors lie in a buffer laid out like lw's (base: that buffer's
// start): 1 and [*lo, *hi) in floats when the 12 tensors are one contiguous range, else 0.
int tf_layer_span(const tf_config *c, const tf_layer_weights *lw, const float *base, size_t *lo,
                  size_t *hi);

#endif
