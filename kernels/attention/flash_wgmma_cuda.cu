// flash_wgmma_cuda.cu: dense FlashAttention-2 on Hopper's warpgroup MMA (wgmma, sm_90a), for
// bf16 tensors (the mixed-precision op table): forward, and a backward of two kernels (dK/dV,
// then dQ) with no atomics, so results repeat to the bit. Head dims 32, 64 and 128.
//
// Same algorithm and contract as flash_cuda.cu (read that first); what changes is the unit
// of work. A block holds NWG warpgroups; each owns 64
// rows (queries in the forward and dQ kernels, keys in the dK/dV kernel) and issues 64 x N x 16
// products that read B straight from shared memory, once per warpgroup rather than once per
// warp as mma.sync does. The other operand's tiles stream through two shared-memory stages
// filled by cp.async while the previous stage is used. Tiles, descriptors and the
// instructions: wgmma.cuh; what a lane does with its accumulator fragment: wgmma_frag.cuh.
// Inside a warpgroup the steps run in order (S, softmax, P V); two warpgroups per block (and
// the scheduler) overlap one's softmax with the other's products.
//
// Products per (query tile, key tile): forward 2 (S = Q K^T with Q in registers, O += P V);
// dK/dV 4 (S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q); dQ 3 (S, dP = dO V^T,
// dQ += dS K): 7 in the backward against FlashAttention-2's 5, the price of no atomics.
//
// Key-padding masks (kv_len[b], keys j >= kv_len[b] invisible) as in flash_cuda.cu: the
// forward and dQ key loops stop at the last visible key tile, dK/dV blocks of padding keys
// return at once, and the compares against kv_len sit only in the masked tile copies
// (MASK = true), which a tile takes only when it reaches past the bound; without kv_len
// the bound is T and the kernels do what they did before masks existed: PAD = false
// instantiates them with the bound T itself (a kernel parameter, no register held for it).
//
// Dropout on the probabilities (kernels/ops.h; DROP = true, dense only): the forward's l sums
// the undropped P and O gets the dropped and rescaled P; dK/dV's dV reads the dropped P^T and
// both backward kernels form dS = P (w dP - Di), w the element's weight, from the same hash of
// the element's (b, h, query, key) index as the CPU (kernels/dropout.h), so the three kernels
// and the CPU drop the same elements without a stored mask. DROP = false is the code as it was.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/attention/wgmma.cuh"
#include "kernels/attention/blocksparse_cuda.cuh"
#include "kernels/attention/wgmma_frag.cuh"

#include <math.h>

extern "C" {
#include "kernels/attention/flash_cuda.h"
}

// Tile shapes per head dim: the key tile BN of the forward and dQ kernels, the query tile BQ
// of dK/dV, warpgroups per block (NWG, 64 rows each) and the blocks per SM the compiler must
// fit in registers (MINB, __launch_bounds__). -D at compile time picks others for tuning runs.
// Each as one number, tile * 100 + NWG * 10 + MINB (nvcc splits -D values at commas).
// D 32: the H200 sweep of the ninth session (docs/PERF.md, "Head dim 32 on wgmma") kept the
// forward at 6422 and moved dQ and dK/dV to 6413 (+21-27% fwd+bwd at T 1K); one dK/dV shape
// serves every T (KVL32 = KV32).
#ifndef WG_FWD32
#define WG_FWD32 6422
#endif
#ifndef WG_FWD64
#define WG_FWD64 6422
#endif
#ifndef WG_FWD128
#define WG_FWD128 12821
#endif
#ifndef WG_DQ32
#define WG_DQ32 6413
#endif
#ifndef WG_DQ64
#define WG_DQ64 6413
#endif
#ifndef WG_DQ128
#define WG_DQ128 12821
#endif
#ifndef WG_KV32
#define WG_KV32 6413
#endif
#ifndef WG_KV64
#define WG_KV64 6413
#endif
#ifndef WG_KV128
#define WG_KV128 6421
#endif
// dK/dV for T above WG_LONG: the long-sequence shape (more queries per step pays once each
// block runs over enough query tiles to amortise its start; measured in docs/PERF.md v8).
#ifndef WG_LONG
#define WG_LONG 2048
#endif
#ifndef WG_KVL32
#define WG_KVL32 WG_KV32
#endif
#ifndef WG_KVL64
#define WG_KVL64 12821
#endif
#ifndef WG_KVL128
#define WG_KVL128 6421
#endif

