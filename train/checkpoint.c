// checkpoint.c: HDF5 checkpoints (see checkpoint.h): writing, atomic replacement and
// pruning, verified all-or-nothing loading, finding the newest one.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/common.h"

// Chunks of at most this many bytes (whole rows): Fletcher32 needs a chunked layout, and
// one checksum per few MiB localises damage without many chunks.
#define CKPT_CHUNK_BYTES (4u << 20)

// ----------------------------------------------------------------------------
// errors: the first failure is the one reported, as "<file>: <what>[: <hdf5's reason>]"

typedef struct ck_ctx {
    const char *path;  // the file every message names
    char *err;
    size_t errlen;
    int failed;
} ck_ctx;

static void ck_fail(ck_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ck_fail(ck_ctx *c, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    if (!c->err || c->errlen == 0) return;
    int off = snprintf(c->err, c->errlen, "%s: ", c->path);
    if (off < 0 || (size_t)off >= c->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + off, c->errlen - (size_t)off, fmt, ap);
    va_end(ap);
}

// HDF5 records a stack of errors per failed call; the innermost one says what really went
// wrong ("data error detected by Fletcher32 checksum", "truncated file: ..."). We report
// that one, on one line, and clear the stack.
typedef struct {
    char msg[256];
} h5_reason;

static herr_t h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
    h5_reason *r = data;
    if (n != 0) return 0;
    if (e->desc && e->desc[0]) snprintf(r->msg, sizeof r->msg, "%s", e->desc);
    else H5Eget_msg(e->min_num, NULL, r->msg, sizeof r->msg);
    return 0;
}

static void h5_last_error(char *buf, size_t n) {
    h5_reason r = {{0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk, &r);
    H5Eclear2(H5E_DEFAULT);
    // IO failures carry the whole write(2) call; the OS's reason is the part worth keeping.
    const char *os = strstr(r.msg, "error message = '");
    if (os) {
        os += strlen("error message = '");
        size_t len = strcspn(os, "'");
        snprintf(buf, n, "%.*s", (int)len, os);
    } else {
        snprintf(buf, n, "%s", r.msg[0] ? r.msg : "unknown HDF5 error");
    }
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

// ck_fail with HDF5's reason appended; returns -1 for `return h5_fail(...)`.
static int h5_fail(ck_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int h5_fail(ck_ctx *c, const char *fmt, ...) {
    char what[512], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    h5_last_error(why, sizeof why);
    ck_fail(c, "%s: %s", what, why);
    return -1;
}

// HDF5 prints its error stack to stderr by default; we print our one line instead.
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

// ----------------------------------------------------------------------------
// layouts: pebble's internal tensor <-> the Hugging Face one stored in the file

static size_t hf_numel(const pb_param *p) {
    return (size_t)p->hf_shape[0] * (size_t)(p->ndim == 2 ? p->hf_shape[1] : 1);
}

// dst (cols, rows) = transpose of src (rows, cols), in 32x32 tiles to stay in cache.
static void transpose(float *dst, const float *src, int rows, int cols) {
    for (int r0 = 0; r0 < rows; r0 += 32)
        for (int c0 = 0; c0 < cols; c0 += 32)
            for (int r = r0; r < r0 + 32 && r < rows; r++)
                for (int c = c0; c < c0 + 32 && c < cols; c++)
                    dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
}

// The tensor in the Hugging Face layout: Conv1D weights transposed into scratch; wte's
// first V rows are a prefix of its Vp, so it (like every other tensor) is used in place.
static const float *to_hf(const pb_param *p, const float *internal, float *scratch) {
    if (!p->hf_transposed) return internal;
    transpose(scratch, internal, p->shape[0], p->shape[1]);
    return scratch;
}

// The inverse: internal <- Hugging Face layout, padding rows of wte zero.
static void from_hf(const pb_param *p, const float *hf, float *internal) {
    if (p->hf_transposed) {
        transpose(internal, hf, p->hf_shape[0], p->hf_shape[1]);
        return;
    }
    size_t n = hf_numel(p);
    memcpy(internal, hf, n * sizeof(float));
    memset(internal + n, 0, (p->numel - n) * sizeof(float));
}

void ckpt_param_to_hf(const pb_param *p, const float *internal, float *out) {
    if (p->hf_transposed) transpose(out, internal, p->shape[0], p->shape[1]);
    else memcpy(out, internal, hf_numel(p) * sizeof(float));
}

static void shape_text(const pb_param *p, char *buf, size_t n) {
    if (p->ndim == 2) snprintf(buf, n, "(%d, %d)", p->hf_shape[0], p->hf_shape[1]);
    else snprintf(buf, n, "(%d)", p->hf_shape[0]);
}

static void model_text(const ckpt_model_info *mi, char *buf, size_t n) {
    snprintf(buf, n, "n_layer=%d n_head=%d n_embd=%d seq_len=%d vocab_size=%d", mi->n_layer,
             mi->n_head, mi->n_embd, mi->seq_len, mi->vocab_size);
}

// ----------------------------------------------------------------------------
// writing attributes and datasets

static int write_attr(ck_ctx *c, hid_t obj, const char *name, hid_t type, const void *buf) {
    hid_t space = H5Screate(H5S_SCALAR);
    if (space < 0) return h5_fail(c, "cannot write attribute '%s'", name);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, type, buf) < 0) rc = h5_fail(c, "cannot write attribute '%s'", name);
    if (a >= 0 && H5Aclose(a) < 0 && rc == 0) rc = h5_fail(c, "cannot write attribute '%s'", name);
    H5Sclose(space);
    return rc;
}

static int write_i64(ck_ctx *c, hid_t obj, const char *name, int64_t v) {
    return write_attr(c, obj, name, H5T_STD_I64LE, &v);
}
static int write_u64(ck_ctx *c, hid_t obj, const char *name, uint64_t v) {
    return write_attr(c, obj, name, H5T_STD_U64LE, &v);
}
static int write_f64(ck_ctx *c, hid_t obj, const char *name, double v) {
    return write_attr(c, obj, name, H5T_IEEE_F64LE, &v);
}

// Fixed-length, NUL-terminated UTF-8. A variable-length string would live in the global
// heap, which has no checksum; a fixed one is stored in the object header, which has.
// (h5py reads it as bytes: .decode() gives the str.)
static int write_str(ck_ctx *c, hid_t obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(value) + 1) < 0 ||
        H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0) H5Tclose(t);
        return h5_fail(c, "cannot write attribute '%s'", name);
    }
    int rc = write_attr(c, obj, name, t, value);
    H5Tclose(t);
    return rc;
}

