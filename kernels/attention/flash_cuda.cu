// flash_cuda.cu: FlashAttention-2 style attention in CUDA with fp32 arithmetic (forward and
// backward), on fp32 tensors (the fp32 op table's "flash") or bf16 ones (the bf16 table's
// "flash", for head dims the wgmma kernels do not run): the kernels are templates on the
// tensors' element type E, converting on loads and stores; with E = float they are the exact
// fp32 reference on the GPU.
//
// Forward: one block per (query tile of BR rows, batch * head). The block keeps its Q tile in
// shared memory and streams K and V tiles of BC rows through it; each score tile
// S = scale * Q K^T lives in registers, an online softmax keeps each row's running max m and
// sum l, rescales the output accumulator O (registers) and adds P V. It writes
// O / l and lse = m + log l. Nothing of size T x T ever reaches device memory.
//
// Backward, with Di = rowsum(dO * O) computed first (one small kernel), in two kernels so
// that no gradient is summed by atomics (deterministic):
//   dK/dV: one block per key tile; it streams the query tiles that see it, recomputes
//          P = exp(S - lse) from the saved lse, and accumulates dV += P^T dO and
//          dK += dS^T Q, dS = P * (dP - Di), dP = dO V^T, in registers.
//   dQ:    one block per query tile; it streams the key tiles, recomputes P and dS, and
//          accumulates dQ += dS K.
// That recomputes S and dP twice (7 tile products where FlashAttention-2 with atomics does
// 5), the price of a fixed summation order.
//
// Threads: 256 = 16 x 16 (ty, tx). In every tile product the thread owns rows ty*4 + i
// (i < 4) and columns tx + 16*j, so a row's statistics stay inside one half-warp.
// Head dims: kernels are instantiated for DP = 32, 64, 128 and any D <= DP (the tiles are
// zero-padded to DP); shared-memory rows are padded by one float to spread the banks.
// Key-padding masks (kv_len[b]: keys j >= kv_len[b] are invisible) cut the key loops of the
// forward and dQ kernels at the last visible key tile, and dK/dV blocks whose keys are all
// padding return at once (their gradients are 0: dqkv += nothing). Inside the last tile the
// padding keys get probability 0, so their dK and dV add exactly 0. Without kv_len the bound
// is T and every compare is the one the kernels always made against T.
#include "kernels/cuda/cuda_common.cuh"

#include <math.h>

#include "kernels/attention/blocksparse_cuda.cuh"

extern "C" {
#include "kernels/attention/flash_cuda.h"
}

#define BR 64   // query rows per tile
#define BC 64   // key rows per tile (== BR: causal tile bounds below rely on it)
#define NT 256  // threads per block
#define PS (BC + 1)  // row stride of the P / dS tile in shared memory

// acc[i][j] += sum over k < K of A(ty*RM + i, k) * B(k, tx + 16*j), with
// A(m,k) = A[m*a_rs + k*a_cs] and B(k,n) = B[k*b_rs + n*b_cs] in shared memory.
template <int RM, int RN, int K>
__device__ __forceinline__ void tile_mma(float (&acc)[RM][RN], const float *A, int a_rs,
                                         int a_cs, const float *B, int b_rs, int b_cs, int ty,
                                         int tx) {
#pragma unroll 4
    for (int k = 0; k < K; k++) {
        float a[RM], b[RN];
#pragma unroll
        for (int i = 0; i < RM; i++) a[i] = A[(ty * RM + i) * a_rs + k * a_cs];
#pragma unroll
        for (int j = 0; j < RN; j++) b[j] = B[k * b_rs + (tx + 16 * j) * b_cs];
#pragma unroll
        for (int i = 0; i < RM; i++)
#pragma unroll
            for (int j = 0; j < RN; j++) acc[i][j] += a[i] * b[j];
    }
}

// dst [64][DP+1] = rows t0 .. t0+63 of src (row r at src + r*stride, D floats), zero outside
// T rows and D columns.
template <int DP, typename E>
__device__ __forceinline__ void load_tile(float *dst, const E *src, size_t stride, int t0,
                                          int T, int D) {
    for (int idx = threadIdx.x; idx < 64 * DP; idx += NT) {
        int r = idx / DP, d = idx % DP;
        dst[r * (DP + 1) + d] =
            (t0 + r < T && d < D) ? to_f(src[(size_t)(t0 + r) * stride + d]) : 0.0f;
    }
}