// The block-sparse instantiations (BS = true) take their own shapes, by default the dense
// ones, so that a -D here changes only the sparse kernels (tests/gpu/bs_sweep.sh). With
// BS_BLOCK = 128: tile 64 or 128, NWG 1 or 2 (64 NWG rows divide the block). The sweep on the
// H200 (docs/PERF.md) moved one: the sparse D 64 dQ takes 64 rows in 2 warpgroups, 2 CTAs an
// SM (6422; 2.4% off fwd+bwd); every other dense shape measured best for the sparse kernels.
#ifndef WG_BS_FWD32
#define WG_BS_FWD32 WG_FWD32
#endif
#ifndef WG_BS_FWD64
#define WG_BS_FWD64 WG_FWD64
#endif
#ifndef WG_BS_FWD128
#define WG_BS_FWD128 WG_FWD128
#endif
#ifndef WG_BS_DQ32
#define WG_BS_DQ32 WG_DQ32
#endif
#ifndef WG_BS_DQ64
#define WG_BS_DQ64 6422
#endif
#ifndef WG_BS_DQ128
#define WG_BS_DQ128 WG_DQ128
#endif
#ifndef WG_BS_KV32
#define WG_BS_KV32 WG_KV32
#endif
#ifndef WG_BS_KV64
#define WG_BS_KV64 WG_KV64
#endif
#ifndef WG_BS_KV128
#define WG_BS_KV128 WG_KV128
#endif
#ifndef WG_BS_LONG
#define WG_BS_LONG WG_LONG
#endif
#ifndef WG_BS_KVL32
#define WG_BS_KVL32 WG_KVL32
#endif
#ifndef WG_BS_KVL64
#define WG_BS_KVL64 WG_KVL64
#endif
#ifndef WG_BS_KVL128
#define WG_BS_KVL128 WG_KVL128
#endif

// The top of every streamed step, after the next stage's copies were issued: commit them,
// wait for this step's stage, and make it visible to every thread and to the tensor cores.
__device__ __forceinline__ void stage_ready() {
    cpa_commit();
    cpa_wait1();
    fence_proxy_async();
    __syncthreads();
}

// Dynamic shared memory rounded up to the 1024 bytes SW128 tiles need.
__device__ __forceinline__ uint32_t smem_base(unsigned char *raw) {
    return (smem_u32(raw) + 1023u) & ~1023u;
}

// ----------------------------------------------------------------------------
// forward: a block = 64 NWG queries of one (b, h); key and value tiles of BN rows in two
// stages. Q's A operand is loaded once into registers, straight from global memory.

template <int DH, int BN, int NWG, int MINB, bool PAD, bool BS, bool DROP>
__global__ void __launch_bounds__(128 * NWG, MINB)
    wg_forward_kernel(bf16 *out, float *lse, const bf16 *qkv, const int32_t *kv_len, int T,
                      int C, int NH, int causal, float scale_log2, bs_rows L, wg_drop drp) {
    constexpr int BM = 64 * NWG, NT = 128 * NWG, KT = BN * DH * 2;  // bytes of a K or V tile
    static_assert(!BS || (BS_BLOCK % BM == 0 && BS_BLOCK % BN == 0), "tiles must divide blocks");
    extern __shared__ unsigned char smem_raw[];
    const uint32_t Ks = smem_base(smem_raw), Vs = Ks + 2 * KT;  // [2 stages] each
    // BS: the query block's key blocks, after the stages
    int32_t *lst = reinterpret_cast<int32_t *>(smem_raw + (Vs + 2 * KT - smem_u32(smem_raw)));
    int nq = (T + BM - 1) / BM, qt = nq - 1 - blockIdx.x;        // longest (causal) first
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    size_t C3 = 3 * (size_t)C;
    const bf16 *q = qkv + (size_t)b * T * C3 + (size_t)h * DH, *k = q + C, *v = q + 2 * C;
    int wg = threadIdx.x / 128, warp = threadIdx.x % 128 / 32, lane = threadIdx.x % 32;
    int g = lane / 4, t = lane % 4;
    int q0 = qt * BM, rw = q0 + 64 * wg;  // the warpgroup's first query
    int row[2] = {rw + warp * 16 + g, rw + warp * 16 + g + 8};
    const int kvl = PAD ? kv_len[b] : T;  // keys visible to any query of this row
    int nk = causal ? (min(q0 + BM, T) + BN - 1) / BN : (T + BN - 1) / BN;
    if (PAD) nk = min(nk, (kvl + BN - 1) / BN);  // the dense copy keeps its old bound
    if (BS) nk = (BS_BLOCK / BN) * bs_stage_row<NT>(lst, L, b, h, q0 / BS_BLOCK);

    if (!BS || nk > 0) {
        load_tile<BN, DH, NT>(Ks, k, C3, bs_step_start<BS, BN>(lst, 0), T);
        load_tile<BN, DH, NT>(Vs, v, C3, bs_step_start<BS, BN>(lst, 0), T);
    }
    cpa_commit();

    uint32_t qa[DH / 16][4];
    load_a_rows<DH>(qa, q, C3, row, t, T);
    float o[DH / 2], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < DH / 2; i++) o[i] = 0.0f;

    for (int kt = 0; kt < nk; kt++) {
        int k0 = BS ? bs_step_start<BS, BN>(lst, kt) : kt * BN, cur = kt & 1;
        if (kt + 1 < nk) {
            int kn = BS ? bs_step_start<BS, BN>(lst, kt + 1) : k0 + BN;
            load_tile<BN, DH, NT>(Ks + (cur ^ 1) * KT, k, C3, kn, T);
            load_tile<BN, DH, NT>(Vs + (cur ^ 1) * KT, v, C3, kn, T);
        }
        stage_ready();
        // causal: a warpgroup whose queries all precede the tile's first key has nothing to do
        // (BS: nor a sub-tile of a block's padding, past T or kv_len)
        if (!(causal && k0 > rw + 63) && (!BS || k0 < kvl)) {
            float s[BN / 2];
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < DH / 16; kk++)
                wgmma_rs<0>(s, qa[kk], desc_k<BN, DH>(Ks + cur * KT, 0, kk), kk);
            wg_commit();
            wg_wait<0>();
            reg_fence(s);
            // masks only where a key can be past kvl or past a query of this warpgroup
            if (k0 + BN > kvl || (causal && k0 + BN - 1 > rw)) {
#pragma unroll
                for (int i = 0; i < BN / 2; i++) {
                    int key = k0 + (i / 4) * 8 + 2 * t + (i & 1);
                    if (key >= kvl || (causal && key > row[(i >> 1) & 1])) s[i] = -INFINITY;
                }
            }
            float mx[2] = {-INFINITY, -INFINITY}, base[2], corr[2];
#pragma unroll
            for (int i = 0; i < BN / 2; i++) mx[(i >> 1) & 1] = fmaxf(mx[(i >> 1) & 1], s[i]);
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                float mn = fmaxf(m[r], mx[r] * scale_log2);  // scale > 0
                base[r] = mn == -INFINITY ? 0.0f : mn;
                corr[r] = ex2(m[r] - base[r]);
                m[r] = mn;
                l[r] *= corr[r];  // this lane's partial sum; the quad is summed at the end
            }
