// cuda_common.cuh: what every .cu file of the CUDA backend shares: checked CUDA and cuBLAS
// calls, warp and block reductions, and the backend's scratch buffers.
#ifndef PEBBLE_CUDA_COMMON_CUH
#define PEBBLE_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "kernels/common.h"
#include "kernels/ops.h"
}

// --- checked calls: every CUDA and cuBLAS call goes through one of these, which print the
// file and line of the call and exit. A failure here is a bug or a broken device, so the
// exit code is PB_EXIT_RUNTIME.
static inline void cuda_check_at(cudaError_t err, const char *file, int line) {
    if (err != cudaSuccess) {
        fflush(stdout);
        fprintf(stderr, "pebble: CUDA error at %s:%d: %s (%s)\n", file, line,
                cudaGetErrorString(err), cudaGetErrorName(err));
        exit(PB_EXIT_RUNTIME);
    }
}
#define cudaCheck(call) cuda_check_at((call), __FILE__, __LINE__)

static inline void cublas_check_at(cublasStatus_t st, const char *file, int line) {
    if (st != CUBLAS_STATUS_SUCCESS) {
        fflush(stdout);
        fprintf(stderr, "pebble: cuBLAS error at %s:%d: %s (%d)\n", file, line,
                cublasLtGetStatusString(st), (int)st);
        exit(PB_EXIT_RUNTIME);
    }
}
#define cublasCheck(call) cublas_check_at((call), __FILE__, __LINE__)

// After every kernel launch: launch-configuration errors surface here, at the launch's line;
// faults inside a kernel surface at the next synchronising call.
#define cudaCheckLaunch() cudaCheck(cudaGetLastError())

static inline unsigned cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

// --- element types. Kernels shared by the fp32 and the bf16 (mixed precision) tables are
// templates on the activation type T, float or bf16; they compute in fp32 and convert on
// loads (to_f) and stores (from_f<T>, round to nearest even).
typedef __nv_bfloat16 bf16;
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float x) { return __float2bfloat16_rn(x); }

// --- reductions. Shuffle trees have a fixed shape, so their results are deterministic.
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ double warp_sum_d(double x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// --- scratch: device buffers the ops use internally (partial sums, sort keys, attention's
// Di). Each slot is one buffer that grows on demand and lives until exit. Ops run in order
// on the default stream, so an op may reuse a slot another op used before it.
enum {
    CUDA_SCRATCH_PARTIAL = 0,  // per-block partial sums (LayerNorm, dbias, sumsq)
    CUDA_SCRATCH_SORT,         // encoder backward: positions sorted by token
    CUDA_SCRATCH_ATTN,         // attention backward: Di = rowsum(dO * O), (B,NH,T)
    CUDA_SCRATCH_GELU,         // unfused fallback of matmul_backward_gelu: dout @ weight
    CUDA_SCRATCH_SCORES,       // small-cache attention: a chunk of heads' (T,T) S and P
    CUDA_SCRATCH_BS_KV,        // block-sparse: the layout's and the descriptor's kv_len, (B)
    CUDA_SCRATCH_COUNT
};
void *cuda_scratch(int slot, size_t bytes);

// --- the matmul half of the op table (matmul_cuda.cu)
void cuda_matmul_init(void);
void cuda_matmul_set_tf32(int on);
void cuda_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                         int N, int IC, int OC);
void cuda_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int N, int IC, int OC);
// The same with bf16 activations and weights (the pointers hold bf16, kernels/ops.h) and
// fp32 weight and bias gradients; fp32 accumulation inside the products.
void cuda_matmul_forward_bf16(float *out, const float *inp, const float *weight,
                              const float *bias, int N, int IC, int OC);
void cuda_matmul_backward_bf16(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int N, int IC, int OC);
// batch products at once, column-major as cuBLASLt's: D_i (m,n) = alpha op(A_i) (m,k)
// op(B_i) (k,n) + beta D_i with X_i = X + i * stride_x elements; A and B of type abt, D of
// type dt (CUDA_R_32F or CUDA_R_16BF), fp32 accumulation. The small-cache attention's
// products over a batch row's heads (smallcache_cuda.cu).
void cuda_matmul_strided(void *d, const void *a, const void *b, int m, int n, int k, int transa,
                         int transb, int lda, int ldb, int ldd, int64_t stride_a,
                         int64_t stride_b, int64_t stride_d, int batch, float alpha, float beta,
                         cudaDataType_t abt, cudaDataType_t dt);
