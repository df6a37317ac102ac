// ops_cuda.cu: the CUDA backend's two op tables, fp32 and bf16 mixed precision. The kernels
// live in files named for what they hold: device.cu (memory), encoder.cu, layernorm.cu,
// matmul_cuda.cu (cuBLASLt), elementwise.cu (GELU, tanh / ReLU, residual, dropout, scale,
// bf16 weight copies), rows.cu (gather and scatter of rows, mean pooling), crossentropy.cu
// (and argmax), optimizer.cu (AdamW, sumsq) and kernels/attention/*_cuda.cu.
//
// Conventions of kernels/ops.h hold everywhere: every backward accumulates (+=), and every
// floating-point reduction runs in a fixed order (per-block partials in fixed slots, then a
// second pass), never through floating-point atomics, so runs repeat to the bit. The kernels
// that touch activations are templates on their element type A (float, or bf16 for the
// mixed-precision table); arithmetic is fp32 either way.
#include "kernels/cuda/cuda_common.cuh"

extern "C" {
#include "kernels/attention/flash_cuda.h"
#include "kernels/cuda/cuda.h"
}

// Attention, fastest first (pb_attn_choose takes the first whose supports() says yes):
// smallcache after the fused kernels, so that auto runs it only where they do not (D > 128);
// "blocksparse" last: it runs only descriptors with a layout, which the dense ones refuse.
static const pb_attn_impl *const g_attention_fp32[] = {&attn_cuda_flash, &attn_cuda_smallcache,
                                                       &attn_cuda_blocksparse, NULL};
static const pb_attn_impl *const g_attention_bf16[] = {&attn_cuda_wgmma, &attn_cuda_flash_bf16,
                                                       &attn_cuda_smallcache_bf16,
                                                       &attn_cuda_blocksparse_bf16, NULL};

// The fields both tables share, on activation type A. The optimizer ops are the same fp32
// ones in both: they only see fp32 buffers (master weights, gradients, moments).
template <typename A> static pb_ops cuda_table(const pb_attn_impl *const *attention) {
    pb_ops o = {};
    o.name = "cuda";
    o.alloc = cuda_alloc;
    o.free = cuda_free;
    o.upload = cuda_upload;
    o.download = cuda_download;
    o.zero = cuda_zero;
    o.encoder_forward = cuda_encoder_forward<A>;
    o.encoder_backward = cuda_encoder_backward<A>;
    o.layernorm_forward = cuda_layernorm_forward<A>;
    o.layernorm_backward = cuda_layernorm_backward<A>;
    o.attention = attention;
    o.attention_decode = NULL;
    o.gelu_forward = cuda_gelu_forward<A>;
    o.gelu_backward = cuda_gelu_backward<A>;
    o.act_forward = cuda_act_forward<A>;
    o.act_backward = cuda_act_backward<A>;
    o.gather_rows = cuda_gather_rows<A>;
    o.scatter_add_rows = cuda_scatter_add_rows<A>;
    o.mean_pool_forward = cuda_mean_pool_forward<A>;
    o.mean_pool_backward = cuda_mean_pool_backward<A>;
    o.residual_forward = cuda_residual_forward<A>;
    o.dropout = cuda_dropout<A>;
    o.argmax_rows = cuda_argmax_rows<A>;
    o.crossentropy_forward = cuda_crossentropy_forward<A>;
    o.crossentropy_backward = cuda_crossentropy_backward<A>;
    o.adamw_update = cuda_adamw_update;
    o.sumsq = cuda_sumsq;
    o.scale = cuda_scale;
    o.residual_layernorm_forward = cuda_residual_layernorm_forward<A>;
    return o;
}

// fp32: full-precision (or TF32, pb_cuda_set_tf32) products, no fused GELU.
static pb_ops fp32_table(void) {
    pb_ops o = cuda_table<float>(g_attention_fp32);
    o.matmul_forward = cuda_matmul_forward;
    o.matmul_backward = cuda_matmul_backward;
    o.act_dtype = PB_DTYPE_FP32;
    return o;
}

// bf16: bf16 activations and weight copies (params_to_act), fp32 parameter gradients; the
// tanh GELU fused into the products' epilogues.
static pb_ops bf16_table(void) {
    pb_ops o = cuda_table<bf16>(g_attention_bf16);
    o.matmul_forward = cuda_matmul_forward_bf16;
    o.matmul_backward = cuda_matmul_backward_bf16;
    o.act_dtype = PB_DTYPE_BF16;
    o.params_to_act = cuda_params_to_bf16;
    o.matmul_gelu_forward = cuda_matmul_gelu_forward_bf16_op;
    o.matmul_backward_gelu = cuda_matmul_backward_gelu_bf16_op;
    return o;
}

extern "C" const pb_ops *pb_ops_cuda(void) {
    cuda_init();
    static const pb_ops ops = fp32_table();
    return &ops;
}

extern "C" const pb_ops *pb_ops_cuda_bf16(void) {
    cuda_init();
    static const pb_ops ops = bf16_table();
    return &ops;
}