#pragma unroll
            for (int i = 0; i < BN / 2; i++) {
                s[i] = ex2(fmaf(s[i], scale_log2, -base[(i >> 1) & 1]));
                l[(i >> 1) & 1] += s[i];
            }
            if (DROP) {  // l keeps the undropped sum; O gets the dropped, rescaled P
                uint64_t kb = drop_bits<BN / 2, false>(drp, bh, T, k0, row, t);
#pragma unroll
                for (int i = 0; i < BN / 2; i++) s[i] *= drop_w(kb, i, drp.scale);
            }
#pragma unroll
            for (int i = 0; i < DH / 2; i++) o[i] *= corr[(i >> 1) & 1];
            uint32_t pa[BN / 16][4];
#pragma unroll
            for (int ks = 0; ks < BN / 16; ks++) acc_to_a(pa[ks], s, ks);
            reg_fence(o);
            wg_fence();
#pragma unroll
            for (int ks = 0; ks < BN / 16; ks++)
                wgmma_rs<1>(o, pa[ks], desc_n<BN, DH>(Vs + cur * KT, ks), 1);
            wg_commit();
            wg_wait<0>();
            reg_fence(o);
            reg_fence(pa);
        }
        __syncthreads();  // the next iteration's prefetch overwrites this tile's stage
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        float li = l[r];
        li += __shfl_xor_sync(0xffffffffu, li, 1);
        li += __shfl_xor_sync(0xffffffffu, li, 2);
        if (row[r] >= T) continue;
        // BS: a row that saw no key has l = 0 (and m = -inf): out 0, lse -inf
        float inv = BS && li == 0.0f ? 0.0f : 1.0f / li;
        bf16 *dst = out + ((size_t)b * T + row[r]) * C + (size_t)h * DH;
#pragma unroll
        for (int n = 0; n < DH / 8; n++)
            *reinterpret_cast<__nv_bfloat162 *>(dst + n * 8 + 2 * t) =
                __floats2bfloat162_rn(o[4 * n + 2 * r] * inv, o[4 * n + 2 * r + 1] * inv);
        // natural log: lse = (m + log2 l) ln 2
        if (t == 0) lse[(size_t)bh * T + row[r]] = (m[r] + log2f(li)) * 0.6931471805599453f;
    }
}

// ----------------------------------------------------------------------------
// backward, dK and dV: a block = 64 NWG keys of one (b, h), K and V staged once; query tiles
// of BQ rows (Q, dO, lse, Di) stream through two stages. Each warpgroup computes S^T (its 64
// keys x BQ queries) directly, so P^T and dS^T leave the accumulators in the A layout that
// dV += P^T dO and dK += dS^T Q need.

