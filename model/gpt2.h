// gpt2.h: the GPT-2 model: token and position embeddings, a stack of pre-LayerNorm blocks
// (model/transformer.h), and the LM head tied to the token embedding; its parameters in a
// store (model/params.h) named as Hugging Face's GPT2LMHeadModel names them.
//
// Pre-LayerNorm blocks: x += attn(ln_1(x)); x += mlp(ln_2(x)); mlp = c_proj(gelu(c_fc(.))),
// 4C hidden; learned positions; the LM head shares the token embedding (tied weights).
#ifndef PEBBLE_GPT2_H
#define PEBBLE_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/params.h"
#include "kernels/attention/blocksparse.h"
#include "model/transformer.h"

typedef struct gpt2_config {
    int n_layer;  // L
    int n_head;   // NH
    int n_embd;   // C
    int seq_len;  // maxT: learned positions, and the longest T a forward accepts
    int vocab_size;    // V
    int padded_vocab;  // Vp: V rounded up to a multiple of 128 (set by gpt2_build)
    char attention[16];  // model.attention: "auto" (or "") or an implementation's name
    float ln_eps;        // LayerNorm epsilon (0: GPT-2's 1e-5)
    bs_params sparse;    // model.attention = blocksparse: the pattern ([attention] keys)
    float dropout;       // model.dropout: the embeddings and both branches (transformer.h)
    float attn_dropout;  // model.attn_dropout: the attention probabilities
} gpt2_config;

// Pointers into a parameter buffer laid out as the table (masters, gradients, or the copy the
// ops read): the embeddings, then the stack (blocks and ln_f).
typedef struct gpt2_weights {
    float *wte;  // (Vp, C)
    float *wpe;  // (maxT, C)
    tf_weights tf;  // h[L] and ln_f
} gpt2_weights;

// Activations of the last forward. With a bf16 op table (kernels/ops.h, act_dtype) the
// (B,T,...) buffers hold bf16 elements; LayerNorm statistics, lse and losses stay fp32.
typedef struct gpt2_acts {
    float *encoded;  // (B,T,C) wte[token] + wpe[t]: the stack's input
    tf_acts tf;      // the blocks' and ln_f's (tf.lnf is the stack's output)
    float *logits;   // (B,T,Vp); backward overwrites it with dlogits
    float *losses;   // (B,T)
} gpt2_acts;

typedef struct gpt2 {
    gpt2_config cfg;
    const pb_ops *ops;
    tf_config tf;  // pre-LN, tanh GELU, eps cfg.ln_eps (1e-5)
    // The parameter store (model/params.h): the named table, masters, gradients, AdamW
    // moments, the low-precision copy and its rounding state. w, g, wa are views into it.
    pb_params p;
    gpt2_weights w;   // masters (p.mem)
    gpt2_weights g;   // gradients (p.grad)
    gpt2_weights wa;  // the weights the ops read (p.act in mixed precision, else p.mem)
    // activations and their gradients, allocated on the first forward for (B,T) and reused
    int B, T;
    void *acts_mem, *grads_mem;
    size_t acts_bytes, grads_bytes;
    gpt2_acts acts;
    tf_grads grads;  // one block's activation gradients and the stream's (transformer.h)
    pb_attn_desc attn_desc;     // the attention of (B,T): causal, every key
    const pb_attn_impl *attn;   // the implementation that runs it (pb_attn_choose)
    pb_block_layout *layout;    // its block-sparse layout for (B,T) (blocksparse), or NULL
    int32_t *inputs, *targets;  // (B,T) in backend memory
    int32_t *targets_host;      // (B,T) copy, to count valid targets
    int valid_targets;          // targets >= 0 in the last forward
    int have_targets;
} gpt2;

// Builds the parameter table, allocates parameters and gradients (zeroed) on ops' backend.
void gpt2_build(gpt2 *m, const gpt2_config *cfg, const pb_ops *ops);
// GPT-2 initialisation: N(0, 0.02), residual projections (attn.c_proj, mlp.c_proj weights)
// scaled by 1/sqrt(2 L), biases 0, LayerNorm weights 1, padding rows of wte 0. Each tensor
// draws from its own stream seeded by (seed, its index), so the result is fixed by the seed.
void gpt2_init_weights(gpt2 *m, uint64_t seed);
void gpt2_free(gpt2 *m);

// inputs, targets (B,T) on the host; targets may be NULL (then no loss) and entries < 0
// are ignored. Returns the mean loss over valid targets (or 0 without targets).
double gpt2_forward(gpt2 *m, const int32_t *inputs, const int32_t *targets, int B, int T);
void gpt2_zero_grad(gpt2 *m);
// Backward of the last forward (which must have had targets). Gradients ACCUMULATE, scaled
// by loss_scale: pass 1/steps_of_accumulation to average over micro-batches.
void gpt2_backward(gpt2 *m, float loss_scale);

// The attention implementation the model runs at (B,T): pb_attn_choose with cfg.attention.
// NULL with one line in err when it cannot (an explicit name that cannot run the shape).
const pb_attn_impl *gpt2_attention(const gpt2 *m, int B, int T, char *err, size_t errlen);
size_t gpt2_num_trainable(const gpt2 *m);  // parameters, counting wte with V rows (not Vp)
// The model's shape in words ("n_layer=4 n_head=4 ..."), as messages and checkpoints say it.
void gpt2_shape_text(const gpt2_config *c, char *buf, size_t n);

#endif
