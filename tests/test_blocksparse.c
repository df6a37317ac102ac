// test_blocksparse.c: block-sparse layouts (kernels/attention/blocksparse.h) and the CPU
// block-sparse attention. The layouts against the patterns' definitions and a brute-force
// element count; the kernel against the dense masked references (the double one of
// tests/attn_ref.h, and naive with an element mask), whose mask is expanded from the block
// mask alone, never from the lists the kernel walks; finite differences in double; flash at
// the dense pattern; the refusals.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/attention/blocksparse.h"
#include "kernels/ops.h"
#include "tests/attn_ref.h"

// ----------------------------------------------------------------------------
// cases

typedef enum { KV_NONE, KV_RAGGED, KV_NKINDS } kv_kind;

// One case: shape, masks, pattern.
typedef struct {
    int B, T, D, NH, causal;
    kv_kind kv;          // the descriptor's key lengths
    int layout_kv;       // 1: the layout is built with the key lengths too (per batch row)
    bs_params p;
    float drop;          // the probabilities' dropout (pb_attn_desc.drop_p; 0: none)
} bcase;

static const char *describe(const bcase *c) {
    static char buf[256];
    snprintf(buf, sizeof buf, "B=%d T=%d D=%d NH=%d causal=%d kv=%s layout_kv=%d %s block=%d "
             "window=%d global=%d random=%d drop=%g", c->B, c->T, c->D, c->NH, c->causal,
             c->kv == KV_NONE ? "none" : "ragged", c->layout_kv,
             attn_bs_pattern_name(c->p.pattern), c->p.block, c->p.window, c->p.global,
             c->p.random, c->drop);
    return buf;
}

// {T, 1, a key length in the middle of a block, ...}: the padding edge inside a block, a row
// that sees key 0 only
static void kv_fill(int32_t *kv, int B, int T) {
    for (int b = 0; b < B; b++) kv[b] = (int[]){T, 1, T / 2 + 3, T - 5}[b % 4];
    for (int b = 0; b < B; b++) kv[b] = kv[b] < 1 ? 1 : kv[b] > T ? T : kv[b];
}

typedef struct {
    pb_attn_desc d;
    pb_block_layout *l;
    int C;
    size_t nqkv, nout, nlse;
    int32_t *kv;
    float *qkv, *dout, *out, *lse, *dqkv;
    unsigned char *emask;  // (B,NH,T,T) expanded element mask
} prob;

// The element mask from its definition in blocksparse.h, read from the layout's block mask
// (not its lists), the causal flag and both key lengths.
static unsigned char *expand(const pb_block_layout *l, const pb_attn_desc *d) {
    int B = d->B, NH = d->NH, T = d->T, bs = l->block, n = l->nqb;
    unsigned char *m = xcalloc((size_t)B * NH * T * T, 1);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int bb = l->nb == 1 ? 0 : b, hh = l->nh == 1 ? 0 : h;
            const uint8_t *bm = l->mask + ((size_t)bb * l->nh + hh) * n * n;
            int kvl = d->kv_len ? d->kv_len[b] : T;
            if (l->kv_len && l->kv_len[bb] < kvl) kvl = l->kv_len[bb];
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++)
                    m[(((size_t)b * NH + h) * T + i) * T + j] =
                        bm[(i / bs) * n + j / bs] && (!d->causal || j <= i) && j < kvl;
        }
    return m;
}