template <int DH, int BQ, int NWG, int MINB, bool PAD, bool BS, bool DROP>
__global__ void __launch_bounds__(128 * NWG, MINB)
    wg_dkdv_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                   const float *Di, const int32_t *kv_len, int T, int C, int NH, int causal,
                   float scale, float scale_log2, bs_rows L, wg_drop drp) {
    constexpr int BM = 64 * NWG, NT = 128 * NWG, RT = BM * DH * 2, QT = BQ * DH * 2;
    static_assert(!BS || (BS_BLOCK % BM == 0 && BS_BLOCK % BQ == 0), "tiles must divide blocks");
    extern __shared__ unsigned char smem_raw[];
    const uint32_t Ks = smem_base(smem_raw), Vs = Ks + RT, Qs = Vs + RT, dOs = Qs + 2 * QT;
    float *ls = reinterpret_cast<float *>(smem_raw + (dOs + 2 * QT - smem_u32(smem_raw)));
    float *ds = ls + 2 * BQ;  // [2][BQ] each: lse, Di of the stage's queries
    int32_t *lst = reinterpret_cast<int32_t *>(ds + 2 * BQ);  // BS: the key block's query blocks
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    size_t C3 = 3 * (size_t)C;
    const bf16 *q = qkv + (size_t)b * T * C3 + (size_t)h * DH, *k = q + C, *v = q + 2 * C;
    const bf16 *go = dout + (size_t)b * T * C + (size_t)h * DH;
    const float *lse_h = lse + (size_t)bh * T, *di_h = Di + (size_t)bh * T;
    int wg = threadIdx.x / 128, warp = threadIdx.x % 128 / 32, lane = threadIdx.x % 32;
    int g = lane / 4, t = lane % 4;
    int k0 = blockIdx.x * BM, kw = k0 + 64 * wg;  // causal: low key tiles have the most work
    int key[2] = {kw + warp * 16 + g, kw + warp * 16 + g + 8};
    int qt0 = causal ? k0 / BQ : 0, nqt = (T + BQ - 1) / BQ;
    const int kvl = PAD ? kv_len[b] : T;
    if (PAD && k0 >= kvl) return;  // padding keys only: no gradient (dqkv += nothing)
    // K and V first: with BS their copies fly while the list's dependent reads are waited for
    load_tile<BM, DH, NT>(Ks, k, C3, k0, T);
    load_tile<BM, DH, NT>(Vs, v, C3, k0, T);
    if (BS) {  // the steps are the sub-tiles of the listed query blocks
        qt0 = 0;
        nqt = (BS_BLOCK / BQ) * bs_stage_row<NT>(lst, L, b, h, k0 / BS_BLOCK);
    }
    if (!BS || nqt > 0) {
        int qs = BS ? bs_step_start<BS, BQ>(lst, 0) : qt0 * BQ;
        load_tile<BQ, DH, NT>(Qs, q, C3, qs, T);
        load_tile<BQ, DH, NT>(dOs, go, C, qs, T);
        load_floats<NT>(ls, lse_h, qs, BQ, T);
        load_floats<NT>(ds, di_h, qs, BQ, T);
    }
    cpa_commit();
    float dk[DH / 2], dv[DH / 2];
#pragma unroll
    for (int i = 0; i < DH / 2; i++) dk[i] = dv[i] = 0.0f;

    for (int qt = qt0; qt < nqt; qt++) {
        int q0 = BS ? bs_step_start<BS, BQ>(lst, qt) : qt * BQ, cur = (qt - qt0) & 1;
        if (qt + 1 < nqt) {
            int nb = cur ^ 1;
#define QN (BS ? bs_step_start<BS, BQ>(lst, qt + 1) : q0 + BQ)  // the next step's first query
            load_tile<BQ, DH, NT>(Qs + nb * QT, q, C3, QN, T);
            load_tile<BQ, DH, NT>(dOs + nb * QT, go, C, QN, T);
            load_floats<NT>(ls + nb * BQ, lse_h, QN, BQ, T);
            load_floats<NT>(ds + nb * BQ, di_h, QN, BQ, T);
#undef QN
        }
        stage_ready();
        const uint32_t Qc = Qs + cur * QT, dOc = dOs + cur * QT;
        const float *lc = ls + cur * BQ, *dc = ds + cur * BQ;
        // causal: a warpgroup whose keys all follow the tile's last query has nothing to do
        // nor has one whose keys are all padding
        // (BS: nor a sub-tile of a block's rows past T)
        if (!(causal && kw > q0 + BQ - 1) && (!PAD || kw < kvl) && (!BS || q0 < T)) {
            float p[BQ / 2], dp[BQ / 2];
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < DH / 16; kk++)
                wgmma_ss(p, desc_k<BM, DH>(Ks, 64 * wg, kk), desc_k<BQ, DH>(Qc, 0, kk), kk);
            wg_commit();
#pragma unroll
            for (int kk = 0; kk < DH / 16; kk++)
                wgmma_ss(dp, desc_k<BM, DH>(Vs, 64 * wg, kk), desc_k<BQ, DH>(dOc, 0, kk), kk);
            wg_commit();
            wg_wait<1>();  // S^T is ready; dP^T's products run on under P^T's exponentials
            reg_fence(p);
            // P^T = exp2(S^T scale log2e - lse log2e), then dV += P^T dO
            if (q0 + BQ > T || kw + 64 > kvl || (causal && kw + 63 > q0))
                probs_t<true>(p, lc, q0, key, t, T, kvl, causal, scale_log2);
            else
                probs_t<false>(p, lc, q0, key, t, T, kvl, causal, scale_log2);
            uint32_t pa[BQ / 16][4], sa[BQ / 16][4];
            uint64_t kb = DROP ? drop_bits<BQ / 2, true>(drp, bh, T, q0, key, t) : 0;
#pragma unroll
            for (int ks = 0; ks < BQ / 16; ks++) {
                if (DROP) acc_to_a_drop(pa[ks], p, ks, kb, drp.scale);  // dV reads dropped P^T
                else acc_to_a(pa[ks], p, ks);
            }
            reg_fence(dv);
            wg_fence();
#pragma unroll
            for (int ks = 0; ks < BQ / 16; ks++) wgmma_rs<1>(dv, pa[ks], desc_n<BQ, DH>(dOc, ks), 1);
            wg_commit();
            wg_wait<1>();  // dP^T is ready; dV's products run on under dS^T
            reg_fence(dp);
            // dS^T = P^T (dP^T - Di) (dropout: P^T (w dP^T - Di)), then dK += dS^T Q
#pragma unroll
            for (int i = 0; i < BQ / 2; i++) {
                int qc = (i / 4) * 8 + 2 * t + (i & 1);
                float w = DROP ? drop_w(kb, i, drp.scale) : 1.0f;
                dp[i] = p[i] * (DROP ? w * dp[i] - dc[qc] : dp[i] - dc[qc]);
            }
#pragma unroll
            for (int ks = 0; ks < BQ / 16; ks++) acc_to_a(sa[ks], dp, ks);
            reg_fence(dk);
            wg_fence();
#pragma unroll
            for (int ks = 0; ks < BQ / 16; ks++) wgmma_rs<1>(dk, sa[ks], desc_n<BQ, DH>(Qc, ks), 1);
            wg_commit();
            wg_wait<0>();
            reg_fence(dv);
            reg_fence(dk);
            reg_fence(pa);
            reg_fence(sa);
        }
        __syncthreads();  // the next iteration's prefetch overwrites this tile's stage
    }

    bf16 *dkg = dqkv + (size_t)b * T * C3 + C + (size_t)h * DH, *dvg = dkg + C;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (key[r] >= kvl) continue;  // past T, or padding: its dK, dV are 0
