// ops_cuda.cu: the CUDA backend's op tables, fp32 and bf16 mixed precision: device memory, embedding, LayerNorm, GELU,
// residual, fused softmax + cross-entropy, AdamW, sum of squares and scale. Matmuls live in
// matmul_cuda.cu (cuBLASLt), attention in kernels/attention/flash_cuda.cu.
//
// Conventions of kernels/ops.h hold here too: every backward accumulates (+=), and every
// floating-point reduction runs in a fixed order (per-block partials in fixed slots, then a
// second pass), never through floating-point atomics, so runs repeat to the bit.
// Shapes: B batch, T sequence, C channels, N = B*T rows, V vocabulary, Vp padded vocabulary.
//
// The kernels that touch activations are templates on their element type T (float, or bf16
// for the mixed-precision table); the launchers take the op table's float pointers and cast
// them to T (kernels/ops.h says which pointers hold bf16 in a bf16 table). Arithmetic is
// fp32 either way, so the float instances are the fp32 backend unchanged.
#include "kernels/cuda/cuda_common.cuh"

#include <math.h>
#include <string.h>

extern "C" {
#include "kernels/attention/flash_cuda.h"
#include "kernels/cuda/cuda.h"
}

// ----------------------------------------------------------------------------
// device discovery, memory, scratch

static int g_available = -1;  // -1 not yet probed
static char g_reason[512];

extern "C" int pb_cuda_available(void) {
    if (g_available >= 0) return g_available;
    g_available = 0;
    int n = 0;
    // With no driver (libcuda.so absent: CI) the static runtime reports an error here
    // rather than crashing; that is the whole point of probing before anything else.
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        if (err == cudaErrorInsufficientDriver)
            snprintf(g_reason, sizeof g_reason, "no CUDA driver, or one older than CUDA %d.%d",
                     CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        else if (err == cudaErrorNoDevice)
            snprintf(g_reason, sizeof g_reason, "no CUDA device");
        else
            snprintf(g_reason, sizeof g_reason, "cudaGetDeviceCount failed: %s",
                     cudaGetErrorString(err));
        (void)cudaGetLastError();
        return 0;
    }
    if (n == 0) {
        snprintf(g_reason, sizeof g_reason, "no CUDA device");
        return 0;
    }
    cudaDeviceProp p;
    err = cudaGetDeviceProperties(&p, 0);
    if (err != cudaSuccess) {
        snprintf(g_reason, sizeof g_reason, "cannot query CUDA device 0 (%s)",
                 cudaGetErrorString(err));
        (void)cudaGetLastError();
        return 0;
    }
    // The kernels are compiled for sm_90a only (see the Makefile): other GPUs cannot run them.
    if (p.major != 9) {
        snprintf(g_reason, sizeof g_reason,
                 "CUDA device 0 (%s) has compute capability %d.%d; pebble's kernels are built "
                 "for 9.0 (Hopper)", p.name, p.major, p.minor);
        return 0;
    }
    g_available = 1;
    return 1;
}

extern "C" const char *pb_cuda_unavailable_reason(void) {
    pb_cuda_available();
    return g_available ? "" : g_reason;
}

extern "C" size_t pb_cuda_mem_used(void) {
    if (!pb_cuda_available()) return 0;
    size_t free_b = 0, total_b = 0;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    return total_b - free_b;
}

extern "C" void pb_cuda_sync(void) {
    if (pb_cuda_available()) cudaCheck(cudaDeviceSynchronize());
}

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 256);
    if (err != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        pb_die(PB_EXIT_RUNTIME, "out of GPU memory allocating %zu bytes (%zu of %zu free): %s",
               bytes, free_b, total_b, cudaGetErrorString(err));
    }
    cudaCheck(cudaMemset(p, 0, bytes ? bytes : 256));  // the contract: zeroed
    return p;
}

static void cuda_free(void *p) {
    if (p) cudaCheck(cudaFree(p));
}

static void cuda_upload(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

static void cuda_download(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

static void cuda_zero(void *p, size_t bytes) { cudaCheck(cudaMemset(p, 0, bytes)); }

static void *g_scratch[CUDA_SCRATCH_COUNT];
static size_t g_scratch_bytes[CUDA_SCRATCH_COUNT];

void *cuda_scratch(int slot, size_t bytes) {
    PB_ASSERT(slot >= 0 && slot < CUDA_SCRATCH_COUNT);
    if (bytes > g_scratch_bytes[slot]) {
        // Freeing synchronises with the queued work that may still read the old buffer.
        cuda_free(g_scratch[slot]);
        g_scratch[slot] = cuda_alloc(bytes);
        g_scratch_bytes[slot] = bytes;
    }
    return g_scratch[slot];
}

// ----------------------------------------------------------------------------
// 128-bit access helpers: 4 consecutive floats at p[i..i+3], one float4 when vec (all the
// kernel's pointers 16-byte aligned and i+4 <= n), else element by element up to n.

static bool aligned16(const void *p) { return p == NULL || ((uintptr_t)p & 15u) == 0; }

__device__ __forceinline__ void ld4(float v[4], const float *p, size_t i, size_t n, bool vec) {
    if (vec && i + 4 <= n) {
        float4 t = *reinterpret_cast<const float4 *>(p + i);
        v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) v[k] = i + k < n ? p[i + k] : 0.0f;
    }
}

__device__ __forceinline__ void st4(float *p, const float v[4], size_t i, size_t n, bool vec) {
    if (vec && i + 4 <= n) {
        *reinterpret_cast<float4 *>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (i + k < n) p[i + k] = v[k];
    }
}

// bf16: 4 elements are 8 bytes (one uint2 when vec)
__device__ __forceinline__ void ld4(float v[4], const bf16 *p, size_t i, size_t n, bool vec) {
    if (vec && i + 4 <= n) {
        uint2 t = *reinterpret_cast<const uint2 *>(p + i);
        float2 a = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&t.x));
        float2 b = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&t.y));
        v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) v[k] = i + k < n ? __bfloat162float(p[i + k]) : 0.0f;
    }
}