static void prob_init(prob *p, const bcase *c, uint64_t seed) {
    memset(p, 0, sizeof *p);
    p->kv = xcalloc((size_t)c->B, sizeof(int32_t));
    kv_fill(p->kv, c->B, c->T);
    char err[256];
    p->l = attn_bs_build(&c->p, c->T, c->NH, c->causal, c->layout_kv ? p->kv : NULL, c->B, err,
                         sizeof err);
    cr_assert(p->l, "%s: %s", describe(c), err);
    p->d = (pb_attn_desc){.B = c->B, .T = c->T, .Tk = c->T, .NH = c->NH, .D = c->D,
                          .scale = 1.0f / sqrtf((float)c->D), .causal = c->causal,
                          .kv_len = c->kv == KV_NONE ? NULL : p->kv, .layout = p->l,
                          .drop_p = c->drop, .drop_key = 0xB10C5 + (uint64_t)c->T};
    p->C = c->D * c->NH;
    p->nqkv = (size_t)c->B * c->T * 3 * p->C;
    p->nout = (size_t)c->B * c->T * p->C;
    p->nlse = (size_t)c->B * c->NH * c->T;
    p->qkv = xcalloc(p->nqkv, sizeof(float));
    p->dout = xcalloc(p->nout, sizeof(float));
    p->out = xcalloc(p->nout, sizeof(float));
    p->lse = xcalloc(p->nlse, sizeof(float));
    p->dqkv = xcalloc(p->nqkv, sizeof(float));
    rng_seed(seed);
    fill(p->qkv, p->nqkv, 2.0f);
    fill(p->dout, p->nout, 1.0f);
    for (size_t i = 0; i < p->nout; i++) p->out[i] = NAN;  // every element must be written
    for (size_t i = 0; i < p->nlse; i++) p->lse[i] = NAN;
    p->emask = expand(p->l, &p->d);
}

static void prob_run(prob *p) {
    const char *why = attn_bs_supports(&p->d);
    cr_assert(why == NULL, "blocksparse refuses: %s", why);
    attn_bs_forward(p->out, p->lse, p->qkv, &p->d);
    memset(p->dqkv, 0, p->nqkv * sizeof(float));
    attn_bs_backward(p->dqkv, p->dout, p->out, p->lse, p->qkv, &p->d);
}

static void prob_free(prob *p) {
    attn_bs_free(p->l);
    free(p->kv), free(p->qkv), free(p->dout), free(p->out), free(p->lse), free(p->dqkv);
    free(p->emask);
}

static void expect_close(const char *what, const bcase *c, const float *got, const double *want,
                         size_t n, double rtol) {
    char msg[256];
    size_t bad = count_bad(msg, sizeof msg, got, want, n, atol_for(2.0f), rtol);
    cr_expect(bad == 0, "%s, %s: %s", what, describe(c), msg);
}

// The patterns every kernel test runs, at block 16 (T = 67: 5 blocks, the last of 3 rows)
// and 32 (T = 200: 7 blocks, the last of 8).
static void each_pattern(int T, int block, void (*fn)(const bcase *)) {
    bs_params ps[] = {
        {BS_DENSE, block, 0, 0, 0, 1},
        {BS_LOCAL_GLOBAL_RANDOM, block, 1, 1, 1, 7},
        {BS_LOCAL_GLOBAL_RANDOM, block, 0, 0, 2, 9},  // no global block: rows may see no key
        {BS_BUTTERFLY, block, 0, 0, 0, 1},
        {BS_BUTTERFLY, block, 0, 1, 0, 1},
    };
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++)
        for (int causal = 0; causal <= 1; causal++)
            for (int kv = KV_NONE; kv < KV_NKINDS; kv++)
                for (int lkv = 0; lkv <= 1; lkv++)
                    fn(&(bcase){4, T, 16, 2, causal, kv, lkv, ps[pi], 0});
}

// ----------------------------------------------------------------------------
// (1) layouts

// Block (qb, kb) of head slot hb by brute force: how many of its elements the definition
// makes visible, against how many it has.
static int brute_class(const pb_block_layout *l, size_t hb, int qb, int kb) {
    int bs = l->block, T = l->T, n = l->nqb, vis = 0, all = 0;
    int kvl = l->kv_len ? l->kv_len[hb / l->nh] : T;
    if (!l->mask[(hb * n + qb) * n + kb]) return 0;
    for (int i = qb * bs; i < (qb + 1) * bs && i < T; i++)
        for (int j = kb * bs; j < (kb + 1) * bs && j < T; j++) {
            all++;
            vis += (!l->causal || j <= i) && j < kvl;
        }
    return vis == 0 ? 0 : vis == all ? 2 : 1;
}

static int listed(const bs_lists *L, size_t r, int x) {
    for (int e = 0; e < L->num[r]; e++)
        if (L->idx[L->off[r] + e] == x) return 1;
    return 0;
}

