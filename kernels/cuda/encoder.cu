// encoder.cu: the embedding of the CUDA backend: out (B,T,C) = wte[inp] + wpe[t] (+ wtt, BERT's
// token-type row), and its backward, deterministic (dwte summed per token in a fixed order,
// no float atomics).
#include "kernels/cuda/vec.cuh"

#include <cub/device/device_radix_sort.cuh>

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

__global__ void iota_kernel(int32_t *p, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) p[i] = i;
}

// One block per sorted position s (tok: the tokens in sorted order, pos: their positions,
// increasing within a token); the block at the first position of each token's run sums dout
// over the run in that order and adds the sum to that token's row.
template <typename A>
__global__ void wte_backward_kernel(float *dwte, const A *dout, const int32_t *tok,
                                    const int32_t *pos, int N, int C) {
    int s = blockIdx.x, t = tok[s];
    if (s > 0 && tok[s - 1] == t) return;  // not the start of a run
    int e = s + 1;
    while (e < N && tok[e] == t) e++;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
#pragma unroll 8
        for (int k = s; k < e; k++) acc += to_f(dout[(size_t)pos[k] * C + c]);
        dwte[(size_t)t * C + c] += acc;
    }
}

// The positions sorted by token, stably: CUB's radix sort of the pairs (inp[i], i), O(N) and
// deterministic. (An O(N^2) rank count was here before: 40-odd ms a step at the 524,288 tokens
// of a Pathfinder-32 batch, see docs/PERF.md.)
template <typename A>
void cuda_encoder_backward(float *dwte, float *dwpe, float *dwtt, const float *dout_,
                                  const int32_t *inp, int B, int T, int C) {
    int N = B * T;
    size_t TC = (size_t)T * C;
    const A *dout = (const A *)dout_;
    if (dwtt) cuda_colsum_accumulate(dwtt, dout, N, C);
    wpe_backward_kernel<A><<<cdiv(TC, 256), 256>>>(dwpe, dout, B, T, C);
    cudaCheckLaunch();
    size_t temp = 0;
    cudaCheck(cub::DeviceRadixSort::SortPairs(NULL, temp, (const int32_t *)NULL, (int32_t *)NULL,
                                              (const int32_t *)NULL, (int32_t *)NULL, N));
    size_t arrays = (3 * (size_t)N * sizeof(int32_t) + 255) & ~(size_t)255;  // CUB's alignment
    int32_t *iota = (int32_t *)cuda_scratch(CUDA_SCRATCH_SORT, arrays + temp);
    int32_t *tok = iota + N, *pos = tok + N;
    iota_kernel<<<cdiv(N, 256), 256>>>(iota, N);
    cudaCheckLaunch();
    cudaCheck(cub::DeviceRadixSort::SortPairs((char *)iota + arrays, temp, inp, tok, iota, pos, N));
    wte_backward_kernel<A><<<N, C < 256 ? 32 * cdiv(C, 32) : 256>>>(dwte, dout, tok, pos, N, C);
    cudaCheckLaunch();
}


CUDA_INSTANCES(cuda_encoder_forward)
CUDA_INSTANCES(cuda_encoder_backward)
