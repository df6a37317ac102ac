// checkpoint.c: HDF5 checkpoints (see checkpoint.h): the file's contents, written and read
// back all or nothing with every checksum and shape verified. The HDF5 helpers are in
// ckpt_h5.c, the run directory's files (atomic replacement, `latest`, pruning, finding the
// newest) in ckpt_files.c.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "train/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/common.h"
#include "train/ckpt_h5.h"

// Chunks of at most this many bytes (whole rows): Fletcher32 needs a chunked layout, and
// one checksum per few MiB localises damage without many chunks.
#define CKPT_CHUNK_BYTES (4u << 20)

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

void ckpt_param_from_hf(const pb_param *p, const float *hf, float *internal) {
    from_hf(p, hf, internal);
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
        rc = ck_h5_fail(c, "cannot create dataset %s/%s", shown, p->name);
        goto done;
    }
    ds = H5Dcreate2(grp, p->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0) {
        rc = ck_h5_fail(c, "cannot create dataset %s/%s", shown, p->name);
        goto done;
    }
    if (H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, hf) < 0)
        rc = ck_h5_fail(c, "cannot write dataset %s/%s", shown, p->name);
done:
    if (ds >= 0 && H5Dclose(ds) < 0 && rc == 0)
        rc = ck_h5_fail(c, "cannot write dataset %s/%s", shown, p->name);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    return rc;
}

// Every parameter-shaped tensor of `base` (backend memory, the parameter layout) as a group.
static int write_tensors(ck_ctx *c, hid_t parent, const char *name, const char *shown,
                         const pb_params *ps, const float *base, float *host, float *scratch) {
    hid_t g = ck_make_group(c, parent, name, shown);
    if (g < 0) return -1;
    int rc = 0;
    for (int i = 0; i < ps->num && rc == 0; i++) {
        const pb_param *p = &ps->tab[i];
        ps->ops->download(host, base + p->offset, p->numel * sizeof(float));
        rc = write_tensor(c, g, shown, p, to_hf(p, host, scratch));
    }
    if (H5Gclose(g) < 0 && rc == 0) rc = ck_h5_fail(c, "cannot close group %s", shown);
    return rc;
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
        return ck_h5_fail(c, "cannot set up HDF5");
    }
    // Every HDF5 call clears the error stack: report a failure before the next call.
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0) ck_h5_fail(c, "cannot create %s", tmp);
    H5Pclose(fapl);
    if (f < 0) return -1;

    size_t max_numel = 0;
    for (int i = 0; i < ps->num; i++)
        if (ps->tab[i].numel > max_numel) max_numel = ps->tab[i].numel;
    float *host = pb_malloc(max_numel * sizeof(float));
    float *scratch = pb_malloc(max_numel * sizeof(float));
    char *ini = config_ini_text(cfg);
    hid_t g = -1;
    int rc = 0;

    if (ck_write_str(c, f, "format", CKPT_FORMAT) || ck_write_i64(c, f, "version", CKPT_VERSION) ||
        ck_write_str(c, f, "model_family", ps->family) ||
        ck_write_str(c, f, "pebble_version", PEBBLE_VERSION))
        goto fail;

    if ((g = ck_make_group(c, f, "config", "/config")) < 0) goto fail;
    if (ck_write_str(c, g, "ini", ini) || ck_write_i64(c, g, "n_layer", cfg->n_layer) ||
        ck_write_i64(c, g, "n_head", cfg->n_head) || ck_write_i64(c, g, "n_embd", cfg->n_embd) ||
        ck_write_i64(c, g, "seq_len", cfg->seq_len) || ck_write_i64(c, g, "vocab_size", cfg->vocab_size))
        goto fail;
    if (H5Gclose(g) < 0) {
        g = -1;
        ck_h5_fail(c, "cannot close group /config");
        goto fail;
    }

    if (write_tensors(c, f, "model", "/model", ps, ps->mem, host, scratch)) goto fail;

    if ((g = ck_make_group(c, f, "optimizer", "/optimizer")) < 0) goto fail;
    if (ck_write_i64(c, g, "t", (int64_t)ps->step) || ck_write_f64(c, g, "beta1", opt->beta1) ||
        ck_write_f64(c, g, "beta2", opt->beta2) || ck_write_f64(c, g, "eps", opt->eps) ||
        ck_write_f64(c, g, "weight_decay", opt->weight_decay) ||
        write_tensors(c, g, "m", "/optimizer/m", ps, ps->m, host, scratch) ||
        write_tensors(c, g, "v", "/optimizer/v", ps, ps->v, host, scratch))
        goto fail;
    if (H5Gclose(g) < 0) {
        g = -1;
        ck_h5_fail(c, "cannot close group /optimizer");
        goto fail;
    }

    if ((g = ck_make_group(c, f, "trainer", "/trainer")) < 0) goto fail;
    if (ck_write_i64(c, g, "step", st->step) || ck_write_i64(c, g, "tokens_seen", st->tokens_seen) ||
        ck_write_u64(c, g, "seed", st->seed) ||
        ck_write_u64(c, g, "loader_seed", st->train_loader.seed) ||
        ck_write_u64(c, g, "loader_epoch", st->train_loader.epoch) ||
        ck_write_u64(c, g, "loader_cursor", st->train_loader.cursor) ||
        ck_write_f64(c, g, "lr", st->lr) || ck_write_str(c, g, "schedule", "warmup_cosine") ||
        ck_write_i64(c, g, "total_steps", st->total_steps) ||
        ck_write_i64(c, g, "warmup_steps", st->warmup_steps) ||
        ck_write_f64(c, g, "max_lr", st->max_lr) || ck_write_f64(c, g, "min_lr_frac", st->min_lr_frac))
        goto fail;
    if (H5Gclose(g) < 0) {
        g = -1;
        ck_h5_fail(c, "cannot close group /trainer");
        goto fail;
    }
    g = -1;

    // Flush first: a full disk shows up here or at close, and both are checked.
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) {
        ck_h5_fail(c, "cannot write");
        goto fail;
    }
    free(host);
    free(scratch);
    free(ini);
    if (H5Fclose(f) < 0) return ck_h5_fail(c, "cannot write");
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
// saving