static void check_layout(const bcase *c) {
    int32_t kv[8];
    kv_fill(kv, c->B, c->T);
    char err[256];
    pb_block_layout *l = attn_bs_build(&c->p, c->T, c->NH, c->causal, c->layout_kv ? kv : NULL,
                                       c->B, err, sizeof err);
    cr_assert(l, "%s: %s", describe(c), err);
    const char *why = attn_bs_validate(l);
    cr_expect(why == NULL, "%s: invalid: %s", describe(c), why);
    int n = l->nqb, g = c->p.global, w = c->p.window;
    cr_expect(n == (c->T + c->p.block - 1) / c->p.block);
    size_t heads = (size_t)l->nb * l->nh;
    for (size_t hb = 0; hb < heads; hb++)
        for (int qb = 0; qb < n; qb++) {
            int kept = 0, base = 0;
            for (int kb = 0; kb < n; kb++) {
                uint8_t m = l->mask[(hb * n + qb) * n + kb];
                int is_pat;  // what the definition surely keeps
                switch (c->p.pattern) {
                case BS_DENSE: is_pat = 1; break;
                case BS_BUTTERFLY:
                    is_pat = qb == kb || qb < g || kb < g ||
                             __builtin_popcount((unsigned)(qb ^ kb)) == 1;
                    cr_expect(m == is_pat, "%s: butterfly block (%d,%d) is %d", describe(c), qb,
                              kb, m);
                    break;
                default:
                    is_pat = abs(qb - kb) <= w || qb < g || kb < g;
                    if (is_pat) cr_expect(m, "%s: block (%d,%d) of the band/global dropped",
                                          describe(c), qb, kb);
                    if (!is_pat && m && c->causal)
                        cr_expect(kb <= qb, "%s: random block (%d,%d) above the diagonal",
                                  describe(c), qb, kb);
                }
                kept += m;
                base += is_pat;
                // the lists agree with the brute-force class, both ways round
                int cls = brute_class(l, hb, qb, kb);
                size_t r = hb * n + qb, t = hb * n + kb;
                cr_expect(listed(&l->full_kv, r, kb) == (cls == 2) &&
                              listed(&l->kv, r, kb) == (cls == 1) &&
                              listed(&l->full_q, t, qb) == (cls == 2) &&
                              listed(&l->q, t, qb) == (cls == 1),
                          "%s: block (%d,%d) of head %zu: class %d, listed otherwise",
                          describe(c), qb, kb, hb, cls);
            }
            if (c->p.pattern == BS_LOCAL_GLOBAL_RANDOM) {
                int cand = 0;  // blocks the random draw could take
                for (int kb = 0; kb < n; kb++)
                    cand += !(abs(qb - kb) <= w || qb < g || kb < g) && (!c->causal || kb <= qb);
                int want = base + (c->p.random < cand ? c->p.random : cand);
                cr_expect(kept == want, "%s: query block %d keeps %d blocks, not %d",
                          describe(c), qb, kept, want);
            }
        }
    attn_bs_free(l);
}

Test(blocksparse, layouts_follow_the_patterns) {
    each_pattern(67, 16, check_layout);
    each_pattern(200, 32, check_layout);
    each_pattern(1000, 16, check_layout);  // 63 blocks: butterfly levels up to 32
}

Test(blocksparse, random_blocks_differ_per_head_and_follow_the_seed) {
    bs_params p = {BS_LOCAL_GLOBAL_RANDOM, 16, 1, 1, 3, 42};
    char err[256];
    pb_block_layout *a = attn_bs_build(&p, 1024, 4, 0, NULL, 1, err, sizeof err);
    pb_block_layout *b = attn_bs_build(&p, 1024, 4, 0, NULL, 1, err, sizeof err);
    p.seed = 43;
    pb_block_layout *c = attn_bs_build(&p, 1024, 4, 0, NULL, 1, err, sizeof err);
    cr_assert(a && b && c);
    size_t per = (size_t)a->nqb * a->nkb;
    cr_expect(a->nh == 4 && memcmp(a->mask, b->mask, 4 * per) == 0, "the same seed, the same mask");
    cr_expect(memcmp(a->mask, c->mask, 4 * per) != 0, "another seed, another mask");
    cr_expect(memcmp(a->mask, a->mask + per, per) != 0, "heads 0 and 1 drew the same blocks");
    double s = attn_bs_density(a);
    // 64 blocks a row: 3 band + 1 global column + 3 random, a global row of 64
    double want = (63.0 * 7 - 2 + 64) / (64.0 * 64);  // rows 0 and 1: the band is cut short
    cr_expect(fabs(s - want) < 0.01, "density %g, about %g expected", s, want);
    attn_bs_free(a), attn_bs_free(b), attn_bs_free(c);
}