__device__ __forceinline__ void st4(bf16 *p, const float v[4], size_t i, size_t n, bool vec) {
    if (vec && i + 4 <= n) {
        __nv_bfloat162 a = __floats2bfloat162_rn(v[0], v[1]), b = __floats2bfloat162_rn(v[2], v[3]);
        uint2 t;
        t.x = *reinterpret_cast<uint32_t *>(&a);
        t.y = *reinterpret_cast<uint32_t *>(&b);
        *reinterpret_cast<uint2 *>(p + i) = t;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (i + k < n) p[i + k] = __float2bfloat16_rn(v[k]);
    }
}

#define EW_THREADS 256
// Grid for elementwise kernels: one thread per 4 elements.
static unsigned ew_blocks(size_t n) { return cdiv(cdiv(n, 4), EW_THREADS); }
__device__ __forceinline__ size_t ew_index(void) {
    return ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
}

// ----------------------------------------------------------------------------
// column sums: dst0 (C0) += and dst1 (C - C0) += the column sums of x (R,C), in two passes
// with a fixed order: partial sums of fixed row chunks, then the chunks in order.

// partial (nchunk, C): partial[k][c] = sum of x[r][c] over the k-th chunk of rows
template <typename T>
__global__ void colsum_partial_kernel(float *partial, const T *x, int R, int C, int rows) {
    int c = blockIdx.x * blockDim.x + threadIdx.x, k = blockIdx.y;
    if (c >= C) return;
    int r0 = k * rows, r1 = min(R, r0 + rows);
    float s = 0.0f;
    for (int r = r0; r < r1; r++) s += to_f(x[(size_t)r * C + c]);
    partial[(size_t)k * C + c] = s;
}

// A block of COLSUM_WARPS warps owns 32 columns (lane = column: 128-byte coalesced rows);
// warp w sums the chunks k = w, w + COLSUM_WARPS, ... in order, then the block adds the
// warps' sums in order. (One thread per column walking all chunks serially was latency-bound:
// ~50 us for 512 chunks, 25 LayerNorm and 49 bias gradients a step.)
#define COLSUM_WARPS 8
__global__ void colsum_final_kernel(float *dst0, float *dst1, const float *partial, int nchunk,
                                    int C, int C0) {
    __shared__ float sh[COLSUM_WARPS][32];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, c = blockIdx.x * 32 + lane;
    float s = 0.0f;
    if (c < C)
#pragma unroll 8
        for (int k = warp; k < nchunk; k += COLSUM_WARPS) s += partial[(size_t)k * C + c];
    sh[warp][lane] = s;
    __syncthreads();
    if (warp != 0 || c >= C) return;
    s = sh[0][lane];
    for (int w = 1; w < COLSUM_WARPS; w++) s += sh[w][lane];
    if (c < C0) dst0[c] += s;
    else dst1[c - C0] += s;
}
static void colsum_final(float *dst0, float *dst1, const float *partial, int nchunk, int C,
                         int C0) {
    colsum_final_kernel<<<cdiv(C, 32), 32 * COLSUM_WARPS>>>(dst0, dst1, partial, nchunk, C, C0);
    cudaCheckLaunch();
}

template <typename T> void cuda_colsum_accumulate(float *dst, const T *x, int N, int C) {
    // The chunking depends on N only, so the summation order, hence the bits, are fixed.
    int nchunk = (int)cdiv((size_t)N, 64);
    if (nchunk > 256) nchunk = 256;
    int rows = (int)cdiv((size_t)N, (size_t)nchunk);
    nchunk = (int)cdiv((size_t)N, (size_t)rows);
    float *partial = (float *)cuda_scratch(CUDA_SCRATCH_PARTIAL, (size_t)nchunk * C * sizeof(float));
    colsum_partial_kernel<<<dim3(cdiv(C, 256), nchunk), 256>>>(partial, x, N, C, rows);
    cudaCheckLaunch();
    colsum_final(dst, NULL, partial, nchunk, C, C);
}
template void cuda_colsum_accumulate<float>(float *, const float *, int, int);
template void cuda_colsum_accumulate<bf16>(float *, const bf16 *, int, int);

// ----------------------------------------------------------------------------
// encoder: out (B,T,C) = wte[inp] + wpe[t]

