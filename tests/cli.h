// cli.h: helpers for the suites that run build/pebble as a user would: a temporary directory
// per test (removed by cleanup, a .fini), a learnable token shard, a command line run with its
// output captured, and the losses read back from metrics.jsonl. Header-only, static: each
// suite that includes it gets its own copy.
#ifndef PEBBLE_TESTS_CLI_H
#define PEBBLE_TESTS_CLI_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/shard.h"
#include "kernels/common.h"

// Each suite uses a subset of these helpers.
#pragma GCC diagnostic ignored "-Wunused-function"

static char tmp[256];  // this test's directory

// The binary under test: $PEBBLE_BIN (make test sets it to $(BUILD)/pebble), else build/pebble.
static const char *pebble_bin(void) {
    const char *b = getenv("PEBBLE_BIN");
    return b ? b : "build/pebble";
}

// make_tmp: tmp = a new /tmp/pebble-test-<name>-XXXXXX.
// make_data: make_tmp, then two shards there: train_000000.bin
// (20000 tokens) and val_000000.bin, over a vocabulary of 64, where 90% of the time the next
// token is a fixed function of the previous one: a model can learn it, so the loss must fall.
static void make_tmp(const char *name) {
    snprintf(tmp, sizeof tmp, "/tmp/pebble-test-%s-XXXXXX", name);
    cr_assert(mkdtemp(tmp), "mkdtemp %s failed", tmp);
}

static void make_data(const char *name) {
    make_tmp(name);
    size_t n = 20000;
    uint16_t *tok = malloc(n * sizeof(uint16_t));
    pb_rng rng;
    pb_rng_seed(&rng, 5);
    tok[0] = 1;
    for (size_t i = 1; i < n; i++)
        tok[i] = (pb_rng_u64(&rng) % 10 == 0) ? (uint16_t)(pb_rng_u64(&rng) % 64)
                                               : (uint16_t)((tok[i - 1] * 5 + 3) % 64);
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/train_000000.bin", tmp);
    cr_assert(shard_write(path, tok, n, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/val_000000.bin", tmp);
    cr_assert(shard_write(path, tok + n / 2, n / 4, err, sizeof err) == 0, "%s", err);
    free(tok);
}

// BERT token shards for MLM (V = 160: ids 104..159 words, BERT's specials below).
// Pieces of 6..30 tokens: [CLS], then words where w[i+1] = f(w[i]) 90% of the time, [SEP]. A
// masked word is predictable from its neighbours, so the MLM loss falls well below log V.
static void make_bert_pieces(const char *name, size_t ntok) {
    uint16_t *tok = malloc(ntok * sizeof(uint16_t));
    pb_rng rng;
    pb_rng_seed(&rng, 11);
    size_t n = 0;
    while (n + 32 < ntok) {
        int len = 6 + (int)(pb_rng_u64(&rng) % 25);
        tok[n++] = 101;
        int w = 104 + (int)(pb_rng_u64(&rng) % 56);
        for (int i = 0; i < len - 2; i++) {
            tok[n++] = (uint16_t)w;
            w = pb_rng_u64(&rng) % 10 == 0 ? 104 + (int)(pb_rng_u64(&rng) % 56)
                                           : 104 + (w - 104) * 7 % 56;
        }
        tok[n++] = 102;
    }
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    cr_assert(shard_write(path, tok, n, err, sizeof err) == 0, "%s", err);
    free(tok);
}

// Removes the test's directory, passed or failed (use as .fini).
static void cleanup(void) {
    char cmd[300];
    if (!tmp[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
}

// Runs a shell command line; returns its exit status; its stdout goes to <tmp>/out and its
// stderr to <tmp>/err.
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[4096], full[4700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s >%s/out 2>%s/err", cmd, tmp, tmp);
    int st = system(full);
    cr_assert(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    return WEXITSTATUS(st);
}

// Starts a shell command line in the background, stdout to <tmp>/out and stderr to
// <tmp>/err as run() does; "exec" in it makes the command that pid. Returns the pid.
static pid_t spawn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static pid_t spawn(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        char out[300], err[300];
        snprintf(out, sizeof out, "%s/out", tmp);
        snprintf(err, sizeof err, "%s/err", tmp);
        dup2(open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), 1);
        dup2(open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

// A whole (small) file as a string, into buf (cap bytes, truncated to fit).
static char *read_into(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

// The same, in a static buffer that the next call reuses.
static char *slurp(const char *path) {
    static char buf[1 << 20];
    return read_into(path, buf, sizeof buf);
}

// What the last run() printed on stdout, on stderr, and both (stdout first).
static char *run_stdout(void) {
    static char buf[1 << 16];
    char p[300];
    snprintf(p, sizeof p, "%s/out", tmp);
    return read_into(p, buf, sizeof buf);
}
static char *run_stderr(void) {
    static char buf[1 << 16];
    char p[300];
    snprintf(p, sizeof p, "%s/err", tmp);
    return read_into(p, buf, sizeof buf);
}
static char *output(void) {
    static char buf[1 << 17];
    snprintf(buf, sizeof buf, "%s%s", run_stdout(), run_stderr());
    return buf;
}

// Every "loss" and "val_loss" of a run's metrics.jsonl, in order, as one string.
static void losses_of(const char *run_dir, char *out, size_t n) {
    char p[400];
    snprintf(p, sizeof p, "%s/metrics.jsonl", run_dir);
    char *s = slurp(p);
    out[0] = '\0';
    for (char *q = strstr(s, "loss\": "); q; q = strstr(q + 1, "loss\": ")) {
        strncat(out, q + 7, strcspn(q + 7, ",}"));
        strncat(out, " ", n - strlen(out) - 1);
    }
}

#endif
