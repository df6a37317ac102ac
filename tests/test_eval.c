// test_eval.c: `pebble eval` end to end: on the trainer's validation data it prints the
// trainer's own last validation loss (the same windows, the same mean), --json, a run
// directory, and its errors with their exit codes; and model.attention checked at startup.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/cli.h"

#define TINY                                                                                \
    "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32 " \
    "--set model.vocab_size=64 --set train.batch_size=4 --set train.warmup_steps=2 "         \
    "--set run.plot=false --set data.train=%s/train_*.bin --set data.val=%s/val_*.bin "

// The last "val_loss" of a run's metrics.jsonl, as written there (%.6f).
static void last_val_loss(const char *dir, char *out, size_t n) {
    char p[400];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    char *s = slurp(p), *v = NULL;
    for (char *q = strstr(s, "\"val_loss\": "); q; q = strstr(q + 1, "\"val_loss\": ")) v = q;
    cr_assert(v, "no val_loss in %s", p);
    v += strlen("\"val_loss\": ");
    snprintf(out, n, "%.*s", (int)strcspn(v, "}"), v);
}

// `pebble eval` of run directory dir (its newest checkpoint, the run's batches) prints the
// run's last validation loss, to the digit.
static void expect_eval_gives_last_val(const char *bin, const char *dir) {
    char want[64], line[128];
    last_val_loss(dir, want, sizeof want);
    cr_assert_eq(run("%s eval --ckpt %s --data '%s/val_*.bin'", bin, dir, tmp), 0, "%s",
                 output());
    snprintf(line, sizeof line, "loss %s ppl ", want);
    cr_assert(strstr(run_stdout(), line), "expected '%s' in: %s", line, run_stdout());
}

static void expect_error(const char *needle) {
    char *out = output();
    cr_assert(strstr(out, needle), "expected '%s' in: %s", needle, out);
    cr_assert(strstr(out, "pebble: "), "%s", out);
}

Test(eval, gives_the_trainers_validation_loss, .fini = cleanup) {
    make_data("eval");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=12 --set train.val_batches=5 "
                     "--set run.dir=%s/run", bin, tmp, tmp, tmp), 0, "%s", output());
    char dir[300];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    // a run directory: its newest checkpoint, the run's batch size and val_batches
    expect_eval_gives_last_val(bin, dir);
    // 5 batches of 4 x 32
    cr_assert(strstr(run_stdout(), "tokens 640\n"), "%s", run_stdout());

    // a file, --json, other batches: another number, still the same windows
    cr_assert_eq(run("%s eval --ckpt %s/ckpt_00000012.h5 --data '%s/val_*.bin' --json "
                     "--batches 2 --batch-size 3", bin, dir, tmp), 0, "%s", output());
    char *js = run_stdout();
    cr_assert(strstr(js, "\"tokens\": 192") && strstr(js, "\"batches\": 2") &&
              strstr(js, "\"step\": 12") && js[0] == '{', "%s", js);
    double loss = strtod(strstr(js, "\"loss\": ") + 8, NULL);
    cr_assert(loss > 0.5 && loss < 4.5, "loss %g from: %s", loss, js);

    // val_batches past what the data holds (39 batches of 4 x 32): the trainer caps it, and
    // eval caps the same way, so they still average the same windows
    cr_assert_eq(run("%s train " TINY "--set train.steps=4 --set train.val_batches=100 "
                     "--set run.dir=%s/big", bin, tmp, tmp, tmp), 0, "%s", output());
    snprintf(dir, sizeof dir, "%s/big", tmp);
    expect_eval_gives_last_val(bin, dir);
    cr_assert(strstr(run_stderr(), "each validation uses those 39"), "%s", run_stderr());
}

// Validation never drops: after a run with model.dropout, eval (which never drops either)
// gives the trainer's last validation loss to the digit.
Test(eval, validation_runs_without_dropout, .fini = cleanup) {
    make_data("evaldrop");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set model.dropout=0.3 --set train.steps=8 "
                     "--set train.val_batches=5 --set run.dir=%s/run", bin, tmp, tmp, tmp), 0,
                 "%s", output());
    char dir[300];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    expect_eval_gives_last_val(bin, dir);
}

Test(eval, errors_and_exit_codes, .fini = cleanup) {
    make_data("eval");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=2 --set run.dir=%s/run", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    cr_assert_eq(run("%s eval --ckpt %s/run", bin, tmp), 2);
    expect_error("--data PATTERN are required");
    cr_assert_eq(run("%s eval --ckpt %s/run --data x --bogus", bin, tmp), 2);
    expect_error("unknown option '--bogus'");
    cr_assert_eq(run("%s eval --ckpt %s/run --data x --batches 0", bin, tmp), 2);
    expect_error("--batches: '0' is not a positive integer");
    // not a checkpoint; an empty run directory
    cr_assert_eq(run("%s eval --ckpt %s/run/config.ini --data '%s/val_*.bin'", bin, tmp, tmp),
                 3);
    expect_error("not an HDF5 file");
    char empty[300];
    snprintf(empty, sizeof empty, "%s/empty", tmp);
    cr_assert_eq(run("mkdir %s && %s eval --ckpt %s --data '%s/val_*.bin'", empty, bin, empty,
                     tmp), 3);
    expect_error("no checkpoint in");
    // no data; data whose tokens the model's vocabulary (64) does not have
    cr_assert_eq(run("%s eval --ckpt %s/run --data '%s/none_*.bin'", bin, tmp, tmp), 3);
    expect_error("no files match");
    uint16_t big[4000];
    for (int i = 0; i < 4000; i++) big[i] = (uint16_t)(i % 100);
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/big_000000.bin", tmp);
    cr_assert(shard_write(path, big, 4000, err, sizeof err) == 0, "%s", err);
    cr_assert_eq(run("%s eval --ckpt %s/run --data %s", bin, tmp, path), 3);
    expect_error("vocab");
    // an attention the backend does not have, or a bad --set
    cr_assert_eq(run("%s eval --ckpt %s/run --data '%s/val_*.bin' --set model.attention=wgmma",
                     bin, tmp, tmp), 2);
    expect_error("the cpu backend has no such attention (it has: flash, naive, blocksparse, smallcache)");
    cr_assert_eq(run("%s eval --ckpt %s/run --data x --set model.nope=1", bin, tmp), 2);
    expect_error("model.nope");
}

// model.attention is checked when training starts, before anything is written.
Test(eval, train_checks_the_attention_at_startup, .fini = cleanup) {
    make_data("eval");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=2 --set run.dir=%s/w "
                     "--set model.attention=wgmma", bin, tmp, tmp, tmp), 2);
    expect_error("model.attention = wgmma: the cpu backend has no such attention");
    char p[300];
    snprintf(p, sizeof p, "%s/w/metrics.jsonl", tmp);
    cr_assert(access(p, F_OK) != 0, "the refused run wrote %s", p);
    // naive runs, and the header names the kernel that runs
    cr_assert_eq(run("%s train " TINY "--set train.steps=2 --set run.dir=%s/n "
                     "--set model.attention=naive", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "naive attention"), "%s", run_stdout());
    cr_assert_eq(run("%s train " TINY "--set train.steps=2 --set run.dir=%s/a", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "flash attention"), "%s", run_stdout());
}