template <typename A>
__global__ void encoder_forward_kernel(A *out, const int32_t *inp, const A *wte, const A *wpe,
                                       int T, int C, size_t total, bool vec) {
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
        st4(out, a, i, total, true);
    } else {
        for (size_t j = i; j < i + 4 && j < total; j++) {
            size_t n = j / C;
            int c = (int)(j % C), t = (int)(n % T);
            out[j] = from_f<A>(to_f(wte[(size_t)inp[n] * C + c]) + to_f(wpe[(size_t)t * C + c]));
        }
    }
}

template <typename A>
static void cuda_encoder_forward(float *out, const int32_t *inp, const float *wte,
                                 const float *wpe, int B, int T, int C) {
    size_t total = (size_t)B * T * C;
    bool vec = C % 4 == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe);
    encoder_forward_kernel<A><<<ew_blocks(total), EW_THREADS>>>(
        (A *)out, inp, (const A *)wte, (const A *)wpe, T, C, total, vec);
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
static void cuda_encoder_backward(float *dwte, float *dwpe, const float *dout_,
                                  const int32_t *inp, int B, int T, int C) {
    int N = B * T;
    size_t TC = (size_t)T * C;
    const A *dout = (const A *)dout_;
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

// ----------------------------------------------------------------------------
// LayerNorm: one warp per row of C; statistics in two passes over the row (mean, then the
// mean of squared deviations), as the CPU reference computes them.

// 8 consecutive elements (16-byte aligned) held as loaded: one uint4 in bf16, two in fp32; to
// floats (to_f8) and back (st8).
template <typename A> struct Raw8 {
    uint4 u[sizeof(A) / 2];
};
template <typename A> __device__ __forceinline__ Raw8<A> ld8(const A *p) {
    Raw8<A> r;
#pragma unroll
    for (int i = 0; i < (int)(sizeof(A) / 2); i++) r.u[i] = reinterpret_cast<const uint4 *>(p)[i];
    return r;
}
__device__ __forceinline__ void to_f8(float v[8], const Raw8<float> &r) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        v[4 * i] = __uint_as_float(r.u[i].x), v[4 * i + 1] = __uint_as_float(r.u[i].y);
        v[4 * i + 2] = __uint_as_float(r.u[i].z), v[4 * i + 3] = __uint_as_float(r.u[i].w);
    }
}
__device__ __forceinline__ void to_f8(float v[8], const Raw8<bf16> &r) {
    const uint32_t u[4] = {r.u[0].x, r.u[0].y, r.u[0].z, r.u[0].w};
#pragma unroll
    for (int k = 0; k < 4; k++) {  // a bf16 is the top half of its float
        v[2 * k] = __uint_as_float(u[k] << 16), v[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
    }
}
// floats to the element type (bf16: round to nearest even), and a 16-byte aligned store
template <typename A> __device__ __forceinline__ Raw8<A> to_raw8(const float v[8]);
template <> __device__ __forceinline__ Raw8<float> to_raw8<float>(const float v[8]) {
    Raw8<float> r;
    r.u[0] = make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]),
                        __float_as_uint(v[3]));
    r.u[1] = make_uint4(__float_as_uint(v[4]), __float_as_uint(v[5]), __float_as_uint(v[6]),
                        __float_as_uint(v[7]));
    return r;
}
template <> __device__ __forceinline__ Raw8<bf16> to_raw8<bf16>(const float v[8]) {
    Raw8<bf16> r;
    uint32_t *u = reinterpret_cast<uint32_t *>(&r.u[0]);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
        u[k] = *reinterpret_cast<uint32_t *>(&h);
    }
    return r;
}
template <typename A> __device__ __forceinline__ void st_raw8(A *p, const Raw8<A> &r) {
#pragma unroll
    for (int i = 0; i < (int)(sizeof(A) / 2); i++) reinterpret_cast<uint4 *>(p)[i] = r.u[i];
}
template <typename A> __device__ __forceinline__ void st8(A *p, const float v[8]) {
    st_raw8(p, to_raw8<A>(v));
}

#define LN_EPS 1e-5f
#define LN_WARPS 4

