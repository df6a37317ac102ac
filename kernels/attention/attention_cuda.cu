// attention_cuda.cu: what the CUDA attention implementations share: which descriptors each
// runs (its supports(), the one place its rules live), the records the op tables list, and
// the backward's first step Di = rowsum(dO * O).
#include "kernels/cuda/cuda_common.cuh"

#include <stdio.h>

extern "C" {
#include "kernels/attention/flash_cuda.h"
}

// ----------------------------------------------------------------------------
// supports

// What every CUDA kernel needs: self-attention from one qkv, no block layout, a grid whose y
// dimension (batch rows x heads) fits.
static const char *cuda_attn_common(const pb_attn_desc *d) {
    if (d->layout) return "block-sparse layouts";
    if (d->Tk != d->T) return "Tk != T (it runs self-attention)";
    if (d->B < 1 || d->T < 1 || d->NH < 1 || d->D < 1) return "an empty shape";
    if ((long)d->B * d->NH > 65535) return "more than 65535 batch rows x heads";
    return NULL;
}

// The phrase about a head dim, in a buffer of the calling thread (valid until its next call).
static const char *head_dim_phrase(int D, const char *runs) {
    static thread_local char buf[96];
    snprintf(buf, sizeof buf, "head dim %d (it runs %s)", D, runs);
    return buf;
}

extern "C" const char *attn_flash_cuda_supports(const pb_attn_desc *d) {
    const char *why = cuda_attn_common(d);
    if (why) return why;
    // the tiles are zero-padded to 32, 64 or 128 columns
    if (d->D > 128) return head_dim_phrase(d->D, "up to 128");
    if (d->drop_p > 0) return PB_ATTN_NO_DROP_CUDA;
    return NULL;
}

// instantiated for these three: a head's row is the wgmma K dimension and the N of the
// P V-like products, in 64- (D 32) or 128-byte (D 64, 128) swizzled rows
extern "C" int attn_wgmma_cuda_head_dim(int D) { return D == 32 || D == 64 || D == 128; }

extern "C" const char *attn_wgmma_cuda_supports(const pb_attn_desc *d) {
    const char *why = cuda_attn_common(d);
    if (why) return why;
    if (!attn_wgmma_cuda_head_dim(d->D)) return head_dim_phrase(d->D, "32, 64 and 128");
    return NULL;
}

// T x T scores per head: (4 + 2) T^2 bytes in bf16, 6.4 GB at this T, within the 8 GiB
// chunk budget of smallcache_cuda.cu (fp32 tensors: 8.6 GB, one head per chunk)
#define SC_CUDA_MAX_T 32768

extern "C" const char *attn_smallcache_cuda_supports(const pb_attn_desc *d) {
    const char *why = cuda_attn_common(d);
    if (why) return why;
    // cuBLASLt's tensor-core products want 16-byte aligned operands: a head's rows start at
    // multiples of D elements
    if (d->D % 8 != 0) return head_dim_phrase(d->D, "multiples of 8");
    if (d->drop_p > 0) return PB_ATTN_NO_DROP_CUDA;
    if (d->T > SC_CUDA_MAX_T)
        return "T above 32768 (it materialises a T x T score matrix per head: 6.4 GB at 32768)";
    return NULL;
}

extern "C" const pb_attn_impl attn_cuda_flash = {"flash", attn_flash_cuda_supports,
                                                 attn_flash_cuda_forward,
                                                 attn_flash_cuda_backward};
extern "C" const pb_attn_impl attn_cuda_flash_bf16 = {"flash", attn_flash_cuda_supports,
                                                      attn_flash_cuda_forward_bf16,
                                                      attn_flash_cuda_backward_bf16};
extern "C" const pb_attn_impl attn_cuda_wgmma = {"wgmma", attn_wgmma_cuda_supports,
                                                 attn_wgmma_cuda_forward,
                                                 attn_wgmma_cuda_backward};
extern "C" const pb_attn_impl attn_cuda_smallcache = {"smallcache", attn_smallcache_cuda_supports,
                                                      attn_smallcache_cuda_forward,
                                                      attn_smallcache_cuda_backward};
extern "C" const pb_attn_impl attn_cuda_smallcache_bf16 = {
    "smallcache", attn_smallcache_cuda_supports, attn_smallcache_cuda_forward_bf16,
    attn_smallcache_cuda_backward_bf16};

// ----------------------------------------------------------------------------
// Di (B,NH,T) = rowsum(dO * O) per head: one warp per (b, t, h). Each lane takes V adjacent
// elements a step (fp32 1, bf16 2: one 4-byte load of each tensor; 1 for odd D).

__device__ __forceinline__ float dot_step(float s, const float *g, const float *o) {
    return s + g[0] * o[0];
}
__device__ __forceinline__ float dot_step(float s, const bf16 *g, const bf16 *o) {
    float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(g));
    float2 c = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(o));
    return s + (a.x * c.x + a.y * c.y);
}

template <typename E>
__global__ void attn_di_kernel(float *Di, const E *dout, const E *out, int B, int T, int C,
                               int NH) {
    constexpr int V = sizeof(float) / sizeof(E);
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= (size_t)B * T * NH) return;
    int h = (int)(w % NH);
    size_t bt = w / NH;  // b*T + t
    int D = C / NH;
    const E *g = dout + bt * C + (size_t)h * D, *o = out + bt * C + (size_t)h * D;
    float s = 0.0f;
    if (V == 1 || D % 2 == 0)
        for (int d = V * lane; d < D; d += 32 * V) s = dot_step(s, g + d, o + d);
    else  // bf16 rows of odd length: pairs would straddle heads (and 4-byte alignment)
        for (int d = lane; d < D; d += 32) s += to_f(g[d]) * to_f(o[d]);
    s = warp_sum(s);
    if (lane == 0) {
        size_t b = bt / T, t = bt % T;
        Di[(b * NH + h) * T + t] = s;
    }
}

extern "C" float *attn_cuda_di(const float *dout, const float *out, const pb_attn_desc *d,
                               pb_dtype dt) {
    int B = d->B, T = d->T, NH = d->NH, C = d->NH * d->D;
    float *Di = (float *)cuda_scratch(CUDA_SCRATCH_ATTN, (size_t)B * NH * T * sizeof(float));
    size_t warps = (size_t)B * T * NH;
    if (dt == PB_DTYPE_BF16)
        attn_di_kernel<bf16><<<cdiv(warps * 32, 256), 256>>>(Di, (const bf16 *)dout,
                                                             (const bf16 *)out, B, T, C, NH);
    else
        attn_di_kernel<float><<<cdiv(warps * 32, 256), 256>>>(Di, dout, out, B, T, C, NH);
    cudaCheckLaunch();
    return Di;
}
