// test_resume.c: build/pebble with checkpoints: N steps straight against N/2 steps, a stop
// and a resume (bit-identical losses, parameters, AdamW state and loader position), SIGTERM
// and SIGINT from outside, --init, resume errors, --resume auto skipping damaged checkpoints,
// a failed save stopping the run, and `pebble export`.
#include <criterion/criterion.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/cli.h"
#include "tests/corrupt.h"
#include "kernels/common.h"
#include "model/gpt2.h"
#include "train/checkpoint.h"
#include "train/optim.h"

TestSuite(resume, .fini = cleanup);

#define TINY                                                                                \
    "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32 " \
    "--set model.vocab_size=64 --set train.batch_size=4 --set train.warmup_steps=2 "         \
    "--set train.total_batch_tokens=256 --set train.val_every=4 --set train.lr=3e-3 "        \
    "--set run.plot=false --set data.train=%s/train_*.bin --set data.val=%s/val_*.bin "

// The number of training-step lines in metrics.jsonl, and the last step logged.
static int step_lines(const char *run_dir, int *last) {
    char p[400];
    snprintf(p, sizeof p, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    char line[512];
    int n = 0;
    *last = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, "\"loss\"")) continue;
        n++;
        *last = atoi(strstr(line, "\"step\": ") + 8);
    }
    fclose(f);
    return n;
}

// A checkpoint, loaded into a model built from its own config.
typedef struct {
    gpt2 m;
    pb_adamw o;
    pb_ckpt_trainer_state st;
} loaded_t;

static void load(loaded_t *x, const char *path) {
    char err[1024];
    ckpt_model_info mi;
    cr_assert_eq(ckpt_read_config(path, NULL, &mi, err, sizeof err), 0, "%s", err);
    gpt2_config mc = {.n_layer = mi.n_layer, .n_head = mi.n_head, .n_embd = mi.n_embd,
                      .seq_len = mi.seq_len, .vocab_size = mi.vocab_size};
    gpt2_build(&x->m, &mc, pb_ops_cpu());
    adamw_init(&x->o, &x->m.p, 0.9f, 0.95f, 1e-8f, 0.1f);
    cr_assert_eq(ckpt_load(path, &x->m.p, 1, &x->st, err, sizeof err), 0, "%s", err);
}

static void unload(loaded_t *x) {
    adamw_free(&x->o);
    gpt2_free(&x->m);
}

static void expect_identical(const char *pa, const char *pb) {
    loaded_t a, b;
    load(&a, pa);
    load(&b, pb);
    size_t n = a.m.p.num_floats;
    cr_assert_eq(n, b.m.p.num_floats);
    cr_assert(memcmp(a.m.p.mem, b.m.p.mem, n * sizeof(float)) == 0,
              "parameters differ: %s vs %s", pa, pb);
    cr_assert(memcmp(a.m.p.m, b.m.p.m, n * sizeof(float)) == 0, "AdamW m differs");
    cr_assert(memcmp(a.m.p.v, b.m.p.v, n * sizeof(float)) == 0, "AdamW v differs");
    cr_assert_eq(a.m.p.step, b.m.p.step);
    cr_assert_eq(a.st.step, b.st.step);
    cr_assert_eq(a.st.tokens_seen, b.st.tokens_seen);
    cr_assert_eq(a.st.train_loader.epoch, b.st.train_loader.epoch);
    cr_assert_eq(a.st.train_loader.cursor, b.st.train_loader.cursor);
    cr_assert(memcmp(&a.st.lr, &b.st.lr, sizeof a.st.lr) == 0);
    unload(&a);
    unload(&b);
}

// ----------------------------------------------------------------------------

