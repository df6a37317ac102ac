// blocksparse.h: block-sparse attention layouts (pb_block_layout, the mask format that
// pb_attn_desc.layout carries) and the patterns pebble builds them from.
//
// The shape is PyTorch FlexAttention's BlockMask, so that a layout can be compared one to
// one: square blocks of `block` queries by `block` keys (the kernel's tile: an
// implementation refuses a layout of another block size), and per head (and optionally per
// batch row), for each query block the key blocks to visit, split into FULL ones (no element
// masked: full_kv_num_blocks / full_kv_indices) and PARTIAL ones (some element masked by the
// causal diagonal or the padding edge: kv_num_blocks / kv_indices), plus the transposed
// lists, per key block its query blocks (q_num_blocks / q_indices and the full ones), which
// the backward's dK/dV walk uses. A block none of whose elements is visible is in no list.
//
// What the element mask is. Key j is visible to query i of head h in batch row b when
//   mask[b', h', i / block, j / block] && (!causal || j <= i) && j < kv_len[b]
// with b' = (nb == 1 ? 0 : b), h' = (nh == 1 ? 0 : h); kv_len is the layout's (if it was
// built with one) and, at run time, the descriptor's as well (both apply). The layout's
// causal flag must equal the descriptor's. A query row that sees no key at all (a query
// block with empty lists) gets output 0 and lse -inf, and no gradient: FlexAttention's rule.
//
// Memory layout: one allocation. Lists are CSR, not FlexAttention's padded
// [B,H,Q_BLOCKS,KV_BLOCKS]: memory proportional to the kept blocks. For list kind X (kv,
// full_kv over rows r = (b'*nh + h')*nqb + qb; q, full_q over columns c = (b'*nh + h')*nkb
// + kb):
//   X.num[r]  (int32) how many blocks row r lists (FlexAttention's *_num_blocks)
//   X.off[r]  (int32) where they start in X.idx; off[0] = 0, off[r+1] = off[r] + num[r]
//   X.idx[off[r] .. off[r]+num[r]-1]  (int32) block indices, strictly ascending
// mask (nb,nh,nqb,nkb) bytes holds the block mask as the pattern gave it (before causal and
// padding), and kv_len (nb) the padding it was built with (NULL: none).
//
// Built once per shape on the host, in O(nb*nh*nqb*nkb) time. The CPU backend reads it in
// place (host memory is its memory). The CUDA backend (blocksparse_cuda.cu) copies the int32
// arrays (the four lists and kv_len, contiguous after the struct) to the device once, at the
// layout's first CUDA call, into `dev`, and sets `dev_free`, which attn_bs_free calls: CPU
// code frees a device copy without linking CUDA. The copy is a cache of immutable data (a
// layout never changes after it is built), so the const layout of a descriptor may fill it.
#ifndef PEBBLE_BLOCKSPARSE_H
#define PEBBLE_BLOCKSPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

// Patterns (attention.sparsity). Grows at the end.
typedef enum {
    BS_DENSE = 0,                // every block
    BS_LOCAL_GLOBAL_RANDOM = 1,  // window + global + random (BigBird's shape), per head
    BS_BUTTERFLY = 2,            // flat butterfly (Pixelated Butterfly) + global
} bs_pattern;

// The block mask of a pattern over n = ceil(T/block) query and key blocks:
//   dense:     every (i, j)
//   local+global+random: |i - j| <= window, or i < global (global query blocks see every key
//              block), or j < global (every query block sees the global key blocks), or one
//              of `random` further key blocks drawn per query block without replacement from
//              those not yet kept (and, when causal, with j <= i, so that none is wasted
//              above the diagonal), by a generator seeded with (seed, head, i): the random
//              blocks differ per head, the layout then has nh = NH (else nh = 1)
//   butterfly: i == j, or i XOR j a power of two (the union of the butterfly factors'
//              supports), or i < global, or j < global; window and random are not used
typedef struct bs_params {
    bs_pattern pattern;
    int block;   // block size, queries and keys (the kernel's tile)
    int window;  // local+global+random: key blocks kept on each side of the diagonal
    int global;  // leading blocks that are global (rows and columns)
    int random;  // local+global+random: random key blocks per query block row
    uint64_t seed;
} bs_params;

typedef struct bs_lists {
    int32_t *num, *off, *idx;
} bs_lists;

