// crossentropy.cu: the fused softmax + cross-entropy of the CUDA backend, forward and
// backward, over the first V of Vp logit columns.
#include "kernels/cuda/vec.cuh"

#include <math.h>

// ----------------------------------------------------------------------------
// fused softmax + cross-entropy: one block per row of logits (N,Vp). Each thread runs an
// online (max, sum of exp) over its strided columns of the first V; the block combines the
// pairs in a fixed tree. Nothing of size V is stored besides the logits themselves.

#define CE_THREADS 512

// (m, s) += (m2, s2), where s is a sum of exp(x - m)
__device__ __forceinline__ void lse_combine(float &m, float &s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    if (mn == -INFINITY) return;  // both empty
    s = s * expf(m - mn) + s2 * expf(m2 - mn);
    m = mn;
}

// Combines every thread's (m, s) into the block's log-sum-exp (every thread gets it).
__device__ float block_lse_reduce(float m, float s) {
    __shared__ float sm_m[CE_THREADS / 32], sm_s[CE_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_combine(m, s, m2, s2);
    }
    int warp = threadIdx.x / 32, nw = blockDim.x / 32;
    if (threadIdx.x % 32 == 0) sm_m[warp] = m, sm_s[warp] = s;
    __syncthreads();
    m = sm_m[0], s = sm_s[0];
    for (int w = 1; w < nw; w++) lse_combine(m, s, sm_m[w], sm_s[w]);
    __syncthreads();  // the shared slots may be reused by a next call
    return m + logf(s);
}

// log-sum-exp of x[0..V), for the whole block (every thread gets it)
template <typename A>
__device__ float block_lse(const A *x, int V) {
    float m = -INFINITY, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float xv = to_f(x[v]);
        if (xv > m) {
            s = s * expf(m - xv) + 1.0f;
            m = xv;
        } else {
            s += expf(xv - m);
        }
    }
    return block_lse_reduce(m, s);
}

// --- bf16 logits with 16-byte aligned rows and Vp % 8 == 0 (the model's case): 8 columns
// per thread per step, one 16-byte load, one rescale per 8 columns instead of a branch per
// column, and the fast exponential (__expf: ~2 ulp, far below bf16's rounding).
__device__ float block_lse8(const bf16 *x, int V) {
    float m = -INFINITY, s = 0.0f;
    for (int c = threadIdx.x * 8; c < V; c += blockDim.x * 8) {
        float f[8], mx = -INFINITY;
        to_f8(f, ld8(x + c));  // c + 8 <= Vp
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (c + k < V) mx = fmaxf(mx, f[k]);
        if (mx > m) {
            s *= __expf(m - mx);  // m = -inf: s is still 0
            m = mx;
        }
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (c + k < V) s += __expf(f[k] - m);
    }
    return block_lse_reduce(m, s);
}

__global__ void crossentropy_forward_bf16x8_kernel(float *losses, const bf16 *logits,
                                                   const int32_t *targets, int V, int Vp) {
    int row = blockIdx.x;
    const bf16 *x = logits + (size_t)row * Vp;
    float lse = block_lse8(x, V);
    if (threadIdx.x == 0) {
        int t = targets[row];
        losses[row] = t < 0 ? 0.0f : lse - __bfloat162float(x[t]);
    }
}

// In place as the generic kernel: each thread reads its 8 columns, then writes them.
__global__ void crossentropy_backward_bf16x8_kernel(bf16 *dlogits, const bf16 *logits,
                                                    const int32_t *targets, float dloss, int V,
                                                    int Vp) {
    int row = blockIdx.x;
    const bf16 *x = logits + (size_t)row * Vp;
    bf16 *dx = dlogits + (size_t)row * Vp;
    int t = targets[row];
    float lse = block_lse8(x, V);
    for (int c = threadIdx.x * 8; c < Vp; c += blockDim.x * 8) {
        float f[8];
        to_f8(f, ld8(x + c));
#pragma unroll
        for (int k = 0; k < 8; k++) {
            int v = c + k;
            f[k] = t >= 0 && v < V ? dloss * (__expf(f[k] - lse) - (v == t ? 1.0f : 0.0f)) : 0.0f;
        }
        st8(dx + c, f);
    }
}

