// test_golden.c: GPT-2 stays the same to the bit. A fixed 20-step gpt2-tiny run on the CPU
// (the shape of configs/gpt2-tiny.ini, 2 micro-batches of 4 x 128 per step, its schedule,
// clip and AdamW) is compared, step by step, with tests/fixtures/golden_gpt2_tiny.txt: the
// loss and the gradient norm of each step as C hex floats. The file was written by this test
// (PEBBLE_GOLDEN_WRITE=path) at commit 2e7f96c, before the transformer core was reshaped,
// so any later change to the model code that moves a single bit fails here.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "model/gpt2.h"
#include "train/optim.h"

#define GOLDEN "tests/fixtures/golden_gpt2_tiny.txt"
#define STEPS 20

// Tokens over the whole vocabulary with a learnable rule (the next token is a fixed function
// of the previous one 90% of the time), from a fixed seed.
static void make_tokens(int32_t *tok, size_t n, int V) {
    pb_rng rng;
    pb_rng_seed(&rng, 11);
    tok[0] = 1;
    for (size_t i = 1; i < n; i++)
        tok[i] = pb_rng_u64(&rng) % 10 == 0 ? (int32_t)(pb_rng_u64(&rng) % (uint64_t)V)
                                             : (int32_t)((tok[i - 1] * 7919 + 13) % V);
}

Test(golden, gpt2_tiny_20_steps_to_the_bit) {
    gpt2_config mc = {.n_layer = 4, .n_head = 4, .n_embd = 128, .seq_len = 128,
                      .vocab_size = 50257, .attention = "auto"};
    gpt2 m;
    gpt2_build(&m, &mc, pb_ops_cpu());
    gpt2_init_weights(&m, 1337);
    pb_adamw opt;
    adamw_init(&opt, &m.p, 0.9f, 0.95f, 1e-8f, 0.1f);
    const int B = 4, T = 128, accum = 2;
    size_t per = (size_t)B * T, n = per * accum * STEPS + 1;
    int32_t *tok = malloc(n * sizeof(int32_t));
    make_tokens(tok, n, mc.vocab_size);

    char got[STEPS][96];
    for (int step = 0; step < STEPS; step++) {
        double lr = lr_schedule(step, 300, 20, 3e-3, 0.1);
        gpt2_zero_grad(&m);
        double loss = 0.0;
        for (int k = 0; k < accum; k++) {
            const int32_t *x = tok + ((size_t)step * accum + k) * per;
            loss += gpt2_forward(&m, x, x + 1, B, T) / accum;
            gpt2_backward(&m, 1.0f / accum);
        }
        float norm = optim_clip_grad_norm(&m.p, 1.0f);
        adamw_step(&opt, &m.p, (float)lr);
        snprintf(got[step], sizeof got[step], "%d %a %a", step + 1, loss, (double)norm);
    }

    const char *write = getenv("PEBBLE_GOLDEN_WRITE");
    if (write) {
        FILE *f = fopen(write, "w");
        cr_assert(f, "cannot create %s", write);
        for (int s = 0; s < STEPS; s++) fprintf(f, "%s\n", got[s]);
        fclose(f);
    } else {
        FILE *f = fopen(GOLDEN, "r");
        cr_assert(f, "cannot open %s (run from the repository root)", GOLDEN);
        char line[128];
        for (int s = 0; s < STEPS; s++) {
            cr_assert(fgets(line, sizeof line, f), "%s ends before step %d", GOLDEN, s + 1);
            line[strcspn(line, "\n")] = '\0';
            cr_expect_str_eq(got[s], line, "step %d: got '%s', golden '%s'", s + 1, got[s], line);
        }
        fclose(f);
    }
    free(tok);
    adamw_free(&opt);
    gpt2_free(&m);
}
