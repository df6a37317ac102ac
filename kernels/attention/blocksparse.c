// blocksparse.c: block-sparse layouts (blocksparse.h) and the CPU block-sparse attention.
//
// The kernel is flash.c's tiled loops (attn_tiled_forward / _backward) fed the layout's
// lists instead of every tile: the forward walks each query block's key blocks, the
// backward each key block's query blocks (the transposed lists), so the work is
// proportional to the kept blocks and a skipped block is never read. Within a visited
// block the loops mask by position (causal diagonal, kv_len cut), which is exactly what
// makes a block partial, so the CPU reads the full/partial split only as one merged list;
// the split is for kernels with an unmasked fast path.
#include "kernels/attention/blocksparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/common.h"

// ----------------------------------------------------------------------------
// patterns

static const char *const PATTERN_NAMES[] = {"dense", "local+global+random", "butterfly"};

int attn_bs_pattern_parse(const char *name, bs_pattern *p) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, PATTERN_NAMES[i]) == 0) return *p = (bs_pattern)i, 0;
    return -1;
}

const char *attn_bs_pattern_name(bs_pattern p) {
    return (unsigned)p < 3 ? PATTERN_NAMES[p] : "?";
}

static int is_pow2(unsigned x) { return x && !(x & (x - 1)); }

// The block mask of head h of pattern p, (n, n), into m (zeroed by the caller).
static void pattern_mask(uint8_t *m, const bs_params *p, int n, int h, int causal) {
    int g = p->global;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            int keep = p->pattern == BS_DENSE || i < g || j < g;
            if (p->pattern == BS_LOCAL_GLOBAL_RANDOM) keep |= abs(i - j) <= p->window;
            if (p->pattern == BS_BUTTERFLY) keep |= i == j || is_pow2((unsigned)(i ^ j));
            m[(size_t)i * n + j] = (uint8_t)keep;
        }
    if (p->pattern != BS_LOCAL_GLOBAL_RANDOM || p->random == 0) return;
    // random blocks: a partial Fisher-Yates draw over the candidates of row i, so each row
    // gets min(random, candidates) distinct blocks
    int32_t *cand = pb_malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        uint8_t *row = m + (size_t)i * n;
        int nc = 0, jmax = causal ? i : n - 1;
        for (int j = 0; j <= jmax; j++)
            if (!row[j]) cand[nc++] = j;
        pb_rng rng;
        pb_rng_seed(&rng, p->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(h + 1)) ^
                              ((uint64_t)i << 32));
        for (int r = 0; r < p->random && r < nc; r++) {
            int pick = r + (int)(pb_rng_u64(&rng) % (uint64_t)(nc - r));
            int32_t t = cand[r];
            cand[r] = cand[pick];
            cand[pick] = t;
            row[cand[r]] = 1;
        }
    }
    free(cand);
}

// ----------------------------------------------------------------------------
// building a layout

// How much of block (qb, kb) is visible under causal and key length kvl: 0 none, 1 some
// (partial), 2 all (full). Rows i in [i0, i1], keys j in [j0, j1] (clipped to T). Some
// element is visible iff the block's first key is (j0 <= i1 when causal, j0 < kvl); all are
// iff its last key is visible to its first query.
static int block_class(int qb, int kb, int bs, int T, int causal, int kvl) {
    long long i0 = (long long)qb * bs, i1 = i0 + bs < T ? i0 + bs - 1 : T - 1;
    long long j0 = (long long)kb * bs, j1 = j0 + bs < T ? j0 + bs - 1 : T - 1;
    if (j0 >= kvl || (causal && j0 > i1)) return 0;
    if (j1 < kvl && (!causal || j1 <= i0)) return 2;
    return 1;
}

// ceil(T / block), written so that T + block - 1 cannot overflow (attention.block is any
// int >= 1 until the kernel refuses it)
static int blocks_of(int T, int block) { return T / block + (T % block != 0); }

// Carves n int32 out of *cur.
static int32_t *take(int32_t **cur, size_t n) {
    int32_t *p = *cur;
    *cur += n;
    return p;
}

