// optimizer.cu: the CUDA backend's optimizer ops on fp32 buffers (both tables): AdamW over
// many parameter tensors in one launch, and the deterministic sum of squares.
#include "kernels/cuda/vec.cuh"

#include <math.h>

// ----------------------------------------------------------------------------
// AdamW

// AdamW over up to ADAMW_SEGS parameter tensors in one launch (the 148 of GPT-2 small in
// one): the segment table travels in the kernel's parameters; each thread finds the segment
// of its first element by bisection and steps on across a boundary inside its four.
#define ADAMW_SEGS 256
struct adamw_segs {
    size_t end[ADAMW_SEGS];  // element ends, relative to the launch's first element
    float wd[ADAMW_SEGS];
    int n;
};

__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, adamw_segs s,
                             float lr, float beta1, float beta2, float eps, float bc1, float bc2,
                             bool vec) {
    size_t i = ew_index(), n = s.end[s.n - 1];
    if (i >= n) return;
    int k = 0, hi = s.n - 1;
    while (k < hi) {
        int mid = (k + hi) / 2;
        if (i < s.end[mid]) hi = mid;
        else k = mid + 1;
    }
    float p[4], g[4], mm[4], vv[4];
    ld4(p, param, i, n, vec);
    ld4(g, grad, i, n, vec);
    ld4(mm, m, i, n, vec);
    ld4(vv, v, i, n, vec);
    for (int e = 0; e < 4; e++) {
        while (k < s.n - 1 && i + e >= s.end[k]) k++;
        mm[e] = beta1 * mm[e] + (1.0f - beta1) * g[e];
        vv[e] = beta2 * vv[e] + (1.0f - beta2) * g[e] * g[e];
        float mhat = mm[e] / bc1, vhat = vv[e] / bc2;
        p[e] -= lr * (mhat / (sqrtf(vhat) + eps) + s.wd[k] * p[e]);
    }
    st4(param, p, i, n, vec);
    st4(m, mm, i, n, vec);
    st4(v, vv, i, n, vec);
}

void cuda_adamw_update(float *param, const float *grad, float *m, float *v,
                              const size_t *ends, const float *wd, int nseg, float lr,
                              float beta1, float beta2, float eps, int t) {
    PB_ASSERT(t >= 1 && nseg >= 0);
    // bias corrections in double, as the CPU backend does: beta2^t for t in the thousands
    float bc1 = (float)(1.0 - pow(beta1, t)), bc2 = (float)(1.0 - pow(beta2, t));
    for (int k0 = 0; k0 < nseg; k0 += ADAMW_SEGS) {
        adamw_segs s;
        size_t base = k0 ? ends[k0 - 1] : 0;
        s.n = nseg - k0 < ADAMW_SEGS ? nseg - k0 : ADAMW_SEGS;
        for (int k = 0; k < s.n; k++) {
            PB_ASSERT(ends[k0 + k] >= (k0 + k ? ends[k0 + k - 1] : 0));
            s.end[k] = ends[k0 + k] - base, s.wd[k] = wd[k0 + k];
        }
        size_t n = s.end[s.n - 1];
        if (!n) continue;
        float *p = param + base, *mb = m + base, *vb = v + base;
        const float *g = grad + base;
        bool vec = aligned16(p) && aligned16(g) && aligned16(mb) && aligned16(vb);
        adamw_kernel<<<ew_blocks(n), EW_THREADS>>>(p, g, mb, vb, s, lr, beta1, beta2, eps, bc1,
                                                   bc2, vec);
        cudaCheckLaunch();
    }
}

// ----------------------------------------------------------------------------
// sum of squares (the gradient norm), in double

// A fixed grid, so every element lands in the same thread and the same partial slot on
// every run (and every GPU): the sum is deterministic.
#define SUMSQ_BLOCKS 1024
#define SUMSQ_THREADS 256

__device__ double block_sum_d(double x) {
    __shared__ double sm[SUMSQ_THREADS / 32];
    x = warp_sum_d(x);
    if (threadIdx.x % 32 == 0) sm[threadIdx.x / 32] = x;
    __syncthreads();
    double s = 0.0;
    if (threadIdx.x == 0)
        for (int w = 0; w < (int)blockDim.x / 32; w++) s += sm[w];
    return s;  // valid in thread 0
}

__global__ void sumsq_partial_kernel(double *partial, const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        double v = x[i];
        s += v * v;
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sumsq_final_kernel(double *partial, int n) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) partial[n] = s;
}

double cuda_sumsq(const float *x, size_t n) {
    double *partial = (double *)cuda_scratch(CUDA_SCRATCH_PARTIAL, (SUMSQ_BLOCKS + 1) * sizeof(double));
    sumsq_partial_kernel<<<SUMSQ_BLOCKS, SUMSQ_THREADS>>>(partial, x, n);
    cudaCheckLaunch();
    sumsq_final_kernel<<<1, SUMSQ_THREADS>>>(partial, SUMSQ_BLOCKS);
    cudaCheckLaunch();
    double s = 0.0;
    cudaCheck(cudaMemcpy(&s, partial + SUMSQ_BLOCKS, sizeof s, cudaMemcpyDeviceToHost));
    return s;
}