// x += v, in the tensors' element type (bf16: rounded once, to nearest even)
template <typename E> __device__ __forceinline__ void add_to(E *x, float v) {
    *x = from_f<E>(to_f(*x) + v);
}

// Keys of batch row b visible to any query: kv_len[b] (PAD), or all T without a mask (the
// kernels' PAD = false copy, which compares against the parameter T as it always did).
template <bool PAD> __device__ __forceinline__ int key_bound(const int32_t *kv_len, int b, int T) {
    return PAD ? kv_len[b] : T;
}

template <int RM, int RN>
__device__ __forceinline__ void zero_acc(float (&a)[RM][RN]) {
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
        for (int j = 0; j < RN; j++) a[i][j] = 0.0f;
}

// ----------------------------------------------------------------------------
// forward

// The key (or query) tile of step s of a block-sparse walk: sub-tile s % 2 of the row's
// (s / 2)-th block, read from the lists in global memory (the loops here are synchronous:
// one broadcast load a step costs nothing next to the tile copies).
__device__ __forceinline__ int bs_tile_start(const bs_row &w, int s) {
    constexpr int SUB = BS_BLOCK / BC;
    return bs_block_at(w, s / SUB) * BS_BLOCK + (s % SUB) * BC;
}

template <int DP, typename E, bool PAD, bool BS>
__global__ void __launch_bounds__(NT) flash_forward_kernel(E *out, float *lse, const E *qkv,
                                                           const int32_t *kv_len, int T, int C,
                                                           int NH, int causal, float scale,
                                                           bs_rows L) {
    static_assert(BS_BLOCK % BR == 0 && BS_BLOCK % BC == 0, "tiles must divide blocks");
    extern __shared__ float sm[];
    float *Qs = sm, *Ks = Qs + BR * (DP + 1), *Vs = Ks + BC * (DP + 1), *Ps = Vs + BC * (DP + 1);
    const int RN = DP / 16;
    int nq = (T + BR - 1) / BR;
    int qt = nq - 1 - blockIdx.x;  // the longest causal rows first: better tail balance
    int bh = blockIdx.y, b = bh / NH, h = bh % NH, D = C / NH;
    size_t C3 = 3 * (size_t)C;
    const E *q = qkv + (size_t)b * T * C3 + (size_t)h * D, *k = q + C, *v = q + 2 * C;
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int q0 = qt * BR, kvl = key_bound<PAD>(kv_len, b, T);

    load_tile<DP>(Qs, q, C3, q0, T, D);
    float o[4][RN], m[4], l[4];
    zero_acc(o);
#pragma unroll
    for (int i = 0; i < 4; i++) m[i] = -INFINITY, l[i] = 0.0f;

    int nk = causal ? qt + 1 : (T + BC - 1) / BC;
    if (PAD) nk = min(nk, (kvl + BC - 1) / BC);  // key tiles past kv_len[b]: nothing to see
    bs_row w = {};
    if (BS) w = bs_row_of(L, b, h, q0 / BS_BLOCK), nk = (BS_BLOCK / BC) * w.n;
    for (int kt = 0; kt < nk; kt++) {
        int k0 = BS ? bs_tile_start(w, kt) : kt * BC;
        // BS: a sub-tile past the keys, or (causal) after every query of the tile
        if (BS && (k0 >= kvl || (causal && k0 > q0 + BR - 1))) continue;
        __syncthreads();  // the previous tile's Ks, Vs, Ps are no longer read
        load_tile<DP>(Ks, k, C3, k0, T, D);
        load_tile<DP>(Vs, v, C3, k0, T, D);
        __syncthreads();
        float s[4][4];
        zero_acc(s);
        tile_mma<4, 4, DP>(s, Qs, DP + 1, 1, Ks, 1, DP + 1, ty, tx);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int qi = q0 + ty * 4 + i;
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int kj = k0 + tx + 16 * j;
                s[i][j] = (kj >= kvl || (causal && kj > qi)) ? -INFINITY : s[i][j] * scale;
                mx = fmaxf(mx, s[i][j]);
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            float mn = fmaxf(m[i], mx);
            // mn is -inf only for a row that has seen no key yet (none here: key 0 is
            // visible to every row); keep exp's argument finite all the same.
            float base = mn == -INFINITY ? 0.0f : mn;
            float corr = expf(m[i] - base), rs = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float p = expf(s[i][j] - base);
                rs += p;
                Ps[(ty * 4 + i) * PS + tx + 16 * j] = p;
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) rs += __shfl_xor_sync(0xffffffffu, rs, off);
            l[i] = l[i] * corr + rs;
            m[i] = mn;
#pragma unroll
            for (int j = 0; j < RN; j++) o[i][j] *= corr;
        }
        __syncthreads();
        tile_mma<4, RN, BC>(o, Ps, PS, 1, Vs, DP + 1, 1, ty, tx);
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        int qi = q0 + ty * 4 + i;
        if (qi >= T) continue;
        float inv = BS && l[i] == 0.0f ? 0.0f : 1.0f / l[i];  // BS: no key seen: 0, lse -inf
        E *dst = out + ((size_t)b * T + qi) * C + (size_t)h * D;