// Writes the checkpoint into a temporary file in dir, syncs it and renames it to final,
// then syncs dir: a reader sees the old file or the whole new one, never a part.
static int save_file(ck_ctx *c, const char *dir, const char *final, const pb_params *ps,
                     const pb_adamw *opt, const pb_ckpt_trainer_state *st,
                     const pb_config *cfg) {
    char tmp[PB_PATH_MAX + 80];
    snprintf(tmp, sizeof tmp, "%s/.ckpt_XXXXXX.tmp", dir);
    ck_remove_stale_temps(dir);
    int fd = mkstemps(tmp, 4);
    if (fd < 0) {
        ck_fail(c, "cannot create a file in %s: %s", dir, strerror(errno));
        return -1;
    }
    fchmod(fd, 0644);  // mkstemps makes 0600; a checkpoint is as readable as the run's logs
    if (write_file(c, tmp, ps, opt, st, cfg) != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    // HDF5's sec2 driver never fsyncs; without this a crash could leave a renamed but
    // empty file.
    if (fsync(fd) != 0) {
        ck_fail(c, "cannot sync %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0) {
        ck_fail(c, "cannot close %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    ck_test_delay();
    if (rename(tmp, final) != 0) {
        ck_fail(c, "cannot rename %s into place: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (ck_fsync_dir(dir) != 0) {
        ck_fail(c, "cannot sync directory %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int ckpt_save(const char *dir, const pb_params *ps, const pb_adamw *opt,
              const pb_ckpt_trainer_state *st, const pb_config *cfg, int keep_last,
              char *path_out, size_t path_len, char *err, size_t errlen) {
    ck_h5_quiet();
    char final[PB_PATH_MAX + 80], name[64];
    snprintf(name, sizeof name, "ckpt_%08lld.h5", (long long)st->step);
    ck_ctx c = {.path = final, .err = err, .errlen = errlen};
    if (st->step < 0 || strlen(dir) > PB_PATH_MAX) {
        snprintf(final, sizeof final, "%.*s", PB_PATH_MAX, dir);
        ck_fail(&c, "cannot save a checkpoint here (path too long or negative step)");
        return -1;
    }
    snprintf(final, sizeof final, "%s/%s", dir, name);
    if (save_file(&c, dir, final, ps, opt, st, cfg) != 0) return -1;
    ck_test_delay();
    if (ck_write_latest(&c, dir, name) != 0) return -1;
    ck_prune(dir, st->step, keep_last);
    if (path_out) snprintf(path_out, path_len, "%s", final);
    return 0;
}

int ckpt_save_as(const char *path, const pb_params *ps, const pb_adamw *opt,
                 const pb_ckpt_trainer_state *st, const pb_config *cfg, char *err,
                 size_t errlen) {
    ck_h5_quiet();
    ck_ctx c = {.path = path, .err = err, .errlen = errlen};
    char dir[PB_PATH_MAX + 80];
    if (strlen(path) > PB_PATH_MAX) {
        ck_fail(&c, "path too long");
        return -1;
    }
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) ? (int)(slash - path) : 1, path);
    else snprintf(dir, sizeof dir, ".");
    return save_file(&c, dir, path, ps, opt, st, cfg);
}

hid_t ck_open_checkpoint(ck_ctx *c, const char *path, char *fam, size_t famlen) {
    ck_h5_quiet();
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
        ck_h5_fail(c, "cannot open as HDF5");
        return -1;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        ck_h5_fail(c, "cannot set up HDF5");
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f < 0) ck_h5_fail(c, "damaged HDF5 file");
    H5Pclose(fapl);
    if (f < 0) return -1;
    char *format = NULL, *family = NULL;
    int64_t version = 0;
    htri_t has_format = H5Aexists(f, "format");
    if (has_format < 0) {
        ck_h5_fail(c, "cannot read the file's attributes");
        goto fail;
    }
    if (has_format == 0) {
        ck_fail(c, "not a pebble checkpoint (an HDF5 file without the 'format' attribute)");
        goto fail;
    }
    if (ck_read_str(c, f, "the file", "format", &format)) goto fail;
    if (strcmp(format, CKPT_FORMAT) != 0) {
        ck_fail(c, "not a pebble checkpoint (format '%.64s', expected '%s')", format, CKPT_FORMAT);
        goto fail;
    }
    if (ck_read_i64(c, f, "the file", "version", &version)) goto fail;
    if (version != CKPT_VERSION) {
        ck_fail(c, "checkpoint format version %lld; this pebble reads version %d",
                (long long)version, CKPT_VERSION);
        goto fail;
    }
    if (ck_read_str(c, f, "the file", "model_family", &family)) goto fail;
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
    hid_t g = ck_open_group(c, f, "config");
    if (g < 0) return -1;
    int64_t v[5];
    static const char *const keys[5] = {"n_layer", "n_head", "n_embd", "seq_len", "vocab_size"};
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++) {
        rc = ck_read_i64(c, g, "/config", keys[i], &v[i]);
        if (rc == 0 && (v[i] < 1 || v[i] > (1 << 30))) {
            ck_fail(c, "/config attribute %s = %lld is out of range", keys[i], (long long)v[i]);
            rc = -1;
        }
    }
    if (rc == 0 && ini) rc = ck_read_str(c, g, "/config", "ini", ini);
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
// init: a new run's start (ckpt_load_init): a head tensor (pb_param.head) the file lacks is
// counted in *skipped and left as dst holds it, and the file's other datasets are ignored.
static int read_tensors(ck_ctx *c, hid_t f, const char *path, const pb_params *ps,
                        const ckpt_model_info *file_mi, float *dst, float *scratch, int init,
                        int *skipped) {
    char theirs[160];
    const char *ours = ps->shape;
    model_text(file_mi, theirs, sizeof theirs);
    hid_t g = ck_open_group(c, f, path);
    if (g < 0) return -1;
    int rc = 0;
    for (int i = 0; i < ps->num && rc == 0; i++) {
        const pb_param *p = &ps->tab[i];
        htri_t ex = H5Lexists(g, p->name, H5P_DEFAULT);
        if (ex < 0) {
            rc = ck_h5_fail(c, "cannot look up /%s/%s", path, p->name);
            break;
        }
        if (ex == 0 && init && p->head) {
            (*skipped)++;
            continue;
        }
        if (ex == 0) {
            ck_fail(c, "missing dataset /%s/%s (the checkpoint is %s; the model %s)", path,
                    p->name, theirs, ours);
            rc = -1;
            break;
        }
        hid_t ds = H5Dopen2(g, p->name, H5P_DEFAULT);
        if (ds < 0) {
            rc = ck_h5_fail(c, "cannot open dataset /%s/%s", path, p->name);
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
            rc = ck_h5_fail(c, "cannot read dataset /%s/%s", path, p->name);
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
            rc = ck_h5_fail(c, "cannot read dataset /%s/%s", path, p->name);
        } else {
            from_hf(p, scratch, dst + p->offset);
        }
        if (type >= 0) H5Tclose(type);
        if (space >= 0) H5Sclose(space);
        H5Dclose(ds);
    }
    if (rc == 0 && !init) {
        // Every dataset we need is there; one more (a checkpoint with more layers) is as
        // wrong as one fewer.
        H5G_info_t info;
        if (H5Gget_info(g, &info) < 0) {
            rc = ck_h5_fail(c, "cannot list /%s", path);
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
    hid_t f = ck_open_checkpoint(c, path, tmp.family, sizeof tmp.family);
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

static int load(const char *path, pb_params *ps, int with_optimizer, pb_ckpt_trainer_state *st,
                int init, int *skipped, char *err, size_t errlen) {
    ck_h5_quiet();
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
    // tensors an init leaves alone keep the weights the store holds
    if (init) ps->ops->download(params, ps->mem, ps->num_floats * sizeof(float));
    if (read_tensors(&c, f, "model", ps, &file_mi, params, scratch, init, skipped)) goto fail;

    if (with_optimizer) {
        PB_ASSERT(ps->m && ps->v);  // adamw_init allocated them
        mom1 = pb_malloc(ps->num_floats * sizeof(float));
        mom2 = pb_malloc(ps->num_floats * sizeof(float));
        if ((g = ck_open_group(&c, f, "optimizer")) < 0) goto fail;
        if (ck_read_i64(&c, g, "/optimizer", "t", &t)) goto fail;
        if (t < 0 || t > INT32_MAX) {
            ck_fail(&c, "/optimizer attribute t = %lld is out of range", (long long)t);
            goto fail;
        }
        H5Gclose(g);
        g = -1;
        if (read_tensors(&c, f, "optimizer/m", ps, &file_mi, mom1, scratch, 0, NULL) ||
            read_tensors(&c, f, "optimizer/v", ps, &file_mi, mom2, scratch, 0, NULL))
            goto fail;
    }
    if (st) {
        if ((g = ck_open_group(&c, f, "trainer")) < 0) goto fail;
        const char *w = "/trainer";
        if (ck_read_i64(&c, g, w, "step", &tmp_st.step) ||
            ck_read_i64(&c, g, w, "tokens_seen", &tmp_st.tokens_seen) ||
            ck_read_u64(&c, g, w, "seed", &tmp_st.seed) ||
            ck_read_u64(&c, g, w, "loader_seed", &tmp_st.train_loader.seed) ||
            ck_read_u64(&c, g, w, "loader_epoch", &tmp_st.train_loader.epoch) ||
            ck_read_u64(&c, g, w, "loader_cursor", &tmp_st.train_loader.cursor) ||
            ck_read_f64(&c, g, w, "lr", &tmp_st.lr) ||
            ck_read_i64(&c, g, w, "total_steps", &tmp_st.total_steps) ||
            ck_read_i64(&c, g, w, "warmup_steps", &tmp_st.warmup_steps) ||
            ck_read_f64(&c, g, w, "max_lr", &tmp_st.max_lr) ||
            ck_read_f64(&c, g, w, "min_lr_frac", &tmp_st.min_lr_frac))
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
        ck_h5_fail(&c, "cannot close");
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

int ckpt_save_start(const char *path, pb_params *ps, const pb_config *cfg, char *err,
                    size_t errlen) {
    if (access(path, F_OK) == 0) {
        pb_seterr(err, errlen, "%s exists (remove it or choose another --out)", path);
        return -1;
    }
    pb_adamw opt;  // zero moments, step 0
    adamw_init(&opt, ps, (float)cfg->beta1, (float)cfg->beta2, (float)cfg->eps,
               (float)cfg->weight_decay);
    pb_ckpt_trainer_state ts;
    memset(&ts, 0, sizeof ts);
    ts.seed = cfg->seed;
    ts.train_loader.seed = cfg->seed;
    ts.total_steps = cfg->steps;
    ts.warmup_steps = cfg->warmup_steps;
    ts.max_lr = cfg->lr;
    ts.min_lr_frac = cfg->min_lr_frac;
    int rc = ckpt_save_as(path, ps, &opt, &ts, cfg, err, errlen);
    adamw_free(&opt);
    return rc;
}

int ckpt_load(const char *path, pb_params *ps, int with_optimizer, pb_ckpt_trainer_state *st,
              char *err, size_t errlen) {
    return load(path, ps, with_optimizer, st, 0, NULL, err, errlen);
}

int ckpt_load_init(const char *path, pb_params *ps, int *skipped, char *err, size_t errlen) {
    *skipped = 0;
    return load(path, ps, 0, NULL, 1, skipped, err, errlen);
}

int ckpt_read_config(const char *path, char **ini, ckpt_model_info *mi, char *err,
                     size_t errlen) {
    ck_h5_quiet();
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