// ----------------------------------------------------------------------------
// (2) refusals

Test(blocksparse, refuses_what_it_cannot_run) {
    char err[512];
    bs_params p = {BS_DENSE, 48, 0, 0, 0, 1};
    pb_block_layout *l = attn_bs_build(&p, 100, 2, 1, NULL, 2, err, sizeof err);
    cr_assert(l, "%s", err);
    pb_attn_desc d = {.B = 2, .T = 100, .Tk = 100, .NH = 2, .D = 16, .scale = 0.25f,
                      .causal = 1, .layout = l};
    const char *why = attn_bs_supports(&d);
    cr_expect(why && strstr(why, "48") && strstr(why, ATTN_BS_CPU_BLOCKS),
              "a 48-block layout must be refused naming 48 and the kernel's tiles: %s",
              why ? why : "accepted");
    const pb_attn_impl *a = pb_attn_choose(pb_ops_cpu(), "blocksparse", &d, err, sizeof err);
    cr_expect(!a && strstr(err, "blocksparse") && strstr(err, "48"), "choose: \"%s\"", err);
    attn_bs_free(l);

    p.block = 32;
    l = attn_bs_build(&p, 100, 2, 1, NULL, 2, err, sizeof err);
    d.layout = l;
    cr_expect(attn_bs_supports(&d) == NULL, "a good layout refused: %s", attn_bs_supports(&d));
    d.T = d.Tk = 120;
    why = attn_bs_supports(&d);
    cr_expect(why && strstr(why, "T = 100"), "T not covered: %s", why ? why : "accepted");
    d.T = d.Tk = 100;
    d.causal = 0;
    why = attn_bs_supports(&d);
    cr_expect(why && strstr(why, "causal"), "causal mismatch: %s", why ? why : "accepted");
    d.causal = 1;
    d.layout = NULL;
    why = attn_bs_supports(&d);
    cr_expect(why && strstr(why, "no block-sparse layout"), "no layout: %s", why ? why : "accepted");
    // named without a layout: refused, never a dense run
    a = pb_attn_choose(pb_ops_cpu(), "blocksparse", &d, err, sizeof err);
    cr_expect(!a && strstr(err, "no block-sparse layout"), "choose without layout: \"%s\"", err);
    attn_bs_free(l);

    cr_expect(attn_bs_build(&(bs_params){BS_DENSE, 0, 0, 0, 0, 1}, 100, 2, 0, NULL, 1, err,
                            sizeof err) == NULL && strstr(err, "block 0"),
              "block 0 must be refused: \"%s\"", err);
    cr_expect(attn_bs_build(&(bs_params){BS_LOCAL_GLOBAL_RANDOM, 16, -1, 0, 0, 1}, 100, 2, 0,
                            NULL, 1, err, sizeof err) == NULL && strstr(err, "window -1"),
              "window -1 must be refused: \"%s\"", err);
    bs_pattern pat;
    cr_expect(attn_bs_pattern_parse("butterfly", &pat) == 0 && pat == BS_BUTTERFLY);
    cr_expect(attn_bs_pattern_parse("local+global+random", &pat) == 0 &&
              pat == BS_LOCAL_GLOBAL_RANDOM);
    cr_expect(attn_bs_pattern_parse("sparse", &pat) == -1);
}

