// iomodel.c: the algorithms of kernels/attention/ as loop structures over tiles, moving words
// between a simulated slow memory and a fast memory of M words (iomodel.h has the model, the
// tile rules and the closed forms this file must equal, which tests/test_iomodel.c checks).
//
// Each algorithm is the loop nest of its CPU kernel with the arithmetic left out: where the
// kernel reads a tile into cache the model loads it, where it writes a result out the model
// stores it. Slow memory is one address space of regions (Q, K, V, O, lse, S/P, dO, ...), so
// the LRU mode sees real addresses.
#include "kernels/attention/iomodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"

static const char *const ALGO_NAMES[] = {"naive", "flash", "blocksparse", "smallcache"};

int io_algo_parse(const char *name, io_algo *a) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, ALGO_NAMES[i]) == 0) return *a = (io_algo)i, 0;
    return -1;
}

const char *io_algo_name(io_algo a) { return (unsigned)a < 4 ? ALGO_NAMES[a] : "?"; }

double io_bound(io_pass p, double N, double d, double M) {
    if (p == IO_FWD) return fmin(N * N * d * d / M, N * N * d / sqrt(M));
    return fmin((N * N * d * d + N * d * d * d) / M, (N * N * d + N * d * d) / sqrt(M));
}

static long long cdiv(long long a, long long b) { return (a + b - 1) / b; }
static long long lmin(long long a, long long b) { return a < b ? a : b; }

// ----------------------------------------------------------------------------
// LRU: a hash table of addresses into a doubly linked list of at most M words

struct io_lru {
    long long cap, n;
    int64_t *addr;            // (cap) the word each slot holds
    int64_t *prev, *next;     // (cap) the recency list; head = most recent
    uint8_t *dirty;           // (cap)
    int64_t head, tail;
    int64_t *table;           // open addressing: slot + 1, 0 empty, -1 deleted
    long long tsize;          // a power of two >= 2 cap
};

static uint64_t hash64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

void io_lru_init(io_mem *m, long long M) {
    io_lru *c = pb_calloc(1, sizeof *c);
    c->cap = M;
    c->addr = pb_malloc((size_t)M * sizeof(int64_t));
    c->prev = pb_malloc((size_t)M * sizeof(int64_t));
    c->next = pb_malloc((size_t)M * sizeof(int64_t));
    c->dirty = pb_calloc((size_t)M, 1);
    for (c->tsize = 16; c->tsize < 2 * M; c->tsize *= 2) {}
    c->table = pb_calloc((size_t)c->tsize, sizeof(int64_t));
    c->head = c->tail = -1;
    m->lru = c;
}

// The table cell of address a: where it is, or the free cell its probe ends at. Linear
// probing with deletion by backward shift (no tombstones, so probes stay short under the
// constant evictions of a full cache).
static long long lru_find(io_lru *c, int64_t a, int *found) {
    long long mask = c->tsize - 1, i = (long long)(hash64((uint64_t)a) & (uint64_t)mask);
    for (;; i = (i + 1) & mask) {
        int64_t e = c->table[i];
        if (e == 0) return *found = 0, i;
        if (c->addr[e - 1] == a) return *found = 1, i;
    }
}

static void lru_delete(io_lru *c, long long i) {
    long long mask = c->tsize - 1, j = i;
    c->table[i] = 0;
    for (;;) {
        j = (j + 1) & mask;
        int64_t e = c->table[j];
        if (e == 0) return;
        long long home = (long long)(hash64((uint64_t)c->addr[e - 1]) & (uint64_t)mask);
        // e may move into the hole at i when its home is not in (i, j] cyclically
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            c->table[i] = e;
            c->table[j] = 0;
            i = j;
        }
    }
}

static void list_unlink(io_lru *c, int64_t s) {
    if (c->prev[s] >= 0) c->next[c->prev[s]] = c->next[s]; else c->head = c->next[s];
    if (c->next[s] >= 0) c->prev[c->next[s]] = c->prev[s]; else c->tail = c->prev[s];
}