template <typename A>
__global__ void layernorm_forward_kernel(A *out, float *mean, float *rstd, const A *inp,
                                         const A *weight, const A *bias, int N, int C,
                                         bool vec) {
    int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const A *x = inp + (size_t)row * C;
    float v[4], s = 0.0f;
    for (int c = lane * 4; c < C; c += 128) {
        ld4(v, x, c, C, vec);
        s += (v[0] + v[1]) + (v[2] + v[3]);
    }
    float m = warp_sum(s) / C;
    s = 0.0f;
    for (int c = lane * 4; c < C; c += 128) {
        ld4(v, x, c, C, vec);
        for (int k = 0; k < 4; k++) {
            float d = c + k < C ? v[k] - m : 0.0f;
            s += d * d;
        }
    }
    float r = rsqrtf(warp_sum(s) / C + LN_EPS);
    float w[4], b[4], o[4];
    A *y = out + (size_t)row * C;
    for (int c = lane * 4; c < C; c += 128) {
        ld4(v, x, c, C, vec);
        ld4(w, weight, c, C, vec);
        ld4(b, bias, c, C, vec);
        for (int k = 0; k < 4; k++) o[k] = (v[k] - m) * r * w[k] + b[k];
        st4(y, o, c, C, vec);
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

// The same for rows whose C is a multiple of 8 and at most 256 NCH, everything 16-byte
// aligned: the row is read once into registers (lane l holds the 8-column chunks l, l + 32,
// ...) and both statistics and the output come from there. Same two-pass statistics.
// RES: the row is first res = inp + inp2, rounded to A and stored, as residual_forward then
// layernorm_forward would compute it (the same bits), without reading res back.
template <typename A, int NCH, bool RES>
__global__ void layernorm_forward_reg_kernel(A *out, float *mean, float *rstd, const A *inp,
                                             const A *inp2, A *res, const A *weight,
                                             const A *bias, int N, int C) {
    int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const A *x = inp + (size_t)row * C;
    Raw8<A> xr[NCH];
#pragma unroll
    for (int j = 0; j < NCH; j++) {
        int c = (j * 32 + lane) * 8;
        if (c >= C) continue;
        xr[j] = ld8(x + c);
        if (RES) {
            float u[8], w[8];
            to_f8(u, xr[j]), to_f8(w, ld8(inp2 + (size_t)row * C + c));
#pragma unroll
            for (int k = 0; k < 8; k++) u[k] += w[k];
            xr[j] = to_raw8<A>(u);
            st_raw8(res + (size_t)row * C + c, xr[j]);
        }
    }
    float v[8], s = 0.0f;
#pragma unroll
    for (int j = 0; j < NCH; j++) {
        if ((j * 32 + lane) * 8 >= C) continue;
        to_f8(v, xr[j]);
        s += ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
    }
    float m = warp_sum(s) / C;
    s = 0.0f;
#pragma unroll
    for (int j = 0; j < NCH; j++) {
        if ((j * 32 + lane) * 8 >= C) continue;
        to_f8(v, xr[j]);
#pragma unroll
        for (int k = 0; k < 8; k++) s += (v[k] - m) * (v[k] - m);
    }
    float r = rsqrtf(warp_sum(s) / C + LN_EPS);
    A *y = out + (size_t)row * C;
#pragma unroll
    for (int j = 0; j < NCH; j++) {
        int c = (j * 32 + lane) * 8;
        if (c >= C) continue;
        float w[8], b[8];
        to_f8(v, xr[j]), to_f8(w, ld8(weight + c)), to_f8(b, ld8(bias + c));
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = (v[k] - m) * r * w[k] + b[k];
        st8(y + c, v);
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

template <typename A>
static void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                   const float *weight, const float *bias, int N, int C) {
    bool vec = C % 4 == 0 && aligned16(out) && aligned16(inp) && aligned16(weight) &&
               aligned16(bias);
    int nch = C % 8 == 0 && vec ? (int)cdiv((size_t)C, 256) : 0;  // chunks of 8 per lane
#define LN_FWD_REG(K)                                                                          \
    case K:                                                                                    \
        layernorm_forward_reg_kernel<A, K, false><<<cdiv(N, LN_WARPS), 32 * LN_WARPS>>>(       \
            (A *)out, mean, rstd, (const A *)inp, NULL, NULL, (const A *)weight,               \
            (const A *)bias, N, C);                                                            \
        break;
    switch (nch) {
        LN_FWD_REG(1)
        LN_FWD_REG(2)
        LN_FWD_REG(3)
        LN_FWD_REG(4)
    default:  // C not a multiple of 8, unaligned, or wider than 1024
        layernorm_forward_kernel<A><<<cdiv(N, LN_WARPS), 32 * LN_WARPS>>>(
            (A *)out, mean, rstd, (const A *)inp, (const A *)weight, (const A *)bias, N, C, vec);
    }
#undef LN_FWD_REG
    cudaCheckLaunch();
}

// After every warp of the block wrote its sums into sh [LN_WARPS][n]: the block's sum, warp
// by warp in order, into its row of partial (gridDim.x, n).
__device__ __forceinline__ void block_partials(float *partial, const float *sh, int n) {
    __syncthreads();
    float *dst = partial + (size_t)blockIdx.x * n;
    for (int c = threadIdx.x; c < n; c += blockDim.x) {
        float s = 0.0f;
        for (int w = 0; w < LN_WARPS; w++) s += sh[(size_t)w * n + c];
        dst[c] = s;
    }
}

// dinp (N,C) += the input gradient; each block also writes its partial dweight and dbias
// sums, partial (gridDim.x, 2C): [dweight (C) | dbias (C)]. Block k owns rows
// [k*rows, (k+1)*rows); its warps take rows in turn, each warp summing its own copy of the
// partials in shared memory, which the block then adds up warp by warp in order.
template <typename A>
__global__ void layernorm_backward_kernel(A *dinp, float *partial, const A *dout, const A *inp,
                                          const A *weight, const float *mean, const float *rstd,
                                          int N, int C, int rows, bool vec) {
    extern __shared__ float sh[];  // [LN_WARPS][2C]
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float *wdw = sh + (size_t)warp * 2 * C, *wdb = wdw + C;
    for (int c = lane; c < 2 * C; c += 32) wdw[c] = 0.0f;
    __syncwarp();
    int r0 = blockIdx.x * rows, r1 = min(N, r0 + rows);
    for (int row = r0 + warp; row < r1; row += LN_WARPS) {
        const A *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
        float m = mean[row], r = rstd[row];
        float xv[4], gv[4], wv[4], s1 = 0.0f, s2 = 0.0f;
        for (int c = lane * 4; c < C; c += 128) {
            ld4(xv, x, c, C, vec);
            ld4(gv, dy, c, C, vec);
            ld4(wv, weight, c, C, vec);
            for (int k = 0; k < 4; k++) {
                if (c + k >= C) break;
                float nrm = (xv[k] - m) * r, dn = wv[k] * gv[k];
                s1 += dn;
                s2 += dn * nrm;
                wdw[c + k] += gv[k] * nrm;  // this lane alone touches column c+k of its warp
                wdb[c + k] += gv[k];
            }
        }
        s1 = warp_sum(s1) / C;  // mean of dnorm
        s2 = warp_sum(s2) / C;  // mean of dnorm * norm
        A *dx = dinp + (size_t)row * C;
        float o[4];
        for (int c = lane * 4; c < C; c += 128) {
            ld4(xv, x, c, C, vec);
            ld4(gv, dy, c, C, vec);
            ld4(wv, weight, c, C, vec);
            ld4(o, dx, c, C, vec);
            for (int k = 0; k < 4; k++) {
                float nrm = (xv[k] - m) * r, dn = wv[k] * gv[k];
                o[k] += (dn - s1 - nrm * s2) * r;
            }
            st4(dx, o, c, C, vec);
        }
    }
    block_partials(partial, sh, 2 * C);
}

// The same contract and block partition for rows whose C is a multiple of 8 and at most
// 256 NCH, everything 16-byte aligned: lane l owns the 8-column chunks l, l + 32, ... (NCH
// of them), so a warp reads each row of x and dout once, keeping it in registers as loaded
// for the second pass, and the lane keeps its columns' dweight and dbias sums in registers
// across its rows (rows in the same order as above: the same additions per column), writing
// them to shared memory once.
template <typename A, int NCH>
__global__ void layernorm_backward_reg_kernel(A *dinp, float *partial, const A *dout,
                                              const A *inp, const A *weight, const float *mean,
                                              const float *rstd, int N, int C, int rows) {
    extern __shared__ float sh[];  // [LN_WARPS][2C]
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    Raw8<A> wr[NCH], xr[NCH], gr[NCH];
    float dw[NCH][8], db[NCH][8];
#pragma unroll
    for (int j = 0; j < NCH; j++) {
        int c = (j * 32 + lane) * 8;
        if (c < C) wr[j] = ld8(weight + c);
#pragma unroll
        for (int k = 0; k < 8; k++) dw[j][k] = db[j][k] = 0.0f;
    }
    int r0 = blockIdx.x * rows, r1 = min(N, r0 + rows);
    for (int row = r0 + warp; row < r1; row += LN_WARPS) {
        const A *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
        float m = mean[row], r = rstd[row], s1 = 0.0f, s2 = 0.0f;
#pragma unroll
        for (int j = 0; j < NCH; j++) {
            int c = (j * 32 + lane) * 8;
            if (c < C) xr[j] = ld8(x + c), gr[j] = ld8(dy + c);
        }
#pragma unroll
        for (int j = 0; j < NCH; j++) {
            if ((j * 32 + lane) * 8 >= C) continue;
            float xv[8], gv[8], wv[8];
            to_f8(xv, xr[j]), to_f8(gv, gr[j]), to_f8(wv, wr[j]);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float nrm = (xv[k] - m) * r, dn = wv[k] * gv[k];
                s1 += dn;
                s2 += dn * nrm;
                dw[j][k] += gv[k] * nrm;
                db[j][k] += gv[k];
            }
        }
        s1 = warp_sum(s1) / C;
        s2 = warp_sum(s2) / C;
        A *dx = dinp + (size_t)row * C;
#pragma unroll
        for (int j = 0; j < NCH; j++) {
            int c = (j * 32 + lane) * 8;
            if (c >= C) continue;
            float xv[8], gv[8], wv[8], o[8];
            to_f8(xv, xr[j]), to_f8(gv, gr[j]), to_f8(wv, wr[j]), to_f8(o, ld8(dx + c));
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float nrm = (xv[k] - m) * r, dn = wv[k] * gv[k];
                o[k] += (dn - s1 - nrm * s2) * r;
            }
            st8(dx + c, o);
        }
    }
    float *wdw = sh + (size_t)warp * 2 * C, *wdb = wdw + C;
#pragma unroll
    for (int j = 0; j < NCH; j++) {
        int c = (j * 32 + lane) * 8;
        if (c >= C) continue;
#pragma unroll
        for (int k = 0; k < 8; k++) wdw[c + k] = dw[j][k], wdb[c + k] = db[j][k];
    }
    block_partials(partial, sh, 2 * C);
}

template <typename A>
static void cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                    const float *inp, const float *weight, const float *mean,
                                    const float *rstd, int N, int C) {
    // Blocks and rows per block depend on N only: the summation order is fixed.
    int nblocks = (int)cdiv((size_t)N, 2 * LN_WARPS);
    if (nblocks > 1024) nblocks = 1024;
    int rows = (int)cdiv((size_t)N, (size_t)nblocks);
    nblocks = (int)cdiv((size_t)N, (size_t)rows);
    size_t smem = (size_t)LN_WARPS * 2 * C * sizeof(float);
    if (smem > 48 * 1024) {
        if (smem > 200 * 1024)
            pb_die(PB_EXIT_RUNTIME, "layernorm_backward: C = %d is too wide for the CUDA kernel", C);
        cudaCheck(cudaFuncSetAttribute(layernorm_backward_kernel<A>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    }
    float *partial = (float *)cuda_scratch(CUDA_SCRATCH_PARTIAL,
                                           (size_t)nblocks * 2 * C * sizeof(float));
    bool vec = C % 4 == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp) &&
               aligned16(weight);
    int nch = C % 8 == 0 && vec ? (int)cdiv((size_t)C, 256) : 0;  // chunks of 8 per lane
#define LN_BWD_REG(K)                                                                          \
    case K:                                                                                    \
        if (smem > 48 * 1024)                                                                  \
            cudaCheck(cudaFuncSetAttribute(layernorm_backward_reg_kernel<A, K>,                \
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,        \
                                           (int)smem));                                        \
        layernorm_backward_reg_kernel<A, K><<<nblocks, 32 * LN_WARPS, smem>>>(                 \
            (A *)dinp, partial, (const A *)dout, (const A *)inp, (const A *)weight, mean,      \
            rstd, N, C, rows);                                                                 \
        break;
    switch (nch) {
        LN_BWD_REG(1)
        LN_BWD_REG(2)
        LN_BWD_REG(3)
        LN_BWD_REG(4)
    default:  // C not a multiple of 8, unaligned, or wider than 1024
        layernorm_backward_kernel<A><<<nblocks, 32 * LN_WARPS, smem>>>(
            (A *)dinp, partial, (const A *)dout, (const A *)inp, (const A *)weight, mean, rstd,
            N, C, rows, vec);
    }
#undef LN_BWD_REG
    cudaCheckLaunch();
    colsum_final(dweight, dbias, partial, nblocks, 2 * C, C);
}

// ----------------------------------------------------------------------------
// GELU (tanh approximation) and residual add, elementwise

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

__device__ __forceinline__ float gelu(float x) {
    float u = GELU_K * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

__device__ __forceinline__ float gelu_grad(float x) {
    float u = GELU_K * (x + 0.044715f * x * x * x), th = tanhf(u);
    float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

template <typename A>
__global__ void gelu_forward_kernel(A *out, const A *inp, size_t n, bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float v[4];
    ld4(v, inp, i, n, vec);
    for (int k = 0; k < 4; k++) v[k] = gelu(v[k]);
    st4(out, v, i, n, vec);
}

template <typename A>
__global__ void gelu_backward_kernel(A *dinp, const A *inp, const A *dout, size_t n, bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float x[4], g[4], d[4];
    ld4(x, inp, i, n, vec);
    ld4(g, dout, i, n, vec);
    ld4(d, dinp, i, n, vec);
    for (int k = 0; k < 4; k++) d[k] += g[k] * gelu_grad(x[k]);
    st4(dinp, d, i, n, vec);
}

template <typename A>
static void cuda_gelu_forward(float *out, const float *inp, size_t n) {
    if (!n) return;
    gelu_forward_kernel<A><<<ew_blocks(n), EW_THREADS>>>((A *)out, (const A *)inp, n,
                                                         aligned16(out) && aligned16(inp));
    cudaCheckLaunch();
}

template <typename A>
static void cuda_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    if (!n) return;
    bool vec = aligned16(dinp) && aligned16(inp) && aligned16(dout);
    gelu_backward_kernel<A><<<ew_blocks(n), EW_THREADS>>>((A *)dinp, (const A *)inp,
                                                          (const A *)dout, n, vec);
    cudaCheckLaunch();
}

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
__global__ void residual_backward_kernel(A *da, A *db, const A *dout, size_t n, bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float g[4], x[4], y[4];
    ld4(g, dout, i, n, vec);
    ld4(x, da, i, n, vec);
    ld4(y, db, i, n, vec);
    for (int k = 0; k < 4; k++) x[k] += g[k], y[k] += g[k];
    st4(da, x, i, n, vec);
    st4(db, y, i, n, vec);
}

template <typename A>
static void cuda_residual_forward(float *out, const float *a, const float *b, size_t n) {
    if (!n) return;
    bool vec = aligned16(out) && aligned16(a) && aligned16(b);
    residual_forward_kernel<A><<<ew_blocks(n), EW_THREADS>>>((A *)out, (const A *)a,
                                                             (const A *)b, n, vec);
    cudaCheckLaunch();
}

// res = a + b, then out = layernorm(res): one read of a and b, res written once (the
// optional residual_layernorm_forward); the two ops in turn where the row kernel does not fit.
template <typename A>
static void cuda_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                            const float *a, const float *b, const float *weight,
                                            const float *bias, int N, int C) {
    bool vec = C % 8 == 0 && aligned16(res) && aligned16(out) && aligned16(a) &&
               aligned16(b) && aligned16(weight) && aligned16(bias);
    int nch = vec ? (int)cdiv((size_t)C, 256) : 0;
#define LN_RES_REG(K)                                                                          \
    case K:                                                                                    \
        layernorm_forward_reg_kernel<A, K, true><<<cdiv(N, LN_WARPS), 32 * LN_WARPS>>>(        \
            (A *)out, mean, rstd, (const A *)a, (const A *)b, (A *)res, (const A *)weight,     \
            (const A *)bias, N, C);                                                            \
        cudaCheckLaunch();                                                                     \
        return;
    switch (nch) {
        LN_RES_REG(1)
        LN_RES_REG(2)
        LN_RES_REG(3)
        LN_RES_REG(4)
    }
#undef LN_RES_REG
    cuda_residual_forward<A>(res, a, b, (size_t)N * C);
    cuda_layernorm_forward<A>(out, mean, rstd, res, weight, bias, N, C);
}

template <typename A>
static void cuda_residual_backward(float *da, float *db, const float *dout, size_t n) {
    if (!n) return;
    bool vec = aligned16(da) && aligned16(db) && aligned16(dout);
    residual_backward_kernel<A><<<ew_blocks(n), EW_THREADS>>>((A *)da, (A *)db,
                                                              (const A *)dout, n, vec);
    cudaCheckLaunch();
}

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
static void cuda_crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
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
static void cuda_crossentropy_backward(float *dlogits, const float *logits,
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
// AdamW, sum of squares, scale

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

static void cuda_adamw_update(float *param, const float *grad, float *m, float *v,
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

static double cuda_sumsq(const float *x, size_t n) {
    double *partial = (double *)cuda_scratch(CUDA_SCRATCH_PARTIAL, (SUMSQ_BLOCKS + 1) * sizeof(double));
    sumsq_partial_kernel<<<SUMSQ_BLOCKS, SUMSQ_THREADS>>>(partial, x, n);
    cudaCheckLaunch();
    sumsq_final_kernel<<<1, SUMSQ_THREADS>>>(partial, SUMSQ_BLOCKS);
    cudaCheckLaunch();
    double s = 0.0;
    cudaCheck(cudaMemcpy(&s, partial + SUMSQ_BLOCKS, sizeof s, cudaMemcpyDeviceToHost));
    return s;
}

__global__ void scale_kernel(float *x, float s, size_t n, bool vec) {
    size_t i = ew_index();
    if (i >= n) return;
    float v[4];
    ld4(v, x, i, n, vec);
    for (int k = 0; k < 4; k++) v[k] *= s;
    st4(x, v, i, n, vec);
}

static void cuda_scale(float *x, float s, size_t n) {
    if (!n) return;
    scale_kernel<<<ew_blocks(n), EW_THREADS>>>(x, s, n, aligned16(x));
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// attention: the exact fp32 kernel, or the bf16 tensor-core one when switched on

static int g_attn_bf16;

extern "C" void pb_cuda_set_attention_bf16(int on) { g_attn_bf16 = on != 0; }

static void cuda_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C,
                                   int NH, int causal) {
    if (g_attn_bf16 && attn_flash_mma_cuda_supports(C, NH))
        attn_flash_mma_cuda_forward(out, lse, qkv, B, T, C, NH, causal);
    else
        attn_flash_cuda_forward(out, lse, qkv, B, T, C, NH, causal);
}

static void cuda_attention_backward(float *dqkv, const float *dout, const float *out,
                                    const float *lse, const float *qkv, int B, int T, int C,
                                    int NH, int causal) {
    if (g_attn_bf16 && attn_flash_mma_cuda_supports(C, NH))
        attn_flash_mma_cuda_backward(dqkv, dout, out, lse, qkv, B, T, C, NH, causal);
    else
        attn_flash_cuda_backward(dqkv, dout, out, lse, qkv, B, T, C, NH, causal);
}

// The bf16 table: tensor-core attention on bf16 tensors, nothing converted around it.
static void bf16_attention_check(int C, int NH) {
    if (!attn_flash_mma_cuda_supports(C, NH))
        pb_die(PB_EXIT_USAGE, "bf16 attention runs head dims 64 and 128; this model has %d "
               "(n_embd %d / n_head %d): use system.precision = fp32", NH ? C / NH : 0, C, NH);
}

static int g_attn_wgmma = 1;

extern "C" void pb_cuda_set_attention_wgmma(int on) { g_attn_wgmma = on != 0; }

static void cuda_attention_forward_bf16(float *out, float *lse, const float *qkv, int B, int T,
                                        int C, int NH, int causal) {
    bf16_attention_check(C, NH);
    if (g_attn_wgmma) attn_flash_wgmma_cuda_forward_bf16(out, lse, qkv, B, T, C, NH, causal);
    else attn_flash_mma_cuda_forward_bf16(out, lse, qkv, B, T, C, NH, causal);
}

static void cuda_attention_backward_bf16(float *dqkv, const float *dout, const float *out,
                                         const float *lse, const float *qkv, int B, int T,
                                         int C, int NH, int causal) {
    bf16_attention_check(C, NH);
    if (g_attn_wgmma) attn_flash_wgmma_cuda_backward_bf16(dqkv, dout, out, lse, qkv, B, T, C, NH, causal);
    else attn_flash_mma_cuda_backward_bf16(dqkv, dout, out, lse, qkv, B, T, C, NH, causal);
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

static void cuda_params_to_bf16(float *dst, const float *src, size_t n, uint64_t seed) {
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

static void cuda_matmul_gelu_forward_bf16_op(float *out, float *pre, const float *inp,
                                             const float *weight, const float *bias, int N,
                                             int IC, int OC) {
    if (cuda_matmul_gelu_forward_bf16(out, pre, inp, weight, bias, N, IC, OC)) return;
    gelu_fallback_note("forward");
    cuda_matmul_forward_bf16(pre, inp, weight, bias, N, IC, OC);
    cuda_gelu_forward<bf16>(out, pre, (size_t)N * OC);
}

static void cuda_matmul_backward_gelu_bf16_op(float *dpre, float *dweight, float *dbias,
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
    cuda_gelu_backward<bf16>(dpre, pre, t, n);
}

// ----------------------------------------------------------------------------
// the table

static const pb_ops g_cuda_ops = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .zero = cuda_zero,
    .encoder_forward = cuda_encoder_forward<float>,
    .encoder_backward = cuda_encoder_backward<float>,
    .layernorm_forward = cuda_layernorm_forward<float>,
    .layernorm_backward = cuda_layernorm_backward<float>,
    .matmul_forward = cuda_matmul_forward,
    .matmul_backward = cuda_matmul_backward,
    .attention_forward = cuda_attention_forward,
    .attention_backward = cuda_attention_backward,
    .gelu_forward = cuda_gelu_forward<float>,
    .gelu_backward = cuda_gelu_backward<float>,
    .residual_forward = cuda_residual_forward<float>,
    .residual_backward = cuda_residual_backward<float>,
    .crossentropy_forward = cuda_crossentropy_forward<float>,
    .crossentropy_backward = cuda_crossentropy_backward<float>,
    .adamw_update = cuda_adamw_update,
    .sumsq = cuda_sumsq,
    .scale = cuda_scale,
    .act_dtype = PB_DTYPE_FP32,
    .params_to_act = NULL,
    .matmul_gelu_forward = NULL,
    .matmul_backward_gelu = NULL,
    .residual_layernorm_forward = cuda_residual_layernorm_forward<float>,
};

// Mixed precision: bf16 activations and weights, fp32 parameter gradients and optimizer
// (the same fp32 AdamW, sumsq and scale: they only see fp32 buffers).
static const pb_ops g_cuda_bf16_ops = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .zero = cuda_zero,
    .encoder_forward = cuda_encoder_forward<bf16>,
    .encoder_backward = cuda_encoder_backward<bf16>,
    .layernorm_forward = cuda_layernorm_forward<bf16>,
    .layernorm_backward = cuda_layernorm_backward<bf16>,
    .matmul_forward = cuda_matmul_forward_bf16,
    .matmul_backward = cuda_matmul_backward_bf16,
    .attention_forward = cuda_attention_forward_bf16,
    .attention_backward = cuda_attention_backward_bf16,
    .gelu_forward = cuda_gelu_forward<bf16>,
    .gelu_backward = cuda_gelu_backward<bf16>,
    .residual_forward = cuda_residual_forward<bf16>,
    .residual_backward = cuda_residual_backward<bf16>,
    .crossentropy_forward = cuda_crossentropy_forward<bf16>,
    .crossentropy_backward = cuda_crossentropy_backward<bf16>,
    .adamw_update = cuda_adamw_update,
    .sumsq = cuda_sumsq,
    .scale = cuda_scale,
    .act_dtype = PB_DTYPE_BF16,
    .params_to_act = cuda_params_to_bf16,
    .matmul_gelu_forward = cuda_matmul_gelu_forward_bf16_op,
    .matmul_backward_gelu = cuda_matmul_backward_gelu_bf16_op,
    .residual_layernorm_forward = cuda_residual_layernorm_forward<bf16>,
};

extern "C" void pb_cuda_set_tf32(int on) { cuda_matmul_set_tf32(on); }

static void cuda_init(void) {
    static int initialised = 0;
    if (!pb_cuda_available())
        pb_die(PB_EXIT_RUNTIME, "no CUDA device is available: %s", g_reason);
    if (!initialised) {
        cudaCheck(cudaSetDevice(0));
        cuda_matmul_init();
        const char *tf32 = getenv("PEBBLE_TF32");
        if (tf32 && strcmp(tf32, "1") == 0) cuda_matmul_set_tf32(1);
        const char *abf16 = getenv("PEBBLE_ATTN_BF16");
        if (abf16 && strcmp(abf16, "1") == 0) g_attn_bf16 = 1;
        initialised = 1;
    }
}

extern "C" const pb_ops *pb_ops_cuda(void) {
    cuda_init();
    return &g_cuda_ops;
}

extern "C" int pb_cuda_bf16_supports(int n_embd, int n_head) {
    return attn_flash_mma_cuda_supports(n_embd, n_head);
}

extern "C" const pb_ops *pb_ops_cuda_bf16(void) {
    cuda_init();
    return &g_cuda_bf16_ops;
}