// Corrupted copies of a good layout: each refused by validate (and so by supports) with
// its own reason.
Test(blocksparse, malformed_layouts_are_refused) {
    char err[256];
    bs_params p = {BS_LOCAL_GLOBAL_RANDOM, 16, 1, 1, 1, 3};
    pb_block_layout *good = attn_bs_build(&p, 130, 1, 1, NULL, 1, err, sizeof err);
    cr_assert(good && attn_bs_validate(good) == NULL);
    pb_attn_desc d = {.B = 1, .T = 130, .Tk = 130, .NH = 1, .D = 8, .scale = 0.3f, .causal = 1};
    static const char *const want[] = {"out of range", "ascending", "ascending",
                                       "both full and partial", "in no list"};
    for (int k = 0; k < 5; k++) {
        pb_block_layout *l = malloc(good->bytes);
        memcpy(l, good, good->bytes);
        // the pointers point into good's allocation: rebase them into the copy
        ptrdiff_t shift = (char *)l - (char *)good;
        bs_lists *ls[4] = {&l->kv, &l->full_kv, &l->q, &l->full_q};
        for (int i = 0; i < 4; i++) {
            ls[i]->num = (int32_t *)((char *)ls[i]->num + shift);
            ls[i]->off = (int32_t *)((char *)ls[i]->off + shift);
            ls[i]->idx = (int32_t *)((char *)ls[i]->idx + shift);
        }
        l->mask += shift;
        // row 5 of full_kv lists blocks 0 (global) .. 4 (the band): at least two entries
        size_t r = 5;
        int32_t *row = l->full_kv.idx + l->full_kv.off[r];
        cr_assert(l->full_kv.num[r] >= 2);
        switch (k) {
        case 0: row[0] = 99; break;                     // out of range
        case 1: { int32_t t = row[0]; row[0] = row[1]; row[1] = t; } break;  // unsorted
        case 2: row[1] = row[0]; break;                 // a duplicate
        case 3: l->full_q.idx[0] = 0; break;  // key block 0's list: (0,0) is partial
        case 4:  // query block 8 keeps every block below the diagonal, its lists unchanged
            for (int kb = 1; kb < 7; kb++) l->mask[8 * l->nkb + kb] = 1;
            break;
        }
        d.layout = l;
        const char *why = attn_bs_supports(&d);
        cr_expect(why && strstr(why, "malformed") && strstr(why, want[k]),
                  "corruption %d: want \"%s\", got \"%s\"", k, want[k],
                  why ? why : "accepted");
        free(l);
    }
    attn_bs_free(good);
}

// ----------------------------------------------------------------------------
// (3) the kernel against the dense masked references

static void check_against_reference(const bcase *c) {
    prob p;
    prob_init(&p, c, 100 + c->T + 10 * c->causal + 100 * c->kv + 1000 * c->p.pattern);
    prob_run(&p);
    double *x = to_double(p.qkv, p.nqkv), *R = to_double(p.dout, p.nout);
    double *out = xcalloc(p.nout, sizeof(double)), *lse = xcalloc(p.nlse, sizeof(double));
    double *g = xcalloc(p.nqkv, sizeof(double));
    ref_forward(out, lse, x, &p.d, p.emask, c->NH, 0, c->B);
    ref_backward(g, x, R, &p.d, p.emask, c->NH);
    expect_close("out vs double ref", c, p.out, out, p.nout, 1e-4);
    expect_close("lse vs double ref", c, p.lse, lse, p.nlse, 1e-5);
    // dq, dk, dv separately, so a failure says which
    size_t rows = p.nqkv / (3 * (size_t)p.C);
    float *gp = xcalloc(rows * p.C, sizeof(float));
    double *rp = xcalloc(rows * p.C, sizeof(double));
    static const char *part[3] = {"dq vs double ref", "dk vs double ref", "dv vs double ref"};
    for (int w = 0; w < 3; w++) {
        for (size_t r = 0; r < rows; r++)
            for (int e = 0; e < p.C; e++) {
                gp[r * p.C + e] = p.dqkv[(r * 3 + w) * p.C + e];
                rp[r * p.C + e] = g[(r * 3 + w) * p.C + e];
            }
        expect_close(part[w], c, gp, rp, rows * p.C, 1e-4);
    }

    // naive with the element mask: the fp32 reference, the same numbers
    float *nout = xcalloc(p.nout, sizeof(float)), *nlse = xcalloc(p.nlse, sizeof(float));
    float *ng = xcalloc(p.nqkv, sizeof(float));
    attn_naive_masked_forward(nout, nlse, p.qkv, &p.d, p.emask);
    attn_naive_masked_backward(ng, p.dout, nout, nlse, p.qkv, &p.d, p.emask);
    double *wn = to_double(nout, p.nout), *wl = to_double(nlse, p.nlse), *wg = to_double(ng, p.nqkv);
    expect_close("out vs naive masked", c, p.out, wn, p.nout, 1e-4);
    expect_close("lse vs naive masked", c, p.lse, wl, p.nlse, 1e-5);
    expect_close("dqkv vs naive masked", c, p.dqkv, wg, p.nqkv, 1e-4);
    expect_close("naive masked out vs double ref", c, nout, out, p.nout, 1e-4);
    expect_close("naive masked dqkv vs double ref", c, ng, g, p.nqkv, 1e-4);
    free(nout), free(nlse), free(ng), free(wn), free(wl), free(wg);
    free(gp), free(rp), free(x), free(R), free(out), free(lse), free(g);
    prob_free(&p);
}

