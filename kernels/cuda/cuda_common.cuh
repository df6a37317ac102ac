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
// GELU fused into the bf16 products (cuBLASLt epilogues GELU_AUX_BIAS, DGELU); each returns
// 0, having done nothing, when cuBLASLt has no algorithm for the fused form.
int cuda_matmul_gelu_forward_bf16(float *out, float *pre, const float *inp, const float *weight,
                                  const float *bias, int N, int IC, int OC);
int cuda_matmul_dgelu_bf16(float *dpre, const float *dout, const float *weight, const float *pre,
                           int N, int IC, int OC);
// dst (C, fp32) += column sums of x (N,C), deterministic (ops_cuda.cu; used for dbias too).
template <typename T> void cuda_colsum_accumulate(float *dst, const T *x, int N, int C);

#endif
