// attention.h: the attention algorithms of the CPU backend. All share the shapes and the
// contract of pb_ops.attention_forward / attention_backward in kernels/ops.h:
//   qkv (B,T,3C), out (B,T,C), lse (B,NH,T), D = C/NH, scale 1/sqrt(D).
#ifndef PEBBLE_ATTENTION_H
#define PEBBLE_ATTENTION_H

// naive: materialises each head's T x T score matrix. The reference.
void attn_naive_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH,
                        int causal);
void attn_naive_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, int B, int T, int C, int NH, int causal);

// flash: FlashAttention-2 style tiling with an online softmax; saves only lse, and the
// backward recomputes score tiles from q, k and lse. Memory linear in T.
void attn_flash_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH,
                        int causal);
void attn_flash_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, int B, int T, int C, int NH, int causal);

// decode (decode.c): generation with a KV cache. The queries of n new positions
// pos0..pos0+n-1 (row i at q + i*q_stride, heads side by side as in qkv) attend causally to
// the cached keys and values of positions 0..pos0+n-1; kcache, vcache (NH, maxT, D);
// out (n, C). Forward only: nothing is saved for a backward.
void attn_decode_forward(float *out, const float *q, int q_stride, const float *kcache,
                         const float *vcache, int pos0, int n, int NH, int D, int maxT);

#endif