static void list_push(io_lru *c, int64_t s) {
    c->prev[s] = -1;
    c->next[s] = c->head;
    if (c->head >= 0) c->prev[c->head] = s;
    c->head = s;
    if (c->tail < 0) c->tail = s;
}

static void lru_access(io_mem *m, int64_t a, int write) {
    io_lru *c = m->lru;
    int found;
    long long cell = lru_find(c, a, &found);
    if (found) {
        int64_t s = c->table[cell] - 1;
        list_unlink(c, s);
        list_push(c, s);
        c->dirty[s] |= (uint8_t)write;
        return;
    }
    if (!write) m->loads++;  // a store overwrites the word: nothing to fetch
    int64_t s;
    if (c->n < c->cap) {
        s = c->n++;
    } else {  // evict the least recent, writing it back if dirty
        s = c->tail;
        list_unlink(c, s);
        int f2;
        lru_delete(c, lru_find(c, c->addr[s], &f2));
        m->stores += c->dirty[s];
        cell = lru_find(c, a, &found);  // the deletion may have moved the free cell
    }
    c->addr[s] = a;
    c->dirty[s] = (uint8_t)write;
    c->table[cell] = s + 1;
    list_push(c, s);
}

void io_lru_finish(io_mem *m) {
    io_lru *c = m->lru;
    for (long long s = 0; s < c->n; s++) m->stores += c->dirty[s];
    free(c->addr), free(c->prev), free(c->next), free(c->dirty), free(c->table), free(c);
    m->lru = NULL;
}

// ----------------------------------------------------------------------------
// slow memory: regions of one head, and tile moves

typedef enum { R_Q, R_K, R_V, R_O, R_LSE, R_S, R_DO, R_DQ, R_DK, R_DV, R_D, R_DP, R_N } region;

typedef struct {
    io_mem *m;
    long long N;
    int d;
    int64_t base[R_N];
} slow;

static void slow_init(slow *s, io_mem *m, long long N, int d) {
    s->m = m, s->N = N, s->d = d;
    int64_t at = 0;
    for (int r = 0; r < R_N; r++) {
        s->base[r] = at;
        at += r == R_S || r == R_DP ? N * N : r == R_LSE || r == R_D ? N : N * (int64_t)d;
    }
}

// Moves the rows r0..r0+nr-1, columns c0..c0+nc-1 of region r (row length d, or N for the
// N x N ones, 1 for the vectors).
static void move(slow *s, region r, long long r0, long long nr, long long c0, long long nc,
                 int write) {
    if (!s->m->lru) {
        if (write) s->m->stores += nr * nc;
        else s->m->loads += nr * nc;
        return;
    }
    long long ld = r == R_S || r == R_DP ? s->N : r == R_LSE || r == R_D ? 1 : s->d;
    for (long long i = r0; i < r0 + nr; i++)
        for (long long j = c0; j < c0 + nc; j++) lru_access(s->m, s->base[r] + i * ld + j, write);
}
#define LOAD(s, r, r0, nr, c0, nc) move(s, r, r0, nr, c0, nc, 0)
#define STORE(s, r, r0, nr, c0, nc) move(s, r, r0, nr, c0, nc, 1)

// ----------------------------------------------------------------------------
// naive: naive.c's loops, row by row

static void naive_fwd(slow *s) {
    long long N = s->N;
    int d = s->d;
    for (long long i = 0; i < N; i++) {  // S = Q K^T
        LOAD(s, R_Q, i, 1, 0, d);
        for (long long j = 0; j < N; j++) {
            LOAD(s, R_K, j, 1, 0, d);
            STORE(s, R_S, i, 1, j, 1);
        }
    }
    for (long long i = 0; i < N; i++) {  // softmax: max, sum, normalise
        for (long long j = 0; j < N; j++) LOAD(s, R_S, i, 1, j, 1);
        for (long long j = 0; j < N; j++) LOAD(s, R_S, i, 1, j, 1);
        for (long long j = 0; j < N; j++) {
            LOAD(s, R_S, i, 1, j, 1);
            STORE(s, R_S, i, 1, j, 1);
        }
        STORE(s, R_LSE, i, 1, 0, 1);
    }
    for (long long i = 0; i < N; i++) {  // O = P V, o_i in fast memory
        for (long long j = 0; j < N; j++) {
            LOAD(s, R_S, i, 1, j, 1);
            LOAD(s, R_V, j, 1, 0, d);
        }
        STORE(s, R_O, i, 1, 0, d);
    }
}