#pragma unroll
        for (int j = 0; j < RN; j++) {
            int d = tx + 16 * j;
            if (d < D) dst[d] = from_f<E>(o[i][j] * inv);
        }
        if (tx == 0) lse[(size_t)bh * T + qi] = m[i] + logf(l[i]);
    }
}

// ----------------------------------------------------------------------------
// backward

// Di (B,NH,T) = rowsum(dO * O) comes first (attn_cuda_di, attention_cuda.cu).

template <int DP, typename E, bool PAD, bool BS>
__global__ void __launch_bounds__(NT) flash_backward_dkdv_kernel(
    E *dqkv, const E *dout, const E *qkv, const float *lse, const float *Di,
    const int32_t *kv_len, int T, int C, int NH, int causal, float scale, bs_rows L) {
    extern __shared__ float sm[];
    float *Ks = sm, *Vs = Ks + BC * (DP + 1), *Qs = Vs + BC * (DP + 1), *dOs = Qs + BR * (DP + 1);
    float *Ps = dOs + BR * (DP + 1), *ls = Ps + BC * PS, *ds = ls + BR;
    const int RN = DP / 16;
    int kt = blockIdx.x;  // causal: key tile kt is seen by nq - kt query tiles, so heavy first
    int bh = blockIdx.y, b = bh / NH, h = bh % NH, D = C / NH;
    size_t C3 = 3 * (size_t)C;
    const E *q = qkv + (size_t)b * T * C3 + (size_t)h * D, *k = q + C, *v = q + 2 * C;
    const E *g = dout + (size_t)b * T * C + (size_t)h * D;
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int k0 = kt * BC, nq = (T + BR - 1) / BR, kvl = key_bound<PAD>(kv_len, b, T);
    if (PAD && k0 >= kvl) return;  // padding keys only: no gradient

    load_tile<DP>(Ks, k, C3, k0, T, D);
    load_tile<DP>(Vs, v, C3, k0, T, D);
    float dk[4][RN], dv[4][RN];  // rows: keys ty*4+i; columns: d = tx + 16j
    zero_acc(dk);
    zero_acc(dv);

    bs_row w = {};
    if (BS) w = bs_row_of(L, b, h, k0 / BS_BLOCK), nq = (BS_BLOCK / BR) * w.n;
    for (int qt = causal && !BS ? kt : 0; qt < nq; qt++) {
        int q0 = BS ? bs_tile_start(w, qt) : qt * BR;
        // BS: a sub-tile past T, or (causal) before every key of the tile
        if (BS && (q0 >= T || (causal && k0 > q0 + BR - 1))) continue;
        __syncthreads();
        load_tile<DP>(Qs, q, C3, q0, T, D);
        load_tile<DP>(dOs, g, C, q0, T, D);
        for (int r = threadIdx.x; r < BR; r += NT) {
            bool in = q0 + r < T;
            ls[r] = in ? lse[(size_t)bh * T + q0 + r] : 0.0f;
            ds[r] = in ? Di[(size_t)bh * T + q0 + r] : 0.0f;
        }
        __syncthreads();
        // P^T (keys x queries) = exp(scale * K Q^T - lse[query])
        float p[4][4];
        zero_acc(p);
        tile_mma<4, 4, DP>(p, Ks, DP + 1, 1, Qs, 1, DP + 1, ty, tx);
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int kj = k0 + ty * 4 + i, qj = tx + 16 * j, qi = q0 + qj;
                bool masked = qi >= T || kj >= kvl || (causal && kj > qi);
                p[i][j] = masked ? 0.0f : expf(p[i][j] * scale - ls[qj]);
                Ps[(ty * 4 + i) * PS + qj] = p[i][j];
            }
        __syncthreads();
        tile_mma<4, RN, BR>(dv, Ps, PS, 1, dOs, DP + 1, 1, ty, tx);  // dV += P^T dO
        // dP^T = V dO^T; dS^T = P^T * (dP^T - Di[query])
        float dp[4][4];
        zero_acc(dp);
        tile_mma<4, 4, DP>(dp, Vs, DP + 1, 1, dOs, 1, DP + 1, ty, tx);
        __syncthreads();  // everyone is done reading P^T
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int qj = tx + 16 * j;
                Ps[(ty * 4 + i) * PS + qj] = p[i][j] * (dp[i][j] - ds[qj]);
            }
        __syncthreads();
        tile_mma<4, RN, BR>(dk, Ps, PS, 1, Qs, DP + 1, 1, ty, tx);  // dK += dS^T Q
    }

    E *dkg = dqkv + (size_t)b * T * C3 + C + (size_t)h * D, *dvg = dkg + C;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int kj = k0 + ty * 4 + i;
        if (kj >= T) continue;
