// bench.c: `pebble bench`: times forward and forward+backward of GPT-2 shapes on random
// tokens and prints a table (tokens/s, ms, GFLOP/s). Not a test: it asserts nothing.
#include "train/bench.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "model/gpt2.h"

typedef struct bench_case {
    const char *name;
    int L, NH, C, T, B;
} bench_case;

// FLOPs of one forward+backward per token: matmuls (2 per multiply-add; backward twice the
// forward) and causal attention (QK^T and PV over T/2 keys on average).
static double flops_per_token(const gpt2_config *c, int T) {
    double C = c->n_embd, L = c->n_layer, Vp = c->padded_vocab;
    double matmul = 2.0 * (12.0 * C * C * L + C * Vp);
    double attn = 2.0 * 2.0 * (T / 2.0) * C * L;
    return 3.0 * (matmul + attn);
}

static void run_case(const bench_case *bc, int iters, const pb_ops *ops) {
    gpt2_config cfg = {.n_layer = bc->L, .n_head = bc->NH, .n_embd = bc->C, .seq_len = bc->T,
                       .vocab_size = 50257};
    gpt2 m;
    gpt2_build(&m, &cfg, ops);
    gpt2_init_weights(&m, 1);
    int N = bc->B * bc->T;
    int32_t *inp = pb_malloc((size_t)N * sizeof(int32_t)), *tgt = pb_malloc((size_t)N * sizeof(int32_t));
    pb_rng rng;
    pb_rng_seed(&rng, 7);
    for (int i = 0; i < N; i++) inp[i] = (int32_t)(pb_rng_u64(&rng) % 50257);
    for (int i = 0; i < N; i++) tgt[i] = (int32_t)(pb_rng_u64(&rng) % 50257);

    gpt2_forward(&m, inp, tgt, bc->B, bc->T);  // warm-up: allocation, page faults
    gpt2_backward(&m, 1.0f);
    double fwd = 0.0, both = 0.0;
    for (int i = 0; i < iters; i++) {
        double t0 = pb_now();
        gpt2_forward(&m, inp, tgt, bc->B, bc->T);
        double t1 = pb_now();
        gpt2_zero_grad(&m);
        gpt2_backward(&m, 1.0f);
        double t2 = pb_now();
        fwd += t1 - t0;
        both += t2 - t0;
    }
    fwd /= iters;
    both /= iters;
    printf("| %-10s | %7.1fM | %2d | %4d | %9.1f | %13.1f | %8.0f | %7.1f |\n", bc->name,
           gpt2_num_trainable(&m) / 1e6, bc->B, bc->T, fwd * 1e3, both * 1e3, N / both,
           flops_per_token(&m.cfg, bc->T) * N / both / 1e9);
    fflush(stdout);
    free(inp);
    free(tgt);
    gpt2_free(&m);
}

int bench_main(int argc, char **argv) {
    int iters = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000000)
                pb_die(PB_EXIT_USAGE, "bench: --iters: '%s' is not a positive integer", argv[i]);
            iters = (int)v;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: pebble bench [--iters N]\n"
                   "  times forward and forward+backward of GPT-2 124M (B=4, T=64) and of the\n"
                   "  gpt2-tiny shape (B=8, T=128) on the CPU; OMP_NUM_THREADS sets threads\n");
            return 0;
        } else {
            pb_die(PB_EXIT_USAGE, "bench: unknown option '%s' (see pebble bench --help)", argv[i]);
        }
    }
    const bench_case cases[] = {
        {"gpt2-124m", 12, 12, 768, 64, 4},
        {"gpt2-tiny", 4, 4, 128, 128, 8},
    };
    const pb_ops *ops = pb_ops_cpu();
    printf("pebble bench: forward+backward on the %s backend, %d threads, %d iterations, fp32\n\n",
           ops->name, omp_get_max_threads(), iters);
    printf("| model      |   params | B  |  T   | fwd ms    | fwd+bwd ms    | tokens/s | GFLOP/s |\n");
    printf("|------------|----------|----|------|-----------|---------------|----------|---------|\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], iters, ops);
    return 0;
}