// GELU fused into the bf16 products (cuBLASLt epilogues GELU_AUX_BIAS, DGELU); each returns
// 0, having done nothing, when cuBLASLt has no algorithm for the fused form.
int cuda_matmul_gelu_forward_bf16(float *out, float *pre, const float *inp, const float *weight,
                                  const float *bias, int N, int IC, int OC);
int cuda_matmul_dgelu_bf16(float *dpre, const float *dout, const float *weight, const float *pre,
                           int N, int IC, int OC);
// dst (C, fp32) += column sums of x (N,C), deterministic (layernorm.cu; used for dbias too).
template <typename T> void cuda_colsum_accumulate(float *dst, const T *x, int N, int C);

// --- the rest of the op tables (ops_cuda.cu lists them), file by file, with the shapes and
// contracts of kernels/ops.h. Templates on the activation type A (float or bf16) take the
// table's float pointers and cast them; each file instantiates both with CUDA_INSTANCES.
#define CUDA_INSTANCES(fn)                                                                     \
    template decltype(fn<float>) fn<float>;                                                    \
    template decltype(fn<bf16>) fn<bf16>;

// device.cu: device 0, cuBLASLt and the TF32 switch, once; exits when no GPU can be used
void cuda_init(void);
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
void cuda_upload(void *dst, const void *src, size_t bytes);
void cuda_download(void *dst, const void *src, size_t bytes);
void cuda_zero(void *p, size_t bytes);
// encoder.cu
template <typename A>
void cuda_encoder_forward(float *out, const int32_t *inp, const int32_t *pos, const float *wte,
                          const float *wpe, const float *wtt, int B, int T, int C);
template <typename A>
void cuda_encoder_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                           const int32_t *inp, const int32_t *pos, int B, int T, int C);
// layernorm.cu
template <typename A>
void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps);
template <typename A>
void cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C);
template <typename A>
void cuda_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                     const float *a, const float *b, const float *weight,
                                     const float *bias, int N, int C, float eps);
// elementwise.cu
template <typename A>
void cuda_gelu_forward(float *out, const float *inp, size_t n, pb_gelu kind);
template <typename A>
void cuda_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n,
                        pb_gelu kind);
template <typename A> void cuda_residual_forward(float *out, const float *a, const float *b, size_t n);
template <typename A> void cuda_dropout(float *out, const float *in, size_t n, uint64_t key, float p);
template <typename A>
void cuda_act_forward(float *out, const float *inp, size_t n, pb_act kind);
template <typename A>
void cuda_act_backward(float *dinp, const float *out, const float *dout, size_t n, pb_act kind);
// rows.cu
template <typename A>
void cuda_gather_rows(float *out, const float *inp, const int32_t *idx, int M, int C);
template <typename A>
void cuda_scatter_add_rows(float *dinp, const float *dout, const int32_t *idx, int M, int C);
template <typename A>
void cuda_mean_pool_forward(float *out, const float *inp, const int32_t *lengths,
                            const int32_t *counts, int B, int T, int C);
template <typename A>
void cuda_mean_pool_backward(float *dinp, const float *dout, const int32_t *lengths,
                             const int32_t *counts, int B, int T, int C);
void cuda_scale(float *x, float s, size_t n);
void cuda_params_to_bf16(float *dst, const float *src, size_t n, uint64_t seed);
void cuda_matmul_gelu_forward_bf16_op(float *out, float *pre, const float *inp,
                                      const float *weight, const float *bias, int N, int IC,
                                      int OC);
void cuda_matmul_backward_gelu_bf16_op(float *dpre, float *dweight, float *dbias,
                                       const float *dout, const float *inp, const float *weight,
                                       const float *pre, int N, int IC, int OC);
// crossentropy.cu
template <typename A>
void cuda_crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                               int N, int V, int Vp);
template <typename A>
void cuda_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                float dloss, int N, int V, int Vp);
template <typename A>
void cuda_argmax_rows(int32_t *out, const float *logits, int N, int V, int Vp);
// optimizer.cu
void cuda_adamw_update(float *param, const float *grad, float *m, float *v, const size_t *ends,
                       const float *wd, int nseg, float lr, float beta1, float beta2, float eps,
                       int t);
double cuda_sumsq(const float *x, size_t n);

#endif
