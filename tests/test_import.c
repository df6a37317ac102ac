// test_import.c: `pebble import --hf DIR --out CKPT.h5`: a checkpoint exported to Hugging
// Face's layout and imported back is the same to the bit; config.json and model.safetensors
// that do not describe pebble's GPT-2 (bad JSON, another shape, activation or epsilon, a
// missing, renamed or mistyped tensor, a truncated file) each give one line and exit 3; and
// random corruptions of a valid file either import or give one line and exit 3, never a crash.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt2.h"
#include "tests/cli.h"
#include "train/checkpoint.h"
#include "train/optim.h"

#define TINY                                                                                \
    "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32 " \
    "--set model.vocab_size=64 --set train.batch_size=4 --set train.warmup_steps=2 "         \
    "--set run.plot=false --set data.train=%s/train_*.bin "

// A trained tiny run in <tmp>/run, exported to <tmp>/hf.
static void trained_and_exported(void) {
    make_data("import");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY "--set train.steps=3 --set run.dir=%s/run", bin, tmp, tmp),
                 0, "%s", output());
    cr_assert_eq(run("%s export --ckpt %s/run/ckpt_00000003.h5 --out %s/hf", bin, tmp, tmp), 0,
                 "%s", output());
}

// The weights of a checkpoint, loaded into a model built for its shape.
static float *weights_of(const char *path, size_t *n) {
    ckpt_model_info mi;
    char err[1024];
    cr_assert_eq(ckpt_read_config(path, NULL, &mi, err, sizeof err), 0, "%s", err);
    gpt2_config mc = {.n_layer = mi.n_layer, .n_head = mi.n_head, .n_embd = mi.n_embd,
                      .seq_len = mi.seq_len, .vocab_size = mi.vocab_size};
    gpt2 m;
    gpt2_build(&m, &mc, pb_ops_cpu());
    cr_assert_eq(ckpt_load(path, &m.p, 0, NULL, err, sizeof err), 0, "%s", err);
    *n = m.p.num_floats;
    float *w = malloc(*n * sizeof(float));
    memcpy(w, m.p.mem, *n * sizeof(float));
    gpt2_free(&m);
    return w;
}

Test(import, export_then_import_is_the_same_to_the_bit, .fini = cleanup) {
    trained_and_exported();
    cr_assert_eq(run("%s import --hf %s/hf --out %s/imp.h5", pebble_bin(), tmp, tmp), 0, "%s",
                 output());
    cr_assert(strstr(run_stdout(), "gpt2 L2 H2 C32 T32 V64"), "%s", run_stdout());
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/run/ckpt_00000003.h5", tmp);
    snprintf(b, sizeof b, "%s/imp.h5", tmp);
    size_t na, nb;
    float *wa = weights_of(a, &na), *wb = weights_of(b, &nb);
    cr_assert_eq(na, nb);
    cr_assert(memcmp(wa, wb, na * sizeof(float)) == 0, "imported weights differ");
    free(wa);
    free(wb);
    // it starts a run (--init) and is evaluated like any checkpoint
    cr_assert_eq(run("%s train " TINY "--set train.steps=2 --set run.dir=%s/init --init %s",
                     pebble_bin(), tmp, tmp, b), 0, "%s", output());
    // and an existing --out is never overwritten
    cr_assert_eq(run("%s import --hf %s/hf --out %s", pebble_bin(), tmp, b), 2);
    cr_assert(strstr(run_stderr(), "exists"), "%s", output());
}