#pragma unroll
        for (int n = 0; n < DH / 8; n++) {
            size_t off = (size_t)key[r] * C3 + n * 8 + 2 * t;
            add2(dkg + off, scale * dk[4 * n + 2 * r], scale * dk[4 * n + 2 * r + 1]);
            add2(dvg + off, dv[4 * n + 2 * r], dv[4 * n + 2 * r + 1]);
        }
    }
}

// ----------------------------------------------------------------------------
// backward, dQ: a block = 64 NWG queries of one (b, h), Q and dO staged once; key and value
// tiles of BN rows in two stages.

template <int DH, int BN, int NWG, int MINB, bool PAD, bool BS, bool DROP>
__global__ void __launch_bounds__(128 * NWG, MINB)
    wg_dq_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                 const float *Di, const int32_t *kv_len, int T, int C, int NH, int causal,
                 float scale, float scale_log2, bs_rows L, wg_drop drp) {
    constexpr int BM = 64 * NWG, NT = 128 * NWG, RT = BM * DH * 2, KT = BN * DH * 2;
    static_assert(!BS || (BS_BLOCK % BM == 0 && BS_BLOCK % BN == 0), "tiles must divide blocks");
    extern __shared__ unsigned char smem_raw[];
    const uint32_t Qs = smem_base(smem_raw), dOs = Qs + RT, Ks = dOs + RT, Vs = Ks + 2 * KT;
    // BS: the query block's key blocks, after the stages
    int32_t *lst = reinterpret_cast<int32_t *>(smem_raw + (Vs + 2 * KT - smem_u32(smem_raw)));
    int nq = (T + BM - 1) / BM, qt = nq - 1 - blockIdx.x;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    size_t C3 = 3 * (size_t)C;
    const bf16 *q = qkv + (size_t)b * T * C3 + (size_t)h * DH, *k = q + C, *v = q + 2 * C;
    const bf16 *go = dout + (size_t)b * T * C + (size_t)h * DH;
    int wg = threadIdx.x / 128, warp = threadIdx.x % 128 / 32, lane = threadIdx.x % 32;
    int g = lane / 4, t = lane % 4;
    int q0 = qt * BM, rw = q0 + 64 * wg;
    int row[2] = {rw + warp * 16 + g, rw + warp * 16 + g + 8};
    float lr[2], dr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        lr[r] = row[r] < T ? lse[(size_t)bh * T + row[r]] * LOG2E : 0.0f;
        dr[r] = row[r] < T ? Di[(size_t)bh * T + row[r]] : 0.0f;
    }
    const int kvl = PAD ? kv_len[b] : T;
    int nk = causal ? (min(q0 + BM, T) + BN - 1) / BN : (T + BN - 1) / BN;
    if (PAD) nk = min(nk, (kvl + BN - 1) / BN);  // the dense copy keeps its old bound
    // Q and dO first: with BS their copies fly while the list's reads are waited for
    load_tile<BM, DH, NT>(Qs, q, C3, q0, T);
    load_tile<BM, DH, NT>(dOs, go, C, q0, T);
    if (BS) nk = (BS_BLOCK / BN) * bs_stage_row<NT>(lst, L, b, h, q0 / BS_BLOCK);
    if (!BS || nk > 0) {
        load_tile<BN, DH, NT>(Ks, k, C3, bs_step_start<BS, BN>(lst, 0), T);
        load_tile<BN, DH, NT>(Vs, v, C3, bs_step_start<BS, BN>(lst, 0), T);
    }
    cpa_commit();
    float dq[DH / 2];
