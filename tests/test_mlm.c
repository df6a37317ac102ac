// test_mlm.c: Criterion tests of the masked-LM corruption (data/mlm.h).
//
// The statistics are checked against the binomial law each count follows, within 5 standard
// deviations (a false failure about once in 1.7 million runs per bound); the bounds are
// computed here from the stated probabilities, not from the code's thresholds.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/batch.h"
#include "data/mlm.h"

#define V 30522

// Row r of a synthetic batch: [CLS], words, [SEP], then [PAD]; every 17th word is [UNK].
// Words avoid the specials (and [MASK]) so that a changed input is always visible.
static void fill(pb_batch *b, uint64_t salt) {
    for (int r = 0; r < b->B; r++) {
        int len = 3 + (int)((r * 37 + salt) % (uint64_t)(b->T - 2));  // 3 .. T
        b->lengths[r] = len;
        b->labels[r] = -1;
        int32_t *in = b->inputs + (size_t)r * b->T;
        for (int t = 0; t < b->T; t++) {
            uint64_t x = (uint64_t)(r * 1009 + t * 7919) + salt * 104729;
            in[t] = t >= len ? WP_PAD : 1000 + (int32_t)(x % 29000);
            if (t < len && t % 17 == 5) in[t] = WP_UNK;
            b->targets[(size_t)r * b->T + t] = 12345;  // must all be overwritten
        }
        in[0] = WP_CLS;
        in[len - 1] = WP_SEP;
    }
}

static void copy_batch(pb_batch *dst, const pb_batch *src) {
    size_t bt = (size_t)src->B * src->T;
    memcpy(dst->inputs, src->inputs, bt * sizeof(int32_t));
    memcpy(dst->targets, src->targets, bt * sizeof(int32_t));
    memcpy(dst->lengths, src->lengths, (size_t)src->B * sizeof(int32_t));
    memcpy(dst->labels, src->labels, (size_t)src->B * sizeof(int32_t));
}

// |x - n p| <= 5 sqrt(n p (1-p)), plus one count of slack for the discrete law.
static void within_binomial(const char *what, long long x, long long n, double p) {
    double mean = (double)n * p, sd = sqrt((double)n * p * (1.0 - p));
    cr_assert(fabs((double)x - mean) <= 5.0 * sd + 1.0,
              "%s: %lld of %lld, expected %.1f +- %.1f (5 sigma)", what, x, n, mean, 5.0 * sd);
}

// ---------------------------------------------------------------------------------------
// statistics

Test(mlm, rates_specials_and_uniform_random_ids) {
    enum { B = 64, T = 128, STEPS = 200, BINS = 16 };
    pb_batch orig, b;
    batch_alloc(&orig, B, T);
    batch_alloc(&b, B, T);
    long long maskable = 0, chosen = 0, n_mask = 0, n_keep = 0, n_rand = 0, unk = 0, unk_chosen = 0,
              n_special_rand = 0;
    long long bins[BINS] = {0};
    for (int s = 0; s < STEPS; s++) {
        fill(&orig, (uint64_t)s);
        copy_batch(&b, &orig);
        int64_t got = mlm_mask(&b, V, MLM_PROB, 7, (uint64_t)s, 0);
        long long counted = 0;
        for (int r = 0; r < B; r++)
            for (int t = 0; t < T; t++) {
                size_t i = (size_t)r * T + t;
                int32_t o = orig.inputs[i], in = b.inputs[i], tg = b.targets[i];
                int special = t >= orig.lengths[r] || o == WP_CLS || o == WP_SEP || o == WP_PAD;
                if (special) {
                    cr_assert_eq(tg, -1, "special or padding chosen: row %d t %d id %d", r, t, o);
                    cr_assert_eq(in, o, "special or padding changed: row %d t %d", r, t);
                    continue;
                }
                maskable++;
                unk += o == WP_UNK;
                if (tg == -1) {
                    cr_assert_eq(in, o, "unchosen position changed: row %d t %d", r, t);
                    continue;
                }
                cr_assert_eq(tg, o, "target is not the original id: row %d t %d", r, t);
                chosen++;
                counted++;
                unk_chosen += o == WP_UNK;
                if (in == WP_MASK) n_mask++;
                else if (in == o) n_keep++;
                else {
                    cr_assert(in >= 0 && in < V, "random id %d outside [0, V)", in);
                    n_rand++;
                    n_special_rand += in <= WP_MASK;
                    bins[(long long)in * BINS / V]++;
                }
            }
        cr_assert_eq(got, counted, "mlm_mask's count %lld, targets set %lld", (long long)got,
                     counted);
    }
    cr_assert_gt(maskable, 500000);
    within_binomial("chosen of maskable", chosen, maskable, 0.15);
    within_binomial("[UNK] chosen of [UNK]", unk_chosen, unk, 0.15);
    cr_assert_gt(unk_chosen, 0, "[UNK] is maskable");
    // A random id equals [MASK] or the original with probability 1/V each.
    within_binomial("[MASK] of chosen", n_mask, chosen, 0.8 + 0.1 / V);
    within_binomial("unchanged of chosen", n_keep, chosen, 0.1 + 0.1 / V);
    within_binomial("random of chosen", n_rand, chosen, 0.1 * (1.0 - 2.0 / V));
    // Uniform over [0, V): bin k holds the ids with floor(id BINS / V) = k.
    for (int k = 0; k < BINS; k++) {
        long long lo = ((long long)k * V + BINS - 1) / BINS, hi = ((long long)(k + 1) * V + BINS - 1) / BINS;
        char what[64];
        snprintf(what, sizeof what, "random ids in bin %d", k);
        within_binomial(what, bins[k], n_rand, (double)(hi - lo) / V);
    }
    // The whole vocabulary, specials included (ids 0 .. 103: 104 of V).
    within_binomial("random ids <= [MASK]", n_special_rand, n_rand, 104.0 / V);
    batch_free(&orig);
    batch_free(&b);
}