Test(blocksparse, matches_dense_masked_reference_block16, .timeout = 60) {
    each_pattern(67, 16, check_against_reference);
}
Test(blocksparse, matches_dense_masked_reference_block32, .timeout = 60) {
    each_pattern(200, 32, check_against_reference);
}

// A block mask with a query block that lists nothing (its rows: out 0, lse -inf, no
// gradient) and a key block no query visits (its dk, dv exactly 0), from attn_bs_from_mask.
Test(blocksparse, empty_rows_and_columns) {
    int T = 70, bs = 16, n = 5;
    uint8_t m[25];
    for (int i = 0; i < 25; i++) m[i] = (uint8_t)((i * 7 + 3) % 3 != 0);
    for (int j = 0; j < n; j++) m[2 * n + j] = 0;  // query block 2: nothing
    for (int i = 0; i < n; i++) m[i * n + 3] = 0;  // key block 3: nobody
    char err[256];
    bcase c = {2, T, 8, 1, 0, KV_NONE, 0, {BS_DENSE, bs, 0, 0, 0, 1}, 0};
    prob p;
    prob_init(&p, &c, 77);
    attn_bs_free(p.l);
    p.l = attn_bs_from_mask(m, bs, T, 1, 1, 0, NULL, err, sizeof err);
    cr_assert(p.l && !attn_bs_validate(p.l), "%s", err);
    p.d.layout = p.l;
    free(p.emask);
    p.emask = expand(p.l, &p.d);
    prob_run(&p);
    for (int b = 0; b < 2; b++)
        for (int i = 2 * bs; i < 3 * bs; i++) {
            cr_expect(p.lse[(size_t)b * T + i] == -INFINITY, "row %d: lse %g", i,
                      p.lse[(size_t)b * T + i]);
            for (int e = 0; e < 8; e++) {
                cr_expect(p.out[((size_t)b * T + i) * 8 + e] == 0.0f);
                cr_expect(p.dqkv[((size_t)b * T + i) * 24 + e] == 0.0f);  // dq
            }
        }
    for (int b = 0; b < 2; b++)
        for (int j = 3 * bs; j < 4 * bs; j++)
            for (int e = 8; e < 24; e++)
                cr_expect(p.dqkv[((size_t)b * T + j) * 24 + e] == 0.0f, "dk/dv of key %d", j);
    double *x = to_double(p.qkv, p.nqkv), *R = to_double(p.dout, p.nout);
    double *out = xcalloc(p.nout, sizeof(double)), *lse = xcalloc(p.nlse, sizeof(double));
    double *g = xcalloc(p.nqkv, sizeof(double));
    ref_forward(out, lse, x, &p.d, p.emask, 1, 0, 2);
    ref_backward(g, x, R, &p.d, p.emask, 1);
    expect_close("out", &c, p.out, out, p.nout, 1e-4);
    expect_close("lse", &c, p.lse, lse, p.nlse, 1e-5);
    expect_close("dqkv", &c, p.dqkv, g, p.nqkv, 1e-4);
    free(x), free(R), free(out), free(lse), free(g);
    prob_free(&p);
}

// ----------------------------------------------------------------------------
// (4) finite differences in double

