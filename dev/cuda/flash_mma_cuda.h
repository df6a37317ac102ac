// flash_mma_cuda.h: the mma.sync attention kernels of dev/cuda/flash_mma_cuda.cu (not in the
// production build). Shapes and contract of the old dense attention op: qkv (B,T,3C),
// out (B,T,C), lse (B,NH,T), scale 1/sqrt(D), causal or not, dqkv +=; head dims 64 and 128.
// The plain forms take fp32 tensors (rounded to bf16 as they are staged), the _bf16 forms
// bf16 tensors (the pointers hold bf16).
#ifndef PEBBLE_DEV_FLASH_MMA_CUDA_H
#define PEBBLE_DEV_FLASH_MMA_CUDA_H

void attn_flash_mma_cuda_forward(float *out, float *lse, const float *qkv, int B, int T, int C,
                                 int NH, int causal);
void attn_flash_mma_cuda_backward(float *dqkv, const float *dout, const float *out,
                                  const float *lse, const float *qkv, int B, int T, int C, int NH,
                                  int causal);
void attn_flash_mma_cuda_forward_bf16(float *out, float *lse, const float *qkv, int B, int T,
                                      int C, int NH, int causal);
void attn_flash_mma_cuda_backward_bf16(float *dqkv, const float *dout, const float *out,
                                       const float *lse, const float *qkv, int B, int T, int C,
                                       int NH, int causal);

#endif
