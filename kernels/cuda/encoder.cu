// encoder.cu: the embedding of the CUDA backend: out (B,T,C) = wte[inp] + wpe[t or pos] (+ wtt,
// BERT's token-type row), and its backward, deterministic (dwte summed per token in a fixed
// order, no float atomics; dwpe too when the positions are given).
#include "kernels/cuda/vec.cuh"

#include <cub/device/device_radix_sort.cuh>

// ----------------------------------------------------------------------------
// encoder: out (B,T,C) = wte[inp] + wpe[pos or t] (+ wtt (C) when not NULL)

template <typename A>
__global__ void encoder_forward_kernel(A *out, const int32_t *inp, const int32_t *pos,
                                       const A *wte, const A *wpe, const A *wtt, int T, int C,
                                       size_t total, bool vec) {
    size_t i = ew_index();
    if (i >= total) return;
    // With vec, C % 4 == 0, so the 4 elements share one row.
    if (vec) {
        size_t n = i / C;
        int c = (int)(i % C), t = pos ? pos[n] : (int)(n % T);
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
            int c = (int)(j % C), t = pos ? pos[n] : (int)(n % T);
            float x = to_f(wte[(size_t)inp[n] * C + c]) + to_f(wpe[(size_t)t * C + c]);
            if (wtt) x += to_f(wtt[c]);
            out[j] = from_f<A>(x);
        }
    }
}

template <typename A>
void cuda_encoder_forward(float *out, const int32_t *inp, const int32_t *pos, const float *wte,
                          const float *wpe, const float *wtt, int B, int T, int C) {
    size_t total = (size_t)B * T * C;
    bool vec = C % 4 == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe) &&
               aligned16(wtt);
    encoder_forward_kernel<A><<<ew_blocks(total), EW_THREADS>>>(
        (A *)out, inp, pos, (const A *)wte, (const A *)wpe, (const A *)wtt, T, C, total, vec);
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

// dwte (or dwpe, by position) from the rows sorted by token (tok; pos: their rows, increasing
// within a token), cut into chunks of S sorted rows. A run of one token inside a chunk is summed
// there and added to its row (no other block touches that token). A run that crosses chunk
// boundaries leaves one partial sum in each chunk it touches: part[2k] the piece at chunk k's
// start when it continues a run from before, part[2k+1] the piece at its end when the run
// goes on; wte_runs_kernel adds them up in chunk order. Every sum has a fixed order, so the
// result is the same bits whatever the scheduling, and a token that fills most of the batch
// (a Pathfinder image's background) is summed by many blocks instead of one.
template <typename A>
__global__ void wte_chunks_kernel(float *dwte, float *part, const A *dout, const int32_t *tok,
                                  const int32_t *pos, int N, int C, int S) {
    int k = blockIdx.x, s0 = k * S, s1 = min(N, s0 + S);
    int first = tok[s0], last = tok[s1 - 1];
    bool head = s0 > 0 && tok[s0 - 1] == first;  // the first piece continues a run
    bool tail = s1 < N && tok[s1] == last;       // the last piece's run goes on
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        int cur = first, piece = 0;
        for (int s = s0; s < s1; s++) {
            int t = tok[s];
            if (t != cur) {  // cur's piece ends: a head piece, or a whole run
                if (piece == 0 && head) part[(size_t)2 * k * C + c] = acc;
                else dwte[(size_t)cur * C + c] += acc;
                acc = 0.0f, cur = t, piece++;
            }
            acc += to_f(dout[(size_t)pos[s] * C + c]);
        }
        if (piece == 0 && head) part[(size_t)2 * k * C + c] = acc;  // the chunk is mid-run
        else if (tail) part[(size_t)(2 * k + 1) * C + c] = acc;
        else dwte[(size_t)cur * C + c] += acc;
    }
}

