// flash_cuda.h: dense FlashAttention-2 style attention on the GPU (flash_cuda.cu), with the
// shapes and contract of pb_ops.attention_forward / attention_backward (kernels/ops.h):
//   qkv (B,T,3C), out (B,T,C), lse (B,NH,T), D = C/NH <= 128, scale 1/sqrt(D); dqkv +=.
// Every pointer is device memory. Deterministic: no atomics anywhere.
#ifndef PEBBLE_FLASH_CUDA_H
#define PEBBLE_FLASH_CUDA_H

void attn_flash_cuda_forward(float *out, float *lse, const float *qkv, int B, int T, int C,
                             int NH, int causal);
void attn_flash_cuda_backward(float *dqkv, const float *dout, const float *out,
                              const float *lse, const float *qkv, int B, int T, int C, int NH,
                              int causal);

// Di (B,NH,T) = rowsum(dO * O) of each head's rows, the backward's first step, computed into
// the backend's scratch (valid until the next call).
float *attn_flash_cuda_di(const float *dout, const float *out, int B, int T, int C, int NH);

// The same on the tensor cores (flash_mma_cuda.cu): bf16 mma.sync, fp32 accumulation, so
// results carry bf16 rounding (~4e-3 relative). Head dims 64 and 128 only (supports says).
int attn_flash_mma_cuda_supports(int C, int NH);
void attn_flash_mma_cuda_forward(float *out, float *lse, const float *qkv, int B, int T, int C,
                                 int NH, int causal);
void attn_flash_mma_cuda_backward(float *dqkv, const float *dout, const float *out,
                                  const float *lse, const float *qkv, int B, int T, int C, int NH,
                                  int causal);
// The same kernels on bf16 tensors: qkv, out, dout and dqkv hold bf16 elements (the
// mixed-precision op table, kernels/ops.h), lse stays fp32; nothing is converted around them.
void attn_flash_mma_cuda_forward_bf16(float *out, float *lse, const float *qkv, int B, int T,
                                      int C, int NH, int causal);
void attn_flash_mma_cuda_backward_bf16(float *dqkv, const float *dout, const float *out,
                                       const float *lse, const float *qkv, int B, int T, int C,
                                       int NH, int causal);
// Di (B,NH,T) = rowsum(dO * O) from bf16 dout and out, into the backend's scratch (valid
// until the next call): the first step of both bf16 backwards.
float *attn_flash_mma_cuda_di_bf16(const float *dout, const float *out, int B, int T, int C,
                                   int NH);

// The same contract on Hopper's warpgroup MMA (flash_wgmma_cuda.cu, sm_90a): bf16 tensors,
// head dims 64 and 128 (attn_flash_mma_cuda_supports), deterministic. The bf16 op table's
// attention unless pb_cuda_set_attention_wgmma(0).
void attn_flash_wgmma_cuda_forward_bf16(float *out, float *lse, const float *qkv, int B, int T,
                                        int C, int NH, int causal);
void attn_flash_wgmma_cuda_backward_bf16(float *dqkv, const float *dout, const float *out,
                                         const float *lse, const float *qkv, int B, int T,
                                         int C, int NH, int causal);

#endif
