// ckpt_h5.h: the pieces the checkpoint module (checkpoint.c, ckpt_h5.c, ckpt_files.c) shares,
// internal to it: the error context every message goes through, HDF5 attribute and group
// helpers that report failures as one line, and the file operations of an atomic save.
#ifndef PEBBLE_CKPT_H5_H
#define PEBBLE_CKPT_H5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

// The first failure is the one reported, as "<file>: <what>[: <hdf5's reason>]".
typedef struct ck_ctx {
    const char *path;  // the file every message names
    char *err;
    size_t errlen;
    int failed;
} ck_ctx;

void ck_fail(ck_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// ck_fail with HDF5's innermost reason appended; returns -1 for `return ck_h5_fail(...)`.
int ck_h5_fail(ck_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// HDF5 prints its error stack to stderr by default; pebble prints its one line instead.
// Called first by every entry point of the module (it also turns off HDF5's atexit cleanup).
void ck_h5_quiet(void);

// --- attributes and groups; each returns 0 (a valid hid_t), or -1 after ck_fail
int ck_write_attr(ck_ctx *c, hid_t obj, const char *name, hid_t type, const void *buf);
int ck_write_i64(ck_ctx *c, hid_t obj, const char *name, int64_t v);
int ck_write_u64(ck_ctx *c, hid_t obj, const char *name, uint64_t v);
int ck_write_f64(ck_ctx *c, hid_t obj, const char *name, double v);
int ck_write_str(ck_ctx *c, hid_t obj, const char *name, const char *value);
hid_t ck_make_group(ck_ctx *c, hid_t parent, const char *name, const char *shown);
// where names the object in messages ("/trainer"); *out of read_str is malloc'd
int ck_read_i64(ck_ctx *c, hid_t obj, const char *where, const char *name, int64_t *out);
int ck_read_u64(ck_ctx *c, hid_t obj, const char *where, const char *name, uint64_t *out);
int ck_read_f64(ck_ctx *c, hid_t obj, const char *where, const char *name, double *out);
int ck_read_str(ck_ctx *c, hid_t obj, const char *where, const char *name, char **out);
int ck_link_exists(ck_ctx *c, hid_t f, const char *path);  // 1, 0, or -1
hid_t ck_open_group(ck_ctx *c, hid_t f, const char *path);

// Opens path as a pebble checkpoint of this format version (checkpoint.c); its model family
// into fam (may be NULL).
hid_t ck_open_checkpoint(ck_ctx *c, const char *path, char *fam, size_t famlen);

// --- the files of a run directory (ckpt_files.c)
int ck_fsync_dir(const char *dir);
void ck_test_delay(void);  // PEBBLE_CKPT_TEST_DELAY_US: widens the windows tests kill in
void ck_remove_stale_temps(const char *dir);
int ck_write_latest(ck_ctx *c, const char *dir, const char *name);
void ck_prune(const char *dir, long long step, int keep_last);

#endif