struct pb_block_layout {
    int block;          // block size, queries and keys
    int T;              // the sequence length it covers: nqb = nkb = ceil(T / block)
    int nqb, nkb;
    int nb, nh;         // batch rows and heads it has: 1 (shared by all) or B / NH
    int causal;         // built with the causal mask
    int32_t *kv_len;    // (nb) key lengths it was built with, or NULL
    uint8_t *mask;      // (nb,nh,nqb,nkb) the pattern's block mask, 1 = kept
    bs_lists kv, full_kv;  // per query block: partial and full key blocks
    bs_lists q, full_q;    // per key block: partial and full query blocks (transposed)
    size_t bytes;          // of the one allocation
    long kept;             // blocks listed (full + partial), over all nb*nh
    void *dev;                 // the CUDA backend's device copy of the int32 arrays, or NULL
    void (*dev_free)(void *);  // releases dev (set with it); attn_bs_free calls it
};

// "dense", "local+global+random", "butterfly" <-> the enum; parse returns -1 if unknown.
int attn_bs_pattern_parse(const char *name, bs_pattern *p);
const char *attn_bs_pattern_name(bs_pattern p);

// The layout of pattern p for NH heads over T positions, causal or not; kv_len (B) or NULL:
// with it the layout is per batch row (nb = B), its padding edge blocks partial and the
// blocks past it dropped. NULL with one line in err for bad parameters (block < 1, window,
// global or random < 0, T < 1).
pb_block_layout *attn_bs_build(const bs_params *p, int T, int NH, int causal,
                               const int32_t *kv_len, int B, char *err, size_t errlen);

// A layout from a block mask (nb,nh,nqb,nkb), nqb = nkb = ceil(T/block) (1 = kept): the lists
// and the full/partial split follow from it, causal and kv_len (nb) or NULL.
pb_block_layout *attn_bs_from_mask(const uint8_t *mask, int block, int T, int nb, int nh,
                                   int causal, const int32_t *kv_len, char *err,
                                   size_t errlen);

void attn_bs_free(pb_block_layout *l);

// The layout a model with model.attention = want runs at T with NH heads: built from p when
// want is "blocksparse" (per head, no padding: a batch's key lengths apply at run time
// through the descriptor), NULL (dense) otherwise. 0, or -1 with one line in err.
int attn_bs_for_model(const char *want, const bs_params *p, int T, int NH, int causal,
                      pb_block_layout **out, char *err, size_t errlen);

// A model's attention at d's shape: the layout attn_bs_for_model gives it into *layout and
// d->layout (the caller frees it with attn_bs_free), and the implementation that runs d.
// NULL with one line in err (then nothing is kept).
const pb_attn_impl *attn_bs_setup(const pb_ops *ops, const char *want, const bs_params *p,
                                  pb_attn_desc *d, pb_block_layout **layout, char *err,
                                  size_t errlen);
// The same, the layout built and dropped: this answers "can it run".
const pb_attn_impl *attn_bs_choose(const pb_ops *ops, const char *want, const bs_params *p,
                                   pb_attn_desc d, char *err, size_t errlen);

// NULL when l is well formed, else why not (a phrase, in a buffer of the calling thread):
// counts and offsets consistent, indices in range, strictly ascending (sorted, no
// duplicates), full and partial disjoint, each listed block kept by the mask and really
// full or partial under causal and kv_len, every kept block with a visible element listed,
// and the transposed lists exactly the transpose of the forward ones.
const char *attn_bs_validate(const pb_block_layout *l);

// The share of the nqb*nkb blocks (per head and row, averaged) that are listed: the block
// density s of the I/O bound Theta(Nd + N^2 d^2 s / M).
double attn_bs_density(const pb_block_layout *l);

// What every block-sparse implementation checks of d before it runs it (a layout present,
// self-attention, the layout's T, nb, nh and causal flag matching d), with block_ok saying
// which block sizes the kernel runs (`blocks` names them in the phrase); NULL when d is
// covered. attn_bs_check adds attn_bs_validate (O(blocks): supports() only, once per model).
const char *attn_bs_covers(const pb_attn_desc *d, int (*block_ok)(int), const char *blocks);
const char *attn_bs_check(const pb_attn_desc *d, int (*block_ok)(int), const char *blocks);

// The block sizes the CPU kernel runs: multiples of its 16-column register block up to
// ATTN_TILE_MAX. attn_bs_supports refuses others, naming both.
#define ATTN_BS_CPU_BLOCKS "16, 32, 64 or 128"
int attn_bs_cpu_block_ok(int block);

#endif
