// compare.h: what the GPU suites share: host copies, the one comparison they all make (the
// relative L2 error of a GPU result against the CPU reference), and the whole-model tests'
// shape and batch. Header-only, static.
#ifndef PEBBLE_TESTS_GPU_COMPARE_H
#define PEBBLE_TESTS_GPU_COMPARE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/common.h"
#include "model/gpt2.h"

#pragma GCC diagnostic ignored "-Wunused-function"

static float *copy_host(const float *x, size_t n) {
    float *y = pb_malloc(n * sizeof(float) + 16);
    memcpy(y, x, n * sizeof(float));
    return y;
}

// Asserts ||got - ref|| <= tol * ||ref|| (and got == ref where ref is all zero), with every
// element of got finite. Prints the error either way: the numbers go into docs/PERF.md.
static double expect_close(const char *what, const float *got, const float *ref, size_t n,
                           double tol) {
    double num = 0.0, den = 0.0, maxabs = 0.0;
    size_t bad = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            if (bad++ == 0) worst = i;
            continue;
        }
        double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (fabs(d) > maxabs) maxabs = fabs(d), worst = i;
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    printf("  %-44s n=%-9zu rel %.2e  max|d| %.2e  (tol %.0e)\n", what, n, rel, maxabs, tol);
    fflush(stdout);
    cr_expect(bad == 0, "%s: %zu non-finite elements (first at %zu): unwritten or NaN", what,
              bad, worst);
    cr_expect(rel <= tol, "%s: relative error %.3e > %.0e (worst at %zu: %.8g vs %.8g)", what,
              rel, tol, worst, (double)got[worst], (double)ref[worst]);
    return rel;
}

// The whole-model tests' shape and batch: the same init runs on the GPU and the CPU.
static const gpt2_config TINY = {2, 2, 128, 96, 1000, 0};  // L, NH, C (D = 64), maxT, V
#define TB 3
#define TT 80  // not a multiple of the 64-row attention tile

// inputs and targets (TB, TT) of vocabulary 1000, every 31st target ignored (-1)
static void tiny_batch(int32_t *inp, int32_t *tgt, uint64_t seed) {
    pb_rng r;
    pb_rng_seed(&r, seed);
    for (int i = 0; i < TB * TT; i++) {
        inp[i] = (int32_t)(pb_rng_u64(&r) % 1000);
        tgt[i] = i % 31 == 7 ? -1 : (int32_t)(pb_rng_u64(&r) % 1000);
    }
}

#endif