// one product C (rows of C) = A (N x N, read as given) x B (rows of d), one output row at a
// time: dV = P^T dO, dQ = dS K, dK = dS^T Q
static void naive_rows_product(slow *s, region A, int transposed, region Bm, region Cm) {
    long long N = s->N;
    for (long long i = 0; i < N; i++) {
        for (long long j = 0; j < N; j++) {
            if (transposed) LOAD(s, A, j, 1, i, 1);
            else LOAD(s, A, i, 1, j, 1);
            LOAD(s, Bm, j, 1, 0, s->d);
        }
        STORE(s, Cm, i, 1, 0, s->d);
    }
}

static void naive_bwd(slow *s) {
    long long N = s->N;
    int d = s->d;
    naive_rows_product(s, R_S, 1, R_DO, R_DV);
    for (long long i = 0; i < N; i++) {  // dP = dO V^T
        LOAD(s, R_DO, i, 1, 0, d);
        for (long long j = 0; j < N; j++) {
            LOAD(s, R_V, j, 1, 0, d);
            STORE(s, R_DP, i, 1, j, 1);
        }
    }
    for (long long i = 0; i < N; i++) {  // D = rowsum(dO o O)
        LOAD(s, R_DO, i, 1, 0, d);
        LOAD(s, R_O, i, 1, 0, d);
        STORE(s, R_D, i, 1, 0, 1);
    }
    for (long long i = 0; i < N; i++) {  // dS = P o (dP - D), into P's place
        LOAD(s, R_D, i, 1, 0, 1);
        for (long long j = 0; j < N; j++) {
            LOAD(s, R_S, i, 1, j, 1);
            LOAD(s, R_DP, i, 1, j, 1);
            STORE(s, R_S, i, 1, j, 1);
        }
    }
    naive_rows_product(s, R_S, 0, R_K, R_DQ);
    naive_rows_product(s, R_S, 1, R_Q, R_DK);
}

// ----------------------------------------------------------------------------
// flash and blocksparse: flash.c's tiles (FA-2), over every tile or a layout's blocks

// The tiles row r of a tile list visits: all n, or the layout's (head 0, batch row 0) from
// its partial and full lists x and y (the order does not change the count).
static int tile_list(const pb_block_layout *l, const bs_lists *x, const bs_lists *y, long long r,
                     long long n, int32_t *out) {
    if (!l) {
        for (long long j = 0; j < n; j++) out[j] = (int32_t)j;
        return (int)n;
    }
    int k = 0;
    for (int e = 0; e < x->num[r]; e++) out[k++] = x->idx[x->off[r] + e];
    for (int e = 0; e < y->num[r]; e++) out[k++] = y->idx[y->off[r] + e];
    return k;
}

static void flash_fwd(slow *s, long long Br, long long Bc, const pb_block_layout *l) {
    long long N = s->N, Tr = cdiv(N, Br), Tc = cdiv(N, Bc);
    int d = s->d;
    int32_t *list = pb_malloc((size_t)Tc * sizeof(int32_t));
    for (long long qi = 0; qi < Tr; qi++) {
        long long i0 = qi * Br, br = lmin(Br, N - i0);
        LOAD(s, R_Q, i0, br, 0, d);
        int n = tile_list(l, l ? &l->kv : NULL, l ? &l->full_kv : NULL, qi, Tc, list);
        for (int e = 0; e < n; e++) {
            long long j0 = list[e] * Bc, bc = lmin(Bc, N - j0);
            LOAD(s, R_K, j0, bc, 0, d);
            LOAD(s, R_V, j0, bc, 0, d);
        }
        STORE(s, R_O, i0, br, 0, d);
        STORE(s, R_LSE, i0, br, 0, 1);
    }
    free(list);
}