Test(resume, n_steps_equal_a_stop_and_a_resume_to_the_bit, .timeout = 300) {
    make_data("resume");
    const char *bin = pebble_bin();
    char a[8192], b[8192], c[8192], dir[400], pa[500], pb[500];
    // straight: 24 steps (2 micro-batches each, validation every 4)
    cr_assert_eq(run("%s train " TINY "--set train.steps=24 --set run.dir=%s/a", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    // stopped after step 12 by the real SIGTERM path, then resumed without -c: the
    // checkpoint's own config
    cr_assert_eq(run("PEBBLE_TEST_SIGNAL_AT_STEP=12 %s train " TINY
                     "--set train.steps=24 --set run.dir=%s/b", bin, tmp, tmp, tmp),
                 0, "%s", output());
    cr_assert(strstr(output(), "stopped by SIGTERM after step 12 of 24"), "%s", output());
    int last;
    snprintf(dir, sizeof dir, "%s/b", tmp);
    cr_assert_eq(step_lines(dir, &last), 12);
    cr_assert_eq(run("%s train --resume auto --set run.dir=%s/b", bin, tmp), 0, "%s", output());
    cr_assert(strstr(output(), "resume: ") && strstr(output(), "ckpt_00000012.h5: step 12"),
              "%s", output());
    // metrics.jsonl was continued, not started again
    cr_assert_eq(step_lines(dir, &last), 24);
    cr_assert_eq(last, 24);

    snprintf(dir, sizeof dir, "%s/a", tmp);
    losses_of(dir, a, sizeof a);
    snprintf(dir, sizeof dir, "%s/b", tmp);
    losses_of(dir, b, sizeof b);
    cr_assert_str_eq(a, b, "losses differ after a resume");
    snprintf(pa, sizeof pa, "%s/a/ckpt_00000024.h5", tmp);
    snprintf(pb, sizeof pb, "%s/b/ckpt_00000024.h5", tmp);
    expect_identical(pa, pb);

    // --resume FILE from an older checkpoint of a run that went on: the later lines of
    // metrics.jsonl are dropped and computed again, to the same numbers
    cr_assert_eq(run("%s train " TINY "--set train.steps=24 --set checkpoint.every=8 "
                     "--set checkpoint.keep_last=0 --set run.dir=%s/c", bin, tmp, tmp, tmp),
                 0, "%s", output());
    char from[500];
    snprintf(from, sizeof from, "%s/c/ckpt_00000008.h5", tmp);
    cr_assert_eq(run("%s train " TINY "--set train.steps=24 --set run.dir=%s/c --resume %s",
                     bin, tmp, tmp, tmp, from), 0, "%s", output());
    snprintf(dir, sizeof dir, "%s/c", tmp);
    cr_assert_eq(step_lines(dir, &last), 24);
    losses_of(dir, c, sizeof c);
    cr_assert_str_eq(a, c, "losses differ after --resume FILE");
    snprintf(pb, sizeof pb, "%s/c/ckpt_00000024.h5", tmp);
    expect_identical(pa, pb);
}

// model.dropout: the masks are keyed by (seed, step, micro-batch), so a stopped and resumed run
// drops what the straight one drops (to the bit); and they change the run (against none).
Test(resume, dropout_resumes_to_the_bit, .timeout = 300) {
    make_data("dropout");
    const char *bin = pebble_bin();
    char a[8192], b[8192], n[8192], dir[400], pa[500], pb[500];
    cr_assert_eq(run("%s train " TINY "--set model.dropout=0.2 --set train.steps=12 "
                     "--set run.dir=%s/a", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("PEBBLE_TEST_SIGNAL_AT_STEP=6 %s train " TINY "--set model.dropout=0.2 "
                     "--set train.steps=12 --set run.dir=%s/b", bin, tmp, tmp, tmp),
                 0, "%s", output());
    cr_assert_eq(run("%s train --resume auto --set run.dir=%s/b", bin, tmp), 0, "%s", output());
    cr_assert_eq(run("%s train " TINY "--set train.steps=12 --set run.dir=%s/n", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    snprintf(dir, sizeof dir, "%s/a", tmp);
    losses_of(dir, a, sizeof a);
    snprintf(dir, sizeof dir, "%s/b", tmp);
    losses_of(dir, b, sizeof b);
    snprintf(dir, sizeof dir, "%s/n", tmp);
    losses_of(dir, n, sizeof n);
    cr_assert_str_eq(a, b, "losses with dropout differ after a resume");
    cr_assert_str_neq(a, n, "dropout 0.2 gave the losses of no dropout");
    snprintf(pa, sizeof pa, "%s/a/ckpt_00000012.h5", tmp);
    snprintf(pb, sizeof pb, "%s/b/ckpt_00000012.h5", tmp);
    expect_identical(pa, pb);
    // the export states it as GPT-2's resid_pdrop and embd_pdrop (the same sites)
    cr_assert_eq(run("%s export --ckpt %s --format safetensors --out %s/hf", bin, pa, tmp), 0,
                 "%s", output());
    snprintf(pb, sizeof pb, "%s/hf/config.json", tmp);
    cr_assert(strstr(slurp(pb), "\"resid_pdrop\": 0.2,"), "%s", slurp(pb));
    cr_assert(strstr(slurp(pb), "\"embd_pdrop\": 0.2,"), "%s", slurp(pb));
}

// train.time_limit: a limit shorter than one step stops after the first, with a checkpoint;
// resumed without the limit, the run is the straight one to the bit.
Test(resume, time_limit_stops_with_a_checkpoint_and_resumes_to_the_bit, .timeout = 300) {
    make_data("resume");
    const char *bin = pebble_bin();
    char a[8192], b[8192], dir[400], pa[500], pb[500];
    cr_assert_eq(run("%s train " TINY "--set train.steps=8 --set run.dir=%s/ta", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    cr_assert_eq(run("%s train " TINY "--set train.steps=8 --set train.time_limit=1e-6 "
                     "--set run.dir=%s/tb", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(output(), "stopped at the time limit (train.time_limit = 1e-06 s) after "
                               "step 1 of 8; continue with --resume auto"), "%s", output());
    int last;
    snprintf(dir, sizeof dir, "%s/tb", tmp);
    cr_assert_eq(step_lines(dir, &last), 1);
    snprintf(pb, sizeof pb, "%s/tb/ckpt_00000001.h5", tmp);
    loaded_t x;
    load(&x, pb);
    cr_assert_eq(x.st.step, 1);
    unload(&x);
    cr_assert_eq(run("%s train --resume auto --set train.time_limit=0 --set run.dir=%s/tb", bin,
                     tmp), 0, "%s", output());
    cr_assert_eq(step_lines(dir, &last), 8);
    losses_of(dir, b, sizeof b);
    snprintf(dir, sizeof dir, "%s/ta", tmp);
    losses_of(dir, a, sizeof a);
    cr_assert_str_eq(a, b, "losses differ after a time-limit stop and a resume");
    snprintf(pa, sizeof pa, "%s/ta/ckpt_00000008.h5", tmp);
    snprintf(pb, sizeof pb, "%s/tb/ckpt_00000008.h5", tmp);
    expect_identical(pa, pb);
    // a negative limit is refused in one line
    cr_assert_neq(run("%s train " TINY "--set train.time_limit=-1 --set run.dir=%s/tc", bin, tmp,
                      tmp, tmp), 0);
    cr_assert(strstr(output(), "train.time_limit"), "%s", output());
}

static void stop_from_outside(int sig, const char *name) {
    const char *bin = pebble_bin();
    char dir[400];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    // far more steps than will run: only the signal ends this run
    pid_t pid = spawn("exec %s train " TINY "--set train.steps=100000 --set run.dir=%s", bin,
                      tmp, tmp, dir);
    int last = 0;
    for (int i = 0; i < 60000 && step_lines(dir, &last) < 3; i++) usleep(1000);
    cr_assert(last >= 3, "the run did not start: %s", output());
    cr_assert_eq(kill(pid, sig), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, output());
    char want[128], mid[256];
    step_lines(dir, &last);
    // between steps, or (more likely) inside one: that step is dropped
    snprintf(want, sizeof want, "stopped by %s after step %d of 100000", name, last);
    snprintf(mid, sizeof mid, "stopped by %s during step %d of 100000 (after micro-batch 1 of 2: "
             "that step is dropped); continue from step %d", name, last + 1, last);
    cr_assert(strstr(output(), want) || strstr(output(), mid), "expected '%s' or '%s' in: %s",
              want, mid, output());
    // the checkpoint is of the last step logged
    char path[500];
    snprintf(path, sizeof path, "%s/ckpt_%08d.h5", dir, last);
    loaded_t x;
    load(&x, path);
    cr_assert_eq(x.st.step, last);
    cr_assert_eq(x.st.tokens_seen, 256LL * last);
    cr_assert_eq(x.m.p.step, last);
    unload(&x);
    // and the run continues from it
    cr_assert_eq(run("PEBBLE_TEST_SIGNAL_AT_STEP=%d %s train " TINY
                     "--set train.steps=100000 --set run.dir=%s --resume auto",
                     last + 2, bin, tmp, tmp, dir), 0, "%s", output());
    int now = 0;
    cr_assert_eq(step_lines(dir, &now), last + 2, "%s", output());
    cr_assert_eq(now, last + 2);
}

Test(resume, sigterm_and_sigint_save_the_last_finished_step_and_exit_0, .timeout = 300) {
    make_data("resume");
    stop_from_outside(SIGTERM, "SIGTERM");
    stop_from_outside(SIGINT, "SIGINT");
}

Test(resume, init_starts_a_new_run_from_the_weights) {
    make_data("resume");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=16 --set run.dir=%s/a", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    char ck[400], dir[400], a[8192], b[8192];
    snprintf(ck, sizeof ck, "%s/a/ckpt_00000016.h5", tmp);
    cr_assert_eq(run("%s train " TINY "--set train.steps=4 --set run.dir=%s/b --init %s", bin,
                     tmp, tmp, tmp, ck), 0, "%s", output());
    cr_assert(strstr(output(), "init: weights from"), "%s", output());
    snprintf(dir, sizeof dir, "%s/a", tmp);
    losses_of(dir, a, sizeof a);
    snprintf(dir, sizeof dir, "%s/b", tmp);
    losses_of(dir, b, sizeof b);
    // a new run (4 steps from step 1), starting where the trained weights are: its first
    // loss is far below a fresh model's ln(64) = 4.16 and near the trained run's last
    int last;
    cr_assert_eq(step_lines(dir, &last), 4);
    double first_b = strtod(b, NULL);
    cr_assert(first_b < 4.16 - 0.5, "first loss after --init is %g: weights not loaded", first_b);
    loaded_t x;
    snprintf(ck, sizeof ck, "%s/b/ckpt_00000004.h5", tmp);
    load(&x, ck);
    cr_assert_eq(x.m.p.step, 4, "AdamW continued instead of starting fresh");
    cr_assert_eq(x.st.step, 4);
    unload(&x);
    // weights of another shape: the dataset is named, exit code 3
    cr_assert_eq(run("%s train " TINY "--set model.n_embd=64 --set run.dir=%s/c --init %s/a/"
                     "ckpt_00000016.h5", bin, tmp, tmp, tmp, tmp), 3, "%s", output());
    cr_assert(strstr(output(), "pebble: ") &&
              strstr(output(), "/model/transformer.wte.weight has shape (64, 32), the model "
                               "expects (64, 64)"), "%s", output());
}

Test(resume, errors_are_one_line_with_an_exit_code) {
    make_data("resume");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=4 --set run.dir=%s/a", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    char ck[400], bad[400];
    snprintf(ck, sizeof ck, "%s/a/ckpt_00000004.h5", tmp);

    // a file that is not a checkpoint
    snprintf(bad, sizeof bad, "%s/train_000000.bin", tmp);
    cr_assert_eq(run("%s train " TINY "--set run.dir=%s/x --resume %s", bin, tmp, tmp, tmp, bad),
                 3, "%s", output());
    cr_assert(strstr(output(), "pebble: ") && strstr(output(), "not an HDF5 file"), "%s", output());
    // a missing one
    cr_assert_eq(run("%s train " TINY "--set run.dir=%s/x --resume %s/nope.h5", bin, tmp, tmp,
                     tmp, tmp), 3, "%s", output());
    cr_assert(strstr(output(), "nope.h5: cannot open checkpoint: No such file"), "%s", output());
    // another seed: the data position cannot be restored
    cr_assert_eq(run("%s train " TINY "--set train.seed=9 --set run.dir=%s/x --resume %s", bin,
                     tmp, tmp, tmp, ck), 3, "%s", output());
    cr_assert(strstr(output(), "seed"), "%s", output());
    // past the end
    cr_assert_eq(run("%s train " TINY "--set train.steps=2 --set run.dir=%s/x --resume %s", bin,
                     tmp, tmp, tmp, ck), 2, "%s", output());
    cr_assert(strstr(output(), "past train.steps = 2"), "%s", output());
    // both flags
    cr_assert_eq(run("%s train " TINY "--resume auto --init %s", bin, tmp, tmp, ck), 2);
    cr_assert(strstr(output(), "exclude each other"), "%s", output());
    cr_assert_eq(run("%s train " TINY "--resume", bin, tmp, tmp), 2);
    // auto with nothing to resume: a note, then a new run
    cr_assert_eq(run("%s train " TINY "--set train.steps=2 --set run.dir=%s/new --resume auto",
                     bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(output(), "no checkpoint in") && strstr(output(), "starting a new run"),
              "%s", output());
    // a changed key is noted on resume
    cr_assert_eq(run("%s train " TINY "--set train.steps=6 --set run.dir=%s/a --resume auto",
                     bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(output(), "note: the config differs from the checkpoint's in train.steps"),
              "%s", output());
}

// ----------------------------------------------------------------------------
// --resume auto past damaged checkpoints

static void truncate_to_half(const char *path) {
    struct stat sb;
    cr_assert(stat(path, &sb) == 0, "no %s", path);
    cr_assert(truncate(path, sb.st_size / 2) == 0);
}

// How many lines of s start with prefix.
static int lines_starting(const char *s, const char *prefix) {
    int n = 0;
    for (const char *p = s; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
        n += strncmp(p, prefix, strlen(prefix)) == 0;
    return n;
}

Test(resume, auto_skips_damaged_checkpoints_newest_first, .timeout = 300) {
    make_data("resume");
    const char *bin = pebble_bin();
    char a[8192], b[8192], dir[400], ck12[500], ck8[500], want[700];
    // the reference: 12 steps straight
    cr_assert_eq(run("%s train " TINY "--set train.steps=12 --set run.dir=%s/a", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    // the same run with checkpoints after steps 4, 8 and 12
    cr_assert_eq(run("%s train " TINY "--set train.steps=12 --set checkpoint.every=4 "
                     "--set checkpoint.keep_last=3 --set run.dir=%s/b", bin, tmp, tmp, tmp),
                 0, "%s", output());
    // The newest gets a bad checksum in a tensor read after the weights (a load that changed
    // the model as it went would leave step 12's weights behind); the one before it is cut.
    snprintf(ck12, sizeof ck12, "%s/b/ckpt_00000012.h5", tmp);
    snprintf(ck8, sizeof ck8, "%s/b/ckpt_00000008.h5", tmp);
    flip_byte_in(ck12, "/optimizer/v/transformer.h.1.mlp.c_fc.weight");
    truncate_to_half(ck8);
    // without -c: the config comes from a checkpoint too
    cr_assert_eq(run("%s train --resume auto --set run.dir=%s/b", bin, tmp), 0, "%s", output());
    char *err = run_stderr();
    snprintf(want, sizeof want, "pebble: skipping checkpoint %s: cannot read dataset "
             "/optimizer/v/transformer.h.1.mlp.c_fc.weight: ", ck12);
    cr_assert(strstr(err, want) && strstr(err, "Fletcher32"), "expected '%s': %s", want, err);
    snprintf(want, sizeof want, "pebble: skipping checkpoint %s: ", ck8);
    cr_assert(strstr(err, want) && strstr(err, "truncated"), "expected '%s': %s", want, err);
    cr_assert_eq(lines_starting(err, "pebble: "), 2, "%s", err);
    snprintf(want, sizeof want, "resume: %s/b/ckpt_00000004.h5: step 4,", tmp);
    cr_assert(strstr(run_stdout(), want), "expected '%s': %s", want, run_stdout());
    // steps 5..12 were run again from step 4's state, to the uninterrupted run's numbers
    int last;
    snprintf(dir, sizeof dir, "%s/b", tmp);
    cr_assert_eq(step_lines(dir, &last), 12);
    snprintf(dir, sizeof dir, "%s/a", tmp);
    losses_of(dir, a, sizeof a);
    snprintf(dir, sizeof dir, "%s/b", tmp);
    losses_of(dir, b, sizeof b);
    cr_assert_str_eq(a, b, "losses differ after resuming past damaged checkpoints");
    snprintf(want, sizeof want, "%s/a/ckpt_00000012.h5", tmp);
    expect_identical(want, ck12);
}

Test(resume, auto_with_nothing_loadable_and_a_bad_file_fail_in_one_line, .timeout = 300) {
    make_data("resume");
    const char *bin = pebble_bin();
    char ck4[500], ck8[500], want[1200];
    cr_assert_eq(run("%s train " TINY "--set train.steps=8 --set checkpoint.every=4 "
                     "--set run.dir=%s/b", bin, tmp, tmp, tmp), 0, "%s", output());
    snprintf(ck4, sizeof ck4, "%s/b/ckpt_00000004.h5", tmp);
    snprintf(ck8, sizeof ck8, "%s/b/ckpt_00000008.h5", tmp);
    flip_byte_in(ck8, "/model/transformer.ln_f.weight");
    truncate_to_half(ck4);

    // a file named on the command line never falls back to another
    cr_assert_eq(run("%s train " TINY "--set train.steps=8 --set run.dir=%s/b --resume %s", bin,
                     tmp, tmp, tmp, ck8), 3, "%s", output());
    char *err = run_stderr();
    snprintf(want, sizeof want, "pebble: %s: cannot read dataset /model/transformer.ln_f.weight: ",
             ck8);
    cr_assert(strncmp(err, want, strlen(want)) == 0 && strstr(err, "checksum"), "%s", err);
    cr_assert(strchr(err, '\n') == err + strlen(err) - 1, "more than one line: %s", err);
    cr_assert(!strstr(run_stdout(), "resume: "), "%s", run_stdout());

    // auto: both skipped, then one line and exit code 3 (not a new run over the old one)
    cr_assert_eq(run("%s train " TINY "--set train.steps=8 --set run.dir=%s/b --resume auto",
                     bin, tmp, tmp, tmp), 3, "%s", output());
    err = run_stderr();
    cr_assert_eq(lines_starting(err, "pebble: skipping checkpoint "), 2, "%s", err);
    snprintf(want, sizeof want, "pebble: skipping checkpoint %s: ", ck8);
    cr_assert(strstr(err, want), "expected '%s': %s", want, err);
    snprintf(want, sizeof want, "pebble: skipping checkpoint %s: ", ck4);
    cr_assert(strstr(err, want), "expected '%s': %s", want, err);
    snprintf(want, sizeof want, "pebble: --resume auto: no checkpoint in %s/b loads (2 tried",
             tmp);
    cr_assert(strstr(err, want), "expected '%s': %s", want, err);
    cr_assert_eq(lines_starting(err, "pebble: "), 3, "%s", err);
    cr_assert(!strstr(run_stdout(), "step 1"), "a new run started: %s", run_stdout());

    // without -c, when no checkpoint's config can be read either: one line naming the newest
    truncate_to_half(ck8);
    cr_assert_eq(run("%s train --resume auto --set run.dir=%s/b", bin, tmp), 3, "%s", output());
    err = run_stderr();
    snprintf(want, sizeof want, "pebble: --resume auto: no checkpoint in %s/b loads (2 tried; "
             "the newest: %s: ", tmp, ck8);
    cr_assert(strncmp(err, want, strlen(want)) == 0 && strstr(err, "truncated"), "%s", err);
    cr_assert(strchr(err, '\n') == err + strlen(err) - 1, "more than one line: %s", err);
}

Test(resume, a_failed_save_stops_training) {
    make_data("resume");
    const char *bin = pebble_bin();
    // A directory where the step-4 checkpoint must go: the rename into place fails.
    char block[400];
    snprintf(block, sizeof block, "%s/a", tmp);
    mkdir(block, 0755);
    snprintf(block, sizeof block, "%s/a/ckpt_00000004.h5", tmp);
    mkdir(block, 0755);
    cr_assert_eq(run("%s train " TINY "--set train.steps=12 --set checkpoint.every=4 "
                     "--set run.dir=%s/a", bin, tmp, tmp, tmp), 1, "%s", output());
    cr_assert(strstr(output(), "pebble: ") && strstr(output(), "ckpt_00000004.h5") &&
              strstr(output(), "training stopped"), "%s", output());
    int last;
    char dir[400];
    snprintf(dir, sizeof dir, "%s/a", tmp);
    step_lines(dir, &last);
    cr_assert_eq(last, 4, "training went on after the failed save (to step %d)", last);
}

Test(resume, export_writes_safetensors_and_config) {
    make_data("resume");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=2 --set run.dir=%s/a", bin, tmp, tmp,
                     tmp), 0, "%s", output());
    cr_assert_eq(run("%s export --ckpt %s/a/ckpt_00000002.h5 --format safetensors --out %s/hf",
                     bin, tmp, tmp), 0, "%s", output());
    char p[400];
    snprintf(p, sizeof p, "%s/hf/config.json", tmp);
    cr_assert(strstr(slurp(p), "\"n_embd\": 32"));
    cr_assert(strstr(slurp(p), "\"resid_pdrop\": 0,"), "%s", slurp(p));
    snprintf(p, sizeof p, "%s/hf/model.safetensors", tmp);
    struct stat sb;
    cr_assert(stat(p, &sb) == 0 && sb.st_size > 8);
    cr_assert_eq(run("%s export --ckpt %s/a/ckpt_00000002.h5 --format onnx --out %s/x", bin, tmp,
                     tmp), 2);
    cr_assert(strstr(output(), "unknown format 'onnx'"), "%s", output());
    cr_assert_eq(run("%s export --ckpt %s/a/config.ini --out %s/x", bin, tmp, tmp), 3);
    cr_assert(strstr(output(), "config.ini: not an HDF5 file"), "%s", output());
}