Test(mlm, probability_zero_and_one) {
    pb_batch b;
    batch_alloc(&b, 4, 32);
    fill(&b, 3);
    cr_assert_eq(mlm_mask(&b, V, 0.0, 1, 1, 0), 0);
    for (int i = 0; i < 4 * 32; i++) cr_assert_eq(b.targets[i], -1);
    fill(&b, 3);
    long long want = 0;
    for (int r = 0; r < 4; r++) want += b.lengths[r] - 2;  // all but [CLS] and [SEP]
    cr_assert_eq(mlm_mask(&b, V, 1.0, 1, 1, 0), want);
    batch_free(&b);
}

// A batch with nothing maskable ([CLS] [SEP] only) gets no target and no error.
Test(mlm, nothing_maskable) {
    pb_batch b;
    batch_alloc(&b, 3, 8);
    for (int r = 0; r < 3; r++) {
        b.lengths[r] = 2;
        for (int t = 0; t < 8; t++) b.inputs[r * 8 + t] = WP_PAD;
        b.inputs[r * 8] = WP_CLS;
        b.inputs[r * 8 + 1] = WP_SEP;
    }
    cr_assert_eq(mlm_mask(&b, V, 1.0, 5, 0, 0), 0);
    for (int i = 0; i < 24; i++) cr_assert_eq(b.targets[i], -1);
    batch_free(&b);
}

// ---------------------------------------------------------------------------------------
// determinism and independence of the split

static int same_batch(const pb_batch *a, const pb_batch *b) {
    size_t bt = (size_t)a->B * a->T * sizeof(int32_t);
    return !memcmp(a->inputs, b->inputs, bt) && !memcmp(a->targets, b->targets, bt);
}

Test(mlm, same_key_same_masks_other_key_other_masks) {
    pb_batch a, b;
    batch_alloc(&a, 8, 64);
    batch_alloc(&b, 8, 64);
    fill(&a, 1);
    fill(&b, 1);
    mlm_mask(&a, V, MLM_PROB, 42, 10, 0);
    mlm_mask(&b, V, MLM_PROB, 42, 10, 0);
    cr_assert(same_batch(&a, &b), "one key, two masks");
    const struct { uint64_t seed, step, row; const char *what; } other[] = {
        {42, 11, 0, "step"}, {43, 10, 0, "seed"}, {42, 10, 8, "first_row"}};
    for (size_t k = 0; k < sizeof other / sizeof other[0]; k++) {
        fill(&b, 1);
        mlm_mask(&b, V, MLM_PROB, other[k].seed, other[k].step, other[k].row);
        cr_assert(!same_batch(&a, &b), "another %s gave the same masks", other[k].what);
    }
    batch_free(&a);
    batch_free(&b);
}

