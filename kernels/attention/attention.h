// attention.h: the attention algorithms of the CPU backend. All share the shapes and the
// contract of pb_attn_impl in kernels/ops.h: qkv (B,T,3C), out (B,T,C), lse (B,NH,T),
// scores scaled by desc->scale, masks as the descriptor says.
#ifndef PEBBLE_ATTENTION_H
#define PEBBLE_ATTENTION_H

#include "kernels/ops.h"

// naive: materialises each head's T x T score matrix. The reference.
const char *attn_naive_supports(const pb_attn_desc *d);
void attn_naive_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_naive_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, const pb_attn_desc *d);

// flash: FlashAttention-2 style tiling with an online softmax; saves only lse, and the
// backward recomputes score tiles from q, k and lse. Memory linear in T.
const char *attn_flash_supports(const pb_attn_desc *d);
void attn_flash_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_flash_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, const pb_attn_desc *d);

// The descriptor checks the CPU algorithms share: self-attention (Tk == T), no block layout.
// NULL when d is one they run, else why not.
const char *attn_cpu_dense_supports(const pb_attn_desc *d);

// decode (decode.c): generation with a KV cache, the op table's attention_decode
// (kernels/ops.h). Forward only: nothing is saved for a backward.
void attn_decode_forward(float *out, const float *q, int q_stride, const float *kcache,
                         const float *vcache, int pos0, int n, int NH, int D, int maxT);

#endif
