// attention.h: the attention algorithms of the CPU backend. All share the shapes and the
// contract of pb_attn_impl in kernels/ops.h: qkv (B,T,3C), out (B,T,C), lse (B,NH,T),
// scores scaled by desc->scale, masks as the descriptor says.
#ifndef PEBBLE_ATTENTION_H
#define PEBBLE_ATTENTION_H

#include <stdint.h>

#include "kernels/common.h"
#include "kernels/dropout.h"
#include "kernels/ops.h"

// naive: materialises each head's T x T score matrix. The reference.
const char *attn_naive_supports(const pb_attn_desc *d);
void attn_naive_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_naive_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, const pb_attn_desc *d);

// naive with an element mask on top of the descriptor's masks: mask (B,NH,T,T), 1 where
// key j is visible to query i of head (b, h). The reference of block-sparse attention (the
// test expands a layout's block mask into it, independently of the layout's block lists). A
// row left no key gets out 0, lse -inf and gradient 0. d->layout is ignored.
void attn_naive_masked_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d,
                               const uint8_t *mask);
void attn_naive_masked_backward(float *dqkv, const float *dout, const float *out,
                                const float *lse, const float *qkv, const pb_attn_desc *d,
                                const uint8_t *mask);

// flash: FlashAttention-2 style tiling with an online softmax; saves only lse, and the
// backward recomputes score tiles from q, k and lse. Memory linear in T.
const char *attn_flash_supports(const pb_attn_desc *d);
void attn_flash_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_flash_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, const pb_attn_desc *d);

// The tiled loops of flash.c, over tile lists: the forward visits, for query tile qt of
// head (b, h), the key tiles kv_tiles lists; the backward, for key tile kt, the query tiles
// q_tiles lists (each list ascending, the transposed relation of the other). The loops cut
// every list at the causal diagonal and at kv_len[b] and mask within a tile by position;
// flash lists every tile, blocksparse.c its layout's blocks. Tiles bq x bk, at most
// ATTN_TILE_MAX each (the per-row statistics live on the stack); causal needs bq == bk for
// block lists (a listed tile then shows each of its rows at least one key).
#define ATTN_TILE_MAX 128
typedef struct attn_tiles {
    int bq, bk;
    int (*kv_tiles)(const void *ctx, int b, int h, int qt, int32_t *kt);  // forward
    int (*q_tiles)(const void *ctx, int b, int h, int kt, int32_t *qt);   // backward
    const void *ctx;
} attn_tiles;
void attn_tiled_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d,
                        const attn_tiles *t);
void attn_tiled_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                         const float *qkv, const pb_attn_desc *d, const attn_tiles *t);

// Keys of batch row b that are not padding: kv_len[b], or all T without a key-padding mask.
// Checked although the caller guarantees 1 <= kv_len[b] <= T: a 0 would leave rows with no
// key and a T+1 would read the next row's keys.
static inline int attn_key_len(const pb_attn_desc *ad, int b) {
    if (!ad->kv_len) return ad->T;
    int n = ad->kv_len[b];
    PB_ASSERT(n >= 1 && n <= ad->T);
    return n;
}

// The weight the descriptor's dropout gives probability P_ij of head (b, h) (kernels/ops.h):
// 1 without dropout, else 1 / (1 - p) where kept and 0 where dropped; thr =
// pb_drop_threshold(p), computed once by the caller.
static inline float attn_drop_weight(const pb_attn_desc *ad, uint32_t thr, int b, int h, int i,
                                     int j) {
    if (ad->drop_p <= 0) return 1.0f;
    uint64_t e = (((uint64_t)b * ad->NH + h) * ad->T + i) * ad->Tk + j;
    return pb_drop_keep(ad->drop_key, e, thr) ? pb_drop_scale(ad->drop_p) : 0.0f;
}

// blocksparse (blocksparse.c): flash's tiles over the blocks of d->layout only
// (kernels/attention/blocksparse.h: the format, the patterns, the supported block sizes).
const char *attn_bs_supports(const pb_attn_desc *d);
void attn_bs_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_bs_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                      const float *qkv, const pb_attn_desc *d);

// smallcache (smallcache.c): the sqrt(M)-tiled algorithm for a fast memory M < D^2: the
// scores S = QK^T materialised per head by square tiles, softmax rows, O = PV by square
// tiles; the backward as five tiled products. Memory: one (T,T) fp32 buffer per thread.
const char *attn_smallcache_supports(const pb_attn_desc *d);
void attn_smallcache_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
void attn_smallcache_backward(float *dqkv, const float *dout, const float *out,
                              const float *lse, const float *qkv, const pb_attn_desc *d);

// The descriptor checks the CPU algorithms share: self-attention (Tk == T), no block layout.
// NULL when d is one they run, else why not.
const char *attn_cpu_dense_supports(const pb_attn_desc *d);

// decode (decode.c): generation with a KV cache, the op table's attention_decode
// (kernels/ops.h). Forward only: nothing is saved for a backward.
void attn_decode_forward(float *out, const float *q, int q_stride, const float *kcache,
                         const float *vcache, int pos0, int n, int NH, int D, int maxT);

#endif
