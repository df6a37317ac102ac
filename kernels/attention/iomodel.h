// iomodel.h: attention's slow-memory traffic in the two-level memory of the red-blue pebble
// game: a fast memory of M words that the algorithm manages, and a slow memory holding the
// inputs at the start and the outputs at the end. Every word loaded from or stored to slow
// memory counts, inputs and outputs included. One head (N queries = N keys, head dim d);
// B*NH heads multiply every count.
//
// The algorithms run their loop structure without the arithmetic (count, don't compute),
// tile by tile: io_mem is told "load rows r0.. of this matrix region" and counts the words.
// Two modes:
//   managed  the algorithm's own policy (what the pebble game counts): the words it loads and
//            stores, as it says. Its fast-memory footprint for the chosen tiles is checked
//            against M before it runs.
//   LRU      the same address trace (every word of every load and store, in order) fed to a
//            fully associative LRU cache of M words, write-allocate without fetch (a store
//            overwrites the word), dirty words written back on eviction and at the end. It
//            cross-checks the managed policy: by Sleator-Tarjan, LRU with 2M words moves at
//            most ~2x the optimum with M. Word by word, so for small N only.
//
// Tiles from M (what each algorithm prescribes; F is the footprint that must be <= M):
//   naive       none: a query row q_i, one key/value row, one score: F = 2d + 2.
//   flash fwd   Bc = max(1, min(d, floor(M / 4d))), then Br the largest with
//               F = Br (2d + Bc + 2) + 2 Bc d <= M (Q_i, O_i, S_ij, m, l; K_j, V_j), Br <= N.
//               (The FlashAttention paper's Bc = M/4d, Br = min(Bc, d) can exceed M by the
//               Br x Bc score tile and stops improving at M = 4d^2; this choice fits M and
//               keeps Br ~ M/3d growing, which the bound's first term needs.)
//   flash bwd   Br = max(1, min(d, floor(M / 6d))), then Bc the largest with
//               F = Bc (4d + 2 Br) + Br (3d + 2) <= M (K_j, V_j, dK_j, dV_j; Q_i, dO_i,
//               dQ_i, S/dS tiles, lse_i, D_i), Bc <= N.
//   smallcache  b the largest with 3 b^2 <= M (two operand tiles and the output tile of a
//               tile product), b <= N.
//   blocksparse the layout's block: Br = Bc = block, flash's F with those.
//
// Closed forms (words, one head; Tr = ceil(N/Br), Tc = ceil(N/Bc), tb = ceil(N/b),
// db = ceil(d/b); every count is exact, ragged last tiles included):
//   naive fwd   S = QK^T row by row: Nd + N^2 d loads, N^2 stores; softmax in 3 streaming
//               passes over each row (max, sum, normalise): 3N^2 loads, N^2 + N stores
//               (P, lse); O = PV: N^2 + N^2 d loads, Nd stores.
//               = 2N^2 d + 4N^2 + Nd loads, 2N^2 + Nd + N stores
//   naive bwd   (P saved by the forward) dV = P^T dO: N^2 + N^2 d loads, Nd stores; dP = dO V^T:
//               Nd + N^2 d loads, N^2 stores; D = rowsum(dO o O): 2Nd loads, N stores;
//               dS = P o (dP - D): 2N^2 + N loads, N^2 stores; dQ = dS K, dK = dS^T Q:
//               2(N^2 + N^2 d) loads, 2Nd stores.
//               = 4N^2 d + 5N^2 + 3Nd + N loads, 2N^2 + 3Nd + N stores
//   flash fwd   Nd (Q) + 2 Nd Tr (K, V once per query tile) loads; Nd + N (O, lse) stores
//   flash bwd   2Nd (dO, O for D) + 2Nd (K, V) + Tc (2Nd + 2N) (Q, dO, lse, D) + (Tc - 1) Nd
//               (dQ, accumulated in slow memory, not loaded on the first key tile) loads;
//               N (D) + Tc Nd (dQ) + 2Nd (dK, dV) stores
//   smallcache fwd  S by b x b output tiles over d in chunks of b: 2 Nd tb loads, N^2 stores;
//               row softmax: one pass if a row fits (N + 2 <= M: N^2 loads, N^2 + N stores),
//               else two (online max and sum, then normalise: 2N^2 loads, N^2 + N stores);
//               O = PV by (b x b) output tiles: N^2 db + Nd tb loads, Nd stores
//   smallcache bwd  (P saved) dV = P^T dO: N^2 db + Nd tb loads, Nd stores; dP = dO V^T:
//               2 Nd tb loads, N^2 stores; D: 2Nd loads, N stores; dS = P o (dP - D):
//               2N^2 + N loads, N^2 stores; dQ = dS K, dK = dS^T Q: 2(N^2 db + Nd tb) loads,
//               2Nd stores
//   blocksparse fwd  Nd (Q) + sum over kept blocks of 2 bc d (K_j, V_j) loads; Nd + N stores
//   blocksparse bwd  2Nd (D) + per key block with a non-empty list 2 bc d (K, V) and per
//               visited (q, k) pair 2 br d + 2 br (Q, dO, lse, D) + br d (dQ, except a query
//               block's first visit) loads; N + per pair br d (dQ) + 2 bc d per listed key
//               block (dK, dV) stores
//
// Bounds (one head): forward Theta(min(N^2 d^2 / M, N^2 d / sqrt M)) (Saha & Ye 2024);
// backward Theta(min((N^2 d^2 + N d^3) / M, (N^2 d + N d^2) / sqrt M)) (Li et al. 2024);
// io_bound gives the expressions without constants.
#ifndef PEBBLE_IOMODEL_H
#define PEBBLE_IOMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/attention/blocksparse.h"

