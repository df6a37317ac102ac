// blocksparse_cuda.cuh: what the CUDA block-sparse kernels share: the device view of a
// layout's lists (bs_rows) and the walk over one row of them. The kernels are the dense ones
// of flash_wgmma_cuda.cu and flash_cuda.cu instantiated with BS = true: instead of every key
// (or query) tile they visit the tiles of the blocks one row of the lists names, partial
// blocks first, then full ones (the in-tile position masks decide per tile, so the split is
// not needed inside; order only changes the rounding of the sums).
#ifndef PEBBLE_BLOCKSPARSE_CUDA_CUH
#define PEBBLE_BLOCKSPARSE_CUDA_CUH

#include "kernels/cuda/cuda_common.cuh"

extern "C" {
#include "kernels/attention/blocksparse.h"
}

// The one block size the CUDA kernels run: FlexAttention's default. Every row tile (64 NWG
// queries or keys) and streamed tile (BN keys, BQ queries) of the kernels divides it.
#define BS_BLOCK 128
// Longest list row the wgmma kernels stage in shared memory (int32 each: 16 KiB).
#define BS_MAX_BLOCKS 4096

// One list pair of a layout in device memory: [0] partial, [1] full; rows r = (b' nh + h')
// nblk + blk (blocksparse.h). Forward and dQ: kv / full_kv, nblk = nqb; dK/dV: q / full_q,
// nblk = nkb. Zero (unused) in the dense kernels.
struct bs_rows {
    const int32_t *num[2], *off[2], *idx[2];
    int nb, nh, nblk;
};

// Row blk of head (b, h): its partial blocks p[0 .. np-1], then full ones f[0 .. n-np-1].
struct bs_row {
    const int32_t *p, *f;
    int np, n;
};

__device__ __forceinline__ bs_row bs_row_of(const bs_rows &L, int b, int h, int blk) {
    size_t r = ((size_t)(L.nb == 1 ? 0 : b) * L.nh + (L.nh == 1 ? 0 : h)) * L.nblk + blk;
    bs_row w;
    w.np = L.num[0][r];
    w.n = w.np + L.num[1][r];
    w.p = L.idx[0] + L.off[0][r];
    w.f = L.idx[1] + L.off[1][r];
    return w;
}

// The e-th block of the row (e < n).
__device__ __forceinline__ int bs_block_at(const bs_row &w, int e) {
    return e < w.np ? w.p[e] : w.f[e - w.np];
}

// Copies row blk's blocks into dst (shared memory, n <= BS_MAX_BLOCKS ints) with the NT
// threads of the block; returns n. Ends with a barrier: dst is then readable by all.
template <int NT>
__device__ __forceinline__ int bs_stage_row(int32_t *dst, const bs_rows &L, int b, int h,
                                            int blk) {
    bs_row w = bs_row_of(L, b, h, blk);
    for (int i = (int)threadIdx.x; i < w.n; i += NT) dst[i] = bs_block_at(w, i);
    __syncthreads();
    return w.n;
}

// The first row (key or query) of step s of a walk whose streamed tiles have TILE rows:
// dense, tile s; sparse, sub-tile s % SUB of the (s / SUB)-th listed block.
template <bool BS, int TILE>
__device__ __forceinline__ int bs_step_start(const int32_t *lst, int s) {
    constexpr int SUB = BS_BLOCK / TILE;
    return BS ? lst[s / SUB] * BS_BLOCK + (s % SUB) * TILE : s * TILE;
}

// Host: the device lists of layout l (uploaded at its first call, blocksparse_cuda.cu);
// transposed = 0 the forward's kv lists, 1 the dK/dV walk's q lists.
bs_rows attn_bs_cuda_rows(const pb_block_layout *l, int transposed);

#endif