// L = sum(out * R): the backward against (L(x+h) - L(x-h)) / 2h of the double reference under
// the expanded mask, h = 1e-4; tolerance 2e-6 + 1e-5 |fd| as in test_attention.c (the FD value
// is good to ~1e-8; what is measured is the fp32 backward's rounding).
static void check_fd(const bcase *c) {
    prob p;
    prob_init(&p, c, 500 + c->T + c->causal + 10 * c->kv);
    prob_run(&p);
    double *x = to_double(p.qkv, p.nqkv), *R = to_double(p.dout, p.nout);
    double *out = xcalloc(p.nout, sizeof(double)), *lse = xcalloc(p.nlse, sizeof(double));
    double *fd = xcalloc(p.nqkv, sizeof(double));
    const double h = 1e-4;
    size_t per_b = p.nqkv / c->B, out_per_b = p.nout / c->B;
    for (size_t i = 0; i < p.nqkv; i++) {
        int b = (int)(i / per_b);
        double x0 = x[i], L[2];
        for (int side = 0; side < 2; side++) {
            x[i] = side ? x0 - h : x0 + h;
            ref_forward(out, lse, x, &p.d, p.emask, c->NH, b, b + 1);
            L[side] = 0.0;
            for (size_t j = b * out_per_b; j < (b + 1) * out_per_b; j++) L[side] += out[j] * R[j];
        }
        x[i] = x0;
        fd[i] = (L[0] - L[1]) / (2 * h);
    }
    char msg[256];
    size_t bad = count_bad(msg, sizeof msg, p.dqkv, fd, p.nqkv, 2e-6, 1e-5);
    cr_expect(bad == 0, "blocksparse backward vs finite differences, %s: %s", describe(c), msg);
    free(x), free(R), free(out), free(lse), free(fd);
    prob_free(&p);
}

// Dropout on the probabilities (kernels/ops.h), through the references' own weights
// (attn_ref.h's ref_drop): every pattern, and the finite differences with the mask fixed.
static void check_with_dropout(const bcase *c) {
    bcase d = *c;
    d.drop = 0.3f;
    check_against_reference(&d);
}
Test(blocksparse, dropout_matches_dense_masked_reference, .timeout = 60) {
    each_pattern(67, 16, check_with_dropout);
    bs_params lgr = {BS_LOCAL_GLOBAL_RANDOM, 16, 0, 1, 1, 5};
    for (int causal = 0; causal <= 1; causal++)
        check_fd(&(bcase){2, 70, 2, 2, causal, KV_RAGGED, 0, lgr, 0.3f});
}

Test(blocksparse, backward_matches_finite_differences, .timeout = 60) {
    bs_params ps[] = {{BS_LOCAL_GLOBAL_RANDOM, 16, 0, 1, 1, 5}, {BS_BUTTERFLY, 16, 0, 0, 0, 1}};
    for (int pi = 0; pi < 2; pi++)
        for (int causal = 0; causal <= 1; causal++)
            for (int kv = KV_NONE; kv < KV_NKINDS; kv++)
                check_fd(&(bcase){2, 70, 2, 2, causal, kv, 0, ps[pi], 0});
}

// ----------------------------------------------------------------------------
// (5) the dense pattern is flash

// Tolerance 1e-5 + 1e-4 |flash|: the same tiles at block 64 (the sum orders agree), and at
// block 32 a different tiling of the same sums.
Test(blocksparse, dense_pattern_equals_flash) {
    for (int bi = 0; bi < 2; bi++)
        for (int causal = 0; causal <= 1; causal++)
            for (int kv = KV_NONE; kv < KV_NKINDS; kv++) {
                bcase c = {3, 150, 32, 2, causal, kv, 0, {BS_DENSE, bi ? 64 : 32, 0, 0, 0, 1}, 0};
                prob p;
                prob_init(&p, &c, 900 + causal);
                prob_run(&p);
                float *fo = xcalloc(p.nout, sizeof(float)), *fl = xcalloc(p.nlse, sizeof(float));
                float *fg = xcalloc(p.nqkv, sizeof(float));
                pb_attn_desc d = p.d;
                d.layout = NULL;
                attn_flash_forward(fo, fl, p.qkv, &d);
                attn_flash_backward(fg, p.dout, fo, fl, p.qkv, &d);
                double *a = to_double(fo, p.nout), *b = to_double(fl, p.nlse);
                double *g = to_double(fg, p.nqkv);
                expect_close("out vs flash", &c, p.out, a, p.nout, 1e-4);
                expect_close("lse vs flash", &c, p.lse, b, p.nlse, 1e-5);
                expect_close("dqkv vs flash", &c, p.dqkv, g, p.nqkv, 1e-4);
                if (bi)  // block 64 is flash's own tiling: the same bits
                    cr_expect(memcmp(p.out, fo, p.nout * sizeof(float)) == 0 &&
                                  memcmp(p.dqkv, fg, p.nqkv * sizeof(float)) == 0,
                              "block 64 dense must be flash's bits, %s", describe(&c));
                free(fo), free(fl), free(fg), free(a), free(b), free(g);
                prob_free(&p);
            }
}