#pragma unroll
        for (int j = 0; j < RN; j++) {
            int d = tx + 16 * j;
            if (d >= D) continue;
            add_to(dkg + (size_t)kj * C3 + d, scale * dk[i][j]);
            add_to(dvg + (size_t)kj * C3 + d, dv[i][j]);
        }
    }
}

template <int DP, typename E, bool PAD, bool BS>
__global__ void __launch_bounds__(NT) flash_backward_dq_kernel(
    E *dqkv, const E *dout, const E *qkv, const float *lse, const float *Di,
    const int32_t *kv_len, int T, int C, int NH, int causal, float scale, bs_rows L) {
    extern __shared__ float sm[];
    float *Qs = sm, *dOs = Qs + BR * (DP + 1), *Ks = dOs + BR * (DP + 1), *Vs = Ks + BC * (DP + 1);
    float *Ps = Vs + BC * (DP + 1);
    const int RN = DP / 16;
    int nq = (T + BR - 1) / BR;
    int qt = nq - 1 - blockIdx.x;  // heavy (long causal) rows first
    int bh = blockIdx.y, b = bh / NH, h = bh % NH, D = C / NH;
    size_t C3 = 3 * (size_t)C;
    const E *q = qkv + (size_t)b * T * C3 + (size_t)h * D, *k = q + C, *v = q + 2 * C;
    const E *g = dout + (size_t)b * T * C + (size_t)h * D;
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int q0 = qt * BR, kvl = key_bound<PAD>(kv_len, b, T);

    load_tile<DP>(Qs, q, C3, q0, T, D);
    load_tile<DP>(dOs, g, C, q0, T, D);
    float lr[4], dr[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int qi = q0 + ty * 4 + i;
        lr[i] = qi < T ? lse[(size_t)bh * T + qi] : 0.0f;
        dr[i] = qi < T ? Di[(size_t)bh * T + qi] : 0.0f;
    }
    float dq[4][RN];
    zero_acc(dq);

    int nk = causal ? qt + 1 : (T + BC - 1) / BC;
    if (PAD) nk = min(nk, (kvl + BC - 1) / BC);  // key tiles past kv_len[b]: nothing to see
    bs_row w = {};
    if (BS) w = bs_row_of(L, b, h, q0 / BS_BLOCK), nk = (BS_BLOCK / BC) * w.n;
    for (int kt = 0; kt < nk; kt++) {
        int k0 = BS ? bs_tile_start(w, kt) : kt * BC;
        if (BS && (k0 >= kvl || (causal && k0 > q0 + BR - 1))) continue;  // as the forward
        __syncthreads();
        load_tile<DP>(Ks, k, C3, k0, T, D);
        load_tile<DP>(Vs, v, C3, k0, T, D);
        __syncthreads();
        float p[4][4], dp[4][4];
        zero_acc(p);
        zero_acc(dp);
        tile_mma<4, 4, DP>(p, Qs, DP + 1, 1, Ks, 1, DP + 1, ty, tx);    // S = Q K^T
        tile_mma<4, 4, DP>(dp, dOs, DP + 1, 1, Vs, 1, DP + 1, ty, tx);  // dP = dO V^T
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int qi = q0 + ty * 4 + i, kj = k0 + tx + 16 * j;
                bool masked = qi >= T || kj >= kvl || (causal && kj > qi);
                float pij = masked ? 0.0f : expf(p[i][j] * scale - lr[i]);
                Ps[(ty * 4 + i) * PS + tx + 16 * j] = pij * (dp[i][j] - dr[i]);
            }
        __syncthreads();
        tile_mma<4, RN, BC>(dq, Ps, PS, 1, Ks, DP + 1, 1, ty, tx);  // dQ += dS K
    }

    E *dqg = dqkv + (size_t)b * T * C3 + (size_t)h * D;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int qi = q0 + ty * 4 + i;
        if (qi >= T) continue;
