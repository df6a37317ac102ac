// test_train.c: build/pebble end to end: a short training run that learns, runs that repeat
// to the bit (same seed; 1 or 2 threads), and the documented errors and exit codes.
#include <criterion/criterion.h>
#include <string.h>

#include "tests/cli.h"

#define TINY                                                                                \
    "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32 " \
    "--set model.vocab_size=64 --set train.batch_size=4 --set train.warmup_steps=2 "         \
    "--set run.plot=false --set data.train=%s/train_*.bin --set data.val=%s/val_*.bin "

Test(train, learns_and_repeats_to_the_bit, .fini = cleanup) {
    make_data("train");
    char a[8192], b[8192], c[8192], dir[400];
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=30 --set train.lr=3e-3 --set run.dir=%s/a",
                     bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("%s train " TINY "--set train.steps=30 --set train.lr=3e-3 --set run.dir=%s/b",
                     bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("OMP_NUM_THREADS=1 %s train " TINY
                     "--set train.steps=30 --set train.lr=3e-3 --set run.dir=%s/c",
                     bin, tmp, tmp, tmp), 0, "%s", output());
    snprintf(dir, sizeof dir, "%s/a", tmp);
    losses_of(dir, a, sizeof a);
    snprintf(dir, sizeof dir, "%s/b", tmp);
    losses_of(dir, b, sizeof b);
    snprintf(dir, sizeof dir, "%s/c", tmp);
    losses_of(dir, c, sizeof c);
    cr_assert_str_eq(a, b, "two runs with one seed differ");
    cr_assert_str_eq(a, c, "one thread and two threads differ");
    // ln(64) = 4.16 at the start; the rule is learnable, so the loss must clearly fall.
    double first = strtod(a, NULL), last_val = 0;
    char *v = strstr(slurp(strcat(dir, "/metrics.jsonl")), "val_loss");
    cr_assert(v, "no validation in metrics.jsonl");
    while (strstr(v + 1, "val_loss")) v = strstr(v + 1, "val_loss");
    last_val = strtod(v + 11, NULL);
    cr_assert(first > 3.9 && first < 4.4, "first loss %g, expected ~ln(64)", first);
    cr_assert(last_val < first - 1.0, "val loss %g did not fall from %g", last_val, first);
    // a different seed gives a different run
    cr_assert_eq(run("%s train " TINY "--set train.steps=3 --set train.seed=7 --set run.dir=%s/d",
                     bin, tmp, tmp, tmp), 0, "%s", output());
    snprintf(dir, sizeof dir, "%s/d", tmp);
    losses_of(dir, c, sizeof c);
    cr_assert(strncmp(a, c, 9) != 0, "seed 7 gave the same first loss as seed 1337");
}

Test(train, gradient_accumulation_runs, .fini = cleanup) {
    make_data("train");
    // total batch of 2 micro-batches: the step must see 2 * 4 * 32 tokens
    cr_assert_eq(run("%s train " TINY "--set train.steps=2 --set train.total_batch_tokens=256 "
                     "--set run.dir=%s/acc", pebble_bin(), tmp, tmp, tmp), 0, "%s", output());
    char p[400];
    snprintf(p, sizeof p, "%s/acc/metrics.jsonl", tmp);
    cr_assert(strstr(slurp(p), "\"tokens\": 512}"), "%s", slurp(p));
}

// ----------------------------------------------------------------------------
// errors: one line "pebble: ..." naming the problem, and the documented exit code

static void expect_error(int code, const char *needle) {
    char *out = output();
    cr_assert(strstr(out, needle), "expected '%s' in: %s", needle, out);
    cr_assert(strncmp(out, "pebble: ", 8) == 0 || strstr(out, "\npebble: "), "%s", out);
}

Test(train, config_errors, .fini = cleanup) {
    make_data("train");
    const char *bin = pebble_bin();
    char cfg[300];
    snprintf(cfg, sizeof cfg, "%s/bad.ini", tmp);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "[train]\nsteps = 10\nlrr = 0.1\n");
    fclose(f);
    cr_assert_eq(run("%s train -c %s", bin, cfg), 2);
    expect_error(2, "bad.ini:3: unknown key 'train.lrr'");

    cr_assert_eq(run("%s train -c /nonexistent/x.ini", bin), 2);
    expect_error(2, "/nonexistent/x.ini");

    cr_assert_eq(run("%s train --set train.lr=abc", bin), 2);
    expect_error(2, "'abc' is not a number");

    cr_assert_eq(run("%s train --set train.steps=10", bin), 2);
    expect_error(2, "missing required key data.train");

    cr_assert_eq(run("%s train --bogus", bin), 2);
    expect_error(2, "unknown option '--bogus'");

    cr_assert_eq(run("%s frobnicate", bin), 2);
    expect_error(2, "unknown command 'frobnicate'");

    cr_assert_eq(run("%s train --set data.train=%s/none_*.bin", bin, tmp), 3);
    expect_error(3, "no files match");

    // a file that is not a shard
    char bad[300];
    snprintf(bad, sizeof bad, "%s/junk.bin", tmp);
    f = fopen(bad, "w");
    for (int i = 0; i < 2000; i++) fputc('x', f);
    fclose(f);
    cr_assert_eq(run("%s train --set data.train=%s", bin, bad), 3);
    expect_error(3, "bad magic");

    // --help lists every key with its default, and exits 0
    cr_assert_eq(run("%s train --help", bin), 0);
    cr_assert(strstr(output(), "train.lr") && strstr(output(), "model.n_layer"), "%s", output());
}