pb_block_layout *attn_bs_from_mask(const uint8_t *mask, int block, int T, int nb, int nh,
                                   int causal, const int32_t *kv_len, char *err,
                                   size_t errlen) {
    if (block < 1 || T < 1 || nb < 1 || nh < 1) {
        pb_seterr(err, errlen, "block-sparse layout: block %d, T %d, %d rows, %d heads (each "
                  "must be >= 1)", block, T, nb, nh);
        return NULL;
    }
    for (int b = 0; kv_len && b < nb; b++)
        if (kv_len[b] < 1 || kv_len[b] > T) {
            pb_seterr(err, errlen, "block-sparse layout: kv_len[%d] = %d is outside 1..%d", b,
                      kv_len[b], T);
            return NULL;
        }
    int n = blocks_of(T, block);
    size_t heads = (size_t)nb * nh, cells = heads * n * n;
    // class of every kept block, then the sizes of the lists
    uint8_t *cls = pb_malloc(cells ? cells : 1);
    size_t nfull = 0, npart = 0;
    for (size_t hb = 0; hb < heads; hb++) {
        int kvl = kv_len ? kv_len[hb / nh] : T;
        for (int qb = 0; qb < n; qb++)
            for (int kb = 0; kb < n; kb++) {
                size_t c = (hb * n + qb) * n + kb;
                cls[c] = mask[c] ? (uint8_t)block_class(qb, kb, block, T, causal, kvl) : 0;
                nfull += cls[c] == 2;
                npart += cls[c] == 1;
            }
    }
    // one allocation: the struct, then mask, kv_len, and the int32 arrays of the 4 lists
    size_t rows = heads * n;
    size_t nint = 4 * 2 * rows + 2 * (nfull + npart) + (kv_len ? (size_t)nb : 0);
    size_t bytes = sizeof(pb_block_layout) + cells + 8 + nint * sizeof(int32_t);
    pb_block_layout *l = pb_calloc(1, bytes);
    *l = (pb_block_layout){.block = block, .T = T, .nqb = n, .nkb = n, .nb = nb, .nh = nh,
                           .causal = causal, .bytes = bytes, .kept = (long)(nfull + npart)};
    int32_t *cur = (int32_t *)(l + 1);
    bs_lists *lists[4] = {&l->kv, &l->full_kv, &l->q, &l->full_q};
    for (int k = 0; k < 4; k++) {
        lists[k]->num = take(&cur, rows);
        lists[k]->off = take(&cur, rows);
        lists[k]->idx = take(&cur, k % 2 ? nfull : npart);
    }
    if (kv_len) {
        l->kv_len = take(&cur, (size_t)nb);
        memcpy(l->kv_len, kv_len, (size_t)nb * sizeof(int32_t));
    }
    l->mask = (uint8_t *)cur;
    memcpy(l->mask, mask, cells);

    // rows of the forward lists in (head, qb) order, kb ascending; the transposed lists by
    // (head, kb), qb ascending: both fill in index order, so both come out sorted
    int32_t fill[4] = {0, 0, 0, 0};
    for (size_t hb = 0; hb < heads; hb++)
        for (int a = 0; a < n; a++)
            for (int t = 0; t < 2; t++) {  // t = 0: per query block a; t = 1: per key block a
                size_t r = hb * n + a;
                for (int k = 0; k < 2; k++) {  // k = 0 partial, 1 full
                    bs_lists *L = lists[2 * t + k];
                    L->off[r] = fill[2 * t + k];
                    L->num[r] = 0;
                }
                for (int o = 0; o < n; o++) {
                    size_t c = t == 0 ? (hb * n + a) * n + o : (hb * n + o) * n + a;
                    if (!cls[c]) continue;
                    int k = cls[c] == 2;
                    bs_lists *L = lists[2 * t + k];
                    L->idx[fill[2 * t + k]++] = o;
                    L->num[r]++;
                }
            }
    free(cls);
    return l;
}