// Replaces the first occurrence of from by to (same length) in the file at path.
static void patch(const char *path, const char *from, const char *to) {
    cr_assert_eq(strlen(from), strlen(to));
    FILE *f = fopen(path, "r+b");
    cr_assert(f, "%s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    char *at = memmem(buf, n, from, strlen(from));
    cr_assert(at, "'%s' not in %s", from, path);
    fseek(f, at - buf, SEEK_SET);
    fwrite(to, 1, strlen(to), f);
    fclose(f);
}

// A fresh copy of the exported model in <tmp>/bad, patched, then imported: exit 3, one line.
static void expect_bad(const char *file, const char *from, const char *to, const char *needle) {
    cr_assert_eq(run("rm -rf %s/bad %s/bad.h5 && cp -r %s/hf %s/bad", tmp, tmp, tmp, tmp), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/bad/%s", tmp, file);
    if (from) patch(path, from, to);
    int rc = run("%s import --hf %s/bad --out %s/bad.h5", pebble_bin(), tmp, tmp);
    char *err = run_stderr();
    cr_expect_eq(rc, 3, "%s -> %s: exit %d: %s", from ? from : file, to ? to : "", rc, err);
    cr_expect(strstr(err, needle), "expected '%s' in: %s", needle, err);
    cr_expect(strncmp(err, "pebble: ", 8) == 0 && strchr(err, '\n') == err + strlen(err) - 1,
              "not one line: %s", err);
    char out[300];
    snprintf(out, sizeof out, "%s/bad.h5", tmp);
    cr_expect(access(out, F_OK) != 0, "a refused import wrote %s", out);
}

Test(import, bad_models_are_one_line_and_exit_3, .fini = cleanup) {
    trained_and_exported();
    expect_bad("config.json", "\"n_embd\": 32", "\"n_embd\": 64",
               "tensor transformer.wte.weight has shape (64, 32); the config.json");
    expect_bad("config.json", "\"n_layer\": 2", "\"n_layer\": 3",
               "no tensor transformer.h.2.ln_1.weight");
    expect_bad("config.json", "\"gelu_new\"", "\"gelu_xyz\"", "activation_function");
    expect_bad("config.json", "1e-05", "1e-06", "layer_norm_epsilon");
    expect_bad("config.json", "{", "[", "config.json");
    expect_bad("config.json", "\"vocab_size\": 64", "\"vocab_size\": -1", "'vocab_size'");
    expect_bad("model.safetensors", "transformer.ln_f.bias", "transformer.ln_f.biaz",
               "no tensor transformer.ln_f.bias");
    expect_bad("model.safetensors", "\"F32\"", "\"I32\"", "dtype");
    // a file cut short: its offsets run past the end
    cr_assert_eq(run("rm -rf %s/bad && cp -r %s/hf %s/bad && truncate -s -100 "
                     "%s/bad/model.safetensors && %s import --hf %s/bad --out %s/bad.h5",
                     tmp, tmp, tmp, tmp, pebble_bin(), tmp, tmp), 3, "%s", output());
}

// Byte flips anywhere, header-length changes and truncations of a valid file: each import
// succeeds or gives one line with exit 3 (no signal, no other code).
Test(import, random_corruptions_never_crash, .fini = cleanup, .timeout = 300) {
    trained_and_exported();
    char path[300];
    snprintf(path, sizeof path, "%s/hf/model.safetensors", tmp);
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    pb_rng r;
    pb_rng_seed(&r, 99);
    int ok = 0, refused = 0;
    for (int it = 0; it < 150; it++) {
        cr_assert_eq(run("rm -rf %s/fz %s/fz.h5 && cp -r %s/hf %s/fz", tmp, tmp, tmp, tmp), 0);
        char p[300];
        snprintf(p, sizeof p, "%s/fz/model.safetensors", tmp);
        FILE *g = fopen(p, "r+b");
        int kind = (int)(pb_rng_u64(&r) % 3);
        if (kind == 0) {  // flip bytes, mostly in the header (the first ~5 KB)
            for (int k = 0; k < 4; k++) {
                long at = (long)(pb_rng_u64(&r) % (uint64_t)(pb_rng_u64(&r) % 2 ? 5000 : size));
                fseek(g, at, SEEK_SET);
                int c = fgetc(g);
                fseek(g, at, SEEK_SET);
                fputc((c ^ (int)(1 + pb_rng_u64(&r) % 255)) & 0xFF, g);
            }
        } else if (kind == 1) {  // another header length
            unsigned char len8[8];
            uint64_t v = pb_rng_u64(&r) % 3 ? pb_rng_u64(&r) % 10000 : pb_rng_u64(&r);
            for (int k = 0; k < 8; k++) len8[k] = (unsigned char)(v >> (8 * k));
            fwrite(len8, 1, 8, g);
        }
        fclose(g);
        if (kind == 2)
            cr_assert_eq(truncate(p, (off_t)(pb_rng_u64(&r) % (uint64_t)size)), 0);
        int rc = run("%s import --hf %s/fz --out %s/fz.h5", pebble_bin(), tmp, tmp);
        cr_assert(rc == 0 || rc == 3, "iteration %d (kind %d): exit %d: %s", it, kind, rc,
                  output());
        if (rc == 3) {
            char *err = run_stderr();
            cr_assert(strncmp(err, "pebble: ", 8) == 0 && strchr(err, '\n') == err + strlen(err) - 1,
                      "iteration %d: not one line: %s", it, err);
            refused++;
        } else {
            ok++;
        }
    }
    cr_assert(refused > 50, "only %d of 150 corruptions were refused", refused);
    cr_log_info("%d imported, %d refused", ok, refused);
}