static void flash_bwd(slow *s, long long Br, long long Bc, const pb_block_layout *l) {
    long long N = s->N, Tr = cdiv(N, Br), Tc = cdiv(N, Bc);
    int d = s->d;
    for (long long i0 = 0; i0 < N; i0 += Br) {  // D = rowsum(dO o O)
        long long br = lmin(Br, N - i0);
        LOAD(s, R_DO, i0, br, 0, d);
        LOAD(s, R_O, i0, br, 0, d);
        STORE(s, R_D, i0, br, 0, 1);
    }
    int32_t *list = pb_malloc((size_t)Tr * sizeof(int32_t));
    uint8_t *seen = pb_calloc((size_t)Tr, 1);  // dQ_i already in slow memory
    for (long long kj = 0; kj < Tc; kj++) {
        long long j0 = kj * Bc, bc = lmin(Bc, N - j0);
        int n = tile_list(l, l ? &l->q : NULL, l ? &l->full_q : NULL, kj, Tr, list);
        if (n == 0) continue;
        LOAD(s, R_K, j0, bc, 0, d);
        LOAD(s, R_V, j0, bc, 0, d);
        for (int e = 0; e < n; e++) {
            long long qi = list[e], i0 = qi * Br, br = lmin(Br, N - i0);
            LOAD(s, R_Q, i0, br, 0, d);
            LOAD(s, R_DO, i0, br, 0, d);
            LOAD(s, R_LSE, i0, br, 0, 1);
            LOAD(s, R_D, i0, br, 0, 1);
            if (seen[qi]) LOAD(s, R_DQ, i0, br, 0, d);
            seen[qi] = 1;
            STORE(s, R_DQ, i0, br, 0, d);
        }
        STORE(s, R_DK, j0, bc, 0, d);
        STORE(s, R_DV, j0, bc, 0, d);
    }
    free(list);
    free(seen);
}

// ----------------------------------------------------------------------------
// smallcache: smallcache.c's square tiles

// C (rows x cols) = A (rows x inner) B (inner x cols) by b x b output tiles, each summed over
// the inner dimension in chunks of b: load an A tile and a B tile per step, store C's tile.
// at(A, i, j) is region A's element (i, j), transposed when a_t (read as A^T), likewise B.
static void tiled(slow *s, long long b, long long rows, long long inner, long long cols,
                  region A, int a_t, region Bm, int b_t, region Cm) {
    for (long long i0 = 0; i0 < rows; i0 += b)
        for (long long c0 = 0; c0 < cols; c0 += b) {
            long long br = lmin(b, rows - i0), bc = lmin(b, cols - c0);
            for (long long k0 = 0; k0 < inner; k0 += b) {
                long long bk = lmin(b, inner - k0);
                if (a_t) LOAD(s, A, k0, bk, i0, br);
                else LOAD(s, A, i0, br, k0, bk);
                if (b_t) LOAD(s, Bm, c0, bc, k0, bk);
                else LOAD(s, Bm, k0, bk, c0, bc);
            }
            STORE(s, Cm, i0, br, c0, bc);
        }
}

static void smallcache_fwd(slow *s, const io_tiles *t) {
    long long b = t->b;
    long long N = s->N;
    int d = s->d;
    tiled(s, b, N, d, N, R_Q, 0, R_K, 1, R_S);  // S = Q K^T
    int one_pass = t->one_pass;
    for (long long i = 0; i < N; i++) {  // softmax rows from slow memory
        LOAD(s, R_S, i, 1, 0, N);
        if (!one_pass) LOAD(s, R_S, i, 1, 0, N);
        STORE(s, R_S, i, 1, 0, N);
        STORE(s, R_LSE, i, 1, 0, 1);
    }
    tiled(s, b, N, N, d, R_S, 0, R_V, 0, R_O);  // O = P V
}

