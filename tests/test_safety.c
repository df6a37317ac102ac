// test_safety.c: build/pebble guarding a run: a new run into a run.dir with checkpoints
// refused (--force archives it), a second writer refused by the lock, SIGTERM inside a step
// and inside a validation (the resumed run equals the uninterrupted one), and the small
// things a new user meets: a short run's warmup, the final line, the process name, `-c` on
// a checkpoint, validation asking for more batches than there are.
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/cli.h"

TestSuite(safety, .fini = cleanup);

#define TINY                                                                                \
    "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32 " \
    "--set model.vocab_size=64 --set train.batch_size=4 --set train.warmup_steps=2 "         \
    "--set train.total_batch_tokens=512 --set train.val_every=4 --set train.lr=3e-3 "        \
    "--set run.plot=false --set data.train=%s/train_*.bin --set data.val=%s/val_*.bin "

static int exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int exists(const char *fmt, ...) {
    char p[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int one_line(const char *s) { return strchr(s, '\n') == s + strlen(s) - 1; }

// metrics.jsonl without the timings (ms, tokens_per_s), which differ from run to run.
static void metrics_of(const char *dir, char *out, size_t n) {
    char p[400];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    char *s = slurp(p);
    out[0] = '\0';
    for (char *line = s; *line;) {
        size_t len = strcspn(line, "\n");
        char *ms = strstr(line, ", \"ms\": ");
        size_t keep = ms && ms < line + len ? (size_t)(ms - line) : len;
        strncat(out, line, keep < n - strlen(out) - 2 ? keep : n - strlen(out) - 2);
        strcat(out, "\n");
        line += len + (line[len] == '\n');
    }
}

// ----------------------------------------------------------------------------
// the run directory

Test(safety, a_new_run_over_checkpoints_is_refused_and_force_archives_it, .timeout = 120) {
    make_data("safety");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=3 --set run.dir=%s/r", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    char first[8192], p[500];
    snprintf(p, sizeof p, "%s/r/metrics.jsonl", tmp);
    read_into(p, first, sizeof first);

    // again without --resume: refused before any step, nothing touched
    cr_assert_eq(run("%s train " TINY "--set train.steps=3 --set run.dir=%s/r", bin, tmp, tmp,
                     tmp), 2, "%s", output());
    char *err = run_stderr();
    cr_assert(strstr(err, "pebble: run.dir ") && strstr(err, "already holds a run's checkpoints") &&
              strstr(err, "--resume auto") && strstr(err, "another run.dir") &&
              strstr(err, "--force"), "%s", err);
    cr_assert(one_line(err), "more than one line: %s", err);
    cr_assert(!strstr(run_stdout(), "step 1"), "a run started: %s", run_stdout());
    cr_assert_str_eq(slurp(p), first, "metrics.jsonl was changed");
    // --init is a new run too
    cr_assert_eq(run("%s train " TINY "--set train.steps=3 --set run.dir=%s/r --init %s/r/"
                     "ckpt_00000003.h5", bin, tmp, tmp, tmp, tmp), 2, "%s", output());
    // --force with --resume means nothing: refused
    cr_assert_eq(run("%s train " TINY "--set train.steps=3 --set run.dir=%s/r --resume auto "
                     "--force", bin, tmp, tmp, tmp), 2, "%s", output());
    cr_assert(strstr(run_stderr(), "--force is for a new run"), "%s", run_stderr());

    // --force: the old run moves, whole, to archive-1; a second --force to archive-2
    for (int i = 1; i <= 2; i++) {
        cr_assert_eq(run("%s train " TINY "--set train.steps=3 --set run.dir=%s/r --force", bin,
                         tmp, tmp, tmp), 0, "%s", output());
        char want[600];
        snprintf(want, sizeof want, "held an earlier run (4 files); moved to %s/r/archive-%d\n",
                 tmp, i);
        cr_assert(strstr(run_stdout(), want), "expected '%s': %s", want, run_stdout());
        cr_assert(exists("%s/r/archive-%d/ckpt_00000003.h5", tmp, i));
        cr_assert(exists("%s/r/archive-%d/latest", tmp, i));
        cr_assert(exists("%s/r/archive-%d/config.ini", tmp, i));
        snprintf(p, sizeof p, "%s/r/archive-%d/metrics.jsonl", tmp, i);
        if (i == 1) cr_assert_str_eq(slurp(p), first, "the archived metrics.jsonl differs");
        cr_assert(exists("%s/r/ckpt_00000003.h5", tmp), "the new run wrote no checkpoint");
    }
    // --init from a checkpoint of the run that --force archives: read before it moves
    cr_assert_eq(run("%s train " TINY "--set train.steps=3 --set run.dir=%s/r --force --init "
                     "%s/r/ckpt_00000003.h5", bin, tmp, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(exists("%s/r/archive-3/ckpt_00000003.h5", tmp));
    // the archive is a run directory of its own: it resumes
    cr_assert_eq(run("%s train --resume auto --set run.dir=%s/r/archive-1 --set train.steps=4",
                     bin, tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "ckpt_00000003.h5: step 3"), "%s", run_stdout());
}

Test(safety, a_second_writer_is_refused_naming_the_holder, .timeout = 120) {
    make_data("safety");
    const char *bin = pebble_bin();
    char dir[400], p[500];
    snprintf(dir, sizeof dir, "%s/r", tmp);
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    pid_t pid = spawn("exec %s train " TINY "--set train.steps=1000000 --set run.dir=%s", bin,
                      tmp, tmp, dir);
    for (int i = 0; i < 30000 && !(exists("%s", p) && strstr(slurp(p), "\"step\": 2,")); i++)
        usleep(1000);
    cr_assert(exists("%s", p) && strstr(slurp(p), "\"step\": 2,"), "the first run did not start");

    // the process is called pebble, not "exe" (main.c runs itself again)
    char comm[64];
    snprintf(p, sizeof p, "/proc/%d/comm", (int)pid);
    cr_assert_str_eq(read_into(p, comm, sizeof comm), "pebble\n");

    // a second run (a resume, which skips the new-run check) is refused by the lock
    int rc = run("%s train " TINY "--set train.steps=10 --set run.dir=%s --resume auto", bin,
                 tmp, tmp, dir);
    char *err = run_stderr(), want[1400];
    snprintf(want, sizeof want, "pebble: run.dir %s is in use by another pebble run (pid %d holds "
             "%s/.lock)", dir, (int)pid, dir);
    cr_assert_eq(rc, 1, "%s", output());
    cr_assert(strstr(err, want) && one_line(err), "expected '%s': %s", want, err);
    cr_assert(!strstr(run_stdout(), "resume:"), "%s", run_stdout());

    cr_assert_eq(kill(pid, SIGKILL), 0);
    int st;
    waitpid(pid, &st, 0);
    // the holder is gone: the lock went with it
    cr_assert_eq(run("%s train " TINY "--set train.steps=3 --set run.dir=%s --resume auto", bin,
                     tmp, tmp, dir), 0, "%s", output());
}

// ----------------------------------------------------------------------------
// SIGTERM inside a step and inside a validation

Test(safety, sigterm_mid_step_and_mid_validation_resume_to_the_bit, .timeout = 300) {
    make_data("safety");
    const char *bin = pebble_bin();
    static char a[1 << 16], b[1 << 16];
    char dir[400];
    // the reference: 12 steps of 4 micro-batches, validation every 4 steps
    cr_assert_eq(run("%s train " TINY "--set train.steps=12 --set run.dir=%s/a", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    snprintf(dir, sizeof dir, "%s/a", tmp);
    metrics_of(dir, a, sizeof a);

    // stopped after micro-batch 3 of step 7: step 7 is dropped, the checkpoint is step 6's
    cr_assert_eq(run("PEBBLE_TEST_SIGNAL_AT_MICRO=7:3 %s train " TINY "--set train.steps=12 "
                     "--set run.dir=%s/b", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "stopped by SIGTERM during step 7 of 12 (after micro-batch 3 "
                     "of 4: that step is dropped); continue from step 6 with --resume auto"),
              "%s", run_stdout());
    cr_assert(exists("%s/b/ckpt_00000006.h5", tmp) && !exists("%s/b/ckpt_00000007.h5", tmp));
    cr_assert_eq(run("%s train --resume auto --set run.dir=%s/b", bin, tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "ckpt_00000006.h5: step 6,"), "%s", run_stdout());
    snprintf(dir, sizeof dir, "%s/b", tmp);
    metrics_of(dir, b, sizeof b);
    cr_assert_str_eq(a, b, "interrupted mid-step and resumed differs from the straight run");

    // stopped during step 8's validation (after its batch 3): step 8 stands, its validation
    // is done by the resumed run, first
    cr_assert_eq(run("PEBBLE_TEST_SIGNAL_AT_VAL=8:3 %s train " TINY "--set train.steps=12 "
                     "--set run.dir=%s/c", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "stopped by SIGTERM after step 8 of 12"), "%s", run_stdout());
    cr_assert(!strstr(run_stdout(), "step 8: val loss"), "%s", run_stdout());
    cr_assert_eq(run("%s train --resume auto --set run.dir=%s/c", bin, tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "step 8: val loss"), "%s", run_stdout());
    snprintf(dir, sizeof dir, "%s/c", tmp);
    metrics_of(dir, b, sizeof b);
    cr_assert_str_eq(a, b, "interrupted mid-validation and resumed differs from the straight run");

    // stopped inside the very first step: nothing finished, so no checkpoint
    cr_assert_eq(run("PEBBLE_TEST_SIGNAL_AT_MICRO=1:2 %s train " TINY "--set train.steps=12 "
                     "--set run.dir=%s/d", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "before the first step finished: no checkpoint written"),
              "%s", run_stdout());
    cr_assert(!exists("%s/d/latest", tmp));
}

Test(safety, sigterm_from_outside_ends_a_long_step_quickly, .timeout = 120) {
    make_data("safety");
    const char *bin = pebble_bin();
    char dir[400], p[500];
    snprintf(dir, sizeof dir, "%s/r", tmp);
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    // 512 micro-batches a step: well over a second each; SIGTERM must not wait for one
    pid_t pid = spawn("exec %s train " TINY "--set train.total_batch_tokens=65536 "
                      "--set train.steps=100 --set run.dir=%s", bin, tmp, tmp, dir);
    for (int i = 0; i < 30000 && !(exists("%s", p) && strstr(slurp(p), "\"step\": 1,")); i++)
        usleep(1000);
    cr_assert(strstr(slurp(p), "\"step\": 1,"), "the run did not start");
    double t0 = pb_now();
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    double took = pb_now() - t0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *out = run_stdout();
    cr_assert(strstr(out, "stopped by SIGTERM during step "), "%s", output());
    cr_assert(exists("%s/r/latest", tmp));
    // one step takes 512 micro-batches; the stop came within a few of them
    char *m = strstr(out, " 1/100 |");
    cr_assert(m, "%s", output());
    double step_ms = strtod(strstr(m, "tok/s | ") + 8, NULL);
    cr_assert(took * 1000.0 < step_ms / 4, "SIGTERM took %.0f ms; a step takes %.0f ms",
              took * 1000.0, step_ms);
}

// ----------------------------------------------------------------------------
// small things

Test(safety, a_short_run_clamps_the_warmup_and_reports_its_time, .timeout = 60) {
    make_data("safety");
    // the default warmup (20) on a 5-step run
    double t0 = pb_now();
    cr_assert_eq(run("%s train " TINY "--set train.warmup_steps=20 --set train.steps=5 "
                     "--set run.dir=%s/r", pebble_bin(), tmp, tmp, tmp), 0, "%s", output());
    double wall = pb_now() - t0;
    cr_assert(strstr(run_stdout(), "note: train.warmup_steps = 20 is longer than the run "
                     "(train.steps = 5): warming up over 5 steps\n"), "%s", run_stdout());
    char p[400];
    snprintf(p, sizeof p, "%s/r/config.ini", tmp);
    cr_assert(strstr(slurp(p), "warmup_steps = 5\n"), "%s", slurp(p));
    // the last step reaches train.lr: lr of step s is lr * s / warmup
    snprintf(p, sizeof p, "%s/r/metrics.jsonl", tmp);
    cr_assert(strstr(slurp(p), "{\"step\": 5, \"loss\": ") &&
              strstr(strstr(slurp(p), "{\"step\": 5, \"loss\": "), "\"lr\": 3.000000e-03"),
              "%s", slurp(p));
    // the final line: total time and mean tokens/s, matching the step count
    char *done = strstr(run_stdout(), "done: 5 steps, 2560 tokens, final val loss ");
    cr_assert(done, "%s", run_stdout());
    double secs = 0, tps = 0;
    char *tail = strstr(done, " | this run: 5 steps in ");
    cr_assert(tail && sscanf(tail, " | this run: 5 steps in %lf s, %lf tokens/s", &secs, &tps) == 2,
              "%s", done);
    // (the time printed to the millisecond: secs x tps is 2560 within that rounding)
    cr_assert(secs > 0 && secs <= wall && tps > 0, "%g s (wall %g), %g tok/s", secs, wall, tps);
    cr_assert(fabs(secs * tps - 2560) <= 0.0005 * tps + 1, "%g s x %g tok/s", secs, tps);
}

Test(safety, validation_past_the_data_says_so_once, .timeout = 60) {
    make_data("safety");
    // val_*.bin holds 5000 tokens: 156 windows of 33, 39 batches of 4
    cr_assert_eq(run("%s train " TINY "--set train.val_batches=1000 --set train.steps=8 "
                     "--set run.dir=%s/r", pebble_bin(), tmp, tmp, tmp), 0, "%s", output());
    const char *want = "note: train.val_batches = 1000, but ";
    char *n = strstr(run_stdout(), want);
    cr_assert(n && strstr(n, "holds 39 batches of 4 x 32: each validation uses those 39\n"),
              "%s", run_stdout());
    cr_assert(!strstr(n + 1, want), "said more than once: %s", run_stdout());
    // and it is the mean over those 39: the same as asking for exactly 39
    char a[4096], b[4096], dir[400];
    cr_assert_eq(run("%s train " TINY "--set train.val_batches=39 --set train.steps=8 "
                     "--set run.dir=%s/s", pebble_bin(), tmp, tmp, tmp), 0, "%s", output());
    cr_assert(!strstr(run_stdout(), "note: train.val_batches"), "%s", run_stdout());
    snprintf(dir, sizeof dir, "%s/r", tmp);
    losses_of(dir, a, sizeof a);
    snprintf(dir, sizeof dir, "%s/s", tmp);
    losses_of(dir, b, sizeof b);
    cr_assert_str_eq(a, b);
}

Test(safety, a_checkpoint_given_as_config_is_named_as_such, .timeout = 60) {
    make_data("safety");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=1 --set run.dir=%s/r", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    cr_assert_eq(run("%s train -c %s/r/ckpt_00000001.h5", bin, tmp), 2, "%s", output());
    char want[1400];
    snprintf(want, sizeof want, "pebble: %s/r/ckpt_00000001.h5: an HDF5 file (a checkpoint?), "
             "not an INI config: continue its run with --resume %s/r/ckpt_00000001.h5, or start "
             "a new run from its weights with --init %s/r/ckpt_00000001.h5\n", tmp, tmp, tmp);
    cr_assert_str_eq(run_stderr(), want);
}

Test(safety, auto_device_without_a_gpu_says_so_and_estimates_the_step, .timeout = 60) {
    make_data("safety");
    cr_assert_eq(run("%s train " TINY "--set system.device=auto --set train.steps=1 "
                     "--set run.dir=%s/r", pebble_bin(), tmp, tmp, tmp), 0, "%s", output());
    char *out = run_stdout();
    cr_assert(strstr(out, "device: cpu (system.device = auto and no usable GPU: "), "%s", out);
    // parameters: wte 64 x 32 + wpe 32 x 32 + ln_f 64 + 2 layers of 12704 = 28544;
    // (6 x 28544 + 12 x L 2 x C 32 x T 32) x 512 tokens = 0.10027 GFLOP
    char *e = strstr(out, "first step: ~");
    cr_assert(e && strstr(e, " s estimated on the CPU (0.1003 GFLOP = 6 x parameters x 512 tokens "
                          "+ attention, at "), "%s", out);
}

// ----------------------------------------------------------------------------
// pebble prep: binary files refused, invalid UTF-8 counted

static void write_bytes(const char *name, const char *bytes, size_t n) {
    char p[400];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

Test(safety, prep_counts_invalid_utf8_and_refuses_binary_files, .timeout = 60) {
    make_tmp("safety");
    const char *bin = pebble_bin(), *tk = "data/cache/gpt2_tokenizer.bin";
    // valid: ASCII, a 2-byte e-acute, a 4-byte emoji. Invalid: Latin-1 e-acute (1 byte),
    // an overlong '/' (2), a UTF-16 surrogate (3), a sequence cut by the end of the file (2)
    const char good[] = "plain text, caf\xc3\xa9, \xf0\x9f\x98\x80 and more words\n";
    const char mixed[] = "caf\xe9 over\xc0\xafslash surrogate \xed\xa0\x80 cut \xe2\x82";
    write_bytes("good.txt", good, sizeof good - 1);
    write_bytes("mixed.txt", mixed, sizeof mixed - 1);
    cr_assert_eq(run("%s prep --out %s/s --val-tokens 0 --vocab %s %s/good.txt %s/mixed.txt",
                     bin, tmp, tk, tmp, tmp), 0, "%s", output());
    char want[600];
    snprintf(want, sizeof want, "prep: note: %s/mixed.txt: 8 of its %zu bytes (%.2f%%) are not "
             "valid UTF-8; each becomes a byte token\n", tmp, sizeof mixed - 1,
             800.0 / (double)(sizeof mixed - 1));
    cr_assert(strstr(run_stderr(), want), "expected '%s': %s", want, run_stderr());
    cr_assert(!strstr(run_stderr(), "good.txt"), "%s", run_stderr());

    // a NUL byte: refused before anything is written, unless --binary-ok
    const char binary[] = "ELF\x01\x02\x00\x00text after";
    write_bytes("prog", binary, sizeof binary - 1);
    cr_assert_eq(run("%s prep --out %s/b --vocab %s %s/good.txt %s/prog", bin, tmp, tk, tmp,
                     tmp), 3, "%s", output());
    snprintf(want, sizeof want, "pebble: prep: %s/prog looks binary, not text (a NUL byte at "
             "offset 5); pass --binary-ok to encode it anyway\n", tmp);
    cr_assert_str_eq(run_stderr(), want);
    cr_assert(!exists("%s/b/train_000000.bin", tmp));
    cr_assert_eq(run("%s prep --out %s/b --val-tokens 0 --binary-ok --vocab %s %s/good.txt "
                     "%s/prog", bin, tmp, tk, tmp, tmp), 0, "%s", output());
    cr_assert(exists("%s/b/train_000000.bin", tmp));
}
