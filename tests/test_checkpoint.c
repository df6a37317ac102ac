// test_checkpoint.c: HDF5 checkpoints: bit-exact round trip, the Hugging Face layout read
// back with the HDF5 API, kill -9 during saves, corruption and shape errors (each its own
// line, nothing half-loaded), keep-last-K, unwritable directory and full disk, and the
// safetensors export's header.
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernels/common.h"
#include "model/gpt2.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/export.h"
#include "train/optim.h"
#include "tests/corrupt.h"

// ----------------------------------------------------------------------------
// helpers

static char tmp[256];

static void make_tmp(void) {
    snprintf(tmp, sizeof tmp, "/tmp/pebble-test-ckpt-XXXXXX");
    cr_assert(mkdtemp(tmp), "mkdtemp: %s", strerror(errno));
}

static void remove_tmp(void) {
    char cmd[300];
    if (!tmp[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
}

TestSuite(checkpoint, .fini = remove_tmp);

typedef struct {
    gpt2 m;
    pb_adamw o;
    pb_config cfg;
} model_t;

static void build(model_t *x, int L, int NH, int C, int T, int V) {
    gpt2_config mc = {.n_layer = L, .n_head = NH, .n_embd = C, .seq_len = T, .vocab_size = V,
                      .attention = "auto"};
    gpt2_build(&x->m, &mc, pb_ops_cpu());
    adamw_init(&x->o, &x->m.p, 0.9f, 0.95f, 1e-8f, 0.1f);
    config_defaults(&x->cfg);
    x->cfg.n_layer = L;
    x->cfg.n_head = NH;
    x->cfg.n_embd = C;
    x->cfg.seq_len = T;
    x->cfg.vocab_size = V;
}

static void unbuild(model_t *x) {
    adamw_free(&x->o);
    gpt2_free(&x->m);
}

// Random values everywhere a checkpoint stores something (wte's padding rows stay zero,
// as they are in training); v positive like a second moment.
static void randomize(model_t *x, uint64_t seed) {
    pb_rng r;
    pb_rng_seed(&r, seed);
    size_t n = x->m.p.num_floats, pad0 = (size_t)x->m.cfg.vocab_size * x->m.cfg.n_embd,
           pad1 = (size_t)x->m.cfg.padded_vocab * x->m.cfg.n_embd;  // wte is param 0
    float *bufs[3] = {x->m.p.mem, x->m.p.m, x->m.p.v};
    for (int b = 0; b < 3; b++)
        for (size_t i = 0; i < n; i++) {
            float v = (float)pb_rng_normal(&r);
            bufs[b][i] = (i >= pad0 && i < pad1) ? 0.0f : (b == 2 ? v * v : v);
        }
    x->m.p.step = (int)(seed % 1000) + 1;
}

static pb_ckpt_trainer_state state_for(int64_t step) {
    pb_ckpt_trainer_state s = {
        .step = step,
        .tokens_seen = step * 4096 + 7,
        .seed = 0xDEADBEEFCAFEF00Dull,
        .train_loader = {.seed = 0xDEADBEEFCAFEF00Dull, .epoch = 3, .cursor = (uint64_t)step * 8},
        .lr = 1.2345678901234567e-4 * (double)step,
        .total_steps = 1000,
        .warmup_steps = 20,
        .max_lr = 3e-4,
        .min_lr_frac = 0.1,
    };
    return s;
}

static void save_ok(model_t *x, const char *dir, int64_t step, int keep) {
    char err[1024], path[1024];
    pb_ckpt_trainer_state st = state_for(step);
    int rc = ckpt_save(dir, &x->m.p, &x->o, &st, &x->cfg, keep, path, sizeof path, err, sizeof err);
    cr_assert_eq(rc, 0, "ckpt_save: %s", err);
}

static void ckpt_path(char *out, size_t n, const char *dir, int64_t step) {
    snprintf(out, n, "%s/ckpt_%08lld.h5", dir, (long long)step);
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int count_entries(const char *dir, const char *prefix, const char *suffix) {
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name), ls = strlen(suffix);
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 && l >= ls &&
            strcmp(de->d_name + l - ls, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void read_latest(const char *dir, char *out, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/latest", dir);
    FILE *f = fopen(p, "r");
    cr_assert(f, "no %s", p);
    cr_assert(fgets(out, (int)n, f));
    out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

static void expect_same(const float *a, const float *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            cr_assert_fail("%s differs at %zu: %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

// A load that must fail with a message containing each of the needles, and leave the
// destination exactly as it was.
static void expect_load_error(const char *path, model_t *dst, int with_opt, const char *n1,
                              const char *n2) {
    size_t n = dst->m.p.num_floats;
    float *p0 = malloc(n * 4), *m0 = malloc(n * 4), *v0 = malloc(n * 4);
    memcpy(p0, dst->m.p.mem, n * 4);
    memcpy(m0, dst->m.p.m, n * 4);
    memcpy(v0, dst->m.p.v, n * 4);
    uint64_t t0 = dst->m.p.step;
    pb_ckpt_trainer_state st;
    memset(&st, 0x5A, sizeof st);
    pb_ckpt_trainer_state st0 = st;
    char err[1024] = "";
    int rc = ckpt_load(path, &dst->m.p, with_opt, &st, err, sizeof err);
    cr_assert_eq(rc, -1, "load of %s succeeded; expected an error with '%s'", path, n1);
    cr_assert(strstr(err, path), "error does not name the file: %s", err);
    cr_assert(strstr(err, n1), "expected '%s' in: %s", n1, err);
    if (n2) cr_assert(strstr(err, n2), "expected '%s' in: %s", n2, err);
    cr_assert(!strchr(err, '\n'), "error is not one line: %s", err);
    expect_same(dst->m.p.mem, p0, n, "parameters after a failed load");
    expect_same(dst->m.p.m, m0, n, "m after a failed load");
    expect_same(dst->m.p.v, v0, n, "v after a failed load");
    cr_assert_eq(dst->m.p.step, t0);
    cr_assert(memcmp(&st, &st0, sizeof st) == 0, "trainer state written by a failed load");
    free(p0);
    free(m0);
    free(v0);
}

// ----------------------------------------------------------------------------
// round trip

Test(checkpoint, round_trip_is_bit_exact) {
    make_tmp();
    model_t a, b;
    build(&a, 2, 2, 32, 16, 100);  // V = 100 pads to 128: the padding must come back zero
    build(&b, 2, 2, 32, 16, 100);
    randomize(&a, 42);
    // b starts as garbage, padding rows included
    for (size_t i = 0; i < b.m.p.num_floats; i++) b.m.p.mem[i] = b.m.p.m[i] = b.m.p.v[i] = 7.0f;
    b.m.p.step = 0;
    save_ok(&a, tmp, 42, 3);

    char path[512], err[1024], name[256];
    ckpt_path(path, sizeof path, tmp, 42);
    cr_assert(file_exists(path));
    read_latest(tmp, name, sizeof name);
    cr_assert_str_eq(name, "ckpt_00000042.h5");
    cr_assert_eq(count_entries(tmp, ".ckpt_", ".tmp"), 0, "temp file left behind");

    pb_ckpt_trainer_state st, want = state_for(42);
    cr_assert_eq(ckpt_load(path, &b.m.p, 1, &st, err, sizeof err), 0, "%s", err);
    expect_same(b.m.p.mem, a.m.p.mem, a.m.p.num_floats, "parameters");
    expect_same(b.m.p.m, a.m.p.m, a.m.p.num_floats, "AdamW m");
    expect_same(b.m.p.v, a.m.p.v, a.m.p.num_floats, "AdamW v");
    cr_assert_eq(b.m.p.step, a.m.p.step);
    cr_assert_eq(st.step, want.step);
    cr_assert_eq(st.tokens_seen, want.tokens_seen);
    cr_assert_eq(st.seed, want.seed);
    cr_assert_eq(st.train_loader.seed, want.train_loader.seed);
    cr_assert_eq(st.train_loader.epoch, want.train_loader.epoch);
    cr_assert_eq(st.train_loader.cursor, want.train_loader.cursor);
    cr_assert(memcmp(&st.lr, &want.lr, sizeof st.lr) == 0, "lr %.17g vs %.17g", st.lr, want.lr);
    cr_assert_eq(st.total_steps, want.total_steps);
    cr_assert_eq(st.warmup_steps, want.warmup_steps);
    cr_assert_eq(st.max_lr, want.max_lr);
    cr_assert_eq(st.min_lr_frac, want.min_lr_frac);

    // weights only (--init): opt and st NULL
    randomize(&b, 9);
    cr_assert_eq(ckpt_load(path, &b.m.p, 0, NULL, err, sizeof err), 0, "%s", err);
    expect_same(b.m.p.mem, a.m.p.mem, a.m.p.num_floats, "parameters (weights only)");

    // the stored config
    char *ini = NULL;
    ckpt_model_info mc;
    cr_assert_eq(ckpt_read_config(path, &ini, &mc, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(mc.family, "gpt2");
    char *want_ini = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&want_ini, &len);
    config_write_ini(&a.cfg, f);
    fclose(f);
    cr_assert_str_eq(ini, want_ini);
    cr_assert(mc.n_layer == 2 && mc.n_head == 2 && mc.n_embd == 32 && mc.seq_len == 16 &&
              mc.vocab_size == 100);
    free(ini);
    free(want_ini);
    unbuild(&a);
    unbuild(&b);
}

// ----------------------------------------------------------------------------
// the file, read with the HDF5 API as a foreign reader would

static void read_dataset(hid_t f, const char *name, int ndim_want, const int *dims_want,
                         float *out) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert(ds >= 0, "no dataset %s", name);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[2];
    int nd = H5Sget_simple_extent_ndims(sp);
    cr_assert_eq(nd, ndim_want, "%s: rank %d", name, nd);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int d = 0; d < nd; d++)
        cr_assert_eq((int)dims[d], dims_want[d], "%s: dim %d is %d, want %d", name, d,
                     (int)dims[d], dims_want[d]);
    hid_t t = H5Dget_type(ds);
    cr_assert(H5Tequal(t, H5T_IEEE_F32LE) > 0, "%s is not float32 LE", name);
    // a Fletcher32 checksum on every dataset
    hid_t dcpl = H5Dget_create_plist(ds);
    unsigned flags;
    size_t nelem = 0;
    char fname[32];
    unsigned config;
    cr_assert(H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &nelem, NULL,
                                   sizeof fname, fname, &config) >= 0,
              "%s has no Fletcher32 filter", name);
    cr_assert(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Pclose(dcpl);
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(ds);
}

static void read_str_attr(hid_t obj, const char *name, char *out, size_t n) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    cr_assert(a >= 0, "no attribute %s", name);
    hid_t t = H5Aget_type(a);
    cr_assert(H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) == 0,
              "attribute %s is not a fixed-length string", name);
    size_t size = H5Tget_size(t);
    cr_assert(size < n);
    memset(out, 0, n);
    cr_assert(H5Aread(a, t, out) >= 0);
    H5Tclose(t);
    H5Aclose(a);
}

static long long read_int_attr(hid_t obj, const char *name) {
    long long v = -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    cr_assert(a >= 0, "no attribute %s", name);
    cr_assert(H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0);
    H5Aclose(a);
    return v;
}

Test(checkpoint, file_has_hugging_face_names_shapes_and_attributes) {
    make_tmp();
    model_t a;
    int L = 2, NH = 2, C = 32, T = 16, V = 100;
    build(&a, L, NH, C, T, V);
    randomize(&a, 3);
    save_ok(&a, tmp, 5, 3);
    char path[512];
    ckpt_path(path, sizeof path, tmp, 5);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0);

    char s[256];
    read_str_attr(f, "format", s, sizeof s);
    cr_assert_str_eq(s, "pebble-checkpoint");
    cr_assert_eq(read_int_attr(f, "version"), 1);
    read_str_attr(f, "model_family", s, sizeof s);
    cr_assert_str_eq(s, "gpt2");
    read_str_attr(f, "pebble_version", s, sizeof s);
    cr_assert_str_eq(s, PEBBLE_VERSION);
    hid_t g = H5Gopen2(f, "config", H5P_DEFAULT);
    cr_assert(g >= 0);
    cr_assert_eq(read_int_attr(g, "n_layer"), L);
    cr_assert_eq(read_int_attr(g, "n_head"), NH);
    cr_assert_eq(read_int_attr(g, "n_embd"), C);
    cr_assert_eq(read_int_attr(g, "seq_len"), T);
    cr_assert_eq(read_int_attr(g, "vocab_size"), V);
    H5Gclose(g);
    g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
    cr_assert_eq(read_int_attr(g, "t"), a.m.p.step);
    H5Gclose(g);
    g = H5Gopen2(f, "trainer", H5P_DEFAULT);
    cr_assert_eq(read_int_attr(g, "step"), 5);
    cr_assert_eq(read_int_attr(g, "tokens_seen"), 5 * 4096 + 7);
    H5Gclose(g);

    // /model holds exactly the state_dict's tensors (no lm_head: it is tied)
    g = H5Gopen2(f, "model", H5P_DEFAULT);
    H5G_info_t info;
    cr_assert(H5Gget_info(g, &info) >= 0);
    cr_assert_eq((int)info.nlinks, 4 + 12 * L);
    H5Gclose(g);

    float *buf = malloc((size_t)4 * C * 4 * C * sizeof(float) + (size_t)V * C * sizeof(float));
    char name[256];
    // A Conv1D weight: (in, out) in the file, the transpose of pebble's (out, in).
    const pb_param *p = params_find(&a.m.p, "transformer.h.1.attn.c_attn.weight");
    int dims[2] = {C, 3 * C};
    snprintf(name, sizeof name, "/model/%s", p->name);
    read_dataset(f, name, 2, dims, buf);
    const float *w = a.m.p.mem + p->offset;  // (3C, C)
    for (int i = 0; i < C; i++)
        for (int j = 0; j < 3 * C; j++)
            cr_assert(buf[i * 3 * C + j] == w[j * C + i], "c_attn[%d][%d]", i, j);
    // the MLP's c_proj: (4C, C) in the file
    p = params_find(&a.m.p, "transformer.h.0.mlp.c_proj.weight");
    int dims2[2] = {4 * C, C};
    snprintf(name, sizeof name, "/optimizer/m/%s", p->name);
    read_dataset(f, name, 2, dims2, buf);
    w = a.m.p.m + p->offset;  // (C, 4C)
    for (int i = 0; i < 4 * C; i++)
        for (int j = 0; j < C; j++)
            cr_assert(buf[i * C + j] == w[j * 4 * C + i], "m of mlp.c_proj[%d][%d]", i, j);
    // wte: V rows, not Vp
    int dims3[2] = {V, C};
    read_dataset(f, "/model/transformer.wte.weight", 2, dims3, buf);
    cr_assert(memcmp(buf, a.m.p.mem, (size_t)V * C * sizeof(float)) == 0);
    read_dataset(f, "/optimizer/v/transformer.wte.weight", 2, dims3, buf);
    cr_assert(memcmp(buf, a.m.p.v, (size_t)V * C * sizeof(float)) == 0);
    // a 1-D tensor
    p = params_find(&a.m.p, "transformer.ln_f.bias");
    int dims4[1] = {C};
    read_dataset(f, "/model/transformer.ln_f.bias", 1, dims4, buf);
    cr_assert(memcmp(buf, a.m.p.mem + p->offset, (size_t)C * sizeof(float)) == 0);
    H5Fclose(f);
    free(buf);
    unbuild(&a);
}

// ----------------------------------------------------------------------------
// corruption, foreign files, other shapes: one line each, nothing half-loaded

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    cr_assert(a && b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) cr_assert(fwrite(buf, 1, n, b) == n);
    fclose(a);
    fclose(b);
}

static void delete_link(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0);
    cr_assert(H5Ldelete(f, name, H5P_DEFAULT) >= 0, "cannot delete %s", name);
    H5Fclose(f);
}

Test(checkpoint, corrupt_and_foreign_files_give_one_line_and_change_nothing) {
    make_tmp();
    model_t a, b;
    build(&a, 2, 2, 32, 16, 100);
    build(&b, 2, 2, 32, 16, 100);
    randomize(&a, 1);
    randomize(&b, 2);
    save_ok(&a, tmp, 10, 0);
    char good[512], bad[512];
    ckpt_path(good, sizeof good, tmp, 10);
    snprintf(bad, sizeof bad, "%s/bad.h5", tmp);

    // a flipped byte in the data of a late tensor: the checksum catches it
    copy_file(good, bad);
    flip_byte_in(bad, "/optimizer/v/transformer.h.1.mlp.c_fc.weight");
    expect_load_error(bad, &b, 1, "/optimizer/v/transformer.h.1.mlp.c_fc.weight", "Fletcher32");
    // ... and in a weight
    copy_file(good, bad);
    flip_byte_in(bad, "/model/transformer.ln_f.weight");
    expect_load_error(bad, &b, 0, "/model/transformer.ln_f.weight", "checksum");

    // truncated to half
    copy_file(good, bad);
    struct stat sb;
    stat(good, &sb);
    cr_assert(truncate(bad, sb.st_size / 2) == 0);
    expect_load_error(bad, &b, 1, "truncated", NULL);
    // truncated to a few bytes: no longer recognisable as HDF5
    cr_assert(truncate(bad, 5) == 0);
    expect_load_error(bad, &b, 1, "not an HDF5 file", NULL);

    // not HDF5 at all
    FILE *f = fopen(bad, "w");
    for (int i = 0; i < 5000; i++) fputc("hello checkpoint "[i % 17], f);
    fclose(f);
    expect_load_error(bad, &b, 1, "not an HDF5 file", NULL);
    // an empty file
    f = fopen(bad, "w");
    fclose(f);
    expect_load_error(bad, &b, 1, "not an HDF5 file", NULL);
    // no such file
    expect_load_error("/nonexistent/ckpt.h5", &b, 1, "No such file or directory", NULL);

    // an HDF5 file that is not a pebble checkpoint
    hid_t h = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(h, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    H5Fclose(h);
    expect_load_error(bad, &b, 1, "not a pebble checkpoint", NULL);

    // a missing dataset, a missing group
    copy_file(good, bad);
    delete_link(bad, "/model/transformer.h.1.ln_2.bias");
    expect_load_error(bad, &b, 1, "missing dataset /model/transformer.h.1.ln_2.bias", NULL);
    copy_file(good, bad);
    delete_link(bad, "/optimizer/v");
    expect_load_error(bad, &b, 1, "missing group /optimizer/v", NULL);
    // ... which a weights-only load does not need
    char err[1024];
    cr_assert_eq(ckpt_load(bad, &b.m.p, 0, NULL, err, sizeof err), 0, "%s", err);
    expect_same(b.m.p.mem, a.m.p.mem, a.m.p.num_floats, "weights-only load");
    randomize(&b, 2);
    copy_file(good, bad);
    delete_link(bad, "/trainer");
    expect_load_error(bad, &b, 1, "missing group /trainer", NULL);
    unbuild(&a);
    unbuild(&b);
}

Test(checkpoint, other_model_shapes_name_the_dataset) {
    make_tmp();
    model_t a, wide, deep, shallow, vocab;
    build(&a, 2, 2, 32, 16, 100);
    randomize(&a, 1);
    save_ok(&a, tmp, 1, 0);
    char path[512];
    ckpt_path(path, sizeof path, tmp, 1);

    build(&wide, 2, 2, 64, 16, 100);
    randomize(&wide, 5);
    expect_load_error(path, &wide, 1, "dataset /model/transformer.wte.weight has shape (100, 32), "
                      "the model expects (100, 64)", "n_embd=32");
    build(&vocab, 2, 2, 32, 16, 120);  // same Vp (128), other V: still the wrong checkpoint
    randomize(&vocab, 5);
    expect_load_error(path, &vocab, 0, "/model/transformer.wte.weight has shape (100, 32)",
                      "(120, 32)");
    build(&deep, 3, 2, 32, 16, 100);
    randomize(&deep, 5);
    expect_load_error(path, &deep, 1, "missing dataset /model/transformer.h.2.ln_1.weight",
                      "n_layer=2");
    build(&shallow, 1, 2, 32, 16, 100);
    randomize(&shallow, 5);
    expect_load_error(path, &shallow, 1, "unexpected dataset /model/transformer.h.1.", NULL);
    unbuild(&a);
    unbuild(&wide);
    unbuild(&vocab);
    unbuild(&deep);
    unbuild(&shallow);
}

// A store of another family (the same tensors, so only the family tells them apart): one
// line naming both families, nothing changed.
Test(checkpoint, another_model_family_is_refused) {
    make_tmp();
    model_t a, b;
    build(&a, 2, 2, 32, 16, 100);
    randomize(&a, 1);
    save_ok(&a, tmp, 1, 0);
    char path[512];
    ckpt_path(path, sizeof path, tmp, 1);
    build(&b, 2, 2, 32, 16, 100);
    randomize(&b, 5);
    snprintf(b.m.p.family, sizeof b.m.p.family, "bert");
    expect_load_error(path, &b, 1, "a checkpoint of model family 'gpt2'; this model is bert",
                      NULL);
    expect_load_error(path, &b, 0, "model family 'gpt2'", NULL);
    unbuild(&a);
    unbuild(&b);
}

// ----------------------------------------------------------------------------
// keep-last-K, latest, unwritable directory, full disk

Test(checkpoint, keeps_the_last_k_and_points_latest_at_the_newest) {
    make_tmp();
    model_t a;
    build(&a, 1, 1, 16, 8, 50);
    randomize(&a, 1);
    for (int s = 1; s <= 6; s++) save_ok(&a, tmp, s * 10, 3);
    char path[512], name[256], err[512];
    for (int s = 1; s <= 6; s++) {
        ckpt_path(path, sizeof path, tmp, s * 10);
        cr_assert_eq(file_exists(path), s >= 4, "step %d: exists %d", s * 10, file_exists(path));
    }
    cr_assert_eq(count_entries(tmp, "ckpt_", ".h5"), 3);
    read_latest(tmp, name, sizeof name);
    cr_assert_str_eq(name, "ckpt_00000060.h5");
    cr_assert_eq(ckpt_find_latest(tmp, path, sizeof path, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(path, "ckpt_00000060.h5"), "%s", path);

    // latest missing or pointing nowhere: the newest valid file wins; a garbage newest
    // file is skipped
    char p2[512];
    snprintf(p2, sizeof p2, "%s/latest", tmp);
    cr_assert(unlink(p2) == 0);
    ckpt_path(path, sizeof path, tmp, 70);
    FILE *f = fopen(path, "w");
    fputs("garbage", f);
    fclose(f);
    cr_assert_eq(ckpt_find_latest(tmp, path, sizeof path, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(path, "ckpt_00000060.h5"), "%s", path);
    f = fopen(p2, "w");
    fputs("ckpt_00000099.h5\n", f);
    fclose(f);
    cr_assert_eq(ckpt_find_latest(tmp, path, sizeof path, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(path, "ckpt_00000060.h5"), "%s", path);

    // keep_last 0 keeps everything; an empty or absent directory has no checkpoint
    for (int s = 8; s <= 9; s++) save_ok(&a, tmp, s * 10, 0);
    cr_assert_eq(count_entries(tmp, "ckpt_", ".h5"), 6);  // 40..70 (70 is garbage), 80, 90
    char empty[512];
    snprintf(empty, sizeof empty, "%s/empty", tmp);
    mkdir(empty, 0755);
    cr_assert_eq(ckpt_find_latest(empty, path, sizeof path, err, sizeof err), 1);
    snprintf(empty, sizeof empty, "%s/none", tmp);
    cr_assert_eq(ckpt_find_latest(empty, path, sizeof path, err, sizeof err), 1);
    unbuild(&a);
}

// Runs ckpt_save in a child (which may drop privileges or limit file sizes first) and
// returns its error line; the parent then checks what is on disk.
typedef enum { AS_NOBODY, SMALL_FILES } child_mode;

static int save_in_child(model_t *x, const char *dir, int64_t step, child_mode mode, char *err,
                         size_t errlen) {
    int fds[2];
    cr_assert(pipe(fds) == 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (mode == AS_NOBODY) {
            if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(90);
        } else {
            // The disk fills up: writes past 64 KiB fail (EFBIG) instead of killing us.
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {64 << 10, 64 << 10};
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(91);
        }
        char e[1024] = "";
        pb_ckpt_trainer_state st = state_for(step);
        int rc = ckpt_save(dir, &x->m.p, &x->o, &st, &x->cfg, 3, NULL, 0, e, sizeof e);
        if (write(fds[1], e, strlen(e) + 1) < 0) _exit(92);
        _exit(rc == 0 ? 0 : 1);
    }
    close(fds[1]);
    memset(err, 0, errlen);
    ssize_t n, got = 0;
    while ((n = read(fds[0], err + got, errlen - 1 - (size_t)got)) > 0) got += n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) <= 1, "child failed to set up: %d",
              status);
    return WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void expect_previous_intact(model_t *saved, const char *dir, int64_t step) {
    char path[512], err[1024], name[256], want[64];
    cr_assert_eq(count_entries(dir, ".ckpt_", ".tmp"), 0, "temp file left behind");
    cr_assert_eq(count_entries(dir, "latest.tmp", ""), 0, "latest.tmp left behind");
    snprintf(want, sizeof want, "ckpt_%08lld.h5", (long long)step);
    read_latest(dir, name, sizeof name);
    cr_assert_str_eq(name, want);
    cr_assert_eq(ckpt_find_latest(dir, path, sizeof path, err, sizeof err), 0, "%s", err);
    model_t b;
    build(&b, saved->m.cfg.n_layer, saved->m.cfg.n_head, saved->m.cfg.n_embd,
          saved->m.cfg.seq_len, saved->m.cfg.vocab_size);
    pb_ckpt_trainer_state st;
    cr_assert_eq(ckpt_load(path, &b.m.p, 1, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(st.step, step);
    expect_same(b.m.p.mem, saved->m.p.mem, b.m.p.num_floats, "previous checkpoint");
    unbuild(&b);
}

Test(checkpoint, unwritable_directory_fails_cleanly) {
    make_tmp();
    model_t a;
    build(&a, 1, 2, 32, 16, 100);
    randomize(&a, 1);
    save_ok(&a, tmp, 1, 3);
    model_t later;
    build(&later, 1, 2, 32, 16, 100);
    randomize(&later, 2);
    chmod(tmp, 0755);  // as root, the child drops to nobody; otherwise the mode stops us
    if (geteuid() != 0) chmod(tmp, 0555);
    char err[1024];
    cr_assert_eq(save_in_child(&later, tmp, 2, AS_NOBODY, err, sizeof err), -1,
                 "save into an unwritable directory succeeded");
    chmod(tmp, 0755);
    cr_assert(strstr(err, tmp) && strstr(err, "Permission denied"), "%s", err);
    cr_assert(!strchr(err, '\n'), "%s", err);
    expect_previous_intact(&a, tmp, 1);

    // a directory that does not exist
    char none[512];
    snprintf(none, sizeof none, "%s/none", tmp);
    pb_ckpt_trainer_state st = state_for(3);
    cr_assert_eq(ckpt_save(none, &a.m.p, &a.o, &st, &a.cfg, 3, NULL, 0, err, sizeof err), -1);
    cr_assert(strstr(err, "No such file or directory"), "%s", err);
    unbuild(&a);
    unbuild(&later);
}

Test(checkpoint, full_disk_fails_cleanly) {
    make_tmp();
    model_t a, later;
    build(&a, 2, 2, 64, 16, 300);  // ~0.5 MB of floats: far past the 64 KiB limit
    build(&later, 2, 2, 64, 16, 300);
    randomize(&a, 1);
    randomize(&later, 2);
    save_ok(&a, tmp, 1, 3);
    char err[1024];
    cr_assert_eq(save_in_child(&later, tmp, 2, SMALL_FILES, err, sizeof err), -1,
                 "save onto a full disk succeeded");
    cr_assert(strstr(err, "ckpt_00000002.h5") && strstr(err, "File too large"), "%s", err);
    cr_assert(!strchr(err, '\n'), "%s", err);
    expect_previous_intact(&a, tmp, 1);
    unbuild(&a);
    unbuild(&later);
}

// ----------------------------------------------------------------------------
// kill -9 while saving

// The child saves states k = first, first+1, ...: every float of parameters, m and v
// derived from k, so a loaded checkpoint shows which save it came from and that it is
// whole.
static void saver_child(const char *dir, int first) {
    model_t x;
    build(&x, 2, 2, 64, 32, 500);
    setenv("PEBBLE_CKPT_TEST_DELAY_US", "3000", 1);
    for (int k = first; k < first + 100000; k++) {
        for (size_t i = 0; i < x.m.p.num_floats; i++) {
            x.m.p.mem[i] = (float)k;
            x.m.p.m[i] = (float)k + 0.25f;
            x.m.p.v[i] = (float)k + 0.5f;
        }
        // wte's padding rows are never stored: keep them zero so the comparison is exact
        size_t pad0 = (size_t)x.m.cfg.vocab_size * x.m.cfg.n_embd,
               pad1 = (size_t)x.m.cfg.padded_vocab * x.m.cfg.n_embd;
        for (size_t i = pad0; i < pad1; i++) x.m.p.mem[i] = x.m.p.m[i] = x.m.p.v[i] = 0.0f;
        x.m.p.step = k;
        char err[1024];
        pb_ckpt_trainer_state st = state_for(k);
        if (ckpt_save(dir, &x.m.p, &x.o, &st, &x.cfg, 2, NULL, 0, err, sizeof err) != 0) {
            fprintf(stderr, "saver: %s\n", err);
            _exit(1);
        }
        if (getppid() == 1) _exit(0);  // the test is gone
    }
    _exit(0);
}

Test(checkpoint, kill_9_while_saving_leaves_a_loadable_checkpoint, .timeout = 120) {
    make_tmp();
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    model_t b;
    build(&b, 2, 2, 64, 32, 500);
    char latest[512], path[512], err[1024];
    snprintf(latest, sizeof latest, "%s/latest", tmp);
    int next = 1, kills = 0;
    for (int round = 0; round < 12; round++) {
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) saver_child(tmp, next);
        // Wait for the first complete save of the first round, then kill at a random moment
        // (a save takes tens of ms here: the child gets through zero to a few of them).
        while (round == 0 && !file_exists(latest)) usleep(1000);
        usleep((useconds_t)(rand() % 150000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "the saver ended by itself (status %d)", status);
        kills++;

        cr_assert_eq(ckpt_find_latest(tmp, path, sizeof path, err, sizeof err), 0,
                     "round %d: no checkpoint found: %s", round, err);
        pb_ckpt_trainer_state st;
        cr_assert_eq(ckpt_load(path, &b.m.p, 1, &st, err, sizeof err), 0,
                     "round %d: %s", round, err);
        int k = (int)st.step;
        cr_assert(k >= 1, "round %d: step %d", round, k);
        cr_assert_eq(b.m.p.step, k);
        pb_ckpt_trainer_state want = state_for(k);
        cr_assert_eq(st.tokens_seen, want.tokens_seen);
        cr_assert_eq(st.train_loader.cursor, want.train_loader.cursor);
        size_t pad0 = (size_t)b.m.cfg.vocab_size * b.m.cfg.n_embd,
               pad1 = (size_t)b.m.cfg.padded_vocab * b.m.cfg.n_embd;
        for (size_t i = 0; i < b.m.p.num_floats; i++) {
            int pad = i >= pad0 && i < pad1;
            cr_assert(b.m.p.mem[i] == (pad ? 0.0f : (float)k) &&
                          b.m.p.m[i] == (pad ? 0.0f : (float)k + 0.25f) &&
                          b.m.p.v[i] == (pad ? 0.0f : (float)k + 0.5f),
                      "round %d: checkpoint %d is a mix of saves at float %zu", round, k, i);
        }
        // Atomic replacement: whatever the moment of the kill, every file under a
        // checkpoint's name is complete (a half-written one only ever has a temp name).
        DIR *d = opendir(tmp);
        cr_assert(d);
        struct dirent *de;
        int newest = k;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, "ckpt_", 5) != 0) continue;
            snprintf(path, sizeof path, "%s/%s", tmp, de->d_name);
            cr_assert_eq(ckpt_load(path, &b.m.p, 1, &st, err, sizeof err), 0,
                         "round %d: %s", round, err);
            if (st.step > newest) newest = (int)st.step;
        }
        closedir(d);
        // the next child continues past anything this one may have left
        next = newest + 1;
    }
    cr_assert_eq(kills, 12);
    unbuild(&b);
}

// ----------------------------------------------------------------------------
// safetensors export

// The value of "key": [a, b, ...] after position p in a JSON text, as up to 4 integers.
static int json_ints(const char *p, const char *key, long long *out) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *q = strstr(p, k);
    cr_assert(q, "no %s in %.80s", key, p);
    q = strchr(q, '[');
    int n = 0;
    while (*q && *q != ']' && n < 4) {
        q++;
        char *end;
        long long v = strtoll(q, &end, 10);
        if (end == q) break;
        out[n++] = v;
        q = end;
        while (*q == ' ') q++;
    }
    return n;
}

Test(checkpoint, safetensors_export_header_is_consistent) {
    make_tmp();
    model_t a;
    build(&a, 2, 2, 32, 16, 100);
    randomize(&a, 11);
    save_ok(&a, tmp, 7, 3);
    char path[512], out[512], err[1024];
    ckpt_path(path, sizeof path, tmp, 7);
    snprintf(out, sizeof out, "%s/hf", tmp);
    cr_assert_eq(export_safetensors(path, out, err, sizeof err), 0, "%s", err);

    char st_path[600];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", out);
    FILE *f = fopen(st_path, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    cr_assert(fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)buf[i] << (8 * i);
    cr_assert(n % 8 == 0 && 8 + n <= (uint64_t)size, "header length %llu", (unsigned long long)n);
    char *json = malloc(n + 1);
    memcpy(json, buf + 8, n);
    json[n] = '\0';
    const unsigned char *data = buf + 8 + n;
    uint64_t data_len = (uint64_t)size - 8 - n;
    cr_assert(json[0] == '{', "%.40s", json);
    cr_assert(strstr(json, "\"__metadata__\":{\"format\":\"pt\"}"));
    cr_assert(!strstr(json, "lm_head"), "lm_head.weight is tied and must not be stored");

    // every tensor: F32, its Hugging Face shape, offsets back to back covering the data
    uint64_t expect_begin = 0;
    for (int i = 0; i < a.m.p.num; i++) {
        const pb_param *p = &a.m.p.tab[i];
        char key[128];
        snprintf(key, sizeof key, "\"%s\":{", p->name);
        const char *e = strstr(json, key);
        cr_assert(e, "no %s in the header", p->name);
        cr_assert(strncmp(strstr(e, "\"dtype\":"), "\"dtype\":\"F32\"", 13) == 0, "%s", p->name);
        long long shape[4], offs[4];
        int nd = json_ints(e, "shape", shape);
        cr_assert_eq(nd, p->ndim, "%s", p->name);
        for (int d = 0; d < nd; d++) cr_assert_eq(shape[d], p->hf_shape[d], "%s", p->name);
        cr_assert_eq(json_ints(e, "data_offsets", offs), 2);
        uint64_t bytes = (uint64_t)p->hf_shape[0] * (p->ndim == 2 ? p->hf_shape[1] : 1) * 4;
        cr_assert_eq((uint64_t)offs[0], expect_begin, "%s", p->name);
        cr_assert_eq((uint64_t)(offs[1] - offs[0]), bytes, "%s", p->name);
        expect_begin = (uint64_t)offs[1];
        // and the bytes are the tensor in the Hugging Face layout
        float *hf = malloc(bytes);
        ckpt_param_to_hf(p, a.m.p.mem + p->offset, hf);
        cr_assert(memcmp(data + offs[0], hf, bytes) == 0, "%s data", p->name);
        free(hf);
    }
    cr_assert_eq(expect_begin, data_len, "data section is %llu bytes, tensors cover %llu",
                 (unsigned long long)data_len, (unsigned long long)expect_begin);

    char cj[600];
    snprintf(cj, sizeof cj, "%s/config.json", out);
    f = fopen(cj, "r");
    cr_assert(f);
    char text[4096] = "";
    cr_assert(fread(text, 1, sizeof text - 1, f) > 0);
    fclose(f);
    const char *needles[] = {"\"model_type\": \"gpt2\"", "\"n_layer\": 2", "\"n_head\": 2",
                             "\"n_embd\": 32", "\"n_positions\": 16", "\"vocab_size\": 100",
                             "\"activation_function\": \"gelu_new\"",
                             "\"tie_word_embeddings\": true", "\"GPT2LMHeadModel\""};
    for (size_t i = 0; i < sizeof needles / sizeof *needles; i++)
        cr_assert(strstr(text, needles[i]), "config.json lacks %s", needles[i]);

    // a bad checkpoint is refused before anything is written
    snprintf(out, sizeof out, "%s/hf2", tmp);
    cr_assert_eq(export_safetensors(st_path, out, err, sizeof err), PB_EXIT_DATA);
    cr_assert(strstr(err, "not an HDF5 file"), "%s", err);
    cr_assert(!file_exists(out));
    free(json);
    free(buf);
    unbuild(&a);
}

// ----------------------------------------------------------------------------
// reference logits for tests/gpu/check_hf_load.py

static void write_bin(const char *dir, const char *name, const void *data, size_t bytes) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert(f, "cannot create %s", p);
    cr_assert(fwrite(data, 1, bytes, f) == bytes);
    cr_assert(fclose(f) == 0);
}

// Trains a small GPT-2 for a few steps, saves and exports it, and checks that the model
// loaded back gives bit-identical logits. With PEBBLE_HF_CHECK_DIR set, leaves there the
// checkpoint (ckpt_*.h5), the export (hf/), the tokens, targets and pebble's logits and
// loss, which tests/gpu/check_hf_load.py compares with Hugging Face's GPT2LMHeadModel.
Test(checkpoint, hf_reference_logits) {
    const char *keep = getenv("PEBBLE_HF_CHECK_DIR");
    char dir[512];
    if (keep && *keep) {
        snprintf(dir, sizeof dir, "%s", keep);
        mkdir(dir, 0755);
    } else {
        make_tmp();
        snprintf(dir, sizeof dir, "%s", tmp);
    }
    enum { L = 2, NH = 4, C = 64, T = 32, V = 300, B = 4, STEPS = 30 };
    model_t a;
    build(&a, L, NH, C, T, V);
    gpt2_init_weights(&a.m, 1);
    // a learnable rule (the next token a fixed function of the previous one, 90% of the
    // time), so the trained weights are far from their initialisation
    int32_t inp[B * T], tgt[B * T];
    pb_rng r;
    pb_rng_seed(&r, 7);
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < B; b++) {
            int32_t x = (int32_t)(pb_rng_u64(&r) % V);
            for (int t = 0; t <= T; t++) {
                int32_t next =
                    pb_rng_u64(&r) % 10 ? (x * 7 + 3) % V : (int32_t)(pb_rng_u64(&r) % V);
                if (t < T) inp[b * T + t] = x;
                if (t > 0) tgt[b * T + t - 1] = x;
                x = next;
            }
        }
        gpt2_zero_grad(&a.m);
        gpt2_forward(&a.m, inp, tgt, B, T);
        gpt2_backward(&a.m, 1.0f);
        optim_clip_grad_norm(&a.m.p, 1.0f);
        adamw_step(&a.o, &a.m.p, 3e-3f);
    }
    double loss = gpt2_forward(&a.m, inp, tgt, B, T);  // the last batch: B sequences of T
    int Vp = a.m.cfg.padded_vocab;
    float *logits = malloc((size_t)B * T * V * sizeof(float));
    for (int i = 0; i < B * T; i++)
        memcpy(logits + (size_t)i * V, a.m.acts.logits + (size_t)i * Vp, V * sizeof(float));

    pb_ckpt_trainer_state st = state_for(STEPS);
    char path[700], err[1024], hf[700];
    cr_assert_eq(ckpt_save(dir, &a.m.p, &a.o, &st, &a.cfg, 1, path, sizeof path, err, sizeof err),
                 0, "%s", err);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    cr_assert_eq(export_safetensors(path, hf, err, sizeof err), 0, "%s", err);

    // the checkpoint, loaded into a fresh model, computes the same numbers to the bit
    model_t b;
    build(&b, L, NH, C, T, V);
    cr_assert_eq(ckpt_load(path, &b.m.p, 0, NULL, err, sizeof err), 0, "%s", err);
    double loss2 = gpt2_forward(&b.m, inp, tgt, B, T);
    cr_assert(memcmp(&loss, &loss2, sizeof loss) == 0, "loss %.17g vs %.17g", loss, loss2);
    for (int i = 0; i < B * T; i++)
        cr_assert(memcmp(logits + (size_t)i * V, b.m.acts.logits + (size_t)i * Vp,
                         V * sizeof(float)) == 0, "logits of position %d differ", i);
    cr_assert(loss < log((double)V) - 1.0, "training did not move the weights: loss %g", loss);

    write_bin(dir, "tokens.bin", inp, sizeof inp);
    write_bin(dir, "targets.bin", tgt, sizeof tgt);
    write_bin(dir, "logits.bin", logits, (size_t)B * T * V * sizeof(float));
    char meta[512];
    int n = snprintf(meta, sizeof meta,
                     "{\"checkpoint\": \"%s\", \"B\": %d, \"T\": %d, \"V\": %d, \"loss\": %.17g}\n",
                     strrchr(path, '/') + 1, B, T, V, loss);
    write_bin(dir, "meta.json", meta, (size_t)n);
    free(logits);
    unbuild(&a);
    unbuild(&b);
}

