// cuda_common.cuh: what every .cu file of the CUDA backend shares: checked CUDA and cuBLAS
// calls, warp and block reductions, and the backend's scratch buffers.
#ifndef PEBBLE_CUDA_COMMON_CUH
#define PEBBLE_CUDA_COMMON_CUH

#include <cublasLt.h>
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
// dst (C) += column sums of x (N,C), deterministic (ops_cuda.cu; used for dbias too).
void cuda_colsum_accumulate(float *dst, const float *x, int N, int C);

#endif