// One block per chunk k; the block whose chunk starts a run that goes on sums its pieces:
// chunk k's tail, then the head of every following chunk until the run ends.
__global__ void wte_runs_kernel(float *dwte, const float *part, const int32_t *tok, int N, int C,
                                int S) {
    int k = blockIdx.x, s0 = k * S, s1 = min(N, s0 + S), t = tok[s1 - 1];
    if (!(s1 < N && tok[s1] == t)) return;                         // no run goes on
    if (s0 > 0 && tok[s0 - 1] == t && tok[s0] == t) return;        // nor starts here
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = part[(size_t)(2 * k + 1) * C + c];
        for (int j = k + 1;; j++) {
            acc += part[(size_t)2 * j * C + c];
            int e = min(N, (j + 1) * S);
            if (!(e < N && tok[e] == t)) break;  // the run ends in chunk j
        }
        dwte[(size_t)t * C + c] += acc;
    }
}

// dst[key[i]] += dout[i] for the N rows: the positions sorted by key, stably (CUB's radix
// sort of the pairs (key[i], i), O(N) and deterministic), then the chunked sums above.
// (Before: an O(N^2) rank count and one block summing each token's whole run; a Pathfinder-32
// training step took 151 ms with them, 74 ms with the sort alone: docs/PERF.md.)
template <typename A>
static void scatter_sorted(float *dst, const A *dout, const int32_t *key, int N, int C) {
    // S: a power of 2 near sqrt(N), so that a chunk's serial sum and a run's walk over the
    // chunks' partials are both about sqrt(N) long (1024 at a Pathfinder-32 batch's 524,288)
    int S = 64;
    while ((long)S * S < N) S *= 2;
    int chunks = cdiv(N, S);
    size_t temp = 0;
    cudaCheck(cub::DeviceRadixSort::SortPairs(NULL, temp, (const int32_t *)NULL, (int32_t *)NULL,
                                              (const int32_t *)NULL, (int32_t *)NULL, N));
    size_t arrays = (3 * (size_t)N * sizeof(int32_t) + 255) & ~(size_t)255;  // CUB's alignment
    size_t parts = (2 * (size_t)chunks * C * sizeof(float) + 255) & ~(size_t)255;
    char *mem = (char *)cuda_scratch(CUDA_SCRATCH_SORT, arrays + parts + temp);
    int32_t *iota = (int32_t *)mem, *tok = iota + N, *pos = tok + N;
    float *part = (float *)(mem + arrays);
    iota_kernel<<<cdiv(N, 256), 256>>>(iota, N);
    cudaCheckLaunch();
    cudaCheck(cub::DeviceRadixSort::SortPairs(mem + arrays + parts, temp, key, tok, iota, pos, N));
    int threads = C < 256 ? 32 * cdiv(C, 32) : 256;
    wte_chunks_kernel<A><<<chunks, threads>>>(dst, part, dout, tok, pos, N, C, S);
    cudaCheckLaunch();
    wte_runs_kernel<<<chunks, threads>>>(dst, part, tok, N, C, S);
    cudaCheckLaunch();
}

// dwpe: a sum over the batch per position, or, with the positions given (repeating across
// the batch), the same sorted scatter as dwte's.
template <typename A>
void cuda_encoder_backward(float *dwte, float *dwpe, float *dwtt, const float *dout_,
                           const int32_t *inp, const int32_t *pos, int B, int T, int C) {
    int N = B * T;
    size_t TC = (size_t)T * C;
    const A *dout = (const A *)dout_;
    if (dwtt) cuda_colsum_accumulate(dwtt, dout, N, C);
    if (pos) {
        scatter_sorted(dwpe, dout, pos, N, C);
    } else {
        wpe_backward_kernel<A><<<cdiv(TC, 256), 256>>>(dwpe, dout, B, T, C);
        cudaCheckLaunch();
    }
    scatter_sorted(dwte, dout, inp, N, C);
}


CUDA_INSTANCES(cuda_encoder_forward)
CUDA_INSTANCES(cuda_encoder_backward)
