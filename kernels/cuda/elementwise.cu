// elementwise.cu: the CUDA backend's elementwise ops: GELU (tanh and erf), the residual add,
// dropout, the head's activation (tanh, ReLU), scale, the fp32 -> bf16 weight copy with
// stochastic rounding, and the unfused fallbacks of the GELU matmul epilogues. One thread per
// 4 elements (vec.cuh).
#include "kernels/cuda/vec.cuh"
#include "kernels/dropout.h"

// ----------------------------------------------------------------------------
// GELU, elementwise: the tanh approximation (GPT-2) or the exact x Phi(x) with erf (BERT).
// The kind is a template parameter, so each kernel has one formula and no branch.

#define GELU_K 0.7978845608028654f        // sqrt(2/pi)
#define GELU_RSQRT2 0.7071067811865476f   // 1/sqrt(2)
#define GELU_RSQRT2PI 0.3989422804014327f // 1/sqrt(2 pi)

template <pb_gelu K> __device__ __forceinline__ float gelu(float x) {
    if (K == PB_GELU_ERF) return 0.5f * x * (1.0f + erff(x * GELU_RSQRT2));
    float u = GELU_K * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

// tanh: 0.5 (1 + th) + 0.5 x (1 - th^2) du; erf: Phi(x) + x phi(x)
template <pb_gelu K> __device__ __forceinline__ float gelu_grad(float x) {
    if (K == PB_GELU_ERF)
        return 0.5f * (1.0f + erff(x * GELU_RSQRT2)) + x * GELU_RSQRT2PI * expf(-0.5f * x * x);
    float u = GELU_K * (x + 0.044715f * x * x * x), th = tanhf(u);
    float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

template <typename A, pb_gelu K>
__global__ void gelu_forward_kernel(A *out, const A *inp, size_t n, bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float v[4];
    ld4(v, inp, i, n, vec);
    for (int k = 0; k < 4; k++) v[k] = gelu<K>(v[k]);
    st4(out, v, i, n, vec);
}

template <typename A, pb_gelu K>
__global__ void gelu_backward_kernel(A *dinp, const A *inp, const A *dout, size_t n, bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float x[4], g[4], d[4];
    ld4(x, inp, i, n, vec);
    ld4(g, dout, i, n, vec);
    ld4(d, dinp, i, n, vec);
    for (int k = 0; k < 4; k++) d[k] += g[k] * gelu_grad<K>(x[k]);
    st4(dinp, d, i, n, vec);
}

template <typename A>
void cuda_gelu_forward(float *out, const float *inp, size_t n, pb_gelu kind) {
    if (!n) return;
    bool vec = aligned16(out) && aligned16(inp);
    if (kind == PB_GELU_ERF)
        gelu_forward_kernel<A, PB_GELU_ERF><<<ew_blocks(n), EW_THREADS>>>((A *)out,
                                                                          (const A *)inp, n, vec);
    else
        gelu_forward_kernel<A, PB_GELU_TANH><<<ew_blocks(n), EW_THREADS>>>((A *)out,
                                                                           (const A *)inp, n, vec);
    cudaCheckLaunch();
}

template <typename A>
void cuda_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, pb_gelu kind) {
    if (!n) return;
    bool vec = aligned16(dinp) && aligned16(inp) && aligned16(dout);
    if (kind == PB_GELU_ERF)
        gelu_backward_kernel<A, PB_GELU_ERF><<<ew_blocks(n), EW_THREADS>>>(
            (A *)dinp, (const A *)inp, (const A *)dout, n, vec);
    else
        gelu_backward_kernel<A, PB_GELU_TANH><<<ew_blocks(n), EW_THREADS>>>(
            (A *)dinp, (const A *)inp, (const A *)dout, n, vec);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// residual: out = a + b

template <typename A>
__global__ void residual_forward_kernel(A *out, const A *a, const A *b, size_t n, bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float x[4], y[4];
    ld4(x, a, i, n, vec);
    ld4(y, b, i, n, vec);
    for (int k = 0; k < 4; k++) x[k] += y[k];
    st4(out, x, i, n, vec);
}

template <typename A>
void cuda_residual_forward(float *out, const float *a, const float *b, size_t n) {
    if (!n) return;
    bool vec = aligned16(out) && aligned16(a) && aligned16(b);
    residual_forward_kernel<A><<<ew_blocks(n), EW_THREADS>>>((A *)out, (const A *)a,
                                                             (const A *)b, n, vec);
    cudaCheckLaunch();
}


// ----------------------------------------------------------------------------
// dropout: out = kept(key, i) ? in * scale : 0 (kernels/dropout.h, the CPU's decisions)

template <typename A>
__global__ void dropout_kernel(A *out, const A *in, size_t n, uint64_t key, uint32_t thr,
                               float sc, bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float x[4];
    ld4(x, in, i, n, vec);
    for (int k = 0; k < 4; k++) x[k] = pb_drop_keep(key, i + k, thr) ? x[k] * sc : 0.0f;
    st4(out, x, i, n, vec);
}

template <typename A>
void cuda_dropout(float *out, const float *in, size_t n, uint64_t key, float p) {
    if (!n) return;
    bool vec = aligned16(out) && aligned16(in);
    dropout_kernel<A><<<ew_blocks(n), EW_THREADS>>>((A *)out, (const A *)in, n, key,
                                                    pb_drop_threshold(p), pb_drop_scale(p), vec);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// the head's activation: tanh or ReLU; the backward from the output, dinp += f'(out) dout
// with f' = 1 - out^2 (tanh) or [out > 0] (ReLU)

template <typename A>
__global__ void act_forward_kernel(A *out, const A *inp, size_t n, bool vec, bool relu) {
    size_t i = ew_index();
    if (i >= n) return;
    float x[4];
    ld4(x, inp, i, n, vec);
    for (int k = 0; k < 4; k++) x[k] = relu ? fmaxf(x[k], 0.0f) : tanhf(x[k]);
    st4(out, x, i, n, vec);
}

template <typename A>
__global__ void act_backward_kernel(A *dinp, const A *out, const A *dout, size_t n, bool vec,
                                    bool relu) {
    size_t i = ew_index();
    if (i >= n) return;
    float d[4], y[4], g[4];
    ld4(d, dinp, i, n, vec);
    ld4(y, out, i, n, vec);
    ld4(g, dout, i, n, vec);
    for (int k = 0; k < 4; k++)
        d[k] += relu ? (y[k] > 0.0f ? g[k] : 0.0f) : (1.0f - y[k] * y[k]) * g[k];
    st4(dinp, d, i, n, vec);
}

template <typename A>
void cuda_act_forward(float *out, const float *inp, size_t n, pb_act kind) {
    if (!n) return;
    bool vec = aligned16(out) && aligned16(inp);
    act_forward_kernel<A><<<ew_blocks(n), EW_THREADS>>>((A *)out, (const A *)inp, n, vec,
                                                        kind == PB_ACT_RELU);
    cudaCheckLaunch();
}

template <typename A>
void cuda_act_backward(float *dinp, const float *out, const float *dout, size_t n, pb_act kind) {
    if (!n) return;
    bool vec = aligned16(dinp) && aligned16(out) && aligned16(dout);
    act_backward_kernel<A><<<ew_blocks(n), EW_THREADS>>>((A *)dinp, (const A *)out,
                                                         (const A *)dout, n, vec,
                                                         kind == PB_ACT_RELU);
    cudaCheckLaunch();
}


// ----------------------------------------------------------------------------
// scale: x *= s

__global__ void scale_kernel(float *x, float s, size_t n, bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float v[4];
    ld4(v, x, i, n, vec);
    for (int k = 0; k < 4; k++) v[k] *= s;
    st4(x, v, i, n, vec);
}

void cuda_scale(float *x, float s, size_t n) {
    if (!n) return;
    scale_kernel<<<ew_blocks(n), EW_THREADS>>>(x, s, n, aligned16(x));
    cudaCheckLaunch();
}


// ----------------------------------------------------------------------------
// fp32 master weights -> bf16 copy, stochastically rounded. Adding 16 random bits below
// bf16's last kept mantissa bit and truncating rounds x up with probability equal to the
// dropped fraction: E[rounded] = x, so updates far below bf16's resolution still move the
// copy on average. The bits come from a hash of (seed, index): deterministic.

__device__ __forceinline__ uint32_t sr_hash(uint64_t seed, size_t i) {
    uint64_t z = seed + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;  // splitmix64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

__device__ __forceinline__ bf16 round_stochastic(float x, uint32_t r) {
    uint32_t b = __float_as_uint(x);
    if ((b & 0x7F800000u) != 0x7F800000u) b += r & 0xFFFFu;  // inf and NaN stay as they are
    return __ushort_as_bfloat16((unsigned short)(b >> 16));
}

__global__ void params_to_bf16_kernel(bf16 *dst, const float *src, size_t n, uint64_t seed,
                                      bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float v[4];
    ld4(v, src, i, n, vec);
    bf16 o[4];
#pragma unroll
    for (int k = 0; k < 4; k++) o[k] = round_stochastic(v[k], sr_hash(seed, i + k));
    if (vec && i + 4 <= n) {
        __nv_bfloat162 lo = __halves2bfloat162(o[0], o[1]), hi = __halves2bfloat162(o[2], o[3]);
        uint2 t;
        t.x = *reinterpret_cast<uint32_t *>(&lo);
        t.y = *reinterpret_cast<uint32_t *>(&hi);
        *reinterpret_cast<uint2 *>(dst + i) = t;
    } else {
        for (int k = 0; k < 4 && i + k < n; k++) dst[i + k] = o[k];
    }
}

void cuda_params_to_bf16(float *dst, const float *src, size_t n, uint64_t seed) {
    if (!n) return;
    params_to_bf16_kernel<<<ew_blocks(n), EW_THREADS>>>((bf16 *)dst, src, n, seed,
                                                        aligned16(dst) && aligned16(src));
    cudaCheckLaunch();
}


// ----------------------------------------------------------------------------
// GELU fused into the bf16 products, or the separate kernels when cuBLASLt cannot

static void gelu_fallback_note(const char *what) {
    static int said;
    if (!said) fprintf(stderr, "pebble: cuBLASLt has no fused GELU %s here: separate kernels\n", what);
    said = 1;
}

void cuda_matmul_gelu_forward_bf16_op(float *out, float *pre, const float *inp,
                                             const float *weight, const float *bias, int N,
                                             int IC, int OC) {
    if (cuda_matmul_gelu_forward_bf16(out, pre, inp, weight, bias, N, IC, OC)) return;
    gelu_fallback_note("forward");
    cuda_matmul_forward_bf16(pre, inp, weight, bias, N, IC, OC);
    cuda_gelu_forward<bf16>(out, pre, (size_t)N * OC, PB_GELU_TANH);
}

void cuda_matmul_backward_gelu_bf16_op(float *dpre, float *dweight, float *dbias,
                                              const float *dout, const float *inp,
                                              const float *weight, const float *pre, int N,
                                              int IC, int OC) {
    cuda_matmul_backward_bf16(NULL, dweight, dbias, dout, inp, weight, N, IC, OC);
    if (cuda_matmul_dgelu_bf16(dpre, dout, weight, pre, N, IC, OC)) return;
    gelu_fallback_note("backward");
    size_t n = (size_t)N * IC;
    float *t = (float *)cuda_scratch(CUDA_SCRATCH_GELU, n * sizeof(bf16));
    cuda_zero(t, n * sizeof(bf16));
    cuda_matmul_backward_bf16(t, NULL, NULL, dout, inp, weight, N, IC, OC);
    cuda_zero(dpre, n * sizeof(bf16));
    cuda_gelu_backward<bf16>(dpre, pre, t, n, PB_GELU_TANH);
}


CUDA_INSTANCES(cuda_gelu_forward)
CUDA_INSTANCES(cuda_gelu_backward)
CUDA_INSTANCES(cuda_residual_forward)
CUDA_INSTANCES(cuda_dropout)
CUDA_INSTANCES(cuda_act_forward)
CUDA_INSTANCES(cuda_act_backward)