pb_block_layout *attn_bs_build(const bs_params *p, int T, int NH, int causal,
                               const int32_t *kv_len, int B, char *err, size_t errlen) {
    if (p->block < 1 || p->window < 0 || p->global < 0 || p->random < 0 || T < 1 || NH < 1) {
        pb_seterr(err, errlen, "block-sparse pattern %s: block %d, window %d, global %d, random "
                  "%d at T %d (block and T must be >= 1, the others >= 0)",
                  attn_bs_pattern_name(p->pattern), p->block, p->window, p->global, p->random,
                  T);
        return NULL;
    }
    int n = blocks_of(T, p->block);
    int nh = p->pattern == BS_LOCAL_GLOBAL_RANDOM && p->random > 0 ? NH : 1;
    int nb = kv_len ? B : 1;
    size_t per = (size_t)n * n;
    uint8_t *mask = pb_calloc((size_t)nb * nh * per, 1);
    for (int h = 0; h < nh; h++) pattern_mask(mask + h * per, p, n, h, causal);
    for (int b = 1; b < nb; b++) memcpy(mask + b * nh * per, mask, nh * per);
    pb_block_layout *l = attn_bs_from_mask(mask, p->block, T, nb, nh, causal, kv_len, err,
                                           errlen);
    free(mask);
    return l;
}

void attn_bs_free(pb_block_layout *l) {
    if (l && l->dev && l->dev_free) l->dev_free(l->dev);
    free(l);
}

const pb_attn_impl *attn_bs_setup(const pb_ops *ops, const char *want, const bs_params *p,
                                  pb_attn_desc *d, pb_block_layout **layout, char *err,
                                  size_t errlen) {
    if (attn_bs_for_model(want, p, d->T, d->NH, d->causal, layout, err, errlen)) return NULL;
    d->layout = *layout;
    const pb_attn_impl *a = pb_attn_choose(ops, want, d, err, errlen);
    if (!a) {
        attn_bs_free(*layout);
        *layout = NULL;
        d->layout = NULL;
    }
    return a;
}

const pb_attn_impl *attn_bs_choose(const pb_ops *ops, const char *want, const bs_params *p,
                                   pb_attn_desc d, char *err, size_t errlen) {
    pb_block_layout *l = NULL;
    const pb_attn_impl *a = attn_bs_setup(ops, want, p, &d, &l, err, errlen);
    attn_bs_free(l);
    return a;
}

int attn_bs_for_model(const char *want, const bs_params *p, int T, int NH, int causal,
                      pb_block_layout **out, char *err, size_t errlen) {
    *out = NULL;
    if (!want || strcmp(want, "blocksparse") != 0) return 0;
    *out = attn_bs_build(p, T, NH, causal, NULL, 1, err, errlen);
    return *out ? 0 : -1;
}

double attn_bs_density(const pb_block_layout *l) {
    return (double)l->kept / ((double)l->nb * l->nh * l->nqb * l->nkb);
}

// ----------------------------------------------------------------------------
// validation

static _Thread_local char why_buf[192];
#define WHY(...) (snprintf(why_buf, sizeof why_buf, __VA_ARGS__), why_buf)

// One CSR list kind over rows of n entries each with indices < n: counts, offsets, order.
static const char *check_lists(const bs_lists *L, const char *name, size_t rows, int n) {
    int32_t next = 0;
    for (size_t r = 0; r < rows; r++) {
        if (L->num[r] < 0 || L->num[r] > n)
            return WHY("%s_num_blocks[%zu] = %d is outside 0..%d", name, r, L->num[r], n);
        if (L->off[r] != next)
            return WHY("%s offsets are not consecutive at row %zu", name, r);
        next += L->num[r];
        for (int e = 0; e < L->num[r]; e++) {
            int32_t x = L->idx[L->off[r] + e];
            if (x < 0 || x >= n) return WHY("%s_indices row %zu: block %d out of range 0..%d",
                                            name, r, x, n - 1);
            if (e > 0 && x <= L->idx[L->off[r] + e - 1])
                return WHY("%s_indices row %zu: not strictly ascending (block %d after %d: "
                           "unsorted or a duplicate)", name, r, x, L->idx[L->off[r] + e - 1]);
        }
    }
    return NULL;
}