// ----------------------------------------------------------------------------
// (6) the header's broadcasting rules

// A layout built with key lengths for one batch row (nb = 1, kv_len (1)) is shared by every
// row of a B = 3 batch: its kv_len[0] applies to each. The kernel once read kv_len[b] for
// every b (past the end of the layout's one entry): against flash with kv_len {20, 20, 20}.
Test(blocksparse, one_row_layout_key_length_applies_to_every_row) {
    char err[256];
    int32_t kl = 20;
    bs_params bp = {BS_DENSE, 16, 0, 0, 0, 1};
    pb_block_layout *l = attn_bs_build(&bp, 40, 1, 0, &kl, 1, err, sizeof err);
    cr_assert(l && l->nb == 1 && l->kv_len, "%s", err);
    int B = 3, T = 40, D = 8, C3 = 3 * D;
    size_t nqkv = (size_t)B * T * C3, nout = (size_t)B * T * D, nlse = (size_t)B * T;
    float *qkv = xcalloc(nqkv, sizeof(float)), *out = xcalloc(nout, sizeof(float));
    float *lse = xcalloc(nlse, sizeof(float)), *fo = xcalloc(nout, sizeof(float));
    float *fl = xcalloc(nlse, sizeof(float));
    rng_seed(11);
    fill(qkv, nqkv, 2.0f);
    pb_attn_desc d = {.B = B, .T = T, .Tk = T, .NH = 1, .D = D, .scale = 0.35f, .layout = l};
    cr_assert(attn_bs_supports(&d) == NULL, "%s", attn_bs_supports(&d));
    attn_bs_forward(out, lse, qkv, &d);
    int32_t kv[3] = {20, 20, 20};
    pb_attn_desc f = d;
    f.layout = NULL;
    f.kv_len = kv;
    attn_flash_forward(fo, fl, qkv, &f);
    double *a = to_double(fo, nout), *b = to_double(fl, nlse);
    char msg[256];
    cr_expect(count_bad(msg, sizeof msg, out, a, nout, 1e-6, 1e-5) == 0, "out: %s", msg);
    cr_expect(count_bad(msg, sizeof msg, lse, b, nlse, 1e-6, 1e-5) == 0, "lse: %s", msg);
    free(qkv), free(out), free(lse), free(fo), free(fl), free(a), free(b);
    attn_bs_free(l);
}

// attention.block is any int >= 1 until the kernel refuses it: a block of INT_MAX over
// T = 100 is one block (ceil(T / block) once overflowed to 0 blocks), and the refusal names it.
Test(blocksparse, huge_block_is_one_block_and_refused_by_name) {
    char err[256];
    bs_params bp = {BS_LOCAL_GLOBAL_RANDOM, 2147483647, 1, 1, 1, 1};
    pb_block_layout *l = attn_bs_build(&bp, 100, 2, 1, NULL, 1, err, sizeof err);
    cr_assert(l, "%s", err);
    cr_expect(l->nqb == 1 && l->nkb == 1, "%d x %d blocks", l->nqb, l->nkb);
    cr_expect(attn_bs_validate(l) == NULL, "%s", attn_bs_validate(l));
    pb_attn_desc d = {.B = 1, .T = 100, .Tk = 100, .NH = 2, .D = 8, .scale = 0.3f, .causal = 1,
                      .layout = l};
    const char *why = attn_bs_supports(&d);
    cr_expect(why && strstr(why, "2147483647") && strstr(why, ATTN_BS_CPU_BLOCKS), "%s",
              why ? why : "accepted");
    attn_bs_free(l);
}
