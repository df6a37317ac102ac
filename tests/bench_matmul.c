// bench_matmul.c: GFLOP/s of the CPU matmul, forward and backward, at GPT-2 shapes.
// Not part of `make test`. Build and run (the best and the median of several calls are
// printed: on a shared machine the median shows the noise, the best the code):
//   gcc -std=c11 -O3 -march=native -fopenmp -I. -D_GNU_SOURCE tests/bench_matmul.c
//       kernels/cpu/matmul.c kernels/common.c -lm -o /tmp/bench_matmul && /tmp/bench_matmul
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/cpu/matmul.h"

static float *random_floats(size_t n, uint64_t seed) {
    float *x = pb_aligned_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)((seed >> 40) * (1.0 / 16777216.0)) - 0.5f;
    }
    return x;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Best and median of `reps` timings (after one warm-up call) of forward and of backward.
enum { MAX_REPS = 64 };
static void bench(const char *what, int N, int IC, int OC, int reps) {
    float *inp = random_floats((size_t)N * IC, 1), *weight = random_floats((size_t)OC * IC, 2);
    float *bias = random_floats(OC, 3), *dout = random_floats((size_t)N * OC, 4);
    float *out = pb_aligned_alloc((size_t)N * OC * sizeof(float));
    float *dinp = pb_aligned_alloc((size_t)N * IC * sizeof(float));
    float *dweight = pb_aligned_alloc((size_t)OC * IC * sizeof(float));
    float *dbias = pb_aligned_alloc(OC * sizeof(float));
    memset(dinp, 0, (size_t)N * IC * sizeof(float));
    memset(dweight, 0, (size_t)OC * IC * sizeof(float));
    memset(dbias, 0, OC * sizeof(float));

    double flop = 2.0 * N * IC * OC;
    double tf[MAX_REPS], tb[MAX_REPS];
    PB_ASSERT(reps >= 1 && reps <= MAX_REPS);
    for (int r = 0; r <= reps; r++) {
        double t0 = pb_now();
        cpu_matmul_forward(out, inp, weight, bias, N, IC, OC);
        double t1 = pb_now();
        cpu_matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, IC, OC);
        double t2 = pb_now();
        if (r == 0) continue;  // warm-up: page faults, thread pool start
        tf[r - 1] = t1 - t0;
        tb[r - 1] = t2 - t1;
    }
    qsort(tf, reps, sizeof(double), cmp_double);
    qsort(tb, reps, sizeof(double), cmp_double);
    // backward is two products (dinp, dweight) of the forward's size, plus dbias
    printf("%-8s N=%-5d IC=%-5d OC=%-6d GFLOP/s best (median)  forward %6.1f (%6.1f)  "
           "backward %6.1f (%6.1f)\n",
           what, N, IC, OC, flop / tf[0] * 1e-9, flop / tf[reps / 2] * 1e-9,
           2 * flop / tb[0] * 1e-9, 2 * flop / tb[reps / 2] * 1e-9);
    free(inp), free(weight), free(bias), free(dout), free(out), free(dinp), free(dweight),
        free(dbias);
}

int main(void) {
    printf("threads: %d\n", omp_get_max_threads());
    bench("qkv", 512, 768, 2304, 21);
    bench("fcproj", 512, 3072, 768, 21);
    bench("lm_head", 1024, 128, 50304, 7);
    bench("tiny", 256, 128, 384, 51);
    return 0;
}