const char *attn_bs_validate(const pb_block_layout *l) {
    if (!l) return "no layout";
    if (l->block < 1 || l->T < 1 || l->nb < 1 || l->nh < 1)
        return WHY("a layout of block %d, T %d, %d rows, %d heads", l->block, l->T, l->nb, l->nh);
    int n = blocks_of(l->T, l->block);
    if (l->nqb != n || l->nkb != n)
        return WHY("%d x %d blocks, but T %d in blocks of %d makes %d", l->nqb, l->nkb, l->T,
                   l->block, n);
    size_t heads = (size_t)l->nb * l->nh, rows = heads * n;
    const char *why;
    if ((why = check_lists(&l->kv, "kv", rows, n)) || (why = check_lists(&l->full_kv,
        "full_kv", rows, n)) || (why = check_lists(&l->q, "q", rows, n)) ||
        (why = check_lists(&l->full_q, "full_q", rows, n)))
        return why;
    // each kept block once, in the right list, and the same in the transposed lists: mark
    // every listed (qb, kb) with its list (1 partial, 2 full) and compare
    uint8_t *seen = pb_calloc(heads * n * n, 2);  // [0]: forward, [1]: transposed
    const char *bad = NULL;
    for (size_t hb = 0; hb < heads && !bad; hb++)
        for (int a = 0; a < n && !bad; a++)
            for (int t = 0; t < 2 && !bad; t++)
                for (int k = 0; k < 2; k++) {
                    const bs_lists *L = t == 0 ? (k ? &l->full_kv : &l->kv)
                                               : (k ? &l->full_q : &l->q);
                    size_t r = hb * n + a;
                    for (int e = 0; e < L->num[r]; e++) {
                        int o = L->idx[L->off[r] + e];
                        size_t c = t == 0 ? (hb * n + a) * n + o : (hb * n + o) * n + a;
                        uint8_t *s = seen + 2 * c + t;
                        if (*s) {
                            bad = WHY("block (%d, %d) of head %zu is both full and partial",
                                      t ? o : a, t ? a : o, hb);
                            break;
                        }
                        *s = (uint8_t)(1 + k);
                    }
                }
    for (size_t c = 0; c < heads * n * n && !bad; c++) {
        size_t hb = c / ((size_t)n * n);
        int qb = (int)(c / n % n), kb = (int)(c % n);
        int kvl = l->kv_len ? l->kv_len[hb / l->nh] : l->T;
        int want = l->mask[c] ? block_class(qb, kb, l->block, l->T, l->causal, kvl) : 0;
        static const char *const what[] = {"in no list", "partial", "full"};
        if (seen[2 * c] != want)
            bad = WHY("block (%d, %d) of head %zu is %s but the mask, causal and kv_len make it "
                      "%s", qb, kb, hb, what[seen[2 * c]], what[want]);
        else if (seen[2 * c + 1] != want)
            bad = WHY("the transposed lists disagree at block (%d, %d) of head %zu", qb, kb, hb);
    }
    free(seen);
    return bad;
}

// ----------------------------------------------------------------------------
// the kernel

int attn_bs_cpu_block_ok(int block) {
    return block == 16 || block == 32 || block == 64 || block == 128;
}

static const char *bs_covers(const pb_attn_desc *d) {
    return attn_bs_covers(d, attn_bs_cpu_block_ok, ATTN_BS_CPU_BLOCKS);
}

// Merges list kinds a and b of row r into out, ascending (both are); returns the count.
static int merge(const bs_lists *a, const bs_lists *b, size_t r, int32_t *out) {
    const int32_t *x = a->idx + a->off[r], *y = b->idx + b->off[r];
    int nx = a->num[r], ny = b->num[r], i = 0, j = 0, n = 0;
    while (i < nx || j < ny) out[n++] = j >= ny || (i < nx && x[i] < y[j]) ? x[i++] : y[j++];
    return n;
}

static size_t head_row(const pb_block_layout *l, int b, int h, int blk, int nblk) {
    int bb = l->nb == 1 ? 0 : b, hh = l->nh == 1 ? 0 : h;
    return ((size_t)bb * l->nh + hh) * nblk + blk;
}

static int bs_kv_tiles(const void *ctx, int b, int h, int qt, int32_t *kt) {
    const pb_block_layout *l = ctx;
    return merge(&l->kv, &l->full_kv, head_row(l, b, h, qt, l->nqb), kt);
}

