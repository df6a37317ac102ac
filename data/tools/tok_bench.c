// tok_bench.c: `tok_bench [--tokenizer FILE] FILES...`: GPT-2 tokenizer throughput (MB/s and
// tokens/s) on one thread and on all of them (OMP_NUM_THREADS); run by `make bench-data`.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "kernels/common.h"

typedef struct piece {
    const uint8_t *p;
    size_t n;
} piece;

// One pass over all pieces on `threads` threads, each with its own encoder; returns seconds.
static double pass(tok_encoder **encs, const piece *ps, size_t np, int threads, size_t *tokens) {
    size_t total = 0;
    double t0 = pb_now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        tok_encoder *e = encs[omp_get_thread_num()];
        tok_ids ids = {0};
#pragma omp for schedule(dynamic, 1)
        for (size_t i = 0; i < np; i++) {
            ids.n = 0;
            tok_encode(e, ps[i].p, ps[i].n, 0, &ids);
            total += ids.n;
        }
        tok_ids_free(&ids);
    }
    *tokens = total;
    return pb_now() - t0;
}

// The first pass runs with empty merge caches (as prep starts); then passes for about a
// second with warm ones (as prep runs on a large corpus). Seconds per pass of each.
static void run(const tok_tokenizer *t, const piece *ps, size_t np, int threads, double *cold,
                double *warm, size_t *tokens) {
    tok_encoder **encs = pb_malloc((size_t)threads * sizeof *encs);
    for (int i = 0; i < threads; i++) encs[i] = tok_encoder_new(t);
    *cold = pass(encs, ps, np, threads, tokens);
    double total = 0;
    int passes = 0;
    while (total < 1.0 || passes < 3) {
        total += pass(encs, ps, np, threads, tokens);
        passes++;
    }
    *warm = total / passes;
    for (int i = 0; i < threads; i++) tok_encoder_free(encs[i]);
    free(encs);
}

int main(int argc, char **argv) {
    const char *tok_path = TOK_DEFAULT_PATH;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--tokenizer") == 0) tok_path = argv[2], first = 3;
    if (first >= argc) {
        fprintf(stderr, "usage: tok_bench [--tokenizer FILE] FILES...\n");
        return PB_EXIT_USAGE;
    }
    char err[512];
    tok_tokenizer *t = tok_load(tok_path, err, sizeof err);
    if (!t) pb_die(PB_EXIT_DATA, "%s (make tokenizer builds it)", err);

    // Read the files and cut them into ~16 KiB pieces at points that change no token, so
    // that threads share the work evenly however the corpus is split into files.
    size_t np = 0, cap = 1024, bytes = 0;
    piece *ps = pb_malloc(cap * sizeof *ps);
    for (int i = first; i < argc; i++) {
        FILE *f = pb_fopen(argv[i], "rb");
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        if (n <= 0) {
            fclose(f);
            continue;
        }
        uint8_t *buf = pb_malloc((size_t)n);
        if (fread(buf, 1, (size_t)n, f) != (size_t)n)
            pb_die(PB_EXIT_RUNTIME, "cannot read %s", argv[i]);
        fclose(f);
        for (size_t off = 0; off < (size_t)n;) {
            size_t cut = tok_split_point(buf + off, (size_t)n - off, 16 * 1024);
            if (np == cap) {
                cap *= 2;
                ps = realloc(ps, cap * sizeof *ps);
                if (!ps) pb_die(PB_EXIT_RUNTIME, "out of memory");
            }
            ps[np++] = (piece){buf + off, cut};
            off += cut;
        }
        bytes += (size_t)n;
    }
    if (bytes == 0) pb_die(PB_EXIT_USAGE, "tok_bench: the files are empty");

    int nt = omp_get_max_threads();
    printf("tok_bench: %d files, %.2f MB\n", argc - first, bytes / 1e6);
    size_t tokens = 0;
    for (int threads = 1;; threads = nt) {
        double cold, warm;
        run(t, ps, np, threads, &cold, &warm, &tokens);
        printf(
            "tok_bench: %2d thread%s  cold cache %7.1f MB/s %6.2fM tokens/s   warm cache %7.1f "
            "MB/s %6.2fM tokens/s\n",
            threads, threads > 1 ? "s" : " ", bytes / 1e6 / cold, tokens / 1e6 / cold,
            bytes / 1e6 / warm, tokens / 1e6 / warm);
        if (threads == nt) break;
    }
    printf("tok_bench: %zu tokens, %.2f bytes/token\n", tokens, (double)bytes / (double)tokens);
    tok_free(t);
    return 0;
}