// Identical rows still get independent masks: the row index is part of the key.
Test(mlm, identical_rows_get_independent_masks) {
    enum { B = 64, T = 64 };
    pb_batch b;
    batch_alloc(&b, B, T);
    for (int r = 0; r < B; r++) {
        b.lengths[r] = T;
        for (int t = 0; t < T; t++) b.inputs[r * T + t] = 2000 + 3 * t;
        b.inputs[r * T] = WP_CLS;
        b.inputs[r * T + T - 1] = WP_SEP;
    }
    mlm_mask(&b, V, MLM_PROB, 11, 0, 0);
    // Two rows share a pattern of 62 choices with probability (0.85^2 + 0.15^2)^62 < 1e-5.
    for (int r = 0; r < B; r++)
        for (int q = r + 1; q < B; q++)
            cr_assert_neq(memcmp(b.targets + r * T, b.targets + q * T, T * sizeof(int32_t)), 0,
                          "rows %d and %d got one mask", r, q);
    batch_free(&b);
}

// Rows [r0, r0 + n) of big copied into a batch of n rows.
static void take_rows(pb_batch *dst, const pb_batch *big, int r0) {
    size_t T = (size_t)big->T;
    memcpy(dst->inputs, big->inputs + r0 * T, (size_t)dst->B * T * sizeof(int32_t));
    memcpy(dst->lengths, big->lengths + r0, (size_t)dst->B * sizeof(int32_t));
}

static int rows_equal(const pb_batch *part, const pb_batch *big, int r0) {
    size_t n = (size_t)part->B * part->T, at = (size_t)r0 * big->T;
    return !memcmp(part->inputs, big->inputs + at, n * sizeof(int32_t)) &&
           !memcmp(part->targets, big->targets + at, n * sizeof(int32_t));
}

// One step's global batch of 2B rows, masked at once on one rank, equals its halves masked
// on two ranks, and equals two micro-batches of one rank; and masking row by row (any call
// order, any thread split) gives the same rows.
Test(mlm, masks_do_not_depend_on_the_rank_split) {
    enum { B = 6, T = 48 };
    pb_batch big, unmasked, half;
    batch_alloc(&big, 2 * B, T);
    batch_alloc(&unmasked, 2 * B, T);
    batch_alloc(&half, B, T);
    fill(&big, 9);
    copy_batch(&unmasked, &big);
    cr_assert_eq(mlm_first_row(0, 0, 1, 2 * B), 0);
    cr_assert_eq(mlm_first_row(1, 2, 3, 5), (2 * 3 + 1) * 5);  // rank 2's second of 3
    mlm_mask(&big, V, MLM_PROB, 3, 77, mlm_first_row(0, 0, 1, 2 * B));
    for (int r = 0; r < 2; r++) {  // 2 ranks, 1 micro-batch each
        take_rows(&half, &unmasked, r * B);
        mlm_mask(&half, V, MLM_PROB, 3, 77, mlm_first_row(0, r, 1, B));
        cr_assert(rows_equal(&half, &big, r * B), "rank %d of 2 masks its rows otherwise", r);
    }
    for (int m = 0; m < 2; m++) {  // 1 rank, 2 micro-batches
        take_rows(&half, &unmasked, m * B);
        mlm_mask(&half, V, MLM_PROB, 3, 77, mlm_first_row(m, 0, 2, B));
        cr_assert(rows_equal(&half, &big, m * B), "micro-batch %d of 1 rank differs", m);
    }
    pb_batch one;
    batch_alloc(&one, 1, T);
    for (int r = 2 * B - 1; r >= 0; r--) {  // backwards, one row at a time
        take_rows(&one, &unmasked, r);
        mlm_mask(&one, V, MLM_PROB, 3, 77, (uint64_t)r);
        cr_assert(rows_equal(&one, &big, r), "row %d alone differs", r);
    }
    // 4 ranks x 2 micro-batches of 3 rows (24 slots) against one rank's 24 rows
    pb_batch g24, small;
    batch_alloc(&g24, 24, T);
    batch_alloc(&small, 3, T);
    fill(&g24, 4);
    pb_batch raw24;
    batch_alloc(&raw24, 24, T);
    copy_batch(&raw24, &g24);
    mlm_mask(&g24, V, MLM_PROB, 3, 78, 0);
    for (int m = 0; m < 2; m++)
        for (int r = 0; r < 4; r++) {
            int r0 = (int)mlm_first_row(m, r, 2, 3);  // rank r's block of 2 slots
            cr_assert_eq(r0, (r * 2 + m) * 3);
            take_rows(&small, &raw24, r0);
            mlm_mask(&small, V, MLM_PROB, 3, 78, (uint64_t)r0);
            cr_assert(rows_equal(&small, &g24, r0), "micro %d rank %d of 4", m, r);
        }
    batch_free(&big);
    batch_free(&unmasked);
    batch_free(&half);
    batch_free(&one);
    batch_free(&g24);
    batch_free(&small);
    batch_free(&raw24);
}
