// rows.cu: the CUDA backend's row ops of the heads: rows by index (BERT's MLM positions, the
// first token of each sequence) and the mean over each sequence's unpadded positions.
// Deterministic: a gather's backward adds each row once (the indices are distinct), and the
// mean sums its positions in order.
#include "kernels/cuda/vec.cuh"

// ----------------------------------------------------------------------------
// rows by index: out (M,C) = inp[idx[i]] (N,C); backward dinp[idx[i]] += dout[i]

template <typename A>
__global__ void gather_rows_kernel(A *out, const A *inp, const int32_t *idx, int C) {
    int i = blockIdx.x;
    const A *src = inp + (size_t)idx[i] * C;
    A *dst = out + (size_t)i * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

template <typename A>
__global__ void scatter_add_rows_kernel(A *dinp, const A *dout, const int32_t *idx, int C) {
    int i = blockIdx.x;
    A *dst = dinp + (size_t)idx[i] * C;
    const A *src = dout + (size_t)i * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = from_f<A>(to_f(dst[c]) + to_f(src[c]));
}

static int row_threads(int C) { return C >= 256 ? 256 : 32 * cdiv(C, 32); }

template <typename A>
void cuda_gather_rows(float *out, const float *inp, const int32_t *idx, int M, int C) {
    if (M <= 0) return;
    gather_rows_kernel<A><<<M, row_threads(C)>>>((A *)out, (const A *)inp, idx, C);
    cudaCheckLaunch();
}

template <typename A>
void cuda_scatter_add_rows(float *dinp, const float *dout, const int32_t *idx, int M, int C) {
    if (M <= 0) return;
    scatter_add_rows_kernel<A><<<M, row_threads(C)>>>((A *)dinp, (const A *)dout, idx, C);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// mean pooling: out (B,C) = the sum over t < lengths[b] of inp (B,T,C) divided by n =
// counts[b] (or lengths[b]); one thread per (b,c), the positions summed in order in fp32

template <typename A>
__global__ void mean_pool_forward_kernel(A *out, const A *inp, const int32_t *lengths,
                                         const int32_t *counts, int B, int T, int C) {
    int b = blockIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int len = lengths[b], n = counts ? counts[b] : len;
    const A *x = inp + (size_t)b * T * C + c;
    float s = 0.0f;
    for (int t = 0; t < len; t++) s += to_f(x[(size_t)t * C]);
    out[(size_t)b * C + c] = from_f<A>(s / (float)n);
}

// dinp (B,T,C) += dout[b] / n on the first len positions: one thread per element
template <typename A>
__global__ void mean_pool_backward_kernel(A *dinp, const A *dout, const int32_t *lengths,
                                          const int32_t *counts, int T, int C, size_t total) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    int c = (int)(i % C);
    size_t bt = i / C;
    int b = (int)(bt / T), t = (int)(bt % T), len = lengths[b];
    if (t >= len) return;
    float n = (float)(counts ? counts[b] : len);
    dinp[i] = from_f<A>(to_f(dinp[i]) + to_f(dout[(size_t)b * C + c]) / n);
}

template <typename A>
void cuda_mean_pool_forward(float *out, const float *inp, const int32_t *lengths,
                            const int32_t *counts, int B, int T, int C) {
    mean_pool_forward_kernel<A><<<dim3(cdiv(C, 128), B), 128>>>((A *)out, (const A *)inp,
                                                                 lengths, counts, B, T, C);
    cudaCheckLaunch();
}

template <typename A>
void cuda_mean_pool_backward(float *dinp, const float *dout, const int32_t *lengths,
                             const int32_t *counts, int B, int T, int C) {
    size_t total = (size_t)B * T * C;
    mean_pool_backward_kernel<A><<<cdiv(total, 256), 256>>>((A *)dinp, (const A *)dout, lengths,
                                                            counts, T, C, total);
    cudaCheckLaunch();
}

CUDA_INSTANCES(cuda_gather_rows)
CUDA_INSTANCES(cuda_scatter_add_rows)
CUDA_INSTANCES(cuda_mean_pool_forward)
CUDA_INSTANCES(cuda_mean_pool_backward)