static hid_t make_group(ck_ctx *c, hid_t parent, const char *name, const char *shown) {
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) h5_fail(c, "cannot create group %s", shown);
    return g;
}

// One fp32 dataset with the Hugging Face shape of p, chunked by rows, Fletcher32-summed.
static int write_tensor(ck_ctx *c, hid_t grp, const char *shown, const pb_param *p,
                        const float *hf) {
    hsize_t dims[2] = {(hsize_t)p->hf_shape[0], (hsize_t)(p->ndim == 2 ? p->hf_shape[1] : 1)};
    hsize_t chunk[2] = {dims[0], dims[1]};
    size_t row_bytes = (size_t)dims[1] * sizeof(float);
    if (p->ndim == 1) {
        if ((size_t)dims[0] * sizeof(float) > CKPT_CHUNK_BYTES) chunk[0] = CKPT_CHUNK_BYTES / 4;
    } else if ((size_t)dims[0] * row_bytes > CKPT_CHUNK_BYTES) {
        chunk[0] = CKPT_CHUNK_BYTES / row_bytes ? CKPT_CHUNK_BYTES / row_bytes : 1;
    }
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t space = H5Screate_simple(p->ndim, dims, NULL);
    hid_t ds = -1;
    int rc = 0;
    if (dcpl < 0 || space < 0 || H5Pset_chunk(dcpl, p->ndim, chunk) < 0 ||
        H5Pset_fletcher32(dcpl) < 0) {
        rc = h5_fail(c, "cannot create dataset %s/%s", shown, p->name);
        goto done;
    }
    ds = H5Dcreate2(grp, p->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0) {
        rc = h5_fail(c, "cannot create dataset %s/%s", shown, p->name);
        goto done;
    }
    if (H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, hf) < 0)
        rc = h5_fail(c, "cannot write dataset %s/%s", shown, p->name);
done:
    if (ds >= 0 && H5Dclose(ds) < 0 && rc == 0)
        rc = h5_fail(c, "cannot write dataset %s/%s", shown, p->name);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    return rc;
}

// Every parameter-shaped tensor of `base` (backend memory, the parameter layout) as a group.
static int write_tensors(ck_ctx *c, hid_t parent, const char *name, const char *shown,
                         const pb_params *ps, const float *base, float *host, float *scratch) {
    hid_t g = make_group(c, parent, name, shown);
    if (g < 0) return -1;
    int rc = 0;
    for (int i = 0; i < ps->num && rc == 0; i++) {
        const pb_param *p = &ps->tab[i];
        ps->ops->download(host, base + p->offset, p->numel * sizeof(float));
        rc = write_tensor(c, g, shown, p, to_hf(p, host, scratch));
    }
    if (H5Gclose(g) < 0 && rc == 0) rc = h5_fail(c, "cannot close group %s", shown);
    return rc;
}

static char *config_text(const pb_config *cfg) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) pb_die(PB_EXIT_RUNTIME, "out of memory");
    config_write_ini(cfg, f);
    if (fclose(f) != 0) pb_die(PB_EXIT_RUNTIME, "out of memory");
    return text;
}