static bool ce_vec8(const void *a, const void *b, int Vp) {
    return Vp % 8 == 0 && aligned16(a) && aligned16(b);
}

template <typename A>
__global__ void crossentropy_forward_kernel(float *losses, const A *logits,
                                            const int32_t *targets, int V, int Vp) {
    int row = blockIdx.x;
    const A *x = logits + (size_t)row * Vp;
    float lse = block_lse(x, V);
    if (threadIdx.x == 0) {
        int t = targets[row];
        losses[row] = t < 0 ? 0.0f : lse - to_f(x[t]);
    }
}

// dlogits = dloss * (softmax - onehot(target)); may run in place (dlogits == logits): each
// element is read and then written by the same thread, after block_lse's reads are done.
template <typename A>
__global__ void crossentropy_backward_kernel(A *dlogits, const A *logits,
                                             const int32_t *targets, float dloss, int V,
                                             int Vp) {
    int row = blockIdx.x;
    const A *x = logits + (size_t)row * Vp;
    A *dx = dlogits + (size_t)row * Vp;
    int t = targets[row];
    float lse = block_lse(x, V);
    for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
        float g = 0.0f;
        if (t >= 0 && v < V) g = dloss * (expf(to_f(x[v]) - lse) - (v == t ? 1.0f : 0.0f));
        dx[v] = from_f<A>(g);
    }
}

template <typename A>
void cuda_crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                                      int N, int V, int Vp) {
    if (sizeof(A) == 2 && ce_vec8(logits, logits, Vp))
        crossentropy_forward_bf16x8_kernel<<<N, CE_THREADS>>>(losses, (const bf16 *)logits,
                                                              targets, V, Vp);
    else
        crossentropy_forward_kernel<A><<<N, CE_THREADS>>>(losses, (const A *)logits, targets, V,
                                                          Vp);
    cudaCheckLaunch();
}

template <typename A>
void cuda_crossentropy_backward(float *dlogits, const float *logits,
                                       const int32_t *targets, float dloss, int N, int V, int Vp) {
    if (sizeof(A) == 2 && ce_vec8(dlogits, logits, Vp))
        crossentropy_backward_bf16x8_kernel<<<N, CE_THREADS>>>(
            (bf16 *)dlogits, (const bf16 *)logits, targets, dloss, V, Vp);
    else
        crossentropy_backward_kernel<A><<<N, CE_THREADS>>>((A *)dlogits, (const A *)logits,
                                                           targets, dloss, V, Vp);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// argmax over the first V of each row of logits (N,Vp): one block per row; each thread keeps
// its strided best (value, then the smallest index), the block combines them in a fixed tree.

template <typename A>
__global__ void argmax_rows_kernel(int32_t *out, const A *logits, int V, int Vp) {
    __shared__ float sv[256];
    __shared__ int si[256];
    const A *x = logits + (size_t)blockIdx.x * Vp;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float y = to_f(x[v]);
        if (y > best) best = y, bi = v;  // v grows: the first of equal values is kept
    }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            float o = sv[threadIdx.x + s];
            int oi = si[threadIdx.x + s];
            if (o > sv[threadIdx.x] || (o == sv[threadIdx.x] && oi < si[threadIdx.x]))
                sv[threadIdx.x] = o, si[threadIdx.x] = oi;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = si[0] == 0x7fffffff ? 0 : si[0];
}

template <typename A>
void cuda_argmax_rows(int32_t *out, const float *logits, int N, int V, int Vp) {
    if (N <= 0) return;
    argmax_rows_kernel<A><<<N, 256>>>(out, (const A *)logits, V, Vp);
    cudaCheckLaunch();
}

CUDA_INSTANCES(cuda_crossentropy_forward)
CUDA_INSTANCES(cuda_crossentropy_backward)
CUDA_INSTANCES(cuda_argmax_rows)
