// encoder.cu: the embedding of the CUDA backend: out (B,T,C) = wte[inp] + wpe[t] (+ wtt, BERT's
// token-type row), and its backward, deterministic (dwte summed per token in a fixed order,
// no float atomics).
#include "kernels/cuda/vec.cuh"

// ----------------------------------------------------------------------------
// encoder: out (B,T,C) = wte[inp] + wpe[t] (+ wtt (C) when not NULL)

template <typename A>
__global__ void encoder_forward_kernel(A *out, const int32_t *inp, const A *wte, const A *wpe,
                                       const A *wtt, int T, int C, size_t total, bool vec) {
    size_t i = ew_index();
    if (i >= total) return;
    // With vec, C % 4 == 0, so the 4 elements share one row.
    if (vec) {
        size_t n = i / C;
        int c = (int)(i % C), t = (int)(n % T);
        float a[4], b[4];
        ld4(a, wte + (size_t)inp[n] * C, c, C, true);
        ld4(b, wpe + (size_t)t * C, c, C, true);
        for (int k = 0; k < 4; k++) a[k] += b[k];
        if (wtt) {
            ld4(b, wtt, c, C, true);
            for (int k = 0; k < 4; k++) a[k] += b[k];
        }
        st4(out, a, i, total, true);
    } else {
        for (size_t j = i; j < i + 4 && j < total; j++) {
            size_t n = j / C;
            int c = (int)(j % C), t = (int)(n % T);
            float x = to_f(wte[(size_t)inp[n] * C + c]) + to_f(wpe[(size_t)t * C + c]);
            if (wtt) x += to_f(wtt[c]);
            out[j] = from_f<A>(x);
        }
    }
}

template <typename A>
void cuda_encoder_forward(float *out, const int32_t *inp, const float *wte,
                                 const float *wpe, const float *wtt, int B, int T, int C) {
    size_t total = (size_t)B * T * C;
    bool vec = C % 4 == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe) &&
               aligned16(wtt);
    encoder_forward_kernel<A><<<ew_blocks(total), EW_THREADS>>>(
        (A *)out, inp, (const A *)wte, (const A *)wpe, (const A *)wtt, T, C, total, vec);
    cudaCheckLaunch();
}

// dwpe (T,C) += sum over b of dout (B,T,C): one thread per (t,c), b in order.
template <typename A>
__global__ void wpe_backward_kernel(float *dwpe, const A *dout, int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, TC = (size_t)T * C;
    if (i >= TC) return;
    float s = 0.0f;
    for (int b = 0; b < B; b++) s += to_f(dout[(size_t)b * TC + i]);
    dwpe[i] += s;
}

// Stable sort of positions by token, as ranks: rank[i] = #{j : tok_j < tok_i} +
// #{j < i : tok_j == tok_i}. Blocks of the y dimension count over disjoint ranges of j and
// add their counts with integer atomics, which are exact, so the ranks are deterministic.
#define RANK_J 2048
__global__ void token_rank_kernel(int32_t *rank, const int32_t *inp, int N) {
    __shared__ int32_t tok[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int ti = i < N ? inp[i] : 0;
    int j0 = blockIdx.y * RANK_J, j1 = min(N, j0 + RANK_J);
    int r = 0;
    for (int jt = j0; jt < j1; jt += 256) {
        __syncthreads();
        if (jt + (int)threadIdx.x < j1) tok[threadIdx.x] = inp[jt + threadIdx.x];
        __syncthreads();
        int m = min(256, j1 - jt);
        for (int k = 0; k < m; k++) {
            int tj = tok[k], j = jt + k;
            r += (tj < ti) | ((tj == ti) & (j < i));
        }
    }
    if (i < N && r) atomicAdd(&rank[i], r);
}

__global__ void scatter_rank_kernel(int32_t *sorted, const int32_t *rank, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) sorted[rank[i]] = i;
}

// One block per sorted position s; the block at the first position of each token's run sums
// dout over the run (positions in increasing order) and adds the sum to that token's row.
template <typename A>
__global__ void wte_backward_kernel(float *dwte, const A *dout, const int32_t *inp,
                                    const int32_t *sorted, int N, int C) {
    int s = blockIdx.x;
    int tok = inp[sorted[s]];
    if (s > 0 && inp[sorted[s - 1]] == tok) return;  // not the start of a run
    int e = s + 1;
    while (e < N && inp[sorted[e]] == tok) e++;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (int k = s; k < e; k++) acc += to_f(dout[(size_t)sorted[k] * C + c]);
        dwte[(size_t)tok * C + c] += acc;
    }
}

template <typename A>
void cuda_encoder_backward(float *dwte, float *dwpe, float *dwtt, const float *dout_,
                                  const int32_t *inp, int B, int T, int C) {
    int N = B * T;
    size_t TC = (size_t)T * C;
    const A *dout = (const A *)dout_;
    if (dwtt) cuda_colsum_accumulate(dwtt, dout, N, C);
    wpe_backward_kernel<A><<<cdiv(TC, 256), 256>>>(dwpe, dout, B, T, C);
    cudaCheckLaunch();
    int32_t *rank = (int32_t *)cuda_scratch(CUDA_SCRATCH_SORT, 2 * (size_t)N * sizeof(int32_t));
    int32_t *sorted = rank + N;
    cudaCheck(cudaMemsetAsync(rank, 0, (size_t)N * sizeof(int32_t)));
    token_rank_kernel<<<dim3(cdiv(N, 256), cdiv(N, RANK_J)), 256>>>(rank, inp, N);
    cudaCheckLaunch();
    scatter_rank_kernel<<<cdiv(N, 256), 256>>>(sorted, rank, N);
    cudaCheckLaunch();
    wte_backward_kernel<A><<<N, C < 256 ? 32 * cdiv(C, 32) : 256>>>(dwte, dout, inp, sorted, N, C);
    cudaCheckLaunch();
}


CUDA_INSTANCES(cuda_encoder_forward)
CUDA_INSTANCES(cuda_encoder_backward)