// The whole checkpoint into the file at tmp (created empty by the caller).
static int write_file(ck_ctx *c, const char *tmp, const pb_params *ps, const pb_adamw *opt,
                      const pb_ckpt_trainer_state *st, const pb_config *cfg) {
    // STRONG: closing the file closes anything left open, so nothing stays unflushed.
    // The 1.8 file format checksums the metadata too (superblock, object headers with the
    // attributes); every HDF5 since 1.8 (2008) reads it.
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return h5_fail(c, "cannot set up HDF5");
    }
    // Every HDF5 call clears the error stack: report a failure before the next call.
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0) h5_fail(c, "cannot create %s", tmp);
    H5Pclose(fapl);
    if (f < 0) return -1;

    size_t max_numel = 0;
    for (int i = 0; i < ps->num; i++)
        if (ps->tab[i].numel > max_numel) max_numel = ps->tab[i].numel;
    float *host = pb_malloc(max_numel * sizeof(float));
    float *scratch = pb_malloc(max_numel * sizeof(float));
    char *ini = config_text(cfg);
    hid_t g = -1;
    int rc = 0;

    if (write_str(c, f, "format", CKPT_FORMAT) || write_i64(c, f, "version", CKPT_VERSION) ||
        write_str(c, f, "model_family", ps->family) ||
        write_str(c, f, "pebble_version", PEBBLE_VERSION))
        goto fail;

    if ((g = make_group(c, f, "config", "/config")) < 0) goto fail;
    if (write_str(c, g, "ini", ini) || write_i64(c, g, "n_layer", cfg->n_layer) ||
        write_i64(c, g, "n_head", cfg->n_head) || write_i64(c, g, "n_embd", cfg->n_embd) ||
        write_i64(c, g, "seq_len", cfg->seq_len) || write_i64(c, g, "vocab_size", cfg->vocab_size))
        goto fail;
    if (H5Gclose(g) < 0) {
        g = -1;
        h5_fail(c, "cannot close group /config");
        goto fail;
    }

    if (write_tensors(c, f, "model", "/model", ps, ps->mem, host, scratch)) goto fail;

    if ((g = make_group(c, f, "optimizer", "/optimizer")) < 0) goto fail;
    if (write_i64(c, g, "t", (int64_t)ps->step) || write_f64(c, g, "beta1", opt->beta1) ||
        write_f64(c, g, "beta2", opt->beta2) || write_f64(c, g, "eps", opt->eps) ||
        write_f64(c, g, "weight_decay", opt->weight_decay) ||
        write_tensors(c, g, "m", "/optimizer/m", ps, ps->m, host, scratch) ||
        write_tensors(c, g, "v", "/optimizer/v", ps, ps->v, host, scratch))
        goto fail;
    if (H5Gclose(g) < 0) {
        g = -1;
        h5_fail(c, "cannot close group /optimizer");
        goto fail;
    }

    if ((g = make_group(c, f, "trainer", "/trainer")) < 0) goto fail;
    if (write_i64(c, g, "step", st->step) || write_i64(c, g, "tokens_seen", st->tokens_seen) ||
        write_u64(c, g, "seed", st->seed) ||
        write_u64(c, g, "loader_seed", st->train_loader.seed) ||
        write_u64(c, g, "loader_epoch", st->train_loader.epoch) ||
        write_u64(c, g, "loader_cursor", st->train_loader.cursor) ||
        write_f64(c, g, "lr", st->lr) || write_str(c, g, "schedule", "warmup_cosine") ||
        write_i64(c, g, "total_steps", st->total_steps) ||
        write_i64(c, g, "warmup_steps", st->warmup_steps) ||
        write_f64(c, g, "max_lr", st->max_lr) || write_f64(c, g, "min_lr_frac", st->min_lr_frac))
        goto fail;
    if (H5Gclose(g) < 0) {
        g = -1;
        h5_fail(c, "cannot close group /trainer");
        goto fail;
    }
    g = -1;

    // Flush first: a full disk shows up here or at close, and both are checked.
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) {
        h5_fail(c, "cannot write");
        goto fail;
    }
    free(host);
    free(scratch);
    free(ini);
    if (H5Fclose(f) < 0) return h5_fail(c, "cannot write");
    return 0;

fail:
    rc = -1;
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    free(host);
    free(scratch);
    free(ini);
    return rc;
}

// ----------------------------------------------------------------------------
// files and directories

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    // Some filesystems cannot fsync a directory; the rename is then as durable as it gets.
    if (rc != 0 && (errno == EINVAL || errno == ENOTSUP)) rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

// A test hook: PEBBLE_CKPT_TEST_DELAY_US pauses at the two moments a save is most exposed
// (file written but not renamed; renamed but `latest` not updated), so that the kill -9
// test lands there often.
static void test_delay(void) {
    const char *s = getenv("PEBBLE_CKPT_TEST_DELAY_US");
    if (s && *s) usleep((useconds_t)strtoul(s, NULL, 10));
}

// "ckpt_<digits>.h5" -> its step; -1 for any other name.
static long long ckpt_step_of(const char *name) {
    if (strncmp(name, "ckpt_", 5) != 0) return -1;
    const char *p = name + 5;
    long long step = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 18) step = step * 10 + (*p++ - '0'), digits++;
    if (digits < 8 || strcmp(p, ".h5") != 0) return -1;
    return step;
}

typedef struct {
    long long step;
    char name[256];
} ck_entry;

static int entry_newer_first(const void *a, const void *b) {
    long long sa = ((const ck_entry *)a)->step, sb = ((const ck_entry *)b)->step;
    return sa < sb ? 1 : sa > sb ? -1 : 0;
}

// The checkpoints in dir, newest first; *n of them. Returns NULL with errno on failure
// (ENOENT: no such directory).
static ck_entry *list_checkpoints(const char *dir, int *n) {
    DIR *d = opendir(dir);
    *n = 0;
    if (!d) return NULL;
    int cap = 16;
    ck_entry *e = pb_malloc((size_t)cap * sizeof *e);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        long long step = ckpt_step_of(de->d_name);
        if (step < 0 || strlen(de->d_name) >= sizeof e->name) continue;
        if (*n == cap) {
            cap *= 2;
            ck_entry *grown = realloc(e, (size_t)cap * sizeof *e);
            if (!grown) pb_die(PB_EXIT_RUNTIME, "out of memory");
            e = grown;
        }
        e[*n].step = step;
        snprintf(e[*n].name, sizeof e[*n].name, "%s", de->d_name);
        (*n)++;
    }
    closedir(d);
    qsort(e, (size_t)*n, sizeof *e, entry_newer_first);
    return e;
}