#pragma unroll
        for (int j = 0; j < RN; j++) {
            int d = tx + 16 * j;
            if (d < D) add_to(dqg + (size_t)qi * C3 + d, scale * dq[i][j]);
        }
    }
}

// ----------------------------------------------------------------------------
// launchers

// Shared memory above 48 KiB must be asked for, once per kernel.
static void allow_smem(const void *kernel, size_t bytes, int *done) {
    if (*done) return;
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    *done = 1;
}

template <int DP, typename E, bool BS>
static void forward_dp(E *out, float *lse, const E *qkv, const pb_attn_desc *d, bs_rows L) {
    static int done;
    size_t smem = (size_t)((BR + 2 * BC) * (DP + 1) + BR * PS) * sizeof(float);
    static int done_pad;
    auto kernel = d->kv_len ? flash_forward_kernel<DP, E, true, BS>
                            : flash_forward_kernel<DP, E, false, BS>;
    allow_smem((const void *)kernel, smem, d->kv_len ? &done_pad : &done);
    int C = d->NH * d->D;
    dim3 grid(cdiv(d->T, BR), d->B * d->NH);
    kernel<<<grid, NT, smem>>>(out, lse, qkv, d->kv_len, d->T, C, d->NH, d->causal, d->scale, L);
    cudaCheckLaunch();
}

// BS: Lq the transposed lists (dK/dV), L the forward's (dQ)
template <int DP, typename E, bool BS>
static void backward_dp(E *dqkv, const E *dout, const E *qkv, const float *lse, const float *Di,
                        const pb_attn_desc *d, bs_rows L, bs_rows Lq) {
    static int done_kv[2], done_q[2];
    size_t smem_kv = (size_t)((2 * BC + 2 * BR) * (DP + 1) + BC * PS + 2 * BR) * sizeof(float);
    size_t smem_q = (size_t)((2 * BR + 2 * BC) * (DP + 1) + BR * PS) * sizeof(float);
    int pad = d->kv_len != NULL;
    auto kv = pad ? flash_backward_dkdv_kernel<DP, E, true, BS>
                  : flash_backward_dkdv_kernel<DP, E, false, BS>;
    auto q = pad ? flash_backward_dq_kernel<DP, E, true, BS>
                 : flash_backward_dq_kernel<DP, E, false, BS>;
    allow_smem((const void *)kv, smem_kv, &done_kv[pad]);
    allow_smem((const void *)q, smem_q, &done_q[pad]);
    int T = d->T, C = d->NH * d->D, NH = d->NH;
    kv<<<dim3(cdiv(T, BC), d->B * NH), NT, smem_kv>>>(dqkv, dout, qkv, lse, Di, d->kv_len, T, C,
                                                     NH, d->causal, d->scale, Lq);
    cudaCheckLaunch();
    q<<<dim3(cdiv(T, BR), d->B * NH), NT, smem_q>>>(dqkv, dout, qkv, lse, Di, d->kv_len, T, C, NH,
                                                   d->causal, d->scale, L);
    cudaCheckLaunch();
}

