// gpt2.h: the GPT-2 model: a named parameter table in one allocation, activations, and
// forward/backward written as a sequence of calls through the op table (kernels/ops.h).
//
// Pre-LayerNorm blocks: x += attn(ln_1(x)); x += mlp(ln_2(x)); mlp = c_proj(gelu(c_fc(.))),
// 4C hidden; learned positions; the LM head shares the token embedding (tied weights).
#ifndef PEBBLE_GPT2_H
#define PEBBLE_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

typedef struct gpt2_config {
    int n_layer;  // L
    int n_head;   // NH
    int n_embd;   // C
    int seq_len;  // maxT: learned positions, and the longest T a forward accepts
    int vocab_size;    // V
    int padded_vocab;  // Vp: V rounded up to a multiple of 128 (set by gpt2_build)
    char attention[16];  // model.attention: "auto" (or "") or an implementation's name
} gpt2_config;

// One parameter tensor. The name and the shape a Hugging Face GPT2LMHeadModel state_dict
// gives it (hf_shape) may differ from pebble's internal layout (shape):
//   - Conv1D weights are (in, out) there and (out, in) here, so matmul_forward reads rows;
//   - transformer.wte.weight has V rows there and Vp here (the padding rows stay zero).
typedef struct pb_param {
    char name[64];     // e.g. "transformer.h.0.attn.c_attn.weight"
    int ndim;          // 1 or 2
    int shape[2];      // internal, row-major
    int hf_shape[2];   // as in the Hugging Face state_dict
    int hf_transposed; // 1: internal = transpose of the Hugging Face tensor
    size_t offset;     // in floats, from the start of the one allocation
    size_t numel;
    int decay;         // AdamW weight decay applies (2-D weights only)
} pb_param;

// Pointers into the one parameter allocation (or into the gradient one, same layout).
typedef struct gpt2_layer_weights {
    float *ln1w, *ln1b;          // (C)
    float *qkvw, *qkvb;          // (3C, C), (3C)
    float *attprojw, *attprojb;  // (C, C), (C)
    float *ln2w, *ln2b;          // (C)
    float *fcw, *fcb;            // (4C, C), (4C)
    float *fcprojw, *fcprojb;    // (C, 4C), (C)
} gpt2_layer_weights;

typedef struct gpt2_weights {
    float *wte;  // (Vp, C)
    float *wpe;  // (maxT, C)
    gpt2_layer_weights *h;  // [L]
    float *lnfw, *lnfb;     // (C)
} gpt2_weights;

// Activations of one layer (saved for backward); the same struct holds their gradients.
// With a bf16 op table (kernels/ops.h, act_dtype) the (B,T,...) activations hold bf16
// elements; the LayerNorm statistics, lse and losses stay fp32.
typedef struct gpt2_layer_acts {
    float *ln1;              // (B,T,C)
    float *ln1_mean, *ln1_rstd;  // (B,T)
    float *qkv;              // (B,T,3C)
    float *atty;             // (B,T,C)
    float *lse;              // (B,NH,T)
    float *attproj;          // (B,T,C)
    float *res2;             // (B,T,C) residual after attention
    float *ln2;              // (B,T,C)
    float *ln2_mean, *ln2_rstd;  // (B,T)
    float *fch;              // (B,T,4C)
    float *fch_gelu;         // (B,T,4C)
    float *fcproj;           // (B,T,C)
    float *res3;             // (B,T,C) residual after the MLP: the layer's output
} gpt2_layer_acts;

typedef struct gpt2_acts {
    float *encoded;          // (B,T,C)
    gpt2_layer_acts *h;      // [L]
    float *lnf;              // (B,T,C)
    float *lnf_mean, *lnf_rstd;  // (B,T)
    float *logits;           // (B,T,Vp); backward overwrites it with dlogits
    float *losses;           // (B,T)
} gpt2_acts;

typedef struct gpt2 {
    gpt2_config cfg;
    const pb_ops *ops;
    // parameter table and the one allocation of parameters and of their gradients
    int num_params;
    pb_param *params;
    size_t num_floats;
    float *params_mem;
    float *grads_mem;
    gpt2_weights w;  // views into params_mem
    gpt2_weights g;  // views into grads_mem
    // Mixed precision (ops->act_dtype bf16): params_mem stays the fp32 master copy that the
    // optimizer updates and checkpoints store; the ops read params_act, the same table in the
    // activation type, rounded from the masters at each forward (ops->params_to_act,
    // stochastic rounding seeded by round_seed and the optimizer's step count `updates`).
    // With an fp32 table params_act is NULL and wa is w.
    float *params_act;
    gpt2_weights wa;    // the weights the ops read
    uint64_t round_seed;  // set by gpt2_init_weights
    uint64_t updates;     // optimizer steps applied (adamw_step counts them)
    // activations, allocated on the first forward for (B,T) and reused
    int B, T;
    float *acts_mem, *dacts_mem;
    size_t acts_bytes;
    gpt2_acts acts, dacts;  // dacts.logits is unused (dlogits live in acts.logits)
    pb_attn_desc attn_desc;     // the attention of (B,T): causal, every key
    const pb_attn_impl *attn;   // the implementation that runs it (pb_attn_choose)
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

// The parameter of that name, or NULL.
const pb_param *gpt2_find_param(const gpt2 *m, const char *name);
size_t gpt2_num_trainable(const gpt2 *m);  // parameters, counting wte with V rows (not Vp)

#endif
