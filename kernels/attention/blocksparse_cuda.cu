// blocksparse_cuda.cu: the CUDA block-sparse attention ("blocksparse" in both op tables):
// which descriptors it runs, the device copy of a layout, and the dispatch to the kernels.
//
// The kernels are the dense ones with a template flag BS (flash_wgmma_cuda.cu: bf16, D 64
// and 128; flash_cuda.cu: fp32 arithmetic, fp32 tensors or bf16 ones at other D <= 128): the
// forward and dQ blocks walk their query block's kv + full_kv lists, the dK/dV blocks their
// key block's q + full_q lists (blocksparse_cuda.cuh), so the work is proportional to the
// kept blocks and a block in no list is never read. Blocks are 128 x 128 (BS_BLOCK); every
// kernel tile divides 128 (a 128 block is 1 or 2 tiles of 64 or 128 rows), and the in-tile
// position masks (causal, kv_len, T) run on every visited tile as in the dense kernels. A
// row that sees no key writes out 0 and lse -inf and gets no gradient.
#include "kernels/attention/blocksparse_cuda.cuh"

#include <stdio.h>

extern "C" {
#include "kernels/attention/flash_cuda.h"
}

// ----------------------------------------------------------------------------
// the device copy: the int32 arrays of the host allocation (lists and kv_len, contiguous
// after the struct), uploaded once, at the layout's first call; attn_bs_free releases it

static void dev_free(void *p) { cudaCheck(cudaFree(p)); }

static const int32_t *dev_of(const pb_block_layout *l, const int32_t *host) {
    return (const int32_t *)l->dev + (host - (const int32_t *)(l + 1));
}

bs_rows attn_bs_cuda_rows(const pb_block_layout *l, int transposed) {
    if (!l->dev) {
        // the layout is immutable once built: the copy is a cache, filled through the const
        // pointer the descriptor holds (calls run in order on one host thread)
        pb_block_layout *w = (pb_block_layout *)l;
        size_t bytes = (size_t)((const uint8_t *)l->mask - (const uint8_t *)(l + 1));
        void *dev;
        cudaCheck(cudaMalloc(&dev, bytes ? bytes : 4));
        cudaCheck(cudaMemcpy(dev, l + 1, bytes, cudaMemcpyHostToDevice));
        w->dev = dev;
        w->dev_free = dev_free;
    }
    const bs_lists *P = transposed ? &l->q : &l->kv, *F = transposed ? &l->full_q : &l->full_kv;
    bs_rows r;
    r.num[0] = dev_of(l, P->num), r.off[0] = dev_of(l, P->off), r.idx[0] = dev_of(l, P->idx);
    r.num[1] = dev_of(l, F->num), r.off[1] = dev_of(l, F->off), r.idx[1] = dev_of(l, F->idx);
    r.nb = l->nb, r.nh = l->nh, r.nblk = transposed ? l->nkb : l->nqb;
    return r;
}

// ----------------------------------------------------------------------------
// supports

static int cuda_block_ok(int block) { return block == BS_BLOCK; }

// Everything but the O(blocks) validation (the kernels' entry assertion).
static const char *bs_cuda_covers(const pb_attn_desc *d) {
    static thread_local char buf[128];
    if (!d->layout)
        return "no block-sparse layout (set attention.sparsity; for dense attention use wgmma "
               "or flash)";
    const char *why = attn_bs_covers(d, cuda_block_ok, "128 x 128");
    if (why) return why;
    if ((long)d->B * d->NH > 65535) return "more than 65535 batch rows x heads";
    if (d->drop_p > 0) return PB_ATTN_NO_DROP_CUDA;
    if (d->D > 128) {
        snprintf(buf, sizeof buf, "head dim %d (it runs up to 128)", d->D);
        return buf;
    }
    if (d->layout->nkb > BS_MAX_BLOCKS) {
        snprintf(buf, sizeof buf, "a layout of %d key blocks (its kernels stage up to %d)",
                 d->layout->nkb, BS_MAX_BLOCKS);
        return buf;
    }
    return NULL;
}

extern "C" const char *attn_bs_cuda_supports(const pb_attn_desc *d) {
    const char *why = bs_cuda_covers(d);
    return why ? why : attn_bs_check(d, cuda_block_ok, "128 x 128");
}

// ----------------------------------------------------------------------------
// run-time key lengths: a layout built with kv_len (nb) lists its padding edge blocks as
// partial, and the kernels mask inside a tile only by the descriptor's kv_len; so the two
// are folded into one (B) array, the smaller per row (blocksparse.h: both apply)

__global__ void bs_kv_min_kernel(int32_t *out, const int32_t *kv, const int32_t *lkv, int nb,
                                 int B) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    int a = lkv[nb == 1 ? 0 : b];
    out[b] = kv && kv[b] < a ? kv[b] : a;
}

static pb_attn_desc run_desc(const pb_attn_desc *d) {
    pb_attn_desc r = *d;
    const pb_block_layout *l = d->layout;
    if (!l->kv_len) return r;
    attn_bs_cuda_rows(l, 0);  // uploads l if it is not yet
    int32_t *kv = (int32_t *)cuda_scratch(CUDA_SCRATCH_BS_KV, (size_t)d->B * sizeof(int32_t));
    bs_kv_min_kernel<<<cdiv(d->B, 256), 256>>>(kv, d->kv_len, dev_of(l, l->kv_len), l->nb, d->B);
    cudaCheckLaunch();
    r.kv_len = kv;
    return r;
}

// ----------------------------------------------------------------------------
// the records: fp32 tensors run the fp32 kernel; bf16 ones the wgmma kernels at D 32, 64, 128,
// the fp32-arithmetic kernel on bf16 tensors at other D

static void bs_forward_bf16(float *out, float *lse, const float *qkv, const pb_attn_desc *d) {
    PB_ASSERT(!bs_cuda_covers(d));
    pb_attn_desc r = run_desc(d);
    if (attn_wgmma_cuda_head_dim(d->D)) attn_wgmma_cuda_bs_forward(out, lse, qkv, &r);
    else attn_flash_cuda_bs_forward_bf16(out, lse, qkv, &r);
}

static void bs_backward_bf16(float *dqkv, const float *dout, const float *out, const float *lse,
                             const float *qkv, const pb_attn_desc *d) {
    PB_ASSERT(!bs_cuda_covers(d));
    pb_attn_desc r = run_desc(d);
    if (attn_wgmma_cuda_head_dim(d->D))
        attn_wgmma_cuda_bs_backward(dqkv, dout, out, lse, qkv, &r);
    else attn_flash_cuda_bs_backward_bf16(dqkv, dout, out, lse, qkv, &r);
}

static void bs_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d) {
    PB_ASSERT(!bs_cuda_covers(d));
    pb_attn_desc r = run_desc(d);
    attn_flash_cuda_bs_forward(out, lse, qkv, &r);
}

static void bs_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                        const float *qkv, const pb_attn_desc *d) {
    PB_ASSERT(!bs_cuda_covers(d));
    pb_attn_desc r = run_desc(d);
    attn_flash_cuda_bs_backward(dqkv, dout, out, lse, qkv, &r);
}

extern "C" const pb_attn_impl attn_cuda_blocksparse = {"blocksparse", attn_bs_cuda_supports,
                                                       bs_forward, bs_backward};
extern "C" const pb_attn_impl attn_cuda_blocksparse_bf16 = {
    "blocksparse", attn_bs_cuda_supports, bs_forward_bf16, bs_backward_bf16};