#pragma unroll
    for (int i = 0; i < DH / 2; i++) dq[i] = 0.0f;

    for (int kt = 0; kt < nk; kt++) {
        int k0 = BS ? bs_step_start<BS, BN>(lst, kt) : kt * BN, cur = kt & 1;
        if (kt + 1 < nk) {
            int kn = BS ? bs_step_start<BS, BN>(lst, kt + 1) : k0 + BN;
            load_tile<BN, DH, NT>(Ks + (cur ^ 1) * KT, k, C3, kn, T);
            load_tile<BN, DH, NT>(Vs + (cur ^ 1) * KT, v, C3, kn, T);
        }
        stage_ready();
        const uint32_t Kc = Ks + cur * KT, Vc = Vs + cur * KT;
        if (!(causal && k0 > rw + 63) && (!BS || k0 < kvl)) {
            float s[BN / 2], dp[BN / 2];
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < DH / 16; kk++)
                wgmma_ss(s, desc_k<BM, DH>(Qs, 64 * wg, kk), desc_k<BN, DH>(Kc, 0, kk), kk);
            wg_commit();
#pragma unroll
            for (int kk = 0; kk < DH / 16; kk++)
                wgmma_ss(dp, desc_k<BM, DH>(dOs, 64 * wg, kk), desc_k<BN, DH>(Vc, 0, kk), kk);
            wg_commit();
            wg_wait<1>();  // S is ready; dP's products run on under P's exponentials
            reg_fence(s);
            if (k0 + BN > kvl || rw + 64 > T || (causal && k0 + BN - 1 > rw))
                probs<true>(s, lr, k0, row, t, T, kvl, causal, scale_log2);
            else
                probs<false>(s, lr, k0, row, t, T, kvl, causal, scale_log2);
            wg_wait<0>();
            reg_fence(dp);
            if (DROP) {  // dS = P (w dP - Di)
                uint64_t kb = drop_bits<BN / 2, false>(drp, bh, T, k0, row, t);
#pragma unroll
                for (int i = 0; i < BN / 2; i++)
                    s[i] *= drop_w(kb, i, drp.scale) * dp[i] - dr[(i >> 1) & 1];
            } else {
#pragma unroll
                for (int i = 0; i < BN / 2; i++) s[i] *= dp[i] - dr[(i >> 1) & 1];  // dS
            }
            uint32_t sa[BN / 16][4];
#pragma unroll
            for (int ks = 0; ks < BN / 16; ks++) acc_to_a(sa[ks], s, ks);
            reg_fence(dq);
            wg_fence();
#pragma unroll
            for (int ks = 0; ks < BN / 16; ks++) wgmma_rs<1>(dq, sa[ks], desc_n<BN, DH>(Kc, ks), 1);
            wg_commit();
            wg_wait<0>();
            reg_fence(dq);
            reg_fence(sa);
        }
        __syncthreads();  // the next iteration's prefetch overwrites this tile's stage
    }

    bf16 *dqg = dqkv + (size_t)b * T * C3 + (size_t)h * DH;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (row[r] >= T) continue;
#pragma unroll
        for (int n = 0; n < DH / 8; n++)
            add2(dqg + (size_t)row[r] * C3 + n * 8 + 2 * t, scale * dq[4 * n + 2 * r],
                 scale * dq[4 * n + 2 * r + 1]);
    }
}

// ----------------------------------------------------------------------------
// launchers

template <int X> struct WgShape {
    static constexpr int tile = X / 100, nwg = X / 10 % 10, minb = X % 10;
    // the tile is the N of the S products (64 or 128; wgmma.cuh's N = 32 serves only D 32's
    // P V-like products); a block of NWG warpgroups, 128 NWG threads
    static_assert((tile == 64 || tile == 128) && (nwg == 1 || nwg == 2) && minb >= 1,
                  "shape: tile 64 or 128, NWG 1 or 2, MINB >= 1");
};
// WgCfg<DH, BS>: the shapes of the dense (BS = false) or block-sparse kernels; LONG the T
// above which dK/dV takes KVL
template <int DH, bool BS> struct WgCfg;
template <> struct WgCfg<32, false> {
    typedef WgShape<WG_FWD32> FWD;
    typedef WgShape<WG_DQ32> DQ;
    typedef WgShape<WG_KV32> KV;
    typedef WgShape<WG_KVL32> KVL;
    static constexpr int LONG = WG_LONG;
};
template <> struct WgCfg<64, false> {
    typedef WgShape<WG_FWD64> FWD;
    typedef WgShape<WG_DQ64> DQ;
    typedef WgShape<WG_KV64> KV;
    typedef WgShape<WG_KVL64> KVL;
    static constexpr int LONG = WG_LONG;
};
template <> struct WgCfg<128, false> {
    typedef WgShape<WG_FWD128> FWD;
    typedef WgShape<WG_DQ128> DQ;
    typedef WgShape<WG_KV128> KV;
    typedef WgShape<WG_KVL128> KVL;
    static constexpr int LONG = WG_LONG;
};
template <> struct WgCfg<32, true> {
    typedef WgShape<WG_BS_FWD32> FWD;
    typedef WgShape<WG_BS_DQ32> DQ;
    typedef WgShape<WG_BS_KV32> KV;
    typedef WgShape<WG_BS_KVL32> KVL;
    static constexpr int LONG = WG_BS_LONG;
};
template <> struct WgCfg<64, true> {
    typedef WgShape<WG_BS_FWD64> FWD;
    typedef WgShape<WG_BS_DQ64> DQ;
    typedef WgShape<WG_BS_KV64> KV;
    typedef WgShape<WG_BS_KVL64> KVL;
    static constexpr int LONG = WG_BS_LONG;
};
template <> struct WgCfg<128, true> {
    typedef WgShape<WG_BS_FWD128> FWD;
    typedef WgShape<WG_BS_DQ128> DQ;
    typedef WgShape<WG_BS_KV128> KV;
    typedef WgShape<WG_BS_KVL128> KVL;
    static constexpr int LONG = WG_BS_LONG;
};