template <typename E, bool BS>
static void flash_forward(float *out_, float *lse, const float *qkv_, const pb_attn_desc *d) {
    PB_ASSERT(BS || !attn_flash_cuda_supports(d));
    E *out = (E *)out_;
    const E *qkv = (const E *)qkv_;
    bs_rows L = {};
    if (BS) L = attn_bs_cuda_rows(d->layout, 0);
    if (d->D <= 32) forward_dp<32, E, BS>(out, lse, qkv, d, L);
    else if (d->D <= 64) forward_dp<64, E, BS>(out, lse, qkv, d, L);
    else forward_dp<128, E, BS>(out, lse, qkv, d, L);
}

template <typename E, bool BS>
static void flash_backward(float *dqkv_, const float *dout_, const float *out_, const float *lse,
                           const float *qkv_, const pb_attn_desc *d) {
    PB_ASSERT(BS || !attn_flash_cuda_supports(d));
    E *dqkv = (E *)dqkv_;
    const E *dout = (const E *)dout_, *qkv = (const E *)qkv_;
    bs_rows L = {}, Lq = {};
    if (BS) L = attn_bs_cuda_rows(d->layout, 0), Lq = attn_bs_cuda_rows(d->layout, 1);
    const float *Di = attn_cuda_di(dout_, out_, d, sizeof(E) == 2 ? PB_DTYPE_BF16 : PB_DTYPE_FP32);
    if (d->D <= 32) backward_dp<32, E, BS>(dqkv, dout, qkv, lse, Di, d, L, Lq);
    else if (d->D <= 64) backward_dp<64, E, BS>(dqkv, dout, qkv, lse, Di, d, L, Lq);
    else backward_dp<128, E, BS>(dqkv, dout, qkv, lse, Di, d, L, Lq);
}

extern "C" void attn_flash_cuda_forward(float *out, float *lse, const float *qkv,
                                        const pb_attn_desc *d) {
    flash_forward<float, false>(out, lse, qkv, d);
}

extern "C" void attn_flash_cuda_backward(float *dqkv, const float *dout, const float *out,
                                         const float *lse, const float *qkv,
                                         const pb_attn_desc *d) {
    flash_backward<float, false>(dqkv, dout, out, lse, qkv, d);
}

extern "C" void attn_flash_cuda_forward_bf16(float *out, float *lse, const float *qkv,
                                             const pb_attn_desc *d) {
    flash_forward<bf16, false>(out, lse, qkv, d);
}

extern "C" void attn_flash_cuda_backward_bf16(float *dqkv, const float *dout, const float *out,
                                              const float *lse, const float *qkv,
                                              const pb_attn_desc *d) {
    flash_backward<bf16, false>(dqkv, dout, out, lse, qkv, d);
}

// Block-sparse, the same kernels walking d->layout (blocksparse_cuda.cu checks d first).
extern "C" void attn_flash_cuda_bs_forward(float *out, float *lse, const float *qkv,
                                           const pb_attn_desc *d) {
    flash_forward<float, true>(out, lse, qkv, d);
}

extern "C" void attn_flash_cuda_bs_backward(float *dqkv, const float *dout, const float *out,
                                            const float *lse, const float *qkv,
                                            const pb_attn_desc *d) {
    flash_backward<float, true>(dqkv, dout, out, lse, qkv, d);
}

extern "C" void attn_flash_cuda_bs_forward_bf16(float *out, float *lse, const float *qkv,
                                                const pb_attn_desc *d) {
    flash_forward<bf16, true>(out, lse, qkv, d);
}

extern "C" void attn_flash_cuda_bs_backward_bf16(float *dqkv, const float *dout,
                                                 const float *out, const float *lse,
                                                 const float *qkv, const pb_attn_desc *d) {
    flash_backward<bf16, true>(dqkv, dout, out, lse, qkv, d);
}