// The metadata (attributes such as /trainer's step, the object headers) is checksummed too.
Test(checkpoint, damaged_metadata_is_detected) {
    make_tmp();
    model_t a, b;
    build(&a, 1, 2, 32, 16, 100);
    build(&b, 1, 2, 32, 16, 100);
    randomize(&a, 1);
    randomize(&b, 2);
    save_ok(&a, tmp, 1, 0);
    char path[512];
    ckpt_path(path, sizeof path, tmp, 1);
    // the root object header holds the "format" attribute's value
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    char *at = memmem(buf, n, "pebble-checkpoint", 17);
    cr_assert(at, "attribute value not found in the first MiB");
    fseek(f, (long)(at - buf) + 3, SEEK_SET);
    fputc('X', f);
    fclose(f);
    expect_load_error(path, &b, 1, "checksum", NULL);

    // /trainer's seed attribute (an integer in its object header)
    save_ok(&a, tmp, 2, 0);
    ckpt_path(path, sizeof path, tmp, 2);
    f = fopen(path, "r+b");
    cr_assert(f);
    n = fread(buf, 1, sizeof buf, f);
    uint64_t seed = state_for(2).seed;
    at = memmem(buf, n, &seed, sizeof seed);
    cr_assert(at, "seed not found in the first MiB");
    fseek(f, (long)(at - buf), SEEK_SET);
    fputc(at[0] ^ 1, f);
    fclose(f);
    expect_load_error(path, &b, 1, "checksum", NULL);
    unbuild(&a);
    unbuild(&b);
}
