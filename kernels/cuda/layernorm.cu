// layernorm.cu: LayerNorm of the CUDA backend: forward, backward, the fused residual add +
// LayerNorm forward, and the deterministic column sums its backward (and matmul's dbias)
// reduce with. eps is the op's parameter (1e-5 GPT-2, 1e-12 BERT).
#include "kernels/cuda/vec.cuh"

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


#define LN_WARPS 4

template <typename A>
__global__ void layernorm_forward_kernel(A *out, float *mean, float *rstd, const A *inp,
                                         const A *weight, const A *bias, int N, int C,
                                         float eps, bool vec) {
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
    float r = rsqrtf(warp_sum(s) / C + eps);
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
                                             const A *bias, int N, int C, float eps) {
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
    float r = rsqrtf(warp_sum(s) / C + eps);
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
void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps) {
    bool vec = C % 4 == 0 && aligned16(out) && aligned16(inp) && aligned16(weight) &&
               aligned16(bias);
    int nch = C % 8 == 0 && vec ? (int)cdiv((size_t)C, 256) : 0;  // chunks of 8 per lane
#define LN_FWD_REG(K)                                                                          \
    case K:                                                                                    \
        layernorm_forward_reg_kernel<A, K, false><<<cdiv(N, LN_WARPS), 32 * LN_WARPS>>>(       \
            (A *)out, mean, rstd, (const A *)inp, NULL, NULL, (const A *)weight,               \
            (const A *)bias, N, C, eps);                                                       \
        break;
    switch (nch) {
        LN_FWD_REG(1)
        LN_FWD_REG(2)
        LN_FWD_REG(3)
        LN_FWD_REG(4)
    default:  // C not a multiple of 8, unaligned, or wider than 1024
        layernorm_forward_kernel<A><<<cdiv(N, LN_WARPS), 32 * LN_WARPS>>>(
            (A *)out, mean, rstd, (const A *)inp, (const A *)weight, (const A *)bias, N, C, eps,
            vec);
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
void cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
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


// res = a + b, then out = layernorm(res): one read of a and b, res written once (the
// optional residual_layernorm_forward); the two ops in turn where the row kernel does not fit.
template <typename A>
void cuda_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                            const float *a, const float *b, const float *weight,
                                            const float *bias, int N, int C, float eps) {
    bool vec = C % 8 == 0 && aligned16(res) && aligned16(out) && aligned16(a) &&
               aligned16(b) && aligned16(weight) && aligned16(bias);
    int nch = vec ? (int)cdiv((size_t)C, 256) : 0;
#define LN_RES_REG(K)                                                                          \
    case K:                                                                                    \
        layernorm_forward_reg_kernel<A, K, true><<<cdiv(N, LN_WARPS), 32 * LN_WARPS>>>(        \
            (A *)out, mean, rstd, (const A *)a, (const A *)b, (A *)res, (const A *)weight,     \
            (const A *)bias, N, C, eps);                                                       \
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
    cuda_layernorm_forward<A>(out, mean, rstd, res, weight, bias, N, C, eps);
}

CUDA_INSTANCES(cuda_layernorm_forward)
CUDA_INSTANCES(cuda_layernorm_backward)
CUDA_INSTANCES(cuda_residual_layernorm_forward)
