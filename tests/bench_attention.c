// bench_attention.c: ms per call of CPU attention, naive vs flash (a tool, not run by `make test`).
//
// Build and run (from the repository root; OMP_NUM_THREADS picks the thread count):
//   gcc -std=c11 -O3 -march=native -fopenmp -I. -D_GNU_SOURCE tests/bench_attention.c
//       kernels/attention/*.c kernels/ops.c kernels/common.c -lm -o /tmp/bench_attention
//   /tmp/bench_attention [causal, default 1] [padded fraction of keys, default 0]
// Shapes: B=4, NH=12, D=64 (GPT-2 small's heads), T = 64 .. 1024. With a padded fraction f,
// every batch row's kv_len is T - f T (a key-padding mask): flash's work shrinks with it.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/common.h"

typedef void (*fwd_fn)(float *, float *, const float *, const pb_attn_desc *);
typedef void (*bwd_fn)(float *, const float *, const float *, const float *, const float *,
                       const pb_attn_desc *);

// best of several runs, in ms: the minimum is the least noisy estimate on a shared machine
static double time_fwd(fwd_fn f, float *out, float *lse, const float *qkv,
                       const pb_attn_desc *d) {
    double best = 1e30, spent = 0.0;
    for (int rep = 0; rep < 20 && (rep < 2 || spent < 1.0); rep++) {
        double t0 = pb_now();
        f(out, lse, qkv, d);
        double dt = pb_now() - t0;
        spent += dt;
        if (dt < best) best = dt;
    }
    return 1e3 * best;
}

static double time_bwd(bwd_fn f, float *dqkv, const float *dout, const float *out,
                       const float *lse, const float *qkv, const pb_attn_desc *d) {
    double best = 1e30, spent = 0.0;
    for (int rep = 0; rep < 20 && (rep < 2 || spent < 1.0); rep++) {
        double t0 = pb_now();
        f(dqkv, dout, out, lse, qkv, d);
        double dt = pb_now() - t0;
        spent += dt;
        if (dt < best) best = dt;
    }
    return 1e3 * best;
}

int main(int argc, char **argv) {
    int causal = argc > 1 ? atoi(argv[1]) : 1;
    double padded = argc > 2 ? atof(argv[2]) : 0.0;
    int B = 4, NH = 12, D = 64, C = NH * D;
    printf("attention bench: B=%d NH=%d D=%d causal=%d, padded %.2f, %d threads, ms per call "
           "(best of runs)\n", B, NH, D, causal, padded, omp_get_max_threads());
    printf("%6s %12s %12s %12s %12s %9s %9s\n", "T", "naive fwd", "flash fwd", "naive bwd",
           "flash bwd", "fwd x", "bwd x");
    for (int T = 64; T <= 1024; T *= 2) {
        size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C;
        float *qkv = pb_aligned_alloc(nqkv * sizeof(float));
        float *dqkv = pb_aligned_alloc(nqkv * sizeof(float));
        float *out = pb_aligned_alloc(nout * sizeof(float));
        float *dout = pb_aligned_alloc(nout * sizeof(float));
        float *lse = pb_aligned_alloc((size_t)B * NH * T * sizeof(float));
        srand(1);
        for (size_t i = 0; i < nqkv; i++) qkv[i] = 2.0f * rand() / RAND_MAX - 1.0f;
        for (size_t i = 0; i < nout; i++) dout[i] = 2.0f * rand() / RAND_MAX - 1.0f;
        memset(dqkv, 0, nqkv * sizeof(float));
        int32_t kv_len[4];
        for (int b = 0; b < B; b++) kv_len[b] = T - (int)(padded * T) > 0 ? T - (int)(padded * T) : 1;
        pb_attn_desc d = {B, T, T, NH, D, 0.125f, causal, padded > 0 ? kv_len : NULL, NULL, 0, 0};

        double nf = time_fwd(attn_naive_forward, out, lse, qkv, &d);
        double nb = time_bwd(attn_naive_backward, dqkv, dout, out, lse, qkv, &d);
        double ff = time_fwd(attn_flash_forward, out, lse, qkv, &d);
        double fb = time_bwd(attn_flash_backward, dqkv, dout, out, lse, qkv, &d);
        printf("%6d %12.2f %12.2f %12.2f %12.2f %9.2f %9.2f\n", T, nf, ff, nb, fb, nf / ff,
               nb / fb);
        fflush(stdout);
        free(qkv), free(dqkv), free(out), free(dout), free(lse);
    }
    return 0;
}