static int bs_q_tiles(const void *ctx, int b, int h, int kt, int32_t *qt) {
    const pb_block_layout *l = ctx;
    return merge(&l->q, &l->full_q, head_row(l, b, h, kt, l->nkb), qt);
}

// The descriptor the tiled loops run: d, with the layout's key lengths folded into kv_len
// (the smaller of the two per row) when it has them. *kv is what to free.
static pb_attn_desc run_desc(const pb_attn_desc *d, int32_t **kv) {
    pb_attn_desc r = *d;
    const pb_block_layout *l = d->layout;
    *kv = NULL;
    if (!l->kv_len) return r;
    *kv = pb_malloc((size_t)d->B * sizeof(int32_t));
    for (int b = 0; b < d->B; b++) {
        int a = attn_key_len(d, b), c = l->kv_len[l->nb == 1 ? 0 : b];  // kv_len is (nb)
        (*kv)[b] = a < c ? a : c;
    }
    r.kv_len = *kv;
    return r;
}

// out (B,T,C), lse (B,NH,T); qkv (B,T,3C); the blocks of d->layout
void attn_bs_forward(float *out, float *lse, const float *qkv, const pb_attn_desc *d) {
    PB_ASSERT(!bs_covers(d));
    const pb_block_layout *l = d->layout;
    attn_tiles tl = {l->block, l->block, bs_kv_tiles, bs_q_tiles, l};
    int32_t *kv;
    pb_attn_desc r = run_desc(d, &kv);
    attn_tiled_forward(out, lse, qkv, &r, &tl);
    free(kv);
}

// dqkv (B,T,3C) += gradient; dout, out (B,T,C); lse (B,NH,T); qkv (B,T,3C)
void attn_bs_backward(float *dqkv, const float *dout, const float *out, const float *lse,
                      const float *qkv, const pb_attn_desc *d) {
    PB_ASSERT(!bs_covers(d));
    const pb_block_layout *l = d->layout;
    attn_tiles tl = {l->block, l->block, bs_kv_tiles, bs_q_tiles, l};
    int32_t *kv;
    pb_attn_desc r = run_desc(d, &kv);
    attn_tiled_backward(dqkv, dout, out, lse, qkv, &r, &tl);
    free(kv);
}

// A layout that covers this descriptor, in a block size the kernel runs. Never a silent
// dense run: without a layout it refuses. Everything but the O(blocks) validation, which
// attn_bs_check adds (it runs once, when the model chooses; the kernels assert this part).
const char *attn_bs_covers(const pb_attn_desc *d, int (*block_ok)(int), const char *blocks) {
    const pb_block_layout *l = d->layout;
    if (!l) return "no block-sparse layout (set attention.sparsity; for dense attention use "
                   "flash)";
    if (d->Tk != d->T) return "keys and queries of different lengths (it runs self-attention)";
    if (d->B < 1 || d->T < 1 || d->NH < 1 || d->D < 1) return "an empty shape";
    if (!block_ok(l->block))
        return WHY("a layout of %d x %d blocks (its tile is %s)", l->block, l->block, blocks);
    if (l->T != d->T) return WHY("a layout for T = %d, not T = %d", l->T, d->T);
    if (l->nb != 1 && l->nb != d->B)
        return WHY("a layout of %d batch rows for B = %d", l->nb, d->B);
    if (l->nh != 1 && l->nh != d->NH) return WHY("a layout of %d heads for %d", l->nh, d->NH);
    if (l->causal != d->causal)
        return l->causal ? "a causal layout for a bidirectional model"
                         : "a bidirectional layout for a causal model";
    return NULL;
}

const char *attn_bs_check(const pb_attn_desc *d, int (*block_ok)(int), const char *blocks) {
    static _Thread_local char buf[224];
    const char *why = attn_bs_covers(d, block_ok, blocks);
    if (why) return why;
    if ((why = attn_bs_validate(d->layout))) {
        snprintf(buf, sizeof buf, "a malformed layout: %s", why);
        return buf;
    }
    return NULL;
}

const char *attn_bs_supports(const pb_attn_desc *d) {
    return attn_bs_check(d, attn_bs_cpu_block_ok, ATTN_BS_CPU_BLOCKS);
}