static void smallcache_bwd(slow *s, long long b) {
    long long N = s->N;
    int d = s->d;
    tiled(s, b, N, N, d, R_S, 1, R_DO, 0, R_DV);  // dV = P^T dO
    tiled(s, b, N, d, N, R_DO, 0, R_V, 1, R_DP);  // dP = dO V^T
    for (long long i0 = 0; i0 < N; i0 += b) {     // D = rowsum(dO o O)
        long long br = lmin(b, N - i0);
        LOAD(s, R_DO, i0, br, 0, d);
        LOAD(s, R_O, i0, br, 0, d);
        STORE(s, R_D, i0, br, 0, 1);
    }
    for (long long i0 = 0; i0 < N; i0 += b) {  // dS = P o (dP - D) by tiles, into P's place
        long long br = lmin(b, N - i0);
        LOAD(s, R_D, i0, br, 0, 1);
        for (long long j0 = 0; j0 < N; j0 += b) {
            long long bc = lmin(b, N - j0);
            LOAD(s, R_S, i0, br, j0, bc);
            LOAD(s, R_DP, i0, br, j0, bc);
            STORE(s, R_S, i0, br, j0, bc);
        }
    }
    tiled(s, b, N, N, d, R_S, 0, R_K, 0, R_DQ);  // dQ = dS K
    tiled(s, b, N, N, d, R_S, 1, R_Q, 0, R_DK);  // dK = dS^T Q
}

// ----------------------------------------------------------------------------
// tiles, footprints, closed forms

long long io_footprint(io_algo a, io_pass p, long long N, int d, const io_tiles *t,
                       const pb_block_layout *l) {
    long long br = t->br, bc = t->bc;
    switch (a) {
    case IO_NAIVE: return 2LL * d + 2;
    case IO_SMALLCACHE: return 3LL * t->b * t->b;
    default:
        if (p == IO_FWD) return br * (2LL * d + bc + 2) + 2 * bc * d;
        return bc * (4LL * d + 2 * br) + br * (3LL * d + 2);
    }
}

int io_tiles_for(io_algo a, io_pass p, long long N, int d, long long M,
                 const pb_block_layout *l, io_tiles *t, char *why, size_t whylen) {
    *t = (io_tiles){0, 0, 0, 0};
    long long need;
    switch (a) {
    case IO_NAIVE: need = 2LL * d + 2; break;
    case IO_SMALLCACHE:
        t->one_pass = N + 2 <= M;  // a score row and its max and sum fit
        t->b = (int)lmin((long long)floor(sqrt((double)M / 3.0)), N);
        while (3LL * (t->b + 1) * (t->b + 1) <= M && t->b < N) t->b++;  // sqrt's rounding
        while (t->b > 0 && 3LL * t->b * t->b > M) t->b--;
        need = 3;
        if (t->b >= 1) return 0;
        break;
    case IO_BLOCKSPARSE:
        t->br = t->bc = l->block;
        need = io_footprint(a, p, N, d, t, l);
        break;
    default:
        if (p == IO_FWD) {
            t->bc = (int)lmin(lmin(d, M / (4LL * d)), N);
            if (t->bc < 1) t->bc = 1;
            t->br = (int)lmin((M - 2LL * t->bc * d) / (2LL * d + t->bc + 2), N);
            if (t->br < 1) t->bc = 1, t->br = (int)lmin((M - 2LL * d) / (2LL * d + 3), N);
        } else {
            t->br = (int)lmin(lmin(d, M / (6LL * d)), N);
            if (t->br < 1) t->br = 1;
            t->bc = (int)lmin((M - t->br * (3LL * d + 2)) / (4LL * d + 2LL * t->br), N);
            if (t->bc < 1) t->br = 1, t->bc = (int)lmin((M - 3LL * d - 2) / (4LL * d + 2), N);
        }
        need = io_footprint(a, p, N, d, &(io_tiles){1, 1, 0, 0}, l);
        if (t->br >= 1 && t->bc >= 1) return 0;
    }
    if (M >= need) return 0;
    snprintf(why, whylen, "%s %s d=%d M=%lld: M too small (it needs at least %lld words)",
             io_algo_name(a), p == IO_FWD ? "fwd" : "bwd", d, M, need);
    return -1;
}