static void allow_smem(const void *kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

// BS: the list row staged after the tiles (the launch asks for what this layout's rows need;
// the attribute is set once to the most any layout may, BS_MAX_BLOCKS)
static size_t bs_list_bytes(const pb_block_layout *l) {
    return l ? (size_t)l->nkb * sizeof(int32_t) : 0;
}

template <int DH, bool BS>
static void wg_forward(bf16 *out, float *lse, const bf16 *qkv, const pb_attn_desc *d,
                       bs_rows L) {
    typedef typename WgCfg<DH, BS>::FWD F;
    constexpr int BN = F::tile, NWG = F::nwg, MINB = F::minb;
    static int done;
    size_t smem = 1024 + 4 * (size_t)BN * DH * 2;
    size_t most = smem + (BS ? BS_MAX_BLOCKS * sizeof(int32_t) : 0);
    if (!done) {
        allow_smem((const void *)wg_forward_kernel<DH, BN, NWG, MINB, false, BS, false>, most);
        allow_smem((const void *)wg_forward_kernel<DH, BN, NWG, MINB, true, BS, false>, most);
        if constexpr (!BS) {
            allow_smem((const void *)wg_forward_kernel<DH, BN, NWG, MINB, false, false, true>, most);
            allow_smem((const void *)wg_forward_kernel<DH, BN, NWG, MINB, true, false, true>, most);
        }
        done = 1;
    }
    if (BS) smem += bs_list_bytes(d->layout);
    dim3 grid(cdiv(d->T, 64 * NWG), d->B * d->NH);
    auto kernel = d->kv_len ? wg_forward_kernel<DH, BN, NWG, MINB, true, BS, false>
                            : wg_forward_kernel<DH, BN, NWG, MINB, false, BS, false>;
    if constexpr (!BS)  // dropout: dense only (blocksparse_cuda.cu refuses it)
        if (d->drop_p > 0)
            kernel = d->kv_len ? wg_forward_kernel<DH, BN, NWG, MINB, true, false, true>
                               : wg_forward_kernel<DH, BN, NWG, MINB, false, false, true>;
    kernel<<<grid, 128 * NWG, smem>>>(out, lse, qkv, d->kv_len, d->T, d->NH * DH, d->NH,
                                      d->causal, d->scale * LOG2E, L, wg_drop_of(d));
    cudaCheckLaunch();
}

// dK/dV in the shape S (a WgShape)
template <int DH, class S, bool BS>
static void wg_dkdv(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                    const float *Di, const pb_attn_desc *d, bs_rows L) {
    constexpr int BQ = S::tile, NWG = S::nwg, MINB = S::minb, BK = 64 * NWG;
    static int done;
    size_t smem = 1024 + (2 * (size_t)BK + 4 * BQ) * DH * 2 + 4 * BQ * sizeof(float);
    size_t most = smem + (BS ? BS_MAX_BLOCKS * sizeof(int32_t) : 0);
    if (!done) {
        allow_smem((const void *)wg_dkdv_kernel<DH, BQ, NWG, MINB, false, BS, false>, most);
        allow_smem((const void *)wg_dkdv_kernel<DH, BQ, NWG, MINB, true, BS, false>, most);
        if constexpr (!BS) {
            allow_smem((const void *)wg_dkdv_kernel<DH, BQ, NWG, MINB, false, false, true>, most);
            allow_smem((const void *)wg_dkdv_kernel<DH, BQ, NWG, MINB, true, false, true>, most);
        }
        done = 1;
    }
    if (BS) smem += bs_list_bytes(d->layout);
    auto kernel = d->kv_len ? wg_dkdv_kernel<DH, BQ, NWG, MINB, true, BS, false>
                            : wg_dkdv_kernel<DH, BQ, NWG, MINB, false, BS, false>;
    if constexpr (!BS)
        if (d->drop_p > 0)
            kernel = d->kv_len ? wg_dkdv_kernel<DH, BQ, NWG, MINB, true, false, true>
                               : wg_dkdv_kernel<DH, BQ, NWG, MINB, false, false, true>;
    kernel<<<dim3(cdiv(d->T, BK), d->B * d->NH), 128 * NWG, smem>>>(
        dqkv, dout, qkv, lse, Di, d->kv_len, d->T, d->NH * DH, d->NH, d->causal, d->scale,
        d->scale * LOG2E, L, wg_drop_of(d));
    cudaCheckLaunch();
}

// dK/dV, then dQ (BS: Lq the transposed lists for dK/dV, L the forward's for dQ)
template <int DH, bool BS>
static void wg_backward(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                        const float *Di, const pb_attn_desc *d, bs_rows L, bs_rows Lq) {
    typedef WgCfg<DH, BS> W;
    typedef typename W::DQ DQ;
    constexpr int BN = DQ::tile, QWG = DQ::nwg, QMB = DQ::minb, BM = 64 * QWG;
    if (d->T > W::LONG) wg_dkdv<DH, typename W::KVL, BS>(dqkv, dout, qkv, lse, Di, d, Lq);
    else wg_dkdv<DH, typename W::KV, BS>(dqkv, dout, qkv, lse, Di, d, Lq);
    static int done;
    size_t smem_q = 1024 + (2 * (size_t)BM + 4 * BN) * DH * 2;
    size_t most = smem_q + (BS ? BS_MAX_BLOCKS * sizeof(int32_t) : 0);
    if (!done) {
        allow_smem((const void *)wg_dq_kernel<DH, BN, QWG, QMB, false, BS, false>, most);
        allow_smem((const void *)wg_dq_kernel<DH, BN, QWG, QMB, true, BS, false>, most);
        if constexpr (!BS) {
            allow_smem((const void *)wg_dq_kernel<DH, BN, QWG, QMB, false, false, true>, most);
            allow_smem((const void *)wg_dq_kernel<DH, BN, QWG, QMB, true, false, true>, most);
        }
        done = 1;
    }
    if (BS) smem_q += bs_list_bytes(d->layout);
    auto kernel = d->kv_len ? wg_dq_kernel<DH, BN, QWG, QMB, true, BS, false>
                            : wg_dq_kernel<DH, BN, QWG, QMB, false, BS, false>;
    if constexpr (!BS)
        if (d->drop_p > 0)
            kernel = d->kv_len ? wg_dq_kernel<DH, BN, QWG, QMB, true, false, true>
                               : wg_dq_kernel<DH, BN, QWG, QMB, false, false, true>;
    kernel<<<dim3(cdiv(d->T, BM), d->B * d->NH), 128 * QWG, smem_q>>>(
        dqkv, dout, qkv, lse, Di, d->kv_len, d->T, d->NH * DH, d->NH, d->causal, d->scale,
        d->scale * LOG2E, L, wg_drop_of(d));
    cudaCheckLaunch();
}

// call(DH) at the head dim D: 32, 64 or 128 (the callers checked).
#define WG_BY_DIM(D, call) \
    do {                   \
        if ((D) == 32) call(32);       \
        else if ((D) == 64) call(64);  \
        else call(128);                \
    } while (0)

extern "C" void attn_wgmma_cuda_forward(float *out, float *lse, const float *qkv,
                                        const pb_attn_desc *d) {
    PB_ASSERT(!attn_wgmma_cuda_supports(d));
    bs_rows none = {};
#define FWD(DH) wg_forward<DH, false>((bf16 *)out, lse, (const bf16 *)qkv, d, none)
    WG_BY_DIM(d->D, FWD);
#undef FWD
}

extern "C" void attn_wgmma_cuda_backward(float *dqkv_, const float *dout_, const float *out,
                                         const float *lse, const float *qkv_,
                                         const pb_attn_desc *d) {
    PB_ASSERT(!attn_wgmma_cuda_supports(d));
    bf16 *dqkv = (bf16 *)dqkv_;
    const bf16 *dout = (const bf16 *)dout_, *qkv = (const bf16 *)qkv_;
    const float *Di = attn_cuda_di(dout_, out, d, PB_DTYPE_BF16);
    bs_rows none = {};
#define BWD(DH) wg_backward<DH, false>(dqkv, dout, qkv, lse, Di, d, none, none)
    WG_BY_DIM(d->D, BWD);
#undef BWD
}

// Block-sparse (blocksparse_cuda.cu checks d first: attn_bs_cuda_supports, D 32, 64 or 128).
extern "C" void attn_wgmma_cuda_bs_forward(float *out, float *lse, const float *qkv,
                                           const pb_attn_desc *d) {
    bs_rows L = attn_bs_cuda_rows(d->layout, 0);
#define FWD(DH) wg_forward<DH, true>((bf16 *)out, lse, (const bf16 *)qkv, d, L)
    WG_BY_DIM(d->D, FWD);
#undef FWD
}

extern "C" void attn_wgmma_cuda_bs_backward(float *dqkv_, const float *dout_, const float *out,
                                            const float *lse, const float *qkv_,
                                            const pb_attn_desc *d) {
    bf16 *dqkv = (bf16 *)dqkv_;
    const bf16 *dout = (const bf16 *)dout_, *qkv = (const bf16 *)qkv_;
    bs_rows L = attn_bs_cuda_rows(d->layout, 0), Lq = attn_bs_cuda_rows(d->layout, 1);
    const float *Di = attn_cuda_di(dout_, out, d, PB_DTYPE_BF16);
#define BWD(DH) wg_backward<DH, true>(dqkv, dout, qkv, lse, Di, d, L, Lq)
    WG_BY_DIM(d->D, BWD);
#undef BWD
}
