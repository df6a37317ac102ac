// test_attention_run.c: build/pebble training GPT-2 with model.attention = blocksparse (and
// smallcache) as a user would: the dense pattern at flash's tile is flash to the bit, a
// sparse pattern learns, and the [attention] keys' errors are one line.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/cli.h"

TestSuite(attention_run, .fini = cleanup);

// T = 64: four blocks of 16, one of 64
#define TINY64                                                                               \
    "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=64 " \
    "--set model.vocab_size=64 --set train.batch_size=4 --set train.warmup_steps=2 "         \
    "--set train.lr=3e-3 --set run.plot=false --set data.train=%s/train_*.bin "              \
    "--set data.val=%s/val_*.bin --set train.val_every=10 --set train.val_batches=2 "

static void losses_in(const char *sub, char *buf, size_t n) {
    char dir[320];
    snprintf(dir, sizeof dir, "%s/%s", tmp, sub);
    losses_of(dir, buf, n);
}

// blocksparse with every block at flash's 64-tile runs flash's loops over the same tiles:
// the same losses to the last printed digit
Test(attention_run, dense_blocksparse_is_flash) {
    make_data("bs-dense");
    const char *bin = pebble_bin();
    char a[8192], b[8192];
    cr_assert_eq(run("%s train " TINY64 "--set train.steps=10 --set model.attention=flash "
                     "--set run.dir=%s/flash", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("%s train " TINY64 "--set train.steps=10 --set model.attention=blocksparse "
                     "--set attention.block=64 --set run.dir=%s/bs", bin, tmp, tmp, tmp), 0, "%s",
                 output());
    losses_in("flash", a, sizeof a);
    losses_in("bs", b, sizeof b);
    cr_assert(strlen(a) > 20);
    cr_assert_str_eq(a, b, "flash and dense blocksparse differ");
}

// local+global+random at blocks of 16 (window 0: the diagonal, one global, one random): the
// next-token rule needs only the previous token, which the diagonal block holds, so it
// learns; and the loss differs from the dense run's (the pattern is really sparse)
Test(attention_run, sparse_gpt2_learns, .timeout = 120) {
    make_data("bs-sparse");
    const char *bin = pebble_bin();
    char a[8192], f[8192];
    cr_assert_eq(run("%s train " TINY64 "--set train.steps=30 --set model.attention=blocksparse "
                     "--set attention.sparsity=local+global+random --set attention.block=16 "
                     "--set attention.window=0 --set attention.global=1 --set attention.random=1 "
                     "--set run.dir=%s/bs", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("%s train " TINY64 "--set train.steps=30 --set model.attention=flash "
                     "--set run.dir=%s/flash", bin, tmp, tmp, tmp), 0, "%s", output());
    losses_in("bs", a, sizeof a);
    losses_in("flash", f, sizeof f);
    double first = strtod(a, NULL), last = first;
    for (char *p = a; *p; p++)
        if (*p == ' ' && p[1]) last = strtod(p + 1, NULL);
    cr_assert(first > 3.9 && first < 4.4, "first loss %g, expected ~ln(64)", first);
    cr_assert(last < first - 1.0, "the loss did not fall: %g -> %g", first, last);
    cr_assert(strcmp(a, f) != 0, "the sparse run equals the dense one");
    // generation runs dense attention through the KV cache: a block-sparse model is refused,
    // not sampled with attention it was never trained with
    cr_assert_eq(run("%s sample --ckpt %s/bs --prompt hi --tokens 2", bin, tmp), 3, "%s", output());
    cr_assert(strstr(run_stderr(), "trained with attention.sparsity = local+global+random; "
                     "generation (the KV cache) runs dense attention only"), "%s", run_stderr());
}

Test(attention_run, smallcache_trains_like_flash, .timeout = 120) {
    make_data("sc");
    const char *bin = pebble_bin();
    char a[8192], f[8192];
    cr_assert_eq(run("%s train " TINY64 "--set train.steps=5 --set model.attention=smallcache "
                     "--set run.dir=%s/sc", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("%s train " TINY64 "--set train.steps=5 --set model.attention=flash "
                     "--set run.dir=%s/flash", bin, tmp, tmp, tmp), 0, "%s", output());
    losses_in("sc", a, sizeof a);
    losses_in("flash", f, sizeof f);
    // fp32 with other summation orders: the printed losses agree to ~4 digits
    char *p = a, *q = f;
    int n = 0;
    for (;;) {
        char *p2, *q2;
        double x = strtod(p, &p2), y = strtod(q, &q2);
        if (p2 == p || q2 == q) break;  // the end (a trailing space)
        p = p2, q = q2;
        cr_expect(fabs(x - y) < 1e-3 * (1 + fabs(y)), "loss %d: smallcache %g, flash %g", n, x, y);
        n++;
    }
    cr_assert(n >= 5, "only %d losses", n);
}

Test(attention_run, attention_keys_errors) {
    make_data("bs-err");
    const char *bin = pebble_bin();
    struct {
        const char *set, *want;
    } cases[] = {
        {"--set attention.sparsity=butterfly",
         "attention.sparsity = butterfly needs model.attention = blocksparse"},
        {"--set attention.sparsity=sparse", "must be one of dense|local+global+random|butterfly"},
        {"--set attention.block=32",
         "attention.block is set, but only model.attention = blocksparse reads it"},
        {"--set model.attention=blocksparse --set attention.sparsity=butterfly "
         "--set attention.window=2",
         "attention.window is set, but only attention.sparsity = local+global+random reads it"},
        {"--set model.attention=blocksparse --set attention.random=3",
         "attention.random is set, but only attention.sparsity = local+global+random reads it"},
        {"--set model.attention=blocksparse --set attention.block=48",
         "model.attention = blocksparse cannot run this model on the cpu backend: a layout of "
         "48 x 48 blocks (its tile is 16, 32, 64 or 128)"},
        {"--set model.attention=blocksparse --set attention.window=-1", "attention.window"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run("%s train " TINY64 "--set train.steps=1 %s --set run.dir=%s/e", bin, tmp,
                     tmp, cases[i].set, tmp);
        cr_expect(rc == 2 && strstr(output(), cases[i].want), "%s: rc %d, \"%s\"", cases[i].set,
                  rc, output());
    }
}

// model.attn_dropout: a run drops (its losses differ from the run without it), repeats itself
// to the bit (the masks are keyed by seed and step), and naive and flash drop the same
// probabilities (their losses agree to fp32 summation order); smallcache, which cannot drop,
// refuses it in one line
Test(attention_run, attention_dropout_trains_repeats_and_is_refused_by_smallcache,
     .timeout = 120) {
    make_data("adrop");
    const char *bin = pebble_bin();
    char d[8192], d2[8192], n[8192], z[8192];
    const char *runs[4][2] = {{"flash --set model.attn_dropout=0.2", "d"},
                              {"flash --set model.attn_dropout=0.2", "d2"},
                              {"naive --set model.attn_dropout=0.2", "n"},
                              {"flash", "z"}};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(run("%s train " TINY64 "--set train.steps=6 --set model.attention=%s "
                         "--set run.dir=%s/%s", bin, tmp, tmp, runs[i][0], tmp, runs[i][1]),
                     0, "%s", output());
    losses_in("d", d, sizeof d);
    losses_in("d2", d2, sizeof d2);
    losses_in("n", n, sizeof n);
    losses_in("z", z, sizeof z);
    cr_assert(strlen(d) > 20);
    cr_expect_str_eq(d, d2, "the same run with attention dropout did not repeat");
    cr_expect_str_neq(d, z, "model.attn_dropout = 0.2 gave the losses of no dropout");
    char *p = d, *q = n;
    int k = 0;
    for (;;) {
        char *p2, *q2;
        double x = strtod(p, &p2), y = strtod(q, &q2);
        if (p2 == p || q2 == q) break;
        p = p2, q = q2;
        cr_expect(fabs(x - y) < 1e-3 * (1 + fabs(y)), "loss %d: flash %g, naive %g", k, x, y);
        k++;
    }
    cr_expect(k >= 6, "only %d losses", k);
    // exported as GPT-2's attn_pdrop (and 0 where the key was not set)
    cr_assert_eq(run("%s export --ckpt %s/d --format safetensors --out %s/hf", bin, tmp, tmp), 0,
                 "%s", output());
    char cj[400];
    snprintf(cj, sizeof cj, "%s/hf/config.json", tmp);
    cr_expect(strstr(slurp(cj), "\"attn_pdrop\": 0.2,"), "%s", slurp(cj));
    cr_assert_eq(run("%s export --ckpt %s/z --format safetensors --out %s/hz", bin, tmp, tmp), 0,
                 "%s", output());
    snprintf(cj, sizeof cj, "%s/hz/config.json", tmp);
    cr_expect(strstr(slurp(cj), "\"attn_pdrop\": 0,"), "%s", slurp(cj));
    cr_expect_eq(run("%s train " TINY64 "--set train.steps=1 --set model.attention=smallcache "
                     "--set model.attn_dropout=0.1 --set run.dir=%s/e", bin, tmp, tmp, tmp),
                 2, "%s", output());
    cr_expect(strstr(output(), "model.attention = smallcache cannot run this model on the cpu "
                               "backend: dropout on the attention probabilities"),
              "%s", output());
}