void io_run(io_mem *m, io_algo a, io_pass p, long long N, int d, const io_tiles *t,
            const pb_block_layout *l) {
    slow s;
    slow_init(&s, m, N, d);
    switch (a) {
    case IO_NAIVE: p == IO_FWD ? naive_fwd(&s) : naive_bwd(&s); break;
    case IO_SMALLCACHE:
        p == IO_FWD ? smallcache_fwd(&s, t) : smallcache_bwd(&s, t->b);
        break;
    case IO_BLOCKSPARSE:
        PB_ASSERT(l && l->T == N && t->br == l->block && t->bc == l->block);
        p == IO_FWD ? flash_fwd(&s, t->br, t->bc, l) : flash_bwd(&s, t->br, t->bc, l);
        break;
    case IO_FLASH:
        p == IO_FWD ? flash_fwd(&s, t->br, t->bc, NULL) : flash_bwd(&s, t->br, t->bc, NULL);
        break;
    }
}

// rows of block x of n rows in blocks of b
static double blk(long long x, long long b, long long n) { return (double)lmin(b, n - x * b); }

double io_closed_form(io_algo a, io_pass p, long long N, int d, const io_tiles *t,
                      const pb_block_layout *l) {
    double n = (double)N, D = d, N2 = n * n;
    if (a == IO_NAIVE)
        return p == IO_FWD ? (2 * N2 * D + 4 * N2 + n * D) + (2 * N2 + n * D + n)
                           : (4 * N2 * D + 5 * N2 + 3 * n * D + n) + (2 * N2 + 3 * n * D + n);
    if (a == IO_SMALLCACHE) {
        double tb = (double)cdiv(N, t->b), db = (double)cdiv(d, t->b);
        double prod_pv = N2 * db + n * D * tb;  // (N x N)(N x d) by tiles: loads
        if (p == IO_FWD)
            return 2 * n * D * tb + N2 + (t->one_pass ? N2 : 2 * N2) + N2 + n + prod_pv + n * D;
        return prod_pv + n * D + 2 * n * D * tb + N2 + 2 * n * D + n + 2 * N2 + n + N2 +
               2 * (prod_pv + n * D);
    }
    if (a == IO_FLASH) {
        double Tr = (double)cdiv(N, t->br), Tc = (double)cdiv(N, t->bc);
        return p == IO_FWD ? n * D + 2 * n * D * Tr + n * D + n
                           : 2 * n * D + 2 * n * D + Tc * (2 * n * D + 2 * n) +
                                 (Tc - 1) * n * D + n + Tc * n * D + 2 * n * D;
    }
    // blocksparse: sums over the layout's lists (head 0, row 0)
    long long b = l->block, nb = l->nqb;
    double w = 0;
    if (p == IO_FWD) {
        w = 2 * n * D + n;
        for (long long qi = 0; qi < nb; qi++)
            for (int k = 0; k < 2; k++) {
                const bs_lists *L = k ? &l->full_kv : &l->kv;
                for (int e = 0; e < L->num[qi]; e++) w += 2 * blk(L->idx[L->off[qi] + e], b, N) * D;
            }
        return w;
    }
    w = 2 * n * D + n;  // D
    long long *visits = pb_calloc((size_t)nb, sizeof(long long));
    for (long long kj = 0; kj < nb; kj++) {
        int cnt = l->q.num[kj] + l->full_q.num[kj];
        if (!cnt) continue;
        w += 4 * blk(kj, b, N) * D;  // K, V in; dK, dV out
        for (int k = 0; k < 2; k++) {
            const bs_lists *L = k ? &l->full_q : &l->q;
            for (int e = 0; e < L->num[kj]; e++) {
                long long qi = L->idx[L->off[kj] + e];
                double br = blk(qi, b, N);
                w += 2 * br * D + 2 * br + br * D + (visits[qi]++ ? br * D : 0);
            }
        }
    }
    free(visits);
    return w;
}
