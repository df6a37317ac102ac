// flash_cuda.h: the CUDA attention implementations, with the shapes and contract of
// pb_attn_impl (kernels/ops.h): qkv (B,T,3C), out (B,T,C), lse (B,NH,T) fp32, C = NH * D,
// scores scaled by desc->scale, causal and key-padding (kv_len, device memory) masks;
// dqkv +=. Every pointer is device memory. Deterministic: no atomics anywhere.
//   flash (flash_cuda.cu): FlashAttention-2 tiling with fp32 arithmetic, any D <= 128, on
//         fp32 tensors (the fp32 table) or bf16 ones (the bf16 table: bf16 loads and stores).
//   wgmma (flash_wgmma_cuda.cu): Hopper warpgroup MMA on bf16 tensors, D 32, 64 and 128; the
//         only CUDA attention that drops probabilities (pb_attn_desc.drop_p; dense only).
//   smallcache (smallcache_cuda.cu): the scores materialised per head in HBM, every product a
//         cuBLASLt GEMM; any D that is a multiple of 8, T <= 32768, fp32 or bf16 tensors. For
//         D > 128, where the others do not run (the tables list it last).
//   blocksparse (blocksparse_cuda.cu): both kernels walking a block layout's lists
//         (kernels/attention/blocksparse.h; 128 x 128 blocks): wgmma on bf16 tensors at D 64
//         and 128, flash on fp32 tensors and on bf16 ones at other D <= 128.
// Which descriptors each runs is said once, by its supports() (attention_cuda.cu).
#ifndef PEBBLE_FLASH_CUDA_H
#define PEBBLE_FLASH_CUDA_H

// What the CUDA attentions that cannot drop (all but dense wgmma) say of drop_p > 0.
#define PB_ATTN_NO_DROP_CUDA \
    "dropout on the attention probabilities (model.attn_dropout; on CUDA only wgmma, dense, " \
    "bf16, drops)"

#include "kernels/ops.h"

// The op tables' records: name, supports, forward, backward (attention_cuda.cu).
extern const pb_attn_impl attn_cuda_flash;       // fp32 tensors
extern const pb_attn_impl attn_cuda_flash_bf16;  // bf16 tensors, fp32 arithmetic
extern const pb_attn_impl attn_cuda_wgmma;       // bf16 tensors, bf16 tensor-core products
extern const pb_attn_impl attn_cuda_smallcache;       // fp32 tensors, cuBLASLt products
extern const pb_attn_impl attn_cuda_smallcache_bf16;  // bf16 tensors, cuBLASLt products
extern const pb_attn_impl attn_cuda_blocksparse;       // fp32 tensors (flash's kernels)
extern const pb_attn_impl attn_cuda_blocksparse_bf16;  // bf16 tensors (wgmma; flash's other D)

// NULL when the implementation runs d, else why not (a phrase, kernels/ops.h).
const char *attn_flash_cuda_supports(const pb_attn_desc *d);
const char *attn_wgmma_cuda_supports(const pb_attn_desc *d);
int attn_wgmma_cuda_head_dim(int D);  // the head dims the wgmma kernels are built for
const char *attn_smallcache_cuda_supports(const pb_attn_desc *d);
const char *attn_bs_cuda_supports(const pb_attn_desc *d);  // both blocksparse records

void attn_flash_cuda_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_flash_cuda_backward(float *dqkv, const float *dout, const float *out,
                              const float *lse, const float *qkv, const pb_attn_desc *d);
// The same kernels on bf16 tensors: qkv, out, dout and dqkv hold bf16 (lse stays fp32).
void attn_flash_cuda_forward_bf16(float *out, float *lse, const float *qkv,
                                  const pb_attn_desc *d);
void attn_flash_cuda_backward_bf16(float *dqkv, const float *dout, const float *out,
                                   const float *lse, const float *qkv, const pb_attn_desc *d);

// wgmma: bf16 tensors as above; results carry bf16 rounding of P and dS (~4e-3 relative).
void attn_wgmma_cuda_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_wgmma_cuda_backward(float *dqkv, const float *dout, const float *out,
                              const float *lse, const float *qkv, const pb_attn_desc *d);

// smallcache: fp32 tensors (the _bf16 pair: bf16 tensors; results carry bf16 rounding of P
// and dS as wgmma's). Scratch: one buffer of S (fp32) and P for a chunk of (b, h) pairs.
void attn_smallcache_cuda_forward(float *out, float *lse, const float *qkv,
                                  const pb_attn_desc *d);
void attn_smallcache_cuda_backward(float *dqkv, const float *dout, const float *out,
                                   const float *lse, const float *qkv, const pb_attn_desc *d);
void attn_smallcache_cuda_forward_bf16(float *out, float *lse, const float *qkv,
                                       const pb_attn_desc *d);
void attn_smallcache_cuda_backward_bf16(float *dqkv, const float *dout, const float *out,
                                        const float *lse, const float *qkv,
                                        const pb_attn_desc *d);
// The chunk budget in bytes (0: the default, 8 GiB): how many (b, h) pairs' scores are held
// at once (at least one). A test knob: a tiny budget exercises the chunk loop.
void attn_smallcache_cuda_set_budget(size_t bytes);
// The causal row block R (0: the default) a call at T takes: T when not causal. set_rows is a
// benchmark knob (bench_smallcache --rows) for measuring where the default should lie.
void attn_smallcache_cuda_set_rows(int R);
int attn_smallcache_cuda_rows(int T, int causal);
// The scratch bytes a call on d with tensors of type dt allocates under the current budget.
size_t attn_smallcache_cuda_scratch_bytes(const pb_attn_desc *d, pb_dtype dt);
// The kernels walking d->layout (its 128 x 128 blocks only; attn_bs_cuda_supports checks d):
// wgmma on bf16 tensors at D 32, 64 and 128, flash on fp32 or bf16 tensors at D <= 128.
void attn_wgmma_cuda_bs_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_wgmma_cuda_bs_backward(float *dqkv, const float *dout, const float *out,
                                 const float *lse, const float *qkv, const pb_attn_desc *d);
void attn_flash_cuda_bs_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_flash_cuda_bs_backward(float *dqkv, const float *dout, const float *out,
                                 const float *lse, const float *qkv, const pb_attn_desc *d);
void attn_flash_cuda_bs_forward_bf16(float *out, float *lse, const float *qkv,
                                     const pb_attn_desc *d);
void attn_flash_cuda_bs_backward_bf16(float *dqkv, const float *dout, const float *out,
                                      const float *lse, const float *qkv,
                                      const pb_attn_desc *d);

// Di (B,NH,T) = rowsum(dO * O) of each head's rows, the first step of every backward, from
// dout and out of element type dt, into the backend's scratch (valid until the next call).
float *attn_cuda_di(const float *dout, const float *out, const pb_attn_desc *d, pb_dtype dt);

#endif