typedef enum { IO_NAIVE = 0, IO_FLASH = 1, IO_BLOCKSPARSE = 2, IO_SMALLCACHE = 3 } io_algo;
typedef enum { IO_FWD = 0, IO_BWD = 1 } io_pass;

typedef struct io_lru io_lru;

// The simulated memory: counts, and in LRU mode the cache.
typedef struct io_mem {
    long long M;              // fast memory words
    long long loads, stores;  // managed mode: words the algorithm moved; LRU: misses, write-backs
    io_lru *lru;              // NULL: managed mode
} io_mem;

// Tiles of one run: br x bc (flash, blocksparse), b (smallcache). 0 = from M.
typedef struct io_tiles {
    int br, bc, b;
    int one_pass;  // smallcache: a score row fits in fast memory (one softmax pass)
} io_tiles;

int io_algo_parse(const char *name, io_algo *a);
const char *io_algo_name(io_algo a);

// The tiles algo a prescribes for M (above), or -1 when M is too small for it to run, with
// one line in why naming the smallest M it needs. layout: blocksparse only.
int io_tiles_for(io_algo a, io_pass p, long long N, int d, long long M,
                 const pb_block_layout *layout, io_tiles *t, char *why, size_t whylen);

// Fast memory words the algorithm holds with tiles t.
long long io_footprint(io_algo a, io_pass p, long long N, int d, const io_tiles *t,
                       const pb_block_layout *layout);

// Runs algorithm a, pass p, on one head against mem (managed or LRU) with tiles t; adds to
// mem->loads and mem->stores. layout: blocksparse only (its T is N).
void io_run(io_mem *mem, io_algo a, io_pass p, long long N, int d, const io_tiles *t,
            const pb_block_layout *layout);

// The closed form of the managed count (loads + stores) with tiles t (the formulas above).
double io_closed_form(io_algo a, io_pass p, long long N, int d, const io_tiles *t,
                      const pb_block_layout *layout);

// The lower bound's expression (no constant) for pass p.
double io_bound(io_pass p, double N, double d, double M);

// LRU mode: mem->lru = a cache of M words; io_lru_finish writes back the dirty words (adds to
// stores) and frees it.
void io_lru_init(io_mem *mem, long long M);
void io_lru_finish(io_mem *mem);

#endif