// Temp files of a save that was killed: one writer per run directory, so any found at the
// start of a save are garbage.
static void remove_stale_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char path[PB_PATH_MAX + 300];
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        int ours = (strncmp(de->d_name, ".ckpt_", 6) == 0 && len > 10 &&
                    strcmp(de->d_name + len - 4, ".tmp") == 0) ||
                   strcmp(de->d_name, "latest.tmp") == 0;
        if (!ours) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

// <dir>/latest <- name, atomically (write latest.tmp, fsync, rename, fsync dir).
static int write_latest(ck_ctx *c, const char *dir, const char *name) {
    char tmp[PB_PATH_MAX + 32], dst[PB_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s/latest.tmp", dir);
    snprintf(dst, sizeof dst, "%s/latest", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        ck_fail(c, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    char line[300];
    int len = snprintf(line, sizeof line, "%s\n", name);
    ssize_t w = write(fd, line, (size_t)len);
    if (w != len || fsync(fd) != 0) {
        int e = w < 0 || w == len ? errno : ENOSPC;  // a short write means the disk is full
        close(fd);
        unlink(tmp);
        ck_fail(c, "cannot write %s: %s", tmp, strerror(e));
        return -1;
    }
    if (close(fd) != 0 || rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        ck_fail(c, "cannot update %s: %s", dst, strerror(e));
        return -1;
    }
    if (fsync_dir(dir) != 0) {
        ck_fail(c, "cannot sync directory %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

// Deletes all but the newest keep_last - 1 checkpoints older than `step` (the one just
// written makes K). Newer ones (an abandoned branch of the run) are left alone.
static void prune(const char *dir, long long step, int keep_last) {
    if (keep_last <= 0) return;
    int n;
    ck_entry *e = list_checkpoints(dir, &n);
    if (!e) return;
    int kept = 0;
    char path[PB_PATH_MAX + 300];
    for (int i = 0; i < n; i++) {
        if (e[i].step >= step) continue;
        if (++kept < keep_last) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
        if (unlink(path) != 0)
            fprintf(stderr, "pebble: warning: cannot delete old checkpoint %s: %s\n", path,
                    strerror(errno));
    }
    free(e);
}

// ----------------------------------------------------------------------------
// saving

int ckpt_save(const char *dir, const pb_params *ps, const pb_adamw *opt,
              const pb_ckpt_trainer_state *st, const pb_config *cfg, int keep_last,
              char *path_out, size_t path_len, char *err, size_t errlen) {
    h5_quiet();
    char final[PB_PATH_MAX + 80], tmp[PB_PATH_MAX + 80], name[64];
    snprintf(name, sizeof name, "ckpt_%08lld.h5", (long long)st->step);
    ck_ctx c = {.path = final, .err = err, .errlen = errlen};
    if (st->step < 0 || strlen(dir) > PB_PATH_MAX) {
        snprintf(final, sizeof final, "%.*s", PB_PATH_MAX, dir);
        ck_fail(&c, "cannot save a checkpoint here (path too long or negative step)");
        return -1;
    }
    snprintf(final, sizeof final, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.ckpt_XXXXXX.tmp", dir);
    remove_stale_temps(dir);

    int fd = mkstemps(tmp, 4);
    if (fd < 0) {
        ck_fail(&c, "cannot create a file in %s: %s", dir, strerror(errno));
        return -1;
    }
    fchmod(fd, 0644);  // mkstemps makes 0600; a checkpoint is as readable as the run's logs
    if (write_file(&c, tmp, ps, opt, st, cfg) != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    // HDF5's sec2 driver never fsyncs; without this a crash could leave a renamed but
    // empty file.
    if (fsync(fd) != 0) {
        ck_fail(&c, "cannot sync %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0) {
        ck_fail(&c, "cannot close %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    test_delay();
    if (rename(tmp, final) != 0) {
        ck_fail(&c, "cannot rename %s into place: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (fsync_dir(dir) != 0) {
        ck_fail(&c, "cannot sync directory %s: %s", dir, strerror(errno));
        return -1;
    }
    test_delay();
    if (write_latest(&c, dir, name) != 0) return -1;
    prune(dir, st->step, keep_last);
    if (path_out) snprintf(path_out, path_len, "%s", final);
    return 0;
}

// ----------------------------------------------------------------------------
// reading attributes

// Opens the attribute and checks its class; returns -1 (reported) when missing or wrong.
static hid_t open_attr(ck_ctx *c, hid_t obj, const char *where, const char *name,
                       H5T_class_t want) {
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) {
        h5_fail(c, "cannot read attribute '%s' of %s", name, where);
        return -1;
    }
    if (ex == 0) {
        ck_fail(c, "missing attribute '%s' of %s", name, where);
        return -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) {
        h5_fail(c, "cannot read attribute '%s' of %s", name, where);
        return -1;
    }
    hid_t t = H5Aget_type(a);
    hid_t s = H5Aget_space(a);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t npoints = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (cls != want || npoints != 1) {
        static const char *const kinds[] = {[H5T_INTEGER] = "an integer", [H5T_FLOAT] = "a number",
                                            [H5T_STRING] = "a string"};
        ck_fail(c, "attribute '%s' of %s is not %s", name, where,
                want <= H5T_STRING && kinds[want] ? kinds[want] : "of the expected type");
        H5Aclose(a);
        return -1;
    }
    return a;
}

static int read_num(ck_ctx *c, hid_t obj, const char *where, const char *name,
                    H5T_class_t cls, hid_t memtype, void *out) {
    hid_t a = open_attr(c, obj, where, name, cls);
    if (a < 0) return -1;
    int rc = 0;
    if (H5Aread(a, memtype, out) < 0)
        rc = h5_fail(c, "cannot read attribute '%s' of %s", name, where);
    H5Aclose(a);
    return rc;
}

static int read_i64(ck_ctx *c, hid_t obj, const char *where, const char *name, int64_t *out) {
    return read_num(c, obj, where, name, H5T_INTEGER, H5T_NATIVE_INT64, out);
}
static int read_u64(ck_ctx *c, hid_t obj, const char *where, const char *name, uint64_t *out) {
    return read_num(c, obj, where, name, H5T_INTEGER, H5T_NATIVE_UINT64, out);
}
static int read_f64(ck_ctx *c, hid_t obj, const char *where, const char *name, double *out) {
    return read_num(c, obj, where, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, out);
}

// A string attribute, variable-length or fixed (as other writers make them); *out is
// malloc'd.
static int read_str(ck_ctx *c, hid_t obj, const char *where, const char *name, char **out) {
    *out = NULL;
    hid_t a = open_attr(c, obj, where, name, H5T_STRING);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    hid_t mt = -1;
    int rc = -1;
    htri_t vlen = ft >= 0 ? H5Tis_variable_str(ft) : -1;
    if (vlen < 0) goto done;
    // The memory type must carry the file's character set, or HDF5 finds no conversion.
    mt = H5Tcopy(H5T_C_S1);
    H5T_cset_t cset = H5Tget_cset(ft);
    if (mt < 0 || cset < 0 || H5Tset_cset(mt, cset) < 0) goto done;
    if (vlen) {
        char *s = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &s) < 0) goto done;
        size_t len = s ? strlen(s) : 0;
        *out = pb_malloc(len + 1);
        memcpy(*out, s ? s : "", len + 1);
        H5free_memory(s);
    } else {
        size_t size = H5Tget_size(ft);
        if (size == 0 || H5Tset_size(mt, size + 1) < 0 ||
            H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0)
            goto done;
        *out = pb_calloc(size + 1, 1);
        if (H5Aread(a, mt, *out) < 0) {
            free(*out);
            *out = NULL;
            goto done;
        }
    }
    rc = 0;
done:
    if (rc != 0) h5_fail(c, "cannot read attribute '%s' of %s", name, where);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

// ----------------------------------------------------------------------------
// opening and checking a file

// 1 if the link path (e.g. "optimizer/m") exists, walking one component at a time as
// H5Lexists requires; 0 if not; -1 (reported) on an HDF5 error.
static int link_exists(ck_ctx *c, hid_t f, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf;; p++) {
        if (*p == '/' || *p == '\0') {
            char ch = *p;
            *p = '\0';
            htri_t ex = H5Lexists(f, buf, H5P_DEFAULT);
            if (ex < 0) return h5_fail(c, "cannot look up /%s", buf);
            if (ex == 0) return 0;
            *p = ch;
            if (ch == '\0') return 1;
        }
    }
}

static hid_t open_group(ck_ctx *c, hid_t f, const char *path) {
    int ex = link_exists(c, f, path);
    if (ex < 0) return -1;
    if (ex == 0) {
        ck_fail(c, "missing group /%s", path);
        return -1;
    }
    hid_t g = H5Gopen2(f, path, H5P_DEFAULT);
    if (g < 0) h5_fail(c, "cannot open group /%s", path);
    return g;
}

// Opens path as a pebble checkpoint of format version 1; its model family into family.
static hid_t open_checkpoint(ck_ctx *c, const char *path, char *fam, size_t famlen) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        ck_fail(c, "cannot open checkpoint: %s", strerror(errno));
        return -1;
    }
    if (S_ISDIR(sb.st_mode)) {
        ck_fail(c, "is a directory, not a checkpoint file");
        return -1;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        ck_fail(c, "cannot open checkpoint: %s", strerror(errno));
        return -1;
    }
    close(fd);
    htri_t is = H5Fis_hdf5(path);
    if (is == 0) {
        H5Eclear2(H5E_DEFAULT);
        ck_fail(c, "not an HDF5 file (not a pebble checkpoint, or its start is damaged)");
        return -1;
    }
    if (is < 0) {
        h5_fail(c, "cannot open as HDF5");
        return -1;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        h5_fail(c, "cannot set up HDF5");
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f < 0) h5_fail(c, "damaged HDF5 file");
    H5Pclose(fapl);
    if (f < 0) return -1;
    char *format = NULL, *family = NULL;
    int64_t version = 0;
    htri_t has_format = H5Aexists(f, "format");
    if (has_format < 0) {
        h5_fail(c, "cannot read the file's attributes");
        goto fail;
    }
    if (has_format == 0) {
        ck_fail(c, "not a pebble checkpoint (an HDF5 file without the 'format' attribute)");
        goto fail;
    }
    if (read_str(c, f, "the file", "format", &format)) goto fail;
    if (strcmp(format, CKPT_FORMAT) != 0) {
        ck_fail(c, "not a pebble checkpoint (format '%.64s', expected '%s')", format, CKPT_FORMAT);
        goto fail;
    }
    if (read_i64(c, f, "the file", "version", &version)) goto fail;
    if (version != CKPT_VERSION) {
        ck_fail(c, "checkpoint format version %lld; this pebble reads version %d",
                (long long)version, CKPT_VERSION);
        goto fail;
    }
    if (read_str(c, f, "the file", "model_family", &family)) goto fail;
    if (fam) snprintf(fam, famlen, "%s", family);
    free(format);
    free(family);
    return f;
fail:
    free(format);
    free(family);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return -1;
}

static int read_model_config(ck_ctx *c, hid_t f, ckpt_model_info *mi, char **ini) {
    hid_t g = open_group(c, f, "config");
    if (g < 0) return -1;
    int64_t v[5];
    static const char *const keys[5] = {"n_layer", "n_head", "n_embd", "seq_len", "vocab_size"};
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++) {
        rc = read_i64(c, g, "/config", keys[i], &v[i]);
        if (rc == 0 && (v[i] < 1 || v[i] > (1 << 30))) {
            ck_fail(c, "/config attribute %s = %lld is out of range", keys[i], (long long)v[i]);
            rc = -1;
        }
    }
    if (rc == 0 && ini) rc = read_str(c, g, "/config", "ini", ini);
    H5Gclose(g);
    if (rc != 0) return -1;
    mi->n_layer = (int)v[0];
    mi->n_head = (int)v[1];
    mi->n_embd = (int)v[2];
    mi->seq_len = (int)v[3];
    mi->vocab_size = (int)v[4];
    return 0;
}

// ----------------------------------------------------------------------------
// reading tensors

typedef struct {
    const pb_params *ps;
    char extra[128];
} extra_search;

static herr_t find_extra(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    extra_search *s = data;
    if (params_find(s->ps, name)) return 0;
    snprintf(s->extra, sizeof s->extra, "%s", name);
    return 1;  // stop
}

// Reads group `path` (every parameter of ps, Hugging Face layout) into dst, which has the
// internal layout. file_mi is the checkpoint's own model shape, for the messages.
static int read_tensors(ck_ctx *c, hid_t f, const char *path, const pb_params *ps,
                        const ckpt_model_info *file_mi, float *dst, float *scratch) {
    char theirs[160];
    const char *ours = ps->shape;
    model_text(file_mi, theirs, sizeof theirs);
    hid_t g = open_group(c, f, path);
    if (g < 0) return -1;
    int rc = 0;
    for (int i = 0; i < ps->num && rc == 0; i++) {
        const pb_param *p = &ps->tab[i];
        htri_t ex = H5Lexists(g, p->name, H5P_DEFAULT);
        if (ex < 0) {
            rc = h5_fail(c, "cannot look up /%s/%s", path, p->name);
            break;
        }
        if (ex == 0) {
            ck_fail(c, "missing dataset /%s/%s (the checkpoint is %s; the model %s)", path,
                    p->name, theirs, ours);
            rc = -1;
            break;
        }
        hid_t ds = H5Dopen2(g, p->name, H5P_DEFAULT);
        if (ds < 0) {
            rc = h5_fail(c, "cannot open dataset /%s/%s", path, p->name);
            break;
        }
        hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
        hsize_t dims[8] = {0};
        int nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
        if (nd >= 0 && nd <= 8) H5Sget_simple_extent_dims(space, dims, NULL);
        H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
        size_t tsize = type >= 0 ? H5Tget_size(type) : 0;
        char want[48];
        shape_text(p, want, sizeof want);
        if (space < 0 || type < 0 || nd < 0) {
            rc = h5_fail(c, "cannot read dataset /%s/%s", path, p->name);
        } else if (nd != p->ndim || dims[0] != (hsize_t)p->hf_shape[0] ||
                   (nd == 2 && dims[1] != (hsize_t)p->hf_shape[1])) {
            char got[96] = "(";
            for (int d = 0; d < nd && d < 8; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", d ? ", " : "",
                         (unsigned long long)dims[d]);
            strcat(got, ")");
            ck_fail(c, "dataset /%s/%s has shape %s, the model expects %s (the checkpoint is "
                    "%s; the model %s)", path, p->name, got, want, theirs, ours);
            rc = -1;
        } else if (cls != H5T_FLOAT || tsize != 4) {
            ck_fail(c, "dataset /%s/%s is not float32", path, p->name);
            rc = -1;
        } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, scratch) < 0) {
            rc = h5_fail(c, "cannot read dataset /%s/%s", path, p->name);
        } else {
            from_hf(p, scratch, dst + p->offset);
        }
        if (type >= 0) H5Tclose(type);
        if (space >= 0) H5Sclose(space);
        H5Dclose(ds);
    }
    if (rc == 0) {
        // Every dataset we need is there; one more (a checkpoint with more layers) is as
        // wrong as one fewer.
        H5G_info_t info;
        if (H5Gget_info(g, &info) < 0) {
            rc = h5_fail(c, "cannot list /%s", path);
        } else if (info.nlinks != (hsize_t)ps->num) {
            extra_search s = {.ps = ps, .extra = ""};
            hsize_t idx = 0;
            H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, find_extra, &s);
            H5Eclear2(H5E_DEFAULT);
            ck_fail(c, "unexpected dataset /%s/%s: /%s has %llu entries, the model %d "
                    "(the checkpoint is %s; the model %s)", path, s.extra[0] ? s.extra : "?",
                    path, (unsigned long long)info.nlinks, ps->num, theirs, ours);
            rc = -1;
        }
    }
    H5Gclose(g);
    return rc;
}

// ----------------------------------------------------------------------------
// loading

// Opens path and checks its family against want (NULL: any); fills mi when not NULL.
static hid_t open_family(ck_ctx *c, const char *path, const char *want, ckpt_model_info *mi,
                         char **ini) {
    ckpt_model_info tmp;
    memset(&tmp, 0, sizeof tmp);
    hid_t f = open_checkpoint(c, path, tmp.family, sizeof tmp.family);
    if (f < 0) return -1;
    if (want && strcmp(tmp.family, want) != 0) {
        ck_fail(c, "a checkpoint of model family '%s'; this model is %s", tmp.family, want);
    } else if (read_model_config(c, f, &tmp, ini) == 0) {
        if (mi) *mi = tmp;
        return f;
    }
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return -1;
}

int ckpt_load(const char *path, pb_params *ps, int with_optimizer, pb_ckpt_trainer_state *st,
              char *err, size_t errlen) {
    h5_quiet();
    ck_ctx c = {.path = path, .err = err, .errlen = errlen};
    ckpt_model_info file_mi;
    hid_t f = open_family(&c, path, ps->family, &file_mi, NULL);
    if (f < 0) return -1;

    float *params = NULL, *mom1 = NULL, *mom2 = NULL, *scratch = NULL;
    int64_t t = 0;
    pb_ckpt_trainer_state tmp_st;
    memset(&tmp_st, 0, sizeof tmp_st);
    hid_t g = -1;
    size_t max_numel = 0;
    for (int i = 0; i < ps->num; i++)
        if (ps->tab[i].numel > max_numel) max_numel = ps->tab[i].numel;
    scratch = pb_malloc(max_numel * sizeof(float));
    params = pb_malloc(ps->num_floats * sizeof(float));
    if (read_tensors(&c, f, "model", ps, &file_mi, params, scratch)) goto fail;

    if (with_optimizer) {
        PB_ASSERT(ps->m && ps->v);  // adamw_init allocated them
        mom1 = pb_malloc(ps->num_floats * sizeof(float));
        mom2 = pb_malloc(ps->num_floats * sizeof(float));
        if ((g = open_group(&c, f, "optimizer")) < 0) goto fail;
        if (read_i64(&c, g, "/optimizer", "t", &t)) goto fail;
        if (t < 0 || t > INT32_MAX) {
            ck_fail(&c, "/optimizer attribute t = %lld is out of range", (long long)t);
            goto fail;
        }
        H5Gclose(g);
        g = -1;
        if (read_tensors(&c, f, "optimizer/m", ps, &file_mi, mom1, scratch) ||
            read_tensors(&c, f, "optimizer/v", ps, &file_mi, mom2, scratch))
            goto fail;
    }
    if (st) {
        if ((g = open_group(&c, f, "trainer")) < 0) goto fail;
        const char *w = "/trainer";
        if (read_i64(&c, g, w, "step", &tmp_st.step) ||
            read_i64(&c, g, w, "tokens_seen", &tmp_st.tokens_seen) ||
            read_u64(&c, g, w, "seed", &tmp_st.seed) ||
            read_u64(&c, g, w, "loader_seed", &tmp_st.train_loader.seed) ||
            read_u64(&c, g, w, "loader_epoch", &tmp_st.train_loader.epoch) ||
            read_u64(&c, g, w, "loader_cursor", &tmp_st.train_loader.cursor) ||
            read_f64(&c, g, w, "lr", &tmp_st.lr) ||
            read_i64(&c, g, w, "total_steps", &tmp_st.total_steps) ||
            read_i64(&c, g, w, "warmup_steps", &tmp_st.warmup_steps) ||
            read_f64(&c, g, w, "max_lr", &tmp_st.max_lr) ||
            read_f64(&c, g, w, "min_lr_frac", &tmp_st.min_lr_frac))
            goto fail;
        if (tmp_st.step < 0 || tmp_st.tokens_seen < 0) {
            ck_fail(&c, "/trainer: negative step or tokens_seen");
            goto fail;
        }
        H5Gclose(g);
        g = -1;
    }
    if (H5Fclose(f) < 0) {
        f = -1;
        h5_fail(&c, "cannot close");
        goto fail;
    }

    // Everything read and verified: only now does the store change. The step count goes
    // with the moments (AdamW's t); the rounding of low-precision weights follows it, so a
    // resumed run rounds as the uninterrupted one did.
    size_t bytes = ps->num_floats * sizeof(float);
    ps->ops->upload(ps->mem, params, bytes);
    if (with_optimizer) {
        ps->ops->upload(ps->m, mom1, bytes);
        ps->ops->upload(ps->v, mom2, bytes);
        ps->step = (uint64_t)t;
    }
    if (st) *st = tmp_st;
    free(params);
    free(mom1);
    free(mom2);
    free(scratch);
    return 0;

fail:
    if (g >= 0) H5Gclose(g);
    if (f >= 0) H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    free(params);
    free(mom1);
    free(mom2);
    free(scratch);
    return -1;
}

int ckpt_read_config(const char *path, char **ini, ckpt_model_info *mi, char *err,
                     size_t errlen) {
    h5_quiet();
    ck_ctx c = {.path = path, .err = err, .errlen = errlen};
    if (ini) *ini = NULL;
    hid_t f = open_family(&c, path, NULL, mi, ini);
    if (f < 0) return -1;
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return 0;
}


int ckpt_load_config(const char *path, pb_config *cfg, char *err, size_t errlen) {
    char *ini = NULL;
    if (ckpt_read_config(path, &ini, NULL, err, errlen) != 0) return -1;
    // config_load_file reads a file: hand it the text through a private temporary one.
    const char *dir = getenv("TMPDIR");
    char tmp[PB_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/pebble-config-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create a temporary file for its config: %s", path,
                 strerror(errno));
        free(ini);
        return -1;
    }
    size_t len = strlen(ini);
    ssize_t w = write(fd, ini, len);
    int e = errno;
    free(ini);
    if (close(fd) != 0 || w != (ssize_t)len) {
        snprintf(err, errlen, "%s: cannot write a temporary file for its config: %s", path,
                 strerror(w < 0 ? e : ENOSPC));
        unlink(tmp);
        return -1;
    }
    char inner[1024];
    int rc = config_load_file(cfg, tmp, inner, sizeof inner);
    unlink(tmp);
    if (rc != 0) {
        // "<tmp>:12: unknown key ..." -> "<path>: /config:12: unknown key ..."
        size_t tl = strlen(tmp);
        const char *rest = strncmp(inner, tmp, tl) == 0 ? inner + tl : inner;
        snprintf(err, errlen, "%s: /config%s%s", path, rest[0] == ':' ? "" : ": ", rest);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// finding the newest checkpoint

// Cheap validity: a pebble checkpoint with its groups. (Checksums are verified by the load.)
static int looks_valid(const char *path) {
    char ignored[512];
    ck_ctx c = {.path = path, .err = ignored, .errlen = sizeof ignored};
    hid_t f = open_checkpoint(&c, path, NULL, 0);
    if (f < 0) return 0;
    int ok = link_exists(&c, f, "config") == 1 && link_exists(&c, f, "model") == 1 &&
             link_exists(&c, f, "optimizer/m") == 1 && link_exists(&c, f, "optimizer/v") == 1 &&
             link_exists(&c, f, "trainer") == 1;
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return ok;
}

static char *dup_path(const char *s) {
    char *d = strdup(s);
    if (!d) pb_die(PB_EXIT_RUNTIME, "out of memory");
    return d;
}

int ckpt_candidates(const char *dir, char ***out, char *err, size_t errlen) {
    *out = NULL;
    int n;
    ck_entry *e = list_checkpoints(dir, &n);
    if (!e) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "%s: cannot list checkpoints: %s", dir, strerror(errno));
        return -1;
    }
    // `latest` first: after a resume from an older file, newer ones of the abandoned
    // branch may still be in dir, and `latest` names the run's own newest.
    char name[256] = "", path[PB_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/latest", dir);
    FILE *fl = fopen(path, "r");
    if (fl) {
        if (fgets(name, sizeof name, fl)) name[strcspn(name, "\r\n")] = '\0';
        fclose(fl);
    }
    // Only a name listed in dir counts: `latest` never points outside its directory.
    int first = -1;
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0) first = i;
    char **paths = pb_malloc((size_t)(n ? n : 1) * sizeof *paths);
    int k = 0;
    if (first >= 0) {
        snprintf(path, sizeof path, "%s/%s", dir, e[first].name);
        paths[k++] = dup_path(path);
    }
    for (int i = 0; i < n; i++) {
        if (i == first) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
        paths[k++] = dup_path(path);
    }
    free(e);
    *out = paths;
    return n;
}

void ckpt_free_candidates(char **paths, int n) {
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

int ckpt_find_latest(const char *dir, char *out, size_t outlen, char *err, size_t errlen) {
    h5_quiet();
    char **paths;
    int n = ckpt_candidates(dir, &paths, err, errlen);
    if (n < 0) return -1;
    int rc = 1;
    for (int i = 0; i < n && rc == 1; i++) {
        if (!looks_valid(paths[i])) continue;
        snprintf(out, outlen, "%s", paths[i]);
        rc = 0;
    }
    ckpt_free_candidates(paths, n);
    return rc;
}

int ckpt_resume_auto(const char *dir, ckpt_try_fn try_load, void *user, FILE *skipped,
                     char *out, size_t outlen, char *err, size_t errlen) {
    char **paths;
    int n = ckpt_candidates(dir, &paths, err, errlen);
    if (n < 0) return -2;
    if (n == 0) return 1;
    char why[1024], newest[1024] = "";
    for (int i = 0; i < n; i++) {
        if (try_load(paths[i], user, why, sizeof why) == 0) {
            snprintf(out, outlen, "%s", paths[i]);
            ckpt_free_candidates(paths, n);
            return 0;
        }
        if (!newest[0]) snprintf(newest, sizeof newest, "%s", why);
        // why names the file: "<path>: <what is wrong>"
        if (skipped) {
            fflush(stdout);
            fprintf(skipped, "pebble: skipping checkpoint %s\n", why);
            fflush(skipped);
        }
    }
    ckpt_free_candidates(paths, n);
    if (skipped)
        snprintf(err, errlen, "--resume auto: no checkpoint in %s loads (%d tried, each "
                 "skipped above)", dir, n);
    else
        snprintf(err, errlen, "--resume auto: no checkpoint in %s loads (%d tried; the "
                 "newest: %s)", dir, n, newest);
    return -1;
}
